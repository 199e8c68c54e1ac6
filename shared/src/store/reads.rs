//! What the store reads, and the few writes that are not stock changes
//! (published figures, consumer sequences, feed state).

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::KeysAndAttributes;
use serde::de::DeserializeOwned;

use super::render::{key, level_of, n, s, stored_receipt, Item};
use super::{backoff, StockStore, StoreError};
use crate::clock;
use crate::domain::{Location, ReasonCode, Sku};
use crate::feed::{ChunkSummary, FeedSource, FeedState, LocationStats};
use crate::keys::{self, Key, ReceiptKind};
use crate::level::{LedgerEntry, LedgerPage, LevelView};
use crate::port::{LevelReads, StoredReceipt};
use crate::returns::CancelBook;
use crate::sale::LineResult;

/// A channel's last published figure for one SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Published {
    #[serde(default)]
    pub available: i64,
    #[serde(default)]
    pub sequence: u64,
    /// When it was sent (as recorded; not written by [`StockStore::record_published`]'s caller).
    #[serde(default)]
    pub published_at: Option<String>,
}

/// A conditional put's outcome: written (`true`) or its condition failed (`false`).
pub(super) fn put_applied(
    res: Result<PutItemOutput, aws_sdk_dynamodb::error::SdkError<PutItemError, HttpResponse>>,
) -> Result<bool, StoreError> {
    match res {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(PutItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn from_item<T: DeserializeOwned>(item: Item, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

impl StockStore {
    /// Every item of a partition whose sort key starts with `prefix`, read
    /// strongly consistent, through the SDK's paginator.
    /// (`None`: the whole partition).
    pub(super) async fn query_prefix(&self, pk: &str, prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", s(pk));
        let query = match prefix {
            Some(p) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(p)),
            None => query.key_condition_expression("pk = :pk"),
        };
        Ok(query.into_paginator().items().send().try_collect().await?)
    }

    /// Every level of a SKU, read strongly consistent. Empty for a SKU never stocked.
    pub async fn levels(&self, sku: &Sku) -> Result<Vec<LevelView>, StoreError> {
        self.query_prefix(&keys::sku(sku), Some(keys::LEVEL))
            .await?
            .iter()
            .map(level_of)
            .collect()
    }

    /// A page of a SKU's ledger, newest first.
    pub async fn ledger(
        &self,
        sku: &Sku,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<LedgerPage, StoreError> {
        let pk = keys::sku(sku);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :ledger)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":ledger", s(keys::LEDGER))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(cursor.map(|sk| key(&Key::new(&pk, sk))))
            .send()
            .await?;
        let entries = out
            .items()
            .iter()
            .map(|i| from_item(i.clone(), "a ledger entry"))
            .collect::<Result<_, _>>()?;
        Ok(LedgerPage {
            sku: sku.to_string(),
            entries,
            next: out
                .last_evaluated_key()
                .and_then(|k| text(k, "sk"))
                .map(keys::encode_cursor),
        })
    }

    /// A receipt part as stored, if there is one.
    pub(super) async fn receipt(&self, k: &Key) -> Result<Option<StoredReceipt>, StoreError> {
        Ok(self.item(k).await?.map(|item| stored_receipt(k, &item)))
    }

    /// Reads the refunded order's sale receipt and cancel counters.
    /// `None` when Stockroom has no record of the order (never seen, or its
    /// receipt expired): then a cancel restocks what the refund says.
    pub(super) async fn cancel_book(&self, order_pk: &str) -> Result<Option<CancelBook>, StoreError> {
        let mut book = CancelBook::default();
        let mut found_sale = false;
        for item in self.query_prefix(order_pk, None).await? {
            let sk = text(&item, "sk").unwrap_or_default();
            if sk.starts_with(keys::PART) {
                found_sale = true;
                let lines: Vec<LineResult> = text(&item, "lines")
                    .and_then(|l| serde_json::from_str(l).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("receipt {order_pk} has no readable lines"))
                    })?;
                for l in lines {
                    if let Ok(sku) = Sku::parse(&l.sku) {
                        *book.taken.entry(sku).or_default() += i64::from(l.taken);
                    }
                }
            } else if let Some(sku) = sk.strip_prefix(keys::CANCELLED) {
                if let Ok(sku) = Sku::parse(sku) {
                    let units = item
                        .get("units")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok());
                    book.done.insert(sku, units);
                }
            }
        }
        Ok(found_sale.then_some(book))
    }

    /// What each channel was last sent for this SKU, by channel name.
    pub async fn published(&self, sku: &Sku) -> Result<HashMap<String, Published>, StoreError> {
        let mut out = HashMap::new();
        for item in self.query_prefix(&keys::sku(sku), Some(keys::CHANNEL)).await? {
            if let Some(name) = text(&item, "sk").and_then(|k| k.strip_prefix(keys::CHANNEL)) {
                let name = name.to_owned();
                out.insert(name, from_item(item, "a published figure")?);
            }
        }
        Ok(out)
    }

    /// Records what a channel was sent, unless a later sequence is already recorded.
    pub async fn record_published(&self, sku: &Sku, channel: &str, p: Published) -> Result<(), StoreError> {
        let fields = [
            ("kind", s("published")),
            ("sku", s(sku.as_str())),
            ("channel", s(channel)),
            ("available", n(p.available)),
            ("published_at", s(clock::now())),
        ];
        self.put_sequenced(&keys::published(sku, channel), p.sequence, fields)
            .await
            .map(|_| ())
    }

    /// Puts an item carrying a `sequence`, unless one with the same or a
    /// higher sequence is there. `Ok(false)`: a newer one was there first.
    pub async fn put_sequenced(
        &self,
        k: &Key,
        sequence: u64,
        fields: impl IntoIterator<Item = (&'static str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut item = key(k);
        item.insert("sequence".into(), n(sequence as i64));
        item.extend(fields.into_iter().map(|(name, v)| (name.to_owned(), v)));
        self.put_if_unmoved(item, "sequence", "<", sequence).await
    }

    /// Puts an item if none is there or its `attribute` compares to `seen`
    /// (`op`: `=` or `<`) as expected. `Ok(false)`: another writer got there first.
    pub(super) async fn put_if_unmoved(
        &self,
        item: Item,
        attribute: &str,
        op: &str,
        seen: u64,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists(pk) OR #attr {op} :seen"))
            .expression_attribute_names("#attr", attribute)
            .expression_attribute_values(":seen", n(seen as i64))
            .send()
            .await;
        put_applied(res)
    }

    /// Any one item, strongly consistent.
    pub async fn item(&self, k: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .set_key(Some(key(k)))
            .send()
            .await?;
        Ok(out.item)
    }

    fn feed_pk(src: &FeedSource) -> String {
        keys::receipt(ReceiptKind::Feed, &src.id())
    }

    /// Where an object's import stands, if it was seen before.
    pub async fn feed_state(&self, src: &FeedSource) -> Result<Option<FeedState>, StoreError> {
        let item = self.item(&Key::new(Self::feed_pk(src), keys::STATE)).await?;
        item.as_ref()
            .and_then(|i| text(i, "state"))
            .map(|st| serde_json::from_str(st).map_err(|e| StoreError::Corrupt(format!("feed state: {e}"))))
            .transpose()
    }

    /// Records where an object's import stands, with the alert that
    /// reports it (if any) in the same write: `stock-fanout` sends it from
    /// the table's stream, so an alert recorded is an alert sent.
    pub async fn save_feed_state(
        &self,
        src: &FeedSource,
        state: &FeedState,
        alert: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let item = self.feed_state_item(src, state, alert)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await?;
        if let (FeedState::Held { .. }, Some(alert)) = (state, alert) {
            // Listed for ops until it is released (`GET /feeds/held`).
            let mut marker = key(&keys::held_feed(&src.id()));
            marker.insert("kind".into(), s("held_feed"));
            marker.insert("alert".into(), s(alert.to_string()));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(marker))
                .send()
                .await?;
        }
        Ok(())
    }

    /// The files held for ops: each one's `feed_held` alert (what, why, and the release request).
    pub async fn held_feeds(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let k = keys::held_feed("");
        Ok(self
            .query_prefix(&k.pk, None)
            .await?
            .iter()
            .filter_map(|i| text(i, "alert").and_then(|a| serde_json::from_str(a).ok()))
            .collect())
    }

    /// Replaces an object's state only if it is still `was` (a release
    /// racing an import, or another release). `Ok(false)`: it moved.
    pub async fn replace_feed_state(
        &self,
        src: &FeedSource,
        was: &FeedState,
        state: &FeedState,
    ) -> Result<bool, StoreError> {
        let was_text = serde_json::to_string(was).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.feed_state_item(src, state, None)?))
            .condition_expression("#state = :was")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":was", s(was_text))
            .send()
            .await;
        let replaced = put_applied(res)?;
        if replaced && matches!(was, FeedState::Held { .. }) {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(&keys::held_feed(&src.id()))))
                .send()
                .await?;
        }
        Ok(replaced)
    }

    fn feed_state_item(
        &self,
        src: &FeedSource,
        state: &FeedState,
        alert: Option<&serde_json::Value>,
    ) -> Result<Item, StoreError> {
        let text = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = key(&Key::new(Self::feed_pk(src), keys::STATE));
        item.extend([
            ("kind".to_owned(), s("feed_state")),
            ("state".to_owned(), s(text)),
            ("status".to_owned(), s(state.name())),
            ("updated_at".to_owned(), s(clock::now())),
            ("expires_at".to_owned(), n(self.expires_at())),
        ]);
        if let Some(alert) = alert {
            item.insert("alert".into(), s(alert.to_string()));
        }
        Ok(item)
    }

    /// The summaries of every chunk of an object applied so far, added up.
    pub async fn feed_totals(&self, src: &FeedSource) -> Result<ChunkSummary, StoreError> {
        let mut total = ChunkSummary::default();
        for item in self.query_prefix(&Self::feed_pk(src), Some(keys::CHUNK)).await? {
            let c: ChunkSummary = text(&item, "summary")
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or_else(|| StoreError::Corrupt("feed chunk receipt has no readable summary".into()))?;
            total.applied += c.applied;
            total.stale += c.stale;
            total.duplicates += c.duplicates;
            total.rejected.extend(c.rejected);
        }
        total.rejected.sort();
        Ok(total)
    }

    /// Every SKU a location holds, with its total available units
    /// (the `by-location` index; eventually consistent).
    pub async fn location_stats(&self, location: &Location) -> Result<LocationStats, StoreError> {
        let mut stats = LocationStats::default();
        self.for_each_at_location(location, |l| {
            stats.skus += 1;
            stats.available += l.available.max(0);
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
        self.for_each_at_location(location, |l| {
            if l.count_source.as_deref() != Some(id.as_str()) {
                out.extend(l.sku.as_deref().and_then(|s| Sku::parse(s).ok()));
            }
        })
        .await?;
        Ok(out)
    }

    /// Each SKU with a level at a location (the `by-location` index).
    pub(super) async fn for_each_sku_at(
        &self,
        location: &Location,
        mut f: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        self.for_each_at_location(location, |l| {
            if let Some(sku) = l.sku.as_deref() {
                f(sku)
            }
        })
        .await
    }

    async fn for_each_at_location(
        &self,
        location: &Location,
        mut f: impl FnMut(&LocatedLevel),
    ) -> Result<(), StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by-location")
            .key_condition_expression("level_location = :loc")
            .expression_attribute_values(":loc", s(location.as_str()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            f(&from_item(item?, "a level")?);
        }
        Ok(())
    }
}

/// A level as the `by-location` index shows it.
#[derive(Debug, Default, serde::Deserialize)]
struct LocatedLevel {
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    available: i64,
    #[serde(default)]
    count_source: Option<String>,
}

impl LevelReads for StockStore {
    async fn level(&self, sku: &Sku, location: &Location) -> Result<Option<LevelView>, StoreError> {
        self.item(&keys::level(sku, location))
            .await?
            .as_ref()
            .map(level_of)
            .transpose()
    }

    async fn levels_at(
        &self,
        wanted: &[(Sku, Location)],
    ) -> Result<HashMap<(Sku, Location), LevelView>, StoreError> {
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let by_key: HashMap<Key, &(Sku, Location)> =
            wanted.iter().map(|w| (keys::level(&w.0, &w.1), w)).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(by_key.keys().map(key).collect()))
                .consistent_read(true)
                .build()?,
        );
        let mut rounds = 0;
        // BatchGetItem has no paginator: it hands back what it did not get to.
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
                let k = Key::new(
                    text(item, "pk").unwrap_or_default(),
                    text(item, "sk").unwrap_or_default(),
                );
                if let Some(w) = by_key.get(&k) {
                    found.insert((*w).clone(), level_of(item)?);
                }
            }
            pending = out.unprocessed_keys().and_then(|u| u.get(&self.table)).cloned();
            rounds += 1;
            if pending.is_some() {
                backoff(rounds.min(6)).await;
            }
        }
        Ok(found)
    }

    async fn moved_since(&self, sku: &Sku, location: &Location, since: &str) -> Result<i64, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .filter_expression("#loc = :loc AND #reason <> :count")
            .expression_attribute_names("#loc", "location")
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_values(":pk", s(keys::sku(sku)))
            .expression_attribute_values(":from", s(keys::ledger_after(since)))
            .expression_attribute_values(":to", s(keys::ledger_end()))
            .expression_attribute_values(":loc", s(location.as_str()))
            .expression_attribute_values(":count", s(ReasonCode::SupplierCount.as_str()))
            .into_paginator()
            .items()
            .send();
        let mut total = 0;
        while let Some(item) = pages.next().await {
            let entry: LedgerEntry = from_item(item?, "a ledger entry")?;
            total += entry.delta;
        }
        Ok(total)
    }
}
