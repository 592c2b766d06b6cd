//! The login callback and its sample page, mapped from [`Login`]'s decisions, behind CORS.
//!
//! # Answers of `POST /login`
//! | status | body | when |
//! |---|---|---|
//! | 202 | `{"login_id_hash","state","deadline_at"}` | queued (state `queued`, or the opt-in's state when it already exists) |
//! | 202 | `{"login_id_hash","state":"awaiting_webhook","reason"}` | verified, but no evidence the grant happened in this login (`reason`: `grant_not_new`, `token_not_fresh`): nothing queued, the webhook decides |
//! | 400 | `{"error":"bad_request","detail"}` | body not JSON / no token / bad or unknown `page_id` / an `external_id` that is forged, expired or not a valid id |
//! | 401 | `{"error":"invalid_token","reason"}` | token invalid, expired, for another app, or not a user token |
//! | 413 | `{"error":"payload_too_large"}` | body over [`lc_core::login::MAX_BODY_BYTES`] |
//! | 422 | `{"error":"not_opted_in","detail"}` | `user_messenger_contact` not granted |
//! | 500 | `{"error":"not_configured","detail"}` | no app credentials / client token for the app |
//! | 501 | `{"error":"not_implemented","detail"}` | derivation switched off (`derive_login_id = false`) |
//! | 502 | `{"error":"bad_gateway","detail"}` | Graph refused the check itself (e.g. our app token) |
//! | 503 | `{"error":"unavailable","detail"}` | Graph unreachable / throttled, secrets or queue down: retry |
//!
//! # CORS
//! `Access-Control-Allow-Origin` is only ever an echo of an allowed origin
//! ([`lc_core::login::LoginConfig::allowed_origins`]); every answer of these routes varies on
//! `Origin`. A preflight is answered 204; one from an origin not allowed gets no other CORS
//! header, so the browser learns nothing about the API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ORIGIN,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use lc_core::login::{Login, LoginAnswer, Outcome, PageAnswer};
use lc_core::support::time::format_rfc3339_ms;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::page;

/// The path the page posts the token to.
pub const LOGIN_PATH: &str = "/login";

pub const BODY_NOT_FOUND: &str = "{\"error\":\"not_found\"}";
pub const BODY_METHOD: &str = "{\"error\":\"method_not_allowed\"}";
pub const BODY_TOO_LARGE: &str = "{\"error\":\"payload_too_large\"}";
pub const BODY_DISABLED: &str = "{\"error\":\"not_implemented\",\"detail\":\"login_id derivation is switched off on this deployment (LC_DERIVE_LOGIN_ID=false); opt-ins are recorded when Meta's messaging_optins webhook arrives\"}";
pub const BODY_NOT_OPTED_IN: &str = "{\"error\":\"not_opted_in\",\"detail\":\"the person did not opt in: user_messenger_contact was not granted\"}";
pub const BODY_UNAVAILABLE: &str =
    "{\"error\":\"unavailable\",\"detail\":\"temporarily unavailable, please retry\"}";
pub const BODY_BAD_GATEWAY: &str =
    "{\"error\":\"bad_gateway\",\"detail\":\"the access token could not be checked\"}";

pub(crate) fn routes(login: Arc<Login>) -> Router {
    let cors = cors(&login.config().allowed_origins);
    let page_route = || -> MethodRouter<Arc<Login>> {
        // HEAD would otherwise reach the GET handler.
        get(page)
            .head(page_method_not_allowed)
            .fallback(page_method_not_allowed)
    };
    let login_route = || post(login_callback).fallback(login_method_not_allowed);
    Router::new()
        .route("/", page_route())
        .route(LOGIN_PATH, login_route())
        .route("/login/", login_route())
        .with_state(login)
        .layer(cors)
        .layer(middleware::from_fn(preflight_answer))
}

fn cors(allowed_origins: &[String]) -> CorsLayer {
    let allowed: Arc<[String]> = allowed_origins
        .iter()
        .map(|a| a.trim().trim_end_matches('/').to_string())
        .filter(|a| !a.is_empty())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| origin_allowed(&allowed, o))
        }))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
        .vary([ORIGIN])
}

/// Exact matches, ASCII case-insensitive. "null" is what sandboxed frames and file:// pages
/// send: never a configured site.
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    !origin.is_empty() && origin != "null" && allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// tower-http answers a preflight 200 and lists the methods, headers and max-age whatever the
/// origin; this service answers 204 and tells an origin it does not serve nothing but `Vary`.
async fn preflight_answer(req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = next.run(req).await;
    if preflight {
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let headers = resp.headers_mut();
        if !headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            for name in [
                ACCESS_CONTROL_ALLOW_METHODS,
                ACCESS_CONTROL_ALLOW_HEADERS,
                ACCESS_CONTROL_MAX_AGE,
            ] {
                headers.remove(name);
            }
        }
    }
    resp
}

async fn page(
    State(login): State<Arc<Login>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let reset = query.iter().any(|(k, v)| k == "reset" && v == "1");
    let (answer, outcome) = login.page(reset).await;
    let resp = match answer {
        PageAnswer::Page(view) => (
            StatusCode::OK,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
                (CONTENT_SECURITY_POLICY, page::csp(&view.sdk_url)),
                (CACHE_CONTROL, "no-store".to_string()),
                (X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                (
                    REFERRER_POLICY,
                    "strict-origin-when-cross-origin".to_string(),
                ),
            ],
            page::render(&view),
        )
            .into_response(),
        PageAnswer::Unavailable => json(StatusCode::SERVICE_UNAVAILABLE, BODY_UNAVAILABLE),
    };
    log_outcome(&outcome, resp.status());
    resp
}

async fn login_callback(State(login): State<Arc<Login>>, body: Bytes) -> Response {
    let (answer, outcome) = login.login(&body).await;
    let resp = match answer {
        LoginAnswer::Queued {
            login_id_hash,
            state,
            deadline_at_ms,
        } => {
            let body = serde_json::json!({
                "login_id_hash": login_id_hash,
                "state": state,
                "deadline_at": format_rfc3339_ms(deadline_at_ms),
            });
            json(StatusCode::ACCEPTED, body.to_string())
        }
        LoginAnswer::AwaitingWebhook {
            login_id_hash,
            reason,
        } => {
            let body = serde_json::json!({
                "login_id_hash": login_id_hash,
                "state": "awaiting_webhook",
                "reason": reason.as_str(),
            });
            json(StatusCode::ACCEPTED, body.to_string())
        }
        LoginAnswer::BadRequest(why) => {
            let body = serde_json::json!({"error": "bad_request", "detail": why});
            json(StatusCode::BAD_REQUEST, body.to_string())
        }
        LoginAnswer::TooLarge => json(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
        LoginAnswer::Disabled => json(StatusCode::NOT_IMPLEMENTED, BODY_DISABLED),
        LoginAnswer::TokenRefused(reason) => json(
            StatusCode::UNAUTHORIZED,
            format!("{{\"error\":\"invalid_token\",\"reason\":\"{reason}\"}}"),
        ),
        LoginAnswer::NotOptedIn => json(StatusCode::UNPROCESSABLE_ENTITY, BODY_NOT_OPTED_IN),
        LoginAnswer::NotConfigured(why) => {
            let body = serde_json::json!({"error": "not_configured", "detail": why});
            json(StatusCode::INTERNAL_SERVER_ERROR, body.to_string())
        }
        LoginAnswer::GraphRefused => json(StatusCode::BAD_GATEWAY, BODY_BAD_GATEWAY),
        LoginAnswer::Unavailable => json(StatusCode::SERVICE_UNAVAILABLE, BODY_UNAVAILABLE),
    };
    log_outcome(&outcome, resp.status());
    resp
}

async fn page_method_not_allowed() -> Response {
    method_not_allowed("GET, OPTIONS")
}

async fn login_method_not_allowed() -> Response {
    method_not_allowed("POST, OPTIONS")
}

fn method_not_allowed(allow: &'static str) -> Response {
    tracing::info!(
        outcome = "method_not_allowed",
        status = 405,
        "login request"
    );
    let mut resp = json(StatusCode::METHOD_NOT_ALLOWED, BODY_METHOD);
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

pub(crate) async fn not_found() -> Response {
    tracing::info!(outcome = "not_found", status = 404, "login request");
    json(StatusCode::NOT_FOUND, BODY_NOT_FOUND)
}

/// Answers that must not be cached or sniffed (they may carry a person's state).
fn json(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.into(),
    )
        .into_response()
}

/// Logs carry the outcome, the Page id and a hash of the `login_id`; never the access token.
fn log_outcome(outcome: &Outcome, status: StatusCode) {
    let status = status.as_u16();
    match outcome {
        Outcome::Accepted {
            login_id_hash,
            page_id,
            state,
            existing,
        } => tracing::info!(
            outcome = "accepted",
            status,
            login_id_hash = %login_id_hash,
            page_id = %page_id,
            state,
            existing,
            "login opt-in queued"
        ),
        Outcome::AwaitingWebhook {
            login_id_hash,
            page_id,
            reason,
        } => tracing::info!(
            outcome = "awaiting_webhook",
            status,
            login_id_hash = %login_id_hash,
            page_id = %page_id,
            reason = reason.as_str(),
            "login without evidence of a new grant: nothing queued, the webhook decides"
        ),
        Outcome::TokenRefused(reason) => {
            tracing::info!(outcome = "token_refused", status, reason, "login refused")
        }
        Outcome::ScopeMissing => tracing::info!(
            outcome = "scope_missing",
            status,
            "login without user_messenger_contact"
        ),
        Outcome::GraphUnavailable(rule) => tracing::warn!(
            outcome = "graph_unavailable",
            status,
            rule,
            "debug_token failed; the page may retry"
        ),
        Outcome::GraphRefused { code, subcode } => tracing::error!(
            outcome = "graph_refused",
            status,
            code = ?code,
            subcode = ?subcode,
            "debug_token refused our call: check the app id and secret"
        ),
        Outcome::NotConfigured(why) => tracing::error!(
            outcome = "not_configured",
            status,
            why,
            "login not configured"
        ),
        Outcome::EnqueueFailed | Outcome::SecretsUnavailable => {
            tracing::error!(outcome = ?outcome, status, "login not recorded; the page may retry")
        }
        other => tracing::info!(outcome = ?other, status, "login request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_ignoring_case() {
        let allowed = ["https://shop.example".to_string()];
        assert!(origin_allowed(&allowed, "https://shop.example"));
        assert!(origin_allowed(&allowed, "HTTPS://Shop.Example"));
        for other in [
            "",
            "null",
            "https://shop.example.evil.example",
            "http://shop.example",
        ] {
            assert!(!origin_allowed(&allowed, other), "{other}");
        }
        assert!(!origin_allowed(&[], "null"));
    }
}
