//! Inbound webhook events -> bus events: what the business hears of each event Meta sent,
//! once the lifecycle made its state durable. Every kind yields at least one event; kinds we do
//! not model go out as `Unhandled` with the raw item, so nothing is silently dropped.

use serde_json::{json, Map, Value};

use super::{channel_of, BusEvent, DetailType, PersonIds};
use crate::lifecycle::processor::Processed;
use crate::ports::store::Person;
use crate::webhook::model::{Attachment, Message, MessagingItem, Postback, Referral};
use crate::webhook::{Channel, EventKind, Identity, InboundEvent};

/// What processing learnt that the events carry.
#[derive(Debug, Default, Clone)]
pub struct Learnt {
    /// The person as stored after the event (identities beyond the sender).
    pub person: Option<Person>,
    /// The identifier a reply linked to the sender (`prior_message`).
    pub linked: Option<Identity>,
    /// The business's own id for the person of an opt-in (signed login, signed ref, or what
    /// the stored opt-in already knew).
    pub external_id: Option<String>,
    /// A reply that gave its opt-in the PSID: a funnel step, counted after publishing.
    pub first_reply: Option<crate::funnel::FirstReply>,
    /// An opt-in this event created whose first message the events function sends itself,
    /// once the events are out (see `Lifecycle::with_inline_sender`).
    /// With the gate's pass when the opt-in was written already claimed.
    pub inline_job: Option<(
        crate::lifecycle::optin::FirstMessageJob,
        crate::lifecycle::optin::Optin,
        Option<crate::sending::sender::Admitted>,
    )>,
}

/// The one detail type a kind is ever heard as, for the kinds whose processing writes nothing
/// (no state, no schedule, no job): a delivery, a read, an echo, a reaction. With that detail
/// type switched off (`BusDetailTypesOff`), such an event has no effect at all, so the webhook
/// need not queue it (`IntakeConfig::skipping`). Every other kind has effects of its own.
pub fn heard_only_as(kind: EventKind) -> Option<DetailType> {
    match kind {
        EventKind::Delivery | EventKind::Read => Some(DetailType::DeliveryRead),
        EventKind::Echo => Some(DetailType::MessageEcho),
        EventKind::Reaction => Some(DetailType::ReactionReceived),
        _ => None,
    }
}

/// The events for one processed inbound event.
pub fn events_for(
    event: &InboundEvent,
    item: Option<&MessagingItem>,
    done: &Processed,
    learnt: &Learnt,
) -> Vec<BusEvent> {
    let mut person = event.sender.as_ref().map(PersonIds::of).unwrap_or_default();
    person = person.with_person(learnt.person.as_ref());
    let new = |t: DetailType, person: PersonIds, payload: Value| {
        BusEvent::new(
            t,
            &event.key,
            event.timestamp_ms,
            channel_of(&event.object),
            &event.account_id,
            person,
            payload,
        )
    };
    let standby = event.channel == Channel::Standby;
    let mut out = Vec::new();
    match (event.kind, done) {
        (_, Processed::Quarantined { reason }) => {
            out.push(new(
                DetailType::Unhandled,
                person,
                unhandled(event, Some(reason)),
            ));
        }
        (_, Processed::Replayed { .. }) => {}
        (EventKind::Optin, Processed::MarketingToken { status, applied }) => {
            let o = item.and_then(|i| i.optin.as_ref());
            out.push(new(
                DetailType::MarketingOptInChanged,
                person,
                json!({
                    "topic": o.and_then(|o| o.payload.clone().or_else(|| o.title.clone())),
                    "status": match status {
                        crate::ports::store::TokenStatus::Active => "active",
                        crate::ports::store::TokenStatus::Stopped => "stopped",
                    },
                    "applied": applied,
                    "token_expires_at_ms": o.and_then(|o| o.token_expiry_timestamp),
                }),
            ));
        }
        (EventKind::Optin, Processed::Ignored { .. }) => {
            out.push(new(DetailType::Unhandled, person, unhandled(event, None)));
        }
        (EventKind::Optin, done) => {
            let o = item.and_then(|i| i.optin.as_ref());
            let mut who = PersonIds::default();
            if let Some(o) = o {
                if let Some(l) = o.login_id() {
                    who.login_id = Some(l.to_string());
                }
                if let Some(u) = o.user_ref() {
                    who.user_ref = Some(u.to_string());
                }
            }
            if let Some(s) = &event.sender {
                who.set(s);
            }
            who.external_id.clone_from(&learnt.external_id);
            let mut payload = json!({
                "entry_point": o.map(|o| entry_point_name(o.entry_point())),
                "source": if event.channel == Channel::Login { "login" } else { "webhook" },
                "outcome": done.name(),
            });
            if let Some(r) = o.and_then(|o| o.reference()) {
                payload["ref"] = json!(r);
            }
            if let Processed::OptinCreated { generation, .. } = done {
                payload["generation"] = json!(generation);
            }
            out.push(new(DetailType::OptInReceived, who, payload));
        }
        (EventKind::Message, _) => {
            let payload = item
                .and_then(|i| i.message.as_ref())
                .map(|m| message(m, standby))
                .unwrap_or_else(|| unhandled(event, None));
            out.push(new(DetailType::MessageReceived, person.clone(), payload));
        }
        (EventKind::Postback, _) => {
            let payload = item
                .and_then(|i| i.postback.as_ref())
                .map(|p| postback(p, standby))
                .unwrap_or_else(|| unhandled(event, None));
            out.push(new(DetailType::PostbackReceived, person.clone(), payload));
        }
        (EventKind::Referral, _) => {
            let payload = item
                .and_then(|i| i.referral.as_ref())
                .map(referral)
                .unwrap_or_else(|| unhandled(event, None));
            out.push(new(DetailType::ReferralReceived, person, payload));
        }
        (EventKind::Echo, _) => {
            let m = item.and_then(|i| i.message.as_ref());
            let mut payload = m.map(|m| message(m, standby)).unwrap_or_else(|| json!({}));
            if let Some(m) = m {
                payload["app_id"] = json!(m.app_id.as_ref().map(|a| a.as_str().to_string()));
                payload["metadata"] = json!(m.metadata);
            }
            // An echo's recipient is the person; its sender is the Page.
            let who = item
                .and_then(|i| i.recipient.as_ref())
                .and_then(|r| r.id.as_ref())
                .map(|id| PersonIds {
                    psid: Some(id.as_str().to_string()),
                    ..PersonIds::default()
                })
                .unwrap_or_default();
            out.push(new(DetailType::MessageEcho, who, payload));
        }
        (EventKind::Reaction, _) => {
            let r = item.and_then(|i| i.reaction.as_ref());
            out.push(new(
                DetailType::ReactionReceived,
                person,
                json!({
                    "mid": r.and_then(|r| r.mid.clone()),
                    "reaction": r.and_then(|r| r.reaction.clone()),
                    "emoji": r.and_then(|r| r.emoji.clone()),
                    "action": r.and_then(|r| r.action.clone()),
                }),
            ));
        }
        (EventKind::Delivery, _) => {
            let d = item.and_then(|i| i.delivery.as_ref());
            out.push(new(
                DetailType::DeliveryRead,
                person,
                json!({
                    "kind": "delivery",
                    "mids": d.map(|d| d.mids.clone()).unwrap_or_default(),
                    "watermark": d.and_then(|d| d.watermark),
                }),
            ));
        }
        (EventKind::Read, _) => {
            let r = item.and_then(|i| i.read.as_ref());
            out.push(new(
                DetailType::DeliveryRead,
                person,
                json!({"kind": "read", "watermark": r.and_then(|r| r.watermark)}),
            ));
        }
        (EventKind::PolicyEnforcement, done) => {
            let p = item.and_then(|i| i.policy_enforcement.as_ref());
            out.push(new(
                DetailType::PolicyEnforcement,
                PersonIds::default(),
                json!({
                    "action": p.and_then(|p| p.action.clone()),
                    "reason": p.and_then(|p| p.reason.clone()),
                }),
            ));
            match done {
                Processed::PagePaused { applied: true } => out.push(new(
                    DetailType::PagePaused,
                    PersonIds::default(),
                    json!({"reason": p.and_then(|p| p.reason.clone()), "by": "meta"}),
                )),
                Processed::PageUnpaused { applied: true } => out.push(new(
                    DetailType::PageResumed,
                    PersonIds::default(),
                    json!({"by": "meta"}),
                )),
                _ => {}
            }
        }
        _ => out.push(new(DetailType::Unhandled, person, unhandled(event, None))),
    }
    if let Some(linked) = &learnt.linked {
        let mut who = event.sender.as_ref().map(PersonIds::of).unwrap_or_default();
        who = who.with_person(learnt.person.as_ref());
        who.set(linked);
        out.push(BusEvent::new(
            DetailType::PersonLinked,
            &event.key,
            event.timestamp_ms,
            channel_of(&event.object),
            &event.account_id,
            who,
            json!({"identifier_kind": linked.kind.as_str(), "identifier": linked.id}),
        ));
    }
    out
}

fn entry_point_name(e: crate::webhook::model::OptinEntryPoint) -> &'static str {
    use crate::webhook::model::OptinEntryPoint as E;
    match e {
        E::LoginConnect => "login_connect",
        E::Checkbox => "checkbox",
        E::SendToMessenger => "send_to_messenger",
        E::NotificationMessages => "notification_messages",
        E::Other => "other",
    }
}

/// A message, normalized: what a bot or an inbox needs to act on it.
fn message(m: &Message, standby: bool) -> Value {
    let mut v = Map::new();
    v.insert("mid".into(), json!(m.mid));
    v.insert("text".into(), json!(m.text));
    v.insert(
        "attachments".into(),
        Value::Array(m.attachments.iter().map(attachment).collect()),
    );
    if let Some(q) = &m.quick_reply {
        v.insert("quick_reply_payload".into(), json!(q.payload));
    }
    if let Some(r) = &m.reply_to {
        v.insert("reply_to_mid".into(), json!(r.mid));
    }
    if let Some(r) = &m.referral {
        v.insert("referral".into(), referral(r));
    }
    if let Some(s) = &m.sticker_id {
        v.insert("sticker_id".into(), json!(s.as_str()));
    }
    if m.is_deleted == Some(true) {
        v.insert("is_deleted".into(), json!(true));
    }
    if m.is_unsupported == Some(true) {
        v.insert("is_unsupported".into(), json!(true));
    }
    // Another app owns the thread (Conversation Routing): the business may watch, not answer.
    v.insert("standby".into(), json!(standby));
    Value::Object(v)
}

fn attachment(a: &Attachment) -> Value {
    json!({"type": a.kind, "url": a.url, "title": a.title, "payload": a.payload})
}

fn postback(p: &Postback, standby: bool) -> Value {
    let mut v = json!({"mid": p.mid, "title": p.title, "payload": p.payload, "standby": standby});
    if let Some(r) = &p.referral {
        v["referral"] = referral(r);
    }
    v
}

fn referral(r: &Referral) -> Value {
    json!({
        "ref": r.reference,
        "source": r.source,
        "type": r.kind,
        "ad_id": r.ad_id.as_ref().map(|a| a.as_str().to_string()),
        "referer_uri": r.referer_uri,
    })
}

/// An event we do not model (or could not act on): its kind and the raw item, whole.
fn unhandled(event: &InboundEvent, reason: Option<&str>) -> Value {
    let raw: Value = serde_json::from_str(event.item.get()).unwrap_or(Value::Null);
    let mut v =
        json!({"kind": event.kind.as_str(), "channel": channel_name(event.channel), "item": raw});
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    if let Some(q) = &event.quarantine {
        v["quarantine"] = json!({"body_sha256": q.body_sha256, "part": q.part, "parts": q.parts});
    }
    v
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Messaging => "messaging",
        Channel::Standby => "standby",
        Channel::Changes => "changes",
        Channel::Login => "login",
        Channel::Quarantine => "quarantine",
    }
}
