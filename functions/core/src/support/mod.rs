//! Small shared utilities: secrets that never print, hashed ids for logs, UTC formatting.

pub mod privacy;
pub mod secret;
pub mod time;
