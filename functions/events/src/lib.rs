//! The events Lambda: each SQS record is one `InboundEvent`; records of a batch run
//! concurrently; only failed records are reported, so SQS retries them alone. Each outcome
//! is logged and counted (`lc_adapters::metrics`; `main` flushes per invocation).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::for_each_record;
use lc_adapters::metrics;
use lc_core::lifecycle::processor::Events;
use lc_core::ports::{
    Clock, OptinStore, PageStore, PersonStore, QuarantineStore, QueueSender, Scheduler,
};

pub async fn handle<St, Sc, J, C>(
    events: &Events<St, Sc, J, C>,
    event: SqsEvent,
) -> SqsBatchResponse
where
    St: OptinStore + PersonStore + PageStore + QuarantineStore,
    Sc: Scheduler,
    J: QueueSender,
    C: Clock,
{
    for_each_record(event, |record| async move {
        let body = record.body.as_deref().unwrap_or("");
        match events.process_body(body).await {
            Ok(done) => {
                tracing::info!(outcome = done.name(), detail = ?done, "event processed");
                metrics::record(metrics::from_processed(&done));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}
