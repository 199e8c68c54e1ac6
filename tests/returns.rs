//! The return processor against the emulator: refunds and returns-desk
//! events put stock back exactly once, damaged units stay out of sale, and
//! returns racing sales keep the count exact.

use std::sync::Arc;

use serde_json::{json, Value};
use stockroom::domain::Sku;
use stockroom::signature::sign_generic_now;
use stockroom_tests::{
    delivery, read, request, secret_of, shopify_headers, signed, stack, stocked, url_event, web_sale, Sign,
    TestStack, SECRET, SHOP,
};

fn refund(id: u64, order_id: u64, lines: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "order_id": order_id, "created_at": "2026-11-22T10:00:00-05:00",
        "note": "customer changed their mind", "restock": false, "refund_line_items": lines
    }))
    .unwrap()
}

fn refund_line(sku: &str, quantity: i64, restock_type: &str, location_id: Option<u64>) -> Value {
    json!({"id": 1, "quantity": quantity, "line_item_id": 2, "location_id": location_id,
           "restock_type": restock_type, "subtotal": 90.0,
           "line_item": {"id": 2, "sku": sku, "quantity": quantity, "title": "Jacket"}})
}

async fn post_refund(app: &return_processor::App, body: &[u8]) -> (u16, Value) {
    let webhook_id = &format!("wh-{}", fastrand::u32(..));
    let sign = Sign::Shopify {
        topic: "refunds/create",
        webhook_id,
    };
    read(return_processor::handle(app, signed(body, sign)).await)
}

async fn post_return(app: &return_processor::App, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    read(return_processor::handle(app, signed(&body, Sign::Generic)).await)
}

async fn post_sale(app: &sale_webhook::App, order_id: &str, sku: &str, quantity: i64) -> (u16, Value) {
    let body = web_sale(order_id, sku, None, quantity);
    read(sale_webhook::handle(app, signed(&body, Sign::Generic)).await)
}

/// Shopify sells `quantity` of JKT-BLUE-M on the web in order `id`: the sale webhook's answer.
async fn shopify_sale(s: &TestStack, id: u64, quantity: i64) -> Value {
    let sale = serde_json::to_vec(&json!({"id": id, "source_name": "web",
        "line_items": [{"sku": "JKT-BLUE-M", "quantity": quantity}]}))
    .unwrap();
    let sign = Sign::Shopify {
        topic: "orders/create",
        webhook_id: "w",
    };
    read(sale_webhook::handle(&s.sale_app(), signed(&sale, sign)).await).1
}

async fn return_entries(s: &TestStack, sku: &str) -> Vec<stockroom::level::LedgerEntry> {
    let page = s
        .store()
        .ledger(&Sku::parse(sku).unwrap(), 100, None)
        .await
        .unwrap();
    page.entries
        .into_iter()
        .filter(|e| e.reason == "return")
        .collect()
}

#[tokio::test]
async fn refund_with_restock_delivered_twice_restocks_once() {
    let s = stocked("JKT-BLUE-M", "warehouse", 4).await;
    let app = s.return_app();
    // Location 111 is shop-1 in the test rules; no location_id means the default.
    let body = refund(
        9001,
        7001,
        json!([
            refund_line("JKT-BLUE-M", 2, "return", Some(111)),
            refund_line("JKT-BLUE-M", 1, "legacy_restock", None),
        ]),
    );
    let (status, first) = post_refund(&app, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["return"], "9001");
    assert_eq!(first["status"], "applied");
    assert_eq!(
        first["lines"],
        json!([
            {"sku": "JKT-BLUE-M", "location": "shop-1", "quantity": 2, "restocked": 2, "damaged": 0},
            {"sku": "JKT-BLUE-M", "location": "warehouse", "quantity": 1, "restocked": 1, "damaged": 0},
        ])
    );
    assert_eq!(s.available("JKT-BLUE-M", "shop-1").await, Some(2));
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(5));

    let (status, again) = post_refund(&app, &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["lines"], first["lines"]);
    assert_eq!(s.available("JKT-BLUE-M", "shop-1").await, Some(2));
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(5));

    let entries = return_entries(&s, "JKT-BLUE-M").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries
        .iter()
        .all(|e| e.reference == format!("refund:{SHOP}/9001") && e.actor == format!("shopify:{SHOP}")));
    assert_eq!(entries.iter().map(|e| e.delta).sum::<i64>(), 3);
}

#[tokio::test]
async fn no_restock_changes_nothing_but_is_recorded() {
    let s = stocked("JKT-BLUE-M", "warehouse", 3).await;
    let app = s.return_app();
    let body = refund(
        9002,
        7002,
        json!([refund_line("JKT-BLUE-M", 1, "no_restock", None)]),
    );
    let (status, out) = post_refund(&app, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "nothing_to_restock");
    assert_eq!(out["lines"][0]["restocked"], 0);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    let entries = return_entries(&s, "JKT-BLUE-M").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].delta, 0);
    assert!(entries[0]
        .note
        .as_deref()
        .unwrap_or_default()
        .contains("without restock"));
    assert_eq!(post_refund(&app, &body).await.1["status"], "duplicate");

    // A refund of shipping only carries no lines: recorded, nothing to restock.
    let (status, out) = post_refund(&app, &refund(9003, 7002, json!([]))).await;
    assert_eq!(
        (status, out["status"].as_str()),
        (200, Some("nothing_to_restock"))
    );
}

#[tokio::test]
async fn returns_desk_puts_resellable_back_and_counts_damaged_apart() {
    let s = stocked("JKT-BLUE-M", "warehouse", 0).await;
    let app = s.return_app();
    let event = json!({"return_id": "RMA-1", "location": "warehouse", "lines": [
        {"sku": "JKT-BLUE-M", "quantity": 1, "condition": "resellable"},
        {"sku": "JKT-BLUE-M", "quantity": 1, "condition": "damaged"},
    ]});
    let (status, out) = post_return(&app, &event).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out,
        json!({"return": "RMA-1", "status": "applied", "lines": [
            {"sku": "JKT-BLUE-M", "location": "warehouse", "quantity": 2, "restocked": 1, "damaged": 1}]})
    );
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(1));
    assert_eq!(s.damaged("JKT-BLUE-M", "warehouse").await, Some(1));
    assert_eq!(post_return(&app, &event).await.1["status"], "duplicate");
    assert_eq!(s.damaged("JKT-BLUE-M", "warehouse").await, Some(1));

    // The stock API shows the damaged unit; a sale can only take the resellable one.
    let api = s.api_app();
    let req = request(url_event("GET", "/stock/JKT-BLUE-M", &[], &[], b""));
    let (status, stock) = read(stock_api::handle(&api, req).await);
    assert_eq!(status, 200);
    assert_eq!(
        (stock["available"].as_i64(), stock["damaged"].as_i64()),
        (Some(1), Some(1))
    );
    let (_, sale) = post_sale(&s.sale_app(), "after-return", "JKT-BLUE-M", 2).await;
    assert_eq!(
        (
            sale["lines"][0]["taken"].as_u64(),
            sale["lines"][0]["short"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(0));
    assert_eq!(s.damaged("JKT-BLUE-M", "warehouse").await, Some(1));

    let entries = return_entries(&s, "JKT-BLUE-M").await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].delta, entries[0].damaged), (1, Some(1)));
    assert_eq!(entries[0].reference, "return:returns/RMA-1");
}

#[tokio::test]
async fn restocking_a_sku_never_seen_creates_its_level() {
    let s = stack().await;
    let app = s.return_app();
    let (status, out) = post_return(
        &app,
        &json!({"return_id": "RMA-2", "source": "desk-2", "lines": [
            {"sku": "SCARF-RED", "quantity": 2, "condition": "resellable"},
            {"sku": "HAT-GREY", "quantity": 1, "condition": "damaged"}]}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(s.available("SCARF-RED", "warehouse").await, Some(2));
    assert_eq!(s.available("HAT-GREY", "warehouse").await, Some(0));
    assert_eq!(s.damaged("HAT-GREY", "warehouse").await, Some(1));
    let levels = s.store().levels(&Sku::parse("SCARF-RED").unwrap()).await.unwrap();
    assert_eq!(
        (levels[0].version, levels[0].last_reason.as_deref()),
        (1, Some("return"))
    );
}

#[tokio::test]
async fn a_cancel_puts_back_no_more_than_the_sale_took() {
    let s = stocked("JKT-BLUE-M", "warehouse", 1).await;
    // Shopify sold 3 but the master had 1: the order took 1, 2 were oversold.
    let sold = shopify_sale(&s, 7100, 3).await;
    assert_eq!(sold["status"], "oversold", "{sold}");
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(0));

    // The merchant cancels in two refunds: only the 1 unit taken goes back.
    let app = s.return_app();
    let (_, first) = post_refund(
        &app,
        &refund(9100, 7100, json!([refund_line("JKT-BLUE-M", 2, "cancel", None)])),
    )
    .await;
    assert_eq!(first["status"], "applied", "{first}");
    assert_eq!(first["lines"][0]["restocked"], 1);
    assert!(first["lines"][0]["note"]
        .as_str()
        .unwrap()
        .contains("not restocked"));
    let (_, second) = post_refund(
        &app,
        &refund(9101, 7100, json!([refund_line("JKT-BLUE-M", 1, "cancel", None)])),
    )
    .await;
    assert_eq!(second["status"], "nothing_to_restock", "{second}");
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(1));

    // An order Stockroom never recorded: the cancel restocks what the refund says.
    let (_, unseen) = post_refund(
        &app,
        &refund(9102, 7999, json!([refund_line("JKT-BLUE-M", 2, "cancel", None)])),
    )
    .await;
    assert_eq!(unseen["lines"][0]["restocked"], 2, "{unseen}");
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cancels_of_one_order_share_what_it_took() {
    let s = stocked("JKT-BLUE-M", "warehouse", 2).await;
    assert_eq!(shopify_sale(&s, 7300, 5).await["lines"][0]["taken"], 2);
    let app = Arc::new(s.return_app());
    // Five refunds each cancelling one unit race on the order's counter.
    let cancels = (0..5).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let body = refund(
                9300 + i,
                7300,
                json!([refund_line("JKT-BLUE-M", 1, "cancel", None)]),
            );
            let (status, out) = post_refund(&app, &body).await;
            assert_eq!(status, 200, "{out}");
            out["lines"][0]["restocked"].as_i64().unwrap()
        })
    });
    let restocked: i64 = futures::future::join_all(cancels)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(restocked, 2);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_returns_and_sales_keep_the_count_exact() {
    let s = stocked("JKT-BLUE-M", "warehouse", 30).await;
    s.seed("CAP-GREEN", "warehouse", 5).await;
    let sales = Arc::new(s.sale_app());
    let returns = Arc::new(s.return_app());
    let mut tasks = Vec::new();
    for i in 0..20 {
        for sku in ["JKT-BLUE-M", "CAP-GREEN"] {
            let sales = sales.clone();
            tasks.push(tokio::spawn(async move {
                let (status, out) = post_sale(&sales, &format!("{sku}-sale-{i}"), sku, 1).await;
                assert_eq!(status, 200, "{out}");
                (sku, -out["lines"][0]["taken"].as_i64().unwrap())
            }));
        }
    }
    for i in 0..10 {
        for sku in ["JKT-BLUE-M", "CAP-GREEN"] {
            let returns = returns.clone();
            tasks.push(tokio::spawn(async move {
                let event = json!({"return_id": format!("{sku}-rma-{i}"), "lines": [
                    {"sku": sku, "quantity": 1, "condition": "resellable"}]});
                let (status, out) = post_return(&returns, &event).await;
                assert_eq!(status, 200, "{out}");
                (sku, out["lines"][0]["restocked"].as_i64().unwrap())
            }));
        }
    }
    let moves: Vec<(&str, i64)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let net = |sku: &str| {
        moves
            .iter()
            .filter(|(s, _)| *s == sku)
            .map(|(_, d)| d)
            .sum::<i64>()
    };

    // Plenty of stock: every sale took its unit, every return came back.
    assert_eq!(net("JKT-BLUE-M"), -10);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(20));
    // Scarce stock: what sales took depends on the interleaving, but the
    // figure is exactly the seed plus the answers, and never below zero.
    let cap = s.available("CAP-GREEN", "warehouse").await.unwrap();
    assert_eq!(cap, 5 + net("CAP-GREEN"));
    assert!(cap >= 0);
    let taken: i64 = -moves
        .iter()
        .filter(|(s, d)| *s == "CAP-GREEN" && *d < 0)
        .map(|(_, d)| d)
        .sum::<i64>();
    assert!((5..=15).contains(&taken), "taken {taken}");
    eprintln!("CAP-GREEN: 5 seeded, 10 returned, 20 sales took {taken}, final {cap}");
    let ledger = s
        .store()
        .ledger(&Sku::parse("CAP-GREEN").unwrap(), 100, None)
        .await
        .unwrap();
    let ledger_net: i64 = ledger
        .entries
        .iter()
        .filter(|e| e.reason != "stocktake")
        .map(|e| e.delta)
        .sum();
    assert_eq!(ledger_net, net("CAP-GREEN"));
}

#[tokio::test]
async fn bad_signatures_and_malformed_returns_change_nothing() {
    let s = stocked("JKT-BLUE-M", "warehouse", 2).await;
    let app = s.return_app();
    let good = refund(9200, 7200, json!([refund_line("JKT-BLUE-M", 1, "return", None)]));

    // Wrong secret, tampered body, missing signature, missing shop.
    let req = delivery(
        &good,
        &shopify_headers(&good, "not-the-secret", "refunds/create", "w"),
    );
    assert_eq!(read(return_processor::handle(&app, req).await).0, 401);
    let tampered = refund(9200, 7200, json!([refund_line("JKT-BLUE-M", 50, "return", None)]));
    let req = delivery(&tampered, &shopify_headers(&good, SECRET, "refunds/create", "w"));
    assert_eq!(read(return_processor::handle(&app, req).await).0, 401);
    let generic = serde_json::to_vec(&json!({"return_id": "RMA-9", "lines": [
        {"sku": "JKT-BLUE-M", "quantity": 1, "condition": "resellable"}]}))
    .unwrap();
    let (status, err) = read(return_processor::handle(&app, delivery(&generic, &[])).await);
    assert_eq!((status, err["error"].as_str()), (401, Some("unauthorized")));
    let headers: Vec<_> = shopify_headers(&good, SECRET, "refunds/create", "w")
        .into_iter()
        .filter(|(k, _)| *k != "X-Shopify-Shop-Domain")
        .collect();
    assert_eq!(
        read(return_processor::handle(&app, delivery(&good, &headers)).await).0,
        401
    );

    // Signed but malformed: zero, negative or textual quantities, unknown
    // restock type, bad condition, not JSON.
    for body in [
        refund(9201, 7200, json!([refund_line("JKT-BLUE-M", 0, "return", None)])),
        refund(9202, 7200, json!([refund_line("JKT-BLUE-M", -1, "return", None)])),
        refund(9203, 7200, json!([refund_line("JKT-BLUE-M", 1, "restock", None)])),
        refund(
            9204,
            7200,
            json!([refund_line("JKT-BLUE-M", 1, "return", None), {"quantity": "1", "restock_type": "return", "line_item": {"sku": "JKT-BLUE-M"}}]),
        ),
        b"{not json".to_vec(),
    ] {
        let (status, err) = post_refund(&app, &body).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("bad_request")),
            "{err}"
        );
    }
    for event in [
        json!({"return_id": "RMA-10", "lines": [{"sku": "JKT-BLUE-M", "quantity": 1, "condition": "used"}]}),
        json!({"return_id": "RMA-11", "lines": [{"sku": "JKT-BLUE-M", "quantity": 1.5, "condition": "damaged"}]}),
        json!({"return_id": "RMA-12", "lines": []}),
        json!({"lines": [{"sku": "JKT-BLUE-M", "quantity": 1, "condition": "resellable"}]}),
    ] {
        let (status, err) = post_return(&app, &event).await;
        assert_eq!(status, 400, "{event}: {err}");
    }
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(2));
    assert_eq!(s.damaged("JKT-BLUE-M", "warehouse").await, Some(0));
    assert!(return_entries(&s, "JKT-BLUE-M").await.is_empty());

    // Other Shopify topics are acknowledged and ignored; GET is not a webhook.
    let req = delivery(&good, &shopify_headers(&good, SECRET, "orders/create", "w"));
    let (status, out) = read(return_processor::handle(&app, req).await);
    assert_eq!((status, out["status"].as_str()), (200, Some("ignored")));
    assert_eq!(
        read(return_processor::handle(&app, request(url_event("GET", "/", &[], &[], b""))).await).0,
        405
    );
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(2));

    // Nothing was recorded for the refused deliveries: the good one still applies.
    assert_eq!(post_refund(&app, &good).await.1["status"], "applied");
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
}

#[tokio::test]
async fn a_secret_works_only_on_the_endpoints_it_is_listed_for() {
    let s = stocked("JKT-BLUE-M", "warehouse", 1).await;
    let app = s.return_app();
    let body = refund(9100, 7100, json!([refund_line("JKT-BLUE-M", 5, "return", None)]));
    let mut headers = shopify_headers(
        &body,
        &secret_of("sales-only.myshopify.com"),
        "refunds/create",
        "w",
    );
    headers[1] = ("X-Shopify-Shop-Domain", "sales-only.myshopify.com".to_owned());
    let (status, err) = read(return_processor::handle(&app, delivery(&body, &headers)).await);
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("unauthorized")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("may not post to returns"),
        "{err}"
    );
    // A channel's secret cannot post a return in a returns source's name.
    let desk = serde_json::to_vec(&json!({"return_id": "X-1", "source": "returns-desk",
        "lines": [{"sku": "JKT-BLUE-M", "quantity": 1000000, "condition": "resellable"}]}))
    .unwrap();
    let sig = sign_generic_now(secret_of("channel:pos").as_bytes(), &desk);
    let req = delivery(&desk, &[("X-Stockroom-Signature", sig)]);
    assert_eq!(read(return_processor::handle(&app, req).await).0, 401);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(1));
}
