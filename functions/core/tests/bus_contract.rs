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

/// A bus keeping only counts (a `load` run) counts every accepted event, by detail type too,
/// and keeps none; a refused entry is not counted.
#[tokio::test]
async fn a_counting_bus_counts_by_type_and_keeps_nothing() {
    use lc_core::bus::{BusEvent, DetailType, PersonIds};
    use lc_core::ports::EventBus;
    let event = |t: DetailType, key: &str| {
        BusEvent::new(
            t,
            key,
            1,
            "messenger",
            "100",
            PersonIds::default(),
            serde_json::json!({}),
        )
    };
    let bus = MemoryBus::new();
    bus.put_events(&[event(DetailType::OptInReceived, "a")])
        .await
        .expect("put");
    bus.keep_only_counts();
    bus.refuse_next_entries(1);
    let refused = bus
        .put_events(&[
            event(DetailType::DeliveryRead, "b"),
            event(DetailType::DeliveryRead, "c"),
            event(DetailType::DeliveryRead, "d"),
        ])
        .await
        .expect("put");
    assert_eq!(refused, [0]);
    assert_eq!(bus.count(), 3);
    assert_eq!(bus.count_of(DetailType::DeliveryRead), 2);
    assert_eq!(bus.count_of(DetailType::OptInReceived), 1);
    assert_eq!(
        bus.events().len(),
        1,
        "only what came before keep_only_counts"
    );
}
