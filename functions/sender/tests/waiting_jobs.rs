//! A job that waits is not a failing job. A Page paused for hours (a token rotation, an
//! operator) or a long pacing backlog defers its job as a fresh, delayed copy, so waiting spends
//! no receives and never walks the job to the DLQ. Runs the sender's per-message function and
//! the `settle` the Lambda wrapper and the local runner use, over a queue whose redrive policy
//! moves a message to the DLQ after 3 receives.

use std::sync::Arc;

use lc_core::consumer::{settle, Fate, Settled, Settling};
use lc_core::lifecycle::optin::OptinState;
use lc_core::memory::MemoryQueue;
use lc_core::ports::{OptinStore, PageStore};
use lc_testkit::{World, PAGE};

const MAX_RECEIVES: u32 = 3;

/// Polls `jobs` as the event source would for `minutes` of clock time, a minute a round.
async fn run_for(w: &World, jobs: &MemoryQueue, dlq: &MemoryQueue, minutes: u32) -> Vec<Fate> {
    let mut fates = Vec::new();
    for _ in 0..minutes {
        for m in jobs.receive(10) {
            let fate = w.sender.handle_message(&m.body).await;
            fates.push(fate.clone());
            let via = Settling {
                queue: Some(jobs),
                dead_letters: Some(dlq),
                requeue: Some(jobs),
            };
            if let Settled::Delete = settle(fate, &m.receipt_handle, &m.body, via).await {
                jobs.delete(&m.receipt_handle);
            }
        }
        w.advance(60_000);
    }
    fates
}

/// Mutation check: map `JobOutcome::PagePaused` back to a timed retry in `JobOutcome::fate`
/// and the fourth receive moves the job to the DLQ: this test fails.
#[tokio::test]
async fn a_paused_page_defers_its_job_for_hours_without_reaching_the_dlq() {
    let w = World::new(5_000).await;
    w.store
        .set_paused(PAGE, Some("token rotation"), w.now())
        .await
        .unwrap();
    w.events
        .process(&w.login_optin_event("L1"))
        .await
        .expect("processed");
    let clock = Arc::new(w.clock.clone());
    let dlq = Arc::new(MemoryQueue::with_clock("dlq", clock.clone(), 30_000));
    let jobs =
        MemoryQueue::with_clock("outbound", clock, 30_000).with_redrive(MAX_RECEIVES, dlq.clone());
    for body in w.jobs.bodies() {
        jobs.push(body, Vec::new(), 0);
    }
    assert_eq!(jobs.len(), 1);

    // Five hours paused: a deferral every 15 minutes, far more than the redrive allows.
    let fates = run_for(&w, &jobs, &dlq, 5 * 60).await;
    let deferred = fates
        .iter()
        .filter(|f| matches!(f, Fate::Defer { .. }))
        .count();
    assert!(deferred > MAX_RECEIVES as usize * 3, "{fates:?}");
    assert_eq!(deferred, fates.len(), "every round deferred: {fates:?}");
    assert!(dlq.is_empty(), "waiting is not failing");
    assert_eq!(jobs.len(), 1, "one job, never a copy too many");
    assert_eq!(w.attempts_for("L1"), 0);

    // Resumed: the next copy sends, once.
    w.store.set_paused(PAGE, None, w.now()).await.unwrap();
    run_for(&w, &jobs, &dlq, 20).await;
    assert_eq!(w.attempts_for("L1"), 1);
    assert!(jobs.is_empty() && dlq.is_empty());
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, OptinState::Sent);
}
