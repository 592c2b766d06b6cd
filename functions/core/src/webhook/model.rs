//! Typed Meta webhook payloads (Messenger and Instagram messaging).
//!
//! The envelope keeps every item as raw JSON so that one odd item never fails the whole body and
//! so the item's bytes travel to the queue verbatim; each item is then parsed on its own with
//! [`MessagingItem::parse`] or [`ChangeItem::parse`].
//!
//! Parsing is lenient by design: unknown fields are ignored everywhere, every event field is
//! optional, ids are accepted as strings or numbers ([`Id`]) and timestamps as numbers or numeric
//! strings, in epoch seconds or milliseconds (always held as milliseconds). Only a known event
//! key holding a value of the wrong shape (e.g. `"message": 5`) fails an item, which the
//! normalizer then flags as malformed.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::inbound::{EventKind, Identity, IdentityKind};

/// The `object` value of Instagram webhooks (everything else is treated like a Page).
pub const OBJECT_INSTAGRAM: &str = "instagram";
/// The `object` value of Messenger (Page) webhooks.
pub const OBJECT_PAGE: &str = "page";

// ---------------------------------------------------------------------------------------------
// Id
// ---------------------------------------------------------------------------------------------

/// A Meta id (page, PSID, IGSID, app, ad, sticker...).
///
/// Ids are documented as strings, but echo `app_id` is numeric and old payloads carried numeric
/// ids, so this accepts a JSON string or an integer and always holds the decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl Id {
    pub fn new(id: impl Into<String>) -> Self {
        Id(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// `true` for `""`, which some payloads send instead of omitting the field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(s)
    }
}

/// Largest integer an `f64` holds exactly; beyond it a float id would be silently rounded.
const F64_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// `1e15` style numbers: an id only when an exact integer, never a rounded one. (Shared with
/// the webhook's item heads, which must accept exactly the ids this does.)
pub(crate) fn id_f64_ok(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0 && v.abs() <= F64_EXACT_INT
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id (string or integer)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
        Ok(Id(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
        Ok(Id(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
        Ok(Id(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
        Ok(Id(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Id, E> {
        Ok(Id(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
        if id_f64_ok(v) {
            Ok(Id(format!("{v:.0}")))
        } else {
            Err(E::custom("an id must be a string or an integer"))
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Small lenient deserializers
// ---------------------------------------------------------------------------------------------

/// Epoch fields, held as milliseconds. Meta sends milliseconds on most payloads but seconds on
/// some (the postbacks reference shows `"timestamp":"1527459824"`), as numbers or as strings, so
/// a value below [`SECONDS_CUTOFF`] is read as seconds. Zero or negative is no time at all (it
/// would date the event 1970): `None`, so the caller's fallback applies.
pub(crate) mod millis {
    use super::*;

    /// An integer epoch value as sent -> epoch milliseconds.
    pub(super) fn from_i64(v: i64) -> Option<i64> {
        match v {
            ..=0 => None,
            1..SECONDS_CUTOFF => Some(v * 1000),
            _ => Some(v),
        }
    }

    struct MillisVisitor;

    impl Visitor<'_> for MillisVisitor {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("epoch milliseconds as an integer or a numeric string")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(from_i64(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<i64>, E> {
            i64::try_from(v)
                .map(from_i64)
                .map_err(|_| E::custom("timestamp out of range"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<i64>, E> {
            from_f64(v).ok_or_else(|| E::custom("timestamp is not an integer"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<i64>, E> {
            from_str(v).ok_or_else(|| E::custom("timestamp string is not numeric"))
        }
    }

    /// `Some(None)` for zero or negative; `None` when the value cannot be a timestamp at all.
    /// Seconds may carry a fraction (`1527459824.5`); milliseconds must be whole.
    pub(super) fn from_f64(v: f64) -> Option<Option<i64>> {
        if !v.is_finite() {
            return None;
        }
        if v <= 0.0 {
            return Some(None);
        }
        if v < SECONDS_CUTOFF as f64 {
            return Some(Some((v * 1000.0).round() as i64));
        }
        (v.fract() == 0.0 && v <= F64_EXACT_INT).then_some(Some(v as i64))
    }

    pub(super) fn from_str(v: &str) -> Option<Option<i64>> {
        let v = v.trim();
        match v.parse::<i64>() {
            Ok(i) => Some(from_i64(i)),
            Err(_) => v.parse::<f64>().ok().and_then(from_f64),
        }
    }

    pub(super) fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => from_i64(i),
                (None, Some(u)) => i64::try_from(u).ok().and_then(from_i64),
                _ => n.as_f64().and_then(from_f64).flatten(),
            },
            Value::String(s) => from_str(s).flatten(),
            _ => None,
        }
    }

    /// Strict: a value that is present but not a timestamp fails the item.
    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_any(MillisVisitor)
    }

    /// Lenient: anything unreadable is `None`. For fields whose type Meta documents loosely.
    pub fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(from_value(&Value::deserialize(d)?))
    }
}

/// `null` (or absent, with `#[serde(default)]`) is an empty list.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A flag that never fails the item: `true`/`false`, `"true"`/`"false"`, `1`/`0`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Some(false),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    })
}

/// A string or integer field read out of a generic value (`{"id": 123}` or `{"id": "123"}`).
pub(crate) fn value_id(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Derived structs also accept a JSON array (fields by position); items must be objects.
pub(crate) fn ensure_object(raw: &RawValue, msg: &'static str) -> Result<(), serde_json::Error> {
    if raw.get().trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(de::Error::custom(msg))
    }
}

pub(crate) fn identity_kind_for(object: &str) -> IdentityKind {
    if object == OBJECT_INSTAGRAM {
        IdentityKind::Igsid
    } else {
        IdentityKind::Psid
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

/// The webhook body: `{"object": "page", "entry": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// `page`, `instagram`, or anything else Meta sends (kept as-is).
    pub object: String,
    /// Batched entries, possibly for several pages.
    pub entry: Vec<Entry>,
}

impl Envelope {
    pub fn is_instagram(&self) -> bool {
        self.object == OBJECT_INSTAGRAM
    }
}

/// One `entry[]`: the events of one page (or Instagram account).
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// Page id, or Instagram professional account id.
    pub id: Id,
    /// Epoch milliseconds (Graph feed webhooks send seconds; those are scaled on reading).
    #[serde(default, deserialize_with = "millis::opt")]
    pub time: Option<i64>,
    /// Raw items: parsed one by one so one bad item never fails the body, and kept verbatim.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub messaging: Vec<Box<RawValue>>,
    /// Items of threads another app owns (handover protocol).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub standby: Vec<Box<RawValue>>,
    /// Field changes (`{"field": ..., "value": ...}`), e.g. feed or Instagram comments.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub changes: Vec<Box<RawValue>>,
}

/// Below this an epoch value must be seconds: as milliseconds it would be before March 1973,
/// and as seconds it reaches the year 5138.
const SECONDS_CUTOFF: i64 = 100_000_000_000;

impl Entry {
    /// `time` in epoch milliseconds.
    pub fn time_ms(&self) -> Option<i64> {
        self.time
    }
}

// ---------------------------------------------------------------------------------------------
// Messaging item
// ---------------------------------------------------------------------------------------------

/// `sender` / `recipient`: a page-, Instagram- or plugin-scoped party.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Party {
    /// PSID, IGSID, or the page / Instagram account id.
    #[serde(default)]
    pub id: Option<Id>,
    /// Chat plugin and checkbox plugin users have no PSID yet, only a `user_ref`.
    #[serde(default)]
    pub user_ref: Option<String>,
}

impl Party {
    /// The id, if present and non-empty.
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(Id::as_str).filter(|s| !s.is_empty())
    }

    /// The `user_ref`, if present and non-empty.
    pub fn user_ref(&self) -> Option<&str> {
        non_empty(&self.user_ref)
    }

    /// Who this party is, as an identity. Ids are PSIDs on pages and IGSIDs on Instagram.
    pub fn identity(&self, object: &str) -> Option<Identity> {
        self.identity_ref(object)
            .map(|(kind, id)| Identity::new(kind, id))
    }

    /// [`Party::identity`], borrowed.
    pub fn identity_ref(&self, object: &str) -> Option<(IdentityKind, &str)> {
        if let Some(id) = self.id() {
            return Some((identity_kind_for(object), id));
        }
        self.user_ref().map(|r| (IdentityKind::UserRef, r))
    }
}

/// One `messaging[]` or `standby[]` item. Exactly one event key is normally set; which one
/// decides [`MessagingItem::kind`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct MessagingItem {
    #[serde(default)]
    pub sender: Option<Party>,
    #[serde(default)]
    pub recipient: Option<Party>,
    /// Epoch milliseconds (sent as seconds or milliseconds, number or string).
    #[serde(default, deserialize_with = "millis::opt")]
    pub timestamp: Option<i64>,

    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub postback: Option<Postback>,
    #[serde(default)]
    pub optin: Option<Optin>,
    #[serde(default)]
    pub referral: Option<Referral>,
    #[serde(default)]
    pub delivery: Option<Delivery>,
    #[serde(default)]
    pub read: Option<Read>,
    /// Very old payloads used the key `policy-enforcement`.
    #[serde(default, alias = "policy-enforcement")]
    pub policy_enforcement: Option<PolicyEnforcement>,
    #[serde(default)]
    pub pass_thread_control: Option<ThreadControl>,
    #[serde(default)]
    pub take_thread_control: Option<ThreadControl>,
    #[serde(default)]
    pub request_thread_control: Option<RequestThreadControl>,
    /// `{"<app_id>": ["primary_receiver" | "secondary_receiver"]}`; kept generic.
    #[serde(default)]
    pub app_roles: Option<Value>,
    #[serde(default)]
    pub account_linking: Option<AccountLinking>,
    #[serde(default)]
    pub response_feedback: Option<ResponseFeedback>,
    #[serde(default)]
    pub reaction: Option<Reaction>,
    /// Not an event key: appended to a reply that follows a plugin or Login Connect opt-in.
    #[serde(default)]
    pub prior_message: Option<PriorMessage>,
}

/// Which event keys an item carries. The model and the webhook's head reader
/// (`webhook::head`) each say which keys they found and decide the kind here, so the order in
/// which one key wins over another is written once.
pub(crate) struct EventKeys {
    /// `message`: `Some(is_echo)`.
    pub(crate) message_echo: Option<bool>,
    pub(crate) postback: bool,
    pub(crate) reaction: bool,
    pub(crate) optin: bool,
    pub(crate) referral: bool,
    pub(crate) delivery: bool,
    pub(crate) read: bool,
    pub(crate) policy_enforcement: bool,
    /// Any of the four thread-control keys.
    pub(crate) handover: bool,
    pub(crate) account_linking: bool,
    pub(crate) response_feedback: bool,
}

impl EventKeys {
    pub(crate) fn kind(&self) -> EventKind {
        let wins = [
            (self.postback, EventKind::Postback),
            (self.reaction, EventKind::Reaction),
            (self.optin, EventKind::Optin),
            (self.referral, EventKind::Referral),
            (self.delivery, EventKind::Delivery),
            (self.read, EventKind::Read),
            (self.policy_enforcement, EventKind::PolicyEnforcement),
            (self.handover, EventKind::Handover),
            (self.account_linking, EventKind::AccountLinking),
            (self.response_feedback, EventKind::ResponseFeedback),
        ];
        match self.message_echo {
            Some(true) => EventKind::Echo,
            Some(false) => EventKind::Message,
            None => wins
                .iter()
                .find(|(present, _)| *present)
                .map_or(EventKind::Unknown, |(_, kind)| *kind),
        }
    }
}

impl MessagingItem {
    /// Parses one raw item. Fails when the item is not a JSON object or a known key has a value
    /// of the wrong shape.
    pub fn parse(raw: &RawValue) -> Result<MessagingItem, serde_json::Error> {
        ensure_object(raw, "a messaging item must be a JSON object")?;
        serde_json::from_str(raw.get())
    }

    /// What the item is, decided by its event key (echo = message with `is_echo`).
    pub fn kind(&self) -> EventKind {
        EventKeys {
            message_echo: self.message.as_ref().map(|m| m.is_echo),
            postback: self.postback.is_some(),
            reaction: self.reaction.is_some(),
            optin: self.optin.is_some(),
            referral: self.referral.is_some(),
            delivery: self.delivery.is_some(),
            read: self.read.is_some(),
            policy_enforcement: self.policy_enforcement.is_some(),
            handover: self.is_handover(),
            account_linking: self.account_linking.is_some(),
            response_feedback: self.response_feedback.is_some(),
        }
        .kind()
    }

    /// Any of the four thread-control keys.
    pub fn is_handover(&self) -> bool {
        self.pass_thread_control.is_some()
            || self.take_thread_control.is_some()
            || self.request_thread_control.is_some()
            || self.app_roles.is_some()
    }

    /// The message id used for deduplication: `message.mid` for messages and echoes,
    /// `postback.mid` for postbacks, nothing else (a reaction's mid names another message).
    pub fn mid(&self) -> Option<&str> {
        let mid = match self.kind() {
            EventKind::Message | EventKind::Echo => self.message.as_ref()?.mid.as_ref(),
            EventKind::Postback => self.postback.as_ref()?.mid.as_ref(),
            _ => None,
        };
        mid.map(String::as_str).filter(|m| !m.is_empty())
    }

    /// The person the event is about (`object` is the envelope's, to tell PSIDs from IGSIDs).
    ///
    /// In order: an opt-in `login_id` (Login Connect); for echoes the recipient (the sender is
    /// the page); the sender's id, else its `user_ref`; with no usable sender, an opt-in
    /// `user_ref` (checkbox plugin); otherwise nobody (policy enforcement, app roles...).
    pub fn subject(&self, object: &str) -> Option<Identity> {
        self.subject_ref(object)
            .map(|(kind, id)| Identity::new(kind, id))
    }

    /// [`MessagingItem::subject`], borrowed.
    pub fn subject_ref(&self, object: &str) -> Option<(IdentityKind, &str)> {
        if let Some(login_id) = self.optin.as_ref().and_then(Optin::login_id) {
            return Some((IdentityKind::LoginId, login_id));
        }
        if self.kind() == EventKind::Echo {
            return self.recipient.as_ref().and_then(|r| r.identity_ref(object));
        }
        if let Some(who) = self.sender.as_ref().and_then(|s| s.identity_ref(object)) {
            return Some(who);
        }
        self.optin
            .as_ref()
            .and_then(|o| non_empty(&o.user_ref))
            .map(|r| (IdentityKind::UserRef, r))
    }

    /// The page (or Instagram account) side of the conversation.
    pub fn page_id(&self) -> Option<&str> {
        let page = if self.kind() == EventKind::Echo {
            self.sender.as_ref()
        } else {
            self.recipient.as_ref()
        };
        page.and_then(Party::id)
    }
}

/// `message` (also echoes, with `is_echo`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub quick_reply: Option<QuickReply>,
    #[serde(default)]
    pub reply_to: Option<ReplyTo>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub attachments: Vec<Attachment>,
    /// Set on echoes of messages the page sent.
    #[serde(default)]
    pub is_echo: bool,
    /// Echoes: the app that sent the message (numeric in payloads). Skip our own.
    #[serde(default)]
    pub app_id: Option<Id>,
    /// Echoes: the `metadata` string given at send time.
    #[serde(default)]
    pub metadata: Option<String>,
    /// Sticker messages (also inside the sticker attachment's payload).
    #[serde(default)]
    pub sticker_id: Option<Id>,
    /// Ad or product referral carried on a message (e.g. Instagram ads).
    #[serde(default)]
    pub referral: Option<Referral>,
    /// Instagram: the user unsent the message.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_deleted: Option<bool>,
    /// Instagram: a message type the API does not expose.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_unsupported: Option<bool>,
}

impl Message {
    /// The quick reply's payload, if the user tapped one.
    pub fn quick_reply_payload(&self) -> Option<&str> {
        self.quick_reply.as_ref()?.payload.as_deref()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct QuickReply {
    #[serde(default)]
    pub payload: Option<String>,
}

/// The message this one replies to.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReplyTo {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_self_reply: Option<bool>,
}

/// One attachment. The payload differs per type, so it stays generic.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Attachment {
    /// `image`, `video`, `audio`, `file`, `sticker`, `fallback`, `reel`, `share`...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub payload: Value,
    /// Fallback attachments (shared links) carry these at the top level.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

impl Attachment {
    /// `true` when the attachment type equals `kind` (e.g. `"image"`).
    pub fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }

    /// `payload.url`, else the top-level `url` of fallback attachments.
    pub fn url(&self) -> Option<&str> {
        self.payload
            .get("url")
            .and_then(Value::as_str)
            .or(self.url.as_deref())
    }

    /// `payload.sticker_id` as text.
    pub fn sticker_id(&self) -> Option<String> {
        value_id(self.payload.get("sticker_id"))
    }
}

/// `postback`: a button tap (Get Started, persistent menu, templates).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Postback {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    /// First-time users arriving through m.me / ads / plugin: the referral rides on Get Started.
    #[serde(default)]
    pub referral: Option<Referral>,
}

/// How the user arrived (`referral`, and inside postbacks and messages).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Referral {
    /// The `ref` parameter (m.me `?ref=`, plugin `data-ref`).
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// `SHORTLINK`, `ADS`, `MESSENGER_CODE`, `DISCOVER_TAB`, `CUSTOMER_CHAT_PLUGIN`...
    #[serde(default)]
    pub source: Option<String>,
    /// Usually `OPEN_THREAD`; lead ads use `LEAD_COMPLETE` / `LEAD_INCOMPLETE`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub ad_id: Option<Id>,
    /// Chat plugin: the page the plugin ran on.
    #[serde(default)]
    pub referer_uri: Option<String>,
    /// Chat plugin guest (no Facebook login).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_guest_user: Option<bool>,
    /// Ads: `ad_title`, `photo_url`, `video_url`, `post_id`, `product_id`, `flow_id`.
    #[serde(default)]
    pub ads_context_data: Option<Value>,
}

/// Where a referral came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferralSource {
    Shortlink,
    Ads,
    MessengerCode,
    DiscoverTab,
    CustomerChatPlugin,
    Other(String),
}

impl Referral {
    pub fn source(&self) -> Option<ReferralSource> {
        let s = self.source.as_deref()?;
        Some(match s.to_ascii_uppercase().as_str() {
            "SHORTLINK" => ReferralSource::Shortlink,
            "ADS" => ReferralSource::Ads,
            "MESSENGER_CODE" => ReferralSource::MessengerCode,
            "DISCOVER_TAB" => ReferralSource::DiscoverTab,
            "CUSTOMER_CHAT_PLUGIN" => ReferralSource::CustomerChatPlugin,
            _ => ReferralSource::Other(s.to_owned()),
        })
    }

    /// The `ref` parameter, if non-empty.
    pub fn reference(&self) -> Option<&str> {
        non_empty(&self.reference)
    }
}

/// `optin`: Login Connect, Send to Messenger, checkbox plugin, or marketing messages.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Optin {
    /// `notification_messages` for marketing messages; unset for plugins (and, as far as is
    /// known, Login Connect).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    /// Plugin `data-ref`.
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// Checkbox plugin: the only handle until the user replies (no `sender` on the item).
    #[serde(default)]
    pub user_ref: Option<String>,
    /// Login Connect with Messenger: send the first message with `recipient.login_id`.
    #[serde(default)]
    pub login_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// Marketing messages: send with `recipient.notification_messages_token`.
    #[serde(default)]
    pub notification_messages_token: Option<String>,
    /// `DAILY` / `WEEKLY` / `MONTHLY` (removed in Graph v16).
    #[serde(default)]
    pub notification_messages_frequency: Option<String>,
    #[serde(default)]
    pub notification_messages_timezone: Option<String>,
    /// Epoch milliseconds; documented loosely, so unreadable values are `None`, not an error.
    #[serde(default, deserialize_with = "millis::lenient")]
    pub token_expiry_timestamp: Option<i64>,
    /// `REFRESHED` / `NOT_REFRESHED`.
    #[serde(default)]
    pub user_token_status: Option<String>,
    /// `STOP NOTIFICATIONS` / `RESUME NOTIFICATIONS`; only on stop and resume.
    #[serde(default)]
    pub notification_messages_status: Option<String>,
}

/// Which feature produced an opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptinEntryPoint {
    /// Carries `login_id`.
    LoginConnect,
    /// Send to Messenger plugin: `ref` and a PSID sender.
    SendToMessenger,
    /// Checkbox plugin: `user_ref`, no sender.
    Checkbox,
    /// Marketing messages (`type: notification_messages`), including stop / resume.
    NotificationMessages,
    /// Any other `type` (e.g. old one-time notifications).
    Other,
}

/// `notification_messages_status` of a marketing-messages opt-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationStatus {
    /// The user stopped marketing messages: treat the token as revoked.
    Stop,
    /// The user resumed them: the token is usable again.
    Resume,
    Other(String),
}

/// `STOP NOTIFICATIONS`, `stop_notifications`... compared in one spelling.
fn status_words(s: &str) -> String {
    s.trim().to_ascii_uppercase().replace('_', " ")
}

impl Optin {
    pub const TYPE_NOTIFICATION_MESSAGES: &'static str = "notification_messages";

    /// The Login Connect `login_id`, if non-empty.
    pub fn login_id(&self) -> Option<&str> {
        non_empty(&self.login_id)
    }

    /// The checkbox plugin `user_ref`, if non-empty.
    pub fn user_ref(&self) -> Option<&str> {
        non_empty(&self.user_ref)
    }

    /// The plugin `ref`, if non-empty.
    pub fn reference(&self) -> Option<&str> {
        non_empty(&self.reference)
    }

    /// Which feature produced this opt-in: `login_id` wins, then the `type`, then `user_ref`
    /// (checkbox); a plain opt-in (with or without `ref`) is Send to Messenger.
    pub fn entry_point(&self) -> OptinEntryPoint {
        if self.login_id().is_some() {
            return OptinEntryPoint::LoginConnect;
        }
        match non_empty(&self.kind) {
            Some(t) if t.eq_ignore_ascii_case(Self::TYPE_NOTIFICATION_MESSAGES) => {
                OptinEntryPoint::NotificationMessages
            }
            Some(_) => OptinEntryPoint::Other,
            None if self.notification_messages_token.is_some() => {
                OptinEntryPoint::NotificationMessages
            }
            None if self.user_ref().is_some() => OptinEntryPoint::Checkbox,
            None => OptinEntryPoint::SendToMessenger,
        }
    }

    /// The marketing-messages status, when the event is a stop or resume.
    pub fn notification_status(&self) -> Option<NotificationStatus> {
        let raw = non_empty(&self.notification_messages_status)?;
        Some(match status_words(raw).as_str() {
            "STOP NOTIFICATIONS" | "STOP" => NotificationStatus::Stop,
            "RESUME NOTIFICATIONS" | "RESUME" => NotificationStatus::Resume,
            _ => NotificationStatus::Other(raw.to_owned()),
        })
    }

    /// The user stopped marketing messages for this token.
    pub fn is_stop(&self) -> bool {
        self.notification_status() == Some(NotificationStatus::Stop)
    }

    /// The user resumed marketing messages for this token.
    pub fn is_resume(&self) -> bool {
        self.notification_status() == Some(NotificationStatus::Resume)
    }

    /// `user_token_status`: `Some(true)` for `REFRESHED`, `Some(false)` for `NOT_REFRESHED`.
    pub fn token_refreshed(&self) -> Option<bool> {
        match status_words(non_empty(&self.user_token_status)?).as_str() {
            "REFRESHED" => Some(true),
            "NOT REFRESHED" => Some(false),
            _ => None,
        }
    }
}

/// `delivery`: every message before `watermark` was delivered.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Delivery {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub mids: Vec<String>,
    #[serde(default, deserialize_with = "millis::opt")]
    pub watermark: Option<i64>,
}

/// `read`: every message before `watermark` was read (Instagram sends a `mid` instead).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Read {
    #[serde(default, deserialize_with = "millis::opt")]
    pub watermark: Option<i64>,
    #[serde(default)]
    pub mid: Option<String>,
}

/// `policy_enforcement`: Meta warned, blocked or unblocked the page.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PolicyEnforcement {
    /// `warning`, `block`, `unblock`.
    #[serde(default)]
    pub action: Option<String>,
    /// Absent on `unblock`.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    Warning,
    /// Stop sending and alert the operator.
    Block,
    Unblock,
    Other(String),
}

impl PolicyEnforcement {
    pub fn action(&self) -> Option<PolicyAction> {
        let a = non_empty(&self.action)?;
        Some(match a.to_ascii_lowercase().as_str() {
            "warning" => PolicyAction::Warning,
            "block" => PolicyAction::Block,
            "unblock" => PolicyAction::Unblock,
            _ => PolicyAction::Other(a.to_owned()),
        })
    }

    pub fn is_block(&self) -> bool {
        self.action() == Some(PolicyAction::Block)
    }
}

/// `pass_thread_control` / `take_thread_control`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ThreadControl {
    /// `null` when the thread had no owner.
    #[serde(default)]
    pub previous_owner_app_id: Option<Id>,
    #[serde(default)]
    pub new_owner_app_id: Option<Id>,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// `request_thread_control`: another app asks the thread owner for control.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RequestThreadControl {
    #[serde(default)]
    pub requested_owner_app_id: Option<Id>,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// `account_linking`: `linked` (with `authorization_code`) or `unlinked`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct AccountLinking {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub authorization_code: Option<String>,
}

impl AccountLinking {
    pub fn is_linked(&self) -> bool {
        self.status.as_deref() == Some("linked")
    }

    pub fn is_unlinked(&self) -> bool {
        self.status.as_deref() == Some("unlinked")
    }
}

/// `response_feedback`: the user rated a message.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ResponseFeedback {
    #[serde(default)]
    pub feedback: Option<String>,
    #[serde(default)]
    pub mid: Option<String>,
}

/// `reaction`: `mid` is the message reacted to, not an id of this event.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Reaction {
    /// `smile`, `angry`, `sad`, `wow`, `love`, `like`, `dislike`, `other`.
    #[serde(default)]
    pub reaction: Option<String>,
    #[serde(default)]
    pub emoji: Option<String>,
    /// `react` / `unreact`.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub mid: Option<String>,
}

/// `prior_message`: links a reply (and its PSID) to an earlier plugin or Login Connect opt-in.
///
/// The Login Connect shape is unconfirmed, so this never fails: known fields are read when
/// they have the expected type, and the whole value is kept in `raw` for logging.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriorMessage {
    /// `checkbox_plugin` is documented; the Login Connect value is unknown.
    pub source: Option<String>,
    /// The `user_ref` (checkbox) or, presumably, the `login_id` (Login Connect).
    pub identifier: Option<Id>,
    /// An explicit `login_id` (or `loginId`, as Meta's sample reads) key, if Meta sends one.
    pub login_id: Option<String>,
    pub raw: Value,
}

impl PriorMessage {
    pub const SOURCE_CHECKBOX_PLUGIN: &'static str = "checkbox_plugin";

    pub fn from_value(raw: Value) -> Self {
        let source = raw.get("source").and_then(Value::as_str).map(str::to_owned);
        let identifier = value_id(raw.get("identifier")).map(Id);
        let login_id = value_id(raw.get("login_id")).or_else(|| value_id(raw.get("loginId")));
        PriorMessage {
            source,
            identifier,
            login_id,
            raw,
        }
    }

    pub fn is_checkbox_plugin(&self) -> bool {
        self.source.as_deref() == Some(Self::SOURCE_CHECKBOX_PLUGIN)
    }

    /// The best guess at the opt-in handle this reply links to: `identifier`, else `login_id`.
    pub fn identifier(&self) -> Option<&str> {
        self.identifier
            .as_ref()
            .map(Id::as_str)
            .or(self.login_id.as_deref())
            .filter(|s| !s.is_empty())
    }
}

impl<'de> Deserialize<'de> for PriorMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PriorMessage::from_value(Value::deserialize(d)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Change item
// ---------------------------------------------------------------------------------------------

/// One `changes[]` item: `{"field": "feed" | "comments" | ..., "value": {...}}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ChangeItem {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub value: Value,
}

impl ChangeItem {
    /// Parses one raw item; fails if it is not an object or `field` is not a string.
    pub fn parse(raw: &RawValue) -> Result<ChangeItem, serde_json::Error> {
        ensure_object(raw, "a change item must be a JSON object")?;
        serde_json::from_str(raw.get())
    }

    /// `value.from.id` (the commenter / poster), string or number.
    pub fn from_id(&self) -> Option<String> {
        value_id(self.value.get("from").and_then(|f| f.get("id")))
    }

    /// The person the change is about: `value.from.id` as a PSID, or an IGSID on Instagram.
    pub fn subject(&self, object: &str) -> Option<Identity> {
        self.from_id()
            .map(|id| Identity::new(identity_kind_for(object), id))
    }

    /// The change's own time in epoch milliseconds: `value.timestamp`, else `value.created_time`
    /// (feed changes send seconds). Unreadable values (an ISO date) are `None`.
    pub fn timestamp_ms(&self) -> Option<i64> {
        ["timestamp", "created_time"]
            .iter()
            .find_map(|k| self.value.get(*k).and_then(millis::from_value))
    }
}

/// Reads `timestamp` out of a generic item (for items the typed model rejected).
pub(crate) fn value_timestamp(item: &Value) -> Option<i64> {
    item.get("timestamp").and_then(millis::from_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> MessagingItem {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn id_accepts_string_or_number() {
        let cases: &[(&str, &str)] = &[
            (r#""123""#, "123"),
            ("123", "123"),
            ("17841400000000001", "17841400000000001"),
            ("18446744073709551615", "18446744073709551615"),
            ("-5", "-5"),
            ("1e3", "1000"),
            (r#""""#, ""),
            (r#""m_abc""#, "m_abc"),
        ];
        for (json, want) in cases {
            let id: Id = serde_json::from_str(json).unwrap();
            assert_eq!(id.as_str(), *want, "{json}");
        }
        for bad in ["1.5", "true", "{}", "[]", "1e300"] {
            assert!(serde_json::from_str::<Id>(bad).is_err(), "{bad}");
        }
        let none: Option<Id> = serde_json::from_str("null").unwrap();
        assert_eq!(none, None);
        assert_eq!(serde_json::to_string(&Id::from("7")).unwrap(), r#""7""#);
    }

    #[test]
    fn timestamps_accept_number_or_numeric_string() {
        let cases: &[(&str, Option<i64>)] = &[
            (r#"{"timestamp":1458692752478}"#, Some(1458692752478)),
            (r#"{"timestamp":"1458692752478"}"#, Some(1458692752478)),
            (r#"{"timestamp":1458692752478.0}"#, Some(1458692752478)),
            (r#"{"timestamp":null}"#, None),
            (r#"{}"#, None),
            // Seconds (Meta's postbacks reference sends a string of seconds).
            (r#"{"timestamp":"1527459824"}"#, Some(1_527_459_824_000)),
            (r#"{"timestamp":1527459824}"#, Some(1_527_459_824_000)),
            (r#"{"timestamp":" 1527459824 "}"#, Some(1_527_459_824_000)),
            (r#"{"timestamp":1527459824.25}"#, Some(1_527_459_824_250)),
            (r#"{"timestamp":"1527459824.25"}"#, Some(1_527_459_824_250)),
            (r#"{"timestamp":1527459824.0}"#, Some(1_527_459_824_000)),
            // The boundary: 1e11 - 1 is seconds, 1e11 is milliseconds (March 1973).
            (r#"{"timestamp":99999999999}"#, Some(99_999_999_999_000)),
            (r#"{"timestamp":100000000000}"#, Some(100_000_000_000)),
            // Zero or negative would date the event 1970: no time, the fallback applies.
            (r#"{"timestamp":0}"#, None),
            (r#"{"timestamp":"0"}"#, None),
            (r#"{"timestamp":-5}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(item(json).timestamp, *want, "{json}");
        }
        for bad in [
            r#"{"timestamp":"soon"}"#,
            r#"{"timestamp":{}}"#,
            r#"{"timestamp":1458692752478.5}"#,
        ] {
            assert!(serde_json::from_str::<MessagingItem>(bad).is_err(), "{bad}");
        }
        let lenient: Optin =
            serde_json::from_str(r#"{"token_expiry_timestamp":"next year"}"#).unwrap();
        assert_eq!(lenient.token_expiry_timestamp, None);
        let lenient: Optin =
            serde_json::from_str(r#"{"token_expiry_timestamp":"1767225600"}"#).unwrap();
        assert_eq!(lenient.token_expiry_timestamp, Some(1_767_225_600_000));
        let watermark: Read = serde_json::from_str(r#"{"watermark":"1458668856"}"#).unwrap();
        assert_eq!(watermark.watermark, Some(1_458_668_856_000));
    }

    #[test]
    fn kind_is_decided_by_event_key() {
        use EventKind as K;
        let cases: &[(&str, EventKind)] = &[
            (r#"{"message":{"mid":"m_1","text":"hi"}}"#, K::Message),
            (
                r#"{"message":{"mid":"m_1","is_echo":true,"app_id":1}}"#,
                K::Echo,
            ),
            (r#"{"message":{"mid":"m_1","is_echo":false}}"#, K::Message),
            (r#"{"postback":{"payload":"GET_STARTED"}}"#, K::Postback),
            (
                r#"{"reaction":{"mid":"m_1","action":"react"}}"#,
                K::Reaction,
            ),
            (r#"{"optin":{"login_id":"abc"}}"#, K::Optin),
            (r#"{"referral":{"ref":"x","source":"ADS"}}"#, K::Referral),
            (r#"{"delivery":{"watermark":1}}"#, K::Delivery),
            (r#"{"read":{"watermark":1}}"#, K::Read),
            (
                r#"{"policy_enforcement":{"action":"block"}}"#,
                K::PolicyEnforcement,
            ),
            (
                r#"{"policy-enforcement":{"action":"block"}}"#,
                K::PolicyEnforcement,
            ),
            (
                r#"{"pass_thread_control":{"new_owner_app_id":"1"}}"#,
                K::Handover,
            ),
            (
                r#"{"take_thread_control":{"previous_owner_app_id":1}}"#,
                K::Handover,
            ),
            (r#"{"request_thread_control":{}}"#, K::Handover),
            (r#"{"app_roles":{"123":["primary_receiver"]}}"#, K::Handover),
            // Two event keys in one item: the earlier in this order wins.
            (
                r#"{"message":{"mid":"m_1"},"postback":{"payload":"p"}}"#,
                K::Message,
            ),
            (
                r#"{"postback":{"payload":"p"},"reaction":{"mid":"m_1","action":"react"}}"#,
                K::Postback,
            ),
            (
                r#"{"reaction":{"mid":"m_1","action":"react"},"optin":{"login_id":"a"}}"#,
                K::Reaction,
            ),
            (
                r#"{"optin":{"login_id":"a"},"referral":{"ref":"x"}}"#,
                K::Optin,
            ),
            (
                r#"{"referral":{"ref":"x"},"delivery":{"watermark":1}}"#,
                K::Referral,
            ),
            (
                r#"{"delivery":{"watermark":1},"read":{"watermark":1}}"#,
                K::Delivery,
            ),
            (
                r#"{"read":{"watermark":1},"policy_enforcement":{"action":"block"}}"#,
                K::Read,
            ),
            (
                r#"{"policy_enforcement":{"action":"block"},"request_thread_control":{}}"#,
                K::PolicyEnforcement,
            ),
            (
                r#"{"request_thread_control":{},"account_linking":{"status":"linked"}}"#,
                K::Handover,
            ),
            (
                r#"{"account_linking":{"status":"linked"},"response_feedback":{}}"#,
                K::AccountLinking,
            ),
            (
                r#"{"account_linking":{"status":"unlinked"}}"#,
                K::AccountLinking,
            ),
            (
                r#"{"response_feedback":{"feedback":"Good"}}"#,
                K::ResponseFeedback,
            ),
            (r#"{"message_edit":{"mid":"m_1"}}"#, K::Unknown),
            (
                r#"{"prior_message":{"source":"checkbox_plugin"}}"#,
                K::Unknown,
            ),
            (r#"{"message":null}"#, K::Unknown),
            (r#"{}"#, K::Unknown),
        ];
        for (json, want) in cases {
            assert_eq!(item(json).kind(), *want, "{json}");
        }
    }

    #[test]
    fn wrong_shapes_fail_the_item() {
        for bad in [
            r#"{"message":5}"#,
            r#"{"message":{"text":5}}"#,
            r#"{"optin":"x"}"#,
            r#"{"delivery":{"mids":"m_1"}}"#,
            r#"{"sender":{"id":{}}}"#,
            r#"[1]"#,
            r#"[null, null, 5]"#,
            r#""text""#,
        ] {
            let raw = RawValue::from_string(bad.to_owned()).unwrap();
            assert!(MessagingItem::parse(&raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn mid_only_from_message_or_postback() {
        assert_eq!(item(r#"{"message":{"mid":"m_1"}}"#).mid(), Some("m_1"));
        assert_eq!(
            item(r#"{"message":{"mid":"m_1","is_echo":true}}"#).mid(),
            Some("m_1")
        );
        assert_eq!(item(r#"{"postback":{"mid":"m_2"}}"#).mid(), Some("m_2"));
        assert_eq!(item(r#"{"reaction":{"mid":"m_3"}}"#).mid(), None);
        assert_eq!(item(r#"{"response_feedback":{"mid":"m_4"}}"#).mid(), None);
        assert_eq!(item(r#"{"delivery":{"mids":["m_5"]}}"#).mid(), None);
        assert_eq!(item(r#"{"message":{"mid":""}}"#).mid(), None);
    }

    #[test]
    fn subject_rules() {
        let psid = |id: &str| Some(Identity::new(IdentityKind::Psid, id));
        let cases: &[(&str, &str, Option<Identity>)] = &[
            (
                r#"{"sender":{"id":"1"},"message":{"mid":"m"}}"#,
                "page",
                psid("1"),
            ),
            (
                r#"{"sender":{"id":2},"message":{"mid":"m"}}"#,
                "instagram",
                Some(Identity::new(IdentityKind::Igsid, "2")),
            ),
            (
                r#"{"sender":{"id":"PAGE"},"recipient":{"id":"3"},"message":{"is_echo":true}}"#,
                "page",
                psid("3"),
            ),
            (
                r#"{"sender":{"user_ref":"u1"},"postback":{}}"#,
                "page",
                Some(Identity::new(IdentityKind::UserRef, "u1")),
            ),
            (
                r#"{"recipient":{"id":"P"},"optin":{"ref":"r","user_ref":"u2"}}"#,
                "page",
                Some(Identity::new(IdentityKind::UserRef, "u2")),
            ),
            (
                r#"{"sender":{"id":"4"},"optin":{"login_id":"L"}}"#,
                "page",
                Some(Identity::new(IdentityKind::LoginId, "L")),
            ),
            (
                r#"{"sender":{"id":"5"},"optin":{"user_ref":"u3"}}"#,
                "page",
                psid("5"),
            ),
            (
                r#"{"recipient":{"id":"P"},"policy_enforcement":{}}"#,
                "page",
                None,
            ),
            (r#"{"sender":{"id":""},"read":{}}"#, "page", None),
        ];
        for (json, object, want) in cases {
            assert_eq!(&item(json).subject(object), want, "{json}");
        }
    }

    #[test]
    fn optin_entry_points_and_status() {
        let optin = |json: &str| serde_json::from_str::<Optin>(json).unwrap();
        let cases: &[(&str, OptinEntryPoint)] = &[
            (r#"{"login_id":"L"}"#, OptinEntryPoint::LoginConnect),
            (
                r#"{"login_id":"L","type":"x"}"#,
                OptinEntryPoint::LoginConnect,
            ),
            (r#"{"ref":"r"}"#, OptinEntryPoint::SendToMessenger),
            (r#"{}"#, OptinEntryPoint::SendToMessenger),
            (r#"{"ref":"r","user_ref":"u"}"#, OptinEntryPoint::Checkbox),
            (
                r#"{"type":"notification_messages","payload":"p"}"#,
                OptinEntryPoint::NotificationMessages,
            ),
            (
                r#"{"notification_messages_token":"t"}"#,
                OptinEntryPoint::NotificationMessages,
            ),
            (r#"{"type":"one_time_notif_req"}"#, OptinEntryPoint::Other),
        ];
        for (json, want) in cases {
            assert_eq!(optin(json).entry_point(), *want, "{json}");
        }
        let stop = optin(r#"{"notification_messages_status":"STOP NOTIFICATIONS"}"#);
        assert!(stop.is_stop() && !stop.is_resume());
        let resume = optin(r#"{"notification_messages_status":"resume_notifications"}"#);
        assert!(resume.is_resume() && !resume.is_stop());
        let plain = optin(r#"{"type":"notification_messages"}"#);
        assert!(!plain.is_stop() && !plain.is_resume());
        assert_eq!(plain.notification_status(), None);
        assert_eq!(
            optin(r#"{"user_token_status":"NOT_REFRESHED"}"#).token_refreshed(),
            Some(false)
        );
    }

    #[test]
    fn prior_message_is_defensive() {
        let m = item(
            r#"{"message":{"mid":"m"},"prior_message":{"source":"checkbox_plugin","identifier":"u1"}}"#,
        );
        let p = m.prior_message.unwrap();
        assert!(p.is_checkbox_plugin());
        assert_eq!(p.identifier(), Some("u1"));

        let odd = item(r#"{"prior_message":{"source":7,"identifier":{"x":1},"login_id":"L"}}"#);
        let p = odd.prior_message.unwrap();
        assert_eq!(p.source, None);
        assert_eq!(p.identifier, None);
        assert_eq!(p.identifier(), Some("L"));
        assert_eq!(p.raw["identifier"]["x"], 1);

        let not_object = item(r#"{"prior_message":"x"}"#).prior_message.unwrap();
        assert_eq!(not_object.raw, Value::String("x".into()));
    }

    #[test]
    fn entry_time_in_seconds_is_scaled() {
        let e: Entry = serde_json::from_str(r#"{"id":1,"time":1520383571}"#).unwrap();
        assert_eq!(e.id, "1");
        assert_eq!(e.time_ms(), Some(1_520_383_571_000));
        for time in [r#""1520383571""#, r#""1520383571000""#, "1520383571000"] {
            let e: Entry = serde_json::from_str(&format!(r#"{{"id":"1","time":{time}}}"#)).unwrap();
            assert_eq!(e.time_ms(), Some(1_520_383_571_000), "{time}");
        }
        let e: Entry = serde_json::from_str(r#"{"id":"1","time":1458692752478}"#).unwrap();
        assert_eq!(e.time_ms(), Some(1_458_692_752_478));
        let e: Entry = serde_json::from_str(r#"{"id":"1","messaging":null}"#).unwrap();
        assert!(e.messaging.is_empty() && e.time_ms().is_none());
    }

    #[test]
    fn helpers_read_nested_fields() {
        let m = item(
            r#"{"message":{"mid":"m","quick_reply":{"payload":"Q"},"attachments":[
                {"type":"sticker","payload":{"url":"https://x/s.png","sticker_id":369239263222822}},
                {"type":"fallback","payload":null,"title":"T","url":"https://x/l"}]}}"#,
        );
        let msg = m.message.unwrap();
        assert_eq!(msg.quick_reply_payload(), Some("Q"));
        assert!(msg.attachments[0].is("sticker"));
        assert_eq!(
            msg.attachments[0].sticker_id().as_deref(),
            Some("369239263222822")
        );
        assert_eq!(msg.attachments[1].url(), Some("https://x/l"));

        let r: Referral =
            serde_json::from_str(r#"{"source":"ADS","ad_id":6045246247433}"#).unwrap();
        assert_eq!(r.source(), Some(ReferralSource::Ads));
        assert_eq!(r.ad_id.unwrap(), "6045246247433");

        let p: PolicyEnforcement = serde_json::from_str(r#"{"action":"block"}"#).unwrap();
        assert!(p.is_block());

        let c: ChangeItem =
            serde_json::from_str(r#"{"field":"comments","value":{"from":{"id":42}}}"#).unwrap();
        assert_eq!(
            c.subject("instagram"),
            Some(Identity::new(IdentityKind::Igsid, "42"))
        );
        assert_eq!(c.timestamp_ms(), None);
        let times: &[(&str, Option<i64>)] = &[
            (r#"{"created_time":1700000004}"#, Some(1_700_000_004_000)),
            (r#"{"created_time":"1700000004"}"#, Some(1_700_000_004_000)),
            (r#"{"timestamp":1700000004123}"#, Some(1_700_000_004_123)),
            (
                r#"{"timestamp":"1700000004","created_time":1}"#,
                Some(1_700_000_004_000),
            ),
            (
                r#"{"timestamp":"2026-12-06T10:00:00+0000","created_time":1700000004}"#,
                Some(1_700_000_004_000),
            ),
            (r#"{"created_time":"yesterday"}"#, None),
        ];
        for (value, want) in times {
            let c: ChangeItem =
                serde_json::from_str(&format!(r#"{{"field":"feed","value":{value}}}"#)).unwrap();
            assert_eq!(c.timestamp_ms(), *want, "{value}");
        }
    }
}
