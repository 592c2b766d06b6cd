//! The whole service in one process: the same domain code the Lambdas run, wired to the
//! in-memory adapters (default) or to the AWS adapters against an endpoint such as moto, with
//! the queues polled the way Lambda's event source polls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::consumer::{settle, Fate, Settled, Settling};
use lc_core::deadline::Deadline;
use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts};
use lc_core::memory::{MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::ports::{
    Clock, EventBus, MemoryMetrics, Queue, QueueSender, Received, RequestCounter, Scheduler,
    SecretSource, Table,
};
use lc_core::sending::followup::{FollowUpConfig, FollowUpPorts, FollowUps};
use lc_core::sending::sender::{Sender, SenderConfig, SenderPorts};
use lc_core::support::secret::Secrets;
use lc_core::webhook::intake::{Intake, IntakeConfig};
use tokio::task::JoinHandle;

use crate::meter::meter;

pub struct Backends {
    pub table: Table,
    pub scheduler: Arc<dyn Scheduler>,
    /// Set when schedules live in memory: the runner fires them (moto never does).
    pub memory_scheduler: Option<Arc<MemoryScheduler>>,
    /// Set when the table lives in memory.
    pub memory_store: Option<Arc<MemoryStore>>,
    pub events: Arc<dyn Queue>,
    pub jobs: Arc<dyn Queue>,
    pub jobs_dlq: Arc<dyn Queue>,
    /// The FIFO requests queue of `POST /v1/messages` (and its FIFO dead-letter queue).
    pub requests: Arc<dyn Queue>,
    pub requests_dlq: Arc<dyn Queue>,
    /// The business's event bus.
    pub bus: Arc<dyn EventBus>,
    /// Every event the bus accepted, in order (in memory; with `--aws-endpoint` a copy of what
    /// went to the bus on moto), for `--events-log` and the demo.
    pub published: Arc<MemoryBus>,
    /// The EventBridge bus's name, with `--aws-endpoint`.
    pub bus_name: Option<String>,
    pub counter: Arc<RequestCounter>,
    pub label: String,
}

impl Backends {
    /// The embedded default: everything in memory, with SQS-like redrive after 5 receives.
    pub fn memory(clock: Arc<dyn Clock>, visibility_ms: i64) -> Backends {
        let counter = Arc::new(RequestCounter::new());
        let bus = Arc::new(MemoryBus::with_counter(counter.clone()));
        let scheduler = Arc::new(MemoryScheduler::with_counter(counter.clone()));
        let events_dlq = Arc::new(MemoryQueue::with_clock(
            "events-dlq",
            clock.clone(),
            visibility_ms,
        ));
        let jobs_dlq = Arc::new(MemoryQueue::with_clock(
            "outbound-dlq",
            clock.clone(),
            visibility_ms,
        ));
        let requests_dlq = Arc::new(
            MemoryQueue::with_clock("requests-dlq.fifo", clock.clone(), visibility_ms).fifo(),
        );
        let requests = Arc::new(
            MemoryQueue::with_clock("requests.fifo", clock.clone(), visibility_ms)
                .fifo()
                .with_redrive(10, requests_dlq.clone()),
        );
        let store = Arc::new(MemoryStore::with_counter(counter.clone()));
        Backends {
            table: Table::new(store.clone()),
            scheduler: scheduler.clone(),
            memory_scheduler: Some(scheduler),
            memory_store: Some(store),
            events: Arc::new(
                MemoryQueue::with_clock("events", clock.clone(), visibility_ms)
                    .with_redrive(5, events_dlq),
            ),
            jobs: Arc::new(
                MemoryQueue::with_clock("outbound", clock, visibility_ms)
                    .with_redrive(100, jobs_dlq.clone()),
            ),
            jobs_dlq,
            requests,
            requests_dlq,
            bus: bus.clone(),
            published: bus,
            bus_name: None,
            counter,
            label: "in-memory adapters".into(),
        }
    }

    /// The AWS adapters against `endpoint` (moto): creates a table, three queues and a
    /// schedule group with names unique to this run, so runs never collide. Schedules are
    /// created in the AWS scheduler but fired by nobody (moto never fires): the runner keeps
    /// a memory copy of each and fires that.
    pub async fn aws(
        endpoint: &str,
        run_id: &str,
        visibility_secs: u32,
    ) -> Result<Backends, String> {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var(k).is_err() {
                std::env::set_var(k, v);
            }
        }
        let sdk = lc_adapters::aws::load_config()
            .await
            .map_err(|e| format!("AWS config: {e}"))?;
        let counter = Arc::new(RequestCounter::new());
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let table_name = format!("lc-{run_id}");
        lc_adapters::dynamodb::create_table(&ddb, &table_name)
            .await
            .map_err(|e| format!("create table: {e}"))?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue = |name: String| {
            let visibility = visibility_secs.to_string();
            let sqs = sqs.clone();
            let counter = counter.clone();
            async move {
                let mut create = sqs.create_queue().queue_name(&name).attributes(
                    aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                    visibility,
                );
                if name.ends_with(".fifo") {
                    create = create
                        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
                }
                let url = create
                    .send()
                    .await
                    .map_err(|e| format!("create queue {name}: {e}"))?
                    .queue_url
                    .unwrap_or_default();
                Ok::<_, String>(Arc::new(
                    lc_adapters::sqs::SqsQueue::new(sqs, url).with_counter(counter),
                ))
            }
        };
        let events = queue(format!("lc-{run_id}-events")).await?;
        let jobs = queue(format!("lc-{run_id}-outbound")).await?;
        let jobs_dlq = queue(format!("lc-{run_id}-outbound-dlq")).await?;
        let requests = queue(format!("lc-{run_id}-requests.fifo")).await?;
        let requests_dlq = queue(format!("lc-{run_id}-requests-dlq.fifo")).await?;
        let sched = aws_sdk_scheduler::Client::new(&sdk);
        let group = format!("lc-{run_id}");
        lc_adapters::scheduler::create_group(&sched, &group)
            .await
            .map_err(|e| format!("create schedule group: {e}"))?;
        let aws_scheduler = lc_adapters::scheduler::EventBridgeScheduler::new(
            sched,
            lc_adapters::scheduler::SchedulerConfig::new(
                group,
                "arn:aws:lambda:us-east-1:123456789012:function:lc-deadline",
                "arn:aws:iam::123456789012:role/lc-scheduler",
            ),
        )
        .map_err(|e| e.to_string())?
        .with_counter(counter.clone());
        let firing = Arc::new(MemoryScheduler::new());
        let eb = aws_sdk_eventbridge::Client::new(&sdk);
        let bus_name = format!("lc-{run_id}");
        lc_adapters::eventbridge::create_bus(&eb, &bus_name)
            .await
            .map_err(|e| format!("create event bus: {e}"))?;
        let published = Arc::new(MemoryBus::new());
        let bus = Arc::new(Teed {
            // `LC_BUS_OFF_DETAIL_TYPES`, as the deployed functions read it (the template's
            // `BusDetailTypesOff`).
            aws: lc_adapters::eventbridge::EventBridgeBus::new(eb, bus_name.clone())
                .with_counter(counter.clone())
                .with_off(lc_adapters::wiring::bus_off().map_err(|e| e.to_string())?),
            copy: published.clone(),
        });
        Ok(Backends {
            table: Table::new(Arc::new(
                lc_adapters::dynamodb::DynamoStore::new(ddb, table_name)
                    .with_counter(counter.clone()),
            )),
            scheduler: Arc::new(Mirrored {
                aws: aws_scheduler,
                memory: firing.clone(),
            }),
            memory_scheduler: Some(firing),
            memory_store: None,
            events,
            jobs,
            jobs_dlq,
            requests,
            requests_dlq,
            bus,
            published,
            bus_name: Some(bus_name),
            counter,
            label: format!("AWS adapters at {endpoint}"),
        })
    }
}

/// Publishes to the bus on the endpoint (counted, as deployed) and keeps a copy of what it
/// accepted, for the runner's event log.
pub struct Teed {
    pub aws: lc_adapters::eventbridge::EventBridgeBus,
    copy: Arc<MemoryBus>,
}

impl Teed {
    pub fn bus_name(&self) -> &str {
        self.aws.bus_name()
    }
}

#[async_trait::async_trait]
impl EventBus for Teed {
    async fn put_events(
        &self,
        events: &[lc_core::bus::BusEvent],
    ) -> Result<Vec<usize>, lc_core::ports::PortError> {
        let refused = self.aws.put_events(events).await?;
        let accepted: Vec<_> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, e)| e.clone())
            .collect();
        if !accepted.is_empty() {
            self.copy.put_events(&accepted).await?;
        }
        Ok(refused)
    }
}

/// Writes every schedule to the AWS scheduler (counted, as deployed) and mirrors it in memory
/// so the runner can fire it.
struct Mirrored {
    aws: lc_adapters::scheduler::EventBridgeScheduler,
    memory: Arc<MemoryScheduler>,
}

#[async_trait::async_trait]
impl Scheduler for Mirrored {
    async fn create_schedule(
        &self,
        s: &lc_core::ports::OneTimeSchedule,
    ) -> Result<lc_core::ports::ScheduleCreated, lc_core::ports::PortError> {
        let r = self.aws.create_schedule(s).await?;
        let _ = self.memory.create_schedule(s).await;
        Ok(r)
    }
    async fn delete_schedule(&self, name: &str) -> Result<bool, lc_core::ports::PortError> {
        let r = self.aws.delete_schedule(name).await?;
        let _ = self.memory.delete_schedule(name).await;
        Ok(r)
    }
    async fn get_schedule(
        &self,
        name: &str,
    ) -> Result<Option<lc_core::ports::OneTimeSchedule>, lc_core::ports::PortError> {
        self.aws.get_schedule(name).await
    }
}

/// Settles a batch as Lambda's event source would: what is done is deleted, what is kept
/// reappears after its visibility timeout.
async fn settle_batch(
    queue: &dyn Queue,
    dead_letters: Option<&dyn Queue>,
    batch: Vec<Received>,
    fates: Vec<Fate>,
) {
    let via = Settling {
        queue: Some(queue),
        dead_letters: dead_letters.map(|d| d as &dyn QueueSender),
        requeue: Some(queue),
    };
    let mut done = Vec::new();
    for (m, fate) in batch.iter().zip(fates) {
        match settle(fate, &m.receipt_handle, &m.body, via).await {
            Settled::Delete => done.push(m.receipt_handle.clone()),
            Settled::Keep { reason } => tracing::debug!(reason = %reason, "message kept"),
        }
    }
    // One DeleteMessageBatch for what is done, as Lambda's event source deletes.
    match queue.delete_batch(&done).await {
        Ok(failed) if failed.is_empty() => {}
        Ok(failed) => tracing::warn!(
            failed = failed.len(),
            "delete failed; the messages will come back"
        ),
        Err(e) => tracing::warn!(error = %e, "delete failed; the messages will come back"),
    }
}

/// Runs a FIFO batch as Lambda does: groups at once, each group's messages in order; once one
/// is kept, the rest of its group goes back at once (unprocessed) behind it.
pub async fn run_fifo_batch<F, Fut>(queue: &dyn Queue, batch: Vec<Received>, handle: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Fate>,
{
    let mut groups: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for m in batch {
        groups
            .entry(m.group_id.clone().unwrap_or_default())
            .or_default()
            .push(m);
    }
    let handle = &handle;
    let via = Settling {
        queue: Some(queue),
        // A FIFO dead-letter queue takes no ungrouped messages: the redrive policy moves them.
        dead_letters: None,
        // A copy would lose its place in its group.
        requeue: None,
    };
    let runs = groups.into_values().map(|messages| async move {
        let mut stopped = false;
        for m in messages {
            if stopped {
                if let Err(e) = queue.change_visibility(&m.receipt_handle, 0).await {
                    tracing::debug!(error = %e, "unprocessed message not returned at once");
                }
                continue;
            }
            let fate = handle(m.body.clone()).await;
            match settle(fate, &m.receipt_handle, &m.body, via).await {
                Settled::Delete => {
                    if let Err(e) = queue.delete(&m.receipt_handle).await {
                        tracing::warn!(error = %e, "delete failed; the message will come back");
                    }
                }
                Settled::Keep { reason } => {
                    tracing::debug!(reason = %reason, "message kept");
                    stopped = true;
                }
            }
        }
    });
    join_all(runs).await;
}

/// How long one receive waits for a first message. Lambda's event source long-polls; so do the
/// local pollers. On moto a short poll every `poll` by each of the runner's pollers (8 workers x 3
/// queues: ~1,000 requests a second when idle) kept moto's one Python process busy, and every call
/// the functions made queued behind them: the Lambda column of the cost line priced moto's queue.
const RECEIVE_WAIT_MS: u64 = 1_000;
/// The template's `BatchSize` (SQS's most per receive).
const BATCH: usize = 10;

/// Waits for the next non-empty batch, as Lambda's event source does (errors are logged and
/// polled through). With a `window` (the event source's `MaximumBatchingWindowInSeconds`), it
/// then goes on gathering until the batch is full or the window since the first message is
/// over, so a run prices the batches the deployed functions would get.
async fn next_batch(
    q: &dyn Queue,
    poll: Duration,
    window: Duration,
    name: &str,
) -> Vec<lc_core::ports::Received> {
    let mut batch = loop {
        match q.receive(BATCH, RECEIVE_WAIT_MS).await {
            Ok(b) if !b.is_empty() => break b,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, queue = name, "receive failed"),
        }
        tokio::time::sleep(poll).await;
    };
    let until = tokio::time::Instant::now() + window;
    while batch.len() < BATCH {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match q
            .receive(BATCH - batch.len(), left.as_millis() as u64)
            .await
        {
            Ok(more) if !more.is_empty() => batch.extend(more),
            // SQS long-polls only in whole seconds: ten short polls a window, not one per `poll`.
            Ok(_) => tokio::time::sleep((window / 10).max(poll).min(left)).await,
            Err(e) => {
                tracing::warn!(error = %e, queue = name, "receive failed");
                break;
            }
        }
    }
    batch
}

/// The running service.
pub struct Pipeline {
    pub backends: Backends,
    pub intake: Arc<Intake>,
    pub lifecycle: Arc<Lifecycle>,
    pub sender: Arc<Sender>,
    pub deadline: Arc<Deadline>,
    /// `POST /v1/messages` and the requests-queue consumer.
    pub followups: Arc<FollowUps>,
    pub clock: Arc<dyn Clock>,
    /// Everything the components counted, as the Lambdas would write it to CloudWatch.
    pub metrics: Arc<MemoryMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

pub struct PipelineConfig {
    pub graph_base_url: String,
    pub graph_timeout: Duration,
    pub lifecycle: LifecycleConfig,
    pub sender: SenderConfig,
    /// How often consumers poll when idle, and the scheduler ticks.
    pub poll: Duration,
    /// Concurrent consumers per queue (Lambda's concurrency, locally).
    pub workers: usize,
    /// The events and outbound consumers' batching windows (zero: take what is waiting, the
    /// local default; `load` gives the template's when it prices a run).
    pub events_window: Duration,
    pub outbound_window: Duration,
}

impl Pipeline {
    pub fn new(
        backends: Backends,
        secrets: Arc<Secrets>,
        clock: Arc<dyn Clock>,
        config: PipelineConfig,
    ) -> Result<Pipeline, String> {
        let metrics = Arc::new(MemoryMetrics::new());
        // The components record through the meter, which notes each invocation's metrics for
        // its EMF documents (the cost line) and keeps them in `metrics` as before.
        let recorded: Arc<dyn lc_core::ports::Metrics> =
            Arc::new(crate::meter::Metered(metrics.clone()));
        // Both hosts (graph.facebook.com, graph.instagram.com) at the simulator, or Meta's.
        let graph = GraphClient::new(GraphConfig {
            timeout: config.graph_timeout,
            ..GraphConfig::at(config.graph_base_url.clone())
        })
        .map_err(|e| e.to_string())?;
        let secret_source: Arc<dyn SecretSource> = Arc::new(secrets.clone());
        let intake = Arc::new(Intake::new(
            backends.events.clone(),
            Arc::new(secrets.clone()),
            clock.clone(),
            recorded.clone(),
            // As the webhook Lambda: what is heard only as a switched-off detail type is not
            // queued (`LC_BUS_OFF_DETAIL_TYPES`).
            IntakeConfig::default()
                .skipping(&lc_adapters::wiring::bus_off().map_err(|e| e.to_string())?),
        ));
        let lifecycle = Lifecycle::new(
            LifecyclePorts {
                table: backends.table.clone(),
                scheduler: backends.scheduler.clone(),
                jobs: backends.jobs.clone(),
                secrets: secret_source.clone(),
                bus: backends.bus.clone(),
                clock: clock.clone(),
                metrics: recorded.clone(),
            },
            config.lifecycle.clone(),
        );
        let sender_ports = SenderPorts {
            table: backends.table.clone(),
            outbound: backends.jobs.clone(),
            bus: backends.bus.clone(),
            graph: Arc::new(graph),
            scheduler: backends.scheduler.clone(),
            secrets: secret_source,
            clock: clock.clone(),
            metrics: recorded.clone(),
        };
        let followups = Arc::new(FollowUps::new(
            FollowUpPorts {
                table: backends.table.clone(),
                requests: backends.requests.clone(),
                bus: backends.bus.clone(),
                graph: sender_ports.graph.clone(),
                secrets: sender_ports.secrets.clone(),
                clock: clock.clone(),
                metrics: recorded.clone(),
            },
            FollowUpConfig::from_sender(&config.sender),
        ));
        let sender = Arc::new(Sender::new(sender_ports.clone(), config.sender.clone()));
        // As deployed: the events consumers send a new opt-in's first message themselves
        // (their own sender, their own share of each Page's rate).
        let lifecycle = Arc::new(lifecycle.with_inline_sender(Arc::new(Sender::new(
            sender_ports.clone(),
            config.sender.clone(),
        ))));
        let deadline = Arc::new(Deadline::new(Sender::new(
            sender_ports,
            config.sender.clone(),
        )));
        let mut p = Pipeline {
            backends,
            intake,
            lifecycle,
            sender,
            deadline,
            followups,
            clock,
            metrics,
            tasks: Vec::new(),
        };
        p.start(&config);
        Ok(p)
    }

    fn start(&mut self, config: &PipelineConfig) {
        for _ in 0..config.workers.max(1) {
            self.start_consumers(config);
        }
        self.start_scheduler(config.poll);
    }

    /// One events consumer, one sender consumer and one requests consumer, like one concurrent
    /// Lambda instance each:
    /// the same per-message functions and the same settling as the Lambdas.
    fn start_consumers(&mut self, config: &PipelineConfig) {
        let (poll, events_window, outbound_window) =
            (config.poll, config.events_window, config.outbound_window);
        let (events, lifecycle) = (self.backends.events.clone(), self.lifecycle.clone());
        self.tasks.push(tokio::spawn(async move {
            loop {
                let batch = next_batch(events.as_ref(), poll, events_window, "events").await;
                let fates = batch.iter().map(|m| lifecycle.handle_message(&m.body));
                let fates = meter().invoke("events", join_all(fates)).await;
                settle_batch(events.as_ref(), None, batch, fates).await;
            }
        }));
        let (jobs, dlq, sender) = (
            self.backends.jobs.clone(),
            self.backends.jobs_dlq.clone(),
            self.sender.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            loop {
                let batch = next_batch(jobs.as_ref(), poll, outbound_window, "outbound").await;
                let fates = batch.iter().map(|m| sender.handle_message(&m.body));
                let fates = meter().invoke("sender", join_all(fates)).await;
                settle_batch(jobs.as_ref(), Some(dlq.as_ref()), batch, fates).await;
            }
        }));
        let (requests, followups) = (self.backends.requests.clone(), self.followups.clone());
        self.tasks.push(tokio::spawn(async move {
            loop {
                let batch = next_batch(requests.as_ref(), poll, Duration::ZERO, "requests").await;
                let followups = &followups;
                let run = run_fifo_batch(requests.as_ref(), batch, |body| async move {
                    followups.handle_message(&body).await
                });
                meter().invoke("messages-worker", run).await;
            }
        }));
    }

    fn start_scheduler(&mut self, poll: Duration) {
        // Deadline checks: the in-memory scheduler really fires.
        if let Some(s) = &self.backends.memory_scheduler {
            let deadline = self.deadline.clone();
            self.tasks
                .push(s.spawn_firing(self.clock.clone(), poll, move |schedule| {
                    let deadline = deadline.clone();
                    Box::pin(meter().invoke("deadline", async move {
                        let input = serde_json::from_str(&schedule.input)
                            .unwrap_or(serde_json::Value::Null);
                        if let Err(e) = deadline.handle_input(&input).await {
                            tracing::warn!(error = %e, "deadline check failed");
                        }
                    }))
                }));
        }
    }

    /// Request counts by `service.Operation`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.backends.counter.snapshot()
    }

    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lc_core::memory::MemoryQueue;

    /// Two messages that arrive 50 ms after the first: within a window they ride in its batch
    /// (as the event source's `MaximumBatchingWindowInSeconds` gathers them), without one the
    /// first goes alone.
    async fn batch_len(window: Duration) -> usize {
        let q = Arc::new(MemoryQueue::new("events"));
        q.push("first".into(), Vec::new(), 0);
        let later = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later.push("second".into(), Vec::new(), 0);
            later.push("third".into(), Vec::new(), 0);
        });
        next_batch(q.as_ref(), Duration::from_millis(5), window, "events")
            .await
            .len()
    }

    #[tokio::test]
    async fn a_batching_window_gathers_what_arrives_within_it() {
        assert_eq!(batch_len(Duration::from_millis(500)).await, 3);
        assert_eq!(batch_len(Duration::ZERO).await, 1);
    }
}
