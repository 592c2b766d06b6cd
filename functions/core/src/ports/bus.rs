//! The business's event bus (Amazon EventBridge when deployed): every conversation event goes
//! out to the business through it. See [`crate::bus`] for the events and the publishing rules.

use async_trait::async_trait;

use super::PortError;
use crate::bus::BusEvent;

/// A bus takes at most this many entries per call (EventBridge `PutEvents`).
pub const MAX_ENTRIES: usize = 10;
/// Largest entry a bus accepts (EventBridge: 256 KiB for the whole entry).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts up to [`MAX_ENTRIES`] events. `Ok` lists the indexes of the entries the bus
    /// refused (it answers per entry); `Err` means the whole call failed.
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<usize>, PortError>;
}

/// A bus that drops everything (tools that do not publish).
pub struct NoBus;

#[async_trait]
impl EventBus for NoBus {
    async fn put_events(&self, _events: &[BusEvent]) -> Result<Vec<usize>, PortError> {
        Ok(Vec::new())
    }
}
