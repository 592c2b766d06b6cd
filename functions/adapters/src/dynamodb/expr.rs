//! Condition and update expressions, written by hand: they are the rules of every state change
//! (see the port impls), which an item mapping cannot express.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use lc_core::ports::PortError;

use super::keys::{Key, PK, SK};

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

/// Placeholders for the names and values of one request (every name is aliased, so reserved
/// words such as `state`, `status`, `source` and `object` need no thought).
#[derive(Debug, Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(super) fn name(&mut self, attr: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == attr) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), attr.to_string());
        k
    }

    pub(super) fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    /// `None` when empty: DynamoDB refuses an empty placeholder map.
    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The `SET` / `ADD` / `REMOVE` clauses of an update, with their placeholders.
#[derive(Debug, Default)]
pub(super) struct Updates {
    pub(super) expr: Expr,
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
}

impl Updates {
    pub(super) fn set(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (k, v) = (self.expr.name(attr), self.expr.value(v));
        self.set.push(format!("{k} = {v}"));
        self
    }

    /// Keeps a stored value; writes `v` only where the attribute is absent.
    pub(super) fn set_if_absent(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (k, v) = (self.expr.name(attr), self.expr.value(v));
        self.set.push(format!("{k} = if_not_exists({k}, {v})"));
        self
    }

    pub(super) fn set_opt(&mut self, attr: &str, v: Option<AttributeValue>) -> &mut Self {
        match v {
            Some(v) => self.set(attr, v),
            None => self.remove(attr),
        }
    }

    pub(super) fn add(&mut self, attr: &str, by: i64) -> &mut Self {
        let (k, v) = (self.expr.name(attr), self.expr.value(n(by)));
        self.set.push(format!("{k} = {k} + {v}"));
        self
    }

    /// Adds `members` to the String Set `attr` (created if absent): idempotent, no duplicates.
    /// `members` must not be empty (DynamoDB refuses an empty set).
    pub(super) fn add_to_set(&mut self, attr: &str, members: Vec<String>) -> &mut Self {
        let (k, v) = (
            self.expr.name(attr),
            self.expr.value(AttributeValue::Ss(members)),
        );
        self.add.push(format!("{k} {v}"));
        self
    }

    pub(super) fn remove(&mut self, attr: &str) -> &mut Self {
        let k = self.expr.name(attr);
        self.remove.push(k);
        self
    }

    /// A condition over the same placeholders: `f` gets the names and values builder.
    pub(super) fn condition(&mut self, f: impl FnOnce(&mut Expr) -> String) -> String {
        f(&mut self.expr)
    }

    pub(super) fn expression(&self) -> String {
        let mut out = String::new();
        if !self.set.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.set.join(", "));
        }
        for (clause, parts) in [("ADD ", &self.add), ("REMOVE ", &self.remove)] {
            if parts.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(clause);
            out.push_str(&parts.join(", "));
        }
        out
    }

    /// The update as one item of a `TransactWriteItems`.
    pub(super) fn into_transact_item(
        self,
        table: &str,
        key: Key,
        condition: Option<String>,
    ) -> Result<TransactWriteItem, PortError> {
        let update = Update::builder()
            .table_name(table)
            .key(PK, s(key.0))
            .key(SK, s(key.1))
            .update_expression(self.expression())
            .set_condition_expression(condition)
            .set_expression_attribute_names(self.expr.names())
            .set_expression_attribute_values(self.expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
            .build()
            .map_err(|e| PortError::Rejected(format!("TransactWriteItems: {e}")))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// A whole item written in a `TransactWriteItems`, under `condition`.
pub(super) fn transact_put(
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: String,
    e: &Expr,
) -> Result<TransactWriteItem, PortError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_names(e.names())
        .set_expression_attribute_values(e.values())
        .build()
        .map_err(|e| PortError::Rejected(format!("TransactWriteItems: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A condition on an item a `TransactWriteItems` does not write.
pub(super) fn transact_check(
    table: &str,
    key: Key,
    condition: String,
    e: &Expr,
) -> Result<TransactWriteItem, PortError> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .key(PK, s(key.0))
        .key(SK, s(key.1))
        .condition_expression(condition)
        .set_expression_attribute_names(e.names())
        .set_expression_attribute_values(e.values())
        .build()
        .map_err(|e| PortError::Rejected(format!("TransactWriteItems: {e}")))?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// `generation = g`, where an item written before generations (no `generation` attribute) is
/// generation 1. Written out per case: DynamoDB compares an attribute with a value, never two
/// values, so "absent and g is 1" is decided here.
pub(super) fn generation_condition(e: &mut Expr, generation: u32) -> String {
    let k = e.name("generation");
    let v = e.value(n(i64::from(generation)));
    if generation == 1 {
        format!("(attribute_not_exists({k}) OR {k} = {v})")
    } else {
        format!("{k} = {v}")
    }
}

/// `attribute_not_exists(attr) OR attr < at`: the stored event is older (strictly).
pub(super) fn newer_condition(e: &mut Expr, attr: &str, at_ms: i64) -> String {
    let k = e.name(attr);
    let v = e.value(n(at_ms));
    format!("(attribute_not_exists({k}) OR {k} < {v})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_expressions_alias_every_name() {
        let mut u = Updates::default();
        u.set("state", s("x"))
            .set_if_absent("source", s("reply"))
            .remove("paused_reason");
        let cond = u.condition(|e| newer_condition(e, "state", 5));
        assert_eq!(
            u.expression(),
            "SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) REMOVE #n2"
        );
        assert_eq!(cond, "(attribute_not_exists(#n0) OR #n0 < :v2)");
        assert_eq!(u.expr.names.len(), 3);
        assert_eq!(u.expr.values.len(), 3);
    }

    #[test]
    fn set_additions_come_after_set_and_before_remove() {
        let mut u = Updates::default();
        u.remove("x")
            .add_to_set("linked", vec!["login_id:L1".into()])
            .set("login_id", s("L1"));
        assert_eq!(u.expression(), "SET #n2 = :v1 ADD #n1 :v0 REMOVE #n0");
        assert_eq!(
            u.expr.values.get(":v0"),
            Some(&AttributeValue::Ss(vec!["login_id:L1".into()]))
        );
    }

    #[test]
    fn an_absent_generation_is_the_first() {
        let mut e = Expr::default();
        assert_eq!(
            generation_condition(&mut e, 1),
            "(attribute_not_exists(#n0) OR #n0 = :v0)"
        );
        assert_eq!(generation_condition(&mut e, 2), "#n0 = :v1");
        assert_eq!(e.values.get(":v1"), Some(&n(2)));
    }

    #[test]
    fn an_increment_reuses_the_attribute_name() {
        let mut u = Updates::default();
        u.set("state", s("sending")).add("attempts", 1);
        assert_eq!(u.expression(), "SET #n0 = :v0, #n1 = #n1 + :v1");
        assert_eq!(u.expr.values.get(":v1"), Some(&n(1)));
    }
}
