//! An SQS-like queue in memory: visibility timeouts, receive counts, redrive to a dead-letter
//! queue after `max_receives`, per-entry batch failures, and fault injection for tests.
//!
//! A FIFO queue ([`MemoryQueue::fifo`]) keeps SQS FIFO's semantics: a message is delivered only
//! once every earlier message of its group is deleted (or moved to the dead-letter queue), so a
//! message in flight or waiting out a retry holds its whole group back; several messages of one
//! group may come in one receive, in order; a deduplication id accepted within 5 minutes is
//! accepted again without a second copy; entries without a group and per-message delays are
//! refused, as SQS refuses them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::ports::queue::{Attribute, FIFO_DEDUP_WINDOW_MS};
pub use crate::ports::Received;
use crate::ports::{
    Clock, EntryFailure, GroupedMessage, OutMessage, PortError, QueueReceiver, QueueSender,
    SystemClock, VisibilityControl,
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
    /// FIFO only.
    group: Option<String>,
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
    /// FIFO: deduplication id -> when it was accepted.
    dedup: HashMap<String, i64>,
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
    fifo: bool,
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
            fifo: false,
        }
    }

    /// Makes it a FIFO queue (see the module docs); its dead-letter queue must be one too.
    pub fn fifo(mut self) -> Self {
        self.fifo = true;
        self
    }

    pub fn is_fifo(&self) -> bool {
        self.fifo
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
        self.push_to_group(body, attributes, delay_secs, None);
    }

    fn push_to_group(
        &self,
        body: String,
        attributes: Vec<(String, String)>,
        delay_secs: u32,
        group: Option<String>,
    ) {
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
                group,
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
            if self.fifo {
                // FIFO: a group whose oldest message is not visible (in flight, or waiting out
                // a retry) is held back whole; its visible head and the visible run after it
                // may go. FIFO queues here are small: a scan in send order.
                let mut held: HashSet<&str> = HashSet::new();
                for (id, m) in &st.messages {
                    if picked.len() >= max {
                        break;
                    }
                    match &m.group {
                        Some(g) if held.contains(g.as_str()) => {}
                        Some(g) if m.visible_at_ms > now => {
                            held.insert(g.as_str());
                        }
                        _ if m.visible_at_ms <= now => picked.push(*id),
                        _ => {}
                    }
                }
            }
            for id in st.ready.iter().copied().filter(|_| !self.fifo) {
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
                    group_id: m.group.clone(),
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
                    dlq.push_to_group(m.body, m.attributes, 0, m.group);
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
            target.push_to_group(m.body, m.attributes, 0, m.group);
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
                if self.fifo {
                    // SQS: a FIFO queue needs a MessageGroupId on every entry.
                    failures.push(EntryFailure {
                        id: m.id.clone(),
                        code: "MissingParameter".into(),
                        sender_fault: true,
                    });
                    continue;
                }
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
            self.push(m.body.clone(), owned(&m.attributes), m.delay_secs);
        }
        tokio::task::yield_now().await;
        Ok(failures)
    }

    async fn send_grouped(
        &self,
        messages: &[GroupedMessage],
    ) -> Result<Vec<EntryFailure>, PortError> {
        if !self.fifo {
            return Err(PortError::Rejected(format!(
                "queue {} is not a FIFO queue: it takes no message groups",
                self.name
            )));
        }
        tokio::task::yield_now().await;
        let now = self.clock.now_ms();
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
            st.dedup
                .retain(|_, at| now.saturating_sub(*at) < FIFO_DEDUP_WINDOW_MS);
            for g in messages {
                let invalid = g.message.delay_secs > 0
                    || !fifo_id_ok(&g.group_id)
                    || !fifo_id_ok(&g.dedup_id);
                if invalid {
                    failures.push(EntryFailure {
                        id: g.message.id.clone(),
                        code: "InvalidParameterValue".into(),
                        sender_fault: true,
                    });
                    continue;
                }
                if let QueueFault::RejectEntries { containing, times } = &mut st.fault {
                    if *times > 0 && g.message.body.contains(containing.as_str()) {
                        *times -= 1;
                        failures.push(EntryFailure {
                            id: g.message.id.clone(),
                            code: "InternalError".into(),
                            sender_fault: false,
                        });
                        continue;
                    }
                }
                // A duplicate within the window is accepted, and not stored again.
                if st.dedup.contains_key(&g.dedup_id) {
                    continue;
                }
                st.dedup.insert(g.dedup_id.clone(), now);
                accepted.push(g);
            }
        }
        for g in accepted {
            self.push_to_group(
                g.message.body.clone(),
                owned(&g.message.attributes),
                0,
                Some(g.group_id.clone()),
            );
        }
        tokio::task::yield_now().await;
        Ok(failures)
    }
}

/// SQS's rule for `MessageGroupId` and `MessageDeduplicationId`: 1-128 printable ASCII
/// characters (letters, digits, punctuation; no spaces).
fn fifo_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
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

/// Attributes as a receiver sees them (SQS hands back owned strings).
fn owned(attributes: &[Attribute]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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

    fn grouped(id: &str, body: &str, group: &str, dedup: &str) -> GroupedMessage {
        GroupedMessage {
            message: out(id, body),
            group_id: group.into(),
            dedup_id: dedup.into(),
        }
    }

    fn bodies(got: &[Received]) -> Vec<&str> {
        got.iter().map(|r| r.body.as_str()).collect()
    }

    #[tokio::test]
    async fn fifo_holds_a_group_while_its_head_is_in_flight_or_waiting() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let q = MemoryQueue::with_clock("q.fifo", clock.clone(), 30_000).fifo();
        q.send_grouped(&[
            grouped("1", "a1", "A", "d-a1"),
            grouped("2", "a2", "A", "d-a2"),
            grouped("3", "b1", "B", "d-b1"),
        ])
        .await
        .unwrap();

        let first = q.receive(1);
        assert_eq!(bodies(&first), ["a1"]);
        assert_eq!(first[0].group_id.as_deref(), Some("A"));
        // a1 is in flight: all of A waits; B does not.
        assert_eq!(bodies(&q.receive(10)), ["b1"]);
        assert!(q.receive(10).is_empty());

        // A retry (visibility change) keeps holding the group, even for later messages.
        assert!(q.change_visibility(&first[0].receipt_handle, 5));
        q.send_grouped(&[grouped("4", "a3", "A", "d-a3")])
            .await
            .unwrap();
        clock.0.store(4_999, Ordering::SeqCst);
        assert!(q.receive(10).is_empty());
        clock.0.store(5_000, Ordering::SeqCst);
        // Visible again: the group's run comes in order, in one receive.
        let again = q.receive(10);
        assert_eq!(bodies(&again), ["a1", "a2", "a3"]);
        assert_eq!(again[0].receive_count, 2);
        for r in &again {
            assert!(q.delete(&r.receipt_handle));
        }
    }

    #[tokio::test]
    async fn fifo_deduplicates_within_five_minutes() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let q = MemoryQueue::with_clock("q.fifo", clock.clone(), 30_000).fifo();
        let failed = q
            .send_grouped(&[
                grouped("1", "x", "G", "key-1"),
                grouped("2", "x", "G", "key-1"),
            ])
            .await
            .unwrap();
        assert!(failed.is_empty(), "a duplicate is accepted, not stored");
        assert_eq!(q.len(), 1);
        clock.0.store(FIFO_DEDUP_WINDOW_MS - 1, Ordering::SeqCst);
        q.send_grouped(&[grouped("1", "x", "G", "key-1")])
            .await
            .unwrap();
        assert_eq!(q.len(), 1);
        clock.0.store(FIFO_DEDUP_WINDOW_MS, Ordering::SeqCst);
        q.send_grouped(&[grouped("1", "x", "G", "key-1")])
            .await
            .unwrap();
        assert_eq!(q.len(), 2, "the window is over");
    }

    #[tokio::test]
    async fn fifo_refuses_what_sqs_refuses() {
        let fifo = MemoryQueue::new("q.fifo").fifo();
        let failed = fifo.send_batch(&[out("a", "no group")]).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].sender_fault && failed[0].code == "MissingParameter");
        let mut delayed = grouped("d", "x", "G", "k");
        delayed.message.delay_secs = 5;
        let failed = fifo
            .send_grouped(&[delayed, grouped("s", "x", "has space", "k2")])
            .await
            .unwrap();
        assert_eq!(failed.len(), 2);
        assert!(fifo.is_empty());
        let standard = MemoryQueue::new("q");
        assert!(standard
            .send_grouped(&[grouped("a", "x", "G", "k")])
            .await
            .is_err());
    }

    #[tokio::test]
    async fn fifo_redrive_keeps_the_group_and_lets_it_go_on() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let dlq = Arc::new(MemoryQueue::with_clock("dlq.fifo", clock.clone(), 1000).fifo());
        let q = MemoryQueue::with_clock("q.fifo", clock.clone(), 1000)
            .fifo()
            .with_redrive(1, dlq.clone());
        q.send_grouped(&[
            grouped("1", "poison", "A", "p"),
            grouped("2", "next", "A", "n"),
        ])
        .await
        .unwrap();
        assert_eq!(bodies(&q.receive(1)), ["poison"]);
        clock.0.store(1000, Ordering::SeqCst);
        // The poison message moves to the DLQ; its group goes on with the next one.
        assert_eq!(bodies(&q.receive(10)), ["next"]);
        let dead = dlq.receive(10);
        assert_eq!(bodies(&dead), ["poison"]);
        assert_eq!(dead[0].group_id.as_deref(), Some("A"));
    }
}
