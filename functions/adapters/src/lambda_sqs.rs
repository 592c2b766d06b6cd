//! SQS-triggered Lambda plumbing shared by the consumers: records of a batch are processed
//! concurrently, and only the ones that failed are reported back (`ReportBatchItemFailures`),
//! so one bad message never fails or repeats the others.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;

/// Runs `f` on every record at once and collects the failures.
pub async fn for_each_record<F, Fut>(event: SqsEvent, f: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let ids: Vec<String> = event
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap_or_default())
        .collect();
    let results = join_all(event.records.into_iter().map(f)).await;
    let mut response = SqsBatchResponse::default();
    for (id, result) in ids.into_iter().zip(results) {
        if let Err(reason) = result {
            tracing::warn!(message_id = %id, reason = %reason, "message will be retried");
            response.add_failure(id);
        }
    }
    response
}

/// `ApproximateReceiveCount` of a record (1 on first delivery).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}
