//! [`PageStore`]: the per-Page config item that operators also edit by hand.

use async_trait::async_trait;
use lc_core::ports::store::PageConfig;
use lc_core::ports::{PageStore, PortError};

use super::expr::{b, n, newer_condition, s, Updates};
use super::items::page_from;
use super::keys::{page_key, paused_sk, OPS_PK, OPS_SK, PAUSED_PK, PK};
use super::DynamoStore;

#[async_trait]
impl PageStore for DynamoStore {
    async fn get_page(&self, page_id: &str) -> Result<Option<PageConfig>, PortError> {
        self.get_item(page_key(page_id))
            .await?
            .map(|i| page_from(i, page_id))
            .transpose()
    }

    async fn set_paused(
        &self,
        page_id: &str,
        reason: Option<&str>,
        event_at_ms: i64,
    ) -> Result<bool, PortError> {
        // An update, not a put: the operator's `first_message` and notes stay.
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("paused", b(reason.is_some()))
            .set("pause_event_at_ms", n(event_at_ms));
        match reason {
            Some(r) => {
                u.set("paused_reason", s(r))
                    .set("paused_at_ms", n(event_at_ms))
                    .set(OPS_PK, s(PAUSED_PK))
                    .set(OPS_SK, s(paused_sk(event_at_ms, page_id)));
            }
            None => {
                u.remove("paused_reason")
                    .remove("paused_at_ms")
                    .remove(OPS_PK)
                    .remove(OPS_SK);
            }
        }
        let cond = u.condition(|e| newer_condition(e, "pause_event_at_ms", event_at_ms));
        Ok(self
            .update(page_key(page_id), u, cond, false, false)
            .await?
            .applied())
    }

    async fn list_paused(&self, limit: usize) -> Result<Vec<PageConfig>, PortError> {
        let mut pages = Vec::new();
        for item in self.query_index(PAUSED_PK, limit, true).await? {
            let page_id = match item.get(PK) {
                Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) => {
                    pk.strip_prefix("PAGE#").unwrap_or(pk).to_string()
                }
                _ => continue,
            };
            // The index holds the pause fields only (its projection): the rest is defaulted.
            let full = page_from(item, &page_id)?;
            pages.push(PageConfig {
                page_id: full.page_id,
                paused: full.paused,
                paused_reason: full.paused_reason,
                paused_at_ms: full.paused_at_ms,
                ..PageConfig::default()
            });
        }
        Ok(pages)
    }
}
