//! Sending: the first-message sender, the follow-up sender (`POST /v1/messages`), the
//! messaging policy, Meta's Send API error taxonomy,
//! usage-header pacing, first-message content, and the route of a send (Page token or
//! Instagram Login).

pub mod delivery;
pub mod errors;
pub mod first_message;
pub mod followup;
pub mod pacing;
pub mod policy;
pub mod route;
pub mod sender;
pub mod usage;
