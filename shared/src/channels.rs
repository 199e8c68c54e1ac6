//! Channels: who hears about stock, from which locations, with what safety
//! buffer, and the message each one receives.
//!
//! Configuration (`CHANNELS`, the template's `Channels` parameter):
//! `name=location+location[/buffer],...`, e.g.
//! `web=warehouse,pos=downtown+uptown,marketplace=warehouse/2`. A channel's
//! figure is `max(0, sum of available over its locations - buffer)`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{parse_pairs, ConfigError};
use crate::domain::Location;
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
                .map_err(|_| {
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

    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.0.iter().find(|c| c.name == name)
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
}

/// The sequence of a SKU's state: every change adds one to one level's
/// version, so the sum only grows, and equal sums over a consistent read
/// mean the same state.
pub fn sequence(levels: &[LevelView]) -> u64 {
    levels.iter().map(|l| l.version.max(0) as u64).sum()
}

fn sku_hash(sku: &str) -> String {
    hex::encode(Sha256::digest(sku.as_bytes()))
}

/// The FIFO message group: the SKU, so one SKU's updates stay in order.
/// Characters SQS does not allow in a group id (spaces, non-ASCII) are
/// percent-encoded; a SKU too long for that is hashed.
pub fn message_group_id(sku: &str) -> String {
    let mut out = String::with_capacity(sku.len());
    for b in sku.bytes() {
        if b.is_ascii_alphanumeric() || (b.is_ascii_punctuation() && b != b'%') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
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

    #[test]
    fn parses_locations_and_buffers() {
        let c = Channels::parse("web=warehouse, pos=downtown+uptown ,marketplace=warehouse/2").unwrap();
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web", "pos", "marketplace"]);
        assert_eq!(c.get("pos").unwrap().locations.len(), 2);
        assert_eq!(c.get("marketplace").unwrap().buffer, 2);
        assert_eq!(c.get("web").unwrap().buffer, 0);
        for bad in [
            "",
            "web",
            "web=Ware House",
            "web=warehouse/-1",
            "web=a,web=b",
            "Web=a",
            "web=a/x",
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
        assert_eq!(c.get("web").unwrap().figure(&levels), 5);
        assert_eq!(c.get("pos").unwrap().figure(&levels), 2);
        assert_eq!(c.get("marketplace").unwrap().figure(&levels), 3);
        assert_eq!(c.get("all").unwrap().figure(&levels), 0);
        assert_eq!(
            c.get("pos").unwrap().latest(&levels).unwrap().location,
            "downtown"
        );
        assert_eq!(sequence(&levels), 5);
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
