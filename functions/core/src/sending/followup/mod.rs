//! Follow-ups: the business's own messages after the first one (`POST /v1/messages`, and the
//! requests queue for bulk and asynchronous senders), policy-checked before Meta is called and
//! delivered at most once, in order per person.
//!
//! Two entry points over one core:
//!
//! - [`FollowUps::accept`] (the HTTP endpoint): validate, resolve the recipient, ask the policy,
//!   store the request under its idempotency key (`REQUEST#<page>#<key>`, a conditional
//!   create), put it on the FIFO requests queue (group = the person, deduplication id = the
//!   key) and answer with the decision and the `request_id`, or with the refusal.
//! - [`FollowUps::handle_message`] (the requests-queue consumer, for messages the HTTP path
//!   queued and for those a business put there itself): validate, resolve, look the request
//!   up, ask the policy again (time has passed: a window may have closed, the person may have
//!   blocked the Page), claim it with a lease, send it through the Send API, record the
//!   outcome and publish it (`MessageSent`, `MessageRefused`, `MessageFailed`, each with the
//!   `request_id`).
//!
//! Delivery shares the first-message sender's pieces ([`crate::sending::delivery`]): the Page's
//! credentials, pacing from Meta's usage headers, the error taxonomy, pausing a Page. Order per
//! person comes from the FIFO queue: a message waiting out a retry or a paused Page holds the
//! person's later messages back. The one window of the first message remains: if the process
//! dies after Meta accepted a message and before `sent` is recorded (or Meta's answer is lost),
//! the next attempt sends again, at most once per lost answer.

pub mod request;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::bus::{self, BusEvent, DetailType, PersonIds};
use crate::consumer::Fate;
use crate::lifecycle::optin::{optin_key, Optin};
use crate::ports::graph::{MessagingType, Recipient, SendRequest};
use crate::ports::requests::{
    RequestClaim, RequestCreated, RequestFinish, RequestRecord, RequestState,
};
use crate::ports::store::{PageConfig, Person};
use crate::ports::{
    Clock, EventBus, GraphApi, GroupedMessage, Metrics, OutMessage, PortError, QueueSender,
    SecretSource, Table,
};
use crate::sending::delivery::{self, read_failure, route_auth, AuthError, PagePacer};
use crate::sending::errors::{ErrorClass, RequestContext};
use crate::sending::pacing::{Pacer, PacingConfig, Priority};
use crate::sending::policy::{
    decide_followup, Channel, FollowUp, FollowUpDecision, FollowUpRecipient, Refusal, Rule,
};
use crate::sending::route::{send_route, SendRoute};
use crate::sending::sender::{backoff_ms, SenderConfig};
use crate::support::privacy::hash_id;
use crate::webhook::{Identity, IdentityKind};

pub use request::{Author, MessageRequest, RecipientRef};

/// Settings of the follow-up sender. [`FollowUpConfig::from_sender`] takes the first-message
/// sender's (lease, record retries, backoff, pacing, policy, `appsecret_proof`), so both send
/// alike.
#[derive(Debug, Clone)]
pub struct FollowUpConfig {
    pub policy: crate::sending::policy::PolicyConfig,
    /// How long a claim is ours (longer than one attempt can run).
    pub lease_ms: i64,
    pub record_attempts: u32,
    pub record_backoff_ms: i64,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    /// Attempts in all before a retryable failure ends as `MessageFailed`.
    pub max_attempts: u32,
    /// A paused Page's requests are looked at again after this long (they keep their order).
    pub paused_recheck_ms: i64,
    pub pace_threshold_percent: u32,
    pub appsecret_proof: bool,
    /// This process's share of each Page's rate: the first-message sender's settings, so
    /// follow-ups and first messages together stay under Meta's per-Page limit.
    pub pacing: PacingConfig,
}

impl FollowUpConfig {
    pub fn from_sender(s: &SenderConfig) -> FollowUpConfig {
        FollowUpConfig {
            policy: s.policy.clone(),
            lease_ms: s.lease_ms,
            record_attempts: s.record_attempts,
            record_backoff_ms: s.record_backoff_ms,
            backoff_base_ms: s.backoff_base_ms,
            backoff_cap_ms: s.backoff_cap_ms,
            max_attempts: 8,
            paused_recheck_ms: s.paused_recheck_ms,
            pace_threshold_percent: s.pace_threshold_percent,
            appsecret_proof: s.appsecret_proof,
            pacing: s.pacing.clone(),
        }
    }
}

impl Default for FollowUpConfig {
    fn default() -> Self {
        FollowUpConfig::from_sender(&SenderConfig::default())
    }
}

/// The ports the follow-up sender works through.
#[derive(Clone)]
pub struct FollowUpPorts {
    pub table: Table,
    /// The FIFO requests queue (accepted requests go there; record-only messages too).
    pub requests: Arc<dyn QueueSender>,
    pub bus: Arc<dyn EventBus>,
    pub graph: Arc<dyn GraphApi>,
    pub secrets: Arc<dyn SecretSource>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

/// What [`FollowUps::accept`] answered. The HTTP layer maps it to a status.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 202: accepted for delivery (or a retry of a request already known: `duplicate`).
    Accepted(AcceptedView),
    /// 422, or 409 for `page_paused` (retry later).
    Refused {
        request_id: String,
        refusal: Refusal,
    },
    /// 400: the body is not a valid request.
    Invalid(String),
    /// 422: the key names another request.
    KeyReused { request_id: String },
    /// 503: a backend failed; retry with the same key.
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedView {
    pub request_id: String,
    pub state: RequestState,
    pub messaging_type: MessagingType,
    pub tag: Option<String>,
    pub rule: String,
    pub duplicate: bool,
    pub message_id: Option<String>,
}

impl AcceptedView {
    fn of(r: &RequestRecord, duplicate: bool) -> AcceptedView {
        AcceptedView {
            request_id: r.request_id.clone(),
            state: r.state,
            messaging_type: r.messaging_type,
            tag: r.tag.clone(),
            rule: r.rule.clone(),
            duplicate,
            message_id: r.message_id.clone(),
        }
    }
}

/// The `request_id` of a request: `req_` + 32 hex chars of SHA-256 over the Page and the
/// idempotency key, so a retry (HTTP or queue) always carries the same id.
pub fn request_id(page_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"login-connect/request/v1\0");
    h.update(page_id.as_bytes());
    h.update(b"\0");
    h.update(idempotency_key.as_bytes());
    format!("req_{}", hex::encode(&h.finalize()[..16]))
}

/// The FIFO group of a person: a hash, so no PSID or phone number sits in SQS metadata.
fn group_id(page_id: &str, kind: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"login-connect/group/v1\0");
    for part in [page_id, kind, id] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    format!("p_{}", hex::encode(&h.finalize()[..20]))
}

/// The FIFO deduplication id of a request (SQS allows 128 characters; keys may be longer).
fn dedup_id(page_id: &str, idempotency_key: &str, what: &str) -> String {
    format!("{}{what}", request_id(page_id, idempotency_key))
}

/// Who the request reaches, after the lookups.
struct Resolved {
    /// The Page (or Instagram account) of the conversation: the request's key and the window's.
    page_id: String,
    channel: Channel,
    target: Target,
    /// The conversation's config; for Instagram its linked Page's pause is folded in.
    page: Option<PageConfig>,
    person: Option<Person>,
    optin: Option<Optin>,
    /// Whose token sends, to which node, on which API (its sender is the account paced and
    /// paused for this send).
    route: SendRoute,
    recipient: Option<Recipient>,
    group: String,
    delivered_by: Option<String>,
    person_ids: PersonIds,
}

enum Target {
    Scoped(String),
    Unlinked(IdentityKind),
    Phone,
    Unknown(String),
}

impl Resolved {
    fn policy_recipient(&self) -> FollowUpRecipient<'_> {
        match &self.target {
            Target::Scoped(id) => FollowUpRecipient::Scoped(id),
            Target::Unlinked(kind) => FollowUpRecipient::Unlinked(*kind),
            Target::Phone => FollowUpRecipient::PhoneNumber,
            Target::Unknown(why) => FollowUpRecipient::Unknown(why),
        }
    }
}

/// The business's message, once the request is valid.
struct Job {
    req: MessageRequest,
    resolved: Resolved,
    request_id: String,
    fingerprint: String,
}

impl Job {
    /// The request as stored when it is accepted, with the policy's decision.
    fn record(
        &self,
        messaging_type: MessagingType,
        tag: Option<&str>,
        rule: Rule,
        now: i64,
    ) -> RequestRecord {
        RequestRecord {
            page_id: self.resolved.page_id.clone(),
            idempotency_key: self.req.idempotency_key.clone(),
            request_id: self.request_id.clone(),
            fingerprint: self.fingerprint.clone(),
            body: self.req.to_json().to_string(),
            state: RequestState::Accepted,
            messaging_type,
            tag: tag.map(str::to_string),
            rule: rule.as_str().to_string(),
            attempts: 0,
            lease_until_ms: 0,
            created_at_ms: now,
            updated_at_ms: now,
            message_id: None,
            sent_at_ms: None,
            last_error: None,
        }
    }
}

/// A record-only message: Meta accepted the send, but `sent` could not be written at once.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordSent {
    page_id: String,
    idempotency_key: String,
    attempt: u32,
    message_id: Option<String>,
    sent_at_ms: i64,
}

pub struct FollowUps {
    p: FollowUpPorts,
    config: FollowUpConfig,
    pace: PagePacer,
    pacer: Pacer,
}

impl FollowUps {
    pub fn new(ports: FollowUpPorts, config: FollowUpConfig) -> Self {
        FollowUps {
            p: ports,
            pacer: Pacer::new(config.pacing.clone()),
            config,
            pace: PagePacer::default(),
        }
    }

    pub fn config(&self) -> &FollowUpConfig {
        &self.config
    }

    // ---- HTTP ---------------------------------------------------------------------------------

    /// `POST /v1/messages`: decides now and queues what may go.
    pub async fn accept(&self, body: &[u8]) -> Answer {
        let req = match MessageRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return Answer::Invalid(e),
        };
        match self.try_accept(req).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "follow-up not accepted: backend unavailable");
                Answer::Unavailable(e.to_string())
            }
        }
    }

    async fn try_accept(&self, req: MessageRequest) -> Result<Answer, PortError> {
        let job = self.job(req).await?;
        let now = self.p.clock.now_ms();
        let page = job.resolved.page_id.clone();
        let key = job.req.idempotency_key.clone();
        if let Some(existing) = self.p.table.requests.get_request(&page, &key).await? {
            return self.known(&job, existing).await;
        }
        let (messaging_type, tag, rule) = match self.decide(&job, now) {
            FollowUpDecision::Send {
                rule,
                messaging_type,
                tag,
            } => (messaging_type, tag, rule),
            FollowUpDecision::Refuse(refusal) => {
                self.log_refusal(&job, &refusal);
                // The caller hears it in the answer; the bus hears it too, best effort (nothing
                // was stored that a retry would need).
                let event = self.refused_event(&job, &refusal, now);
                if let Err(e) = bus::publish_all(self.p.bus.as_ref(), &[event]).await {
                    tracing::warn!(error = %e, "MessageRefused not published");
                }
                return Ok(Answer::Refused {
                    request_id: job.request_id,
                    refusal,
                });
            }
        };
        let record = job.record(messaging_type, tag, rule, now);
        match self.p.table.requests.create_request(&record).await? {
            RequestCreated::Created => {}
            // A concurrent copy of the same request won the create: answer as it did.
            RequestCreated::Exists(existing) => return self.known(&job, *existing).await,
        }
        self.enqueue(&job, &record.body).await?;
        tracing::info!(
            request_id = %job.request_id,
            page = %page,
            recipient = %hash_id(job.req.recipient.value()),
            messaging_type = messaging_type.as_str(),
            rule = rule.as_str(),
            "follow-up accepted"
        );
        Ok(Answer::Accepted(AcceptedView::of(&record, false)))
    }

    /// A request already stored under this key: the same answer again (queued again while it
    /// is still to be sent, in case the first enqueue was lost), or a refusal of a key reused
    /// for another request.
    async fn known(&self, job: &Job, existing: RequestRecord) -> Result<Answer, PortError> {
        if existing.fingerprint != job.fingerprint {
            return Ok(Answer::KeyReused {
                request_id: existing.request_id,
            });
        }
        if existing.state == RequestState::Accepted {
            // Harmless when it is queued already: the queue drops the copy within 5 minutes and
            // the claim after that.
            self.enqueue(job, &existing.body).await?;
        }
        Ok(Answer::Accepted(AcceptedView::of(&existing, true)))
    }

    async fn enqueue(&self, job: &Job, body: &str) -> Result<(), PortError> {
        let page = &job.resolved.page_id;
        let message = GroupedMessage {
            message: OutMessage {
                id: "request".into(),
                body: body.to_string(),
                attributes: vec![("page_id".into(), page.clone().into())],
                delay_secs: 0,
            },
            group_id: job.resolved.group.clone(),
            dedup_id: dedup_id(page, &job.req.idempotency_key, ""),
        };
        let failed = self.p.requests.send_grouped(&[message]).await?;
        match failed.first() {
            None => Ok(()),
            Some(f) => Err(PortError::Unavailable(format!(
                "requests queue refused the request ({})",
                f.code
            ))),
        }
    }

    // ---- The requests queue -------------------------------------------------------------------

    /// The requests-queue consumer's per-message function: one request (or record-only
    /// message) in, its fate out. Lambda's FIFO batch wrapper and the local poller call it.
    pub async fn handle_message(&self, body: &str) -> Fate {
        if let Ok(record) = serde_json::from_str::<RecordOnly>(body) {
            return self.record_only(record.record_sent).await;
        }
        let req = match MessageRequest::parse(body.as_bytes()) {
            Ok(r) => r,
            Err(e) => return self.invalid_on_queue(body, e).await,
        };
        match self.deliver(req).await {
            Ok(fate) => fate,
            Err(e) => Fate::retry(format!("backend: {e}")),
        }
    }

    /// A queued body that is not a valid request: the business hears why when it named the
    /// request (Page and key); otherwise it waits for the redrive to the dead-letter queue.
    async fn invalid_on_queue(&self, body: &str, error: String) -> Fate {
        let raw: Option<Value> = serde_json::from_str(body).ok();
        let field = |k: &str| {
            raw.as_ref().and_then(|v| v.get(k)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let (Some(page), Some(key)) = (field("page_id"), field("idempotency_key")) else {
            tracing::error!(error = %error, "requests queue: not a request, and no key to answer");
            return Fate::DeadLetter {
                reason: format!("not a follow-up request: {error}"),
            };
        };
        let request_id = request_id(&page, &key);
        let now = self.p.clock.now_ms();
        let event = BusEvent::new(
            DetailType::MessageRefused,
            &format!("{request_id}:invalid"),
            now,
            "messenger",
            &page,
            PersonIds::default(),
            json!({
                "request_id": request_id,
                "idempotency_key": key,
                "rule": "invalid_request",
                "reason": error,
            }),
        );
        match bus::publish_all(self.p.bus.as_ref(), &[event]).await {
            Ok(()) => Fate::Ack,
            Err(e) => Fate::retry(format!("MessageRefused not published: {e}")),
        }
    }

    async fn deliver(&self, req: MessageRequest) -> Result<Fate, PortError> {
        let job = self.job(req).await?;
        let page = job.resolved.page_id.clone();
        let key = job.req.idempotency_key.clone();
        let now = self.p.clock.now_ms();
        let stored = self.p.table.requests.get_request(&page, &key).await?;
        if let Some(r) = &stored {
            if r.fingerprint != job.fingerprint {
                return self.key_reused_on_queue(&job, r, now).await;
            }
            if let Some(fate) = self.settled_or_busy(&job, r, now).await? {
                return Ok(fate);
            }
        }
        let decision = self.decide(&job, now);
        let (messaging_type, tag, rule) = match decision {
            FollowUpDecision::Send {
                rule,
                messaging_type,
                tag,
            } => (messaging_type, tag, rule),
            FollowUpDecision::Refuse(refusal) if refusal.rule == Rule::PagePaused => {
                // Not final: the request keeps its place (and the person's later messages wait
                // behind it) until the Page is resumed or the redrive gives up.
                return Ok(Fate::retry_after_ms(
                    self.config.paused_recheck_ms,
                    refusal.reason,
                ));
            }
            FollowUpDecision::Refuse(refusal) => {
                return self
                    .refuse_on_queue(&job, stored.as_ref(), refusal, now)
                    .await;
            }
        };
        if stored.is_none() {
            // A request the business queued itself: store it, as the HTTP path does.
            let record = job.record(messaging_type, tag, rule, now);
            if let RequestCreated::Exists(r) = self.p.table.requests.create_request(&record).await?
            {
                if let Some(fate) = self.settled_or_busy(&job, &r, now).await? {
                    return Ok(fate);
                }
            }
        }
        if let Some(delay) = self.pace.paced(job.resolved.route.sender_id(), now) {
            return Ok(Fate::retry_after_ms(
                delay,
                "pacing the page (Meta usage above threshold)",
            ));
        }
        // Follow-ups never take the reserve kept for first messages near their deadline.
        if let Err(wait_ms) =
            self.pacer
                .admit(job.resolved.route.sender_id(), Priority::Normal, now)
        {
            return Ok(Fate::retry_after_ms(
                wait_ms,
                "pacing the page (this instance's share of Meta's per-Page rate)",
            ));
        }
        let lease_until = now.saturating_add(self.config.lease_ms);
        let claimed = match self
            .p
            .table
            .requests
            .claim_request(&page, &key, now, lease_until)
            .await?
        {
            RequestClaim::Claimed(r) => *r,
            RequestClaim::NotClaimable(r) => {
                return Ok(self
                    .settled_or_busy(&job, &r, now)
                    .await?
                    .unwrap_or_else(|| Fate::retry("request not claimable")));
            }
            RequestClaim::Missing => return Ok(Fate::retry("request vanished before its claim")),
        };
        let attempt = claimed.attempts;
        let auth = match route_auth(
            self.p.secrets.as_ref(),
            &job.resolved.route,
            job.resolved.delivered_by.as_deref(),
            self.config.appsecret_proof,
        )
        .await
        {
            Ok(a) => a,
            Err(AuthError::Unavailable(reason)) => {
                self.release(&job, attempt, &reason).await?;
                return Ok(Fate::retry_after_ms(self.backoff(&job, attempt), reason));
            }
            Err(AuthError::Missing(reason)) => {
                self.release(&job, attempt, &reason).await?;
                self.pause(job.resolved.route.sender_id(), &reason, now)
                    .await?;
                return Ok(Fate::retry_after_ms(self.config.paused_recheck_ms, reason));
            }
        };
        let Some(recipient) = job.resolved.recipient.clone() else {
            // Only a scoped or phone recipient is ever allowed; unreachable by the policy.
            self.release(&job, attempt, "no Send API recipient").await?;
            return Ok(Fate::DeadLetter {
                reason: "allowed without a Send API recipient".into(),
            });
        };
        let send = SendRequest {
            api: job.resolved.route.api(),
            page_id: job.resolved.route.node().to_string(),
            recipient,
            messaging_type,
            tag: tag.map(str::to_string),
            message: job.req.message.clone(),
        };
        let result = self.p.graph.send(&auth, &send).await;
        let after = self.p.clock.now_ms();
        match result {
            Ok(ok) => {
                self.pace.learn(
                    job.resolved.route.sender_id(),
                    ok.usage.pace(self.config.pace_threshold_percent),
                    after,
                );
                // Meta said yes: from here nothing may lead to a second send of this request.
                self.record_sent(&job, attempt, Some(ok.message_id.clone()), after)
                    .await?;
                tracing::info!(
                    request_id = %job.request_id,
                    page = %page,
                    recipient = %hash_id(job.req.recipient.value()),
                    messaging_type = messaging_type.as_str(),
                    attempt,
                    "follow-up sent"
                );
                let event = self.sent_event(
                    &job,
                    Some(&ok.message_id),
                    messaging_type,
                    tag,
                    attempt,
                    after,
                );
                bus::publish_all(self.p.bus.as_ref(), &[event]).await?;
                Ok(Fate::Ack)
            }
            Err(err) => {
                let context = RequestContext { tag };
                let f = read_failure(
                    &err,
                    &context,
                    self.config.pace_threshold_percent,
                    self.p.metrics.as_ref(),
                );
                self.pace
                    .learn(job.resolved.route.sender_id(), f.pace, after);
                tracing::warn!(
                    request_id = %job.request_id,
                    class = f.class.as_str(),
                    rule = f.rule,
                    attempt,
                    "follow-up send failed"
                );
                self.failed(&job, attempt, f, after).await
            }
        }
    }

    /// What a stored request says before anything else is tried: final (say its outcome
    /// again, same event ids, and let the message go) or held by a live claim (look again when
    /// the lease ends). `None`: it may be attempted.
    async fn settled_or_busy(
        &self,
        job: &Job,
        r: &RequestRecord,
        now: i64,
    ) -> Result<Option<Fate>, PortError> {
        if r.state.is_final() {
            let events = self.republished(job, r);
            bus::publish_all(self.p.bus.as_ref(), &events).await?;
            return Ok(Some(Fate::Ack));
        }
        if r.state == RequestState::Sending && r.lease_until_ms > now {
            return Ok(Some(Fate::retry_after_ms(
                (r.lease_until_ms - now).max(1_000),
                "another attempt holds the claim",
            )));
        }
        Ok(None)
    }

    async fn key_reused_on_queue(
        &self,
        job: &Job,
        r: &RequestRecord,
        now: i64,
    ) -> Result<Fate, PortError> {
        let event = BusEvent::new(
            DetailType::MessageRefused,
            &format!("{}:reused:{}", r.request_id, job.fingerprint),
            now,
            job.resolved.channel.as_str(),
            &job.resolved.page_id,
            job.resolved.person_ids.clone(),
            json!({
                "request_id": r.request_id,
                "idempotency_key": job.req.idempotency_key,
                "rule": "idempotency_key_reused",
                "reason": "this idempotency key already names another request",
            }),
        );
        bus::publish_all(self.p.bus.as_ref(), &[event]).await?;
        Ok(Fate::Ack)
    }

    /// A final refusal at send time: the stored request (if any) is closed as refused, then
    /// the business hears it.
    async fn refuse_on_queue(
        &self,
        job: &Job,
        stored: Option<&RequestRecord>,
        refusal: Refusal,
        now: i64,
    ) -> Result<Fate, PortError> {
        self.log_refusal(job, &refusal);
        if stored.is_some() {
            let page = &job.resolved.page_id;
            let key = &job.req.idempotency_key;
            let lease = now.saturating_add(self.config.lease_ms);
            match self
                .p
                .table
                .requests
                .claim_request(page, key, now, lease)
                .await?
            {
                RequestClaim::Claimed(r) => {
                    let finish = RequestFinish::Refused {
                        reason: format!("{}: {}", refusal.rule.as_str(), refusal.reason),
                    };
                    self.p
                        .table
                        .requests
                        .finish_request(page, key, r.attempts, &finish, now)
                        .await?;
                }
                RequestClaim::NotClaimable(r) => {
                    if let Some(fate) = self.settled_or_busy(job, &r, now).await? {
                        return Ok(fate);
                    }
                }
                RequestClaim::Missing => {}
            }
        }
        let event = self.refused_event(job, &refusal, now);
        bus::publish_all(self.p.bus.as_ref(), &[event]).await?;
        Ok(Fate::Ack)
    }

    async fn failed(
        &self,
        job: &Job,
        attempt: u32,
        f: delivery::SendFailure,
        now: i64,
    ) -> Result<Fate, PortError> {
        let reason = format!("{}: {}", f.rule, f.detail);
        match f.class {
            ErrorClass::Retry => {
                let bound = f.max_attempts.unwrap_or(self.config.max_attempts);
                if attempt < bound {
                    self.release(job, attempt, &f.detail).await?;
                    let wait = self
                        .backoff(job, attempt)
                        .max(f.wait_hint_ms.unwrap_or(0))
                        .max(f.pace.map_or(0, |d| d.as_millis() as i64));
                    return Ok(Fate::retry_after_ms(wait, f.detail));
                }
                let reason = format!("{reason} (gave up after {attempt} attempts)");
                self.close_failed(job, attempt, f.class, f.rule, reason, now)
                    .await
            }
            ErrorClass::OperatorAction => {
                self.release(job, attempt, &f.detail).await?;
                self.pause(job.resolved.route.sender_id(), &reason, now)
                    .await?;
                Ok(Fate::retry_after_ms(self.config.paused_recheck_ms, reason))
            }
            ErrorClass::RecipientUnreachable => {
                if let Target::Scoped(psid) = &job.resolved.target {
                    self.p
                        .table
                        .people
                        .opt_out(&job.resolved.page_id, psid, f.rule, now)
                        .await?;
                }
                self.close_failed(job, attempt, f.class, f.rule, reason, now)
                    .await
            }
            ErrorClass::WindowClosed
            | ErrorClass::UnknownRecipient
            | ErrorClass::Undeliverable
            | ErrorClass::BadRequest => {
                self.close_failed(job, attempt, f.class, f.rule, reason, now)
                    .await
            }
        }
    }

    async fn close_failed(
        &self,
        job: &Job,
        attempt: u32,
        class: ErrorClass,
        rule: &str,
        reason: String,
        now: i64,
    ) -> Result<Fate, PortError> {
        let error = format!("{}: {reason}", class.as_str());
        self.p
            .table
            .requests
            .finish_request(
                &job.resolved.page_id,
                &job.req.idempotency_key,
                attempt,
                &RequestFinish::Failed { error },
                now,
            )
            .await?;
        let mut events = vec![self.failed_event(job, class.as_str(), rule, &reason, attempt, now)];
        if class == ErrorClass::RecipientUnreachable {
            events.push(BusEvent::new(
                DetailType::PersonOptedOut,
                &format!("{}:opted_out", job.request_id),
                now,
                job.resolved.channel.as_str(),
                &job.resolved.page_id,
                job.resolved.person_ids.clone(),
                json!({"reason": rule, "by": "meta"}),
            ));
        }
        bus::publish_all(self.p.bus.as_ref(), &events).await?;
        Ok(Fate::Ack)
    }

    /// Writes `sent`, retrying within the lease; when the table stays unavailable the outcome
    /// goes on the requests queue as a record-only message, so no redelivery calls Graph again.
    async fn record_sent(
        &self,
        job: &Job,
        attempt: u32,
        message_id: Option<String>,
        sent_at_ms: i64,
    ) -> Result<(), PortError> {
        let page = &job.resolved.page_id;
        let key = &job.req.idempotency_key;
        let finish = RequestFinish::Sent {
            message_id: message_id.clone(),
            sent_at_ms,
        };
        let written = delivery::retry_record(
            self.config.record_attempts,
            self.config.record_backoff_ms,
            "follow-up sent",
            || {
                self.p.table.requests.finish_request(
                    page,
                    key,
                    attempt,
                    &finish,
                    self.p.clock.now_ms(),
                )
            },
        )
        .await;
        let last_error = match written {
            Ok(true) => return Ok(()),
            Ok(false) => {
                // Our lease lapsed mid-send and another attempt took over: the message went
                // out, say so loudly; the other attempt records or resends.
                tracing::error!(request_id = %job.request_id, attempt, "follow-up sent after losing the claim");
                return Ok(());
            }
            Err(e) => e,
        };
        let body = serde_json::to_string(&RecordOnly {
            record_sent: RecordSent {
                page_id: page.clone(),
                idempotency_key: key.clone(),
                attempt,
                message_id,
                sent_at_ms,
            },
        })
        .map_err(|e| PortError::Rejected(e.to_string()))?;
        let queued = self
            .p
            .requests
            .send_grouped(&[GroupedMessage {
                message: OutMessage {
                    id: "record".into(),
                    body,
                    attributes: vec![("page_id".into(), page.clone().into())],
                    delay_secs: 0,
                },
                group_id: job.resolved.group.clone(),
                dedup_id: dedup_id(page, key, ":record"),
            }])
            .await;
        match queued {
            Ok(failed) if failed.is_empty() => {
                tracing::warn!(request_id = %job.request_id, "sent recorded later by a record-only message");
                Ok(())
            }
            _ => {
                tracing::error!(request_id = %job.request_id, "follow-up sent but its record could not be kept anywhere");
                Err(last_error)
            }
        }
    }

    /// A record-only message: write the `sent` an earlier attempt could not, never call Graph.
    async fn record_only(&self, r: RecordSent) -> Fate {
        let now = self.p.clock.now_ms();
        let finish = RequestFinish::Sent {
            message_id: r.message_id.clone(),
            sent_at_ms: r.sent_at_ms,
        };
        match self
            .p
            .table
            .requests
            .finish_request(&r.page_id, &r.idempotency_key, r.attempt, &finish, now)
            .await
        {
            Ok(applied) => {
                if !applied {
                    tracing::error!(
                        request_id = %request_id(&r.page_id, &r.idempotency_key),
                        "record-only message found the attempt superseded"
                    );
                }
                Fate::Ack
            }
            Err(e) => Fate::retry(format!("backend: {e}")),
        }
    }

    async fn release(&self, job: &Job, attempt: u32, error: &str) -> Result<bool, PortError> {
        self.p
            .table
            .requests
            .finish_request(
                &job.resolved.page_id,
                &job.req.idempotency_key,
                attempt,
                &RequestFinish::Release {
                    error: error.to_string(),
                },
                self.p.clock.now_ms(),
            )
            .await
    }

    async fn pause(&self, page_id: &str, reason: &str, now: i64) -> Result<(), PortError> {
        delivery::pause_page(
            &self.p.table,
            self.p.bus.as_ref(),
            self.p.metrics.as_ref(),
            page_id,
            reason,
            "followup",
            now,
        )
        .await
    }

    fn backoff(&self, job: &Job, attempt: u32) -> i64 {
        backoff_ms(
            attempt,
            self.config.backoff_base_ms,
            self.config.backoff_cap_ms,
            &job.request_id,
        )
    }

    // ---- Shared ---------------------------------------------------------------------------------

    fn decide(&self, job: &Job, now: i64) -> FollowUpDecision {
        let r = &job.resolved;
        decide_followup(
            &FollowUp {
                now_ms: now,
                page_id: &r.page_id,
                channel: r.channel,
                recipient: r.policy_recipient(),
                intent: job.req.intent,
                human_author: job.req.human_author(),
                tag: job.req.tag.as_deref(),
                text_chars: job.req.text_chars(),
                page: r.page.as_ref(),
                person: r.person.as_ref(),
                optin: r.optin.as_ref(),
            },
            &self.config.policy,
        )
    }

    fn log_refusal(&self, job: &Job, refusal: &Refusal) {
        tracing::info!(
            request_id = %job.request_id,
            page = %job.resolved.page_id,
            recipient = %hash_id(job.req.recipient.value()),
            rule = refusal.rule.as_str(),
            "follow-up refused"
        );
    }

    async fn job(&self, req: MessageRequest) -> Result<Job, PortError> {
        let resolved = self.resolve(&req).await?;
        Ok(Job {
            request_id: request_id(&resolved.page_id, &req.idempotency_key),
            fingerprint: req.fingerprint(),
            req,
            resolved,
        })
    }

    /// Finds the person (and the Page settings) the request is about.
    async fn resolve(&self, req: &MessageRequest) -> Result<Resolved, PortError> {
        let table = &self.p.table;
        let given_page = req.page_id.clone().unwrap_or_default();
        let unknown = |page_id: String, why: String| Resolved {
            page_id,
            channel: Channel::Messenger,
            target: Target::Unknown(why),
            page: None,
            person: None,
            optin: None,
            route: SendRoute::Page {
                page_id: String::new(),
                node: String::new(),
            },
            recipient: None,
            group: String::new(),
            delivered_by: None,
            person_ids: PersonIds::default(),
        };
        let (page_id, channel, target, optin) = match &req.recipient {
            RecipientRef::Psid(id) => (
                given_page,
                Channel::Messenger,
                Target::Scoped(id.clone()),
                None,
            ),
            RecipientRef::Igsid(id) => (
                given_page,
                Channel::Instagram,
                Target::Scoped(id.clone()),
                None,
            ),
            RecipientRef::PhoneNumber { .. } => {
                (given_page, Channel::Messenger, Target::Phone, None)
            }
            RecipientRef::ExternalId(_) => {
                return Ok(unknown(
                    given_page,
                    "an external_id is resolved through the identity link between the \
                     business's ids and people, which this deployment does not keep yet; \
                     address the person by psid, igsid, login_id, user_ref or phone_number"
                        .into(),
                ))
            }
            RecipientRef::LoginId(id) | RecipientRef::UserRef(id) => {
                let kind = if matches!(req.recipient, RecipientRef::LoginId(_)) {
                    IdentityKind::LoginId
                } else {
                    IdentityKind::UserRef
                };
                let identity = Identity::new(kind, id.clone());
                let Some(optin) = table.optins.get_optin(&optin_key(&identity, "")).await? else {
                    return Ok(unknown(
                        given_page,
                        format!("no opt-in is known for this {}", kind.as_str()),
                    ));
                };
                if req.page_id.as_ref().is_some_and(|p| *p != optin.page_id) {
                    return Ok(unknown(
                        given_page,
                        format!(
                            "this {} opted in on another page than {}",
                            kind.as_str(),
                            req.page_id.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                let target = match &optin.psid {
                    Some(psid) => Target::Scoped(psid.clone()),
                    None => Target::Unlinked(kind),
                };
                (
                    optin.page_id.clone(),
                    Channel::Messenger,
                    target,
                    Some(optin),
                )
            }
        };
        let mut page = table.pages.get_page(&page_id).await?;
        let person = match &target {
            Target::Scoped(id) => table.people.get_person(&page_id, id).await?,
            _ => None,
        };
        // Which way it leaves (Page token, or Instagram Login for an account configured so):
        // plain domain logic in `route`, tested there.
        let route = send_route(channel, &page_id, page.as_ref());
        // Instagram through the Page token: the linked Page's pause holds its Instagram
        // messages too. Through Instagram Login the Page's token is not used, so only the
        // account's own pause applies.
        if let SendRoute::Page {
            page_id: linked, ..
        } = &route
        {
            if channel == Channel::Instagram && *linked != page_id {
                if let Some(lp) = table.pages.get_page(linked).await? {
                    if lp.paused {
                        let mut merged = page.clone().unwrap_or_else(|| PageConfig {
                            page_id: page_id.clone(),
                            ..PageConfig::default()
                        });
                        merged.paused = true;
                        merged.paused_reason = lp.paused_reason.clone();
                        page = Some(merged);
                    }
                }
            }
        }
        let mut person_ids = PersonIds::default().with_person(person.as_ref());
        let (recipient, group) = match (&target, &req.recipient) {
            (Target::Scoped(id), _) => {
                let kind = if channel == Channel::Instagram {
                    IdentityKind::Igsid
                } else {
                    IdentityKind::Psid
                };
                person_ids.set(&Identity::new(kind, id.clone()));
                (
                    Some(Recipient::Id(id.clone())),
                    group_id(&page_id, kind.as_str(), id),
                )
            }
            (Target::Phone, RecipientRef::PhoneNumber { number, name }) => (
                Some(Recipient::PhoneNumber {
                    number: number.clone(),
                    name: name.clone(),
                }),
                group_id(&page_id, "phone_number", number),
            ),
            (_, r) => (None, group_id(&page_id, r.kind(), r.value())),
        };
        if let Some(o) = &optin {
            person_ids.set(&o.recipient);
        }
        Ok(Resolved {
            delivered_by: optin.as_ref().and_then(|o| o.app_id.clone()),
            page_id,
            channel,
            target,
            page,
            person,
            optin,
            route,
            recipient,
            group,
            person_ids,
        })
    }

    // ---- Events ---------------------------------------------------------------------------------

    fn event(&self, job: &Job, t: DetailType, what: &str, at: i64, payload: Value) -> BusEvent {
        BusEvent::new(
            t,
            &format!("{}:{what}", job.request_id),
            at,
            job.resolved.channel.as_str(),
            &job.resolved.page_id,
            job.resolved.person_ids.clone(),
            payload,
        )
    }

    fn sent_event(
        &self,
        job: &Job,
        message_id: Option<&str>,
        messaging_type: MessagingType,
        tag: Option<&str>,
        attempts: u32,
        at: i64,
    ) -> BusEvent {
        self.event(
            job,
            DetailType::MessageSent,
            "sent",
            at,
            json!({
                "request_id": job.request_id,
                "idempotency_key": job.req.idempotency_key,
                "intent": job.req.intent.as_str(),
                "messaging_type": messaging_type.as_str(),
                "tag": tag,
                "message_id": message_id,
                "attempts": attempts,
            }),
        )
    }

    fn refused_event(&self, job: &Job, refusal: &Refusal, at: i64) -> BusEvent {
        self.refused_event_of(
            job,
            refusal.rule.as_str(),
            &refusal.reason,
            refusal.window_closed_at_ms,
            refusal.human_agent_until_ms,
            at,
        )
    }

    fn refused_event_of(
        &self,
        job: &Job,
        rule: &str,
        reason: &str,
        window_closed_at_ms: Option<i64>,
        human_agent_until_ms: Option<i64>,
        at: i64,
    ) -> BusEvent {
        self.event(
            job,
            DetailType::MessageRefused,
            &format!("refused:{rule}"),
            at,
            json!({
                "request_id": job.request_id,
                "idempotency_key": job.req.idempotency_key,
                "intent": job.req.intent.as_str(),
                "rule": rule,
                "reason": reason,
                "window_closed_at_ms": window_closed_at_ms,
                "human_agent_until_ms": human_agent_until_ms,
            }),
        )
    }

    fn failed_event(
        &self,
        job: &Job,
        class: &str,
        rule: &str,
        reason: &str,
        attempts: u32,
        at: i64,
    ) -> BusEvent {
        self.event(
            job,
            DetailType::MessageFailed,
            "failed",
            at,
            json!({
                "request_id": job.request_id,
                "idempotency_key": job.req.idempotency_key,
                "intent": job.req.intent.as_str(),
                "class": class,
                "rule": rule,
                "reason": reason,
                "attempts": attempts,
            }),
        )
    }

    /// The outcome of a final request, again (same ids: a redelivery after a refused publish).
    fn republished(&self, job: &Job, r: &RequestRecord) -> Vec<BusEvent> {
        let at = r.updated_at_ms;
        let error = r.last_error.as_deref().unwrap_or_default();
        let (head, rest) = error.split_once(": ").unwrap_or((error, ""));
        match r.state {
            RequestState::Sent => vec![self.sent_event(
                job,
                r.message_id.as_deref(),
                r.messaging_type,
                r.tag.as_deref(),
                r.attempts,
                r.sent_at_ms.unwrap_or(at),
            )],
            RequestState::Failed => {
                let (rule, reason) = rest.split_once(": ").unwrap_or((rest, ""));
                vec![self.failed_event(job, head, rule, reason, r.attempts, at)]
            }
            RequestState::Refused => {
                vec![self.refused_event_of(job, head, rest, None, None, at)]
            }
            _ => Vec::new(),
        }
    }
}

/// The body of a record-only message on the requests queue.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordOnly {
    record_sent: RecordSent,
}
