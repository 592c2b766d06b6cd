//! The local runner as a library, so end-to-end tests drive the same code as the command.

pub mod cli;
pub mod cost;
pub mod demo;
pub mod load;
pub mod meter;
pub mod pipeline;
pub mod scale;
pub mod serve;

/// Human-readable logs on stderr (`RUST_LOG`, default `warn`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// [`init_logs`], plus the functions' own JSON lines at the template's application log level,
/// counted by [`meter::CountingWriter`] and discarded (the Logs part of the cost line). The
/// lines say `"service":"events"` whichever function wrote them: a few bytes off for others.
pub fn init_logs_metered() -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let deployed = cost::Deployed::from_template()?;
    let human = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ));
    let deployed_lines = lc_adapters::telemetry::layer(
        "events",
        lc_adapters::telemetry::LogFormat::Json,
        &lc_adapters::telemetry::level_filter(&deployed.app_log_level),
        meter::CountingWriter,
    );
    let subscriber = tracing_subscriber::registry()
        .with(human)
        .with(deployed_lines);
    // The cost line reads the invocations' ids (in the counted lines) and EMF documents.
    meter::meter().set_detailed(true);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())
}
