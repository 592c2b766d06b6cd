//! The sender Lambda: each SQS record is one first-message job, handled by the sender's
//! per-message function. Its fate decides the record's: deleted, kept with a new visibility for
//! a timed retry, or copied to the DLQ with the reason in its attributes.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::consume;
use lc_core::consumer::Settling;
use lc_core::ports::{QueueSender, VisibilityControl};
use lc_core::sending::sender::Sender;

pub async fn handle(
    sender: &Sender,
    queue: &dyn VisibilityControl,
    dead_letters: &dyn QueueSender,
    event: SqsEvent,
) -> SqsBatchResponse {
    let via = Settling {
        queue: Some(queue),
        dead_letters: Some(dead_letters),
    };
    consume(event, via, |body| async move {
        sender.handle_message(&body).await
    })
    .await
}
