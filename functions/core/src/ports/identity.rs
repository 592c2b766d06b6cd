//! One identity per person: the index items that find a person's opt-ins by the business's own
//! id (`external_id`) or by the app-scoped user id (ASID), and the receipts of data-deletion
//! requests.
//!
//! A `login_id`, a `user_ref` and a PSID need no index: they are the opt-in's or the person's
//! own key. The business's id and the ASID are not, so each opt-in that learns one gets a
//! pointer item (`IDENT#external_id#<id>` / `IDENT#asid#<app_id>#<asid>`, sort key the opt-in
//! key): one small idempotent write per identity per opt-in, only when the identity is known,
//! and a lookup is one `Query` on the pointer's partition. A pointer whose opt-in is gone is
//! skipped by readers (it is written before the opt-in, so a crash in between leaves at most a
//! dangling pointer, never an unindexed opt-in).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;

/// Longest `external_id` accepted: a business's user id, a UUID or an e-mail address.
pub const MAX_EXTERNAL_ID_LEN: usize = 128;

/// Pointers read per identity at most: a business user with more opt-ins than this is not a
/// real flow, and the answer must stay small.
pub const MAX_POINTERS: usize = 100;

/// Whether `id` may be stored as an `external_id`: 1 to [`MAX_EXTERNAL_ID_LEN`] characters of
/// `[A-Za-z0-9._:@+-]` (ids, UUIDs, e-mail addresses). No `#`, no spaces: it is part of a key.
pub fn valid_external_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_EXTERNAL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@+-".contains(&b))
}

/// An identity that needs an index to find its opt-ins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexedId {
    /// The business's own id for the person.
    ExternalId(String),
    /// An app-scoped user id: only meaningful with its app.
    Asid { app_id: String, asid: String },
}

impl IndexedId {
    /// The partition of its pointers (the table's `pk`).
    pub fn partition(&self) -> String {
        match self {
            IndexedId::ExternalId(id) => format!("IDENT#external_id#{id}"),
            IndexedId::Asid { app_id, asid } => format!("IDENT#asid#{app_id}#{asid}"),
        }
    }
}

/// "This identity has an opt-in under this key."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPointer {
    pub id: IndexedId,
    pub optin_key: String,
    /// The opt-in's Page (a lookup filtered by Page reads no opt-in of another).
    pub page_id: String,
    /// When the pointer was written (the opt-in's time): its retention counts from here.
    pub at_ms: i64,
}

/// Identities an existing opt-in may learn after it was created (the webhook's opt-in came
/// first; the login callback with the business's id follows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptinIdentity {
    pub external_id: Option<String>,
    pub asid: Option<String>,
}

impl OptinIdentity {
    pub fn is_empty(&self) -> bool {
        self.external_id.is_none() && self.asid.is_none()
    }
}

/// Where a data-deletion request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionStatus {
    /// Received; the deletion has not finished (a failure midway leaves it here until Meta or
    /// the person asks again).
    InProgress,
    Completed,
}

impl DeletionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionStatus::InProgress => "in_progress",
            DeletionStatus::Completed => "completed",
        }
    }
}

/// What the status URL of a data-deletion request shows. Holds no personal data: the code is
/// an HMAC under the app secret, and the counts say how much was removed, not what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionReceipt {
    pub code: String,
    pub status: DeletionStatus,
    pub requested_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// Items removed (opt-ins, people, tokens, index items, quarantined events).
    pub items_deleted: u32,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Writes the pointers (idempotent: the same pointer again only refreshes its time).
    async fn put_pointers(&self, pointers: &[IdentityPointer]) -> Result<(), PortError>;
    /// The pointers of one identity, by opt-in key, at most [`MAX_POINTERS`].
    async fn pointers(&self, id: &IndexedId) -> Result<Vec<IdentityPointer>, PortError>;
    /// Gives an existing opt-in the identities it lacks (a stored one is never replaced).
    /// `false` when there is no opt-in under `optin_key` (nothing is created).
    async fn add_optin_identity(
        &self,
        optin_key: &str,
        ids: &OptinIdentity,
    ) -> Result<bool, PortError>;
    /// Deletes one opt-in item (absent is fine). `true` if one was there.
    async fn delete_optin(&self, optin_key: &str) -> Result<bool, PortError>;
    /// Deletes the person of `(page_id, psid)` and every marketing token of theirs: how many
    /// items were there.
    async fn delete_person(&self, page_id: &str, psid: &str) -> Result<usize, PortError>;
    /// Deletes one pointer (absent is fine).
    async fn delete_pointer(&self, id: &IndexedId, optin_key: &str) -> Result<(), PortError>;
    /// Stores (or replaces) a receipt.
    async fn put_receipt(&self, receipt: &DeletionReceipt) -> Result<(), PortError>;
    async fn get_receipt(&self, code: &str) -> Result<Option<DeletionReceipt>, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_key_safe() {
        for ok in [
            "u-1",
            "a.b@shop.example",
            "550e8400-e29b-41d4-a716-446655440000",
            "x+y:z_1",
        ] {
            assert!(valid_external_id(ok), "{ok}");
        }
        let long = "a".repeat(MAX_EXTERNAL_ID_LEN + 1);
        for bad in ["", "a#b", "a b", "é", "a/b", long.as_str()] {
            assert!(!valid_external_id(bad), "{bad}");
        }
        assert!(valid_external_id(&"a".repeat(MAX_EXTERNAL_ID_LEN)));
    }

    #[test]
    fn partitions() {
        assert_eq!(
            IndexedId::ExternalId("u1".into()).partition(),
            "IDENT#external_id#u1"
        );
        assert_eq!(
            IndexedId::Asid {
                app_id: "1".into(),
                asid: "42".into()
            }
            .partition(),
            "IDENT#asid#1#42"
        );
    }
}
