//! The [`Scheduler`] contract: what the opt-in flow relies on, checked the same way against
//! [`crate::memory::MemoryScheduler`] and the EventBridge Scheduler adapter (on moto).
//!
//! Each check is an ordinary async fn that panics on a violation, so it runs under any test
//! harness and runtime. Names are built from `unique_prefix`, so suites can share a backend.

use futures::future::join_all;

use crate::ports::{OneTimeSchedule, PortError, ScheduleCreated, Scheduler};

/// 2030-01-02T03:04:05.678Z: the sub-second part is dropped by `at()`.
const AT_MS: i64 = 1_893_553_445_678;

fn schedule(name: String) -> OneTimeSchedule {
    OneTimeSchedule {
        input: format!(r#"{{"kind":"deadline","name":"{name}","text":"déjà vu \"quoted\""}}"#),
        name,
        at_ms: AT_MS,
    }
}

fn name(prefix: &str, suffix: &str) -> String {
    let n = format!("{prefix}-{suffix}");
    assert!(n.len() <= 64, "prefix too long for a schedule name: {n}");
    n
}

/// Runs every check.
pub async fn run_all<S: Scheduler>(s: &S, unique_prefix: &str) {
    lifecycle(s, unique_prefix).await;
    invalid_names_are_rejected(s, unique_prefix).await;
    invalid_schedules_are_rejected(s, unique_prefix).await;
    concurrent_creates_make_one(s, unique_prefix).await;
}

/// create -> Created, again -> AlreadyExists (the first one kept), get at second precision,
/// delete -> true, again -> false, get -> None.
pub async fn lifecycle<S: Scheduler>(s: &S, unique_prefix: &str) {
    let sched = schedule(name(unique_prefix, "life"));
    assert_eq!(
        s.create_schedule(&sched).await,
        Ok(ScheduleCreated::Created)
    );

    let mut other = sched.clone();
    other.at_ms += 3_600_000;
    other.input = r#"{"other":true}"#.into();
    assert_eq!(
        s.create_schedule(&other).await,
        Ok(ScheduleCreated::AlreadyExists),
        "a name is unique: creating it again is a conflict, not a copy"
    );

    let got = s
        .get_schedule(&sched.name)
        .await
        .expect("get")
        .expect("the schedule exists");
    assert_eq!(got.name, sched.name);
    assert_eq!(got.at_ms, AT_MS - AT_MS % 1000, "second precision");
    assert_eq!(
        got.input, sched.input,
        "the first create is kept, input verbatim"
    );

    assert_eq!(s.delete_schedule(&sched.name).await, Ok(true));
    assert_eq!(
        s.delete_schedule(&sched.name).await,
        Ok(false),
        "deleting a missing schedule is not an error"
    );
    assert_eq!(s.get_schedule(&sched.name).await, Ok(None));
    assert_eq!(
        s.get_schedule(&name(unique_prefix, "never")).await,
        Ok(None)
    );
}

/// Names outside `^[0-9a-zA-Z-_.]{1,64}$` are refused, not retried.
pub async fn invalid_names_are_rejected<S: Scheduler>(s: &S, unique_prefix: &str) {
    let too_long = format!("{unique_prefix}-{}", "x".repeat(64));
    for bad in [
        String::new(),
        format!("{unique_prefix} space"),
        format!("{unique_prefix}/slash"),
        format!("{unique_prefix}-é"),
        too_long,
    ] {
        let r = s.create_schedule(&schedule(bad.clone())).await;
        assert!(
            matches!(r, Err(PortError::Rejected(_))),
            "create {bad:?}: {r:?}"
        );
        let r = s.delete_schedule(&bad).await;
        assert!(
            matches!(r, Err(PortError::Rejected(_))),
            "delete {bad:?}: {r:?}"
        );
        let r = s.get_schedule(&bad).await;
        assert!(
            matches!(r, Err(PortError::Rejected(_))),
            "get {bad:?}: {r:?}"
        );
    }
    // The edges of the pattern are accepted.
    let edge = format!("{unique_prefix}-a_Z.9").chars().take(64).collect();
    let edge = schedule(edge);
    assert_eq!(s.create_schedule(&edge).await, Ok(ScheduleCreated::Created));
    assert_eq!(s.delete_schedule(&edge.name).await, Ok(true));
}

/// Times an `at()` expression cannot carry and inputs that are not JSON are refused, and
/// nothing is created.
pub async fn invalid_schedules_are_rejected<S: Scheduler>(s: &S, unique_prefix: &str) {
    let n = name(unique_prefix, "invalid");
    // 10000-01-01T00:00:00Z, the last millisecond of year -1, and the extremes.
    for at_ms in [253_402_300_800_000, -62_167_219_200_001, i64::MIN, i64::MAX] {
        let mut bad = schedule(n.clone());
        bad.at_ms = at_ms;
        let r = s.create_schedule(&bad).await;
        assert!(matches!(r, Err(PortError::Rejected(_))), "{at_ms}: {r:?}");
    }
    for input in ["", "not json", "{\"open\":"] {
        let mut bad = schedule(n.clone());
        bad.input = input.into();
        let r = s.create_schedule(&bad).await;
        assert!(matches!(r, Err(PortError::Rejected(_))), "{input:?}: {r:?}");
    }
    assert_eq!(s.get_schedule(&n).await, Ok(None), "nothing was created");
}

/// 20 concurrent creates of one name: exactly one `Created`, the rest `AlreadyExists`.
pub async fn concurrent_creates_make_one<S: Scheduler>(s: &S, unique_prefix: &str) {
    let sched = schedule(name(unique_prefix, "race"));
    let results = join_all((0..20).map(|_| s.create_schedule(&sched))).await;
    let created = results
        .iter()
        .filter(|r| **r == Ok(ScheduleCreated::Created))
        .count();
    let existing = results
        .iter()
        .filter(|r| **r == Ok(ScheduleCreated::AlreadyExists))
        .count();
    assert_eq!((created, existing), (1, 19), "{results:?}");
    assert_eq!(s.delete_schedule(&sched.name).await, Ok(true));
}
