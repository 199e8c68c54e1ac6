//! HTTP answers shared by the function URLs: always JSON, errors as
//! `{"error": "<code>", "message": "<what was wrong>"}`.

use http::{header, Response, StatusCode};
use serde::Serialize;

use crate::store::StoreError;

/// Largest request body accepted (413 beyond). Far above a real order.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<String> {
    let text = serde_json::to_string(body).unwrap_or_else(|e| {
        serde_json::json!({"error": "internal", "message": format!("response not serialisable: {e}")})
            .to_string()
    });
    let mut res = Response::new(text);
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// A JSON error with a stable code and a human reason.
pub fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response<String> {
    json(
        status,
        &serde_json::json!({"error": code, "message": message.to_string()}),
    )
}

/// Decodes `%XX` escapes in a path segment; `None` if they are not valid UTF-8.
pub fn percent_decode(raw: &str) -> Option<String> {
    // The crate passes a `%` without two hex digits through as it is: refuse it.
    let well_formed = raw.match_indices('%').all(|(i, _)| {
        raw.as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A store failure: 503 `busy` under contention, else 500 `internal`. The
/// answer says only that it is safe to retry; what failed is logged.
pub fn store_failure(e: StoreError) -> Response<String> {
    tracing::error!(error = %e, "store failed");
    match e {
        StoreError::Contention(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the stock is busy; retry: a retried request changes stock once",
        ),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something failed on our side; retry: a retried request changes stock once",
        ),
    }
}

/// Who may write through the stock API (adjustments, feed releases): reads
/// are open to whoever may invoke its URL; writes need more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writers {
    /// Principals whose IAM ARN is listed (a trailing `*` matches any rest).
    /// Empty: nobody writes.
    Listed(Vec<String>),
    /// The local stack, which has no IAM: writes carry no identity and name
    /// their actor in the body. Only when the local settings say so.
    Anonymous,
}

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("writes need an IAM identity (a SigV4-signed request)")]
    NoIdentity,
    #[error("{0} may not write through the stock API (not on STOCK_API_WRITERS)")]
    NotListed(String),
}

impl Writers {
    /// `STOCK_API_WRITERS`: comma-separated ARNs; `STOCK_API_ANONYMOUS_WRITES=local`
    /// (the local stack's settings) lets writes without an identity through.
    pub fn from_env() -> Self {
        if crate::config::var("STOCK_API_ANONYMOUS_WRITES").as_deref() == Some("local") {
            return Writers::Anonymous;
        }
        Writers::parse(&crate::config::var("STOCK_API_WRITERS").unwrap_or_default())
    }

    pub fn parse(raw: &str) -> Self {
        Writers::Listed(
            raw.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether the caller (its IAM ARN, if the request had one) may write.
    pub fn check(&self, identity: Option<&str>) -> Result<(), Forbidden> {
        match (self, identity) {
            (Writers::Anonymous, _) => Ok(()),
            (Writers::Listed(_), None) => Err(Forbidden::NoIdentity),
            (Writers::Listed(patterns), Some(arn)) => {
                let listed = patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => arn.starts_with(prefix),
                    None => arn == p,
                });
                if listed {
                    Ok(())
                } else {
                    Err(Forbidden::NotListed(arn.to_owned()))
                }
            }
        }
    }
}

/// A refused write: 403 with what was missing.
pub fn forbidden(e: Forbidden) -> Response<String> {
    tracing::warn!(error = %e, "write refused");
    error(StatusCode::FORBIDDEN, "forbidden", e)
}

/// The caller's IAM identity, when a function URL is IAM-authenticated.
pub fn caller_identity(req: &lambda_http::Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
            iam.user_arn.clone().or_else(|| iam.caller_id.clone())
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The header's value as text, if present and readable.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("JKT%20BLUE%2FM").as_deref(), Some("JKT BLUE/M"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn errors_are_json_with_code_and_message() {
        let r = error(StatusCode::BAD_REQUEST, "bad_request", "quantity: nope");
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["message"], "quantity: nope");
    }

    #[test]
    fn only_listed_principals_write_and_never_without_an_identity() {
        let w = Writers::parse(" arn:aws:iam::1:role/ops-*, arn:aws:iam::1:user/maria ,");
        assert_eq!(w.check(Some("arn:aws:iam::1:role/ops-admin")), Ok(()));
        assert_eq!(w.check(Some("arn:aws:iam::1:user/maria")), Ok(()));
        assert!(matches!(
            w.check(Some("arn:aws:iam::1:user/mario")),
            Err(Forbidden::NotListed(_))
        ));
        assert_eq!(w.check(None), Err(Forbidden::NoIdentity));
        assert_eq!(
            Writers::parse("").check(Some("arn:aws:iam::1:user/maria")),
            Err(Forbidden::NotListed("arn:aws:iam::1:user/maria".into()))
        );
        assert_eq!(Writers::Anonymous.check(None), Ok(()));
        assert_eq!(forbidden(Forbidden::NoIdentity).status(), 403);
    }

    #[test]
    fn store_failures_are_retryable_answers() {
        assert_eq!(store_failure(StoreError::Contention(12)).status(), 503);
        let r = store_failure(StoreError::Dynamo("down".into()));
        assert_eq!(r.status(), 500);
        assert!(r.body().contains("\"internal\""));
    }
}
