//! Channel connectors: Stockroom sets a channel's own figure (Shopify's
//! `available` at one location) and notices when someone edits it there.
//!
//! Everything here is a decision, pure and unit-tested: which channels have
//! a connector ([`Connectors`]), what a SKU's figure on the channel should be
//! ([`plan_push`]), and what a figure seen on the channel means
//! ([`judge_edit`]). The platform's API is in [`crate::shopify`]; the state a
//! connector keeps per SKU is [`SyncState`], stored by
//! [`crate::store::StockStore::sync_state`].
//!
//! ## Never above the master, less the channel's unrecorded sales
//! A platform lowers its own figure when it sells, before its order webhook
//! reaches Stockroom. Setting the channel to the master's figure then would
//! hand those units out again. So the connector keeps, per SKU, the figure
//! it last set or read there (`set`), the channel's sales the master had
//! recorded then (`sold_at_set`, from the levels' `sold#<shop>` counts that
//! each sale adds to in its own transaction) and the sales it knew the master
//! had not (`owed_at_set`). Whatever the channel shows now (`c`), the sales
//! the master has not recorded yet are
//! `owed = owed_at_set + (set - c) - (sold_now - sold_at_set)`, never below
//! 0, and the channel is set to `max(0, master - owed)`, with
//! compare-and-swap from `c`: if the channel moved since it was read, the
//! write fails and the connector reads and decides again.

mod edit;
mod sync;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::channels::{ChannelMessage, Channels};
use crate::config::ConfigError;

pub use edit::{adopted, ChannelEdit, EditDecision, EditRecorded};
pub use sync::{refused, Judged, Pushed, Sync, SyncError};

/// What happens to an edit made in the channel's own admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditPolicy {
    /// The master stays the truth: the channel is set back (the default).
    Revert,
    /// The edit becomes an audited adjustment of the master.
    Adopt,
}

impl EditPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EditPolicy::Revert => "revert",
            EditPolicy::Adopt => "adopt",
        }
    }
}

/// Whether a connector writes to its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Reads the channel and records what it would set; never writes (no
    /// pushes, no reverts): the channel's old flow keeps running.
    Shadow,
    /// Sets the channel (the default).
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Live => "live",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "shadow" => Some(Mode::Shadow),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

/// One channel's connector: the Shopify shop and location its figure goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub channel: String,
    /// `<name>.myshopify.com`.
    pub shop: String,
    /// Shopify's numeric location id.
    pub location_id: u64,
    pub policy: EditPolicy,
    /// The mode until ops switch it at run time (the stock API).
    pub mode: Mode,
}

impl Connector {
    /// The location's GraphQL id.
    pub fn location_gid(&self) -> String {
        format!("gid://shopify/Location/{}", self.location_id)
    }

    /// Who an edit made in the shop's admin is recorded as.
    pub fn actor(&self) -> String {
        format!("shopify:{}", self.shop)
    }

    /// The channel's sales the master has recorded, from a message's counts.
    pub fn sold(&self, counts: &BTreeMap<String, i64>) -> i64 {
        counts.get(&self.shop).copied().unwrap_or(0)
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: "CONNECTORS",
        message: message.into(),
    }
}

/// Every configured connector (`CONNECTORS`, the template's `Connectors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connectors(Vec<Connector>);

impl Connectors {
    /// Parses `channel=shopify:<shop>.myshopify.com@<location id>[/revert|/adopt][/shadow|/live],...`;
    /// every channel named must be one of `channels`.
    pub fn parse(raw: &str, channels: &Channels) -> Result<Self, ConfigError> {
        let mut out: Vec<Connector> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (channel, rest) = part.split_once('=').ok_or_else(|| {
                invalid(format!(
                    "expected channel=shopify:<shop>@<location id>, got {part:?}"
                ))
            })?;
            let channel = channel.trim();
            if !channels.iter().any(|c| c.name == channel) {
                return Err(invalid(format!("{channel} is not a configured channel")));
            }
            let rest = rest
                .trim()
                .strip_prefix("shopify:")
                .ok_or_else(|| invalid(format!("{channel}: only shopify: connectors exist, got {rest:?}")))?;
            let mut words = rest.split('/');
            let rest = words.next().unwrap_or_default();
            let (mut policy, mut mode) = (EditPolicy::Revert, Mode::Live);
            for word in words {
                match word.trim() {
                    "revert" => policy = EditPolicy::Revert,
                    "adopt" => policy = EditPolicy::Adopt,
                    w => {
                        mode = Mode::parse(w).ok_or_else(|| {
                            invalid(format!(
                            "{channel}: {w:?} is not an edit policy (revert, adopt) or a mode (shadow, live)"
                        ))
                        })?
                    }
                }
            }
            let (shop, location) = rest
                .split_once('@')
                .ok_or_else(|| invalid(format!("{channel}: expected <shop>@<location id>, got {rest:?}")))?;
            let shop = shop.trim().to_ascii_lowercase();
            let name_ok = shop
                .strip_suffix(".myshopify.com")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !name_ok {
                return Err(invalid(format!(
                    "{channel}: {shop:?} is not a <name>.myshopify.com domain"
                )));
            }
            let location_id = location
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(format!("{channel}: location id {location:?} is not a number")))?;
            if out.iter().any(|c| c.channel == channel) {
                return Err(invalid(format!("{channel} has two connectors")));
            }
            out.push(Connector {
                channel: channel.to_owned(),
                shop,
                location_id,
                policy,
                mode,
            });
        }
        Ok(Self(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Connector> {
        self.0.iter()
    }

    /// The connector of a channel.
    pub fn of_channel(&self, channel: &str) -> Option<&Connector> {
        self.0.iter().find(|c| c.channel == channel)
    }

    /// The connector whose figure lives at this shop and location.
    pub fn at(&self, shop: &str, location_id: u64) -> Option<&Connector> {
        self.0
            .iter()
            .find(|c| c.shop.eq_ignore_ascii_case(shop) && c.location_id == location_id)
    }
}

/// The channels (`CHANNELS`) and their connectors (`CONNECTORS`).
pub fn from_env() -> Result<(Channels, Connectors), ConfigError> {
    let channels = Channels::parse(&crate::config::var("CHANNELS").ok_or(ConfigError::Missing("CHANNELS"))?)?;
    let connectors = Connectors::parse(&crate::config::var("CONNECTORS").unwrap_or_default(), &channels)?;
    Ok((channels, connectors))
}

/// How long an edit seen on a channel waits for the channel's own orders
/// before it is judged (`CHANNEL_EDIT_GRACE_SECONDS`: 0 to 900, SQS's
/// longest delay; 60 by default).
pub fn grace_from_env() -> Result<u32, ConfigError> {
    parse_grace(crate::config::var("CHANNEL_EDIT_GRACE_SECONDS").as_deref())
}

fn parse_grace(raw: Option<&str>) -> Result<u32, ConfigError> {
    match raw {
        None => Ok(60),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|s| *s <= 900)
            .ok_or_else(|| ConfigError::Invalid {
                name: "CHANNEL_EDIT_GRACE_SECONDS",
                message: format!("{v:?} is not a number of seconds from 0 to 900"),
            }),
    }
}

/// How a SKU maps to the channel's item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// Not looked up yet.
    #[default]
    Unknown,
    /// One item carries the SKU.
    Mapped,
    /// No item carries it: listed, alerted once, messages not retried.
    Unmapped,
    /// Several items carry it: refused, never a guess.
    Duplicate,
    /// The item is not stocked at the connector's location.
    NotStocked,
}

impl Mapping {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mapping::Unknown => "unknown",
            Mapping::Mapped => "mapped",
            Mapping::Unmapped => "unmapped",
            Mapping::Duplicate => "duplicate",
            Mapping::NotStocked => "not_stocked",
        }
    }
}

/// A change seen on a channel's level, to be judged after the grace period
/// (the body of a `ChannelEditsQueue` message): Shopify's
/// `inventory_levels/update`, by shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditCheck {
    pub shop: String,
    pub inventory_item_id: u64,
    pub location_id: u64,
    /// The figure the webhook carried; only a hint: the level is read again.
    pub available: Option<i64>,
    pub updated_at: String,
    /// `admin_graphql_api_id`: the inventory level.
    pub level: String,
}

impl EditCheck {
    pub fn item_gid(&self) -> String {
        format!("gid://shopify/InventoryItem/{}", self.inventory_item_id)
    }
}

/// What a connector keeps per SKU (`CONNECTOR#<channel>` / `SKU#<sku>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncState {
    pub sku: String,
    pub mapping: Mapping,
    /// The channel's item (a GraphQL id) when mapped.
    pub item: Option<String>,
    /// When the mapping was last looked up.
    pub checked_at: Option<String>,
    /// The figure last set or read on the channel: the next write's
    /// compare-and-swap base.
    pub set: Option<i64>,
    /// The channel's sales the master had recorded when `set` was decided.
    pub sold_at_set: i64,
    /// The channel's sales the master had not recorded then.
    pub owed_at_set: i64,
    /// The master's figure for the channel behind `set`.
    pub expected: Option<i64>,
    /// The highest message sequence decided.
    pub sequence: u64,
    /// A figure on the channel for a SKU the master has never seen: left alone.
    pub unmanaged: bool,
    /// In shadow mode: the figure the connector would have set.
    pub would_set: Option<i64>,
    /// Since when the channel's figure differs from the master's (a reconcile's finding).
    pub drift_since: Option<String>,
    /// Unmapped or duplicate SKUs are alerted once.
    pub alerted: bool,
    pub updated_at: String,
    /// Bumped on every save: a save is conditional on the revision read.
    pub rev: u64,
}

/// The channel's sales the master has not recorded yet, seeing `channel_now`
/// on the channel while the master has recorded `sold_now` of them.
pub fn owed(state: &SyncState, channel_now: i64, sold_now: i64) -> i64 {
    unexplained(state, channel_now, sold_now).max(0)
}

/// `owed` before clamping: negative when the channel rose by more than
/// recorded sales explain.
fn unexplained(state: &SyncState, channel_now: i64, sold_now: i64) -> i64 {
    let set = state.set.unwrap_or(channel_now);
    state.owed_at_set + (set - channel_now) - (sold_now - state.sold_at_set)
}

/// The figure for the channel: the master's less what the channel sold that
/// the master has not recorded; never negative.
pub fn target(master: i64, owed: i64) -> i64 {
    (master - owed).max(0)
}

/// What a message asks of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// A message with this or a higher sequence was decided: nothing to do.
    Stale,
    /// The SKU must be looked up on the channel first.
    Lookup,
    /// No item, or several, carry the SKU: nothing is sent.
    Unsendable(Mapping),
    /// The channel's figure must be read first (never set or read before).
    Read,
    /// Set the channel.
    Set(Push),
}

/// One compare-and-swap write the connector makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub sku: String,
    pub item: String,
    /// The figure to set.
    pub quantity: i64,
    /// What the channel must show for the write to apply.
    pub change_from: i64,
    /// The master's figure for the channel and its recorded sales, as the message carried them.
    pub master: i64,
    pub sold: i64,
    /// The unrecorded sales the figure allows for.
    pub owed: i64,
    pub sequence: u64,
}

/// What to do for a message, given the SKU's state and, if it was read, the
/// channel's figure now (`None`: assume it still shows `state.set`).
pub fn plan_push(
    connector: &Connector,
    state: &SyncState,
    m: &ChannelMessage,
    channel_now: Option<i64>,
) -> Due {
    if state.sequence >= m.sequence && state.set.is_some() && !m.resync {
        return Due::Stale;
    }
    let item = match (&state.mapping, &state.item) {
        (Mapping::Mapped, Some(item)) => item.clone(),
        (Mapping::Unknown, _) | (Mapping::Mapped, None) => return Due::Lookup,
        (other, _) => return Due::Unsendable(other.clone()),
    };
    // A resync trusts nothing it remembers of the channel: it reads first.
    let remembered = if m.resync { None } else { state.set };
    let Some(now) = channel_now.or(remembered) else {
        return Due::Read;
    };
    let sold = connector.sold(&m.sold);
    let owed = if m.resync {
        // Asked for again after something went wrong: what the channel shows
        // is the base, only the sales known to be owed still count.
        (state.owed_at_set - (sold - state.sold_at_set)).max(0)
    } else {
        owed(state, now, sold)
    };
    Due::Set(Push {
        sku: m.sku.clone(),
        item,
        quantity: target(m.available, owed),
        change_from: now,
        master: m.available,
        sold,
        owed,
        sequence: m.sequence,
    })
}

impl SyncState {
    /// The state after a push applied (or found the channel already there).
    pub fn pushed(&mut self, p: &Push, at: &str) {
        self.set = Some(p.quantity);
        self.sold_at_set = p.sold;
        self.owed_at_set = p.owed;
        self.expected = Some(p.master);
        self.sequence = self.sequence.max(p.sequence);
        self.unmanaged = false;
        self.updated_at = at.to_owned();
    }

    /// The state after the channel's figure was read and judged: `channel_now`
    /// is the new base, and what it owes is what [`owed`] says it owes.
    pub fn rebased(&mut self, channel_now: i64, sold_now: i64, owed: i64, at: &str) {
        self.set = Some(channel_now);
        self.sold_at_set = sold_now;
        self.owed_at_set = owed;
        self.updated_at = at.to_owned();
    }
}

/// The idempotency key of one write to the channel: derived from what it
/// writes (channel, SKUs, sequences, figures and bases), so a retry of the
/// same decision reuses it and the platform applies it once, while a new
/// decision gets a new key.
pub fn idempotency_key(channel: &str, pushes: &[Push]) -> String {
    let mut text = format!("{channel}\n");
    for p in pushes {
        text.push_str(&format!(
            "{}|{}|{}|{}\n",
            p.sku, p.sequence, p.quantity, p.change_from
        ));
    }
    format!("stockroom-{}", &crate::sha256_hex(&text)[..40])
}

/// What a figure seen on the channel means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The master has never seen the SKU: not Stockroom's to manage yet.
    Unmanaged,
    /// The figure Stockroom last set or read there: its own echo.
    Echo,
    /// Never set or read before: the figure becomes the base, no edit can be told.
    Unsynced,
    /// The channel's own sales, recorded since, explain the difference.
    Explained,
    /// A change nothing recorded explains: someone edited the figure on the channel.
    Edit {
        /// The channel's figure had the edit not been made.
        before: i64,
        after: i64,
    },
}

impl Verdict {
    /// The edit's size on the channel (`after - before`).
    pub fn delta(self) -> i64 {
        match self {
            Verdict::Edit { before, after } => after - before,
            _ => 0,
        }
    }
}

/// Judges the channel's figure `channel_now` for a SKU whose state is
/// `state`, when the master has recorded `sold_now` of the channel's sales
/// and `master_knows` whether it has any level of the SKU at all.
pub fn judge_edit(state: Option<&SyncState>, master_knows: bool, channel_now: i64, sold_now: i64) -> Verdict {
    if !master_knows {
        return Verdict::Unmanaged;
    }
    let Some(state) = state.filter(|s| s.set.is_some()) else {
        return Verdict::Unsynced;
    };
    if state.set == Some(channel_now) {
        return Verdict::Echo;
    }
    match unexplained(state, channel_now, sold_now) {
        0 => Verdict::Explained,
        u => Verdict::Edit {
            before: channel_now + u,
            after: channel_now,
        },
    }
}

#[cfg(test)]
mod tests;
