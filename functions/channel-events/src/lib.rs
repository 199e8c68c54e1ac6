//! `channel-events`: a function URL for a channel's own inventory webhooks
//! (Shopify's `inventory_levels/update`). A delivery is checked like every
//! webhook (the shop's own secret, listed for `channel-events`; size;
//! a body that parses), then queued as an [`EditCheck`] that `channel-sync`
//! judges after the grace period, once the channel's own orders have had
//! time to arrive. Nothing is decided here.

use lambda_http::{Body, Request, Response};
use stockroom::config::{self, ConfigError};
use stockroom::connector::{self, Connectors, EditCheck};
use stockroom::signature::{Endpoint, GenericSenders, Sender, WebhookSecrets};
use stockroom::webhook::{self, Refusal, SHOPIFY_WEBHOOK_ID_HEADER};
use stockroom::wire::shopify;

/// The Shopify topic taken here.
pub const TOPIC: &str = "inventory_levels/update";

/// Channels post nothing here in the generic format; named for the checks only.
const GENERIC: GenericSenders = GenericSenders {
    field: "channel",
    kind: "channel",
    default: None,
};

/// Everything the handler needs, built once per container.
pub struct App {
    pub secrets: WebhookSecrets,
    pub connectors: Connectors,
    pub sqs: stockroom::aws_sdk_sqs::Client,
    /// `ChannelEditsQueue`.
    pub queue_url: String,
    /// Seconds a check waits for the channel's own orders.
    pub grace: u32,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let sdk = config::aws().await;
        let (_, connectors) = connector::from_env()?;
        Ok(Self {
            secrets: config::webhook_secrets(&sdk).await?,
            connectors,
            sqs: stockroom::aws_sdk_sqs::Client::new(&sdk),
            queue_url: config::var("CHANNEL_EDITS_QUEUE_URL")
                .ok_or(ConfigError::Missing("CHANNEL_EDITS_QUEUE_URL"))?,
            grace: connector::grace_from_env()?,
        })
    }
}

/// The check a delivery asks for, or why there is none.
pub fn receive(app: &App, req: &Request) -> Result<EditCheck, Refusal> {
    match webhook::authenticated(&app.secrets, req, Endpoint::ChannelEvents, GENERIC)? {
        Sender::Shopify { shop, topic } => {
            if let Some(topic) = topic.filter(|t| t != TOPIC) {
                return Err(Refusal::Ignored(format!("topic {topic} is not taken here")));
            }
            let check = shopify::parse_inventory_level(req.body().as_ref(), &shop)?;
            if app.connectors.at(&check.shop, check.location_id).is_none() {
                return Err(Refusal::Ignored(format!(
                    "no connector sets location {} of {}",
                    check.location_id, check.shop
                )));
            }
            Ok(check)
        }
        Sender::Generic { name } => Err(Refusal::Status(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            format!("channel {name}: only Shopify's {TOPIC} webhooks are taken here"),
        )),
    }
}

/// Handles one delivery: 200 once the check is queued.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let webhook_id = stockroom::api::header(req.headers(), SHOPIFY_WEBHOOK_ID_HEADER)
        .unwrap_or("-")
        .to_owned();
    let check = match receive(app, &req) {
        Ok(c) => c,
        Err(refusal) => return refusal.respond(&webhook_id).map(Body::from),
    };
    let body = match serde_json::to_string(&check) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "could not write the edit check");
            return stockroom::api::error(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .map(Body::from);
        }
    };
    let sent = app
        .sqs
        .send_message()
        .queue_url(&app.queue_url)
        .message_body(body)
        .delay_seconds(app.grace as i32)
        .send()
        .await;
    match sent {
        Ok(_) => {
            tracing::info!(shop = %check.shop, item = check.inventory_item_id, location = check.location_id,
                webhook_id, grace = app.grace, "edit check queued");
            webhook::answer(&serde_json::json!({"queued": true, "check_after_seconds": app.grace}))
                .map(Body::from)
        }
        Err(e) => {
            // Shopify retries a failed delivery: nothing is lost.
            tracing::error!(error = %stockroom::aws_sdk_sqs::error::DisplayErrorContext(&e), webhook_id, "could not queue the edit check");
            stockroom::api::error(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the check could not be queued; retry",
            )
            .map(Body::from)
        }
    }
}
