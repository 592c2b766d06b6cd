//! The webhook intake: Meta's subscription handshake and the receipt of a signed body, as
//! decisions free of HTTP (the router in `lc-api` maps them to statuses and fixed bodies).
//!
//! [`Intake::receive`] verifies the signature over the raw bytes, splits the body into one queue
//! message per event, and accepts only once the queue took every one of them; otherwise the
//! caller must make Meta retry (duplicates are absorbed later by idempotency). A signed body we
//! cannot parse is queued raw as quarantined and still accepted: nothing signed is lost.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::ports::queue::batches;
use crate::ports::{Clock, Metric, Metrics, OutMessage, PortError, QueueSender, SecretSource};
use crate::webhook::inbound::{write_key, EventJson};
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
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_body_bytes: 1024 * 1024,
            send_rounds: 4,
            retry_base: Duration::from_millis(50),
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
        let (messages, events, quarantined) = match encode_body(body, received_at, app.as_deref()) {
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

    fn count(&self, outcome: &Outcome) {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        match outcome {
            // What was queued is SQS's own `NumberOfMessagesSent` on the events queue (free);
            // an EMF document per POST to say it again cost ~250 bytes of logs per opt-in.
            Outcome::Accepted { quarantined, .. } => {
                if *quarantined > 0 {
                    self.metrics.record(Metric::Quarantined(n(*quarantined)));
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
    let envelope = normalize::parse_envelope(body).ok()?;
    let mut messages = Vec::with_capacity(normalize::item_count(&envelope));
    let mut key = String::new();
    let mut oversized = false;
    // U+FFFE / U+FFFF (EF BF BE / EF BF BF) reach a message only in bytes of the body (the
    // item) or in strings read out of it (an escape unescaped): without an 0xEF byte in
    // either, the message needs no look for them.
    let body_has_ef = body.contains(&0xEF);
    normalize::for_each_item(envelope, received_at_ms, |ctx, head, raw| {
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
        attributes: vec![
            ("kind".into(), kind.as_str().into()),
            ("object".into(), attribute_safe(object)),
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
fn attribute_safe(s: &str) -> String {
    // The usual case (`page`, `instagram`): printable ASCII, not blank, short. As is.
    if s.len() <= 64 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.bytes().any(|b| b != b' ')
    {
        return s.to_owned();
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
        "-".into()
    } else {
        v
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
}
