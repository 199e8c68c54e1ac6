//! Stockroom's own signed formats, for senders that are not Shopify: a sale
//! (POS, marketplace) and a "return processed" event (returns desk,
//! warehouse system).

use serde::Deserialize;

use super::body::{self, merge_line, required, Id, Object};
use crate::config::LocationRules;
use crate::domain::{InvalidInput, Location, Quantity, Sku};
use crate::returns::{add_units, Disposition, Return, ReturnKind, DEFAULT_RETURN_SOURCE};
use crate::sale::Order;
use crate::signature::sender_slug;

/// Parses a generic sale body from the channel its signature proved.
pub fn parse_sale(body: &[u8], channel: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
    body::read::<GenericSale>(body)?.into_order(channel, rules)
}

/// Parses a generic "return processed" body from the source its signature proved.
pub fn parse_return(body: &[u8], source: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
    body::read::<GenericReturn>(body)?.into_return(source, rules)
}

/// The sender a body names must be the one that signed it: the event is
/// recorded under that name (its receipt, its ledger entries), never under
/// another's.
fn signed_by(named: String, field: &'static str, sender: &str) -> Result<String, InvalidInput> {
    let named = sender_slug(&named, field)?;
    if named != sender {
        return Err(InvalidInput::field(
            field,
            format!("{named:?} is not the sender that signed it"),
        ));
    }
    Ok(named)
}

/// `{"channel", "order_id", "location"?, "lines": [{"sku", "quantity"}]}`.
#[derive(Debug, Deserialize)]
pub struct GenericSale {
    /// A slug: it picks the secret, names the source and the default location.
    channel: Option<String>,
    /// With the channel, it keys the receipt.
    order_id: Option<Id>,
    location: Option<String>,
    lines: Option<Vec<Object<SaleLine>>>,
}

#[derive(Debug, Deserialize)]
struct SaleLine {
    sku: Option<String>,
    quantity: Option<i64>,
}

impl GenericSale {
    /// The order sold by `sender`: lines at `location`, else the channel's,
    /// else the default.
    pub fn into_order(self, sender: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
        let channel = signed_by(required(self.channel, "channel")?, "channel", sender)?;
        let order_id = required(self.order_id, "order_id")?.into_string();
        let explicit = self.location.as_deref().map(Location::parse).transpose()?;
        let location = rules.resolve(explicit, &channel);
        let items = non_empty(self.lines)?;
        let mut lines = Vec::with_capacity(items.len());
        for (index, Object(item)) in items.into_iter().enumerate() {
            let (sku, quantity) = stock(index, item.sku, item.quantity)?;
            merge_line(&mut lines, sku, &location, quantity)?;
        }
        Ok(Order {
            source: channel.clone(),
            order_id,
            channel,
            lines,
            skipped: Vec::new(),
        })
    }
}

/// `{"return_id", "source"?, "location"?, "lines": [{"sku", "quantity", "condition"}]}`.
#[derive(Debug, Deserialize)]
pub struct GenericReturn {
    /// With the source, it keys the receipt.
    return_id: Option<Id>,
    /// A slug (default [`DEFAULT_RETURN_SOURCE`]): it picks the secret.
    source: Option<String>,
    /// Where the units come back (default `DEFAULT_LOCATION`).
    location: Option<String>,
    lines: Option<Vec<Object<ReturnLine>>>,
}

#[derive(Debug, Deserialize)]
struct ReturnLine {
    sku: Option<String>,
    quantity: Option<i64>,
    condition: Option<Condition>,
}

body::closed_words! {
    /// The state a returned unit came back in: back on the shelf, or counted
    /// apart and never sold.
    Condition { "resellable" => Resellable, "damaged" => Damaged }
}

impl GenericReturn {
    /// The return processed: resellable units back into `available`, damaged
    /// ones counted apart.
    pub fn into_return(self, sender: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
        let return_id = required(self.return_id, "return_id")?.into_string();
        let source = signed_by(
            self.source.unwrap_or_else(|| DEFAULT_RETURN_SOURCE.to_owned()),
            "source",
            sender,
        )?;
        let location = match self.location {
            None => rules.default_location().clone(),
            Some(s) => Location::parse(&s)?,
        };
        let items = non_empty(self.lines)?;
        let mut lines = Vec::with_capacity(items.len());
        for (index, Object(item)) in items.into_iter().enumerate() {
            let (sku, units) = stock(index, item.sku, item.quantity)?;
            let disposition = match item.condition {
                Some(Condition::Resellable) => Disposition::Resellable,
                Some(Condition::Damaged) => Disposition::Damaged,
                None => {
                    return Err(InvalidInput::field(
                        "condition",
                        format!("line {index}: must be \"resellable\" or \"damaged\""),
                    ))
                }
            };
            add_units(&mut lines, sku, location.clone(), disposition, units)?;
        }
        Ok(Return {
            kind: ReturnKind::Processed,
            source,
            return_id,
            order_id: None,
            lines,
            skipped: Vec::new(),
        })
    }
}

/// A channel or source name: a slug, like a location.
fn non_empty<T>(lines: Option<Vec<T>>) -> Result<Vec<T>, InvalidInput> {
    lines
        .filter(|l| !l.is_empty())
        .ok_or_else(|| InvalidInput::field("lines", "is required and must be a non-empty list"))
}

/// What line `index` holds: both its SKU and its quantity are required.
fn stock(index: usize, sku: Option<String>, quantity: Option<i64>) -> Result<(Sku, Quantity), InvalidInput> {
    let sku = match sku {
        Some(s) => Sku::parse(&s)?,
        None => return Err(InvalidInput::field("sku", format!("line {index}: is required"))),
    };
    Ok((sku, body::quantity(quantity, index)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::body::fixtures::{body, rules};
    use serde_json::{json, Value};

    /// The sender a signature would have proved: the body's own, as a slug.
    fn sender(b: &[u8], field: &str, default: &str) -> String {
        let v: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
        v[field]
            .as_str()
            .and_then(|s| sender_slug(s, "x").ok())
            .unwrap_or_else(|| default.to_owned())
    }

    fn sale(b: &[u8]) -> Result<Order, InvalidInput> {
        parse_sale(b, &sender(b, "channel", "pos"), &rules())
    }

    fn ret(b: &[u8]) -> Result<Return, InvalidInput> {
        parse_return(b, &sender(b, "source", "returns"), &rules())
    }

    #[test]
    fn an_event_names_the_sender_that_signed_it() {
        let b = body(json!({"channel": "web", "order_id": "T-1", "lines": [{"sku": "A", "quantity": 2}]}));
        let err = parse_sale(&b, "pos", &rules()).unwrap_err().to_string();
        assert!(err.starts_with("channel: \"web\" is not the sender"), "{err}");
        let b =
            body(json!({"return_id": "R-1", "lines": [{"sku": "A", "quantity": 1, "condition": "damaged"}]}));
        assert!(parse_return(&b, "returns-desk", &rules()).is_err());
        assert_eq!(parse_return(&b, "returns", &rules()).unwrap().source, "returns");
    }

    #[test]
    fn generic_order_uses_explicit_then_channel_location() {
        let b = body(json!({"channel": "pos", "order_id": "T-1", "location": "shop-2",
            "lines": [{"sku": "A", "quantity": 2}]}));
        let o = sale(&b).unwrap();
        assert_eq!(
            (o.source.as_str(), o.lines[0].location.as_str()),
            ("pos", "shop-2")
        );
        let b = body(json!({"channel": "pos", "order_id": "T-1", "lines": [{"sku": "A", "quantity": 2}]}));
        assert_eq!(sale(&b).unwrap().lines[0].location.as_str(), "shop-1");
        let b = body(json!({"channel": "kiosk", "order_id": 7, "lines": [{"sku": "A", "quantity": 2}]}));
        assert_eq!(sale(&b).unwrap().lines[0].location.as_str(), "warehouse");
    }

    #[test]
    fn generic_order_merges_lines_and_bounds_the_sum() {
        let b = body(json!({"channel": "pos", "order_id": "T-2", "location": null,
            "lines": [{"sku": "A", "quantity": 2}, {"sku": " A ", "quantity": 3}]}));
        let o = sale(&b).unwrap();
        assert_eq!((o.lines.len(), o.lines[0].quantity.get()), (1, 5));
        let b = body(json!({"channel": "pos", "order_id": "T-3",
            "lines": [{"sku": "A", "quantity": 1_000_000}, {"sku": "A", "quantity": 1}]}));
        let err = sale(&b).unwrap_err().to_string();
        assert!(err.starts_with("quantity: sku A:"), "{err}");
    }

    #[test]
    fn generic_order_rejects_empty_or_bad_lines() {
        for (b, field) in [
            (json!({"channel": "pos", "order_id": "1", "lines": []}), "lines"),
            (
                json!({"channel": "pos", "order_id": "1", "lines": [{"quantity": 1}]}),
                "sku",
            ),
            (
                json!({"channel": "pos", "order_id": "1", "lines": [{"sku": "A", "quantity": -1}]}),
                "quantity",
            ),
            (
                json!({"order_id": "1", "lines": [{"sku": "A", "quantity": 1}]}),
                "channel",
            ),
            (
                json!({"channel": "pos", "lines": [{"sku": "A", "quantity": 1}]}),
                "order_id",
            ),
            (
                json!({"channel": "pos", "order_id": "1", "location": "Bad Place", "lines": [{"sku": "A", "quantity": 1}]}),
                "location",
            ),
            (
                json!({"channel": "Point Of Sale", "order_id": "1", "lines": [{"sku": "A", "quantity": 1}]}),
                "channel",
            ),
            (
                json!({"channel": 5, "order_id": "1", "lines": [{"sku": "A", "quantity": 1}]}),
                "channel",
            ),
            (
                json!({"channel": "pos", "order_id": "1", "lines": [{"sku": 5, "quantity": 1}]}),
                "sku",
            ),
            (
                json!({"channel": "pos", "order_id": "1", "lines": [{"sku": "A", "quantity": "1"}]}),
                "quantity",
            ),
            (
                json!({"channel": "pos", "order_id": "1", "location": 3, "lines": [{"sku": "A", "quantity": 1}]}),
                "location",
            ),
            (json!({"channel": "pos", "order_id": "1", "lines": "A"}), "lines"),
        ] {
            let err = sale(&body(b.clone())).unwrap_err().to_string();
            assert!(err.starts_with(field), "{b}: {err}");
        }
    }

    #[test]
    fn generic_return_counts_damaged_apart() {
        let b = body(json!({"return_id": "RMA-7", "location": "shop-1", "lines": [
            {"sku": "JKT", "quantity": 1, "condition": "resellable"},
            {"sku": "JKT", "quantity": 1, "condition": "damaged"},
        ]}));
        let r = ret(&b).unwrap();
        assert_eq!(r.reference(), "return:returns/RMA-7");
        assert_eq!(r.lines.len(), 1);
        let l = &r.lines[0];
        assert_eq!(
            (
                l.location.as_str(),
                l.units.resellable,
                l.units.damaged,
                l.units.total()
            ),
            ("shop-1", 1, 1, 2)
        );
        let b = body(json!({"return_id": 9, "source": "desk-2", "lines": [
            {"sku": "JKT", "quantity": 2, "condition": "resellable"}]}));
        let r = ret(&b).unwrap();
        assert_eq!(
            (r.receipt_key().as_str(), r.lines[0].location.as_str()),
            ("desk-2#9", "warehouse")
        );
    }

    #[test]
    fn generic_return_rejects_bad_input() {
        for (b, field) in [
            (
                json!({"lines": [{"sku": "A", "quantity": 1, "condition": "resellable"}]}),
                "return_id",
            ),
            (json!({"return_id": "1", "lines": []}), "lines"),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 1}]}),
                "condition",
            ),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 1, "condition": "used"}]}),
                "condition",
            ),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 0, "condition": "damaged"}]}),
                "quantity",
            ),
            (
                json!({"return_id": "1", "lines": [{"quantity": 1, "condition": "damaged"}]}),
                "sku",
            ),
            (
                json!({"return_id": "1", "location": "Back Room", "lines": [{"sku": "A", "quantity": 1, "condition": "damaged"}]}),
                "location",
            ),
            (
                json!({"return_id": "1", "source": "Desk One", "lines": [{"sku": "A", "quantity": 1, "condition": "damaged"}]}),
                "source",
            ),
            (
                json!({"return_id": "1", "source": 4, "lines": [{"sku": "A", "quantity": 1, "condition": "damaged"}]}),
                "source",
            ),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 1, "condition": 1}]}),
                "condition",
            ),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 1, "condition": {"damaged": null}}]}),
                "condition",
            ),
            (
                json!({"return_id": "1", "lines": [{"sku": "A", "quantity": 1.5, "condition": "damaged"}]}),
                "quantity",
            ),
            (
                json!({"return_id": "1", "lines": [
                {"sku": "A", "quantity": 1_000_000, "condition": "damaged"},
                {"sku": "A", "quantity": 1, "condition": "resellable"}]}),
                "quantity",
            ),
        ] {
            let err = ret(&body(b.clone())).unwrap_err().to_string();
            assert!(err.starts_with(field), "{b}: {err}");
        }
    }
}
