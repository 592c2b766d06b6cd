//! [`PersonStore`]: the person item and its marketing tokens, written by conditional updates
//! that keep the newest event (by event time) whatever order events arrive in.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use lc_core::lifecycle::optin::{schedule_name, EntryPoint, OptinSource, OptinState, DAY_MS};
use lc_core::ports::store::{Link, LinkResult, MarketingToken, Person, ReferralInfo, TokenStatus};
use lc_core::ports::{PersonStore, PortError};
use lc_core::webhook::IdentityKind;

use super::errors::port_error;
use super::expr::{b, n, newer_condition, s, Updates};
use super::items::{person_from, token_from};
use super::keys::{optin_key, person_key, person_pk, token_key, PK, TOKEN_SK_PREFIX};
use super::DynamoStore;

/// The opt-in's place in the link transaction (the person's update comes first and has no
/// condition): its cancellation reason tells a live send from a conflict.
const LINK_OPTIN_ITEM: usize = 1;

fn token_status_str(s: TokenStatus) -> &'static str {
    match s {
        TokenStatus::Active => "active",
        TokenStatus::Stopped => "stopped",
    }
}

/// Where a link writes the identifier on the person, and the entry point of a reply-first
/// opt-in.
fn link_target(kind: IdentityKind) -> Result<(&'static str, EntryPoint), PortError> {
    match kind {
        IdentityKind::LoginId => Ok(("login_id", EntryPoint::LoginConnect)),
        IdentityKind::UserRef => Ok(("user_ref", EntryPoint::Checkbox)),
        other => Err(PortError::Rejected(format!(
            "link: identifier kind {} cannot be linked to a PSID",
            other.as_str()
        ))),
    }
}

/// A cancelled link transaction: the opt-in's condition failing means a send holds a live
/// lease; any other reason (a concurrent write to either item, throttling) is worth retrying.
fn link_failed(err: &SdkError<TransactWriteItemsError>) -> Result<LinkResult, PortError> {
    let Some(TransactWriteItemsError::TransactionCanceledException(t)) = err.as_service_error()
    else {
        return Err(port_error("TransactWriteItems", err));
    };
    let reasons = t.cancellation_reasons();
    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
    if code(LINK_OPTIN_ITEM) == "ConditionalCheckFailed" {
        return Ok(LinkResult::SendInFlight);
    }
    let codes = (0..reasons.len()).map(code).collect::<Vec<_>>().join(",");
    Err(PortError::Unavailable(format!(
        "TransactWriteItems: transaction cancelled [{codes}]"
    )))
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
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("last_user_message_at_ms", n(at_ms));
        let cond = u.condition(|e| newer_condition(e, "last_user_message_at_ms", at_ms));
        Ok(self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?
            .applied())
    }

    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError> {
        let (id_attr, entry_point) = link_target(link.identifier.kind)?;

        let mut person = Updates::default();
        person
            .set("page_id", s(&link.page_id))
            .set("psid", s(&link.psid))
            .set(id_attr, s(&link.identifier.id))
            .set_if_absent("linked_at_ms", n(link.at_ms));
        let person =
            person.into_transact_item(&self.table, person_key(&link.page_id, &link.psid), None)?;

        // Answers the opt-in; if the reply came first, every field an opt-in needs is written
        // too (if_not_exists), so the item is a complete `answered` opt-in.
        let mut optin = Updates::default();
        optin
            .set("psid", s(&link.psid))
            .set("state", s(OptinState::Answered.as_str()))
            .set("updated_at_ms", n(now_ms))
            .set_if_absent("answered_at_ms", n(link.at_ms))
            .set_if_absent("recipient_kind", s(link.identifier.kind.as_str()))
            .set_if_absent("recipient_id", s(&link.identifier.id))
            .set_if_absent("page_id", s(&link.page_id))
            .set_if_absent("object", s("page"))
            .set_if_absent("entry_point", s(entry_point.as_str()))
            .set_if_absent("source", s(OptinSource::Reply.as_str()))
            .set_if_absent("opted_in_at_ms", n(link.at_ms))
            .set_if_absent("deadline_at_ms", n(link.at_ms + DAY_MS))
            .set_if_absent("attempts", n(0))
            .set_if_absent("lease_until_ms", n(0))
            .set_if_absent("job_enqueued", b(false))
            .set_if_absent("job_claim_until_ms", n(0))
            .set_if_absent("schedule_name", s(schedule_name(&link.optin_key)))
            .set_if_absent("created_by", s(OptinSource::Reply.as_str()));
        let cond = optin.condition(|e| {
            format!(
                "attribute_not_exists({pk}) OR {state} <> {sending} OR {lease} <= {now}",
                pk = e.name(PK),
                state = e.name("state"),
                sending = e.value(s(OptinState::Sending.as_str())),
                lease = e.name("lease_until_ms"),
                now = e.value(n(now_ms)),
            )
        });
        let optin =
            optin.into_transact_item(&self.table, optin_key(&link.optin_key), Some(cond))?;

        self.count("TransactWriteItems");
        match self
            .client
            .transact_write_items()
            .transact_items(person)
            .transact_items(optin)
            .send()
            .await
        {
            Ok(_) => Ok(LinkResult::Linked),
            Err(err) => link_failed(&err),
        }
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
            .set("status_at_ms", n(token.status_at_ms));
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
            .set("opted_out_reason", s(reason));
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
    fn a_live_send_cancels_the_link_as_in_flight() {
        assert_eq!(
            link_failed(&cancelled(&["None", "ConditionalCheckFailed"])),
            Ok(LinkResult::SendInFlight)
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
                Err(PortError::Unavailable(format!(
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
        assert!(matches!(link_failed(&busy), Err(PortError::Unavailable(_))));
        let invalid = SdkError::service_error(
            TransactWriteItemsError::generic(meta("ValidationException")),
            response(400),
        );
        assert!(matches!(link_failed(&invalid), Err(PortError::Rejected(_))));
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
        assert_eq!(
            link_target(IdentityKind::LoginId),
            Ok(("login_id", EntryPoint::LoginConnect))
        );
        assert_eq!(
            link_target(IdentityKind::UserRef),
            Ok(("user_ref", EntryPoint::Checkbox))
        );
        assert!(matches!(
            link_target(IdentityKind::Psid),
            Err(PortError::Rejected(_))
        ));
    }
}
