//! The deadline Lambda: EventBridge Scheduler invokes it with the schedule's JSON input.
//! Scheduler invokes Lambda asynchronously, so its own errors are retried by Lambda (then sent
//! to the function's dead-letter queue); a retry cannot send twice because every send goes
//! through the sender's conditional claim. Each outcome is logged and counted
//! (`lc_adapters::metrics`; `main` flushes per invocation).

use lc_adapters::metrics;
use lc_core::deadline::{Deadline, DeadlineOutcome};
use lc_core::lifecycle::optin::DeadlineCheck;
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
    metrics::record(metrics::from_deadline(&outcome));
    let missed = matches!(outcome, DeadlineOutcome::Missed { .. });
    Ok(serde_json::json!({"outcome": outcome.name(), "missed": missed}))
}
