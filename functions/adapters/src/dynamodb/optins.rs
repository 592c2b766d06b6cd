//! [`OptinStore`]: the opt-in state machine, one conditional write per transition.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use lc_core::lifecycle::optin::{Optin, OptinSource, OptinState};
use lc_core::ports::store::{Claim, Created, Finish, Reopened, Unsent};
use lc_core::ports::{OptinStore, PortError};

use super::errors::{condition_failed_put, port_error};
use super::expr::{b, generation_condition, n, s, Expr, Updates};
use super::items::{optin_from, optin_put_item};
use super::keys::{
    optin_key, unsent_pk, unsent_shard_pk, unsent_sk, OPS_PK, OPS_SK, PK, SK, TTL, UNSENT_SHARDS,
};
use super::{Conditional, DynamoStore};

/// `state = pending OR (state = sending AND lease_until_ms <= now)`: free to be claimed or
/// expired.
fn free_condition(e: &mut Expr, now_ms: i64) -> String {
    let state = e.name("state");
    let lease = e.name("lease_until_ms");
    let pending = e.value(s(OptinState::Pending.as_str()));
    let sending = e.value(s(OptinState::Sending.as_str()));
    let now = e.value(n(now_ms));
    format!("({state} = {pending} OR ({state} = {sending} AND {lease} <= {now}))")
}

/// The closed states, in which a generation may be replaced by the next.
const CLOSED: [OptinState; 6] = [
    OptinState::Sent,
    OptinState::Answered,
    OptinState::Failed,
    OptinState::Expired,
    OptinState::OptedOut,
    OptinState::Declined,
];

/// `seen` is still the stored record: same generation, state and `updated_at_ms`, and closed.
fn unchanged_condition(e: &mut Expr, seen: &Optin) -> String {
    let generation = generation_condition(e, seen.generation);
    let state = e.name("state");
    let seen_state = e.value(s(seen.state.as_str()));
    let updated = e.name("updated_at_ms");
    let seen_updated = e.value(n(seen.updated_at_ms));
    let closed: Vec<String> = CLOSED.iter().map(|c| e.value(s(c.as_str()))).collect();
    format!(
        "attribute_exists({pk}) AND {generation} AND {state} = {seen_state} AND \
         {updated} = {seen_updated} AND {state} IN ({closed})",
        pk = e.name(PK),
        closed = closed.join(", "),
    )
}

#[async_trait]
impl OptinStore for DynamoStore {
    async fn create_optin(&self, optin: &Optin) -> Result<Created, PortError> {
        let item = optin_put_item(optin, &self.retention)?;
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
            Ok(_) => return Ok(Created::Created),
            Err(err) => err,
        };
        let old = match condition_failed_put(&err) {
            None => return Err(port_error("PutItem", &err)),
            Some(Some(old)) => old,
            // A backend without ALL_OLD on failure: read what holds the key.
            Some(None) => self
                .get_item(optin_key(&optin.key()))
                .await?
                .ok_or_else(|| {
                    PortError::Unavailable(
                        "PutItem: opt-in key taken, then gone before it could be read".into(),
                    )
                })?,
        };
        Ok(Created::Exists(Box::new(optin_from(old)?)))
    }

    async fn get_optin(&self, key: &str) -> Result<Option<Optin>, PortError> {
        self.get_item(optin_key(key))
            .await?
            .map(optin_from)
            .transpose()
    }

    async fn mark_job_enqueued(&self, key: &str, now_ms: i64) -> Result<(), PortError> {
        let mut u = Updates::default();
        u.set("job_enqueued", b(true))
            .set("job_claim_until_ms", n(0))
            .set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| format!("attribute_exists({})", e.name(PK)));
        // A missing opt-in has nothing to mark (the update must not create a partial item):
        // a failed condition is not an error.
        let _applied = self.update(optin_key(key), u, cond, false, false).await?;
        Ok(())
    }

    async fn take_job(
        &self,
        key: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("job_claim_until_ms", n(claim_until_ms))
            .set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            // Pending, or sending with a lapsed lease (an inline send whose process died).
            let open = free_condition(e, now_ms);
            format!(
                "attribute_exists({pk}) AND {enq} = {f} AND {open} AND {claim} <= {now}",
                pk = e.name(PK),
                enq = e.name("job_enqueued"),
                f = e.value(b(false)),
                claim = e.name("job_claim_until_ms"),
                now = e.value(n(now_ms)),
            )
        });
        Ok(self
            .update(optin_key(key), u, cond, false, false)
            .await?
            .applied())
    }

    async fn reopen(&self, seen: &Optin, next: &Optin) -> Result<Reopened, PortError> {
        if next.key() != seen.key() || next.generation != seen.generation.saturating_add(1) {
            return Err(PortError::Rejected(format!(
                "reopen: generation {} is not the successor of generation {} on its key",
                next.generation, seen.generation
            )));
        }
        let item = optin_put_item(next, &self.retention)?;
        let mut e = Expr::default();
        let cond = unchanged_condition(&mut e, seen);
        self.count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(Reopened::Reopened),
            Err(err) => err,
        };
        match condition_failed_put(&err) {
            None => Err(port_error("PutItem", &err)),
            Some(Some(old)) => Ok(Reopened::Changed(Box::new(optin_from(old)?))),
            // No item with the failure: it is missing (or the backend does not return it).
            Some(None) => match self.get_optin(&seen.key()).await? {
                Some(o) => Ok(Reopened::Changed(Box::new(o))),
                None => Ok(Reopened::Missing),
            },
        }
    }

    async fn claim(
        &self,
        key: &str,
        generation: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Claim, PortError> {
        let mut u = Updates::default();
        u.set("state", s(OptinState::Sending.as_str()))
            .set("lease_until_ms", n(lease_until_ms))
            .set("updated_at_ms", n(now_ms))
            .add("attempts", 1);
        let cond = u.condition(|e| {
            let free = free_condition(e, now_ms);
            let generation = generation_condition(e, generation);
            format!(
                "attribute_exists({pk}) AND {generation} AND {deadline} > {now} AND {free}",
                pk = e.name(PK),
                deadline = e.name("deadline_at_ms"),
                now = e.value(n(now_ms)),
            )
        });
        match self.update(optin_key(key), u, cond, true, true).await? {
            Conditional::Applied(Some(new)) => Ok(Claim::Claimed(Box::new(optin_from(new)?))),
            Conditional::Applied(None) => Err(PortError::Unavailable(
                "UpdateItem: claim applied but no attributes returned".into(),
            )),
            Conditional::Failed(Some(old)) => Ok(Claim::NotClaimable(Box::new(optin_from(old)?))),
            // No item with the failure: it is missing (or the backend does not return it).
            Conditional::Failed(None) => match self.get_optin(key).await? {
                Some(o) => Ok(Claim::NotClaimable(Box::new(o))),
                None => Ok(Claim::Missing),
            },
        }
    }

    async fn finish(
        &self,
        key: &str,
        attempt: u32,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        match finish {
            Finish::Sent {
                message_id,
                sent_at_ms,
            } => {
                u.set("state", s(OptinState::Sent.as_str()))
                    .set("sent_at_ms", n(*sent_at_ms));
                if let Some(m) = message_id {
                    u.set("message_id", s(m));
                }
            }
            Finish::Release { error } => {
                u.set("state", s(OptinState::Pending.as_str()))
                    .set("lease_until_ms", n(0))
                    .set("last_error", s(error));
            }
            Finish::Failed { error } => {
                u.set("state", s(OptinState::Failed.as_str()))
                    .set("last_error", s(error));
            }
            Finish::OptedOut { error } => {
                u.set("state", s(OptinState::OptedOut.as_str()))
                    .set("last_error", s(error));
            }
            Finish::Declined { reason } => {
                u.set("state", s(OptinState::Declined.as_str()))
                    .set("last_error", s(reason));
            }
        }
        // A closed opt-in is kept for the retention period, then DynamoDB's TTL removes it; no
        // first message is owed any more, so it leaves the unsent index.
        if !matches!(finish, Finish::Release { .. }) {
            u.set(TTL, n(self.retention.optin_expires_at(now_ms)));
            u.remove(OPS_PK).remove(OPS_SK);
        }
        u.set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            format!(
                "{state} = {sending} AND {attempts} = {attempt}",
                state = e.name("state"),
                sending = e.value(s(OptinState::Sending.as_str())),
                attempts = e.name("attempts"),
                attempt = e.value(n(i64::from(attempt))),
            )
        });
        Ok(self
            .update(optin_key(key), u, cond, false, false)
            .await?
            .applied())
    }

    async fn expire(
        &self,
        key: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<Option<Optin>, PortError> {
        let mut u = Updates::default();
        u.set("state", s(OptinState::Expired.as_str()))
            .set("last_error", s(reason))
            .set(TTL, n(self.retention.optin_expires_at(now_ms)))
            .set("updated_at_ms", n(now_ms))
            .remove(OPS_PK)
            .remove(OPS_SK);
        let cond = u.condition(|e| {
            let free = free_condition(e, now_ms);
            format!(
                "attribute_exists({pk}) AND {deadline} <= {now} AND {free}",
                pk = e.name(PK),
                deadline = e.name("deadline_at_ms"),
                now = e.value(n(now_ms)),
            )
        });
        match self.update(optin_key(key), u, cond, true, false).await? {
            Conditional::Applied(Some(new)) => Ok(Some(optin_from(new)?)),
            Conditional::Applied(None) => Err(PortError::Unavailable(
                "UpdateItem: expiry applied but no attributes returned".into(),
            )),
            Conditional::Failed(_) => Ok(None),
        }
    }
    async fn confirm(&self, key: &str, generation: u32, at_ms: i64) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("confirmed_at_ms", n(at_ms))
            .set("updated_at_ms", n(at_ms));
        let cond = u.condition(|e| {
            let generation = generation_condition(e, generation);
            format!(
                "attribute_exists({pk}) AND {generation} AND {source} = {login} \
                 AND attribute_not_exists({confirmed})",
                pk = e.name(PK),
                source = e.name("source"),
                login = e.value(s(OptinSource::Login.as_str())),
                confirmed = e.name("confirmed_at_ms"),
            )
        });
        Ok(self
            .update(optin_key(key), u, cond, false, false)
            .await?
            .applied())
    }

    async fn retry_failed(&self, seen: &Optin, now_ms: i64, note: &str) -> Result<bool, PortError> {
        let key = seen.key();
        let mut u = Updates::default();
        u.set("state", s(OptinState::Pending.as_str()))
            .set("lease_until_ms", n(0))
            .set("last_error", s(note))
            .set("updated_at_ms", n(now_ms))
            .set(OPS_PK, s(unsent_pk(&key)))
            .set(OPS_SK, s(unsent_sk(seen.opted_in_at_ms)));
        let cond = u.condition(|e| {
            let generation = generation_condition(e, seen.generation);
            format!(
                "attribute_exists({pk}) AND {generation} AND {state} = {failed} AND \
                 {deadline} > {now}",
                pk = e.name(PK),
                state = e.name("state"),
                failed = e.value(s(OptinState::Failed.as_str())),
                deadline = e.name("deadline_at_ms"),
                now = e.value(n(now_ms)),
            )
        });
        Ok(self
            .update(optin_key(&key), u, cond, false, false)
            .await?
            .applied())
    }

    async fn oldest_unsent(&self, limit: usize) -> Result<Vec<Unsent>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The oldest `limit` of each shard hold the oldest `limit` overall.
        let mut owed = Vec::new();
        for shard in 0..UNSENT_SHARDS {
            for item in self
                .query_index(&unsent_shard_pk(shard), limit, false)
                .await?
            {
                let text = |k: &str| match item.get(k) {
                    Some(aws_sdk_dynamodb::types::AttributeValue::S(v)) => Some(v.clone()),
                    _ => None,
                };
                let (Some(optin_key), Some(at), Some(_)) = (text(PK), text(OPS_SK), text(SK))
                else {
                    continue;
                };
                let Ok(opted_in_at_ms) = at.parse::<i64>() else {
                    continue;
                };
                owed.push(Unsent {
                    optin_key,
                    opted_in_at_ms,
                });
            }
        }
        owed.sort_by(|a, b| {
            (a.opted_in_at_ms, &a.optin_key).cmp(&(b.opted_in_at_ms, &b.optin_key))
        });
        owed.truncate(limit);
        Ok(owed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_states_are_the_domains() {
        for st in [
            OptinState::Pending,
            OptinState::Sending,
            OptinState::Sent,
            OptinState::Answered,
            OptinState::Failed,
            OptinState::Expired,
            OptinState::OptedOut,
            OptinState::Declined,
        ] {
            assert_eq!(CLOSED.contains(&st), st.is_closed(), "{}", st.as_str());
        }
    }

    #[test]
    fn the_reopen_condition_names_every_part_of_the_read() {
        let mut seen = lc_core::contract::store::optin("x", "y");
        seen.state = OptinState::Sent;
        let mut e = Expr::default();
        assert_eq!(
            unchanged_condition(&mut e, &seen),
            "attribute_exists(#n3) AND (attribute_not_exists(#n0) OR #n0 = :v0) AND #n1 = :v1 \
             AND #n2 = :v2 AND #n1 IN (:v3, :v4, :v5, :v6, :v7, :v8)"
        );
        seen.generation = 4;
        let mut e = Expr::default();
        assert!(unchanged_condition(&mut e, &seen).contains("AND #n0 = :v0 AND"));
    }
}
