//! EventBridge Scheduler: the scheduler port over one-time `at()` schedules.
//!
//! Every schedule is created with `FlexibleTimeWindow` OFF, `ScheduleExpressionTimezone` UTC
//! and `ActionAfterCompletion` DELETE (it removes itself after firing), in one schedule group,
//! invoking one target (the deadline function) with the schedule's JSON input, a bounded retry
//! policy and an optional dead-letter queue.
//!
//! Requests are validated here first, as the service would (name, `at()` range, JSON input):
//! moto accepts anything, so this is what the tests exercise. Each request sent is counted as
//! `scheduler.<Operation>`.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use aws_sdk_scheduler::Client;
use lc_core::ports::scheduler::{at_expression, parse_at_expression};
use lc_core::ports::scheduler::{validate_schedule, validate_schedule_name};
use lc_core::ports::{OneTimeSchedule, PortError, RequestCounter, ScheduleCreated, Scheduler};

use crate::aws::{error_code, port_error};

const SERVICE: &str = "scheduler";

/// Where schedules go and what they invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The schedule group (it must exist).
    pub group: String,
    /// The target invoked when a schedule fires (the deadline function's ARN).
    pub target_arn: String,
    /// The role EventBridge Scheduler assumes to invoke the target.
    pub role_arn: String,
    /// An SQS queue for invocations that failed every retry.
    pub dead_letter_arn: Option<String>,
    /// 0..=185 (the service's range).
    pub max_retry_attempts: i32,
    /// 60..=86400 seconds (the service's range).
    pub max_event_age_secs: i32,
}

impl SchedulerConfig {
    /// Retries for up to an hour (a deadline fires ~23 h after the opt-in, so a later
    /// invocation would miss the 24 h window anyway), no dead-letter queue.
    pub fn new(
        group: impl Into<String>,
        target_arn: impl Into<String>,
        role_arn: impl Into<String>,
    ) -> Self {
        SchedulerConfig {
            group: group.into(),
            target_arn: target_arn.into(),
            role_arn: role_arn.into(),
            dead_letter_arn: None,
            max_retry_attempts: 185,
            max_event_age_secs: 3600,
        }
    }

    fn validate(&self) -> Result<(), PortError> {
        validate_schedule_name(&self.group)
            .map_err(|_| PortError::Rejected("schedule group name is invalid".into()))?;
        if self.target_arn.is_empty() || self.role_arn.is_empty() {
            return Err(PortError::Rejected(
                "scheduler target and role ARNs are required".into(),
            ));
        }
        if !(0..=185).contains(&self.max_retry_attempts) {
            return Err(PortError::Rejected(
                "max_retry_attempts must be within 0..=185".into(),
            ));
        }
        if !(60..=86_400).contains(&self.max_event_age_secs) {
            return Err(PortError::Rejected(
                "max_event_age_secs must be within 60..=86400".into(),
            ));
        }
        if self.dead_letter_arn.as_deref() == Some("") {
            return Err(PortError::Rejected("dead_letter_arn is empty".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    group: String,
    target_arn: String,
    role_arn: String,
    dead_letter_arn: Option<String>,
    max_retry_attempts: i32,
    max_event_age_secs: i32,
    counter: Option<Arc<RequestCounter>>,
}

impl EventBridgeScheduler {
    /// Refuses a configuration the service would refuse on every request.
    pub fn new(client: Client, config: SchedulerConfig) -> Result<Self, PortError> {
        config.validate()?;
        Ok(EventBridgeScheduler {
            client,
            group: config.group,
            target_arn: config.target_arn,
            role_arn: config.role_arn,
            dead_letter_arn: config.dead_letter_arn,
            max_retry_attempts: config.max_retry_attempts,
            max_event_age_secs: config.max_event_age_secs,
            counter: None,
        })
    }

    /// Counts every request sent into `counter` (shared with the other adapters).
    pub fn with_counter(mut self, counter: Arc<RequestCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    fn count(&self, operation: &str) {
        if let Some(c) = &self.counter {
            c.incr(SERVICE, operation);
        }
    }

    fn target(&self, input: &str) -> Result<Target, PortError> {
        let mut t = Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(self.max_retry_attempts)
                    .maximum_event_age_in_seconds(self.max_event_age_secs)
                    .build(),
            );
        if let Some(dlq) = &self.dead_letter_arn {
            t = t.dead_letter_config(DeadLetterConfig::builder().arn(dlq).build());
        }
        t.build()
            .map_err(|e| PortError::Rejected(format!("CreateSchedule: target: {e}")))
    }
}

/// Creates a schedule group unless it exists; `true` when it was created. Checks with
/// `GetScheduleGroup` first because moto's `CreateScheduleGroup` silently replaces an existing
/// group (dropping its schedules) where the service answers `ConflictException`.
pub async fn create_group(client: &Client, name: &str) -> Result<bool, PortError> {
    validate_schedule_name(name)
        .map_err(|_| PortError::Rejected("schedule group name is invalid".into()))?;
    match client.get_schedule_group().name(name).send().await {
        Ok(_) => return Ok(false),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => return Err(port_error("GetScheduleGroup", &e)),
    }
    match client.create_schedule_group().name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if error_code(&e) == Some("ConflictException") => Ok(false),
        Err(e) => Err(port_error("CreateScheduleGroup", &e)),
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn create_schedule(&self, s: &OneTimeSchedule) -> Result<ScheduleCreated, PortError> {
        validate_schedule(s)?;
        let expression = at_expression(s.at_ms);
        // validate_schedule checked this already; keep the guarantee local to the request.
        if parse_at_expression(&expression).is_none() {
            return Err(PortError::Rejected(
                "CreateSchedule: invalid at() expression".into(),
            ));
        }
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| PortError::Rejected(format!("CreateSchedule: window: {e}")))?;
        let target = self.target(&s.input)?;
        self.count("CreateSchedule");
        let res = self
            .client
            .create_schedule()
            .name(&s.name)
            .group_name(&self.group)
            .schedule_expression(expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match res {
            Ok(_) => Ok(ScheduleCreated::Created),
            Err(e) if error_code(&e) == Some("ConflictException") => {
                Ok(ScheduleCreated::AlreadyExists)
            }
            Err(e) => Err(port_error("CreateSchedule", &e)),
        }
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, PortError> {
        validate_schedule_name(name)?;
        self.count("DeleteSchedule");
        let res = self
            .client
            .delete_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(port_error("DeleteSchedule", &e)),
        }
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<OneTimeSchedule>, PortError> {
        validate_schedule_name(name)?;
        self.count("GetSchedule");
        let res = self
            .client
            .get_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(port_error("GetSchedule", &e)),
        };
        if let Some(tz) = out.schedule_expression_timezone() {
            if tz != "UTC" {
                return Err(PortError::Rejected(format!(
                    "GetSchedule: expected timezone UTC, found {tz}"
                )));
            }
        }
        let at_ms = out
            .schedule_expression()
            .and_then(parse_at_expression)
            .ok_or_else(|| {
                PortError::Rejected("GetSchedule: not a one-time at() schedule".into())
            })?;
        let input = out
            .target()
            .and_then(|t| t.input())
            .ok_or_else(|| PortError::Rejected("GetSchedule: target has no input".into()))?;
        Ok(Some(OneTimeSchedule {
            name: name.to_string(),
            at_ms,
            input: input.to_string(),
        }))
    }
}
