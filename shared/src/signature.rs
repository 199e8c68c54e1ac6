//! Webhook signatures: Shopify's base64 HMAC and Stockroom's generic hex HMAC,
//! both HMAC-SHA256 over the raw body, compared in constant time.

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying Shopify's signature.
pub const SHOPIFY_HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Header naming the Shopify shop: it picks the secret.
pub const SHOPIFY_SHOP_HEADER: &str = "x-shopify-shop-domain";
/// Header naming the Shopify webhook topic.
pub const SHOPIFY_TOPIC_HEADER: &str = "x-shopify-topic";
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
    #[error("missing X-Shopify-Shop-Domain: the shop picks the secret")]
    MissingShop,
}

/// Who sent a webhook, once its signature has checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A Shopify delivery: the shop domain (lower case) and `X-Shopify-Topic`.
    Shopify { shop: String, topic: Option<String> },
    /// A generic delivery signed with `X-Stockroom-Signature`, by the secret of `source`.
    Generic { source: String },
}

/// Checks a webhook's signature the way its headers say it was sent.
///
/// Shopify deliveries (`X-Shopify-Hmac-Sha256` or `X-Shopify-Shop-Domain`)
/// are checked with the shop's secret. Anything else needs
/// `X-Stockroom-Signature`; the secret is picked by the body's `source_field`
/// (read before the signature is checked, trusted only after), falling back
/// to `default_source` and then to the default secret.
pub fn authenticate(
    headers: &http::HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
    source_field: &str,
    default_source: &str,
) -> Result<Sender, SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header(SHOPIFY_HMAC_HEADER).is_some() || header(SHOPIFY_SHOP_HEADER).is_some() {
        let shop = header(SHOPIFY_SHOP_HEADER)
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::MissingShop)?;
        verify_shopify(secrets.for_source(&shop)?, body, header(SHOPIFY_HMAC_HEADER))?;
        return Ok(Sender::Shopify {
            shop,
            topic: header(SHOPIFY_TOPIC_HEADER).map(|t| t.trim().to_owned()),
        });
    }
    let sig = header(STOCKROOM_SIGNATURE_HEADER).ok_or(SignatureError::Missing)?;
    let source = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(source_field).and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_else(|| default_source.to_owned());
    verify_generic(secrets.for_source(&source)?, body, Some(sig))?;
    Ok(Sender::Generic { source })
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
    fn authenticate_picks_the_scheme_and_secret_from_headers_and_body() {
        let secrets = WebhookSecrets::parse(r#"{"default":"d","shop.myshopify.com":"s","desk":"k"}"#);
        let body = br#"{"source":"desk","x":1}"#;
        let mut h = http::HeaderMap::new();
        h.insert(SHOPIFY_SHOP_HEADER, "Shop.myshopify.com".parse().unwrap());
        h.insert(SHOPIFY_HMAC_HEADER, sign_shopify(b"s", body).parse().unwrap());
        h.insert(SHOPIFY_TOPIC_HEADER, "refunds/create".parse().unwrap());
        assert_eq!(
            authenticate(&h, body, &secrets, "source", "returns"),
            Ok(Sender::Shopify {
                shop: "shop.myshopify.com".into(),
                topic: Some("refunds/create".into())
            })
        );
        h.remove(SHOPIFY_SHOP_HEADER);
        assert_eq!(
            authenticate(&h, body, &secrets, "source", "returns"),
            Err(SignatureError::MissingShop)
        );
        let generic = |secret: &[u8], body: &[u8]| {
            let mut g = http::HeaderMap::new();
            g.insert(
                STOCKROOM_SIGNATURE_HEADER,
                sign_generic(secret, body).parse().unwrap(),
            );
            authenticate(&g, body, &secrets, "source", "returns")
        };
        assert_eq!(
            generic(b"k", body),
            Ok(Sender::Generic {
                source: "desk".into()
            })
        );
        // Signed with the default secret but claiming a source with its own secret.
        assert_eq!(generic(b"d", body), Err(SignatureError::Mismatch));
        let anon = br#"{"x":1}"#;
        assert_eq!(
            generic(b"d", anon),
            Ok(Sender::Generic {
                source: "returns".into()
            })
        );
        assert_eq!(
            authenticate(&http::HeaderMap::new(), anon, &secrets, "source", "returns"),
            Err(SignatureError::Missing)
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
