//! Table-driven test of `split_body`: every webhook body in `tests/fixtures/webhooks/`
//! (`<name>.json`, or `<name>.bin` for bodies that are not UTF-8) is split and compared with
//! `<name>.expected.json`. Adding a fixture without an expectation fails the test.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use lc_core::webhook::normalize::QUARANTINE_PART_BYTES;
use lc_core::webhook::{split_body, Channel, EventKind, Identity, InboundEvent, SplitOutcome};
use serde::Deserialize;
use sha2::{Digest, Sha256};

const RECEIVED_AT_MS: i64 = 1_700_000_000_000;
const EXPECTED_SUFFIX: &str = ".expected.json";

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Events,
    Quarantined,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    outcome: Outcome,
    /// Quarantined bodies: a substring of the reason.
    #[serde(default)]
    reason_contains: Option<String>,
    events: Vec<ExpectedEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedEvent {
    channel: Channel,
    kind: EventKind,
    object: String,
    account_id: String,
    sender: Option<Identity>,
    timestamp_ms: i64,
    key: String,
    /// Substrings the raw item must contain (pins escapes that must survive verbatim).
    #[serde(default)]
    item_contains: Vec<String>,
    /// Quarantine parts only.
    #[serde(default)]
    part: Option<u32>,
    #[serde(default)]
    parts: Option<u32>,
    #[serde(default)]
    encoding: Option<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

/// `name -> (body file, expectation file)`; panics on orphans on either side.
fn load_table() -> BTreeMap<String, (PathBuf, PathBuf)> {
    let mut bodies = BTreeMap::new();
    let mut expectations = BTreeMap::new();
    for entry in fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let path = entry.expect("dir entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .expect("utf-8 name")
            .to_owned();
        if let Some(name) = file.strip_suffix(EXPECTED_SUFFIX) {
            expectations.insert(name.to_owned(), path);
        } else if let Some(name) = file
            .strip_suffix(".json")
            .or_else(|| file.strip_suffix(".bin"))
        {
            let previous = bodies.insert(name.to_owned(), path);
            assert!(previous.is_none(), "two bodies named {name}");
        } else {
            panic!("unexpected file in fixtures: {file}");
        }
    }
    let missing: Vec<_> = bodies
        .keys()
        .filter(|n| !expectations.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "fixtures without {EXPECTED_SUFFIX}: {missing:?}"
    );
    let orphans: Vec<_> = expectations
        .keys()
        .filter(|n| !bodies.contains_key(*n))
        .collect();
    assert!(
        orphans.is_empty(),
        "expectations without a fixture: {orphans:?}"
    );
    bodies
        .into_iter()
        .map(|(name, body)| {
            let expected = expectations.remove(&name).expect("checked above");
            (name, (body, expected))
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compares one fixture; returns the differences (empty when it matches).
fn check(name: &str, body: &[u8], expected: &Expected) -> Vec<String> {
    let mut errs = Vec::new();
    let mut err = |msg: String| errs.push(format!("{name}: {msg}"));

    let outcome = split_body(body, RECEIVED_AT_MS);
    let (got_outcome, reason, events) = match &outcome {
        SplitOutcome::Events(events) => (Outcome::Events, None, events),
        SplitOutcome::Quarantined { reason, events } => {
            (Outcome::Quarantined, Some(reason.as_str()), events)
        }
    };
    if got_outcome != expected.outcome {
        err(format!(
            "outcome {got_outcome:?} (reason {reason:?}), want {:?}",
            expected.outcome
        ));
        return errs;
    }
    if let (Some(want), Some(got)) = (&expected.reason_contains, reason) {
        if !got.contains(want.as_str()) {
            err(format!("reason {got:?} does not contain {want:?}"));
        }
    }
    if events.len() != expected.events.len() {
        err(format!(
            "{} events, want {}",
            events.len(),
            expected.events.len()
        ));
        return errs;
    }

    // Items must be the body's bytes verbatim.
    let text = std::str::from_utf8(body).ok();
    let mut joined = Vec::new();
    for (i, (got, want)) in events.iter().zip(&expected.events).enumerate() {
        let mut field = |what: &str, got: String, want: String| {
            if got != want {
                err(format!("event {i} {what}: got {got}, want {want}"));
            }
        };
        field(
            "v",
            got.v.to_string(),
            InboundEvent::SCHEMA_VERSION.to_string(),
        );
        field(
            "channel",
            format!("{:?}", got.channel),
            format!("{:?}", want.channel),
        );
        field(
            "kind",
            format!("{:?}", got.kind),
            format!("{:?}", want.kind),
        );
        field("object", got.object.clone(), want.object.clone());
        field(
            "account_id",
            got.account_id.clone(),
            want.account_id.clone(),
        );
        field(
            "sender",
            format!("{:?}", got.sender),
            format!("{:?}", want.sender),
        );
        field(
            "timestamp_ms",
            got.timestamp_ms.to_string(),
            want.timestamp_ms.to_string(),
        );
        field(
            "received_at_ms",
            got.received_at_ms.to_string(),
            RECEIVED_AT_MS.to_string(),
        );
        field("key", got.key.clone(), want.key.clone());

        let raw = got.item.get();
        match &got.quarantine {
            None => {
                if want.parts.is_some() || want.encoding.is_some() {
                    err(format!("event {i}: expected a quarantine part"));
                }
                // Order is checked by the expectation list (messaging, standby, changes).
                if !text.is_some_and(|t| t.contains(raw)) {
                    err(format!(
                        "event {i}: item is not a verbatim slice of the body: {raw}"
                    ));
                }
                for needle in &want.item_contains {
                    if !raw.contains(needle.as_str()) {
                        err(format!("event {i}: item does not contain {needle:?}"));
                    }
                }
            }
            Some(q) => {
                field("item", raw.to_owned(), "null".to_owned());
                let or_missing = |v: Option<String>| v.unwrap_or_else(|| "<missing>".to_owned());
                field(
                    "part",
                    q.part.to_string(),
                    or_missing(want.part.map(|p| p.to_string())),
                );
                field("part index", q.part.to_string(), i.to_string());
                field(
                    "parts",
                    q.parts.to_string(),
                    or_missing(want.parts.map(|p| p.to_string())),
                );
                field(
                    "encoding",
                    q.encoding.clone(),
                    or_missing(want.encoding.clone()),
                );
                field("body_sha256", q.body_sha256.clone(), sha256_hex(body));
                field(
                    "reason",
                    q.reason.clone(),
                    reason.unwrap_or_default().to_owned(),
                );
                if q.data.len() > QUARANTINE_PART_BYTES {
                    err(format!("event {i}: part data is {} bytes", q.data.len()));
                }
                match q.encoding.as_str() {
                    "utf8" => joined.extend_from_slice(q.data.as_bytes()),
                    "base64" => match BASE64.decode(&q.data) {
                        Ok(bytes) => joined.extend(bytes),
                        Err(e) => err(format!("event {i}: bad base64: {e}")),
                    },
                    other => err(format!("event {i}: unknown encoding {other}")),
                }
            }
        }

        match got.to_json().map(|j| InboundEvent::from_json(&j)) {
            Ok(Ok(back)) if &back == got => {}
            other => err(format!(
                "event {i}: does not round-trip through JSON: {other:?}"
            )),
        }
    }
    if got_outcome == Outcome::Quarantined && joined != body {
        err("quarantine parts do not reassemble into the body".to_owned());
    }
    errs
}

#[test]
fn every_fixture_matches_its_expectation() {
    let table = load_table();
    assert!(table.len() >= 45, "only {} fixtures", table.len());
    let mut failures = Vec::new();
    for (name, (body_path, expected_path)) in &table {
        let body = fs::read(body_path).expect("read fixture");
        let expected_text = fs::read_to_string(expected_path).expect("read expectation");
        let expected: Expected = match serde_json::from_str(&expected_text) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{name}: bad expectation file: {e}"));
                continue;
            }
        };
        failures.extend(check(name, &body, &expected));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A body cut off mid-way, larger than one part: quarantined in several UTF-8 parts.
#[test]
fn large_truncated_body_quarantines_into_parts() {
    let item = r#"{"sender":{"id":"5000000000000001"},"recipient":{"id":"106000000000001"},"timestamp":1700000000000,"message":{"mid":"m_big","text":"héllo 👋 世界"}}"#;
    let mut body =
        String::from(r#"{"object":"page","entry":[{"id":"106000000000001","messaging":["#);
    while body.len() < QUARANTINE_PART_BYTES * 2 + 1000 {
        body.push_str(item);
        body.push(',');
    }
    body.push_str(item); // no closing brackets: truncated

    let SplitOutcome::Quarantined { reason, events } = split_body(body.as_bytes(), RECEIVED_AT_MS)
    else {
        panic!("a truncated body must be quarantined");
    };
    assert!(reason.contains("EOF"), "{reason}");
    assert!(
        !reason.contains("héllo"),
        "reason leaks body content: {reason}"
    );
    assert_eq!(events.len(), 3);
    let sha = sha256_hex(body.as_bytes());
    let mut joined = String::new();
    for (i, e) in events.iter().enumerate() {
        let q = e.quarantine.as_ref().expect("quarantine part");
        assert_eq!((q.part, q.parts), (i as u32, 3));
        assert_eq!(q.encoding, "utf8");
        assert_eq!(q.body_sha256, sha);
        assert!(q.data.len() <= QUARANTINE_PART_BYTES);
        assert_eq!(e.key, format!("quarantined:{sha}:{i}"));
        assert_eq!(
            (e.channel, e.kind),
            (Channel::Quarantine, EventKind::Quarantined)
        );
        assert_eq!(e.timestamp_ms, RECEIVED_AT_MS);
        joined.push_str(&q.data);
    }
    assert_eq!(joined, body);
}

/// A large body that is not UTF-8: base64 parts, each decodable on its own.
#[test]
fn large_non_utf8_body_quarantines_into_base64_parts() {
    let body: Vec<u8> = (0..QUARANTINE_PART_BYTES * 3)
        .map(|i| (i % 256) as u8)
        .collect();
    let SplitOutcome::Quarantined { events, .. } = split_body(&body, RECEIVED_AT_MS) else {
        panic!("a non-UTF-8 body must be quarantined");
    };
    assert!(events.len() > 1);
    let mut joined = Vec::new();
    for e in &events {
        let q = e.quarantine.as_ref().expect("quarantine part");
        assert_eq!(q.encoding, "base64");
        assert!(q.data.len() <= QUARANTINE_PART_BYTES);
        joined.extend(BASE64.decode(&q.data).expect("valid base64"));
    }
    assert_eq!(joined, body);
}

/// A large but valid body is split into events, not quarantined, whatever its size.
#[test]
fn large_valid_body_is_not_quarantined() {
    let items: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                r#"{{"sender":{{"id":"5000000000000001"}},"recipient":{{"id":"106000000000001"}},"timestamp":{},"message":{{"mid":"m_{i}","text":"message number {i}"}}}}"#,
                1_700_000_000_000_i64 + i
            )
        })
        .collect();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"106000000000001","messaging":[{}]}}]}}"#,
        items.join(",")
    );
    assert!(body.len() > QUARANTINE_PART_BYTES);
    let SplitOutcome::Events(events) = split_body(body.as_bytes(), RECEIVED_AT_MS) else {
        panic!("a valid body must not be quarantined");
    };
    assert_eq!(events.len(), items.len());
    for (i, (e, item)) in events.iter().zip(&items).enumerate() {
        assert_eq!(e.key, format!("message:m_{i}"));
        assert_eq!(e.item.get(), item);
    }
}
