//! `stock-fanout`: the stock table's stream (stock levels and oversold sale
//! receipts only, by event filtering) to one SQS FIFO queue per channel and
//! to the ops alert queue. The stream is the outbox: a level change or an
//! oversell that committed reaches the channels (or ops) even if its writer
//! crashed right after.
//!
//! For each SKU in a batch it reads the SKU's levels once, computes each
//! affected channel's figure, and sends a channel a message only if its
//! figure differs from what it was last sent (kept beside the levels).
//! Records it cannot read are reported as batch item failures, so Lambda
//! retries, bisects and finally hands them to the on-failure queue while the
//! rest of the batch goes through.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;
use stockroom::alerts::{Alerts, OversellAlert};
use stockroom::channels::{self, Channel, ChannelMessage, Channels};
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::Sku;
use stockroom::sale::LineResult;
use stockroom::store::{Published, StockStore, StoreError};

/// SKUs published at once within a batch.
const CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not send to the {channel} queue: {message}")]
    Send { channel: String, message: String },
    #[error("no queue is configured for channel {0}")]
    NoQueue(String),
    #[error("could not send the oversell alert: {0}")]
    Alert(String),
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
        let channels =
            Channels::parse(&std::env::var("CHANNELS").map_err(|_| ConfigError::Missing("CHANNELS"))?)?;
        let queues = channels
            .queues(&std::env::var("CHANNEL_QUEUES").map_err(|_| ConfigError::Missing("CHANNEL_QUEUES"))?)?;
        let sdk = config::aws().await;
        Ok(Self {
            store: StockStore::new(
                stockroom::aws_sdk_dynamodb::Client::new(&sdk),
                cfg.table,
                cfg.receipt_ttl_days,
            ),
            sqs: stockroom::aws_sdk_sqs::Client::new(&sdk),
            channels,
            queues,
            alerts: Alerts::new(stockroom::aws_sdk_sqs::Client::new(&sdk), cfg.alert_queue_url),
        })
    }
}

/// A record the fan-out cannot interpret.
#[derive(Debug, thiserror::Error)]
#[error("stream record {sequence}: {message}")]
pub struct PoisonRecord {
    pub sequence: String,
    pub message: String,
}

impl PoisonRecord {
    fn of(record: &EventRecord, message: String) -> Self {
        Self {
            sequence: record.change.sequence_number.clone().unwrap_or_default(),
            message,
        }
    }
}

/// The SKU and location of a stock-level record, given its new image as JSON.
pub fn level_of(record: &EventRecord, image: &serde_json::Value) -> Result<(Sku, String), PoisonRecord> {
    let poison = |message: String| PoisonRecord::of(record, message);
    let keys = serde_json::to_value(&record.change.keys).map_err(|e| poison(e.to_string()))?;
    let key = |name: &str| keys.get(name).and_then(|v| v.get("S")).and_then(|v| v.as_str());
    let sku = key("pk")
        .and_then(|pk| pk.strip_prefix("SKU#"))
        .ok_or_else(|| poison(format!("not a stock level: keys {keys}")))?;
    let location = key("sk")
        .and_then(|sk| sk.strip_prefix("LEVEL#"))
        .ok_or_else(|| poison(format!("not a stock level: keys {keys}")))?;
    let sku = Sku::parse(sku).map_err(|e| poison(e.to_string()))?;
    let location = stockroom::domain::Location::parse(location).map_err(|e| poison(e.to_string()))?;
    // The level itself must be readable: a figure the fan-out cannot sum is poison.
    if record.event_name != "REMOVE" {
        let available = image
            .get("available")
            .and_then(|v| v.get("N"))
            .and_then(|v| v.as_str());
        if available.and_then(|a| a.parse::<i64>().ok()).is_none() {
            return Err(poison(format!(
                "level {sku}@{location} has no numeric available: {image}"
            )));
        }
    }
    Ok((sku, location.to_string()))
}

/// What a stream record is to the fan-out.
#[derive(Debug)]
pub enum Change {
    /// A stock level at a location changed.
    Level(Sku, String),
    /// A sale's receipt recorded an oversell (a new receipt only: a receipt
    /// is written once, so a redelivered order raises nothing).
    Oversell(OversellAlert),
    /// Anything else the filter let through: nothing to do.
    Other,
}

/// Reads a record: levels by their keys, oversold receipts by their image.
pub fn change_of(record: &EventRecord) -> Result<Change, PoisonRecord> {
    let image = serde_json::to_value(&record.change.new_image)
        .map_err(|e| PoisonRecord::of(record, e.to_string()))?;
    if image
        .get("kind")
        .and_then(|v| v.get("S"))
        .and_then(|v| v.as_str())
        == Some("receipt")
    {
        if record.event_name != "INSERT" {
            return Ok(Change::Other);
        }
        return oversell_of(record, &image).map(|a| a.map_or(Change::Other, Change::Oversell));
    }
    level_of(record, &image).map(|(sku, location)| Change::Level(sku, location))
}

/// The alert for an oversold sale receipt's image, if it is one.
pub fn oversell_of(
    record: &EventRecord,
    image: &serde_json::Value,
) -> Result<Option<OversellAlert>, PoisonRecord> {
    let text = |name: &str| image.get(name).and_then(|v| v.get("S")).and_then(|v| v.as_str());
    if text("status") != Some("oversold") {
        return Ok(None);
    }
    let poison = |message: String| PoisonRecord::of(record, message);
    let required = |name: &str| {
        text(name)
            .map(str::to_owned)
            .ok_or_else(|| poison(format!("oversold receipt without {name}: {image}")))
    };
    let lines: Vec<LineResult> = serde_json::from_str(&required("lines")?)
        .map_err(|e| poison(format!("oversold receipt with unreadable lines: {e}")))?;
    let part = required("sk")?
        .strip_prefix("PART#")
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| poison(format!("oversold receipt with an unexpected sort key: {image}")))?;
    Ok(Some(OversellAlert::new(
        required("source")?,
        required("channel")?,
        required("order")?,
        part,
        lines,
        required("created_at")?,
    )))
}

/// Publishes one SKU's current figures to the channels that sell from the
/// touched locations and whose figure changed. Returns the messages sent.
pub async fn publish_sku(app: &App, sku: &Sku, touched: &HashSet<String>) -> Result<usize, FanoutError> {
    let affected: Vec<&Channel> = app
        .channels
        .iter()
        .filter(|c| touched.iter().any(|l| c.sells_from(l)))
        .collect();
    if affected.is_empty() {
        return Ok(0);
    }
    let (levels, published) = futures::try_join!(app.store.levels(sku), app.store.published(sku))?;
    let sequence = channels::sequence(&levels);
    let mut sent = 0;
    for channel in affected {
        let available = channel.figure(&levels);
        if let Some(p) = published.get(&channel.name) {
            if p.sequence >= sequence || p.available == available {
                continue;
            }
        }
        let latest = channel.latest(&levels);
        let message = ChannelMessage {
            sku: sku.to_string(),
            channel: channel.name.clone(),
            available,
            sequence,
            at: latest
                .map(|l| l.updated_at.clone())
                .unwrap_or_else(stockroom::clock::now),
            cause: channels::Cause {
                reason: latest.and_then(|l| l.last_reason.clone()).unwrap_or_default(),
                reference: latest.and_then(|l| l.last_reference.clone()).unwrap_or_default(),
            },
        };
        let queue = app
            .queues
            .get(&channel.name)
            .ok_or_else(|| FanoutError::NoQueue(channel.name.clone()))?;
        let body = serde_json::to_string(&message).map_err(|e| FanoutError::Send {
            channel: channel.name.clone(),
            message: e.to_string(),
        })?;
        app.sqs
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .message_group_id(channels::message_group_id(sku.as_str()))
            .message_deduplication_id(channels::deduplication_id(sku.as_str(), sequence))
            .send()
            .await
            .map_err(|e| FanoutError::Send {
                channel: channel.name.clone(),
                message: stockroom::aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        // Sent first, recorded after: a crash in between resends the same
        // sequence, which SQS deduplicates and consumers ignore.
        app.store
            .record_published(sku, &channel.name, Published { available, sequence })
            .await?;
        tracing::info!(sku = %sku, channel = %channel.name, available, sequence, "published");
        sent += 1;
    }
    Ok(sent)
}

/// One SKU's records in a batch.
struct SkuRecords {
    sku: Sku,
    sequences: Vec<String>,
    touched: HashSet<String>,
}

fn failure(sequence: String) -> DynamoDbBatchItemFailure {
    let mut f = DynamoDbBatchItemFailure::default();
    f.item_identifier = Some(sequence);
    f
}

/// Handles one batch of stream records.
pub async fn handle(app: &App, event: Event) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut groups: Vec<SkuRecords> = Vec::new();
    let mut poison = 0usize;
    let oldest = event
        .records
        .iter()
        .map(|r| r.change.approximate_creation_date_time)
        .min();
    let records = event.records.len();
    let mut oversells: Vec<(String, OversellAlert)> = Vec::new();
    for record in &event.records {
        let sequence = record.change.sequence_number.clone().unwrap_or_default();
        match change_of(record) {
            Ok(Change::Level(sku, location)) => match groups.iter_mut().find(|g| g.sku == sku) {
                Some(g) => {
                    g.sequences.push(sequence);
                    g.touched.insert(location);
                }
                None => groups.push(SkuRecords {
                    sku,
                    sequences: vec![sequence],
                    touched: HashSet::from([location]),
                }),
            },
            Ok(Change::Oversell(alert)) => oversells.push((sequence, alert)),
            Ok(Change::Other) => {}
            Err(e) => {
                tracing::error!(error = %e, event_id = %record.event_id, "poison stream record");
                poison += 1;
                response.batch_item_failures.push(failure(e.sequence));
            }
        }
    }
    let alerting = futures::future::join_all(oversells.into_iter().map(|(sequence, alert)| async move {
        let sent = app.alerts.oversell(&alert).await.map_err(FanoutError::Alert);
        (sequence, sent)
    }));
    let publishing = futures::stream::iter(groups)
        .map(|g| async move {
            let r = publish_sku(app, &g.sku, &g.touched).await;
            (g, r)
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<(SkuRecords, Result<usize, FanoutError>)>>();
    let (alerted, results) = futures::join!(alerting, publishing);
    let mut alerts = 0usize;
    for (sequence, sent) in alerted {
        match sent {
            Ok(()) => alerts += 1,
            Err(e) => {
                // Retried by Lambda; a retry may alert twice, never not at all.
                tracing::error!(error = %e, "oversell alert failed; the record will be retried");
                response.batch_item_failures.push(failure(sequence));
            }
        }
    }
    let mut sent = 0usize;
    for (g, r) in results {
        match r {
            Ok(n) => sent += n,
            Err(e) => {
                // Retried by Lambda from the first failed record; publishing is idempotent.
                tracing::error!(sku = %g.sku, error = %e, "fan-out failed; the records will be retried");
                response
                    .batch_item_failures
                    .extend(g.sequences.into_iter().map(failure));
            }
        }
    }
    let lag_ms = oldest
        .map(|t| (chrono_now_ms() - t.timestamp_millis()).max(0) as f64)
        .unwrap_or(0.0);
    tracing::info!(
        records,
        sent,
        alerts,
        poison,
        failed = response.batch_item_failures.len(),
        lag_ms,
        "fan-out batch"
    );
    stockroom::alerts::metric_units(
        stockroom::METRIC_NAMESPACE,
        "stock-fanout",
        &[
            ("ChannelMessages", sent as f64, "Count"),
            ("OversellAlerts", alerts as f64, "Count"),
            ("PoisonRecords", poison as f64, "Count"),
            ("FanoutLag", lag_ms, "Milliseconds"),
        ],
    );
    response
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(event_name: &str, keys: serde_json::Value, image: serde_json::Value) -> EventRecord {
        serde_json::from_value(json!({
            "eventID": "1",
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/stock/stream/1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_700_000_000,
                "Keys": keys,
                "NewImage": image,
                "SequenceNumber": "0001",
                "SizeBytes": 64,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        }))
        .unwrap()
    }

    fn receipt(status: &str, lines: &str) -> serde_json::Value {
        json!({
            "pk": {"S": "RECEIPT#order#web#1001"}, "sk": {"S": "PART#0001"},
            "kind": {"S": "receipt"}, "status": {"S": status}, "lines": {"S": lines},
            "channel": {"S": "web"}, "source": {"S": "shop.myshopify.com"}, "order": {"S": "1001"},
            "created_at": {"S": "2026-11-25T10:00:00Z"}
        })
    }

    #[test]
    fn oversold_receipts_become_alerts_and_other_records_do_not() {
        let keys = json!({"pk": {"S": "RECEIPT#order#web#1001"}, "sk": {"S": "PART#0001"}});
        let lines = r#"[{"sku":"A","location":"warehouse","requested":2,"taken":1,"short":1},
            {"sku":"B","location":"warehouse","requested":1,"taken":1,"short":0}]"#;
        let Change::Oversell(alert) =
            change_of(&record("INSERT", keys.clone(), receipt("oversold", lines))).unwrap()
        else {
            panic!("an oversold receipt is an alert");
        };
        assert_eq!(
            (
                alert.order.as_str(),
                alert.source.as_str(),
                alert.part,
                alert.short_units
            ),
            ("1001", "shop.myshopify.com", 1, 1)
        );
        assert_eq!(alert.lines.len(), 1);
        assert_eq!(alert.at, "2026-11-25T10:00:00Z");
        // An applied receipt, or a receipt that is modified (not new), is nothing.
        assert!(matches!(
            change_of(&record("INSERT", keys.clone(), receipt("applied", lines))),
            Ok(Change::Other)
        ));
        assert!(matches!(
            change_of(&record("MODIFY", keys.clone(), receipt("oversold", lines))),
            Ok(Change::Other)
        ));
        // An oversold receipt the fan-out cannot read is poison, not silence.
        assert!(change_of(&record("INSERT", keys.clone(), receipt("oversold", "not json"))).is_err());
        let mut no_order = receipt("oversold", lines);
        no_order.as_object_mut().unwrap().remove("order");
        assert!(change_of(&record("INSERT", keys, no_order)).is_err());
        // A level is a level.
        let level_keys = json!({"pk": {"S": "SKU#A"}, "sk": {"S": "LEVEL#warehouse"}});
        let level = json!({"kind": {"S": "level"}, "available": {"N": "3"}});
        assert!(matches!(
            change_of(&record("MODIFY", level_keys, level)),
            Ok(Change::Level(sku, location)) if sku.as_str() == "A" && location == "warehouse"
        ));
    }
}
