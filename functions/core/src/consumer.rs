//! One queue message in, its fate out: the contract between each consumer's per-message
//! function (events, sender) and whoever polls the queue — Lambda's SQS event source when
//! deployed, the local runner's poller otherwise. Both call the same per-message function and
//! the same [`settle`], so the demo runs exactly what ships.

use crate::ports::queue::MAX_VISIBILITY_SECS;
use crate::ports::{OutMessage, QueueSender, VisibilityControl};

/// What should happen to a message after its consumer ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Done, one way or another: delete it.
    Ack,
    /// Keep it; deliver it again after `after_secs` (or the queue's visibility timeout when
    /// `None`). Redelivery counts towards the queue's `maxReceiveCount`.
    Retry {
        after_secs: Option<u32>,
        reason: String,
    },
    /// Not a failure, a wait (a paused Page, pacing): queue a fresh copy delayed by
    /// `after_secs` (at most SQS's 15 minutes; a longer wait defers again) and delete this one,
    /// so however long the wait, it spends no receives towards `maxReceiveCount` and never
    /// reaches the DLQ for having waited. Only for a standard queue with a sender to requeue
    /// through ([`Settling::requeue`]); otherwise, and if the copy is refused, it is a `Retry`.
    Defer { after_secs: u32, reason: String },
    /// Move it to the dead-letter queue with the reason as an attribute, then delete it.
    DeadLetter { reason: String },
}

impl Fate {
    pub fn retry(reason: impl Into<String>) -> Fate {
        Fate::Retry {
            after_secs: None,
            reason: reason.into(),
        }
    }

    /// Retry after `ms` milliseconds, rounded up to whole seconds within SQS's range.
    pub fn retry_after_ms(ms: i64, reason: impl Into<String>) -> Fate {
        let secs = ms.max(0).saturating_add(999) / 1000;
        Fate::Retry {
            after_secs: Some(
                u32::try_from(secs)
                    .unwrap_or(u32::MAX)
                    .clamp(1, MAX_VISIBILITY_SECS),
            ),
            reason: reason.into(),
        }
    }

    /// Defer by `ms` milliseconds, rounded up to whole seconds within SQS's delay range.
    pub fn defer_after_ms(ms: i64, reason: impl Into<String>) -> Fate {
        let secs = ms.max(0).saturating_add(999) / 1000;
        Fate::Defer {
            after_secs: u32::try_from(secs)
                .unwrap_or(u32::MAX)
                .clamp(1, MAX_DELAY_SECS),
            reason: reason.into(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fate::Ack => "ack",
            Fate::Retry { .. } => "retry",
            Fate::Defer { .. } => "defer",
            Fate::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// What the poller must do once [`settle`] ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Delete the message (Lambda: leave it out of `batchItemFailures`).
    Delete,
    /// Leave it on the queue (Lambda: report it in `batchItemFailures`).
    Keep { reason: String },
}

/// The queues a consumer settles through. Either may be absent (the events function needs
/// neither): a timed retry then waits the queue's visibility timeout, and a dead letter stays on
/// the queue until its redrive policy moves it.
#[derive(Clone, Copy, Default)]
pub struct Settling<'a> {
    pub queue: Option<&'a dyn VisibilityControl>,
    pub dead_letters: Option<&'a dyn QueueSender>,
    /// The same queue, to send a deferred message's copy to (standard queues only: a copy
    /// would lose its place in a FIFO group).
    pub requeue: Option<&'a dyn QueueSender>,
}

/// SQS's ceiling for a message's delay.
pub const MAX_DELAY_SECS: u32 = 15 * 60;

/// Applies a fate to one received message: extends its visibility for a retry, or copies it
/// to the dead-letter queue. A dead letter the DLQ refused stays on the queue, so nothing is lost.
pub async fn settle(fate: Fate, receipt: &str, body: &str, via: Settling<'_>) -> Settled {
    match fate {
        Fate::Ack => Settled::Delete,
        Fate::Defer { after_secs, reason } => {
            if let Some(requeue) = via.requeue {
                let copy = copy_of(
                    "deferred",
                    body,
                    "deferred",
                    &reason,
                    after_secs.min(MAX_DELAY_SECS),
                );
                match requeue.send_batch(&[copy]).await {
                    Ok(failed) if failed.is_empty() => return Settled::Delete,
                    Ok(_) => tracing::warn!("deferred copy refused; kept as a retry"),
                    Err(e) => {
                        tracing::warn!(error = %e, "deferred copy not queued; kept as a retry")
                    }
                }
            }
            keep(Some(after_secs), reason, receipt, via).await
        }
        Fate::Retry { after_secs, reason } => keep(after_secs, reason, receipt, via).await,
        Fate::DeadLetter { reason } => {
            let Some(dead_letters) = via.dead_letters else {
                tracing::error!(reason = %reason, "no dead-letter queue wired; the redrive policy will move it");
                return Settled::Keep { reason };
            };
            let sent = dead_letters
                .send_batch(&[copy_of("dlq", body, "reason", &reason, 0)])
                .await;
            match sent {
                Ok(failed) if failed.is_empty() => Settled::Delete,
                Ok(_) => Settled::Keep {
                    reason: "dead-letter queue refused the message".into(),
                },
                Err(e) => Settled::Keep {
                    reason: format!("dead-letter queue unavailable: {e}"),
                },
            }
        }
    }
}

/// A received message sent on again (deferred, or to the DLQ) with why as its one attribute.
fn copy_of(
    id: &'static str,
    body: &str,
    attribute: &'static str,
    why: &str,
    delay_secs: u32,
) -> OutMessage {
    OutMessage {
        id: id.into(),
        body: body.to_string(),
        attributes: vec![(attribute.into(), truncate(why, 256).into())],
        delay_secs,
    }
}

/// Leaves a message on the queue, visible again after `after_secs` (else the queue's default).
async fn keep(
    after_secs: Option<u32>,
    reason: String,
    receipt: &str,
    via: Settling<'_>,
) -> Settled {
    if let (Some(secs), Some(queue)) = (after_secs, via.queue) {
        if let Err(e) = queue.change_visibility(receipt, secs).await {
            tracing::warn!(error = %e, "visibility not changed; the queue default applies");
        }
    }
    Settled::Keep { reason }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::memory::{ManualClock, MemoryQueue, QueueFault};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_deferred_message_is_a_fresh_delayed_copy_or_else_kept() {
        let clock = ManualClock::at(1_000_000);
        let q = MemoryQueue::with_clock("jobs", Arc::new(clock.clone()), 30_000);
        q.push("job".into(), Vec::new(), 0);
        let m = q.receive(1).remove(0);
        let via = Settling {
            queue: Some(&q),
            dead_letters: None,
            requeue: Some(&q),
        };
        let fate = Fate::defer_after_ms(3_600_000, "paused");
        assert_eq!(
            fate,
            Fate::Defer {
                after_secs: MAX_DELAY_SECS,
                reason: "paused".into()
            }
        );
        assert_eq!(
            settle(fate, &m.receipt_handle, "job", via).await,
            Settled::Delete
        );
        q.delete(&m.receipt_handle);
        assert_eq!(q.len(), 1, "the copy");
        assert!(q.receive(1).is_empty(), "delayed");
        clock.advance(900_000);
        let copy = q.receive(1);
        assert_eq!(copy.len(), 1);
        assert_eq!(copy[0].body, "job");

        // The copy refused: kept, as a timed retry.
        q.set_fault(QueueFault::FailCalls(1));
        let kept = settle(
            Fate::defer_after_ms(1_000, "pacing"),
            &copy[0].receipt_handle,
            "job",
            via,
        )
        .await;
        assert!(matches!(kept, Settled::Keep { .. }), "{kept:?}");
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn retry_delays_round_up_and_stay_in_range() {
        let secs = |ms| match Fate::retry_after_ms(ms, "x") {
            Fate::Retry { after_secs, .. } => after_secs,
            _ => None,
        };
        assert_eq!(secs(1), Some(1));
        assert_eq!(secs(0), Some(1));
        assert_eq!(secs(1_001), Some(2));
        assert_eq!(secs(i64::MAX), Some(MAX_VISIBILITY_SECS));
    }
}
