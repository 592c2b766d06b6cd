//! What the deployed functions would be billed for, measured in the local run: each queue
//! batch, HTTP request and schedule firing the runner handles is one *invocation* of the
//! function that would handle it in AWS, with its wall time (billed rounded up to 1 ms, as
//! Lambda bills), the bytes its log lines take in the deployed JSON format at the deployed
//! level (the same formatter the Lambdas install, [`lc_adapters::telemetry::layer`]), and the
//! EMF documents its metrics would be flushed as at its end.
//!
//! The figures are local: the wall time includes the local endpoints' latency (moto, the Graph
//! simulator) and the local poller's batching, not Lambda's.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use lc_adapters::invocation::{self, Invocation};
use lc_core::ports::{MemoryMetrics, Metric, Metrics};

/// What one function used in the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Use {
    pub invocations: u64,
    /// Sum over invocations of the wall time rounded up to the millisecond.
    pub billed_ms: u64,
    /// Application log lines (JSON, the deployed level) and their bytes.
    pub log_lines: u64,
    pub log_bytes: u64,
    /// EMF documents and their bytes.
    pub emf_lines: u64,
    pub emf_bytes: u64,
}

/// Lines written outside any invocation (the runner's own, or a task spawned by a handler).
pub const OUTSIDE: &str = "outside-invocations";

struct Scope {
    function: &'static str,
    metrics: Mutex<Vec<Metric>>,
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

#[derive(Default)]
pub struct Meter {
    uses: Mutex<BTreeMap<&'static str, Use>>,
    seq: AtomicU64,
    /// Invocations started and not finished.
    running: AtomicU64,
    /// Whether invocations get their ids, log scope and EMF documents (see
    /// [`Meter::set_detailed`]).
    detailed: AtomicBool,
}

struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's meter (the log writer is installed before any pipeline exists).
pub fn meter() -> &'static Meter {
    static METER: OnceLock<Meter> = OnceLock::new();
    METER.get_or_init(Meter::default)
}

impl Meter {
    fn with(&self, function: &'static str, f: impl FnOnce(&mut Use)) {
        let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        f(uses.entry(function).or_default());
    }

    /// Turns on what only the cost line reads: request and trace ids for the counted log
    /// lines, and the EMF documents of each invocation. Off, an invocation only counts itself
    /// and its wall time: the EMF documents alone were 3% of a `load` run's CPU (JSON per queue
    /// batch and per webhook request, plus the ids' formatting) and nothing printed them.
    pub fn set_detailed(&self, on: bool) {
        self.detailed.store(on, Ordering::Relaxed);
    }

    /// Runs `fut` as one invocation of `function`: its log lines carry a request id and a
    /// trace id as deployed, its wall time and its metrics' EMF documents are counted (the
    /// ids and documents only when [`Meter::set_detailed`]).
    pub async fn invoke<F: Future>(&self, function: &'static str, fut: F) -> F::Output {
        self.running.fetch_add(1, Ordering::Relaxed);
        // Counted down however the invocation ends (a dropped future too).
        let _running = Running(&self.running);
        if !self.detailed.load(Ordering::Relaxed) {
            let started = Instant::now();
            let out = fut.await;
            let billed = started.elapsed().as_micros().div_ceil(1000) as u64;
            self.with(function, |u| {
                u.invocations += 1;
                u.billed_ms += billed.max(1);
            });
            return out;
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:08x}-4c1d-4e2a-9b7f-{:012x}", n >> 16, n);
        let trace = format!(
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0;Lineage=1:{:08x}:0",
            n as u32, n, n, n as u32
        );
        let scope = Arc::new(Scope {
            function,
            metrics: Mutex::new(Vec::new()),
        });
        let started = Instant::now();
        let out = SCOPE
            .scope(
                scope.clone(),
                invocation::scoped(
                    Invocation {
                        request_id: request_id.clone(),
                        // As a Lambda without active tracing (the template's) gets it: unsampled,
                        // so not logged.
                        xray_trace_id: Some(trace).filter(|t| invocation::sampled(t)),
                        cold_start: false,
                    },
                    fut,
                ),
            )
            .await;
        let billed = started.elapsed().as_micros().div_ceil(1000) as u64;
        let recorded =
            std::mem::take(&mut *scope.metrics.lock().unwrap_or_else(|p| p.into_inner()));
        let docs = lc_adapters::metrics::emf_documents(
            function,
            lc_adapters::metrics::DEFAULT_NAMESPACE,
            1_800_000_000_000,
            &request_id,
            &recorded,
        );
        if let Some(f) = copy_to() {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            for d in &docs {
                let _ = writeln!(f, "{d}");
            }
        }
        self.with(function, |u| {
            u.invocations += 1;
            u.billed_ms += billed.max(1);
            u.emf_lines += docs.len() as u64;
            u.emf_bytes += docs.iter().map(|d| d.len() as u64 + 1).sum::<u64>();
        });
        out
    }

    /// Invocations under way now.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Per function, what was used since the last [`Meter::reset`].
    pub fn snapshot(&self) -> BTreeMap<&'static str, Use> {
        self.uses.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.uses.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn logged(&self, bytes: &[u8]) {
        let function = SCOPE.try_with(|s| s.function).unwrap_or(OUTSIDE);
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        self.with(function, |u| {
            u.log_lines += lines;
            u.log_bytes += bytes.len() as u64;
        });
    }
}

/// The domain's metrics, kept in memory as before and also noted for the invocation they
/// were recorded in (for its EMF documents).
pub struct Metered(pub Arc<MemoryMetrics>);

impl Metrics for Metered {
    fn record(&self, metric: Metric) {
        let _ = SCOPE.try_with(|s| {
            s.metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(metric.clone());
        });
        self.0.record(metric);
    }
}

/// A log writer that counts the bytes written and discards them.
#[derive(Clone, Copy, Default)]
pub struct CountingWriter;

/// `LC_COST_LOG_FILE`: where the counted lines (log lines and EMF documents) also go, to read
/// what would be logged.
fn copy_to() -> Option<&'static Mutex<std::fs::File>> {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::var_os("LC_COST_LOG_FILE")?;
        std::fs::File::create(path).ok().map(Mutex::new)
    })
    .as_ref()
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        meter().logged(buf);
        if let Some(f) = copy_to() {
            let _ = f.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CountingWriter {
    type Writer = CountingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CountingWriter
    }
}
