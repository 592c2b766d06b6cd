//! Cost per opt-in, every part priced: DynamoDB, SQS, Scheduler from the counted AWS requests;
//! Lambda from the invocations and wall times measured in the run ([`crate::meter`]) at the
//! template's memory and architecture; CloudWatch Logs from the bytes the functions would log
//! at the template's log levels; EventBridge from the entries put on the bus. Prices:
//! `infra/prices.json` (dated, with sources).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::meter::{Use, OUTSIDE};

const PRICES: &str = include_str!("../../../infra/prices.json");
const TEMPLATE: &str = include_str!("../../../template.yaml");

#[derive(Debug, Deserialize)]
struct Prices {
    as_of: String,
    dynamodb_usd_per_million_wru: f64,
    dynamodb_usd_per_million_rru: f64,
    sqs_usd_per_million_requests: f64,
    scheduler_usd_per_million_invocations: f64,
    lambda_usd_per_million_requests: f64,
    lambda_usd_per_gb_second_x86_64: f64,
    lambda_usd_per_gb_second_arm64: f64,
    logs_usd_per_gb_ingested: f64,
    logs_bytes_per_event_overhead: u64,
    eventbridge_usd_per_million_events: f64,
}

/// Capacity units per DynamoDB request for our items (all under 1 KB, read strongly
/// consistent): a write is 1 WRU (a failed conditional write too), a transactional write 2 per
/// item (our one transaction writes 2 items), a strongly consistent read of up to 4 KB 1 RRU.
fn units(op: &str) -> (f64, f64) {
    match op {
        "PutItem" | "UpdateItem" | "DeleteItem" => (1.0, 0.0),
        "TransactWriteItems" => (4.0, 0.0),
        "GetItem" | "Query" => (0.0, 1.0),
        _ => (0.0, 0.0),
    }
}

/// What the template deploys, as far as the bill goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    /// `LoggingConfig.ApplicationLogLevel`, else the `LogLevel` parameter's default.
    pub app_log_level: String,
    /// `LoggingConfig.SystemLogLevel` (Lambda's default: INFO).
    pub system_log_level: String,
    /// Template resource name -> (MemorySize MB, architecture).
    pub functions: BTreeMap<String, (u32, String)>,
    /// Template resource name -> its SQS event source's `MaximumBatchingWindowInSeconds`, for
    /// the functions whose event source has one.
    pub batching_windows: BTreeMap<String, u32>,
}

/// The local name of a function (the meter's) -> its template resource.
pub fn resource_of(function: &str) -> Option<&'static str> {
    Some(match function {
        "webhook" => "WebhookFunction",
        "login" => "LoginFunction",
        "events" => "EventsFunction",
        "sender" => "SenderFunction",
        "deadline" => "DeadlineFunction",
        "people" => "PeopleFunction",
        "messages-api" => "MessagesApiFunction",
        "messages-worker" => "MessagesWorkerFunction",
        _ => return None,
    })
}

/// The lines indented under `header` (a line equal to it), up to the next line indented as
/// much or less.
fn block<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    let indent = header.len() - header.trim_start().len();
    let mut lines = text.lines().skip_while(|l| l.trim_end() != header);
    if lines.next().is_none() {
        return Vec::new();
    }
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .collect()
}

/// The value of `key:` among `lines` (first match, any depth), quotes trimmed.
fn value(lines: &[&str], key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix(&prefix)
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    })
}

impl Deployed {
    pub fn from_template() -> Result<Deployed, String> {
        Deployed::parse(TEMPLATE)
    }

    pub fn parse(template: &str) -> Result<Deployed, String> {
        let param = |name: &str| value(&block(template, &format!("  {name}:")), "Default");
        let globals = block(template, "  Function:");
        let resolve = |v: String| -> Option<String> {
            if let Some(p) = v.strip_prefix("!Ref ") {
                return param(p.trim());
            }
            // `!FindInMap [LogLevels, !Ref LogLevel, Lambda]`: the parameter's default names
            // the level.
            if let Some(args) = v.strip_prefix("!FindInMap") {
                let p = args.split("!Ref").nth(1)?.split(',').next()?.trim();
                return param(p);
            }
            Some(v)
        };
        let arch_of = |lines: &[&str]| -> Option<String> {
            let raw = value(lines, "Architectures")?;
            resolve(
                raw.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string(),
            )
        };
        let global_memory: u32 = value(&globals, "MemorySize")
            .and_then(|m| m.parse().ok())
            .unwrap_or(128);
        let global_arch = arch_of(&globals).unwrap_or_else(|| "x86_64".into());
        let app_log_level = value(&globals, "ApplicationLogLevel")
            .and_then(resolve)
            .or_else(|| param("LogLevel"))
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        let system_log_level = value(&globals, "SystemLogLevel")
            .and_then(resolve)
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        let mut functions = BTreeMap::new();
        let mut batching_windows = BTreeMap::new();
        for f in [
            "webhook",
            "login",
            "events",
            "sender",
            "deadline",
            "people",
            "messages-api",
            "messages-worker",
        ] {
            let Some(resource) = resource_of(f) else {
                continue;
            };
            let lines = block(template, &format!("  {resource}:"));
            if lines.is_empty() {
                return Err(format!("template.yaml has no {resource}"));
            }
            let memory = value(&lines, "MemorySize")
                .and_then(|m| m.parse().ok())
                .unwrap_or(global_memory);
            let arch = arch_of(&lines).unwrap_or_else(|| global_arch.clone());
            functions.insert(resource.to_string(), (memory, arch));
            if let Some(w) = value(&lines, "MaximumBatchingWindowInSeconds")
                .and_then(resolve)
                .and_then(|w| w.parse().ok())
            {
                batching_windows.insert(resource.to_string(), w);
            }
        }
        Ok(Deployed {
            app_log_level,
            system_log_level,
            functions,
            batching_windows,
        })
    }

    /// Whether Lambda writes its `platform.start` and `platform.report` lines (INFO).
    fn platform_lines(&self) -> bool {
        matches!(self.system_log_level.as_str(), "info" | "debug")
    }
}

/// Bytes of the two system lines Lambda writes per invocation at `SystemLogLevel` INFO, JSON
/// format (`platform.start`, `platform.report`), shaped as Lambda writes them.
fn platform_bytes_per_invocation(memory_mb: u32) -> (u64, u64) {
    let id = "8f5c2b1e-4c1d-4e2a-9b7f-0123456789ab";
    let start = format!(
        r#"{{"time":"2026-12-06T23:59:59.123Z","type":"platform.start","record":{{"requestId":"{id}","version":"$LATEST"}}}}"#
    );
    let report = format!(
        r#"{{"time":"2026-12-06T23:59:59.135Z","type":"platform.report","record":{{"requestId":"{id}","metrics":{{"durationMs":11.482,"billedDurationMs":12,"memorySizeMB":{memory_mb},"maxMemoryUsedMB":31}},"status":"success"}}}}"#
    );
    (2, (start.len() + report.len() + 2) as u64)
}

/// The breakdown (`cost part=…` lines) and, last, `cost usd_per_million_optins=… …`.
pub fn report(
    requests: &BTreeMap<String, u64>,
    uses: &BTreeMap<&'static str, Use>,
    optins: usize,
) -> Result<String, String> {
    let prices: Prices = serde_json::from_str(PRICES).map_err(|e| format!("prices.json: {e}"))?;
    let deployed = Deployed::from_template()?;
    let n = optins.max(1) as f64;
    // Each part is summed as (billed units x USD per million units); per million opt-ins
    // that is the sum over the opt-ins.
    let per_m = |usd: f64| usd / n;
    let mut out = Vec::new();

    // Storage and queues.
    let (mut ddb_requests, mut wru, mut rru) = (0u64, 0.0, 0.0);
    let (mut sqs, mut scheduler_invocations, mut scheduler_calls) = (0u64, 0u64, 0u64);
    let (mut eb_calls, mut eb_events) = (0u64, 0u64);
    for (key, count) in requests {
        let (service, op) = key.split_once('.').unwrap_or((key, ""));
        match (service, op) {
            ("dynamodb", op) => {
                let (w, r) = units(op);
                ddb_requests += count;
                wru += w * *count as f64;
                rru += r * *count as f64;
            }
            // Idle polls: a fixed cost of the event source's pollers, not of the opt-ins
            // (shown in the request list).
            ("sqs", "ReceiveMessageEmpty") => {}
            // Requests, plus each 64 KB chunk past a request's first.
            ("sqs", _) => sqs += count,
            ("scheduler", "Invocation") => scheduler_invocations += count,
            ("scheduler", _) => scheduler_calls += count,
            ("events", "PutEvents") => eb_calls += count,
            ("events", "PutEventsEntries64K") => eb_events += count,
            _ => {}
        }
    }
    let ddb_usd = per_m(
        wru * prices.dynamodb_usd_per_million_wru + rru * prices.dynamodb_usd_per_million_rru,
    );
    let sqs_usd = per_m(sqs as f64 * prices.sqs_usd_per_million_requests);
    let scheduler_usd =
        per_m(scheduler_invocations as f64 * prices.scheduler_usd_per_million_invocations);
    let detail: Vec<String> = requests.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(format!("cost: requests {}", detail.join(" ")));
    out.push(format!(
        "cost part=dynamodb requests_per_optin={:.2} wru_per_optin={:.2} rru_per_optin={:.2} usd_per_million_optins={:.3}",
        ddb_requests as f64 / n, wru / n, rru / n, ddb_usd
    ));
    out.push(format!(
        "cost part=sqs requests_per_optin={:.2} usd_per_million_optins={:.3}",
        sqs as f64 / n,
        sqs_usd
    ));
    out.push(format!(
        "cost part=scheduler invocations_per_optin={:.3} free_calls_per_optin={:.2} usd_per_million_optins={:.3}",
        scheduler_invocations as f64 / n, scheduler_calls as f64 / n, scheduler_usd
    ));

    // Lambda, and the logs each function writes.
    let (mut lambda_usd, mut log_bytes) = (0.0, 0u64);
    let (mut app_bytes, mut emf_bytes, mut platform_bytes, mut events) = (0u64, 0u64, 0u64, 0u64);
    for (function, u) in uses {
        if *function == OUTSIDE {
            app_bytes += u.log_bytes;
            events += u.log_lines;
            continue;
        }
        let resource = resource_of(function).ok_or(format!("unknown function {function}"))?;
        let (memory_mb, arch) = deployed
            .functions
            .get(resource)
            .cloned()
            .ok_or(format!("{resource} not in template.yaml"))?;
        let gb_s_price = if arch == "arm64" {
            prices.lambda_usd_per_gb_second_arm64
        } else {
            prices.lambda_usd_per_gb_second_x86_64
        };
        let gb_s = u.billed_ms as f64 / 1000.0 * f64::from(memory_mb) / 1024.0;
        let usd = per_m(
            u.invocations as f64 * prices.lambda_usd_per_million_requests
                + gb_s * gb_s_price * 1_000_000.0,
        );
        lambda_usd += usd;
        let (platform_lines, platform) = if deployed.platform_lines() {
            let (l, b) = platform_bytes_per_invocation(memory_mb);
            (l * u.invocations, b * u.invocations)
        } else {
            (0, 0)
        };
        app_bytes += u.log_bytes;
        emf_bytes += u.emf_bytes;
        platform_bytes += platform;
        events += u.log_lines + u.emf_lines + platform_lines;
        out.push(format!(
            "cost part=lambda fn={function} invocations_per_optin={:.3} billed_ms_per_invocation={:.2} memory_mb={memory_mb} arch={arch} log_lines_per_optin={:.2} usd_per_million_optins={:.3}",
            u.invocations as f64 / n,
            u.billed_ms as f64 / (u.invocations.max(1)) as f64,
            (u.log_lines + u.emf_lines + platform_lines) as f64 / n,
            usd
        ));
    }
    log_bytes +=
        app_bytes + emf_bytes + platform_bytes + events * prices.logs_bytes_per_event_overhead;
    let logs_usd = per_m(log_bytes as f64 / 1e9 * prices.logs_usd_per_gb_ingested * 1_000_000.0);
    out.push(format!(
        "cost part=logs bytes_per_optin={:.0} app={:.0} emf={:.0} platform={:.0} events_per_optin={:.2} app_level={} system_level={} usd_per_million_optins={:.3}",
        log_bytes as f64 / n,
        app_bytes as f64 / n,
        emf_bytes as f64 / n,
        platform_bytes as f64 / n,
        events as f64 / n,
        deployed.app_log_level,
        deployed.system_log_level,
        logs_usd
    ));
    let eb_usd = per_m(eb_events as f64 * prices.eventbridge_usd_per_million_events);
    out.push(format!(
        "cost part=eventbridge put_events_calls_per_optin={:.2} events_per_optin={:.2} usd_per_million_optins={:.3}",
        eb_calls as f64 / n,
        eb_events as f64 / n,
        eb_usd
    ));
    out.push(format!(
        "cost: prices as of {}; Lambda durations are wall times measured locally (moto and the \
         Graph simulator, the local poller's batches), billed per 1 ms",
        prices.as_of
    ));
    let storage_queues = ddb_usd + sqs_usd + scheduler_usd;
    let total = storage_queues + lambda_usd + logs_usd + eb_usd;
    out.push(format!(
        "cost usd_per_million_optins={total:.2} storage_queues={storage_queues:.2} lambda={lambda_usd:.2} logs={logs_usd:.2} eventbridge={eb_usd:.2}"
    ));
    Ok(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_read() {
        let d = Deployed::from_template().unwrap();
        let (memory, arch) = &d.functions["EventsFunction"];
        assert!(*memory >= 128, "{d:?}");
        assert!(arch == "x86_64" || arch == "arm64", "{d:?}");
        assert_eq!(d.functions.len(), 8);
        // ApplicationLogLevel is mapped from the LogLevel parameter.
        assert_eq!(d.app_log_level, "info", "{d:?}");
        // The windows `load` gives its pollers when it prices a run: the BatchingWindowSeconds
        // parameter's default.
        for f in ["EventsFunction", "SenderFunction"] {
            assert_eq!(d.batching_windows.get(f), Some(&1), "{f}: {d:?}");
        }
    }

    #[test]
    fn a_function_overrides_the_globals() {
        let t = "Parameters:\n  Architecture:\n    Type: String\n    Default: arm64\n  LogLevel:\n    Default: debug\nGlobals:\n  Function:\n    Architectures: [!Ref Architecture]\n    MemorySize: 256\n    LoggingConfig:\n      LogFormat: JSON\n      SystemLogLevel: WARN\nResources:\n  WebhookFunction:\n    Properties:\n      MemorySize: 512\n  LoginFunction:\n    Type: AWS::Serverless::Function\n  EventsFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        Inbound:\n          Type: SQS\n          Properties:\n            MaximumBatchingWindowInSeconds: 3\n  SenderFunction:\n    Type: AWS::Serverless::Function\n  DeadlineFunction:\n    Type: AWS::Serverless::Function\n  PeopleFunction:\n    Type: AWS::Serverless::Function\n  MessagesApiFunction:\n    Type: AWS::Serverless::Function\n  MessagesWorkerFunction:\n    Properties:\n      Architectures: [x86_64]\n";
        let d = Deployed::parse(t).unwrap();
        assert_eq!(d.functions["WebhookFunction"], (512, "arm64".into()));
        assert_eq!(d.functions["EventsFunction"], (256, "arm64".into()));
        assert_eq!(
            d.batching_windows,
            BTreeMap::from([("EventsFunction".to_string(), 3)])
        );
        assert_eq!(
            d.functions["MessagesWorkerFunction"],
            (256, "x86_64".into())
        );
        assert_eq!(
            (d.app_log_level.as_str(), d.system_log_level.as_str()),
            ("debug", "warn")
        );
    }

    #[test]
    fn every_part_adds_up() {
        let mut r = BTreeMap::new();
        r.insert("dynamodb.PutItem".to_string(), 10);
        r.insert("dynamodb.UpdateItem".to_string(), 10);
        r.insert("sqs.SendMessageBatch".to_string(), 10);
        r.insert("scheduler.CreateSchedule".to_string(), 10);
        r.insert("events.PutEvents".to_string(), 10);
        r.insert("events.PutEventsEntries64K".to_string(), 20);
        let mut uses = BTreeMap::new();
        uses.insert(
            "events",
            Use {
                invocations: 10,
                billed_ms: 100,
                log_lines: 10,
                log_bytes: 4_000,
                emf_lines: 0,
                emf_bytes: 0,
            },
        );
        let text = report(&r, &uses, 10).unwrap();
        let last = text.lines().last().unwrap();
        // DynamoDB 2 WRU x 0.625 + SQS 1 x 0.40 = 1.65; EventBridge 2 x 1.00.
        assert!(
            last.starts_with("cost usd_per_million_optins=")
                && last.contains("storage_queues=1.65")
                && last.contains("eventbridge=2.00"),
            "{text}"
        );
        assert!(
            text.contains(
                "part=lambda fn=events invocations_per_optin=1.000 billed_ms_per_invocation=10.00"
            ),
            "{text}"
        );
    }
}
