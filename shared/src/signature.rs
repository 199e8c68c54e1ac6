//! Webhook senders and their signatures.
//!
//! Every sender is known by name and holds its own secret, good for the
//! endpoints it is listed for: a Shopify shop (`<shop>.myshopify.com`), a
//! channel (`channel:<name>`, e.g. a POS or a marketplace) or a returns
//! source (`source:<name>`, e.g. the returns desk). There is no fallback: an
//! unknown sender, or a secret used on an endpoint it is not for, is refused.
//!
//! - Shopify signs the raw body: `X-Shopify-Hmac-Sha256` is the base64
//!   HMAC-SHA256 of it; `X-Shopify-Shop-Domain` names the shop.
//! - Stockroom's generic format signs a timestamp with the body:
//!   `X-Stockroom-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of
//!   "<t>.<raw body>">`, refused more than five minutes from now, so a
//!   captured request cannot be replayed later. The sender is the body's
//!   channel (sales) or source (returns), read before the signature is
//!   checked and trusted only after; the name is normalised once and the
//!   event is recorded under exactly that name.
//!
//! Both are compared in constant time.

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::domain::Location;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying Shopify's signature.
pub const SHOPIFY_HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Header naming the Shopify shop: it picks the secret.
pub const SHOPIFY_SHOP_HEADER: &str = "x-shopify-shop-domain";
/// Header naming the Shopify webhook topic.
pub const SHOPIFY_TOPIC_HEADER: &str = "x-shopify-topic";
/// Header carrying the generic signature: `t=<unix seconds>,sha256=<hex>`.
pub const STOCKROOM_SIGNATURE_HEADER: &str = "x-stockroom-signature";
/// How far a generic signature's time may be from now, either way.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// What a sender may post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// `sale-webhook`.
    Sales,
    /// `return-processor`.
    Returns,
    /// Edits made in a channel's own admin.
    ChannelEvents,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Sales => "sales",
            Endpoint::Returns => "returns",
            Endpoint::ChannelEvents => "channel-events",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("signature header is not well formed: expected {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("the signature's time is more than {MAX_SKEW_SECONDS} s from now: a stale or replayed request")]
    Stale,
    #[error("unknown sender {0:?}")]
    UnknownSender(String),
    #[error("sender {sender:?} may not post to {endpoint}")]
    NotAllowed { sender: String, endpoint: &'static str },
    #[error("missing X-Shopify-Shop-Domain: the shop picks the secret")]
    MissingShop,
    #[error("the body names no sender: {0}")]
    NoSender(String),
    /// Not JSON at all: it cannot name its sender (answered as bad input).
    #[error("body: not valid JSON: {0}")]
    NotJson(String),
}

/// Who sent a webhook, once its signature has checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A Shopify delivery: the shop domain (lower case) and `X-Shopify-Topic`.
    Shopify { shop: String, topic: Option<String> },
    /// A generic delivery, by the channel or returns source it names
    /// (normalised: the name its secret is listed under, without its prefix).
    Generic { name: String },
}

/// How a function's generic senders are named.
#[derive(Debug, Clone, Copy)]
pub struct GenericSenders {
    /// The body field naming the sender (`channel`, `source`).
    pub field: &'static str,
    /// The prefix of its name among the secrets (`channel`, `source`).
    pub kind: &'static str,
    /// The sender of a body that names none, if there is one.
    pub default: Option<&'static str>,
}

/// A sender's name as the body gives it, normalised once: surrounding
/// blanks dropped, a slug of `a-z`, `0-9`, `-` or `_`.
pub fn sender_slug(raw: &str, field: &'static str) -> Result<String, crate::domain::InvalidInput> {
    Location::parse(raw)
        .map(|l| l.to_string())
        .map_err(|_| crate::domain::InvalidInput::field(field, "must be a slug of a-z, 0-9, '-' or '_'"))
}

/// Checks a webhook's signature the way its headers say it was sent, by the
/// secret of exactly the sender it names, for `endpoint`; `now` is the time
/// in unix seconds.
pub fn authenticate(
    headers: &http::HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
    endpoint: Endpoint,
    generic: GenericSenders,
    now: i64,
) -> Result<Sender, SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header(SHOPIFY_HMAC_HEADER).is_some() || header(SHOPIFY_SHOP_HEADER).is_some() {
        let shop = header(SHOPIFY_SHOP_HEADER)
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::MissingShop)?;
        verify_shopify(
            secrets.secret(&shop, endpoint)?,
            body,
            header(SHOPIFY_HMAC_HEADER),
        )?;
        return Ok(Sender::Shopify {
            shop,
            topic: header(SHOPIFY_TOPIC_HEADER).map(|t| t.trim().to_owned()),
        });
    }
    let sig = header(STOCKROOM_SIGNATURE_HEADER).ok_or(SignatureError::Missing)?;
    let named = serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|e| SignatureError::NotJson(e.to_string()))?
        .get(generic.field)
        .cloned();
    let raw = match named {
        Some(serde_json::Value::String(s)) => s,
        None | Some(serde_json::Value::Null) => generic
            .default
            .map(str::to_owned)
            .ok_or_else(|| SignatureError::NoSender(format!("{} is required", generic.field)))?,
        Some(_) => {
            return Err(SignatureError::NoSender(format!(
                "{} must be a string",
                generic.field
            )))
        }
    };
    let name = sender_slug(&raw, generic.field).map_err(|e| SignatureError::NoSender(e.to_string()))?;
    let full = format!("{}:{name}", generic.kind);
    verify_generic(secrets.secret(&full, endpoint)?, body, Some(sig), now)?;
    Ok(Sender::Generic { name })
}

/// One sender's secret and the endpoints it may post to.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    secret: String,
    endpoints: Vec<Endpoint>,
}

/// The webhook secrets: one entry per sender, no default.
///
/// Read from JSON: `{"<shop>.myshopify.com": {"secret": "...", "endpoints":
/// ["sales", "returns"]}, "channel:pos": {...}, "source:returns-desk": {...}}`.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    senders: HashMap<String, Entry>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        let mut names: Vec<&String> = self.senders.keys().collect();
        names.sort();
        f.debug_struct("WebhookSecrets").field("senders", &names).finish()
    }
}

/// Why the secrets' configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secrets: {0}")]
pub struct SecretsError(String);

/// Whether `name` is a sender's name as the secrets list it.
fn valid_name(name: &str) -> bool {
    let slug = |s: &str| Location::parse(s).is_ok_and(|l| l.as_str() == s);
    match name.split_once(':') {
        Some(("channel" | "source", rest)) => slug(rest),
        Some(_) => false,
        // A shop's domain, lower case.
        None => {
            !name.is_empty()
                && name.contains('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        }
    }
}

impl WebhookSecrets {
    /// Parses the JSON; every name must be a shop's domain (lower case),
    /// `channel:<slug>` or `source:<slug>`, every secret at least 16
    /// characters, every sender listed for at least one endpoint.
    pub fn parse(raw: &str) -> Result<Self, SecretsError> {
        let senders: HashMap<String, Entry> = serde_json::from_str(raw.trim()).map_err(|e| {
            SecretsError(format!(
                "expected a JSON object of senders, each {{\"secret\", \"endpoints\"}}: {e}"
            ))
        })?;
        for (name, entry) in &senders {
            if !valid_name(name) {
                return Err(SecretsError(format!(
                    "{name:?} is not a sender: use <shop>.myshopify.com, channel:<name> or source:<name>"
                )));
            }
            if entry.secret.len() < 16 {
                return Err(SecretsError(format!(
                    "{name}: the secret must be at least 16 characters"
                )));
            }
            if entry.endpoints.is_empty() {
                return Err(SecretsError(format!("{name}: list the endpoints it may post to")));
            }
        }
        Ok(Self { senders })
    }

    /// The secret of exactly `name`, if it may post to `endpoint`.
    pub fn secret(&self, name: &str, endpoint: Endpoint) -> Result<&[u8], SignatureError> {
        let entry = self
            .senders
            .get(name)
            .ok_or_else(|| SignatureError::UnknownSender(name.to_owned()))?;
        if !entry.endpoints.contains(&endpoint) {
            return Err(SignatureError::NotAllowed {
                sender: name.to_owned(),
                endpoint: endpoint.as_str(),
            });
        }
        Ok(entry.secret.as_bytes())
    }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        m.update(part);
    }
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
        .map_err(|_| SignatureError::Malformed("base64"))?;
    mac(secret, &[body])
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks `X-Stockroom-Signature: t=<unix seconds>,sha256=<hex of
/// HMAC-SHA256("<t>.<body>", secret)>`, and that `t` is within
/// [`MAX_SKEW_SECONDS`] of `now`.
pub fn verify_generic(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    const FORM: &str = "t=<unix seconds>,sha256=<hex>";
    let (t, hex_sig) = header
        .split_once(',')
        .and_then(|(t, s)| Some((t.trim().strip_prefix("t=")?, s.trim().strip_prefix("sha256=")?)))
        .ok_or(SignatureError::Malformed(FORM))?;
    let at: i64 = t.parse().map_err(|_| SignatureError::Malformed(FORM))?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed(FORM))?;
    mac(secret, &[t.as_bytes(), b".", body])
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)?;
    // Checked after the signature: an unsigned time says nothing.
    if (now - at).abs() > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Signs a body the Shopify way (for clients, the demo and tests).
pub fn sign_shopify(secret: &[u8], body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, &[body]).finalize().into_bytes())
}

/// Signs a body the generic way, at `t` (unix seconds): `t=<t>,sha256=<hex>`.
pub fn sign_generic(secret: &[u8], body: &[u8], t: i64) -> String {
    let t = t.to_string();
    let sig = mac(secret, &[t.as_bytes(), b".", body]).finalize().into_bytes();
    format!("t={t},sha256={}", hex::encode(sig))
}

/// Signs a body the generic way, now.
pub fn sign_generic_now(secret: &[u8], body: &[u8]) -> String {
    sign_generic(secret, body, crate::clock::epoch_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::parse(
            r#"{"shop.myshopify.com": {"secret": "shop-secret-0123456789", "endpoints": ["sales", "returns"]},
                "channel:pos": {"secret": "pos-secret-0123456789", "endpoints": ["sales"]},
                "source:desk": {"secret": "desk-secret-0123456789", "endpoints": ["returns"]}}"#,
        )
        .unwrap()
    }

    const SALES: GenericSenders = GenericSenders {
        field: "channel",
        kind: "channel",
        default: None,
    };
    const RETURNS: GenericSenders = GenericSenders {
        field: "source",
        kind: "source",
        default: Some("returns"),
    };

    fn generic(secret: &str, body: &[u8], t: i64) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            STOCKROOM_SIGNATURE_HEADER,
            sign_generic(secret.as_bytes(), body, t).parse().unwrap(),
        );
        h
    }

    /// A generic request signed now with `secret`, posted to `endpoint`.
    fn posted(secret: &str, body: &[u8], endpoint: Endpoint) -> Result<Sender, SignatureError> {
        let rules = if endpoint == Endpoint::Returns {
            RETURNS
        } else {
            SALES
        };
        authenticate(
            &generic(secret, body, NOW),
            body,
            &secrets(),
            endpoint,
            rules,
            NOW,
        )
    }

    #[test]
    fn shopify_signature_round_trips_and_matches_a_known_vector() {
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
        assert!(matches!(
            verify_shopify(b"s3cret", body, Some("%%%")),
            Err(SignatureError::Malformed(_))
        ));
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), base64.
        let sig = sign_shopify(b"key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(sig, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    }

    #[test]
    fn a_generic_signature_covers_its_time_and_is_refused_out_of_window() {
        let body = b"{}";
        let sig = sign_generic(b"k", body, NOW);
        assert!(sig.starts_with(&format!("t={NOW},sha256=")));
        assert_eq!(verify_generic(b"k", body, Some(&sig), NOW), Ok(()));
        assert_eq!(verify_generic(b"k", body, Some(&sig), NOW + 299), Ok(()));
        assert_eq!(
            verify_generic(b"k", body, Some(&sig), NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_generic(b"k", body, Some(&sig), NOW - 301),
            Err(SignatureError::Stale)
        );
        // The time is signed: moving it breaks the signature.
        let moved = sig.replace(&format!("t={NOW}"), &format!("t={}", NOW + 600));
        assert_eq!(
            verify_generic(b"k", body, Some(&moved), NOW + 600),
            Err(SignatureError::Mismatch)
        );
        // The old form without a time is refused.
        let old = format!(
            "sha256={}",
            hex::encode(mac(b"k", &[body]).finalize().into_bytes())
        );
        assert!(matches!(
            verify_generic(b"k", body, Some(&old), NOW),
            Err(SignatureError::Malformed(_))
        ));
        assert_eq!(
            verify_generic(b"j", body, Some(&sig), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn each_sender_is_checked_by_exactly_its_own_secret_and_endpoints() {
        let s = secrets();
        let sale = br#"{"channel":"pos","x":1}"#;
        assert_eq!(
            posted("pos-secret-0123456789", sale, Endpoint::Sales),
            Ok(Sender::Generic { name: "pos".into() })
        );
        // The returns desk's secret cannot post sales, even naming itself.
        let as_desk = br#"{"channel":"desk"}"#;
        assert_eq!(
            posted("desk-secret-0123456789", as_desk, Endpoint::Sales),
            Err(SignatureError::UnknownSender("channel:desk".into()))
        );
        // POS's secret is for sales only.
        let ret = br#"{"source":"desk"}"#;
        assert_eq!(
            posted("pos-secret-0123456789", ret, Endpoint::Returns),
            Err(SignatureError::Mismatch)
        );
        let pos_return = br#"{"source":"pos"}"#;
        assert_eq!(
            posted("pos-secret-0123456789", pos_return, Endpoint::Returns),
            Err(SignatureError::UnknownSender("source:pos".into()))
        );
        // A padded name is normalised once and needs that sender's secret.
        let padded = br#"{"channel":" pos"}"#;
        assert_eq!(
            posted("pos-secret-0123456789", padded, Endpoint::Sales),
            Ok(Sender::Generic { name: "pos".into() })
        );
        assert_eq!(
            posted("desk-secret-0123456789", padded, Endpoint::Sales),
            Err(SignatureError::Mismatch)
        );
        // No default sender for sales; the returns default must be listed like any other.
        let anon = br#"{"x":1}"#;
        assert!(matches!(
            posted("pos-secret-0123456789", anon, Endpoint::Sales),
            Err(SignatureError::NoSender(_))
        ));
        assert_eq!(
            posted("desk-secret-0123456789", anon, Endpoint::Returns),
            Err(SignatureError::UnknownSender("source:returns".into()))
        );
        // Shopify: the shop header picks the secret; an unknown shop is refused.
        let mut h = http::HeaderMap::new();
        h.insert(SHOPIFY_SHOP_HEADER, "Shop.myshopify.com".parse().unwrap());
        h.insert(
            SHOPIFY_HMAC_HEADER,
            sign_shopify(b"shop-secret-0123456789", sale).parse().unwrap(),
        );
        h.insert(SHOPIFY_TOPIC_HEADER, "orders/create".parse().unwrap());
        assert_eq!(
            authenticate(&h, sale, &s, Endpoint::Sales, SALES, NOW),
            Ok(Sender::Shopify {
                shop: "shop.myshopify.com".into(),
                topic: Some("orders/create".into())
            })
        );
        assert_eq!(
            authenticate(&h, sale, &s, Endpoint::ChannelEvents, SALES, NOW),
            Err(SignatureError::NotAllowed {
                sender: "shop.myshopify.com".into(),
                endpoint: "channel-events"
            })
        );
        h.insert(SHOPIFY_SHOP_HEADER, "other.myshopify.com".parse().unwrap());
        assert_eq!(
            authenticate(&h, sale, &s, Endpoint::Sales, SALES, NOW),
            Err(SignatureError::UnknownSender("other.myshopify.com".into()))
        );
        h.remove(SHOPIFY_SHOP_HEADER);
        assert_eq!(
            authenticate(&h, sale, &s, Endpoint::Sales, SALES, NOW),
            Err(SignatureError::MissingShop)
        );
        assert_eq!(
            authenticate(&http::HeaderMap::new(), sale, &s, Endpoint::Sales, SALES, NOW),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn secrets_name_every_sender_and_never_fall_back() {
        for bad in [
            "plain-secret",
            r#"{"default": {"secret": "0123456789abcdef", "endpoints": ["sales"]}}"#,
            r#"{"pos": {"secret": "0123456789abcdef", "endpoints": ["sales"]}}"#,
            r#"{"channel:POS": {"secret": "0123456789abcdef", "endpoints": ["sales"]}}"#,
            r#"{"channel:pos": {"secret": "short", "endpoints": ["sales"]}}"#,
            r#"{"channel:pos": {"secret": "0123456789abcdef", "endpoints": []}}"#,
            r#"{"channel:pos": {"secret": "0123456789abcdef", "endpoints": ["everything"]}}"#,
            r#"{"Shop.myshopify.com": {"secret": "0123456789abcdef", "endpoints": ["sales"]}}"#,
        ] {
            assert!(WebhookSecrets::parse(bad).is_err(), "{bad}");
        }
        let shown = format!("{:?}", secrets());
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("channel:pos"), "{shown}");
    }
}
