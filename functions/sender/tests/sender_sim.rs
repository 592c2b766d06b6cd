//! The sender against the Graph API simulator over real HTTP, on in-memory state: GIVEN
//! opt-ins processed by the events function, WHEN their jobs run (duplicated, after opt-outs,
//! under injected faults), THEN the simulator received exactly what Meta's rules allow.
//!
//! The simulator runs with `allow_repeat_login_id_sends` on ([`World::new`]): a second message
//! to a login_id would be accepted, not refused by the simulator, so "sent once" is asserted
//! on the *attempts* it saw per recipient.

use std::collections::BTreeMap;

use futures::future::join_all;
use graph_sim::Faults;
use lc_core::consumer::Fate;
use lc_core::lifecycle::optin::{OptinState, DAY_MS};
use lc_core::ports::store::PageConfig;
use lc_core::ports::Metric;
use lc_core::ports::{OptinStore, PageStore, PersonStore, Scheduler};
use lc_core::sending::errors::ErrorClass;
use lc_core::sending::sender::JobOutcome;
use lc_testkit::{optin_body as optin_item, World, PAGE, TOKEN};

async fn world(client_timeout_ms: u64) -> World {
    World::new(client_timeout_ms).await
}

async fn opt_in(w: &World, body: &str) {
    w.webhook(body).await;
}

async fn login_optin(w: &World, login_id: &str) {
    w.login_optin(login_id).await;
}

fn queued_jobs(w: &World) -> Vec<lc_core::lifecycle::optin::FirstMessageJob> {
    w.queued_jobs()
}

async fn drain(w: &World, max_rounds: usize) -> (Vec<JobOutcome>, usize) {
    w.drain(max_rounds).await
}

#[tokio::test]
async fn login_id_first_message_goes_once_and_the_schedule_is_deleted() {
    let w = world(2_000).await;
    login_optin(&w, "L1").await;
    let (outcomes, _) = drain(&w, 20).await;
    assert!(
        matches!(
            outcomes[0],
            JobOutcome::Sent {
                schedule_deleted: true,
                ..
            }
        ),
        "{outcomes:?}"
    );
    let sent = w.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        w.attempts_for("L1"),
        1,
        "one attempt: {:?}",
        w.sim.attempts()
    );
    assert_eq!(sent[0].recipient, serde_json::json!({"login_id": "L1"}));
    assert_eq!(sent[0].messaging_type, "UPDATE");
    assert_eq!(sent[0].tag, None, "never a tag on a first message");
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, OptinState::Sent);
    assert_eq!(o.message_id.as_deref(), Some(sent[0].message_id.as_str()));
    assert!(
        w.scheduler.is_empty(),
        "deadline check deleted after the send"
    );
}

#[tokio::test]
async fn checkbox_and_plugin_recipients() {
    let w = world(2_000).await;
    let now = w.now();
    w.sim.register_user_ref("U1", None, now);
    opt_in(&w, &optin_item(r#"{"ref":"x","user_ref":"U1"}"#, None, now)).await;
    w.sim.register_person(PAGE, "P1", now);
    opt_in(&w, &optin_item(r#"{"ref":"plain"}"#, Some("P1"), now)).await;
    drain(&w, 20).await;
    let mut got: Vec<serde_json::Value> =
        w.sim.messages().into_iter().map(|m| m.recipient).collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(
        got,
        vec![
            serde_json::json!({"id": "P1"}),
            serde_json::json!({"user_ref": "U1"})
        ]
    );
}

#[tokio::test]
async fn page_first_message_config_is_used_and_validated() {
    let w = world(2_000).await;
    w.store.put_page(PageConfig {
        page_id: PAGE.into(),
        first_message: Some(
            r#"{"text":"Bienvenue ✓","quick_replies":[{"title":"Oui","payload":"YES"}]}"#.into(),
        ),
        ..PageConfig::default()
    });
    login_optin(&w, "L1").await;
    drain(&w, 20).await;
    let m = &w.sim.messages()[0].message;
    assert_eq!(m["text"], "Bienvenue ✓");
    assert_eq!(m["quick_replies"][0]["payload"], "YES");

    // An invalid config pauses the page instead of sending something Meta would refuse.
    w.store.put_page(PageConfig {
        page_id: PAGE.into(),
        first_message: Some(format!(r#"{{"text":"{}"}}"#, "x".repeat(2001))),
        ..PageConfig::default()
    });
    // A sender reads a Page's config at most once a minute (`page_cache_ms`).
    w.advance(61_000);
    login_optin(&w, "L2").await;
    let job = queued_jobs(&w).pop().unwrap();
    let out = w.sender.run_job(&job).await.unwrap();
    assert!(matches!(out, JobOutcome::PagePaused { .. }), "{out:?}");
    let page = w.store.get_page(PAGE).await.unwrap().unwrap();
    assert!(page.paused && page.paused_reason.unwrap().contains("2001"));
    assert_eq!(w.sim.messages().len(), 1);
}

#[tokio::test]
async fn a_storm_of_fifty_duplicate_jobs_sends_once() {
    let w = world(2_000).await;
    login_optin(&w, "L1").await;
    let job = queued_jobs(&w).pop().unwrap();
    let outcomes = join_all((0..50).map(|_| w.sender.run_job(&job))).await;
    // The simulator would accept a second message (repeat mode): only our claim stops it.
    assert_eq!(
        w.attempts_for("L1"),
        1,
        "50 duplicate jobs must make one send attempt, got {:?}",
        w.sim.attempts()
    );
    let sent = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(JobOutcome::Sent { .. })))
        .count();
    assert_eq!(sent, 1, "{outcomes:?}");
    assert_eq!(w.sim.stats().duplicate_attempts, 0);
    assert_eq!(w.sim.messages().len(), 1);
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.state, o.attempts), (OptinState::Sent, 1));
}

#[tokio::test]
async fn an_opt_out_processed_before_the_job_means_zero_sends() {
    let w = world(2_000).await;
    let now = w.now();
    w.sim.register_person(PAGE, "P1", now);
    opt_in(&w, &optin_item(r#"{"ref":"r"}"#, Some("P1"), now)).await;
    w.store
        .opt_out(PAGE, "P1", "blocked the page", now)
        .await
        .unwrap();
    let (outcomes, _) = drain(&w, 20).await;
    assert!(
        matches!(
            outcomes[0],
            JobOutcome::Refused {
                rule: "opted_out",
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(w.sim.messages().is_empty());
    assert_eq!(
        w.store
            .get_optin(&format!("OPTIN#psid#{PAGE}#P1"))
            .await
            .unwrap()
            .unwrap()
            .state,
        OptinState::OptedOut
    );
}

#[tokio::test]
async fn error_classes_from_the_simulator() {
    let w = world(2_000).await;
    let now = w.now();
    // Unknown to Meta (never registered at the sim): 100/2018001 -> this opt-in failed.
    opt_in(&w, &optin_item(r#"{"login_id":"GHOST"}"#, None, now)).await;
    // Meta's 24 h for this login_id ran out before ours: 10/2018278 -> failed, not opted out.
    w.sim.register_login_id("LATE", None, now - 2 * DAY_MS);
    opt_in(&w, &optin_item(r#"{"login_id":"LATE"}"#, None, now)).await;
    // A PSID whose window Meta considers closed: 10/2018278 -> failed, the person not marked.
    w.sim.register_person(PAGE, "P7", now - 2 * DAY_MS);
    opt_in(&w, &optin_item(r#"{"ref":"r"}"#, Some("P7"), now)).await;
    // Opted out at Meta: 551/1545041 -> unreachable, person stopped.
    w.sim.register_person(PAGE, "P9", now);
    w.sim
        .opt_out(graph_sim::OptOut {
            page_id: Some(PAGE.into()),
            psid: Some("P9".into()),
            ..Default::default()
        })
        .unwrap();
    opt_in(&w, &optin_item(r#"{"ref":"r"}"#, Some("P9"), now)).await;
    let (outcomes, _) = drain(&w, 20).await;
    let mut rules: Vec<&str> = outcomes
        .iter()
        // Four sends to one Page exceed one process's pacing share in a second: those held
        // back come again later; they are not an error class.
        .filter(
            |o| !matches!(o, JobOutcome::Waiting { reason, .. } if reason.starts_with("pacing")),
        )
        .map(|o| match o {
            JobOutcome::Refused { rule, .. } | JobOutcome::Unreachable { rule } => *rule,
            other => other.name(),
        })
        .collect();
    rules.sort_unstable();
    assert_eq!(
        rules,
        [
            "no_matching_user",
            "outside_window",
            "outside_window",
            "person_unavailable"
        ],
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, JobOutcome::Unreachable { .. }))
            .count(),
        1,
        "only 551 stops a person: {outcomes:?}"
    );
    for (key, want) in [
        ("OPTIN#login_id#GHOST", OptinState::Failed),
        ("OPTIN#login_id#LATE", OptinState::Failed),
        (&format!("OPTIN#psid#{PAGE}#P7"), OptinState::Failed),
        (&format!("OPTIN#psid#{PAGE}#P9"), OptinState::OptedOut),
    ] {
        let o = w.store.get_optin(key).await.unwrap().unwrap();
        assert_eq!(o.state, want, "{key}: {:?}", o.last_error);
    }
    let late = w
        .store
        .get_optin("OPTIN#login_id#LATE")
        .await
        .unwrap()
        .unwrap();
    assert!(
        late.last_error
            .as_deref()
            .is_some_and(|e| e.contains("the one message window is used or late")),
        "{:?}",
        late.last_error
    );
    let p7 = w.store.get_person(PAGE, "P7").await.unwrap();
    assert!(
        p7.is_none_or(|p| p.opted_out_at_ms.is_none()),
        "a closed window is not an opt-out"
    );
    assert!(w
        .store
        .get_person(PAGE, "P9")
        .await
        .unwrap()
        .unwrap()
        .opted_out_at_ms
        .is_some());

    // An expired page token: 190 -> operator action: page paused, job kept for replay.
    w.sim.register_page_token(graph_sim::PageRegistration {
        page_id: PAGE.into(),
        token: TOKEN.into(),
        expired: true,
    });
    login_optin(&w, "L3").await;
    let job = queued_jobs(&w).pop().unwrap();
    w.metrics.take();
    // Past the pacing window the sends above filled.
    w.advance(2_000);
    let out = w.sender.run_job(&job).await.unwrap();
    assert!(matches!(out, JobOutcome::PagePaused { .. }), "{out:?}");
    // Counted where it happened, through the metrics port (the alarms read these).
    assert_eq!(
        w.metrics.take(),
        vec![
            Metric::GraphError(ErrorClass::OperatorAction),
            Metric::PagePaused
        ]
    );
    assert!(
        matches!(out.fate(), Fate::Defer { .. }),
        "kept (deferred), not dropped"
    );
    assert!(w.store.get_page(PAGE).await.unwrap().unwrap().paused);
    assert_eq!(
        w.store
            .get_optin("OPTIN#login_id#L3")
            .await
            .unwrap()
            .unwrap()
            .state,
        OptinState::Pending
    );
}

#[tokio::test]
async fn no_message_goes_out_at_or_after_the_deadline() {
    let w = world(2_000).await;
    login_optin(&w, "L1").await;
    let job = queued_jobs(&w).pop().unwrap();
    w.clock.advance(DAY_MS);
    let out = w.sender.run_job(&job).await.unwrap();
    assert!(matches!(out, JobOutcome::Expired { .. }), "{out:?}");
    assert!(w.sim.messages().is_empty());
    assert_eq!(
        w.store
            .get_optin("OPTIN#login_id#L1")
            .await
            .unwrap()
            .unwrap()
            .state,
        OptinState::Expired
    );
}

#[tokio::test]
async fn faults_thirty_percent_5xx_ten_percent_timeouts() {
    // The client gives up (500 ms) only on an injected hold (800 ms), not on a slow answer
    // from a busy machine, which would be a lost answer and a legitimate resend.
    let w = world(500).await;
    w.sim
        .set_faults(Faults {
            error_5xx_ratio: 0.30,
            timeout_ratio: 0.10,
            timeout_ms: 800,
            latency_ms: 0,
            seed: 7,
        })
        .unwrap();
    let n = 40;
    for i in 0..n {
        login_optin(&w, &format!("F{i}")).await;
    }
    let (outcomes, rounds) = drain(&w, 2_000).await;
    let sent = w.sim.messages();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for m in &sent {
        *per.entry(m.recipient.to_string()).or_default() += 1;
    }
    // Plain 5xx and timeouts never reach Meta's rules, so retrying them is legitimate; an
    // accepted message (repeat mode: a second one would be accepted too) must be the only one,
    // and no attempt may follow it.
    let tally = w.tally();
    let duplicates: usize = tally.values().map(|t| t.accepted.saturating_sub(1)).sum();
    let after_accept: usize = tally.values().map(|t| t.after_known_accept).sum();
    let max_send_attempts = tally.values().map(|t| t.attempts).max().unwrap_or(0);
    let mut max_attempts = 0;
    let mut late = 0;
    for i in 0..n {
        let o = w
            .store
            .get_optin(&format!("OPTIN#login_id#F{i}"))
            .await
            .unwrap()
            .unwrap();
        max_attempts = max_attempts.max(o.attempts);
        assert_eq!(o.state, OptinState::Sent, "F{i}");
        if o.sent_at_ms.unwrap_or(i64::MAX) >= o.deadline_at_ms {
            late += 1;
        }
    }
    println!(
        "faults optins={n} sent={} duplicates={duplicates} max_attempts={max_attempts} max_send_attempts={max_send_attempts} late={late} retries={} rounds={rounds}",
        per.len(),
        outcomes
            .iter()
            .filter(|o| matches!(o, JobOutcome::RetryLater { .. } | JobOutcome::Waiting { .. }))
            .count()
    );
    assert_eq!(per.len(), n);
    assert_eq!(duplicates, 0, "{tally:?}");
    assert_eq!(
        after_accept, 0,
        "an attempt after an accepted send: {tally:?}"
    );
    assert_eq!(
        tally.values().map(|t| t.attempts).sum::<usize>(),
        w.sim.stats().attempts as usize
    );
    assert_eq!(late, 0);
    assert!(w.scheduler.get_schedule("none").await.unwrap().is_none());
}

#[tokio::test]
async fn a_login_id_is_only_ever_sent_from_the_page_that_first_used_it() {
    let w = world(2_000).await;
    w.sim.register_page("200", "other-page-token");
    let now = w.now();
    w.sim.register_login_id("L1", None, now);
    w.webhook(&optin_item(r#"{"login_id":"L1"}"#, None, now))
        .await;
    // The same login_id seen from another Page (another app's subscription, a stale page).
    let other = optin_item(r#"{"login_id":"L1"}"#, None, now + 5)
        .replace(&format!("\"{PAGE}\""), "\"200\"");
    w.webhook(&other).await;
    drain(&w, 20).await;
    let sent = w.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(w.attempts_for("L1"), 1, "{:?}", w.sim.attempts());
    assert_eq!(sent[0].page_id, PAGE, "bound to the first page");
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.page_id, PAGE);
}

#[tokio::test]
async fn meta_rate_limits_are_retried_and_paced_without_duplicates() {
    let w = world(2_000).await;
    w.sim.update_config(graph_sim::ConfigUpdate {
        rate_limit_per_sec: Some(3),
        ..Default::default()
    });
    for i in 0..12 {
        login_optin(&w, &format!("R{i}")).await;
    }
    let (outcomes, _) = drain(&w, 5_000).await;
    let stats = w.sim.stats();
    let limited = stats.rejected_by_code.get("613").copied().unwrap_or(0);
    let sent = w.sim.messages();
    println!(
        "rate limit: sent={} limited_613={limited} outcomes={}",
        sent.len(),
        outcomes.len()
    );
    assert_eq!(sent.len(), 12, "every first message goes out");
    let mut ids: Vec<String> = sent.iter().map(|m| m.recipient.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "none twice");
    // 613s are retried (refused attempts); nothing is attempted after an accepted send.
    let tally = w.tally();
    assert_eq!(tally.len(), 12);
    for (id, t) in &tally {
        assert_eq!(t.accepted, 1, "{id}: {t:?}");
        assert_eq!(t.after_known_accept, 0, "{id}: {t:?}");
    }
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, JobOutcome::Waiting { .. })),
        "a Page at its limit is paced and retried"
    );
}

/// A scheduler whose deletes fail (throttled, or a permissions slip).
struct DeleteFails(std::sync::Arc<lc_core::memory::MemoryScheduler>);

#[async_trait::async_trait]
impl Scheduler for DeleteFails {
    async fn create_schedule(
        &self,
        s: &lc_core::ports::OneTimeSchedule,
    ) -> Result<lc_core::ports::ScheduleCreated, lc_core::ports::PortError> {
        self.0.create_schedule(s).await
    }
    async fn delete_schedule(&self, _name: &str) -> Result<bool, lc_core::ports::PortError> {
        Err(lc_core::ports::PortError::Unavailable(
            "injected: DeleteSchedule throttled".into(),
        ))
    }
    async fn get_schedule(
        &self,
        name: &str,
    ) -> Result<Option<lc_core::ports::OneTimeSchedule>, lc_core::ports::PortError> {
        self.0.get_schedule(name).await
    }
}

#[tokio::test]
async fn a_failed_schedule_delete_is_harmless() {
    let w = world(2_000).await;
    login_optin(&w, "L1").await;
    let job = queued_jobs(&w).pop().unwrap();
    let graph = lc_adapters::graph::GraphClient::new(lc_adapters::graph::GraphConfig {
        base_url: w.sim.base_url(),
        ..Default::default()
    })
    .unwrap();
    let sender = lc_core::sending::sender::Sender::new(
        lc_core::sending::sender::SenderPorts {
            table: lc_core::ports::Table::new(w.store.clone()),
            outbound: w.jobs.clone(),
            bus: w.bus.clone(),
            graph: std::sync::Arc::new(graph),
            scheduler: std::sync::Arc::new(DeleteFails(w.scheduler.clone())),
            secrets: std::sync::Arc::new(lc_testkit::secrets()),
            clock: std::sync::Arc::new(w.clock.clone()),
            metrics: w.metrics.clone(),
        },
        lc_testkit::sender_config(),
    );
    let out = sender.run_job(&job).await.unwrap();
    assert!(
        matches!(
            out,
            JobOutcome::Sent {
                schedule_deleted: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        out.fate(),
        Fate::Ack,
        "the job is done even though the delete failed"
    );
    // The check fires later and finds the opt-in sent: nothing to do, nothing sent twice.
    let deadline = w.deadline(2_000);
    let check = lc_core::lifecycle::optin::DeadlineCheck {
        v: 1,
        optin_key: job.optin_key.clone(),
        generation: job.generation,
        check: "at_risk".into(),
    };
    w.advance(23 * 3_600_000);
    let res = deadline.check(&check).await.unwrap();
    assert_eq!(
        res,
        lc_core::deadline::DeadlineOutcome::NothingToDo {
            state: OptinState::Sent
        }
    );
    assert_eq!(w.sim.messages().len(), 1);
    assert_eq!(w.attempts_for("L1"), 1, "{:?}", w.sim.attempts());
}

/// Several sender instances, each with its share of the Page's rate, send to one Page at
/// once. Run with a share (rate / instances) they stay under Meta's limit together; each
/// believing it has the whole rate (the old per-instance pacing) they do not.
async fn senders_sharing_a_page(
    instances: u32,
    believed_instances: u32,
    retry: bool,
) -> (u64, u64) {
    use lc_core::sending::pacing::PacingConfig;
    use lc_core::sending::sender::{Sender, SenderConfig, SenderPorts};
    use std::sync::Arc;

    const RATE: u32 = 20;
    let w = world(2_000).await;
    w.sim.update_config(graph_sim::ConfigUpdate {
        rate_limit_per_sec: Some(RATE),
        ..Default::default()
    });
    let per_instance = 12usize;
    let mut jobs = Vec::new();
    for i in 0..(instances as usize * per_instance) {
        login_optin(&w, &format!("R{i}")).await;
    }
    for m in w.jobs.receive(1_000) {
        jobs.push(
            serde_json::from_str::<lc_core::lifecycle::optin::FirstMessageJob>(&m.body).unwrap(),
        );
    }
    let graph = || {
        Arc::new(
            lc_adapters::graph::GraphClient::new(lc_adapters::graph::GraphConfig {
                base_url: w.sim.base_url(),
                ..Default::default()
            })
            .unwrap(),
        )
    };
    let mut tasks = Vec::new();
    for chunk in jobs.chunks(per_instance) {
        let sender = Sender::new(
            SenderPorts {
                table: lc_core::ports::Table::new(w.store.clone()),
                outbound: w.jobs.clone(),
                bus: w.bus.clone(),
                graph: graph(),
                scheduler: w.scheduler.clone(),
                secrets: Arc::new(lc_testkit::secrets()),
                // Real time: Meta's rate window is real seconds.
                clock: Arc::new(lc_core::ports::SystemClock),
                metrics: w.metrics.clone(),
            },
            SenderConfig {
                pacing: PacingConfig {
                    page_rate_per_sec: RATE,
                    safety: 0.9,
                    instances: believed_instances,
                    urgent_reserve: 0.0,
                    ..PacingConfig::default()
                },
                // The share alone is under test: Meta's usage headers would slow an
                // overrunning sender too (after the fact), so they are ignored here.
                pace_threshold_percent: 1_000,
                ..SenderConfig::default()
            },
        );
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for job in chunk {
                loop {
                    match sender.run_job(&job).await.unwrap() {
                        JobOutcome::RetryLater { delay_ms, .. }
                        | JobOutcome::Waiting { delay_ms, .. }
                            if retry =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(delay_ms as u64))
                                .await
                        }
                        _ => break,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = w.sim.stats();
    (stats.accepted, stats.rate_limited)
}

#[tokio::test]
async fn sender_instances_together_stay_under_a_pages_rate() {
    let (accepted, rate_limited) = senders_sharing_a_page(3, 3, true).await;
    assert_eq!(accepted, 36, "every first message went out");
    assert_eq!(rate_limited, 0, "no 613 from Meta");
}

#[tokio::test]
async fn instances_each_claiming_the_whole_rate_exceed_it() {
    // The control: without the share, three instances overrun the Page's rate.
    let (_, rate_limited) = senders_sharing_a_page(3, 1, false).await;
    assert!(
        rate_limited > 0,
        "the simulator counts 613s when the share is wrong"
    );
}
