//! An [`Attempt`] as one `TransactWriteItems`, and what DynamoDB's answer
//! means for the decision that made it.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::{StockStore, StoreError};
use crate::clock;
use crate::keys::{self, Key};
use crate::level::{sold_attribute, LevelView, SOLD_PREFIX};
use crate::port::{Attempt, Current, Failed, LevelCondition, LevelEffect, LevelWrite, StoredReceipt, Write};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(k: &Key) -> Item {
    HashMap::from([("pk".into(), s(&k.pk)), ("sk".into(), s(&k.sk))])
}

/// What became of an attempt.
pub(super) enum Ran {
    Committed,
    /// The receipt was there: the stored one.
    Duplicate(StoredReceipt),
    /// Cancelled: the writes whose conditions failed, with what is there now
    /// (none: a conflict with another transaction).
    Cancelled(Vec<Failed>),
}

/// The SET clause every level change shares: timestamp, cause, identity.
const LEVEL_STAMP: &str =
    "#ua = :now, #lr = :reason, #lref = :ref, #sku = :sku, #loc = :loc, #kind = :level, #lloc = :loc";

/// An update or condition expression with its names and values.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    fn name(&mut self, placeholder: &str, attribute: &str) -> &mut Self {
        self.names.insert(placeholder.into(), attribute.into());
        self
    }

    fn value(&mut self, placeholder: &str, v: AttributeValue) -> &mut Self {
        self.values.insert(placeholder.into(), v);
        self
    }

    /// The condition a write expects of a level, if any.
    fn level_condition(&mut self, condition: LevelCondition) -> Option<&'static str> {
        match condition {
            LevelCondition::Any => None,
            LevelCondition::Missing => Some("attribute_not_exists(pk)"),
            LevelCondition::Exactly(seen) => {
                self.name("#av", "available").value(":seen", n(seen));
                Some("#av = :seen")
            }
            LevelCondition::Version(v) => {
                self.name("#ver", "version").value(":ver", n(v));
                Some("#ver = :ver")
            }
        }
    }
}

fn failed_condition(r: Option<&CancellationReason>) -> bool {
    r.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

pub(super) fn stored_receipt(k: &Key, item: &Item) -> StoredReceipt {
    StoredReceipt {
        key: k.clone(),
        fields: item
            .iter()
            .filter_map(|(name, v)| v.as_s().ok().map(|v| (name.clone(), v.clone())))
            .collect(),
    }
}

/// A level image as the domain reads it.
pub(super) fn level_of(item: &Item) -> Result<LevelView, StoreError> {
    let mut level: LevelView =
        serde_dynamo::from_item(item.clone()).map_err(|e| StoreError::Corrupt(format!("a level: {e}")))?;
    level.sold = item
        .iter()
        .filter_map(|(name, v)| {
            let source = name.strip_prefix(SOLD_PREFIX)?;
            Some((source.to_owned(), v.as_n().ok()?.parse().ok()?))
        })
        .collect();
    Ok(level)
}

impl StockStore {
    /// Runs an attempt as one transaction.
    pub(super) async fn transact(&self, attempt: &Attempt) -> Result<Ran, StoreError> {
        let items = self.render(attempt)?;
        let reasons = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => return Ok(Ran::Committed),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().to_vec()
                }
                _ => return Err(e.into()),
            },
        };
        if failed_condition(reasons.first()) {
            let item = reasons
                .first()
                .and_then(CancellationReason::item)
                .ok_or_else(|| StoreError::Corrupt("duplicate receipt came back without its item".into()))?;
            return Ok(Ran::Duplicate(stored_receipt(&attempt.receipt.key, item)));
        }
        let mut failed = Vec::new();
        for (index, write) in attempt.writes.iter().enumerate() {
            let reason = reasons.get(1 + index);
            if !failed_condition(reason) {
                continue;
            }
            let seen = reason.and_then(CancellationReason::item);
            let current = match write {
                Write::Level(_) | Write::Check { .. } => Current::Level(seen.map(level_of).transpose()?),
                Write::CancelCounter { .. } => Current::Counter(
                    seen.and_then(|i| i.get("units"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok()),
                ),
                Write::Ledger { .. } => continue,
            };
            failed.push(Failed { index, current });
        }
        Ok(Ran::Cancelled(failed))
    }

    pub(super) fn expires_at(&self) -> i64 {
        clock::epoch_seconds() + self.receipt_ttl.as_secs() as i64
    }

    /// The attempt's receipt first, then its writes in order.
    pub(super) fn render(&self, attempt: &Attempt) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::with_capacity(1 + attempt.writes.len());
        items.push(self.receipt_put(attempt)?);
        for w in &attempt.writes {
            items.push(match w {
                Write::Level(l) => self.level_update(l, &attempt.at)?,
                Write::Check {
                    sku,
                    location,
                    condition,
                } => {
                    let mut e = Expr::default();
                    let condition = e
                        .level_condition(*condition)
                        .ok_or_else(|| StoreError::Corrupt("a level check that expects nothing".into()))?;
                    TransactWriteItem::builder()
                        .condition_check(
                            ConditionCheck::builder()
                                .table_name(&self.table)
                                .set_key(Some(key(&keys::level(sku, location))))
                                .condition_expression(condition)
                                .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                                .return_values_on_condition_check_failure(
                                    ReturnValuesOnConditionCheckFailure::AllOld,
                                )
                                .build()?,
                        )
                        .build()
                }
                Write::Ledger { entry, seq } => {
                    let mut item: Item = serde_dynamo::to_item(entry)
                        .map_err(|e| StoreError::Corrupt(format!("a ledger entry: {e}")))?;
                    item.insert("pk".into(), s(keys::sku(&entry.sku)));
                    item.insert("sk".into(), s(keys::ledger(&entry.at, &entry.reference, seq)));
                    item.insert("kind".into(), s("ledger"));
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.table)
                                .set_item(Some(item))
                                .build()?,
                        )
                        .build()
                }
                Write::CancelCounter { order, sku, seen, to } => {
                    let mut e = Expr::default();
                    e.name("#units", "units")
                        .name("#kind", "kind")
                        .value(":units", n(*to))
                        .value(":kind", s("cancel_counter"))
                        .value(":exp", n(self.expires_at()));
                    let condition = match seen {
                        Some(v) => {
                            e.value(":seen", n(*v));
                            "#units = :seen"
                        }
                        None => "attribute_not_exists(#units)",
                    };
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&self.table)
                                .set_key(Some(key(&Key::new(order, keys::cancelled(sku)))))
                                .update_expression("SET #units = :units, #kind = :kind, expires_at = :exp")
                                .condition_expression(condition)
                                .set_expression_attribute_names(Some(e.names))
                                .set_expression_attribute_values(Some(e.values))
                                .return_values_on_condition_check_failure(
                                    ReturnValuesOnConditionCheckFailure::AllOld,
                                )
                                .build()?,
                        )
                        .build()
                }
            });
        }
        Ok(items)
    }

    /// A receipt: written only if absent, so a repeated delivery fails the
    /// condition and gets the stored receipt back (no extra read).
    fn receipt_put(&self, attempt: &Attempt) -> Result<TransactWriteItem, StoreError> {
        let r = &attempt.receipt;
        let mut item = key(&r.key);
        item.insert("kind".into(), s("receipt"));
        item.insert("created_at".into(), s(&attempt.at));
        item.insert("expires_at".into(), n(self.expires_at()));
        item.extend(r.fields.iter().map(|(k, v)| ((*k).to_owned(), s(v))));
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()?,
            )
            .build())
    }

    /// A level change: its effect, the stamp of its cause, one more version,
    /// and its condition. A take is conditional on the units being there, so
    /// no write ever takes a level below zero.
    fn level_update(&self, w: &LevelWrite, at: &str) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        for (placeholder, attribute) in [
            ("#av", "available"),
            ("#ver", "version"),
            ("#ua", "updated_at"),
            ("#lr", "last_reason"),
            ("#lref", "last_reference"),
            ("#sku", "sku"),
            ("#loc", "location"),
            ("#kind", "kind"),
            ("#lloc", "level_location"),
        ] {
            e.name(placeholder, attribute);
        }
        e.value(":now", s(at))
            .value(":reason", s(w.reason.as_str()))
            .value(":ref", s(&w.reference))
            .value(":sku", s(w.sku.as_str()))
            .value(":loc", s(w.location.as_str()))
            .value(":level", s("level"))
            .value(":one", n(1));
        let (update, base) = match &w.effect {
            LevelEffect::Take(q) => {
                e.value(":take", n(*q));
                (
                    format!("SET #av = #av - :take, {LEVEL_STAMP} ADD #ver :one"),
                    Some("#av >= :take"),
                )
            }
            LevelEffect::Set { available, count } => {
                e.value(":set", n(*available));
                let mut set = "#av = :set".to_owned();
                if let Some(c) = count {
                    e.name("#cat", "counted_at").value(":cat", s(&c.at));
                    set.push_str(", #cat = :cat");
                    if let Some((source, quantity)) = &c.source {
                        e.name("#csrc", "count_source")
                            .name("#cq", "count_quantity")
                            .value(":src", s(source))
                            .value(":cq", n(*quantity));
                        set.push_str(", #csrc = :src, #cq = :cq");
                    }
                }
                (format!("SET {set}, {LEVEL_STAMP} ADD #ver :one"), None)
            }
            LevelEffect::Add { available, damaged } => {
                e.value(":add", n(*available));
                let mut add = "#ver :one, #av :add".to_owned();
                if *damaged > 0 {
                    e.name("#dmg", "damaged").value(":dmg", n(*damaged));
                    add.push_str(", #dmg :dmg");
                }
                (format!("SET {LEVEL_STAMP} ADD {add}"), None)
            }
        };
        let update = match &w.sold {
            Some((source, units)) => {
                e.name("#sold", &sold_attribute(source)).value(":sold", n(*units));
                format!("{update}, #sold :sold")
            }
            None => update,
        };
        let condition = match (base, e.level_condition(w.condition)) {
            (Some(a), Some(b)) => Some(format!("{a} AND {b}")),
            (a, b) => a.or(b).map(str::to_owned),
        };
        let mut update_item = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&keys::level(&w.sku, &w.location))))
            .update_expression(update)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values));
        if let Some(c) = condition {
            update_item = update_item
                .condition_expression(c)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        }
        Ok(TransactWriteItem::builder().update(update_item.build()?).build())
    }
}
