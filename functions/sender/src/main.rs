use std::sync::Arc;

use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::ports::{SystemClock, Table};
use lc_core::sending::sender::{Sender, SenderPorts};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("sender");
    let sdk = aws::load_config().await?;
    let graph = GraphClient::from_env()?;
    // One SQS client for the three queue handles.
    let sqs = wiring::sqs_client(&sdk);
    let sender = Sender::new(
        SenderPorts {
            table: Table::new(Arc::new(wiring::store(&sdk, None)?)),
            outbound: Arc::new(wiring::queue_on(&sqs, "OUTBOUND_QUEUE_URL")?),
            bus: Arc::new(wiring::bus(&sdk)?),
            graph: Arc::new(graph.clone()),
            scheduler: Arc::new(wiring::scheduler(&sdk)?),
            secrets: env::secret_source(&sdk)?,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        wiring::sender_config(&graph)?,
    );
    let queue = wiring::queue_on(&sqs, "OUTBOUND_QUEUE_URL")?;
    let dlq = wiring::queue_on(&sqs, "OUTBOUND_DLQ_URL")?;
    let (sender, queue, dlq) = (&sender, &queue, &dlq);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| async move {
            let response = lc_sender::handle(sender, queue, dlq, e.payload);
            Ok::<_, lambda_runtime::Error>(invocation::run(&e.context, response).await)
        },
    ))
    .await
}
