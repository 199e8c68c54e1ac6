//! The connector at work: channel messages into the channel, and edits seen
//! there judged and acted on. The rules are the pure functions of
//! [`super`]; this runs them against the store and the platform's API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    judge_edit, plan_push, target, ChannelEdit, Connector, Connectors, Due, EditCheck, EditDecision,
    EditPolicy, Mapping, Mode, Push, SyncState, Verdict,
};
use crate::alerts::Alerts;
use crate::channels::{self, Channel, ChannelMessage, Channels};
use crate::clock;
use crate::config::LocationRules;
use crate::domain::{Actor, Location, Sku};
use crate::port::StoreError;
use crate::shopify::{AdminApi, ItemMatch, SetOutcome, SetQuantity, ShopifyError, MAX_QUANTITIES};
use crate::store::StockStore;

/// Rounds of read-and-decide-again after stale writes, per invocation.
const MAX_ROUNDS: usize = 6;
/// An unmapped or duplicate SKU is looked up again after this long.
const RECHECK_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Shopify(#[from] ShopifyError),
    #[error("the channel refused the update: {0}")]
    Refused(String),
    #[error("the channel kept moving: {0} rounds of stale writes")]
    KeptMoving(usize),
    #[error("the state of {0} kept changing under this writer")]
    Contended(String),
    #[error("no connector for channel {0}")]
    NoConnector(String),
}

impl SyncError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Store(_) | SyncError::KeptMoving(_) | SyncError::Contended(_) => true,
            SyncError::Shopify(e) => !e.is_unauthorized(),
            SyncError::Refused(_) | SyncError::NoConnector(_) => false,
        }
    }
}

/// What became of a batch of channel messages.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Message ids to be retried (and, past the queue's receive count, parked).
    pub failed: Vec<String>,
    /// Figures written to the channel.
    pub set: usize,
    /// Messages with nothing to write (stale, or the channel already there).
    pub unchanged: usize,
    /// SKUs that cannot be sent (unmapped, duplicate, not stocked).
    pub refused: usize,
    /// Compare-and-swap writes that found the channel moved.
    pub stale: usize,
}

/// What judging an edit check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Not a level of any connector (another location, an item gone), or a
    /// check whose level changed again since (the later change's check judges it).
    Ignored,
    Verdict(Verdict),
}

/// The connector: its configuration and what it talks to.
pub struct Sync {
    pub store: StockStore,
    pub api: AdminApi,
    pub connectors: Connectors,
    pub channels: Channels,
    pub rules: LocationRules,
    pub alerts: Alerts,
    /// How long a figure the fan-out sent may take to reach the channel
    /// before a reconcile stops taking it for "in flight" and calls it lost
    /// (`CHANNEL_IN_FLIGHT_SECONDS`, 300 by default).
    pub in_flight: Duration,
}

/// One SKU on its way to the channel.
struct Work {
    sku: String,
    ids: Vec<String>,
    message: ChannelMessage,
    state: SyncState,
    /// The channel's figure as just read (`None`: assume `state.set`).
    now: Option<i64>,
    done: bool,
    failed: bool,
}

impl Sync {
    fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The master's location a connector's figure belongs to: the Shopify
    /// location's mapping, else the channel's first location.
    pub fn location_of(&self, connector: &Connector) -> Option<Location> {
        self.rules
            .shopify_location(&connector.location_id.to_string())
            .or_else(|| {
                self.channel(&connector.channel)
                    .and_then(|c| c.locations.first().cloned())
            })
    }

    /// Applies a batch of one channel's messages (`(message id, body)` in
    /// queue order): per SKU the highest sequence wins, SKUs due at once go
    /// in one write. A SKU whose write fails fails all its messages, so its
    /// updates never overtake each other.
    pub async fn push_batch(
        &self,
        channel: &str,
        records: Vec<(String, String)>,
        deadline: Instant,
    ) -> Pushed {
        let mut out = Pushed::default();
        let Some(connector) = self.connectors.of_channel(channel) else {
            tracing::error!(channel, "channel messages for a channel without a connector");
            out.failed = records.into_iter().map(|(id, _)| id).collect();
            return out;
        };
        let mut work: Vec<Work> = Vec::new();
        for (id, body) in records {
            let m = match serde_json::from_str::<ChannelMessage>(&body) {
                Ok(m) if m.channel == channel => m,
                Ok(m) => {
                    tracing::error!(message_id = %id, got = %m.channel, channel, "a message for another channel");
                    out.failed.push(id);
                    continue;
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "not a channel message");
                    out.failed.push(id);
                    continue;
                }
            };
            match work.iter_mut().find(|w| w.sku == m.sku) {
                Some(w) => {
                    w.ids.push(id);
                    if m.sequence > w.message.sequence {
                        w.message = m;
                    }
                }
                None => work.push(Work {
                    sku: m.sku.clone(),
                    ids: vec![id],
                    message: m,
                    state: SyncState::default(),
                    now: None,
                    done: false,
                    failed: false,
                }),
            }
        }
        let shadow = match self.mode(connector).await {
            Ok(mode) => mode == Mode::Shadow,
            Err(e) => {
                tracing::error!(channel, error = %e, "could not read the channel's mode");
                out.failed = work.into_iter().flat_map(|w| w.ids).collect();
                return out;
            }
        };
        if shadow {
            // Nothing is written in shadow: every figure is read, and what
            // would be set is recorded against it.
            for w in &mut work {
                w.message.resync = true;
            }
        }
        self.push_work(connector, &mut work, deadline, shadow, &mut out)
            .await;
        for w in work {
            if w.failed {
                out.failed.extend(w.ids);
            }
        }
        out
    }

    /// Works a batch through: states, lookups, reads, compare-and-swap
    /// writes (read and decide again when stale), states saved.
    async fn push_work(
        &self,
        c: &Connector,
        work: &mut [Work],
        deadline: Instant,
        shadow: bool,
        out: &mut Pushed,
    ) {
        let skus: Vec<String> = work.iter().map(|w| w.sku.clone()).collect();
        match self.store.sync_states(&c.channel, &skus).await {
            Ok(mut states) => {
                for w in work.iter_mut() {
                    w.state = states.remove(&w.sku).unwrap_or_else(|| SyncState {
                        sku: w.sku.clone(),
                        ..SyncState::default()
                    });
                }
            }
            Err(e) => {
                tracing::error!(channel = %c.channel, error = %e, "could not read connector states");
                work.iter_mut().for_each(|w| w.failed = true);
                return;
            }
        }
        self.look_up(c, work, deadline).await;
        for round in 1..=MAX_ROUNDS {
            let unread: Vec<usize> = pending(work)
                .filter(|&i| plan_push(c, &work[i].state, &work[i].message, work[i].now) == Due::Read)
                .collect();
            self.read_into(c, work, &unread, deadline).await;
            let mut due: Vec<(usize, Push)> = Vec::new();
            for i in pending(work).collect::<Vec<_>>() {
                let w = &mut work[i];
                match plan_push(c, &w.state, &w.message, w.now) {
                    Due::Stale => {
                        out.unchanged += 1;
                        w.done = true;
                    }
                    Due::Lookup | Due::Read => w.failed = true,
                    Due::Unsendable(mapping) => {
                        out.refused += 1;
                        self.refuse(c, &mut w.state, &mapping).await;
                        w.done = true;
                    }
                    Due::Set(p) if shadow => {
                        let at = clock::now();
                        w.state.would_set = Some(p.quantity);
                        w.state.rebased(p.change_from, p.sold, p.owed, &at);
                        w.state.sequence = w.state.sequence.max(p.sequence);
                        out.unchanged += 1;
                        w.done = true;
                    }
                    Due::Set(p) if p.quantity == p.change_from => {
                        // The channel shows the figure already: only the base moves on.
                        w.state.pushed(&p, &clock::now());
                        out.unchanged += 1;
                        w.done = true;
                    }
                    Due::Set(p) => due.push((i, p)),
                }
            }
            if due.is_empty() {
                break;
            }
            let stale = self.write(c, work, &due, deadline, out).await;
            out.stale += stale.len();
            if stale.is_empty() && pending(work).next().is_none() {
                break;
            }
            if round == MAX_ROUNDS {
                tracing::error!(channel = %c.channel, rounds = round, "the channel kept moving");
                for i in pending(work).collect::<Vec<_>>() {
                    work[i].failed = true;
                }
                break;
            }
            // The channel moved under these: read them and decide again.
            self.read_into(c, work, &stale, deadline).await;
        }
        for w in work.iter_mut().filter(|w| !w.failed) {
            if let Err(e) = self.save(&c.channel, &mut w.state).await {
                tracing::error!(channel = %c.channel, sku = %w.sku, error = %e, "could not save the connector state");
                w.failed = true;
            }
        }
    }

    /// Maps SKUs never looked up (and, after a while, those that could not be mapped).
    async fn look_up(&self, c: &Connector, work: &mut [Work], deadline: Instant) {
        let wanted: Vec<usize> = pending(work)
            .filter(|&i| {
                let s = &work[i].state;
                match s.mapping {
                    Mapping::Unknown => true,
                    Mapping::Mapped => s.item.is_none(),
                    _ => clock::older_than(s.checked_at.as_deref(), RECHECK_AFTER),
                }
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let skus: Vec<String> = wanted.iter().map(|&i| work[i].sku.clone()).collect();
        match self.api.find_items(&c.shop, &skus, deadline).await {
            Ok(found) => {
                let at = clock::now();
                for (&i, m) in wanted.iter().zip(found) {
                    let s = &mut work[i].state;
                    let (mapping, item) = match m {
                        ItemMatch::One(id) => (Mapping::Mapped, Some(id)),
                        ItemMatch::None => (Mapping::Unmapped, None),
                        ItemMatch::Several => (Mapping::Duplicate, None),
                    };
                    if mapping != s.mapping || item != s.item {
                        // Another item (or none): nothing is known of its figure yet.
                        s.set = None;
                        s.alerted = false;
                    }
                    s.checked_at = Some(at.clone());
                    s.mapping = mapping;
                    s.item = item;
                }
            }
            Err(e) => {
                self.on_api_error(c, &e).await;
                for i in wanted {
                    work[i].failed = true;
                }
            }
        }
    }

    /// Reads the channel's figure of these SKUs into their `now`; an item
    /// not stocked at the connector's location cannot be sent.
    async fn read_into(&self, c: &Connector, work: &mut [Work], which: &[usize], deadline: Instant) {
        if which.is_empty() {
            return;
        }
        let items: Vec<String> = which
            .iter()
            .map(|&i| work[i].state.item.clone().unwrap_or_default())
            .collect();
        match self
            .api
            .levels(&c.shop, &c.location_gid(), &items, deadline)
            .await
        {
            Ok(levels) => {
                for (&i, level) in which.iter().zip(levels) {
                    match level {
                        Some(v) => work[i].now = Some(v),
                        None => {
                            work[i].state.mapping = Mapping::NotStocked;
                            work[i].state.checked_at = Some(clock::now());
                            work[i].now = None;
                        }
                    }
                }
            }
            Err(e) => {
                self.on_api_error(c, &e).await;
                for &i in which {
                    work[i].failed = true;
                }
            }
        }
    }

    /// Writes the due figures, [`MAX_QUANTITIES`] a call; returns the SKUs
    /// (indexes) whose base was stale.
    async fn write(
        &self,
        c: &Connector,
        work: &mut [Work],
        due: &[(usize, Push)],
        deadline: Instant,
        out: &mut Pushed,
    ) -> Vec<usize> {
        let mut stale = Vec::new();
        for chunk in due.chunks(MAX_QUANTITIES) {
            let pushes: Vec<Push> = chunk.iter().map(|(_, p)| p.clone()).collect();
            let quantities: Vec<SetQuantity> = pushes
                .iter()
                .map(|p| SetQuantity {
                    item: p.item.clone(),
                    location: c.location_gid(),
                    quantity: p.quantity,
                    change_from: p.change_from,
                })
                .collect();
            let key = super::idempotency_key(&c.channel, &pushes);
            let reference = format!("gid://stockroom/ChannelSync/{key}");
            match self
                .api
                .set_quantities(&c.shop, &key, &reference, &quantities, deadline)
                .await
            {
                Ok(SetOutcome::Applied) => {
                    let at = clock::now();
                    for (i, p) in chunk {
                        let w = &mut work[*i];
                        w.state.pushed(p, &at);
                        w.now = None;
                        w.done = true;
                        out.set += 1;
                        tracing::info!(channel = %c.channel, sku = %w.sku, quantity = p.quantity, from = p.change_from, owed = p.owed, sequence = p.sequence, "set on the channel");
                    }
                }
                Ok(SetOutcome::Stale(indexes)) => {
                    // Nothing was applied: the stale ones are read again, the
                    // rest go again as they are.
                    stale.extend(indexes.iter().filter_map(|&k| chunk.get(k).map(|(i, _)| *i)));
                }
                Ok(SetOutcome::Refused(errors)) => {
                    let text = errors
                        .iter()
                        .map(|e| format!("{} ({})", e.message, e.code.as_deref().unwrap_or("-")))
                        .collect::<Vec<_>>()
                        .join("; ");
                    tracing::error!(channel = %c.channel, errors = %text, "the channel refused the update");
                    let named: Vec<usize> = errors.iter().filter_map(|e| e.quantity_index()).collect();
                    for (k, (i, _)) in chunk.iter().enumerate() {
                        // Only the quantities it names fail; without any, all do.
                        if named.is_empty() || named.contains(&k) {
                            work[*i].failed = true;
                        }
                    }
                }
                Err(e) => {
                    self.on_api_error(c, &e).await;
                    for (i, _) in chunk {
                        work[*i].failed = true;
                    }
                }
            }
        }
        stale
    }

    /// Records a SKU that cannot be sent, alerting once.
    async fn refuse(&self, c: &Connector, state: &mut SyncState, mapping: &Mapping) {
        tracing::warn!(channel = %c.channel, sku = %state.sku, mapping = mapping.as_str(), "SKU cannot be sent to the channel");
        if state.alerted {
            return;
        }
        let alert = json!({
            "kind": "channel_sku_refused",
            "id": format!("channel_sku_refused:{}:{}:{}", c.channel, state.sku, mapping.as_str()),
            "channel": c.channel,
            "shop": c.shop,
            "sku": state.sku,
            "why": mapping.as_str(),
            "at": clock::now(),
        });
        state.alerted = self.alerts.send(&alert).await.is_ok();
    }

    async fn on_api_error(&self, c: &Connector, e: &ShopifyError) {
        tracing::error!(channel = %c.channel, shop = %c.shop, error = %e, "Shopify call failed");
        if e.is_unauthorized() {
            let alert = json!({
                "kind": "channel_unauthorized",
                "id": format!("channel_unauthorized:{}:{}", c.channel, clock::now().get(..13).unwrap_or_default()),
                "channel": c.channel,
                "shop": c.shop,
                "error": e.to_string(),
                "at": clock::now(),
            });
            let _ = self.alerts.send(&alert).await;
        }
    }

    /// Saves a state; if another writer saved first, its newer base stays
    /// and this one's decisions are laid on top when they are newer.
    async fn save(&self, channel: &str, state: &mut SyncState) -> Result<(), SyncError> {
        for _ in 0..5 {
            if self.store.save_sync_state(channel, state).await? {
                return Ok(());
            }
            let Some(mut fresh) = self.store.sync_state(channel, &state.sku).await? else {
                continue;
            };
            if state.updated_at > fresh.updated_at {
                let rev = fresh.rev;
                fresh = state.clone();
                fresh.rev = rev;
            }
            *state = fresh;
        }
        Err(SyncError::Contended(state.sku.clone()))
    }

    /// Judges a figure seen on a channel after the grace period, and acts
    /// on it: nothing for an echo or the channel's own sales, a ledger entry
    /// and an alert for an edit, then the channel's policy.
    pub async fn check_edit(&self, check: &EditCheck, deadline: Instant) -> Result<Judged, SyncError> {
        let Some(c) = self.connectors.at(&check.shop, check.location_id) else {
            return Ok(Judged::Ignored);
        };
        if self.mode(c).await? == Mode::Shadow {
            // The channel's old flow owns its figures in shadow: nothing to judge.
            return Ok(Judged::Ignored);
        }
        let channel = self
            .channel(&c.channel)
            .ok_or_else(|| SyncError::NoConnector(c.channel.clone()))?;
        let seen = self
            .api
            .items_at(&c.shop, &c.location_gid(), &[check.item_gid()], deadline)
            .await?;
        let Some(Some((sku_text, Some(now)))) = seen.into_iter().next() else {
            return Ok(Judged::Ignored);
        };
        let Ok(sku) = Sku::parse(&sku_text) else {
            tracing::warn!(channel = %c.channel, sku = %sku_text, "a channel item without a usable SKU");
            return Ok(Judged::Ignored);
        };
        let levels = self.store.levels(&sku).await?;
        let master = channel.figure(&levels);
        let sold = c.sold(&channel.sold(&levels));
        let mut state = self
            .store
            .sync_state(&c.channel, sku.as_str())
            .await?
            .unwrap_or_else(|| SyncState {
                sku: sku.to_string(),
                ..SyncState::default()
            });
        match state.mapping {
            Mapping::Unknown => {
                state.mapping = Mapping::Mapped;
                state.item = Some(check.item_gid());
                state.checked_at = Some(clock::now());
            }
            Mapping::Mapped if state.item.as_deref() == Some(check.item_gid().as_str()) => {}
            // Another item carries the SKU, or several do: not this connector's to judge.
            _ => return Ok(Judged::Ignored),
        }
        let master_knows = !levels.is_empty();
        let verdict = judge_edit(Some(&state), master_knows, now, sold);
        let at = clock::now();
        tracing::info!(channel = %c.channel, sku = %sku, now, master, sold, ?verdict, "edit check");
        if matches!(verdict, Verdict::Edit { .. }) && check.available.is_some_and(|a| a != now) {
            // The level changed again after the change this check is for: that
            // change has its own webhook and its own grace period. Judged now,
            // a shop's order placed moments ago would count as an edit (and,
            // under revert, its unit go back on sale).
            tracing::info!(channel = %c.channel, sku = %sku, now, seen = ?check.available, "edit check superseded by a later change");
            return Ok(Judged::Ignored);
        }
        match verdict {
            Verdict::Echo => return Ok(Judged::Verdict(verdict)),
            Verdict::Unmanaged => {
                state.unmanaged = true;
                state.updated_at = at;
                self.save(&c.channel, &mut state).await?;
                return Ok(Judged::Verdict(verdict));
            }
            Verdict::Explained => {
                state.rebased(now, sold, 0, &at);
                self.save(&c.channel, &mut state).await?;
                return Ok(Judged::Verdict(verdict));
            }
            Verdict::Unsynced => state.rebased(now, sold, 0, &at),
            Verdict::Edit { before, after } => {
                let location = self
                    .location_of(c)
                    .ok_or_else(|| SyncError::NoConnector(c.channel.clone()))?;
                let edit = ChannelEdit {
                    channel: c.channel.clone(),
                    sku: sku.clone(),
                    location: location.clone(),
                    before,
                    after,
                    policy: c.policy,
                    level: check.level.clone(),
                    updated_at: check.updated_at.clone(),
                    actor: Actor::system(&c.actor()),
                };
                let recorded = self.store.run(EditDecision::new(&edit)).await?;
                let alert = json!({
                    "kind": "channel_edit",
                    "id": format!("channel_edit:{}:{}:{}", c.channel, check.level, check.updated_at),
                    "channel": c.channel,
                    "shop": c.shop,
                    "sku": sku.as_str(),
                    "location": location.as_str(),
                    "before": before,
                    "after": after,
                    "policy": c.policy.as_str(),
                    "master_delta": recorded.master_delta,
                    "at": at,
                });
                // A lost alert is retried with the message; the ledger entry is written once.
                self.alerts.send(&alert).await.map_err(SyncError::Refused)?;
                state.rebased(now, sold, 0, &at);
                if c.policy == EditPolicy::Adopt {
                    // The master moved: its figure reaches the channel the usual way.
                    self.save(&c.channel, &mut state).await?;
                    return Ok(Judged::Verdict(verdict));
                }
            }
        }
        // Revert (or a first sight): the channel gets the master's figure.
        let push = Push {
            sku: sku.to_string(),
            item: state.item.clone().unwrap_or_default(),
            quantity: target(master, 0),
            change_from: now,
            master,
            sold,
            owed: 0,
            sequence: channels::sequence(&levels).max(state.sequence),
        };
        if push.quantity != now {
            let mut out = Pushed::default();
            let mut work = [Work {
                sku: sku.to_string(),
                ids: Vec::new(),
                message: ChannelMessage {
                    sku: sku.to_string(),
                    channel: c.channel.clone(),
                    available: master,
                    sequence: push.sequence,
                    at: at.clone(),
                    cause: channels::Cause {
                        reason: "channel_edit".into(),
                        reference: check.level.clone(),
                    },
                    sold: channel.sold(&levels),
                    resync: false,
                },
                state: state.clone(),
                now: Some(now),
                done: false,
                failed: false,
            }];
            let stale = self
                .write(c, &mut work, &[(0, push.clone())], deadline, &mut out)
                .await;
            if work[0].failed || !stale.is_empty() {
                // Failed, or the channel moved again: its own webhook brings another check.
                return Err(SyncError::Refused(format!("the revert of {sku} did not apply")));
            }
            state = work[0].state.clone();
        } else {
            state.pushed(&push, &at);
        }
        self.save(&c.channel, &mut state).await?;
        Ok(Judged::Verdict(verdict))
    }
}

/// The SKUs of a batch not yet done or failed.
fn pending(work: &[Work]) -> impl Iterator<Item = usize> + '_ {
    work.iter()
        .enumerate()
        .filter(|(_, w)| !w.done && !w.failed)
        .map(|(i, _)| i)
}

/// The list of SKUs a channel's connector could not send, by why.
pub fn refused(states: &[SyncState]) -> HashMap<&'static str, Vec<String>> {
    let mut out: HashMap<&'static str, Vec<String>> = HashMap::new();
    for s in states {
        if matches!(
            s.mapping,
            Mapping::Unmapped | Mapping::Duplicate | Mapping::NotStocked
        ) {
            out.entry(s.mapping.as_str()).or_default().push(s.sku.clone());
        }
        if s.unmanaged {
            out.entry("unmanaged").or_default().push(s.sku.clone());
        }
    }
    out
}
