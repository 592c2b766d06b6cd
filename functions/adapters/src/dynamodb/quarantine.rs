//! [`QuarantineStore`]: events we could not act on, one partition, oldest first by sort key.

use async_trait::async_trait;
use lc_core::ports::store::QuarantinedRecord;
use lc_core::ports::{PortError, QuarantineStore};

use super::errors::{condition_failed_put, port_error};
use super::expr::s;
use super::items::{quarantined_from, quarantined_item};
use super::keys::{PK, QUARANTINE_PK, SK};
use super::DynamoStore;

#[async_trait]
impl QuarantineStore for DynamoStore {
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError> {
        let item = quarantined_item(record)?;
        self.count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // The same id again: the first record stays.
            Err(e) if condition_failed_put(&e).is_some() => Ok(()),
            Err(e) => Err(port_error("PutItem", &e)),
        }
    }

    async fn list_quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRecord>, PortError> {
        self.query(QUARANTINE_PK, None, limit)
            .await?
            .into_iter()
            .map(quarantined_from)
            .collect()
    }

    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError> {
        self.count("DeleteItem");
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(QUARANTINE_PK))
            .key(SK, s(id))
            .send()
            .await
            .map_err(|e| port_error("DeleteItem", &e))?;
        Ok(())
    }
}
