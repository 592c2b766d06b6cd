//! The deadline Lambda: EventBridge Scheduler invokes it with the schedule's JSON input.
//! Scheduler invokes Lambda asynchronously, so a returned error is retried by Lambda (then sent
//! to the function's dead-letter queue); a retry cannot send twice because every send goes
//! through the sender's conditional claim.

use lc_core::deadline::{Deadline, DeadlineOutcome};

pub async fn handle(
    deadline: &Deadline,
    input: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let outcome = deadline.handle_input(&input).await?;
    let missed = matches!(outcome, DeadlineOutcome::Missed { .. });
    Ok(serde_json::json!({"outcome": outcome.name(), "missed": missed}))
}
