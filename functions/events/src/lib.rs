//! The events Lambda: each SQS record is one inbound event (or an operator's replay command),
//! handled by the lifecycle's per-message function; records of a batch run concurrently and
//! only the ones to retry are reported back.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::consume;
use lc_core::consumer::Settling;
use lc_core::lifecycle::processor::Lifecycle;

pub async fn handle(lifecycle: &Lifecycle, event: SqsEvent) -> SqsBatchResponse {
    // Events are only ever acknowledged or retried: the queue's redrive policy is their DLQ.
    consume(event, Settling::default(), |body| async move {
        lifecycle.handle_message(&body).await
    })
    .await
}
