//! The table contract: [`OptinStore`], [`PersonStore`], [`PageStore`] and [`QuarantineStore`],
//! checked the same way against [`crate::memory::MemoryStore`] and the DynamoDB adapter (on
//! moto).
//!
//! Each check is an ordinary async fn that panics on a violation. Keys are built from
//! `unique_prefix`, so several runs can share one table; only [`quarantine`] reads a shared
//! partition, and it tolerates records of other runs as long as they do not write concurrently.
//! Times are fixed (around [`T0`]), never the wall clock.

use futures::future::join_all;

use crate::lifecycle::optin::{
    optin_key, schedule_name, EntryPoint, Optin, OptinSource, OptinState, RefInfo, DAY_MS,
};
use crate::ports::store::{
    Claim, Created, Finish, Link, LinkResult, MarketingToken, QuarantinedRecord, ReferralInfo,
    Reopened, TokenStatus,
};
use crate::ports::{OptinStore, PageStore, PersonStore, PortError, QuarantineStore};
use crate::webhook::{Identity, IdentityKind};

/// Everything the table offers.
pub trait Store: OptinStore + PersonStore + PageStore + QuarantineStore {}
impl<T: OptinStore + PersonStore + PageStore + QuarantineStore + ?Sized> Store for T {}

/// 2023-11-14T22:13:20Z: the opt-in time of the fixtures.
pub const T0: i64 = 1_700_000_000_000;
/// Lease of a claim in the checks.
const LEASE: i64 = 60_000;
/// The creator's job claim in the fixtures.
const JOB_CLAIM: i64 = 30_000;

/// Runs every check, one after the other.
pub async fn run_all<S: Store>(s: &S, unique_prefix: &str) {
    let p = unique_prefix;
    create_then_duplicate(s, p).await;
    get_missing(s, p).await;
    claim_lifecycle(s, p).await;
    claim_deadline(s, p).await;
    claim_missing(s, p).await;
    claim_answered(s, p).await;
    claim_other_generation(s, p).await;
    reopen_closed_generation(s, p).await;
    reopen_only_when_unchanged(s, p).await;
    reopen_only_from_closed(s, p).await;
    reopen_missing_and_misuse(s, p).await;
    finish_stale_attempt(s, p).await;
    finish_outcomes(s, p).await;
    expire_rules(s, p).await;
    take_job_rules(s, p).await;
    confirm_rules(s, p).await;
    confirm_reaches_the_history(s, p).await;
    concurrent_creates(s, p).await;
    concurrent_claims(s, p).await;
    user_message_monotonic(s, p).await;
    link_reply_first(s, p).await;
    link_existing(s, p).await;
    link_in_flight(s, p).await;
    link_user_ref(s, p).await;
    link_keeps_closed_outcomes(s, p).await;
    link_sets_psid_only_if_absent(s, p).await;
    link_create_missing_only_when_asked(s, p).await;
    link_keeps_first_identifier(s, p).await;
    link_is_idempotent(s, p).await;
    referral_monotonic(s, p).await;
    tokens_monotonic(s, p).await;
    opt_out_keeps_first(s, p).await;
    page_pause(s, p).await;
    quarantine(s, p).await;
    retry_failed_rules(s, p).await;
    unsent_index(s, p).await;
    paused_index(s, p).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn login(p: &str, name: &str) -> Identity {
    Identity::new(IdentityKind::LoginId, format!("{p}-{name}"))
}

fn page(p: &str) -> String {
    format!("{p}-page")
}

/// A pending Login Connect opt-in at [`T0`], its job claimed by the creator for 30 s.
pub fn optin(p: &str, name: &str) -> Optin {
    let mut o = Optin::pending(
        login(p, name),
        &page(p),
        "page",
        EntryPoint::LoginConnect,
        OptinSource::Webhook,
        T0,
        &format!("optin:{p}:{name}"),
        T0 + 5,
    );
    o.job_claim_until_ms = T0 + JOB_CLAIM;
    o
}

async fn created<S: Store>(s: &S, p: &str, name: &str) -> Optin {
    let o = optin(p, name);
    let r = s.create_optin(&o).await.expect("create_optin");
    assert_eq!(r, Created::Created, "create_optin of a new key {}", o.key());
    o
}

async fn get<S: Store>(s: &S, key: &str) -> Optin {
    s.get_optin(key)
        .await
        .expect("get_optin")
        .unwrap_or_else(|| panic!("opt-in {key} should exist"))
}

async fn claimed<S: Store>(s: &S, key: &str, now: i64) -> Optin {
    match s.claim(key, 1, now, now + LEASE).await.expect("claim") {
        Claim::Claimed(o) => *o,
        other => panic!("claim of {key} at {now} should succeed, got {other:?}"),
    }
}

async fn not_claimable<S: Store>(s: &S, key: &str, now: i64) -> Optin {
    match s.claim(key, 1, now, now + LEASE).await.expect("claim") {
        Claim::NotClaimable(o) => *o,
        other => panic!("claim of {key} at {now} should be refused, got {other:?}"),
    }
}

fn link_of(p: &str, identifier: Identity, psid: &str, at_ms: i64) -> Link {
    let page_id = page(p);
    Link {
        optin_key: optin_key(&identifier, &page_id),
        page_id,
        psid: psid.to_string(),
        identifier,
        at_ms,
        create_missing: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Opt-ins

/// Create, read back whole, and a duplicate create returns the stored record untouched.
pub async fn create_then_duplicate<S: Store>(s: &S, p: &str) {
    let mut o = optin(p, "dup");
    o.reference = Some(RefInfo {
        raw: "r\u{e9}f=1&x=\"q\"".into(),
        status: "valid".into(),
        payload: Some("{\"campaign\":\"d\u{e9}j\u{e0}\"}".into()),
    });
    assert_eq!(s.create_optin(&o).await.expect("create"), Created::Created);
    assert_eq!(
        get(s, &o.key()).await,
        o,
        "the stored record reads back whole"
    );

    let mut dup = o.clone();
    dup.created_by = "optin:other-event".into();
    dup.opted_in_at_ms += 1_000;
    dup.deadline_at_ms += 1_000;
    dup.source = OptinSource::Login;
    match s.create_optin(&dup).await.expect("duplicate create") {
        Created::Exists(existing) => assert_eq!(*existing, o, "Exists holds the stored record"),
        Created::Created => panic!("a duplicate create must not succeed"),
    }
    assert_eq!(get(s, &o.key()).await, o, "the duplicate changed nothing");

    // Every identity kind and entry point round-trips, with a reference without payload.
    for (kind, entry_point) in [
        (IdentityKind::UserRef, EntryPoint::Checkbox),
        (IdentityKind::Psid, EntryPoint::SendToMessenger),
        (IdentityKind::Igsid, EntryPoint::SendToMessenger),
    ] {
        let mut other = Optin::pending(
            Identity::new(kind, format!("{p}-kind-{}", kind.as_str())),
            &page(p),
            "instagram",
            entry_point,
            OptinSource::Webhook,
            T0,
            "optin:kinds",
            T0,
        );
        other.reference = Some(RefInfo {
            raw: "opaque".into(),
            status: "opaque".into(),
            payload: None,
        });
        assert_eq!(
            s.create_optin(&other).await.expect("create"),
            Created::Created
        );
        assert_eq!(get(s, &other.key()).await, other);
    }
}

pub async fn get_missing<S: Store>(s: &S, p: &str) {
    let key = optin(p, "never-created").key();
    assert_eq!(s.get_optin(&key).await.expect("get_optin"), None);
    assert_eq!(
        s.get_person(&page(p), "no-such-psid")
            .await
            .expect("get_person"),
        None
    );
}

/// pending -> sending (attempt 1, lease); refused while leased; claimable at lease end.
pub async fn claim_lifecycle<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "claim").await;
    let key = o.key();
    let now = T0 + 1_000;
    let c = claimed(s, &key, now).await;
    assert_eq!(c.state, OptinState::Sending);
    assert_eq!(c.attempts, 1);
    assert_eq!(c.lease_until_ms, now + LEASE);
    assert_eq!(c.updated_at_ms, now);
    assert_eq!(
        c.created_by, o.created_by,
        "the claim returns the whole record"
    );
    assert_eq!(get(s, &key).await, c, "the claim returns the stored record");

    let held = not_claimable(s, &key, now + 1).await;
    assert_eq!(
        held, c,
        "a refused claim changes nothing and shows the holder"
    );
    let held = not_claimable(s, &key, now + LEASE - 1).await;
    assert_eq!(held.attempts, 1);

    let again = claimed(s, &key, now + LEASE).await;
    assert_eq!(again.attempts, 2, "a lapsed lease is claimed again");
    assert_eq!(again.lease_until_ms, now + 2 * LEASE);
    assert_eq!(again.state, OptinState::Sending);
}

/// Nothing is claimed at or after the deadline.
pub async fn claim_deadline<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "claim-deadline").await;
    let key = o.key();
    let at = not_claimable(s, &key, o.deadline_at_ms).await;
    assert_eq!(at.state, OptinState::Pending);
    assert_eq!(at.attempts, 0);
    let after = not_claimable(s, &key, o.deadline_at_ms + 1).await;
    assert_eq!(after, o, "refused claims leave the record untouched");
    let last = claimed(s, &key, o.deadline_at_ms - 1).await;
    assert_eq!(
        last.attempts, 1,
        "one millisecond before the deadline is still in time"
    );
}

pub async fn claim_missing<S: Store>(s: &S, p: &str) {
    let key = optin(p, "claim-missing").key();
    let r = s.claim(&key, 1, T0, T0 + LEASE).await.expect("claim");
    assert_eq!(r, Claim::Missing);
    assert_eq!(
        s.get_optin(&key).await.expect("get_optin"),
        None,
        "a claim never creates a record"
    );
}

pub async fn claim_answered<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "claim-answered").await;
    let at = T0 + 2_000;
    let l = link_of(p, o.recipient.clone(), "psid-answered", at);
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    let r = not_claimable(s, &o.key(), at + 1).await;
    assert_eq!(r.state, OptinState::Answered);
    assert_eq!(r.attempts, 0);
}

// ---------------------------------------------------------------------------------------------
// Generations

/// A claim names its generation: another one (older or newer) is refused, nothing changes.
pub async fn claim_other_generation<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "claim-gen").await;
    let key = o.key();
    let now = T0 + 1_000;
    for generation in [0, 2] {
        match s
            .claim(&key, generation, now, now + LEASE)
            .await
            .expect("claim")
        {
            Claim::NotClaimable(r) => assert_eq!(*r, o, "generation {generation}: untouched"),
            other => panic!("a claim of generation {generation} on generation 1: {other:?}"),
        }
    }
    assert_eq!(get(s, &key).await, o);
    assert_eq!(claimed(s, &key, now).await.generation, 1);
}

/// A later opt-in on this record (built like a first one) at `at_ms`.
fn later_optin(seen: &Optin, event: &str, at_ms: i64) -> Optin {
    let mut next = Optin::pending(
        seen.recipient.clone(),
        &seen.page_id,
        "page",
        EntryPoint::LoginConnect,
        OptinSource::Webhook,
        at_ms,
        event,
        at_ms + 5,
    );
    next.job_claim_until_ms = at_ms + 5 + JOB_CLAIM;
    seen.next_generation(next)
}

/// Claims and finishes generation `generation` of `key` with `finish` at `at`.
async fn finished<S: Store>(s: &S, key: &str, generation: u32, finish: Finish, at: i64) -> Optin {
    let c = match s
        .claim(key, generation, at, at + LEASE)
        .await
        .expect("claim")
    {
        Claim::Claimed(c) => *c,
        other => panic!("claim of {key} generation {generation} at {at}: {other:?}"),
    };
    assert!(s
        .finish(key, c.attempts, &finish, at + 1)
        .await
        .expect("finish"));
    get(s, key).await
}

/// A closed generation is replaced by the next: its number, its own fields, the earlier
/// outcomes in order; only the new generation can be claimed.
pub async fn reopen_closed_generation<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "reopen").await;
    let key = o.key();
    let sent = Finish::Sent {
        message_id: Some("m_gen1".into()),
        sent_at_ms: T0 + 1_001,
    };
    let gen1 = finished(s, &key, 1, sent, T0 + 1_000).await;
    assert_eq!((gen1.state, gen1.generation), (OptinState::Sent, 1));

    let at2 = T0 + 2 * DAY_MS;
    let next = later_optin(&gen1, "optin:again", at2);
    assert_eq!(next.generation, 2);
    assert_eq!(
        s.reopen(&gen1, &next).await.expect("reopen"),
        Reopened::Reopened
    );
    let gen2 = get(s, &key).await;
    assert_eq!(
        gen2, next,
        "the stored record is the next generation, whole"
    );
    assert_eq!(gen2.state, OptinState::Pending);
    assert_eq!(gen2.attempts, 0);
    assert_eq!(gen2.deadline_at_ms, at2 + DAY_MS, "its own deadline");
    assert_ne!(gen2.schedule_name, gen1.schedule_name, "its own schedule");
    assert_eq!(
        gen2.history,
        vec![gen1.outcome()],
        "the first outcome is kept"
    );
    assert_eq!(gen2.history[0].message_id.as_deref(), Some("m_gen1"));

    match s
        .claim(&key, 1, at2 + 10, at2 + 10 + LEASE)
        .await
        .expect("claim")
    {
        Claim::NotClaimable(r) => assert_eq!(*r, gen2, "generation 1 is closed for good"),
        other => panic!("a claim of the closed generation 1: {other:?}"),
    }
    // Generation 2 ends otherwise (expired), and a third opt-in opens generation 3.
    let expired = s
        .expire(&key, gen2.deadline_at_ms, "deadline missed")
        .await
        .expect("expire")
        .expect("generation 2 expires");
    let at3 = at2 + 3 * DAY_MS;
    let next3 = later_optin(&expired, "optin:third", at3);
    assert_eq!(
        s.reopen(&expired, &next3).await.expect("reopen"),
        Reopened::Reopened
    );
    let gen3 = get(s, &key).await;
    assert_eq!(gen3.generation, 3);
    assert_eq!(
        gen3.history,
        vec![gen1.outcome(), expired.outcome()],
        "history is appended, oldest first"
    );
    assert_eq!(gen3.history[1].state, OptinState::Expired);
    let c = claimed_gen(s, &key, 3, at3 + 10).await;
    assert_eq!((c.generation, c.attempts), (3, 1));
}

/// A pending opt-in the login callback started, created at [`T0`].
async fn created_by_login<S: Store>(s: &S, p: &str, name: &str) -> Optin {
    let mut o = optin(p, name);
    o.source = OptinSource::Login;
    assert_eq!(
        s.create_optin(&o).await.expect("create_optin"),
        Created::Created
    );
    o
}

/// The webhook's confirmation of a login-started generation: recorded once, only on that
/// generation, only for the login source, in any state; a missing key is not created.
pub async fn confirm_rules<S: Store>(s: &S, p: &str) {
    let o = created_by_login(s, p, "confirm").await;
    let key = o.key();
    assert!(
        !s.confirm(&key, 2, T0 + 10).await.expect("confirm"),
        "another generation"
    );
    assert_eq!(get(s, &key).await, o, "nothing written");
    assert!(s.confirm(&key, 1, T0 + 20).await.expect("confirm"));
    let confirmed = get(s, &key).await;
    assert_eq!(confirmed.confirmed_at_ms, Some(T0 + 20));
    assert_eq!(confirmed.updated_at_ms, T0 + 20, "a write moves updated_at");
    assert_eq!(
        confirmed,
        Optin {
            confirmed_at_ms: Some(T0 + 20),
            updated_at_ms: T0 + 20,
            ..o.clone()
        },
        "nothing else changes"
    );
    assert!(
        !s.confirm(&key, 1, T0 + 30).await.expect("confirm"),
        "confirmed once"
    );
    assert_eq!(
        get(s, &key).await.confirmed_at_ms,
        Some(T0 + 20),
        "the first stays"
    );

    // A webhook-started opt-in is Meta's own: nothing to confirm.
    let w = created(s, p, "confirm-webhook").await;
    assert!(!s.confirm(&w.key(), 1, T0 + 20).await.expect("confirm"));
    assert_eq!(get(s, &w.key()).await.confirmed_at_ms, None);

    // Any state: the first message may be out before Meta's webhook arrives.
    let sent = created_by_login(s, p, "confirm-sent").await;
    let sent_key = sent.key();
    let finish = Finish::Sent {
        message_id: None,
        sent_at_ms: T0 + 1_001,
    };
    let closed = finished(s, &sent_key, 1, finish, T0 + 1_000).await;
    assert!(s.confirm(&sent_key, 1, T0 + 2_000).await.expect("confirm"));
    let after = get(s, &sent_key).await;
    assert_eq!(
        (after.state, after.confirmed_at_ms),
        (OptinState::Sent, Some(T0 + 2_000))
    );
    assert_eq!(after.sent_at_ms, closed.sent_at_ms);

    let missing = optin_key(&login(p, "confirm-nobody"), &page(p));
    assert!(!s.confirm(&missing, 1, T0).await.expect("confirm"));
    assert_eq!(s.get_optin(&missing).await.expect("get_optin"), None);
}

/// A confirmation racing a new generation is not lost: it moves the record, so a reopen from
/// the record read before it is refused, and the reopen from a fresh read keeps it in the
/// history.
pub async fn confirm_reaches_the_history<S: Store>(s: &S, p: &str) {
    let o = created_by_login(s, p, "confirm-history").await;
    let key = o.key();
    let finish = Finish::Sent {
        message_id: None,
        sent_at_ms: T0 + 1_001,
    };
    let seen = finished(s, &key, 1, finish, T0 + 1_000).await;
    assert!(s.confirm(&key, 1, T0 + 2_000).await.expect("confirm"));
    let at2 = T0 + 2 * DAY_MS;
    match s
        .reopen(&seen, &later_optin(&seen, "optin:confirm-again", at2))
        .await
        .expect("reopen")
    {
        Reopened::Changed(now) => assert_eq!(now.confirmed_at_ms, Some(T0 + 2_000)),
        other => panic!("a reopen from before the confirmation: {other:?}"),
    }
    let fresh = get(s, &key).await;
    assert_eq!(
        s.reopen(&fresh, &later_optin(&fresh, "optin:confirm-again", at2))
            .await
            .expect("reopen"),
        Reopened::Reopened
    );
    let gen2 = get(s, &key).await;
    assert_eq!(gen2.confirmed_at_ms, None, "generation 2 is not confirmed");
    assert_eq!(gen2.history[0].confirmed_at_ms, Some(T0 + 2_000));
    assert_eq!(
        gen2.confirmation_of(1),
        Some((OptinSource::Login, Some(T0 + 2_000)))
    );
    assert!(
        !s.confirm(&key, 1, T0 + 3_000).await.expect("confirm"),
        "generation 1 is history"
    );
}

async fn claimed_gen<S: Store>(s: &S, key: &str, generation: u32, now: i64) -> Optin {
    match s
        .claim(key, generation, now, now + LEASE)
        .await
        .expect("claim")
    {
        Claim::Claimed(o) => *o,
        other => panic!("claim of {key} generation {generation} at {now}: {other:?}"),
    }
}

/// A stale `seen` (the record changed since it was read: another copy reopened it, or any
/// write moved it) gets `Changed` with the current record, and nothing is written.
pub async fn reopen_only_when_unchanged<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "reopen-stale").await;
    let key = o.key();
    let failed = Finish::Failed {
        error: "graph 100: bad request".into(),
    };
    let closed = finished(s, &key, 1, failed, T0 + 1_000).await;
    let at = T0 + 2 * DAY_MS;

    // Same state and generation, but written since (a link added the PSID).
    let l = link_of(p, o.recipient.clone(), "psid-stale", at - 10);
    assert_eq!(s.link(&l, at - 5).await.expect("link"), LinkResult::Linked);
    let moved = get(s, &key).await;
    assert_eq!(moved.state, OptinState::Failed, "the link kept the outcome");
    assert_eq!(moved.updated_at_ms, at - 5);
    let next = later_optin(&closed, "optin:stale", at);
    match s.reopen(&closed, &next).await.expect("reopen") {
        Reopened::Changed(now) => assert_eq!(*now, moved, "Changed names the stored record"),
        other => panic!("a reopen from a stale read: {other:?}"),
    }
    assert_eq!(get(s, &key).await, moved, "nothing written");

    // From the fresh read it opens; the same (now stale) read again sees generation 2.
    let next = later_optin(&moved, "optin:fresh", at);
    assert_eq!(
        s.reopen(&moved, &next).await.expect("reopen"),
        Reopened::Reopened
    );
    let again = later_optin(&moved, "optin:copy", at + 1);
    match s.reopen(&moved, &again).await.expect("reopen") {
        Reopened::Changed(now) => {
            assert_eq!(now.generation, 2);
            assert_eq!(*now, next, "the first reopen's generation stays");
        }
        other => panic!("a second reopen of generation 1: {other:?}"),
    }
    assert_eq!(get(s, &key).await, next);
}

/// Only a closed generation reopens: pending, sending (live or lapsed) are `Changed`.
pub async fn reopen_only_from_closed<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "reopen-open").await;
    let key = o.key();
    let next = later_optin(&o, "optin:early", T0 + 1_000);
    match s.reopen(&o, &next).await.expect("reopen") {
        Reopened::Changed(now) => assert_eq!(*now, o),
        other => panic!("a reopen of a pending generation: {other:?}"),
    }
    let c = claimed(s, &key, T0 + 1_000).await;
    let next = later_optin(&c, "optin:during", T0 + 1_500);
    for _ in 0..2 {
        match s.reopen(&c, &next).await.expect("reopen") {
            Reopened::Changed(now) => assert_eq!(*now, c),
            other => panic!("a reopen of a sending generation: {other:?}"),
        }
    }
    assert_eq!(get(s, &key).await, c, "nothing written");
}

/// A missing key is `Missing` (nothing created); a `next` that is not the successor is refused.
pub async fn reopen_missing_and_misuse<S: Store>(s: &S, p: &str) {
    let mut ghost = optin(p, "reopen-missing");
    ghost.state = OptinState::Sent;
    let next = later_optin(&ghost, "optin:ghost", T0 + 2 * DAY_MS);
    assert_eq!(
        s.reopen(&ghost, &next).await.expect("reopen"),
        Reopened::Missing
    );
    assert_eq!(s.get_optin(&ghost.key()).await.expect("get"), None);

    let o = created(s, p, "reopen-misuse").await;
    let closed = finished(
        s,
        &o.key(),
        1,
        Finish::OptedOut {
            error: "graph 551".into(),
        },
        T0 + 1_000,
    )
    .await;
    let mut skip = later_optin(&closed, "optin:skip", T0 + 2 * DAY_MS);
    skip.generation = 3;
    let other_key = later_optin(&ghost, "optin:other", T0 + 2 * DAY_MS);
    for bad in [skip, other_key] {
        let err = s.reopen(&closed, &bad).await.expect_err("not a successor");
        assert!(matches!(err, PortError::Rejected(_)), "{err}");
    }
    assert_eq!(get(s, &o.key()).await, closed, "nothing written");
    assert_eq!(s.get_optin(&ghost.key()).await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// Finishing an attempt

pub async fn finish_stale_attempt<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "stale").await;
    let key = o.key();
    let t1 = T0 + 1_000;
    claimed(s, &key, t1).await;
    claimed(s, &key, t1 + LEASE).await;
    let sent = Finish::Sent {
        message_id: Some("m_stale".into()),
        sent_at_ms: t1 + LEASE + 5,
    };
    let stale = s
        .finish(&key, 1, &sent, t1 + LEASE + 5)
        .await
        .expect("finish");
    assert!(!stale, "attempt 1 lost its claim to attempt 2");
    let now = get(s, &key).await;
    assert_eq!((now.state, now.attempts), (OptinState::Sending, 2));
    assert_eq!(now.message_id, None);

    assert!(s
        .finish(&key, 2, &sent, t1 + LEASE + 6)
        .await
        .expect("finish"));
    assert!(
        !s.finish(&key, 2, &sent, t1 + LEASE + 7)
            .await
            .expect("finish"),
        "an attempt finishes once"
    );
    let missing = optin(p, "stale-missing").key();
    assert!(!s.finish(&missing, 1, &sent, T0).await.expect("finish"));
    assert_eq!(s.get_optin(&missing).await.expect("get"), None);
}

pub async fn finish_outcomes<S: Store>(s: &S, p: &str) {
    let t = T0 + 1_000;
    let done = t + 500;

    let o = created(s, p, "fin-sent").await;
    claimed(s, &o.key(), t).await;
    let f = Finish::Sent {
        message_id: Some("m_abc".into()),
        sent_at_ms: done - 1,
    };
    assert!(s.finish(&o.key(), 1, &f, done).await.expect("finish"));
    let r = get(s, &o.key()).await;
    assert_eq!(r.state, OptinState::Sent);
    assert_eq!(r.message_id.as_deref(), Some("m_abc"));
    assert_eq!(r.sent_at_ms, Some(done - 1));
    assert_eq!(r.attempts, 1);
    assert_eq!(r.updated_at_ms, done);

    let o = created(s, p, "fin-sent-no-mid").await;
    claimed(s, &o.key(), t).await;
    let f = Finish::Sent {
        message_id: None,
        sent_at_ms: done,
    };
    assert!(s.finish(&o.key(), 1, &f, done).await.expect("finish"));
    let r = get(s, &o.key()).await;
    assert_eq!(
        (r.state, r.message_id, r.sent_at_ms),
        (OptinState::Sent, None, Some(done))
    );

    let o = created(s, p, "fin-release").await;
    claimed(s, &o.key(), t).await;
    let f = Finish::Release {
        error: "graph 4: rate limited".into(),
    };
    assert!(s.finish(&o.key(), 1, &f, done).await.expect("finish"));
    let r = get(s, &o.key()).await;
    assert_eq!(r.state, OptinState::Pending);
    assert_eq!(r.last_error.as_deref(), Some("graph 4: rate limited"));
    assert_eq!(r.attempts, 1);
    assert_eq!(r.sent_at_ms, None);
    let again = claimed(s, &o.key(), done + 1).await;
    assert_eq!(again.attempts, 2, "a released opt-in is claimable at once");

    let failed = "graph 100: bad request";
    let unreachable = "graph 551: unavailable";
    for (name, f, state, error) in [
        (
            "fin-failed",
            Finish::Failed {
                error: failed.into(),
            },
            OptinState::Failed,
            failed,
        ),
        (
            "fin-opted-out",
            Finish::OptedOut {
                error: unreachable.into(),
            },
            OptinState::OptedOut,
            unreachable,
        ),
    ] {
        let o = created(s, p, name).await;
        claimed(s, &o.key(), t).await;
        assert!(s.finish(&o.key(), 1, &f, done).await.expect("finish"));
        let r = get(s, &o.key()).await;
        assert_eq!(r.state, state, "{name}");
        assert_eq!(r.last_error.as_deref(), Some(error), "{name}");
        assert_eq!(r.message_id, None, "{name}");
        not_claimable(s, &o.key(), done + LEASE).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry

pub async fn expire_rules<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "expire").await;
    let key = o.key();
    let deadline = o.deadline_at_ms;
    let early = s
        .expire(&key, deadline - 1, "deadline")
        .await
        .expect("expire");
    assert_eq!(early, None, "nothing expires before its deadline");
    assert_eq!(get(s, &key).await.state, OptinState::Pending);

    let e = s
        .expire(&key, deadline, "deadline missed")
        .await
        .expect("expire")
        .expect("expires at the deadline");
    assert_eq!(e.state, OptinState::Expired);
    assert_eq!(e.last_error.as_deref(), Some("deadline missed"));
    assert_eq!(e.updated_at_ms, deadline);
    assert_eq!(e.created_by, o.created_by, "the whole record comes back");
    assert_eq!(get(s, &key).await, e);
    assert_eq!(
        s.expire(&key, deadline + 1, "again").await.expect("expire"),
        None,
        "expires once"
    );

    let o = created(s, p, "expire-sent").await;
    claimed(s, &o.key(), T0 + 1_000).await;
    let f = Finish::Sent {
        message_id: Some("m_x".into()),
        sent_at_ms: T0 + 1_100,
    };
    assert!(s.finish(&o.key(), 1, &f, T0 + 1_100).await.expect("finish"));
    let r = s
        .expire(&o.key(), o.deadline_at_ms + 1, "deadline")
        .await
        .expect("expire");
    assert_eq!(r, None, "a sent opt-in never expires");
    assert_eq!(get(s, &o.key()).await.state, OptinState::Sent);

    // A live send at the deadline is left to finish; once its lease lapses it expires.
    let o = created(s, p, "expire-sending").await;
    let c = claimed(s, &o.key(), o.deadline_at_ms - 10).await;
    let r = s
        .expire(&o.key(), o.deadline_at_ms, "deadline")
        .await
        .expect("expire");
    assert_eq!(r, None, "a live lease is not expired");
    let r = s
        .expire(&o.key(), c.lease_until_ms, "deadline")
        .await
        .expect("expire")
        .expect("a lapsed lease past the deadline expires");
    assert_eq!(r.state, OptinState::Expired);
    assert_eq!(r.attempts, 1);

    let missing = optin(p, "expire-missing").key();
    assert_eq!(
        s.expire(&missing, T0 + 2 * DAY_MS, "deadline")
            .await
            .expect("expire"),
        None
    );
    assert_eq!(s.get_optin(&missing).await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// The first-message job

pub async fn take_job_rules<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "job").await;
    let key = o.key();
    let creator_until = o.job_claim_until_ms;
    assert!(
        !s.take_job(&key, creator_until - 1, creator_until + 60_000)
            .await
            .expect("take_job"),
        "the creator's claim is live"
    );
    assert!(
        s.take_job(&key, creator_until, creator_until + 60_000)
            .await
            .expect("take_job"),
        "a lapsed creator claim is taken over"
    );
    let r = get(s, &key).await;
    assert_eq!(r.job_claim_until_ms, creator_until + 60_000);
    assert!(!r.job_enqueued);
    assert!(
        !s.take_job(&key, creator_until + 1, creator_until + 90_000)
            .await
            .expect("take_job"),
        "the new claim is live"
    );

    s.mark_job_enqueued(&key, creator_until + 2)
        .await
        .expect("mark_job_enqueued");
    let r = get(s, &key).await;
    assert!(r.job_enqueued);
    assert_eq!(r.job_claim_until_ms, 0, "marking clears the claim");
    assert_eq!(r.updated_at_ms, creator_until + 2);
    assert_eq!(r.state, OptinState::Pending);
    assert!(
        !s.take_job(
            &key,
            creator_until + 10 * 60_000,
            creator_until + 11 * 60_000
        )
        .await
        .expect("take_job"),
        "an enqueued job is never taken"
    );

    let o = created(s, p, "job-sending").await;
    claimed(s, &o.key(), o.job_claim_until_ms + 1).await;
    assert!(
        !s.take_job(
            &o.key(),
            o.job_claim_until_ms + 2,
            o.job_claim_until_ms + 60_000
        )
        .await
        .expect("take_job"),
        "a sending opt-in's job is not taken while its lease runs"
    );
    // The sender of an inline send died: once the lease lapsed, the job is taken over.
    let lapsed = o.job_claim_until_ms + 1 + LEASE;
    assert!(
        s.take_job(&o.key(), lapsed, lapsed + 60_000)
            .await
            .expect("take_job"),
        "a sending opt-in whose lease lapsed has its job taken over"
    );
    let r = get(s, &o.key()).await;
    assert_eq!((r.state, r.job_enqueued), (OptinState::Sending, false));
    assert_eq!(r.job_claim_until_ms, lapsed + 60_000);

    let missing = optin(p, "job-missing").key();
    assert!(!s.take_job(&missing, T0, T0 + 1).await.expect("take_job"));
    s.mark_job_enqueued(&missing, T0)
        .await
        .expect("marking a missing opt-in is a no-op");
    assert_eq!(s.get_optin(&missing).await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// 50 racing creates of one key: one wins, every other sees the winner's record.
pub async fn concurrent_creates<S: Store>(s: &S, p: &str) {
    let candidates: Vec<Optin> = (0..50)
        .map(|i| {
            let mut o = optin(p, "race-create");
            o.created_by = format!("optin:race:{i}");
            o
        })
        .collect();
    let results = join_all(candidates.iter().map(|o| s.create_optin(o))).await;
    let mut winners = 0;
    let mut seen = Vec::new();
    for r in results {
        match r.expect("create_optin") {
            Created::Created => winners += 1,
            Created::Exists(o) => seen.push(*o),
        }
    }
    assert_eq!(winners, 1, "exactly one create wins");
    let stored = get(s, &candidates[0].key()).await;
    assert!(
        candidates.contains(&stored),
        "the stored record is one candidate"
    );
    assert!(
        seen.iter().all(|o| *o == stored),
        "every loser sees the winner"
    );
}

/// 20 racing claims: one send.
pub async fn concurrent_claims<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "race-claim").await;
    let key = o.key();
    let now = T0 + 1_000;
    let results = join_all((0..20).map(|_| s.claim(&key, 1, now, now + LEASE))).await;
    let mut claimed = 0;
    for r in results {
        match r.expect("claim") {
            Claim::Claimed(c) => {
                claimed += 1;
                assert_eq!(c.attempts, 1);
            }
            Claim::NotClaimable(c) => assert_eq!(c.state, OptinState::Sending),
            Claim::Missing => panic!("the opt-in exists"),
        }
    }
    assert_eq!(claimed, 1, "exactly one claim wins");
    assert_eq!(get(s, &key).await.attempts, 1);
}

// ---------------------------------------------------------------------------------------------
// People

pub async fn user_message_monotonic<S: Store>(s: &S, p: &str) {
    let (pg, psid) = (page(p), "psid-window");
    let pg_ref = pg.as_str();
    let m = |at| async move {
        s.record_user_message(pg_ref, psid, at)
            .await
            .expect("record")
    };
    let first = m(T0 + 200).await;
    assert!(first.moved, "first message creates the person");
    let p = first.person.expect("the person comes back");
    assert_eq!(
        (p.psid.as_str(), p.last_user_message_at_ms),
        (psid, Some(T0 + 200))
    );
    let older = m(T0 + 100).await;
    assert!(!older.moved, "older never moves it back");
    assert_eq!(
        older.person.and_then(|p| p.last_user_message_at_ms),
        Some(T0 + 200),
        "a refused move still hands back the person as stored"
    );
    assert!(!m(T0 + 200).await.moved, "equal is not a move");
    assert!(m(T0 + 300).await.moved);
    let person = s
        .get_person(&pg, psid)
        .await
        .expect("get_person")
        .expect("person exists");
    assert_eq!(person.last_user_message_at_ms, Some(T0 + 300));
    assert_eq!(
        (person.page_id.as_str(), person.psid.as_str()),
        (pg.as_str(), psid)
    );
    assert_eq!(person.login_id, None);
    assert_eq!(person.opted_out_at_ms, None);
}

/// The reply came first: the link creates a complete, answered opt-in; the late opt-in
/// converges on it.
pub async fn link_reply_first<S: Store>(s: &S, p: &str) {
    let id = login(p, "reply-first");
    let at = T0 + 5_000;
    let l = link_of(p, id.clone(), "psid-rf", at);
    assert_eq!(s.link(&l, at + 7).await.expect("link"), LinkResult::Linked);

    let o = get(s, &l.optin_key).await;
    assert_eq!(o.key(), l.optin_key);
    assert_eq!(o.recipient, id);
    assert_eq!(o.page_id, l.page_id);
    assert_eq!(o.object, "page");
    assert_eq!(o.entry_point, EntryPoint::LoginConnect);
    assert_eq!(o.source, OptinSource::Reply);
    assert_eq!(o.state, OptinState::Answered);
    assert_eq!(o.opted_in_at_ms, at);
    assert_eq!(o.deadline_at_ms, at + DAY_MS);
    assert_eq!(o.attempts, 0);
    assert_eq!(o.lease_until_ms, 0);
    assert!(!o.job_enqueued);
    assert_eq!(o.schedule_name, schedule_name(&l.optin_key));
    assert_eq!(o.psid.as_deref(), Some("psid-rf"));
    assert_eq!(o.answered_at_ms, Some(at));
    assert_eq!(o.created_by, "reply");
    assert_eq!(o.updated_at_ms, at + 7);
    assert_eq!(
        (o.message_id, o.sent_at_ms, o.last_error),
        (None, None, None)
    );

    let person = s
        .get_person(&l.page_id, "psid-rf")
        .await
        .expect("get_person")
        .expect("person exists");
    assert_eq!(person.login_id.as_deref(), Some(id.id.as_str()));
    assert_eq!(person.user_ref, None);
    assert_eq!(person.linked_at_ms, Some(at));

    let late = Optin::pending(
        id.clone(),
        &l.page_id,
        "page",
        EntryPoint::LoginConnect,
        OptinSource::Webhook,
        T0,
        "optin:late",
        at + 10,
    );
    match s.create_optin(&late).await.expect("create_optin") {
        Created::Exists(e) => assert_eq!(e.state, OptinState::Answered),
        Created::Created => panic!("the reply already created the opt-in"),
    }
    not_claimable(s, &l.optin_key, at + 20).await;

    // The same reply again (a Meta retry) keeps the first times.
    let again = link_of(p, id, "psid-rf", at + 1_000);
    assert_eq!(
        s.link(&again, at + 1_000).await.expect("link"),
        LinkResult::Linked
    );
    let o = get(s, &l.optin_key).await;
    assert_eq!(o.answered_at_ms, Some(at));
    assert_eq!(o.opted_in_at_ms, at);
    let person = s
        .get_person(&l.page_id, "psid-rf")
        .await
        .expect("get_person")
        .expect("person exists");
    assert_eq!(person.linked_at_ms, Some(at));
}

/// A reply to a pending or sent opt-in adds the PSID and answers it, keeping everything else.
pub async fn link_existing<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "link-pending").await;
    let at = T0 + 3_000;
    let l = link_of(p, o.recipient.clone(), "psid-lp", at);
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    let r = get(s, &o.key()).await;
    let mut expected = o.clone();
    expected.psid = Some("psid-lp".into());
    expected.answered_at_ms = Some(at);
    expected.state = OptinState::Answered;
    expected.updated_at_ms = at;
    assert_eq!(r, expected);

    let o = created(s, p, "link-sent").await;
    claimed(s, &o.key(), T0 + 1_000).await;
    let f = Finish::Sent {
        message_id: Some("m_ls".into()),
        sent_at_ms: T0 + 1_100,
    };
    assert!(s.finish(&o.key(), 1, &f, T0 + 1_100).await.expect("finish"));
    let l = link_of(p, o.recipient.clone(), "psid-ls", at);
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    let r = get(s, &o.key()).await;
    assert_eq!(r.state, OptinState::Answered);
    assert_eq!(r.psid.as_deref(), Some("psid-ls"));
    assert_eq!(r.answered_at_ms, Some(at));
    assert_eq!(
        r.message_id.as_deref(),
        Some("m_ls"),
        "the send is still on record"
    );
    assert_eq!(r.sent_at_ms, Some(T0 + 1_100));
    assert_eq!(r.source, OptinSource::Webhook);
    assert_eq!(r.opted_in_at_ms, T0);
    let person = s
        .get_person(&l.page_id, "psid-ls")
        .await
        .expect("get_person")
        .expect("person");
    assert_eq!(person.login_id.as_deref(), Some(o.recipient.id.as_str()));
}

/// A live `sending` lease blocks the link (both halves); after it lapses the link goes through.
pub async fn link_in_flight<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "link-inflight").await;
    let c = claimed(s, &o.key(), T0 + 1_000).await;
    let l = link_of(p, o.recipient.clone(), "psid-if", T0 + 1_500);
    let r = s.link(&l, T0 + 1_500).await.expect("link");
    assert_eq!(r, LinkResult::SendInFlight);
    assert_eq!(get(s, &o.key()).await, c, "the opt-in is untouched");
    assert_eq!(
        s.get_person(&l.page_id, "psid-if")
            .await
            .expect("get_person"),
        None,
        "the person half is not written either"
    );

    let r = s.link(&l, c.lease_until_ms).await.expect("link");
    assert_eq!(r, LinkResult::Linked, "a lapsed lease does not block");
    let r = get(s, &o.key()).await;
    assert_eq!(r.state, OptinState::Answered);
    assert_eq!(r.psid.as_deref(), Some("psid-if"));
    assert!(s
        .get_person(&l.page_id, "psid-if")
        .await
        .expect("get_person")
        .is_some());
}

pub async fn link_user_ref<S: Store>(s: &S, p: &str) {
    let id = Identity::new(IdentityKind::UserRef, format!("{p}-ur"));
    let at = T0 + 4_000;
    let l = link_of(p, id.clone(), "psid-ur", at);
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    let person = s
        .get_person(&l.page_id, "psid-ur")
        .await
        .expect("get_person")
        .expect("person");
    assert_eq!(person.user_ref.as_deref(), Some(id.id.as_str()));
    assert_eq!(person.login_id, None);
    assert_eq!(person.linked_at_ms, Some(at));
    let o = get(s, &l.optin_key).await;
    assert_eq!(o.recipient, id);
    assert_eq!(o.entry_point, EntryPoint::Checkbox);
    assert_eq!(o.state, OptinState::Answered);
}

async fn person<S: Store>(s: &S, page_id: &str, psid: &str) -> crate::ports::store::Person {
    s.get_person(page_id, psid)
        .await
        .expect("get_person")
        .unwrap_or_else(|| panic!("person {page_id}/{psid} should exist"))
}

/// A reply never rewrites a closed outcome: `failed`, `opted_out` and `expired` stay (the PSID
/// is recorded), and the person is linked all the same.
pub async fn link_keeps_closed_outcomes<S: Store>(s: &S, p: &str) {
    let failed = Finish::Failed {
        error: "graph 100: bad request".into(),
    };
    let out = Finish::OptedOut {
        error: "graph 551: unavailable".into(),
    };
    for (name, finish) in [
        ("link-failed", Some(failed)),
        ("link-out", Some(out)),
        ("link-expired", None),
    ] {
        let o = created(s, p, name).await;
        let closed = match finish {
            Some(f) => finished(s, &o.key(), 1, f, T0 + 1_000).await,
            None => s
                .expire(&o.key(), o.deadline_at_ms, "deadline missed")
                .await
                .expect("expire")
                .expect("expires"),
        };
        let psid = format!("psid-{name}");
        let now = closed.updated_at_ms + 100;
        let l = link_of(p, o.recipient.clone(), &psid, now - 1);
        assert_eq!(
            s.link(&l, now).await.expect("link"),
            LinkResult::Linked,
            "{name}"
        );
        let r = get(s, &o.key()).await;
        let mut expected = closed.clone();
        expected.psid = Some(psid.clone());
        expected.updated_at_ms = now;
        assert_eq!(
            r, expected,
            "{name}: the outcome stays; only the PSID is added"
        );
        assert_eq!(r.answered_at_ms, None, "{name}");
        let who = person(s, &l.page_id, &psid).await;
        assert_eq!(
            who.login_id.as_deref(),
            Some(o.recipient.id.as_str()),
            "{name}"
        );
        assert_eq!(who.linked, vec![l.tag()], "{name}");
    }
}

/// The opt-in's PSID is the first reply's: a later reply from another PSID links that person
/// but leaves the opt-in as it is (its `updated_at_ms` too).
pub async fn link_sets_psid_only_if_absent<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "link-psid").await;
    let at = T0 + 3_000;
    let first = link_of(p, o.recipient.clone(), "psid-first", at);
    assert_eq!(s.link(&first, at).await.expect("link"), LinkResult::Linked);
    let answered = get(s, &o.key()).await;
    assert_eq!(answered.state, OptinState::Answered);
    assert_eq!(answered.psid.as_deref(), Some("psid-first"));

    let second = link_of(p, o.recipient.clone(), "psid-second", at + 1_000);
    assert_eq!(
        s.link(&second, at + 1_000).await.expect("link"),
        LinkResult::Linked
    );
    assert_eq!(
        get(s, &o.key()).await,
        answered,
        "an answered opt-in with a PSID is not written"
    );
    let who = person(s, &second.page_id, "psid-second").await;
    assert_eq!(who.login_id.as_deref(), Some(o.recipient.id.as_str()));
    assert_eq!(who.linked_at_ms, Some(at + 1_000));
}

/// A missing opt-in is created (as `answered`) only with `create_missing`; without, only the
/// person is written.
pub async fn link_create_missing_only_when_asked<S: Store>(s: &S, p: &str) {
    let id = login(p, "link-unknown");
    let at = T0 + 6_000;
    let mut l = link_of(p, id.clone(), "psid-unknown", at);
    l.create_missing = false;
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    assert_eq!(
        s.get_optin(&l.optin_key).await.expect("get_optin"),
        None,
        "no obligation is invented"
    );
    let who = person(s, &l.page_id, "psid-unknown").await;
    assert_eq!(who.login_id.as_deref(), Some(id.id.as_str()));
    assert_eq!(who.linked, vec![l.tag()]);
    assert_eq!(who.linked_at_ms, Some(at));

    l.create_missing = true;
    assert_eq!(s.link(&l, at + 1).await.expect("link"), LinkResult::Linked);
    let o = get(s, &l.optin_key).await;
    assert_eq!(o, l.reply_optin(at + 1).expect("reply opt-in"));
    assert_eq!((o.state, o.generation), (OptinState::Answered, 1));
}

/// The first identifier of each kind stays on the person; every one is listed in `linked`,
/// sorted, once.
pub async fn link_keeps_first_identifier<S: Store>(s: &S, p: &str) {
    let psid = "psid-two-links";
    let at = T0 + 7_000;
    // The later-sorting identifier links first: `linked` is sorted, not in arrival order.
    let l2 = link_of(p, login(p, "zz-second"), psid, at);
    let l1 = link_of(p, login(p, "aa-first"), psid, at + 1_000);
    let u1 = link_of(
        p,
        Identity::new(IdentityKind::UserRef, format!("{p}-ur-two")),
        psid,
        at + 2_000,
    );
    for l in [&l2, &l1, &u1] {
        assert_eq!(s.link(l, l.at_ms).await.expect("link"), LinkResult::Linked);
    }
    let who = person(s, &l2.page_id, psid).await;
    assert_eq!(
        who.login_id.as_deref(),
        Some(l2.identifier.id.as_str()),
        "the first login_id stays"
    );
    assert_eq!(who.user_ref.as_deref(), Some(u1.identifier.id.as_str()));
    assert_eq!(who.linked_at_ms, Some(at), "the first link's time stays");
    let mut tags = vec![l2.tag(), l1.tag(), u1.tag()];
    tags.sort();
    assert_eq!(who.linked, tags, "every identifier, sorted");
    // Each opt-in is answered by its own link.
    for l in [&l2, &l1, &u1] {
        let o = get(s, &l.optin_key).await;
        assert_eq!(o.state, OptinState::Answered);
        assert_eq!(o.psid.as_deref(), Some(psid));
    }
}

/// The same reply again (a Meta retry, a redelivery) changes nothing on either item.
pub async fn link_is_idempotent<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "link-twice").await;
    let at = T0 + 8_000;
    let l = link_of(p, o.recipient.clone(), "psid-twice", at);
    assert_eq!(s.link(&l, at).await.expect("link"), LinkResult::Linked);
    let optin_once = get(s, &o.key()).await;
    let person_once = person(s, &l.page_id, "psid-twice").await;
    for later in [at + 1, at + 60_000] {
        assert_eq!(s.link(&l, later).await.expect("link"), LinkResult::Linked);
        assert_eq!(get(s, &o.key()).await, optin_once);
        assert_eq!(person(s, &l.page_id, "psid-twice").await, person_once);
    }
    assert_eq!(person_once.linked, vec![l.tag()], "listed once");
}

pub async fn referral_monotonic<S: Store>(s: &S, p: &str) {
    let (pg, psid) = (page(p), "psid-ref");
    let r =
        |at: i64, reference: Option<&str>, source: Option<&str>, ad: Option<&str>| ReferralInfo {
            reference: reference.map(str::to_string),
            source: source.map(str::to_string),
            ad_id: ad.map(str::to_string),
            at_ms: at,
        };
    let r2 = r(T0 + 200, Some("spring"), Some("ADS"), Some("ad-1"));
    assert!(s.record_referral(&pg, psid, &r2).await.expect("referral"));
    let older = r(T0 + 100, Some("older"), None, None);
    assert!(!s
        .record_referral(&pg, psid, &older)
        .await
        .expect("referral"));
    let same = r(T0 + 200, Some("same-time"), None, None);
    assert!(!s.record_referral(&pg, psid, &same).await.expect("referral"));
    let get_ref = || async {
        s.get_person(&pg, psid)
            .await
            .expect("get_person")
            .expect("person")
            .referral
    };
    assert_eq!(get_ref().await, Some(r2));
    let r3 = r(T0 + 300, None, Some("SHORTLINK"), None);
    assert!(s.record_referral(&pg, psid, &r3).await.expect("referral"));
    assert_eq!(
        get_ref().await,
        Some(r3),
        "absent fields of the newer referral stay absent"
    );
}

pub async fn tokens_monotonic<S: Store>(s: &S, p: &str) {
    let (pg, psid) = (page(p), "psid-tok");
    let tok =
        |topic: &str, token: Option<&str>, status, exp: Option<i64>, at: i64| MarketingToken {
            topic: topic.to_string(),
            token: token.map(str::to_string),
            status,
            expires_at_ms: exp,
            status_at_ms: at,
        };
    let exp = T0 + 180 * DAY_MS;
    let first = tok(
        "weekly",
        Some("tok-1"),
        TokenStatus::Active,
        Some(exp),
        T0 + 100,
    );
    assert!(s.set_token(&pg, psid, &first).await.expect("set_token"));
    assert_eq!(
        s.get_tokens(&pg, psid).await.expect("get_tokens"),
        vec![first]
    );

    let stop = tok("weekly", None, TokenStatus::Stopped, None, T0 + 300);
    assert!(s.set_token(&pg, psid, &stop).await.expect("set_token"));
    let stopped = tok(
        "weekly",
        Some("tok-1"),
        TokenStatus::Stopped,
        Some(exp),
        T0 + 300,
    );
    assert_eq!(
        s.get_tokens(&pg, psid).await.expect("get_tokens"),
        vec![stopped.clone()],
        "a STOP naming no token keeps the stored token and expiry"
    );
    let resume_older = tok("weekly", None, TokenStatus::Active, None, T0 + 200);
    assert!(!s
        .set_token(&pg, psid, &resume_older)
        .await
        .expect("set_token"));
    let resume_same = tok("weekly", None, TokenStatus::Active, None, T0 + 300);
    assert!(!s
        .set_token(&pg, psid, &resume_same)
        .await
        .expect("set_token"));
    assert_eq!(
        s.get_tokens(&pg, psid).await.expect("get_tokens"),
        vec![stopped],
        "an older (or same-time) change is ignored"
    );

    let other = tok("alerts", Some("tok-a"), TokenStatus::Active, None, T0 + 50);
    assert!(s.set_token(&pg, psid, &other).await.expect("set_token"));
    let renewed = tok("weekly", Some("tok-2"), TokenStatus::Active, None, T0 + 400);
    assert!(s.set_token(&pg, psid, &renewed).await.expect("set_token"));
    assert_eq!(
        s.get_tokens(&pg, psid).await.expect("get_tokens"),
        vec![other, renewed],
        "every topic, ordered by topic; a new token replaces token and expiry"
    );
    assert_eq!(
        s.get_tokens(&pg, "psid-no-tokens")
            .await
            .expect("get_tokens"),
        Vec::new()
    );
}

pub async fn opt_out_keeps_first<S: Store>(s: &S, p: &str) {
    let (pg, psid) = (page(p), "psid-out");
    s.opt_out(&pg, psid, "blocked", T0 + 200)
        .await
        .expect("opt_out");
    let get_p = || async {
        s.get_person(&pg, psid)
            .await
            .expect("get_person")
            .expect("opt_out creates the person")
    };
    let person = get_p().await;
    assert_eq!(person.opted_out_at_ms, Some(T0 + 200));
    assert_eq!(person.opted_out_reason.as_deref(), Some("blocked"));
    assert_eq!(
        (person.page_id.as_str(), person.psid.as_str()),
        (pg.as_str(), psid)
    );

    s.opt_out(&pg, psid, "policy", T0 + 300)
        .await
        .expect("opt_out");
    let person = get_p().await;
    assert_eq!(
        person.opted_out_at_ms,
        Some(T0 + 200),
        "the first opt-out stays"
    );
    assert_eq!(person.opted_out_reason.as_deref(), Some("blocked"));

    s.opt_out(&pg, psid, "stop", T0 + 100)
        .await
        .expect("opt_out");
    let person = get_p().await;
    assert_eq!(
        person.opted_out_at_ms,
        Some(T0 + 100),
        "first means earliest by event time, whatever the arrival order"
    );
    assert_eq!(person.opted_out_reason.as_deref(), Some("stop"));

    // Other fields of the person survive.
    assert!(
        s.record_user_message(&pg, psid, T0 + 400)
            .await
            .expect("record")
            .moved
    );
    let person = get_p().await;
    assert_eq!(person.opted_out_at_ms, Some(T0 + 100));
    assert_eq!(person.last_user_message_at_ms, Some(T0 + 400));
}

// ---------------------------------------------------------------------------------------------
// Pages

pub async fn page_pause<S: Store>(s: &S, p: &str) {
    let pg = format!("{p}-paused-page");
    assert_eq!(s.get_page(&pg).await.expect("get_page"), None);

    assert!(s
        .set_paused(&pg, Some("graph 368: blocked"), T0 + 200)
        .await
        .expect("set_paused"));
    let c = s.get_page(&pg).await.expect("get_page").expect("page");
    assert_eq!(c.page_id, pg);
    assert!(c.paused);
    assert_eq!(c.paused_reason.as_deref(), Some("graph 368: blocked"));
    assert_eq!(c.paused_at_ms, Some(T0 + 200));
    assert_eq!(c.pause_event_at_ms, Some(T0 + 200));
    assert_eq!(c.first_message, None);

    assert!(!s.set_paused(&pg, None, T0 + 100).await.expect("set_paused"));
    assert!(!s.set_paused(&pg, None, T0 + 200).await.expect("set_paused"));
    let still = s.get_page(&pg).await.expect("get_page").expect("page");
    assert_eq!(still, c, "older (and same-time) events are ignored");

    assert!(s.set_paused(&pg, None, T0 + 300).await.expect("set_paused"));
    let c = s.get_page(&pg).await.expect("get_page").expect("page");
    assert!(!c.paused);
    assert_eq!(c.paused_reason, None);
    assert_eq!(c.paused_at_ms, None);
    assert_eq!(c.pause_event_at_ms, Some(T0 + 300));
    assert!(!s
        .set_paused(&pg, Some("late"), T0 + 250)
        .await
        .expect("set_paused"));
    assert!(
        !s.get_page(&pg)
            .await
            .expect("get_page")
            .expect("page")
            .paused
    );
}

// ---------------------------------------------------------------------------------------------
// Operators: retrying a failed generation, and the indexes the operations sweep reads

/// An operator's retry re-opens a `failed` generation before its deadline, and nothing else.
pub async fn retry_failed_rules<S: Store>(s: &S, p: &str) {
    let o = created(s, p, "retry").await;
    let key = o.key();
    assert!(
        !s.retry_failed(&o, T0 + 10, "retry").await.expect("retry"),
        "a pending opt-in is not failed"
    );
    let c = claimed(s, &key, T0 + 20).await;
    let failed = Finish::Failed {
        error: "bad_request: (#100) Invalid parameter".into(),
    };
    assert!(s
        .finish(&key, c.attempts, &failed, T0 + 30)
        .await
        .expect("finish"));
    let f = get(s, &key).await;
    assert_eq!(f.state, OptinState::Failed);

    let mut other = f.clone();
    other.generation = 2;
    assert!(
        !s.retry_failed(&other, T0 + 40, "retry")
            .await
            .expect("retry"),
        "another generation is not retried"
    );
    assert!(
        !s.retry_failed(&f, f.deadline_at_ms, "retry")
            .await
            .expect("retry"),
        "at the deadline a retry is meaningless"
    );
    assert_eq!(get(s, &key).await, f, "refused retries write nothing");

    assert!(s
        .retry_failed(&f, T0 + 50, "retried by operator: bad_request")
        .await
        .expect("retry"));
    let r = get(s, &key).await;
    assert_eq!(r.state, OptinState::Pending);
    assert_eq!(r.lease_until_ms, 0);
    assert_eq!(r.attempts, f.attempts, "attempts are history, kept");
    assert_eq!(r.generation, f.generation);
    assert_eq!(
        r.last_error.as_deref(),
        Some("retried by operator: bad_request")
    );
    assert_eq!(r.updated_at_ms, T0 + 50);
    assert!(
        !s.retry_failed(&f, T0 + 60, "again").await.expect("retry"),
        "a second retry of the same failure is a no-op"
    );
    let c = claimed(s, &key, T0 + 70).await;
    assert_eq!(
        c.attempts,
        f.attempts + 1,
        "the retried generation is claimable"
    );
}

/// A pending opt-in of this run at `opted_in_at_ms` (deadline a day later).
async fn created_at<S: Store>(s: &S, p: &str, name: &str, opted_in_at_ms: i64) -> Optin {
    let mut o = optin(p, name);
    o.opted_in_at_ms = opted_in_at_ms;
    o.deadline_at_ms = opted_in_at_ms + DAY_MS;
    assert_eq!(s.create_optin(&o).await.expect("create"), Created::Created);
    o
}

async fn owed_of_run<S: Store>(s: &S, p: &str) -> Vec<(String, i64)> {
    s.oldest_unsent(100_000)
        .await
        .expect("oldest_unsent")
        .into_iter()
        .filter(|u| u.optin_key.contains(&format!("#{p}-owed-")))
        .map(|u| (u.optin_key, u.opted_in_at_ms))
        .collect()
}

/// The unsent index lists exactly the generations still owed a first message, oldest first,
/// through every transition in and out.
pub async fn unsent_index<S: Store>(s: &S, p: &str) {
    let base = T0 - 10_000;
    let a = created_at(s, p, "owed-a", base).await;
    let b = created_at(s, p, "owed-b", base + 1_000).await;
    let c = created_at(s, p, "owed-c", base + 2_000).await;
    let d = created_at(s, p, "owed-d", base + 3_000).await;
    let entry = |o: &Optin| (o.key(), o.opted_in_at_ms);
    assert_eq!(
        owed_of_run(s, p).await,
        vec![entry(&a), entry(&b), entry(&c), entry(&d)],
        "oldest first"
    );
    assert!(s.oldest_unsent(1).await.expect("oldest").len() == 1);
    assert!(s.oldest_unsent(0).await.expect("oldest").is_empty());

    // sending is still owed; sent is not.
    let ca = match s.claim(&a.key(), 1, T0, T0 + LEASE).await.expect("claim") {
        Claim::Claimed(o) => *o,
        other => panic!("claim: {other:?}"),
    };
    assert_eq!(
        owed_of_run(s, p).await.len(),
        4,
        "a send in flight is still owed"
    );
    let sent = Finish::Sent {
        message_id: Some("m.a".into()),
        sent_at_ms: T0 + 1,
    };
    assert!(s
        .finish(&a.key(), ca.attempts, &sent, T0 + 1)
        .await
        .expect("finish"));
    assert_eq!(
        owed_of_run(s, p).await,
        vec![entry(&b), entry(&c), entry(&d)]
    );

    // Expired at the deadline.
    assert!(s
        .expire(&b.key(), b.deadline_at_ms, "missed")
        .await
        .expect("expire")
        .is_some());
    // Failed, then retried by an operator; released attempts stay owed.
    let cc = match s.claim(&c.key(), 1, T0, T0 + LEASE).await.expect("claim") {
        Claim::Claimed(o) => *o,
        other => panic!("claim: {other:?}"),
    };
    let release = Finish::Release {
        error: "graph 500".into(),
    };
    assert!(s
        .finish(&c.key(), cc.attempts, &release, T0 + 2)
        .await
        .expect("finish"));
    assert_eq!(
        owed_of_run(s, p).await,
        vec![entry(&c), entry(&d)],
        "a released attempt is still owed"
    );
    let cc = match s
        .claim(&c.key(), 1, T0 + 3, T0 + LEASE)
        .await
        .expect("claim")
    {
        Claim::Claimed(o) => *o,
        other => panic!("claim: {other:?}"),
    };
    let failed = Finish::Failed {
        error: "bad_request".into(),
    };
    assert!(s
        .finish(&c.key(), cc.attempts, &failed, T0 + 4)
        .await
        .expect("finish"));
    assert_eq!(owed_of_run(s, p).await, vec![entry(&d)]);
    let f = get(s, &c.key()).await;
    assert!(s.retry_failed(&f, T0 + 5, "retry").await.expect("retry"));
    assert_eq!(owed_of_run(s, p).await, vec![entry(&c), entry(&d)]);

    // Answered by the person's reply.
    let link = Link {
        optin_key: d.key(),
        page_id: d.page_id.clone(),
        psid: format!("{p}-psid-owed-d"),
        identifier: d.recipient.clone(),
        at_ms: T0 + 6,
        create_missing: false,
    };
    assert_eq!(
        s.link(&link, T0 + 6).await.expect("link"),
        LinkResult::Linked
    );
    assert_eq!(owed_of_run(s, p).await, vec![entry(&c)]);

    // A new generation on a closed one is owed again, at its own opt-in time.
    let sent_a = get(s, &a.key()).await;
    let mut next = optin(p, "owed-a");
    next.opted_in_at_ms = T0 + 7;
    next.deadline_at_ms = T0 + 7 + DAY_MS;
    let next = sent_a.next_generation(next);
    assert_eq!(
        s.reopen(&sent_a, &next).await.expect("reopen"),
        Reopened::Reopened
    );
    assert_eq!(owed_of_run(s, p).await, vec![entry(&c), (a.key(), T0 + 7)]);
}

/// The paused index lists the Pages paused now, oldest pause first, with the pause fields.
pub async fn paused_index<S: Store>(s: &S, p: &str) {
    let one = format!("{p}-idx-page-1");
    let two = format!("{p}-idx-page-2");
    let mine =
        |all: Vec<crate::ports::store::PageConfig>| -> Vec<(String, Option<String>, Option<i64>)> {
            all.into_iter()
                .filter(|c| c.page_id.starts_with(&format!("{p}-idx-")))
                .inspect(|c| assert!(c.paused, "only paused Pages are listed"))
                .map(|c| (c.page_id, c.paused_reason, c.paused_at_ms))
                .collect()
        };
    assert!(s
        .set_paused(&one, Some("operator: token rotation"), T0 + 100)
        .await
        .expect("pause"));
    assert!(s
        .set_paused(&two, Some("graph 368"), T0 + 50)
        .await
        .expect("pause"));
    assert_eq!(
        mine(s.list_paused(10_000).await.expect("list_paused")),
        vec![
            (two.clone(), Some("graph 368".into()), Some(T0 + 50)),
            (
                one.clone(),
                Some("operator: token rotation".into()),
                Some(T0 + 100)
            ),
        ]
    );
    assert!(s.set_paused(&two, None, T0 + 200).await.expect("resume"));
    assert_eq!(
        mine(s.list_paused(10_000).await.expect("list_paused")),
        vec![(
            one.clone(),
            Some("operator: token rotation".into()),
            Some(T0 + 100)
        )]
    );
    assert!(s.set_paused(&one, None, T0 + 300).await.expect("resume"));
    assert!(mine(s.list_paused(10_000).await.expect("list_paused")).is_empty());
    assert!(s.list_paused(0).await.expect("list_paused").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Quarantine

pub async fn quarantine<S: Store>(s: &S, p: &str) {
    let rec = |i: i64, reason: &str| {
        let received = T0 + i * 1_000;
        QuarantinedRecord {
            id: format!("{received:013}#{p}-q{i}"),
            reason: reason.to_string(),
            received_at_ms: received,
            event_json: format!(r#"{{"v":1,"key":"{p}-q{i}","text":"d\u00e9j\u00e0 \"vu\""}}"#),
        }
    };
    let (q0, q1, q2) = (
        rec(0, "unparseable"),
        rec(1, "unknown kind"),
        rec(2, "no page"),
    );
    for r in [&q2, &q0, &q1] {
        s.put_quarantined(r).await.expect("put_quarantined");
    }
    s.put_quarantined(&rec(0, "again"))
        .await
        .expect("put_quarantined is idempotent");

    let all = s.list_quarantined(10_000).await.expect("list_quarantined");
    let mine: Vec<&QuarantinedRecord> = all
        .iter()
        .filter(|r| r.id.contains(&format!("#{p}-q")))
        .collect();
    assert_eq!(mine, vec![&q0, &q1, &q2], "oldest first, one record per id");
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "the whole list is oldest first"
    );
    let two = s.list_quarantined(2).await.expect("list_quarantined");
    assert_eq!(
        two.as_slice(),
        &all[..2.min(all.len())],
        "the limit takes the oldest"
    );
    assert_eq!(s.list_quarantined(0).await.expect("list"), Vec::new());

    s.delete_quarantined(&q1.id).await.expect("delete");
    s.delete_quarantined(&q1.id)
        .await
        .expect("deleting a deleted record is fine");
    let left: Vec<QuarantinedRecord> = s
        .list_quarantined(10_000)
        .await
        .expect("list")
        .into_iter()
        .filter(|r| r.id.contains(&format!("#{p}-q")))
        .collect();
    assert_eq!(left, vec![q0.clone(), q2.clone()]);
    s.delete_quarantined(&q0.id).await.expect("delete");
    s.delete_quarantined(&q2.id).await.expect("delete");
}
