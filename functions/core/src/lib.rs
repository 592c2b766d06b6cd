//! login-connect domain.
//!
//! Everything here is plain Rust: no AWS SDK, no Lambda runtime. The Lambda binaries and the
//! local runner wire these pieces to real adapters (`lc-adapters`) or to the in-memory twins in
//! [`memory`].

pub mod bus;
pub mod consumer;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod deadline;
pub mod funnel;
pub mod lifecycle;
pub mod login;
pub mod memory;
pub mod operations;
pub mod people;
pub mod ports;
pub mod sending;
pub mod support;
pub mod webhook;
