//! `stock-api`: read stock and its ledger, make audited adjustments, release
//! held supplier files, and operate connector channels (the routes: [`Route`]; the adjustment request:
//! [`stockroom::wire::adjustment`]; a release: [`stockroom::feed::release`]).

pub mod channels;
pub mod release;
pub mod route;

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use stockroom::adjustment::{AdjustError, AdjustResult};
use stockroom::api::{self, header, Writers, MAX_BODY_BYTES};
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::Sku;
use stockroom::feed::release::FeedQueue;
use stockroom::store::{StockStore, StoreError};
use stockroom::wire::adjustment::parse_adjustment;

pub use route::{LedgerPage, Route};

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
    /// Where released feeds are queued (`FEED_BUCKET`, `FEED_QUEUE_URL`).
    pub feeds: Option<FeedQueue>,
    /// Who may write (`STOCK_API_WRITERS`).
    pub writers: Writers,
    /// Connector channels' operations (`None`: no connector configured).
    pub channels: Option<channels::ChannelOps>,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        Ok(Self {
            store: StockStore::from_config(&sdk, &cfg),
            feeds: FeedQueue::from_env(&sdk),
            writers: Writers::from_env(),
            channels: channels::ChannelOps::from_env(&sdk)?,
        })
    }
}

/// Handles one request.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let path = match req.raw_http_path() {
        "" => req.uri().path(),
        raw => raw,
    };
    let response = match Route::parse(req.method(), path) {
        Ok(Route::Stock(sku)) => get_stock(app, &sku).await,
        Ok(Route::Ledger(sku)) => get_ledger(app, &sku, &req).await,
        Ok(Route::Adjust) => post_adjustment(app, &req).await,
        Ok(Route::ReleaseFeed) => release::post(app, &req).await,
        Ok(Route::HeldFeeds) => channels::get_held(app).await,
        Ok(Route::ChannelMode(name)) => channels::get_mode(app, &name).await,
        Ok(Route::SetChannelMode(name)) => channels::put_mode(app, &name, &req).await,
        Ok(Route::ChannelRun(name, kind)) => channels::post_run(app, &name, kind, &req).await,
        Ok(Route::RunStatus(name, id)) => channels::get_run(app, &name, &id).await,
        Ok(Route::Drift(name)) => channels::get_drift(app, &name, &req).await,
        Err(no_route) => no_route.respond(),
    };
    response.map(Body::from)
}

pub(crate) fn store_error(e: StoreError) -> Response<String> {
    tracing::error!(error = %e, "store failed");
    api::store_failure(e)
}

pub(crate) fn bad_request(e: impl std::fmt::Display) -> Response<String> {
    api::error(StatusCode::BAD_REQUEST, "bad_request", e)
}

async fn get_stock(app: &App, sku: &Sku) -> Response<String> {
    match app.store.levels(sku).await {
        Ok(levels) if levels.is_empty() => api::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("sku {sku} has never been stocked"),
        ),
        Ok(levels) => {
            let available: i64 = levels.iter().map(|l| l.available).sum();
            let damaged: i64 = levels.iter().map(|l| l.damaged).sum();
            api::json(
                StatusCode::OK,
                &json!({"sku": sku, "available": available, "damaged": damaged, "levels": levels}),
            )
        }
        Err(e) => store_error(e),
    }
}

async fn get_ledger(app: &App, sku: &Sku, req: &Request) -> Response<String> {
    let query = req.query_string_parameters();
    let page = match LedgerPage::parse(query.first("limit"), query.first("cursor")) {
        Ok(page) => page,
        Err(e) => return bad_request(e),
    };
    match app.store.ledger(sku, page.limit, page.after.as_deref()).await {
        Ok(page) => api::json(StatusCode::OK, &page),
        Err(e) => store_error(e),
    }
}

async fn post_adjustment(app: &App, req: &Request) -> Response<String> {
    let body: &[u8] = req.body();
    if body.len() > MAX_BODY_BYTES {
        return api::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body too large",
        );
    }
    let identity = api::caller_identity(req);
    if let Err(e) = app.writers.check(identity.as_deref()) {
        return api::forbidden(e);
    }
    let key = header(req.headers(), "idempotency-key");
    let adj = match parse_adjustment(body, identity.as_deref(), key) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    match app.store.adjust(&adj).await {
        Ok(AdjustResult::Applied(o)) => {
            tracing::info!(adjustment = %o.adjustment, sku = %o.sku, location = %o.location,
                delta = o.delta, actor = adj.actor.as_str(), reason = %adj.reason, "adjustment");
            api::json(StatusCode::OK, &o)
        }
        Ok(AdjustResult::Replayed(o)) => {
            let mut r = api::json(StatusCode::OK, &o);
            (r.headers_mut()).insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Err(e @ AdjustError::ExpectedMismatch { current, .. }) => api::json(
            StatusCode::CONFLICT,
            &json!({"error": "expected_mismatch", "message": e.to_string(), "current": current}),
        ),
        Err(e @ AdjustError::BelowZero { current, .. }) => api::json(
            StatusCode::CONFLICT,
            &json!({"error": "below_zero", "message": e.to_string(), "current": current}),
        ),
        Err(e @ AdjustError::KeyReused) => {
            api::error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", e)
        }
        Err(AdjustError::Store(e)) => store_error(e),
    }
}
