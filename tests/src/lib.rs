//! Test harness: one moto server per test binary, on a free port, and a fresh,
//! uniquely named stack (table, queues) per test, created from `template.yaml`.

pub mod chaos;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lambda_http::{Body, Request};
use serde_json::{json, Value};
use stockroom::alerts::Alerts;
use stockroom::aws_config::{self, BehaviorVersion, Region, SdkConfig};
use stockroom::channels::Channels;
use stockroom::config::LocationRules;
use stockroom::domain::Location;
use stockroom::feed::{FeedSettings, Importer, Suppliers};
use stockroom::signature::{sign_generic_now, sign_shopify, WebhookSecrets};
use stockroom::store::StockStore;
use stockroom_local::http::Reply;
use stockroom_local::shopify::{Bucket, ShopSpec, Standin};
use stockroom_local::{bootstrap, Stack, Template};

/// The Shopify test shop's secret.
pub const SECRET: &str = "test-webhook-secret";
/// The shop domain the Shopify tests use.
pub const SHOP: &str = "stockroom-test.myshopify.com";
/// The generic senders the tests post as: (name, the endpoints it may post to).
const SENDERS: [(&str, &[&str]); 8] = [
    ("channel:web", &["sales"]),
    ("channel:pos", &["sales"]),
    ("channel:marketplace", &["sales"]),
    ("channel:kiosk", &["sales"]),
    ("source:returns", &["returns"]),
    ("source:returns-desk", &["returns"]),
    ("source:desk-2", &["returns"]),
    ("source:desk", &["returns"]),
];

/// The secret of one test sender: each its own.
pub fn secret_of(sender: &str) -> String {
    if sender == SHOP {
        SECRET.to_owned()
    } else {
        format!("test-secret-of-{sender}")
    }
}

/// Every test sender and its secret, as `WEBHOOK_SECRET` holds them.
pub fn secrets_json() -> String {
    let mut senders = serde_json::Map::new();
    senders.insert(
        SHOP.into(),
        json!({"secret": SECRET, "endpoints": ["sales", "returns"]}),
    );
    // A shop whose secret is for sales only.
    senders.insert(
        "sales-only.myshopify.com".into(),
        json!({"secret": secret_of("sales-only.myshopify.com"), "endpoints": ["sales"]}),
    );
    for (name, endpoints) in SENDERS {
        senders.insert(
            name.into(),
            json!({"secret": secret_of(name), "endpoints": endpoints}),
        );
    }
    Value::Object(senders).to_string()
}

/// The test senders' secrets.
pub fn secrets() -> WebhookSecrets {
    WebhookSecrets::parse(&secrets_json()).expect("the test senders' secrets")
}

/// The sender a generic body names, as the functions read it: its channel
/// (a sale) or its source (a return, `returns` when it names none).
pub fn generic_sender(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (v["channel"].as_str(), v["source"].as_str()) {
        (Some(c), _) => format!("channel:{}", c.trim()),
        (None, Some(s)) => format!("source:{}", s.trim()),
        (None, None) => "source:returns".to_owned(),
    }
}

/// `X-Stockroom-Signature` for a generic body, by the secret of the sender it names, now.
pub fn generic_signature(body: &[u8]) -> String {
    sign_generic_now(secret_of(&generic_sender(body)).as_bytes(), body)
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running emulator. The child's stdin is held open: when this process
/// exits, the pipe closes and the emulator exits with it.
pub struct Emulator {
    pub endpoint: String,
    _child: Mutex<Child>,
}

fn python() -> PathBuf {
    std::env::var_os("STOCKROOM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

// The child lives as long as the test process; its stdin pipe ends it.
#[allow(clippy::zombie_processes)]
fn start_emulator() -> Emulator {
    let (child, port) = start_child("infra/emulator.py", "the emulator");
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: Mutex::new(child),
    }
}

/// Starts `.venv/bin/python <script> --port P --exit-with-stdin` on a free
/// port (another if that one is taken before the child binds it) and waits
/// until it listens.
#[allow(clippy::zombie_processes)]
fn start_child(script: &str, what: &str) -> (Child, u16) {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `make tools` (or `make test`, which installs it)",
        python.display()
    );
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(&python)
            .arg(root().join(script))
            .args(["--port", &port.to_string(), "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stderr = child.stderr.take().expect("child stderr");
        // Drain stderr (moto logs every request) so the pipe never fills.
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken between probe and bind: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not start");
}

/// A running Shopify stand-in (`infra/shopify.py`); it exits with this
/// process, as the emulator does.
pub struct ShopifyStandin {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    _child: Mutex<Child>,
}

impl ShopifyStandin {
    /// The Admin API base the connector is given (`SHOPIFY_ADMIN_URL`): `<base>/{shop}`.
    pub fn admin_url(&self) -> String {
        format!("{}/{{shop}}", self.base)
    }

    /// A client, made in the calling test's runtime (a pooled connection
    /// must not outlive the runtime that opened it).
    pub fn client(&self) -> Standin {
        Standin::new(&self.base)
    }
}

/// The Shopify stand-in for this test binary, started on first use.
pub fn shopify() -> &'static ShopifyStandin {
    static STANDIN: OnceLock<ShopifyStandin> = OnceLock::new();
    STANDIN.get_or_init(|| {
        let (child, port) = start_child("infra/shopify.py", "the Shopify stand-in");
        ShopifyStandin {
            base: format!("http://127.0.0.1:{port}"),
            _child: Mutex::new(child),
        }
    })
}

/// The Admin API token of a test shop.
pub fn token_of(shop: &str) -> String {
    format!("shpat_test_{}", shop.replace(['.', '-'], "_"))
}

/// A uniquely named shop on the stand-in, for one test.
pub struct TestShop {
    /// `t<pid>-<n>-<rand>.myshopify.com`
    pub shop: String,
    pub token: String,
    /// Its webhook secret: [`secret_of`] the shop.
    pub secret: String,
    pub standin: Standin,
}

impl TestShop {
    /// Posts a GraphQL request with the shop's token (at [`stockroom_local::shopify::API_VERSION`]).
    pub async fn graphql(&self, query: &str, variables: Value) -> (u16, Value, stockroom_local::http::Reply) {
        let (reply, _) = self
            .standin
            .graphql(&self.shop, &self.token, query, variables)
            .await
            .expect("post to the stand-in");
        (reply.status, reply.json(), reply)
    }
}

/// Creates a shop with its own token and webhook secret, locations 1001 and
/// 1002, no webhook URLs (tests read the outbox), and the standard bucket
/// unless `bucket` gives (maximum, restore rate per second).
pub async fn test_shop(bucket: Option<(u32, u32)>) -> TestShop {
    static N: AtomicU32 = AtomicU32::new(0);
    let shop = format!(
        "t{}-{}-{:04x}.myshopify.com",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u16(..)
    );
    let standin = shopify().client();
    let mut spec = ShopSpec::new(&shop, &token_of(&shop), &secret_of(&shop));
    spec.bucket = bucket.map(|(maximum, restore_rate)| Bucket {
        maximum,
        restore_rate,
    });
    standin.put_shop(&spec).await.expect("create the test shop");
    TestShop {
        token: spec.token,
        secret: spec.webhook_secret,
        shop,
        standin,
    }
}

/// The emulator for this test binary, started on first use.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(start_emulator)
}

/// AWS configuration pointed at the emulator, with fake credentials.
pub async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(stockroom::config::http_client())
        .endpoint_url(&emulator().endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(stockroom::aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A fresh stack of resources, named uniquely for one test.
pub struct TestStack {
    pub name: String,
    pub template: Template,
    pub sdk: SdkConfig,
    pub stack: Stack,
    pub ddb: stockroom::aws_sdk_dynamodb::Client,
    pub sqs: stockroom::aws_sdk_sqs::Client,
}

/// Creates a stack from `template.yaml` under a unique name.
pub async fn stack() -> TestStack {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}-{}-{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u16(..)
    );
    let template = Template::load(&root().join("template.yaml"), &name).expect("template.yaml");
    let sdk = sdk().await;
    let stack = bootstrap(&sdk, &template).await.expect("bootstrap the stack");
    TestStack {
        template,
        ddb: stockroom::aws_sdk_dynamodb::Client::new(&sdk),
        sqs: stockroom::aws_sdk_sqs::Client::new(&sdk),
        name,
        sdk,
        stack,
    }
}

/// A queue message's body as JSON.
fn json_body(m: &stockroom::aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(m.body().unwrap_or("null")).expect("json message")
}

/// A fresh stack with one level set (through the stock API's store).
pub async fn stocked(sku: &str, location: &str, available: i64) -> TestStack {
    let s = stack().await;
    s.seed(sku, location, available).await;
    s
}

impl TestStack {
    pub fn table(&self) -> &str {
        &self.stack.tables["StockTable"]
    }

    pub fn alert_queue(&self) -> &str {
        &self.stack.queue_urls["AlertQueue"]
    }

    pub fn store(&self) -> StockStore {
        StockStore::new(self.ddb.clone(), self.table(), 35)
    }

    /// Location rules used by the tests: `warehouse` by default, POS sells
    /// from `shop-1`, Shopify location 111 is `shop-1`.
    pub fn rules() -> LocationRules {
        LocationRules::new(
            Location::parse("warehouse").expect("location"),
            "pos=shop-1,marketplace=warehouse",
            "111=shop-1,222=warehouse",
        )
        .expect("rules")
    }

    pub fn sale_app(&self) -> sale_webhook::App {
        sale_webhook::App {
            store: self.store(),
            rules: Self::rules(),
            secrets: secrets(),
        }
    }

    pub fn return_app(&self) -> return_processor::App {
        return_processor::App {
            store: self.store(),
            rules: Self::rules(),
            secrets: secrets(),
        }
    }

    /// The damaged count at one location (`None`: no level).
    pub async fn damaged(&self, sku: &str, location: &str) -> Option<i64> {
        self.level(sku, location).await.map(|i| {
            i.get("damaged")
                .and_then(|v| v.as_n().ok())
                .map_or(0, |n| n.parse().expect("number"))
        })
    }

    /// The fan-out, configured exactly as template.yaml configures it.
    pub fn fanout_app(&self) -> stock_fanout::App {
        let env = self.template.function_env("StockFanoutFunction", &self.stack);
        let channels = Channels::parse(&env["CHANNELS"]).expect("CHANNELS in template.yaml");
        let queues = channels
            .queues(&env["CHANNEL_QUEUES"])
            .expect("CHANNEL_QUEUES in template.yaml");
        stock_fanout::App {
            store: self.store(),
            sqs: self.sqs.clone(),
            channels,
            queues,
            alerts: Alerts::new(self.sqs.clone(), Some(self.alert_queue().to_owned())),
        }
    }

    /// Runs the template's stream trigger for `stock-fanout` with the local
    /// stream poller, invoking the handler in this process. Stops when dropped.
    pub async fn start_fanout(&self) -> Fanout {
        self.start_flaky_fanout(0.0, 0).await
    }

    /// The same, but the function dies after its work and before its answer
    /// in `die_rate` of its invocations (seeded), as a Lambda instance can:
    /// the trigger retries the batch, which must have no second effect.
    pub async fn start_flaky_fanout(&self, die_rate: f64, seed: u64) -> Fanout {
        let trigger = self
            .template
            .triggers
            .iter()
            .find(|t| t.function == "stock-fanout")
            .cloned()
            .expect("a stream trigger for stock-fanout in template.yaml");
        let invoker = Arc::new(InProcessFanout {
            app: self.fanout_app(),
            batches: Mutex::new(Vec::new()),
            die_rate,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            deaths: AtomicU32::new(0),
        });
        let task = tokio::spawn(stockroom_local::streams::poll_stream(
            self.sdk.clone(),
            trigger,
            self.stack.clone(),
            invoker.clone(),
        ));
        Fanout { task, invoker }
    }

    /// Takes (receives and deletes) messages from a channel's queue until
    /// `expected` have arrived or `wait` has passed.
    pub async fn channel_messages(&self, channel: &str, expected: usize, wait: Duration) -> Vec<Value> {
        let queue = self.fanout_app().queues[channel].clone();
        self.take_messages(&queue, expected, wait).await
    }

    /// Takes (receives and deletes) alerts from the alert queue until
    /// `expected` have arrived or `wait` has passed.
    pub async fn alerts(&self, expected: usize, wait: Duration) -> Vec<Value> {
        let queue = self.alert_queue().to_owned();
        self.take_messages(&queue, expected, wait).await
    }

    /// Takes (receives and deletes) messages from a queue until `expected`
    /// have arrived or `wait` has passed (with `expected` 0: all of `wait`).
    pub async fn take_messages(&self, queue: &str, expected: usize, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let got = self.receive(queue).await;
            for m in &got {
                out.push(json_body(m));
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
            if (expected > 0 && out.len() >= expected) || Instant::now() >= deadline {
                return out;
            }
            if got.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Up to ten messages a queue has now (short poll).
    pub async fn receive(&self, queue: &str) -> Vec<stockroom::aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// The S3 client the tests use (path-style, as the emulator needs).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .build(),
        )
    }

    pub fn feed_bucket(&self) -> &str {
        &self.stack.buckets["FeedBucket"]
    }

    pub fn feed_queue(&self) -> &str {
        &self.stack.queue_urls["FeedQueue"]
    }

    /// The suppliers the tests drop feeds for (`FEED_SUPPLIERS`): `acme`
    /// delivers to the warehouse and downtown; `globex` sends stock files
    /// only; `warehouse` is a supplier named like a location, delivering
    /// downtown. Any other supplier's file is refused.
    pub const FEED_SUPPLIERS: &'static str = "acme=warehouse+downtown,globex,warehouse=downtown";

    /// The feed import, configured as template.yaml configures it, with
    /// the suppliers the tests use ([`Self::FEED_SUPPLIERS`]).
    pub fn feed_app(&self) -> Importer {
        let env = self.template.function_env("SupplierFeedFunction", &self.stack);
        assert!(
            env.contains_key("FEED_HOLD_SHARE"),
            "FEED_HOLD_SHARE in template.yaml"
        );
        let mut settings =
            FeedSettings::from_vars(|name| env.get(name).cloned()).expect("the template's FEED_* settings");
        settings.suppliers = Suppliers::parse(Self::FEED_SUPPLIERS).expect("FEED_SUPPLIERS");
        settings.concurrency = 4;
        settings.margin = Duration::from_secs(30);
        Importer {
            store: self.store(),
            s3: self.s3(),
            sqs: self.sqs.clone(),
            settings,
        }
    }

    /// Uploads a feed file to the feed bucket.
    pub async fn put_feed(&self, key: &str, body: &[u8]) {
        self.s3()
            .put_object()
            .bucket(self.feed_bucket())
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put the feed object");
    }

    /// Waits for the next message S3 sent to the feed queue and takes it
    /// (S3's own `s3:TestEvent` is skipped).
    pub async fn next_feed_message(
        &self,
        wait: Duration,
    ) -> Option<stockroom::aws_lambda_events::event::sqs::SqsMessage> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            // A short visibility timeout: a receive whose answer is lost (the
            // chaos suite's faults) hides its message for 20 s, not the
            // queue's 90 minutes.
            let got = self
                .sqs
                .receive_message()
                .queue_url(self.feed_queue())
                .max_number_of_messages(1)
                .wait_time_seconds(0)
                .visibility_timeout(20)
                .send()
                .await
                .expect("receive");
            if let Some(m) = got.messages().first() {
                self.sqs
                    .delete_message()
                    .queue_url(self.feed_queue())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                // S3 announces a new notification configuration with a test event.
                if m.body().unwrap_or_default().contains("s3:TestEvent") {
                    continue;
                }
                let mut msg = stockroom::aws_lambda_events::event::sqs::SqsMessage::default();
                msg.message_id = m.message_id().map(str::to_owned);
                msg.body = m.body().map(str::to_owned);
                return Some(msg);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Reads an object of the feed bucket as text.
    pub async fn read_object(&self, key: &str) -> Option<String> {
        let got = self
            .s3()
            .get_object()
            .bucket(self.feed_bucket())
            .key(key)
            .send()
            .await
            .ok()?;
        let bytes = got.body.collect().await.ok()?.into_bytes();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn api_app(&self) -> stock_api::App {
        stock_api::App {
            store: self.store(),
            feeds: Some(stockroom::feed::release::FeedQueue {
                bucket: self.feed_bucket().to_owned(),
                queue_url: self.feed_queue().to_owned(),
                sqs: self.sqs.clone(),
            }),
            // The local stack's setting: no IAM, writes name their actor.
            writers: stockroom::api::Writers::Anonymous,
            channels: None,
        }
    }

    /// channel-sync's connector for the web channel into a test shop at
    /// location 1001, configured as the template configures it (its
    /// channels); `suffix` is the policy and mode (`revert`, `adopt`,
    /// `revert/shadow`). Each has its own Admin API client, so its own
    /// pacer, as a Lambda container has.
    pub fn connector(&self, shop: &TestShop, suffix: &str, token: &str) -> stockroom::connector::Sync {
        let channels = self.fanout_app().channels;
        let connectors = stockroom::connector::Connectors::parse(
            &format!("web=shopify:{}@1001/{suffix}", shop.shop),
            &channels,
        )
        .expect("a connector");
        let tokens =
            stockroom::shopify::Tokens::parse(&json!({ &shop.shop: token }).to_string()).expect("the tokens");
        stockroom::connector::Sync {
            store: self.store(),
            api: stockroom::shopify::AdminApi::new(
                &shopify().admin_url(),
                stockroom_local::shopify::API_VERSION,
                tokens,
            )
            .expect("the Admin API"),
            connectors,
            channels,
            rules: Self::rules(),
            alerts: Alerts::new(self.sqs.clone(), Some(self.alert_queue().to_owned())),
            in_flight: Duration::from_secs(300),
        }
    }

    /// The stock API with connector channels: their runs queued on the
    /// stack's `ChannelEditsQueue`, as channel-sync takes them.
    pub fn api_app_with(&self, connectors: stockroom::connector::Connectors) -> stock_api::App {
        let mut app = self.api_app();
        app.channels = Some(stock_api::channels::ChannelOps {
            connectors,
            sqs: self.sqs.clone(),
            queue_url: self.stack.queue_urls["ChannelEditsQueue"].clone(),
        });
        app
    }

    /// Sets a level to an absolute figure through the stock API's store.
    pub async fn seed(&self, sku: &str, location: &str, available: i64) {
        use stockroom::adjustment::{Adjustment, Change};
        use stockroom::domain::{Actor, ReasonCode, Sku};
        self.store()
            .adjust(&Adjustment {
                sku: Sku::parse(sku).expect("sku"),
                location: Location::parse(location).expect("location"),
                change: Change::Set(available),
                expected: None,
                reason: ReasonCode::Stocktake,
                actor: Actor::parse("test-seed").expect("actor"),
                note: None,
                document: None,
                idempotency_key: None,
            })
            .await
            .expect("seed stock");
    }

    /// The available figure at one location (`None`: no level).
    pub async fn available(&self, sku: &str, location: &str) -> Option<i64> {
        self.level(sku, location).await.and_then(|i| {
            i.get("available")
                .and_then(|v| v.as_n().ok())
                .map(|n| n.parse().expect("number"))
        })
    }

    /// The level item at one location, read strongly consistent.
    pub async fn level(
        &self,
        sku: &str,
        location: &str,
    ) -> Option<HashMap<String, stockroom::aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table())
            .consistent_read(true)
            .key(
                "pk",
                stockroom::aws_sdk_dynamodb::types::AttributeValue::S(format!("SKU#{sku}")),
            )
            .key(
                "sk",
                stockroom::aws_sdk_dynamodb::types::AttributeValue::S(format!("LEVEL#{location}")),
            )
            .send()
            .await
            .expect("get level");
        out.item().cloned()
    }

    /// Every message on a queue right now (received, not deleted).
    pub async fn drain(&self, queue_url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self.receive(queue_url).await;
            if got.is_empty() {
                return out;
            }
            out.extend(got.iter().map(json_body));
        }
    }
}

/// `stock-fanout` invoked in this process by the local stream poller.
pub struct InProcessFanout {
    app: stock_fanout::App,
    batches: Mutex<Vec<Value>>,
    die_rate: f64,
    rng: Mutex<fastrand::Rng>,
    deaths: AtomicU32,
}

impl stockroom_local::streams::Invoke for InProcessFanout {
    fn invoke<'a>(
        &'a self,
        _function: &'a str,
        payload: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, String>> + Send + 'a>> {
        Box::pin(async move {
            let raw: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
            self.batches.lock().expect("batches").push(raw.clone());
            // As the Lambda runtime does: an event that does not deserialize is a function error.
            let (function_error, body) = match serde_json::from_value(raw) {
                Ok(event) => {
                    let answer = stock_fanout::handle(&self.app, event).await;
                    if self.die_rate > 0.0 && self.rng.lock().expect("rng").f64() < self.die_rate {
                        // Died after its work, before its answer: a function error.
                        self.deaths.fetch_add(1, Ordering::Relaxed);
                        (true, b"the instance died".to_vec())
                    } else {
                        (false, serde_json::to_vec(&answer).map_err(|e| e.to_string())?)
                    }
                }
                Err(e) => (true, e.to_string().into_bytes()),
            };
            Ok(Reply {
                status: 200,
                function_error,
                body: body.into(),
            })
        })
    }
}

/// A running stream poller; aborted when dropped.
pub struct Fanout {
    task: tokio::task::JoinHandle<Result<(), stockroom_local::triggers::TriggerError>>,
    invoker: Arc<InProcessFanout>,
}

impl Fanout {
    /// Every batch the poller delivered so far, as the event JSON.
    pub fn batches(&self) -> Vec<Value> {
        self.invoker.batches.lock().expect("batches").clone()
    }

    /// Invocations that died after their work (see [`TestStack::start_flaky_fanout`]).
    pub fn deaths(&self) -> u32 {
        self.invoker.deaths.load(Ordering::Relaxed)
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a test webhook delivery is signed: each sender with its own secret.
#[derive(Debug, Clone, Copy)]
pub enum Sign<'a> {
    /// `X-Stockroom-Signature`, as POS systems and returns desks sign.
    Generic,
    /// Shopify's headers, from [`SHOP`].
    Shopify { topic: &'a str, webhook_id: &'a str },
}

/// A webhook delivery of `body`, signed as `sign` says.
pub fn signed(body: &[u8], sign: Sign<'_>) -> Request {
    let headers = match sign {
        Sign::Generic => vec![("X-Stockroom-Signature", generic_signature(body))],
        Sign::Shopify { topic, webhook_id } => shopify_headers(body, SECRET, topic, webhook_id),
    };
    delivery(body, &headers)
}

/// A webhook delivery (`POST /`) of `body` with these headers.
pub fn delivery(body: &[u8], headers: &[(&str, String)]) -> Request {
    request(url_event("POST", "/", &[], headers, body))
}

/// Shopify's headers for a delivery from [`SHOP`] signed with `secret`
/// (the signature first).
pub fn shopify_headers(
    body: &[u8],
    secret: &str,
    topic: &str,
    webhook_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("X-Shopify-Hmac-Sha256", sign_shopify(secret.as_bytes(), body)),
        ("X-Shopify-Shop-Domain", SHOP.to_owned()),
        ("X-Shopify-Webhook-Id", webhook_id.to_owned()),
        ("X-Shopify-Topic", topic.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ]
}

/// A generic sale of one line on the `web` channel, taken at `location` if
/// given (else where `web` sells from: the default location).
pub fn web_sale(order_id: &str, sku: &str, location: Option<&str>, quantity: i64) -> Vec<u8> {
    let mut sale = json!({"channel": "web", "order_id": order_id,
        "lines": [{"sku": sku, "quantity": quantity}]});
    if let Some(location) = location {
        sale["location"] = json!(location);
    }
    serde_json::to_vec(&sale).expect("json")
}

/// A function URL request as Lambda delivers it, from its event ([`url_event`]).
pub fn request(event: Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid function URL event")
}

/// The API Gateway v2 event JSON Lambda delivers for a function URL request.
pub fn url_event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, String)],
    body: &[u8],
) -> Value {
    let raw_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let qs: HashMap<&str, &str> = query.iter().copied().collect();
    let hs: HashMap<String, &str> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": hs,
        "queryStringParameters": if qs.is_empty() { Value::Null } else { json!(qs) },
        "requestContext": {
            "accountId": "123456789012", "apiId": "test", "domainName": "test.lambda-url.local",
            "domainPrefix": "test", "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "tests"}
        },
        "body": String::from_utf8_lossy(body),
        "isBase64Encoded": false
    })
}

/// A response's status and JSON body.
pub fn read(res: lambda_http::Response<Body>) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = match res.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}
