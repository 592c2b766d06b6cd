//! Meta's `signed_request` (data-deletion and deauthorize callbacks):
//! `base64url(HMAC-SHA256(app_secret, <payload part>)) "." base64url(JSON payload)`.
//!
//! The payload names the app-scoped user (`user_id`), the algorithm and when it was issued
//! (`issued_at`) and until when it holds (`expires`, epoch seconds; absent or 0 = no expiry
//! stated, then [`MAX_AGE_SECS`] after `issued_at` applies). Several apps may share this
//! deployment: the first app whose secret verifies the signature is the one that asked.
//! Base64url is read with or without padding (Meta has sent both).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::support::secret::Secrets;

/// Longest signed request accepted (Meta's are a few hundred bytes).
pub const MAX_LEN: usize = 4096;
/// A request that states no expiry is refused this long after it was issued.
pub const MAX_AGE_SECS: i64 = 24 * 60 * 60;
/// A request issued this far in the future (clock skew) is still accepted.
const SKEW_SECS: i64 = 5 * 60;

/// A verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The app whose secret signed it.
    pub app_id: String,
    /// The app-scoped user id.
    pub user_id: String,
    pub issued_at_secs: i64,
}

/// Why a request is refused. Reasons are fixed texts: nothing of the request is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not two base64url parts, not JSON, no user id, another algorithm.
    Malformed(&'static str),
    /// No app secret of this deployment produced the signature.
    Forged,
    /// Authentic, but past `expires` (or too old without one).
    Expired,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    algorithm: Option<String>,
    /// A string in Meta's payloads, a number in some SDKs' fixtures: both are read.
    #[serde(default)]
    user_id: Option<serde_json::Value>,
    #[serde(default)]
    issued_at: Option<i64>,
    #[serde(default)]
    expires: Option<i64>,
}

fn b64(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(part)
        .or_else(|_| URL_SAFE.decode(part))
        .ok()
}

/// Verifies `signed` against every app secret in `secrets`, at `now_secs`.
pub fn verify(signed: &str, secrets: &Secrets, now_secs: i64) -> Result<Verified, Refused> {
    if signed.is_empty() || signed.len() > MAX_LEN {
        return Err(Refused::Malformed("signed_request is empty or too long"));
    }
    let Some((sig_part, payload_part)) = signed.split_once('.') else {
        return Err(Refused::Malformed(
            "signed_request is not <signature>.<payload>",
        ));
    };
    let (Some(sig), Some(payload)) = (b64(sig_part), b64(payload_part)) else {
        return Err(Refused::Malformed("signed_request is not base64url"));
    };
    // The signature is checked before the payload is trusted for anything.
    let app = secrets.apps.iter().find(|a| {
        !a.app_secret.is_empty() && {
            let Ok(mut mac) =
                <Hmac<Sha256> as KeyInit>::new_from_slice(a.app_secret.expose().as_bytes())
            else {
                return false;
            };
            mac.update(payload_part.as_bytes());
            bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&sig))
        }
    });
    let Some(app) = app else {
        return Err(Refused::Forged);
    };
    let payload: Payload = serde_json::from_slice(&payload)
        .map_err(|_| Refused::Malformed("the payload is not a JSON object"))?;
    if !payload
        .algorithm
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256"))
    {
        return Err(Refused::Malformed(
            "the payload's algorithm is not HMAC-SHA256",
        ));
    }
    let user_id = match payload.user_id {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if user_id.is_empty() || user_id.len() > 32 || !user_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed(
            "the payload names no app-scoped user_id",
        ));
    }
    let issued_at = payload.issued_at.unwrap_or(0);
    let expired = match payload.expires {
        Some(e) if e > 0 => now_secs >= e,
        _ => issued_at <= 0 || now_secs > issued_at.saturating_add(MAX_AGE_SECS),
    };
    if expired || issued_at > now_secs.saturating_add(SKEW_SECS) {
        return Err(Refused::Expired);
    }
    Ok(Verified {
        app_id: app.app_id.clone(),
        user_id,
        issued_at_secs: issued_at,
    })
}

/// Signs a payload as Meta does (tests, the local runner).
pub fn sign(payload_json: &str, app_secret: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload_json.as_bytes());
    let sig = match <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(payload.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes a key of any length: unreachable, and an empty tag never verifies.
        Err(_) => Vec::new(),
    };
    format!("{}.{payload}", URL_SAFE_NO_PAD.encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::secret::{AppCredentials, Secret};

    const NOW: i64 = 1_800_000_000;

    fn secrets() -> Secrets {
        let app = |id: &str, s: &str| AppCredentials {
            app_id: id.into(),
            app_secret: Secret::new(s),
            client_token: Secret::default(),
        };
        Secrets {
            apps: vec![app("1", "first-secret"), app("2", "second-secret")],
            ..Secrets::default()
        }
    }

    fn payload(user: &str, expires: i64) -> String {
        format!(
            r#"{{"algorithm":"HMAC-SHA256","expires":{expires},"issued_at":{},"user_id":"{user}"}}"#,
            NOW - 10
        )
    }

    #[test]
    fn any_app_of_the_deployment_may_sign() {
        for (secret, app) in [("first-secret", "1"), ("second-secret", "2")] {
            let v = verify(&sign(&payload("42", NOW + 60), secret), &secrets(), NOW).unwrap();
            assert_eq!((v.app_id.as_str(), v.user_id.as_str()), (app, "42"));
        }
    }

    #[test]
    fn padding_is_optional() {
        let signed = sign(&payload("42", NOW + 60), "first-secret");
        let (s, p) = signed.split_once('.').unwrap();
        let pad = |x: &str| format!("{x}{}", "=".repeat((4 - x.len() % 4) % 4));
        let padded = format!("{}.{}", pad(s), p);
        assert!(verify(&padded, &secrets(), NOW).is_ok());
    }

    #[test]
    fn forged_expired_and_malformed() {
        let s = secrets();
        assert_eq!(
            verify(&sign(&payload("42", NOW + 60), "other"), &s, NOW),
            Err(Refused::Forged)
        );
        // A payload swapped under a valid signature.
        let good = sign(&payload("42", NOW + 60), "first-secret");
        let other = sign(&payload("43", NOW + 60), "first-secret");
        let swapped = format!(
            "{}.{}",
            good.split_once('.').unwrap().0,
            other.split_once('.').unwrap().1
        );
        assert_eq!(verify(&swapped, &s, NOW), Err(Refused::Forged));
        assert_eq!(
            verify(&sign(&payload("42", NOW), "first-secret"), &s, NOW),
            Err(Refused::Expired)
        );
        let no_expiry = format!(
            r#"{{"algorithm":"HMAC-SHA256","issued_at":{},"user_id":"42"}}"#,
            NOW - MAX_AGE_SECS - 1
        );
        assert_eq!(
            verify(&sign(&no_expiry, "first-secret"), &s, NOW),
            Err(Refused::Expired)
        );
        for bad in ["", "abc", "a.b.c", "!!.??", &"a".repeat(MAX_LEN + 1)] {
            assert!(
                matches!(
                    verify(bad, &s, NOW),
                    Err(Refused::Malformed(_) | Refused::Forged)
                ),
                "{bad}"
            );
        }
        for p in [
            "not json",
            r#"{"algorithm":"HMAC-SHA1","user_id":"42","issued_at":1}"#,
            r#"{"algorithm":"HMAC-SHA256","issued_at":1}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":"4 2","issued_at":1}"#,
        ] {
            assert!(
                matches!(
                    verify(&sign(p, "first-secret"), &s, NOW),
                    Err(Refused::Malformed(_))
                ),
                "{p}"
            );
        }
    }
}
