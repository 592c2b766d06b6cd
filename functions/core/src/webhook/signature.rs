//! `X-Hub-Signature-256` verification.
//!
//! Meta signs the exact bytes it sends with HMAC-SHA256 keyed by the App Secret. We check those
//! bytes as received: any re-serialization (Meta escapes `/` and non-ASCII) breaks the signature,
//! and that is the point. Several app secrets may be configured (one deployment serving several
//! apps); a body valid under any of them passes. The legacy SHA-1 header alone is refused.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::support::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused. Used for logs and metrics only: every variant gets the same
/// response, and none of them carries anything about the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Only the legacy `X-Hub-Signature` (sha1) header.
    Sha1Only,
    /// Header present but not `sha256=<64 hex>`.
    Malformed,
    /// Well-formed, but no configured secret produces it.
    Mismatch,
    /// No secret is configured: nothing can be verified.
    NoSecrets,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Sha1Only => "sha1_only",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
            SignatureError::NoSecrets => "no_secrets",
        }
    }
}

/// Computes the header value Meta would send for `body` under `secret` (tests, the local
/// runner's `send` command, load tools).
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret.as_bytes(), body)))
}

fn mac(key: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(body);
    m.finalize().into_bytes().into()
}

fn parse_header(value: &str) -> Option<[u8; 32]> {
    let hex_part = value.trim().strip_prefix("sha256=")?;
    if hex_part.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    // Hex is case-insensitive: upper-case digits name the same bytes.
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Verifies `body` against the `X-Hub-Signature-256` header value.
///
/// Returns the index of the secret that matched. Every secret is tried (no early exit), so the
/// time taken does not tell which one matched or how close a forgery came.
pub fn verify<'a>(
    signature_256: Option<&str>,
    has_sha1_header: bool,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<usize, SignatureError> {
    let Some(header) = signature_256 else {
        return Err(if has_sha1_header {
            SignatureError::Sha1Only
        } else {
            SignatureError::Missing
        });
    };
    let Some(claimed) = parse_header(header) else {
        return Err(SignatureError::Malformed);
    };
    let mut found = Choice::from(0);
    let mut index = 0usize;
    let mut count = 0usize;
    for (i, secret) in secrets.into_iter().enumerate() {
        count += 1;
        if secret.is_empty() {
            continue;
        }
        let ok = mac(secret.expose().as_bytes(), body).ct_eq(&claimed);
        // Remember the first match without branching on secret data.
        let take = ok & !found;
        index = if bool::from(take) { i } else { index };
        found |= ok;
    }
    if count == 0 {
        return Err(SignatureError::NoSecrets);
    }
    if bool::from(found) {
        Ok(index)
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m_1","text":"caf\u00e9 \/ ok"}}]}]}"#;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn table() {
        let good = sign("s1", BODY);
        let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
        let truncated = good[..good.len() - 2].to_string();
        let wrong = sign("other", BODY);
        let empty_key = sign("", BODY);
        let sha1 = "sha1=0123456789abcdef0123456789abcdef01234567";
        let reserialized = {
            let v: serde_json::Value = serde_json::from_slice(BODY).unwrap();
            serde_json::to_vec(&v).unwrap()
        };
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            bool,
            &'a [u8],
            &'a [&'a str],
            Result<usize, SignatureError>,
        );
        let cases: Vec<Case> = vec![
            ("valid", Some(&good), false, BODY, &["s1"], Ok(0)),
            (
                "valid for second app",
                Some(&good),
                false,
                BODY,
                &["x", "s1"],
                Ok(1),
            ),
            ("upper-case hex", Some(&upper), false, BODY, &["s1"], Ok(0)),
            (
                "missing",
                None,
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Missing),
            ),
            (
                "sha1 only",
                None,
                true,
                BODY,
                &["s1"],
                Err(SignatureError::Sha1Only),
            ),
            (
                "sha1 in the 256 header",
                Some(sha1),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Malformed),
            ),
            (
                "no prefix",
                Some(&good["sha256=".len()..]),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Malformed),
            ),
            (
                "truncated",
                Some(&truncated),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Malformed),
            ),
            (
                "not hex",
                Some("sha256=zz"),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Malformed),
            ),
            (
                "empty",
                Some(""),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Malformed),
            ),
            (
                "wrong secret",
                Some(&wrong),
                false,
                BODY,
                &["s1"],
                Err(SignatureError::Mismatch),
            ),
            (
                "re-serialized body",
                Some(&good),
                false,
                &reserialized,
                &["s1"],
                Err(SignatureError::Mismatch),
            ),
            (
                "body with one byte more",
                Some(&good),
                false,
                b"x",
                &["s1"],
                Err(SignatureError::Mismatch),
            ),
            (
                "no secrets",
                Some(&good),
                false,
                BODY,
                &[],
                Err(SignatureError::NoSecrets),
            ),
            (
                "empty secret never matches",
                Some(&empty_key),
                false,
                BODY,
                &[""],
                Err(SignatureError::Mismatch),
            ),
        ];
        for (name, header, sha1, body, keys, want) in cases {
            let got = verify(header, sha1, body, &secrets(keys));
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn reserialization_really_changes_the_bytes() {
        let v: serde_json::Value = serde_json::from_slice(BODY).unwrap();
        assert_ne!(serde_json::to_vec(&v).unwrap(), BODY);
    }
}
