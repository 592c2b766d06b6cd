//! An SQS-like queue in memory: visibility timeouts, receive counts, redrive to a dead-letter
//! queue after `max_receives`, per-entry batch failures, and fault injection for tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

pub use crate::ports::Received;
use crate::ports::{
    Clock, EntryFailure, OutMessage, PortError, QueueReceiver, QueueSender, SystemClock,
    VisibilityControl,
};

/// Failures a test can ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueueFault {
    #[default]
    None,
    /// The next `n` batch calls fail as a whole (like a throttled or unreachable SQS).
    FailCalls(u32),
    /// Entries whose body contains this text are refused (`sender_fault` false), `n` times.
    RejectEntries { containing: String, times: u32 },
}

#[derive(Debug)]
struct Stored {
    body: String,
    attributes: Vec<(String, String)>,
    visible_at_ms: i64,
    /// When it was sent (SQS's `ApproximateAgeOfOldestMessage` counts from here).
    sent_at_ms: i64,
    receive_count: u32,
    receipt: Option<String>,
}

/// The messages and two indexes, so a receive, delete or visibility change costs a few map
/// operations however deep the queue is (a simulated day holds hundreds of thousands): every
/// message is either `ready` (it was visible when last looked at) or `waiting` until its
/// `visible_at_ms`, and `receipts` names the message each live receipt handle belongs to.
#[derive(Debug, Default)]
struct State {
    next_id: u64,
    next_receipt: u64,
    messages: BTreeMap<u64, Stored>,
    ready: BTreeSet<u64>,
    waiting: BTreeSet<(i64, u64)>,
    receipts: HashMap<String, u64>,
    /// Received and hidden, not deleted: SQS's in-flight count (a retry delayed with a
    /// visibility change stays in flight).
    in_flight: usize,
    fault: QueueFault,
    calls: u64,
}

impl State {
    /// Hides received message `id` until `at_ms` (it is in flight until then).
    fn wait_until(&mut self, id: u64, at_ms: i64) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if self.ready.remove(&id) {
            self.in_flight += 1;
        } else {
            self.waiting.remove(&(m.visible_at_ms, id));
        }
        m.visible_at_ms = at_ms;
        self.waiting.insert((at_ms, id));
    }

    /// Takes message `id` out of the queue and its indexes.
    fn remove(&mut self, id: u64) -> Option<Stored> {
        let m = self.messages.remove(&id)?;
        let was_waiting = !self.ready.remove(&id) && self.waiting.remove(&(m.visible_at_ms, id));
        if was_waiting && m.receipt.is_some() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if let Some(r) = &m.receipt {
            self.receipts.remove(r);
        }
        Some(m)
    }

    /// Moves every message whose time has come to `ready`.
    fn wake(&mut self, now: i64) {
        while let Some(&(at, id)) = self.waiting.first() {
            if at > now {
                break;
            }
            self.waiting.pop_first();
            self.ready.insert(id);
            if self.messages.get(&id).is_some_and(|m| m.receipt.is_some()) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }
}

pub struct MemoryQueue {
    name: String,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    visibility_timeout_ms: i64,
    max_receives: Option<(u32, Arc<MemoryQueue>)>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.name)
            .finish()
    }
}

impl MemoryQueue {
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_clock(name, Arc::new(SystemClock), 30_000)
    }

    pub fn with_clock(name: impl Into<String>, clock: Arc<dyn Clock>, visibility_ms: i64) -> Self {
        MemoryQueue {
            name: name.into(),
            state: Mutex::new(State::default()),
            clock,
            visibility_timeout_ms: visibility_ms,
            max_receives: None,
        }
    }

    /// After `max_receives` deliveries without a delete, a message moves to `dlq`.
    pub fn with_redrive(mut self, max_receives: u32, dlq: Arc<MemoryQueue>) -> Self {
        self.max_receives = Some((max_receives, dlq));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters for a test double; keep going with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_fault(&self, fault: QueueFault) {
        self.lock().fault = fault;
    }

    /// Number of `send_batch` calls so far.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Messages in the queue, visible or in flight.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every body currently held, in send order (for assertions and the local runner).
    pub fn bodies(&self) -> Vec<String> {
        self.lock()
            .messages
            .values()
            .map(|m| m.body.clone())
            .collect()
    }

    /// Every message's attributes, in send order (for assertions).
    pub fn attributes(&self) -> Vec<Vec<(String, String)>> {
        self.lock()
            .messages
            .values()
            .map(|m| m.attributes.clone())
            .collect()
    }

    pub fn push(&self, body: String, attributes: Vec<(String, String)>, delay_secs: u32) {
        let now = self.clock.now_ms();
        let visible_at_ms = now + i64::from(delay_secs) * 1000;
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.messages.insert(
            id,
            Stored {
                body,
                attributes,
                visible_at_ms,
                sent_at_ms: now,
                receive_count: 0,
                receipt: None,
            },
        );
        st.waiting.insert((visible_at_ms, id));
    }

    /// Receives up to `max` visible messages (oldest sent first), hiding them for the
    /// visibility timeout.
    pub fn receive(&self, max: usize) -> Vec<Received> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            st.wake(now);
            let mut picked = Vec::new();
            let mut skipped = 0;
            for id in st.ready.iter().copied() {
                if picked.len() >= max {
                    break;
                }
                match st.messages.get(&id) {
                    // Only when the clock was moved back since it was woken.
                    Some(m) if m.visible_at_ms > now => skipped += 1,
                    Some(_) => picked.push(id),
                    None => {}
                }
                if skipped > 10_000 {
                    break;
                }
            }
            for id in picked {
                st.next_receipt += 1;
                let receipt = format!("{}-{}-{}", self.name, id, st.next_receipt);
                let Some(m) = st.messages.get(&id) else {
                    continue;
                };
                if let Some((limit, _)) = &self.max_receives {
                    if m.receive_count >= *limit {
                        dead.push(id);
                        continue;
                    }
                }
                st.wait_until(id, now + self.visibility_timeout_ms);
                let Some(m) = st.messages.get_mut(&id) else {
                    continue;
                };
                m.receive_count += 1;
                let old = m.receipt.replace(receipt.clone());
                let received = Received {
                    message_id: id.to_string(),
                    receipt_handle: receipt.clone(),
                    body: m.body.clone(),
                    attributes: m.attributes.clone(),
                    receive_count: m.receive_count,
                };
                if let Some(old) = old {
                    st.receipts.remove(&old);
                }
                st.receipts.insert(receipt, id);
                out.push(received);
            }
            let moved: Vec<Stored> = dead.iter().filter_map(|id| st.remove(*id)).collect();
            drop(st);
            if let Some((_, dlq)) = &self.max_receives {
                for m in moved {
                    dlq.push(m.body, m.attributes, 0);
                }
            }
        }
        out
    }

    /// Deletes a received message; a stale receipt (message received again since) is ignored,
    /// as SQS does after the visibility timeout.
    pub fn delete(&self, receipt_handle: &str) -> bool {
        let mut st = self.lock();
        match st.receipts.get(receipt_handle).copied() {
            Some(id) => st.remove(id).is_some(),
            None => false,
        }
    }

    /// Makes a received message visible again after `secs` (0 = now).
    pub fn change_visibility(&self, receipt_handle: &str, secs: u32) -> bool {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        match st.receipts.get(receipt_handle).copied() {
            Some(id) => {
                st.wait_until(id, now + i64::from(secs) * 1000);
                true
            }
            None => false,
        }
    }

    /// Messages received and not deleted whose visibility timeout has not run out (SQS's
    /// `ApproximateNumberOfMessagesNotVisible`; a standard queue allows 120,000).
    pub fn in_flight(&self) -> usize {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.wake(now);
        st.in_flight
    }

    /// When the oldest message still in the queue was sent (visible or in flight).
    pub fn oldest_sent_at_ms(&self) -> Option<i64> {
        self.lock().messages.values().next().map(|m| m.sent_at_ms)
    }

    /// The earliest time a message is or becomes visible (`None`: the queue is empty). A
    /// driver of simulated time can skip to it.
    pub fn next_visible_at_ms(&self) -> Option<i64> {
        let st = self.lock();
        let ready = st
            .ready
            .first()
            .and_then(|id| st.messages.get(id))
            .map(|m| m.visible_at_ms);
        let waiting = st.waiting.first().map(|(at, _)| *at);
        match (ready, waiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves every message back to the source queue (the console's "start DLQ redrive").
    pub fn redrive_to(&self, target: &MemoryQueue) -> usize {
        let moved: Vec<Stored> = {
            let mut st = self.lock();
            st.ready.clear();
            st.waiting.clear();
            st.receipts.clear();
            st.in_flight = 0;
            std::mem::take(&mut st.messages).into_values().collect()
        };
        let n = moved.len();
        for m in moved {
            target.push(m.body, m.attributes, 0);
        }
        n
    }
}

#[async_trait]
impl QueueSender for MemoryQueue {
    async fn send_batch(&self, messages: &[OutMessage]) -> Result<Vec<EntryFailure>, PortError> {
        // Like a request over the network, each call lets other tasks run before and after it.
        tokio::task::yield_now().await;
        let mut failures = Vec::new();
        let mut accepted = Vec::new();
        {
            let mut st = self.lock();
            st.calls += 1;
            if let QueueFault::FailCalls(n) = &mut st.fault {
                if *n > 0 {
                    *n -= 1;
                    return Err(PortError::Unavailable("injected: queue unavailable".into()));
                }
            }
            for m in messages {
                if let QueueFault::RejectEntries { containing, times } = &mut st.fault {
                    if *times > 0 && m.body.contains(containing.as_str()) {
                        *times -= 1;
                        failures.push(EntryFailure {
                            id: m.id.clone(),
                            code: "InternalError".into(),
                            sender_fault: false,
                        });
                        continue;
                    }
                }
                accepted.push(m);
            }
        }
        for m in accepted {
            self.push(m.body.clone(), m.attributes.clone(), m.delay_secs);
        }
        tokio::task::yield_now().await;
        Ok(failures)
    }
}

#[async_trait]
impl VisibilityControl for MemoryQueue {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        tokio::task::yield_now().await;
        let changed = MemoryQueue::change_visibility(self, receipt_handle, delay_secs);
        tokio::task::yield_now().await;
        if changed {
            Ok(())
        } else {
            Err(PortError::Rejected(
                "receipt handle is no longer valid".into(),
            ))
        }
    }
}

#[async_trait]
impl QueueReceiver for MemoryQueue {
    async fn receive(&self, max: usize, wait_ms: u64) -> Result<Vec<Received>, PortError> {
        // Long polling, in small steps so a message that appears is picked up quickly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        tokio::task::yield_now().await;
        loop {
            let got = MemoryQueue::receive(self, max);
            if !got.is_empty() || std::time::Instant::now() >= deadline {
                tokio::task::yield_now().await;
                return Ok(got);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), PortError> {
        tokio::task::yield_now().await;
        MemoryQueue::delete(self, receipt_handle);
        tokio::task::yield_now().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn out(id: &str, body: &str) -> OutMessage {
        OutMessage {
            id: id.into(),
            body: body.into(),
            attributes: vec![],
            delay_secs: 0,
        }
    }

    #[tokio::test]
    async fn visibility_redrive_and_delete() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let dlq = Arc::new(MemoryQueue::with_clock("dlq", clock.clone(), 1000));
        let q = MemoryQueue::with_clock("q", clock.clone(), 1000).with_redrive(2, dlq.clone());
        q.send_batch(&[out("a", "one"), out("b", "two")])
            .await
            .unwrap();

        let first = q.receive(10);
        assert_eq!(first.len(), 2);
        assert!(q.receive(10).is_empty(), "in flight messages are hidden");
        assert!(q.delete(&first[0].receipt_handle));

        clock.0.store(1000, Ordering::SeqCst);
        let second = q.receive(10);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].receive_count, 2);
        assert!(!q.delete(&first[1].receipt_handle), "stale receipt");

        clock.0.store(2000, Ordering::SeqCst);
        assert!(q.receive(10).is_empty(), "third receive redrives instead");
        assert_eq!(dlq.bodies(), vec!["two".to_string()]);
        assert!(q.is_empty());
        assert_eq!(dlq.redrive_to(&q), 1);
        assert_eq!(q.receive(10).len(), 1);
    }

    #[tokio::test]
    async fn faults() {
        let q = MemoryQueue::new("q");
        q.set_fault(QueueFault::FailCalls(1));
        assert!(q.send_batch(&[out("a", "x")]).await.is_err());
        q.set_fault(QueueFault::RejectEntries {
            containing: "bad".into(),
            times: 1,
        });
        let failed = q
            .send_batch(&[out("a", "ok"), out("b", "bad")])
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "b");
        assert_eq!(q.bodies(), vec!["ok".to_string()]);
    }

    #[tokio::test]
    async fn change_visibility_delays() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let q = MemoryQueue::with_clock("q", clock.clone(), 30_000);
        q.push("m".into(), vec![], 0);
        let r = q.receive(1);
        assert!(q.change_visibility(&r[0].receipt_handle, 5));
        clock.0.store(4_999, Ordering::SeqCst);
        assert!(q.receive(1).is_empty());
        clock.0.store(5_000, Ordering::SeqCst);
        assert_eq!(q.receive(1).len(), 1);
    }
}
