//! Sending: the first-message sender, the follow-up sender (`POST /v1/messages`), the
//! messaging policy, Meta's Send API error taxonomy,
//! usage-header pacing, and first-message content.

pub mod delivery;
pub mod errors;
pub mod first_message;
pub mod followup;
pub mod pacing;
pub mod policy;
pub mod sender;
pub mod usage;
