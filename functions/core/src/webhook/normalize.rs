//! Splits a webhook body into normalized events: one [`InboundEvent`] per (entry, item).
//!
//! Never fails: a body whose envelope does not parse is quarantined (kept raw, in parts), and an
//! item the typed model rejects becomes a `Malformed` event carrying its raw bytes. Either way
//! the webhook can answer 200 and nothing Meta sent is lost.

use std::borrow::Borrow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::head::{EnvelopeRef, ItemHead};
use super::inbound::{
    write_key, Channel, EventKind, Identity, IdentityKind, InboundEvent, Quarantine,
};
use super::model::{self, ChangeItem, Envelope, MessagingItem, OBJECT_INSTAGRAM};

/// Largest `data` of one quarantine part, in bytes, so a part fits one queue message with room
/// for the event's other fields.
pub const QUARANTINE_PART_BYTES: usize = 192 * 1024;

/// Raw bytes per base64 part: encodes to exactly [`QUARANTINE_PART_BYTES`] characters.
const BASE64_RAW_PART_BYTES: usize = QUARANTINE_PART_BYTES / 4 * 3;

/// Result of splitting one webhook body.
#[derive(Debug)]
pub enum SplitOutcome {
    /// The envelope parsed: one event per (entry, item); may be empty (`"entry": []`).
    Events(Vec<InboundEvent>),
    /// The envelope did not parse: the raw body, in one or more quarantine parts.
    Quarantined {
        reason: String,
        events: Vec<InboundEvent>,
    },
}

impl SplitOutcome {
    /// The events to enqueue, whichever the outcome.
    pub fn events(&self) -> &[InboundEvent] {
        match self {
            SplitOutcome::Events(events) | SplitOutcome::Quarantined { events, .. } => events,
        }
    }

    /// Consumes the outcome into the events to enqueue.
    pub fn into_events(self) -> Vec<InboundEvent> {
        match self {
            SplitOutcome::Events(events) | SplitOutcome::Quarantined { events, .. } => events,
        }
    }

    pub fn is_quarantined(&self) -> bool {
        matches!(self, SplitOutcome::Quarantined { .. })
    }
}

/// Splits a (signature-checked) webhook body into events, in body order: entries in order, and
/// within an entry its `messaging`, then `standby`, then `changes` items.
pub fn split_body(body: &[u8], received_at_ms: i64) -> SplitOutcome {
    let envelope = match parse_envelope(body) {
        Ok(envelope) => envelope,
        Err(reason) => return quarantine(body, reason, received_at_ms),
    };
    let mut events = Vec::with_capacity(item_count(&envelope));
    for_each_item(envelope, received_at_ms, |ctx, head, raw| {
        events.push(ctx.event(head, raw));
    });
    SplitOutcome::Events(events)
}

/// The envelope of a body, or why the body must be quarantined.
pub(crate) fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return Err(format!("body is not valid UTF-8: {e}")),
    };
    // Derived structs also accept a JSON array (fields by position): require an object.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => "body is JSON but not an object".to_owned(),
            Err(e) => parse_error_reason(&e),
        });
    }
    serde_json::from_str(text).map_err(|e| parse_error_reason(&e))
}

/// How many events the envelope makes.
pub(crate) fn item_count(envelope: &Envelope) -> usize {
    envelope
        .entry
        .iter()
        .map(|e| e.messaging.len() + e.standby.len() + e.changes.len())
        .sum()
}

/// Reads every item of the envelope, in [`split_body`]'s order, and hands `f` what its entry
/// shares, what its event says, and the raw item (moved: its bytes were copied once, by the
/// envelope parse).
pub(crate) fn for_each_item(
    envelope: Envelope,
    received_at_ms: i64,
    mut f: impl FnMut(&EntryContext<'_>, Head<'_>, Box<RawValue>),
) {
    let object = envelope.object;
    for entry in envelope.entry {
        let ctx = EntryContext {
            object: &object,
            account_id: entry.id.as_str(),
            entry_time_ms: entry.time_ms(),
            received_at_ms,
        };
        for raw in entry.messaging {
            ctx.messaging_item(Channel::Messaging, raw, &mut f);
        }
        for raw in entry.standby {
            ctx.messaging_item(Channel::Standby, raw, &mut f);
        }
        for raw in entry.changes {
            ctx.change_item(raw, &mut f);
        }
    }
}

/// [`for_each_item`] on an envelope borrowed from the body (the webhook's hot path): the items
/// stay in the body, and a messaging item's head is read by [`ItemHead`] (no model built);
/// an item it refuses is read by the model, which decides as in [`split_body`]. Same order,
/// same heads.
pub(crate) fn for_each_item_ref<'b>(
    envelope: &'b EnvelopeRef<'b>,
    received_at_ms: i64,
    mut f: impl FnMut(&EntryContext<'_>, Head<'_>, &'b RawValue),
) {
    let object: &str = &envelope.object.0;
    for entry in &envelope.entry {
        let ctx = EntryContext {
            object,
            account_id: &entry.id.0,
            entry_time_ms: entry.time,
            received_at_ms,
        };
        for &raw in &entry.messaging {
            ctx.messaging_head(Channel::Messaging, raw, &mut f);
        }
        for &raw in &entry.standby {
            ctx.messaging_head(Channel::Standby, raw, &mut f);
        }
        for &raw in &entry.changes {
            ctx.change_item(raw, &mut f);
        }
    }
}

/// What every event of one entry shares.
pub(crate) struct EntryContext<'a> {
    pub object: &'a str,
    pub account_id: &'a str,
    entry_time_ms: Option<i64>,
    pub received_at_ms: i64,
}

/// What one item's event says besides the item, borrowed from the item's parse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub channel: Channel,
    pub kind: EventKind,
    /// The message id that keys the event, if any.
    pub mid: Option<&'a str>,
    pub sender: Option<(IdentityKind, &'a str)>,
    /// The item's time, else the entry's; `None` if neither has one (the key then does not
    /// depend on a time, and the event takes the receipt time).
    pub timestamp_ms: Option<i64>,
}

impl EntryContext<'_> {
    /// A messaging item read by the model. (`R`: the item owned, or borrowed from the body.)
    fn messaging_item<R, F>(&self, channel: Channel, raw: R, f: &mut F)
    where
        R: Borrow<RawValue>,
        F: FnMut(&EntryContext<'_>, Head<'_>, R),
    {
        match MessagingItem::parse(raw.borrow()) {
            Ok(item) => {
                let head = Head {
                    channel,
                    kind: item.kind(),
                    mid: item.mid(),
                    sender: item.subject_ref(self.object),
                    timestamp_ms: item.timestamp.or(self.entry_time_ms),
                };
                f(self, head, raw);
            }
            Err(_) => self.malformed(channel, raw, f),
        }
    }

    /// A messaging item read by [`ItemHead`]; one it refuses is read by the model.
    fn messaging_head<'b, F>(&self, channel: Channel, raw: &'b RawValue, f: &mut F)
    where
        F: FnMut(&EntryContext<'_>, Head<'_>, &'b RawValue),
    {
        match ItemHead::parse(raw) {
            Ok(item) => {
                let kind = item.kind();
                let head = Head {
                    channel,
                    kind,
                    mid: item.mid(kind),
                    sender: item.subject_ref(kind, self.object),
                    timestamp_ms: item.timestamp.or(self.entry_time_ms),
                };
                f(self, head, raw);
            }
            Err(_) => self.messaging_item(channel, raw, f),
        }
    }

    fn change_item<R, F>(&self, raw: R, f: &mut F)
    where
        R: Borrow<RawValue>,
        F: FnMut(&EntryContext<'_>, Head<'_>, R),
    {
        match ChangeItem::parse(raw.borrow()) {
            Ok(change) => {
                let sender = change.subject(self.object);
                let head = Head {
                    channel: Channel::Changes,
                    kind: EventKind::Change,
                    mid: None,
                    sender: sender.as_ref().map(|s| (s.kind, s.id.as_str())),
                    timestamp_ms: change.timestamp_ms().or(self.entry_time_ms),
                };
                f(self, head, raw);
            }
            Err(_) => self.malformed(Channel::Changes, raw, f),
        }
    }

    /// An item the typed model rejected: flagged, kept raw, with whatever sender and timestamp
    /// a generic read finds.
    fn malformed<R, F>(&self, channel: Channel, raw: R, f: &mut F)
    where
        R: Borrow<RawValue>,
        F: FnMut(&EntryContext<'_>, Head<'_>, R),
    {
        let value: Value = serde_json::from_str(raw.borrow().get()).unwrap_or(Value::Null);
        let (sender, timestamp_ms) = if channel == Channel::Changes {
            (None, self.entry_time_ms)
        } else {
            (
                generic_sender(&value, self.object),
                model::value_timestamp(&value).or(self.entry_time_ms),
            )
        };
        let head = Head {
            channel,
            kind: EventKind::Malformed,
            mid: None,
            sender: sender.as_ref().map(|s| (s.kind, s.id.as_str())),
            timestamp_ms,
        };
        f(self, head, raw);
    }

    /// The event of one item.
    fn event(&self, head: Head<'_>, raw: Box<RawValue>) -> InboundEvent {
        let mut key = String::new();
        write_key(
            &mut key,
            head.kind,
            head.mid,
            self.object,
            self.account_id,
            head.sender,
            head.timestamp_ms,
            raw.get().as_bytes(),
        );
        InboundEvent {
            v: InboundEvent::SCHEMA_VERSION,
            key,
            object: self.object.to_owned(),
            account_id: self.account_id.to_owned(),
            channel: head.channel,
            kind: head.kind,
            sender: head.sender.map(|(kind, id)| Identity::new(kind, id)),
            // The key above does not depend on this fallback.
            timestamp_ms: head.timestamp_ms.unwrap_or(self.received_at_ms),
            received_at_ms: self.received_at_ms,
            item: raw,
            quarantine: None,
            app_id: None,
        }
    }
}

/// `sender.id` (PSID / IGSID) or `sender.user_ref` of an item read generically.
fn generic_sender(item: &Value, object: &str) -> Option<Identity> {
    let sender = item.get("sender")?;
    if let Some(id) = model::value_id(sender.get("id")) {
        let kind = if object == OBJECT_INSTAGRAM {
            IdentityKind::Igsid
        } else {
            IdentityKind::Psid
        };
        return Some(Identity::new(kind, id));
    }
    model::value_id(sender.get("user_ref")).map(|r| Identity::new(IdentityKind::UserRef, r))
}

/// A short reason for an envelope that did not parse, without body content: serde's syntax and
/// EOF messages are fixed texts, but its data messages can quote a string from the body.
fn parse_error_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => format!("read error {at}"),
        Category::Syntax | Category::Eof => e.to_string(),
        Category::Data => {
            let full = e.to_string();
            let msg = full
                .strip_suffix(&at)
                .map(str::trim_end)
                .unwrap_or(full.as_str());
            // Messages naming only our field names, or written by the model's deserializers.
            const SAFE_PREFIXES: [&str; 5] = [
                "missing field",
                "duplicate field",
                "invalid length",
                "timestamp",
                "an id",
            ];
            const EXPECTED: &str = ", expected ";
            let safe = if SAFE_PREFIXES.iter().any(|p| msg.starts_with(p)) {
                msg.to_owned()
            } else if let Some(i) = msg.rfind(EXPECTED) {
                // `invalid type: string "<body text>", expected ...`: keep only our side.
                format!(
                    "invalid type or value, expected {}",
                    &msg[i + EXPECTED.len()..]
                )
            } else {
                "invalid envelope".to_owned()
            };
            format!("{safe} {at}")
        }
    }
}

/// Quarantines the whole body: one `Quarantined` event per part whose `data`, once written as
/// a JSON string, takes at most [`QUARANTINE_PART_BYTES`] (control characters grow six-fold
/// when escaped: a part is cut by its escaped size, so it always fits one queue message).
pub fn quarantine(body: &[u8], reason: String, received_at_ms: i64) -> SplitOutcome {
    let body_sha256 = hex::encode(Sha256::digest(body));
    let (encoding, mut chunks): (&str, Vec<String>) = match std::str::from_utf8(body) {
        Ok(text) => (
            "utf8",
            split_escaped(text, QUARANTINE_PART_BYTES)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        Err(_) => (
            "base64",
            body.chunks(BASE64_RAW_PART_BYTES)
                .map(|c| BASE64.encode(c))
                .collect(),
        ),
    };
    if chunks.is_empty() {
        chunks.push(String::new());
    }
    let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    let events = chunks
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let part = u32::try_from(i).unwrap_or(u32::MAX);
            InboundEvent {
                v: InboundEvent::SCHEMA_VERSION,
                key: format!("quarantined:{body_sha256}:{part}"),
                object: String::new(),
                account_id: String::new(),
                channel: Channel::Quarantine,
                kind: EventKind::Quarantined,
                sender: None,
                timestamp_ms: received_at_ms,
                received_at_ms,
                item: RawValue::NULL.to_owned(),
                quarantine: Some(Quarantine {
                    reason: reason.clone(),
                    body_sha256: body_sha256.clone(),
                    part,
                    parts,
                    encoding: encoding.to_owned(),
                    data,
                }),
                app_id: None,
            }
        })
        .collect();
    SplitOutcome::Quarantined { reason, events }
}

/// Splits text into pieces whose JSON-escaped size (as serde_json writes a string, plus the
/// queue's own escapes of U+FFFE/U+FFFF) is at most `max` bytes, never inside a character.
fn split_escaped(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(6);
    let mut parts = Vec::with_capacity(text.len() / max + 1);
    let (mut start, mut size) = (0, 0);
    for (i, c) in text.char_indices() {
        let w = escaped_width(c);
        if size + w > max && i > start {
            parts.push(&text[start..i]);
            start = i;
            size = 0;
        }
        size += w;
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

fn escaped_width(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        '\u{FFFE}' | '\u{FFFF}' => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_700_000_000_000;

    fn events(body: &str) -> Vec<InboundEvent> {
        match split_body(body.as_bytes(), AT) {
            SplitOutcome::Events(e) => e,
            SplitOutcome::Quarantined { reason, .. } => panic!("quarantined: {reason}"),
        }
    }

    fn reason(body: &[u8]) -> String {
        match split_body(body, AT) {
            SplitOutcome::Quarantined { reason, events } => {
                assert!(!events.is_empty());
                assert!(events.iter().all(|e| e.kind == EventKind::Quarantined));
                reason
            }
            SplitOutcome::Events(_) => panic!("not quarantined"),
        }
    }

    #[test]
    fn kinds_and_subjects_per_item() {
        let body = r#"{"object":"page","entry":[{"id":1,"time":1458692752000,"messaging":[
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1458692752478,"message":{"mid":"m_1","text":"hi"}},
            {"recipient":{"id":"1"},"optin":{"login_id":"L1"}},
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":"1458692753","message":5},
            "oops"
        ],"changes":[{"field":"feed","value":{"from":{"id":"9"}}}]}]}"#;
        let ev = events(body);
        let kinds: Vec<_> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Message,
                EventKind::Optin,
                EventKind::Malformed,
                EventKind::Malformed,
                EventKind::Change
            ]
        );
        assert_eq!(ev[0].key, "message:m_1");
        assert_eq!(ev[0].account_id, "1");
        assert_eq!(
            ev[1].sender,
            Some(Identity::new(IdentityKind::LoginId, "L1"))
        );
        assert_eq!(
            ev[1].timestamp_ms, 1_458_692_752_000,
            "falls back to entry.time"
        );
        assert_eq!(ev[2].sender, Some(Identity::new(IdentityKind::Psid, "7")));
        assert_eq!(
            ev[2].timestamp_ms, 1_458_692_753_000,
            "seconds as a string, even in a malformed item"
        );
        assert_eq!(ev[3].sender, None);
        assert_eq!(ev[3].item.get(), r#""oops""#);
        assert_eq!(ev[4].channel, Channel::Changes);
        assert_eq!(ev[4].sender, Some(Identity::new(IdentityKind::Psid, "9")));
        assert_ne!(ev[2].key, ev[3].key);
    }

    #[test]
    fn missing_times_fall_back_to_receipt() {
        let ev = events(r#"{"object":"page","entry":[{"id":"1","messaging":[{"read":{}}]}]}"#);
        assert_eq!(ev[0].timestamp_ms, AT);
        assert_eq!(ev[0].received_at_ms, AT);
    }

    fn split_at(body: &str, received_at_ms: i64) -> Vec<InboundEvent> {
        match split_body(body.as_bytes(), received_at_ms) {
            SplitOutcome::Events(e) => e,
            SplitOutcome::Quarantined { reason, .. } => panic!("quarantined: {reason}"),
        }
    }

    /// Meta redelivers the same body minutes or hours later: whatever times it carries (or not),
    /// every event must keep its key, and its time whenever the body has one.
    #[test]
    fn redeliveries_of_one_body_keep_keys_and_times() {
        let bodies = [
            // No time anywhere: only the receipt time, which must not reach the key.
            r#"{"object":"page","entry":[{"id":"1","messaging":[
                {"recipient":{"id":"1"},"optin":{"login_id":"L1"}},
                {"recipient":{"id":"1"},"optin":{"login_id":"L2"}},
                {"sender":{"id":"7"},"read":{"watermark":1}}
            ],"standby":[{"sender":{"id":"7"},"delivery":{}}],
              "changes":[{"field":"feed","value":{"from":{"id":"9"}}}]}]}"#,
            // entry.time only, as a string of seconds.
            r#"{"object":"page","entry":[{"id":"1","time":"1700000005","messaging":[
                {"recipient":{"id":"1"},"optin":{"login_id":"L1"}}]}]}"#,
        ];
        for body in bodies {
            let first = split_at(body, AT);
            let later = split_at(body, AT + 3_600_000);
            let keys = |ev: &[InboundEvent]| ev.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
            assert_eq!(keys(&first), keys(&later), "{body}");
            let unique: std::collections::HashSet<_> = keys(&first).into_iter().collect();
            assert_eq!(
                unique.len(),
                first.len(),
                "distinct items keep distinct keys"
            );
        }
        let with_entry_time = split_at(bodies[1], AT + 3_600_000);
        assert_eq!(with_entry_time[0].timestamp_ms, 1_700_000_005_000);
    }

    #[test]
    fn item_times_in_seconds_or_strings_are_milliseconds() {
        let body = r#"{"object":"page","entry":[{"id":"1","time":1700000009000,"messaging":[
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":"1527459824","postback":{"payload":"P"}},
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":"1700000001000","read":{}},
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1700000002,"read":{}},
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":0,"read":{}}
        ],"standby":[{"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1700000003,"read":{}}],
          "changes":[{"field":"feed","value":{"from":{"id":"9"},"created_time":1700000004}}]}]}"#;
        let times: Vec<i64> = events(body).iter().map(|e| e.timestamp_ms).collect();
        assert_eq!(
            times,
            [
                1_527_459_824_000,
                1_700_000_001_000,
                1_700_000_002_000,
                1_700_000_009_000,
                1_700_000_003_000,
                1_700_000_004_000
            ]
        );
    }

    #[test]
    fn envelope_errors_quarantine_without_body_content() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "EOF"),
            (b"hello", "expected"),
            (br#"{"object":"page","entry":[{"id":"1"}"#, "EOF"),
            (br#"["secret"]"#, "not an object"),
            (br#"["page", []]"#, "not an object"),
            (br#""secret""#, "not an object"),
            (b" [1", "EOF"),
            (br#"{"object":"page"}"#, "missing field `entry`"),
            (br#"{"entry":[]}"#, "missing field `object`"),
            (
                br#"{"object":"page","entry":"secret"}"#,
                "expected a sequence",
            ),
            (
                br#"{"object":"page","entry":[{"id":{"secret":1}}]}"#,
                "expected",
            ),
            (
                br#"{"object":"page","entry":[{"id":"1","time":"secret"}]}"#,
                "timestamp",
            ),
            (b"{\"object\":\"p\xffage\",\"entry\":[]}", "UTF-8"),
        ];
        for (body, want) in cases {
            let r = reason(body);
            assert!(r.contains(want), "{r:?} should contain {want:?}");
            assert!(!r.contains("secret"), "{r:?} leaks body content");
        }
    }

    #[test]
    fn quarantine_parts_utf8_on_char_boundaries() {
        // 3-byte characters, so the part boundary falls inside one unless adjusted.
        let body = format!("x{}", "€".repeat(QUARANTINE_PART_BYTES));
        let SplitOutcome::Quarantined { events, .. } = split_body(body.as_bytes(), AT) else {
            panic!("not quarantined");
        };
        assert_eq!(events.len(), 4);
        let mut joined = String::new();
        for (i, e) in events.iter().enumerate() {
            let q = e.quarantine.as_ref().unwrap();
            assert_eq!((q.part as usize, q.parts as usize), (i, events.len()));
            assert_eq!(q.encoding, "utf8");
            assert!(q.data.len() <= QUARANTINE_PART_BYTES);
            assert_eq!(e.key, format!("quarantined:{}:{i}", q.body_sha256));
            assert_eq!(e.item.get(), "null");
            joined.push_str(&q.data);
        }
        assert_eq!(joined, body);
    }

    #[test]
    fn quarantine_parts_base64_decode_independently() {
        let body: Vec<u8> = (0..QUARANTINE_PART_BYTES * 2)
            .map(|i| (i % 251) as u8)
            .collect();
        let SplitOutcome::Quarantined { events, .. } = split_body(&body, AT) else {
            panic!("not quarantined");
        };
        assert_eq!(events.len(), 3);
        let mut joined = Vec::new();
        for e in &events {
            let q = e.quarantine.as_ref().unwrap();
            assert_eq!(q.encoding, "base64");
            assert!(q.data.len() <= QUARANTINE_PART_BYTES);
            joined.extend(BASE64.decode(&q.data).unwrap());
        }
        assert_eq!(joined, body);
    }

    #[test]
    fn empty_body_is_one_empty_part() {
        let SplitOutcome::Quarantined { events, .. } = split_body(b"", AT) else {
            panic!("not quarantined");
        };
        assert_eq!(events.len(), 1);
        let q = events[0].quarantine.as_ref().unwrap();
        assert_eq!((q.part, q.parts, q.data.as_str()), (0, 1, ""));
        assert_eq!(
            q.body_sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn escaped_parts_fit_their_budget() {
        let text = "\u{1}".repeat(100) + "ab\"c" + &"é".repeat(10);
        for part in split_escaped(&text, 64) {
            let escaped = serde_json::to_string(part).unwrap();
            assert!(escaped.len() - 2 <= 64, "{} > 64", escaped.len() - 2);
        }
        assert_eq!(split_escaped(&text, 64).concat(), text);
    }
}
