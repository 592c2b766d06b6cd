//! Send API error taxonomy: one case per table row (written out independently of the table, from
//! meta-platform.md §5), precedence cases, fallbacks and tolerant parsing of real-shaped bodies.

use std::collections::HashSet;

use lc_core::sending::errors::{
    classify, classify_request, classify_transport, table, Classification, ErrorClass, GraphError,
    RequestContext, RequestMatch, SubcodeMatch, TransportFailure, RETIRED_TAGS,
};
use ErrorClass::{
    BadRequest, OperatorAction, RecipientUnreachable, Retry, Undeliverable, UnknownRecipient,
    WindowClosed,
};

/// A subcode no row lists, for exercising code-only rows.
const UNLISTED_SUBCODE: i64 = 9_999_991;

fn err(http_status: u16, code: Option<i64>, subcode: Option<i64>) -> GraphError {
    GraphError {
        http_status,
        code,
        subcode,
        message: "test".into(),
        ..GraphError::default()
    }
}

fn class_of(code: i64, subcode: Option<i64>) -> Classification {
    classify(&err(400, Some(code), subcode))
}

fn with_message(code: i64, subcode: Option<i64>, message: &str) -> GraphError {
    GraphError {
        message: message.into(),
        ..err(400, Some(code), subcode)
    }
}

fn tagged(tag: &str) -> RequestContext<'_> {
    RequestContext { tag: Some(tag) }
}

struct Case {
    code: i64,
    subcode: Option<i64>,
    /// Meta's `message` text (as Meta words it, not as the table stores it).
    message: &'static str,
    /// The `tag` the failed request carried.
    tag: Option<&'static str>,
    class: ErrorClass,
    rule: &'static str,
    max_attempts: Option<u32>,
    wait_hint_secs: Option<u64>,
}

const fn case(code: i64, subcode: Option<i64>, class: ErrorClass, rule: &'static str) -> Case {
    Case {
        code,
        subcode,
        message: "test",
        tag: None,
        class,
        rule,
        max_attempts: None,
        wait_hint_secs: None,
    }
}

const fn text(message: &'static str, class: ErrorClass, rule: &'static str) -> Case {
    Case {
        message,
        ..case(100, None, class, rule)
    }
}

const U: Option<i64> = Some(UNLISTED_SUBCODE);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Transient.
    case(1200, None, Retry, "temporary_send_failure"),
    Case { max_attempts: Some(3), ..case(2, None, Retry, "unexpected_error") },
    case(4, None, Retry, "app_rate_limit"),
    case(4, Some(2018022), Retry, "phone_send_rate_limit"),
    case(613, None, Retry, "api_rate_limit"),
    case(17, None, Retry, "user_rate_limit"),
    case(32, None, Retry, "page_rate_limit"),
    case(80001, None, Retry, "buc_pages_throttled"),
    case(80006, None, Retry, "buc_messenger_throttled"),
    // Marketing.
    Case { max_attempts: Some(2), wait_hint_secs: Some(86_400), ..case(4, Some(2018354), Retry, "marketing_min_delay") },
    Case { max_attempts: Some(3), ..case(9, Some(2018352), Retry, "marketing_user_too_many_actions") },
    // Unreachable: the person does not want messages. Only these two.
    case(551, None, RecipientUnreachable, "person_unavailable"),
    case(551, Some(1545041), RecipientUnreachable, "person_unavailable"),
    case(200, Some(1545041), RecipientUnreachable, "not_receiving_from_you"),
    // Window closed.
    case(10, Some(2018278), WindowClosed, "outside_window"),
    case(10, Some(2534022), WindowClosed, "outside_window_2534022"),
    case(10, Some(2018065), WindowClosed, "outside_window_legacy"),
    // Unknown recipient.
    case(100, Some(2018001), UnknownRecipient, "no_matching_user"),
    // Undeliverable to this recipient.
    case(10, Some(2018108), Undeliverable, "cannot_receive_messages"),
    case(230, None, Undeliverable, "user_disallowed"),
    case(10903, None, Undeliverable, "cannot_reply_to_activity"),
    case(10900, None, Undeliverable, "already_replied"),
    // Operator.
    case(190, None, OperatorAction, "invalid_token"),
    case(190, Some(458), OperatorAction, "token_app_not_authorized"),
    case(190, Some(460), OperatorAction, "token_session_invalidated"),
    case(190, Some(463), OperatorAction, "token_expired"),
    case(200, None, OperatorAction, "permission_error"),
    case(200, Some(2018028), OperatorAction, "app_roles_only"),
    case(200, Some(2018027), OperatorAction, "phone_permission_roles_only"),
    case(200, Some(2018021), OperatorAction, "phone_matching_fee"),
    case(10, None, OperatorAction, "permission_denied"),
    case(1, Some(99), OperatorAction, "unknown_error_access"),
    case(368, None, OperatorAction, "abusive_action_blocked"),
    case(10904, None, OperatorAction, "page_messaging_disabled"),
    case(2022, None, OperatorAction, "commerce_disabled"),
    case(2, Some(2018344), OperatorAction, "privacy_tos_not_accepted"),
    case(10, Some(1893063), OperatorAction, "page_restricted"),
    text("(#100) Param recipient[id] must be a valid ID string (e.g., \"123\")", OperatorAction, "missing_pages_messaging"),
    text("API calls from the server require an appsecret_proof argument", OperatorAction, "appsecret_proof_required"),
    text("Invalid appsecret_proof provided in the API argument", OperatorAction, "appsecret_proof_invalid"),
    Case { tag: Some("POST_PURCHASE_UPDATE"), ..text("(#100) Invalid parameter", OperatorAction, "retired_message_tag") },
    Case { tag: Some("ACCOUNT_UPDATE"), ..text("Invalid parameter", OperatorAction, "retired_message_tag") },
    Case { tag: Some("confirmed_event_update"), ..text("INVALID PARAMETER", OperatorAction, "retired_message_tag") },
    // Bad request.
    case(100, None, BadRequest, "invalid_parameter"),
    // "Invalid parameter" without a retired tag is still our request's fault.
    text("(#100) Invalid parameter", BadRequest, "invalid_parameter"),
    Case { tag: Some("HUMAN_AGENT"), ..text("(#100) Invalid parameter", BadRequest, "invalid_parameter") },
    case(100, Some(2018109), BadRequest, "attachment_too_large"),
    case(100, Some(2018047), BadRequest, "attachment_upload_failed"),
    case(100, Some(2018034), BadRequest, "empty_message"),
    case(100, Some(2018032), BadRequest, "invalid_data"),
    case(194, None, BadRequest, "too_few_elements"),
    case(105, None, BadRequest, "too_many_elements"),
    case(1, Some(1357046), BadRequest, "invalid_json_reply"),
    // Code-only rows also cover unlisted subcodes.
    case(551, U, RecipientUnreachable, "person_unavailable"),
    case(230, U, Undeliverable, "user_disallowed"),
    case(190, U, OperatorAction, "invalid_token"),
    case(200, U, OperatorAction, "permission_error"),
    case(100, U, BadRequest, "invalid_parameter"),
    Case { max_attempts: Some(3), ..case(2, U, Retry, "unexpected_error") },
    case(4, U, Retry, "app_rate_limit"),
];

#[test]
fn every_case_classifies_as_specified() {
    for c in CASES {
        // The HTTP status does not change the class of a listed code; a retry bound (code 2
        // also means "blocked") applies to 4xx answers only: a 5xx is a server fault.
        for status in [400, 403, 500] {
            let e = GraphError {
                message: c.message.into(),
                ..err(status, Some(c.code), c.subcode)
            };
            let got = classify_request(&e, &RequestContext { tag: c.tag });
            let want = Classification {
                class: c.class,
                rule: c.rule,
                max_attempts: if status >= 500 && c.class == Retry {
                    None
                } else {
                    c.max_attempts
                },
                wait_hint_secs: c.wait_hint_secs,
            };
            assert_eq!(
                got, want,
                "{}/{:?} {:?} tag {:?} HTTP {status}",
                c.code, c.subcode, c.message, c.tag
            );
        }
    }
}

#[test]
fn every_table_row_has_a_case_and_vice_versa() {
    let case_rules: HashSet<&str> = CASES.iter().map(|c| c.rule).collect();
    let table_rules: HashSet<&str> = table().iter().map(|r| r.rule).collect();
    assert_eq!(case_rules, table_rules);
    for row in table() {
        let subcode = match row.subcode {
            SubcodeMatch::Exact(s) => Some(s),
            SubcodeMatch::Absent => None,
            SubcodeMatch::Any => U,
        };
        let e = with_message(
            row.code,
            subcode,
            &format!("(#{}) {}", row.code, row.message.unwrap_or("test")),
        );
        let tag = match row.request {
            RequestMatch::Any => None,
            RequestMatch::RetiredTag => Some(RETIRED_TAGS[0]),
        };
        assert_eq!(
            classify_request(&e, &RequestContext { tag }).rule,
            row.rule,
            "{row:?}"
        );
        assert!(!row.meaning.is_empty());
    }
}

#[test]
fn table_is_well_formed() {
    let mut keys = HashSet::new();
    let mut rules = HashSet::new();
    for row in table() {
        assert!(
            keys.insert((row.code, row.subcode, row.message, row.request)),
            "duplicate {row:?}"
        );
        if let Some(m) = row.message {
            // Matching lowercases Meta's text, so a pattern with capitals would never match.
            assert!(!m.is_empty() && m == m.to_ascii_lowercase(), "{row:?}");
        }
        assert!(rules.insert(row.rule), "duplicate rule {}", row.rule);
        assert!(
            row.rule
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "rule name {:?}",
            row.rule
        );
        if row.max_attempts.is_some() || row.wait_hint_secs.is_some() {
            assert_eq!(row.class, Retry, "{row:?}");
        }
    }
}

#[test]
fn precedence() {
    // Subcode-specific rows beat code-only rows.
    assert_eq!(class_of(2, Some(2018344)).class, OperatorAction);
    assert_eq!(class_of(2, None).class, Retry);
    assert_eq!(class_of(200, Some(1545041)).class, RecipientUnreachable);
    assert_eq!(class_of(200, Some(2018028)).class, OperatorAction);
    assert_eq!(class_of(100, Some(2018001)).class, UnknownRecipient);
    // A specific subcode beats a text match; a text match beats the code-only row.
    let e = with_message(
        100,
        Some(2018001),
        "(#100) Param recipient[id] must be a valid ID string",
    );
    assert_eq!(classify(&e).rule, "no_matching_user");
    let e = with_message(
        100,
        None,
        "(#100) Param recipient[id] must be a valid ID string",
    );
    assert_eq!(classify(&e).rule, "missing_pages_messaging");
    // The retired-tag row needs both the text and the tag.
    let e = with_message(100, None, "Invalid parameter");
    assert_eq!(classify(&e).rule, "invalid_parameter");
    assert_eq!(
        classify_request(&e, &tagged("POST_PURCHASE_UPDATE")).rule,
        "retired_message_tag"
    );
    assert_eq!(
        classify_request(&e, &tagged("HUMAN_AGENT")).rule,
        "invalid_parameter"
    );
    let e = with_message(100, None, "(#100) The parameter recipient is required");
    assert_eq!(
        classify_request(&e, &tagged("POST_PURCHASE_UPDATE")).rule,
        "invalid_parameter"
    );
    // A text row of code 100 never applies to another code.
    let e = with_message(
        190,
        None,
        "Invalid appsecret_proof provided in the API argument",
    );
    assert_eq!(classify(&e).rule, "invalid_token");
    assert_eq!(class_of(4, Some(2018354)).rule, "marketing_min_delay");
    // 551 with no subcode.
    assert_eq!(class_of(551, None).class, RecipientUnreachable);
    // A listed code wins over is_transient (either way).
    let mut e = err(400, Some(190), Some(463));
    e.is_transient = Some(true);
    assert_eq!(classify(&e).class, OperatorAction);
    let mut e = err(400, Some(4), None);
    e.is_transient = Some(false);
    assert_eq!(classify(&e).class, Retry);
}

#[test]
fn code_10_with_unlisted_subcode_is_not_operator_action() {
    // Only "10 without subcode" pauses sending; an unknown 10/x falls back (see module doc).
    let c = class_of(10, U);
    assert_eq!((c.class, c.rule), (BadRequest, "unknown"));
    let mut e = err(400, Some(10), U);
    e.is_transient = Some(true);
    assert_eq!(classify(&e).rule, "transient_flag");
}

#[test]
fn fallbacks() {
    let mut e = err(400, Some(123_456), None);
    assert_eq!(
        classify(&e),
        Classification {
            class: BadRequest,
            rule: "unknown",
            max_attempts: None,
            wait_hint_secs: None
        }
    );
    e.is_transient = Some(true);
    assert_eq!(
        (classify(&e).class, classify(&e).rule),
        (Retry, "transient_flag")
    );
    e.is_transient = Some(false);
    assert_eq!(classify(&e).rule, "unknown");

    assert_eq!(classify(&err(503, None, None)).rule, "http_5xx");
    assert_eq!(classify(&err(503, None, None)).class, Retry);
    let c = classify(&err(500, Some(123_456), None));
    assert_eq!(
        (c.class, c.rule, c.max_attempts),
        (Retry, "unknown_5xx", None)
    );
    assert_eq!(classify(&err(429, None, None)).class, Retry);
    assert_eq!(classify(&err(404, None, None)).rule, "unknown");
    assert_eq!(classify(&err(400, None, Some(2018001))).rule, "unknown");
    // Code 1 without subcode 99/1357046 is not listed.
    assert_eq!(class_of(1, None).rule, "unknown");
}

#[test]
fn transport_failures_retry_until_the_deadline() {
    for (kind, rule) in [
        (TransportFailure::Timeout, "transport_timeout"),
        (TransportFailure::Connect, "transport_connect"),
        (TransportFailure::Other, "transport_other"),
    ] {
        // No attempt bound: the sender turns an exhausted bound into a closed opt-in, and a
        // flaky network must not close one before its deadline.
        assert_eq!(
            classify_transport(kind),
            Classification {
                class: Retry,
                rule,
                max_attempts: None,
                wait_hint_secs: None
            }
        );
    }
}

#[test]
fn only_551_and_200_1545041_mark_a_person_unreachable() {
    let unreachable: HashSet<(i64, SubcodeMatch)> = table()
        .iter()
        .filter(|r| r.class == RecipientUnreachable)
        .map(|r| (r.code, r.subcode))
        .collect();
    assert_eq!(
        unreachable,
        HashSet::from([
            (551, SubcodeMatch::Any),
            (200, SubcodeMatch::Exact(1545041))
        ])
    );
    // No fallback reaches it either, whatever the status or transient flag.
    for status in [400, 403, 404, 429, 500, 503] {
        for transient in [None, Some(true), Some(false)] {
            for code in [None, Some(10), Some(100), Some(123_456)] {
                for subcode in [None, Some(2018278), U] {
                    let mut e = err(status, code, subcode);
                    e.is_transient = transient;
                    assert_ne!(classify(&e).class, RecipientUnreachable, "{e:?}");
                }
            }
        }
    }
}

#[test]
fn error_class_names_are_unique_and_all_listed() {
    let names: HashSet<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), ErrorClass::ALL.len());
    for row in table() {
        assert!(ErrorClass::ALL.contains(&row.class), "{row:?}");
    }
}

#[test]
fn http_500_with_html_body() {
    let body = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>Sorry, something went wrong.</body></html>";
    let e = GraphError::from_response(500, body);
    assert_eq!(e.http_status, 500);
    assert_eq!((e.code, e.subcode), (None, None));
    assert!(e.message.starts_with("<!DOCTYPE html>"));
    let c = classify(&e);
    assert_eq!((c.class, c.rule), (Retry, "http_5xx"));
}

#[test]
fn non_graph_bodies_never_fail() {
    let long = "x".repeat(5000);
    let bodies: [&[u8]; 9] = [
        b"",
        b"   ",
        b"null",
        b"[]",
        b"{}",
        b"{\"error\":null}",
        b"{\"error\":[1,2]}",
        &[0xff, 0xfe, 0x00, 0xc3],
        long.as_bytes(),
    ];
    for body in bodies {
        let e = GraphError::from_response(502, body);
        assert_eq!(e.code, None);
        assert!(!e.message.is_empty());
        assert!(e.message.len() <= 300);
        assert_eq!(classify(&e).class, Retry);
    }
    assert_eq!(GraphError::from_response(400, b"").message, "HTTP 400");
    // Multi-byte text cut at a char boundary.
    let e = GraphError::from_response(400, "é".repeat(400).as_bytes());
    assert!(e.message.len() <= 300 && e.message.chars().all(|c| c == 'é'));
    // OAuth-style string error.
    let e = GraphError::from_response(400, br#"{"error":"invalid_request"}"#);
    assert_eq!(e.message, "invalid_request");
    // Error object without message or code.
    let e = GraphError::from_response(400, br#"{"error":{"type":"OAuthException"}}"#);
    assert_eq!(e.message, "HTTP 400");
    assert_eq!(e.error_type.as_deref(), Some("OAuthException"));
    assert_eq!(classify(&e).rule, "unknown");
}

#[test]
fn real_shaped_body_with_trace_and_transient() {
    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/rate_limit_4_transient.json"),
    );
    assert_eq!(
        e,
        GraphError {
            http_status: 400,
            code: Some(4),
            subcode: None,
            error_type: Some("OAuthException".into()),
            message: "(#4) Application request limit reached".into(),
            is_transient: Some(true),
            fbtrace_id: Some("AvS3x2Xc9_Lq-0a".into()),
            user_title: None,
            user_msg: None,
        }
    );
    assert_eq!(classify(&e).rule, "app_rate_limit");
}

#[test]
fn expired_token_fixture() {
    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/oauth_190_463_expired.json"),
    );
    assert_eq!((e.code, e.subcode), (Some(190), Some(463)));
    assert_eq!(e.fbtrace_id.as_deref(), Some("BLBz/WZt8dN"));
    assert!(e.message.starts_with("Error validating access token"));
    assert_eq!(classify(&e).rule, "token_expired");
    let shown = e.to_string();
    assert!(
        shown.contains("190/463") && shown.contains("BLBz/WZt8dN"),
        "{shown}"
    );
}

#[test]
fn unreachable_fixtures() {
    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/unavailable_551_1545041.json"),
    );
    assert_eq!((e.code, e.subcode), (Some(551), Some(1545041)));
    assert_eq!(classify(&e).rule, "person_unavailable");

    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/outside_window_10_2018278.json"),
    );
    assert_eq!(classify(&e).class, WindowClosed);

    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/no_matching_user_user_msg.json"),
    );
    assert_eq!(e.is_transient, Some(false));
    assert_eq!(e.user_title.as_deref(), Some("Message Not Sent"));
    assert_eq!(
        e.user_msg.as_deref(),
        Some("This person isn't receiving messages from you right now.")
    );
    assert_eq!(classify(&e).rule, "no_matching_user");
    assert_eq!(classify(&e).class, UnknownRecipient);
}

/// Real-shaped bodies for the cases issue 11 added: (file, HTTP status, tag sent, class, rule).
/// Texts follow bodies quoted in public reports; the 1893063 wording is a paraphrase of Meta's
/// changelog, so it is matched by code and subcode only.
#[rustfmt::skip]
const FIXTURES: &[(&str, u16, Option<&str>, ErrorClass, &str)] = &[
    ("outside_window_instagram_10_2534022.json", 403, None, WindowClosed, "outside_window_2534022"),
    ("page_restricted_10_1893063.json", 400, None, OperatorAction, "page_restricted"),
    ("recipient_id_missing_pages_messaging.json", 400, None, OperatorAction, "missing_pages_messaging"),
    ("appsecret_proof_required.json", 400, None, OperatorAction, "appsecret_proof_required"),
    ("appsecret_proof_invalid.json", 400, None, OperatorAction, "appsecret_proof_invalid"),
    ("retired_tag_invalid_parameter.json", 400, Some("ACCOUNT_UPDATE"), OperatorAction, "retired_message_tag"),
    ("retired_tag_invalid_parameter.json", 400, None, BadRequest, "invalid_parameter"),
    ("unavailable_551_1545041.json", 400, None, RecipientUnreachable, "person_unavailable"),
    ("no_matching_user_user_msg.json", 400, None, UnknownRecipient, "no_matching_user"),
];

#[test]
fn real_shaped_bodies_classify_as_specified() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph_errors");
    for (file, status, tag, class, rule) in FIXTURES {
        let body = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let e = GraphError::from_response(*status, &body);
        assert!(e.code.is_some() && e.fbtrace_id.is_some(), "{file}: {e:?}");
        let c = classify_request(&e, &RequestContext { tag: *tag });
        assert_eq!((c.class, c.rule), (*class, *rule), "{file} tag {tag:?}");
    }
}

#[test]
fn code_as_string() {
    let e = GraphError::from_response(
        400,
        include_bytes!("fixtures/graph_errors/code_as_string.json"),
    );
    assert_eq!((e.code, e.subcode), (Some(613), Some(1996)));
    assert_eq!(e.is_transient, Some(true));
    assert_eq!(classify(&e).rule, "api_rate_limit");
    // Other odd shapes: float code, non-numeric string, boolean.
    let e = GraphError::from_response(400, br#"{"error":{"code":190.0,"error_subcode":"abc"}}"#);
    assert_eq!((e.code, e.subcode), (Some(190), None));
    let e = GraphError::from_response(400, br#"{"error":{"code":true,"message":5}}"#);
    assert_eq!((e.code, e.message.as_str()), (None, "5"));
}
