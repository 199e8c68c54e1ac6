//! Channels: who hears about stock, from which locations, with what safety
//! buffer, and the message each one receives.
//!
//! Configuration (`CHANNELS`, the template's `Channels` parameter):
//! `name=location+location[/buffer],...`, e.g.
//! `web=warehouse,pos=downtown+uptown,marketplace=warehouse/2`. A channel's
//! figure is `max(0, sum of available over its locations - buffer)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alerts::{send_to_queue, Fifo};
use crate::config::{parse_pairs, ConfigError};
use crate::domain::{Location, Sku};
use crate::level::LevelView;

/// One channel: a name, the locations whose stock it may sell, a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub locations: Vec<Location>,
    /// Units held back from this channel (a marketplace that cancels late, say).
    pub buffer: i64,
}

impl Channel {
    /// Whether this channel sells stock held at `location`.
    pub fn sells_from(&self, location: &str) -> bool {
        self.locations.iter().any(|l| l.as_str() == location)
    }

    /// The figure this channel may sell: `max(0, sum(available over its locations) - buffer)`.
    pub fn figure(&self, levels: &[LevelView]) -> i64 {
        let sum: i64 = levels
            .iter()
            .filter(|l| self.sells_from(&l.location))
            .map(|l| l.available.max(0))
            .sum();
        (sum - self.buffer).max(0)
    }

    /// Units each sale source has sold at this channel's locations, as recorded.
    pub fn sold(&self, levels: &[LevelView]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for l in levels.iter().filter(|l| self.sells_from(&l.location)) {
            for (source, units) in &l.sold {
                *out.entry(source.clone()).or_insert(0) += units;
            }
        }
        out
    }

    /// The most recent change among this channel's locations: its time and cause.
    pub fn latest<'a>(&self, levels: &'a [LevelView]) -> Option<&'a LevelView> {
        levels
            .iter()
            .filter(|l| self.sells_from(&l.location))
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
    }
}

/// Every channel, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Channels(Vec<Channel>);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: "CHANNELS",
        message: message.into(),
    }
}

impl Channels {
    /// Parses `name=location+location[/buffer],...`.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let mut out: Vec<Channel> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rest) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("expected name=locations[/buffer], got {part:?}")))?;
            let name = Location::parse(name)
                .ok()
                .filter(|l| !l.is_pool())
                .ok_or_else(|| {
                    invalid(format!(
                        "channel name {name:?} must be a slug of a-z, 0-9, '-' or '_'"
                    ))
                })?
                .to_string();
            let (locations, buffer) = match rest.split_once('/') {
                Some((l, b)) => (
                    l,
                    b.trim()
                        .parse::<u32>()
                        .map_err(|_| invalid(format!("{name}: buffer {b:?} must be a whole number >= 0")))?,
                ),
                None => (rest, 0),
            };
            let locations = locations
                .split('+')
                .map(|l| Location::parse(l).map_err(|e| invalid(format!("{name}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            if out.iter().any(|c| c.name == name) {
                return Err(invalid(format!("channel {name} is listed twice")));
            }
            out.push(Channel {
                name,
                locations,
                buffer: i64::from(buffer),
            });
        }
        if out.is_empty() {
            return Err(invalid("no channels configured"));
        }
        Ok(Self(out))
    }

    /// The channels, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.0.iter()
    }

    /// The channels that sell from any of these locations, in configuration order.
    pub fn selling_from<'a>(
        &'a self,
        locations: &'a HashSet<Location>,
    ) -> impl Iterator<Item = &'a Channel> + 'a {
        self.iter()
            .filter(|c| locations.iter().any(|l| c.sells_from(l.as_str())))
    }

    /// Pairs each channel with its queue URL from `CHANNEL_QUEUES`
    /// (`name=url,...`); every channel needs one.
    pub fn queues(&self, raw: &str) -> Result<HashMap<String, String>, ConfigError> {
        let map = parse_pairs(raw).map_err(|message| ConfigError::Invalid {
            name: "CHANNEL_QUEUES",
            message,
        })?;
        for c in self.iter() {
            if !map.contains_key(&c.name) {
                return Err(ConfigError::Invalid {
                    name: "CHANNEL_QUEUES",
                    message: format!("no queue for channel {}", c.name),
                });
            }
        }
        Ok(map)
    }
}

/// Why a channel's figure changed: the reason and reference of the last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: String,
    pub reference: String,
}

/// What a channel receives: an absolute figure with a per-SKU sequence, so a
/// consumer that sees messages late, twice or out of order keeps the highest
/// and ends right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub sku: String,
    pub channel: String,
    /// Units this channel may sell now.
    pub available: i64,
    /// Monotonic per SKU: the sum of the versions of the SKU's levels.
    pub sequence: u64,
    /// When the change behind this figure was made.
    pub at: String,
    pub cause: Cause,
    /// Units each sale source (a Shopify shop's domain, a channel) has sold
    /// at this channel's locations, as the figure above includes them: a
    /// connector tells from it which of its channel's own sales the figure
    /// has taken yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sold: BTreeMap<String, i64>,
    /// Ops asked for the figure again (the stock API's resync): a consumer
    /// applies it even at a sequence it has seen, reading the channel first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

/// The sequence of a SKU's state: every change adds one to one level's
/// version, so the sum only grows, and equal sums over a consistent read
/// mean the same state.
pub fn sequence(levels: &[LevelView]) -> u64 {
    levels.iter().map(|l| l.version.max(0) as u64).sum()
}

/// What a channel was last sent for a SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSent {
    pub available: i64,
    pub sequence: u64,
}

impl LastSent {
    pub fn new(available: i64, sequence: u64) -> Self {
        Self { available, sequence }
    }
}

/// What each channel hears after a change to a SKU's levels at the `touched`
/// locations, given the SKU's levels now and what each channel (by name) was
/// last sent. A channel that does not sell from a touched location hears
/// nothing; nor does one whose figure is unchanged or was already sent at
/// this sequence or a later one (a replayed record). A channel's first
/// figure is always sent. `now` is the message's time when none of the
/// channel's locations has a level.
pub fn messages(
    channels: &Channels,
    sku: &Sku,
    levels: &[LevelView],
    last_sent: &HashMap<String, LastSent>,
    touched: &HashSet<Location>,
    now: &str,
) -> Vec<ChannelMessage> {
    let sequence = sequence(levels);
    channels
        .selling_from(touched)
        .filter_map(|channel| {
            let available = channel.figure(levels);
            if let Some(sent) = last_sent.get(&channel.name) {
                if sent.sequence >= sequence || sent.available == available {
                    return None;
                }
            }
            let latest = channel.latest(levels);
            Some(ChannelMessage {
                sku: sku.to_string(),
                channel: channel.name.clone(),
                available,
                sequence,
                at: latest.map_or_else(|| now.to_owned(), |l| l.updated_at.clone()),
                cause: Cause {
                    reason: latest.and_then(|l| l.last_reason.clone()).unwrap_or_default(),
                    reference: latest.and_then(|l| l.last_reference.clone()).unwrap_or_default(),
                },
                sold: channel.sold(levels),
                resync: false,
            })
        })
        .collect()
}

fn sku_hash(sku: &str) -> String {
    hex::encode(Sha256::digest(sku.as_bytes()))
}

/// What a message group id cannot hold as it is: anything but ASCII letters,
/// digits and punctuation, and `%` itself (it starts an escape).
const GROUP_ID_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// The FIFO message group: the SKU, so one SKU's updates stay in order.
/// Characters SQS does not allow in a group id (spaces, non-ASCII) are
/// percent-encoded; a SKU too long for that is hashed.
pub fn message_group_id(sku: &str) -> String {
    let out = percent_encoding::utf8_percent_encode(sku, GROUP_ID_ESCAPED).to_string();
    if out.len() <= 128 {
        out
    } else {
        format!("sku-{}", sku_hash(sku))
    }
}

/// The FIFO deduplication id: derived from the SKU and the sequence, so a
/// republished state is dropped by SQS within its five-minute window.
pub fn deduplication_id(sku: &str, sequence: u64) -> String {
    format!("{}-{sequence}", &sku_hash(sku)[..40])
}

/// Why a channel's message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no queue is configured for channel {0}")]
    NoQueue(String),
    /// The channel, and what went wrong.
    #[error("could not send to the {0} queue: {1}")]
    Failed(String, String),
}

/// Sends a channel its message on the channel's FIFO queue (`queues`: by
/// channel name), grouped by SKU and deduplicated by SKU and sequence.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queues: &HashMap<String, String>,
    message: &ChannelMessage,
) -> Result<(), SendError> {
    let channel = &message.channel;
    let failed = |e: String| SendError::Failed(channel.clone(), e);
    let queue = queues
        .get(channel)
        .ok_or_else(|| SendError::NoQueue(channel.clone()))?;
    let body = serde_json::to_string(message).map_err(|e| failed(e.to_string()))?;
    let fifo = Fifo {
        group: message_group_id(&message.sku),
        deduplication: deduplication_id(&message.sku, message.sequence),
    };
    send_to_queue(sqs, queue, body, Some(fifo)).await.map_err(failed)
}

/// The channels (`CHANNELS`) and each one's queue URL (`CHANNEL_QUEUES`),
/// from the environment.
pub fn from_env() -> Result<(Channels, HashMap<String, String>), ConfigError> {
    let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
    let channels = Channels::parse(&var("CHANNELS")?)?;
    let queues = channels.queues(&var("CHANNEL_QUEUES")?)?;
    Ok((channels, queues))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(location: &str, available: i64, version: i64, at: &str) -> LevelView {
        LevelView {
            location: location.into(),
            available,
            damaged: 0,
            version,
            updated_at: at.into(),
            last_reason: Some("sale".into()),
            last_reference: Some(format!("order:web/{version}")),
            ..LevelView::default()
        }
    }

    fn channel<'a>(channels: &'a Channels, name: &str) -> &'a Channel {
        channels.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn parses_locations_and_buffers() {
        let c = Channels::parse("web=warehouse, pos=downtown+uptown ,marketplace=warehouse/2").unwrap();
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web", "pos", "marketplace"]);
        assert_eq!(channel(&c, "pos").locations.len(), 2);
        assert_eq!(channel(&c, "marketplace").buffer, 2);
        assert_eq!(channel(&c, "web").buffer, 0);
        for bad in [
            "",
            "web",
            "web=Ware House",
            "web=warehouse/-1",
            "web=a,web=b",
            "Web=a",
            "web=a/x",
            "pool:acme=warehouse",
        ] {
            assert!(Channels::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_channel_needs_a_queue() {
        let c = Channels::parse("web=warehouse,pos=downtown").unwrap();
        assert!(c.queues("web=http://q/web").is_err());
        let q = c.queues("web=http://q/web.fifo,pos=http://q/pos.fifo").unwrap();
        assert_eq!(q["pos"], "http://q/pos.fifo");
    }

    #[test]
    fn figure_sums_its_locations_minus_buffer_floored_at_zero() {
        let levels = [
            level("warehouse", 5, 3, "2026-11-22T10:00:00.000000Z"),
            level("downtown", 2, 1, "2026-11-22T11:00:00.000000Z"),
            level("uptown", -1, 1, "2026-11-22T09:00:00.000000Z"),
        ];
        let c = Channels::parse(
            "web=warehouse,pos=downtown+uptown,marketplace=warehouse/2,all=warehouse+downtown/9",
        )
        .unwrap();
        assert_eq!(channel(&c, "web").figure(&levels), 5);
        assert_eq!(channel(&c, "pos").figure(&levels), 2);
        assert_eq!(channel(&c, "marketplace").figure(&levels), 3);
        assert_eq!(channel(&c, "all").figure(&levels), 0);
        assert_eq!(channel(&c, "pos").latest(&levels).unwrap().location, "downtown");
        assert_eq!(sequence(&levels), 5);
    }

    fn touched(locations: &[&str]) -> HashSet<Location> {
        locations.iter().map(|l| Location::parse(l).unwrap()).collect()
    }

    fn heard(messages: &[ChannelMessage]) -> Vec<(&str, i64)> {
        messages
            .iter()
            .map(|m| (m.channel.as_str(), m.available))
            .collect()
    }

    const NOW: &str = "2026-11-22T12:00:00.000000Z";

    #[test]
    fn only_channels_selling_from_a_touched_location_hear_their_figure() {
        let c = Channels::parse("web=warehouse,pos=downtown+uptown,marketplace=warehouse/2").unwrap();
        let sku = Sku::parse("JKT-BLUE-M").unwrap();
        let levels = [
            level("warehouse", 5, 3, "2026-11-22T10:00:00.000000Z"),
            level("downtown", 2, 1, "2026-11-22T11:00:00.000000Z"),
            level("uptown", 1, 1, "2026-11-22T09:00:00.000000Z"),
        ];
        let none = HashMap::new();
        // The warehouse: web, and the marketplace less its buffer; not pos.
        let m = messages(&c, &sku, &levels, &none, &touched(&["warehouse"]), NOW);
        assert_eq!(heard(&m), [("web", 5), ("marketplace", 3)]);
        assert!(m.iter().all(|m| m.sku == "JKT-BLUE-M" && m.sequence == 5));
        // Uptown: pos hears the sum of its locations, time and cause of the latest change among them.
        let m = messages(&c, &sku, &levels, &none, &touched(&["uptown"]), NOW);
        assert_eq!(heard(&m), [("pos", 3)]);
        assert_eq!(m[0].at, "2026-11-22T11:00:00.000000Z");
        assert_eq!(
            m[0].cause,
            Cause {
                reason: "sale".into(),
                reference: "order:web/1".into()
            }
        );
        // A location no channel sells from.
        assert!(messages(&c, &sku, &levels, &none, &touched(&["backroom"]), NOW).is_empty());
    }

    #[test]
    fn a_channel_hears_a_new_figure_once_and_never_an_older_sequence() {
        let c = Channels::parse("web=warehouse,marketplace=warehouse/2").unwrap();
        let sku = Sku::parse("A").unwrap();
        let levels = [level("warehouse", 7, 4, "2026-11-22T10:00:00.000000Z")];
        let warehouse = touched(&["warehouse"]);
        let sent = |web: (i64, u64), market: (i64, u64)| {
            HashMap::from([
                (
                    "web".to_owned(),
                    LastSent {
                        available: web.0,
                        sequence: web.1,
                    },
                ),
                (
                    "marketplace".to_owned(),
                    LastSent {
                        available: market.0,
                        sequence: market.1,
                    },
                ),
            ])
        };
        // First publish: every channel hears its figure.
        let first = messages(&c, &sku, &levels, &HashMap::new(), &warehouse, NOW);
        assert_eq!(heard(&first), [("web", 7), ("marketplace", 5)]);
        // Web's figure changed; the marketplace's is the one it already has.
        let m = messages(&c, &sku, &levels, &sent((9, 3), (5, 3)), &warehouse, NOW);
        assert_eq!(heard(&m), [("web", 7)]);
        // A replayed record: this sequence (or a later one) was already sent.
        assert!(messages(&c, &sku, &levels, &sent((9, 4), (0, 5)), &warehouse, NOW).is_empty());
    }

    #[test]
    fn a_channel_without_levels_hears_zero_now() {
        let c = Channels::parse("web=warehouse/1").unwrap();
        let m = messages(
            &c,
            &Sku::parse("A").unwrap(),
            &[],
            &HashMap::new(),
            &touched(&["warehouse"]),
            NOW,
        );
        assert_eq!(
            (heard(&m), m[0].sequence, m[0].at.as_str()),
            (vec![("web", 0)], 0, NOW)
        );
        assert_eq!(
            m[0].cause,
            Cause {
                reason: String::new(),
                reference: String::new()
            }
        );
    }

    #[test]
    fn fifo_ids_are_valid_and_stable() {
        assert_eq!(message_group_id("JKT-BLUE-M"), "JKT-BLUE-M");
        assert_eq!(message_group_id("JKT BLUE 100%"), "JKT%20BLUE%20100%25");
        assert_eq!(message_group_id("Ü"), "%C3%9C");
        assert!(message_group_id(&"é".repeat(100)).starts_with("sku-"));
        let d = deduplication_id("JKT-BLUE-M", 42);
        assert_eq!(d, deduplication_id("JKT-BLUE-M", 42));
        assert_ne!(d, deduplication_id("JKT-BLUE-M", 43));
        assert_ne!(d, deduplication_id("JKT-BLUE-L", 42));
        assert!(d.len() <= 128 && d.ends_with("-42"));
    }
}
