use std::sync::Arc;

use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::lifecycle::processor::{Lifecycle, LifecyclePorts};
use lc_core::ports::{SystemClock, Table};
use lc_core::sending::sender::{Sender, SenderPorts};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("events");
    let sdk = aws::load_config().await;
    // The first message of a new opt-in goes out from here when the Page can send now.
    let graph = GraphClient::from_env()?;
    let inline = Sender::new(
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
    );
    let lifecycle = Lifecycle::new(
        LifecyclePorts {
            table: Table::new(Arc::new(wiring::store(&sdk, None)?)),
            scheduler: Arc::new(wiring::scheduler(&sdk)?),
            jobs: Arc::new(wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?),
            secrets: env::secret_source(&sdk)?,
            bus: Arc::new(wiring::bus(&sdk)?),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        wiring::lifecycle_config()?,
    )
    .with_inline_sender(Arc::new(inline));
    let lifecycle = &lifecycle;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| async move {
            let response = invocation::run(&e.context, lc_events::handle(lifecycle, e.payload));
            Ok::<_, lambda_runtime::Error>(response.await)
        },
    ))
    .await
}
