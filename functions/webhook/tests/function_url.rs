//! The Lambda layer: real Function URL events (payload format 2.0) through lambda_http's own
//! deserializer, into the handler, on in-memory adapters.

use std::sync::Arc;

use base64::Engine;
use lambda_http::Body;
use lc_core::memory::MemoryQueue;
use lc_core::ports::SystemClock;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Ingest, IngestConfig};
use lc_core::webhook::signature::sign;

const SECRET: &str = "s3cret";

fn endpoint() -> (Ingest, Arc<MemoryQueue>) {
    let q = Arc::new(MemoryQueue::new("events"));
    let secrets = Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new(SECRET),
            client_token: Secret::default(),
        }],
        verify_token: Secret::new("vt"),
        ..Default::default()
    });
    (
        Ingest::new(
            q.clone(),
            Arc::new(secrets),
            Arc::new(SystemClock),
            IngestConfig::default(),
        ),
        q,
    )
}

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

fn text(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

// Meta escapes '/' and non-ASCII; the signature covers exactly these bytes.
const RAW: &str = r#"{"object":"page","entry":[{"id":"100","time":1,"messaging":[{"sender":{"id":"7"},"recipient":{"id":"100"},"timestamp":1,"message":{"mid":"m_1","text":"caf\u00e9 \/ \ud83d\ude00 日本"}}]}]}"#;

#[tokio::test]
async fn base64_encoded_body_is_verified_over_the_decoded_bytes() {
    let (ep, q) = endpoint();
    let b64 = base64::engine::general_purpose::STANDARD.encode(RAW);
    let event = function_url_event(
        "POST",
        &[],
        serde_json::json!({"content-type": "application/json", "x-hub-signature-256": sign(SECRET, RAW.as_bytes())}),
        Some((&b64, true)),
    );
    let req = lambda_http::request::from_str(&event).expect("a valid Function URL event");
    let resp = lc_webhook::handle(&ep, req).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", text(resp.body()));
    assert_eq!(q.len(), 1);
    assert!(
        q.bodies()[0].contains(r#"caf\u00e9 \/ \ud83d\ude00"#),
        "item kept byte for byte"
    );
}

#[tokio::test]
async fn plain_text_body_and_forgery() {
    let (ep, q) = endpoint();
    let good = sign(SECRET, RAW.as_bytes());
    let ok = function_url_event(
        "POST",
        &[],
        serde_json::json!({"x-hub-signature-256": good}),
        Some((RAW, false)),
    );
    let resp = lc_webhook::handle(&ep, lambda_http::request::from_str(&ok).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let forged = function_url_event(
        "POST",
        &[],
        serde_json::json!({"x-hub-signature-256": sign("nope", RAW.as_bytes()), "x-hub-signature": "sha1=00"}),
        Some((RAW, false)),
    );
    let resp = lc_webhook::handle(&ep, lambda_http::request::from_str(&forged).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        text(resp.body()),
        lc_core::webhook::intake::BODY_UNAUTHORIZED
    );
    assert_eq!(q.len(), 1);
}

#[tokio::test]
async fn verification_get() {
    let (ep, _) = endpoint();
    let ev = function_url_event(
        "GET",
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "vt"),
            ("hub.challenge", "42"),
        ],
        serde_json::json!({}),
        None,
    );
    let resp = lc_webhook::handle(&ep, lambda_http::request::from_str(&ev).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp.body()), "42");
}
