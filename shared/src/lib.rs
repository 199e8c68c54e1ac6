//! Stockroom's library: one stock count everyone obeys.
//!
//! - [`domain`]: the checked types (SKU, location, quantity, reasons, actors).
//! - [`level`]: a stock level and its ledger entries.
//! - [`sale`]: an order, what each line expects to find and what it took.
//! - [`returns`]: a processed return and what it puts back.
//! - [`adjustment`]: manual, audited adjustments.
//! - [`feed`]: supplier feed keys, rows and the streaming CSV / JSON Lines reader.
//! - [`channels`]: channel configuration, figures and the channel message.
//! - [`consumer`]: the reference channel consumer (keeps the highest sequence).
//! - [`order`]: sale webhooks (Shopify and generic) parsed into a [`sale::Order`].
//! - [`signature`]: webhook HMAC checks.
//! - [`keys`]: every key of the stock table.
//! - [`store`]: the DynamoDB stock store.
//! - [`alerts`]: oversell alerts and metrics.
//! - [`config`]: settings from the environment.
//! - [`wire`]: wire formats parsed at the functions' edges (the table's stream, adjustment requests).

pub mod adjustment;
pub mod alerts;
pub mod api;
pub mod channels;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod feed;
pub mod keys;
pub mod level;
pub mod order;
pub mod returns;
pub mod sale;
pub mod signature;
pub mod store;
pub mod wire;

/// The CloudWatch metric namespace for every function.
pub const METRIC_NAMESPACE: &str = "Stockroom";

// The SDK crates, re-exported so every function builds against one version.
pub use aws_config;
pub use aws_lambda_events;
pub use aws_sdk_dynamodb;
pub use aws_sdk_sqs;

/// A stable fingerprint of some text: hex SHA-256.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
