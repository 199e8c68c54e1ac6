//! One chunk of a feed object's valid rows, applied exactly once.
//!
//! A chunk is up to [`ROWS_PER_FEED_CHUNK`](super::ROWS_PER_FEED_CHUNK)
//! consecutive valid rows of one object; its receipt (`RECEIPT#feed#<object>`
//! / `CHUNK#<index>`) is in the same transaction as the level changes and
//! their ledger entries, so the same object delivered again changes nothing
//! and gets the stored summary.
//!
//! - Deliveries add: an `ADD` on each level, no condition needed.
//! - Counts set, as of their `as_of`: the level keeps when it was last
//!   counted (`counted_at`); an older count is skipped as stale; movements
//!   recorded after `as_of` (sales, returns, adjustments, not other counts)
//!   stay applied on top. The write is a compare-and-set on the level's
//!   version. A second count for the same level from the same object is a
//!   duplicate (same figure and time) or a contradiction (rejected).

use super::{ChunkSummary, FeedEffect, FeedRowInput, FeedSource};
use crate::domain::{Location, ReasonCode, Sku};
use crate::keys::{self, ReceiptKind};
use crate::level::{LedgerEntry, LevelView};
use crate::port::{
    json_field, Attempt, CountStamp, Decision, Failed, LevelCondition, LevelEffect, LevelReads, LevelWrite,
    Next, StoreError, StoredReceipt, Write,
};
use std::collections::HashMap;

/// What a count row does to its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountPlan {
    /// A newer count was applied already.
    Stale,
    /// This object already set this level to this figure.
    Duplicate,
    /// This object already set this level to another figure.
    Contradictory(String),
    /// Set the level: the count plus what moved since it was taken.
    Set { before: i64, after: i64, moved: i64 },
}

/// Whether a count needs the movements recorded after it to be decided:
/// only a level changed since the count was taken has any.
pub fn needs_movements(src_id: &str, row: &FeedRowInput, level: Option<&LevelView>) -> bool {
    level.is_some_and(|l| {
        l.count_source.as_deref() != Some(src_id)
            && l.counted_at.as_deref().is_none_or(|c| c <= row.as_of.as_str())
            && l.updated_at.as_str() > row.as_of.as_str()
    })
}

/// Decides what a count row does to its level, given the level (`None`: no
/// level yet) and the net movement recorded after the count was taken.
pub fn plan_count(src_id: &str, row: &FeedRowInput, level: Option<&LevelView>, moved: i64) -> CountPlan {
    let Some(l) = level else {
        return CountPlan::Set {
            before: 0,
            after: i64::from(row.quantity),
            moved: 0,
        };
    };
    if l.count_source.as_deref() == Some(src_id) {
        let same =
            l.count_quantity == Some(i64::from(row.quantity)) && l.counted_at.as_deref() == Some(&row.as_of);
        return if same {
            CountPlan::Duplicate
        } else {
            CountPlan::Contradictory(format!(
                "a second count for {} at {} disagrees with one already applied from this file",
                row.sku, row.location
            ))
        };
    }
    if l.counted_at.as_deref().is_some_and(|c| c > row.as_of.as_str()) {
        return CountPlan::Stale;
    }
    // Movements recorded after the count was taken stay applied on top of it.
    CountPlan::Set {
        before: l.available,
        after: (i64::from(row.quantity) + moved).max(0),
        moved,
    }
}

/// One chunk of rows as one receipted transaction.
#[derive(Debug)]
pub struct FeedChunk<'a> {
    src: &'a FeedSource,
    effect: FeedEffect,
    index: u64,
    rows: &'a [FeedRowInput],
    /// Counts: the levels the rows touch, as last read.
    levels: HashMap<(Sku, Location), LevelView>,
    /// Counts: per level, what moved after its count was taken.
    moved: HashMap<(Sku, Location), i64>,
    summary: ChunkSummary,
}

impl<'a> FeedChunk<'a> {
    pub fn new(src: &'a FeedSource, effect: FeedEffect, index: u64, rows: &'a [FeedRowInput]) -> Self {
        Self {
            src,
            effect,
            index,
            rows,
            levels: HashMap::new(),
            moved: HashMap::new(),
            summary: ChunkSummary::default(),
        }
    }

    /// The first row for each level: a transaction may touch an item once,
    /// and a second count for one level is a duplicate or a contradiction.
    fn first_rows(&self) -> Vec<&'a FeedRowInput> {
        let mut seen: Vec<(&Sku, &Location)> = Vec::new();
        let mut out = Vec::new();
        for r in self.rows {
            if !seen.contains(&(&r.sku, &r.location)) {
                seen.push((&r.sku, &r.location));
                out.push(r);
            }
        }
        out
    }

    /// Delivery rows: one `ADD` per level (rows for the same level summed)
    /// and one ledger entry per row.
    fn adds(&mut self, at: &str) -> Vec<Write> {
        let actor = self.src.actor();
        // Per level: the units its rows add, and its last row (the cause the
        // level, and so its channels, are told of).
        let mut totals: Vec<((&Sku, &Location), i64, u64)> = Vec::new();
        for r in self.rows {
            match totals.iter_mut().find(|(k, _, _)| *k == (&r.sku, &r.location)) {
                Some((_, t, line)) => {
                    *t += i64::from(r.quantity);
                    *line = r.line;
                }
                None => totals.push(((&r.sku, &r.location), i64::from(r.quantity), r.line)),
            }
        }
        let mut writes: Vec<Write> = totals
            .into_iter()
            .map(|((sku, location), total, line)| {
                Write::Level(LevelWrite {
                    sku: sku.clone(),
                    location: location.clone(),
                    condition: LevelCondition::Any,
                    effect: LevelEffect::Add {
                        available: total,
                        damaged: 0,
                    },
                    reason: ReasonCode::SupplierDelivery,
                    reference: self.src.reference(line),
                    sold: None,
                })
            })
            .collect();
        writes.extend(self.rows.iter().map(|r| {
            Write::Ledger {
                entry: LedgerEntry::new(
                    at,
                    &r.sku,
                    &r.location,
                    i64::from(r.quantity),
                    ReasonCode::SupplierDelivery,
                    &self.src.reference(r.line),
                    &actor,
                )
                .note(self.src.note.clone()),
                seq: r.line.to_string(),
            }
        }));
        self.summary.applied = self.rows.len() as u64;
        writes
    }

    /// Count rows: a compare-and-set per level counted, with its ledger entry.
    fn counts(&mut self, at: &str) -> Vec<Write> {
        let (id, actor) = (self.src.id(), self.src.actor());
        let mut writes = Vec::new();
        let mut first: HashMap<(&Sku, &Location), &FeedRowInput> = HashMap::new();
        for r in self.rows {
            let key = (&r.sku, &r.location);
            if let Some(f) = first.get(&key) {
                if f.quantity == r.quantity && f.as_of == r.as_of {
                    self.summary.duplicates += 1;
                } else {
                    self.summary.rejected.push((
                        r.line,
                        format!(
                            "a second count for {} at {} disagrees with line {}",
                            r.sku, r.location, f.line
                        ),
                    ));
                }
                continue;
            }
            first.insert(key, r);
            let k = (r.sku.clone(), r.location.clone());
            let level = self.levels.get(&k);
            match plan_count(&id, r, level, self.moved.get(&k).copied().unwrap_or(0)) {
                CountPlan::Stale => self.summary.stale += 1,
                CountPlan::Duplicate => self.summary.duplicates += 1,
                CountPlan::Contradictory(why) => self.summary.rejected.push((r.line, why)),
                CountPlan::Set { before, after, moved } => {
                    let reference = self.src.reference(r.line);
                    writes.push(Write::Level(LevelWrite {
                        sku: r.sku.clone(),
                        location: r.location.clone(),
                        condition: match level {
                            Some(l) => LevelCondition::Version(l.version),
                            None => LevelCondition::Missing,
                        },
                        effect: LevelEffect::Set {
                            available: after,
                            count: Some(CountStamp {
                                at: r.as_of.clone(),
                                source: Some((id.clone(), i64::from(r.quantity))),
                            }),
                        },
                        reason: ReasonCode::SupplierCount,
                        reference: reference.clone(),
                        sold: None,
                    }));
                    writes.push(Write::Ledger {
                        entry: LedgerEntry::new(
                            at,
                            &r.sku,
                            &r.location,
                            after - before,
                            ReasonCode::SupplierCount,
                            &reference,
                            &actor,
                        )
                        .before_after(before, after)
                        .note(Some(
                            [
                                Some(format!(
                                    "counted {} as of {}; {moved:+} moved since",
                                    r.quantity, r.as_of
                                )),
                                self.src.note.clone(),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join("; "),
                        )),
                        seq: r.line.to_string(),
                    });
                    self.summary.applied += 1;
                }
            }
        }
        writes
    }
}

impl Decision for FeedChunk<'_> {
    type Output = ChunkSummary;
    type Error = StoreError;

    /// Counts read the levels they touch, and what moved on those changed
    /// since their count was taken; deliveries need nothing.
    async fn prepare<R: LevelReads>(&mut self, reads: &R) -> Result<(), StoreError> {
        if self.effect == FeedEffect::Add {
            return Ok(());
        }
        let first = self.first_rows();
        let keys: Vec<(Sku, Location)> = first
            .iter()
            .map(|r| (r.sku.clone(), r.location.clone()))
            .collect();
        self.levels = reads.levels_at(&keys).await?;
        self.moved.clear();
        let id = self.src.id();
        for r in first {
            let k = (r.sku.clone(), r.location.clone());
            if needs_movements(&id, r, self.levels.get(&k)) {
                let moved = reads.moved_since(&r.sku, &r.location, &r.as_of).await?;
                self.moved.insert(k, moved);
            }
        }
        Ok(())
    }

    fn attempt(&mut self, at: &str) -> Result<Attempt, StoreError> {
        self.summary = ChunkSummary::default();
        let writes = match self.effect {
            FeedEffect::Add => self.adds(at),
            FeedEffect::Count => self.counts(at),
        };
        let receipt = keys::receipt_item(ReceiptKind::Feed, &self.src.id(), keys::chunk(self.index));
        let fields = vec![("summary", json_field(&self.summary)?)];
        Ok(Attempt::receipted(at, receipt, fields, writes))
    }

    fn applied(self) -> ChunkSummary {
        self.summary
    }

    fn duplicate(self, stored: StoredReceipt) -> Result<ChunkSummary, StoreError> {
        stored.json("summary")
    }

    fn refine(&mut self, failed: &[Failed]) -> Next {
        if failed.is_empty() {
            Next::Wait
        } else {
            // A level moved between the read and the write (a sale, say): read again.
            Next::Reread
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64, sku: &str, quantity: u32, as_of: &str) -> FeedRowInput {
        FeedRowInput {
            line,
            sku: Sku::parse(sku).unwrap(),
            location: Location::pool("acme").unwrap(),
            quantity,
            as_of: as_of.into(),
        }
    }

    fn src() -> FeedSource {
        FeedSource {
            bucket: "b".into(),
            key: "feeds/acme/stock/a b.csv".into(),
            version: "e1".into(),
            supplier: "acme".into(),
            note: None,
        }
    }

    fn level(available: i64, updated_at: &str, counted_at: Option<&str>) -> LevelView {
        LevelView {
            location: "pool:acme".into(),
            available,
            version: 3,
            updated_at: updated_at.into(),
            counted_at: counted_at.map(str::to_owned),
            ..LevelView::default()
        }
    }

    #[test]
    fn a_count_keeps_what_moved_after_it_and_an_older_count_is_stale() {
        let id = src().id();
        let r = row(2, "A", 10, "2026-11-22T08:00:00.000000Z");
        // No level: the count is the figure.
        assert_eq!(
            plan_count(&id, &r, None, 0),
            CountPlan::Set {
                before: 0,
                after: 10,
                moved: 0
            }
        );
        // Changed after the count (two sold since): those sales stay applied.
        let sold = level(7, "2026-11-22T09:00:00.000000Z", None);
        assert!(needs_movements(&id, &r, Some(&sold)));
        assert_eq!(
            plan_count(&id, &r, Some(&sold), -2),
            CountPlan::Set {
                before: 7,
                after: 8,
                moved: -2
            }
        );
        // More sold than counted: never below zero.
        assert_eq!(
            plan_count(&id, &r, Some(&sold), -12),
            CountPlan::Set {
                before: 7,
                after: 0,
                moved: -12
            }
        );
        // Untouched since the count: nothing to read.
        let quiet = level(7, "2026-11-22T07:00:00.000000Z", None);
        assert!(!needs_movements(&id, &r, Some(&quiet)));
        // A newer count was applied: stale, nothing to read.
        let recounted = level(
            7,
            "2026-11-22T09:00:00.000000Z",
            Some("2026-11-22T08:30:00.000000Z"),
        );
        assert!(!needs_movements(&id, &r, Some(&recounted)));
        assert_eq!(plan_count(&id, &r, Some(&recounted), 0), CountPlan::Stale);
    }

    #[test]
    fn a_count_from_the_same_object_is_a_duplicate_or_a_contradiction() {
        let id = src().id();
        let r = row(2, "A", 10, "2026-11-22T08:00:00.000000Z");
        let mut l = level(
            10,
            "2026-11-22T09:00:00.000000Z",
            Some("2026-11-22T08:00:00.000000Z"),
        );
        l.count_source = Some(id.clone());
        l.count_quantity = Some(10);
        assert!(!needs_movements(&id, &r, Some(&l)));
        assert_eq!(plan_count(&id, &r, Some(&l), 0), CountPlan::Duplicate);
        l.count_quantity = Some(9);
        assert!(matches!(
            plan_count(&id, &r, Some(&l), 0),
            CountPlan::Contradictory(_)
        ));
    }

    #[test]
    fn a_chunk_of_counts_sets_each_level_once_and_sorts_the_rest() {
        let s = src();
        let t = "2026-11-22T08:00:00.000000Z";
        let rows = [
            row(2, "A", 5, t),
            row(3, "A", 5, t),
            row(4, "A", 6, t),
            row(5, "B", 0, t),
        ];
        let mut chunk = FeedChunk::new(&s, FeedEffect::Count, 7, &rows);
        let a = chunk.attempt("2026-11-22T10:00:00.000000Z").unwrap();
        assert_eq!(a.receipt.key.sk, "CHUNK#00000007");
        assert_eq!(a.writes.len(), 4, "a level and a ledger entry for A and for B");
        let Write::Level(w) = &a.writes[0] else { panic!() };
        assert_eq!(w.condition, LevelCondition::Missing);
        let summary = chunk.applied();
        assert_eq!((summary.applied, summary.duplicates), (2, 1));
        assert_eq!(summary.rejected.len(), 1);
        assert!(summary.rejected[0].1.contains("disagrees with line 2"));
    }

    #[test]
    fn a_chunk_of_deliveries_adds_once_per_level_and_records_every_row() {
        let s = src();
        let rows = [row(2, "A", 5, ""), row(3, "A", 2, ""), row(4, "B", 1, "")];
        let mut chunk = FeedChunk::new(&s, FeedEffect::Add, 0, &rows);
        let a = chunk.attempt("2026-11-22T10:00:00.000000Z").unwrap();
        let adds: Vec<i64> = a
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Level(LevelWrite {
                    effect: LevelEffect::Add { available, .. },
                    ..
                }) => Some(*available),
                _ => None,
            })
            .collect();
        assert_eq!(adds, [7, 1]);
        // Each level is stamped with its own last row: the cause its channels hear.
        let stamped: Vec<&str> = a
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Level(l) => Some(l.reference.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            stamped[0].ends_with("#line=3") && stamped[1].ends_with("#line=4"),
            "{stamped:?}"
        );
        let references: Vec<&str> = a
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Ledger { entry, .. } => Some(entry.reference.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(references.len(), 3);
        assert!(references[2].ends_with("#line=4"), "{references:?}");
        assert_eq!(chunk.applied().applied, 3);
    }
}
