//! [`PersonStore`]: the person item and its marketing tokens, written by conditional updates
//! that keep the newest event (by event time) whatever order events arrive in.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use lc_core::lifecycle::optin::{Optin, OptinState};
use lc_core::ports::store::{
    Link, LinkPlan, LinkResult, MarketingToken, Person, ReferralInfo, TokenStatus, UserMessage,
};
use lc_core::ports::{OptinStore, PersonStore, PortError};
use lc_core::webhook::IdentityKind;

use super::errors::port_error;
use super::expr::{
    generation_condition, n, newer_condition, s, transact_check, transact_put, Expr, Updates,
};
use super::items::{optin_put_item, person_from, token_from};
use super::keys::{
    optin_key, person_key, person_pk, token_key, OPS_PK, OPS_SK, PK, TOKEN_SK_PREFIX, TTL,
};
use super::{Conditional, DynamoStore};
use lc_core::support::retention::Retention;

/// The opt-in's place in the link transaction (the person's update comes first and has no
/// condition): its cancellation reason tells a changed opt-in from a conflict.
const LINK_OPTIN_ITEM: usize = 1;

/// How often a link reads the opt-in and tries its transaction before giving up (the opt-in
/// changed between the read and the write every time).
const LINK_TRIES: usize = 3;

fn token_status_str(s: TokenStatus) -> &'static str {
    match s {
        TokenStatus::Active => "active",
        TokenStatus::Stopped => "stopped",
    }
}

/// Where a link writes the identifier on the person.
fn link_attr(kind: IdentityKind) -> Result<&'static str, PortError> {
    match kind {
        IdentityKind::LoginId => Ok("login_id"),
        IdentityKind::UserRef => Ok("user_ref"),
        other => Err(PortError::Rejected(format!(
            "link: identifier kind {} cannot be linked to a PSID",
            other.as_str()
        ))),
    }
}

/// What a cancelled link transaction means.
#[derive(Debug, PartialEq, Eq)]
enum LinkFailure {
    /// The opt-in's condition failed: it changed since it was read; read again.
    OptinChanged,
    /// Anything else (a concurrent transaction on either item, throttling, ...).
    Other(PortError),
}

fn link_failed(err: &SdkError<TransactWriteItemsError>) -> LinkFailure {
    let Some(TransactWriteItemsError::TransactionCanceledException(t)) = err.as_service_error()
    else {
        return LinkFailure::Other(port_error("TransactWriteItems", err));
    };
    let reasons = t.cancellation_reasons();
    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
    if code(LINK_OPTIN_ITEM) == "ConditionalCheckFailed" {
        return LinkFailure::OptinChanged;
    }
    let codes = (0..reasons.len()).map(code).collect::<Vec<_>>().join(",");
    LinkFailure::Other(PortError::Unavailable(format!(
        "TransactWriteItems: transaction cancelled [{codes}]"
    )))
}

/// `read` is still what the plan was made from: same generation and state (a lapsed lease
/// still lapsed at `now_ms`).
fn same_state(e: &mut Expr, read: &Optin, now_ms: i64) -> String {
    let generation = generation_condition(e, read.generation);
    let state = e.name("state");
    let read_state = e.value(s(read.state.as_str()));
    let mut cond = format!("{generation} AND {state} = {read_state}");
    if read.state == OptinState::Sending {
        let lease = e.name("lease_until_ms");
        let now = e.value(n(now_ms));
        cond = format!("{cond} AND {lease} <= {now}");
    }
    cond
}

/// The opt-in's item in the link transaction, for `plan` made from `read`, conditional on the
/// record still leading to the same plan.
fn link_optin_item(
    table: &str,
    link: &Link,
    plan: LinkPlan,
    read: Option<&Optin>,
    now_ms: i64,
    retention: &Retention,
) -> Result<TransactWriteItem, PortError> {
    // Answered (or closed and now linked): kept for the retention period from now.
    let ttl = n(retention.optin_expires_at(now_ms));
    let key = optin_key(&link.optin_key);
    let stored = |what: &str| {
        PortError::Rejected(format!(
            "link: plan {what} needs the opt-in it was made from"
        ))
    };
    match plan {
        LinkPlan::Answer => {
            let read = read.ok_or_else(|| stored("Answer"))?;
            let mut u = Updates::default();
            u.set("state", s(OptinState::Answered.as_str()))
                .set_if_absent("psid", s(&link.psid))
                .set_if_absent("answered_at_ms", n(link.at_ms))
                .set(TTL, ttl)
                .set("updated_at_ms", n(now_ms))
                .remove(OPS_PK)
                .remove(OPS_SK);
            let cond = u.condition(|e| same_state(e, read, now_ms));
            u.into_transact_item(table, key, Some(cond))
        }
        LinkPlan::SetPsid => {
            let read = read.ok_or_else(|| stored("SetPsid"))?;
            let mut u = Updates::default();
            u.set("psid", s(&link.psid))
                .set(TTL, ttl)
                .set("updated_at_ms", n(now_ms));
            let cond = u.condition(|e| {
                let same = same_state(e, read, now_ms);
                format!("{same} AND attribute_not_exists({})", e.name("psid"))
            });
            u.into_transact_item(table, key, Some(cond))
        }
        LinkPlan::Keep => {
            let read = read.ok_or_else(|| stored("Keep"))?;
            let mut e = Expr::default();
            let same = same_state(&mut e, read, now_ms);
            let cond = format!("{same} AND attribute_exists({})", e.name("psid"));
            transact_check(table, key, cond, &e)
        }
        LinkPlan::Create => {
            let mut e = Expr::default();
            let cond = format!("attribute_not_exists({})", e.name(PK));
            let item = optin_put_item(&link.reply_optin(now_ms)?, retention)?;
            transact_put(table, item, cond, &e)
        }
        LinkPlan::Absent => {
            let mut e = Expr::default();
            let cond = format!("attribute_not_exists({})", e.name(PK));
            transact_check(table, key, cond, &e)
        }
        LinkPlan::InFlight => Err(PortError::Rejected(
            "link: a send in flight writes nothing".into(),
        )),
    }
}

#[async_trait]
impl PersonStore for DynamoStore {
    async fn get_person(&self, page_id: &str, psid: &str) -> Result<Option<Person>, PortError> {
        self.get_item(person_key(page_id, psid))
            .await?
            .map(|i| person_from(i, page_id, psid))
            .transpose()
    }

    async fn record_user_message(
        &self,
        page_id: &str,
        psid: &str,
        at_ms: i64,
    ) -> Result<UserMessage, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("last_user_message_at_ms", n(at_ms))
            .set(TTL, n(self.retention.person_expires_at(at_ms)));
        let cond = u.condition(|e| newer_condition(e, "last_user_message_at_ms", at_ms));
        // ALL_NEW on success, ALL_OLD on a refused condition: the person either way, in the
        // same request (the events published for the message carry its identities).
        let (moved, item) = match self
            .update(person_key(page_id, psid), u, cond, true, true)
            .await?
        {
            Conditional::Applied(item) => (true, item),
            Conditional::Failed(item) => (false, item),
        };
        let person = item.map(|i| person_from(i, page_id, psid)).transpose()?;
        Ok(UserMessage { moved, person })
    }

    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError> {
        let id_attr = link_attr(link.identifier.kind)?;
        // Validated before anything is sent (the twin does the same).
        link.reply_optin(now_ms)?;
        // A transaction cannot choose its update from the stored value: read the opt-in, plan
        // from it, and make the write conditional on it still leading to that plan.
        for _ in 0..LINK_TRIES {
            let read = self.get_optin(&link.optin_key).await?;
            let plan = link.plan(read.as_ref(), now_ms);
            if plan == LinkPlan::InFlight {
                return Ok(LinkResult::SendInFlight);
            }

            // The first identifier of a kind stays; every one joins the set. The opt-in's
            // business id joins the person (the first known stays): it was just read, so this
            // costs nothing more.
            let mut person = Updates::default();
            person
                .set("page_id", s(&link.page_id))
                .set("psid", s(&link.psid))
                .set_if_absent(id_attr, s(&link.identifier.id))
                .set_if_absent("linked_at_ms", n(link.at_ms))
                // The message this reply is records the person's newest time right after.
                .set_if_absent(TTL, n(self.retention.person_expires_at(link.at_ms)))
                .add_to_set("linked", vec![link.tag()]);
            if let Some(x) = read.as_ref().and_then(|o| o.external_id.as_deref()) {
                person.set_if_absent("external_id", s(x));
            }
            let person = person.into_transact_item(
                &self.table,
                person_key(&link.page_id, &link.psid),
                None,
            )?;
            let optin = link_optin_item(
                &self.table,
                link,
                plan,
                read.as_ref(),
                now_ms,
                &self.retention,
            )?;

            self.count("TransactWriteItems");
            match self
                .client
                .transact_write_items()
                .transact_items(person)
                .transact_items(optin)
                .send()
                .await
            {
                Ok(_) => return Ok(LinkResult::Linked),
                Err(err) => match link_failed(&err) {
                    LinkFailure::OptinChanged => continue,
                    LinkFailure::Other(e) => return Err(e),
                },
            }
        }
        Err(PortError::Unavailable(format!(
            "link: the opt-in changed under each of {LINK_TRIES} tries"
        )))
    }

    async fn record_referral(
        &self,
        page_id: &str,
        psid: &str,
        referral: &ReferralInfo,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("referral_at_ms", n(referral.at_ms))
            .set(TTL, n(self.retention.person_expires_at(referral.at_ms)))
            .set_opt("referral_reference", referral.reference.as_deref().map(s))
            .set_opt("referral_source", referral.source.as_deref().map(s))
            .set_opt("referral_ad_id", referral.ad_id.as_deref().map(s));
        let cond = u.condition(|e| newer_condition(e, "referral_at_ms", referral.at_ms));
        Ok(self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?
            .applied())
    }

    async fn set_token(
        &self,
        page_id: &str,
        psid: &str,
        token: &MarketingToken,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("topic", s(&token.topic))
            .set("status", s(token_status_str(token.status)))
            .set("status_at_ms", n(token.status_at_ms))
            .set(TTL, n(self.retention.person_expires_at(token.status_at_ms)));
        // A change that names a token replaces token and expiry; one that does not (STOP /
        // RESUME) keeps the stored token, and its expiry unless it brings one.
        match &token.token {
            Some(t) => {
                u.set("token", s(t))
                    .set_opt("token_expires_at_ms", token.expires_at_ms.map(n));
            }
            None => {
                if let Some(exp) = token.expires_at_ms {
                    u.set("token_expires_at_ms", n(exp));
                }
            }
        }
        let cond = u.condition(|e| newer_condition(e, "status_at_ms", token.status_at_ms));
        Ok(self
            .update(
                token_key(page_id, psid, &token.topic),
                u,
                cond,
                false,
                false,
            )
            .await?
            .applied())
    }

    async fn get_tokens(
        &self,
        page_id: &str,
        psid: &str,
    ) -> Result<Vec<MarketingToken>, PortError> {
        self.query(&person_pk(page_id, psid), Some(TOKEN_SK_PREFIX), usize::MAX)
            .await?
            .into_iter()
            .map(token_from)
            .collect()
    }

    async fn opt_out(
        &self,
        page_id: &str,
        psid: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<(), PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("opted_out_at_ms", n(at_ms))
            .set("opted_out_reason", s(reason))
            // A person known only from an opt-out still expires; a later message extends it.
            .set_if_absent(TTL, n(self.retention.person_expires_at(at_ms)));
        // The earliest opt-out (by event time) is kept, with its reason.
        let cond = u.condition(|e| {
            let k = e.name("opted_out_at_ms");
            let v = e.value(n(at_ms));
            format!("attribute_not_exists({k}) OR {k} > {v}")
        });
        // A later opt-out fails the condition: the earlier one stays, which is not an error.
        let _kept = self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::errors::tests::{meta, response};
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError> {
        let reasons = codes
            .iter()
            .map(|c| CancellationReason::builder().code(*c).build())
            .collect();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .set_cancellation_reasons(Some(reasons))
                    .meta(meta("TransactionCanceledException"))
                    .build(),
            ),
            response(400),
        )
    }

    #[test]
    fn a_failed_optin_condition_reads_again() {
        assert_eq!(
            link_failed(&cancelled(&["None", "ConditionalCheckFailed"])),
            LinkFailure::OptinChanged
        );
    }

    #[test]
    fn other_cancellations_are_retried_with_their_reasons() {
        for (codes, text) in [
            (
                &["TransactionConflict", "None"][..],
                "[TransactionConflict,None]",
            ),
            (&["None", "ThrottlingError"][..], "[None,ThrottlingError]"),
            (
                &["ConditionalCheckFailed", "None"][..],
                "[ConditionalCheckFailed,None]",
            ),
            (&[][..], "[]"),
        ] {
            assert_eq!(
                link_failed(&cancelled(codes)),
                LinkFailure::Other(PortError::Unavailable(format!(
                    "TransactWriteItems: transaction cancelled {text}"
                )))
            );
        }
    }

    #[test]
    fn other_transaction_errors_are_classified_like_any_request() {
        let busy = SdkError::service_error(
            TransactWriteItemsError::generic(meta("TransactionInProgressException")),
            response(400),
        );
        assert!(matches!(
            link_failed(&busy),
            LinkFailure::Other(PortError::Unavailable(_))
        ));
        let invalid = SdkError::service_error(
            TransactWriteItemsError::generic(meta("ValidationException")),
            response(400),
        );
        assert!(matches!(
            link_failed(&invalid),
            LinkFailure::Other(PortError::Rejected(_))
        ));
    }

    #[test]
    fn token_status_is_written_as_it_is_read() {
        for st in [TokenStatus::Active, TokenStatus::Stopped] {
            assert_eq!(
                serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(st),
                Ok(s(token_status_str(st)))
            );
        }
    }

    #[test]
    fn only_login_ids_and_user_refs_link() {
        assert_eq!(link_attr(IdentityKind::LoginId), Ok("login_id"));
        assert_eq!(link_attr(IdentityKind::UserRef), Ok("user_ref"));
        assert!(matches!(
            link_attr(IdentityKind::Psid),
            Err(PortError::Rejected(_))
        ));
    }
}
