//! The table's key schema (`pk` / `sk`, both strings) and how each item is addressed.

/// The partition key attribute.
pub(super) const PK: &str = "pk";
/// The sort key attribute.
pub(super) const SK: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub(super) const TTL: &str = "expires_at";

pub(super) const OPTIN_SK: &str = "OPTIN";
pub(super) const PERSON_SK: &str = "PERSON";
pub(super) const PAGE_SK: &str = "CONFIG";
pub(super) const TOKEN_SK_PREFIX: &str = "TOKEN#";
/// The partition of the quarantined events.
pub(super) const QUARANTINE_PK: &str = "QUARANTINE";

/// `pk` and `sk` of one item.
pub(super) type Key = (String, String);

/// The opt-in's `pk` is its domain key (`Optin::key`): the store does not re-derive it.
pub(super) fn optin_key(key: &str) -> Key {
    (key.to_string(), OPTIN_SK.to_string())
}

/// The person and its marketing tokens share this partition: one `Query` reads them all.
pub(super) fn person_pk(page_id: &str, psid: &str) -> String {
    format!("PSID#{page_id}#{psid}")
}

pub(super) fn person_key(page_id: &str, psid: &str) -> Key {
    (person_pk(page_id, psid), PERSON_SK.to_string())
}

pub(super) fn token_key(page_id: &str, psid: &str, topic: &str) -> Key {
    (
        person_pk(page_id, psid),
        format!("{TOKEN_SK_PREFIX}{topic}"),
    )
}

pub(super) fn page_key(page_id: &str) -> Key {
    (format!("PAGE#{page_id}"), PAGE_SK.to_string())
}
