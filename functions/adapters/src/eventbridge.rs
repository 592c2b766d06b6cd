//! EventBridge: the event bus port over `PutEvents`. One call takes up to 10 entries and
//! answers per entry; the entries it refused are returned by index, and
//! `lc_core::bus::publish_all` sends them again.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use lc_core::bus::{BusEvent, SOURCE};
use lc_core::ports::bus::MAX_ENTRIES;
use lc_core::ports::{EventBus, PortError, RequestCounter};

use crate::aws::port_error;

#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
    counter: Option<Arc<RequestCounter>>,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgeBus {
            client,
            bus_name: bus_name.into(),
            counter: None,
        }
    }

    /// Counts every request (service `events`) for cost figures.
    pub fn with_counter(mut self, counter: Arc<RequestCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<usize>, PortError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if events.len() > MAX_ENTRIES {
            return Err(PortError::Rejected(format!(
                "{} entries in one PutEvents; at most {MAX_ENTRIES}",
                events.len()
            )));
        }
        let mut entries = Vec::with_capacity(events.len());
        // EventBridge bills each 64 KB chunk of an entry (detail, detail-type, source) as one
        // event.
        let mut chunks = 0u64;
        for e in events {
            let detail = e
                .detail_json()
                .map_err(|err| PortError::Rejected(format!("event detail: {err}")))?;
            let size = detail.len() + e.detail_type.as_str().len() + SOURCE.len();
            chunks += size.div_ceil(64 * 1024).max(1) as u64;
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(SOURCE)
                    .detail_type(e.detail_type.as_str())
                    .detail(detail)
                    .build(),
            );
        }
        if let Some(c) = &self.counter {
            c.incr("events", "PutEvents");
            c.add("events", "PutEventsEntries64K", chunks);
        }
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| port_error("PutEvents", &e))?;
        // Entries answer in request order; one with an error code was not accepted.
        let refused = out
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        if out.failed_entry_count() > 0 && refused.is_empty() {
            // Counted as failed but not said which: send them all again (same ids).
            return Ok((0..events.len()).collect());
        }
        Ok(refused)
    }
}

/// Creates a bus (tests and the local runner against moto).
pub async fn create_bus(client: &Client, name: &str) -> Result<(), PortError> {
    match client.create_event_bus().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = format!("{e:?}");
            if text.contains("ResourceAlreadyExists") {
                Ok(())
            } else {
                Err(port_error("CreateEventBus", &e))
            }
        }
    }
}
