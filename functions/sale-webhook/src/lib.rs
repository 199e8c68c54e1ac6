//! `sale-webhook`: a function URL that takes sale webhooks (Shopify and the
//! generic signed format), checks the signature, and applies the sale through
//! the stock store. No business rule lives here. An oversell is recorded on
//! the order's receipt in the same transaction; `stock-fanout` raises its
//! alert from the table's stream, so the answer never waits for it.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use stockroom::alerts;
use stockroom::api::{self, header, Refusal};
use stockroom::config::{self, Config, ConfigError, LocationRules};
use stockroom::domain::Actor;
use stockroom::sale::{Order, SaleOutcome, SaleStatus};
use stockroom::signature::{self, Sender, WebhookSecrets};
use stockroom::store::{StockStore, StoreError};
use stockroom::wire::{generic, shopify};

/// Shopify topics that mean "stock left with a sale". Both may arrive for
/// one order; the receipt (shop + order id) makes the second a duplicate.
const SALE_TOPICS: &[&str] = &["orders/create", "orders/paid"];

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
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
            rules: cfg.locations,
            secrets,
        })
    }
}

/// Authenticates and parses a webhook into an order and the actor behind it.
fn authenticate_and_parse(app: &App, req: &Request, body: &[u8]) -> Result<(Order, Actor), Refusal> {
    // Generic sales pick their secret by `channel`.
    match signature::authenticate(req.headers(), body, &app.secrets, "channel", "")? {
        Sender::Shopify { shop, topic } => {
            let topic = topic.as_deref().unwrap_or("orders/create");
            if !SALE_TOPICS.contains(&topic) {
                return Err(Refusal::Ignored(format!(
                    "topic {topic} does not move stock here"
                )));
            }
            let order = shopify::parse_order(body, &shop, &app.rules)?;
            let actor = Actor::system(&format!("shopify:{}", order.source));
            Ok((order, actor))
        }
        Sender::Generic { .. } => {
            let order = generic::parse_sale(body, &app.rules)?;
            let actor = Actor::system(&format!("channel:{}", order.channel));
            Ok((order, actor))
        }
    }
}

/// Handles one webhook delivery.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    respond(app, req).await.map(Body::from)
}

/// The part of a delivery that needs no store: method and size, signature,
/// and the order it carries.
pub fn prepare(app: &App, req: &Request) -> Result<(Order, Actor), Refusal> {
    let body = req.body().as_ref();
    api::check_webhook(req.method(), body)?;
    authenticate_and_parse(app, req, body)
}

/// The platform's answer for an applied, oversold or duplicate order.
pub fn answer(outcome: &SaleOutcome) -> Response<String> {
    api::json(StatusCode::OK, outcome)
}

async fn respond(app: &App, req: Request) -> Response<String> {
    let webhook_id = header(req.headers(), "x-shopify-webhook-id")
        .unwrap_or("-")
        .to_owned();
    let (order, actor) = match prepare(app, &req) {
        Ok(v) => v,
        Err(refusal) => return refusal.respond(&webhook_id),
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
        tracing::warn!(order = %order.order_id, source = %order.source,
            short_units = outcome.short_units(), "oversell");
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
    answer(&outcome)
}
