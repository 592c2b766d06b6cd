//! A few DER reads, enough to pick root certificates by subject: shared by the build script
//! (which selects the AWS roots) and the tests. No signature is checked: these read the
//! compiled-in roots, never something received.

/// id-at-commonName (2.5.4.3), DER-encoded.
pub const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName (2.5.4.10).
pub const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
/// id-at-countryName (2.5.4.6).
pub const OID_COUNTRY: &[u8] = &[0x55, 0x04, 0x06];
/// id-at-organizationalUnitName (2.5.4.11).
pub const OID_ORG_UNIT: &[u8] = &[0x55, 0x04, 0x0b];

/// One DER element: (tag, contents, what follows).
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

/// The TBSCertificate fields from the serial number on (the optional `[0]` version skipped).
fn tbs_fields(cert: &[u8]) -> Option<&[u8]> {
    let (_, cert, _) = tlv(cert)?; // Certificate
    let (_, tbs, _) = tlv(cert)?; // TBSCertificate
    let (tag, _, after_version) = tlv(tbs)?;
    Some(if tag == 0xa0 { after_version } else { tbs })
}

/// The `n`th whole element (tag and length included) of a DER sequence's contents.
fn nth_element(mut rest: &[u8], n: usize) -> Option<&[u8]> {
    for _ in 0..n {
        rest = tlv(rest)?.2;
    }
    let after = tlv(rest)?.2;
    Some(&rest[..rest.len() - after.len()])
}

/// The contents of a certificate's subject `Name` (a sequence of RDN sets): what webpki keeps as
/// a trust anchor's subject.
pub fn subject(cert: &[u8]) -> Option<&[u8]> {
    // serialNumber, signature, issuer, validity, then subject.
    let (tag, name, _) = tlv(nth_element(tbs_fields(cert)?, 4)?)?;
    (tag == 0x30).then_some(name)
}

/// A certificate's whole SubjectPublicKeyInfo element (what key pins hash).
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    nth_element(tbs_fields(cert)?, 5)
}

/// The first value of attribute `oid` in a `Name`'s contents, if it is a string.
pub fn attribute<'a>(name: &'a [u8], oid: &[u8]) -> Option<&'a str> {
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
