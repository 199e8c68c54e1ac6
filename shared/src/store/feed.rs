//! Supplier feed rows, applied in chunks, exactly once per object and chunk.
//!
//! A chunk is up to [`ROWS_PER_FEED_CHUNK`] consecutive valid rows of one
//! object; its receipt (`RECEIPT#feed#<object>` / `CHUNK#<index>`) is in the
//! same transaction as the level changes and their ledger entries, so the
//! same object delivered again changes nothing and gets the stored summary.
//!
//! - Deliveries add: an `ADD` on each level, no condition needed.
//! - Counts set, at their `as_of`: the level keeps when it was last counted
//!   (`counted_at`); an older count is skipped as stale; movements recorded
//!   after `as_of` (sales, returns, adjustments — not other counts) stay
//!   applied on top. The write is a compare-and-set on the level's version.
//!   A second count for the same level from the same object is a duplicate
//!   (same figure and time) or a contradiction (rejected).

use std::collections::HashMap;

use super::{
    backoff, failed_condition, get_n, get_s, level_key, level_names, n, s, stamp_values, Item, StockStore,
    StoreError, LEVEL_STAMP, MAX_ATTEMPTS,
};
use crate::clock;
use crate::domain::{Location, ReasonCode, Sku};
use crate::feed::{
    ChunkResult, ChunkSummary, FeedEffect, FeedRowInput, FeedSource, FeedState, LocationStats,
};
use crate::level::LedgerEntry;
use aws_sdk_dynamodb::types::{CancellationReason, KeysAndAttributes, TransactWriteItem, Update};

/// A level as a count needs it.
#[derive(Debug, Clone, Default)]
struct LevelState {
    exists: bool,
    available: i64,
    version: i64,
    updated_at: String,
    counted_at: Option<String>,
    count_source: Option<String>,
    count_quantity: Option<i64>,
}

impl LevelState {
    fn from_item(item: Option<&Item>) -> Self {
        match item {
            None => Self::default(),
            Some(i) => Self {
                exists: true,
                available: get_n(i, "available").unwrap_or(0),
                version: get_n(i, "version").unwrap_or(0),
                updated_at: get_s(i, "updated_at").unwrap_or_default().to_owned(),
                counted_at: get_s(i, "counted_at").map(str::to_owned),
                count_source: get_s(i, "count_source").map(str::to_owned),
                count_quantity: get_n(i, "count_quantity"),
            },
        }
    }
}

/// A count's plan for one level.
enum CountPlan {
    Stale,
    Duplicate,
    Contradictory(String),
    Set { before: i64, after: i64, moved: i64 },
}

impl StockStore {
    /// Where an object's import stands, if it was seen before.
    pub async fn feed_state(&self, src: &FeedSource) -> Result<Option<FeedState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key("pk", s(format!("RECEIPT#feed#{}", src.id())))
            .key("sk", s("STATE"))
            .send()
            .await?;
        out.item()
            .and_then(|i| get_s(i, "state"))
            .map(|st| serde_json::from_str(st).map_err(|e| StoreError::Corrupt(format!("feed state: {e}"))))
            .transpose()
    }

    /// Records where an object's import stands.
    pub async fn save_feed_state(&self, src: &FeedSource, state: &FeedState) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("RECEIPT#feed#{}", src.id())))
            .item("sk", s("STATE"))
            .item("kind", s("feed_state"))
            .item("state", s(text))
            .item("updated_at", s(clock::now()))
            .item("expires_at", n(self.expires_at()))
            .send()
            .await?;
        Ok(())
    }

    /// The summaries of every chunk of an object applied so far, added up.
    pub async fn feed_totals(&self, src: &FeedSource) -> Result<ChunkSummary, StoreError> {
        let mut total = ChunkSummary::default();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
                .expression_attribute_values(":pk", s(format!("RECEIPT#feed#{}", src.id())))
                .expression_attribute_values(":chunk", s("CHUNK#"))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items() {
                let c: ChunkSummary = get_s(item, "summary")
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt("feed chunk receipt has no readable summary".into())
                    })?;
                total.applied += c.applied;
                total.stale += c.stale;
                total.duplicates += c.duplicates;
                total.rejected.extend(c.rejected);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        total.rejected.sort();
        Ok(total)
    }

    /// Every SKU a location holds, with its total available units
    /// (the `by-location` index; eventually consistent).
    pub async fn location_stats(&self, location: &Location) -> Result<LocationStats, StoreError> {
        let mut stats = LocationStats::default();
        self.for_each_at_location(location, |item| {
            stats.skus += 1;
            stats.available += get_n(item, "available").unwrap_or(0).max(0);
        })
        .await?;
        Ok(stats)
    }

    /// SKUs at a location whose figure did not come from this object's counts.
    pub async fn not_counted_by(
        &self,
        location: &Location,
        src: &FeedSource,
    ) -> Result<Vec<Sku>, StoreError> {
        let id = src.id();
        let mut out = Vec::new();
        self.for_each_at_location(location, |item| {
            if get_s(item, "count_source") != Some(id.as_str()) {
                if let Some(sku) = get_s(item, "sku").and_then(|s| Sku::parse(s).ok()) {
                    out.push(sku);
                }
            }
        })
        .await?;
        Ok(out)
    }

    async fn for_each_at_location(
        &self,
        location: &Location,
        mut f: impl FnMut(&Item),
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by-location")
                .key_condition_expression("level_location = :loc")
                .expression_attribute_values(":loc", s(location.as_str()))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            out.items().iter().for_each(&mut f);
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// The transaction that applies one chunk of delivery rows: the chunk's
    /// receipt, one `ADD` per level and one ledger entry per row. What
    /// [`Self::apply_feed_chunk`] sends for [`FeedEffect::Add`]. Pure: no I/O.
    pub fn plan_feed_add(
        &self,
        src: &FeedSource,
        index: u64,
        rows: &[FeedRowInput],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let now = clock::now();
        let (mut items, applied) = self.add_items(src, rows, &now)?;
        let summary = ChunkSummary {
            applied,
            ..ChunkSummary::default()
        };
        items.insert(0, self.chunk_receipt(src, index, &summary, &now)?);
        Ok(items)
    }

    /// Delivery rows as writes: one `ADD` per level (rows for the same level
    /// summed, as a transaction may touch an item once) and one ledger entry
    /// per row. Returns them and the number of rows applied.
    fn add_items(
        &self,
        src: &FeedSource,
        rows: &[FeedRowInput],
        now: &str,
    ) -> Result<(Vec<TransactWriteItem>, u64), StoreError> {
        let actor = src.actor();
        let mut items = Vec::with_capacity(1 + 2 * rows.len());
        let mut totals: Vec<((&Sku, &Location), u64)> = Vec::new();
        for r in rows {
            match totals.iter_mut().find(|(k, _)| *k == (&r.sku, &r.location)) {
                Some((_, t)) => *t += u64::from(r.quantity),
                None => totals.push(((&r.sku, &r.location), u64::from(r.quantity))),
            }
        }
        for ((sku, location), total) in totals {
            let mut values = stamp_values(
                sku,
                location,
                now,
                ReasonCode::SupplierDelivery,
                &src.reference(rows.first().map_or(0, |r| r.line)),
            );
            values.insert(":q".into(), n(total as i64));
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(level_key(sku, location)))
                            .update_expression(format!("SET {LEVEL_STAMP} ADD #ver :one, #av :q"))
                            .set_expression_attribute_names(Some(level_names()))
                            .set_expression_attribute_values(Some(values))
                            .build()?,
                    )
                    .build(),
            );
        }
        for r in rows {
            items.push(self.ledger_put(
                &r.sku,
                LedgerEntry {
                    at: now.to_owned(),
                    sku: r.sku.to_string(),
                    location: r.location.to_string(),
                    delta: i64::from(r.quantity),
                    reason: ReasonCode::SupplierDelivery.as_str().into(),
                    reference: src.reference(r.line),
                    actor: actor.as_str().into(),
                    damaged: None,
                    requested: None,
                    short: None,
                    before: None,
                    after: None,
                    document: None,
                    note: None,
                },
                &r.line.to_string(),
            )?);
        }
        Ok((items, rows.len() as u64))
    }

    /// A chunk's receipt: written only if absent, so a repeated chunk is a
    /// replay that changes nothing and gets the stored summary back.
    fn chunk_receipt(
        &self,
        src: &FeedSource,
        index: u64,
        summary: &ChunkSummary,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let summary = serde_json::to_string(summary).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.receipt_put(
            &format!("RECEIPT#feed#{}", src.id()),
            format!("CHUNK#{index:08}"),
            now,
            [("summary", s(summary))],
        )
    }

    /// Applies one chunk of an object's valid rows, exactly once.
    pub async fn apply_feed_chunk(
        &self,
        src: &FeedSource,
        effect: FeedEffect,
        index: u64,
        rows: &[FeedRowInput],
    ) -> Result<ChunkResult, StoreError> {
        let receipt_pk = format!("RECEIPT#feed#{}", src.id());
        let actor = src.actor();
        for attempt in 0..MAX_ATTEMPTS {
            let now = clock::now();
            let mut summary = ChunkSummary::default();
            let mut items: Vec<TransactWriteItem> = Vec::with_capacity(1 + 2 * rows.len());
            // Index of each level action in `items`, with its key, for refining after a conflict.
            let mut level_actions: Vec<(usize, (Sku, Location))> = Vec::new();
            match effect {
                FeedEffect::Add => {
                    let (adds, applied) = self.add_items(src, rows, &now)?;
                    items = adds;
                    summary.applied = applied;
                }
                FeedEffect::Count => {
                    let states = self.level_states(rows).await?;
                    let mut seen: HashMap<(&Sku, &Location), &FeedRowInput> = HashMap::new();
                    for r in rows {
                        let key = (&r.sku, &r.location);
                        if let Some(first) = seen.get(&key) {
                            if first.quantity == r.quantity && first.as_of == r.as_of {
                                summary.duplicates += 1;
                            } else {
                                summary.rejected.push((
                                    r.line,
                                    format!(
                                        "a second count for {} at {} disagrees with line {}",
                                        r.sku, r.location, first.line
                                    ),
                                ));
                            }
                            continue;
                        }
                        seen.insert(key, r);
                        let state = states
                            .get(&(r.sku.clone(), r.location.clone()))
                            .cloned()
                            .unwrap_or_default();
                        match self.plan_count(src, r, &state).await? {
                            CountPlan::Stale => summary.stale += 1,
                            CountPlan::Duplicate => summary.duplicates += 1,
                            CountPlan::Contradictory(why) => summary.rejected.push((r.line, why)),
                            CountPlan::Set { before, after, moved } => {
                                level_actions.push((items.len(), (r.sku.clone(), r.location.clone())));
                                items.push(self.count_action(src, r, &state, after, &now)?);
                                items.push(self.ledger_put(
                                    &r.sku,
                                    LedgerEntry {
                                        at: now.clone(),
                                        sku: r.sku.to_string(),
                                        location: r.location.to_string(),
                                        delta: after - before,
                                        reason: ReasonCode::SupplierCount.as_str().into(),
                                        reference: src.reference(r.line),
                                        actor: actor.as_str().into(),
                                        damaged: None,
                                        requested: None,
                                        short: None,
                                        before: Some(before),
                                        after: Some(after),
                                        document: None,
                                        note: Some(format!(
                                            "counted {} as of {}; {moved:+} moved since",
                                            r.quantity, r.as_of
                                        )),
                                    },
                                    &r.line.to_string(),
                                )?);
                                summary.applied += 1;
                            }
                        }
                    }
                }
            }
            items.insert(0, self.chunk_receipt(src, index, &summary, &now)?);
            let Some(reasons) = self.transact(items).await? else {
                return Ok(ChunkResult {
                    summary,
                    replayed: false,
                });
            };
            if failed_condition(reasons.first()) {
                let stored = reasons
                    .first()
                    .and_then(CancellationReason::item)
                    .and_then(|i| get_s(i, "summary"))
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("feed receipt {receipt_pk} has no readable summary"))
                    })?;
                return Ok(ChunkResult {
                    summary: stored,
                    replayed: true,
                });
            }
            // A level moved between the read and the write (a sale, say): read again.
            let moved = level_actions
                .iter()
                .any(|(i, _)| failed_condition(reasons.get(i + 1)));
            tracing::debug!(attempt, moved, chunk = index, source = %src.id(), "feed chunk cancelled; retrying");
            if !moved {
                backoff(attempt).await;
            }
        }
        Err(StoreError::Contention(MAX_ATTEMPTS))
    }

    /// Reads the levels a chunk of counts touches, strongly consistent.
    async fn level_states(
        &self,
        rows: &[FeedRowInput],
    ) -> Result<HashMap<(Sku, Location), LevelState>, StoreError> {
        let mut keys: Vec<(Sku, Location)> = Vec::new();
        for r in rows {
            let k = (r.sku.clone(), r.location.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        let mut pending: Option<KeysAndAttributes> = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys.iter().map(|(s, l)| level_key(s, l)).collect()))
                .consistent_read(true)
                .build()?,
        );
        let mut rounds = 0;
        while let Some(request) = pending.take().filter(|r| !r.keys().is_empty()) {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                let pk = get_s(item, "pk").unwrap_or_default().to_owned();
                let sk = get_s(item, "sk").unwrap_or_default().to_owned();
                found.insert((pk, sk), item.clone());
            }
            pending = out.unprocessed_keys().and_then(|u| u.get(&self.table)).cloned();
            rounds += 1;
            if pending.is_some() {
                backoff(rounds.min(6)).await;
            }
        }
        Ok(keys
            .into_iter()
            .map(|(sku, loc)| {
                let item = found.get(&(format!("SKU#{sku}"), format!("LEVEL#{loc}")));
                ((sku, loc), LevelState::from_item(item))
            })
            .collect())
    }

    /// Decides what a count row does to its level.
    async fn plan_count(
        &self,
        src: &FeedSource,
        r: &FeedRowInput,
        state: &LevelState,
    ) -> Result<CountPlan, StoreError> {
        if state.count_source.as_deref() == Some(src.id().as_str()) {
            let same = state.count_quantity == Some(i64::from(r.quantity))
                && state.counted_at.as_deref() == Some(&r.as_of);
            return Ok(if same {
                CountPlan::Duplicate
            } else {
                CountPlan::Contradictory(format!(
                    "a second count for {} at {} disagrees with one already applied from this file",
                    r.sku, r.location
                ))
            });
        }
        if state.counted_at.as_deref().is_some_and(|c| c > r.as_of.as_str()) {
            return Ok(CountPlan::Stale);
        }
        // Movements recorded after the count was taken stay applied on top of it.
        let moved = if state.exists && state.updated_at.as_str() > r.as_of.as_str() {
            self.moved_since(&r.sku, &r.location, &r.as_of).await?
        } else {
            0
        };
        let after = (i64::from(r.quantity) + moved).max(0);
        Ok(CountPlan::Set {
            before: state.available,
            after,
            moved,
        })
    }

    /// The net change to a level's `available` recorded after `since`,
    /// other counts excluded (a newer count makes this one stale instead).
    async fn moved_since(&self, sku: &Sku, location: &Location, since: &str) -> Result<i64, StoreError> {
        let mut total = 0;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .filter_expression("#loc = :loc AND #reason <> :count")
                .expression_attribute_names("#loc", "location")
                .expression_attribute_names("#reason", "reason")
                .expression_attribute_values(":pk", s(format!("SKU#{sku}")))
                .expression_attribute_values(":from", s(format!("LEDGER#{since}~")))
                .expression_attribute_values(":to", s("LEDGER#~"))
                .expression_attribute_values(":loc", s(location.as_str()))
                .expression_attribute_values(":count", s(ReasonCode::SupplierCount.as_str()))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            total += out.items().iter().filter_map(|i| get_n(i, "delta")).sum::<i64>();
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(total),
            }
        }
    }

    /// The compare-and-set that applies a count.
    fn count_action(
        &self,
        src: &FeedSource,
        r: &FeedRowInput,
        state: &LevelState,
        after: i64,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut names = level_names();
        for (k, v) in [
            ("#cat", "counted_at"),
            ("#csrc", "count_source"),
            ("#cq", "count_quantity"),
        ] {
            names.insert(k.into(), v.into());
        }
        let mut values = stamp_values(
            &r.sku,
            &r.location,
            now,
            ReasonCode::SupplierCount,
            &src.reference(r.line),
        );
        values.insert(":after".into(), n(after));
        values.insert(":asof".into(), s(&r.as_of));
        values.insert(":src".into(), s(src.id()));
        values.insert(":cq".into(), n(i64::from(r.quantity)));
        let condition = if state.exists {
            values.insert(":ver".into(), n(state.version));
            "#ver = :ver"
        } else {
            "attribute_not_exists(pk)"
        };
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(level_key(&r.sku, &r.location)))
                    .update_expression(format!(
                        "SET #av = :after, #cat = :asof, #csrc = :src, #cq = :cq, {LEVEL_STAMP} ADD #ver :one"
                    ))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .build()?,
            )
            .build())
    }
}
