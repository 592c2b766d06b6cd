//! SQS-triggered Lambda plumbing shared by the consumers: records of a batch are handled
//! concurrently by the consumer's per-message function, each fate is settled
//! ([`lc_core::consumer::settle`]), and only the records to keep are reported back
//! (`ReportBatchItemFailures`), so one bad message never fails or repeats the others.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lc_core::consumer::{settle, Fate, Settled, Settling};

/// Runs `handle` on every record's body at once, settles each fate and collects the records
/// to keep.
pub async fn consume<F, Fut>(event: SqsEvent, via: Settling<'_>, handle: F) -> SqsBatchResponse
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Fate>,
{
    let handle = &handle;
    let runs = event
        .records
        .into_iter()
        .map(|record: SqsMessage| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.unwrap_or_default();
            let receipt = record.receipt_handle.unwrap_or_default();
            let fate = handle(body.clone()).await;
            (id, settle(fate, &receipt, &body, via).await)
        });
    let mut response = SqsBatchResponse::default();
    for (id, settled) in join_all(runs).await {
        if let Settled::Keep { reason } = settled {
            tracing::warn!(message_id = %id, reason = %reason, "message kept for a retry");
            response.add_failure(id);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        for (i, b) in bodies.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some((*b).to_string());
            m.receipt_handle = Some(format!("r{i}"));
            e.records.push(m);
        }
        e
    }

    #[tokio::test]
    async fn only_kept_records_are_reported() {
        let resp = consume(
            event(&["ok", "retry", "dead"]),
            Settling::default(),
            |body| async move {
                match body.as_str() {
                    "ok" => Fate::Ack,
                    "retry" => Fate::retry("later"),
                    _ => Fate::DeadLetter {
                        reason: "poison".into(),
                    },
                }
            },
        )
        .await;
        let ids: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        // Without a dead-letter queue wired the poison message stays for the redrive policy.
        assert_eq!(ids, ["m1", "m2"]);
    }
}
