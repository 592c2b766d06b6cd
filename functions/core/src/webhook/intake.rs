//! The webhook endpoint, independent of how HTTP reaches it (Lambda Function URL, the local
//! runner's server, tests).
//!
//! `GET` answers Meta's subscription handshake. `POST` verifies the signature over the raw
//! bytes, splits the body into one queue message per event, and answers 200 only once the queue
//! accepted every one of them; otherwise 500 so Meta retries (duplicates are absorbed later by
//! idempotency). A signed body we cannot parse is queued raw as quarantined and still gets 200:
//! nothing signed is lost.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::ports::queue::batches;
use crate::ports::{Clock, OutMessage, PortError, QueueSender, SecretSource};
use crate::webhook::signature::{self, SignatureError};
use crate::webhook::{split_body, InboundEvent, SplitOutcome};

/// Fixed response bodies: a refusal says nothing about why beyond its status.
pub const BODY_OK: &str = "EVENT_RECEIVED";
pub const BODY_UNAUTHORIZED: &str = "{\"error\":\"unauthorized\"}";
pub const BODY_FORBIDDEN: &str = "{\"error\":\"forbidden\"}";
pub const BODY_NOT_FOUND: &str = "{\"error\":\"not found\"}";
pub const BODY_METHOD: &str = "{\"error\":\"method not allowed\"}";
pub const BODY_TOO_LARGE: &str = "{\"error\":\"payload too large\"}";
pub const BODY_RETRY: &str = "{\"error\":\"temporarily unavailable, retry\"}";

/// Longest `hub.challenge` we echo (Meta sends a short number).
const MAX_CHALLENGE_LEN: usize = 256;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Larger bodies get 413. Meta batches at most a few hundred KB; Lambda allows 6 MB.
    pub max_body_bytes: usize,
    /// Send rounds for entries the queue refused (1 = no retry).
    pub send_rounds: u32,
    /// Wait before the second round; doubles each round.
    pub retry_base: Duration,
    /// Paths served (the Function URL root and `/webhook`).
    pub paths: Vec<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 1024 * 1024,
            send_rounds: 4,
            retry_base: Duration::from_millis(50),
            paths: vec!["/".into(), "/webhook".into()],
        }
    }
}

/// The parts of an HTTP request the endpoint needs. Query values are already percent-decoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// `X-Hub-Signature-256`.
    pub signature_256: Option<&'a str>,
    /// Whether a legacy `X-Hub-Signature` header was present.
    pub has_signature_sha1: bool,
    /// The body exactly as received (already base64-decoded if the transport encoded it).
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn json(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

/// What happened, for logs and metrics (no secrets, no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Verified,
    VerifyRefused,
    SignatureRefused(SignatureError),
    Accepted {
        events: usize,
        quarantined: usize,
        send_calls: usize,
        retried_entries: usize,
    },
    EnqueueFailed {
        events: usize,
        unsent: usize,
    },
    SecretsUnavailable,
    TooLarge,
    NotFound,
    MethodNotAllowed,
}

pub struct Ingest {
    queue: Arc<dyn QueueSender>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    config: IngestConfig,
}

impl Ingest {
    pub fn new(
        queue: Arc<dyn QueueSender>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        config: IngestConfig,
    ) -> Self {
        Ingest {
            queue,
            secrets,
            clock,
            config,
        }
    }

    pub async fn handle(&self, req: Request<'_>) -> (Response, Outcome) {
        let path = req.path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        if !self.config.paths.iter().any(|p| p == path) {
            return (Response::json(404, BODY_NOT_FOUND), Outcome::NotFound);
        }
        match req.method {
            "GET" => self.verify_subscription(req.query).await,
            "POST" => self.receive(req).await,
            _ => (Response::json(405, BODY_METHOD), Outcome::MethodNotAllowed),
        }
    }

    async fn verify_subscription(&self, query: &[(String, String)]) -> (Response, Outcome) {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let forbidden = (Response::json(403, BODY_FORBIDDEN), Outcome::VerifyRefused);
        let (Some("subscribe"), Some(token), Some(challenge)) = (
            get("hub.mode"),
            get("hub.verify_token"),
            get("hub.challenge"),
        ) else {
            return forbidden;
        };
        if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
            return forbidden;
        }
        let Ok(secrets) = self.secrets.secrets().await else {
            return (Response::json(503, BODY_RETRY), Outcome::SecretsUnavailable);
        };
        if !secrets.verify_token.matches(token) {
            return forbidden;
        }
        (
            Response {
                status: 200,
                content_type: "text/plain",
                body: challenge.to_string(),
            },
            Outcome::Verified,
        )
    }

    async fn receive(&self, req: Request<'_>) -> (Response, Outcome) {
        if req.body.len() > self.config.max_body_bytes {
            return (Response::json(413, BODY_TOO_LARGE), Outcome::TooLarge);
        }
        let secrets = match self.secrets.secrets().await {
            Ok(s) => s,
            // 5xx: Meta retries, and a secrets outage must not look like a forgery.
            Err(_) => return (Response::json(503, BODY_RETRY), Outcome::SecretsUnavailable),
        };
        if let Err(e) = signature::verify(
            req.signature_256,
            req.has_signature_sha1,
            req.body,
            secrets.app_secrets(),
        ) {
            return (
                Response::json(401, BODY_UNAUTHORIZED),
                Outcome::SignatureRefused(e),
            );
        }

        let received_at = self.clock.now_ms();
        let (events, quarantined) = match split_body(req.body, received_at) {
            SplitOutcome::Events(events) => (events, 0),
            SplitOutcome::Quarantined { events, .. } => {
                let n = events.len();
                (events, n)
            }
        };
        let messages = match encode(&events) {
            Ok(m) => m,
            Err(_) => {
                return (
                    Response::json(500, BODY_RETRY),
                    Outcome::EnqueueFailed {
                        events: events.len(),
                        unsent: events.len(),
                    },
                )
            }
        };
        match self.send_all(messages).await {
            SendReport {
                unsent: 0,
                calls,
                retried,
            } => (
                Response {
                    status: 200,
                    content_type: "text/plain",
                    body: BODY_OK.into(),
                },
                Outcome::Accepted {
                    events: events.len(),
                    quarantined,
                    send_calls: calls,
                    retried_entries: retried,
                },
            ),
            SendReport { unsent, .. } => (
                Response::json(500, BODY_RETRY),
                Outcome::EnqueueFailed {
                    events: events.len(),
                    unsent,
                },
            ),
        }
    }

    /// Sends every message, batch calls in parallel, re-sending refused entries for a few
    /// rounds with a doubling pause.
    async fn send_all(&self, mut pending: Vec<OutMessage>) -> SendReport {
        let mut calls = 0;
        let mut retried = 0;
        for round in 0..self.config.send_rounds.max(1) {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                retried += pending.len();
                tokio::time::sleep(self.config.retry_base * 2u32.pow(round - 1)).await;
            }
            let groups = batches(&pending);
            calls += groups.len();
            let results = join_all(groups.iter().map(|b| self.queue.send_batch(b))).await;
            let mut failed_ids: Vec<String> = Vec::new();
            for (group, result) in groups.iter().zip(results) {
                match result {
                    Ok(failures) => failed_ids.extend(failures.into_iter().map(|f| f.id)),
                    Err(PortError::Unavailable(_)) | Err(PortError::Rejected(_)) => {
                        failed_ids.extend(group.iter().map(|m| m.id.clone()))
                    }
                }
            }
            pending.retain(|m| failed_ids.contains(&m.id));
        }
        SendReport {
            unsent: pending.len(),
            calls,
            retried,
        }
    }
}

struct SendReport {
    unsent: usize,
    calls: usize,
    retried: usize,
}

/// Encodes events as queue messages. Entry ids are positions, unique within the body.
pub fn encode(events: &[InboundEvent]) -> Result<Vec<OutMessage>, serde_json::Error> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(OutMessage {
                id: i.to_string(),
                body: sqs_safe(e.to_json()?),
                attributes: vec![
                    ("kind".into(), e.kind.as_str().into()),
                    ("object".into(), non_empty(&e.object)),
                ],
                delay_secs: 0,
            })
        })
        .collect()
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

/// SQS refuses U+FFFE and U+FFFF in a body. JSON only allows them inside strings, where the
/// `\uXXXX` escape means the same thing, so escaping them keeps the event and its meaning.
fn sqs_safe(json: String) -> String {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json;
    }
    json.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_safe_escapes_only_forbidden_chars() {
        assert_eq!(sqs_safe("{\"a\":\"é\"}".into()), "{\"a\":\"é\"}");
        let fixed = sqs_safe("{\"a\":\"x\u{FFFF}\"}".into());
        assert_eq!(fixed, "{\"a\":\"x\\uffff\"}");
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["a"], "x\u{FFFF}");
    }
}
