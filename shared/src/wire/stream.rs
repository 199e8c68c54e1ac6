//! The stock table's stream as `stock-fanout` reads it (stock levels,
//! oversold sale receipts and feed states carrying an alert, by the
//! trigger's event filter): each record is a level that changed, an alert
//! to raise, nothing to do, or poison.

use std::collections::HashSet;

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::alerts::OversellAlert;
use crate::domain::{Location, Sku};
use crate::keys;
use crate::sale::LineResult;

/// A record the fan-out cannot interpret.
#[derive(Debug, thiserror::Error)]
#[error("stream record {sequence}: {message}")]
pub struct PoisonRecord {
    /// The record's sequence number, reported back as a batch item failure.
    pub sequence: String,
    pub event_id: String,
    pub message: String,
}

impl PoisonRecord {
    fn of(record: &EventRecord, message: String) -> Self {
        Self {
            sequence: sequence_of(record),
            event_id: record.event_id.clone(),
            message,
        }
    }
}

fn sequence_of(record: &EventRecord) -> String {
    record.change.sequence_number.clone().unwrap_or_default()
}

/// What a stream record is to the fan-out.
#[derive(Debug)]
pub enum Change {
    /// A stock level at a location changed.
    Level(Sku, Location),
    /// A sale's receipt recorded an oversell (a new receipt only: a receipt
    /// is written once, so a redelivered order raises nothing).
    Oversell(OversellAlert),
    /// A feed's state was saved with an alert it had not carried before
    /// (`feed_held`, `feed_rejects`, `feed_unreadable`, `feed_refused`,
    /// `feed_stopped`): forwarded as saved, whatever its kind.
    FeedAlert(serde_json::Value),
    /// Anything else the filter let through: nothing to do.
    Other,
}

/// A record's keys.
#[derive(Deserialize)]
struct Keys {
    pk: String,
    sk: String,
}

/// The attributes of a new image the fan-out reads. Which are required
/// depends on what the item is, so each is optional here.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Image {
    kind: Option<String>,
    /// A level's figure.
    available: Option<i64>,
    // A sale receipt's.
    status: Option<String>,
    sk: Option<String>,
    source: Option<String>,
    channel: Option<String>,
    order: Option<String>,
    /// The lines' results, as JSON text.
    lines: Option<String>,
    created_at: Option<String>,
    /// A feed state's alert, as JSON text.
    alert: Option<String>,
}

/// Reads a record: levels by their keys, oversold receipts by their image.
pub fn change_of(record: &EventRecord) -> Result<Change, PoisonRecord> {
    let poison = |message: String| PoisonRecord::of(record, message);
    let image: Image = serde_dynamo::from_item(record.change.new_image.clone())
        .map_err(|e| poison(format!("unreadable image: {e}: {:?}", record.change.new_image)))?;
    if image.kind.as_deref() == Some("feed_state") {
        return feed_alert_of(record, image.alert).map_err(poison);
    }
    if image.kind.as_deref() == Some("receipt") {
        if record.event_name != "INSERT" || image.status.as_deref() != Some("oversold") {
            return Ok(Change::Other);
        }
        return oversell_of(image).map(Change::Oversell).map_err(poison);
    }
    let (sku, location) = level_of(record).map_err(poison)?;
    // The level itself must be readable: a figure the fan-out cannot sum is poison.
    if record.event_name != "REMOVE" && image.available.is_none() {
        return Err(poison(format!(
            "level {sku}@{location} has no numeric available: {:?}",
            record.change.new_image
        )));
    }
    Ok(Change::Level(sku, location))
}

/// A feed state's alert, when this change added it: a state saved again
/// with the same alert (a redelivered import) raises nothing.
fn feed_alert_of(record: &EventRecord, alert: Option<String>) -> Result<Change, String> {
    let Some(alert) = alert else {
        return Ok(Change::Other);
    };
    let before: Image = serde_dynamo::from_item(record.change.old_image.clone()).unwrap_or_default();
    if before.alert.as_deref() == Some(alert.as_str()) {
        return Ok(Change::Other);
    }
    serde_json::from_str(&alert)
        .map(Change::FeedAlert)
        .map_err(|e| format!("feed state with an unreadable alert: {e}"))
}

/// The SKU and location of a stock level's record, by its keys.
fn level_of(record: &EventRecord) -> Result<(Sku, Location), String> {
    let not_a_level = || format!("not a stock level: keys {:?}", record.change.keys);
    let keys: Keys = serde_dynamo::from_item(record.change.keys.clone()).map_err(|_| not_a_level())?;
    let (sku, location) = keys::parse_level(&keys.pk, &keys.sk).ok_or_else(not_a_level)?;
    let sku = Sku::parse(sku).map_err(|e| e.to_string())?;
    let location = Location::parse(location).map_err(|e| e.to_string())?;
    Ok((sku, location))
}

/// The alert for an oversold sale receipt's image.
fn oversell_of(image: Image) -> Result<OversellAlert, String> {
    let required =
        |value: Option<String>, name: &str| value.ok_or_else(|| format!("oversold receipt without {name}"));
    let lines: Vec<LineResult> = serde_json::from_str(&required(image.lines, "lines")?)
        .map_err(|e| format!("oversold receipt with unreadable lines: {e}"))?;
    let sk = required(image.sk, "sk")?;
    let part = keys::parse_part(&sk)
        .ok_or_else(|| format!("oversold receipt with an unexpected sort key: {sk:?}"))?;
    Ok(OversellAlert::new(
        required(image.source, "source")?,
        required(image.channel, "channel")?,
        required(image.order, "order")?,
        part,
        lines,
        required(image.created_at, "created_at")?,
    ))
}

/// One SKU's level changes in a batch.
#[derive(Debug)]
pub struct SkuChanges {
    pub sku: Sku,
    /// The records' sequence numbers, to report them failed together.
    pub sequences: Vec<String>,
    /// The locations whose levels changed.
    pub touched: HashSet<Location>,
}

/// A batch of stream records, read: what the fan-out has to do for it.
#[derive(Debug, Default)]
pub struct Batch {
    /// Level changes by SKU, each SKU once (in the order it first appears).
    pub skus: Vec<SkuChanges>,
    /// Oversells to raise, with their records' sequence numbers.
    pub oversells: Vec<(String, OversellAlert)>,
    /// Feed alerts to raise, with their records' sequence numbers.
    pub feed_alerts: Vec<(String, serde_json::Value)>,
    /// Records that cannot be read.
    pub poison: Vec<PoisonRecord>,
}

impl Batch {
    /// Reads every record of a batch.
    pub fn read(records: &[EventRecord]) -> Self {
        let mut batch = Batch::default();
        for record in records {
            let sequence = sequence_of(record);
            match change_of(record) {
                Ok(Change::Level(sku, location)) => match batch.skus.iter_mut().find(|g| g.sku == sku) {
                    Some(g) => {
                        g.sequences.push(sequence);
                        g.touched.insert(location);
                    }
                    None => batch.skus.push(SkuChanges {
                        sku,
                        sequences: vec![sequence],
                        touched: HashSet::from([location]),
                    }),
                },
                Ok(Change::Oversell(alert)) => batch.oversells.push((sequence, alert)),
                Ok(Change::FeedAlert(alert)) => batch.feed_alerts.push((sequence, alert)),
                Ok(Change::Other) => {}
                Err(poison) => batch.poison.push(poison),
            }
        }
        batch
    }
}

/// How long the oldest record in a batch waited for the fan-out, in
/// milliseconds: 0 for an empty batch, never negative.
pub fn lag_ms(records: &[EventRecord], now: OffsetDateTime) -> f64 {
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    records
        .iter()
        .map(|r| r.change.approximate_creation_date_time.timestamp_millis())
        .min()
        .map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64)
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
            Ok(Change::Level(sku, location)) if sku.as_str() == "A" && location.as_str() == "warehouse"
        ));
    }

    #[test]
    fn a_level_needs_its_keys_and_a_numeric_figure_unless_removed() {
        let keys = json!({"pk": {"S": "SKU#JKT BLUE"}, "sk": {"S": "LEVEL#downtown"}});
        let level = |available: serde_json::Value| json!({"kind": {"S": "level"}, "available": available});
        for bad in [json!({"S": "lots"}), json!({"N": "1.5"}), json!(null)] {
            let image = if bad.is_null() {
                json!({"kind": {"S": "level"}})
            } else {
                level(bad)
            };
            let err = change_of(&record("MODIFY", keys.clone(), image)).unwrap_err();
            assert_eq!(err.sequence, "0001");
        }
        // A removed level has no new image, and still names its SKU and location.
        assert!(matches!(
            change_of(&record("REMOVE", keys, json!({}))),
            Ok(Change::Level(sku, location)) if sku.as_str() == "JKT BLUE" && location.as_str() == "downtown"
        ));
        // Keys that are not a level's, or a level's with a bad location, are poison.
        for keys in [
            json!({"pk": {"S": "SKU#A"}, "sk": {"S": "CHANNEL#web"}}),
            json!({"pk": {"S": "SKU#A"}}),
            json!({"pk": {"N": "1"}, "sk": {"S": "LEVEL#warehouse"}}),
            json!({"pk": {"S": "SKU#A"}, "sk": {"S": "LEVEL#Ware House"}}),
        ] {
            assert!(change_of(&record("MODIFY", keys, level(json!({"N": "1"})))).is_err());
        }
    }

    #[test]
    fn a_batch_groups_levels_by_sku_and_keeps_oversells_and_poison_apart() {
        let level = |n: &str, sku: &str, location: &str| {
            let mut r = record(
                "MODIFY",
                json!({"pk": {"S": format!("SKU#{sku}")}, "sk": {"S": format!("LEVEL#{location}")}}),
                json!({"kind": {"S": "level"}, "available": {"N": "1"}}),
            );
            r.change.sequence_number = Some(n.to_owned());
            r
        };
        let receipt_keys = json!({"pk": {"S": "RECEIPT#order#web#1001"}, "sk": {"S": "PART#0001"}});
        let lines = r#"[{"sku":"A","location":"warehouse","requested":2,"taken":1,"short":1}]"#;
        let mut oversold = record("INSERT", receipt_keys.clone(), receipt("oversold", lines));
        oversold.change.sequence_number = Some("4".into());
        let mut poison = level("5", "A", "Bad Place");
        poison.event_id = "e-5".into();
        let records = [
            level("1", "A", "warehouse"),
            level("2", "B", "downtown"),
            level("3", "A", "uptown"),
            oversold,
            poison,
            level("6", "A", "warehouse"),
            record("INSERT", receipt_keys, receipt("applied", lines)),
        ];
        let batch = Batch::read(&records);
        let skus: Vec<_> = batch
            .skus
            .iter()
            .map(|g| {
                let mut touched: Vec<_> = g.touched.iter().map(Location::as_str).collect();
                touched.sort();
                (g.sku.as_str(), g.sequences.clone(), touched)
            })
            .collect();
        assert_eq!(
            skus,
            [
                (
                    "A",
                    vec!["1".to_owned(), "3".into(), "6".into()],
                    vec!["uptown", "warehouse"]
                ),
                ("B", vec!["2".to_owned()], vec!["downtown"]),
            ]
        );
        assert_eq!(batch.oversells.len(), 1);
        assert_eq!(
            (batch.oversells[0].0.as_str(), batch.oversells[0].1.short_units),
            ("4", 1)
        );
        assert_eq!(batch.poison.len(), 1);
        assert_eq!(
            (
                batch.poison[0].sequence.as_str(),
                batch.poison[0].event_id.as_str()
            ),
            ("5", "e-5")
        );
    }

    #[test]
    fn lag_is_from_the_oldest_record_and_never_negative() {
        let at = |seconds: i64| {
            let mut r = serde_json::to_value(record("MODIFY", json!({}), json!({}))).unwrap();
            r["dynamodb"]["ApproximateCreationDateTime"] = json!(seconds);
            serde_json::from_value::<EventRecord>(r).unwrap()
        };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_010).unwrap();
        assert_eq!(lag_ms(&[at(1_700_000_008), at(1_700_000_005)], now), 5_000.0);
        assert_eq!(lag_ms(&[at(1_700_000_020)], now), 0.0);
        assert_eq!(lag_ms(&[], now), 0.0);
    }

    #[test]
    fn a_feed_state_raises_its_alert_once() {
        let keys = json!({"pk": {"S": "RECEIPT#feed#s3://b/k?version=e"}, "sk": {"S": "STATE"}});
        let alert = r#"{"kind":"feed_held","feed":"feeds/acme/stock/x.csv"}"#;
        let state = |alert: Option<&str>| {
            let mut image = json!({"pk": keys["pk"], "sk": keys["sk"], "kind": {"S": "feed_state"},
                "status": {"S": "held"}});
            if let Some(a) = alert {
                image["alert"] = json!({"S": a});
            }
            image
        };
        let Change::FeedAlert(a) = change_of(&record("INSERT", keys.clone(), state(Some(alert)))).unwrap()
        else {
            panic!("a new state with an alert raises it");
        };
        assert_eq!(a["kind"], "feed_held");
        // Saved again with the same alert (a redelivered import): nothing.
        let mut again = record("MODIFY", keys.clone(), state(Some(alert)));
        again.change.old_image = serde_json::from_value(state(Some(alert))).unwrap();
        assert!(matches!(change_of(&again), Ok(Change::Other)));
        // A state without an alert is nothing; an unreadable alert is poison.
        assert!(matches!(
            change_of(&record("MODIFY", keys.clone(), state(None))),
            Ok(Change::Other)
        ));
        assert!(change_of(&record("INSERT", keys.clone(), state(Some("not json")))).is_err());
    }
}
