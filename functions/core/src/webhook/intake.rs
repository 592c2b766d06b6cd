//! The webhook intake: Meta's subscription handshake and the receipt of a signed body, as
//! decisions free of HTTP (the router in `lc-api` maps them to statuses and fixed bodies).
//!
//! [`Intake::receive`] verifies the signature over the raw bytes, splits the body into one queue
//! message per event, and accepts only once the queue took every one of them; otherwise the
//! caller must make Meta retry (duplicates are absorbed later by idempotency). A signed body we
//! cannot parse is queued raw as quarantined and still accepted: nothing signed is lost.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::bus::inbound::heard_only_as;
use crate::bus::DetailType;
use crate::ports::queue::batches;
use crate::ports::{Clock, Metric, Metrics, OutMessage, PortError, QueueSender, SecretSource};
use crate::webhook::head::EnvelopeRef;
use crate::webhook::inbound::{write_key, EventJson};
use crate::webhook::model::{OBJECT_INSTAGRAM, OBJECT_PAGE};
use crate::webhook::normalize::{self, quarantine};
use crate::webhook::signature::{self, SignatureError};
use crate::webhook::{split_body, EventKind, InboundEvent, SplitOutcome};

/// An event's JSON must leave room in a queue message for its attributes and the queue's own
/// escapes.
const MAX_EVENT_BYTES: usize = crate::ports::queue::MAX_MESSAGE_BYTES - 16 * 1024;

/// Longest `hub.challenge` we echo (Meta sends a short number).
const MAX_CHALLENGE_LEN: usize = 256;

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Larger bodies are refused. Meta batches at most a few hundred KB; Lambda allows 6 MB.
    pub max_body_bytes: usize,
    /// Send rounds for entries the queue refused (1 = no retry).
    pub send_rounds: u32,
    /// Wait before the second round; doubles each round.
    pub retry_base: Duration,
    /// Kinds acknowledged and not queued: each is heard only as a detail type the operator
    /// switched off, so processing it would do nothing (see [`IntakeConfig::skipping`]).
    pub skip: Vec<EventKind>,
}

impl IntakeConfig {
    /// Skips the kinds heard only as one of the `off` detail types (`BusDetailTypesOff`):
    /// e.g. `DeliveryRead` off, and deliveries and reads cost Meta's POST and nothing more (no
    /// queue message, no events invocation, no log line).
    pub fn skipping(mut self, off: &[DetailType]) -> Self {
        self.skip = EventKind::ALL
            .iter()
            .copied()
            .filter(|k| heard_only_as(*k).is_some_and(|d| off.contains(&d)))
            .collect();
        self
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_body_bytes: 1024 * 1024,
            send_rounds: 4,
            retry_base: Duration::from_millis(50),
            skip: Vec::new(),
        }
    }
}

/// The answer to Meta's subscription handshake (`GET` with `hub.*` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyDecision {
    /// Echo this challenge: the subscription is ours.
    Echo(String),
    /// Wrong mode or token, or a missing or unreasonable challenge.
    Refused,
    /// The verify token could not be read: Meta should try again later.
    SecretsUnavailable,
}

/// What Meta is told about a POSTed body. Every refusal of a signature looks the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Every event is on the queue.
    Accepted,
    /// Over [`IntakeConfig::max_body_bytes`].
    TooLarge,
    /// Unsigned, sha1-only, malformed or forged.
    Unauthorized,
    /// The secrets could not be read: retry (a secrets outage must not look like a forgery).
    SecretsUnavailable,
    /// The queue did not take every event: Meta must retry.
    NotQueued,
}

/// What happened to a POSTed body, for logs (no secrets, no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    SignatureRefused(SignatureError),
    Accepted {
        events: usize,
        quarantined: usize,
        /// Events of a skipped kind, acknowledged and not queued.
        skipped: usize,
        send_calls: usize,
        retried_entries: usize,
    },
    EnqueueFailed {
        events: usize,
        unsent: usize,
    },
    SecretsUnavailable,
    TooLarge,
}

pub struct Intake {
    queue: Arc<dyn QueueSender>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    config: IntakeConfig,
}

impl Intake {
    pub fn new(
        queue: Arc<dyn QueueSender>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
        config: IntakeConfig,
    ) -> Self {
        Intake {
            queue,
            secrets,
            clock,
            metrics,
            config,
        }
    }

    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Meta's handshake: `hub.mode=subscribe`, our verify token, and a challenge to echo.
    pub async fn verify_subscription(
        &self,
        mode: Option<&str>,
        token: Option<&str>,
        challenge: Option<&str>,
    ) -> VerifyDecision {
        let (Some("subscribe"), Some(token), Some(challenge)) = (mode, token, challenge) else {
            return VerifyDecision::Refused;
        };
        if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
            return VerifyDecision::Refused;
        }
        let Ok(secrets) = self.secrets.secrets().await else {
            return VerifyDecision::SecretsUnavailable;
        };
        if !secrets.verify_token.matches(token) {
            return VerifyDecision::Refused;
        }
        VerifyDecision::Echo(challenge.to_string())
    }

    /// A POSTed body: verify, split, enqueue. `body` is exactly as received (already
    /// base64-decoded if the transport encoded it); `has_signature_sha1` says whether a legacy
    /// `X-Hub-Signature` header came with it. Counts what it did on the metrics port.
    pub async fn receive(
        &self,
        signature_256: Option<&str>,
        has_signature_sha1: bool,
        body: &[u8],
    ) -> (Receipt, Outcome) {
        let (receipt, outcome) = self.decide(signature_256, has_signature_sha1, body).await;
        self.count(&outcome);
        (receipt, outcome)
    }

    async fn decide(
        &self,
        signature_256: Option<&str>,
        has_signature_sha1: bool,
        body: &[u8],
    ) -> (Receipt, Outcome) {
        if body.len() > self.config.max_body_bytes {
            return (Receipt::TooLarge, Outcome::TooLarge);
        }
        let Ok(secrets) = self.secrets.secrets().await else {
            return (Receipt::SecretsUnavailable, Outcome::SecretsUnavailable);
        };
        let app = match signature::verify(
            signature_256,
            has_signature_sha1,
            body,
            secrets.app_secrets(),
        ) {
            Ok(index) => secrets
                .apps
                .get(index)
                .map(|a| a.app_id.clone())
                .filter(|id| !id.is_empty()),
            Err(e) => return (Receipt::Unauthorized, Outcome::SignatureRefused(e)),
        };

        let received_at = self.clock.now_ms();
        // The usual body: its messages written straight from its items. Otherwise (a body to
        // quarantine, an event too large for a message) the general path below.
        let (mut messages, events, quarantined) =
            match encode_body(body, received_at, app.as_deref()) {
                Some(messages) => {
                    let n = messages.len();
                    (messages, n, 0)
                }
                None => match general_messages(body, received_at, app) {
                    Ok(prepared) => prepared,
                    Err(events) => {
                        return (
                            Receipt::NotQueued,
                            Outcome::EnqueueFailed {
                                events,
                                unsent: events,
                            },
                        )
                    }
                },
            };
        let skipped = self.skip_unheard(&mut messages);
        match self.send_all(messages).await {
            SendReport {
                unsent: 0,
                calls,
                retried,
            } => (
                Receipt::Accepted,
                Outcome::Accepted {
                    events,
                    quarantined,
                    skipped,
                    send_calls: calls,
                    retried_entries: retried,
                },
            ),
            SendReport { unsent, .. } => (
                Receipt::NotQueued,
                Outcome::EnqueueFailed { events, unsent },
            ),
        }
    }

    /// Drops the messages of skipped kinds (their `kind` attribute is the event's kind, as
    /// [`message`] writes it); how many.
    fn skip_unheard(&self, messages: &mut Vec<OutMessage>) -> usize {
        if self.config.skip.is_empty() {
            return 0;
        }
        let before = messages.len();
        messages.retain(|m| {
            !m.attributes.iter().any(|(name, value)| {
                name == "kind" && self.config.skip.iter().any(|k| k.as_str() == value)
            })
        });
        before - messages.len()
    }

    fn count(&self, outcome: &Outcome) {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        match outcome {
            // What was queued is SQS's own `NumberOfMessagesSent` on the events queue (free);
            // an EMF document per POST to say it again cost ~250 bytes of logs per opt-in.
            Outcome::Accepted {
                quarantined,
                skipped,
                ..
            } => {
                if *quarantined > 0 {
                    self.metrics.record(Metric::Quarantined(n(*quarantined)));
                }
                if *skipped > 0 {
                    self.metrics
                        .record(Metric::WebhookEventsSkipped(n(*skipped)));
                }
            }
            Outcome::SignatureRefused(why) => self.metrics.record(Metric::SignatureFailure(*why)),
            // One per refused request: Meta retries the whole body.
            Outcome::EnqueueFailed { .. } => self.metrics.record(Metric::EnqueueFailure),
            Outcome::SecretsUnavailable | Outcome::TooLarge => {}
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

/// The general path of [`Intake::receive`]: split the body into events (or quarantine it),
/// quarantine the whole body as well when an event is too large for one queue message, encode.
/// `(messages, events, quarantined)`, or the number of events if they could not be encoded.
fn general_messages(
    body: &[u8],
    received_at: i64,
    app: Option<String>,
) -> Result<(Vec<OutMessage>, usize, usize), usize> {
    let (mut events, mut quarantined) = match split_body(body, received_at) {
        SplitOutcome::Events(events) => (events, 0),
        SplitOutcome::Quarantined { events, .. } => {
            let n = events.len();
            (events, n)
        }
    };
    if app.is_some() {
        for e in &mut events {
            e.app_id.clone_from(&app);
        }
    }
    // An event too large for one queue message (a giant field repeated in the item and the
    // key) cannot be queued as it is: the whole body is kept in quarantine instead of it,
    // so nothing signed is lost, and the other events go on as usual.
    let oversized = events
        .iter()
        .filter(|e| e.kind != EventKind::Quarantined)
        .filter(|e| e.to_json().map_or(true, |j| j.len() > MAX_EVENT_BYTES))
        .count();
    if oversized > 0 {
        events.retain(|e| {
            e.kind == EventKind::Quarantined
                || e.to_json().is_ok_and(|j| j.len() <= MAX_EVENT_BYTES)
        });
        let reason = format!("{oversized} event(s) too large for one queue message");
        if let SplitOutcome::Quarantined { events: parts, .. } =
            quarantine(body, reason, received_at)
        {
            quarantined += parts.len();
            events.extend(parts);
        }
    }
    match encode(&events) {
        Ok(messages) => Ok((messages, events.len(), quarantined)),
        Err(_) => Err(events.len()),
    }
}

/// The queue messages of a signed body whose envelope parses and whose events each fit one
/// message: byte for byte what [`encode`] makes of [`split_body`]'s events with `app_id` set on
/// each, but written straight from the items (no events built, one buffer per message).
/// `None` for every other body: those take [`Intake::receive`]'s general path.
pub fn encode_body(
    body: &[u8],
    received_at_ms: i64,
    app_id: Option<&str>,
) -> Option<Vec<OutMessage>> {
    // Borrowed from the body, and each messaging item's head read without building the model
    // (`webhook::head`): what the floor's typed parse allocates and drops is most of what this
    // path would cost above it. A body that does not read so takes the general path.
    let envelope = EnvelopeRef::parse(body)?;
    let mut messages = Vec::with_capacity(envelope.item_count());
    let mut key = String::new();
    let mut oversized = false;
    // U+FFFE / U+FFFF (EF BF BE / EF BF BF) reach a message only in bytes of the body (the
    // item) or in strings read out of it (an escape unescaped): without an 0xEF byte in
    // either, the message needs no look for them.
    let body_has_ef = body.contains(&0xEF);
    normalize::for_each_item_ref(&envelope, received_at_ms, |ctx, head, raw| {
        key.clear();
        write_key(
            &mut key,
            head.kind,
            head.mid,
            ctx.object,
            ctx.account_id,
            head.sender,
            head.timestamp_ms,
            raw.get().as_bytes(),
        );
        let json = EventJson {
            v: InboundEvent::SCHEMA_VERSION,
            key: &key,
            object: ctx.object,
            account_id: ctx.account_id,
            channel: head.channel,
            kind: head.kind,
            sender: head.sender,
            timestamp_ms: head.timestamp_ms.unwrap_or(ctx.received_at_ms),
            received_at_ms: ctx.received_at_ms,
            item: raw.get(),
            app_id,
        };
        let mut body = String::with_capacity(json.len_hint());
        json.write(&mut body);
        oversized |= body.len() > MAX_EVENT_BYTES;
        let has_ef = |s: &str| s.as_bytes().contains(&0xEF);
        let body = if body_has_ef
            || has_ef(&key)
            || has_ef(ctx.object)
            || has_ef(ctx.account_id)
            || head.sender.is_some_and(|(_, id)| has_ef(id))
            || app_id.is_some_and(has_ef)
        {
            sqs_safe(body)
        } else {
            body
        };
        messages.push(message(messages.len(), body, head.kind, ctx.object));
    });
    (!oversized).then_some(messages)
}

/// Encodes events as queue messages. Entry ids are positions, unique within the body.
pub fn encode(events: &[InboundEvent]) -> Result<Vec<OutMessage>, serde_json::Error> {
    let mut messages = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        messages.push(message(i, sqs_safe(e.to_json()?), e.kind, &e.object));
    }
    Ok(messages)
}

/// Entry `i` of a batch: the event's JSON (made [`sqs_safe`]) and its routing attributes.
fn message(i: usize, body: String, kind: EventKind, object: &str) -> OutMessage {
    OutMessage {
        id: entry_id(i),
        body,
        // Fixed names, the kind's fixed text and (usually) a known object: all borrowed.
        attributes: vec![
            (Cow::Borrowed("kind"), Cow::Borrowed(kind.as_str())),
            (Cow::Borrowed("object"), attribute_safe(object)),
        ],
        delay_secs: 0,
    }
}

/// `i` in decimal (`i.to_string()` without the formatting machinery).
fn entry_id(mut i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut n = digits.len();
    loop {
        n -= 1;
        digits[n] = b'0' + (i % 10) as u8;
        i /= 10;
        if i == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    std::str::from_utf8(&digits[n..])
        .unwrap_or_default()
        .to_owned()
}

/// An attribute value SQS accepts: non-empty, at most 64 characters, and only the characters
/// SQS allows (tab, LF, CR, U+0020..=U+D7FF, U+E000..=U+FFFD, supplementary planes); anything
/// else becomes `?`. It is a routing hint only: the event in the body is intact.
fn attribute_safe(s: &str) -> Cow<'static, str> {
    // The objects Meta sends for Messenger and Instagram: their own text, no copy.
    for known in [OBJECT_PAGE, OBJECT_INSTAGRAM] {
        if s == known {
            return Cow::Borrowed(known);
        }
    }
    // Other printable ASCII, not blank, short: as is.
    if s.len() <= 64 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.bytes().any(|b| b != b' ')
    {
        return Cow::Owned(s.to_owned());
    }
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    let v: String = s
        .chars()
        .take(64)
        .map(|c| if allowed(c) { c } else { '?' })
        .collect();
    if v.trim().is_empty() {
        Cow::Borrowed("-")
    } else {
        Cow::Owned(v)
    }
}

/// SQS refuses U+FFFE and U+FFFF in a body. JSON only allows them inside strings, where the
/// `\uXXXX` escape means the same thing, so escaping them keeps the event and its meaning.
fn sqs_safe(json: String) -> String {
    // Both are encoded EF BF BE / EF BF BF: without an 0xEF byte (a byte search, not a walk
    // over the characters) there is nothing to do.
    if !json.as_bytes().contains(&0xEF) || !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json;
    }
    json.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_decimal_positions() {
        for i in [0, 1, 9, 10, 99, 100, 12345, usize::MAX] {
            assert_eq!(entry_id(i), i.to_string());
        }
    }

    #[test]
    fn attribute_fast_path_agrees() {
        for s in [
            "page",
            "instagram",
            "",
            " ",
            "   ",
            "a b",
            "~",
            &"x".repeat(64),
            &"x".repeat(65),
        ] {
            let slow: String = s.chars().take(64).collect();
            let want = if slow.trim().is_empty() {
                "-".to_owned()
            } else {
                slow
            };
            assert_eq!(attribute_safe(s), want, "{s:?}");
        }
        assert_eq!(attribute_safe("p\u{0}ge\u{FFFF}"), "p?ge?");
        assert_eq!(attribute_safe("\t"), "-");
    }

    #[test]
    fn sqs_safe_escapes_only_forbidden_chars() {
        assert_eq!(sqs_safe("{\"a\":\"é\"}".into()), "{\"a\":\"é\"}");
        assert_eq!(sqs_safe("\u{FFFD}\u{F000}".into()), "\u{FFFD}\u{F000}");
        let fixed = sqs_safe("{\"a\":\"x\u{FFFF}\"}".into());
        assert_eq!(fixed, "{\"a\":\"x\\uffff\"}");
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["a"], "x\u{FFFF}");
    }
    // -----------------------------------------------------------------------------------------
    // encode_body (the webhook's hot path, `webhook::head`) against encode(split_body) (the
    // model's typed parse): byte for byte, on every fixture and on items probed field by field.
    // -----------------------------------------------------------------------------------------

    use crate::webhook::head::ItemHead;
    use crate::webhook::model::{Envelope, MessagingItem};
    use serde_json::value::RawValue;
    use serde_json::Value;

    const AT: i64 = 1_700_000_000_000;

    /// The general path's messages for a body whose envelope parses (`app_id` set as
    /// `Intake::receive` sets it).
    fn general(body: &[u8], app: Option<&str>) -> Option<Vec<OutMessage>> {
        let SplitOutcome::Events(mut events) = split_body(body, AT) else {
            return None;
        };
        for e in &mut events {
            e.app_id = app.map(str::to_owned);
        }
        Some(encode(&events).expect("encode"))
    }

    /// `encode_body` makes exactly the general path's messages, and takes exactly the bodies
    /// whose envelope the model parses.
    fn assert_same(body: &[u8], app: Option<&str>, what: &str) {
        assert_eq!(encode_body(body, AT, app), general(body, app), "{what}");
    }

    const APP: Option<&str> = Some("1517776481860111");

    #[test]
    fn fixtures_encode_as_the_general_path() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("fixture").path();
            let name = path.display().to_string();
            if !name.ends_with(".json") || name.ends_with(".expected.json") {
                continue;
            }
            let body = std::fs::read(&path).expect("fixture");
            assert_same(&body, None, &name);
            assert_same(&body, APP, &name);
            n += 1;
        }
        assert!(n > 30, "{n} fixtures");
    }

    const REFERRAL: &str = r#"{"ref":"r","source":"ADS","type":"OPEN_THREAD","ad_id":"3","referer_uri":"https:\/\/x","is_guest_user":true,"ads_context_data":{"ad_title":"x","photo_url":"u"}}"#;

    /// Items with every field the model knows, and one per kind and subject rule.
    fn templates() -> Vec<String> {
        let full = format!(
            concat!(
                r#"{{"sender":{{"id":"7","user_ref":"u1"}},"recipient":{{"id":"1","user_ref":"u2"}},"timestamp":1700000000000,"#,
                r#""message":{{"mid":"m_1","text":"h\u00e9","quick_reply":{{"payload":"P"}},"reply_to":{{"mid":"m_0","is_self_reply":true}},"#,
                r#""attachments":[{{"type":"image","payload":{{"url":"u","sticker_id":1}},"title":"t","url":"u"}}],"#,
                r#""is_echo":false,"app_id":5,"metadata":"md","sticker_id":"9","referral":{r},"is_deleted":false,"is_unsupported":"0"}},"#,
                r#""postback":{{"mid":"m_2","title":"T","payload":"P","referral":{r}}},"#,
                r#""optin":{{"type":"notification_messages","payload":"p","ref":"r","user_ref":"u3","login_id":"L1","title":"t","#,
                r#""notification_messages_token":"tok","notification_messages_frequency":"DAILY","notification_messages_timezone":"Europe\/Paris","#,
                r#""token_expiry_timestamp":1725000000000,"user_token_status":"REFRESHED","notification_messages_status":"STOP NOTIFICATIONS"}},"#,
                r#""referral":{r},"delivery":{{"mids":["m_1","m_2"],"watermark":1700000000000}},"#,
                r#""read":{{"watermark":1700000000000,"mid":"m_1"}},"policy_enforcement":{{"action":"block","reason":"r"}},"#,
                r#""pass_thread_control":{{"previous_owner_app_id":null,"new_owner_app_id":"1","metadata":"m"}},"#,
                r#""take_thread_control":{{"previous_owner_app_id":2,"new_owner_app_id":"1","metadata":"m"}},"#,
                r#""request_thread_control":{{"requested_owner_app_id":1,"metadata":"m"}},"app_roles":{{"123":["primary_receiver"]}},"#,
                r#""account_linking":{{"status":"linked","authorization_code":"c"}},"response_feedback":{{"feedback":"Good","mid":"m_1"}},"#,
                r#""reaction":{{"reaction":"love","emoji":"\u2764","action":"react","mid":"m_1"}},"#,
                r#""prior_message":{{"source":"checkbox_plugin","identifier":"u"}}}}"#
            ),
            r = REFERRAL
        );
        let s = r#""sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1700000000123"#;
        let mut out = vec![full];
        out.extend(
            [
                r#""message":{"mid":"m_1","text":"hi"}"#,
                r#""message":{"mid":"m_1","is_echo":true,"app_id":1517776481860111,"metadata":"x"}"#,
                r#""postback":{"mid":"m_2","payload":"GET_STARTED","referral":{"ref":"r"}}"#,
                r#""optin":{"login_id":"L1","ref":"r"}"#,
                r#""optin":{"user_ref":"U1"}"#,
                r#""reaction":{"mid":"m_1","action":"react"}"#,
                r#""referral":{"ref":"r","source":"SHORTLINK"}"#,
                r#""delivery":{"mids":["m_1"],"watermark":1}"#,
                r#""read":{"watermark":"1700000000"}"#,
                r#""policy-enforcement":{"action":"block"}"#,
                r#""app_roles":{"1":["primary_receiver"]}"#,
                r#""account_linking":{"status":"unlinked"}"#,
                r#""response_feedback":{"feedback":"Good"}"#,
                r#""standby_only":{}"#,
            ]
            .iter()
            .map(|event| format!("{{{s},{event}}}")),
        );
        // No sender: the subject comes from the opt-in, or nobody.
        out.push(r#"{"recipient":{"id":"1"},"optin":{"user_ref":"U1"}}"#.to_owned());
        out.push(r#"{"sender":{"user_ref":"U2"},"message":{"mid":"m_3"}}"#.to_owned());
        out
    }

    /// Values of every JSON type, and the edges the model's types care about.
    const PROBES: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-1",
        "7",
        "1.5",
        "1e3",
        "1e300",
        "1e400",
        "18446744073709551616",
        "1527459824",
        r#""1527459824""#,
        r#""""#,
        r#""x""#,
        r#""m_\u0031\/""#,
        r#""\ud800""#,
        r#""\ud83d\ude4f""#,
        r#""true""#,
        "[]",
        r#"["x"]"#,
        r#"["m_1","t"]"#,
        r#"[null]"#,
        r#"[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]"#,
        "{}",
        r#"{"id":"1"}"#,
        r#"{"id":5,"id":6}"#,
        r#"{"mid":"m_9","is_echo":true}"#,
        r#"{"mid":"m_9","mid":"m_8"}"#,
        r#"{"user_ref":"u","login_id":"L"}"#,
        r#"{"a":1e400}"#,
        r#"{"$serde_json::private::RawValue":"1"}"#,
    ];

    /// Every path of a JSON value (object members and array elements), as steps.
    fn paths(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    at.push(Step::Key(k.clone()));
                    out.push(at.clone());
                    paths(child, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    at.push(Step::Index(i));
                    out.push(at.clone());
                    paths(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Key(String),
        Index(usize),
    }

    fn slot<'v>(v: &'v mut Value, path: &[Step]) -> &'v mut Value {
        path.iter().fold(v, |v, step| match step {
            Step::Key(k) => &mut v[k.as_str()],
            Step::Index(i) => &mut v[*i],
        })
    }

    const MARK: &str = "\u{1}probe";

    /// The item with the value at `path` replaced by `probe` (JSON text), or removed.
    fn probed(item: &Value, path: &[Step], probe: Option<&str>) -> String {
        let mut v = item.clone();
        match probe {
            Some(probe) => {
                *slot(&mut v, path) = Value::String(MARK.into());
                let marked = serde_json::to_string(&MARK).expect("mark");
                serde_json::to_string(&v)
                    .expect("item")
                    .replace(&marked, probe)
            }
            None => {
                let (last, parent) = path.split_last().expect("a path has a step");
                match (slot(&mut v, parent), last) {
                    (Value::Object(m), Step::Key(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Step::Index(i)) => {
                        a.remove(*i);
                    }
                    _ => unreachable!("paths name members and elements"),
                }
                serde_json::to_string(&v).expect("item")
            }
        }
    }

    #[test]
    fn probed_items_encode_as_the_general_path() {
        let mut items = 0;
        let mut heads = 0;
        for (t, template) in templates().iter().enumerate() {
            let item: Value = serde_json::from_str(template).expect(template);
            let mut all = Vec::new();
            paths(&item, &mut Vec::new(), &mut all);
            let mut texts = vec![template.clone()];
            for path in &all {
                texts.push(probed(&item, path, None));
                for probe in PROBES {
                    texts.push(probed(&item, path, Some(probe)));
                }
            }
            let object = if t % 3 == 2 { "instagram" } else { "page" };
            for text in texts {
                let raw: Box<RawValue> = match serde_json::from_str(&text) {
                    Ok(raw) => raw,
                    // A probe that makes the item invalid JSON (deep nesting): not an item.
                    Err(_) => continue,
                };
                // The head reads exactly the items the model reads (the raw value token
                // aside: refused, the model then decides).
                let model_ok = MessagingItem::parse(&raw).is_ok();
                let head_ok = ItemHead::parse(&raw).is_ok();
                if text.contains("$serde_json") {
                    assert!(!head_ok || model_ok, "{text}");
                } else {
                    assert_eq!(head_ok, model_ok, "{text}");
                }
                heads += usize::from(head_ok);
                let body = format!(
                    r#"{{"object":"{object}","entry":[{{"id":"1","time":1700000009000,"messaging":[{text}],"standby":[{text}]}}]}}"#
                );
                assert_same(body.as_bytes(), APP, &body);
                let untimed =
                    format!(r#"{{"object":"{object}","entry":[{{"id":1,"messaging":[{text}]}}]}}"#);
                assert_same(untimed.as_bytes(), None, &untimed);
                items += 1;
            }
        }
        assert!(items > 3000, "{items} items");
        // Most probes make the item malformed; the rest must not all fall back to the model.
        assert!(heads > items / 3, "{heads} of {items} read by the head");
    }

    #[test]
    fn probed_envelopes_encode_as_the_general_path() {
        let item = r#"{"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1,"read":{}}"#;
        let template = format!(
            r#"{{"object":"page","entry":[{{"id":"1","time":1700000009000,"messaging":[{item}],"standby":[{item}],"changes":[{{"field":"feed","value":{{"from":{{"id":"9"}}}}}}]}}]}}"#
        );
        let envelope: Value = serde_json::from_str(&template).expect("template");
        let mut all = Vec::new();
        paths(&envelope, &mut Vec::new(), &mut all);
        let mut bodies = vec![template.clone()];
        for path in &all {
            bodies.push(probed(&envelope, path, None));
            for probe in PROBES {
                bodies.push(probed(&envelope, path, Some(probe)));
            }
        }
        bodies.extend(
            [
                r#"["page",[]]"#,
                r#" {"object":"page","entry":[["1",1700000009000,[{"read":{}}]]]}"#,
                r#"{"object":"pa\u0067e","entry":[{"id":"\u0031","messaging":null}]}"#,
                r#"{"object":"page","entry":[],"object":"page"}"#,
                r#"{"object":"page","entry":[]} x"#,
            ]
            .map(str::to_owned),
        );
        for body in &bodies {
            let parses = serde_json::from_str::<Envelope>(body).is_ok()
                && body.trim_start().starts_with('{');
            assert_eq!(
                crate::webhook::head::EnvelopeRef::parse(body.as_bytes()).is_some(),
                parses,
                "{body}"
            );
            assert_same(body.as_bytes(), APP, body);
        }
    }
}
