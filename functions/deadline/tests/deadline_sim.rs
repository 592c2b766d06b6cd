//! The deadline check with an injected clock: opt-in at T, checks at T+23h, T+24h-1s and
//! T+24h+1s, invoked with the exact input the schedule holds (as Scheduler would).
//!
//! The simulator accepts a repeated login_id message here ([`World::new`]), so every "one
//! send" is asserted on the send *attempts* it saw, not on what it accepted.

use graph_sim::Faults;
use lc_core::deadline::DeadlineOutcome;
use lc_core::lifecycle::optin::{schedule_name, DeadlineCheck, OptinState, DAY_MS};
use lc_core::ports::{OptinStore, Scheduler};
use lc_core::sending::sender::JobOutcome;
use lc_testkit::World;

const HOUR: i64 = 3_600_000;
const KEY: &str = "OPTIN#login_id#L1";
const LOGIN_ID: &str = "L1";

/// Send attempts at the simulator for the one login_id of these tests.
fn attempts(w: &World) -> usize {
    w.attempts_for(LOGIN_ID)
}

/// An opt-in whose job was lost (so only the deadline check can send).
async fn pending_without_job(w: &World) {
    w.login_optin("L1").await;
    while let Some(m) = w.jobs.receive(10).pop() {
        w.jobs.delete(&m.receipt_handle);
    }
}

async fn fire(w: &World, name: &str) -> serde_json::Value {
    let s = w
        .scheduler
        .get_schedule(name)
        .await
        .unwrap()
        .expect("schedule exists");
    let input: serde_json::Value = serde_json::from_str(&s.input).unwrap();
    let deadline = w.deadline(2_000);
    lc_deadline::handle(&deadline, input)
        .await
        .expect("handler succeeds")
}

/// The at-risk check's input as the (already deleted) schedule held it, delivered again.
async fn fire_input(w: &World) -> serde_json::Value {
    let input = serde_json::json!({"v": 1, "optin_key": KEY, "check": "at_risk"});
    lc_deadline::handle(&w.deadline(2_000), input)
        .await
        .expect("handler succeeds")
}

async fn check(w: &World) -> DeadlineOutcome {
    w.deadline(2_000)
        .check(&DeadlineCheck {
            v: 1,
            optin_key: KEY.into(),
            generation: None,
            check: "at_risk".into(),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn at_t_plus_23h_a_pending_optin_gets_its_last_chance() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    w.advance(23 * HOUR);
    let out = fire(&w, &schedule_name(KEY)).await;
    assert_eq!(out["outcome"], "last_chance");
    assert_eq!(w.sim.messages().len(), 1);
    assert_eq!(attempts(&w), 1);
    assert_eq!(
        w.store.get_optin(KEY).await.unwrap().unwrap().state,
        OptinState::Sent
    );
    // Scheduler delivers the same input again (at least once): no second attempt.
    let again = fire_input(&w).await;
    assert_eq!(again["outcome"], "nothing_to_do");
    assert_eq!(attempts(&w), 1);
}

#[tokio::test]
async fn one_second_before_the_deadline_still_sends() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    w.advance(DAY_MS - 1_000);
    assert!(matches!(
        check(&w).await,
        DeadlineOutcome::LastChance {
            outcome: JobOutcome::Sent { .. },
            ..
        }
    ));
    assert_eq!(w.sim.messages().len(), 1);
    assert_eq!(attempts(&w), 1);
}

#[tokio::test]
async fn one_second_after_the_deadline_is_missed_and_nothing_is_sent() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    w.advance(DAY_MS + 1_000);
    let out = check(&w).await;
    assert!(matches!(out, DeadlineOutcome::Missed { .. }), "{out:?}");
    assert!(
        w.sim.messages().is_empty(),
        "never a send after the deadline"
    );
    assert_eq!(attempts(&w), 0, "not even an attempt");
    assert_eq!(
        w.store.get_optin(KEY).await.unwrap().unwrap().state,
        OptinState::Expired
    );
}

#[tokio::test]
async fn a_stuck_sending_optin_is_completed_by_the_last_chance_path() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    // An attempt claimed it and crashed: `sending` with a lease that lapses.
    let now = w.now();
    w.store.claim(KEY, 1, now, now + 30_000).await.unwrap();
    w.advance(23 * HOUR);
    let out = check(&w).await;
    assert!(
        matches!(
            out,
            DeadlineOutcome::LastChance {
                outcome: JobOutcome::Sent { .. },
                ..
            }
        ),
        "{out:?}"
    );
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 2));
    assert_eq!(w.sim.messages().len(), 1);
    // The crashed claim never reached Meta: one attempt at the simulator.
    assert_eq!(attempts(&w), 1);
}

#[tokio::test]
async fn a_live_send_gets_a_final_check_instead_of_a_second_send() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    w.advance(23 * HOUR);
    let now = w.now();
    w.store.claim(KEY, 1, now, now + 30_000).await.unwrap();
    let out = check(&w).await;
    assert_eq!(out, DeadlineOutcome::InFlight { rearmed: true });
    assert!(w.sim.messages().is_empty());
    assert_eq!(attempts(&w), 0, "a live claim is not sent over");
    let fin = w
        .scheduler
        .get_schedule(&format!("{}-f", schedule_name(KEY)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        fin.at_ms
            > w.store
                .get_optin(KEY)
                .await
                .unwrap()
                .unwrap()
                .deadline_at_ms
    );
}

#[tokio::test]
async fn failed_last_chance_rearms_and_the_final_check_reports_the_miss() {
    let w = World::new(2_000).await;
    pending_without_job(&w).await;
    w.sim
        .set_faults(Faults {
            error_5xx_ratio: 1.0,
            seed: 1,
            ..Faults::default()
        })
        .unwrap();
    w.advance(23 * HOUR);
    let out = check(&w).await;
    assert!(
        matches!(
            out,
            DeadlineOutcome::LastChance {
                outcome: JobOutcome::RetryLater { .. },
                rearmed: true
            }
        ),
        "{out:?}"
    );
    // Meta recovers only after the deadline: the final check must not send.
    w.sim.set_faults(Faults::default()).unwrap();
    w.advance(HOUR + 1_000);
    let out = fire(&w, &format!("{}-f", schedule_name(KEY))).await;
    assert_eq!(out["outcome"], "missed");
    assert!(w.sim.messages().is_empty(), "no message after deadline_at");
    let deadline_at = w
        .store
        .get_optin(KEY)
        .await
        .unwrap()
        .unwrap()
        .deadline_at_ms;
    let at_deadline = w
        .sim
        .attempts()
        .iter()
        .filter(|a| a.at_ms >= deadline_at)
        .count();
    assert_eq!(at_deadline, 0, "no attempt at or after deadline_at");
    let o = w.store.get_optin(KEY).await.unwrap().unwrap();
    assert_eq!(o.state, OptinState::Expired);
    assert!(o.last_error.unwrap_or_default().contains("last error"));
}

#[tokio::test]
async fn closed_and_unknown_optins_need_nothing() {
    let w = World::new(2_000).await;
    w.login_optin("L1").await;
    w.drain(20).await;
    w.advance(23 * HOUR);
    assert_eq!(
        check(&w).await,
        DeadlineOutcome::NothingToDo {
            state: OptinState::Sent
        }
    );
    assert_eq!(attempts(&w), 1);
    let unknown = w
        .deadline(2_000)
        .check(&DeadlineCheck {
            v: 1,
            optin_key: "OPTIN#login_id#nobody".into(),
            generation: None,
            check: "at_risk".into(),
        })
        .await
        .unwrap();
    assert_eq!(unknown, DeadlineOutcome::Unknown);
    let bad = lc_deadline::handle(&w.deadline(2_000), serde_json::json!({"hello": 1}))
        .await
        .unwrap();
    assert_eq!(
        bad["outcome"], "invalid_input",
        "no retry loop on input that is not ours"
    );
}

/// The confirm check of a login-started opt-in, fired as Scheduler fires it: it counts
/// `LoginOptinUnconfirmed` (once per check) only when no webhook confirmed the generation, and
/// never sends.
#[tokio::test]
async fn the_confirm_check_counts_only_unconfirmed_login_optins() {
    use lc_core::lifecycle::processor::login_event;
    use lc_core::ports::Metric;

    let w = World::new(2_000).await;
    for id in ["LC-confirmed", "LC-alone"] {
        w.sim.register_login_id(id, None, w.now());
        let ev = login_event(lc_testkit::PAGE, id, w.now(), w.now()).unwrap();
        w.events.process(&ev).await.unwrap();
    }
    // Meta's webhook arrives for one of them only.
    w.advance(5_000);
    w.webhook(&lc_testkit::optin_body(
        r#"{"login_id":"LC-confirmed"}"#,
        None,
        w.now() - 5_000,
    ))
    .await;
    w.drain(20).await;
    let sent = w.sim.attempts().len();
    w.metrics.take();
    w.advance(HOUR);
    let name = |id: &str| format!("{}-c", schedule_name(&format!("OPTIN#login_id#{id}")));

    let out = fire(&w, &name("LC-confirmed")).await;
    assert_eq!(out["outcome"], "login_confirmed");
    assert!(
        w.metrics.take().is_empty(),
        "a confirmed opt-in is not counted"
    );

    let out = fire(&w, &name("LC-alone")).await;
    assert_eq!(out["outcome"], "login_unconfirmed");
    assert_eq!(w.metrics.take(), vec![Metric::LoginOptinUnconfirmed]);
    assert_eq!(w.sim.attempts().len(), sent, "a confirm check never sends");

    // The confirm check of an opt-in that was not started by the login: nothing.
    w.login_optin("W1").await;
    let out = w
        .deadline(2_000)
        .check(&DeadlineCheck {
            v: 1,
            optin_key: "OPTIN#login_id#W1".into(),
            generation: Some(1),
            check: "confirm".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(out, DeadlineOutcome::NothingToDo { .. }),
        "{out:?}"
    );
    assert!(w
        .metrics
        .take()
        .iter()
        .all(|m| *m != Metric::LoginOptinUnconfirmed));
}
