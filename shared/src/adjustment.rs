//! Manual adjustments: audited changes to one level, with who and why.

use serde::{Deserialize, Serialize};

use crate::domain::{Actor, DocumentRef, Location, ReasonCode, Sku};
use crate::keys::{self, Key, ReceiptKind};
use crate::level::{LedgerEntry, LevelView};
use crate::port::{
    json_field, Attempt, CountStamp, Decision, Failed, LevelCondition, LevelEffect, LevelReads, LevelWrite,
    Next, StoreError, StoredReceipt, Write,
};

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

/// The figure an adjustment leaves, from the figure it found: a compare-and-set
/// (`expected`) must see exactly that figure, and no change goes below zero.
pub fn decide(change: Change, expected: Option<i64>, before: i64) -> Result<i64, AdjustError> {
    if let Some(expected) = expected {
        if expected != before {
            return Err(AdjustError::ExpectedMismatch {
                expected,
                current: before,
            });
        }
    }
    let after = match change {
        Change::Delta(d) => before + d,
        Change::Set(v) => v,
    };
    if after < 0 {
        return Err(AdjustError::BelowZero {
            current: before,
            delta: after - before,
        });
    }
    Ok(after)
}

/// An adjustment as one transaction: a compare-and-set on the level's
/// version (so the ledger records the exact figure before and after), its
/// ledger entry, and its receipt (`RECEIPT#adjustment#<id>`) holding the
/// answer for a repeated `Idempotency-Key`.
#[derive(Debug)]
pub struct AdjustmentDecision<'a> {
    adj: &'a Adjustment,
    id: String,
    fingerprint: String,
    /// The level as last read or seen (`None`: there is none yet).
    level: Option<LevelView>,
    outcome: Option<AdjustmentOutcome>,
}

impl<'a> AdjustmentDecision<'a> {
    pub fn new(adj: &'a Adjustment) -> Self {
        Self {
            adj,
            id: adj
                .idempotency_key
                .clone()
                .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..))),
            fingerprint: adj.fingerprint(),
            level: None,
            outcome: None,
        }
    }

    /// The receipt's key: where a repeated `Idempotency-Key` finds its answer.
    pub fn receipt_key(&self) -> Key {
        keys::receipt_item(ReceiptKind::Adjustment, &self.id, keys::part(0))
    }

    /// The stored answer for a repeated key, if it was for the same request.
    pub fn replay(&self, stored: &StoredReceipt) -> Result<AdjustResult, AdjustError> {
        if stored.get("fingerprint") != Some(self.fingerprint.as_str()) {
            return Err(AdjustError::KeyReused);
        }
        Ok(AdjustResult::Replayed(stored.json("response")?))
    }
}

impl Decision for AdjustmentDecision<'_> {
    type Output = AdjustResult;
    type Error = AdjustError;

    async fn prepare<R: LevelReads>(&mut self, reads: &R) -> Result<(), StoreError> {
        self.level = reads.level(&self.adj.sku, &self.adj.location).await?;
        Ok(())
    }

    fn attempt(&mut self, at: &str) -> Result<Attempt, AdjustError> {
        let adj = self.adj;
        let before = self.level.as_ref().map_or(0, |l| l.available);
        let after = decide(adj.change, adj.expected, before)?;
        let reference = format!("adjustment:{}", self.id);
        let outcome = AdjustmentOutcome {
            adjustment: self.id.clone(),
            sku: adj.sku.to_string(),
            location: adj.location.to_string(),
            reason: adj.reason.as_str().into(),
            delta: after - before,
            before,
            available: after,
            version: self.level.as_ref().map_or(0, |l| l.version) + 1,
        };
        let response = json_field(&outcome)?;
        let mut entry = LedgerEntry::new(
            at,
            &adj.sku,
            &adj.location,
            after - before,
            adj.reason,
            &reference,
            &adj.actor,
        )
        .before_after(before, after)
        .note(adj.note.clone());
        entry.document = adj.document.as_ref().map(|d| d.as_str().to_owned());
        let level = Write::Level(LevelWrite {
            sku: adj.sku.clone(),
            location: adj.location.clone(),
            condition: match &self.level {
                Some(l) => LevelCondition::Version(l.version),
                None => LevelCondition::Missing,
            },
            effect: LevelEffect::Set {
                available: after,
                // A manual "set" is a count taken now: older supplier counts become stale.
                count: matches!(adj.change, Change::Set(_)).then(|| CountStamp {
                    at: at.to_owned(),
                    source: None,
                }),
            },
            reason: adj.reason,
            reference: reference.clone(),
            sold: None,
        });
        self.outcome = Some(outcome);
        Ok(Attempt::receipted(
            at,
            self.receipt_key(),
            vec![("response", response), ("fingerprint", self.fingerprint.clone())],
            vec![
                level,
                Write::Ledger {
                    entry,
                    seq: "0".into(),
                },
            ],
        ))
    }

    fn applied(self) -> AdjustResult {
        match self.outcome {
            Some(o) => AdjustResult::Applied(o),
            None => unreachable!("an attempt was made before it was applied"),
        }
    }

    fn duplicate(self, stored: StoredReceipt) -> Result<AdjustResult, AdjustError> {
        self.replay(&stored)
    }

    /// Whatever failed (the level moved, or another transaction got in the
    /// way), many writers may be racing on this level: wait, read it again
    /// and make the attempt against what is there then.
    fn refine(&mut self, _failed: &[Failed]) -> Next {
        Next::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustments_check_the_expected_figure_and_never_go_below_zero() {
        assert_eq!(decide(Change::Delta(-2), None, 5).unwrap(), 3);
        assert_eq!(decide(Change::Set(9), None, 5).unwrap(), 9);
        assert_eq!(decide(Change::Set(0), Some(5), 5).unwrap(), 0);
        assert!(matches!(
            decide(Change::Delta(1), Some(4), 5),
            Err(AdjustError::ExpectedMismatch {
                expected: 4,
                current: 5
            })
        ));
        assert!(matches!(
            decide(Change::Delta(-6), None, 5),
            Err(AdjustError::BelowZero {
                current: 5,
                delta: -6
            })
        ));
    }

    fn adjustment(change: Change) -> Adjustment {
        Adjustment {
            sku: Sku::parse("A").unwrap(),
            location: Location::parse("shop-1").unwrap(),
            change,
            expected: None,
            reason: ReasonCode::Stocktake,
            actor: Actor::parse("ana").unwrap(),
            note: Some("recount".into()),
            document: None,
            idempotency_key: Some("k-1".into()),
        }
    }

    /// Reads from a table of one level.
    struct OneLevel(Option<LevelView>);

    impl LevelReads for OneLevel {
        async fn level(&self, _: &Sku, _: &Location) -> Result<Option<LevelView>, StoreError> {
            Ok(self.0.clone())
        }

        async fn levels_at(
            &self,
            _: &[(Sku, Location)],
        ) -> Result<std::collections::HashMap<(Sku, Location), LevelView>, StoreError> {
            unreachable!("adjustments read one level")
        }

        async fn moved_since(&self, _: &Sku, _: &Location, _: &str) -> Result<i64, StoreError> {
            unreachable!("adjustments read no movements")
        }
    }

    #[tokio::test]
    async fn an_adjustment_is_a_compare_and_set_with_its_ledger_entry_and_receipt() {
        let adj = adjustment(Change::Set(7));
        let mut d = AdjustmentDecision::new(&adj);
        let at = "2026-11-22T10:00:00.000000Z";
        // No level yet: it must still be missing when the write lands.
        d.prepare(&OneLevel(None)).await.unwrap();
        let a = d.attempt(at).unwrap();
        let Write::Level(level) = &a.writes[0] else {
            panic!("{a:?}")
        };
        assert_eq!(level.condition, LevelCondition::Missing);
        assert_eq!(
            level.effect,
            LevelEffect::Set {
                available: 7,
                count: Some(CountStamp {
                    at: at.into(),
                    source: None
                })
            }
        );
        assert_eq!(a.receipt.key.pk, "RECEIPT#adjustment#k-1");
        // It moved meanwhile: wait, read again, and expect what is there now.
        assert_eq!(d.refine(&[]), Next::Wait);
        let seen = LevelView {
            available: 3,
            version: 4,
            ..LevelView::default()
        };
        d.prepare(&OneLevel(Some(seen))).await.unwrap();
        let a = d.attempt(at).unwrap();
        let (Write::Level(level), Write::Ledger { entry, .. }) = (&a.writes[0], &a.writes[1]) else {
            panic!("{a:?}")
        };
        assert_eq!(level.condition, LevelCondition::Version(4));
        assert_eq!((entry.delta, entry.before, entry.after), (4, Some(3), Some(7)));
        assert_eq!(entry.note.as_deref(), Some("recount"));
        let AdjustResult::Applied(o) = d.applied() else {
            panic!()
        };
        assert_eq!((o.before, o.available, o.version), (3, 7, 5));
        // A delta stamps no count.
        let adj = adjustment(Change::Delta(1));
        let a = AdjustmentDecision::new(&adj).attempt(at).unwrap();
        let Write::Level(level) = &a.writes[0] else {
            panic!()
        };
        assert_eq!(
            level.effect,
            LevelEffect::Set {
                available: 1,
                count: None
            }
        );
    }

    #[test]
    fn a_reused_key_replays_only_the_same_request() {
        let adj = adjustment(Change::Delta(1));
        let d = AdjustmentDecision::new(&adj);
        let outcome = AdjustmentOutcome {
            adjustment: "k-1".into(),
            sku: "A".into(),
            location: "shop-1".into(),
            reason: "stocktake".into(),
            delta: 1,
            before: 0,
            available: 1,
            version: 1,
        };
        let stored = |fingerprint: &str| StoredReceipt {
            key: d.receipt_key(),
            fields: [
                ("fingerprint".to_owned(), fingerprint.to_owned()),
                ("response".to_owned(), serde_json::to_string(&outcome).unwrap()),
            ]
            .into(),
        };
        assert_eq!(
            d.replay(&stored(&adj.fingerprint())).unwrap(),
            AdjustResult::Replayed(outcome.clone())
        );
        assert!(matches!(d.replay(&stored("other")), Err(AdjustError::KeyReused)));
    }
}
