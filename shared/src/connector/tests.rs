use std::collections::BTreeMap;

use super::*;
use crate::channels::{Cause, ChannelMessage, Channels};

const SHOP: &str = "demo.myshopify.com";

fn connector() -> Connector {
    Connector {
        channel: "web".into(),
        shop: SHOP.into(),
        location_id: 1001,
        policy: EditPolicy::Revert,
        mode: Mode::Live,
    }
}

fn message(available: i64, sequence: u64, sold: i64) -> ChannelMessage {
    ChannelMessage {
        sku: "JACKET-BLUE".into(),
        channel: "web".into(),
        available,
        sequence,
        at: "2026-11-27T10:00:00Z".into(),
        cause: Cause {
            reason: "sale".into(),
            reference: "order:x/1".into(),
        },
        sold: BTreeMap::from([(SHOP.to_owned(), sold), ("channel:pos".to_owned(), 40)]),
        resync: false,
    }
}

fn mapped(set: Option<i64>, sold_at_set: i64, owed_at_set: i64, sequence: u64) -> SyncState {
    SyncState {
        sku: "JACKET-BLUE".into(),
        mapping: Mapping::Mapped,
        item: Some("gid://shopify/InventoryItem/7".into()),
        set,
        sold_at_set,
        owed_at_set,
        sequence,
        ..SyncState::default()
    }
}

fn push(due: Due) -> Push {
    match due {
        Due::Set(p) => p,
        other => panic!("expected a push, got {other:?}"),
    }
}

#[test]
fn connectors_parse_and_refuse_what_they_cannot_use() {
    let channels = Channels::parse("web=warehouse,pos=downtown").unwrap();
    let c = Connectors::parse("web=shopify:Demo.myshopify.com@1001/adopt", &channels).unwrap();
    let web = c.of_channel("web").unwrap();
    assert_eq!(
        (web.shop.as_str(), web.location_id, web.policy),
        ("demo.myshopify.com", 1001, EditPolicy::Adopt)
    );
    assert_eq!(web.location_gid(), "gid://shopify/Location/1001");
    assert_eq!(
        c.at("DEMO.myshopify.com", 1001).map(|c| c.channel.as_str()),
        Some("web")
    );
    assert!(c.at(SHOP, 1002).is_none());
    // The policy defaults to revert; nothing configured is no connector.
    let c = Connectors::parse(" web = shopify:demo.myshopify.com@1001 ", &channels).unwrap();
    assert_eq!(c.of_channel("web").unwrap().policy, EditPolicy::Revert);
    assert_eq!(c.of_channel("web").unwrap().mode, Mode::Live);
    let c = Connectors::parse("web=shopify:demo.myshopify.com@1001/shadow/adopt", &channels).unwrap();
    let web = c.of_channel("web").unwrap();
    assert_eq!((web.mode, web.policy), (Mode::Shadow, EditPolicy::Adopt));
    assert_eq!(Connectors::parse("", &channels).unwrap().iter().count(), 0);
    for bad in [
        "kiosk=shopify:demo.myshopify.com@1",
        "web=amazon:demo@1",
        "web=shopify:demo.example.com@1",
        "web=shopify:demo.myshopify.com@x",
        "web=shopify:demo.myshopify.com",
        "web=shopify:demo.myshopify.com@1/ignore",
        "web=shopify:demo.myshopify.com@1/revert/dark",
        "web=shopify:a.myshopify.com@1,web=shopify:b.myshopify.com@2",
        "web",
    ] {
        assert!(Connectors::parse(bad, &channels).is_err(), "{bad} was accepted");
    }
}

#[test]
fn the_first_figure_is_read_before_it_is_set_and_a_sku_must_be_mapped() {
    let c = connector();
    let unknown = SyncState::default();
    assert_eq!(plan_push(&c, &unknown, &message(5, 3, 0), None), Due::Lookup);
    let none = SyncState {
        mapping: Mapping::Unmapped,
        ..SyncState::default()
    };
    assert_eq!(
        plan_push(&c, &none, &message(5, 3, 0), None),
        Due::Unsendable(Mapping::Unmapped)
    );
    let two = SyncState {
        mapping: Mapping::Duplicate,
        ..SyncState::default()
    };
    assert_eq!(
        plan_push(&c, &two, &message(5, 3, 0), None),
        Due::Unsendable(Mapping::Duplicate)
    );
    let never_set = mapped(None, 0, 0, 0);
    assert_eq!(plan_push(&c, &never_set, &message(5, 3, 0), None), Due::Read);
    let p = push(plan_push(&c, &never_set, &message(5, 3, 0), Some(9)));
    assert_eq!((p.quantity, p.change_from, p.owed), (5, 9, 0));
}

#[test]
fn a_message_at_or_below_the_decided_sequence_changes_nothing() {
    let c = connector();
    let s = mapped(Some(5), 0, 0, 7);
    assert_eq!(plan_push(&c, &s, &message(3, 7, 0), None), Due::Stale);
    assert_eq!(plan_push(&c, &s, &message(3, 6, 0), None), Due::Stale);
    assert_eq!(push(plan_push(&c, &s, &message(3, 8, 0), None)).quantity, 3);
}

#[test]
fn a_figure_is_never_negative() {
    assert_eq!(target(-2, 0), 0);
    assert_eq!(target(3, 5), 0);
    let c = connector();
    let p = push(plan_push(&c, &mapped(Some(1), 0, 0, 1), &message(-4, 2, 0), None));
    assert_eq!(p.quantity, 0);
}

/// The race the connector exists for: the channel sells before its order
/// reaches the master, and a change made elsewhere is pushed meanwhile.
#[test]
fn a_sale_on_the_channel_the_master_has_not_recorded_is_never_handed_out_again() {
    let c = connector();
    // Stockroom set 10; the master had recorded 4 of the shop's sales then.
    let mut s = mapped(Some(10), 4, 0, 1);
    // The shop sells 1: its figure is 9 at once; the order is on its way.
    // A POS sale drops the master to 9 (sold by the shop still 4).
    let first = push(plan_push(&c, &s, &message(9, 2, 4), None));
    assert_eq!((first.quantity, first.change_from), (9, 10));
    // The write is stale (the channel shows 9): read, decide again.
    let again = push(plan_push(&c, &s, &message(9, 2, 4), Some(9)));
    assert_eq!((again.owed, again.quantity, again.change_from), (1, 8, 9));
    s.pushed(&again, "t1");
    // The order arrives: the master takes it (8) and has recorded 5 sales.
    let after = push(plan_push(&c, &s, &message(8, 3, 5), None));
    assert_eq!((after.owed, after.quantity, after.change_from), (0, 8, 8));
    s.pushed(&after, "t2");
    // The shop sells 2 more and one order of them arrives first (master 7,
    // recorded 6) while the channel shows 6: one sale is still owed.
    let mixed = push(plan_push(&c, &s, &message(7, 4, 6), Some(6)));
    assert_eq!((mixed.owed, mixed.quantity), (1, 6));
}

#[test]
fn a_rise_on_the_channel_is_not_credited_to_the_master() {
    let c = connector();
    // Someone raised the channel from 5 to 9: nothing is owed, the figure is the master's.
    let s = mapped(Some(5), 0, 0, 1);
    let p = push(plan_push(&c, &s, &message(5, 2, 0), Some(9)));
    assert_eq!((p.owed, p.quantity, p.change_from), (0, 5, 9));
}

#[test]
fn the_idempotency_key_follows_what_is_written() {
    let c = connector();
    let s = mapped(Some(10), 0, 0, 1);
    let a = push(plan_push(&c, &s, &message(9, 2, 0), None));
    let b = push(plan_push(&c, &s, &message(9, 2, 0), Some(9)));
    let key = idempotency_key("web", std::slice::from_ref(&a));
    assert_eq!(key, idempotency_key("web", std::slice::from_ref(&a)));
    assert!(key.starts_with("stockroom-") && key.len() <= 64);
    assert_ne!(key, idempotency_key("web", &[b]));
    assert_ne!(key, idempotency_key("pos", &[a]));
}

#[test]
fn a_figure_seen_on_the_channel_is_judged_against_what_stockroom_set_and_recorded() {
    let s = mapped(Some(10), 4, 0, 1);
    assert_eq!(judge_edit(Some(&s), false, 3, 4), Verdict::Unmanaged);
    assert_eq!(judge_edit(None, true, 3, 4), Verdict::Unsynced);
    assert_eq!(
        judge_edit(Some(&mapped(None, 0, 0, 0)), true, 3, 4),
        Verdict::Unsynced
    );
    assert_eq!(judge_edit(Some(&s), true, 10, 4), Verdict::Echo);
    // Two sold on the channel and both recorded: explained.
    assert_eq!(judge_edit(Some(&s), true, 8, 6), Verdict::Explained);
    // Two sold, one recorded: a manager's edit of -1 as far as anyone can tell.
    let v = judge_edit(Some(&s), true, 8, 5);
    assert_eq!(v, Verdict::Edit { before: 9, after: 8 });
    assert_eq!(v.delta(), -1);
    // Raised by hand from 10 to 14.
    let v = judge_edit(Some(&s), true, 14, 4);
    assert_eq!(
        v,
        Verdict::Edit {
            before: 10,
            after: 14
        }
    );
    assert_eq!(v.delta(), 4);
    // A sale owed at the last set and one since, both recorded now, explain the figure.
    let owing = mapped(Some(8), 4, 1, 1);
    assert_eq!(judge_edit(Some(&owing), true, 7, 6), Verdict::Explained);
    assert_eq!(judge_edit(Some(&owing), true, 8, 5), Verdict::Echo);
}

#[test]
fn a_state_remembers_its_base_after_a_push_or_a_read() {
    let c = connector();
    let mut s = mapped(Some(10), 0, 0, 1);
    let p = push(plan_push(&c, &s, &message(6, 5, 2), Some(8)));
    s.pushed(&p, "t");
    assert_eq!(
        (s.set, s.sold_at_set, s.owed_at_set, s.sequence, s.expected),
        (Some(6), 2, 0, 5, Some(6))
    );
    s.rebased(4, 3, 1, "u");
    assert_eq!((s.set, s.sold_at_set, s.owed_at_set), (Some(4), 3, 1));
}

#[test]
fn the_grace_period_is_seconds_sqs_can_delay() {
    assert_eq!(parse_grace(None).unwrap(), 60);
    assert_eq!(parse_grace(Some(" 5 ")).unwrap(), 5);
    assert!(parse_grace(Some("901")).is_err());
    assert!(parse_grace(Some("-1")).is_err());
    assert!(parse_grace(Some("soon")).is_err());
}

#[test]
fn a_resync_is_applied_at_a_seen_sequence_and_reads_the_channel_first() {
    let c = connector();
    let s = mapped(Some(5), 0, 0, 7);
    let mut m = message(5, 7, 0);
    assert_eq!(plan_push(&c, &s, &m, None), Due::Stale);
    m.resync = true;
    assert_eq!(plan_push(&c, &s, &m, None), Due::Read);
    let p = push(plan_push(&c, &s, &m, Some(2)));
    assert_eq!((p.quantity, p.change_from), (5, 2));
}
