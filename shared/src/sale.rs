//! A sale: the order a webhook carries, what each line expects to find,
//! and what it took.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::{Location, Quantity, Sku};

/// How long a level's last seen figure shapes the first attempt at a sale.
const HINT_TTL: Duration = Duration::from_secs(30);
/// Levels an instance remembers at most (a few hundred KiB).
const HINT_CAPACITY: usize = 4096;

/// One line to take stock for, after location resolution and merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku: Sku,
    pub location: Location,
    pub quantity: Quantity,
}

/// A line the webhook carried that holds no stock (no SKU: a gift card, a custom item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedLine {
    /// Zero-based position in the webhook's line list.
    pub index: usize,
    pub reason: String,
}

/// A sale, whatever platform sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Shop domain (Shopify) or channel (generic): with `order_id` it keys the receipt.
    pub source: String,
    pub order_id: String,
    pub channel: String,
    /// Lines merged by (sku, location), in order of first appearance.
    pub lines: Vec<OrderLine>,
    pub skipped: Vec<SkippedLine>,
}

impl Order {
    /// The idempotency key: the same shop and order id is the same order,
    /// whatever topic or webhook id delivered it.
    pub fn receipt_key(&self) -> String {
        format!("{}#{}", self.source, self.order_id)
    }
}

/// The outcome of one sale line, as stored on the receipt and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineResult {
    pub sku: String,
    pub location: String,
    pub requested: u32,
    pub taken: u32,
    pub short: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    Applied,
    Oversold,
    Duplicate,
}

/// The answer to a sale webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleOutcome {
    pub order: String,
    pub status: SaleStatus,
    pub lines: Vec<LineResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedLine>,
}

impl SaleOutcome {
    /// Units the platform sold that the master count could not cover.
    pub fn short_units(&self) -> u32 {
        self.lines.iter().map(|l| l.short).sum()
    }
}

/// What one sale line expects to find, refined from what a failed attempt saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Enough stock for the whole line: `available >= requested`.
    Covers,
    /// Less than requested: take all of it, `available = n`.
    Exactly(i64),
    /// No level for this SKU and location.
    Missing,
}

impl Expect {
    pub fn take(self, requested: i64) -> i64 {
        match self {
            Expect::Covers => requested,
            Expect::Exactly(a) => a.clamp(0, requested),
            Expect::Missing => 0,
        }
    }

    /// What to expect of a level last seen with `available` (`None`: no level).
    pub fn from_available(available: Option<i64>, requested: i64) -> Self {
        match available {
            None => Expect::Missing,
            Some(a) if a >= requested => Expect::Covers,
            Some(a) => Expect::Exactly(a.max(0)),
        }
    }
}

/// What this instance last saw of levels a sale could not fully cover:
/// `available` (or no level at all) and when. A sale's first attempt
/// expects that again, so during a sell-out an order records its shortage
/// in one transaction instead of a failed attempt and a second one. A hint
/// only shapes the attempt's conditions: if the level has changed since,
/// the condition fails, the old image refines the expectation and the
/// attempt is retried, exactly as without a hint.
#[derive(Debug, Default)]
pub struct LevelHints {
    seen: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl LevelHints {
    fn key(line: &OrderLine) -> String {
        format!("{}\u{0}{}", line.sku, line.location)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<i64>, Instant)>> {
        // A panic elsewhere cannot leave a hint half-written: use it as is.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The expectation for a line's first attempt: covered unless a recent
    /// hint says otherwise.
    pub fn expect(&self, line: &OrderLine) -> Expect {
        match self.seen().get(&Self::key(line)) {
            Some((available, at)) if at.elapsed() < HINT_TTL => {
                Expect::from_available(*available, line.quantity.as_i64())
            }
            _ => Expect::Covers,
        }
    }

    pub fn learn(&self, line: &OrderLine, available: Option<i64>) {
        let mut seen = self.seen();
        if seen.len() >= HINT_CAPACITY {
            seen.retain(|_, (_, at)| at.elapsed() < HINT_TTL);
            if seen.len() >= HINT_CAPACITY {
                seen.clear();
            }
        }
        seen.insert(Self::key(line), (available, Instant::now()));
    }

    fn forget(&self, line: &OrderLine) {
        self.seen().remove(&Self::key(line));
    }

    /// After a committed attempt: a line that took all there was (or found
    /// no level) leaves the level at zero (or still missing); a covered one
    /// says nothing about what is left.
    pub fn committed(&self, chunk: &[OrderLine], expects: &[Expect]) {
        for (line, expect) in chunk.iter().zip(expects) {
            match expect {
                Expect::Covers => self.forget(line),
                Expect::Exactly(_) => self.learn(line, Some(0)),
                Expect::Missing => self.learn(line, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_refines_from_the_old_image() {
        assert_eq!(Expect::from_available(None, 3), Expect::Missing);
        assert_eq!(Expect::from_available(Some(5), 3), Expect::Covers);
        assert_eq!(Expect::from_available(Some(2), 3), Expect::Exactly(2));
        assert_eq!(Expect::from_available(Some(-1), 3), Expect::Exactly(0));
        assert_eq!(Expect::Covers.take(3), 3);
        assert_eq!(Expect::Exactly(2).take(3), 2);
        assert_eq!(Expect::Missing.take(3), 0);
    }

    #[test]
    fn level_hints_shape_only_the_first_attempt_and_stay_bounded() {
        let line = |sku: &str, q: i64| OrderLine {
            sku: Sku::parse(sku).unwrap(),
            location: Location::parse("warehouse").unwrap(),
            quantity: Quantity::new(q).unwrap(),
        };
        let hints = LevelHints::default();
        let (a, b) = (line("A", 3), line("B", 1));
        assert_eq!(hints.expect(&a), Expect::Covers);
        hints.learn(&a, Some(2));
        hints.learn(&b, None);
        assert_eq!(hints.expect(&a), Expect::Exactly(2));
        assert_eq!(hints.expect(&line("A", 2)), Expect::Covers);
        assert_eq!(hints.expect(&b), Expect::Missing);
        // Another location of the same SKU knows nothing.
        let elsewhere = OrderLine {
            location: Location::parse("downtown").unwrap(),
            ..a.clone()
        };
        assert_eq!(hints.expect(&elsewhere), Expect::Covers);
        // Taking all there was leaves zero; a covered line forgets.
        hints.committed(&[a.clone(), b.clone()], &[Expect::Exactly(2), Expect::Missing]);
        assert_eq!(hints.expect(&a), Expect::Exactly(0));
        assert_eq!(hints.expect(&b), Expect::Missing);
        hints.committed(std::slice::from_ref(&a), &[Expect::Covers]);
        assert_eq!(hints.expect(&a), Expect::Covers);
        for i in 0..HINT_CAPACITY + 10 {
            hints.learn(&line(&format!("S{i}"), 1), Some(0));
        }
        assert!(hints.seen().len() <= HINT_CAPACITY);
    }
}
