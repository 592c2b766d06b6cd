//! Shared setup for the adapter tests that run against moto's server mode (tests/run.sh starts
//! it and exports AWS_ENDPOINT_URL). Each test names its own resources, so tests run in
//! parallel against one server without resets.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// Fails loudly when moto is not configured: an AWS test must never pass without running.
pub async fn moto_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at a local moto server (run tests/run.sh), got {endpoint:?}"
    );
    lc_adapters::aws::load_config().await.expect("AWS config")
}

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
