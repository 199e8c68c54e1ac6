//! HTTP answers shared by the function URLs: always JSON, errors as
//! `{"error": "<code>", "message": "<what was wrong>"}`.

use http::{header, Response, StatusCode};
use serde::Serialize;

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
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a webhook was refused before it touched stock.
#[derive(Debug)]
pub enum Refusal {
    /// Answered with this status, error code and reason.
    Status(StatusCode, &'static str, String),
    /// Accepted but not for this function (e.g. another Shopify topic): 200, so the sender stops retrying.
    Ignored(String),
}

impl From<crate::signature::SignatureError> for Refusal {
    fn from(e: crate::signature::SignatureError) -> Self {
        Refusal::Status(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

impl From<crate::domain::InvalidInput> for Refusal {
    fn from(e: crate::domain::InvalidInput) -> Self {
        Refusal::Status(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    }
}

impl Refusal {
    /// The answer to the sender, logged with the delivery's id.
    pub fn respond(self, webhook_id: &str) -> Response<String> {
        match self {
            Refusal::Status(status, code, message) => {
                tracing::info!(%status, %message, webhook_id, "webhook refused");
                error(status, code, message)
            }
            Refusal::Ignored(message) => {
                tracing::info!(%message, webhook_id, "webhook ignored");
                json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ignored", "message": message}),
                )
            }
        }
    }
}

/// Webhooks are POSTs of at most [`MAX_BODY_BYTES`].
pub fn check_webhook(method: &http::Method, body: &[u8]) -> Result<(), Refusal> {
    if method != http::Method::POST {
        return Err(Refusal::Status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST".into(),
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Refusal::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    Ok(())
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
}
