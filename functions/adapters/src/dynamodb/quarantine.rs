//! [`QuarantineStore`]: events we could not act on, spread over 16 shard partitions
//! (`QUARANTINE#<n>`, by a hash of the id: one partition would cap a burst at about 1,000
//! writes a second). Listing queries every shard, and the partition used before sharding
//! (`QUARANTINE`), and merges them oldest first by id.

use async_trait::async_trait;
use lc_core::ports::store::QuarantinedRecord;
use lc_core::ports::{PortError, QuarantineStore};

use super::errors::{condition_failed_put, port_error};
use super::items::{quarantined_from, quarantined_item};
use super::keys::{quarantine_partitions, quarantine_pk, PK, QUARANTINE_PK, SK};
use super::DynamoStore;

#[async_trait]
impl QuarantineStore for DynamoStore {
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError> {
        let item = quarantined_item(record, &self.retention)?;
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The oldest `limit` overall are among the oldest `limit` of each partition.
        let mut all = Vec::new();
        for pk in quarantine_partitions() {
            for item in self.query(&pk, None, limit).await? {
                all.push(quarantined_from(item)?);
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.dedup_by(|a, b| a.id == b.id);
        all.truncate(limit);
        Ok(all)
    }

    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError> {
        // Its shard, and the legacy partition it may have been written to before sharding.
        for pk in [quarantine_pk(id), QUARANTINE_PK.to_string()] {
            self.count("DeleteItem");
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(PK, super::expr::s(pk))
                .key(SK, super::expr::s(id))
                .send()
                .await
                .map_err(|e| port_error("DeleteItem", &e))?;
        }
        Ok(())
    }
}
