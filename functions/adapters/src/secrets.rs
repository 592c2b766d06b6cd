//! Secrets from AWS Secrets Manager: one JSON document (shape: `lc_core::support::secret::Secrets`),
//! cached for a TTL so a rotation shows up without a redeploy. If a refresh fails while a
//! previous value is held, the previous value keeps serving (and the failure is logged):
//! a Secrets Manager blip must not turn into refused webhooks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use lc_core::ports::SecretSource;
use lc_core::support::secret::{Secrets, SecretsError};
use tokio::sync::Mutex;

use crate::aws::port_error;

pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<Secrets>)>>,
}

impl SecretsManagerSource {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        SecretsManagerSource {
            client,
            secret_id: secret_id.into(),
            ttl,
            cache: Mutex::new(None),
        }
    }

    async fn fetch(&self) -> Result<Secrets, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretsError::Unavailable(port_error("GetSecretValue", &e).to_string()))?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretsError::Invalid("secret has no SecretString".into()))?;
        Secrets::from_json(text)
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secrets(&self) -> Result<Arc<Secrets>, SecretsError> {
        // One lock: concurrent requests on a cold cache make one call, not many.
        let mut cache = self.cache.lock().await;
        if let Some((at, value)) = cache.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *cache = Some((Instant::now(), fresh.clone()));
                Ok(fresh)
            }
            Err(e) => match cache.as_ref() {
                Some((_, stale)) => {
                    tracing::warn!(error = %e, "secret refresh failed; serving the cached value");
                    Ok(stale.clone())
                }
                None => Err(e),
            },
        }
    }
}
