//! Supplier feeds against the emulator: S3's own notification to the feed
//! queue, then the import: good rows applied, bad rows reported, the same
//! object twice changing nothing, counts that keep later sales, held files,
//! each supplier confined to its pool and its listed locations, files
//! refused (unknown supplier, over a cap), checkpoints that read on from
//! where they stopped, and a 100k-row file.

use std::time::Duration;

use serde_json::json;
use serde_json::Value;
use stockroom::aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use stockroom::feed::Importer;
use stockroom_tests::{read, request, signed, stack, stocked, url_event, web_sale, Sign, TestStack};
use tokio::time::Instant;

const NOTIFY: Duration = Duration::from_secs(10);

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn event(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

/// Uploads a feed, takes the notification S3 sent, and runs the import on it.
async fn drop_feed(s: &TestStack, key: &str, body: &[u8]) -> (SqsMessage, SqsBatchResponse) {
    drop_feed_to(s, &s.feed_app(), key, body).await
}

/// [`drop_feed`], imported by `app`.
async fn drop_feed_to(
    s: &TestStack,
    app: &Importer,
    key: &str,
    body: &[u8],
) -> (SqsMessage, SqsBatchResponse) {
    s.put_feed(key, body).await;
    let msg = s
        .next_feed_message(NOTIFY)
        .await
        .expect("S3 notified the feed queue");
    let r = supplier_feed::handle(app, event(vec![msg.clone()]), far()).await;
    (msg, r)
}

/// The rejects written next to the feed at `key`, as (line, reason) pairs.
async fn rejects(s: &TestStack, key: &str) -> Vec<(u64, String)> {
    let text = s
        .read_object(&format!("rejects/{key}"))
        .await
        .expect("rejects next to the feed");
    csv_records(&text)
        .into_iter()
        .skip(1)
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect()
}

/// The records of a CSV file (RFC 4180 quoting, as the rejects are written).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

async fn report(s: &TestStack, key: &str) -> Value {
    let text = s
        .read_object(&format!("reports/{key}.json"))
        .await
        .expect("a report next to the feed");
    serde_json::from_str(&text).unwrap()
}

async fn sell(s: &TestStack, order: &str, sku: &str, location: &str, quantity: i64) {
    let body = web_sale(order, sku, Some(location), quantity);
    assert_eq!(
        read(sale_webhook::handle(&s.sale_app(), signed(&body, Sign::Generic)).await).0,
        200
    );
}

/// Waits for the alert of `kind` about `feed` (alerts leave through the
/// table's stream, so the fan-out must be running).
async fn alert(s: &TestStack, kind: &str, feed: &str) -> Value {
    let deadline = Instant::now() + NOTIFY;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for a in s.alerts(1, Duration::from_millis(500)).await {
            if a["kind"] == kind && a["feed"] == feed {
                return a;
            }
            seen.push(a);
        }
    }
    panic!("no {kind} alert for {feed}; saw {seen:?}");
}

/// Ops call the stock API to release a held file.
async fn release(s: &TestStack, body: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    let req = request(url_event("POST", "/feeds/release", &[], &[], &body));
    read(stock_api::handle(&s.api_app(), req).await)
}

fn rfc3339(offset: Duration) -> String {
    at(time::OffsetDateTime::now_utc() - offset)
}

fn at(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn good_rows_are_applied_and_bad_rows_reported_with_their_lines() {
    let s = stocked("JKT-BLUE-M", "warehouse", 2).await;
    let _fanout = s.start_fanout().await;
    let key = "feeds/acme/deliveries/2026-11-22.csv";
    let csv = "SKU,Quantity,Location,Carton\n\
               JKT-BLUE-M,5,,C-1\n\
               CAP-GREEN,0,,C-2\n\
               ,3,,C-3\n\
               HAT-GREY,2,downtown,C-4\n\
               SCARF,ten,,C-5\n\
               JKT-BLUE-M,1,,C-6\n";
    let (_, r) = drop_feed(&s, key, csv.as_bytes()).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(8));
    assert_eq!(s.available("HAT-GREY", "downtown").await, Some(2));
    assert_eq!(s.available("CAP-GREEN", "warehouse").await, None);

    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "applied");
    assert_eq!(
        (
            rep["rows_read"].as_u64(),
            rep["applied"].as_u64(),
            rep["rejected"].as_u64()
        ),
        (Some(6), Some(3), Some(3))
    );
    // Beside the feed, under its own name: rejects/feeds/acme/deliveries/2026-11-22.csv.
    assert_eq!(rep["rejects"], format!("rejects/{key}"));
    let rejects = s.read_object(&format!("rejects/{key}")).await.unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "line,reason,raw");
    assert!(lines[1].starts_with("3,quantity 0 is out of range"), "{rejects}");
    assert!(lines[2].starts_with("4,empty sku,"), "{rejects}");
    assert!(
        lines[3].starts_with("6,\"quantity \"\"ten\"\" is not a whole number\""),
        "{rejects}"
    );

    // Each row is in the ledger with its object and line.
    let ledger = s
        .store()
        .ledger(&stockroom::domain::Sku::parse("JKT-BLUE-M").unwrap(), 10, None)
        .await
        .unwrap();
    let refs: Vec<&str> = ledger
        .entries
        .iter()
        .filter(|e| e.reason == "supplier_delivery")
        .map(|e| e.reference.as_str())
        .collect();
    assert_eq!(refs.len(), 2);
    assert!(refs
        .iter()
        .all(|r| r.starts_with(&format!("s3://{}/{key}?version=", s.feed_bucket()))));
    assert!(refs.iter().any(|r| r.ends_with("#line=2")) && refs.iter().any(|r| r.ends_with("#line=7")));

    // Ops hear about the rejects.
    assert_eq!(alert(&s, "feed_rejects", key).await["rejected"], 3);
}

#[tokio::test]
async fn the_same_file_twice_changes_nothing() {
    let s = stack().await;
    let key = "feeds/acme/deliveries/twice.csv";
    let body = b"sku,quantity\nJKT-BLUE-M,4\n";
    let (msg, _) = drop_feed(&s, key, body).await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(4));
    // The same notification delivered again.
    let r = supplier_feed::handle(&s.feed_app(), event(vec![msg]), far()).await;
    assert!(r.batch_item_failures.is_empty());
    // The same content uploaded again (a new version, the same ETag).
    drop_feed(&s, key, body).await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(4));
}

#[tokio::test]
async fn keys_with_spaces_arrive_encoded_and_are_read() {
    let s = stack().await;
    let key = "feeds/acme/deliveries/Nov 22 delivery (final)+1.jsonl";
    let body = b"{\"sku\": \"JKT-BLUE-M\", \"quantity\": 3}\n";
    s.put_feed(key, body).await;
    let msg = s.next_feed_message(NOTIFY).await.expect("notified");
    let raw: Value = serde_json::from_str(msg.body.as_deref().unwrap()).unwrap();
    let encoded = raw["Records"][0]["s3"]["object"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(encoded, key, "S3 events carry the key URL-encoded");
    supplier_feed::handle(&s.feed_app(), event(vec![msg]), far()).await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    assert_eq!(report(&s, key).await["applied"], 1);
}

#[tokio::test]
async fn counts_keep_sales_made_after_them_and_older_counts_are_stale() {
    let s = stack().await;
    let sku = "JKT-BLUE-M";
    // The supplier's drop-ship pool (location "pool:acme") counted 10 ten minutes ago.
    let first = format!(
        "sku,quantity,as_of\n{sku},10,{}\n",
        rfc3339(Duration::from_secs(600))
    );
    drop_feed(&s, "feeds/acme/stock/0900.csv", first.as_bytes()).await;
    assert_eq!(s.available(sku, "pool:acme").await, Some(10));
    // A sale now, from the pool.
    sell(&s, "pool-1", sku, "pool:acme", 3).await;
    assert_eq!(s.available(sku, "pool:acme").await, Some(7));
    // A count taken a minute ago, before that sale: 8 then, so 5 now.
    let second = format!(
        "sku,quantity,as_of\n{sku},8,{}\n",
        rfc3339(Duration::from_secs(60))
    );
    drop_feed(&s, "feeds/acme/stock/0959.csv", second.as_bytes()).await;
    assert_eq!(s.available(sku, "pool:acme").await, Some(5));
    // A count older than the last one applied is skipped as stale.
    let older = format!(
        "sku,quantity,as_of\n{sku},50,{}\n",
        rfc3339(Duration::from_secs(300))
    );
    drop_feed(&s, "feeds/acme/stock/0955.csv", older.as_bytes()).await;
    assert_eq!(s.available(sku, "pool:acme").await, Some(5));
    assert_eq!(report(&s, "feeds/acme/stock/0955.csv").await["skipped_stale"], 1);
    // A second, different count for the same SKU in one file is rejected. (Counted
    // now: the object's last-modified time, the default, has whole seconds, which
    // could put it before a sale made earlier in the same second.)
    let now = rfc3339(Duration::ZERO);
    let twice = format!("sku,quantity,as_of\n{sku},6,{now}\nCAP,1,{now}\n{sku},9,{now}\n{sku},6,{now}\n");
    drop_feed(&s, "feeds/acme/stock/twice.csv", twice.as_bytes()).await;
    let rep = report(&s, "feeds/acme/stock/twice.csv").await;
    assert_eq!(
        (
            rep["applied"].as_u64(),
            rep["rejected"].as_u64(),
            rep["duplicates"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(s.available(sku, "pool:acme").await, Some(6));
}

#[tokio::test]
async fn empty_or_mass_zeroing_stock_files_are_held_until_ops_release_them() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let mut csv = String::from("sku,quantity\n");
    for i in 0..10 {
        csv.push_str(&format!("SKU-{i},5\n"));
    }
    drop_feed(&s, "feeds/acme/stock/monday.csv", csv.as_bytes()).await;
    assert_eq!(s.available("SKU-3", "pool:acme").await, Some(5));

    // Empty: held.
    drop_feed(&s, "feeds/acme/stock/empty.csv", b"sku,quantity\n").await;
    let rep = report(&s, "feeds/acme/stock/empty.csv").await;
    assert_eq!(rep["status"], "held");
    assert!(rep["reason"].as_str().unwrap().contains("no valid rows"));

    // Zeroing 6 of 10 SKUs: held, nothing changed, ops alerted with the request that releases it.
    let mut zeros = String::from("sku,quantity\n");
    for i in 0..10 {
        zeros.push_str(&format!("SKU-{i},{}\n", if i < 6 { 0 } else { 4 }));
    }
    let key = "feeds/acme/stock/tuesday.csv";
    drop_feed(&s, key, zeros.as_bytes()).await;
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "held", "{rep}");
    assert!(
        rep["reason"].as_str().unwrap().contains("6 of the 10 SKUs"),
        "{rep}"
    );
    let etag = rep["etag"].as_str().unwrap().to_owned();
    let request = json!({"method": "POST", "path": "/feeds/release", "body": {"feed": key, "etag": etag}});
    assert_eq!(rep["release"], request);
    assert_eq!(alert(&s, "feed_held", key).await["release"], request);
    // Ops find it in the list of held files, with the request that releases it.
    let held = || async {
        let req = stockroom_tests::request(url_event("GET", "/feeds/held", &[], &[], b""));
        read(stock_api::handle(&s.api_app(), req).await).1
    };
    let listed = held().await;
    let mine = |list: &Value| {
        list["held"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["feed"] == key)
            .cloned()
    };
    assert_eq!(mine(&listed).expect("listed")["release"], request, "{listed}");
    assert_eq!(s.available("SKU-0", "pool:acme").await, Some(5));
    assert_eq!(s.available("SKU-9", "pool:acme").await, Some(5));

    // Nothing the supplier sets on its upload releases it: the object's
    // metadata naming its ETag, or saying yes, is only metadata.
    for value in [etag.as_str(), "yes"] {
        s.s3()
            .copy_object()
            .bucket(s.feed_bucket())
            .key(key)
            .copy_source(format!("{}/{key}", s.feed_bucket()))
            .metadata("stockroom-release", value)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .send()
            .await
            .unwrap();
        let msg = s.next_feed_message(NOTIFY).await.expect("notified of the copy");
        supplier_feed::handle(&s.feed_app(), event(vec![msg]), far()).await;
        assert_eq!(report(&s, key).await["status"], "held");
        assert_eq!(s.available("SKU-0", "pool:acme").await, Some(5));
    }

    // While it is held, a SKU it counts is sold: the sale was made after
    // the count was taken, so it must survive the release.
    sell(&s, "held-1", "SKU-9", "pool:acme", 1).await;
    assert_eq!(s.available("SKU-9", "pool:acme").await, Some(4));

    // Ops release it, with who and why; asking is refused without a reason,
    // for an unknown file, and for one already imported.
    let ask = |reason: &str| json!({"feed": key, "etag": etag, "actor": "maria@ops", "reason": reason});
    assert_eq!(
        release(&s, json!({"feed": key, "etag": etag, "actor": "maria@ops"}))
            .await
            .0,
        400
    );
    let unknown = json!({"feed": key, "etag": "not-its-etag", "actor": "maria@ops", "reason": "x"});
    assert_eq!(release(&s, unknown).await.0, 404);
    let (status, released) = release(&s, ask("checked with acme: six lines discontinued")).await;
    assert_eq!(status, 202, "{released}");
    assert_eq!(mine(&held().await), None, "released: no longer listed");
    assert_eq!(released["state"]["status"], "released");
    let msg = s
        .next_feed_message(NOTIFY)
        .await
        .expect("the release queued the import");
    supplier_feed::handle(&s.feed_app(), event(vec![msg]), far()).await;
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "applied", "{rep}");
    assert_eq!(rep["released"]["actor"], "maria@ops");
    assert_eq!(
        rep["released"]["reason"],
        "checked with acme: six lines discontinued"
    );
    assert_eq!(s.available("SKU-0", "pool:acme").await, Some(0));
    // Counted 4 as of the upload; the sale made after it stays applied.
    assert_eq!(s.available("SKU-9", "pool:acme").await, Some(3));
    let ledger = s
        .store()
        .ledger(&stockroom::domain::Sku::parse("SKU-0").unwrap(), 10, None)
        .await
        .unwrap();
    let count = ledger
        .entries
        .iter()
        .find(|e| e.reason == "supplier_count" && e.after == Some(0))
        .unwrap();
    assert!(
        count
            .note
            .as_deref()
            .unwrap()
            .contains("released by maria@ops: checked with acme"),
        "{count:?}"
    );
    assert_eq!(release(&s, ask("again")).await.0, 409);
}

#[tokio::test]
async fn a_zero_missing_supplier_has_left_out_skus_set_to_zero() {
    let s = stack().await;
    let mut app = s.feed_app();
    app.settings.zero_missing = vec!["globex".into()];
    let mut csv = String::from("sku,quantity\n");
    for i in 0..10 {
        csv.push_str(&format!("SKU-{i},5\n"));
    }
    let run = |key: &'static str, body: String| {
        let s = &s;
        let app = &app;
        async move {
            s.put_feed(key, body.as_bytes()).await;
            let msg = s.next_feed_message(NOTIFY).await.expect("notified");
            supplier_feed::handle(app, event(vec![msg]), far()).await
        }
    };
    run("feeds/globex/stock/full.csv", csv).await;
    assert_eq!(s.available("SKU-9", "pool:globex").await, Some(5));
    // Nine of ten listed: the tenth is gone from the supplier's pool.
    let mut nine = String::from("sku,quantity\n");
    for i in 0..9 {
        nine.push_str(&format!("SKU-{i},6\n"));
    }
    run("feeds/globex/stock/nine.csv", nine).await;
    assert_eq!(s.available("SKU-0", "pool:globex").await, Some(6));
    assert_eq!(s.available("SKU-9", "pool:globex").await, Some(0));
    assert_eq!(
        report(&s, "feeds/globex/stock/nine.csv").await["zeroed_missing"],
        1
    );
    // Four of ten listed looks truncated for a supplier whose files are complete: held.
    let four = "sku,quantity\nSKU-0,6\nSKU-1,6\nSKU-2,6\nSKU-3,6\n".to_owned();
    run("feeds/globex/stock/four.csv", four).await;
    let rep = report(&s, "feeds/globex/stock/four.csv").await;
    assert_eq!(rep["status"], "held", "{rep}");
    assert_eq!(s.available("SKU-5", "pool:globex").await, Some(6));
}

#[tokio::test]
async fn a_stray_quote_in_a_description_costs_no_following_rows() {
    let s = stack().await;
    let key = "feeds/acme/deliveries/quotes.csv";
    let csv = "sku,quantity,description\n\
               JKT-BLUE-S,1,5\" BLUE jacket\n\
               JKT-BLUE-M,2,plain\n\
               JKT-BLUE-L,3,\"quoted, with a comma\"\n\
               CAP-GREEN,4,the 12\" one\n\
               HAT-GREY,5,\n\
               SCARF,6,last\n";
    drop_feed(&s, key, csv.as_bytes()).await;
    let rep = report(&s, key).await;
    assert_eq!(
        (rep["applied"].as_u64(), rep["rejected"].as_u64()),
        (Some(6), Some(0)),
        "{rep}"
    );
    assert_eq!(s.available("SCARF", "warehouse").await, Some(6));
    // A quoted field never closed is refused on the line it opened; the rest stand.
    let key = "feeds/acme/deliveries/unclosed.csv";
    drop_feed(
        &s,
        key,
        b"sku,quantity,description\nA-1,1,\"never closed\nA-2,2,\nA-3,3,\n",
    )
    .await;
    let rep = report(&s, key).await;
    assert_eq!(
        (rep["applied"].as_u64(), rep["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{rep}"
    );
    let rejects = s.read_object(&format!("rejects/{key}")).await.unwrap();
    assert!(
        rejects.contains("2,a quoted field opened on line 2 is never closed"),
        "{rejects}"
    );
}

#[tokio::test]
async fn a_feed_alert_survives_a_failed_send() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    // Sends to the alert queue fail until ops see the first failure.
    let admin = stockroom_local::faults::Emulator::new(&stockroom_tests::emulator().endpoint);
    let alert_queue = s.alert_queue().rsplit('/').next().unwrap().to_owned();
    let faults = stockroom_local::faults::FaultConfig {
        scope: alert_queue.clone(),
        sqs_send_failure: 1.0,
        ..Default::default()
    };
    admin.set_faults(&faults).await.unwrap();
    let key = "feeds/acme/deliveries/lost-alert.csv";
    drop_feed(&s, key, b"item,count\nJKT,1\n").await;
    assert_eq!(report(&s, key).await["status"], "unreadable");
    let deadline = Instant::now() + NOTIFY;
    while admin
        .injected(&alert_queue)
        .await
        .unwrap()
        .get("sqs_send_failure")
        .copied()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the alert was never sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.clear_faults(&alert_queue).await.unwrap();
    // The alert was recorded with the state: the stream retries it until it is sent.
    assert_eq!(alert(&s, "feed_unreadable", key).await["feed"], key);
}

#[tokio::test]
async fn unreadable_files_are_reported_and_not_retried() {
    let s = stack().await;
    let key = "feeds/acme/deliveries/wrong.csv";
    let (_, r) = drop_feed(&s, key, b"item,count\nJKT,1\n").await;
    assert!(
        r.batch_item_failures.is_empty(),
        "no retry loop for a file that cannot be read"
    );
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "unreadable");
    assert!(rep["reason"].as_str().unwrap().contains("sku and quantity"));

    // A message that is not an S3 event is failed, so the queue dead-letters it.
    let mut garbage = SqsMessage::default();
    garbage.message_id = Some("garbage".into());
    garbage.body = Some("{\"hello\": 1}".into());
    let r = supplier_feed::handle(&s.feed_app(), event(vec![garbage]), far()).await;
    assert_eq!(r.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn a_long_import_checkpoints_and_resumes_where_it_stopped() {
    let s = stack().await;
    let mut csv = String::from("sku,quantity\n");
    let mut bad = Vec::new();
    for i in 0..2_000 {
        csv.push_str(&format!("SKU-{},1\n", i % 50));
        // A bad row now and then: rejects read in every invocation end up in one file.
        if i % 150 == 0 {
            csv.push_str("=HYPERLINK(\"x\"),one\n");
            bad.push(csv.lines().count() as u64);
        }
    }
    let key = "feeds/acme/deliveries/big.csv";
    s.put_feed(key, csv.as_bytes()).await;
    let mut msg = s.next_feed_message(NOTIFY).await.expect("notified");
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations < 100, "never finished");
        // Each invocation gets a moment only: it must stop and hand over.
        let r = supplier_feed::handle(
            &s.feed_app(),
            event(vec![msg]),
            Instant::now() + Duration::from_millis(800),
        )
        .await;
        assert!(r.batch_item_failures.is_empty());
        match s.next_feed_message(Duration::from_millis(300)).await {
            Some(next) => {
                assert!(next.body.as_deref().unwrap().contains("\"continue\""));
                msg = next;
            }
            None => break,
        }
    }
    assert!(
        invocations > 1,
        "the import should have needed more than one invocation"
    );
    let rep = report(&s, key).await;
    let rows = 2_000 + bad.len() as u64;
    assert_eq!(
        (
            rep["applied"].as_u64(),
            rep["rejected"].as_u64(),
            rep["rows_read"].as_u64()
        ),
        (Some(2_000), Some(bad.len() as u64), Some(rows))
    );
    assert_eq!(rep["invocations"].as_u64(), Some(invocations));
    // Each invocation read on from where the last stopped (a ranged GET):
    // between them, the applying passes read every byte of the file once.
    assert_eq!(rep["bytes_read"].as_u64(), Some(csv.len() as u64), "{rep}");
    for i in [0, 17, 49] {
        assert_eq!(s.available(&format!("SKU-{i}"), "warehouse").await, Some(40));
    }
    // Every bad row, in file order, with its own line, whichever invocation
    // read it; the cells cannot start a spreadsheet formula.
    let got = rejects(&s, key).await;
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), bad);
    let text = s.read_object(&format!("rejects/{key}")).await.unwrap();
    assert!(text.contains("\"'=HYPERLINK(\"\"x\"\"),one\""), "{text}");
    // The parts the invocations left are joined and gone.
    let left = s
        .s3()
        .list_objects_v2()
        .bucket(s.feed_bucket())
        .prefix(format!("rejects/{key}.part-"))
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "{:?}", left.contents());
    // The ledger names each row by its own line, as a read from the start would.
    let ledger = s
        .store()
        .ledger(&stockroom::domain::Sku::parse("SKU-49").unwrap(), 50, None)
        .await
        .unwrap();
    let mut lines: Vec<u64> = ledger
        .entries
        .iter()
        .map(|e| e.reference.rsplit_once("#line=").unwrap().1.parse().unwrap())
        .collect();
    lines.sort();
    let expected: Vec<u64> = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "SKU-49,1")
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn an_import_that_needs_too_many_invocations_stops_with_a_report() {
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let mut app = s.feed_app();
    app.settings.caps.max_invocations = 2;
    app.settings.concurrency = 1;
    let mut csv = String::from("sku,quantity\n");
    for i in 0..3_000 {
        csv.push_str(&format!("SKU-{},1\n", i % 50));
    }
    let key = "feeds/acme/deliveries/endless.csv";
    s.put_feed(key, csv.as_bytes()).await;
    let mut msg = s.next_feed_message(NOTIFY).await.expect("notified");
    let mut invocations = 0;
    loop {
        invocations += 1;
        let r = supplier_feed::handle(
            &app,
            event(vec![msg.clone()]),
            Instant::now() + Duration::from_millis(400),
        )
        .await;
        assert!(r.batch_item_failures.is_empty());
        match s.next_feed_message(Duration::from_millis(300)).await {
            Some(next) => msg = next,
            None => break,
        }
    }
    assert_eq!(invocations, 2, "no third invocation is queued");
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "stopped", "{rep}");
    let reason = rep["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "the import needed more than 2 invocations (FEED_MAX_INVOCATIONS): rows before line "
        ),
        "{reason}"
    );
    let applied = rep["applied"].as_u64().unwrap();
    assert!(applied > 0 && applied < 3_000, "{rep}");
    assert_eq!(alert(&s, "feed_stopped", key).await["reason"], reason);
    // What was applied stays; the file is not imported again.
    let units: i64 = {
        let mut sum = 0;
        for i in 0..50 {
            sum += s.available(&format!("SKU-{i}"), "warehouse").await.unwrap_or(0);
        }
        sum
    };
    assert_eq!(units as u64, applied);
    // The last continuation delivered again: a repeat, nothing changes.
    let r = supplier_feed::handle(&app, event(vec![msg]), far()).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(report(&s, key).await["status"], "stopped");
}

#[tokio::test]
async fn a_stock_file_counts_only_its_supplier_s_pool() {
    let s = stocked("JKT-BLUE-M", "downtown", 3).await;
    let _fanout = s.start_fanout().await;
    s.seed("JKT-BLUE-M", "pool:globex", 9).await;
    let key = "feeds/acme/stock/elsewhere.csv";
    let csv = "sku,quantity,location\n\
               JKT-BLUE-M,40,downtown\n\
               JKT-BLUE-M,7,pool:globex\n\
               JKT-BLUE-M,5,\n\
               CAP-GREEN,2,pool:acme\n";
    let (_, r) = drop_feed(&s, key, csv.as_bytes()).await;
    assert!(r.batch_item_failures.is_empty());
    let rep = report(&s, key).await;
    assert_eq!(
        (
            rep["status"].as_str(),
            rep["applied"].as_u64(),
            rep["rejected"].as_u64()
        ),
        (Some("applied"), Some(2), Some(2)),
        "{rep}"
    );
    // Nothing changed at the location or the other supplier's pool.
    assert_eq!(s.available("JKT-BLUE-M", "downtown").await, Some(3));
    assert_eq!(s.available("JKT-BLUE-M", "pool:globex").await, Some(9));
    assert_eq!(s.available("JKT-BLUE-M", "pool:acme").await, Some(5));
    assert_eq!(s.available("CAP-GREEN", "pool:acme").await, Some(2));
    assert_eq!(
        rejects(&s, key).await,
        [
            (
                2,
                "a stock file from acme counts only its own pool pool:acme, not the location downtown"
                    .to_owned()
            ),
            (
                3,
                "a stock file from acme counts only its own pool pool:acme, not the pool pool:globex"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(alert(&s, "feed_rejects", key).await["rejected"], 2);
}

#[tokio::test]
async fn a_delivery_to_a_location_not_listed_for_its_supplier_is_rejected() {
    let s = stocked("JKT-BLUE-M", "uptown", 1).await;
    let key = "feeds/acme/deliveries/uptown.csv";
    let csv = "sku,quantity,location\n\
               JKT-BLUE-M,50,uptown\n\
               JKT-BLUE-M,2,\n\
               JKT-BLUE-M,3,downtown\n\
               JKT-BLUE-M,4,pool:acme\n";
    drop_feed(&s, key, csv.as_bytes()).await;
    let rep = report(&s, key).await;
    assert_eq!(
        (rep["applied"].as_u64(), rep["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{rep}"
    );
    assert_eq!(s.available("JKT-BLUE-M", "uptown").await, Some(1));
    assert_eq!(s.available("JKT-BLUE-M", "pool:acme").await, None);
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(2));
    assert_eq!(s.available("JKT-BLUE-M", "downtown").await, Some(3));
    let why = |l: &str| format!("acme may deliver only to warehouse, downtown (FEED_SUPPLIERS), not to {l}");
    assert_eq!(
        rejects(&s, key).await,
        [(2, why("uptown")), (5, why("pool:acme"))]
    );
    // A supplier that sends stock files only delivers nowhere.
    let key = "feeds/globex/deliveries/any.csv";
    drop_feed(
        &s,
        key,
        b"sku,quantity,location\nJKT-BLUE-M,5,uptown\nJKT-BLUE-M,5,\n",
    )
    .await;
    assert_eq!(report(&s, key).await["applied"], 0);
    assert_eq!(s.available("JKT-BLUE-M", "uptown").await, Some(1));
}

#[tokio::test]
async fn a_supplier_named_like_a_location_cannot_touch_that_location() {
    let s = stocked("JKT-BLUE-M", "warehouse", 3).await;
    // Supplier "warehouse" counts its own pool, not the warehouse.
    let key = "feeds/warehouse/stock/count.csv";
    drop_feed(
        &s,
        key,
        b"sku,quantity,location\nJKT-BLUE-M,40,\nJKT-BLUE-M,41,warehouse\n",
    )
    .await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    assert_eq!(s.available("JKT-BLUE-M", "pool:warehouse").await, Some(40));
    assert_eq!(
        rejects(&s, key).await,
        [(
            3,
            "a stock file from warehouse counts only its own pool pool:warehouse, not the location warehouse"
                .to_owned()
        )]
    );
    // Its deliveries go only where it is listed to deliver (downtown).
    let key = "feeds/warehouse/deliveries/in.csv";
    drop_feed(
        &s,
        key,
        b"sku,quantity,location\nJKT-BLUE-M,50,warehouse\nJKT-BLUE-M,6,\n",
    )
    .await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    assert_eq!(s.available("JKT-BLUE-M", "downtown").await, Some(6));
    assert_eq!(report(&s, key).await["rejected"], 1);
}

#[tokio::test]
async fn a_file_from_a_supplier_not_configured_is_refused_and_changes_nothing() {
    let s = stocked("JKT-BLUE-M", "warehouse", 3).await;
    let _fanout = s.start_fanout().await;
    let key = "feeds/initech/deliveries/x.csv";
    let (msg, r) = drop_feed(&s, key, b"sku,quantity,location\nJKT-BLUE-M,50,warehouse\n").await;
    assert!(r.batch_item_failures.is_empty(), "never retried");
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "refused", "{rep}");
    let reason = "supplier initech is not configured (FEED_SUPPLIERS): no file of theirs is imported";
    assert_eq!(rep["reason"], reason);
    assert_eq!(
        (rep["applied"].as_u64(), rep["rows_read"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    assert_eq!(s.available("JKT-BLUE-M", "pool:initech").await, None);
    let a = alert(&s, "feed_refused", key).await;
    assert_eq!(
        (a["reason"].as_str(), a["supplier"].as_str()),
        (Some(reason), Some("initech"))
    );
    assert_eq!(a["report"], format!("reports/{key}.json"));
    // Delivered again: the same answer, nothing changed.
    let r = supplier_feed::handle(&s.feed_app(), event(vec![msg]), far()).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
}

#[tokio::test]
async fn a_file_over_the_byte_or_row_cap_is_refused_with_a_report() {
    let s = stocked("JKT-BLUE-M", "warehouse", 3).await;
    let mut app = s.feed_app();
    app.settings.caps.max_bytes = 100;
    app.settings.caps.max_rows = 5;
    // Over the byte cap: refused from its head, unread.
    let mut big = String::from("sku,quantity\n");
    while big.len() <= 100 {
        big.push_str("JKT-BLUE-M,1\n");
    }
    let key = "feeds/acme/deliveries/big.csv";
    drop_feed_to(&s, &app, key, big.as_bytes()).await;
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "refused", "{rep}");
    assert_eq!(
        rep["reason"],
        format!(
            "the file is {} bytes, more than FEED_MAX_BYTES (100 bytes)",
            big.len()
        )
    );
    // Over the row cap: refused after its first read, before any chunk is applied.
    let many = "sku,quantity\nA,1\nB,1\nC,1\nD,1\nE,1\nJKT-BLUE-M,1\n";
    assert!(many.len() <= 100);
    let key = "feeds/acme/deliveries/many.csv";
    drop_feed_to(&s, &app, key, many.as_bytes()).await;
    let rep = report(&s, key).await;
    assert_eq!(
        (rep["status"].as_str(), rep["reason"].as_str()),
        (
            Some("refused"),
            Some("the file has more than 5 rows (FEED_MAX_ROWS)")
        ),
        "{rep}"
    );
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(3));
    assert_eq!(s.available("A", "warehouse").await, None);
    // Within both caps: applied.
    let key = "feeds/acme/deliveries/small.csv";
    drop_feed_to(&s, &app, key, b"sku,quantity\nJKT-BLUE-M,1\n").await;
    assert_eq!(s.available("JKT-BLUE-M", "warehouse").await, Some(4));
}

#[tokio::test]
async fn a_released_file_past_a_lowered_row_cap_stops_at_it() {
    let s = stack().await;
    let mut csv = String::from("sku,quantity\n");
    for i in 0..10 {
        csv.push_str(&format!("SKU-{i},5\n"));
    }
    drop_feed(&s, "feeds/acme/stock/monday.csv", csv.as_bytes()).await;
    // Zeroing 6 of 10: held until ops release it.
    let mut zeros = String::from("sku,quantity\n");
    for i in 0..10 {
        zeros.push_str(&format!("SKU-{i},{}\n", if i < 6 { 0 } else { 4 }));
    }
    let key = "feeds/acme/stock/tuesday.csv";
    drop_feed(&s, key, zeros.as_bytes()).await;
    let etag = report(&s, key).await["etag"].as_str().unwrap().to_owned();
    let ask = json!({"feed": key, "etag": etag, "actor": "maria@ops", "reason": "checked"});
    assert_eq!(release(&s, ask).await.0, 202);
    // Meanwhile the row cap was lowered: a released file is not read first,
    // so it is imported up to the cap and stops there.
    let mut app = s.feed_app();
    app.settings.caps.max_rows = 8;
    let msg = s
        .next_feed_message(NOTIFY)
        .await
        .expect("the release queued the import");
    supplier_feed::handle(&app, event(vec![msg]), far()).await;
    let rep = report(&s, key).await;
    assert_eq!(rep["status"], "stopped", "{rep}");
    assert_eq!(
        rep["reason"],
        "the file has more than 8 rows (FEED_MAX_ROWS): its first 8 rows were imported, the rest was not read"
    );
    assert_eq!(rep["applied"], 8);
    assert_eq!(s.available("SKU-7", "pool:acme").await, Some(4));
    assert_eq!(s.available("SKU-8", "pool:acme").await, Some(5));
}

#[tokio::test]
async fn a_count_from_the_future_or_long_ago_is_rejected() {
    let s = stack().await;
    let now = time::OffsetDateTime::now_utc();
    let key = "feeds/acme/stock/dates.csv";
    let csv = format!(
        "sku,quantity,as_of\nA,1,{}\nB,2,{}\nC,3,{}\n",
        at(now + time::Duration::days(365)),
        at(now - time::Duration::days(40)),
        at(now - time::Duration::minutes(1)),
    );
    drop_feed(&s, key, csv.as_bytes()).await;
    assert_eq!(s.available("A", "pool:acme").await, None);
    assert_eq!(s.available("B", "pool:acme").await, None);
    assert_eq!(s.available("C", "pool:acme").await, Some(3));
    let got = rejects(&s, key).await;
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3]);
    assert!(
        got[0]
            .1
            .contains("is more than 5 minutes ahead of the import's clock"),
        "{got:?}"
    );
    assert!(
        got[1]
            .1
            .contains("is more than 31 days before the import's clock"),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_thousand_rows_are_all_applied() {
    let s = stack().await;
    // A delivery by carton: 2,000 SKUs, 50 carton lines each, in SKU order.
    let mut csv = String::with_capacity(2_000_000);
    csv.push_str("sku,quantity,location\n");
    let mut first_sku_units = 0;
    for i in 0..100_000u32 {
        let quantity = 1 + i % 3;
        if i / 50 == 0 {
            first_sku_units += quantity;
        }
        csv.push_str(&format!("SKU-{:05},{quantity},\n", i / 50));
    }
    let key = "feeds/acme/deliveries/100k.csv";
    let started = std::time::Instant::now();
    drop_feed(&s, key, csv.as_bytes()).await;
    let rep = report(&s, key).await;
    eprintln!("100k rows: {} ms", started.elapsed().as_millis());
    assert_eq!(
        (rep["applied"].as_u64(), rep["rejected"].as_u64()),
        (Some(100_000), Some(0))
    );
    assert_eq!(
        s.available("SKU-00000", "warehouse").await,
        Some(i64::from(first_sku_units))
    );
    assert_eq!(
        s.available("SKU-01999", "warehouse").await.map(|a| a > 0),
        Some(true)
    );
}
