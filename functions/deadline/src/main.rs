use std::sync::Arc;

use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::deadline::Deadline;
use lc_core::ports::{SystemClock, Table};
use lc_core::sending::sender::{Sender, SenderPorts};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("deadline");
    let sdk = aws::load_config().await?;
    let graph = GraphClient::from_env()?;
    let deadline = Deadline::new(Sender::new(
        SenderPorts {
            table: Table::new(Arc::new(wiring::store(&sdk, None)?)),
            outbound: Arc::new(wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?),
            bus: Arc::new(wiring::bus(&sdk)?),
            graph: Arc::new(graph.clone()),
            scheduler: Arc::new(wiring::scheduler(&sdk)?),
            secrets: env::secret_source(&sdk)?,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        wiring::sender_config(&graph)?,
    ));
    let deadline = &deadline;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let result = invocation::run(&e.context, lc_deadline::handle(deadline, e.payload));
            result.await.map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
