//! The table: opt-ins, people, pages and quarantined events. One DynamoDB table when deployed
//! (see `lc_adapters::dynamodb` for the item shapes), a map in memory otherwise.
//!
//! Each method is one state change with its condition built in, so concurrent duplicates cannot
//! both win. Only [`PersonStore::link`] reads first (a transaction cannot choose its update from
//! the stored value): its write is conditional on what it read, and it reads again when that
//! changed.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::requests::RequestStore;
use super::{IdentityStore, PortError};
use crate::lifecycle::optin::{schedule_name, EntryPoint, Optin, OptinSource, OptinState, DAY_MS};
use crate::webhook::{Identity, IdentityKind};

/// Result of a conditional create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The key was taken; here is what holds it (returned by the failed write itself).
    Exists(Box<Optin>),
}

/// Result of opening a new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    Reopened,
    /// The record changed since it was read (another copy reopened it, a link, ...): here it
    /// is now; decide again.
    Changed(Box<Optin>),
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller now holds the send; `attempts` of the returned record is its claim token.
    Claimed(Box<Optin>),
    /// Someone else holds it, or it is closed or past its deadline.
    NotClaimable(Box<Optin>),
    Missing,
}

/// How a claimed attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Sent {
        message_id: Option<String>,
        sent_at_ms: i64,
    },
    /// Back to `pending` for a later attempt (retryable error, paused page).
    Release {
        error: String,
    },
    Failed {
        error: String,
    },
    OptedOut {
        error: String,
    },
    /// The Page does not answer opt-ins from this deployment.
    Declined {
        reason: String,
    },
}

#[async_trait]
pub trait OptinStore: Send + Sync {
    /// Creates the opt-in unless its key exists.
    async fn create_optin(&self, optin: &Optin) -> Result<Created, PortError>;
    /// Strongly consistent read.
    async fn get_optin(&self, key: &str) -> Result<Option<Optin>, PortError>;
    /// The creator marks its job as enqueued (clears its claim).
    async fn mark_job_enqueued(&self, key: &str, now_ms: i64) -> Result<(), PortError>;
    /// Takes over enqueueing the job when it is not enqueued, the opt-in is still pending (or
    /// sending with a lapsed lease: an inline send whose process died), and the previous claim
    /// lapsed. `true`: the caller must enqueue, then mark it.
    async fn take_job(
        &self,
        key: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> Result<bool, PortError>;
    /// Replaces the closed generation `seen` with `next` (its successor, history included),
    /// only if the stored record is still exactly `seen` (same generation, state and
    /// `updated_at_ms`, and closed): concurrent copies of one new opt-in open one generation.
    /// Otherwise `Changed` with the stored record, or `Missing`. A `next` that is not
    /// generation `seen + 1` on `seen`'s key is `Rejected`, nothing written.
    async fn reopen(&self, seen: &Optin, next: &Optin) -> Result<Reopened, PortError>;
    /// Generation `generation`, `pending` or `sending` with a lapsed lease, and before the
    /// deadline -> `sending` with a new lease; `attempts` + 1.
    async fn claim(
        &self,
        key: &str,
        generation: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Claim, PortError>;
    /// Ends the attempt `attempt` (only if it still holds the claim). `false`: it did not.
    async fn finish(
        &self,
        key: &str,
        attempt: u32,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<bool, PortError>;
    /// `pending` (or `sending` with a lapsed lease) at or past the deadline -> `expired`.
    /// Returns the record as it was when the transition happened.
    async fn expire(
        &self,
        key: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<Option<Optin>, PortError>;
    /// Records that the webhook confirmed generation `generation`, which the login callback
    /// started: sets `confirmed_at_ms` (and `updated_at_ms`, so a racing reopen re-reads and
    /// carries it into the history) only if that generation is current, its source is `login`
    /// and it is not confirmed yet, in any state. `true` if this call recorded it.
    async fn confirm(&self, key: &str, generation: u32, at_ms: i64) -> Result<bool, PortError>;
    /// An operator's retry of a failed generation (a redriven job says so): generation
    /// `seen.generation`, still `failed`, before its deadline -> `pending` (lease cleared,
    /// `last_error` = `note`), owed again. `false`: the record is not that (another state or
    /// generation, or the deadline passed), nothing written.
    async fn retry_failed(&self, seen: &Optin, now_ms: i64, note: &str) -> Result<bool, PortError>;
    /// The first messages still owed (opt-ins `pending` or `sending`), oldest opt-in first, at
    /// most `limit`. Reads an index of the owed ones only (DynamoDB: the sparse `ops` index),
    /// so its cost does not grow with the opt-ins already answered.
    async fn oldest_unsent(&self, limit: usize) -> Result<Vec<Unsent>, PortError>;
}

/// A first message still owed, as the unsent index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    pub optin_key: String,
    pub opted_in_at_ms: i64,
}

/// Where a person came from (m.me link, ad, ...), kept as Meta sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralInfo {
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub ad_id: Option<String>,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Active,
    Stopped,
}

/// A marketing-messages (`notification_messages`) token, one per person and topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketingToken {
    /// The opt-in's `payload` (the business's topic), else its `title`, else `default`.
    pub topic: String,
    /// Absent on a STOP/RESUME that names no token: the status applies to the stored one.
    #[serde(default)]
    pub token: Option<String>,
    pub status: TokenStatus,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// Event time of the last change: an older event never overrides a newer one.
    pub status_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub page_id: String,
    pub psid: String,
    #[serde(default)]
    pub login_id: Option<String>,
    #[serde(default)]
    pub user_ref: Option<String>,
    #[serde(default)]
    pub linked_at_ms: Option<i64>,
    /// Every identifier ever linked to this PSID (`login_id:<id>`, `user_ref:<id>`): a second,
    /// different link is kept beside the first, never over it. Sorted, no duplicates (DynamoDB
    /// keeps it as a String Set, which has no order: which link came first is `login_id` /
    /// `user_ref`).
    #[serde(default)]
    pub linked: Vec<String>,
    #[serde(default)]
    pub last_user_message_at_ms: Option<i64>,
    #[serde(default)]
    pub opted_out_at_ms: Option<i64>,
    #[serde(default)]
    pub opted_out_reason: Option<String>,
    #[serde(default)]
    pub referral: Option<ReferralInfo>,
    /// The business's own id, copied from the first linked opt-in that knew it.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A reply carrying `prior_message`: the identifier it names and the PSID it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub page_id: String,
    pub psid: String,
    /// `login_id` or `user_ref`.
    pub identifier: Identity,
    /// The opt-in key of the identifier.
    pub optin_key: String,
    pub at_ms: i64,
    /// Create the opt-in as `answered` when none exists (a reply that overtook its opt-in).
    /// Only for a `prior_message.source` we know: an unknown source naming an unknown
    /// identifier must not invent an obligation.
    pub create_missing: bool,
}

impl Link {
    /// How the link is listed on the person: `login_id:<id>` or `user_ref:<id>`.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.identifier.kind.as_str(), self.identifier.id)
    }

    /// The entry point of the identifier: a link names a `login_id` (Login Connect) or a
    /// `user_ref` (checkbox plugin), nothing else.
    pub fn entry_point(&self) -> Result<EntryPoint, PortError> {
        match self.identifier.kind {
            IdentityKind::LoginId => Ok(EntryPoint::LoginConnect),
            IdentityKind::UserRef => Ok(EntryPoint::Checkbox),
            other => Err(PortError::Rejected(format!(
                "link: identifier kind {} cannot be linked to a PSID",
                other.as_str()
            ))),
        }
    }

    /// The opt-in a reply creates when it came first (`create_missing`): already `answered`,
    /// complete, bound to the reply's Page, its deadline a day after the reply.
    pub fn reply_optin(&self, now_ms: i64) -> Result<Optin, PortError> {
        Ok(Optin {
            recipient: self.identifier.clone(),
            page_id: self.page_id.clone(),
            object: "page".to_string(),
            entry_point: self.entry_point()?,
            source: OptinSource::Reply,
            opted_in_at_ms: self.at_ms,
            deadline_at_ms: self.at_ms + DAY_MS,
            state: OptinState::Answered,
            attempts: 0,
            lease_until_ms: 0,
            job_enqueued: false,
            job_claim_until_ms: 0,
            schedule_name: schedule_name(&self.optin_key),
            last_error: None,
            message_id: None,
            sent_at_ms: None,
            psid: Some(self.psid.clone()),
            answered_at_ms: Some(self.at_ms),
            reference: None,
            created_by: OptinSource::Reply.as_str().to_string(),
            updated_at_ms: now_ms,
            app_id: None,
            generation: 1,
            history: Vec::new(),
            confirmed_at_ms: None,
            external_id: None,
            asid: None,
        })
    }

    /// What this link does to its opt-in, stored as `current` at `now_ms`: the one rule both
    /// stores apply (the twin under its lock, DynamoDB conditional on the record it read).
    pub fn plan(&self, current: Option<&Optin>, now_ms: i64) -> LinkPlan {
        match current {
            Some(o) if o.state == OptinState::Sending && o.lease_until_ms > now_ms => {
                LinkPlan::InFlight
            }
            // A live send is refused above, so `sending` here is a lapsed attempt.
            Some(o)
                if matches!(
                    o.state,
                    OptinState::Pending | OptinState::Sending | OptinState::Sent
                ) =>
            {
                LinkPlan::Answer
            }
            Some(o) if o.psid.is_none() => LinkPlan::SetPsid,
            Some(_) => LinkPlan::Keep,
            None if self.create_missing => LinkPlan::Create,
            None => LinkPlan::Absent,
        }
    }
}

/// What a link does to its opt-in (see [`Link::plan`]). The person is written in every case
/// but [`LinkPlan::InFlight`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPlan {
    /// A send holds a live lease: nothing is written (`LinkResult::SendInFlight`).
    InFlight,
    /// `pending`, `sent` or a lapsed `sending` becomes `answered` (PSID set if absent).
    Answer,
    /// A closed outcome stays; it only gains the PSID it lacked.
    SetPsid,
    /// A closed outcome with a PSID: the opt-in is not written.
    Keep,
    /// No opt-in, and `create_missing`: created as `answered` ([`Link::reply_optin`]).
    Create,
    /// No opt-in, none created: only the person is written.
    Absent,
}

/// What [`PersonStore::record_user_message`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    /// The window's timestamp moved forward.
    pub moved: bool,
    /// The person as stored after the call (absent only from a backend that does not return
    /// it on a refused condition).
    pub person: Option<Person>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkResult {
    Linked,
    /// A first message is being sent right now (live lease): try again after it settles.
    SendInFlight,
}

#[async_trait]
pub trait PersonStore: Send + Sync {
    async fn get_person(&self, page_id: &str, psid: &str) -> Result<Option<Person>, PortError>;
    /// Moves `last_user_message_at` forward (never back), and hands back the person as stored
    /// (the same request: the identities a published event carries cost no extra read).
    async fn record_user_message(
        &self,
        page_id: &str,
        psid: &str,
        at_ms: i64,
    ) -> Result<UserMessage, PortError>;
    /// Writes both directions in one transaction: the person gets the identifier (the first
    /// one stays in `login_id` / `user_ref`; every one joins `linked`), the opt-in gets the PSID
    /// if it has none and, from `pending`, `sent` or a lapsed `sending`, state `answered`. A
    /// closed outcome (`opted_out`, `failed`, `expired`, `answered`) is history and stays. With
    /// `create_missing`, a missing opt-in is created as `answered` (the reply came first);
    /// without, only the person is written. A live `sending` writes nothing:
    /// [`LinkResult::SendInFlight`]. The opt-in's `updated_at_ms` moves only when it is written.
    /// See [`Link::plan`].
    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError>;
    /// Stores the newest referral. `true` if it was newer than the stored one.
    async fn record_referral(
        &self,
        page_id: &str,
        psid: &str,
        referral: &ReferralInfo,
    ) -> Result<bool, PortError>;
    /// Stores a token change unless a newer change is already stored. `true` if applied.
    async fn set_token(
        &self,
        page_id: &str,
        psid: &str,
        token: &MarketingToken,
    ) -> Result<bool, PortError>;
    async fn get_tokens(&self, page_id: &str, psid: &str)
        -> Result<Vec<MarketingToken>, PortError>;
    /// Marks the person as not to be messaged (blocked us, turned messages off, ...).
    async fn opt_out(
        &self,
        page_id: &str,
        psid: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<(), PortError>;
}

fn answers_by_default() -> bool {
    true
}

/// First-message content and the pause switch of one Page (editable in the console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageConfig {
    pub page_id: String,
    pub paused: bool,
    /// Whether this deployment sends the first message for this Page's opt-ins. Meta hands
    /// every `login_id` to every app subscribed to the Page, so when two apps (two
    /// deployments, or this one and a CRM) both answer, the person gets two "first" messages.
    /// Set it to false on the Pages another app answers.
    #[serde(default = "answers_by_default")]
    pub answers_optins: bool,
    #[serde(default)]
    pub paused_reason: Option<String>,
    #[serde(default)]
    pub paused_at_ms: Option<i64>,
    /// Event time of the last pause/unpause from a webhook (ordering guard).
    #[serde(default)]
    pub pause_event_at_ms: Option<i64>,
    /// JSON of the first message (`{"text": ..., "quick_replies": [...]}`); validated on use.
    #[serde(default)]
    pub first_message: Option<String>,
    /// Meta approved the Human Agent feature for this Page: follow-ups written by a human may
    /// go with the `HUMAN_AGENT` tag up to 7 days after the person's last message.
    #[serde(default)]
    pub human_agent: bool,
    /// The app has `page_utility_messaging` for this Page: utility templates (UTILITY).
    #[serde(default)]
    pub utility_messaging: bool,
    /// The app has `pages_messaging_phone_number` for this Page (Customer Matching).
    #[serde(default)]
    pub phone_number_messaging: bool,
    /// For an Instagram account's config: the Facebook Page whose token sends its messages
    /// (Messenger API for Instagram, `POST /me/messages` with the Page token).
    #[serde(default)]
    pub linked_page_id: Option<String>,
    /// For an Instagram account's config: set, its follow-ups go through Instagram Login
    /// (`graph.instagram.com/<this id>/messages`) with the Instagram user token the secret holds
    /// under this id (`instagram_tokens`), instead of through `linked_page_id`'s Page token.
    /// The id is the account's Instagram user id (IG_ID) as Instagram Login names it.
    #[serde(default)]
    pub instagram_login_user_id: Option<String>,
}

impl Default for PageConfig {
    fn default() -> Self {
        PageConfig {
            page_id: String::new(),
            paused: false,
            answers_optins: true,
            paused_reason: None,
            paused_at_ms: None,
            pause_event_at_ms: None,
            first_message: None,
            human_agent: false,
            utility_messaging: false,
            phone_number_messaging: false,
            linked_page_id: None,
            instagram_login_user_id: None,
        }
    }
}

#[async_trait]
pub trait PageStore: Send + Sync {
    async fn get_page(&self, page_id: &str) -> Result<Option<PageConfig>, PortError>;
    /// Pauses (`Some(reason)`) or unpauses (`None`) the Page unless a newer event already
    /// did. `true` if applied.
    async fn set_paused(
        &self,
        page_id: &str,
        reason: Option<&str>,
        event_at_ms: i64,
    ) -> Result<bool, PortError>;
    /// The Pages paused now (by [`PageStore::set_paused`]), oldest pause first, at most
    /// `limit`. Reads an index of the paused ones only (DynamoDB: the sparse `ops` index).
    async fn list_paused(&self, limit: usize) -> Result<Vec<PageConfig>, PortError>;
}

/// A signed event we could not act on, kept whole for inspection and replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// Sortable id: `<received_at_ms, 13 digits>#<event key>`.
    pub id: String,
    pub reason: String,
    pub received_at_ms: i64,
    /// The whole `InboundEvent` as JSON.
    pub event_json: String,
}

#[async_trait]
pub trait QuarantineStore: Send + Sync {
    /// Idempotent: the same id twice stores one record.
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError>;
    /// Oldest first.
    async fn list_quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRecord>, PortError>;
    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError>;
}

/// The one table, as the ports its items serve. Built from any store that implements them all
/// (DynamoDB, the in-memory twin), shared by every consumer.
#[derive(Clone)]
pub struct Table {
    pub optins: Arc<dyn OptinStore>,
    pub people: Arc<dyn PersonStore>,
    pub pages: Arc<dyn PageStore>,
    pub quarantine: Arc<dyn QuarantineStore>,
    /// The identity index and data-deletion receipts.
    pub identities: Arc<dyn IdentityStore>,
    /// The business's follow-up requests (`POST /v1/messages`).
    pub requests: Arc<dyn RequestStore>,
}

impl Table {
    pub fn new<T>(store: Arc<T>) -> Table
    where
        T: OptinStore
            + PersonStore
            + PageStore
            + QuarantineStore
            + IdentityStore
            + RequestStore
            + 'static,
    {
        Table {
            optins: store.clone(),
            people: store.clone(),
            pages: store.clone(),
            quarantine: store.clone(),
            identities: store.clone(),
            requests: store,
        }
    }
}
