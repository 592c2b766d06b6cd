//! [`RequestStore`]: the business's follow-up requests, one item per Page and idempotency key,
//! each transition one conditional write (like the opt-in's claim in `optins.rs`).
//!
//! | `pk` | `sk` | attributes |
//! |---|---|---|
//! | `REQUEST#<page_id>#<idempotency_key>` | `REQUEST` | `page_id`, `idempotency_key`, `request_id`, `fingerprint`, `body` (the validated request JSON), `state` (`accepted`, `sending`, `sent`, `failed`, `refused`), `messaging_type`, `rule`, `attempts`, `lease_until_ms`, `created_at_ms`, `updated_at_ms`, `expires_at` (TTL: created + 30 days, epoch seconds); optional `tag`, `message_id`, `sent_at_ms`, `last_error` |
//!
//! A key is remembered for 30 days (the TTL): a retry with the same key within that time gets
//! the first answer, never a second message.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use lc_core::ports::graph::MessagingType;
use lc_core::ports::requests::{
    RequestClaim, RequestCreated, RequestFinish, RequestRecord, RequestState, RequestStore,
};
use lc_core::ports::PortError;
use serde::{Deserialize, Serialize};

use super::errors::{condition_failed_put, port_error};
use super::expr::{n, s, Expr, Updates};
use super::items::{from_item, item_key, to_item, Item};
use super::keys::{Key, PK};
use super::{Conditional, DynamoStore};

const REQUEST_SK: &str = "REQUEST";
/// How long an idempotency key is remembered (TTL), in seconds.
const REQUEST_TTL_SECS: i64 = 30 * 24 * 60 * 60;

fn request_key(page_id: &str, idempotency_key: &str) -> Key {
    (
        format!("REQUEST#{page_id}#{idempotency_key}"),
        REQUEST_SK.to_string(),
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct RequestItem {
    #[serde(skip_deserializing)]
    pk: String,
    #[serde(skip_deserializing)]
    sk: String,
    page_id: String,
    idempotency_key: String,
    request_id: String,
    fingerprint: String,
    body: String,
    state: RequestState,
    messaging_type: MessagingType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    rule: String,
    attempts: u32,
    lease_until_ms: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// Written for DynamoDB's TTL sweep; nothing reads it.
    #[serde(skip_deserializing)]
    expires_at: i64,
}

fn request_item(r: &RequestRecord) -> Result<Item, PortError> {
    let (pk, sk) = request_key(&r.page_id, &r.idempotency_key);
    to_item(RequestItem {
        pk,
        sk,
        page_id: r.page_id.clone(),
        idempotency_key: r.idempotency_key.clone(),
        request_id: r.request_id.clone(),
        fingerprint: r.fingerprint.clone(),
        body: r.body.clone(),
        state: r.state,
        messaging_type: r.messaging_type,
        tag: r.tag.clone(),
        rule: r.rule.clone(),
        attempts: r.attempts,
        lease_until_ms: r.lease_until_ms,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
        message_id: r.message_id.clone(),
        sent_at_ms: r.sent_at_ms,
        last_error: r.last_error.clone(),
        expires_at: r.created_at_ms.div_euclid(1000) + REQUEST_TTL_SECS,
    })
}

fn request_from(item: Item) -> Result<RequestRecord, PortError> {
    let key = item_key(&item);
    let i: RequestItem = from_item(item, &key)?;
    Ok(RequestRecord {
        page_id: i.page_id,
        idempotency_key: i.idempotency_key,
        request_id: i.request_id,
        fingerprint: i.fingerprint,
        body: i.body,
        state: i.state,
        messaging_type: i.messaging_type,
        tag: i.tag,
        rule: i.rule,
        attempts: i.attempts,
        lease_until_ms: i.lease_until_ms,
        created_at_ms: i.created_at_ms,
        updated_at_ms: i.updated_at_ms,
        message_id: i.message_id,
        sent_at_ms: i.sent_at_ms,
        last_error: i.last_error,
    })
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn create_request(&self, record: &RequestRecord) -> Result<RequestCreated, PortError> {
        let item = request_item(record)?;
        self.count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(RequestCreated::Created),
            Err(err) => err,
        };
        let old = match condition_failed_put(&err) {
            None => return Err(port_error("PutItem", &err)),
            Some(Some(old)) => old,
            // A backend without ALL_OLD on failure: read what holds the key.
            Some(None) => self
                .get_item(request_key(&record.page_id, &record.idempotency_key))
                .await?
                .ok_or_else(|| {
                    PortError::Unavailable(
                        "PutItem: request key taken, then gone before it could be read".into(),
                    )
                })?,
        };
        Ok(RequestCreated::Exists(Box::new(request_from(old)?)))
    }

    async fn get_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<RequestRecord>, PortError> {
        self.get_item(request_key(page_id, idempotency_key))
            .await?
            .map(request_from)
            .transpose()
    }

    async fn claim_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<RequestClaim, PortError> {
        let mut u = Updates::default();
        u.set("state", s(RequestState::Sending.as_str()))
            .set("lease_until_ms", n(lease_until_ms))
            .set("updated_at_ms", n(now_ms))
            .add("attempts", 1);
        let cond = u.condition(|e| free_condition(e, now_ms));
        let key = request_key(page_id, idempotency_key);
        match self.update(key, u, cond, true, true).await? {
            Conditional::Applied(Some(new)) => {
                Ok(RequestClaim::Claimed(Box::new(request_from(new)?)))
            }
            Conditional::Applied(None) => Err(PortError::Unavailable(
                "UpdateItem: claim applied but no attributes returned".into(),
            )),
            Conditional::Failed(Some(old)) => {
                Ok(RequestClaim::NotClaimable(Box::new(request_from(old)?)))
            }
            // No item with the failure: it is missing (or the backend does not return it).
            Conditional::Failed(None) => match self.get_request(page_id, idempotency_key).await? {
                Some(r) => Ok(RequestClaim::NotClaimable(Box::new(r))),
                None => Ok(RequestClaim::Missing),
            },
        }
    }

    async fn finish_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        attempt: u32,
        finish: &RequestFinish,
        now_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        match finish {
            RequestFinish::Sent {
                message_id,
                sent_at_ms,
            } => {
                u.set("state", s(RequestState::Sent.as_str()))
                    .set("sent_at_ms", n(*sent_at_ms));
                if let Some(m) = message_id {
                    u.set("message_id", s(m));
                }
            }
            RequestFinish::Release { error } => {
                u.set("state", s(RequestState::Accepted.as_str()))
                    .set("lease_until_ms", n(0))
                    .set("last_error", s(error));
            }
            RequestFinish::Failed { error } => {
                u.set("state", s(RequestState::Failed.as_str()))
                    .set("last_error", s(error));
            }
            RequestFinish::Refused { reason } => {
                u.set("state", s(RequestState::Refused.as_str()))
                    .set("last_error", s(reason));
            }
        }
        u.set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            format!(
                "{state} = {sending} AND {attempts} = {attempt}",
                state = e.name("state"),
                sending = e.value(s(RequestState::Sending.as_str())),
                attempts = e.name("attempts"),
                attempt = e.value(n(i64::from(attempt))),
            )
        });
        Ok(self
            .update(request_key(page_id, idempotency_key), u, cond, false, false)
            .await?
            .applied())
    }
}

/// `state = accepted OR (state = sending AND lease_until_ms <= now)`, on an existing item.
fn free_condition(e: &mut Expr, now_ms: i64) -> String {
    let pk = e.name(PK);
    let state = e.name("state");
    let lease = e.name("lease_until_ms");
    let accepted = e.value(s(RequestState::Accepted.as_str()));
    let sending = e.value(s(RequestState::Sending.as_str()));
    let now = e.value(n(now_ms));
    format!(
        "attribute_exists({pk}) AND ({state} = {accepted} OR ({state} = {sending} AND {lease} <= {now}))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expr::{n, s};

    fn sample() -> RequestRecord {
        RequestRecord {
            page_id: "100".into(),
            idempotency_key: "order#42".into(),
            request_id: "req_1".into(),
            fingerprint: "f".into(),
            body: "{}".into(),
            state: RequestState::Accepted,
            messaging_type: MessagingType::MessageTag,
            tag: Some("HUMAN_AGENT".into()),
            rule: "human_agent_window".into(),
            attempts: 0,
            lease_until_ms: 0,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_000,
            message_id: None,
            sent_at_ms: None,
            last_error: None,
        }
    }

    #[test]
    fn a_request_round_trips_through_its_item() {
        let r = sample();
        let item = request_item(&r).expect("item");
        assert_eq!(item.get("pk"), Some(&s("REQUEST#100#order#42")));
        assert_eq!(item.get("sk"), Some(&s("REQUEST")));
        assert_eq!(item.get("state"), Some(&s("accepted")));
        assert_eq!(item.get("messaging_type"), Some(&s("MESSAGE_TAG")));
        assert_eq!(
            item.get("expires_at"),
            Some(&n(1_700_000_000 + REQUEST_TTL_SECS))
        );
        assert!(!item.contains_key("message_id"), "absent, not NULL");
        assert_eq!(request_from(item), Ok(r));
    }
}
