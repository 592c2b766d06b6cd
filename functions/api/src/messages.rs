//! `POST /v1/messages`: the business's follow-ups, mapped from [`FollowUps::accept`]'s answer.
//!
//! Deployed, the Function URL has `AuthType: AWS_IAM`: AWS checks the caller's SigV4 signature
//! and IAM permission before this code runs, so the handler itself does no authentication.
//! Locally (`login-connect serve`) it listens on 127.0.0.1 without any.
//!
//! | status | body | when |
//! |---|---|---|
//! | 202 | `{"request_id","status","duplicate","decision":{"messaging_type","tag","rule"},"message_id"?}` | accepted for delivery; a retry with the same key gets the same `request_id` and the request's current `status` (`accepted`, `sending`, `sent`, `failed`, `refused`) |
//! | 400 | `{"error":"bad_request","detail"}` | not a valid request (the detail names the field) |
//! | 409 | `{"error":"page_paused","request_id","rule","reason"}` + `Retry-After` | the Page is paused: retry later |
//! | 413 | `{"error":"payload_too_large"}` | body over [`MAX_BODY_BYTES`] |
//! | 422 | `{"error":"refused","request_id","rule","reason","window_closed_at"?,"human_agent_until"?}` | the policy refused it (times RFC 3339, also as `*_ms`) |
//! | 422 | `{"error":"idempotency_key_reused","request_id","detail"}` | the key already names another request |
//! | 503 | `{"error":"unavailable","detail"}` | a backend failed: retry with the same key |
//! | 405 | `{"error":"method_not_allowed"}` | any method but POST |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Router;
use lc_core::sending::followup::{Answer, FollowUps};
use lc_core::sending::policy::Rule;
use lc_core::support::time::format_rfc3339_ms;
use serde_json::{json, Value};

/// The endpoint's path.
pub const MESSAGES_PATH: &str = "/v1/messages";
/// A follow-up is a Messenger message and a few fields: far below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) fn routes(followups: Arc<FollowUps>) -> Router {
    Router::new()
        .route(MESSAGES_PATH, endpoint())
        .route("/v1/messages/", endpoint())
        .with_state(followups)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn endpoint() -> MethodRouter<Arc<FollowUps>> {
    post(send).fallback(method_not_allowed)
}

async fn send(
    State(followups): State<Arc<FollowUps>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large"}),
            )
        }
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "detail": e.body_text()}),
            )
        }
    };
    let answer = followups.accept(&body).await;
    let status = respond(&answer);
    tracing::info!(status = status.0.as_u16(), "messages request");
    let mut resp = json(status.0, status.1);
    if status.0 == StatusCode::CONFLICT {
        let secs = followups.config().paused_recheck_ms / 1000;
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

fn respond(answer: &Answer) -> (StatusCode, Value) {
    match answer {
        Answer::Accepted(v) => {
            let mut body = json!({
                "request_id": v.request_id,
                "status": v.state.as_str(),
                "duplicate": v.duplicate,
                "decision": {
                    "messaging_type": v.messaging_type.as_str(),
                    "tag": v.tag,
                    "rule": v.rule,
                },
            });
            if let Some(m) = &v.message_id {
                body["message_id"] = json!(m);
            }
            (StatusCode::ACCEPTED, body)
        }
        Answer::Refused {
            request_id,
            refusal,
        } => {
            let paused = refusal.rule == Rule::PagePaused;
            let mut body = json!({
                "error": if paused { "page_paused" } else { "refused" },
                "request_id": request_id,
                "rule": refusal.rule.as_str(),
                "reason": refusal.reason,
            });
            if let Some(at) = refusal.window_closed_at_ms {
                body["window_closed_at"] = json!(format_rfc3339_ms(at));
                body["window_closed_at_ms"] = json!(at);
            }
            if let Some(at) = refusal.human_agent_until_ms {
                body["human_agent_until"] = json!(format_rfc3339_ms(at));
                body["human_agent_until_ms"] = json!(at);
            }
            let status = if paused {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, body)
        }
        Answer::Invalid(detail) => (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "detail": detail}),
        ),
        Answer::KeyReused { request_id } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": "idempotency_key_reused",
                "request_id": request_id,
                "detail": "this idempotency_key already names another request; use a new key for a new message",
            }),
        ),
        Answer::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "unavailable",
                "detail": "temporarily unavailable: retry with the same idempotency_key",
            }),
        ),
    }
}

async fn method_not_allowed() -> Response {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"error": "method_not_allowed"}),
    );
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static("POST"));
    resp
}

fn json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
