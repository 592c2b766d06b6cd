//! The webhook intake on in-memory adapters: GIVEN a configured intake, WHEN Meta's handshake or
//! a body arrives, THEN the decision, the queue and the metrics are exactly as Meta and the events
//! function need. (How decisions become statuses and bodies: `lc-api`'s tests.)

use std::sync::Arc;
use std::time::Duration;

use lc_core::memory::{MemoryQueue, QueueFault};
use lc_core::ports::{Clock, MemoryMetrics, Metric, SecretSource};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Intake, IntakeConfig, Outcome, Receipt, VerifyDecision};
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

struct Setup {
    intake: Intake,
    queue: Arc<MemoryQueue>,
    metrics: Arc<MemoryMetrics>,
}

fn setup() -> Setup {
    setup_max(64 * 1024)
}

fn setup_max(max_body_bytes: usize) -> Setup {
    setup_with(IntakeConfig {
        max_body_bytes,
        retry_base: Duration::from_millis(1),
        ..IntakeConfig::default()
    })
}

fn setup_with(config: IntakeConfig) -> Setup {
    let queue = Arc::new(MemoryQueue::new("events"));
    let metrics = Arc::new(MemoryMetrics::new());
    let secrets: Arc<dyn SecretSource> = Arc::new(secrets());
    Setup {
        intake: Intake::new(
            queue.clone(),
            secrets,
            Arc::new(FixedClock),
            metrics.clone(),
            config,
        ),
        queue,
        metrics,
    }
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

async fn post(s: &Setup, body: &[u8], sig: Option<&str>) -> (Receipt, Outcome) {
    s.intake.receive(sig, false, body).await
}

fn queued(q: &MemoryQueue) -> Vec<InboundEvent> {
    q.bodies()
        .iter()
        .map(|b| InboundEvent::from_json(b).expect("queue holds valid events"))
        .collect()
}

#[tokio::test]
async fn subscription_handshake() {
    let s = setup();
    let echo = |c: &str| VerifyDecision::Echo(c.to_string());
    let cases = [
        (
            (Some("subscribe"), Some(VERIFY), Some("1158201444")),
            echo("1158201444"),
        ),
        (
            (Some("subscribe"), Some("wrong"), Some("1")),
            VerifyDecision::Refused,
        ),
        (
            (Some("unsubscribe"), Some(VERIFY), Some("1")),
            VerifyDecision::Refused,
        ),
        (
            (Some("subscribe"), Some(VERIFY), Some("")),
            VerifyDecision::Refused,
        ),
        (
            (Some("subscribe"), Some(""), Some("1")),
            VerifyDecision::Refused,
        ),
        (
            (Some("subscribe"), Some(VERIFY), Some(&*"9".repeat(257))),
            VerifyDecision::Refused,
        ),
        ((None, None, None), VerifyDecision::Refused),
    ];
    for ((mode, token, challenge), want) in cases {
        let got = s.intake.verify_subscription(mode, token, challenge).await;
        assert_eq!(got, want, "{mode:?} {token:?} {challenge:?}");
    }
    assert!(
        s.metrics.snapshot().is_empty(),
        "a handshake is not counted"
    );
}

#[tokio::test]
async fn signed_body_is_queued_event_by_event() {
    let s = setup();
    let body = optin_body(3);
    let (receipt, outcome) = post(&s, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(receipt, Receipt::Accepted);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            events: 3,
            quarantined: 0,
            ..
        }
    ));
    let events = queued(&s.queue);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kind == EventKind::Optin && e.account_id == "100"));
    assert_eq!(s.metrics.take(), vec![], "SQS counts what was queued");
}

/// An opt-in, a delivery, a read, an echo, a reaction and a delivery of the wrong shape, in
/// one body.
fn mixed_body() -> String {
    let item = |event: &str| {
        format!(
            r#"{{"sender":{{"id":"7"}},"recipient":{{"id":"100"}},"timestamp":1700000000000,{event}}}"#
        )
    };
    let items = [
        item(r#""optin":{"login_id":"login-1"}"#),
        item(r#""delivery":{"mids":["m_1"],"watermark":1700000000000}"#),
        item(r#""read":{"watermark":1700000000000}"#),
        item(r#""message":{"mid":"m_2","text":"hi","is_echo":true,"app_id":1}"#),
        item(r#""reaction":{"mid":"m_1","action":"react","reaction":"love"}"#),
        item(r#""delivery":"not an object""#),
    ];
    format!(
        r#"{{"object":"page","entry":[{{"id":"100","time":1700000000000,"messaging":[{}]}}]}}"#,
        items.join(",")
    )
}

#[tokio::test]
async fn what_is_heard_only_as_a_switched_off_detail_type_is_not_queued() {
    use lc_core::bus::DetailType;
    let body = mixed_body();
    let sig = sign(SECRET, body.as_bytes());
    let kinds = |s: &Setup| -> Vec<EventKind> { queued(&s.queue).iter().map(|e| e.kind).collect() };

    let every = setup_with(IntakeConfig::default());
    assert_eq!(
        post(&every, body.as_bytes(), Some(&sig)).await.0,
        Receipt::Accepted
    );
    assert_eq!(
        kinds(&every),
        [
            EventKind::Optin,
            EventKind::Delivery,
            EventKind::Read,
            EventKind::Echo,
            EventKind::Reaction,
            EventKind::Malformed
        ],
        "nothing switched off: every event is queued"
    );

    let off = setup_with(IntakeConfig::default().skipping(&[
        DetailType::DeliveryRead,
        DetailType::MessageEcho,
        // Switched off too, but an opt-in has effects of its own: still queued.
        DetailType::OptInReceived,
    ]));
    let (receipt, outcome) = post(&off, body.as_bytes(), Some(&sig)).await;
    assert_eq!(receipt, Receipt::Accepted);
    assert!(
        matches!(
            outcome,
            Outcome::Accepted {
                events: 6,
                skipped: 3,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        kinds(&off),
        [EventKind::Optin, EventKind::Reaction, EventKind::Malformed],
        "a malformed delivery is kept for the quarantine, never skipped"
    );
    assert_eq!(off.metrics.take(), vec![Metric::WebhookEventsSkipped(3)]);
}

#[tokio::test]
async fn second_app_secret_is_accepted() {
    let s = setup();
    let body = optin_body(1);
    let sig = sign(SECOND_APP_SECRET, body.as_bytes());
    assert_eq!(
        post(&s, body.as_bytes(), Some(&sig)).await.0,
        Receipt::Accepted
    );
    assert_eq!(s.queue.len(), 1);
}

#[tokio::test]
async fn every_refusal_looks_the_same_and_queues_nothing() {
    let s = setup();
    let body = optin_body(1);
    let good = sign(SECRET, body.as_bytes());
    let sha1_only = s.intake.receive(None, true, body.as_bytes()).await;
    assert_eq!(
        sha1_only,
        (
            Receipt::Unauthorized,
            Outcome::SignatureRefused(SignatureError::Sha1Only)
        )
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
    let mut counted = vec![Metric::SignatureFailure(SignatureError::Sha1Only)];
    for (sig, b, why) in cases {
        let (receipt, outcome) = post(&s, b, sig.as_deref()).await;
        assert_eq!(receipt, sha1_only.0, "the same answer for {why:?}");
        assert_eq!(outcome, Outcome::SignatureRefused(why));
        counted.push(Metric::SignatureFailure(why));
    }
    assert!(s.queue.is_empty());
    assert_eq!(
        s.metrics.take(),
        counted,
        "one failure per refusal, by reason"
    );
}

#[tokio::test]
async fn signed_garbage_is_quarantined_not_lost() {
    let s = setup();
    for body in [
        &b"not json at all"[..],
        b"{\"object\":\"page\",\"entry\":[{\"id\":",
        b"\xff\xfe bytes",
    ] {
        let (receipt, outcome) = post(&s, body, Some(&sign(SECRET, body))).await;
        assert_eq!(receipt, Receipt::Accepted);
        assert!(
            matches!(outcome, Outcome::Accepted { quarantined: 1, .. }),
            "{outcome:?}"
        );
    }
    let events = queued(&s.queue);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kind == EventKind::Quarantined && e.quarantine.is_some()));
    assert_eq!(
        s.metrics.take(),
        (0..3).map(|_| Metric::Quarantined(1)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn queue_outage_is_retried_then_refused() {
    let s = setup();
    let body = optin_body(2);
    let sig = sign(SECRET, body.as_bytes());

    s.queue.set_fault(QueueFault::FailCalls(2));
    let (receipt, outcome) = post(&s, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        receipt,
        Receipt::Accepted,
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
    assert_eq!(s.queue.len(), 2);
    s.metrics.take();

    s.queue.set_fault(QueueFault::FailCalls(100));
    let (receipt, outcome) = post(&s, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        receipt,
        Receipt::NotQueued,
        "Meta must retry when the queue did not take the events"
    );
    assert_eq!(
        outcome,
        Outcome::EnqueueFailed {
            events: 2,
            unsent: 2
        }
    );
    assert_eq!(s.metrics.take(), vec![Metric::EnqueueFailure]);
}

#[tokio::test]
async fn refused_entries_are_resent_alone() {
    let s = setup();
    let body = optin_body(3);
    s.queue.set_fault(QueueFault::RejectEntries {
        containing: "login-1".into(),
        times: 1,
    });
    let (receipt, outcome) = post(&s, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(receipt, Receipt::Accepted);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            retried_entries: 1,
            ..
        }
    ));
    let mut ids: Vec<String> = queued(&s.queue)
        .iter()
        .map(|e| e.item.get().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event exactly once");
    assert_eq!(s.queue.len(), 3);
}

#[tokio::test]
async fn batches_respect_the_ten_entry_limit() {
    let s = setup();
    let body = optin_body(25);
    let (receipt, outcome) = post(&s, body.as_bytes(), Some(&sign(SECRET, body.as_bytes()))).await;
    assert_eq!(receipt, Receipt::Accepted);
    assert!(matches!(
        outcome,
        Outcome::Accepted {
            events: 25,
            send_calls: 3,
            ..
        }
    ));
    assert_eq!(s.queue.calls(), 3);
}

#[tokio::test]
async fn too_large_is_refused_before_anything_else() {
    let s = setup();
    let big = vec![b' '; 64 * 1024 + 1];
    let (receipt, outcome) = post(&s, &big, Some(&sign(SECRET, &big))).await;
    assert_eq!((receipt, outcome), (Receipt::TooLarge, Outcome::TooLarge));
    let edge = vec![b' '; 64 * 1024];
    assert_eq!(
        post(&s, &edge, Some(&sign(SECRET, &edge))).await.0,
        Receipt::Accepted,
        "at the limit: signed, so quarantined rather than lost"
    );
}

#[tokio::test]
async fn each_event_carries_the_app_whose_secret_verified_it() {
    for (secret, app) in [(SECRET, "1"), (SECOND_APP_SECRET, "2")] {
        let s = setup();
        let body = optin_body(2);
        let (receipt, _) = s
            .intake
            .receive(Some(&sign(secret, body.as_bytes())), false, body.as_bytes())
            .await;
        assert_eq!(receipt, Receipt::Accepted);
        let events: Vec<InboundEvent> = s
            .queue
            .bodies()
            .iter()
            .map(|b| InboundEvent::from_json(b).expect("event"))
            .collect();
        assert_eq!(events.len(), 2);
        for e in &events {
            assert_eq!(e.app_id.as_deref(), Some(app));
        }
    }
    // The key does not depend on the app: two apps' copies of one event are one event.
    let (a, b) = (setup(), setup());
    let body = optin_body(1);
    for (s, secret) in [(&a, SECRET), (&b, SECOND_APP_SECRET)] {
        s.intake
            .receive(Some(&sign(secret, body.as_bytes())), false, body.as_bytes())
            .await;
    }
    let key = |s: &Setup| {
        InboundEvent::from_json(&s.queue.bodies()[0])
            .expect("event")
            .key
    };
    assert_eq!(key(&a), key(&b));
}

/// Found by the fuzzer: bodies SQS would refuse on every retry, so Meta's retries never land.
#[tokio::test]
async fn what_the_queue_would_refuse_is_made_safe_or_kept_whole() {
    // A control character in `object` went into a message attribute as it was.
    let s = setup();
    let body = r#"{"object":"\u0000","entry":[{"id":"1","messaging":[{}]}]}"#;
    let (receipt, _) = s
        .intake
        .receive(Some(&sign(SECRET, body.as_bytes())), false, body.as_bytes())
        .await;
    assert_eq!(receipt, Receipt::Accepted);
    for attributes in s.queue.attributes() {
        for (_, v) in &attributes {
            assert!(v.chars().all(|c| c >= ' '), "{v:?}");
        }
    }

    // An event larger than one queue message (a giant mid): the body is kept whole in
    // quarantine instead of that event; nothing is lost.
    let s = setup_max(1024 * 1024);
    let mid = "m".repeat(700 * 1024);
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"100","time":1700000000000,"messaging":[{{"sender":{{"id":"7"}},"recipient":{{"id":"100"}},"timestamp":1700000000000,"message":{{"mid":"{mid}","text":"hi"}}}}]}}]}}"#
    );
    let (receipt, outcome) = s
        .intake
        .receive(Some(&sign(SECRET, body.as_bytes())), false, body.as_bytes())
        .await;
    assert_eq!(receipt, Receipt::Accepted);
    assert!(
        matches!(outcome, Outcome::Accepted { quarantined, .. } if quarantined > 0),
        "{outcome:?}"
    );
    let bodies = s.queue.bodies();
    assert!(bodies.iter().all(|b| b.len() < 1024 * 1024));
    let kinds: Vec<EventKind> = bodies
        .iter()
        .map(|b| InboundEvent::from_json(b).expect("event").kind)
        .collect();
    assert!(
        kinds.iter().all(|k| *k == EventKind::Quarantined),
        "{kinds:?}"
    );
}
