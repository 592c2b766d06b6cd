//! The bus contract on the in-memory twin (the same suite runs on EventBridge in
//! `lc-adapters`' `eventbridge_moto`).

use lc_core::contract::bus::{envelope, run_all};
use lc_core::memory::MemoryBus;

#[tokio::test]
async fn memory_bus_meets_the_bus_contract() {
    let bus = MemoryBus::new();
    let delivered = |_: usize| async { bus.events().iter().map(envelope).collect::<Vec<_>>() };
    run_all(&bus, delivered, "mem").await;
}

/// Refused entries are sent again and nothing is lost (what a throttled PutEvents answers).
#[tokio::test]
async fn refused_entries_are_retried_into_the_contract() {
    let bus = MemoryBus::new();
    bus.refuse_next_entries(3);
    let delivered = |_: usize| async { bus.events().iter().map(envelope).collect::<Vec<_>>() };
    run_all(&bus, delivered, "refused").await;
}
