//! What a channel's connector keeps per SKU ([`SyncState`]).

use std::collections::HashMap;

use futures::StreamExt;

use super::reads::from_item;
use super::render::{key, s, Item};
use super::{StockStore, StoreError};
use crate::connector::runs::{DriftRow, ModeRecord, RunKind, RunRecord, RunStatus};
use crate::connector::SyncState;
use crate::keys;

/// SKUs' states read at once.
const READ_CONCURRENCY: usize = 16;

fn state_of(item: Item) -> Result<SyncState, StoreError> {
    from_item(item, "a connector state")
}

impl StockStore {
    /// A SKU's connector state on a channel (`None`: never synced).
    pub async fn sync_state(&self, channel: &str, sku: &str) -> Result<Option<SyncState>, StoreError> {
        self.item(&keys::sync(channel, sku))
            .await?
            .map(state_of)
            .transpose()
    }

    /// Several SKUs' states; SKUs never synced are left out.
    pub async fn sync_states(
        &self,
        channel: &str,
        skus: &[String],
    ) -> Result<HashMap<String, SyncState>, StoreError> {
        let read: Vec<Result<(String, Option<SyncState>), StoreError>> = futures::stream::iter(skus.to_vec())
            .map(|sku| async move {
                let state = self.sync_state(channel, &sku).await?;
                Ok((sku, state))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        let mut out = HashMap::with_capacity(read.len());
        for r in read {
            if let (sku, Some(state)) = r? {
                out.insert(sku, state);
            }
        }
        Ok(out)
    }

    /// Saves a state if nobody saved another since it was read (its `rev`);
    /// `Ok(false)`: someone did, read it again. The saved state's `rev` is the new one.
    pub async fn save_sync_state(&self, channel: &str, state: &mut SyncState) -> Result<bool, StoreError> {
        let seen = state.rev;
        state.rev = seen + 1;
        let mut item: Item = serde_dynamo::to_item(&*state)
            .map_err(|e| StoreError::Corrupt(format!("a connector state: {e}")))?;
        item.extend(key(&keys::sync(channel, &state.sku)));
        item.insert("kind".into(), s("connector"));
        item.insert("channel".into(), s(channel));
        let saved = self.put_if_unmoved(item, "rev", "=", seen).await?;
        if !saved {
            state.rev = seen;
        }
        Ok(saved)
    }

    /// Every SKU's state on a channel, in SKU order.
    pub async fn channel_states(&self, channel: &str) -> Result<Vec<SyncState>, StoreError> {
        self.query_prefix(&keys::sync_partition(channel), None)
            .await?
            .into_iter()
            .map(state_of)
            .collect()
    }
}

/// Drift rows read at once, at most.
pub const MAX_DRIFT_PAGE: i32 = 500;

fn to_item<T: serde::Serialize>(value: &T, what: &str) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl StockStore {
    async fn put(&self, k: &keys::Key, kind: &str, mut item: Item) -> Result<(), StoreError> {
        item.extend(key(k));
        // A run's own `kind` (reconcile, import, resync) says enough.
        item.entry("kind".into()).or_insert_with(|| s(kind));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await?;
        Ok(())
    }

    /// A channel's mode as ops last set it (`None`: never set: the configured one holds).
    pub async fn channel_mode(&self, channel: &str) -> Result<Option<ModeRecord>, StoreError> {
        self.item(&keys::channel_mode(channel))
            .await?
            .map(|i| from_item(i, "a channel mode"))
            .transpose()
    }

    /// Sets a channel's mode, keeping the change in the channel's audit trail.
    pub async fn set_channel_mode(&self, record: &ModeRecord) -> Result<(), StoreError> {
        let item = to_item(record, "a channel mode")?;
        self.put(
            &keys::channel_mode_change(&record.channel, &record.since),
            "channel_mode_change",
            item.clone(),
        )
        .await?;
        self.put(&keys::channel_mode(&record.channel), "channel_mode", item)
            .await
    }

    /// A channel's mode changes, newest first.
    pub async fn channel_mode_changes(&self, channel: &str) -> Result<Vec<ModeRecord>, StoreError> {
        let k = keys::channel_mode_change(channel, "");
        self.query_prefix(&k.pk, Some(&k.sk))
            .await?
            .into_iter()
            .rev()
            .map(|i| from_item(i, "a channel mode"))
            .collect()
    }

    /// Saves a run's record (its worker is the only writer while it runs).
    pub async fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let item = to_item(run, "a run")?;
        self.put(&keys::channel_run(&run.channel, &run.id), "channel_run", item)
            .await?;
        if run.kind == RunKind::Reconcile && run.status == RunStatus::Done {
            let pointer = HashMap::from([("id".to_owned(), s(&run.id))]);
            self.put(
                &keys::last_reconcile(&run.channel),
                "channel_run_pointer",
                pointer,
            )
            .await?;
        }
        Ok(())
    }

    /// One run of a channel.
    pub async fn run_record(&self, channel: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.item(&keys::channel_run(channel, id))
            .await?
            .map(|i| from_item(i, "a run"))
            .transpose()
    }

    /// The last reconcile of a channel that finished.
    pub async fn last_reconcile(&self, channel: &str) -> Result<Option<RunRecord>, StoreError> {
        let Some(pointer) = self.item(&keys::last_reconcile(channel)).await? else {
            return Ok(None);
        };
        let id = pointer
            .get("id")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        self.run_record(channel, &id).await
    }

    /// Records what a reconcile found different, and notes on every SKU's
    /// state that this run saw it (and since when it differs).
    pub async fn record_findings(
        &self,
        channel: &str,
        run: &str,
        seen: &[(String, Option<DriftRow>)],
    ) -> Result<(), StoreError> {
        let writes: Vec<Result<(), StoreError>> = futures::stream::iter(seen.to_vec())
            .map(|(sku, row)| async move {
                if let Some(row) = &row {
                    let item = to_item(row, "a drift row")?;
                    self.put(&keys::drift_row(channel, run, &sku), "channel_drift", item).await?;
                }
                let update = match &row {
                    Some(_) => "SET seen_run = :run, drift_since = if_not_exists(drift_since, :since), sku = :sku, #kind = :kind",
                    None => "SET seen_run = :run, sku = :sku, #kind = :kind REMOVE drift_since",
                };
                let mut req = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&keys::sync(channel, &sku))))
                    .update_expression(update)
                    .expression_attribute_names("#kind", "kind")
                    .expression_attribute_values(":run", s(run))
                    .expression_attribute_values(":sku", s(&sku))
                    .expression_attribute_values(":kind", s("connector"));
                if let Some(row) = &row {
                    req = req.expression_attribute_values(":since", s(&row.since));
                }
                req.send().await?;
                Ok(())
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        writes.into_iter().collect()
    }

    /// A page of what a reconcile found different, in SKU order.
    pub async fn drift_rows(
        &self,
        channel: &str,
        run: &str,
        limit: i32,
        after: Option<&str>,
    ) -> Result<(Vec<DriftRow>, Option<String>), StoreError> {
        let first = keys::drift_row(channel, run, "");
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&first.pk))
            .expression_attribute_values(":prefix", s(&first.sk))
            .limit(limit.clamp(1, MAX_DRIFT_PAGE));
        if let Some(after) = after {
            query =
                query.set_exclusive_start_key(Some(key(&keys::Key::new(first.pk.clone(), after.to_owned()))));
        }
        let out = query.send().await?;
        let rows = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item(i, "a drift row"))
            .collect::<Result<Vec<DriftRow>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
        Ok((rows, next))
    }

    /// The SKUs a reconcile run saw on the channel (its `seen_run` marks;
    /// only the two attributes are read).
    pub async fn seen_in_run(
        &self,
        channel: &str,
        run: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::sync_partition(channel)))
            .projection_expression("sku, seen_run")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await?;
        Ok(items
            .iter()
            .filter(|i| i.get("seen_run").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(run))
            .filter_map(|i| i.get("sku").and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    /// Every SKU with a level at a location (the `by-location` index).
    pub async fn skus_at(&self, location: &crate::domain::Location) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.for_each_sku_at(location, |sku| out.push(sku.to_owned()))
            .await?;
        Ok(out)
    }
}
