//! The DynamoDB adapter of the store port: levels, ledger and receipts in
//! one table (keys in [`crate::keys`]).
//!
//! Every stock change is a [`Decision`] run by [`StockStore::run`]: its
//! [`Attempt`](crate::port::Attempt) is rendered as one `TransactWriteItems`
//! (conditional level writes, ledger entries and the receipt that makes the
//! change idempotent). A repeat fails the receipt's condition and gets the
//! stored receipt back through `ReturnValuesOnConditionCheckFailure=ALL_OLD`;
//! a failed level condition hands the level's current image back to the
//! decision, which refines its next attempt.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;

use crate::adjustment::{AdjustError, AdjustResult, Adjustment, AdjustmentDecision};
use crate::clock;
use crate::domain::Actor;
use crate::feed::{ChunkSummary, FeedChunk, FeedEffect, FeedRowInput, FeedSource};
pub use crate::port::StoreError;
use crate::port::{Decision, Next};
use crate::returns::{Return, ReturnOutcome, ReturnPart, LINES_PER_RETURN_TRANSACTION};
use crate::sale::{LevelHints, Order, SaleOutcome, SalePart};

mod connector;
mod reads;
mod render;
pub use connector::MAX_DRIFT_PAGE;
pub use reads::Published;
use render::Ran;

/// Attempts at one transaction before giving up under contention.
const MAX_ATTEMPTS: u32 = 12;

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
    /// What this instance last saw of levels sales could not cover.
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

    /// The table `STOCK_TABLE` names, with the receipts' TTL from `RECEIPT_TTL_DAYS`.
    pub fn from_config(sdk: &aws_config::SdkConfig, cfg: &crate::config::Config) -> Self {
        Self::new(Client::new(sdk), cfg.table.clone(), cfg.receipt_ttl_days)
    }

    /// A store whose client never reaches DynamoDB: for what needs no I/O.
    #[cfg(test)]
    pub(crate) fn offline() -> Self {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Self::new(Client::from_conf(conf), "stock", 35)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs a decision to its end: attempts its transaction until it
    /// commits, turns out to be a repeat, or contention outlasts
    /// [`MAX_ATTEMPTS`]. Between attempts the decision learns from what
    /// failed, reads again, or waits.
    pub async fn run<D: Decision>(&self, mut decision: D) -> Result<D::Output, D::Error> {
        decision.prepare(self).await?;
        for attempt in 0..MAX_ATTEMPTS {
            let planned = decision.attempt(&clock::now())?;
            match self.transact(&planned).await? {
                Ran::Committed => return Ok(decision.applied()),
                Ran::Duplicate(stored) => return decision.duplicate(stored),
                Ran::Cancelled(failed) => {
                    let next = decision.refine(&failed);
                    tracing::debug!(attempt, ?next, receipt = %planned.receipt.key.pk, "transaction cancelled; retrying");
                    match next {
                        Next::Retry => {}
                        Next::Reread => decision.prepare(self).await?,
                        Next::Wait => {
                            backoff(attempt).await;
                            decision.prepare(self).await?;
                        }
                    }
                }
            }
        }
        Err(StoreError::Contention(MAX_ATTEMPTS).into())
    }

    /// Applies a sale: every line takes `min(requested, available)` with a
    /// conditional write, never below zero, together with the order's receipt
    /// and ledger entries. A repeated order changes nothing and gets its
    /// original lines back with status `duplicate`.
    pub async fn apply_sale(&self, order: &Order, actor: &Actor) -> Result<SaleOutcome, StoreError> {
        let mut parts = Vec::new();
        for part in SalePart::all(order, actor, &self.hints) {
            parts.push(self.run(part).await?);
        }
        Ok(SaleOutcome::from_parts(order, parts))
    }

    /// The first attempt's transactions for an order, one per part, when it
    /// expects every line to be covered: what [`Self::apply_sale`] sends
    /// first on a cold instance. No I/O.
    pub fn plan_sale(&self, order: &Order, actor: &Actor) -> Result<Vec<Vec<TransactWriteItem>>, StoreError> {
        let now = clock::now();
        SalePart::all(order, actor, &self.hints)
            .into_iter()
            .map(|part| self.render(&part.covered().attempt(&now)?))
            .collect()
    }

    /// Applies a processed return: resellable units go back to `available`,
    /// damaged units to the level's damaged count, together with the
    /// return's receipt and ledger entries. A Shopify `cancel` puts back at
    /// most what Stockroom's record of the order took. A repeated return
    /// changes nothing and gets its original lines back with status `duplicate`.
    pub async fn apply_return(&self, ret: &Return, actor: &Actor) -> Result<ReturnOutcome, StoreError> {
        let order = ret
            .order_receipt_key()
            .filter(|_| ret.lines.iter().any(|l| l.units.cancelled > 0))
            .map(|k| crate::keys::receipt(crate::keys::ReceiptKind::Order, &k));
        let mut book = match &order {
            Some(pk) => self.cancel_book(pk).await?,
            None => None,
        };
        // A return with no stock lines still gets its receipt: it was recorded.
        let chunks: Vec<&[crate::returns::ReturnLine]> = if ret.lines.is_empty() {
            vec![&[]]
        } else {
            ret.lines.chunks(LINES_PER_RETURN_TRANSACTION).collect()
        };
        let mut parts = Vec::with_capacity(chunks.len());
        for (part, lines) in chunks.into_iter().enumerate() {
            let book = order.as_deref().zip(book.as_mut());
            parts.push(self.run(ReturnPart::new(ret, part, lines, actor, book)).await?);
        }
        Ok(ReturnOutcome::from_parts(ret, parts))
    }

    /// Applies a manual adjustment: a compare-and-set on the level's version,
    /// so the ledger records the exact figure before and after. A repeated
    /// `Idempotency-Key` gets the first answer, before anything is read.
    pub async fn adjust(&self, adj: &Adjustment) -> Result<AdjustResult, AdjustError> {
        let decision = AdjustmentDecision::new(adj);
        if adj.idempotency_key.is_some() {
            if let Some(stored) = self.receipt(&decision.receipt_key()).await? {
                return decision.replay(&stored);
            }
        }
        self.run(decision).await
    }

    /// Applies one chunk of an object's valid rows, exactly once: its summary
    /// (the stored one if the chunk was applied before).
    pub async fn apply_feed_chunk(
        &self,
        src: &FeedSource,
        effect: FeedEffect,
        index: u64,
        rows: &[FeedRowInput],
    ) -> Result<ChunkSummary, StoreError> {
        self.run(FeedChunk::new(src, effect, index, rows)).await
    }

    /// The transaction that applies one chunk of delivery rows: what
    /// [`Self::apply_feed_chunk`] sends for [`FeedEffect::Add`]. No I/O.
    pub fn plan_feed_add(
        &self,
        src: &FeedSource,
        index: u64,
        rows: &[FeedRowInput],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        self.render(&FeedChunk::new(src, FeedEffect::Add, index, rows).attempt(&clock::now())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Location;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn a_planned_sale_takes_each_line_only_if_covered_and_records_it() {
        let store = StockStore::offline();
        let rules = crate::config::LocationRules::new(Location::parse("warehouse").unwrap(), "", "").unwrap();
        let lines: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"sku": "SKU-{i}", "quantity": {}}}"#, 1 + i % 3))
            .collect();
        let body = format!(
            r#"{{"channel": "pos", "order_id": "T-1", "lines": [{}]}}"#,
            lines.join(",")
        );
        let order = crate::wire::generic::parse_sale(body.as_bytes(), "pos", &rules).unwrap();
        let plan = store.plan_sale(&order, &Actor::system("channel:pos")).unwrap();
        // 60 lines: one transaction of 49 lines and one of 11, each with its receipt part.
        assert_eq!(
            plan.iter().map(Vec::len).collect::<Vec<_>>(),
            [1 + 2 * 49, 1 + 2 * 11]
        );
        for (part, items) in plan.iter().enumerate() {
            let receipt = items[0].put().unwrap();
            assert_eq!(receipt.condition_expression(), Some("attribute_not_exists(pk)"));
            assert_eq!(receipt.item()["sk"], s(&format!("PART#{part:04}")));
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
