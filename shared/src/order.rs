//! Sale webhooks: Shopify `orders/create` (and `orders/paid`) and the generic
//! signed format, parsed into one [`Order`].

use std::collections::HashMap;

use serde_json::Value;

use crate::config::LocationRules;
use crate::domain::{InvalidInput, Location, Quantity, Sku};
use crate::sale::{Order, OrderLine, SkippedLine};

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, InvalidInput> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| InvalidInput::field("body", format!("not valid JSON: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(InvalidInput::field("body", "must be a JSON object"))
    }
}

pub(crate) fn order_id(v: Option<&Value>, field: &'static str) -> Result<String, InvalidInput> {
    let id = match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(Value::Null) | None => return Err(InvalidInput::field(field, "is required")),
        Some(_) => return Err(InvalidInput::field(field, "must be a string or a whole number")),
    };
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(InvalidInput::field(
            field,
            "must be 1 to 128 printable characters",
        ));
    }
    Ok(id)
}

pub(crate) fn quantity(v: Option<&Value>, index: usize) -> Result<Quantity, InvalidInput> {
    let v = v.ok_or_else(|| InvalidInput::field("quantity", format!("line {index}: is required")))?;
    Quantity::from_json(v).map_err(|e| InvalidInput::field("quantity", format!("line {index}: {e}")))
}

/// Adds a line, merging it with an earlier line for the same SKU and location
/// (one transaction cannot touch the same item twice).
fn push_merged(lines: &mut Vec<OrderLine>, line: OrderLine) -> Result<(), InvalidInput> {
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

/// Parses a Shopify order webhook body.
pub fn parse_shopify(body: &[u8], shop_domain: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
    let v = parse_json(body)?;
    let order_id = order_id(v.get("id"), "id")?;
    let channel = v
        .get("source_name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("web")
        .to_owned();
    let order_location = match v.get("location_id") {
        None | Some(Value::Null) => None,
        Some(id @ (Value::Number(_) | Value::String(_))) => {
            let key = id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string());
            rules.shopify_location(&key)
        }
        Some(_) => return Err(InvalidInput::field("location_id", "must be a number")),
    };
    let location = rules.resolve(order_location, &channel);
    let items = v
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| InvalidInput::field("line_items", "is required and must be a list"))?;
    let mut lines = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(InvalidInput::field(
                "line_items",
                format!("line {index}: must be an object"),
            ));
        }
        let qty = quantity(item.get("quantity"), index)?;
        let sku = match item.get("sku") {
            Some(Value::String(s)) if !s.trim().is_empty() => Sku::parse(s)?,
            Some(Value::String(_)) | Some(Value::Null) | None => {
                skipped.push(SkippedLine {
                    index,
                    reason: "line has no sku, so it holds no stock".into(),
                });
                continue;
            }
            Some(_) => {
                return Err(InvalidInput::field(
                    "sku",
                    format!("line {index}: must be a string"),
                ))
            }
        };
        push_merged(
            &mut lines,
            OrderLine {
                sku,
                location: location.clone(),
                quantity: qty,
            },
        )?;
    }
    Ok(Order {
        source: shop_domain.to_ascii_lowercase(),
        order_id,
        channel,
        lines,
        skipped,
    })
}

/// Parses the generic format:
/// `{"channel", "order_id", "location"?, "lines": [{"sku", "quantity"}]}`.
pub fn parse_generic(body: &[u8], rules: &LocationRules) -> Result<Order, InvalidInput> {
    let v = parse_json(body)?;
    let channel = match v.get("channel") {
        Some(Value::String(s)) => Location::parse(s)
            .map_err(|_| InvalidInput::field("channel", "must be a slug of a-z, 0-9, '-' or '_'"))?
            .to_string(),
        _ => return Err(InvalidInput::field("channel", "is required")),
    };
    let order_id = order_id(v.get("order_id"), "order_id")?;
    let explicit = match v.get("location") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Location::parse(s)?),
        Some(_) => return Err(InvalidInput::field("location", "must be a string")),
    };
    let location = rules.resolve(explicit, &channel);
    let items = v
        .get("lines")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| InvalidInput::field("lines", "is required and must be a non-empty list"))?;
    let mut lines = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let sku = match item.get("sku") {
            Some(Value::String(s)) => Sku::parse(s)?,
            _ => return Err(InvalidInput::field("sku", format!("line {index}: is required"))),
        };
        let qty = quantity(item.get("quantity"), index)?;
        push_merged(
            &mut lines,
            OrderLine {
                sku,
                location: location.clone(),
                quantity: qty,
            },
        )?;
    }
    Ok(Order {
        source: channel.clone(),
        order_id,
        channel,
        lines,
        skipped: Vec::new(),
    })
}

/// Reads `key=value,key=value` maps from configuration.
pub(crate) fn parse_pairs(raw: &str) -> Result<HashMap<String, String>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("expected key=value, got {p:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> LocationRules {
        LocationRules::new(
            Location::parse("warehouse").unwrap(),
            "pos=shop-1,marketplace=warehouse",
            "111=shop-1,222=warehouse",
        )
        .unwrap()
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn shopify_order_maps_location_and_merges_lines() {
        let b = body(json!({
            "id": 820982911946154500u64, "source_name": "pos", "location_id": 111,
            "line_items": [
                {"sku": "JKT-BLUE-M", "quantity": 1},
                {"sku": null, "quantity": 1},
                {"sku": "JKT-BLUE-M", "quantity": 2},
                {"sku": "CAP", "quantity": 1}
            ]
        }));
        let o = parse_shopify(&b, "Example.myshopify.com", &rules()).unwrap();
        assert_eq!(o.source, "example.myshopify.com");
        assert_eq!(o.order_id, "820982911946154500");
        assert_eq!(o.channel, "pos");
        assert_eq!(o.lines.len(), 2);
        assert_eq!(o.lines[0].quantity.get(), 3);
        assert_eq!(o.lines[0].location.as_str(), "shop-1");
        assert_eq!(
            o.skipped,
            vec![SkippedLine {
                index: 1,
                reason: "line has no sku, so it holds no stock".into()
            }]
        );
        assert_eq!(o.receipt_key(), "example.myshopify.com#820982911946154500");
    }

    #[test]
    fn shopify_location_falls_back_to_channel_then_default() {
        let unmapped = body(json!({"id": 1, "source_name": "pos", "location_id": 999,
            "line_items": [{"sku": "A", "quantity": 1}]}));
        assert_eq!(
            parse_shopify(&unmapped, "s", &rules()).unwrap().lines[0]
                .location
                .as_str(),
            "shop-1"
        );
        let web = body(json!({"id": 1, "source_name": "web", "location_id": null,
            "line_items": [{"sku": "A", "quantity": 1}]}));
        assert_eq!(
            parse_shopify(&web, "s", &rules()).unwrap().lines[0]
                .location
                .as_str(),
            "warehouse"
        );
    }

    #[test]
    fn shopify_rejects_bad_quantities_and_missing_fields() {
        for (b, field) in [
            (json!({"line_items": []}), "id"),
            (json!({"id": 1}), "line_items"),
            (
                json!({"id": 1, "line_items": [{"sku": "A", "quantity": 0}]}),
                "quantity",
            ),
            (
                json!({"id": 1, "line_items": [{"sku": "A", "quantity": -2}]}),
                "quantity",
            ),
            (json!({"id": 1, "line_items": [{"sku": "A"}]}), "quantity"),
            (json!({"id": 1, "line_items": [{"sku": 5, "quantity": 1}]}), "sku"),
        ] {
            let err = parse_shopify(&body(b.clone()), "s", &rules())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{b}: {err}");
        }
        assert!(parse_shopify(b"{not json", "s", &rules())
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        assert!(parse_shopify(b"[]", "s", &rules()).is_err());
    }

    #[test]
    fn generic_order_uses_explicit_then_channel_location() {
        let b = body(json!({"channel": "pos", "order_id": "T-1", "location": "shop-2",
            "lines": [{"sku": "A", "quantity": 2}]}));
        let o = parse_generic(&b, &rules()).unwrap();
        assert_eq!(
            (o.source.as_str(), o.lines[0].location.as_str()),
            ("pos", "shop-2")
        );
        let b = body(json!({"channel": "pos", "order_id": "T-1", "lines": [{"sku": "A", "quantity": 2}]}));
        assert_eq!(
            parse_generic(&b, &rules()).unwrap().lines[0].location.as_str(),
            "shop-1"
        );
        let b = body(json!({"channel": "kiosk", "order_id": 7, "lines": [{"sku": "A", "quantity": 2}]}));
        assert_eq!(
            parse_generic(&b, &rules()).unwrap().lines[0].location.as_str(),
            "warehouse"
        );
    }

    #[test]
    fn generic_order_rejects_empty_or_bad_lines() {
        for b in [
            json!({"channel": "pos", "order_id": "1", "lines": []}),
            json!({"channel": "pos", "order_id": "1", "lines": [{"quantity": 1}]}),
            json!({"channel": "pos", "order_id": "1", "lines": [{"sku": "A", "quantity": -1}]}),
            json!({"order_id": "1", "lines": [{"sku": "A", "quantity": 1}]}),
            json!({"channel": "pos", "lines": [{"sku": "A", "quantity": 1}]}),
            json!({"channel": "pos", "order_id": "1", "location": "Bad Place", "lines": [{"sku": "A", "quantity": 1}]}),
        ] {
            assert!(parse_generic(&body(b.clone()), &rules()).is_err(), "{b}");
        }
    }

    #[test]
    fn pairs_parse_and_reject_garbage() {
        let m = parse_pairs(" a=1, b = 2 ,").unwrap();
        assert_eq!(m.get("b").map(String::as_str), Some("2"));
        assert!(parse_pairs("a").is_err());
        assert!(parse_pairs("").unwrap().is_empty());
    }
}
