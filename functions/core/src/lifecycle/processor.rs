//! The lifecycle processor (run by the events function): one normalized inbound event in,
//! state changes out.
//!
//! Idempotent by construction rather than by a marker item: every write is conditional or
//! monotonic (an opt-in is a conditional create, a window timestamp only moves forward, a link
//! writes the same values twice), so processing an event again changes nothing and emits
//! nothing again. Errors that may pass (a backend throttled) are returned as
//! [`ProcessError::Retry`]: the SQS message is retried alone. Anything we cannot act on is
//! stored as quarantined and reported as processed, so a poison message never loops.

use serde_json::value::RawValue;

use crate::lifecycle::optin::{
    optin_key, DeadlineCheck, EntryPoint, FirstMessageJob, Optin, OptinSource, OptinState, RefInfo,
    CONFIRM_CHECK,
};
use crate::lifecycle::refs::{self, Keyring, RefCheck};
use crate::ports::store::{
    Created, Finish, Link, LinkResult, MarketingToken, QuarantinedRecord, ReferralInfo, Reopened,
    TokenStatus,
};
use std::sync::Arc;

use crate::bus::{self, inbound::Learnt};
use crate::consumer::Fate;
use crate::funnel::{self, FirstReply, FunnelStage};
use crate::ports::identity::{valid_external_id, IdentityPointer, IndexedId, OptinIdentity};
use crate::ports::{
    Clock, EventBus, Metric, Metrics, OneTimeSchedule, OutMessage, PortError, QueueSender,
    Scheduler, SecretSource, Table,
};
use crate::sending::sender::Admitted;
use crate::support::privacy::hash_id;
use crate::support::secret::Secrets;
use crate::webhook::model::{MessagingItem, OptinEntryPoint, PolicyAction};
use crate::webhook::{Channel, EventKind, Identity, IdentityKind, InboundEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// The deadline check fires this long before the deadline (default 1 h).
    pub deadline_margin_ms: i64,
    /// The creator of an opt-in owns enqueueing its job for this long; after that a duplicate
    /// may take over. Keep it below the events queue's visibility timeout.
    pub job_claim_ms: i64,
    /// A schedule is never set closer than this to now.
    pub min_schedule_lead_ms: i64,
    /// A generation the login callback started gets a confirm check this long after the login
    /// (default 1 h): unconfirmed by the webhook by then, it is reported.
    pub login_confirm_after_ms: i64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            deadline_margin_ms: 60 * 60 * 1000,
            job_claim_ms: 60 * 1000,
            min_schedule_lead_ms: 60 * 1000,
            login_confirm_after_ms: 60 * 60 * 1000,
        }
    }
}

/// What processing did (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    OptinCreated {
        entry_point: EntryPoint,
        source: OptinSource,
        schedule_created: bool,
        generation: u32,
    },
    /// The opt-in reached us after its deadline: recorded as expired, nothing will be sent.
    OptinMissedOnArrival {
        entry_point: EntryPoint,
    },
    /// A duplicate (retry, another app, login callback + webhook): nothing new happened.
    OptinDuplicate {
        state: OptinState,
    },
    /// The creator crashed before enqueueing; this duplicate enqueued the job instead.
    OptinJobTakenOver,
    UserMessage {
        window_moved: bool,
        linked: bool,
    },
    Referral {
        stored: bool,
    },
    MarketingToken {
        status: TokenStatus,
        applied: bool,
    },
    PagePaused {
        applied: bool,
    },
    PageUnpaused {
        applied: bool,
    },
    PolicyWarning,
    Quarantined {
        reason: String,
    },
    /// An operator's replay command ran.
    Replayed {
        replayed: usize,
        still_quarantined: usize,
    },
    Ignored {
        kind: EventKind,
    },
}

impl Processed {
    /// What this outcome counts for (nothing for most).
    fn metric(&self) -> Option<Metric> {
        match self {
            Processed::OptinCreated {
                entry_point,
                source,
                ..
            } => Some(Metric::OptinReceived {
                source: *source,
                entry_point: *entry_point,
            }),
            Processed::OptinDuplicate { .. } => Some(Metric::DuplicateSuppressed),
            Processed::OptinMissedOnArrival { .. } => Some(Metric::FirstMessageMissed),
            Processed::Quarantined { .. } => Some(Metric::Quarantined(1)),
            Processed::PagePaused { applied: true } => Some(Metric::PagePaused),
            Processed::PolicyWarning => Some(Metric::PolicyWarning),
            _ => None,
        }
    }

    /// A short stable name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Processed::OptinCreated { .. } => "optin_created",
            Processed::OptinMissedOnArrival { .. } => "optin_missed_on_arrival",
            Processed::OptinDuplicate { .. } => "optin_duplicate",
            Processed::OptinJobTakenOver => "optin_job_taken_over",
            Processed::UserMessage { .. } => "user_message",
            Processed::Referral { .. } => "referral",
            Processed::MarketingToken { .. } => "marketing_token",
            Processed::PagePaused { .. } => "page_paused",
            Processed::PageUnpaused { .. } => "page_unpaused",
            Processed::PolicyWarning => "policy_warning",
            Processed::Quarantined { .. } => "quarantined",
            Processed::Replayed { .. } => "replayed",
            Processed::Ignored { .. } => "ignored",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Try the message again later (backend unavailable, a send in flight).
    #[error("retry: {0}")]
    Retry(String),
}

impl From<PortError> for ProcessError {
    fn from(e: PortError) -> Self {
        // A rejected write is a bug or bad data; retrying lets the DLQ catch it after N tries
        // with the reason logged, rather than dropping the event.
        ProcessError::Retry(e.to_string())
    }
}

/// The ports the lifecycle writes through.
#[derive(Clone)]
pub struct LifecyclePorts {
    pub table: Table,
    pub scheduler: Arc<dyn Scheduler>,
    /// The outbound queue (first-message jobs).
    pub jobs: Arc<dyn QueueSender>,
    /// For the plugin ref keys (read on use, so a rotated key is honoured within the source's
    /// cache time, not at the next cold start).
    pub secrets: Arc<dyn SecretSource>,
    /// The business's event bus.
    pub bus: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

pub struct Lifecycle {
    table: Table,
    scheduler: Arc<dyn Scheduler>,
    jobs: Arc<dyn QueueSender>,
    secrets: Arc<dyn SecretSource>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    config: LifecycleConfig,
    /// The keyring of the secrets last seen (rebuilt only when the source hands a new value).
    keys: std::sync::Mutex<Option<(Arc<Secrets>, Arc<Keyring>)>>,
    /// Sends a new opt-in's first message in this call instead of queueing a job
    /// ([`Lifecycle::with_inline_sender`]).
    inline: Option<Arc<crate::sending::sender::Sender>>,
}

impl Lifecycle {
    pub fn new(ports: LifecyclePorts, config: LifecycleConfig) -> Self {
        Lifecycle {
            table: ports.table,
            scheduler: ports.scheduler,
            jobs: ports.jobs,
            secrets: ports.secrets,
            bus: ports.bus,
            clock: ports.clock,
            metrics: ports.metrics,
            config,
            keys: std::sync::Mutex::new(None),
            inline: None,
        }
    }

    /// Sends the first message of an opt-in this call created right here, through `sender`
    /// (the same load, gate, claim with a lease, send and record as the sender function), once
    /// the opt-in, its deadline check and its events are durable: the common path then needs
    /// no outbound job and no sender invocation. An outcome that is not final (pacing, a paused
    /// Page, a retryable failure released) queues the job as before. If this process dies
    /// mid-send, the events message comes back after its visibility timeout and finds the
    /// opt-in `sending` with no job: once the lease lapsed it queues the job (as a duplicate
    /// copy of an opt-in does), and the sender's claim takes the lapsed attempt over; the
    /// deadline check stays as the last net.
    pub fn with_inline_sender(mut self, sender: Arc<crate::sending::sender::Sender>) -> Self {
        self.inline = Some(sender);
        self
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The events consumer's per-message function: one queue message body in, its fate out.
    /// Lambda's batch wrapper and the local runner's poller both call it.
    pub async fn handle_message(&self, body: &str) -> Fate {
        match self.process_body(body).await {
            Ok(done) => {
                tracing::debug!(outcome = done.name(), detail = ?done, "event processed");
                Fate::Ack
            }
            Err(ProcessError::Retry(reason)) => Fate::retry(reason),
        }
    }

    /// Processes one queue message body (an event, or an operator's replay command).
    pub async fn process_body(&self, body: &str) -> Result<Processed, ProcessError> {
        let event = InboundEvent::from_json(body);
        // An operator's command is not an event: looked for only when the body is not one, so
        // an event is parsed once (trying the command first read every event twice).
        if event.is_err() {
            if let Some(cmd) = crate::lifecycle::replay::ReplayCommand::parse(body) {
                return self.replay(cmd.limit).await;
            }
        }
        match event {
            Ok(event) => self.process(&event).await,
            Err(e) => {
                // Not one of ours (hand-sent, or a future schema): keep it, do not loop.
                let now = self.clock.now_ms();
                let reason = format!("queue message is not an inbound event: {e}");
                let digest = crate::webhook::inbound::idempotency_key(
                    EventKind::Quarantined,
                    None,
                    "",
                    "",
                    None,
                    0,
                    body.as_bytes(),
                );
                self.quarantine_raw(now, &digest, &reason, body).await
            }
        }
    }

    /// Replays up to `limit` quarantined records (see [`crate::lifecycle::replay`]).
    pub async fn replay(&self, limit: usize) -> Result<Processed, ProcessError> {
        let records = self.table.quarantine.list_quarantined(limit).await?;
        let plan = crate::lifecycle::replay::plan(&records, self.clock.now_ms());
        let mut replayed = 0;
        for (events, ids) in &plan.ready {
            let mut all_done = true;
            for e in events {
                match self.process(e).await? {
                    Processed::Quarantined { .. } => all_done = false,
                    _ => replayed += 1,
                }
            }
            if all_done {
                for id in ids {
                    self.table.quarantine.delete_quarantined(id).await?;
                }
            }
        }
        tracing::info!(
            replayed,
            still = plan.still_quarantined.len(),
            "quarantine replayed"
        );
        Ok(Processed::Replayed {
            replayed,
            still_quarantined: plan.still_quarantined.len(),
        })
    }

    /// Processes one event: state first, then the business hears of it on the bus (after the
    /// state is durable; a refused publish keeps the queue message, and processing it again
    /// republishes the same events with the same ids).
    pub async fn process(&self, event: &InboundEvent) -> Result<Processed, ProcessError> {
        let mut learnt = Learnt::default();
        // Parsed once for the handler and the bus events (each parsed it for itself).
        let item = MessagingItem::parse(&event.item).ok();
        let done = self
            .process_event(event, item.as_ref(), &mut learnt)
            .await?;
        let events = bus::inbound::events_for(event, item.as_ref(), &done, &learnt);
        bus::publish_all(self.bus.as_ref(), &events)
            .await
            .map_err(|e| ProcessError::Retry(format!("events not published: {e}")))?;
        if let Some(m) = done.metric() {
            self.metrics.record(m);
        }
        self.count_funnel(event, &done, &learnt);
        if let Some((job, written, admitted)) = learnt.inline_job.take() {
            self.send_inline(&job, written, admitted).await?;
        }
        Ok(done)
    }

    /// The first message of an opt-in this call created (see [`Lifecycle::with_inline_sender`]).
    async fn send_inline(
        &self,
        job: &FirstMessageJob,
        written: Optin,
        admitted: Option<Admitted>,
    ) -> Result<(), ProcessError> {
        let Some(sender) = &self.inline else {
            return Ok(());
        };
        // What this call just wrote is not read back; written already claimed, it is not
        // claimed again either.
        let run = match admitted {
            Some(admitted) => sender.run_admitted(job, written, admitted).await,
            None => sender.run_job_written(job, written).await,
        };
        match run {
            Ok(outcome) => match outcome.fate() {
                Fate::Ack => Ok(()),
                Fate::DeadLetter { reason } => {
                    // The opt-in is closed as failed; there is no job message to dead-letter.
                    tracing::error!(
                        optin = %hash_id(&job.optin_key),
                        reason = %reason,
                        "first message refused as malformed"
                    );
                    Ok(())
                }
                Fate::Retry { after_secs, reason } => {
                    self.defer_inline(job, after_secs.unwrap_or(0), &reason)
                        .await
                }
                Fate::Defer { after_secs, reason } => {
                    self.defer_inline(job, after_secs, &reason).await
                }
            },
            // Nothing queued: the events message comes back, finds the opt-in without a job
            // and queues it once the creator's claim (and any lease) lapsed. The `optin` step
            // was left to the send's funnel line; the redelivery is a duplicate, so it is
            // counted here.
            Err(e) => {
                funnel::record(
                    self.metrics.as_ref(),
                    FunnelStage::Optin,
                    funnel::entry_point_of(job.recipient.kind),
                    &job.page_id,
                );
                Err(ProcessError::Retry(format!(
                    "first message not settled: {e}"
                )))
            }
        }
    }

    /// An inline send that did not settle: its job goes on the outbound queue for the sender.
    async fn defer_inline(
        &self,
        job: &FirstMessageJob,
        after_secs: u32,
        reason: &str,
    ) -> Result<(), ProcessError> {
        tracing::debug!(
            optin = %hash_id(&job.optin_key),
            reason = %reason,
            "first message deferred to the sender"
        );
        self.queue_job(job, after_secs.min(MAX_SQS_DELAY_SECS))
            .await?;
        self.table
            .optins
            .mark_job_enqueued(&job.optin_key, self.clock.now_ms())
            .await?;
        Ok(())
    }

    /// The funnel steps this event took (see [`crate::funnel`]), once its events are out.
    fn count_funnel(&self, event: &InboundEvent, done: &Processed, learnt: &Learnt) {
        let metrics = self.metrics.as_ref();
        let page = event.account_id.as_str();
        match done {
            // An inline send logs the `optin` step with its outcome, in one line.
            Processed::OptinCreated { .. } if learnt.inline_job.is_some() => {}
            Processed::OptinCreated { entry_point, .. } => {
                funnel::record(metrics, FunnelStage::Optin, *entry_point, page);
            }
            Processed::OptinMissedOnArrival { entry_point } => {
                funnel::record(metrics, FunnelStage::Optin, *entry_point, page);
                funnel::record(metrics, FunnelStage::Missed, *entry_point, page);
            }
            _ => {}
        }
        if let Some(reply) = &learnt.first_reply {
            reply.record(metrics);
        }
    }

    async fn process_event(
        &self,
        event: &InboundEvent,
        item: Option<&MessagingItem>,
        learnt: &mut Learnt,
    ) -> Result<Processed, ProcessError> {
        match event.kind {
            EventKind::Quarantined => {
                let reason = event
                    .quarantine
                    .as_ref()
                    .map(|q| q.reason.clone())
                    .unwrap_or_else(|| "quarantined body".into());
                self.quarantine(event, &reason).await
            }
            EventKind::Malformed => self.quarantine(event, "malformed item").await,
            EventKind::Optin => self.optin(event, item, learnt).await,
            EventKind::Message | EventKind::Postback => self.user_action(event, item, learnt).await,
            EventKind::Referral => self.referral(event, item, learnt).await,
            EventKind::PolicyEnforcement => self.policy(event, item).await,
            kind => Ok(Processed::Ignored { kind }),
        }
    }

    async fn quarantine(
        &self,
        event: &InboundEvent,
        reason: &str,
    ) -> Result<Processed, ProcessError> {
        let json = event
            .to_json()
            .map_err(|e| ProcessError::Retry(format!("cannot encode event: {e}")))?;
        self.quarantine_raw(event.received_at_ms, &event.key, reason, &json)
            .await
    }

    async fn quarantine_raw(
        &self,
        received_at_ms: i64,
        key: &str,
        reason: &str,
        json: &str,
    ) -> Result<Processed, ProcessError> {
        let record = QuarantinedRecord {
            id: format!("{:013}#{}", received_at_ms.max(0), key),
            reason: reason.to_string(),
            received_at_ms,
            event_json: json.to_string(),
        };
        self.table.quarantine.put_quarantined(&record).await?;
        tracing::warn!(quarantine_id = %record.id, reason, "event quarantined");
        Ok(Processed::Quarantined {
            reason: reason.to_string(),
        })
    }

    // ---- opt-ins --------------------------------------------------------------------------

    async fn optin(
        &self,
        event: &InboundEvent,
        item: Option<&MessagingItem>,
        learnt: &mut Learnt,
    ) -> Result<Processed, ProcessError> {
        let Some(item) = item else {
            return self.quarantine(event, "opt-in item does not parse").await;
        };
        let Some(optin) = item.optin.as_ref() else {
            return self.quarantine(event, "opt-in item without optin").await;
        };
        let source = if event.channel == Channel::Login {
            OptinSource::Login
        } else {
            OptinSource::Webhook
        };
        let page = event.account_id.as_str();
        match optin.entry_point() {
            OptinEntryPoint::LoginConnect => {
                let Some(login_id) = optin.login_id() else {
                    return self
                        .quarantine(event, "login opt-in without login_id")
                        .await;
                };
                let who = Identity::new(IdentityKind::LoginId, login_id);
                let reference = self.ref_of(optin).await?;
                self.new_optin(
                    event,
                    who,
                    EntryPoint::LoginConnect,
                    source,
                    reference,
                    learnt,
                )
                .await
            }
            OptinEntryPoint::Checkbox => {
                let Some(user_ref) = optin.user_ref() else {
                    return self
                        .quarantine(event, "checkbox opt-in without user_ref")
                        .await;
                };
                let who = Identity::new(IdentityKind::UserRef, user_ref);
                let reference = self.ref_of(optin).await?;
                self.new_optin(event, who, EntryPoint::Checkbox, source, reference, learnt)
                    .await
            }
            OptinEntryPoint::SendToMessenger => {
                let Some(who) = event
                    .sender
                    .clone()
                    .filter(|s| matches!(s.kind, IdentityKind::Psid | IdentityKind::Igsid))
                else {
                    return self
                        .quarantine(event, "send-to-messenger opt-in without a sender")
                        .await;
                };
                let reference = self.ref_of(optin).await?;
                self.new_optin(
                    event,
                    who,
                    EntryPoint::SendToMessenger,
                    source,
                    reference,
                    learnt,
                )
                .await
            }
            OptinEntryPoint::NotificationMessages => {
                let Some(psid) = event
                    .sender
                    .as_ref()
                    .filter(|s| s.kind != IdentityKind::UserRef)
                else {
                    return self
                        .quarantine(event, "marketing opt-in without a sender")
                        .await;
                };
                let status = if optin.is_stop() {
                    TokenStatus::Stopped
                } else {
                    TokenStatus::Active
                };
                let topic = optin
                    .payload
                    .clone()
                    .filter(|p| !p.is_empty())
                    .or_else(|| optin.title.clone().filter(|t| !t.is_empty()))
                    .unwrap_or_else(|| "default".into());
                let token = MarketingToken {
                    topic,
                    token: optin.notification_messages_token.clone(),
                    status,
                    expires_at_ms: optin.token_expiry_timestamp,
                    status_at_ms: event.timestamp_ms,
                };
                let applied = self.table.people.set_token(page, &psid.id, &token).await?;
                Ok(Processed::MarketingToken { status, applied })
            }
            OptinEntryPoint::Other => Ok(Processed::Ignored {
                kind: EventKind::Optin,
            }),
        }
    }

    /// The current ref keyring, decoded once per secrets value.
    async fn keyring(&self) -> Result<Arc<Keyring>, ProcessError> {
        let secrets = self
            .secrets
            .secrets()
            .await
            .map_err(|e| ProcessError::Retry(format!("secrets unavailable: {e}")))?;
        let mut cached = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, ring)) = cached.as_ref() {
            if Arc::ptr_eq(seen, &secrets) {
                return Ok(ring.clone());
            }
        }
        let ring = Arc::new(Keyring::from_secrets(&secrets));
        *cached = Some((secrets, ring.clone()));
        Ok(ring)
    }

    /// The opt-in's `ref`, checked, kept on the opt-in: the first-message events carry it
    /// (`bus::about_optin`), so a business with `OptInReceived` switched off still gets it.
    async fn ref_of(
        &self,
        optin: &crate::webhook::model::Optin,
    ) -> Result<Option<RefInfo>, ProcessError> {
        match optin.reference() {
            Some(r) => Ok(Some(self.check_ref(r).await?)),
            None => Ok(None),
        }
    }

    async fn check_ref(&self, raw: &str) -> Result<RefInfo, ProcessError> {
        let keys = self.keyring().await?;
        let now_secs = self.clock.now_ms().div_euclid(1000);
        let (status, payload) = match refs::verify(raw, &keys, now_secs) {
            RefCheck::Valid { payload, .. } => (
                "valid",
                Some(String::from_utf8_lossy(&payload).into_owned()),
            ),
            RefCheck::Expired { .. } => ("expired", None),
            RefCheck::Invalid(_) => ("invalid", None),
            RefCheck::Opaque => ("opaque", None),
        };
        if status != "valid" {
            tracing::warn!(
                ref_status = status,
                "plugin ref is not a valid signed ref; kept as opaque data"
            );
        }
        Ok(RefInfo {
            raw: raw.to_string(),
            status: status.into(),
            payload,
        })
    }

    async fn new_optin(
        &self,
        event: &InboundEvent,
        who: Identity,
        entry_point: EntryPoint,
        source: OptinSource,
        reference: Option<RefInfo>,
        learnt: &mut Learnt,
    ) -> Result<Processed, ProcessError> {
        let now = self.clock.now_ms();
        let mut optin = Optin::pending(
            who,
            &event.account_id,
            &event.object,
            entry_point,
            source,
            event.timestamp_ms,
            &event.key,
            now,
        );
        // Who the person is beyond the key: the login callback's ASID and signed business id,
        // or the business id in a valid signed Send-to-Messenger ref (docs/people.md; the
        // other entry points keep their ref for the events only).
        let login = login_identity_of(event);
        optin.external_id = login
            .as_ref()
            .and_then(|l| l.external_id.clone())
            .or_else(|| {
                reference
                    .as_ref()
                    .filter(|_| entry_point == EntryPoint::SendToMessenger)
                    .and_then(external_id_in_ref)
            })
            .filter(|x| valid_external_id(x));
        optin.asid = login.as_ref().map(|l| l.asid.clone());
        optin.reference = reference;
        optin.app_id.clone_from(&event.app_id);
        learnt.external_id.clone_from(&optin.external_id);
        // The index first: a crash after it leaves a pointer to nothing (skipped by readers),
        // never an opt-in its identities cannot find.
        let pointers = pointers_for(&optin, login.as_ref(), event.timestamp_ms);
        if !pointers.is_empty() {
            self.table.identities.put_pointers(&pointers).await?;
        }
        let mut admitted = None;
        if now >= optin.deadline_at_ms {
            optin.state = OptinState::Expired;
            optin.last_error = Some("opt-in processed after its deadline".into());
        } else {
            optin.job_claim_until_ms = now + self.config.job_claim_ms;
            if let Some(sender) = &self.inline {
                // When the Page can send now, the opt-in is written already claimed for the
                // inline send: one write fewer than create, then claim. (A copy that finds
                // the key taken has spent a pacing slot; that only slows its Page a little.)
                admitted = sender.admit_new(&optin, now).await;
            }
        }
        let written = match (&admitted, &self.inline) {
            (Some(_), Some(sender)) => {
                let mut claimed = optin.clone();
                claimed.claim(now, now + sender.config().lease_ms);
                claimed
            }
            _ => optin.clone(),
        };

        let mut existing = match self.table.optins.create_optin(&written).await? {
            Created::Created => return self.opened(&written, now, learnt, admitted).await,
            Created::Exists(existing) => *existing,
        };
        // The same person's opt-in, known first from another path (the webhook before the
        // login callback): it learns the identities it lacks, and the events say them.
        let learn = OptinIdentity {
            external_id: optin
                .external_id
                .clone()
                .filter(|_| existing.external_id.is_none()),
            asid: optin.asid.clone().filter(|_| existing.asid.is_none()),
        };
        if !learn.is_empty()
            && self
                .table
                .identities
                .add_optin_identity(&existing.key(), &learn)
                .await?
        {
            existing.external_id = existing.external_id.or(learn.external_id);
            existing.asid = existing.asid.or(learn.asid);
        }
        if learnt.external_id.is_none() {
            learnt.external_id.clone_from(&existing.external_id);
        }
        // A later opt-in on a closed generation opens the next one. Copies racing to open it
        // converge on one: the reopen is conditional on the record being exactly as read.
        for _ in 0..3 {
            if !existing.opens_generation(event.timestamp_ms, &event.key, source) {
                if existing.confirmed_by(event.timestamp_ms, source) {
                    self.confirm(&existing, now).await?;
                }
                return self.repeated(&optin, existing, now).await;
            }
            let next = existing.next_generation(optin.clone());
            match self.table.optins.reopen(&existing, &next).await? {
                Reopened::Reopened => {
                    tracing::info!(
                        optin = %hash_id(&next.key()),
                        generation = next.generation,
                        "opt-in again: a new generation"
                    );
                    return self.opened(&next, now, learnt, None).await;
                }
                Reopened::Changed(now_stored) => existing = *now_stored,
                Reopened::Missing => {
                    return Err(ProcessError::Retry(
                        "opt-in vanished while opening a new generation".into(),
                    ))
                }
            }
        }
        Err(ProcessError::Retry(
            "opt-in kept changing while opening a new generation".into(),
        ))
    }

    /// A generation this call created: its first-message job goes first, then its deadline
    /// check, so a Scheduler outage never holds back a first message. With an inline sender,
    /// the deadline check goes first and the first message is sent by `process` once the
    /// events are out; a Scheduler outage then queues the job instead.
    async fn opened(
        &self,
        optin: &Optin,
        now: i64,
        learnt: &mut Learnt,
        admitted: Option<Admitted>,
    ) -> Result<Processed, ProcessError> {
        if optin.state == OptinState::Expired {
            tracing::error!(
                optin = %hash_id(&optin.key()),
                reason = "opt-in processed after its deadline",
                "first message missed"
            );
            return Ok(Processed::OptinMissedOnArrival {
                entry_point: optin.entry_point,
            });
        }
        if self.inline.is_some() {
            // The deadline check first (free to create and delete, and the net if this
            // process dies mid-send), then the events, then the send (`process`). If the
            // Scheduler is down, the job is queued as without an inline sender, so the outage
            // holds back no first message.
            let schedule_created = match self.schedule(optin, now).await {
                Ok(created) => created,
                Err(e) => {
                    if admitted.is_some() {
                        // Written claimed for a send that will not happen here: let the
                        // queued job claim it now rather than after the lease.
                        let release = Finish::Release {
                            error: format!("inline send given up: {e}"),
                        };
                        self.table
                            .optins
                            .finish(&optin.key(), optin.attempts, &release, now)
                            .await?;
                    }
                    self.send_job(optin, now).await?;
                    return Err(e);
                }
            };
            learnt.inline_job = Some((
                FirstMessageJob::for_generation(optin, now),
                optin.clone(),
                admitted,
            ));
            return Ok(Processed::OptinCreated {
                entry_point: optin.entry_point,
                source: optin.source,
                schedule_created,
                generation: optin.generation,
            });
        }
        self.send_job(optin, now).await?;
        let schedule_created = self.schedule(optin, now).await?;
        self.table
            .optins
            .mark_job_enqueued(&optin.key(), now)
            .await?;
        Ok(Processed::OptinCreated {
            entry_point: optin.entry_point,
            source: optin.source,
            schedule_created,
            generation: optin.generation,
        })
    }

    /// A copy of an opt-in already counted (Meta retry, another app, login callback +
    /// webhook). If its creator crashed before the job and the deadline check were confirmed,
    /// this copy takes over once the creator's claim lapsed.
    async fn repeated(
        &self,
        optin: &Optin,
        existing: Optin,
        now: i64,
    ) -> Result<Processed, ProcessError> {
        let key = existing.key();
        if existing.page_id != optin.page_id {
            tracing::warn!(
                optin = %hash_id(&key),
                "opt-in seen for a second page; the first page keeps it"
            );
        }
        // Sending without a job: an inline send (or a sender that claimed before the creator
        // marked its job) still under its lease, or whose process died (lease lapsed).
        let sending = existing.state == OptinState::Sending;
        if (existing.state == OptinState::Pending || sending) && !existing.job_enqueued {
            if sending && existing.lease_until_ms > now {
                return Err(ProcessError::Retry(
                    "the opt-in's first message is being sent".into(),
                ));
            }
            if existing.job_claim_until_ms >= now {
                // Its creator is enqueueing the job right now, or crashed doing so. Dropping
                // this copy could lose the job (if the creator crashed and this is its own
                // redelivery), so look again after the claim lapses.
                return Err(ProcessError::Retry(
                    "the opt-in's first-message job is not confirmed yet".into(),
                ));
            }
            if self
                .table
                .optins
                .take_job(&key, now, now + self.config.job_claim_ms)
                .await?
            {
                self.send_job(&existing, now).await?;
                self.schedule(&existing, now).await?;
                self.table.optins.mark_job_enqueued(&key, now).await?;
                return Ok(Processed::OptinJobTakenOver);
            }
        }
        Ok(Processed::OptinDuplicate {
            state: existing.state,
        })
    }

    /// The webhook for the grant of a generation the login callback started: Meta's own event
    /// confirms it (and the derived `login_id`). Recorded once; its confirm check then finds it.
    async fn confirm(&self, existing: &Optin, now: i64) -> Result<(), ProcessError> {
        if existing.confirmed_at_ms.is_none()
            && self
                .table
                .optins
                .confirm(&existing.key(), existing.generation, now)
                .await?
        {
            tracing::info!(
                optin = %hash_id(&existing.key()),
                generation = existing.generation,
                "login opt-in confirmed by the webhook"
            );
        }
        Ok(())
    }

    /// A generation the login callback started is checked once more, an hour after the login
    /// ([`LifecycleConfig::login_confirm_after_ms`]): a derived `login_id` that never met a
    /// webhook opt-in becomes visible instead of silent. Its own name, so a retry names it again.
    async fn confirm_schedule(&self, optin: &Optin, now: i64) -> Result<(), ProcessError> {
        let at_ms = optin
            .opted_in_at_ms
            .saturating_add(self.config.login_confirm_after_ms)
            .max(now + self.config.min_schedule_lead_ms);
        let input = serde_json::to_string(&DeadlineCheck {
            v: 1,
            optin_key: optin.key(),
            generation: Some(optin.generation),
            check: CONFIRM_CHECK.into(),
        })
        .map_err(|e| ProcessError::Retry(e.to_string()))?;
        self.scheduler
            .create_schedule(&OneTimeSchedule {
                name: optin.confirm_schedule_name(),
                at_ms,
                input,
            })
            .await?;
        Ok(())
    }

    /// Creates the deadline check (and, for a login-started generation, its confirm check).
    /// `true` if this call created the deadline check (false: it existed).
    async fn schedule(&self, optin: &Optin, now: i64) -> Result<bool, ProcessError> {
        let (at_ms, check) = deadline_check_time(
            optin.deadline_at_ms,
            now,
            self.config.deadline_margin_ms,
            self.config.min_schedule_lead_ms,
        );
        let input = serde_json::to_string(&DeadlineCheck {
            v: 1,
            optin_key: optin.key(),
            generation: Some(optin.generation),
            check: check.into(),
        })
        .map_err(|e| ProcessError::Retry(e.to_string()))?;
        let created = self
            .scheduler
            .create_schedule(&OneTimeSchedule {
                name: optin.schedule_name.clone(),
                at_ms,
                input,
            })
            .await?;
        if optin.source == OptinSource::Login {
            self.confirm_schedule(optin, now).await?;
        }
        Ok(created == crate::ports::ScheduleCreated::Created)
    }

    async fn send_job(&self, optin: &Optin, now: i64) -> Result<(), ProcessError> {
        self.queue_job(&FirstMessageJob::for_generation(optin, now), 0)
            .await
    }

    async fn queue_job(&self, job: &FirstMessageJob, delay_secs: u32) -> Result<(), ProcessError> {
        let body = serde_json::to_string(job).map_err(|e| ProcessError::Retry(e.to_string()))?;
        let failed = self
            .jobs
            .send_batch(&[OutMessage {
                id: "job".into(),
                body,
                attributes: vec![
                    ("page_id".into(), job.page_id.clone().into()),
                    (
                        "entry_point".into(),
                        funnel::entry_point_of(job.recipient.kind).as_str().into(),
                    ),
                ],
                delay_secs,
            }])
            .await?;
        if let Some(f) = failed.first() {
            return Err(ProcessError::Retry(format!(
                "outbound queue refused the job: {}",
                f.code
            )));
        }
        Ok(())
    }

    // ---- the person's own actions -----------------------------------------------------------

    async fn user_action(
        &self,
        event: &InboundEvent,
        item: Option<&MessagingItem>,
        learnt: &mut Learnt,
    ) -> Result<Processed, ProcessError> {
        let Some(who) = event.sender.as_ref() else {
            return Ok(Processed::Ignored { kind: event.kind });
        };
        if !matches!(who.kind, IdentityKind::Psid | IdentityKind::Igsid) {
            // Chat-plugin guests (user_ref senders) have no window we can use.
            return Ok(Processed::Ignored { kind: event.kind });
        }
        let page = event.account_id.as_str();
        let mut linked = false;
        if let Some(prior) = item.and_then(|i| i.prior_message.as_ref()) {
            if let Some(identifier) = prior.identifier() {
                // The checkbox plugin's source is documented; Login Connect's is not, so any
                // other source is taken as a login_id (and logged, to learn the real value).
                // Only a documented source may create a missing opt-in: an unknown source
                // naming an unknown identifier is no evidence of an obligation.
                let (kind, documented) = match prior.source.as_deref() {
                    Some("checkbox_plugin") | Some("customer_chat_plugin") => {
                        (IdentityKind::UserRef, true)
                    }
                    _ => (IdentityKind::LoginId, false),
                };
                tracing::info!(
                    prior_source = prior.source.as_deref().unwrap_or("(none)"),
                    identifier_kind = kind.as_str(),
                    identifier = %hash_id(identifier),
                    psid = %hash_id(&who.id),
                    "reply with prior_message"
                );
                let identity = Identity::new(kind, identifier);
                let link = Link {
                    page_id: page.to_string(),
                    psid: who.id.clone(),
                    optin_key: optin_key(&identity, page),
                    identifier: identity,
                    at_ms: event.timestamp_ms,
                    create_missing: documented,
                };
                let tag = link.tag();
                // What the opt-in was before this reply: its first reply is a funnel step.
                let before = self.table.optins.get_optin(&link.optin_key).await?;
                if let Some(person) = self.table.people.get_person(page, &who.id).await? {
                    if !person.linked.is_empty() && !person.linked.contains(&tag) {
                        tracing::warn!(
                            psid = %hash_id(&who.id),
                            identifier = %hash_id(identifier),
                            already = person.linked.len(),
                            "person already linked to another identifier; keeping both"
                        );
                    }
                }
                match self.table.people.link(&link, self.clock.now_ms()).await? {
                    LinkResult::Linked => {
                        linked = true;
                        learnt.linked = Some(link.identifier.clone());
                        learnt.first_reply = before
                            .filter(|o| o.psid.is_none() && o.state != OptinState::Declined)
                            .map(|o| FirstReply {
                                entry_point: o.entry_point,
                                page_id: o.page_id.clone(),
                                after_ms: event.timestamp_ms - o.opted_in_at_ms,
                            });
                    }
                    LinkResult::SendInFlight => {
                        return Err(ProcessError::Retry(
                            "first message in flight; link after it settles".into(),
                        ))
                    }
                }
            }
        }
        if let Some(referral) = item
            .and_then(|i| i.postback.as_ref())
            .and_then(|p| p.referral.as_ref())
        {
            let info = referral_info(referral, event.timestamp_ms);
            self.table
                .people
                .record_referral(page, &who.id, &info)
                .await?;
        }
        let recorded = self
            .table
            .people
            .record_user_message(page, &who.id, event.timestamp_ms)
            .await?;
        learnt.person = recorded.person;
        Ok(Processed::UserMessage {
            window_moved: recorded.moved,
            linked,
        })
    }

    async fn referral(
        &self,
        event: &InboundEvent,
        item: Option<&MessagingItem>,
        learnt: &mut Learnt,
    ) -> Result<Processed, ProcessError> {
        let Some(who) = event
            .sender
            .as_ref()
            .filter(|s| matches!(s.kind, IdentityKind::Psid | IdentityKind::Igsid))
        else {
            return Ok(Processed::Ignored { kind: event.kind });
        };
        let Some(referral) = item.and_then(|i| i.referral.as_ref()) else {
            return self.quarantine(event, "referral item does not parse").await;
        };
        let page = event.account_id.as_str();
        let stored = self
            .table
            .people
            .record_referral(page, &who.id, &referral_info(referral, event.timestamp_ms))
            .await?;
        // Following an m.me link or an ad into the thread is the person's own action.
        learnt.person = self
            .table
            .people
            .record_user_message(page, &who.id, event.timestamp_ms)
            .await?
            .person;
        Ok(Processed::Referral { stored })
    }

    // ---- Meta's enforcement -----------------------------------------------------------------

    async fn policy(
        &self,
        event: &InboundEvent,
        item: Option<&MessagingItem>,
    ) -> Result<Processed, ProcessError> {
        let Some(pe) = item.and_then(|i| i.policy_enforcement.as_ref()) else {
            return self.quarantine(event, "policy item does not parse").await;
        };
        let page = event.account_id.as_str();
        match pe.action() {
            Some(PolicyAction::Block) => {
                let reason = format!(
                    "policy_enforcement block: {}",
                    pe.reason.as_deref().unwrap_or("no reason given")
                );
                let applied = self
                    .table
                    .pages
                    .set_paused(page, Some(&reason), event.timestamp_ms)
                    .await?;
                tracing::error!(page, "Meta blocked the page; sending paused");
                Ok(Processed::PagePaused { applied })
            }
            Some(PolicyAction::Unblock) => {
                let applied = self
                    .table
                    .pages
                    .set_paused(page, None, event.timestamp_ms)
                    .await?;
                Ok(Processed::PageUnpaused { applied })
            }
            _ => {
                tracing::warn!(
                    page,
                    reason = pe.reason.as_deref().unwrap_or(""),
                    "Meta policy warning"
                );
                Ok(Processed::PolicyWarning)
            }
        }
    }
}

fn referral_info(r: &crate::webhook::model::Referral, at_ms: i64) -> ReferralInfo {
    ReferralInfo {
        reference: r.reference.clone(),
        source: r.source.clone(),
        ad_id: r.ad_id.as_ref().map(|a| a.as_str().to_string()),
        at_ms,
    }
}

/// When the deadline check fires, and which check it is: `at_risk` at `deadline - margin`
/// (never sooner than `lead` from now), or `final` at the deadline when that is already too
/// close.
pub fn deadline_check_time(
    deadline_ms: i64,
    now_ms: i64,
    margin_ms: i64,
    lead_ms: i64,
) -> (i64, &'static str) {
    let at = (deadline_ms - margin_ms).max(now_ms + lead_ms);
    if at >= deadline_ms {
        (deadline_ms, "final")
    } else {
        (at, "at_risk")
    }
}

/// What the login callback knows of the person besides the `login_id`: carried in the login
/// event's item under `"login"` (only the login function writes [`Channel::Login`] events; a
/// webhook item never reaches the processor on that channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginIdentity {
    /// The Login app the ASID belongs to.
    pub app_id: String,
    /// The app-scoped user id, from Graph's `debug_token` (never from the browser).
    pub asid: String,
    /// The business's own id, already verified against `external_id_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// SQS's longest `DelaySeconds`: a longer wait is the sender's to make again.
const MAX_SQS_DELAY_SECS: u32 = 900;

/// The login identity of a login event (none for webhook events or an item without one).
fn login_identity_of(event: &InboundEvent) -> Option<LoginIdentity> {
    if event.channel != Channel::Login {
        return None;
    }
    let item: serde_json::Value = serde_json::from_str(event.item.get()).ok()?;
    serde_json::from_value(item.get("login")?.clone()).ok()
}

/// `external_id` in a valid signed ref whose payload is a JSON object: the business minted it
/// (with `ref_keys`), so it may vouch for its own user id. Any other payload names none.
fn external_id_in_ref(reference: &RefInfo) -> Option<String> {
    if reference.status != "valid" {
        return None;
    }
    let payload: serde_json::Value = serde_json::from_str(reference.payload.as_deref()?).ok()?;
    Some(payload.get("external_id")?.as_str()?.to_string())
}

/// The index items of a new opt-in: one per identity that is not its key.
fn pointers_for(optin: &Optin, login: Option<&LoginIdentity>, at_ms: i64) -> Vec<IdentityPointer> {
    let pointer = |id| IdentityPointer {
        id,
        optin_key: optin.key(),
        page_id: optin.page_id.clone(),
        at_ms,
    };
    let mut out = Vec::new();
    if let Some(x) = &optin.external_id {
        out.push(pointer(IndexedId::ExternalId(x.clone())));
    }
    if let Some(l) = login {
        out.push(pointer(IndexedId::Asid {
            app_id: l.app_id.clone(),
            asid: l.asid.clone(),
        }));
    }
    out
}

/// Builds the inbound event for a login callback (Option 2): the same shape as the webhook's
/// `messaging_optins` item, so both paths converge on one opt-in.
pub fn login_event(
    page_id: &str,
    login_id: &str,
    at_ms: i64,
    received_at_ms: i64,
) -> Result<InboundEvent, serde_json::Error> {
    login_event_with(page_id, login_id, at_ms, received_at_ms, None)
}

/// [`login_event`] with what the callback knows of the person (ASID, the business's id).
pub fn login_event_with(
    page_id: &str,
    login_id: &str,
    at_ms: i64,
    received_at_ms: i64,
    identity: Option<&LoginIdentity>,
) -> Result<InboundEvent, serde_json::Error> {
    let mut item = serde_json::json!({
        "recipient": {"id": page_id},
        "timestamp": at_ms,
        "optin": {"login_id": login_id}
    });
    if let Some(identity) = identity {
        item["login"] = serde_json::to_value(identity)?;
    }
    let item = item.to_string();
    let raw = RawValue::from_string(item)?;
    let sender = Identity::new(IdentityKind::LoginId, login_id);
    let key = crate::webhook::inbound::idempotency_key(
        EventKind::Optin,
        None,
        "page",
        page_id,
        Some(&sender),
        at_ms,
        raw.get().as_bytes(),
    );
    Ok(InboundEvent {
        v: InboundEvent::SCHEMA_VERSION,
        key,
        object: "page".into(),
        account_id: page_id.into(),
        channel: Channel::Login,
        kind: EventKind::Optin,
        sender: Some(sender),
        timestamp_ms: at_ms,
        received_at_ms,
        item: raw,
        quarantine: None,
        app_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_time_table() {
        let h = 3_600_000;
        let day = 24 * h;
        // (deadline, now) -> (at, check)
        let cases = [
            (day, 0, (day - h, "at_risk")),
            (day, day - 2 * h, (day - h, "at_risk")),
            (day, day - h, (day - h + 60_000, "at_risk")),
            (day, day - 30_000, (day, "final")),
        ];
        for (deadline, now, want) in cases {
            assert_eq!(
                deadline_check_time(deadline, now, h, 60_000),
                want,
                "now={now}"
            );
        }
    }

    #[test]
    fn login_event_looks_like_the_webhook_item() {
        let e = login_event("100", "L1", 5, 6).unwrap();
        let item = MessagingItem::parse(&e.item).unwrap();
        assert_eq!(item.optin.unwrap().login_id(), Some("L1"));
        assert_eq!(e.channel, Channel::Login);
    }
}
