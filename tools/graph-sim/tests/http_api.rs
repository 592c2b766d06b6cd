//! graph-sim over real HTTP on 127.0.0.1 (reqwest): one test per rule.

use std::time::{Duration, Instant};

use graph_sim::{
    appsecret_proof, ConfigUpdate, Faults, NotificationTokenRegistration, OptOut, PageRegistration,
    SimConfig, SimHandle, UserTokenRegistration, DAY_MS,
};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const PAGE_A: &str = "1001";
const TOKEN_A: &str = "PAGE_TOKEN_A";
const PAGE_B: &str = "1002";
const TOKEN_B: &str = "PAGE_TOKEN_B";

/// A simulator plus one HTTP client for the whole test (building a client
/// per request is slow; proxies from the environment are ignored).
struct Sim {
    h: SimHandle,
    client: reqwest::Client,
}

impl std::ops::Deref for Sim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.h
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn wrap(config: SimConfig) -> Sim {
    Sim {
        h: graph_sim::start(config).await.unwrap(),
        client: client(),
    }
}

async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
}

async fn sim_with(config: SimConfig) -> Sim {
    wrap(config.with_page(PAGE_A, TOKEN_A).with_page(PAGE_B, TOKEN_B)).await
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn err(&self) -> (i64, Option<i64>) {
        let e = &self.body["error"];
        assert!(
            e.is_object(),
            "expected an error, got {} {}",
            self.status,
            self.body
        );
        (e["code"].as_i64().unwrap(), e["error_subcode"].as_i64())
    }

    #[track_caller]
    fn assert_err(&self, code: i64, subcode: Option<i64>) {
        assert_eq!(self.status, 400, "{}", self.body);
        assert_eq!(self.err(), (code, subcode), "{}", self.body);
        assert_eq!(self.body["error"]["type"], "OAuthException");
        assert!(self.body["error"]["message"].is_string());
        assert!(self.body["error"]["fbtrace_id"].is_string());
    }

    #[track_caller]
    fn assert_ok(&self) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(
            self.body["message_id"].as_str().unwrap().starts_with("m_"),
            "{}",
            self.body
        );
    }

    fn header_json(&self, name: &str) -> Value {
        serde_json::from_str(self.headers[name].to_str().unwrap()).unwrap()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

async fn post_raw(sim: &Sim, path_and_query: &str, body: String) -> Resp {
    let r = sim
        .client
        .post(format!("{}{}", sim.base_url(), path_and_query))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    to_resp(r).await
}

async fn post(sim: &Sim, path_and_query: &str, body: &Value) -> Resp {
    post_raw(sim, path_and_query, body.to_string()).await
}

async fn get(sim: &Sim, path_and_query: &str) -> Resp {
    let r = sim
        .client
        .get(format!("{}{}", sim.base_url(), path_and_query))
        .send()
        .await
        .unwrap();
    to_resp(r).await
}

/// `POST /v25.0/me/messages?access_token=TOKEN`.
async fn send(sim: &Sim, token: &str, body: &Value) -> Resp {
    post(
        sim,
        &format!("/v25.0/me/messages?access_token={}", enc(token)),
        body,
    )
    .await
}

fn text_to(recipient: Value, messaging_type: &str) -> Value {
    json!({"messaging_type": messaging_type, "recipient": recipient, "message": {"text": "Welcome"}})
}

fn login(id: &str) -> Value {
    text_to(json!({"login_id": id}), "UPDATE")
}

fn user_ref(r: &str) -> Value {
    text_to(json!({"user_ref": r}), "UPDATE")
}

fn psid(id: &str, messaging_type: &str) -> Value {
    text_to(json!({"id": id}), messaging_type)
}

fn tagged(recipient: Value, tag: &str) -> Value {
    json!({"messaging_type": "MESSAGE_TAG", "tag": tag, "recipient": recipient, "message": {"text": "x"}})
}

// ----- login_id ---------------------------------------------------------------

/// Meta's `login_id` rule, computed by the simulator itself: the value Python's
/// `hmac.new(client_token, "umc_{asid}_{app}_{page}", sha256).hexdigest()` gives, bound to the
/// Page of the consent and usable once from it.
#[tokio::test]
async fn login_connect_makes_metas_login_id() {
    let sim = sim_with(SimConfig {
        client_token: "login-client-token-7f3a".into(),
        ..SimConfig::default()
    })
    .await;
    let id = sim.login_connect("5550001", "100");
    assert_eq!(
        id,
        "7251f9788c58abbe17b0e3876280d4ac6006adc3b2a7864a10f34158d39810b9"
    );
    // Same person, app and Page: the same id (Meta's rule is deterministic).
    assert_eq!(sim.login_connect("5550001", "100"), id);

    // Over HTTP, for a Page of this sim: bound to it, one message, none from another Page.
    let r = post(
        &sim,
        "/_sim/login_connect",
        &json!({"asid": "5550002", "page_id": PAGE_A}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["login_id"].as_str().unwrap().to_owned();
    assert_eq!(
        id,
        graph_sim::meta_login_id(
            "login-client-token-7f3a",
            "5550002",
            "100000000000001",
            PAGE_A
        )
    );
    send(&sim, TOKEN_B, &login(&id))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, TOKEN_A, &login(&id)).await.assert_ok();
    send(&sim, TOKEN_A, &login(&id))
        .await
        .assert_err(10, Some(2018278));
    assert_eq!(sim.attempts_for(&id), 3);

    // The client token is a setting of the sim's app, changeable at runtime.
    sim.update_config(ConfigUpdate {
        client_token: Some("other".into()),
        ..ConfigUpdate::default()
    });
    assert_ne!(sim.login_connect("5550001", "100"), id);
    let r = post(&sim, "/_sim/login_connect", &json!({"asid": "1"})).await;
    assert_eq!(r.status, 400, "page_id is required: {}", r.body);
}

#[tokio::test]
async fn login_id_happy_path_records_message_without_recipient_id() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms() - 1_000);
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    r.assert_ok();
    assert!(r.body.get("recipient_id").is_none(), "{}", r.body);
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].page_id, PAGE_A);
    assert_eq!(msgs[0].recipient, json!({"login_id": "L1"}));
    assert_eq!(msgs[0].messaging_type, "UPDATE");
    assert_eq!(msgs[0].tag, None);
    assert_eq!(msgs[0].message, json!({"text": "Welcome"}));
    assert_eq!(msgs[0].message_id, r.body["message_id"].as_str().unwrap());
}

#[tokio::test]
async fn login_id_unknown_is_2018001() {
    let sim = sim().await;
    send(&sim, TOKEN_A, &login("nope"))
        .await
        .assert_err(100, Some(2018001));
}

#[tokio::test]
async fn login_id_is_bound_to_first_page() {
    let sim = sim().await;
    let now = sim.now_ms();
    // Bound by the first accepted send.
    sim.register_login_id("L1", None, now);
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    send(&sim, TOKEN_B, &login("L1"))
        .await
        .assert_err(100, Some(2018001));
    // Pre-bound at registration.
    sim.register_login_id("L2", Some(PAGE_A), now);
    send(&sim, TOKEN_B, &login("L2"))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, TOKEN_A, &login("L2")).await.assert_ok();
}

#[tokio::test]
async fn login_id_only_one_message() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn login_id_outside_24h_is_2018278() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms() - DAY_MS - 5_000);
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(10, Some(2018278));
    // Moving the sim clock has the same effect.
    sim.register_login_id("L2", None, sim.now_ms());
    sim.advance_clock(DAY_MS);
    send(&sim, TOKEN_A, &login("L2"))
        .await
        .assert_err(10, Some(2018278));
}

#[tokio::test]
async fn login_id_rejects_tags() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    for body in [
        tagged(json!({"login_id": "L1"}), "HUMAN_AGENT"),
        json!({"messaging_type": "MESSAGE_TAG", "recipient": {"login_id": "L1"}, "message": {"text": "x"}}),
        json!({"messaging_type": "UPDATE", "tag": "ACCOUNT_UPDATE", "recipient": {"login_id": "L1"}, "message": {"text": "x"}}),
    ] {
        let r = send(&sim, TOKEN_A, &body).await;
        r.assert_err(100, None);
        assert_eq!(
            r.body["error"]["message"],
            "Message tags are not allowed for login_id recipients"
        );
    }
    // The rejected attempts did not use up the one message.
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
}

#[tokio::test]
async fn login_id_opted_out_is_551() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.opt_out(OptOut {
        login_id: Some("L1".into()),
        ..OptOut::default()
    })
    .unwrap();
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(551, Some(1545041));
}

// ----- user_ref ---------------------------------------------------------------

#[tokio::test]
async fn user_ref_rules() {
    let sim = sim().await;
    let now = sim.now_ms();
    sim.register_user_ref("U1", None, now);
    let r = send(&sim, TOKEN_A, &user_ref("U1")).await;
    r.assert_ok();
    assert!(r.body.get("recipient_id").is_none());
    // One message only; another Page is "no matching user".
    send(&sim, TOKEN_A, &user_ref("U1"))
        .await
        .assert_err(10, Some(2018278));
    send(&sim, TOKEN_B, &user_ref("U1"))
        .await
        .assert_err(100, Some(2018001));
    // Unknown, expired, tagged, opted out.
    send(&sim, TOKEN_A, &user_ref("U404"))
        .await
        .assert_err(100, Some(2018001));
    sim.register_user_ref("U2", None, now - DAY_MS);
    send(&sim, TOKEN_A, &user_ref("U2"))
        .await
        .assert_err(10, Some(2018278));
    sim.register_user_ref("U3", None, now);
    let r = send(
        &sim,
        TOKEN_A,
        &tagged(json!({"user_ref": "U3"}), "HUMAN_AGENT"),
    )
    .await;
    r.assert_err(100, None);
    assert_eq!(
        r.body["error"]["message"],
        "Message tags are not allowed for user_ref recipients"
    );
    sim.opt_out(OptOut {
        user_ref: Some("U3".into()),
        ..OptOut::default()
    })
    .unwrap();
    send(&sim, TOKEN_A, &user_ref("U3"))
        .await
        .assert_err(551, Some(1545041));
}

// ----- PSID -------------------------------------------------------------------

#[tokio::test]
async fn psid_happy_path_includes_recipient_id() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms() - 60_000);
    for mt in ["RESPONSE", "UPDATE"] {
        let r = send(&sim, TOKEN_A, &psid("P1", mt)).await;
        r.assert_ok();
        assert_eq!(r.body["recipient_id"], "P1");
    }
    assert_eq!(sim.messages().len(), 2);
}

#[tokio::test]
async fn psid_unknown_or_other_page_is_2018001() {
    let sim = sim().await;
    sim.register_person(PAGE_B, "P1", sim.now_ms());
    send(&sim, TOKEN_A, &psid("P1", "RESPONSE"))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, TOKEN_A, &psid("P404", "RESPONSE"))
        .await
        .assert_err(100, Some(2018001));
}

#[tokio::test]
async fn psid_opted_out_is_551() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    sim.register_person(PAGE_B, "P1", sim.now_ms());
    sim.opt_out(OptOut {
        page_id: Some(PAGE_A.into()),
        psid: Some("P1".into()),
        ..OptOut::default()
    })
    .unwrap();
    send(&sim, TOKEN_A, &psid("P1", "RESPONSE"))
        .await
        .assert_err(551, Some(1545041));
    // Scoped to Page A.
    send(&sim, TOKEN_B, &psid("P1", "RESPONSE"))
        .await
        .assert_ok();
}

#[tokio::test]
async fn psid_outside_24h_is_2018278() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms() - DAY_MS - 1_000);
    for mt in ["RESPONSE", "UPDATE"] {
        send(&sim, TOKEN_A, &psid("P1", mt))
            .await
            .assert_err(10, Some(2018278));
    }
}

#[tokio::test]
async fn psid_human_agent_within_7_days() {
    let sim = sim().await;
    // HUMAN_AGENT needs the Page's Human Agent feature (off by default; see
    // tests/rules_2026.rs).
    sim.update_page_features(graph_sim::PageFeaturesUpdate {
        page_id: PAGE_A.into(),
        human_agent: Some(true),
        ..Default::default()
    });
    let now = sim.now_ms();
    sim.register_person(PAGE_A, "P3D", now - 3 * DAY_MS);
    sim.register_person(PAGE_A, "P8D", now - 8 * DAY_MS);
    send(&sim, TOKEN_A, &tagged(json!({"id": "P3D"}), "HUMAN_AGENT"))
        .await
        .assert_ok();
    send(&sim, TOKEN_A, &tagged(json!({"id": "P8D"}), "HUMAN_AGENT"))
        .await
        .assert_err(10, Some(2018278));
    assert_eq!(sim.messages()[0].tag.as_deref(), Some("HUMAN_AGENT"));
    assert_eq!(sim.messages()[0].messaging_type, "MESSAGE_TAG");
}

#[tokio::test]
async fn psid_other_tags_need_the_allow_list() {
    // The update tags are retired (tests/rules_2026.rs); a hypothetical
    // future tag shows the allow-list.
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms() - 30 * DAY_MS);
    send(&sim, TOKEN_A, &tagged(json!({"id": "P1"}), "FUTURE_TAG"))
        .await
        .assert_err(100, None);
    sim.update_config(ConfigUpdate {
        allowed_tags: Some(vec!["HUMAN_AGENT".into(), "FUTURE_TAG".into()]),
        ..ConfigUpdate::default()
    });
    // Allowed tags other than HUMAN_AGENT have no window.
    send(&sim, TOKEN_A, &tagged(json!({"id": "P1"}), "FUTURE_TAG"))
        .await
        .assert_ok();
}

#[tokio::test]
async fn psid_utility_has_no_window() {
    let sim = sim().await;
    sim.update_page_features(graph_sim::PageFeaturesUpdate {
        page_id: PAGE_A.into(),
        page_utility_messaging: Some(true),
        ..Default::default()
    });
    sim.register_person(PAGE_A, "P1", sim.now_ms() - 30 * DAY_MS);
    let body = json!({"messaging_type": "UTILITY", "recipient": {"id": "P1"},
        "message": {"attachment": {"type": "template", "payload": {"template_type": "utility"}}}});
    send(&sim, TOKEN_A, &body).await.assert_ok();
}

#[tokio::test]
async fn sender_action_psid_only_and_not_recorded() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    sim.register_login_id("L1", None, sim.now_ms());
    let r = send(
        &sim,
        TOKEN_A,
        &json!({"recipient": {"id": "P1"}, "sender_action": "TYPING_ON"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"recipient_id": "P1"}));
    send(
        &sim,
        TOKEN_A,
        &json!({"recipient": {"login_id": "L1"}, "sender_action": "TYPING_ON"}),
    )
    .await
    .assert_err(100, None);
    send(
        &sim,
        TOKEN_A,
        &json!({"recipient": {"id": "P1"}, "sender_action": "TYPING_ON", "messaging_type": "RESPONSE", "message": {"text": "x"}}),
    )
    .await
    .assert_err(100, None);
    assert!(sim.messages().is_empty());
    assert_eq!(sim.stats().sender_actions, 1);
}

// ----- notification_messages_token and phone_number ------------------------------

#[tokio::test]
async fn notification_token_rules() {
    let sim = sim().await;
    let reg = |token: &str, active: bool, psid: Option<&str>| NotificationTokenRegistration {
        token: token.into(),
        page_id: PAGE_A.into(),
        active,
        psid: psid.map(Into::into),
    };
    let to = |t: &str| text_to(json!({"notification_messages_token": t}), "UPDATE");
    sim.register_notification_token(reg("N1", true, None));
    let r = send(&sim, TOKEN_A, &to("N1")).await;
    r.assert_ok();
    assert!(r.body.get("recipient_id").is_none());
    send(&sim, TOKEN_B, &to("N1"))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, TOKEN_A, &to("N404"))
        .await
        .assert_err(100, Some(2018001));
    sim.register_notification_token(reg("N2", false, None));
    send(&sim, TOKEN_A, &to("N2"))
        .await
        .assert_err(10, Some(2018065));
    // Opted out: the token itself, or the person behind it.
    sim.register_notification_token(reg("N3", true, None));
    sim.opt_out(OptOut {
        notification_messages_token: Some("N3".into()),
        ..OptOut::default()
    })
    .unwrap();
    send(&sim, TOKEN_A, &to("N3"))
        .await
        .assert_err(551, Some(1545041));
    sim.register_notification_token(reg("N4", true, Some("P9")));
    sim.opt_out(OptOut {
        psid: Some("P9".into()),
        ..OptOut::default()
    })
    .unwrap();
    send(&sim, TOKEN_A, &to("N4"))
        .await
        .assert_err(551, Some(1545041));
}

#[tokio::test]
async fn phone_number_is_accepted_and_recorded() {
    let sim = sim().await;
    let recipient =
        json!({"phone_number": "+1(212)555-2368", "name": {"first_name": "A", "last_name": "B"}});
    let r = send(&sim, TOKEN_A, &text_to(recipient.clone(), "UPDATE")).await;
    r.assert_ok();
    assert!(r.body.get("recipient_id").is_none());
    assert_eq!(sim.messages()[0].recipient, recipient);
}

// ----- body validation -----------------------------------------------------------

#[tokio::test]
async fn body_validation_errors() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let cases: Vec<(Value, i64, Option<i64>)> = vec![
        // Missing recipient.
        (
            json!({"messaging_type": "RESPONSE", "message": {"text": "x"}}),
            100,
            None,
        ),
        // Ambiguous recipient.
        (
            text_to(json!({"id": "P1", "login_id": "L"}), "RESPONSE"),
            100,
            None,
        ),
        // Empty recipient.
        (text_to(json!({}), "RESPONSE"), 100, None),
        // Missing messaging_type.
        (
            json!({"recipient": {"id": "P1"}, "message": {"text": "x"}}),
            100,
            None,
        ),
        // Unknown messaging_type.
        (psid("P1", "PROMO"), 100, None),
        // MESSAGE_TAG without tag.
        (
            json!({"messaging_type": "MESSAGE_TAG", "recipient": {"id": "P1"}, "message": {"text": "x"}}),
            100,
            None,
        ),
        // Neither message nor sender_action.
        (
            json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}}),
            100,
            None,
        ),
        // Empty messages.
        (
            json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {}}),
            100,
            Some(2018034),
        ),
        (
            json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": ""}}),
            100,
            Some(2018034),
        ),
        // Text too long (2001 chars).
        (
            json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": "a".repeat(2001)}}),
            100,
            None,
        ),
        // Text and attachment together.
        (
            json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": "a", "attachment": {"type": "image", "payload": {"url": "https://x"}}}}),
            100,
            None,
        ),
    ];
    for (body, code, subcode) in cases {
        let r = send(&sim, TOKEN_A, &body).await;
        assert_eq!(r.err(), (code, subcode), "{body} -> {}", r.body);
        assert_eq!(r.status, 400);
    }
    // Invalid JSON.
    post_raw(
        &sim,
        &format!("/v25.0/me/messages?access_token={TOKEN_A}"),
        "{not json".into(),
    )
    .await
    .assert_err(100, None);
    assert!(sim.messages().is_empty());
    assert_eq!(sim.stats().rejected_by_code["100"], 12);
}

#[tokio::test]
async fn text_limit_counts_chars() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    // 2000 two-byte chars = 4000 bytes: accepted.
    let body = json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": "é".repeat(2000)}});
    send(&sim, TOKEN_A, &body).await.assert_ok();
    let body = json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": "é".repeat(2001)}});
    send(&sim, TOKEN_A, &body).await.assert_err(100, None);
}

#[tokio::test]
async fn quick_replies_at_most_13() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let qr = |n: usize| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"content_type": "text", "title": format!("t{i}"), "payload": "p"}))
            .collect();
        json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"}, "message": {"text": "pick", "quick_replies": items}})
    };
    send(&sim, TOKEN_A, &qr(13)).await.assert_ok();
    send(&sim, TOKEN_A, &qr(14)).await.assert_err(105, None);
}

#[tokio::test]
async fn attachment_is_accepted() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let body = json!({"messaging_type": "RESPONSE", "recipient": {"id": "P1"},
        "message": {"attachment": {"type": "template", "payload": {"template_type": "button"}}}});
    send(&sim, TOKEN_A, &body).await.assert_ok();
}

// ----- auth ------------------------------------------------------------------

#[tokio::test]
async fn token_rules() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let body = psid("P1", "RESPONSE");
    // Unknown token: 190 without subcode.
    send(&sim, "bogus", &body).await.assert_err(190, None);
    // Expired token: 190/463.
    sim.register_page_token(PageRegistration {
        page_id: PAGE_A.into(),
        token: "OLD".into(),
        expired: true,
    });
    send(&sim, "OLD", &body).await.assert_err(190, Some(463));
    // Missing token: 104.
    post(&sim, "/v25.0/me/messages", &body)
        .await
        .assert_err(104, None);
    // Bearer header.
    let r = sim
        .client
        .post(format!("{}/v25.0/me/messages", sim.base_url()))
        .bearer_auth(TOKEN_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    to_resp(r).await.assert_ok();
    // /{page_id}/messages: own Page fine, another Page's token 200.
    post(
        &sim,
        &format!("/v25.0/{PAGE_A}/messages?access_token={TOKEN_A}"),
        &body,
    )
    .await
    .assert_ok();
    post(
        &sim,
        &format!("/v25.0/{PAGE_A}/messages?access_token={TOKEN_B}"),
        &body,
    )
    .await
    .assert_err(200, None);
    // Bad version segment.
    post(
        &sim,
        &format!("/v25/me/messages?access_token={TOKEN_A}"),
        &body,
    )
    .await
    .assert_err(2500, None);
    post(
        &sim,
        &format!("/v2.12/me/messages?access_token={TOKEN_A}"),
        &body,
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn appsecret_proof_when_required() {
    let config = SimConfig {
        require_appsecret_proof: true,
        ..SimConfig::default()
    };
    let secret = config.app_secret.clone();
    let sim = sim_with(config).await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let body = psid("P1", "RESPONSE");
    let r = send(&sim, TOKEN_A, &body).await;
    r.assert_err(100, None);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("appsecret_proof"));
    let wrong = appsecret_proof("other-secret", TOKEN_A);
    let r = post(
        &sim,
        &format!("/v25.0/me/messages?access_token={TOKEN_A}&appsecret_proof={wrong}"),
        &body,
    )
    .await;
    r.assert_err(100, None);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid appsecret_proof"));
    let right = appsecret_proof(&secret, TOKEN_A);
    post(
        &sim,
        &format!("/v25.0/me/messages?access_token={TOKEN_A}&appsecret_proof={right}"),
        &body,
    )
    .await
    .assert_ok();
    // A proof for another token does not pass either.
    let r = post(
        &sim,
        &format!(
            "/v25.0/me/messages?access_token={TOKEN_A}&appsecret_proof={}",
            appsecret_proof(&secret, TOKEN_B)
        ),
        &body,
    )
    .await;
    r.assert_err(100, None);
}

#[tokio::test]
async fn appsecret_proof_checked_when_present_even_if_not_required() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    let body = psid("P1", "RESPONSE");
    send(&sim, TOKEN_A, &body).await.assert_ok();
    post(
        &sim,
        &format!("/v25.0/me/messages?access_token={TOKEN_A}&appsecret_proof=00ff"),
        &body,
    )
    .await
    .assert_err(100, None);
}

// ----- rate limit and usage headers ------------------------------------------------

#[tokio::test]
async fn rate_limit_613_and_usage_headers() {
    let sim = sim_with(SimConfig {
        rate_limit_per_sec: 4,
        ..SimConfig::default()
    })
    .await;
    let body = text_to(json!({"phone_number": "+15550100"}), "UPDATE");
    // A frozen clock keeps every send in one window, however slow the host.
    sim.freeze_clock();
    let mut pcts = Vec::new();
    for _ in 0..4 {
        let r = send(&sim, TOKEN_A, &body).await;
        r.assert_ok();
        let buc = r.header_json("x-business-use-case-usage");
        pcts.push(buc[PAGE_A][0]["call_count"].as_i64().unwrap());
        assert_eq!(buc[PAGE_A][0]["type"], "pages");
        let app = r.header_json("x-app-usage");
        assert_eq!(app["call_count"], buc[PAGE_A][0]["call_count"]);
        assert_eq!(app["total_cputime"], 0);
    }
    assert_eq!(pcts, vec![25, 50, 75, 100]);
    let r = send(&sim, TOKEN_A, &body).await;
    r.assert_err(613, None);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Calls to this API have exceeded the rate limit"));
    let buc = r.header_json("x-business-use-case-usage");
    assert_eq!(buc[PAGE_A][0]["call_count"], 100);
    assert_eq!(buc[PAGE_A][0]["total_time"], 100);
    assert_eq!(buc[PAGE_A][0]["estimated_time_to_regain_access"], 1);
    assert!(r.headers.contains_key("x-app-usage"));
    // Other Pages have their own window.
    send(&sim, TOKEN_B, &body).await.assert_ok();
    // After the window slides, sends go through again.
    sim.advance_clock(1_001);
    let r = send(&sim, TOKEN_A, &body).await;
    r.assert_ok();
    let buc = r.header_json("x-business-use-case-usage");
    assert_eq!(buc[PAGE_A][0]["call_count"], 25);
    assert_eq!(buc[PAGE_A][0]["estimated_time_to_regain_access"], 0);
    assert_eq!(sim.stats().rejected_by_code["613"], 1);
}

#[tokio::test]
async fn usage_headers_on_errors_too() {
    let sim = sim().await;
    let r = send(&sim, TOKEN_A, &login("unknown")).await;
    r.assert_err(100, Some(2018001));
    let buc = r.header_json("x-business-use-case-usage");
    assert_eq!(buc[PAGE_A][0]["call_count"], 0);
    // Unknown token on /me: no Page to report, still both headers.
    let r = send(&sim, "bogus", &login("unknown")).await;
    assert_eq!(r.header_json("x-business-use-case-usage"), json!({}));
    assert!(r.headers.contains_key("x-app-usage"));
}

// ----- debug_token -------------------------------------------------------------------

async fn debug(sim: &Sim, access_token: &str, input: &str) -> Resp {
    get(
        sim,
        &format!(
            "/v25.0/debug_token?input_token={}&access_token={}",
            enc(input),
            enc(access_token)
        ),
    )
    .await
}

#[tokio::test]
async fn debug_token_cases() {
    let config = SimConfig::default();
    let app_token = format!("{}|{}", config.app_id, config.app_secret);
    let app_id = config.app_id.clone();
    let sim = sim_with(config).await;
    let now = sim.now_ms();
    let user =
        |token: &str, app: Option<&str>, expires_at_ms: i64, valid: bool| UserTokenRegistration {
            token: token.into(),
            app_id: app.map(Into::into),
            user_id: "ASID1".into(),
            scopes: vec!["public_profile".into(), "user_messenger_contact".into()],
            expires_at_ms,
            valid,
            issued_at_ms: None,
        };
    sim.register_user_token(user("VALID", None, now + 3_600_000, true));
    sim.register_user_token(user("EXPIRED", None, now - 1_000, true));
    sim.register_user_token(user("REVOKED", None, now + 3_600_000, false));
    sim.register_user_token(user("FOREIGN", Some("999"), now + 3_600_000, true));

    let r = debug(&sim, &app_token, "VALID").await;
    assert_eq!(r.status, 200);
    let d = &r.body["data"];
    assert_eq!(d["app_id"], app_id);
    assert_eq!(d["type"], "USER");
    assert_eq!(d["application"], "sim");
    assert_eq!(d["is_valid"], true);
    assert_eq!(d["user_id"], "ASID1");
    assert_eq!(d["expires_at"], (now + 3_600_000) / 1000);
    // Issued when registered (unless the registration says when).
    let issued = d["issued_at"].as_i64().unwrap();
    assert!((now / 1000..=sim.now_ms() / 1000).contains(&issued), "{d}");
    assert!(d["data_access_expires_at"].is_i64());
    assert_eq!(d["scopes"][1], "user_messenger_contact");

    let r = debug(&sim, &app_token, "EXPIRED").await;
    assert_eq!(r.body["data"]["is_valid"], false);
    assert_eq!(r.body["data"]["error"]["subcode"], 463);

    // A token issued long ago (a replayed login) says so, and is still valid.
    sim.register_user_token(UserTokenRegistration {
        issued_at_ms: Some(now - 30 * DAY_MS),
        ..user("OLD", None, 0, true)
    });
    let r = debug(&sim, &app_token, "OLD").await;
    assert_eq!(r.body["data"]["is_valid"], true);
    assert_eq!(
        r.body["data"]["issued_at"],
        (now - 30 * DAY_MS).div_euclid(1000)
    );

    let r = debug(&sim, &app_token, "REVOKED").await;
    assert_eq!(r.body["data"]["is_valid"], false);

    // Valid, but for another app: the caller must check app_id.
    let r = debug(&sim, &app_token, "FOREIGN").await;
    assert_eq!(r.body["data"]["is_valid"], true);
    assert_eq!(r.body["data"]["app_id"], "999");

    let r = debug(&sim, &app_token, "UNKNOWN").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"data": {"is_valid": false, "error": {"code": 190, "message": "Invalid OAuth access token."}}})
    );

    // Expiry follows the sim clock.
    sim.advance_clock(3_600_000);
    let r = debug(&sim, &app_token, "VALID").await;
    assert_eq!(r.body["data"]["is_valid"], false);

    // Wrong app token.
    debug(&sim, &format!("{app_id}|wrong"), "VALID")
        .await
        .assert_err(190, None);
    // Missing input_token.
    get(
        &sim,
        &format!("/v25.0/debug_token?access_token={}", enc(&app_token)),
    )
    .await
    .assert_err(100, None);
    assert_eq!(sim.stats().debug_token_calls, 9);
}

#[tokio::test]
async fn debug_token_on_page_token() {
    let config = SimConfig::default();
    let app_token = format!("{}|{}", config.app_id, config.app_secret);
    let sim = sim_with(config).await;
    let r = debug(&sim, &app_token, TOKEN_A).await;
    assert_eq!(r.body["data"]["type"], "PAGE");
    assert_eq!(r.body["data"]["profile_id"], PAGE_A);
    assert_eq!(r.body["data"]["is_valid"], true);
}

// ----- faults ------------------------------------------------------------------------

async fn fault_run(seed: u64) -> (Vec<u16>, usize) {
    let sim = sim().await;
    sim.set_faults(Faults {
        error_5xx_ratio: 0.4,
        seed,
        ..Faults::default()
    })
    .unwrap();
    let body = text_to(json!({"phone_number": "+15550100"}), "UPDATE");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = send(&sim, TOKEN_A, &body).await;
        if r.status == 500 {
            assert_eq!(r.body["error"]["code"], 2);
            assert_eq!(r.body["error"]["is_transient"], true);
            assert_eq!(
                r.body["error"]["message"],
                "An unexpected error has occurred. Please retry your request later."
            );
        }
        statuses.push(r.status);
    }
    let stats = sim.stats();
    let fives = statuses.iter().filter(|s| **s == 500).count();
    assert_eq!(stats.faults_5xx as usize, fives);
    // 5xx answers are not recorded.
    assert_eq!(sim.messages().len(), 30 - fives);
    (statuses, fives)
}

#[tokio::test]
async fn faults_are_deterministic_per_seed() {
    let (a, fives) = fault_run(42).await;
    let (b, _) = fault_run(42).await;
    assert_eq!(a, b);
    assert!(fives > 0 && fives < 30, "{a:?}");
    let (c, _) = fault_run(43).await;
    assert_ne!(a, c);
}

#[tokio::test]
async fn faults_from_config_and_reset_restart_sequence() {
    let faults = Faults {
        error_5xx_ratio: 0.5,
        seed: 7,
        ..Faults::default()
    };
    let sim = sim_with(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let body = text_to(json!({"phone_number": "+15550100"}), "UPDATE");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(send(&sim, TOKEN_A, &body).await.status);
        }
        runs.push(statuses);
        sim.reset();
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500) && runs[0].contains(&200));
}

#[tokio::test]
async fn timeout_fault_answers_504_late_and_records_nothing() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    sim.set_faults(Faults {
        timeout_ratio: 1.0,
        timeout_ms: 300,
        ..Faults::default()
    })
    .unwrap();
    let start = Instant::now();
    let r = send(&sim, TOKEN_A, &psid("P1", "RESPONSE")).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 504);
    assert_eq!(r.body["error"]["is_transient"], true);
    // A client that gives up earlier sees a timeout.
    sim.set_faults(Faults {
        timeout_ratio: 1.0,
        timeout_ms: 5_000,
        ..Faults::default()
    })
    .unwrap();
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .post(format!(
            "{}/v25.0/me/messages?access_token={TOKEN_A}",
            sim.base_url()
        ))
        .json(&psid("P1", "RESPONSE"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(sim.messages().is_empty());
    assert_eq!(sim.stats().faults_timeout, 2);
}

#[tokio::test]
async fn latency_is_added() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    sim.set_faults(Faults {
        latency_ms: 250,
        ..Faults::default()
    })
    .unwrap();
    let start = Instant::now();
    send(&sim, TOKEN_A, &psid("P1", "RESPONSE"))
        .await
        .assert_ok();
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn invalid_faults_are_refused() {
    let sim = sim().await;
    assert!(sim
        .set_faults(Faults {
            error_5xx_ratio: 0.8,
            timeout_ratio: 0.8,
            ..Faults::default()
        })
        .is_err());
    let r = post(&sim, "/_sim/faults", &json!({"error_5xx_ratio": 2.0})).await;
    assert_eq!(r.status, 400);
}

// ----- reset and admin over HTTP --------------------------------------------------------

#[tokio::test]
async fn reset_clears_state_keeps_config() {
    let sim = sim().await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.register_page("1003", "PAGE_TOKEN_C");
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    sim.advance_clock(5_000);
    assert_eq!(sim.messages().len(), 1);

    let r = post(&sim, "/_sim/reset", &json!({})).await;
    assert_eq!(r.status, 200);
    assert!(sim.messages().is_empty());
    assert_eq!(sim.stats().accepted, 0);
    // Registrations are gone, config Pages still work, admin Pages are gone.
    send(&sim, TOKEN_A, &login("L1"))
        .await
        .assert_err(100, Some(2018001));
    send(&sim, "PAGE_TOKEN_C", &login("L1"))
        .await
        .assert_err(190, None);
    // Clock offset back to the configured one.
    assert!((sim.now_ms() - graph_now()).abs() < 1_000);
    // Message ids keep counting.
    sim.register_login_id("L1", None, sim.now_ms());
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    assert_eq!(r.body["message_id"], "m_2");
}

fn graph_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn admin_endpoints_over_http() {
    let sim = wrap(SimConfig::default()).await;
    let ok = |r: Resp| {
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    let now = ok(get(&sim, "/_sim/clock").await)["now_ms"]
        .as_i64()
        .unwrap();
    ok(post(&sim, "/_sim/pages", &json!({"page_id": "7", "token": "T7"})).await);
    ok(post(
        &sim,
        "/_sim/pages",
        &json!({"page_id": "7", "token": "T7OLD", "expired": true}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/login_ids",
        &json!({"login_id": "L", "page_id": "7", "opted_in_at_ms": now}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/user_refs",
        &json!({"user_ref": "R", "opted_in_at_ms": now}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/people",
        &json!({"page_id": "7", "psid": "P", "last_user_message_at_ms": now}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/people",
        &json!({"page_id": "7", "psid": "Q", "last_user_message_at_ms": now}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/opt_outs",
        &json!({"page_id": "7", "psid": "Q"}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/tokens",
        &json!({"token": "N", "page_id": "7", "active": true}),
    )
    .await);
    ok(post(&sim, "/_sim/user_tokens", &json!({"token": "U", "user_id": "ASID", "scopes": ["email"], "expires_at_ms": 0, "valid": true})).await);
    ok(post(&sim, "/_sim/config", &json!({"rate_limit_per_sec": 100})).await);
    let f = ok(post(&sim, "/_sim/faults", &json!({"latency_ms": 1, "seed": 5})).await);
    assert_eq!(f["timeout_ms"], 30_000);
    let c = ok(post(
        &sim,
        "/_sim/clock",
        &json!({"offset_ms": 10, "advance_ms": 5}),
    )
    .await);
    assert!((c["offset_ms"].as_i64().unwrap() - 15).abs() <= 2, "{c}");
    let c = ok(post(
        &sim,
        "/_sim/clock",
        &json!({"freeze": true, "advance_ms": 1000}),
    )
    .await);
    assert_eq!(c["frozen"], true);
    let frozen = c["now_ms"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(ok(get(&sim, "/_sim/clock").await)["now_ms"], frozen);
    let c = ok(post(&sim, "/_sim/clock", &json!({"freeze": false})).await);
    assert_eq!(c["frozen"], false);
    assert!(c["now_ms"].as_i64().unwrap() >= frozen);

    send(&sim, "T7", &login("L")).await.assert_ok();
    send(&sim, "T7", &user_ref("R")).await.assert_ok();
    send(&sim, "T7", &psid("P", "RESPONSE")).await.assert_ok();
    send(&sim, "T7", &psid("Q", "RESPONSE"))
        .await
        .assert_err(551, Some(1545041));
    send(
        &sim,
        "T7",
        &text_to(json!({"notification_messages_token": "N"}), "UPDATE"),
    )
    .await
    .assert_ok();
    send(&sim, "T7OLD", &psid("P", "RESPONSE"))
        .await
        .assert_err(190, Some(463));

    let msgs = ok(get(&sim, "/_sim/messages").await);
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[0]["page_id"], "7");
    assert_eq!(msgs[0]["recipient"], json!({"login_id": "L"}));
    assert_eq!(msgs[0]["messaging_type"], "UPDATE");
    assert_eq!(msgs[0]["message"], json!({"text": "Welcome"}));
    assert!(msgs[0]["message_id"].is_string() && msgs[0]["at_ms"].is_i64());
    let stats = ok(get(&sim, "/_sim/stats").await);
    assert_eq!(stats["accepted"], 4);
    assert_eq!(stats["rejected"], 2);
    assert_eq!(stats["rejected_by_code_subcode"]["551/1545041"], 1);
    assert_eq!(stats["rejected_by_code_subcode"]["190/463"], 1);

    // Bad admin bodies answer 400 with a message.
    let r = post(&sim, "/_sim/login_ids", &json!({"login_id": 1})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].is_string());
    let r = post(
        &sim,
        "/_sim/opt_outs",
        &json!({"psid": "P", "login_id": "L"}),
    )
    .await;
    assert_eq!(r.status, 400);

    ok(post(&sim, "/_sim/reset", &json!({})).await);
    assert_eq!(ok(get(&sim, "/_sim/messages").await), json!([]));
    // Unknown paths answer a Graph-style error.
    get(&sim, "/v25.0/me/nothing").await.assert_err(2500, None);
    sim.h.shutdown().await;
}

#[tokio::test]
async fn shutdown_and_drop_stop_listening() {
    let first = sim().await;
    let addr = first.addr();
    assert!(addr.ip().is_loopback());
    first.h.shutdown().await;
    let c = client();
    assert!(c
        .get(format!("http://{addr}/_sim/stats"))
        .send()
        .await
        .is_err());

    let sim2 = sim().await;
    let base = sim2.base_url();
    drop(sim2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(c.get(format!("{base}/_sim/stats")).send().await.is_err());
}

// ----- binary ----------------------------------------------------------------------

#[tokio::test]
async fn binary_prints_base_url_and_serves() {
    use std::io::{BufRead, BufReader, Write};
    let dir = std::env::temp_dir().join(format!("graph-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("config.json");
    let mut f = std::fs::File::create(&cfg_path).unwrap();
    write!(f, r#"{{"pages": {{"55": "T55"}}}}"#).unwrap();
    drop(f);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graph-sim"))
        .args(["--port", "0", "--config"])
        .arg(&cfg_path)
        .env("GRAPH_SIM_SEED", "9")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let c = client();
    let faults: Value = c
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["seed"], 9);
    let r = c
        .post(format!("{base}/v25.0/55/messages?access_token=T55"))
        .json(&text_to(json!({"phone_number": "+15550100"}), "UPDATE"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
