//! `login-connect load`, the command behind issue 15's throughput, latency and cost figures,
//! run end to end on a debug build with a few hundred opt-ins: its line says every first
//! message arrived once, in both loops, and a priced run on moto prices every part. What the
//! figures are is the command's business (docs/performance.md, docs/cost.md); that it counts
//! what it claims to is this file's.

use std::collections::BTreeMap;
use std::process::Command;

/// Runs `login-connect load <args>`: (exit success, stdout, stderr).
fn load(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_login-connect"))
        .arg("load")
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The `key=value` words of the stdout line that starts with `prefix`.
fn line(stdout: &str, prefix: &str) -> BTreeMap<String, String> {
    let found = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    found[prefix.len()..]
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(fields: &BTreeMap<String, String>, key: &str) -> f64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {fields:?}"))
}

/// Every opt-in sent, none lost, no second attempt, and a latency distribution that is one.
fn assert_every_first_message_once(stdout: &str, stderr: &str, optins: usize) {
    let f = line(stdout, "load ");
    assert_eq!(f["optins"], optins.to_string(), "{stdout}\n{stderr}");
    assert_eq!(f["sent"], optins.to_string(), "{stdout}\n{stderr}");
    assert_eq!(f["lost"], "0", "{stdout}\n{stderr}");
    assert_eq!(f["duplicates"], "0", "{stdout}\n{stderr}");
    assert!(number(&f, "throughput_per_s") > 0.0, "{stdout}");
    assert!(number(&f, "p99_ms") >= number(&f, "p50_ms"), "{stdout}");
    // Read from /proc on Linux, where the figures are taken.
    number(&f, "cpu_us_per_optin");
}

#[test]
fn a_closed_loop_delivers_every_first_message_once() {
    let (ok, stdout, stderr) = load(&["--optins", "300", "--concurrency", "16", "--pages", "5"]);
    assert!(ok, "load failed:\n{stdout}\n{stderr}");
    assert_every_first_message_once(&stdout, &stderr, 300);
}

#[test]
fn an_open_loop_of_batched_posts_delivers_every_first_message_once() {
    // 100 POSTs of 3 opt-ins, the last one short of nothing: 300 = 3 x 100.
    let (ok, stdout, stderr) = load(&[
        "--optins",
        "300",
        "--rate",
        "600",
        "--batch",
        "3",
        "--windows",
        "100",
    ]);
    assert!(ok, "load failed:\n{stdout}\n{stderr}");
    assert_every_first_message_once(&stdout, &stderr, 300);
    assert!(
        stderr.contains("load window_start_ms=0 "),
        "--windows prints the first window:\n{stderr}"
    );
}

#[test]
fn a_priced_run_on_moto_prices_every_part() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL names moto (tests/run.sh starts it)");
    let (ok, stdout, stderr) = load(&[
        "--optins",
        "20",
        "--concurrency",
        "4",
        "--aws-endpoint",
        &endpoint,
    ]);
    assert!(ok, "load failed:\n{stdout}\n{stderr}");
    assert_every_first_message_once(&stdout, &stderr, 20);

    // Counted once the pipeline has settled, not at the last first message: every opt-in's
    // `sent` record and schedule delete are in (the last ones come after the send).
    let requests = line(&stdout, "cost: requests ");
    for (request, per_optin) in [
        ("dynamodb.PutItem", 1.0),
        ("dynamodb.UpdateItem", 1.0),
        ("scheduler.CreateSchedule", 1.0),
        ("scheduler.DeleteSchedule", 1.0),
        ("events.PutEventsEntries64K", 2.0),
    ] {
        assert_eq!(number(&requests, request), 20.0 * per_optin, "{stdout}");
    }

    let part = |name: &str| line(&stdout, &format!("cost part={name} "));
    let ddb = part("dynamodb");
    // The common path writes the opt-in claimed, then `sent`: at least 2 WRU an opt-in.
    assert!(number(&ddb, "wru_per_optin") >= 2.0, "{ddb:?}");
    assert!(
        number(&part("sqs"), "requests_per_optin") >= 1.0,
        "{stdout}"
    );
    let webhook = line(&stdout, "cost part=lambda fn=webhook ");
    assert!(
        number(&webhook, "invocations_per_optin") >= 1.0,
        "{webhook:?}"
    );
    assert!(number(&part("logs"), "bytes_per_optin") > 0.0, "{stdout}");
    // OptInReceived and FirstMessageSent, at least, for each opt-in.
    assert!(
        number(&part("eventbridge"), "events_per_optin") >= 2.0,
        "{stdout}"
    );

    let all = line(&stdout, "cost usd_per_million_optins=");
    let total: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cost usd_per_million_optins="))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no all-in figure in:\n{stdout}"));
    let parts: f64 = ["storage_queues", "lambda", "logs", "eventbridge"]
        .iter()
        .map(|k| number(&all, k))
        .sum();
    assert!(
        (total - parts).abs() < 0.02,
        "the all-in figure is the sum of its parts: {total} vs {parts} in:\n{stdout}"
    );
}
