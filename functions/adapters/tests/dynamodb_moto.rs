//! DynamoStore against moto over real HTTP: the whole store contract, the request counts per
//! call, and the item shapes an operator sees in the console.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use lc_adapters::dynamodb::{create_table, DynamoStore};
use lc_core::contract::store::{optin, run_all, T0};
use lc_core::lifecycle::optin::Optin;
use lc_core::ports::store::{
    Claim, Created, Finish, Link, LinkResult, MarketingToken, PageConfig, Person,
    QuarantinedRecord, ReferralInfo, Reopened, Unsent, UserMessage,
};
use lc_core::ports::{
    OptinStore, PageStore, PersonStore, PortError, QuarantineStore, RequestCounter,
};
use lc_core::webhook::{Identity, IdentityKind};

async fn store() -> (DynamoStore, Arc<RequestCounter>) {
    let sdk = common::moto_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = common::unique("lc-table");
    create_table(&client, &table).await.expect("create table");
    create_table(&client, &table)
        .await
        .expect("creating an existing table is a no-op");
    let counter = Arc::new(RequestCounter::new());
    (
        DynamoStore::new(client, table).with_counter(counter.clone()),
        counter,
    )
}

async fn raw_item(store: &DynamoStore, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("item exists")
}

async fn raw_put(store: &DynamoStore, item: &[(&str, AttributeValue)]) {
    store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(
            item.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
        .send()
        .await
        .expect("put_item");
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// moto's server is threaded and its DynamoDB backend takes no lock, so two conditional writes
/// to one item can both pass their condition (measured on moto 5.2.5: 2 of 20 concurrent claims
/// won in 3 of 6 runs). DynamoDB applies each conditional write atomically; that guarantee is
/// the service's, not the adapter's. So against moto the suite's racing calls go through this
/// gate, one request at a time: it still checks that the conditions let exactly one of them win
/// and that every loser sees the winner's record.
struct OneAtATime {
    inner: DynamoStore,
    gate: tokio::sync::Mutex<()>,
}

impl OneAtATime {
    fn new(inner: DynamoStore) -> Self {
        OneAtATime {
            inner,
            gate: tokio::sync::Mutex::new(()),
        }
    }
}

#[async_trait]
impl OptinStore for OneAtATime {
    async fn create_optin(&self, optin: &Optin) -> Result<Created, PortError> {
        let _g = self.gate.lock().await;
        self.inner.create_optin(optin).await
    }
    async fn get_optin(&self, key: &str) -> Result<Option<Optin>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.get_optin(key).await
    }
    async fn mark_job_enqueued(&self, key: &str, now_ms: i64) -> Result<(), PortError> {
        let _g = self.gate.lock().await;
        self.inner.mark_job_enqueued(key, now_ms).await
    }
    async fn take_job(&self, key: &str, now_ms: i64, until: i64) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.take_job(key, now_ms, until).await
    }
    async fn reopen(&self, seen: &Optin, next: &Optin) -> Result<Reopened, PortError> {
        let _g = self.gate.lock().await;
        self.inner.reopen(seen, next).await
    }
    async fn claim(&self, key: &str, g: u32, now: i64, lease: i64) -> Result<Claim, PortError> {
        let _g = self.gate.lock().await;
        self.inner.claim(key, g, now, lease).await
    }
    async fn finish(&self, key: &str, a: u32, f: &Finish, now: i64) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.finish(key, a, f, now).await
    }
    async fn expire(&self, key: &str, now: i64, r: &str) -> Result<Option<Optin>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.expire(key, now, r).await
    }
    async fn confirm(&self, key: &str, g: u32, at: i64) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.confirm(key, g, at).await
    }
    async fn retry_failed(&self, seen: &Optin, now: i64, note: &str) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.retry_failed(seen, now, note).await
    }
    async fn oldest_unsent(&self, limit: usize) -> Result<Vec<Unsent>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.oldest_unsent(limit).await
    }
}

#[async_trait]
impl PersonStore for OneAtATime {
    async fn get_person(&self, page: &str, psid: &str) -> Result<Option<Person>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.get_person(page, psid).await
    }
    async fn record_user_message(
        &self,
        page: &str,
        psid: &str,
        at: i64,
    ) -> Result<UserMessage, PortError> {
        let _g = self.gate.lock().await;
        self.inner.record_user_message(page, psid, at).await
    }
    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError> {
        let _g = self.gate.lock().await;
        self.inner.link(link, now_ms).await
    }
    async fn record_referral(
        &self,
        page: &str,
        psid: &str,
        referral: &ReferralInfo,
    ) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.record_referral(page, psid, referral).await
    }
    async fn set_token(
        &self,
        page: &str,
        psid: &str,
        token: &MarketingToken,
    ) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.set_token(page, psid, token).await
    }
    async fn get_tokens(&self, page: &str, psid: &str) -> Result<Vec<MarketingToken>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.get_tokens(page, psid).await
    }
    async fn opt_out(
        &self,
        page: &str,
        psid: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), PortError> {
        let _g = self.gate.lock().await;
        self.inner.opt_out(page, psid, reason, at).await
    }
}

#[async_trait]
impl PageStore for OneAtATime {
    async fn get_page(&self, page_id: &str) -> Result<Option<PageConfig>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.get_page(page_id).await
    }
    async fn set_paused(&self, page: &str, r: Option<&str>, at: i64) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.set_paused(page, r, at).await
    }
    async fn list_paused(&self, limit: usize) -> Result<Vec<PageConfig>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.list_paused(limit).await
    }
}

#[async_trait]
impl QuarantineStore for OneAtATime {
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError> {
        let _g = self.gate.lock().await;
        self.inner.put_quarantined(record).await
    }
    async fn list_quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRecord>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.list_quarantined(limit).await
    }
    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError> {
        let _g = self.gate.lock().await;
        self.inner.delete_quarantined(id).await
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn dynamo_store_meets_the_contract() {
    let (store, counter) = store().await;
    run_all(&OneAtATime::new(store), &common::unique("c")).await;
    println!("dynamodb requests for the suite: {:?}", counter.snapshot());
}

/// The follow-up request contract. Racing claims go one at a time, as for the opt-ins (moto
/// does not apply conditions atomically); dynalite races them (`dynamodb_races.rs`).
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn dynamo_store_meets_the_request_contract() {
    let (store, _) = store().await;
    lc_core::contract::requests::run_all(&OneAtATime::new(store), &common::unique("rq")).await;
}

#[async_trait]
impl lc_core::ports::RequestStore for OneAtATime {
    async fn create_request(
        &self,
        r: &lc_core::ports::requests::RequestRecord,
    ) -> Result<lc_core::ports::requests::RequestCreated, PortError> {
        let _g = self.gate.lock().await;
        self.inner.create_request(r).await
    }
    async fn get_request(
        &self,
        page: &str,
        key: &str,
    ) -> Result<Option<lc_core::ports::requests::RequestRecord>, PortError> {
        let _g = self.gate.lock().await;
        self.inner.get_request(page, key).await
    }
    async fn claim_request(
        &self,
        page: &str,
        key: &str,
        now: i64,
        lease: i64,
    ) -> Result<lc_core::ports::requests::RequestClaim, PortError> {
        let _g = self.gate.lock().await;
        self.inner.claim_request(page, key, now, lease).await
    }
    async fn finish_request(
        &self,
        page: &str,
        key: &str,
        attempt: u32,
        f: &lc_core::ports::requests::RequestFinish,
        now: i64,
    ) -> Result<bool, PortError> {
        let _g = self.gate.lock().await;
        self.inner.finish_request(page, key, attempt, f, now).await
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn two_runs_share_one_table() {
    let (store, _) = store().await;
    let gated = OneAtATime::new(store);
    run_all(&gated, &common::unique("a")).await;
    run_all(&gated, &common::unique("b")).await;
}

/// The webhook's confirmation of a login-started opt-in on moto: one conditional UpdateItem
/// that adds `confirmed_at_ms` (a number) to the item and moves `updated_at_ms`; refused (one
/// request, nothing written) once confirmed, for a webhook-started item, and for a missing key.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn confirm_is_one_conditional_update() {
    let (store, counter) = store().await;
    let p = common::unique("cf");
    let mut o = optin(&p, "login");
    o.source = lc_core::lifecycle::optin::OptinSource::Login;
    assert_eq!(store.create_optin(&o).await.unwrap(), Created::Created);
    counter.reset();
    assert!(store.confirm(&o.key(), 1, T0 + 42).await.unwrap());
    assert_eq!(counter.snapshot().get("dynamodb.UpdateItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);
    let item = raw_item(&store, &o.key(), "OPTIN").await;
    assert_eq!(
        item.get("confirmed_at_ms"),
        Some(&AttributeValue::N((T0 + 42).to_string()))
    );
    assert_eq!(
        item.get("updated_at_ms"),
        Some(&AttributeValue::N((T0 + 42).to_string()))
    );
    assert_eq!(item.get("source"), Some(&s("login")));

    counter.reset();
    assert!(!store.confirm(&o.key(), 1, T0 + 99).await.unwrap());
    assert_eq!(counter.total("dynamodb"), 1);
    let again = store.get_optin(&o.key()).await.unwrap().unwrap();
    assert_eq!(
        again.confirmed_at_ms,
        Some(T0 + 42),
        "the first confirmation stays"
    );

    let webhook = optin(&p, "webhook");
    assert_eq!(
        store.create_optin(&webhook).await.unwrap(),
        Created::Created
    );
    assert!(!store.confirm(&webhook.key(), 1, T0 + 42).await.unwrap());
    let item = raw_item(&store, &webhook.key(), "OPTIN").await;
    assert!(!item.contains_key("confirmed_at_ms"));

    let missing = optin(&p, "missing").key();
    assert!(!store.confirm(&missing, 1, T0).await.unwrap());
    assert_eq!(
        store.get_optin(&missing).await.unwrap(),
        None,
        "no partial item"
    );
}

/// The figures behind "requests per opt-in". Against moto 5.2.5 (measured): see the asserts.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn request_counts_per_call() {
    let (store, counter) = store().await;
    let p = common::unique("n");
    let o = optin(&p, "counted");

    assert_eq!(store.create_optin(&o).await.unwrap(), Created::Created);
    assert_eq!(counter.snapshot().get("dynamodb.PutItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1, "{:?}", counter.snapshot());

    counter.reset();
    match store.create_optin(&o).await.unwrap() {
        Created::Exists(e) => assert_eq!(*e, o),
        Created::Created => panic!("duplicate"),
    }
    let dup = counter.snapshot();
    println!("duplicate create: {dup:?}");
    assert_eq!(dup.get("dynamodb.PutItem"), Some(&1));
    // moto 5.2.5 returns the old item with the ConditionalCheckFailedException
    // (ReturnValuesOnConditionCheckFailure=ALL_OLD), like DynamoDB: no follow-up read.
    assert_eq!(dup.get("dynamodb.GetItem"), None, "{dup:?}");
    assert_eq!(counter.total("dynamodb"), 1);

    counter.reset();
    let now = T0 + 1_000;
    let Claim::Claimed(c) = store.claim(&o.key(), 1, now, now + 60_000).await.unwrap() else {
        panic!("claim")
    };
    assert_eq!(c.attempts, 1);
    assert_eq!(counter.snapshot().get("dynamodb.UpdateItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);

    counter.reset();
    let refused = store
        .claim(&o.key(), 1, now + 1, now + 60_000)
        .await
        .unwrap();
    assert!(matches!(refused, Claim::NotClaimable(_)));
    println!("refused claim: {:?}", counter.snapshot());
    assert_eq!(
        counter.total("dynamodb"),
        1,
        "the refused claim returns the holder with its failure: {:?}",
        counter.snapshot()
    );

    counter.reset();
    let link = Link {
        page_id: o.page_id.clone(),
        psid: "psid-counted".into(),
        identifier: o.recipient.clone(),
        optin_key: o.key(),
        at_ms: now + 70_000,
        create_missing: true,
    };
    assert_eq!(
        store.link(&link, now + 70_000).await.unwrap(),
        LinkResult::Linked
    );
    println!("link: {:?}", counter.snapshot());
    // A transaction cannot pick its update from the stored state: one consistent read, then
    // one transaction conditional on what it read.
    assert_eq!(counter.snapshot().get("dynamodb.GetItem"), Some(&1));
    assert_eq!(
        counter.snapshot().get("dynamodb.TransactWriteItems"),
        Some(&1)
    );
    assert_eq!(counter.total("dynamodb"), 2);

    // The answered opt-in is closed: a later opt-in opens generation 2 with one PutItem, and
    // a copy of it from the same read learns of generation 2 from that PutItem's failure.
    let seen = store.get_optin(&o.key()).await.unwrap().expect("opt-in");
    counter.reset();
    let later = |event: &str| {
        seen.next_generation(Optin::pending(
            seen.recipient.clone(),
            &seen.page_id,
            "page",
            seen.entry_point,
            seen.source,
            now + 2 * 86_400_000,
            event,
            now + 2 * 86_400_000,
        ))
    };
    assert_eq!(
        store.reopen(&seen, &later("optin:g2")).await.unwrap(),
        Reopened::Reopened
    );
    assert_eq!(counter.snapshot().get("dynamodb.PutItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);
    counter.reset();
    assert!(matches!(
        store.reopen(&seen, &later("optin:g2-copy")).await.unwrap(),
        Reopened::Changed(c) if c.generation == 2
    ));
    println!("stale reopen: {:?}", counter.snapshot());
    assert_eq!(counter.total("dynamodb"), 1, "{:?}", counter.snapshot());

    counter.reset();
    let missing = optin(&p, "missing").key();
    assert_eq!(
        store.claim(&missing, 1, now, now + 1).await.unwrap(),
        Claim::Missing
    );
    println!("claim of a missing opt-in: {:?}", counter.snapshot());
    assert_eq!(
        counter.snapshot().get("dynamodb.GetItem"),
        Some(&1),
        "no item with the failure: one consistent read tells missing from refused"
    );
}

/// Console-readable items: flat snake_case attributes, numbers as N, flags as BOOL, no NULLs.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn items_are_flat_and_typed() {
    let (store, _) = store().await;
    let p = common::unique("shape");
    let o = optin(&p, "shape");
    store.create_optin(&o).await.unwrap();
    let item = raw_item(&store, &o.key(), "OPTIN").await;
    assert_eq!(item.get("state"), Some(&s("pending")));
    assert_eq!(item.get("recipient_kind"), Some(&s("login_id")));
    assert_eq!(item.get("job_enqueued"), Some(&AttributeValue::Bool(false)));
    assert_eq!(
        item.get("deadline_at_ms"),
        Some(&AttributeValue::N(o.deadline_at_ms.to_string()))
    );
    assert_eq!(item.get("attempts"), Some(&AttributeValue::N("0".into())));
    assert!(!item.values().any(|v| matches!(v, AttributeValue::Null(_))));
    assert!(!item.contains_key("psid") && !item.contains_key("message_id"));

    // A reply-first link writes two complete items.
    let id = Identity::new(IdentityKind::UserRef, format!("{p}-ur"));
    let key = lc_core::lifecycle::optin::optin_key(&id, "100");
    let link = Link {
        page_id: "100".into(),
        psid: format!("{p}-psid"),
        identifier: id,
        optin_key: key.clone(),
        at_ms: T0,
        create_missing: true,
    };
    assert_eq!(store.link(&link, T0).await.unwrap(), LinkResult::Linked);
    let item = raw_item(&store, &key, "OPTIN").await;
    assert_eq!(item.get("state"), Some(&s("answered")));
    assert_eq!(item.get("source"), Some(&s("reply")));
    assert_eq!(item.get("psid"), Some(&s(&link.psid)));
    let person = raw_item(&store, &format!("PSID#100#{}", link.psid), "PERSON").await;
    assert_eq!(person.get("user_ref"), Some(&s(&format!("{p}-ur"))));
    assert_eq!(
        person.get("linked_at_ms"),
        Some(&AttributeValue::N(T0.to_string()))
    );

    // `linked` is a String Set, added to idempotently.
    assert_eq!(
        person.get("linked"),
        Some(&AttributeValue::Ss(vec![format!("user_ref:{p}-ur")]))
    );
    assert_eq!(store.link(&link, T0 + 1).await.unwrap(), LinkResult::Linked);
    let again = raw_item(&store, &format!("PSID#100#{}", link.psid), "PERSON").await;
    assert_eq!(again.get("linked"), person.get("linked"));

    // The table has TTL on expires_at.
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("describe ttl");
    let desc = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(desc.attribute_name(), Some("expires_at"));
}

/// Operators write page configs by hand; the functions read them; a malformed one is refused
/// with its key, never a panic.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn page_config_written_by_hand() {
    let (store, _) = store().await;
    let page_id = common::unique("pg");
    let first = r#"{"text":"Bonjour \u00e0 vous","quick_replies":[{"content_type":"text","title":"Oui","payload":"YES"}]}"#;
    raw_put(
        &store,
        &[
            ("pk", s(&format!("PAGE#{page_id}"))),
            ("sk", s("CONFIG")),
            ("paused", AttributeValue::Bool(true)),
            ("paused_reason", s("operator: campaign review")),
            ("first_message", s(first)),
        ],
    )
    .await;
    let c = store.get_page(&page_id).await.unwrap().expect("page");
    assert_eq!(c.page_id, page_id, "page_id comes from the key when absent");
    assert!(c.paused);
    assert_eq!(
        c.paused_reason.as_deref(),
        Some("operator: campaign review")
    );
    assert_eq!(c.first_message.as_deref(), Some(first));
    assert_eq!(c.pause_event_at_ms, None);
    // A webhook unpause still applies (no event time recorded by hand), and keeps the text.
    assert!(store.set_paused(&page_id, None, T0).await.unwrap());
    let c = store.get_page(&page_id).await.unwrap().expect("page");
    assert!(!c.paused);
    assert_eq!(c.first_message.as_deref(), Some(first));

    let full = PageConfig {
        page_id: common::unique("pg"),
        paused: false,
        answers_optins: false,
        paused_reason: None,
        paused_at_ms: None,
        pause_event_at_ms: None,
        first_message: Some(r#"{"text":"hi"}"#.into()),
        human_agent: true,
        utility_messaging: false,
        phone_number_messaging: true,
        linked_page_id: Some("4242".into()),
        instagram_login_user_id: Some("17841400000000042".into()),
    };
    store.put_page(&full).await.unwrap();
    assert_eq!(
        store.get_page(&full.page_id).await.unwrap(),
        Some(full.clone())
    );
    // A console item without the setting answers its opt-ins.
    let plain = common::unique("pg");
    raw_put(
        &store,
        &[
            ("pk", s(&format!("PAGE#{plain}"))),
            ("sk", s("CONFIG")),
            ("paused", AttributeValue::Bool(false)),
        ],
    )
    .await;
    assert!(
        store
            .get_page(&plain)
            .await
            .unwrap()
            .expect("page")
            .answers_optins
    );

    let bad = common::unique("pg");
    raw_put(
        &store,
        &[
            ("pk", s(&format!("PAGE#{bad}"))),
            ("sk", s("CONFIG")),
            ("paused", s("true")),
        ],
    )
    .await;
    let err = store.get_page(&bad).await.unwrap_err();
    assert!(
        matches!(&err, PortError::Rejected(m) if m.contains(&format!("PAGE#{bad}/CONFIG")) && m.contains("paused")),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn malformed_optin_is_rejected_not_a_panic() {
    let (store, _) = store().await;
    let p = common::unique("bad");
    let o = optin(&p, "bad");
    raw_put(
        &store,
        &[
            ("pk", s(&o.key())),
            ("sk", s("OPTIN")),
            ("state", s("pending")),
        ],
    )
    .await;
    let err = store.get_optin(&o.key()).await.unwrap_err();
    assert!(
        matches!(&err, PortError::Rejected(m) if m.contains(&o.key())),
        "{err}"
    );
    let err = store.create_optin(&o).await.unwrap_err();
    assert!(matches!(err, PortError::Rejected(_)), "{err}");
    // The claim's condition fails (no deadline), and the returned item is malformed.
    let err = store.claim(&o.key(), 1, T0, T0 + 1).await.unwrap_err();
    assert!(matches!(err, PortError::Rejected(_)), "{err}");
    assert!(store
        .get_person("no-page", "no-psid")
        .await
        .unwrap()
        .is_none());
}

/// Opt-ins written before generations have no `generation` attribute: they are generation 1 to
/// every read and condition (claim, reopen), and the next generation writes it.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn an_item_without_generation_is_generation_one() {
    let (store, _) = store().await;
    let p = common::unique("legacy");
    let o = optin(&p, "legacy");
    store.create_optin(&o).await.unwrap();
    let mut item = raw_item(&store, &o.key(), "OPTIN").await;
    item.remove("generation");
    let legacy: Vec<(&str, AttributeValue)> =
        item.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    raw_put(&store, &legacy).await;
    assert!(!raw_item(&store, &o.key(), "OPTIN")
        .await
        .contains_key("generation"));
    assert_eq!(store.get_optin(&o.key()).await.unwrap(), Some(o.clone()));

    let now = T0 + 1_000;
    assert!(matches!(
        store.claim(&o.key(), 2, now, now + 60_000).await.unwrap(),
        Claim::NotClaimable(_)
    ));
    let Claim::Claimed(c) = store.claim(&o.key(), 1, now, now + 60_000).await.unwrap() else {
        panic!("a legacy item is claimed as generation 1")
    };
    let f = Finish::Sent {
        message_id: None,
        sent_at_ms: now + 1,
    };
    assert!(store
        .finish(&o.key(), c.attempts, &f, now + 1)
        .await
        .unwrap());
    let seen = store.get_optin(&o.key()).await.unwrap().expect("opt-in");
    let next = seen.next_generation(Optin::pending(
        o.recipient.clone(),
        &o.page_id,
        "page",
        o.entry_point,
        o.source,
        T0 + 2 * 86_400_000,
        "optin:legacy-again",
        T0 + 2 * 86_400_000,
    ));
    assert_eq!(
        store.reopen(&seen, &next).await.unwrap(),
        Reopened::Reopened
    );
    let item = raw_item(&store, &o.key(), "OPTIN").await;
    assert_eq!(item.get("generation"), Some(&AttributeValue::N("2".into())));
    assert!(matches!(item.get("history"), Some(AttributeValue::L(l)) if l.len() == 1));
    assert_eq!(store.get_optin(&o.key()).await.unwrap(), Some(next));
}

fn n_of(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<i64> {
    match item.get(attr) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn dynamo_store_meets_the_identity_contract() {
    let (store, counter) = store().await;
    lc_core::contract::identity::run_all(&store, &common::unique("id")).await;
    lc_core::contract::identity::run_all(&store, &common::unique("id")).await;
    println!("dynamodb requests for the suite: {:?}", counter.snapshot());
}

/// What each identity write costs, in requests (the figures the docs quote).
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn identity_request_counts() {
    use lc_core::ports::identity::{IdentityPointer, IndexedId, OptinIdentity};
    use lc_core::ports::IdentityStore;
    let (store, counter) = store().await;
    let p = common::unique("idn");
    let o = optin(&p, "n");
    store.create_optin(&o).await.unwrap();
    let pointer = |id| IdentityPointer {
        id,
        optin_key: o.key(),
        page_id: o.page_id.clone(),
        at_ms: T0,
    };
    counter.reset();
    store
        .put_pointers(&[
            pointer(IndexedId::ExternalId(format!("{p}-x"))),
            pointer(IndexedId::Asid {
                app_id: "1".into(),
                asid: format!("{p}1"),
            }),
        ])
        .await
        .unwrap();
    assert_eq!(counter.snapshot().get("dynamodb.PutItem"), Some(&2));
    assert_eq!(counter.total("dynamodb"), 2, "one write per identity");
    counter.reset();
    let got = store
        .pointers(&IndexedId::ExternalId(format!("{p}-x")))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(counter.total("dynamodb"), 1, "one Query per lookup");
    counter.reset();
    let ids = OptinIdentity {
        external_id: Some("x".into()),
        asid: None,
    };
    assert!(store.add_optin_identity(&o.key(), &ids).await.unwrap());
    assert_eq!(counter.snapshot().get("dynamodb.UpdateItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);
}

/// Items that hold personal data expire: a closed opt-in, a person, a token, an index item, a
/// quarantined event and a receipt carry `expires_at` (epoch seconds); an open opt-in does not.
/// Quarantined events go to 16 shards; records of the old single partition are still listed
/// and deleted.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn items_expire_and_quarantine_is_sharded() {
    use lc_core::ports::identity::{DeletionReceipt, DeletionStatus, IdentityPointer, IndexedId};
    use lc_core::ports::IdentityStore;
    use lc_core::support::retention::Retention;
    let (store, _) = store().await;
    let store = store.with_retention(Retention {
        optin_days: 10,
        person_days: 20,
        quarantine_days: 3,
        receipt_days: 4,
    });
    let day = 86_400;
    let p = common::unique("ttl");
    let o = optin(&p, "ttl");
    store.create_optin(&o).await.unwrap();
    assert_eq!(
        n_of(&raw_item(&store, &o.key(), "OPTIN").await, "expires_at"),
        None
    );
    let now = T0 + 1_000;
    let Claim::Claimed(c) = store.claim(&o.key(), 1, now, now + 60_000).await.unwrap() else {
        panic!("claim")
    };
    let sent = Finish::Sent {
        message_id: None,
        sent_at_ms: now,
    };
    assert!(store
        .finish(&o.key(), c.attempts, &sent, now)
        .await
        .unwrap());
    assert_eq!(
        n_of(&raw_item(&store, &o.key(), "OPTIN").await, "expires_at"),
        Some(now / 1000 + 10 * day)
    );

    let psid = format!("{p}-psid");
    store.record_user_message("100", &psid, T0).await.unwrap();
    let token = MarketingToken {
        topic: "t".into(),
        token: Some("tok".into()),
        status: lc_core::ports::store::TokenStatus::Active,
        expires_at_ms: None,
        status_at_ms: T0,
    };
    store.set_token("100", &psid, &token).await.unwrap();
    let pk = format!("PSID#100#{psid}");
    assert_eq!(
        n_of(&raw_item(&store, &pk, "PERSON").await, "expires_at"),
        Some(T0 / 1000 + 20 * day)
    );
    assert_eq!(
        n_of(&raw_item(&store, &pk, "TOKEN#t").await, "expires_at"),
        Some(T0 / 1000 + 20 * day)
    );

    let x = IndexedId::ExternalId(format!("{p}-x"));
    store
        .put_pointers(&[IdentityPointer {
            id: x.clone(),
            optin_key: o.key(),
            page_id: "100".into(),
            at_ms: T0,
        }])
        .await
        .unwrap();
    let ptr = raw_item(&store, &x.partition(), &o.key()).await;
    assert_eq!(n_of(&ptr, "expires_at"), Some(T0 / 1000 + 40 * day));

    let code = format!("{:0>32}", "ab");
    store
        .put_receipt(&DeletionReceipt {
            code: code.clone(),
            status: DeletionStatus::Completed,
            requested_at_ms: T0,
            completed_at_ms: Some(T0),
            items_deleted: 1,
        })
        .await
        .unwrap();
    let receipt = raw_item(&store, &format!("DELETION#{code}"), "RECEIPT").await;
    assert_eq!(n_of(&receipt, "expires_at"), Some(T0 / 1000 + 4 * day));
    assert_eq!(receipt.get("status"), Some(&s("completed")));

    // Quarantine: new records in shards, an old record in the legacy partition.
    let rec = |i: i64| QuarantinedRecord {
        id: format!("{:013}#{p}-q{i}", T0 + i),
        reason: "r".into(),
        received_at_ms: T0 + i,
        event_json: "{}".into(),
    };
    for i in 1..=20 {
        store.put_quarantined(&rec(i)).await.unwrap();
    }
    let legacy = rec(0);
    raw_put(
        &store,
        &[
            ("pk", s("QUARANTINE")),
            ("sk", s(&legacy.id)),
            ("reason", s("r")),
            (
                "received_at_ms",
                AttributeValue::N(legacy.received_at_ms.to_string()),
            ),
            ("event_json", s("{}")),
        ],
    )
    .await;
    let items = store.scan_all().await.expect("scan");
    let shards: std::collections::BTreeSet<String> = items
        .iter()
        .filter(|i| matches!(i.get("sk"), Some(AttributeValue::S(sk)) if sk.contains(&format!("#{p}-q"))))
        .filter_map(|i| match i.get("pk") {
            Some(AttributeValue::S(pk)) => Some(pk.clone()),
            _ => None,
        })
        .collect();
    assert!(shards.len() > 5, "spread over shards: {shards:?}");
    assert!(shards.contains("QUARANTINE"), "the legacy record is there");
    for i in items.iter().filter(
        |i| matches!(i.get("pk"), Some(AttributeValue::S(pk)) if pk.starts_with("QUARANTINE#")),
    ) {
        assert!(n_of(i, "expires_at").is_some(), "{i:?}");
    }
    let listed: Vec<QuarantinedRecord> = store
        .list_quarantined(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.contains(&format!("#{p}-q")))
        .collect();
    assert_eq!(listed.len(), 21);
    assert_eq!(
        listed[0], legacy,
        "oldest first, the legacy record included"
    );
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(store.list_quarantined(3).await.unwrap().len(), 3);
    store.delete_quarantined(&legacy.id).await.unwrap();
    store.delete_quarantined(&rec(5).id).await.unwrap();
    let left = store
        .list_quarantined(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.contains(&format!("#{p}-q")))
        .count();
    assert_eq!(left, 19);
}
