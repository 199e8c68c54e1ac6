//! The reference channel consumer: what a channel integration runs on its
//! queue. It applies each [`ChannelMessage`] at most once in effect, keeping
//! the highest `sequence` per SKU, so messages that arrive late, twice or out
//! of order still leave the channel at the right figure.
//!
//! Plug a real channel in by implementing [`ChannelConnector`] (e.g. a call
//! to a platform's inventory API that sets the SKU's available quantity) and
//! calling [`apply_batch`] from a Lambda function with an SQS trigger on the
//! channel's FIFO queue (`FunctionResponseTypes: [ReportBatchItemFailures]`).
//! The highest applied sequence per SKU is kept in DynamoDB by
//! [`SequenceStore`], in any table with a string `pk` and `sk`.

use std::future::Future;

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::channels::ChannelMessage;
use crate::keys;
use crate::store::{StockStore, StoreError};

/// A channel that can be told a SKU's available figure.
pub trait ChannelConnector: Send + Sync {
    /// Sets the channel's available quantity for a SKU to `available`.
    /// Must be safe to repeat with the same figure.
    fn set_available(
        &self,
        sku: &str,
        available: i64,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

/// A channel refused or failed an update; the message is retried.
#[derive(Debug, thiserror::Error)]
#[error("the channel did not take the update: {0}")]
pub struct ConnectorError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("not a channel message: {0}")]
    Malformed(String),
    #[error("message for channel {got:?} on the queue of {expected:?}")]
    WrongChannel { got: String, expected: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// The highest sequence applied per SKU for one channel:
/// `pk = CONSUMER#<channel>`, `sk = SKU#<sku>`.
#[derive(Debug, Clone)]
pub struct SequenceStore {
    store: StockStore,
    channel: String,
}

impl SequenceStore {
    pub fn new(client: Client, table: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            // Nothing here is a receipted stock change: the TTL is never used.
            store: StockStore::new(client, table, 0),
            channel: channel.into(),
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The highest sequence applied for a SKU, and the figure it carried.
    pub async fn last(&self, sku: &str) -> Result<Option<(u64, i64)>, StoreError> {
        let number = |item: &HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(self
            .store
            .item(&keys::consumer(&self.channel, sku))
            .await?
            .map(|i| (number(&i, "sequence").max(0) as u64, number(&i, "available"))))
    }

    /// Records a message as applied unless a higher sequence already is.
    pub async fn advance(&self, m: &ChannelMessage) -> Result<bool, StoreError> {
        self.store
            .put_sequenced(
                &keys::consumer(&self.channel, &m.sku),
                m.sequence,
                [
                    ("kind", AttributeValue::S("consumer".into())),
                    ("available", AttributeValue::N(m.available.to_string())),
                    ("at", AttributeValue::S(m.at.clone())),
                ],
            )
            .await
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The channel was set to the message's figure.
    Set,
    /// A message with this or a higher sequence was applied before: nothing done.
    Stale,
}

/// Applies one message: skip it if a higher or equal sequence was applied,
/// else set the channel's figure, then record the sequence.
pub async fn apply_message<C: ChannelConnector>(
    body: &str,
    store: &SequenceStore,
    connector: &C,
) -> Result<Applied, ConsumeError> {
    let m: ChannelMessage = serde_json::from_str(body).map_err(|e| ConsumeError::Malformed(e.to_string()))?;
    if m.channel != store.channel() {
        return Err(ConsumeError::WrongChannel {
            got: m.channel,
            expected: store.channel().to_owned(),
        });
    }
    if let Some((seen, _)) = store.last(&m.sku).await? {
        if seen >= m.sequence {
            return Ok(Applied::Stale);
        }
    }
    // Set first, record after: a crash in between repeats an absolute set, which is harmless.
    connector.set_available(&m.sku, m.available).await?;
    store.advance(&m).await?;
    Ok(Applied::Set)
}

/// Applies a batch from a channel's FIFO queue. After the first failure the
/// rest of the batch is reported failed too, so one SKU's updates are never
/// applied out of their queue order; failed messages come back, and past the
/// queue's `maxReceiveCount` land in its dead-letter queue.
pub async fn apply_batch<C: ChannelConnector>(
    event: SqsEvent,
    store: &SequenceStore,
    connector: &C,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed = false;
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if !failed {
            match apply_message(record.body.as_deref().unwrap_or_default(), store, connector).await {
                Ok(outcome) => {
                    tracing::debug!(message_id = %id, ?outcome, "channel message");
                    continue;
                }
                Err(e) => {
                    tracing::error!(message_id = %id, channel = store.channel(), error = %e, "channel message failed");
                    failed = true;
                }
            }
        }
        let mut f = BatchItemFailure::default();
        f.item_identifier = id;
        response.batch_item_failures.push(f);
    }
    response
}
