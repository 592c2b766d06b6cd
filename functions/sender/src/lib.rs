//! The sender Lambda: each SQS record is one first-message job, handled by the sender's
//! per-message function. Its fate decides the record's: deleted, kept with a new visibility for
//! a timed retry, deferred as a delayed copy for a wait, or copied to the DLQ with the reason in
//! its attributes.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::consume;
use lc_core::consumer::Settling;
use lc_core::ports::{Queue, QueueSender};
use lc_core::sending::sender::Sender;

pub async fn handle(
    sender: &Sender,
    queue: &dyn Queue,
    dead_letters: &dyn QueueSender,
    event: SqsEvent,
) -> SqsBatchResponse {
    let via = Settling {
        queue: Some(queue),
        dead_letters: Some(dead_letters),
        // A job that waits (paused Page, pacing) is deferred as a fresh copy: waiting spends
        // no receives towards the DLQ.
        requeue: Some(queue),
    };
    consume(event, via, |body| async move {
        sender.handle_message(&body).await
    })
    .await
}
