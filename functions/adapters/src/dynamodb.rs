//! DynamoDB: the table ports ([`OptinStore`], [`PersonStore`], [`PageStore`],
//! [`QuarantineStore`]) on one on-demand table with string keys `pk` / `sk`.
//!
//! Every state change is one conditional request (`ConditionExpression`), never read-then-write:
//! the condition is the rule, so concurrent duplicates cannot both win. Reads are strongly
//! consistent. Each request is counted in the shared [`RequestCounter`] as `dynamodb.<Operation>`.
//!
//! # Item shapes
//!
//! Attribute names are flat snake_case, readable in the console. Times are epoch milliseconds
//! (`N`, names ending in `_ms`) except the table's TTL attribute `expires_at` (epoch seconds).
//! Flags are `BOOL`. An absent value is an absent attribute, never `NULL`.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | opt-in | `OPTIN#<kind>#<id>` (PSID / IGSID: `OPTIN#<kind>#<page_id>#<id>`) | `OPTIN` | `recipient_kind` (`login_id`, `user_ref`, `psid`, `igsid`), `recipient_id`, `page_id`, `object`, `entry_point` (`login_connect`, `send_to_messenger`, `checkbox`), `source` (`webhook`, `login`, `reply`), `opted_in_at_ms`, `deadline_at_ms`, `state` (`pending`, `sending`, `sent`, `answered`, `failed`, `expired`, `opted_out`), `attempts`, `lease_until_ms`, `job_enqueued`, `job_claim_until_ms`, `schedule_name`, `created_by`, `updated_at_ms`; optional `last_error`, `message_id`, `sent_at_ms`, `psid`, `answered_at_ms`, `reference_raw`, `reference_status`, `reference_payload` |
//! | person | `PSID#<page_id>#<psid>` | `PERSON` | `page_id`, `psid`; optional `login_id`, `user_ref`, `linked_at_ms`, `last_user_message_at_ms`, `opted_out_at_ms`, `opted_out_reason`, `referral_at_ms`, `referral_reference`, `referral_source`, `referral_ad_id` |
//! | marketing token | `PSID#<page_id>#<psid>` | `TOKEN#<topic>` | `page_id`, `psid`, `topic`, `status` (`active`, `stopped`), `status_at_ms`; optional `token`, `token_expires_at_ms` |
//! | page config | `PAGE#<page_id>` | `CONFIG` | see below |
//! | quarantined event | `QUARANTINE` | `<received_at_ms, 13 digits>#<event key>` | `reason`, `received_at_ms`, `event_json`, `expires_at` (TTL: received + 90 days, epoch seconds) |
//!
//! The person and its tokens share a partition: one `Query` on `pk` reads them all.
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
//!
//! To pause a Page by hand: create or edit `pk = PAGE#<page_id>`, `sk = CONFIG`, set `paused`
//! to `true` and `paused_reason` to a note.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use lc_core::lifecycle::optin::{
    schedule_name, EntryPoint, Optin, OptinSource, OptinState, RefInfo, DAY_MS,
};
use lc_core::ports::store::{
    Claim, Created, Finish, Link, LinkResult, MarketingToken, PageConfig, Person,
    QuarantinedRecord, ReferralInfo, TokenStatus,
};
use lc_core::ports::{
    OptinStore, PageStore, PersonStore, PortError, QuarantineStore, RequestCounter,
};
use lc_core::webhook::{Identity, IdentityKind};

use crate::aws::{error_code, port_error};

type Item = HashMap<String, AttributeValue>;

const SERVICE: &str = "dynamodb";
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// How long a quarantined event is kept (TTL), in seconds.
const QUARANTINE_TTL_SECS: i64 = 90 * 24 * 60 * 60;
/// The partition of the quarantined events.
const QUARANTINE_PK: &str = "QUARANTINE";

/// The table ports on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    counter: Option<Arc<RequestCounter>>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            counter: None,
        }
    }

    /// Counts every request into `counter` (service `dynamodb`).
    pub fn with_counter(mut self, counter: Arc<RequestCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes a whole page config item (seeding for tests and the local runner; operators use
    /// the console). Replaces what is there.
    pub async fn put_page(&self, page: &PageConfig) -> Result<(), PortError> {
        self.count("PutItem");
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(page_item(page)))
            .send()
            .await
            .map_err(|e| port_error("PutItem", &e))?;
        Ok(())
    }

    fn count(&self, operation: &str) {
        if let Some(c) = &self.counter {
            c.incr(SERVICE, operation);
        }
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, PortError> {
        self.count("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("GetItem", &e))?;
        Ok(out.item)
    }

    /// Every item of a partition (optionally only sort keys with a prefix), in sort-key order,
    /// at most `limit`.
    async fn query(
        &self,
        pk: &str,
        sk_prefix: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let remaining = limit.saturating_sub(items.len());
            if remaining == 0 {
                return Ok(items);
            }
            let mut e = Expr::default();
            let mut cond = format!("{} = {}", e.name("pk"), e.value(s(pk)));
            if let Some(prefix) = sk_prefix {
                cond = format!(
                    "{cond} AND begins_with({}, {})",
                    e.name("sk"),
                    e.value(s(prefix))
                );
            }
            self.count("Query");
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .consistent_read(true)
                .scan_index_forward(true)
                .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// One conditional `UpdateItem`. `Ok(Ok(new))`: applied (`ALL_NEW` when asked for);
    /// `Ok(Err(old))`: the condition failed (`old`: the item as it was, when DynamoDB returned
    /// it).
    async fn update(
        &self,
        key: (String, String),
        u: Updates,
        condition: String,
        return_new: bool,
        return_old_on_failure: bool,
    ) -> Result<Result<Option<Item>, Option<Item>>, PortError> {
        self.count("UpdateItem");
        let Updates { expr, set, remove } = u;
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key.0))
            .key("sk", s(key.1))
            .update_expression(update_expression(&set, &remove))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values());
        if return_new {
            req = req.return_values(ReturnValue::AllNew);
        }
        if return_old_on_failure {
            req = req.return_values_on_condition_check_failure(
                ReturnValuesOnConditionCheckFailure::AllOld,
            );
        }
        match req.send().await {
            Ok(out) => Ok(Ok(out.attributes)),
            Err(err) if error_code(&err) == Some(CONDITION_FAILED) => {
                Ok(Err(update_failed_item(&err)))
            }
            Err(err) => Err(port_error("UpdateItem", &err)),
        }
    }
}

/// Creates the table (on-demand, `pk` / `sk` strings, TTL on `expires_at`) for tests and the
/// local runner. A table that already exists is left as it is.
pub async fn create_table(client: &Client, name: &str) -> Result<(), PortError> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| PortError::Rejected(format!("CreateTable: {e}")))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(|e| PortError::Rejected(format!("CreateTable: {e}")))
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("ResourceInUseException") => return Ok(()),
        Err(e) => return Err(port_error("CreateTable", &e)),
    }
    // On-demand tables are usable within seconds; moto's at once.
    for _ in 0..60 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| port_error("DescribeTable", &e))?;
        let active = out
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expires_at")
        .build()
        .map_err(|e| PortError::Rejected(format!("UpdateTimeToLive: {e}")))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| port_error("UpdateTimeToLive", &e))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keys

const OPTIN_SK: &str = "OPTIN";
const PERSON_SK: &str = "PERSON";
const PAGE_SK: &str = "CONFIG";
const TOKEN_SK_PREFIX: &str = "TOKEN#";

fn optin_key(key: &str) -> (String, String) {
    (key.to_string(), OPTIN_SK.to_string())
}

fn person_pk(page_id: &str, psid: &str) -> String {
    format!("PSID#{page_id}#{psid}")
}

fn person_key(page_id: &str, psid: &str) -> (String, String) {
    (person_pk(page_id, psid), PERSON_SK.to_string())
}

fn token_key(page_id: &str, psid: &str, topic: &str) -> (String, String) {
    (
        person_pk(page_id, psid),
        format!("{TOKEN_SK_PREFIX}{topic}"),
    )
}

fn page_key(page_id: &str) -> (String, String) {
    (format!("PAGE#{page_id}"), PAGE_SK.to_string())
}

// ---------------------------------------------------------------------------------------------
// Expressions

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

/// Placeholders for the names and values of one request (every name is aliased, so reserved
/// words such as `state`, `status`, `source` and `object` need no thought).
#[derive(Debug, Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == attr) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), attr.to_string());
        k
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The `SET` / `REMOVE` clauses of an update, with their placeholders.
#[derive(Debug, Default)]
struct Updates {
    expr: Expr,
    set: Vec<String>,
    remove: Vec<String>,
}

impl Updates {
    fn set(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (k, v) = (self.expr.name(attr), self.expr.value(v));
        self.set.push(format!("{k} = {v}"));
        self
    }

    /// Keeps a stored value; writes `v` only where the attribute is absent.
    fn set_if_absent(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (k, v) = (self.expr.name(attr), self.expr.value(v));
        self.set.push(format!("{k} = if_not_exists({k}, {v})"));
        self
    }

    fn set_opt(&mut self, attr: &str, v: Option<AttributeValue>) -> &mut Self {
        match v {
            Some(v) => self.set(attr, v),
            None => self.remove(attr),
        }
    }

    fn remove(&mut self, attr: &str) -> &mut Self {
        let k = self.expr.name(attr);
        self.remove.push(k);
        self
    }

    /// A condition over the same placeholders: `f` gets the names and values builder.
    fn condition(&mut self, f: impl FnOnce(&mut Expr) -> String) -> String {
        f(&mut self.expr)
    }
}

fn update_expression(set: &[String], remove: &[String]) -> String {
    let mut out = String::new();
    if !set.is_empty() {
        out.push_str("SET ");
        out.push_str(&set.join(", "));
    }
    if !remove.is_empty() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("REMOVE ");
        out.push_str(&remove.join(", "));
    }
    out
}

/// `state = pending OR (state = sending AND lease_until_ms <= now)`: free to be claimed or
/// expired.
fn free_condition(e: &mut Expr, now_ms: i64) -> String {
    let state = e.name("state");
    let lease = e.name("lease_until_ms");
    let pending = e.value(s(OptinState::Pending.as_str()));
    let sending = e.value(s(OptinState::Sending.as_str()));
    let now = e.value(n(now_ms));
    format!("({state} = {pending} OR ({state} = {sending} AND {lease} <= {now}))")
}

/// `attribute_not_exists(attr) OR attr < at`: the stored event is older (strictly).
fn newer_condition(e: &mut Expr, attr: &str, at_ms: i64) -> String {
    let k = e.name(attr);
    let v = e.value(n(at_ms));
    format!("(attribute_not_exists({k}) OR {k} < {v})")
}

fn update_failed_item(err: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> Option<Item> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
        _ => None,
    }
}

fn put_failed_item(err: &SdkError<PutItemError, impl std::fmt::Debug>) -> Option<Item> {
    match err.as_service_error() {
        Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Items -> domain (a malformed item is `Rejected`, naming its key and attribute, never a panic)

struct Reader<'a> {
    item: &'a Item,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        Reader { item }
    }

    fn key(&self) -> String {
        let part = |k: &str| match self.item.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".to_string(),
        };
        format!("{}/{}", part("pk"), part("sk"))
    }

    fn bad(&self, attr: &str, why: &str) -> PortError {
        PortError::Rejected(format!(
            "malformed item {} in DynamoDB: attribute {attr}: {why}",
            self.key()
        ))
    }

    /// The attribute, unless absent or `NULL`.
    fn get(&self, attr: &str) -> Option<&'a AttributeValue> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(v) => Some(v),
        }
    }

    fn opt_s(&self, attr: &str) -> Result<Option<String>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.bad(attr, "not a string (S)")),
        }
    }

    fn s(&self, attr: &str) -> Result<String, PortError> {
        self.opt_s(attr)?.ok_or_else(|| self.bad(attr, "missing"))
    }

    fn opt_i64(&self, attr: &str) -> Result<Option<i64>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.bad(attr, "not an integer")),
            Some(_) => Err(self.bad(attr, "not a number (N)")),
        }
    }

    fn i64(&self, attr: &str) -> Result<i64, PortError> {
        self.opt_i64(attr)?.ok_or_else(|| self.bad(attr, "missing"))
    }

    fn u32(&self, attr: &str) -> Result<u32, PortError> {
        u32::try_from(self.i64(attr)?).map_err(|_| self.bad(attr, "out of range"))
    }

    fn opt_bool(&self, attr: &str) -> Result<Option<bool>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::Bool(v)) => Ok(Some(*v)),
            Some(_) => Err(self.bad(attr, "not a boolean (BOOL)")),
        }
    }

    fn bool(&self, attr: &str) -> Result<bool, PortError> {
        self.opt_bool(attr)?
            .ok_or_else(|| self.bad(attr, "missing"))
    }

    fn parsed<T>(&self, attr: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, PortError> {
        let v = self.s(attr)?;
        parse(&v).ok_or_else(|| self.bad(attr, "unknown value"))
    }
}

fn identity_kind(s: &str) -> Option<IdentityKind> {
    Some(match s {
        "psid" => IdentityKind::Psid,
        "igsid" => IdentityKind::Igsid,
        "user_ref" => IdentityKind::UserRef,
        "login_id" => IdentityKind::LoginId,
        _ => return None,
    })
}

fn token_status(s: &str) -> Option<TokenStatus> {
    match s {
        "active" => Some(TokenStatus::Active),
        "stopped" => Some(TokenStatus::Stopped),
        _ => None,
    }
}

fn token_status_str(s: TokenStatus) -> &'static str {
    match s {
        TokenStatus::Active => "active",
        TokenStatus::Stopped => "stopped",
    }
}

fn optin_from(item: &Item) -> Result<Optin, PortError> {
    let r = Reader::new(item);
    let reference = match r.opt_s("reference_raw")? {
        None => None,
        Some(raw) => Some(RefInfo {
            raw,
            status: r.s("reference_status")?,
            payload: r.opt_s("reference_payload")?,
        }),
    };
    Ok(Optin {
        recipient: Identity::new(
            r.parsed("recipient_kind", identity_kind)?,
            r.s("recipient_id")?,
        ),
        page_id: r.s("page_id")?,
        object: r.s("object")?,
        entry_point: r.parsed("entry_point", EntryPoint::parse)?,
        source: r.parsed("source", OptinSource::parse)?,
        opted_in_at_ms: r.i64("opted_in_at_ms")?,
        deadline_at_ms: r.i64("deadline_at_ms")?,
        state: r.parsed("state", OptinState::parse)?,
        attempts: r.u32("attempts")?,
        lease_until_ms: r.i64("lease_until_ms")?,
        job_enqueued: r.bool("job_enqueued")?,
        job_claim_until_ms: r.i64("job_claim_until_ms")?,
        schedule_name: r.s("schedule_name")?,
        last_error: r.opt_s("last_error")?,
        message_id: r.opt_s("message_id")?,
        sent_at_ms: r.opt_i64("sent_at_ms")?,
        psid: r.opt_s("psid")?,
        answered_at_ms: r.opt_i64("answered_at_ms")?,
        reference,
        created_by: r.s("created_by")?,
        updated_at_ms: r.i64("updated_at_ms")?,
    })
}

fn person_from(item: &Item, page_id: &str, psid: &str) -> Result<Person, PortError> {
    let r = Reader::new(item);
    let referral = match r.opt_i64("referral_at_ms")? {
        None => None,
        Some(at_ms) => Some(ReferralInfo {
            reference: r.opt_s("referral_reference")?,
            source: r.opt_s("referral_source")?,
            ad_id: r.opt_s("referral_ad_id")?,
            at_ms,
        }),
    };
    Ok(Person {
        page_id: r.opt_s("page_id")?.unwrap_or_else(|| page_id.to_string()),
        psid: r.opt_s("psid")?.unwrap_or_else(|| psid.to_string()),
        login_id: r.opt_s("login_id")?,
        user_ref: r.opt_s("user_ref")?,
        linked_at_ms: r.opt_i64("linked_at_ms")?,
        last_user_message_at_ms: r.opt_i64("last_user_message_at_ms")?,
        opted_out_at_ms: r.opt_i64("opted_out_at_ms")?,
        opted_out_reason: r.opt_s("opted_out_reason")?,
        referral,
    })
}

fn token_from(item: &Item) -> Result<MarketingToken, PortError> {
    let r = Reader::new(item);
    let topic = match r.opt_s("topic")? {
        Some(t) => t,
        None => r
            .s("sk")?
            .strip_prefix(TOKEN_SK_PREFIX)
            .map(str::to_string)
            .ok_or_else(|| r.bad("sk", "not a token sort key"))?,
    };
    Ok(MarketingToken {
        topic,
        token: r.opt_s("token")?,
        status: r.parsed("status", token_status)?,
        expires_at_ms: r.opt_i64("token_expires_at_ms")?,
        status_at_ms: r.i64("status_at_ms")?,
    })
}

fn page_from(item: &Item, page_id: &str) -> Result<PageConfig, PortError> {
    let r = Reader::new(item);
    Ok(PageConfig {
        page_id: r.opt_s("page_id")?.unwrap_or_else(|| page_id.to_string()),
        paused: r.opt_bool("paused")?.unwrap_or(false),
        paused_reason: r.opt_s("paused_reason")?,
        paused_at_ms: r.opt_i64("paused_at_ms")?,
        pause_event_at_ms: r.opt_i64("pause_event_at_ms")?,
        first_message: r.opt_s("first_message")?,
    })
}

fn quarantined_from(item: &Item) -> Result<QuarantinedRecord, PortError> {
    let r = Reader::new(item);
    Ok(QuarantinedRecord {
        id: r.s("sk")?,
        reason: r.s("reason")?,
        received_at_ms: r.i64("received_at_ms")?,
        event_json: r.s("event_json")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Domain -> items

fn optin_item(o: &Optin) -> Item {
    let mut i = Item::new();
    let mut put = |k: &str, v: AttributeValue| {
        i.insert(k.to_string(), v);
    };
    put("pk", s(o.key()));
    put("sk", s(OPTIN_SK));
    put("recipient_kind", s(o.recipient.kind.as_str()));
    put("recipient_id", s(&o.recipient.id));
    put("page_id", s(&o.page_id));
    put("object", s(&o.object));
    put("entry_point", s(o.entry_point.as_str()));
    put("source", s(o.source.as_str()));
    put("opted_in_at_ms", n(o.opted_in_at_ms));
    put("deadline_at_ms", n(o.deadline_at_ms));
    put("state", s(o.state.as_str()));
    put("attempts", n(i64::from(o.attempts)));
    put("lease_until_ms", n(o.lease_until_ms));
    put("job_enqueued", b(o.job_enqueued));
    put("job_claim_until_ms", n(o.job_claim_until_ms));
    put("schedule_name", s(&o.schedule_name));
    put("created_by", s(&o.created_by));
    put("updated_at_ms", n(o.updated_at_ms));
    if let Some(v) = &o.last_error {
        put("last_error", s(v));
    }
    if let Some(v) = &o.message_id {
        put("message_id", s(v));
    }
    if let Some(v) = o.sent_at_ms {
        put("sent_at_ms", n(v));
    }
    if let Some(v) = &o.psid {
        put("psid", s(v));
    }
    if let Some(v) = o.answered_at_ms {
        put("answered_at_ms", n(v));
    }
    if let Some(r) = &o.reference {
        put("reference_raw", s(&r.raw));
        put("reference_status", s(&r.status));
        if let Some(p) = &r.payload {
            put("reference_payload", s(p));
        }
    }
    i
}

fn page_item(p: &PageConfig) -> Item {
    let (pk, sk) = page_key(&p.page_id);
    let mut i = Item::new();
    i.insert("pk".into(), s(pk));
    i.insert("sk".into(), s(sk));
    i.insert("page_id".into(), s(&p.page_id));
    i.insert("paused".into(), b(p.paused));
    if let Some(v) = &p.paused_reason {
        i.insert("paused_reason".into(), s(v));
    }
    if let Some(v) = p.paused_at_ms {
        i.insert("paused_at_ms".into(), n(v));
    }
    if let Some(v) = p.pause_event_at_ms {
        i.insert("pause_event_at_ms".into(), n(v));
    }
    if let Some(v) = &p.first_message {
        i.insert("first_message".into(), s(v));
    }
    i
}

fn quarantined_item(r: &QuarantinedRecord) -> Item {
    let mut i = Item::new();
    i.insert("pk".into(), s(QUARANTINE_PK));
    i.insert("sk".into(), s(&r.id));
    i.insert("reason".into(), s(&r.reason));
    i.insert("received_at_ms".into(), n(r.received_at_ms));
    i.insert("event_json".into(), s(&r.event_json));
    i.insert(
        "expires_at".into(),
        n(r.received_at_ms.div_euclid(1000) + QUARANTINE_TTL_SECS),
    );
    i
}

/// Where a link writes the identifier on the person, and the entry point of a reply-first
/// opt-in.
fn link_target(kind: IdentityKind) -> Result<(&'static str, EntryPoint), PortError> {
    match kind {
        IdentityKind::LoginId => Ok(("login_id", EntryPoint::LoginConnect)),
        IdentityKind::UserRef => Ok(("user_ref", EntryPoint::Checkbox)),
        other => Err(PortError::Rejected(format!(
            "link: identifier kind {} cannot be linked to a PSID",
            other.as_str()
        ))),
    }
}

fn build_update(
    table: &str,
    key: (String, String),
    u: Updates,
    condition: Option<String>,
) -> Result<TransactWriteItem, PortError> {
    let Updates { expr, set, remove } = u;
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(key.0))
        .key("sk", s(key.1))
        .update_expression(update_expression(&set, &remove))
        .set_condition_expression(condition)
        .set_expression_attribute_names(expr.names())
        .set_expression_attribute_values(expr.values())
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
        .build()
        .map_err(|e| PortError::Rejected(format!("TransactWriteItems: {e}")))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

// ---------------------------------------------------------------------------------------------
// Ports

#[async_trait]
impl OptinStore for DynamoStore {
    async fn create_optin(&self, optin: &Optin) -> Result<Created, PortError> {
        self.count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(optin_item(optin)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(Created::Created),
            Err(err) if error_code(&err) == Some(CONDITION_FAILED) => err,
            Err(err) => return Err(port_error("PutItem", &err)),
        };
        let old = match put_failed_item(&err) {
            Some(old) => old,
            // A backend without ALL_OLD on failure: read what holds the key.
            None => self.get_item(optin.key(), OPTIN_SK).await?.ok_or_else(|| {
                PortError::Unavailable(
                    "PutItem: opt-in key taken, then gone before it could be read".into(),
                )
            })?,
        };
        Ok(Created::Exists(Box::new(optin_from(&old)?)))
    }

    async fn get_optin(&self, key: &str) -> Result<Option<Optin>, PortError> {
        self.get_item(key.to_string(), OPTIN_SK)
            .await?
            .map(|i| optin_from(&i))
            .transpose()
    }

    async fn mark_job_enqueued(&self, key: &str, now_ms: i64) -> Result<(), PortError> {
        let mut u = Updates::default();
        u.set("job_enqueued", b(true))
            .set("job_claim_until_ms", n(0))
            .set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| format!("attribute_exists({})", e.name("pk")));
        // A missing opt-in has nothing to mark (the update must not create a partial item):
        // a failed condition is not an error.
        let _applied = self.update(optin_key(key), u, cond, false, false).await?;
        Ok(())
    }

    async fn take_job(
        &self,
        key: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("job_claim_until_ms", n(claim_until_ms))
            .set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            format!(
                "attribute_exists({pk}) AND {enq} = {f} AND {state} = {pending} AND {claim} <= {now}",
                pk = e.name("pk"),
                enq = e.name("job_enqueued"),
                f = e.value(b(false)),
                state = e.name("state"),
                pending = e.value(s(OptinState::Pending.as_str())),
                claim = e.name("job_claim_until_ms"),
                now = e.value(n(now_ms)),
            )
        });
        Ok(self
            .update(optin_key(key), u, cond, false, false)
            .await?
            .is_ok())
    }

    async fn claim(&self, key: &str, now_ms: i64, lease_until_ms: i64) -> Result<Claim, PortError> {
        let mut u = Updates::default();
        u.set("state", s(OptinState::Sending.as_str()))
            .set("lease_until_ms", n(lease_until_ms))
            .set("updated_at_ms", n(now_ms));
        let attempts = u.expr.name("attempts");
        let one = u.expr.value(n(1));
        u.set.push(format!("{attempts} = {attempts} + {one}"));
        let cond = u.condition(|e| {
            let free = free_condition(e, now_ms);
            format!(
                "attribute_exists({pk}) AND {deadline} > {now} AND {free}",
                pk = e.name("pk"),
                deadline = e.name("deadline_at_ms"),
                now = e.value(n(now_ms)),
            )
        });
        match self.update(optin_key(key), u, cond, true, true).await? {
            Ok(Some(new)) => Ok(Claim::Claimed(Box::new(optin_from(&new)?))),
            Ok(None) => Err(PortError::Unavailable(
                "UpdateItem: claim applied but no attributes returned".into(),
            )),
            Err(Some(old)) => Ok(Claim::NotClaimable(Box::new(optin_from(&old)?))),
            // No item with the failure: it is missing (or the backend does not return it).
            Err(None) => match self.get_optin(key).await? {
                Some(o) => Ok(Claim::NotClaimable(Box::new(o))),
                None => Ok(Claim::Missing),
            },
        }
    }

    async fn finish(
        &self,
        key: &str,
        attempt: u32,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        match finish {
            Finish::Sent {
                message_id,
                sent_at_ms,
            } => {
                u.set("state", s(OptinState::Sent.as_str()))
                    .set("sent_at_ms", n(*sent_at_ms));
                if let Some(m) = message_id {
                    u.set("message_id", s(m));
                }
            }
            Finish::Release { error } => {
                u.set("state", s(OptinState::Pending.as_str()))
                    .set("lease_until_ms", n(0))
                    .set("last_error", s(error));
            }
            Finish::Failed { error } => {
                u.set("state", s(OptinState::Failed.as_str()))
                    .set("last_error", s(error));
            }
            Finish::OptedOut { error } => {
                u.set("state", s(OptinState::OptedOut.as_str()))
                    .set("last_error", s(error));
            }
        }
        u.set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            format!(
                "{state} = {sending} AND {attempts} = {attempt}",
                state = e.name("state"),
                sending = e.value(s(OptinState::Sending.as_str())),
                attempts = e.name("attempts"),
                attempt = e.value(n(i64::from(attempt))),
            )
        });
        Ok(self
            .update(optin_key(key), u, cond, false, false)
            .await?
            .is_ok())
    }

    async fn expire(
        &self,
        key: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<Option<Optin>, PortError> {
        let mut u = Updates::default();
        u.set("state", s(OptinState::Expired.as_str()))
            .set("last_error", s(reason))
            .set("updated_at_ms", n(now_ms));
        let cond = u.condition(|e| {
            let free = free_condition(e, now_ms);
            format!(
                "attribute_exists({pk}) AND {deadline} <= {now} AND {free}",
                pk = e.name("pk"),
                deadline = e.name("deadline_at_ms"),
                now = e.value(n(now_ms)),
            )
        });
        match self.update(optin_key(key), u, cond, true, false).await? {
            Ok(Some(new)) => Ok(Some(optin_from(&new)?)),
            Ok(None) => Err(PortError::Unavailable(
                "UpdateItem: expiry applied but no attributes returned".into(),
            )),
            Err(_) => Ok(None),
        }
    }
}

#[async_trait]
impl PersonStore for DynamoStore {
    async fn get_person(&self, page_id: &str, psid: &str) -> Result<Option<Person>, PortError> {
        self.get_item(person_pk(page_id, psid), PERSON_SK)
            .await?
            .map(|i| person_from(&i, page_id, psid))
            .transpose()
    }

    async fn record_user_message(
        &self,
        page_id: &str,
        psid: &str,
        at_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("last_user_message_at_ms", n(at_ms));
        let cond = u.condition(|e| newer_condition(e, "last_user_message_at_ms", at_ms));
        Ok(self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?
            .is_ok())
    }

    async fn link(&self, link: &Link, now_ms: i64) -> Result<LinkResult, PortError> {
        let (id_attr, entry_point) = link_target(link.identifier.kind)?;

        let mut person = Updates::default();
        person
            .set("page_id", s(&link.page_id))
            .set("psid", s(&link.psid))
            .set(id_attr, s(&link.identifier.id))
            .set_if_absent("linked_at_ms", n(link.at_ms));
        let person = build_update(
            &self.table,
            person_key(&link.page_id, &link.psid),
            person,
            None,
        )?;

        // Answers the opt-in; if the reply came first, every field an opt-in needs is written
        // too (if_not_exists), so the item is a complete `answered` opt-in.
        let mut optin = Updates::default();
        optin
            .set("psid", s(&link.psid))
            .set("state", s(OptinState::Answered.as_str()))
            .set("updated_at_ms", n(now_ms))
            .set_if_absent("answered_at_ms", n(link.at_ms))
            .set_if_absent("recipient_kind", s(link.identifier.kind.as_str()))
            .set_if_absent("recipient_id", s(&link.identifier.id))
            .set_if_absent("page_id", s(&link.page_id))
            .set_if_absent("object", s("page"))
            .set_if_absent("entry_point", s(entry_point.as_str()))
            .set_if_absent("source", s(OptinSource::Reply.as_str()))
            .set_if_absent("opted_in_at_ms", n(link.at_ms))
            .set_if_absent("deadline_at_ms", n(link.at_ms + DAY_MS))
            .set_if_absent("attempts", n(0))
            .set_if_absent("lease_until_ms", n(0))
            .set_if_absent("job_enqueued", b(false))
            .set_if_absent("job_claim_until_ms", n(0))
            .set_if_absent("schedule_name", s(schedule_name(&link.optin_key)))
            .set_if_absent("created_by", s(OptinSource::Reply.as_str()));
        let cond = optin.condition(|e| {
            format!(
                "attribute_not_exists({pk}) OR {state} <> {sending} OR {lease} <= {now}",
                pk = e.name("pk"),
                state = e.name("state"),
                sending = e.value(s(OptinState::Sending.as_str())),
                lease = e.name("lease_until_ms"),
                now = e.value(n(now_ms)),
            )
        });
        let optin = build_update(&self.table, optin_key(&link.optin_key), optin, Some(cond))?;

        self.count("TransactWriteItems");
        let res = self
            .client
            .transact_write_items()
            .transact_items(person)
            .transact_items(optin)
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(LinkResult::Linked),
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
            err.as_service_error()
        {
            let reasons = t.cancellation_reasons();
            let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
            if code(1) == "ConditionalCheckFailed" {
                return Ok(LinkResult::SendInFlight);
            }
            let codes = (0..reasons.len()).map(code).collect::<Vec<_>>().join(",");
            // TransactionConflict (a concurrent write to either item) and throttling: retry.
            return Err(PortError::Unavailable(format!(
                "TransactWriteItems: transaction cancelled [{codes}]"
            )));
        }
        Err(port_error("TransactWriteItems", &err))
    }

    async fn record_referral(
        &self,
        page_id: &str,
        psid: &str,
        referral: &ReferralInfo,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("referral_at_ms", n(referral.at_ms))
            .set_opt("referral_reference", referral.reference.as_deref().map(s))
            .set_opt("referral_source", referral.source.as_deref().map(s))
            .set_opt("referral_ad_id", referral.ad_id.as_deref().map(s));
        let cond = u.condition(|e| newer_condition(e, "referral_at_ms", referral.at_ms));
        Ok(self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?
            .is_ok())
    }

    async fn set_token(
        &self,
        page_id: &str,
        psid: &str,
        token: &MarketingToken,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("topic", s(&token.topic))
            .set("status", s(token_status_str(token.status)))
            .set("status_at_ms", n(token.status_at_ms));
        // A change that names a token replaces token and expiry; one that does not (STOP /
        // RESUME) keeps the stored token, and its expiry unless it brings one.
        match &token.token {
            Some(t) => {
                u.set("token", s(t))
                    .set_opt("token_expires_at_ms", token.expires_at_ms.map(n));
            }
            None => {
                if let Some(exp) = token.expires_at_ms {
                    u.set("token_expires_at_ms", n(exp));
                }
            }
        }
        let cond = u.condition(|e| newer_condition(e, "status_at_ms", token.status_at_ms));
        Ok(self
            .update(
                token_key(page_id, psid, &token.topic),
                u,
                cond,
                false,
                false,
            )
            .await?
            .is_ok())
    }

    async fn get_tokens(
        &self,
        page_id: &str,
        psid: &str,
    ) -> Result<Vec<MarketingToken>, PortError> {
        self.query(&person_pk(page_id, psid), Some(TOKEN_SK_PREFIX), usize::MAX)
            .await?
            .iter()
            .map(token_from)
            .collect()
    }

    async fn opt_out(
        &self,
        page_id: &str,
        psid: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<(), PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("psid", s(psid))
            .set("opted_out_at_ms", n(at_ms))
            .set("opted_out_reason", s(reason));
        // The earliest opt-out (by event time) is kept, with its reason.
        let cond = u.condition(|e| {
            let k = e.name("opted_out_at_ms");
            let v = e.value(n(at_ms));
            format!("attribute_not_exists({k}) OR {k} > {v}")
        });
        // A later opt-out fails the condition: the earlier one stays, which is not an error.
        let _kept = self
            .update(person_key(page_id, psid), u, cond, false, false)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PageStore for DynamoStore {
    async fn get_page(&self, page_id: &str) -> Result<Option<PageConfig>, PortError> {
        let (pk, sk) = page_key(page_id);
        self.get_item(pk, &sk)
            .await?
            .map(|i| page_from(&i, page_id))
            .transpose()
    }

    async fn set_paused(
        &self,
        page_id: &str,
        reason: Option<&str>,
        event_at_ms: i64,
    ) -> Result<bool, PortError> {
        let mut u = Updates::default();
        u.set("page_id", s(page_id))
            .set("paused", b(reason.is_some()))
            .set("pause_event_at_ms", n(event_at_ms));
        match reason {
            Some(r) => {
                u.set("paused_reason", s(r))
                    .set("paused_at_ms", n(event_at_ms));
            }
            None => {
                u.remove("paused_reason").remove("paused_at_ms");
            }
        }
        let cond = u.condition(|e| newer_condition(e, "pause_event_at_ms", event_at_ms));
        Ok(self
            .update(page_key(page_id), u, cond, false, false)
            .await?
            .is_ok())
    }
}

#[async_trait]
impl QuarantineStore for DynamoStore {
    async fn put_quarantined(&self, record: &QuarantinedRecord) -> Result<(), PortError> {
        self.count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(quarantined_item(record)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .send()
            .await;
        match res {
            // The same id again: the first record stays.
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some(CONDITION_FAILED) => Ok(()),
            Err(e) => Err(port_error("PutItem", &e)),
        }
    }

    async fn list_quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRecord>, PortError> {
        self.query(QUARANTINE_PK, None, limit)
            .await?
            .iter()
            .map(quarantined_from)
            .collect()
    }

    async fn delete_quarantined(&self, id: &str) -> Result<(), PortError> {
        self.count("DeleteItem");
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(QUARANTINE_PK))
            .key("sk", s(id))
            .send()
            .await
            .map_err(|e| port_error("DeleteItem", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn optin_round_trips_through_an_item() {
        let o = sample();
        let item = optin_item(&o);
        assert_eq!(item.get("pk"), Some(&s("OPTIN#login_id#L1")));
        assert_eq!(item.get("job_enqueued"), Some(&b(false)));
        assert!(!item.contains_key("psid"), "absent, not NULL");
        assert!(!item.contains_key("reference_payload"));
        assert_eq!(optin_from(&item), Ok(o));
    }

    #[test]
    fn malformed_items_are_rejected_naming_the_key() {
        let mut item = optin_item(&sample());
        item.insert("state".into(), s("flying"));
        let err = optin_from(&item).unwrap_err();
        assert!(
            matches!(&err, PortError::Rejected(m) if m.contains("OPTIN#login_id#L1/OPTIN") && m.contains("state")),
            "{err}"
        );
        let mut item = optin_item(&sample());
        item.insert("attempts".into(), s("1"));
        assert!(matches!(optin_from(&item), Err(PortError::Rejected(_))));
        let mut item = optin_item(&sample());
        item.insert("attempts".into(), n(-1));
        assert!(matches!(optin_from(&item), Err(PortError::Rejected(_))));
        let mut item = optin_item(&sample());
        item.remove("deadline_at_ms");
        assert!(
            matches!(optin_from(&item), Err(PortError::Rejected(m)) if m.contains("deadline_at_ms"))
        );
        let mut item = optin_item(&sample());
        item.insert("psid".into(), AttributeValue::Null(true));
        assert_eq!(
            optin_from(&item).map(|o| o.psid),
            Ok(None),
            "NULL reads as absent"
        );
    }

    #[test]
    fn hand_written_page_config_is_read_leniently() {
        let mut item = Item::new();
        item.insert("pk".into(), s("PAGE#100"));
        item.insert("sk".into(), s("CONFIG"));
        item.insert("first_message".into(), s(r#"{"text":"hi"}"#));
        let p = page_from(&item, "100").unwrap();
        assert_eq!(p.page_id, "100");
        assert!(!p.paused);
        assert_eq!(p.first_message.as_deref(), Some(r#"{"text":"hi"}"#));
        item.insert("paused".into(), s("yes"));
        assert!(
            matches!(page_from(&item, "100"), Err(PortError::Rejected(m)) if m.contains("PAGE#100/CONFIG"))
        );
        let full = PageConfig {
            page_id: "100".into(),
            paused: true,
            paused_reason: Some("r".into()),
            paused_at_ms: Some(5),
            pause_event_at_ms: Some(5),
            first_message: Some("{}".into()),
        };
        assert_eq!(page_from(&page_item(&full), "100"), Ok(full));
    }

    #[test]
    fn quarantine_ttl_is_90_days_in_seconds() {
        let r = QuarantinedRecord {
            id: "0000000001000#k".into(),
            reason: "x".into(),
            received_at_ms: 1_700_000_000_123,
            event_json: "{}".into(),
        };
        let item = quarantined_item(&r);
        assert_eq!(
            item.get("expires_at"),
            Some(&n(1_700_000_000 + 90 * 86_400))
        );
        assert_eq!(quarantined_from(&item), Ok(r));
    }

    #[test]
    fn update_expressions_alias_every_name() {
        let mut u = Updates::default();
        u.set("state", s("x"))
            .set_if_absent("source", s("reply"))
            .remove("paused_reason");
        let cond = u.condition(|e| newer_condition(e, "state", 5));
        let Updates { expr, set, remove } = u;
        let text = update_expression(&set, &remove);
        assert_eq!(
            text,
            "SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) REMOVE #n2"
        );
        assert_eq!(cond, "(attribute_not_exists(#n0) OR #n0 < :v2)");
        assert_eq!(expr.names.len(), 3);
        assert_eq!(expr.values.len(), 3);
    }
}
