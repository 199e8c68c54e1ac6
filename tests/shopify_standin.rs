//! The local Shopify stand-in (`infra/shopify.py`) keeps Shopify's rules:
//! its GraphQL engine refuses what Shopify refuses, writes are
//! compare-and-swap and all-or-nothing, idempotency keys replay, the cost
//! bucket throttles, webhooks are signed as Shopify signs them, and the
//! faults a test asks for are answered.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stockroom::config::LocationRules;
use stockroom::domain::Location;
use stockroom::signature::verify_shopify;
use stockroom_tests::{shopify, test_shop, TestShop};

const SET: &str = r#"mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason changes(quantityNames: ["available"]) { name delta quantityAfterChange item { id } location { id } } }
    userErrors { field message code }
  }
}"#;

const LEVEL: &str = r#"query Level($sku: String!, $location: ID!) {
  inventoryItems(first: 2, query: $sku) {
    edges { node { id sku inventoryLevel(locationId: $location) { quantities(names: ["available", "on_hand"]) { name quantity } } } }
    pageInfo { hasNextPage }
  }
}"#;

fn location(n: i64) -> String {
    format!("gid://shopify/Location/{n}")
}

/// One quantity of an `inventorySetQuantities` input.
fn quantity(item: &str, loc: i64, to: i64, from: Value) -> Value {
    json!({"inventoryItemId": item, "locationId": location(loc), "quantity": to, "changeFromQuantity": from})
}

fn input(quantities: Vec<Value>) -> Value {
    json!({"name": "available", "reason": "correction",
           "referenceDocumentUri": "gid://stockroom/test/1", "quantities": quantities})
}

async fn set(shop: &TestShop, key: &str, quantities: Vec<Value>) -> Value {
    let (status, body, _) = shop
        .graphql(SET, json!({"input": input(quantities), "key": key}))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn level(shop: &TestShop, sku: &str, loc: i64) -> Option<i64> {
    shop.standin.level(&shop.shop, sku, loc).await.expect("level")
}

#[tokio::test]
async fn a_valid_query_is_answered_with_its_cost() {
    let shop = test_shop(None).await;
    shop.standin
        .add_item(&shop.shop, "JKT-BLUE-M", &[(1001, 5)])
        .await
        .expect("item");
    let (status, body, _) = shop
        .graphql(
            LEVEL,
            json!({"sku": "sku:'JKT-BLUE-M'", "location": location(1001)}),
        )
        .await;
    assert_eq!(status, 200);
    let edges = body["data"]["inventoryItems"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{body}");
    assert_eq!(edges[0]["node"]["sku"], "JKT-BLUE-M");
    assert_eq!(
        edges[0]["node"]["inventoryLevel"]["quantities"],
        json!([{"name": "available", "quantity": 5}, {"name": "on_hand", "quantity": 5}])
    );
    // A connection costs 2 + first x its node (item 1 + level 1 + quantities 1);
    // the actual cost counts the one item returned.
    let cost = &body["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 8, "{cost}");
    assert_eq!(cost["actualQueryCost"], 5, "{cost}");
    assert_eq!(cost["throttleStatus"]["maximumAvailable"], 2000.0);
    assert_eq!(cost["throttleStatus"]["restoreRate"], 100.0);
    let available = cost["throttleStatus"]["currentlyAvailable"]
        .as_f64()
        .expect("available");
    assert!((1995.0..=2000.0).contains(&available), "{cost}");
    // Unquoted SKUs and a SKU nobody has.
    let (_, body, _) = shop
        .graphql(
            LEVEL,
            json!({"sku": "sku:JKT-BLUE-M", "location": location(1001)}),
        )
        .await;
    assert_eq!(
        body["data"]["inventoryItems"]["edges"].as_array().map(Vec::len),
        Some(1)
    );
    let (_, body, _) = shop
        .graphql(LEVEL, json!({"sku": "sku:'NOPE'", "location": location(1001)}))
        .await;
    assert_eq!(body["data"]["inventoryItems"]["edges"], json!([]));
}

#[tokio::test]
async fn what_shopify_s_schema_refuses_is_refused() {
    let shop = test_shop(None).await;
    for (query, code) in [
        (
            "{ inventoryItems(first: 1) { nodes { bogus } } }",
            "undefinedField",
        ),
        ("{ inventoryItem { id } }", "missingRequiredArguments"),
        (
            r#"{ inventoryItems(first: "two") { nodes { id } } }"#,
            "argumentLiteralsIncompatible",
        ),
        ("{ inventoryItems(first: 1) }", "selectionMismatch"),
        // The directive needs its key.
        (
            r#"mutation { inventorySetQuantities(input: {name: "available", reason: "correction", quantities: []}) @idempotent { userErrors { code } } }"#,
            "missingRequiredArguments",
        ),
    ] {
        let (status, body, _) = shop.graphql(query, json!({})).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body.get("data").is_none(), "{query}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{query}: {body}");
        assert!(body["errors"][0]["locations"].is_array(), "{body}");
    }
    // A variable of the wrong type: refused before anything runs.
    let (_, body, _) = shop
        .graphql(SET, json!({"input": {"name": "available"}, "key": "k"}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_VARIABLE",
        "{body}"
    );
    // From 2026-04 the mutation needs @idempotent, though the schema cannot say so.
    let item = shop
        .standin
        .add_item(&shop.shop, "A", &[(1001, 1)])
        .await
        .expect("item");
    let no_key = "mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }";
    let (_, body, _) = shop
        .graphql(
            no_key,
            json!({"input": input(vec![quantity(&item.id, 1001, 2, json!(1))])}),
        )
        .await;
    assert_eq!(body["data"]["inventorySetQuantities"], Value::Null, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("@idempotent"),
        "{body}"
    );
    assert_eq!(level(&shop, "A", 1001).await, Some(1));
}

#[tokio::test]
async fn a_stale_change_from_quantity_applies_nothing() {
    let shop = test_shop(None).await;
    let a = shop
        .standin
        .add_item(&shop.shop, "A", &[(1001, 5)])
        .await
        .expect("a");
    let b = shop
        .standin
        .add_item(&shop.shop, "B", &[(1001, 7)])
        .await
        .expect("b");
    let body = set(
        &shop,
        "stale-1",
        vec![
            quantity(&a.id, 1001, 10, json!(5)),
            quantity(&b.id, 1001, 3, json!(6)),
        ],
    )
    .await;
    let payload = &body["data"]["inventorySetQuantities"];
    assert_eq!(payload["inventoryAdjustmentGroup"], Value::Null, "{body}");
    assert_eq!(
        payload["userErrors"],
        json!([{"field": ["input", "quantities", "1", "changeFromQuantity"],
                "message": "The changeFromQuantity value does not match persisted value.",
                "code": "CHANGE_FROM_QUANTITY_STALE"}])
    );
    assert_eq!(level(&shop, "A", 1001).await, Some(5), "all or nothing");
    assert_eq!(level(&shop, "B", 1001).await, Some(7));
    assert!(shop
        .standin
        .webhooks(&shop.shop, 0)
        .await
        .expect("outbox")
        .is_empty());

    // Each failing quantity is named; a negative figure is refused; a missing
    // changeFromQuantity too (null opts out of the check).
    let mut no_from = quantity(&b.id, 1001, 1, Value::Null);
    no_from.as_object_mut().map(|q| q.remove("changeFromQuantity"));
    let body = set(
        &shop,
        "stale-2",
        vec![
            quantity(&a.id, 1001, 1, json!(4)),
            quantity(&b.id, 1002, 1, json!(0)),
            quantity(&a.id, 1002, -1, Value::Null),
            no_from,
        ],
    )
    .await;
    let codes: Vec<(Value, Value)> = body["data"]["inventorySetQuantities"]["userErrors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["code"].clone(), e["field"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                json!("CHANGE_FROM_QUANTITY_STALE"),
                json!(["input", "quantities", "0", "changeFromQuantity"])
            ),
            (
                json!("ITEM_NOT_STOCKED_AT_LOCATION"),
                json!(["input", "quantities", "1", "locationId"])
            ),
            (
                json!("ITEM_NOT_STOCKED_AT_LOCATION"),
                json!(["input", "quantities", "2", "locationId"])
            ),
            (
                json!("COMPARE_QUANTITY_REQUIRED"),
                json!(["input", "quantities", "3", "changeFromQuantity"])
            ),
        ],
        "{body}"
    );
    let body = set(&shop, "neg", vec![quantity(&a.id, 1001, -1, json!(5))]).await;
    assert_eq!(
        body["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "INVALID_QUANTITY_NEGATIVE"
    );

    // The same call from the right figures applies both.
    let body = set(
        &shop,
        "fresh",
        vec![
            quantity(&a.id, 1001, 10, json!(5)),
            quantity(&b.id, 1001, 3, json!(7)),
        ],
    )
    .await;
    let group = &body["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"];
    assert_eq!(
        group["changes"][0],
        json!({"name": "available", "delta": 5, "quantityAfterChange": 10,
               "item": {"id": a.id}, "location": {"id": location(1001)}})
    );
    assert_eq!(level(&shop, "A", 1001).await, Some(10));
    assert_eq!(level(&shop, "B", 1001).await, Some(3));
    // null skips the check.
    set(&shop, "null", vec![quantity(&a.id, 1001, 4, Value::Null)]).await;
    assert_eq!(level(&shop, "A", 1001).await, Some(4));

    // At most 250 quantities in one call.
    let many: Vec<Value> = (0..251).map(|_| quantity(&a.id, 1001, 1, json!(4))).collect();
    let (_, body, _) = shop
        .graphql(SET, json!({"input": input(many), "key": "many"}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "MAX_INPUT_SIZE_EXCEEDED",
        "{body}"
    );
    assert_eq!(level(&shop, "A", 1001).await, Some(4));
}

#[tokio::test]
async fn concurrent_writes_from_one_figure_apply_once() {
    let shop = test_shop(None).await;
    let a = shop
        .standin
        .add_item(&shop.shop, "HOT", &[(1001, 10)])
        .await
        .expect("a");
    let writes = (0..16).map(|n| {
        let shop = &shop;
        let item = a.id.clone();
        async move { set(shop, &format!("w{n}"), vec![quantity(&item, 1001, n, json!(10))]).await }
    });
    let answers = futures::future::join_all(writes).await;
    let applied = answers
        .iter()
        .filter(|b| b["data"]["inventorySetQuantities"]["userErrors"] == json!([]))
        .count();
    assert_eq!(applied, 1);
    assert_eq!(
        shop.standin
            .history(&shop.shop, "HOT", 1001)
            .await
            .expect("history")
            .len(),
        1
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_its_first_answer() {
    let shop = test_shop(None).await;
    let a = shop
        .standin
        .add_item(&shop.shop, "A", &[(1001, 5)])
        .await
        .expect("a");
    let first = set(&shop, "key-1", vec![quantity(&a.id, 1001, 8, json!(5))]).await;
    // The merchant moves the level; a retry of the first call changes nothing
    // and gets the first answer back (not a stale error).
    shop.standin.edit(&shop.shop, "A", 1001, 9).await.expect("edit");
    let again = set(&shop, "key-1", vec![quantity(&a.id, 1001, 8, json!(5))]).await;
    assert_eq!(again["data"], first["data"]);
    assert!(first["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["id"].is_string());
    assert_eq!(level(&shop, "A", 1001).await, Some(9));
    let history = shop
        .standin
        .history(&shop.shop, "A", 1001)
        .await
        .expect("history");
    let by: Vec<(&str, i64, Option<&str>)> = history
        .iter()
        .map(|c| (c.by.as_str(), c.available, c.idempotency_key.as_deref()))
        .collect();
    assert_eq!(by, vec![("app", 8, Some("key-1")), ("merchant", 9, None)]);
    // The same key with another input is refused.
    let other = set(&shop, "key-1", vec![quantity(&a.id, 1001, 2, json!(9))]).await;
    let payload = &other["data"]["inventorySetQuantities"];
    assert_eq!(payload["inventoryAdjustmentGroup"], Value::Null);
    assert_eq!(
        payload["userErrors"][0]["code"], "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        "{other}"
    );
    assert_eq!(level(&shop, "A", 1001).await, Some(9));
}

#[tokio::test]
async fn an_empty_bucket_throttles_until_it_restores() {
    // 35 points, 10 restored a second: three mutations (10 each), then throttled.
    let shop = test_shop(Some((35, 10))).await;
    let a = shop
        .standin
        .add_item(&shop.shop, "A", &[(1001, 0)])
        .await
        .expect("a");
    for n in 0..3 {
        let body = set(
            &shop,
            &format!("k{n}"),
            vec![quantity(&a.id, 1001, n + 1, json!(n))],
        )
        .await;
        assert_eq!(
            body["data"]["inventorySetQuantities"]["userErrors"],
            json!([]),
            "{body}"
        );
    }
    let body = set(&shop, "k3", vec![quantity(&a.id, 1001, 4, json!(3))]).await;
    assert_eq!(body["errors"][0]["message"], "Throttled", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "THROTTLED");
    assert!(body.get("data").is_none());
    let status = &body["extensions"]["cost"]["throttleStatus"];
    assert_eq!(status["maximumAvailable"], 35.0);
    assert!(
        status["currentlyAvailable"].as_f64().unwrap_or(99.0) < 10.0,
        "{body}"
    );
    assert_eq!(
        level(&shop, "A", 1001).await,
        Some(3),
        "a throttled call runs nothing"
    );
    // Restored at 10 points a second: the retry passes within about a second.
    let started = Instant::now();
    loop {
        let body = set(&shop, "k3", vec![quantity(&a.id, 1001, 4, json!(3))]).await;
        if body.get("errors").is_none() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(level(&shop, "A", 1001).await, Some(4));
    let calls = shop.standin.calls(&shop.shop).await.expect("calls");
    assert!(calls.iter().any(|c| c.throttled && c.cost.requested == 10));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.operation.as_deref() == Some("mutation") && !c.throttled)
            .count(),
        4
    );

    // A query over the single-query cap is refused whatever the bucket holds.
    let big = "{ inventoryItems(first: 250) { nodes { inventoryLevels(first: 250) { nodes { id } } } } }";
    let (_, body, _) = shop.graphql(big, json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED",
        "{body}"
    );
}

#[tokio::test]
async fn webhooks_are_signed_and_the_order_follows_its_level() {
    let shop = test_shop(None).await;
    let a = shop
        .standin
        .add_item(&shop.shop, "JKT", &[(1001, 5), (1002, 1)])
        .await
        .expect("a");
    // The app's own write is announced too.
    set(&shop, "w", vec![quantity(&a.id, 1001, 4, json!(5))]).await;
    let hooks = shop.standin.webhooks(&shop.shop, 0).await.expect("outbox");
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook.topic, "inventory_levels/update");
    assert_eq!(hook.header("x-shopify-topic"), Some("inventory_levels/update"));
    assert_eq!(hook.header("X-Shopify-Shop-Domain"), Some(shop.shop.as_str()));
    for h in [
        "X-Shopify-Webhook-Id",
        "X-Shopify-Event-Id",
        "X-Shopify-Triggered-At",
        "X-Shopify-API-Version",
    ] {
        assert!(hook.header(h).is_some(), "{h}");
    }
    verify_shopify(
        shop.secret.as_bytes(),
        hook.body.as_bytes(),
        hook.header("X-Shopify-Hmac-Sha256"),
    )
    .expect("signed with the shop's secret");
    assert!(verify_shopify(
        b"another secret",
        hook.body.as_bytes(),
        hook.header("X-Shopify-Hmac-Sha256")
    )
    .is_err());
    let body = hook.json();
    assert_eq!(body["inventory_item_id"], a.inventory_item_id);
    assert_eq!(body["location_id"], 1001);
    assert_eq!(body["available"], 4);
    assert_eq!(
        body["admin_graphql_api_id"],
        format!(
            "gid://shopify/InventoryLevel/1001?inventory_item_id={}",
            a.inventory_item_id
        )
    );
    let updated = body["updated_at"].as_str().expect("updated_at");
    assert!(updated.ends_with("+00:00"), "{updated}");

    // A merchant's edit.
    shop.standin.edit(&shop.shop, "JKT", 1002, 3).await.expect("edit");
    let hook = shop
        .standin
        .wait_webhook(&shop.shop, "inventory_levels/update", 1, Duration::ZERO)
        .await
        .expect("outbox")
        .expect("the edit's webhook");
    assert_eq!(hook.json()["available"], 3);

    // A sale: the level drops at once, orders/create follows.
    let ordered = Instant::now();
    let order_id = shop
        .standin
        .order(&shop.shop, 1001, &[("JKT", 3)])
        .await
        .expect("order");
    assert_eq!(level(&shop, "JKT", 1001).await, Some(1));
    let now = shop.standin.webhooks(&shop.shop, 2).await.expect("outbox");
    assert_eq!(
        now.iter().map(|w| w.topic.as_str()).collect::<Vec<_>>(),
        vec!["inventory_levels/update"]
    );
    let order = shop
        .standin
        .wait_webhook(&shop.shop, "orders/create", 2, Duration::from_secs(5))
        .await
        .expect("outbox")
        .expect("orders/create");
    assert!(
        ordered.elapsed() >= Duration::from_millis(250),
        "{:?}",
        ordered.elapsed()
    );
    assert_eq!(order.n, 4);
    verify_shopify(
        shop.secret.as_bytes(),
        order.body.as_bytes(),
        order.header("X-Shopify-Hmac-Sha256"),
    )
    .expect("signed");
    // sale-webhook reads it: the order's lines at the mapped location.
    let rules = LocationRules::new(
        Location::parse("warehouse").expect("loc"),
        "",
        "1001=warehouse,1002=downtown",
    )
    .expect("rules");
    let sale =
        stockroom::wire::shopify::parse_order(order.body.as_bytes(), &shop.shop, &rules).expect("an order");
    assert_eq!(sale.order_id, order_id);
    assert_eq!(sale.channel, "web");
    assert_eq!(sale.lines.len(), 1);
    // More than a level holds is refused, as Shopify's default policy refuses it.
    assert!(shop.standin.order(&shop.shop, 1001, &[("JKT", 2)]).await.is_err());
    let history = shop
        .standin
        .history(&shop.shop, "JKT", 1001)
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|c| c.by.as_str()).collect::<Vec<_>>(),
        vec!["app", "order"]
    );
}

#[tokio::test]
async fn a_wrong_token_an_unknown_shop_or_version_and_a_missing_scope_are_refused() {
    let shop = test_shop(None).await;
    let query = "{ inventoryItems(first: 1) { nodes { id } } }";
    let client = &shop.standin;
    let (reply, _) = client
        .graphql(&shop.shop, "shpat_wrong", query, json!({}))
        .await
        .expect("post");
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.json()["errors"],
        "[API] Invalid API key or access token (unrecognized login or wrong password)"
    );
    let (reply, _) = client
        .graphql("nobody.myshopify.com", &shop.token, query, json!({}))
        .await
        .expect("post");
    assert_eq!(reply.status, 401);
    let http = stockroom_local::http::HttpClient::new(Duration::from_secs(10));
    let body = json!({"query": query}).to_string().into_bytes();
    let headers = [("X-Shopify-Access-Token", shop.token.clone())];
    for version in ["2024-10", "2026-02", "latest"] {
        let url = client.graphql_url(&shop.shop, version);
        let reply = http
            .send("POST", &url, &headers, body.clone())
            .await
            .expect("post");
        assert_eq!(reply.status, 404, "{version}");
    }
    let mut spec = stockroom_local::shopify::ShopSpec::new(&shop.shop, &shop.token, &shop.secret);
    spec.missing_scope = true;
    client.put_shop(&spec).await.expect("put");
    let (reply, _) = client
        .graphql(&shop.shop, &shop.token, query, json!({}))
        .await
        .expect("post");
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn injected_faults_answer_the_next_calls() {
    let shop = test_shop(None).await;
    let query = "{ inventoryItems(first: 1) { nodes { id } } }";
    shop.standin.fault(&shop.shop, 503, 2, None).await.expect("fault");
    shop.standin
        .fault(&shop.shop, 429, 1, Some(2))
        .await
        .expect("fault");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (reply, headers) = shop
            .standin
            .graphql(&shop.shop, &shop.token, query, json!({}))
            .await
            .expect("post");
        statuses.push(reply.status);
        if reply.status == 429 {
            retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
    }
    assert_eq!(statuses, vec![503, 503, 429, 200]);
    assert_eq!(retry_after.as_deref(), Some("2"));
    let calls = shop.standin.calls(&shop.shop).await.expect("calls");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![503, 503, 429, 200]
    );
}

#[tokio::test]
async fn the_admin_url_names_the_shop() {
    let standin = shopify();
    assert_eq!(standin.admin_url(), format!("{}/{{shop}}", standin.base));
    let shop = test_shop(None).await;
    let url = standin.admin_url().replace("{shop}", &shop.shop) + "/admin/api/2026-10/graphql.json";
    assert_eq!(url, shop.standin.graphql_url(&shop.shop, "2026-10"));
}
