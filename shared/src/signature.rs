//! Webhook signatures: Shopify's base64 HMAC and Stockroom's generic hex HMAC,
//! both HMAC-SHA256 over the raw body, compared in constant time.

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying Shopify's signature.
pub const SHOPIFY_HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Header carrying the generic signature: `sha256=<hex>`.
pub const STOCKROOM_SIGNATURE_HEADER: &str = "x-stockroom-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("signature header is not well formed")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("no webhook secret is configured for {0:?}")]
    NoSecret(String),
}

/// The webhook secrets: one default, optionally one per shop domain or channel.
///
/// Read from a plain string (one secret for every source) or a JSON object
/// `{"default": "...", "example.myshopify.com": "...", "pos": "..."}`.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    default: Option<Vec<u8>>,
    by_source: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        f.debug_struct("WebhookSecrets")
            .field("default", &self.default.is_some())
            .field("sources", &self.by_source.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebhookSecrets {
    pub fn parse(raw: &str) -> Self {
        let trimmed = raw.trim();
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(trimmed) {
            let mut out = Self::default();
            for (k, v) in map {
                if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                    if k == "default" {
                        out.default = Some(s.as_bytes().to_vec());
                    } else {
                        out.by_source
                            .insert(k.to_ascii_lowercase(), s.as_bytes().to_vec());
                    }
                }
            }
            return out;
        }
        Self {
            default: (!trimmed.is_empty()).then(|| trimmed.as_bytes().to_vec()),
            by_source: HashMap::new(),
        }
    }

    /// The secret for a shop domain or channel, falling back to the default.
    pub fn for_source(&self, source: &str) -> Result<&[u8], SignatureError> {
        self.by_source
            .get(&source.to_ascii_lowercase())
            .or(self.default.as_ref())
            .map(Vec::as_slice)
            .ok_or_else(|| SignatureError::NoSecret(source.into()))
    }
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(body);
    m
}

/// Checks `X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256(body, secret).
pub fn verify_shopify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(header)
        .map_err(|_| SignatureError::Malformed)?;
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks `X-Stockroom-Signature: sha256=<hex of HMAC-SHA256(body, secret)>`.
pub fn verify_generic(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let hex_sig = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs a body the Shopify way (for clients, the demo and tests).
pub fn sign_shopify(secret: &[u8], body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, body).finalize().into_bytes())
}

/// Signs a body the generic way: `sha256=<hex>`.
pub fn sign_generic(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_signature_round_trips_and_rejects_tampering() {
        let body = br#"{"id":1}"#;
        let sig = sign_shopify(b"s3cret", body);
        assert_eq!(verify_shopify(b"s3cret", body, Some(&sig)), Ok(()));
        assert_eq!(
            verify_shopify(b"other", body, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shopify(b"s3cret", br#"{"id":2}"#, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shopify(b"s3cret", body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_shopify(b"s3cret", body, Some("%%%")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn shopify_signature_matches_a_known_vector() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), base64.
        let sig = sign_shopify(b"key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(sig, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    }

    #[test]
    fn generic_signature_needs_prefix_and_hex() {
        let body = b"{}";
        let sig = sign_generic(b"k", body);
        assert!(sig.starts_with("sha256="));
        assert_eq!(verify_generic(b"k", body, Some(&sig)), Ok(()));
        assert_eq!(
            verify_generic(b"k", body, Some(sig.trim_start_matches("sha256="))),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_generic(b"k", body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_generic(b"j", body, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn secrets_by_source_fall_back_to_default() {
        let s = WebhookSecrets::parse(r#"{"default":"d","Shop.myshopify.com":"s"}"#);
        assert_eq!(s.for_source("shop.myshopify.com").unwrap(), b"s");
        assert_eq!(s.for_source("pos").unwrap(), b"d");
        let plain = WebhookSecrets::parse("plain");
        assert_eq!(plain.for_source("anything").unwrap(), b"plain");
        assert!(WebhookSecrets::parse("").for_source("x").is_err());
        let shown = format!("{:?}", WebhookSecrets::parse("hunter2-secret"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
