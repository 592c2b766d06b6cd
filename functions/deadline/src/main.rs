use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, env, metrics, telemetry, wiring};
use lc_core::deadline::Deadline;
use lc_core::ports::SystemClock;
use lc_core::sending::sender::Sender;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("deadline");
    let sdk = aws::load_config().await;
    let deadline = Deadline::new(Sender::new(
        wiring::store(&sdk, None)?,
        GraphClient::from_env()?,
        wiring::scheduler(&sdk)?,
        env::secret_source(&sdk)?,
        SystemClock,
        wiring::sender_config()?,
    ));
    let deadline = &deadline;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<serde_json::Value>| {
            metrics::flushed(async move {
                lc_deadline::handle(deadline, e.payload)
                    .await
                    .map_err(lambda_runtime::Error::from)
            })
        },
    ))
    .await
}
