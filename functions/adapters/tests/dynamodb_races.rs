//! The store race suite (`lc_core::contract::races`) against DynamoStore on dynalite, over real
//! HTTP, on a multi-thread runtime: 50 requests really in flight at once.
//!
//! Not moto: moto checks a condition and applies the write without a lock, so two racing
//! conditional writes can both pass (see `dynamodb_moto.rs`). dynalite (`tests/run.sh` installs
//! and starts it, and exports `LC_DYNALITE_URL`) applies each request atomically, as DynamoDB
//! does. It implements neither transactions nor TTL: the link race (`TransactWriteItems`) is
//! skipped here and runs on the in-memory twin only, and the table is created without TTL.

mod common;

use std::sync::Arc;

use lc_adapters::dynamodb::{create_table, DynamoStore};
use lc_core::contract::races;
use lc_core::ports::PortError;

/// A fresh table on dynalite, created with the adapter's own `create_table`.
async fn store() -> Arc<DynamoStore> {
    let url = std::env::var("LC_DYNALITE_URL").unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost"),
        "LC_DYNALITE_URL must point at a local dynalite (run tests/run.sh), got {url:?}"
    );
    let sdk = lc_adapters::aws::load_config().await.expect("AWS config");
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(url)
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let table = common::unique("lc-races");
    match create_table(&client, &table).await {
        Ok(()) => {}
        // dynalite has no UpdateTimeToLive; the table itself is created (checked below).
        Err(PortError::Rejected(m))
            if m.starts_with("UpdateTimeToLive: UnknownOperationException") => {}
        Err(e) => panic!("create_table on dynalite: {e}"),
    }
    let status = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe_table")
        .table
        .and_then(|t| t.table_status)
        .map(|s| s.as_str().to_string());
    assert_eq!(status.as_deref(), Some("ACTIVE"), "table {table}");
    Arc::new(DynamoStore::new(client, table))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn concurrent_creators() {
    races::concurrent_creators(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn concurrent_claims() {
    races::concurrent_claims(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn finish_vs_takeover() {
    races::finish_vs_takeover(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn late_finish_vs_takeover() {
    races::late_finish_vs_takeover(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn concurrent_take_job() {
    races::concurrent_take_job(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn expire_vs_claim_at_deadline() {
    races::expire_vs_claim_at_deadline(&store().await, &common::unique("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn concurrent_reopens() {
    races::concurrent_reopens(&store().await, &common::unique("r")).await;
}

/// Everything dynalite can do, twice on one table: prefixes keep the runs apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn two_runs_share_one_table() {
    let s = store().await;
    races::run_all(&s, &common::unique("a"), false).await;
    races::run_all(&s, &common::unique("b"), false).await;
}

/// Twenty copies of one follow-up request claim at once: one sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs dynalite (tests/run.sh)"]
async fn concurrent_request_claims() {
    lc_core::contract::requests::concurrent_claims(&*store().await, &common::unique("q")).await;
}
