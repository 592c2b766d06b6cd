//! The first message sent inline by the events function (`Lifecycle::with_inline_sender`), on
//! the Graph simulator with `allow_repeat_login_id_sends` on: every assertion counts send
//! *attempts* at the simulator, not acceptances.
//!
//! - Common path: one attempt, the opt-in `sent`, no outbound job, the deadline check deleted.
//! - A duplicate while the send is in flight waits (retry), never sends.
//! - Deferred (a paused Page): the job is queued as before and the sender sends it once.
//! - A Scheduler outage: the job is queued as without an inline sender; one send.
//! - The process dies mid-send (after Meta accepted, before the record): the events message
//!   comes back, waits out the lease, queues the job; the sender's claim takes the lapsed
//!   attempt over. One resend at most (the documented bound for a crash after Meta's yes),
//!   then nothing more.
//! - The first-message events say how the person opted in and with which `ref`, inline and
//!   from a queued job alike.

use std::time::Duration;

use graph_sim::{FaultKind, Faults};
use lc_core::funnel::FunnelStage;
use lc_core::lifecycle::optin::OptinState;
use lc_core::lifecycle::processor::{ProcessError, Processed};
use lc_core::ports::{Metric, OptinStore, PageStore};
use lc_testkit::World;

const KEY: &str = "OPTIN#login_id#L1";

async fn state(w: &World) -> (OptinState, bool) {
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    (o.state, o.job_enqueued)
}

async fn pause(w: &World) {
    w.store
        .set_paused(lc_testkit::PAGE, Some("operator"), w.now())
        .await
        .unwrap();
}

/// Resumes the Page and lets the sender run its queued jobs, past the minute the sending
/// processes keep a Page's config.
async fn resume_and_drain(w: &World) {
    w.store
        .set_paused(lc_testkit::PAGE, None, w.now() + 1)
        .await
        .unwrap();
    w.advance(16 * 60_000);
    w.drain(100).await;
}

#[tokio::test]
async fn inline_common_path_sends_once_without_a_job() {
    let w = World::new(5_000).await;
    let events = w.inline_events();
    let e = w.login_optin_event("L1");
    let before = w.store.counts();
    let done = events.process(&e).await.expect("processed");
    assert!(matches!(done, Processed::OptinCreated { .. }), "{done:?}");
    assert_eq!(w.attempts_for("L1"), 1);
    // Two writes for the opt-in: created already claimed (the Page could send), then `sent`;
    // one read, the Page's config (cached for a minute after).
    // Mutation check: write it `pending` in `new_optin` (drop `admit_new`) and the separate
    // claim makes this three.
    let spent = |op: &str| {
        let key = format!("dynamodb.{op}");
        w.store.counts().get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    assert_eq!(
        (spent("PutItem"), spent("UpdateItem"), spent("GetItem")),
        (1, 1, 1),
        "{:?}",
        w.store.counts()
    );
    assert_eq!(state(&w).await, (OptinState::Sent, false));
    // Both funnel steps counted once each (they share one log line).
    let funnel: Vec<_> = w
        .metrics
        .take()
        .into_iter()
        .filter_map(|m| match m {
            Metric::Funnel { stage, .. } => Some(stage),
            _ => None,
        })
        .collect();
    assert_eq!(
        funnel,
        [FunnelStage::Optin, FunnelStage::FirstMessageSent],
        "the optin step is not lost to the inline send"
    );
    assert!(w.jobs.is_empty(), "no outbound job on the common path");
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert!(
        !w.scheduler.names().contains(&o.schedule_name),
        "the deadline check is deleted once sent"
    );
    let types: Vec<_> = w
        .bus
        .events()
        .iter()
        .map(|e| e.detail_type.as_str())
        .collect();
    assert_eq!(types, ["OptInReceived", "FirstMessageSent"]);

    // Meta's retry of the same event: a duplicate, nothing sent, nothing queued.
    let again = events.process(&e).await.expect("processed");
    assert!(
        matches!(again, Processed::OptinDuplicate { .. }),
        "{again:?}"
    );
    w.advance(10 * 60_000);
    let (_, rounds) = w.drain(50).await;
    assert_eq!(rounds, 0);
    assert_eq!(w.attempts_for("L1"), 1);
}

#[tokio::test]
async fn inline_duplicate_during_the_send_waits_and_never_sends() {
    let w = World::new(5_000).await;
    w.sim
        .set_faults(Faults {
            latency_ms: 300,
            ..Faults::default()
        })
        .unwrap();
    let events = w.inline_events();
    let e = w.login_optin_event("L1");
    let (first, second) = tokio::join!(events.process(&e), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.process(&e).await
    });
    assert!(
        matches!(first, Ok(Processed::OptinCreated { .. })),
        "{first:?}"
    );
    assert!(matches!(second, Err(ProcessError::Retry(_))), "{second:?}");
    // Its redelivery finds the opt-in sent.
    let later = events.process(&e).await.expect("processed");
    assert!(
        matches!(later, Processed::OptinDuplicate { .. }),
        "{later:?}"
    );
    assert_eq!(w.attempts_for("L1"), 1);
    assert!(w.jobs.is_empty());
}

#[tokio::test]
async fn inline_deferred_queues_the_job_and_the_sender_sends_once() {
    let w = World::new(5_000).await;
    pause(&w).await;
    let events = w.inline_events();
    let e = w.login_optin_event("L1");
    events.process(&e).await.expect("processed");
    assert_eq!(w.attempts_for("L1"), 0, "a paused Page sends nothing");
    assert_eq!(state(&w).await, (OptinState::Pending, true), "job queued");
    assert_eq!(w.queued_jobs().len(), 1);
    resume_and_drain(&w).await;
    assert_eq!(w.attempts_for("L1"), 1);
    assert_eq!(state(&w).await.0, OptinState::Sent);
}

/// Mutation check: make `take_job` refuse a `sending` opt-in whose lease lapsed (memory store
/// and DynamoDB adapter) and this test fails: the opt-in stays `sending` with no job.
#[tokio::test]
async fn inline_crash_mid_send_is_taken_over_after_the_lease() {
    let w = World::new(5_000).await;
    // Meta accepts, then holds its answer: the process "dies" while it waits.
    w.sim
        .set_faults(Faults {
            timeout_ms: 2_000,
            ..Faults::default()
        })
        .unwrap();
    w.sim.lose_next_answers(1, FaultKind::Timeout);
    let events = w.inline_events();
    let e = w.login_optin_event("L1");
    let crashed = tokio::time::timeout(Duration::from_millis(500), events.process(&e)).await;
    assert!(crashed.is_err(), "the process died mid-send");
    assert_eq!(w.attempts_for("L1"), 1, "Meta got the first attempt");
    assert_eq!(state(&w).await, (OptinState::Sending, false));

    // Redelivered while the lease may still run: it waits, sends nothing, queues nothing.
    let early = events.process(&e).await;
    assert!(matches!(early, Err(ProcessError::Retry(_))), "{early:?}");
    assert!(w.jobs.is_empty());

    // After the lease (and the creator's job claim): the job is queued, once.
    w.advance(61_000);
    let late = events.process(&e).await.expect("processed");
    assert_eq!(late, Processed::OptinJobTakenOver);
    assert_eq!(state(&w).await, (OptinState::Sending, true));
    let again = events.process(&e).await.expect("processed");
    assert!(
        matches!(again, Processed::OptinDuplicate { .. }),
        "{again:?}"
    );
    assert_eq!(w.queued_jobs().len(), 1);

    // The sender claims the lapsed attempt and sends: one resend, no more.
    w.drain(100).await;
    assert_eq!(state(&w).await.0, OptinState::Sent);
    assert_eq!(w.attempts_for("L1"), 2, "at most one resend after a crash");
    w.advance(10 * 60_000);
    events.process(&e).await.expect("processed");
    w.drain(50).await;
    assert_eq!(w.attempts_for("L1"), 2);
}

/// Mutation check: drop the release in `Lifecycle::opened` (an opt-in written claimed whose
/// deadline check could not be created) and the opt-in stays `sending` until its lease lapses.
#[tokio::test]
async fn inline_scheduler_outage_queues_the_job_and_holds_back_nothing() {
    let w = World::new(5_000).await;
    w.scheduler.fail_next_creates(1);
    let events = w.inline_events();
    let e = w.login_optin_event("L1");
    assert!(events.process(&e).await.is_err(), "the outage is reported");
    assert_eq!(w.queued_jobs().len(), 1, "the job is queued anyway");
    assert_eq!(
        state(&w).await.0,
        OptinState::Pending,
        "written claimed for the inline send, then released for the queued job"
    );
    w.drain(50).await;
    assert_eq!(w.attempts_for("L1"), 1);
    assert_eq!(state(&w).await.0, OptinState::Sent);
    // The redelivery after the creator's claim: already sent, nothing more.
    w.advance(61_000);
    let again = events.process(&e).await.expect("processed");
    assert!(
        matches!(again, Processed::OptinDuplicate { .. }),
        "{again:?}"
    );
    w.drain(50).await;
    assert_eq!(w.attempts_for("L1"), 1);
}

/// `entry_point` and `ref` of the first-message events, as `OptInReceived` says them: what a
/// stack with `OptInReceived` switched off hears of the opt-in. Mutation check: drop
/// `bus::about_optin` from `outcome_events` and this fails; drop the job's `ref` and the queued
/// send (the first) fails it.
#[tokio::test]
async fn first_message_events_say_the_optins_entry_point_and_ref() {
    let w = World::new(5_000).await;
    let events = w.inline_events();
    let about = |detail_type: &str| {
        let all = w.bus.events();
        let e = all
            .iter()
            .rev()
            .find(|e| e.detail_type.as_str() == detail_type)
            .unwrap_or_else(|| panic!("no {detail_type}"));
        let p = &e.detail.payload;
        (p["entry_point"].clone(), p["ref"].clone())
    };
    let expected = (
        serde_json::json!("login_connect"),
        serde_json::json!("spring-sale"),
    );

    // Queued: a paused Page holds it; the sender sends it from the job later. (First: the
    // sending processes read a Page's config once a minute.)
    pause(&w).await;
    let e = w.login_optin_event_with_ref("L2", Some("spring-sale"));
    events.process(&e).await.expect("processed");
    assert_eq!(w.queued_jobs().len(), 1);
    resume_and_drain(&w).await;
    assert_eq!(w.attempts_for("L2"), 1);
    assert_eq!(about("FirstMessageSent"), expected);

    // Inline: the Page can send at once again.
    let e = w.login_optin_event_with_ref("L1", Some("spring-sale"));
    events.process(&e).await.expect("processed");
    assert_eq!(about("OptInReceived"), expected);
    assert_eq!(about("FirstMessageSent"), expected);

    let sent: Vec<_> = w
        .bus
        .events()
        .into_iter()
        .filter(|e| e.detail_type.as_str() == "FirstMessageSent")
        .map(|e| e.detail.payload["ref"].clone())
        .collect();
    assert_eq!(sent, [expected.1.clone(), expected.1]);
}

/// The checkbox plugin's `ref` too: kept on the opt-in, carried by `FirstMessageSent`.
/// Mutation check: create the checkbox opt-in without its ref (`None` in the processor) and
/// this fails.
#[tokio::test]
async fn a_checkbox_optins_ref_reaches_its_first_message_event() {
    let w = World::new(5_000).await;
    let events = w.inline_events();
    w.sim.register_user_ref("U1", None, w.now());
    let e = w.optin_event(
        &serde_json::json!({"ref": "footer-box", "user_ref": "U1"}),
        None,
    );
    events.process(&e).await.expect("processed");
    assert_eq!(w.attempts_for("U1"), 1);
    let all = w.bus.events();
    let sent = all
        .iter()
        .find(|e| e.detail_type.as_str() == "FirstMessageSent")
        .expect("sent");
    assert_eq!(sent.detail.payload["entry_point"], "checkbox");
    assert_eq!(sent.detail.payload["ref"], "footer-box");
}
