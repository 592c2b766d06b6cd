//! What is true now, measured: the sweep (every minute) and the Page token check (daily).
//!
//! # The sweep's reads, and what they cost
//! Both gauges read the table's one sparse index (`ops`, see `lc_adapters::dynamodb`), which
//! holds only what an operator must see: the Pages paused now, and the opt-ins still owed a
//! first message. An answered opt-in is not in it, so a sweep reads the backlog, never the
//! history:
//!
//! - paused Pages: one `Query` of the index partition `PAUSED` (a handful of small items);
//! - the oldest owed first messages: one `Query` with `Limit` per index shard (8), oldest
//!   first, plus one `GetItem` per listed opt-in older than [`super::OpsConfig::at_risk_after_ms`]
//!   (none on a healthy day).
//!
//! A healthy sweep is 9 eventually consistent queries of at most a few KB: about 4.5 read
//! units a minute, under 200,000 a month ($0.03 at on-demand prices). The price is paid on the
//! write side: an opt-in enters the index when created and leaves it when its first message is
//! sent (or it closes otherwise), two index writes per opt-in; Pages enter and leave on pause
//! and resume.

use serde_json::{json, Value};

use super::{optin_hash, Done, Operations};
use crate::lifecycle::optin::DAY_MS;
use crate::ports::{Metric, PortError};
use crate::support::secret::Secret;
use crate::support::time::format_rfc3339_ms;

impl Operations {
    /// The gauges: Pages paused now (one log line each, for the dashboard's "paused Pages
    /// now"), and the age of the oldest first message still owed (one log line for each owed
    /// one older than the at-risk age, for "at risk now").
    pub(crate) async fn sweep(&self) -> Result<Done, PortError> {
        let now = self.now();
        let paused = self
            .ports
            .table
            .pages
            .list_paused(self.config.paused_listed)
            .await?;
        self.ports.metrics.record(Metric::PagesPausedNow(
            u32::try_from(paused.len()).unwrap_or(u32::MAX),
        ));
        let mut pages = Vec::new();
        for p in &paused {
            let since = p.paused_at_ms.unwrap_or(now);
            tracing::warn!(
                page = %p.page_id,
                reason = p.paused_reason.as_deref().unwrap_or(""),
                paused_at = %format_rfc3339_ms(since),
                paused_min = (now - since) / 60_000,
                "page paused now"
            );
            pages.push(json!({
                "page_id": p.page_id,
                "reason": p.paused_reason,
                "paused_at": format_rfc3339_ms(since),
                "paused_for_min": (now - since) / 60_000,
            }));
        }

        let owed = self
            .ports
            .table
            .optins
            .oldest_unsent(self.config.unsent_listed)
            .await?;
        let oldest_age_s = owed
            .first()
            .map(|u| ((now - u.opted_in_at_ms) / 1000).max(0))
            .unwrap_or(0);
        self.ports
            .metrics
            .record(Metric::OldestUnsentFirstMessageAge {
                seconds: oldest_age_s,
            });
        let mut at_risk = Vec::new();
        for u in owed
            .iter()
            .filter(|u| now - u.opted_in_at_ms >= self.config.at_risk_after_ms)
        {
            let Some(o) = self.ports.table.optins.get_optin(&u.optin_key).await? else {
                continue;
            };
            let age_min = (now - o.opted_in_at_ms) / 60_000;
            let deadline_in_min = (o.deadline_at_ms - now) / 60_000;
            tracing::warn!(
                optin = %optin_hash(&u.optin_key),
                page = %o.page_id,
                state = o.state.as_str(),
                age_min,
                deadline_in_min,
                attempts = o.attempts,
                last_error = o.last_error.as_deref().unwrap_or(""),
                "first message unsent"
            );
            at_risk.push(json!({
                "optin_key": u.optin_key,
                "page_id": o.page_id,
                "state": o.state.as_str(),
                "opted_in_at": format_rfc3339_ms(o.opted_in_at_ms),
                "age_min": age_min,
                "deadline_in_min": deadline_in_min,
                "attempts": o.attempts,
                "last_error": o.last_error,
            }));
        }
        Ok(Done::answer(json!({
            "outcome": "measured",
            "pages_paused": pages.len(),
            "paused_pages": pages,
            "oldest_unsent_age_s": oldest_age_s,
            "oldest_unsent_age_h": format!("{:.1}", oldest_age_s as f64 / 3600.0),
            "unsent_listed": owed.len(),
            "at_risk": at_risk,
            "at_risk_after_min": self.config.at_risk_after_ms / 60_000,
        })))
    }

    /// `debug_token` on every Page token of the secret. `record`: write the gauges (the
    /// command; `show_page` only reads). A token is never logged or answered, only what Meta
    /// says of it.
    pub(crate) async fn check_page_tokens(&self, record: bool) -> Result<Done, PortError> {
        let secrets = self
            .ports
            .secrets
            .secrets()
            .await
            .map_err(|e| PortError::Unavailable(format!("secrets: {e}")))?;
        let mut pages = Vec::new();
        for page_id in secrets.page_tokens.keys() {
            let checked = self.check_token(page_id, record).await?;
            pages.push(checked);
        }
        let invalid = pages.iter().filter(|p| p["valid"] == json!(false)).count();
        let expiring = pages
            .iter()
            .filter(|p| p["days_to_expiry"].as_i64().is_some_and(|d| d <= 7))
            .count();
        Ok(Done::answer(json!({
            "outcome": if pages.is_empty() { "no_page_tokens" } else { "checked" },
            "pages": pages,
            "invalid": invalid,
            "expiring_within_7_days": expiring,
        })))
    }

    /// One Page's token, as `debug_token` sees it.
    pub(crate) async fn check_token(
        &self,
        page_id: &str,
        record: bool,
    ) -> Result<Value, PortError> {
        let secrets = self
            .ports
            .secrets
            .secrets()
            .await
            .map_err(|e| PortError::Unavailable(format!("secrets: {e}")))?;
        let Some(token) = secrets.page_tokens.get(page_id).filter(|t| !t.is_empty()) else {
            return Ok(
                json!({"page_id": page_id, "configured": false, "valid": false,
                             "problem": "no page access token in the secret (page_tokens)"}),
            );
        };
        // The app that owns the token checks it (the one `page_apps` names, else the only
        // one), else the first app.
        let Some(app) = secrets
            .proof_app(page_id, None)
            .or_else(|| secrets.apps.first())
        else {
            return Ok(
                json!({"page_id": page_id, "configured": true, "valid": Value::Null,
                             "problem": "no app in the secret to check the token with"}),
            );
        };
        let app_token = Secret::new(format!("{}|{}", app.app_id, app.app_secret.expose()));
        let now = self.now();
        let answer = match self.ports.graph.debug_token(&app_token, token).await {
            Ok(info) => {
                let expires_at_ms = info
                    .expires_at_secs
                    .filter(|s| *s > 0)
                    .map(|s| s.saturating_mul(1000));
                let days = expires_at_ms.map(|at| ((at - now) / DAY_MS).max(0));
                let foreign = info.app_id.as_deref().is_some_and(|a| a != app.app_id);
                let valid = info.is_valid && !foreign;
                let problem = if !info.is_valid {
                    info.error_message
                        .clone()
                        .or_else(|| Some("Meta says the token is not valid".into()))
                } else if foreign {
                    Some(format!(
                        "the token belongs to app {}, not {}",
                        info.app_id.as_deref().unwrap_or("?"),
                        app.app_id
                    ))
                } else {
                    None
                };
                if record {
                    self.ports.metrics.record(Metric::PageTokenValid {
                        page_id: page_id.to_string(),
                        valid,
                    });
                    if let Some(d) = days {
                        self.ports.metrics.record(Metric::PageTokenDaysToExpiry {
                            page_id: page_id.to_string(),
                            days: d,
                        });
                    }
                }
                if valid {
                    tracing::info!(page = %page_id, days_to_expiry = ?days, "page token checked");
                } else {
                    tracing::error!(page = %page_id, problem = problem.as_deref().unwrap_or(""), "page token invalid");
                }
                json!({
                    "page_id": page_id,
                    "configured": true,
                    "valid": valid,
                    "expires_at": expires_at_ms.map(format_rfc3339_ms),
                    "days_to_expiry": days,
                    "never_expires": expires_at_ms.is_none(),
                    "scopes": info.scopes,
                    "problem": problem,
                })
            }
            Err(crate::ports::graph::SendError::Graph { error, .. }) => {
                // Meta refused the check itself: for a Page token that is almost always the
                // token (or our app credentials) being unusable.
                let problem = format!(
                    "debug_token refused: code {} {}",
                    error.code.unwrap_or(0),
                    error.message
                );
                if record {
                    self.ports.metrics.record(Metric::PageTokenValid {
                        page_id: page_id.to_string(),
                        valid: false,
                    });
                }
                tracing::error!(page = %page_id, problem = %problem, "page token check refused");
                json!({"page_id": page_id, "configured": true, "valid": false, "problem": problem})
            }
            Err(crate::ports::graph::SendError::Transport { detail, .. }) => {
                // Unknown, not invalid: nothing is recorded; the next check tries again.
                tracing::warn!(page = %page_id, error = %detail, "page token check failed");
                json!({"page_id": page_id, "configured": true, "valid": Value::Null,
                       "problem": format!("Graph unreachable: {detail}")})
            }
        };
        Ok(answer)
    }
}
