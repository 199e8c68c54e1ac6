//! `stock-fanout`: the stock table's stream (the outbox: committed levels and
//! oversold receipts) to one SQS FIFO queue per channel and to the ops alert
//! queue. Per SKU in a batch it reads the levels once and sends each channel
//! what [`channels::messages`] says it hears. Unreadable records are batch
//! item failures, so Lambda retries, bisects, then hands them to the DLQ.

use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;
use stockroom::alerts::Alerts;
use stockroom::channels::{self, Channels, LastSent, SendError};
use stockroom::clock;
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::{Location, Sku};
use stockroom::store::{Published, StockStore, StoreError};
use stockroom::wire::stream::{self, Batch};
use time::OffsetDateTime;

/// SKUs published at once within a batch.
const CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
    pub sqs: stockroom::aws_sdk_sqs::Client,
    pub channels: Channels,
    /// Channel name → queue URL.
    pub queues: HashMap<String, String>,
    /// The ops alert queue, for oversells.
    pub alerts: Alerts,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let (channels, queues) = channels::from_env()?;
        let sdk = config::aws().await;
        Ok(Self {
            store: StockStore::from_config(&sdk, &cfg),
            sqs: stockroom::aws_sdk_sqs::Client::new(&sdk),
            channels,
            queues,
            alerts: Alerts::new(stockroom::aws_sdk_sqs::Client::new(&sdk), cfg.alert_queue_url),
        })
    }
}

/// Publishes one SKU's current figures to the channels that sell from the
/// touched locations and whose figure changed. Returns the messages sent.
pub async fn publish_sku(app: &App, sku: &Sku, touched: &HashSet<Location>) -> Result<usize, FanoutError> {
    if app.channels.selling_from(touched).next().is_none() {
        return Ok(0);
    }
    let (levels, published) = futures::try_join!(app.store.levels(sku), app.store.published(sku))?;
    let last_sent = published
        .into_iter()
        .map(|(channel, p)| (channel, LastSent::new(p.available, p.sequence)))
        .collect();
    let messages = channels::messages(&app.channels, sku, &levels, &last_sent, touched, &clock::now());
    for m in &messages {
        channels::send(&app.sqs, &app.queues, m).await?;
        // Sent first, recorded after: a crash in between resends the same
        // sequence, which SQS deduplicates and consumers ignore.
        let (available, sequence) = (m.available, m.sequence);
        app.store
            .record_published(
                sku,
                &m.channel,
                Published {
                    available,
                    sequence,
                    published_at: None,
                },
            )
            .await?;
        tracing::info!(sku = %sku, channel = %m.channel, available, sequence, "published");
    }
    Ok(messages.len())
}

/// Handles one batch of stream records.
pub async fn handle(app: &App, event: Event) -> DynamoDbEventResponse {
    let batch = Batch::read(&event.records);
    let mut failures: Vec<String> = Vec::new();
    for e in &batch.poison {
        tracing::error!(error = %e, event_id = %e.event_id, "poison stream record");
        failures.push(e.sequence.clone());
    }
    let publishing = futures::stream::iter(batch.skus)
        .map(|g| async move { (publish_sku(app, &g.sku, &g.touched).await, g) })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>();
    let (raised, published) =
        futures::join!(app.alerts.raise(batch.oversells, batch.feed_alerts), publishing);
    // Retried by Lambda; a retry may alert twice, never not at all.
    failures.extend(raised.failed);
    let mut sent = 0usize;
    for (r, g) in published {
        match r {
            Ok(n) => sent += n,
            Err(e) => {
                // Retried by Lambda from the first failed record; publishing is idempotent.
                tracing::error!(sku = %g.sku, error = %e, "fan-out failed; the records will be retried");
                failures.extend(g.sequences);
            }
        }
    }
    let (records, poison, failed) = (event.records.len(), batch.poison.len(), failures.len());
    let lag_ms = stream::lag_ms(&event.records, OffsetDateTime::now_utc());
    let (alerts, feed_alerts) = (raised.oversells, raised.feeds);
    tracing::info!(
        records,
        sent,
        alerts,
        feed_alerts,
        poison,
        failed,
        lag_ms,
        "fan-out batch"
    );
    stockroom::alerts::metric_units(
        stockroom::METRIC_NAMESPACE,
        "stock-fanout",
        &[
            ("ChannelMessages", sent as f64, "Count"),
            ("OversellAlerts", alerts as f64, "Count"),
            ("FeedAlerts", feed_alerts as f64, "Count"),
            ("PoisonRecords", poison as f64, "Count"),
            ("FanoutLag", lag_ms, "Milliseconds"),
        ],
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures.into_iter().map(failure).collect();
    response
}

fn failure(sequence: String) -> DynamoDbBatchItemFailure {
    let mut f = DynamoDbBatchItemFailure::default();
    f.item_identifier = Some(sequence);
    f
}
