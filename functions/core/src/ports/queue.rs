//! Sending to a queue (SQS semantics: batches of up to 10, per-entry results).

use std::borrow::Cow;

use async_trait::async_trait;

use super::PortError;

/// SQS limits a batch to 10 entries and 256 KiB in all.
pub const MAX_BATCH_ENTRIES: usize = 10;
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Largest message SQS takes (1 MiB since 2025), body and attributes together; one larger
/// than a batch goes alone.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A string message attribute: name and value. Names (and the webhook's values: event kinds,
/// `page`) are mostly fixed texts: borrowed, they cost no allocation per message.
pub type Attribute = (Cow<'static, str>, Cow<'static, str>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Entry id, unique within one batch call (`[A-Za-z0-9_-]{1,80}`).
    pub id: String,
    pub body: String,
    /// String message attributes (shown in the SQS console; counted in the size).
    pub attributes: Vec<Attribute>,
    pub delay_secs: u32,
}

impl OutMessage {
    /// Size as SQS counts it: body plus attribute names, types and values.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }
}

/// One entry of a batch that the queue did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    pub id: String,
    pub code: String,
    /// SQS `SenderFault`: the entry itself is at fault (resending it unchanged will fail again).
    pub sender_fault: bool,
}

/// A message for a FIFO queue: delivered after every earlier message of its group is deleted,
/// and dropped when its deduplication id was accepted within the last 5 minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupedMessage {
    /// `delay_secs` must be 0: FIFO queues have no per-message delay.
    pub message: OutMessage,
    /// `MessageGroupId` (1-128 chars of `[A-Za-z0-9!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~]`).
    pub group_id: String,
    /// `MessageDeduplicationId` (same alphabet and length).
    pub dedup_id: String,
}

/// How long a FIFO queue remembers a deduplication id (SQS: 5 minutes).
pub const FIFO_DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

#[async_trait]
pub trait QueueSender: Send + Sync {
    /// Sends one batch (at most [`MAX_BATCH_ENTRIES`] entries, [`MAX_BATCH_BYTES`] bytes).
    /// `Ok` lists the entries that failed; `Err` means the whole call failed.
    async fn send_batch(&self, messages: &[OutMessage]) -> Result<Vec<EntryFailure>, PortError>;

    /// Sends one batch to a FIFO queue (same limits and answers as [`Self::send_batch`]). A
    /// queue that is not FIFO refuses the call.
    async fn send_grouped(
        &self,
        messages: &[GroupedMessage],
    ) -> Result<Vec<EntryFailure>, PortError> {
        let _ = messages;
        Err(PortError::Rejected(
            "this queue takes no message groups (not a FIFO queue)".into(),
        ))
    }
}

/// Groups messages into batches that respect both SQS limits, keeping order.
pub fn batches(messages: &[OutMessage]) -> Vec<&[OutMessage]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = m.size();
        let count = i - start;
        if count > 0 && (count == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

/// Consumer-side control of a received message (SQS `ChangeMessageVisibility`).
#[async_trait]
pub trait VisibilityControl: Send + Sync {
    /// Makes the message visible again after `delay_secs` (SQS caps this at 12 h).
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        delay_secs: u32,
    ) -> Result<(), PortError>;
}

/// SQS's ceiling for a visibility timeout.
pub const MAX_VISIBILITY_SECS: u32 = 12 * 60 * 60;

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    /// 1 on the first delivery.
    pub receive_count: u32,
    /// A FIFO queue's `MessageGroupId`.
    pub group_id: Option<String>,
}

/// Polling a queue (what Lambda's event source does for the deployed functions; the local
/// runner does it itself).
#[async_trait]
pub trait QueueReceiver: Send + Sync {
    /// Up to `max` messages, waiting up to `wait_ms` for the first (long polling).
    async fn receive(&self, max: usize, wait_ms: u64) -> Result<Vec<Received>, PortError>;
    async fn delete(&self, receipt_handle: &str) -> Result<(), PortError>;
    /// Deletes up to 10 messages in one request, as Lambda's event source does after a batch
    /// (SQS `DeleteMessageBatch`). Returns the receipt handles not deleted (they come back).
    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<String>, PortError> {
        let mut failed = Vec::new();
        for h in receipt_handles {
            if self.delete(h).await.is_err() {
                failed.push(h.clone());
            }
        }
        Ok(failed)
    }
}

/// A queue a consumer owns: it sends, receives and extends visibility (the local runner's
/// pollers; Lambda's event source does the receiving when deployed).
pub trait Queue: QueueSender + QueueReceiver + VisibilityControl {}

impl<T: QueueSender + QueueReceiver + VisibilityControl + ?Sized> Queue for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize, len: usize) -> OutMessage {
        OutMessage {
            id: i.to_string(),
            body: "x".repeat(len),
            attributes: vec![],
            delay_secs: 0,
        }
    }

    #[test]
    fn batches_by_count_and_size() {
        let small: Vec<_> = (0..23).map(|i| msg(i, 10)).collect();
        let sizes: Vec<_> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![10, 10, 3]);

        let big: Vec<_> = (0..5).map(|i| msg(i, 100 * 1024)).collect();
        let sizes: Vec<_> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert!(batches(&[]).is_empty());
    }
}
