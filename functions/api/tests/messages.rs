//! `POST /v1/messages` status by status, on in-memory adapters (nothing here reaches Graph: the
//! endpoint only decides and queues; the sends are `lc-e2e`'s `messages.rs`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_api::Api;
use lc_core::memory::{ManualClock, MemoryQueue, MemoryStore, QueueFault};
use lc_core::ports::{NoBus, NoMetrics, PersonStore, Table};
use lc_core::sending::followup::{FollowUpConfig, FollowUpPorts, FollowUps};
use lc_core::support::secret::Secrets;
use serde_json::{json, Value};
use tower::ServiceExt;

const T0: i64 = 1_800_000_000_000;

fn world() -> (Router, Arc<MemoryStore>, Arc<MemoryQueue>) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::at(T0);
    let queue =
        Arc::new(MemoryQueue::with_clock("requests.fifo", Arc::new(clock.clone()), 30_000).fifo());
    let graph = GraphClient::new(GraphConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..GraphConfig::default()
    })
    .expect("graph client");
    let followups = FollowUps::new(
        FollowUpPorts {
            table: Table::new(store.clone()),
            requests: queue.clone(),
            bus: Arc::new(NoBus),
            graph: Arc::new(graph),
            secrets: Arc::new(Arc::new(Secrets::default())),
            clock: Arc::new(clock),
            metrics: Arc::new(NoMetrics),
        },
        FollowUpConfig::default(),
    );
    (
        Api::new().messages(Arc::new(followups)).router(),
        store,
        queue,
    )
}

async fn call(router: &Router, method: &str, body: String) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri("/v1/messages")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn request(text: &str, key: &str) -> String {
    json!({
        "recipient": {"psid": "7001"},
        "page_id": "100",
        "message": {"text": text},
        "idempotency_key": key,
    })
    .to_string()
}

#[tokio::test]
async fn statuses() {
    let (router, store, queue) = world();
    store
        .record_user_message("100", "7001", T0 - 1_000)
        .await
        .unwrap();

    let (status, body) = call(&router, "POST", request("hi", "k1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["decision"]["messaging_type"], "RESPONSE");
    assert_eq!(queue.len(), 1);

    // The same key: the same request, queued again only for the queue to drop the copy.
    let (status, again) = call(&router, "POST", request("hi", "k1")).await;
    assert_eq!(status, 202);
    assert_eq!(
        (again["request_id"].clone(), again["duplicate"].clone()),
        (body["request_id"].clone(), json!(true))
    );
    assert_eq!(queue.len(), 1, "one request on the queue");

    // The same key for another message.
    let (status, reused) = call(&router, "POST", request("bye", "k1")).await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["error"], "idempotency_key_reused");

    let (status, bad) = call(&router, "POST", "{\"recipient\":{}}".into()).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"], "bad_request");

    let (status, _) = call(&router, "GET", String::new()).await;
    assert_eq!(status, 405);

    let big = request(&"x".repeat(70 * 1024), "big");
    let (status, body) = call(&router, "POST", big).await;
    assert_eq!(status, 413, "{body}");

    // The queue is down: 503, and the same key goes through once it is back.
    queue.set_fault(QueueFault::FailCalls(1));
    let (status, body) = call(&router, "POST", request("later", "k2")).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = call(&router, "POST", request("later", "k2")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(queue.len(), 2);
}
