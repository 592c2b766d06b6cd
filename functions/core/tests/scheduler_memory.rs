//! The scheduler contract against the in-memory twin, plus its request counts.

use std::sync::Arc;

use lc_core::contract::scheduler::run_all;
use lc_core::memory::MemoryScheduler;
use lc_core::ports::RequestCounter;

#[tokio::test]
async fn memory_scheduler_meets_the_contract() {
    let counter = Arc::new(RequestCounter::new());
    let s = MemoryScheduler::with_counter(counter.clone());
    run_all(&s, "mem").await;
    assert!(s.is_empty(), "the suite cleans up: {:?}", s.names());
    // The same figures the moto test prints for EventBridgeScheduler.
    let counts = counter.snapshot();
    println!("scheduler requests: {counts:?}");
    assert_eq!(counts.get("scheduler.CreateSchedule"), Some(&23));
    assert_eq!(counts.get("scheduler.DeleteSchedule"), Some(&4));
    assert_eq!(counts.get("scheduler.GetSchedule"), Some(&4));
}
