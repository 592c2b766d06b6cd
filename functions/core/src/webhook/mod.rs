//! Meta webhooks: the typed payload model, the normalized queue event, and signature checks.

pub mod event;
pub mod model;
pub mod normalize;
pub mod signature;

pub use event::{Channel, EventKind, Identity, IdentityKind, InboundEvent, Quarantine};
pub use normalize::{split_body, SplitOutcome};
