//! The sender Lambda: each SQS record is one `FirstMessageJob`. The outcome decides the
//! record's fate: done (deleted), retry later (visibility changed, reported failed), or
//! dead-lettered with the reason in its attributes. Each outcome is logged and counted
//! (`lc_adapters::metrics`; Graph errors are counted from `lc-core`'s `GraphError` log events).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::lambda_sqs::for_each_record;
use lc_adapters::metrics;
use lc_core::lifecycle::optin::FirstMessageJob;
use lc_core::ports::{
    Clock, GraphApi, OptinStore, PageStore, PersonStore, QueueSender, Scheduler, SecretSource,
    VisibilityControl,
};
use lc_core::sending::sender::{settle, Sender, Settlement};

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
                    metrics::record(metrics::from_job(&outcome));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use lc_adapters::metrics::{Metric, Point};
    use lc_core::sending::sender::JobOutcome;
    use lc_testkit::{World, PAGE, TOKEN};

    /// Graph errors and page pauses are counted from `lc-core`'s log events (no outcome tells
    /// them): this fails if those events lose the `metric` / `class` fields the bridge reads.
    #[tokio::test]
    async fn graph_errors_and_pauses_are_counted_from_core_events() {
        let points = Arc::new(Mutex::new(Vec::<Point>::new()));
        let sink = points.clone();
        let subscriber =
            lc_adapters::telemetry::subscriber("sender", "off", std::io::sink, move |p| {
                sink.lock().unwrap().push(p)
            });
        let _guard = tracing::subscriber::set_default(subscriber);

        let w = World::new(2_000).await;
        // An expired page token: Graph answers 190, an operator action; the page is paused.
        w.sim.register_page_token(graph_sim::PageRegistration {
            page_id: PAGE.into(),
            token: TOKEN.into(),
            expired: true,
        });
        w.login_optin("L1").await;
        let job = w.queued_jobs().pop().unwrap();
        let out = w.sender.run_job(&job).await.unwrap();
        assert!(matches!(out, JobOutcome::PagePaused { .. }), "{out:?}");

        let got = points.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                Point::count(Metric::GraphErrors, &[("class", "operator_action")]),
                Point::count(Metric::PagesPaused, &[]),
            ]
        );
    }
}
