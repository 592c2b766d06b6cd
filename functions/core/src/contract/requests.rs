//! The [`RequestStore`] contract: the claim that makes a follow-up go to Meta at most once,
//! checked the same way against [`crate::memory::MemoryStore`] and the DynamoDB adapter (on
//! moto). Keys are built from `unique_prefix`; times are fixed, never the wall clock.

use futures::future::join_all;

use crate::ports::graph::MessagingType;
use crate::ports::requests::{
    RequestClaim, RequestCreated, RequestFinish, RequestRecord, RequestState, RequestStore,
};

const T0: i64 = 1_700_000_000_000;
const LEASE: i64 = 30_000;

/// Runs every check, one after the other.
pub async fn run_all<S: RequestStore>(s: &S, unique_prefix: &str) {
    let p = unique_prefix;
    create_then_duplicate(s, p).await;
    keys_are_per_page(s, p).await;
    claim_send_record(s, p).await;
    release_and_lapsed_lease(s, p).await;
    final_outcomes(s, p).await;
    claim_missing(s, p).await;
    concurrent_claims(s, p).await;
}

/// An accepted request on `page` under `key`.
pub fn record(page: &str, key: &str) -> RequestRecord {
    RequestRecord {
        page_id: page.to_string(),
        idempotency_key: key.to_string(),
        request_id: format!("req_{key}"),
        fingerprint: "fp-1".into(),
        body: r#"{"message":{"text":"hi"}}"#.into(),
        state: RequestState::Accepted,
        messaging_type: MessagingType::Response,
        tag: None,
        rule: "standard_window".into(),
        attempts: 0,
        lease_until_ms: 0,
        created_at_ms: T0,
        updated_at_ms: T0,
        message_id: None,
        sent_at_ms: None,
        last_error: None,
    }
}

fn page(p: &str) -> String {
    format!("{p}-page")
}

async fn created<S: RequestStore>(s: &S, page: &str, key: &str) -> RequestRecord {
    let r = record(page, key);
    assert_eq!(
        s.create_request(&r).await.expect("create"),
        RequestCreated::Created
    );
    r
}

async fn claimed<S: RequestStore>(s: &S, page: &str, key: &str, now: i64) -> RequestRecord {
    match s
        .claim_request(page, key, now, now + LEASE)
        .await
        .expect("claim")
    {
        RequestClaim::Claimed(r) => *r,
        other => panic!("{key}: expected a claim, got {other:?}"),
    }
}

pub async fn create_then_duplicate<S: RequestStore>(s: &S, p: &str) {
    let pg = page(p);
    let first = created(s, &pg, "dup").await;
    let mut other = record(&pg, "dup");
    other.fingerprint = "fp-2".into();
    match s.create_request(&other).await.expect("create") {
        RequestCreated::Exists(held) => assert_eq!(*held, first, "the first request holds the key"),
        RequestCreated::Created => panic!("a key creates one request"),
    }
    assert_eq!(s.get_request(&pg, "dup").await.expect("get"), Some(first));
    assert_eq!(s.get_request(&pg, "never").await.expect("get"), None);
}

pub async fn keys_are_per_page<S: RequestStore>(s: &S, p: &str) {
    created(s, &format!("{p}-a"), "same").await;
    created(s, &format!("{p}-b"), "same").await;
    // Keys may contain the separator: the key is the whole tail.
    created(s, &page(p), "order#42#shipped").await;
    assert!(s
        .get_request(&page(p), "order#42#shipped")
        .await
        .expect("get")
        .is_some());
}

pub async fn claim_send_record<S: RequestStore>(s: &S, p: &str) {
    let pg = page(p);
    created(s, &pg, "send").await;
    let c = claimed(s, &pg, "send", T0 + 1).await;
    assert_eq!((c.state, c.attempts), (RequestState::Sending, 1));
    assert_eq!(c.lease_until_ms, T0 + 1 + LEASE);
    // A live claim holds it.
    match s
        .claim_request(&pg, "send", T0 + 2, T0 + 2 + LEASE)
        .await
        .expect("claim")
    {
        RequestClaim::NotClaimable(r) => assert_eq!(r.state, RequestState::Sending),
        other => panic!("a held request was claimed again: {other:?}"),
    }
    let sent = RequestFinish::Sent {
        message_id: Some("m_1".into()),
        sent_at_ms: T0 + 3,
    };
    assert!(
        !s.finish_request(&pg, "send", 2, &sent, T0 + 3)
            .await
            .expect("finish"),
        "an attempt that does not hold the claim cannot finish it"
    );
    assert!(s
        .finish_request(&pg, "send", 1, &sent, T0 + 3)
        .await
        .expect("finish"));
    let r = s
        .get_request(&pg, "send")
        .await
        .expect("get")
        .expect("request");
    assert_eq!(r.state, RequestState::Sent);
    assert_eq!(r.message_id.as_deref(), Some("m_1"));
    assert_eq!(r.sent_at_ms, Some(T0 + 3));
    assert_eq!(r.updated_at_ms, T0 + 3);
    // Sent is final: no claim, even long after the lease.
    match s
        .claim_request(&pg, "send", T0 + 10 * LEASE, T0 + 11 * LEASE)
        .await
        .expect("claim")
    {
        RequestClaim::NotClaimable(r) => assert_eq!(r.state, RequestState::Sent),
        other => panic!("a sent request was claimed: {other:?}"),
    }
    assert!(!s
        .finish_request(&pg, "send", 1, &sent, T0 + 4)
        .await
        .expect("finish"));
}

pub async fn release_and_lapsed_lease<S: RequestStore>(s: &S, p: &str) {
    let pg = page(p);
    created(s, &pg, "release").await;
    claimed(s, &pg, "release", T0).await;
    let release = RequestFinish::Release {
        error: "graph 500".into(),
    };
    assert!(s
        .finish_request(&pg, "release", 1, &release, T0 + 1)
        .await
        .expect("release"));
    let r = s
        .get_request(&pg, "release")
        .await
        .expect("get")
        .expect("request");
    assert_eq!(r.state, RequestState::Accepted);
    assert_eq!(r.last_error.as_deref(), Some("graph 500"));
    let again = claimed(s, &pg, "release", T0 + 2).await;
    assert_eq!(again.attempts, 2);
    // Its lease lapses (a crashed attempt): the next attempt takes over, the old one is stale.
    let takeover = claimed(s, &pg, "release", T0 + 2 + LEASE).await;
    assert_eq!(takeover.attempts, 3);
    assert!(!s
        .finish_request(&pg, "release", 2, &release, T0 + 3 + LEASE)
        .await
        .expect("finish"));
}

pub async fn final_outcomes<S: RequestStore>(s: &S, p: &str) {
    let pg = page(p);
    for (key, finish, state) in [
        (
            "failed",
            RequestFinish::Failed {
                error: "window_closed: outside_window".into(),
            },
            RequestState::Failed,
        ),
        (
            "refused",
            RequestFinish::Refused {
                reason: "opted_out: blocked".into(),
            },
            RequestState::Refused,
        ),
    ] {
        created(s, &pg, key).await;
        claimed(s, &pg, key, T0).await;
        assert!(s
            .finish_request(&pg, key, 1, &finish, T0 + 1)
            .await
            .expect("finish"));
        let r = s
            .get_request(&pg, key)
            .await
            .expect("get")
            .expect("request");
        assert_eq!(r.state, state, "{key}");
        assert!(r.last_error.is_some(), "{key}");
        assert!(matches!(
            s.claim_request(&pg, key, T0 + 10 * LEASE, T0 + 11 * LEASE)
                .await
                .expect("claim"),
            RequestClaim::NotClaimable(_)
        ));
    }
}

pub async fn claim_missing<S: RequestStore>(s: &S, p: &str) {
    assert_eq!(
        s.claim_request(&page(p), "missing", T0, T0 + LEASE)
            .await
            .expect("claim"),
        RequestClaim::Missing
    );
    assert!(!s
        .finish_request(
            &page(p),
            "missing",
            1,
            &RequestFinish::Release { error: "x".into() },
            T0
        )
        .await
        .expect("finish"));
}

/// Many copies of one request claim at once: one wins. Sent one at a time on moto (see the
/// README: moto does not apply conditions atomically); concurrently on the twin.
pub async fn concurrent_claims<S: RequestStore>(s: &S, p: &str) {
    let pg = page(p);
    created(s, &pg, "race").await;
    let claims = join_all((0..20).map(|_| s.claim_request(&pg, "race", T0, T0 + LEASE))).await;
    let won = claims
        .into_iter()
        .map(|c| c.expect("claim"))
        .filter(|c| matches!(c, RequestClaim::Claimed(_)))
        .count();
    assert_eq!(won, 1, "one claim of one request");
}
