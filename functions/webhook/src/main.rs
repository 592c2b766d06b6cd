use lc_adapters::{aws, env, sqs::SqsQueue, telemetry};
use lc_core::ports::SystemClock;
use lc_core::webhook::intake::{Ingest, IngestConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init("webhook");
    let sdk = aws::load_config().await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        env::required("EVENTS_QUEUE_URL")?,
    );
    let config = IngestConfig {
        max_body_bytes: env::parse_or("LC_MAX_BODY_BYTES", IngestConfig::default().max_body_bytes)?,
        ..IngestConfig::default()
    };
    let ingest = Ingest::new(
        std::sync::Arc::new(queue),
        env::secret_source(&sdk)?,
        std::sync::Arc::new(SystemClock),
        config,
    );
    lambda_http::run(lambda_http::service_fn(|req| {
        lc_webhook::handle(&ingest, req)
    }))
    .await
}
