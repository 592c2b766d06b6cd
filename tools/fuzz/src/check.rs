//! One execution: the real `Intake` (a `MemoryQueue` behind SQS's acceptance rules, fixed
//! secrets, a fixed clock, `NoMetrics`) on one input, and the invariants checked on what it did.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use lc_core::memory::{ManualClock, MemoryQueue};
use lc_core::ports::{
    Clock, EntryFailure, Metrics, NoMetrics, OutMessage, PortError, QueueSender, SecretSource,
};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Intake, IntakeConfig, Receipt, VerifyDecision};
use lc_core::webhook::{Channel, EventKind, InboundEvent};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

use crate::gen::{Input, Signed, VerifyInput, SECRET_A, SECRET_B, VERIFY_TOKEN};

/// SQS's largest message, and what `template.yaml` sets on the events queue
/// (`MaximumMessageSize: 1048576`): body plus attribute names, types and values.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;
/// SQS's limit on one `SendMessageBatch` request (all entries together).
pub const SQS_MAX_BATCH_BYTES: usize = 1_048_576;
pub const SQS_MAX_BATCH_ENTRIES: usize = 10;

pub const NOW_MS: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Panic,
    UnsignedAccepted,
    SignedLost,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Panic => "panic",
            Kind::UnsignedAccepted => "unsigned_accepted",
            Kind::SignedLost => "signed_lost",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: Kind,
    /// What kind of failure, without the input's numbers (findings are counted by class).
    pub class: String,
    pub reason: String,
}

/// Counts: the invariants, and what the inputs did (for the stats line and the report).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub execs: u64,
    pub panics: u64,
    pub unsigned_accepted: u64,
    pub signed_lost: u64,
    pub accepted: u64,
    pub accepted_quarantined: u64,
    pub accepted_empty: u64,
    pub unauthorized: u64,
    pub too_large: u64,
    pub not_queued: u64,
    pub messages: u64,
    pub max_message_bytes: usize,
    pub verify_calls: u64,
    pub verify_echoed: u64,
    pub verify_refused_valid: u64,
    pub slowest_ns: u64,
    pub slowest_index: u64,
    /// Per generation strategy: executions and nanoseconds.
    pub by_strategy: Vec<(&'static str, u64, u64)>,
    /// Findings by kind and class: count and the smallest index that showed it.
    pub classes: Vec<(Kind, String, u64, u64)>,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.execs += o.execs;
        self.panics += o.panics;
        self.unsigned_accepted += o.unsigned_accepted;
        self.signed_lost += o.signed_lost;
        self.accepted += o.accepted;
        self.accepted_quarantined += o.accepted_quarantined;
        self.accepted_empty += o.accepted_empty;
        self.unauthorized += o.unauthorized;
        self.too_large += o.too_large;
        self.not_queued += o.not_queued;
        self.messages += o.messages;
        self.max_message_bytes = self.max_message_bytes.max(o.max_message_bytes);
        self.verify_calls += o.verify_calls;
        self.verify_echoed += o.verify_echoed;
        self.verify_refused_valid += o.verify_refused_valid;
        if o.slowest_ns > self.slowest_ns {
            self.slowest_ns = o.slowest_ns;
            self.slowest_index = o.slowest_index;
        }
        for &(name, n, ns) in &o.by_strategy {
            self.timed(name, n, ns);
        }
        for (kind, class, n, index) in &o.classes {
            self.classify(*kind, class, *n, *index);
        }
    }

    pub fn classify(&mut self, kind: Kind, class: &str, n: u64, index: u64) {
        match self
            .classes
            .iter_mut()
            .find(|(k, c, _, _)| *k == kind && c == class)
        {
            Some(e) => {
                e.2 += n;
                e.3 = e.3.min(index);
            }
            None => self.classes.push((kind, class.to_string(), n, index)),
        }
    }

    pub fn timed(&mut self, strategy: &'static str, n: u64, ns: u64) {
        match self.by_strategy.iter_mut().find(|(s, _, _)| *s == strategy) {
            Some(e) => {
                e.1 += n;
                e.2 += ns;
            }
            None => self.by_strategy.push((strategy, n, ns)),
        }
    }

    fn count(&mut self, f: &Finding) {
        match f.kind {
            Kind::Panic => self.panics += 1,
            Kind::UnsignedAccepted => self.unsigned_accepted += 1,
            Kind::SignedLost => self.signed_lost += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Panics: recorded, not printed, while an execution runs
// ---------------------------------------------------------------------------------------------

thread_local! {
    static IN_EXEC: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside an execution are recorded for the report; any other panic (a bug in this
/// harness) is printed as usual.
pub fn install_panic_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if IN_EXEC.with(Cell::get) {
            let msg = info.to_string().replace('\n', " ");
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
        } else {
            default(info);
        }
    }));
}

fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_EXEC.with(|c| c.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    IN_EXEC.with(|c| c.set(false));
    r.map_err(|payload| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".into())
    })
}

// ---------------------------------------------------------------------------------------------
// SQS's acceptance rules in front of the MemoryQueue
// ---------------------------------------------------------------------------------------------

/// The twin takes any message; SQS does not. An entry SQS would refuse is refused here too (a
/// sender fault: resending it unchanged fails again), and the reason is kept for the report.
struct SqsRules {
    inner: Arc<MemoryQueue>,
    refusals: Mutex<Vec<Refusal>>,
}

/// Why SQS would refuse a request or an entry: a class (for counting) and the details.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub class: String,
    pub detail: String,
}

/// SendMessage's allowed characters (message attribute string values have the same rule).
fn sqs_char_ok(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// The first character SQS refuses. In UTF-8 those are the C0 controls but tab, LF and CR
/// (single bytes) and U+FFFE, U+FFFF (`EF BF BE`, `EF BF BF`); a `str` holds no surrogates.
/// A byte scan finds candidates cheaply; the character check decides.
fn forbidden_char(s: &str) -> Option<char> {
    let b = s.as_bytes();
    let suspect = b
        .iter()
        .position(|&c| (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r')) || c == 0xEF)?;
    s[suspect..].chars().find(|&c| !sqs_char_ok(c))
}

fn sqs_size(m: &OutMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + "String".len() + v.len())
            .sum::<usize>()
}

fn kind_of(m: &OutMessage) -> &str {
    m.attributes
        .iter()
        .find(|(k, _)| k == "kind")
        .map_or("?", |(_, v)| v.as_ref())
}

fn refusal(class: String, detail: String) -> Option<Refusal> {
    Some(Refusal { class, detail })
}

fn entry_problem(m: &OutMessage) -> Option<Refusal> {
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 80
        && m.id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !id_ok {
        return refusal(
            "entry id not [A-Za-z0-9_-]{1,80}".into(),
            format!("{:?}", m.id),
        );
    }
    if m.body.is_empty() {
        return refusal("empty message body".into(), String::new());
    }
    if let Some(c) = forbidden_char(&m.body) {
        let class = format!("InvalidMessageContents: body has U+{:04X}", c as u32);
        return refusal(class, format!("kind={}", kind_of(m)));
    }
    if m.attributes.len() > 10 {
        return refusal("more than 10 message attributes".into(), String::new());
    }
    for (name, value) in &m.attributes {
        if value.is_empty() {
            return refusal(format!("attribute {name} is empty"), String::new());
        }
        if let Some(c) = forbidden_char(value) {
            let class = format!(
                "InvalidMessageContents: attribute {name} has U+{:04X}",
                c as u32
            );
            return refusal(class, format!("kind={}", kind_of(m)));
        }
    }
    let size = sqs_size(m);
    if size > SQS_MAX_MESSAGE_BYTES {
        return refusal(
            format!(
                "message over {SQS_MAX_MESSAGE_BYTES} bytes (kind={})",
                kind_of(m)
            ),
            format!("{size} bytes"),
        );
    }
    if m.delay_secs > 900 {
        return refusal("delay over 900 s".into(), m.delay_secs.to_string());
    }
    None
}

impl SqsRules {
    fn refused(&self, r: Refusal) -> PortError {
        let e = PortError::Rejected(format!("{}: {}", r.class, r.detail));
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
        e
    }
}

#[async_trait]
impl QueueSender for SqsRules {
    async fn send_batch(&self, messages: &[OutMessage]) -> Result<Vec<EntryFailure>, PortError> {
        // Whole-request errors first, as SQS checks them.
        if messages.is_empty() {
            let r = Refusal {
                class: "EmptyBatchRequest".into(),
                detail: String::new(),
            };
            return Err(self.refused(r));
        }
        if messages.len() > SQS_MAX_BATCH_ENTRIES {
            let r = Refusal {
                class: "TooManyEntriesInBatchRequest".into(),
                detail: messages.len().to_string(),
            };
            return Err(self.refused(r));
        }
        let mut ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            let r = Refusal {
                class: "BatchEntryIdsNotDistinct".into(),
                detail: String::new(),
            };
            return Err(self.refused(r));
        }
        let total: usize = messages.iter().map(sqs_size).sum();
        if total > SQS_MAX_BATCH_BYTES {
            // Name the largest entry: usually one message over the limit on its own.
            let big = messages
                .iter()
                .max_by_key(|m| sqs_size(m))
                .expect("not empty");
            let class = if sqs_size(big) > SQS_MAX_MESSAGE_BYTES {
                format!(
                    "message over {SQS_MAX_MESSAGE_BYTES} bytes (kind={})",
                    kind_of(big)
                )
            } else {
                "BatchRequestTooLong".into()
            };
            let r = Refusal {
                class,
                detail: format!(
                    "batch of {} is {total} bytes; largest entry {} bytes",
                    messages.len(),
                    sqs_size(big)
                ),
            };
            return Err(self.refused(r));
        }
        let mut failures = Vec::new();
        let mut ok = Vec::new();
        for m in messages {
            match entry_problem(m) {
                Some(r) => {
                    failures.push(EntryFailure {
                        id: m.id.clone(),
                        code: r.class.clone(),
                        sender_fault: true,
                    });
                    self.refused(r);
                }
                None => ok.push(m.clone()),
            }
        }
        if !ok.is_empty() {
            failures.extend(self.inner.send_batch(&ok).await?);
        }
        Ok(failures)
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

pub struct Harness {
    rt: Runtime,
    clock: Arc<dyn Clock>,
    one_app: Arc<dyn SecretSource>,
    two_apps: Arc<dyn SecretSource>,
    metrics: Arc<dyn Metrics>,
    config: IntakeConfig,
    pub tally: Tally,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime")
}

fn secrets(keys: &[&str]) -> Arc<dyn SecretSource> {
    let apps = keys
        .iter()
        .enumerate()
        .map(|(i, k)| AppCredentials {
            app_id: format!("10{i}"),
            app_secret: Secret::new(*k),
            client_token: Secret::default(),
        })
        .collect();
    Arc::new(Arc::new(Secrets {
        apps,
        verify_token: Secret::new(VERIFY_TOKEN),
        ..Default::default()
    }))
}

/// What one execution did, for `--index` and `--replay`.
pub struct Report {
    pub receipt: Option<Receipt>,
    pub outcome: String,
    pub message_sizes: Vec<usize>,
    pub refusals: Vec<Refusal>,
    pub findings: Vec<Finding>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            rt: runtime(),
            clock: Arc::new(ManualClock::at(NOW_MS)),
            one_app: secrets(&[SECRET_A]),
            two_apps: secrets(&[SECRET_A, SECRET_B]),
            metrics: Arc::new(NoMetrics),
            // The deployed defaults, but no pause between send rounds: the rules above refuse
            // deterministically, and waiting would only slow the run.
            config: IntakeConfig {
                retry_base: Duration::ZERO,
                ..IntakeConfig::default()
            },
            tally: Tally::default(),
        }
    }

    pub fn max_body(&self) -> usize {
        self.config.max_body_bytes
    }

    /// Runs one input; counts it and returns what it found.
    pub fn exec(&mut self, input: &Input) -> Report {
        self.tally.execs += 1;
        let queue = Arc::new(MemoryQueue::with_clock(
            "events",
            self.clock.clone(),
            30_000,
        ));
        let sqs = Arc::new(SqsRules {
            inner: queue.clone(),
            refusals: Mutex::new(Vec::new()),
        });
        let secrets = if input.two_apps {
            &self.two_apps
        } else {
            &self.one_app
        };
        let intake = Intake::new(
            sqs.clone(),
            secrets.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.config.clone(),
        );
        let mut findings = Vec::new();
        let rt = &self.rt;
        let result = guarded(|| {
            rt.block_on(intake.receive(input.header.as_deref(), input.has_sha1, &input.body))
        });
        let mut report = Report {
            receipt: None,
            outcome: String::new(),
            message_sizes: Vec::new(),
            refusals: Vec::new(),
            findings: Vec::new(),
        };
        match result {
            Err(msg) => {
                findings.push(Finding {
                    kind: Kind::Panic,
                    class: format!("receive panicked: {}", truncate(&msg, 160)),
                    reason: format!("receive panicked: {msg}"),
                });
                // The runtime unwound through block_on: start from a fresh one.
                self.rt = runtime();
            }
            Ok((receipt, outcome)) => {
                let bodies = queue.bodies();
                report.receipt = Some(receipt);
                report.outcome = format!("{outcome:?}");
                report.message_sizes = bodies.iter().map(String::len).collect();
                report.refusals = sqs
                    .refusals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Some(f) = self.judge(input, receipt, &bodies, &report) {
                    findings.push(f);
                }
            }
        }
        if let Some(v) = &input.verify {
            if let Some(f) = self.verify(&intake, v) {
                findings.push(f);
            }
        }
        for f in &findings {
            self.tally.count(f);
        }
        report.findings = findings;
        report
    }

    fn judge(
        &mut self,
        input: &Input,
        receipt: Receipt,
        bodies: &[String],
        report: &Report,
    ) -> Option<Finding> {
        let t = &mut self.tally;
        t.messages += bodies.len() as u64;
        t.max_message_bytes = t
            .max_message_bytes
            .max(bodies.iter().map(String::len).max().unwrap_or(0));
        match receipt {
            Receipt::Unauthorized => t.unauthorized += 1,
            Receipt::TooLarge => t.too_large += 1,
            Receipt::NotQueued => t.not_queued += 1,
            Receipt::Accepted => t.accepted += 1,
            Receipt::SecretsUnavailable => {}
        }
        let len = input.body.len();
        let max = self.config.max_body_bytes;
        let refused = matches!(receipt, Receipt::Unauthorized | Receipt::TooLarge);
        if refused && bodies.is_empty() {
            let refused_for_size = receipt == Receipt::TooLarge && len > max;
            if input.signed == Signed::Canonical && !refused_for_size {
                return Some(lost(
                    format!("correctly signed body refused: {receipt:?}"),
                    format!(
                        "correctly signed body of {len} bytes refused: {}",
                        report.outcome
                    ),
                ));
            }
            return None;
        }
        // Past the signature check, or something reached the queue.
        if !authentic(input) {
            return Some(Finding {
                kind: Kind::UnsignedAccepted,
                class: format!("header {} passed: {receipt:?}", input.header_kind),
                reason: format!(
                    "header {} ({:?}, sha1={}) passed: {:?}, {} message(s)",
                    input.header_kind,
                    truncate(input.header.as_deref().unwrap_or("<none>"), 90),
                    input.has_sha1,
                    receipt,
                    bodies.len()
                ),
            });
        }
        if receipt != Receipt::Accepted {
            let (class, why) = match report.refusals.first() {
                Some(r) => (
                    format!("not accepted: SQS would refuse: {}", r.class),
                    format!("{} ({})", r.class, r.detail),
                ),
                None => (
                    format!("not accepted: {receipt:?}, no queue refusal"),
                    "no queue refusal recorded".into(),
                ),
            };
            return Some(lost(
                class,
                format!(
                    "signed body of {len} bytes not accepted: {}; first of {} queue refusal(s): {why}",
                    report.outcome,
                    report.refusals.len()
                ),
            ));
        }
        match account(&input.body, bodies) {
            Ok(Accounted::Quarantined) => t.accepted_quarantined += 1,
            Ok(Accounted::Events(0)) => t.accepted_empty += 1,
            Ok(Accounted::Events(_)) => {}
            Err((class, why)) => {
                return Some(lost(
                    format!("accepted but not accounted for: {class}"),
                    format!("accepted body of {len} bytes: {why}"),
                ))
            }
        }
        None
    }

    fn verify(&mut self, intake: &Intake, v: &VerifyInput) -> Option<Finding> {
        self.tally.verify_calls += 1;
        let rt = &self.rt;
        let decision = guarded(|| {
            rt.block_on(intake.verify_subscription(
                v.mode.as_deref(),
                v.token.as_deref(),
                v.challenge.as_deref(),
            ))
        });
        let decision = match decision {
            Ok(d) => d,
            Err(msg) => {
                self.rt = runtime();
                return Some(Finding {
                    kind: Kind::Panic,
                    class: format!("verify_subscription panicked: {}", truncate(&msg, 160)),
                    reason: format!("verify_subscription panicked: {msg}"),
                });
            }
        };
        let right = v.mode.as_deref() == Some("subscribe")
            && v.token.as_deref() == Some(VERIFY_TOKEN)
            && v.challenge.as_deref().is_some_and(|c| !c.is_empty());
        match decision {
            VerifyDecision::Echo(echo) => {
                self.tally.verify_echoed += 1;
                if !right || v.challenge.as_deref() != Some(echo.as_str()) {
                    return Some(Finding {
                        kind: Kind::UnsignedAccepted,
                        class: "handshake echoed without mode, token and challenge".into(),
                        reason: format!("handshake echoed {echo:?} for {v:?}"),
                    });
                }
            }
            VerifyDecision::Refused => {
                let short = v.challenge.as_deref().is_some_and(|c| c.len() <= 256);
                if right && short {
                    self.tally.verify_refused_valid += 1;
                }
            }
            VerifyDecision::SecretsUnavailable => {}
        }
        None
    }
}

fn lost(class: impl Into<String>, reason: String) -> Finding {
    Finding {
        kind: Kind::SignedLost,
        class: class.into(),
        reason,
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Whether the header carries a true digest of the body under a configured secret, in any
/// spelling. Computed here, independently of the intake: nothing else may pass.
fn authentic(input: &Input) -> bool {
    let Some(header) = input.header.as_deref() else {
        return false;
    };
    let header = header.to_ascii_lowercase();
    input
        .true_digests
        .iter()
        .any(|d| header.contains(d.as_str()))
}

enum Accounted {
    Events(usize),
    Quarantined,
}

/// The same SQS-safe escaping the intake applies to a message (U+FFFE and U+FFFF in strings).
fn sqs_safe(s: &str) -> String {
    s.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

fn channel_rank(c: Channel) -> u8 {
    match c {
        Channel::Messaging => 0,
        Channel::Standby => 1,
        Channel::Changes => 2,
        Channel::Login => 3,
        Channel::Quarantine => 4,
    }
}

/// Do the queued messages account for the body? Either every (entry, item) of the body is one
/// event carrying the item's bytes, or the quarantine parts reassemble to the exact body.
/// Errors are (class, details).
fn account(body: &[u8], bodies: &[String]) -> Result<Accounted, (String, String)> {
    let fail = |class: &str, detail: String| (class.to_string(), detail);
    let mut events = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.iter().enumerate() {
        let e = InboundEvent::from_json(b).map_err(|e| {
            fail(
                "a queue message the consumer cannot read",
                format!("queue message {i} ({} bytes): {e}", b.len()),
            )
        })?;
        events.push(e);
    }
    if events.iter().any(|e| {
        e.quarantine.is_some()
            || e.kind == EventKind::Quarantined
            || e.channel == Channel::Quarantine
    }) {
        reassemble(body, &events)
            .map_err(|e| fail("quarantine parts do not rebuild the body", e))?;
        return Ok(Accounted::Quarantined);
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        fail(
            "events from a body that is not UTF-8",
            format!("{} event(s)", events.len()),
        )
    })?;
    let (object, mut want) = items(text).map_err(|e| {
        fail(
            "events from a body that is not an envelope",
            format!("{} event(s); {e}", events.len()),
        )
    })?;
    let mut got: Vec<(u8, String)> = events
        .iter()
        .map(|e| (channel_rank(e.channel), e.item.get().to_owned()))
        .collect();
    if let Some(e) = events.iter().find(|e| e.object != object) {
        return Err(fail(
            "event object differs from the body's",
            format!(
                "{:?} vs {:?}",
                truncate(&e.object, 40),
                truncate(&object, 40)
            ),
        ));
    }
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        let missing = want.iter().find(|w| !got.contains(w));
        return Err(fail(
            "items and events differ",
            format!(
                "{} item(s) in the body, {} event(s) queued; first missing: {:?}",
                want.len(),
                got.len(),
                missing.map(|(c, s)| (c, truncate(s, 80)))
            ),
        ));
    }
    Ok(Accounted::Events(got.len()))
}

type Items = (String, Vec<(u8, String)>);

/// The body's `object` and its (channel, item bytes), read with serde_json's generic maps.
/// An entry given as an array is read by position (id, time, messaging, standby, changes), as
/// a derived struct would.
fn items(text: &str) -> Result<Items, serde_json::Error> {
    let top: HashMap<String, &RawValue> = serde_json::from_str(text)?;
    let object: String = match top.get("object") {
        Some(raw) => serde_json::from_str(raw.get())?,
        None => String::new(),
    };
    let entries: Vec<&RawValue> = match top.get("entry") {
        Some(raw) => serde_json::from_str(raw.get())?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for entry in entries {
        let lists: [(u8, Option<&RawValue>); 3] = if entry.get().trim_start().starts_with('[') {
            let fields: Vec<&RawValue> = serde_json::from_str(entry.get())?;
            [
                (0, fields.get(2).copied()),
                (1, fields.get(3).copied()),
                (2, fields.get(4).copied()),
            ]
        } else {
            let map: HashMap<String, &RawValue> = serde_json::from_str(entry.get())?;
            [
                (0, map.get("messaging").copied()),
                (1, map.get("standby").copied()),
                (2, map.get("changes").copied()),
            ]
        };
        for (rank, list) in lists {
            let Some(list) = list else { continue };
            let list: Option<Vec<&RawValue>> = serde_json::from_str(list.get())?;
            for item in list.unwrap_or_default() {
                out.push((rank, sqs_safe(item.get())));
            }
        }
    }
    Ok((object, out))
}

fn reassemble(body: &[u8], events: &[InboundEvent]) -> Result<(), String> {
    let sha = hex::encode(Sha256::digest(body));
    let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
    for e in events {
        let q = e
            .quarantine
            .as_ref()
            .ok_or("quarantine parts mixed with events")?;
        if e.kind != EventKind::Quarantined || e.channel != Channel::Quarantine {
            return Err(format!(
                "quarantine part with kind {:?}, channel {:?}",
                e.kind, e.channel
            ));
        }
        if q.body_sha256 != sha {
            return Err("quarantine part names another body (body_sha256)".into());
        }
        let total = q.parts as usize;
        if total != events.len() {
            return Err(format!(
                "quarantine says {total} part(s), {} queued",
                events.len()
            ));
        }
        parts.resize(total, None);
        let slot = parts
            .get_mut(q.part as usize)
            .ok_or_else(|| format!("part {} of {total}", q.part))?;
        if slot.is_some() {
            return Err(format!("part {} queued twice", q.part));
        }
        *slot = Some(match q.encoding.as_str() {
            "utf8" => q.data.as_bytes().to_vec(),
            "base64" => BASE64
                .decode(&q.data)
                .map_err(|e| format!("part {} is not base64: {e}", q.part))?,
            other => return Err(format!("unknown quarantine encoding {other:?}")),
        });
    }
    let joined: Vec<u8> = parts.into_iter().flatten().flatten().collect();
    if joined != body {
        let at = joined
            .iter()
            .zip(body)
            .position(|(a, b)| a != b)
            .unwrap_or(joined.len().min(body.len()));
        return Err(format!(
            "quarantine parts reassemble to {} bytes, body is {} (first difference at {at})",
            joined.len(),
            body.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: &[u8], header: Option<String>, signed: Signed) -> Input {
        Input {
            header,
            signed,
            header_kind: "test",
            ..Input::signed("test", body.to_vec())
        }
    }

    use crate::gen::hmac;

    fn sig(key: &str, body: &[u8]) -> Option<String> {
        Some(format!(
            "sha256={}",
            hex::encode(hmac(key.as_bytes(), body))
        ))
    }

    #[test]
    fn a_signed_fixture_is_accounted_for() {
        let body = br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"message":{"mid":"m","text":"\/"}},{"read":{}}],"changes":[{"field":"f","value":{}}]}]}"#;
        let mut h = Harness::new();
        let r = h.exec(&input(body, sig(SECRET_A, body), Signed::Canonical));
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.receipt, Some(Receipt::Accepted));
        assert_eq!(r.message_sizes.len(), 3);
    }

    #[test]
    fn signed_garbage_is_quarantined_and_reassembled() {
        let mut h = Harness::new();
        let big: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        for body in [&b""[..], b"\xff\xfe", b"not json", &big] {
            let r = h.exec(&input(body, sig(SECRET_A, body), Signed::Canonical));
            assert!(r.findings.is_empty(), "{:?}", r.findings);
        }
        assert_eq!(h.tally.accepted_quarantined, 4);
    }

    #[test]
    fn forgeries_are_refused() {
        let body = br#"{"object":"page","entry":[]}"#;
        let mut h = Harness::new();
        for header in [None, sig("other", body), Some("sha256=zz".into())] {
            let r = h.exec(&input(body, header, Signed::No));
            assert!(r.findings.is_empty(), "{:?}", r.findings);
            assert_eq!(r.receipt, Some(Receipt::Unauthorized));
        }
    }

    #[test]
    fn the_checks_can_fail() {
        // An authentic-looking verdict on an unsigned input, a lost item, a broken reassembly.
        let body = br#"{"object":"page","entry":[{"id":"1","messaging":[{},{}]}]}"#;
        let one = r#"{"v":1,"key":"k","object":"page","account_id":"1","channel":"messaging","kind":"unknown","timestamp_ms":1,"received_at_ms":1,"item":{}}"#;
        assert!(account(body, &[one.to_string()]).is_err());
        assert!(account(body, &[one.to_string(), one.to_string()]).is_ok());
        assert!(account(b"xyz", &[one.to_string(), one.to_string()]).is_err());
        let mut i = input(body, sig("other", body), Signed::No);
        assert!(!authentic(&i));
        i.header = sig(SECRET_A, body).map(|s| s.to_uppercase());
        assert!(authentic(&i));
        let refused = entry_problem(&OutMessage {
            id: "0".into(),
            body: "x".repeat(SQS_MAX_MESSAGE_BYTES),
            attributes: vec![("kind".into(), "quarantined".into())],
            delay_secs: 0,
        });
        assert!(refused.is_some());
        let nul = entry_problem(&OutMessage {
            id: "0".into(),
            body: "{}".into(),
            attributes: vec![("object".into(), "\0".into())],
            delay_secs: 0,
        });
        assert!(nul.is_some());
    }

    #[test]
    fn a_panic_is_caught_and_recorded() {
        install_panic_hook();
        let r = guarded(|| -> u8 { panic!("boom {}", 1) });
        assert!(r.unwrap_err().contains("boom 1"));
        assert_eq!(guarded(|| 5).unwrap(), 5);
    }
}
