//! `sale-webhook`: a function URL that takes sale webhooks (Shopify and the
//! generic signed format), checks the signature, and applies the sale through
//! the stock store. No business rule lives here.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use stockroom::alerts::{self, Alerts, OversellAlert};
use stockroom::api::{self, header, MAX_BODY_BYTES};
use stockroom::config::{self, Config, ConfigError, LocationRules};
use stockroom::domain::Actor;
use stockroom::order::{self, Order};
use stockroom::signature::{self, WebhookSecrets, SHOPIFY_HMAC_HEADER, STOCKROOM_SIGNATURE_HEADER};
use stockroom::store::{SaleStatus, StockStore, StoreError};

/// Shopify topics that mean "stock left with a sale". Both may arrive for
/// one order; the receipt (shop + order id) makes the second a duplicate.
const SALE_TOPICS: &[&str] = &["orders/create", "orders/paid"];

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
    pub alerts: Alerts,
    pub rules: LocationRules,
    pub secrets: WebhookSecrets,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        let secrets = config::webhook_secrets(&sdk).await?;
        Ok(Self {
            store: StockStore::new(
                stockroom::aws_sdk_dynamodb::Client::new(&sdk),
                cfg.table,
                cfg.receipt_ttl_days,
            ),
            alerts: Alerts::new(stockroom::aws_sdk_sqs::Client::new(&sdk), cfg.alert_queue_url),
            rules: cfg.locations,
            secrets,
        })
    }
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Why a webhook was refused before touching stock.
enum Refusal {
    Status(StatusCode, &'static str, String),
    Ignored(String),
}

impl From<signature::SignatureError> for Refusal {
    fn from(e: signature::SignatureError) -> Self {
        Refusal::Status(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

impl From<stockroom::domain::InvalidInput> for Refusal {
    fn from(e: stockroom::domain::InvalidInput) -> Self {
        Refusal::Status(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    }
}

/// Authenticates and parses a webhook into an order and the actor behind it.
fn authenticate_and_parse(app: &App, req: &Request, body: &[u8]) -> Result<(Order, Actor), Refusal> {
    let headers = req.headers();
    let is_shopify =
        headers.contains_key(SHOPIFY_HMAC_HEADER) || headers.contains_key("x-shopify-shop-domain");
    if is_shopify {
        let shop = header(headers, "x-shopify-shop-domain")
            .map(str::trim)
            .unwrap_or_default();
        if shop.is_empty() {
            return Err(Refusal::Status(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing X-Shopify-Shop-Domain: the shop picks the secret".into(),
            ));
        }
        let secret = app.secrets.for_source(shop)?;
        signature::verify_shopify(secret, body, header(headers, SHOPIFY_HMAC_HEADER))?;
        let topic = header(headers, "x-shopify-topic").unwrap_or("orders/create");
        if !SALE_TOPICS.contains(&topic) {
            return Err(Refusal::Ignored(format!(
                "topic {topic} does not move stock here"
            )));
        }
        let order = order::parse_shopify(body, shop, &app.rules)?;
        let actor = Actor::system(&format!("shopify:{}", order.source));
        return Ok((order, actor));
    }
    let sig = header(headers, STOCKROOM_SIGNATURE_HEADER).ok_or(signature::SignatureError::Missing)?;
    // The channel picks the secret; it is read before the signature is checked
    // and trusted only after.
    let channel = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("channel").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let secret = app.secrets.for_source(&channel)?;
    signature::verify_generic(secret, body, Some(sig))?;
    let order = order::parse_generic(body, &app.rules)?;
    let actor = Actor::system(&format!("channel:{}", order.channel));
    Ok((order, actor))
}

/// Handles one webhook delivery.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    respond(app, req).await.map(Body::from)
}

async fn respond(app: &App, req: Request) -> Response<String> {
    if req.method() != lambda_http::http::Method::POST {
        return api::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
    }
    let body = body_bytes(&req);
    if body.len() > MAX_BODY_BYTES {
        return api::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        );
    }
    let webhook_id = header(req.headers(), "x-shopify-webhook-id")
        .unwrap_or("-")
        .to_owned();
    let (order, actor) = match authenticate_and_parse(app, &req, body) {
        Ok(v) => v,
        Err(Refusal::Status(status, code, message)) => {
            tracing::info!(%status, %message, webhook_id, "webhook refused");
            return api::error(status, code, message);
        }
        Err(Refusal::Ignored(message)) => {
            tracing::info!(%message, webhook_id, "webhook ignored");
            return api::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ignored", "message": message}),
            );
        }
    };
    let outcome = match app.store.apply_sale(&order, &actor).await {
        Ok(o) => o,
        Err(e @ StoreError::Contention(_)) => {
            // Safe to retry: the receipt makes a retried delivery exactly-once.
            tracing::error!(order = %order.order_id, error = %e, "sale not applied");
            return api::error(StatusCode::SERVICE_UNAVAILABLE, "busy", e);
        }
        Err(e) => {
            tracing::error!(order = %order.order_id, error = %e, "sale not applied");
            return api::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
        }
    };
    tracing::info!(order = %order.order_id, source = %order.source, webhook_id,
        status = ?outcome.status, lines = outcome.lines.len(), "sale");
    let oversold = outcome.status == SaleStatus::Oversold;
    if oversold {
        // Best effort: the shortage is already on the receipt and in the ledger.
        let _ = app
            .alerts
            .oversell(&OversellAlert::new(&order.source, &order.channel, &outcome))
            .await;
    }
    alerts::metric(
        stockroom::METRIC_NAMESPACE,
        "sale-webhook",
        &[
            (
                "SalesApplied",
                f64::from(u8::from(outcome.status != SaleStatus::Duplicate)),
            ),
            ("Oversells", f64::from(u8::from(oversold))),
            (
                "OversoldUnits",
                f64::from(if oversold { outcome.short_units() } else { 0 }),
            ),
            (
                "Duplicates",
                f64::from(u8::from(outcome.status == SaleStatus::Duplicate)),
            ),
        ],
    );
    api::json(StatusCode::OK, &outcome)
}
