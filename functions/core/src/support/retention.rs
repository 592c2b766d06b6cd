//! How long the table keeps what it stores: DynamoDB deletes an item some time after its TTL
//! attribute (`expires_at`, epoch seconds) has passed, so every item that holds personal data
//! gets one. Defaults are documented in the README; each is a setting.

use crate::lifecycle::optin::DAY_MS;

/// Retention periods, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// An opt-in after it closed (sent, answered, failed, expired, opted out, declined). An
    /// open one (pending, sending) never expires: its deadline check closes it first.
    pub optin_days: i64,
    /// A person and their marketing tokens after their last event (message, link, referral,
    /// opt-out, token change).
    pub person_days: i64,
    /// A quarantined event after it was received.
    pub quarantine_days: i64,
    /// A data-deletion receipt (the status page) after the request.
    pub receipt_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            optin_days: 400,
            person_days: 400,
            quarantine_days: 90,
            receipt_days: 90,
        }
    }
}

/// An identity pointer outlives its opt-in's creation by the opt-in retention plus this: an
/// opt-in closes within a day of its creation, and is usually answered within weeks.
pub const POINTER_MARGIN_DAYS: i64 = 30;

impl Retention {
    /// `expires_at` (epoch seconds) of an opt-in that closed at `closed_at_ms`.
    pub fn optin_expires_at(&self, closed_at_ms: i64) -> i64 {
        expires_at(closed_at_ms, self.optin_days)
    }

    /// `expires_at` of a person (or token) whose last event was at `at_ms`.
    pub fn person_expires_at(&self, at_ms: i64) -> i64 {
        expires_at(at_ms, self.person_days)
    }

    /// `expires_at` of an identity pointer written for an opt-in of `at_ms`.
    pub fn pointer_expires_at(&self, at_ms: i64) -> i64 {
        expires_at(at_ms, self.optin_days.saturating_add(POINTER_MARGIN_DAYS))
    }

    pub fn quarantine_expires_at(&self, received_at_ms: i64) -> i64 {
        expires_at(received_at_ms, self.quarantine_days)
    }

    pub fn receipt_expires_at(&self, requested_at_ms: i64) -> i64 {
        expires_at(requested_at_ms, self.receipt_days)
    }
}

fn expires_at(at_ms: i64, days: i64) -> i64 {
    at_ms
        .div_euclid(1000)
        .saturating_add(days.saturating_mul(DAY_MS / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_in_seconds() {
        let r = Retention::default();
        let t = 1_700_000_000_999;
        assert_eq!(r.optin_expires_at(t), 1_700_000_000 + 400 * 86_400);
        assert_eq!(r.person_expires_at(t), 1_700_000_000 + 400 * 86_400);
        assert_eq!(r.pointer_expires_at(t), 1_700_000_000 + 430 * 86_400);
        assert_eq!(r.quarantine_expires_at(t), 1_700_000_000 + 90 * 86_400);
        assert_eq!(r.receipt_expires_at(t), 1_700_000_000 + 90 * 86_400);
    }
}
