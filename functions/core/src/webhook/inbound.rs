//! The normalized inbound event: one queue message per (entry, item) pair of a webhook body.
//!
//! This is the contract between the webhook function (producer) and the events function
//! (consumer). It is self-contained so that a message redriven from a DLQ weeks later still
//! carries everything needed to process it. Change it only in backward-compatible ways, or bump
//! [`InboundEvent::SCHEMA_VERSION`] and keep reading the old one.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Where in the webhook entry the item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// `entry[].messaging[]`: threads our app owns (or no handover configured).
    Messaging,
    /// `entry[].standby[]`: threads another app owns (handover protocol).
    Standby,
    /// `entry[].changes[]`: feed and other field changes (`field` / `value`).
    Changes,
    /// Not from a webhook: recorded by the login function (Option 2 callback).
    Login,
    /// A signed body whose envelope could not be parsed; kept raw for replay.
    Quarantine,
}

/// What the item is. Decided by which event key the item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    Echo,
    Reaction,
    Postback,
    Optin,
    Referral,
    Delivery,
    Read,
    PolicyEnforcement,
    Handover,
    AccountLinking,
    ResponseFeedback,
    Change,
    /// A messaging item with no event key we know: kept raw, processed as a no-op.
    Unknown,
    /// An item whose known event key holds a value of the wrong shape: kept raw and flagged.
    Malformed,
    /// A whole body that could not be parsed (see [`Quarantine`]).
    Quarantined,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Echo => "echo",
            EventKind::Reaction => "reaction",
            EventKind::Postback => "postback",
            EventKind::Optin => "optin",
            EventKind::Referral => "referral",
            EventKind::Delivery => "delivery",
            EventKind::Read => "read",
            EventKind::PolicyEnforcement => "policy_enforcement",
            EventKind::Handover => "handover",
            EventKind::AccountLinking => "account_linking",
            EventKind::ResponseFeedback => "response_feedback",
            EventKind::Change => "change",
            EventKind::Unknown => "unknown",
            EventKind::Malformed => "malformed",
            EventKind::Quarantined => "quarantined",
        }
    }
}

/// How a person is addressed. Which one we have depends on the entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// Page-scoped id (Messenger).
    Psid,
    /// Instagram-scoped id.
    Igsid,
    /// Checkbox / chat plugin reference.
    UserRef,
    /// Login Connect with Messenger.
    LoginId,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Psid => "psid",
            IdentityKind::Igsid => "igsid",
            IdentityKind::UserRef => "user_ref",
            IdentityKind::LoginId => "login_id",
        }
    }
}

/// The person an event is about. For echoes that is the recipient, not the page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    pub id: String,
}

impl Identity {
    pub fn new(kind: IdentityKind, id: impl Into<String>) -> Self {
        Identity {
            kind,
            id: id.into(),
        }
    }
}

/// A signed body we could not parse, carried raw (possibly split in parts) so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Why the body was quarantined (parser message, no secrets).
    pub reason: String,
    /// Lowercase hex SHA-256 of the whole raw body: groups the parts, names the body.
    pub body_sha256: String,
    /// 0-based part index and total part count (bodies larger than one queue message are split).
    pub part: u32,
    pub parts: u32,
    /// `utf8` when `data` is the body text itself, `base64` when the body was not UTF-8.
    pub encoding: String,
    pub data: String,
}

/// One event, ready for the events queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundEvent {
    /// Schema version of this message body.
    pub v: u32,
    /// Stable idempotency key: equal for duplicates of the same event (Meta retries, several apps).
    pub key: String,
    /// Webhook `object` (`page`, `instagram`, ...); empty for quarantined bodies.
    pub object: String,
    /// `entry[].id`: the Page id or the Instagram professional account id.
    pub account_id: String,
    pub channel: Channel,
    pub kind: EventKind,
    /// The person this event is about, when the event names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Identity>,
    /// Event time in epoch milliseconds (item `timestamp`, else `entry.time`, else receipt time).
    pub timestamp_ms: i64,
    /// When the webhook function received the body, epoch milliseconds.
    pub received_at_ms: i64,
    /// The original item JSON, byte for byte (`null` for quarantined bodies).
    pub item: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
    /// The Meta app whose secret verified the body (several apps may share the webhook). Not
    /// part of the key: the same event delivered to two apps is one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

impl PartialEq for InboundEvent {
    fn eq(&self, other: &Self) -> bool {
        self.v == other.v
            && self.key == other.key
            && self.object == other.object
            && self.account_id == other.account_id
            && self.channel == other.channel
            && self.kind == other.kind
            && self.sender == other.sender
            && self.timestamp_ms == other.timestamp_ms
            && self.received_at_ms == other.received_at_ms
            && self.item.get() == other.item.get()
            && self.quarantine == other.quarantine
            && self.app_id == other.app_id
    }
}

impl InboundEvent {
    pub const SCHEMA_VERSION: u32 = 1;

    /// Parses a queue message body.
    pub fn from_json(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// Serializes for the queue. Cannot fail for this type; the error path is kept for honesty.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The original item, parsed generically.
    pub fn item_value(&self) -> serde_json::Value {
        serde_json::from_str(self.item.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// Builds the idempotency key.
///
/// Events with a message id use it (`<kind>:<mid>`): the kind is part of the key because a
/// reaction or an echo can carry the mid of another message. Events without one hash page,
/// identity, timestamp and kind; kinds that carry neither identity nor a precise timestamp
/// (changes, unknown, malformed) also hash the item's bytes so two different items of one
/// entry never collide.
pub fn idempotency_key(
    kind: EventKind,
    mid: Option<&str>,
    object: &str,
    account_id: &str,
    sender: Option<&Identity>,
    timestamp_ms: i64,
    item_bytes: &[u8],
) -> String {
    key(
        kind,
        mid,
        object,
        account_id,
        sender,
        Some(timestamp_ms),
        item_bytes,
    )
}

/// [`idempotency_key`] for an event with no time of its own (no item `timestamp`, no
/// `entry.time`). Its receive time differs on every redelivery of the same body, so it must not
/// enter the key: the item's bytes stand in for it, and Meta's retries of one body converge.
pub fn idempotency_key_untimed(
    kind: EventKind,
    mid: Option<&str>,
    object: &str,
    account_id: &str,
    sender: Option<&Identity>,
    item_bytes: &[u8],
) -> String {
    key(kind, mid, object, account_id, sender, None, item_bytes)
}

fn key(
    kind: EventKind,
    mid: Option<&str>,
    object: &str,
    account_id: &str,
    sender: Option<&Identity>,
    timestamp_ms: Option<i64>,
    item_bytes: &[u8],
) -> String {
    if let Some(mid) = mid.filter(|m| !m.is_empty()) {
        return format!("{}:{}", kind.as_str(), mid);
    }
    let mut h = Sha256::new();
    h.update(object.as_bytes());
    h.update([0]);
    h.update(account_id.as_bytes());
    h.update([0]);
    if let Some(s) = sender {
        h.update(s.kind.as_str().as_bytes());
        h.update([b':']);
        h.update(s.id.as_bytes());
    }
    h.update([0]);
    // Timed keys hash the decimal time, which never reads "untimed": the two never collide, and
    // timed keys stay what they were before untimed ones existed.
    match timestamp_ms {
        Some(t) => h.update(t.to_string().as_bytes()),
        None => h.update(b"untimed"),
    }
    h.update([0]);
    h.update(kind.as_str().as_bytes());
    if timestamp_ms.is_none()
        || matches!(
            kind,
            EventKind::Change | EventKind::Unknown | EventKind::Malformed
        )
    {
        h.update([0]);
        h.update(item_bytes);
    }
    let digest = h.finalize();
    format!("{}:h{}", kind.as_str(), hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_key_is_kind_scoped() {
        let a = idempotency_key(EventKind::Message, Some("m_1"), "page", "1", None, 0, b"");
        let b = idempotency_key(EventKind::Reaction, Some("m_1"), "page", "1", None, 0, b"");
        assert_eq!(a, "message:m_1");
        assert_ne!(a, b);
    }

    #[test]
    fn hashed_key_is_stable_and_sensitive() {
        let who = Identity::new(IdentityKind::LoginId, "abc");
        let k1 = idempotency_key(EventKind::Optin, None, "page", "1", Some(&who), 5, b"x");
        let k2 = idempotency_key(EventKind::Optin, None, "page", "1", Some(&who), 5, b"y");
        let k3 = idempotency_key(EventKind::Optin, None, "page", "1", Some(&who), 6, b"x");
        assert_eq!(
            k1, k2,
            "item bytes do not matter when identity and time are known"
        );
        assert_ne!(k1, k3);
        assert!(k1.starts_with("optin:h"));
        let c1 = idempotency_key(EventKind::Change, None, "page", "1", None, 5, b"x");
        let c2 = idempotency_key(EventKind::Change, None, "page", "1", None, 5, b"y");
        assert_ne!(c1, c2);
    }

    #[test]
    fn untimed_key_hashes_the_item_not_a_time() {
        let who = Identity::new(IdentityKind::LoginId, "abc");
        let u1 = idempotency_key_untimed(EventKind::Optin, None, "page", "1", Some(&who), b"x");
        let u2 = idempotency_key_untimed(EventKind::Optin, None, "page", "1", Some(&who), b"x");
        let u3 = idempotency_key_untimed(EventKind::Optin, None, "page", "1", Some(&who), b"y");
        assert_eq!(u1, u2);
        assert_ne!(u1, u3, "two different untimed items never collide");
        assert!(u1.starts_with("optin:h"));
        let timed = idempotency_key(EventKind::Optin, None, "page", "1", Some(&who), 5, b"x");
        assert_ne!(u1, timed);
        assert_eq!(
            idempotency_key_untimed(EventKind::Message, Some("m_1"), "page", "1", None, b"x"),
            "message:m_1",
            "a mid still decides"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let item = RawValue::from_string(r#"{"a":"\/x é"}"#.to_string()).unwrap();
        let e = InboundEvent {
            v: 1,
            key: "k".into(),
            object: "page".into(),
            account_id: "1".into(),
            channel: Channel::Messaging,
            kind: EventKind::Message,
            sender: Some(Identity::new(IdentityKind::Psid, "2")),
            timestamp_ms: 3,
            received_at_ms: 4,
            item,
            quarantine: None,
            app_id: Some("9".into()),
        };
        let back = InboundEvent::from_json(&e.to_json().unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            back.item.get(),
            r#"{"a":"\/x é"}"#,
            "item bytes are kept verbatim"
        );
    }
}
