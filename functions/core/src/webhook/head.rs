//! The webhook's hot path reads a body without building the model: the envelope with its items
//! borrowed from the body, and of each messaging item only its head (kind, message id, subject
//! and time: what the idempotency key and the routing need).
//!
//! Why a second reader: the typed parse ([`Envelope`](super::model::Envelope),
//! [`MessagingItem`]) copies every item out of the body and allocates a `String` for every
//! text, payload and id in it, only for the webhook to drop them; about a fifth of the path's
//! time was malloc and free. The structs here mirror the model's field for field (names,
//! aliases, order, defaults) with types that check a value exactly as the model's type would
//! accept it and keep nothing, or borrow the few strings the head needs. So an item (or a body)
//! reads here only when the model accepts it, with the same head; anything this refuses goes to
//! the model, which decides (malformed, quarantined) as before. Tests hold the mirror to that:
//! the same field lists as the model's structs (adding a field there fails
//! `mirror_has_the_models_fields` until it is added here), and every field of full items probed
//! with values of every JSON type (`intake::tests`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::inbound::{EventKind, IdentityKind};
use super::model::{ensure_object, id_f64_ok, identity_kind_for, millis, null_as_empty, EventKeys};

// ---------------------------------------------------------------------------------------------
// Values: borrowed, or checked and dropped
// ---------------------------------------------------------------------------------------------

/// A JSON string as `String` accepts it, borrowed from the body unless it had escapes.
#[derive(Debug, Default)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        // What `String` asks for (serde_json reads `deserialize_string` the same way).
        d.deserialize_str(V(PhantomData))
    }
}

impl Str<'_> {
    fn non_empty(s: &Option<Self>) -> Option<&str> {
        s.as_ref().map(|s| s.0.as_ref()).filter(|s| !s.is_empty())
    }
}

/// A JSON string as `String` accepts it (escapes and surrogates checked), kept nowhere.
#[derive(Debug, Default)]
struct AnyStr;

impl<'de> Deserialize<'de> for AnyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyStr, E> {
                Ok(AnyStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// A Meta id as [`super::model::Id`] accepts it (string or integer, or a float that is an exact
/// integer), borrowed when it is a string without escapes.
#[derive(Debug)]
pub(crate) struct IdRef<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for IdRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = IdRef<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id (string or integer)")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Owned(v.to_string())))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<IdRef<'a>, E> {
                Ok(IdRef(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdRef<'a>, E> {
                if id_f64_ok(v) {
                    Ok(IdRef(Cow::Owned(format!("{v:.0}"))))
                } else {
                    Err(E::custom("an id must be a string or an integer"))
                }
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl IdRef<'_> {
    fn non_empty(id: &Option<Self>) -> Option<&str> {
        id.as_ref().map(|s| s.0.as_ref()).filter(|s| !s.is_empty())
    }
}

/// An id as [`super::model::Id`] accepts it, kept nowhere (echoes' numeric `app_id` costs no
/// allocation).
#[derive(Debug)]
struct AnyId;

impl<'de> Deserialize<'de> for AnyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id (string or integer)")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyId, E> {
                Ok(AnyId)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyId, E> {
                Ok(AnyId)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyId, E> {
                Ok(AnyId)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<AnyId, E> {
                Ok(AnyId)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyId, E> {
                if id_f64_ok(v) {
                    Ok(AnyId)
                } else {
                    Err(E::custom("an id must be a string or an integer"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value as `serde_json::Value` accepts it (numbers in range, strings with valid
/// escapes, the same nesting limit), kept nowhere. Serde's `IgnoredAny` would not do: it skips
/// numbers and strings without the checks `Value` makes, so it takes values the model refuses.
#[derive(Debug, Default)]
struct AnyValue;

/// A map key `Value` reads as a raw value in disguise (serde_json's `raw_value` feature); then
/// `Value` wants a string of JSON after it. Refused here, so the model decides such an item.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any valid JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<AnyValue, D2::Error> {
                AnyValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
                while seq.next_element::<AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                let mut first = true;
                while let Some(key) = map.next_key::<Str<'_>>()? {
                    if first && key.0 == RAW_VALUE_TOKEN {
                        return Err(de::Error::custom("a raw value token as a map key"));
                    }
                    first = false;
                    map.next_value::<AnyValue>()?;
                }
                Ok(AnyValue)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON array whose elements each read as `T`, as `Vec<T>` accepts it, kept nowhere.
#[derive(Debug)]
struct SeqOf<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SeqOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = SeqOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeqOf<T>, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(SeqOf(PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope, items borrowed
// ---------------------------------------------------------------------------------------------

/// [`super::model::Envelope`], borrowed from the body.
#[derive(Debug, Deserialize)]
pub(crate) struct EnvelopeRef<'a> {
    #[serde(borrow)]
    pub object: Str<'a>,
    #[serde(borrow)]
    pub entry: Vec<EntryRef<'a>>,
}

/// [`super::model::Entry`], its items borrowed from the body.
#[derive(Debug, Deserialize)]
pub(crate) struct EntryRef<'a> {
    #[serde(borrow)]
    pub id: IdRef<'a>,
    #[serde(default, deserialize_with = "millis::opt")]
    pub time: Option<i64>,
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub messaging: Vec<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub standby: Vec<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub changes: Vec<&'a RawValue>,
}

impl EnvelopeRef<'_> {
    /// The body's envelope when the model's would parse (same checks as
    /// `normalize::parse_envelope`); `None` otherwise (that body takes the general path).
    pub(crate) fn parse(body: &[u8]) -> Option<EnvelopeRef<'_>> {
        let text = std::str::from_utf8(body).ok()?;
        // Derived structs also accept a JSON array (fields by position): require an object.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// How many events the envelope makes.
    pub(crate) fn item_count(&self) -> usize {
        self.entry
            .iter()
            .map(|e| e.messaging.len() + e.standby.len() + e.changes.len())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The messaging item's head
// ---------------------------------------------------------------------------------------------

/// [`MessagingItem`], keeping only what its head needs. Fields in the model's order.
///
/// [`MessagingItem`]: super::model::MessagingItem
// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ItemHead<'a> {
    #[serde(default, borrow)]
    sender: Option<PartyHead<'a>>,
    #[serde(default, borrow)]
    recipient: Option<PartyHead<'a>>,
    #[serde(default, deserialize_with = "millis::opt")]
    pub timestamp: Option<i64>,
    #[serde(default, borrow)]
    message: Option<MessageHead<'a>>,
    #[serde(default, borrow)]
    postback: Option<PostbackHead<'a>>,
    #[serde(default, borrow)]
    optin: Option<OptinHead<'a>>,
    #[serde(default)]
    referral: Option<ReferralCheck>,
    #[serde(default)]
    delivery: Option<DeliveryCheck>,
    #[serde(default)]
    read: Option<ReadCheck>,
    #[serde(default, alias = "policy-enforcement")]
    policy_enforcement: Option<PolicyEnforcementCheck>,
    #[serde(default)]
    pass_thread_control: Option<ThreadControlCheck>,
    #[serde(default)]
    take_thread_control: Option<ThreadControlCheck>,
    #[serde(default)]
    request_thread_control: Option<RequestThreadControlCheck>,
    #[serde(default)]
    app_roles: Option<AnyValue>,
    #[serde(default)]
    account_linking: Option<AccountLinkingCheck>,
    #[serde(default)]
    response_feedback: Option<ResponseFeedbackCheck>,
    #[serde(default)]
    reaction: Option<ReactionCheck>,
    /// The model reads it as any JSON value (`PriorMessage::from_value`).
    #[serde(default)]
    prior_message: Option<AnyValue>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct PartyHead<'a> {
    #[serde(default, borrow)]
    id: Option<IdRef<'a>>,
    #[serde(default, borrow)]
    user_ref: Option<Str<'a>>,
}

impl PartyHead<'_> {
    /// `Party::identity_ref`.
    fn identity_ref(&self, object: &str) -> Option<(IdentityKind, &str)> {
        if let Some(id) = IdRef::non_empty(&self.id) {
            return Some((identity_kind_for(object), id));
        }
        Str::non_empty(&self.user_ref).map(|r| (IdentityKind::UserRef, r))
    }
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct MessageHead<'a> {
    #[serde(default, borrow)]
    mid: Option<Str<'a>>,
    #[serde(default)]
    text: Option<AnyStr>,
    #[serde(default)]
    quick_reply: Option<QuickReplyCheck>,
    #[serde(default)]
    reply_to: Option<ReplyToCheck>,
    /// The model's `null_as_empty` list.
    #[serde(default)]
    attachments: Option<SeqOf<AttachmentCheck>>,
    #[serde(default)]
    is_echo: bool,
    #[serde(default)]
    app_id: Option<AnyId>,
    #[serde(default)]
    metadata: Option<AnyStr>,
    #[serde(default)]
    sticker_id: Option<AnyId>,
    #[serde(default)]
    referral: Option<ReferralCheck>,
    /// The model's `lenient_bool`: any JSON value.
    #[serde(default)]
    is_deleted: AnyValue,
    #[serde(default)]
    is_unsupported: AnyValue,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct QuickReplyCheck {
    #[serde(default)]
    payload: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ReplyToCheck {
    #[serde(default)]
    mid: Option<AnyStr>,
    #[serde(default)]
    is_self_reply: AnyValue,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct AttachmentCheck {
    #[serde(default, rename = "type")]
    kind: Option<AnyStr>,
    #[serde(default)]
    payload: AnyValue,
    #[serde(default)]
    title: Option<AnyStr>,
    #[serde(default)]
    url: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct PostbackHead<'a> {
    #[serde(default, borrow)]
    mid: Option<Str<'a>>,
    #[serde(default)]
    title: Option<AnyStr>,
    #[serde(default)]
    payload: Option<AnyStr>,
    #[serde(default)]
    referral: Option<ReferralCheck>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ReferralCheck {
    #[serde(default, rename = "ref")]
    reference: Option<AnyStr>,
    #[serde(default)]
    source: Option<AnyStr>,
    #[serde(default, rename = "type")]
    kind: Option<AnyStr>,
    #[serde(default)]
    ad_id: Option<AnyId>,
    #[serde(default)]
    referer_uri: Option<AnyStr>,
    #[serde(default)]
    is_guest_user: AnyValue,
    #[serde(default)]
    ads_context_data: Option<AnyValue>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct OptinHead<'a> {
    #[serde(default, rename = "type")]
    kind: Option<AnyStr>,
    #[serde(default)]
    payload: Option<AnyStr>,
    #[serde(default, rename = "ref")]
    reference: Option<AnyStr>,
    #[serde(default, borrow)]
    user_ref: Option<Str<'a>>,
    #[serde(default, borrow)]
    login_id: Option<Str<'a>>,
    #[serde(default)]
    title: Option<AnyStr>,
    #[serde(default)]
    notification_messages_token: Option<AnyStr>,
    #[serde(default)]
    notification_messages_frequency: Option<AnyStr>,
    #[serde(default)]
    notification_messages_timezone: Option<AnyStr>,
    /// The model's `millis::lenient`: any JSON value.
    #[serde(default)]
    token_expiry_timestamp: AnyValue,
    #[serde(default)]
    user_token_status: Option<AnyStr>,
    #[serde(default)]
    notification_messages_status: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct DeliveryCheck {
    #[serde(default)]
    mids: Option<SeqOf<AnyStr>>,
    #[serde(default, deserialize_with = "millis::opt")]
    watermark: Option<i64>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ReadCheck {
    #[serde(default, deserialize_with = "millis::opt")]
    watermark: Option<i64>,
    #[serde(default)]
    mid: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct PolicyEnforcementCheck {
    #[serde(default)]
    action: Option<AnyStr>,
    #[serde(default)]
    reason: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ThreadControlCheck {
    #[serde(default)]
    previous_owner_app_id: Option<AnyId>,
    #[serde(default)]
    new_owner_app_id: Option<AnyId>,
    #[serde(default)]
    metadata: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct RequestThreadControlCheck {
    #[serde(default)]
    requested_owner_app_id: Option<AnyId>,
    #[serde(default)]
    metadata: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct AccountLinkingCheck {
    #[serde(default)]
    status: Option<AnyStr>,
    #[serde(default)]
    authorization_code: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ResponseFeedbackCheck {
    #[serde(default)]
    feedback: Option<AnyStr>,
    #[serde(default)]
    mid: Option<AnyStr>,
}

// Fields read only to be checked as the model checks them.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
struct ReactionCheck {
    #[serde(default)]
    reaction: Option<AnyStr>,
    #[serde(default)]
    emoji: Option<AnyStr>,
    #[serde(default)]
    action: Option<AnyStr>,
    #[serde(default)]
    mid: Option<AnyStr>,
}

impl<'a> ItemHead<'a> {
    /// The head of one raw item, when `MessagingItem::parse` would accept it.
    pub(crate) fn parse(raw: &'a RawValue) -> Result<ItemHead<'a>, serde_json::Error> {
        ensure_object(raw, "a messaging item must be a JSON object")?;
        serde_json::from_str(raw.get())
    }

    /// `MessagingItem::kind`, from the same keys.
    pub(crate) fn kind(&self) -> EventKind {
        EventKeys {
            message_echo: self.message.as_ref().map(|m| m.is_echo),
            postback: self.postback.is_some(),
            reaction: self.reaction.is_some(),
            optin: self.optin.is_some(),
            referral: self.referral.is_some(),
            delivery: self.delivery.is_some(),
            read: self.read.is_some(),
            policy_enforcement: self.policy_enforcement.is_some(),
            handover: self.pass_thread_control.is_some()
                || self.take_thread_control.is_some()
                || self.request_thread_control.is_some()
                || self.app_roles.is_some(),
            account_linking: self.account_linking.is_some(),
            response_feedback: self.response_feedback.is_some(),
        }
        .kind()
    }

    /// `MessagingItem::mid`, for an item of kind `kind`.
    pub(crate) fn mid(&self, kind: EventKind) -> Option<&str> {
        match kind {
            EventKind::Message | EventKind::Echo => Str::non_empty(&self.message.as_ref()?.mid),
            EventKind::Postback => Str::non_empty(&self.postback.as_ref()?.mid),
            _ => None,
        }
    }

    /// `MessagingItem::subject_ref`, for an item of kind `kind`.
    pub(crate) fn subject_ref(
        &self,
        kind: EventKind,
        object: &str,
    ) -> Option<(IdentityKind, &str)> {
        if let Some(login_id) = self
            .optin
            .as_ref()
            .and_then(|o| Str::non_empty(&o.login_id))
        {
            return Some((IdentityKind::LoginId, login_id));
        }
        if kind == EventKind::Echo {
            return self.recipient.as_ref().and_then(|r| r.identity_ref(object));
        }
        if let Some(who) = self.sender.as_ref().and_then(|s| s.identity_ref(object)) {
            return Some(who);
        }
        self.optin
            .as_ref()
            .and_then(|o| Str::non_empty(&o.user_ref))
            .map(|r| (IdentityKind::UserRef, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::model;

    /// The field names a derived `Deserialize` passes to `deserialize_struct`.
    struct Fields(&'static [&'static str]);

    #[derive(Debug)]
    struct Stop;

    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stop")
        }
    }

    impl std::error::Error for Stop {}

    impl de::Error for Stop {
        fn custom<T: fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    struct Recorder<'r>(&'r mut Option<Fields>);

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(Fields(fields));
            Err(Stop)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        let mut got = None;
        let _ = T::deserialize(Recorder(&mut got));
        match got {
            Some(Fields(f)) => f,
            None => panic!("{} is not a struct", std::any::type_name::<T>()),
        }
    }

    #[test]
    fn mirror_has_the_models_fields() {
        let pairs: &[(&str, &[&str], &[&str])] = &[
            (
                "Envelope",
                fields::<model::Envelope>(),
                fields::<EnvelopeRef<'_>>(),
            ),
            ("Entry", fields::<model::Entry>(), fields::<EntryRef<'_>>()),
            (
                "MessagingItem",
                fields::<model::MessagingItem>(),
                fields::<ItemHead<'_>>(),
            ),
            ("Party", fields::<model::Party>(), fields::<PartyHead<'_>>()),
            (
                "Message",
                fields::<model::Message>(),
                fields::<MessageHead<'_>>(),
            ),
            (
                "QuickReply",
                fields::<model::QuickReply>(),
                fields::<QuickReplyCheck>(),
            ),
            (
                "ReplyTo",
                fields::<model::ReplyTo>(),
                fields::<ReplyToCheck>(),
            ),
            (
                "Attachment",
                fields::<model::Attachment>(),
                fields::<AttachmentCheck>(),
            ),
            (
                "Postback",
                fields::<model::Postback>(),
                fields::<PostbackHead<'_>>(),
            ),
            (
                "Referral",
                fields::<model::Referral>(),
                fields::<ReferralCheck>(),
            ),
            ("Optin", fields::<model::Optin>(), fields::<OptinHead<'_>>()),
            (
                "Delivery",
                fields::<model::Delivery>(),
                fields::<DeliveryCheck>(),
            ),
            ("Read", fields::<model::Read>(), fields::<ReadCheck>()),
            (
                "PolicyEnforcement",
                fields::<model::PolicyEnforcement>(),
                fields::<PolicyEnforcementCheck>(),
            ),
            (
                "ThreadControl",
                fields::<model::ThreadControl>(),
                fields::<ThreadControlCheck>(),
            ),
            (
                "RequestThreadControl",
                fields::<model::RequestThreadControl>(),
                fields::<RequestThreadControlCheck>(),
            ),
            (
                "AccountLinking",
                fields::<model::AccountLinking>(),
                fields::<AccountLinkingCheck>(),
            ),
            (
                "ResponseFeedback",
                fields::<model::ResponseFeedback>(),
                fields::<ResponseFeedbackCheck>(),
            ),
            (
                "Reaction",
                fields::<model::Reaction>(),
                fields::<ReactionCheck>(),
            ),
        ];
        for (name, model, mirror) in pairs {
            assert!(!model.is_empty(), "{name}");
            assert_eq!(model, mirror, "{name}: the mirror's fields differ");
        }
        // `PriorMessage` reads any value (the mirror's `AnyValue`); if it becomes a struct, the
        // mirror needs one too.
        let mut got = None;
        let _ = model::PriorMessage::deserialize(Recorder(&mut got));
        assert!(got.is_none(), "PriorMessage is a struct now: mirror it");
    }

    #[test]
    fn borrows_what_it_can() {
        let raw: &RawValue = serde_json::from_str(
            r#"{"sender":{"id":"7"},"recipient":{"id":1},"message":{"mid":"m_\u0031","app_id":5}}"#,
        )
        .unwrap();
        let head = ItemHead::parse(raw).unwrap();
        let sender = head.sender.as_ref().unwrap().id.as_ref().unwrap();
        assert!(matches!(sender.0, Cow::Borrowed("7")));
        let mid = head.message.as_ref().unwrap().mid.as_ref().unwrap();
        assert!(matches!(&mid.0, Cow::Owned(m) if m == "m_1"));
        assert_eq!(head.mid(head.kind()), Some("m_1"));
        let recipient = head.recipient.as_ref().unwrap().id.as_ref().unwrap();
        assert_eq!(recipient.0, "1");
    }

    #[test]
    fn any_value_takes_what_value_takes() {
        for text in [
            "null",
            "true",
            "-0",
            "1e308",
            "1e400",
            "18446744073709551616",
            r#""\ud800""#,
            r#""\ud83d\ude4f""#,
            r#"{"a":1,"a":[1,{"b":null}]}"#,
            r#"{"$serde_json::private::RawValue":"1"}"#,
            r#"{"x":1,"$serde_json::private::RawValue":5}"#,
            "[1,2,]",
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
            &format!("{}{}", "[".repeat(100), "]".repeat(100)),
        ] {
            let value = serde_json::from_str::<serde_json::Value>(text).is_ok();
            let any = serde_json::from_str::<AnyValue>(text).is_ok();
            // The raw value token: refused here (stricter is safe: the model then decides).
            if text.starts_with(r#"{"$serde"#) {
                assert!(!any, "{text}");
            } else {
                assert_eq!(any, value, "{text}");
            }
        }
    }
}
