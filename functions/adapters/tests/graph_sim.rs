//! GraphClient against graph-sim over real HTTP (the simulator runs in-process on 127.0.0.1).

use std::time::{Duration, Instant};

use graph_sim::{
    ConfigUpdate, Faults, NotificationTokenRegistration, OptOut, SimConfig, SimHandle,
    UserTokenRegistration, DAY_MS,
};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::ports::graph::{
    GraphApi, MessagingType, OutgoingMessage, PageAuth, QuickReply, Recipient, SendApi, SendError,
    SendOk, SendRequest,
};
use lc_core::sending::errors::{GraphError, TransportFailure};
use lc_core::support::secret::Secret;
use serde_json::json;

const PAGE: &str = "1001";
const TOKEN: &str = "EAAsimPageToken1001abcdef";
const APP_SECRET: &str = "sim-app-secret";
const APP_ID: &str = "100000000000001";
const USER_TOKEN: &str = "EAAuserTokenForDebug777";

/// Every string that must never appear in an error's text.
const SECRETS: [&str; 3] = [TOKEN, APP_SECRET, USER_TOKEN];

async fn sim() -> SimHandle {
    graph_sim::start(SimConfig::default().with_page(PAGE, TOKEN))
        .await
        .expect("start graph-sim")
}

/// Both hosts (graph.facebook.com and graph.instagram.com) at the simulator.
fn config(base_url: String) -> GraphConfig {
    GraphConfig::at(base_url)
}

fn client(sim: &SimHandle) -> GraphClient {
    GraphClient::new(config(sim.base_url())).expect("client")
}

fn auth() -> PageAuth {
    PageAuth {
        access_token: Secret::new(TOKEN),
        app_secret: None,
    }
}

fn request(recipient: Recipient, messaging_type: MessagingType, text: &str) -> SendRequest {
    SendRequest {
        api: SendApi::Facebook,
        page_id: PAGE.to_owned(),
        recipient,
        messaging_type,
        tag: None,
        message: OutgoingMessage {
            text: Some(text.to_owned()),
            ..OutgoingMessage::default()
        },
    }
}

fn login(id: &str) -> SendRequest {
    request(
        Recipient::LoginId(id.to_owned()),
        MessagingType::Update,
        "Welcome!",
    )
}

fn phone() -> SendRequest {
    request(
        Recipient::PhoneNumber {
            number: "+1(212)555-2368".to_owned(),
            name: None,
        },
        MessagingType::Update,
        "hi",
    )
}

/// Asserts no secret shows in the error's Debug text or its GraphError's Display text.
fn assert_clean(err: &SendError) {
    let mut texts = vec![format!("{err:?}")];
    match err {
        SendError::Graph { error, .. } => texts.push(error.to_string()),
        SendError::Transport { detail, .. } => texts.push(detail.clone()),
    }
    for text in &texts {
        assert!(!text.contains("access_token="), "URL leaked in {text:?}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "secret leaked in {text:?}");
        }
    }
}

/// The GraphError of a failed send (panics on success or a transport failure).
fn graph_error<T: std::fmt::Debug>(
    result: Result<T, SendError>,
) -> (GraphError, lc_core::sending::usage::Usage) {
    match result {
        Err(e @ SendError::Graph { .. }) => {
            assert_clean(&e);
            match e {
                SendError::Graph { error, usage } => (error, usage),
                SendError::Transport { .. } => unreachable!(),
            }
        }
        other => panic!("expected a Graph error, got {other:?}"),
    }
}

fn code(err: &GraphError) -> (Option<i64>, Option<i64>) {
    (err.code, err.subcode)
}

fn transport_failure<T: std::fmt::Debug>(result: Result<T, SendError>) -> TransportFailure {
    match result {
        Err(e @ SendError::Transport { .. }) => {
            assert_clean(&e);
            match e {
                SendError::Transport { failure, .. } => failure,
                SendError::Graph { .. } => unreachable!(),
            }
        }
        other => panic!("expected a transport failure, got {other:?}"),
    }
}

async fn send_ok(c: &GraphClient, req: &SendRequest) -> SendOk {
    match c.send(&auth(), req).await {
        Ok(ok) => ok,
        Err(e) => panic!("send failed: {e:?}"),
    }
}

// ----- happy paths -----------------------------------------------------------------------------

#[tokio::test]
async fn psid_recipient_with_quick_replies() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_person(PAGE, "psid-1", sim.now_ms());
    let mut req = request(
        Recipient::Id("psid-1".into()),
        MessagingType::Response,
        "Pick one",
    );
    req.message.quick_replies = vec![
        QuickReply {
            content_type: "text".into(),
            title: Some("Yes".into()),
            payload: Some("YES".into()),
            image_url: None,
        },
        QuickReply {
            content_type: "user_email".into(),
            title: None,
            payload: None,
            image_url: None,
        },
    ];
    let ok = send_ok(&c, &req).await;
    assert_eq!(ok.recipient_id.as_deref(), Some("psid-1"));
    assert!(ok.message_id.starts_with("m_"), "{}", ok.message_id);

    let sent = sim.messages();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.page_id, PAGE);
    assert_eq!(m.recipient, json!({"id": "psid-1"}));
    assert_eq!(m.messaging_type, "RESPONSE");
    assert_eq!(m.tag, None);
    assert_eq!(m.message_id, ok.message_id);
    assert_eq!(
        m.message,
        json!({"text": "Pick one", "quick_replies": [
            {"content_type": "text", "title": "Yes", "payload": "YES"},
            {"content_type": "user_email"}
        ]})
    );
}

#[tokio::test]
async fn psid_with_human_agent_tag_outside_the_standard_window() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_person(PAGE, "psid-2", sim.now_ms() - 2 * DAY_MS);
    // Meta only accepts HUMAN_AGENT from a Page with the approved Human Agent feature.
    sim.update_page_features(graph_sim::PageFeaturesUpdate {
        page_id: PAGE.into(),
        human_agent: Some(true),
        ..Default::default()
    });
    let mut req = request(
        Recipient::Id("psid-2".into()),
        MessagingType::MessageTag,
        "An agent replies",
    );
    req.tag = Some("HUMAN_AGENT".into());
    let ok = send_ok(&c, &req).await;
    assert_eq!(ok.recipient_id.as_deref(), Some("psid-2"));
    let sent = sim.messages();
    assert_eq!(sent[0].messaging_type, "MESSAGE_TAG");
    assert_eq!(sent[0].tag.as_deref(), Some("HUMAN_AGENT"));
    assert_eq!(sent[0].message, json!({"text": "An agent replies"}));
}

#[tokio::test]
async fn login_id_recipient() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_login_id("login-abc", Some(PAGE), sim.now_ms());
    let ok = send_ok(&c, &login("login-abc")).await;
    assert_eq!(ok.recipient_id, None);
    let sent = sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient, json!({"login_id": "login-abc"}));
    assert_eq!(sent[0].messaging_type, "UPDATE");
    assert_eq!(sent[0].tag, None);
    assert_eq!(sent[0].message, json!({"text": "Welcome!"}));
}

#[tokio::test]
async fn user_ref_recipient() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_user_ref("ref-1", None, sim.now_ms());
    let ok = send_ok(
        &c,
        &request(
            Recipient::UserRef("ref-1".into()),
            MessagingType::Update,
            "Thanks for opting in",
        ),
    )
    .await;
    assert_eq!(ok.recipient_id, None);
    let sent = sim.messages();
    assert_eq!(sent[0].recipient, json!({"user_ref": "ref-1"}));
    assert_eq!(sent[0].messaging_type, "UPDATE");
    assert_eq!(sent[0].message, json!({"text": "Thanks for opting in"}));
}

#[tokio::test]
async fn phone_number_recipient_with_and_without_name() {
    let sim = sim().await;
    let c = client(&sim);
    let ok = send_ok(&c, &phone()).await;
    assert_eq!(ok.recipient_id, None);
    let mut named = phone();
    named.recipient = Recipient::PhoneNumber {
        number: "+1(212)555-2368".into(),
        name: Some("Ada Lovelace".into()),
    };
    send_ok(&c, &named).await;
    let sent = sim.messages();
    assert_eq!(
        sent[0].recipient,
        json!({"phone_number": "+1(212)555-2368"})
    );
    assert_eq!(
        sent[1].recipient,
        json!({"phone_number": "+1(212)555-2368",
               "name": {"first_name": "Ada", "last_name": "Lovelace"}})
    );
    assert_eq!(sent[1].message, json!({"text": "hi"}));
}

#[tokio::test]
async fn notification_messages_token_recipient() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_notification_token(NotificationTokenRegistration {
        token: "nmt-1".into(),
        page_id: PAGE.into(),
        active: true,
        psid: None,
    });
    let ok = send_ok(
        &c,
        &request(
            Recipient::NotificationToken("nmt-1".into()),
            MessagingType::Update,
            "Weekly deals",
        ),
    )
    .await;
    assert_eq!(ok.recipient_id, None);
    let sent = sim.messages();
    assert_eq!(
        sent[0].recipient,
        json!({"notification_messages_token": "nmt-1"})
    );
    assert_eq!(sent[0].message, json!({"text": "Weekly deals"}));
}

#[tokio::test]
async fn usage_headers_are_parsed_on_success() {
    let sim = sim().await;
    sim.update_config(ConfigUpdate {
        rate_limit_per_sec: Some(4),
        ..ConfigUpdate::default()
    });
    let c = client(&sim);
    let ok = send_ok(&c, &phone()).await;
    // One accepted send out of 4 per second: 25 %.
    assert_eq!(ok.usage.max_percent, 25);
    assert_eq!(ok.usage.regain_access_minutes, None);
}

// ----- Graph errors ----------------------------------------------------------------------------

#[tokio::test]
async fn unknown_login_id() {
    let sim = sim().await;
    let c = client(&sim);
    let (e, _) = graph_error(c.send(&auth(), &login("nobody")).await);
    assert_eq!(code(&e), (Some(100), Some(2018001)));
    assert_eq!(e.http_status, 400);
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn login_id_only_once() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_login_id("login-once", Some(PAGE), sim.now_ms());
    send_ok(&c, &login("login-once")).await;
    let (e, _) = graph_error(c.send(&auth(), &login("login-once")).await);
    assert_eq!(code(&e), (Some(10), Some(2018278)));
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn login_id_with_a_tag_is_refused() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_login_id("login-tag", Some(PAGE), sim.now_ms());
    let mut req = login("login-tag");
    req.messaging_type = MessagingType::MessageTag;
    req.tag = Some("HUMAN_AGENT".into());
    let (e, _) = graph_error(c.send(&auth(), &req).await);
    assert_eq!(code(&e), (Some(100), None));
    assert!(e.message.contains("login_id"), "{}", e.message);
    // Not used up: the untagged first message still goes through.
    send_ok(&c, &login("login-tag")).await;
}

#[tokio::test]
async fn psid_outside_the_window() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_person(PAGE, "psid-old", sim.now_ms() - DAY_MS - 60_000);
    let (e, _) = graph_error(
        c.send(
            &auth(),
            &request(
                Recipient::Id("psid-old".into()),
                MessagingType::Response,
                "late",
            ),
        )
        .await,
    );
    assert_eq!(code(&e), (Some(10), Some(2018278)));
}

#[tokio::test]
async fn opted_out_psid() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_person(PAGE, "psid-out", sim.now_ms());
    sim.opt_out(OptOut {
        page_id: Some(PAGE.into()),
        psid: Some("psid-out".into()),
        ..OptOut::default()
    })
    .expect("opt out");
    let (e, _) = graph_error(
        c.send(
            &auth(),
            &request(
                Recipient::Id("psid-out".into()),
                MessagingType::Response,
                "hello?",
            ),
        )
        .await,
    );
    assert_eq!(code(&e), (Some(551), Some(1545041)));
}

#[tokio::test]
async fn invalid_page_token() {
    let sim = sim().await;
    let c = client(&sim);
    let bad = PageAuth {
        access_token: Secret::new("EAAnotARegisteredToken999"),
        app_secret: None,
    };
    let err = c.send(&bad, &phone()).await.expect_err("must fail");
    let text = format!("{err:?}");
    assert!(!text.contains("EAAnotARegisteredToken999"), "{text}");
    let (e, _) = graph_error::<SendOk>(Err(err));
    assert_eq!(code(&e).0, Some(190));
    assert_eq!(e.error_type.as_deref(), Some("OAuthException"));
}

#[tokio::test]
async fn rate_limit_reports_full_usage() {
    let sim = sim().await;
    sim.update_config(ConfigUpdate {
        rate_limit_per_sec: Some(1),
        ..ConfigUpdate::default()
    });
    let c = client(&sim);
    send_ok(&c, &phone()).await;
    let (e, usage) = graph_error(c.send(&auth(), &phone()).await);
    assert_eq!(code(&e).0, Some(613));
    assert_eq!(e.is_transient, Some(true));
    assert!(usage.max_percent >= 100, "{usage:?}");
    assert_eq!(usage.regain_access_minutes, Some(1));
    assert!(usage.pace_default().is_some());
}

// ----- appsecret_proof -------------------------------------------------------------------------

#[tokio::test]
async fn appsecret_proof_required() {
    let sim = sim().await;
    sim.update_config(ConfigUpdate {
        require_appsecret_proof: Some(true),
        ..ConfigUpdate::default()
    });
    // The client sends a proof exactly when the sender hands it the app secret.
    let with_proof = client(&sim);
    let auth_with_secret = PageAuth {
        access_token: Secret::new(TOKEN),
        app_secret: Some(Secret::new(APP_SECRET)),
    };
    send_ok_with(&with_proof, &auth_with_secret).await;

    // No app secret handed: no proof, refused.
    let (e, _) = graph_error(with_proof.send(&auth(), &phone()).await);
    assert_eq!(code(&e), (Some(100), None));
    assert!(e.message.contains("appsecret_proof"), "{}", e.message);

    // A proof keyed with the wrong secret: refused.
    let wrong = PageAuth {
        access_token: Secret::new(TOKEN),
        app_secret: Some(Secret::new("not-the-app-secret")),
    };
    let (e, _) = graph_error(with_proof.send(&wrong, &phone()).await);
    assert_eq!(code(&e), (Some(100), None));
    assert!(
        e.message.contains("Invalid appsecret_proof"),
        "{}",
        e.message
    );
    assert_eq!(sim.messages().len(), 1);
}

async fn send_ok_with(c: &GraphClient, auth: &PageAuth) {
    if let Err(e) = c.send(auth, &phone()).await {
        panic!("send failed: {e:?}");
    }
}

#[tokio::test]
async fn appsecret_proof_accepted_when_not_required() {
    let sim = sim().await;
    let c = client(&sim);
    let a = PageAuth {
        access_token: Secret::new(TOKEN),
        app_secret: Some(Secret::new(APP_SECRET)),
    };
    send_ok_with(&c, &a).await;
}

// ----- faults and transport --------------------------------------------------------------------

#[tokio::test]
async fn injected_5xx_is_a_graph_error() {
    let sim = sim().await;
    sim.set_faults(Faults {
        error_5xx_ratio: 1.0,
        ..Faults::default()
    })
    .expect("faults");
    let c = client(&sim);
    let (e, _) = graph_error(c.send(&auth(), &phone()).await);
    assert_eq!(e.http_status, 500);
    assert_eq!(code(&e).0, Some(2));
    assert_eq!(e.is_transient, Some(true));
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn injected_timeout_is_a_transport_timeout() {
    let sim = sim().await;
    sim.set_faults(Faults {
        timeout_ratio: 1.0,
        timeout_ms: 5_000,
        ..Faults::default()
    })
    .expect("faults");
    let c = GraphClient::new(GraphConfig {
        timeout: Duration::from_millis(300),
        ..config(sim.base_url())
    })
    .expect("client");
    let started = Instant::now();
    let failure = transport_failure(c.send(&auth(), &phone()).await);
    assert_eq!(failure, TransportFailure::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn connection_refused_is_a_transport_connect() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let c = GraphClient::new(config(format!("http://127.0.0.1:{port}"))).expect("client");
    let result = c.send(&auth(), &phone()).await;
    if let Err(SendError::Transport { detail, .. }) = &result {
        assert!(detail.starts_with("send: connect: "), "{detail}");
    }
    let failure = transport_failure(result);
    assert_eq!(failure, TransportFailure::Connect);
    let failure = transport_failure(
        c.debug_token(
            &Secret::new(format!("{APP_ID}|{APP_SECRET}")),
            &Secret::new(USER_TOKEN),
        )
        .await,
    );
    assert_eq!(failure, TransportFailure::Connect);
}

// ----- debug_token -----------------------------------------------------------------------------

fn app_token() -> Secret {
    Secret::new(format!("{APP_ID}|{APP_SECRET}"))
}

fn user_token(token: &str, app_id: Option<&str>, expires_at_ms: i64) -> UserTokenRegistration {
    UserTokenRegistration {
        token: token.into(),
        app_id: app_id.map(str::to_owned),
        user_id: "asid-42".into(),
        scopes: vec!["public_profile".into(), "user_messenger_contact".into()],
        expires_at_ms,
        valid: true,
        issued_at_ms: None,
    }
}

#[tokio::test]
async fn debug_token_valid() {
    let sim = sim().await;
    let c = client(&sim);
    let expires_ms = sim.now_ms() + 3_600_000;
    sim.register_user_token(user_token(USER_TOKEN, None, expires_ms));
    let info = c
        .debug_token(&app_token(), &Secret::new(USER_TOKEN))
        .await
        .expect("debug_token");
    assert!(info.is_valid);
    assert_eq!(info.app_id.as_deref(), Some(APP_ID));
    assert_eq!(info.user_id.as_deref(), Some("asid-42"));
    assert_eq!(
        info.scopes,
        vec![
            "public_profile".to_owned(),
            "user_messenger_contact".to_owned()
        ]
    );
    assert_eq!(info.expires_at_secs, Some(expires_ms.div_euclid(1000)));
    assert_eq!(info.error_message, None);

    // A token that never expires.
    sim.register_user_token(user_token("EAAforeverToken0001", None, 0));
    let info = c
        .debug_token(&app_token(), &Secret::new("EAAforeverToken0001"))
        .await
        .expect("debug_token");
    assert!(info.is_valid);
    assert_eq!(info.expires_at_secs, Some(0));

    // `issued_at` is read (the login checks it is recent).
    let issued_ms = sim.now_ms() - 7 * 86_400_000;
    sim.register_user_token(UserTokenRegistration {
        issued_at_ms: Some(issued_ms),
        ..user_token("EAAoldToken0001", None, 0)
    });
    let info = c
        .debug_token(&app_token(), &Secret::new("EAAoldToken0001"))
        .await
        .expect("debug_token");
    assert_eq!(info.issued_at_secs, Some(issued_ms.div_euclid(1000)));
}

#[tokio::test]
async fn debug_token_expired() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_user_token(user_token(USER_TOKEN, None, sim.now_ms() - 1_000));
    let info = c
        .debug_token(&app_token(), &Secret::new(USER_TOKEN))
        .await
        .expect("debug_token");
    assert!(!info.is_valid);
    let msg = info.error_message.expect("error message");
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test]
async fn debug_token_foreign_app() {
    let sim = sim().await;
    let c = client(&sim);
    sim.register_user_token(user_token(USER_TOKEN, Some("999999"), 0));
    let info = c
        .debug_token(&app_token(), &Secret::new(USER_TOKEN))
        .await
        .expect("debug_token");
    assert!(
        info.is_valid,
        "debug_token says valid; the caller checks app_id"
    );
    assert_eq!(info.app_id.as_deref(), Some("999999"));
}

#[tokio::test]
async fn debug_token_unknown_token() {
    let sim = sim().await;
    let c = client(&sim);
    let info = c
        .debug_token(&app_token(), &Secret::new(USER_TOKEN))
        .await
        .expect("debug_token");
    assert!(!info.is_valid);
    assert!(info.error_message.is_some());
    assert_eq!(info.user_id, None);
}

#[tokio::test]
async fn debug_token_with_a_wrong_app_token_is_a_graph_error() {
    let sim = sim().await;
    let c = client(&sim);
    let (e, _) = graph_error(
        c.debug_token(
            &Secret::new(format!("{APP_ID}|wrong-app-secret-xyz")),
            &Secret::new(USER_TOKEN),
        )
        .await,
    );
    assert_eq!(code(&e).0, Some(190));
    assert_eq!(e.http_status, 400);
}

#[test]
fn default_config() {
    let c = GraphConfig::default();
    assert_eq!(c.base_url, "https://graph.facebook.com");
    assert_eq!(c.instagram_base_url, "https://graph.instagram.com");
    assert_eq!(c.api_version, "v25.0");
    assert_eq!(c.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.timeout, Duration::from_secs(8));
}
