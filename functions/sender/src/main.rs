use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, metrics, telemetry, wiring};
use lc_core::ports::SystemClock;
use lc_core::sending::sender::Sender;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("sender");
    let sdk = aws::load_config().await;
    let sender = Sender::new(
        wiring::store(&sdk, None)?,
        GraphClient::from_env()?,
        wiring::scheduler(&sdk)?,
        env::secret_source(&sdk)?,
        SystemClock,
        wiring::sender_config()?,
    );
    let queue = wiring::queue(&sdk, "OUTBOUND_QUEUE_URL")?;
    let dlq = wiring::queue(&sdk, "OUTBOUND_DLQ_URL")?;
    let (sender, queue, dlq) = (&sender, &queue, &dlq);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| {
            metrics::flushed(async move {
                Ok::<_, lambda_runtime::Error>(
                    lc_sender::handle(sender, queue, dlq, e.payload).await,
                )
            })
        },
    ))
    .await
}
