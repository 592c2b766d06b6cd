//! The local runner as a library, so end-to-end tests drive the same code as the command.

pub mod cli;
pub mod cost;
pub mod demo;
pub mod load;
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
