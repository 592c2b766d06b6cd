//! SQS-triggered Lambda plumbing shared by the consumers: records of a batch are handled
//! concurrently by the consumer's per-message function, each fate is settled
//! ([`lc_core::consumer::settle`]), and only the records to keep are reported back
//! (`ReportBatchItemFailures`), so one bad message never fails or repeats the others.
//!
//! A FIFO queue's batch ([`consume_fifo`]) keeps its order: the records of one message group
//! run one after the other, and once one is kept every later record of its group is reported
//! back unprocessed (Lambda's rule for FIFO partial batches), so nothing overtakes a retry.

use std::future::Future;

use std::collections::BTreeMap;

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

/// [`consume`] for a FIFO queue: groups run concurrently, the records of one group in order;
/// after the first record of a group that is kept, the rest of that group is reported back
/// without running.
pub async fn consume_fifo<F, Fut>(event: SqsEvent, via: Settling<'_>, handle: F) -> SqsBatchResponse
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Fate>,
{
    let handle = &handle;
    // Lambda hands a FIFO batch over in queue order; keep it within each group.
    let mut groups: BTreeMap<String, Vec<SqsMessage>> = BTreeMap::new();
    for record in event.records {
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        groups.entry(group).or_default().push(record);
    }
    let runs = groups.into_values().map(|records| async move {
        let mut kept = Vec::new();
        let mut stopped = false;
        for record in records {
            let id = record.message_id.clone().unwrap_or_default();
            if stopped {
                kept.push((id, "an earlier message of its group is kept".to_string()));
                continue;
            }
            let body = record.body.unwrap_or_default();
            let receipt = record.receipt_handle.unwrap_or_default();
            let fate = handle(body.clone()).await;
            if let Settled::Keep { reason } = settle(fate, &receipt, &body, via).await {
                stopped = true;
                kept.push((id, reason));
            }
        }
        kept
    });
    let mut response = SqsBatchResponse::default();
    for (id, reason) in join_all(runs).await.into_iter().flatten() {
        tracing::warn!(message_id = %id, reason = %reason, "message kept for a retry");
        response.add_failure(id);
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

    #[tokio::test]
    async fn a_kept_fifo_record_holds_the_rest_of_its_group_only() {
        let mut e = SqsEvent::default();
        for (i, (group, body)) in [
            ("A", "ok"),
            ("A", "retry"),
            ("B", "ok"),
            ("A", "ok"),
            ("B", "ok"),
        ]
        .iter()
        .enumerate()
        {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(format!("{body}{i}"));
            m.receipt_handle = Some(format!("r{i}"));
            m.attributes
                .insert("MessageGroupId".to_string(), (*group).to_string());
            e.records.push(m);
        }
        let ran = std::sync::Mutex::new(Vec::new());
        let resp = consume_fifo(e, Settling::default(), |body| {
            ran.lock().unwrap().push(body.clone());
            async move {
                if body.starts_with("retry") {
                    Fate::retry("later")
                } else {
                    Fate::Ack
                }
            }
        })
        .await;
        let ids: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            ids,
            ["m1", "m3"],
            "the retry and what follows it in group A"
        );
        let ran = ran.into_inner().unwrap();
        assert!(!ran.contains(&"ok3".to_string()), "m3 never ran: {ran:?}");
        assert!(ran.contains(&"ok4".to_string()), "group B went on: {ran:?}");
    }
}
