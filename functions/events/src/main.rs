use std::sync::Arc;

use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::lifecycle::processor::{Lifecycle, LifecyclePorts};
use lc_core::ports::{EventBus, QueueSender, Scheduler, SystemClock, Table};
use lc_core::sending::sender::{Sender, SenderPorts};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("events");
    let sdk = aws::load_config().await?;
    // The first message of a new opt-in goes out from here when the Page can send now. One
    // client per service and one secret cache, shared by the events processor and the inline
    // sender (a second cache would double the Secrets Manager reads).
    let graph = GraphClient::from_env()?;
    let table = Table::new(Arc::new(wiring::store(&sdk, None)?));
    let scheduler: Arc<dyn Scheduler> = Arc::new(wiring::scheduler(&sdk)?);
    let jobs: Arc<dyn QueueSender> = Arc::new(wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?);
    let secrets = env::secret_source(&sdk)?;
    let bus: Arc<dyn EventBus> = Arc::new(wiring::bus(&sdk)?);
    let inline = Sender::new(
        SenderPorts {
            table: table.clone(),
            outbound: jobs.clone(),
            bus: bus.clone(),
            graph: Arc::new(graph.clone()),
            scheduler: scheduler.clone(),
            secrets: secrets.clone(),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        wiring::sender_config(&graph)?,
    );
    let lifecycle = Lifecycle::new(
        LifecyclePorts {
            table,
            scheduler,
            jobs,
            secrets,
            bus,
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
