//! Cold-start wiring shared by the Lambda binaries: every setting from the environment (set by
//! template.yaml), every client built once.

use std::sync::Arc;

use lc_core::lifecycle::processor::LifecycleConfig;
use lc_core::ports::RequestCounter;
use lc_core::sending::first_message;
use lc_core::sending::sender::SenderConfig;
use lc_core::support::retention::Retention;

use crate::dynamodb::DynamoStore;
use crate::env::{optional, parse_or, required, ConfigError};
use crate::scheduler::{EventBridgeScheduler, SchedulerConfig};
use crate::sqs::SqsQueue;

/// The table (`TABLE_NAME`), with the retention settings ([`retention`]).
pub fn store(
    sdk: &aws_config::SdkConfig,
    counter: Option<Arc<RequestCounter>>,
) -> Result<DynamoStore, ConfigError> {
    let s = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), required("TABLE_NAME")?)
        .with_retention(retention()?);
    Ok(match counter {
        Some(c) => s.with_counter(c),
        None => s,
    })
}

/// How long items live, in days: `LC_RETENTION_OPTIN_DAYS` (closed opt-ins, default 400),
/// `LC_RETENTION_PERSON_DAYS` (people and tokens after their last event, 400),
/// `LC_RETENTION_QUARANTINE_DAYS` (90), `LC_RETENTION_RECEIPT_DAYS` (deletion receipts, 90).
pub fn retention() -> Result<Retention, ConfigError> {
    let d = Retention::default();
    let days = |name: &'static str, default: i64| -> Result<i64, ConfigError> {
        let v = parse_or(name, default)?;
        if (1..=3650).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::Invalid(name, "expected 1 to 3650 days".into()))
        }
    };
    Ok(Retention {
        optin_days: days("LC_RETENTION_OPTIN_DAYS", d.optin_days)?,
        person_days: days("LC_RETENTION_PERSON_DAYS", d.person_days)?,
        quarantine_days: days("LC_RETENTION_QUARANTINE_DAYS", d.quarantine_days)?,
        receipt_days: days("LC_RETENTION_RECEIPT_DAYS", d.receipt_days)?,
    })
}

/// A queue by the name of its URL variable.
pub fn queue(sdk: &aws_config::SdkConfig, url_var: &'static str) -> Result<SqsQueue, ConfigError> {
    queue_on(&aws_sdk_sqs::Client::new(sdk), url_var)
}

/// An SQS client for [`queue_on`].
pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// A queue by the name of its URL variable, on an SQS client the caller already has (a function
/// with several queues builds one client: each `Client::new` costs its cold start).
pub fn queue_on(
    client: &aws_sdk_sqs::Client,
    url_var: &'static str,
) -> Result<SqsQueue, ConfigError> {
    Ok(SqsQueue::new(client.clone(), required(url_var)?))
}

/// The business's event bus (`EVENT_BUS_NAME`).
pub fn bus(sdk: &aws_config::SdkConfig) -> Result<crate::eventbridge::EventBridgeBus, ConfigError> {
    Ok(crate::eventbridge::EventBridgeBus::new(
        aws_sdk_eventbridge::Client::new(sdk),
        required("EVENT_BUS_NAME")?,
    )
    .with_off(bus_off()?))
}

/// The detail types the operator switched off (`LC_BUS_OFF_DETAIL_TYPES`, the template's
/// `BusDetailTypesOff`): the bus does not put them, and the webhook does not queue the events
/// heard only as them.
pub fn bus_off() -> Result<Vec<lc_core::bus::DetailType>, ConfigError> {
    crate::eventbridge::parse_detail_types(&optional("LC_BUS_OFF_DETAIL_TYPES").unwrap_or_default())
        .map_err(|e| ConfigError::Invalid("LC_BUS_OFF_DETAIL_TYPES", e))
}

/// Deadline schedules: `SCHEDULE_GROUP`, `DEADLINE_FUNCTION_ARN`, `SCHEDULER_ROLE_ARN`,
/// optional `SCHEDULER_DLQ_ARN`.
pub fn scheduler(sdk: &aws_config::SdkConfig) -> Result<EventBridgeScheduler, ConfigError> {
    let mut config = SchedulerConfig::new(
        required("SCHEDULE_GROUP")?,
        required("DEADLINE_FUNCTION_ARN")?,
        required("SCHEDULER_ROLE_ARN")?,
    );
    config.dead_letter_arn = optional("SCHEDULER_DLQ_ARN");
    EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(sdk), config)
        .map_err(|e| ConfigError::Invalid("SCHEDULE_GROUP", e.to_string()))
}

/// `LC_DEADLINE_MARGIN_SECS` (default 3600).
pub fn lifecycle_config() -> Result<LifecycleConfig, ConfigError> {
    Ok(LifecycleConfig {
        deadline_margin_ms: parse_or("LC_DEADLINE_MARGIN_SECS", 3600i64)? * 1000,
        ..LifecycleConfig::default()
    })
}

/// `LC_FIRST_MESSAGE_TEXT` (the stack default), `LC_ALLOWED_TAGS` (comma list, default
/// `HUMAN_AGENT`), `LC_APPSECRET_PROOF` (true/false), `LC_PACE_THRESHOLD_PERCENT` (80),
/// `LC_FUNCTION_TIMEOUT_SECS` (the function's own timeout, 30), `LC_PAGE_RATE_PER_SEC` (Meta's
/// per-Page rate, 300) and `LC_SENDING_INSTANCES` (every process that may send at once, 50:
/// the template's events 20 + sender 10 + deadline 10 + messages-worker 10).
pub fn sender_config(graph: &crate::graph::GraphClient) -> Result<SenderConfig, ConfigError> {
    let mut c = SenderConfig::default();
    if let Some(text) = optional("LC_FIRST_MESSAGE_TEXT") {
        c.default_message = first_message::from_text(&text)
            .map_err(|e| ConfigError::Invalid("LC_FIRST_MESSAGE_TEXT", e))?;
    }
    if let Some(tags) = optional("LC_ALLOWED_TAGS") {
        c.policy.allowed_tags = tags
            .split(',')
            .map(|t| t.trim().to_ascii_uppercase())
            .filter(|t| !t.is_empty())
            .collect();
    }
    c.appsecret_proof = crate::env::flag("LC_APPSECRET_PROOF", false)?;
    c.pace_threshold_percent = parse_or("LC_PACE_THRESHOLD_PERCENT", 80u32)?;
    // Each process's share of a Page's rate: Meta's rate over every process that can send at
    // once (the template passes the sum of the sending functions' reserved concurrency).
    c.pacing.page_rate_per_sec = parse_or("LC_PAGE_RATE_PER_SEC", c.pacing.page_rate_per_sec)?;
    c.pacing.instances = parse_or("LC_SENDING_INSTANCES", c.pacing.instances)?;
    if c.pacing.instances == 0 {
        return Err(ConfigError::Invalid(
            "LC_SENDING_INSTANCES",
            "must be at least 1".into(),
        ));
    }
    // The lease must outlive any attempt: derived from the Graph timeout and the function's
    // timeout (the template passes the same value it gives Lambda), checked here at cold start.
    let function_timeout_ms = parse_or("LC_FUNCTION_TIMEOUT_SECS", 30i64)? * 1000;
    let graph_timeout_ms = i64::try_from(graph.config().timeout.as_millis()).unwrap_or(i64::MAX);
    c.with_timeouts(graph_timeout_ms, function_timeout_ms)
        .map_err(|e| ConfigError::Invalid("LC_FUNCTION_TIMEOUT_SECS", e))
}
