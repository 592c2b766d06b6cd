//! One identity per person, on the in-memory adapters: the login callback's signed business id
//! and ASID reach the opt-in, the index and the events; a reply joins the PSID; the lookup
//! answers from any id; the funnel counts each step once; a deletion request removes it all.

use std::collections::BTreeMap;
use std::sync::Arc;

use lc_core::bus::DetailType;
use lc_core::funnel::FunnelStage;
use lc_core::lifecycle::optin::{EntryPoint, DAY_MS};
use lc_core::lifecycle::processor::{
    login_event_with, Lifecycle, LifecycleConfig, LifecyclePorts, LoginIdentity,
};
use lc_core::lifecycle::refs;
use lc_core::login::login_id::derive_login_id;
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::people::deletion::{DataDeletion, DeletionAnswer, DeletionConfig, StatusAnswer};
use lc_core::people::signed_request::{self, Refused};
use lc_core::people::{Lookup, LookupAnswer, People};
use lc_core::ports::identity::{DeletionStatus, IndexedId};
use lc_core::ports::store::{MarketingToken, QuarantinedRecord, TokenStatus};
use lc_core::ports::{
    IdentityStore, MemoryMetrics, Metric, OptinStore, PersonStore, QuarantineStore, Table,
};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::{split_body, InboundEvent, SplitOutcome};

const T: i64 = 1_800_000_000_000;
const PAGE: &str = "100";
const APP: &str = "1";
const APP_SECRET: &str = "app-secret";
const CLIENT_TOKEN: &str = "client-token";
const ASID: &str = "9000000001";
const REF_KEY: [u8; 32] = [7; 32];

struct World {
    store: Arc<MemoryStore>,
    bus: Arc<MemoryBus>,
    metrics: Arc<MemoryMetrics>,
    clock: ManualClock,
    events: Lifecycle,
    secrets: Arc<Secrets>,
}

fn secrets() -> Arc<Secrets> {
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, REF_KEY);
    Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: APP.into(),
            app_secret: Secret::new(APP_SECRET),
            client_token: Secret::new(CLIENT_TOKEN),
        }],
        verify_token: Secret::new("vt"),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new("page-token"))]),
        ref_keys: BTreeMap::from([("1".to_string(), Secret::new(b64))]),
        ..Secrets::default()
    })
}

fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let bus = Arc::new(MemoryBus::new());
    let metrics = Arc::new(MemoryMetrics::new());
    let clock = ManualClock::at(T + 5_000);
    let secrets = secrets();
    let events = Lifecycle::new(
        LifecyclePorts {
            table: Table::new(store.clone()),
            scheduler: Arc::new(MemoryScheduler::new()),
            jobs: Arc::new(MemoryQueue::new("outbound")),
            secrets: Arc::new(secrets.clone()),
            bus: bus.clone(),
            clock: Arc::new(clock.clone()),
            metrics: metrics.clone(),
        },
        LifecycleConfig::default(),
    );
    World {
        store,
        bus,
        metrics,
        clock,
        events,
        secrets,
    }
}

impl World {
    fn login_id(&self) -> String {
        derive_login_id(CLIENT_TOKEN, ASID, APP, PAGE)
    }

    fn people(&self) -> People {
        People::new(Table::new(self.store.clone()), Arc::new(self.clock.clone()))
    }

    fn deletion(&self) -> DataDeletion {
        DataDeletion::new(
            Table::new(self.store.clone()),
            Arc::new(self.secrets.clone()),
            Arc::new(self.clock.clone()),
            DeletionConfig {
                default_page_id: PAGE.into(),
                public_base_url: None,
            },
        )
    }

    async fn login(&self, external_id: Option<&str>, at: i64) {
        let identity = LoginIdentity {
            app_id: APP.into(),
            asid: ASID.into(),
            external_id: external_id.map(str::to_string),
        };
        let ev = login_event_with(PAGE, &self.login_id(), at, at, Some(&identity)).unwrap();
        self.events.process(&ev).await.expect("login event");
    }

    async fn lookup(&self, pairs: &[(&str, &str)]) -> serde_json::Value {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match self
            .people()
            .lookup(&Lookup::parse(&pairs).expect("query"))
            .await
            .expect("lookup")
        {
            LookupAnswer::Found(v) => v,
            LookupAnswer::NotFound => serde_json::Value::Null,
        }
    }

    fn funnel(&self) -> Vec<(FunnelStage, EntryPoint)> {
        self.metrics
            .snapshot()
            .into_iter()
            .filter_map(|m| match m {
                Metric::Funnel { stage, entry_point } => Some((stage, entry_point)),
                _ => None,
            })
            .collect()
    }
}

fn one(item: &str) -> InboundEvent {
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{T},"messaging":[{item}]}}]}}"#
    );
    match split_body(body.as_bytes(), T + 1_000) {
        SplitOutcome::Events(mut e) => e.remove(0),
        other => panic!("fixture must parse: {other:?}"),
    }
}

fn reply(psid: &str, ts: i64, prior: &str) -> InboundEvent {
    one(&format!(
        r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"message":{{"mid":"m-{ts}","text":"hi"}},"prior_message":{{"source":"login_connect","identifier":"{prior}"}}}}"#
    ))
}

#[tokio::test]
async fn the_login_callback_stores_the_business_id_and_the_reply_joins_the_psid() {
    let w = world();
    w.login(Some("user-42"), T).await;
    let key = format!("OPTIN#login_id#{}", w.login_id());
    let o = w.store.get_optin(&key).await.unwrap().expect("opt-in");
    assert_eq!(o.external_id.as_deref(), Some("user-42"));
    assert_eq!(o.asid.as_deref(), Some(ASID));

    let x = w
        .store
        .pointers(&IndexedId::ExternalId("user-42".into()))
        .await
        .unwrap();
    assert_eq!(x.len(), 1);
    assert_eq!(
        (x[0].optin_key.as_str(), x[0].page_id.as_str()),
        (key.as_str(), PAGE)
    );
    let by_asid = IndexedId::Asid {
        app_id: APP.into(),
        asid: ASID.into(),
    };
    assert_eq!(w.store.pointers(&by_asid).await.unwrap().len(), 1);

    let optin_event = w
        .bus
        .events()
        .into_iter()
        .find(|e| e.detail_type == DetailType::OptInReceived)
        .expect("OptInReceived");
    assert_eq!(
        optin_event.detail.person.external_id.as_deref(),
        Some("user-42")
    );

    w.bus.take();
    w.events
        .process(&reply("P1", T + HOUR, &w.login_id()))
        .await
        .unwrap();
    let person = w
        .store
        .get_person(PAGE, "P1")
        .await
        .unwrap()
        .expect("person");
    assert_eq!(person.external_id.as_deref(), Some("user-42"));
    let published = w.bus.events();
    for t in [DetailType::MessageReceived, DetailType::PersonLinked] {
        let e = published
            .iter()
            .find(|e| e.detail_type == t)
            .unwrap_or_else(|| panic!("{t:?} published"));
        assert_eq!(
            e.detail.person.external_id.as_deref(),
            Some("user-42"),
            "{t:?}"
        );
        assert_eq!(e.detail.person.psid.as_deref(), Some("P1"), "{t:?}");
    }

    // The same reply again: the funnel counted it once.
    w.events
        .process(&reply("P1", T + HOUR, &w.login_id()))
        .await
        .unwrap();
    assert_eq!(
        w.funnel(),
        vec![
            (FunnelStage::Optin, EntryPoint::LoginConnect),
            (FunnelStage::Reply24h, EntryPoint::LoginConnect),
            (FunnelStage::Reply7d, EntryPoint::LoginConnect),
        ]
    );
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn the_webhook_first_then_the_login_teaches_the_opt_in_its_ids() {
    let w = world();
    let webhook = one(&format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"login_id":"{}"}}}}"#,
        w.login_id()
    ));
    w.events.process(&webhook).await.unwrap();
    w.login(Some("user-7"), T + 1_000).await;
    let key = format!("OPTIN#login_id#{}", w.login_id());
    let o = w.store.get_optin(&key).await.unwrap().expect("opt-in");
    assert_eq!(o.external_id.as_deref(), Some("user-7"));
    assert_eq!(o.asid.as_deref(), Some(ASID));
    assert_eq!(o.generation, 1, "the same grant: no new generation");
    let last = w.bus.events().pop().expect("events");
    assert_eq!(last.detail_type, DetailType::OptInReceived);
    assert_eq!(last.detail.person.external_id.as_deref(), Some("user-7"));
    assert_eq!(
        w.funnel(),
        vec![(FunnelStage::Optin, EntryPoint::LoginConnect)],
        "one opt-in, counted once"
    );
}

#[tokio::test]
async fn a_signed_plugin_ref_may_carry_the_business_id() {
    let w = world();
    let signed = refs::mint(1, &REF_KEY, br#"{"external_id":"user-9"}"#, T / 1000 + 3600).unwrap();
    let s2m = one(&format!(
        r#"{{"sender":{{"id":"P9"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"ref":"{signed}"}}}}"#
    ));
    w.events.process(&s2m).await.unwrap();
    let o = w
        .store
        .get_optin(&format!("OPTIN#psid#{PAGE}#P9"))
        .await
        .unwrap()
        .expect("opt-in");
    assert_eq!(o.external_id.as_deref(), Some("user-9"));
    let found = w.lookup(&[("external_id", "user-9")]).await;
    assert_eq!(found["people"][0]["identities"]["psid"], "P9");

    // An unsigned ref naming an id is opaque data: it names nobody.
    let opaque = one(&format!(
        r#"{{"sender":{{"id":"P10"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"ref":"{{\"external_id\":\"user-9\"}}"}}}}"#
    ));
    w.events.process(&opaque).await.unwrap();
    let o = w
        .store
        .get_optin(&format!("OPTIN#psid#{PAGE}#P10"))
        .await
        .unwrap()
        .expect("opt-in");
    assert_eq!(o.external_id, None);
}

/// Only a Send-to-Messenger ref names the person (docs/people.md): a checkbox opt-in keeps its
/// signed ref for the first-message events, and names nobody by it. Mutation check: drop the
/// entry-point filter in `new_optin` and this fails.
#[tokio::test]
async fn a_checkbox_ref_is_kept_but_names_nobody() {
    let w = world();
    let signed = refs::mint(1, &REF_KEY, br#"{"external_id":"user-9"}"#, T / 1000 + 3600).unwrap();
    let checkbox = one(&format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"ref":"{signed}","user_ref":"U9"}}}}"#
    ));
    w.events.process(&checkbox).await.unwrap();
    let o = w
        .store
        .get_optin("OPTIN#user_ref#U9")
        .await
        .unwrap()
        .expect("opt-in");
    assert_eq!(
        o.reference.map(|r| (r.raw, r.status)),
        Some((signed, "valid".to_string()))
    );
    assert_eq!(o.external_id, None);
}

#[tokio::test]
async fn the_lookup_answers_from_any_id() {
    let w = world();
    w.login(Some("user-42"), T).await;
    let login_id = w.login_id();
    let before = w.lookup(&[("external_id", "user-42")]).await;
    let entry = &before["people"][0];
    assert_eq!(entry["identities"]["login_id"], login_id.as_str());
    assert_eq!(entry["identities"]["asid"], ASID);
    assert_eq!(entry["window"]["open"], false);
    assert_eq!(entry["optins"][0]["state"], "pending");

    w.events
        .process(&reply("P1", T + HOUR, &login_id))
        .await
        .unwrap();
    w.clock.set(T + 2 * HOUR);
    let by_x = w.lookup(&[("external_id", "user-42")]).await;
    let by_login = w.lookup(&[("login_id", &login_id)]).await;
    let by_psid = w.lookup(&[("psid", "P1"), ("page_id", PAGE)]).await;
    assert_eq!(by_x, by_login);
    assert_eq!(by_x, by_psid);
    let entry = &by_x["people"][0];
    assert_eq!(by_x["people"].as_array().map(Vec::len), Some(1));
    assert_eq!(entry["identities"]["psid"], "P1");
    assert_eq!(entry["identities"]["external_id"], "user-42");
    assert_eq!(entry["window"]["open"], true);
    assert_eq!(entry["window"]["until"], "2027-01-16T09:00:00.000Z");
    assert_eq!(entry["optins"][0]["state"], "answered");
    assert_eq!(entry["opted_out"], serde_json::Value::Null);

    w.clock.set(T + HOUR + DAY_MS);
    let later = w.lookup(&[("psid", "P1"), ("page_id", PAGE)]).await;
    assert_eq!(
        later["people"][0]["window"]["open"], false,
        "closed at 24 h"
    );

    assert_eq!(
        w.lookup(&[("external_id", "user-42"), ("page_id", "999")])
            .await,
        serde_json::Value::Null,
        "another Page's filter finds nothing"
    );
    assert_eq!(
        w.lookup(&[("user_ref", "nobody")]).await,
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_reply_a_week_late_counts_only_within_seven_days() {
    let w = world();
    w.login(None, T).await;
    w.events
        .process(&reply("P2", T + 3 * DAY_MS, &w.login_id()))
        .await
        .unwrap();
    assert_eq!(
        w.funnel(),
        vec![
            (FunnelStage::Optin, EntryPoint::LoginConnect),
            (FunnelStage::Reply7d, EntryPoint::LoginConnect),
        ]
    );
}

fn deletion_body(user_id: &str, issued_at: i64, expires: i64, secret: &str) -> Vec<u8> {
    let payload = format!(
        r#"{{"algorithm":"HMAC-SHA256","expires":{expires},"issued_at":{issued_at},"user_id":"{user_id}"}}"#
    );
    format!("signed_request={}", signed_request::sign(&payload, secret)).into_bytes()
}

#[tokio::test]
async fn a_deletion_request_removes_everything_of_that_person_and_nothing_else() {
    let w = world();
    w.login(Some("user-42"), T).await;
    w.events
        .process(&reply("P1", T + HOUR, &w.login_id()))
        .await
        .unwrap();
    let token = MarketingToken {
        topic: "deals".into(),
        token: Some("tok".into()),
        status: TokenStatus::Active,
        expires_at_ms: None,
        status_at_ms: T + HOUR,
    };
    w.store.set_token(PAGE, "P1", &token).await.unwrap();
    // Someone else on the same Page stays.
    w.events
        .process(&reply("P-other", T + HOUR, "another-login-id"))
        .await
        .unwrap();

    let now_secs = (T + 2 * HOUR) / 1000;
    w.clock.set(T + 2 * HOUR);
    let forged = deletion_body(ASID, now_secs, now_secs + 60, "not-our-secret");
    assert_eq!(
        w.deletion().request(&forged).await,
        DeletionAnswer::Refused(Refused::Forged)
    );
    let expired = deletion_body(ASID, now_secs - 120, now_secs - 60, APP_SECRET);
    assert_eq!(
        w.deletion().request(&expired).await,
        DeletionAnswer::Refused(Refused::Expired)
    );
    assert!(matches!(
        w.deletion().request(b"signed_request=abc").await,
        DeletionAnswer::Refused(Refused::Malformed(_))
    ));
    assert!(w.lookup(&[("external_id", "user-42")]).await.is_object());

    let body = deletion_body(ASID, now_secs, now_secs + 60, APP_SECRET);
    let DeletionAnswer::Accepted { confirmation_code } = w.deletion().request(&body).await else {
        panic!("accepted");
    };
    assert_eq!(
        w.lookup(&[("external_id", "user-42")]).await,
        serde_json::Value::Null
    );
    assert_eq!(
        w.lookup(&[("login_id", &w.login_id())]).await,
        serde_json::Value::Null
    );
    assert_eq!(
        w.lookup(&[("psid", "P1"), ("page_id", PAGE)]).await,
        serde_json::Value::Null
    );
    assert!(w.store.get_tokens(PAGE, "P1").await.unwrap().is_empty());
    assert!(w
        .store
        .pointers(&IndexedId::Asid {
            app_id: APP.into(),
            asid: ASID.into()
        })
        .await
        .unwrap()
        .is_empty());
    assert!(w.store.get_person(PAGE, "P-other").await.unwrap().is_some());

    match w.deletion().status(&confirmation_code).await {
        StatusAnswer::Found(r) => {
            assert_eq!(r.status, DeletionStatus::Completed);
            // Opt-in, its two index items, the person and the token.
            assert_eq!(r.items_deleted, 5);
        }
        other => panic!("{other:?}"),
    }
    // Asked again: the same code, nothing left to delete.
    assert_eq!(
        w.deletion().request(&body).await,
        DeletionAnswer::Accepted {
            confirmation_code: confirmation_code.clone()
        }
    );
    assert_eq!(
        w.deletion().status(&"0".repeat(32)).await,
        StatusAnswer::NotFound
    );
    assert!(matches!(
        w.deletion().status("nope").await,
        StatusAnswer::BadRequest(_)
    ));
    assert_eq!(
        w.store
            .get_optin(&format!("OPTIN#login_id#{}", w.login_id()))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn quarantined_events_naming_the_person_go_too() {
    let w = world();
    w.login(None, T).await;
    w.events
        .process(&reply("PSID-77777", T + HOUR, &w.login_id()))
        .await
        .unwrap();
    let rec = |id: &str, json: &str| QuarantinedRecord {
        id: id.into(),
        reason: "x".into(),
        received_at_ms: T,
        event_json: json.into(),
    };
    w.store
        .put_quarantined(&rec("1#mine", r#"{"item":{"sender":{"id":"PSID-77777"}}}"#))
        .await
        .unwrap();
    w.store
        .put_quarantined(&rec(
            "2#other",
            r#"{"item":{"sender":{"id":"PSID-88888"}}}"#,
        ))
        .await
        .unwrap();
    let now_secs = (T + 2 * HOUR) / 1000;
    w.clock.set(T + 2 * HOUR);
    let body = deletion_body(ASID, now_secs, now_secs + 60, APP_SECRET);
    assert!(matches!(
        w.deletion().request(&body).await,
        DeletionAnswer::Accepted { .. }
    ));
    let left: Vec<String> = w
        .store
        .list_quarantined(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec!["2#other".to_string()]);
}
