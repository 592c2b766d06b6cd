//! Times each step of a function's init, in one process, to say where a cold start goes
//! beyond hello world (tools/coldstart/README.md, "Where the rest goes"). Prints one line of
//! microseconds per step; run it many times, each a fresh process (first-use costs are the
//! point), with the coldstart harness's environment, and take medians:
//!
//! ```sh
//! cargo build --release -p lc-adapters --example init_steps
//! target/release/examples/init_steps [default|custom-resolver|direct-config]
//! ```
//!
//! - `default`: what deadline, sender and events do (`aws::load_config`, then one client per
//!   service crate, then the Graph client); `ddb2` is a second DynamoDB client, the cost of a
//!   client without its crate's first-use work.
//! - `custom-resolver`: the first DynamoDB client with its own endpoint resolver, to show that
//!   the crate's partition table is parsed anyway (`ServiceRuntimePlugin::new` builds
//!   `DefaultResolver::new()` whatever the config holds).
//! - `direct-config`: the `SdkConfig` built by hand from the environment instead of
//!   `aws_config::defaults(..).load()`.

use std::time::Instant;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_sdk_dynamodb::config::endpoint::{EndpointFuture, Params, ResolveEndpoint};
use aws_smithy_types::endpoint::Endpoint;

/// Answers one fixed URL: only its construction cost matters here, it never resolves.
#[derive(Debug)]
struct FixedResolver;

impl ResolveEndpoint for FixedResolver {
    fn resolve_endpoint<'a>(&'a self, _params: &'a Params) -> EndpointFuture<'a> {
        EndpointFuture::ready(Ok(Endpoint::builder()
            .url("https://dynamodb.us-east-1.amazonaws.com")
            .build()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let start = Instant::now();
    let mut last = start;
    let mut steps = Vec::new();
    let mut step = |name: &str| {
        let now = Instant::now();
        steps.push(format!("{name}={}", (now - last).as_micros()));
        last = now;
    };
    lc_adapters::telemetry::init("init_steps");
    step("telemetry");
    let sdk = if mode == "direct-config" {
        let http = lc_adapters::tls::aws_http_client(lc_adapters::tls::TrustSource::Bundled)?;
        let mut b = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(lc_adapters::env::required(
                "AWS_REGION",
            )?))
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                EnvironmentVariableCredentialsProvider::new(),
            ))
            .http_client(http);
        if let Some(url) = lc_adapters::env::optional("AWS_ENDPOINT_URL") {
            b = b.endpoint_url(url);
        }
        b.build()
    } else {
        lc_adapters::aws::load_config().await?
    };
    step("load_config");
    let ddb1 = if mode == "custom-resolver" {
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_resolver(FixedResolver)
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    } else {
        aws_sdk_dynamodb::Client::new(&sdk)
    };
    step("ddb1");
    let ddb2 = aws_sdk_dynamodb::Client::new(&sdk);
    step("ddb2");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    step("sqs1");
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    step("eventbridge1");
    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    step("scheduler1");
    let graph = lc_adapters::graph::GraphClient::from_env()?;
    step("graph");
    // Keep every client alive to the end, as a function does.
    std::hint::black_box((ddb1, ddb2, sqs, events, scheduler, graph));
    steps.push(format!("total={}", start.elapsed().as_micros()));
    println!("{}", steps.join(" "));
    Ok(())
}
