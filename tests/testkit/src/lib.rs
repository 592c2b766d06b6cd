//! A world for tests: the Graph simulator on 127.0.0.1 and the domain on in-memory adapters,
//! with one manual clock. Webhook bodies go in through the real splitter; jobs come out of a
//! real (in-memory) queue and run through the real sender and Graph client.
//!
//! [`World::new`] runs the simulator with `allow_repeat_login_id_sends` on: a second message
//! to a `login_id` or `user_ref` is accepted and recorded instead of refused by the simulator
//! (10/2018278), so an exactly-once test sees our own duplicate instead of Meta hiding it.
//! Such tests assert on *attempts* ([`World::attempts_for`]). [`World::strict`] keeps Meta's
//! own refusal, for the tests of what Meta does with a second message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use graph_sim::{Attempt, AttemptOutcome, SimConfig, SimHandle};
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

/// The sender settings of a test world: the defaults, with this world's one sender owning a
/// Page's whole rate (the deployed share divides it among every sending process).
pub fn sender_config() -> SenderConfig {
    let mut c = SenderConfig::default();
    c.pacing.instances = 1;
    c
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
    /// A fresh world; `client_timeout_ms` bounds each Graph call. The simulator accepts a
    /// repeated `login_id`/`user_ref` message (see the module doc): count attempts.
    pub async fn new(client_timeout_ms: u64) -> World {
        World::with_sim(client_timeout_ms, |c| SimConfig {
            allow_repeat_login_id_sends: true,
            ..c
        })
        .await
    }

    /// A world whose simulator refuses a second `login_id`/`user_ref` message as Meta does.
    pub async fn strict(client_timeout_ms: u64) -> World {
        World::with_sim(client_timeout_ms, |c| c).await
    }

    /// A world with the simulator configured by `configure` (Page [`PAGE`] already set).
    pub async fn with_sim(
        client_timeout_ms: u64,
        configure: impl FnOnce(SimConfig) -> SimConfig,
    ) -> World {
        let config = configure(SimConfig::default().with_page(PAGE, TOKEN));
        let sim = match graph_sim::start(config).await {
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
            timeout: Duration::from_millis(client_timeout_ms),
            ..GraphConfig::at(sim.base_url())
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
                sender_config(),
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
            timeout: Duration::from_millis(client_timeout_ms),
            ..GraphConfig::at(self.sim.base_url())
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
            sender_config(),
        ))
    }

    /// An events function over this world that sends a new opt-in's first message itself
    /// through this world's sender ([`Lifecycle::with_inline_sender`]).
    pub fn inline_events(&self) -> Lifecycle {
        Lifecycle::new(
            LifecyclePorts {
                table: Table::new(self.store.clone()),
                scheduler: self.scheduler.clone(),
                jobs: self.jobs.clone(),
                secrets: Arc::new(secrets()),
                bus: self.bus.clone(),
                clock: Arc::new(self.clock.clone()),
                metrics: self.metrics.clone(),
            },
            LifecycleConfig::default(),
        )
        .with_inline_sender(self.sender.clone())
    }

    /// A Login Connect opt-in now as one inbound event (registered with the simulator), to
    /// process (and redeliver) by hand.
    pub fn login_optin_event(&self, login_id: &str) -> lc_core::webhook::InboundEvent {
        self.login_optin_event_with_ref(login_id, None)
    }

    /// [`World::login_optin_event`] with the opt-in's `ref` (the business's parameter).
    pub fn login_optin_event_with_ref(
        &self,
        login_id: &str,
        reference: Option<&str>,
    ) -> lc_core::webhook::InboundEvent {
        self.sim.register_login_id(login_id, None, self.now());
        let optin = match reference {
            Some(r) => serde_json::json!({"login_id": login_id, "ref": r}),
            None => serde_json::json!({"login_id": login_id}),
        };
        self.optin_event(&optin, None)
    }

    /// Any opt-in now (`optin` is the webhook's `optin` object, `sender` its sender id) as one
    /// inbound event; the caller registers the recipient with the simulator.
    pub fn optin_event(
        &self,
        optin: &serde_json::Value,
        sender: Option<&str>,
    ) -> lc_core::webhook::InboundEvent {
        let now = self.now();
        let body = optin_body(&optin.to_string(), sender, now);
        match split_body(body.as_bytes(), now) {
            SplitOutcome::Events(mut e) if e.len() == 1 => e.remove(0),
            other => panic!("one opt-in event: {other:?}"),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Send attempts the simulator saw for this recipient value (any outcome).
    pub fn attempts_for(&self, recipient_id: &str) -> usize {
        self.sim.attempts_for(recipient_id)
    }

    /// Per recipient value: what the simulator saw (see [`Tally`]).
    pub fn tally(&self) -> BTreeMap<String, Tally> {
        tally(&self.sim.attempts())
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
                    // As `consumer::settle` does with a requeue: a fresh copy, the old deleted.
                    Fate::Defer { after_secs, .. } => {
                        self.jobs.push(m.body.clone(), Vec::new(), after_secs);
                        self.jobs.delete(&m.receipt_handle);
                    }
                }
                outcomes.push(out);
            }
        }
        (outcomes, max_rounds)
    }
}

impl World {
    /// Plays the outbound queue through [`Sender::handle_message`], the per-message function
    /// Lambda's event source calls: a backend error keeps the message for the queue's
    /// visibility timeout (it is not a test failure), a timed retry changes its visibility.
    /// Moves both clocks a second when nothing is visible; stops when the queue is empty or
    /// after `max_rounds`. Returns every fate in order.
    pub async fn pump(&self, max_rounds: usize) -> Vec<Fate> {
        let mut fates = Vec::new();
        for _ in 0..max_rounds {
            if self.jobs.is_empty() {
                break;
            }
            let batch = self.jobs.receive(10);
            if batch.is_empty() {
                self.advance(1_000);
                continue;
            }
            for m in batch {
                let fate = self.sender.handle_message(&m.body).await;
                match &fate {
                    Fate::Ack | Fate::DeadLetter { .. } => {
                        self.jobs.delete(&m.receipt_handle);
                    }
                    Fate::Retry {
                        after_secs: Some(secs),
                        ..
                    } => {
                        self.jobs.change_visibility(&m.receipt_handle, *secs);
                    }
                    Fate::Retry { .. } => {}
                    Fate::Defer { after_secs, .. } => {
                        self.jobs.push(m.body.clone(), Vec::new(), *after_secs);
                        self.jobs.delete(&m.receipt_handle);
                    }
                }
                fates.push(fate);
            }
        }
        fates
    }
}

/// What the simulator saw for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every send attempt, whatever its outcome.
    pub attempts: usize,
    /// Attempts Meta accepted (with repeat mode on, a duplicate is accepted too).
    pub accepted: usize,
    /// Accepted attempts whose answer the simulator lost (5xx or timeout after acceptance).
    pub accepted_lost: usize,
    /// Attempts made after one whose acceptance we were told: never allowed.
    pub after_known_accept: usize,
}

/// Groups attempts by recipient value.
pub fn tally(attempts: &[Attempt]) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    let mut answered: BTreeMap<String, bool> = BTreeMap::new();
    for a in attempts {
        let Some(id) = a.recipient_id.clone() else {
            continue;
        };
        let t = out.entry(id.clone()).or_default();
        t.attempts += 1;
        let known = answered.entry(id).or_default();
        if *known {
            t.after_known_accept += 1;
        }
        if matches!(a.outcome, AttemptOutcome::Accepted { .. }) {
            t.accepted += 1;
            if a.lost_answer.is_some() {
                t.accepted_lost += 1;
            } else {
                *known = true;
            }
        }
    }
    out
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
