//! Secrets from AWS Secrets Manager: one JSON document (shape: `lc_core::support::secret::Secrets`),
//! cached for a TTL so a rotation shows up without a redeploy. If a refresh fails while a
//! previous value is held, the previous value keeps serving (and the failure is logged):
//! a Secrets Manager blip must not turn into refused webhooks.

use std::future::Future;
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
    cache: Cache,
}

impl SecretsManagerSource {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        SecretsManagerSource {
            client,
            secret_id: secret_id.into(),
            cache: Cache::new(ttl),
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
        parse(out.secret_string())
    }
}

/// The `SecretString` of the secret, parsed. Its errors are logged on every failed refresh, so
/// they carry field paths and types only (see `Secrets::from_json`).
fn parse(secret_string: Option<&str>) -> Result<Secrets, SecretsError> {
    let text =
        secret_string.ok_or_else(|| SecretsError::Invalid("secret has no SecretString".into()))?;
    Secrets::from_json(text)
}

/// The TTL cache, apart from the AWS client so its logging can be tested without AWS.
struct Cache {
    ttl: Duration,
    slot: Mutex<Option<(Instant, Arc<Secrets>)>>,
}

impl Cache {
    fn new(ttl: Duration) -> Self {
        Cache {
            ttl,
            slot: Mutex::new(None),
        }
    }

    async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<Secrets>, SecretsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Secrets, SecretsError>>,
    {
        // One lock: concurrent requests on a cold cache make one call, not many.
        let mut cache = self.slot.lock().await;
        if let Some((at, value)) = cache.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        match fetch().await {
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

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secrets(&self) -> Result<Arc<Secrets>, SecretsError> {
        self.cache.get(|| self.fetch()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    const MARKER: &str = "MARKER-9f2c";
    const GOOD: &str = r#"{"apps":[{"app_id":"1","app_secret":"MARKER-9f2c-secret"}],
                           "verify_token":"MARKER-9f2c-vt","page_tokens":{"10":"MARKER-9f2c-pt"}}"#;
    /// One of each kind: wrong type, string in place of a container, missing field, extra
    /// nesting, invalid JSON cut inside a marked string.
    const MALFORMED: &[&str] = &[
        r#"{"apps":[{"app_id":"1","app_secret":"MARKER-9f2c-secret"}],"verify_token":918273645}"#,
        r#"{"apps":"MARKER-9f2c","verify_token":"MARKER-9f2c-vt"}"#,
        r#"{"apps":[{"app_id":"MARKER-9f2c-id"}],"verify_token":"MARKER-9f2c-vt"}"#,
        r#"{"apps":[{"app_id":"1","app_secret":{"v":["MARKER-9f2c"]}}],"verify_token":"v"}"#,
        r#"{"secrets":{"apps":[{"app_id":"1","app_secret":"MARKER-9f2c"}]}}"#,
        r#"{"apps":[{"app_id":"1","app_secret":"MARKER-9f2c"#,
        r#"{"apps":[{"app_id":"1","app_secret":"MARKER-9f2c\q"}],"verify_token":"v"}"#,
        "",
    ];

    #[derive(Clone, Default)]
    struct Buffer(Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    #[tokio::test]
    async fn malformed_refreshes_log_no_secret_value() {
        let logs = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        // A zero TTL refreshes on every call: each malformed document is one failed refresh.
        let cache = Cache::new(Duration::ZERO);
        let good = cache.get(|| async { parse(Some(GOOD)) }).await.unwrap();
        for doc in MALFORMED {
            let served = cache.get(|| async { parse(Some(doc)) }).await.unwrap();
            assert_eq!(served, good, "the cached value keeps serving");
        }
        let served = cache.get(|| async { parse(None) }).await.unwrap();
        assert_eq!(served, good);

        // A cold cache hands the error to the caller, who logs or returns it.
        for doc in MALFORMED {
            let err = Cache::new(Duration::ZERO)
                .get(|| async { parse(Some(doc)) })
                .await
                .unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(
                    !shown.contains(MARKER) && !shown.contains("918273645"),
                    "{shown}"
                );
            }
        }

        let text = logs.text();
        let warnings = text.matches("secret refresh failed").count();
        assert_eq!(
            warnings,
            MALFORMED.len() + 1,
            "every failed refresh is logged: {text}"
        );
        assert!(text.contains("apps[0].app_secret: missing"), "{text}");
        assert!(
            !text.contains(MARKER) && !text.contains("918273645"),
            "a log line echoes a secret value: {text}"
        );
    }
}
