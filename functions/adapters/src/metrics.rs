//! The [`Metrics`] port backed by CloudWatch Embedded Metric Format (EMF) lines on stdout.
//!
//! Domain code records an [`lc_core::ports::Metric`] where the thing happens; [`Emf`] adds its
//! [`points`](Metric::points) to the process's totals (the [`metrics`](::metrics) facade,
//! backed by `metrics_cloudwatch_embedded`), and [`flush`] writes them at the end of each
//! invocation (`crate::invocation` calls it): one JSON document per distinct dimension set,
//! which Lambda's log pipeline turns into CloudWatch metrics without an API call.
//!
//! Namespace `LoginConnect` (`LC_METRICS_NAMESPACE`), dimension `service` (the function) on
//! every metric, plus the point's own fixed low-cardinality dimensions. Names, units and
//! dimensions are decided in core; `docs/observability.md` lists them.
//!
//! This module knows nothing of invocations: the caller passes the request id to [`flush`],
//! so `invocation` depends on `metrics` and not the other way round.

use std::sync::OnceLock;

use ::metrics::{Label, Unit};
use lc_core::ports::metrics::{Point, Unit as CoreUnit};
use lc_core::ports::{Metric, Metrics};
use metrics_cloudwatch_embedded::{Builder, Collector};

/// Environment variable that overrides the namespace.
pub const NAMESPACE_ENV: &str = "LC_METRICS_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "LoginConnect";
/// The dimension every metric carries: the function name (`webhook`, `events`, ...).
pub const SERVICE_DIMENSION: &str = "service";
/// EMF property (not a dimension) that ties a metric document to the invocation's logs.
pub const REQUEST_ID_PROPERTY: &str = "function_request_id";

/// Records into the process's EMF collector. Without [`init`] (tools, tests) every record is
/// dropped by the `metrics` facade's no-op recorder.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emf;

impl Metrics for Emf {
    fn record(&self, metric: Metric) {
        for p in metric.points() {
            record_point(&p);
        }
    }
}

fn record_point(p: &Point) {
    let labels: Vec<Label> = p
        .dims
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone().into_owned()))
        .collect();
    if p.distribution {
        ::metrics::histogram!(p.name, labels).record(p.value);
    } else if p.value >= 1.0 {
        // A zero count is not touched, so an idle invocation writes no document.
        ::metrics::counter!(p.name, labels).increment(p.value as u64);
    }
}

fn unit(u: CoreUnit) -> Unit {
    match u {
        CoreUnit::Count => Unit::Count,
        CoreUnit::Milliseconds => Unit::Milliseconds,
        CoreUnit::Seconds => Unit::Seconds,
    }
}

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
                    // The unit is taken from the description, so every name is described
                    // before anything is recorded.
                    for name in Metric::NAMES {
                        let u = unit(Metric::unit_of(name));
                        if Metric::DISTRIBUTIONS.contains(&name) {
                            ::metrics::describe_histogram!(name, u, "");
                        } else {
                            ::metrics::describe_counter!(name, u, "");
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

/// Writes the totals recorded since the last flush to stdout (one line per dimension set with
/// something to report, nothing when idle) and starts again from zero. `request_id` becomes
/// the documents' `function_request_id` property. A write error is logged, never raised:
/// metrics must not fail an invocation.
pub fn flush(request_id: Option<&str>) {
    let stdout = std::io::stdout();
    if let Err(e) = flush_to(stdout.lock(), request_id) {
        tracing::warn!(error = %e, "metrics not written");
    }
}

/// [`flush`] to any writer (tests, other runners).
pub fn flush_to(writer: impl std::io::Write, request_id: Option<&str>) -> std::io::Result<()> {
    let Some(Some(collector)) = COLLECTOR.get() else {
        return Ok(());
    };
    match request_id {
        Some(id) => collector.set_property(REQUEST_ID_PROPERTY, id.to_string()),
        None => collector.remove_property(REQUEST_ID_PROPERTY),
    };
    collector.flush(writer)
}

/// The EMF documents [`flush`] would write for `metrics`, recorded within one invocation of
/// `service`, without the process's recorder: one line per distinct dimension set, shaped as
/// `metrics_cloudwatch_embedded` writes them. The local runner counts their bytes for the
/// CloudWatch Logs part of the cost.
pub fn emf_documents(
    service: &str,
    namespace: &str,
    timestamp_ms: u64,
    request_id: &str,
    metrics: &[Metric],
) -> Vec<String> {
    use serde_json::{json, Map, Value};
    use std::collections::BTreeMap;
    // dimension set -> metric name -> (unit, summed count or every value)
    type Values = BTreeMap<&'static str, (CoreUnit, Vec<f64>, bool)>;
    let mut sets: BTreeMap<Vec<(&'static str, std::borrow::Cow<'static, str>)>, Values> =
        BTreeMap::new();
    for m in metrics {
        for p in m.points() {
            if !p.distribution && p.value < 1.0 {
                continue;
            }
            let entry = sets
                .entry(p.dims.clone())
                .or_default()
                .entry(p.name)
                .or_insert((p.unit, Vec::new(), p.distribution));
            entry.1.push(p.value);
        }
    }
    sets.into_iter()
        .map(|(dims, values)| {
            let mut names = vec![SERVICE_DIMENSION];
            names.extend(dims.iter().map(|(k, _)| *k));
            let described: Vec<Value> = values
                .iter()
                .map(|(name, (u, _, _))| json!({"Name": name, "Unit": unit_name(*u)}))
                .collect();
            let mut doc = Map::new();
            doc.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [
                    {"Namespace": namespace, "Dimensions": [names], "Metrics": described}
                ]}),
            );
            doc.insert(SERVICE_DIMENSION.into(), json!(service));
            for (k, v) in &dims {
                doc.insert((*k).into(), json!(v));
            }
            doc.insert(REQUEST_ID_PROPERTY.into(), json!(request_id));
            for (name, (_, vals, distribution)) in values {
                let v = if distribution {
                    json!(vals)
                } else {
                    json!(vals.iter().sum::<f64>() as u64)
                };
                doc.insert(name.into(), v);
            }
            Value::Object(doc).to_string()
        })
        .collect()
}

fn unit_name(u: CoreUnit) -> &'static str {
    match u {
        CoreUnit::Count => "Count",
        CoreUnit::Milliseconds => "Milliseconds",
        CoreUnit::Seconds => "Seconds",
    }
}

/// Installs the recorder the way every test in this crate expects it (the first caller wins:
/// one recorder per process).
#[cfg(test)]
pub(crate) fn install_for_tests() {
    assert!(install(
        "sender",
        "LoginConnectTest".into(),
        Some(1_700_000_000_000)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use lc_core::lifecycle::optin::{EntryPoint, OptinSource};
    use lc_core::sending::errors::ErrorClass;
    use lc_core::webhook::signature::SignatureError;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// The documents of one flush, keyed `Name dim=value ...` (dims sorted) -> the value.
    fn flushed(request_id: Option<&str>) -> (Vec<Value>, BTreeMap<String, Value>) {
        let mut out = Vec::new();
        flush_to(&mut out, request_id).unwrap();
        let text = String::from_utf8(out).unwrap();
        let docs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let mut seen = BTreeMap::new();
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
                assert!(Metric::NAMES.contains(&name), "{name} not in NAMES");
                let want_unit = match Metric::unit_of(name) {
                    CoreUnit::Milliseconds => "Milliseconds",
                    CoreUnit::Seconds => "Seconds",
                    CoreUnit::Count => "Count",
                };
                assert_eq!(m["Unit"], want_unit, "{name}");
                let mut labels: Vec<String> = dims[1..]
                    .iter()
                    .map(|d| format!(" {d}={}", doc[*d].as_str().unwrap()))
                    .collect();
                labels.sort_unstable();
                seen.insert(format!("{name}{}", labels.concat()), doc[name].clone());
            }
        }
        (docs, seen)
    }

    /// The only test that records into the global recorder; it holds the process lock so an
    /// invocation test's flush cannot take its points.
    #[test]
    fn emf_documents_are_well_formed() {
        let _process = crate::process_lock().blocking_lock();
        install_for_tests();
        assert!(init("sender"), "idempotent");
        // Whatever an earlier test left behind.
        flushed(None);

        let emf = Emf;
        emf.record(Metric::FirstMessageSent {
            optin_to_sent_ms: 1_500,
        });
        emf.record(Metric::FirstMessageSent {
            optin_to_sent_ms: 2_500,
        });
        emf.record(Metric::GraphError(ErrorClass::Retry));
        emf.record(Metric::GraphError(ErrorClass::Retry));
        emf.record(Metric::GraphError(ErrorClass::OperatorAction));
        emf.record(Metric::OptinReceived {
            source: OptinSource::Webhook,
            entry_point: EntryPoint::Checkbox,
        });
        emf.record(Metric::SignatureFailure(SignatureError::Mismatch));
        emf.record(Metric::PolicyWarning);
        emf.record(Metric::DeadlineCheckNoop);
        // Nothing to count: no point written for it.
        emf.record(Metric::Quarantined(0));
        // A gauge writes its zero, and a Page-token gauge its page_id.
        emf.record(Metric::PagesPausedNow(0));
        emf.record(Metric::PageTokenDaysToExpiry {
            page_id: "100".into(),
            days: 6,
        });

        let (docs, seen) = flushed(Some("req-7"));
        // Dimensionless metrics share a document; one per (class), (source, entry_point),
        // (reason), (page_id) value set.
        assert_eq!(docs.len(), 6, "one document per dimension set: {docs:#?}");
        for doc in &docs {
            assert_eq!(doc[REQUEST_ID_PROPERTY], "req-7", "{doc}");
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
        assert_eq!(seen["SignatureFailures reason=mismatch"], 1);
        assert_eq!(seen["PolicyWarnings"], 1);
        assert_eq!(seen["DeadlineChecksNoop"], 1);
        assert!(!seen.contains_key("QuarantinedEvents"), "{seen:?}");
        assert_eq!(seen["PagesPausedNow"], serde_json::json!([0.0]));
        assert_eq!(
            seen["PageTokenDaysToExpiry page_id=100"],
            serde_json::json!([6.0])
        );

        // The next invocation starts from zero: nothing to write when idle (a gauge is not
        // written again with its last value).
        let (docs, _) = flushed(Some("req-8"));
        assert!(docs.is_empty(), "{docs:?}");

        // Outside an invocation the documents carry no request id.
        emf.record(Metric::PagePaused);
        let (docs, seen) = flushed(None);
        assert_eq!(seen["PagesPaused"], 1);
        assert!(docs[0].get(REQUEST_ID_PROPERTY).is_none(), "{}", docs[0]);
    }
}
