//! `GET /v1/people` and Meta's data-deletion callback through the router, as the people
//! Lambdas serve them: on the in-memory table, and on DynamoDB (moto), where a scan of the whole
//! table proves the deletion left no item of the person.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use lc_api::Api;
use lc_core::lifecycle::processor::{
    login_event_with, Lifecycle, LifecycleConfig, LifecyclePorts, LoginIdentity,
};
use lc_core::login::login_id::derive_login_id;
use lc_core::memory::{ManualClock, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::people::deletion::{DataDeletion, DeletionConfig};
use lc_core::people::signed_request;
use lc_core::people::People;
use lc_core::ports::store::{MarketingToken, ReferralInfo, TokenStatus};
use lc_core::ports::{
    IdentityStore, NoBus, NoMetrics, OptinStore, PageStore, PersonStore, QuarantineStore,
    RequestStore, SecretSource, Table,
};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::{split_body, SplitOutcome};
use tower::ServiceExt;

const T: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;
const PAGE: &str = "100";
const APP: &str = "1";
const APP_SECRET: &str = "people-app-secret";
const SECOND_APP_SECRET: &str = "second-app-secret";
const CLIENT_TOKEN: &str = "people-client-token";
const ASID: &str = "7000000042";
const HOST: &str = "abc123.lambda-url.eu-west-1.on.aws";

fn secrets() -> Arc<Secrets> {
    let app = |id: &str, secret: &str, ct: &str| AppCredentials {
        app_id: id.into(),
        app_secret: Secret::new(secret),
        client_token: Secret::new(ct),
    };
    Arc::new(Secrets {
        apps: vec![
            app("2", SECOND_APP_SECRET, ""),
            app(APP, APP_SECRET, CLIENT_TOKEN),
        ],
        verify_token: Secret::new("vt"),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new("page-token"))]),
        ..Secrets::default()
    })
}

trait Store:
    OptinStore + PersonStore + PageStore + QuarantineStore + IdentityStore + RequestStore
{
}
impl<T> Store for T where
    T: OptinStore + PersonStore + PageStore + QuarantineStore + IdentityStore + RequestStore
{
}

struct World {
    router: Router,
    events: Lifecycle,
    clock: ManualClock,
    /// Unique per run: tests share one moto table.
    psid: String,
    other_psid: String,
    external_id: String,
    login_id: String,
}

fn world<S: Store + 'static>(store: Arc<S>, run: &str) -> World {
    let clock = ManualClock::at(T);
    let table = Table::new(store);
    let secrets: Arc<dyn SecretSource> = Arc::new(secrets());
    let events = Lifecycle::new(
        LifecyclePorts {
            table: table.clone(),
            scheduler: Arc::new(MemoryScheduler::new()),
            jobs: Arc::new(MemoryQueue::new("outbound")),
            secrets: secrets.clone(),
            bus: Arc::new(NoBus),
            clock: Arc::new(clock.clone()),
            metrics: Arc::new(NoMetrics),
        },
        LifecycleConfig::default(),
    );
    let people = People::new(table.clone(), Arc::new(clock.clone()));
    let deletion = DataDeletion::new(
        table,
        secrets,
        Arc::new(clock.clone()),
        DeletionConfig {
            default_page_id: PAGE.into(),
            public_base_url: None,
        },
    );
    let router = Api::new()
        .people(Arc::new(people))
        .deletion(Arc::new(deletion))
        .router();
    // The ASID is per run too, so the derived login_id is.
    let asid = format!("{ASID}{}", run.len());
    World {
        router,
        events,
        clock,
        psid: format!("{run}-psid"),
        other_psid: format!("{run}-other-psid"),
        external_id: format!("{run}-user@shop.example"),
        login_id: derive_login_id(CLIENT_TOKEN, &asid, APP, PAGE),
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(router: &Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(router: &Router, uri: &str) -> Answer {
    let req = Request::builder()
        .method("GET")
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    call(router, req).await
}

async fn delete_request(router: &Router, body: String) -> Answer {
    let req = Request::builder()
        .method("POST")
        .uri("/data-deletion")
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    call(router, req).await
}

fn signed_body(user_id: &str, issued_at: i64, expires: i64, secret: &str) -> String {
    let payload = format!(
        r#"{{"algorithm":"HMAC-SHA256","expires":{expires},"issued_at":{issued_at},"user_id":"{user_id}"}}"#
    );
    let signed = signed_request::sign(&payload, secret);
    // Form-encoded as Meta sends it (padding, if any, percent-encoded).
    format!("signed_request={}", signed.replace('=', "%3D"))
}

fn reply_event(psid: &str, ts: i64, prior: Option<&str>) -> lc_core::webhook::InboundEvent {
    let prior = prior
        .map(|p| format!(r#","prior_message":{{"source":"login_connect","identifier":"{p}"}}"#))
        .unwrap_or_default();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{ts},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"message":{{"mid":"m-{psid}-{ts}","text":"hi"}}{prior}}}]}}]}}"#
    );
    match split_body(body.as_bytes(), ts) {
        SplitOutcome::Events(mut e) => e.remove(0),
        other => panic!("{other:?}"),
    }
}

/// A login with the business's id, the reply that joins the PSID, a marketing token and a
/// referral; and a neighbour on the same Page who must survive the deletion.
async fn story<S: Store + 'static>(w: &World, store: &S, asid: &str) {
    let identity = LoginIdentity {
        app_id: APP.into(),
        asid: asid.into(),
        external_id: Some(w.external_id.clone()),
    };
    let login = login_event_with(PAGE, &w.login_id, T, T, Some(&identity)).expect("event");
    w.events.process(&login).await.expect("login");
    w.clock.set(T + HOUR);
    w.events
        .process(&reply_event(&w.psid, T + HOUR, Some(&w.login_id)))
        .await
        .expect("reply");
    let token = MarketingToken {
        topic: "deals".into(),
        token: Some("mkt-token".into()),
        status: TokenStatus::Active,
        expires_at_ms: None,
        status_at_ms: T + HOUR,
    };
    store.set_token(PAGE, &w.psid, &token).await.expect("token");
    let referral = ReferralInfo {
        reference: Some("summer".into()),
        source: Some("SHORTLINK".into()),
        ad_id: None,
        at_ms: T + HOUR,
    };
    store
        .record_referral(PAGE, &w.psid, &referral)
        .await
        .expect("referral");
    w.events
        .process(&reply_event(&w.other_psid, T + HOUR, None))
        .await
        .expect("neighbour");
}

/// The whole HTTP flow on one store: lookups, refused deletions, the deletion, its status.
async fn flow<S: Store + 'static>(store: Arc<S>, run: &str) -> World {
    let w = world(store.clone(), run);
    let asid = format!("{ASID}{}", run.len());
    story(&w, store.as_ref(), &asid).await;
    w.clock.set(T + 2 * HOUR);

    // Lookups: the same person from each id.
    let by_x = get(
        &w.router,
        &format!("/v1/people?external_id={}", w.external_id),
    )
    .await;
    assert_eq!(by_x.status, 200, "{}", by_x.body);
    assert_eq!(by_x.content_type, "application/json");
    let v = by_x.json();
    let person = &v["people"][0];
    assert_eq!(person["identities"]["psid"], w.psid.as_str());
    assert_eq!(person["identities"]["login_id"], w.login_id.as_str());
    assert_eq!(person["identities"]["asid"], asid.as_str());
    assert_eq!(person["window"]["open"], true);
    assert_eq!(person["last_referral"]["ref"], "summer");
    assert_eq!(person["optins"][0]["state"], "answered");
    assert_eq!(person["optins"][0]["generation"], 1);
    let by_psid = get(
        &w.router,
        &format!("/v1/people?psid={}&page_id={PAGE}", w.psid),
    )
    .await;
    assert_eq!(by_psid.json(), v);
    let by_login = get(&w.router, &format!("/v1/people?login_id={}", w.login_id)).await;
    assert_eq!(by_login.json(), v);

    for (uri, status) in [
        ("/v1/people", 400),
        ("/v1/people?psid=1", 400),
        ("/v1/people?login_id=a&user_ref=b", 400),
        ("/v1/people?external_id=a%23b", 400),
        ("/v1/people?email=x", 400),
        ("/v1/people?user_ref=nobody-at-all", 404),
    ] {
        let a = get(&w.router, uri).await;
        assert_eq!(a.status, status, "{uri}: {}", a.body);
    }
    let post = Request::builder()
        .method("POST")
        .uri("/v1/people")
        .body(Body::empty())
        .expect("request");
    assert_eq!(call(&w.router, post).await.status, 405);

    // Deletion requests that must not delete anything.
    let now_secs = (T + 2 * HOUR) / 1000;
    let forged = delete_request(
        &w.router,
        signed_body(&asid, now_secs, now_secs + 60, "not-our-secret"),
    )
    .await;
    assert_eq!(
        (forged.status, forged.body.as_str()),
        (401, "{\"error\":\"invalid_signature\"}")
    );
    let expired = delete_request(
        &w.router,
        signed_body(&asid, now_secs - 600, now_secs - 1, APP_SECRET),
    )
    .await;
    assert_eq!(
        (expired.status, expired.body.as_str()),
        (401, "{\"error\":\"expired\"}")
    );
    for malformed in [
        "".to_string(),
        "user_id=1".to_string(),
        "signed_request=no-dot".to_string(),
        "signed_request=%%%.%%%".to_string(),
        format!(
            "signed_request={}",
            signed_request::sign("not json", APP_SECRET)
        ),
    ] {
        let a = delete_request(&w.router, malformed.clone()).await;
        assert_eq!(a.status, 400, "{malformed}: {}", a.body);
        assert_eq!(a.json()["error"], "bad_request");
    }
    let huge = delete_request(&w.router, format!("signed_request={}", "a".repeat(9_000))).await;
    assert_eq!(huge.status, 413);
    assert_eq!(
        get(
            &w.router,
            &format!("/v1/people?external_id={}", w.external_id)
        )
        .await
        .status,
        200,
        "nothing deleted yet"
    );

    // The real request (signed by the Login app, the second one in the secret).
    let ok = delete_request(
        &w.router,
        signed_body(&asid, now_secs, now_secs + 60, APP_SECRET),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    let code = v["confirmation_code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 32);
    assert_eq!(
        v["url"],
        format!("https://{HOST}/data-deletion/status?code={code}").as_str()
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(2));

    for uri in [
        format!("/v1/people?external_id={}", w.external_id),
        format!("/v1/people?psid={}&page_id={PAGE}", w.psid),
        format!("/v1/people?login_id={}", w.login_id),
    ] {
        assert_eq!(get(&w.router, &uri).await.status, 404, "{uri}");
    }
    let neighbour = get(
        &w.router,
        &format!("/v1/people?psid={}&page_id={PAGE}", w.other_psid),
    )
    .await;
    assert_eq!(neighbour.status, 200, "the neighbour stays");

    // The status page, for the person and for machines.
    let page = get(&w.router, &format!("/data-deletion/status?code={code}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(
        page.body.contains(&code) && page.body.contains("Completed"),
        "{}",
        page.body
    );
    let req = Request::builder()
        .uri(format!("/data-deletion/status?code={code}"))
        .header("accept", "application/json")
        .body(Body::empty())
        .expect("request");
    let status = call(&w.router, req).await.json();
    assert_eq!(status["status"], "completed");
    // Opt-in, two index items (external_id, ASID), person, token.
    assert_eq!(status["items_deleted"], 5);
    assert_eq!(
        get(
            &w.router,
            &format!("/data-deletion/status?code={}", "0".repeat(32))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(&w.router, "/data-deletion/status?code=x").await.status,
        400
    );
    assert_eq!(get(&w.router, "/data-deletion").await.status, 405);
    assert_eq!(get(&w.router, "/elsewhere").await.status, 404);

    // Meta asking again: the same code, nothing more to delete.
    let again = delete_request(
        &w.router,
        signed_body(&asid, now_secs, now_secs + 60, APP_SECRET),
    )
    .await;
    assert_eq!(again.json()["confirmation_code"], code.as_str());
    w
}

#[tokio::test]
async fn people_and_data_deletion_on_the_in_memory_table() {
    let store = Arc::new(MemoryStore::new());
    let w = flow(store.clone(), "mem").await;
    assert!(store.get_tokens(PAGE, &w.psid).await.unwrap().is_empty());
    assert!(store.get_person(PAGE, &w.psid).await.unwrap().is_none());
}

mod moto {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use lc_adapters::dynamodb::{create_table, DynamoStore};

    /// Every string in an item, keys and nested values included.
    fn strings(v: &AttributeValue, out: &mut Vec<String>) {
        match v {
            AttributeValue::S(s) => out.push(s.clone()),
            AttributeValue::Ss(ss) => out.extend(ss.iter().cloned()),
            AttributeValue::N(n) => out.push(n.clone()),
            AttributeValue::L(l) => l.iter().for_each(|x| strings(x, out)),
            AttributeValue::M(m) => m.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }

    #[tokio::test]
    #[ignore = "needs moto: run tests/run.sh"]
    async fn the_deletion_leaves_no_item_of_the_person_in_the_table() {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        assert!(
            endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
            "AWS_ENDPOINT_URL must point at a local moto server (run tests/run.sh), got {endpoint:?}"
        );
        let sdk = lc_adapters::aws::load_config().await.expect("aws config");
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let table = format!("lc-people-{}", std::process::id());
        create_table(&client, &table).await.expect("table");
        let store = Arc::new(DynamoStore::new(client, table));
        let run = format!("moto{}", std::process::id());

        // Before: the person's ids are all over the table.
        let w = world(store.clone(), &run);
        let asid = format!("{ASID}{}", run.len());
        let items_with = |items: &[std::collections::HashMap<String, AttributeValue>],
                          needle: &str| {
            items
                .iter()
                .filter(|item| {
                    let mut all = Vec::new();
                    item.values().for_each(|v| strings(v, &mut all));
                    all.iter().any(|s| s.contains(needle))
                })
                .count()
        };
        story(&w, store.as_ref(), &asid).await;
        let before = store.scan_all().await.expect("scan");
        for id in [&w.psid, &w.login_id, &w.external_id, &asid] {
            assert!(items_with(&before, id) > 0, "{id} is stored before");
        }
        drop(w);

        let w = flow(store.clone(), &run).await;
        let after = store.scan_all().await.expect("scan");
        for id in [
            &w.psid,
            &w.login_id,
            &w.external_id,
            &asid,
            &"mkt-token".to_string(),
        ] {
            assert_eq!(items_with(&after, id), 0, "{id} is gone from every item");
        }
        assert!(items_with(&after, &w.other_psid) > 0, "the neighbour stays");
        let receipts = after
            .iter()
            .filter(|i| matches!(i.get("pk"), Some(AttributeValue::S(pk)) if pk.starts_with("DELETION#")))
            .count();
        assert_eq!(receipts, 1, "one receipt, holding no id");
    }
}
