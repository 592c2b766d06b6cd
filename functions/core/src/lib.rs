//! login-connect domain.
//!
//! Everything here is plain Rust: no AWS SDK, no Lambda runtime. The Lambda binaries and the
//! local runner wire these pieces to real adapters (`lc-adapters`) or to the in-memory twins in
//! [`memory`].

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod deadline;
pub mod events;
pub mod first_message;
pub mod graph_errors;
pub mod graph_usage;
pub mod ingest;
pub mod login;
pub mod login_id;
pub mod memory;
pub mod optin;
pub mod policy;
pub mod ports;
pub mod privacy;
pub mod replay;
pub mod secret;
pub mod sender;
pub mod signed_ref;
pub mod time;
pub mod webhook;
