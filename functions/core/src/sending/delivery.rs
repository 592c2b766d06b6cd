//! What every sender shares once a message may go: the Page's credentials, pacing from Meta's
//! usage headers, reading a failed send through the error taxonomy, pausing a Page, and
//! retrying the record of a send Meta accepted. The first-message sender
//! ([`crate::sending::sender`]) and the follow-up sender ([`crate::sending::followup`]) both use
//! these, so a Page paced or paused by one is paced or paused for the other's reasons alike.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{self, BusEvent, DetailType, PersonIds};
use crate::ports::graph::{PageAuth, SendError};
use crate::ports::{EventBus, Metric, Metrics, PortError, SecretSource, Table};
use crate::sending::errors::{classify_request, classify_transport, ErrorClass, RequestContext};
use crate::sending::route::SendRoute;
use crate::support::secret::{Secret, Secrets};

/// Page id -> not before (epoch ms): pacing learned from Meta's usage headers. Per process on
/// purpose: cheap, and every instance learns it from its own answers.
#[derive(Debug, Default)]
pub struct PagePacer {
    until: Mutex<HashMap<String, i64>>,
}

impl PagePacer {
    /// How long the Page must still wait, if at all.
    pub fn paced(&self, page_id: &str, now: i64) -> Option<i64> {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(page_id)
            .filter(|until| **until > now)
            .map(|until| until - now)
    }

    /// Remembers a wait Meta's headers asked for (the longest wins).
    pub fn learn(&self, page_id: &str, pace: Option<Duration>, now: i64) {
        if let Some(d) = pace {
            let until = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
            let e = map.entry(page_id.to_string()).or_insert(0);
            *e = (*e).max(until);
            tracing::info!(
                page = page_id,
                pace_ms = d.as_millis() as u64,
                "pacing page"
            );
        }
    }
}

/// Why a send has no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The secret could not be read now (transient).
    Unavailable(String),
    /// The secret has no token for the Page (configuration).
    Missing(String),
}

/// The Page's token, and the app secret for `appsecret_proof` when it is on. `delivered_by`:
/// the app whose webhook brought the person (it keys the proof when several apps share a Page).
pub async fn page_auth(
    secrets: &dyn SecretSource,
    page_id: &str,
    delivered_by: Option<&str>,
    appsecret_proof: bool,
) -> Result<PageAuth, AuthError> {
    let secrets = read_secrets(secrets).await?;
    let token = configured(&secrets.page_tokens, page_id, || {
        format!("no page access token configured for page {page_id}")
    })?;
    with_proof(&secrets, token, page_id, delivered_by, appsecret_proof)
}

/// The credentials of a send along `route`: the Page token for the Page path, the Instagram
/// user token (the secret's `instagram_tokens`, under the Instagram user id) for Instagram
/// Login. Never the other kind in their place: a Page token on graph.instagram.com (or the
/// reverse) is refused by Meta as a token error, which would pause the account for nothing.
pub async fn route_auth(
    secrets: &dyn SecretSource,
    route: &SendRoute,
    delivered_by: Option<&str>,
    appsecret_proof: bool,
) -> Result<PageAuth, AuthError> {
    let ig_user_id = match route {
        SendRoute::Page { page_id, .. } => {
            return page_auth(secrets, page_id, delivered_by, appsecret_proof).await
        }
        SendRoute::InstagramLogin { ig_user_id, .. } => ig_user_id,
    };
    let secrets = read_secrets(secrets).await?;
    let token = configured(&secrets.instagram_tokens, ig_user_id, || {
        format!(
            "no instagram user token configured for instagram user {ig_user_id} \
             (the secret's instagram_tokens)"
        )
    })?;
    // The proof app is looked up under the Instagram user id, so `page_apps` can name the
    // Instagram app whose secret signs this token's proofs.
    with_proof(&secrets, token, ig_user_id, delivered_by, appsecret_proof)
}

/// The non-empty token `tokens` holds for `id`, else `Missing` with what `missing` says.
fn configured(
    tokens: &BTreeMap<String, Secret>,
    id: &str,
    missing: impl FnOnce() -> String,
) -> Result<Secret, AuthError> {
    tokens
        .get(id)
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or_else(|| AuthError::Missing(missing()))
}

async fn read_secrets(secrets: &dyn SecretSource) -> Result<Arc<Secrets>, AuthError> {
    secrets
        .secrets()
        .await
        .map_err(|e| AuthError::Unavailable(format!("secrets unavailable: {e}")))
}

/// `token` with the app secret for `appsecret_proof` when it is on.
fn with_proof(
    secrets: &Secrets,
    access_token: Secret,
    account_id: &str,
    delivered_by: Option<&str>,
    appsecret_proof: bool,
) -> Result<PageAuth, AuthError> {
    let app_secret = if appsecret_proof {
        // The proof must be keyed by the app that owns this token, which with several apps is
        // not simply the first one.
        let app = secrets.proof_app(account_id, delivered_by).ok_or_else(|| {
            AuthError::Missing(format!(
                "appsecret_proof: cannot tell which of {} apps owns {account_id}'s token; \
                 name it in the secret's page_apps",
                secrets.apps.len()
            ))
        })?;
        Some(app.app_secret.clone())
    } else {
        None
    };
    Ok(PageAuth {
        access_token,
        app_secret,
    })
}

/// A failed send, read through the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub class: ErrorClass,
    /// The taxonomy row (or fallback) that matched.
    pub rule: &'static str,
    /// Attempts allowed in all, when the error bounds them more tightly than the sender.
    pub max_attempts: Option<u32>,
    /// The least wait before the next attempt, when the error implies one.
    pub wait_hint_ms: Option<i64>,
    /// The wait Meta's usage headers ask for (answers with a Graph body only).
    pub pace: Option<Duration>,
    /// For logs and the stored error: status, code, subcode and Meta's message (no token).
    pub detail: String,
}

/// Classifies a failed send (knowing what it carried) and counts its class.
pub fn read_failure(
    err: &SendError,
    request: &RequestContext<'_>,
    pace_threshold_percent: u32,
    metrics: &dyn Metrics,
) -> SendFailure {
    let failure = match err {
        SendError::Graph { error, usage } => {
            let c = classify_request(error, request);
            SendFailure {
                class: c.class,
                rule: c.rule,
                max_attempts: c.max_attempts,
                wait_hint_ms: c.wait_hint_secs.map(|s| (s as i64).saturating_mul(1000)),
                pace: usage.pace(pace_threshold_percent),
                detail: format!(
                    "graph {} code={} subcode={} {}",
                    error.http_status,
                    error.code.unwrap_or(0),
                    error.subcode.unwrap_or(0),
                    error.message
                ),
            }
        }
        SendError::Transport { failure, detail } => {
            let c = classify_transport(*failure);
            SendFailure {
                class: c.class,
                rule: c.rule,
                max_attempts: c.max_attempts,
                wait_hint_ms: None,
                pace: None,
                detail: format!("transport: {detail}"),
            }
        }
    };
    metrics.record(Metric::GraphError(failure.class));
    failure
}

/// Pauses the Page (an operator must act) and, when this call paused it, tells the business.
pub async fn pause_page(
    table: &Table,
    bus: &dyn EventBus,
    metrics: &dyn Metrics,
    page_id: &str,
    reason: &str,
    by: &str,
    now: i64,
) -> Result<(), PortError> {
    let applied = table.pages.set_paused(page_id, Some(reason), now).await?;
    if applied {
        let event = BusEvent::new(
            DetailType::PagePaused,
            &format!("pause:{page_id}:{now}"),
            now,
            "messenger",
            page_id,
            PersonIds::default(),
            serde_json::json!({"reason": reason, "by": by}),
        );
        bus::publish_all(bus, &[event]).await?;
    }
    metrics.record(Metric::PagePaused);
    tracing::error!(page = %page_id, reason = %reason, "page paused: operator action needed");
    Ok(())
}

/// Runs `write` up to `attempts` times (at least once), waiting `backoff_ms` and doubling it
/// between tries: the record of a send Meta accepted is worth a few waits inside the lease.
/// Returns the first success, or the last error.
pub async fn retry_record<T, F, Fut>(
    attempts: u32,
    backoff_ms: i64,
    what: &str,
    mut write: F,
) -> Result<T, PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PortError>>,
{
    let mut wait_ms = backoff_ms;
    let mut last = None;
    for round in 0..attempts.max(1) {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms.max(0) as u64)).await;
            wait_ms = wait_ms.saturating_mul(2);
        }
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(round, error = %e, "{what} not recorded yet");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| PortError::Unavailable(format!("{what} not recorded"))))
}
