//! In-memory adapters: the local runner's embedded default and the fast unit-test backends.
//! They keep the semantics of the AWS services they stand for (visibility timeouts, redrive,
//! per-entry batch failures), so code tested on them behaves the same on AWS. Like a network
//! request, every port call yields to the scheduler before and after its (atomic) step, so the
//! callers' read-then-write sequences interleave in tests as they would against AWS.

pub mod bus;
pub mod clock;
pub mod queue;
mod requests;
pub mod scheduler;
pub mod store;

pub use bus::MemoryBus;
pub use clock::ManualClock;
pub use queue::{MemoryQueue, QueueFault, Received};
pub use scheduler::MemoryScheduler;
pub use store::{MemoryStore, StoreOp};
