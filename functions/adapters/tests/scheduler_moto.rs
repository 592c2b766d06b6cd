//! EventBridgeScheduler against moto over real HTTP: the shared contract suite, the request as
//! moto stored it, and the local validation that moto does not do.

mod common;

use std::sync::Arc;

use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindowMode};
use lc_adapters::scheduler::{create_group, EventBridgeScheduler, SchedulerConfig};
use lc_core::ports::scheduler::at_expression;
use lc_core::ports::{OneTimeSchedule, PortError, RequestCounter, ScheduleCreated, Scheduler};

const TARGET: &str = "arn:aws:lambda:us-east-1:123456789012:function:lc-deadline";
const ROLE: &str = "arn:aws:iam::123456789012:role/lc-scheduler";
const DLQ: &str = "arn:aws:sqs:us-east-1:123456789012:lc-deadline-dlq";

async fn scheduler(dead_letter: bool) -> (EventBridgeScheduler, Arc<RequestCounter>) {
    let sdk = common::moto_config().await;
    let client = aws_sdk_scheduler::Client::new(&sdk);
    let group = common::unique("lc-schedules");
    assert!(create_group(&client, &group).await.expect("create group"));
    assert!(
        !create_group(&client, &group).await.expect("group exists"),
        "an existing group is left alone"
    );
    let config = SchedulerConfig {
        dead_letter_arn: dead_letter.then(|| DLQ.to_string()),
        max_retry_attempts: 7,
        max_event_age_secs: 1800,
        ..SchedulerConfig::new(group, TARGET, ROLE)
    };
    let counter = Arc::new(RequestCounter::new());
    let s = EventBridgeScheduler::new(client, config)
        .expect("valid config")
        .with_counter(counter.clone());
    (s, counter)
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn eventbridge_scheduler_meets_the_contract() {
    let (s, counter) = scheduler(false).await;
    lc_core::contract::scheduler::run_all(&s, &common::unique("c")).await;
    let counts = counter.snapshot();
    println!("scheduler requests: {counts:?}");
    // The same figures as the in-memory twin (tests/scheduler_memory.rs in lc-core).
    assert_eq!(counts.get("scheduler.CreateSchedule"), Some(&23));
    assert_eq!(counts.get("scheduler.DeleteSchedule"), Some(&4));
    assert_eq!(counts.get("scheduler.GetSchedule"), Some(&4));
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn stored_schedule_has_our_settings() {
    for dead_letter in [true, false] {
        let (s, counter) = scheduler(dead_letter).await;
        let sched = OneTimeSchedule {
            name: common::unique("stored"),
            at_ms: 1_900_000_000_500,
            input: r#"{"login_id":"abc","deadline_at":1900000000500}"#.into(),
        };
        assert_eq!(
            s.create_schedule(&sched).await,
            Ok(ScheduleCreated::Created)
        );
        let out = s
            .client()
            .get_schedule()
            .name(&sched.name)
            .group_name(s.group())
            .send()
            .await
            .expect("raw GetSchedule");
        assert_eq!(out.group_name(), Some(s.group()));
        assert_eq!(
            out.schedule_expression(),
            Some(at_expression(sched.at_ms).as_str())
        );
        assert_eq!(out.schedule_expression(), Some("at(2030-03-17T17:46:40)"));
        assert_eq!(out.schedule_expression_timezone(), Some("UTC"));
        assert_eq!(
            out.flexible_time_window().map(|w| w.mode()),
            Some(&FlexibleTimeWindowMode::Off)
        );
        assert_eq!(
            out.flexible_time_window()
                .and_then(|w| w.maximum_window_in_minutes()),
            None
        );
        assert_eq!(
            out.action_after_completion(),
            Some(&ActionAfterCompletion::Delete)
        );
        let target = out.target().expect("target");
        assert_eq!(target.arn(), TARGET);
        assert_eq!(target.role_arn(), ROLE);
        assert_eq!(target.input(), Some(sched.input.as_str()));
        let retry = target.retry_policy().expect("retry policy");
        assert_eq!(retry.maximum_retry_attempts(), Some(7));
        assert_eq!(retry.maximum_event_age_in_seconds(), Some(1800));
        assert_eq!(
            target.dead_letter_config().and_then(|d| d.arn()),
            dead_letter.then_some(DLQ)
        );
        // Through the port: the same schedule, at second precision.
        let got = s
            .get_schedule(&sched.name)
            .await
            .expect("get")
            .expect("some");
        assert_eq!(got.at_ms, 1_900_000_000_000);
        assert_eq!(got.input, sched.input);
        assert_eq!(s.delete_schedule(&sched.name).await, Ok(true));
        assert_eq!(counter.total("scheduler"), 3);
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn invalid_requests_never_reach_moto() {
    let (s, counter) = scheduler(false).await;
    let name = common::unique("bad");
    // Year 10000 and a negative year: no at() expression for them. moto would store either.
    for at_ms in [253_402_300_800_000, -62_167_219_200_001] {
        let r = s
            .create_schedule(&OneTimeSchedule {
                name: name.clone(),
                at_ms,
                input: "{}".into(),
            })
            .await;
        assert!(matches!(r, Err(PortError::Rejected(_))), "{at_ms}: {r:?}");
    }
    let r = s
        .create_schedule(&OneTimeSchedule {
            name: "no spaces allowed".into(),
            at_ms: 1_900_000_000_000,
            input: "{}".into(),
        })
        .await;
    assert!(matches!(r, Err(PortError::Rejected(_))), "{r:?}");
    assert!(counter.snapshot().is_empty(), "{:?}", counter.snapshot());
    let listed = s
        .client()
        .list_schedules()
        .group_name(s.group())
        .send()
        .await
        .expect("ListSchedules");
    assert!(listed.schedules().is_empty(), "{:?}", listed.schedules());
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn missing_group_is_an_error_not_a_conflict() {
    let sdk = common::moto_config().await;
    let client = aws_sdk_scheduler::Client::new(&sdk);
    let s = EventBridgeScheduler::new(
        client,
        SchedulerConfig::new(common::unique("no-such-group"), TARGET, ROLE),
    )
    .expect("valid config");
    let name = common::unique("orphan");
    // moto answers 500 to a create in a missing group (the service: ResourceNotFoundException).
    let r = s
        .create_schedule(&OneTimeSchedule {
            name: name.clone(),
            at_ms: 1_900_000_000_000,
            input: "{}".into(),
        })
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(s.get_schedule(&name).await, Ok(None));
    assert_eq!(s.delete_schedule(&name).await, Ok(false));
}

#[test]
fn config_outside_the_service_ranges_is_refused() {
    let client = aws_sdk_scheduler::Client::from_conf(
        aws_sdk_scheduler::Config::builder()
            .behavior_version(aws_sdk_scheduler::config::BehaviorVersion::latest())
            .region(aws_sdk_scheduler::config::Region::new("us-east-1"))
            .build(),
    );
    let ok = SchedulerConfig::new("lc", TARGET, ROLE);
    assert!(EventBridgeScheduler::new(client.clone(), ok.clone()).is_ok());
    for bad in [
        SchedulerConfig {
            max_retry_attempts: 186,
            ..ok.clone()
        },
        SchedulerConfig {
            max_event_age_secs: 59,
            ..ok.clone()
        },
        SchedulerConfig {
            group: "bad group".into(),
            ..ok.clone()
        },
        SchedulerConfig {
            role_arn: String::new(),
            ..ok.clone()
        },
    ] {
        assert!(
            EventBridgeScheduler::new(client.clone(), bad.clone()).is_err(),
            "{bad:?}"
        );
    }
}
