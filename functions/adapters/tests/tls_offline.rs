//! The HTTPS clients build and connect without the system's certificate store: with
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` pointing at nothing, the AWS SDK builds its TLS connector
//! (on the first request) and the Graph client builds, from the compiled-in roots alone.
//!
//! One test in this binary, because it sets process-wide variables before anything reads them.
//! Were the system's store used, the SDK would find no root there (a debug assertion in
//! aws-smithy-http-client fails on an empty native store) and the Graph client would have to
//! load the platform verifier's roots. Nothing leaves 127.0.0.1: both requests go to a port that
//! refuses the connection, so no TLS handshake (and no verification) happens here.

use std::time::Duration;

use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_adapters::tls::NATIVE_ROOTS_VAR;

/// A 127.0.0.1 port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn https_clients_build_from_the_compiled_in_roots_alone() {
    // Before any client exists: nothing has read these yet in this process.
    std::env::set_var(
        "SSL_CERT_FILE",
        "/nonexistent/lc-tls-test/ca-certificates.crt",
    );
    std::env::set_var("SSL_CERT_DIR", "/nonexistent/lc-tls-test/certs");
    std::env::remove_var(NATIVE_ROOTS_VAR);
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTLSTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "tls-test-secret");
    std::env::set_var("AWS_REGION", "us-east-1");

    let sdk = lc_adapters::aws::load_config()
        .await
        .expect("SDK configuration");
    let endpoint = format!("https://127.0.0.1:{}", closed_port());
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(&endpoint)
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let ddb = aws_sdk_dynamodb::Client::from_conf(conf);
    // The first request builds the HTTPS connector, trust store included; then the connection
    // is refused.
    let err = ddb
        .list_tables()
        .send()
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(
            err,
            aws_sdk_dynamodb::error::SdkError::DispatchFailure(ref e) if e.is_io()
        ),
        "expected a refused connection, got {err:?}"
    );

    let graph = GraphClient::new(GraphConfig {
        base_url: endpoint,
        connect_timeout: Duration::from_secs(2),
        ..GraphConfig::default()
    });
    assert!(graph.is_ok(), "Graph client: {:?}", graph.err());
}
