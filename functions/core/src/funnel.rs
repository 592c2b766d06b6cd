//! The conversion funnel: how many opt-ins got their first message, how many people replied
//! within 24 hours and within 7 days, how many opted out, how many deadlines were missed.
//!
//! # Why not a metric per Page
//! Every distinct set of dimension values is a separate CloudWatch custom metric, billed
//! monthly, and Page ids are unbounded (a deployment may serve hundreds). So the EMF metric
//! [`Metric::Funnel`] has two small fixed dimensions (`stage`, `entry_point`: 6 x 3 series per
//! function), enough for the dashboard's conversion rates and alarms; and the steps are also
//! structured log lines (`message = "funnel"`, a field set to 1 per step taken, `entry_point`,
//! `page_id`), which CloudWatch Logs Insights sums by Page on demand at no standing cost (the
//! dashboard's funnel-by-Page table). A Page id is the business's, not a person's: it may be
//! logged. Steps taken together are one line: an opt-in whose first message the events function
//! sent at once is `"optin":1,"first_message_sent":1`, the one INFO line of the common path.
//!
//! # When each step counts
//! - `optin`: a new opt-in generation was recorded (the events function).
//! - `first_message_sent`: Meta accepted the first message (the sender, also on the deadline's
//!   last-chance send).
//! - `reply_24h` / `reply_7d`: the person's first reply linked to the opt-in (`prior_message`),
//!   within 24 hours / 7 days of the opt-in (a 24-hour reply counts in both). Counted once per
//!   opt-in: on the reply that gave it its PSID. Send-to-Messenger replies carry no
//!   `prior_message`, so they are not attributed.
//! - `opted_out`: the first message found the person unreachable (blocked, messages off).
//! - `missed`: the deadline passed without a first message.

use crate::lifecycle::optin::{EntryPoint, FirstMessageJob, DAY_MS};
use crate::ports::{Metric, Metrics};
use crate::sending::sender::JobOutcome;
use crate::webhook::IdentityKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunnelStage {
    Optin,
    FirstMessageSent,
    Reply24h,
    Reply7d,
    OptedOut,
    Missed,
}

impl FunnelStage {
    pub fn as_str(self) -> &'static str {
        match self {
            FunnelStage::Optin => "optin",
            FunnelStage::FirstMessageSent => "first_message_sent",
            FunnelStage::Reply24h => "reply_24h",
            FunnelStage::Reply7d => "reply_7d",
            FunnelStage::OptedOut => "opted_out",
            FunnelStage::Missed => "missed",
        }
    }
}

/// Records one step: the metric (by entry point) and the log line (by Page).
pub fn record(metrics: &dyn Metrics, stage: FunnelStage, entry_point: EntryPoint, page_id: &str) {
    record_steps(metrics, &[stage], entry_point, page_id);
}

/// Records steps taken together: a metric each, one log line for all of them.
pub fn record_steps(
    metrics: &dyn Metrics,
    stages: &[FunnelStage],
    entry_point: EntryPoint,
    page_id: &str,
) {
    if stages.is_empty() {
        return;
    }
    for stage in stages {
        metrics.record(Metric::Funnel {
            stage: *stage,
            entry_point,
        });
    }
    // A step not taken is no field at all (`None` records nothing): the table sums each.
    let took = |s: FunnelStage| stages.contains(&s).then_some(1u8);
    tracing::info!(
        optin = took(FunnelStage::Optin),
        first_message_sent = took(FunnelStage::FirstMessageSent),
        reply_24h = took(FunnelStage::Reply24h),
        reply_7d = took(FunnelStage::Reply7d),
        opted_out = took(FunnelStage::OptedOut),
        missed = took(FunnelStage::Missed),
        entry_point = entry_point.as_str(),
        page_id,
        "funnel"
    );
}

/// The entry point of an opt-in's recipient: a `login_id` is Login Connect, a `user_ref` the
/// checkbox plugin, a PSID / IGSID Send to Messenger (the opt-in key says as much).
pub fn entry_point_of(kind: IdentityKind) -> EntryPoint {
    match kind {
        IdentityKind::LoginId => EntryPoint::LoginConnect,
        IdentityKind::UserRef => EntryPoint::Checkbox,
        IdentityKind::Psid | IdentityKind::Igsid => EntryPoint::SendToMessenger,
    }
}

/// The step a first-message job's outcome is, if any (where `FirstMessageSent` and
/// `FirstMessageMissed` are counted, so each is counted once per opt-in like those).
/// `earlier`: steps of the same opt-in not logged yet (the inline send's `optin`), written in
/// the same line.
pub fn after_job(
    metrics: &dyn Metrics,
    job: &FirstMessageJob,
    outcome: &JobOutcome,
    earlier: &[FunnelStage],
) {
    let stage = match outcome {
        JobOutcome::Sent { .. } => Some(FunnelStage::FirstMessageSent),
        JobOutcome::Unreachable { .. } => Some(FunnelStage::OptedOut),
        JobOutcome::Expired { .. } => Some(FunnelStage::Missed),
        _ => None,
    };
    let stages: Vec<FunnelStage> = earlier.iter().copied().chain(stage).collect();
    record_steps(
        metrics,
        &stages,
        entry_point_of(job.recipient.kind),
        &job.page_id,
    );
}

/// The reply steps a first reply `after_ms` after the opt-in reaches.
pub fn reply_stages(after_ms: i64) -> &'static [FunnelStage] {
    if after_ms <= DAY_MS {
        &[FunnelStage::Reply24h, FunnelStage::Reply7d]
    } else if after_ms <= 7 * DAY_MS {
        &[FunnelStage::Reply7d]
    } else {
        &[]
    }
}

/// A first reply to an opt-in, to be counted once its events are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstReply {
    pub entry_point: EntryPoint,
    pub page_id: String,
    pub after_ms: i64,
}

impl FirstReply {
    pub fn record(&self, metrics: &dyn Metrics) {
        record_steps(
            metrics,
            reply_stages(self.after_ms),
            self.entry_point,
            &self.page_id,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_windows_are_inclusive() {
        assert_eq!(
            reply_stages(0),
            &[FunnelStage::Reply24h, FunnelStage::Reply7d]
        );
        assert_eq!(reply_stages(DAY_MS).len(), 2);
        assert_eq!(reply_stages(DAY_MS + 1), &[FunnelStage::Reply7d]);
        assert_eq!(reply_stages(7 * DAY_MS), &[FunnelStage::Reply7d]);
        assert!(reply_stages(7 * DAY_MS + 1).is_empty());
    }
}
