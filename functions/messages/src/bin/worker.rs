//! `messages-worker`: the FIFO requests queue's consumer. Each record is one follow-up request
//! (queued by `messages-api` or by the business itself) or a record-only message.

use lc_adapters::{aws, invocation, telemetry, wiring};
use lc_messages::{followups, handle, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("messages-worker");
    let sdk = aws::load_config().await?;
    let followups = followups(&sdk, Role::Worker).await?;
    let queue = wiring::queue(&sdk, "REQUESTS_QUEUE_URL")?;
    let (followups, queue) = (&followups, &queue);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: lambda_runtime::LambdaEvent<_>| async move {
            let response = handle(followups, queue, e.payload);
            Ok::<_, lambda_runtime::Error>(invocation::run(&e.context, response).await)
        },
    ))
    .await
}
