//! The whole service in one process: the same domain code the Lambdas run, wired to the
//! in-memory adapters (default) or to the AWS adapters against an endpoint such as moto, with
//! the queues polled the way Lambda's event source polls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::deadline::Deadline;
use lc_core::lifecycle::optin::{DeadlineCheck, FirstMessageJob};
use lc_core::lifecycle::processor::{Events, EventsConfig};
use lc_core::memory::{MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::ports::store::Table;
use lc_core::ports::{
    Clock, QueueReceiver, QueueSender, RequestCounter, Scheduler, VisibilityControl,
};
use lc_core::sending::sender::{settle, Sender, SenderConfig, Settlement};
use lc_core::support::secret::Secrets;
use lc_core::webhook::intake::{Intake, IntakeConfig};
use tokio::task::JoinHandle;

/// A queue as the runner uses it: send, receive, and change visibility.
pub trait Queue: QueueSender + QueueReceiver + VisibilityControl {}
impl<T: QueueSender + QueueReceiver + VisibilityControl + ?Sized> Queue for T {}

pub type DynTable = Arc<dyn Table>;
pub type DynScheduler = Arc<dyn Scheduler>;
pub type DynQueue = Arc<dyn Queue>;
pub type DynClock = Arc<dyn Clock>;

pub type RunEvents = Events<DynTable, DynScheduler, DynQueue, DynClock>;
pub type RunSender = Sender<DynTable, GraphClient, DynScheduler, Arc<Secrets>, DynClock>;
pub type RunDeadline = Deadline<DynTable, GraphClient, DynScheduler, Arc<Secrets>, DynClock>;

pub struct Backends {
    pub table: DynTable,
    pub scheduler: DynScheduler,
    /// Set when schedules live in memory: the runner fires them (moto never does).
    pub memory_scheduler: Option<Arc<MemoryScheduler>>,
    pub events: DynQueue,
    pub jobs: DynQueue,
    pub jobs_dlq: DynQueue,
    pub counter: Arc<RequestCounter>,
    pub label: String,
}

impl Backends {
    /// The embedded default: everything in memory, with SQS-like redrive after 5 receives.
    pub fn memory(clock: DynClock, visibility_ms: i64) -> Backends {
        let counter = Arc::new(RequestCounter::new());
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
        Backends {
            table: Arc::new(MemoryStore::with_counter(counter.clone())),
            scheduler: scheduler.clone(),
            memory_scheduler: Some(scheduler),
            events: Arc::new(
                MemoryQueue::with_clock("events", clock.clone(), visibility_ms)
                    .with_redrive(5, events_dlq),
            ),
            jobs: Arc::new(
                MemoryQueue::with_clock("outbound", clock, visibility_ms)
                    .with_redrive(100, jobs_dlq.clone()),
            ),
            jobs_dlq,
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
        let sdk = lc_adapters::aws::load_config().await;
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
                let url = sqs
                    .create_queue()
                    .queue_name(&name)
                    .attributes(
                        aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                        visibility,
                    )
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
        Ok(Backends {
            table: Arc::new(
                lc_adapters::dynamodb::DynamoStore::new(ddb, table_name)
                    .with_counter(counter.clone()),
            ),
            scheduler: Arc::new(Mirrored {
                aws: aws_scheduler,
                memory: firing.clone(),
            }),
            memory_scheduler: Some(firing),
            events,
            jobs,
            jobs_dlq,
            counter,
            label: format!("AWS adapters at {endpoint}"),
        })
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

/// Waits for the next non-empty batch, as Lambda's event source does (errors are logged and
/// polled through).
async fn next_batch(q: &dyn Queue, poll: Duration, name: &str) -> Vec<lc_core::ports::Received> {
    loop {
        match q.receive(10, 200).await {
            Ok(b) if !b.is_empty() => return b,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, queue = name, "receive failed"),
        }
        tokio::time::sleep(poll).await;
    }
}

/// The running service.
pub struct Pipeline {
    pub backends: Backends,
    pub intake: Arc<Intake>,
    pub events: Arc<RunEvents>,
    pub sender: Arc<RunSender>,
    pub deadline: Arc<RunDeadline>,
    pub clock: DynClock,
    tasks: Vec<JoinHandle<()>>,
}

pub struct PipelineConfig {
    pub graph_base_url: String,
    pub graph_timeout: Duration,
    pub events: EventsConfig,
    pub sender: SenderConfig,
    /// How often consumers poll when idle, and the scheduler ticks.
    pub poll: Duration,
    /// Concurrent consumers per queue (Lambda's concurrency, locally).
    pub workers: usize,
}

impl Pipeline {
    pub fn new(
        backends: Backends,
        secrets: Arc<Secrets>,
        clock: DynClock,
        config: PipelineConfig,
    ) -> Result<Pipeline, String> {
        let graph = || {
            GraphClient::new(GraphConfig {
                base_url: config.graph_base_url.clone(),
                timeout: config.graph_timeout,
                ..GraphConfig::default()
            })
            .map_err(|e| e.to_string())
        };
        let intake = Arc::new(Intake::new(
            backends.events.clone(),
            Arc::new(secrets.clone()),
            clock.clone(),
            Arc::new(lc_core::ports::NoMetrics),
            IntakeConfig::default(),
        ));
        let events = Arc::new(Events::new(
            backends.table.clone(),
            backends.scheduler.clone(),
            backends.jobs.clone(),
            clock.clone(),
            config.events.clone(),
        ));
        let sender = Arc::new(Sender::new(
            backends.table.clone(),
            graph()?,
            backends.scheduler.clone(),
            secrets.clone(),
            clock.clone(),
            config.sender.clone(),
        ));
        let deadline = Arc::new(Deadline::new(Sender::new(
            backends.table.clone(),
            graph()?,
            backends.scheduler.clone(),
            secrets.clone(),
            clock.clone(),
            config.sender.clone(),
        )));
        let mut p = Pipeline {
            backends,
            intake,
            events,
            sender,
            deadline,
            clock,
            tasks: Vec::new(),
        };
        p.start(config.poll, config.workers);
        Ok(p)
    }

    fn start(&mut self, poll: Duration, workers: usize) {
        for _ in 0..workers.max(1) {
            self.start_consumers(poll);
        }
        self.start_scheduler(poll);
    }

    /// One events consumer and one sender consumer, like one concurrent Lambda instance each.
    fn start_consumers(&mut self, poll: Duration) {
        // Events consumer: like Lambda's SQS event source with ReportBatchItemFailures.
        let (rx, events) = (self.backends.events.clone(), self.events.clone());
        self.tasks.push(tokio::spawn(async move {
            loop {
                let batch = next_batch(rx.as_ref(), poll, "events").await;
                let results = join_all(batch.iter().map(|m| events.process_body(&m.body))).await;
                for (m, r) in batch.iter().zip(results) {
                    match r {
                        Ok(done) => {
                            tracing::info!(outcome = done.name(), "event processed");
                            let _ = rx.delete(&m.receipt_handle).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "event will be retried"),
                    }
                }
            }
        }));
        // Sender consumer.
        let (jobs, dlq, sender) = (
            self.backends.jobs.clone(),
            self.backends.jobs_dlq.clone(),
            self.sender.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            loop {
                let batch = next_batch(jobs.as_ref(), poll, "outbound").await;
                let runs = batch.iter().map(|m| {
                    let (jobs, dlq, sender) = (jobs.clone(), dlq.clone(), sender.clone());
                    async move {
                        let settlement = match serde_json::from_str::<FirstMessageJob>(&m.body) {
                            Ok(job) => match sender.run_job(&job).await {
                                Ok(out) => {
                                    tracing::info!(outcome = out.name(), "job settled");
                                    out.settlement()
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "job will be retried");
                                    return;
                                }
                            },
                            Err(e) => Settlement::DeadLetter {
                                reason: format!("not a first-message job: {e}"),
                            },
                        };
                        let done =
                            matches!(settlement, Settlement::Done | Settlement::DeadLetter { .. });
                        if settle(
                            jobs.as_ref(),
                            dlq.as_ref(),
                            &m.receipt_handle,
                            &m.body,
                            settlement,
                        )
                        .await
                        .is_ok()
                            && done
                        {
                            let _ = jobs.delete(&m.receipt_handle).await;
                        }
                    }
                });
                join_all(runs).await;
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
                    Box::pin(async move {
                        match serde_json::from_str::<DeadlineCheck>(&schedule.input) {
                            Ok(check) => match deadline.check(&check).await {
                                Ok(out) => tracing::info!(outcome = out.name(), "deadline check"),
                                Err(e) => tracing::warn!(error = %e, "deadline check failed"),
                            },
                            Err(e) => tracing::warn!(error = %e, "schedule input is not a check"),
                        }
                    })
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
