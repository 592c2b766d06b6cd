//! Meta's 2026 Send API rules (meta-platform.md §0): one test per rule,
//! asserting the exact code/subcode.

mod common;

use common::*;
use graph_sim::{
    ConfigUpdate, InstagramTokenRegistration, PageFeatures, PageFeaturesUpdate, SimConfig, DAY_MS,
};
use serde_json::{json, Value};

fn features(page_id: &str) -> PageFeaturesUpdate {
    PageFeaturesUpdate {
        page_id: page_id.into(),
        ..PageFeaturesUpdate::default()
    }
}

fn utility_template(recipient: Value) -> Value {
    json!({"messaging_type": "UTILITY", "recipient": recipient,
        "message": {"attachment": {"type": "template", "payload": {"template_type": "utility", "template_name": "order_update"}}}})
}

// ----- retired update tags ------------------------------------------------------------

#[tokio::test]
async fn retired_update_tags_are_invalid_parameters_even_when_allowed() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    sim.update_config(ConfigUpdate {
        allowed_tags: Some(vec![
            "HUMAN_AGENT".into(),
            "CONFIRMED_EVENT_UPDATE".into(),
            "POST_PURCHASE_UPDATE".into(),
            "ACCOUNT_UPDATE".into(),
        ]),
        ..ConfigUpdate::default()
    });
    for tag in [
        "CONFIRMED_EVENT_UPDATE",
        "POST_PURCHASE_UPDATE",
        "ACCOUNT_UPDATE",
    ] {
        let r = send(&sim, TOKEN_A, &tagged(json!({"id": "P1"}), tag)).await;
        r.assert_err(100, None);
        assert_eq!(r.message(), "(#100) Invalid parameter", "{tag}");
    }
    assert!(sim.messages().is_empty());
}

// ----- HUMAN_AGENT ----------------------------------------------------------------------

#[tokio::test]
async fn human_agent_needs_the_page_feature() {
    let sim = sim().await;
    let now = sim.now_ms();
    sim.register_person(PAGE_A, "P1", now - 2 * DAY_MS);
    sim.register_person(PAGE_B, "P1", now - 2 * DAY_MS);
    let body = tagged(json!({"id": "P1"}), "HUMAN_AGENT");
    assert!(!sim.page_features(PAGE_A).human_agent, "default off");
    let r = send(&sim, TOKEN_A, &body).await;
    r.assert_err(10, None);
    assert!(r.message().contains("Human Agent"), "{}", r.body);
    // Feature beats window: even within 24 h, no feature -> 10.
    sim.register_person(PAGE_A, "FRESH", now);
    send(
        &sim,
        TOKEN_A,
        &tagged(json!({"id": "FRESH"}), "HUMAN_AGENT"),
    )
    .await
    .assert_err(10, None);

    let after = sim.update_page_features(PageFeaturesUpdate {
        human_agent: Some(true),
        ..features(PAGE_A)
    });
    assert!(after.human_agent);
    send(&sim, TOKEN_A, &body).await.assert_ok();
    // Per Page: PAGE_B still lacks it.
    send(&sim, TOKEN_B, &body).await.assert_err(10, None);
}

#[tokio::test]
async fn human_agent_window_is_7_days_exclusive() {
    let sim = sim().await;
    sim.update_page_features(PageFeaturesUpdate {
        human_agent: Some(true),
        ..features(PAGE_A)
    });
    sim.freeze_clock();
    let now = sim.now_ms();
    sim.register_person(PAGE_A, "IN", now - 7 * DAY_MS + 1);
    sim.register_person(PAGE_A, "EDGE", now - 7 * DAY_MS);
    send(&sim, TOKEN_A, &tagged(json!({"id": "IN"}), "HUMAN_AGENT"))
        .await
        .assert_ok();
    send(&sim, TOKEN_A, &tagged(json!({"id": "EDGE"}), "HUMAN_AGENT"))
        .await
        .assert_err(10, Some(2018278));
}

// ----- UTILITY --------------------------------------------------------------------------

#[tokio::test]
async fn utility_needs_a_template_and_the_page_permission() {
    let sim = sim().await;
    sim.register_person(PAGE_A, "P1", sim.now_ms() - 30 * DAY_MS);
    // Not a template: refused whatever the Page may do.
    let r = send(&sim, TOKEN_A, &psid("P1", "UTILITY")).await;
    r.assert_err(100, None);
    assert!(r.message().contains("template"), "{}", r.body);
    let image = json!({"messaging_type": "UTILITY", "recipient": {"id": "P1"},
        "message": {"attachment": {"type": "image", "payload": {"url": "https://x/y.png"}}}});
    send(&sim, TOKEN_A, &image).await.assert_err(100, None);
    // A template without page_utility_messaging.
    let r = send(&sim, TOKEN_A, &utility_template(json!({"id": "P1"}))).await;
    r.assert_err(10, None);
    assert!(r.message().contains("page_utility_messaging"), "{}", r.body);
    sim.update_page_features(PageFeaturesUpdate {
        page_utility_messaging: Some(true),
        ..features(PAGE_A)
    });
    // 30 days after the last message: UTILITY has no window.
    let r = send(&sim, TOKEN_A, &utility_template(json!({"id": "P1"}))).await;
    r.assert_ok();
    assert_eq!(r.body["recipient_id"], "P1");
    assert_eq!(sim.messages()[0].messaging_type, "UTILITY");
    // RESPONSE to the same person is still outside the window.
    send(&sim, TOKEN_A, &psid("P1", "RESPONSE"))
        .await
        .assert_err(10, Some(2018278));
}

#[tokio::test]
async fn utility_to_login_id_or_user_ref_is_refused() {
    let sim = sim_with(SimConfig::default().with_page_features(
        PAGE_A,
        PageFeatures {
            page_utility_messaging: true,
            ..PageFeatures::default()
        },
    ))
    .await;
    sim.register_login_id("L1", None, sim.now_ms());
    sim.register_user_ref("R1", None, sim.now_ms());
    let r = send(&sim, TOKEN_A, &utility_template(json!({"login_id": "L1"}))).await;
    r.assert_err(100, None);
    assert!(r.message().contains("login_id"), "{}", r.body);
    send(&sim, TOKEN_A, &utility_template(json!({"user_ref": "R1"})))
        .await
        .assert_err(100, None);
    // Neither is used up: the one allowed message still goes through.
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
    send(&sim, TOKEN_A, &user_ref("R1")).await.assert_ok();
}

// ----- Page restricted, pages_messaging, phone numbers ------------------------------------

#[tokio::test]
async fn restricted_page_answers_1893063_to_every_send() {
    let sim = sim().await;
    let now = sim.now_ms();
    sim.register_login_id("L1", None, now);
    sim.register_person(PAGE_A, "P1", now);
    sim.update_page_features(PageFeaturesUpdate {
        restricted: Some(true),
        ..features(PAGE_A)
    });
    for body in [
        login("L1"),
        psid("P1", "RESPONSE"),
        phone(),
        login("unknown"),
    ] {
        send(&sim, TOKEN_A, &body)
            .await
            .assert_err(10, Some(1893063));
    }
    // Sender actions too, and on the /{page_id}/messages path.
    let typing = json!({"recipient": {"id": "P1"}, "sender_action": "TYPING_ON"});
    post(
        &sim,
        &format!("/v25.0/{PAGE_A}/messages?access_token={TOKEN_A}"),
        &typing,
    )
    .await
    .assert_err(10, Some(1893063));
    // Other Pages are not affected.
    send(&sim, TOKEN_B, &phone()).await.assert_ok();
    assert_eq!(
        sim.stats().rejected_by_code_subcode["10/1893063"],
        5,
        "{:?}",
        sim.stats()
    );
    // Lifted: the login_id was not used up.
    sim.update_page_features(PageFeaturesUpdate {
        restricted: Some(false),
        ..features(PAGE_A)
    });
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
}

#[tokio::test]
async fn login_id_without_pages_messaging_is_the_faq_parameter_error() {
    let sim = sim().await;
    let now = sim.now_ms();
    sim.register_login_id("L1", None, now);
    sim.register_person(PAGE_A, "P1", now);
    sim.update_page_features(PageFeaturesUpdate {
        pages_messaging: Some(false),
        ..features(PAGE_A)
    });
    let r = send(&sim, TOKEN_A, &login("L1")).await;
    r.assert_err(100, None);
    assert_eq!(
        r.message(),
        "(#100) Param recipient[id] must be a valid ID string"
    );
    let r = send(&sim, TOKEN_A, &psid("P1", "RESPONSE")).await;
    r.assert_err(10, None);
    assert!(r.message().contains("pages_messaging"), "{}", r.body);
    // Another Page of the same sim still has it; the id is not used up.
    sim.update_page_features(PageFeaturesUpdate {
        pages_messaging: Some(true),
        ..features(PAGE_A)
    });
    send(&sim, TOKEN_A, &login("L1")).await.assert_ok();
}

#[tokio::test]
async fn phone_number_needs_pages_messaging_phone_number() {
    let sim = sim().await;
    // On by default (compatibility with older tests).
    send(&sim, TOKEN_A, &phone()).await.assert_ok();
    sim.update_page_features(PageFeaturesUpdate {
        pages_messaging_phone_number: Some(false),
        ..features(PAGE_A)
    });
    send(&sim, TOKEN_A, &phone())
        .await
        .assert_err(200, Some(2018027));
    send(&sim, TOKEN_B, &phone()).await.assert_ok();
}

// ----- Instagram ----------------------------------------------------------------------------

const IG: &str = "17841400000000001";

async fn ig_sim() -> Sim {
    let sim = sim().await;
    sim.update_page_features(PageFeaturesUpdate {
        instagram_account_id: Some(IG.into()),
        ..features(PAGE_A)
    });
    sim
}

fn ig_text(igsid: &str, text: &str) -> Value {
    json!({"messaging_type": "RESPONSE", "recipient": {"id": igsid}, "message": {"text": text}})
}

#[tokio::test]
async fn igsid_via_page_token_has_a_1000_char_limit() {
    let sim = ig_sim().await;
    sim.register_instagram_person(IG, "IGSID1", sim.now_ms());
    let r = send(&sim, TOKEN_A, &ig_text("IGSID1", &"é".repeat(1000))).await;
    r.assert_ok();
    assert_eq!(r.body["recipient_id"], "IGSID1");
    let r = send(&sim, TOKEN_A, &ig_text("IGSID1", &"a".repeat(1001))).await;
    r.assert_err(100, None);
    assert!(r.message().contains("1000"), "{}", r.body);
    // A PSID keeps Messenger's 2000.
    sim.register_person(PAGE_A, "P1", sim.now_ms());
    send(&sim, TOKEN_A, &ig_text("P1", &"a".repeat(2000)))
        .await
        .assert_ok();
    // Another Page (no linked account) does not know the IGSID.
    send(&sim, TOKEN_B, &ig_text("IGSID1", "hi"))
        .await
        .assert_err(100, Some(2018001));
}

#[tokio::test]
async fn igsid_outside_24h_is_2534022() {
    let sim = ig_sim().await;
    sim.freeze_clock();
    let now = sim.now_ms();
    sim.register_instagram_person(IG, "IN", now - DAY_MS + 1);
    sim.register_instagram_person(IG, "OUT", now - DAY_MS);
    send(&sim, TOKEN_A, &ig_text("IN", "hi")).await.assert_ok();
    send(&sim, TOKEN_A, &ig_text("OUT", "hi"))
        .await
        .assert_err(10, Some(2534022));
    // HUMAN_AGENT (with the feature) reaches 7 days on Instagram too.
    sim.update_page_features(PageFeaturesUpdate {
        human_agent: Some(true),
        ..features(PAGE_A)
    });
    send(&sim, TOKEN_A, &tagged(json!({"id": "OUT"}), "HUMAN_AGENT"))
        .await
        .assert_ok();
    sim.register_instagram_person(IG, "OLD", now - 7 * DAY_MS);
    send(&sim, TOKEN_A, &tagged(json!({"id": "OLD"}), "HUMAN_AGENT"))
        .await
        .assert_err(10, Some(2534022));
    // No utility lane on Instagram.
    sim.update_page_features(PageFeaturesUpdate {
        page_utility_messaging: Some(true),
        ..features(PAGE_A)
    });
    send(&sim, TOKEN_A, &utility_template(json!({"id": "IN"})))
        .await
        .assert_err(100, None);
}

#[tokio::test]
async fn instagram_login_path_with_an_ig_user_token() {
    let sim = sim().await; // No Page linked: the Instagram-Login variant.
    sim.register_instagram_token(InstagramTokenRegistration {
        token: "IG_USER_TOKEN".into(),
        ig_account_id: IG.into(),
        expired: false,
    });
    sim.register_instagram_token(InstagramTokenRegistration {
        token: "IG_OLD".into(),
        ig_account_id: IG.into(),
        expired: true,
    });
    sim.freeze_clock();
    let now = sim.now_ms();
    sim.register_instagram_person(IG, "IGSID1", now);
    sim.register_instagram_person(IG, "STALE", now - DAY_MS);
    let path = format!("/v25.0/{IG}/messages?access_token=IG_USER_TOKEN");
    let r = post(&sim, &path, &ig_text("IGSID1", "hi")).await;
    r.assert_ok();
    assert_eq!(r.body["recipient_id"], "IGSID1");
    assert_eq!(sim.messages()[0].page_id, IG);
    post(&sim, &path, &ig_text("IGSID1", &"a".repeat(1001)))
        .await
        .assert_err(100, None);
    post(&sim, &path, &ig_text("STALE", "hi"))
        .await
        .assert_err(10, Some(2534022));
    post(&sim, &path, &ig_text("nobody", "hi"))
        .await
        .assert_err(100, Some(2018001));
    // Only IGSIDs on this path.
    sim.register_login_id("L1", None, now);
    post(&sim, &path, &login("L1")).await.assert_err(100, None);
    // HUMAN_AGENT: no linked Page, so no feature.
    post(&sim, &path, &tagged(json!({"id": "STALE"}), "HUMAN_AGENT"))
        .await
        .assert_err(10, None);
    // Bearer header and /me work; another node does not; expired token.
    let r = sim
        .client
        .post(format!("{}/v25.0/me/messages", sim.base_url()))
        .bearer_auth("IG_USER_TOKEN")
        .json(&ig_text("IGSID1", "again"))
        .send()
        .await
        .unwrap();
    to_resp(r).await.assert_ok();
    post(
        &sim,
        &format!("/v25.0/{PAGE_A}/messages?access_token=IG_USER_TOKEN"),
        &ig_text("IGSID1", "hi"),
    )
    .await
    .assert_err(200, None);
    post(
        &sim,
        &format!("/v25.0/{IG}/messages?access_token=IG_OLD"),
        &ig_text("IGSID1", "hi"),
    )
    .await
    .assert_err(190, Some(463));
    // A Page token cannot post to the IG node.
    post(
        &sim,
        &format!("/v25.0/{IG}/messages?access_token={TOKEN_A}"),
        &ig_text("IGSID1", "hi"),
    )
    .await
    .assert_err(200, None);
    // Attempts name the Instagram account.
    assert_eq!(sim.attempts()[0].page_id.as_deref(), Some(IG));
}

#[tokio::test]
async fn instagram_login_human_agent_uses_the_linked_page_feature() {
    let sim = sim().await;
    sim.update_page_features(PageFeaturesUpdate {
        instagram_account_id: Some(IG.into()),
        human_agent: Some(true),
        ..features(PAGE_A)
    });
    sim.register_instagram_token(InstagramTokenRegistration {
        token: "IG_USER_TOKEN".into(),
        ig_account_id: IG.into(),
        expired: false,
    });
    sim.register_instagram_person(IG, "IGSID1", sim.now_ms() - 3 * DAY_MS);
    post(
        &sim,
        &format!("/v25.0/{IG}/messages?access_token=IG_USER_TOKEN"),
        &tagged(json!({"id": "IGSID1"}), "HUMAN_AGENT"),
    )
    .await
    .assert_ok();
}

// ----- admin API and config ---------------------------------------------------------------

#[tokio::test]
async fn page_features_and_instagram_over_the_admin_api() {
    let sim = sim_with(SimConfig::default().with_page_features(
        PAGE_B,
        PageFeatures {
            human_agent: true,
            ..PageFeatures::default()
        },
    ))
    .await;
    let r = post(
        &sim,
        "/_sim/page_features",
        &json!({"page_id": PAGE_A, "restricted": true, "instagram_account_id": IG}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["restricted"], true);
    assert_eq!(r.body["pages_messaging"], true);
    assert_eq!(r.body["pages_messaging_phone_number"], true);
    assert_eq!(r.body["page_utility_messaging"], false);
    assert_eq!(r.body["human_agent"], false);
    assert_eq!(r.body["instagram_account_id"], IG);
    let all = get(&sim, "/_sim/page_features").await.body;
    assert_eq!(all[PAGE_A]["restricted"], true);
    assert_eq!(all[PAGE_B]["human_agent"], true);
    assert_eq!(
        post(
            &sim,
            "/_sim/page_features",
            &json!({"page_id": PAGE_A, "nope": 1})
        )
        .await
        .status,
        400
    );
    let ok = |r: Resp| assert_eq!(r.status, 200, "{}", r.body);
    ok(post(
        &sim,
        "/_sim/instagram_tokens",
        &json!({"token": "IGT", "ig_account_id": IG}),
    )
    .await);
    ok(post(
        &sim,
        "/_sim/instagram_people",
        &json!({"ig_account_id": IG, "igsid": "S1", "last_user_message_at_ms": sim.now_ms()}),
    )
    .await);
    post(
        &sim,
        &format!("/v25.0/{IG}/messages?access_token=IGT"),
        &ig_text("S1", "hi"),
    )
    .await
    .assert_ok();
    send(&sim, TOKEN_A, &phone())
        .await
        .assert_err(10, Some(1893063));

    // Reset: configured flags stay, admin flags and Instagram state go.
    sim.reset();
    assert!(!sim.page_features(PAGE_A).restricted);
    assert!(sim.page_features(PAGE_B).human_agent);
    post(
        &sim,
        &format!("/v25.0/{IG}/messages?access_token=IGT"),
        &ig_text("S1", "hi"),
    )
    .await
    .assert_err(190, None);
}

#[test]
fn page_features_in_a_json_config() {
    let c: SimConfig = serde_json::from_str(
        r#"{"page_features": {"1001": {"human_agent": true, "restricted": true}}}"#,
    )
    .unwrap();
    let f = &c.page_features["1001"];
    assert!(f.human_agent && f.restricted && f.pages_messaging && f.pages_messaging_phone_number);
    assert!(!f.page_utility_messaging);
}
