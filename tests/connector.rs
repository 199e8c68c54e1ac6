//! The Shopify connector end to end: the emulator for the table and queues,
//! the local Shopify stand-in for the shop. Each test has its own stack and
//! its own shop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stockroom::adjustment::{Adjustment, Change};
use stockroom::channels::{Cause, ChannelMessage};
use stockroom::connector::runs::ChannelTask;
use stockroom::connector::{Judged, RunOutcome, Sync, Verdict};
use stockroom::domain::{Actor, Location, ReasonCode, Sku};
use stockroom::signature::WebhookSecrets;
use stockroom_local::shopify::Webhook;
use stockroom_tests::*;

const WAIT: Duration = Duration::from_secs(20);

struct Rig {
    stack: TestStack,
    shop: TestShop,
    sync: Sync,
    _fanout: Option<Fanout>,
}

fn sync_for(stack: &TestStack, shop: &TestShop, policy: &str, token: &str) -> Sync {
    stack.connector(shop, policy, token)
}

async fn rig(policy: &str, bucket: Option<(u32, u32)>, fanout: bool) -> Rig {
    let stack = stack().await;
    let shop = test_shop(bucket).await;
    let sync = sync_for(&stack, &shop, policy, &shop.token);
    let fanout = if fanout {
        Some(stack.start_fanout().await)
    } else {
        None
    };
    Rig {
        stack,
        shop,
        sync,
        _fanout: fanout,
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

impl Rig {
    /// The shop's figure for a SKU at the connector's location.
    async fn shopify(&self, sku: &str) -> Option<i64> {
        self.shop.standin.level(&self.shop.shop, sku, 1001).await.unwrap()
    }

    /// Takes the web channel's messages (at least `expected`) and runs them through channel-sync.
    async fn pump(&self, expected: usize) -> stockroom::connector::Pushed {
        let messages = self.stack.channel_messages("web", expected, WAIT).await;
        assert!(
            messages.len() >= expected,
            "{} web messages, expected {expected}",
            messages.len()
        );
        let records = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("m{i}"), m.to_string()))
            .collect();
        self.sync.push_batch("web", records, deadline()).await
    }

    /// A sale webhook app that knows this test's shop.
    fn sale_app(&self) -> sale_webhook::App {
        let secrets = json!({ &self.shop.shop: {"secret": self.shop.secret, "endpoints": ["sales", "returns", "channel-events"]} });
        sale_webhook::App {
            store: self.stack.store(),
            rules: TestStack::rules(),
            secrets: WebhookSecrets::parse(&secrets.to_string()).unwrap(),
        }
    }

    /// Delivers a webhook from the shop's outbox to a function, as Shopify would.
    fn delivery(&self, w: &Webhook) -> lambda_http::Request {
        let headers: Vec<(&str, String)> = w.headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        delivery(w.body.as_bytes(), &headers)
    }

    /// The next webhook of `topic` after number `after`.
    async fn webhook(&self, topic: &str, after: u64) -> Webhook {
        self.shop
            .standin
            .wait_webhook(&self.shop.shop, topic, after, WAIT)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {topic} webhook"))
    }

    /// The number of the last webhook in the outbox.
    async fn last_webhook(&self) -> u64 {
        self.shop
            .standin
            .webhooks(&self.shop.shop, 0)
            .await
            .unwrap()
            .last()
            .map_or(0, |w| w.n)
    }

    /// The channel-events app for this shop, with no grace (the test judges at once).
    fn events_app(&self) -> channel_events::App {
        let secrets =
            json!({ &self.shop.shop: {"secret": self.shop.secret, "endpoints": ["channel-events"]} });
        channel_events::App {
            secrets: WebhookSecrets::parse(&secrets.to_string()).unwrap(),
            connectors: self.sync.connectors.clone(),
            sqs: self.stack.sqs.clone(),
            queue_url: self.stack.stack.queue_urls["ChannelEditsQueue"].clone(),
            grace: 0,
        }
    }

    /// An `inventory_levels/update` delivered to channel-events, then judged by channel-sync.
    async fn judge(&self, w: &Webhook) -> Judged {
        let check = channel_events::receive(&self.events_app(), &self.delivery(w)).expect("a valid check");
        self.sync.check_edit(&check, deadline()).await.unwrap()
    }

    async fn ledger(&self, sku: &str) -> Vec<Value> {
        let page = self
            .stack
            .store()
            .ledger(&Sku::parse(sku).unwrap(), 50, None)
            .await
            .unwrap();
        page.entries
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }
}

fn message(sku: &str, available: i64, sequence: u64) -> ChannelMessage {
    ChannelMessage {
        sku: sku.into(),
        channel: "web".into(),
        available,
        sequence,
        at: "2026-11-27T10:00:00Z".into(),
        cause: Cause {
            reason: "stocktake".into(),
            reference: "test".into(),
        },
        sold: BTreeMap::new(),
        resync: false,
    }
}

fn records(messages: &[ChannelMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i}"), serde_json::to_string(m).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_a_sale_a_return_an_adjustment_and_a_feed_row_each_reach_the_shopify_level() {
    let r = rig("revert", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "JKT-1", &[(1001, 3)])
        .await
        .unwrap();
    r.stack.seed("JKT-1", "warehouse", 10).await;
    let p = r.pump(1).await;
    assert!(p.failed.is_empty(), "{p:?}");
    assert_eq!(r.shopify("JKT-1").await, Some(10));
    // A sale on another channel that sells from the warehouse.
    let sale =
        json!({"channel": "marketplace", "order_id": "M-1", "lines": [{"sku": "JKT-1", "quantity": 3}]});
    let (status, _) = read(
        sale_webhook::handle(
            &r.stack.sale_app(),
            signed(&serde_json::to_vec(&sale).unwrap(), Sign::Generic),
        )
        .await,
    );
    assert_eq!(status, 200);
    r.pump(1).await;
    assert_eq!(r.shopify("JKT-1").await, Some(7));
    // A return put back.
    let ret = json!({"source": "returns-desk", "return_id": "R-1", "lines": [{"sku": "JKT-1", "quantity": 2, "location": "warehouse", "condition": "resellable"}]});
    let (status, body) = read(
        return_processor::handle(
            &r.stack.return_app(),
            signed(&serde_json::to_vec(&ret).unwrap(), Sign::Generic),
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    r.pump(1).await;
    assert_eq!(r.shopify("JKT-1").await, Some(9));
    // A manual adjustment.
    r.stack
        .store()
        .adjust(&Adjustment {
            sku: Sku::parse("JKT-1").unwrap(),
            location: Location::parse("warehouse").unwrap(),
            change: Change::Delta(-4),
            expected: None,
            reason: ReasonCode::Damage,
            actor: Actor::parse("ops@example.com").unwrap(),
            note: None,
            document: None,
            idempotency_key: None,
        })
        .await
        .unwrap();
    r.pump(1).await;
    assert_eq!(r.shopify("JKT-1").await, Some(5));
    // A supplier's delivery row.
    let key = "feeds/acme/deliveries/connector.csv";
    r.stack.put_feed(key, b"SKU,Quantity\nJKT-1,6\n").await;
    let msg = r
        .stack
        .next_feed_message(WAIT)
        .await
        .expect("S3 notified the feed queue");
    let mut event = stockroom::aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![msg];
    let imported =
        supplier_feed::handle(&r.stack.feed_app(), event, tokio::time::Instant::now() + WAIT).await;
    assert!(imported.batch_item_failures.is_empty());
    r.pump(1).await;
    assert_eq!(r.shopify("JKT-1").await, Some(11));
    // Every change on Shopify's side was the app's, each a compare-and-swap from the last.
    let history = r.shop.standin.history(&r.shop.shop, "JKT-1", 1001).await.unwrap();
    let by_app: Vec<i64> = history
        .iter()
        .filter(|c| c.by == "app")
        .map(|c| c.available)
        .collect();
    assert_eq!(by_app, [10, 7, 9, 5, 11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_delivered_twice_and_out_of_order_leave_the_figure_of_the_highest_sequence() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "SKU-A", &[(1001, 0)])
        .await
        .unwrap();
    let (m5, m7, m9) = (
        message("SKU-A", 5, 5),
        message("SKU-A", 7, 7),
        message("SKU-A", 4, 9),
    );
    for batch in [
        vec![m7.clone()],
        vec![m9.clone(), m5.clone()],
        vec![m7.clone(), m7],
        vec![m5, m9],
    ] {
        let p = r.sync.push_batch("web", records(&batch), deadline()).await;
        assert!(p.failed.is_empty(), "{p:?}");
    }
    assert_eq!(r.shopify("SKU-A").await, Some(4));
    let history = r.shop.standin.history(&r.shop.shop, "SKU-A", 1001).await.unwrap();
    let set: Vec<i64> = history
        .iter()
        .filter(|c| c.by == "app")
        .map(|c| c.available)
        .collect();
    assert_eq!(set, [7, 4], "never back to an older figure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_sale_racing_a_push_never_puts_the_sold_unit_back_on_sale() {
    let r = rig("revert", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "RACE", &[(1001, 0)])
        .await
        .unwrap();
    r.stack.seed("RACE", "warehouse", 10).await;
    r.pump(1).await;
    assert_eq!(r.shopify("RACE").await, Some(10));
    let before = r.last_webhook().await;
    // A shopper buys 1 on Shopify: its figure drops at once, the order webhook is on its way.
    r.shop
        .standin
        .order(&r.shop.shop, 1001, &[("RACE", 1)])
        .await
        .unwrap();
    assert_eq!(r.shopify("RACE").await, Some(9));
    // Meanwhile a marketplace sale takes 1 at the warehouse: the master says 9.
    let sale =
        json!({"channel": "marketplace", "order_id": "M-9", "lines": [{"sku": "RACE", "quantity": 1}]});
    read(
        sale_webhook::handle(
            &r.stack.sale_app(),
            signed(&serde_json::to_vec(&sale).unwrap(), Sign::Generic),
        )
        .await,
    );
    let p = r.pump(1).await;
    assert!(
        p.failed.is_empty() && p.stale >= 1,
        "the push found the channel moved: {p:?}"
    );
    // 9 on the master, 1 sold on Shopify not recorded yet: 8, never 9.
    assert_eq!(r.shopify("RACE").await, Some(8));
    // The order arrives: the master takes it; the figure stays 8.
    let order = r.webhook("orders/create", before).await;
    let (status, body) = read(sale_webhook::handle(&r.sale_app(), r.delivery(&order)).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(r.stack.available("RACE", "warehouse").await, Some(8));
    let _ = r.pump(0).await;
    assert_eq!(r.shopify("RACE").await, Some(8));
    // At no time did Shopify offer more than the master less the unrecorded sale.
    let history = r.shop.standin.history(&r.shop.shop, "RACE", 1001).await.unwrap();
    let pushed: Vec<i64> = history
        .iter()
        .skip_while(|c| c.by != "order")
        .filter(|c| c.by == "app")
        .map(|c| c.available)
        .collect();
    assert_eq!(pushed, [8], "the only push after the sale: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_skus_under_a_small_bucket_arrives_whole_and_in_order() {
    // A bucket of 200 points restoring 100/s, shared by two containers that
    // do not know what the other spends: throttled answers are certain.
    let r = rig("revert", Some((200, 100)), false).await;
    let skus: Vec<String> = (0..200).map(|i| format!("B-{i:03}")).collect();
    for s in &skus {
        r.shop
            .standin
            .add_item(&r.shop.shop, s, &[(1001, 0)])
            .await
            .unwrap();
    }
    let second = sync_for(&r.stack, &r.shop, "revert", &r.shop.token);
    let batches: Vec<Vec<ChannelMessage>> = skus
        .chunks(10)
        .map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, s)| message(s, 20 + i as i64, 2))
                .collect()
        })
        .collect();
    let run = |sync: &'static Sync, batches: Vec<Vec<ChannelMessage>>| async move {
        let mut failed = 0;
        for b in batches {
            // Then a newer figure for the same SKUs: it must win.
            let newer: Vec<ChannelMessage> = b.iter().map(|m| message(&m.sku, m.available - 10, 3)).collect();
            for batch in [b, newer] {
                failed += sync
                    .push_batch("web", records(&batch), deadline())
                    .await
                    .failed
                    .len();
            }
        }
        failed
    };
    let first: &'static Sync = Box::leak(Box::new(sync_for(&r.stack, &r.shop, "revert", &r.shop.token)));
    let second: &'static Sync = Box::leak(Box::new(second));
    let (half_a, half_b) = (batches[..10].to_vec(), batches[10..].to_vec());
    let (fa, fb) = tokio::join!(run(first, half_a), run(second, half_b));
    assert_eq!(fa + fb, 0, "every message went through");
    let levels = r.shop.standin.levels(&r.shop.shop).await.unwrap();
    for (i, s) in skus.iter().enumerate() {
        let row = levels
            .iter()
            .find(|l| l.sku.as_deref() == Some(s) && l.location_id == 1001)
            .unwrap();
        assert_eq!(row.available, 10 + (i % 10) as i64, "{s}");
    }
    let calls = r.shop.standin.calls(&r.shop.shop).await.unwrap();
    let throttled = calls.iter().filter(|c| c.throttled).count();
    let stats = (first.api.stats(), second.api.stats());
    assert!(
        throttled > 0 && stats.0.throttled + stats.1.throttled > 0,
        "throttled answers were met and handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_shopify_s_admin_is_recorded_and_reverted_and_the_app_s_own_echo_is_not() {
    let r = rig("revert", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "EDIT-R", &[(1001, 0)])
        .await
        .unwrap();
    r.stack.seed("EDIT-R", "warehouse", 10).await;
    let before = r.last_webhook().await;
    r.pump(1).await;
    // The app's own set comes back as a webhook: its echo changes nothing.
    let echo = r.webhook("inventory_levels/update", before).await;
    assert_eq!(r.judge(&echo).await, Judged::Verdict(Verdict::Echo));
    // A manager sets 4 in Shopify's admin.
    let mark = r.last_webhook().await;
    r.shop
        .standin
        .edit(&r.shop.shop, "EDIT-R", 1001, 4)
        .await
        .unwrap();
    let edit = r.webhook("inventory_levels/update", mark).await;
    assert_eq!(
        r.judge(&edit).await,
        Judged::Verdict(Verdict::Edit { before: 10, after: 4 })
    );
    assert_eq!(
        r.shopify("EDIT-R").await,
        Some(10),
        "reverted to the master's figure"
    );
    assert_eq!(
        r.stack.available("EDIT-R", "warehouse").await,
        Some(10),
        "the master did not move"
    );
    let ledger = r.ledger("EDIT-R").await;
    let entry = ledger
        .iter()
        .find(|e| e["reason"] == "channel_edit")
        .expect("a channel_edit entry");
    assert_eq!(
        (
            entry["delta"].as_i64(),
            entry["before"].as_i64(),
            entry["after"].as_i64()
        ),
        (Some(0), Some(10), Some(4))
    );
    assert_eq!(entry["actor"], format!("shopify:{}", r.shop.shop));
    // Redelivered, the same edit is recorded once.
    assert!(matches!(r.judge(&edit).await, Judged::Verdict(_)));
    assert_eq!(
        r.ledger("EDIT-R")
            .await
            .iter()
            .filter(|e| e["reason"] == "channel_edit")
            .count(),
        1
    );
    let alerts = r.stack.alerts(1, WAIT).await;
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "channel_edit" && a["before"] == 10 && a["after"] == 4),
        "{alerts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_check_leaves_a_later_change_to_its_own_grace_period() {
    let r = rig("revert", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "GRACE", &[(1001, 0)])
        .await
        .unwrap();
    r.stack.seed("GRACE", "warehouse", 10).await;
    let before = r.last_webhook().await;
    r.pump(1).await;
    let echo = r.webhook("inventory_levels/update", before).await;
    // A shopper buys one on Shopify; its order has not reached Stockroom yet.
    let mark = r.last_webhook().await;
    r.shop
        .standin
        .order(&r.shop.shop, 1001, &[("GRACE", 1)])
        .await
        .unwrap();
    let sale = r.webhook("inventory_levels/update", mark).await;
    // The app's own set's check comes due first: the sale is not its to judge.
    assert_eq!(r.judge(&echo).await, Judged::Ignored);
    assert_eq!(r.shopify("GRACE").await, Some(9), "the sold unit stays off sale");
    assert!(r
        .ledger("GRACE")
        .await
        .iter()
        .all(|e| e["reason"] != "channel_edit"));
    // The sale's own check, due after its grace, still judges what it saw.
    assert!(matches!(r.judge(&sale).await, Judged::Verdict(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_adopt_an_edit_in_shopify_s_admin_moves_the_master() {
    let r = rig("adopt", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "EDIT-A", &[(1001, 0)])
        .await
        .unwrap();
    r.stack.seed("EDIT-A", "warehouse", 10).await;
    r.pump(1).await;
    let mark = r.last_webhook().await;
    r.shop
        .standin
        .edit(&r.shop.shop, "EDIT-A", 1001, 13)
        .await
        .unwrap();
    let edit = r.webhook("inventory_levels/update", mark).await;
    assert_eq!(
        r.judge(&edit).await,
        Judged::Verdict(Verdict::Edit {
            before: 10,
            after: 13
        })
    );
    assert_eq!(r.stack.available("EDIT-A", "warehouse").await, Some(13));
    let entry = r
        .ledger("EDIT-A")
        .await
        .into_iter()
        .find(|e| e["reason"] == "channel_edit")
        .unwrap();
    assert_eq!(entry["delta"].as_i64(), Some(3));
    // The master's new figure reaches the channel, which already shows it: nothing to write.
    let p = r.pump(1).await;
    assert_eq!((p.set, p.failed.len()), (0, 0), "{p:?}");
    assert_eq!(r.shopify("EDIT-A").await, Some(13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_the_master_never_saw_is_never_changed_on_the_channel() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "NEW-1", &[(1001, 6)])
        .await
        .unwrap();
    let mark = r.last_webhook().await;
    r.shop.standin.edit(&r.shop.shop, "NEW-1", 1001, 5).await.unwrap();
    let edit = r.webhook("inventory_levels/update", mark).await;
    assert_eq!(r.judge(&edit).await, Judged::Verdict(Verdict::Unmanaged));
    assert_eq!(r.shopify("NEW-1").await, Some(5));
    let states = r.stack.store().channel_states("web").await.unwrap();
    assert_eq!(
        stockroom::connector::refused(&states).get("unmanaged"),
        Some(&vec!["NEW-1".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_an_unknown_sku_and_a_duplicate_sku_never_loop() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "TWICE", &[(1001, 1)])
        .await
        .unwrap();
    r.shop
        .standin
        .add_item(&r.shop.shop, "TWICE", &[(1001, 1)])
        .await
        .unwrap();
    // Unknown and duplicate SKUs: refused, alerted once, acknowledged.
    for round in 0..2 {
        let p = r
            .sync
            .push_batch(
                "web",
                records(&[message("NOWHERE", 3, 2 + round), message("TWICE", 3, 2 + round)]),
                deadline(),
            )
            .await;
        assert_eq!((p.refused, p.failed.len(), p.set), (2, 0, 0), "{p:?}");
    }
    let alerts = r.stack.alerts(2, Duration::from_secs(3)).await;
    let refused: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["kind"] == "channel_sku_refused")
        .collect();
    assert_eq!(refused.len(), 2, "alerted once each: {alerts:?}");
    assert_eq!(r.shopify("TWICE").await, Some(1));
    // An edit of a duplicate SKU's item is not judged: it is not the connector's.
    r.stack.seed("TWICE", "warehouse", 5).await;
    let mark = r.last_webhook().await;
    r.shop.standin.edit(&r.shop.shop, "TWICE", 1001, 0).await.unwrap();
    let edit = r.webhook("inventory_levels/update", mark).await;
    assert_eq!(r.judge(&edit).await, Judged::Ignored);
    assert_eq!(r.shopify("TWICE").await, Some(0));
    // A refused token: one call, an alert, the messages failed for the queue to retry.
    let wrong = sync_for(&r.stack, &r.shop, "revert", "shpat_not_the_token");
    let calls_before = r.shop.standin.calls(&r.shop.shop).await.unwrap().len();
    let started = Instant::now();
    let p = wrong
        .push_batch("web", records(&[message("OTHER", 3, 2)]), deadline())
        .await;
    assert_eq!(p.failed, ["m0"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retry loop in the invocation"
    );
    let calls = r.shop.standin.calls(&r.shop.shop).await.unwrap().len() - calls_before;
    assert!(calls <= 1, "{calls} calls");
    assert_eq!(wrong.api.stats().calls, 1, "one call, not retried");
    let alerts = r.stack.alerts(1, WAIT).await;
    assert!(
        alerts.iter().any(|a| a["kind"] == "channel_unauthorized"),
        "{alerts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429s_are_retried_inside_the_invocation() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "FLAKY", &[(1001, 0)])
        .await
        .unwrap();
    r.shop.standin.fault(&r.shop.shop, 503, 2, None).await.unwrap();
    let p = r
        .sync
        .push_batch("web", records(&[message("FLAKY", 6, 2)]), deadline())
        .await;
    assert!(p.failed.is_empty(), "{p:?}");
    r.shop.standin.fault(&r.shop.shop, 429, 1, Some(1)).await.unwrap();
    let p = r
        .sync
        .push_batch("web", records(&[message("FLAKY", 2, 3)]), deadline())
        .await;
    assert!(p.failed.is_empty(), "{p:?}");
    assert_eq!(r.shopify("FLAKY").await, Some(2));
    assert!(r.sync.api.stats().retried >= 2 && r.sync.api.stats().throttled >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_events_takes_only_signed_level_updates_for_a_connected_location() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "EV-1", &[(1001, 2), (1002, 2)])
        .await
        .unwrap();
    let mark = r.last_webhook().await;
    r.shop.standin.edit(&r.shop.shop, "EV-1", 1002, 1).await.unwrap();
    let other_location = r.webhook("inventory_levels/update", mark).await;
    let app = r.events_app();
    let (status, body) = read(channel_events::handle(&app, r.delivery(&other_location)).await);
    assert_eq!(status, 200, "acknowledged");
    assert!(body.to_string().contains("no connector"), "{body}");
    // Tampered: refused.
    let mut tampered = other_location.clone();
    tampered.body = tampered.body.replace("1002", "1001");
    let (status, _) = read(channel_events::handle(&app, r.delivery(&tampered)).await);
    assert_eq!(status, 401);
    // Malformed (signed, but not a level): refused with the field.
    let mut bad = other_location.clone();
    bad.body = "{\"location_id\": 1001}".into();
    bad.headers.insert(
        "X-Shopify-Hmac-Sha256".into(),
        stockroom::signature::sign_shopify(r.shop.secret.as_bytes(), bad.body.as_bytes()),
    );
    let (status, body) = read(channel_events::handle(&app, r.delivery(&bad)).await);
    assert_eq!(status, 400, "{body}");
    // A good one is queued for the check.
    let mark = r.last_webhook().await;
    r.shop.standin.edit(&r.shop.shop, "EV-1", 1001, 1).await.unwrap();
    let good = r.webhook("inventory_levels/update", mark).await;
    let (status, body) = read(channel_events::handle(&app, r.delivery(&good)).await);
    assert_eq!(status, 200, "{body}");
    let queued = r.stack.take_messages(&app.queue_url, 1, WAIT).await;
    assert_eq!(queued[0]["location_id"], 1001);
}

// Migration: shadow mode, drift, resync and the first import.

impl Rig {
    fn api(&self) -> stock_api::App {
        self.stack.api_app_with(self.sync.connectors.clone())
    }

    /// A stock API call; the answer's status and JSON.
    async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let req = request(url_event(
            method,
            path,
            &[],
            &[("content-type", "application/json".into())],
            &body,
        ));
        read(stock_api::handle(&self.api(), req).await)
    }

    async fn set_mode(&self, mode: &str) {
        let (status, body) = self
            .call(
                "PUT",
                "/channels/web/mode",
                json!({"mode": mode, "actor": "ana@ops", "reason": "migration"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mode"], mode);
    }

    /// Asks for a run through the stock API, then does what channel-sync does
    /// with the queued message until the run is done; returns the run.
    async fn run(&self, kind: &str, body: Value) -> Value {
        let (status, answer) = self.call("POST", &format!("/channels/web/{kind}"), body).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["run"]["id"].as_str().unwrap().to_owned();
        let queue = self.stack.stack.queue_urls["ChannelEditsQueue"].clone();
        let taken = self.stack.take_messages(&queue, 1, WAIT).await;
        let ChannelTask::Run { run: mut task } = serde_json::from_value(taken[0].clone()).unwrap() else {
            panic!("not a run: {}", taken[0]);
        };
        loop {
            match self.sync.run_task(task, deadline()).await.unwrap() {
                RunOutcome::Done(_) => break,
                RunOutcome::Continue(next) => task = next,
            }
        }
        let (status, run) = self
            .call("GET", &format!("/channels/web/runs/{id}"), Value::Null)
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "done", "{run}");
        run
    }

    async fn drift(&self) -> Value {
        let (status, drift) = self.call("GET", "/channels/web/drift", Value::Null).await;
        assert_eq!(status, 200, "{drift}");
        drift
    }
}

fn drift_of<'a>(drift: &'a Value, sku: &str) -> Option<&'a Value> {
    drift["skus"].as_array().unwrap().iter().find(|r| r["sku"] == sku)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_shadow_a_change_reaches_the_drift_report_and_never_the_channel_until_live_and_resynced() {
    let r = rig("revert", None, true).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "SHADOW-1", &[(1001, 4)])
        .await
        .unwrap();
    r.set_mode("shadow").await;
    r.stack.seed("SHADOW-1", "warehouse", 10).await;
    let p = r.pump(1).await;
    assert_eq!((p.set, p.failed.len()), (0, 0), "{p:?}");
    assert_eq!(r.shopify("SHADOW-1").await, Some(4), "shadow never writes");
    let state = r
        .stack
        .store()
        .sync_state("web", "SHADOW-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.would_set, Some(10), "what it would set is recorded");
    // The old flow moves the channel meanwhile: an edit in shadow is not judged.
    let mark = r.last_webhook().await;
    r.shop
        .standin
        .edit(&r.shop.shop, "SHADOW-1", 1001, 3)
        .await
        .unwrap();
    let edit = r.webhook("inventory_levels/update", mark).await;
    assert_eq!(r.judge(&edit).await, Judged::Ignored);
    assert_eq!(r.shopify("SHADOW-1").await, Some(3), "no revert in shadow");
    // The side-by-side report.
    let run = r.run("reconcile", Value::Null).await;
    assert_eq!(run["totals"]["differing"], 1, "{run}");
    let drift = r.drift().await;
    let row = drift_of(&drift, "SHADOW-1").expect("the SKU is in the drift report");
    assert_eq!(
        (
            row["channel"].as_i64(),
            row["expected"].as_i64(),
            row["explained"].as_bool()
        ),
        (Some(3), Some(10), Some(false))
    );
    assert_eq!(drift["totals"]["units_at_stake"], 7);
    assert_eq!(
        r.shopify("SHADOW-1").await,
        Some(3),
        "a reconcile in shadow writes nothing either"
    );
    // Live, and a resync: the channel takes the master's figure.
    r.set_mode("live").await;
    let run = r
        .run(
            "resync",
            json!({"skus": ["SHADOW-1"], "actor": "ana@ops", "reason": "go live"}),
        )
        .await;
    assert_eq!(run["totals"]["set"], 1, "{run}");
    assert_eq!(r.shopify("SHADOW-1").await, Some(10));
    let run = r.run("reconcile", Value::Null).await;
    assert_eq!(run["totals"]["differing"].as_i64().unwrap_or(0), 0, "{run}");
    // The switches are audited.
    let changes = r.stack.store().channel_mode_changes("web").await.unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0].mode, changes[0].actor.as_str()),
        (stockroom::connector::Mode::Live, "ana@ops")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_channel_message_shows_as_drift_and_live_mode_puts_it_right() {
    let mut r = rig("revert", None, true).await;
    r.sync.in_flight = Duration::ZERO;
    r.shop
        .standin
        .add_item(&r.shop.shop, "LOST-1", &[(1001, 0)])
        .await
        .unwrap();
    r.stack.seed("LOST-1", "warehouse", 10).await;
    r.pump(1).await;
    assert_eq!(r.shopify("LOST-1").await, Some(10));
    // A change whose channel message is deleted unprocessed.
    r.stack.seed("LOST-1", "warehouse", 6).await;
    let lost = r.stack.channel_messages("web", 1, WAIT).await;
    assert_eq!(lost.len(), 1);
    let run = r.run("reconcile", Value::Null).await;
    assert_eq!(run["totals"]["differing"], 1, "{run}");
    assert_eq!(
        run["totals"]["corrected"], 1,
        "live mode republishes what nothing explains: {run}"
    );
    let row = drift_of(&r.drift().await, "LOST-1")
        .cloned()
        .expect("a drift row");
    assert_eq!(
        (row["channel"].as_i64(), row["expected"].as_i64()),
        (Some(10), Some(6))
    );
    assert_eq!(r.shopify("LOST-1").await, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_lists_skus_only_the_channel_or_only_the_master_has() {
    let r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "BOTH", &[(1001, 2)])
        .await
        .unwrap();
    r.shop
        .standin
        .add_item(&r.shop.shop, "CHANNEL-ONLY", &[(1001, 5)])
        .await
        .unwrap();
    r.stack.seed("BOTH", "warehouse", 2).await;
    r.stack.seed("MASTER-ONLY", "warehouse", 9).await;
    let run = r.run("reconcile", Value::Null).await;
    assert_eq!(run["totals"]["equal"], 1, "{run}");
    let drift = r.drift().await;
    assert_eq!(drift["channel_only"], json!(["CHANNEL-ONLY"]));
    assert_eq!(drift["master_only"], json!(["MASTER-ONLY"]));
    assert_eq!(drift["totals"]["unmapped"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_import_sets_the_master_from_the_channel_once_and_never_over_what_it_has() {
    let r = rig("revert", None, false).await;
    for (sku, n) in [("IMP-A", 4), ("IMP-B", 0), ("IMP-KNOWN", 7)] {
        r.shop
            .standin
            .add_item(&r.shop.shop, sku, &[(1001, n)])
            .await
            .unwrap();
    }
    r.stack.seed("IMP-KNOWN", "warehouse", 2).await;
    // Who and why are required.
    let (status, _) = r.call("POST", "/channels/web/import", json!({})).await;
    assert_eq!(status, 400);
    let run = r
        .run(
            "import",
            json!({"actor": "ana@ops", "reason": "set the source of truth"}),
        )
        .await;
    assert_eq!(
        (
            run["totals"]["imported"].as_i64(),
            run["totals"]["refused"].as_i64()
        ),
        (Some(2), Some(1)),
        "{run}"
    );
    assert_eq!(r.stack.available("IMP-A", "warehouse").await, Some(4));
    assert_eq!(r.stack.available("IMP-B", "warehouse").await, Some(0));
    assert_eq!(
        r.stack.available("IMP-KNOWN", "warehouse").await,
        Some(2),
        "the master's figure stands"
    );
    let entry = r
        .ledger("IMP-A")
        .await
        .into_iter()
        .find(|e| e["reason"] == "initial_count")
        .expect("an initial_count entry");
    assert_eq!(entry["actor"], "ana@ops");
    // Again: nothing changes.
    let run = r
        .run("import", json!({"actor": "ana@ops", "reason": "again"}))
        .await;
    assert_eq!(
        (
            run["totals"]["imported"].as_i64().unwrap_or(0),
            run["totals"]["refused"].as_i64()
        ),
        (0, Some(3)),
        "{run}"
    );
    assert_eq!(
        r.ledger("IMP-A")
            .await
            .iter()
            .filter(|e| e["reason"] == "initial_count")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_routes_refuse_unknown_channels_and_bad_requests() {
    let r = rig("revert", None, false).await;
    assert_eq!(r.call("GET", "/channels/pos/mode", Value::Null).await.0, 404);
    assert_eq!(
        r.call("GET", "/channels/web/drift", Value::Null).await.0,
        404,
        "no reconcile yet"
    );
    assert_eq!(
        r.call(
            "PUT",
            "/channels/web/mode",
            json!({"mode": "dark", "actor": "a", "reason": "r"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        r.call(
            "POST",
            "/channels/web/resync",
            json!({"actor": "a", "reason": "r"})
        )
        .await
        .0,
        400
    );
    assert_eq!(r.call("DELETE", "/channels/web/mode", Value::Null).await.0, 405);
    let (status, mode) = r.call("GET", "/channels/web/mode", Value::Null).await;
    assert_eq!(
        (status, mode["mode"].as_str(), mode["actor"].as_str()),
        (200, Some("live"), Some("configuration"))
    );
    assert_eq!(r.call("GET", "/channels/web/runs/nope", Value::Null).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_pass_fails_with_its_error_and_one_that_may_pass_is_retried() {
    let mut r = rig("revert", None, false).await;
    r.shop
        .standin
        .add_item(&r.shop.shop, "RUN-1", &[(1001, 1)])
        .await
        .unwrap();
    let queue = r.stack.stack.queue_urls["ChannelEditsQueue"].clone();
    let take = || async {
        let taken = r.stack.take_messages(&queue, 1, WAIT).await;
        let ChannelTask::Run { run } = serde_json::from_value(taken[0].clone()).unwrap() else {
            panic!("not a run");
        };
        run
    };
    // Shopify answers 503 past the deadline (backing off 0.2, 0.4, 0.8, 1.6 s,
    // the fifth call would come after 3 s): the run waits for its retry.
    let (_, answer) = r.call("POST", "/channels/web/reconcile", Value::Null).await;
    let id = answer["run"]["id"].as_str().unwrap().to_owned();
    let task = take().await;
    r.shop.standin.fault(&r.shop.shop, 503, 4, None).await.unwrap();
    let soon = Instant::now() + Duration::from_secs(2);
    assert!(r.sync.run_task(task.clone(), soon).await.is_err());
    let (_, run) = r
        .call("GET", &format!("/channels/web/runs/{id}"), Value::Null)
        .await;
    assert_eq!(run["status"], "running", "{run}");
    assert!(run["error"].as_str().is_some(), "{run}");
    // The retry, once Shopify answers again, finishes it.
    assert!(matches!(
        r.sync.run_task(task, deadline()).await.unwrap(),
        RunOutcome::Done(_)
    ));
    let (_, run) = r
        .call("GET", &format!("/channels/web/runs/{id}"), Value::Null)
        .await;
    assert_eq!(
        (run["status"].as_str(), run["totals"]["channel_only"].as_i64()),
        (Some("done"), Some(1)),
        "{run}"
    );
    assert!(run["error"].is_null(), "{run}");
    // A refused token cannot pass: the run fails, and says why.
    r.sync = sync_for(&r.stack, &r.shop, "revert", "shpat_wrong");
    let (_, answer) = r.call("POST", "/channels/web/reconcile", Value::Null).await;
    let id = answer["run"]["id"].as_str().unwrap().to_owned();
    assert!(r.sync.run_task(take().await, deadline()).await.is_err());
    let (_, run) = r
        .call("GET", &format!("/channels/web/runs/{id}"), Value::Null)
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("access token"), "{run}");
}
