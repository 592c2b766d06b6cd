//! The whole flow through the Lambda handlers, on the AWS adapters against moto and the Graph
//! simulator: signed webhook -> webhook function -> SQS -> events function -> DynamoDB item +
//! Scheduler schedule + outbound job -> sender function -> message at the simulator -> state
//! in DynamoDB, schedule deleted; and the deadline function invoked with the exact input the
//! schedule holds (moto never fires schedules).
//!
//! The simulator accepts a repeated login_id message here (`allow_repeat_login_id_sends`), so
//! "one send" is asserted on the send attempts it saw, not on Meta refusing the second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lc_adapters::dynamodb::{create_table, DynamoStore};
use lc_adapters::eventbridge::{create_bus, route_to_queue, EventBridgeBus};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_adapters::scheduler::{create_group, EventBridgeScheduler, SchedulerConfig};
use lc_adapters::sqs::SqsQueue;
use lc_core::deadline::Deadline;
use lc_core::lifecycle::optin::{schedule_name, DeadlineCheck, OptinState, DAY_MS};
use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts};
use lc_core::memory::ManualClock;
use lc_core::ports::{
    Clock, MemoryMetrics, OptinStore, QueueReceiver, RequestCounter, Scheduler, Table,
};
use lc_core::sending::sender::{Sender, SenderPorts};
use lc_core::support::secret::Secrets;
use lc_core::webhook::intake::{Intake, IntakeConfig};
use lc_core::webhook::signature::sign;
use lc_testkit::{optin_body, secrets, PAGE, TOKEN};
use tower::ServiceExt;

const HOUR: i64 = 3_600_000;

struct Moto {
    sim: graph_sim::SimHandle,
    clock: ManualClock,
    counter: Arc<RequestCounter>,
    store: DynamoStore,
    scheduler: EventBridgeScheduler,
    events_q: SqsQueue,
    jobs_q: SqsQueue,
    dlq: SqsQueue,
    secrets: Arc<Secrets>,
    metrics: Arc<MemoryMetrics>,
    bus: EventBridgeBus,
    /// The business's own queue: a rule on the bus delivers every event to it.
    business_q: SqsQueue,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn moto() -> Moto {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "run tests/run.sh (moto on 127.0.0.1), got {endpoint:?}"
    );
    let sdk = lc_adapters::aws::load_config().await.expect("AWS config");
    let counter = Arc::new(RequestCounter::new());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("e2e");
    create_table(&ddb, &table).await.expect("table");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut queues = Vec::new();
    for name in ["events", "outbound", "outbound-dlq"] {
        let url = sqs
            .create_queue()
            .queue_name(unique(name))
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        queues.push(SqsQueue::new(sqs.clone(), url).with_counter(counter.clone()));
    }
    let sched = aws_sdk_scheduler::Client::new(&sdk);
    let group = unique("e2e");
    create_group(&sched, &group).await.expect("group");
    let scheduler = EventBridgeScheduler::new(
        sched,
        SchedulerConfig::new(
            group,
            "arn:aws:lambda:us-east-1:123456789012:function:deadline",
            "arn:aws:iam::123456789012:role/scheduler",
        ),
    )
    .expect("scheduler")
    .with_counter(counter.clone());
    let sim = graph_sim::start(graph_sim::SimConfig {
        allow_repeat_login_id_sends: true,
        ..graph_sim::SimConfig::default().with_page(PAGE, TOKEN)
    })
    .await
    .expect("sim");
    // The business's side: a bus, and a rule that routes every event to its queue (what the
    // template's optional BusinessQueueArn parameter sets up).
    let business_url = sqs
        .create_queue()
        .queue_name(unique("business"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let bus_name = unique("bus");
    create_bus(&eb, &bus_name).await.expect("bus");
    route_to_queue(&eb, &sqs, &bus_name, &unique("all-events"), &business_url)
        .await
        .expect("rule to the business queue");
    let bus_counter = counter.clone();
    let dlq = queues.pop().expect("dlq");
    let jobs_q = queues.pop().expect("jobs");
    let events_q = queues.pop().expect("events");
    Moto {
        clock: ManualClock::at(sim.now_ms()),
        sim,
        store: DynamoStore::new(ddb, table).with_counter(counter.clone()),
        scheduler,
        events_q,
        jobs_q,
        dlq,
        counter,
        secrets: secrets(),
        metrics: Arc::new(MemoryMetrics::new()),
        bus: EventBridgeBus::new(eb, bus_name).with_counter(bus_counter),
        business_q: SqsQueue::new(sqs.clone(), business_url),
    }
}

impl Moto {
    fn graph(&self) -> GraphClient {
        GraphClient::new(GraphConfig {
            base_url: self.sim.base_url(),
            timeout: Duration::from_secs(2),
            ..GraphConfig::default()
        })
        .expect("graph client")
    }

    fn table(&self) -> Table {
        Table::new(Arc::new(self.store.clone()))
    }

    fn events(&self) -> Lifecycle {
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
                graph: Arc::new(self.graph()),
                scheduler: Arc::new(self.scheduler.clone()),
                secrets: Arc::new(self.secrets.clone()),
                clock: Arc::new(self.clock.clone()),
                metrics: self.metrics.clone(),
            },
            lc_testkit::sender_config(),
        )
    }

    /// The webhook Lambda's router with a real Function URL event.
    async fn post_webhook(&self, body: &str) -> u16 {
        let intake = Intake::new(
            Arc::new(self.events_q.clone()),
            Arc::new(self.secrets.clone()),
            Arc::new(self.clock.clone()),
            self.metrics.clone(),
            IntakeConfig::default(),
        );
        let router = lc_api::Api::new().intake(Arc::new(intake)).router();
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/webhook", "rawQueryString": "",
            "headers": {"content-type": "application/json",
                        "x-hub-signature-256": sign(self.secrets.apps[0].app_secret.expose(), body.as_bytes())},
            "requestContext": {"accountId": "anonymous", "apiId": "e2e", "domainName": "e2e.lambda-url.us-east-1.on.aws",
                "domainPrefix": "e2e", "http": {"method": "POST", "path": "/webhook", "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1", "userAgent": "facebookexternalua"}, "requestId": "r", "routeKey": "$default",
                "stage": "$default", "time": "21/Nov/2026:06:00:00 +0000", "timeEpoch": 0},
            "body": body, "isBase64Encoded": false
        });
        let req = lambda_http::request::from_str(&event.to_string()).expect("function url event");
        let resp = router.oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let resp = lambda_http::IntoResponse::into_response(resp).await;
        if status == 200 {
            assert!(
                matches!(resp.body(), lambda_http::Body::Text(t) if t == lc_api::webhook::BODY_OK),
                "{:?}",
                resp.body()
            );
        }
        status
    }
}

/// What Lambda's event source would hand the function: the received messages as an SqsEvent.
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

async fn delete_all(q: &SqsQueue, ev: &SqsEvent, failed: &[String]) {
    for r in &ev.records {
        if !failed.contains(r.message_id.as_ref().expect("id")) {
            q.delete(r.receipt_handle.as_deref().unwrap_or_default())
                .await
                .expect("delete");
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn signed_webhook_to_first_message_through_every_function() {
    let m = moto().await;
    let now = m.clock.now_ms();
    m.sim.register_login_id("L-e2e", None, now);
    m.counter.reset();

    // Webhook function -> events queue.
    assert_eq!(
        m.post_webhook(&optin_body(r#"{"login_id":"L-e2e"}"#, None, now))
            .await,
        200
    );
    let webhook_requests = m.counter.snapshot();

    // Events function (SQS-triggered Lambda handler).
    m.counter.reset();
    let ev = sqs_event(&m.events_q).await;
    assert_eq!(ev.records.len(), 1);
    let events = m.events();
    let resp = lc_events::handle(&events, ev.clone()).await;
    assert!(resp.batch_item_failures.is_empty());
    let events_requests: BTreeMap<String, u64> = m.counter.snapshot();
    delete_all(&m.events_q, &ev, &[]).await;

    let key = "OPTIN#login_id#L-e2e";
    let o = m
        .store
        .get_optin(key)
        .await
        .unwrap()
        .expect("opt-in item in DynamoDB");
    assert_eq!(
        (o.state, o.opted_in_at_ms, o.deadline_at_ms),
        (OptinState::Pending, now, now + DAY_MS)
    );
    let s = m
        .scheduler
        .get_schedule(&schedule_name(key))
        .await
        .unwrap()
        .expect("schedule in Scheduler");
    assert_eq!(s.at_ms / 1000, (now + DAY_MS - HOUR) / 1000);
    let check: DeadlineCheck = serde_json::from_str(&s.input).unwrap();
    assert_eq!(check.optin_key, key);

    // Sender function (SQS-triggered) -> simulator; schedule deleted.
    m.counter.reset();
    let jobs = sqs_event(&m.jobs_q).await;
    assert_eq!(
        jobs.records.len(),
        1,
        "one first-message job on the outbound queue"
    );
    let sender = m.sender();
    let resp = lc_sender::handle(&sender, &m.jobs_q, &m.dlq, jobs.clone()).await;
    assert!(resp.batch_item_failures.is_empty());
    let sender_requests = m.counter.snapshot();
    delete_all(&m.jobs_q, &jobs, &[]).await;
    let sent = m.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(m.sim.attempts_for("L-e2e"), 1, "{:?}", m.sim.attempts());
    assert_eq!(sent[0].recipient, serde_json::json!({"login_id": "L-e2e"}));
    let o = m.store.get_optin(key).await.unwrap().unwrap();
    assert_eq!(o.state, OptinState::Sent);
    assert!(
        m.scheduler
            .get_schedule(&schedule_name(key))
            .await
            .unwrap()
            .is_none(),
        "schedule deleted after the send"
    );

    // The person replies: the reply carries prior_message with the login_id.
    let reply = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{t},"messaging":[{{"sender":{{"id":"PSID-e2e"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{t},"message":{{"mid":"m-e2e-1","text":"Hi there"}},"prior_message":{{"source":"login_connect","identifier":"L-e2e"}}}}]}}]}}"#,
        t = now + 60_000
    );
    assert_eq!(m.post_webhook(&reply).await, 200);
    let ev = sqs_event(&m.events_q).await;
    let resp = lc_events::handle(&events, ev.clone()).await;
    assert!(resp.batch_item_failures.is_empty());
    delete_all(&m.events_q, &ev, &[]).await;
    let linked = m.store.get_optin(key).await.unwrap().unwrap();
    assert_eq!(
        (linked.state, linked.psid.as_deref()),
        (OptinState::Answered, Some("PSID-e2e"))
    );

    // The business's queue, fed by a rule on the bus, heard the whole story in order, each
    // fact once.
    let mut heard: Vec<serde_json::Value> = Vec::new();
    for _ in 0..20 {
        let got = m.business_q.receive(10, 200).await.expect("receive");
        if got.is_empty() && heard.len() >= 4 {
            break;
        }
        for msg in got {
            heard.push(serde_json::from_str(&msg.body).expect("EventBridge envelope"));
            m.business_q
                .delete(&msg.receipt_handle)
                .await
                .expect("delete");
        }
    }
    let types: Vec<&str> = heard
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "OptInReceived",
            "FirstMessageSent",
            "MessageReceived",
            "PersonLinked"
        ],
        "{heard:#?}"
    );
    let ids: std::collections::BTreeSet<&str> = heard
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), heard.len(), "each event_id once");
    for e in &heard {
        assert_eq!(e["source"], "login-connect");
        assert_eq!(e["detail"]["page_id"], PAGE);
    }
    assert_eq!(heard[0]["detail"]["person"]["login_id"], "L-e2e");
    assert_eq!(heard[2]["detail"]["payload"]["text"], "Hi there");
    assert_eq!(heard[2]["detail"]["person"]["psid"], "PSID-e2e");
    assert_eq!(
        heard[3]["detail"]["person"],
        serde_json::json!({"psid": "PSID-e2e", "login_id": "L-e2e"})
    );

    println!("requests webhook={webhook_requests:?}");
    println!("requests events={events_requests:?}");
    println!("requests sender={sender_requests:?}");
    let total = |snap: &BTreeMap<String, u64>, svc: &str| -> u64 {
        snap.iter()
            .filter(|(k, _)| k.starts_with(svc))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        total(&events_requests, "dynamodb"),
        2,
        "PutItem + UpdateItem per opt-in"
    );
    assert_eq!(total(&events_requests, "scheduler"), 1);
    assert_eq!(events_requests.get("sqs.SendMessageBatch"), Some(&1));
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn duplicates_through_the_events_function_make_one_job() {
    let m = moto().await;
    let now = m.clock.now_ms();
    let body = optin_body(r#"{"login_id":"L-dup"}"#, None, now);
    for _ in 0..3 {
        assert_eq!(m.post_webhook(&body).await, 200);
    }
    // Meta's late retry of the same opt-in, out of order.
    assert_eq!(
        m.post_webhook(&optin_body(r#"{"login_id":"L-dup"}"#, None, now - 5))
            .await,
        200
    );
    let events = m.events();
    loop {
        let ev = sqs_event(&m.events_q).await;
        if ev.records.is_empty() {
            break;
        }
        let resp = lc_events::handle(&events, ev.clone()).await;
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        delete_all(&m.events_q, &ev, &failed).await;
    }
    let mut jobs = 0;
    loop {
        let got = m.jobs_q.receive(10, 500).await.unwrap();
        if got.is_empty() {
            break;
        }
        jobs += got.len();
        for j in got {
            m.jobs_q.delete(&j.receipt_handle).await.unwrap();
        }
    }
    assert_eq!(jobs, 1);
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn deadline_function_with_the_schedules_own_input() {
    let m = moto().await;
    let now = m.clock.now_ms();
    m.sim.register_login_id("L-late", None, now);
    let events = m.events();
    let ev = lc_core::webhook::split_body(
        optin_body(r#"{"login_id":"L-late"}"#, None, now).as_bytes(),
        now,
    );
    let lc_core::webhook::SplitOutcome::Events(list) = ev else {
        panic!("parses")
    };
    events.process(&list[0]).await.expect("processed");
    // The job is lost: only the deadline check can keep the promise.
    for j in m.jobs_q.receive(10, 500).await.unwrap() {
        m.jobs_q.delete(&j.receipt_handle).await.unwrap();
    }
    let key = "OPTIN#login_id#L-late";
    let stored = m
        .scheduler
        .get_schedule(&schedule_name(key))
        .await
        .unwrap()
        .expect("schedule");
    let input: serde_json::Value = serde_json::from_str(&stored.input).unwrap();

    m.clock.advance(23 * HOUR);
    m.sim.advance_clock(23 * HOUR);
    let deadline = Deadline::new(m.sender());
    let out = lc_deadline::handle(&deadline, input.clone())
        .await
        .expect("deadline handler");
    assert_eq!(out["outcome"], "last_chance");
    assert_eq!(m.sim.messages().len(), 1);
    assert_eq!(m.sim.attempts_for("L-late"), 1);
    assert_eq!(
        m.store.get_optin(key).await.unwrap().unwrap().state,
        OptinState::Sent
    );
    assert!(m
        .scheduler
        .get_schedule(&schedule_name(key))
        .await
        .unwrap()
        .is_none());

    // Scheduler retries the same input: nothing is sent twice.
    let again = lc_deadline::handle(&deadline, input)
        .await
        .expect("deadline handler");
    assert_eq!(again["outcome"], "nothing_to_do");
    assert_eq!(m.sim.messages().len(), 1);
    assert_eq!(m.sim.attempts_for("L-late"), 1, "no second attempt");

    // Past the deadline an unsent opt-in is reported missed, never sent.
    m.sim.register_login_id("L-missed", None, m.clock.now_ms());
    let ev = lc_core::webhook::split_body(
        optin_body(r#"{"login_id":"L-missed"}"#, None, m.clock.now_ms()).as_bytes(),
        m.clock.now_ms(),
    );
    let lc_core::webhook::SplitOutcome::Events(list) = ev else {
        panic!("parses")
    };
    events.process(&list[0]).await.expect("processed");
    let stored = m
        .scheduler
        .get_schedule(&schedule_name("OPTIN#login_id#L-missed"))
        .await
        .unwrap()
        .expect("schedule");
    m.clock.advance(DAY_MS + 1_000);
    m.sim.advance_clock(DAY_MS + 1_000);
    let out = lc_deadline::handle(&deadline, serde_json::from_str(&stored.input).unwrap())
        .await
        .unwrap();
    assert_eq!(out["outcome"], "missed");
    assert_eq!(m.sim.messages().len(), 1, "no message after the deadline");
    assert_eq!(m.sim.attempts_for("L-missed"), 0, "not even an attempt");
    assert_eq!(
        m.store
            .get_optin("OPTIN#login_id#L-missed")
            .await
            .unwrap()
            .unwrap()
            .state,
        OptinState::Expired
    );
}
