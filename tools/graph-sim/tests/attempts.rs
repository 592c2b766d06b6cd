//! Attempt counting, the repeat-send mode, lost answers and per-Page rate
//! counting: the tools that let a test prove *our* sender sent once.

mod common;

use common::*;
use graph_sim::{AttemptOutcome, FaultKind, Faults};
use serde_json::json;

#[tokio::test]
async fn every_attempt_is_recorded_whatever_its_outcome() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    // The simulator refuses the second message itself; the attempt still counts.
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));
    // A body the rules refuse early is an attempt too, with what could be read.
    post_raw(
        &sim,
        &format!("/v25.0/me/messages?access_token={TOKEN_A}"),
        "not json".into(),
    )
    .await
    .assert_err(100, None);
    // A faulted attempt: nothing recorded as a message, still an attempt.
    sim.set_faults(Faults {
        error_5xx_ratio: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    assert_eq!(r.status, 500);

    let a = sim.attempts();
    assert_eq!(a.len(), 4);
    assert_eq!(
        a.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(a[0].page_id.as_deref(), Some(PAGE_A));
    assert_eq!(a[0].recipient_kind.as_deref(), Some("login_id"));
    assert_eq!(a[0].recipient_id.as_deref(), Some("L1"));
    assert_eq!(a[0].messaging_type.as_deref(), Some("UPDATE"));
    assert_eq!(a[0].tag, None);
    assert!(a[0].is_accepted());
    assert_eq!(
        a[0].outcome,
        AttemptOutcome::Accepted {
            message_id: sim.messages()[0].message_id.clone().into()
        }
    );
    assert_eq!(a[1].refusal(), Some((10, Some(2018278))));
    assert_eq!(a[2].refusal(), Some((100, None)));
    assert_eq!(a[2].recipient_kind, None);
    assert_eq!(
        a[3].outcome,
        AttemptOutcome::Fault {
            fault: FaultKind::Http5xx
        }
    );
    assert_eq!(a[3].recipient_id.as_deref(), Some("L1"));
    assert_eq!(sim.attempts_for("L1"), 3);
    assert_eq!(sim.attempts_for("nobody"), 0);

    let stats = sim.stats();
    assert_eq!(stats.attempts, 4);
    assert_eq!(stats.accepted, 1);
    // Three attempts at (PAGE_A, L1): two beyond the first.
    assert_eq!(stats.duplicate_attempts, 2);
    assert_eq!(stats.duplicate_accepted, 0);
}

#[tokio::test]
async fn attempts_over_http_and_cleared_by_reset() {
    let sim = sim().await;
    sim.register_person(PAGE_B, "P1", sim.now_ms());
    sim.register_user_ref("R1", None, sim.now_ms());
    post(
        &sim,
        &format!("/v25.0/{PAGE_B}/messages?access_token={TOKEN_B}"),
        &tagged(json!({"id": "P1"}), "HUMAN_AGENT"),
    )
    .await;
    send(&sim, TOKEN_A, &user_ref("R1")).await.assert_ok();
    send(&sim, TOKEN_B, &user_ref("R1"))
        .await
        .assert_err(100, Some(2018001));
    // An unknown token on /me: no Page to name.
    send(&sim, "bogus", &user_ref("R1"))
        .await
        .assert_err(190, None);

    let r = get(&sim, "/_sim/attempts").await;
    assert_eq!(r.status, 200);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["page_id"], PAGE_B);
    assert_eq!(list[0]["tag"], "HUMAN_AGENT");
    assert_eq!(list[0]["messaging_type"], "MESSAGE_TAG");
    assert_eq!(list[1]["recipient_kind"], "user_ref");
    assert_eq!(list[1]["outcome"]["result"], "accepted");
    assert!(list[1]["outcome"]["message_id"].is_string());
    assert_eq!(
        list[2]["outcome"],
        json!({"result": "refused", "code": 100, "subcode": 2018001})
    );
    assert_eq!(list[3]["page_id"], serde_json::Value::Null);
    let stats = get(&sim, "/_sim/stats").await.body;
    assert_eq!(stats["attempts"], 4);
    // One attempt per (Page, user_ref): PAGE_A, PAGE_B and "no Page".
    assert_eq!(stats["duplicate_attempts"], 0);

    sim.reset();
    assert!(sim.attempts().is_empty());
    assert_eq!(sim.stats().attempts, 0);
}

#[tokio::test]
async fn timeout_faults_are_attempts_recorded_when_they_arrive() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.set_faults(Faults {
        timeout_ratio: 1.0,
        timeout_ms: 300,
        ..Faults::default()
    })
    .unwrap();
    let base = sim.base_url();
    let c = sim.client.clone();
    let pending = tokio::spawn(async move {
        c.post(format!("{base}/v25.0/me/messages?access_token={TOKEN_A}"))
            .json(&login("L1"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Visible while the connection is still held.
    assert_eq!(sim.attempts_for("L1"), 1);
    assert_eq!(pending.await.unwrap().unwrap(), 504);
    assert_eq!(
        sim.attempts()[0].outcome,
        AttemptOutcome::Fault {
            fault: FaultKind::Timeout
        }
    );
    assert!(sim.messages().is_empty());
}

// ----- repeat mode ------------------------------------------------------------------

#[tokio::test]
async fn one_shot_recipients_take_one_message_by_default() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.register_user_ref("R1", None, sim.now_ms());
    for body in [login("L1"), user_ref("R1")] {
        send(&sim, TOKEN_A, &body).await.assert_ok();
        send(&sim, TOKEN_A, &body)
            .await
            .assert_err(10, Some(2018278));
    }
    assert_eq!(sim.messages().len(), 2);
}

#[tokio::test]
async fn repeat_mode_accepts_a_second_message_and_counts_it() {
    let sim = sim_with(graph_sim::SimConfig {
        allow_repeat_login_id_sends: true,
        ..graph_sim::SimConfig::default()
    })
    .await;
    let t0 = sim.now_ms();
    sim.freeze_clock();
    sim.register_login_id("L1", None, t0);
    sim.register_user_ref("R1", None, t0);
    for _ in 0..3 {
        send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    }
    send(&sim, TOKEN_A, &user_ref("R1")).await.assert_ok();
    send(&sim, TOKEN_A, &user_ref("R1")).await.assert_ok();
    // The other rules still hold: the first Page binds, the window closes.
    send(&sim, TOKEN_B, &login("L1"))
        .await
        .assert_err(100, Some(2018001));
    sim.advance_clock(graph_sim::DAY_MS);
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));

    assert_eq!(sim.messages().len(), 5);
    let stats = sim.stats();
    // L1: 3 accepted + 1 refused at PAGE_A (3 beyond the first), 1 at PAGE_B;
    // R1: 2 at PAGE_A.
    assert_eq!(stats.duplicate_attempts, 4);
    assert_eq!(stats.duplicate_accepted, 3);
    assert_eq!(sim.attempts_for("L1"), 5);
}

#[tokio::test]
async fn repeat_mode_over_the_admin_api() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    let r = post(
        &sim,
        "/_sim/config",
        &json!({"allow_repeat_login_id_sends": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["allow_repeat_login_id_sends"], true);
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    sim.update_config(graph_sim::ConfigUpdate {
        allow_repeat_login_id_sends: Some(false),
        ..Default::default()
    });
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));
    // The effective config shows the switch back off.
    assert_eq!(
        get(&sim, "/_sim/config").await.body["allow_repeat_login_id_sends"],
        false
    );
}

// ----- accepted-then-lost answers ---------------------------------------------------

#[tokio::test]
async fn lose_next_5xx_records_the_message_then_answers_500() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    assert_eq!(sim.lose_next_answers(1, FaultKind::Http5xx), 1);
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body["error"]["code"], 2);
    assert_eq!(r.body["error"]["is_transient"], true);
    // Delivered anyway: a naive retry is a duplicate, refused by Meta's rule.
    assert_eq!(sim.messages().len(), 1);
    assert_eq!(sim.pending_lost_answers(), 0);
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));
    let a = sim.attempts();
    assert!(a[0].is_accepted());
    assert_eq!(a[0].lost_answer, Some(FaultKind::Http5xx));
    assert_eq!(a[1].lost_answer, None);
    let stats = sim.stats();
    assert_eq!(stats.lost_answers_5xx, 1);
    assert_eq!(stats.faults_5xx, 0);
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.duplicate_attempts, 1);
}

#[tokio::test]
async fn lost_answer_in_repeat_mode_shows_the_duplicate_message() {
    let sim = sim_with(graph_sim::SimConfig {
        allow_repeat_login_id_sends: true,
        ..graph_sim::SimConfig::default()
    })
    .await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.lose_next_answers(1, FaultKind::Http5xx);
    assert_eq!(send(&sim, TOKEN_A, &login("L1")).await.status, 500);
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    assert_eq!(sim.messages().len(), 2);
    assert_eq!(sim.stats().duplicate_accepted, 1);
}

#[tokio::test]
async fn lose_next_timeout_holds_the_answer_after_recording() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.register_login_id("L2", None, sim.now_ms());
    sim.set_faults(Faults {
        timeout_ms: 300,
        ..Faults::default()
    })
    .unwrap();
    sim.lose_next_answers(2, FaultKind::Timeout);
    let start = std::time::Instant::now();
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(r.status, 504);
    assert_eq!(r.body["error"]["code"], 2);
    // A client that gives up first sees a timeout, but the message went out.
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap()
        .post(format!(
            "{}/v25.0/me/messages?access_token={TOKEN_A}",
            sim.base_url()
        ))
        .json(&login("L2"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(sim.messages().len(), 2);
    assert_eq!(sim.stats().lost_answers_timeout, 2);
    assert_eq!(sim.attempts()[1].lost_answer, Some(FaultKind::Timeout));
}

#[tokio::test]
async fn a_lost_answer_hides_a_refusal_too() {
    let sim = sim().await;
    sim.lose_next_answers(1, FaultKind::Http5xx);
    let r = send(&sim, TOKEN_A, &login("unknown")).await;
    assert_eq!(r.status, 500);
    let a = &sim.attempts()[0];
    assert_eq!(a.refusal(), Some((100, Some(2018001))));
    assert_eq!(a.lost_answer, Some(FaultKind::Http5xx));
    assert_eq!(sim.stats().rejected_by_code_subcode["100/2018001"], 1);
}

async fn lost_run(seed: u64, force_first: bool) -> Vec<u16> {
    let sim = sim().await;
    sim.set_faults(Faults {
        error_5xx_ratio: 0.2,
        seed,
        ..Faults::default()
    })
    .unwrap();
    sim.set_lost_answers(graph_sim::LostAnswerFaults {
        lost_answer_5xx_ratio: 0.3,
        lost_answer_timeout_ratio: 0.0,
    })
    .unwrap();
    if force_first {
        sim.lose_next_answers(1, FaultKind::Http5xx);
    }
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(send(&sim, TOKEN_A, &phone()).await.status);
    }
    let stats = sim.stats();
    let fives = statuses.iter().filter(|s| **s == 500).count() as u64;
    assert_eq!(stats.faults_5xx + stats.lost_answers_5xx, fives);
    // Lost answers were recorded, plain 5xx were not.
    assert_eq!(sim.messages().len() as u64, 30 - stats.faults_5xx);
    assert!(
        stats.lost_answers_5xx > 0 && stats.faults_5xx > 0,
        "{stats:?}"
    );
    statuses
}

#[tokio::test]
async fn lost_answer_ratio_is_seeded_and_forcing_does_not_shift_it() {
    let a = lost_run(42, false).await;
    assert_eq!(a, lost_run(42, false).await);
    assert_ne!(a, lost_run(43, false).await);
    let forced = lost_run(42, true).await;
    assert_eq!(forced[0], 500);
    assert_eq!(forced[1..], a[1..]);
}

#[tokio::test]
async fn lost_answers_over_the_admin_api() {
    let sim = sim().await;
    let r = post(
        &sim,
        "/_sim/faults",
        &json!({"seed": 3, "lost_answer_timeout_ratio": 0.25}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["lost_answer_timeout_ratio"], 0.25);
    assert_eq!(r.body["timeout_ms"], 30_000);
    let g = get(&sim, "/_sim/faults").await.body;
    assert_eq!(g["lost_answer_timeout_ratio"], 0.25);
    assert_eq!(g["lost_answer_5xx_ratio"], 0.0);
    assert_eq!(sim.lost_answers().lost_answer_timeout_ratio, 0.25);
    // Over budget, with either API.
    let r = post(
        &sim,
        "/_sim/faults",
        &json!({"error_5xx_ratio": 0.5, "lost_answer_5xx_ratio": 0.6}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(sim
        .set_faults(Faults {
            error_5xx_ratio: 0.9,
            ..Faults::default()
        })
        .is_err());
    // set_faults keeps the lost-answer ratios.
    sim.set_faults(Faults::default()).unwrap();
    assert_eq!(sim.lost_answers().lost_answer_timeout_ratio, 0.25);

    let r = post(&sim, "/_sim/lose_next", &json!({"count": 2, "kind": "5xx"})).await;
    assert_eq!(r.body, json!({"pending": 2}));
    let r = post(
        &sim,
        "/_sim/lose_next",
        &json!({"count": 1, "kind": "timeout"}),
    )
    .await;
    assert_eq!(r.body, json!({"pending": 3}));
    assert_eq!(
        post(
            &sim,
            "/_sim/lose_next",
            &json!({"count": 1, "kind": "boom"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        get(&sim, "/_sim/lose_next").await.body,
        json!({"pending": 3})
    );
    sim.reset();
    assert_eq!(sim.pending_lost_answers(), 0);
    assert_eq!(sim.lost_answers(), graph_sim::LostAnswerFaults::default());
}

// ----- per-Page rate limit -------------------------------------------------------------

#[tokio::test]
async fn sender_instances_sharing_a_page_share_its_limit() {
    let sim = sim_with(graph_sim::SimConfig {
        rate_limit_per_sec: 5,
        ..graph_sim::SimConfig::default()
    })
    .await;
    // A second token for the same Page: another sender instance.
    sim.register_page(PAGE_A, "PAGE_TOKEN_A2");
    sim.freeze_clock();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let token = if i % 2 == 0 { TOKEN_A } else { "PAGE_TOKEN_A2" };
        let base = sim.base_url();
        let c = sim.client.clone();
        tasks.push(tokio::spawn(async move {
            c.post(format!("{base}/v25.0/me/messages?access_token={token}"))
                .json(&phone())
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3);
    // PAGE_B has its own window.
    send(&sim, TOKEN_B, &phone()).await.assert_ok();
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(stats.rate_limited_by_page.get(PAGE_A), Some(&3));
    assert_eq!(stats.rate_limited_by_page.get(PAGE_B), None);
    assert_eq!(stats.rejected_by_code["613"], 3);
    let over_http = get(&sim, "/_sim/stats").await.body;
    assert_eq!(over_http["rate_limited_by_page"], json!({PAGE_A: 3}));
    assert_eq!(
        sim.attempts()
            .iter()
            .filter(|a| a.refusal() == Some((613, None)))
            .count(),
        3
    );
}

#[tokio::test]
async fn refused_sends_use_the_page_quota_and_613_does_not() {
    let sim = sim_with(graph_sim::SimConfig {
        rate_limit_per_sec: 2,
        ..graph_sim::SimConfig::default()
    })
    .await;
    sim.freeze_clock();
    send(&sim, TOKEN_A, &login("nobody"))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, TOKEN_A, &psid("nobody", "RESPONSE"))
        .await
        .assert_err(100, Some(2018001));
    let r = send(&sim, TOKEN_A, &phone()).await;
    r.assert_err(613, None);
    assert_eq!(r.body["error"]["is_transient"], true);
    sim.advance_clock(999);
    send(&sim, TOKEN_A, &phone()).await.assert_err(613, None);
    sim.advance_clock(1);
    // Only the two refused sends were in the window; 613s never are.
    send(&sim, TOKEN_A, &phone()).await.assert_ok();
    assert_eq!(sim.stats().rate_limited, 2);
}
