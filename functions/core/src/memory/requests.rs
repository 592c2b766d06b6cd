//! [`RequestStore`] on the in-memory table: each call one atomic step under the table's lock,
//! counted as the DynamoDB adapter's request (`PutItem`, `GetItem`, `UpdateItem`).

use async_trait::async_trait;

use super::store::MemoryStore;
use crate::ports::requests::{
    apply_finish, RequestClaim, RequestCreated, RequestFinish, RequestRecord, RequestState,
    RequestStore,
};
use crate::ports::PortError;

fn key(page_id: &str, idempotency_key: &str) -> (String, String) {
    (page_id.to_string(), idempotency_key.to_string())
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn create_request(&self, record: &RequestRecord) -> Result<RequestCreated, PortError> {
        self.request("PutItem", |t| {
            let k = key(&record.page_id, &record.idempotency_key);
            if let Some(existing) = t.requests.get(&k) {
                return Ok(RequestCreated::Exists(Box::new(existing.clone())));
            }
            t.requests.insert(k, record.clone());
            Ok(RequestCreated::Created)
        })
        .await
    }

    async fn get_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<RequestRecord>, PortError> {
        self.request("GetItem", |t| {
            Ok(t.requests.get(&key(page_id, idempotency_key)).cloned())
        })
        .await
    }

    async fn claim_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<RequestClaim, PortError> {
        self.request("UpdateItem", |t| {
            let Some(r) = t.requests.get_mut(&key(page_id, idempotency_key)) else {
                // The adapter learns "missing" from a follow-up consistent read.
                self.count("GetItem");
                return Ok(RequestClaim::Missing);
            };
            if !r.claimable(now_ms) {
                return Ok(RequestClaim::NotClaimable(Box::new(r.clone())));
            }
            r.state = RequestState::Sending;
            r.attempts += 1;
            r.lease_until_ms = lease_until_ms;
            r.updated_at_ms = now_ms;
            Ok(RequestClaim::Claimed(Box::new(r.clone())))
        })
        .await
    }

    async fn finish_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        attempt: u32,
        finish: &RequestFinish,
        now_ms: i64,
    ) -> Result<bool, PortError> {
        self.request("UpdateItem", |t| {
            let Some(r) = t.requests.get_mut(&key(page_id, idempotency_key)) else {
                return Ok(false);
            };
            if r.state != RequestState::Sending || r.attempts != attempt {
                return Ok(false);
            }
            apply_finish(r, finish, now_ms);
            Ok(true)
        })
        .await
    }
}
