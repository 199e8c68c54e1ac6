//! The stock API's requests as data: which method, path, query and body each
//! command sends, and where a target's base URL and signing region come from.

use bytes::Bytes;
use http::{Method, Request};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use crate::error::CliError;

/// Everything but SigV4's unreserved characters is encoded, so the URL the CLI
/// sends is already in canonical form and the signature covers what arrives.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One path segment (a SKU, a channel, a run id), percent-encoded.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Where requests go: the base URL (no trailing slash) and, in the cloud, the
/// region to sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub base: String,
    /// `Some` signs every request (SigV4, service `lambda`).
    pub sign_region: Option<String>,
}

impl Target {
    /// The local stack: plain HTTP to `cargo lambda watch`'s function URL.
    pub fn local(lambda_url: &str) -> Self {
        Self {
            base: format!("{}/lambda-url/stock-api", lambda_url.trim_end_matches('/')),
            sign_region: None,
        }
    }

    /// A stock-api function URL; the region is read from its host
    /// (`<id>.lambda-url.<region>.on.aws`), else `fallback` (the AWS config's).
    pub fn cloud(url: &str, fallback: Option<&str>) -> Result<Self, CliError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| CliError::Usage(format!("--url {url:?}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| CliError::Usage(format!("--url {url:?} has no host")))?;
        if uri.scheme_str() != Some("https") {
            return Err(CliError::Usage(format!(
                "--url {url:?}: a function URL is https (use --local for the local stack)"
            )));
        }
        let region = region_of(host)
            .or_else(|| fallback.map(str::to_owned))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no region in {host:?} and none configured (AWS_REGION or the profile's region)"
                ))
            })?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            sign_region: Some(region),
        })
    }
}

/// The region of a function URL's host, `<id>.lambda-url.<region>.on.aws`.
pub fn region_of(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| *l == "lambda-url")?;
    labels
        .get(at + 1)
        .filter(|r| !r.is_empty() && labels.get(at + 2) == Some(&"on"))
        .map(|r| (*r).to_owned())
}

/// One stock API call, before it is addressed and signed.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    /// Already percent-encoded, starting with `/`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl ApiRequest {
    fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn get(path: String) -> Self {
        Self::new(Method::GET, path)
    }

    fn with_body(method: Method, path: String, body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::new(method, path)
        }
    }

    /// The HTTP request to `target`: the host header is set (SigV4 signs it)
    /// and a JSON body carries its content type.
    pub fn to_http(&self, target: &Target) -> Result<Request<Bytes>, CliError> {
        let mut url = format!("{}{}", target.base, self.path);
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", segment(v)))
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e| CliError::Usage(format!("{url:?}: {e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| CliError::Usage(format!("{url:?} has no host")))?
            .to_string();
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("stockroom-cli/", env!("CARGO_PKG_VERSION")),
            );
        let body = match &self.body {
            Some(v) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        for (k, v) in &self.headers {
            builder = builder.header(*k, v);
        }
        builder
            .body(body)
            .map_err(|e| CliError::Usage(format!("request: {e}")))
    }
}

/// Adds `key: value` to a JSON object when the value is there.
fn put(body: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        body.insert(key.to_owned(), v);
    }
}

/// `GET /stock/{sku}`.
pub fn stock(sku: &str) -> ApiRequest {
    ApiRequest::get(format!("/stock/{}", segment(sku)))
}

/// `GET /stock/{sku}/ledger?limit=&cursor=`.
pub fn ledger(sku: &str, limit: Option<u32>, cursor: Option<&str>) -> ApiRequest {
    let mut r = ApiRequest::get(format!("/stock/{}/ledger", segment(sku)));
    if let Some(l) = limit {
        r.query.push(("limit", l.to_string()));
    }
    if let Some(c) = cursor {
        r.query.push(("cursor", c.to_owned()));
    }
    r
}

/// What an adjustment changes: exactly one of a delta or an absolute figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Delta(i64),
    Set(i64),
}

/// `POST /adjustments`'s fields (the API checks them; the CLI only sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub sku: String,
    pub location: String,
    pub change: Change,
    pub reason: String,
    pub actor: Option<String>,
    pub note: Option<String>,
    pub reference: Option<String>,
    pub expected: Option<i64>,
    pub idempotency_key: Option<String>,
}

/// `POST /adjustments` (header `Idempotency-Key` when given).
pub fn adjust(a: &Adjustment) -> ApiRequest {
    let mut body = Map::new();
    body.insert("sku".into(), json!(a.sku));
    body.insert("location".into(), json!(a.location));
    match a.change {
        Change::Delta(n) => body.insert("delta".into(), json!(n)),
        Change::Set(n) => body.insert("set".into(), json!(n)),
    };
    body.insert("reason".into(), json!(a.reason));
    put(&mut body, "actor", a.actor.as_ref().map(|v| json!(v)));
    put(&mut body, "note", a.note.as_ref().map(|v| json!(v)));
    put(&mut body, "reference", a.reference.as_ref().map(|v| json!(v)));
    put(&mut body, "expected", a.expected.map(|v| json!(v)));
    let mut r = ApiRequest::with_body(Method::POST, "/adjustments".into(), Value::Object(body));
    if let Some(k) = &a.idempotency_key {
        r.headers.push(("idempotency-key", k.clone()));
    }
    r
}

/// `GET /feeds/held`.
pub fn feeds_held() -> ApiRequest {
    ApiRequest::get("/feeds/held".into())
}

/// `POST /feeds/release`.
pub fn feeds_release(feed: &str, etag: &str, actor: &str, reason: &str) -> ApiRequest {
    ApiRequest::with_body(
        Method::POST,
        "/feeds/release".into(),
        json!({"feed": feed, "etag": etag, "actor": actor, "reason": reason}),
    )
}

/// `GET /channels/{name}/mode`.
pub fn mode(channel: &str) -> ApiRequest {
    ApiRequest::get(format!("/channels/{}/mode", segment(channel)))
}

/// `PUT /channels/{name}/mode`.
pub fn set_mode(channel: &str, mode: &str, actor: &str, reason: &str) -> ApiRequest {
    ApiRequest::with_body(
        Method::PUT,
        format!("/channels/{}/mode", segment(channel)),
        json!({"mode": mode, "actor": actor, "reason": reason}),
    )
}

/// `POST /channels/{name}/reconcile`.
pub fn reconcile(channel: &str, actor: Option<&str>, reason: Option<&str>) -> ApiRequest {
    let mut body = Map::new();
    put(&mut body, "actor", actor.map(|v| json!(v)));
    put(&mut body, "reason", reason.map(|v| json!(v)));
    ApiRequest::with_body(
        Method::POST,
        format!("/channels/{}/reconcile", segment(channel)),
        Value::Object(body),
    )
}

/// `POST /channels/{name}/import`.
pub fn import(channel: &str, actor: &str, reason: &str) -> ApiRequest {
    ApiRequest::with_body(
        Method::POST,
        format!("/channels/{}/import", segment(channel)),
        json!({"actor": actor, "reason": reason}),
    )
}

/// `GET /channels/{name}/runs/{id}`.
pub fn run(channel: &str, id: &str) -> ApiRequest {
    ApiRequest::get(format!("/channels/{}/runs/{}", segment(channel), segment(id)))
}

/// `GET /channels/{name}/drift?limit=&cursor=`.
pub fn drift(channel: &str, cursor: Option<&str>) -> ApiRequest {
    let mut r = ApiRequest::get(format!("/channels/{}/drift", segment(channel)));
    if let Some(c) = cursor {
        r.query.push(("cursor", c.to_owned()));
    }
    r
}

/// Which SKUs a resync republishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skus {
    These(Vec<String>),
    All,
}

/// `POST /channels/{name}/resync`.
pub fn resync(channel: &str, skus: &Skus, actor: &str, reason: &str) -> ApiRequest {
    let mut body = json!({"actor": actor, "reason": reason});
    match skus {
        Skus::These(list) => body["skus"] = json!(list),
        Skus::All => body["all"] = json!(true),
    }
    ApiRequest::with_body(
        Method::POST,
        format!("/channels/{}/resync", segment(channel)),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Target {
        Target::local("http://127.0.0.1:9000/")
    }

    #[test]
    fn local_target_is_the_watch_url_of_stock_api() {
        let r = stock("JKT BLUE/M").to_http(&local()).unwrap();
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:9000/lambda-url/stock-api/stock/JKT%20BLUE%2FM"
        );
        assert_eq!(r.headers()["host"], "127.0.0.1:9000");
        assert_eq!(r.method(), Method::GET);
        assert!(r.body().is_empty());
        assert!(local().sign_region.is_none());
    }

    #[test]
    fn the_region_comes_from_the_function_url() {
        let t = Target::cloud("https://abc123.lambda-url.eu-west-1.on.aws/", Some("us-east-1")).unwrap();
        assert_eq!(t.sign_region.as_deref(), Some("eu-west-1"));
        assert_eq!(t.base, "https://abc123.lambda-url.eu-west-1.on.aws");
        let r = ledger("A", Some(5), Some("x+y/=")).to_http(&t).unwrap();
        assert_eq!(r.headers()["host"], "abc123.lambda-url.eu-west-1.on.aws");
        assert_eq!(
            r.uri().to_string(),
            "https://abc123.lambda-url.eu-west-1.on.aws/stock/A/ledger?limit=5&cursor=x%2By%2F%3D"
        );
        // A custom domain: the configured region.
        let t = Target::cloud("https://stock.example.com", Some("ap-south-1")).unwrap();
        assert_eq!(t.sign_region.as_deref(), Some("ap-south-1"));
        assert!(matches!(
            Target::cloud("https://stock.example.com", None),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            Target::cloud("http://abc.lambda-url.eu-west-1.on.aws", None),
            Err(CliError::Usage(_))
        ));
        assert_eq!(
            region_of("x.lambda-url.us-east-2.on.aws"),
            Some("us-east-2".into())
        );
        assert_eq!(region_of("lambda-url.example.com"), None);
    }

    #[test]
    fn an_adjustment_carries_only_what_was_given() {
        let a = Adjustment {
            sku: "CAP".into(),
            location: "shop-1".into(),
            change: Change::Set(4),
            reason: "stocktake".into(),
            actor: None,
            note: Some("recount".into()),
            reference: None,
            expected: Some(5),
            idempotency_key: Some("k-1".into()),
        };
        let r = adjust(&a);
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/adjustments");
        assert_eq!(
            r.body,
            Some(
                json!({"sku": "CAP", "location": "shop-1", "set": 4, "reason": "stocktake", "note": "recount", "expected": 5})
            )
        );
        let h = r.to_http(&local()).unwrap();
        assert_eq!(h.headers()["idempotency-key"], "k-1");
        assert_eq!(h.headers()["content-type"], "application/json");
        let b: Value = serde_json::from_slice(h.body()).unwrap();
        assert_eq!(b["set"], 4);
        let d = adjust(&Adjustment {
            change: Change::Delta(-2),
            actor: Some("maria".into()),
            idempotency_key: None,
            ..a
        });
        assert_eq!(d.body.as_ref().unwrap()["delta"], -2);
        assert_eq!(d.body.as_ref().unwrap()["actor"], "maria");
        assert!(d.body.as_ref().unwrap().get("set").is_none());
        assert!(d.headers.is_empty());
    }

    #[test]
    fn channel_routes_follow_the_contract() {
        assert_eq!(mode("web").path, "/channels/web/mode");
        let m = set_mode("web", "live", "ops", "trusted");
        assert_eq!(
            (m.method.clone(), m.body.unwrap()),
            (
                Method::PUT,
                json!({"mode": "live", "actor": "ops", "reason": "trusted"})
            )
        );
        let r = resync("web", &Skus::These(vec!["A".into(), "B".into()]), "ops", "dlq");
        assert_eq!(
            r.body.unwrap(),
            json!({"skus": ["A", "B"], "actor": "ops", "reason": "dlq"})
        );
        let r = resync("web", &Skus::All, "ops", "dlq");
        assert_eq!(
            r.body.unwrap(),
            json!({"all": true, "actor": "ops", "reason": "dlq"})
        );
        assert_eq!(reconcile("web", None, None).body.unwrap(), json!({}));
        assert_eq!(import("web", "ops", "first").path, "/channels/web/import");
        assert_eq!(run("web", "r 1").path, "/channels/web/runs/r%201");
        assert_eq!(drift("web", Some("c")).query, vec![("cursor", "c".to_string())]);
        assert_eq!(feeds_held().path, "/feeds/held");
        assert_eq!(
            feeds_release("acme/a.csv", "\"e\"", "ops", "checked")
                .body
                .unwrap(),
            json!({"feed": "acme/a.csv", "etag": "\"e\"", "actor": "ops", "reason": "checked"})
        );
    }
}
