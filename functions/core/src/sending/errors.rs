//! Send API (Graph) error model and taxonomy.
//!
//! [`GraphError::from_response`] turns any failed HTTP answer into a [`GraphError`], however
//! malformed the body. [`classify`] maps it to what the sender should do ([`ErrorClass`]) using one
//! static data table, [`table`], built from the platform facts (meta-platform.md §5).
//!
//! # Lookup order
//! 1. Among the table rows whose code matches and whose conditions all hold, the most specific
//!    one wins: a specific subcode ([`SubcodeMatch::Exact`] equal to the error's subcode, or
//!    [`SubcodeMatch::Absent`] when the error has none) beats [`SubcodeMatch::Any`]; then a row
//!    with more conditions (a `message` text, a [`RequestMatch`] on the failed request) beats one
//!    with fewer. Conditions exist because some of Meta's answers differ only in their text (the
//!    appsecret_proof errors, `Param recipient[id]`) or in what we sent (a retired tag).
//! 2. Fallbacks for codes the table does not know (or a known code with a subcode the table does
//!    not cover, e.g. code 10 with an unlisted subcode):
//!    - `is_transient: true` in the body → `Retry`, rule `transient_flag`;
//!    - HTTP 5xx without a code → `Retry`, rule `http_5xx`; with an unknown code → `Retry`,
//!      rule `unknown_5xx`;
//!    - HTTP 429 → `Retry`, rule `http_429`;
//!    - anything else (typically 4xx) → `BadRequest`, rule `unknown`.
//!
//! Only the rows for 551 and 200/1545041 say [`ErrorClass::RecipientUnreachable`]: it is the one
//! class that marks a person as not wanting messages, so nothing weaker may reach it.
//!
//! A listed code always wins over `is_transient`.
//!
//! # Fields of a [`Classification`]
//! - `rule`: short, stable, unique name of the row or fallback, for logs and metrics.
//! - `max_attempts`: total attempts *including the first*, when the retry must be bounded more
//!   tightly than the sender's default policy (code 2 also means "the user blocked you").
//!   `None` = the sender's own bound applies (every retry must be bounded somewhere).
//! - `wait_hint_secs`: minimum wait before the next attempt, when the error itself implies one.
//!   BUC throttling (80001/80006) waits come from the `X-Business-Use-Case-Usage` header instead:
//!   see [`crate::sending::usage`].

use std::fmt;

use serde_json::Value;

/// A failed Graph API call, parsed tolerantly from Meta's `{"error":{...}}` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphError {
    /// HTTP status of the response.
    pub http_status: u16,
    /// `error.code` (accepted as a JSON number or a numeric string).
    pub code: Option<i64>,
    /// `error.error_subcode` (number or numeric string).
    pub subcode: Option<i64>,
    /// `error.type`, e.g. `OAuthException`.
    pub error_type: Option<String>,
    /// `error.message`; for a body that is not a Graph error, a short excerpt of the body (or
    /// `"HTTP <status>"` when empty).
    pub message: String,
    /// `error.is_transient`.
    pub is_transient: Option<bool>,
    /// `error.fbtrace_id`: quote it in bug reports to Meta.
    pub fbtrace_id: Option<String>,
    /// `error.error_user_title`.
    pub user_title: Option<String>,
    /// `error.error_user_msg`.
    pub user_msg: Option<String>,
}

/// Longest body excerpt (in bytes, cut at a char boundary) kept as `message` for non-Graph bodies.
const MAX_EXCERPT_BYTES: usize = 300;

impl GraphError {
    /// Parses a Graph error response. Never fails: a non-JSON body (an HTML 502 page, an empty
    /// body), a JSON body without `error`, or an `error` with missing or oddly typed fields still
    /// yields a `GraphError` carrying what could be read.
    pub fn from_response(http_status: u16, body: &[u8]) -> GraphError {
        let mut err = GraphError {
            http_status,
            ..GraphError::default()
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(Value::Object(e)) => {
                err.code = e.get("code").and_then(int_of);
                err.subcode = e.get("error_subcode").and_then(int_of);
                err.error_type = e.get("type").and_then(string_of);
                err.is_transient = e.get("is_transient").and_then(bool_of);
                err.fbtrace_id = e.get("fbtrace_id").and_then(string_of);
                err.user_title = e.get("error_user_title").and_then(string_of);
                err.user_msg = e.get("error_user_msg").and_then(string_of);
                err.message = e
                    .get("message")
                    .and_then(string_of)
                    .unwrap_or_else(|| format!("HTTP {http_status}"));
            }
            // Some OAuth endpoints answer {"error":"...","error_description":"..."}.
            Some(Value::String(s)) => err.message = s.clone(),
            _ => err.message = excerpt(body, http_status),
        }
        err
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Graph error (HTTP {})", self.http_status)?;
        match (self.code, self.subcode) {
            (Some(c), Some(s)) => write!(f, " code {c}/{s}")?,
            (Some(c), None) => write!(f, " code {c}")?,
            (None, Some(s)) => write!(f, " subcode {s}")?,
            (None, None) => {}
        }
        if let Some(t) = &self.error_type {
            write!(f, " {t}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.fbtrace_id {
            write!(f, " [fbtrace_id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphError {}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn excerpt(body: &[u8], http_status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {http_status}");
    }
    let mut end = text.len().min(MAX_EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What the sender should do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: retry the same send later with backoff (bounded).
    Retry,
    /// The person blocked the Page, turned messages off or is gone (551, 200/1545041 only):
    /// stop, and record that this person does not want messages.
    RecipientUnreachable,
    /// Outside the allowed window. For a `login_id` or `user_ref` the one message is used or
    /// late, so that obligation is over; for a PSID the window is closed until the person
    /// writes. Says nothing about whether the person wants messages.
    WindowClosed,
    /// Meta knows no such recipient for this Page (100/2018001): this opt-in fails with the
    /// reason. Not a statement about the person, nor a fault in our request.
    UnknownRecipient,
    /// Meta will not deliver this one message to this recipient for a reason of its own
    /// (permissions of this user, a private reply already made): this send fails with the
    /// reason; the person is not marked.
    Undeliverable,
    /// Credentials, permissions or Page state: alert the operator and pause sending.
    OperatorAction,
    /// The request itself is wrong: fix the code, don't retry.
    BadRequest,
}

impl ErrorClass {
    /// Every class, for metric dimensions that must be bounded to the known set.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Retry,
        ErrorClass::RecipientUnreachable,
        ErrorClass::WindowClosed,
        ErrorClass::UnknownRecipient,
        ErrorClass::Undeliverable,
        ErrorClass::OperatorAction,
        ErrorClass::BadRequest,
    ];

    /// Stable lowercase name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retry => "retry",
            ErrorClass::RecipientUnreachable => "recipient_unreachable",
            ErrorClass::WindowClosed => "window_closed",
            ErrorClass::UnknownRecipient => "unknown_recipient",
            ErrorClass::Undeliverable => "undeliverable",
            ErrorClass::OperatorAction => "operator_action",
            ErrorClass::BadRequest => "bad_request",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`classify`] / [`classify_transport`]. See the module doc for field meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub class: ErrorClass,
    /// Short stable name of the table row or fallback that matched.
    pub rule: &'static str,
    /// Total attempts including the first, when tighter than the sender's default bound.
    pub max_attempts: Option<u32>,
    /// Minimum wait before the next attempt, when the error implies one.
    pub wait_hint_secs: Option<u64>,
}

/// How a table row matches `error_subcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubcodeMatch {
    /// Any subcode (or none) not matched by a more specific row of the same code.
    Any,
    /// Only when the error has no subcode.
    Absent,
    /// Only this subcode.
    Exact(i64),
}

/// A condition on the request that failed, for answers whose meaning depends on what we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestMatch {
    /// Whatever was sent.
    Any,
    /// Only when the request carried one of [`RETIRED_TAGS`].
    RetiredTag,
}

/// Message tags Meta stopped accepting on 2026-04-27 (meta-platform.md §0): a send carrying
/// one is refused with a bare `100 "Invalid parameter"`, for every recipient alike.
pub const RETIRED_TAGS: &[&str] = &[
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];

/// What the classifier may know about the request that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestContext<'a> {
    /// The `tag` the request carried (`messaging_type: MESSAGE_TAG`), if any.
    pub tag: Option<&'a str>,
}

impl RequestContext<'_> {
    fn matches(&self, want: RequestMatch) -> bool {
        match want {
            RequestMatch::Any => true,
            RequestMatch::RetiredTag => self.tag.is_some_and(|t| {
                RETIRED_TAGS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(t.trim()))
            }),
        }
    }
}

/// One row of the taxonomy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub code: i64,
    pub subcode: SubcodeMatch,
    /// Lowercase text that `message` must contain (compared case-insensitively), for answers
    /// Meta distinguishes only by text.
    pub message: Option<&'static str>,
    /// A condition on the failed request.
    pub request: RequestMatch,
    pub class: ErrorClass,
    /// Short stable name, unique in the table.
    pub rule: &'static str,
    pub max_attempts: Option<u32>,
    pub wait_hint_secs: Option<u64>,
    /// Meta's meaning, for docs.
    pub meaning: &'static str,
}

impl Row {
    /// More specific rows win: a specific subcode first, then more conditions.
    fn specificity(&self) -> (u8, u8) {
        let subcode = u8::from(!matches!(self.subcode, SubcodeMatch::Any));
        let conditions =
            u8::from(self.message.is_some()) + u8::from(self.request != RequestMatch::Any);
        (subcode, conditions)
    }

    fn classification(&self) -> Classification {
        Classification {
            class: self.class,
            rule: self.rule,
            max_attempts: self.max_attempts,
            wait_hint_secs: self.wait_hint_secs,
        }
    }
}

/// Attempts allowed for code 2, which also means "the customer blocked the business".
const CODE_2_MAX_ATTEMPTS: u32 = 3;
/// Marketing Messages 4/2018354: the smallest notification cadence Meta offered was daily.
const MARKETING_MIN_DELAY_WAIT_SECS: u64 = 24 * 60 * 60;

const fn row(
    code: i64,
    subcode: SubcodeMatch,
    class: ErrorClass,
    rule: &'static str,
    meaning: &'static str,
) -> Row {
    Row {
        code,
        subcode,
        message: None,
        request: RequestMatch::Any,
        class,
        rule,
        max_attempts: None,
        wait_hint_secs: None,
        meaning,
    }
}

/// A code-100 row told apart by its text (these answers carry no subcode).
const fn text_row(
    text: &'static str,
    class: ErrorClass,
    rule: &'static str,
    meaning: &'static str,
) -> Row {
    Row {
        message: Some(text),
        ..row(100, Any, class, rule, meaning)
    }
}

use ErrorClass::{
    BadRequest, OperatorAction, RecipientUnreachable, Retry, Undeliverable, UnknownRecipient,
    WindowClosed,
};
use SubcodeMatch::{Absent, Any, Exact};

#[rustfmt::skip]
static TABLE: &[Row] = &[
    // Transient: retry with backoff (bounded).
    row(1200, Any, Retry, "temporary_send_failure", "Temporary send message failure, try later"),
    Row {
        max_attempts: Some(CODE_2_MAX_ATTEMPTS),
        ..row(2, Any, Retry, "unexpected_error", "Unexpected error; also returned when the customer blocked the business")
    },
    row(4, Any, Retry, "app_rate_limit", "Application request limit reached"),
    row(4, Exact(2018022), Retry, "phone_send_rate_limit", "Too many send requests to phone numbers"),
    row(613, Any, Retry, "api_rate_limit", "Calls to this API exceeded the rate limit"),
    row(17, Any, Retry, "user_rate_limit", "User request limit reached"),
    row(32, Any, Retry, "page_rate_limit", "Page request limit reached"),
    row(80001, Any, Retry, "buc_pages_throttled", "Business Use Case throttling (Pages)"),
    row(80006, Any, Retry, "buc_messenger_throttled", "Business Use Case throttling (Messenger)"),
    // Marketing Messages. Meta: 2018354 "is okay to ignore" (frequency cap for that token); wait a
    // day, then try once more at most.
    Row {
        max_attempts: Some(2),
        wait_hint_secs: Some(MARKETING_MIN_DELAY_WAIT_SECS),
        ..row(4, Exact(2018354), Retry, "marketing_min_delay", "Marketing Messages: minimum delay between two notifications not respected")
    },
    Row {
        max_attempts: Some(3),
        ..row(9, Exact(2018352), Retry, "marketing_user_too_many_actions", "Marketing Messages: user is performing too many actions")
    },
    // The person does not want messages: stop, and remember it. Only these two rows.
    row(551, Any, RecipientUnreachable, "person_unavailable", "This person isn't available right now"),
    row(200, Exact(1545041), RecipientUnreachable, "not_receiving_from_you", "Person isn't receiving messages from you"),
    // Outside the window: the obligation or the window is over; the person is not marked.
    row(10, Exact(2018278), WindowClosed, "outside_window", "Message sent outside of allowed window"),
    row(10, Exact(2534022), WindowClosed, "outside_window_2534022", "Message sent outside of allowed window (Instagram)"),
    row(10, Exact(2018065), WindowClosed, "outside_window_legacy", "Outside window (old wording: needs subscription/news permission)"),
    // Meta does not know the recipient: this opt-in fails with the reason.
    row(100, Exact(2018001), UnknownRecipient, "no_matching_user", "No matching user found"),
    // This message cannot go to this recipient; says nothing about what the person wants.
    row(10, Exact(2018108), Undeliverable, "cannot_receive_messages", "This person cannot receive messages"),
    row(230, Any, Undeliverable, "user_disallowed", "Permissions disallow message to user"),
    row(10903, Any, Undeliverable, "cannot_reply_to_activity", "Can't reply to this activity (private replies)"),
    row(10900, Any, Undeliverable, "already_replied", "Activity already replied to (private replies)"),
    // Configuration / credentials: alert the operator, pause sending.
    row(190, Any, OperatorAction, "invalid_token", "Invalid or expired access token"),
    row(190, Exact(458), OperatorAction, "token_app_not_authorized", "Access token: app not authorized"),
    row(190, Exact(460), OperatorAction, "token_session_invalidated", "Access token: session invalidated (e.g. password change)"),
    row(190, Exact(463), OperatorAction, "token_expired", "Access token expired"),
    row(200, Any, OperatorAction, "permission_error", "Permissions error"),
    row(200, Exact(2018028), OperatorAction, "app_roles_only", "Can only message app roles until pages_messaging is approved and the app is live"),
    row(200, Exact(2018027), OperatorAction, "phone_permission_roles_only", "Phone-number sends limited to app roles until the permission is approved"),
    row(200, Exact(2018021), OperatorAction, "phone_matching_fee", "Phone number matching requires the fee/terms"),
    // Only a bare 10 pauses sending: an unlisted 10/subcode is more likely a new per-user window
    // variant than an app-wide permission loss, so it falls through to the fallbacks instead.
    row(10, Absent, OperatorAction, "permission_denied", "Permission denied"),
    row(1, Exact(99), OperatorAction, "unknown_error_access", "Unknown error; often missing Advanced Access or verification"),
    row(368, Any, OperatorAction, "abusive_action_blocked", "Action deemed abusive or disallowed (Page restricted)"),
    row(10904, Any, OperatorAction, "page_messaging_disabled", "Page has messages disabled"),
    row(2022, Any, OperatorAction, "commerce_disabled", "Commerce messages temporarily disabled"),
    row(2, Exact(2018344), OperatorAction, "privacy_tos_not_accepted", "Page admin must accept the Privacy ToS (labels)"),
    row(10, Exact(1893063), OperatorAction, "page_restricted", "Page temporarily restricted from sending messages"),
    // Meta's Login Connect FAQ: on a login_id send this means the app lacks pages_messaging.
    text_row("param recipient[id] must be a valid id string", OperatorAction, "missing_pages_messaging", "Param recipient[id] must be a valid ID string (app lacks pages_messaging)"),
    text_row("require an appsecret_proof", OperatorAction, "appsecret_proof_required", "API calls from the server require an appsecret_proof argument"),
    text_row("invalid appsecret_proof", OperatorAction, "appsecret_proof_invalid", "Invalid appsecret_proof provided in the API argument"),
    // Every send with a retired tag fails alike: a setting to fix once, not one opt-in to reset.
    Row {
        request: RequestMatch::RetiredTag,
        ..text_row("invalid parameter", OperatorAction, "retired_message_tag", "Invalid parameter: the request carried a message tag Meta retired")
    },
    // Bad request: fix the code, don't retry.
    row(100, Any, BadRequest, "invalid_parameter", "Invalid parameter"),
    row(100, Exact(2018109), BadRequest, "attachment_too_large", "Attachment size exceeds allowable limit"),
    row(100, Exact(2018047), BadRequest, "attachment_upload_failed", "Upload attachment failure"),
    row(100, Exact(2018034), BadRequest, "empty_message", "Message is empty"),
    row(100, Exact(2018032), BadRequest, "invalid_data", "Invalid data"),
    row(194, Any, BadRequest, "too_few_elements", "Too few elements (e.g. quick_replies)"),
    row(105, Any, BadRequest, "too_many_elements", "Too many elements"),
    row(1, Exact(1357046), BadRequest, "invalid_json_reply", "Received invalid JSON reply"),
];

/// The taxonomy table, in declaration order (for docs and tests).
pub fn table() -> &'static [Row] {
    TABLE
}

/// Maps a Graph error to what the sender should do, for a request without a message tag. See
/// the module doc for the lookup order.
pub fn classify(err: &GraphError) -> Classification {
    classify_request(err, &RequestContext::default())
}

/// [`classify`], knowing what the failed request carried.
pub fn classify_request(err: &GraphError, request: &RequestContext<'_>) -> Classification {
    if let Some(row) = lookup(err, request) {
        let mut c = row.classification();
        // A bounded code (2 also means "blocked") answered with HTTP 5xx is a server fault:
        // retry it until the deadline like any other 5xx. The bound is for 4xx answers.
        if c.class == Retry && (500..=599).contains(&err.http_status) {
            c.max_attempts = None;
        }
        return c;
    }
    let fallback = |class, rule, max_attempts| Classification {
        class,
        rule,
        max_attempts,
        wait_hint_secs: None,
    };
    if err.is_transient == Some(true) {
        return fallback(Retry, "transient_flag", None);
    }
    if (500..=599).contains(&err.http_status) {
        return match err.code {
            None => fallback(Retry, "http_5xx", None),
            Some(_) => fallback(Retry, "unknown_5xx", None),
        };
    }
    if err.http_status == 429 {
        return fallback(Retry, "http_429", None);
    }
    fallback(BadRequest, "unknown", None)
}

fn lookup(err: &GraphError, request: &RequestContext<'_>) -> Option<&'static Row> {
    let code = err.code?;
    let message = err.message.to_ascii_lowercase();
    let mut best: Option<&'static Row> = None;
    for row in TABLE.iter().filter(|r| r.code == code) {
        let subcode_holds = match (row.subcode, err.subcode) {
            (Exact(want), Some(got)) => want == got,
            (Absent, None) | (Any, _) => true,
            _ => false,
        };
        let holds = subcode_holds
            && row.message.is_none_or(|text| message.contains(text))
            && request.matches(row.request);
        // On a tie the earlier row in the table wins.
        if holds && best.is_none_or(|b| row.specificity() > b.specificity()) {
            best = Some(row);
        }
    }
    best
}

/// A send that failed below HTTP: no Graph answer was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// No complete answer in time. The message may have been delivered: a retry can duplicate it.
    Timeout,
    /// The connection (DNS, TCP, TLS) could not be made: nothing was sent.
    Connect,
    /// Anything else (reset mid-request, unreadable body, …).
    Other,
}

/// Classifies a transport failure: always `Retry`, bounded only by the deadline. A network that
/// keeps failing says nothing about the person or the request, so no attempt count may end
/// the opt-in early; the deadline check reports it if the network never recovers.
pub fn classify_transport(kind: TransportFailure) -> Classification {
    let rule = match kind {
        TransportFailure::Timeout => "transport_timeout",
        TransportFailure::Connect => "transport_connect",
        TransportFailure::Other => "transport_other",
    };
    Classification {
        class: Retry,
        rule,
        max_attempts: None,
        wait_hint_secs: None,
    }
}
