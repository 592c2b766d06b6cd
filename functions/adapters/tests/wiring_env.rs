//! Cold-start settings of the sender and deadline functions: `wiring::sender_config` derives
//! the claim's lease from `LC_GRAPH_TIMEOUT_MS` and `LC_FUNCTION_TIMEOUT_SECS` and refuses
//! settings where one attempt cannot finish inside the function's timeout.
//!
//! One test in its own binary: it sets process environment variables.

use lc_adapters::env::ConfigError;
use lc_adapters::graph::GraphClient;
use lc_adapters::wiring;

fn config(graph_timeout_ms: &str, function_timeout_secs: &str) -> Result<i64, ConfigError> {
    std::env::set_var("LC_GRAPH_TIMEOUT_MS", graph_timeout_ms);
    std::env::set_var("LC_FUNCTION_TIMEOUT_SECS", function_timeout_secs);
    let graph = GraphClient::from_env().expect("a valid Graph configuration");
    wiring::sender_config(&graph).map(|c| c.lease_ms)
}

#[test]
fn sender_config_derives_the_lease_and_refuses_what_does_not_fit() {
    for var in [
        "LC_FIRST_MESSAGE_TEXT",
        "LC_ALLOWED_TAGS",
        "LC_APPSECRET_PROOF",
    ] {
        std::env::remove_var(var);
    }
    assert_eq!(config("8000", "30").expect("the template's values"), 35_000);
    assert_eq!(config("8000", "60").expect("fits"), 65_000);
    for (graph, function) in [("29000", "30"), ("30000", "30"), ("8000", "10")] {
        match config(graph, function) {
            Err(ConfigError::Invalid(var, why)) => {
                assert_eq!(var, "LC_FUNCTION_TIMEOUT_SECS");
                assert!(why.contains(&format!("Graph timeout {graph} ms")), "{why}");
            }
            other => panic!("{graph} ms of Graph in {function} s must be refused: {other:?}"),
        }
    }
    assert!(matches!(
        config("8000", "thirty"),
        Err(ConfigError::Invalid("LC_FUNCTION_TIMEOUT_SECS", _))
    ));
}
