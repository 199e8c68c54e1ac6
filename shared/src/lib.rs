//! Stockroom's library: one stock count everyone obeys.
//!
//! - [`domain`]: the checked types (SKU, location, quantity, reasons, actors).
//! - [`level`]: a stock level and its ledger entries.
//! - [`sale`]: an order, what each line expects to find and what it took.
//! - [`returns`]: a processed return and what it puts back.
//! - [`adjustment`]: manual, audited adjustments.
//! - [`feed`]: supplier feeds: keys, rows, the streaming reader, chunks, the hold policy, the import.
//! - [`channels`]: channel configuration, figures and the channel message.
//! - [`connector`]: channel connectors: what a channel's own figure should be, and what an edit there means.
//! - [`consumer`]: the reference channel consumer (keeps the highest sequence).
//! - [`wire`]: what arrives from outside (webhooks, adjustment requests, the
//!   table's stream), typed and parsed once into domain types.
//! - [`shopify`]: Shopify's Admin GraphQL API (items, levels, compare-and-swap sets), paced by its cost bucket.
//! - [`signature`]: webhook HMAC checks.
//! - [`webhook`]: what every webhook function does alike (checks, answers).
//! - [`keys`]: every key of the stock table.
//! - [`port`]: the store port: the attempt a decision describes, and the decision's refinement.
//! - [`store`]: the DynamoDB adapter that runs attempts and reads the table.
//! - [`alerts`]: oversell alerts and metrics.
//! - [`config`]: settings from the environment.
//! - [`runtime`]: how every function runs on Lambda.

pub mod adjustment;
pub mod alerts;
pub mod api;
pub mod channels;
pub mod clock;
pub mod config;
pub mod connector;
pub mod consumer;
pub mod domain;
pub mod feed;
pub mod keys;
pub mod level;
pub mod port;
pub mod returns;
pub mod runtime;
pub mod sale;
pub mod shopify;
pub mod signature;
pub mod store;
pub mod webhook;
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
