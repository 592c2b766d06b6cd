//! Meta webhooks in: the typed payload model, the normalized inbound event, signature checks,
//! and the intake decision (verify, split, enqueue) that the HTTP router calls.

pub(crate) mod head;
pub mod inbound;
pub mod intake;
pub mod model;
pub mod normalize;
pub mod signature;

pub use inbound::{Channel, EventKind, Identity, IdentityKind, InboundEvent, Quarantine};
pub use normalize::{split_body, SplitOutcome};
