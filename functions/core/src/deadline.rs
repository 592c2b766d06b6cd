//! The deadline check: EventBridge Scheduler fires it once per opt-in, `margin` before the
//! 24-hour deadline. It keeps the promise (a last-chance send through the sender's own code
//! path) or reports loudly that it was broken. It never sends at or after the deadline.
//!
//! The same function runs the confirm check ([`CONFIRM_CHECK`]) of a generation the login
//! callback started, an hour after the login: if no `messaging_optins` webhook confirmed it
//! by then, the derived `login_id` may not be Meta's, and that is counted
//! (`LoginOptinUnconfirmed`) and logged instead of staying silent. It never sends.

use crate::bus::{self, BusEvent, DetailType, PersonIds};
use crate::lifecycle::optin::{
    DeadlineCheck, FirstMessageJob, Optin, OptinSource, OptinState, CONFIRM_CHECK,
};
use crate::ports::{Metric, OneTimeSchedule};
use crate::sending::sender::{JobError, JobOutcome, Sender};
use crate::support::privacy::hash_id;

/// Suffix of the re-armed check at the deadline itself.
pub const FINAL_SUFFIX: &str = "-f";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineOutcome {
    /// The input was not a deadline check: logged, nothing retried.
    InvalidInput,
    /// No such opt-in: logged, nothing retried.
    Unknown,
    /// Already sent, answered, closed: the schedule should have been gone. Counted.
    NothingToDo { state: OptinState },
    /// Still unsent before the deadline: a last-chance send was tried.
    LastChance { outcome: JobOutcome, rearmed: bool },
    /// A send holds a live claim: a final check at the deadline was armed.
    InFlight { rearmed: bool },
    /// The deadline passed unsent: recorded as `expired`.
    Missed { reason: String },
    /// Confirm check: the webhook confirmed the login-started generation.
    LoginConfirmed,
    /// Confirm check: no webhook confirmed the login-started generation. Counted and logged.
    LoginUnconfirmed,
}

impl DeadlineOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            DeadlineOutcome::InvalidInput => "invalid_input",
            DeadlineOutcome::Unknown => "unknown",
            DeadlineOutcome::NothingToDo { .. } => "nothing_to_do",
            DeadlineOutcome::LastChance { .. } => "last_chance",
            DeadlineOutcome::InFlight { .. } => "in_flight",
            DeadlineOutcome::Missed { .. } => "missed",
            DeadlineOutcome::LoginConfirmed => "login_confirmed",
            DeadlineOutcome::LoginUnconfirmed => "login_unconfirmed",
        }
    }
}

pub struct Deadline {
    sender: Sender,
}

impl Deadline {
    pub fn new(sender: Sender) -> Self {
        Deadline { sender }
    }

    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The deadline function's per-invocation function: the schedule's JSON input in, the
    /// outcome out. Input that is not a check is logged and answered (retrying cannot fix it);
    /// an `Err` is a backend failure the invoker should retry.
    pub async fn handle_input(&self, input: &serde_json::Value) -> Result<DeadlineOutcome, String> {
        let check: DeadlineCheck = match serde_json::from_value(input.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "deadline input is not a DeadlineCheck");
                return Ok(DeadlineOutcome::InvalidInput);
            }
        };
        let outcome = self.check(&check).await.map_err(|e| e.to_string())?;
        tracing::info!(outcome = outcome.name(), detail = ?outcome, "deadline check");
        Ok(outcome)
    }

    pub async fn check(&self, input: &DeadlineCheck) -> Result<DeadlineOutcome, JobError> {
        if input.check == CONFIRM_CHECK {
            return self.confirm_check(input).await;
        }
        let store = self.sender.table().optins.as_ref();
        let metrics = self.sender.metrics();
        let now = self.sender.now_ms();
        let key = input.optin_key.as_str();
        let Some(optin) = store.get_optin(key).await? else {
            tracing::warn!(optin = %hash_id(key), "deadline check for an unknown opt-in");
            return Ok(DeadlineOutcome::Unknown);
        };
        let stale = input.generation.is_some_and(|g| g != optin.generation);
        if optin.state.is_closed() || stale {
            // A check of an earlier generation finds a later one: not its business.
            metrics.record(Metric::DeadlineCheckNoop);
            tracing::info!(
                state = optin.state.as_str(),
                "deadline check: nothing to do"
            );
            return Ok(DeadlineOutcome::NothingToDo { state: optin.state });
        }
        if now >= optin.deadline_at_ms {
            let reason = optin
                .last_error
                .clone()
                .map(|e| format!("no first message before the deadline; last error: {e}"))
                .unwrap_or_else(|| "no first message before the deadline".into());
            return Ok(match store.expire(key, now, &reason).await? {
                Some(_) => {
                    self.announce(
                        &optin,
                        DetailType::FirstMessageMissed,
                        "missed",
                        now,
                        serde_json::json!({"generation": optin.generation, "reason": reason}),
                    )
                    .await?;
                    metrics.record(Metric::FirstMessageMissed);
                    crate::funnel::record(
                        metrics,
                        crate::funnel::FunnelStage::Missed,
                        optin.entry_point,
                        &optin.page_id,
                    );
                    tracing::error!(
                        optin = %hash_id(key),
                        page = %optin.page_id,
                        reason = %reason,
                        "first message missed"
                    );
                    DeadlineOutcome::Missed { reason }
                }
                None => match store.get_optin(key).await? {
                    // A send claimed just before the deadline still holds its lease: look
                    // again when it ends.
                    Some(o) if o.state == OptinState::Sending => {
                        metrics.record(Metric::FirstMessageAtRisk);
                        DeadlineOutcome::InFlight {
                            rearmed: self.rearm(&o, o.lease_until_ms).await,
                        }
                    }
                    Some(o) => DeadlineOutcome::NothingToDo { state: o.state },
                    None => DeadlineOutcome::Unknown,
                },
            });
        }

        self.announce(
            &optin,
            DetailType::FirstMessageAtRisk,
            &format!("at_risk:{}", input.check),
            now,
            serde_json::json!({
                "generation": optin.generation,
                "state": optin.state.as_str(),
                "deadline_at_ms": optin.deadline_at_ms,
                "left_ms": optin.deadline_at_ms - now,
            }),
        )
        .await?;
        metrics.record(Metric::FirstMessageAtRisk);
        tracing::warn!(
            optin = %hash_id(key),
            page = %optin.page_id,
            state = optin.state.as_str(),
            left_ms = optin.deadline_at_ms - now,
            "first message at risk: last-chance send"
        );
        if optin.state == OptinState::Sending && optin.lease_until_ms > now {
            let rearmed = self.rearm(&optin, optin.deadline_at_ms).await;
            return Ok(DeadlineOutcome::InFlight { rearmed });
        }
        let job = FirstMessageJob::for_generation(&optin, now);
        let outcome = self.sender.run_job(&job).await?;
        let settled = matches!(
            outcome,
            JobOutcome::Sent { .. }
                | JobOutcome::AlreadyDone { .. }
                | JobOutcome::Recorded
                | JobOutcome::Declined
                | JobOutcome::Refused { .. }
                | JobOutcome::Unreachable { .. }
                | JobOutcome::BadRequest { .. }
                | JobOutcome::Expired { .. }
        );
        let rearmed = if settled {
            false
        } else {
            self.rearm(&optin, optin.deadline_at_ms).await
        };
        Ok(DeadlineOutcome::LastChance { outcome, rearmed })
    }

    /// Publishes one event about this generation (its id names the generation and `what`).
    async fn announce(
        &self,
        optin: &Optin,
        detail_type: DetailType,
        what: &str,
        now: i64,
        mut payload: serde_json::Value,
    ) -> Result<(), JobError> {
        bus::about_optin(
            &mut payload,
            optin.entry_point,
            optin.reference.as_ref().map(|r| r.raw.as_str()),
        );
        let event = BusEvent::new(
            detail_type,
            &format!("{}#g{}:{what}", optin.key(), optin.generation),
            now,
            if optin.object == "instagram" {
                "instagram"
            } else {
                "messenger"
            },
            &optin.page_id,
            PersonIds {
                external_id: optin.external_id.clone(),
                ..PersonIds::of(&optin.recipient)
            },
            payload,
        );
        Ok(bus::publish_all(self.sender.bus(), &[event]).await?)
    }

    /// Did a webhook confirm the login-started generation? Reads only; never sends.
    async fn confirm_check(&self, input: &DeadlineCheck) -> Result<DeadlineOutcome, JobError> {
        let key = input.optin_key.as_str();
        let Some(optin) = self.sender.table().optins.get_optin(key).await? else {
            tracing::warn!(optin = %hash_id(key), "confirm check for an unknown opt-in");
            return Ok(DeadlineOutcome::Unknown);
        };
        let generation = input.generation.unwrap_or(optin.generation);
        match optin.confirmation_of(generation) {
            Some((OptinSource::Login, None)) => {
                self.sender.metrics().record(Metric::LoginOptinUnconfirmed);
                tracing::warn!(
                    optin = %hash_id(key),
                    page = %optin.page_id,
                    generation,
                    state = optin.state.as_str(),
                    "login opt-in not confirmed by a messaging_optins webhook: the derived \
                     login_id may not be Meta's"
                );
                Ok(DeadlineOutcome::LoginUnconfirmed)
            }
            Some((OptinSource::Login, Some(_))) => Ok(DeadlineOutcome::LoginConfirmed),
            // Not a login-started generation: nothing to confirm.
            Some(_) => Ok(DeadlineOutcome::NothingToDo { state: optin.state }),
            None => {
                tracing::warn!(
                    optin = %hash_id(key),
                    generation,
                    "confirm check for a generation no longer on record"
                );
                Ok(DeadlineOutcome::Unknown)
            }
        }
    }

    /// Arms the final check at `at_ms`. A failure is logged: the outbound job keeps retrying
    /// until the deadline anyway, and the sender expires it when it sees the deadline pass.
    async fn rearm(&self, optin: &Optin, at_ms: i64) -> bool {
        let key = optin.key();
        let key = key.as_str();
        let name = format!("{}{FINAL_SUFFIX}", optin.schedule_name);
        let input = match serde_json::to_string(&DeadlineCheck {
            v: 1,
            optin_key: key.to_string(),
            generation: Some(optin.generation),
            check: "final".into(),
        }) {
            Ok(i) => i,
            Err(_) => return false,
        };
        let s = OneTimeSchedule {
            name,
            at_ms: at_ms + 1_000,
            input,
        };
        match self.sender.scheduler().create_schedule(&s).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, optin = %hash_id(key), "could not arm the final deadline check");
                false
            }
        }
    }
}
