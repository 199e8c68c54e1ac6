//! A client for the local Shopify stand-in (`infra/shopify.py`): its own
//! surface (`/_standin/shops/...`: shops, items, merchant edits, orders,
//! levels, history, the webhook outbox, the call log, faults) and raw posts
//! to its Admin GraphQL API, for the tests, `make dev` and the demo.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{HttpClient, HttpError, Reply};

/// The demo's shop, as `infra/local.env` names it.
pub const DEMO_SHOP: &str = "stockroom-demo.myshopify.com";
/// The Shopify locations every local shop has: the warehouse and downtown.
pub const LOCATIONS: [i64; 2] = [1001, 1002];
/// The Admin API version the local tools call.
pub const API_VERSION: &str = "2026-10";

#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{what}: the stand-in answered {status}: {body}")]
    Status { what: String, status: u16, body: String },
    #[error("{what}: unexpected answer from the stand-in: {message}")]
    Answer { what: String, message: String },
    #[error("{0}")]
    Setup(String),
}

/// A shop as `PUT /_standin/shops/{shop}` takes it.
#[derive(Debug, Clone, Serialize)]
pub struct ShopSpec {
    #[serde(skip)]
    pub shop: String,
    pub token: String,
    pub webhook_secret: String,
    pub locations: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    /// Topic (`orders/create`, `inventory_levels/update`) to the URL it is posted to.
    pub webhooks: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_delay_ms: Option<u64>,
    /// The token lacks the inventory scope: every Admin API call answers 403.
    pub missing_scope: bool,
}

impl ShopSpec {
    /// A shop at locations 1001 and 1002, the standard bucket, no webhook URLs.
    pub fn new(shop: &str, token: &str, webhook_secret: &str) -> Self {
        Self {
            shop: shop.to_owned(),
            token: token.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            locations: LOCATIONS.to_vec(),
            bucket: None,
            webhooks: BTreeMap::new(),
            order_delay_ms: None,
            missing_scope: false,
        }
    }
}

/// A shop's cost bucket: its size and how many points it restores per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    pub maximum: u32,
    pub restore_rate: u32,
}

/// An item the stand-in created.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    /// `gid://shopify/InventoryItem/<n>`
    pub id: String,
    pub inventory_item_id: i64,
}

/// One level, as `GET .../levels` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct LevelRow {
    pub sku: Option<String>,
    pub inventory_item_id: i64,
    pub location_id: i64,
    pub available: i64,
}

/// One change of a level: who made it (`app`, `merchant`, `order`) and how.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    pub at: String,
    pub available: i64,
    pub by: String,
    pub delta: i64,
    pub idempotency_key: Option<String>,
}

/// One webhook in a shop's outbox.
#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub n: u64,
    pub topic: String,
    pub headers: BTreeMap<String, String>,
    /// The raw body, exactly as signed.
    pub body: String,
}

impl Webhook {
    /// A header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One Admin API call the stand-in answered.
#[derive(Debug, Clone, Deserialize)]
pub struct Call {
    pub at: String,
    pub cost: CallCost,
    pub throttled: bool,
    pub status: u16,
    /// `query` or `mutation` (none for a call answered by an injected fault).
    pub operation: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CallCost {
    pub requested: u32,
    pub actual: u32,
}

/// The stand-in at `base` (e.g. `http://127.0.0.1:4568`).
#[derive(Clone)]
pub struct Standin {
    base: String,
    http: HttpClient,
}

impl Standin {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http: HttpClient::new(Duration::from_secs(30)),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The Admin API base the connector is given (`SHOPIFY_ADMIN_URL`), `{shop}` unexpanded.
    pub fn admin_url(&self) -> String {
        format!("{}/{{shop}}", self.base)
    }

    /// A shop's GraphQL endpoint at `version`.
    pub fn graphql_url(&self, shop: &str, version: &str) -> String {
        format!("{}/{shop}/admin/api/{version}/graphql.json", self.base)
    }

    fn shop_url(&self, shop: &str, what: &str) -> String {
        format!("{}/_standin/shops/{shop}{what}", self.base)
    }

    async fn call(&self, method: &str, url: String, body: Option<Value>) -> Result<Value, StandinError> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = [("Content-Type", "application/json".to_owned())];
        let reply = self.http.send(method, &url, &headers, bytes).await?;
        if reply.status != 200 {
            return Err(StandinError::Status {
                what: format!("{method} {url}"),
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            });
        }
        Ok(reply.json())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: String) -> Result<T, StandinError> {
        let v = self.call("GET", url.clone(), None).await?;
        serde_json::from_value(v).map_err(|e| StandinError::Answer {
            what: format!("GET {url}"),
            message: e.to_string(),
        })
    }

    /// Creates or replaces a shop (its items, history and outbox start empty).
    pub async fn put_shop(&self, spec: &ShopSpec) -> Result<(), StandinError> {
        let body = serde_json::to_value(spec).map_err(|e| StandinError::Setup(e.to_string()))?;
        self.call("PUT", self.shop_url(&spec.shop, ""), Some(body))
            .await?;
        Ok(())
    }

    /// Adds an item with `sku`, stocked at each `(location id, available)`.
    /// Two items may share a SKU.
    pub async fn add_item(&self, shop: &str, sku: &str, levels: &[(i64, i64)]) -> Result<Item, StandinError> {
        let levels: serde_json::Map<String, Value> =
            levels.iter().map(|(l, n)| (l.to_string(), json!(n))).collect();
        let url = self.shop_url(shop, "/items");
        let v = self
            .call("POST", url.clone(), Some(json!({"sku": sku, "levels": levels})))
            .await?;
        serde_json::from_value(v).map_err(|e| StandinError::Answer {
            what: format!("POST {url}"),
            message: e.to_string(),
        })
    }

    /// A merchant sets the level of the (first) item with `sku` in Shopify's admin.
    pub async fn edit(
        &self,
        shop: &str,
        sku: &str,
        location_id: i64,
        available: i64,
    ) -> Result<(), StandinError> {
        let body = json!({"sku": sku, "location_id": location_id, "available": available});
        self.call("POST", self.shop_url(shop, "/edits"), Some(body))
            .await?;
        Ok(())
    }

    /// A merchant sets the level of one item (by its numeric id).
    pub async fn edit_item(
        &self,
        shop: &str,
        inventory_item_id: i64,
        location_id: i64,
        available: i64,
    ) -> Result<(), StandinError> {
        let body = json!({"inventory_item_id": inventory_item_id, "location_id": location_id, "available": available});
        self.call("POST", self.shop_url(shop, "/edits"), Some(body))
            .await?;
        Ok(())
    }

    /// A sale at `location_id` of `(sku, quantity)` lines: the levels drop at
    /// once and `orders/create` follows after the shop's delay. Refused (409)
    /// if a line is over what the level holds. Returns the order id.
    pub async fn order(
        &self,
        shop: &str,
        location_id: i64,
        lines: &[(&str, i64)],
    ) -> Result<String, StandinError> {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
            .collect();
        let body = json!({"location_id": location_id, "lines": lines});
        let v = self
            .call("POST", self.shop_url(shop, "/orders"), Some(body))
            .await?;
        Ok(match &v["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The available figure of the (first) item with `sku` at a location; `None`: not stocked there.
    pub async fn level(&self, shop: &str, sku: &str, location_id: i64) -> Result<Option<i64>, StandinError> {
        let url = self.shop_url(
            shop,
            &format!("/levels?sku={}&location_id={location_id}", encode(sku)),
        );
        let headers = [("Content-Type", "application/json".to_owned())];
        let reply = self.http.send("GET", &url, &headers, Vec::new()).await?;
        match reply.status {
            200 => reply.json()["available"]
                .as_i64()
                .map(Some)
                .ok_or_else(|| StandinError::Answer {
                    what: format!("GET {url}"),
                    message: "no available figure".into(),
                }),
            404 => Ok(None),
            status => Err(StandinError::Status {
                what: format!("GET {url}"),
                status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            }),
        }
    }

    /// Every level of the shop.
    pub async fn levels(&self, shop: &str) -> Result<Vec<LevelRow>, StandinError> {
        self.get(self.shop_url(shop, "/levels")).await
    }

    /// Every change of one level, oldest first.
    pub async fn history(
        &self,
        shop: &str,
        sku: &str,
        location_id: i64,
    ) -> Result<Vec<Change>, StandinError> {
        self.get(self.shop_url(
            shop,
            &format!("/history?sku={}&location_id={location_id}", encode(sku)),
        ))
        .await
    }

    /// The webhooks the shop has sent, after the `after`-th (0: all).
    pub async fn webhooks(&self, shop: &str, after: u64) -> Result<Vec<Webhook>, StandinError> {
        self.get(self.shop_url(shop, &format!("/webhooks?after={after}")))
            .await
    }

    /// Waits until a webhook of `topic` numbered above `after` is in the
    /// outbox, for at most `wait`; returns it.
    pub async fn wait_webhook(
        &self,
        shop: &str,
        topic: &str,
        after: u64,
        wait: Duration,
    ) -> Result<Option<Webhook>, StandinError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(w) = self
                .webhooks(shop, after)
                .await?
                .into_iter()
                .find(|w| w.topic == topic)
            {
                return Ok(Some(w));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every Admin API call the shop answered, oldest first.
    pub async fn calls(&self, shop: &str) -> Result<Vec<Call>, StandinError> {
        self.get(self.shop_url(shop, "/calls")).await
    }

    /// The next `times` Admin API calls of the shop answer `status` (429 with
    /// `Retry-After: retry_after`).
    pub async fn fault(
        &self,
        shop: &str,
        status: u16,
        times: u32,
        retry_after: Option<u64>,
    ) -> Result<(), StandinError> {
        let body = json!({"status": status, "times": times, "retry_after": retry_after});
        self.call("POST", self.shop_url(shop, "/faults"), Some(body))
            .await?;
        Ok(())
    }

    /// Posts a GraphQL request to the shop's Admin API as the connector does;
    /// the answer whatever its status, with its headers.
    pub async fn graphql(
        &self,
        shop: &str,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<(Reply, http::HeaderMap), StandinError> {
        let body = json!({"query": query, "variables": variables})
            .to_string()
            .into_bytes();
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            ("X-Shopify-Access-Token", token.to_owned()),
        ];
        Ok(self
            .http
            .send_with_headers("POST", &self.graphql_url(shop, API_VERSION), &headers, body)
            .await?)
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// The demo shop as the env file describes it: its token from
/// `SHOPIFY_TOKENS`, its webhook secret from `WEBHOOK_SECRET`, and its
/// `orders/create` and `inventory_levels/update` webhooks posted to
/// sale-webhook and channel-events under `LOCAL_LAMBDA_URL`.
pub fn demo_shop(env: &HashMap<String, String>) -> Result<ShopSpec, StandinError> {
    let var = |name: &str| {
        env.get(name)
            .ok_or_else(|| StandinError::Setup(format!("{name} is not set")))
    };
    let tokens: HashMap<String, String> = serde_json::from_str(var("SHOPIFY_TOKENS")?)
        .map_err(|e| StandinError::Setup(format!("SHOPIFY_TOKENS is not a JSON object of strings: {e}")))?;
    let token = tokens
        .get(DEMO_SHOP)
        .ok_or_else(|| StandinError::Setup(format!("SHOPIFY_TOKENS has no token for {DEMO_SHOP}")))?;
    let secrets: Value = serde_json::from_str(var("WEBHOOK_SECRET")?)
        .map_err(|e| StandinError::Setup(format!("WEBHOOK_SECRET is not JSON: {e}")))?;
    let secret = secrets[DEMO_SHOP]["secret"]
        .as_str()
        .ok_or_else(|| StandinError::Setup(format!("WEBHOOK_SECRET has no secret for {DEMO_SHOP}")))?;
    let lambda = var("LOCAL_LAMBDA_URL")?.trim_end_matches('/');
    let mut spec = ShopSpec::new(DEMO_SHOP, token, secret);
    // The form the demo posts to through cargo lambda watch.
    spec.webhooks.insert(
        "orders/create".into(),
        Some(format!("{lambda}/lambda-url/sale-webhook/")),
    );
    spec.webhooks.insert(
        "inventory_levels/update".into(),
        Some(format!("{lambda}/lambda-url/channel-events/")),
    );
    Ok(spec)
}

/// The stand-in's base URL from the env file: `SHOPIFY_LOCAL_PORT` on 127.0.0.1.
pub fn local_base(env: &HashMap<String, String>) -> Result<String, StandinError> {
    let port = env
        .get("SHOPIFY_LOCAL_PORT")
        .ok_or_else(|| StandinError::Setup("SHOPIFY_LOCAL_PORT is not set".into()))?;
    Ok(format!("http://127.0.0.1:{}", port.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [
            ("SHOPIFY_TOKENS", r#"{"stockroom-demo.myshopify.com": "shpat_x"}"#),
            (
                "WEBHOOK_SECRET",
                r#"{"stockroom-demo.myshopify.com": {"secret": "s3", "endpoints": ["sales"]}}"#,
            ),
            ("LOCAL_LAMBDA_URL", "http://127.0.0.1:9000/"),
            ("SHOPIFY_LOCAL_PORT", "4568"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn the_demo_shop_comes_from_the_env_file() {
        let spec = demo_shop(&env()).unwrap();
        assert_eq!(spec.token, "shpat_x");
        assert_eq!(spec.webhook_secret, "s3");
        assert_eq!(spec.locations, vec![1001, 1002]);
        assert_eq!(
            spec.webhooks["orders/create"].as_deref(),
            Some("http://127.0.0.1:9000/lambda-url/sale-webhook/")
        );
        assert_eq!(
            spec.webhooks["inventory_levels/update"].as_deref(),
            Some("http://127.0.0.1:9000/lambda-url/channel-events/")
        );
        assert_eq!(local_base(&env()).unwrap(), "http://127.0.0.1:4568");
    }

    #[test]
    fn a_missing_token_is_named() {
        let mut e = env();
        e.insert("SHOPIFY_TOKENS".into(), "{}".into());
        let err = demo_shop(&e).unwrap_err().to_string();
        assert!(err.contains("stockroom-demo.myshopify.com"), "{err}");
    }
}
