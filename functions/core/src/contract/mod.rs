//! Contract test suites for the ports: the behaviour every adapter of a port must show, written
//! once and run against the in-memory twin (`tests/*_memory.rs`) and the AWS adapter against
//! moto (`lc-adapters/tests/*_moto.rs`).
//!
//! The suites are ordinary async functions that panic on a failed expectation, so they run under
//! any test harness and runtime. Compiled for this crate's own tests and, for other crates (and
//! this crate's integration tests), behind the `contract` feature.

pub mod scheduler;
pub mod store;
