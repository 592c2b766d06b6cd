//! Adapters from the `lc-core` ports to AWS (SQS, Secrets Manager, ...) and to the Graph API.
//!
//! Clients are built once per cold start ([`aws::load_config`]) and shared. Every AWS adapter
//! honours `AWS_ENDPOINT_URL`, which is how the tests point them at moto on 127.0.0.1.

pub mod aws;
pub mod dynamodb;
pub mod env;
pub mod eventbridge;
pub mod graph;
pub mod invocation;
pub mod lambda_sqs;
pub mod metrics;
pub mod scheduler;
pub mod secrets;
pub mod sqs;
pub mod telemetry;
pub mod tls;
pub mod wiring;

/// Serialises the tests that touch process-wide state (the EMF recorder's totals, the cold-start
/// flag).
#[cfg(test)]
fn process_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    &LOCK
}

#[cfg(test)]
mod test_support {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// A log destination the test reads back.
    #[derive(Clone, Default)]
    pub struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    pub fn text(buf: &Buffer) -> String {
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, parsed as JSON.
    pub fn lines(buf: &Buffer) -> Vec<serde_json::Value> {
        text(buf)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}
