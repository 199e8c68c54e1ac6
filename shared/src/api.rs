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

/// A store failure: 503 `busy` under contention, else 500 `internal`.
pub fn store_failure(e: StoreError) -> Response<String> {
    match e {
        StoreError::Contention(_) => error(StatusCode::SERVICE_UNAVAILABLE, "busy", e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
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
    fn store_failures_are_retryable_answers() {
        assert_eq!(store_failure(StoreError::Contention(12)).status(), 503);
        let r = store_failure(StoreError::Dynamo("down".into()));
        assert_eq!(r.status(), 500);
        assert!(r.body().contains("\"internal\""));
    }
}
