//! The stock API's routes: a request's method and path, read once.

use lambda_http::http::{Method, StatusCode};
use lambda_http::Response;
use stockroom::api::{self, percent_decode};
use stockroom::connector::runs::RunKind;
use stockroom::domain::{InvalidInput, Sku};
use stockroom::keys::decode_cursor;

/// Largest page of ledger entries one call returns.
pub const MAX_LEDGER_PAGE: i32 = 200;
/// A ledger page's size when the caller gives none.
const DEFAULT_LEDGER_PAGE: i32 = 50;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /stock/{sku}` (the SKU percent-encoded).
    Stock(Sku),
    /// `GET /stock/{sku}/ledger`.
    Ledger(Sku),
    /// `POST /adjustments`.
    Adjust,
    /// `POST /feeds/release`: ops release a held supplier file.
    ReleaseFeed,
    /// `GET /feeds/held`: the files waiting for ops.
    HeldFeeds,
    /// `GET /channels/{name}/mode`.
    ChannelMode(String),
    /// `PUT /channels/{name}/mode`.
    SetChannelMode(String),
    /// `POST /channels/{name}/reconcile|import|resync`.
    ChannelRun(String, RunKind),
    /// `GET /channels/{name}/runs/{id}`.
    RunStatus(String, String),
    /// `GET /channels/{name}/drift`.
    Drift(String),
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// 404: no such path.
    #[error("no route for {0}")]
    NotFound(String),
    /// 405: a known path, another method.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// 400: the path's SKU is not one.
    #[error(transparent)]
    BadSku(InvalidInput),
}

impl NoRoute {
    /// The answer: a JSON error with its status and code.
    pub fn respond(&self) -> Response<String> {
        let (status, code) = match self {
            NoRoute::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            NoRoute::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            NoRoute::BadSku(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        api::error(status, code, self)
    }
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

fn parse_sku(raw: &str) -> Result<Sku, NoRoute> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| InvalidInput::field("sku", "is not valid percent-encoded UTF-8"))
        .map_err(NoRoute::BadSku)?;
    Sku::parse(&decoded).map_err(NoRoute::BadSku)
}

impl Route {
    /// Routes a request: a known path with another method is 405 (before
    /// its SKU is read), an unknown path 404.
    pub fn parse(method: &Method, path: &str) -> Result<Route, NoRoute> {
        match (method, segments(path).as_slice()) {
            (&Method::GET, ["stock", sku]) => parse_sku(sku).map(Route::Stock),
            (&Method::GET, ["stock", sku, "ledger"]) => parse_sku(sku).map(Route::Ledger),
            (&Method::POST, ["adjustments"]) => Ok(Route::Adjust),
            (&Method::POST, ["feeds", "release"]) => Ok(Route::ReleaseFeed),
            (&Method::GET, ["feeds", "held"]) => Ok(Route::HeldFeeds),
            (&Method::GET, ["channels", name, "mode"]) => Ok(Route::ChannelMode((*name).to_owned())),
            (&Method::PUT, ["channels", name, "mode"]) => Ok(Route::SetChannelMode((*name).to_owned())),
            (&Method::POST, ["channels", name, kind @ ("reconcile" | "import" | "resync")]) => {
                let kind = match *kind {
                    "reconcile" => RunKind::Reconcile,
                    "import" => RunKind::Import,
                    _ => RunKind::Resync,
                };
                Ok(Route::ChannelRun((*name).to_owned(), kind))
            }
            (&Method::GET, ["channels", name, "runs", id]) => {
                Ok(Route::RunStatus((*name).to_owned(), (*id).to_owned()))
            }
            (&Method::GET, ["channels", name, "drift"]) => Ok(Route::Drift((*name).to_owned())),
            (
                _,
                ["stock", _]
                | ["stock", _, "ledger"]
                | ["adjustments"]
                | ["feeds", "release" | "held"]
                | ["channels", _, "mode" | "reconcile" | "import" | "resync" | "drift"]
                | ["channels", _, "runs", _],
            ) => Err(NoRoute::MethodNotAllowed),
            _ => Err(NoRoute::NotFound(path.to_owned())),
        }
    }
}

/// A ledger page asked for with `?limit=&cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    /// 1 to [`MAX_LEDGER_PAGE`] entries.
    pub limit: i32,
    /// The sort key to continue after, from a cursor this API handed out.
    pub after: Option<String>,
}

impl LedgerPage {
    /// Reads the query's `limit` and `cursor`; a refusal says what was wrong.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, String> {
        let limit = match limit.map(str::parse::<i32>) {
            None => DEFAULT_LEDGER_PAGE,
            Some(Ok(n)) if (1..=MAX_LEDGER_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(format!(
                    "limit must be a whole number from 1 to {MAX_LEDGER_PAGE}"
                ))
            }
        };
        let after = match cursor {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or("cursor is not one this API handed out")?),
        };
        Ok(Self { limit, after })
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
    fn every_route_and_its_refusals() {
        let sku = |s: &str| Sku::parse(s).unwrap();
        let get = |path: &str| Route::parse(&Method::GET, path);
        assert_eq!(get("/stock/JKT%20BLUE%2FM"), Ok(Route::Stock(sku("JKT BLUE/M"))));
        assert_eq!(
            get("/lambda-url/stock-api/stock/A/ledger"),
            Ok(Route::Ledger(sku("A")))
        );
        assert_eq!(Route::parse(&Method::POST, "/adjustments/"), Ok(Route::Adjust));
        // A known path with another method is 405, whatever its SKU.
        for (method, path) in [
            (Method::POST, "/stock/A"),
            (Method::DELETE, "/stock/%ff/ledger"),
            (Method::GET, "/adjustments"),
        ] {
            assert_eq!(
                Route::parse(&method, path),
                Err(NoRoute::MethodNotAllowed),
                "{method} {path}"
            );
        }
        assert!(matches!(get("/stock/%ff"), Err(NoRoute::BadSku(_))));
        assert!(matches!(get("/stock/bad%2"), Err(NoRoute::BadSku(_))));
        for path in [
            "/",
            "/stock",
            "/stock/A/ledger/x",
            "/lambda-url/stock-api",
            "/ledger/A",
        ] {
            assert_eq!(get(path), Err(NoRoute::NotFound(path.to_owned())), "{path}");
        }
    }

    #[test]
    fn refusals_answer_with_their_status_and_code() {
        for (no_route, status, code) in [
            (NoRoute::NotFound("/x".into()), 404, "not_found"),
            (NoRoute::MethodNotAllowed, 405, "method_not_allowed"),
            (
                NoRoute::BadSku(InvalidInput::field("sku", "x")),
                400,
                "bad_request",
            ),
        ] {
            let r = no_route.respond();
            let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
            assert_eq!(
                (r.status().as_u16(), body["error"].as_str()),
                (status, Some(code))
            );
            assert_eq!(body["message"], no_route.to_string());
        }
        assert_eq!(NoRoute::NotFound("/x".into()).to_string(), "no route for /x");
    }

    #[test]
    fn ledger_pages_are_1_to_200_and_cursors_ours() {
        assert_eq!(
            LedgerPage::parse(None, None),
            Ok(LedgerPage {
                limit: 50,
                after: None
            })
        );
        let sk = "LEDGER#2026-11-22T10:00:00.000000Z#order:s/1#0.0";
        let cursor = stockroom::keys::encode_cursor(sk);
        assert_eq!(
            LedgerPage::parse(Some("200"), Some(&cursor)),
            Ok(LedgerPage {
                limit: 200,
                after: Some(sk.to_owned())
            })
        );
        for limit in ["0", "201", "x", "1.5"] {
            assert!(LedgerPage::parse(Some(limit), None)
                .unwrap_err()
                .starts_with("limit"));
        }
        assert!(LedgerPage::parse(None, Some("!!!"))
            .unwrap_err()
            .starts_with("cursor"));
    }
}
