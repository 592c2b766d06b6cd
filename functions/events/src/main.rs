use std::sync::Arc;

use lc_adapters::{aws, env, invocation, metrics::Emf, telemetry, wiring};
use lc_core::lifecycle::processor::{Lifecycle, LifecyclePorts};
use lc_core::ports::{SystemClock, Table};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("events");
    let sdk = aws::load_config().await?;
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
    );
    let lifecycle = &lifecycle;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| async move {
            let response = invocation::run(&e.context, lc_events::handle(lifecycle, e.payload));
            Ok::<_, lambda_runtime::Error>(response.await)
        },
    ))
    .await
}
