//! Picks the roots AWS endpoints chain to (Amazon Trust Services: `AWS_ROOTS` below) out of
//! Mozilla's set in `webpki-root-certs`, by subject common name, and writes them as PEM to
//! `$OUT_DIR/aws_roots.pem`, which `src/tls/mod.rs` includes: the functions carry those five
//! certificates and do no selection at start. Bumping `webpki-root-certs` regenerates it.

use base64::Engine as _;

#[allow(dead_code)]
#[path = "src/tls/der.rs"]
mod der;

/// Keep in step with `lc_adapters::tls::AWS_ROOTS` (a unit test compares them).
const AWS_ROOTS: &[&str] = &[
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

fn main() {
    let mut pem = String::new();
    let mut found = Vec::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let Some(cn) = der::subject(cert).and_then(|s| der::attribute(s, der::OID_COMMON_NAME))
        else {
            continue;
        };
        if !AWS_ROOTS.contains(&cn) {
            continue;
        }
        found.push(cn);
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    for name in AWS_ROOTS {
        assert!(
            found.contains(name),
            "{name} is not in webpki-root-certs any more: see docs/tls.md"
        );
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("aws_roots.pem"), pem).expect("write aws_roots.pem");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tls/der.rs");
}
