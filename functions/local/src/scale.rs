//! `scale`: a whole day of opt-ins, and the day after, on simulated time.
//!
//! The same domain code the Lambdas run (`Intake`, `Lifecycle`, `Sender`, `Deadline`) works on
//! the in-memory store, queues and scheduler, against the Graph simulator with Meta's per-Page
//! rate enforced. Time is simulated: a [`ManualClock`] for the domain and the simulator's
//! frozen clock move together in steps of `step_ms`, and at each step everything that is due
//! runs, so the result does not depend on the machine's speed. What the deployed stack bounds
//! by concurrency is bounded here by the same numbers (template defaults):
//!
//! - the webhook (Function URL) takes `webhook_rps` requests per second; a body it cannot take
//!   is answered 429 and Meta delivers it again at the next step, with its original time;
//! - `events_instances`, `sender_instances` and `deadline_instances` each run one invocation
//!   per step (a batch of `batch_size` queue messages handled concurrently, or one deadline
//!   check): with 250 ms steps, about what one invocation with a Graph call takes;
//! - EventBridge Scheduler hands at most `scheduler_tps` due checks per second to the deadline
//!   function (retried up to an hour, as the adapter configures it), and Lambda's async queue
//!   keeps what the deadline function cannot run yet for up to 6 hours, first in, first out;
//! - every sending process (sender and deadline instances) has its own `Pacer` with its share
//!   of each Page's rate (`pacing_instances`, the template's `LC_SENDING_INSTANCES`).
//!
//! Arrivals follow a daily curve (low at night, a campaign spike in the evening) scaled so its
//! peak is `peak_ratio` times the day's mean rate, spread over Pages with Zipf weights (a few
//! big Pages, a long tail). During the outage window the simulator answers every send with
//! Meta's 500 (code 2, transient).
//!
//! The run ends when every queue and schedule is empty (or a day after the last arrival plus a
//! margin), then every opt-in is read back: `sent` (a first message Meta accepted before the
//! deadline), `late` (sent at or after its deadline, or recorded as missed), `lost` (neither).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::future::join_all;
use graph_sim::{Faults, SimConfig, SimHandle};
use lc_core::consumer::{settle, Fate, Settled, Settling};
use lc_core::deadline::{Deadline, DeadlineOutcome};
use lc_core::lifecycle::optin::{optin_key, OptinState};
use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts};
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::ports::graph::{PageAuth, Recipient, SendError, SendOk, SendRequest, TokenInfo};
use lc_core::ports::{
    Clock, GraphApi, Metric, Metrics, OneTimeSchedule, QueueSender, Received, RequestCounter,
    SecretSource, Table,
};
use lc_core::sending::errors::{GraphError, TransportFailure};
use lc_core::sending::pacing::PacingConfig;
use lc_core::sending::sender::{JobOutcome, Sender, SenderConfig, SenderPorts};
use lc_core::sending::usage::Usage;
use lc_core::support::secret::Secret;
use lc_core::webhook::intake::{Intake, IntakeConfig, Receipt};
use lc_core::webhook::signature::sign;
use lc_core::webhook::{Identity, IdentityKind};

use crate::cli::ScaleArgs;
use crate::serve::{local_secrets, page_ids, APP_ID};

/// 2026-12-07T00:00:00Z: the simulated day starts at midnight UTC.
const DAY_START_MS: i64 = 1_796_601_600_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Lambda keeps an asynchronous event (a Scheduler invocation) this long when the function
/// cannot run it (default `MaximumEventAgeInSeconds`).
const ASYNC_MAX_AGE_MS: i64 = 6 * HOUR_MS;
/// The Scheduler adapter's retry policy: `MaximumEventAgeInSeconds` 3600.
const SCHEDULER_MAX_AGE_MS: i64 = HOUR_MS;
/// Visibility timeout of both queues in the template.
const VISIBILITY_MS: i64 = 180_000;
/// The campaign spike of the arrival curve: centre (hour of the day) and width (hours).
const SPIKE_HOUR: f64 = 19.0;
const SPIKE_SIGMA_H: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleConfig {
    pub optins: usize,
    pub pages: usize,
    /// Peak arrival rate over the day's mean rate.
    pub peak_ratio: f64,
    /// The arrival curve spans this many hours (24: one day).
    pub arrival_hours: f64,
    /// Meta answers 5xx from this hour of the simulated day ...
    pub outage_start_hour: f64,
    /// ... for this many hours (0: no outage).
    pub outage_hours: f64,
    pub step_ms: i64,
    /// Function URL: 10 requests/s per unit of the webhook's reserved concurrency.
    pub webhook_rps: u32,
    pub events_instances: usize,
    pub sender_instances: usize,
    pub deadline_instances: usize,
    /// `LC_SENDING_INSTANCES`: the processes a Page's rate is shared by.
    pub pacing_instances: u32,
    /// The sender slows a Page when Meta's usage headers pass this percentage (the sender's
    /// default 80; `u32::MAX` ignores them).
    pub pace_threshold_percent: u32,
    /// Meta's per-Page send rate (enforced by the simulator).
    pub page_rate_per_sec: u32,
    /// EventBridge Scheduler target invocations per second.
    pub scheduler_tps: u32,
    /// SQS event source batch size.
    pub batch_size: usize,
    /// The deadline check fires this long before the deadline.
    pub deadline_margin_ms: i64,
    /// Outbound queue `maxReceiveCount`.
    pub outbound_max_receives: u32,
    /// SQS standard queue in-flight limit: no receive succeeds while this many messages are
    /// received and hidden (a retry delayed by a visibility change stays in flight).
    pub max_in_flight: usize,
}

impl Default for ScaleConfig {
    /// The template's defaults: webhook 50 (500 requests/s), events 20, sender 10, deadline
    /// 10, `LC_SENDING_INSTANCES` 20, batch 10, margin 1 h, `maxReceiveCount` 100.
    fn default() -> Self {
        ScaleConfig {
            optins: 100_000,
            pages: 10,
            peak_ratio: 10.0,
            arrival_hours: 24.0,
            outage_start_hour: 16.0,
            outage_hours: 6.0,
            step_ms: 250,
            webhook_rps: 500,
            events_instances: 20,
            sender_instances: 10,
            deadline_instances: 10,
            pacing_instances: 20,
            pace_threshold_percent: SenderConfig::default().pace_threshold_percent,
            page_rate_per_sec: 300,
            scheduler_tps: 1_000,
            batch_size: 10,
            deadline_margin_ms: HOUR_MS,
            outbound_max_receives: 100,
            max_in_flight: 120_000,
        }
    }
}

impl ScaleConfig {
    pub fn from_args(a: &ScaleArgs) -> ScaleConfig {
        ScaleConfig {
            optins: a.optins,
            pages: a.pages.max(1),
            peak_ratio: a.peak_ratio,
            arrival_hours: a.arrival_hours,
            outage_start_hour: a.outage_start_hour,
            outage_hours: a.outage_hours,
            step_ms: a.step_ms.max(1),
            webhook_rps: a.webhook_rps,
            events_instances: a.events_instances.max(1),
            sender_instances: a.sender_instances.max(1),
            deadline_instances: a.deadline_instances.max(1),
            pacing_instances: a.pacing_instances.max(1),
            pace_threshold_percent: a.pace_threshold_percent,
            page_rate_per_sec: a.page_rate,
            scheduler_tps: a.scheduler_tps,
            batch_size: a.batch_size.max(1),
            deadline_margin_ms: a.deadline_margin_secs.saturating_mul(1000),
            outbound_max_receives: a.outbound_max_receives.max(1),
            max_in_flight: a.max_in_flight,
        }
    }
}

/// What a run measured. `line()` is the one line the command prints.
#[derive(Debug, Clone, Default)]
pub struct ScaleReport {
    pub optins: usize,
    pub pages: usize,
    pub peak_per_s: u64,
    pub sent: u64,
    /// Sent at or after the deadline, or recorded as missed.
    pub late: u64,
    /// No first message and no missed record.
    pub lost: u64,
    /// Meta's 613 answers (the simulator's count).
    pub rate_limited: u64,
    /// The oldest message in the events or outbound queue, at its worst (simulated seconds).
    pub max_queue_age_s: i64,
    // Detail for stderr and the docs.
    pub missed: u64,
    pub graph_attempts: u64,
    pub graph_5xx: u64,
    pub duplicate_refusals: u64,
    /// Opt-ins whose webhook delivery was answered 429 at least once (the Function URL's
    /// requests/s), and the longest an opt-in waited at Meta before the webhook took it.
    pub webhook_throttled: u64,
    pub max_webhook_wait_s: i64,
    pub max_live_schedules: usize,
    pub checks_fired: u64,
    pub max_checks_fired_per_min: u64,
    pub max_deadline_backlog: usize,
    pub max_deadline_wait_s: i64,
    pub checks_dropped: u64,
    pub last_chance_sent: u64,
    pub outbound_dead_letters: usize,
    pub events_dead_letters: usize,
    pub max_outbound_depth: usize,
    pub max_outbound_in_flight: usize,
    /// Steps in which a sender instance could not receive: the outbound queue was at its
    /// in-flight limit (SQS answers OverLimit).
    pub over_limit_steps: u64,
    pub backlog_at_recovery: usize,
    pub drained_after_recovery_s: Option<i64>,
    pub simulated_hours: f64,
    pub wall_secs: f64,
    pub requests_per_optin: BTreeMap<String, f64>,
    pub by_state: BTreeMap<String, u64>,
}

impl ScaleReport {
    pub fn line(&self) -> String {
        format!(
            "scale optins={} pages={} peak_per_s={} sent={} late={} lost={} rate_limited={} max_queue_age_s={}",
            self.optins,
            self.pages,
            self.peak_per_s,
            self.sent,
            self.late,
            self.lost,
            self.rate_limited,
            self.max_queue_age_s
        )
    }

    /// The detail, for stderr.
    pub fn detail(&self) -> String {
        let requests: Vec<String> = self
            .requests_per_optin
            .iter()
            .map(|(k, v)| format!("{k}={v:.2}"))
            .collect();
        let states: Vec<String> = self
            .by_state
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "scale detail: simulated_hours={:.1} wall_s={:.1} missed={} graph_attempts={} graph_5xx={} \
             duplicate_refusals={} webhook_throttled={} max_webhook_wait_s={} max_outbound_depth={} \
             max_outbound_in_flight={} over_limit_steps={} backlog_at_recovery={} \
             drained_after_recovery_s={} max_live_schedules={} checks_fired={} \
             max_checks_fired_per_min={} max_deadline_backlog={} max_deadline_wait_s={} \
             checks_dropped={} last_chance_sent={} outbound_dlq={} events_dlq={}\n\
             scale states: {}\n\
             scale requests per opt-in (retries included): {}",
            self.simulated_hours,
            self.wall_secs,
            self.missed,
            self.graph_attempts,
            self.graph_5xx,
            self.duplicate_refusals,
            self.webhook_throttled,
            self.max_webhook_wait_s,
            self.max_outbound_depth,
            self.max_outbound_in_flight,
            self.over_limit_steps,
            self.backlog_at_recovery,
            self.drained_after_recovery_s
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
            self.max_live_schedules,
            self.checks_fired,
            self.max_checks_fired_per_min,
            self.max_deadline_backlog,
            self.max_deadline_wait_s,
            self.checks_dropped,
            self.last_chance_sent,
            self.outbound_dead_letters,
            self.events_dead_letters,
            states.join(" "),
            requests.join(" ")
        )
    }
}

/// `login-connect scale ...`: prints the line; fails when an opt-in was late or lost.
pub async fn scale(args: &ScaleArgs) -> Result<(), String> {
    let config = ScaleConfig::from_args(args);
    eprintln!(
        "scale: {} opt-ins over {} Pages, peak {}x the mean, Meta down {} h from hour {}, \
         senders {} deadline {} events {}, {} ms steps",
        config.optins,
        config.pages,
        config.peak_ratio,
        config.outage_hours,
        config.outage_start_hour,
        config.sender_instances,
        config.deadline_instances,
        config.events_instances,
        config.step_ms
    );
    let report = run(&config).await?;
    eprintln!("{}", report.detail());
    println!("{}", report.line());
    if report.late == 0 && report.lost == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} opt-ins late and {} lost",
            report.late, report.lost
        ))
    }
}

// ---- the arrival curve ------------------------------------------------------------------

/// Arrival times (ms after the day's start) of `n` opt-ins: the k-th opt-in arrives where the
/// curve's cumulative share reaches (k + 0.5) / n, so the day is the same on every run.
struct Arrivals {
    /// Cumulative weight at the end of each second of the arrival window.
    cumulative: Vec<f64>,
    n: usize,
}

impl Arrivals {
    fn new(n: usize, hours: f64, peak_ratio: f64) -> Result<Arrivals, String> {
        let seconds = ((hours * 3600.0).round() as usize).max(1);
        let hour_of = |s: usize| (s as f64 + 0.5) / seconds as f64 * 24.0;
        // A day: lowest at 04:00, highest in the afternoon (amplitude `a`), and a campaign
        // spike of height `spike` at 19:00.
        let a = (peak_ratio - 1.0).clamp(0.0, 0.6);
        let weight = |h: f64, spike: f64| {
            let day = 1.0 - a * (std::f64::consts::TAU * (h - 4.0) / 24.0).cos();
            let z = (h - SPIKE_HOUR) / SPIKE_SIGMA_H;
            day + spike * (-0.5 * z * z).exp()
        };
        let ratio = |spike: f64| {
            let (mut sum, mut max) = (0.0f64, 0.0f64);
            for s in 0..seconds {
                let w = weight(hour_of(s), spike);
                sum += w;
                max = max.max(w);
            }
            max / (sum / seconds as f64)
        };
        let mut spike = 0.0;
        if ratio(0.0) < peak_ratio {
            let (mut lo, mut hi) = (0.0, 1.0);
            while ratio(hi) < peak_ratio {
                hi *= 2.0;
                if hi > 1e6 {
                    return Err(format!(
                        "a peak of {peak_ratio}x the mean is beyond this curve (about {:.0}x at most)",
                        ratio(1e6)
                    ));
                }
            }
            for _ in 0..50 {
                let mid = (lo + hi) / 2.0;
                if ratio(mid) < peak_ratio {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            spike = hi;
        }
        let mut cumulative = Vec::with_capacity(seconds);
        let mut total = 0.0;
        for s in 0..seconds {
            total += weight(hour_of(s), spike);
            cumulative.push(total);
        }
        Ok(Arrivals { cumulative, n })
    }

    /// Arrival time of opt-in `k` (ms after the start), non-decreasing in `k`.
    fn at_ms(&self, k: usize) -> i64 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = (k as f64 + 0.5) / self.n.max(1) as f64 * total;
        let s = self.cumulative.partition_point(|c| *c < target);
        let before = if s == 0 { 0.0 } else { self.cumulative[s - 1] };
        let here = self.cumulative.get(s).copied().unwrap_or(total) - before;
        let frac = if here > 0.0 {
            ((target - before) / here).clamp(0.0, 0.999)
        } else {
            0.0
        };
        (s as f64 * 1000.0 + frac * 1000.0) as i64
    }
}

/// Page of opt-in `k`: Zipf weights 1/(i+1), interleaved by a golden-ratio sequence so every
/// Page's share holds in every part of the day.
fn page_index(k: usize, cumulative_weights: &[f64]) -> usize {
    let u = (k as f64 * 0.618_033_988_749_895).fract();
    cumulative_weights
        .partition_point(|c| *c <= u)
        .min(cumulative_weights.len().saturating_sub(1))
}

fn zipf_cumulative(pages: usize) -> Vec<f64> {
    let weights: Vec<f64> = (0..pages).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn login_id(k: usize) -> String {
    format!("scale-{k}")
}

// ---- adapters for the run -----------------------------------------------------------------

/// Counts what the run needs from the metrics port (keeping every metric of millions of
/// sends would not fit in memory).
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    missed: AtomicU64,
    graph_errors: AtomicU64,
}

impl Metrics for Counts {
    fn record(&self, metric: Metric) {
        let c = match metric {
            Metric::FirstMessageSent { .. } => &self.sent,
            Metric::FirstMessageMissed => &self.missed,
            Metric::GraphError(_) => &self.graph_errors,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Graph port on the simulator without the HTTP hop (millions of sends): the request body
/// is the Send API's, the answer is read as `lc_adapters::graph::GraphClient` reads it (status,
/// error body, usage headers).
struct SimGraph {
    sim: Arc<SimHandle>,
    version: String,
}

#[async_trait]
impl GraphApi for SimGraph {
    async fn send(&self, auth: &PageAuth, request: &SendRequest) -> Result<SendOk, SendError> {
        let recipient = match &request.recipient {
            Recipient::Id(v) => serde_json::json!({ "id": v }),
            Recipient::LoginId(v) => serde_json::json!({ "login_id": v }),
            Recipient::UserRef(v) => serde_json::json!({ "user_ref": v }),
            other => {
                return Err(SendError::Transport {
                    failure: TransportFailure::Other,
                    detail: format!("scale: {} recipients are not simulated", other.kind()),
                })
            }
        };
        let mut body = serde_json::json!({
            "recipient": recipient,
            "messaging_type": request.messaging_type.as_str(),
            "message": request.message,
        });
        if let Some(tag) = &request.tag {
            body["tag"] = serde_json::Value::String(tag.clone());
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| SendError::Transport {
            failure: TransportFailure::Other,
            detail: e.to_string(),
        })?;
        let node = if request.page_id.is_empty() {
            "me"
        } else {
            request.page_id.as_str()
        };
        let answer = self.sim.send_direct(
            &self.version,
            node,
            Some(auth.access_token.expose()),
            None,
            &bytes,
        );
        let header = |name: &str| {
            answer
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let usage = Usage::from_headers(
            header("x-app-usage"),
            header("x-business-use-case-usage"),
            header("retry-after"),
        );
        if !(200..300).contains(&answer.status) || answer.body.get("error").is_some() {
            let body = serde_json::to_vec(&answer.body).unwrap_or_default();
            return Err(SendError::Graph {
                error: GraphError::from_response(answer.status, &body),
                usage,
            });
        }
        let text = |k: &str| {
            answer
                .body
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        match text("message_id") {
            Some(message_id) => Ok(SendOk {
                recipient_id: text("recipient_id"),
                message_id,
                usage,
            }),
            None => Err(SendError::Transport {
                failure: TransportFailure::Other,
                detail: format!("send: HTTP {} without a message_id", answer.status),
            }),
        }
    }

    async fn debug_token(
        &self,
        _app_access_token: &Secret,
        _input_token: &Secret,
    ) -> Result<TokenInfo, SendError> {
        Err(SendError::Transport {
            failure: TransportFailure::Other,
            detail: "scale: debug_token is not simulated".into(),
        })
    }
}

/// Settles a batch as Lambda's event source does: done is deleted, kept comes back after its
/// visibility, a dead letter is copied to the DLQ (with its reason) and deleted.
async fn settle_batch(
    queue: &MemoryQueue,
    dead_letters: Option<&MemoryQueue>,
    batch: &[Received],
    fates: Vec<Fate>,
) {
    let via = Settling {
        queue: Some(queue),
        dead_letters: dead_letters.map(|d| d as &dyn QueueSender),
        requeue: Some(queue),
    };
    for (m, fate) in batch.iter().zip(fates) {
        if let Settled::Delete = settle(fate, &m.receipt_handle, &m.body, via).await {
            queue.delete(&m.receipt_handle);
        }
    }
}

// ---- the run --------------------------------------------------------------------------------

/// Runs the simulated day (and what follows it) and reads every opt-in back.
pub async fn run(config: &ScaleConfig) -> Result<ScaleReport, String> {
    let wall = Instant::now();
    let step = config.step_ms.max(1);
    let arrivals = Arrivals::new(config.optins, config.arrival_hours, config.peak_ratio)?;
    let pages = page_ids(config.pages);
    let page_weights = zipf_cumulative(pages.len());
    let (secrets, _) = local_secrets(&pages);
    let secrets = Arc::new(secrets);
    let app_secret = secrets
        .apps
        .first()
        .map(|a| a.app_secret.expose().to_string())
        .ok_or("no app secret")?;

    // The simulator: Meta's per-Page rate, logs off (counters only), its clock frozen and
    // moved with ours.
    let mut sim_config = SimConfig {
        app_id: APP_ID.into(),
        app_secret: app_secret.clone(),
        rate_limit_per_sec: config.page_rate_per_sec,
        keep_logs: false,
        ..SimConfig::default()
    };
    for (page, token) in &secrets.page_tokens {
        sim_config = sim_config.with_page(page, token.expose());
    }
    let sim = Arc::new(
        graph_sim::start(sim_config)
            .await
            .map_err(|e| format!("graph simulator: {e}"))?,
    );
    sim.freeze_clock();
    sim.advance_clock(DAY_START_MS - sim.now_ms());
    let clock = ManualClock::at(DAY_START_MS);
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let advance_to = |t: i64| {
        let delta = t - clock.now_ms();
        if delta != 0 {
            clock.set(t);
            sim.advance_clock(delta);
        }
    };

    // The in-memory stack, shaped like the template.
    let counter = Arc::new(RequestCounter::new());
    let store = Arc::new(MemoryStore::with_counter(counter.clone()));
    let table = Table::new(store.clone());
    let scheduler = Arc::new(MemoryScheduler::with_counter(counter.clone()));
    let bus = Arc::new(MemoryBus::counting(counter.clone()));
    let events_dlq = Arc::new(MemoryQueue::with_clock(
        "events-dlq",
        dyn_clock.clone(),
        VISIBILITY_MS,
    ));
    let events = Arc::new(
        MemoryQueue::with_clock("events", dyn_clock.clone(), VISIBILITY_MS)
            .with_redrive(5, events_dlq.clone()),
    );
    let jobs_dlq = Arc::new(MemoryQueue::with_clock(
        "outbound-dlq",
        dyn_clock.clone(),
        VISIBILITY_MS,
    ));
    let jobs = Arc::new(
        MemoryQueue::with_clock("outbound", dyn_clock.clone(), VISIBILITY_MS)
            .with_redrive(config.outbound_max_receives, jobs_dlq.clone()),
    );
    let counts = Arc::new(Counts::default());
    let secret_source: Arc<dyn SecretSource> = Arc::new(secrets.clone());
    let intake = Intake::new(
        events.clone(),
        secret_source.clone(),
        dyn_clock.clone(),
        counts.clone(),
        IntakeConfig::default(),
    );
    let lifecycle = Lifecycle::new(
        LifecyclePorts {
            table: table.clone(),
            scheduler: scheduler.clone(),
            jobs: jobs.clone(),
            secrets: secret_source.clone(),
            bus: bus.clone(),
            clock: dyn_clock.clone(),
            metrics: counts.clone(),
        },
        LifecycleConfig {
            deadline_margin_ms: config.deadline_margin_ms,
            ..LifecycleConfig::default()
        },
    );
    let graph: Arc<dyn GraphApi> = Arc::new(SimGraph {
        sim: sim.clone(),
        version: lc_adapters::graph::GraphConfig::default().api_version,
    });
    let sender_config = SenderConfig {
        pacing: PacingConfig {
            page_rate_per_sec: config.page_rate_per_sec,
            instances: config.pacing_instances,
            ..PacingConfig::default()
        },
        pace_threshold_percent: config.pace_threshold_percent,
        ..SenderConfig::default()
    }
    .with_timeouts(
        i64::try_from(
            lc_adapters::graph::GraphConfig::default()
                .timeout
                .as_millis(),
        )
        .unwrap_or(10_000),
        30_000,
    )?;
    let ports = SenderPorts {
        table: table.clone(),
        outbound: jobs.clone(),
        bus: bus.clone(),
        graph,
        scheduler: scheduler.clone(),
        secrets: secret_source,
        clock: dyn_clock.clone(),
        metrics: counts.clone(),
    };
    // One Sender (with its own pacer) per process, as each Lambda instance has its own.
    let senders: Vec<Sender> = (0..config.sender_instances)
        .map(|_| Sender::new(ports.clone(), sender_config.clone()))
        .collect();
    let deadlines: Vec<Deadline> = (0..config.deadline_instances)
        .map(|_| Deadline::new(Sender::new(ports.clone(), sender_config.clone())))
        .collect();

    let outage_from = DAY_START_MS + (config.outage_start_hour * HOUR_MS as f64) as i64;
    let outage_until = outage_from + (config.outage_hours * HOUR_MS as f64) as i64;
    let has_outage = config.outage_hours > 0.0;
    let arrival_end = DAY_START_MS + (config.arrival_hours * HOUR_MS as f64).ceil() as i64;
    let hard_end = arrival_end + DAY_MS + 2 * HOUR_MS;

    let mut report = ScaleReport {
        optins: config.optins,
        pages: pages.len(),
        ..ScaleReport::default()
    };
    let per_step = |per_sec: u32| ((i64::from(per_sec) * step) / 1000).max(1) as usize;
    let webhook_per_step = per_step(config.webhook_rps);
    let scheduler_per_step = per_step(config.scheduler_tps);

    let mut next_k = 0usize;
    let mut arrivals_in_second: (i64, u64) = (-1, 0);
    // Bodies Meta is delivering (new, or again after a 429), oldest first.
    // Each with its opt-in's number and time.
    let mut meta_outbox: VecDeque<(usize, i64, Vec<u8>)> = VecDeque::new();
    // Opt-ins up to this number have been counted as throttled.
    let mut throttled_through: Option<usize> = None;
    // Checks Scheduler has fired but not yet handed over (throttled), and checks Lambda holds
    // for the deadline function (its async queue), each with the time it entered.
    let mut scheduler_backlog: VecDeque<(i64, OneTimeSchedule)> = VecDeque::new();
    let mut async_queue: VecDeque<(i64, OneTimeSchedule)> = VecDeque::new();
    let mut fired_in_minute: (i64, u64) = (-1, 0);
    let mut outage_on = false;

    let mut t = DAY_START_MS;
    loop {
        advance_to(t);

        // Meta: down for the window, back after.
        if has_outage && !outage_on && t >= outage_from && t < outage_until {
            sim.set_faults(Faults {
                error_5xx_ratio: 1.0,
                ..Faults::default()
            })?;
            outage_on = true;
        }
        if outage_on && t >= outage_until {
            sim.set_faults(Faults::default())?;
            outage_on = false;
            report.backlog_at_recovery = jobs.len();
        }

        // Arrivals: Meta signs each opt-in's webhook body.
        while next_k < config.optins {
            let at = DAY_START_MS + arrivals.at_ms(next_k);
            if at > t {
                break;
            }
            let second = (at - DAY_START_MS) / 1000;
            if arrivals_in_second.0 == second {
                arrivals_in_second.1 += 1;
            } else {
                arrivals_in_second = (second, 1);
            }
            report.peak_per_s = report.peak_per_s.max(arrivals_in_second.1);
            let page = &pages[page_index(next_k, &page_weights)];
            let id = login_id(next_k);
            sim.register_login_id(&id, Some(page), at);
            meta_outbox.push_back((
                next_k,
                at,
                format!(
                    r#"{{"object":"page","entry":[{{"id":"{page}","time":{at},"messaging":[{{"recipient":{{"id":"{page}"}},"timestamp":{at},"optin":{{"login_id":"{id}"}}}}]}}]}}"#
                )
                .into_bytes(),
            ));
            next_k += 1;
        }

        // The webhook: as many requests as the Function URL serves in a step; the rest are
        // answered 429 and Meta delivers them again.
        let mut served = 0;
        while served < webhook_per_step {
            let Some((k, at, body)) = meta_outbox.pop_front() else {
                break;
            };
            served += 1;
            report.max_webhook_wait_s = report.max_webhook_wait_s.max((t - at) / 1000);
            let signature = sign(&app_secret, &body);
            let (receipt, _) = intake.receive(Some(signature.as_str()), false, &body).await;
            if receipt != Receipt::Accepted {
                // Refused (not throttled): Meta delivers it again after the others.
                meta_outbox.push_back((k, at, body));
            }
        }
        // What is left was answered 429. It is the range of opt-ins from the front to the
        // back (first in, first out): count each opt-in once.
        if let (Some((front, _, _)), Some((back, _, _))) = (meta_outbox.front(), meta_outbox.back())
        {
            let from = throttled_through.map_or(*front, |done| (*front).max(done + 1));
            if *back >= from {
                report.webhook_throttled += (*back - from + 1) as u64;
                throttled_through = Some(*back);
            }
        }

        // The events function: one batch per instance.
        for _ in 0..config.events_instances {
            let batch = events.receive(config.batch_size);
            if batch.is_empty() {
                break;
            }
            let fates = join_all(batch.iter().map(|m| lifecycle.handle_message(&m.body))).await;
            settle_batch(&events, None, &batch, fates).await;
        }

        // The sender function: one batch per instance, each with its own pacer.
        for sender in &senders {
            // A receive would take the queue past its in-flight limit: SQS answers OverLimit.
            if jobs.in_flight() + config.batch_size > config.max_in_flight {
                report.over_limit_steps += 1;
                break;
            }
            let batch = jobs.receive(config.batch_size);
            if batch.is_empty() {
                break;
            }
            let fates = join_all(batch.iter().map(|m| sender.handle_message(&m.body))).await;
            settle_batch(&jobs, Some(&jobs_dlq), &batch, fates).await;
        }
        report.max_outbound_in_flight = report.max_outbound_in_flight.max(jobs.in_flight());

        // Scheduler fires what is due, at most its target rate; Lambda queues the rest.
        for s in scheduler.due(t) {
            report.checks_fired += 1;
            let minute = (t - DAY_START_MS) / 60_000;
            if fired_in_minute.0 == minute {
                fired_in_minute.1 += 1;
            } else {
                fired_in_minute = (minute, 1);
            }
            report.max_checks_fired_per_min =
                report.max_checks_fired_per_min.max(fired_in_minute.1);
            scheduler_backlog.push_back((t, s));
        }
        while scheduler_backlog
            .front()
            .is_some_and(|(since, _)| t - since > SCHEDULER_MAX_AGE_MS)
        {
            scheduler_backlog.pop_front();
            report.checks_dropped += 1;
        }
        for _ in 0..scheduler_per_step {
            let Some((_, s)) = scheduler_backlog.pop_front() else {
                break;
            };
            async_queue.push_back((t, s));
        }
        while async_queue
            .front()
            .is_some_and(|(since, _)| t - since > ASYNC_MAX_AGE_MS)
        {
            async_queue.pop_front();
            report.checks_dropped += 1;
        }
        report.max_deadline_backlog = report.max_deadline_backlog.max(async_queue.len());
        // The deadline function: one check per instance.
        for deadline in &deadlines {
            let Some((since, s)) = async_queue.pop_front() else {
                break;
            };
            report.max_deadline_wait_s = report.max_deadline_wait_s.max((t - since) / 1000);
            let input = serde_json::from_str(&s.input).unwrap_or(serde_json::Value::Null);
            match deadline.handle_input(&input).await {
                Ok(DeadlineOutcome::LastChance {
                    outcome: JobOutcome::Sent { .. },
                    ..
                }) => report.last_chance_sent += 1,
                Ok(_) => {}
                // Lambda retries a failed asynchronous invocation: back in the queue.
                Err(_) => async_queue.push_back((since, s)),
            }
        }

        // What the dashboards would show.
        let oldest = [events.oldest_sent_at_ms(), jobs.oldest_sent_at_ms()]
            .into_iter()
            .flatten()
            .min();
        if let Some(oldest) = oldest {
            report.max_queue_age_s = report.max_queue_age_s.max((t - oldest) / 1000);
        }
        let depth = jobs.len();
        report.max_outbound_depth = report.max_outbound_depth.max(depth);
        report.max_live_schedules = report.max_live_schedules.max(scheduler.len());
        if has_outage
            && t >= outage_until
            && report.drained_after_recovery_s.is_none()
            && depth == 0
        {
            report.drained_after_recovery_s = Some((t - outage_until) / 1000);
        }

        // Done when everything arrived and nothing is waiting anywhere.
        let idle = meta_outbox.is_empty()
            && scheduler_backlog.is_empty()
            && async_queue.is_empty()
            && events.is_empty()
            && jobs.is_empty()
            && scheduler.is_empty();
        if (next_k >= config.optins && idle) || t >= hard_end {
            break;
        }
        // Next step, skipping ahead when nothing can happen sooner.
        let mut next = t + step;
        if meta_outbox.is_empty() && scheduler_backlog.is_empty() && async_queue.is_empty() {
            let mut soonest = [
                (next_k < config.optins).then(|| DAY_START_MS + arrivals.at_ms(next_k)),
                events.next_visible_at_ms(),
                jobs.next_visible_at_ms(),
                scheduler.next_at_ms(),
                (has_outage && t < outage_from).then_some(outage_from),
                (has_outage && t < outage_until).then_some(outage_until),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(hard_end);
            soonest = soonest.min(hard_end);
            if soonest > next {
                // Stay on the step grid.
                let steps = (soonest - DAY_START_MS + step - 1) / step;
                next = DAY_START_MS + steps * step;
            }
        }
        t = next;
    }
    report.simulated_hours = (t - DAY_START_MS) as f64 / HOUR_MS as f64;

    // Read every opt-in back.
    for k in 0..config.optins {
        let id = login_id(k);
        let page = &pages[page_index(k, &page_weights)];
        let key = optin_key(&Identity::new(IdentityKind::LoginId, id.as_str()), page);
        let optin = table
            .optins
            .get_optin(&key)
            .await
            .map_err(|e| e.to_string())?;
        let state = optin.as_ref().map(|o| o.state);
        *report
            .by_state
            .entry(state.map_or("missing", OptinState::as_str).to_string())
            .or_default() += 1;
        match (state, optin) {
            (Some(OptinState::Sent), Some(o)) => {
                report.sent += 1;
                if o.sent_at_ms.unwrap_or(i64::MAX) >= o.deadline_at_ms {
                    report.late += 1;
                }
            }
            (Some(OptinState::Expired), _) => {
                report.missed += 1;
                report.late += 1;
            }
            _ => report.lost += 1,
        }
    }
    let stats = sim.stats();
    report.rate_limited = stats.rate_limited;
    report.graph_attempts = stats.attempts;
    report.graph_5xx = stats.faults_5xx;
    report.duplicate_refusals = stats
        .rejected_by_code_subcode
        .get("10/2018278")
        .copied()
        .unwrap_or(0);
    if stats.accepted != report.sent {
        return Err(format!(
            "the simulator accepted {} first messages, the store records {} sent",
            stats.accepted, report.sent
        ));
    }
    report.outbound_dead_letters = jobs_dlq.len();
    report.events_dead_letters = events_dlq.len();
    let n = config.optins.max(1) as f64;
    report.requests_per_optin = counter
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, v as f64 / n))
        .collect();
    report.wall_secs = wall.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_has_its_peak_and_every_arrival() {
        let a = Arrivals::new(100_000, 24.0, 10.0).unwrap();
        let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
        let mut last = -1;
        for k in 0..100_000 {
            let at = a.at_ms(k);
            assert!(at >= last, "arrivals are in order");
            assert!(at < DAY_MS);
            last = at;
            *per_second.entry(at / 60_000).or_default() += 1;
        }
        // Per minute, to smooth the rounding of 1.16 opt-ins a second.
        let peak = per_second.values().max().copied().unwrap_or(0) as f64;
        let mean = 100_000.0 / 1440.0;
        assert!((peak / mean - 10.0).abs() < 0.5, "peak {peak} mean {mean}");
    }

    #[test]
    fn the_command_defaults_are_the_template_defaults() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["login-connect", "scale"]).unwrap();
        match cli.command {
            Some(crate::cli::Command::Scale(a)) => {
                assert_eq!(ScaleConfig::from_args(&a), ScaleConfig::default())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_follow_their_weights() {
        let w = zipf_cumulative(4);
        let mut n = [0usize; 4];
        for k in 0..10_000 {
            n[page_index(k, &w)] += 1;
        }
        // 1 : 1/2 : 1/3 : 1/4 of 2.083
        assert!((n[0] as i64 - 4_800).abs() < 50, "{n:?}");
        assert!((n[3] as i64 - 1_200).abs() < 50, "{n:?}");
    }
}
