//! Holds: a stock file that looks empty, truncated or destructive is not
//! applied until ops release it (`POST /feeds/release`, see [`super::release`]).

use std::fmt;

use tokio::io::AsyncBufRead;

use super::{FeedError, FeedItem, FeedReader, FeedRow, LocationStats};
use crate::domain::Location;

/// What a stock file would do to its supplier's pool, counted in one read
/// (a deliveries file is read the same way first, for its row count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StockFileCounts {
    /// Valid rows, wherever they go.
    pub valid: u64,
    /// Valid rows for the supplier's pool.
    pub in_pool: u64,
    /// Rows of the pool that set a SKU to zero.
    pub zeros: u64,
    /// Units the pool's rows count.
    pub units: i64,
    /// The file looks cut short ([`FeedReader::looks_truncated`]).
    pub truncated: bool,
}

impl StockFileCounts {
    /// Counts one valid row.
    pub fn count(&mut self, row: &FeedRow, pool: &Location) {
        self.valid += 1;
        if &row.location == pool {
            self.in_pool += 1;
            self.zeros += u64::from(row.quantity == 0);
            self.units += i64::from(row.quantity);
        }
    }

    /// Reads a stock file to the end, without applying it.
    pub async fn read<R: AsyncBufRead + Unpin>(
        mut reader: FeedReader<R>,
        pool: &Location,
    ) -> Result<Self, FeedError> {
        let mut counts = Self::default();
        while let Some(item) = reader.next_item().await? {
            if let FeedItem::Row(r) = item {
                counts.count(&r, pool);
            }
        }
        counts.truncated = reader.looks_truncated();
        Ok(counts)
    }
}

/// The pool a stock file counts, and how much of it a file may change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPolicy {
    /// The pool's SKUs and units now.
    pub stats: LocationStats,
    /// `FEED_HOLD_SHARE`.
    pub share: f64,
    /// The supplier's files are complete (`FEED_ZERO_MISSING`): what they
    /// leave out is set to zero.
    pub zero_missing: bool,
}

/// Why a stock file is held.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldReason {
    NoValidRows,
    Truncated,
    /// It would set `zeroed` of the pool's `skus` SKUs to zero.
    ZeroesTooMany {
        pool: Location,
        zeroed: u64,
        skus: u64,
        share: f64,
    },
    /// A zero-missing supplier's file lists only `listed` of the pool's `skus` SKUs.
    ListsTooFew {
        pool: Location,
        listed: u64,
        skus: u64,
    },
    /// A zero-missing supplier's file would cut the pool's units.
    CutsUnits {
        pool: Location,
        from: i64,
        to: i64,
        share: f64,
    },
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoValidRows => f.write_str("the file has no valid rows"),
            Self::Truncated => f.write_str(
                "the file looks truncated: its last row has no line ending and is not a valid row",
            ),
            Self::ZeroesTooMany {
                pool,
                zeroed,
                skus,
                share,
            } => write!(
                f,
                "it would set {zeroed} of the {skus} SKUs in {pool} to zero (more than {})",
                percent(*share)
            ),
            Self::ListsTooFew { pool, listed, skus } => write!(
                f,
                "it lists only {listed} of the {skus} SKUs in {pool}: it looks truncated"
            ),
            Self::CutsUnits {
                pool,
                from,
                to,
                share,
            } => write!(
                f,
                "it would cut {pool} from {from} to {to} units (by more than {})",
                percent(*share)
            ),
        }
    }
}

/// Why the file alone is held, before its pool is looked at.
pub fn file_hold(file: &StockFileCounts) -> Option<HoldReason> {
    if file.valid == 0 {
        return Some(HoldReason::NoValidRows);
    }
    file.truncated.then_some(HoldReason::Truncated)
}

/// Why a stock file for `pool` is held, if it is. A pool with no SKUs yet
/// cannot be harmed; otherwise a file may not zero more than the share of
/// it, and a zero-missing supplier's file may not leave out or cut more.
pub fn hold_reason(file: &StockFileCounts, pool: &Location, policy: HoldPolicy) -> Option<HoldReason> {
    if let Some(reason) = file_hold(file) {
        return Some(reason);
    }
    let HoldPolicy {
        stats,
        share,
        zero_missing,
    } = policy;
    if stats.skus == 0 {
        return None;
    }
    let missing = stats.skus.saturating_sub(file.in_pool);
    let zeroed = file.zeros + if zero_missing { missing } else { 0 };
    let pool = pool.clone();
    if zeroed as f64 > share * stats.skus as f64 {
        return Some(HoldReason::ZeroesTooMany {
            pool,
            zeroed,
            skus: stats.skus,
            share,
        });
    }
    if !zero_missing {
        return None;
    }
    if (file.in_pool as f64) < (1.0 - share) * stats.skus as f64 {
        return Some(HoldReason::ListsTooFew {
            pool,
            listed: file.in_pool,
            skus: stats.skus,
        });
    }
    if stats.available > 0 && (file.units as f64) < (1.0 - share) * stats.available as f64 {
        return Some(HoldReason::CutsUnits {
            pool,
            from: stats.available,
            to: file.units,
            share,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Location {
        Location::pool("acme").unwrap()
    }

    /// A file of `in_pool` rows for the pool, `zeros` of them zero, counting `units` in all.
    fn file(in_pool: u64, zeros: u64, units: i64) -> StockFileCounts {
        StockFileCounts {
            valid: in_pool,
            in_pool,
            zeros,
            units,
            truncated: false,
        }
    }

    fn policy(skus: u64, available: i64, zero_missing: bool) -> HoldPolicy {
        HoldPolicy {
            stats: LocationStats { skus, available },
            share: 0.3,
            zero_missing,
        }
    }

    /// Each case: a file, a policy, and the reason it is held for, if any.
    fn check(cases: &[(StockFileCounts, HoldPolicy, Option<&str>)]) {
        for (i, (file, policy, expected)) in cases.iter().enumerate() {
            let got = hold_reason(file, &acme(), *policy).map(|r| r.to_string());
            assert_eq!(got.as_deref(), *expected, "case {i}");
        }
    }

    const FOUR_OF_TEN: Option<&str> =
        Some("it would set 4 of the 10 SKUs in pool:acme to zero (more than 30 %)");

    #[test]
    fn counting_a_file_keeps_to_the_pool() {
        let mut counts = StockFileCounts::default();
        let row = |location: &str, quantity| FeedRow {
            line: 2,
            sku: crate::domain::Sku::parse("JKT").unwrap(),
            location: Location::parse(location).unwrap(),
            quantity,
            as_of: String::new(),
        };
        for r in [row("pool:acme", 0), row("pool:acme", 5), row("warehouse", 0)] {
            counts.count(&r, &acme());
        }
        assert_eq!(
            counts,
            StockFileCounts {
                valid: 3,
                in_pool: 2,
                zeros: 1,
                units: 5,
                truncated: false
            }
        );
    }

    #[test]
    fn a_file_without_valid_rows_is_held() {
        let empty = StockFileCounts::default();
        assert_eq!(file_hold(&empty), Some(HoldReason::NoValidRows));
        let elsewhere = StockFileCounts {
            valid: 2,
            ..StockFileCounts::default()
        };
        check(&[
            // Whatever the pool: even an empty one.
            (empty, policy(0, 0, false), Some("the file has no valid rows")),
            // Rows for other locations only are still valid rows.
            (elsewhere, policy(0, 0, false), None),
        ]);
    }

    #[test]
    fn a_truncated_file_is_held() {
        let cut = StockFileCounts {
            truncated: true,
            ..file(10, 0, 50)
        };
        assert_eq!(file_hold(&cut), Some(HoldReason::Truncated));
        let why = "the file looks truncated: its last row has no line ending and is not a valid row";
        check(&[(cut, policy(0, 0, false), Some(why))]);
    }

    #[test]
    fn an_empty_pool_cannot_be_harmed() {
        check(&[(file(10, 10, 0), policy(0, 0, true), None)]);
    }

    #[test]
    fn zeroing_more_than_the_share_is_held() {
        check(&[
            // 3 of 10 is the share itself: allowed; 4 is more.
            (file(10, 3, 35), policy(10, 50, false), None),
            (file(10, 4, 30), policy(10, 50, false), FOUR_OF_TEN),
            // Left-out SKUs count as zeroed for zero-missing suppliers only.
            (file(5, 0, 50), policy(10, 50, false), None),
            (file(8, 2, 48), policy(10, 50, true), FOUR_OF_TEN),
        ]);
    }

    #[test]
    fn a_zero_missing_file_covering_less_than_70_percent_is_held() {
        // With the default share, the zeroing rule already holds such a
        // file (what it leaves out counts as zeroed); the coverage rule has
        // the last word where the two part in floating point: 1 - 0.7 is a
        // hair over 0.3.
        let wide = HoldPolicy {
            share: 0.7,
            ..policy(10, 0, true)
        };
        let partial = HoldPolicy {
            zero_missing: false,
            ..wide
        };
        check(&[
            (file(6, 0, 60), policy(10, 0, true), FOUR_OF_TEN),
            (file(7, 0, 70), policy(10, 0, true), None),
            (
                file(3, 0, 30),
                wide,
                Some("it lists only 3 of the 10 SKUs in pool:acme: it looks truncated"),
            ),
            (file(3, 0, 30), partial, None),
        ]);
    }

    #[test]
    fn cutting_a_zero_missing_pool_by_more_than_the_share_is_held() {
        check(&[
            // Every SKU listed, none zeroed, but 100 units cut to 60.
            (
                file(10, 0, 60),
                policy(10, 100, true),
                Some("it would cut pool:acme from 100 to 60 units (by more than 30 %)"),
            ),
            (file(10, 0, 70), policy(10, 100, true), None),
            // Only for zero-missing suppliers, and only when the pool has units.
            (file(10, 0, 60), policy(10, 100, false), None),
            (file(10, 0, 10), policy(10, 0, true), None),
        ]);
    }
}
