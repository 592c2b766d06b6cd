//! The opt-in: one tracked obligation per person who agreed to be contacted, with a deadline.
//!
//! ```text
//!            create                claim (lease)           send ok
//!   (none) ---------> pending ---------------> sending ------------> sent
//!                       ^   |                  |    |  retryable
//!                       |   | now >= deadline  |    +------------> pending (released)
//!                       |   v                  |  unreachable / bad request
//!                       |  expired             +---------------> opted_out / failed
//!                       |                      lease lapsed: claimable again
//!   reply with prior_message (pending, or sent) -> answered
//! ```
//!
//! Every transition is a conditional write on this one item, so duplicates (Meta retries,
//! several apps on one Page, the login callback and the webhook for the same person) converge
//! on one record and at most one first message.
//!
//! # Generations
//! A person can opt in again on the same key: after `reset_messenger_state=1` (Meta's re-test
//! flow), after revoking and granting again, or with a second Send-to-Messenger click; Meta's
//! `login_id` derivation is deterministic per person, app and Page, so the key comes back. Each
//! opt-in is a *generation* of the obligation: a later opt-in event on a closed generation opens
//! generation `n + 1` with its own deadline, schedule and exactly one first message
//! ([`Optin::next_generation`]), and the closed one's outcome moves to [`Optin::history`]. A
//! redelivery of the event that opened the current generation is a duplicate, as before.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::webhook::{Identity, IdentityKind};

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Where the obligation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptinState {
    Pending,
    Sending,
    Sent,
    Answered,
    Failed,
    Expired,
    OptedOut,
    /// The Page is set not to answer opt-ins from this deployment (another app on the Page
    /// answers them): nothing is sent.
    Declined,
}

impl OptinState {
    pub fn as_str(self) -> &'static str {
        match self {
            OptinState::Pending => "pending",
            OptinState::Sending => "sending",
            OptinState::Sent => "sent",
            OptinState::Answered => "answered",
            OptinState::Failed => "failed",
            OptinState::Expired => "expired",
            OptinState::OptedOut => "opted_out",
            OptinState::Declined => "declined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OptinState::Pending,
            "sending" => OptinState::Sending,
            "sent" => OptinState::Sent,
            "answered" => OptinState::Answered,
            "failed" => OptinState::Failed,
            "expired" => OptinState::Expired,
            "opted_out" => OptinState::OptedOut,
            "declined" => OptinState::Declined,
            _ => return None,
        })
    }

    /// No first message will ever go out from this state.
    pub fn is_closed(self) -> bool {
        !matches!(self, OptinState::Pending | OptinState::Sending)
    }
}

/// How the person opted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryPoint {
    LoginConnect,
    SendToMessenger,
    Checkbox,
}

impl EntryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPoint::LoginConnect => "login_connect",
            EntryPoint::SendToMessenger => "send_to_messenger",
            EntryPoint::Checkbox => "checkbox",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "login_connect" => EntryPoint::LoginConnect,
            "send_to_messenger" => EntryPoint::SendToMessenger,
            "checkbox" => EntryPoint::Checkbox,
            _ => return None,
        })
    }
}

/// Which path told us first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptinSource {
    /// The `messaging_optins` webhook.
    Webhook,
    /// The login callback (Option 2: login_id computed at login time).
    Login,
    /// Created by a reply that arrived before its opt-in.
    Reply,
}

impl OptinSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OptinSource::Webhook => "webhook",
            OptinSource::Login => "login",
            OptinSource::Reply => "reply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "webhook" => OptinSource::Webhook,
            "login" => OptinSource::Login,
            "reply" => OptinSource::Reply,
            _ => return None,
        })
    }
}

/// What we know of a plugin `ref` (the business's pass-through value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefInfo {
    pub raw: String,
    /// `valid`, `expired`, `invalid` (tampered / wrong key) or `opaque` (not our format).
    pub status: String,
    /// The verified payload (only for `valid`), as UTF-8 lossy text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Optin {
    /// `login_id`, `user_ref`, or the PSID / IGSID for the Send-to-Messenger plugin.
    pub recipient: Identity,
    /// The Page (or Instagram account) the obligation is bound to: the first one that used it.
    pub page_id: String,
    pub object: String,
    pub entry_point: EntryPoint,
    pub source: OptinSource,
    pub opted_in_at_ms: i64,
    pub deadline_at_ms: i64,
    pub state: OptinState,
    /// Send attempts claimed so far; also the claim token of the current attempt.
    pub attempts: u32,
    /// A `sending` claim is someone's until then; after, it may be claimed again.
    pub lease_until_ms: i64,
    /// The first-message job is known to be on the outbound queue.
    pub job_enqueued: bool,
    /// Whoever holds this may enqueue the job until then (creator first; a duplicate may take
    /// over if the creator crashed before enqueueing).
    pub job_claim_until_ms: i64,
    pub schedule_name: String,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub sent_at_ms: Option<i64>,
    /// Linked on the person's reply (`prior_message`).
    #[serde(default)]
    pub psid: Option<String>,
    #[serde(default)]
    pub answered_at_ms: Option<i64>,
    #[serde(default)]
    pub reference: Option<RefInfo>,
    /// Idempotency key of the event that created it.
    pub created_by: String,
    pub updated_at_ms: i64,
    /// The Meta app whose webhook delivered the opt-in (the app owning the Page's token, for
    /// `appsecret_proof`, unless the secret says otherwise).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Which opt-in of this person on this key (1 for the first).
    #[serde(default = "first_generation")]
    pub generation: u32,
    /// The outcomes of earlier generations, oldest first (at most [`MAX_HISTORY`]).
    #[serde(default)]
    pub history: Vec<GenerationOutcome>,
    /// When a `messaging_optins` webhook confirmed this generation, which the login callback
    /// started ([`Optin::confirmed_by`]): Meta's own event for the same grant, and proof that
    /// the derived `login_id` is Meta's. `None` until then, and always for other sources.
    #[serde(default)]
    pub confirmed_at_ms: Option<i64>,
    /// The business's own id for the person, when a signed source named it (the login
    /// callback's signed `external_id`, or a valid signed Send-to-Messenger ref). Kept across
    /// generations: the key names the same person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The app-scoped user id, when the login callback saw it (Graph's `debug_token`): how a
    /// data-deletion request from Meta finds this opt-in without the derivation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asid: Option<String>,
}

/// Earlier generations kept on one item: a person re-opting in this many times is far beyond
/// any real flow; the oldest are dropped first so the item stays small.
pub const MAX_HISTORY: usize = 50;

fn first_generation() -> u32 {
    1
}

/// How one closed generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationOutcome {
    pub generation: u32,
    pub source: OptinSource,
    pub opted_in_at_ms: i64,
    pub state: OptinState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<RefInfo>,
    pub closed_at_ms: i64,
    /// See [`Optin::confirmed_at_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at_ms: Option<i64>,
}

impl Optin {
    /// A new pending obligation.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        recipient: Identity,
        page_id: &str,
        object: &str,
        entry_point: EntryPoint,
        source: OptinSource,
        opted_in_at_ms: i64,
        created_by: &str,
        now_ms: i64,
    ) -> Self {
        let key = optin_key(&recipient, page_id);
        Optin {
            schedule_name: schedule_name(&key),
            recipient,
            page_id: page_id.to_string(),
            object: object.to_string(),
            entry_point,
            source,
            opted_in_at_ms,
            deadline_at_ms: opted_in_at_ms + DAY_MS,
            state: OptinState::Pending,
            attempts: 0,
            lease_until_ms: 0,
            job_enqueued: false,
            job_claim_until_ms: 0,
            last_error: None,
            message_id: None,
            sent_at_ms: None,
            psid: None,
            answered_at_ms: None,
            reference: None,
            created_by: created_by.to_string(),
            updated_at_ms: now_ms,
            app_id: None,
            generation: 1,
            history: Vec::new(),
            confirmed_at_ms: None,
            external_id: None,
            asid: None,
        }
    }

    pub fn key(&self) -> String {
        optin_key(&self.recipient, &self.page_id)
    }

    /// The outcome of this generation, as its history entry.
    pub fn outcome(&self) -> GenerationOutcome {
        GenerationOutcome {
            generation: self.generation,
            source: self.source,
            opted_in_at_ms: self.opted_in_at_ms,
            state: self.state,
            attempts: self.attempts,
            sent_at_ms: self.sent_at_ms,
            message_id: self.message_id.clone(),
            answered_at_ms: self.answered_at_ms,
            last_error: self.last_error.clone(),
            reference: self.reference.clone(),
            closed_at_ms: self.updated_at_ms,
            confirmed_at_ms: self.confirmed_at_ms,
        }
    }

    /// Whether `event_at_ms`, from the event `event_key`, is a new opt-in on this (closed)
    /// generation rather than a repeat of one already counted.
    ///
    /// Distinct webhook events are ordered by time: only a later one opens a generation. A
    /// generation the login callback started is confirmed, not repeated, by the webhook for the
    /// same grant, which Meta stamps with about the same time: within [`SAME_GRANT_MS`] it is
    /// the same opt-in.
    pub fn opens_generation(&self, event_at_ms: i64, event_key: &str, source: OptinSource) -> bool {
        if !self.state.is_closed() || event_key == self.created_by {
            return false;
        }
        let after = match (self.source, source) {
            (OptinSource::Login, OptinSource::Webhook)
            | (OptinSource::Webhook, OptinSource::Login) => self.opted_in_at_ms + SAME_GRANT_MS,
            _ => self.opted_in_at_ms,
        };
        event_at_ms > after
    }

    /// Whether a `source` opt-in event at `event_at_ms` confirms this generation: the webhook
    /// for the grant of a generation the login callback started, stamped within
    /// [`SAME_GRANT_MS`] of it (either side: Meta stamps the grant, the callback comes after).
    pub fn confirmed_by(&self, event_at_ms: i64, source: OptinSource) -> bool {
        self.source == OptinSource::Login
            && source == OptinSource::Webhook
            && event_at_ms
                .saturating_sub(self.opted_in_at_ms)
                .unsigned_abs()
                <= SAME_GRANT_MS.unsigned_abs()
    }

    /// Of generation `generation` (this one or one in the history): its source and when it
    /// was confirmed. `None` when the generation is unknown here (dropped from the history).
    pub fn confirmation_of(&self, generation: u32) -> Option<(OptinSource, Option<i64>)> {
        if generation == self.generation {
            return Some((self.source, self.confirmed_at_ms));
        }
        self.history
            .iter()
            .find(|g| g.generation == generation)
            .map(|g| (g.source, g.confirmed_at_ms))
    }

    /// The name of this generation's confirm check ([`CONFIRM_CHECK`]): its deadline
    /// schedule's name + [`CONFIRM_SUFFIX`], so a retry names the same schedule.
    pub fn confirm_schedule_name(&self) -> String {
        format!("{}{CONFIRM_SUFFIX}", self.schedule_name)
    }

    /// Generation `n + 1` on this key, from a new opt-in (`next`, built like a first one):
    /// the binding to the Page stays, this generation's outcome joins the history.
    pub fn next_generation(&self, mut next: Optin) -> Optin {
        next.page_id = self.page_id.clone();
        next.generation = self.generation + 1;
        next.schedule_name = schedule_name_for(&self.key(), next.generation);
        let mut history = self.history.clone();
        history.push(self.outcome());
        if history.len() > MAX_HISTORY {
            history.drain(..history.len() - MAX_HISTORY);
        }
        next.history = history;
        // The key names the same person: identities learnt earlier stay unless the new opt-in
        // brings its own.
        if next.external_id.is_none() {
            next.external_id.clone_from(&self.external_id);
        }
        if next.asid.is_none() {
            next.asid.clone_from(&self.asid);
        }
        next
    }

    /// Could a send be claimed now?
    /// Takes the send for one attempt, as the store's claim does: `sending` under a lease
    /// until `lease_until_ms`, one more attempt. The caller has checked [`Optin::claimable`]
    /// (or is writing a new opt-in already claimed).
    pub fn claim(&mut self, now_ms: i64, lease_until_ms: i64) {
        self.state = OptinState::Sending;
        self.attempts += 1;
        self.lease_until_ms = lease_until_ms;
        self.updated_at_ms = now_ms;
    }

    pub fn claimable(&self, now_ms: i64) -> bool {
        now_ms < self.deadline_at_ms
            && match self.state {
                OptinState::Pending => true,
                OptinState::Sending => self.lease_until_ms <= now_ms,
                _ => false,
            }
    }

    /// Should the deadline check close it as missed?
    pub fn expirable(&self, now_ms: i64) -> bool {
        now_ms >= self.deadline_at_ms
            && match self.state {
                OptinState::Pending => true,
                OptinState::Sending => self.lease_until_ms <= now_ms,
                _ => false,
            }
    }
}

/// The table key of an opt-in. `login_id` and `user_ref` are global (Meta binds them to one
/// Page); a PSID only means something within its Page.
pub fn optin_key(recipient: &Identity, page_id: &str) -> String {
    match recipient.kind {
        IdentityKind::LoginId | IdentityKind::UserRef => {
            format!("OPTIN#{}#{}", recipient.kind.as_str(), recipient.id)
        }
        IdentityKind::Psid | IdentityKind::Igsid => {
            format!(
                "OPTIN#{}#{}#{}",
                recipient.kind.as_str(),
                page_id,
                recipient.id
            )
        }
    }
}

/// The [`DeadlineCheck::check`] that asks whether a login-started generation met its webhook.
pub const CONFIRM_CHECK: &str = "confirm";
/// Suffix of a generation's confirm schedule (the re-armed final check uses `-f`).
pub const CONFIRM_SUFFIX: &str = "-c";

/// The webhook opt-in and the login callback for the same grant are stamped within this of
/// each other (both come from the one login); a later event on a login-started generation is
/// a new opt-in only past it.
pub const SAME_GRANT_MS: i64 = 15 * 60 * 1000;

/// Deterministic schedule name for an opt-in key: `lc-` + 40 hex chars (Scheduler allows 64
/// of `[0-9A-Za-z-_.]`), so a retry names the same schedule and gets `ConflictException`.
pub fn schedule_name(optin_key: &str) -> String {
    let digest = Sha256::digest(optin_key.as_bytes());
    format!("lc-{}", hex::encode(&digest[..20]))
}

/// The schedule name of generation `generation` (the first keeps the plain key's name, so
/// schedules written before generations existed still match).
pub fn schedule_name_for(optin_key: &str, generation: u32) -> String {
    if generation <= 1 {
        schedule_name(optin_key)
    } else {
        schedule_name(&format!("{optin_key}#g{generation}"))
    }
}

/// The job the events function puts on the outbound queue. Self-contained, so a message
/// redriven from the DLQ days later still says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstMessageJob {
    pub v: u32,
    /// Set on a record-only job: Meta already accepted this attempt's message, only the
    /// record is missing. Never calls Graph again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SentRecord>,
    pub optin_key: String,
    /// The generation the job is for; absent in jobs written before generations (the current
    /// one then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    pub recipient: Identity,
    pub page_id: String,
    pub deadline_at_ms: i64,
    pub enqueued_at_ms: i64,
    /// The opt-in's `external_id`, so the outcome events name the business's id too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The opt-in's `ref` as Meta sent it, so the outcome events carry it too
    /// ([`crate::bus::about_optin`]); absent in jobs written before it and for opt-ins without.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Set by an operator's redrive (the operations function) when the job leaves a
    /// dead-letter queue: if its generation `failed` (Meta refused the request), the sender
    /// re-opens it for one more try while its deadline is ahead, and refuses with the reason
    /// when it is not. Without it a job for a failed opt-in is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at_ms: Option<i64>,
}

impl FirstMessageJob {
    /// The job for `optin`'s current generation, enqueued (or run) at `now`.
    pub fn for_generation(optin: &Optin, now: i64) -> FirstMessageJob {
        FirstMessageJob {
            v: 1,
            sent: None,
            optin_key: optin.key(),
            generation: Some(optin.generation),
            recipient: optin.recipient.clone(),
            page_id: optin.page_id.clone(),
            deadline_at_ms: optin.deadline_at_ms,
            enqueued_at_ms: now,
            external_id: optin.external_id.clone(),
            reference: optin.reference.as_ref().map(|r| r.raw.clone()),
            redriven_at_ms: None,
        }
    }
}

/// What Meta answered to an attempt whose record could not be written at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub sent_at_ms: i64,
}

/// The JSON input of a deadline schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineCheck {
    pub v: u32,
    pub optin_key: String,
    /// The generation the check guards; absent in checks written before generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// `at_risk` (before the deadline, by the margin), `final` (at the deadline), or
    /// [`CONFIRM_CHECK`] (a login-started generation, an hour after the login: did the webhook
    /// confirm it?).
    pub check: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optin() -> Optin {
        Optin::pending(
            Identity::new(IdentityKind::LoginId, "L1"),
            "100",
            "page",
            EntryPoint::LoginConnect,
            OptinSource::Webhook,
            1_000,
            "optin:h1",
            1_500,
        )
    }

    #[test]
    fn keys_and_names() {
        let o = optin();
        assert_eq!(o.key(), "OPTIN#login_id#L1");
        assert_eq!(o.deadline_at_ms, 1_000 + DAY_MS);
        assert_eq!(o.schedule_name, schedule_name("OPTIN#login_id#L1"));
        assert_eq!(o.schedule_name.len(), 43);
        let psid = Identity::new(IdentityKind::Psid, "7");
        assert_eq!(optin_key(&psid, "100"), "OPTIN#psid#100#7");
    }

    #[test]
    fn claimable_and_expirable_boundaries() {
        let mut o = optin();
        let deadline = o.deadline_at_ms;
        assert!(o.claimable(deadline - 1));
        assert!(
            !o.claimable(deadline),
            "at the deadline nothing may be claimed"
        );
        assert!(!o.expirable(deadline - 1));
        assert!(o.expirable(deadline));
        o.state = OptinState::Sending;
        o.lease_until_ms = 5_000;
        assert!(!o.claimable(4_999));
        assert!(o.claimable(5_000), "a lapsed lease can be claimed again");
        o.state = OptinState::Sent;
        assert!(!o.claimable(0) && !o.expirable(deadline));
    }

    #[test]
    fn only_the_webhook_for_the_same_grant_confirms_a_login_generation() {
        let mut o = optin();
        o.source = OptinSource::Login;
        let at = o.opted_in_at_ms;
        assert!(o.confirmed_by(at, OptinSource::Webhook));
        assert!(o.confirmed_by(at - SAME_GRANT_MS, OptinSource::Webhook));
        assert!(o.confirmed_by(at + SAME_GRANT_MS, OptinSource::Webhook));
        assert!(!o.confirmed_by(at + SAME_GRANT_MS + 1, OptinSource::Webhook));
        assert!(!o.confirmed_by(at - SAME_GRANT_MS - 1, OptinSource::Webhook));
        assert!(
            !o.confirmed_by(at, OptinSource::Login),
            "a login is no confirmation"
        );
        o.source = OptinSource::Webhook;
        assert!(
            !o.confirmed_by(at, OptinSource::Webhook),
            "nothing to confirm"
        );
    }

    #[test]
    fn confirmation_survives_into_the_history() {
        let mut first = optin();
        first.source = OptinSource::Login;
        first.state = OptinState::Sent;
        first.confirmed_at_ms = Some(1_200);
        let next = first.next_generation(optin());
        assert_eq!(
            next.confirmation_of(1),
            Some((OptinSource::Login, Some(1_200)))
        );
        assert_eq!(next.confirmation_of(2), Some((OptinSource::Webhook, None)));
        assert_eq!(next.confirmation_of(3), None);
        assert_eq!(
            first.confirm_schedule_name(),
            format!("{}-c", first.schedule_name)
        );
        assert!(
            first.confirm_schedule_name().len() <= 64,
            "Scheduler's name limit"
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            OptinState::Pending,
            OptinState::Sending,
            OptinState::Sent,
            OptinState::Answered,
            OptinState::Failed,
            OptinState::Expired,
            OptinState::OptedOut,
            OptinState::Declined,
        ] {
            assert_eq!(OptinState::parse(s.as_str()), Some(s));
        }
    }
}
