//! The stock API against the emulator: reads, audited adjustments, ledger.

use serde_json::{json, Value};
use stockroom_tests::{read, request, stocked, url_event, TestStack};

async fn call(
    s: &TestStack,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    call_with(s, method, path, query, &[], body).await
}

async fn call_with(
    s: &TestStack,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, String)],
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let req = request(url_event(method, path, query, headers, &body));
    read(stock_api::handle(&s.api_app(), req).await)
}

/// Posts an adjustment without extra headers.
async fn adjust(s: &TestStack, body: Value) -> (u16, Value) {
    call(s, "POST", "/adjustments", &[], Some(body)).await
}

#[tokio::test]
async fn stock_is_summed_over_locations_and_unknown_skus_are_404() {
    let s = stocked("JKT BLUE/M", "warehouse", 3).await;
    s.seed("JKT BLUE/M", "shop-1", 2).await;
    let (status, body) = call(&s, "GET", "/stock/JKT%20BLUE%2FM", &[], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sku"], "JKT BLUE/M");
    assert_eq!(body["available"], 5);
    let levels = body["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    assert!(levels
        .iter()
        .all(|l| l["version"] == 1 && l["updated_at"].as_str().unwrap().ends_with('Z')));
    let (status, body) = call(&s, "GET", "/stock/NEVER-SEEN", &[], None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // The local function URL prefix is accepted too.
    let (status, _) = call(&s, "GET", "/lambda-url/stock-api/stock/JKT%20BLUE%2FM", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(call(&s, "GET", "/nowhere", &[], None).await.0, 404);
    assert_eq!(call(&s, "DELETE", "/stock/X", &[], None).await.0, 405);
}

#[tokio::test]
async fn adjustments_need_a_reason_and_an_actor() {
    let s = stocked("CAP", "shop-1", 5).await;
    for (body, field) in [
        (
            json!({"sku": "CAP", "location": "shop-1", "delta": -1, "actor": "ana"}),
            "reason",
        ),
        (
            json!({"sku": "CAP", "location": "shop-1", "delta": -1, "reason": "damage"}),
            "actor",
        ),
        (
            json!({"sku": "CAP", "location": "shop-1", "delta": -1, "reason": "sale", "actor": "ana"}),
            "reason",
        ),
        (
            json!({"sku": "CAP", "location": "shop-1", "reason": "damage", "actor": "ana"}),
            "delta",
        ),
        (
            json!({"sku": "CAP", "location": "shop-1", "set": 1.5, "reason": "stocktake", "actor": "ana"}),
            "set",
        ),
    ] {
        let (status, err) = adjust(&s, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
    }
    let (status, _) = call_with(&s, "POST", "/adjustments", &[], &[], None).await;
    assert_eq!(status, 400);
    assert_eq!(s.available("CAP", "shop-1").await, Some(5));
}

#[tokio::test]
async fn compare_and_set_and_below_zero_are_refused_with_the_current_figure() {
    let s = stocked("CAP", "shop-1", 5).await;
    let (status, body) = adjust(
        &s,
        json!({"sku": "CAP", "location": "shop-1", "set": 7, "expected": 4,
            "reason": "stocktake", "actor": "ana"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str(), body["current"].as_i64()),
        (409, Some("expected_mismatch"), Some(5))
    );
    let (status, body) = adjust(
        &s,
        json!({"sku": "CAP", "location": "shop-1", "delta": -6, "reason": "theft", "actor": "ana"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str(), body["current"].as_i64()),
        (409, Some("below_zero"), Some(5))
    );
    assert_eq!(s.available("CAP", "shop-1").await, Some(5));

    let (status, body) = adjust(
        &s,
        json!({"sku": "CAP", "location": "shop-1", "set": 7, "expected": 5,
            "reason": "stocktake", "actor": "ana", "reference": "https://docs.example/stocktake/42"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["before"].as_i64(),
            body["available"].as_i64(),
            body["delta"].as_i64()
        ),
        (Some(5), Some(7), Some(2))
    );
    assert_eq!(s.available("CAP", "shop-1").await, Some(7));
}

#[tokio::test]
async fn an_idempotency_key_applies_once_and_refuses_a_different_request() {
    let s = stocked("CAP", "shop-1", 5).await;
    let key = [("Idempotency-Key", "adj-0001".to_owned())];
    let body = json!({"sku": "CAP", "location": "shop-1", "delta": -2, "reason": "damage", "actor": "ana"});
    let (status, first) = call_with(&s, "POST", "/adjustments", &[], &key, Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = call_with(&s, "POST", "/adjustments", &[], &key, Some(body)).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(s.available("CAP", "shop-1").await, Some(3));
    let other = json!({"sku": "CAP", "location": "shop-1", "delta": -1, "reason": "damage", "actor": "ana"});
    let (status, err) = call_with(&s, "POST", "/adjustments", &[], &key, Some(other)).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(s.available("CAP", "shop-1").await, Some(3));
}

#[tokio::test]
async fn the_ledger_lists_every_change_newest_first_in_pages() {
    let s = stocked("CAP", "shop-1", 5).await;
    for (i, (delta, reason)) in [(-1, "damage"), (3, "found"), (-2, "theft")].iter().enumerate() {
        let (status, _) = adjust(
            &s,
            json!({"sku": "CAP", "location": "shop-1", "delta": delta, "reason": reason,
                "actor": format!("clerk-{i}"), "note": "counted twice"}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let sale = stockroom::wire::generic::parse_sale(
        br#"{"channel": "pos", "order_id": "T-9", "lines": [{"sku": "CAP", "quantity": 1}]}"#,
        "pos",
        &TestStack::rules(),
    )
    .unwrap();
    s.store()
        .apply_sale(&sale, &stockroom::domain::Actor::system("channel:pos"))
        .await
        .unwrap();

    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("limit", "2")];
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let (status, page) = call(&s, "GET", "/stock/CAP/ledger", &q, None).await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2);
        seen.extend(entries.iter().cloned());
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    let reasons: Vec<&str> = seen.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["sale", "theft", "found", "damage", "stocktake"]);
    let deltas: Vec<i64> = seen.iter().map(|e| e["delta"].as_i64().unwrap()).collect();
    assert_eq!(deltas, [-1, -2, 3, -1, 5]);
    assert_eq!(seen[1]["actor"], "clerk-2");
    assert_eq!(seen[1]["note"], "counted twice");
    assert_eq!(
        (seen[1]["before"].as_i64(), seen[1]["after"].as_i64()),
        (Some(7), Some(5))
    );
    assert_eq!(seen[0]["reference"], "order:pos/T-9");
    assert_eq!(s.available("CAP", "shop-1").await, Some(4));

    assert_eq!(
        call(&s, "GET", "/stock/CAP/ledger", &[("limit", "0")], None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(&s, "GET", "/stock/CAP/ledger", &[("cursor", "bogus")], None)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn concurrent_adjustments_all_land_in_the_ledger() {
    let s = stocked("CAP", "shop-1", 0).await;
    let app = std::sync::Arc::new(s.api_app());
    let calls = (0..20).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let body = serde_json::to_vec(
                &json!({"sku": "CAP", "location": "shop-1", "delta": 1, "reason": "found", "actor": format!("c{i}")}),
            )
            .unwrap();
            read(stock_api::handle(&app, request(url_event("POST", "/adjustments", &[], &[], &body))).await).0
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.available("CAP", "shop-1").await, Some(20));
    let (_, page) = call(&s, "GET", "/stock/CAP/ledger", &[("limit", "200")], None).await;
    let afters: std::collections::BTreeSet<i64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["after"].as_i64())
        .collect();
    // Every adjustment saw a distinct figure: no two raced on the same version.
    assert_eq!(afters, (0..=20).collect());
}

#[tokio::test]
async fn writes_need_a_listed_principal_and_reads_do_not() {
    let s = stocked("CAP", "shop-1", 2).await;
    let mut app = s.api_app();
    app.writers = stockroom::api::Writers::parse("arn:aws:iam::123456789012:role/ops-*");
    let as_caller = |arn: Option<&str>, method: &str, path: &str, body: Value| {
        let body = serde_json::to_vec(&body).unwrap();
        let mut event = url_event(method, path, &[], &[], &body);
        if let Some(arn) = arn {
            event["requestContext"]["authorizer"] = json!({"iam": {"accessKey": "AKIA", "accountId": "123456789012",
                "callerId": "AROA:ops", "userArn": arn, "userId": "AROA:ops"}});
        }
        request(event)
    };
    let adjustment =
        json!({"sku": "CAP", "location": "shop-1", "delta": 1, "reason": "found", "actor": "body-actor"});
    // No identity: no write, whatever the body says.
    let (status, err) =
        read(stock_api::handle(&app, as_caller(None, "POST", "/adjustments", adjustment.clone())).await);
    assert_eq!((status, err["error"].as_str()), (403, Some("forbidden")), "{err}");
    // An identity not on the list.
    let outsider = Some("arn:aws:iam::123456789012:user/intern");
    let (status, _) = read(
        stock_api::handle(
            &app,
            as_caller(outsider, "POST", "/adjustments", adjustment.clone()),
        )
        .await,
    );
    assert_eq!(status, 403);
    let release = json!({"feed": "feeds/acme/stock/a.csv", "etag": "e", "reason": "r"});
    assert_eq!(
        read(stock_api::handle(&app, as_caller(outsider, "POST", "/feeds/release", release)).await).0,
        403
    );
    assert_eq!(s.available("CAP", "shop-1").await, Some(2));
    // Reads stay open.
    assert_eq!(
        read(stock_api::handle(&app, as_caller(None, "GET", "/stock/CAP", Value::Null)).await).0,
        200
    );
    // A listed principal writes, and it is the actor, not the body.
    let ops = "arn:aws:sts::123456789012:assumed-role/ops-admin/maria";
    app.writers = stockroom::api::Writers::parse("arn:aws:sts::123456789012:assumed-role/ops-*");
    let (status, out) =
        read(stock_api::handle(&app, as_caller(Some(ops), "POST", "/adjustments", adjustment)).await);
    assert_eq!(status, 200, "{out}");
    assert_eq!(s.available("CAP", "shop-1").await, Some(3));
    let (_, page) = call(&s, "GET", "/stock/CAP/ledger", &[], None).await;
    assert_eq!(page["entries"][0]["actor"], ops);
}
