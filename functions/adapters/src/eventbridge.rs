//! EventBridge: the event bus port over `PutEvents`. One call takes up to 10 entries and
//! answers per entry; the entries it refused are returned by index, and
//! `lc_core::bus::publish_all` sends them again.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use lc_core::bus::{BusEvent, DetailType, SOURCE};
use lc_core::ports::bus::MAX_ENTRIES;
use lc_core::ports::{EventBus, PortError, RequestCounter};

use crate::aws::port_error;

#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
    counter: Option<Arc<RequestCounter>>,
    /// Detail types the operator switched off (`BusDetailTypesOff`): not put, reported as
    /// accepted.
    off: Vec<DetailType>,
}

/// `OptInReceived,MessageReceived` -> the detail types (names as on the bus).
pub fn parse_detail_types(raw: &str) -> Result<Vec<DetailType>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            DetailType::ALL
                .iter()
                .copied()
                .find(|d| d.as_str() == t)
                .ok_or_else(|| format!("unknown detail type {t:?}"))
        })
        .collect()
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgeBus {
            client,
            bus_name: bus_name.into(),
            counter: None,
            off: Vec::new(),
        }
    }

    /// Never puts events of these detail types (each one not put is one EventBridge event
    /// not paid for, and one fact the business does not hear of).
    pub fn with_off(mut self, off: Vec<DetailType>) -> Self {
        self.off = off;
        self
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
        if !self.off.is_empty() && events.iter().any(|e| self.off.contains(&e.detail_type)) {
            // Put the rest; refusals are answered by index into `events`.
            let (kept, index): (Vec<BusEvent>, Vec<usize>) = events
                .iter()
                .enumerate()
                .filter(|(_, e)| !self.off.contains(&e.detail_type))
                .map(|(i, e)| (e.clone(), i))
                .unzip();
            let refused = self.put(&kept).await?;
            return Ok(refused
                .into_iter()
                .filter_map(|i| index.get(i).copied())
                .collect());
        }
        self.put(events).await
    }
}

impl EventBridgeBus {
    async fn put(&self, events: &[BusEvent]) -> Result<Vec<usize>, PortError> {
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

/// A rule on `bus` that sends every login-connect event to the SQS queue at `queue_url`, as
/// the template's `BusinessQueueArn` rule does (the local runner and the moto tests use it; a
/// real queue also needs a policy letting EventBridge send, which moto does not check).
pub async fn route_to_queue(
    client: &Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    rule: &str,
    queue_url: &str,
) -> Result<(), PortError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| port_error("GetQueueAttributes", &e))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| PortError::Unavailable(format!("no QueueArn for {queue_url}")))?;
    client
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(format!(r#"{{"source":["{SOURCE}"]}}"#))
        .send()
        .await
        .map_err(|e| port_error("PutRule", &e))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("business-queue")
        .arn(arn)
        .build()
        .map_err(|e| PortError::Rejected(format!("target: {e}")))?;
    client
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| port_error("PutTargets", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_types_switched_off_by_name() {
        assert_eq!(
            parse_detail_types(" OptInReceived, FirstMessageSent ,").unwrap(),
            vec![DetailType::OptInReceived, DetailType::FirstMessageSent]
        );
        assert!(parse_detail_types("").unwrap().is_empty());
        assert!(parse_detail_types("OptinReceived").is_err());
    }
}
