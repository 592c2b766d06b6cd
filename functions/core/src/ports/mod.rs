//! Ports: the small traits through which the domain talks to the outside (queues, the table,
//! the scheduler, secrets, the Graph API, time). Each has one real adapter in `lc-adapters` and
//! an in-memory twin in [`crate::memory`].

pub mod bus;
pub mod clock;
pub mod graph;
pub mod identity;
pub mod metering;
pub mod metrics;
pub mod queue;
pub mod requests;
pub mod scheduler;
pub mod secrets;
pub mod store;

pub use bus::{EventBus, NoBus};
pub use clock::{Clock, SystemClock};
pub use graph::GraphApi;
pub use identity::IdentityStore;
pub use metering::RequestCounter;
pub use metrics::{MemoryMetrics, Metric, Metrics, NoMetrics};
pub use queue::{
    Attribute, EntryFailure, GroupedMessage, OutMessage, Queue, QueueReceiver, QueueSender,
    Received, VisibilityControl,
};
pub use requests::RequestStore;
pub use scheduler::{OneTimeSchedule, ScheduleCreated, Scheduler};
pub use secrets::SecretSource;
pub use store::{OptinStore, PageStore, PersonStore, QuarantineStore, Table};

/// A failure at a port. The message is for operators: adapters never put secrets or personal
/// data in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backend could not be reached or answered 5xx / throttled: worth retrying.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request as invalid: retrying the same request will not help.
    #[error("request rejected: {0}")]
    Rejected(String),
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Unavailable(_))
    }
}
