//! A mixed workload run with every fault the emulator can inject, then the
//! invariants checked from the ledger, the table's stream, the receipts and
//! the queues: what Stockroom promises whatever real AWS does.
//!
//! The workload: concurrent sales on a few hot SKUs (Shopify and generic,
//! each retried by its "platform" until answered 2xx, some delivered twice
//! as a lost answer makes a platform do), refunds and returns-desk events,
//! audited adjustments with idempotency keys, a delivery and a stock file
//! imported with checkpoints, and the fan-out running throughout on a
//! function that sometimes dies after its work and before its answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stockroom::aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use stockroom::aws_sdk_dynamodb::types::AttributeValue;
use stockroom::channels::{self, Channels};
use stockroom::level::{LedgerEntry, LevelView};
use stockroom_local::faults::{Emulator, FaultConfig};

use crate::{emulator, read, request, signed, url_event, web_sale, Sign, TestStack};

/// How much work: `STOCKROOM_CHAOS_SCALE` multiplies the short run `make test` does.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub sales: usize,
    pub returns: usize,
    pub adjustments: usize,
    pub feed_rows: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl Scale {
    pub fn times(n: usize) -> Self {
        Self {
            sales: 120 * n,
            returns: 24 * n,
            adjustments: 16 * n,
            feed_rows: 200 * n,
            concurrency: 24,
        }
    }

    pub fn from_env() -> Self {
        let n = std::env::var("STOCKROOM_CHAOS_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1);
        Self::times(n)
    }
}

/// The faults every chaos run injects on its stack's resources.
pub fn weather(scope: &str, seed: u64) -> FaultConfig {
    FaultConfig {
        scope: scope.to_owned(),
        seed: Some(seed),
        transaction_conflict: 0.05,
        conflict_window_ms: Some(200),
        capacity: true,
        // Far below DynamoDB's 1,000 a partition: the emulator serves a few
        // hundred requests a second in all, so only a low ceiling is reached.
        write_units_per_second: Some(60.0),
        read_units_per_second: Some(180.0),
        server_error: 0.02,
        lost_response: 0.02,
        sqs_send_failure: 0.15,
        sqs_redelivery: 0.2,
    }
}

const HOT: [&str; 3] = ["HOT-1", "HOT-2", "HOT-3"];
const SITES: [&str; 2] = ["warehouse", "downtown"];
/// A platform gives up on a delivery after this many attempts (then the
/// final pass, with the weather cleared, delivers it: nothing is dropped).
const ATTEMPTS: u32 = 8;

/// What the run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub operations: BTreeMap<&'static str, u64>,
    /// Deliveries a platform (or ops) had to make again, by kind.
    pub retries: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<String, u64>,
    pub invariants: Vec<Invariant>,
    pub took: Duration,
}

/// One invariant: how many things it checked, and what broke it.
#[derive(Debug)]
pub struct Invariant {
    pub name: &'static str,
    pub checked: u64,
    pub violations: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.invariants.iter().map(|i| i.violations.len()).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos run: {:.1} s", self.took.as_secs_f64())?;
        writeln!(f, "| operation | count | redelivered |")?;
        writeln!(f, "| --- | --- | --- |")?;
        for (op, n) in &self.operations {
            writeln!(
                f,
                "| {op} | {n} | {} |",
                self.retries.get(op).copied().unwrap_or(0)
            )?;
        }
        writeln!(f, "| fault injected | count |")?;
        writeln!(f, "| --- | --- |")?;
        for (fault, n) in &self.faults {
            writeln!(f, "| {fault} | {n} |")?;
        }
        writeln!(f, "| invariant | checked | violations |")?;
        writeln!(f, "| --- | --- | --- |")?;
        for i in &self.invariants {
            writeln!(f, "| {} | {} | {} |", i.name, i.checked, i.violations.len())?;
        }
        for i in &self.invariants {
            for v in i.violations.iter().take(10) {
                writeln!(f, "violation ({}): {v}", i.name)?;
            }
        }
        Ok(())
    }
}

/// Counts what the workload did, from many tasks at once.
#[derive(Default)]
struct Tally {
    ops: Mutex<BTreeMap<&'static str, u64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    undelivered: Mutex<Vec<(&'static str, Delivery)>>,
}

impl Tally {
    fn op(&self, kind: &'static str) {
        *self.ops.lock().expect("tally").entry(kind).or_default() += 1;
    }

    fn retry(&self, kind: &'static str) {
        *self.retries.lock().expect("tally").entry(kind).or_default() += 1;
    }
}

/// A request as a platform (or ops) sends it, again and again until answered.
#[derive(Clone)]
enum Delivery {
    Sale(Vec<u8>, bool),
    Return(Vec<u8>, bool),
    Adjust(Vec<u8>, String),
}

impl Delivery {
    fn request(&self) -> lambda_http::Request {
        match self {
            Delivery::Sale(body, shopify) | Delivery::Return(body, shopify) => {
                let topic = if matches!(self, Delivery::Sale(..)) {
                    "orders/create"
                } else {
                    "refunds/create"
                };
                let sign = match shopify {
                    true => Sign::Shopify {
                        topic,
                        webhook_id: "chaos",
                    },
                    false => Sign::Generic,
                };
                signed(body, sign)
            }
            Delivery::Adjust(body, key) => request(url_event(
                "POST",
                "/adjustments",
                &[],
                &[("Idempotency-Key", key.clone())],
                body,
            )),
        }
    }

    async fn send(&self, s: &TestStack) -> u16 {
        let answer = match self {
            Delivery::Sale(..) => sale_webhook::handle(&s.sale_app(), self.request()).await,
            Delivery::Return(..) => return_processor::handle(&s.return_app(), self.request()).await,
            Delivery::Adjust(..) => stock_api::handle(&s.api_app(), self.request()).await,
        };
        read(answer).0
    }
}

/// Delivers until a 2xx; with `echo`, delivers once more after it (a lost
/// answer: the platform retries what already happened).
async fn deliver(s: &TestStack, tally: &Tally, kind: &'static str, d: Delivery, echo: bool) {
    tally.op(kind);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tally.retry(kind);
            tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
        }
        let status = d.send(s).await;
        if status < 300 {
            if echo {
                tally.retry(kind);
                d.send(s).await;
            }
            return;
        }
        assert!(
            status >= 500 || status == 409,
            "{kind}: a {status} is not a transient failure"
        );
    }
    tally.undelivered.lock().expect("tally").push((kind, d));
}

/// Runs the workload under the weather, then checks every invariant.
pub async fn run(s: &TestStack, scale: Scale, seed: u64) -> Report {
    let started = Instant::now();
    let admin = Emulator::new(&emulator().endpoint);
    for sku in HOT {
        for site in SITES {
            s.seed(sku, site, 30).await;
        }
    }
    let fanout = s.start_flaky_fanout(0.15, seed).await;
    admin
        .set_faults(&weather(&s.name, seed))
        .await
        .expect("faults on");
    let tally = Tally::default();
    let mut rng = fastrand::Rng::with_seed(seed);

    // Sales, returns and adjustments, in a random mix, many at once.
    let mut work: Vec<(&'static str, Delivery, bool)> = Vec::new();
    for i in 0..scale.sales {
        let sku = HOT[rng.usize(..HOT.len())];
        let quantity = rng.i64(1..=3);
        let shopify = rng.bool();
        let body = if shopify {
            serde_json::to_vec(
                &json!({"id": 10_000 + i, "source_name": "web", "location_id": 222,
                "line_items": [{"sku": sku, "quantity": quantity}]}),
            )
        } else {
            Ok(web_sale(
                &format!("C-{i}"),
                sku,
                Some(SITES[rng.usize(..2)]),
                quantity,
            ))
        };
        work.push((
            "sale",
            Delivery::Sale(body.expect("json"), shopify),
            rng.f64() < 0.1,
        ));
    }
    for i in 0..scale.returns {
        let sku = HOT[rng.usize(..HOT.len())];
        let body = if rng.bool() {
            json!({"id": 50_000 + i, "order_id": 10_000 + rng.usize(..scale.sales), "refund_line_items": [
                {"quantity": 1, "restock_type": if rng.bool() { "return" } else { "cancel" }, "location_id": 222,
                 "line_item": {"sku": sku}}]})
        } else {
            json!({"return_id": format!("R-{i}"), "source": "returns-desk", "location": "downtown", "lines": [
                {"sku": sku, "quantity": 1, "condition": if rng.f64() < 0.7 { "resellable" } else { "damaged" }}]})
        };
        let shopify = body.get("refund_line_items").is_some();
        let body = serde_json::to_vec(&body).expect("json");
        work.push(("return", Delivery::Return(body, shopify), rng.f64() < 0.1));
    }
    for i in 0..scale.adjustments {
        let (sku, site) = (HOT[rng.usize(..HOT.len())], SITES[rng.usize(..2)]);
        let change = if rng.bool() {
            json!({"delta": rng.i64(1..=5)})
        } else {
            json!({"set": rng.i64(0..=20)})
        };
        let mut body = json!({"sku": sku, "location": site, "reason": "stocktake", "actor": "chaos@ops"});
        body.as_object_mut()
            .expect("object")
            .extend(change.as_object().expect("object").clone());
        let body = serde_json::to_vec(&body).expect("json");
        work.push((
            "adjustment",
            Delivery::Adjust(body, format!("chaos-{i}")),
            rng.f64() < 0.1,
        ));
    }
    rng.shuffle(&mut work);
    let feeds = import_feeds(s, scale, &tally);
    let deliveries = futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
        futures::stream::iter(
            work.into_iter()
                .map(|(kind, d, echo)| deliver(s, &tally, kind, d, echo)),
        ),
        scale.concurrency,
    ));
    // When the deliveries are done the weather clears; a feed import still
    // under way finishes in calm weather (as it would after a storm).
    let calm = async {
        deliveries.await;
        let injected = admin.injected(&s.name).await.unwrap_or_default();
        admin.clear_faults(&s.name).await.expect("faults off");
        injected
    };
    let (injected, feed_keys) = futures::join!(calm, feeds);
    let mut report = Report {
        faults: injected.into_iter().collect(),
        ..Report::default()
    };
    // What a platform gave up on during the storm, it delivers again now.
    let undelivered = std::mem::take(&mut *tally.undelivered.lock().expect("tally"));
    let mut dropped = Vec::new();
    for (kind, d) in undelivered {
        tally.retry(kind);
        if d.send(s).await >= 300 {
            dropped.push(format!("a {kind} was never answered 2xx"));
        }
    }
    report
        .faults
        .insert("instance died after its work".into(), u64::from(fanout.deaths()));
    report.operations = tally.ops.lock().expect("tally").clone();
    report.retries = tally.retries.lock().expect("tally").clone();
    report.invariants = check(s, &feed_keys, dropped).await;
    drop(fanout);
    report.took = started.elapsed();
    report
}

/// Imports a delivery and a stock file, each in invocations so short that
/// they checkpoint and continue; a failed invocation is received again.
async fn import_feeds(s: &TestStack, scale: Scale, tally: &Tally) -> Vec<String> {
    let mut keys = Vec::new();
    let mut deliveries = String::from("sku,quantity,location\n");
    let mut stock = String::from("sku,quantity,location\n");
    for i in 0..scale.feed_rows {
        let (sku, site) = (HOT[i % HOT.len()], SITES[(i / HOT.len()) % 2]);
        deliveries.push_str(&format!("{sku},{},{site}\n", 1 + i % 4));
        stock.push_str(&format!("FEED-{i},{},pool:acme\n", 10 + i % 7));
    }
    for (key, body) in [
        ("feeds/acme/deliveries/chaos.csv", deliveries),
        ("feeds/acme/stock/chaos.csv", stock),
    ] {
        s.put_feed(key, body.as_bytes()).await;
        keys.push(key.to_owned());
        tally.op("feed file");
    }
    let mut app = s.feed_app();
    // One chunk at a time, so a short first invocation stops part-way.
    app.settings.concurrency = 1;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut done = HashSet::new();
    while done.len() < keys.len() && Instant::now() < deadline {
        let Some(msg) = s.next_feed_message(Duration::from_secs(2)).await else {
            for key in &keys {
                if s.read_object(&format!("reports/{key}.json")).await.is_some() {
                    done.insert(key.clone());
                }
            }
            continue;
        };
        // A file's first invocation has little time: it checkpoints part-way
        // and continues in the next, which has all it needs.
        let first = !msg.body.as_deref().unwrap_or_default().contains("\"continue\"");
        let time = Duration::from_millis(if first { 300 } else { 30_000 });
        loop {
            let deadline = tokio::time::Instant::now() + time;
            let answer = supplier_feed::handle(&app, event(vec![msg.clone()]), deadline).await;
            tally.op("feed invocation");
            if answer.batch_item_failures.is_empty() {
                break;
            }
            tally.retry("feed invocation");
        }
    }
    keys
}

fn event(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

/// Every item of the table, by a scan.
async fn items(s: &TestStack) -> Vec<HashMap<String, AttributeValue>> {
    s.ddb
        .scan()
        .table_name(s.table())
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("scan")
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Every image a level ever had, in stream order: (sku, location) → available figures.
async fn level_history(s: &TestStack) -> HashMap<(String, String), Vec<i64>> {
    let images = stockroom_local::streams::all_new_images(&s.sdk, s.table())
        .await
        .expect("the table's stream");
    let mut out: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for image in images {
        if image.get("kind").and_then(|k| k["S"].as_str()) != Some("level") {
            continue;
        }
        let field = |name: &str| image.get(name).cloned().unwrap_or(Value::Null);
        let (sku, location) = (
            field("sku")["S"].as_str().map(str::to_owned),
            field("location")["S"].as_str().map(str::to_owned),
        );
        let available = field("available")["N"].as_str().and_then(|n| n.parse().ok());
        if let (Some(sku), Some(location), Some(available)) = (sku, location, available) {
            out.entry((sku, location)).or_default().push(available);
        }
    }
    out
}

/// Checks every invariant against what the table, its stream and the queues hold.
async fn check(s: &TestStack, feed_keys: &[String], dropped: Vec<String>) -> Vec<Invariant> {
    let all = items(s).await;
    let levels: Vec<LevelView> = all
        .iter()
        .filter(|i| text(i, "kind") == "level")
        .map(|i| serde_dynamo::from_item(i.clone()).expect("a level"))
        .collect();
    let level_skus: Vec<String> = all
        .iter()
        .filter(|i| text(i, "kind") == "level")
        .map(|i| text(i, "sku"))
        .collect();
    let ledger: Vec<LedgerEntry> = all
        .iter()
        .filter(|i| text(i, "kind") == "ledger")
        .map(|i| serde_dynamo::from_item(i.clone()).expect("a ledger entry"))
        .collect();
    let mut out = Vec::new();

    // 1. Each level is its start (nothing) plus the sum of its ledger's deltas.
    let mut sums: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for e in &ledger {
        let sum = sums.entry((e.sku.clone(), e.location.clone())).or_default();
        sum.0 += e.delta;
        sum.1 += e.damaged.unwrap_or(0);
    }
    let mut i = Invariant {
        name: "level = sum of its ledger",
        checked: 0,
        violations: Vec::new(),
    };
    for (l, sku) in levels.iter().zip(&level_skus) {
        i.checked += 1;
        let (available, damaged) = sums
            .get(&(sku.clone(), l.location.clone()))
            .copied()
            .unwrap_or_default();
        if (available, damaged) != (l.available, l.damaged) {
            i.violations.push(format!(
                "{sku}@{}: level {}/{} damaged, ledger {available}/{damaged}",
                l.location, l.available, l.damaged
            ));
        }
    }
    out.push(i);

    // 2. No reference has two effects on a level.
    let mut seen: HashMap<(String, String, String), u32> = HashMap::new();
    for e in &ledger {
        *seen
            .entry((e.reference.clone(), e.sku.clone(), e.location.clone()))
            .or_default() += 1;
    }
    out.push(Invariant {
        name: "one effect per reference",
        checked: seen.len() as u64,
        violations: seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|((r, sku, loc), n)| format!("{r} moved {sku}@{loc} {n} times"))
            .collect(),
    });

    // 3. No level ever went below zero: every state the stream saw.
    let history = level_history(s).await;
    out.push(Invariant {
        name: "never below zero",
        checked: history.values().map(|h| h.len() as u64).sum(),
        violations: history
            .iter()
            .filter_map(|((sku, loc), h)| {
                h.iter()
                    .min()
                    .filter(|m| **m < 0)
                    .map(|m| format!("{sku}@{loc} went to {m}"))
            })
            .collect(),
    });

    // 4. Every oversold receipt is alerted exactly once (copies of one alert share its id).
    let oversold: HashSet<String> = all
        .iter()
        .filter(|i| text(i, "kind") == "receipt" && text(i, "status") == "oversold")
        .map(|i| {
            let part = stockroom::keys::parse_part(&text(i, "sk")).unwrap_or(0);
            format!("oversell:{}/{}#{part}", text(i, "source"), text(i, "order"))
        })
        .collect();
    let alerts = s.alerts(0, Duration::from_secs(3)).await;
    let alerted: HashSet<String> = alerts
        .iter()
        .filter(|a| a["kind"] == "oversell")
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    let mut i = Invariant {
        name: "one alert per oversold receipt",
        checked: oversold.len() as u64,
        violations: Vec::new(),
    };
    i.violations.extend(
        oversold
            .difference(&alerted)
            .map(|id| format!("{id} never alerted")),
    );
    i.violations.extend(
        alerted
            .difference(&oversold)
            .map(|id| format!("{id} alerted with no receipt")),
    );
    out.push(i);

    // 5. Every channel's last message is its figure for the final state.
    out.push(channels_converge(s, &levels, &level_skus).await);

    // 6. Nothing that failed is missing: every delivery answered in the end,
    //    every feed imported, and what the fan-out gave up on is in its DLQ.
    let mut i = Invariant {
        name: "nothing lost",
        checked: feed_keys.len() as u64,
        violations: dropped,
    };
    for key in feed_keys {
        // Imported whole: every row applied (a file refused, stopped or
        // with rejected rows is a violation: the workload's rows are all good).
        let report = s.read_object(&format!("reports/{key}.json")).await;
        let parsed: Option<Value> = report.as_deref().and_then(|r| serde_json::from_str(r).ok());
        match parsed {
            Some(r) if r["status"] == "applied" && r["rejected"] == 0 => {}
            _ => i.violations.push(format!("{key} not imported whole: {report:?}")),
        }
    }
    let parked = s.drain(&s.stack.queue_urls["FanoutDLQ"]).await;
    i.checked += 1;
    if !parked.is_empty() && out[4].violations.is_empty() {
        i.violations.push(format!(
            "{} fan-out failures parked yet every channel converged: {parked:?}",
            parked.len()
        ));
    }
    out.push(i);
    out
}

/// Drains the channel queues until every channel's newest message for each
/// SKU carries its figure for the final state, or time runs out.
async fn channels_converge(s: &TestStack, levels: &[LevelView], level_skus: &[String]) -> Invariant {
    let env = s.template.function_env("StockFanoutFunction", &s.stack);
    let chans = Channels::parse(&env["CHANNELS"]).expect("CHANNELS");
    let mut by_sku: HashMap<String, Vec<LevelView>> = HashMap::new();
    for (l, sku) in levels.iter().zip(level_skus) {
        by_sku.entry(sku.clone()).or_default().push(l.clone());
    }
    // A change that leaves a channel's figure as it was sends it nothing,
    // so its newest message carries the final figure, not always the final
    // sequence (which is never lower than the newest message's).
    let mut expected: HashMap<(String, String), (i64, u64)> = HashMap::new();
    for (sku, ls) in &by_sku {
        for c in chans.iter() {
            if ls.iter().any(|l| c.sells_from(&l.location)) {
                expected.insert(
                    (c.name.clone(), sku.clone()),
                    (c.figure(ls), channels::sequence(ls)),
                );
            }
        }
    }
    let mut last: HashMap<(String, String), (i64, u64)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let wrong = |last: &HashMap<(String, String), (i64, u64)>| -> Vec<String> {
        expected
            .iter()
            .filter(|(k, (figure, sequence))| {
                last.get(*k)
                    .is_none_or(|(heard, heard_sequence)| heard != figure || heard_sequence > sequence)
            })
            .map(|((c, sku), want)| {
                format!(
                    "{c} {sku}: last heard {:?}, final {want:?}",
                    last.get(&(c.clone(), sku.clone()))
                )
            })
            .collect()
    };
    loop {
        for c in chans.iter() {
            for m in s.channel_messages(&c.name, 0, Duration::from_millis(200)).await {
                let key = (c.name.clone(), m["sku"].as_str().unwrap_or_default().to_owned());
                let got = (
                    m["available"].as_i64().unwrap_or(-1),
                    m["sequence"].as_u64().unwrap_or(0),
                );
                if last.get(&key).is_none_or(|(_, seq)| got.1 > *seq) {
                    last.insert(key, got);
                }
            }
        }
        let violations = wrong(&last);
        if violations.is_empty() || Instant::now() > deadline {
            return Invariant {
                name: "channels hear the final figure",
                checked: expected.len() as u64,
                violations,
            };
        }
    }
}
