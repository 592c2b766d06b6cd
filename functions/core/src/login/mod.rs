//! The login callback (Login Connect "Option 2") and its sample page, independent of how HTTP
//! reaches them (Lambda Function URL, a test server).
//!
//! - `POST /login` with `{"access_token": "<user token>", "page_id": "<optional>"}`: verifies the
//!   token server-side with Graph `debug_token` (valid, issued for our app, not expired,
//!   `user_messenger_contact` granted), takes the app-scoped user id (ASID) from Graph's answer
//!   (never from the browser), derives the `login_id` ([`crate::login::login_id`]), and puts a login
//!   opt-in ([`crate::lifecycle::processor::login_event`]) on the same events queue as the webhook. The events
//!   function's idempotency makes this callback and a later (or earlier) `messaging_optins`
//!   webhook converge on one opt-in and one first message. The 24-hour clock therefore starts at
//!   login even when the webhook is late or never comes.
//! - `GET /`: a sample page (Facebook JS SDK login with `messenger_page_id`, and a Send to
//!   Messenger plugin whose `data-ref` is a signed ref minted here).
//! - `OPTIONS`: CORS preflight. `Access-Control-Allow-Origin` is only ever an echo of an allowed
//!   origin.
//!
//! # Answers of `POST /login`
//! | status | body | when |
//! |---|---|---|
//! | 202 | `{"login_id_hash","state","deadline_at"}` | queued (state `queued`, or the opt-in's state when it already exists) |
//! | 400 | `{"error":"bad_request","detail"}` | body not JSON / no token / bad or unknown `page_id` |
//! | 401 | `{"error":"invalid_token","reason"}` | token invalid, expired, for another app, or not a user token |
//! | 413 | `{"error":"payload_too_large"}` | body over [`MAX_BODY_BYTES`] |
//! | 422 | `{"error":"not_opted_in","detail"}` | `user_messenger_contact` not granted |
//! | 500 | `{"error":"not_configured","detail"}` | no app credentials / client token for the app |
//! | 501 | `{"error":"not_implemented","detail"}` | derivation switched off (`derive_login_id = false`) |
//! | 502 | `{"error":"bad_gateway","detail"}` | Graph refused the check itself (e.g. our app token) |
//! | 503 | `{"error":"unavailable","detail"}` | Graph unreachable / throttled, secrets or queue down: retry |
//!
//! The user token is never echoed and never logged: bodies are fixed texts, and [`Outcome`]
//! carries only a hash of the `login_id`.
//!
//! # Provenance
//! The `login_id` derivation comes from Meta's sample, not its documentation (see
//! [`crate::login::login_id`]); it sits behind [`LoginConfig::derive_login_id`]. The webhook path
//! (Option 1) keeps working whatever that setting says.

pub mod login_id;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::lifecycle::optin::{optin_key, DAY_MS};
use crate::lifecycle::processor::login_event;
use crate::lifecycle::refs;
use crate::login::login_id::derive_login_id;
use crate::ports::graph::{SendError, TokenInfo};
use crate::ports::{Clock, GraphApi, OptinStore, QueueSender, SecretSource};
use crate::sending::errors::{classify, classify_transport, ErrorClass};
use crate::support::privacy::hash_id;
use crate::support::secret::{AppCredentials, Secret, Secrets};
use crate::support::time::format_rfc3339_ms;
use crate::webhook::intake::encode;
use crate::webhook::{Identity, IdentityKind};

/// Facebook JS SDK served to the sample page unless configured otherwise.
pub const DEFAULT_SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";
/// Graph version given to `FB.init` unless configured otherwise (the Graph client's default).
pub const DEFAULT_GRAPH_VERSION: &str = "v25.0";
/// Larger `POST /login` bodies get 413 (a user token is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// The permission that means "the person opted in to be contacted in Messenger".
pub const REQUIRED_SCOPE: &str = "user_messenger_contact";
/// The path the page posts the token to.
pub const LOGIN_PATH: &str = "/login";
/// Lifetime of the Send to Messenger plugin's signed ref.
pub const REF_TTL_SECS: i64 = 24 * 60 * 60;

/// Longest access token accepted (Meta's are a few hundred characters).
const MAX_TOKEN_LEN: usize = 4096;
/// Longest Page id / ASID accepted (decimal strings in practice).
const MAX_ID_LEN: usize = 32;
/// Queue sends before giving up with 503 (the page may retry: the opt-in converges anyway).
const ENQUEUE_ATTEMPTS: u32 = 2;

const PAGE_TEMPLATE: &str = include_str!("page.html");

pub const BODY_NOT_FOUND: &str = "{\"error\":\"not_found\"}";
pub const BODY_METHOD: &str = "{\"error\":\"method_not_allowed\"}";
pub const BODY_TOO_LARGE: &str = "{\"error\":\"payload_too_large\"}";
pub const BODY_DISABLED: &str = "{\"error\":\"not_implemented\",\"detail\":\"login_id derivation is switched off on this deployment (LC_DERIVE_LOGIN_ID=false); opt-ins are recorded when Meta's messaging_optins webhook arrives\"}";
pub const BODY_NOT_OPTED_IN: &str = "{\"error\":\"not_opted_in\",\"detail\":\"the person did not opt in: user_messenger_contact was not granted\"}";
pub const BODY_UNAVAILABLE: &str =
    "{\"error\":\"unavailable\",\"detail\":\"temporarily unavailable, please retry\"}";
pub const BODY_BAD_GATEWAY: &str =
    "{\"error\":\"bad_gateway\",\"detail\":\"the access token could not be checked\"}";

/// Settings of the login function.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The Page used when the body names none (and shown on the sample page).
    pub default_page_id: String,
    /// Origins (`https://shop.example`) whose scripts may read the answers. Exact matches
    /// (ASCII case-insensitive, trailing `/` ignored); no wildcards.
    pub allowed_origins: Vec<String>,
    /// Derive the `login_id` (Meta's sample algorithm, not documented). Off: `POST /login` answers
    /// 501 and only the webhook records opt-ins.
    pub derive_login_id: bool,
    /// The Login app's id: selects the credentials in the secret (empty = the secret's first
    /// app) and is the page's `appId` / `messenger_app_id`.
    pub app_id: String,
    /// Where the page loads the Facebook JS SDK from (tests point it at a stub).
    pub sdk_url: String,
    /// Graph version for `FB.init`.
    pub graph_version: String,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            default_page_id: String::new(),
            allowed_origins: Vec::new(),
            derive_login_id: true,
            app_id: String::new(),
            sdk_url: DEFAULT_SDK_URL.to_string(),
            graph_version: DEFAULT_GRAPH_VERSION.to_string(),
        }
    }
}

/// The parts of an HTTP request the endpoint needs. Query values are already percent-decoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The body exactly as received (already base64-decoded if the transport encoded it).
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides `content-type` (lowercase names).
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    fn json(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: vec![
                ("cache-control", "no-store".into()),
                ("x-content-type-options", "nosniff".into()),
            ],
            body: body.into(),
        }
    }

    fn empty(status: u16) -> Self {
        Response {
            status,
            content_type: "text/plain",
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn with(mut self, headers: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// The value of a header this endpoint set (`content-type` included).
    pub fn header(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("content-type") {
            return Some(self.content_type);
        }
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What happened, for logs and metrics: no token, no raw `login_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Page {
        reset: bool,
        /// A signed ref was minted for the plugin (false: no usable key in `ref_keys`).
        signed_ref: bool,
    },
    Preflight {
        origin_allowed: bool,
    },
    Accepted {
        login_id_hash: String,
        page_id: String,
        state: &'static str,
        /// The opt-in already existed (webhook or an earlier callback came first).
        existing: bool,
    },
    BadRequest(&'static str),
    TooLarge,
    Disabled,
    /// 401; the reason is one of `invalid`, `expired`, `foreign_app`, `not_a_user_token`.
    TokenRefused(&'static str),
    ScopeMissing,
    /// 503; the classification rule of the Graph / transport failure.
    GraphUnavailable(&'static str),
    /// 502: Graph refused the `debug_token` call itself.
    GraphRefused {
        code: Option<i64>,
        subcode: Option<i64>,
    },
    SecretsUnavailable,
    NotConfigured(&'static str),
    EnqueueFailed,
    NotFound,
    MethodNotAllowed,
}

#[derive(Deserialize)]
struct LoginBody {
    access_token: Option<String>,
    page_id: Option<String>,
}

pub struct Login {
    graph: Arc<dyn GraphApi>,
    queue: Arc<dyn QueueSender>,
    store: Arc<dyn OptinStore>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    config: LoginConfig,
}

impl Login {
    pub fn new(
        graph: Arc<dyn GraphApi>,
        queue: Arc<dyn QueueSender>,
        store: Arc<dyn OptinStore>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        config: LoginConfig,
    ) -> Self {
        Login {
            graph,
            queue,
            store,
            secrets,
            clock,
            config,
        }
    }

    pub fn config(&self) -> &LoginConfig {
        &self.config
    }

    /// Handles one request.
    pub async fn handle(&self, req: Request<'_>) -> Response {
        self.handle_with_outcome(req).await.0
    }

    /// Handles one request and says what happened (for the transport's logs).
    pub async fn handle_with_outcome(&self, req: Request<'_>) -> (Response, Outcome) {
        let path = req.path.trim_end_matches('/');
        let route = match path {
            "" => Route::Page,
            LOGIN_PATH => Route::Login,
            _ => return (Response::json(404, BODY_NOT_FOUND), Outcome::NotFound),
        };
        let cors = self.cors_headers(req.origin);
        let (resp, outcome) = match (route, req.method) {
            (_, "OPTIONS") => self.preflight(req.origin),
            (Route::Page, "GET") => self.page(req.query).await,
            (Route::Login, "POST") => self.login(req.body).await,
            (route, _) => (
                Response::json(405, BODY_METHOD).with([("allow", route.allow().to_string())]),
                Outcome::MethodNotAllowed,
            ),
        };
        (resp.with(cors), outcome)
    }

    /// `Access-Control-Allow-Origin` for an allowed origin, and `Vary: Origin` always (the
    /// answer depends on it).
    fn cors_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![("vary", "Origin".to_string())];
        if let Some(o) = origin.filter(|o| self.origin_allowed(o)) {
            h.push(("access-control-allow-origin", o.to_string()));
        }
        h
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        // "null" is what sandboxed frames and file:// pages send: never a configured site.
        !origin.is_empty()
            && origin != "null"
            && self
                .config
                .allowed_origins
                .iter()
                .map(|a| a.trim().trim_end_matches('/'))
                .any(|a| !a.is_empty() && a.eq_ignore_ascii_case(origin))
    }

    fn preflight(&self, origin: Option<&str>) -> (Response, Outcome) {
        let allowed = origin.is_some_and(|o| self.origin_allowed(o));
        let mut resp = Response::empty(204);
        if allowed {
            resp = resp.with([
                ("access-control-allow-methods", "POST, OPTIONS".to_string()),
                ("access-control-allow-headers", "content-type".to_string()),
                ("access-control-max-age", "600".to_string()),
            ]);
        }
        (
            resp,
            Outcome::Preflight {
                origin_allowed: allowed,
            },
        )
    }

    async fn login(&self, body: &[u8]) -> (Response, Outcome) {
        if body.len() > MAX_BODY_BYTES {
            return (Response::json(413, BODY_TOO_LARGE), Outcome::TooLarge);
        }
        if !self.config.derive_login_id {
            return (Response::json(501, BODY_DISABLED), Outcome::Disabled);
        }
        let (token, requested_page) = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(why) => return bad_request(why),
        };
        let secrets = match self.secrets.secrets().await {
            Ok(s) => s,
            Err(_) => {
                return (
                    Response::json(503, BODY_UNAVAILABLE),
                    Outcome::SecretsUnavailable,
                )
            }
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
            Err(why) => return not_configured(why),
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
                    Response::json(
                        401,
                        format!("{{\"error\":\"invalid_token\",\"reason\":\"{reason}\"}}"),
                    ),
                    Outcome::TokenRefused(reason),
                )
            }
            Err(TokenProblem::ScopeMissing) => {
                return (
                    Response::json(422, BODY_NOT_OPTED_IN),
                    Outcome::ScopeMissing,
                )
            }
        };

        let login_id = derive_login_id(app.client_token.expose(), asid, &app.app_id, &page_id);
        let login_id_hash = hash_id(&login_id);
        if !self.enqueue(&page_id, &login_id, now).await {
            return (
                Response::json(503, BODY_UNAVAILABLE),
                Outcome::EnqueueFailed,
            );
        }

        // The opt-in exists already when the webhook (or an earlier callback) was processed;
        // otherwise the event is on its way and the clock started now. A read failure must not
        // turn an accepted login into an error: the event is queued either way.
        let key = optin_key(&Identity::new(IdentityKind::LoginId, &login_id), &page_id);
        let existing = self.store.get_optin(&key).await.ok().flatten();
        let (state, deadline_ms) = match &existing {
            Some(o) => (o.state.as_str(), o.deadline_at_ms),
            None => ("queued", now + DAY_MS),
        };
        let body = serde_json::json!({
            "login_id_hash": login_id_hash,
            "state": state,
            "deadline_at": format_rfc3339_ms(deadline_ms),
        })
        .to_string();
        (
            Response::json(202, body),
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
    async fn enqueue(&self, page_id: &str, login_id: &str, now: i64) -> bool {
        let Ok(event) = login_event(page_id, login_id, now, now) else {
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

    async fn page(&self, query: &[(String, String)]) -> (Response, Outcome) {
        let reset = query.iter().any(|(k, v)| k == "reset" && v == "1");
        let secrets = match self.secrets.secrets().await {
            Ok(s) => s,
            Err(_) => {
                return (
                    Response::json(503, BODY_UNAVAILABLE),
                    Outcome::SecretsUnavailable,
                )
            }
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
        let page_id = &self.config.default_page_id;
        let signed = signing_key(&secrets).and_then(|(key_id, key)| {
            let payload = format!("web.{:016x}.{now_secs}", visit_id(now_secs));
            refs::mint(key_id, &key, payload.as_bytes(), now_secs + REF_TTL_SECS).ok()
        });
        let plugin = match &signed {
            Some(r) => format!(
                "<div class=\"fb-send-to-messenger\" messenger_app_id=\"{}\" page_id=\"{}\" data-ref=\"{}\" color=\"blue\" size=\"large\"></div>",
                escape_html(&app_id),
                escape_html(page_id),
                escape_html(r)
            ),
            None => "<p class=\"note\">The Send to Messenger plugin is off: no signing key in the secret's ref_keys.</p>".to_string(),
        };
        let reset_note = if reset {
            "reset_messenger_state is on (?reset=1): for app admins re-testing the opt-in."
        } else {
            "App admins: add ?reset=1 to the address to re-test the opt-in (reset_messenger_state)."
        };
        let html = fill(
            PAGE_TEMPLATE,
            &[
                ("APP_ID", escape_html(&app_id)),
                ("PAGE_ID", escape_html(page_id)),
                ("GRAPH_VERSION", escape_html(&self.config.graph_version)),
                ("RESET", if reset { "true" } else { "false" }.to_string()),
                ("RESET_NOTE", escape_html(reset_note)),
                ("LOGIN_PATH", escape_html(LOGIN_PATH)),
                ("SDK_URL", escape_html(&self.config.sdk_url)),
                ("PLUGIN", plugin),
            ],
        );
        let resp = Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: vec![
                ("content-security-policy", self.page_csp()),
                ("cache-control", "no-store".into()),
                ("x-content-type-options", "nosniff".into()),
                ("referrer-policy", "strict-origin-when-cross-origin".into()),
            ],
            body: html,
        };
        (
            resp,
            Outcome::Page {
                reset,
                signed_ref: signed.is_some(),
            },
        )
    }

    /// Only this origin, the SDK's origin (scripts) and facebook.com (frames, the SDK's calls)
    /// may be reached; the one inline script is allowed by its hash.
    pub fn page_csp(&self) -> String {
        let sdk = sdk_origin(&self.config.sdk_url)
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        format!(
            "default-src 'none'; script-src 'self' '{}'{sdk}; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self' https://*.facebook.com; \
             frame-src https://*.facebook.com; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
            inline_script_hash()
        )
    }
}

#[derive(Clone, Copy)]
enum Route {
    Page,
    Login,
}

impl Route {
    fn allow(self) -> &'static str {
        match self {
            Route::Page => "GET, OPTIONS",
            Route::Login => "POST, OPTIONS",
        }
    }
}

fn bad_request(why: &'static str) -> (Response, Outcome) {
    let body = serde_json::json!({"error": "bad_request", "detail": why}).to_string();
    (Response::json(400, body), Outcome::BadRequest(why))
}

fn not_configured(why: &'static str) -> (Response, Outcome) {
    let body = serde_json::json!({"error": "not_configured", "detail": why}).to_string();
    (Response::json(500, body), Outcome::NotConfigured(why))
}

fn graph_failure(e: &SendError) -> (Response, Outcome) {
    let unavailable = |rule| {
        (
            Response::json(503, BODY_UNAVAILABLE),
            Outcome::GraphUnavailable(rule),
        )
    };
    match e {
        SendError::Transport { failure, .. } => unavailable(classify_transport(*failure).rule),
        SendError::Graph { error, .. } => {
            let c = classify(error);
            if c.class == ErrorClass::Retry {
                unavailable(c.rule)
            } else {
                (
                    Response::json(502, BODY_BAD_GATEWAY),
                    Outcome::GraphRefused {
                        code: error.code,
                        subcode: error.subcode,
                    },
                )
            }
        }
    }
}

/// Reads `{access_token, page_id?}`. Reasons are fixed texts: nothing of the body is echoed.
fn parse_body(body: &[u8]) -> Result<(Secret, Option<String>), &'static str> {
    let parsed: LoginBody = serde_json::from_slice(body)
        .map_err(|_| "expected a JSON object {\"access_token\": \"...\", \"page_id\": \"...\"}")?;
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
    Ok((Secret::new(token), page))
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

/// The key refs are minted with: the highest key id in `ref_keys` holding 32 base64 bytes
/// (new keys get higher ids; older ones stay for verification until their refs expire).
fn signing_key(secrets: &Secrets) -> Option<(u8, [u8; 32])> {
    secrets
        .ref_keys
        .iter()
        .filter_map(|(id, value)| {
            let key_id: u8 = id.trim().parse().ok()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.expose().trim())
                .ok()?;
            Some((key_id, <[u8; 32]>::try_from(bytes).ok()?))
        })
        .max_by_key(|(id, _)| *id)
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

/// `scheme://host[:port]` of an absolute http(s) URL; `None` for a relative one (then `'self'`
/// covers it).
fn sdk_origin(url: &str) -> Option<String> {
    let rest_at = url.find("://")? + 3;
    let scheme = url.get(..rest_at - 3)?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let rest = url.get(rest_at..)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Characters that would end or extend a CSP source expression are not a host.
    if host.is_empty() || host.contains([';', ',', ' ', '\'', '"', '@']) {
        return None;
    }
    Some(format!("{}://{}", scheme.to_ascii_lowercase(), host))
}

/// `'sha256-…'` of the page's inline script (the template's only `<script>` without attributes).
fn inline_script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let script = inline_script(PAGE_TEMPLATE).unwrap_or_default();
        let digest = Sha256::digest(script.as_bytes());
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

fn inline_script(template: &str) -> Option<&str> {
    let start = template.find("<script>")? + "<script>".len();
    let len = template.get(start..)?.find("</script>")?;
    template.get(start..start + len)
}

/// Replaces every `{{NAME}}` in one pass (a value containing `{{…}}` is not expanded again).
/// Unknown names are left as they are.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_single_pass() {
        let t = "a{{X}}b{{Y}}c{{Z}}d{{";
        let out = fill(t, &[("X", "{{Y}}".into()), ("Y", "y".into())]);
        assert_eq!(out, "a{{Y}}byc{{Z}}d{{");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn template_has_one_static_inline_script() {
        let script = inline_script(PAGE_TEMPLATE).unwrap();
        assert!(script.contains("FB.login"));
        assert!(
            !script.contains("{{"),
            "the hashed script must not change per request"
        );
        assert_eq!(PAGE_TEMPLATE.matches("<script>").count(), 1);
        assert!(inline_script_hash().starts_with("sha256-"));
    }

    #[test]
    fn sdk_origins() {
        assert_eq!(
            sdk_origin(DEFAULT_SDK_URL).as_deref(),
            Some("https://connect.facebook.net")
        );
        assert_eq!(
            sdk_origin("http://127.0.0.1:8080/stub.js?x=1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(sdk_origin("/stub.js"), None);
        assert_eq!(sdk_origin("javascript://x"), None);
        assert_eq!(sdk_origin("https://a.b; script-src *"), None);
    }

    #[test]
    fn body_parsing() {
        let ok = parse_body(br#"{"access_token":"EAAB","page_id":"100"}"#).unwrap();
        assert_eq!(ok.0.expose(), "EAAB");
        assert_eq!(ok.1.as_deref(), Some("100"));
        assert_eq!(
            parse_body(br#"{"access_token":"EAAB","page_id":""}"#)
                .unwrap()
                .1,
            None
        );
        for bad in [
            &br#"{"page_id":"1"}"#[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"a","page_id":"x1"}"#,
            br#"{"access_token":5}"#,
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
    fn signing_key_is_the_highest_valid_id() {
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
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
