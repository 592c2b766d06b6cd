//! The operations function: what an on-call engineer does from the Lambda console, as a small
//! set of typed commands, and the sweeps its schedules run.
//!
//! Each command is one JSON event (`{"command": "pause_page", ...}`), saved as a shareable test
//! event by the template, so an action is: open the function, pick the event, *Test*. Every
//! command
//!
//! - is **idempotent**: running it twice does what running it once did (a paused Page is not
//!   paused again, a moved message is not moved twice, reads change nothing);
//! - is **logged with who ran it**: the [`Caller`] the invocation knows (the account and the
//!   Lambda request id; the IAM principal of a console *Test* is not in the Lambda context, it
//!   is in CloudTrail's `Invoke` data event for that request id);
//! - is **published on the event bus** as an `OperatorCommand` event (plus `PagePaused` /
//!   `PageResumed` with `by: "operator"` when a Page changes), after what it changed is
//!   durable. The scheduled `sweep` (every minute, read-only) is not published.
//!
//! Input that is not a valid command is answered with `ok: false` and the reason, not an error:
//! the function's error metric (and its alarm) is kept for backends that fail.

pub mod redrive;
pub mod show;
pub mod status;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bus::{self, BusEvent, DetailType, PersonIds};
use crate::ports::{
    Clock, EventBus, GraphApi, Metrics, PortError, Queue, QueueSender, Scheduler, SecretSource,
    Table,
};
use crate::support::privacy::hash_id;

pub use redrive::DlqName;

/// Who ran a command, as far as the invocation can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The AWS account the function runs in (from its ARN): a console *Test* is made by a
    /// principal of an account allowed to invoke it, normally this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The Lambda request id. CloudTrail records the IAM principal of a console *Test* in the
    /// `Invoke` data event with this request id (when the trail logs Lambda data events).
    pub request_id: String,
    /// A Cognito identity id: only callers through the AWS mobile SDKs have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// The commands. `command` names the variant; unknown fields are refused (a typo must not
/// silently fall back to a default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// No first message goes out from the Page until it is resumed; jobs are kept.
    PausePage { page_id: String, reason: String },
    /// Lets the Page send again. A Page paused by Meta's policy block is resumed by Meta's
    /// `unblock` event; `force: true` overrides.
    ResumePage {
        page_id: String,
        #[serde(default)]
        force: bool,
    },
    /// Asks the events function to replay up to `limit` quarantined records.
    ReplayQuarantine {
        #[serde(default = "default_replay_limit")]
        limit: usize,
    },
    /// Moves up to `max` messages of a dead-letter queue back to where they run again, listing
    /// each one's reason.
    RedriveDlq {
        queue: DlqName,
        #[serde(default = "default_redrive_max")]
        max: usize,
    },
    /// Everything stored about one person of a Page.
    ShowPerson { page_id: String, psid: String },
    /// A Page's settings, pause and token.
    ShowPage { page_id: String },
    /// `debug_token` on every configured Page token (the daily schedule runs it too).
    CheckPageTokens {},
    /// The gauges: Pages paused now, the oldest first messages still owed (the schedule runs
    /// it every minute).
    Sweep {},
}

fn default_replay_limit() -> usize {
    100
}

fn default_redrive_max() -> usize {
    10
}

/// The most one invocation replays (the events function replays them within its timeout).
pub const MAX_REPLAY: usize = 100;
/// The most messages one invocation redrives (within the function's timeout).
pub const MAX_REDRIVE: usize = 100;

impl Command {
    /// Parses and checks an event. The error says what to fix, for the console.
    pub fn parse(input: &Value) -> Result<Command, String> {
        let cmd: Command = serde_json::from_value(input.clone()).map_err(|e| {
            format!(
                "not a command ({e}); expected {{\"command\": one of {}, ...}}",
                Command::NAMES.join(", ")
            )
        })?;
        cmd.validate()?;
        Ok(cmd)
    }

    /// Every command name.
    pub const NAMES: [&'static str; 8] = [
        "pause_page",
        "resume_page",
        "replay_quarantine",
        "redrive_dlq",
        "show_person",
        "show_page",
        "check_page_tokens",
        "sweep",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Command::PausePage { .. } => "pause_page",
            Command::ResumePage { .. } => "resume_page",
            Command::ReplayQuarantine { .. } => "replay_quarantine",
            Command::RedriveDlq { .. } => "redrive_dlq",
            Command::ShowPerson { .. } => "show_person",
            Command::ShowPage { .. } => "show_page",
            Command::CheckPageTokens {} => "check_page_tokens",
            Command::Sweep {} => "sweep",
        }
    }

    /// The Page the command is about, if any.
    pub fn page_id(&self) -> Option<&str> {
        match self {
            Command::PausePage { page_id, .. }
            | Command::ResumePage { page_id, .. }
            | Command::ShowPerson { page_id, .. }
            | Command::ShowPage { page_id } => Some(page_id),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(page) = self.page_id() {
            numeric_id("page_id", page)?;
        }
        match self {
            Command::PausePage { reason, .. } => {
                let r = reason.trim();
                if r.is_empty() || r.starts_with('<') || r.chars().count() > 500 {
                    return Err("reason: say why, in at most 500 characters (it is shown \
                                with the pause)"
                        .into());
                }
            }
            Command::ShowPerson { psid, .. } => numeric_id("psid", psid)?,
            Command::ReplayQuarantine { limit } if !(1..=MAX_REPLAY).contains(limit) => {
                return Err(format!("limit: 1 to {MAX_REPLAY}"));
            }
            Command::RedriveDlq { max, .. } if !(1..=MAX_REDRIVE).contains(max) => {
                return Err(format!("max: 1 to {MAX_REDRIVE}"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Page ids and PSIDs are numbers: a saved event still holding its `<placeholder>` is refused.
fn numeric_id(field: &str, v: &str) -> Result<(), String> {
    if (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{field}: the numeric id (edit the saved event and replace its placeholder)"
        ))
    }
}

/// The ports the operations work through.
#[derive(Clone)]
pub struct OpsPorts {
    pub table: Table,
    pub bus: Arc<dyn EventBus>,
    /// The events queue: the replay command, and where the events DLQ is redriven.
    pub events_queue: Arc<dyn QueueSender>,
    /// The outbound queue: where the outbound DLQ is redriven.
    pub outbound_queue: Arc<dyn QueueSender>,
    /// The dead-letter queues: received, deleted once moved, made visible again when kept.
    pub events_dlq: Arc<dyn Queue>,
    pub outbound_dlq: Arc<dyn Queue>,
    pub scheduler_dlq: Arc<dyn Queue>,
    /// Deadline checks: a check from the scheduler DLQ is scheduled again.
    pub scheduler: Arc<dyn Scheduler>,
    pub secrets: Arc<dyn SecretSource>,
    pub graph: Arc<dyn GraphApi>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// The sweep lists (and logs) at most this many owed first messages.
    pub unsent_listed: usize,
    /// An owed first message this old is logged by the sweep as at risk.
    pub at_risk_after_ms: i64,
    /// A deadline check taken from the scheduler DLQ runs again this long after the redrive.
    pub recheck_delay_ms: i64,
    /// At most this many paused Pages are listed.
    pub paused_listed: usize,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            unsent_listed: 20,
            at_risk_after_ms: 10 * 60 * 1000,
            recheck_delay_ms: 60 * 1000,
            paused_listed: 100,
        }
    }
}

/// What a command handler hands back: the answer, and the events its changes publish.
pub(crate) struct Done {
    pub answer: Value,
    pub events: Vec<BusEvent>,
}

impl Done {
    pub(crate) fn answer(answer: Value) -> Done {
        Done {
            answer,
            events: Vec::new(),
        }
    }
}

pub struct Operations {
    pub(crate) ports: OpsPorts,
    pub(crate) config: OpsConfig,
}

/// The reason prefix of an operator's pause (the functions' own pauses name their cause).
pub const OPERATOR_REASON_PREFIX: &str = "operator: ";
/// The reason prefix of Meta's policy block (written by the events function).
pub const POLICY_BLOCK_PREFIX: &str = "policy_enforcement block";

impl Operations {
    pub fn new(ports: OpsPorts, config: OpsConfig) -> Self {
        Operations { ports, config }
    }

    pub(crate) fn now(&self) -> i64 {
        self.ports.clock.now_ms()
    }

    /// The function's handler: one event in, the answer out. `Err` only when a backend
    /// failed (the invocation fails, Lambda's error metric counts it); nothing is half-done
    /// in a way a second run would not finish.
    pub async fn handle(&self, input: &Value, caller: &Caller) -> Result<Value, PortError> {
        let cmd = match Command::parse(input) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(
                    account = caller.account.as_deref().unwrap_or("unknown"),
                    identity = caller.identity.as_deref().unwrap_or("none"),
                    error = %error,
                    "operator command refused"
                );
                return Ok(json!({"ok": false, "error": error}));
            }
        };
        let name = cmd.name();
        if !matches!(cmd, Command::Sweep {}) {
            tracing::info!(
                command = name,
                page = cmd.page_id().unwrap_or(""),
                account = caller.account.as_deref().unwrap_or("unknown"),
                identity = caller.identity.as_deref().unwrap_or("none"),
                caller_in = "CloudTrail Invoke data event with this function_request_id",
                "operator command"
            );
        }
        let done = match &cmd {
            Command::PausePage { page_id, reason } => self.pause(page_id, reason, caller).await?,
            Command::ResumePage { page_id, force } => self.resume(page_id, *force, caller).await?,
            Command::ReplayQuarantine { limit } => self.replay(*limit).await?,
            Command::RedriveDlq { queue, max } => self.redrive(*queue, *max).await?,
            Command::ShowPerson { page_id, psid } => self.show_person(page_id, psid).await?,
            Command::ShowPage { page_id } => self.show_page(page_id).await?,
            Command::CheckPageTokens {} => self.check_page_tokens(true).await?,
            Command::Sweep {} => self.sweep().await?,
        };
        let mut answer = done.answer;
        if let Value::Object(map) = &mut answer {
            map.insert("ok".into(), json!(true));
            map.insert("command".into(), json!(name));
            map.insert("caller".into(), json!(caller));
        }
        if matches!(cmd, Command::Sweep {}) {
            return Ok(answer);
        }
        let mut events = done.events;
        events.push(self.command_event(&cmd, input, &answer, caller));
        bus::publish_all(self.ports.bus.as_ref(), &events).await?;
        let outcome = answer
            .get("outcome")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        tracing::info!(command = name, outcome, "operator command done");
        Ok(answer)
    }

    /// The audit event of a command: who, what, the outcome. Its id is the request id's, so a
    /// retried publish of the same invocation keeps it.
    fn command_event(
        &self,
        cmd: &Command,
        input: &Value,
        answer: &Value,
        caller: &Caller,
    ) -> BusEvent {
        let person = match cmd {
            Command::ShowPerson { psid, .. } => PersonIds {
                psid: Some(psid.clone()),
                ..PersonIds::default()
            },
            _ => PersonIds::default(),
        };
        BusEvent::new(
            DetailType::OperatorCommand,
            &format!("operator:{}", caller.request_id),
            self.now(),
            "messenger",
            cmd.page_id().unwrap_or(""),
            person,
            json!({
                "command": cmd.name(),
                "input": input,
                "outcome": answer.get("outcome").cloned().unwrap_or(Value::Null),
                "by": "operator",
                "caller": caller,
            }),
        )
    }

    async fn pause(&self, page_id: &str, reason: &str, caller: &Caller) -> Result<Done, PortError> {
        let now = self.now();
        if let Some(p) = self.ports.table.pages.get_page(page_id).await? {
            if p.paused {
                return Ok(Done::answer(json!({
                    "outcome": "already_paused",
                    "page_id": page_id,
                    "paused_reason": p.paused_reason,
                    "paused_at": p.paused_at_ms.map(crate::support::time::format_rfc3339_ms),
                })));
            }
        }
        let reason = format!("{OPERATOR_REASON_PREFIX}{}", reason.trim());
        if !self
            .ports
            .table
            .pages
            .set_paused(page_id, Some(&reason), now)
            .await?
        {
            return Ok(Done::answer(json!({
                "outcome": "not_applied",
                "page_id": page_id,
                "why": "a newer pause or resume event decided the Page's state; run show_page",
            })));
        }
        tracing::warn!(page = %page_id, reason = %reason, "page paused by an operator");
        Ok(Done {
            answer: json!({
                "outcome": "paused",
                "page_id": page_id,
                "paused_reason": reason,
                "paused_at": crate::support::time::format_rfc3339_ms(now),
                "note": "jobs of this Page are kept and re-checked every 15 minutes; each \
                         opt-in's 24-hour deadline keeps running",
            }),
            events: vec![BusEvent::new(
                DetailType::PagePaused,
                &format!("pause:{page_id}:{now}"),
                now,
                "messenger",
                page_id,
                PersonIds::default(),
                json!({"reason": reason, "by": "operator", "caller": caller}),
            )],
        })
    }

    async fn resume(&self, page_id: &str, force: bool, caller: &Caller) -> Result<Done, PortError> {
        let now = self.now();
        let page = self.ports.table.pages.get_page(page_id).await?;
        let Some(p) = page.filter(|p| p.paused) else {
            return Ok(Done::answer(json!({
                "outcome": "not_paused",
                "page_id": page_id,
            })));
        };
        let reason = p.paused_reason.clone().unwrap_or_default();
        if reason.starts_with(POLICY_BLOCK_PREFIX) && !force {
            return Ok(Done::answer(json!({
                "outcome": "refused",
                "page_id": page_id,
                "paused_reason": reason,
                "why": "paused by Meta's policy enforcement block: Meta's unblock event \
                        resumes it. Resolve it with Meta first; \"force\": true overrides",
            })));
        }
        if !self
            .ports
            .table
            .pages
            .set_paused(page_id, None, now)
            .await?
        {
            return Ok(Done::answer(json!({
                "outcome": "not_applied",
                "page_id": page_id,
                "why": "a newer pause or resume event decided the Page's state; run show_page",
            })));
        }
        tracing::warn!(page = %page_id, was = %reason, "page resumed by an operator");
        Ok(Done {
            answer: json!({
                "outcome": "resumed",
                "page_id": page_id,
                "was_paused_for": reason,
                "note": "waiting jobs go out at their next 15-minute recheck, if their \
                         deadline has not passed",
            }),
            events: vec![BusEvent::new(
                DetailType::PageResumed,
                &format!("resume:{page_id}:{now}"),
                now,
                "messenger",
                page_id,
                PersonIds::default(),
                json!({"by": "operator", "was_paused_for": reason, "caller": caller}),
            )],
        })
    }

    /// The replay itself runs in the events function (it has the lifecycle's rights): this
    /// lists what is quarantined and queues the command for it.
    async fn replay(&self, limit: usize) -> Result<Done, PortError> {
        let records = self.ports.table.quarantine.list_quarantined(limit).await?;
        let listed: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "reason": r.reason,
                    "received_at": crate::support::time::format_rfc3339_ms(r.received_at_ms),
                })
            })
            .collect();
        if records.is_empty() {
            return Ok(Done::answer(json!({
                "outcome": "nothing_to_replay",
                "quarantined": listed,
            })));
        }
        let body = json!({"replay": "quarantine", "limit": limit}).to_string();
        let failed = self
            .ports
            .events_queue
            .send_batch(&[crate::ports::OutMessage {
                id: "replay".into(),
                body,
                attributes: vec![("sent_by".into(), "operations".into())],
                delay_secs: 0,
            }])
            .await?;
        if let Some(f) = failed.first() {
            return Err(PortError::Unavailable(format!(
                "the events queue refused the replay command: {}",
                f.code
            )));
        }
        tracing::info!(records = records.len(), "quarantine replay queued");
        Ok(Done::answer(json!({
            "outcome": "replay_queued",
            "quarantined": listed,
            "note": "the events function replays them within seconds: what parses now is \
                     processed and its record deleted, the rest stay. Run replay_quarantine \
                     again to see what is left",
        })))
    }
}

/// A log-safe name for an opt-in key (it holds a login_id, user_ref or PSID).
pub(crate) fn optin_hash(key: &str) -> String {
    hash_id(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_check_their_fields() {
        let ok = |v: Value| Command::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(
            ok(json!({"command": "pause_page", "page_id": "100", "reason": "token rotation"})),
            Command::PausePage {
                page_id: "100".into(),
                reason: "token rotation".into()
            }
        );
        assert_eq!(
            ok(json!({"command": "redrive_dlq", "queue": "scheduler"})),
            Command::RedriveDlq {
                queue: DlqName::Scheduler,
                max: 10
            }
        );
        assert_eq!(ok(json!({"command": "sweep"})), Command::Sweep {});
        assert_eq!(
            ok(json!({"command": "check_page_tokens"})),
            Command::CheckPageTokens {}
        );
        assert_eq!(
            ok(json!({"command": "replay_quarantine"})),
            Command::ReplayQuarantine { limit: 100 }
        );
        for bad in [
            json!({"command": "pause_page", "page_id": "<PAGE_ID>", "reason": "x"}),
            json!({"command": "pause_page", "page_id": "100", "reason": " "}),
            json!({"command": "pause_page", "page_id": "100", "reason": "<why>"}),
            json!({"command": "show_person", "page_id": "100", "psid": "<PSID>"}),
            json!({"command": "redrive_dlq", "queue": "outbound", "max": 0}),
            json!({"command": "redrive_dlq", "queue": "outbound", "max": 101}),
            json!({"command": "redrive_dlq", "queue": "other"}),
            json!({"command": "redrive_dlq", "queue": "events", "maxx": 5}),
            json!({"command": "drop_table"}),
            json!({"replay": "quarantine"}),
            json!("sweep"),
        ] {
            assert!(Command::parse(&bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn every_name_parses() {
        for name in Command::NAMES {
            let mut v = json!({"command": name});
            match name {
                "pause_page" => {
                    v["page_id"] = json!("1");
                    v["reason"] = json!("r");
                }
                "resume_page" | "show_page" => v["page_id"] = json!("1"),
                "show_person" => {
                    v["page_id"] = json!("1");
                    v["psid"] = json!("2");
                }
                "redrive_dlq" => v["queue"] = json!("events"),
                _ => {}
            }
            assert_eq!(Command::parse(&v).map(|c| c.name()), Ok(name));
        }
    }
}
