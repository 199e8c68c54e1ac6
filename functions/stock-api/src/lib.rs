//! `stock-api`: read stock and its ledger, make audited adjustments.
//!
//! - `GET  /stock/{sku}`          levels per location (available, damaged) and their sums
//! - `GET  /stock/{sku}/ledger`   movements, newest first (`?limit=&cursor=`)
//! - `POST /adjustments`          an audited change (`Idempotency-Key` honoured)

use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use stockroom::adjustment::{AdjustError, AdjustResult, Adjustment, Change};
use stockroom::api::{self, header, percent_decode, MAX_BODY_BYTES};
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::{Actor, DocumentRef, InvalidInput, Location, ReasonCode, Sku};
use stockroom::keys::decode_cursor;
use stockroom::store::{StockStore, StoreError};

/// Largest page of ledger entries one call returns.
pub const MAX_LEDGER_PAGE: i32 = 200;
/// Largest absolute change or count one adjustment may make.
pub const MAX_ADJUSTMENT: i64 = 10_000_000;

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

fn whole(v: &Value, field: &'static str, range: std::ops::RangeInclusive<i64>) -> Result<i64, InvalidInput> {
    v.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
        InvalidInput::field(
            field,
            format!("must be a whole number from {} to {}", range.start(), range.end()),
        )
    })
}

fn text<'a>(body: &'a Value, field: &'static str) -> Result<Option<&'a str>, InvalidInput> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(InvalidInput::field(field, "must be a string")),
    }
}

/// Parses an adjustment request. The actor comes from the caller's IAM
/// identity when there is one, else from the body.
pub fn parse_adjustment(
    body: &[u8],
    identity: Option<&str>,
    key: Option<&str>,
) -> Result<Adjustment, InvalidInput> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| InvalidInput::field("body", format!("not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(InvalidInput::field("body", "must be a JSON object"));
    }
    let sku = Sku::parse(text(&v, "sku")?.ok_or_else(|| InvalidInput::field("sku", "is required"))?)?;
    let location = Location::parse(
        text(&v, "location")?.ok_or_else(|| InvalidInput::field("location", "is required"))?,
    )?;
    let change = match (v.get("delta"), v.get("set")) {
        (Some(d), None) => {
            let d = whole(d, "delta", -MAX_ADJUSTMENT..=MAX_ADJUSTMENT)?;
            if d == 0 {
                return Err(InvalidInput::field("delta", "must not be zero"));
            }
            Change::Delta(d)
        }
        (None, Some(s)) => Change::Set(whole(s, "set", 0..=MAX_ADJUSTMENT)?),
        _ => {
            return Err(InvalidInput::field(
                "delta",
                "give exactly one of \"delta\" or \"set\"",
            ))
        }
    };
    let expected = match v.get("expected") {
        None | Some(Value::Null) => None,
        Some(e) => Some(whole(e, "expected", 0..=MAX_ADJUSTMENT)?),
    };
    let reason = ReasonCode::parse_manual(
        text(&v, "reason")?.ok_or_else(|| InvalidInput::field("reason", "is required"))?,
    )?;
    let actor = match identity {
        Some(arn) => Actor::system(arn),
        None => Actor::parse(text(&v, "actor")?.ok_or_else(|| InvalidInput::field("actor", "is required"))?)?,
    };
    let note = text(&v, "note")?.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 1000) {
        return Err(InvalidInput::field("note", "must be at most 1000 characters"));
    }
    let document = text(&v, "reference")?.map(DocumentRef::parse).transpose()?;
    let idempotency_key = match key.map(str::trim) {
        None => None,
        Some(k) if !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(k.to_owned())
        }
        Some(_) => {
            return Err(InvalidInput::field(
                "Idempotency-Key",
                "must be 1 to 128 printable ASCII characters",
            ))
        }
    };
    Ok(Adjustment {
        sku,
        location,
        change,
        expected,
        reason,
        actor,
        note: note.map(str::to_owned),
        document,
        idempotency_key,
    })
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

    #[test]
    fn adjustment_needs_reason_actor_and_one_change() {
        let ok = br#"{"sku":"A","location":"shop-1","delta":-2,"reason":"damage","actor":"ana"}"#;
        let a = parse_adjustment(ok, None, Some("k-1")).unwrap();
        assert_eq!(a.change, Change::Delta(-2));
        assert_eq!(a.idempotency_key.as_deref(), Some("k-1"));
        for (body, field) in [
            (
                r#"{"sku":"A","location":"shop-1","delta":1,"actor":"ana"}"#,
                "reason",
            ),
            (
                r#"{"sku":"A","location":"shop-1","delta":1,"reason":"found"}"#,
                "actor",
            ),
            (
                r#"{"sku":"A","location":"shop-1","delta":1,"set":2,"reason":"found","actor":"a"}"#,
                "delta",
            ),
            (
                r#"{"sku":"A","location":"shop-1","delta":0,"reason":"found","actor":"a"}"#,
                "delta",
            ),
            (
                r#"{"sku":"A","location":"shop-1","set":-1,"reason":"found","actor":"a"}"#,
                "set",
            ),
            (
                r#"{"sku":"A","location":"shop-1","set":1,"reason":"sale","actor":"a"}"#,
                "unknown reason",
            ),
            (
                r#"{"sku":"A","location":"shop-1","set":1,"reason":"found","actor":"a","reference":"x y"}"#,
                "reference",
            ),
        ] {
            let err = parse_adjustment(body.as_bytes(), None, None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{body}: {err}");
        }
    }

    #[test]
    fn identity_overrides_the_body_actor() {
        let body = br#"{"sku":"A","location":"shop-1","set":3,"reason":"stocktake"}"#;
        let a = parse_adjustment(body, Some("arn:aws:iam::1:user/ana"), None).unwrap();
        assert_eq!(a.actor.as_str(), "arn:aws:iam::1:user/ana");
    }
}
