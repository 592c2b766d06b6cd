//! Every operations command through the function's handler (`lc_ops::handle`), on the AWS
//! adapters against moto (DynamoDB with its `ops` index, the five SQS queues, Scheduler, the
//! event bus with a rule to the business's queue) and the Graph simulator. The other functions
//! run through their own handlers where a command hands work to them (the events function
//! replays; the sender takes redriven jobs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lc_adapters::dynamodb::{create_table, DynamoStore};
use lc_adapters::eventbridge::{create_bus, route_to_queue, EventBridgeBus};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_adapters::scheduler::{create_group, EventBridgeScheduler, SchedulerConfig};
use lc_adapters::sqs::SqsQueue;
use lc_core::lifecycle::optin::{schedule_name, DeadlineCheck, OptinState, DAY_MS};
use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts};
use lc_core::memory::ManualClock;
use lc_core::operations::{Caller, Operations, OpsConfig, OpsPorts};
use lc_core::ports::graph::{PageAuth, SendError, SendOk, SendRequest, TokenInfo};
use lc_core::ports::store::{Finish, Link, MarketingToken, QuarantinedRecord, TokenStatus};
use lc_core::ports::{
    Clock, GraphApi, MemoryMetrics, Metric, OptinStore, OutMessage, PageStore, PersonStore,
    QuarantineStore, QueueReceiver, QueueSender, Scheduler, Table,
};
use lc_core::sending::errors::GraphError;
use lc_core::sending::sender::{Sender, SenderConfig, SenderPorts};
use lc_core::support::secret::{Secret, Secrets};
use lc_core::webhook::{split_body, Identity, IdentityKind, SplitOutcome};
use lc_testkit::{optin_body, secrets, PAGE, TOKEN};
use serde_json::{json, Value};

const MIN: i64 = 60_000;

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The Graph simulator, except that the next `bad` sends are refused as malformed
/// (`(#100) Invalid parameter`, class `bad_request`): what a wrong `first_message` gets.
struct Flaky {
    inner: GraphClient,
    bad: AtomicU32,
}

#[async_trait]
impl GraphApi for Flaky {
    async fn send(&self, auth: &PageAuth, request: &SendRequest) -> Result<SendOk, SendError> {
        let refuse = self
            .bad
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Err(SendError::Graph {
                error: GraphError::from_response(
                    400,
                    br#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"fbtrace_id":"T"}}"#,
                ),
                usage: Default::default(),
            });
        }
        self.inner.send(auth, request).await
    }

    async fn debug_token(&self, app: &Secret, input: &Secret) -> Result<TokenInfo, SendError> {
        self.inner.debug_token(app, input).await
    }
}

struct Moto {
    sim: graph_sim::SimHandle,
    clock: ManualClock,
    store: DynamoStore,
    scheduler: EventBridgeScheduler,
    events_q: SqsQueue,
    events_dlq: SqsQueue,
    jobs_q: SqsQueue,
    jobs_dlq: SqsQueue,
    scheduler_dlq: SqsQueue,
    business_q: SqsQueue,
    bus: EventBridgeBus,
    secrets: Arc<Secrets>,
    metrics: Arc<MemoryMetrics>,
    graph: Arc<Flaky>,
    ops: Operations,
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> SqsQueue {
    let url = sqs
        .create_queue()
        .queue_name(unique(name))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    SqsQueue::new(sqs.clone(), url)
}

async fn moto() -> Moto {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "run tests/run.sh (moto on 127.0.0.1), got {endpoint:?}"
    );
    let sdk = lc_adapters::aws::load_config().await.expect("aws config");
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("ops");
    create_table(&ddb, &table).await.expect("table");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events_q = queue(&sqs, "events").await;
    let events_dlq = queue(&sqs, "events-dlq").await;
    let jobs_q = queue(&sqs, "outbound").await;
    let jobs_dlq = queue(&sqs, "outbound-dlq").await;
    let scheduler_dlq = queue(&sqs, "scheduler-dlq").await;
    let business_q = queue(&sqs, "business").await;
    let sched = aws_sdk_scheduler::Client::new(&sdk);
    let group = unique("ops");
    create_group(&sched, &group).await.expect("group");
    let scheduler = EventBridgeScheduler::new(
        sched,
        SchedulerConfig::new(
            group,
            "arn:aws:lambda:us-east-1:123456789012:function:deadline",
            "arn:aws:iam::123456789012:role/scheduler",
        ),
    )
    .expect("scheduler");
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let bus_name = unique("bus");
    create_bus(&eb, &bus_name).await.expect("bus");
    route_to_queue(&eb, &sqs, &bus_name, &unique("all"), business_q.queue_url())
        .await
        .expect("rule to the business queue");
    let sim = graph_sim::start(graph_sim::SimConfig::default().with_page(PAGE, TOKEN))
        .await
        .expect("sim");
    let clock = ManualClock::at(sim.now_ms());
    let store = DynamoStore::new(ddb, table);
    let bus = EventBridgeBus::new(eb, bus_name);
    let metrics = Arc::new(MemoryMetrics::new());
    let graph = Arc::new(Flaky {
        inner: GraphClient::new(GraphConfig {
            base_url: sim.base_url(),
            timeout: Duration::from_secs(2),
            ..GraphConfig::default()
        })
        .expect("graph client"),
        bad: AtomicU32::new(0),
    });
    // The simulator's app checks tokens with debug_token.
    let mut with_sim_app = (*secrets()).clone();
    with_sim_app.apps[0].app_id = "100000000000001".into();
    with_sim_app.apps[0].app_secret = Secret::new("sim-app-secret");
    let secrets = Arc::new(with_sim_app);
    let ops = Operations::new(
        OpsPorts {
            table: Table::new(Arc::new(store.clone())),
            bus: Arc::new(bus.clone()),
            events_queue: Arc::new(events_q.clone()),
            outbound_queue: Arc::new(jobs_q.clone()),
            events_dlq: Arc::new(events_dlq.clone()),
            outbound_dlq: Arc::new(jobs_dlq.clone()),
            scheduler_dlq: Arc::new(scheduler_dlq.clone()),
            scheduler: Arc::new(scheduler.clone()),
            secrets: Arc::new(secrets.clone()),
            graph: graph.clone(),
            clock: Arc::new(clock.clone()),
            metrics: metrics.clone(),
        },
        OpsConfig::default(),
    );
    Moto {
        sim,
        clock,
        store,
        scheduler,
        events_q,
        events_dlq,
        jobs_q,
        jobs_dlq,
        scheduler_dlq,
        business_q,
        bus,
        secrets,
        metrics,
        graph,
        ops,
    }
}

impl Moto {
    fn table(&self) -> Table {
        Table::new(Arc::new(self.store.clone()))
    }

    fn lifecycle(&self) -> Lifecycle {
        Lifecycle::new(
            LifecyclePorts {
                table: self.table(),
                scheduler: Arc::new(self.scheduler.clone()),
                jobs: Arc::new(self.jobs_q.clone()),
                secrets: Arc::new(self.secrets.clone()),
                bus: Arc::new(self.bus.clone()),
                clock: Arc::new(self.clock.clone()),
                metrics: self.metrics.clone(),
            },
            LifecycleConfig::default(),
        )
    }

    fn sender(&self) -> Sender {
        Sender::new(
            SenderPorts {
                table: self.table(),
                outbound: Arc::new(self.jobs_q.clone()),
                bus: Arc::new(self.bus.clone()),
                graph: self.graph.clone(),
                scheduler: Arc::new(self.scheduler.clone()),
                secrets: Arc::new(self.secrets.clone()),
                clock: Arc::new(self.clock.clone()),
                metrics: self.metrics.clone(),
            },
            SenderConfig::default(),
        )
    }

    /// The operations function's handler, as Lambda calls it.
    async fn run(&self, event: Value) -> Value {
        let caller = Caller {
            account: Some("123456789012".into()),
            request_id: unique("req"),
            identity: None,
        };
        match lc_ops::handle(&self.ops, event.clone(), caller).await {
            Ok(answer) => answer,
            Err(e) => panic!("{event}: {e}"),
        }
    }

    /// A Login Connect opt-in at `at_ms`, processed by the events function: its job is on the
    /// outbound queue.
    async fn optin(&self, login_id: &str, at_ms: i64) {
        self.sim.register_login_id(login_id, None, at_ms);
        let body = optin_body(&format!(r#"{{"login_id":"{login_id}"}}"#), None, at_ms);
        let SplitOutcome::Events(events) = split_body(body.as_bytes(), self.clock.now_ms()) else {
            panic!("opt-in body must parse");
        };
        let lifecycle = self.lifecycle();
        for e in events {
            lifecycle.process(&e).await.expect("processed");
        }
    }

    /// Runs the sender function's handler on what the outbound queue holds, deleting what it
    /// settled (as Lambda's event source does).
    async fn run_sender(&self) -> usize {
        let sender = self.sender();
        let ev = sqs_event(&self.jobs_q).await;
        let n = ev.records.len();
        let resp = lc_sender::handle(&sender, &self.jobs_q, &self.jobs_dlq, ev.clone()).await;
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        delete_settled(&self.jobs_q, &ev, &failed).await;
        n
    }

    async fn state(&self, login_id: &str) -> OptinState {
        self.store
            .get_optin(&format!("OPTIN#login_id#{login_id}"))
            .await
            .expect("get")
            .expect("opt-in")
            .state
    }

    /// The business's queue: every event on the bus, `(detail-type, detail)`.
    async fn bus_events(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        loop {
            let got = self.business_q.receive(10, 1000).await.expect("receive");
            if got.is_empty() {
                return out;
            }
            for m in got {
                let v: Value = serde_json::from_str(&m.body).expect("event json");
                out.push((
                    v["detail-type"].as_str().unwrap_or_default().to_string(),
                    v["detail"].clone(),
                ));
                self.business_q
                    .delete(&m.receipt_handle)
                    .await
                    .expect("delete");
            }
        }
    }

    async fn bodies(&self, q: &SqsQueue) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        loop {
            let got = q.receive(10, 1000).await.expect("receive");
            if got.is_empty() {
                return out;
            }
            for m in got {
                out.push((m.body.clone(), m.attributes.clone()));
                q.delete(&m.receipt_handle).await.expect("delete");
            }
        }
    }
}

async fn sqs_event(q: &SqsQueue) -> SqsEvent {
    let mut ev = SqsEvent::default();
    for m in q.receive(10, 1000).await.expect("receive") {
        let mut r = SqsMessage::default();
        r.message_id = Some(m.message_id.clone());
        r.receipt_handle = Some(m.receipt_handle.clone());
        r.body = Some(m.body.clone());
        ev.records.push(r);
    }
    ev
}

async fn delete_settled(q: &SqsQueue, ev: &SqsEvent, failed: &[String]) {
    for r in &ev.records {
        if !failed.contains(r.message_id.as_ref().expect("id")) {
            q.delete(r.receipt_handle.as_deref().unwrap_or_default())
                .await
                .expect("delete");
        }
    }
}

async fn put(q: &SqsQueue, body: &str, attributes: &[(&str, &str)]) {
    let failed = q
        .send_batch(&[OutMessage {
            id: "m".into(),
            body: body.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string().into(), v.to_string().into()))
                .collect(),
            delay_secs: 0,
        }])
        .await
        .expect("send");
    assert!(failed.is_empty(), "{failed:?}");
}

fn outcome(answer: &Value) -> &str {
    answer["outcome"].as_str().unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn pause_and_resume_change_what_the_sender_does() {
    let m = moto().await;
    let now = m.clock.now_ms();
    m.optin("L-pause", now).await;

    let pause = json!({"command": "pause_page", "page_id": PAGE, "reason": "token rotation"});
    let a = m.run(pause.clone()).await;
    assert_eq!(
        (a["ok"].clone(), outcome(&a)),
        (json!(true), "paused"),
        "{a}"
    );
    assert_eq!(a["paused_reason"], "operator: token rotation");
    assert_eq!(a["caller"]["account"], "123456789012");
    let again = m.run(pause).await;
    assert_eq!(outcome(&again), "already_paused", "idempotent: {again}");

    // The sender keeps the job of a paused Page (deferred 15 minutes), sends nothing. (The
    // sender's own per-message function: the deferral is a delayed copy, real time on moto,
    // so the test makes this same job visible again itself.)
    let sender = m.sender();
    let jobs = m.jobs_q.receive(10, 1000).await.expect("receive");
    assert_eq!(jobs.len(), 1);
    match sender.handle_message(&jobs[0].body).await {
        lc_core::consumer::Fate::Defer { after_secs, reason } => {
            assert_eq!(after_secs, 900);
            assert!(reason.contains("token rotation"), "{reason}");
        }
        other => panic!("a paused Page keeps its job: {other:?}"),
    }
    assert_eq!(m.state("L-pause").await, OptinState::Pending);
    assert!(m.sim.messages().is_empty());
    lc_core::ports::VisibilityControl::change_visibility(&m.jobs_q, &jobs[0].receipt_handle, 0)
        .await
        .expect("visible again");

    // The gauge says so every sweep while it stays paused.
    m.metrics.take();
    let s = m.run(json!({"command": "sweep"})).await;
    assert_eq!(s["pages_paused"], 1, "{s}");
    assert_eq!(s["paused_pages"][0]["page_id"], PAGE);
    assert_eq!(s["paused_pages"][0]["reason"], "operator: token rotation");
    let gauges = m.metrics.take();
    assert!(gauges.contains(&Metric::PagesPausedNow(1)), "{gauges:?}");

    // A policy block is Meta's to lift: resume refuses it unless forced.
    let resume = json!({"command": "resume_page", "page_id": PAGE});
    m.clock.advance(1_000);
    assert!(m
        .store
        .set_paused(
            PAGE,
            Some("policy_enforcement block: spam"),
            m.clock.now_ms()
        )
        .await
        .expect("pause"));
    let refused = m.run(resume.clone()).await;
    assert_eq!(outcome(&refused), "refused", "{refused}");
    m.clock.advance(1_000);
    let forced = m
        .run(json!({"command": "resume_page", "page_id": PAGE, "force": true}))
        .await;
    assert_eq!(outcome(&forced), "resumed", "{forced}");
    assert_eq!(outcome(&m.run(resume).await), "not_paused", "idempotent");

    // Resumed: the kept job goes out at its recheck.
    m.clock.advance(16 * MIN);
    m.sim.advance_clock(16 * MIN);
    assert_eq!(m.run_sender().await, 1);
    assert_eq!(m.state("L-pause").await, OptinState::Sent);
    assert_eq!(m.sim.messages().len(), 1);
    let s = m.run(json!({"command": "sweep"})).await;
    assert_eq!(
        (s["pages_paused"].clone(), s["oldest_unsent_age_s"].clone()),
        (json!(0), json!(0))
    );

    // On the bus: the operator's pause and resume, and one audit event per command (the
    // sweeps are not commands).
    let events = m.bus_events().await;
    let of = |t: &str| events.iter().filter(|(dt, _)| dt == t).collect::<Vec<_>>();
    let paused = of("PagePaused");
    assert!(
        paused.iter().any(|(_, d)| d["payload"]["by"] == "operator"),
        "{events:#?}"
    );
    assert_eq!(of("PageResumed").len(), 1);
    assert_eq!(of("PageResumed")[0].1["payload"]["by"], "operator");
    let commands: Vec<&str> = of("OperatorCommand")
        .iter()
        .map(|(_, d)| d["payload"]["command"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        commands,
        [
            "pause_page",
            "pause_page",
            "resume_page",
            "resume_page",
            "resume_page"
        ]
    );
    assert!(of("OperatorCommand")
        .iter()
        .all(|(_, d)| d["payload"]["caller"]["account"] == "123456789012"));
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn redriven_jobs_retry_failed_optins_before_their_deadline_and_are_refused_after() {
    let m = moto().await;
    let now = m.clock.now_ms();
    // A: a day ahead. B: ten minutes left when it fails.
    m.optin("L-a", now).await;
    m.optin("L-b", now - DAY_MS + 10 * MIN).await;
    // Meta refuses both sends as malformed: failed, dead-lettered with the reason.
    m.graph.bad.store(2, Ordering::SeqCst);
    assert_eq!(m.run_sender().await, 2);
    assert_eq!(m.state("L-a").await, OptinState::Failed);
    assert_eq!(m.state("L-b").await, OptinState::Failed);

    // C: still pending after failed tries; its job reached the redrive policy's receive limit
    // (SQS moves it without a reason). D: a body someone sent by hand.
    m.optin("L-c", now).await;
    let c_job = m.bodies(&m.jobs_q).await.pop().expect("C's job").0;
    let c_key = "OPTIN#login_id#L-c";
    let claimed = match m
        .store
        .claim(c_key, 1, now, now + MIN)
        .await
        .expect("claim")
    {
        lc_core::ports::store::Claim::Claimed(o) => *o,
        other => panic!("{other:?}"),
    };
    let release = Finish::Release {
        error: "graph 500 code=2 An unexpected error has occurred".into(),
    };
    assert!(m
        .store
        .finish(c_key, claimed.attempts, &release, now)
        .await
        .expect("release"));
    put(&m.jobs_dlq, &c_job, &[]).await;
    put(
        &m.jobs_dlq,
        r#"{"hello":"there"}"#,
        &[("reason", "not a first-message job: x")],
    )
    .await;

    // B's deadline passes; A's is a day away.
    m.clock.advance(11 * MIN);
    let a = m
        .run(json!({"command": "redrive_dlq", "queue": "outbound", "max": 10}))
        .await;
    assert_eq!(outcome(&a), "redriven", "{a}");
    assert_eq!(
        (a["moved"].clone(), a["kept"].clone()),
        (json!(3), json!(1)),
        "{a:#}"
    );
    let by_key = |k: &str| -> Value {
        a["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find(|e| e["optin_key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} in {a:#}"))
    };
    let ea = by_key("OPTIN#login_id#L-a");
    assert!(
        ea["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("(#100) Invalid parameter"),
        "{ea}"
    );
    assert_eq!(ea["reason_from"], "attribute");
    assert!(
        ea["expect"]
            .as_str()
            .unwrap_or_default()
            .starts_with("retry"),
        "{ea}"
    );
    let eb = by_key("OPTIN#login_id#L-b");
    assert!(
        eb["expect"]
            .as_str()
            .unwrap_or_default()
            .starts_with("refused"),
        "{eb}"
    );
    let ec = by_key(c_key);
    assert!(
        ec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("graph 500"),
        "{ec}"
    );
    assert!(ec["reason_from"]
        .as_str()
        .unwrap_or_default()
        .contains("last_error"));
    let kept: Vec<&Value> = a["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|e| e["action"] == "kept")
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["reason"], "not a first-message job: x");

    // Only the hand-written body stays in the DLQ; the jobs are back, marked as redriven.
    let left = m.bodies(&m.jobs_dlq).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, r#"{"hello":"there"}"#);

    // The sender takes them: A is retried and sent, B is refused (past its deadline, stays
    // failed), C is sent. No state was edited by hand.
    let mut rounds = 0;
    while m.run_sender().await > 0 && rounds < 10 {
        rounds += 1;
    }
    assert_eq!(m.state("L-a").await, OptinState::Sent);
    assert_eq!(m.state("L-b").await, OptinState::Failed);
    assert_eq!(m.state("L-c").await, OptinState::Sent);
    let b = m
        .store
        .get_optin("OPTIN#login_id#L-b")
        .await
        .expect("get")
        .expect("B");
    assert!(
        b.last_error
            .unwrap_or_default()
            .contains("Invalid parameter"),
        "B keeps its reason"
    );
    let sent: Vec<String> = m.sim.messages().iter().map(|s| format!("{s:?}")).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");

    // Running the redrive again finds only what it cannot use.
    let again = m
        .run(json!({"command": "redrive_dlq", "queue": "outbound"}))
        .await;
    assert_eq!(outcome(&again), "dlq_empty", "{again}");
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn redrive_moves_events_and_reschedules_deadline_checks() {
    let m = moto().await;
    let now = m.clock.now_ms();

    // An inbound event the events function gave up on (moved by the redrive policy).
    m.sim.register_login_id("L-ev", None, now);
    let body = optin_body(r#"{"login_id":"L-ev"}"#, None, now);
    let SplitOutcome::Events(events) = split_body(body.as_bytes(), now) else {
        panic!("parses");
    };
    let event_json = events[0].to_json().expect("json");
    put(&m.events_dlq, &event_json, &[]).await;
    let a = m
        .run(json!({"command": "redrive_dlq", "queue": "events", "max": 5}))
        .await;
    assert_eq!(a["moved"], 1, "{a:#}");
    let e = &a["messages"][0];
    assert_eq!(e["reason"], Value::Null);
    assert!(
        e["reason_from"]
            .as_str()
            .unwrap_or_default()
            .contains(e["message_id"].as_str().unwrap_or("?")),
        "the answer says where the reason is: {e}"
    );
    // The events function takes it from its queue as any event.
    let ev = sqs_event(&m.events_q).await;
    assert_eq!(ev.records.len(), 1);
    assert_eq!(ev.records[0].body.as_deref(), Some(event_json.as_str()));
    let lifecycle = m.lifecycle();
    let resp = lc_events::handle(&lifecycle, ev.clone()).await;
    assert!(resp.batch_item_failures.is_empty());
    delete_settled(&m.events_q, &ev, &[]).await;
    assert_eq!(m.state("L-ev").await, OptinState::Pending);

    // Deadline checks Scheduler could not deliver: one still owed, one for a sent opt-in, and
    // one that is no check at all.
    let owed = DeadlineCheck {
        v: 1,
        optin_key: "OPTIN#login_id#L-ev".into(),
        generation: Some(1),
        check: "at_risk".into(),
    };
    let owed_body = serde_json::to_string(&owed).expect("json");
    put(
        &m.scheduler_dlq,
        &owed_body,
        &[
            ("ERROR_CODE", "AccessDeniedException"),
            ("ERROR_MESSAGE", "not authorized"),
        ],
    )
    .await;
    m.optin("L-done", now).await;
    let key = "OPTIN#login_id#L-done";
    let c = match m.store.claim(key, 1, now, now + MIN).await.expect("claim") {
        lc_core::ports::store::Claim::Claimed(o) => *o,
        other => panic!("{other:?}"),
    };
    let sent = Finish::Sent {
        message_id: Some("m.1".into()),
        sent_at_ms: now,
    };
    assert!(m
        .store
        .finish(key, c.attempts, &sent, now)
        .await
        .expect("finish"));
    let done_body = serde_json::to_string(&DeadlineCheck {
        optin_key: key.into(),
        ..owed.clone()
    })
    .expect("json");
    put(
        &m.scheduler_dlq,
        &done_body,
        &[("ErrorCode", "Lambda.Unknown")],
    )
    .await;
    put(&m.scheduler_dlq, "[1,2]", &[]).await;

    let a = m
        .run(json!({"command": "redrive_dlq", "queue": "scheduler", "max": 10}))
        .await;
    let by_action = |action: &str| -> Vec<Value> {
        a["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    };
    let rescheduled = by_action("rescheduled");
    assert_eq!(rescheduled.len(), 1, "{a:#}");
    assert_eq!(rescheduled[0]["optin_key"], "OPTIN#login_id#L-ev");
    assert_eq!(
        rescheduled[0]["reason"],
        "AccessDeniedException: not authorized"
    );
    let name = schedule_name(&format!(
        "redrive#{}",
        rescheduled[0]["message_id"].as_str().expect("id")
    ));
    let s = m
        .scheduler
        .get_schedule(&name)
        .await
        .expect("get")
        .expect("the check is scheduled again");
    assert_eq!(
        s.input, owed_body,
        "the same check, as Scheduler will deliver it"
    );
    assert!(s.at_ms > now && s.at_ms <= m.clock.now_ms() + 2 * MIN);
    let discarded = by_action("discarded");
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0]["optin_key"], key);
    assert_eq!(by_action("kept").len(), 1);
    let left = m.bodies(&m.scheduler_dlq).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "[1,2]");
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn replay_quarantine_hands_the_records_to_the_events_function() {
    let m = moto().await;
    let now = m.clock.now_ms();
    m.sim.register_login_id("L-q", None, now);
    let body = optin_body(r#"{"login_id":"L-q"}"#, None, now);
    let SplitOutcome::Events(events) = split_body(body.as_bytes(), now) else {
        panic!("parses");
    };
    // Quarantined once for a cause outside the parser, fixed since.
    let record = QuarantinedRecord {
        id: format!("{now:013}#{}", events[0].key),
        reason: "no page config (test)".into(),
        received_at_ms: now,
        event_json: events[0].to_json().expect("json"),
    };
    m.store.put_quarantined(&record).await.expect("quarantine");

    let a = m
        .run(json!({"command": "replay_quarantine", "limit": 10}))
        .await;
    assert_eq!(outcome(&a), "replay_queued", "{a:#}");
    assert!(a["quarantined"]
        .as_array()
        .expect("listed")
        .iter()
        .any(|r| r["id"] == record.id.as_str() && r["reason"] == "no page config (test)"));
    let ev = sqs_event(&m.events_q).await;
    assert_eq!(ev.records.len(), 1);
    let cmd: Value =
        serde_json::from_str(ev.records[0].body.as_deref().unwrap_or("")).expect("json");
    assert_eq!(cmd, json!({"replay": "quarantine", "limit": 10}));

    let lifecycle = m.lifecycle();
    let resp = lc_events::handle(&lifecycle, ev.clone()).await;
    assert!(resp.batch_item_failures.is_empty());
    delete_settled(&m.events_q, &ev, &[]).await;
    assert_eq!(m.state("L-q").await, OptinState::Pending, "replayed");
    assert!(m
        .store
        .list_quarantined(100)
        .await
        .expect("list")
        .iter()
        .all(|r| r.id != record.id));

    let again = m.run(json!({"command": "replay_quarantine"})).await;
    assert_eq!(outcome(&again), "nothing_to_replay", "{again}");
    assert!(
        sqs_event(&m.events_q).await.records.is_empty(),
        "nothing queued twice"
    );
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn show_person_answers_the_stored_identities() {
    let m = moto().await;
    let now = m.clock.now_ms();
    m.optin("L-show", now).await;
    let psid = "7001";
    let link = Link {
        optin_key: "OPTIN#login_id#L-show".into(),
        page_id: PAGE.into(),
        psid: psid.into(),
        identifier: Identity::new(IdentityKind::LoginId, "L-show"),
        at_ms: now + 1_000,
        create_missing: true,
    };
    m.store.link(&link, now + 1_000).await.expect("link");
    m.store
        .record_user_message(PAGE, psid, now + 1_000)
        .await
        .expect("message");
    m.store
        .set_token(
            PAGE,
            psid,
            &MarketingToken {
                topic: "deals".into(),
                token: Some("secret-notification-token".into()),
                status: TokenStatus::Active,
                expires_at_ms: Some(now + 30 * DAY_MS),
                status_at_ms: now,
            },
        )
        .await
        .expect("token");

    let a = m
        .run(json!({"command": "show_person", "page_id": PAGE, "psid": psid}))
        .await;
    assert_eq!(outcome(&a), "found", "{a:#}");
    assert_eq!(a["person"]["login_id"], "L-show");
    assert_eq!(a["person"]["linked"], json!(["login_id:L-show"]));
    assert_eq!(a["window"]["open"], true);
    let optins = a["optins"].as_array().expect("optins");
    assert_eq!(optins.len(), 1, "{a:#}");
    assert_eq!(optins[0]["recipient"]["id"], "L-show");
    assert_eq!(optins[0]["state"], "answered");
    assert_eq!(optins[0]["psid"], psid);
    assert_eq!(a["marketing_tokens"][0]["topic"], "deals");
    assert_eq!(a["marketing_tokens"][0]["has_token"], true);
    assert!(
        !a.to_string().contains("secret-notification-token"),
        "no token value"
    );

    let none = m
        .run(json!({"command": "show_person", "page_id": PAGE, "psid": "9999"}))
        .await;
    assert_eq!(outcome(&none), "not_found");

    let page = m
        .run(json!({"command": "show_page", "page_id": PAGE}))
        .await;
    assert_eq!(outcome(&page), "no_config_item", "{page:#}");
    assert_eq!(page["paused"], false);
    assert_eq!(page["token"]["valid"], true, "{page:#}");
    assert!(
        !page.to_string().contains(TOKEN),
        "the token is never answered"
    );

    let events = m.bus_events().await;
    let shown: Vec<&Value> = events
        .iter()
        .filter(|(t, d)| t == "OperatorCommand" && d["payload"]["command"] == "show_person")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0]["person"]["psid"], psid);
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn page_tokens_are_checked_without_showing_them_and_bad_input_is_answered() {
    let m = moto().await;
    // A second Page whose token Meta does not know.
    let mut secrets = (*m.secrets).clone();
    secrets
        .page_tokens
        .insert("200".into(), Secret::new("revoked-token-200"));
    let ops = Operations::new(
        OpsPorts {
            table: m.table(),
            bus: Arc::new(m.bus.clone()),
            events_queue: Arc::new(m.events_q.clone()),
            outbound_queue: Arc::new(m.jobs_q.clone()),
            events_dlq: Arc::new(m.events_dlq.clone()),
            outbound_dlq: Arc::new(m.jobs_dlq.clone()),
            scheduler_dlq: Arc::new(m.scheduler_dlq.clone()),
            scheduler: Arc::new(m.scheduler.clone()),
            secrets: Arc::new(Arc::new(secrets)),
            graph: m.graph.clone(),
            clock: Arc::new(m.clock.clone()),
            metrics: m.metrics.clone(),
        },
        OpsConfig::default(),
    );
    let caller = Caller {
        account: None,
        request_id: "req-tokens".into(),
        identity: None,
    };
    let a = lc_ops::handle(
        &ops,
        json!({"command": "check_page_tokens"}),
        caller.clone(),
    )
    .await
    .expect("answer");
    assert_eq!(outcome(&a), "checked", "{a:#}");
    assert_eq!(a["invalid"], 1);
    let pages: BTreeMap<String, Value> = a["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| {
            (
                p["page_id"].as_str().unwrap_or_default().to_string(),
                p.clone(),
            )
        })
        .collect();
    assert_eq!(pages[PAGE]["valid"], true);
    assert_eq!(pages[PAGE]["never_expires"], true);
    assert_eq!(pages["200"]["valid"], false);
    let text = a.to_string();
    assert!(
        !text.contains(TOKEN) && !text.contains("revoked-token-200"),
        "{text}"
    );
    let recorded = m.metrics.take();
    assert!(recorded.contains(&Metric::PageTokenValid {
        page_id: PAGE.into(),
        valid: true
    }));
    assert!(recorded.contains(&Metric::PageTokenValid {
        page_id: "200".into(),
        valid: false
    }));

    // Input that is not a command is answered, not failed; nothing is published for it.
    m.bus_events().await;
    for bad in [
        json!({"command": "pause_page", "page_id": "<PAGE_ID>", "reason": "x"}),
        json!({"command": "redrive_dlq", "queue": "everything"}),
        json!({}),
    ] {
        let a = lc_ops::handle(&ops, bad.clone(), caller.clone())
            .await
            .expect("answered");
        assert_eq!(a["ok"], false, "{bad}: {a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert!(m.bus_events().await.is_empty());
    // The scheduled sweep is not a command: not published either.
    lc_ops::handle(&ops, json!({"command": "sweep"}), caller)
        .await
        .expect("sweep");
    assert!(m.bus_events().await.is_empty());
    let _ = m.scheduler.delete_schedule("none").await;
}
