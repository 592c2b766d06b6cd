//! An EventBridge-Scheduler-like set of one-time schedules in memory.
//!
//! It keeps the service's semantics: a name is unique (creating it again is
//! [`ScheduleCreated::AlreadyExists`], not a copy), deleting a missing name is `Ok(false)`, the
//! time has second precision, and names and inputs are validated as the service does (refused
//! with [`PortError::Rejected`]). Unlike moto it really fires: [`MemoryScheduler::due`] takes
//! the schedules whose time has come (they delete themselves after firing, like
//! `ActionAfterCompletion: DELETE`), and [`MemoryScheduler::spawn_firing`] does that on a timer
//! against an injected clock.
//!
//! Requests are counted as `scheduler.CreateSchedule`, `scheduler.DeleteSchedule` and
//! `scheduler.GetSchedule`, the same figures the AWS adapter counts. A request refused by the
//! local validation is not counted (the AWS adapter never sends it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::ports::scheduler::{validate_schedule, validate_schedule_name};
use crate::ports::{Clock, OneTimeSchedule, PortError, RequestCounter, ScheduleCreated, Scheduler};

const SERVICE: &str = "scheduler";

/// The instant the service keeps: `at()` has second precision.
fn truncate_to_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

/// The schedules by name, and by (time, name) so finding what is due does not walk every
/// schedule (a simulated day holds hundreds of thousands).
#[derive(Default)]
struct Schedules {
    by_name: BTreeMap<String, OneTimeSchedule>,
    by_time: BTreeSet<(i64, String)>,
}

impl Schedules {
    fn insert(&mut self, s: OneTimeSchedule) {
        self.by_time.insert((s.at_ms, s.name.clone()));
        self.by_name.insert(s.name.clone(), s);
    }

    fn remove(&mut self, name: &str) -> Option<OneTimeSchedule> {
        let s = self.by_name.remove(name)?;
        self.by_time.remove(&(s.at_ms, s.name.clone()));
        Some(s)
    }
}

pub struct MemoryScheduler {
    schedules: Mutex<Schedules>,
    counter: Arc<RequestCounter>,
    /// The next this-many create calls fail as unavailable (a Scheduler outage, in tests).
    failing_creates: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for MemoryScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryScheduler")
            .field("schedules", &self.len())
            .finish()
    }
}

impl Default for MemoryScheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryScheduler {
    /// A scheduler with its own request counter.
    pub fn new() -> Self {
        Self::with_counter(Arc::new(RequestCounter::new()))
    }

    /// A scheduler counting into a counter shared with other adapters.
    pub fn with_counter(counter: Arc<RequestCounter>) -> Self {
        MemoryScheduler {
            schedules: Mutex::new(Schedules::default()),
            counter,
            failing_creates: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Makes the next `n` `create_schedule` calls fail with [`PortError::Unavailable`].
    pub fn fail_next_creates(&self, n: u32) {
        self.failing_creates
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn counter(&self) -> &Arc<RequestCounter> {
        &self.counter
    }

    /// `scheduler.Operation` -> count (only this service's entries of the counter).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let prefix = format!("{SERVICE}.");
        self.counter
            .snapshot()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Schedules> {
        // No update here can be left half-done by a panic; keep going with the data.
        self.schedules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedules waiting to fire.
    pub fn len(&self) -> usize {
        self.lock().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names of the schedules waiting to fire, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().by_name.keys().cloned().collect()
    }

    /// Removes and returns the schedules whose time is at or before `now_ms`, earliest first
    /// (ties by name): they fire once and delete themselves.
    pub fn due(&self, now_ms: i64) -> Vec<OneTimeSchedule> {
        let mut map = self.lock();
        let mut fired = Vec::new();
        while let Some((at, _)) = map.by_time.first() {
            if *at > now_ms {
                break;
            }
            let Some((_, name)) = map.by_time.pop_first() else {
                break;
            };
            if let Some(s) = map.by_name.remove(&name) {
                fired.push(s);
            }
        }
        fired
    }

    /// When the next schedule fires (`None`: none is waiting). A driver of simulated time can
    /// skip to it.
    pub fn next_at_ms(&self) -> Option<i64> {
        self.lock().by_time.first().map(|(at, _)| *at)
    }

    /// Polls [`Self::due`] every `tick` against `clock` and awaits `on_fire` for each schedule
    /// that comes due, one after the other. The task holds only a weak reference: it ends once
    /// the scheduler is dropped (or when the handle is aborted).
    pub fn spawn_firing<F>(
        self: &Arc<Self>,
        clock: Arc<dyn Clock>,
        tick: Duration,
        on_fire: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(OneTimeSchedule) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let fired = match weak.upgrade() {
                    Some(s) => s.due(clock.now_ms()),
                    None => return,
                };
                for s in fired {
                    on_fire(s).await;
                }
            }
        })
    }
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn create_schedule(&self, s: &OneTimeSchedule) -> Result<ScheduleCreated, PortError> {
        validate_schedule(s)?;
        self.counter.incr(SERVICE, "CreateSchedule");
        tokio::task::yield_now().await;
        let failing = self.failing_creates.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if failing.is_ok() {
            return Err(PortError::Unavailable(
                "scheduler unavailable (injected)".into(),
            ));
        }
        let created = {
            let mut map = self.lock();
            if map.by_name.contains_key(&s.name) {
                ScheduleCreated::AlreadyExists
            } else {
                map.insert(OneTimeSchedule {
                    name: s.name.clone(),
                    at_ms: truncate_to_second(s.at_ms),
                    input: s.input.clone(),
                });
                ScheduleCreated::Created
            }
        };
        tokio::task::yield_now().await;
        Ok(created)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, PortError> {
        validate_schedule_name(name)?;
        self.counter.incr(SERVICE, "DeleteSchedule");
        tokio::task::yield_now().await;
        let removed = self.lock().remove(name).is_some();
        tokio::task::yield_now().await;
        Ok(removed)
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<OneTimeSchedule>, PortError> {
        validate_schedule_name(name)?;
        self.counter.incr(SERVICE, "GetSchedule");
        tokio::task::yield_now().await;
        let found = self.lock().by_name.get(name).cloned();
        tokio::task::yield_now().await;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn sched(name: &str, at_ms: i64) -> OneTimeSchedule {
        OneTimeSchedule {
            name: name.into(),
            at_ms,
            input: format!(r#"{{"name":"{name}"}}"#),
        }
    }

    #[tokio::test]
    async fn create_conflict_get_delete() {
        let s = MemoryScheduler::new();
        let a = sched("a", 1_700_000_000_999);
        assert_eq!(s.create_schedule(&a).await, Ok(ScheduleCreated::Created));
        assert_eq!(
            s.create_schedule(&sched("a", 5)).await,
            Ok(ScheduleCreated::AlreadyExists)
        );
        let got = s.get_schedule("a").await.unwrap().unwrap();
        assert_eq!(got.at_ms, 1_700_000_000_000, "second precision");
        assert_eq!(got.input, a.input);
        assert_eq!(s.names(), vec!["a".to_string()]);
        assert_eq!(s.delete_schedule("a").await, Ok(true));
        assert_eq!(s.delete_schedule("a").await, Ok(false));
        assert_eq!(s.get_schedule("a").await, Ok(None));
        assert!(s.is_empty());
        let counts = s.counts();
        assert_eq!(counts.get("scheduler.CreateSchedule"), Some(&2));
        assert_eq!(counts.get("scheduler.DeleteSchedule"), Some(&2));
        assert_eq!(counts.get("scheduler.GetSchedule"), Some(&2));
    }

    #[tokio::test]
    async fn validation_like_the_service() {
        let s = MemoryScheduler::new();
        let long = "x".repeat(65);
        for bad in ["", "has space", "slash/name", "é", long.as_str()] {
            let r = s.create_schedule(&sched(bad, 0)).await;
            assert!(matches!(r, Err(PortError::Rejected(_))), "{bad:?}: {r:?}");
        }
        assert!(validate_schedule_name(&"a-_.Z9".repeat(10)).is_ok());
        assert!(validate_schedule_name(&"x".repeat(64)).is_ok());
        let mut not_json = sched("ok", 0);
        not_json.input = "{not json".into();
        assert!(matches!(
            s.create_schedule(&not_json).await,
            Err(PortError::Rejected(_))
        ));
        // Year 10000 and negative years cannot be written as at(yyyy-mm-ddThh:mm:ss).
        for at_ms in [253_402_300_800_000, -62_167_219_200_001, i64::MIN, i64::MAX] {
            let r = s.create_schedule(&sched("ok", at_ms)).await;
            assert!(matches!(r, Err(PortError::Rejected(_))), "{at_ms}: {r:?}");
        }
        assert!(s.is_empty());
        assert!(s.counts().is_empty(), "refused locally: no request counted");
        assert!(matches!(
            s.delete_schedule("bad name").await,
            Err(PortError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn due_removes_in_time_order() {
        let s = MemoryScheduler::new();
        for (n, at) in [
            ("late", 3_000),
            ("early", 1_500),
            ("mid", 2_000),
            ("tie", 1_999),
        ] {
            s.create_schedule(&sched(n, at)).await.unwrap();
        }
        assert!(s.due(999).is_empty());
        // 1_999 is kept as 1_000 (second precision), so it fires with "early".
        let names = |v: Vec<OneTimeSchedule>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(s.due(1_000)), vec!["early", "tie"]);
        assert_eq!(names(s.due(2_500)), vec!["mid"]);
        assert_eq!(s.names(), vec!["late".to_string()]);
        assert_eq!(names(s.due(10_000)), vec!["late"]);
        assert!(s.due(i64::MAX).is_empty(), "fired once");
        assert_eq!(s.delete_schedule("late").await, Ok(false), "deleted itself");
    }

    async fn wait(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("fired in time")
    }

    #[tokio::test]
    async fn firing_task_follows_the_injected_clock() {
        let clock = Arc::new(TestClock(AtomicI64::new(0)));
        let s = Arc::new(MemoryScheduler::new());
        s.create_schedule(&sched("one", 10_000)).await.unwrap();
        s.create_schedule(&sched("two", 20_000)).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = s.spawn_firing(clock.clone(), Duration::from_millis(2), move |f| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send(f.name);
            })
        });
        // Many ticks pass with the clock stopped: nothing fires.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(s.len(), 2);

        clock.0.store(10_000, Ordering::SeqCst);
        assert_eq!(wait(&mut rx).await.as_deref(), Some("one"));
        assert_eq!(s.names(), vec!["two".to_string()]);

        clock.0.store(60_000, Ordering::SeqCst);
        assert_eq!(wait(&mut rx).await.as_deref(), Some("two"));
        assert!(s.is_empty());

        // The task keeps only a weak reference: dropping the scheduler ends it.
        drop(s);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("task ends")
            .expect("no panic");
    }

    #[tokio::test]
    async fn shared_counter_and_concurrent_creates() {
        let counter = Arc::new(RequestCounter::new());
        counter.incr("sqs", "SendMessageBatch");
        let s = Arc::new(MemoryScheduler::with_counter(counter.clone()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.create_schedule(&sched("same", 0)).await })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            if t.await.unwrap() == Ok(ScheduleCreated::Created) {
                created += 1;
            }
        }
        assert_eq!(created, 1);
        assert_eq!(counter.total("scheduler"), 20);
        assert_eq!(
            s.counts().len(),
            1,
            "only scheduler entries: {:?}",
            s.counts()
        );
    }
}
