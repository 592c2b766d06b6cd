//! The race contract: the opt-in store's guards hold under real concurrency.
//!
//! Every race spawns its racers as tokio tasks that wait at one barrier and then fire together,
//! so on a multi-thread runtime they really run at once (each check asserts that flavor). The
//! store must apply each call atomically, like one DynamoDB request: the in-memory twin does
//! (one lock, and it yields before and after it), dynalite does (a lock per item), moto does not
//! (it checks conditions without a lock, so these races are not run against it).
//!
//! The races, and the guard each one protects:
//! - [`concurrent_creators`]: the conditional create (`attribute_not_exists`);
//! - [`concurrent_claims`]: the claim condition (pending, or a lapsed lease, before the deadline);
//! - [`finish_vs_takeover`] and [`late_finish_vs_takeover`]: the finish condition (still
//!   `sending` and still the claim token `attempts`);
//! - [`concurrent_take_job`]: take_job's condition (not enqueued, pending or sending with a
//!   lapsed lease, claim lapsed);
//! - [`expire_vs_claim_at_deadline`]: the claim's deadline and the expiry's lease condition;
//! - [`concurrent_reopens`]: the reopen condition (the record is still exactly the closed
//!   generation that was read);
//! - [`link_vs_claim`]: the link's in-flight check. It needs transactions (`TransactWriteItems`),
//!   which dynalite does not implement, so [`run_all`] skips it when asked to.
//!
//! Keys are built from `unique_prefix`, so several runs can share one table. Times are fixed
//! (around [`T0`]), never the wall clock.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::RuntimeFlavor;
use tokio::sync::Barrier;

use super::store::{optin, Store, T0};
use crate::lifecycle::optin::{optin_key, EntryPoint, Optin, OptinSource, OptinState, DAY_MS};
use crate::ports::store::{Claim, Created, Finish, Link, LinkResult, Reopened};

/// Racers in the one-key races.
pub const RACERS: usize = 50;
/// Rounds of the races between two or a few parties.
pub const ROUNDS: usize = 50;
/// Lease of a claim in the races.
const LEASE: i64 = 60_000;
/// A lease short enough to have lapsed by the takeover.
const SHORT_LEASE: i64 = 10;

/// Runs every race, one after the other. `transactions`: whether the store under test supports
/// `TransactWriteItems` (`link`); dynalite does not.
pub async fn run_all<S: Store + 'static>(s: &Arc<S>, unique_prefix: &str, transactions: bool) {
    let p = unique_prefix;
    concurrent_creators(s, p).await;
    concurrent_claims(s, p).await;
    finish_vs_takeover(s, p).await;
    late_finish_vs_takeover(s, p).await;
    concurrent_take_job(s, p).await;
    expire_vs_claim_at_deadline(s, p).await;
    concurrent_reopens(s, p).await;
    if transactions {
        link_vs_claim(s, p).await;
    }
}

/// Spawns `n` tasks that wait at one barrier, then each awaits `racer(i)`; their results in
/// order of `i`. A racer that panics fails the race with its message.
async fn race<T, F, Fut>(n: usize, racer: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        RuntimeFlavor::MultiThread,
        "the races need a multi-thread runtime: #[tokio::test(flavor = \"multi_thread\")]"
    );
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = racer(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok(v) => out.push(v),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("a racer was cancelled: {e}"),
            },
        }
    }
    out
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

async fn claim_ok<S: Store>(s: &S, key: &str, now: i64, lease_until: i64) -> Optin {
    match s.claim(key, 1, now, lease_until).await.expect("claim") {
        Claim::Claimed(o) => *o,
        other => panic!("claim of {key} at {now} should succeed, got {other:?}"),
    }
}

fn sent(message_id: &str, at: i64) -> Finish {
    Finish::Sent {
        message_id: Some(message_id.to_string()),
        sent_at_ms: at,
    }
}

/// 50 creators of one opt-in at once: exactly one `Created`, 49 `Exists` naming the stored
/// record, which is one of the candidates.
pub async fn concurrent_creators<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let candidates: Vec<Optin> = (0..RACERS)
        .map(|i| {
            let mut o = optin(p, "race-creators");
            o.created_by = format!("optin:racer:{i}");
            o
        })
        .collect();
    let results = race(RACERS, |i| {
        let (s, o) = (s.clone(), candidates[i].clone());
        async move { s.create_optin(&o).await.expect("create_optin") }
    })
    .await;
    let winners: Vec<usize> = (0..RACERS)
        .filter(|&i| results[i] == Created::Created)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} concurrent creates of one opt-in wins; winners: {winners:?}"
    );
    let stored = get(&**s, &candidates[0].key()).await;
    assert_eq!(
        stored, candidates[winners[0]],
        "the stored record is the winner's"
    );
    for (i, r) in results.iter().enumerate() {
        if let Created::Exists(seen) = r {
            assert_eq!(**seen, stored, "loser {i} names the stored record");
        }
    }
}

/// 50 claims of one pending opt-in at once: exactly one `Claimed` (attempt 1); every other
/// caller is refused.
pub async fn concurrent_claims<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let o = created(&**s, p, "race-claims").await;
    let key = o.key();
    let now = T0 + 1_000;
    let results = race(RACERS, |i| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            s.claim(&key, 1, now, now + LEASE + i as i64)
                .await
                .expect("claim")
        }
    })
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match r {
            Claim::Claimed(c) => winners.push((i, c.attempts)),
            Claim::NotClaimable(c) => assert_eq!(
                c.state,
                OptinState::Sending,
                "refused claim {i} sees the holder"
            ),
            Claim::Missing => panic!("claim {i}: the opt-in exists"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} concurrent claims wins; winners (racer, attempts): {winners:?}"
    );
    let stored = get(&**s, &key).await;
    assert_eq!(
        (stored.attempts, winners[0].1),
        (1, 1),
        "one claim, one attempt"
    );
    assert_eq!(
        stored.lease_until_ms,
        now + LEASE + winners[0].0 as i64,
        "the stored lease is the winner's"
    );
}

/// Attempt 1 claims with a short lease, the lease lapses, attempt 2 claims; then attempt 1's
/// late `Sent` and attempt 2's own finish race. Every round: attempt 1's finish never applies,
/// attempt 2's always does, and the record shows attempt 2's outcome only.
pub async fn finish_vs_takeover<S: Store + 'static>(s: &Arc<S>, p: &str) {
    for round in 0..ROUNDS {
        let o = created(&**s, p, &format!("race-finish-{round}")).await;
        let key = o.key();
        let t1 = T0 + 1_000;
        claim_ok(&**s, &key, t1, t1 + SHORT_LEASE).await;
        let t2 = t1 + SHORT_LEASE;
        let second = claim_ok(&**s, &key, t2, t2 + LEASE).await;
        assert_eq!(
            second.attempts, 2,
            "round {round}: the takeover is attempt 2"
        );

        let outcome2 = match round % 3 {
            0 => sent("m_attempt_2", t2 + 5),
            1 => Finish::Release {
                error: "graph 4: rate limited".into(),
            },
            _ => Finish::Failed {
                error: "graph 100: bad request".into(),
            },
        };
        // Which attempt is spawned first alternates, so both orders happen.
        let first = round % 2;
        let applied = race(2, |i| {
            let (s, key) = (s.clone(), key.clone());
            let (attempt, finish) = if i == first {
                (1, sent("m_attempt_1", t2 + 5))
            } else {
                (2, outcome2.clone())
            };
            async move {
                s.finish(&key, attempt, &finish, t2 + 5)
                    .await
                    .expect("finish")
            }
        })
        .await;
        assert_eq!(
            [applied[first], applied[1 - first]],
            [false, true],
            "round {round}: exactly one finish applies, the holder's (attempt 2); \
             [attempt 1 applied, attempt 2 applied]"
        );
        let r = get(&**s, &key).await;
        let expected_state = match outcome2 {
            Finish::Sent { .. } => OptinState::Sent,
            Finish::Release { .. } => OptinState::Pending,
            _ => OptinState::Failed,
        };
        assert_eq!(
            (r.state, r.attempts),
            (expected_state, 2),
            "round {round}: the record shows attempt 2's outcome"
        );
        assert_ne!(
            r.message_id.as_deref(),
            Some("m_attempt_1"),
            "round {round}: attempt 1's stale send is not on record"
        );
    }
}

/// Attempt 1 claims with a short lease; after it lapses, attempt 1's late `Sent` races a
/// takeover (claim, then finish). Every round exactly one of them gets through: either attempt
/// 1 recorded its send and the takeover is refused, or the takeover claimed and attempt 1's
/// finish is refused; the record matches the one that did.
pub async fn late_finish_vs_takeover<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let mut late_won = 0;
    for round in 0..ROUNDS {
        let o = created(&**s, p, &format!("race-late-{round}")).await;
        let key = o.key();
        let t1 = T0 + 1_000;
        claim_ok(&**s, &key, t1, t1 + SHORT_LEASE).await;
        let t2 = t1 + SHORT_LEASE;
        // (attempt 1's finish applied, takeover claimed, takeover's finish applied)
        // Which racer is spawned first alternates, so both orders happen.
        let late_racer = round % 2;
        let results = race(2, |i| {
            let (s, key) = (s.clone(), key.clone());
            async move {
                if i == late_racer {
                    let f = s
                        .finish(&key, 1, &sent("m_attempt_1", t2), t2)
                        .await
                        .expect("finish");
                    (f, false, false)
                } else {
                    match s.claim(&key, 1, t2, t2 + LEASE).await.expect("claim") {
                        Claim::Claimed(c) => {
                            let f = s
                                .finish(&key, c.attempts, &sent("m_takeover", t2 + 1), t2 + 1)
                                .await
                                .expect("finish");
                            (false, true, f)
                        }
                        _ => (false, false, false),
                    }
                }
            }
        })
        .await;
        let (late, (_, took_over, takeover_finished)) =
            (results[late_racer].0, results[1 - late_racer]);
        assert!(
            late != took_over,
            "round {round}: exactly one of attempt 1's late finish and the takeover gets \
             through; late finish applied: {late}, takeover claimed: {took_over}"
        );
        let r = get(&**s, &key).await;
        if late {
            late_won += 1;
            assert_eq!(
                (r.state, r.attempts, r.message_id.as_deref()),
                (OptinState::Sent, 1, Some("m_attempt_1")),
                "round {round}: attempt 1's send is on record"
            );
        } else {
            assert!(
                takeover_finished,
                "round {round}: the takeover holds the claim"
            );
            assert_eq!(
                (r.state, r.attempts, r.message_id.as_deref()),
                (OptinState::Sent, 2, Some("m_takeover")),
                "round {round}: the takeover's send is on record"
            );
        }
    }
    println!(
        "late_finish_vs_takeover: the late finish won {late_won} of {ROUNDS} rounds, the takeover {}",
        ROUNDS - late_won
    );
}

/// 50 callers take over the first-message job at once after the creator's claim lapsed:
/// exactly one is told to enqueue it.
pub async fn concurrent_take_job<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let o = created(&**s, p, "race-take-job").await;
    let key = o.key();
    let now = o.job_claim_until_ms;
    let results = race(RACERS, |i| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            s.take_job(&key, now, now + LEASE + i as i64)
                .await
                .expect("take_job")
        }
    })
    .await;
    let winners: Vec<usize> = (0..RACERS).filter(|&i| results[i]).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} concurrent take_job calls after a lapsed job claim wins; \
         winners: {winners:?}"
    );
    let r = get(&**s, &key).await;
    assert_eq!(
        r.job_claim_until_ms,
        now + LEASE + winners[0] as i64,
        "the stored job claim is the winner's"
    );
}

/// At the deadline, claims (one millisecond before it) race expiries (at it). Every round
/// exactly one call gets through, never a claim and an expiry both: a claim leaves a live lease
/// that expiry must respect, an expiry closes the opt-in for every claim.
pub async fn expire_vs_claim_at_deadline<S: Store + 'static>(s: &Arc<S>, p: &str) {
    const EACH: usize = 5;
    let mut claims_won = 0;
    for round in 0..ROUNDS {
        let o = created(&**s, p, &format!("race-expire-{round}")).await;
        let key = o.key();
        let deadline = o.deadline_at_ms;
        // (claimed, expired)
        let results = race(2 * EACH, |i| {
            let (s, key) = (s.clone(), key.clone());
            async move {
                // Which kind is spawned first alternates, so both orders happen.
                if (i + round) % 2 == 0 {
                    let c = s
                        .claim(&key, 1, deadline - 1, deadline - 1 + LEASE)
                        .await
                        .expect("claim");
                    (matches!(c, Claim::Claimed(_)), false)
                } else {
                    let e = s
                        .expire(&key, deadline, "deadline missed")
                        .await
                        .expect("expire");
                    (false, e.is_some())
                }
            }
        })
        .await;
        let claims = results.iter().filter(|r| r.0).count();
        let expiries = results.iter().filter(|r| r.1).count();
        assert_eq!(
            (claims + expiries, claims.min(expiries)),
            (1, 0),
            "round {round}: at the deadline exactly one claim or one expiry gets through, never \
             both; claims: {claims}, expiries: {expiries}"
        );
        let r = get(&**s, &key).await;
        let expected = if claims == 1 {
            claims_won += 1;
            (OptinState::Sending, 1)
        } else {
            (OptinState::Expired, 0)
        };
        assert_eq!(
            (r.state, r.attempts),
            expected,
            "round {round}: the record matches the call that got through"
        );
    }
    println!(
        "expire_vs_claim_at_deadline: a claim won {claims_won} of {ROUNDS} rounds, an expiry {}",
        ROUNDS - claims_won
    );
}

/// 50 copies of one new opt-in reopen one closed generation at once (each from the same read,
/// each with its own candidate for generation 2): exactly one `Reopened`; every other caller
/// gets `Changed` naming generation 2, which is the winner's record.
pub async fn concurrent_reopens<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let o = created(&**s, p, "race-reopens").await;
    let key = o.key();
    let c = claim_ok(&**s, &key, T0 + 1_000, T0 + 1_000 + LEASE).await;
    assert!(s
        .finish(&key, c.attempts, &sent("m_gen1", T0 + 1_001), T0 + 1_001)
        .await
        .expect("finish"));
    let seen = get(&**s, &key).await;
    assert_eq!(seen.state, OptinState::Sent);
    let at = T0 + 2 * DAY_MS;
    let candidates: Vec<Optin> = (0..RACERS)
        .map(|i| {
            let later = Optin::pending(
                seen.recipient.clone(),
                &seen.page_id,
                "page",
                EntryPoint::LoginConnect,
                OptinSource::Webhook,
                at,
                &format!("optin:reopen-racer:{i}"),
                at + i as i64,
            );
            seen.next_generation(later)
        })
        .collect();
    let results = race(RACERS, |i| {
        let (s, seen, next) = (s.clone(), seen.clone(), candidates[i].clone());
        async move { s.reopen(&seen, &next).await.expect("reopen") }
    })
    .await;
    let winners: Vec<usize> = (0..RACERS)
        .filter(|&i| results[i] == Reopened::Reopened)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} concurrent reopens of one closed generation wins; winners: \
         {winners:?}"
    );
    let stored = get(&**s, &key).await;
    assert_eq!(
        stored, candidates[winners[0]],
        "the stored record is the winner's generation 2"
    );
    assert_eq!(stored.history, vec![seen.outcome()]);
    for (i, r) in results.iter().enumerate() {
        match r {
            Reopened::Reopened => {}
            Reopened::Changed(now) => {
                assert_eq!(now.generation, 2, "loser {i} is told of generation 2");
                assert_eq!(**now, stored, "loser {i} names the stored record");
            }
            Reopened::Missing => panic!("reopen {i}: the opt-in exists"),
        }
    }
}

/// A reply's link races a claim of a pending opt-in: either the claim wins and the link waits
/// (`SendInFlight`, nothing written), or the link answers the opt-in and the claim is refused.
/// Needs transactions (`link` is one `TransactWriteItems`).
pub async fn link_vs_claim<S: Store + 'static>(s: &Arc<S>, p: &str) {
    let mut claims_won = 0;
    for round in 0..ROUNDS {
        let o = created(&**s, p, &format!("race-link-{round}")).await;
        let key = o.key();
        let now = T0 + 1_000;
        let psid = format!("psid-race-link-{round}");
        let link = Link {
            page_id: o.page_id.clone(),
            psid: psid.clone(),
            identifier: o.recipient.clone(),
            optin_key: optin_key(&o.recipient, &o.page_id),
            at_ms: now,
            create_missing: true,
        };
        // (claimed, linked). Which racer is spawned first alternates, so both orders happen.
        let claimer = round % 2;
        let results = race(2, |i| {
            let (s, key, link) = (s.clone(), key.clone(), link.clone());
            async move {
                if i == claimer {
                    let c = s.claim(&key, 1, now, now + LEASE).await.expect("claim");
                    (matches!(c, Claim::Claimed(_)), false)
                } else {
                    let l = s.link(&link, now).await.expect("link");
                    (false, l == LinkResult::Linked)
                }
            }
        })
        .await;
        let (claimed, linked) = (results[claimer].0, results[1 - claimer].1);
        assert!(
            claimed != linked,
            "round {round}: exactly one of a claim and a link gets through; claimed: \
             {claimed}, linked: {linked}"
        );
        let r = get(&**s, &key).await;
        let person = s.get_person(&o.page_id, &psid).await.expect("get_person");
        if claimed {
            claims_won += 1;
            assert_eq!(r.state, OptinState::Sending, "round {round}");
            assert_eq!(r.psid, None, "round {round}: the link wrote nothing");
            assert_eq!(person, None, "round {round}: the link wrote no person");
        } else {
            assert_eq!(r.state, OptinState::Answered, "round {round}");
            assert_eq!(r.attempts, 0, "round {round}: nothing was claimed");
            assert!(person.is_some(), "round {round}: the person is linked");
        }
    }
    println!(
        "link_vs_claim: the claim won {claims_won} of {ROUNDS} rounds, the link {}",
        ROUNDS - claims_won
    );
}
