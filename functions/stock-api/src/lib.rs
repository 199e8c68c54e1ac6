//! `stock-api`: read stock and its ledger, make audited adjustments.
//!
//! - `GET  /stock/{sku}`          levels per location (available, damaged) and their sums
//! - `GET  /stock/{sku}/ledger`   movements, newest first (`?limit=&cursor=`)
//! - `POST /adjustments`          an audited change (`Idempotency-Key` honoured)

use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use stockroom::adjustment::{AdjustError, AdjustResult};
use stockroom::api::{self, header, percent_decode, MAX_BODY_BYTES};
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::{InvalidInput, Sku};
use stockroom::keys::decode_cursor;
use stockroom::store::{StockStore, StoreError};
use stockroom::wire::adjustment::parse_adjustment;

/// Largest page of ledger entries one call returns.
pub const MAX_LEDGER_PAGE: i32 = 200;

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        Ok(Self {
            store: StockStore::new(
                stockroom::aws_sdk_dynamodb::Client::new(&sdk),
                cfg.table,
                cfg.receipt_ttl_days,
            ),
        })
    }
}

/// Handles one request.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    route(app, req).await.map(Body::from)
}

fn store_error(e: StoreError) -> Response<String> {
    tracing::error!(error = %e, "store failed");
    match e {
        StoreError::Contention(_) => api::error(StatusCode::SERVICE_UNAVAILABLE, "busy", e),
        _ => api::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

fn bad_request(e: impl std::fmt::Display) -> Response<String> {
    api::error(StatusCode::BAD_REQUEST, "bad_request", e)
}

/// The path's segments, without the `/lambda-url/<function>` prefix that
/// `cargo lambda watch` serves locally.
fn segments(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if parts.first() == Some(&"lambda-url") && parts.len() >= 2 {
        parts.drain(..2);
    }
    parts
}

async fn route(app: &App, req: Request) -> Response<String> {
    let path = req.raw_http_path().to_owned();
    let path = if path.is_empty() {
        req.uri().path().to_owned()
    } else {
        path
    };
    let parts = segments(&path);
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["stock", sku]) => match parse_sku(sku) {
            Ok(sku) => get_stock(app, &sku).await,
            Err(e) => bad_request(e),
        },
        (&Method::GET, ["stock", sku, "ledger"]) => match parse_sku(sku) {
            Ok(sku) => get_ledger(app, &sku, &req).await,
            Err(e) => bad_request(e),
        },
        (&Method::POST, ["adjustments"]) => post_adjustment(app, &req).await,
        (_, ["stock", _] | ["stock", _, "ledger"] | ["adjustments"]) => api::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed here",
        ),
        _ => api::error(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}")),
    }
}

fn parse_sku(raw: &str) -> Result<Sku, InvalidInput> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| InvalidInput::field("sku", "is not valid percent-encoded UTF-8"))?;
    Sku::parse(&decoded)
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
    let limit = match query.first("limit").map(str::parse::<i32>) {
        None => 50,
        Some(Ok(n)) if (1..=MAX_LEDGER_PAGE).contains(&n) => n,
        Some(_) => {
            return bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LEDGER_PAGE}"
            ))
        }
    };
    let cursor = match query.first("cursor") {
        None => None,
        Some(c) => match decode_cursor(c) {
            Some(sk) => Some(sk),
            None => return bad_request("cursor is not one this API handed out"),
        },
    };
    match app.store.ledger(sku, limit, cursor.as_deref()).await {
        Ok(page) => api::json(StatusCode::OK, &page),
        Err(e) => store_error(e),
    }
}

/// The caller's IAM identity, when the URL is IAM-authenticated.
fn caller_identity(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
            iam.user_arn.clone().or_else(|| iam.caller_id.clone())
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

async fn post_adjustment(app: &App, req: &Request) -> Response<String> {
    let body: &[u8] = match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        return api::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body too large",
        );
    }
    let identity = caller_identity(req);
    let adj = match parse_adjustment(
        body,
        identity.as_deref(),
        header(req.headers(), "idempotency-key"),
    ) {
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
            r.headers_mut().insert(
                "idempotent-replayed",
                lambda_http::http::HeaderValue::from_static("true"),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_drop_the_local_prefix() {
        assert_eq!(
            segments("/lambda-url/stock-api/stock/A/ledger"),
            vec!["stock", "A", "ledger"]
        );
        assert_eq!(segments("/stock/A"), vec!["stock", "A"]);
    }
}
