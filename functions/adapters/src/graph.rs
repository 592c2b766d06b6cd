//! The Graph API adapter: [`GraphClient`] implements [`GraphApi`] (Messenger Send API and
//! `debug_token`) over HTTPS with reqwest (rustls; roots: [`crate::tls`]).
//!
//! Two hosts: graph.facebook.com for everything sent with a Page token, and
//! graph.instagram.com for sends along the Instagram-Login path ([`SendApi::InstagramLogin`],
//! an Instagram user token). Each has its base URL, so a simulator can stand in for both.
//!
//! Build it once per cold start from a [`GraphConfig`] ([`GraphConfig::from_env`]) and share it:
//! the connection pool is reused across invocations of a warm Lambda.
//!
//! # Secrets
//! Tokens travel as query parameters (`access_token`, `appsecret_proof`, `input_token`), so they
//! are part of every request URL. Nothing here puts a URL in an error or a log: transport errors
//! are stripped of their URL ([`reqwest::Error::without_url`]) before their text is kept, and every
//! error text and response body is scrubbed of the request's secrets before it is parsed or
//! returned, in case Meta (or a proxy) echoes one back.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use lc_core::ports::graph::{
    GraphApi, OutgoingMessage, PageAuth, Recipient, SendApi, SendError, SendOk, SendRequest,
    TokenInfo,
};
use lc_core::sending::errors::{GraphError, TransportFailure};
use lc_core::sending::usage::Usage;
use lc_core::support::secret::Secret;
use reqwest::header::HeaderMap;
use reqwest::{Client, Url};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::env::{optional, parse_or, ConfigError};

/// Meta's Graph API host.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Instagram Graph API host (Instagram API with Instagram Login).
pub const DEFAULT_INSTAGRAM_BASE_URL: &str = "https://graph.instagram.com";
/// Graph API version used when `LC_GRAPH_API_VERSION` is not set.
pub const DEFAULT_API_VERSION: &str = "v25.0";
/// Time allowed to open a connection (DNS, TCP, TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for a whole request, connection and body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);

/// Secrets shorter than this are not scrubbed from texts: replacing a 2-character "token" would
/// mangle unrelated text, and real Graph tokens and app secrets are far longer.
const MIN_REDACT_LEN: usize = 8;
/// Longest transport-error detail kept (bytes, cut at a char boundary).
const MAX_DETAIL_BYTES: usize = 400;
const REDACTED: &str = "[redacted]";

/// How to reach the Graph API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphConfig {
    /// Scheme and host (optionally a path prefix), without the version: `https://graph.facebook.com`.
    pub base_url: String,
    /// The same for sends with an Instagram user token: `https://graph.instagram.com`.
    pub instagram_base_url: String,
    /// `vNN.N`.
    pub api_version: String,
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            instagram_base_url: DEFAULT_INSTAGRAM_BASE_URL.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl GraphConfig {
    /// `base_url` for graph.facebook.com, and beside it the Instagram host: Meta's own beside
    /// Meta's Graph host, else the same URL (a stand-in such as graph-sim answers for both
    /// hosts). For the local runner and tests, which take one Graph URL. The other settings keep
    /// their defaults.
    pub fn at(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into();
        let instagram_base_url = if base_url.trim().trim_end_matches('/') == DEFAULT_BASE_URL {
            DEFAULT_INSTAGRAM_BASE_URL.to_owned()
        } else {
            base_url.clone()
        };
        GraphConfig {
            base_url,
            instagram_base_url,
            ..GraphConfig::default()
        }
    }

    /// Reads `LC_GRAPH_BASE_URL`, `LC_GRAPH_INSTAGRAM_BASE_URL`, `LC_GRAPH_API_VERSION` and
    /// `LC_GRAPH_TIMEOUT_MS` (> 0); unset
    /// variables keep the [`Default`] values. Values are validated here, at cold start.
    /// Whether a send carries `appsecret_proof` is the sender's decision (`LC_APPSECRET_PROOF`):
    /// the client sends one exactly when [`PageAuth::app_secret`] is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = GraphConfig::default();
        let timeout_ms: u64 = parse_or("LC_GRAPH_TIMEOUT_MS", duration_ms(DEFAULT_TIMEOUT))?;
        if timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "LC_GRAPH_TIMEOUT_MS",
                "must be greater than 0".to_owned(),
            ));
        }
        let base_url = optional("LC_GRAPH_BASE_URL")
            .map(|v| v.trim().to_owned())
            .unwrap_or(defaults.base_url);
        parse_base_url(&base_url).map_err(|e| ConfigError::Invalid("LC_GRAPH_BASE_URL", e))?;
        let instagram_base_url = optional("LC_GRAPH_INSTAGRAM_BASE_URL")
            .map(|v| v.trim().to_owned())
            .unwrap_or(defaults.instagram_base_url);
        parse_base_url(&instagram_base_url)
            .map_err(|e| ConfigError::Invalid("LC_GRAPH_INSTAGRAM_BASE_URL", e))?;
        let api_version = optional("LC_GRAPH_API_VERSION")
            .map(|v| v.trim().to_owned())
            .unwrap_or(defaults.api_version);
        check_version(&api_version).map_err(|e| ConfigError::Invalid("LC_GRAPH_API_VERSION", e))?;
        Ok(GraphConfig {
            base_url,
            instagram_base_url,
            api_version,
            connect_timeout: defaults.connect_timeout,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

/// Why a [`GraphClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GraphClientError {
    #[error("invalid Graph configuration: {0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// The Graph API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: Client,
    base: Url,
    instagram_base: Url,
    config: GraphConfig,
}

impl GraphClient {
    /// Builds the client: validates the configuration and creates the connection pool. Redirects
    /// are not followed (a redirect would carry the token to another URL). TLS trusts the
    /// compiled-in Mozilla roots ([`crate::tls::graph_tls_config`], shared by every client of the
    /// process), or the system's store with `LC_TLS_NATIVE_ROOTS=true`.
    pub fn new(config: GraphConfig) -> Result<Self, GraphClientError> {
        let base = parse_base_url(&config.base_url).map_err(GraphClientError::Config)?;
        let instagram_base =
            parse_base_url(&config.instagram_base_url).map_err(GraphClientError::Config)?;
        check_version(&config.api_version).map_err(GraphClientError::Config)?;
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(GraphClientError::Config(
                "timeouts must be greater than 0".to_owned(),
            ));
        }
        let builder = match crate::tls::TrustSource::from_env()
            .map_err(|e| GraphClientError::Config(e.to_string()))?
        {
            crate::tls::TrustSource::Bundled => Client::builder().tls_backend_preconfigured(
                crate::tls::graph_tls_config().map_err(GraphClientError::Http)?,
            ),
            // reqwest's own default: the platform verifier over the system's store.
            crate::tls::TrustSource::Native => Client::builder(),
        };
        let http = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("login-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphClientError::Http(error_text(&e.without_url(), &[])))?;
        Ok(GraphClient {
            http,
            base,
            instagram_base,
            config,
        })
    }

    /// [`GraphConfig::from_env`] then [`GraphClient::new`].
    pub fn from_env() -> Result<Self, GraphClientError> {
        let config =
            GraphConfig::from_env().map_err(|e| GraphClientError::Config(e.to_string()))?;
        GraphClient::new(config)
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// `{base}/{version}/{segments…}` on graph.facebook.com, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        self.endpoint_on(SendApi::Facebook, segments)
    }

    /// The same on the host of `api`.
    fn endpoint_on(&self, api: SendApi, segments: &[&str]) -> Url {
        let mut url = match api {
            SendApi::Facebook => self.base.clone(),
            SendApi::InstagramLogin => self.instagram_base.clone(),
        };
        // Cannot fail: `parse_base_url` refused cannot-be-a-base URLs.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.push(&self.config.api_version);
            path.extend(segments);
        }
        url
    }

    /// The proof to send: exactly when the sender handed an app secret.
    fn proof_for(&self, auth: &PageAuth) -> Option<String> {
        let secret = auth.app_secret.as_ref().filter(|s| !s.is_empty())?;
        appsecret_proof(secret, &auth.access_token)
    }
}

/// Hex HMAC-SHA256(key = app secret, msg = access token): Meta's `appsecret_proof`. `None` only
/// if the MAC cannot be keyed (HMAC accepts any key length, so never in practice).
pub fn appsecret_proof(app_secret: &Secret, access_token: &Secret) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.expose().as_bytes()).ok()?;
    mac.update(access_token.expose().as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl GraphApi for GraphClient {
    async fn send(&self, auth: &PageAuth, request: &SendRequest) -> Result<SendOk, SendError> {
        let page = if request.page_id.trim().is_empty() {
            "me"
        } else {
            request.page_id.as_str()
        };
        let proof = self.proof_for(auth);
        let mut secrets = vec![auth.access_token.expose()];
        secrets.extend(auth.app_secret.as_ref().map(Secret::expose));
        secrets.extend(proof.as_deref());

        // The route (lc-core `sending::route`) chose the API: the host follows it, the path and
        // body are the same on both (`/{node}/messages`, recipient `{"id": IGSID}`).
        let mut url = self.endpoint_on(request.api, &[page, "messages"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("access_token", auth.access_token.expose());
            if let Some(p) = &proof {
                query.append_pair("appsecret_proof", p);
            }
        }
        let body = SendBody {
            recipient: recipient_json(&request.recipient),
            messaging_type: request.messaging_type.as_str(),
            tag: request.tag.as_deref(),
            message: &request.message,
        };
        let started = Instant::now();
        let result = self.http.post(url).json(&body).send().await;
        let answer = read_answer("send", result, &secrets).await;
        let elapsed_ms = started.elapsed().as_millis();
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(page_id = page, api = request.api.as_str(), recipient_kind = request.recipient.kind(), elapsed_ms, error = ?e, "graph send failed");
                return Err(e);
            }
        };
        tracing::debug!(
            page_id = page,
            api = request.api.as_str(),
            recipient_kind = request.recipient.kind(),
            status = answer.status,
            elapsed_ms,
            "graph send answered"
        );
        let Answer {
            status,
            usage,
            body,
        } = answer;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if !is_success(status) || parsed.as_ref().is_some_and(|v| v.get("error").is_some()) {
            return Err(SendError::Graph {
                error: GraphError::from_response(status, &body),
                usage,
            });
        }
        let ok = parsed.as_ref().and_then(|v| {
            let message_id = v.get("message_id").and_then(id_string)?;
            Some((v.get("recipient_id").and_then(id_string), message_id))
        });
        match ok {
            Some((recipient_id, message_id)) => Ok(SendOk {
                recipient_id,
                message_id,
                usage,
            }),
            None => Err(SendError::Transport {
                failure: TransportFailure::Other,
                detail: format!(
                    "send: HTTP {status} without a message_id ({} byte body)",
                    body.len()
                ),
            }),
        }
    }

    async fn debug_token(
        &self,
        app_access_token: &Secret,
        input_token: &Secret,
    ) -> Result<TokenInfo, SendError> {
        let app_token = app_access_token.expose();
        let mut secrets = vec![app_token, input_token.expose()];
        // `APP_ID|APP_SECRET`: also scrub the secret half on its own.
        secrets.extend(app_token.split_once('|').map(|(_, secret)| secret));

        let mut url = self.endpoint(&["debug_token"]);
        url.query_pairs_mut()
            .append_pair("input_token", input_token.expose())
            .append_pair("access_token", app_token);
        let result = self.http.get(url).send().await;
        let Answer {
            status,
            usage,
            body,
        } = read_answer("debug_token", result, &secrets).await?;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if !is_success(status) || parsed.as_ref().is_some_and(|v| v.get("error").is_some()) {
            return Err(SendError::Graph {
                error: GraphError::from_response(status, &body),
                usage,
            });
        }
        match parsed.as_ref().and_then(|v| v.get("data")) {
            Some(Value::Object(data)) => Ok(token_info(data)),
            _ => Err(SendError::Transport {
                failure: TransportFailure::Other,
                detail: format!(
                    "debug_token: HTTP {status} without a data object ({} byte body)",
                    body.len()
                ),
            }),
        }
    }
}

/// The JSON body of a send.
#[derive(Serialize)]
struct SendBody<'a> {
    recipient: Value,
    messaging_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    message: &'a OutgoingMessage,
}

/// The Send API `recipient` object: exactly one identifying key, plus `name` for a phone number
/// when one is given.
fn recipient_json(recipient: &Recipient) -> Value {
    match recipient {
        Recipient::Id(v) => json!({ "id": v }),
        Recipient::LoginId(v) => json!({ "login_id": v }),
        Recipient::UserRef(v) => json!({ "user_ref": v }),
        Recipient::NotificationToken(v) => json!({ "notification_messages_token": v }),
        Recipient::PhoneNumber { number, name } => {
            match name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                Some(name) => json!({ "phone_number": number, "name": name_json(name) }),
                None => json!({ "phone_number": number }),
            }
        }
    }
}

/// Meta documents `name` as `{first_name, last_name}`; the port carries one string, split at the
/// first whitespace ("Ada King Lovelace" -> "Ada" / "King Lovelace"; one word -> first name only).
fn name_json(name: &str) -> Value {
    match name.split_once(char::is_whitespace) {
        Some((first, last)) if !last.trim().is_empty() => {
            json!({ "first_name": first, "last_name": last.trim() })
        }
        _ => json!({ "first_name": name }),
    }
}

/// A complete HTTP answer: status, usage headers and the (scrubbed) body.
struct Answer {
    status: u16,
    usage: Usage,
    body: Vec<u8>,
}

async fn read_answer(
    op: &'static str,
    result: Result<reqwest::Response, reqwest::Error>,
    secrets: &[&str],
) -> Result<Answer, SendError> {
    let response = result.map_err(|e| transport(op, e, secrets))?;
    let status = response.status().as_u16();
    let usage = usage_of(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| transport(op, e, secrets))?;
    Ok(Answer {
        status,
        usage,
        body: scrub_body(&body, secrets),
    })
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// `X-App-Usage`, `X-Business-Use-Case-Usage` and `Retry-After` folded into a [`Usage`].
fn usage_of(headers: &HeaderMap) -> Usage {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Usage::from_headers(
        get("x-app-usage"),
        get("x-business-use-case-usage"),
        get("retry-after"),
    )
}

/// A failed exchange as [`SendError::Transport`], without the URL (it holds the tokens).
fn transport(op: &str, err: reqwest::Error, secrets: &[&str]) -> SendError {
    // A connect timeout is both: nothing was sent, which is what `Connect` promises.
    let failure = if err.is_connect() {
        TransportFailure::Connect
    } else if err.is_timeout() {
        TransportFailure::Timeout
    } else {
        TransportFailure::Other
    };
    let kind = match failure {
        TransportFailure::Timeout => "timeout",
        TransportFailure::Connect => "connect",
        TransportFailure::Other => "transport",
    };
    let err = err.without_url();
    SendError::Transport {
        failure,
        detail: format!("{op}: {kind}: {}", error_text(&err, secrets)),
    }
}

/// An error and its sources, joined, scrubbed and capped.
fn error_text(err: &(dyn std::error::Error + 'static), secrets: &[&str]) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    let mut text = redact(&text, secrets);
    if text.len() > MAX_DETAIL_BYTES {
        let mut end = MAX_DETAIL_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= MIN_REDACT_LEN) {
        if out.contains(*s) {
            out = out.replace(*s, REDACTED);
        }
    }
    out
}

/// The body with any secret replaced (the body is only copied when one occurs).
fn scrub_body(body: &[u8], secrets: &[&str]) -> Vec<u8> {
    let found = secrets
        .iter()
        .any(|s| s.len() >= MIN_REDACT_LEN && body.windows(s.len()).any(|w| w == s.as_bytes()));
    if found {
        redact(&String::from_utf8_lossy(body), secrets).into_bytes()
    } else {
        body.to_vec()
    }
}

/// An id given as a JSON string or number (Graph uses both).
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `debug_token`'s `data` object, read tolerantly.
fn token_info(data: &serde_json::Map<String, Value>) -> TokenInfo {
    TokenInfo {
        is_valid: match data.get("is_valid") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        },
        app_id: data.get("app_id").and_then(id_string),
        user_id: data.get("user_id").and_then(id_string),
        scopes: data
            .get("scopes")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        expires_at_secs: data.get("expires_at").and_then(int_of),
        issued_at_secs: data.get("issued_at").and_then(int_of),
        error_message: data
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An absolute `http(s)` URL without query or fragment.
fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("base URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err("base URL must be an http(s) URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("base URL must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// `v<digits>.<digits>`.
fn check_version(v: &str) -> Result<(), String> {
    let ok = v
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("API version must look like v25.0, got {v:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> GraphClient {
        GraphClient::new(GraphConfig {
            base_url: base.to_owned(),
            ..GraphConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn endpoints_are_encoded_under_the_base() {
        let c = client("https://graph.facebook.com");
        assert_eq!(
            c.endpoint(&["1001", "messages"]).as_str(),
            "https://graph.facebook.com/v25.0/1001/messages"
        );
        let c = client("http://127.0.0.1:9/prefix/");
        assert_eq!(
            c.endpoint(&["a/b?c", "messages"]).as_str(),
            "http://127.0.0.1:9/prefix/v25.0/a%2Fb%3Fc/messages"
        );
        // The Instagram-Login path goes to the Instagram host, the Page path stays.
        let c = GraphClient::new(GraphConfig::default()).unwrap();
        assert_eq!(
            c.endpoint_on(SendApi::InstagramLogin, &["178", "messages"])
                .as_str(),
            "https://graph.instagram.com/v25.0/178/messages"
        );
        assert_eq!(
            c.endpoint_on(SendApi::Facebook, &["me", "messages"])
                .as_str(),
            "https://graph.facebook.com/v25.0/me/messages"
        );
        assert_eq!(
            GraphConfig::at("https://graph.facebook.com/"),
            GraphConfig {
                base_url: "https://graph.facebook.com/".into(),
                ..GraphConfig::default()
            },
            "Meta's host keeps Meta's Instagram host beside it"
        );
        let c = GraphClient::new(GraphConfig::at("http://127.0.0.1:9")).unwrap();
        assert_eq!(
            c.endpoint_on(SendApi::InstagramLogin, &["178", "messages"])
                .as_str(),
            "http://127.0.0.1:9/v25.0/178/messages"
        );
    }

    #[test]
    fn config_is_validated() {
        let bad = |f: fn(&mut GraphConfig)| {
            let mut c = GraphConfig::default();
            f(&mut c);
            GraphClient::new(c).is_err()
        };
        assert!(bad(|c| c.base_url = "graph.facebook.com".into()));
        assert!(bad(|c| c.base_url = "ftp://x".into()));
        assert!(bad(|c| c.base_url = "https://x/?a=b".into()));
        assert!(bad(|c| c.instagram_base_url = "graph.instagram.com".into()));
        assert!(bad(|c| c.api_version = "25.0".into()));
        assert!(bad(|c| c.api_version = "v25".into()));
        assert!(bad(|c| c.api_version = "v25.0/x".into()));
        assert!(bad(|c| c.timeout = Duration::ZERO));
        assert!(!bad(|_| {}));
    }

    #[test]
    fn recipients_have_one_key() {
        assert_eq!(
            recipient_json(&Recipient::LoginId("L".into())),
            json!({"login_id": "L"})
        );
        assert_eq!(
            recipient_json(&Recipient::NotificationToken("N".into())),
            json!({"notification_messages_token": "N"})
        );
        assert_eq!(
            recipient_json(&Recipient::PhoneNumber {
                number: "+1(212)555-2368".into(),
                name: Some(" Ada  King Lovelace ".into())
            }),
            json!({"phone_number": "+1(212)555-2368",
                   "name": {"first_name": "Ada", "last_name": "King Lovelace"}})
        );
        assert_eq!(
            recipient_json(&Recipient::PhoneNumber {
                number: "+1".into(),
                name: Some("  ".into())
            }),
            json!({"phone_number": "+1"})
        );
        assert_eq!(name_json("Cher"), json!({"first_name": "Cher"}));
    }

    #[test]
    fn proof_is_hex_hmac() {
        // RFC 4231 test case 2.
        let p = appsecret_proof(
            &Secret::new("Jefe"),
            &Secret::new("what do ya want for nothing?"),
        );
        assert_eq!(
            p.as_deref(),
            Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn redaction() {
        let secrets = ["EAAtoken12345", "short"];
        assert_eq!(
            redact("x EAAtoken12345 y short", &secrets),
            "x [redacted] y short"
        );
        assert_eq!(scrub_body(b"{\"a\":1}", &secrets), b"{\"a\":1}".to_vec());
        assert_eq!(
            scrub_body(b"{\"m\":\"EAAtoken12345\"}", &secrets),
            b"{\"m\":\"[redacted]\"}".to_vec()
        );
    }

    #[test]
    fn token_info_is_tolerant() {
        let v = json!({"is_valid": true, "app_id": 123, "user_id": "456",
                       "scopes": ["email", 3], "expires_at": "1700000000"});
        let Value::Object(data) = v else { panic!() };
        let t = token_info(&data);
        assert!(t.is_valid);
        assert_eq!(t.app_id.as_deref(), Some("123"));
        assert_eq!(t.user_id.as_deref(), Some("456"));
        assert_eq!(t.scopes, vec!["email".to_owned()]);
        assert_eq!(t.expires_at_secs, Some(1_700_000_000));
        assert_eq!(t.error_message, None);
    }
}
