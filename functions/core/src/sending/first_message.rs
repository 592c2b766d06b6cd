//! The first message's content: per Page (the page config item, editable in the console) or
//! the stack default. Validated before use so a request Meta would refuse is never sent; an
//! invalid config pauses the Page with a reason instead.

use serde::Deserialize;

use crate::ports::graph::{OutgoingMessage, QuickReply};

pub const MAX_TEXT_CHARS: usize = 2000;
pub const MAX_QUICK_REPLIES: usize = 13;
pub const MAX_QUICK_REPLY_TITLE_CHARS: usize = 20;
pub const MAX_PAYLOAD_CHARS: usize = 1000;

/// The console-editable shape: `{"text": "...", "quick_replies": [{"title": "...", "payload": "..."}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    text: String,
    #[serde(default)]
    quick_replies: Vec<ConfigQuickReply>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigQuickReply {
    #[serde(default = "text_type")]
    content_type: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    image_url: Option<String>,
}

fn text_type() -> String {
    "text".into()
}

/// Parses and validates a first-message config. The error says what to fix.
pub fn parse(json: &str) -> Result<OutgoingMessage, String> {
    let c: Config =
        serde_json::from_str(json).map_err(|e| format!("first_message is not valid: {e}"))?;
    let text = c.text.trim();
    if text.is_empty() {
        return Err("first_message.text is empty".into());
    }
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(format!(
            "first_message.text has {n} characters; Meta allows {MAX_TEXT_CHARS}"
        ));
    }
    let quick_replies = quick_replies(
        c.quick_replies
            .into_iter()
            .map(|q| QuickReply {
                content_type: q.content_type,
                title: q.title,
                payload: q.payload,
                image_url: q.image_url,
            })
            .collect(),
    )?;
    Ok(OutgoingMessage {
        text: Some(text.to_string()),
        quick_replies,
        attachment: None,
        metadata: None,
    })
}

/// Validates quick replies as Meta checks them (count, content types, titles, payloads) and
/// trims their titles. Shared by the first message and the follow-ups.
pub fn quick_replies(list: Vec<QuickReply>) -> Result<Vec<QuickReply>, String> {
    if list.len() > MAX_QUICK_REPLIES {
        return Err(format!(
            "the message has {} quick replies; Meta allows {MAX_QUICK_REPLIES}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, q) in list.into_iter().enumerate() {
        match q.content_type.as_str() {
            "text" => {
                let title = q.title.as_deref().map(str::trim).unwrap_or("");
                if title.is_empty() {
                    return Err(format!("quick reply {i}: a text quick reply needs a title"));
                }
                if title.chars().count() > MAX_QUICK_REPLY_TITLE_CHARS {
                    return Err(format!(
                        "quick reply {i}: title longer than {MAX_QUICK_REPLY_TITLE_CHARS} characters"
                    ));
                }
                if q.payload.as_deref().unwrap_or("").is_empty() {
                    return Err(format!(
                        "quick reply {i}: a text quick reply needs a payload"
                    ));
                }
            }
            "user_phone_number" | "user_email" => {}
            other => return Err(format!("quick reply {i}: unknown content_type {other:?}")),
        }
        if q.payload.as_deref().map(|p| p.chars().count()).unwrap_or(0) > MAX_PAYLOAD_CHARS {
            return Err(format!(
                "quick reply {i}: payload longer than {MAX_PAYLOAD_CHARS} characters"
            ));
        }
        out.push(QuickReply {
            title: q.title.map(|t| t.trim().to_string()),
            ..q
        });
    }
    Ok(out)
}

/// The stack default: plain text.
pub fn from_text(text: &str) -> Result<OutgoingMessage, String> {
    parse(&serde_json::json!({ "text": text }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let long = "x".repeat(2001);
        let exact = "é".repeat(2000);
        let qr = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"title":"t{i}","payload":"p{i}"}}"#))
                .collect();
            format!(r#"{{"text":"hi","quick_replies":[{}]}}"#, list.join(","))
        };
        let cases: Vec<(&str, String, bool)> = vec![
            ("plain", r#"{"text":"Welcome!"}"#.into(), true),
            (
                "2000 chars (not bytes)",
                format!(r#"{{"text":"{exact}"}}"#),
                true,
            ),
            ("2001 chars", format!(r#"{{"text":"{long}"}}"#), false),
            ("empty text", r#"{"text":"  "}"#.into(), false),
            ("13 quick replies", qr(13), true),
            ("14 quick replies", qr(14), false),
            (
                "title 20",
                r#"{"text":"a","quick_replies":[{"title":"12345678901234567890","payload":"p"}]}"#
                    .into(),
                true,
            ),
            (
                "title 21",
                r#"{"text":"a","quick_replies":[{"title":"123456789012345678901","payload":"p"}]}"#
                    .into(),
                false,
            ),
            (
                "no payload",
                r#"{"text":"a","quick_replies":[{"title":"t"}]}"#.into(),
                false,
            ),
            (
                "email",
                r#"{"text":"a","quick_replies":[{"content_type":"user_email"}]}"#.into(),
                true,
            ),
            (
                "bad type",
                r#"{"text":"a","quick_replies":[{"content_type":"location"}]}"#.into(),
                false,
            ),
            ("typo field", r#"{"txt":"a"}"#.into(), false),
            ("not json", "Welcome".into(), false),
        ];
        for (name, json, ok) in cases {
            assert_eq!(parse(&json).is_ok(), ok, "{name}: {:?}", parse(&json));
        }
    }
}
