//! The sender Lambda: each SQS record is one `FirstMessageJob`. The outcome decides the
//! record's fate: done (deleted), retry later (visibility changed, reported failed), or
//! dead-lettered with the reason in its attributes.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::for_each_record;
use lc_core::optin::FirstMessageJob;
use lc_core::ports::{
    Clock, GraphApi, OptinStore, PageStore, PersonStore, QueueSender, Scheduler, SecretSource,
    VisibilityControl,
};
use lc_core::sender::{settle, Sender, Settlement};

pub async fn handle<St, G, Sc, Se, C, V, D>(
    sender: &Sender<St, G, Sc, Se, C>,
    queue: &V,
    dead_letters: &D,
    event: SqsEvent,
) -> SqsBatchResponse
where
    St: OptinStore + PersonStore + PageStore,
    G: GraphApi,
    Sc: Scheduler,
    Se: SecretSource,
    C: Clock,
    V: VisibilityControl,
    D: QueueSender,
{
    for_each_record(event, |record| async move {
        let body = record.body.clone().unwrap_or_default();
        let receipt = record.receipt_handle.clone().unwrap_or_default();
        let settlement = match serde_json::from_str::<FirstMessageJob>(&body) {
            Ok(job) => match sender.run_job(&job).await {
                Ok(outcome) => {
                    tracing::info!(outcome = outcome.name(), detail = ?outcome, "job settled");
                    outcome.settlement()
                }
                Err(e) => return Err(e.to_string()),
            },
            Err(e) => Settlement::DeadLetter {
                reason: format!("not a first-message job: {e}"),
            },
        };
        settle(queue, dead_letters, &receipt, &body, settlement).await
    })
    .await
}
