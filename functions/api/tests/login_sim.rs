//! The login routes (as the login Lambda mounts them: the login part alone) against the Graph
//! simulator (real HTTP) with in-memory queue and store; Function URL events through
//! lambda_http's deserializer into the same router; a login is not an opt-in (the evidence
//! protocol); and the convergence of the callback and the `messaging_optins` webhook on one
//! opt-in and one first message, with the `login_id` computed by the simulator playing Meta.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use base64::Engine;
use graph_sim::{ConfigUpdate, SimConfig, SimHandle, UserTokenRegistration};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_api::Api;
use lc_core::deadline::DeadlineOutcome;
use lc_core::lifecycle::optin::{optin_key, DeadlineCheck, OptinSource, OptinState, DAY_MS};
use lc_core::lifecycle::processor::Processed;
use lc_core::lifecycle::refs::{self, Keyring, RefCheck};
use lc_core::login::login_id::derive_login_id;
use lc_core::login::{Login, LoginConfig, NoEvidence, MAX_BODY_BYTES};
use lc_core::memory::{ManualClock, MemoryQueue, MemoryStore};
use lc_core::ports::{Clock, MemoryMetrics, Metric, OptinStore, Scheduler, SecretSource};
use lc_core::support::privacy::hash_id;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::support::time::format_rfc3339_ms;
use lc_core::webhook::{split_body, Channel, Identity, IdentityKind, InboundEvent, SplitOutcome};
use lc_testkit::{optin_body, World, PAGE};
use tower::ServiceExt;

/// The simulator's default app (its `debug_token` only accepts this app's token).
const APP_ID: &str = "100000000000001";
const APP_SECRET: &str = "sim-app-secret";
const CLIENT_TOKEN: &str = "login-client-token-7f3a";
const PAGE_TOKEN: &str = "sim-page-token";
const VERIFY_TOKEN: &str = "verify-token-9c1e";
const REF_KEY: [u8; 32] = [0x5a; 32];
const ASID: &str = "5550001";
const USER_TOKEN: &str = "EAAUserTokenValid0123456789";
const ALLOWED: &str = "https://shop.example";
const SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";

fn ref_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(REF_KEY)
}

fn secrets() -> Arc<dyn SecretSource> {
    Arc::new(Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: APP_ID.into(),
            app_secret: Secret::new(APP_SECRET),
            client_token: Secret::new(CLIENT_TOKEN),
        }],
        verify_token: Secret::new(VERIFY_TOKEN),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new(PAGE_TOKEN))]),
        ref_keys: BTreeMap::from([("3".to_string(), Secret::new(ref_key_b64()))]),
        page_apps: BTreeMap::new(),
        instagram_tokens: BTreeMap::new(),
        external_id_keys: BTreeMap::from([(
            "2".to_string(),
            Secret::new(base64::engine::general_purpose::STANDARD.encode(EXTERNAL_ID_KEY)),
        )]),
    }))
}

/// The business backend's key for signing its user ids (`external_id_keys` id 2).
const EXTERNAL_ID_KEY: [u8; 32] = [0x5a; 32];

/// Every secret value: none may reach a response.
fn secret_values() -> Vec<String> {
    vec![
        APP_SECRET.into(),
        CLIENT_TOKEN.into(),
        PAGE_TOKEN.into(),
        VERIFY_TOKEN.into(),
        ref_key_b64(),
        base64::engine::general_purpose::STANDARD.encode(EXTERNAL_ID_KEY),
    ]
}

fn config() -> LoginConfig {
    LoginConfig {
        default_page_id: PAGE.into(),
        allowed_origins: vec![ALLOWED.into(), "https://other-shop.example/".into()],
        app_id: APP_ID.into(),
        sdk_url: SDK_URL.into(),
        derive_login_id: true,
        ..LoginConfig::default()
    }
}

fn graph(base_url: String) -> Arc<GraphClient> {
    match GraphClient::new(GraphConfig {
        base_url,
        timeout: Duration::from_millis(1_500),
        connect_timeout: Duration::from_millis(500),
        ..GraphConfig::default()
    }) {
        Ok(g) => Arc::new(g),
        Err(e) => panic!("graph client: {e}"),
    }
}

/// The router as the login Lambda builds it.
fn login_router(login: Login) -> Router {
    Api::new().login(Arc::new(login)).router()
}

struct Setup {
    sim: SimHandle,
    endpoint: Router,
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    clock: ManualClock,
    metrics: Arc<MemoryMetrics>,
}

async fn setup_with(config: LoginConfig) -> Setup {
    let sim = graph_sim::start(SimConfig::default().with_page(PAGE, PAGE_TOKEN))
        .await
        .expect("simulator starts");
    let clock = ManualClock::at(sim.now_ms());
    let queue = Arc::new(MemoryQueue::new("events"));
    let store = Arc::new(MemoryStore::new());
    let metrics = Arc::new(MemoryMetrics::new());
    let endpoint = login_router(Login::new(
        graph(sim.base_url()),
        queue.clone(),
        store.clone(),
        secrets(),
        Arc::new(clock.clone()),
        metrics.clone(),
        config,
    ));
    Setup {
        sim,
        endpoint,
        queue,
        store,
        clock,
        metrics,
    }
}

async fn setup() -> Setup {
    setup_with(config()).await
}

fn user_token(sim: &SimHandle, token: &str, app: Option<&str>, scopes: &[&str], expires: i64) {
    sim.register_user_token(UserTokenRegistration {
        token: token.into(),
        app_id: app.map(String::from),
        user_id: ASID.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: expires,
        valid: true,
        issued_at_ms: None,
    });
}

const GOOD_SCOPES: &[&str] = &["public_profile", "email", "user_messenger_contact"];

/// What the page posts right after a login in which it saw the grant happen.
fn login_body(token: &str, page: Option<&str>) -> String {
    login_body_grant(token, page, Some("new"))
}

/// The body with the page's `grant` evidence (`None`: the field is left out, as an older page
/// would).
fn login_body_grant(token: &str, page: Option<&str>, grant: Option<&str>) -> String {
    let mut body = serde_json::json!({"access_token": token});
    if let Some(p) = page {
        body["page_id"] = p.into();
    }
    if let Some(g) = grant {
        body["grant"] = g.into();
    }
    body.to_string()
}

/// A response as the tests read it.
struct Response {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The items of a comma-separated header, trimmed (`POST, OPTIONS` = `POST,OPTIONS`).
    fn header_list(&self, name: &str) -> Option<Vec<&str>> {
        self.header(name)
            .map(|v| v.split(',').map(str::trim).collect())
    }
}

async fn call(ep: &Router, method: &str, uri: &str, origin: Option<&str>, body: &[u8]) -> Response {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let resp = ep.clone().oneshot(req).await.expect("infallible");
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Response {
        status,
        content_type,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn post(ep: &Router, body: &str, origin: Option<&str>) -> Response {
    call(ep, "POST", "/login", origin, body.as_bytes()).await
}

async fn get_page(ep: &Router, query: &[(String, String)]) -> Response {
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    call(ep, "GET", &format!("/?{}", query.join("&")), None, b"").await
}

fn json(resp: &Response) -> serde_json::Value {
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.body))
}

/// Neither the user token nor any secret is in the status line's companions.
fn assert_clean(resp: &Response, tokens: &[&str]) {
    let all: Vec<String> = std::iter::once(resp.body.clone())
        .chain(resp.headers.iter().map(|(_, v)| v.clone()))
        .collect();
    for text in &all {
        for t in tokens {
            assert!(!text.contains(t), "token echoed: {text}");
        }
        for s in secret_values() {
            assert!(!text.contains(&s), "secret leaked: {text}");
        }
    }
}

/// Computed independently, outside this code base, with Python:
/// `hmac.new(b"login-client-token-7f3a", b"umc_5550001_100000000000001_100", hashlib.sha256).hexdigest()`.
const EXPECTED_LOGIN_ID: &str = "7251f9788c58abbe17b0e3876280d4ac6006adc3b2a7864a10f34158d39810b9";

fn expected_login_id() -> String {
    let id = derive_login_id(CLIENT_TOKEN, ASID, APP_ID, PAGE);
    assert_eq!(id, EXPECTED_LOGIN_ID, "derivation test vector");
    id
}

#[tokio::test]
async fn valid_token_is_accepted_and_queued_once() {
    let s = setup().await;
    user_token(
        &s.sim,
        USER_TOKEN,
        None,
        GOOD_SCOPES,
        s.sim.now_ms() + 3_600_000,
    );
    let now = s.clock.now_ms();
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(resp.content_type, "application/json");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_clean(&resp, &[USER_TOKEN]);
    let v = json(&resp);
    let login_id = expected_login_id();
    assert_eq!(v["login_id_hash"], hash_id(&login_id));
    assert_eq!(v["state"], "queued");
    assert_eq!(v["deadline_at"], format_rfc3339_ms(now + DAY_MS));
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(3),
        "exactly the three documented fields"
    );

    let bodies = s.queue.bodies();
    assert_eq!(bodies.len(), 1, "exactly one event");
    assert!(!bodies[0].contains(USER_TOKEN));
    let event = InboundEvent::from_json(&bodies[0]).expect("an inbound event");
    assert_eq!(event.channel, Channel::Login);
    assert_eq!(event.account_id, PAGE);
    assert_eq!(event.timestamp_ms, now);
    assert_eq!(
        event.sender,
        Some(Identity::new(IdentityKind::LoginId, login_id.clone()))
    );
    assert!(event.item.get().contains(&login_id));
    assert_eq!(s.sim.stats().debug_token_calls, 1);

    // An explicit page_id equal to the default is the same login_id.
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, Some(PAGE)), None).await;
    assert_eq!(resp.status, 202);
    assert_eq!(json(&resp)["login_id_hash"], hash_id(&login_id));
}

/// A login is not an opt-in: without the page's evidence that the grant happened in this
/// login, a valid token with `user_messenger_contact` queues nothing, answers
/// `awaiting_webhook`, and is counted.
#[tokio::test]
async fn login_without_evidence_queues_nothing() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let login_id = expected_login_id();
    for grant in [
        None,
        Some("existing"),
        Some("unknown"),
        Some("NEW"),
        Some(""),
    ] {
        let resp = post(
            &s.endpoint,
            &login_body_grant(USER_TOKEN, None, grant),
            None,
        )
        .await;
        assert_eq!(resp.status, 202, "{grant:?}: {}", resp.body);
        assert_clean(&resp, &[USER_TOKEN]);
        let v = json(&resp);
        assert_eq!(v["state"], "awaiting_webhook", "{grant:?}");
        assert_eq!(v["reason"], "grant_not_new");
        assert_eq!(v["login_id_hash"], hash_id(&login_id));
        assert_eq!(v.get("deadline_at"), None, "no clock started");
    }
    assert!(s.queue.is_empty(), "no opt-in queued without evidence");
    assert_eq!(
        s.metrics.take(),
        vec![Metric::LoginAwaitingWebhook(NoEvidence::GrantNotNew); 5]
    );
}

/// The server's own check: a token issued long ago (a replayed session, not this login) starts
/// no clock even when the page claims a new grant; so does one whose `issued_at` is unknown.
#[tokio::test]
async fn old_token_queues_nothing() {
    let s = setup().await;
    let now = s.sim.now_ms();
    s.sim.register_user_token(UserTokenRegistration {
        token: "EAAOldSession000".into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: GOOD_SCOPES.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: 0,
        valid: true,
        issued_at_ms: Some(now - 2 * DAY_MS),
    });
    s.sim.register_user_token(UserTokenRegistration {
        token: "EAAJustTooOld000".into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: GOOD_SCOPES.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: 0,
        valid: true,
        issued_at_ms: Some(now - 11 * 60 * 1000),
    });
    for token in ["EAAOldSession000", "EAAJustTooOld000"] {
        let resp = post(&s.endpoint, &login_body(token, None), None).await;
        assert_eq!(resp.status, 202, "{token}: {}", resp.body);
        assert_clean(&resp, &[token]);
        let v = json(&resp);
        assert_eq!(v["state"], "awaiting_webhook", "{token}");
        assert_eq!(v["reason"], "token_not_fresh", "{token}");
    }
    assert!(s.queue.is_empty(), "an old token starts no clock");
    assert_eq!(
        s.metrics.take(),
        vec![Metric::LoginAwaitingWebhook(NoEvidence::TokenNotFresh); 2]
    );

    // A configurable age: the same 11-minute-old token is fresh under a 15-minute setting.
    let s = setup_with(LoginConfig {
        max_token_age_ms: 15 * 60 * 1000,
        ..config()
    })
    .await;
    s.sim.register_user_token(UserTokenRegistration {
        token: "EAAJustTooOld000".into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: GOOD_SCOPES.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: 0,
        valid: true,
        issued_at_ms: Some(s.sim.now_ms() - 11 * 60 * 1000),
    });
    let resp = post(&s.endpoint, &login_body("EAAJustTooOld000", None), None).await;
    assert_eq!(json(&resp)["state"], "queued", "{}", resp.body);
    assert_eq!(s.queue.len(), 1);
}

/// A person who opted in a month ago (webhook, first message sent) logs in again: the page
/// reports the grant as existing, and nothing is queued or sent. Even a page that lies about the
/// grant cannot start a clock with an old session's token.
#[tokio::test]
async fn second_login_of_a_long_opted_in_person_gets_no_first_message() {
    let w = World::new(2_000).await;
    w.sim.update_config(ConfigUpdate {
        client_token: Some(CLIENT_TOKEN.into()),
        ..ConfigUpdate::default()
    });
    // A month ago: the consent in the login dialog, Meta's webhook, our one first message.
    w.sim.set_clock_offset(-30 * DAY_MS);
    w.clock.set(w.sim.now_ms());
    let login_id = w.sim.login_connect(ASID, PAGE);
    w.webhook(&optin_body(
        &format!(r#"{{"login_id":"{login_id}"}}"#),
        None,
        w.now(),
    ))
    .await;
    w.drain(50).await;
    assert_eq!(w.sim.attempts_for(&login_id), 1);
    // Today.
    w.sim.set_clock_offset(0);
    w.clock.set(w.sim.now_ms());
    user_token(&w.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    s_register_old_session(&w.sim, w.now());
    let events_queue = Arc::new(MemoryQueue::new("events"));
    let metrics = Arc::new(MemoryMetrics::new());
    let login = login_router(Login::new(
        graph(w.sim.base_url()),
        events_queue.clone(),
        w.store.clone(),
        secrets(),
        Arc::new(w.clock.clone()),
        metrics.clone(),
        config(),
    ));
    let resp = post(
        &login,
        &login_body_grant(USER_TOKEN, None, Some("existing")),
        None,
    )
    .await;
    assert_eq!(json(&resp)["state"], "awaiting_webhook", "{}", resp.body);
    let resp = post(&login, &login_body("EAAOldSession000", None), None).await;
    assert_eq!(json(&resp)["reason"], "token_not_fresh", "{}", resp.body);
    assert!(events_queue.is_empty(), "no login opt-in queued");
    w.advance(60_000);
    w.drain(50).await;
    assert_eq!(w.sim.attempts_for(&login_id), 1, "no second first message");
    assert!(w.queued_jobs().is_empty());
    let key = optin_key(&Identity::new(IdentityKind::LoginId, &login_id), PAGE);
    let o = w.store.get_optin(&key).await.unwrap().unwrap();
    assert_eq!((o.generation, o.state), (1, OptinState::Sent));
}

/// The token of a session started long ago (a stored session the page could replay).
fn s_register_old_session(sim: &SimHandle, now: i64) {
    sim.register_user_token(UserTokenRegistration {
        token: "EAAOldSession000".into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: GOOD_SCOPES.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: 0,
        valid: true,
        issued_at_ms: Some(now - 30 * DAY_MS),
    });
}

#[tokio::test]
async fn existing_optin_answers_its_state_and_deadline() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let login_id = expected_login_id();
    // The webhook came first, an hour ago.
    let opted_in = s.clock.now_ms() - 3_600_000;
    let events = lc_core::lifecycle::processor::Lifecycle::new(
        lc_core::lifecycle::processor::LifecyclePorts {
            table: lc_core::ports::Table::new(s.store.clone()),
            scheduler: Arc::new(lc_core::memory::MemoryScheduler::new()),
            jobs: Arc::new(MemoryQueue::new("outbound")),
            secrets: secrets(),
            bus: Arc::new(lc_core::ports::NoBus),
            clock: Arc::new(s.clock.clone()),
            metrics: Arc::new(lc_core::ports::NoMetrics),
        },
        lc_core::lifecycle::processor::LifecycleConfig::default(),
    );
    let body = optin_body(&format!(r#"{{"login_id":"{login_id}"}}"#), None, opted_in);
    let SplitOutcome::Events(evs) = split_body(body.as_bytes(), opted_in) else {
        panic!("webhook body parses");
    };
    for e in &evs {
        events.process(e).await.expect("processed");
    }
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let v = json(&resp);
    assert_eq!(v["state"], "pending");
    assert_eq!(v["deadline_at"], format_rfc3339_ms(opted_in + DAY_MS));
    let key = optin_key(&Identity::new(IdentityKind::LoginId, &login_id), PAGE);
    let optin = s.store.get_optin(&key).await.unwrap().unwrap();
    assert_eq!(optin.source, OptinSource::Webhook);
}

#[tokio::test]
async fn refused_tokens() {
    let s = setup().await;
    let now = s.sim.now_ms();
    user_token(&s.sim, "EAAExpired000", None, GOOD_SCOPES, now - 60_000);
    user_token(&s.sim, "EAAForeign000", Some("999999"), GOOD_SCOPES, 0);
    user_token(
        &s.sim,
        "EAANoScope000",
        None,
        &["public_profile", "email"],
        0,
    );
    s.sim.register_user_token(UserTokenRegistration {
        token: "EAARevoked000".into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: GOOD_SCOPES.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: 0,
        valid: false,
        issued_at_ms: None,
    });
    let cases = [
        ("EAAExpired000", 401, Some("expired")),
        ("EAAForeign000", 401, Some("foreign_app")),
        ("EAARevoked000", 401, Some("invalid")),
        ("EAAUnknown000", 401, Some("invalid")),
        ("EAANoScope000", 422, None),
    ];
    for (token, status, reason) in cases {
        let resp = post(&s.endpoint, &login_body(token, None), Some(ALLOWED)).await;
        assert_eq!(resp.status, status, "{token}: {}", resp.body);
        assert_clean(&resp, &[token]);
        let v = json(&resp);
        match reason {
            Some(r) => {
                assert_eq!(v["error"], "invalid_token");
                assert_eq!(v["reason"], r, "{token}");
            }
            None => {
                assert_eq!(v["error"], "not_opted_in");
                assert!(v["detail"].as_str().unwrap().contains("did not opt in"));
            }
        }
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(ALLOWED),
            "errors are readable by the allowed page too"
        );
    }
    assert!(s.queue.is_empty(), "nothing queued for a refused token");
}

#[tokio::test]
async fn graph_down_is_503() {
    // 1. Nothing listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let queue = Arc::new(MemoryQueue::new("events"));
    let ep = login_router(Login::new(
        graph(format!("http://127.0.0.1:{port}")),
        queue.clone(),
        Arc::new(MemoryStore::new()),
        secrets(),
        Arc::new(ManualClock::at(1_800_000_000_000)),
        Arc::new(MemoryMetrics::new()),
        config(),
    ));
    let resp = post(&ep, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(json(&resp)["error"], "unavailable");
    assert_clean(&resp, &[USER_TOKEN]);

    // 2. The simulator was there and went away.
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    s.sim.shutdown().await;
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_clean(&resp, &[USER_TOKEN]);
    assert!(queue.is_empty() && s.queue.is_empty());
}

#[tokio::test]
async fn queue_outage_is_503_and_counted() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    s.queue
        .set_fault(lc_core::memory::QueueFault::FailCalls(100));
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.body, lc_api::login::BODY_UNAVAILABLE);
    assert_clean(&resp, &[USER_TOKEN]);
    assert_eq!(s.metrics.take(), vec![Metric::EnqueueFailure]);
}

#[tokio::test]
async fn malformed_requests() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let bad = [
        "not json".to_string(),
        "{\"access_token\":".to_string(),
        "[]".into(),
        "{}".into(),
        r#"{"access_token":""}"#.into(),
        r#"{"access_token":42}"#.into(),
        format!(r#"{{"access_token":"{USER_TOKEN}","page_id":"abc"}}"#),
        format!(r#"{{"access_token":"{USER_TOKEN}","page_id":7}}"#),
        // A Page we hold no token for.
        format!(r#"{{"access_token":"{USER_TOKEN}","page_id":"999"}}"#),
    ];
    for body in &bad {
        let resp = post(&s.endpoint, body, None).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.body);
        assert_eq!(json(&resp)["error"], "bad_request");
        assert_clean(&resp, &[USER_TOKEN]);
    }
    let huge = format!(
        r#"{{"access_token":"{USER_TOKEN}","pad":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let resp = post(&s.endpoint, &huge, None).await;
    assert_eq!(resp.status, 413);
    assert_clean(&resp, &[USER_TOKEN]);
    assert_eq!(s.sim.stats().debug_token_calls, 0, "no Graph call for junk");
    assert!(s.queue.is_empty());
}

#[tokio::test]
async fn derivation_off_is_501_and_routes() {
    let s = setup_with(LoginConfig {
        derive_login_id: false,
        ..config()
    })
    .await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(resp.status, 501);
    assert!(resp.body.contains("webhook"), "{}", resp.body);
    assert_clean(&resp, &[USER_TOKEN]);
    assert!(s.queue.is_empty());

    let call =
        |method: &'static str, path: &'static str| call(&s.endpoint, method, path, None, b"");
    let r = call("GET", "/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, lc_api::login::BODY_NOT_FOUND)
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The login Lambda does not serve the webhook.
    assert_eq!(call("POST", "/webhook").await.status, 404);
    assert_eq!(call("OPTIONS", "/nope").await.status, 404);
    let r = call("GET", "/login").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, OPTIONS")));
    assert_eq!(r.body, lc_api::login::BODY_METHOD);
    let r = call("DELETE", "/").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, OPTIONS")));
    let r = call("HEAD", "/").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, OPTIONS")));
    // The page still renders (the webhook path and the plugin work without derivation).
    assert_eq!(call("GET", "/").await.status, 200);
}

#[tokio::test]
async fn cors_only_for_allowed_origins() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let preflight =
        |origin: &'static str| call(&s.endpoint, "OPTIONS", "/login", Some(origin), b"");
    let ok = preflight(ALLOWED).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(
        ok.header_list("access-control-allow-methods"),
        Some(vec!["POST", "OPTIONS"])
    );
    assert_eq!(
        ok.header_list("access-control-allow-headers"),
        Some(vec!["content-type"])
    );
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    // Header names in a list are case-insensitive.
    assert!(ok
        .header("vary")
        .is_some_and(|v| v.eq_ignore_ascii_case("Origin")));
    assert!(ok.body.is_empty());
    // The page's own origin preflights `/` the same way.
    let root = call(&s.endpoint, "OPTIONS", "/", Some(ALLOWED), b"").await;
    assert_eq!(root.status, 204);
    assert_eq!(root.header("access-control-allow-origin"), Some(ALLOWED));
    // Configured with a trailing slash; browsers send none.
    let ok2 = preflight("https://other-shop.example").await;
    assert_eq!(
        ok2.header("access-control-allow-origin"),
        Some("https://other-shop.example")
    );
    for other in [
        "https://evil.example",
        "null",
        "https://shop.example.evil.example",
    ] {
        let no = preflight(other).await;
        assert_eq!(no.status, 204);
        assert_eq!(no.header("access-control-allow-origin"), None, "{other}");
        assert_eq!(no.header("access-control-allow-methods"), None);
        assert_eq!(no.header("access-control-allow-headers"), None);
        assert_eq!(no.header("access-control-max-age"), None);
        assert!(no
            .header("vary")
            .is_some_and(|v| v.eq_ignore_ascii_case("Origin")));
    }
    // Case differences in the origin are the same site; the answer echoes what was sent.
    let upper = preflight("HTTPS://SHOP.EXAMPLE").await;
    assert_eq!(
        upper.header("access-control-allow-origin"),
        Some("HTTPS://SHOP.EXAMPLE")
    );

    let resp = post(&s.endpoint, &login_body(USER_TOKEN, None), Some(ALLOWED)).await;
    assert_eq!(resp.status, 202);
    assert_eq!(resp.header("access-control-allow-origin"), Some(ALLOWED));
    let resp = post(
        &s.endpoint,
        &login_body(USER_TOKEN, None),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(
        resp.status, 202,
        "the token is the credential; CORS only hides the answer"
    );
    assert_eq!(resp.header("access-control-allow-origin"), None);
    assert!(resp
        .header("vary")
        .is_some_and(|v| v.eq_ignore_ascii_case("Origin")));
    // 405s are readable by the allowed page too.
    let r = call(&s.endpoint, "GET", "/login", Some(ALLOWED), b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED));
}

/// The value of `attr="…"` on the element that has `marker` in its start tag.
fn attr<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} missing"));
    let tag_start = html[..at].rfind('<').unwrap();
    let tag_end = at + html[at..].find('>').unwrap();
    let tag = &html[tag_start..tag_end];
    let needle = format!("{attr}=\"");
    let v = tag
        .find(&needle)
        .unwrap_or_else(|| panic!("{attr} missing"))
        + needle.len();
    let len = tag[v..].find('"').unwrap();
    &tag[v..v + len]
}

#[tokio::test]
async fn page_has_ids_a_signed_ref_and_no_secret() {
    let s = setup().await;
    let resp = get_page(&s.endpoint, &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type, "text/html; charset=utf-8");
    let html = &resp.body;
    assert_clean(&resp, &[]);
    assert!(html.contains(&format!("data-app-id=\"{APP_ID}\"")));
    assert!(html.contains(&format!("data-page-id=\"{PAGE}\"")));
    assert!(html.contains("data-reset=\"false\""));
    assert!(html.contains(&format!("src=\"{SDK_URL}\"")));
    assert!(html.contains("user_messenger_contact"));
    assert!(html.contains("messenger_page_id"));
    assert_eq!(
        attr(html, "class=\"fb-send-to-messenger\"", "messenger_app_id"),
        APP_ID
    );
    assert_eq!(
        attr(html, "class=\"fb-send-to-messenger\"", "page_id"),
        PAGE
    );
    let r = attr(html, "class=\"fb-send-to-messenger\"", "data-ref");
    assert!(r.starts_with("lcr1s_"), "{r}");
    let keys = Keyring::new().with_key(3, REF_KEY);
    let now_secs = s.clock.now_ms() / 1000;
    match refs::verify(r, &keys, now_secs) {
        RefCheck::Valid {
            payload,
            expires_at_secs,
            key_id,
        } => {
            assert_eq!(key_id, 3);
            assert_eq!(expires_at_secs, now_secs + 86_400);
            let p = String::from_utf8(payload).unwrap();
            assert!(
                p.starts_with("web.") && p.ends_with(&format!(".{now_secs}")),
                "{p}"
            );
        }
        other => panic!("ref not accepted: {other:?}"),
    }
    assert!(matches!(
        refs::verify(r, &keys, now_secs + 86_400),
        RefCheck::Expired { .. }
    ));
    let again = get_page(&s.endpoint, &[]).await;
    assert_ne!(
        attr(&again.body, "class=\"fb-send-to-messenger\"", "data-ref"),
        r,
        "one ref per page load"
    );

    let csp = resp.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self' 'sha256-") && csp.contains("https://connect.facebook.net"),
        "{csp}"
    );
    assert!(csp.contains("frame-src https://*.facebook.com"), "{csp}");
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));

    let reset = get_page(&s.endpoint, &[("reset".into(), "1".into())]).await;
    assert!(reset.body.contains("data-reset=\"true\""));
    let not_reset = get_page(&s.endpoint, &[("reset".into(), "yes".into())]).await;
    assert!(not_reset.body.contains("data-reset=\"false\""));
}

#[tokio::test]
async fn page_values_are_html_escaped() {
    let s = setup_with(LoginConfig {
        default_page_id: "100\"><script>alert(1)</script>".into(),
        graph_version: "v1<b>".into(),
        ..config()
    })
    .await;
    let resp = get_page(&s.endpoint, &[]).await;
    assert_eq!(resp.status, 200);
    assert!(!resp.body.contains("<script>alert(1)"));
    assert!(resp
        .body
        .contains("100&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(resp.body.contains("v1&lt;b&gt;"));
}

// ---------- The Lambda layer: Function URL events through lambda_http ----------

fn function_url_event(
    method: &str,
    path: &str,
    origin: Option<&str>,
    body: Option<&str>,
) -> String {
    let mut headers = serde_json::json!({"content-type": "application/json"});
    if let Some(o) = origin {
        headers["origin"] = serde_json::Value::String(o.into());
    }
    let mut ev = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.1", "userAgent": "Mozilla/5.0"},
            "requestId": "req-1", "routeKey": "$default", "stage": "$default",
            "time": "21/Nov/2026:06:00:00 +0000", "timeEpoch": 1795068000000u64
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        ev["body"] = serde_json::Value::String(b.into());
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

#[tokio::test]
async fn function_url_post_and_page() {
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let body = login_body(USER_TOKEN, None);
    let ev = function_url_event("POST", "/login", Some(ALLOWED), Some(&body));
    let resp = lambda(&s.endpoint, &ev).await;
    assert_eq!(resp.status(), 202, "{}", text(resp.body()));
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ALLOWED)
    );
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert!(!text(resp.body()).contains(USER_TOKEN));
    assert_eq!(s.queue.len(), 1);

    // Base64-encoded body (the Function URL encodes some content types).
    let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
    let mut ev: serde_json::Value =
        serde_json::from_str(&function_url_event("POST", "/login", None, Some(&b64))).unwrap();
    ev["isBase64Encoded"] = serde_json::Value::Bool(true);
    let resp = lambda(&s.endpoint, &ev.to_string()).await;
    assert_eq!(resp.status(), 202, "{}", text(resp.body()));

    let ev = function_url_event("GET", "/", None, None);
    let resp = lambda(&s.endpoint, &ev).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("content-security-policy"));
    assert!(text(resp.body()).contains("fb-send-to-messenger"));

    let ev = function_url_event("OPTIONS", "/login", Some("https://evil.example"), None);
    let resp = lambda(&s.endpoint, &ev).await;
    assert_eq!(resp.status(), 204);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
}

// ---------- Convergence: callback and webhook for the same person ----------
//
// The simulator plays Meta: `login_connect` computes the person's `login_id` with its own
// implementation of Meta's rule (keyed by the client token it is given here) and registers it
// as Meta would; the webhook carries that value. Our callback derives its own. They converge
// on one opt-in and one send only if the two computations agree, so a wrong derivation fails
// these tests instead of being registered in the simulator as if it were Meta's.

#[derive(Clone, Copy, Debug)]
enum Order {
    CallbackThenWebhook,
    WebhookThenCallback,
}

struct Measured {
    optins_created: usize,
    optin_items: usize,
    jobs: usize,
    /// Send attempts the simulator saw for Meta's login_id (any outcome).
    attempts: usize,
    /// Send attempts for any recipient: a send to a wrongly derived id counts here.
    all_attempts: usize,
    messages: usize,
    source: OptinSource,
    confirmed: bool,
    /// What the confirm check made of the opt-in an hour later, if it has one.
    confirm_check: Option<DeadlineOutcome>,
}

async fn converge(order: Order) -> Measured {
    let w = World::new(2_000).await;
    // Meta's app: the same id and client token as the login function's secret.
    w.sim.update_config(ConfigUpdate {
        client_token: Some(CLIENT_TOKEN.into()),
        ..ConfigUpdate::default()
    });
    let events_queue = Arc::new(MemoryQueue::new("events"));
    let login = login_router(Login::new(
        graph(w.sim.base_url()),
        events_queue.clone(),
        w.store.clone(),
        secrets(),
        Arc::new(w.clock.clone()),
        Arc::new(MemoryMetrics::new()),
        config(),
    ));
    // The person accepts user_messenger_contact in the login dialog; Meta makes the login_id
    // before the flow finishes, and the token is issued now.
    let meta_login_id = w.sim.login_connect(ASID, PAGE);
    user_token(&w.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let mut outcomes: Vec<Processed> = Vec::new();

    for step in match order {
        Order::CallbackThenWebhook => ["callback", "webhook"],
        Order::WebhookThenCallback => ["webhook", "callback"],
    } {
        if step == "callback" {
            let resp = post(&login, &login_body(USER_TOKEN, None), None).await;
            assert_eq!(resp.status, 202, "{}", resp.body);
            let expected_state = match order {
                Order::CallbackThenWebhook => "queued",
                Order::WebhookThenCallback => "pending",
            };
            assert_eq!(json(&resp)["state"], expected_state, "{order:?}");
            let received = events_queue.receive(10);
            assert_eq!(received.len(), 1);
            for m in received {
                outcomes.push(w.events.process_body(&m.body).await.expect("processed"));
                events_queue.delete(&m.receipt_handle);
            }
        } else {
            // What `World::webhook` does with Meta's body, keeping each event's outcome.
            let body = optin_body(
                &format!(r#"{{"login_id":"{meta_login_id}"}}"#),
                None,
                w.now(),
            );
            let SplitOutcome::Events(events) = split_body(body.as_bytes(), w.now()) else {
                panic!("webhook body parses");
            };
            for e in &events {
                outcomes.push(w.events.process(e).await.expect("processed"));
            }
        }
        // The other path arrives a few seconds later.
        w.advance(3_000);
    }

    let optins_created = outcomes
        .iter()
        .filter(|o| matches!(o, Processed::OptinCreated { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, Processed::OptinDuplicate { .. }))
        .count();
    assert_eq!(duplicates, 1, "{order:?}: {outcomes:?}");
    let jobs = w.queued_jobs().len();
    let key = optin_key(&Identity::new(IdentityKind::LoginId, &meta_login_id), PAGE);
    let optin = w.store.get_optin(&key).await.unwrap();
    let optin_items = usize::from(optin.is_some());
    let optin = optin.expect("the opt-in exists under Meta's login_id");
    let (_, _) = w.drain(50).await;
    let after = w.store.get_optin(&key).await.unwrap().unwrap();
    assert_eq!(after.state.as_str(), "sent", "{order:?}");
    // Once sent, a later login (the page now reports the grant as existing) changes nothing.
    let resp = post(
        &login,
        &login_body_grant(USER_TOKEN, None, Some("existing")),
        None,
    )
    .await;
    assert_eq!(json(&resp)["state"], "awaiting_webhook");
    assert!(events_queue.is_empty());

    // An hour after the login, the confirm check of a login-started opt-in.
    let confirm = w
        .scheduler
        .get_schedule(&optin.confirm_schedule_name())
        .await
        .unwrap();
    let confirm_check = match confirm {
        None => None,
        Some(schedule) => {
            // An hour after the login (Scheduler keeps whole seconds).
            assert_eq!(
                schedule.at_ms,
                (optin.opted_in_at_ms + 3_600_000).div_euclid(1000) * 1000
            );
            let check: DeadlineCheck = serde_json::from_str(&schedule.input).unwrap();
            w.advance(3_600_000);
            Some(w.deadline(2_000).check(&check).await.unwrap())
        }
    };
    Measured {
        optins_created,
        optin_items,
        jobs,
        attempts: w.sim.attempts_for(&meta_login_id),
        all_attempts: w.sim.attempts().len(),
        messages: w.sim.messages().len(),
        source: optin.source,
        confirmed: after.confirmed_at_ms.is_some(),
        confirm_check,
    }
}

#[tokio::test]
async fn convergence_callback_then_webhook() {
    let m = converge(Order::CallbackThenWebhook).await;
    println!(
        "convergence callback_then_webhook optins={} attempts={} messages={}",
        m.optins_created, m.all_attempts, m.messages
    );
    assert_eq!(
        (m.optins_created, m.optin_items, m.jobs),
        (1, 1, 1),
        "one opt-in, one job"
    );
    assert_eq!(
        (m.attempts, m.all_attempts, m.messages),
        (1, 1, 1),
        "one send attempt, to Meta's login_id"
    );
    assert_eq!(m.source, OptinSource::Login);
    assert!(
        m.confirmed,
        "the webhook confirmed the login-started opt-in"
    );
    assert_eq!(m.confirm_check, Some(DeadlineOutcome::LoginConfirmed));
}

#[tokio::test]
async fn convergence_webhook_then_callback() {
    let m = converge(Order::WebhookThenCallback).await;
    println!(
        "convergence webhook_then_callback optins={} attempts={} messages={}",
        m.optins_created, m.all_attempts, m.messages
    );
    assert_eq!((m.optins_created, m.optin_items, m.jobs), (1, 1, 1));
    assert_eq!((m.attempts, m.all_attempts, m.messages), (1, 1, 1));
    assert_eq!(m.source, OptinSource::Webhook);
    assert!(
        !m.confirmed,
        "a webhook opt-in is Meta's own: nothing to confirm"
    );
    assert_eq!(
        m.confirm_check, None,
        "no confirm check without a login start"
    );
}

/// Derivation on, and the derived login_id never meets a webhook opt-in (Meta's value differs,
/// or Meta never sent one): an hour after the login the confirm check counts it, and only then.
#[tokio::test]
async fn unconfirmed_login_optin_is_counted_after_an_hour() {
    let w = World::new(2_000).await;
    // Meta's client token differs from the one in our secret: our derivation is not Meta's.
    w.sim.update_config(ConfigUpdate {
        client_token: Some("meta-knows-another-client-token".into()),
        ..ConfigUpdate::default()
    });
    let meta_login_id = w.sim.login_connect(ASID, PAGE);
    assert_ne!(meta_login_id, expected_login_id());
    user_token(&w.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let events_queue = Arc::new(MemoryQueue::new("events"));
    let login = login_router(Login::new(
        graph(w.sim.base_url()),
        events_queue.clone(),
        w.store.clone(),
        secrets(),
        Arc::new(w.clock.clone()),
        Arc::new(MemoryMetrics::new()),
        config(),
    ));
    let resp = post(&login, &login_body(USER_TOKEN, None), None).await;
    assert_eq!(json(&resp)["state"], "queued", "{}", resp.body);
    for m in events_queue.receive(10) {
        w.events.process_body(&m.body).await.expect("processed");
        events_queue.delete(&m.receipt_handle);
    }
    // Meta's webhook names Meta's id: a different opt-in, which confirms nothing of ours.
    w.advance(3_000);
    w.webhook(&optin_body(
        &format!(r#"{{"login_id":"{meta_login_id}"}}"#),
        None,
        w.now(),
    ))
    .await;
    let ours = optin_key(
        &Identity::new(IdentityKind::LoginId, expected_login_id()),
        PAGE,
    );
    let optin = w.store.get_optin(&ours).await.unwrap().unwrap();
    assert_eq!(optin.confirmed_at_ms, None);
    let schedule = w
        .scheduler
        .get_schedule(&optin.confirm_schedule_name())
        .await
        .unwrap()
        .expect("a login-started opt-in has a confirm check");
    assert_eq!(
        schedule.at_ms,
        (optin.opted_in_at_ms + 3_600_000).div_euclid(1000) * 1000,
        "an hour after the login (Scheduler keeps whole seconds)"
    );
    w.metrics.take();
    w.advance(3_600_000);
    let input: serde_json::Value = serde_json::from_str(&schedule.input).unwrap();
    // As Scheduler fires it: the schedule's own JSON input into the deadline function.
    let out = w.deadline(2_000).handle_input(&input).await.unwrap();
    assert_eq!(out, DeadlineOutcome::LoginUnconfirmed);
    assert_eq!(w.metrics.take(), vec![Metric::LoginOptinUnconfirmed]);
}

/// The business's own id rides along with the login, signed by its backend: a valid one
/// reaches the queued event (with the ASID); a forged, expired or unsigned one is a 400 and
/// nothing is queued.
#[tokio::test]
async fn a_signed_external_id_rides_along_and_a_forged_one_is_refused() {
    use lc_core::people::external_id::mint;
    let s = setup().await;
    user_token(&s.sim, USER_TOKEN, None, GOOD_SCOPES, 0);
    let now_secs = s.clock.now_ms() / 1000;
    let body = |x: &str| {
        serde_json::json!({"access_token": USER_TOKEN, "grant": "new", "external_id": x})
            .to_string()
    };
    let refused = [
        ("user-42".to_string(), "not signed"),
        (
            mint(2, &[0x11; 32], "user-42", now_secs + 600).expect("mint"),
            "not signed",
        ),
        (
            mint(9, &EXTERNAL_ID_KEY, "user-42", now_secs + 600).expect("mint"),
            "not signed",
        ),
        (
            mint(2, &EXTERNAL_ID_KEY, "user-42", now_secs).expect("mint"),
            "expired",
        ),
    ];
    for (x, why) in refused {
        let resp = post(&s.endpoint, &body(&x), None).await;
        assert_eq!(resp.status, 400, "{x}: {}", resp.body);
        assert!(
            json(&resp)["detail"]
                .as_str()
                .is_some_and(|d| d.contains(why)),
            "{}",
            resp.body
        );
        assert_clean(&resp, &[USER_TOKEN]);
    }
    assert!(
        s.queue.bodies().is_empty(),
        "nothing queued for a refused id"
    );
    assert_eq!(
        s.sim.stats().debug_token_calls,
        0,
        "refused before Graph is asked"
    );

    let signed = mint(2, &EXTERNAL_ID_KEY, "user-42", now_secs + 600).expect("mint");
    let resp = post(&s.endpoint, &body(&signed), None).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let bodies = s.queue.bodies();
    assert_eq!(bodies.len(), 1);
    let event = InboundEvent::from_json(&bodies[0]).expect("an inbound event");
    let item: serde_json::Value = serde_json::from_str(event.item.get()).expect("item");
    assert_eq!(
        item["login"],
        serde_json::json!({"app_id": APP_ID, "asid": ASID, "external_id": "user-42"})
    );
}
