//! An EventBridge-like bus in memory: it keeps every accepted event in order (what a rule with
//! a queue target would deliver), answers per entry like `PutEvents`, refuses oversized
//! entries as the service does, and can be told to refuse entries or whole calls (tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::bus::{BusEvent, DetailType};
use crate::ports::bus::{EventBus, MAX_ENTRIES, MAX_ENTRY_BYTES};
use crate::ports::{PortError, RequestCounter};

const SERVICE: &str = "events";

#[derive(Default)]
struct State {
    accepted: Vec<BusEvent>,
    /// Accepted so far, including any not kept.
    count: usize,
    /// The same, by detail type.
    counts: HashMap<DetailType, usize>,
    /// Keep only a count, not the events (long load runs).
    count_only: bool,
    /// The next this-many entries are refused, one by one.
    refuse_entries: u32,
    /// The next this-many calls fail whole.
    fail_calls: u32,
}

#[derive(Default)]
pub struct MemoryBus {
    state: Mutex<State>,
    counter: Arc<RequestCounter>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_counter(counter: Arc<RequestCounter>) -> Self {
        MemoryBus {
            state: Mutex::new(State::default()),
            counter,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A bus that counts what it accepts but keeps nothing (load runs of millions).
    pub fn counting(counter: Arc<RequestCounter>) -> Self {
        let bus = Self::with_counter(counter);
        bus.keep_only_counts();
        bus
    }

    /// From now on, counts what it accepts and keeps nothing: a `load` run has no reader of
    /// the events, and keeping them was a tenth of its CPU (the copies, and fresh pages).
    pub fn keep_only_counts(&self) {
        self.lock().count_only = true;
    }

    /// How many events of this detail type were accepted in all.
    pub fn count_of(&self, detail_type: DetailType) -> usize {
        self.lock().counts.get(&detail_type).copied().unwrap_or(0)
    }

    /// Every accepted event, in order.
    pub fn events(&self) -> Vec<BusEvent> {
        self.lock().accepted.clone()
    }

    /// The accepted events from index `from` on (a reader's cursor).
    pub fn since(&self, from: usize) -> Vec<BusEvent> {
        self.lock()
            .accepted
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// How many events were accepted in all.
    pub fn count(&self) -> usize {
        self.lock().count
    }

    /// Takes the accepted events (and forgets them).
    pub fn take(&self) -> Vec<BusEvent> {
        std::mem::take(&mut self.lock().accepted)
    }

    /// The next `n` entries are refused (per-entry failures, as `PutEvents` answers them).
    pub fn refuse_next_entries(&self, n: u32) {
        self.lock().refuse_entries = n;
    }

    /// The next `n` calls fail whole.
    pub fn fail_next_calls(&self, n: u32) {
        self.lock().fail_calls = n;
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<usize>, PortError> {
        if events.len() > MAX_ENTRIES {
            return Err(PortError::Rejected(format!(
                "{} entries in one call; at most {MAX_ENTRIES}",
                events.len()
            )));
        }
        self.counter.incr(SERVICE, "PutEvents");
        tokio::task::yield_now().await;
        let mut st = self.lock();
        if st.fail_calls > 0 {
            st.fail_calls -= 1;
            return Err(PortError::Unavailable("bus unavailable (injected)".into()));
        }
        let mut refused = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let size = e.detail_json().map(|d| d.len()).unwrap_or(usize::MAX);
            if size > MAX_ENTRY_BYTES {
                refused.push(i);
                continue;
            }
            if st.refuse_entries > 0 {
                st.refuse_entries -= 1;
                refused.push(i);
                continue;
            }
            st.count += 1;
            *st.counts.entry(e.detail_type).or_default() += 1;
            if !st.count_only {
                st.accepted.push(e.clone());
            }
        }
        Ok(refused)
    }
}
