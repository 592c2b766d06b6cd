//! A world for tests: the Graph simulator on 127.0.0.1 and the domain on in-memory adapters,
//! with one manual clock. Webhook bodies go in through the real splitter; jobs come out of a
//! real (in-memory) queue and run through the real sender and Graph client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use graph_sim::{SimConfig, SimHandle};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::consumer::Fate;
use lc_core::deadline::Deadline;
use lc_core::lifecycle::optin::FirstMessageJob;
use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts};
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::ports::{Clock, MemoryMetrics, Table};
use lc_core::sending::sender::{JobOutcome, Sender, SenderConfig, SenderPorts};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::{split_body, SplitOutcome};

pub const PAGE: &str = "100";
pub const TOKEN: &str = "sim-page-token";

pub struct World {
    pub sim: SimHandle,
    pub store: Arc<MemoryStore>,
    pub scheduler: Arc<MemoryScheduler>,
    pub jobs: Arc<MemoryQueue>,
    pub clock: ManualClock,
    /// Everything every component of this world counted.
    pub metrics: Arc<MemoryMetrics>,
    /// Everything published to the business.
    pub bus: Arc<MemoryBus>,
    pub events: Lifecycle,
    pub sender: Arc<Sender>,
}

pub fn secrets() -> Arc<Secrets> {
    Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new("app-secret"),
            client_token: Secret::new("client-token"),
        }],
        verify_token: Secret::new("vt"),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new(TOKEN))]),
        ..Default::default()
    })
}

impl World {
    /// A fresh world; `client_timeout_ms` bounds each Graph call.
    pub async fn new(client_timeout_ms: u64) -> World {
        let sim = match graph_sim::start(SimConfig::default().with_page(PAGE, TOKEN)).await {
            Ok(s) => s,
            Err(e) => panic!("the Graph simulator must start on 127.0.0.1: {e}"),
        };
        let clock = ManualClock::at(sim.now_ms());
        let store = Arc::new(MemoryStore::new());
        let scheduler = Arc::new(MemoryScheduler::new());
        let jobs = Arc::new(MemoryQueue::with_clock(
            "outbound",
            Arc::new(clock.clone()),
            30_000,
        ));
        let graph = match GraphClient::new(GraphConfig {
            base_url: sim.base_url(),
            timeout: Duration::from_millis(client_timeout_ms),
            ..GraphConfig::default()
        }) {
            Ok(g) => g,
            Err(e) => panic!("graph client: {e}"),
        };
        let metrics = Arc::new(MemoryMetrics::new());
        let bus = Arc::new(MemoryBus::new());
        World {
            events: Lifecycle::new(
                LifecyclePorts {
                    table: Table::new(store.clone()),
                    scheduler: scheduler.clone(),
                    jobs: jobs.clone(),
                    secrets: Arc::new(secrets()),
                    bus: bus.clone(),
                    clock: Arc::new(clock.clone()),
                    metrics: metrics.clone(),
                },
                LifecycleConfig::default(),
            ),
            sender: Arc::new(Sender::new(
                SenderPorts {
                    table: Table::new(store.clone()),
                    outbound: jobs.clone(),
                    bus: bus.clone(),
                    graph: Arc::new(graph),
                    scheduler: scheduler.clone(),
                    secrets: Arc::new(secrets()),
                    clock: Arc::new(clock.clone()),
                    metrics: metrics.clone(),
                },
                SenderConfig::default(),
            )),
            metrics,
            bus,
            sim,
            store,
            scheduler,
            jobs,
            clock,
        }
    }

    /// A deadline checker sharing this world's state (a second sender over the same store).
    pub fn deadline(&self, client_timeout_ms: u64) -> Deadline {
        let graph = match GraphClient::new(GraphConfig {
            base_url: self.sim.base_url(),
            timeout: Duration::from_millis(client_timeout_ms),
            ..GraphConfig::default()
        }) {
            Ok(g) => g,
            Err(e) => panic!("graph client: {e}"),
        };
        Deadline::new(Sender::new(
            SenderPorts {
                table: Table::new(self.store.clone()),
                outbound: self.jobs.clone(),
                bus: self.bus.clone(),
                graph: Arc::new(graph),
                scheduler: self.scheduler.clone(),
                secrets: Arc::new(secrets()),
                clock: Arc::new(self.clock.clone()),
                metrics: self.metrics.clone(),
            },
            SenderConfig::default(),
        ))
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves our clock and the simulator's together (Meta's window checks use its clock).
    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
        self.sim.advance_clock(ms);
    }

    /// Splits a webhook body and processes every event.
    pub async fn webhook(&self, body: &str) {
        let events = match split_body(body.as_bytes(), self.now()) {
            SplitOutcome::Events(e) => e,
            other => panic!("test body must parse: {other:?}"),
        };
        for e in events {
            if let Err(err) = self.events.process(&e).await {
                panic!("event not processed: {err}");
            }
        }
    }

    /// A Login Connect opt-in now, known to the simulator as Meta would know it.
    pub async fn login_optin(&self, login_id: &str) {
        let now = self.now();
        self.sim.register_login_id(login_id, None, now);
        self.webhook(&optin_body(
            &format!(r#"{{"login_id":"{login_id}"}}"#),
            None,
            now,
        ))
        .await;
    }

    pub fn queued_jobs(&self) -> Vec<FirstMessageJob> {
        self.jobs
            .bodies()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }

    /// Plays the outbound queue like Lambda's event source, moving both clocks a second when
    /// nothing is visible, until it is empty or `max_rounds` pass.
    pub async fn drain(&self, max_rounds: usize) -> (Vec<JobOutcome>, usize) {
        let mut outcomes = Vec::new();
        for round in 0..max_rounds {
            if self.jobs.is_empty() {
                return (outcomes, round);
            }
            let batch = self.jobs.receive(10);
            if batch.is_empty() {
                self.advance(1_000);
                continue;
            }
            for m in batch {
                let Ok(job) = serde_json::from_str::<FirstMessageJob>(&m.body) else {
                    panic!("not a job: {}", m.body);
                };
                let out = match self.sender.run_job(&job).await {
                    Ok(o) => o,
                    Err(e) => panic!("backend failed: {e}"),
                };
                match out.fate() {
                    Fate::Ack | Fate::DeadLetter { .. } => {
                        self.jobs.delete(&m.receipt_handle);
                    }
                    Fate::Retry { after_secs, .. } => {
                        if let Some(secs) = after_secs {
                            self.jobs.change_visibility(&m.receipt_handle, secs);
                        }
                    }
                }
                outcomes.push(out);
            }
        }
        (outcomes, max_rounds)
    }
}

/// A `messaging_optins` webhook body for page [`PAGE`].
pub fn optin_body(optin: &str, sender: Option<&str>, ts: i64) -> String {
    let sender = sender
        .map(|s| format!(r#""sender":{{"id":"{s}"}},"#))
        .unwrap_or_default();
    format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{ts},"messaging":[{{{sender}"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"optin":{optin}}}]}}]}}"#
    )
}
