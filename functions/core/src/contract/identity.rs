//! The identity contract: [`IdentityStore`] and the identities the opt-in and person items
//! carry, checked the same way against [`crate::memory::MemoryStore`] and the DynamoDB adapter
//! (on moto). Keys are built from `unique_prefix`, so several runs share one table.

use crate::contract::store::{optin, T0};
use crate::lifecycle::optin::{optin_key, Optin, OptinSource, DAY_MS};
use crate::ports::identity::{
    DeletionReceipt, DeletionStatus, IdentityPointer, IndexedId, OptinIdentity,
};
use crate::ports::store::{Link, LinkResult, MarketingToken, Reopened, TokenStatus};
use crate::ports::{IdentityStore, OptinStore, PersonStore, QuarantineStore};
use crate::webhook::{Identity, IdentityKind};

/// What the identity checks need of a store.
pub trait IdStore: OptinStore + PersonStore + QuarantineStore + IdentityStore {}
impl<T: OptinStore + PersonStore + QuarantineStore + IdentityStore + ?Sized> IdStore for T {}

/// Runs every check, one after the other.
pub async fn run_all<S: IdStore>(s: &S, unique_prefix: &str) {
    let p = unique_prefix;
    optin_identities_round_trip(s, p).await;
    pointers_by_identity(s, p).await;
    add_identity_keeps_the_first(s, p).await;
    link_copies_the_external_id(s, p).await;
    delete_optin_and_person(s, p).await;
    receipts(s, p).await;
}

fn pointer(id: IndexedId, key: &str, page: &str, at_ms: i64) -> IdentityPointer {
    IdentityPointer {
        id,
        optin_key: key.to_string(),
        page_id: page.to_string(),
        at_ms,
    }
}

/// `external_id` and `asid` are stored with the opt-in, and the next generation keeps them.
pub async fn optin_identities_round_trip<S: IdStore>(s: &S, p: &str) {
    let mut o = optin(p, "ids");
    o.external_id = Some(format!("{p}-user@shop.example"));
    o.asid = Some("1234567890".into());
    s.create_optin(&o).await.expect("create_optin");
    let stored = s.get_optin(&o.key()).await.expect("get").expect("exists");
    assert_eq!(stored, o, "identities read back whole");

    // Only a closed generation reopens: close it through the store's own rule.
    s.expire(&o.key(), o.deadline_at_ms, "test")
        .await
        .expect("expire")
        .expect("expired");
    let seen = s.get_optin(&o.key()).await.expect("get").expect("exists");
    let mut later = Optin::pending(
        o.recipient.clone(),
        &o.page_id,
        "page",
        o.entry_point,
        OptinSource::Webhook,
        T0 + 2 * DAY_MS,
        &format!("optin:{p}:ids:2"),
        T0 + 2 * DAY_MS,
    );
    later.job_claim_until_ms = 0;
    let next = seen.next_generation(later);
    assert_eq!(
        s.reopen(&seen, &next).await.expect("reopen"),
        Reopened::Reopened
    );
    let now = s.get_optin(&o.key()).await.expect("get").expect("exists");
    assert_eq!(now.generation, 2);
    assert_eq!(now.external_id, o.external_id, "kept across generations");
    assert_eq!(now.asid, o.asid);
}

/// Pointers are read per identity, ordered by opt-in key; writing one again is harmless;
/// deleting one leaves the others.
pub async fn pointers_by_identity<S: IdStore>(s: &S, p: &str) {
    let x = IndexedId::ExternalId(format!("{p}-x1"));
    let asid = IndexedId::Asid {
        app_id: "1".into(),
        asid: format!("{p}42"),
    };
    let (k1, k2) = (
        format!("OPTIN#login_id#{p}-b"),
        format!("OPTIN#login_id#{p}-a"),
    );
    s.put_pointers(&[
        pointer(x.clone(), &k1, "100", T0),
        pointer(x.clone(), &k2, "200", T0 + 1),
        pointer(asid.clone(), &k1, "100", T0),
    ])
    .await
    .expect("put_pointers");
    s.put_pointers(&[pointer(x.clone(), &k1, "100", T0)])
        .await
        .expect("put again");
    let got = s.pointers(&x).await.expect("pointers");
    assert_eq!(
        got,
        vec![
            pointer(x.clone(), &k2, "200", T0 + 1),
            pointer(x.clone(), &k1, "100", T0),
        ],
        "ordered by opt-in key, one per key"
    );
    assert_eq!(
        s.pointers(&asid).await.expect("pointers"),
        vec![pointer(asid.clone(), &k1, "100", T0)]
    );
    let none = IndexedId::ExternalId(format!("{p}-nobody"));
    assert!(s.pointers(&none).await.expect("pointers").is_empty());

    s.delete_pointer(&x, &k2).await.expect("delete_pointer");
    s.delete_pointer(&x, &k2)
        .await
        .expect("deleting a deleted pointer is fine");
    assert_eq!(
        s.pointers(&x).await.expect("pointers"),
        vec![pointer(x.clone(), &k1, "100", T0)]
    );
    s.delete_pointer(&x, &k1).await.expect("delete");
    s.delete_pointer(&asid, &k1).await.expect("delete");
    assert!(s.pointers(&x).await.expect("pointers").is_empty());
}

/// An existing opt-in learns the identities it lacks; a stored one is never replaced, and the
/// record's `updated_at_ms` does not move (a reopen conditional on it still holds).
pub async fn add_identity_keeps_the_first<S: IdStore>(s: &S, p: &str) {
    let missing = format!("OPTIN#login_id#{p}-missing");
    let ids = |x: &str, a: &str| OptinIdentity {
        external_id: Some(x.to_string()),
        asid: Some(a.to_string()),
    };
    assert!(
        !s.add_optin_identity(&missing, &ids("u", "1"))
            .await
            .expect("add"),
        "a missing opt-in is not created"
    );
    assert!(s.get_optin(&missing).await.expect("get").is_none());

    let o = optin(p, "learn");
    s.create_optin(&o).await.expect("create");
    assert!(s
        .add_optin_identity(&o.key(), &ids("first", "111"))
        .await
        .expect("add"));
    assert!(s
        .add_optin_identity(&o.key(), &ids("second", "222"))
        .await
        .expect("add"));
    let only_asid = OptinIdentity {
        external_id: None,
        asid: Some("333".into()),
    };
    assert!(s
        .add_optin_identity(&o.key(), &only_asid)
        .await
        .expect("add"));
    let stored = s.get_optin(&o.key()).await.expect("get").expect("exists");
    assert_eq!(stored.external_id.as_deref(), Some("first"));
    assert_eq!(stored.asid.as_deref(), Some("111"));
    assert_eq!(stored.updated_at_ms, o.updated_at_ms);
    assert_eq!(
        Optin {
            external_id: None,
            asid: None,
            ..stored
        },
        o,
        "nothing else changes"
    );
}

/// The person a reply links gets the opt-in's business id (the first one known stays).
pub async fn link_copies_the_external_id<S: IdStore>(s: &S, p: &str) {
    let mut o = optin(p, "linkx");
    o.external_id = Some(format!("{p}-biz"));
    s.create_optin(&o).await.expect("create");
    let link = Link {
        page_id: o.page_id.clone(),
        psid: format!("{p}-psid-x"),
        identifier: o.recipient.clone(),
        optin_key: o.key(),
        at_ms: T0 + 60_000,
        create_missing: true,
    };
    assert_eq!(
        s.link(&link, T0 + 60_000).await.expect("link"),
        LinkResult::Linked
    );
    let person = s
        .get_person(&o.page_id, &link.psid)
        .await
        .expect("get_person")
        .expect("person");
    assert_eq!(person.external_id, o.external_id);

    // A second identifier of another business id: the first stays.
    let other = Identity::new(IdentityKind::UserRef, format!("{p}-ref-x"));
    let mut second = Optin::pending(
        other.clone(),
        &o.page_id,
        "page",
        crate::lifecycle::optin::EntryPoint::Checkbox,
        OptinSource::Webhook,
        T0,
        &format!("optin:{p}:ref-x"),
        T0,
    );
    second.external_id = Some(format!("{p}-other-biz"));
    s.create_optin(&second).await.expect("create");
    let link2 = Link {
        identifier: other.clone(),
        optin_key: optin_key(&other, &o.page_id),
        ..link.clone()
    };
    s.link(&link2, T0 + 70_000).await.expect("link");
    let person = s
        .get_person(&o.page_id, &link.psid)
        .await
        .expect("get_person")
        .expect("person");
    assert_eq!(
        person.external_id, o.external_id,
        "the first business id stays"
    );
}

/// An opt-in, and a person with their tokens, are deleted whole; deleting again finds nothing.
pub async fn delete_optin_and_person<S: IdStore>(s: &S, p: &str) {
    let o = optin(p, "gone");
    s.create_optin(&o).await.expect("create");
    assert!(s.delete_optin(&o.key()).await.expect("delete_optin"));
    assert!(!s.delete_optin(&o.key()).await.expect("again"));
    assert!(s.get_optin(&o.key()).await.expect("get").is_none());

    let (pg, psid) = (format!("{p}-page"), format!("{p}-psid-gone"));
    s.record_user_message(&pg, &psid, T0)
        .await
        .expect("message");
    for topic in ["a", "b"] {
        let token = MarketingToken {
            topic: topic.into(),
            token: Some(format!("tok-{topic}")),
            status: TokenStatus::Active,
            expires_at_ms: None,
            status_at_ms: T0,
        };
        s.set_token(&pg, &psid, &token).await.expect("set_token");
    }
    // A neighbour on the same Page is untouched.
    let other = format!("{p}-psid-stays");
    s.record_user_message(&pg, &other, T0)
        .await
        .expect("message");

    assert_eq!(s.delete_person(&pg, &psid).await.expect("delete_person"), 3);
    assert_eq!(s.delete_person(&pg, &psid).await.expect("again"), 0);
    assert!(s.get_person(&pg, &psid).await.expect("get").is_none());
    assert!(s.get_tokens(&pg, &psid).await.expect("tokens").is_empty());
    assert!(s.get_person(&pg, &other).await.expect("get").is_some());
}

/// Receipts are stored, replaced and read by code.
pub async fn receipts<S: IdStore>(s: &S, p: &str) {
    let code = format!("{:0>32}", hex_of(p));
    assert!(s.get_receipt(&code).await.expect("get").is_none());
    let mut r = DeletionReceipt {
        code: code.clone(),
        status: DeletionStatus::InProgress,
        requested_at_ms: T0,
        completed_at_ms: None,
        items_deleted: 0,
    };
    s.put_receipt(&r).await.expect("put_receipt");
    assert_eq!(s.get_receipt(&code).await.expect("get"), Some(r.clone()));
    r.status = DeletionStatus::Completed;
    r.completed_at_ms = Some(T0 + 5);
    r.items_deleted = 7;
    s.put_receipt(&r).await.expect("put_receipt");
    assert_eq!(s.get_receipt(&code).await.expect("get"), Some(r));
}

fn hex_of(p: &str) -> String {
    let h: String = p.bytes().map(|b| format!("{b:02x}")).collect();
    h.chars().rev().take(32).collect()
}
