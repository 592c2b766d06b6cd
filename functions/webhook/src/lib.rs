//! The webhook Lambda: translates Function URL requests to the transport-free endpoint in
//! `lc_core::webhook::intake` and back. Everything with a decision in it lives in `lc-core`.
//! Each outcome is logged and counted (`lc_adapters::metrics`; `main` flushes per invocation).

use lambda_http::{Body, Request, RequestExt, Response};
use lc_core::webhook::intake::{self, Ingest, Outcome};

/// Handles one Function URL request.
pub async fn handle(ingest: &Ingest, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let query: Vec<(String, String)> = req
        .query_string_parameters()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    // lambda_http has already base64-decoded bodies the Function URL marked isBase64Encoded.
    let body: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    let (resp, outcome) = ingest
        .handle(intake::Request {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: &query,
            signature_256: header("x-hub-signature-256"),
            has_signature_sha1: req.headers().contains_key("x-hub-signature"),
            body,
        })
        .await;
    log_outcome(&outcome, body.len());
    Ok(Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type)
        .body(Body::Text(resp.body))?)
}

fn log_outcome(outcome: &Outcome, bytes: usize) {
    match outcome {
        Outcome::Accepted {
            events,
            quarantined,
            send_calls,
            retried_entries,
        } => tracing::info!(
            outcome = "accepted",
            events,
            quarantined,
            send_calls,
            retried_entries,
            bytes,
            "webhook accepted"
        ),
        Outcome::SignatureRefused(why) => {
            tracing::warn!(
                outcome = "signature_refused",
                reason = why.as_str(),
                bytes,
                "webhook refused"
            )
        }
        Outcome::EnqueueFailed { events, unsent } => {
            tracing::error!(
                outcome = "enqueue_failed",
                events,
                unsent,
                "webhook not queued; Meta will retry"
            )
        }
        other => tracing::info!(outcome = ?other, "webhook request"),
    }
}
