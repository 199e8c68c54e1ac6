//! `sale-webhook`: a function URL that takes sale webhooks (Shopify and the
//! generic signed format) and applies the sale through the stock store; the
//! checks and answers every webhook shares are [`stockroom::webhook`]'s. No
//! business rule lives here. An oversell is recorded on the order's receipt
//! in the same transaction; `stock-fanout` raises its alert from the table's
//! stream, so the answer never waits for it.

use lambda_http::{Body, Request, Response};
use stockroom::alerts;
use stockroom::config::LocationRules;
use stockroom::domain::{Actor, InvalidInput};
use stockroom::sale::{Order, SaleOutcome, SaleStatus};
use stockroom::signature::{Endpoint, GenericSenders};
use stockroom::store::{StockStore, StoreError};
use stockroom::webhook::{self, Refusal, Webhook};
use stockroom::wire::{generic, shopify};

pub use stockroom::webhook::App;

/// Sales: what this function applies.
pub struct Sales;

impl Webhook for Sales {
    type Event = Order;
    type Outcome = SaleOutcome;

    /// Both may arrive for one order; the receipt (shop + order id) makes
    /// the second a duplicate.
    const SHOPIFY_TOPICS: &'static [&'static str] = &["orders/create", "orders/paid"];
    const ENDPOINT: Endpoint = Endpoint::Sales;
    const GENERIC: GenericSenders = GenericSenders {
        field: "channel",
        kind: "channel",
        default: None,
    };

    fn parse_shopify(body: &[u8], shop: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
        shopify::parse_order(body, shop, rules)
    }

    fn parse_generic(body: &[u8], channel: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
        generic::parse_sale(body, channel, rules)
    }

    async fn apply(
        store: &StockStore,
        order: &Order,
        actor: &Actor,
        webhook_id: &str,
    ) -> Result<SaleOutcome, StoreError> {
        let outcome = store
            .apply_sale(order, actor)
            .await
            .inspect_err(|e| tracing::error!(order = %order.order_id, error = %e, "sale not applied"))?;
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
        Ok(outcome)
    }
}

/// Handles one webhook delivery.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    webhook::handle::<Sales, _>(app, &req).await.map(Body::from)
}

/// The part of a delivery that needs no store: method and size, signature,
/// and the order it carries.
pub fn prepare(app: &App, req: &Request) -> Result<(Order, Actor), Refusal> {
    webhook::prepare::<Sales, _>(app, req)
}

/// The platform's answer for an applied, oversold or duplicate order.
pub fn answer(outcome: &SaleOutcome) -> Response<String> {
    webhook::answer(outcome)
}
