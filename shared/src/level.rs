//! A stock level and its ledger: what every decision reads and records.

use serde::{Deserialize, Serialize};

use crate::domain::{Actor, Location, ReasonCode, Sku};

/// One stock level (a SKU at a location), as stored and as the stock API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LevelView {
    pub location: String,
    pub available: i64,
    /// Units returned damaged: counted here, never sellable.
    pub damaged: i64,
    /// One more after every change.
    pub version: i64,
    pub updated_at: String,
    pub last_reason: Option<String>,
    pub last_reference: Option<String>,
    /// When the last absolute count applied to this level was taken.
    #[serde(skip_serializing)]
    pub counted_at: Option<String>,
    /// Which feed object (or adjustment) that count came from.
    #[serde(skip_serializing)]
    pub count_source: Option<String>,
    /// The figure that count gave.
    #[serde(skip_serializing)]
    pub count_quantity: Option<i64>,
    /// Units each sale source (a Shopify shop's domain, a channel) has sold
    /// here, as recorded: a connector tells from it which of the sales its
    /// channel made are in the master's figure yet. Stored as `sold#<source>`.
    #[serde(skip)]
    pub sold: std::collections::BTreeMap<String, i64>,
}

/// The attribute of a level that counts a source's recorded sales.
pub fn sold_attribute(source: &str) -> String {
    format!("{SOLD_PREFIX}{source}")
}

/// What every `sold#<source>` attribute of a level starts with.
pub const SOLD_PREFIX: &str = "sold#";

/// One movement in a SKU's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub at: String,
    pub sku: String,
    pub location: String,
    /// Change to `available`.
    pub delta: i64,
    pub reason: String,
    pub reference: String,
    pub actor: String,
    /// Change to the damaged count (returns of damaged goods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LedgerEntry {
    /// A movement of `delta` units at a level, with no details yet.
    pub fn new(
        at: &str,
        sku: &Sku,
        location: &Location,
        delta: i64,
        reason: ReasonCode,
        reference: &str,
        actor: &Actor,
    ) -> Self {
        Self {
            at: at.to_owned(),
            sku: sku.to_string(),
            location: location.to_string(),
            delta,
            reason: reason.as_str().to_owned(),
            reference: reference.to_owned(),
            actor: actor.as_str().to_owned(),
            damaged: None,
            requested: None,
            short: None,
            before: None,
            after: None,
            document: None,
            note: None,
        }
    }

    /// The figure before and after (adjustments and counts).
    pub fn before_after(mut self, before: i64, after: i64) -> Self {
        self.before = Some(before);
        self.after = Some(after);
        self
    }

    pub fn note(mut self, note: Option<String>) -> Self {
        self.note = note.filter(|n| !n.is_empty());
        self
    }
}

/// A page of the ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerPage {
    pub sku: String,
    pub entries: Vec<LedgerEntry>,
    /// Pass as `?cursor=` for the next (older) page; absent on the last page.
    pub next: Option<String>,
}
