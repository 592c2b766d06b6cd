//! The deadline Lambda: EventBridge Scheduler invokes it with the schedule's JSON input.
//! Its own errors are returned (Scheduler retries, then dead-letters); a retry cannot send
//! twice because every send goes through the sender's conditional claim.

use lc_core::deadline::{Deadline, DeadlineOutcome};
use lc_core::optin::DeadlineCheck;
use lc_core::ports::{
    Clock, GraphApi, OptinStore, PageStore, PersonStore, Scheduler, SecretSource,
};

pub async fn handle<St, G, Sc, Se, C>(
    deadline: &Deadline<St, G, Sc, Se, C>,
    input: serde_json::Value,
) -> Result<serde_json::Value, String>
where
    St: OptinStore + PersonStore + PageStore,
    G: GraphApi,
    Sc: Scheduler,
    Se: SecretSource,
    C: Clock,
{
    let check: DeadlineCheck = match serde_json::from_value(input) {
        Ok(c) => c,
        Err(e) => {
            // Not ours: retrying will not fix it; succeed so it does not loop.
            tracing::error!(error = %e, "deadline input is not a DeadlineCheck");
            return Ok(serde_json::json!({"outcome": "invalid_input"}));
        }
    };
    let outcome = deadline.check(&check).await.map_err(|e| e.to_string())?;
    tracing::info!(outcome = outcome.name(), detail = ?outcome, "deadline check");
    let missed = matches!(outcome, DeadlineOutcome::Missed { .. });
    Ok(serde_json::json!({"outcome": outcome.name(), "missed": missed}))
}
