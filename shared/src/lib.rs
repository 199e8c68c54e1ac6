//! Stockroom's library: one stock count everyone obeys.
//!
//! - [`channels`]: channel configuration, figures and the channel message.
//! - [`consumer`]: the reference channel consumer (keeps the highest sequence).
//! - [`domain`]: the checked types (SKU, location, quantity, reasons, actors).
//! - [`feed`]: supplier feed keys and the streaming CSV / JSON Lines row reader.
//! - [`order`]: sale webhooks (Shopify and generic) parsed into an [`order::Order`].
//! - [`returns`]: return webhooks (Shopify refunds and the generic event) parsed into a [`returns::Return`].
//! - [`signature`]: webhook HMAC checks.
//! - [`store`]: the DynamoDB stock store, where every sale, return and adjustment is decided.
//! - [`alerts`]: oversell alerts and metrics.
//! - [`config`]: settings from the environment.

pub mod alerts;
pub mod api;
pub mod channels;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod feed;
pub mod order;
pub mod returns;
pub mod signature;
pub mod store;

/// The CloudWatch metric namespace for every function.
pub const METRIC_NAMESPACE: &str = "Stockroom";

// The SDK crates, re-exported so every function builds against one version.
pub use aws_config;
pub use aws_lambda_events;
pub use aws_sdk_dynamodb;
pub use aws_sdk_sqs;

/// Every binary that links the library allocates with mimalloc: a webhook is
/// thousands of small allocations (the SDK's request builders, JSON), where
/// glibc's allocator spent about 40 % of the handler's CPU (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
