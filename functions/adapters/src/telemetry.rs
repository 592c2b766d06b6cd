//! Structured JSON logs and metrics for every function.
//!
//! One JSON object per log line, with the keys Powertools for AWS Lambda users know:
//!
//! ```json
//! {"level":"INFO","message":"job settled","timestamp":"2026-05-01T12:00:00.123Z",
//!  "service":"sender","cold_start":true,"function_request_id":"8f5c…","outcome":"sent"}
//! ```
//!
//! then the event's own fields, top level. `function_request_id` (and `xray_trace_id`) come
//! from the invocation span `lambda_runtime` opens around every handler call (field
//! `requestId`; a span with a `function_request_id` field works too, for other runners).
//! `cold_start` is true for the first invocation of the process and for the init logs before
//! it, false after. Ids are hashed by the callers (`lc_core::support::privacy::hash_id`); fields named
//! like credentials (`*_token`, `*_secret`, `authorization`, ...) are written `[redacted]` as a
//! last line of defence.
//!
//! [`init`] also installs the EMF metrics recorder ([`crate::metrics`]) and the bridge that
//! counts `lc-core`'s `metric = "..."` log events ([`crate::metrics::from_core_event`]).

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use crate::metrics::{self, Point};

/// Installs the JSON log subscriber and the metrics recorder, once. Level from `RUST_LOG`,
/// else `LOG_LEVEL`, else `AWS_LAMBDA_LOG_LEVEL` (default `info`). Nothing slow: no I/O.
pub fn init(service: &'static str) {
    let filter = level_directives(
        ["RUST_LOG", "LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL"]
            .iter()
            .find_map(|name| crate::env::optional(name)),
    );
    let subscriber = subscriber(service, &filter, std::io::stdout, |p| metrics::record([p]));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        metrics::init(service);
        tracing::info!("initialised");
    }
}

/// The subscriber [`init`] installs, with any writer and metrics sink (tests, other runners).
pub fn subscriber<W, F>(
    service: &'static str,
    filter: &str,
    writer: W,
    metrics_sink: F,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    F: Fn(Point) + Send + Sync + 'static,
{
    // Each layer has its own static filter, so the logs' level never hides a metric event
    // and nothing below the log level reaches the formatter.
    let invocations = InvocationLayer.with_filter(
        filter_fn(|m| m.is_span() && invocation_span(m)).with_max_level_hint(LevelFilter::INFO),
    );
    let bridge = CoreMetricsLayer { sink: metrics_sink }.with_filter(
        filter_fn(|m| m.is_event() && m.fields().field("metric").is_some())
            .with_max_level_hint(LevelFilter::INFO),
    );
    let logs = tracing_subscriber::fmt::layer()
        .event_format(PowertoolsJson { service })
        .with_writer(writer)
        .with_filter(EnvFilter::new(filter));
    Registry::default()
        .with(invocations)
        .with(bridge)
        .with(logs)
}

/// `LOG_LEVEL=WARNING` (Powertools spelling) and friends -> `tracing` directives.
fn level_directives(raw: Option<String>) -> String {
    let raw = raw.unwrap_or_else(|| "info".into()).trim().to_lowercase();
    match raw.as_str() {
        "warning" => "warn".into(),
        "critical" | "fatal" => "error".into(),
        _ => raw,
    }
}

// ---- the invocation: function_request_id, cold_start ---------------------------------------

#[derive(Debug)]
struct Invocation {
    request_id: String,
    xray_trace_id: Option<String>,
    cold_start: bool,
}

/// Invocations whose span is open, innermost last. Lambda runs one invocation at a time per
/// process (`lambda_runtime::run`), so the last one is the current one, for every task.
static OPEN: Mutex<Vec<Arc<Invocation>>> = Mutex::new(Vec::new());
/// The first request id this process saw: its invocation is the cold start.
static FIRST_REQUEST: OnceLock<String> = OnceLock::new();

fn current() -> Option<Arc<Invocation>> {
    OPEN.lock().ok().and_then(|open| open.last().cloned())
}

/// The request id of the invocation being handled, if any.
pub fn current_request_id() -> Option<String> {
    current().map(|i| i.request_id.clone())
}

fn invocation_span(meta: &tracing::Metadata<'_>) -> bool {
    let f = meta.fields();
    f.field("requestId").is_some() || f.field("function_request_id").is_some()
}

struct InvocationLayer;

struct InvocationMarker(Arc<Invocation>);

#[derive(Default)]
struct InvocationFields {
    request_id: Option<String>,
    xray_trace_id: Option<String>,
}

impl Visit for InvocationFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "requestId" | "function_request_id" => self.request_id = Some(value.to_string()),
            "xrayTraceId" | "xray_trace_id" => self.xray_trace_id = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, text.trim_matches('"'));
    }
}

impl<S> Layer<S> for InvocationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = InvocationFields::default();
        attrs.record(&mut fields);
        let Some(request_id) = fields.request_id.filter(|r| !r.is_empty()) else {
            return;
        };
        let cold_start = *FIRST_REQUEST.get_or_init(|| request_id.clone()) == request_id;
        let invocation = Arc::new(Invocation {
            request_id,
            xray_trace_id: fields.xray_trace_id,
            cold_start,
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(InvocationMarker(invocation.clone()));
            if let Ok(mut open) = OPEN.lock() {
                open.push(invocation);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let Some(InvocationMarker(closed)) = ext.get::<InvocationMarker>() else {
            return;
        };
        if let Ok(mut open) = OPEN.lock() {
            open.retain(|i| !Arc::ptr_eq(i, closed));
        }
    }
}

// ---- lc-core's metric log events -> metrics ---------------------------------------------------

struct CoreMetricsLayer<F> {
    sink: F,
}

#[derive(Default)]
struct MetricFields {
    metric: Option<String>,
    class: Option<String>,
}

impl Visit for MetricFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "metric" => self.metric = Some(value.to_string()),
            "class" => self.class = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "metric" | "class") {
            let text = format!("{value:?}");
            self.record_str(field, text.trim_matches('"'));
        }
    }
}

impl<S, F> Layer<S> for CoreMetricsLayer<F>
where
    S: Subscriber,
    F: Fn(Point) + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = MetricFields::default();
        event.record(&mut fields);
        if let Some(point) = fields
            .metric
            .as_deref()
            .and_then(|m| metrics::from_core_event(m, fields.class.as_deref()))
        {
            (self.sink)(point);
        }
    }
}

// ---- the line format ----------------------------------------------------------------------------

/// Keys the formatter writes itself; an event field with one of these names is written as
/// `field.<name>` so it cannot shadow them.
const RESERVED: [&str; 7] = [
    "level",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_request_id",
    "xray_trace_id",
];

struct PowertoolsJson {
    service: &'static str,
}

impl<S, N> FormatEvent<S, N> for PowertoolsJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = LogFields::default();
        event.record(&mut fields);
        let line = render(
            self.service,
            event.metadata().level(),
            now_ms(),
            current().as_deref(),
            fields,
        );
        writeln!(writer, "{line}")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn render(
    service: &str,
    level: &tracing::Level,
    ms: i64,
    invocation: Option<&Invocation>,
    fields: LogFields,
) -> String {
    let mut out = String::with_capacity(256);
    let mut put = |key: &str, value: &Value| {
        out.push(if out.is_empty() { '{' } else { ',' });
        push_json(&mut out, &Value::String(key.to_string()));
        out.push(':');
        push_json(&mut out, value);
    };
    put("level", &Value::String(level.as_str().to_string()));
    put(
        "message",
        &Value::String(fields.message.unwrap_or_default()),
    );
    put(
        "timestamp",
        &Value::String(lc_core::support::time::format_rfc3339_ms(ms)),
    );
    put("service", &Value::String(service.to_string()));
    match invocation {
        Some(i) => {
            put("cold_start", &Value::Bool(i.cold_start));
            put("function_request_id", &Value::String(i.request_id.clone()));
            if let Some(x) = &i.xray_trace_id {
                put("xray_trace_id", &Value::String(x.clone()));
            }
        }
        // Init, before the first invocation: part of the cold start.
        None => put("cold_start", &Value::Bool(FIRST_REQUEST.get().is_none())),
    }
    for (name, value) in fields.fields {
        if RESERVED.contains(&name) {
            put(&format!("field.{name}"), &value);
        } else {
            put(name, &value);
        }
    }
    out.push('}');
    out
}

fn push_json(out: &mut String, value: &Value) {
    // Serializing a `Value` to a string cannot fail.
    if let Ok(s) = serde_json::to_string(value) {
        out.push_str(&s);
    }
}

/// Field names that smell of a credential: their values are never written.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "token" | "secret" | "password" | "authorization" | "appsecret_proof" | "signature"
    ) || n.ends_with("_token")
        || n.ends_with("_secret")
        || n.ends_with("token_value")
}

#[derive(Default)]
struct LogFields {
    message: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl LogFields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if is_secret_name(name) {
            Value::String("[redacted]".into())
        } else {
            value
        };
        self.fields.push((name, value));
    }
}

impl Visit for LogFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.put(field, Value::from(value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            self.put(field, Value::from(format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metric;
    use tracing::Instrument;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
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

    fn lines(buf: &Buffer) -> Vec<Value> {
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn ctx(request_id: &str) -> lambda_runtime::Context {
        let mut c = lambda_runtime::Context::default();
        c.request_id = request_id.to_string();
        c.xray_trace_id = Some("Root=1-abc".into());
        c
    }

    async fn handler(n: u32) {
        tracing::info!(outcome = "sent", attempt = n, ok = true, "job settled");
        // A spawned-free concurrent branch, as `for_each_record` runs records.
        futures::future::join_all((0..2).map(|i| async move {
            tracing::warn!(record = i, "record retried");
        }))
        .await;
    }

    /// The only test that opens invocation spans (the cold start is per process).
    #[tokio::test]
    async fn powertools_keys_cold_start_and_request_id() {
        let buf = Buffer::default();
        let points = Arc::new(Mutex::new(Vec::new()));
        let sink = points.clone();
        let sub = subscriber("sender", "info", buf.clone(), move |p| {
            sink.lock().unwrap().push(p)
        });
        let _guard = tracing::subscriber::set_default(sub);

        tracing::info!("initialised");
        tracing::debug!("below the level: not written");
        // The span lambda_runtime opens around each invocation.
        handler(1)
            .instrument(lambda_runtime::layers::trace::request_span(&ctx("req-1")))
            .await;
        handler(2)
            .instrument(lambda_runtime::layers::trace::request_span(&ctx("req-2")))
            .await;
        tracing::info!("between invocations");

        let got = lines(&buf);
        assert_eq!(got.len(), 8, "{got:#?}");
        for l in &got {
            let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            for k in ["level", "message", "timestamp", "service", "cold_start"] {
                assert!(keys.contains(&k), "{k} missing: {l}");
            }
            assert!(!keys.contains(&"fields"), "no nested fields object: {l}");
            assert_eq!(l["service"], "sender");
            let ts = l["timestamp"].as_str().unwrap();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
        }
        assert_eq!(got[0]["message"], "initialised");
        assert_eq!(got[0]["level"], "INFO");
        assert_eq!(got[0]["cold_start"], true, "init is part of the cold start");
        assert!(got[0].get("function_request_id").is_none());

        assert_eq!(got[1]["message"], "job settled");
        assert_eq!(got[1]["outcome"], "sent");
        assert_eq!(got[1]["attempt"], 1);
        assert_eq!(got[1]["ok"], true);
        assert_eq!(got[1]["function_request_id"], "req-1");
        assert_eq!(got[1]["xray_trace_id"], "Root=1-abc");
        assert_eq!(got[1]["cold_start"], true);
        assert_eq!(got[2]["level"], "WARN");
        assert_eq!(got[2]["function_request_id"], "req-1");
        assert_eq!(got[3]["cold_start"], true);

        assert_eq!(got[4]["function_request_id"], "req-2");
        assert_eq!(got[4]["cold_start"], false, "second invocation");
        assert_eq!(got[6]["function_request_id"], "req-2");

        assert_eq!(got[7]["message"], "between invocations");
        assert_eq!(got[7]["cold_start"], false);
        assert!(got[7].get("function_request_id").is_none());
        assert!(current_request_id().is_none());
        assert!(points.lock().unwrap().is_empty());
    }

    #[test]
    fn fields_are_flat_reserved_names_kept_and_secrets_redacted() {
        let buf = Buffer::default();
        let sub = subscriber("webhook", "info", buf.clone(), |_| {});
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                service = "other",
                page_token = "EAAB-secret",
                access_token = "EAAC",
                token_status = "valid",
                reason = %"mismatch",
                detail = ?Some(3),
                "webhook {}", "refused"
            );
        });
        let got = lines(&buf);
        assert_eq!(got.len(), 1);
        let l = &got[0];
        assert_eq!(l["message"], "webhook refused");
        assert_eq!(l["service"], "webhook");
        assert_eq!(l["field.service"], "other");
        assert_eq!(l["page_token"], "[redacted]");
        assert_eq!(l["access_token"], "[redacted]");
        assert_eq!(l["token_status"], "valid");
        assert_eq!(l["reason"], "mismatch");
        assert_eq!(l["detail"], "Some(3)");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("EAAB") && !text.contains("EAAC"), "{text}");
    }

    #[test]
    fn core_metric_events_reach_the_sink_whatever_the_log_level() {
        let buf = Buffer::default();
        let points = Arc::new(Mutex::new(Vec::new()));
        let sink = points.clone();
        let sub = subscriber("sender", "error", buf.clone(), move |p| {
            sink.lock().unwrap().push(p)
        });
        tracing::subscriber::with_default(sub, || {
            // Shaped like lc-core's (functions/core/src/sender.rs).
            tracing::warn!(
                metric = "GraphError",
                class = "retry",
                rule = "transient",
                attempt = 1u32,
                "send failed"
            );
            tracing::warn!(metric = "ScheduleDeleteFailed", error = %"boom", "deadline check not deleted");
            tracing::error!(metric = "PagePaused", page = "100", "page paused");
            tracing::info!(metric = "FirstMessageSent", "first message sent");
            tracing::info!(class = "retry", "no metric field: ignored");
        });
        assert_eq!(
            *points.lock().unwrap(),
            vec![
                Point::count(Metric::GraphErrors, &[("class", "retry")]),
                Point::count(Metric::ScheduleDeleteFailures, &[]),
                Point::count(Metric::PagesPaused, &[]),
            ]
        );
        // The log level still applies to the lines.
        assert_eq!(lines(&buf).len(), 1);
    }

    #[test]
    fn level_spellings() {
        assert_eq!(level_directives(None), "info");
        assert_eq!(level_directives(Some("WARNING".into())), "warn");
        assert_eq!(level_directives(Some("DEBUG".into())), "debug");
        assert_eq!(level_directives(Some("critical".into())), "error");
        assert_eq!(
            level_directives(Some("info,aws_smithy_runtime=warn".into())),
            "info,aws_smithy_runtime=warn"
        );
    }
}
