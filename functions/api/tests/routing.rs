//! Which part answers which path: the local runner mounts every part on one router; each
//! Lambda only its own (`webhook.rs`, `login_sim.rs`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_api::{login, webhook, Api};
use lc_core::login::{Login, LoginConfig};
use lc_core::memory::{MemoryQueue, MemoryStore};
use lc_core::ports::{NoMetrics, SecretSource, SystemClock};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Intake, IntakeConfig};
use lc_core::webhook::signature::sign;
use tower::ServiceExt;

const SECRET: &str = "app-secret";
const ORIGIN: &str = "https://shop.example";

fn everything() -> (Router, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new("events"));
    let secrets: Arc<dyn SecretSource> = Arc::new(Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new(SECRET),
            client_token: Secret::new("client-token"),
        }],
        verify_token: Secret::new("vt"),
        ..Default::default()
    }));
    let intake = Intake::new(
        queue.clone(),
        secrets.clone(),
        Arc::new(SystemClock),
        Arc::new(NoMetrics),
        IntakeConfig::default(),
    );
    // Nothing here reaches Graph: the page and the routing need no token check.
    let graph = GraphClient::new(GraphConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..GraphConfig::default()
    })
    .expect("graph client");
    let login = Login::new(
        Arc::new(graph),
        queue.clone(),
        Arc::new(MemoryStore::new()),
        secrets,
        Arc::new(SystemClock),
        Arc::new(NoMetrics),
        LoginConfig {
            default_page_id: "100".into(),
            allowed_origins: vec![ORIGIN.into()],
            ..LoginConfig::default()
        },
    );
    let router = Api::new()
        .intake(Arc::new(intake))
        .login(Arc::new(login))
        .router();
    (router, queue)
}

struct Answer {
    status: StatusCode,
    vary: bool,
    allow_origin: Option<String>,
    content_type: String,
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
    let (status, vary, allow_origin, content_type) = (
        resp.status(),
        header("vary").is_some(),
        header("access-control-allow-origin"),
        header("content-type").unwrap_or_default(),
    );
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        vary,
        allow_origin,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn req(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("origin", ORIGIN)
}

#[tokio::test]
async fn the_login_part_owns_the_root_and_the_webhook_keeps_its_path() {
    let (router, queue) = everything();

    let page = call(&router, req("GET", "/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(page.body.contains("data-page-id=\"100\""), "{}", page.body);
    assert_eq!(page.allow_origin.as_deref(), Some(ORIGIN));

    let body = br#"{"object":"page","entry":[]}"#;
    let hook = call(
        &router,
        req("POST", "/webhook")
            .header("x-hub-signature-256", sign(SECRET, body))
            .body(Body::from(&body[..]))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (hook.status.as_u16(), hook.body.as_str()),
        (200, webhook::BODY_OK)
    );
    assert!(
        !hook.vary && hook.allow_origin.is_none(),
        "no CORS on the webhook"
    );
    let verify = call(
        &router,
        req(
            "GET",
            "/webhook?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=7",
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!((verify.status.as_u16(), verify.body.as_str()), (200, "7"));

    // POST / is the login part's (its page), not the webhook's.
    let root_post = call(
        &router,
        req("POST", "/").body(Body::from(&body[..])).unwrap(),
    )
    .await;
    assert_eq!(
        (root_post.status.as_u16(), root_post.body.as_str()),
        (405, login::BODY_METHOD)
    );
    assert!(queue.is_empty(), "an empty entry list queues nothing");

    let options = call(
        &router,
        req("OPTIONS", "/webhook").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (options.status.as_u16(), options.body.as_str()),
        (405, webhook::BODY_METHOD)
    );
    assert!(options.allow_origin.is_none());

    for path in ["/nope", "/webhook/x", "/login/x"] {
        for method in ["GET", "OPTIONS"] {
            let a = call(&router, req(method, path).body(Body::empty()).unwrap()).await;
            assert_eq!(
                (a.status.as_u16(), a.body.as_str()),
                (404, login::BODY_NOT_FOUND),
                "{method} {path}"
            );
            assert!(a.allow_origin.is_none(), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn an_empty_api_answers_404() {
    let router = Api::new().router();
    let a = call(&router, req("GET", "/").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (a.status.as_u16(), a.body.as_str()),
        (404, webhook::BODY_NOT_FOUND)
    );
}
