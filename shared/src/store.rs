//! The DynamoDB stock store: levels, ledger and receipts in one table.
//!
//! | item    | pk                          | sk                                  |
//! |---------|-----------------------------|-------------------------------------|
//! | level   | `SKU#<sku>`                 | `LEVEL#<location>`                  |
//! | ledger  | `SKU#<sku>`                 | `LEDGER#<at>#<reference>#<n>`       |
//! | receipt | `RECEIPT#<kind>#<key>`      | `PART#<nnnn>`                       |
//! | cancel counter | `RECEIPT#order#<key>` | `CANCELLED#<sku>`                   |
//! | published | `SKU#<sku>`                 | `CHANNEL#<channel>`                 |
//! | feed chunk receipt | `RECEIPT#feed#<object>` | `CHUNK#<index>`                |
//!
//! Every stock change is one `TransactWriteItems`: the conditional level
//! update(s), their ledger entries and the receipt that makes the change
//! idempotent. A duplicate fails the receipt's condition and gets the stored
//! answer back through `ReturnValuesOnConditionCheckFailure=ALL_OLD`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;

use crate::adjustment::{AdjustError, AdjustResult, Adjustment, AdjustmentOutcome, Change};
use crate::clock;
use crate::domain::Actor;
use crate::domain::{Location, ReasonCode, Sku};
use crate::keys;
use crate::level::{LedgerEntry, LedgerPage, LevelView};
use crate::sale::{Expect, LevelHints, LineResult, Order, OrderLine, SaleOutcome, SaleStatus};

mod fanout;
mod feed;
mod returns;
pub use fanout::Published;
pub use returns::LINES_PER_RETURN_TRANSACTION;

/// DynamoDB's limit on actions in one TransactWriteItems.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// Sale lines per transaction: each takes a level action and a ledger entry,
/// and the chunk's receipt takes one more.
pub const LINES_PER_TRANSACTION: usize = (MAX_TRANSACTION_ACTIONS - 1) / 2;
/// Attempts at one transaction before giving up under contention.
const MAX_ATTEMPTS: u32 = 12;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB request failed: {0}")]
    Dynamo(String),
    #[error("gave up after {0} attempts: the items kept changing under contention")]
    Contention(u32),
    #[error("a stored item is not readable: {0}")]
    Corrupt(String),
}

impl<E: std::error::Error + 'static, R: std::fmt::Debug> From<SdkError<E, R>> for StoreError {
    fn from(e: SdkError<E, R>) -> Self {
        StoreError::Dynamo(DisplayErrorContext(&e).to_string())
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for StoreError {
    fn from(e: aws_sdk_dynamodb::error::BuildError) -> Self {
        StoreError::Dynamo(e.to_string())
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(crate) fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn level_key(sku: &Sku, location: &Location) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("SKU#{sku}"))),
        ("sk".into(), s(format!("LEVEL#{location}"))),
    ])
}

/// Names used in expressions, so no attribute collides with a reserved word.
fn level_names() -> HashMap<String, String> {
    [
        ("#av", "available"),
        ("#ver", "version"),
        ("#ua", "updated_at"),
        ("#lr", "last_reason"),
        ("#lref", "last_reference"),
        ("#sku", "sku"),
        ("#loc", "location"),
        ("#kind", "kind"),
        ("#lloc", "level_location"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The SET clause every level change shares: timestamp, cause, identity.
const LEVEL_STAMP: &str =
    "#ua = :now, #lr = :reason, #lref = :ref, #sku = :sku, #loc = :loc, #kind = :level, #lloc = :loc";

fn stamp_values(line_sku: &Sku, loc: &Location, now: &str, reason: ReasonCode, reference: &str) -> Item {
    HashMap::from([
        (":now".into(), s(now)),
        (":reason".into(), s(reason.as_str())),
        (":ref".into(), s(reference)),
        (":sku".into(), s(line_sku.as_str())),
        (":loc".into(), s(loc.as_str())),
        (":level".into(), s("level")),
        (":one".into(), n(1)),
    ])
}

enum ChunkOutcome {
    Applied(Vec<LineResult>),
    Duplicate(Vec<LineResult>),
}

/// What identifies one chunk of an order in the store: its ledger
/// reference, its receipt and the fingerprint of its lines.
struct SaleKeys {
    reference: String,
    receipt_pk: String,
    fingerprint: String,
}

impl SaleKeys {
    fn new(order: &Order, chunk: &[OrderLine]) -> Self {
        Self {
            reference: format!("order:{}/{}", order.source, order.order_id),
            receipt_pk: format!("RECEIPT#order#{}", order.receipt_key()),
            fingerprint: hash(
                &chunk
                    .iter()
                    .map(|l| format!("{}|{}|{}\n", l.sku, l.location, l.quantity.get()))
                    .collect::<String>(),
            ),
        }
    }
}

fn hash(text: &str) -> String {
    crate::sha256_hex(text)
}

fn failed_condition(r: Option<&CancellationReason>) -> bool {
    r.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

/// Waits a little, more after each failed attempt, with jitter so racing
/// writers spread out.
async fn backoff(attempt: u32) {
    let base = 4u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(base / 2 + fastrand::u64(0..=base))).await;
}

/// The stock table.
#[derive(Debug, Clone)]
pub struct StockStore {
    client: Client,
    table: String,
    receipt_ttl: Duration,
    hints: Arc<LevelHints>,
}

impl StockStore {
    pub fn new(client: Client, table: impl Into<String>, receipt_ttl_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            receipt_ttl: Duration::from_secs(u64::from(receipt_ttl_days) * 86_400),
            hints: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs one transaction: `Ok(None)` when it committed, `Ok(Some(reasons))`
    /// when DynamoDB cancelled it (one reason per action, in order).
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<CancellationReason>>, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Ok(Some(c.cancellation_reasons().to_vec()))
                }
                _ => Err(e.into()),
            },
        }
    }

    fn expires_at(&self) -> i64 {
        clock::epoch_seconds() + self.receipt_ttl.as_secs() as i64
    }

    /// A receipt: `pk`/`sk`, `kind`, `fields`, `created_at` and its expiry,
    /// written only if absent, so a repeated delivery fails the condition and
    /// gets the stored receipt back with the cancellation (no extra read).
    fn receipt_put(
        &self,
        pk: &str,
        sk: String,
        now: &str,
        fields: impl IntoIterator<Item = (&'static str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(pk)),
            ("sk".into(), s(sk)),
            ("kind".into(), s("receipt")),
            ("created_at".into(), s(now)),
            ("expires_at".into(), n(self.expires_at())),
        ]);
        item.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
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

    /// Applies a sale: every line takes `min(requested, available)` with a
    /// conditional write, never below zero, together with the order's receipt
    /// and ledger entries. A repeated order changes nothing and gets its
    /// original lines back with status `duplicate`.
    pub async fn apply_sale(&self, order: &Order, actor: &Actor) -> Result<SaleOutcome, StoreError> {
        let mut lines = Vec::with_capacity(order.lines.len());
        let mut all_duplicate = !order.lines.is_empty();
        for (part, chunk) in order.lines.chunks(LINES_PER_TRANSACTION).enumerate() {
            match self.apply_sale_chunk(order, part, chunk, actor).await? {
                ChunkOutcome::Applied(l) => {
                    all_duplicate = false;
                    lines.extend(l);
                }
                ChunkOutcome::Duplicate(l) => lines.extend(l),
            }
        }
        let status = if all_duplicate {
            SaleStatus::Duplicate
        } else if lines.iter().any(|l| l.short > 0) {
            SaleStatus::Oversold
        } else {
            SaleStatus::Applied
        };
        Ok(SaleOutcome {
            order: order.order_id.clone(),
            status,
            lines,
            skipped: order.skipped.clone(),
        })
    }

    /// The first attempt's transactions for an order, one per chunk of
    /// [`LINES_PER_TRANSACTION`] lines: what [`Self::apply_sale`] sends when
    /// it expects every line to be covered. Pure: no I/O.
    pub fn plan_sale(&self, order: &Order, actor: &Actor) -> Result<Vec<Vec<TransactWriteItem>>, StoreError> {
        let now = clock::now();
        order
            .lines
            .chunks(LINES_PER_TRANSACTION)
            .enumerate()
            .map(|(part, chunk)| {
                let keys = SaleKeys::new(order, chunk);
                let expects = vec![Expect::Covers; chunk.len()];
                self.sale_attempt(order, part, chunk, &expects, actor, &keys, &now)
                    .map(|(items, _)| items)
            })
            .collect()
    }

    async fn apply_sale_chunk(
        &self,
        order: &Order,
        part: usize,
        chunk: &[OrderLine],
        actor: &Actor,
    ) -> Result<ChunkOutcome, StoreError> {
        let keys = SaleKeys::new(order, chunk);
        let SaleKeys {
            receipt_pk,
            fingerprint,
            ..
        } = &keys;
        let mut expects: Vec<Expect> = chunk.iter().map(|l| self.hints.expect(l)).collect();
        for attempt in 0..MAX_ATTEMPTS {
            let now = clock::now();
            let (items, results) = self.sale_attempt(order, part, chunk, &expects, actor, &keys, &now)?;
            let Some(reasons) = self.transact(items).await? else {
                self.hints.committed(chunk, &expects);
                return Ok(ChunkOutcome::Applied(results));
            };
            let reasons = reasons.as_slice();
            if failed_condition(reasons.first()) {
                let stored = reasons
                    .first()
                    .and_then(CancellationReason::item)
                    .ok_or_else(|| {
                        StoreError::Corrupt("duplicate receipt came back without its item".into())
                    })?;
                if get_s(stored, "fingerprint") != Some(fingerprint.as_str()) {
                    tracing::warn!(order = %order.order_id, source = %order.source,
                        "a repeated order carries different lines; the first delivery stands");
                }
                let lines = get_s(stored, "lines")
                    .and_then(|l| serde_json::from_str(l).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("receipt {receipt_pk} has no readable lines"))
                    })?;
                return Ok(ChunkOutcome::Duplicate(lines));
            }
            let mut refined = false;
            for (i, line) in chunk.iter().enumerate() {
                let reason = reasons.get(1 + 2 * i);
                if failed_condition(reason) {
                    let seen = reason.and_then(CancellationReason::item);
                    expects[i] = Expect::from_available(
                        seen.and_then(|i| get_n(i, "available")),
                        line.quantity.as_i64(),
                    );
                    self.hints.learn(line, seen.and_then(|i| get_n(i, "available")));
                    refined = true;
                }
            }
            tracing::debug!(attempt, refined, order = %order.order_id, "sale transaction cancelled; retrying");
            if !refined {
                // A conflict with another transaction on the same items: wait, then retry as is.
                backoff(attempt).await;
            }
        }
        Err(StoreError::Contention(MAX_ATTEMPTS))
    }

    /// One attempt at a chunk of an order: the receipt, then for each line
    /// its level action (shaped by what we expect to find) and its ledger
    /// entry; and the lines as the receipt records them.
    #[allow(clippy::too_many_arguments)]
    fn sale_attempt(
        &self,
        order: &Order,
        part: usize,
        chunk: &[OrderLine],
        expects: &[Expect],
        actor: &Actor,
        keys: &SaleKeys,
        now: &str,
    ) -> Result<(Vec<TransactWriteItem>, Vec<LineResult>), StoreError> {
        let results: Vec<LineResult> = chunk
            .iter()
            .zip(expects)
            .map(|(l, e)| {
                let requested = l.quantity.as_i64();
                let taken = e.take(requested);
                LineResult {
                    sku: l.sku.to_string(),
                    location: l.location.to_string(),
                    requested: l.quantity.get(),
                    taken: taken as u32,
                    short: (requested - taken) as u32,
                }
            })
            .collect();
        let oversold = results.iter().any(|r| r.short > 0);
        let lines_json = serde_json::to_string(&results).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut items = Vec::with_capacity(1 + 2 * chunk.len());
        items.push(self.receipt_put(
            &keys.receipt_pk,
            format!("PART#{part:04}"),
            now,
            [
                ("status", s(if oversold { "oversold" } else { "applied" })),
                ("lines", s(lines_json)),
                ("fingerprint", s(&keys.fingerprint)),
                ("channel", s(&order.channel)),
                ("source", s(&order.source)),
                ("order", s(&order.order_id)),
            ],
        )?);
        for (i, ((line, expect), r)) in chunk.iter().zip(expects).zip(&results).enumerate() {
            items.push(self.sale_level_action(line, *expect, now, &keys.reference)?);
            items.push(self.ledger_put(
                &line.sku,
                LedgerEntry {
                    at: now.to_owned(),
                    sku: r.sku.clone(),
                    location: r.location.clone(),
                    delta: -i64::from(r.taken),
                    reason: ReasonCode::Sale.as_str().into(),
                    reference: keys.reference.clone(),
                    actor: actor.as_str().into(),
                    damaged: None,
                    requested: Some(i64::from(r.requested)),
                    short: Some(i64::from(r.short)),
                    before: None,
                    after: None,
                    document: None,
                    note: None,
                },
                &format!("{part}.{i}"),
            )?);
        }
        Ok((items, results))
    }

    /// The conditional write for one sale line, shaped by what we expect to find.
    fn sale_level_action(
        &self,
        line: &OrderLine,
        expect: Expect,
        now: &str,
        reference: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let key = level_key(&line.sku, &line.location);
        let names = level_names();
        let item = match expect {
            Expect::Covers | Expect::Exactly(1..) => {
                let mut values = stamp_values(&line.sku, &line.location, now, ReasonCode::Sale, reference);
                let (set, condition) = if expect == Expect::Covers {
                    values.insert(":take".into(), n(line.quantity.as_i64()));
                    ("#av = #av - :take", "#av >= :take")
                } else {
                    let Expect::Exactly(a) = expect else {
                        unreachable!()
                    };
                    values.insert(":seen".into(), n(a));
                    values.insert(":zero".into(), n(0));
                    ("#av = :zero", "#av = :seen")
                };
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key))
                            .update_expression(format!("SET {set}, {LEVEL_STAMP} ADD #ver :one"))
                            .condition_expression(condition)
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(Some(values))
                            .return_values_on_condition_check_failure(
                                ReturnValuesOnConditionCheckFailure::AllOld,
                            )
                            .build()?,
                    )
                    .build()
            }
            Expect::Exactly(_) | Expect::Missing => {
                let (condition, values) = if expect == Expect::Missing {
                    ("attribute_not_exists(pk)", None)
                } else {
                    ("#av = :zero", Some(HashMap::from([(":zero".to_owned(), n(0))])))
                };
                let names = values
                    .as_ref()
                    .map(|_| HashMap::from([("#av".to_owned(), "available".to_owned())]));
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .set_key(Some(key))
                            .condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .return_values_on_condition_check_failure(
                                ReturnValuesOnConditionCheckFailure::AllOld,
                            )
                            .build()?,
                    )
                    .build()
            }
        };
        Ok(item)
    }

    fn ledger_put(&self, sku: &Sku, entry: LedgerEntry, seq: &str) -> Result<TransactWriteItem, StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(format!("SKU#{sku}"))),
            (
                "sk".into(),
                s(format!("LEDGER#{}#{}#{seq}", entry.at, entry.reference)),
            ),
            ("kind".into(), s("ledger")),
            ("at".into(), s(entry.at)),
            ("sku".into(), s(entry.sku)),
            ("location".into(), s(entry.location)),
            ("delta".into(), n(entry.delta)),
            ("reason".into(), s(entry.reason)),
            ("reference".into(), s(entry.reference)),
            ("actor".into(), s(entry.actor)),
        ]);
        let optional_n = [
            ("damaged", entry.damaged),
            ("requested", entry.requested),
            ("short", entry.short),
            ("before", entry.before),
            ("after", entry.after),
        ];
        for (k, v) in optional_n {
            if let Some(v) = v {
                item.insert(k.into(), n(v));
            }
        }
        for (k, v) in [("document", entry.document), ("note", entry.note)] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                item.insert(k.into(), s(v));
            }
        }
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()?,
            )
            .build())
    }

    /// Every level of a SKU, read strongly consistent. Empty for a SKU never stocked.
    pub async fn levels(&self, sku: &Sku) -> Result<Vec<LevelView>, StoreError> {
        let mut levels = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :level)")
                .expression_attribute_values(":pk", s(format!("SKU#{sku}")))
                .expression_attribute_values(":level", s("LEVEL#"))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items() {
                levels.push(LevelView {
                    location: get_s(item, "location").unwrap_or_default().to_owned(),
                    available: get_n(item, "available").unwrap_or(0),
                    damaged: get_n(item, "damaged").unwrap_or(0),
                    version: get_n(item, "version").unwrap_or(0),
                    updated_at: get_s(item, "updated_at").unwrap_or_default().to_owned(),
                    last_reason: get_s(item, "last_reason").map(str::to_owned),
                    last_reference: get_s(item, "last_reference").map(str::to_owned),
                    ..LevelView::default()
                });
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(levels)
    }

    /// A page of a SKU's ledger, newest first.
    pub async fn ledger(
        &self,
        sku: &Sku,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<LedgerPage, StoreError> {
        let pk = format!("SKU#{sku}");
        let start = cursor.map(|sk| HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))]));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :ledger)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":ledger", s("LEDGER#"))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let entries = out
            .items()
            .iter()
            .map(|item| LedgerEntry {
                at: get_s(item, "at").unwrap_or_default().to_owned(),
                sku: get_s(item, "sku").unwrap_or_default().to_owned(),
                location: get_s(item, "location").unwrap_or_default().to_owned(),
                delta: get_n(item, "delta").unwrap_or(0),
                reason: get_s(item, "reason").unwrap_or_default().to_owned(),
                reference: get_s(item, "reference").unwrap_or_default().to_owned(),
                actor: get_s(item, "actor").unwrap_or_default().to_owned(),
                damaged: get_n(item, "damaged"),
                requested: get_n(item, "requested"),
                short: get_n(item, "short"),
                before: get_n(item, "before"),
                after: get_n(item, "after"),
                document: get_s(item, "document").map(str::to_owned),
                note: get_s(item, "note").map(str::to_owned),
            })
            .collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| get_s(k, "sk"))
            .map(keys::encode_cursor);
        Ok(LedgerPage {
            sku: sku.to_string(),
            entries,
            next,
        })
    }

    /// Applies a manual adjustment: a compare-and-set on the level's version,
    /// so the ledger records the exact figure before and after.
    pub async fn adjust(&self, adj: &Adjustment) -> Result<AdjustResult, AdjustError> {
        let fingerprint = adj.fingerprint();
        let adjustment_id = adj
            .idempotency_key
            .clone()
            .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));
        let receipt_pk = format!("RECEIPT#adjustment#{adjustment_id}");
        if adj.idempotency_key.is_some() {
            let got = self
                .client
                .get_item()
                .table_name(&self.table)
                .consistent_read(true)
                .key("pk", s(&receipt_pk))
                .key("sk", s("PART#0000"))
                .send()
                .await
                .map_err(StoreError::from)?;
            if let Some(item) = got.item() {
                return replay(item, &fingerprint);
            }
        }
        let reference = format!("adjustment:{adjustment_id}");
        for attempt in 0..MAX_ATTEMPTS {
            let current = self
                .client
                .get_item()
                .table_name(&self.table)
                .consistent_read(true)
                .set_key(Some(level_key(&adj.sku, &adj.location)))
                .send()
                .await
                .map_err(StoreError::from)?;
            let (before, version) = current
                .item()
                .map(|i| (get_n(i, "available").unwrap_or(0), get_n(i, "version")))
                .unwrap_or((0, None));
            if let Some(expected) = adj.expected {
                if expected != before {
                    return Err(AdjustError::ExpectedMismatch {
                        expected,
                        current: before,
                    });
                }
            }
            let after = match adj.change {
                Change::Delta(d) => before + d,
                Change::Set(v) => v,
            };
            if after < 0 {
                return Err(AdjustError::BelowZero {
                    current: before,
                    delta: after - before,
                });
            }
            let now = clock::now();
            let outcome = AdjustmentOutcome {
                adjustment: adjustment_id.clone(),
                sku: adj.sku.to_string(),
                location: adj.location.to_string(),
                reason: adj.reason.as_str().into(),
                delta: after - before,
                before,
                available: after,
                version: version.unwrap_or(0) + 1,
            };
            let mut values = stamp_values(&adj.sku, &adj.location, &now, adj.reason, &reference);
            values.insert(":after".into(), n(after));
            let mut names = level_names();
            // A manual "set" is a count taken now: older supplier counts become stale.
            let counted = if matches!(adj.change, Change::Set(_)) {
                names.insert("#cat".into(), "counted_at".into());
                ", #cat = :now"
            } else {
                ""
            };
            let condition = match version {
                Some(v) => {
                    values.insert(":ver".into(), n(v));
                    "#ver = :ver"
                }
                None => "attribute_not_exists(pk)",
            };
            let mut items = vec![TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(level_key(&adj.sku, &adj.location)))
                        .update_expression(format!("SET #av = :after{counted}, {LEVEL_STAMP} ADD #ver :one"))
                        .condition_expression(condition)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .build()
                        .map_err(StoreError::from)?,
                )
                .build()];
            items.push(self.ledger_put(
                &adj.sku,
                LedgerEntry {
                    at: now.clone(),
                    sku: outcome.sku.clone(),
                    location: outcome.location.clone(),
                    delta: outcome.delta,
                    reason: outcome.reason.clone(),
                    reference: reference.clone(),
                    actor: adj.actor.as_str().into(),
                    damaged: None,
                    requested: None,
                    short: None,
                    before: Some(before),
                    after: Some(after),
                    document: adj.document.as_ref().map(|d| d.as_str().to_owned()),
                    note: adj.note.clone(),
                },
                "0",
            )?);
            let response = serde_json::to_string(&outcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push(self.receipt_put(
                &receipt_pk,
                "PART#0000".into(),
                &now,
                [("response", s(response)), ("fingerprint", s(&fingerprint))],
            )?);
            let Some(reasons) = self.transact(items).await? else {
                return Ok(AdjustResult::Applied(outcome));
            };
            if let Some(stored) = reasons
                .get(2)
                .filter(|r| failed_condition(Some(r)))
                .and_then(CancellationReason::item)
            {
                return replay(stored, &fingerprint);
            }
            // The level moved (or a conflicting transaction ran): read again and retry.
            tracing::debug!(attempt, sku = %adj.sku, "adjustment raced another change; retrying");
            backoff(attempt).await;
        }
        Err(StoreError::Contention(MAX_ATTEMPTS).into())
    }
}

fn replay(item: &Item, fingerprint: &str) -> Result<AdjustResult, AdjustError> {
    if get_s(item, "fingerprint") != Some(fingerprint) {
        return Err(AdjustError::KeyReused);
    }
    let outcome = get_s(item, "response")
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or_else(|| StoreError::Corrupt("adjustment receipt has no readable response".into()))?;
    Ok(AdjustResult::Replayed(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_sale_takes_each_line_only_if_covered_and_records_it() {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let store = StockStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "stock", 35);
        let rules = crate::config::LocationRules::new(Location::parse("warehouse").unwrap(), "", "").unwrap();
        let lines: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"sku": "SKU-{i}", "quantity": {}}}"#, 1 + i % 3))
            .collect();
        let body = format!(
            r#"{{"channel": "pos", "order_id": "T-1", "lines": [{}]}}"#,
            lines.join(",")
        );
        let order = crate::wire::generic::parse_sale(body.as_bytes(), &rules).unwrap();
        let plan = store.plan_sale(&order, &Actor::system("channel:pos")).unwrap();
        // 60 lines: one transaction of 49 lines and one of 11, each with its receipt part.
        assert_eq!(
            plan.iter().map(Vec::len).collect::<Vec<_>>(),
            [1 + 2 * 49, 1 + 2 * 11]
        );
        for (part, items) in plan.iter().enumerate() {
            let receipt = items[0].put().unwrap();
            assert_eq!(receipt.condition_expression(), Some("attribute_not_exists(pk)"));
            assert_eq!(receipt.item()["sk"], s(format!("PART#{part:04}")));
            assert_eq!(receipt.item()["pk"], s("RECEIPT#order#pos#T-1"));
            for pair in items[1..].chunks(2) {
                let level = pair[0].update().unwrap();
                assert_eq!(level.condition_expression(), Some("#av >= :take"));
                assert!(level.update_expression().starts_with("SET #av = #av - :take"));
                let ledger = pair[1].put().unwrap();
                assert_eq!(ledger.item()["reference"], s("order:pos/T-1"));
                assert_eq!(
                    ledger.item()["delta"],
                    n(-level.expression_attribute_values().unwrap()[":take"]
                        .as_n()
                        .unwrap()
                        .parse::<i64>()
                        .unwrap())
                );
            }
        }
    }
}
