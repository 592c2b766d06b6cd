//! The table in memory: opt-ins, people, marketing tokens, page configs and quarantined events,
//! with the same conditional semantics as the DynamoDB adapter (`lc_adapters::dynamodb`).
//!
//! Every trait method takes the one lock, checks its condition and applies its change, so each
//! call is atomic exactly like the single conditional request it stands for. Like a request, it
//! also yields to the scheduler before it takes the lock and after it releases it (see
//! [`MemoryStore::request`]), so a caller's read-then-write really interleaves with other tasks
//! in tests instead of running to completion unobserved. Calls are counted
//! in a [`RequestCounter`] as service `dynamodb` under the operation the DynamoDB adapter uses
//! for them (`PutItem`, `GetItem`, `UpdateItem`, `TransactWriteItems`, `Query`, `DeleteItem`),
//! so the local runner and the tests measure requests per opt-in without AWS.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::lifecycle::optin::{Optin, OptinSource, OptinState};
use crate::ports::identity::{
    DeletionReceipt, IdentityPointer, IndexedId, OptinIdentity, MAX_POINTERS,
};
use crate::ports::requests::RequestRecord;
use crate::ports::store::{
    Claim, Created, Finish, Link, LinkPlan, LinkResult, MarketingToken, PageConfig, Person,
    QuarantinedRecord, ReferralInfo, Reopened, Unsent, UserMessage,
};
use crate::ports::{
    IdentityStore, OptinStore, PageStore, PersonStore, PortError, QuarantineStore, RequestCounter,
};
use crate::webhook::IdentityKind;

const SERVICE: &str = "dynamodb";

#[derive(Debug, Default)]
pub(super) struct Tables {
    optins: HashMap<String, Optin>,
    /// `(page_id, psid)`.
    people: HashMap<(String, String), Person>,
    /// `(page_id, psid, topic)`: ordered like the `TOKEN#<topic>` sort keys.
    tokens: BTreeMap<(String, String, String), MarketingToken>,
    pages: HashMap<String, PageConfig>,
    /// By id, which sorts by receipt time.
    quarantine: BTreeMap<String, QuarantinedRecord>,
    /// `(partition, opt-in key)`: ordered like the pointers' sort keys.
    pointers: BTreeMap<(String, String), IdentityPointer>,
    /// Data-deletion receipts by confirmation code.
    receipts: HashMap<String, DeletionReceipt>,
    /// Follow-up requests by `(page_id, idempotency_key)` (`memory::requests`).
    pub(super) requests: HashMap<(String, String), RequestRecord>,
}

/// An opt-in operation a test can make fail with [`MemoryStore::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    GetOptin,
    Claim,
    Finish,
    Expire,
}

/// The in-memory table. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    counter: Arc<RequestCounter>,
    /// Injected failures: the next `n` calls of an operation answer `Unavailable`.
    failures: Mutex<HashMap<StoreOp, u32>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty table with its own request counter.
    pub fn new() -> Self {
        Self::with_counter(Arc::new(RequestCounter::new()))
    }

    /// Room for `n` more opt-ins at once: a run that knows how many are coming (`load`) grows
    /// the table once, not by doubling under the lock that every request takes.
    pub fn reserve_optins(&self, n: usize) {
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .optins
            .reserve(n);
    }

    /// An empty table counting into a shared counter (with the queues and the scheduler).
    pub fn with_counter(counter: Arc<RequestCounter>) -> Self {
        MemoryStore {
            tables: Mutex::new(Tables::default()),
            counter,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the next `n` calls of `op` fail with [`PortError::Unavailable`] (a throttled or
    /// unreachable table), without touching the data; `n` = 0 clears it. Calls add up.
    pub fn fail_next(&self, op: StoreOp, n: u32) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if n == 0 {
            f.remove(&op);
        } else {
            *f.entry(op).or_insert(0) += n;
        }
    }

    /// Injected failures of `op` not used yet.
    pub fn pending_failures(&self, op: StoreOp) -> u32 {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.get(&op).copied().unwrap_or(0)
    }

    /// Uses up one injected failure of `op`, if any: the request is counted and fails as a
    /// whole, like a throttled or unreachable DynamoDB.
    async fn injected(&self, op: StoreOp, operation: &str) -> Result<(), PortError> {
        let fail = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            match f.get_mut(&op) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if !fail {
            return Ok(());
        }
        self.count(operation);
        tokio::task::yield_now().await;
        Err(PortError::Unavailable(format!(
            "injected: {op:?} ({operation}) unavailable"
        )))
    }

    pub fn counter(&self) -> &Arc<RequestCounter> {
        &self.counter
    }

    /// `dynamodb.<Operation>` -> requests so far (the whole shared counter's snapshot).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counter.snapshot()
    }

    /// Stores a page config as an operator would in the console (replaces it; not counted).
    pub fn put_page(&self, page: PageConfig) {
        self.lock().pages.insert(page.page_id.clone(), page);
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn count(&self, operation: &str) {
        self.counter.incr(SERVICE, operation);
    }

    /// One request to the table: counted as `operation`, then `apply` runs under the lock, with
    /// a yield to the scheduler before the lock is taken and after it is released. The change
    /// itself stays atomic (one request), but whatever the caller does between two requests can
    /// be interleaved with other tasks, as it would be over the network.
    pub(super) async fn request<R>(
        &self,
        operation: &str,
        apply: impl FnOnce(&mut Tables) -> R,
    ) -> R {
        self.count(operation);
        tokio::task::yield_now().await;
        let r = apply(&mut self.lock());
        tokio::task::yield_now().await;
        r
    }
}

fn person_key(page_id: &str, psid: &str) -> (String, String) {
    (page_id.to_string(), psid.to_string())
}

fn new_person(page_id: &str, psid: &str) -> Person {
    Person {
        page_id: page_id.to_string(),
        psid: psid.to_string(),
        ..Person::default()
    }
}

#[async_trait]
impl OptinStore for MemoryStore {
    async fn create_optin(&self, optin: &Optin) -> Result<Created, PortError> {
        self.request("PutItem", |t| {
            let key = optin.key();
            if let Some(existing) = t.optins.get(&key) {
                return Ok(Created::Exists(Box::new(existing.clone())));
            }
            t.optins.insert(key, optin.clone());
            Ok(Created::Created)
        })
        .await
    }

    async fn get_optin(&self, key: &str) -> Result<Option<Optin>, PortError> {
        self.injected(StoreOp::GetOptin, "GetItem").await?;
        self.request("GetItem", |t| Ok(t.optins.get(key).cloned()))
            .await
    }

    async fn mark_job_enqueued(&self, key: &str, now_ms: i64) -> Result<(), PortError> {
        self.request("UpdateItem", |t| {
            if let Some(o) = t.optins.get_mut(key) {
                o.job_enqueued = true;
                o.job_claim_until_ms = 0;
                o.updated_at_ms = now_ms;
            }
            Ok(())
        })
        .await
    }

    async fn take_job(
        &self,
        key: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(key) else {
                return Ok(false);
            };
            let open = o.state == OptinState::Pending
                || (o.state == OptinState::Sending && o.lease_until_ms <= now_ms);
            if o.job_enqueued || !open || o.job_claim_until_ms > now_ms {
                return Ok(false);
            }
            o.job_claim_until_ms = claim_until_ms;
            o.updated_at_ms = now_ms;
            Ok(true)
        })
        .await
    }

    async fn reopen(&self, seen: &Optin, next: &Optin) -> Result<Reopened, PortError> {
        if next.key() != seen.key() || next.generation != seen.generation.saturating_add(1) {
            return Err(PortError::Rejected(format!(
                "reopen: generation {} is not the successor of generation {} on its key",
                next.generation, seen.generation
            )));
        }
        self.request("PutItem", |t| {
            let Some(o) = t.optins.get_mut(&seen.key()) else {
                // The adapter learns "missing" from a follow-up consistent read.
                self.count("GetItem");
                return Ok(Reopened::Missing);
            };
            let unchanged = o.generation == seen.generation
                && o.state == seen.state
                && o.updated_at_ms == seen.updated_at_ms
                && o.state.is_closed();
            if !unchanged {
                return Ok(Reopened::Changed(Box::new(o.clone())));
            }
            *o = next.clone();
            Ok(Reopened::Reopened)
        })
        .await
    }

    async fn claim(
        &self,
        key: &str,
        generation: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Claim, PortError> {
        self.injected(StoreOp::Claim, "UpdateItem").await?;
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(key) else {
                // The adapter learns "missing" from a follow-up consistent read.
                self.count("GetItem");
                return Ok(Claim::Missing);
            };
            if o.generation != generation || !o.claimable(now_ms) {
                return Ok(Claim::NotClaimable(Box::new(o.clone())));
            }
            o.claim(now_ms, lease_until_ms);
            Ok(Claim::Claimed(Box::new(o.clone())))
        })
        .await
    }

    async fn finish(
        &self,
        key: &str,
        attempt: u32,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<bool, PortError> {
        self.injected(StoreOp::Finish, "UpdateItem").await?;
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(key) else {
                return Ok(false);
            };
            if o.state != OptinState::Sending || o.attempts != attempt {
                return Ok(false);
            }
            match finish {
                Finish::Sent {
                    message_id,
                    sent_at_ms,
                } => {
                    o.state = OptinState::Sent;
                    if message_id.is_some() {
                        o.message_id = message_id.clone();
                    }
                    o.sent_at_ms = Some(*sent_at_ms);
                }
                Finish::Release { error } => {
                    o.state = OptinState::Pending;
                    o.lease_until_ms = 0;
                    o.last_error = Some(error.clone());
                }
                Finish::Failed { error } => {
                    o.state = OptinState::Failed;
                    o.last_error = Some(error.clone());
                }
                Finish::OptedOut { error } => {
                    o.state = OptinState::OptedOut;
                    o.last_error = Some(error.clone());
                }
                Finish::Declined { reason } => {
                    o.state = OptinState::Declined;
                    o.last_error = Some(reason.clone());
                }
            }
            o.updated_at_ms = now_ms;
            Ok(true)
        })
        .await
    }

    async fn expire(
        &self,
        key: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<Option<Optin>, PortError> {
        self.injected(StoreOp::Expire, "UpdateItem").await?;
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(key) else {
                return Ok(None);
            };
            if !o.expirable(now_ms) {
                return Ok(None);
            }
            o.state = OptinState::Expired;
            o.last_error = Some(reason.to_string());
            o.updated_at_ms = now_ms;
            Ok(Some(o.clone()))
        })
        .await
    }
    async fn confirm(&self, key: &str, generation: u32, at_ms: i64) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(key) else {
                return Ok(false);
            };
            if o.generation != generation
                || o.source != OptinSource::Login
                || o.confirmed_at_ms.is_some()
            {
                return Ok(false);
            }
            o.confirmed_at_ms = Some(at_ms);
            o.updated_at_ms = at_ms;
            Ok(true)
        })
        .await
    }

    async fn retry_failed(&self, seen: &Optin, now_ms: i64, note: &str) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(&seen.key()) else {
                return Ok(false);
            };
            if o.generation != seen.generation
                || o.state != OptinState::Failed
                || o.deadline_at_ms <= now_ms
            {
                return Ok(false);
            }
            o.state = OptinState::Pending;
            o.lease_until_ms = 0;
            o.last_error = Some(note.to_string());
            o.updated_at_ms = now_ms;
            Ok(true)
        })
        .await
    }

    async fn oldest_unsent(&self, limit: usize) -> Result<Vec<Unsent>, PortError> {
        // The adapter queries each shard of its index.
        self.request("Query", |t| {
            let mut owed: Vec<Unsent> = t
                .optins
                .iter()
                .filter(|(_, o)| !o.state.is_closed())
                .map(|(k, o)| Unsent {
                    optin_key: k.clone(),
                    opted_in_at_ms: o.opted_in_at_ms,
                })
                .collect();
            owed.sort_by(|a, b| {
                (a.opted_in_at_ms, &a.optin_key).cmp(&(b.opted_in_at_ms, &b.optin_key))
            });
            owed.truncate(limit);
            Ok(owed)
        })
        .await
    }
}

#[async_trait]
impl PersonStore for MemoryStore {
    async fn get_person(&self, page_id: &str, psid: &str) -> Result<Option<Person>, PortError> {
        self.request("GetItem", |t| {
            Ok(t.people.get(&person_key(page_id, psid)).cloned())
        })
        .await
    }

    async fn record_user_message(
        &self,
        page_id: &str,
        psid: &str,
        at_ms: i64,
    ) -> Result<UserMessage, PortError> {
        self.request("UpdateItem", |t| {
            let p = t
                .people
                .entry(person_key(page_id, psid))
                .or_insert_with(|| new_person(page_id, psid));
            let moved = p.last_user_message_at_ms.is_none_or(|t| t < at_ms);
            if moved {
                p.last_user_message_at_ms = Some(at_ms);
            }
            Ok(UserMessage {
                moved,
                person: Some(p.clone()),
            })
        })
        .await
    }

    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError> {
        // Validated before anything is sent, like a request the adapter cannot build.
        let created = link.reply_optin(now_ms)?;
        // The adapter reads the opt-in, then writes both items in one transaction conditional
        // on what it read; here both happen under one lock, counted the same way.
        self.request("GetItem", |t| {
            let plan = link.plan(t.optins.get(&link.optin_key), now_ms);
            if plan == LinkPlan::InFlight {
                return Ok(LinkResult::SendInFlight);
            }
            self.count("TransactWriteItems");
            // The opt-in's business id joins the person (the first one known stays).
            let external_id = t
                .optins
                .get(&link.optin_key)
                .and_then(|o| o.external_id.clone());
            let p = t
                .people
                .entry(person_key(&link.page_id, &link.psid))
                .or_insert_with(|| new_person(&link.page_id, &link.psid));
            let slot = match link.identifier.kind {
                IdentityKind::LoginId => &mut p.login_id,
                _ => &mut p.user_ref,
            };
            slot.get_or_insert_with(|| link.identifier.id.clone());
            // Sorted, like the String Set DynamoDB reads back.
            let tag = link.tag();
            if let Err(at) = p.linked.binary_search(&tag) {
                p.linked.insert(at, tag);
            }
            p.linked_at_ms.get_or_insert(link.at_ms);
            if let Some(x) = external_id {
                p.external_id.get_or_insert(x);
            }
            let stored = t.optins.get_mut(&link.optin_key);
            match (plan, stored) {
                (LinkPlan::Answer, Some(o)) => {
                    o.psid.get_or_insert_with(|| link.psid.clone());
                    o.state = OptinState::Answered;
                    o.answered_at_ms.get_or_insert(link.at_ms);
                    o.updated_at_ms = now_ms;
                }
                (LinkPlan::SetPsid, Some(o)) => {
                    o.psid = Some(link.psid.clone());
                    o.updated_at_ms = now_ms;
                }
                (LinkPlan::Create, None) => {
                    t.optins.insert(link.optin_key.clone(), created);
                }
                _ => {}
            }
            Ok(LinkResult::Linked)
        })
        .await
    }

    async fn record_referral(
        &self,
        page_id: &str,
        psid: &str,
        referral: &ReferralInfo,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let p = t
                .people
                .entry(person_key(page_id, psid))
                .or_insert_with(|| new_person(page_id, psid));
            if p.referral
                .as_ref()
                .is_some_and(|r| r.at_ms >= referral.at_ms)
            {
                return Ok(false);
            }
            p.referral = Some(referral.clone());
            Ok(true)
        })
        .await
    }

    async fn set_token(
        &self,
        page_id: &str,
        psid: &str,
        token: &MarketingToken,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let key = (page_id.to_string(), psid.to_string(), token.topic.clone());
            let stored = t.tokens.get(&key);
            if stored.is_some_and(|s| s.status_at_ms >= token.status_at_ms) {
                return Ok(false);
            }
            // A change that names a token replaces token and expiry; one that does not (STOP /
            // RESUME) keeps the stored token, and its expiry unless it brings one.
            let (value, expires_at_ms) = match &token.token {
                Some(v) => (Some(v.clone()), token.expires_at_ms),
                None => (
                    stored.and_then(|s| s.token.clone()),
                    token
                        .expires_at_ms
                        .or_else(|| stored.and_then(|s| s.expires_at_ms)),
                ),
            };
            let merged = MarketingToken {
                topic: token.topic.clone(),
                token: value,
                status: token.status,
                expires_at_ms,
                status_at_ms: token.status_at_ms,
            };
            t.tokens.insert(key, merged);
            Ok(true)
        })
        .await
    }

    async fn get_tokens(
        &self,
        page_id: &str,
        psid: &str,
    ) -> Result<Vec<MarketingToken>, PortError> {
        self.request("Query", |t| {
            Ok(t.tokens
                .iter()
                .filter(|((p, s, _), _)| p == page_id && s == psid)
                .map(|(_, v)| v.clone())
                .collect())
        })
        .await
    }

    async fn opt_out(
        &self,
        page_id: &str,
        psid: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<(), PortError> {
        self.request("UpdateItem", |t| {
            let p = t
                .people
                .entry(person_key(page_id, psid))
                .or_insert_with(|| new_person(page_id, psid));
            // The earliest opt-out (by event time) is kept, with its reason.
            if p.opted_out_at_ms.is_none_or(|t| t > at_ms) {
                p.opted_out_at_ms = Some(at_ms);
                p.opted_out_reason = Some(reason.to_string());
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl PageStore for MemoryStore {
    async fn get_page(&self, page_id: &str) -> Result<Option<PageConfig>, PortError> {
        self.request("GetItem", |t| Ok(t.pages.get(page_id).cloned()))
            .await
    }

    async fn set_paused(
        &self,
        page_id: &str,
        reason: Option<&str>,
        event_at_ms: i64,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let page = t
                .pages
                .entry(page_id.to_string())
                .or_insert_with(|| PageConfig {
                    page_id: page_id.to_string(),
                    ..PageConfig::default()
                });
            if page.pause_event_at_ms.is_some_and(|t| t >= event_at_ms) {
                return Ok(false);
            }
            page.paused = reason.is_some();
            page.paused_reason = reason.map(str::to_string);
            page.paused_at_ms = reason.map(|_| event_at_ms);
            page.pause_event_at_ms = Some(event_at_ms);
            Ok(true)
        })
        .await
    }

    async fn list_paused(&self, limit: usize) -> Result<Vec<PageConfig>, PortError> {
        self.request("Query", |t| {
            // The pause fields only, as the DynamoDB index projects them.
            let mut paused: Vec<PageConfig> = t
                .pages
                .values()
                .filter(|p| p.paused)
                .map(|p| PageConfig {
                    page_id: p.page_id.clone(),
                    paused: p.paused,
                    paused_reason: p.paused_reason.clone(),
                    paused_at_ms: p.paused_at_ms,
                    ..PageConfig::default()
                })
                .collect();
            paused.sort_by(|a, b| (a.paused_at_ms, &a.page_id).cmp(&(b.paused_at_ms, &b.page_id)));
            paused.truncate(limit);
            Ok(paused)
        })
        .await
    }
}

#[async_trait]
impl QuarantineStore for MemoryStore {
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError> {
        self.request("PutItem", |t| {
            t.quarantine
                .entry(record.id.clone())
                .or_insert_with(|| record.clone());
            Ok(())
        })
        .await
    }

    async fn list_quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRecord>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.request("Query", |t| {
            Ok(t.quarantine.values().take(limit).cloned().collect())
        })
        .await
    }

    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError> {
        self.request("DeleteItem", |t| {
            t.quarantine.remove(id);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn put_pointers(&self, pointers: &[IdentityPointer]) -> Result<(), PortError> {
        for ptr in pointers {
            self.request("PutItem", |t| {
                t.pointers
                    .insert((ptr.id.partition(), ptr.optin_key.clone()), ptr.clone());
            })
            .await;
        }
        Ok(())
    }

    async fn pointers(&self, id: &IndexedId) -> Result<Vec<IdentityPointer>, PortError> {
        let partition = id.partition();
        self.request("Query", |t| {
            Ok(t.pointers
                .iter()
                .filter(|((pk, _), _)| *pk == partition)
                .map(|(_, v)| v.clone())
                .take(MAX_POINTERS)
                .collect())
        })
        .await
    }

    async fn add_optin_identity(
        &self,
        optin_key: &str,
        ids: &OptinIdentity,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let Some(o) = t.optins.get_mut(optin_key) else {
                return Ok(false);
            };
            if let Some(x) = &ids.external_id {
                o.external_id.get_or_insert_with(|| x.clone());
            }
            if let Some(a) = &ids.asid {
                o.asid.get_or_insert_with(|| a.clone());
            }
            Ok(true)
        })
        .await
    }

    async fn delete_optin(&self, optin_key: &str) -> Result<bool, PortError> {
        self.request("DeleteItem", |t| Ok(t.optins.remove(optin_key).is_some()))
            .await
    }

    async fn delete_person(&self, page_id: &str, psid: &str) -> Result<usize, PortError> {
        // The adapter reads the partition, then deletes each item it found: one Query and a
        // DeleteItem per item, counted the same way.
        self.request("Query", |t| {
            let before = t.tokens.len();
            t.tokens.retain(|(p, s, _), _| !(p == page_id && s == psid));
            let tokens = before - t.tokens.len();
            let person = usize::from(t.people.remove(&person_key(page_id, psid)).is_some());
            let n = person + tokens;
            for _ in 0..n {
                self.count("DeleteItem");
            }
            Ok(n)
        })
        .await
    }

    async fn delete_pointer(&self, id: &IndexedId, optin_key: &str) -> Result<(), PortError> {
        self.request("DeleteItem", |t| {
            t.pointers.remove(&(id.partition(), optin_key.to_string()));
            Ok(())
        })
        .await
    }

    async fn put_receipt(&self, receipt: &DeletionReceipt) -> Result<(), PortError> {
        self.request("PutItem", |t| {
            t.receipts.insert(receipt.code.clone(), receipt.clone());
            Ok(())
        })
        .await
    }

    async fn get_receipt(&self, code: &str) -> Result<Option<DeletionReceipt>, PortError> {
        self.request("GetItem", |t| Ok(t.receipts.get(code).cloned()))
            .await
    }
}
