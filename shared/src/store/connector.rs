//! What a channel's connector keeps per SKU ([`SyncState`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;

use super::reads::put_applied;
use super::render::{key, n, s, Item};
use super::{StockStore, StoreError};
use crate::connector::SyncState;
use crate::keys;

/// SKUs' states read at once.
const READ_CONCURRENCY: usize = 16;

fn state_of(item: Item) -> Result<SyncState, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("a connector state: {e}")))
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
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #rev = :seen")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_values(":seen", n(seen as i64))
            .send()
            .await;
        let saved = put_applied(res)?;
        if !saved {
            state.rev = seen;
        }
        Ok(saved)
    }

    /// Every SKU's state on a channel, in SKU order.
    pub async fn channel_states(&self, channel: &str) -> Result<Vec<SyncState>, StoreError> {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(keys::sync_partition(channel)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await?
            .into_iter()
            .map(state_of)
            .collect()
    }
}
