//! Wire formats: what arrives from outside, typed and parsed once at the edge
//! into the domain's types (or refused with what was wrong).
//!
//! - [`shopify`]: Shopify's `orders/create` orders and `refunds/create` refunds.
//! - [`generic`]: Stockroom's own signed sale and "return processed" events.
//! - [`adjustment`]: the stock API's adjustment request.
//! - [`stream`]: the stock table's stream records, as the fan-out reads them.

pub mod adjustment;
mod body;
pub mod channel_ops;
pub mod generic;
pub mod shopify;
pub mod stream;
