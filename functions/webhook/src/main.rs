//! The webhook Lambda: Meta's webhook on the service's router (the intake part only).

use std::sync::Arc;

use lc_adapters::{aws, env, invocation, metrics::Emf, sqs::SqsQueue, telemetry, wiring};
use lc_api::Api;
use lc_core::ports::SystemClock;
use lc_core::webhook::intake::{Intake, IntakeConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init("webhook");
    let sdk = aws::load_config().await?;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        env::required("EVENTS_QUEUE_URL")?,
    );
    let config = IntakeConfig {
        max_body_bytes: env::parse_or("LC_MAX_BODY_BYTES", IntakeConfig::default().max_body_bytes)?,
        ..IntakeConfig::default()
    }
    .skipping(&wiring::bus_off()?);
    let intake = Intake::new(
        Arc::new(queue),
        env::secret_source(&sdk)?,
        Arc::new(SystemClock),
        Arc::new(Emf),
        config,
    );
    let router = Api::new().intake(Arc::new(intake)).router();
    lambda_http::run(invocation::http(router)).await
}
