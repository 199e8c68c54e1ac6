//! `return-processor`: a function URL that takes processed returns (Shopify
//! `refunds/create` and the generic signed event) and puts the units back
//! through the stock store; the checks and answers every webhook shares are
//! [`stockroom::webhook`]'s. No business rule lives here.

use lambda_http::{Body, Request, Response};
use stockroom::config::LocationRules;
use stockroom::domain::{Actor, InvalidInput};
use stockroom::returns::{Return, ReturnOutcome, ReturnStatus, DEFAULT_RETURN_SOURCE};
use stockroom::signature::{Endpoint, GenericSenders};
use stockroom::store::{StockStore, StoreError};
use stockroom::webhook::{self, Webhook};
use stockroom::wire::{generic, shopify};

pub use stockroom::webhook::App;

/// Returns: what this function applies.
pub struct Returns;

impl Webhook for Returns {
    type Event = Return;
    type Outcome = ReturnOutcome;

    const SHOPIFY_TOPICS: &'static [&'static str] = &["refunds/create"];
    const ENDPOINT: Endpoint = Endpoint::Returns;
    const GENERIC: GenericSenders = GenericSenders {
        field: "source",
        kind: "source",
        default: Some(DEFAULT_RETURN_SOURCE),
    };

    fn parse_shopify(body: &[u8], shop: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
        shopify::parse_refund(body, shop, rules)
    }

    fn parse_generic(body: &[u8], source: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
        generic::parse_return(body, source, rules)
    }

    async fn apply(
        store: &StockStore,
        ret: &Return,
        actor: &Actor,
        webhook_id: &str,
    ) -> Result<ReturnOutcome, StoreError> {
        let outcome = store.apply_return(ret, actor).await.inspect_err(|e| {
            tracing::error!(return_id = %ret.return_id, source = %ret.source, error = %e, "return not applied")
        })?;
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
        Ok(outcome)
    }
}

/// Handles one webhook delivery.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    webhook::handle::<Returns, _>(app, &req).await.map(Body::from)
}
