//! [`IdentityStore`]: the identity index (pointer items), the identities an existing opt-in
//! learns, deletion of a person's items, and deletion receipts.
//!
//! Costs (on-demand, items under 1 KB): a pointer is one `PutItem` (1 WRU) per identity per
//! opt-in, written only when the identity is known (a login: the ASID, and the business's id
//! when signed; a signed plugin ref with an id: one); reading an identity's pointers is one
//! `Query` (0.5-1 RRU, consistent); teaching an opt-in its ids is one `UpdateItem`, only when
//! the login callback follows the webhook.
//!
//! [`IdentityStore`]: lc_core::ports::IdentityStore

use async_trait::async_trait;
use lc_core::ports::identity::{
    DeletionReceipt, IdentityPointer, IndexedId, OptinIdentity, MAX_POINTERS,
};
use lc_core::ports::{IdentityStore, PortError};

use super::expr::{s, Updates};
use super::items::{pointer_from, pointer_item, receipt_from, receipt_item};
use super::keys::{optin_key, person_pk, pointer_key, receipt_key, PK, SK};
use super::DynamoStore;

#[async_trait]
impl IdentityStore for DynamoStore {
    async fn put_pointers(&self, pointers: &[IdentityPointer]) -> Result<(), PortError> {
        // Each its own idempotent put: a handful at most, and a retry repeats them harmlessly.
        for p in pointers {
            self.put_item(pointer_item(p, &self.retention)?).await?;
        }
        Ok(())
    }

    async fn pointers(&self, id: &IndexedId) -> Result<Vec<IdentityPointer>, PortError> {
        self.query(&id.partition(), None, MAX_POINTERS)
            .await?
            .into_iter()
            .map(|item| pointer_from(item, id))
            .collect()
    }

    async fn add_optin_identity(
        &self,
        optin_key_: &str,
        ids: &OptinIdentity,
    ) -> Result<bool, PortError> {
        if ids.is_empty() {
            return Ok(self.get_item(optin_key(optin_key_)).await?.is_some());
        }
        // `updated_at_ms` stays: a reopen conditional on the record as read still holds.
        let mut u = Updates::default();
        if let Some(x) = &ids.external_id {
            u.set_if_absent("external_id", s(x));
        }
        if let Some(a) = &ids.asid {
            u.set_if_absent("asid", s(a));
        }
        let cond = u.condition(|e| format!("attribute_exists({})", e.name(PK)));
        Ok(self
            .update(optin_key(optin_key_), u, cond, false, false)
            .await?
            .applied())
    }

    async fn delete_optin(&self, key: &str) -> Result<bool, PortError> {
        self.delete_item(optin_key(key)).await
    }

    async fn delete_person(&self, page_id: &str, psid: &str) -> Result<usize, PortError> {
        // The person and their tokens share the partition: read its keys, delete each.
        let pk = person_pk(page_id, psid);
        let items = self.query(&pk, None, usize::MAX).await?;
        let mut deleted = 0;
        for item in items {
            let Some(aws_sdk_dynamodb::types::AttributeValue::S(sk)) = item.get(SK) else {
                continue;
            };
            if self.delete_item((pk.clone(), sk.clone())).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn delete_pointer(&self, id: &IndexedId, optin_key_: &str) -> Result<(), PortError> {
        self.delete_item(pointer_key(id.partition(), optin_key_))
            .await
            .map(|_| ())
    }

    async fn put_receipt(&self, receipt: &DeletionReceipt) -> Result<(), PortError> {
        self.put_item(receipt_item(receipt, &self.retention)?).await
    }

    async fn get_receipt(&self, code: &str) -> Result<Option<DeletionReceipt>, PortError> {
        self.get_item(receipt_key(code))
            .await?
            .map(|item| receipt_from(item, code))
            .transpose()
    }
}
