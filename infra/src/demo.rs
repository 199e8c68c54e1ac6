//! `make demo`: the story Stockroom exists for, told against the running
//! local stack. The last blue jacket sells online and in the shop at the
//! same moment: one sale is covered, the other is flagged as an oversell,
//! and the master count stops at 0. Then returns bring it back on sale.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use tokio::time::Instant;

use serde_json::{json, Value};
use stockroom::signature::{sign_generic_now, sign_shopify};

use crate::http::{HttpClient, HttpError, Reply};
use crate::shopify::{local_base, Standin, StandinError};

const SKU: &str = "JKT-BLUE-M";
/// The demo's Shopify store, as `infra/local.env`'s secrets name it.
const SHOP: &str = "stockroom-demo.myshopify.com";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Standin(#[from] StandinError),
    #[error("{0} is not set in infra/local.env")]
    Missing(&'static str),
    #[error("infra/local.env's WEBHOOK_SECRET lists no sender {0}")]
    NoSender(String),
    #[error("unexpected answer from {what}: {status} {body}")]
    Unexpected { what: String, status: u16, body: String },
}

/// A channel whose figure a connector (channel-sync) sets on a Shopify shop.
#[derive(Debug, Clone)]
pub struct ShopChannel {
    pub channel: String,
    pub shop: String,
    /// The Shopify location the figure goes to.
    pub location_id: i64,
    /// What an edit made in the shop's admin gets: `revert` or `adopt`.
    pub policy: String,
    /// The channel's queue: channel-sync's to consume, the demo only watches it drain.
    pub queue: String,
}

/// How a shop's figure settled after a step.
struct ShopFigure {
    available: Option<i64>,
    /// When it last moved, counted from the step's start (None: it did not move).
    moved: Option<Duration>,
}

pub struct Demo {
    http: HttpClient,
    base: String,
    /// Each sender's secret, by its name.
    secrets: HashMap<String, String>,
    shop_location_id: String,
    alert_queue: Option<String>,
    sqs: aws_sdk_sqs::Client,
    /// (channel, queue URL), in configuration order.
    channel_queues: Vec<(String, String)>,
    /// The feed bucket, where the supplier drops files.
    feed_bucket: Option<String>,
    s3: aws_sdk_s3::Client,
    /// What each channel was last told about the SKU: (sequence, available).
    figures: std::sync::Mutex<HashMap<String, (u64, i64)>>,
    /// The channels with a connector, and the local Shopify stand-in they sell on.
    shop_channels: Vec<ShopChannel>,
    standin: Option<Standin>,
    /// Every channel, in configuration order (how the figures are printed).
    order: Vec<String>,
    /// How long an edit seen in a shop waits before it is judged (`CHANNEL_EDIT_GRACE_SECONDS`).
    grace: Duration,
}

fn expect(what: &str, reply: &Reply, ok: &[u16]) -> Result<Value, DemoError> {
    if ok.contains(&reply.status) {
        Ok(reply.json())
    } else {
        Err(DemoError::Unexpected {
            what: what.into(),
            status: reply.status,
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        })
    }
}

impl Demo {
    /// The secret of one sender.
    fn secret(&self, name: &str) -> Result<&[u8], DemoError> {
        self.secrets
            .get(name)
            .map(|s| s.as_bytes())
            .ok_or_else(|| DemoError::NoSender(name.to_owned()))
    }

    pub fn new(
        env: &HashMap<String, String>,
        base: &str,
        sdk: &aws_config::SdkConfig,
        channel_queues: Vec<(String, String)>,
        feed_bucket: Option<String>,
    ) -> Result<Self, DemoError> {
        // Each sender signs with its own secret: the shop, the till, the desk.
        let secrets: HashMap<String, String> = env
            .get("WEBHOOK_SECRET")
            .and_then(|raw| serde_json::from_str::<HashMap<String, serde_json::Value>>(raw).ok())
            .map(|senders| {
                senders
                    .into_iter()
                    .filter_map(|(name, entry)| Some((name, entry["secret"].as_str()?.to_owned())))
                    .collect()
            })
            .ok_or(DemoError::Missing("WEBHOOK_SECRET (a JSON object of senders)"))?;
        // The Shopify location id the local config maps to the downtown shop.
        let shop_location_id = env
            .get("SHOPIFY_LOCATIONS")
            .and_then(|m| {
                m.split(',')
                    .filter_map(|p| p.split_once('='))
                    .find(|(_, loc)| loc.trim() == "downtown")
                    .map(|(id, _)| id.trim().to_owned())
            })
            .ok_or(DemoError::Missing("SHOPIFY_LOCATIONS (with an id for downtown)"))?;
        Ok(Self {
            http: HttpClient::new(Duration::from_secs(60)),
            base: base.trim_end_matches('/').to_owned(),
            secrets,
            shop_location_id,
            alert_queue: env.get("ALERT_QUEUE_URL").cloned(),
            sqs: aws_sdk_sqs::Client::new(sdk),
            channel_queues,
            feed_bucket,
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(true)
                    .build(),
            ),
            figures: std::sync::Mutex::new(HashMap::new()),
            shop_channels: Vec::new(),
            standin: None,
            order: Vec::new(),
            grace: Duration::from_secs(60),
        })
    }

    /// The channels with a connector: their figures are read from the local
    /// Shopify stand-in (`SHOPIFY_LOCAL_PORT`), not from their queues, which
    /// channel-sync consumes. `order`: every channel, as configured.
    pub fn with_shops(
        mut self,
        env: &HashMap<String, String>,
        shop_channels: Vec<ShopChannel>,
        order: Vec<String>,
    ) -> Result<Self, DemoError> {
        if !shop_channels.is_empty() {
            self.standin = Some(Standin::new(local_base(env)?));
        }
        self.grace = env
            .get("CHANNEL_EDIT_GRACE_SECONDS")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(self.grace, Duration::from_secs);
        self.shop_channels = shop_channels;
        self.order = order;
        Ok(self)
    }

    fn url(&self, function: &str, path: &str) -> String {
        format!("{}/lambda-url/{function}{path}", self.base)
    }

    /// Calls the stock API and expects a 200 answer.
    async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, DemoError> {
        let (headers, bytes) = match body {
            Some(b) => (
                vec![("content-type", "application/json".to_owned())],
                serde_json::to_vec(b).unwrap_or_default(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let r = self
            .http
            .send(method, &self.url("stock-api", path), &headers, bytes)
            .await?;
        expect(&format!("{method} {path}"), &r, &[200])
    }

    pub async fn run(&self) -> Result<(), DemoError> {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        println!("== Stockroom demo: the last blue jacket ==\n");

        // Whatever earlier runs left on the channel queues is not this story's.
        self.channel_update(Duration::from_millis(500)).await;
        self.figures.lock().map(|mut f| f.clear()).unwrap_or(());
        self.stock_the_shops().await?;
        let step = Instant::now();
        println!(
            "1. Morning counts: one blue jacket ({SKU}) left on the rack downtown, three in the warehouse."
        );
        for (location, count, actor) in [
            ("downtown", 1, "maria@downtown"),
            ("warehouse", 3, "sam@warehouse"),
        ] {
            let adj = json!({"sku": SKU, "location": location, "set": count, "reason": "stocktake",
                "actor": actor, "note": "morning count", "reference": format!("urn:stocktake:{run}:{location}")});
            let a = self.api("POST", "/adjustments", Some(&adj)).await?;
            println!(
                "   stock API: {location} {} -> {} available (version {}), logged as a stocktake by {actor}",
                a["before"], a["available"], a["version"]
            );
        }
        let _ = self.drain_alerts().await;
        self.print_channels(
            "web sells the warehouse, pos the downtown shop, marketplace the warehouse less a buffer of 2",
            step,
        )
        .await;

        let step = Instant::now();
        println!("2. At the same moment, a shopper orders it online and a customer buys it at the till.");
        let online_id = run * 10 + 1;
        let online = serde_json::to_vec(&json!({
            "id": online_id, "name": format!("#{online_id}"), "source_name": "web",
            "location_id": self.shop_location_id.parse::<u64>().unwrap_or(0),
            "line_items": [{"sku": SKU, "title": "Blue jacket, M", "quantity": 1}]
        }))
        .unwrap_or_default();
        let till = serde_json::to_vec(&json!({
            "channel": "pos", "order_id": format!("till-{run}"), "location": "downtown",
            "lines": [{"sku": SKU, "quantity": 1}]
        }))
        .unwrap_or_default();
        let shopify_headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-shopify-topic", "orders/create".to_owned()),
            ("x-shopify-shop-domain", SHOP.to_owned()),
            ("x-shopify-webhook-id", format!("demo-{run}")),
            ("x-shopify-hmac-sha256", sign_shopify(self.secret(SHOP)?, &online)),
        ];
        let pos_headers = vec![
            ("content-type", "application/json".to_owned()),
            (
                "x-stockroom-signature",
                sign_generic_now(self.secret("channel:pos")?, &till),
            ),
        ];
        let url = self.url("sale-webhook", "/");
        let (web, pos) = tokio::join!(
            self.http.send("POST", &url, &shopify_headers, online.clone()),
            self.http.send("POST", &url, &pos_headers, till),
        );
        let web = expect("online order", &web?, &[200])?;
        let pos = expect("till sale", &pos?, &[200])?;
        for (who, v) in [("online order (Shopify)", &web), ("till sale (POS)      ", &pos)] {
            let line = &v["lines"][0];
            let verdict = match v["status"].as_str() {
                Some("applied") => "covered by the master count".to_owned(),
                Some("oversold") => format!("OVERSOLD: {} short, ops alerted", line["short"]),
                other => format!("{other:?}"),
            };
            println!(
                "   {who}: asked {}, took {} -> {verdict}",
                line["requested"], line["taken"]
            );
        }

        self.print_channels("only pos sells from downtown, so only pos hears of it", step)
            .await;

        println!("3. Shopify delivers the online order's webhook again (it delivers at least once).");
        let again = self.http.send("POST", &url, &shopify_headers, online).await?;
        let again = expect("redelivery", &again, &[200])?;
        println!("   answer: {} - nothing changed\n", again["status"]);

        println!("4. The master count, which every channel now reads:");
        self.print_stock().await?;

        // stock-fanout raises the alert from the oversold receipt on the stream.
        let oversold = [&web, &pos].iter().filter(|v| v["status"] == "oversold").count();
        let alerts = self.wait_for_alerts(oversold, Duration::from_secs(10)).await;
        println!("5. Ops alert queue: {} oversell alert(s)", alerts.len());
        for a in &alerts {
            println!(
                "   order {} from {} ({}): {} unit(s) short",
                a["order"], a["source"], a["channel"], a["short_units"]
            );
        }
        println!();

        let step = Instant::now();
        println!("6. Returns come back.");
        let web_covered = web["status"] == "applied";
        let restock_type = if web_covered { "return" } else { "cancel" };
        let refund = serde_json::to_vec(&json!({
            "id": online_id * 10, "order_id": online_id, "note": "demo",
            "refund_line_items": [{"quantity": 1, "restock_type": restock_type,
                "location_id": self.shop_location_id.parse::<u64>().unwrap_or(0),
                "line_item": {"sku": SKU, "quantity": 1}}]
        }))
        .unwrap_or_default();
        let refund_headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-shopify-topic", "refunds/create".to_owned()),
            ("x-shopify-shop-domain", SHOP.to_owned()),
            ("x-shopify-hmac-sha256", sign_shopify(self.secret(SHOP)?, &refund)),
        ];
        let url = self.url("return-processor", "/");
        let r = self.http.send("POST", &url, &refund_headers, refund).await?;
        let r = expect("Shopify refund", &r, &[200])?;
        let why = if web_covered {
            "the online shopper sent the jacket back"
        } else {
            "the oversold online order is cancelled"
        };
        println!(
            "   Shopify refund ({restock_type}), {why}: {} -> restocked {}{}",
            r["status"],
            r["lines"][0]["restocked"],
            r["lines"][0]["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let desk = serde_json::to_vec(&json!({
            "return_id": format!("RMA-{run}"), "source": "returns-desk", "location": "downtown",
            "lines": [{"sku": SKU, "quantity": 1, "condition": "resellable"},
                      {"sku": SKU, "quantity": 1, "condition": "damaged"}]
        }))
        .unwrap_or_default();
        let desk_headers = vec![
            ("content-type", "application/json".to_owned()),
            (
                "x-stockroom-signature",
                sign_generic_now(self.secret("source:returns-desk")?, &desk),
            ),
        ];
        let d = self.http.send("POST", &url, &desk_headers, desk).await?;
        let d = expect("returns desk", &d, &[200])?;
        println!(
            "   Returns desk downtown, last week's two jackets (one with a torn sleeve): {} -> restocked {}, damaged {}",
            d["status"], d["lines"][0]["restocked"], d["lines"][0]["damaged"]
        );
        println!("   The master count again: back on sale, the damaged one kept out of it.");
        self.print_stock().await?;
        self.print_channels("the shop's till can sell them again", step)
            .await;

        self.supplier_delivery(run).await?;

        println!("8. The ledger for {SKU}, newest first:");
        let ledger = self
            .api("GET", &format!("/stock/{SKU}/ledger?limit=8"), None)
            .await?;
        println!(
            "   {:<27} {:<9} {:>5}  {:<10} {:<48} actor",
            "at", "location", "delta", "reason", "reference"
        );
        for e in ledger["entries"].as_array().into_iter().flatten() {
            let extra = match (e["short"].as_i64(), e["damaged"].as_i64()) {
                (Some(s), _) if s > 0 => format!("  (short {s})"),
                (_, Some(d)) if d > 0 => format!("  (damaged +{d})"),
                _ => String::new(),
            };
            println!(
                "   {:<27} {:<9} {:>5}  {:<10} {:<48} {}{extra}",
                e["at"].as_str().unwrap_or(""),
                e["location"].as_str().unwrap_or(""),
                e["delta"].as_i64().unwrap_or(0),
                e["reason"].as_str().unwrap_or(""),
                e["reference"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
            );
        }
        println!();
        let edited = self.shop_edit().await?;
        println!(
            "One sale covered, one flagged as an oversell, the count at 0 and never below; \
             returns back on sale the moment they were processed; \
             a supplier delivery applied row by row, its bad row reported; every channel told within seconds{}.",
            if edited {
                "; an edit made in Shopify's admin recorded in the ledger and set back to the master's figure"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// The supplier drops a delivery file with one bad row into the feed bucket.
    async fn supplier_delivery(&self, run: u64) -> Result<(), DemoError> {
        let Some(bucket) = &self.feed_bucket else {
            return Ok(());
        };
        let step = Instant::now();
        println!("7. The supplier drops its delivery note into the feed bucket; one row has a typo.");
        let key = format!("feeds/acme/deliveries/delivery {run}.csv");
        let csv = format!("sku,quantity,location,carton\n{SKU},6,warehouse,C-1\nCAP-GREEN,4,warehouse,C-2\n{SKU},six,warehouse,C-3\n");
        println!("   s3://{bucket}/{key}:");
        for line in csv.lines() {
            println!("     {line}");
        }
        self.s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(csv.into_bytes().into())
            .send()
            .await
            .map_err(|e| DemoError::Unexpected {
                what: "upload the feed".into(),
                status: 0,
                body: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
        // S3 -> SQS -> supplier-feed (run by the trigger runner); the report appears beside the feed.
        let report_key = format!("reports/{key}.json");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let report: Value = loop {
            if let Some(bytes) = self.read_object(bucket, &report_key).await {
                break serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DemoError::Unexpected {
                    what: "the feed report".into(),
                    status: 0,
                    body: format!("no s3://{bucket}/{report_key} after 60 s"),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        println!(
            "   report: {} rows read, {} applied, {} rejected -> s3://{bucket}/{}",
            report["rows_read"], report["applied"], report["rejected"], report_key
        );
        if let Some(rejects) = report["rejects"].as_str() {
            if let Some(bytes) = self.read_object(bucket, rejects).await {
                for line in String::from_utf8_lossy(&bytes).lines().skip(1) {
                    println!("   rejected: {line}");
                }
            }
        }
        let alerts = self.drain_alerts().await;
        for a in alerts.iter().filter(|a| a["kind"] == "feed_rejects") {
            println!(
                "   ops alerted: {} row(s) rejected in {}",
                a["rejected"], a["feed"]
            );
        }
        self.print_stock().await?;
        self.print_channels("the warehouse delivery reaches web and marketplace", step)
            .await;
        Ok(())
    }

    /// Waits for the fan-out to deliver (and each connector to set its shop's
    /// figure), then prints each channel's figure. `step`: when the step began.
    async fn print_channels(&self, why: &str, step: Instant) {
        if self.order.is_empty() {
            return;
        }
        let (heard, shops) = tokio::join!(
            self.channel_update(Duration::from_secs(3)),
            self.shop_figures(step)
        );
        let figures = self.figures.lock().map(|f| f.clone()).unwrap_or_default();
        let shown: Vec<String> = self
            .order
            .iter()
            .map(|c| match shops.get(c) {
                Some(ShopFigure {
                    available: Some(a), ..
                }) => format!("{c} {a} (in Shopify)"),
                Some(_) => format!("{c} - (not in Shopify)"),
                None => match figures.get(c) {
                    Some((_, a)) => format!("{c} {a}"),
                    None => format!("{c} -"),
                },
            })
            .collect();
        println!(
            "   channels now sell: {}  ({heard} message(s); {why})",
            shown.join(" · ")
        );
        for s in &self.shop_channels {
            if let Some(ShopFigure {
                available: Some(a),
                moved: Some(after),
            }) = shops.get(&s.channel)
            {
                println!(
                    "   channel-sync set {} to {a} in Shopify ({}, location {}) {:.1} s after the step began",
                    s.channel,
                    s.shop,
                    s.location_id,
                    after.as_secs_f64()
                );
            }
        }
        println!();
    }

    /// Makes sure the demo's SKU is an item each connected shop stocks at the
    /// connector's location (looked up first: the demo runs again and again
    /// against one stack).
    async fn stock_the_shops(&self) -> Result<(), DemoError> {
        let Some(standin) = &self.standin else {
            return Ok(());
        };
        for s in &self.shop_channels {
            let shown = standin.level(&s.shop, SKU, s.location_id).await?;
            let how = match shown {
                Some(n) => format!("already an item there, showing {n}"),
                None => {
                    let rows = standin.levels(&s.shop).await?;
                    match rows.iter().find(|r| r.sku.as_deref() == Some(SKU)) {
                        Some(r) => {
                            standin
                                .edit_item(&s.shop, r.inventory_item_id, s.location_id, 0)
                                .await?;
                            format!("item {} now stocked there", r.inventory_item_id)
                        }
                        None => {
                            let item = standin.add_item(&s.shop, SKU, &[(s.location_id, 0)]).await?;
                            format!("item {} created, showing 0", item.inventory_item_id)
                        }
                    }
                }
            };
            println!(
                "0. The {} channel is a Shopify store ({}): channel-sync sets its figure at location {}. {SKU}: {how}.\n",
                s.channel, s.shop, s.location_id
            );
            if let Ok(mut f) = self.figures.lock() {
                f.insert(s.channel.clone(), (0, shown.unwrap_or(0)));
            }
        }
        Ok(())
    }

    /// Waits until each shop's figure has settled: the channel's queue
    /// drained by channel-sync and the figure still for a while (at most 30 s).
    async fn shop_figures(&self, step: Instant) -> HashMap<String, ShopFigure> {
        const STILL: Duration = Duration::from_millis(1500);
        let mut out = HashMap::new();
        let Some(standin) = &self.standin else {
            return out;
        };
        for s in &self.shop_channels {
            let start = Instant::now();
            // The figure shown after the previous step: a first read that
            // differs already moved during this one.
            let mut last = self
                .figures
                .lock()
                .ok()
                .and_then(|f| f.get(&s.channel).map(|(_, a)| *a));
            let mut still_since = start;
            let mut moved = None;
            let mut first = true;
            loop {
                let now = standin.level(&s.shop, SKU, s.location_id).await.ok().flatten();
                let t = Instant::now();
                if now != last {
                    if !first || last.is_some() {
                        moved = Some(t - step);
                    }
                    last = now;
                    still_since = t;
                }
                first = false;
                // The fan-out needs a moment to put the step's message on the
                // queue (seconds when its function starts cold): as long as the
                // other channels' queues are read.
                let drained = t - start >= Duration::from_secs(3) && self.queue_drained(&s.queue).await;
                if (drained && t - still_since >= STILL) || t - start >= Duration::from_secs(30) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if let (Some(a), Ok(mut f)) = (last, self.figures.lock()) {
                f.insert(s.channel.clone(), (0, a));
            }
            out.insert(
                s.channel.clone(),
                ShopFigure {
                    available: last,
                    moved,
                },
            );
        }
        out
    }

    /// Whether a queue holds no message, visible or in flight (true if it cannot be read).
    async fn queue_drained(&self, url: &str) -> bool {
        let Ok(got) = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            return true;
        };
        got.attributes().is_none_or(|a| {
            [
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ]
            .iter()
            .all(|k| a.get(k).is_none_or(|n| n == "0"))
        })
    }

    /// The last step: a manager edits the figure in Shopify's admin; after
    /// the grace period channel-sync records it in the ledger and applies
    /// the channel's policy. Whether there was a shop to edit.
    async fn shop_edit(&self) -> Result<bool, DemoError> {
        let Some(standin) = &self.standin else {
            return Ok(false);
        };
        let mut edited = false;
        for s in &self.shop_channels {
            let Some(shown) = standin.level(&s.shop, SKU, s.location_id).await? else {
                continue;
            };
            let typed = shown + 4;
            println!(
                "9. In Shopify's admin a manager miscounts the rack and types {typed} for {SKU} at location {} (Shopify showed {shown}).",
                s.location_id
            );
            let _ = self.drain_alerts().await;
            let newest = self
                .api("GET", &format!("/stock/{SKU}/ledger?limit=1"), None)
                .await?["entries"][0]["at"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let edit = Instant::now();
            standin.edit(&s.shop, SKU, s.location_id, typed).await?;
            println!(
                "   Shopify posts inventory_levels/update to channel-events, which holds the check back for the grace period ({} s): an order of the shop's own may still explain it.",
                self.grace.as_secs()
            );
            let deadline = edit + self.grace + Duration::from_secs(30);
            let (mut entry, mut recorded, mut back) = (None::<Value>, None, None);
            let mut figure = Some(typed);
            while Instant::now() < deadline {
                if entry.is_none() {
                    let ledger = self
                        .api("GET", &format!("/stock/{SKU}/ledger?limit=5"), None)
                        .await?;
                    entry = ledger["entries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| {
                            e["reason"] == "channel_edit" && e["at"].as_str().unwrap_or("") > newest.as_str()
                        })
                        .cloned();
                    if entry.is_some() {
                        recorded = Some(edit.elapsed());
                    }
                }
                if back.is_none() {
                    figure = standin.level(&s.shop, SKU, s.location_id).await?;
                    if figure != Some(typed) {
                        back = Some(edit.elapsed());
                    }
                }
                // Under `adopt` the figure stays: the master follows it.
                if entry.is_some() && (back.is_some() || s.policy != "revert") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let Some(e) = entry else {
                println!(
                    "   no channel_edit entry in the ledger {} s after the edit\n",
                    (self.grace + Duration::from_secs(30)).as_secs()
                );
                continue;
            };
            edited = true;
            println!(
                "   {:.1} s later, the ledger: {} {} delta {} {} {} by {}, Shopify {} -> {}",
                recorded.unwrap_or_default().as_secs_f64(),
                e["at"].as_str().unwrap_or(""),
                e["location"].as_str().unwrap_or(""),
                e["delta"].as_i64().unwrap_or(0),
                e["reason"].as_str().unwrap_or(""),
                e["reference"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
                e["before"],
                e["after"]
            );
            if let Some(note) = e["note"].as_str() {
                println!("   note: {note}");
            }
            for a in self.wait_for_alerts(1, Duration::from_secs(2)).await {
                if a["kind"] == "channel_edit" {
                    println!(
                        "   ops alerted: {} set from {} to {} in {}'s admin (policy {})",
                        a["channel"].as_str().unwrap_or(""),
                        a["before"],
                        a["after"],
                        a["shop"].as_str().unwrap_or(""),
                        a["policy"].as_str().unwrap_or("")
                    );
                }
            }
            match (s.policy.as_str(), back, figure) {
                ("revert", Some(after), Some(now)) => println!(
                    "   Shopify back at {now} {:.1} s after the edit: the master stays the truth (policy revert).\n",
                    after.as_secs_f64()
                ),
                ("revert", _, _) => println!("   Shopify still shows {typed}: not reverted yet\n"),
                _ => {
                    println!("   The master adopts the edit (policy adopt):");
                    self.print_stock().await?;
                }
            }
        }
        Ok(edited)
    }

    /// Reads every channel queue for about `settle`, keeping the highest
    /// sequence per channel for the demo SKU, as a channel consumer would.
    async fn channel_update(&self, settle: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + settle;
        let mut heard = 0;
        loop {
            let mut got_any = false;
            for (channel, url) in &self.channel_queues {
                let Some(messages) = self.take_messages(url).await else {
                    continue;
                };
                for v in messages {
                    got_any = true;
                    if v["sku"] == SKU {
                        heard += 1;
                        let (seq, available) = (
                            v["sequence"].as_u64().unwrap_or(0),
                            v["available"].as_i64().unwrap_or(0),
                        );
                        if let Ok(mut f) = self.figures.lock() {
                            let e = f.entry(channel.clone()).or_insert((0, 0));
                            if seq > e.0 {
                                *e = (seq, available);
                            }
                        }
                    }
                }
            }
            if !got_any && tokio::time::Instant::now() >= deadline {
                return heard;
            }
            if !got_any {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Prints the master count per location.
    async fn print_stock(&self) -> Result<(), DemoError> {
        let stock = self.api("GET", &format!("/stock/{SKU}"), None).await?;
        for l in stock["levels"].as_array().into_iter().flatten() {
            println!(
                "   {:<10} available {}, damaged {} (version {})",
                l["location"].as_str().unwrap_or("?"),
                l["available"],
                l["damaged"],
                l["version"]
            );
        }
        println!("   total available: {} - never below zero\n", stock["available"]);
        Ok(())
    }

    /// Reads and removes alerts until `expected` have arrived or `wait` has passed.
    async fn wait_for_alerts(&self, expected: usize, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut alerts = self.drain_alerts().await;
        while alerts.len() < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            alerts.extend(self.drain_alerts().await);
        }
        alerts
    }

    /// Reads and removes every alert on the alert queue.
    async fn drain_alerts(&self) -> Vec<Value> {
        let Some(url) = &self.alert_queue else {
            return Vec::new();
        };
        let mut out = Vec::new();
        loop {
            match self.take_messages(url).await {
                Some(messages) if !messages.is_empty() => out.extend(messages),
                _ => return out,
            }
        }
    }

    /// An object's bytes; None while it does not exist (or cannot be read).
    /// A body that breaks off midway reads as empty.
    async fn read_object(&self, bucket: &str, key: &str) -> Option<bytes::Bytes> {
        let got = self.s3.get_object().bucket(bucket).key(key).send().await.ok()?;
        Some(
            got.body
                .collect()
                .await
                .map(|b| b.into_bytes())
                .unwrap_or_default(),
        )
    }

    /// Receives up to ten messages from `url` without waiting, and deletes
    /// them: their bodies as JSON (null where a body is not JSON). None when
    /// the queue cannot be read.
    async fn take_messages(&self, url: &str) -> Option<Vec<Value>> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .ok()?;
        let mut bodies = Vec::with_capacity(got.messages().len());
        for m in got.messages() {
            bodies.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap_or(Value::Null));
            if let Some(h) = m.receipt_handle() {
                // A message that fails to delete is only read again: the demo goes on.
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
        Some(bodies)
    }
}

/// Waits until every function with a URL answers with its own JSON.
pub async fn wait_ready(base: &str, functions: &[String], timeout: Duration) -> Result<(), String> {
    let http = HttpClient::new(Duration::from_secs(300));
    let deadline = tokio::time::Instant::now() + timeout;
    for f in functions {
        let url = format!("{}/lambda-url/{f}/__ready__", base.trim_end_matches('/'));
        loop {
            // Our handlers answer every path with a JSON body; cargo lambda's
            // own pages (function still compiling) do not.
            if let Ok(r) = http.send("GET", &url, &[], vec![]).await {
                if r.json().get("error").is_some() {
                    break;
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{f} did not answer at {url}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
