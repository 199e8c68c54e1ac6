//! Returns: units back into `available` (or counted as damaged), exactly once.
//!
//! A return is one transaction per up to [`LINES_PER_RETURN_TRANSACTION`]
//! lines: the receipt (`RECEIPT#return#<source>#<id>`), an unconditional
//! `ADD` on each level (a restock can never take a level below zero, and it
//! creates the level of a SKU never seen), a ledger entry per line, and for a
//! Shopify `cancel` a compare-and-set on the order's running count of
//! cancelled units, `RECEIPT#order#<shop>#<order>` / `CANCELLED#<sku>`, so a
//! cancel never puts back more than the recorded sale took.

use std::collections::HashMap;

use super::{
    backoff, failed_condition, get_n, get_s, hash, level_key, level_names, n, s, stamp_values, Item,
    StockStore, StoreError, LEVEL_STAMP, MAX_ATTEMPTS, MAX_TRANSACTION_ACTIONS,
};
use crate::clock;
use crate::domain::{Actor, ReasonCode, Sku};
use crate::level::LedgerEntry;
use crate::returns::{plan, CancelBook, Return, ReturnLine, ReturnLineResult, ReturnOutcome, ReturnStatus};
use crate::sale::LineResult;
use aws_sdk_dynamodb::types::{
    CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

enum Chunk {
    Applied(Vec<ReturnLineResult>),
    Duplicate(Vec<ReturnLineResult>),
}

/// Return lines per transaction: a level update, a ledger entry and at most
/// one cancel counter each, plus the receipt.
pub const LINES_PER_RETURN_TRANSACTION: usize = (MAX_TRANSACTION_ACTIONS - 1) / 3;

impl StockStore {
    /// Applies a processed return: resellable units go back to `available`,
    /// damaged units to the level's damaged count, together with the
    /// return's receipt and ledger entries. A repeated return changes nothing
    /// and gets its original lines back with status `duplicate`.
    pub async fn apply_return(&self, ret: &Return, actor: &Actor) -> Result<ReturnOutcome, StoreError> {
        let has_cancels = ret.lines.iter().any(|l| l.units.cancelled > 0);
        let order_pk = ret
            .order_receipt_key()
            .filter(|_| has_cancels)
            .map(|k| format!("RECEIPT#order#{k}"));
        let mut book = match &order_pk {
            Some(pk) => self.cancel_book(pk).await?,
            None => None,
        };
        let mut lines = Vec::with_capacity(ret.lines.len());
        let mut all_duplicate = true;
        // A return with no stock lines still gets its receipt: it was recorded.
        let chunks: Vec<&[ReturnLine]> = if ret.lines.is_empty() {
            vec![&[]]
        } else {
            ret.lines.chunks(LINES_PER_RETURN_TRANSACTION).collect()
        };
        for (part, chunk) in chunks.into_iter().enumerate() {
            let ctx = (order_pk.as_deref(), book.as_mut());
            match self.apply_return_chunk(ret, part, chunk, actor, ctx).await? {
                Chunk::Applied(l) => {
                    all_duplicate = false;
                    lines.extend(l);
                }
                Chunk::Duplicate(l) => lines.extend(l),
            }
        }
        let status = if all_duplicate {
            ReturnStatus::Duplicate
        } else if lines.iter().any(|l| l.restocked + l.damaged > 0) {
            ReturnStatus::Applied
        } else {
            ReturnStatus::NothingToRestock
        };
        Ok(ReturnOutcome {
            return_id: ret.return_id.clone(),
            status,
            lines,
            skipped: ret.skipped.clone(),
        })
    }

    /// Reads the refunded order's sale receipt and cancel counters.
    /// `None` when Stockroom has no record of the order (never seen, or its
    /// receipt expired): then a cancel restocks what the refund says.
    async fn cancel_book(&self, order_pk: &str) -> Result<Option<CancelBook>, StoreError> {
        let mut book = CancelBook::default();
        let mut found_sale = false;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(order_pk))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items() {
                let sk = get_s(item, "sk").unwrap_or_default();
                if sk.starts_with("PART#") {
                    found_sale = true;
                    let lines: Vec<LineResult> = get_s(item, "lines")
                        .and_then(|l| serde_json::from_str(l).ok())
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("receipt {order_pk} has no readable lines"))
                        })?;
                    for l in lines {
                        if let Ok(sku) = Sku::parse(&l.sku) {
                            *book.taken.entry(sku).or_default() += i64::from(l.taken);
                        }
                    }
                } else if let Some(sku) = sk.strip_prefix("CANCELLED#") {
                    if let Ok(sku) = Sku::parse(sku) {
                        book.done.insert(sku, get_n(item, "units"));
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(found_sale.then_some(book))
    }

    async fn apply_return_chunk(
        &self,
        ret: &Return,
        part: usize,
        chunk: &[ReturnLine],
        actor: &Actor,
        (order_pk, mut book): (Option<&str>, Option<&mut CancelBook>),
    ) -> Result<Chunk, StoreError> {
        let reference = ret.reference();
        let receipt_pk = format!("RECEIPT#return#{}", ret.receipt_key());
        let fingerprint = hash(
            &chunk
                .iter()
                .map(|l| format!("{}|{}|{:?}\n", l.sku, l.location, l.units))
                .collect::<String>(),
        );
        for attempt in 0..MAX_ATTEMPTS {
            let now = clock::now();
            let planned = plan(chunk, book.as_deref(), ret.order_id.as_deref());
            let results: Vec<ReturnLineResult> = planned.iter().map(|p| p.result.clone()).collect();
            let moved = results.iter().any(|r| r.restocked + r.damaged > 0);
            let lines_json =
                serde_json::to_string(&results).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut items = Vec::with_capacity(1 + 3 * chunk.len());
            items.push(self.receipt_put(
                &receipt_pk,
                format!("PART#{part:04}"),
                &now,
                [
                    ("status", s(if moved { "applied" } else { "nothing_to_restock" })),
                    ("lines", s(lines_json)),
                    ("fingerprint", s(&fingerprint)),
                ],
            )?);
            for (i, (line, p)) in chunk.iter().zip(&planned).enumerate() {
                let r = &p.result;
                if r.restocked + r.damaged > 0 {
                    items.push(self.restock_action(line, r, &now, &reference)?);
                }
                items.push(self.ledger_put(
                    &line.sku,
                    LedgerEntry {
                        at: now.clone(),
                        sku: r.sku.clone(),
                        location: r.location.clone(),
                        delta: i64::from(r.restocked),
                        reason: ReasonCode::Return.as_str().into(),
                        reference: reference.clone(),
                        actor: actor.as_str().into(),
                        damaged: (r.damaged > 0).then_some(i64::from(r.damaged)),
                        requested: None,
                        short: None,
                        before: None,
                        after: None,
                        document: None,
                        note: r.note.clone(),
                    },
                    &format!("{part}.{i}"),
                )?);
            }
            // One counter per SKU cancelled in this chunk: compare-and-set.
            let mut counters: Vec<(usize, Sku)> = Vec::new();
            if let (Some(order_pk), Some(book)) = (order_pk, book.as_deref()) {
                let mut cancelled: Vec<(&Sku, i64)> = Vec::new();
                for (line, p) in chunk.iter().zip(&planned) {
                    if p.cancel_restocked == 0 {
                        continue;
                    }
                    match cancelled.iter_mut().find(|(s, _)| *s == &line.sku) {
                        Some((_, units)) => *units += i64::from(p.cancel_restocked),
                        None => cancelled.push((&line.sku, i64::from(p.cancel_restocked))),
                    }
                }
                for (sku, units) in cancelled {
                    let seen = book.done.get(sku).copied().flatten();
                    counters.push((items.len(), sku.clone()));
                    items.push(self.cancel_counter(order_pk, sku, seen, units)?);
                }
            }
            let Some(reasons) = self.transact(items).await? else {
                return Ok(Chunk::Applied(results));
            };
            if failed_condition(reasons.first()) {
                let stored = reasons
                    .first()
                    .and_then(CancellationReason::item)
                    .ok_or_else(|| {
                        StoreError::Corrupt("duplicate receipt came back without its item".into())
                    })?;
                if get_s(stored, "fingerprint") != Some(fingerprint.as_str()) {
                    tracing::warn!(return_id = %ret.return_id, source = %ret.source,
                        "a repeated return carries different lines; the first delivery stands");
                }
                let lines = get_s(stored, "lines")
                    .and_then(|l| serde_json::from_str(l).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("receipt {receipt_pk} has no readable lines"))
                    })?;
                return Ok(Chunk::Duplicate(lines));
            }
            let mut refined = false;
            if let Some(book) = book.as_deref_mut() {
                for (index, sku) in &counters {
                    let reason = reasons.get(*index);
                    if failed_condition(reason) {
                        // Another cancel of the same order got there first.
                        let seen = reason
                            .and_then(CancellationReason::item)
                            .and_then(|i| get_n(i, "units"));
                        book.done.insert(sku.clone(), seen);
                        refined = true;
                    }
                }
            }
            tracing::debug!(attempt, refined, return_id = %ret.return_id, "return transaction cancelled; retrying");
            if !refined {
                backoff(attempt).await;
            }
        }
        Err(StoreError::Contention(MAX_ATTEMPTS))
    }

    /// Adds the restocked and damaged units to a level, creating it if new.
    fn restock_action(
        &self,
        line: &ReturnLine,
        r: &ReturnLineResult,
        now: &str,
        reference: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut names = level_names();
        let mut values = stamp_values(&line.sku, &line.location, now, ReasonCode::Return, reference);
        values.insert(":back".into(), n(i64::from(r.restocked)));
        let mut add = "#ver :one, #av :back".to_owned();
        if r.damaged > 0 {
            names.insert("#dmg".into(), "damaged".into());
            values.insert(":dmg".into(), n(i64::from(r.damaged)));
            add.push_str(", #dmg :dmg");
        }
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(level_key(&line.sku, &line.location)))
                    .update_expression(format!("SET {LEVEL_STAMP} ADD {add}"))
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .build()?,
            )
            .build())
    }

    /// Moves an order's count of cancelled-and-restocked units for one SKU
    /// from `seen` to `seen + units`, only if nobody else moved it first.
    fn cancel_counter(
        &self,
        order_pk: &str,
        sku: &Sku,
        seen: Option<i64>,
        units: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values: Item = HashMap::from([
            (":units".into(), n(seen.unwrap_or(0) + units)),
            (":kind".into(), s("cancel_counter")),
            (":exp".into(), n(self.expires_at())),
        ]);
        let condition = match seen {
            Some(v) => {
                values.insert(":seen".into(), n(v));
                "#units = :seen"
            }
            None => "attribute_not_exists(#units)",
        };
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(order_pk))
                    .key("sk", s(format!("CANCELLED#{sku}")))
                    .update_expression("SET #units = :units, #kind = :kind, expires_at = :exp")
                    .condition_expression(condition)
                    .expression_attribute_names("#units", "units")
                    .expression_attribute_names("#kind", "kind")
                    .set_expression_attribute_values(Some(values))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()?,
            )
            .build())
    }
}
