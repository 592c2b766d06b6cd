//! `show_person` and `show_page`: what the table says, in one answer. Read-only.
//!
//! The answer is the operator's (the console shows it; the function does not log it): it holds
//! the stored identities. The logs name the person by hash only. Marketing tokens are shown by
//! topic, status and expiry, never by value.

use serde_json::{json, Value};

use super::{Done, Operations};
use crate::lifecycle::optin::{optin_key, Optin, DAY_MS};
use crate::ports::PortError;
use crate::sending::first_message;
use crate::support::privacy::hash_id;
use crate::support::time::format_rfc3339_ms;
use crate::webhook::{Identity, IdentityKind};

fn time(ms: Option<i64>) -> Value {
    ms.map(format_rfc3339_ms).map_or(Value::Null, Value::String)
}

/// One opt-in record, current generation and history.
fn optin_json(o: &Optin) -> Value {
    json!({
        "optin_key": o.key(),
        "recipient": {"kind": o.recipient.kind.as_str(), "id": o.recipient.id},
        "page_id": o.page_id,
        "entry_point": o.entry_point.as_str(),
        "source": o.source.as_str(),
        "generation": o.generation,
        "state": o.state.as_str(),
        "opted_in_at": format_rfc3339_ms(o.opted_in_at_ms),
        "deadline_at": format_rfc3339_ms(o.deadline_at_ms),
        "attempts": o.attempts,
        "sent_at": time(o.sent_at_ms),
        "message_id": o.message_id,
        "answered_at": time(o.answered_at_ms),
        "psid": o.psid,
        "last_error": o.last_error,
        "history": o.history.iter().map(|h| json!({
            "generation": h.generation,
            "state": h.state.as_str(),
            "opted_in_at": format_rfc3339_ms(h.opted_in_at_ms),
            "sent_at": time(h.sent_at_ms),
            "answered_at": time(h.answered_at_ms),
            "last_error": h.last_error,
            "closed_at": format_rfc3339_ms(h.closed_at_ms),
        })).collect::<Vec<_>>(),
    })
}

impl Operations {
    pub(crate) async fn show_person(&self, page_id: &str, psid: &str) -> Result<Done, PortError> {
        let now = self.now();
        let people = &self.ports.table.people;
        let person = people.get_person(page_id, psid).await?;
        let tokens = people.get_tokens(page_id, psid).await?;
        // Every opt-in that can belong to this person: the identifiers linked to the PSID, and
        // the PSID's own (Send to Messenger, m.me).
        let mut identities = vec![Identity::new(IdentityKind::Psid, psid)];
        if let Some(p) = &person {
            for tag in &p.linked {
                let kind = match tag.split_once(':') {
                    Some(("login_id", id)) => Some(Identity::new(IdentityKind::LoginId, id)),
                    Some(("user_ref", id)) => Some(Identity::new(IdentityKind::UserRef, id)),
                    _ => None,
                };
                identities.extend(kind);
            }
        }
        let mut optins = Vec::new();
        for identity in &identities {
            if let Some(o) = self
                .ports
                .table
                .optins
                .get_optin(&optin_key(identity, page_id))
                .await?
            {
                optins.push(optin_json(&o));
            }
        }
        tracing::info!(
            page = %page_id,
            person = %hash_id(psid),
            found = person.is_some(),
            optins = optins.len(),
            "person shown"
        );
        let window_until = person
            .as_ref()
            .and_then(|p| p.last_user_message_at_ms)
            .map(|at| at + DAY_MS);
        Ok(Done::answer(json!({
            "outcome": if person.is_some() || !optins.is_empty() { "found" } else { "not_found" },
            "page_id": page_id,
            "psid": psid,
            "person": person.as_ref().map(|p| json!({
                "login_id": p.login_id,
                "user_ref": p.user_ref,
                "linked": p.linked,
                "linked_at": time(p.linked_at_ms),
                "last_user_message_at": time(p.last_user_message_at_ms),
                "opted_out_at": time(p.opted_out_at_ms),
                "opted_out_reason": p.opted_out_reason,
                "referral": p.referral.as_ref().map(|r| json!({
                    "ref": r.reference, "source": r.source, "ad_id": r.ad_id,
                    "at": format_rfc3339_ms(r.at_ms),
                })),
            })),
            "window": {
                "open": window_until.is_some_and(|until| until > now),
                "until": time(window_until),
            },
            "optins": optins,
            "marketing_tokens": tokens.iter().map(|t| json!({
                "topic": t.topic,
                "status": format!("{:?}", t.status).to_lowercase(),
                "has_token": t.token.is_some(),
                "expires_at": time(t.expires_at_ms),
                "changed_at": format_rfc3339_ms(t.status_at_ms),
            })).collect::<Vec<_>>(),
        })))
    }

    pub(crate) async fn show_page(&self, page_id: &str) -> Result<Done, PortError> {
        let page = self.ports.table.pages.get_page(page_id).await?;
        let first_message = match page.as_ref().and_then(|p| p.first_message.as_deref()) {
            None => json!({"source": "the stack's FirstMessageText (the Page sets none)"}),
            Some(raw) => match first_message::parse(raw) {
                Ok(_) => json!({"source": "the Page's first_message", "valid": true, "json": raw}),
                Err(e) => json!({"source": "the Page's first_message", "valid": false,
                                 "problem": e, "json": raw}),
            },
        };
        let token = self.check_token(page_id, false).await?;
        Ok(Done::answer(json!({
            "outcome": if page.is_some() { "found" } else { "no_config_item" },
            "page_id": page_id,
            "paused": page.as_ref().is_some_and(|p| p.paused),
            "paused_reason": page.as_ref().and_then(|p| p.paused_reason.clone()),
            "paused_at": time(page.as_ref().and_then(|p| p.paused_at_ms)),
            "answers_optins": page.as_ref().is_none_or(|p| p.answers_optins),
            "first_message": first_message,
            "token": token,
        })))
    }
}
