//! The local stack: everything `make dev`, `make demo` and the tests need to
//! run Stockroom on a laptop against moto's server.

pub mod bootstrap;
pub mod checks;
pub mod demo;
pub mod envfile;
pub mod faults;
pub mod http;
pub mod shopify;
pub mod streams;
pub mod template;
pub mod triggers;

pub use bootstrap::{bootstrap, Stack};
pub use template::Template;
