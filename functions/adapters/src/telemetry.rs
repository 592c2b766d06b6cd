//! Structured logs for every function, and the process-wide observability setup.
//!
//! With `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's `LoggingConfig.LogFormat`) or unset, one
//! JSON object per line, with the keys Powertools for AWS Lambda users know:
//!
//! ```json
//! {"level":"INFO","message":"job settled","timestamp":"2026-05-01T12:00:00.123Z",
//!  "service":"sender","cold_start":true,"function_request_id":"8f5c…","outcome":"sent"}
//! ```
//!
//! then the event's own fields, top level. With `AWS_LAMBDA_LOG_FORMAT=Text`, one plain line:
//! `2026-05-01T12:00:00.123Z INFO [8f5c…] job settled outcome=sent`.
//!
//! `function_request_id`, `xray_trace_id` and `cold_start` come from
//! [`crate::invocation::current`], which the Lambda `main`s scope from the Lambda context.
//! Outside an invocation `cold_start` is true until the first invocation begins (the init
//! lines), false after. Ids are hashed by the callers (`lc_core::support::privacy::hash_id`);
//! fields named like credentials (`*_token`, `*_secret`, `authorization`, ...) are written
//! `[redacted]` in both formats as a last line of defence.
//!
//! Metrics do not go through logs: the domain records them through `lc_core::ports::Metrics`.
//! [`init`] only installs the EMF recorder next to the subscriber.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use crate::invocation::{self, Invocation};

/// Installs the log subscriber and the metrics recorder, once. Format from
/// `AWS_LAMBDA_LOG_FORMAT` ([`LogFormat::from_env`]); level from `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else `LOG_LEVEL` (default `info`). Nothing slow: no I/O.
pub fn init(service: &'static str) {
    let filter = level_directives(level_setting(crate::env::optional));
    let subscriber = subscriber(service, LogFormat::from_env(), &filter, std::io::stdout);
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        crate::metrics::init(service);
        tracing::info!("initialised");
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Powertools-style JSON objects, one per line.
    Json,
    /// Plain lines for people (no ANSI colours: CloudWatch shows them as escape codes).
    Text,
}

impl LogFormat {
    /// `AWS_LAMBDA_LOG_FORMAT`, which Lambda sets from the function's `LoggingConfig.LogFormat`.
    pub fn from_env() -> LogFormat {
        LogFormat::parse(crate::env::optional("AWS_LAMBDA_LOG_FORMAT").as_deref())
    }

    /// Only `Text` (any case) is text: unset or unknown stays JSON, what the log queries and
    /// Lambda's level filter read.
    pub fn parse(raw: Option<&str>) -> LogFormat {
        match raw {
            Some(f) if f.trim().eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// The subscriber [`init`] installs, with any writer (tests, other runners).
pub fn subscriber<W>(
    service: &'static str,
    format: LogFormat,
    filter: &str,
    writer: W,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Registry::default().with(layer(service, format, filter, writer))
}

/// The lines of [`subscriber`] as a layer, to stack beside others (the local runner counts
/// the bytes the deployed functions would log, next to its own human-readable lines).
pub fn layer<S, W>(
    service: &'static str,
    format: LogFormat,
    filter: &str,
    writer: W,
) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(Lines { service, format })
        .with_writer(writer)
        .with_filter(EnvFilter::new(filter))
}

/// The level filter the functions apply for a level setting such as `LOG_LEVEL`'s (`info`,
/// `WARNING`, ...).
pub fn level_filter(raw: &str) -> String {
    level_directives(Some(raw.to_string()))
}

/// The first level setting present. `AWS_LAMBDA_LOG_LEVEL` (Lambda sets it from
/// `LoggingConfig.ApplicationLogLevel`) wins, as in Powertools: Lambda drops JSON lines below
/// it anyway, so formatting them would be wasted work.
fn level_setting(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG", "LOG_LEVEL"]
        .iter()
        .find_map(|name| get(name))
}

/// `LOG_LEVEL=WARNING` (Powertools spelling), `FATAL` (Lambda's) and friends -> `tracing`
/// directives.
fn level_directives(raw: Option<String>) -> String {
    let raw = raw.unwrap_or_else(|| "info".into()).trim().to_lowercase();
    match raw.as_str() {
        "warning" => "warn".into(),
        "critical" | "fatal" => "error".into(),
        _ => raw,
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

struct Lines {
    service: &'static str,
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for Lines
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
        let current = invocation::current();
        let line = Line {
            level: event.metadata().level(),
            ms: now_ms(),
            cold_start: current
                .as_deref()
                .map_or_else(invocation::cold_start, |i| i.cold_start),
            invocation: current.as_deref(),
            fields,
        };
        match self.format {
            LogFormat::Json => writeln!(writer, "{}", line.json(self.service)),
            LogFormat::Text => writeln!(writer, "{}", line.text()),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One event with what the formatter adds to it.
struct Line<'a> {
    level: &'a tracing::Level,
    ms: i64,
    invocation: Option<&'a Invocation>,
    cold_start: bool,
    fields: LogFields,
}

impl Line<'_> {
    fn json(self, service: &str) -> String {
        let mut out = String::with_capacity(256);
        let mut put = |key: &str, value: &Value| {
            out.push(if out.is_empty() { '{' } else { ',' });
            push_json(&mut out, &Value::String(key.to_string()));
            out.push(':');
            push_json(&mut out, value);
        };
        put("level", &Value::String(self.level.as_str().to_string()));
        put(
            "message",
            &Value::String(self.fields.message.unwrap_or_default()),
        );
        put(
            "timestamp",
            &Value::String(lc_core::support::time::format_rfc3339_ms(self.ms)),
        );
        put("service", &Value::String(service.to_string()));
        put("cold_start", &Value::Bool(self.cold_start));
        if let Some(i) = self.invocation {
            put("function_request_id", &Value::String(i.request_id.clone()));
            if let Some(x) = &i.xray_trace_id {
                put("xray_trace_id", &Value::String(x.clone()));
            }
        }
        for (name, value) in self.fields.fields {
            if RESERVED.contains(&name) {
                put(&format!("field.{name}"), &value);
            } else {
                put(name, &value);
            }
        }
        out.push('}');
        out
    }

    /// `<timestamp> <LEVEL> [<request id>] <message> key=value ...`; the service is the log
    /// group's, so it is not repeated.
    fn text(self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str(&lc_core::support::time::format_rfc3339_ms(self.ms));
        out.push(' ');
        out.push_str(self.level.as_str());
        if let Some(i) = self.invocation {
            out.push_str(" [");
            out.push_str(&i.request_id);
            out.push(']');
        }
        out.push(' ');
        // One event is one line, whatever the message holds.
        out.push_str(&self.fields.message.unwrap_or_default().replace('\n', "\\n"));
        for (name, value) in self.fields.fields {
            out.push(' ');
            out.push_str(name);
            out.push('=');
            match value {
                Value::String(s) if !s.is_empty() && !s.contains(needs_quotes) => out.push_str(&s),
                other => push_json(&mut out, &other),
            }
        }
        out
    }
}

fn needs_quotes(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\')
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
    use crate::test_support::{lines, text, Buffer};

    fn invocation(request_id: &str, cold_start: bool) -> Invocation {
        Invocation {
            request_id: request_id.into(),
            xray_trace_id: Some("Root=1-abc".into()),
            cold_start,
        }
    }

    /// Invocations are scoped by hand (`invocation::scoped`): the process's own cold start
    /// belongs to `invocation`'s test, so lines outside an invocation are not checked here.
    #[tokio::test]
    async fn powertools_keys_and_the_invocation() {
        let buf = Buffer::default();
        let _guard = tracing::subscriber::set_default(subscriber(
            "sender",
            LogFormat::Json,
            "info",
            buf.clone(),
        ));

        tracing::debug!("below the level: not written");
        invocation::scoped(invocation("req-1", true), async {
            tracing::info!(outcome = "sent", attempt = 1, ok = true, "job settled");
            tracing::warn!("record retried");
        })
        .await;
        invocation::scoped(invocation("req-2", false), async {
            tracing::error!("page paused");
        })
        .await;
        tracing::info!("between invocations");

        let got = lines(&buf);
        assert_eq!(got.len(), 4, "{got:#?}");
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
        assert_eq!(got[0]["message"], "job settled");
        assert_eq!(got[0]["level"], "INFO");
        assert_eq!(got[0]["outcome"], "sent");
        assert_eq!(got[0]["attempt"], 1);
        assert_eq!(got[0]["ok"], true);
        assert_eq!(got[0]["function_request_id"], "req-1");
        assert_eq!(got[0]["xray_trace_id"], "Root=1-abc");
        assert_eq!(got[0]["cold_start"], true);
        assert_eq!(got[1]["level"], "WARN");
        assert_eq!(got[1]["function_request_id"], "req-1");
        assert_eq!(got[2]["level"], "ERROR");
        assert_eq!(got[2]["function_request_id"], "req-2");
        assert_eq!(got[2]["cold_start"], false);
        assert_eq!(got[3]["message"], "between invocations");
        assert!(got[3].get("function_request_id").is_none());
        assert!(got[3].get("xray_trace_id").is_none());
    }

    fn log_a_secret() {
        tracing::info!(
            service = "other",
            page_token = "EAAB-secret",
            access_token = "EAAC",
            token_status = "valid",
            reason = %"mismatch",
            detail = ?Some(3),
            "webhook {}", "refused"
        );
    }

    /// The funnel's line as the per-Page table reads it (`stats sum(optin), ...`): a field per
    /// step taken, set to 1, and none for a step not taken.
    #[test]
    fn steps_taken_together_are_one_funnel_line() {
        use lc_core::funnel::{record_steps, FunnelStage};
        use lc_core::lifecycle::optin::EntryPoint;
        let buf = Buffer::default();
        let sub = subscriber("events", LogFormat::Json, "info", buf.clone());
        let metrics = lc_core::ports::NoMetrics;
        tracing::subscriber::with_default(sub, || {
            record_steps(
                &metrics,
                &[FunnelStage::Optin, FunnelStage::FirstMessageSent],
                EntryPoint::LoginConnect,
                "100",
            );
        });
        let got = lines(&buf);
        assert_eq!(got.len(), 1, "{got:?}");
        let l = &got[0];
        assert_eq!(l["message"], "funnel");
        assert_eq!(l["optin"], 1);
        assert_eq!(l["first_message_sent"], 1);
        assert_eq!(l["entry_point"], "login_connect");
        assert_eq!(l["page_id"], "100");
        for absent in ["reply_24h", "reply_7d", "opted_out", "missed"] {
            assert!(l.get(absent).is_none(), "{absent}: {l}");
        }
    }

    #[test]
    fn fields_are_flat_reserved_names_kept_and_secrets_redacted() {
        let buf = Buffer::default();
        let sub = subscriber("webhook", LogFormat::Json, "info", buf.clone());
        tracing::subscriber::with_default(sub, log_a_secret);
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
        let all = text(&buf);
        assert!(!all.contains("EAAB") && !all.contains("EAAC"), "{all}");
    }

    #[tokio::test]
    async fn text_lines_are_plain_and_redacted_too() {
        let buf = Buffer::default();
        let _guard = tracing::subscriber::set_default(subscriber(
            "webhook",
            LogFormat::Text,
            "info",
            buf.clone(),
        ));
        log_a_secret();
        invocation::scoped(invocation("req-9", false), async {
            tracing::warn!(note = "two words", empty = "", n = 3, "line\nbreak");
        })
        .await;
        let all = text(&buf);
        let got: Vec<&str> = all.lines().collect();
        assert_eq!(got.len(), 2, "{all}");
        let (ts, rest) = got[0].split_once(' ').unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
        assert_eq!(
            rest,
            "INFO webhook refused service=other page_token=[redacted] \
             access_token=[redacted] token_status=valid reason=mismatch detail=Some(3)"
        );
        assert_eq!(
            got[1].split_once(' ').unwrap().1,
            r#"WARN [req-9] line\nbreak note="two words" empty="" n=3"#
        );
        assert!(!all.contains('\u{1b}'), "no ANSI escapes: {all:?}");
    }

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse(None), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("JSON")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("Text")), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some(" TEXT ")), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("yaml")), LogFormat::Json);
    }

    #[test]
    fn lambdas_level_wins() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
            ("LOG_LEVEL", "trace"),
        ]);
        assert_eq!(level_directives(level_setting(all)), "warn");
        let no_lambda = env(&[("RUST_LOG", "debug"), ("LOG_LEVEL", "trace")]);
        assert_eq!(level_directives(level_setting(no_lambda)), "debug");
        assert_eq!(
            level_directives(level_setting(env(&[("LOG_LEVEL", "WARNING")]))),
            "warn"
        );
        assert_eq!(level_directives(level_setting(env(&[]))), "info");
    }

    #[test]
    fn level_spellings() {
        assert_eq!(level_directives(None), "info");
        assert_eq!(level_directives(Some("WARNING".into())), "warn");
        assert_eq!(level_directives(Some("DEBUG".into())), "debug");
        assert_eq!(level_directives(Some("critical".into())), "error");
        assert_eq!(level_directives(Some("FATAL".into())), "error");
        assert_eq!(level_directives(Some("TRACE".into())), "trace");
        assert_eq!(
            level_directives(Some("info,aws_smithy_runtime=warn".into())),
            "info,aws_smithy_runtime=warn"
        );
    }
}
