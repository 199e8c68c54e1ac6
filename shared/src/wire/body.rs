//! A webhook body, read once into its typed format, and what every format
//! shares: ids, quantities, objects, lines merged per SKU and location.
//!
//! Every refusal starts with the field it is about (`quantity: line 1: ...`),
//! type errors included: `serde_path_to_error` says where one happened.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_path_to_error::Segment;

use crate::domain::{InvalidInput, Location, Quantity, Sku};
use crate::sale::OrderLine;

/// Every field the formats read. A type error is reported against the
/// nearest of them on its path (a refusal names its field statically).
const FIELDS: &[&str] = &[
    // Shopify orders and refunds.
    "id",
    "source_name",
    "location_id",
    "line_items",
    "sku",
    "quantity",
    "order_id",
    "restock",
    "refund_line_items",
    "restock_type",
    "line_item",
    // Generic sales and returns.
    "channel",
    "location",
    "lines",
    "return_id",
    "source",
    "condition",
];

/// Reads a webhook body, which must be one JSON object, as `T`.
pub(super) fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, InvalidInput> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let Object(value) = serde_path_to_error::deserialize(&mut de).map_err(refusal)?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(e: &serde_json::Error) -> InvalidInput {
    InvalidInput::field("body", format!("not valid JSON: {e}"))
}

/// Names the field an error is about, and where it is when that is deeper
/// than the field itself (`sku: line_items[1].sku: invalid type: ...`).
fn refusal(e: serde_path_to_error::Error<serde_json::Error>) -> InvalidInput {
    if !e.inner().is_data() {
        return not_json(e.inner());
    }
    let path = e.path();
    let field = path
        .iter()
        .rev()
        .find_map(|segment| match segment {
            Segment::Map { key } => FIELDS.iter().copied().find(|f| f == key),
            _ => None,
        })
        .unwrap_or("body");
    let at = path.to_string();
    if at == "." || at == field {
        InvalidInput::field(field, e.inner().to_string())
    } else {
        InvalidInput::field(field, format!("{at}: {}", e.inner()))
    }
}

/// A required field's value.
pub(super) fn required<T>(value: Option<T>, field: &'static str) -> Result<T, InvalidInput> {
    value.ok_or_else(|| InvalidInput::field(field, "is required"))
}

/// Line `index`'s quantity: required, whole, from 1 to [`Quantity::MAX`].
pub(super) fn quantity(quantity: Option<i64>, index: usize) -> Result<Quantity, InvalidInput> {
    let n = quantity.ok_or_else(|| InvalidInput::field("quantity", format!("line {index}: is required")))?;
    Quantity::new(n).map_err(|e| InvalidInput::field("quantity", format!("line {index}: {e}")))
}

/// The value `raw` names in a closed list of words.
pub(super) fn one_of<T: Copy>(raw: &str, words: &[(&str, T)]) -> Result<T, String> {
    words
        .iter()
        .find(|(w, _)| *w == raw)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let list: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            format!("{raw:?} is not one of {}", list.join(", "))
        })
}

/// An enum read from one word of a closed list: any other word is refused
/// with the list (read from a string, so a number is a refusal of the field,
/// not of the body's JSON).
macro_rules! closed_words {
    ($(#[$meta:meta])* $name:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, serde::Deserialize)]
        #[serde(try_from = "String")]
        enum $name {
            $($variant),+
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(raw: String) -> Result<Self, String> {
                super::body::one_of(&raw, &[$(($word, $name::$variant)),+])
            }
        }
    };
}
pub(super) use closed_words;

/// Adds a sale line, merged with an earlier line for the same SKU and
/// location (one transaction cannot touch the same item twice).
pub(super) fn merge_line(
    lines: &mut Vec<OrderLine>,
    sku: Sku,
    location: &Location,
    quantity: Quantity,
) -> Result<(), InvalidInput> {
    let line = OrderLine {
        sku,
        location: location.clone(),
        quantity,
    };
    if let Some(existing) = lines
        .iter_mut()
        .find(|l| l.sku == line.sku && l.location == line.location)
    {
        existing.quantity = Quantity::new(existing.quantity.as_i64() + line.quantity.as_i64())
            .map_err(|e| InvalidInput::field("quantity", format!("sku {}: {e}", line.sku)))?;
    } else {
        lines.push(line);
    }
    Ok(())
}

/// An id as senders write it, a string or a whole number (Shopify's are
/// 64-bit integers), kept as text: 1 to 128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Id(String);

impl Id {
    const MAX_LEN: usize = 128;

    pub(super) fn into_string(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a whole number")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                Ok(Id(n.to_string()))
            }

            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Id, E> {
                let id = raw.trim();
                if id.is_empty() || id.len() > Id::MAX_LEN || id.chars().any(char::is_control) {
                    return Err(E::custom(format_args!(
                        "must be 1 to {} printable characters",
                        Id::MAX_LEN
                    )));
                }
                Ok(Id(id.to_owned()))
            }
        }

        d.deserialize_any(IdVisitor)
    }
}

/// `T`, read from a JSON object only: a derived struct would also take an
/// array of its fields in order, which no sender means.
#[derive(Debug)]
pub(super) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// `T` when the value is a JSON object; anything else (null, a number, a
/// list) reads as `None`, as the hand-written reader this replaces did.
#[derive(Debug)]
pub(super) struct IfObject<T>(pub Option<T>);

impl<T> Default for IfObject<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for IfObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IfObjectVisitor(PhantomData)).map(IfObject)
    }
}

struct IfObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for IfObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `T` when the value is one; any other value is ignored rather than
/// refused (e.g. Shopify's `source_name` when it is not a string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OrIgnored<T> {
    Value(T),
    Ignored(IgnoredAny),
}

impl<T> OrIgnored<T> {
    pub(super) fn value(self) -> Option<T> {
        match self {
            OrIgnored::Value(v) => Some(v),
            OrIgnored::Ignored(_) => None,
        }
    }
}

/// What the format tests share.
#[cfg(test)]
pub(super) mod fixtures {
    use crate::config::LocationRules;
    use crate::domain::Location;

    /// `warehouse` by default, POS sells from `shop-1`, Shopify location 111
    /// is `shop-1` and 222 `warehouse`.
    pub(in crate::wire) fn rules() -> LocationRules {
        LocationRules::new(
            Location::parse("warehouse").unwrap(),
            "pos=shop-1,marketplace=warehouse",
            "111=shop-1,222=warehouse",
        )
        .unwrap()
    }

    pub(in crate::wire) fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        id: Option<Id>,
        lines: Option<Vec<Object<Line>>>,
        #[serde(default)]
        line_item: IfObject<Line>,
        source_name: Option<OrIgnored<String>>,
    }

    #[derive(Debug, Deserialize)]
    struct Line {
        sku: Option<String>,
    }

    fn probe(body: &str) -> Result<Probe, String> {
        read::<Probe>(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn objects_are_read_whole() {
        let p = probe(r#"{"lines": [{"sku": "A"}, {}]}"#).unwrap();
        let skus: Vec<_> = p.lines.unwrap().into_iter().map(|Object(l)| l.sku).collect();
        assert_eq!(skus, [Some("A".to_owned()), None]);
    }

    #[test]
    fn a_body_is_one_json_object() {
        for bad in ["{not json", "{} x", ""] {
            let err = probe(bad).unwrap_err();
            assert!(err.starts_with("body: not valid JSON"), "{bad}: {err}");
        }
        for bad in ["[]", "[1, []]", "7", "null"] {
            assert!(probe(bad).unwrap_err().starts_with("body: "), "{bad}");
        }
        assert!(probe("{}").is_ok());
    }

    #[test]
    fn ids_are_strings_or_whole_numbers() {
        let id = |body: &str| probe(body).map(|p| p.id.map(Id::into_string));
        assert_eq!(
            id(r#"{"id": 18446744073709551615}"#).unwrap().as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(id(r#"{"id": " T-1 "}"#).unwrap().as_deref(), Some("T-1"));
        assert_eq!(id(r#"{"id": null}"#).unwrap(), None);
        for bad in ["-1", "1.5", "\"\"", "\"  \"", "\"a\\u0000b\"", "true", "[1]"] {
            let err = id(&format!(r#"{{"id": {bad}}}"#)).unwrap_err();
            assert!(err.starts_with("id: "), "{bad}: {err}");
        }
        let long = format!(r#"{{"id": "{}"}}"#, "x".repeat(129));
        assert!(id(&long).unwrap_err().contains("1 to 128 printable characters"));
    }

    #[test]
    fn type_errors_name_the_nearest_field_and_where() {
        let err = probe(r#"{"lines": [{"sku": "A"}, {"sku": 5}]}"#).unwrap_err();
        assert!(
            err.starts_with("sku: lines[1].sku: invalid type: integer `5`"),
            "{err}"
        );
        let err = probe(r#"{"lines": [{"sku": "A"}, ["B"]]}"#).unwrap_err();
        assert!(
            err.starts_with("lines: lines[1]: invalid type: sequence, expected a JSON object"),
            "{err}"
        );
        let err = probe(r#"{"lines": 3}"#).unwrap_err();
        assert!(err.starts_with("lines: invalid type: integer `3`"), "{err}");
    }

    #[test]
    fn lenient_fields_ignore_other_values() {
        let p = probe(r#"{"line_item": [1, {"sku": "A"}], "source_name": 5}"#).unwrap();
        assert!(p.line_item.0.is_none());
        assert!(p.source_name.and_then(OrIgnored::value).is_none());
        let p = probe(r#"{"line_item": {"sku": "A"}, "source_name": "pos"}"#).unwrap();
        assert_eq!(p.line_item.0.and_then(|l| l.sku).as_deref(), Some("A"));
        assert_eq!(p.source_name.and_then(OrIgnored::value).as_deref(), Some("pos"));
        // An object is still read strictly.
        assert!(probe(r#"{"line_item": {"sku": 5}}"#)
            .unwrap_err()
            .starts_with("sku: line_item.sku"));
        assert!(probe(r#"{"lines": null, "line_item": null}"#).is_ok());
    }
}
