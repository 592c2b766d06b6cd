//! Small shared utilities: secrets that never print, hashed ids for logs, UTC formatting,
//! retention periods.

pub mod privacy;
pub mod retention;
pub mod secret;
pub mod time;
