//! The webhook endpoint on in-memory adapters: GIVEN a configured endpoint, WHEN a request
//! arrives, THEN the response and the queue are exactly as Meta and the events function need.

use std::sync::Arc;
use std::time::Duration;

use lc_core::memory::{MemoryQueue, QueueFault};
use lc_core::ports::Clock;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{self, Ingest, IngestConfig, Outcome, Request, Response};
use lc_core::webhook::signature::{sign, SignatureError};
use lc_core::webhook::{EventKind, InboundEvent};

const SECRET: &str = "app-secret-1";
const SECOND_APP_SECRET: &str = "app-secret-2";
const VERIFY: &str = "verify-me";

struct FixedClock;
impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        1_700_000_000_000
    }
}

fn secrets() -> Arc<Secrets> {
    let app = |id: &str, s: &str| AppCredentials {
        app_id: id.into(),
        app_secret: Secret::new(s),
        client_token: Secret::default(),
    };
    Arc::new(Secrets {
        apps: vec![app("1", SECRET), app("2", SECOND_APP_SECRET)],
        verify_token: Secret::new(VERIFY),
        ..Default::default()
    })
}

type Endpoint = Ingest;

fn endpoint() -> (Endpoint, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new("events"));
    let config = IngestConfig {
        max_body_bytes: 64 * 1024,
        retry_base: Duration::from_millis(1),
        ..IngestConfig::default()
    };
    (
        Ingest::new(
            queue.clone(),
            Arc::new(secrets()),
            Arc::new(FixedClock),
            config,
        ),
        queue,
    )
}

fn optin_body(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"recipient":{{"id":"100"}},"timestamp":{},"optin":{{"login_id":"login-{i}"}}}}"#,
                1_700_000_000_000i64 + i as i64
            )
        })
        .collect();
    format!(
        r#"{{"object":"page","entry":[{{"id":"100","time":1700000000000,"messaging":[{}]}}]}}"#,
        items.join(",")
    )
}

async fn post(ep: &Endpoint, body: &[u8], sig: Option<&str>) -> (Response, Outcome) {
    ep.handle(Request {
        method: "POST",
        path: "/webhook",
        query: &[],
        signature_256: sig,
        has_signature_sha1: false,
        body,
    })
    .await
}

fn queued(q: &MemoryQueue) -> Vec<InboundEvent> {
    q.bodies()
        .iter()
        .map(|b| InboundEvent::from_json(b).expect("queue holds valid events"))
        .collect()
}

#[tokio::test]
async fn subscription_handshake() {
    let (ep, _) = endpoint();
    let q = |mode: &str, token: &str, challenge: &str| {
        vec![
            ("hub.mode".to_string(), mode.to_string()),
            ("hub.verify_token".to_string(), token.to_string()),
            ("hub.challenge".to_string(), challenge.to_string()),
        ]
    };
    let cases = [
        (q("subscribe", VERIFY, "1158201444"), 200, "1158201444"),
        (q("subscribe", "wrong", "1"), 403, intake::BODY_FORBIDDEN),
        (q("unsubscribe", VERIFY, "1"), 403, intake::BODY_FORBIDDEN),
        (q("subscribe", VERIFY, ""), 403, intake::BODY_FORBIDDEN),
        (q("subscribe", "", "1"), 403, intake::BODY_FORBIDDEN),
        (vec![], 403, intake::BODY_FORBIDDEN),
    ];
    for (query, status, body) in cases {
        let (resp, _) = ep
            .handle(Request {
                method: "GET",
                path: "/webhook",
                query: &query,
                signature_256: None,
                has_signature_sha1: false,
                body: b"",
            })
            .await;
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (status, body),
            "{query:?}"
        );
    }
}

#[tokio::test]
async fn signed_body_is_queued_event_by_event() {
    let (ep, q) = endpoint();
    let body = optin_body(3);
    let (resp, outcome) = post(&ep, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, intake::BODY_OK);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            events: 3,
            quarantined: 0,
            ..
        }
    ));
    let events = queued(&q);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kind == EventKind::Optin && e.account_id == "100"));
}

#[tokio::test]
async fn second_app_secret_is_accepted() {
    let (ep, q) = endpoint();
    let body = optin_body(1);
    let sig = sign(SECOND_APP_SECRET, body.as_bytes());
    assert_eq!(post(&ep, body.as_bytes(), Some(&sig)).await.0.status, 200);
    assert_eq!(q.len(), 1);
}

#[tokio::test]
async fn every_refusal_looks_the_same_and_queues_nothing() {
    let (ep, q) = endpoint();
    let body = optin_body(1);
    let good = sign(SECRET, body.as_bytes());
    let sha1_only = ep
        .handle(Request {
            method: "POST",
            path: "/webhook",
            query: &[],
            signature_256: None,
            has_signature_sha1: true,
            body: body.as_bytes(),
        })
        .await;
    assert_eq!(
        sha1_only.1,
        Outcome::SignatureRefused(SignatureError::Sha1Only)
    );
    let forged_body = body.replace("login-0", "login-X");
    let cases: Vec<(Option<String>, &[u8], SignatureError)> = vec![
        (None, body.as_bytes(), SignatureError::Missing),
        (
            Some("sha256=abc".into()),
            body.as_bytes(),
            SignatureError::Malformed,
        ),
        (
            Some(sign("guess", body.as_bytes())),
            body.as_bytes(),
            SignatureError::Mismatch,
        ),
        (
            Some(good.clone()),
            forged_body.as_bytes(),
            SignatureError::Mismatch,
        ),
    ];
    for (sig, b, why) in cases {
        let (resp, outcome) = post(&ep, b, sig.as_deref()).await;
        assert_eq!(resp, sha1_only.0, "same status and body for {why:?}");
        assert_eq!(outcome, Outcome::SignatureRefused(why));
        assert!(!resp.body.contains(&good[7..15]));
    }
    assert_eq!(sha1_only.0.status, 401);
    assert!(q.is_empty());
}

#[tokio::test]
async fn signed_garbage_is_quarantined_not_lost() {
    let (ep, q) = endpoint();
    for body in [
        &b"not json at all"[..],
        b"{\"object\":\"page\",\"entry\":[{\"id\":",
        b"\xff\xfe bytes",
    ] {
        let (resp, outcome) = post(&ep, body, Some(&sign(SECRET, body))).await;
        assert_eq!(resp.status, 200);
        assert!(
            matches!(outcome, Outcome::Accepted { quarantined: 1, .. }),
            "{outcome:?}"
        );
    }
    let events = queued(&q);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kind == EventKind::Quarantined && e.quarantine.is_some()));
}

#[tokio::test]
async fn queue_outage_is_retried_then_answered_500() {
    let (ep, q) = endpoint();
    let body = optin_body(2);
    let sig = sign(SECRET, body.as_bytes());

    q.set_fault(QueueFault::FailCalls(2));
    let (resp, outcome) = post(&ep, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        resp.status, 200,
        "two failed calls are absorbed by the retry rounds"
    );
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            send_calls: 3,
            retried_entries: 4,
            ..
        }
    ));
    assert_eq!(q.len(), 2);

    q.set_fault(QueueFault::FailCalls(100));
    let (resp, outcome) = post(&ep, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        resp.status, 500,
        "Meta must retry when the queue did not take the events"
    );
    assert_eq!(
        outcome,
        Outcome::EnqueueFailed {
            events: 2,
            unsent: 2
        }
    );
}

#[tokio::test]
async fn refused_entries_are_resent_alone() {
    let (ep, q) = endpoint();
    let body = optin_body(3);
    q.set_fault(QueueFault::RejectEntries {
        containing: "login-1".into(),
        times: 1,
    });
    let (resp, outcome) = post(&ep, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(resp.status, 200);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            retried_entries: 1,
            ..
        }
    ));
    let mut ids: Vec<String> = queued(&q)
        .iter()
        .map(|e| e.item.get().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event exactly once");
    assert_eq!(q.len(), 3);
}

#[tokio::test]
async fn batches_respect_the_ten_entry_limit() {
    let (ep, q) = endpoint();
    let body = optin_body(25);
    let (resp, outcome) = post(&ep, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(resp.status, 200);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            events: 25,
            send_calls: 3,
            ..
        }
    ));
    assert_eq!(q.calls(), 3);
}

#[tokio::test]
async fn limits_paths_and_methods() {
    let (ep, q) = endpoint();
    let big = vec![b' '; 64 * 1024 + 1];
    let (resp, _) = post(&ep, &big, Some(&sign(SECRET, &big))).await;
    assert_eq!(resp.status, 413);
    for (method, path, status) in [
        ("POST", "/other", 404),
        ("PUT", "/webhook", 405),
        ("DELETE", "/", 405),
    ] {
        let (resp, _) = ep
            .handle(Request {
                method,
                path,
                query: &[],
                signature_256: None,
                has_signature_sha1: false,
                body: b"",
            })
            .await;
        assert_eq!(resp.status, status, "{method} {path}");
    }
    assert!(q.is_empty());
}
