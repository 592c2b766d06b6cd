//! `redrive_dlq`: messages of a dead-letter queue back to where they run again, each with the
//! reason it was dead-lettered.
//!
//! | DLQ | what is in it | where it goes | the reason |
//! |---|---|---|---|
//! | events | inbound events the events function failed on 5 times (the redrive policy) | the events queue, body and attributes as they are | SQS moves them without one: the answer gives the receive count and the Logs Insights filter on the message id (the events function logs every retried message with its reason) |
//! | outbound | first-message jobs: dead-lettered by the sender (attribute `reason`), or by the redrive policy after 100 receives (no attribute) | the outbound queue, the job marked `redriven_at_ms` | the `reason` attribute, else the opt-in's `last_error` (the sender records every failed attempt's reason on the opt-in) |
//! | scheduler | deadline checks Scheduler could not deliver or the deadline function failed on | no queue feeds the function: a one-time schedule runs the check again a minute later (same target, same DLQ) | Scheduler's `ERROR_CODE` / `ERROR_MESSAGE` or Lambda's `ErrorCode` / `ErrorMessage` attributes |
//!
//! A message is deleted from the DLQ only after its destination took it; a message the redrive
//! cannot use (not a job, not a check) stays, with the reason in the answer. A message whose
//! delete failed is redriven again by the next run: harmless, every consumer is idempotent.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{optin_hash, Done, Operations};
use crate::lifecycle::optin::{schedule_name, DeadlineCheck, FirstMessageJob, OptinState};
use crate::ports::{OneTimeSchedule, OutMessage, PortError, QueueSender, Received};
use crate::support::time::format_rfc3339_ms;

/// The three dead-letter queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqName {
    Events,
    Outbound,
    Scheduler,
}

impl DlqName {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqName::Events => "events",
            DlqName::Outbound => "outbound",
            DlqName::Scheduler => "scheduler",
        }
    }
}

/// Longest attribute value carried over (SQS allows more; a reason is a sentence).
const ATTRIBUTE_MAX: usize = 256;
/// Long-poll each receive this long: a short poll can answer empty while messages wait.
const RECEIVE_WAIT_MS: u64 = 1_000;

/// What happened to one message.
struct Handled {
    action: String,
    reason: Option<String>,
    reason_from: String,
    detail: Value,
}

impl Operations {
    pub(crate) async fn redrive(
        &self,
        queue: super::DlqName,
        max: usize,
    ) -> Result<Done, PortError> {
        let dlq = match queue {
            DlqName::Events => &self.ports.events_dlq,
            DlqName::Outbound => &self.ports.outbound_dlq,
            DlqName::Scheduler => &self.ports.scheduler_dlq,
        };
        let mut seen = HashSet::new();
        let mut listed = Vec::new();
        let (mut moved, mut kept) = (0usize, 0usize);
        'receive: while listed.len() < max {
            let batch = dlq
                .receive((max - listed.len()).min(10), RECEIVE_WAIT_MS)
                .await?;
            if batch.is_empty() {
                break;
            }
            let mut batch = batch.into_iter();
            while let Some(m) = batch.next() {
                if !seen.insert(m.message_id.clone()) {
                    // Kept earlier in this run and visible again: everything was seen. What
                    // this receive took is left as it was.
                    for rest in std::iter::once(m).chain(batch) {
                        if let Err(e) = dlq.change_visibility(&rest.receipt_handle, 0).await {
                            tracing::warn!(error = %e, "message stays hidden for the queue's visibility timeout");
                        }
                    }
                    break 'receive;
                }
                let h = match queue {
                    DlqName::Events => self.redrive_event(&m).await?,
                    DlqName::Outbound => self.redrive_job(&m).await?,
                    DlqName::Scheduler => self.redrive_check(&m).await?,
                };
                let done = h.action != "kept";
                if done {
                    dlq.delete(&m.receipt_handle).await?;
                    moved += 1;
                } else {
                    // Left as it was: visible again at once for the console (and for this run,
                    // which stops when it sees it again).
                    if let Err(e) = dlq.change_visibility(&m.receipt_handle, 0).await {
                        tracing::warn!(error = %e, "kept message stays hidden for the queue's visibility timeout");
                    }
                    kept += 1;
                }
                tracing::info!(
                    queue = queue.as_str(),
                    message_id = %m.message_id,
                    receive_count = m.receive_count,
                    action = %h.action,
                    reason = h.reason.as_deref().unwrap_or(""),
                    "dead letter redriven"
                );
                let attributes: BTreeMap<&str, &str> = m
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut entry = json!({
                    "message_id": m.message_id,
                    "receive_count": m.receive_count,
                    "action": h.action,
                    "reason": h.reason,
                    "reason_from": h.reason_from,
                    "attributes": attributes,
                });
                if let (Value::Object(e), Value::Object(d)) = (&mut entry, h.detail) {
                    e.extend(d);
                }
                listed.push(entry);
            }
        }
        let outcome = if listed.is_empty() {
            "dlq_empty"
        } else {
            "redriven"
        };
        Ok(Done::answer(json!({
            "outcome": outcome,
            "queue": queue.as_str(),
            "moved": moved,
            "kept": kept,
            "messages": listed,
            "more": if listed.len() >= max {
                "there may be more: run the command again"
            } else {
                "the queue had no more visible messages"
            },
        })))
    }

    /// An inbound event: back to the events queue as it is.
    async fn redrive_event(&self, m: &Received) -> Result<Handled, PortError> {
        self.send_to(self.ports.events_queue.as_ref(), &m.body, &m.attributes)
            .await?;
        let reason = reason_attribute(m);
        let reason_from = if reason.is_some() {
            "attribute".to_string()
        } else {
            format!(
                "none: SQS moved it after its receives (the redrive policy sets no reason); \
                 the events log group has each failed try: filter message_id = '{}' and \
                 message = 'message kept for a retry'",
                m.message_id
            )
        };
        Ok(Handled {
            action: "moved".into(),
            reason,
            reason_from,
            detail: json!({"to": "events queue"}),
        })
    }

    /// A first-message job: back to the outbound queue, marked as redriven so a `failed`
    /// generation is retried while its deadline is ahead.
    async fn redrive_job(&self, m: &Received) -> Result<Handled, PortError> {
        let mut job = match serde_json::from_str::<FirstMessageJob>(&m.body) {
            Ok(job) => job,
            Err(e) => {
                return Ok(Handled {
                    action: "kept".into(),
                    reason: reason_attribute(m),
                    reason_from: "attribute".into(),
                    detail: json!({
                        "why_kept": format!("not a first-message job ({e}): read it, then \
                                             delete it in the SQS console"),
                    }),
                })
            }
        };
        let optin = self.ports.table.optins.get_optin(&job.optin_key).await?;
        let (reason, reason_from) = match (reason_attribute(m), &optin) {
            (Some(r), _) => (Some(r), "attribute".to_string()),
            (None, Some(o)) => (
                o.last_error.clone(),
                "the opt-in's last_error: SQS moved the job at the redrive policy's receive \
                 limit, which sets no reason"
                    .to_string(),
            ),
            (None, None) => (None, "none".to_string()),
        };
        let now = self.now();
        let expect = match &optin {
            None => "done: the opt-in no longer exists".to_string(),
            Some(o) if job.generation.is_some_and(|g| g != o.generation) => {
                "done: a later opt-in generation has its own job".into()
            }
            Some(o) if now >= o.deadline_at_ms => format!(
                "refused: the deadline passed at {}; a missed first message is recorded, \
                 never sent late",
                format_rfc3339_ms(o.deadline_at_ms)
            ),
            Some(o) if o.state == OptinState::Failed => {
                "retry: the failed opt-in is re-opened for one more try".into()
            }
            Some(o) if o.state.is_closed() => {
                format!("done: the opt-in is {}", o.state.as_str())
            }
            Some(_) => "send: the opt-in is still owed its first message".into(),
        };
        if job.sent.is_none() {
            job.redriven_at_ms = Some(now);
        }
        let body =
            serde_json::to_string(&job).map_err(|e| PortError::Rejected(format!("job: {e}")))?;
        let mut attributes = vec![("page_id".to_string(), job.page_id.clone())];
        if let Some(r) = &reason {
            attributes.push(("redriven_reason".into(), truncate(r)));
        }
        self.send_to(self.ports.outbound_queue.as_ref(), &body, &attributes)
            .await?;
        tracing::info!(optin = %optin_hash(&job.optin_key), expect = %expect, "job redriven");
        Ok(Handled {
            action: "moved".into(),
            reason,
            reason_from,
            detail: json!({
                "to": "outbound queue",
                "optin_key": job.optin_key,
                "page_id": job.page_id,
                "state": optin.as_ref().map(|o| o.state.as_str()),
                "deadline_at": optin.as_ref().map(|o| format_rfc3339_ms(o.deadline_at_ms)),
                "expect": expect,
            }),
        })
    }

    /// A deadline check: scheduled again (no queue feeds the deadline function), unless its
    /// opt-in needs no check any more.
    async fn redrive_check(&self, m: &Received) -> Result<Handled, PortError> {
        let reason = error_attributes(m);
        let check = match serde_json::from_str::<DeadlineCheck>(&m.body) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Handled {
                    action: "kept".into(),
                    reason,
                    reason_from: "attributes".into(),
                    detail: json!({
                        "why_kept": format!("not a deadline check ({e}): read it, then \
                                             delete it in the SQS console"),
                    }),
                })
            }
        };
        let optin = self.ports.table.optins.get_optin(&check.optin_key).await?;
        let closed = match &optin {
            None => Some("the opt-in no longer exists".to_string()),
            Some(o) if check.generation.is_some_and(|g| g != o.generation) => {
                Some("a later opt-in generation has its own check".into())
            }
            Some(o) if o.state.is_closed() => Some(format!("the opt-in is {}", o.state.as_str())),
            Some(_) => None,
        };
        if let Some(why) = closed {
            return Ok(Handled {
                action: "discarded".into(),
                reason,
                reason_from: "attributes".into(),
                detail: json!({
                    "optin_key": check.optin_key,
                    "why_discarded": format!("nothing to check: {why}"),
                }),
            });
        }
        let at_ms = self.now() + self.config.recheck_delay_ms;
        let created = self
            .ports
            .scheduler
            .create_schedule(&OneTimeSchedule {
                name: schedule_name(&format!("redrive#{}", m.message_id)),
                at_ms,
                input: m.body.clone(),
            })
            .await?;
        tracing::info!(optin = %optin_hash(&check.optin_key), ?created, "deadline check rescheduled");
        Ok(Handled {
            action: "rescheduled".into(),
            reason,
            reason_from: "attributes".into(),
            detail: json!({
                "optin_key": check.optin_key,
                "check": check.check,
                "runs_at": format_rfc3339_ms(at_ms),
                "expect": "before the deadline the check sends (last chance); after it, it \
                           records the miss. Outcome: the deadline log group, message \
                           'deadline check'",
            }),
        })
    }

    async fn send_to(
        &self,
        queue: &dyn QueueSender,
        body: &str,
        attributes: &[(String, String)],
    ) -> Result<(), PortError> {
        let failed = queue
            .send_batch(&[OutMessage {
                id: "redrive".into(),
                body: body.to_string(),
                attributes: attributes
                    .iter()
                    .take(10)
                    .map(|(k, v)| (k.clone().into(), truncate(v).into()))
                    .collect(),
                delay_secs: 0,
            }])
            .await?;
        match failed.first() {
            None => Ok(()),
            Some(f) => Err(PortError::Unavailable(format!(
                "the destination queue refused the message: {}",
                f.code
            ))),
        }
    }
}

fn reason_attribute(m: &Received) -> Option<String> {
    m.attributes
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.clone())
}

/// Scheduler writes `ERROR_CODE` / `ERROR_MESSAGE`, Lambda's async DLQ `ErrorCode` /
/// `ErrorMessage`.
fn error_attributes(m: &Received) -> Option<String> {
    let get = |names: &[&str]| {
        m.attributes
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone())
    };
    match (
        get(&["ERROR_CODE", "ErrorCode"]),
        get(&["ERROR_MESSAGE", "ErrorMessage"]),
    ) {
        (None, None) => None,
        (code, message) => Some(format!(
            "{}: {}",
            code.unwrap_or_default(),
            message.unwrap_or_default()
        )),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(ATTRIBUTE_MAX).collect()
}
