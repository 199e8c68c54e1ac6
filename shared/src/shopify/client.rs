//! The HTTP side: one GraphQL call, paced and retried; and the three
//! operations a connector makes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pacer::{Pacer, ThrottleStatus};
use crate::config::{self, ConfigError};

/// How long one HTTP exchange may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a 5xx or a failed connection; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    #[error("{shop}: no access token is configured for this shop")]
    NoToken { shop: String },
    #[error("{shop} refused the access token (HTTP {status})")]
    Unauthorized { shop: String, status: u16 },
    #[error("{shop}: HTTP {status}: {body}")]
    Http { shop: String, status: u16, body: String },
    #[error("{shop}: {message}")]
    Transport { shop: String, message: String },
    #[error("{shop} refused the query: {messages}")]
    Query { shop: String, messages: String },
    #[error("{shop}: an answer that cannot be read: {message}")]
    Malformed { shop: String, message: String },
    #[error("{shop}: still throttled or failing at the deadline ({last})")]
    OutOfTime { shop: String, last: String },
}

impl ShopifyError {
    /// The shop refused the app's token: retrying cannot help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ShopifyError::Unauthorized { .. } | ShopifyError::NoToken { .. }
        )
    }
}

/// Admin API access tokens by shop domain (`SHOPIFY_TOKENS`: JSON
/// `{"<shop>.myshopify.com": "<token>"}`; Secrets Manager in the cloud).
#[derive(Clone, Default)]
pub struct Tokens(HashMap<String, String>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Tokens {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let map: HashMap<String, String> =
            serde_json::from_str(raw).map_err(|e| format!("expected {{\"<shop>\": \"<token>\"}}: {e}"))?;
        if let Some((shop, _)) = map.iter().find(|(_, t)| t.trim().is_empty()) {
            return Err(format!("{shop} has an empty token"));
        }
        Ok(Self(
            map.into_iter()
                .map(|(shop, token)| (shop.trim().to_ascii_lowercase(), token))
                .collect(),
        ))
    }

    fn get(&self, shop: &str) -> Option<&str> {
        self.0.get(&shop.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What a SKU lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemMatch {
    /// No item carries the SKU.
    None,
    /// Exactly one: its GraphQL id.
    One(String),
    /// More than one item carries it.
    Several,
}

/// One level at a location, as a page of them lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLevel {
    pub item: String,
    pub sku: Option<String>,
    pub available: Option<i64>,
}

/// One quantity of an `inventorySetQuantities` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetQuantity {
    pub item: String,
    pub location: String,
    pub quantity: i64,
    pub change_from: i64,
}

/// A user error of a mutation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserError {
    #[serde(default)]
    pub field: Option<Vec<String>>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: Option<String>,
}

impl UserError {
    /// The quantity (its index in the call) the error is about.
    pub fn quantity_index(&self) -> Option<usize> {
        match self.field.as_deref() {
            Some([input, quantities, index, ..]) if input == "input" && quantities == "quantities" => {
                index.parse().ok()
            }
            _ => None,
        }
    }
}

/// What became of an `inventorySetQuantities` call (all or nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// Every quantity was set.
    Applied,
    /// Nothing was set: these quantities' `changeFromQuantity` no longer
    /// matches the channel.
    Stale(Vec<usize>),
    /// Nothing was set, for another reason.
    Refused(Vec<UserError>),
}

#[derive(Deserialize)]
struct Answer {
    data: Option<Value>,
    errors: Option<Value>,
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
struct Extensions {
    cost: Option<Cost>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cost {
    requested_query_cost: Option<f64>,
    throttle_status: Option<ThrottleStatus>,
}

/// Calls made, as the connector reports them in its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub calls: u64,
    pub throttled: u64,
    pub retried: u64,
}

/// A shop's Admin GraphQL API.
pub struct AdminApi {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https://{shop}` in the cloud; the local stand-in's address locally.
    base: String,
    version: String,
    tokens: Tokens,
    pacers: Mutex<HashMap<String, Pacer>>,
    stats: Mutex<CallStats>,
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        message: message.into(),
    }
}

impl AdminApi {
    /// `base` holds `{shop}`; `version` is `YYYY-MM`.
    pub fn new(base: &str, version: &str, tokens: Tokens) -> Result<Self, ConfigError> {
        if !base.contains("{shop}") {
            return Err(invalid(
                "SHOPIFY_ADMIN_URL",
                format!("{base:?} must hold {{shop}}"),
            ));
        }
        let v = version.as_bytes();
        if !(v.len() == 7 && v[4] == b'-' && version.bytes().filter(u8::is_ascii_digit).count() == 6) {
            return Err(invalid(
                "SHOPIFY_API_VERSION",
                format!("{version:?} is not YYYY-MM"),
            ));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| invalid("SHOPIFY_ADMIN_URL", format!("no TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(https),
            base: base.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
            tokens,
            pacers: Mutex::new(HashMap::new()),
            stats: Mutex::new(CallStats::default()),
        })
    }

    /// From `SHOPIFY_ADMIN_URL` (default `https://{shop}`), `SHOPIFY_API_VERSION`
    /// (default 2026-10) and the tokens (`SHOPIFY_TOKENS_ARN` or `SHOPIFY_TOKENS`).
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let (raw, name) = config::secret_text(sdk, "SHOPIFY_TOKENS_ARN", "SHOPIFY_TOKENS").await?;
        let tokens = Tokens::parse(&raw).map_err(|m| invalid(name, m))?;
        Self::new(
            &config::var("SHOPIFY_ADMIN_URL").unwrap_or_else(|| "https://{shop}".into()),
            &config::var("SHOPIFY_API_VERSION").unwrap_or_else(|| "2026-10".into()),
            tokens,
        )
    }

    /// The calls made so far, and how many were throttled or retried.
    pub fn stats(&self) -> CallStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut CallStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    fn url(&self, shop: &str) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.base.replace("{shop}", shop),
            self.version
        )
    }

    fn pace(&self, shop: &str, cost: f64) -> Duration {
        self.pacers
            .lock()
            .map(|p| {
                p.get(shop)
                    .map_or(Duration::ZERO, |p| p.wait_for(cost, Instant::now()))
            })
            .unwrap_or_default()
    }

    fn heard(&self, shop: &str, status: ThrottleStatus) {
        if let Ok(mut p) = self.pacers.lock() {
            p.entry(shop.to_owned())
                .or_default()
                .heard(status, Instant::now());
        }
    }

    /// One exchange: the status, the `Retry-After` seconds if any, the body.
    async fn exchange(
        &self,
        shop: &str,
        token: &str,
        body: &Value,
    ) -> Result<(u16, Option<f64>, Bytes), ShopifyError> {
        let transport = |message: String| ShopifyError::Transport {
            shop: shop.to_owned(),
            message,
        };
        let request = http::Request::post(self.url(shop))
            .header("X-Shopify-Access-Token", token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| transport(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| transport(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| transport("the answer stalled".into()))?
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        Ok((status, retry_after, body))
    }

    /// Runs one GraphQL operation that costs about `cost` points, paced and
    /// retried until `deadline`; returns its `data`.
    pub async fn call(
        &self,
        shop: &str,
        query: &str,
        variables: Value,
        cost: f64,
        deadline: Instant,
    ) -> Result<Value, ShopifyError> {
        let token = self.tokens.get(shop).ok_or_else(|| ShopifyError::NoToken {
            shop: shop.to_owned(),
        })?;
        let body = json!({"query": query, "variables": variables});
        let mut backoff = FIRST_BACKOFF;
        let mut wait = self.pace(shop, cost);
        loop {
            if !wait.is_zero() {
                if Instant::now() + wait > deadline {
                    return Err(ShopifyError::OutOfTime {
                        shop: shop.to_owned(),
                        last: format!("would wait {} ms more", wait.as_millis()),
                    });
                }
                tokio::time::sleep(wait).await;
            }
            self.count(|s| s.calls += 1);
            let (status, retry_after, bytes) = match self.exchange(shop, token, &body).await {
                Ok(r) => r,
                Err(e) => {
                    // A dropped connection or a timeout: as a 5xx, try again.
                    tracing::warn!(shop, error = %e, "Shopify call failed; retrying");
                    self.count(|s| s.retried += 1);
                    wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            match status {
                401 | 403 => {
                    return Err(ShopifyError::Unauthorized {
                        shop: shop.to_owned(),
                        status,
                    })
                }
                429 => {
                    self.count(|s| s.throttled += 1);
                    wait = Duration::from_secs_f64(retry_after.unwrap_or(1.0).clamp(0.05, 60.0));
                    continue;
                }
                500..=599 => {
                    tracing::warn!(shop, status, "Shopify answered a server error; retrying");
                    self.count(|s| s.retried += 1);
                    wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                200 => {}
                _ => {
                    return Err(ShopifyError::Http {
                        shop: shop.to_owned(),
                        status,
                        body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    })
                }
            }
            let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| ShopifyError::Malformed {
                shop: shop.to_owned(),
                message: e.to_string(),
            })?;
            let cost_seen = answer.extensions.as_ref().and_then(|e| e.cost.as_ref());
            if let Some(status) = cost_seen.and_then(|c| c.throttle_status) {
                self.heard(shop, status);
            }
            if let Some(errors) = answer.errors.filter(|e| !e.is_null()) {
                let throttled = errors
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["extensions"]["code"] == "THROTTLED"));
                if throttled {
                    self.count(|s| s.throttled += 1);
                    let requested = cost_seen.and_then(|c| c.requested_query_cost).unwrap_or(cost);
                    // Wait for the points the call lacks (at least a little: the
                    // bucket leaks continuously, the status was a snapshot).
                    wait = self.pace(shop, requested).max(Duration::from_millis(50));
                    continue;
                }
                return Err(ShopifyError::Query {
                    shop: shop.to_owned(),
                    messages: messages(&errors),
                });
            }
            return answer.data.ok_or_else(|| ShopifyError::Malformed {
                shop: shop.to_owned(),
                message: "no data and no errors".into(),
            });
        }
    }

    /// Which items carry each SKU (exact match), up to [`super::LOOKUPS_PER_QUERY`] a call.
    pub async fn find_items(
        &self,
        shop: &str,
        skus: &[String],
        deadline: Instant,
    ) -> Result<Vec<ItemMatch>, ShopifyError> {
        let mut out = Vec::with_capacity(skus.len());
        for chunk in skus.chunks(super::LOOKUPS_PER_QUERY) {
            let mut vars = serde_json::Map::new();
            let mut params = Vec::new();
            let mut fields = String::new();
            for (i, sku) in chunk.iter().enumerate() {
                params.push(format!("$q{i}: String!"));
                fields.push_str(&format!(
                    "s{i}: inventoryItems(first: 2, query: $q{i}) {{ nodes {{ id sku }} }}\n"
                ));
                vars.insert(format!("q{i}"), Value::String(sku_query(sku)));
            }
            let query = format!("query FindItems({}) {{\n{fields}}}", params.join(", "));
            let data = self
                .call(
                    shop,
                    &query,
                    Value::Object(vars),
                    4.0 * chunk.len() as f64,
                    deadline,
                )
                .await?;
            for (i, sku) in chunk.iter().enumerate() {
                let nodes = data[format!("s{i}")]["nodes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                // The search matches loosely: only an item whose SKU is exactly this one counts.
                let exact: Vec<&str> = nodes
                    .iter()
                    .filter(|n| n["sku"].as_str() == Some(sku.as_str()))
                    .filter_map(|n| n["id"].as_str())
                    .collect();
                out.push(match exact.as_slice() {
                    [] => ItemMatch::None,
                    [one] => ItemMatch::One((*one).to_owned()),
                    _ => ItemMatch::Several,
                });
            }
        }
        Ok(out)
    }

    /// `available` of each item at `location` (`None`: not stocked there, or no such item).
    pub async fn levels(
        &self,
        shop: &str,
        location: &str,
        items: &[String],
        deadline: Instant,
    ) -> Result<Vec<Option<i64>>, ShopifyError> {
        Ok(self
            .items_at(shop, location, items, deadline)
            .await?
            .into_iter()
            .map(|i| i.and_then(|(_, available)| available))
            .collect())
    }

    /// Each item's SKU and `available` at `location` (`None`: no such item).
    pub async fn items_at(
        &self,
        shop: &str,
        location: &str,
        items: &[String],
        deadline: Instant,
    ) -> Result<Vec<Option<(String, Option<i64>)>>, ShopifyError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(super::LOOKUPS_PER_QUERY) {
            let mut vars =
                serde_json::Map::from_iter([("location".to_owned(), Value::String(location.to_owned()))]);
            let mut params = vec!["$location: ID!".to_owned()];
            let mut fields = String::new();
            for (i, item) in chunk.iter().enumerate() {
                params.push(format!("$i{i}: ID!"));
                fields.push_str(&format!(
                    "i{i}: inventoryItem(id: $i{i}) {{ sku inventoryLevel(locationId: $location) {{ quantities(names: [\"available\"]) {{ name quantity }} }} }}\n"
                ));
                vars.insert(format!("i{i}"), Value::String(item.clone()));
            }
            let query = format!("query ReadLevels({}) {{\n{fields}}}", params.join(", "));
            let data = self
                .call(
                    shop,
                    &query,
                    Value::Object(vars),
                    3.0 * chunk.len() as f64,
                    deadline,
                )
                .await?;
            for i in 0..chunk.len() {
                let item = &data[format!("i{i}")];
                if item.is_null() {
                    out.push(None);
                    continue;
                }
                let available = item["inventoryLevel"]["quantities"].as_array().and_then(|q| {
                    q.iter()
                        .find(|q| q["name"] == "available")
                        .and_then(|q| q["quantity"].as_i64())
                });
                out.push(Some((
                    item["sku"].as_str().unwrap_or_default().to_owned(),
                    available,
                )));
            }
        }
        Ok(out)
    }

    /// One page of the levels at `location`: each item, its SKU and
    /// `available`, and the cursor of the next page (`None`: the last).
    pub async fn location_levels(
        &self,
        shop: &str,
        location: &str,
        first: usize,
        after: Option<&str>,
        deadline: Instant,
    ) -> Result<(Vec<ChannelLevel>, Option<String>), ShopifyError> {
        const QUERY: &str = "query LocationLevels($location: ID!, $first: Int!, $after: String) {
  location(id: $location) {
    inventoryLevels(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { item { id sku } quantities(names: [\"available\"]) { name quantity } }
    }
  }
}";
        let data = self
            .call(
                shop,
                QUERY,
                json!({"location": location, "first": first, "after": after}),
                3.0 * first as f64 + 2.0,
                deadline,
            )
            .await?;
        let levels = &data["location"]["inventoryLevels"];
        let page = levels["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| ChannelLevel {
                        item: n["item"]["id"].as_str().unwrap_or_default().to_owned(),
                        sku: n["item"]["sku"]
                            .as_str()
                            .filter(|s| !s.trim().is_empty())
                            .map(str::to_owned),
                        available: n["quantities"]
                            .as_array()
                            .and_then(|q| q.iter().find(|q| q["name"] == "available"))
                            .and_then(|q| q["quantity"].as_i64()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next = (levels["pageInfo"]["hasNextPage"] == true)
            .then(|| levels["pageInfo"]["endCursor"].as_str().map(str::to_owned))
            .flatten();
        Ok((page, next))
    }

    /// Sets `available` for every quantity, all or nothing, each only if the
    /// channel still shows its `change_from`; `key` makes a retry apply once.
    pub async fn set_quantities(
        &self,
        shop: &str,
        key: &str,
        reference: &str,
        quantities: &[SetQuantity],
        deadline: Instant,
    ) -> Result<SetOutcome, ShopifyError> {
        const MUTATION: &str = "mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}";
        let input = json!({
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": reference,
            "quantities": quantities.iter().map(|q| json!({
                "inventoryItemId": q.item,
                "locationId": q.location,
                // Never a negative figure on a channel.
                "quantity": q.quantity.max(0),
                "changeFromQuantity": q.change_from,
            })).collect::<Vec<_>>(),
        });
        let data = self
            .call(
                shop,
                MUTATION,
                json!({"input": input, "key": key}),
                10.0,
                deadline,
            )
            .await?;
        let errors: Vec<UserError> =
            serde_json::from_value(data["inventorySetQuantities"]["userErrors"].clone()).map_err(|e| {
                ShopifyError::Malformed {
                    shop: shop.to_owned(),
                    message: format!("userErrors: {e}"),
                }
            })?;
        if errors.is_empty() {
            return Ok(SetOutcome::Applied);
        }
        let stale: Vec<usize> = errors
            .iter()
            .filter(|e| e.code.as_deref() == Some("CHANGE_FROM_QUANTITY_STALE"))
            .filter_map(UserError::quantity_index)
            .collect();
        if stale.len() == errors.len() {
            Ok(SetOutcome::Stale(stale))
        } else {
            Ok(SetOutcome::Refused(errors))
        }
    }
}

/// Shopify's search syntax for an exact SKU: quoted, with quotes and
/// backslashes escaped.
pub fn sku_query(sku: &str) -> String {
    format!("sku:'{}'", sku.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn messages(errors: &Value) -> String {
    match errors {
        Value::Array(a) => a
            .iter()
            .map(|e| e["message"].as_str().map_or_else(|| e.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_never_print() {
        let t = Tokens::parse(r#"{"Demo.myshopify.com": "shpat_secret"}"#).unwrap();
        assert_eq!(t.get("demo.MYSHOPIFY.com"), Some("shpat_secret"));
        assert!(!format!("{t:?}").contains("shpat_secret"));
        assert!(Tokens::parse(r#"{"demo.myshopify.com": " "}"#).is_err());
        assert!(Tokens::parse("shpat_secret").is_err());
    }

    #[test]
    fn configuration_is_checked() {
        assert!(AdminApi::new("https://{shop}", "2026-10", Tokens::default()).is_ok());
        assert!(AdminApi::new("https://example.com", "2026-10", Tokens::default()).is_err());
        assert!(AdminApi::new("https://{shop}", "latest", Tokens::default()).is_err());
        let api = AdminApi::new("http://127.0.0.1:1/{shop}/", "2026-10", Tokens::default()).unwrap();
        assert_eq!(
            api.url("a.myshopify.com"),
            "http://127.0.0.1:1/a.myshopify.com/admin/api/2026-10/graphql.json"
        );
    }

    #[test]
    fn a_sku_is_searched_for_exactly() {
        assert_eq!(sku_query("JACKET-BLUE"), "sku:'JACKET-BLUE'");
        assert_eq!(sku_query(r"it's\here"), r"sku:'it\'s\\here'");
    }

    #[test]
    fn a_user_error_names_its_quantity() {
        let e: UserError = serde_json::from_value(json!({
            "field": ["input", "quantities", "3", "changeFromQuantity"],
            "message": "stale", "code": "CHANGE_FROM_QUANTITY_STALE"
        }))
        .unwrap();
        assert_eq!(e.quantity_index(), Some(3));
        let other: UserError =
            serde_json::from_value(json!({"field": ["input", "reason"], "message": "x"})).unwrap();
        assert_eq!(other.quantity_index(), None);
    }
}
