//! Meta's data-deletion callback and its status page, mapped from [`DataDeletion`]'s answers.
//! Meta calls the callback unsigned by AWS (it signs the body with the app secret instead), and
//! the person opens the status page in a browser: both are served on a Function URL with
//! `AuthType: NONE`.
//!
//! # `POST /data-deletion` (form body `signed_request=…`)
//! | status | body | when |
//! |---|---|---|
//! | 200 | `{"url":"https://<host>/data-deletion/status?code=<code>","confirmation_code":"<code>"}` | verified, and everything stored for that user deleted |
//! | 400 | `{"error":"bad_request","detail"}` | no `signed_request` field, or it is malformed (not two base64url parts, not JSON, no `user_id`, another algorithm) |
//! | 401 | `{"error":"invalid_signature"}` | no app secret of this deployment signed it |
//! | 401 | `{"error":"expired"}` | authentic but past `expires` (or over a day old without one) |
//! | 413 | `{"error":"payload_too_large"}` | over 8 KiB |
//! | 503 | `{"error":"unavailable","detail"}` | secrets or the table unavailable: Meta may ask again (the same request gets the same code) |
//!
//! # `GET /data-deletion/status?code=<code>`
//! 200 with a small HTML page for people (JSON with `Accept: application/json`:
//! `{"confirmation_code","status","requested_at","completed_at","items_deleted"}`); 400 for a
//! code that is not 32 hex digits; 404 for an unknown (or expired) code; 503.
//!
//! The signed request is never logged; the user id only hashed (by the core).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{
    ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lc_core::people::deletion::{DataDeletion, DeletionAnswer, StatusAnswer};
use lc_core::people::signed_request::Refused;
use lc_core::ports::identity::{DeletionReceipt, DeletionStatus};
use lc_core::support::time::format_rfc3339_ms;

use crate::people::json;

pub const DELETION_PATH: &str = "/data-deletion";
pub const STATUS_PATH: &str = "/data-deletion/status";

const BODY_FORGED: &str = "{\"error\":\"invalid_signature\"}";
const BODY_EXPIRED: &str = "{\"error\":\"expired\"}";
const BODY_TOO_LARGE: &str = "{\"error\":\"payload_too_large\"}";
const BODY_NOT_FOUND: &str = "{\"error\":\"not_found\"}";
const BODY_UNAVAILABLE: &str =
    "{\"error\":\"unavailable\",\"detail\":\"temporarily unavailable, please retry\"}";

pub(crate) fn routes(deletion: Arc<DataDeletion>) -> Router {
    Router::new()
        .route(
            DELETION_PATH,
            post(request).fallback(|| method_not_allowed("POST")),
        )
        .route(
            "/data-deletion/",
            post(request).fallback(|| method_not_allowed("POST")),
        )
        .route(
            STATUS_PATH,
            get(status).fallback(|| method_not_allowed("GET")),
        )
        .with_state(deletion)
}

async fn request(
    State(deletion): State<Arc<DataDeletion>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Where the status page is, decided before anything is deleted: an answer must follow.
    let Some(base) = base_url(deletion.config().public_base_url.as_deref(), &headers) else {
        return bad_request("the request names no usable Host");
    };
    let answer = deletion.request(&body).await;
    let (resp, outcome) = match answer {
        DeletionAnswer::Accepted { confirmation_code } => {
            let body = serde_json::json!({
                "url": format!("{base}{STATUS_PATH}?code={confirmation_code}"),
                "confirmation_code": confirmation_code,
            });
            (json(StatusCode::OK, body.to_string()), "deleted")
        }
        DeletionAnswer::BadRequest(why) | DeletionAnswer::Refused(Refused::Malformed(why)) => {
            (bad_request(why), "malformed")
        }
        DeletionAnswer::Refused(Refused::Forged) => {
            (json(StatusCode::UNAUTHORIZED, BODY_FORGED), "forged")
        }
        DeletionAnswer::Refused(Refused::Expired) => {
            (json(StatusCode::UNAUTHORIZED, BODY_EXPIRED), "expired")
        }
        DeletionAnswer::TooLarge => (
            json(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
            "too_large",
        ),
        DeletionAnswer::Unavailable => (
            json(StatusCode::SERVICE_UNAVAILABLE, BODY_UNAVAILABLE),
            "unavailable",
        ),
    };
    tracing::info!(
        outcome,
        status = resp.status().as_u16(),
        "data-deletion request"
    );
    resp
}

async fn status(
    State(deletion): State<Arc<DataDeletion>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let code = query
        .ok()
        .and_then(|Query(q)| q.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v))
        .unwrap_or_default();
    let wants_json = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    match deletion.status(&code).await {
        StatusAnswer::Found(r) if wants_json => json(StatusCode::OK, receipt_json(&r)),
        StatusAnswer::Found(r) => (
            StatusCode::OK,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-store"),
                (X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (CONTENT_SECURITY_POLICY, "default-src 'none'"),
            ],
            receipt_html(&r),
        )
            .into_response(),
        StatusAnswer::BadRequest(why) => bad_request(why),
        StatusAnswer::NotFound => json(StatusCode::NOT_FOUND, BODY_NOT_FOUND),
        StatusAnswer::Unavailable => json(StatusCode::SERVICE_UNAVAILABLE, BODY_UNAVAILABLE),
    }
}

/// `https://<Host>` (or the configured base): the Host must look like a host name, so a forged
/// header cannot inject markup or a path into the url Meta shows the person.
fn base_url(configured: Option<&str>, headers: &HeaderMap) -> Option<String> {
    if let Some(base) = configured {
        return Some(base.trim_end_matches('/').to_string());
    }
    let host = headers.get(HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    ok.then(|| format!("https://{host}"))
}

fn status_text(s: DeletionStatus) -> &'static str {
    match s {
        DeletionStatus::Completed => {
            "Completed: every record this service held about you has been deleted."
        }
        DeletionStatus::InProgress => {
            "In progress: your request was received and is being carried out."
        }
    }
}

fn receipt_json(r: &DeletionReceipt) -> String {
    serde_json::json!({
        "confirmation_code": r.code,
        "status": r.status.as_str(),
        "requested_at": format_rfc3339_ms(r.requested_at_ms),
        "completed_at": r.completed_at_ms.map(format_rfc3339_ms),
        "items_deleted": r.items_deleted,
    })
    .to_string()
}

/// Every value is ours (a hex code, fixed texts, times, a count): nothing to escape.
fn receipt_html(r: &DeletionReceipt) -> String {
    let completed = r
        .completed_at_ms
        .map(|t| format!("<p>Completed: {}</p>", format_rfc3339_ms(t)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Data deletion request</title></head><body>\
         <h1>Your data deletion request</h1>\
         <p>Confirmation code: <code>{code}</code></p>\
         <p>Status: {status}</p>\
         <p>Requested: {requested}</p>{completed}\
         <p>Records deleted: {items}</p></body></html>",
        code = r.code,
        status = status_text(r.status),
        requested = format_rfc3339_ms(r.requested_at_ms),
        items = r.items_deleted,
    )
}

fn bad_request(why: &'static str) -> Response {
    let body = serde_json::json!({"error": "bad_request", "detail": why});
    json(StatusCode::BAD_REQUEST, body.to_string())
}

async fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        "{\"error\":\"method_not_allowed\"}",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_url_comes_from_a_plain_host() {
        let mut h = HeaderMap::new();
        assert_eq!(base_url(None, &h), None);
        h.insert(
            HOST,
            HeaderValue::from_static("abc.lambda-url.eu-west-1.on.aws"),
        );
        assert_eq!(
            base_url(None, &h).as_deref(),
            Some("https://abc.lambda-url.eu-west-1.on.aws")
        );
        h.insert(HOST, HeaderValue::from_static("evil/\"><x"));
        assert_eq!(base_url(None, &h), None);
        assert_eq!(
            base_url(Some("http://127.0.0.1:8080/"), &h).as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }
}
