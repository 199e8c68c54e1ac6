//! A processed return, whatever sent it (Shopify `refunds/create`, the generic
//! "return processed" event: see [`crate::wire`]), and what it puts back.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::{InvalidInput, Location, Quantity, Sku};
use crate::sale::SkippedLine;

/// The generic event's `source` when it names none.
pub const DEFAULT_RETURN_SOURCE: &str = "returns";

/// What happens to one returned line's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Back on the shelf: the units go back to `available`
    /// (Shopify `return` and `legacy_restock`; generic `resellable`).
    Resellable,
    /// A cancelled order's units go back to `available`, but never more than
    /// Stockroom's record of that order took (Shopify `cancel`).
    Cancelled,
    /// Counted on the level as damaged, never sellable (generic `damaged`).
    Damaged,
    /// Refunded without restocking: recorded, no stock moves (Shopify `no_restock`).
    NotRestocked,
}

/// Units by disposition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units {
    pub resellable: u32,
    pub cancelled: u32,
    pub damaged: u32,
    pub not_restocked: u32,
}

impl Units {
    /// Every unit, whatever happens to it.
    pub fn total(&self) -> u32 {
        self.resellable + self.cancelled + self.damaged + self.not_restocked
    }

    fn slot(&mut self, d: Disposition) -> &mut u32 {
        match d {
            Disposition::Resellable => &mut self.resellable,
            Disposition::Cancelled => &mut self.cancelled,
            Disposition::Damaged => &mut self.damaged,
            Disposition::NotRestocked => &mut self.not_restocked,
        }
    }
}

/// The units of one SKU at one location a return carries. Lines for the same
/// SKU and location are merged (one transaction cannot touch an item twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnLine {
    pub sku: Sku,
    pub location: Location,
    pub units: Units,
}

/// Which webhook a return came from: it names the reference in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    /// A Shopify refund: reference `refund:<shop>/<refund id>`.
    ShopifyRefund,
    /// A generic "return processed" event: reference `return:<source>/<return id>`.
    Processed,
}

/// A processed return, whatever sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub kind: ReturnKind,
    /// Shop domain (Shopify) or the event's `source`: with `return_id` it keys the receipt.
    pub source: String,
    /// Refund id (Shopify) or `return_id` (generic).
    pub return_id: String,
    /// The order refunded (Shopify), which bounds what a cancel may restock.
    pub order_id: Option<String>,
    /// Merged by (sku, location), in order of first appearance.
    pub lines: Vec<ReturnLine>,
    pub skipped: Vec<SkippedLine>,
}

impl Return {
    /// The idempotency key: the same source and id is the same return,
    /// whichever delivery brought it.
    pub fn receipt_key(&self) -> String {
        format!("{}#{}", self.source, self.return_id)
    }

    /// The reference written to the ledger and the levels.
    pub fn reference(&self) -> String {
        let scheme = match self.kind {
            ReturnKind::ShopifyRefund => "refund",
            ReturnKind::Processed => "return",
        };
        format!("{scheme}:{}/{}", self.source, self.return_id)
    }

    /// The key of the sale receipt of the order this return refunds.
    pub fn order_receipt_key(&self) -> Option<String> {
        self.order_id.as_ref().map(|o| format!("{}#{o}", self.source))
    }
}

/// Adds a line's units, merged with an earlier line for the same SKU and
/// location (one transaction cannot touch an item twice).
pub(crate) fn add_units(
    lines: &mut Vec<ReturnLine>,
    sku: Sku,
    location: Location,
    disposition: Disposition,
    units: Quantity,
) -> Result<(), InvalidInput> {
    let index = match lines.iter().position(|l| l.sku == sku && l.location == location) {
        Some(i) => i,
        None => {
            lines.push(ReturnLine {
                sku,
                location,
                units: Units::default(),
            });
            lines.len() - 1
        }
    };
    let line = &mut lines[index];
    if i64::from(line.units.total()) + units.as_i64() > i64::from(Quantity::MAX) {
        return Err(InvalidInput::field(
            "quantity",
            format!(
                "sku {}: more than {} units in one return",
                line.sku,
                Quantity::MAX
            ),
        ));
    }
    *line.units.slot(disposition) += units.get();
    Ok(())
}

/// The outcome of one returned SKU at one location, as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLineResult {
    pub sku: String,
    pub location: String,
    /// Every unit the return carried for this SKU and location.
    pub quantity: u32,
    /// Units put back into `available`.
    pub restocked: u32,
    /// Units added to the damaged count.
    pub damaged: u32,
    /// Why some units did not go back, when that is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// Stock moved.
    Applied,
    /// This return was processed before: nothing changed; the original lines.
    Duplicate,
    /// Recorded, but nothing goes back on the shelf (e.g. `no_restock`).
    NothingToRestock,
}

/// The answer to a return webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnOutcome {
    #[serde(rename = "return")]
    pub return_id: String,
    pub status: ReturnStatus,
    pub lines: Vec<ReturnLineResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedLine>,
}

impl ReturnOutcome {
    pub fn restocked_units(&self) -> u32 {
        self.lines.iter().map(|l| l.restocked).sum()
    }

    pub fn damaged_units(&self) -> u32 {
        self.lines.iter().map(|l| l.damaged).sum()
    }
}

/// What Stockroom's record of the refunded order allows a cancel to put back.
#[derive(Debug, Default)]
pub struct CancelBook {
    /// Units the recorded sale took, per SKU.
    pub taken: HashMap<Sku, i64>,
    /// Units earlier cancels put back, per SKU (`None`: no counter yet).
    pub done: HashMap<Sku, Option<i64>>,
}

impl CancelBook {
    pub fn remaining(&self, sku: &Sku) -> i64 {
        let taken = self.taken.get(sku).copied().unwrap_or(0);
        let done = self.done.get(sku).copied().flatten().unwrap_or(0);
        (taken - done).max(0)
    }
}

/// One line's plan: what goes where, and why the rest does not.
pub struct Planned {
    pub result: ReturnLineResult,
    pub cancel_restocked: u32,
}

pub fn plan(chunk: &[ReturnLine], book: Option<&CancelBook>, order: Option<&str>) -> Vec<Planned> {
    let mut left: HashMap<&Sku, i64> = HashMap::new();
    chunk
        .iter()
        .map(|l| {
            let u = l.units;
            let cancel_restocked = match book {
                None => u.cancelled,
                Some(book) => {
                    let left = left.entry(&l.sku).or_insert_with(|| book.remaining(&l.sku));
                    let take = i64::from(u.cancelled).min(*left);
                    *left -= take;
                    take as u32
                }
            };
            let mut notes = Vec::new();
            if cancel_restocked < u.cancelled {
                notes.push(format!(
                    "{} cancelled unit(s) not restocked: order {} took only what it could from stock",
                    u.cancelled - cancel_restocked,
                    order.unwrap_or("?")
                ));
            }
            if u.not_restocked > 0 {
                notes.push(format!("{} unit(s) refunded without restock", u.not_restocked));
            }
            Planned {
                result: ReturnLineResult {
                    sku: l.sku.to_string(),
                    location: l.location.to_string(),
                    quantity: u.total(),
                    restocked: u.resellable + cancel_restocked,
                    damaged: u.damaged,
                    note: (!notes.is_empty()).then(|| notes.join("; ")),
                },
                cancel_restocked,
            }
        })
        .collect()
}

use crate::domain::{Actor, ReasonCode};
use crate::keys::{self, ReceiptKind};
use crate::level::LedgerEntry;
use crate::port::{
    lines_fields, Attempt, Current, Decision, Failed, LevelCondition, LevelEffect, LevelWrite, Next,
    StoreError, StoredReceipt, Write,
};

/// Return lines per transaction: a level update, a ledger entry and at most
/// one cancel counter each, plus the receipt.
pub const LINES_PER_RETURN_TRANSACTION: usize = (crate::sale::MAX_TRANSACTION_ACTIONS - 1) / 3;

impl ReturnOutcome {
    /// The answer for a return from its parts (`true`: recorded before):
    /// `duplicate` when every part was, else `applied` when any unit moved,
    /// else `nothing_to_restock`.
    pub fn from_parts(ret: &Return, parts: Vec<(bool, Vec<ReturnLineResult>)>) -> Self {
        let all_duplicate = parts.iter().all(|(duplicate, _)| *duplicate);
        let lines: Vec<ReturnLineResult> = parts.into_iter().flat_map(|(_, l)| l).collect();
        let status = if all_duplicate {
            ReturnStatus::Duplicate
        } else if lines.iter().any(|l| l.restocked + l.damaged > 0) {
            ReturnStatus::Applied
        } else {
            ReturnStatus::NothingToRestock
        };
        Self {
            return_id: ret.return_id.clone(),
            status,
            lines,
            skipped: ret.skipped.clone(),
        }
    }
}

/// One part of a return as one transaction: the receipt
/// (`RECEIPT#return#<source>#<id>`), an unconditional `ADD` on each level
/// (a restock can never take a level below zero, and it creates the level of
/// a SKU never seen), a ledger entry per line, and for a Shopify `cancel` a
/// compare-and-set on the order's running count of cancelled units, so a
/// cancel never puts back more than the recorded sale took.
#[derive(Debug)]
pub struct ReturnPart<'a> {
    ret: &'a Return,
    part: usize,
    lines: &'a [ReturnLine],
    actor: &'a Actor,
    /// The refunded order's sale receipt and what its record allows.
    book: Option<(&'a str, &'a mut CancelBook)>,
    fingerprint: String,
    results: Vec<ReturnLineResult>,
    /// Each cancel counter's place among the writes, and its SKU.
    counters: Vec<(usize, Sku)>,
}

impl<'a> ReturnPart<'a> {
    /// Part `part` of a return: `lines` (at most [`LINES_PER_RETURN_TRANSACTION`];
    /// none for a return with no stock lines, which is still recorded).
    pub fn new(
        ret: &'a Return,
        part: usize,
        lines: &'a [ReturnLine],
        actor: &'a Actor,
        book: Option<(&'a str, &'a mut CancelBook)>,
    ) -> Self {
        Self {
            ret,
            part,
            lines,
            actor,
            book,
            fingerprint: crate::sha256_hex(
                &lines
                    .iter()
                    .map(|l| format!("{}|{}|{:?}\n", l.sku, l.location, l.units))
                    .collect::<String>(),
            ),
            results: Vec::new(),
            counters: Vec::new(),
        }
    }
}

impl Decision for ReturnPart<'_> {
    type Output = (bool, Vec<ReturnLineResult>);
    type Error = StoreError;

    fn attempt(&mut self, at: &str) -> Result<Attempt, StoreError> {
        let reference = self.ret.reference();
        let planned = plan(
            self.lines,
            self.book.as_ref().map(|(_, b)| &**b),
            self.ret.order_id.as_deref(),
        );
        self.results = planned.iter().map(|p| p.result.clone()).collect();
        let moved = self.results.iter().any(|r| r.restocked + r.damaged > 0);
        let mut writes = Vec::with_capacity(3 * self.lines.len());
        for (i, (line, p)) in self.lines.iter().zip(&planned).enumerate() {
            let r = &p.result;
            if r.restocked + r.damaged > 0 {
                writes.push(Write::Level(LevelWrite {
                    sku: line.sku.clone(),
                    location: line.location.clone(),
                    condition: LevelCondition::Any,
                    effect: LevelEffect::Add {
                        available: i64::from(r.restocked),
                        damaged: i64::from(r.damaged),
                    },
                    reason: ReasonCode::Return,
                    reference: reference.clone(),
                    sold: None,
                }));
            }
            let mut entry = LedgerEntry::new(
                at,
                &line.sku,
                &line.location,
                i64::from(r.restocked),
                ReasonCode::Return,
                &reference,
                self.actor,
            )
            .note(r.note.clone());
            entry.damaged = (r.damaged > 0).then_some(i64::from(r.damaged));
            writes.push(Write::Ledger {
                entry,
                seq: format!("{}.{i}", self.part),
            });
        }
        // One counter per SKU cancelled in this part: a compare-and-set.
        self.counters.clear();
        if let Some((order, book)) = &self.book {
            let mut cancelled: Vec<(&Sku, i64)> = Vec::new();
            for (line, p) in self.lines.iter().zip(&planned) {
                if p.cancel_restocked == 0 {
                    continue;
                }
                match cancelled.iter_mut().find(|(s, _)| *s == &line.sku) {
                    Some((_, units)) => *units += i64::from(p.cancel_restocked),
                    None => cancelled.push((&line.sku, i64::from(p.cancel_restocked))),
                }
            }
            for (sku, units) in cancelled {
                let seen = book.done.get(sku).copied().flatten();
                self.counters.push((writes.len(), sku.clone()));
                writes.push(Write::CancelCounter {
                    order: (*order).to_owned(),
                    sku: sku.clone(),
                    seen,
                    to: seen.unwrap_or(0) + units,
                });
            }
        }
        let status = if moved { "applied" } else { "nothing_to_restock" };
        let fields = lines_fields(status, &self.results, &self.fingerprint)?;
        let receipt = keys::receipt_item(
            ReceiptKind::Return,
            &self.ret.receipt_key(),
            keys::part(self.part),
        );
        Ok(Attempt::receipted(at, receipt, fields, writes))
    }

    fn applied(self) -> Self::Output {
        (false, self.results)
    }

    fn duplicate(self, stored: StoredReceipt) -> Result<Self::Output, StoreError> {
        Ok((true, stored.replayed_lines(&self.fingerprint, "return")?))
    }

    fn refine(&mut self, failed: &[Failed]) -> Next {
        let mut refined = false;
        if let Some((_, book)) = self.book.as_mut() {
            for f in failed {
                let (Some((_, sku)), Current::Counter(seen)) =
                    (self.counters.iter().find(|(i, _)| *i == f.index), &f.current)
                else {
                    continue;
                };
                // Another cancel of the same order got there first.
                book.done.insert(sku.clone(), *seen);
                refined = true;
            }
        }
        Next::learnt(refined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, loc: &str, units: Units) -> ReturnLine {
        ReturnLine {
            sku: Sku::parse(sku).unwrap(),
            location: Location::parse(loc).unwrap(),
            units,
        }
    }

    #[test]
    fn cancels_restock_at_most_what_the_order_took_across_lines() {
        let cancel = |n| Units {
            cancelled: n,
            ..Units::default()
        };
        let chunk = [
            line("JKT", "warehouse", cancel(2)),
            line("JKT", "downtown", cancel(2)),
            line(
                "CAP",
                "warehouse",
                Units {
                    resellable: 1,
                    not_restocked: 1,
                    ..Units::default()
                },
            ),
        ];
        let mut book = CancelBook::default();
        book.taken.insert(Sku::parse("JKT").unwrap(), 3);
        book.done.insert(Sku::parse("JKT").unwrap(), Some(0));
        let p = plan(&chunk, Some(&book), Some("1001"));
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.result.restocked, p.cancel_restocked))
            .collect();
        assert_eq!(got, vec![(2, 2), (1, 1), (1, 0)]);
        assert!(p[1]
            .result
            .note
            .as_deref()
            .unwrap()
            .contains("1 cancelled unit(s) not restocked"));
        assert!(p[2]
            .result
            .note
            .as_deref()
            .unwrap()
            .contains("refunded without restock"));
        // Without a record of the order, a cancel restocks what the refund says.
        let p = plan(&chunk, None, Some("1001"));
        assert_eq!(p[1].result.restocked, 2);
        // Earlier cancels count against the sale.
        book.done.insert(Sku::parse("JKT").unwrap(), Some(3));
        assert_eq!(plan(&chunk, Some(&book), None)[0].result.restocked, 0);
    }

    #[test]
    fn a_cancel_moves_the_orders_counter_and_learns_from_a_racing_cancel() {
        let cancel = |n| Units {
            cancelled: n,
            ..Units::default()
        };
        let ret = Return {
            kind: ReturnKind::ShopifyRefund,
            source: "shop.myshopify.com".into(),
            return_id: "9".into(),
            order_id: Some("1001".into()),
            lines: vec![
                line("JKT", "warehouse", cancel(2)),
                line("JKT", "downtown", cancel(1)),
            ],
            skipped: Vec::new(),
        };
        let mut book = CancelBook::default();
        book.taken.insert(Sku::parse("JKT").unwrap(), 3);
        let actor = Actor::system("shopify:shop.myshopify.com");
        let order = "RECEIPT#order#shop.myshopify.com#1001";
        let mut part = ReturnPart::new(&ret, 0, &ret.lines, &actor, Some((order, &mut book)));
        let a = part.attempt("2026-11-22T10:00:00.000000Z").unwrap();
        // Two restocks, two ledger entries, one counter for the SKU: 0 -> 3.
        assert_eq!(a.writes.len(), 5);
        assert_eq!(
            a.writes[4],
            Write::CancelCounter {
                order: order.into(),
                sku: Sku::parse("JKT").unwrap(),
                seen: None,
                to: 3
            }
        );
        // Another cancel of the order put back 2 first: only 1 is left to restock.
        let failed = [Failed {
            index: 4,
            current: Current::Counter(Some(2)),
        }];
        assert_eq!(part.refine(&failed), Next::Retry);
        let a = part.attempt("2026-11-22T10:00:00.000000Z").unwrap();
        assert_eq!(
            a.writes.last(),
            Some(&Write::CancelCounter {
                order: order.into(),
                sku: Sku::parse("JKT").unwrap(),
                seen: Some(2),
                to: 3
            })
        );
        let (duplicate, lines) = part.applied();
        assert!(!duplicate);
        assert_eq!(lines.iter().map(|l| l.restocked).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(
            ReturnOutcome::from_parts(&ret, vec![(false, lines)]).status,
            ReturnStatus::Applied
        );
    }
}
