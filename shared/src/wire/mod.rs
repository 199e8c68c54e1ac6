//! Wire formats: what arrives from outside, typed and parsed once at the edge
//! into the domain's types.
//!
//! - [`shopify`]: Shopify's `orders/create` orders and `refunds/create` refunds.
//! - [`generic`]: Stockroom's own signed sale and "return processed" events.

mod body;
pub mod generic;
pub mod shopify;
