//! Configuration from the environment, read once at cold start.
//!
//! Secrets never come from plain environment variables when deployed: the template passes
//! `LC_SECRET_ID` (a Secrets Manager id). Locally, a JSON file (`LC_SECRETS_FILE`) or, for a
//! quick try, `LC_APP_SECRET` + `LC_VERIFY_TOKEN` work too.

use std::sync::Arc;
use std::time::Duration;

use lc_core::ports::SecretSource;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};

use crate::secrets::SecretsManagerSource;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0}: {1}")]
    Invalid(&'static str, String),
}

pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn parse_or<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match optional(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid(name, e.to_string())),
    }
}

/// A boolean setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case); unset keeps
/// the default. The one place booleans are read from the environment.
pub fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(name) {
        None => Ok(default),
        Some(v) => parse_bool(&v).ok_or_else(|| {
            ConfigError::Invalid(name, format!("expected true or false, got {:?}", v.trim()))
        }),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Picks the secret source: Secrets Manager (`LC_SECRET_ID`, cached `LC_SECRET_TTL_SECS`,
/// default 300), else a file (`LC_SECRETS_FILE`), else `LC_APP_SECRET` + `LC_VERIFY_TOKEN`.
pub fn secret_source(sdk: &aws_config::SdkConfig) -> Result<Arc<dyn SecretSource>, ConfigError> {
    if let Some(id) = optional("LC_SECRET_ID") {
        let ttl = parse_or("LC_SECRET_TTL_SECS", 300u64)?;
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        return Ok(Arc::new(SecretsManagerSource::new(
            client,
            id,
            Duration::from_secs(ttl),
        )));
    }
    Ok(Arc::new(Arc::new(local_secrets()?)))
}

/// Secrets for local runs: a file, or two variables.
pub fn local_secrets() -> Result<Secrets, ConfigError> {
    if let Some(path) = optional("LC_SECRETS_FILE") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Invalid("LC_SECRETS_FILE", e.to_string()))?;
        return Secrets::from_json(&text)
            .map_err(|e| ConfigError::Invalid("LC_SECRETS_FILE", e.to_string()));
    }
    let secrets = Secrets {
        apps: required("LC_APP_SECRET")?
            .split(',')
            .map(|s| AppCredentials {
                app_id: optional("LC_APP_ID").unwrap_or_default(),
                app_secret: Secret::new(s.trim()),
                client_token: Secret::new(optional("LC_CLIENT_TOKEN").unwrap_or_default()),
            })
            .collect(),
        verify_token: Secret::new(required("LC_VERIFY_TOKEN")?),
        ..Default::default()
    };
    secrets
        .validate()
        .map_err(|e| ConfigError::Invalid("LC_APP_SECRET", e.to_string()))?;
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans_in_every_spelling() {
        for v in ["true", " TRUE ", "1", "yes", "On"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["false", "0", "no", "OFF"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
