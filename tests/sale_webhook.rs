//! The sale webhook against the emulator: signatures, idempotency, and the
//! never-negative rule under concurrency.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stockroom::signature::{sign_generic, sign_generic_now, sign_shopify};
use stockroom_tests::{delivery, read, secret_of, shopify_headers, signed, stack, stocked, Sign, SECRET};

fn generic(order_id: &str, lines: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"channel": "marketplace", "order_id": order_id, "lines": lines})).unwrap()
}

async fn post_generic(app: &sale_webhook::App, body: &[u8]) -> (u16, Value) {
    read(sale_webhook::handle(app, signed(body, Sign::Generic)).await)
}

async fn post_shopify(app: &sale_webhook::App, body: &[u8], webhook_id: &str, topic: &str) -> (u16, Value) {
    read(sale_webhook::handle(app, signed(body, Sign::Shopify { topic, webhook_id })).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_never_take_more_than_there_is() {
    let s = stocked("JKT-BLUE-M", "warehouse", 50).await;
    let app = Arc::new(s.sale_app());
    let fanout = s.start_fanout().await;

    // A watcher reads the level throughout; it must never see it below zero.
    let stop = Arc::new(AtomicBool::new(false));
    let lowest = Arc::new(AtomicI64::new(i64::MAX));
    let watcher = {
        let (stop, lowest) = (stop.clone(), lowest.clone());
        let ddb = s.ddb.clone();
        let table = s.table().to_owned();
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let item = ddb
                    .get_item()
                    .table_name(&table)
                    .consistent_read(true)
                    .key(
                        "pk",
                        stockroom::aws_sdk_dynamodb::types::AttributeValue::S("SKU#JKT-BLUE-M".into()),
                    )
                    .key(
                        "sk",
                        stockroom::aws_sdk_dynamodb::types::AttributeValue::S("LEVEL#warehouse".into()),
                    )
                    .send()
                    .await
                    .unwrap();
                let a: i64 = item.item().unwrap()["available"].as_n().unwrap().parse().unwrap();
                lowest.fetch_min(a, Ordering::Relaxed);
                reads += 1;
            }
            reads
        })
    };

    let orders = (0..200).map(|i| {
        let app = app.clone();
        let body = generic(
            &format!("flash-{i}"),
            json!([{"sku": "JKT-BLUE-M", "quantity": 1}]),
        );
        tokio::spawn(async move { post_generic(&app, &body).await })
    });
    let answers: Vec<(u16, Value)> = futures::future::join_all(orders)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    stop.store(true, Ordering::Relaxed);
    let reads = watcher.await.unwrap();

    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let taken: u64 = answers
        .iter()
        .map(|(_, b)| b["lines"][0]["taken"].as_u64().unwrap())
        .sum();
    let applied = answers.iter().filter(|(_, b)| b["status"] == "applied").count();
    let oversold = answers.iter().filter(|(_, b)| b["status"] == "oversold").count();
    eprintln!(
        "200 concurrent orders for 50 units: taken {taken}, applied {applied}, oversold {oversold}, \
         lowest level observed {} over {reads} reads",
        lowest.load(Ordering::Relaxed)
    );
    assert_eq!(taken, 50);
    assert_eq!(applied, 50);
    assert_eq!(oversold, 150);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(0));
    assert!(lowest.load(Ordering::Relaxed) >= 0);
    assert!(reads > 0);

    // Every oversold order raised one alert (stock-fanout, from the stream);
    // every order is in the ledger.
    let alerts = s.alerts(150, Duration::from_secs(60)).await;
    assert_eq!(alerts.len(), 150);
    assert!(alerts
        .iter()
        .all(|a| a["kind"] == "oversell" && a["short_units"] == 1 && a["source"] == "marketplace"));
    let orders: std::collections::HashSet<&str> = alerts.iter().filter_map(|a| a["order"].as_str()).collect();
    assert_eq!(orders.len(), 150);
    assert!(s.alerts(0, Duration::from_secs(1)).await.is_empty());
    drop(fanout);
    let mut entries = 0;
    let mut cursor = None;
    loop {
        let page = s
            .store()
            .ledger(
                &stockroom::domain::Sku::parse("JKT-BLUE-M").unwrap(),
                200,
                cursor.as_deref(),
            )
            .await
            .unwrap();
        entries += page.entries.iter().filter(|e| e.reason == "sale").count();
        match page.next {
            Some(n) => cursor = stockroom::keys::decode_cursor(&n),
            None => break,
        }
    }
    assert_eq!(entries, 200);
}

#[tokio::test]
async fn the_same_order_changes_stock_once_whatever_the_webhook_id() {
    let s = stocked("JKT-BLUE-M", "warehouse", 5).await;
    let app = s.sale_app();
    let body = serde_json::to_vec(&json!({
        "id": 5001, "source_name": "web", "location_id": null,
        "line_items": [{"sku": "JKT-BLUE-M", "quantity": 2}]
    }))
    .unwrap();
    let (status, first) = post_shopify(&app, &body, "wh-1", "orders/create").await;
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("applied")),
        "{first}"
    );
    for _ in 0..2 {
        let (status, again) = post_shopify(&app, &body, "wh-1", "orders/create").await;
        assert_eq!(status, 200);
        assert_eq!(again["status"], "duplicate");
        assert_eq!(again["lines"], first["lines"]);
    }
    // A new webhook id (and the orders/paid topic) for the same order: still a duplicate.
    let (status, paid) = post_shopify(&app, &body, "wh-2", "orders/paid").await;
    assert_eq!((status, paid["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(paid["lines"], first["lines"]);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
}

#[tokio::test]
async fn bad_signatures_are_refused_and_change_nothing() {
    let s = stocked("CAP", "warehouse", 4).await;
    let app = s.sale_app();
    let body = serde_json::to_vec(&json!({"id": 1, "line_items": [{"sku": "CAP", "quantity": 1}]})).unwrap();

    // Wrong secret.
    let req = delivery(
        &body,
        &shopify_headers(&body, "not-the-secret", "orders/create", "w"),
    );
    let (status, err) = read(sale_webhook::handle(&app, req).await);
    assert_eq!((status, err["error"].as_str()), (401, Some("unauthorized")));
    // Missing signature.
    let headers: Vec<_> = shopify_headers(&body, SECRET, "orders/create", "w")
        .into_iter()
        .skip(1)
        .collect();
    let (status, _) = read(sale_webhook::handle(&app, delivery(&body, &headers)).await);
    assert_eq!(status, 401);
    // Signed for another body.
    let other = serde_json::to_vec(&json!({"id": 1, "line_items": [{"sku": "CAP", "quantity": 4}]})).unwrap();
    let req = delivery(&other, &shopify_headers(&body, SECRET, "orders/create", "w"));
    assert_eq!(read(sale_webhook::handle(&app, req).await).0, 401);
    // Generic: no header, and a wrong one.
    let g = generic("g-1", json!([{"sku": "CAP", "quantity": 1}]));
    assert_eq!(read(sale_webhook::handle(&app, delivery(&g, &[])).await).0, 401);
    let bad = sign_generic_now(b"wrong-secret-0123456789", &g);
    let req = delivery(&g, &[("X-Stockroom-Signature", bad)]);
    assert_eq!(read(sale_webhook::handle(&app, req).await).0, 401);

    assert_eq!(s.available("CAP", "warehouse").await, Some(4));
}

#[tokio::test]
async fn only_a_known_sender_with_its_own_fresh_signature_is_let_in() {
    let s = stocked("CAP", "pos", 4).await;
    let app = s.sale_app();
    let refused = |body: Vec<u8>, sig: String| {
        let app = &app;
        async move {
            let (status, err) =
                read(sale_webhook::handle(app, delivery(&body, &[("X-Stockroom-Signature", sig)])).await);
            assert_eq!(
                (status, err["error"].as_str()),
                (401, Some("unauthorized")),
                "{err}"
            );
            err["message"].as_str().unwrap_or_default().to_owned()
        }
    };
    let sale = |channel: &str, id: &str| {
        serde_json::to_vec(&json!({"channel": channel, "order_id": id, "location": "pos",
            "lines": [{"sku": "CAP", "quantity": 1}]}))
        .unwrap()
    };
    // An unknown sender: no default secret lets it in.
    let body = sale("stranger", "U-1");
    let msg = refused(
        body.clone(),
        sign_generic_now(b"test-secret-of-channel:stranger", &body),
    )
    .await;
    assert!(msg.contains("unknown sender"), "{msg}");
    // A padded name is the sender it normalises to: only pos's secret signs as pos...
    let padded = sale(" pos", "P-1");
    let as_marketplace = sign_generic_now(secret_of("channel:marketplace").as_bytes(), &padded);
    assert!(refused(padded.clone(), as_marketplace)
        .await
        .contains("does not match"));
    // ...and a sale signed by pos is recorded under pos, whatever padding it had.
    let signed_by_pos = sign_generic_now(secret_of("channel:pos").as_bytes(), &padded);
    let (status, out) = read(
        sale_webhook::handle(
            &app,
            delivery(&padded, &[("X-Stockroom-Signature", signed_by_pos)]),
        )
        .await,
    );
    assert_eq!((status, out["status"].as_str()), (200, Some("applied")), "{out}");
    let receipt = s
        .store()
        .item(&stockroom::keys::Key::new("RECEIPT#order#pos#P-1", "PART#0000"))
        .await
        .unwrap();
    assert!(receipt.is_some(), "recorded in pos's namespace");
    // A returns desk's secret cannot post a sale.
    let body = sale("returns-desk", "D-1");
    let by_desk = sign_generic_now(secret_of("source:returns-desk").as_bytes(), &body);
    assert!(refused(body, by_desk)
        .await
        .contains("unknown sender \"channel:returns-desk\""));
    // A captured request cannot be replayed once its time is past.
    let body = sale("pos", "R-1");
    let old = stockroom::clock::epoch_seconds() - 301;
    let stale = sign_generic(secret_of("channel:pos").as_bytes(), &body, old);
    assert!(refused(body.clone(), stale).await.contains("replayed"));
    // The old form, without a time, is refused.
    let unsigned_time = sign_generic_now(secret_of("channel:pos").as_bytes(), &body);
    let old_form = unsigned_time
        .split_once(',')
        .map(|(_, sig)| sig.to_owned())
        .unwrap();
    assert!(refused(body, old_form).await.contains("not well formed"));
    // A shop unknown to the secrets is refused, whatever it signs with.
    let shopify =
        serde_json::to_vec(&json!({"id": 9, "line_items": [{"sku": "CAP", "quantity": 1}]})).unwrap();
    let headers = vec![
        ("X-Shopify-Hmac-Sha256", sign_shopify(SECRET.as_bytes(), &shopify)),
        ("X-Shopify-Shop-Domain", "someone-else.myshopify.com".to_owned()),
        ("X-Shopify-Topic", "orders/create".to_owned()),
    ];
    assert_eq!(
        read(sale_webhook::handle(&app, delivery(&shopify, &headers)).await).0,
        401
    );
    assert_eq!(
        s.available("CAP", "pos").await,
        Some(3),
        "only pos's own sale took stock"
    );
}

#[tokio::test]
async fn malformed_orders_get_400_with_a_reason_and_change_nothing() {
    let s = stocked("CAP", "warehouse", 4).await;
    let app = s.sale_app();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"channel\": \"pos\", ".to_vec(), "JSON"),
        (
            generic("n-1", json!([{"sku": "CAP", "quantity": -1}])),
            "quantity",
        ),
        (generic("n-2", json!([{"sku": "CAP", "quantity": 0}])), "quantity"),
        (
            generic("n-3", json!([{"sku": "CAP", "quantity": 1}, {"quantity": 1}])),
            "sku",
        ),
        (
            serde_json::to_vec(&json!({"channel": "pos", "lines": [{"sku": "CAP", "quantity": 1}]})).unwrap(),
            "order_id",
        ),
    ];
    for (body, needle) in cases {
        let (status, err) = post_generic(&app, &body).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"], "bad_request");
        assert!(err["message"].as_str().unwrap().contains(needle), "{err}");
    }
    // Shopify with a negative quantity on the second line: nothing of the order applies.
    let body = serde_json::to_vec(&json!({"id": 9, "line_items": [
        {"sku": "CAP", "quantity": 1}, {"sku": "CAP", "quantity": -3}]}))
    .unwrap();
    assert_eq!(post_shopify(&app, &body, "w", "orders/create").await.0, 400);
    // Too large.
    let huge = generic(
        &"x".repeat(10),
        json!([{"sku": "CAP", "quantity": 1, "pad": "y".repeat(1_100_000)}]),
    );
    assert_eq!(post_generic(&app, &huge).await.0, 413);
    assert_eq!(s.available("CAP", "warehouse").await, Some(4));
}

#[tokio::test]
async fn a_short_line_is_floored_at_zero_and_the_rest_is_taken() {
    let s = stocked("JKT-BLUE-M", "warehouse", 1).await;
    s.seed("JKT-BLUE-L", "warehouse", 10).await;
    let fanout = s.start_fanout().await;
    let app = s.sale_app();
    let body = generic(
        "multi-1",
        json!([
            {"sku": "JKT-BLUE-L", "quantity": 3},
            {"sku": "JKT-BLUE-M", "quantity": 2},
            {"sku": "NEVER-SEEN", "quantity": 1}
        ]),
    );
    let (status, res) = post_generic(&app, &body).await;
    assert_eq!(status, 200);
    assert_eq!(res["status"], "oversold");
    assert_eq!(
        res["lines"],
        json!([
            {"sku": "JKT-BLUE-L", "location": "warehouse", "requested": 3, "taken": 3, "short": 0},
            {"sku": "JKT-BLUE-M", "location": "warehouse", "requested": 2, "taken": 1, "short": 1},
            {"sku": "NEVER-SEEN", "location": "warehouse", "requested": 1, "taken": 0, "short": 1}
        ])
    );
    assert_eq!(s.available("JKT-BLUE-L", "warehouse").await, Some(7));
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(0));
    assert_eq!(s.available("NEVER-SEEN", "warehouse").await, None);
    let alerts = s.alerts(1, Duration::from_secs(20)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["short_units"], 2);
    assert_eq!(alerts[0]["order"], "multi-1");
    assert_eq!(alerts[0]["channel"], "marketplace");
    assert_eq!(alerts[0]["part"], 0);
    assert_eq!(
        alerts[0]["lines"],
        json!([
            {"sku": "JKT-BLUE-M", "location": "warehouse", "requested": 2, "taken": 1, "short": 1},
            {"sku": "NEVER-SEEN", "location": "warehouse", "requested": 1, "taken": 0, "short": 1}
        ])
    );
    // A redelivery is a duplicate: no second alert.
    let (status, res) = post_generic(&app, &body).await;
    assert_eq!((status, res["status"].as_str()), (200, Some("duplicate")));
    assert!(s.alerts(0, Duration::from_secs(2)).await.is_empty());
    drop(fanout);
}

#[tokio::test]
async fn a_container_that_saw_a_sell_out_still_sells_what_arrives_later() {
    // One app is one container: it remembers the levels it saw short.
    let s = stocked("JKT-BLUE-M", "warehouse", 1).await;
    let app = s.sale_app();
    let order = |id: &str, sku: &str, quantity: u32| generic(id, json!([{"sku": sku, "quantity": quantity}]));
    let taken = |res: &Value| res["lines"][0]["taken"].as_u64();
    let (_, res) = post_generic(&app, &order("o1", "JKT-BLUE-M", 1)).await;
    assert_eq!((res["status"].as_str(), taken(&res)), (Some("applied"), Some(1)));
    let (_, res) = post_generic(&app, &order("o2", "JKT-BLUE-M", 1)).await;
    assert_eq!((res["status"].as_str(), taken(&res)), (Some("oversold"), Some(0)));
    let (_, res) = post_generic(&app, &order("o3", "NEW-SKU", 2)).await;
    assert_eq!((res["status"].as_str(), taken(&res)), (Some("oversold"), Some(0)));

    // Stock arrives through another writer (a delivery, another container).
    s.seed("JKT-BLUE-M", "warehouse", 3).await;
    s.seed("NEW-SKU", "warehouse", 1).await;
    let (_, res) = post_generic(&app, &order("o4", "JKT-BLUE-M", 2)).await;
    assert_eq!((res["status"].as_str(), taken(&res)), (Some("applied"), Some(2)));
    let (_, res) = post_generic(&app, &order("o5", "NEW-SKU", 2)).await;
    assert_eq!(
        res["lines"][0],
        json!({"sku": "NEW-SKU", "location": "warehouse",
        "requested": 2, "taken": 1, "short": 1})
    );
    // It saw 1 left of JKT-BLUE-M; another writer takes it; a 3-unit order finds none.
    let other = s.sale_app();
    let (_, res) = post_generic(&other, &order("o6", "JKT-BLUE-M", 1)).await;
    assert_eq!(taken(&res), Some(1));
    let (_, res) = post_generic(&app, &order("o7", "JKT-BLUE-M", 3)).await;
    assert_eq!((res["status"].as_str(), taken(&res)), (Some("oversold"), Some(0)));
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(0));
    assert_eq!(s.available("NEW-SKU", "warehouse").await, Some(0));
}

#[tokio::test]
async fn orders_larger_than_one_transaction_apply_once() {
    let s = stack().await;
    let skus: Vec<String> = (0..120).map(|i| format!("BULK-{i:03}")).collect();
    for sku in &skus {
        s.seed(sku, "warehouse", 2).await;
    }
    let app = s.sale_app();
    let lines: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "quantity": 1}))
        .collect();
    let body = generic("bulk-1", json!(lines));
    let (status, res) = post_generic(&app, &body).await;
    assert_eq!((status, res["status"].as_str()), (200, Some("applied")), "{res}");
    assert_eq!(res["lines"].as_array().unwrap().len(), 120);
    let (_, again) = post_generic(&app, &body).await;
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["lines"], res["lines"]);
    for sku in [&skus[0], &skus[60], &skus[119]] {
        assert_eq!(s.available(sku, "warehouse").await, Some(1), "{sku}");
    }
}

#[tokio::test]
async fn shopify_location_ids_map_to_locations() {
    let s = stocked("JKT-BLUE-M", "shop-1", 1).await;
    s.seed("JKT-BLUE-M", "warehouse", 1).await;
    let app = s.sale_app();
    let body = serde_json::to_vec(&json!({
        "id": 77, "source_name": "pos", "location_id": 111,
        "line_items": [{"sku": "JKT-BLUE-M", "quantity": 1}, {"sku": null, "title": "Gift card", "quantity": 1}]
    }))
    .unwrap();
    let (status, res) = post_shopify(&app, &body, "w-77", "orders/create").await;
    assert_eq!((status, res["status"].as_str()), (200, Some("applied")), "{res}");
    assert_eq!(res["lines"][0]["location"], "shop-1");
    assert_eq!(res["skipped"][0]["index"], 1);
    assert_eq!(s.available("JKT-BLUE-M", "shop-1").await, Some(0));
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(1));
    // Topics that do not move stock are acknowledged and ignored.
    let (status, res) = post_shopify(&app, &body, "w-78", "orders/cancelled").await;
    assert_eq!((status, res["status"].as_str()), (200, Some("ignored")));
}
