//! One-time schedules (EventBridge Scheduler when deployed; tokio timers locally).

use async_trait::async_trait;

use super::PortError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeSchedule {
    /// Deterministic (see `optin::schedule_name`): creating it twice is a conflict, not a copy.
    pub name: String,
    /// When to fire, epoch ms (rendered as `at(yyyy-mm-ddThh:mm:ss)` in UTC).
    pub at_ms: i64,
    /// The JSON the target receives.
    pub input: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleCreated {
    Created,
    /// `ConflictException`: a schedule of that name exists already.
    AlreadyExists,
}

#[async_trait]
pub trait Scheduler: Send + Sync {
    async fn create_schedule(&self, s: &OneTimeSchedule) -> Result<ScheduleCreated, PortError>;
    /// `false` when there was nothing to delete (already fired and deleted itself, or never
    /// created): not an error.
    async fn delete_schedule(&self, name: &str) -> Result<bool, PortError>;
    async fn get_schedule(&self, name: &str) -> Result<Option<OneTimeSchedule>, PortError>;
}

/// `at(yyyy-mm-ddThh:mm:ss)` for an epoch-ms instant, in UTC (seconds truncated).
pub fn at_expression(at_ms: i64) -> String {
    format!("at({})", crate::support::time::format_utc_seconds(at_ms))
}

/// Parses and validates an `at()` expression (moto accepts anything; we do not).
pub fn parse_at_expression(expr: &str) -> Option<i64> {
    let inner = expr.strip_prefix("at(")?.strip_suffix(')')?;
    crate::support::time::parse_utc_seconds(inner)
}

/// Checks a schedule (or schedule group) name as the service does:
/// `^[0-9a-zA-Z-_.]{1,64}$`.
pub fn validate_schedule_name(name: &str) -> Result<(), PortError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        // The name is ours (derived from ids), not personal data, but keep the message short.
        Err(PortError::Rejected(format!(
            "schedule name must match ^[0-9a-zA-Z-_.]{{1,64}}$ ({} bytes given)",
            name.len()
        )))
    }
}

/// Everything the service would refuse about a one-time schedule, checked before any request:
/// the name, an `at()` expression that renders and parses back (years 0000..=9999), and an
/// input that is well-formed JSON (required for a templated Lambda target).
pub fn validate_schedule(s: &OneTimeSchedule) -> Result<(), PortError> {
    validate_schedule_name(&s.name)?;
    if parse_at_expression(&at_expression(s.at_ms)).is_none() {
        return Err(PortError::Rejected(format!(
            "schedule time {} ms is outside the at() expression range",
            s.at_ms
        )));
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(&s.input).is_err() {
        return Err(PortError::Rejected(
            "schedule input must be well-formed JSON".into(),
        ));
    }
    Ok(())
}
