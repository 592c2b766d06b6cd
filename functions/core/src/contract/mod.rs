//! Contract test suites for the ports: the behaviour every adapter of a port must show, written
//! once and run against the in-memory twin (`tests/*_memory.rs`) and the AWS adapter against
//! moto (`lc-adapters/tests/*_moto.rs`). The store's race suite ([`races`]) needs a store that
//! is atomic per request under real concurrency: it runs against the twin
//! (`tests/store_races_memory.rs`) and dynalite (`lc-adapters/tests/dynamodb_races.rs`), not moto.
//!
//! The suites are ordinary async functions that panic on a failed expectation, so they run under
//! any test harness and runtime (the races: any multi-thread tokio runtime). Compiled for this crate's own tests and, for other crates (and
//! this crate's integration tests), behind the `contract` feature.

pub mod bus;
pub mod identity;
pub mod races;
pub mod requests;
pub mod scheduler;
pub mod store;
