//! Replaying quarantined events, once the cause is fixed (a parser that learned a new shape, a
//! page config corrected). Operators trigger it by sending one message to the events queue
//! from the SQS console: `{"replay": "quarantine", "limit": 100}`.
//!
//! Whole bodies are reassembled from their parts and split again; items are re-read from the
//! stored event. What parses now is processed like any fresh event (idempotently) and its
//! quarantine record deleted; what still does not parse stays, untouched.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::ports::store::QuarantinedRecord;
use crate::webhook::model::MessagingItem;
use crate::webhook::{split_body, EventKind, InboundEvent, SplitOutcome};

/// The console command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplayCommand {
    /// Must be `quarantine`.
    pub replay: String,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    100
}

impl ReplayCommand {
    /// Recognizes the command among queue bodies (an `InboundEvent` never has `replay`).
    pub fn parse(body: &str) -> Option<ReplayCommand> {
        serde_json::from_str::<ReplayCommand>(body)
            .ok()
            .filter(|c| c.replay == "quarantine")
    }
}

/// What the records turn into now.
#[derive(Debug, Default)]
pub struct ReplayPlan {
    /// Events that parse now, with the record ids to delete once they are processed.
    pub ready: Vec<(Vec<InboundEvent>, Vec<String>)>,
    /// Record ids that still cannot be acted on (or whose body parts are incomplete).
    pub still_quarantined: Vec<String>,
}

/// One stored part of a quarantined body.
struct Part {
    index: u32,
    of: u32,
    encoding: String,
    data: String,
    record_id: String,
}

/// Reassembles and re-parses quarantined records.
pub fn plan(records: &[QuarantinedRecord], now_ms: i64) -> ReplayPlan {
    let mut plan = ReplayPlan::default();
    // Whole bodies: group parts by body hash.
    let mut bodies: BTreeMap<String, Vec<Part>> = BTreeMap::new();
    for r in records {
        let Ok(event) = InboundEvent::from_json(&r.event_json) else {
            plan.still_quarantined.push(r.id.clone());
            continue;
        };
        match (&event.kind, &event.quarantine) {
            (EventKind::Quarantined, Some(q)) => {
                bodies.entry(q.body_sha256.clone()).or_default().push(Part {
                    index: q.part,
                    of: q.parts,
                    encoding: q.encoding.clone(),
                    data: q.data.clone(),
                    record_id: r.id.clone(),
                })
            }
            (EventKind::Malformed, _) => match reparse_item(&event) {
                Some(fixed) => plan.ready.push((vec![fixed], vec![r.id.clone()])),
                None => plan.still_quarantined.push(r.id.clone()),
            },
            // Anything else was quarantined for a reason outside the parser (e.g. an opt-in
            // without its key): process it again as it is.
            _ => plan.ready.push((vec![event], vec![r.id.clone()])),
        }
    }
    for (_, mut parts) in bodies {
        parts.sort_by_key(|p| p.index);
        parts.dedup_by_key(|p| p.index);
        let ids: Vec<String> = parts.iter().map(|p| p.record_id.clone()).collect();
        let expected = parts.first().map(|p| p.of).unwrap_or(0) as usize;
        if parts.len() != expected {
            plan.still_quarantined.extend(ids);
            continue;
        }
        let mut body = Vec::new();
        let mut ok = true;
        for p in &parts {
            if p.encoding == "base64" {
                match base64::engine::general_purpose::STANDARD.decode(&p.data) {
                    Ok(b) => body.extend(b),
                    Err(_) => ok = false,
                }
            } else {
                body.extend_from_slice(p.data.as_bytes());
            }
        }
        match (ok, split_body(&body, now_ms)) {
            (true, SplitOutcome::Events(events)) => plan.ready.push((events, ids)),
            _ => plan.still_quarantined.extend(ids),
        }
    }
    plan
}

/// A malformed item that parses now, with its kind recomputed.
fn reparse_item(event: &InboundEvent) -> Option<InboundEvent> {
    let item = MessagingItem::parse(&event.item).ok()?;
    let kind = item.kind();
    if matches!(kind, EventKind::Malformed | EventKind::Unknown) {
        return None;
    }
    let mut fixed = event.clone();
    fixed.kind = kind;
    fixed.sender = item.subject(&event.object).or_else(|| event.sender.clone());
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(e: &InboundEvent) -> QuarantinedRecord {
        QuarantinedRecord {
            id: e.key.clone(),
            reason: "test".into(),
            received_at_ms: 0,
            event_json: e.to_json().unwrap(),
        }
    }

    #[test]
    fn command_is_recognized_and_events_are_not() {
        assert_eq!(
            ReplayCommand::parse(r#"{"replay":"quarantine"}"#).map(|c| c.limit),
            Some(100)
        );
        assert!(ReplayCommand::parse(r#"{"replay":"other"}"#).is_none());
        assert!(ReplayCommand::parse(r#"{"v":1,"key":"k"}"#).is_none());
    }

    #[test]
    fn a_split_body_is_reassembled_only_when_whole() {
        // A body that failed to parse once (truncated) stays; a complete one replays.
        let bad = match split_body(b"{\"object\":\"page\",\"entry\":[", 1) {
            SplitOutcome::Quarantined { events, .. } => events,
            _ => unreachable!(),
        };
        let p = plan(&bad.iter().map(record).collect::<Vec<_>>(), 2);
        assert_eq!((p.ready.len(), p.still_quarantined.len()), (0, 1));

        // Simulate a body that a future parser accepts: quarantine parts of a valid body.
        let good = br#"{"object":"page","entry":[{"id":"1","time":5,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":5,"message":{"mid":"m","text":"x"}}]}]}"#;
        let mut parts = bad.clone();
        parts[0].quarantine.as_mut().unwrap().data = String::from_utf8_lossy(good).into_owned();
        parts[0].quarantine.as_mut().unwrap().body_sha256 = "whole".into();
        let p = plan(&parts.iter().map(record).collect::<Vec<_>>(), 2);
        assert_eq!(p.ready.len(), 1);
        assert_eq!(p.ready[0].0[0].kind, EventKind::Message);
    }
}
