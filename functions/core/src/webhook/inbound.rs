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

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Messaging => "messaging",
            Channel::Standby => "standby",
            Channel::Changes => "changes",
            Channel::Login => "login",
            Channel::Quarantine => "quarantine",
        }
    }
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
    pub const ALL: [EventKind; 16] = [
        EventKind::Message,
        EventKind::Echo,
        EventKind::Reaction,
        EventKind::Postback,
        EventKind::Optin,
        EventKind::Referral,
        EventKind::Delivery,
        EventKind::Read,
        EventKind::PolicyEnforcement,
        EventKind::Handover,
        EventKind::AccountLinking,
        EventKind::ResponseFeedback,
        EventKind::Change,
        EventKind::Unknown,
        EventKind::Malformed,
        EventKind::Quarantined,
    ];

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
    ///
    /// Byte for byte what `serde_json::to_string` writes (a test holds it to that), written by
    /// [`EventJson`] into one buffer sized up front. Quarantined events (rare) keep serde's path.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        if self.quarantine.is_some() {
            return serde_json::to_string(self);
        }
        let json = EventJson {
            v: self.v,
            key: &self.key,
            object: &self.object,
            account_id: &self.account_id,
            channel: self.channel,
            kind: self.kind,
            sender: self.sender.as_ref().map(|s| (s.kind, s.id.as_str())),
            timestamp_ms: self.timestamp_ms,
            received_at_ms: self.received_at_ms,
            item: self.item.get(),
            app_id: self.app_id.as_deref(),
        };
        let mut out = String::with_capacity(json.len_hint());
        json.write(&mut out);
        Ok(out)
    }

    /// The original item, parsed generically.
    pub fn item_value(&self) -> serde_json::Value {
        serde_json::from_str(self.item.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// An [`InboundEvent`] without a quarantine, borrowed, as its queue message writes it: the
/// webhook writes its messages from these without building the event first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventJson<'a> {
    pub v: u32,
    pub key: &'a str,
    pub object: &'a str,
    pub account_id: &'a str,
    pub channel: Channel,
    pub kind: EventKind,
    pub sender: Option<(IdentityKind, &'a str)>,
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    /// The raw item JSON, written verbatim.
    pub item: &'a str,
    pub app_id: Option<&'a str>,
}

impl EventJson<'_> {
    /// Enough room for the JSON unless strings need escapes: the fixed text and the numbers
    /// take under 200 bytes.
    pub fn len_hint(&self) -> usize {
        200 + self.item.len()
            + self.key.len()
            + self.object.len()
            + self.account_id.len()
            + self.sender.map_or(0, |(_, id)| id.len())
            + self.app_id.map_or(0, str::len)
    }

    /// Appends the JSON: what serde writes for the [`InboundEvent`], in field order, with
    /// serde's string escapes.
    pub fn write(&self, out: &mut String) {
        out.push_str("{\"v\":");
        json::push_u64(out, u64::from(self.v));
        out.push_str(",\"key\":");
        json::push_str(out, self.key);
        out.push_str(",\"object\":");
        json::push_str(out, self.object);
        out.push_str(",\"account_id\":");
        json::push_str(out, self.account_id);
        out.push_str(",\"channel\":\"");
        out.push_str(self.channel.as_str());
        out.push_str("\",\"kind\":\"");
        out.push_str(self.kind.as_str());
        out.push('"');
        if let Some((kind, id)) = self.sender {
            out.push_str(",\"sender\":{\"kind\":\"");
            out.push_str(kind.as_str());
            out.push_str("\",\"id\":");
            json::push_str(out, id);
            out.push('}');
        }
        out.push_str(",\"timestamp_ms\":");
        json::push_i64(out, self.timestamp_ms);
        out.push_str(",\"received_at_ms\":");
        json::push_i64(out, self.received_at_ms);
        out.push_str(",\"item\":");
        out.push_str(self.item);
        if let Some(app_id) = self.app_id {
            out.push_str(",\"app_id\":");
            json::push_str(out, app_id);
        }
        out.push('}');
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
    let mut key = String::new();
    write_key(
        &mut key,
        kind,
        mid,
        object,
        account_id,
        sender.map(|s| (s.kind, s.id.as_str())),
        Some(timestamp_ms),
        item_bytes,
    );
    key
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
    let mut key = String::new();
    write_key(
        &mut key,
        kind,
        mid,
        object,
        account_id,
        sender.map(|s| (s.kind, s.id.as_str())),
        None,
        item_bytes,
    );
    key
}

/// Appends the key of [`idempotency_key`] (`timestamp_ms` given) or
/// [`idempotency_key_untimed`] (`None`) to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_key(
    out: &mut String,
    kind: EventKind,
    mid: Option<&str>,
    object: &str,
    account_id: &str,
    sender: Option<(IdentityKind, &str)>,
    timestamp_ms: Option<i64>,
    item_bytes: &[u8],
) {
    let kind_str = kind.as_str();
    if let Some(mid) = mid.filter(|m| !m.is_empty()) {
        out.reserve(kind_str.len() + 1 + mid.len());
        out.push_str(kind_str);
        out.push(':');
        out.push_str(mid);
        return;
    }
    let mut h = Sha256::new();
    h.update(object.as_bytes());
    h.update([0]);
    h.update(account_id.as_bytes());
    h.update([0]);
    if let Some((who, id)) = sender {
        h.update(who.as_str().as_bytes());
        h.update([b':']);
        h.update(id.as_bytes());
    }
    h.update([0]);
    // Timed keys hash the decimal time, which never reads "untimed": the two never collide, and
    // timed keys stay what they were before untimed ones existed.
    match timestamp_ms {
        Some(t) => {
            let mut digits = json::Digits::new();
            h.update(digits.i64(t).as_bytes());
        }
        None => h.update(b"untimed"),
    }
    h.update([0]);
    h.update(kind_str.as_bytes());
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (pair, b) in hex.chunks_exact_mut(2).zip(&digest[..16]) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out.reserve(kind_str.len() + 2 + 32);
    out.push_str(kind_str);
    out.push_str(":h");
    // Hex digits: always UTF-8.
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
}

/// JSON text as serde_json writes it, for [`EventJson`].
mod json {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;

    /// Does any of the 8 bytes of `w` need an escape (`"`, `\`, below 0x20)? Exact for "any".
    fn word_needs_escape(w: u64) -> bool {
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
        // A byte below 0x20: `b - 0x20` borrows into its high bit while `b` has none.
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
        below_space
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
    }

    fn byte_needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    /// Whether `bytes` has a byte to escape, 8 bytes at a time.
    fn needs_escape(bytes: &[u8]) -> bool {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if word_needs_escape(u64::from_le_bytes(word)) {
                return true;
            }
        }
        chunks.remainder().iter().any(|&b| byte_needs_escape(b))
    }

    /// serde_json's escapes: `"` and `\` by a backslash, the C0 controls with a short form
    /// where JSON has one and `\u00xx` (lower-case hex) otherwise; nothing else (not DEL, not
    /// U+2028, not non-ASCII).
    pub(super) fn push_str(out: &mut String, s: &str) {
        out.reserve(s.len() + 2);
        out.push('"');
        // Ids, keys and objects rarely need an escape: then the string goes in as it is.
        if !needs_escape(s.as_bytes()) {
            out.push_str(s);
            out.push('"');
            return;
        }
        let mut start = 0;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                0x08 => "\\b",
                0x09 => "\\t",
                0x0a => "\\n",
                0x0c => "\\f",
                0x0d => "\\r",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Runs between escapes end and start on ASCII bytes: character boundaries.
            out.push_str(&s[start..i]);
            start = i + 1;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            } else {
                out.push_str(short);
            }
        }
        out.push_str(&s[start..]);
        out.push('"');
    }

    /// Decimal text of an integer, written into a small buffer two digits at a time.
    pub(super) struct Digits {
        buf: [u8; 20],
    }

    impl Digits {
        pub fn new() -> Digits {
            Digits { buf: [0; 20] }
        }

        pub fn u64(&mut self, mut v: u64) -> &str {
            const PAIRS: &[u8; 200] = b"\
                0001020304050607080910111213141516171819\
                2021222324252627282930313233343536373839\
                4041424344454647484950515253545556575859\
                6061626364656667686970717273747576777879\
                8081828384858687888990919293949596979899";
            let mut i = self.buf.len();
            while v >= 100 {
                let pair = usize::try_from(v % 100).unwrap_or_default() * 2;
                v /= 100;
                i -= 2;
                self.buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
            }
            if v >= 10 {
                let pair = usize::try_from(v).unwrap_or_default() * 2;
                i -= 2;
                self.buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
            } else {
                i -= 1;
                self.buf[i] = b'0' + v as u8;
            }
            // ASCII digits: always UTF-8.
            std::str::from_utf8(&self.buf[i..]).unwrap_or_default()
        }

        pub fn i64(&mut self, v: i64) -> &str {
            if v >= 0 {
                return self.u64(v.unsigned_abs());
            }
            // `-` and up to 19 digits fit the 20 bytes.
            let len = self.u64(v.unsigned_abs()).len();
            let start = self.buf.len() - len - 1;
            self.buf[start] = b'-';
            std::str::from_utf8(&self.buf[start..]).unwrap_or_default()
        }
    }

    pub(super) fn push_u64(out: &mut String, v: u64) {
        out.push_str(Digits::new().u64(v));
    }

    pub(super) fn push_i64(out: &mut String, v: i64) {
        out.push_str(Digits::new().i64(v));
    }
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

    #[test]
    fn strings_escape_as_serde_does_at_every_position() {
        let mut out = String::new();
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['é', '日', '\u{FFFF}', '👍'])
        {
            for len in 0..20 {
                for at in 0..=len {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    s.insert(at, c);
                    out.clear();
                    json::push_str(&mut out, &s);
                    assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
        for v in [
            0u64,
            7,
            10,
            99,
            100,
            101,
            999,
            1000,
            1_700_000_000_000,
            u64::MAX,
        ] {
            out.clear();
            json::push_u64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
        for v in [
            0i64,
            -1,
            -9,
            -10,
            12,
            -1_700_000_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            out.clear();
            json::push_i64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    /// `to_json` writes by hand what serde writes: every variant, escapes, numbers, options.
    #[test]
    fn to_json_is_serdes_output() {
        use Channel as C;
        use IdentityKind as I;
        let tricky = [
            "",
            "plain",
            "q\"uote\\back/slash",
            "\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{e}\u{1f} \u{7f}",
            "é日\u{2028}\u{2029}\u{FFFE}\u{FFFF}👍",
            "end\\",
            "\"",
        ];
        let kinds = EventKind::ALL;
        let channels = [
            C::Messaging,
            C::Standby,
            C::Changes,
            C::Login,
            C::Quarantine,
        ];
        let identities = [I::Psid, I::Igsid, I::UserRef, I::LoginId];
        let times = [0, 1, -1, 9, 10, 1_700_000_000_000, i64::MAX, i64::MIN];
        let mut n = 0usize;
        for (i, text) in tricky.iter().enumerate() {
            for (j, kind) in kinds.iter().enumerate() {
                let at = |k: usize| tricky[(i + j + k) % tricky.len()].to_owned();
                let e = InboundEvent {
                    v: [0, 1, u32::MAX][j % 3],
                    key: text.to_string(),
                    object: at(1),
                    account_id: at(2),
                    channel: channels[j % channels.len()],
                    kind: *kind,
                    sender: (j % 5 != 0).then(|| Identity::new(identities[j % 4], at(3))),
                    timestamp_ms: times[j % times.len()],
                    received_at_ms: times[(i + j) % times.len()],
                    item: RawValue::from_string(
                        serde_json::to_string(&serde_json::json!({ "t": at(4), "n": j })).unwrap(),
                    )
                    .unwrap(),
                    quarantine: (j == 15).then(|| Quarantine {
                        reason: at(5),
                        body_sha256: "00".into(),
                        part: 0,
                        parts: 1,
                        encoding: "utf8".into(),
                        data: at(6),
                    }),
                    app_id: (j % 3 == 1).then(|| at(7)),
                };
                assert_eq!(e.to_json().unwrap(), serde_json::to_string(&e).unwrap());
                n += 1;
            }
        }
        assert_eq!(n, tricky.len() * kinds.len());
        for c in channels {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for k in kinds {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for i in identities {
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
    }
}
