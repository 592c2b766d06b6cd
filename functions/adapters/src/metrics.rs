//! Business metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.
//!
//! Every function counts what its domain outcome says ([`from_processed`], [`from_job`],
//! [`from_deadline`]: pure, table-tested; the webhook intake and the login callback count
//! through `lc_core::ports::Metrics` themselves) and what `lc-core` announces in its
//! logs with a `metric = "..."` field when no outcome can tell it ([`from_core_event`]: Graph
//! errors by class, schedule deletions that failed, pages paused). Values accumulate in the
//! process (the [`metrics`](::metrics) facade, backed by `metrics_cloudwatch_embedded`) and are
//! written by [`flush`] at the end of each invocation: one JSON document per distinct
//! dimension set, which Lambda's log pipeline turns into CloudWatch metrics.
//!
//! Namespace `LoginConnect` (`LC_METRICS_NAMESPACE`), dimension `service` (the function) on
//! every metric, plus at most two fixed low-cardinality dimensions from [`Metric::dimensions`]:
//! never a page id, PSID or login_id. The metric names are a contract with the alarms;
//! `docs/observability.md` lists them.
//!
//! ```ignore
//! // main.rs: init once (telemetry::init does it), flush after each invocation
//! lambda_runtime::run(service_fn(|e| metrics::flushed(handle(e)))).await
//! // lib.rs: count what happened
//! metrics::record(metrics::from_job(&outcome));
//! metrics::record([metrics::Point::count(Metric::EnqueueFailures, &[])]);
//! ```

use std::future::Future;
use std::sync::OnceLock;

use ::metrics::{Label, Unit};
use lc_core::deadline::DeadlineOutcome;
use lc_core::lifecycle::optin::OptinState;
use lc_core::lifecycle::processor::Processed;
use lc_core::sending::errors::ErrorClass;
use lc_core::sending::sender::JobOutcome;
use metrics_cloudwatch_embedded::{Builder, Collector};

/// Environment variable that overrides the namespace.
pub const NAMESPACE_ENV: &str = "LC_METRICS_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "LoginConnect";
/// The dimension every metric carries: the function name (`webhook`, `events`, ...).
pub const SERVICE_DIMENSION: &str = "service";
/// EMF property (not a dimension) that ties a metric document to the invocation's logs.
pub const REQUEST_ID_PROPERTY: &str = "function_request_id";

/// The metrics the alarms and dashboards use. Names are stable: do not rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    OptinsReceived,
    DuplicatesSuppressed,
    FirstMessageSent,
    OptinToSentLatency,
    FirstMessageAtRisk,
    FirstMessageMissed,
    GraphErrors,
    SignatureFailures,
    QuarantinedEvents,
    PagesPaused,
    WebhookEvents,
    EnqueueFailures,
    ScheduleDeleteFailures,
}

impl Metric {
    pub const ALL: [Metric; 13] = [
        Metric::OptinsReceived,
        Metric::DuplicatesSuppressed,
        Metric::FirstMessageSent,
        Metric::OptinToSentLatency,
        Metric::FirstMessageAtRisk,
        Metric::FirstMessageMissed,
        Metric::GraphErrors,
        Metric::SignatureFailures,
        Metric::QuarantinedEvents,
        Metric::PagesPaused,
        Metric::WebhookEvents,
        Metric::EnqueueFailures,
        Metric::ScheduleDeleteFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::OptinsReceived => "OptinsReceived",
            Metric::DuplicatesSuppressed => "DuplicatesSuppressed",
            Metric::FirstMessageSent => "FirstMessageSent",
            Metric::OptinToSentLatency => "OptinToSentLatency",
            Metric::FirstMessageAtRisk => "FirstMessageAtRisk",
            Metric::FirstMessageMissed => "FirstMessageMissed",
            Metric::GraphErrors => "GraphErrors",
            Metric::SignatureFailures => "SignatureFailures",
            Metric::QuarantinedEvents => "QuarantinedEvents",
            Metric::PagesPaused => "PagesPaused",
            Metric::WebhookEvents => "WebhookEvents",
            Metric::EnqueueFailures => "EnqueueFailures",
            Metric::ScheduleDeleteFailures => "ScheduleDeleteFailures",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::OptinToSentLatency => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// `true` for a distribution (every value kept, up to 100 per flush); else a counter.
    pub fn is_distribution(self) -> bool {
        matches!(self, Metric::OptinToSentLatency)
    }

    /// The dimensions a point carries besides `service`, in order. Each has a small fixed
    /// set of values (enum names from `lc-core`).
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            Metric::OptinsReceived => &["source", "entry_point"],
            Metric::GraphErrors => &["class"],
            Metric::SignatureFailures => &["reason"],
            _ => &[],
        }
    }
}

/// One observation: a metric, its dimension values (besides `service`) and a value (a count,
/// or milliseconds for [`Metric::OptinToSentLatency`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Metric,
    pub dims: Vec<(&'static str, &'static str)>,
    pub value: f64,
}

impl Point {
    pub fn new(metric: Metric, dims: &[(&'static str, &'static str)], value: f64) -> Point {
        Point {
            metric,
            dims: dims.to_vec(),
            value,
        }
    }

    /// A count of one.
    pub fn count(metric: Metric, dims: &[(&'static str, &'static str)]) -> Point {
        Point::new(metric, dims, 1.0)
    }
}

// ---- outcome -> points (pure) -------------------------------------------------------------

/// The events function, one processed queue message. A page pause is counted from the log
/// event `lc-core` writes when it applies it ([`from_core_event`]), not here.
pub fn from_processed(done: &Processed) -> Vec<Point> {
    match done {
        Processed::OptinCreated {
            entry_point,
            source,
            ..
        } => vec![Point::count(
            Metric::OptinsReceived,
            &[
                ("source", source.as_str()),
                ("entry_point", entry_point.as_str()),
            ],
        )],
        Processed::OptinDuplicate { .. } => vec![Point::count(Metric::DuplicatesSuppressed, &[])],
        Processed::OptinMissedOnArrival { .. } => {
            vec![Point::count(Metric::FirstMessageMissed, &[])]
        }
        Processed::Quarantined { .. } => vec![Point::count(Metric::QuarantinedEvents, &[])],
        _ => Vec::new(),
    }
}

/// The sender (and the deadline's last-chance send): sent + latency, missed, and a job that
/// found its first message already sent (a duplicate job suppressed by the claim). Graph
/// errors come from [`from_core_event`]: a `RetryLater` or `PagePaused` outcome does not say
/// whether Meta answered at all (lease held, pacing, page already paused).
pub fn from_job(outcome: &JobOutcome) -> Vec<Point> {
    match outcome {
        JobOutcome::Sent {
            optin_to_sent_ms, ..
        } => vec![
            Point::count(Metric::FirstMessageSent, &[]),
            Point::new(
                Metric::OptinToSentLatency,
                &[],
                (*optin_to_sent_ms).max(0) as f64,
            ),
        ],
        JobOutcome::Expired { .. } => vec![Point::count(Metric::FirstMessageMissed, &[])],
        JobOutcome::AlreadyDone {
            state: Some(OptinState::Sent),
        } => vec![Point::count(Metric::DuplicatesSuppressed, &[])],
        _ => Vec::new(),
    }
}

/// The deadline check (~23 h after the opt-in, and a final one at the deadline when a send
/// was still in flight): at risk when it found the first message unsent, plus whatever its
/// last-chance send did.
pub fn from_deadline(outcome: &DeadlineOutcome) -> Vec<Point> {
    match outcome {
        DeadlineOutcome::LastChance { outcome, .. } => {
            let mut points = vec![Point::count(Metric::FirstMessageAtRisk, &[])];
            points.extend(from_job(outcome));
            points
        }
        DeadlineOutcome::InFlight { .. } => vec![Point::count(Metric::FirstMessageAtRisk, &[])],
        DeadlineOutcome::Missed { .. } => vec![Point::count(Metric::FirstMessageMissed, &[])],
        DeadlineOutcome::NothingToDo { .. } | DeadlineOutcome::Unknown => Vec::new(),
    }
}

/// A log event from `lc-core` with a `metric` field (and `class` for Graph errors) -> the
/// point it stands for, when no outcome carries it. Only these three names are translated;
/// the others (`FirstMessageSent`, `FirstMessageMissed`, ...) are counted from outcomes, so
/// nothing counts twice.
pub fn from_core_event(metric: &str, class: Option<&str>) -> Option<Point> {
    match metric {
        "GraphError" => Some(Point::count(
            Metric::GraphErrors,
            &[("class", known_class(class))],
        )),
        "ScheduleDeleteFailed" => Some(Point::count(Metric::ScheduleDeleteFailures, &[])),
        "PagePaused" => Some(Point::count(Metric::PagesPaused, &[])),
        _ => None,
    }
}

/// Bounds the `class` dimension to `lc-core`'s classes.
fn known_class(class: Option<&str>) -> &'static str {
    const CLASSES: [ErrorClass; 4] = [
        ErrorClass::Retry,
        ErrorClass::RecipientUnreachable,
        ErrorClass::OperatorAction,
        ErrorClass::BadRequest,
    ];
    class
        .and_then(|c| CLASSES.iter().find(|k| k.as_str() == c))
        .map_or("other", |k| k.as_str())
}

// ---- recording and flushing -----------------------------------------------------------------

static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();

/// Installs the EMF recorder once per process (idempotent; `telemetry::init` calls it).
/// Cheap: no I/O, no task. Returns `false` when another recorder was already installed, in
/// which case points go to that one and [`flush`] writes nothing.
pub fn init(service: &'static str) -> bool {
    let namespace = crate::env::optional(NAMESPACE_ENV)
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    install(service, namespace, None)
}

fn install(service: &'static str, namespace: String, timestamp: Option<u64>) -> bool {
    COLLECTOR
        .get_or_init(|| {
            let mut builder = Builder::new()
                .cloudwatch_namespace(namespace)
                .with_dimension(SERVICE_DIMENSION, service);
            if let Some(t) = timestamp {
                builder = builder.with_timestamp(t);
            }
            match builder.init() {
                Ok(collector) => {
                    for m in Metric::ALL {
                        if m.is_distribution() {
                            ::metrics::describe_histogram!(m.name(), m.unit(), "");
                        } else {
                            ::metrics::describe_counter!(m.name(), m.unit(), "");
                        }
                    }
                    Some(collector)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; EMF is off");
                    None
                }
            }
        })
        .is_some()
}

/// Adds points to this invocation's totals (no I/O). Without [`init`], a no-op.
pub fn record(points: impl IntoIterator<Item = Point>) {
    for p in points {
        record_one(&p);
    }
}

fn record_one(p: &Point) {
    let labels: Vec<Label> = p.dims.iter().map(|(k, v)| Label::new(*k, *v)).collect();
    if p.metric.is_distribution() {
        ::metrics::histogram!(p.metric.name(), labels).record(p.value);
    } else if p.value >= 1.0 {
        ::metrics::counter!(p.metric.name(), labels).increment(p.value as u64);
    }
}

/// Writes this invocation's EMF documents to stdout (one line per dimension set with
/// something to report, nothing when idle) and starts the next invocation from zero. A write
/// error is logged, never raised: metrics must not fail an invocation.
pub fn flush() {
    let stdout = std::io::stdout();
    if let Err(e) = flush_to(stdout.lock()) {
        tracing::warn!(error = %e, "metrics not written");
    }
}

/// [`flush`] to any writer (tests). Sets the `function_request_id` property of the documents
/// to the current invocation's.
pub fn flush_to(writer: impl std::io::Write) -> std::io::Result<()> {
    let Some(Some(collector)) = COLLECTOR.get() else {
        return Ok(());
    };
    match crate::telemetry::current_request_id() {
        Some(id) => collector.set_property(REQUEST_ID_PROPERTY, id),
        None => collector.remove_property(REQUEST_ID_PROPERTY),
    };
    collector.flush(writer)
}

/// Runs one invocation, then [`flush`]es: wrap each handler call in `main.rs`.
pub async fn flushed<F: Future>(invocation: F) -> F::Output {
    let out = invocation.await;
    flush();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lc_core::lifecycle::optin::{EntryPoint, OptinSource};
    use lc_core::webhook::EventKind;

    fn c(metric: Metric, dims: &[(&'static str, &'static str)]) -> Point {
        Point::count(metric, dims)
    }

    #[test]
    fn names_units_and_dimensions_are_the_contract() {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "OptinsReceived",
                "DuplicatesSuppressed",
                "FirstMessageSent",
                "OptinToSentLatency",
                "FirstMessageAtRisk",
                "FirstMessageMissed",
                "GraphErrors",
                "SignatureFailures",
                "QuarantinedEvents",
                "PagesPaused",
                "WebhookEvents",
                "EnqueueFailures",
                "ScheduleDeleteFailures",
            ]
        );
        for m in Metric::ALL {
            let want = if m == Metric::OptinToSentLatency {
                Unit::Milliseconds
            } else {
                Unit::Count
            };
            assert_eq!(m.unit(), want, "{m:?}");
            assert!(!m.dimensions().contains(&SERVICE_DIMENSION));
            for banned in ["page", "page_id", "psid", "login_id", "recipient", "optin"] {
                assert!(!m.dimensions().contains(&banned), "{m:?} has {banned}");
            }
        }
    }

    #[test]
    fn processed_outcomes() {
        let table: Vec<(Processed, Vec<Point>)> = vec![
            (
                Processed::OptinCreated {
                    entry_point: EntryPoint::LoginConnect,
                    source: OptinSource::Login,
                    schedule_created: true,
                },
                vec![c(
                    Metric::OptinsReceived,
                    &[("source", "login"), ("entry_point", "login_connect")],
                )],
            ),
            (
                Processed::OptinCreated {
                    entry_point: EntryPoint::Checkbox,
                    source: OptinSource::Webhook,
                    schedule_created: false,
                },
                vec![c(
                    Metric::OptinsReceived,
                    &[("source", "webhook"), ("entry_point", "checkbox")],
                )],
            ),
            (
                Processed::OptinDuplicate {
                    state: OptinState::Sent,
                },
                vec![c(Metric::DuplicatesSuppressed, &[])],
            ),
            (
                Processed::OptinMissedOnArrival {
                    entry_point: EntryPoint::SendToMessenger,
                },
                vec![c(Metric::FirstMessageMissed, &[])],
            ),
            (
                Processed::Quarantined {
                    reason: "opt-in item does not parse".into(),
                },
                vec![c(Metric::QuarantinedEvents, &[])],
            ),
            // Counted from lc-core's `metric = "PagePaused"` log event instead.
            (Processed::PagePaused { applied: true }, vec![]),
            (Processed::OptinJobTakenOver, vec![]),
            (Processed::PolicyWarning, vec![]),
            (
                Processed::Ignored {
                    kind: EventKind::Read,
                },
                vec![],
            ),
        ];
        for (done, want) in table {
            assert_eq!(from_processed(&done), want, "{done:?}");
        }
    }

    fn sent(ms: i64) -> JobOutcome {
        JobOutcome::Sent {
            message_id: "m.1".into(),
            optin_to_sent_ms: ms,
            schedule_deleted: true,
        }
    }

    #[test]
    fn job_outcomes() {
        let table: Vec<(JobOutcome, Vec<Point>)> = vec![
            (
                sent(1_234),
                vec![
                    c(Metric::FirstMessageSent, &[]),
                    Point::new(Metric::OptinToSentLatency, &[], 1_234.0),
                ],
            ),
            (
                sent(-5),
                vec![
                    c(Metric::FirstMessageSent, &[]),
                    Point::new(Metric::OptinToSentLatency, &[], 0.0),
                ],
            ),
            (
                JobOutcome::Expired {
                    reason: "deadline passed".into(),
                },
                vec![c(Metric::FirstMessageMissed, &[])],
            ),
            (
                JobOutcome::AlreadyDone {
                    state: Some(OptinState::Sent),
                },
                vec![c(Metric::DuplicatesSuppressed, &[])],
            ),
            (
                JobOutcome::AlreadyDone {
                    state: Some(OptinState::OptedOut),
                },
                vec![],
            ),
            (JobOutcome::AlreadyDone { state: None }, vec![]),
            (
                JobOutcome::RetryLater {
                    delay_ms: 1_000,
                    reason: "another attempt holds the claim".into(),
                },
                vec![],
            ),
            (
                JobOutcome::PagePaused {
                    reason: "paused".into(),
                    delay_ms: 60_000,
                },
                vec![],
            ),
            (
                JobOutcome::Unreachable {
                    rule: "user_unavailable",
                },
                vec![],
            ),
            (JobOutcome::BadRequest { reason: "x".into() }, vec![]),
            (
                JobOutcome::Refused {
                    rule: "opted_out",
                    reason: "x".into(),
                },
                vec![],
            ),
        ];
        for (outcome, want) in table {
            assert_eq!(from_job(&outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn deadline_outcomes() {
        let table: Vec<(DeadlineOutcome, Vec<Point>)> = vec![
            (
                DeadlineOutcome::LastChance {
                    outcome: sent(82_800_000),
                    rearmed: false,
                },
                vec![
                    c(Metric::FirstMessageAtRisk, &[]),
                    c(Metric::FirstMessageSent, &[]),
                    Point::new(Metric::OptinToSentLatency, &[], 82_800_000.0),
                ],
            ),
            (
                DeadlineOutcome::LastChance {
                    outcome: JobOutcome::RetryLater {
                        delay_ms: 5_000,
                        reason: "graph 500".into(),
                    },
                    rearmed: true,
                },
                vec![c(Metric::FirstMessageAtRisk, &[])],
            ),
            (
                DeadlineOutcome::LastChance {
                    outcome: JobOutcome::Expired { reason: "x".into() },
                    rearmed: false,
                },
                vec![
                    c(Metric::FirstMessageAtRisk, &[]),
                    c(Metric::FirstMessageMissed, &[]),
                ],
            ),
            (
                DeadlineOutcome::InFlight { rearmed: true },
                vec![c(Metric::FirstMessageAtRisk, &[])],
            ),
            (
                DeadlineOutcome::Missed {
                    reason: "no first message before the deadline".into(),
                },
                vec![c(Metric::FirstMessageMissed, &[])],
            ),
            (
                DeadlineOutcome::NothingToDo {
                    state: OptinState::Sent,
                },
                vec![],
            ),
            (DeadlineOutcome::Unknown, vec![]),
        ];
        for (outcome, want) in table {
            assert_eq!(from_deadline(&outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn core_log_events() {
        let table: Vec<(&str, Option<&str>, Option<Point>)> = vec![
            (
                "GraphError",
                Some("retry"),
                Some(c(Metric::GraphErrors, &[("class", "retry")])),
            ),
            (
                "GraphError",
                Some("recipient_unreachable"),
                Some(c(
                    Metric::GraphErrors,
                    &[("class", "recipient_unreachable")],
                )),
            ),
            (
                "GraphError",
                Some("operator_action"),
                Some(c(Metric::GraphErrors, &[("class", "operator_action")])),
            ),
            (
                "GraphError",
                Some("bad_request"),
                Some(c(Metric::GraphErrors, &[("class", "bad_request")])),
            ),
            // Never an unbounded dimension value.
            (
                "GraphError",
                Some("code=190 page 12345"),
                Some(c(Metric::GraphErrors, &[("class", "other")])),
            ),
            (
                "GraphError",
                None,
                Some(c(Metric::GraphErrors, &[("class", "other")])),
            ),
            (
                "ScheduleDeleteFailed",
                None,
                Some(c(Metric::ScheduleDeleteFailures, &[])),
            ),
            ("PagePaused", None, Some(c(Metric::PagesPaused, &[]))),
            // Counted from outcomes: never twice.
            ("FirstMessageSent", None, None),
            ("FirstMessageMissed", None, None),
            ("FirstMessageAtRisk", None, None),
            ("DeadlineCheckNoop", None, None),
            ("PolicyWarning", None, None),
        ];
        for (name, class, want) in table {
            assert_eq!(from_core_event(name, class), want, "{name} {class:?}");
        }
    }

    /// The only test that installs the global recorder (one per process).
    #[test]
    fn emf_documents_are_well_formed() {
        assert!(install(
            "sender",
            "LoginConnectTest".into(),
            Some(1_700_000_000_000)
        ));
        assert!(init("sender"), "idempotent");
        record(from_job(&sent(1_500)));
        record(from_job(&sent(2_500)));
        record([
            c(Metric::GraphErrors, &[("class", "retry")]),
            c(Metric::GraphErrors, &[("class", "retry")]),
            c(Metric::GraphErrors, &[("class", "operator_action")]),
            c(
                Metric::OptinsReceived,
                &[("source", "webhook"), ("entry_point", "checkbox")],
            ),
        ]);
        let mut out = Vec::new();
        flush_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let docs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(docs.len(), 4, "one document per dimension set:\n{text}");

        let mut seen = std::collections::BTreeMap::new();
        for doc in &docs {
            let aws = &doc["_aws"];
            assert_eq!(aws["Timestamp"], 1_700_000_000_000u64);
            let directive = &aws["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "LoginConnectTest");
            let dims: Vec<&str> = directive["Dimensions"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap())
                .collect();
            assert_eq!(dims[0], SERVICE_DIMENSION);
            assert_eq!(doc["service"], "sender");
            for d in &dims {
                assert!(doc[*d].is_string(), "dimension {d} has a value: {doc}");
            }
            for m in directive["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                let metric = *Metric::ALL.iter().find(|x| x.name() == name).unwrap();
                let unit = if metric.unit() == Unit::Milliseconds {
                    "Milliseconds"
                } else {
                    "Count"
                };
                assert_eq!(m["Unit"], unit, "{name}");
                let want: Vec<&str> = std::iter::once(SERVICE_DIMENSION)
                    .chain(metric.dimensions().iter().copied())
                    .collect();
                let mut got = dims.clone();
                got.sort_unstable();
                let mut want_sorted = want.clone();
                want_sorted.sort_unstable();
                assert_eq!(got, want_sorted, "{name}");
                let mut labels: Vec<String> = dims[1..]
                    .iter()
                    .map(|d| format!(" {d}={}", doc[*d].as_str().unwrap()))
                    .collect();
                labels.sort_unstable();
                let key = format!("{name}{}", labels.concat());
                seen.insert(key, doc[name].clone());
            }
        }
        assert_eq!(seen["FirstMessageSent"], 2);
        assert_eq!(
            seen["OptinToSentLatency"],
            serde_json::json!([1500.0, 2500.0])
        );
        assert_eq!(seen["GraphErrors class=retry"], 2);
        assert_eq!(seen["GraphErrors class=operator_action"], 1);
        assert_eq!(
            seen["OptinsReceived entry_point=checkbox source=webhook"], 1,
            "{seen:?}"
        );

        // The next invocation starts from zero: nothing to write when idle.
        let mut again = Vec::new();
        flush_to(&mut again).unwrap();
        assert!(again.is_empty(), "{}", String::from_utf8_lossy(&again));
    }
}
