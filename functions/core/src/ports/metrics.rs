//! Business metrics: what the domain counts, as a closed set the compiler checks.
//!
//! Domain code records a [`Metric`] where the thing happens (`metrics.record(Metric::PagePaused)`);
//! the adapter (`lc_adapters::metrics`, CloudWatch EMF) writes [`Metric::points`] as they are. A
//! new variant without a name, unit or dimensions does not compile, and nothing reaches a metric
//! through a log field. Names are a contract with the alarms and dashboards
//! (`docs/observability.md`): do not rename. Dimensions are small fixed sets of enum names: never
//! a PSID, login_id or user_ref, and a Page id only on the Page-token metrics, whose Pages are
//! the ones configured in the secret (a handful, bounded by configuration, not by traffic).
//!
//! Gauges (a state measured now: Pages paused, the oldest unsent first message, a token's
//! expiry) are written as one-value distributions: a warm process never writes a stale value
//! again on a later invocation, as a registered gauge would.

use std::borrow::Cow;
use std::sync::Mutex;

use crate::funnel::FunnelStage;
use crate::lifecycle::optin::{EntryPoint, OptinSource};
use crate::login::NoEvidence;
use crate::sending::errors::ErrorClass;
use crate::webhook::signature::SignatureError;

/// Something worth counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// A webhook POST refused with 401.
    SignatureFailure(SignatureError),
    /// A request answered 500 because the queue did not take every event (Meta retries).
    EnqueueFailure,
    /// Signed input we could not act on, kept whole (webhook parts or stored records).
    Quarantined(u32),
    /// Webhook events acknowledged and not queued: heard only as a detail type the operator
    /// switched off (`BusDetailTypesOff`), so they had nothing to do.
    WebhookEventsSkipped(u32),
    /// A new opt-in obligation.
    OptinReceived {
        source: OptinSource,
        entry_point: EntryPoint,
    },
    /// A repeat of something already done (Meta retry, another app, a redelivered job).
    DuplicateSuppressed,
    /// A first message accepted by Meta; `optin_to_sent_ms` from the opt-in to the send.
    FirstMessageSent { optin_to_sent_ms: i64 },
    /// The deadline check found the first message unsent (a last-chance send follows).
    FirstMessageAtRisk,
    /// The 24-hour promise was broken for one opt-in (counted once per opt-in).
    FirstMessageMissed,
    /// A failed Send API call, by class (including attempts retried later).
    GraphError(ErrorClass),
    /// A Page was paused (Meta's block, an operator-action error, bad config, no token).
    PagePaused,
    /// A Meta policy warning that did not pause the Page.
    PolicyWarning,
    /// A deadline schedule could not be deleted (harmless: the check finds the opt-in closed).
    ScheduleDeleteFailure,
    /// A deadline check that found its opt-in already closed.
    DeadlineCheckNoop,
    /// A verified login that started no clock: no evidence the grant happened in it.
    LoginAwaitingWebhook(NoEvidence),
    /// An opt-in the login callback started (derived `login_id`) that no `messaging_optins`
    /// webhook confirmed within the confirm delay (default 1 h): the derivation may be wrong.
    LoginOptinUnconfirmed,
    /// One step of the conversion funnel (opt-in, first message, reply within 24 h / 7 days,
    /// opt-out, missed deadline), by entry point. Never by Page: see [`crate::funnel`].
    Funnel {
        stage: FunnelStage,
        entry_point: EntryPoint,
    },
    /// Gauge: Pages paused right now (the operations sweep, every minute, 0 included).
    PagesPausedNow(u32),
    /// Gauge: how long the oldest first message still owed (opt-in `pending` or `sending`)
    /// has waited since its opt-in, in seconds; 0 when none is owed.
    OldestUnsentFirstMessageAge { seconds: i64 },
    /// Gauge: a configured Page token as `debug_token` sees it (valid, and for the Page it is
    /// configured for).
    PageTokenValid { page_id: String, valid: bool },
    /// Gauge: whole days until a configured Page token expires (tokens that never expire write
    /// nothing).
    PageTokenDaysToExpiry { page_id: String, days: i64 },
}

/// The CloudWatch unit of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

/// One observation as the backend writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: &'static str,
    pub unit: Unit,
    /// Dimensions besides the function (`service`), which the adapter adds.
    pub dims: Vec<(&'static str, Cow<'static, str>)>,
    pub value: f64,
    /// `true`: every value is kept (percentiles); `false`: values are summed.
    pub distribution: bool,
}

impl Point {
    fn count(name: &'static str, value: f64) -> Point {
        Point {
            name,
            unit: Unit::Count,
            dims: Vec::new(),
            value,
            distribution: false,
        }
    }

    fn with(mut self, dim: &'static str, value: impl Into<Cow<'static, str>>) -> Point {
        self.dims.push((dim, value.into()));
        self
    }

    /// One value of a gauge (kept as it is, never summed).
    fn gauge(name: &'static str, value: f64) -> Point {
        Point {
            name,
            unit: Metric::unit_of(name),
            dims: Vec::new(),
            value,
            distribution: true,
        }
    }
}

impl Metric {
    /// Every metric name this service writes, for docs and the alarms' contract test.
    pub const NAMES: [&'static str; 22] = [
        "SignatureFailures",
        "EnqueueFailures",
        "QuarantinedEvents",
        "WebhookEventsSkipped",
        "OptinsReceived",
        "DuplicatesSuppressed",
        "FirstMessageSent",
        "OptinToSentLatency",
        "FirstMessageAtRisk",
        "FirstMessageMissed",
        "GraphErrors",
        "PagesPaused",
        "PolicyWarnings",
        "ScheduleDeleteFailures",
        "DeadlineChecksNoop",
        "LoginsAwaitingWebhook",
        "LoginOptinUnconfirmed",
        "Funnel",
        "PagesPausedNow",
        "OldestUnsentFirstMessageAge",
        "PageTokenValid",
        "PageTokenDaysToExpiry",
    ];

    /// Names written as distributions (every value kept: latencies, and the gauges); all
    /// others are summed counts.
    pub const DISTRIBUTIONS: [&'static str; 5] = [
        "OptinToSentLatency",
        "PagesPausedNow",
        "OldestUnsentFirstMessageAge",
        "PageTokenValid",
        "PageTokenDaysToExpiry",
    ];

    /// The only metrics with a `page_id` dimension: one series per Page configured in the
    /// secret (bounded by configuration, a handful), never per person or per event.
    pub const PAGE_DIMENSIONED: [&'static str; 2] = ["PageTokenValid", "PageTokenDaysToExpiry"];

    /// The unit a metric name is written with.
    pub fn unit_of(name: &str) -> Unit {
        match name {
            "OptinToSentLatency" => Unit::Milliseconds,
            "OldestUnsentFirstMessageAge" => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    /// What the backend writes for this observation.
    pub fn points(&self) -> Vec<Point> {
        let one = |name| vec![Point::count(name, 1.0)];
        match self {
            Metric::SignatureFailure(why) => {
                vec![Point::count("SignatureFailures", 1.0).with("reason", why.as_str())]
            }
            Metric::EnqueueFailure => one("EnqueueFailures"),
            Metric::Quarantined(n) => vec![Point::count("QuarantinedEvents", f64::from(*n))],
            Metric::WebhookEventsSkipped(n) => {
                vec![Point::count("WebhookEventsSkipped", f64::from(*n))]
            }
            Metric::OptinReceived {
                source,
                entry_point,
            } => vec![Point::count("OptinsReceived", 1.0)
                .with("source", source.as_str())
                .with("entry_point", entry_point.as_str())],
            Metric::DuplicateSuppressed => one("DuplicatesSuppressed"),
            Metric::FirstMessageSent { optin_to_sent_ms } => vec![
                Point::count("FirstMessageSent", 1.0),
                Point {
                    name: "OptinToSentLatency",
                    unit: Unit::Milliseconds,
                    dims: Vec::new(),
                    value: (*optin_to_sent_ms).max(0) as f64,
                    distribution: true,
                },
            ],
            Metric::FirstMessageAtRisk => one("FirstMessageAtRisk"),
            Metric::FirstMessageMissed => one("FirstMessageMissed"),
            Metric::GraphError(class) => {
                vec![Point::count("GraphErrors", 1.0).with("class", class.as_str())]
            }
            Metric::PagePaused => one("PagesPaused"),
            Metric::PolicyWarning => one("PolicyWarnings"),
            Metric::ScheduleDeleteFailure => one("ScheduleDeleteFailures"),
            Metric::DeadlineCheckNoop => one("DeadlineChecksNoop"),
            Metric::LoginAwaitingWebhook(why) => {
                vec![Point::count("LoginsAwaitingWebhook", 1.0).with("reason", why.as_str())]
            }
            Metric::LoginOptinUnconfirmed => one("LoginOptinUnconfirmed"),
            Metric::Funnel { stage, entry_point } => vec![Point::count("Funnel", 1.0)
                .with("stage", stage.as_str())
                .with("entry_point", entry_point.as_str())],
            Metric::PagesPausedNow(n) => vec![Point::gauge("PagesPausedNow", f64::from(*n))],
            Metric::OldestUnsentFirstMessageAge { seconds } => vec![Point::gauge(
                "OldestUnsentFirstMessageAge",
                (*seconds).max(0) as f64,
            )],
            Metric::PageTokenValid { page_id, valid } => {
                vec![
                    Point::gauge("PageTokenValid", if *valid { 1.0 } else { 0.0 })
                        .with("page_id", page_id.clone()),
                ]
            }
            Metric::PageTokenDaysToExpiry { page_id, days } => {
                vec![Point::gauge("PageTokenDaysToExpiry", *days as f64)
                    .with("page_id", page_id.clone())]
            }
        }
    }
}

/// Where metrics go. Recording never fails and never blocks on I/O: backends buffer and flush
/// at the end of an invocation.
pub trait Metrics: Send + Sync {
    fn record(&self, metric: Metric);
}

/// Drops everything (tools and tests that do not look at metrics).
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _metric: Metric) {}
}

/// Keeps every metric, in order (tests, the local runner's summaries).
#[derive(Default)]
pub struct MemoryMetrics {
    recorded: Mutex<Vec<Metric>>,
    /// Set by [`MemoryMetrics::keep_none`].
    discard: std::sync::atomic::AtomicBool,
}

impl MemoryMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on records nothing: for a process that never reads them back (the local
    /// runner's `serve` and `load`), where keeping every metric would grow without bound.
    pub fn keep_none(&self) {
        self.discard
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.take();
    }

    pub fn take(&self) -> Vec<Metric> {
        std::mem::take(&mut *self.recorded.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> Vec<Metric> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Metrics for MemoryMetrics {
    fn record(&self, metric: Metric) {
        if self.discard.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(metric);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_metrics_kept_none_keep_nothing() {
        let m = MemoryMetrics::new();
        m.record(Metric::EnqueueFailure);
        m.keep_none();
        m.record(Metric::Quarantined(1));
        assert!(m.take().is_empty());
    }

    fn every_metric() -> Vec<Metric> {
        vec![
            Metric::SignatureFailure(SignatureError::Mismatch),
            Metric::EnqueueFailure,
            Metric::Quarantined(1),
            Metric::WebhookEventsSkipped(2),
            Metric::OptinReceived {
                source: OptinSource::Webhook,
                entry_point: EntryPoint::LoginConnect,
            },
            Metric::DuplicateSuppressed,
            Metric::FirstMessageSent {
                optin_to_sent_ms: 1_234,
            },
            Metric::FirstMessageAtRisk,
            Metric::FirstMessageMissed,
            Metric::GraphError(ErrorClass::Retry),
            Metric::PagePaused,
            Metric::PolicyWarning,
            Metric::ScheduleDeleteFailure,
            Metric::DeadlineCheckNoop,
            Metric::LoginAwaitingWebhook(NoEvidence::GrantNotNew),
            Metric::LoginAwaitingWebhook(NoEvidence::TokenNotFresh),
            Metric::LoginOptinUnconfirmed,
            Metric::Funnel {
                stage: FunnelStage::Reply24h,
                entry_point: EntryPoint::Checkbox,
            },
            Metric::PagesPausedNow(2),
            Metric::OldestUnsentFirstMessageAge { seconds: 90 },
            Metric::PageTokenValid {
                page_id: "100".into(),
                valid: false,
            },
            Metric::PageTokenDaysToExpiry {
                page_id: "100".into(),
                days: 6,
            },
        ]
    }

    #[test]
    fn every_point_has_a_listed_name_and_no_personal_dimension() {
        let mut seen = std::collections::BTreeSet::new();
        for m in every_metric() {
            for p in m.points() {
                assert!(Metric::NAMES.contains(&p.name), "{} not listed", p.name);
                seen.insert(p.name);
                for (dim, _) in &p.dims {
                    assert!(
                        ![
                            "service",
                            "page",
                            "psid",
                            "login_id",
                            "user_ref",
                            "recipient"
                        ]
                        .contains(dim),
                        "{} has dimension {dim}",
                        p.name
                    );
                    assert!(
                        *dim != "page_id" || Metric::PAGE_DIMENSIONED.contains(&p.name),
                        "{} has a page_id dimension but is not a Page-token metric",
                        p.name
                    );
                }
            }
        }
        assert_eq!(
            seen.len(),
            Metric::NAMES.len(),
            "a listed name is never written"
        );
        for m in every_metric() {
            for p in m.points() {
                assert_eq!(p.unit, Metric::unit_of(p.name), "{}", p.name);
                assert_eq!(p.distribution, Metric::DISTRIBUTIONS.contains(&p.name));
            }
        }
    }

    #[test]
    fn latency_is_a_distribution_in_milliseconds() {
        let points = Metric::FirstMessageSent {
            optin_to_sent_ms: 82_800_000,
        }
        .points();
        assert_eq!(points[0].name, "FirstMessageSent");
        assert_eq!(points[1].name, "OptinToSentLatency");
        assert_eq!(points[1].unit, Unit::Milliseconds);
        assert!(points[1].distribution);
        assert_eq!(points[1].value, 82_800_000.0);
    }

    #[test]
    fn dimensions_are_enum_names() {
        let p = &Metric::OptinReceived {
            source: OptinSource::Login,
            entry_point: EntryPoint::Checkbox,
        }
        .points()[0];
        assert_eq!(
            p.dims,
            vec![
                ("source", "login".into()),
                ("entry_point", "checkbox".into())
            ]
        );
        let p = &Metric::GraphError(ErrorClass::OperatorAction).points()[0];
        assert_eq!(p.dims, vec![("class", "operator_action".into())]);
    }

    #[test]
    fn gauges_keep_their_value_and_unit() {
        let p = &Metric::OldestUnsentFirstMessageAge { seconds: -5 }.points()[0];
        assert_eq!(
            (p.value, p.unit, p.distribution),
            (0.0, Unit::Seconds, true)
        );
        let p = &Metric::PageTokenDaysToExpiry {
            page_id: "42".into(),
            days: 6,
        }
        .points()[0];
        assert_eq!(p.dims, vec![("page_id", Cow::from("42"))]);
        assert_eq!(p.value, 6.0);
        let p = &Metric::PagesPausedNow(0).points()[0];
        assert_eq!((p.value, p.distribution), (0.0, true), "zero is written");
    }
}
