//! The webhook through the router: GIVEN a webhook-only router (as the webhook Lambda mounts it),
//! WHEN Meta's handshake or a body arrives, directly or as a real Function URL event (payload
//! format 2.0) through lambda_http's own deserializer, THEN status, body and queue are exactly
//! as Meta and the events function need.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine;
use lc_api::webhook::{
    BODY_FORBIDDEN, BODY_METHOD, BODY_NOT_FOUND, BODY_OK, BODY_RETRY, BODY_TOO_LARGE,
    BODY_UNAUTHORIZED,
};
use lc_api::Api;
use lc_core::memory::{MemoryQueue, QueueFault};
use lc_core::ports::{MemoryMetrics, Metric, SecretSource, SystemClock};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Intake, IntakeConfig};
use lc_core::webhook::signature::{sign, SignatureError};
use lc_core::webhook::{EventKind, InboundEvent};
use tower::ServiceExt;

const SECRET: &str = "app-secret-1";
const VERIFY: &str = "verify-me";

struct Setup {
    router: Router,
    queue: Arc<MemoryQueue>,
    metrics: Arc<MemoryMetrics>,
}

fn setup() -> Setup {
    let queue = Arc::new(MemoryQueue::new("events"));
    let metrics = Arc::new(MemoryMetrics::new());
    let secrets: Arc<dyn SecretSource> = Arc::new(Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new(SECRET),
            client_token: Secret::default(),
        }],
        verify_token: Secret::new(VERIFY),
        ..Default::default()
    }));
    let intake = Intake::new(
        queue.clone(),
        secrets,
        Arc::new(SystemClock),
        metrics.clone(),
        IntakeConfig {
            max_body_bytes: 64 * 1024,
            retry_base: Duration::from_millis(1),
            ..IntakeConfig::default()
        },
    );
    Setup {
        router: Api::new().intake(Arc::new(intake)).router(),
        queue,
        metrics,
    }
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    allow: Option<String>,
    body: String,
}

async fn call(router: &Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, content_type, allow) = (resp.status(), header("content-type"), header("allow"));
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        content_type,
        allow,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn post(router: &Router, body: &[u8], sig: Option<&str>) -> Answer {
    let mut req = Request::post("/webhook").header("content-type", "application/json");
    if let Some(sig) = sig {
        req = req.header("x-hub-signature-256", sig);
    }
    call(router, req.body(Body::from(body.to_vec())).unwrap()).await
}

fn optin_body(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"recipient":{{"id":"100"}},"timestamp":{},"optin":{{"login_id":"login-{i}"}}}}"#,
                1_700_000_000_000i64 + i as i64
            )
        })
        .collect();
    format!(
        r#"{{"object":"page","entry":[{{"id":"100","time":1700000000000,"messaging":[{}]}}]}}"#,
        items.join(",")
    )
}

fn queued(q: &MemoryQueue) -> Vec<InboundEvent> {
    q.bodies()
        .iter()
        .map(|b| InboundEvent::from_json(b).expect("queue holds valid events"))
        .collect()
}

#[tokio::test]
async fn subscription_handshake() {
    let s = setup();
    let q = |mode: &str, token: &str, challenge: &str| {
        format!("hub.mode={mode}&hub.verify_token={token}&hub.challenge={challenge}")
    };
    let cases = [
        (q("subscribe", VERIFY, "1158201444"), 200, "1158201444"),
        (q("subscribe", "wrong", "1"), 403, BODY_FORBIDDEN),
        (q("unsubscribe", VERIFY, "1"), 403, BODY_FORBIDDEN),
        (q("subscribe", VERIFY, ""), 403, BODY_FORBIDDEN),
        (q("subscribe", "", "1"), 403, BODY_FORBIDDEN),
        (String::new(), 403, BODY_FORBIDDEN),
        // Percent-decoded before the comparison.
        (
            "hub.mode=subscribe&hub.verify_token=verify%2Dme&hub.challenge=%34%32".into(),
            200,
            "42",
        ),
    ];
    for (query, status, body) in cases {
        for path in ["/webhook", "/", "/webhook/"] {
            let uri = format!("{path}?{query}");
            let a = call(&s.router, Request::get(&uri).body(Body::empty()).unwrap()).await;
            assert_eq!(
                (a.status.as_u16(), a.body.as_str()),
                (status, body),
                "{uri}"
            );
            let want = if status == 200 {
                "text/plain"
            } else {
                "application/json"
            };
            assert_eq!(a.content_type.as_deref(), Some(want), "{uri}");
        }
    }
}

#[tokio::test]
async fn signed_body_is_queued_event_by_event() {
    let s = setup();
    let body = optin_body(3);
    let a = post(
        &s.router,
        body.as_bytes(),
        Some(&sign(SECRET, body.as_bytes())),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, BODY_OK);
    assert_eq!(a.content_type.as_deref(), Some("text/plain"));
    let events = queued(&s.queue);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kind == EventKind::Optin && e.account_id == "100"));
    assert_eq!(s.metrics.take(), vec![], "SQS counts what was queued");
}

#[tokio::test]
async fn every_refusal_looks_the_same_and_queues_nothing() {
    let s = setup();
    let body = optin_body(1);
    let good = sign(SECRET, body.as_bytes());
    let sha1_only = call(
        &s.router,
        Request::post("/webhook")
            .header("x-hub-signature", "sha1=0000")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(sha1_only.status, 401);
    assert_eq!(sha1_only.body, BODY_UNAUTHORIZED);
    let forged_body = body.replace("login-0", "login-X");
    let cases: Vec<(Option<String>, &[u8])> = vec![
        (None, body.as_bytes()),
        (Some("sha256=abc".into()), body.as_bytes()),
        (Some(sign("guess", body.as_bytes())), body.as_bytes()),
        (Some(good.clone()), forged_body.as_bytes()),
    ];
    for (sig, b) in cases {
        let a = post(&s.router, b, sig.as_deref()).await;
        assert_eq!(
            (a.status, &a.body, &a.content_type),
            (sha1_only.status, &sha1_only.body, &sha1_only.content_type),
            "same status and body for {sig:?}"
        );
        assert!(!a.body.contains(&good[7..15]));
    }
    assert!(s.queue.is_empty());
    assert_eq!(
        s.metrics.take().first(),
        Some(&Metric::SignatureFailure(SignatureError::Sha1Only))
    );
}

#[tokio::test]
async fn signed_garbage_is_quarantined_not_lost() {
    let s = setup();
    for body in [
        &b"not json at all"[..],
        b"{\"object\":\"page\",\"entry\":[{\"id\":",
        b"\xff\xfe bytes",
    ] {
        let a = post(&s.router, body, Some(&sign(SECRET, body))).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, BODY_OK));
    }
    let events = queued(&s.queue);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kind == EventKind::Quarantined));
}

#[tokio::test]
async fn queue_outage_is_retried_then_answered_500() {
    let s = setup();
    let body = optin_body(2);
    let sig = sign(SECRET, body.as_bytes());

    s.queue.set_fault(QueueFault::FailCalls(2));
    let a = post(&s.router, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        a.status, 200,
        "two failed calls are absorbed by the retry rounds"
    );
    assert_eq!(s.queue.len(), 2);

    s.queue.set_fault(QueueFault::FailCalls(100));
    let a = post(&s.router, body.as_bytes(), Some(&sig)).await;
    assert_eq!(
        a.status, 500,
        "Meta must retry when the queue did not take the events"
    );
    assert_eq!(a.body, BODY_RETRY);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn limits_paths_and_methods() {
    let s = setup();
    let big = vec![b' '; 64 * 1024 + 1];
    let a = post(&s.router, &big, Some(&sign(SECRET, &big))).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (413, BODY_TOO_LARGE));
    // Above axum's own default limit, still the fixed answer.
    let huge = vec![b' '; 3 * 1024 * 1024];
    let a = post(&s.router, &huge, Some(&sign(SECRET, &huge))).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (413, BODY_TOO_LARGE));
    for (method, path, status, body) in [
        ("POST", "/other", 404, BODY_NOT_FOUND),
        ("GET", "/login", 404, BODY_NOT_FOUND),
        ("PUT", "/webhook", 405, BODY_METHOD),
        ("DELETE", "/", 405, BODY_METHOD),
        ("HEAD", "/webhook", 405, ""),
        ("OPTIONS", "/webhook", 405, BODY_METHOD),
    ] {
        let a = call(
            &s.router,
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (status, body),
            "{method} {path}"
        );
        if status == 405 {
            assert_eq!(a.allow.as_deref(), Some("GET, POST"), "{method} {path}");
        }
    }
    assert!(s.queue.is_empty());
}

// ---------- Function URL events through lambda_http, into the same router ----------

fn function_url_event(
    method: &str,
    query: &[(&str, &str)],
    headers: serde_json::Value,
    body: Option<(&str, bool)>,
) -> String {
    let raw_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let params: serde_json::Map<String, serde_json::Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let mut ev = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhook",
        "rawQueryString": raw_query.join("&"),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": {"method": method, "path": "/webhook", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.1", "userAgent": "facebookexternalua"},
            "requestId": "req-1", "routeKey": "$default", "stage": "$default",
            "time": "21/Nov/2026:06:00:00 +0000", "timeEpoch": 1795068000000u64
        },
        "isBase64Encoded": false
    });
    if !params.is_empty() {
        ev["queryStringParameters"] = serde_json::Value::Object(params);
    }
    if let Some((b, encoded)) = body {
        ev["body"] = serde_json::Value::String(b.to_string());
        ev["isBase64Encoded"] = serde_json::Value::Bool(encoded);
    }
    ev.to_string()
}

/// What the Lambda runtime does with an event: deserialize, run the router, convert the answer.
async fn lambda(router: &Router, event: &str) -> lambda_http::Response<lambda_http::Body> {
    let req = lambda_http::request::from_str(event).expect("a valid Function URL event");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    lambda_http::IntoResponse::into_response(resp).await
}

fn text(body: &lambda_http::Body) -> String {
    match body {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

// Meta escapes '/' and non-ASCII; the signature covers exactly these bytes.
const RAW: &str = r#"{"object":"page","entry":[{"id":"100","time":1,"messaging":[{"sender":{"id":"7"},"recipient":{"id":"100"},"timestamp":1,"message":{"mid":"m_1","text":"caf\u00e9 \/ \ud83d\ude00 日本"}}]}]}"#;

#[tokio::test]
async fn function_url_base64_body_is_verified_over_the_decoded_bytes() {
    let s = setup();
    let b64 = base64::engine::general_purpose::STANDARD.encode(RAW);
    let event = function_url_event(
        "POST",
        &[],
        serde_json::json!({"content-type": "application/json", "x-hub-signature-256": sign(SECRET, RAW.as_bytes())}),
        Some((&b64, true)),
    );
    let resp = lambda(&s.router, &event).await;
    assert_eq!(resp.status(), 200, "{}", text(resp.body()));
    assert_eq!(text(resp.body()), BODY_OK);
    assert_eq!(s.queue.len(), 1);
    assert!(
        s.queue.bodies()[0].contains(r#"caf\u00e9 \/ \ud83d\ude00"#),
        "item kept byte for byte"
    );
}

#[tokio::test]
async fn function_url_plain_text_body_and_forgery() {
    let s = setup();
    let good = sign(SECRET, RAW.as_bytes());
    let ok = function_url_event(
        "POST",
        &[],
        serde_json::json!({"x-hub-signature-256": good}),
        Some((RAW, false)),
    );
    let resp = lambda(&s.router, &ok).await;
    assert_eq!(resp.status(), 200);

    let forged = function_url_event(
        "POST",
        &[],
        serde_json::json!({"x-hub-signature-256": sign("nope", RAW.as_bytes()), "x-hub-signature": "sha1=00"}),
        Some((RAW, false)),
    );
    let resp = lambda(&s.router, &forged).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(text(resp.body()), BODY_UNAUTHORIZED);
    assert_eq!(s.queue.len(), 1);
}

#[tokio::test]
async fn function_url_verification_get() {
    let s = setup();
    let ev = function_url_event(
        "GET",
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY),
            ("hub.challenge", "42"),
        ],
        serde_json::json!({}),
        None,
    );
    let resp = lambda(&s.router, &ev).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp.body()), "42");
}
