use std::sync::Arc;

use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::operations::{Operations, OpsConfig, OpsPorts};
use lc_core::ports::{SystemClock, Table};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("ops");
    let sdk = aws::load_config().await?;
    let graph = GraphClient::from_env()?;
    let ops = Operations::new(
        OpsPorts {
            table: Table::new(Arc::new(wiring::store(&sdk, None)?)),
            bus: Arc::new(wiring::bus(&sdk)?),
            events_queue: Arc::new(wiring::queue(&sdk, "EVENTS_QUEUE_URL")?),
            outbound_queue: Arc::new(wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?),
            events_dlq: Arc::new(wiring::queue(&sdk, "EVENTS_DLQ_URL")?),
            outbound_dlq: Arc::new(wiring::queue(&sdk, "OUTBOUND_DLQ_URL")?),
            scheduler_dlq: Arc::new(wiring::queue(&sdk, "SCHEDULER_DLQ_URL")?),
            scheduler: Arc::new(wiring::scheduler(&sdk)?),
            secrets: env::secret_source(&sdk)?,
            graph: Arc::new(graph),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        OpsConfig::default(),
    );
    let ops = &ops;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let caller = invocation::caller(&e.context);
            let answer = invocation::run(&e.context, lc_ops::handle(ops, e.payload, caller));
            answer.await.map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
