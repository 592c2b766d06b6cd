//! What happens between Meta's answer and the `sent` record (issue 11, item 4), on the Graph
//! simulator with `allow_repeat_login_id_sends` on, so a second send is *seen* (an attempt,
//! accepted) instead of refused by the simulator.
//!
//! Two cases, two promises:
//! - The answer is lost after Meta accepted (5xx or timeout on the way back): to us that is a
//!   failure like any other, so the retry sends again. Exactly one resend per lost answer,
//!   never more (the known window; README "Reliability").
//! - Meta's answer arrived: whatever the table does next, no second attempt. A failed record
//!   is retried within the lease, then travels as a record-only job on the outbound queue.
//!   Only with the table *and* the queue down for the whole budget is the job kept, and then
//!   it sends again once (the remaining window, also in the README).

use std::sync::Arc;
use std::time::Duration;

use graph_sim::{AttemptOutcome, FaultKind, Faults, LostAnswerFaults};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::consumer::Fate;
use lc_core::lifecycle::optin::{FirstMessageJob, OptinState};
use lc_core::memory::{QueueFault, StoreOp};
use lc_core::ports::{OptinStore, Table};
use lc_core::sending::sender::{JobOutcome, Sender, SenderConfig, SenderPorts};
use lc_testkit::World;

const KEY: &str = "OPTIN#login_id#L1";

/// An opt-in for login_id L1 and its job as received from the queue (in flight).
async fn optin_and_job(w: &World) -> lc_core::ports::Received {
    w.login_optin("L1").await;
    let mut got = w.jobs.receive(10);
    assert_eq!(got.len(), 1, "one job");
    got.remove(0)
}

fn record_only_jobs(w: &World) -> Vec<FirstMessageJob> {
    w.queued_jobs()
        .into_iter()
        .filter(|j| j.sent.is_some())
        .collect()
}

// ----- (a) the answer is lost after Meta accepted ------------------------------------------

async fn lost_answer_resends_once(kind: FaultKind) {
    // The client gives up before the simulator's held timeout answers.
    let w = World::new(300).await;
    w.sim
        .set_faults(Faults {
            timeout_ms: 1_000,
            ..Faults::default()
        })
        .unwrap();
    w.login_optin("L1").await;
    w.sim.lose_next_answers(1, kind);
    let (outcomes, _) = w.drain(200).await;
    let attempts = w.sim.attempts();
    assert_eq!(w.attempts_for("L1"), 2, "{kind:?}: {attempts:?}");
    assert!(attempts.iter().all(|a| a.is_accepted()), "{attempts:?}");
    assert_eq!(attempts[0].lost_answer, Some(kind));
    assert_eq!(attempts[1].lost_answer, None);
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 2), "{outcomes:?}");
    // The record names the message whose answer we got.
    let AttemptOutcome::Accepted { message_id } = &attempts[1].outcome else {
        panic!("accepted")
    };
    assert_eq!(o.message_id, *message_id);
}

#[tokio::test]
async fn a_5xx_after_acceptance_resends_exactly_once() {
    lost_answer_resends_once(FaultKind::Http5xx).await;
}

#[tokio::test]
async fn a_timeout_after_acceptance_resends_exactly_once() {
    lost_answer_resends_once(FaultKind::Timeout).await;
}

/// Meta's own rule, kept apart from the exactly-once tests: with the simulator as strict as
/// Meta, the resend after a lost answer is refused (one message per login_id). That refusal,
/// after an answer we never got, means the earlier attempt was accepted: the opt-in is
/// recorded as sent (without a message id), not failed.
#[tokio::test]
async fn strict_meta_refuses_the_resend_after_a_lost_answer() {
    let w = World::strict(2_000).await;
    w.login_optin("L1").await;
    w.sim.lose_next_answers(1, FaultKind::Http5xx);
    w.drain(200).await;
    let attempts = w.sim.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].is_accepted());
    assert_eq!(attempts[1].refusal(), Some((10, Some(2_018_278))));
    assert_eq!(w.sim.messages().len(), 1, "one message reached the person");
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!(o.state, OptinState::Sent, "{:?}", o.last_error);
    assert_eq!(o.message_id, None, "the lost answer carried it");
}

/// Seeded lost answers (5xx and timeouts after acceptance) over many seeds: every recipient
/// gets its message, each lost answer costs exactly one resend, an attempt never follows an
/// answered acceptance, and a recipient that lost at most one answer saw at most 2 attempts.
#[tokio::test]
async fn lost_answers_over_many_seeds_resend_once_per_lost_answer() {
    const SEEDS: u64 = 120;
    const OPTINS: usize = 6;
    let (mut recipients, mut lost_total, mut max_attempts, mut max_single) = (0, 0, 0, 0);
    let mut by_attempts = std::collections::BTreeMap::<usize, usize>::new();
    for seed in 0..SEEDS {
        // The client waits long enough that only an injected hold (700 ms) times it out: a
        // slow answer on a busy machine would be a lost answer the simulator did not count.
        let w = World::new(300).await;
        w.sim
            .set_faults(Faults {
                timeout_ms: 700,
                seed,
                ..Faults::default()
            })
            .unwrap();
        w.sim
            .set_lost_answers(LostAnswerFaults {
                lost_answer_5xx_ratio: 0.25,
                lost_answer_timeout_ratio: 0.03,
            })
            .unwrap();
        for i in 0..OPTINS {
            w.login_optin(&format!("S{seed}-{i}")).await;
        }
        w.drain(2_000).await;
        let tally = w.tally();
        assert_eq!(tally.len(), OPTINS, "seed {seed}");
        for (id, t) in &tally {
            let o = w
                .store
                .get_optin(&format!("OPTIN#login_id#{id}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(o.state, OptinState::Sent, "seed {seed} {id}: {t:?}");
            assert_eq!(t.after_known_accept, 0, "seed {seed} {id}: {t:?}");
            assert_eq!(
                t.attempts,
                1 + t.accepted_lost,
                "seed {seed} {id}: one resend per lost answer, no more: {t:?}"
            );
            if t.accepted_lost <= 1 {
                assert!(t.attempts <= 2, "seed {seed} {id}: {t:?}");
                max_single = max_single.max(t.attempts);
            }
            recipients += 1;
            lost_total += t.accepted_lost;
            max_attempts = max_attempts.max(t.attempts);
            *by_attempts.entry(t.attempts).or_default() += 1;
        }
    }
    println!(
        "lost_answers seeds={SEEDS} optins={recipients} lost={lost_total} \
         max_attempts={max_attempts} max_attempts_one_loss={max_single} by_attempts={by_attempts:?}"
    );
    assert!(lost_total > 0, "the faults must have fired");
}

// ----- (b) Meta said yes, the table fails ------------------------------------------------

#[tokio::test]
async fn one_failed_record_is_retried_within_the_lease() {
    let w = World::new(2_000).await;
    let m = optin_and_job(&w).await;
    w.store.fail_next(StoreOp::Finish, 1);
    assert_eq!(w.sender.handle_message(&m.body).await, Fate::Ack);
    assert_eq!(
        w.store.pending_failures(StoreOp::Finish),
        0,
        "it failed once"
    );
    assert_eq!(w.attempts_for("L1"), 1);
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1));
    assert!(record_only_jobs(&w).is_empty(), "no record-only job needed");
}

/// Fails every record attempt the sender makes within its lease.
fn fail_the_whole_record_budget(w: &World) {
    w.store
        .fail_next(StoreOp::Finish, SenderConfig::default().record_attempts);
}

/// The whole story through the queue, as Lambda plays it: Meta said yes, every record
/// attempt within the lease fails, the table comes back. One attempt, recorded `sent`.
#[tokio::test]
async fn a_table_outage_after_meta_said_yes_costs_no_second_attempt() {
    let w = World::new(2_000).await;
    w.login_optin("L1").await;
    fail_the_whole_record_budget(&w);
    let fates = w.pump(500).await;
    assert_eq!(
        w.attempts_for("L1"),
        1,
        "a second send after Meta said yes: {fates:?} {:?}",
        w.sim.attempts()
    );
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1), "{fates:?}");
    assert_eq!(
        o.message_id.as_deref(),
        Some(w.sim.messages()[0].message_id.as_str())
    );
    assert!(w.jobs.is_empty(), "{:?}", w.jobs.bodies());
}

#[tokio::test]
async fn records_past_the_budget_travel_as_a_record_only_job() {
    let w = World::new(2_000).await;
    let m = optin_and_job(&w).await;
    fail_the_whole_record_budget(&w);
    assert_eq!(
        w.sender.handle_message(&m.body).await,
        Fate::Ack,
        "the original job is acknowledged once the outcome travels"
    );
    assert!(w.jobs.delete(&m.receipt_handle));
    let records = record_only_jobs(&w);
    assert_eq!(records.len(), 1, "{:?}", w.jobs.bodies());
    let sent = records[0].sent.clone().unwrap();
    assert_eq!(sent.attempt, 1);
    assert_eq!(
        sent.message_id.as_deref(),
        Some(w.sim.messages()[0].message_id.as_str())
    );
    assert_eq!(
        w.store.get_optin(KEY).await.unwrap().unwrap().state,
        OptinState::Sending,
        "not recorded yet"
    );

    let (outcomes, _) = w.drain(200).await;
    assert_eq!(
        w.attempts_for("L1"),
        1,
        "the record-only job never calls Graph: {outcomes:?}"
    );
    assert_eq!(outcomes, vec![JobOutcome::Recorded]);
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1));
    assert_eq!(o.message_id, sent.message_id);
    assert!(w.scheduler.is_empty(), "deadline check deleted");
}

/// The original job comes back (its delete failed, or SQS delivered it twice) after its
/// lease lapsed; the table is back. Its record-only job, visible at once, lands first and the
/// old job finds the opt-in sent.
#[tokio::test]
async fn the_original_job_redelivered_after_its_lease_finds_the_record() {
    let w = World::new(2_000).await;
    let m = optin_and_job(&w).await;
    fail_the_whole_record_budget(&w);
    let acked_at = w.now();
    assert_eq!(w.sender.handle_message(&m.body).await, Fate::Ack);
    // Not deleted: it reappears after the queue's visibility timeout, which (as deployed:
    // 180 s) is longer than the lease.
    let lease = SenderConfig::default().lease_ms;
    w.jobs
        .change_visibility(&m.receipt_handle, (lease / 1000 + 10) as u32);
    let fates = w.pump(200).await;
    assert_eq!(
        w.attempts_for("L1"),
        1,
        "no second attempt: {fates:?} {:?}",
        w.sim.attempts()
    );
    assert_eq!(
        fates,
        vec![Fate::Ack, Fate::Ack],
        "record, then the old job"
    );
    assert!(
        w.now() > acked_at + lease,
        "the old job came back after the lease"
    );
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1));

    // And a copy of the original arriving long after, lease long gone: nothing to do.
    w.advance(10 * 60_000);
    w.jobs.push(m.body.clone(), vec![], 0);
    let (outcomes, _) = w.drain(20).await;
    assert_eq!(
        outcomes,
        vec![JobOutcome::AlreadyDone {
            state: Some(OptinState::Sent)
        }]
    );
    assert_eq!(w.attempts_for("L1"), 1);
}

/// The table is still down when the record-only job first runs: it is kept and retried, and
/// still never calls Graph.
#[tokio::test]
async fn a_record_only_job_outlasts_a_longer_table_outage() {
    let w = World::new(2_000).await;
    let m = optin_and_job(&w).await;
    fail_the_whole_record_budget(&w);
    assert_eq!(w.sender.handle_message(&m.body).await, Fate::Ack);
    assert!(w.jobs.delete(&m.receipt_handle));
    // Three more failures: the record-only job's first tries.
    w.store.fail_next(StoreOp::Finish, 3);
    let fates = w.pump(500).await;
    assert_eq!(w.attempts_for("L1"), 1, "{fates:?}");
    assert_eq!(
        fates
            .iter()
            .filter(|f| matches!(f, Fate::Retry { .. }))
            .count(),
        3,
        "{fates:?}"
    );
    assert_eq!(fates.last(), Some(&Fate::Ack));
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1));
}

/// The remaining window: the table AND the outbound queue are down for the whole record
/// budget. The outcome cannot be kept anywhere, so the job is kept (an error, retried after
/// the queue's visibility timeout); it then finds the opt-in `sending` with a lapsed lease and
/// sends again: one resend, stated in the README. Never a third.
#[tokio::test]
async fn table_and_queue_down_keep_the_job_and_it_resends_once() {
    let w = World::new(2_000).await;
    let m = optin_and_job(&w).await;
    fail_the_whole_record_budget(&w);
    w.jobs.set_fault(QueueFault::FailCalls(1));
    let fate = w.sender.handle_message(&m.body).await;
    assert!(
        matches!(
            fate,
            Fate::Retry {
                after_secs: None,
                ..
            }
        ),
        "kept for the queue's visibility timeout: {fate:?}"
    );
    assert!(record_only_jobs(&w).is_empty());
    assert_eq!(
        w.store.get_optin(KEY).await.unwrap().unwrap().state,
        OptinState::Sending
    );
    // Both back; the kept job reappears.
    let fates = w.pump(500).await;
    assert_eq!(fates.last(), Some(&Fate::Ack), "{fates:?}");
    assert_eq!(
        w.attempts_for("L1"),
        2,
        "exactly one resend: {:?}",
        w.sim.attempts()
    );
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 2));
    w.advance(60 * 60_000);
    w.jobs.push(m.body.clone(), vec![], 0);
    w.pump(20).await;
    assert_eq!(w.attempts_for("L1"), 2, "never a third");
}

// ----- a stale attempt may not reopen what another attempt finished ----------------------

/// Attempt 1's answer is lost to a timeout while (by our clock) its lease lapses; attempt 2
/// takes over and sends. Attempt 1's late failure must not release the sent opt-in: the
/// finish condition (state `sending` and the attempt's own number) refuses it, so a later
/// copy of the job finds it sent. Two attempts (the lost answer's one resend), never three.
#[tokio::test]
async fn a_stale_attempts_late_failure_cannot_reopen_a_sent_optin() {
    let w = World::new(400).await;
    w.sim
        .set_faults(Faults {
            timeout_ms: 1_500,
            ..Faults::default()
        })
        .unwrap();
    w.login_optin("L1").await;
    let job = w.queued_jobs().pop().unwrap();
    w.sim.lose_next_answers(1, FaultKind::Timeout);
    let lease = SenderConfig::default().lease_ms;
    // Attempt 2 runs on another instance whose client waits for a slow answer.
    let patient = another_sender(&w, 5_000);
    let first = w.sender.run_job(&job);
    let second = async {
        while w.attempts_for("L1") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        w.advance(lease + 1_000);
        patient.run_job(&job).await
    };
    let (first, second) = tokio::join!(first, second);
    let state = w.store.get_optin(KEY).await.unwrap().unwrap().state;
    // Every copy of the job from now on must find it sent.
    w.advance(60_000);
    let (outcomes, _) = w.drain(50).await;
    assert_eq!(
        w.attempts_for("L1"),
        2,
        "the lost answer's one resend, never a third: {:?}",
        w.sim.attempts()
    );
    assert_eq!(state, OptinState::Sent, "the stale release did not apply");
    assert!(matches!(second, Ok(JobOutcome::Sent { .. })), "{second:?}");
    assert!(
        matches!(first, Ok(JobOutcome::RetryLater { .. })),
        "{first:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, JobOutcome::AlreadyDone { .. })),
        "{outcomes:?}"
    );
}

/// A sender over the same world with its own Graph client timeout (another Lambda instance).
fn another_sender(w: &World, client_timeout_ms: u64) -> Sender {
    let graph = GraphClient::new(GraphConfig {
        base_url: w.sim.base_url(),
        timeout: Duration::from_millis(client_timeout_ms),
        ..GraphConfig::default()
    })
    .expect("graph client");
    Sender::new(
        SenderPorts {
            table: Table::new(w.store.clone()),
            outbound: w.jobs.clone(),
            bus: w.bus.clone(),
            graph: Arc::new(graph),
            scheduler: w.scheduler.clone(),
            secrets: Arc::new(lc_testkit::secrets()),
            clock: Arc::new(w.clock.clone()),
            metrics: w.metrics.clone(),
        },
        lc_testkit::sender_config(),
    )
}

/// Attempt 1's answer is lost (its client gives up at 400 ms) after, by our clock, its lease
/// lapsed and attempt 2 (another instance, patient client) took over; attempt 2's answer is
/// held too. Attempt 1's late release must not free attempt 2's claim: a third copy of the
/// job arriving meanwhile finds the claim held and makes no attempt. Afterwards each lost
/// answer costs its one resend, no more.
#[tokio::test]
async fn a_stale_attempts_late_failure_cannot_release_another_attempts_claim() {
    let w = World::new(400).await;
    w.sim
        .set_faults(Faults {
            timeout_ms: 1_500,
            ..Faults::default()
        })
        .unwrap();
    w.login_optin("L1").await;
    let job = w.queued_jobs().pop().unwrap();
    w.sim.lose_next_answers(2, FaultKind::Timeout);
    let patient = another_sender(&w, 5_000);
    let lease = SenderConfig::default().lease_ms;
    let first_done = std::sync::atomic::AtomicBool::new(false);
    let first = async {
        let r = w.sender.run_job(&job).await;
        first_done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let second = async {
        while w.attempts_for("L1") < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        w.advance(lease + 1_000);
        patient.run_job(&job).await
    };
    let third = async {
        while !first_done.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(w.attempts_for("L1"), 2, "attempt 2 is in flight");
        let out = w.sender.run_job(&job).await;
        (out, w.attempts_for("L1"))
    };
    let (first, second, (third, attempts_after_third)) = tokio::join!(first, second, third);
    assert_eq!(
        attempts_after_third,
        2,
        "a third copy sent while attempt 2 held the claim: {third:?} {:?}",
        w.sim.attempts()
    );
    assert!(
        matches!(third, Ok(JobOutcome::RetryLater { .. })),
        "{third:?}"
    );
    assert!(
        matches!(first, Ok(JobOutcome::RetryLater { .. })),
        "{first:?}"
    );
    assert!(
        matches!(second, Ok(JobOutcome::RetryLater { .. })),
        "{second:?}"
    );
    // Attempt 2 released its own claim; the retry sends once more (its lost answer's resend).
    w.advance(60_000);
    w.drain(200).await;
    let t = w.tally().remove("L1").unwrap_or_default();
    assert_eq!((t.attempts, t.accepted_lost), (3, 2), "{t:?}");
    assert_eq!(
        w.store.get_optin(KEY).await.unwrap().unwrap().state,
        OptinState::Sent
    );
}
