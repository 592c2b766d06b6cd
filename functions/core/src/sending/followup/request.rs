//! A follow-up request as the business sends it (`POST /v1/messages` or a requests-queue
//! message: the same JSON), validated before anything is read or written:
//!
//! ```json
//! { "recipient": {"psid": "…"},            // exactly one of psid, igsid, login_id, user_ref,
//!                                          // external_id, phone_number (+ optional name)
//!   "page_id": "…",                        // needed except for login_id / user_ref
//!   "message": {"text": "…"},              // Messenger message JSON: text or attachment,
//!                                          // quick_replies, metadata
//!   "intent": "reply",                     // reply (default) | update | human_agent | utility
//!   "author": {"kind": "human", "id": "…"},// required for human_agent
//!   "tag": "HUMAN_AGENT",                  // optional; means intent human_agent
//!   "idempotency_key": "order-42-shipped" }
//! ```
//!
//! Every error names the field to fix. What is well formed but not allowed (a retired tag, a
//! bot-authored `human_agent`, Instagram's 1000 characters) is the policy's to refuse, with its
//! rule, not a validation error.

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ports::graph::{OutgoingMessage, QuickReply};
use crate::sending::first_message::{self, MAX_TEXT_CHARS};
use crate::sending::policy::{Intent, HUMAN_AGENT};

/// Longest idempotency key (characters).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Longest recipient id or phone number (characters).
const MAX_ID_CHARS: usize = 256;
/// `message.metadata` must stay under this (Meta echoes it back).
const MAX_METADATA_CHARS: usize = 1000;
/// The attachment types the Send API takes.
const ATTACHMENT_TYPES: [&str; 5] = ["audio", "file", "image", "template", "video"];

/// Who the business means, as it named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientRef {
    Psid(String),
    Igsid(String),
    LoginId(String),
    UserRef(String),
    ExternalId(String),
    PhoneNumber {
        number: String,
        name: Option<String>,
    },
}

impl RecipientRef {
    /// The request's key for this kind (`psid`, `igsid`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            RecipientRef::Psid(_) => "psid",
            RecipientRef::Igsid(_) => "igsid",
            RecipientRef::LoginId(_) => "login_id",
            RecipientRef::UserRef(_) => "user_ref",
            RecipientRef::ExternalId(_) => "external_id",
            RecipientRef::PhoneNumber { .. } => "phone_number",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            RecipientRef::Psid(v)
            | RecipientRef::Igsid(v)
            | RecipientRef::LoginId(v)
            | RecipientRef::UserRef(v)
            | RecipientRef::ExternalId(v) => v,
            RecipientRef::PhoneNumber { number, .. } => number,
        }
    }

    /// Kinds whose Page the request must name (a `login_id` / `user_ref` is bound to one).
    fn needs_page(&self) -> bool {
        !matches!(self, RecipientRef::LoginId(_) | RecipientRef::UserRef(_))
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(self.kind().into(), Value::String(self.value().to_string()));
        if let RecipientRef::PhoneNumber {
            name: Some(name), ..
        } = self
        {
            m.insert("name".into(), Value::String(name.clone()));
        }
        Value::Object(m)
    }
}

/// Who wrote the message (required for `human_agent`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// `human` for a person (an agent); anything else (`bot`, `automation`) is not a human.
    pub kind: String,
    pub id: String,
}

impl Author {
    pub fn is_human(&self) -> bool {
        self.kind.trim().eq_ignore_ascii_case("human")
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRequest {
    pub recipient: RecipientRef,
    pub page_id: Option<String>,
    pub message: OutgoingMessage,
    pub intent: Intent,
    pub author: Option<Author>,
    /// A tag the caller named other than HUMAN_AGENT (left for the policy to refuse).
    pub tag: Option<String>,
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    recipient: Option<Map<String, Value>>,
    #[serde(default)]
    page_id: Option<Value>,
    message: Option<Value>,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    author: Option<Author>,
    #[serde(default)]
    tag: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    attachment: Option<Value>,
    #[serde(default)]
    quick_replies: Vec<QuickReply>,
    #[serde(default)]
    metadata: Option<String>,
}

impl MessageRequest {
    /// Parses and validates a request body. The error says what to fix.
    pub fn parse(body: &[u8]) -> Result<MessageRequest, String> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let key = wire
            .idempotency_key
            .ok_or("idempotency_key is required: the same key always means the same message")?;
        let key_chars = key.chars().count();
        if key.trim().is_empty()
            || key_chars > MAX_IDEMPOTENCY_KEY_CHARS
            || key.chars().any(char::is_control)
        {
            return Err(format!(
                "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters without \
                 control characters"
            ));
        }
        let recipient = recipient(wire.recipient.ok_or("recipient is required")?)?;
        let page_id = wire.page_id.map(page_id).transpose()?;
        if page_id.is_none() && recipient.needs_page() {
            return Err(format!(
                "page_id is required for a {} recipient (it is scoped to one Page or Instagram \
                 account)",
                recipient.kind()
            ));
        }
        let message = message(wire.message.ok_or("message is required")?)?;
        let mut intent = match wire.intent.as_deref().map(str::trim) {
            None => None,
            Some("reply") => Some(Intent::Reply),
            Some("update") => Some(Intent::Update),
            Some("human_agent") => Some(Intent::HumanAgent),
            Some("utility") => Some(Intent::Utility),
            Some(other) => {
                return Err(format!(
                    "intent {other:?} is not one of reply, update, human_agent, utility"
                ))
            }
        };
        let mut tag = wire
            .tag
            .map(|t| t.trim().to_ascii_uppercase())
            .filter(|t| !t.is_empty());
        if tag.as_deref() == Some(HUMAN_AGENT) {
            match intent {
                None | Some(Intent::HumanAgent) => intent = Some(Intent::HumanAgent),
                Some(other) => {
                    return Err(format!(
                        "tag HUMAN_AGENT contradicts intent {}",
                        other.as_str()
                    ))
                }
            }
            tag = None;
        }
        let intent = intent.unwrap_or(Intent::Reply);
        if intent == Intent::HumanAgent {
            let author = wire.author.as_ref().ok_or(
                "intent human_agent needs author: {\"kind\": \"human\", \"id\": \"<agent id>\"}",
            )?;
            if author.kind.trim().is_empty() || author.id.trim().is_empty() {
                return Err("author.kind and author.id must not be empty".into());
            }
        }
        if intent == Intent::Utility && !is_template(&message) {
            return Err(
                "intent utility needs a template: message.attachment.type = \"template\"".into(),
            );
        }
        Ok(MessageRequest {
            recipient,
            page_id,
            message,
            intent,
            author: wire.author,
            tag,
            idempotency_key: key,
        })
    }

    /// The request as JSON, in the shape [`MessageRequest::parse`] reads (what the requests
    /// queue carries). Object keys come out sorted, so equal requests have equal text.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("recipient".into(), self.recipient.to_json());
        if let Some(p) = &self.page_id {
            m.insert("page_id".into(), Value::String(p.clone()));
        }
        m.insert(
            "message".into(),
            serde_json::to_value(&self.message).unwrap_or(Value::Null),
        );
        m.insert("intent".into(), Value::String(self.intent.as_str().into()));
        if let Some(a) = &self.author {
            m.insert(
                "author".into(),
                serde_json::json!({"kind": a.kind, "id": a.id}),
            );
        }
        if let Some(t) = &self.tag {
            m.insert("tag".into(), Value::String(t.clone()));
        }
        m.insert(
            "idempotency_key".into(),
            Value::String(self.idempotency_key.clone()),
        );
        Value::Object(m)
    }

    /// SHA-256 (hex) of [`MessageRequest::to_json`]: tells a retry from another request that
    /// reuses its key.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().to_string().as_bytes()))
    }

    /// Characters of the text (Unicode scalar values).
    pub fn text_chars(&self) -> usize {
        self.message
            .text
            .as_deref()
            .map_or(0, |t| t.chars().count())
    }

    pub fn human_author(&self) -> Option<bool> {
        self.author.as_ref().map(Author::is_human)
    }
}

fn is_template(m: &OutgoingMessage) -> bool {
    m.attachment
        .as_ref()
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        == Some("template")
}

/// An id given as a string or a number (Meta's ids are numeric strings; JSON clients send
/// either).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn page_id(v: Value) -> Result<String, String> {
    id_text(&v)
        .filter(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| "page_id must be a numeric Page or Instagram account id".into())
}

fn recipient(mut m: Map<String, Value>) -> Result<RecipientRef, String> {
    const KINDS: [&str; 6] = [
        "psid",
        "igsid",
        "login_id",
        "user_ref",
        "external_id",
        "phone_number",
    ];
    let name = m.remove("name");
    if let Some(other) = m.keys().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(format!(
            "recipient.{other} is not a recipient kind (one of {})",
            KINDS.join(", ")
        ));
    }
    if m.len() != 1 {
        return Err(format!(
            "recipient must name exactly one of {} (it names {})",
            KINDS.join(", "),
            m.len()
        ));
    }
    let Some((kind, value)) = m.into_iter().next() else {
        return Err("recipient is empty".into());
    };
    let value = id_text(&value)
        .filter(|v| !v.is_empty() && v.chars().count() <= MAX_ID_CHARS)
        .ok_or_else(|| format!("recipient.{kind} must be a non-empty string"))?;
    let name = match name {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if kind == "phone_number" => Some(n),
        Some(_) => return Err("recipient.name goes only with a phone_number, as a string".into()),
    };
    Ok(match kind.as_str() {
        "psid" => RecipientRef::Psid(value),
        "igsid" => RecipientRef::Igsid(value),
        "login_id" => RecipientRef::LoginId(value),
        "user_ref" => RecipientRef::UserRef(value),
        "external_id" => RecipientRef::ExternalId(value),
        _ => {
            if !value.bytes().any(|b| b.is_ascii_digit()) {
                return Err("recipient.phone_number must contain digits".into());
            }
            RecipientRef::PhoneNumber {
                number: value,
                name,
            }
        }
    })
}

fn message(v: Value) -> Result<OutgoingMessage, String> {
    let m: WireMessage = serde_json::from_value(v).map_err(|e| format!("message: {e}"))?;
    let text = m.text.filter(|t| !t.trim().is_empty());
    match (&text, &m.attachment) {
        (None, None) => return Err("message needs a text or an attachment".into()),
        (Some(_), Some(_)) => {
            return Err("message takes a text or an attachment, not both".into());
        }
        _ => {}
    }
    if let Some(t) = &text {
        let n = t.chars().count();
        if n > MAX_TEXT_CHARS {
            return Err(format!(
                "message.text has {n} characters; Meta allows {MAX_TEXT_CHARS}"
            ));
        }
    }
    if let Some(a) = &m.attachment {
        let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
        if !ATTACHMENT_TYPES.contains(&kind) {
            return Err(format!(
                "message.attachment.type must be one of {}",
                ATTACHMENT_TYPES.join(", ")
            ));
        }
        if !a.get("payload").is_some_and(Value::is_object) {
            return Err("message.attachment.payload must be an object".into());
        }
    }
    if m.metadata
        .as_deref()
        .is_some_and(|md| md.chars().count() >= MAX_METADATA_CHARS)
    {
        return Err(format!(
            "message.metadata must be under {MAX_METADATA_CHARS} characters"
        ));
    }
    let quick_replies = first_message::quick_replies(m.quick_replies)
        .map_err(|e| format!("message.quick_replies: {e}"))?;
    Ok(OutgoingMessage {
        text,
        quick_replies,
        attachment: m.attachment,
        metadata: m.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<MessageRequest, String> {
        MessageRequest::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        serde_json::json!({
            "recipient": {"psid": "7001"},
            "page_id": "100",
            "message": {"text": "hello"},
            "idempotency_key": "k1"
        })
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut v = base();
        if let Value::Object(m) = &mut v {
            f(m);
        }
        v
    }

    #[test]
    fn a_plain_reply_to_a_psid() {
        let r = parse(base()).expect("valid");
        assert_eq!(r.recipient, RecipientRef::Psid("7001".into()));
        assert_eq!(r.intent, Intent::Reply);
        assert_eq!(r.page_id.as_deref(), Some("100"));
        // The queue carries exactly what parse reads back.
        let again = MessageRequest::parse(r.to_json().to_string().as_bytes()).expect("round trip");
        assert_eq!(again, r);
        assert_eq!(again.fingerprint(), r.fingerprint());
    }

    #[test]
    fn validation_table() {
        let long = "x".repeat(2001);
        let template = serde_json::json!({"attachment": {"type": "template", "payload": {"template_type": "button"}}});
        let cases: Vec<(&str, Value, bool, &str)> = vec![
            (
                "no key",
                with(|m| {
                    m.remove("idempotency_key");
                }),
                false,
                "idempotency_key",
            ),
            (
                "blank key",
                with(|m| {
                    m.insert("idempotency_key".into(), " ".into());
                }),
                false,
                "idempotency_key",
            ),
            (
                "256-char key",
                with(|m| {
                    m.insert("idempotency_key".into(), "k".repeat(256).into());
                }),
                false,
                "idempotency_key",
            ),
            (
                "255-char key",
                with(|m| {
                    m.insert("idempotency_key".into(), "k".repeat(255).into());
                }),
                true,
                "",
            ),
            (
                "two recipients",
                with(|m| {
                    m.insert(
                        "recipient".into(),
                        serde_json::json!({"psid": "1", "igsid": "2"}),
                    );
                }),
                false,
                "exactly one",
            ),
            (
                "no recipient kind",
                with(|m| {
                    m.insert("recipient".into(), serde_json::json!({}));
                }),
                false,
                "exactly one",
            ),
            (
                "unknown kind",
                with(|m| {
                    m.insert("recipient".into(), serde_json::json!({"email": "a@b"}));
                }),
                false,
                "recipient.email",
            ),
            (
                "numeric psid",
                with(|m| {
                    m.insert("recipient".into(), serde_json::json!({"psid": 7001}));
                }),
                true,
                "",
            ),
            (
                "empty psid",
                with(|m| {
                    m.insert("recipient".into(), serde_json::json!({"psid": ""}));
                }),
                false,
                "non-empty",
            ),
            (
                "name without phone",
                with(|m| {
                    m.insert(
                        "recipient".into(),
                        serde_json::json!({"psid": "1", "name": "A"}),
                    );
                }),
                false,
                "name",
            ),
            (
                "phone with name",
                with(|m| {
                    m.insert("recipient".into(), serde_json::json!({"phone_number": "+1(212)555-2368", "name": {"first_name": "A"}}));
                }),
                false,
                "name",
            ),
            (
                "phone",
                with(|m| {
                    m.insert(
                        "recipient".into(),
                        serde_json::json!({"phone_number": "+1(212)555-2368"}),
                    );
                }),
                true,
                "",
            ),
            (
                "psid without page",
                with(|m| {
                    m.remove("page_id");
                }),
                false,
                "page_id",
            ),
            (
                "login_id without page",
                with(|m| {
                    m.remove("page_id");
                    m.insert("recipient".into(), serde_json::json!({"login_id": "L1"}));
                }),
                true,
                "",
            ),
            (
                "page not numeric",
                with(|m| {
                    m.insert("page_id".into(), "abc".into());
                }),
                false,
                "page_id",
            ),
            (
                "numeric page",
                with(|m| {
                    m.insert("page_id".into(), 100.into());
                }),
                true,
                "",
            ),
            (
                "no message",
                with(|m| {
                    m.remove("message");
                }),
                false,
                "message",
            ),
            (
                "empty text",
                with(|m| {
                    m.insert("message".into(), serde_json::json!({"text": "  "}));
                }),
                false,
                "text or an attachment",
            ),
            (
                "2001 chars",
                with(|m| {
                    m.insert("message".into(), serde_json::json!({"text": long}));
                }),
                false,
                "2000",
            ),
            (
                "text and attachment",
                with(|m| {
                    m.insert("message".into(), serde_json::json!({"text": "a", "attachment": {"type": "image", "payload": {}}}));
                }),
                false,
                "not both",
            ),
            (
                "bad attachment type",
                with(|m| {
                    m.insert(
                        "message".into(),
                        serde_json::json!({"attachment": {"type": "location", "payload": {}}}),
                    );
                }),
                false,
                "attachment.type",
            ),
            (
                "14 quick replies",
                with(|m| {
                    m.insert("message".into(), serde_json::json!({"text": "a", "quick_replies": (0..14).map(|i| serde_json::json!({"content_type": "text", "title": format!("t{i}"), "payload": "p"})).collect::<Vec<_>>()}));
                }),
                false,
                "quick_replies",
            ),
            (
                "typo in message",
                with(|m| {
                    m.insert("message".into(), serde_json::json!({"txt": "a"}));
                }),
                false,
                "message",
            ),
            (
                "typo at the top",
                with(|m| {
                    m.insert("intnet".into(), "reply".into());
                }),
                false,
                "intnet",
            ),
            (
                "unknown intent",
                with(|m| {
                    m.insert("intent".into(), "promo".into());
                }),
                false,
                "intent",
            ),
            (
                "human_agent without author",
                with(|m| {
                    m.insert("intent".into(), "human_agent".into());
                }),
                false,
                "author",
            ),
            (
                "human_agent with author",
                with(|m| {
                    m.insert("intent".into(), "human_agent".into());
                    m.insert(
                        "author".into(),
                        serde_json::json!({"kind": "human", "id": "agent-7"}),
                    );
                }),
                true,
                "",
            ),
            (
                "bot author is valid (the policy refuses it)",
                with(|m| {
                    m.insert("intent".into(), "human_agent".into());
                    m.insert(
                        "author".into(),
                        serde_json::json!({"kind": "bot", "id": "b"}),
                    );
                }),
                true,
                "",
            ),
            (
                "utility without template",
                with(|m| {
                    m.insert("intent".into(), "utility".into());
                }),
                false,
                "template",
            ),
            (
                "utility with template",
                with(|m| {
                    m.insert("intent".into(), "utility".into());
                    m.insert("message".into(), template.clone());
                }),
                true,
                "",
            ),
            (
                "HUMAN_AGENT tag against intent update",
                with(|m| {
                    m.insert("intent".into(), "update".into());
                    m.insert("tag".into(), "HUMAN_AGENT".into());
                }),
                false,
                "contradicts",
            ),
            (
                "retired tag is valid (the policy refuses it)",
                with(|m| {
                    m.insert("tag".into(), "POST_PURCHASE_UPDATE".into());
                }),
                true,
                "",
            ),
            ("not json", Value::String("hello".into()), false, "body"),
        ];
        let mut failures = Vec::new();
        for (name, body, ok, needle) in cases {
            let got = parse(body);
            let good = match &got {
                Ok(_) => ok,
                Err(e) => !ok && e.contains(needle),
            };
            if !good {
                failures.push(format!("{name}: {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_human_agent_tag_means_the_intent() {
        let r = parse(with(|m| {
            m.insert("tag".into(), "human_agent".into());
            m.insert(
                "author".into(),
                serde_json::json!({"kind": "Human", "id": "a"}),
            );
        }))
        .expect("valid");
        assert_eq!(r.intent, Intent::HumanAgent);
        assert_eq!(r.tag, None);
        assert_eq!(r.human_author(), Some(true));
    }

    #[test]
    fn another_body_with_the_same_key_has_another_fingerprint() {
        let a = parse(base()).unwrap();
        let b = parse(with(|m| {
            m.insert("message".into(), serde_json::json!({"text": "bye"}));
        }))
        .unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
