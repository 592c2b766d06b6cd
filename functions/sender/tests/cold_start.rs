//! The sender binary refuses to start when its Graph timeout does not fit its function
//! timeout (the lease could not outlive an attempt): it exits at cold start, before serving
//! any job, naming the setting. With settings that fit it gets past the wiring (and then stops
//! only because no Lambda runtime API is around).

use std::process::Command;

fn cold_start(graph_timeout_ms: &str, function_timeout_secs: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sender"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("TABLE_NAME", "lc")
        .env("OUTBOUND_QUEUE_URL", "http://127.0.0.1:9/queue/outbound")
        .env("OUTBOUND_DLQ_URL", "http://127.0.0.1:9/queue/outbound-dlq")
        .env("SCHEDULE_GROUP", "lc")
        .env("EVENT_BUS_NAME", "lc")
        .env(
            "DEADLINE_FUNCTION_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:deadline",
        )
        .env(
            "SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/scheduler",
        )
        .env("LC_APP_SECRET", "cold-start-secret")
        .env("LC_VERIFY_TOKEN", "vt")
        .env("LC_GRAPH_TIMEOUT_MS", graph_timeout_ms)
        .env("LC_FUNCTION_TIMEOUT_SECS", function_timeout_secs)
        .output()
        .expect("the sender binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_graph_timeout_that_does_not_fit_stops_the_sender_at_cold_start() {
    let (ok, text) = cold_start("29000", "30");
    assert!(!ok, "must not start: {text}");
    assert!(text.contains("LC_FUNCTION_TIMEOUT_SECS"), "{text}");
    assert!(text.contains("Graph timeout 29000 ms"), "{text}");

    let (ok, text) = cold_start("8000", "30");
    assert!(!ok, "no Lambda runtime here: {text}");
    assert!(
        !text.contains("LC_FUNCTION_TIMEOUT_SECS"),
        "the template's settings pass the wiring: {text}"
    );
}
