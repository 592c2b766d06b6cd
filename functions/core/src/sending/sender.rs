//! The first message: load -> policy -> claim -> send -> record -> delete the deadline check.
//!
//! The claim is a conditional write with a lease, so concurrent duplicate jobs send once and
//! a crashed attempt can be taken over after its lease. One window remains, and it is stated
//! plainly: if the process dies after Meta accepted the message but before `sent` is recorded
//! (or Meta's answer is lost to a timeout), the next attempt sends again. The Send API has no
//! idempotency key, so "at most one resend, only after a crash or a lost answer" is the bound.

use std::sync::Arc;

use crate::bus::{self, BusEvent, DetailType, PersonIds};
use crate::consumer::Fate;
use crate::funnel::FunnelStage;
use crate::lifecycle::optin::{FirstMessageJob, Optin, OptinState, SentRecord};
use crate::ports::graph::{
    MessagingType, OutgoingMessage, PageAuth, Recipient, SendApi, SendError, SendRequest,
};
use crate::ports::store::{Claim, Finish, PageConfig};
use crate::ports::{
    Clock, EventBus, GraphApi, Metric, Metrics, OutMessage, PortError, QueueSender, Scheduler,
    SecretSource, Table,
};
use crate::sending::delivery::{self, page_auth, read_failure, AuthError, PagePacer};
use crate::sending::errors::{ErrorClass, RequestContext};
use crate::sending::first_message;
use crate::sending::pacing::{Pacer, PacingConfig};
use crate::sending::policy::{self, Attempt, Decision, PolicyConfig, Rule};
use crate::support::privacy::hash_id;
use crate::webhook::IdentityKind;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// How long a claim is ours: longer than any one attempt can run (the function's timeout),
    /// so no other attempt takes over a send that may still be in flight. See
    /// [`SenderConfig::with_timeouts`].
    pub lease_ms: i64,
    /// Recording `sent` after Meta accepted is retried this many times within the lease before
    /// the outcome travels as a record-only job instead.
    pub record_attempts: u32,
    /// First wait between record attempts; doubles each time.
    pub record_backoff_ms: i64,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    /// The last retry must be due at least this long before the deadline.
    pub deadline_guard_ms: i64,
    /// A paused Page's jobs come back after this long (the job is kept for replay).
    pub paused_recheck_ms: i64,
    /// Pace a Page when Meta's usage headers pass this percentage.
    pub pace_threshold_percent: u32,
    /// This process's share of each Page's send rate.
    pub pacing: PacingConfig,
    pub policy: PolicyConfig,
    /// Used when the Page has no `first_message` of its own.
    pub default_message: OutgoingMessage,
    /// Send `appsecret_proof` (needs the app secret).
    pub appsecret_proof: bool,
    /// A Page's config item is read at most once per this long per process (0: every job).
    /// An operator's pause or a new `first_message` takes up to this long to be seen; a
    /// pause this process makes itself is seen at once.
    pub page_cache_ms: i64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            lease_ms: 35_000,
            record_attempts: 4,
            record_backoff_ms: 100,
            backoff_base_ms: 2_000,
            backoff_cap_ms: 15 * 60 * 1000,
            deadline_guard_ms: 60_000,
            paused_recheck_ms: 15 * 60 * 1000,
            pace_threshold_percent: 80,
            pacing: PacingConfig::default(),
            policy: PolicyConfig::default(),
            default_message: OutgoingMessage {
                text: Some(
                    "Thanks for connecting with us on Messenger! Reply here any time.".into(),
                ),
                ..OutgoingMessage::default()
            },
            appsecret_proof: false,
            page_cache_ms: 60_000,
        }
    }
}

/// Slack between the function's timeout and the lease (clock skew between instances).
const LEASE_MARGIN_MS: i64 = 5_000;
/// Time one store call may take, for the attempt budget.
const STORE_CALL_MS: i64 = 1_000;

impl SenderConfig {
    /// Derives the lease from the Graph timeout and the function timeout, and refuses
    /// settings where one attempt (claim, send, record with its retries) cannot finish inside
    /// the function's timeout: a killed attempt would leave a send unrecorded.
    pub fn with_timeouts(
        mut self,
        graph_timeout_ms: i64,
        function_timeout_ms: i64,
    ) -> Result<SenderConfig, String> {
        let record_budget: i64 = (0..self.record_attempts)
            .map(|i| STORE_CALL_MS + (self.record_backoff_ms << i.min(20)))
            .sum();
        let attempt_ms = 2 * STORE_CALL_MS + graph_timeout_ms + record_budget;
        if attempt_ms >= function_timeout_ms {
            return Err(format!(
                "one attempt needs up to {attempt_ms} ms (Graph timeout {graph_timeout_ms} ms + \
                 claim + record retries), more than the function timeout \
                 {function_timeout_ms} ms: raise the timeout or lower the Graph timeout"
            ));
        }
        self.lease_ms = function_timeout_ms + LEASE_MARGIN_MS;
        Ok(self)
    }
}

/// How a job ended, and what the queue should do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Delivered to Meta. `optin_to_sent_ms`: opt-in time to now.
    Sent {
        message_id: String,
        optin_to_sent_ms: i64,
        schedule_deleted: bool,
    },
    /// Nothing to do (already sent, answered, closed, unknown): delete the job.
    AlreadyDone { state: Option<OptinState> },
    /// A record-only job wrote the `sent` an earlier attempt could not.
    Recorded,
    /// The Page does not answer opt-ins from this deployment: closed, nothing sent.
    Declined,
    /// The policy refused and the opt-in is closed accordingly: delete the job.
    Refused { rule: &'static str, reason: String },
    /// Try again after `delay_ms` (keep the job; change its visibility).
    RetryLater { delay_ms: i64, reason: String },
    /// Held back by pacing: not a failure, however long it lasts (the job is deferred, which
    /// spends no receives).
    Waiting { delay_ms: i64, reason: String },
    /// The person cannot or will not receive messages: they are stopped; delete the job.
    Unreachable { rule: &'static str },
    /// The Page is paused (by us or by an operator): keep the job for replay.
    PagePaused { reason: String, delay_ms: i64 },
    /// Meta refused the request as malformed: the opt-in failed; the job goes to the DLQ.
    BadRequest { reason: String },
    /// The deadline passed before the message could go: recorded as missed.
    Expired { reason: String },
    /// An operator redrove the job of a failed generation, and a retry is no longer
    /// meaningful (its deadline passed): refused, the opt-in stays `failed`.
    RedriveRefused { reason: String },
}

impl JobOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            JobOutcome::Sent { .. } => "sent",
            JobOutcome::AlreadyDone { .. } => "already_done",
            JobOutcome::Recorded => "recorded",
            JobOutcome::Declined => "declined",
            JobOutcome::Refused { .. } => "refused",
            JobOutcome::RetryLater { .. } => "retry_later",
            JobOutcome::Waiting { .. } => "waiting",
            JobOutcome::Unreachable { .. } => "unreachable",
            JobOutcome::PagePaused { .. } => "page_paused",
            JobOutcome::BadRequest { .. } => "bad_request",
            JobOutcome::Expired { .. } => "expired",
            JobOutcome::RedriveRefused { .. } => "redrive_refused",
        }
    }
}

impl JobOutcome {
    /// What the queue does with the job message after this outcome.
    pub fn fate(&self) -> Fate {
        match self {
            JobOutcome::RetryLater { delay_ms, reason } => {
                Fate::retry_after_ms(*delay_ms, reason.clone())
            }
            // Waits, not failures: a Page paused for a day (a token rotation, an operator) or
            // a long pacing backlog must not walk its jobs to the DLQ one receive at a time.
            JobOutcome::Waiting { delay_ms, reason }
            | JobOutcome::PagePaused {
                delay_ms, reason, ..
            } => Fate::defer_after_ms(*delay_ms, reason.clone()),
            JobOutcome::BadRequest { reason } => Fate::DeadLetter {
                reason: reason.clone(),
            },
            _ => Fate::Ack,
        }
    }

    /// What this outcome counts for (the Graph errors and pauses are counted where they
    /// happen; these are the ones only the outcome knows).
    fn metric(&self) -> Option<Metric> {
        match self {
            JobOutcome::Sent {
                optin_to_sent_ms, ..
            } => Some(Metric::FirstMessageSent {
                optin_to_sent_ms: *optin_to_sent_ms,
            }),
            JobOutcome::Expired { .. } => Some(Metric::FirstMessageMissed),
            JobOutcome::AlreadyDone {
                state: Some(OptinState::Sent),
            } => Some(Metric::DuplicateSuppressed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A backend failed: retry the whole job later (the SQS message stays).
    #[error("backend: {0}")]
    Backend(#[from] PortError),
}

/// What the gate lets through: the message to send.
#[derive(Clone)]
struct Gate {
    message: OutgoingMessage,
}

/// Why the gate holds a message back. Screening has no side effects; [`Sender::gate`] turns
/// each reason into its outcome (and the writes that go with it).
enum Held {
    Declined,
    Paused(String),
    Paced { delay_ms: i64, reason: &'static str },
    BadConfig(String),
    Refused { rule: Rule, reason: String },
}

/// A new opt-in's first message that passed the gate before the opt-in was written
/// ([`Sender::admit_new`]): its creator writes it already claimed and sends it with
/// [`Sender::run_admitted`], one write fewer than create-then-claim.
#[derive(Clone)]
pub struct Admitted {
    gate: Gate,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admitted")
    }
}

/// Where an attempt starts.
enum Start {
    /// Read the opt-in (a queued job).
    Load,
    /// From what the caller has just written; the claim is still conditional on the store.
    Written(Optin),
    /// Written already claimed by the caller, after the gate let it through.
    Claimed(Optin, Gate),
}

/// Why an attempt stopped before its last phase: with an outcome for the job, or an error.
enum Stop {
    Done(JobOutcome),
    Failed(JobError),
}

impl From<PortError> for Stop {
    fn from(e: PortError) -> Self {
        Stop::Failed(JobError::Backend(e))
    }
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Failed(e)
    }
}

/// The ports a sender works through.
#[derive(Clone)]
pub struct SenderPorts {
    pub table: Table,
    /// The business's event bus (first-message outcomes).
    pub bus: Arc<dyn EventBus>,
    /// The outbound queue: a record-only job goes here when `sent` cannot be written at once.
    pub outbound: Arc<dyn QueueSender>,
    pub graph: Arc<dyn GraphApi>,
    pub scheduler: Arc<dyn Scheduler>,
    pub secrets: Arc<dyn SecretSource>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

pub struct Sender {
    table: Table,
    bus: Arc<dyn EventBus>,
    outbound: Arc<dyn QueueSender>,
    graph: Arc<dyn GraphApi>,
    scheduler: Arc<dyn Scheduler>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    config: SenderConfig,
    /// Pacing learned from Meta's usage headers. Per process on purpose: cheap, and every
    /// instance learns it from its own answers.
    pace: PagePacer,
    /// This process's share of every Page's rate (see [`crate::sending::pacing`]).
    pacer: Pacer,
    /// Page id -> (read at, config): [`SenderConfig::page_cache_ms`].
    pages: std::sync::Mutex<std::collections::HashMap<String, (i64, Option<PageConfig>)>>,
}

impl Sender {
    pub fn new(ports: SenderPorts, config: SenderConfig) -> Self {
        Sender {
            table: ports.table,
            bus: ports.bus,
            outbound: ports.outbound,
            graph: ports.graph,
            scheduler: ports.scheduler,
            secrets: ports.secrets,
            clock: ports.clock,
            metrics: ports.metrics,
            pacer: Pacer::new(config.pacing.clone()),
            config,
            pace: PagePacer::default(),
            pages: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The Page's config, from this process's short cache when fresh.
    async fn page(&self, page_id: &str, now: i64) -> Result<Option<PageConfig>, PortError> {
        let ttl = self.config.page_cache_ms;
        if ttl > 0 {
            let pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, page)) = pages.get(page_id) {
                if (*at..at.saturating_add(ttl)).contains(&now) {
                    return Ok(page.clone());
                }
            }
        }
        let page = self.table.pages.get_page(page_id).await?;
        if ttl > 0 {
            let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
            pages.insert(page_id.to_string(), (now, page.clone()));
        }
        Ok(page)
    }

    fn forget_page(&self, page_id: &str) {
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(page_id);
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn scheduler(&self) -> &dyn Scheduler {
        self.scheduler.as_ref()
    }

    pub fn metrics(&self) -> &dyn Metrics {
        self.metrics.as_ref()
    }

    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The sender consumer's per-message function: one job message body in, its fate out.
    /// Lambda's batch wrapper and the local runner's poller both call it.
    pub async fn handle_message(&self, body: &str) -> Fate {
        let job = match serde_json::from_str::<FirstMessageJob>(body) {
            Ok(job) => job,
            Err(e) => {
                return Fate::DeadLetter {
                    reason: format!("not a first-message job: {e}"),
                }
            }
        };
        match self.run_job(&job).await {
            Ok(outcome) => {
                // The common path already wrote its one INFO line (the funnel's
                // `first_message_sent`); every other outcome is worth a line of its own.
                if matches!(outcome, JobOutcome::Sent { .. }) {
                    tracing::debug!(outcome = outcome.name(), detail = ?outcome, "job settled");
                } else {
                    tracing::info!(outcome = outcome.name(), detail = ?outcome, "job settled");
                }
                outcome.fate()
            }
            Err(e) => Fate::retry(e.to_string()),
        }
    }

    /// Runs one first-message job: load, gate (pause, pacing, config, policy), claim,
    /// credentials, deliver. Each phase either hands the next one what it needs or stops the
    /// attempt with the job's outcome.
    pub async fn run_job(&self, job: &FirstMessageJob) -> Result<JobOutcome, JobError> {
        self.run(job, Start::Load).await
    }

    /// [`Sender::run_job`] for an opt-in the caller has just written (the events function's
    /// inline send): `written` stands in for the read of the opt-in. It is only a starting
    /// point: the claim is conditional on the stored item, so a change since (a reply, a
    /// duplicate's claim) still wins.
    pub async fn run_job_written(
        &self,
        job: &FirstMessageJob,
        written: Optin,
    ) -> Result<JobOutcome, JobError> {
        self.run(job, Start::Written(written)).await
    }

    /// Whether a new opt-in's first message may go now: the gate's checks without their side
    /// effects (a held message is written `pending` and its job meets the gate again). When it
    /// may, the pacer has counted the send, and the caller writes the opt-in already claimed
    /// ([`Optin::claim`]) and sends it with [`Sender::run_admitted`].
    pub async fn admit_new(&self, optin: &Optin, now: i64) -> Option<Admitted> {
        match self.screen(optin, now).await {
            Ok(Ok(gate)) => Some(Admitted { gate }),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// [`Sender::run_job`] for an opt-in its creator wrote already claimed (`claimed`, with
    /// the attempt number and lease it was written with) after [`Sender::admit_new`].
    pub async fn run_admitted(
        &self,
        job: &FirstMessageJob,
        claimed: Optin,
        admitted: Admitted,
    ) -> Result<JobOutcome, JobError> {
        self.run(job, Start::Claimed(claimed, admitted.gate)).await
    }

    async fn run(&self, job: &FirstMessageJob, start: Start) -> Result<JobOutcome, JobError> {
        // An inline send (written, or written claimed) is of an opt-in the events function has
        // just created: its `optin` step goes in the outcome's funnel line (one line, not two).
        let earlier: &[FunnelStage] = match start {
            Start::Load => &[],
            Start::Written(_) | Start::Claimed(..) => &[FunnelStage::Optin],
        };
        let outcome = match self.attempt(job, start).await {
            Ok(outcome) | Err(Stop::Done(outcome)) => outcome,
            Err(Stop::Failed(e)) => return Err(e),
        };
        // The outcome is durable: tell the business. A refused publish keeps the job; its
        // redelivery finds the opt-in closed and publishes the same events (same ids) again.
        let events = outcome_events(job, &outcome, self.clock.now_ms());
        bus::publish_all(self.bus.as_ref(), &events).await?;
        if let Some(m) = outcome.metric() {
            self.metrics.record(m);
        }
        crate::funnel::after_job(self.metrics.as_ref(), job, &outcome, earlier);
        Ok(outcome)
    }

    /// The bus, for the deadline check's own events.
    pub fn bus(&self) -> &dyn EventBus {
        self.bus.as_ref()
    }

    async fn attempt(&self, job: &FirstMessageJob, start: Start) -> Result<JobOutcome, Stop> {
        let now = self.clock.now_ms();
        if let Some(sent) = &job.sent {
            return Ok(self.record_only(job, sent, now).await?);
        }
        let optin = match start {
            Start::Claimed(claimed, gate) if claimed.key() == job.optin_key => {
                let auth = self.credentials(&claimed, now).await?;
                return self.deliver(&claimed, auth, gate.message).await;
            }
            Start::Written(o) if o.key() == job.optin_key => {
                self.check(o, job.generation, now).await?
            }
            _ => match self.load(&job.optin_key, job.generation, now).await {
                Err(Stop::Done(JobOutcome::AlreadyDone {
                    state: Some(OptinState::Failed),
                })) if job.redriven_at_ms.is_some() => self.retry_failed(job, now).await?,
                other => other?,
            },
        };
        let gate = self.gate(&optin, now).await?;
        let claimed = self.claim(&optin, now).await?;
        let auth = self.credentials(&claimed, now).await?;
        self.deliver(&claimed, auth, gate.message).await
    }

    /// The opt-in, if a send is still owed and possible now.
    async fn load(&self, key: &str, generation: Option<u32>, now: i64) -> Result<Optin, Stop> {
        let Some(optin) = self.table.optins.get_optin(key).await? else {
            tracing::warn!(optin = %hash_id(key), "job for an unknown opt-in");
            return Err(Stop::Done(JobOutcome::AlreadyDone { state: None }));
        };
        self.check(optin, generation, now).await
    }

    /// Whether a send is still owed and possible now for this opt-in as read (or written).
    async fn check(&self, optin: Optin, generation: Option<u32>, now: i64) -> Result<Optin, Stop> {
        if generation.is_some_and(|g| g != optin.generation) {
            // A job of an earlier generation: that one is closed (a new generation opens only
            // on a closed one); the current generation has its own job.
            return Err(Stop::Done(JobOutcome::AlreadyDone {
                state: optin.history.last().map(|h| h.state),
            }));
        }
        if optin.state.is_closed() {
            return Err(Stop::Done(JobOutcome::AlreadyDone {
                state: Some(optin.state),
            }));
        }
        if now >= optin.deadline_at_ms {
            let outcome = self
                .expire(&optin, now, "deadline passed before the first message")
                .await?;
            return Err(Stop::Done(outcome));
        }
        if optin.state == OptinState::Sending && optin.lease_until_ms > now {
            // Another attempt holds it: look again when its lease ends.
            return Err(Stop::Done(JobOutcome::RetryLater {
                delay_ms: (optin.lease_until_ms - now).max(1_000),
                reason: "another attempt holds the claim".into(),
            }));
        }
        Ok(optin)
    }

    /// A redriven job whose generation failed: re-open it for one more try (the store's
    /// `retry_failed`: still that generation, still `failed`, before the deadline), or refuse
    /// with the reason. The Graph request is built again from today's config, so a fixed
    /// `first_message` is what goes out.
    async fn retry_failed(&self, job: &FirstMessageJob, now: i64) -> Result<Optin, Stop> {
        let Some(optin) = self.table.optins.get_optin(&job.optin_key).await? else {
            return Err(Stop::Done(JobOutcome::AlreadyDone { state: None }));
        };
        let hash = hash_id(&job.optin_key);
        if job.generation.is_some_and(|g| g != optin.generation)
            || optin.state != OptinState::Failed
        {
            // A later generation, or the record moved on since `load`: decide as usual.
            return self.load(&job.optin_key, job.generation, now).await;
        }
        if now >= optin.deadline_at_ms {
            let reason = format!(
                "redriven {} s after the deadline: a first message can no longer be sent; \
                 the opt-in stays failed ({})",
                (now - optin.deadline_at_ms) / 1000,
                optin.last_error.as_deref().unwrap_or("no error recorded")
            );
            tracing::warn!(optin = %hash, reason = %reason, "redrive refused");
            return Err(Stop::Done(JobOutcome::RedriveRefused { reason }));
        }
        let note = format!(
            "retried after an operator redrive; it had failed: {}",
            optin.last_error.as_deref().unwrap_or("no error recorded")
        );
        if !self.table.optins.retry_failed(&optin, now, &note).await? {
            return self.load(&job.optin_key, job.generation, now).await;
        }
        tracing::info!(optin = %hash, generation = optin.generation, "failed opt-in re-opened by a redrive");
        self.load(&job.optin_key, job.generation, now).await
    }

    /// Everything that may hold the message back before a claim: the Page's pause, pacing,
    /// its first-message config and the policy.
    async fn gate(&self, optin: &Optin, now: i64) -> Result<Gate, Stop> {
        match self.screen(optin, now).await? {
            Ok(gate) => Ok(gate),
            Err(Held::Declined) => Err(Stop::Done(self.declined(optin, now).await?)),
            Err(Held::Paused(reason)) => Err(Stop::Done(self.paused(reason))),
            Err(Held::Paced { delay_ms, reason }) => Err(Stop::Done(JobOutcome::Waiting {
                delay_ms,
                reason: reason.into(),
            })),
            Err(Held::BadConfig(reason)) => {
                let reason = format!("invalid first_message config: {reason}");
                Err(Stop::Done(self.pause(&optin.page_id, reason, now).await?))
            }
            Err(Held::Refused { rule, reason }) => {
                Err(Stop::Done(self.refused(optin, now, rule, reason).await?))
            }
        }
    }

    /// The gate's checks, reading but writing nothing. The pacer is asked last, so a message
    /// held for any other reason takes no share of the Page's rate.
    async fn screen(&self, optin: &Optin, now: i64) -> Result<Result<Gate, Held>, PortError> {
        let page = self.page(&optin.page_id, now).await?;
        if page.as_ref().is_some_and(|p| !p.answers_optins) {
            return Ok(Err(Held::Declined));
        }
        if let Some(p) = page.as_ref().filter(|p| p.paused) {
            return Ok(Err(Held::Paused(
                p.paused_reason.clone().unwrap_or_default(),
            )));
        }
        if let Some(delay) = self.pace.paced(&optin.page_id, now) {
            return Ok(Err(Held::Paced {
                delay_ms: delay,
                reason: "pacing the page (Meta usage above threshold)",
            }));
        }
        let message = match self.message_for(page.as_ref()) {
            Ok(m) => m,
            Err(reason) => return Ok(Err(Held::BadConfig(reason))),
        };
        let person = match optin.recipient.kind {
            IdentityKind::Psid | IdentityKind::Igsid => {
                self.table
                    .people
                    .get_person(&optin.page_id, &optin.recipient.id)
                    .await?
            }
            _ => None,
        };
        let decision = policy::decide(
            &Attempt {
                now_ms: now,
                page_id: &optin.page_id,
                recipient: &recipient_of(optin),
                messaging_type: MessagingType::Update,
                tag: None,
                page: page.as_ref(),
                optin: Some(optin),
                person: person.as_ref(),
                token: None,
                first_message: true,
            },
            &self.config.policy,
        );
        if let Decision::Refuse { rule, reason } = decision {
            return Ok(Err(Held::Refused { rule, reason }));
        }
        let priority = self.config.pacing.priority(optin.deadline_at_ms, now);
        if let Err(wait_ms) = self.pacer.admit(&optin.page_id, priority, now) {
            return Ok(Err(Held::Paced {
                delay_ms: wait_ms,
                reason: "pacing the page (this instance's share of Meta's per-Page rate)",
            }));
        }
        Ok(Ok(Gate { message }))
    }

    /// Takes the send with a conditional write and a lease: concurrent duplicates send once.
    async fn claim(&self, optin: &Optin, now: i64) -> Result<Optin, Stop> {
        let key = optin.key();
        match self
            .table
            .optins
            .claim(&key, optin.generation, now, now + self.config.lease_ms)
            .await?
        {
            Claim::Claimed(o) => Ok(*o),
            Claim::NotClaimable(o) => Err(Stop::Done(if o.state.is_closed() {
                JobOutcome::AlreadyDone {
                    state: Some(o.state),
                }
            } else {
                JobOutcome::RetryLater {
                    delay_ms: (o.lease_until_ms - now).max(1_000),
                    reason: "another attempt holds the claim".into(),
                }
            })),
            Claim::Missing => Err(Stop::Done(JobOutcome::AlreadyDone { state: None })),
        }
    }

    /// The Page's token (and app secret for the proof), releasing the claim when missing.
    async fn credentials(&self, claimed: &Optin, now: i64) -> Result<PageAuth, Stop> {
        let key = claimed.key();
        let attempt = claimed.attempts;
        let auth = page_auth(
            self.secrets.as_ref(),
            &claimed.page_id,
            claimed.app_id.as_deref(),
            self.config.appsecret_proof,
        );
        match auth.await {
            Ok(a) => Ok(a),
            Err(AuthError::Unavailable(reason)) => {
                // A Secrets Manager blip: retry soon, do not pause the Page for it.
                self.release(&key, attempt, &reason).await?;
                Err(Stop::Done(JobOutcome::RetryLater {
                    delay_ms: backoff_ms(
                        attempt,
                        self.config.backoff_base_ms,
                        self.config.backoff_cap_ms,
                        &key,
                    ),
                    reason,
                }))
            }
            Err(AuthError::Missing(reason)) => {
                // Configuration: only an operator can fix it.
                self.release(&key, attempt, &reason).await?;
                Err(Stop::Done(self.pause(&claimed.page_id, reason, now).await?))
            }
        }
    }

    /// Calls the Send API once and records what Meta answered.
    async fn deliver(
        &self,
        claimed: &Optin,
        auth: PageAuth,
        message: OutgoingMessage,
    ) -> Result<JobOutcome, Stop> {
        let key = claimed.key();
        let attempt = claimed.attempts;
        // First messages are Messenger only (login_id, user_ref, PSID): always the Page path.
        let request = SendRequest {
            api: SendApi::Facebook,
            page_id: claimed.page_id.clone(),
            recipient: recipient_of(claimed),
            messaging_type: MessagingType::Update,
            tag: None,
            message,
        };
        let result = self.graph.send(&auth, &request).await;
        let after = self.clock.now_ms();
        let ok = match result {
            Ok(ok) => ok,
            Err(err) => return Ok(self.failed(claimed, attempt, err, after).await?),
        };
        self.pace.learn(
            &claimed.page_id,
            ok.usage.pace(self.config.pace_threshold_percent),
            after,
        );
        // Meta said yes: from here nothing may lead to a second send of this generation.
        let recorded = self
            .record_sent(claimed, Some(ok.message_id.clone()), after)
            .await?;
        if !recorded {
            // Our lease lapsed mid-send and someone else took over: the message went out,
            // so say so loudly; the other attempt will find it sent or resend.
            tracing::error!(optin = %hash_id(&key), attempt, "sent after losing the claim");
        }
        let schedule_deleted = self.delete_schedule(claimed).await;
        tracing::debug!(
            optin = %hash_id(&key),
            page = %claimed.page_id,
            attempt,
            optin_to_sent_ms = after - claimed.opted_in_at_ms,
            "first message sent"
        );
        Ok(JobOutcome::Sent {
            message_id: ok.message_id,
            optin_to_sent_ms: after - claimed.opted_in_at_ms,
            schedule_deleted,
        })
    }

    /// Writes `sent` for the claimed attempt, retrying within the lease. When the table stays
    /// unavailable, the outcome is put on the outbound queue as a record-only job (another
    /// backend) before this job is let go, so a redelivered job never calls Graph again.
    /// `Ok(false)`: the claim was lost meanwhile (logged by the caller).
    async fn record_sent(
        &self,
        claimed: &Optin,
        message_id: Option<String>,
        sent_at_ms: i64,
    ) -> Result<bool, JobError> {
        let key = claimed.key();
        let finish = Finish::Sent {
            message_id: message_id.clone(),
            sent_at_ms,
        };
        let written = delivery::retry_record(
            self.config.record_attempts,
            self.config.record_backoff_ms,
            "sent",
            || {
                self.table
                    .optins
                    .finish(&key, claimed.attempts, &finish, self.clock.now_ms())
            },
        )
        .await;
        let last_error = match written {
            Ok(applied) => return Ok(applied),
            Err(e) => e,
        };
        let job = FirstMessageJob {
            sent: Some(SentRecord {
                attempt: claimed.attempts,
                message_id,
                sent_at_ms,
            }),
            ..FirstMessageJob::for_generation(claimed, self.clock.now_ms())
        };
        let body = serde_json::to_string(&job)
            .map_err(|e| JobError::Backend(PortError::Rejected(e.to_string())))?;
        let queued = self
            .outbound
            .send_batch(&[OutMessage {
                id: "record".into(),
                body,
                attributes: vec![("page_id".into(), claimed.page_id.clone().into())],
                delay_secs: 0,
            }])
            .await;
        match queued {
            Ok(failed) if failed.is_empty() => {
                tracing::warn!(optin = %hash_id(&key), "sent recorded later by a record-only job");
                Ok(true)
            }
            _ => {
                // Both the table and the queue are down for the whole retry budget: the one
                // way left to a second send. Said loudly; the job stays for a retry.
                tracing::error!(optin = %hash_id(&key), "message sent but its record could not be kept anywhere");
                Err(JobError::Backend(last_error))
            }
        }
    }

    /// A record-only job: write the `sent` an earlier attempt could not, never call Graph.
    async fn record_only(
        &self,
        job: &FirstMessageJob,
        sent: &SentRecord,
        now: i64,
    ) -> Result<JobOutcome, JobError> {
        let applied = self
            .table
            .optins
            .finish(
                &job.optin_key,
                sent.attempt,
                &Finish::Sent {
                    message_id: sent.message_id.clone(),
                    sent_at_ms: sent.sent_at_ms,
                },
                now,
            )
            .await?;
        if !applied {
            let state = self
                .table
                .optins
                .get_optin(&job.optin_key)
                .await?
                .map(|o| o.state);
            if state != Some(OptinState::Sent) {
                tracing::error!(optin = %hash_id(&job.optin_key), ?state, "record-only job found the attempt superseded");
            }
            return Ok(JobOutcome::AlreadyDone { state });
        }
        if let Some(optin) = self.table.optins.get_optin(&job.optin_key).await? {
            self.delete_schedule(&optin).await;
        }
        Ok(JobOutcome::Recorded)
    }

    /// Closes the opt-in without a message: the Page answers its opt-ins through another app.
    async fn declined(&self, optin: &Optin, now: i64) -> Result<JobOutcome, JobError> {
        let reason = format!(
            "page {} is set not to answer opt-ins from this deployment (answers_optins = false)",
            optin.page_id
        );
        if let Claim::Claimed(o) = self
            .table
            .optins
            .claim(
                &optin.key(),
                optin.generation,
                now,
                now + self.config.lease_ms,
            )
            .await?
        {
            self.table
                .optins
                .finish(&o.key(), o.attempts, &Finish::Declined { reason }, now)
                .await?;
            self.delete_schedule(&o).await;
        }
        Ok(JobOutcome::Declined)
    }

    /// Pauses the Page (an operator must act) and keeps the job for later.
    async fn pause(&self, page_id: &str, reason: String, now: i64) -> Result<JobOutcome, JobError> {
        self.forget_page(page_id);
        delivery::pause_page(
            &self.table,
            self.bus.as_ref(),
            self.metrics.as_ref(),
            page_id,
            &reason,
            "sender",
            now,
        )
        .await?;
        Ok(self.paused(reason))
    }

    fn message_for(&self, page: Option<&PageConfig>) -> Result<OutgoingMessage, String> {
        match page.and_then(|p| p.first_message.as_deref()) {
            Some(json) => first_message::parse(json),
            None => Ok(self.config.default_message.clone()),
        }
    }

    fn paused(&self, reason: String) -> JobOutcome {
        JobOutcome::PagePaused {
            reason,
            delay_ms: self.config.paused_recheck_ms,
        }
    }

    async fn release(&self, key: &str, attempt: u32, error: &str) -> Result<bool, JobError> {
        Ok(self
            .table
            .optins
            .finish(
                key,
                attempt,
                &Finish::Release {
                    error: error.to_string(),
                },
                self.clock.now_ms(),
            )
            .await?)
    }

    /// Deletes the deadline check after a send. A failure is harmless (the check will find the
    /// opt-in sent and do nothing) and counted.
    async fn delete_schedule(&self, optin: &Optin) -> bool {
        match self.scheduler.delete_schedule(&optin.schedule_name).await {
            Ok(existed) => existed,
            Err(e) => {
                self.metrics.record(Metric::ScheduleDeleteFailure);
                tracing::warn!(error = %e, "deadline check not deleted; it will find the opt-in sent");
                false
            }
        }
    }

    async fn expire(&self, optin: &Optin, now: i64, reason: &str) -> Result<JobOutcome, JobError> {
        match self.table.optins.expire(&optin.key(), now, reason).await? {
            Some(_) => {
                tracing::error!(optin = %hash_id(&optin.key()), reason, "first message missed");
                Ok(JobOutcome::Expired {
                    reason: reason.to_string(),
                })
            }
            None => Ok(JobOutcome::AlreadyDone {
                state: Some(optin.state),
            }),
        }
    }

    /// A policy refusal: close the opt-in to match, so nothing retries a message that can
    /// never be allowed.
    async fn refused(
        &self,
        optin: &Optin,
        now: i64,
        rule: Rule,
        reason: String,
    ) -> Result<JobOutcome, JobError> {
        let name = rule.as_str();
        tracing::warn!(optin = %hash_id(&optin.key()), rule = name, reason = %reason, "policy refused the first message");
        let finish = match rule {
            Rule::FirstMessageWindow => return self.expire(optin, now, &reason).await,
            Rule::PagePaused => return Ok(self.paused(reason)),
            Rule::OptedOut => Finish::OptedOut {
                error: reason.clone(),
            },
            _ => Finish::Failed {
                error: format!("{name}: {reason}"),
            },
        };
        if let Claim::Claimed(o) = self
            .table
            .optins
            .claim(
                &optin.key(),
                optin.generation,
                now,
                now + self.config.lease_ms,
            )
            .await?
        {
            self.table
                .optins
                .finish(&o.key(), o.attempts, &finish, now)
                .await?;
            self.delete_schedule(&o).await;
        }
        Ok(JobOutcome::Refused { rule: name, reason })
    }

    async fn failed(
        &self,
        optin: &Optin,
        attempt: u32,
        err: SendError,
        now: i64,
    ) -> Result<JobOutcome, JobError> {
        let key = optin.key();
        let f = read_failure(
            &err,
            &RequestContext::default(),
            self.config.pace_threshold_percent,
            self.metrics.as_ref(),
        );
        self.pace.learn(&optin.page_id, f.pace, now);
        let (class, rule, max_attempts, wait_hint_ms, detail) =
            (f.class, f.rule, f.max_attempts, f.wait_hint_ms, f.detail);
        tracing::warn!(
            class = class.as_str(),
            rule,
            attempt,
            optin = %hash_id(&key),
            "send failed"
        );
        match class {
            ErrorClass::Retry => {
                if max_attempts.is_some_and(|bound| attempt >= bound) {
                    // Bounded codes (2) may also mean "blocked", but only 551 and
                    // 200/1545041 say so for sure: the opt-in fails, the person is not marked.
                    let reason = format!("{rule}: gave up after {attempt} attempts: {detail}");
                    return self.close_failed(optin, attempt, reason, rule).await;
                }
                // Otherwise the deadline is the bound: retries stop when none can land in time.
                self.release(&key, attempt, &detail).await?;
                self.expire_or_retry(optin, now, &detail, attempt, wait_hint_ms)
                    .await
            }
            ErrorClass::RecipientUnreachable => {
                self.unreachable(optin, attempt, rule, &detail, now).await
            }
            // Each closes this generation as failed with its reason and leaves the person
            // alone; retrying cannot help (a PSID's window reopens only when they write; a
            // login_id's one message is used or late).
            ErrorClass::WindowClosed
                if matches!(
                    optin.recipient.kind,
                    IdentityKind::LoginId | IdentityKind::UserRef
                ) && earlier_answer_lost(optin) =>
            {
                // An earlier attempt's answer was lost (timeout or 5xx) and now Meta says the
                // one message is used: that attempt was accepted. Recorded as sent, without a
                // message id, rather than as a failure the person did not see.
                tracing::warn!(
                    optin = %hash_id(&key),
                    attempt,
                    "one message already used after a lost answer: recorded as sent"
                );
                self.record_sent(optin, None, now).await?;
                self.delete_schedule(optin).await;
                Ok(JobOutcome::Sent {
                    message_id: String::new(),
                    optin_to_sent_ms: now - optin.opted_in_at_ms,
                    schedule_deleted: true,
                })
            }
            ErrorClass::WindowClosed | ErrorClass::UnknownRecipient | ErrorClass::Undeliverable => {
                let why = match (class, optin.recipient.kind) {
                    (ErrorClass::WindowClosed, IdentityKind::LoginId | IdentityKind::UserRef) => {
                        "the one message window is used or late"
                    }
                    (ErrorClass::WindowClosed, _) => "window closed until the person writes",
                    (ErrorClass::UnknownRecipient, _) => "Meta knows no such recipient",
                    _ => "Meta will not deliver to this recipient",
                };
                let reason = format!("{rule}: {why}: {detail}");
                self.close_failed(optin, attempt, reason, rule).await
            }
            ErrorClass::OperatorAction => {
                self.release(&key, attempt, &detail).await?;
                self.pause(&optin.page_id, format!("{rule}: {detail}"), now)
                    .await
            }
            ErrorClass::BadRequest => {
                self.table
                    .optins
                    .finish(
                        &key,
                        attempt,
                        &Finish::Failed {
                            error: format!("{rule}: {detail}"),
                        },
                        now,
                    )
                    .await?;
                self.delete_schedule(optin).await;
                Ok(JobOutcome::BadRequest {
                    reason: format!("{rule}: {detail}"),
                })
            }
        }
    }

    /// Ends the attempt as `failed` with its reason (nothing more will be tried for this
    /// generation) and deletes its deadline check.
    async fn close_failed(
        &self,
        optin: &Optin,
        attempt: u32,
        reason: String,
        rule: &'static str,
    ) -> Result<JobOutcome, JobError> {
        let now = self.clock.now_ms();
        self.table
            .optins
            .finish(
                &optin.key(),
                attempt,
                &Finish::Failed {
                    error: reason.clone(),
                },
                now,
            )
            .await?;
        self.delete_schedule(optin).await;
        Ok(JobOutcome::Refused { rule, reason })
    }

    async fn unreachable(
        &self,
        optin: &Optin,
        attempt: u32,
        rule: &'static str,
        detail: &str,
        now: i64,
    ) -> Result<JobOutcome, JobError> {
        let key = optin.key();
        self.table
            .optins
            .finish(
                &key,
                attempt,
                &Finish::OptedOut {
                    error: format!("{rule}: {detail}"),
                },
                now,
            )
            .await?;
        if matches!(
            optin.recipient.kind,
            IdentityKind::Psid | IdentityKind::Igsid
        ) {
            self.table
                .people
                .opt_out(&optin.page_id, &optin.recipient.id, rule, now)
                .await?;
        }
        self.delete_schedule(optin).await;
        Ok(JobOutcome::Unreachable { rule })
    }

    /// Schedules the next attempt, or records the miss when no attempt can land in time.
    async fn expire_or_retry(
        &self,
        optin: &Optin,
        now: i64,
        detail: &str,
        attempt: u32,
        wait_hint_ms: Option<i64>,
    ) -> Result<JobOutcome, JobError> {
        let latest = optin.deadline_at_ms - self.config.deadline_guard_ms;
        let wanted = backoff_ms(
            attempt,
            self.config.backoff_base_ms,
            self.config.backoff_cap_ms,
            &optin.key(),
        )
        .max(wait_hint_ms.unwrap_or(0));
        if now >= latest {
            // Too close to the deadline for another try: the deadline check will expire it.
            return Ok(JobOutcome::RetryLater {
                delay_ms: (optin.deadline_at_ms - now).max(1_000),
                reason: format!("no time left for a retry: {detail}"),
            });
        }
        let delay = wanted.min(latest - now).max(1_000);
        Ok(JobOutcome::RetryLater {
            delay_ms: delay,
            reason: detail.to_string(),
        })
    }
}

/// The Send API recipient for an opt-in.
pub fn recipient_of(optin: &Optin) -> Recipient {
    let id = optin.recipient.id.clone();
    match optin.recipient.kind {
        IdentityKind::LoginId => Recipient::LoginId(id),
        IdentityKind::UserRef => Recipient::UserRef(id),
        IdentityKind::Psid | IdentityKind::Igsid => Recipient::Id(id),
    }
}

/// What the business hears of a job's outcome. The ids name the opt-in generation and the
/// outcome, so a republished outcome (a redelivered job finding it closed) keeps its id.
pub fn outcome_events(job: &FirstMessageJob, outcome: &JobOutcome, now_ms: i64) -> Vec<BusEvent> {
    let generation = job.generation.unwrap_or(1);
    let fact = |what: &str| format!("{}#g{generation}:{what}", job.optin_key);
    let person = PersonIds {
        external_id: job.external_id.clone(),
        ..PersonIds::of(&job.recipient)
    };
    let event = |t: DetailType, what: &str, mut payload: serde_json::Value| {
        if t != DetailType::PersonOptedOut {
            bus::about_optin(
                &mut payload,
                crate::funnel::entry_point_of(job.recipient.kind),
                job.reference.as_deref(),
            );
        }
        BusEvent::new(
            t,
            &fact(what),
            now_ms,
            channel_of_recipient(job),
            &job.page_id,
            person.clone(),
            payload,
        )
    };
    let failed = |rule: &str, reason: &str| {
        event(
            DetailType::FirstMessageFailed,
            "failed",
            serde_json::json!({"generation": generation, "rule": rule, "reason": reason}),
        )
    };
    match outcome {
        JobOutcome::Sent {
            message_id,
            optin_to_sent_ms,
            ..
        } => vec![event(
            DetailType::FirstMessageSent,
            "sent",
            serde_json::json!({
                "generation": generation,
                "message_id": message_id,
                "optin_to_sent_ms": optin_to_sent_ms,
            }),
        )],
        JobOutcome::AlreadyDone {
            state: Some(OptinState::Sent),
        } => vec![event(
            DetailType::FirstMessageSent,
            "sent",
            serde_json::json!({"generation": generation}),
        )],
        JobOutcome::Refused { rule, reason } => vec![failed(rule, reason)],
        JobOutcome::BadRequest { reason } => vec![failed("bad_request", reason)],
        JobOutcome::Unreachable { rule } => vec![
            failed(rule, "the person cannot be reached"),
            event(
                DetailType::PersonOptedOut,
                "opted_out",
                serde_json::json!({"reason": rule, "by": "meta"}),
            ),
        ],
        JobOutcome::Expired { reason } => vec![event(
            DetailType::FirstMessageMissed,
            "missed",
            serde_json::json!({"generation": generation, "reason": reason}),
        )],
        // A redelivered job finding the outcome already recorded: say it again (same id), in
        // case the first publish was refused.
        JobOutcome::AlreadyDone {
            state: Some(OptinState::Expired),
        } => vec![event(
            DetailType::FirstMessageMissed,
            "missed",
            serde_json::json!({"generation": generation}),
        )],
        JobOutcome::AlreadyDone {
            state: Some(OptinState::Failed),
        } => vec![event(
            DetailType::FirstMessageFailed,
            "failed",
            serde_json::json!({"generation": generation}),
        )],
        _ => Vec::new(),
    }
}

/// Did an earlier attempt of this generation end without an answer (a timeout, a connection
/// cut, a 5xx)? Its message may have been accepted.
fn earlier_answer_lost(optin: &Optin) -> bool {
    optin.attempts > 1
        && optin
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("transport") || e.starts_with("graph 5"))
}

fn channel_of_recipient(job: &FirstMessageJob) -> &'static str {
    if job.recipient.kind == IdentityKind::Igsid {
        "instagram"
    } else {
        "messenger"
    }
}

/// Exponential backoff with deterministic jitter: `base * 2^(attempt-1)`, capped, then scaled
/// into [50 %, 100 %] by a hash of the key and attempt (no RNG needed, spreads a herd).
pub fn backoff_ms(attempt: u32, base_ms: i64, cap_ms: i64, key: &str) -> i64 {
    let exp = base_ms.saturating_mul(1i64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(cap_ms).max(1);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let frac = (h % 1000) as i64; // 0..999
    capped / 2 + capped * frac / 2000
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = |a| backoff_ms(a, 2_000, 60_000, "k");
        assert!((1_000..=2_000).contains(&b(1)));
        assert!((2_000..=4_000).contains(&b(2)));
        assert!((30_000..=60_000).contains(&b(10)));
        assert!((30_000..=60_000).contains(&b(40)), "no overflow");
        assert_ne!(
            backoff_ms(3, 2_000, 60_000, "a"),
            backoff_ms(3, 2_000, 60_000, "b")
        );
    }
}
