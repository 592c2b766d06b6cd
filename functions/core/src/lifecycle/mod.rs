//! The opt-in lifecycle: the obligation record and its state machine, the processor that turns
//! each inbound event into state changes, plugin refs, and quarantine replay.

pub mod optin;
pub mod processor;
pub mod refs;
pub mod replay;
