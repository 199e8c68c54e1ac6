//! The fan-out against the emulator: the table's stream, run by the local
//! stream poller, through `stock-fanout` to the channel FIFO queues, and the
//! reference consumer on the other side.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use stockroom::aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use stockroom::consumer::{self, ChannelConnector, ConnectorError, SequenceStore};
use stockroom::domain::{Actor, Location, ReasonCode, Sku};
use stockroom::returns::{Return, ReturnKind, ReturnLine, Units};
use stockroom_tests::{read, signed, stack, web_sale, Sign, TestStack};

/// How long to wait for a message that should come.
const ARRIVE: Duration = Duration::from_secs(10);
/// How long to keep listening for a message that should not come.
const QUIET: Duration = Duration::from_millis(2500);

async fn sell(s: &TestStack, order_id: &str, sku: &str, quantity: i64) -> Value {
    let body = web_sale(order_id, sku, None, quantity);
    let (status, out) = read(sale_webhook::handle(&s.sale_app(), signed(&body, Sign::Generic)).await);
    assert_eq!(status, 200, "{out}");
    out
}

async fn adjust(s: &TestStack, sku: &str, location: &str, delta: i64) {
    s.store()
        .adjust(&stockroom::adjustment::Adjustment {
            sku: Sku::parse(sku).unwrap(),
            location: Location::parse(location).unwrap(),
            change: stockroom::adjustment::Change::Delta(delta),
            expected: None,
            reason: ReasonCode::Received,
            actor: Actor::parse("sam@warehouse").unwrap(),
            note: None,
            document: None,
            idempotency_key: None,
        })
        .await
        .unwrap();
}

/// Listens to each channel for [`QUIET`]: nothing arrives.
async fn assert_quiet(s: &TestStack, channels: &[&str]) {
    for channel in channels {
        let extra = s.channel_messages(channel, 0, QUIET).await;
        assert!(extra.is_empty(), "{channel}: {extra:?}");
    }
}

fn figures(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["available"].as_i64().unwrap())
        .collect()
}

/// The same messages, addressed to another channel.
fn for_channel(messages: &[Value], channel: &str) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m["channel"] = json!(channel);
            m
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_kind_of_change_reaches_the_channels_that_sell_it() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let sku = "JKT-BLUE-M";

    // A stocktake at the warehouse: web and marketplace (buffer 2) sell it; pos does not.
    s.seed(sku, "warehouse", 10).await;
    let web = s.channel_messages("web", 1, ARRIVE).await;
    let market = s.channel_messages("marketplace", 1, ARRIVE).await;
    assert_eq!((figures(&web), figures(&market)), (vec![10], vec![8]));
    assert_eq!(web[0]["sku"], sku);
    assert_eq!(web[0]["channel"], "web");
    assert_eq!(web[0]["cause"]["reason"], "stocktake");
    assert!(web[0]["at"].as_str().unwrap().ends_with('Z'));
    let first_sequence = web[0]["sequence"].as_u64().unwrap();

    // A sale from the warehouse.
    sell(&s, "o-1", sku, 3).await;
    let web = s.channel_messages("web", 1, ARRIVE).await;
    let market = s.channel_messages("marketplace", 1, ARRIVE).await;
    assert_eq!((figures(&web), figures(&market)), (vec![7], vec![5]));
    assert_eq!(
        web[0]["cause"],
        json!({"reason": "sale", "reference": "order:web/o-1"})
    );
    assert!(web[0]["sequence"].as_u64().unwrap() > first_sequence);

    // A return processed downtown: only pos sells from there.
    let ret = Return {
        kind: ReturnKind::Processed,
        source: "desk".into(),
        return_id: "RMA-1".into(),
        order_id: None,
        lines: vec![ReturnLine {
            sku: Sku::parse(sku).unwrap(),
            location: Location::parse("downtown").unwrap(),
            units: Units {
                resellable: 2,
                damaged: 1,
                ..Units::default()
            },
        }],
        skipped: vec![],
    };
    s.store()
        .apply_return(&ret, &Actor::system("returns:desk"))
        .await
        .unwrap();
    let pos = s.channel_messages("pos", 1, ARRIVE).await;
    assert_eq!(figures(&pos), vec![2], "damaged units never count");
    assert_eq!(pos[0]["cause"]["reference"], "return:desk/RMA-1");

    // An adjustment (goods received) at the warehouse.
    adjust(&s, sku, "warehouse", 5).await;
    let web = s.channel_messages("web", 1, ARRIVE).await;
    let market = s.channel_messages("marketplace", 1, ARRIVE).await;
    assert_eq!((figures(&web), figures(&market)), (vec![12], vec![10]));
    assert_eq!(web[0]["cause"]["reason"], "received");

    // A supplier delivery feed row for the warehouse.
    s.put_feed(
        "feeds/acme/deliveries/restock.csv",
        b"sku,quantity\nJKT-BLUE-M,3\n",
    )
    .await;
    let msg = s
        .next_feed_message(ARRIVE)
        .await
        .expect("S3 notified the feed queue");
    let mut feed_event = stockroom::aws_lambda_events::event::sqs::SqsEvent::default();
    feed_event.records = vec![msg];
    supplier_feed::handle(&s.feed_app(), feed_event, tokio::time::Instant::now() + ARRIVE).await;
    let web = s.channel_messages("web", 1, ARRIVE).await;
    let market = s.channel_messages("marketplace", 1, ARRIVE).await;
    assert_eq!((figures(&web), figures(&market)), (vec![15], vec![13]));
    assert_eq!(web[0]["cause"]["reason"], "supplier_delivery");

    // Exactly one message per affected channel: nothing else arrives.
    assert_quiet(&s, &["web", "pos", "marketplace"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_that_leave_a_channel_figure_alone_send_it_nothing() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let sku = "CAP-GREEN";
    s.seed(sku, "warehouse", 2).await;
    // The first figure is always sent, even when the buffer hides it all.
    assert_eq!(figures(&s.channel_messages("web", 1, ARRIVE).await), vec![2]);
    assert_eq!(
        figures(&s.channel_messages("marketplace", 1, ARRIVE).await),
        vec![0]
    );

    // Hidden by the marketplace's buffer: 2 -> 1 leaves max(0, 1 - 2) = 0.
    sell(&s, "o-2", sku, 1).await;
    assert_eq!(figures(&s.channel_messages("web", 1, ARRIVE).await), vec![1]);
    // A location no channel sells from.
    adjust(&s, sku, "backroom", 4).await;
    // A stocktake that finds what was already there changes no figure.
    s.seed(sku, "warehouse", 1).await;
    assert_quiet(&s, &["web", "pos", "marketplace"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_stream_record_has_no_second_effect() {
    let s = stack().await;
    let fanout = s.start_fanout().await;
    s.seed("SCARF-RED", "warehouse", 4).await;
    let web = s.channel_messages("web", 1, ARRIVE).await;
    assert_eq!(figures(&web), vec![4]);
    s.channel_messages("marketplace", 1, ARRIVE).await;

    // Lambda delivers stream records at least once: hand the same batch over again.
    let batch = fanout
        .batches()
        .into_iter()
        .last()
        .expect("a batch was delivered");
    let again: stockroom::aws_lambda_events::event::dynamodb::Event = serde_json::from_value(batch).unwrap();
    let response = stock_fanout::handle(&s.fanout_app(), again).await;
    assert!(response.batch_item_failures.is_empty());
    assert_quiet(&s, &["web", "marketplace"]).await;

    // And a consumer that gets the same message twice applies it once.
    let connector = Recorder::default();
    let store = SequenceStore::new(s.ddb.clone(), s.table(), "web");
    let twice = sqs_event(&[web[0].clone(), web[0].clone()]);
    let r = consumer::apply_batch(twice, &store, &connector).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(connector.calls(), vec![("SCARF-RED".to_owned(), 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_goes_to_the_dlq_without_blocking_the_rest() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    // A level the fan-out cannot read: `available` is not a number.
    s.ddb
        .put_item()
        .table_name(s.table())
        .item("pk", attr("SKU#BROKEN"))
        .item("sk", attr("LEVEL#warehouse"))
        .item("kind", attr("level"))
        .item("available", attr("lots"))
        .send()
        .await
        .unwrap();
    s.seed("JKT-BLUE-M", "warehouse", 6).await;
    assert_eq!(figures(&s.channel_messages("web", 1, ARRIVE).await), vec![6]);

    let dlq = s.stack.queue_urls["FanoutDLQ"].clone();
    let mut failures = Vec::new();
    for _ in 0..60 {
        failures = s.drain(&dlq).await;
        if !failures.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    let info = &failures[0]["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1, "bisected down to the bad record: {info}");
    assert!(info["startSequenceNumber"].is_string());

    // Later changes still flow.
    sell(&s, "after-poison", "JKT-BLUE-M", 1).await;
    assert_eq!(figures(&s.channel_messages("web", 1, ARRIVE).await), vec![5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_out_of_order_converge_in_the_reference_consumer() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let sku = "HAT-GREY";
    s.seed(sku, "warehouse", 9).await;
    let mut messages = s.channel_messages("web", 1, ARRIVE).await;
    for (i, q) in [2, 3, 1].into_iter().enumerate() {
        sell(&s, &format!("hat-{i}"), sku, q).await;
        messages.extend(s.channel_messages("web", 1, ARRIVE).await);
    }
    assert_eq!(figures(&messages), vec![9, 7, 4, 3]);

    // Newest first, then everything again in a scrambled order, twice over.
    let mut scrambled = vec![messages[3].clone(), messages[1].clone()];
    scrambled.extend([2, 0, 3, 1, 0].map(|i| messages[i].clone()));
    let connector = Recorder::default();
    let store = SequenceStore::new(s.ddb.clone(), s.table(), "web");
    let r = consumer::apply_batch(sqs_event(&scrambled), &store, &connector).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(
        connector.calls(),
        vec![(sku.to_owned(), 3)],
        "only the newest was applied"
    );
    assert_eq!(store.last(sku).await.unwrap().map(|(_, a)| a), Some(3));

    // In order, a fresh consumer applies each in turn and ends at the same figure.
    let fresh = SequenceStore::new(s.ddb.clone(), s.table(), "web-2");
    let inorder = for_channel(&messages, "web-2");
    let connector = Recorder::default();
    consumer::apply_batch(sqs_event(&inorder), &fresh, &connector).await;
    assert_eq!(connector.calls().last().map(|c| c.1), Some(3));
    assert_eq!(connector.calls().len(), 4);

    // A channel that fails: that message and everything after it come back.
    let failing = Recorder {
        fail_on: Some(7),
        ..Recorder::default()
    };
    let again = SequenceStore::new(s.ddb.clone(), s.table(), "web-3");
    let batch = for_channel(&messages, "web-3");
    let r = consumer::apply_batch(sqs_event(&batch), &again, &failing).await;
    let failed: Vec<_> = r
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec!["m-1", "m-2", "m-3"]);
    // A malformed message fails too.
    let mut bad = SqsMessage::default();
    bad.message_id = Some("bad".into());
    bad.body = Some("{\"sku\": 1}".into());
    let mut event = SqsEvent::default();
    event.records = vec![bad];
    assert_eq!(
        consumer::apply_batch(event, &again, &failing)
            .await
            .batch_item_failures
            .len(),
        1
    );
}

fn attr(v: &str) -> stockroom::aws_sdk_dynamodb::types::AttributeValue {
    stockroom::aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned())
}

fn sqs_event(messages: &[Value]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut r = SqsMessage::default();
            r.message_id = Some(format!("m-{i}"));
            r.body = Some(m.to_string());
            r
        })
        .collect();
    event
}

/// A channel that records what it was told (and can be told to fail).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, i64)>>,
    fail_on: Option<i64>,
}

impl Recorder {
    fn calls(&self) -> Vec<(String, i64)> {
        self.calls.lock().unwrap().clone()
    }
}

impl ChannelConnector for Recorder {
    async fn set_available(&self, sku: &str, available: i64) -> Result<(), ConnectorError> {
        if self.fail_on == Some(available) {
            return Err(ConnectorError("platform said 503".into()));
        }
        self.calls.lock().unwrap().push((sku.to_owned(), available));
        Ok(())
    }
}
