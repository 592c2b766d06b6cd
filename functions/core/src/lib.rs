//! login-connect domain.
//!
//! Everything here is plain Rust: no AWS SDK, no Lambda runtime. The Lambda binaries and the
//! local runner wire these pieces to real adapters (`lc-adapters`) or to the in-memory twins in
//! [`memory`].

pub mod graph_errors;
pub mod graph_usage;
pub mod ingest;
pub mod login_id;
pub mod memory;
pub mod ports;
pub mod privacy;
pub mod secret;
pub mod signed_ref;
pub mod webhook;
