//! The store port: what a decision asks of the stock table.
//!
//! A decision (a sale's part, a return, an adjustment, a feed chunk) describes
//! an [`Attempt`]: the receipt that makes it exactly-once, the conditions it
//! expects of each level, the effects, and the ledger entries. The one adapter
//! (`store::StockStore`) runs an attempt as one DynamoDB transaction. When a
//! condition fails it hands the current images back ([`Failed`]) and the
//! decision refines its next attempt ([`Decision::refine`]); when the receipt
//! is already there it hands back the stored one ([`StoredReceipt`]), so a
//! duplicate gets the original answer without another read.

use std::collections::HashMap;
use std::future::Future;

use serde::de::DeserializeOwned;

use crate::domain::{Location, ReasonCode, Sku};
use crate::keys::Key;
use crate::level::{LedgerEntry, LevelView};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB request failed: {0}")]
    Dynamo(String),
    #[error("gave up after {0} attempts: the items kept changing under contention")]
    Contention(u32),
    #[error("a stored item is not readable: {0}")]
    Corrupt(String),
}

/// One transaction: all of it or none of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the change is made: stamped on levels, ledger entries and the receipt.
    pub at: String,
    /// Written only if absent: a repeat fails here and gets the stored receipt back.
    pub receipt: Receipt,
    pub writes: Vec<Write>,
}

impl Attempt {
    /// An attempt made at `at`, receipted under `receipt` with the answer in `fields`.
    pub fn receipted(
        at: &str,
        receipt: Key,
        fields: Vec<(&'static str, String)>,
        writes: Vec<Write>,
    ) -> Self {
        Self {
            at: at.to_owned(),
            receipt: Receipt { key: receipt, fields },
            writes,
        }
    }
}

/// A receipt's field holding JSON (lines, a summary, an answer).
pub fn json_field<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The fields of a receipt that keeps the lines a change took: its status,
/// the lines, and the fingerprint of what was asked (a repeat with other
/// lines is told apart).
pub fn lines_fields<T: serde::Serialize>(
    status: &str,
    lines: &T,
    fingerprint: &str,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    Ok(vec![
        ("status", status.to_owned()),
        ("lines", json_field(lines)?),
        ("fingerprint", fingerprint.to_owned()),
    ])
}

/// The record that makes a change exactly-once, and the answer it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub key: Key,
    pub fields: Vec<(&'static str, String)>,
}

/// A receipt as it was stored by the first delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    pub key: Key,
    pub fields: HashMap<String, String>,
}

impl StoredReceipt {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field holding JSON (the lines or answer the first delivery recorded).
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        self.get(name)
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("receipt {} has no readable {name}", self.key.pk)))
    }

    /// The stored lines of a repeated delivery. A repeat that carries other
    /// lines than the first is logged: the first delivery stands.
    pub fn replayed_lines<T: DeserializeOwned>(
        &self,
        fingerprint: &str,
        what: &str,
    ) -> Result<T, StoreError> {
        if self.get("fingerprint") != Some(fingerprint) {
            tracing::warn!(receipt = %self.key.pk, "a repeated {what} carries different lines; the first delivery stands");
        }
        self.json("lines")
    }
}

/// One write of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Change a level if its condition holds.
    Level(LevelWrite),
    /// Only check a level's condition (a sale line that takes nothing).
    Check {
        sku: Sku,
        location: Location,
        condition: LevelCondition,
    },
    /// A new ledger entry; `seq` tells apart the entries of one change.
    Ledger { entry: LedgerEntry, seq: String },
    /// Move an order's count of units cancels put back for a SKU from `seen`
    /// (`None`: no count yet) to `to`, only if nobody moved it first.
    CancelCounter {
        order: String,
        sku: Sku,
        seen: Option<i64>,
        to: i64,
    },
}

/// A change to one level, stamped with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelWrite {
    pub sku: Sku,
    pub location: Location,
    pub condition: LevelCondition,
    pub effect: LevelEffect,
    pub reason: ReasonCode,
    pub reference: String,
    /// A sale's source and the units its line asked for, counted on the
    /// level whatever the line could take (see [`LevelView::sold`]).
    pub sold: Option<(String, i64)>,
}

/// What an attempt expects of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelCondition {
    /// Nothing beyond the effect's own (a take needs its units there; an
    /// addition can never take a level below zero).
    Any,
    /// Exactly this many available.
    Exactly(i64),
    /// No level at all.
    Missing,
    /// The level is at this version: nothing changed it since it was read.
    Version(i64),
}

/// What a write does to a level's figures (its version always goes up by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelEffect {
    /// `available -= n`, only if at least `n` are there: no write ever
    /// takes a level below zero.
    Take(i64),
    /// `available = n`, with the count behind it when the figure is a count.
    Set {
        available: i64,
        count: Option<CountStamp>,
    },
    /// `available += n`, `damaged += d` (creates the level if new).
    Add { available: i64, damaged: i64 },
}

/// An absolute count set on a level: when it was taken, and by what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountStamp {
    pub at: String,
    /// The feed object and the figure it counted (feeds only: a manual
    /// "set" stamps only the time).
    pub source: Option<(String, i64)>,
}

/// A write whose condition failed, and what is there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Its place in [`Attempt::writes`].
    pub index: usize,
    pub current: Current,
}

/// The current image behind a failed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// A level (`None`: there is none).
    Level(Option<LevelView>),
    /// A cancel counter's units (`None`: no count yet).
    Counter(Option<i64>),
}

/// What to do after a cancelled attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The images taught the decision what to expect: try again now.
    Retry,
    /// Read again what the attempt depends on, then try again.
    Reread,
    /// Nothing learnt (another transaction got in the way): wait, read again, retry.
    Wait,
}

impl Next {
    /// [`Next::Retry`] when the images taught the decision something, else [`Next::Wait`].
    pub fn learnt(refined: bool) -> Self {
        if refined {
            Next::Retry
        } else {
            Next::Wait
        }
    }
}

/// Reads a decision may need before it can describe its attempt.
pub trait LevelReads: Sync {
    /// One level, strongly consistent.
    fn level(
        &self,
        sku: &Sku,
        location: &Location,
    ) -> impl Future<Output = Result<Option<LevelView>, StoreError>> + Send;
    /// Several levels at once, strongly consistent; absent ones are left out.
    fn levels_at(
        &self,
        keys: &[(Sku, Location)],
    ) -> impl Future<Output = Result<HashMap<(Sku, Location), LevelView>, StoreError>> + Send;
    /// The net change to a level's `available` recorded after `since`, counts excluded.
    fn moved_since(
        &self,
        sku: &Sku,
        location: &Location,
        since: &str,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// A change made as one receipted transaction, refined until it commits.
pub trait Decision: Send {
    type Output;
    type Error: From<StoreError>;

    /// Reads what the next attempt depends on: before the first attempt,
    /// and again after [`Next::Reread`] or [`Next::Wait`]. Most decisions
    /// need nothing.
    fn prepare<R: LevelReads>(&mut self, reads: &R) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = reads;
        async { Ok(()) }
    }

    /// The next attempt, made at `at`.
    fn attempt(&mut self, at: &str) -> Result<Attempt, Self::Error>;

    /// The last attempt committed.
    fn applied(self) -> Self::Output;

    /// The receipt was there: this change was made before.
    fn duplicate(self, stored: StoredReceipt) -> Result<Self::Output, Self::Error>;

    /// Learns from the writes whose conditions failed (empty: a conflict
    /// with another transaction).
    fn refine(&mut self, failed: &[Failed]) -> Next;
}
