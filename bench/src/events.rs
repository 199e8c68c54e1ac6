//! The events each function receives, shaped as Lambda delivers them.

use std::collections::HashMap;

use serde_json::{json, Value};
use stockroom::aws_sdk_dynamodb::types::AttributeValue;
use stockroom_tests::{generic_signature, url_event};

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn signed(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let sig = generic_signature(body.as_bytes());
    bytes(&url_event(
        "POST",
        path,
        &[],
        &[
            ("X-Stockroom-Signature", sig),
            ("content-type", "application/json".into()),
        ],
        body.as_bytes(),
    ))
}

/// The generic order body: `lines` lines of `quantity` each, SKUs `<sku>` or `<sku>-<n>`.
pub fn order_body(order_id: &str, sku: &str, lines: usize, quantity: u32) -> Value {
    let lines: Vec<Value> = (0..lines)
        .map(|i| {
            let sku = if i == 0 {
                sku.to_owned()
            } else {
                format!("{sku}-{i}")
            };
            json!({"sku": sku, "quantity": quantity})
        })
        .collect();
    json!({"channel": "web", "order_id": order_id, "lines": lines})
}

/// A signed generic sale webhook through the function URL.
pub fn sale(order_id: &str, sku: &str, lines: usize) -> Vec<u8> {
    signed("/", &order_body(order_id, sku, lines, 1))
}

/// A signed generic sale of one unit of `sku` on `channel`.
pub fn channel_sale(channel: &str, order_id: &str, sku: &str) -> Vec<u8> {
    let mut body = order_body(order_id, sku, 1, 1);
    body["channel"] = json!(channel);
    signed("/", &body)
}

/// A signed "return processed" event: one resellable unit.
pub fn return_processed(return_id: &str, sku: &str) -> Vec<u8> {
    signed(
        "/",
        &json!({"return_id": return_id, "source": "returns-desk", "location": "warehouse",
                "lines": [{"sku": sku, "quantity": 1, "condition": "resellable"}]}),
    )
}

/// `GET /stock/{sku}` through the function URL.
pub fn stock_query(sku: &str) -> Vec<u8> {
    bytes(&url_event("GET", &format!("/stock/{sku}"), &[], &[], b""))
}

fn attribute(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        _ => json!({"NULL": true}),
    }
}

/// A one-record DynamoDB stream batch for a level item, as the stream
/// trigger delivers a change to it.
pub fn level_change(item: &HashMap<String, AttributeValue>, sequence: u64) -> Vec<u8> {
    let image: serde_json::Map<String, Value> = item.iter().map(|(k, v)| (k.clone(), attribute(v))).collect();
    let keys: serde_json::Map<String, Value> = ["pk", "sk"]
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), attribute(item.get(*k)?))))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    bytes(&json!({"Records": [{
        "eventID": format!("bench-{sequence}"),
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": now,
            "Keys": keys,
            "NewImage": image,
            "SequenceNumber": format!("{sequence:021}"),
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026-01-01T00:00:00.000"
    }]}))
}

/// An SQS batch of one message, as the feed queue's trigger delivers it.
pub fn sqs_batch(message: stockroom::aws_lambda_events::event::sqs::SqsMessage) -> Vec<u8> {
    let mut event = stockroom::aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![message];
    serde_json::to_vec(&event).unwrap_or_default()
}
