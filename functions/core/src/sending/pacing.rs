//! Global per-Page pacing without a shared counter.
//!
//! Meta accepts about 300 text sends per second per Page (2026). Every process that sends
//! (sender, deadline and, with inline sends, events instances) gets an equal share of that
//! rate: with `instances` the most that can run at once (the functions' reserved concurrency,
//! summed), one instance sends at most `rate * safety / instances` times to one Page in any
//! sliding second. Summed over every instance that can exist, the Page's rate is never
//! exceeded, whatever the load, and it costs no request per send (a shared counter in DynamoDB
//! would cost a write per message).
//!
//! Deadlines win: a share keeps [`PacingConfig::urgent_reserve`] of itself for sends whose
//! deadline is near ([`Priority::Urgent`]), so a backlog of fresh opt-ins can never use the
//! slots a last-chance send needs.
//!
//! Meta's usage headers (see [`crate::sending::usage`]) still slow a Page further when they say
//! so; this is the floor under them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How urgent a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Normal,
    /// The deadline is near: may use the reserve.
    Urgent,
}

#[derive(Debug, Clone)]
pub struct PacingConfig {
    /// Meta's per-Page send rate (per second).
    pub page_rate_per_sec: u32,
    /// Fraction of Meta's rate we aim for (headroom for other apps on the Page, clock skew).
    pub safety: f64,
    /// The most sending processes that can run at once (reserved concurrency, summed).
    pub instances: u32,
    /// Fraction of each share kept for urgent sends.
    pub urgent_reserve: f64,
    /// A send is urgent when its deadline is closer than this.
    pub urgent_within_ms: i64,
    /// Added to the one-second window: two sends admitted a second apart here can arrive
    /// closer together at Meta (connection set-up, scheduling), and Meta counts arrivals.
    pub window_margin_ms: i64,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            page_rate_per_sec: 300,
            safety: 0.9,
            instances: 50,
            urgent_reserve: 0.2,
            urgent_within_ms: 2 * 60 * 60 * 1000,
            window_margin_ms: 100,
        }
    }
}

impl PacingConfig {
    /// Sends one instance may make to one Page per window, and the window's length: at least
    /// one send per window, the window stretched when the share is under one per second.
    fn window(&self) -> (usize, i64) {
        let share =
            f64::from(self.page_rate_per_sec) * self.safety / f64::from(self.instances.max(1));
        let margin = self.window_margin_ms.max(0);
        if share >= 1.0 {
            (share.floor() as usize, 1_000 + margin)
        } else if share > 0.0 {
            (1, (1_000.0 / share).ceil() as i64 + margin)
        } else {
            (1, i64::MAX / 4)
        }
    }

    pub fn priority(&self, deadline_at_ms: i64, now_ms: i64) -> Priority {
        if deadline_at_ms - now_ms <= self.urgent_within_ms {
            Priority::Urgent
        } else {
            Priority::Normal
        }
    }
}

/// One process's pacing state: per Page, the times of its recent sends.
pub struct Pacer {
    config: PacingConfig,
    sends: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Pacer {
    pub fn new(config: PacingConfig) -> Self {
        Pacer {
            config,
            sends: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &PacingConfig {
        &self.config
    }

    /// Takes a send slot for `page_id` now, or says how long to wait for one. A taken slot is
    /// spent even if the send then fails (Meta counts attempts).
    pub fn admit(&self, page_id: &str, priority: Priority, now_ms: i64) -> Result<(), i64> {
        let (per_window, window_ms) = self.config.window();
        let allowed = match priority {
            Priority::Urgent => per_window,
            // Never below one slot: a share of one is all normal sends have.
            Priority::Normal => ((per_window as f64) * (1.0 - self.config.urgent_reserve))
                .floor()
                .max(1.0) as usize,
        };
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        let log = sends.entry(page_id.to_string()).or_default();
        while log.front().is_some_and(|t| *t <= now_ms - window_ms) {
            log.pop_front();
        }
        if log.len() < allowed {
            log.push_back(now_ms);
            return Ok(());
        }
        // The slot frees when the oldest send that keeps us at the limit leaves the window.
        let blocking = log.get(log.len() - allowed).copied().unwrap_or(now_ms);
        Err((blocking + window_ms - now_ms).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rate: u32, instances: u32) -> Pacer {
        Pacer::new(PacingConfig {
            page_rate_per_sec: rate,
            safety: 1.0,
            instances,
            urgent_reserve: 0.2,
            urgent_within_ms: 1_000,
            window_margin_ms: 0,
        })
    }

    #[test]
    fn a_share_is_never_exceeded_in_any_sliding_second() {
        let p = pacer(300, 10); // 30 per second per instance; 24 for normal sends
        let mut sent = Vec::new();
        for ms in 0..5_000 {
            if p.admit("P", Priority::Normal, ms).is_ok() {
                sent.push(ms);
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < t + 1_000).count();
            assert!(in_window <= 24, "{in_window} sends in the second from {t}");
        }
        assert!(
            sent.len() >= 24 * 5 - 1,
            "the share is used: {}",
            sent.len()
        );
    }

    #[test]
    fn urgent_sends_keep_their_reserve() {
        let p = pacer(300, 10);
        for _ in 0..24 {
            assert!(p.admit("P", Priority::Normal, 0).is_ok());
        }
        assert!(
            p.admit("P", Priority::Normal, 0).is_err(),
            "normal share spent"
        );
        for _ in 0..6 {
            assert!(
                p.admit("P", Priority::Urgent, 0).is_ok(),
                "the reserve is there"
            );
        }
        let wait = p.admit("P", Priority::Urgent, 0).unwrap_err();
        assert_eq!(wait, 1_000);
        assert!(p.admit("Q", Priority::Normal, 0).is_ok(), "Pages are apart");
    }

    #[test]
    fn a_share_under_one_per_second_stretches_the_window() {
        let p = pacer(10, 40); // a quarter send per second: one per 4 s
        assert!(p.admit("P", Priority::Normal, 0).is_ok());
        assert_eq!(p.admit("P", Priority::Normal, 1).unwrap_err(), 3_999);
        assert!(p.admit("P", Priority::Normal, 4_000).is_ok());
    }
}
