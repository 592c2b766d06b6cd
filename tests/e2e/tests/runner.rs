//! The local runner's pipeline end to end: the demo story (in memory and on moto), injected
//! Graph faults across the whole pipeline, and a restart in the middle of a load on the same
//! moto state.
//!
//! The simulator runs with `allow_repeat_login_id_sends` on in the exactly-once tests: a
//! second message to a login_id is accepted and counted, so they assert on send *attempts*
//! per recipient, not on what Meta would have refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_sim::{ConfigUpdate, Faults};
use lc_core::lifecycle::processor::LifecycleConfig;
use lc_core::ports::SystemClock;
use lc_core::sending::sender::SenderConfig;
use lc_core::webhook::signature::sign;
use lc_local::pipeline::{Backends, Pipeline, PipelineConfig};
use lc_local::serve::{local_secrets, now_ms, page_ids, start_sim, PAGE};
use lc_testkit::{tally, Tally};
use tower::ServiceExt;

fn endpoint() -> String {
    let e = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        e.starts_with("http://127.0.0.1"),
        "run tests/run.sh (moto on 127.0.0.1), got {e:?}"
    );
    e
}

#[tokio::test]
async fn demo_story_in_memory() {
    lc_local::demo::demo(demo_settings(None))
        .await
        .expect("every step of the demo holds");
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn demo_story_on_moto() {
    let e = endpoint();
    lc_local::demo::demo(demo_settings(Some(e)))
        .await
        .expect("every step of the demo holds on moto");
}

/// Each Graph call's timeout in these pipelines. Generous on purpose: an answer that arrives
/// after it (a busy 2-core machine running moto, the simulator and 4 workers on one test
/// thread) is a *lost answer* to the sender, which then legitimately sends again (the known
/// window, tested on its own in lc-sender's `after_meta_said_yes`). At 400 ms that happened
/// here, and counting attempts showed it.
const GRAPH_TIMEOUT_MS: u64 = 2_000;

/// Fast retries, and the lease derived as deployed (`with_timeouts`: a 2 s Graph timeout in a
/// 10 s "function" gives 15 s), not a fixed lease shorter than an attempt may take.
fn fast_sender() -> SenderConfig {
    SenderConfig {
        backoff_base_ms: 100,
        backoff_cap_ms: 1_000,
        ..SenderConfig::default()
    }
    .with_timeouts(GRAPH_TIMEOUT_MS as i64, 10_000)
    .expect("2 s of Graph fit in 10 s")
}

fn pipeline(
    backends: Backends,
    secrets: Arc<lc_core::support::secret::Secrets>,
    graph: String,
) -> Pipeline {
    Pipeline::new(
        backends,
        secrets,
        Arc::new(SystemClock),
        PipelineConfig {
            graph_base_url: graph,
            graph_timeout: Duration::from_millis(GRAPH_TIMEOUT_MS),
            // Short claims so a copy retried after a stop is taken over within seconds.
            lifecycle: LifecycleConfig {
                job_claim_ms: 3_000,
                ..LifecycleConfig::default()
            },
            sender: fast_sender(),
            poll: Duration::from_millis(20),
            workers: 4,
            events_window: Duration::ZERO,
            outbound_window: Duration::ZERO,
        },
    )
    .expect("pipeline")
}

async fn post(p: &Pipeline, secret: &str, login_id: &str) -> u16 {
    let ts = now_ms();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{ts},"messaging":[{{"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"optin":{{"login_id":"{login_id}"}}}}]}}]}}"#
    );
    let sig = sign(secret, body.as_bytes());
    let router = lc_api::Api::new().intake(p.intake.clone()).router();
    let req = axum::http::Request::post("/webhook")
        .header("x-hub-signature-256", sig)
        .body(axum::body::Body::from(body))
        .expect("request");
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(lc_api::webhook::BODY_OK.as_bytes(), &text[..]);
    status
}

/// The simulator of these tests accepts a second login_id message, so a duplicate shows.
fn repeat_mode(sim: &graph_sim::SimHandle) {
    sim.update_config(ConfigUpdate {
        allow_repeat_login_id_sends: Some(true),
        ..ConfigUpdate::default()
    });
}

/// Waits until the simulator accepted `n` distinct login_ids (and a moment more, so a late
/// duplicate would show); returns the attempts per recipient.
async fn wait_sent(
    sim: &graph_sim::SimHandle,
    n: usize,
    within: Duration,
) -> BTreeMap<String, Tally> {
    let start = Instant::now();
    loop {
        let t = tally(&sim.attempts());
        let sent = t.values().filter(|t| t.accepted > 0).count();
        if sent >= n || start.elapsed() > within {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return tally(&sim.attempts());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn faults_across_the_whole_pipeline() {
    let (secrets, _) = local_secrets(&page_ids(1));
    let secrets = Arc::new(secrets);
    let sim = start_sim(&secrets, 300).await.expect("sim");
    repeat_mode(&sim);
    sim.set_faults(Faults {
        error_5xx_ratio: 0.30,
        timeout_ratio: 0.10,
        // Held longer than the client waits: a plain timeout (nothing recorded).
        timeout_ms: 3_000,
        latency_ms: 0,
        seed: 11,
    })
    .expect("faults");
    let p = pipeline(
        Backends::memory(Arc::new(SystemClock), 2_000),
        secrets.clone(),
        sim.base_url(),
    );
    let n = 30;
    for i in 0..n {
        let id = format!("fault-{i}");
        sim.register_login_id(&id, None, now_ms());
        assert_eq!(
            post(&p, secrets.apps[0].app_secret.expose(), &id).await,
            200
        );
    }
    let per = wait_sent(&sim, n, Duration::from_secs(60)).await;
    let stats = sim.stats();
    let sent = per.values().filter(|t| t.accepted > 0).count();
    let duplicates: usize = per.values().map(|t| t.accepted.saturating_sub(1)).sum();
    let after_accept: usize = per.values().map(|t| t.after_known_accept).sum();
    println!(
        "pipeline faults optins={n} sent={sent} duplicates={duplicates} attempts={} injected_5xx={} injected_timeouts={}",
        stats.attempts,
        stats.faults_5xx,
        stats.faults_timeout
    );
    assert_eq!(sent, n, "every opt-in got its first message");
    // Plain faults never reach Meta's rules, so retrying them is right; nothing may be
    // attempted once an acceptance was answered, and nothing accepted twice.
    assert_eq!(duplicates, 0, "none twice: {per:?}");
    assert_eq!(
        after_accept, 0,
        "an attempt after an answered send: {per:?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn restart_mid_load_on_the_same_moto_state() {
    let e = endpoint();
    let run = format!("restart-{}", std::process::id());
    let (secrets, _) = local_secrets(&page_ids(1));
    let secrets = Arc::new(secrets);
    let sim = start_sim(&secrets, 300).await.expect("sim");
    repeat_mode(&sim);
    // Slow Graph answers keep work in flight when the runner stops.
    sim.set_faults(Faults {
        latency_ms: 150,
        seed: 3,
        ..Faults::default()
    })
    .expect("faults");
    let secret = secrets.apps[0].app_secret.expose().to_string();
    let n = 40;

    let first = pipeline(
        Backends::aws(&e, &run, 2).await.expect("aws"),
        secrets.clone(),
        sim.base_url(),
    );
    for i in 0..n {
        let id = format!("restart-{i}");
        sim.register_login_id(&id, None, now_ms());
        assert_eq!(post(&first, &secret, &id).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = sim.messages().len();
    let first_metrics = first.metrics.clone();
    drop(first); // stop mid-load: consumers abort wherever they are
    let stopped_at = sim.now_ms();
    assert!(
        before < n,
        "the runner must stop before finishing ({before} of {n} sent)"
    );
    // Let requests that reached the simulator finish there (the client is gone).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempted_before_stop = tally(&sim.attempts());

    let backends = Backends::aws(&e, &run, 2).await.expect("aws again");
    // In flight at the stop: attempted at Meta, not recorded `sent`. Only these may be sent
    // again (the documented window: a stop between Meta's answer and the record).
    let mut in_flight = Vec::new();
    for id in attempted_before_stop.keys() {
        let o = backends
            .table
            .optins
            .get_optin(&format!("OPTIN#login_id#{id}"))
            .await
            .expect("read")
            .expect("opt-in");
        if o.state != lc_core::lifecycle::optin::OptinState::Sent {
            in_flight.push(id.clone());
        }
    }
    let second = pipeline(backends, secrets.clone(), sim.base_url());
    let per = wait_sent(&sim, n, Duration::from_secs(90)).await;
    let second_metrics = second.metrics.clone();
    drop(second);
    // Failed Graph answers the sender saw (no faults are injected here, so only a client
    // timeout on a slow answer): each may be a lost answer, worth one legitimate resend.
    let failed_answers = first_metrics
        .snapshot()
        .into_iter()
        .chain(second_metrics.snapshot())
        .filter(|m| matches!(m, lc_core::ports::Metric::GraphError(_)))
        .count();
    let sent = per.values().filter(|t| t.accepted > 0).count();
    let extra: usize = per.values().map(|t| t.attempts - 1).sum();
    println!(
        "restart optins={n} sent_before_stop={before} in_flight_at_stop={} failed_answers={failed_answers} sent={sent} duplicates={extra}",
        in_flight.len()
    );
    assert_eq!(
        sent, n,
        "every opt-in got its first message after the restart"
    );
    let all = sim.attempts();
    for (id, t) in per.iter().filter(|(_, t)| t.attempts > 1) {
        let seen: Vec<String> = all
            .iter()
            .filter(|a| a.recipient_id.as_deref() == Some(id.as_str()))
            .map(|a| format!("seq={} at={} {:?}", a.seq, a.at_ms - stopped_at, a.outcome))
            .collect();
        println!("restart resent {id}: {t:?} {seen:?}");
    }
    // Only a send in flight at the stop, or one whose answer we lost, may go again, once.
    let mut unexplained = 0;
    for (id, t) in &per {
        assert!(t.attempts <= 2, "{id}: at most one resend: {t:?}");
        if t.attempts > 1 && !in_flight.contains(id) {
            unexplained += 1;
        }
    }
    assert!(
        unexplained <= failed_answers,
        "{unexplained} resends neither in flight at the stop nor after a failed answer"
    );
}

fn demo_settings(aws_endpoint: Option<String>) -> lc_local::serve::Settings {
    lc_local::serve::Settings::new(
        &lc_local::cli::Common {
            aws_endpoint,
            graph_url: None,
            events_log: None,
        },
        &lc_local::cli::ServeArgs::default(),
    )
}
