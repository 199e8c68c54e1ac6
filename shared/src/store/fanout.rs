//! What the fan-out last sent each channel for a SKU, kept beside the SKU's
//! levels (`SKU#<sku>` / `CHANNEL#<name>`, `kind = published`): a change
//! that leaves a channel's figure as it was sends that channel nothing, and
//! a replayed stream record finds its figure already sent.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;

use super::{get_n, get_s, n, s, StockStore, StoreError};
use crate::domain::Sku;

/// A channel's last published figure for one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub available: i64,
    pub sequence: u64,
}

impl StockStore {
    /// What each channel was last sent for this SKU, by channel name.
    pub async fn published(&self, sku: &Sku) -> Result<HashMap<String, Published>, StoreError> {
        let mut out = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :ch)")
                .expression_attribute_values(":pk", s(format!("SKU#{sku}")))
                .expression_attribute_values(":ch", s("CHANNEL#"))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in page.items() {
                if let Some(name) = get_s(item, "sk").and_then(|k| k.strip_prefix("CHANNEL#")) {
                    out.insert(
                        name.to_owned(),
                        Published {
                            available: get_n(item, "available").unwrap_or(0),
                            sequence: get_n(item, "sequence").unwrap_or(0).max(0) as u64,
                        },
                    );
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Records what a channel was sent, unless a later sequence is already
    /// recorded. `Ok(false)`: a newer figure was published first.
    pub async fn record_published(&self, sku: &Sku, channel: &str, p: Published) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("SKU#{sku}")))
            .item("sk", s(format!("CHANNEL#{channel}")))
            .item("kind", s("published"))
            .item("sku", s(sku.as_str()))
            .item("channel", s(channel))
            .item("available", n(p.available))
            .item("sequence", n(p.sequence as i64))
            .item("published_at", s(crate::clock::now()))
            .condition_expression("attribute_not_exists(pk) OR #seq < :seq")
            .expression_attribute_names("#seq", "sequence")
            .expression_attribute_values(":seq", n(p.sequence as i64))
            .send()
            .await;
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
}
