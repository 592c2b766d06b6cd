//! The claim's lease is derived from the Graph timeout and the function timeout
//! (`SenderConfig::with_timeouts`), and settings where one attempt cannot finish inside the
//! function's timeout are refused: a killed attempt would leave a send unrecorded.

use lc_core::sending::sender::SenderConfig;

#[test]
fn the_lease_outlives_the_function() {
    let c = SenderConfig::default()
        .with_timeouts(8_000, 30_000)
        .expect("8 s of Graph fit in 30 s");
    assert_eq!(c.lease_ms, 35_000, "function timeout + margin");
    assert!(
        c.lease_ms > 30_000,
        "no takeover while the function may still run"
    );
    let c = SenderConfig::default()
        .with_timeouts(8_000, 60_000)
        .expect("fits");
    assert_eq!(c.lease_ms, 65_000, "follows the function timeout");
}

#[test]
fn a_graph_timeout_that_does_not_fit_the_function_is_refused() {
    // The default record budget: 4 tries (1 s each) with 100..800 ms waits = 5.5 s, plus 2 s
    // of claim and enqueue: 7.5 s beside the Graph timeout.
    let fits = SenderConfig::default().with_timeouts(22_499, 30_000);
    assert!(fits.is_ok(), "{fits:?}");
    for graph in [22_500, 29_000, 30_000, 45_000] {
        let err = SenderConfig::default()
            .with_timeouts(graph, 30_000)
            .expect_err("refused");
        assert!(err.contains("function timeout 30000 ms"), "{err}");
        assert!(err.contains(&format!("Graph timeout {graph} ms")), "{err}");
    }
    // The lease equal to the function timeout (the old fixed 30 s) can no longer happen.
    assert!(SenderConfig::default().with_timeouts(8_000, 8_000).is_err());
}

#[test]
fn a_larger_record_budget_needs_more_time() {
    let patient = SenderConfig {
        record_attempts: 8,
        ..SenderConfig::default()
    };
    assert!(SenderConfig::default()
        .with_timeouts(20_000, 30_000)
        .is_ok());
    let err = patient
        .with_timeouts(20_000, 30_000)
        .expect_err("8 record tries with doubling waits do not fit");
    assert!(err.contains("record retries"), "{err}");
}
