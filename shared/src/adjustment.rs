//! Manual adjustments: audited changes to one level, with who and why.

use serde::{Deserialize, Serialize};

use crate::domain::{Actor, DocumentRef, Location, ReasonCode, Sku};
use crate::store::StoreError;

/// How a manual adjustment changes a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add (or with a negative number, remove) units.
    Delta(i64),
    /// Set the figure to an absolute count.
    Set(i64),
}

/// A manual, audited adjustment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub sku: Sku,
    pub location: Location,
    pub change: Change,
    /// Compare-and-set: apply only if the level shows exactly this figure.
    pub expected: Option<i64>,
    pub reason: ReasonCode,
    pub actor: Actor,
    pub note: Option<String>,
    pub document: Option<DocumentRef>,
    /// The caller's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

impl Adjustment {
    /// A fingerprint of what was asked, so a reused key with another request is caught.
    pub fn fingerprint(&self) -> String {
        let change = match self.change {
            Change::Delta(d) => format!("delta:{d}"),
            Change::Set(v) => format!("set:{v}"),
        };
        crate::sha256_hex(&format!(
            "{}\n{}\n{}\n{:?}\n{}\n{}\n{:?}\n{:?}",
            self.sku,
            self.location,
            change,
            self.expected,
            self.reason,
            self.actor.as_str(),
            self.note,
            self.document.as_ref().map(DocumentRef::as_str)
        ))
    }
}

/// The answer to an applied adjustment (also replayed for a repeated key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentOutcome {
    pub adjustment: String,
    pub sku: String,
    pub location: String,
    pub reason: String,
    pub delta: i64,
    pub before: i64,
    pub available: i64,
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("expected {expected} available but the level shows {current}")]
    ExpectedMismatch { expected: i64, current: i64 },
    #[error("the change would take the level below zero: {current} available, change {delta}")]
    BelowZero { current: i64, delta: i64 },
    #[error("this Idempotency-Key was already used for a different adjustment")]
    KeyReused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustResult {
    Applied(AdjustmentOutcome),
    /// The same `Idempotency-Key` and request were seen before: the original answer.
    Replayed(AdjustmentOutcome),
}
