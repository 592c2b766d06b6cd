//! Counts requests to paid backends (DynamoDB, SQS, Scheduler, ...) so cost per opt-in is a
//! measured figure. Adapters share one counter; tests and the load tool read it.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct RequestCounter {
    /// `(service, quantity, count)`: a score of distinct keys, scanned in place so that counting
    /// a request (every store, queue and bus call of a load run) allocates nothing.
    counts: Mutex<Vec<(String, String, u64)>>,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request, e.g. `("dynamodb", "UpdateItem")`.
    pub fn incr(&self, service: &str, operation: &str) {
        self.add(service, operation, 1);
    }

    /// Adds `n` to a billed quantity that is not one request each, e.g.
    /// `("events", "PutEventsEntries64K", 3)`: the 64 KB chunks of the entries of one call.
    pub fn add(&self, service: &str, quantity: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match c.iter_mut().find(|(s, q, _)| s == service && q == quantity) {
            Some((_, _, count)) => *count += n,
            None => c.push((service.to_string(), quantity.to_string(), n)),
        }
    }

    /// `service.Operation` -> count.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, q, n)| (format!("{s}.{q}"), *n))
            .collect()
    }

    /// Total requests to one service.
    pub fn total(&self, service: &str) -> u64 {
        let prefix = format!("{service}.");
        self.snapshot()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| *v)
            .sum()
    }

    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
