//! Items <-> domain records, through `serde_dynamo`: one flat struct per stored shape.
//!
//! # Item shapes
//!
//! Attribute names are flat snake_case, readable in the console. Times are epoch milliseconds
//! (`N`, names ending in `_ms`) except the table's TTL attribute `expires_at` (epoch seconds).
//! Flags are `BOOL`. An absent value is an absent attribute, never `NULL` (a `NULL` is read as
//! absent).
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | opt-in | `OPTIN#<kind>#<id>` (PSID / IGSID: `OPTIN#<kind>#<page_id>#<id>`) | `OPTIN` | `recipient_kind` (`login_id`, `user_ref`, `psid`, `igsid`), `recipient_id`, `page_id`, `object`, `entry_point` (`login_connect`, `send_to_messenger`, `checkbox`), `source` (`webhook`, `login`, `reply`), `opted_in_at_ms`, `deadline_at_ms`, `state` (`pending`, `sending`, `sent`, `answered`, `failed`, `expired`, `opted_out`), `attempts`, `lease_until_ms`, `job_enqueued`, `job_claim_until_ms`, `schedule_name`, `created_by`, `updated_at_ms`, `generation` (absent in items written before generations: read as 1); optional `last_error`, `message_id`, `sent_at_ms`, `psid`, `answered_at_ms`, `reference_raw`, `reference_status`, `reference_payload`, `history` (`L` of `M`, oldest first, see below; absent = none), `confirmed_at_ms` (a login-started generation the webhook confirmed) |
//! | person | `PSID#<page_id>#<psid>` | `PERSON` | `page_id`, `psid`; optional `login_id`, `user_ref` (the first linked of each kind), `linked` (`SS` of `login_id:<id>` / `user_ref:<id>`, every identifier linked; read sorted), `linked_at_ms`, `last_user_message_at_ms`, `opted_out_at_ms`, `opted_out_reason`, `referral_at_ms`, `referral_reference`, `referral_source`, `referral_ad_id` |
//! | marketing token | `PSID#<page_id>#<psid>` | `TOKEN#<topic>` | `page_id`, `psid`, `topic`, `status` (`active`, `stopped`), `status_at_ms`; optional `token`, `token_expires_at_ms` |
//! | page config | `PAGE#<page_id>` | `CONFIG` | see below |
//! | quarantined event | `QUARANTINE#<0..15>` (a hash of the id; older records: `QUARANTINE`) | `<received_at_ms, 13 digits>#<event key>` | `reason`, `received_at_ms`, `event_json`, `expires_at` (TTL: received + quarantine retention) |
//! | identity pointer | `IDENT#external_id#<id>` / `IDENT#asid#<app_id>#<asid>` | the opt-in key | `page_id`, `at_ms`, `expires_at` (TTL: `at_ms` + opt-in retention + 30 days) |
//! | deletion receipt | `DELETION#<code>` | `RECEIPT` | `status` (`in_progress`, `completed`), `requested_at_ms`, `items_deleted`, optional `completed_at_ms`, `expires_at` (TTL: requested + receipt retention) |
//!
//! The opt-in also holds optional `external_id` (the business's id) and `asid` (the app-scoped
//! user id the login callback saw), and `expires_at` once closed (TTL: closed + opt-in
//! retention; a new generation's write removes it). The person holds optional `external_id`
//! (copied from the first linked opt-in that knew it); person and tokens get `expires_at` from
//! their last event (TTL: + person retention). Retention: `lc_core::support::retention`.
//!
//! A `history` entry is a map with `generation`, `source`, `opted_in_at_ms`, `state`, `attempts`,
//! `closed_at_ms` and optional `sent_at_ms`, `message_id`, `answered_at_ms`, `last_error`,
//! `reference` (a map: `raw`, `status`, optional `payload`), `confirmed_at_ms`: how one earlier
//! generation ended.
//!
//! The person and its tokens share a partition: one `Query` on `pk` reads them all. People and
//! tokens are only ever written by conditional updates (see `people.rs`); only their reading
//! shape lives here.
//!
//! ## Page config (edited by hand in the console)
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `page_id` | `S` | the Page id (optional: the key says it) |
//! | `paused` | `BOOL` | `true`: no first message goes out from this Page (absent = `false`) |
//! | `paused_reason` | `S` | why (a Graph error, or an operator's note) |
//! | `paused_at_ms` | `N` | when it was paused, epoch ms |
//! | `pause_event_at_ms` | `N` | event time of the last pause/unpause written by the functions: an event older than this is ignored. Leave it alone when pausing by hand (a webhook event newer than it can still unpause) |
//! | `first_message` | `S` | JSON of the first message: `{"text": "...", "quick_replies": [...]}`; validated when used |
//! | `human_agent` | `BOOL` | Meta approved the Human Agent feature for the Page: follow-ups a human wrote may go with `HUMAN_AGENT` up to 7 days (absent = `false`) |
//! | `utility_messaging` | `BOOL` | the app has `page_utility_messaging` for the Page: utility templates (absent = `false`) |
//! | `phone_number_messaging` | `BOOL` | the app has `pages_messaging_phone_number`: follow-ups to phone numbers (absent = `false`) |
//! | `linked_page_id` | `S` | on an Instagram account's item (`PAGE#<ig_account_id>`): the Facebook Page whose token sends its messages |
//! | `instagram_login_user_id` | `S` | on an Instagram account's item: its Instagram user id (IG_ID); set, its follow-ups go through Instagram Login (`graph.instagram.com/<id>/messages`) with the secret's `instagram_tokens.<id>`, not through `linked_page_id` |
//!
//! To pause a Page by hand: create or edit `pk = PAGE#<page_id>`, `sk = CONFIG`, set `paused`
//! to `true` and `paused_reason` to a note.
//!
//! Enumerations are stored as the domain types' own snake_case names (their `as_str`); a test
//! pins each one, so a rename in the domain cannot silently change what is stored.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use lc_core::lifecycle::optin::{
    EntryPoint, GenerationOutcome, Optin, OptinSource, OptinState, RefInfo,
};
use lc_core::ports::store::{
    MarketingToken, PageConfig, Person, QuarantinedRecord, ReferralInfo, TokenStatus,
};
use lc_core::ports::PortError;
use lc_core::webhook::{Identity, IdentityKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys::{
    page_key, paused_sk, quarantine_pk, receipt_key, unsent_pk, unsent_sk, OPTIN_SK, PAUSED_PK, PK,
    SK, TOKEN_SK_PREFIX, TTL,
};
use lc_core::ports::identity::{DeletionReceipt, DeletionStatus, IdentityPointer, IndexedId};
use lc_core::support::retention::Retention;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The keys are written with every whole item but never read back from it: the caller already
/// knows them, and an item without them could not have been fetched.
#[derive(Debug, Serialize, Deserialize)]
struct OptinItem {
    #[serde(skip_deserializing)]
    pk: String,
    #[serde(skip_deserializing)]
    sk: String,
    recipient_kind: IdentityKind,
    recipient_id: String,
    page_id: String,
    object: String,
    entry_point: EntryPoint,
    source: OptinSource,
    opted_in_at_ms: i64,
    deadline_at_ms: i64,
    state: OptinState,
    attempts: u32,
    lease_until_ms: i64,
    job_enqueued: bool,
    job_claim_until_ms: i64,
    schedule_name: String,
    created_by: String,
    updated_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    psid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answered_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference_payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    /// Absent in items written before generations: the first.
    #[serde(default = "first_generation")]
    generation: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<GenerationOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asid: Option<String>,
    /// The sparse `ops` index keys, while a first message is owed (`keys::OPS_INDEX`).
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    ops_pk: Option<String>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    ops_sk: Option<String>,
}

fn first_generation() -> u32 {
    1
}

/// Every attribute is optional: the item is created piecemeal by updates (a message, a link, a
/// referral or an opt-out may come first), and `page_id` / `psid` are also in the key.
#[derive(Debug, Deserialize)]
struct PersonItem {
    page_id: Option<String>,
    psid: Option<String>,
    login_id: Option<String>,
    user_ref: Option<String>,
    linked_at_ms: Option<i64>,
    last_user_message_at_ms: Option<i64>,
    opted_out_at_ms: Option<i64>,
    opted_out_reason: Option<String>,
    referral_at_ms: Option<i64>,
    referral_reference: Option<String>,
    referral_source: Option<String>,
    referral_ad_id: Option<String>,
    /// A String Set (read from `SS`; DynamoDB keeps no order).
    #[serde(default)]
    linked: Vec<String>,
    external_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenItem {
    /// Only consulted when `topic` is absent.
    sk: Option<String>,
    topic: Option<String>,
    token: Option<String>,
    status: TokenStatus,
    token_expires_at_ms: Option<i64>,
    status_at_ms: i64,
}

/// Operators write these by hand: everything but the key may be missing.
#[derive(Debug, Serialize, Deserialize)]
struct PageItem {
    #[serde(skip_deserializing)]
    pk: String,
    #[serde(skip_deserializing)]
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused: Option<bool>,
    /// Absent means true: a Page answers its opt-ins unless an operator says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answers_optins: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pause_event_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    human_agent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utility_messaging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone_number_messaging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linked_page_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instagram_login_user_id: Option<String>,
    /// The sparse `ops` index keys, while paused.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    ops_pk: Option<String>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    ops_sk: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct QuarantineItem {
    #[serde(skip_deserializing)]
    pk: String,
    /// The record's id.
    sk: String,
    reason: String,
    received_at_ms: i64,
    event_json: String,
    /// Written for DynamoDB's TTL sweep (the table's TTL attribute, `keys::TTL`); nothing
    /// reads it.
    #[serde(skip_deserializing)]
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PointerItem {
    #[serde(skip_deserializing)]
    pk: String,
    /// The opt-in key.
    sk: String,
    page_id: String,
    at_ms: i64,
    #[serde(skip_deserializing)]
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReceiptItem {
    #[serde(skip_deserializing)]
    pk: String,
    #[serde(skip_deserializing)]
    sk: String,
    status: DeletionStatus,
    requested_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_at_ms: Option<i64>,
    items_deleted: u32,
    #[serde(skip_deserializing)]
    expires_at: i64,
}

pub(super) fn optin_item(o: &Optin) -> Result<Item, PortError> {
    let reference = o.reference.as_ref();
    let owed = !o.state.is_closed();
    to_item(OptinItem {
        pk: o.key(),
        sk: OPTIN_SK.to_string(),
        recipient_kind: o.recipient.kind,
        recipient_id: o.recipient.id.clone(),
        page_id: o.page_id.clone(),
        object: o.object.clone(),
        entry_point: o.entry_point,
        source: o.source,
        opted_in_at_ms: o.opted_in_at_ms,
        deadline_at_ms: o.deadline_at_ms,
        state: o.state,
        attempts: o.attempts,
        lease_until_ms: o.lease_until_ms,
        job_enqueued: o.job_enqueued,
        job_claim_until_ms: o.job_claim_until_ms,
        schedule_name: o.schedule_name.clone(),
        created_by: o.created_by.clone(),
        updated_at_ms: o.updated_at_ms,
        last_error: o.last_error.clone(),
        message_id: o.message_id.clone(),
        sent_at_ms: o.sent_at_ms,
        psid: o.psid.clone(),
        answered_at_ms: o.answered_at_ms,
        reference_raw: reference.map(|r| r.raw.clone()),
        reference_status: reference.map(|r| r.status.clone()),
        reference_payload: reference.and_then(|r| r.payload.clone()),
        app_id: o.app_id.clone(),
        generation: o.generation,
        history: o.history.clone(),
        confirmed_at_ms: o.confirmed_at_ms,
        external_id: o.external_id.clone(),
        asid: o.asid.clone(),
        ops_pk: owed.then(|| unsent_pk(&o.key())),
        ops_sk: owed.then(|| unsent_sk(o.opted_in_at_ms)),
    })
}

/// The whole item of an opt-in as written by a put, with its TTL when it is closed (a put
/// replaces the item, so an open generation's item has none).
pub(super) fn optin_put_item(o: &Optin, retention: &Retention) -> Result<Item, PortError> {
    let mut item = optin_item(o)?;
    if o.state.is_closed() {
        item.insert(
            TTL.to_string(),
            AttributeValue::N(retention.optin_expires_at(o.updated_at_ms).to_string()),
        );
    }
    Ok(item)
}

pub(super) fn optin_from(item: Item) -> Result<Optin, PortError> {
    let key = item_key(&item);
    let i: OptinItem = from_item(item, &key)?;
    let reference = match i.reference_raw {
        None => None,
        Some(raw) => Some(RefInfo {
            raw,
            status: i
                .reference_status
                .ok_or_else(|| malformed(&key, "attribute reference_status: missing"))?,
            payload: i.reference_payload,
        }),
    };
    Ok(Optin {
        recipient: Identity::new(i.recipient_kind, i.recipient_id),
        page_id: i.page_id,
        object: i.object,
        entry_point: i.entry_point,
        source: i.source,
        opted_in_at_ms: i.opted_in_at_ms,
        deadline_at_ms: i.deadline_at_ms,
        state: i.state,
        attempts: i.attempts,
        lease_until_ms: i.lease_until_ms,
        job_enqueued: i.job_enqueued,
        job_claim_until_ms: i.job_claim_until_ms,
        schedule_name: i.schedule_name,
        last_error: i.last_error,
        message_id: i.message_id,
        sent_at_ms: i.sent_at_ms,
        psid: i.psid,
        answered_at_ms: i.answered_at_ms,
        reference,
        created_by: i.created_by,
        updated_at_ms: i.updated_at_ms,
        app_id: i.app_id,
        generation: i.generation,
        history: i.history,
        confirmed_at_ms: i.confirmed_at_ms,
        external_id: i.external_id,
        asid: i.asid,
    })
}

pub(super) fn person_from(item: Item, page_id: &str, psid: &str) -> Result<Person, PortError> {
    let key = item_key(&item);
    let mut i: PersonItem = from_item(item, &key)?;
    // The port lists `linked` sorted: a String Set has no order of its own.
    i.linked.sort();
    i.linked.dedup();
    Ok(Person {
        page_id: i.page_id.unwrap_or_else(|| page_id.to_string()),
        psid: i.psid.unwrap_or_else(|| psid.to_string()),
        login_id: i.login_id,
        user_ref: i.user_ref,
        linked_at_ms: i.linked_at_ms,
        linked: i.linked,
        last_user_message_at_ms: i.last_user_message_at_ms,
        opted_out_at_ms: i.opted_out_at_ms,
        opted_out_reason: i.opted_out_reason,
        referral: i.referral_at_ms.map(|at_ms| ReferralInfo {
            reference: i.referral_reference,
            source: i.referral_source,
            ad_id: i.referral_ad_id,
            at_ms,
        }),
        external_id: i.external_id,
    })
}

pub(super) fn token_from(item: Item) -> Result<MarketingToken, PortError> {
    let key = item_key(&item);
    let i: TokenItem = from_item(item, &key)?;
    let topic = match (i.topic, i.sk) {
        (Some(t), _) => t,
        (None, None) => return Err(malformed(&key, "attribute sk: missing")),
        (None, Some(sk)) => sk
            .strip_prefix(TOKEN_SK_PREFIX)
            .map(str::to_string)
            .ok_or_else(|| malformed(&key, "attribute sk: not a token sort key"))?,
    };
    Ok(MarketingToken {
        topic,
        token: i.token,
        status: i.status,
        expires_at_ms: i.token_expires_at_ms,
        status_at_ms: i.status_at_ms,
    })
}

pub(super) fn page_item(p: &PageConfig) -> Result<Item, PortError> {
    let (pk, sk) = page_key(&p.page_id);
    to_item(PageItem {
        pk,
        sk,
        page_id: Some(p.page_id.clone()),
        paused: Some(p.paused),
        // Written only when it differs from the default, so a console edit stays one field.
        answers_optins: (!p.answers_optins).then_some(false),
        paused_reason: p.paused_reason.clone(),
        paused_at_ms: p.paused_at_ms,
        pause_event_at_ms: p.pause_event_at_ms,
        first_message: p.first_message.clone(),
        // Written only when set, so a console edit stays one field.
        human_agent: p.human_agent.then_some(true),
        utility_messaging: p.utility_messaging.then_some(true),
        phone_number_messaging: p.phone_number_messaging.then_some(true),
        linked_page_id: p.linked_page_id.clone(),
        instagram_login_user_id: p.instagram_login_user_id.clone(),
        ops_pk: p.paused.then(|| PAUSED_PK.to_string()),
        ops_sk: p
            .paused
            .then(|| paused_sk(p.paused_at_ms.unwrap_or(0), &p.page_id)),
    })
}

pub(super) fn page_from(item: Item, page_id: &str) -> Result<PageConfig, PortError> {
    let key = item_key(&item);
    let i: PageItem = from_item(item, &key)?;
    Ok(PageConfig {
        page_id: i.page_id.unwrap_or_else(|| page_id.to_string()),
        paused: i.paused.unwrap_or(false),
        answers_optins: i.answers_optins.unwrap_or(true),
        paused_reason: i.paused_reason,
        paused_at_ms: i.paused_at_ms,
        pause_event_at_ms: i.pause_event_at_ms,
        first_message: i.first_message,
        human_agent: i.human_agent.unwrap_or(false),
        utility_messaging: i.utility_messaging.unwrap_or(false),
        phone_number_messaging: i.phone_number_messaging.unwrap_or(false),
        linked_page_id: i.linked_page_id,
        instagram_login_user_id: i.instagram_login_user_id,
    })
}

pub(super) fn quarantined_item(
    r: &QuarantinedRecord,
    retention: &Retention,
) -> Result<Item, PortError> {
    to_item(QuarantineItem {
        pk: quarantine_pk(&r.id),
        sk: r.id.clone(),
        reason: r.reason.clone(),
        received_at_ms: r.received_at_ms,
        event_json: r.event_json.clone(),
        expires_at: retention.quarantine_expires_at(r.received_at_ms),
    })
}

pub(super) fn pointer_item(p: &IdentityPointer, retention: &Retention) -> Result<Item, PortError> {
    to_item(PointerItem {
        pk: p.id.partition(),
        sk: p.optin_key.clone(),
        page_id: p.page_id.clone(),
        at_ms: p.at_ms,
        expires_at: retention.pointer_expires_at(p.at_ms),
    })
}

pub(super) fn pointer_from(item: Item, id: &IndexedId) -> Result<IdentityPointer, PortError> {
    let key = item_key(&item);
    let i: PointerItem = from_item(item, &key)?;
    Ok(IdentityPointer {
        id: id.clone(),
        optin_key: i.sk,
        page_id: i.page_id,
        at_ms: i.at_ms,
    })
}

pub(super) fn receipt_item(r: &DeletionReceipt, retention: &Retention) -> Result<Item, PortError> {
    let (pk, sk) = receipt_key(&r.code);
    to_item(ReceiptItem {
        pk,
        sk,
        status: r.status,
        requested_at_ms: r.requested_at_ms,
        completed_at_ms: r.completed_at_ms,
        items_deleted: r.items_deleted,
        expires_at: retention.receipt_expires_at(r.requested_at_ms),
    })
}

pub(super) fn receipt_from(item: Item, code: &str) -> Result<DeletionReceipt, PortError> {
    let key = item_key(&item);
    let i: ReceiptItem = from_item(item, &key)?;
    Ok(DeletionReceipt {
        code: code.to_string(),
        status: i.status,
        requested_at_ms: i.requested_at_ms,
        completed_at_ms: i.completed_at_ms,
        items_deleted: i.items_deleted,
    })
}

pub(super) fn quarantined_from(item: Item) -> Result<QuarantinedRecord, PortError> {
    let key = item_key(&item);
    let i: QuarantineItem = from_item(item, &key)?;
    Ok(QuarantinedRecord {
        id: i.sk,
        reason: i.reason,
        received_at_ms: i.received_at_ms,
        event_json: i.event_json,
    })
}

pub(super) fn to_item<T: Serialize>(record: T) -> Result<Item, PortError> {
    // Flat structs of strings, integers and flags always serialize; an error here is a bug in
    // a record type, reported rather than panicking.
    serde_dynamo::aws_sdk_dynamodb_1::to_item(record)
        .map_err(|e| PortError::Rejected(format!("item could not be built for DynamoDB: {e}")))
}

/// A malformed item is `Rejected`, naming its key and attribute, never a panic.
pub(super) fn from_item<T: DeserializeOwned>(mut item: Item, key: &str) -> Result<T, PortError> {
    // serde_dynamo panics converting a value type the SDK did not recognise (`Unknown`, only
    // possible with a newer DynamoDB type). Such an attribute is dropped: if the record needs
    // it, it reads as missing.
    item.retain(|_, v| known(v));
    let value = serde_dynamo::AttributeValue::from(AttributeValue::M(item));
    let de = serde_dynamo::Deserializer::from_attribute_value(value);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            malformed(key, &inner.to_string())
        } else {
            malformed(key, &format!("attribute {path}: {inner}"))
        }
    })
}

fn known(v: &AttributeValue) -> bool {
    match v {
        AttributeValue::M(m) => m.values().all(known),
        AttributeValue::L(l) => l.iter().all(known),
        other => !other.is_unknown(),
    }
}

pub(super) fn item_key(item: &Item) -> String {
    let part = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    format!("{}/{}", part(PK), part(SK))
}

fn malformed(key: &str, why: &str) -> PortError {
    PortError::Rejected(format!("malformed item {key} in DynamoDB: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expr::{b, n, s};
    use lc_core::lifecycle::optin::OptinSource;

    fn sample() -> Optin {
        let mut o = Optin::pending(
            Identity::new(IdentityKind::LoginId, "L1"),
            "100",
            "page",
            EntryPoint::LoginConnect,
            OptinSource::Webhook,
            1_000,
            "optin:h1",
            1_500,
        );
        o.reference = Some(RefInfo {
            raw: "r".into(),
            status: "opaque".into(),
            payload: None,
        });
        o.message_id = Some("m_1".into());
        o
    }

    fn optin_sample_item() -> Item {
        optin_item(&sample()).expect("item")
    }

    #[test]
    fn optin_round_trips_through_an_item() {
        let o = sample();
        let item = optin_item(&o).unwrap();
        assert_eq!(item.get("pk"), Some(&s("OPTIN#login_id#L1")));
        assert_eq!(item.get("sk"), Some(&s("OPTIN")));
        assert_eq!(item.get("job_enqueued"), Some(&b(false)));
        assert_eq!(item.get("attempts"), Some(&n(0)));
        assert_eq!(item.get("deadline_at_ms"), Some(&n(1_000 + 86_400_000)));
        assert_eq!(item.get("reference_raw"), Some(&s("r")));
        assert!(!item.contains_key("psid"), "absent, not NULL");
        assert!(!item.contains_key("reference_payload"));
        assert!(!item.contains_key("reference"), "flat, not a map");
        assert!(!item.contains_key("recipient"), "flat, not a map");
        assert_eq!(optin_from(item), Ok(o));
    }

    /// The stored shape of an opt-in, attribute by attribute, as tables hold it today.
    #[test]
    fn optin_item_has_exactly_the_stored_attributes() {
        let mut o = sample();
        o.state = OptinState::OptedOut;
        o.entry_point = EntryPoint::SendToMessenger;
        o.recipient = Identity::new(IdentityKind::UserRef, "U1");
        o.last_error = Some("e".into());
        o.sent_at_ms = Some(7);
        o.psid = Some("P".into());
        o.answered_at_ms = Some(8);
        o.reference = Some(RefInfo {
            raw: "r".into(),
            status: "valid".into(),
            payload: Some("p".into()),
        });
        let item = optin_item(&o).unwrap();
        let expected = Item::from([
            ("pk".into(), s("OPTIN#user_ref#U1")),
            ("sk".into(), s("OPTIN")),
            ("recipient_kind".into(), s("user_ref")),
            ("recipient_id".into(), s("U1")),
            ("page_id".into(), s("100")),
            ("object".into(), s("page")),
            ("entry_point".into(), s("send_to_messenger")),
            ("source".into(), s("webhook")),
            ("opted_in_at_ms".into(), n(1_000)),
            ("deadline_at_ms".into(), n(86_401_000)),
            ("state".into(), s("opted_out")),
            ("attempts".into(), n(0)),
            ("lease_until_ms".into(), n(0)),
            ("job_enqueued".into(), b(false)),
            ("job_claim_until_ms".into(), n(0)),
            ("schedule_name".into(), s(&o.schedule_name)),
            ("created_by".into(), s("optin:h1")),
            ("updated_at_ms".into(), n(1_500)),
            ("last_error".into(), s("e")),
            ("message_id".into(), s("m_1")),
            ("sent_at_ms".into(), n(7)),
            ("psid".into(), s("P")),
            ("answered_at_ms".into(), n(8)),
            ("reference_raw".into(), s("r")),
            ("reference_status".into(), s("valid")),
            ("reference_payload".into(), s("p")),
            ("generation".into(), n(1)),
        ]);
        assert_eq!(item, expected);
        assert_eq!(optin_from(item), Ok(o));
    }

    /// A later generation stores its number and the earlier outcomes as a list of maps.
    #[test]
    fn generations_store_their_history_as_a_list_of_maps() {
        let mut first = sample();
        first.state = OptinState::Sent;
        first.attempts = 1;
        first.sent_at_ms = Some(2_000);
        let mut next = Optin::pending(
            first.recipient.clone(),
            "100",
            "page",
            EntryPoint::LoginConnect,
            OptinSource::Webhook,
            90_000_000,
            "optin:h2",
            90_000_100,
        );
        next = first.next_generation(next);
        let item = optin_item(&next).unwrap();
        assert_eq!(item.get("generation"), Some(&n(2)));
        let expected = AttributeValue::L(vec![AttributeValue::M(Item::from([
            ("generation".into(), n(1)),
            ("source".into(), s("webhook")),
            ("opted_in_at_ms".into(), n(1_000)),
            ("state".into(), s("sent")),
            ("attempts".into(), n(1)),
            ("sent_at_ms".into(), n(2_000)),
            ("message_id".into(), s("m_1")),
            (
                "reference".into(),
                AttributeValue::M(Item::from([
                    ("raw".into(), s("r")),
                    ("status".into(), s("opaque")),
                ])),
            ),
            ("closed_at_ms".into(), n(1_500)),
        ]))]);
        assert_eq!(item.get("history"), Some(&expected));
        assert_eq!(optin_from(item), Ok(next));
        assert!(
            !optin_item(&sample()).unwrap().contains_key("history"),
            "no history: no attribute"
        );
    }

    /// Items written before generations have neither `generation` nor `history`.
    #[test]
    fn an_item_without_generation_is_the_first() {
        let mut item = optin_sample_item();
        item.remove("generation");
        let o = optin_from(item).unwrap();
        assert_eq!((o.generation, o.history.len()), (1, 0));
        assert_eq!(o, sample());
        let mut item = optin_sample_item();
        item.insert("history".into(), s("yesterday"));
        assert!(matches!(optin_from(item), Err(PortError::Rejected(m)) if m.contains("history")));
    }

    /// The stored names are the domain's `as_str` for every variant.
    #[test]
    fn enumerations_are_stored_by_their_domain_names() {
        fn stored<T: Serialize>(v: T) -> AttributeValue {
            serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(v).unwrap()
        }
        for k in [
            IdentityKind::Psid,
            IdentityKind::Igsid,
            IdentityKind::UserRef,
            IdentityKind::LoginId,
        ] {
            assert_eq!(stored(k), s(k.as_str()));
        }
        for e in [
            EntryPoint::LoginConnect,
            EntryPoint::SendToMessenger,
            EntryPoint::Checkbox,
        ] {
            assert_eq!(stored(e), s(e.as_str()));
        }
        for src in [OptinSource::Webhook, OptinSource::Login, OptinSource::Reply] {
            assert_eq!(stored(src), s(src.as_str()));
        }
        for st in [
            OptinState::Pending,
            OptinState::Sending,
            OptinState::Sent,
            OptinState::Answered,
            OptinState::Failed,
            OptinState::Expired,
            OptinState::OptedOut,
        ] {
            assert_eq!(stored(st), s(st.as_str()));
        }
        assert_eq!(stored(TokenStatus::Active), s("active"));
        assert_eq!(stored(TokenStatus::Stopped), s("stopped"));
    }

    #[test]
    fn malformed_items_are_rejected_naming_the_key() {
        let mut item = optin_sample_item();
        item.insert("state".into(), s("flying"));
        let err = optin_from(item).unwrap_err();
        assert!(
            matches!(&err, PortError::Rejected(m) if m.contains("OPTIN#login_id#L1/OPTIN") && m.contains("state")),
            "{err}"
        );
        let mut item = optin_sample_item();
        item.insert("attempts".into(), s("1"));
        let err = optin_from(item).unwrap_err();
        assert!(
            matches!(&err, PortError::Rejected(m) if m.contains("attempts")),
            "{err}"
        );
        let mut item = optin_sample_item();
        item.insert("attempts".into(), n(-1));
        assert!(matches!(optin_from(item), Err(PortError::Rejected(_))));
        let mut item = optin_sample_item();
        item.insert("lease_until_ms".into(), AttributeValue::N("1.5".into()));
        assert!(
            matches!(optin_from(item), Err(PortError::Rejected(m)) if m.contains("lease_until_ms"))
        );
        let mut item = optin_sample_item();
        item.remove("deadline_at_ms");
        assert!(
            matches!(optin_from(item), Err(PortError::Rejected(m)) if m.contains("deadline_at_ms"))
        );
        let mut item = optin_sample_item();
        item.remove("reference_status");
        assert!(
            matches!(optin_from(item), Err(PortError::Rejected(m)) if m.contains("reference_status"))
        );
        let mut item = optin_sample_item();
        item.insert("psid".into(), AttributeValue::Null(true));
        assert_eq!(
            optin_from(item).map(|o| o.psid),
            Ok(None),
            "NULL reads as absent"
        );
    }

    #[test]
    fn attributes_the_record_does_not_know_are_ignored() {
        let mut item = optin_sample_item();
        item.insert("operator_note".into(), s("checked"));
        item.insert("priority".into(), AttributeValue::N("1.5".into()));
        item.insert(
            "tags".into(),
            AttributeValue::L(vec![s("a"), AttributeValue::Null(true)]),
        );
        item.insert("expires_at".into(), n(1));
        assert_eq!(optin_from(item), Ok(sample()));
    }

    #[test]
    fn person_is_read_from_a_partial_item() {
        let item = Item::from([
            ("pk".into(), s("PSID#100#P1")),
            ("sk".into(), s("PERSON")),
            ("last_user_message_at_ms".into(), n(5)),
            ("referral_at_ms".into(), n(6)),
            ("referral_source".into(), s("ADS")),
        ]);
        let p = person_from(item, "100", "P1").unwrap();
        assert_eq!(
            p,
            Person {
                page_id: "100".into(),
                psid: "P1".into(),
                last_user_message_at_ms: Some(5),
                referral: Some(ReferralInfo {
                    reference: None,
                    source: Some("ADS".into()),
                    ad_id: None,
                    at_ms: 6,
                }),
                ..Person::default()
            }
        );
        let linked = Item::from([(
            "linked".into(),
            AttributeValue::Ss(vec!["user_ref:U2".into(), "login_id:L1".into()]),
        )]);
        assert_eq!(
            person_from(linked, "100", "P1").unwrap().linked,
            vec!["login_id:L1".to_string(), "user_ref:U2".to_string()],
            "a String Set reads sorted"
        );
        let bad = Item::from([("opted_out_at_ms".into(), s("yesterday"))]);
        assert!(
            matches!(person_from(bad, "100", "P1"), Err(PortError::Rejected(m)) if m.contains("opted_out_at_ms"))
        );
    }

    #[test]
    fn token_topic_falls_back_to_the_sort_key() {
        let item = Item::from([
            ("pk".into(), s("PSID#100#P1")),
            ("sk".into(), s("TOKEN#deals")),
            ("status".into(), s("stopped")),
            ("status_at_ms".into(), n(9)),
            ("token_expires_at_ms".into(), n(10)),
        ]);
        let t = token_from(item.clone()).unwrap();
        assert_eq!(
            t,
            MarketingToken {
                topic: "deals".into(),
                token: None,
                status: TokenStatus::Stopped,
                expires_at_ms: Some(10),
                status_at_ms: 9,
            }
        );
        let mut odd = item.clone();
        odd.insert("sk".into(), s("PERSON"));
        assert!(matches!(token_from(odd), Err(PortError::Rejected(m)) if m.contains("sk")));
        let mut bad = item;
        bad.insert("status".into(), s("paused"));
        assert!(matches!(token_from(bad), Err(PortError::Rejected(m)) if m.contains("status")));
    }

    #[test]
    fn hand_written_page_config_is_read_leniently() {
        let mut item = Item::new();
        item.insert("pk".into(), s("PAGE#100"));
        item.insert("sk".into(), s("CONFIG"));
        item.insert("first_message".into(), s(r#"{"text":"hi"}"#));
        let p = page_from(item.clone(), "100").unwrap();
        assert_eq!(p.page_id, "100");
        assert!(!p.paused);
        assert_eq!(p.first_message.as_deref(), Some(r#"{"text":"hi"}"#));
        item.insert("paused".into(), s("yes"));
        assert!(
            matches!(page_from(item, "100"), Err(PortError::Rejected(m)) if m.contains("PAGE#100/CONFIG") && m.contains("paused"))
        );
        let full = PageConfig {
            page_id: "100".into(),
            paused: true,
            answers_optins: true,
            paused_reason: Some("r".into()),
            paused_at_ms: Some(5),
            pause_event_at_ms: Some(5),
            first_message: Some("{}".into()),
            ..PageConfig::default()
        };
        let item = page_item(&full).unwrap();
        assert_eq!(item.get("pk"), Some(&s("PAGE#100")));
        assert_eq!(item.get("paused"), Some(&b(true)));
        // A paused Page is in the sparse `ops` index.
        assert_eq!(item.get("ops_pk"), Some(&s("PAUSED")));
        assert_eq!(item.get("ops_sk"), Some(&s("0000000000005#100")));
        assert_eq!(item.len(), 10);
        assert_eq!(page_from(item, "100"), Ok(full.clone()));
        // The follow-up settings: each one attribute, absent when off.
        let settings = PageConfig {
            human_agent: true,
            utility_messaging: true,
            phone_number_messaging: true,
            linked_page_id: Some("200".into()),
            instagram_login_user_id: Some("178".into()),
            ..full.clone()
        };
        let item = page_item(&settings).unwrap();
        assert_eq!(item.get("human_agent"), Some(&b(true)));
        assert_eq!(item.get("linked_page_id"), Some(&s("200")));
        assert_eq!(item.get("instagram_login_user_id"), Some(&s("178")));
        assert_eq!(item.len(), 15);
        assert_eq!(page_from(item, "100"), Ok(settings));
        let running = page_item(&PageConfig {
            paused: false,
            ..full
        })
        .unwrap();
        assert!(!running.contains_key("ops_pk") && !running.contains_key("ops_sk"));
    }

    #[test]
    fn only_an_owed_optin_is_in_the_ops_index() {
        let mut o = sample();
        for (state, owed) in [
            (OptinState::Pending, true),
            (OptinState::Sending, true),
            (OptinState::Sent, false),
            (OptinState::Answered, false),
            (OptinState::Failed, false),
            (OptinState::Expired, false),
            (OptinState::OptedOut, false),
            (OptinState::Declined, false),
        ] {
            o.state = state;
            let item = optin_item(&o).unwrap();
            assert_eq!(item.contains_key("ops_pk"), owed, "{}", state.as_str());
            if owed {
                assert_eq!(item.get("ops_sk"), Some(&s("0000000001000")));
                assert!(
                    matches!(item.get("ops_pk"), Some(AttributeValue::S(v)) if v.starts_with("UNSENT#"))
                );
            }
            assert_eq!(
                optin_from(item).unwrap(),
                o,
                "the index keys are not read back"
            );
        }
    }

    #[test]
    fn quarantine_ttl_is_90_days_in_seconds() {
        let r = QuarantinedRecord {
            id: "0000000001000#k".into(),
            reason: "x".into(),
            received_at_ms: 1_700_000_000_123,
            event_json: "{}".into(),
        };
        let item = quarantined_item(&r, &Retention::default()).unwrap();
        assert_eq!(
            item.get(crate::dynamodb::keys::TTL),
            Some(&n(1_700_000_000 + 90 * 86_400))
        );
        assert_eq!(item.get("pk"), Some(&s(quarantine_pk(&r.id))));
        assert!(quarantine_pk(&r.id).starts_with("QUARANTINE#"));
        assert_eq!(item.get("sk"), Some(&s("0000000001000#k")));
        assert_eq!(item.len(), 6);
        assert_eq!(quarantined_from(item), Ok(r));
    }
}
