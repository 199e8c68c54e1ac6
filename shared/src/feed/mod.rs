//! Supplier feeds: the object key, a streaming reader that turns a CSV or
//! JSON Lines file into valid rows and rejected rows, one at a time, with
//! bounded memory whatever the file's size, and the import's rules.
//!
//! - [`message`]: what a feed queue message names (S3 notifications,
//!   S3's test event, an import's own continuation).
//! - [`settings`]: how imports behave (`FEED_*`).
//! - [`hold`]: when a stock file is held rather than applied, and its release.
//! - [`report`]: the report and the rejects written next to a feed.
//! - [`import`]: one object's import, from what the store remembers of it
//!   to its report.
//!
//! Key: `feeds/<supplier>/<kind>/<any name>.csv` (or `.jsonl`), kind
//! `deliveries` or `stock`. Columns (CSV header or JSON keys) are matched by
//! name, case-insensitive, in any order; unknown ones are ignored: `sku`,
//! `quantity`, optional `location`, and for stock files optional `as_of`.

use serde::{Deserialize, Serialize};

use crate::domain::{Actor, Location, Sku};

mod apply;
mod chunk;
pub mod hold;
pub mod import;
pub mod message;
mod reader;
pub mod release;
pub mod report;
mod s3;
pub mod settings;
pub use chunk::{needs_movements, plan_count, CountPlan, FeedChunk};
pub use import::{ImportError, Importer};
pub use message::{objects_in, ObjectRef};
pub use reader::{
    AsOfWindow, Columns, FeedItem, FeedReader, FeedRow, Position, ReadOptions, RejectedRow, MAX_ROW_BYTES,
};
pub use release::{Release, ReleaseRequest};
pub use settings::{FeedSettings, Supplier, Suppliers};

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The key is not `feeds/<supplier>/<kind>/<name>.<csv|jsonl>`.
    #[error("not a feed key: {0}")]
    Key(String),
    /// The file cannot be read as a feed at all (not a retryable problem).
    #[error("unreadable feed: {0}")]
    Unreadable(String),
    /// Reading the object failed (worth a retry).
    #[error("reading the feed failed: {0}")]
    Read(#[from] std::io::Error),
    /// The file has more rows than an import takes (`FEED_MAX_ROWS`).
    #[error("the file has more than {0} rows (FEED_MAX_ROWS)")]
    TooManyRows(u64),
}

/// What a feed file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// Goods received: each row adds.
    Deliveries,
    /// The supplier's own count: each row sets the figure, as of a time.
    Stock,
}

impl FeedKind {
    /// The kind as the key and the report name it.
    pub fn name(self) -> &'static str {
        match self {
            FeedKind::Deliveries => "deliveries",
            FeedKind::Stock => "stock",
        }
    }

    /// What each of the kind's rows does to its level.
    pub fn effect(self) -> FeedEffect {
        match self {
            FeedKind::Deliveries => FeedEffect::Add,
            FeedKind::Stock => FeedEffect::Count,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    Csv,
    JsonLines,
}

/// A feed object's key, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedKey {
    /// The supplier's folder: a plain slug.
    pub supplier: String,
    /// Its pool, where its stock files count: `pool:<supplier>`.
    pub pool: Location,
    pub kind: FeedKind,
    pub format: FeedFormat,
    /// The decoded key as a whole.
    pub key: String,
}

/// Decodes an object key as S3 event notifications carry it: `+` is a
/// space, `%XX` an escaped byte. A `%` not followed by two hex digits is an
/// error rather than kept as it is: S3 escapes every `%` it sends.
pub fn decode_s3_key(raw: &str) -> Result<String, FeedError> {
    crate::api::percent_decode(&raw.replace('+', " "))
        .ok_or_else(|| FeedError::Key(format!("{raw:?} has a bad escape or is not UTF-8 once decoded")))
}

impl FeedKey {
    /// Parses a decoded key.
    pub fn parse(key: &str) -> Result<Self, FeedError> {
        let bad = |why: &str| FeedError::Key(format!("{key:?}: {why}"));
        let mut parts = key.splitn(4, '/');
        let (Some("feeds"), Some(supplier), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected feeds/<supplier>/<kind>/<name>"));
        };
        let pool = Location::pool(supplier)
            .map_err(|_| bad("the supplier must be a slug of a-z, 0-9, '-' or '_'"))?;
        let kind = match kind {
            "deliveries" => FeedKind::Deliveries,
            "stock" => FeedKind::Stock,
            _ => return Err(bad("the kind must be deliveries or stock")),
        };
        let lower = name.to_ascii_lowercase();
        let format = if lower.ends_with(".csv") {
            FeedFormat::Csv
        } else if lower.ends_with(".jsonl") {
            FeedFormat::JsonLines
        } else {
            return Err(bad("the name must end in .csv or .jsonl"));
        };
        Ok(Self {
            supplier: supplier.to_owned(),
            pool,
            kind,
            format,
            key: key.to_owned(),
        })
    }
}

/// Valid rows per transaction: a level action and a ledger entry each, plus the receipt.
pub const ROWS_PER_FEED_CHUNK: usize = 49;

/// The object feed rows come from. Its identity (bucket, key, version or
/// ETag) keys every row's effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    pub bucket: String,
    pub key: String,
    /// The object's version id, or its ETag when the bucket is not versioned.
    pub version: String,
    /// The supplier named in the key: the ledger's actor is `supplier:<name>`.
    pub supplier: String,
    /// What every ledger entry of its rows adds (the ops release it was imported under).
    pub note: Option<String>,
}

/// What a key or version keeps as is in an `s3://` reference: unreserved characters and `/`.
const URI_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn uri_escape(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, URI_KEEP).to_string()
}

impl FeedSource {
    /// The identity used in receipts and on counted levels.
    pub fn id(&self) -> String {
        format!(
            "s3://{}/{}?version={}",
            self.bucket,
            uri_escape(&self.key),
            uri_escape(&self.version)
        )
    }

    /// The reference of one row, as the ledger shows it.
    pub fn reference(&self, line: u64) -> String {
        format!("{}#line={line}", self.id())
    }

    pub fn actor(&self) -> Actor {
        Actor::system(&format!("supplier:{}", self.supplier))
    }
}

/// What a feed row does to its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEffect {
    /// A delivery: add the quantity.
    Add,
    /// A stock count: set the figure as of the row's time.
    Count,
}

/// One valid row, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRowInput {
    pub line: u64,
    pub sku: Sku,
    pub location: Location,
    pub quantity: u32,
    /// When the count was taken (counts only), in [`clock`] format.
    pub as_of: String,
}

impl From<FeedRow> for FeedRowInput {
    fn from(r: FeedRow) -> Self {
        Self {
            line: r.line,
            sku: r.sku,
            location: r.location,
            quantity: r.quantity,
            as_of: r.as_of,
        }
    }
}

/// What became of one chunk's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSummary {
    pub applied: u64,
    pub stale: u64,
    pub duplicates: u64,
    /// (line, reason) of rows the store refused (contradictory counts).
    pub rejected: Vec<(u64, String)>,
}

/// Where a checkpointed import carries on, and what it had counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Where the next chunk's rows start: the next invocation reads the
    /// object from there (a ranged GET), not from its first byte.
    pub at: Position,
    /// Rows the reader refused before `at`.
    pub parse_rejects: u64,
    /// The byte ranges whose rejects earlier invocations left as parts
    /// ([`report::rejects_part_key`]), in file order.
    #[serde(default)]
    pub reject_parts: Vec<(u64, u64)>,
    /// Bytes the applying passes read so far.
    pub bytes_read: u64,
    /// The import's clock (when it began), in [`clock`](crate::clock) format:
    /// `as_of` bounds are taken from it in every invocation.
    pub clock: String,
}

/// Where an object's import stands. `as_of` is the object's last-modified
/// time when it was first seen: a stock file's rows without their own
/// `as_of` are counts as of then, however late the file is released or resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FeedState {
    /// Chunks before `next_chunk` are applied; an import resumes there.
    InProgress {
        next_chunk: u64,
        invocations: u32,
        started_at: String,
        #[serde(default)]
        as_of: Option<String>,
        /// The ops release it was imported under, if it was held.
        #[serde(default)]
        release: Option<Release>,
        /// Where to read on. A checkpoint written before imports resumed
        /// by offset has none: that import re-reads from the start,
        /// skipping the chunks before `next_chunk`.
        #[serde(default)]
        resume: Option<Resume>,
    },
    /// Not applied: the safety checks refused it until ops release it.
    Held {
        reason: String,
        #[serde(default)]
        as_of: Option<String>,
    },
    /// Released by ops: imported without the safety checks.
    Released {
        release: Release,
        #[serde(default)]
        as_of: Option<String>,
    },
    /// Every row was applied, rejected or skipped; the report is written.
    Done { report: String },
    /// Not a feed that can be read (its key, its header, its bytes): reported, never retried.
    Unreadable { reason: String },
    /// Not imported at all (a supplier not configured, a file over the
    /// caps): nothing applied; reported, never retried.
    Refused { reason: String },
    /// Stopped part-way (too many invocations, its supplier no longer
    /// configured): what was applied stays; reported, never retried.
    Stopped { reason: String, report: String },
}

impl FeedState {
    /// Its name, as the table keeps it beside the state (`status`).
    pub fn name(&self) -> &'static str {
        match self {
            FeedState::InProgress { .. } => "in_progress",
            FeedState::Held { .. } => "held",
            FeedState::Released { .. } => "released",
            FeedState::Done { .. } => "done",
            FeedState::Unreadable { .. } => "unreadable",
            FeedState::Refused { .. } => "refused",
            FeedState::Stopped { .. } => "stopped",
        }
    }
}

/// A location's SKUs and their total available units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocationStats {
    pub skus: u64,
    pub available: i64,
}
