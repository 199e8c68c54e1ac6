//! `POST /adjustments`: the request as sent, and its validation into an
//! [`Adjustment`] (README, "Stock API").

use std::ops::RangeInclusive;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::adjustment::{Adjustment, Change};
use crate::domain::{Actor, DocumentRef, InvalidInput, Location, ReasonCode, Sku};

/// Largest absolute change or count one adjustment may make.
pub const MAX_ADJUSTMENT: i64 = 10_000_000;
/// Longest note, in characters.
const MAX_NOTE_CHARS: usize = 1000;
/// Longest `Idempotency-Key`, in bytes.
const MAX_KEY_LEN: usize = 128;

/// One field of a JSON body as sent. Its type is checked by validation, not
/// by deserialization, so that every refusal names its field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sent<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    /// Present, with another type.
    Mistyped,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Sent::Null,
            value => T::deserialize(value).map_or(Sent::Mistyped, Sent::Value),
        })
    }
}

impl Sent<String> {
    /// The text, if any (`null` is none).
    fn text(self, field: &'static str) -> Result<Option<String>, InvalidInput> {
        match self {
            Sent::Absent | Sent::Null => Ok(None),
            Sent::Value(text) => Ok(Some(text)),
            Sent::Mistyped => Err(InvalidInput::field(field, "must be a string")),
        }
    }

    fn required(self, field: &'static str) -> Result<String, InvalidInput> {
        self.text(field)?
            .ok_or_else(|| InvalidInput::field(field, "is required"))
    }
}

impl Sent<i64> {
    /// The number, if it is a whole number in `range` (anything else, `null` included, is refused).
    fn whole(self, field: &'static str, range: RangeInclusive<i64>) -> Result<i64, InvalidInput> {
        match self {
            Sent::Value(n) if range.contains(&n) => Ok(n),
            _ => Err(InvalidInput::field(
                field,
                format!("must be a whole number from {} to {}", range.start(), range.end()),
            )),
        }
    }
}

/// The body of `POST /adjustments`, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AdjustmentRequest {
    pub sku: Sent<String>,
    pub location: Sent<String>,
    /// Units to add (negative: remove); exactly one of `delta` and `set`.
    pub delta: Sent<i64>,
    /// An absolute count.
    pub set: Sent<i64>,
    /// Compare-and-set: the figure the caller expects the level to show.
    pub expected: Sent<i64>,
    pub reason: Sent<String>,
    /// Who made the change; the caller's IAM identity overrides it.
    pub actor: Sent<String>,
    pub note: Sent<String>,
    /// A URI to the document behind the change.
    pub reference: Sent<String>,
}

impl AdjustmentRequest {
    /// Reads a body, which must be a JSON object. Read as a JSON value first:
    /// a repeated key keeps its last value, and any other JSON is refused as such.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidInput> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidInput::field("body", format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(InvalidInput::field("body", "must be a JSON object"));
        }
        Self::deserialize(value).map_err(|e| InvalidInput::field("body", e.to_string()))
    }

    /// Checks the request field by field (the first refusal names its field).
    /// The actor is the caller's IAM `identity` when there is one, else the
    /// body's; `idempotency_key` is the `Idempotency-Key` header.
    pub fn validate(
        self,
        identity: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Adjustment, InvalidInput> {
        let sku = Sku::parse(&self.sku.required("sku")?)?;
        let location = Location::parse(&self.location.required("location")?)?;
        let one_of = || InvalidInput::field("delta", "give exactly one of \"delta\" or \"set\"");
        let change = match (self.delta, self.set) {
            (Sent::Absent, Sent::Absent) => return Err(one_of()),
            (delta, Sent::Absent) => {
                let d = delta.whole("delta", -MAX_ADJUSTMENT..=MAX_ADJUSTMENT)?;
                if d == 0 {
                    return Err(InvalidInput::field("delta", "must not be zero"));
                }
                Change::Delta(d)
            }
            (Sent::Absent, set) => Change::Set(set.whole("set", 0..=MAX_ADJUSTMENT)?),
            _ => return Err(one_of()),
        };
        let expected = match self.expected {
            Sent::Absent | Sent::Null => None,
            e => Some(e.whole("expected", 0..=MAX_ADJUSTMENT)?),
        };
        let reason = ReasonCode::parse_manual(&self.reason.required("reason")?)?;
        let actor = match identity {
            Some(arn) => Actor::system(arn),
            None => Actor::parse(&self.actor.required("actor")?)?,
        };
        let note = self.note.text("note")?.map(|n| n.trim().to_owned());
        let note = note.filter(|n| !n.is_empty());
        if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
            return Err(InvalidInput::field(
                "note",
                format!("must be at most {MAX_NOTE_CHARS} characters"),
            ));
        }
        let document = self.reference.text("reference")?;
        let document = document.as_deref().map(DocumentRef::parse).transpose()?;
        Ok(Adjustment {
            sku,
            location,
            change,
            expected,
            reason,
            actor,
            note,
            document,
            idempotency_key: idempotency_key_of(idempotency_key)?,
        })
    }
}

/// An `Idempotency-Key` header: 1 to 128 printable ASCII characters, trimmed.
pub fn idempotency_key_of(header: Option<&str>) -> Result<Option<String>, InvalidInput> {
    match header.map(str::trim) {
        None => Ok(None),
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        Some(_) => Err(InvalidInput::field(
            "Idempotency-Key",
            "must be 1 to 128 printable ASCII characters",
        )),
    }
}

/// Parses and validates an adjustment request (see [`AdjustmentRequest::validate`]).
pub fn parse_adjustment(
    body: &[u8],
    identity: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<Adjustment, InvalidInput> {
    AdjustmentRequest::parse(body)?.validate(identity, idempotency_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &[u8]) -> String {
        parse_adjustment(body, None, None).unwrap_err().to_string()
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
            let err = refusal(body.as_bytes());
            assert!(err.starts_with(field), "{body}: {err}");
        }
    }

    #[test]
    fn identity_overrides_the_body_actor() {
        let body = br#"{"sku":"A","location":"shop-1","set":3,"reason":"stocktake"}"#;
        let a = parse_adjustment(body, Some("arn:aws:iam::1:user/ana"), None).unwrap();
        assert_eq!(a.actor.as_str(), "arn:aws:iam::1:user/ana");
    }

    #[test]
    fn every_refusal_names_its_field() {
        let base = r#""location":"shop-1","reason":"found","actor":"a""#;
        for (body, field) in [
            ("not json".to_owned(), "body: not valid JSON"),
            ("[1]".to_owned(), "body: must be a JSON object"),
            (format!(r#"{{{base},"set":1}}"#), "sku: is required"),
            (format!(r#"{{{base},"sku":5,"set":1}}"#), "sku: must be a string"),
            (format!(r#"{{{base},"sku":"A"}}"#), "delta: give exactly one"),
            // A null change is a change given, and not a number.
            (
                format!(r#"{{{base},"sku":"A","delta":null}}"#),
                "delta: must be a whole number",
            ),
            (
                format!(r#"{{{base},"sku":"A","delta":null,"set":1}}"#),
                "delta: give exactly one",
            ),
            (
                format!(r#"{{{base},"sku":"A","delta":1.5}}"#),
                "delta: must be a whole number",
            ),
            (
                format!(r#"{{{base},"sku":"A","delta":10000001}}"#),
                "delta: must be a whole number",
            ),
            (
                format!(r#"{{{base},"sku":"A","set":"3"}}"#),
                "set: must be a whole number",
            ),
            (
                format!(r#"{{{base},"sku":"A","set":1,"expected":-1}}"#),
                "expected: must be a whole number",
            ),
            (
                format!(r#"{{{base},"sku":"A","set":1,"note":7}}"#),
                "note: must be a string",
            ),
            (
                format!(r#"{{{base},"sku":"A","set":1,"note":"{}"}}"#, "x".repeat(1001)),
                "note: must be at most 1000 characters",
            ),
        ] {
            let err = refusal(body.as_bytes());
            assert!(err.starts_with(field), "{body}: {err}");
        }
    }

    #[test]
    fn optional_fields_may_be_null_and_notes_are_trimmed() {
        let body = br#"{"sku":"A","location":"shop-1","set":0,"expected":null,"reason":"found",
            "actor":null,"note":"  torn sleeve ","reference":null,"extra":true,"sku":"B"}"#;
        let a = parse_adjustment(body, Some("arn:aws:iam::1:user/ana"), Some(" k ")).unwrap();
        assert_eq!(
            (a.sku.as_str(), a.change, a.expected),
            ("B", Change::Set(0), None)
        );
        assert_eq!(a.note.as_deref(), Some("torn sleeve"));
        assert_eq!((a.document, a.idempotency_key.as_deref()), (None, Some("k")));
        let blank = br#"{"sku":"A","location":"shop-1","delta":1,"reason":"found","actor":"a","note":" "}"#;
        assert_eq!(parse_adjustment(blank, None, None).unwrap().note, None);
    }

    #[test]
    fn idempotency_keys_are_short_printable_ascii() {
        assert_eq!(idempotency_key_of(None).unwrap(), None);
        for bad in ["", "  ", "a b", "é", &"k".repeat(129)] {
            let err = idempotency_key_of(Some(bad)).unwrap_err().to_string();
            assert!(err.starts_with("Idempotency-Key"), "{bad:?}: {err}");
        }
        assert_eq!(
            idempotency_key_of(Some(&"k".repeat(128)))
                .unwrap()
                .map(|k| k.len()),
            Some(128)
        );
    }
}
