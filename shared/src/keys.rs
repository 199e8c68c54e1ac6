//! Every key in the stock table, built and read in one place.
//!
//! | item | pk | sk |
//! | --- | --- | --- |
//! | level | `SKU#<sku>` | `LEVEL#<location>` |
//! | ledger entry | `SKU#<sku>` | `LEDGER#<at>#<reference>#<n>` |
//! | published figure | `SKU#<sku>` | `CHANNEL#<channel>` |
//! | receipt | `RECEIPT#<kind>#<key>` | `PART#<nnnn>` |
//! | cancel counter | `RECEIPT#order#<key>` | `CANCELLED#<sku>` |
//! | feed chunk receipt | `RECEIPT#feed#<object>` | `CHUNK#<nnnnnnnn>` |
//! | feed state | `RECEIPT#feed#<object>` | `STATE` |
//! | consumer sequence | `CONSUMER#<channel>` | `SKU#<sku>` |
//! | connector state | `CONNECTOR#<channel>` | `SKU#<sku>` |
//! | channel mode, its changes, runs, drift rows | `CHANNEL#<channel>` | `MODE`, `MODE#<at>`, `RUN#<id>`, `LAST_RECONCILE`, `DRIFT#<run>#<sku>` |
//! | held feed marker | `FEEDS#held` | `<feed id>` |
//! | channel edit receipt | `RECEIPT#channel_edit#<channel>#<item>#<updated at>` | `PART#0000` |

use base64::Engine;

use crate::domain::{Location, Sku};

pub const LEVEL: &str = "LEVEL#";
pub const LEDGER: &str = "LEDGER#";
pub const CHANNEL: &str = "CHANNEL#";
pub const PART: &str = "PART#";
pub const CHUNK: &str = "CHUNK#";
pub const CANCELLED: &str = "CANCELLED#";
/// The sort key of a feed object's state.
pub const STATE: &str = "STATE";
const SKU: &str = "SKU#";

/// A table key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The partition of everything about one SKU: its levels, ledger and published figures.
pub fn sku(sku: impl std::fmt::Display) -> String {
    format!("{SKU}{sku}")
}

/// A stock level.
pub fn level(sku_: &Sku, location: &Location) -> Key {
    Key::new(sku(sku_), format!("{LEVEL}{location}"))
}

/// A ledger entry's sort key: by time, then reference, then its place in the change.
pub fn ledger(at: &str, reference: &str, seq: &str) -> String {
    format!("{LEDGER}{at}#{reference}#{seq}")
}

/// The first ledger sort key after every entry recorded at or before `at`.
pub fn ledger_after(at: &str) -> String {
    format!("{LEDGER}{at}~")
}

/// Past the last ledger sort key.
pub fn ledger_end() -> String {
    format!("{LEDGER}~")
}

/// What a channel was last sent for a SKU.
pub fn published(sku_: &Sku, channel: &str) -> Key {
    Key::new(sku(sku_), format!("{CHANNEL}{channel}"))
}

/// What a receipt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Order,
    Return,
    Adjustment,
    Feed,
    /// An edit seen on a channel, by its level and time.
    ChannelEdit,
}

impl ReceiptKind {
    fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Order => "order",
            ReceiptKind::Return => "return",
            ReceiptKind::Adjustment => "adjustment",
            ReceiptKind::Feed => "feed",
            ReceiptKind::ChannelEdit => "channel_edit",
        }
    }
}

/// The partition of one receipted thing (an order, a return, an adjustment, a feed object).
pub fn receipt(kind: ReceiptKind, key: &str) -> String {
    format!("RECEIPT#{}#{key}", kind.as_str())
}

/// One item of a receipted thing's partition.
pub fn receipt_item(kind: ReceiptKind, key: &str, sk: String) -> Key {
    Key::new(receipt(kind, key), sk)
}

/// One part of a receipt (an order of more than 49 lines has several).
pub fn part(n: usize) -> String {
    format!("{PART}{n:04}")
}

/// One chunk of a feed object.
pub fn chunk(n: u64) -> String {
    format!("{CHUNK}{n:08}")
}

/// An order's running count of units cancels put back for one SKU.
pub fn cancelled(sku: &Sku) -> String {
    format!("{CANCELLED}{sku}")
}

/// The highest sequence a channel consumer applied for a SKU.
pub fn consumer(channel: &str, sku: &str) -> Key {
    Key::new(format!("CONSUMER#{channel}"), format!("{SKU}{sku}"))
}

/// What a channel's connector keeps for a SKU.
pub fn sync(channel: &str, sku: &str) -> Key {
    Key::new(sync_partition(channel), format!("{SKU}{sku}"))
}

/// Every SKU a channel's connector keeps state for.
pub fn sync_partition(channel: &str) -> String {
    format!("CONNECTOR#{channel}")
}

/// A supplier file held for ops, by its feed id (`""`: the partition's key).
pub fn held_feed(feed: &str) -> Key {
    Key::new("FEEDS#held", feed.to_owned())
}

/// The partition of a channel's own records: its mode, its runs, their findings.
fn channel_partition(channel: &str) -> String {
    format!("{CHANNEL}{channel}")
}

/// A channel's mode.
pub fn channel_mode(channel: &str) -> Key {
    Key::new(channel_partition(channel), "MODE")
}

/// One change of a channel's mode, by its time (`""`: the prefix of them all).
pub fn channel_mode_change(channel: &str, at: &str) -> Key {
    Key::new(channel_partition(channel), format!("MODE#{at}"))
}

/// A run (reconcile, import, resync) of a channel.
pub fn channel_run(channel: &str, id: &str) -> Key {
    Key::new(channel_partition(channel), format!("RUN#{id}"))
}

/// Which reconcile of a channel finished last.
pub fn last_reconcile(channel: &str) -> Key {
    Key::new(channel_partition(channel), "LAST_RECONCILE")
}

/// What a reconcile found for one SKU (`""`: the prefix of the run's rows).
pub fn drift_row(channel: &str, run: &str, sku: &str) -> Key {
    Key::new(channel_partition(channel), format!("DRIFT#{run}#{sku}"))
}

/// The SKU and location of a level's key; `None` for any other item.
pub fn parse_level<'a>(pk: &'a str, sk: &'a str) -> Option<(&'a str, &'a str)> {
    Some((pk.strip_prefix(SKU)?, sk.strip_prefix(LEVEL)?))
}

/// The part number of a receipt part's sort key.
pub fn parse_part(sk: &str) -> Option<u32> {
    sk.strip_prefix(PART)?.parse().ok()
}

/// Ledger cursors are opaque to callers: the sort key, base64url-encoded.
pub fn encode_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

/// Decodes a cursor handed out with a ledger page; `None` if it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(raw).ok().filter(|sk| sk.starts_with(LEDGER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_documented_shapes_and_read_back() {
        let (s, l) = (
            Sku::parse("JKT BLUE").unwrap(),
            Location::parse("downtown").unwrap(),
        );
        let k = level(&s, &l);
        assert_eq!((k.pk.as_str(), k.sk.as_str()), ("SKU#JKT BLUE", "LEVEL#downtown"));
        assert_eq!(parse_level(&k.pk, &k.sk), Some(("JKT BLUE", "downtown")));
        assert_eq!(parse_level("RECEIPT#order#x", "PART#0000"), None);
        assert_eq!(receipt(ReceiptKind::Order, "pos#T-1"), "RECEIPT#order#pos#T-1");
        assert_eq!(part(3), "PART#0003");
        assert_eq!(parse_part("PART#0003"), Some(3));
        assert_eq!(chunk(7), "CHUNK#00000007");
        assert_eq!(cancelled(&s), "CANCELLED#JKT BLUE");
        assert_eq!(published(&s, "web").sk, "CHANNEL#web");
        assert_eq!(ledger("t", "order:a/1", "0.1"), "LEDGER#t#order:a/1#0.1");
        assert!(ledger_after("t") > ledger("t", "zzz", "9") && ledger_after("t") < ledger_end());
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_values() {
        let sk = "LEDGER#2026-11-22T10:00:00.000000Z#order:s/1#0.0";
        assert_eq!(decode_cursor(&encode_cursor(sk)).as_deref(), Some(sk));
        assert_eq!(decode_cursor(&encode_cursor("RECEIPT#x")), None);
        assert_eq!(decode_cursor("!!!"), None);
    }
}
