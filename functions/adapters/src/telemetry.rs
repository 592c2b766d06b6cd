//! Structured JSON logs for every function: one line per event, keys Powertools users know.
//! Ids are hashed by the callers (`lc_core::privacy::hash_id`); tokens never reach a log.

/// Installs the JSON subscriber once. Level from `LOG_LEVEL` / `RUST_LOG` (default `info`).
pub fn init(service: &'static str) {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "info".into())
        .to_lowercase();
    let result = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
    if result.is_ok() {
        tracing::info!(service, cold_start = true, "initialised");
    }
}
