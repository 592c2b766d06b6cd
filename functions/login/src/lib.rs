//! The login Lambda: translates Function URL requests to the transport-free endpoint in
//! `lc_core::login` and back. Everything with a decision in it lives in `lc-core`.
//!
//! Logs carry the outcome, the Page id and a hash of the `login_id`; never the access token (it
//! is only in the request body, which is handed to the endpoint and not logged).

use lambda_http::{Body, Request, RequestExt, Response};
use lc_core::login::{self, Login, Outcome};

/// Handles one Function URL request.
pub async fn handle(endpoint: &Login, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let query: Vec<(String, String)> = req
        .query_string_parameters()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    // lambda_http has already base64-decoded bodies the Function URL marked isBase64Encoded.
    let body: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    let (resp, outcome) = endpoint
        .handle_with_outcome(login::Request {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: &query,
            origin,
            body,
        })
        .await;
    log_outcome(&outcome, resp.status);
    let mut builder = Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type);
    for (name, value) in &resp.headers {
        builder = builder.header(*name, value.as_str());
    }
    Ok(builder.body(Body::Text(resp.body))?)
}

fn log_outcome(outcome: &Outcome, status: u16) {
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
        Outcome::NotConfigured(why) => {
            tracing::error!(
                outcome = "not_configured",
                status,
                why,
                "login not configured"
            )
        }
        Outcome::EnqueueFailed | Outcome::SecretsUnavailable => {
            tracing::error!(outcome = ?outcome, status, "login not recorded; the page may retry")
        }
        other => tracing::info!(outcome = ?other, status, "login request"),
    }
}
