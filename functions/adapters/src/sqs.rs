//! SQS: the queue port over `SendMessageBatch`.

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use std::sync::Arc;

use lc_core::ports::{
    EntryFailure, GroupedMessage, OutMessage, PortError, QueueReceiver, QueueSender, Received,
    RequestCounter, VisibilityControl,
};

use crate::aws::port_error;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    counter: Option<Arc<RequestCounter>>,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
            counter: None,
        }
    }

    /// Counts every request (service `sqs`) for cost figures.
    pub fn with_counter(mut self, counter: Arc<RequestCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    fn count(&self, op: &str) {
        if let Some(c) = &self.counter {
            c.incr("sqs", op);
        }
    }

    /// SQS bills each 64 KB chunk of a request's payload as one request: the chunks past the
    /// first are counted as `sqs.Extra64KChunks`.
    fn extra_chunks(&self, payload_bytes: usize) {
        if let Some(c) = &self.counter {
            c.add(
                "sqs",
                "Extra64KChunks",
                payload_bytes.div_ceil(64 * 1024).saturating_sub(1) as u64,
            );
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

fn entry(m: &OutMessage) -> Result<SendMessageBatchRequestEntry, PortError> {
    let mut b = SendMessageBatchRequestEntry::builder()
        .id(&m.id)
        .message_body(&m.body);
    if m.delay_secs > 0 {
        // Not clamped: SQS refuses more than 900 s per entry, and that refusal is reported.
        b = b.delay_seconds(m.delay_secs as i32);
    }
    for (name, value) in &m.attributes {
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value.as_ref())
            .build()
            .map_err(|e| PortError::Rejected(format!("message attribute {name}: {e}")))?;
        b = b.message_attributes(name.as_ref(), attr);
    }
    b.build()
        .map_err(|e| PortError::Rejected(format!("batch entry: {e}")))
}

impl SqsQueue {
    async fn send_entries(
        &self,
        messages: &[&OutMessage],
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<Vec<EntryFailure>, PortError> {
        self.count("SendMessageBatch");
        let bytes: usize = messages
            .iter()
            .map(|m| {
                m.body.len()
                    + m.attributes
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + "String".len())
                        .sum::<usize>()
            })
            .sum();
        self.extra_chunks(bytes);
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| port_error("SendMessageBatch", &e))?;
        let mut failures: Vec<EntryFailure> = out
            .failed()
            .iter()
            .map(|f| EntryFailure {
                id: f.id().to_string(),
                code: f.code().to_string(),
                sender_fault: f.sender_fault(),
            })
            .collect();
        // Trust nothing implicitly: an entry neither reported successful nor failed is failed.
        for m in messages.iter() {
            let ok = out.successful().iter().any(|s| s.id() == m.id);
            let failed = failures.iter().any(|f| f.id == m.id);
            if !ok && !failed {
                failures.push(EntryFailure {
                    id: m.id.clone(),
                    code: "NotAcknowledged".into(),
                    sender_fault: false,
                });
            }
        }
        Ok(failures)
    }
}

#[async_trait]
impl QueueSender for SqsQueue {
    async fn send_batch(&self, messages: &[OutMessage]) -> Result<Vec<EntryFailure>, PortError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&OutMessage> = messages.iter().collect();
        self.send_entries(&refs, entries).await
    }

    /// FIFO queues: each entry with its `MessageGroupId` and `MessageDeduplicationId` (SQS
    /// refuses the whole call on a standard queue, and a per-message delay on a FIFO one).
    async fn send_grouped(
        &self,
        messages: &[GroupedMessage],
    ) -> Result<Vec<EntryFailure>, PortError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages
            .iter()
            .map(|g| {
                let mut e = entry(&g.message)?;
                e.message_group_id = Some(g.group_id.clone());
                e.message_deduplication_id = Some(g.dedup_id.clone());
                Ok(e)
            })
            .collect::<Result<Vec<_>, PortError>>()?;
        let refs: Vec<&OutMessage> = messages.iter().map(|g| &g.message).collect();
        self.send_entries(&refs, entries).await
    }
}

#[async_trait]
impl VisibilityControl for SqsQueue {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        self.count("ChangeMessageVisibility");
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay_secs.min(lc_core::ports::queue::MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map_err(|e| port_error("ChangeMessageVisibility", &e))?;
        Ok(())
    }
}

#[async_trait]
impl QueueReceiver for SqsQueue {
    async fn receive(&self, max: usize, wait_ms: u64) -> Result<Vec<Received>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds((wait_ms / 1000).min(20) as i32)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| port_error("ReceiveMessage", &e))?;
        let messages = out.messages.unwrap_or_default();
        // An empty receive is an idle poll: Lambda's event source makes those at a fixed rate
        // whatever the traffic, so they are counted apart from the receives that carry work.
        self.count(if messages.is_empty() {
            "ReceiveMessageEmpty"
        } else {
            "ReceiveMessage"
        });
        self.extra_chunks(
            messages
                .iter()
                .map(|m| {
                    m.body().map_or(0, str::len)
                        + m.message_attributes().map_or(0, |a| {
                            a.iter()
                                .map(|(k, v)| k.len() + v.string_value().map_or(0, str::len))
                                .sum()
                        })
                })
                .sum(),
        );
        Ok(messages
            .into_iter()
            .map(|m| Received {
                group_id: m
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
                    .cloned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                attributes: m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<String>, PortError> {
        let mut failed = Vec::new();
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .map_err(|e| PortError::Rejected(format!("delete entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.count("DeleteMessageBatch");
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| port_error("DeleteMessageBatch", &e))?;
            for f in out.failed() {
                if let Some(h) = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                    failed.push(h.clone());
                }
            }
        }
        Ok(failed)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), PortError> {
        self.count("DeleteMessage");
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| port_error("DeleteMessage", &e))?;
        Ok(())
    }
}
