//! The store race suite against the in-memory twin, on a multi-thread runtime: the racers run
//! at once, and the twin yields before and after each call like a network request.

use std::sync::Arc;

use lc_core::contract::races;
use lc_core::memory::MemoryStore;

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creators() {
    races::concurrent_creators(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims() {
    races::concurrent_claims(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finish_vs_takeover() {
    races::finish_vs_takeover(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_finish_vs_takeover() {
    races::late_finish_vs_takeover(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_take_job() {
    races::concurrent_take_job(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expire_vs_claim_at_deadline() {
    races::expire_vs_claim_at_deadline(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reopens() {
    races::concurrent_reopens(&store(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn link_vs_claim() {
    races::link_vs_claim(&store(), "mem").await;
}

/// The whole suite twice on one store: prefixes keep the runs apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_share_one_store() {
    let s = store();
    races::run_all(&s, "one", true).await;
    races::run_all(&s, "two", true).await;
}

#[test]
#[should_panic(expected = "multi-thread runtime")]
fn a_current_thread_runtime_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(races::concurrent_claims(&store(), "ct"));
}
