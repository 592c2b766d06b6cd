//! The `scale` command, small enough for CI (debug build, seconds): a simulated day with a 10x
//! peak and a 6-hour Meta outage across it, through the real intake, lifecycle, sender and
//! deadline code with the template's concurrency, prints its one line with `late=0 lost=0`
//! and no 613 from the simulator. The controls show the same measurement failing when it
//! should: an outage longer than the 24-hour window makes opt-ins late (and the command
//! exit non-zero), and senders that each believe they have a Page's whole rate get 613s.

use std::collections::BTreeMap;
use std::process::Command;

use lc_local::scale::{run, ScaleConfig};

/// Runs `login-connect scale <args>`: (exit success, the line's fields, stderr).
fn scale(args: &[&str]) -> (bool, BTreeMap<String, i64>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_login-connect"))
        .arg("scale")
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stdout: {stdout}\n{stderr}"
    );
    let mut words = lines[0].split(' ');
    assert_eq!(words.next(), Some("scale"), "{stdout}");
    let fields: BTreeMap<String, i64> = words
        .map(|w| {
            let (k, v) = w.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("an integer value"))
        })
        .collect();
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "late",
            "lost",
            "max_queue_age_s",
            "optins",
            "pages",
            "peak_per_s",
            "rate_limited",
            "sent"
        ],
        "{stdout}"
    );
    (out.status.success(), fields, stderr)
}

#[test]
fn a_day_with_a_peak_and_an_outage_misses_no_deadline() {
    let (ok, f, stderr) = scale(&["--optins", "3000", "--pages", "3"]);
    eprintln!("{stderr}");
    assert!(ok, "the command succeeds: {f:?}");
    assert_eq!(f["optins"], 3000);
    assert_eq!(f["pages"], 3);
    assert_eq!(f["sent"], 3000, "every opt-in got its first message");
    assert_eq!(f["late"], 0);
    assert_eq!(f["lost"], 0);
    assert_eq!(f["rate_limited"], 0, "Meta never answered 613");
    assert!(
        f["max_queue_age_s"] >= 6 * 3600 - 60,
        "jobs waited out the 6-hour outage in the queue: {f:?}"
    );
    assert!(
        stderr.contains("backlog_at_recovery=") && !stderr.contains("backlog_at_recovery=0 "),
        "the outage left a backlog: {stderr}"
    );
}

#[test]
fn control_an_outage_longer_than_the_window_makes_opt_ins_late_and_the_command_fail() {
    // Meta down for 30 hours from 02:00: everything that arrives in the first day's outage
    // reaches its deadline before Meta is back.
    let (ok, f, stderr) = scale(&[
        "--optins",
        "500",
        "--pages",
        "2",
        "--outage-start-hour",
        "2",
        "--outage-hours",
        "30",
    ]);
    assert!(!ok, "the command fails: {f:?}\n{stderr}");
    assert!(f["late"] > 0, "opt-ins were late: {f:?}");
    assert_eq!(
        f["lost"], 0,
        "late, not lost: each is recorded as missed: {f:?}"
    );
    assert!(f["sent"] + f["late"] >= 500, "{f:?}");
}

/// 5,000 opt-ins squeezed into 90 seconds on one Page (a peak near 550/s, beyond its
/// 300/s), no outage. `paced`: as deployed; otherwise every sending process believes it alone sends
/// to the Page (`LC_SENDING_INSTANCES=1`) and Meta's usage headers are ignored until they say
/// the Page is throttled.
fn burst(paced: bool) -> ScaleConfig {
    let deployed = ScaleConfig::default();
    ScaleConfig {
        optins: 5_000,
        pages: 1,
        arrival_hours: 0.025,
        outage_hours: 0.0,
        pacing_instances: if paced { deployed.pacing_instances } else { 1 },
        pace_threshold_percent: if paced {
            deployed.pace_threshold_percent
        } else {
            1_000
        },
        ..deployed
    }
}

#[tokio::test]
async fn a_burst_beyond_a_pages_rate_is_paced_under_it() {
    let report = run(&burst(true)).await.expect("the run completes");
    println!("{}\n{}", report.line(), report.detail());
    assert!(report.peak_per_s > 300, "the burst exceeds the Page's rate");
    assert_eq!((report.sent, report.late, report.lost), (5_000, 0, 0));
    assert_eq!(report.rate_limited, 0, "the simulator counted no 613");
}

/// The burst with a redrive policy of 3 receives: jobs held back by pacing wait far longer
/// than 3 rounds, and none reaches the DLQ, because a wait is a deferred copy, not a receive.
/// Mutation check: make `JobOutcome::Waiting` a timed retry (`JobOutcome::fate`) and jobs are
/// dead-lettered here.
#[tokio::test]
async fn pacing_waits_spend_no_receives_towards_the_dlq() {
    let config = ScaleConfig {
        outbound_max_receives: 3,
        ..burst(true)
    };
    let report = run(&config).await.expect("the run completes");
    println!("{}\n{}", report.line(), report.detail());
    assert_eq!((report.sent, report.late, report.lost), (5_000, 0, 0));
    assert_eq!(report.outbound_dead_letters, 0, "waiting is not failing");
}

#[tokio::test]
async fn control_senders_that_each_take_the_whole_rate_get_613s() {
    let report = run(&burst(false)).await.expect("the run completes");
    println!("{}\n{}", report.line(), report.detail());
    assert!(
        report.rate_limited > 0,
        "Meta answered 613: {}",
        report.line()
    );
    // Meta's 613 is retried: still nothing late or lost.
    assert_eq!((report.late, report.lost), (0, 0), "{}", report.line());
}
