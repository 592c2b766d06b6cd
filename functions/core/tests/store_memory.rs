//! The store contract against the in-memory twin, plus its request counts.

use std::sync::Arc;

use lc_core::contract::store::{optin, run_all};
use lc_core::lifecycle::optin::DAY_MS;
use lc_core::memory::MemoryStore;
use lc_core::ports::store::{Claim, Created, Link, LinkResult, PageConfig};
use lc_core::ports::{OptinStore, PageStore, PersonStore, RequestCounter};

#[tokio::test]
async fn memory_store_meets_the_contract() {
    let store = MemoryStore::new();
    run_all(&store, "mem").await;
    println!("dynamodb requests: {:?}", store.counts());
}

#[tokio::test]
async fn a_second_run_on_the_same_store_does_not_collide() {
    let store = MemoryStore::new();
    run_all(&store, "one").await;
    run_all(&store, "two").await;
}

/// The figures the moto test measures for DynamoStore, one request per call.
#[tokio::test]
async fn request_counts_per_call() {
    let counter = Arc::new(RequestCounter::new());
    let store = MemoryStore::with_counter(counter.clone());
    let o = optin("counts", "one");
    assert_eq!(store.create_optin(&o).await.unwrap(), Created::Created);
    assert_eq!(counter.snapshot().get("dynamodb.PutItem"), Some(&1));

    counter.reset();
    assert!(matches!(
        store.create_optin(&o).await.unwrap(),
        Created::Exists(_)
    ));
    assert_eq!(counter.snapshot().get("dynamodb.PutItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);

    counter.reset();
    let now = o.opted_in_at_ms + 1;
    assert!(matches!(
        store.claim(&o.key(), 1, now, now + 1).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert_eq!(counter.snapshot().get("dynamodb.UpdateItem"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 1);

    counter.reset();
    let link = Link {
        page_id: o.page_id.clone(),
        psid: "p1".into(),
        identifier: o.recipient.clone(),
        optin_key: o.key(),
        at_ms: now + 10,
        create_missing: true,
    };
    assert_eq!(
        store.link(&link, now + 10).await.unwrap(),
        LinkResult::Linked
    );
    // The adapter reads the opt-in, then writes conditional on what it read.
    assert_eq!(store.counts().get("dynamodb.GetItem"), Some(&1));
    assert_eq!(store.counts().get("dynamodb.TransactWriteItems"), Some(&1));
    assert_eq!(counter.total("dynamodb"), 2);
    assert!(store.get_optin(&o.key()).await.unwrap().is_some());
    assert!(o.deadline_at_ms - o.opted_in_at_ms == DAY_MS);
}

#[tokio::test]
async fn put_page_is_read_back() {
    let store = MemoryStore::new();
    let page = PageConfig {
        page_id: "100".into(),
        first_message: Some(r#"{"text":"hi"}"#.into()),
        ..PageConfig::default()
    };
    store.put_page(page.clone());
    assert_eq!(store.get_page("100").await.unwrap(), Some(page));
    assert_eq!(store.get_person("100", "x").await.unwrap(), None);
}

/// `fail_next`: the next n calls of one operation fail as a whole and change nothing; the
/// others are untouched; then it works again.
#[tokio::test]
async fn injected_failures_fail_whole_calls_then_stop() {
    use lc_core::memory::StoreOp;
    use lc_core::ports::store::Finish;
    use lc_core::ports::PortError;
    let store = MemoryStore::new();
    let o = optin("fail", "one");
    store.create_optin(&o).await.unwrap();
    let now = o.opted_in_at_ms;
    let Claim::Claimed(c) = store
        .claim(&o.key(), o.generation, now, now + 1_000)
        .await
        .unwrap()
    else {
        panic!("claimable")
    };
    store.fail_next(StoreOp::Finish, 2);
    assert_eq!(store.pending_failures(StoreOp::Finish), 2);
    let sent = Finish::Sent {
        message_id: Some("m_1".into()),
        sent_at_ms: now,
    };
    for _ in 0..2 {
        let err = store.finish(&o.key(), c.attempts, &sent, now).await;
        assert!(
            matches!(err, Err(PortError::Unavailable(ref m)) if m.contains("injected")),
            "{err:?}"
        );
        // Reads still work, and the failed call changed nothing.
        let seen = store.get_optin(&o.key()).await.unwrap().unwrap();
        assert_eq!(seen.state, lc_core::lifecycle::optin::OptinState::Sending);
    }
    assert_eq!(store.pending_failures(StoreOp::Finish), 0);
    assert!(store
        .finish(&o.key(), c.attempts, &sent, now)
        .await
        .unwrap());
    store.fail_next(StoreOp::GetOptin, 1);
    store.fail_next(StoreOp::GetOptin, 0);
    assert!(store.get_optin(&o.key()).await.is_ok(), "0 clears");
}

#[tokio::test]
async fn memory_store_meets_the_identity_contract() {
    let store = MemoryStore::new();
    lc_core::contract::identity::run_all(&store, "mem").await;
    lc_core::contract::identity::run_all(&store, "again").await;
}

#[tokio::test]
async fn memory_store_meets_the_request_contract() {
    let store = MemoryStore::new();
    lc_core::contract::requests::run_all(&store, "mem").await;
    lc_core::contract::requests::run_all(&store, "again").await;
}
