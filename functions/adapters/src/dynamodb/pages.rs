//! [`PageStore`]: the per-Page config item that operators also edit by hand.

use async_trait::async_trait;
use lc_core::ports::store::PageConfig;
use lc_core::ports::{PageStore, PortError};

use super::expr::{b, n, newer_condition, s, Updates};
use super::items::page_from;
use super::keys::page_key;
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
                    .set("paused_at_ms", n(event_at_ms));
            }
            None => {
                u.remove("paused_reason").remove("paused_at_ms");
            }
        }
        let cond = u.condition(|e| newer_condition(e, "pause_event_at_ms", event_at_ms));
        Ok(self
            .update(page_key(page_id), u, cond, false, false)
            .await?
            .applied())
    }
}
