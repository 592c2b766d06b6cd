//! `messages-api`: `POST /v1/messages` on the service's router (the messages part only),
//! behind a Function URL with `AuthType: AWS_IAM`: AWS verifies the caller's SigV4 signature
//! and `lambda:InvokeFunctionUrl` permission before a request reaches this code.

use std::sync::Arc;

use lc_adapters::{aws, invocation, telemetry};
use lc_api::Api;
use lc_messages::{followups, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init("messages-api");
    let sdk = aws::load_config().await?;
    let followups = followups(&sdk, Role::Api).await?;
    let router = Api::new().messages(Arc::new(followups)).router();
    lambda_http::run(invocation::http(router)).await
}
