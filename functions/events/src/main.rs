use lc_adapters::{aws, env, metrics, telemetry, wiring};
use lc_core::lifecycle::processor::Events;
use lc_core::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("events");
    let sdk = aws::load_config().await;
    let secrets = env::secret_source(&sdk)?.secrets().await?;
    let events = Events::new(
        wiring::store(&sdk, None)?,
        wiring::scheduler(&sdk)?,
        wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?,
        SystemClock,
        wiring::events_config(&secrets)?,
    );
    let events = &events;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| {
            metrics::flushed(async move {
                Ok::<_, lambda_runtime::Error>(lc_events::handle(events, e.payload).await)
            })
        },
    ))
    .await
}
