//! The event-bus port's contract, run on the in-memory twin and on EventBridge (moto, a rule
//! delivering to an SQS queue, as the business's queue gets it). `delivered` returns the
//! envelopes the business received so far (`source`, `detail-type`, `detail`): for the twin the
//! events it holds, for EventBridge the messages on the rule's queue.

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::{json, Value};

use crate::bus::{publish_all, BusEvent, DetailType, PersonIds};
use crate::ports::bus::MAX_ENTRIES;
use crate::ports::EventBus;

/// The envelope a rule target receives for `e` (what the twin's `delivered` should build).
pub fn envelope(e: &BusEvent) -> Value {
    json!({
        "source": "login-connect",
        "detail-type": e.detail_type.as_str(),
        "detail": serde_json::to_value(&e.detail).unwrap_or(Value::Null),
    })
}

fn sample(run: &str, i: usize) -> BusEvent {
    let types = [
        DetailType::OptInReceived,
        DetailType::FirstMessageSent,
        DetailType::MessageReceived,
        DetailType::PersonLinked,
    ];
    BusEvent::new(
        types[i % types.len()],
        &format!("{run}:fact:{i}"),
        1_700_000_000_000 + i as i64,
        "messenger",
        "100",
        PersonIds {
            psid: Some(format!("psid-{run}-{i}")),
            ..PersonIds::default()
        },
        json!({"n": i, "text": "héllo \"quoted\" \u{1F600}"}),
    )
}

/// Envelopes by event id, for this run's events only (other runs share a moto queue).
fn by_id(got: &[Value], run: &str) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in got {
        let mine = v["detail"]["person"]["psid"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("psid-{run}-")));
        if let (true, Some(id)) = (mine, v["detail"]["event_id"].as_str()) {
            out.entry(id.to_string()).or_default().push(v.clone());
        }
    }
    out
}

/// More than one batch of events is published; every one arrives once, whole, with its id,
/// type and detail unchanged. Publishing them again (a redelivered queue message) brings the
/// same ids again: consumers dedupe on `event_id`.
pub async fn run_all<F, Fut>(bus: &dyn EventBus, delivered: F, run: &str)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Vec<Value>>,
{
    let events: Vec<BusEvent> = (0..MAX_ENTRIES + 3).map(|i| sample(run, i)).collect();
    publish_all(bus, &events).await.expect("published");
    let got = by_id(&delivered(events.len()).await, run);
    assert_eq!(got.len(), events.len(), "{run}: every event arrives");
    for e in &events {
        let copies = &got[&e.detail.event_id];
        assert_eq!(copies.len(), 1, "{run}: {} once", e.detail.event_id);
        let want = envelope(e);
        for field in ["source", "detail-type", "detail"] {
            assert_eq!(copies[0][field], want[field], "{run}: {field} unchanged");
        }
    }

    publish_all(bus, &events[..2]).await.expect("republished");
    let again = by_id(&delivered(events.len() + 2).await, run);
    let ids: Vec<&String> = again.keys().collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "{run}: a republished fact keeps its id"
    );
    for e in &events[..2] {
        assert_eq!(again[&e.detail.event_id].len(), 2, "{run}: delivered again");
    }
}
