//! `POST /v1/messages` end to end: the shared router, the local runner's pipeline (in-memory
//! adapters, the FIFO requests queue polled as Lambda polls it, the real Graph client) and the
//! Graph simulator, which enforces Meta's 2026 rules and records every send attempt. One manual
//! clock, moved together with the simulator's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use graph_sim::{PageFeaturesUpdate, SimHandle};
use lc_core::bus::DetailType;
use lc_core::lifecycle::optin::DAY_MS;
use lc_core::memory::{ManualClock, MemoryStore};
use lc_core::ports::store::PageConfig;
use lc_core::ports::Clock;
use lc_core::ports::{
    EntryFailure, GroupedMessage, OutMessage, PortError, Queue, QueueReceiver, QueueSender,
    Received, Table, VisibilityControl,
};
use lc_core::support::secret::{Secret, Secrets};
use lc_core::webhook::signature::sign;
use lc_local::pipeline::{Backends, Pipeline, PipelineConfig};
use lc_local::serve::{local_secrets, page_ids, start_sim, PAGE};
use serde_json::{json, Value};
use tower::ServiceExt;

const PSID: &str = "7100000000000001";
const HOUR: i64 = 60 * 60 * 1000;

/// The requests queue, remembering the order in which requests were accepted onto it.
struct Recording {
    inner: Arc<dyn Queue>,
    accepted: tokio::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl QueueSender for Recording {
    async fn send_batch(&self, m: &[OutMessage]) -> Result<Vec<EntryFailure>, PortError> {
        self.inner.send_batch(m).await
    }
    async fn send_grouped(&self, m: &[GroupedMessage]) -> Result<Vec<EntryFailure>, PortError> {
        // Under the lock: the recorded order is the order the queue took them in.
        let mut log = self.accepted.lock().await;
        let failed = self.inner.send_grouped(m).await?;
        log.extend(
            m.iter()
                .filter(|g| !failed.iter().any(|f| f.id == g.message.id))
                .map(|g| g.message.body.clone()),
        );
        Ok(failed)
    }
}

#[async_trait]
impl QueueReceiver for Recording {
    async fn receive(&self, max: usize, wait_ms: u64) -> Result<Vec<Received>, PortError> {
        self.inner.receive(max, wait_ms).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), PortError> {
        self.inner.delete(receipt).await
    }
}

#[async_trait]
impl VisibilityControl for Recording {
    async fn change_visibility(&self, receipt: &str, secs: u32) -> Result<(), PortError> {
        self.inner.change_visibility(receipt, secs).await
    }
}

struct World {
    sim: SimHandle,
    pipeline: Pipeline,
    store: Arc<MemoryStore>,
    router: Router,
    clock: ManualClock,
    secret: String,
    requests: Arc<Recording>,
}

impl World {
    async fn new() -> World {
        World::with(None).await
    }

    /// The AWS adapters against moto (DynamoDB request items, the SQS FIFO queue, EventBridge).
    async fn on_moto() -> World {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        assert!(
            endpoint.starts_with("http://127.0.0.1"),
            "run tests/run.sh (moto on 127.0.0.1), got {endpoint:?}"
        );
        World::with(Some(endpoint)).await
    }

    async fn with(aws: Option<String>) -> World {
        World::with_secrets(aws, |_| {}).await
    }

    /// The local secrets, changed by `edit` before the simulator and the pipeline see them.
    async fn with_secrets(aws: Option<String>, edit: impl FnOnce(&mut Secrets)) -> World {
        let (mut secrets, _) = local_secrets(&page_ids(1));
        edit(&mut secrets);
        let secret = secrets.apps[0].app_secret.expose().to_string();
        let secrets = Arc::new(secrets);
        let sim = start_sim(&secrets, 300).await.expect("sim");
        sim.freeze_clock();
        let clock = ManualClock::at(sim.now_ms());
        let store = Arc::new(MemoryStore::new());
        let mut backends = match aws {
            Some(endpoint) => {
                let run = format!(
                    "msg{}",
                    std::process::id() as u64 * 1000 + (clock.now_ms() % 1000) as u64
                );
                Backends::aws(&endpoint, &run, 30)
                    .await
                    .expect("moto backends")
            }
            None => {
                let mut b = Backends::memory(Arc::new(clock.clone()), 30_000);
                b.table = Table::new(store.clone());
                b
            }
        };
        let requests = Arc::new(Recording {
            inner: backends.requests.clone(),
            accepted: tokio::sync::Mutex::new(Vec::new()),
        });
        backends.requests = requests.clone();
        let pipeline = Pipeline::new(
            backends,
            secrets,
            Arc::new(clock.clone()),
            PipelineConfig {
                graph_base_url: sim.base_url(),
                graph_timeout: Duration::from_secs(5),
                lifecycle: Default::default(),
                sender: lc_testkit::sender_config(),
                poll: Duration::from_millis(5),
                workers: 4,
                events_window: Duration::ZERO,
                outbound_window: Duration::ZERO,
            },
        )
        .expect("pipeline");
        let router = lc_api::Api::new()
            .intake(pipeline.intake.clone())
            .messages(pipeline.followups.clone())
            .router();
        World {
            sim,
            pipeline,
            store,
            router,
            clock,
            secret,
            requests,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves our clock and the simulator's together.
    fn advance(&self, ms: i64) {
        self.clock.advance(ms);
        self.sim.advance_clock(ms);
    }

    /// The person writes to the Page now: a signed webhook through the router, processed by the
    /// events consumer (their window opens); Meta (the simulator) knows it too.
    async fn person_writes(&self, psid: &str) {
        let ts = self.now();
        let body = json!({"object": "page", "entry": [{"id": PAGE, "time": ts, "messaging": [{
            "sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": ts,
            "message": {"mid": format!("m_{psid}_{ts}"), "text": "hello"}}]}]})
        .to_string();
        let req = Request::post("/webhook")
            .header("x-hub-signature-256", sign(&self.secret, body.as_bytes()))
            .body(Body::from(body))
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 200);
        self.sim.register_person(PAGE, psid, ts);
        let people = self.pipeline.backends.table.people.clone();
        wait_for("the reply to be processed", || {
            let people = people.clone();
            async move {
                people
                    .get_person(PAGE, psid)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|p| p.last_user_message_at_ms)
                    == Some(ts)
            }
        })
        .await;
    }

    /// The person writes to the Instagram account `ig` now (the webhook's entry is the account),
    /// as [`World::person_writes`] does on Messenger.
    async fn instagram_person_writes(&self, ig: &str, igsid: &str, mid: &str) {
        let ts = self.now();
        let body = json!({"object": "instagram", "entry": [{"id": ig, "time": ts, "messaging": [{
            "sender": {"id": igsid}, "recipient": {"id": ig}, "timestamp": ts,
            "message": {"mid": mid, "text": "hi"}}]}]})
        .to_string();
        let req = Request::post("/webhook")
            .header("x-hub-signature-256", sign(&self.secret, body.as_bytes()))
            .body(Body::from(body))
            .expect("request");
        assert_eq!(
            self.router.clone().oneshot(req).await.unwrap().status(),
            200
        );
        self.sim.register_instagram_person(ig, igsid, ts);
        let people = self.pipeline.backends.table.people.clone();
        wait_for("the Instagram message to be processed", || {
            let people = people.clone();
            async move {
                people
                    .get_person(ig, igsid)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.last_user_message_at_ms == Some(ts))
            }
        })
        .await;
    }

    async fn post(&self, body: &Value) -> (u16, Value, Option<String>) {
        post(self.router.clone(), body).await
    }

    /// The accepted messages the simulator holds for `psid`, oldest first.
    fn sent_to(&self, psid: &str) -> Vec<graph_sim::SentMessage> {
        self.sim
            .messages()
            .into_iter()
            .filter(|m| m.recipient.get("id").and_then(Value::as_str) == Some(psid))
            .collect()
    }

    async fn wait_sent(&self, psid: &str, n: usize) -> Vec<graph_sim::SentMessage> {
        let start = Instant::now();
        loop {
            let got = self.sent_to(psid);
            if got.len() >= n || start.elapsed() > Duration::from_secs(20) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn events(&self, t: DetailType, request_id: &str) -> Vec<Value> {
        self.pipeline
            .backends
            .published
            .events()
            .into_iter()
            .filter(|e| e.detail_type == t && e.detail.payload["request_id"] == request_id)
            .map(|e| e.detail.payload)
            .collect()
    }

    async fn wait_event(&self, t: DetailType, request_id: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events(t, request_id).pop() {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {t:?} for {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn post(router: Router, body: &Value) -> (u16, Value, Option<String>) {
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v, retry_after)
}

async fn wait_for<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn reply(psid: &str, text: &str, key: &str) -> Value {
    json!({
        "recipient": {"psid": psid},
        "page_id": PAGE,
        "message": {"text": text},
        "intent": "reply",
        "idempotency_key": key,
    })
}

#[tokio::test]
async fn a_reply_opens_the_window_and_25_hours_later_it_is_closed() {
    let w = World::new().await;
    let wrote_at = w.now();
    w.person_writes(PSID).await;

    let (status, body, _) = w.post(&reply(PSID, "Your order shipped", "k-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decision"]["messaging_type"], "RESPONSE");
    assert_eq!(body["decision"]["tag"], Value::Null);
    assert_eq!(body["decision"]["rule"], "standard_window");
    let request_id = body["request_id"].as_str().expect("request_id").to_string();
    assert!(request_id.starts_with("req_"));

    let sent = w.wait_sent(PSID, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].messaging_type, "RESPONSE");
    assert_eq!(sent[0].tag, None);
    assert_eq!(sent[0].message["text"], "Your order shipped");
    let event = w.wait_event(DetailType::MessageSent, &request_id).await;
    assert_eq!(event["message_id"], json!(sent[0].message_id));
    assert_eq!(event["messaging_type"], "RESPONSE");

    // 25 hours later the same message (a new key: a new request) is refused, naming the close.
    w.advance(25 * HOUR);
    let (status, body, _) = w.post(&reply(PSID, "Your order shipped", "k-2")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "refused");
    assert_eq!(body["rule"], "standard_window");
    assert_eq!(body["window_closed_at_ms"], json!(wrote_at + DAY_MS));
    assert_eq!(
        body["window_closed_at"],
        json!(lc_core::support::time::format_rfc3339_ms(wrote_at + DAY_MS))
    );
    assert_eq!(body["human_agent_until_ms"], json!(wrote_at + 7 * DAY_MS));
    let refused = w
        .wait_event(
            DetailType::MessageRefused,
            body["request_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(refused["rule"], "standard_window");

    // The first key, retried after the window closed: the first answer, not a second send.
    let (status, body, _) = w.post(&reply(PSID, "Your order shipped", "k-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["request_id"], json!(request_id));
    assert_eq!(body["status"], "sent");
    assert_eq!(body["duplicate"], true);
    assert_eq!(w.sim.attempts_for(PSID), 1, "one send attempt in all");
}

#[tokio::test]
async fn a_human_agent_on_day_3_goes_with_human_agent() {
    let w = World::new().await;
    w.sim.update_page_features(PageFeaturesUpdate {
        page_id: PAGE.into(),
        human_agent: Some(true),
        ..PageFeaturesUpdate::default()
    });
    w.store.put_page(PageConfig {
        page_id: PAGE.into(),
        human_agent: true,
        ..PageConfig::default()
    });
    w.person_writes(PSID).await;
    w.advance(3 * DAY_MS);

    let agent = |kind: &str, key: &str| {
        json!({
            "recipient": {"psid": PSID},
            "page_id": PAGE,
            "message": {"text": "Sorry for the wait: your refund is on its way."},
            "intent": "human_agent",
            "author": {"kind": kind, "id": "agent-17"},
            "idempotency_key": key,
        })
    };
    // A bot's text marked human_agent is refused before Meta is called.
    let (status, body, _) = w.post(&agent("bot", "bot-1")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "human_agent_author");
    // So is a bot's ordinary reply, now outside 24 h.
    let (status, body, _) = w.post(&reply(PSID, "hi", "bot-2")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "standard_window");

    let (status, body, _) = w.post(&agent("human", "agent-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decision"]["messaging_type"], "MESSAGE_TAG");
    assert_eq!(body["decision"]["tag"], "HUMAN_AGENT");
    let sent = w.wait_sent(PSID, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].messaging_type, "MESSAGE_TAG");
    assert_eq!(sent[0].tag.as_deref(), Some("HUMAN_AGENT"));
    assert_eq!(
        w.sim.attempts_for(PSID),
        1,
        "the refusals never reached Meta"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_sends_once() {
    let w = World::new().await;
    w.person_writes(PSID).await;
    let body = reply(PSID, "Once only", "same-key");
    let (a, b) = tokio::join!(w.post(&body), w.post(&body));
    assert_eq!((a.0, b.0), (202, 202), "{} {}", a.1, b.1);
    assert_eq!(a.1["request_id"], b.1["request_id"]);
    let request_id = a.1["request_id"].as_str().unwrap().to_string();
    w.wait_event(DetailType::MessageSent, &request_id).await;

    // Later copies: over HTTP, and straight on the requests queue past its deduplication window
    // (a new deduplication id), as a bulk sender might: the stored claim answers both.
    let (status, again, _) = w.post(&body).await;
    assert_eq!(status, 202);
    assert_eq!(again["status"], "sent");
    let queued = w.requests.accepted.lock().await[0].clone();
    w.pipeline
        .backends
        .requests
        .send_grouped(&[GroupedMessage {
            message: OutMessage {
                id: "copy".into(),
                body: queued,
                attributes: vec![],
                delay_secs: 0,
            },
            group_id: "bulk-sender-group".into(),
            dedup_id: "a-later-copy".into(),
        }])
        .await
        .expect("queued");
    // The copy finds the request sent and says so again (same event id) instead of sending.
    let start = Instant::now();
    while w.events(DetailType::MessageSent, &request_id).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the copy was not consumed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.sim.attempts_for(PSID), 1, "one attempt at the simulator");
    let ids: std::collections::HashSet<String> = w
        .pipeline
        .backends
        .published
        .events()
        .into_iter()
        .filter(|e| e.detail_type == DetailType::MessageSent)
        .map(|e| e.detail.event_id)
        .collect();
    assert_eq!(ids.len(), 1, "republished outcomes keep their event id");
}

/// 100 requests in flight at once on a multi-thread runtime: whatever order they reach the
/// queue in is the order Meta gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_to_one_person_arrive_in_order() {
    let w = World::new().await;
    w.person_writes(PSID).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let router = w.router.clone();
            let body = reply(PSID, &format!("n={i}"), &format!("burst-{i}"));
            tokio::spawn(async move { post(router, &body).await })
        })
        .collect();
    for t in tasks {
        let (status, body, _) = t.await.expect("task");
        assert_eq!(status, 202, "{body}");
    }
    let sent = w.wait_sent(PSID, 100).await;
    assert_eq!(sent.len(), 100, "every request sent once");
    let accepted_order: Vec<String> = w
        .requests
        .accepted
        .lock()
        .await
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).expect("json");
            v["message"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let sent_order: Vec<String> = sent
        .iter()
        .map(|m| m.message["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(accepted_order.len(), 100);
    assert_eq!(
        sent_order, accepted_order,
        "Meta got them in the order accepted"
    );
    assert_eq!(w.sim.attempts_for(PSID), 100);
}

#[tokio::test]
async fn an_opted_out_person_and_a_paused_page_are_refused() {
    let w = World::new().await;
    w.person_writes(PSID).await;
    w.pipeline
        .backends
        .table
        .people
        .opt_out(PAGE, PSID, "blocked", w.now())
        .await
        .expect("opt out");
    let (status, body, _) = w.post(&reply(PSID, "hi", "opted-out")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "opted_out");

    let other = "7100000000000002";
    w.person_writes(other).await;
    w.pipeline
        .backends
        .table
        .pages
        .set_paused(PAGE, Some("policy_enforcement: block"), w.now())
        .await
        .expect("pause");
    let (status, body, retry_after) = w.post(&reply(other, "hi", "paused")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "page_paused");
    assert_eq!(body["rule"], "page_paused");
    assert!(retry_after.is_some(), "409 says when to retry");

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.sim.attempts_for(PSID), 0);
    assert_eq!(w.sim.attempts_for(other), 0);
}

#[tokio::test]
async fn recipients_the_policy_knows_no_window_for() {
    let w = World::new().await;
    // A login_id that opted in but never replied: its one first message is login-connect's.
    w.sim.register_login_id("L-e2e", None, w.now());
    let ts = w.now();
    let optin = json!({"object": "page", "entry": [{"id": PAGE, "time": ts, "messaging": [{
        "recipient": {"id": PAGE}, "timestamp": ts, "optin": {"login_id": "L-e2e"}}]}]})
    .to_string();
    let req = Request::post("/webhook")
        .header("x-hub-signature-256", sign(&w.secret, optin.as_bytes()))
        .body(Body::from(optin))
        .expect("request");
    assert_eq!(w.router.clone().oneshot(req).await.unwrap().status(), 200);
    let optins = w.pipeline.backends.table.optins.clone();
    wait_for("the opt-in", || {
        let optins = optins.clone();
        async move {
            optins
                .get_optin("OPTIN#login_id#L-e2e")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    let login = json!({
        "recipient": {"login_id": "L-e2e"},
        "message": {"text": "one more thing"},
        "idempotency_key": "login-1",
    });
    let (status, body, _) = w.post(&login).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "login_id_once");

    let external = json!({
        "recipient": {"external_id": "crm-42"},
        "page_id": PAGE,
        "message": {"text": "hi"},
        "idempotency_key": "ext-1",
    });
    let (status, body, _) = w.post(&external).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "unknown_recipient");
    assert!(body["reason"].as_str().unwrap().contains("identity link"));

    let (status, body, _) = w.post(&json!({"recipient": {"psid": PSID}})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request");
}

/// The same path on the AWS adapters against moto: the request item in DynamoDB, the FIFO queue
/// in SQS (group and deduplication ids on the wire), the outcome on EventBridge.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn a_follow_up_on_moto_is_sent_once() {
    let w = World::on_moto().await;
    w.person_writes(PSID).await;
    let body = reply(PSID, "On moto", "moto-1");
    let (status, first, _) = w.post(&body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again, _) = w.post(&body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["request_id"], first["request_id"]);
    let sent = w.wait_sent(PSID, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].messaging_type, "RESPONSE");
    let request_id = first["request_id"].as_str().unwrap().to_string();
    w.wait_event(DetailType::MessageSent, &request_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.sim.attempts_for(PSID), 1);
    let (status, done, _) = w.post(&body).await;
    assert_eq!(status, 202);
    assert_eq!(done["status"], "sent");
}

/// Instagram through the Page token: the account's config names its Page, the send goes to
/// `/me/messages` with the IGSID; Instagram's 1000 characters are checked before Meta.
#[tokio::test]
async fn instagram_goes_through_the_linked_page() {
    const IG: &str = "17841400000000001";
    const IGSID: &str = "9100000000000001";
    let w = World::new().await;
    w.sim.update_page_features(PageFeaturesUpdate {
        page_id: PAGE.into(),
        instagram_account_id: Some(IG.into()),
        ..PageFeaturesUpdate::default()
    });
    w.store.put_page(PageConfig {
        page_id: IG.into(),
        linked_page_id: Some(PAGE.into()),
        ..PageConfig::default()
    });
    // The person writes on Instagram (the webhook's entry is the Instagram account).
    w.instagram_person_writes(IG, IGSID, "m_ig_1").await;

    let ig = |text: String, key: &str| {
        json!({
            "recipient": {"igsid": IGSID},
            "page_id": IG,
            "message": {"text": text},
            "idempotency_key": key,
        })
    };
    let (status, body, _) = w.post(&ig("x".repeat(1001), "ig-long")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rule"], "instagram_text_limit");

    let (status, body, _) = w.post(&ig("x".repeat(1000), "ig-ok")).await;
    assert_eq!(status, 202, "{body}");
    let sent = w.wait_sent(IGSID, 1).await;
    assert_eq!(sent.len(), 1, "sent with the Page's token");
    assert_eq!(sent[0].page_id, PAGE);
    assert_eq!(sent[0].messaging_type, "RESPONSE");
    assert_eq!(
        w.sim.attempts_for(IGSID),
        1,
        "the long one never reached Meta"
    );
    let event = w
        .wait_event(
            DetailType::MessageSent,
            body["request_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(event["messaging_type"], "RESPONSE");
}

/// Instagram through Instagram Login, through the local runner's wiring: the account's config
/// names its IG_ID, the secret holds its Instagram user token (the local simulator learns it
/// from the secret, and answers for graph.instagram.com too); the follow-up goes to
/// `/<IG_ID>/messages` with that token, as the account itself, with no Page involved.
#[tokio::test]
async fn instagram_login_sends_as_the_instagram_account() {
    const IG: &str = "17841400000000005";
    const IGSID: &str = "9100000000000005";
    let w = World::with_secrets(None, |s| {
        s.instagram_tokens
            .insert(IG.into(), Secret::new("IGQWlocalInstagramUserToken005"));
    })
    .await;
    w.store.put_page(PageConfig {
        page_id: IG.into(),
        instagram_login_user_id: Some(IG.into()),
        ..PageConfig::default()
    });
    w.instagram_person_writes(IG, IGSID, "m_igl_1").await;

    let (status, body, _) = w
        .post(&json!({
            "recipient": {"igsid": IGSID},
            "page_id": IG,
            "message": {"text": "Thanks for writing"},
            "idempotency_key": "igl-1",
        }))
        .await;
    assert_eq!(status, 202, "{body}");
    let sent = w.wait_sent(IGSID, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].page_id, IG,
        "sent as the Instagram account, with its own token"
    );
    assert_eq!(sent[0].messaging_type, "RESPONSE");
    w.wait_event(
        DetailType::MessageSent,
        body["request_id"].as_str().unwrap(),
    )
    .await;
}
