//! Adapters from the `lc-core` ports to AWS (SQS, Secrets Manager, ...) and to the Graph API.
//!
//! Clients are built once per cold start ([`aws::load_config`]) and shared. Every AWS adapter
//! honours `AWS_ENDPOINT_URL`, which is how the tests point them at moto on 127.0.0.1.

pub mod aws;
pub mod dynamodb;
pub mod env;
pub mod graph;
pub mod lambda_sqs;
pub mod metrics;
pub mod scheduler;
pub mod secrets;
pub mod sqs;
pub mod telemetry;
pub mod wiring;
