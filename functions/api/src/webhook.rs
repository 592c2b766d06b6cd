//! Meta's webhook: the subscription handshake (`GET`) and signed event bodies (`POST`), mapped
//! from [`Intake`]'s decisions to the statuses Meta acts on: 200 only once every event is
//! queued; 5xx makes Meta retry; every signature refusal is the same 401.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use lc_core::webhook::intake::{Intake, Outcome, Receipt, VerifyDecision};

/// Fixed response bodies: a refusal says nothing about why beyond its status.
pub const BODY_OK: &str = "EVENT_RECEIVED";
pub const BODY_UNAUTHORIZED: &str = "{\"error\":\"unauthorized\"}";
pub const BODY_FORBIDDEN: &str = "{\"error\":\"forbidden\"}";
pub const BODY_NOT_FOUND: &str = "{\"error\":\"not found\"}";
pub const BODY_METHOD: &str = "{\"error\":\"method not allowed\"}";
pub const BODY_TOO_LARGE: &str = "{\"error\":\"payload too large\"}";
pub const BODY_RETRY: &str = "{\"error\":\"temporarily unavailable, retry\"}";

pub(crate) fn routes(intake: Arc<Intake>, at_root: bool) -> Router {
    let mut router = Router::new()
        .route("/webhook", endpoint())
        .route("/webhook/", endpoint());
    if at_root {
        router = router.route("/", endpoint());
    }
    router.with_state(intake)
}

fn endpoint() -> MethodRouter<Arc<Intake>> {
    // HEAD would otherwise reach the GET handler.
    get(verify)
        .post(receive)
        .head(method_not_allowed)
        .fallback(method_not_allowed)
}

async fn verify(
    State(intake): State<Arc<Intake>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let decision = intake
        .verify_subscription(
            get("hub.mode"),
            get("hub.verify_token"),
            get("hub.challenge"),
        )
        .await;
    match decision {
        VerifyDecision::Echo(challenge) => {
            tracing::info!(outcome = "verified", "webhook request");
            text(StatusCode::OK, challenge)
        }
        VerifyDecision::Refused => {
            tracing::info!(outcome = "verify_refused", "webhook request");
            json(StatusCode::FORBIDDEN, BODY_FORBIDDEN)
        }
        VerifyDecision::SecretsUnavailable => {
            tracing::info!(outcome = "secrets_unavailable", "webhook request");
            json(StatusCode::SERVICE_UNAVAILABLE, BODY_RETRY)
        }
    }
}

async fn receive(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Bytes) -> Response {
    let signature_256 = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let has_sha1 = headers.contains_key("x-hub-signature");
    let (receipt, outcome) = intake.receive(signature_256, has_sha1, &body).await;
    log_outcome(&outcome, body.len());
    match receipt {
        Receipt::Accepted => text(StatusCode::OK, BODY_OK.to_string()),
        Receipt::TooLarge => json(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
        Receipt::Unauthorized => json(StatusCode::UNAUTHORIZED, BODY_UNAUTHORIZED),
        // 5xx: Meta retries.
        Receipt::SecretsUnavailable => json(StatusCode::SERVICE_UNAVAILABLE, BODY_RETRY),
        Receipt::NotQueued => json(StatusCode::INTERNAL_SERVER_ERROR, BODY_RETRY),
    }
}

async fn method_not_allowed() -> Response {
    tracing::info!(outcome = "method_not_allowed", "webhook request");
    let mut resp = json(StatusCode::METHOD_NOT_ALLOWED, BODY_METHOD);
    // axum would list HEAD, which is refused here.
    resp.headers_mut()
        .insert("allow", axum::http::HeaderValue::from_static("GET, POST"));
    resp
}

pub(crate) async fn not_found() -> Response {
    tracing::info!(outcome = "not_found", "webhook request");
    json(StatusCode::NOT_FOUND, BODY_NOT_FOUND)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/plain")], body).into_response()
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn log_outcome(outcome: &Outcome, bytes: usize) {
    match outcome {
        // The common path (queued at the first call, nothing quarantined) at DEBUG: the events
        // function writes the opt-in's INFO line.
        Outcome::Accepted {
            events,
            quarantined: 0,
            skipped,
            send_calls,
            retried_entries: 0,
        } => tracing::debug!(
            outcome = "accepted",
            events,
            skipped,
            send_calls,
            bytes,
            "webhook accepted"
        ),
        Outcome::Accepted {
            events,
            quarantined,
            skipped,
            send_calls,
            retried_entries,
        } => tracing::info!(
            outcome = "accepted",
            events,
            quarantined,
            skipped,
            send_calls,
            retried_entries,
            bytes,
            "webhook accepted"
        ),
        Outcome::SignatureRefused(why) => tracing::warn!(
            outcome = "signature_refused",
            reason = why.as_str(),
            bytes,
            "webhook refused"
        ),
        Outcome::EnqueueFailed { events, unsent } => tracing::error!(
            outcome = "enqueue_failed",
            events,
            unsent,
            "webhook not queued; Meta will retry"
        ),
        other => tracing::info!(outcome = ?other, "webhook request"),
    }
}
