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
//!   Certificate Authority - G2), taken as whole certificates from `webpki-root-certs` because
//!   the SDK only takes PEM. The SDK parses its trust store each time it builds a connector
//!   (about 5 µs per certificate): five certificates, not 118.
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
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::env::ConfigError;

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

/// Every root certificate of the compiled-in Mozilla set, whole (`webpki-root-certs`).
pub fn bundled_certs() -> &'static [CertificateDer<'static>] {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
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

/// The compiled-in roots whose subject common name is in [`AWS_ROOTS`].
pub fn aws_certs() -> Vec<&'static CertificateDer<'static>> {
    bundled_certs()
        .iter()
        .filter(|c| {
            subject(c)
                .and_then(|s| attribute(s, OID_COMMON_NAME))
                .is_some_and(|cn| AWS_ROOTS.contains(&cn))
        })
        .collect()
}

/// [`aws_certs`] as one PEM text (what the SDK's [`TrustStore`] takes), built once per process.
fn aws_pem() -> &'static [u8] {
    static PEM: LazyLock<Vec<u8>> = LazyLock::new(|| pem(aws_certs()));
    &PEM
}

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
            .with_pem_certificate(aws_pem()),
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

fn pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    for cert in certs {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

// A few DER reads, enough to pick roots by subject (no signature is checked: these are the
// compiled-in roots, not something received).

/// id-at-commonName (2.5.4.3), DER-encoded.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName (2.5.4.10).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
/// id-at-countryName (2.5.4.6).
const OID_COUNTRY: &[u8] = &[0x55, 0x04, 0x06];
/// id-at-organizationalUnitName (2.5.4.11).
const OID_ORG_UNIT: &[u8] = &[0x55, 0x04, 0x0b];

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81..=0x83 => {
            let n = usize::from(first - 0x80);
            let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            (
                bytes.iter().fold(0usize, |a, &b| a << 8 | usize::from(b)),
                rest,
            )
        }
        _ => return None,
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The contents of a certificate's subject `Name` (a sequence of RDN sets).
pub(crate) fn subject(cert: &[u8]) -> Option<&[u8]> {
    let (_, cert, _) = tlv(cert)?; // Certificate
    let (_, tbs, _) = tlv(cert)?; // TBSCertificate
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // [0] version
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, name, _) = tlv(rest)?;
    (tag == 0x30).then_some(name)
}

/// The first value of attribute `oid` in a `Name`'s contents, if it is a string.
pub(crate) fn attribute<'a>(name: &'a [u8], oid: &[u8]) -> Option<&'a str> {
    let mut rdns = name;
    while let Some((_, set, rest)) = tlv(rdns) {
        rdns = rest;
        let mut atvs = set;
        while let Some((_, atv, rest)) = tlv(atvs) {
            atvs = rest;
            let (_, this_oid, value) = tlv(atv)?;
            if this_oid == oid {
                return std::str::from_utf8(tlv(value)?.1).ok();
            }
        }
    }
    None
}

/// `C=US, O=Amazon, CN=Amazon Root CA 1`: a subject's usual attributes, for tests and messages.
pub fn subject_text(name: &[u8]) -> String {
    [
        ("C", OID_COUNTRY),
        ("O", OID_ORGANIZATION),
        ("OU", OID_ORG_UNIT),
        ("CN", OID_COMMON_NAME),
    ]
    .iter()
    .filter_map(|(k, oid)| attribute(name, oid).map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What AWS (Amazon Trust Services) and graph.facebook.com (DigiCert) chain to. A crate bump
    /// that drops one of these fails here, before anything is deployed.
    const AMAZON_ROOT_CA_1: &str = "C=US, O=Amazon, CN=Amazon Root CA 1";
    const DIGICERT_GLOBAL_ROOT_G2: &str =
        "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert Global Root G2";

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
        let certs = aws_certs();
        let mut names: Vec<String> = certs
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
        // The PEM handed to the SDK decodes back to the same certificates.
        use rustls::pki_types::pem::PemObject;
        let decoded: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(aws_pem())
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(decoded.len(), certs.len());
        assert!(decoded.iter().zip(&certs).all(|(a, b)| a == *b));
    }

    #[test]
    fn both_crates_agree_on_the_aws_roots_and_the_der_reader_agrees_with_webpki() {
        let anchors = bundled_root_store();
        let mut parsed = RootCertStore::empty();
        for cert in bundled_certs() {
            parsed
                .add(cert.clone())
                .expect("every compiled-in certificate parses");
            let anchor = parsed.roots.last().expect("just added");
            assert_eq!(subject(cert), Some(anchor.subject.as_ref()));
        }
        for cert in aws_certs() {
            let mut one = RootCertStore::empty();
            one.add(cert.clone()).expect("parses");
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
