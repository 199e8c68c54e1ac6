//! An edit seen on a channel, recorded: a ledger entry (and, under the
//! `adopt` policy, the master's level moved by the same units), once per
//! edit whatever redelivers it.

use crate::domain::{Actor, Location, ReasonCode, Sku};
use crate::keys::{self, ReceiptKind};
use crate::level::{LedgerEntry, LevelView};
use crate::port::{
    Attempt, Current, Decision, Failed, LevelCondition, LevelEffect, LevelReads, LevelWrite, Next,
    StoreError, StoredReceipt, Write,
};

use super::EditPolicy;

/// An edit made on a channel, as the connector judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEdit {
    pub channel: String,
    pub sku: Sku,
    /// The master's location the channel's figure comes from.
    pub location: Location,
    /// The channel's figure had nobody edited it, and after the edit.
    pub before: i64,
    pub after: i64,
    pub policy: EditPolicy,
    /// The channel's inventory level (e.g. `gid://shopify/InventoryLevel/1001?inventory_item_id=7`).
    pub level: String,
    /// When the channel says the level changed: with the level, it keys the receipt.
    pub updated_at: String,
    pub actor: Actor,
}

impl ChannelEdit {
    fn receipt_key(&self) -> String {
        format!("{}#{}#{}", self.channel, self.level, self.updated_at)
    }
}

/// What recording an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditRecorded {
    /// Units the master's level moved (adopt; 0 under revert).
    pub master_delta: i64,
    /// This edit was recorded before: nothing was written now.
    pub duplicate: bool,
}

/// Records a [`ChannelEdit`] through the store port.
pub struct EditDecision<'a> {
    edit: &'a ChannelEdit,
    level: Option<LevelView>,
    delta: i64,
}

impl<'a> EditDecision<'a> {
    pub fn new(edit: &'a ChannelEdit) -> Self {
        Self {
            edit,
            level: None,
            delta: 0,
        }
    }
}

/// What adopting an edit of `delta` units does to a level showing `available`:
/// the same units, never below zero.
pub fn adopted(available: i64, delta: i64) -> i64 {
    (available + delta).max(0)
}

impl Decision for EditDecision<'_> {
    type Output = EditRecorded;
    type Error = StoreError;

    async fn prepare<R: LevelReads>(&mut self, reads: &R) -> Result<(), StoreError> {
        if self.edit.policy == EditPolicy::Adopt {
            self.level = reads.level(&self.edit.sku, &self.edit.location).await?;
        }
        Ok(())
    }

    fn attempt(&mut self, at: &str) -> Result<Attempt, StoreError> {
        let e = self.edit;
        let reference = format!("channel_edit:{}/{}", e.channel, e.level);
        let mut writes = Vec::with_capacity(2);
        let channel_delta = e.after - e.before;
        let note = match e.policy {
            EditPolicy::Revert => format!(
                "{} was set from {} to {} in the channel's admin; reverted to the master's figure",
                e.channel, e.before, e.after
            ),
            EditPolicy::Adopt => format!(
                "{} was set from {} to {} in the channel's admin; adopted by the master",
                e.channel, e.before, e.after
            ),
        };
        self.delta = 0;
        if e.policy == EditPolicy::Adopt {
            let available = self.level.as_ref().map_or(0, |l| l.available);
            let after = adopted(available, channel_delta);
            self.delta = after - available;
            if self.delta != 0 {
                writes.push(Write::Level(LevelWrite {
                    sku: e.sku.clone(),
                    location: e.location.clone(),
                    condition: match &self.level {
                        Some(l) => LevelCondition::Version(l.version),
                        None => LevelCondition::Missing,
                    },
                    effect: LevelEffect::Set {
                        available: after,
                        count: None,
                    },
                    reason: ReasonCode::ChannelEdit,
                    reference: reference.clone(),
                    sold: None,
                }));
            }
        }
        let entry = LedgerEntry::new(
            at,
            &e.sku,
            &e.location,
            self.delta,
            ReasonCode::ChannelEdit,
            &reference,
            &e.actor,
        )
        .before_after(e.before, e.after)
        .note(Some(note));
        writes.push(Write::Ledger {
            entry,
            seq: "0".into(),
        });
        Ok(Attempt::receipted(
            at,
            keys::receipt_item(ReceiptKind::ChannelEdit, &e.receipt_key(), keys::part(0)),
            vec![("master_delta", self.delta.to_string())],
            writes,
        ))
    }

    fn applied(self) -> EditRecorded {
        EditRecorded {
            master_delta: self.delta,
            duplicate: false,
        }
    }

    fn duplicate(self, stored: StoredReceipt) -> Result<EditRecorded, StoreError> {
        Ok(EditRecorded {
            master_delta: stored
                .get("master_delta")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            duplicate: true,
        })
    }

    fn refine(&mut self, failed: &[Failed]) -> Next {
        match failed.first().map(|f| &f.current) {
            Some(Current::Level(seen)) => {
                self.level = seen.clone();
                Next::Retry
            }
            _ => Next::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(policy: EditPolicy, before: i64, after: i64) -> ChannelEdit {
        ChannelEdit {
            channel: "web".into(),
            sku: Sku::parse("JACKET").unwrap(),
            location: Location::parse("warehouse").unwrap(),
            before,
            after,
            policy,
            level: "gid://shopify/InventoryLevel/1001?inventory_item_id=7".into(),
            updated_at: "2026-11-27T10:00:00-05:00".into(),
            actor: Actor::system("shopify:demo.myshopify.com"),
        }
    }

    fn ledger(a: &Attempt) -> &LedgerEntry {
        a.writes
            .iter()
            .find_map(|w| match w {
                Write::Ledger { entry, .. } => Some(entry),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn a_reverted_edit_is_a_ledger_entry_and_moves_nothing() {
        let e = edit(EditPolicy::Revert, 10, 4);
        let mut d = EditDecision::new(&e);
        let a = d.attempt("2026-11-27T15:00:00Z").unwrap();
        assert_eq!(a.writes.len(), 1);
        let l = ledger(&a);
        assert_eq!((l.delta, l.before, l.after), (0, Some(10), Some(4)));
        assert_eq!(
            (l.reason.as_str(), l.actor.as_str()),
            ("channel_edit", "shopify:demo.myshopify.com")
        );
        assert!(l.reference.contains("InventoryLevel/1001"));
        assert!(l.note.as_deref().unwrap().contains("reverted"));
        assert!(a
            .receipt
            .key
            .pk
            .starts_with("RECEIPT#channel_edit#web#gid://shopify/InventoryLevel/1001"));
    }

    #[test]
    fn an_adopted_edit_moves_the_master_by_the_same_units_never_below_zero() {
        let e = edit(EditPolicy::Adopt, 10, 4);
        let mut d = EditDecision::new(&e);
        d.level = Some(LevelView {
            available: 8,
            version: 3,
            ..LevelView::default()
        });
        let a = d.attempt("t").unwrap();
        match &a.writes[0] {
            Write::Level(w) => {
                assert_eq!(w.condition, LevelCondition::Version(3));
                assert_eq!(
                    w.effect,
                    LevelEffect::Set {
                        available: 2,
                        count: None
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ledger(&a).delta, -6);
        // A level with less than the edit took: down to zero only.
        assert_eq!(adopted(3, -6), 0);
        assert_eq!(adopted(3, 4), 7);
        d.level = Some(LevelView {
            available: 2,
            version: 4,
            ..LevelView::default()
        });
        let a = d.attempt("t").unwrap();
        assert_eq!(ledger(&a).delta, -2);
        assert_eq!(d.applied().master_delta, -2);
    }
}
