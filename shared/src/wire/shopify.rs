//! Shopify's webhooks: `orders/create` (and `orders/paid`) orders and
//! `refunds/create` refunds. Both carry ids as strings or integers, lines
//! with a SKU (or none: a gift card holds no stock) and a quantity, and a
//! `location_id` mapped through `SHOPIFY_LOCATIONS`; one reader serves both.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::body::{self, merge_line, required, Id, IfObject, Object, OrIgnored};
use crate::config::LocationRules;
use crate::connector::EditCheck;
use crate::domain::{InvalidInput, Location, Quantity, Sku};
use crate::returns::{add_units, Disposition, Return, ReturnKind};
use crate::sale::{Order, SkippedLine};

/// Parses an `orders/create` (or `orders/paid`) body from `shop`.
pub fn parse_order(body: &[u8], shop: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
    body::read::<ShopifyOrder>(body)?.into_order(shop, rules)
}

/// Parses a `refunds/create` body from `shop`.
pub fn parse_refund(body: &[u8], shop: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
    body::read::<ShopifyRefund>(body)?.into_return(shop, rules)
}

/// Parses an `inventory_levels/update` body from `shop`: which level
/// changed and when (its figure is only a hint: the level is read again).
pub fn parse_inventory_level(body: &[u8], shop: &str) -> Result<EditCheck, InvalidInput> {
    let l = body::read::<InventoryLevelUpdate>(body)?;
    let positive = |v: Option<u64>, field: &'static str| match v {
        Some(id) if id > 0 => Ok(id),
        _ => Err(InvalidInput::field(
            field,
            "is required and must be a positive integer",
        )),
    };
    let inventory_item_id = positive(l.inventory_item_id, "inventory_item_id")?;
    let location_id = positive(l.location_id, "location_id")?;
    let updated_at = required(l.updated_at, "updated_at")?;
    if updated_at.is_empty() || updated_at.len() > 64 || updated_at.chars().any(char::is_control) {
        return Err(InvalidInput::field("updated_at", "must be a timestamp"));
    }
    let level = l.admin_graphql_api_id.unwrap_or_else(|| {
        format!("gid://shopify/InventoryLevel/{location_id}?inventory_item_id={inventory_item_id}")
    });
    if level.len() > 256 || level.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidInput::field(
            "admin_graphql_api_id",
            "must be a GraphQL id",
        ));
    }
    Ok(EditCheck {
        shop: shop.to_ascii_lowercase(),
        inventory_item_id,
        location_id,
        available: l.available,
        updated_at,
        level,
    })
}

/// `inventory_levels/update`: ids are integers, `available` may be null.
#[derive(Debug, Deserialize)]
struct InventoryLevelUpdate {
    inventory_item_id: Option<u64>,
    location_id: Option<u64>,
    available: Option<i64>,
    updated_at: Option<String>,
    admin_graphql_api_id: Option<String>,
}

/// An order, as far as stock is concerned.
#[derive(Debug, Deserialize)]
pub struct ShopifyOrder {
    /// With the shop, it keys the receipt.
    id: Option<Id>,
    /// The channel (`web`, `pos`, ...); `web` when absent or not a string.
    source_name: Option<OrIgnored<String>>,
    /// Where a POS order took its stock.
    location_id: Option<LocationId>,
    line_items: Option<Vec<Object<LineItem>>>,
}

#[derive(Debug, Deserialize)]
struct LineItem {
    sku: Option<String>,
    quantity: Option<i64>,
}

impl ShopifyOrder {
    /// The order the shop sold: lines at the order's location, else the
    /// channel's, else the default; lines without a SKU skipped.
    pub fn into_order(self, shop: &str, rules: &LocationRules) -> Result<Order, InvalidInput> {
        let order_id = required(self.id, "id")?.into_string();
        let channel = self
            .source_name
            .and_then(OrIgnored::value)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "web".to_owned());
        let location = rules.resolve(self.location_id.and_then(|id| id.mapped(rules)), &channel);
        let items = self
            .line_items
            .ok_or_else(|| InvalidInput::field("line_items", "is required and must be a list"))?;
        let mut lines = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        for (index, Object(item)) in items.into_iter().enumerate() {
            if let Some((sku, quantity)) = stock(index, item.sku, item.quantity, &mut skipped)? {
                merge_line(&mut lines, sku, &location, quantity)?;
            }
        }
        Ok(Order {
            source: shop.to_ascii_lowercase(),
            order_id,
            channel,
            lines,
            skipped,
        })
    }
}

/// A refund, as far as stock is concerned.
#[derive(Debug, Deserialize)]
pub struct ShopifyRefund {
    /// The refund's id: with the shop, it keys the receipt.
    id: Option<Id>,
    /// The order refunded, which bounds what a cancel may restock.
    order_id: Option<Id>,
    /// Refunds from before `restock_type` existed say `true` for the lot.
    restock: Option<OrIgnored<bool>>,
    refund_line_items: Option<Vec<Object<RefundLineItem>>>,
}

#[derive(Debug, Deserialize)]
struct RefundLineItem {
    quantity: Option<i64>,
    restock_type: Option<RestockType>,
    location_id: Option<LocationId>,
    /// The order's line refunded: it names the SKU.
    #[serde(default)]
    line_item: IfObject<RefundedItem>,
}

#[derive(Debug, Deserialize)]
struct RefundedItem {
    sku: Option<String>,
}

body::closed_words! {
    /// What Shopify did with a refunded line's units.
    RestockType {
        "return" => Return,
        "cancel" => Cancel,
        "legacy_restock" => LegacyRestock,
        "no_restock" => NoRestock,
    }
}

/// What happens to a refunded line's units: its `restock_type`, else the
/// refund's legacy `restock` flag.
fn restock_type(restock_type: Option<RestockType>, legacy_restock: bool) -> Disposition {
    match restock_type {
        Some(RestockType::Return | RestockType::LegacyRestock) => Disposition::Resellable,
        Some(RestockType::Cancel) => Disposition::Cancelled,
        Some(RestockType::NoRestock) => Disposition::NotRestocked,
        None if legacy_restock => Disposition::Resellable,
        None => Disposition::NotRestocked,
    }
}

impl ShopifyRefund {
    /// The return the refund makes: each line's units at its location (else
    /// the default), sorted by what happens to them; lines without a SKU skipped.
    pub fn into_return(self, shop: &str, rules: &LocationRules) -> Result<Return, InvalidInput> {
        let return_id = required(self.id, "id")?.into_string();
        let legacy_restock = self.restock.and_then(OrIgnored::value).unwrap_or(false);
        let items = self
            .refund_line_items
            .ok_or_else(|| InvalidInput::field("refund_line_items", "is required and must be a list"))?;
        let mut lines = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        for (index, Object(item)) in items.into_iter().enumerate() {
            let sku = item.line_item.0.and_then(|l| l.sku);
            if let Some((sku, units)) = stock(index, sku, item.quantity, &mut skipped)? {
                let location = item
                    .location_id
                    .and_then(|id| id.mapped(rules))
                    .unwrap_or_else(|| rules.default_location().clone());
                let disposition = restock_type(item.restock_type, legacy_restock);
                add_units(&mut lines, sku, location, disposition, units)?;
            }
        }
        Ok(Return {
            kind: ReturnKind::ShopifyRefund,
            source: shop.to_ascii_lowercase(),
            return_id,
            order_id: self.order_id.map(Id::into_string),
            lines,
            skipped,
        })
    }
}

/// What line `index` holds: its SKU and quantity, or nothing (and it is
/// listed as skipped) when it has no SKU: a gift card, a custom item.
fn stock(
    index: usize,
    sku: Option<String>,
    quantity: Option<i64>,
    skipped: &mut Vec<SkippedLine>,
) -> Result<Option<(Sku, Quantity)>, InvalidInput> {
    let quantity = body::quantity(quantity, index)?;
    match sku.filter(|s| !s.trim().is_empty()) {
        Some(sku) => Ok(Some((Sku::parse(&sku)?, quantity))),
        None => {
            skipped.push(SkippedLine {
                index,
                reason: "line has no sku, so it holds no stock".into(),
            });
            Ok(None)
        }
    }
}

/// A `location_id`, a number or a string: the key of `SHOPIFY_LOCATIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocationId(String);

impl LocationId {
    /// The configured location, if any (an unmapped id is logged).
    fn mapped(&self, rules: &LocationRules) -> Option<Location> {
        rules.shopify_location(&self.0)
    }
}

impl<'de> Deserialize<'de> for LocationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LocationIdVisitor;

        impl Visitor<'_> for LocationIdVisitor {
            type Value = LocationId;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<LocationId, E> {
                Ok(LocationId(n.to_string()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<LocationId, E> {
                Ok(LocationId(n.to_string()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<LocationId, E> {
                // Written as JSON writes it (`1.5`, `111.0`): never a configured key.
                Ok(LocationId(
                    serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string()),
                ))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<LocationId, E> {
                Ok(LocationId(s.to_owned()))
            }
        }

        d.deserialize_any(LocationIdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::body::fixtures::{body, rules};
    use serde_json::{json, Value};

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
        let o = parse_order(&b, "Example.myshopify.com", &rules()).unwrap();
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
            parse_order(&unmapped, "s", &rules()).unwrap().lines[0]
                .location
                .as_str(),
            "shop-1"
        );
        let web = body(json!({"id": 1, "source_name": "web", "location_id": null,
            "line_items": [{"sku": "A", "quantity": 1}]}));
        assert_eq!(
            parse_order(&web, "s", &rules()).unwrap().lines[0]
                .location
                .as_str(),
            "warehouse"
        );
    }

    #[test]
    fn shopify_order_reads_what_senders_write() {
        // Ids and location ids as strings, a channel that is not a string, blank SKUs.
        let b = body(json!({"id": "1001", "source_name": 7, "location_id": "222",
            "line_items": [{"sku": "  ", "quantity": 1}, {"quantity": 2}, {"sku": "A", "quantity": 2}]}));
        let o = parse_order(&b, "s", &rules()).unwrap();
        assert_eq!((o.order_id.as_str(), o.channel.as_str()), ("1001", "web"));
        assert_eq!(o.lines[0].location.as_str(), "warehouse");
        assert_eq!(o.skipped.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
        let empty = body(json!({"id": 2, "line_items": []}));
        assert!(parse_order(&empty, "s", &rules()).unwrap().lines.is_empty());
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
            (json!({"id": 1.5, "line_items": []}), "id"),
            (json!({"id": 1, "line_items": {}}), "line_items"),
            (json!({"id": 1, "line_items": [7]}), "line_items"),
            (
                json!({"id": 1, "location_id": true, "line_items": []}),
                "location_id",
            ),
            (
                json!({"id": 1, "line_items": [{"sku": "A", "quantity": 1.5}]}),
                "quantity",
            ),
        ] {
            let err = parse_order(&body(b.clone()), "s", &rules())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{b}: {err}");
        }
        assert!(parse_order(b"{not json", "s", &rules())
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        assert!(parse_order(b"[]", "s", &rules()).is_err());
    }

    fn refund_line(sku: Value, qty: Value, restock: &str, location_id: Value) -> Value {
        json!({"quantity": qty, "restock_type": restock, "location_id": location_id,
               "line_item": {"id": 1, "sku": sku, "quantity": 3}})
    }

    #[test]
    fn shopify_refund_sorts_units_by_restock_type_and_location() {
        let b = body(
            json!({"id": 509562969, "order_id": 450789469, "refund_line_items": [
                refund_line(json!("JKT"), json!(1), "return", json!(111)),
                refund_line(json!("JKT"), json!(2), "cancel", json!(111)),
                refund_line(json!("JKT"), json!(1), "no_restock", json!(null)),
                refund_line(json!("CAP"), json!(1), "legacy_restock", json!(999)),
                refund_line(json!(null), json!(1), "return", json!(111)),
            ]}),
        );
        let r = parse_refund(&b, "Shop.myshopify.com", &rules()).unwrap();
        assert_eq!(r.receipt_key(), "shop.myshopify.com#509562969");
        assert_eq!(r.reference(), "refund:shop.myshopify.com/509562969");
        assert_eq!(
            r.order_receipt_key().as_deref(),
            Some("shop.myshopify.com#450789469")
        );
        let summary: Vec<_> = r
            .lines
            .iter()
            .map(|l| {
                (
                    l.sku.as_str(),
                    l.location.as_str(),
                    l.units.resellable,
                    l.units.cancelled,
                    l.units.not_restocked,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("JKT", "shop-1", 1, 2, 0),
                ("JKT", "warehouse", 0, 0, 1),
                ("CAP", "warehouse", 1, 0, 0),
            ]
        );
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].index, 4);
    }

    #[test]
    fn shopify_refund_without_restock_type_follows_the_legacy_flag() {
        let line = json!({"quantity": 1, "line_item": {"sku": "A"}});
        let with = body(json!({"id": 1, "restock": true, "refund_line_items": [line.clone()]}));
        assert_eq!(
            parse_refund(&with, "s", &rules()).unwrap().lines[0]
                .units
                .resellable,
            1
        );
        let without = body(json!({"id": 1, "refund_line_items": [line.clone()]}));
        assert_eq!(
            parse_refund(&without, "s", &rules()).unwrap().lines[0]
                .units
                .not_restocked,
            1
        );
        // Anything but `true` is no restock, as it always was.
        let odd = body(json!({"id": 1, "restock": "yes", "refund_line_items": [line]}));
        assert_eq!(
            parse_refund(&odd, "s", &rules()).unwrap().lines[0]
                .units
                .not_restocked,
            1
        );
    }

    #[test]
    fn shopify_refund_lines_without_a_readable_line_item_are_skipped() {
        let b = body(json!({"id": "R-1", "order_id": null, "refund_line_items": [
            {"quantity": 1, "restock_type": "return"},
            {"quantity": 1, "restock_type": "return", "line_item": 5},
            {"quantity": 1, "restock_type": null, "line_item": {"sku": ""}},
        ]}));
        let r = parse_refund(&b, "s", &rules()).unwrap();
        assert_eq!((r.return_id.as_str(), r.order_id.as_deref()), ("R-1", None));
        assert!(r.lines.is_empty());
        assert_eq!(r.skipped.len(), 3);
    }

    #[test]
    fn shopify_refund_rejects_malformed_lines() {
        for (b, field) in [
            (json!({"refund_line_items": []}), "id"),
            (json!({"id": 1}), "refund_line_items"),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!(0), "return", json!(null))]}),
                "quantity",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!(-1), "return", json!(null))]}),
                "quantity",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!("2"), "return", json!(null))]}),
                "quantity",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!(1), "restock", json!(null))]}),
                "restock_type",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!(5), json!(1), "return", json!(null))]}),
                "sku",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!(1), "return", json!(null)), {"quantity": 1, "restock_type": 5}]}),
                "restock_type",
            ),
            (
                json!({"id": 1, "refund_line_items": [{"quantity": 1, "restock_type": {"cancel": null}, "line_item": {"sku": "A"}}]}),
                "restock_type",
            ),
            (json!({"id": 1, "refund_line_items": [7]}), "refund_line_items"),
            (
                json!({"id": 1, "order_id": -4, "refund_line_items": []}),
                "order_id",
            ),
            (
                json!({"id": 1, "refund_line_items": [refund_line(json!("A"), json!(1), "return", json!([111]))]}),
                "location_id",
            ),
        ] {
            let err = parse_refund(&body(b.clone()), "s", &rules())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{b}: {err}");
        }
    }

    #[test]
    fn an_inventory_level_update_is_read_and_bad_ones_are_refused() {
        let body = br#"{"inventory_item_id": 7, "location_id": 1001, "available": 4,
            "updated_at": "2026-11-27T10:00:00-05:00",
            "admin_graphql_api_id": "gid://shopify/InventoryLevel/1001?inventory_item_id=7"}"#;
        let c = parse_inventory_level(body, "Demo.myshopify.com").unwrap();
        assert_eq!(
            (c.shop.as_str(), c.inventory_item_id, c.location_id, c.available),
            ("demo.myshopify.com", 7, 1001, Some(4))
        );
        assert_eq!(c.item_gid(), "gid://shopify/InventoryItem/7");
        for (bad, field) in [
            (
                &br#"{"location_id": 1, "updated_at": "x"}"#[..],
                "inventory_item_id",
            ),
            (
                br#"{"inventory_item_id": 7, "location_id": 0, "updated_at": "x"}"#,
                "location_id",
            ),
            (br#"{"inventory_item_id": 7, "location_id": 1}"#, "updated_at"),
            (
                br#"{"inventory_item_id": "seven", "location_id": 1, "updated_at": "x"}"#,
                "inventory_item_id",
            ),
        ] {
            let e = parse_inventory_level(bad, "demo.myshopify.com")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
