//! The login callback (Login Connect "Option 2") and the data of its sample page, as decisions
//! free of HTTP (the router in `lc-api` maps them to statuses, fixed bodies, CORS and HTML).
//!
//! - [`Login::login`] takes the body of `POST /login`, `{"access_token": "<user token>",
//!   "page_id": "<optional>", "grant": "new" | "existing" | "unknown", "external_id":
//!   "<optional: the business's user id, signed by its backend>"}`
//!   ([`crate::people::external_id`]): verifies the token server-side with Graph `debug_token`
//!   (valid, issued for our app, not expired, `user_messenger_contact` granted), takes the
//!   app-scoped user id (ASID) from Graph's answer (never from the browser), and derives the
//!   `login_id` ([`crate::login::login_id`]). Only with evidence that the grant happened in this
//!   login (below) does it put a login opt-in ([`crate::lifecycle::processor::login_event`]),
//!   carrying the ASID and the external id, on the same events queue as the webhook; the events
//!   function's idempotency makes this callback and the `messaging_optins` webhook for the same
//!   grant converge on one opt-in and one first message, and the 24-hour clock starts at login
//!   even when the webhook is late. Without evidence it queues nothing and answers
//!   [`LoginAnswer::AwaitingWebhook`]: the webhook records the opt-in if there is one.
//! - [`Login::page`] gives what the sample page shows: the ids for the Facebook JS SDK login with
//!   `messenger_page_id`, and a signed ref minted here for the Send to Messenger plugin's
//!   `data-ref`.
//!
//! The user token is never echoed and never logged: [`LoginAnswer`] carries fixed reasons, and
//! [`Outcome`] only a hash of the `login_id`.
//!
//! # A login is not an opt-in: evidence and trust
//! A token carrying `user_messenger_contact` only says the person granted it at some time: on
//! the first deploy over an existing app, after a restored table, and on every later login of
//! someone who opted in long ago, the grant is old and Meta fires no new `messaging_optins`
//! (it fires once per acceptance). Treating each such login as an opt-in would send a "first"
//! message nobody just asked for. So the callback starts the clock only when both hold:
//!
//! - **The page saw the grant happen** (`"grant": "new"`): before `FB.login` it learned that
//!   `user_messenger_contact` was not granted (not connected to the app, or `/me/permissions`
//!   without it), and after the login `authResponse.grantedScopes` (`return_scopes`) holds it;
//!   or the login used `reset_messenger_state`, which shows the consent again. Anything else
//!   (`existing`, `unknown`, absent) is no evidence.
//! - **The token is fresh**: `debug_token`'s `issued_at` is within
//!   [`LoginConfig::max_token_age_ms`] of now (default [`DEFAULT_MAX_TOKEN_AGE_MS`]), so an old
//!   token replayed from a stored session cannot start a clock. No `issued_at`: not fresh.
//!
//! The page's evidence is the browser's word, and the browser is the person's. A lying page can
//! only claim a new grant for a token it holds, that is for the person who logged in, and only
//! within minutes of that login: the worst it can do is make that one person's own first
//! message arrive earlier (or a second time after a real re-consent). It cannot name another
//! person (the ASID comes from Graph) nor another app. The `messaging_optins` webhook remains
//! the authority: a callback without evidence does nothing, and one with evidence only starts
//! the clock early for the opt-in the webhook will confirm (the lifecycle records that
//! confirmation and reports a login-started opt-in that no webhook confirmed within an hour as
//! `LoginOptinUnconfirmed`).
//!
//! # Provenance
//! The `login_id` derivation comes from Meta's sample, not its documentation (see
//! [`crate::login::login_id`]); it sits behind [`LoginConfig::derive_login_id`]. The webhook path
//! (Option 1) keeps working whatever that setting says.

pub mod login_id;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use crate::lifecycle::optin::{optin_key, DAY_MS};
use crate::lifecycle::processor::{login_event_with, LoginIdentity};
use crate::lifecycle::refs::{self, Keyring};
use crate::login::login_id::derive_login_id;
use crate::ports::graph::{SendError, TokenInfo};
use crate::ports::{Clock, GraphApi, Metric, Metrics, OptinStore, QueueSender, SecretSource};
use crate::sending::errors::{classify, classify_transport, ErrorClass};
use crate::support::privacy::hash_id;
use crate::support::secret::{AppCredentials, Secret, Secrets};
use crate::webhook::intake::encode;
use crate::webhook::{Identity, IdentityKind};

/// Facebook JS SDK served to the sample page unless configured otherwise.
pub const DEFAULT_SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";
/// Graph version given to `FB.init` unless configured otherwise (the Graph client's default).
pub const DEFAULT_GRAPH_VERSION: &str = "v25.0";
/// Larger login bodies are refused (a user token is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// The permission that means "the person opted in to be contacted in Messenger".
pub const REQUIRED_SCOPE: &str = "user_messenger_contact";
/// Lifetime of the Send to Messenger plugin's signed ref.
pub const REF_TTL_SECS: i64 = 24 * 60 * 60;
/// A token issued longer ago than this is not a fresh login (the page posts it right after
/// `FB.login`; ten minutes covers a slow network and clock skew).
pub const DEFAULT_MAX_TOKEN_AGE_MS: i64 = 10 * 60 * 1000;
/// The `grant` value that is evidence of a grant in this login.
pub const GRANT_NEW: &str = "new";

/// Longest access token accepted (Meta's are a few hundred characters).
const MAX_TOKEN_LEN: usize = 4096;
/// Longest Page id / ASID accepted (decimal strings in practice).
const MAX_ID_LEN: usize = 32;
/// Queue sends before giving up (the page may retry: the opt-in converges anyway).
const ENQUEUE_ATTEMPTS: u32 = 2;

/// Settings of the login function.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The Page used when the body names none (and shown on the sample page).
    pub default_page_id: String,
    /// Origins (`https://shop.example`) whose scripts may read the answers. Exact matches
    /// (ASCII case-insensitive, trailing `/` ignored); no wildcards. Applied by the router.
    pub allowed_origins: Vec<String>,
    /// Derive the `login_id` (Meta's sample algorithm, not documented). Off (the default): the
    /// login is refused as [`LoginAnswer::Disabled`] and only the webhook records opt-ins.
    pub derive_login_id: bool,
    /// The Login app's id: selects the credentials in the secret (empty = the secret's first
    /// app) and is the page's `appId` / `messenger_app_id`.
    pub app_id: String,
    /// Where the page loads the Facebook JS SDK from (tests point it at a stub).
    pub sdk_url: String,
    /// Graph version for `FB.init`.
    pub graph_version: String,
    /// A token issued longer ago than this (by `debug_token`'s `issued_at`) starts no clock.
    pub max_token_age_ms: i64,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            default_page_id: String::new(),
            allowed_origins: Vec::new(),
            // Off unless a deployment asks for it: the derivation is Meta's sample, not its
            // documentation (see `login_id`), and the webhook is the authority.
            derive_login_id: false,
            app_id: String::new(),
            sdk_url: DEFAULT_SDK_URL.to_string(),
            graph_version: DEFAULT_GRAPH_VERSION.to_string(),
            max_token_age_ms: DEFAULT_MAX_TOKEN_AGE_MS,
        }
    }
}

/// Why a verified login started no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvidence {
    /// The page did not report `"grant": "new"`.
    GrantNotNew,
    /// `debug_token` gave no `issued_at`, or one outside [`LoginConfig::max_token_age_ms`].
    TokenNotFresh,
}

impl NoEvidence {
    pub fn as_str(self) -> &'static str {
        match self {
            NoEvidence::GrantNotNew => "grant_not_new",
            NoEvidence::TokenNotFresh => "token_not_fresh",
        }
    }
}

/// What the browser is told about a login. Reasons are fixed texts: nothing of the request is
/// echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAnswer {
    /// The opt-in event is queued. `state` is `queued`, or the opt-in's state when it already
    /// exists (then `deadline_at_ms` is its deadline).
    Queued {
        login_id_hash: String,
        state: &'static str,
        deadline_at_ms: i64,
    },
    /// A verified login without evidence that the grant happened in it: nothing queued; the
    /// webhook records the opt-in if there is one.
    AwaitingWebhook {
        login_id_hash: String,
        reason: NoEvidence,
    },
    /// Body not JSON, no token, or a bad or unknown `page_id`.
    BadRequest(&'static str),
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
    /// Derivation is switched off (`derive_login_id = false`).
    Disabled,
    /// One of `invalid`, `expired`, `foreign_app`, `not_a_user_token`.
    TokenRefused(&'static str),
    /// `user_messenger_contact` was not granted.
    NotOptedIn,
    /// No app credentials or client token for the Login app.
    NotConfigured(&'static str),
    /// Graph refused the `debug_token` call itself (e.g. our app token).
    GraphRefused,
    /// Graph unreachable or throttled, secrets or queue down: the page may retry.
    Unavailable,
}

/// What the sample page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageView {
    /// The Login app (`FB.init`'s `appId`, the plugin's `messenger_app_id`).
    pub app_id: String,
    pub page_id: String,
    pub graph_version: String,
    pub sdk_url: String,
    /// `reset_messenger_state` for app admins re-testing the opt-in.
    pub reset: bool,
    /// The plugin's signed `data-ref`; `None` when `ref_keys` holds no usable key.
    pub signed_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAnswer {
    Page(PageView),
    /// The secrets could not be read.
    Unavailable,
}

/// What happened, for logs: no token, no raw `login_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Page {
        reset: bool,
        /// A signed ref was minted for the plugin (false: no usable key in `ref_keys`).
        signed_ref: bool,
    },
    Accepted {
        login_id_hash: String,
        page_id: String,
        state: &'static str,
        /// The opt-in already existed (webhook or an earlier callback came first).
        existing: bool,
    },
    /// Verified, but no evidence of a grant in this login: nothing queued.
    AwaitingWebhook {
        login_id_hash: String,
        page_id: String,
        reason: NoEvidence,
    },
    BadRequest(&'static str),
    TooLarge,
    Disabled,
    /// The reason is one of `invalid`, `expired`, `foreign_app`, `not_a_user_token`.
    TokenRefused(&'static str),
    ScopeMissing,
    /// The classification rule of the Graph / transport failure.
    GraphUnavailable(&'static str),
    /// Graph refused the `debug_token` call itself.
    GraphRefused {
        code: Option<i64>,
        subcode: Option<i64>,
    },
    SecretsUnavailable,
    NotConfigured(&'static str),
    EnqueueFailed,
}

#[derive(Deserialize)]
struct LoginBody {
    access_token: Option<String>,
    page_id: Option<String>,
    /// The page's evidence: [`GRANT_NEW`], or anything else for none.
    grant: Option<String>,
}

/// What `parse_body` reads.
struct Request {
    token: Secret,
    page_id: Option<String>,
    /// The page reported the grant as new in this login.
    grant_new: bool,
}

pub struct Login {
    graph: Arc<dyn GraphApi>,
    queue: Arc<dyn QueueSender>,
    store: Arc<dyn OptinStore>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    config: LoginConfig,
}

impl Login {
    pub fn new(
        graph: Arc<dyn GraphApi>,
        queue: Arc<dyn QueueSender>,
        store: Arc<dyn OptinStore>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
        config: LoginConfig,
    ) -> Self {
        Login {
            graph,
            queue,
            store,
            secrets,
            clock,
            metrics,
            config,
        }
    }

    pub fn config(&self) -> &LoginConfig {
        &self.config
    }

    /// A login from the page: check the token, derive the `login_id`, queue the opt-in.
    pub async fn login(&self, body: &[u8]) -> (LoginAnswer, Outcome) {
        let (answer, outcome) = self.decide_login(body).await;
        match &outcome {
            Outcome::EnqueueFailed => self.metrics.record(Metric::EnqueueFailure),
            Outcome::AwaitingWebhook { reason, .. } => {
                self.metrics.record(Metric::LoginAwaitingWebhook(*reason))
            }
            _ => {}
        }
        (answer, outcome)
    }

    async fn decide_login(&self, body: &[u8]) -> (LoginAnswer, Outcome) {
        if body.len() > MAX_BODY_BYTES {
            return (LoginAnswer::TooLarge, Outcome::TooLarge);
        }
        if !self.config.derive_login_id {
            return (LoginAnswer::Disabled, Outcome::Disabled);
        }
        let Request {
            token,
            page_id: requested_page,
            grant_new,
        } = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(why) => return bad_request(why),
        };
        let Ok(secrets) = self.secrets.secrets().await else {
            return (LoginAnswer::Unavailable, Outcome::SecretsUnavailable);
        };
        let page_id = match requested_page {
            Some(p) => p,
            None if self.config.default_page_id.is_empty() => {
                return bad_request("page_id is required (no default page is configured)")
            }
            None => self.config.default_page_id.clone(),
        };
        if page_id != self.config.default_page_id && !secrets.page_tokens.contains_key(&page_id) {
            return bad_request("page_id is not a Page served here");
        }
        let app = match self.login_app(&secrets) {
            Ok(app) => app,
            Err(why) => return (LoginAnswer::NotConfigured(why), Outcome::NotConfigured(why)),
        };
        // The business's own id, signed by its backend: checked before Graph is asked anything.
        let external_id = match crate::people::external_id::from_login_body(
            body,
            &secrets,
            self.clock.now_ms(),
        ) {
            Ok(x) => x,
            Err(crate::people::external_id::Refused::NotConfigured(why)) => {
                return (LoginAnswer::NotConfigured(why), Outcome::NotConfigured(why))
            }
            Err(crate::people::external_id::Refused::BadRequest(why)) => return bad_request(why),
        };

        let app_token = Secret::new(format!("{}|{}", app.app_id, app.app_secret.expose()));
        let info = match self.graph.debug_token(&app_token, &token).await {
            Ok(info) => info,
            Err(e) => return graph_failure(&e),
        };
        let now = self.clock.now_ms();
        let asid = match check_token(&info, &app.app_id, now) {
            Ok(asid) => asid,
            Err(TokenProblem::Refused(reason)) => {
                return (
                    LoginAnswer::TokenRefused(reason),
                    Outcome::TokenRefused(reason),
                )
            }
            Err(TokenProblem::ScopeMissing) => {
                return (LoginAnswer::NotOptedIn, Outcome::ScopeMissing)
            }
        };

        let login_id = derive_login_id(app.client_token.expose(), asid, &app.app_id, &page_id);
        let login_id_hash = hash_id(&login_id);
        // A login is not an opt-in: without evidence that the grant happened now, leave it to
        // the webhook (see the module doc).
        let missing = if !grant_new {
            Some(NoEvidence::GrantNotNew)
        } else if !token_fresh(&info, now, self.config.max_token_age_ms) {
            Some(NoEvidence::TokenNotFresh)
        } else {
            None
        };
        if let Some(reason) = missing {
            return (
                LoginAnswer::AwaitingWebhook {
                    login_id_hash: login_id_hash.clone(),
                    reason,
                },
                Outcome::AwaitingWebhook {
                    login_id_hash,
                    page_id,
                    reason,
                },
            );
        }
        let identity = LoginIdentity {
            app_id: app.app_id.clone(),
            asid: asid.to_string(),
            external_id,
        };
        if !self.enqueue(&page_id, &login_id, &identity, now).await {
            return (LoginAnswer::Unavailable, Outcome::EnqueueFailed);
        }

        // The opt-in exists already when the webhook (or an earlier callback) was processed;
        // otherwise the event is on its way and the clock started now. A read failure must not
        // turn an accepted login into an error: the event is queued either way.
        let key = optin_key(&Identity::new(IdentityKind::LoginId, &login_id), &page_id);
        let existing = self.store.get_optin(&key).await.ok().flatten();
        let (state, deadline_at_ms) = match &existing {
            Some(o) => (o.state.as_str(), o.deadline_at_ms),
            None => ("queued", now + DAY_MS),
        };
        (
            LoginAnswer::Queued {
                login_id_hash: login_id_hash.clone(),
                state,
                deadline_at_ms,
            },
            Outcome::Accepted {
                login_id_hash,
                page_id,
                state,
                existing: existing.is_some(),
            },
        )
    }

    /// The credentials of the Login app: the one named by `app_id`, else the secret's first.
    fn login_app<'s>(&self, secrets: &'s Secrets) -> Result<&'s AppCredentials, &'static str> {
        let app = if self.config.app_id.is_empty() {
            secrets.apps.first()
        } else {
            secrets.apps.iter().find(|a| a.app_id == self.config.app_id)
        };
        let Some(app) = app else {
            return Err("no credentials for the Login app in the secret");
        };
        if app.app_id.is_empty() || app.app_secret.is_empty() {
            return Err("the Login app needs app_id and app_secret in the secret");
        }
        if app.client_token.is_empty() {
            return Err("the Login app's client_token is missing from the secret (needed to derive login_id)");
        }
        Ok(app)
    }

    /// Puts the login opt-in on the events queue; `false` when the queue did not take it.
    async fn enqueue(
        &self,
        page_id: &str,
        login_id: &str,
        identity: &LoginIdentity,
        now: i64,
    ) -> bool {
        let Ok(event) = login_event_with(page_id, login_id, now, now, Some(identity)) else {
            return false;
        };
        let Ok(messages) = encode(std::slice::from_ref(&event)) else {
            return false;
        };
        for attempt in 0..ENQUEUE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if let Ok(failures) = self.queue.send_batch(&messages).await {
                if failures.is_empty() {
                    return true;
                }
            }
        }
        false
    }

    /// The sample page's data, with a freshly minted signed ref (one per page load).
    pub async fn page(&self, reset: bool) -> (PageAnswer, Outcome) {
        let Ok(secrets) = self.secrets.secrets().await else {
            return (PageAnswer::Unavailable, Outcome::SecretsUnavailable);
        };
        let app_id = if self.config.app_id.is_empty() {
            secrets
                .apps
                .first()
                .map(|a| a.app_id.clone())
                .unwrap_or_default()
        } else {
            self.config.app_id.clone()
        };
        let now_secs = self.clock.now_ms().div_euclid(1000);
        let signed_ref = signing_key(&secrets).and_then(|(key_id, key)| {
            let payload = format!("web.{:016x}.{now_secs}", visit_id(now_secs));
            refs::mint(key_id, &key, payload.as_bytes(), now_secs + REF_TTL_SECS).ok()
        });
        let outcome = Outcome::Page {
            reset,
            signed_ref: signed_ref.is_some(),
        };
        let view = PageView {
            app_id,
            page_id: self.config.default_page_id.clone(),
            graph_version: self.config.graph_version.clone(),
            sdk_url: self.config.sdk_url.clone(),
            reset,
            signed_ref,
        };
        (PageAnswer::Page(view), outcome)
    }
}

fn bad_request(why: &'static str) -> (LoginAnswer, Outcome) {
    (LoginAnswer::BadRequest(why), Outcome::BadRequest(why))
}

fn graph_failure(e: &SendError) -> (LoginAnswer, Outcome) {
    let unavailable = |rule| (LoginAnswer::Unavailable, Outcome::GraphUnavailable(rule));
    match e {
        SendError::Transport { failure, .. } => unavailable(classify_transport(*failure).rule),
        SendError::Graph { error, .. } => {
            let c = classify(error);
            if c.class == ErrorClass::Retry {
                unavailable(c.rule)
            } else {
                (
                    LoginAnswer::GraphRefused,
                    Outcome::GraphRefused {
                        code: error.code,
                        subcode: error.subcode,
                    },
                )
            }
        }
    }
}

/// Reads `{access_token, page_id?, grant?}`. Reasons are fixed texts: nothing of the body is
/// echoed.
fn parse_body(body: &[u8]) -> Result<Request, &'static str> {
    let parsed: LoginBody = serde_json::from_slice(body).map_err(|_| {
        "expected a JSON object {\"access_token\": \"...\", \"page_id\": \"...\", \"grant\": \"...\"}"
    })?;
    let token = parsed.access_token.unwrap_or_default();
    if token.is_empty() {
        return Err("access_token is missing or empty");
    }
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("access_token is not a valid token");
    }
    let page = match parsed.page_id {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) if is_numeric_id(&p) => Some(p),
        Some(_) => return Err("page_id must be a numeric Page id"),
    };
    Ok(Request {
        token: Secret::new(token),
        page_id: page,
        grant_new: parsed.grant.as_deref() == Some(GRANT_NEW),
    })
}

/// `issued_at` is known and within `max_age_ms` of now, either way (a token "issued" far in
/// the future is as suspect as an old one; the margin absorbs clock skew).
fn token_fresh(info: &TokenInfo, now_ms: i64, max_age_ms: i64) -> bool {
    let Some(issued_ms) = info
        .issued_at_secs
        .filter(|s| *s > 0)
        .map(|s| s.saturating_mul(1000))
    else {
        return false;
    };
    // A negative setting means no token is fresh (nothing starts a clock), never "any age".
    u64::try_from(max_age_ms)
        .is_ok_and(|max| now_ms.saturating_sub(issued_ms).unsigned_abs() <= max)
}

fn is_numeric_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_digit())
}

enum TokenProblem {
    Refused(&'static str),
    ScopeMissing,
}

/// Checks `debug_token`'s answer and returns the ASID.
fn check_token<'a>(
    info: &'a TokenInfo,
    app_id: &str,
    now_ms: i64,
) -> Result<&'a str, TokenProblem> {
    let expired = info
        .expires_at_secs
        .is_some_and(|s| s > 0 && s.saturating_mul(1000) <= now_ms);
    if expired {
        return Err(TokenProblem::Refused("expired"));
    }
    if !info.is_valid {
        return Err(TokenProblem::Refused("invalid"));
    }
    if info.app_id.as_deref() != Some(app_id) {
        return Err(TokenProblem::Refused("foreign_app"));
    }
    let Some(asid) = info.user_id.as_deref().filter(|u| is_numeric_id(u)) else {
        return Err(TokenProblem::Refused("not_a_user_token"));
    };
    if !info.scopes.iter().any(|s| s == REQUIRED_SCOPE) {
        return Err(TokenProblem::ScopeMissing);
    }
    Ok(asid)
}

/// The key refs are minted with: the highest valid key id in `ref_keys`.
fn signing_key(secrets: &Secrets) -> Option<(u8, [u8; 32])> {
    Keyring::from_secrets(secrets)
        .newest()
        .map(|(id, key)| (id, *key))
}

/// A per-page-load value: std's randomly seeded hasher over a counter and the time. Not a
/// secret (the signed payload is readable), just distinct per visit.
fn visit_id(now_secs: i64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_i64(now_secs);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_off_by_default() {
        // The webhook is the authority; a deployment turns the sample's derivation on itself.
        assert!(!LoginConfig::default().derive_login_id);
    }

    #[test]
    fn body_parsing() {
        let ok = parse_body(br#"{"access_token":"EAAB","page_id":"100"}"#).unwrap();
        assert_eq!(ok.token.expose(), "EAAB");
        assert_eq!(ok.page_id.as_deref(), Some("100"));
        assert!(!ok.grant_new, "no grant field: no evidence");
        assert_eq!(
            parse_body(br#"{"access_token":"EAAB","page_id":""}"#)
                .unwrap()
                .page_id,
            None
        );
        for (grant, new) in [
            ("\"new\"", true),
            ("\"existing\"", false),
            ("\"unknown\"", false),
            ("\"NEW\"", false),
            ("null", false),
        ] {
            let body = format!(r#"{{"access_token":"EAAB","grant":{grant}}}"#);
            assert_eq!(
                parse_body(body.as_bytes()).unwrap().grant_new,
                new,
                "{grant}"
            );
        }
        for bad in [
            &br#"{"page_id":"1"}"#[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"a","page_id":"x1"}"#,
            br#"{"access_token":5}"#,
            br#"{"access_token":"a","grant":true}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn token_checks_in_order() {
        let good = TokenInfo {
            is_valid: true,
            app_id: Some("1".into()),
            user_id: Some("42".into()),
            scopes: vec!["public_profile".into(), REQUIRED_SCOPE.into()],
            expires_at_secs: Some(2_000),
            issued_at_secs: Some(900),
            error_message: None,
        };
        assert_eq!(check_token(&good, "1", 1_000_000).ok(), Some("42"));
        let refused = |info: &TokenInfo| match check_token(info, "1", 1_000_000) {
            Err(TokenProblem::Refused(r)) => r,
            Err(TokenProblem::ScopeMissing) => "scope",
            Ok(_) => "ok",
        };
        let never = TokenInfo {
            expires_at_secs: Some(0),
            ..good.clone()
        };
        assert_eq!(refused(&never), "ok");
        let expired = TokenInfo {
            expires_at_secs: Some(1_000),
            ..good.clone()
        };
        assert_eq!(refused(&expired), "expired");
        let invalid = TokenInfo {
            is_valid: false,
            ..good.clone()
        };
        assert_eq!(refused(&invalid), "invalid");
        let foreign = TokenInfo {
            app_id: Some("2".into()),
            ..good.clone()
        };
        assert_eq!(refused(&foreign), "foreign_app");
        let page = TokenInfo {
            user_id: None,
            ..good.clone()
        };
        assert_eq!(refused(&page), "not_a_user_token");
        let no_scope = TokenInfo {
            scopes: vec!["public_profile".into()],
            ..good
        };
        assert_eq!(refused(&no_scope), "scope");
    }

    #[test]
    fn freshness_is_issued_at_within_the_max_age() {
        let info = |issued: Option<i64>| TokenInfo {
            is_valid: true,
            app_id: Some("1".into()),
            user_id: Some("42".into()),
            scopes: vec![REQUIRED_SCOPE.into()],
            expires_at_secs: Some(0),
            issued_at_secs: issued,
            error_message: None,
        };
        let now = 1_000_000_000;
        let max = DEFAULT_MAX_TOKEN_AGE_MS;
        let secs = |ms: i64| Some(ms / 1000);
        assert!(token_fresh(&info(secs(now)), now, max));
        assert!(token_fresh(&info(secs(now - max)), now, max));
        assert!(!token_fresh(&info(secs(now - max - 1_000)), now, max));
        assert!(token_fresh(&info(secs(now + max)), now, max), "skew");
        assert!(!token_fresh(&info(secs(now + max + 1_000)), now, max));
        assert!(!token_fresh(&info(None), now, max), "no issued_at: unsure");
        assert!(!token_fresh(&info(Some(0)), now, max));
        assert!(!token_fresh(&info(Some(i64::MAX)), now, max));
    }

    #[test]
    fn signing_key_is_the_highest_valid_id() {
        let b64 =
            |b: u8| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [b; 32]);
        let mut s = Secrets::default();
        assert!(signing_key(&s).is_none());
        s.ref_keys.insert("1".into(), Secret::new(b64(1)));
        s.ref_keys.insert("7".into(), Secret::new(b64(7)));
        s.ref_keys.insert("9".into(), Secret::new("too-short"));
        s.ref_keys.insert("x".into(), Secret::new(b64(3)));
        assert_eq!(signing_key(&s), Some((7, [7; 32])));
    }

    #[test]
    fn visit_ids_differ() {
        assert_ne!(visit_id(1), visit_id(1));
    }
}
