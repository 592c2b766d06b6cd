//! Where secrets come from (Secrets Manager when deployed; env or a file locally).

use std::sync::Arc;

use async_trait::async_trait;

use crate::support::secret::{Secrets, SecretsError};

#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current secrets. Implementations cache; rotation shows up within their TTL.
    async fn secrets(&self) -> Result<Arc<Secrets>, SecretsError>;
}

/// Fixed secrets (tests, local runner).
#[async_trait]
impl SecretSource for Arc<Secrets> {
    async fn secrets(&self) -> Result<Arc<Secrets>, SecretsError> {
        Ok(self.clone())
    }
}
