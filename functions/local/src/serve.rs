//! `serve` and `send`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use lc_core::ingest::{self, Ingest, IngestConfig};
use lc_core::memory::MemoryQueue;
use lc_core::ports::SystemClock;
use lc_core::privacy::hash_id;
use lc_core::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::signature::sign;
use lc_core::webhook::InboundEvent;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Endpoint = Ingest<Arc<MemoryQueue>, Arc<Secrets>, SystemClock>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// A fresh random-looking value for local secrets (not for production: that uses Secrets
/// Manager). Mixes time, pid and an address so two runs never share it.
fn generated(label: &str) -> String {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update((&h as *const _ as usize).to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

fn local_secrets() -> (Secrets, bool) {
    let from_env = std::env::var("LC_APP_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let generated_secret = from_env.is_none();
    let app_secret = from_env.unwrap_or_else(|| generated("app-secret"));
    let verify = std::env::var("LC_VERIFY_TOKEN")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| generated("verify-token"));
    (
        Secrets {
            apps: vec![AppCredentials {
                app_id: std::env::var("LC_APP_ID").unwrap_or_else(|_| "1234567890".into()),
                app_secret: Secret::new(app_secret),
                client_token: Secret::default(),
            }],
            verify_token: Secret::new(verify),
            ..Default::default()
        },
        generated_secret,
    )
}

pub async fn serve(args: &[String]) -> Result<(), String> {
    init_logs();
    let port: u16 = flag(args, "--port")
        .unwrap_or("8080")
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let (secrets, generated_secret) = local_secrets();
    let app_secret = secrets.apps[0].app_secret.expose().to_string();
    let verify = secrets.verify_token.expose().to_string();
    let events = Arc::new(MemoryQueue::new("events"));
    let endpoint: Arc<Endpoint> = Arc::new(Ingest::new(
        events.clone(),
        Arc::new(secrets),
        SystemClock,
        IngestConfig::default(),
    ));

    let app = axum::Router::new().fallback(handle).with_state(endpoint);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let sample = sample_optin();
    println!("login-connect local runner (in-memory adapters, no AWS)");
    println!("  webhook:      http://{addr}/webhook");
    if generated_secret {
        println!(
            "  app secret:   {app_secret}   (generated for this run; set LC_APP_SECRET to fix it)"
        );
        println!("  verify token: {verify}");
    } else {
        println!("  app secret and verify token: from LC_APP_SECRET / LC_VERIFY_TOKEN");
    }
    println!("  try:");
    println!(
        "    curl -s -X POST http://{addr}/webhook -H 'content-type: application/json' \\\n      -H 'x-hub-signature-256: {}' \\\n      --data-binary '{}'",
        sign(&app_secret, sample.as_bytes()),
        sample
    );
    println!("  Ctrl-C stops.");

    tokio::spawn(drain(events));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

fn sample_optin() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        r#"{{"object":"page","entry":[{{"id":"1000000001","time":{now},"messaging":[{{"recipient":{{"id":"1000000001"}},"timestamp":{now},"optin":{{"login_id":"sample-login-id"}}}}]}}]}}"#
    )
}

/// Until the events function runs here too, show what was queued.
async fn drain(queue: Arc<MemoryQueue>) {
    loop {
        for m in queue.receive(10) {
            match InboundEvent::from_json(&m.body) {
                Ok(e) => tracing::info!(
                    kind = e.kind.as_str(),
                    account = %e.account_id,
                    sender = e.sender.as_ref().map(|s| hash_id(&s.id)).unwrap_or_default(),
                    key = %e.key,
                    "event queued"
                ),
                Err(err) => tracing::warn!(error = %err, "unreadable queue message"),
            }
            queue.delete(&m.receipt_handle);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn handle(
    State(endpoint): State<Arc<Endpoint>>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (resp, outcome) = endpoint
        .handle(ingest::Request {
            method: method.as_str(),
            path: uri.path(),
            query: &query,
            signature_256: header("x-hub-signature-256"),
            has_signature_sha1: headers.contains_key("x-hub-signature"),
            body: &body,
        })
        .await;
    tracing::info!(outcome = ?outcome, status = resp.status, "webhook request");
    (
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", resp.content_type)],
        resp.body,
    )
}

/// `send FILE [--url URL]`: signs the file's exact bytes and posts them.
pub async fn send(args: &[String]) -> Result<(), String> {
    let file = args.first().ok_or("send needs a FILE")?;
    let url = flag(args, "--url").unwrap_or("http://127.0.0.1:8080/webhook");
    let secret = std::env::var("LC_APP_SECRET")
        .map_err(|_| "set LC_APP_SECRET to the secret the runner printed")?;
    let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let (status, text) = post(url, &body, &sign(&secret, &body)).await?;
    println!("{status} {text}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

/// A minimal HTTP/1.1 POST to a loopback URL (the runner only ever talks to 127.0.0.1).
async fn post(url: &str, body: &[u8], signature: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs on this machine are supported")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let head = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\nx-hub-signature-256: {signature}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status in the answer")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_target(false)
        .try_init();
}
