//! The follow-up requests a business sent (`POST /v1/messages` or the requests queue), one item
//! per Page and idempotency key: the claim that makes each request go to Meta at most once, the
//! way the opt-in's claim does for the first message (see [`crate::ports::OptinStore`]).
//!
//! ```text
//!            create              claim (lease)            send ok
//!   (none) ---------> accepted ---------------> sending ------------> sent
//!                        ^                         |   retryable / paused Page
//!                        +-------------------------+ (released)
//!                                                  |   Meta refused / gave up
//!                                                  +------------> failed
//!   accepted --(claim)--> sending --(policy refuses at send time)--> refused
//! ```
//!
//! Every transition is one conditional write on the item, so two copies of one request (a
//! client retry, a queue redelivery, the HTTP path and the queue path with the same key) send
//! once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;
use crate::ports::graph::MessagingType;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Accepted,
    Sending,
    Sent,
    Failed,
    Refused,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Accepted => "accepted",
            RequestState::Sending => "sending",
            RequestState::Sent => "sent",
            RequestState::Failed => "failed",
            RequestState::Refused => "refused",
        }
    }

    /// Nothing more will be sent for it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Sent | RequestState::Failed | RequestState::Refused
        )
    }
}

/// One request, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The Page the message goes out from (for an Instagram recipient: the Instagram account).
    pub page_id: String,
    pub idempotency_key: String,
    /// `req_` + 32 hex chars, derived from the Page and the key (see
    /// `sending::followup::request_id`): the same request always has the same id.
    pub request_id: String,
    /// SHA-256 (hex) of the validated request: a key reused for another request is refused.
    pub fingerprint: String,
    /// The validated request as JSON (what the requests queue carries).
    pub body: String,
    pub state: RequestState,
    /// The policy's decision when the request was accepted.
    pub messaging_type: MessagingType,
    #[serde(default)]
    pub tag: Option<String>,
    pub rule: String,
    /// Send attempts claimed so far; also the claim token of the current attempt.
    pub attempts: u32,
    pub lease_until_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub sent_at_ms: Option<i64>,
    /// Why it failed or was refused (`<class or rule>: <reason>`), or the last retryable error.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl RequestRecord {
    /// Could a send be claimed now?
    pub fn claimable(&self, now_ms: i64) -> bool {
        match self.state {
            RequestState::Accepted => true,
            RequestState::Sending => self.lease_until_ms <= now_ms,
            _ => false,
        }
    }
}

/// Result of [`RequestStore::create_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCreated {
    Created,
    /// The key was taken; here is what holds it.
    Exists(Box<RequestRecord>),
}

/// Result of [`RequestStore::claim_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestClaim {
    /// This caller holds the send; `attempts` of the returned record is its claim token.
    Claimed(Box<RequestRecord>),
    /// Someone else holds it, or it is final.
    NotClaimable(Box<RequestRecord>),
    Missing,
}

/// How a claimed attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFinish {
    Sent {
        message_id: Option<String>,
        sent_at_ms: i64,
    },
    /// Back to `accepted` for a later attempt.
    Release {
        error: String,
    },
    Failed {
        error: String,
    },
    Refused {
        reason: String,
    },
}

#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Creates the request unless its (Page, key) exists.
    async fn create_request(&self, record: &RequestRecord) -> Result<RequestCreated, PortError>;
    /// Strongly consistent read.
    async fn get_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<RequestRecord>, PortError>;
    /// `accepted`, or `sending` with a lapsed lease -> `sending` with a new lease; attempts + 1.
    async fn claim_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<RequestClaim, PortError>;
    /// Ends attempt `attempt` (only if it still holds the claim). `false`: it did not.
    async fn finish_request(
        &self,
        page_id: &str,
        idempotency_key: &str,
        attempt: u32,
        finish: &RequestFinish,
        now_ms: i64,
    ) -> Result<bool, PortError>;
}

/// Applies a finish to a record the caller holds the claim of (both stores use it).
pub fn apply_finish(r: &mut RequestRecord, finish: &RequestFinish, now_ms: i64) {
    match finish {
        RequestFinish::Sent {
            message_id,
            sent_at_ms,
        } => {
            r.state = RequestState::Sent;
            if message_id.is_some() {
                r.message_id.clone_from(message_id);
            }
            r.sent_at_ms = Some(*sent_at_ms);
        }
        RequestFinish::Release { error } => {
            r.state = RequestState::Accepted;
            r.lease_until_ms = 0;
            r.last_error = Some(error.clone());
        }
        RequestFinish::Failed { error } => {
            r.state = RequestState::Failed;
            r.last_error = Some(error.clone());
        }
        RequestFinish::Refused { reason } => {
            r.state = RequestState::Refused;
            r.last_error = Some(reason.clone());
        }
    }
    r.updated_at_ms = now_ms;
}
