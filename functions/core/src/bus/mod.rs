//! Conversation out: what the business hears, as events on its bus.
//!
//! A Meta app has one webhook URL and login-connect owns it, so the business's bot, CRM and
//! agents hear their Messenger conversations only through these events. Every event carries:
//!
//! - `detail-type`: a [`DetailType`] name (`OptInReceived`, `MessageReceived`, ...);
//! - `source`: [`SOURCE`];
//! - `detail`: a [`Detail`]: schema `version`, a stable `event_id` (the same fact republished
//!   keeps its id: consumers dedupe on it), when it happened, the Page or Instagram account,
//!   every identity known for the person, and the payload.
//!
//! # Publishing rules
//! - An event is published after the state it describes is durable, never before.
//! - Publishing is at least once: a queue message is let go only when the bus accepted every
//!   entry ([`publish_all`] retries the entries it refused); a message processed again
//!   republishes the same events with the same ids.
//! - Nothing the webhook received goes unpublished: kinds we do not model become `Unhandled`
//!   with the raw item.
//!
//! Schemas: `infra/schemas/*.json` (JSON Schema), documented in `docs/events.md`.

pub mod inbound;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ports::bus::{EventBus, MAX_ENTRIES};
use crate::ports::store::Person;
use crate::ports::PortError;
use crate::support::time::format_rfc3339_ms;
use crate::webhook::{Identity, IdentityKind};

/// The `source` of every event.
pub const SOURCE: &str = "login-connect";
/// Version of [`Detail`]; bumped only for incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened. The names are a contract with the business's rules: never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DetailType {
    OptInReceived,
    FirstMessageSent,
    FirstMessageFailed,
    FirstMessageAtRisk,
    FirstMessageMissed,
    MessageReceived,
    ReactionReceived,
    PostbackReceived,
    ReferralReceived,
    PersonLinked,
    PersonOptedOut,
    PersonOptedIn,
    MarketingOptInChanged,
    PagePaused,
    PageResumed,
    PolicyEnforcement,
    MessageEcho,
    DeliveryRead,
    Unhandled,
    /// A follow-up (`POST /v1/messages`, the requests queue) reached Meta.
    MessageSent,
    /// The policy refused a follow-up before Meta was called.
    MessageRefused,
    /// Meta refused a follow-up, or it could not be delivered within its retries.
    MessageFailed,
    /// An operator ran a command of the operations function (who, what, the outcome).
    OperatorCommand,
}

impl DetailType {
    pub const ALL: [DetailType; 23] = [
        DetailType::OptInReceived,
        DetailType::FirstMessageSent,
        DetailType::FirstMessageFailed,
        DetailType::FirstMessageAtRisk,
        DetailType::FirstMessageMissed,
        DetailType::MessageReceived,
        DetailType::ReactionReceived,
        DetailType::PostbackReceived,
        DetailType::ReferralReceived,
        DetailType::PersonLinked,
        DetailType::PersonOptedOut,
        DetailType::PersonOptedIn,
        DetailType::MarketingOptInChanged,
        DetailType::PagePaused,
        DetailType::PageResumed,
        DetailType::PolicyEnforcement,
        DetailType::MessageEcho,
        DetailType::DeliveryRead,
        DetailType::Unhandled,
        DetailType::MessageSent,
        DetailType::MessageRefused,
        DetailType::MessageFailed,
        DetailType::OperatorCommand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::OptInReceived => "OptInReceived",
            DetailType::FirstMessageSent => "FirstMessageSent",
            DetailType::FirstMessageFailed => "FirstMessageFailed",
            DetailType::FirstMessageAtRisk => "FirstMessageAtRisk",
            DetailType::FirstMessageMissed => "FirstMessageMissed",
            DetailType::MessageReceived => "MessageReceived",
            DetailType::ReactionReceived => "ReactionReceived",
            DetailType::PostbackReceived => "PostbackReceived",
            DetailType::ReferralReceived => "ReferralReceived",
            DetailType::PersonLinked => "PersonLinked",
            DetailType::PersonOptedOut => "PersonOptedOut",
            DetailType::PersonOptedIn => "PersonOptedIn",
            DetailType::MarketingOptInChanged => "MarketingOptInChanged",
            DetailType::PagePaused => "PagePaused",
            DetailType::PageResumed => "PageResumed",
            DetailType::PolicyEnforcement => "PolicyEnforcement",
            DetailType::MessageEcho => "MessageEcho",
            DetailType::DeliveryRead => "DeliveryRead",
            DetailType::Unhandled => "Unhandled",
            DetailType::MessageSent => "MessageSent",
            DetailType::MessageRefused => "MessageRefused",
            DetailType::MessageFailed => "MessageFailed",
            DetailType::OperatorCommand => "OperatorCommand",
        }
    }
}

/// Every identity known for the person when the event is published. Which ones are present
/// depends on the event: a PSID on everything the person did; the `login_id` / `user_ref` /
/// the business's `external_id` once linked (on messages, postbacks, opt-ins and outcomes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PersonIds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub igsid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The opt-in's `entry_point` and `ref` (when it had one), added to a first-message event's
/// payload. With `OptInReceived` switched off (`BusDetailTypesOff`, a dollar per million
/// opt-ins less) these events are all the business hears of an opt-in on the common path, so
/// they say how the person opted in and with which `ref`, as `OptInReceived` does.
pub fn about_optin(
    payload: &mut Value,
    entry_point: crate::lifecycle::optin::EntryPoint,
    reference: Option<&str>,
) {
    payload["entry_point"] = Value::from(entry_point.as_str());
    if let Some(r) = reference {
        payload["ref"] = Value::from(r);
    }
}

impl PersonIds {
    pub fn of(identity: &Identity) -> PersonIds {
        let mut ids = PersonIds::default();
        ids.set(identity);
        ids
    }

    pub fn set(&mut self, identity: &Identity) {
        let slot = match identity.kind {
            IdentityKind::Psid => &mut self.psid,
            IdentityKind::Igsid => &mut self.igsid,
            IdentityKind::LoginId => &mut self.login_id,
            IdentityKind::UserRef => &mut self.user_ref,
        };
        *slot = Some(identity.id.clone());
    }

    /// Adds what the person item knows (the first linked login_id / user_ref, the business's
    /// external_id).
    pub fn with_person(mut self, person: Option<&Person>) -> PersonIds {
        if let Some(p) = person {
            if self.login_id.is_none() {
                self.login_id.clone_from(&p.login_id);
            }
            if self.user_ref.is_none() {
                self.user_ref.clone_from(&p.user_ref);
            }
            if self.external_id.is_none() {
                self.external_id.clone_from(&p.external_id);
            }
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        *self == PersonIds::default()
    }
}

/// The `detail` of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub version: u32,
    pub event_id: String,
    /// When it happened (Meta's event time for webhook events), epoch milliseconds.
    pub occurred_at_ms: i64,
    /// The same instant, RFC 3339 UTC.
    pub occurred_at: String,
    /// `messenger` or `instagram`.
    pub channel: &'static str,
    /// The Page (or Instagram account) id.
    pub page_id: String,
    pub person: PersonIds,
    pub payload: Value,
}

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusEvent {
    pub detail_type: DetailType,
    pub detail: Detail,
}

impl BusEvent {
    /// An event whose id is derived from what it describes: `detail_type` and a key naming
    /// the fact (an inbound event's idempotency key, an opt-in key and generation, ...), so a
    /// republished fact keeps its id.
    pub fn new(
        detail_type: DetailType,
        fact_key: &str,
        occurred_at_ms: i64,
        channel: &'static str,
        page_id: &str,
        person: PersonIds,
        payload: Value,
    ) -> BusEvent {
        BusEvent {
            detail_type,
            detail: Detail {
                version: SCHEMA_VERSION,
                event_id: event_id(detail_type, fact_key),
                occurred_at_ms,
                occurred_at: format_rfc3339_ms(occurred_at_ms),
                channel,
                page_id: page_id.to_string(),
                person,
                payload,
            },
        }
    }

    /// The `detail` as JSON text (what the bus carries).
    pub fn detail_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.detail)
    }
}

/// `evt_` + 32 hex chars of SHA-256 over the detail type and the fact's key.
pub fn event_id(detail_type: DetailType, fact_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"login-connect/event/v1\0");
    h.update(detail_type.as_str().as_bytes());
    h.update(b"\0");
    h.update(fact_key.as_bytes());
    format!("evt_{}", hex::encode(&h.finalize()[..16]))
}

/// The channel name of a webhook `object`.
pub fn channel_of(object: &str) -> &'static str {
    if object == "instagram" {
        "instagram"
    } else {
        "messenger"
    }
}

/// Rounds of retries for entries the bus refused, before the caller keeps its message.
const PUBLISH_ROUNDS: u32 = 4;

/// Publishes every event, in order, in batches; entries the bus refused are sent again (a few
/// rounds, with a short growing wait). `Err` when some entry still was not accepted: the caller
/// keeps its queue message, and processing it again republishes with the same ids.
pub async fn publish_all(bus: &dyn EventBus, events: &[BusEvent]) -> Result<(), PortError> {
    for batch in events.chunks(MAX_ENTRIES) {
        // The first round puts the caller's events as they are; only refused entries are
        // copied for the next rounds (copying every batch up front cloned each event's detail
        // on every publish, refused or not).
        let refused = bus.put_events(batch).await?;
        let mut pending: Vec<BusEvent> = refused
            .into_iter()
            .filter_map(|i| batch.get(i).cloned())
            .collect();
        let mut wait = Duration::from_millis(20);
        for _ in 1..PUBLISH_ROUNDS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
            let refused = bus.put_events(&pending).await?;
            pending = refused
                .into_iter()
                .filter_map(|i| pending.get(i).cloned())
                .collect();
        }
        if !pending.is_empty() {
            return Err(PortError::Unavailable(format!(
                "event bus refused {} entr{} after {PUBLISH_ROUNDS} rounds",
                pending.len(),
                if pending.len() == 1 { "y" } else { "ies" }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_typed() {
        let a = event_id(DetailType::MessageReceived, "message:m1");
        assert_eq!(a, event_id(DetailType::MessageReceived, "message:m1"));
        assert_ne!(a, event_id(DetailType::PersonLinked, "message:m1"));
        assert!(a.starts_with("evt_") && a.len() == 36);
    }

    #[test]
    fn detail_json_has_the_documented_fields() {
        let e = BusEvent::new(
            DetailType::OptInReceived,
            "optin:k",
            1_800_000_000_000,
            "messenger",
            "100",
            PersonIds::of(&Identity::new(IdentityKind::LoginId, "L1")),
            serde_json::json!({"entry_point": "login_connect"}),
        );
        let v: Value = serde_json::from_str(&e.detail_json().unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["page_id"], "100");
        assert_eq!(v["person"], serde_json::json!({"login_id": "L1"}));
        assert_eq!(v["occurred_at"], "2027-01-15T08:00:00.000Z");
        assert_eq!(v["payload"]["entry_point"], "login_connect");
    }
}
