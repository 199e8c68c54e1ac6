//! Shopify's Admin GraphQL API, as far as a channel connector needs it:
//! find the inventory item that carries a SKU, read `available` at a
//! location, and set it with compare-and-swap.
//!
//! Every call is paced from the cost bucket Shopify reports in
//! `extensions.cost.throttleStatus` (a leaky bucket per app and shop), and
//! retried inside the caller's deadline when Shopify answers `THROTTLED`,
//! HTTP 429 (after its `Retry-After`) or a 5xx. A refused token (401, 403)
//! is never retried: the caller parks the work and alerts.

mod client;
mod pacer;

pub use client::{
    sku_query, AdminApi, CallStats, ChannelLevel, ItemMatch, SetOutcome, SetQuantity, ShopifyError, Tokens,
    UserError,
};
pub use pacer::{Pacer, ThrottleStatus};

/// Quantities one `inventorySetQuantities` call takes at most.
pub const MAX_QUANTITIES: usize = 250;
/// SKUs looked up, or levels read, in one query (aliases): a few points each,
/// well under the 1,000 a single query may cost.
pub const LOOKUPS_PER_QUERY: usize = 50;
