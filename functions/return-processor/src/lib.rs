//! `return-processor`: a function URL that takes processed returns (Shopify
//! `refunds/create` and the generic signed event), checks the signature, and
//! puts the units back through the stock store. No business rule lives here.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use stockroom::api::{self, header, Refusal};
use stockroom::config::{self, Config, ConfigError, LocationRules};
use stockroom::domain::Actor;
use stockroom::returns::{Return, ReturnStatus, DEFAULT_RETURN_SOURCE};
use stockroom::signature::{self, Sender, WebhookSecrets};
use stockroom::store::{StockStore, StoreError};
use stockroom::wire::{generic, shopify};

/// Shopify topics that mean "a refund was processed".
const RETURN_TOPICS: &[&str] = &["refunds/create"];

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

/// Authenticates and parses a webhook into a return and the actor behind it.
fn authenticate_and_parse(app: &App, req: &Request, body: &[u8]) -> Result<(Return, Actor), Refusal> {
    // Generic returns pick their secret by `source`.
    match signature::authenticate(req.headers(), body, &app.secrets, "source", DEFAULT_RETURN_SOURCE)? {
        Sender::Shopify { shop, topic } => {
            let topic = topic.as_deref().unwrap_or("refunds/create");
            if !RETURN_TOPICS.contains(&topic) {
                return Err(Refusal::Ignored(format!(
                    "topic {topic} does not move stock here"
                )));
            }
            let ret = shopify::parse_refund(body, &shop, &app.rules)?;
            let actor = Actor::system(&format!("shopify:{}", ret.source));
            Ok((ret, actor))
        }
        Sender::Generic { .. } => {
            let ret = generic::parse_return(body, &app.rules)?;
            let actor = Actor::system(&format!("returns:{}", ret.source));
            Ok((ret, actor))
        }
    }
}

/// Handles one webhook delivery.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    respond(app, req).await.map(Body::from)
}

async fn respond(app: &App, req: Request) -> Response<String> {
    let body = req.body().as_ref();
    let webhook_id = header(req.headers(), "x-shopify-webhook-id")
        .unwrap_or("-")
        .to_owned();
    let (ret, actor) =
        match api::check_webhook(req.method(), body).and_then(|()| authenticate_and_parse(app, &req, body)) {
            Ok(v) => v,
            Err(refusal) => return refusal.respond(&webhook_id),
        };
    let outcome = match app.store.apply_return(&ret, &actor).await {
        Ok(o) => o,
        Err(e) => {
            // Safe to retry either way: the receipt makes a retried delivery exactly-once.
            tracing::error!(return_id = %ret.return_id, source = %ret.source, error = %e, "return not applied");
            return match e {
                StoreError::Contention(_) => api::error(StatusCode::SERVICE_UNAVAILABLE, "busy", e),
                _ => api::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
            };
        }
    };
    tracing::info!(return_id = %ret.return_id, source = %ret.source, reference = %ret.reference(),
        webhook_id, status = ?outcome.status, restocked = outcome.restocked_units(),
        damaged = outcome.damaged_units(), "return");
    let duplicate = outcome.status == ReturnStatus::Duplicate;
    let counted = |units: u32| f64::from(if duplicate { 0 } else { units });
    stockroom::alerts::metric(
        stockroom::METRIC_NAMESPACE,
        "return-processor",
        &[
            ("ReturnsApplied", f64::from(u8::from(!duplicate))),
            ("UnitsRestocked", counted(outcome.restocked_units())),
            ("UnitsDamaged", counted(outcome.damaged_units())),
            ("Duplicates", f64::from(u8::from(duplicate))),
        ],
    );
    api::json(StatusCode::OK, &outcome)
}
