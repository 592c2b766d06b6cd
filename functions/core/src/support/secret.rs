//! Secrets: values that must never reach a log, a response or a panic message.
//!
//! The deployed service reads one JSON secret (AWS Secrets Manager); locally it comes from the
//! environment or a file. Its shape is [`Secrets`]; see the README for the documented JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A secret string. `Debug` and `Display` print a fixed placeholder, never the value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (an HMAC key, an HTTP query parameter).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality with an untrusted candidate.
    pub fn matches(&self, candidate: &str) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One Meta app whose webhooks we accept (multi-app deployments list several).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_secret: Secret,
    /// App Dashboard > Settings > Advanced > Client token; needed only for login_id derivation.
    #[serde(default)]
    pub client_token: Secret,
}

/// The whole secret document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub apps: Vec<AppCredentials>,
    pub verify_token: Secret,
    /// Page id -> Page access token.
    #[serde(default)]
    pub page_tokens: BTreeMap<String, Secret>,
    /// Key id -> base64 32-byte key, for signed `ref` values.
    #[serde(default)]
    pub ref_keys: BTreeMap<String, Secret>,
}

impl Secrets {
    pub fn from_json(text: &str) -> Result<Self, SecretsError> {
        let s: Secrets =
            serde_json::from_str(text).map_err(|e| SecretsError::Invalid(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// A document that cannot verify any webhook is refused at load, not at the first request.
    pub fn validate(&self) -> Result<(), SecretsError> {
        if self.apps.is_empty() || self.apps.iter().any(|a| a.app_secret.is_empty()) {
            return Err(SecretsError::Invalid(
                "at least one app with a non-empty app_secret is required".into(),
            ));
        }
        if self.verify_token.is_empty() {
            return Err(SecretsError::Invalid("verify_token is empty".into()));
        }
        Ok(())
    }

    pub fn app_secrets(&self) -> impl Iterator<Item = &Secret> {
        self.apps.iter().map(|a| &a.app_secret)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    /// The message never contains secret values: serde reports positions and field names only.
    #[error("secrets document invalid: {0}")]
    Invalid(String),
    #[error("secrets unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        let doc = Secrets {
            apps: vec![AppCredentials {
                app_id: "1".into(),
                app_secret: s,
                client_token: Secret::new("ct"),
            }],
            verify_token: Secret::new("vt"),
            ..Default::default()
        };
        let dbg = format!("{doc:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("\"vt\"") && !dbg.contains("ct\""));
    }

    #[test]
    fn matches_is_exact() {
        let s = Secret::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abcd"));
        assert!(!s.matches(""));
        assert!(
            !Secret::new("").matches(""),
            "an empty secret matches nothing"
        );
    }

    #[test]
    fn parses_and_validates_the_document() {
        let ok = r#"{"apps":[{"app_id":"1","app_secret":"s"}],"verify_token":"v",
                     "page_tokens":{"10":"t"}}"#;
        let s = Secrets::from_json(ok).unwrap();
        assert_eq!(s.page_tokens["10"].expose(), "t");
        assert!(Secrets::from_json(r#"{"apps":[],"verify_token":"v"}"#).is_err());
        let err =
            Secrets::from_json(r#"{"apps":[{"app_id":"1","app_secret":"s3cr3t"}]}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }
}
