//! A sale: the order a webhook carries, what each line expects to find,
//! and what it took.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::{Actor, Location, Quantity, ReasonCode, Sku};
use crate::keys::{self, ReceiptKind};
use crate::level::LedgerEntry;
use crate::port::{
    lines_fields, Attempt, Current, Decision, Failed, LevelCondition, LevelEffect, LevelWrite, Next,
    StoreError, StoredReceipt, Write,
};

/// DynamoDB's limit on actions in one transaction.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// Sale lines per transaction: each takes a level action and a ledger entry,
/// and the part's receipt takes one more.
pub const LINES_PER_TRANSACTION: usize = (MAX_TRANSACTION_ACTIONS - 1) / 2;

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

/// What became of one part of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    Applied(Vec<LineResult>),
    /// Recorded before: the lines as the first delivery took them.
    Duplicate(Vec<LineResult>),
}

impl SaleOutcome {
    /// The answer for an order from what became of each of its parts:
    /// `duplicate` when every part was, else `oversold` when a line came up
    /// short, else `applied`.
    pub fn from_parts(order: &Order, parts: Vec<PartOutcome>) -> Self {
        let all_duplicate = !parts.is_empty() && parts.iter().all(|p| matches!(p, PartOutcome::Duplicate(_)));
        let lines: Vec<LineResult> = parts
            .into_iter()
            .flat_map(|p| match p {
                PartOutcome::Applied(l) | PartOutcome::Duplicate(l) => l,
            })
            .collect();
        let status = if all_duplicate {
            SaleStatus::Duplicate
        } else if lines.iter().any(|l| l.short > 0) {
            SaleStatus::Oversold
        } else {
            SaleStatus::Applied
        };
        Self {
            order: order.order_id.clone(),
            status,
            lines,
            skipped: order.skipped.clone(),
        }
    }
}

/// One part of an order (up to [`LINES_PER_TRANSACTION`] lines) as one
/// transaction: the part's receipt, and per line a conditional take shaped by
/// what the line expects to find, and its ledger entry. Every line takes
/// `min(requested, available)` as the transaction commits: a failed
/// condition's image refines what to expect, never a figure computed here.
#[derive(Debug)]
pub struct SalePart<'a> {
    order: &'a Order,
    part: usize,
    lines: &'a [OrderLine],
    actor: &'a Actor,
    hints: &'a LevelHints,
    expects: Vec<Expect>,
    reference: String,
    fingerprint: String,
    results: Vec<LineResult>,
}

impl<'a> SalePart<'a> {
    /// Every part of an order, each expecting what this instance's hints say.
    pub fn all(order: &'a Order, actor: &'a Actor, hints: &'a LevelHints) -> Vec<Self> {
        order
            .lines
            .chunks(LINES_PER_TRANSACTION)
            .enumerate()
            .map(|(part, lines)| Self {
                order,
                part,
                lines,
                actor,
                hints,
                expects: lines.iter().map(|l| hints.expect(l)).collect(),
                reference: format!("order:{}/{}", order.source, order.order_id),
                fingerprint: crate::sha256_hex(
                    &lines
                        .iter()
                        .map(|l| format!("{}|{}|{}\n", l.sku, l.location, l.quantity.get()))
                        .collect::<String>(),
                ),
                results: Vec::new(),
            })
            .collect()
    }

    /// The same part expecting every line to be covered (no hints).
    pub fn covered(mut self) -> Self {
        self.expects = vec![Expect::Covers; self.lines.len()];
        self
    }

    /// What each line takes if the attempt commits.
    fn results(&self) -> Vec<LineResult> {
        self.lines
            .iter()
            .zip(&self.expects)
            .map(|(l, e)| {
                let requested = l.quantity.as_i64();
                let taken = e.take(requested);
                LineResult {
                    sku: l.sku.to_string(),
                    location: l.location.to_string(),
                    requested: l.quantity.get(),
                    taken: taken as u32,
                    short: (requested - taken) as u32,
                }
            })
            .collect()
    }

    /// The write that takes a line's units, as its expectation shapes it: a
    /// line that can take nothing only checks the level is as expected.
    fn take(&self, line: &OrderLine, expect: Expect) -> Write {
        let (condition, effect) = match expect {
            Expect::Covers => (
                LevelCondition::Any,
                Some(LevelEffect::Take(line.quantity.as_i64())),
            ),
            Expect::Exactly(seen @ 1..) => (
                LevelCondition::Exactly(seen),
                Some(LevelEffect::Set {
                    available: 0,
                    count: None,
                }),
            ),
            Expect::Exactly(_) => (LevelCondition::Exactly(0), None),
            Expect::Missing => (LevelCondition::Missing, None),
        };
        match effect {
            Some(effect) => Write::Level(LevelWrite {
                sku: line.sku.clone(),
                location: line.location.clone(),
                condition,
                effect,
                reason: ReasonCode::Sale,
                reference: self.reference.clone(),
                // The source sold the whole line, whatever the master had.
                sold: Some((self.order.source.clone(), line.quantity.as_i64())),
            }),
            None => Write::Check {
                sku: line.sku.clone(),
                location: line.location.clone(),
                condition,
            },
        }
    }
}

impl Decision for SalePart<'_> {
    type Output = PartOutcome;
    type Error = StoreError;

    fn attempt(&mut self, at: &str) -> Result<Attempt, StoreError> {
        self.results = self.results();
        let oversold = self.results.iter().any(|r| r.short > 0);
        let mut writes = Vec::with_capacity(2 * self.lines.len());
        for (i, ((line, expect), r)) in self
            .lines
            .iter()
            .zip(&self.expects)
            .zip(&self.results)
            .enumerate()
        {
            writes.push(self.take(line, *expect));
            let mut entry = LedgerEntry::new(
                at,
                &line.sku,
                &line.location,
                -i64::from(r.taken),
                ReasonCode::Sale,
                &self.reference,
                self.actor,
            );
            entry.requested = Some(i64::from(r.requested));
            entry.short = Some(i64::from(r.short));
            writes.push(Write::Ledger {
                entry,
                seq: format!("{}.{i}", self.part),
            });
        }
        let status = if oversold { "oversold" } else { "applied" };
        let mut fields = lines_fields(status, &self.results, &self.fingerprint)?;
        fields.extend([
            ("channel", self.order.channel.clone()),
            ("source", self.order.source.clone()),
            ("order", self.order.order_id.clone()),
        ]);
        let receipt = keys::receipt_item(
            ReceiptKind::Order,
            &self.order.receipt_key(),
            keys::part(self.part),
        );
        Ok(Attempt::receipted(at, receipt, fields, writes))
    }

    fn applied(self) -> PartOutcome {
        self.hints.committed(self.lines, &self.expects);
        PartOutcome::Applied(self.results)
    }

    fn duplicate(self, stored: StoredReceipt) -> Result<PartOutcome, StoreError> {
        stored
            .replayed_lines(&self.fingerprint, "order")
            .map(PartOutcome::Duplicate)
    }

    fn refine(&mut self, failed: &[Failed]) -> Next {
        let mut refined = false;
        for f in failed {
            // Writes alternate: line i's take at 2i, its ledger entry at 2i + 1.
            let (Some(line), Current::Level(seen)) = (self.lines.get(f.index / 2), &f.current) else {
                continue;
            };
            let available = seen.as_ref().map(|l| l.available);
            self.expects[f.index / 2] = Expect::from_available(available, line.quantity.as_i64());
            self.hints.learn(line, available);
            refined = true;
        }
        Next::learnt(refined)
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

    fn order(lines: &[(&str, i64)]) -> Order {
        Order {
            source: "pos".into(),
            order_id: "T-1".into(),
            channel: "pos".into(),
            lines: lines
                .iter()
                .map(|(sku, q)| OrderLine {
                    sku: Sku::parse(sku).unwrap(),
                    location: Location::parse("warehouse").unwrap(),
                    quantity: Quantity::new(*q).unwrap(),
                })
                .collect(),
            skipped: Vec::new(),
        }
    }

    fn level(available: i64) -> Current {
        Current::Level(Some(crate::level::LevelView {
            available,
            ..Default::default()
        }))
    }

    #[test]
    fn a_sale_expects_cover_then_takes_exactly_what_a_failed_condition_saw() {
        let (o, actor, hints) = (
            order(&[("A", 3), ("B", 2), ("C", 1)]),
            Actor::system("channel:pos"),
            LevelHints::default(),
        );
        let mut part = SalePart::all(&o, &actor, &hints).remove(0);
        let t = "2026-11-22T10:00:00.000000Z";
        let a = part.attempt(t).unwrap();
        assert_eq!(a.receipt.key.pk, "RECEIPT#order#pos#T-1");
        assert_eq!(a.writes.len(), 6);
        let Write::Level(w) = &a.writes[0] else {
            panic!("{a:?}")
        };
        assert_eq!(
            (w.condition, &w.effect),
            (LevelCondition::Any, &LevelEffect::Take(3))
        );
        // A has 1 left, B has no level, C was covered: the next attempt takes
        // A's one unit (if it is still exactly 1) and checks B is still missing.
        let failed = [
            Failed {
                index: 0,
                current: level(1),
            },
            Failed {
                index: 2,
                current: Current::Level(None),
            },
        ];
        assert_eq!(part.refine(&failed), Next::Retry);
        let a = part.attempt(t).unwrap();
        let Write::Level(w) = &a.writes[0] else {
            panic!("{a:?}")
        };
        assert_eq!(w.condition, LevelCondition::Exactly(1));
        assert_eq!(
            w.effect,
            LevelEffect::Set {
                available: 0,
                count: None
            }
        );
        assert!(matches!(
            &a.writes[2],
            Write::Check {
                condition: LevelCondition::Missing,
                ..
            }
        ));
        let Write::Ledger { entry, seq } = &a.writes[1] else {
            panic!()
        };
        assert_eq!(
            (entry.delta, entry.requested, entry.short, seq.as_str()),
            (-1, Some(3), Some(2), "0.0")
        );
        assert_eq!(a.receipt.fields[0], ("status", "oversold".to_owned()));
        // A conflict teaches nothing: wait and try again.
        assert_eq!(part.refine(&[]), Next::Wait);
        let PartOutcome::Applied(lines) = part.applied() else {
            panic!()
        };
        assert_eq!(lines.iter().map(|l| l.taken).collect::<Vec<_>>(), [1, 0, 1]);
        // The instance remembers A sold out and B missing for the next order.
        assert_eq!(hints.expect(&o.lines[0]), Expect::Exactly(0));
        assert_eq!(hints.expect(&o.lines[1]), Expect::Missing);
    }

    #[test]
    fn an_order_is_duplicate_only_when_every_part_was() {
        let o = order(&[("A", 1)]);
        let line = |short| LineResult {
            sku: "A".into(),
            location: "warehouse".into(),
            requested: 1,
            taken: 1 - short,
            short,
        };
        let status = |parts| SaleOutcome::from_parts(&o, parts).status;
        assert_eq!(
            status(vec![PartOutcome::Duplicate(vec![line(0)])]),
            SaleStatus::Duplicate
        );
        assert_eq!(
            status(vec![
                PartOutcome::Duplicate(vec![line(1)]),
                PartOutcome::Applied(vec![line(0)])
            ]),
            SaleStatus::Oversold
        );
        assert_eq!(
            status(vec![PartOutcome::Applied(vec![line(0)])]),
            SaleStatus::Applied
        );
        // Orders of more than 49 lines are split into parts.
        let many: Vec<(String, i64)> = (0..50).map(|i| (format!("S{i}"), 1)).collect();
        let many: Vec<(&str, i64)> = many.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let big = order(&many);
        let (actor, hints) = (Actor::system("channel:pos"), LevelHints::default());
        let parts = SalePart::all(&big, &actor, &hints);
        assert_eq!(parts.len(), 2);
    }
}
