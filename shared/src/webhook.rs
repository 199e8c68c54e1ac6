//! What every webhook function does alike: a `POST` of at most
//! [`MAX_BODY_BYTES`], its signature checked, other Shopify topics
//! acknowledged and ignored, the body parsed once, the event applied through
//! the store, and every refusal or failure answered as JSON. A function says
//! only what differs ([`Webhook`]): its topics, its parsers, its store call
//! and its metrics.

use std::future::Future;

use http::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::api::{self, header, MAX_BODY_BYTES};
use crate::config::{self, Config, ConfigError, LocationRules};
use crate::domain::{Actor, InvalidInput};
use crate::signature::{self, Endpoint, GenericSenders, Sender, SignatureError, WebhookSecrets};
use crate::store::{StockStore, StoreError};

/// Header carrying Shopify's delivery id: logged, never part of a key (a
/// new delivery of the same order is still a duplicate).
pub const SHOPIFY_WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";

/// Everything a webhook function needs, built once per container.
pub struct App {
    pub store: StockStore,
    pub rules: LocationRules,
    pub secrets: WebhookSecrets,
}

impl App {
    /// Reads the configuration and the webhook secrets.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        let secrets = config::webhook_secrets(&sdk).await?;
        Ok(Self {
            store: StockStore::from_config(&sdk, &cfg),
            rules: cfg.locations,
            secrets,
        })
    }
}

/// One webhook function: what it accepts, how it reads it, what it applies.
pub trait Webhook {
    /// What a delivery carries, parsed: an order, a return.
    type Event: Send + Sync;
    /// What applying it answers, as JSON with a 200.
    type Outcome: Serialize;

    /// Shopify topics that move stock here; a delivery without a topic is
    /// taken to be one. Others are acknowledged and ignored.
    const SHOPIFY_TOPICS: &'static [&'static str];
    /// What a sender's secret must be listed for to post here.
    const ENDPOINT: Endpoint;
    /// How a generic body names its sender, whose secret must sign it; the
    /// ledger's actor is `<kind>:<name>`.
    const GENERIC: GenericSenders;

    /// Reads a Shopify delivery from `shop`.
    fn parse_shopify(body: &[u8], shop: &str, rules: &LocationRules) -> Result<Self::Event, InvalidInput>;

    /// Reads a generic delivery from the sender its signature proved.
    fn parse_generic(body: &[u8], sender: &str, rules: &LocationRules) -> Result<Self::Event, InvalidInput>;

    /// Applies the event through the store; logs it (with the delivery's
    /// id) and counts it.
    fn apply(
        store: &StockStore,
        event: &Self::Event,
        actor: &Actor,
        webhook_id: &str,
    ) -> impl Future<Output = Result<Self::Outcome, StoreError>> + Send;
}

/// Handles one delivery.
pub async fn handle<W: Webhook, B: AsRef<[u8]>>(app: &App, req: &Request<B>) -> Response<String> {
    let webhook_id = header(req.headers(), SHOPIFY_WEBHOOK_ID_HEADER).unwrap_or("-");
    let (event, actor) = match prepare::<W, B>(app, req) {
        Ok(v) => v,
        Err(refusal) => return refusal.respond(webhook_id),
    };
    match W::apply(&app.store, &event, &actor, webhook_id).await {
        Ok(outcome) => answer(&outcome),
        // 503 or 500, safe to retry either way: the receipt makes a retried
        // delivery exactly-once.
        Err(e) => api::store_failure(e),
    }
}

/// Who sent a delivery, once its method, size and signature (by the
/// sender's own secret, listed for `endpoint`) are checked.
pub fn authenticated<B: AsRef<[u8]>>(
    secrets: &WebhookSecrets,
    req: &Request<B>,
    endpoint: Endpoint,
    generic: GenericSenders,
) -> Result<Sender, Refusal> {
    let body = req.body().as_ref();
    check(req.method(), body)?;
    Ok(signature::authenticate(
        req.headers(),
        body,
        secrets,
        endpoint,
        generic,
        crate::clock::epoch_seconds(),
    )?)
}

/// The part of a delivery that needs no store: method and size, signature,
/// topic, and the event it carries with the actor behind it.
pub fn prepare<W: Webhook, B: AsRef<[u8]>>(
    app: &App,
    req: &Request<B>,
) -> Result<(W::Event, Actor), Refusal> {
    let body = req.body().as_ref();
    match authenticated(&app.secrets, req, W::ENDPOINT, W::GENERIC)? {
        Sender::Shopify { shop, topic } => {
            if let Some(topic) = topic.filter(|t| !W::SHOPIFY_TOPICS.contains(&t.as_str())) {
                return Err(Refusal::Ignored(format!(
                    "topic {topic} does not move stock here"
                )));
            }
            let event = W::parse_shopify(body, &shop, &app.rules)?;
            Ok((event, Actor::system(&format!("shopify:{shop}"))))
        }
        Sender::Generic { name } => {
            let event = W::parse_generic(body, &name, &app.rules)?;
            Ok((event, Actor::system(&format!("{}:{name}", W::GENERIC.kind))))
        }
    }
}

/// The answer to an applied, oversold or duplicate delivery.
pub fn answer<T: Serialize>(outcome: &T) -> Response<String> {
    api::json(StatusCode::OK, outcome)
}

/// Why a delivery was refused before it touched stock.
#[derive(Debug)]
pub enum Refusal {
    /// Answered with this status, error code and reason.
    Status(StatusCode, &'static str, String),
    /// Accepted but not for this function (e.g. another Shopify topic): 200, so the sender stops retrying.
    Ignored(String),
}

impl From<SignatureError> for Refusal {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::NotJson(_) => {
                Refusal::Status(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            }
            _ => Refusal::Status(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
        }
    }
}

impl From<InvalidInput> for Refusal {
    fn from(e: InvalidInput) -> Self {
        Refusal::Status(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    }
}

impl Refusal {
    /// The answer to the sender, logged with the delivery's id.
    pub fn respond(self, webhook_id: &str) -> Response<String> {
        match self {
            Refusal::Status(status, code, message) => {
                tracing::info!(%status, %message, webhook_id, "webhook refused");
                api::error(status, code, message)
            }
            Refusal::Ignored(message) => {
                tracing::info!(%message, webhook_id, "webhook ignored");
                api::json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ignored", "message": message}),
                )
            }
        }
    }
}

/// Webhooks are POSTs of at most [`MAX_BODY_BYTES`].
fn check(method: &Method, body: &[u8]) -> Result<(), Refusal> {
    if method != Method::POST {
        return Err(Refusal::Status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST".into(),
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Refusal::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Location;
    use crate::signature::{
        sign_generic_now, sign_shopify, SHOPIFY_HMAC_HEADER, SHOPIFY_SHOP_HEADER, SHOPIFY_TOPIC_HEADER,
        STOCKROOM_SIGNATURE_HEADER,
    };

    /// A webhook whose events are their body's `n`, applied by a fake store
    /// call: 1 is contention, 2 a failed request, anything else an answer.
    struct Echo;

    impl Webhook for Echo {
        type Event = (String, i64);
        type Outcome = serde_json::Value;

        const SHOPIFY_TOPICS: &'static [&'static str] = &["echo/a", "echo/b"];
        const ENDPOINT: Endpoint = Endpoint::Returns;
        const GENERIC: GenericSenders = GenericSenders {
            field: "source",
            kind: "source",
            default: Some("anon"),
        };

        fn parse_shopify(body: &[u8], shop: &str, _: &LocationRules) -> Result<Self::Event, InvalidInput> {
            Self::parse_generic(body, shop, &rules())
        }

        fn parse_generic(body: &[u8], sender: &str, _: &LocationRules) -> Result<Self::Event, InvalidInput> {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| InvalidInput::field("body", e.to_string()))?;
            let n = v["n"]
                .as_i64()
                .ok_or_else(|| InvalidInput::field("n", "is required"))?;
            Ok((sender.to_owned(), n))
        }

        async fn apply(
            _: &StockStore,
            event: &Self::Event,
            actor: &Actor,
            webhook_id: &str,
        ) -> Result<Self::Outcome, StoreError> {
            match event.1 {
                1 => Err(StoreError::Contention(12)),
                2 => Err(StoreError::Dynamo("down".into())),
                n => Ok(serde_json::json!({"n": n, "actor": actor.as_str(), "webhook_id": webhook_id})),
            }
        }
    }

    fn rules() -> LocationRules {
        LocationRules::new(Location::parse("warehouse").unwrap(), "", "").unwrap()
    }

    fn app() -> App {
        App {
            store: StockStore::offline(),
            rules: rules(),
            secrets: WebhookSecrets::parse(
                r#"{"source:desk": {"secret": "desk-secret-0123456789", "endpoints": ["returns"]},
                    "source:anon": {"secret": "anon-secret-0123456789", "endpoints": ["returns"]},
                    "shop.myshopify.com": {"secret": "shop-secret-0123456789", "endpoints": ["returns"]}}"#,
            )
            .unwrap(),
        }
    }

    fn generic(body: &str, secret: &str) -> Request<Vec<u8>> {
        Request::post("/")
            .header(
                STOCKROOM_SIGNATURE_HEADER,
                sign_generic_now(secret.as_bytes(), body.as_bytes()),
            )
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn shopify(body: &str, topic: Option<&str>) -> Request<Vec<u8>> {
        let mut req = Request::post("/")
            .header(
                SHOPIFY_HMAC_HEADER,
                sign_shopify(b"shop-secret-0123456789", body.as_bytes()),
            )
            .header(SHOPIFY_SHOP_HEADER, "Shop.myshopify.com")
            .header(SHOPIFY_WEBHOOK_ID_HEADER, "wh-1");
        if let Some(topic) = topic {
            req = req.header(SHOPIFY_TOPIC_HEADER, topic);
        }
        req.body(body.as_bytes().to_vec()).unwrap()
    }

    async fn call(req: Request<Vec<u8>>) -> (u16, serde_json::Value) {
        let res = handle::<Echo, _>(&app(), &req).await;
        (res.status().as_u16(), serde_json::from_str(res.body()).unwrap())
    }

    const DESK: &str = "desk-secret-0123456789";
    const ANON: &str = "anon-secret-0123456789";

    #[tokio::test]
    async fn deliveries_are_parsed_with_their_actor_and_answered() {
        let (status, out) = call(generic(r#"{"source": "desk", "n": 5}"#, DESK)).await;
        assert_eq!((status, out["actor"].as_str()), (200, Some("source:desk")));
        assert_eq!(out["webhook_id"], "-");
        let (status, out) = call(shopify(r#"{"n": 6}"#, Some("echo/b"))).await;
        assert_eq!(status, 200);
        assert_eq!(
            out,
            serde_json::json!({"n": 6, "actor": "shopify:shop.myshopify.com", "webhook_id": "wh-1"})
        );
        // No topic: taken to be this function's.
        assert_eq!(call(shopify(r#"{"n": 7}"#, None)).await.0, 200);
    }

    #[tokio::test]
    async fn refusals_and_failures_are_answered_as_json() {
        let (status, out) = call(shopify(r#"{"n": 6}"#, Some("orders/create"))).await;
        assert_eq!((status, out["status"].as_str()), (200, Some("ignored")));
        let (status, out) = call(generic(r#"{"source": "desk", "n": 5}"#, ANON)).await;
        assert_eq!((status, out["error"].as_str()), (401, Some("unauthorized")));
        let (status, out) = call(generic(r#"{"source": "stranger", "n": 5}"#, ANON)).await;
        assert_eq!((status, out["error"].as_str()), (401, Some("unauthorized")));
        let (status, out) = call(generic(r#"{"source": "desk"}"#, DESK)).await;
        assert_eq!((status, out["error"].as_str()), (400, Some("bad_request")));
        assert!(out["message"].as_str().unwrap().starts_with("n: "));
        let (status, out) = call(generic(r#"{"n": 1}"#, ANON)).await;
        assert_eq!((status, out["error"].as_str()), (503, Some("busy")));
        let (status, out) = call(generic(r#"{"n": 2}"#, ANON)).await;
        assert_eq!((status, out["error"].as_str()), (500, Some("internal")));
        // A 500 says nothing of what failed inside.
        assert!(!out["message"].as_str().unwrap().contains("down"), "{out}");
        let get = Request::get("/").body(Vec::new()).unwrap();
        assert_eq!(call(get).await.0, 405);
        let huge = format!(r#"{{"n": 3, "pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let (status, out) = call(generic(&huge, ANON)).await;
        assert_eq!((status, out["error"].as_str()), (413, Some("payload_too_large")));
    }
}
