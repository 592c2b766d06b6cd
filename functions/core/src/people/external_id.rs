//! The business's own user id (`external_id`), signed by its backend.
//!
//! The login page runs in the person's browser, so an id it posts could be anyone's. The
//! business's backend signs the id it knows for the logged-in user with a key from the secret's
//! `external_id_keys`, in the signed-ref format ([`crate::lifecycle::refs`]: `lcr1s_…`, a key
//! id, an expiry and an HMAC tag; the payload is the id itself), and the page posts that token
//! as `external_id`. Only an authentic, unexpired token whose payload is a valid id
//! ([`valid_external_id`]) is stored. A separate key set from `ref_keys`: a key that mints
//! plugin refs for pages cannot vouch for a user id.

use serde::Deserialize;

use crate::lifecycle::refs::{self, Keyring, RefCheck, RefError};
use crate::ports::identity::valid_external_id;
use crate::support::secret::Secrets;

/// Why a login's `external_id` is refused. Reasons are fixed texts: nothing of the request is
/// echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The token is not a string, not ours, tampered with, expired, or names no valid id.
    BadRequest(&'static str),
    /// An `external_id` was sent but the secret has no `external_id_keys` to check it.
    NotConfigured(&'static str),
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    external_id: Option<String>,
}

/// The verified `external_id` of a login body (`None` when the body names none).
pub fn from_login_body(
    body: &[u8],
    secrets: &Secrets,
    now_ms: i64,
) -> Result<Option<String>, Refused> {
    let parsed: Body = serde_json::from_slice(body).map_err(|_| {
        Refused::BadRequest("external_id must be a string (the signed id from your backend)")
    })?;
    let Some(signed) = parsed.external_id.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let keys = Keyring::external_id_keys(secrets);
    if keys.is_empty() {
        return Err(Refused::NotConfigured(
            "an external_id was sent but the secret has no external_id_keys to verify it",
        ));
    }
    verify(&signed, &keys, now_ms.div_euclid(1000)).map(Some)
}

/// Checks a signed `external_id` and returns the id.
pub fn verify(signed: &str, keys: &Keyring, now_secs: i64) -> Result<String, Refused> {
    match refs::verify(signed, keys, now_secs) {
        RefCheck::Valid { payload, .. } => String::from_utf8(payload)
            .ok()
            .filter(|id| valid_external_id(id))
            .ok_or(Refused::BadRequest(
                "external_id: the signed payload is not a valid id ([A-Za-z0-9._:@+-], 1-128)",
            )),
        RefCheck::Expired { .. } => Err(Refused::BadRequest(
            "external_id has expired: sign a fresh one for each login",
        )),
        RefCheck::Invalid(_) | RefCheck::Opaque => Err(Refused::BadRequest(
            "external_id is not signed with a key in external_id_keys",
        )),
    }
}

/// Signs `external_id` as the business's backend does (tests, the local runner, and the
/// reference for other languages: see `docs/people.md`).
pub fn mint(
    key_id: u8,
    key: &[u8; 32],
    external_id: &str,
    expires_at_secs: i64,
) -> Result<String, RefError> {
    refs::mint(key_id, key, external_id.as_bytes(), expires_at_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::secret::Secret;

    const K: [u8; 32] = [7; 32];
    const NOW: i64 = 1_800_000_000;

    fn secrets() -> Secrets {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, K);
        let mut s = Secrets::default();
        s.external_id_keys.insert("3".into(), Secret::new(b64));
        s
    }

    fn body(x: &str) -> Vec<u8> {
        serde_json::json!({"access_token": "t", "external_id": x})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_signed_id_is_accepted_until_it_expires() {
        let signed = mint(3, &K, "user-42@shop.example", NOW + 60).unwrap();
        let at = |secs: i64| from_login_body(&body(&signed), &secrets(), secs * 1000);
        assert_eq!(at(NOW), Ok(Some("user-42@shop.example".into())));
        assert!(matches!(at(NOW + 60), Err(Refused::BadRequest(m)) if m.contains("expired")));
    }

    #[test]
    fn absent_forged_and_misconfigured() {
        let s = secrets();
        assert_eq!(from_login_body(br#"{"access_token":"t"}"#, &s, 0), Ok(None));
        assert_eq!(from_login_body(&body(""), &s, 0), Ok(None));
        assert!(matches!(
            from_login_body(br#"{"external_id":5}"#, &s, 0),
            Err(Refused::BadRequest(_))
        ));
        for forged in [
            "user-42".to_string(),
            mint(3, &[8; 32], "user-42", NOW + 60).unwrap(),
            mint(4, &K, "user-42", NOW + 60).unwrap(),
        ] {
            assert!(
                matches!(
                    from_login_body(&body(&forged), &s, NOW * 1000),
                    Err(Refused::BadRequest(m)) if m.contains("not signed")
                ),
                "{forged}"
            );
        }
        let bad_id = mint(3, &K, "a#b", NOW + 60).unwrap();
        assert!(matches!(
            from_login_body(&body(&bad_id), &s, NOW * 1000),
            Err(Refused::BadRequest(m)) if m.contains("not a valid id")
        ));
        let signed = mint(3, &K, "u", NOW + 60).unwrap();
        assert!(matches!(
            from_login_body(&body(&signed), &Secrets::default(), NOW * 1000),
            Err(Refused::NotConfigured(_))
        ));
    }
}
