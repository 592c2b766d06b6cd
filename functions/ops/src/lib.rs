//! The operations Lambda: one JSON event in (a command, from a saved console test event or a
//! schedule), its answer out. The commands are `lc_core::operations`; this is the glue.

use lc_core::operations::{Caller, Operations};

/// The handler: the answer, or the backend failure as the invocation's error (the console
/// shows it; Lambda's error metric counts it; a schedule's invocation is retried).
pub async fn handle(
    ops: &Operations,
    event: serde_json::Value,
    caller: Caller,
) -> Result<serde_json::Value, String> {
    ops.handle(&event, &caller).await.map_err(|e| {
        tracing::error!(error = %e, "operator command failed");
        e.to_string()
    })
}
