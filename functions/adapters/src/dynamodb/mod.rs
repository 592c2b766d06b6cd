//! DynamoDB: the table ports ([`OptinStore`], [`PersonStore`], [`PageStore`],
//! [`QuarantineStore`], [`RequestStore`]) on one on-demand table with string keys `pk` / `sk`.
//!
//! Every state change is one conditional request (`ConditionExpression`): the condition is the
//! rule, so concurrent duplicates cannot both win. The one read-then-write is `link` (a
//! transaction cannot choose its update from the stored value): it reads the opt-in, and its
//! transaction is conditional on the opt-in still being what it read; it reads again when not.
//! Reads are strongly consistent. Each request is counted in the shared [`RequestCounter`] as `dynamodb.<Operation>`.
//!
//! Where things are: the key schema in `keys`, the stored item shapes (documented there, for
//! operators too) and their mapping in `items`, condition and update expressions in `expr`, SDK
//! error classification in `errors`, and one file per port.
//!
//! [`OptinStore`]: lc_core::ports::OptinStore
//! [`PersonStore`]: lc_core::ports::PersonStore
//! [`PageStore`]: lc_core::ports::PageStore
//! [`QuarantineStore`]: lc_core::ports::QuarantineStore
//! [`RequestStore`]: lc_core::ports::RequestStore

mod errors;
mod expr;
mod identity;
mod items;
mod keys;
mod optins;
mod pages;
mod people;
mod quarantine;
mod requests;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use lc_core::ports::store::PageConfig;
use lc_core::ports::{PortError, RequestCounter};
use lc_core::support::retention::Retention;

use self::errors::{condition_failed_update, error_code, port_error};
use self::expr::{s, Expr, Updates};
use self::items::{page_item, Item};
use self::keys::{Key, OPS_INDEX, OPS_PK, OPS_SK, PK, SK, TTL};

/// What the `ops` index holds besides its keys and the table's: the pause fields of a Page
/// (an opt-in has only `page_id` of these, which never changes, so an opt-in's updates never
/// write the index). `template.yaml` declares the same.
pub const OPS_INDEX_ATTRIBUTES: [&str; 4] = ["page_id", "paused", "paused_reason", "paused_at_ms"];

const SERVICE: &str = "dynamodb";

/// The table ports on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    counter: Option<Arc<RequestCounter>>,
    /// How long items live (their `expires_at`).
    retention: Retention,
}

/// What a conditional update came to. `Failed` carries the item as it was, when DynamoDB
/// returned it with the failure.
enum Conditional {
    Applied(Option<Item>),
    Failed(Option<Item>),
}

impl Conditional {
    fn applied(&self) -> bool {
        matches!(self, Conditional::Applied(_))
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            counter: None,
            retention: Retention::default(),
        }
    }

    /// Items get their TTLs from `retention` (default: [`Retention::default`]).
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
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

    /// Every item of the table, raw, page by page (strongly consistent). For tests and local
    /// tools on small tables: a deployed table is never scanned.
    pub async fn scan_all(
        &self,
    ) -> Result<
        Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
        PortError,
    > {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| PortError::Unavailable(format!("scan: {e}")))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Writes a whole page config item (seeding for tests and the local runner; operators use
    /// the console). Replaces what is there.
    pub async fn put_page(&self, page: &PageConfig) -> Result<(), PortError> {
        let item = page_item(page)?;
        self.count("PutItem");
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
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

    async fn get_item(&self, (pk, sk): Key) -> Result<Option<Item>, PortError> {
        self.count("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
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
        let mut e = Expr::default();
        let mut cond = format!("{} = {}", e.name(PK), e.value(s(pk)));
        if let Some(prefix) = sk_prefix {
            cond = format!(
                "{cond} AND begins_with({}, {})",
                e.name(SK),
                e.value(s(prefix))
            );
        }
        self.query_pages(None, &e, &cond, None, limit).await
    }

    /// One unconditional `DeleteItem` (absent is fine). `true` if an item was there.
    async fn delete_item(&self, (pk, sk): Key) -> Result<bool, PortError> {
        self.count("DeleteItem");
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| port_error("DeleteItem", &e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    /// One unconditional `PutItem` (replaces what is there).
    async fn put_item(&self, item: Item) -> Result<(), PortError> {
        self.count("PutItem");
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("PutItem", &e))?;
        Ok(())
    }

    /// The `ops` index partition `ops_pk` in sort-key order (oldest first), at most `limit`
    /// items; `paused_only` keeps the items whose `paused` is true (a Page unpaused by hand in
    /// the console keeps its index keys). Eventually consistent, as every index read is.
    async fn query_index(
        &self,
        ops_pk: &str,
        limit: usize,
        paused_only: bool,
    ) -> Result<Vec<Item>, PortError> {
        let mut e = Expr::default();
        let cond = format!("{} = {}", e.name(OPS_PK), e.value(s(ops_pk)));
        let filter = paused_only.then(|| {
            format!(
                "{} = {}",
                e.name("paused"),
                e.value(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            )
        });
        self.query_pages(Some(OPS_INDEX), &e, &cond, filter.as_deref(), limit)
            .await
    }

    /// `Query` page after page, in sort-key order, until `limit` items or the last page: on the
    /// table strongly consistent, on `index` eventually consistent (all an index offers).
    async fn query_pages(
        &self,
        index: Option<&str>,
        e: &Expr,
        cond: &str,
        filter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let remaining = limit.saturating_sub(items.len());
            if remaining == 0 {
                return Ok(items);
            }
            self.count("Query");
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(cond)
                .set_filter_expression(filter.map(str::to_string))
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .set_consistent_read(index.is_none().then_some(true))
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

    /// One conditional `UpdateItem`. `return_new`: the applied item comes back (`ALL_NEW`);
    /// `return_old_on_failure`: so does the item that failed the condition (`ALL_OLD`).
    async fn update(
        &self,
        (pk, sk): Key,
        u: Updates,
        condition: String,
        return_new: bool,
        return_old_on_failure: bool,
    ) -> Result<Conditional, PortError> {
        self.count("UpdateItem");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(u.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(u.expr.names())
            .set_expression_attribute_values(u.expr.values());
        if return_new {
            req = req.return_values(ReturnValue::AllNew);
        }
        if return_old_on_failure {
            req = req.return_values_on_condition_check_failure(
                ReturnValuesOnConditionCheckFailure::AllOld,
            );
        }
        match req.send().await {
            Ok(out) => Ok(Conditional::Applied(out.attributes)),
            Err(err) => match condition_failed_update(&err) {
                Some(old) => Ok(Conditional::Failed(old)),
                None => Err(port_error("UpdateItem", &err)),
            },
        }
    }
}

/// Creates the table (on-demand, `pk` / `sk` strings, TTL on `expires_at`, the sparse `ops`
/// index as `template.yaml` declares it) for tests and the local runner. A table that already
/// exists is left as it is.
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
    let ops_index = GlobalSecondaryIndex::builder()
        .index_name(OPS_INDEX)
        .key_schema(key(OPS_PK, KeyType::Hash)?)
        .key_schema(key(OPS_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    OPS_INDEX_ATTRIBUTES.iter().map(|a| a.to_string()).collect(),
                ))
                .build(),
        )
        .build()
        .map_err(|e| PortError::Rejected(format!("CreateTable: {e}")))?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .attribute_definitions(attr(OPS_PK)?)
        .attribute_definitions(attr(OPS_SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(ops_index)
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
            .is_some_and(|s| *s == TableStatus::Active);
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL)
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

/// The adapter against canned DynamoDB answers: what the SDK makes of the wire, without moto.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_runtime_api::client::http::{
        http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use lc_core::ports::{OptinStore, PageStore};

    /// Answers every request with one status and JSON body.
    #[derive(Debug, Clone)]
    struct Canned(u16, &'static str);

    impl HttpConnector for Canned {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            let status = StatusCode::try_from(self.0).expect("valid status");
            HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(self.1))))
        }
    }

    fn store(status: u16, body: &'static str) -> DynamoStore {
        let canned = Canned(status, body);
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
            // The SDK's own retries would only repeat the canned answer.
            .retry_config(RetryConfig::disabled())
            .http_client(http_client_fn(move |_, _| {
                SharedHttpConnector::new(canned.clone())
            }))
            .build();
        DynamoStore::new(Client::from_conf(config), "t")
    }

    fn error_body(code: &'static str) -> &'static str {
        match code {
            "TransactionInProgressException" => {
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionInProgressException","message":"busy"}"#
            }
            "ProvisionedThroughputExceededException" => {
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow"}"#
            }
            "InternalServerError" => {
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"oops"}"#
            }
            "ValidationException" => {
                r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}"#
            }
            _ => r#"{}"#,
        }
    }

    #[tokio::test]
    async fn wire_errors_are_classified_by_the_sdk() {
        for (status, code, retryable) in [
            (400, "TransactionInProgressException", true),
            (400, "ProvisionedThroughputExceededException", true),
            (500, "InternalServerError", true),
            (400, "ValidationException", false),
        ] {
            let err = store(status, error_body(code))
                .get_optin("OPTIN#login_id#L1")
                .await
                .unwrap_err();
            assert_eq!(err.is_retryable(), retryable, "{code}: {err:?}");
            assert!(err.to_string().contains(code), "{err}");
        }
    }

    #[tokio::test]
    async fn a_value_type_newer_than_the_sdk_is_refused_not_a_panic() {
        // `ZZ` is no DynamoDB type today: the SDK reads it as `AttributeValue::Unknown`.
        let page = store(
            200,
            r#"{"Item":{"pk":{"S":"PAGE#100"},"sk":{"S":"CONFIG"},"note":{"ZZ":"x"},"paused":{"BOOL":true}}}"#,
        );
        let config = page
            .get_page("100")
            .await
            .expect("an unknown extra attribute is ignored");
        assert!(config.is_some_and(|c| c.paused));

        let optin = store(
            200,
            r#"{"Item":{"pk":{"S":"OPTIN#login_id#L1"},"sk":{"S":"OPTIN"},"state":{"ZZ":"x"}}}"#,
        );
        let err = optin.get_optin("OPTIN#login_id#L1").await.unwrap_err();
        assert!(
            matches!(&err, PortError::Rejected(m) if m.contains("OPTIN#login_id#L1/OPTIN")),
            "{err}"
        );
    }
}
