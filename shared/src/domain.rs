//! Domain types. Each is parsed once, at the edge, with an error that says what
//! was wrong; inside the library nothing re-checks them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("sku must be 1 to {max} characters without control characters, got {got:?}", max = Sku::MAX_LEN)]
    Sku { got: String },
    #[error("location must be 1 to {max} characters of a-z, 0-9, '-' or '_' (or a supplier's pool, pool:<supplier>), got {got:?}", max = Location::MAX_LEN)]
    Location { got: String },
    #[error("quantity must be a whole number from 1 to {max}, got {got}", max = Quantity::MAX)]
    Quantity { got: String },
    #[error("unknown reason {got:?}; expected one of: {expected}")]
    Reason { got: String, expected: String },
    #[error("actor must be 1 to 200 characters, got {got:?}")]
    Actor { got: String },
    #[error("reference must be a URI of at most 1024 characters (scheme:rest), got {got:?}")]
    Reference { got: String },
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
}

impl InvalidInput {
    /// A refusal about one named field.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Field {
            field,
            message: message.into(),
        }
    }
}

/// A checked type holding text: the type, `as_str` and `Display`.
macro_rules! text {
    ($($(#[$doc:meta])* $name:ident $(: $extra:ident)*;)+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize $(, $extra)*)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )+};
}

text! {
    /// A stock keeping unit as the retailer writes it (case and inner spaces kept).
    Sku: Hash: PartialOrd: Ord;
    /// A place that holds stock: a warehouse, a shop, a supplier's pool.
    Location: Hash: PartialOrd: Ord;
    /// Who made a change: a person, a role ARN, or a system source.
    Actor;
    /// A URI to the document behind a change (a stocktake sheet, a ticket).
    DocumentRef;
}

impl Sku {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let s = raw.trim();
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(InvalidInput::Sku { got: raw.into() });
        }
        Ok(Self(s.to_owned()))
    }
}

impl Location {
    /// The longest slug (a pool adds its prefix to it).
    pub const MAX_LEN: usize = 64;
    /// What a supplier's pool starts with: `:` is never in a slug, so no
    /// slug (a shop, a warehouse, a supplier named like one) equals a pool.
    pub const POOL_PREFIX: &'static str = "pool:";

    /// A slug (`a-z`, `0-9`, `-`, `_`), or a supplier's pool written
    /// `pool:<supplier>` (so ops, channels and adjustments can name one).
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let s = raw.trim();
        let ok = is_slug(s.strip_prefix(Self::POOL_PREFIX).unwrap_or(s));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInput::Location { got: raw.into() })
        }
    }

    /// The pool of the supplier `supplier` (a plain slug): `pool:<supplier>`,
    /// where a supplier's own stock counts are kept.
    pub fn pool(supplier: &str) -> Result<Self, InvalidInput> {
        if is_slug(supplier) {
            Ok(Self(format!("{}{supplier}", Self::POOL_PREFIX)))
        } else {
            Err(InvalidInput::Location { got: supplier.into() })
        }
    }

    /// Whether this is a supplier's pool rather than a place.
    pub fn is_pool(&self) -> bool {
        self.0.starts_with(Self::POOL_PREFIX)
    }
}

/// 1 to [`Location::MAX_LEN`] characters of `a-z`, `0-9`, `-` or `_`.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= Location::MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A strictly positive number of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// Far above any real order line; keeps every sum well inside i64.
    pub const MAX: u32 = 1_000_000;

    pub fn new(n: i64) -> Result<Self, InvalidInput> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(InvalidInput::Quantity { got: n.to_string() })
        }
    }

    /// Parses a JSON value that must be a whole positive number.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, InvalidInput> {
        match v.as_i64() {
            Some(n) => Self::new(n),
            None => Err(InvalidInput::Quantity { got: v.to_string() }),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_i64(self) -> i64 {
        i64::from(self.0)
    }
}

macro_rules! reasons {
    ($( $variant:ident => $code:literal, manual: $manual:literal, $doc:literal; )*) => {
        /// Why stock moved. Every ledger entry carries one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ReasonCode {
            $( #[doc = $doc] $variant, )*
        }

        impl ReasonCode {
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ReasonCode::$variant => $code,)* }
            }

            /// Whether people may use this reason in a manual adjustment.
            pub fn is_manual(self) -> bool {
                match self { $(ReasonCode::$variant => $manual,)* }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($code => Some(ReasonCode::$variant),)* _ => None }
            }
        }
    };
}

reasons! {
    Sale => "sale", manual: false, "A sale webhook took stock.";
    Return => "return", manual: false, "A processed return put stock back.";
    SupplierDelivery => "supplier_delivery", manual: false, "A supplier delivery feed added stock.";
    SupplierCount => "supplier_count", manual: false, "A supplier stock feed set the count.";
    Stocktake => "stocktake", manual: true, "A physical count set or corrected the figure.";
    Damage => "damage", manual: true, "Units found damaged and taken out of sale.";
    Theft => "theft", manual: true, "Units lost to theft.";
    Loss => "loss", manual: true, "Units lost for another known reason.";
    Found => "found", manual: true, "Units found that were not counted.";
    Received => "received", manual: true, "Goods received outside a supplier feed.";
    TransferIn => "transfer_in", manual: true, "Units moved in from another location.";
    TransferOut => "transfer_out", manual: true, "Units moved out to another location.";
    Correction => "correction", manual: true, "A correction of an earlier mistake.";
    ChannelEdit => "channel_edit", manual: false, "Someone edited the figure in a channel's own admin.";
    InitialCount => "initial_count", manual: false, "The first figure of a SKU, imported from a channel.";
}

impl ReasonCode {
    /// Parses a reason a person may use for a manual adjustment.
    pub fn parse_manual(raw: &str) -> Result<Self, InvalidInput> {
        match Self::parse(raw) {
            Some(r) if r.is_manual() => Ok(r),
            _ => Err(InvalidInput::Reason {
                got: raw.into(),
                expected: Self::ALL
                    .iter()
                    .filter(|r| r.is_manual())
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Actor {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
            return Err(InvalidInput::Actor { got: raw.into() });
        }
        Ok(Self(s.to_owned()))
    }

    /// A system actor, e.g. `shopify:example.myshopify.com`; built from checked parts.
    pub fn system(source: &str) -> Self {
        Self(source.chars().filter(|c| !c.is_control()).take(200).collect())
    }
}

impl DocumentRef {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::Reference { got: raw.into() };
        if raw.len() > 1024 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad());
        }
        let (scheme, rest) = raw.split_once(':').ok_or_else(bad)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok || rest.is_empty() {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_trims_and_rejects_empty_or_control() {
        assert_eq!(Sku::parse("  JKT-BLUE-M ").unwrap().as_str(), "JKT-BLUE-M");
        assert!(Sku::parse("   ").is_err());
        assert!(Sku::parse("A\u{0}B").is_err());
        assert!(Sku::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn location_is_a_slug() {
        assert!(Location::parse("shop-1").is_ok());
        assert!(Location::parse("Shop 1").is_err());
        assert!(Location::parse("").is_err());
        assert!(Location::parse("a:b").is_err());
    }

    #[test]
    fn a_pool_is_in_a_namespace_no_slug_can_reach() {
        let pool = Location::pool("warehouse").unwrap();
        assert_eq!(pool.as_str(), "pool:warehouse");
        assert!(pool.is_pool());
        // A supplier named like a place: its pool is still not that place.
        let place = Location::parse("warehouse").unwrap();
        assert!(pool != place && !place.is_pool());
        // Ops and channels may name a pool; it parses back to the same location.
        assert_eq!(Location::parse("pool:warehouse").unwrap(), pool);
        for bad in ["pool:", "pool:Acme", "pool:pool:acme", "Pool:acme", "pool :acme"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "pool:acme", "Acme", "a b"] {
            assert!(Location::pool(bad).is_err(), "{bad}");
        }
        let longest = "x".repeat(Location::MAX_LEN);
        assert!(Location::pool(&longest).is_ok());
        assert!(Location::pool(&format!("{longest}x")).is_err());
    }

    #[test]
    fn quantity_is_positive_and_bounded() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert_eq!(Quantity::new(5).unwrap().get(), 5);
        assert!(Quantity::new(i64::from(Quantity::MAX) + 1).is_err());
        assert!(Quantity::from_json(&serde_json::json!(1.5)).is_err());
        assert!(Quantity::from_json(&serde_json::json!("2")).is_err());
    }

    #[test]
    fn only_manual_reasons_parse_for_people() {
        assert_eq!(
            ReasonCode::parse_manual("stocktake").unwrap(),
            ReasonCode::Stocktake
        );
        let err = ReasonCode::parse_manual("sale").unwrap_err().to_string();
        assert!(err.contains("stocktake") && !err.contains("supplier_count"));
        assert!(ReasonCode::parse_manual("nope").is_err());
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(r.as_str()), Some(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }

    #[test]
    fn document_ref_needs_a_scheme() {
        assert!(DocumentRef::parse("https://example.com/sheet/1").is_ok());
        assert!(DocumentRef::parse("urn:stocktake:2026-11").is_ok());
        assert!(DocumentRef::parse("no scheme").is_err());
        assert!(DocumentRef::parse("1http:x").is_err());
        assert!(DocumentRef::parse("http:").is_err());
    }
}
