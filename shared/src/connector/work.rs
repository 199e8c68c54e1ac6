//! A connector channel's runs: reconcile (drift), resync and the first
//! import, each paged through the channel and continued by the caller when
//! an invocation runs out of time; and its mode.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::runs::{self, ChannelTask, Finding, RunKind, RunRecord, RunStatus, RunTask, MAX_LISTED};
use super::sync::{Pushed, SyncError};
use super::{owed, Connector, Mode, Sync};
use crate::adjustment::{Adjustment, Change};
use crate::channels::{self, Cause, ChannelMessage};
use crate::clock;
use crate::domain::{Actor, DocumentRef, ReasonCode, Sku};

/// Levels per page of the channel (about 300 cost points a page).
const PAGE: usize = 100;
/// SKUs compared at once.
const CONCURRENCY: usize = 16;
/// The least time kept for a page: a run stops for a continuation when less
/// is left (or less than half again its slowest page so far).
const PAGE_TIME: Duration = Duration::from_secs(15);

/// What became of a run message.
#[derive(Debug)]
pub enum RunOutcome {
    Done(RunRecord),
    /// Out of time: queue this to go on where it stopped.
    Continue(RunTask),
}

/// A new run's id: sortable by time, unique.
pub fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        clock::now().replace([':', '.'], ""),
        fastrand::u16(..)
    )
}

impl Sync {
    /// The mode a connector's channel is in: ops' last switch, else its configuration.
    pub async fn mode(&self, c: &Connector) -> Result<Mode, SyncError> {
        Ok(self
            .store
            .channel_mode(&c.channel)
            .await?
            .map_or(c.mode, |m| m.mode))
    }

    /// Parses a `ChannelEditsQueue` message.
    pub fn task(body: &str) -> Result<ChannelTask, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// Runs (or goes on with) a reconcile, resync or import.
    pub async fn run_task(&self, mut task: RunTask, deadline: Instant) -> Result<RunOutcome, SyncError> {
        let c = self
            .connectors
            .of_channel(&task.channel)
            .ok_or_else(|| SyncError::NoConnector(task.channel.clone()))?
            .clone();
        let id = task.id.get_or_insert_with(new_run_id).clone();
        let mut run = match self.store.run_record(&c.channel, &id).await? {
            Some(r) => r,
            None => RunRecord {
                id: id.clone(),
                channel: c.channel.clone(),
                kind: task.kind,
                status: RunStatus::Queued,
                started_at: None,
                finished_at: None,
                totals: BTreeMap::new(),
                actor: task.actor.clone(),
                reason: task.reason.clone(),
                error: None,
                channel_only: Vec::new(),
                master_only: Vec::new(),
            },
        };
        if matches!(run.status, RunStatus::Done | RunStatus::Failed) {
            // A redelivered message of a finished run.
            return Ok(RunOutcome::Done(run));
        }
        run.status = RunStatus::Running;
        run.started_at.get_or_insert_with(clock::now);
        self.store.save_run(&run).await?;
        let result = match task.kind {
            RunKind::Resync => self
                .resync_run(&c, &task, &mut run, deadline)
                .await
                .map(|()| None),
            RunKind::Reconcile | RunKind::Import => self.paged_run(&c, &task, &mut run, deadline).await,
        };
        match result {
            Ok(Some(cursor)) => {
                self.store.save_run(&run).await?;
                task.cursor = Some(cursor);
                Ok(RunOutcome::Continue(task))
            }
            Ok(None) => {
                run.status = RunStatus::Done;
                run.error = None;
                run.finished_at = Some(clock::now());
                self.store.save_run(&run).await?;
                tracing::info!(channel = %c.channel, run = %run.id, kind = run.kind.as_str(), totals = ?run.totals, "run done");
                Ok(RunOutcome::Done(run))
            }
            Err(e) => {
                // A passing failure (throttled past the deadline, a store
                // hiccup) is retried with the message, from where it stood;
                // one that cannot pass (no token, no connector) ends the run.
                // The record as of the last continuation: its totals match
                // where the retried message starts again.
                let mut stored = self.store.run_record(&c.channel, &id).await?.unwrap_or(run);
                stored.error = Some(e.to_string());
                if !e.is_transient() {
                    stored.status = RunStatus::Failed;
                    stored.finished_at = Some(clock::now());
                }
                self.store.save_run(&stored).await?;
                Err(e)
            }
        }
    }

    /// Pages through the channel's levels at the connector's location;
    /// `Some(cursor)` when time ran out before the last page.
    async fn paged_run(
        &self,
        c: &Connector,
        task: &RunTask,
        run: &mut RunRecord,
        deadline: Instant,
    ) -> Result<Option<String>, SyncError> {
        let mut cursor = task.cursor.clone();
        let mode = self.mode(c).await?;
        // A page's table work does not watch the deadline: the margin grows
        // with the slowest page, so an invocation stops before it overruns.
        let mut margin = PAGE_TIME;
        loop {
            if Instant::now() + margin > deadline {
                if let Some(cursor) = cursor {
                    return Ok(Some(cursor));
                }
            }
            let started = Instant::now();
            let (page, next) = self
                .api
                .location_levels(&c.shop, &c.location_gid(), PAGE, cursor.as_deref(), deadline)
                .await?;
            match run.kind {
                RunKind::Import => self.import_page(c, task, run, &page).await?,
                _ => self.reconcile_page(c, run, &page, mode, deadline).await?,
            }
            margin = margin.max(started.elapsed() * 3 / 2);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        if run.kind == RunKind::Reconcile {
            self.master_only(c, run).await?;
            crate::alerts::metric(
                crate::METRIC_NAMESPACE,
                "channel-sync",
                &[(
                    "ChannelDrift",
                    run.totals.get("unexplained").copied().unwrap_or(0) as f64,
                )],
            );
        }
        Ok(None)
    }

    async fn reconcile_page(
        &self,
        c: &Connector,
        run: &mut RunRecord,
        page: &[crate::shopify::ChannelLevel],
        mode: Mode,
        deadline: Instant,
    ) -> Result<(), SyncError> {
        let channel = self
            .channels
            .iter()
            .find(|ch| ch.name == c.channel)
            .ok_or_else(|| SyncError::NoConnector(c.channel.clone()))?;
        let now = clock::now();
        let compared: Vec<Result<Option<(String, Finding)>, SyncError>> =
            futures::stream::iter(page.to_vec())
                .map(|level| {
                    let now = now.clone();
                    async move {
                        let (Some(sku), Some(figure)) = (level.sku.clone(), level.available) else {
                            return Ok(None);
                        };
                        let Ok(parsed) = Sku::parse(&sku) else {
                            return Ok(None);
                        };
                        let (levels, published, state) = futures::try_join!(
                            self.store.levels(&parsed),
                            self.store.published(&parsed),
                            self.store.sync_state(&c.channel, &sku),
                        )?;
                        let expected = (!levels.is_empty()).then(|| channel.figure(&levels));
                        let sold = c.sold(&channel.sold(&levels));
                        let owed = state
                            .as_ref()
                            .filter(|s| s.set.is_some())
                            .map_or(0, |s| owed(s, figure, sold));
                        let applied = state.as_ref().map_or(0, |s| s.sequence);
                        let in_flight = published.get(&c.channel).is_some_and(|p| {
                            p.sequence > applied
                                && !clock::older_than(p.published_at.as_deref(), self.in_flight)
                        });
                        let finding =
                            runs::compare(&sku, figure, expected, state.as_ref(), in_flight, owed, &now);
                        Ok(Some((sku, finding)))
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut findings = Vec::new();
        for r in compared {
            if let Some(f) = r? {
                findings.push(f);
            }
        }
        let seen: Vec<(String, Option<runs::DriftRow>)> = findings
            .iter()
            .map(|(sku, f)| match f {
                Finding::Differs(row) => (sku.clone(), Some(row.clone())),
                _ => (sku.clone(), None),
            })
            .collect();
        self.store.record_findings(&c.channel, &run.id, &seen).await?;
        for (sku, f) in &findings {
            if *f == Finding::ChannelOnly && run.channel_only.len() < MAX_LISTED {
                run.channel_only.push(sku.clone());
            }
        }
        let only: Vec<Finding> = findings.iter().map(|(_, f)| f.clone()).collect();
        runs::tally(&mut run.totals, &only);
        // Live: what nothing explains is put right through the normal path.
        if mode == Mode::Live {
            let wrong: Vec<String> = findings
                .iter()
                .filter_map(|(sku, f)| match f {
                    Finding::Differs(row) if !row.explained => Some(sku.clone()),
                    _ => None,
                })
                .collect();
            if !wrong.is_empty() {
                let pushed = self.resync(c, &wrong, deadline).await?;
                *run.totals.entry("corrected".into()).or_insert(0) += pushed.set as i64;
            }
        }
        Ok(())
    }

    /// Master SKUs at the channel's locations the run never saw on the channel.
    async fn master_only(&self, c: &Connector, run: &mut RunRecord) -> Result<(), SyncError> {
        let Some(channel) = self.channels.iter().find(|ch| ch.name == c.channel) else {
            return Ok(());
        };
        let mut master: HashSet<String> = HashSet::new();
        for location in &channel.locations {
            master.extend(self.store.skus_at(location).await?);
        }
        let seen = self.store.seen_in_run(&c.channel, &run.id).await?;
        let mut only: Vec<String> = master.difference(&seen).cloned().collect();
        only.sort();
        run.totals.insert("master_only".into(), only.len() as i64);
        run.totals.insert("unmapped".into(), only.len() as i64);
        only.truncate(MAX_LISTED);
        run.master_only = only;
        Ok(())
    }

    async fn import_page(
        &self,
        c: &Connector,
        task: &RunTask,
        run: &mut RunRecord,
        page: &[crate::shopify::ChannelLevel],
    ) -> Result<(), SyncError> {
        let location = self
            .location_of(c)
            .ok_or_else(|| SyncError::NoConnector(c.channel.clone()))?;
        let actor = Actor::parse(&task.actor).map_err(|e| SyncError::Refused(e.to_string()))?;
        for level in page {
            let (Some(sku), Some(figure)) = (level.sku.as_deref(), level.available) else {
                *run.totals.entry("skipped".into()).or_insert(0) += 1;
                continue;
            };
            let Ok(sku) = Sku::parse(sku) else {
                *run.totals.entry("skipped".into()).or_insert(0) += 1;
                continue;
            };
            if !self.store.levels(&sku).await?.is_empty() {
                // The master has it: it drifts, it is not imported again.
                *run.totals.entry("refused".into()).or_insert(0) += 1;
                if run.master_only.len() < MAX_LISTED {
                    run.master_only.push(sku.to_string());
                }
                continue;
            }
            let adjustment = Adjustment {
                sku: sku.clone(),
                location: location.clone(),
                change: Change::Set(figure.max(0)),
                expected: None,
                reason: ReasonCode::InitialCount,
                actor: actor.clone(),
                note: Some(format!(
                    "first import from {} ({}): {}",
                    c.channel, c.shop, task.reason
                )),
                document: DocumentRef::parse(&level.item).ok(),
                idempotency_key: Some(format!("import:{}:{}", c.channel, sku)),
            };
            match self.store.adjust(&adjustment).await {
                Ok(_) => *run.totals.entry("imported".into()).or_insert(0) += 1,
                Err(e) => {
                    tracing::warn!(channel = %c.channel, sku = %sku, error = %e, "not imported");
                    *run.totals.entry("refused".into()).or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }

    async fn resync_run(
        &self,
        c: &Connector,
        task: &RunTask,
        run: &mut RunRecord,
        deadline: Instant,
    ) -> Result<(), SyncError> {
        let skus: Vec<String> = if task.all {
            let mut all: HashSet<String> = HashSet::new();
            if let Some(channel) = self.channels.iter().find(|ch| ch.name == c.channel) {
                for location in &channel.locations {
                    all.extend(self.store.skus_at(location).await?);
                }
            }
            let mut all: Vec<String> = all.into_iter().collect();
            all.sort();
            all
        } else {
            task.skus.clone()
        };
        for chunk in skus.chunks(crate::shopify::MAX_QUANTITIES) {
            let pushed = self.resync(c, chunk, deadline).await?;
            let mut add = |k: &str, n: usize| *run.totals.entry(k.to_owned()).or_insert(0) += n as i64;
            add("resynced", chunk.len() - pushed.failed.len());
            add("set", pushed.set);
            add("failed", pushed.failed.len());
        }
        Ok(())
    }

    /// Sends these SKUs' current figures again, read from the channel first.
    pub async fn resync(
        &self,
        c: &Connector,
        skus: &[String],
        deadline: Instant,
    ) -> Result<Pushed, SyncError> {
        let channel = self
            .channels
            .iter()
            .find(|ch| ch.name == c.channel)
            .ok_or_else(|| SyncError::NoConnector(c.channel.clone()))?;
        let at = clock::now();
        let mut records = Vec::with_capacity(skus.len());
        for sku in skus {
            let Ok(parsed) = Sku::parse(sku) else { continue };
            let levels = self.store.levels(&parsed).await?;
            if levels.is_empty() {
                continue;
            }
            let m = ChannelMessage {
                sku: sku.clone(),
                channel: c.channel.clone(),
                available: channel.figure(&levels),
                sequence: channels::sequence(&levels),
                at: at.clone(),
                cause: Cause {
                    reason: "resync".into(),
                    reference: format!("resync:{}", c.channel),
                },
                sold: channel.sold(&levels),
                resync: true,
            };
            records.push((
                sku.clone(),
                serde_json::to_string(&m).map_err(|e| SyncError::Refused(e.to_string()))?,
            ));
        }
        Ok(self.push_batch(&c.channel, records, deadline).await)
    }
}
