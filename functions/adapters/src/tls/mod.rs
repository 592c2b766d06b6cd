//! Who every outbound HTTPS connection trusts: the AWS SDK clients and the Graph client.
//!
//! Reading the system's certificate store cost a cold start about 4.5 ms per load here (a
//! bundle plus a directory of ~150 files), and the AWS SDK and reqwest each did it once. Instead
//! the roots are Mozilla's (its root program, as published by the CCADB), compiled in, and
//! nothing is read from the filesystem:
//!
//! - **Graph** ([`graph_tls_config`]): the whole Mozilla set as trust anchors (`webpki-roots`:
//!   subject and public key, already in the form rustls verifies with, so nothing is parsed at
//!   start), in one rustls [`ClientConfig`] built once per process and shared by every
//!   [`crate::graph::GraphClient`]. `graph.facebook.com` chains to DigiCert Global Root G2.
//! - **AWS SDK** ([`aws_http_client`]): the roots of the same set that AWS endpoints chain to,
//!   Amazon Trust Services ([`AWS_ROOTS`]: Amazon Root CA 1-4 and Starfield Services Root
//!   Certificate Authority - G2), picked out of `webpki-root-certs` (the same set as whole
//!   certificates) by the build script and compiled in as PEM ([`AWS_ROOTS_PEM`]), because the
//!   SDK only takes PEM. The SDK parses its trust store when it builds a connector (about 5 µs
//!   per certificate): five certificates, not 118.
//!
//! `LC_TLS_NATIVE_ROOTS=true` ([`NATIVE_ROOTS_VAR`], off by default) makes both use the
//! system's store instead, e.g. behind a corporate proxy that re-signs TLS with its own CA
//! (`SSL_CERT_FILE` then names the bundle to read). What is trusted and how it is updated:
//! `docs/tls.md`.

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls::{ClientConfig, RootCertStore};

use crate::env::ConfigError;

#[cfg(test)]
mod der;

/// `true` to trust the system's certificate store instead of the compiled-in roots.
pub const NATIVE_ROOTS_VAR: &str = "LC_TLS_NATIVE_ROOTS";

/// The common names, within the Mozilla set, of the roots AWS service endpoints chain to (Amazon
/// Trust Services; the Starfield root cross-signs the Amazon roots for older clients).
pub const AWS_ROOTS: &[&str] = &[
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

/// Where the roots come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustSource {
    /// Mozilla's set, compiled in (the default).
    Bundled,
    /// The system's store (`LC_TLS_NATIVE_ROOTS=true`), read by `rustls-native-certs`
    /// (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the distribution's bundle).
    Native,
}

impl TrustSource {
    /// [`NATIVE_ROOTS_VAR`], default off.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(if crate::env::flag(NATIVE_ROOTS_VAR, false)? {
            TrustSource::Native
        } else {
            TrustSource::Bundled
        })
    }
}

/// The compiled-in Mozilla set as a rustls root store of trust anchors (`webpki-roots`), built
/// once per process: a copy of 120-odd static references, no parsing.
pub fn bundled_root_store() -> Arc<RootCertStore> {
    static STORE: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
        Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    });
    STORE.clone()
}

/// The roots of [`AWS_ROOTS`] as PEM, picked out of `webpki-root-certs` by the build script
/// (`build.rs`): the binary carries these five certificates only, and nothing is selected or
/// encoded at start.
pub const AWS_ROOTS_PEM: &str = include_str!(concat!(env!("OUT_DIR"), "/aws_roots.pem"));

/// The rustls configuration of the Graph client: TLS 1.2 and 1.3 with aws-lc-rs (the provider
/// reqwest would pick), HTTP/1.1 by ALPN (reqwest is built without HTTP/2), roots from
/// [`bundled_root_store`]. Built once per process; every call returns a clone (cheap: the
/// verifier and provider are shared).
pub fn graph_tls_config() -> Result<ClientConfig, String> {
    static CONFIG: LazyLock<Result<ClientConfig, String>> = LazyLock::new(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(bundled_root_store())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    });
    CONFIG.clone()
}

/// The AWS SDK's HTTPS client (set on the `SdkConfig`, so every SDK client built from it shares
/// it and its connection pool). The same client as the SDK's default one (rustls with aws-lc,
/// the SDK's cipher suites, `HTTPS_PROXY`/`NO_PROXY` honoured), except for the trust store:
/// with [`TrustSource::Bundled`], only the Amazon Trust Services roots, from memory.
pub fn aws_http_client(source: TrustSource) -> Result<SharedHttpClient, String> {
    let store = match source {
        TrustSource::Bundled => TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AWS_ROOTS_PEM.as_bytes()),
        TrustSource::Native => TrustStore::default(),
    };
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .map_err(|e| e.to_string())?;
    // As aws-smithy-runtime builds its default client (`default_https_client`), which this
    // replaces: the plain `Builder::build_https` would ignore the proxy variables.
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            if settings.is_none() && components.is_none() {
                // The warm-up call: every `Client::new` builds a connector and drops it, so that
                // a native store is loaded at init rather than on the first request. Compiled-in
                // roots need no warming, and the real connector is built on the first request
                // (once per timeout setting, shared by every client of this `SdkConfig`).
                return ConnectorBuilder::default().build_http();
            }
            let mut builder = ConnectorBuilder::default()
                .tls_provider(Provider::rustls(CryptoMode::AwsLc))
                .tls_context(context.clone());
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder.set_proxy_config(Some(ProxyConfig::from_env()));
            builder.build()
        }),
    )
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use sha2::{Digest, Sha256};

    use super::der::{attribute, spki, subject, subject_text, OID_COMMON_NAME};
    use super::*;

    /// What AWS (Amazon Trust Services) and graph.facebook.com (DigiCert) chain to. A crate bump
    /// that drops one of these fails here, before anything is deployed.
    const AMAZON_ROOT_CA_1: &str = "C=US, O=Amazon, CN=Amazon Root CA 1";
    const DIGICERT_GLOBAL_ROOT_G2: &str =
        "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert Global Root G2";

    /// SHA-256 of each root's SubjectPublicKeyInfo, as Amazon Trust Services publishes them
    /// (https://www.amazontrust.com/repository/, which recommends exactly these five for custom
    /// trust stores).
    const AWS_ROOT_SPKI_SHA256: [(&str, &str); 5] = [
        (
            "Amazon Root CA 1",
            "fbe3018031f9586bcbf41727e417b7d1c45c2f47f93be372a17b96b50757d5a2",
        ),
        (
            "Amazon Root CA 2",
            "7f4296fc5b6a4e3b35d3c369623e364ab1af381d8fa7121533c9d6c633ea2461",
        ),
        (
            "Amazon Root CA 3",
            "36abc32656acfc645c61b71613c4bf21c787f5cabbee48348d58597803d7abc9",
        ),
        (
            "Amazon Root CA 4",
            "f7ecded5c66047d28ed6466b543c40e0743abe81d109254dcf845d4c2c7853c5",
        ),
        (
            "Starfield Services Root Certificate Authority - G2",
            "2b071c59a0a0ae76b0eadb2bad23bad4580b69c3601b630c2eaf0613afa83f92",
        ),
    ];

    /// The certificates handed to the SDK.
    fn aws_certs() -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(AWS_ROOTS_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .expect("valid PEM")
    }

    #[test]
    fn the_graph_store_holds_the_roots_aws_and_meta_chain_to() {
        let store = bundled_root_store();
        let subjects: Vec<String> = store
            .roots
            .iter()
            .map(|anchor| subject_text(anchor.subject.as_ref()))
            .collect();
        for needed in [AMAZON_ROOT_CA_1, DIGICERT_GLOBAL_ROOT_G2] {
            assert!(
                subjects.iter().any(|s| s == needed),
                "{needed} missing from the compiled-in roots"
            );
        }
        assert!(store.roots.len() > 100, "the whole Mozilla set");
        // The Graph client's configuration is built on this store.
        let config = graph_tls_config().expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn the_aws_store_is_exactly_the_amazon_trust_services_roots() {
        let mut names: Vec<String> = aws_certs()
            .iter()
            .map(|c| subject_text(subject(c).expect("subject")))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                AMAZON_ROOT_CA_1,
                "C=US, O=Amazon, CN=Amazon Root CA 2",
                "C=US, O=Amazon, CN=Amazon Root CA 3",
                "C=US, O=Amazon, CN=Amazon Root CA 4",
                "C=US, O=Starfield Technologies, Inc., CN=Starfield Services Root Certificate Authority - G2",
            ]
        );
        // The build script's list is this module's.
        let mut cns: Vec<&str> = AWS_ROOTS.to_vec();
        cns.sort();
        let build_rs = include_str!("../../build.rs");
        for cn in cns {
            assert!(
                build_rs.contains(&format!("\"{cn}\",")),
                "{cn} not in build.rs"
            );
        }
    }

    #[test]
    fn the_aws_roots_have_the_keys_amazon_publishes() {
        let certs = aws_certs();
        assert_eq!(certs.len(), AWS_ROOT_SPKI_SHA256.len());
        for cert in &certs {
            let cn = attribute(subject(cert).expect("subject"), OID_COMMON_NAME).expect("CN");
            let (_, expected) = AWS_ROOT_SPKI_SHA256
                .iter()
                .find(|(name, _)| *name == cn)
                .unwrap_or_else(|| panic!("{cn} has no published key hash"));
            let key = spki(cert).expect("spki");
            assert_eq!(hex::encode(Sha256::digest(key)), *expected, "{cn}");
        }
    }

    #[test]
    fn both_crates_agree_on_the_aws_roots_and_the_der_reader_agrees_with_webpki() {
        let anchors = bundled_root_store();
        let mut parsed = RootCertStore::empty();
        for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            parsed
                .add(cert.clone())
                .expect("every compiled-in certificate parses");
            let anchor = parsed.roots.last().expect("just added");
            assert_eq!(subject(cert), Some(anchor.subject.as_ref()));
        }
        for cert in aws_certs() {
            let mut one = RootCertStore::empty();
            one.add(cert).expect("parses");
            let anchor = &one.roots[0];
            assert!(
                anchors.roots.iter().any(|a| a.subject == anchor.subject
                    && a.subject_public_key_info == anchor.subject_public_key_info),
                "{} is in webpki-root-certs but not in webpki-roots",
                subject_text(anchor.subject.as_ref())
            );
        }
    }
}
