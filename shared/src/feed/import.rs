//! One object's import: what the store remembers of it decides where it
//! starts ([`next_step`]); a stock file read from the start is checked
//! first ([`super::hold`]); valid rows are applied in chunks, exactly once
//! per object and chunk; near the end of its time the import checkpoints
//! and continues in a new invocation; at the end the report (and the
//! rejects) are written next to the feed.

use serde_json::json;
use tokio::time::Instant;

use super::apply::{apply_rows, zero_missing, Pace, Pass};
use super::hold::{file_hold, hold_reason, release_command, HoldPolicy, HoldReason, StockFileCounts};
use super::message::continuation;
use super::report::{rejects_key, Report, ReportStatus, RowCounts, Subject};
use super::s3::{self, Body, Head};
use super::{FeedEffect, FeedError, FeedKey, FeedKind, FeedReader, FeedSettings, FeedSource, FeedState};
use super::{ObjectRef, ReadOptions};
use crate::alerts::{self, Alerts};
use crate::clock;
use crate::config::{self, Config, ConfigError};
use crate::store::{StockStore, StoreError};

/// The function the import's metrics are filed under.
const FUNCTION: &str = "supplier-feed";

/// Everything an import needs, built once per container.
pub struct Importer {
    pub store: StockStore,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub alerts: Alerts,
    pub settings: FeedSettings,
}

impl Importer {
    /// From the environment: the common configuration and `FEED_*`.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let settings = FeedSettings::from_env(cfg.locations.default_location().clone())?;
        let sdk = config::aws().await;
        // A local emulator serves buckets by path, not by host name.
        let local = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.trim().is_empty());
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        Ok(Self {
            store: StockStore::from_config(&sdk, &cfg),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(local)
                    .build(),
            ),
            alerts: Alerts::new(sqs.clone(), cfg.alert_queue_url),
            sqs,
            settings,
        })
    }
}

/// Why an import failed in a way a retry may fix (a file that cannot be
/// imported is not an error: it ends in a report).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("S3: {0}")]
    S3(String),
    /// Reading the object failed.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The local rejects file.
    #[error("writing the rejects file: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the rejects file: {0}")]
    Rejects(#[from] csv::Error),
    /// Queueing the continuation.
    #[error("SQS: {0}")]
    Sqs(String),
}

/// Where an import of an object starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Imported before: a repeat changes nothing.
    Repeat,
    /// Held by the safety checks, and not released: it stays held.
    StayHeld { reason: String },
    /// Apply the rows from chunk `from_chunk` (earlier ones were applied by
    /// earlier invocations), in the import's `invocation`th invocation;
    /// `check` first when it is a stock file read from the start unreleased.
    Apply {
        from_chunk: u64,
        invocation: u32,
        check: bool,
    },
}

/// Decides where an import starts from the object's stored state, whether
/// its metadata releases it, and its kind.
pub fn next_step(state: Option<FeedState>, released: bool, kind: FeedKind) -> Step {
    let (from_chunk, invocation) = match state {
        Some(FeedState::Done { .. }) => return Step::Repeat,
        Some(FeedState::Held { reason }) if !released => return Step::StayHeld { reason },
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            ..
        }) => (next_chunk, invocations.saturating_add(1)),
        Some(FeedState::Held { .. }) | None => (0, 1),
    };
    Step::Apply {
        from_chunk,
        invocation,
        check: kind == FeedKind::Stock && !released && from_chunk == 0,
    }
}

fn metric(values: &[(&str, f64)]) {
    alerts::metric(crate::METRIC_NAMESPACE, FUNCTION, values);
}

/// Imports one object; `Ok` whether it was applied, held, unreadable or a
/// repeat; `Err` only for what a retry may fix.
pub async fn run(app: &Importer, object: &ObjectRef, deadline: Instant) -> Result<(), ImportError> {
    let started = Instant::now();
    if !object.key.starts_with("feeds/") {
        tracing::info!(key = %object.key, "not under feeds/; ignored");
        return Ok(());
    }
    let subject = Subject {
        feed: object.key.clone(),
        bucket: object.bucket.clone(),
        ..Subject::default()
    };
    let key = match FeedKey::parse(&object.key) {
        Ok(k) => k,
        Err(e) => {
            let report = Report::new(subject, ReportStatus::Unreadable, 0, started.elapsed());
            return unreadable(app, report, &e.to_string()).await;
        }
    };
    let Some(head) = s3::head(&app.s3, object).await? else {
        tracing::warn!(key = %object.key, "the object is gone; nothing to import");
        return Ok(());
    };
    let released = head.released;
    let mut job = Job::new(app, object, key, subject, head, started);
    match next_step(app.store.feed_state(&job.src).await?, released, job.key.kind) {
        Step::Repeat => {
            tracing::info!(key = %object.key, etag = job.subject.etag.as_str(), "this object was imported before; nothing changes");
            metric(&[("FeedDuplicates", 1.0)]);
            Ok(())
        }
        Step::StayHeld { reason } => {
            tracing::info!(key = %object.key, reason, "held until released");
            Ok(())
        }
        Step::Apply {
            from_chunk,
            invocation,
            check,
        } => {
            job.invocation = invocation;
            job.import(from_chunk, check, deadline).await
        }
    }
}

/// An import under way in this invocation.
struct Job<'a> {
    app: &'a Importer,
    object: &'a ObjectRef,
    key: FeedKey,
    src: FeedSource,
    options: ReadOptions,
    /// What the report says of the feed (its ETag among it).
    subject: Subject,
    invocation: u32,
    started: Instant,
}

impl<'a> Job<'a> {
    fn new(
        app: &'a Importer,
        object: &'a ObjectRef,
        key: FeedKey,
        mut subject: Subject,
        head: Head,
        started: Instant,
    ) -> Self {
        let src = FeedSource {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version: head.etag.clone(),
            supplier: key.supplier.to_string(),
        };
        subject.etag = head.etag;
        subject.supplier = src.supplier.clone();
        subject.kind = key.kind.name().into();
        let options = ReadOptions {
            kind: key.kind,
            default_location: app.settings.default_location.clone(),
            pool: key.supplier.clone(),
            last_modified: head.last_modified,
        };
        Self {
            app,
            object,
            key,
            src,
            options,
            subject,
            invocation: 1,
            started,
        }
    }

    async fn import(self, from_chunk: u64, check: bool, deadline: Instant) -> Result<(), ImportError> {
        if check {
            let Some(reader) = self.open().await? else {
                return Ok(());
            };
            if let Some(reason) = self.safety_check(reader).await? {
                return self.hold(reason).await;
            }
        }
        let Some(reader) = self.open().await? else {
            return Ok(());
        };
        let settings = &self.app.settings;
        let pace = Pace {
            from_chunk,
            concurrency: settings.concurrency,
            deadline,
            margin: settings.margin_within(deadline.saturating_duration_since(self.started)),
        };
        let pass = apply_rows(&self.app.store, reader, &self.src, self.key.kind.effect(), pace).await?;
        match pass.paused_at {
            Some(next) => {
                drop(pass);
                self.checkpoint(next).await
            }
            None => self.finish(pass).await,
        }
    }

    fn report(&self, status: ReportStatus) -> Report {
        Report::new(
            self.subject.clone(),
            status,
            self.invocation,
            self.started.elapsed(),
        )
    }

    /// Opens the object as rows; `None` when it cannot be read as a feed
    /// (then reported as unreadable).
    async fn open(&self) -> Result<Option<FeedReader<Body>>, ImportError> {
        match s3::open(&self.app.s3, self.object, self.key.format, self.options.clone()).await {
            Ok(r) => Ok(Some(r)),
            Err(ImportError::Feed(e @ FeedError::Unreadable(_))) => {
                unreadable(self.app, self.report(ReportStatus::Unreadable), &e.to_string()).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a stock file once, without applying it, to decide whether it is safe.
    async fn safety_check(&self, reader: FeedReader<Body>) -> Result<Option<HoldReason>, ImportError> {
        let pool = &self.key.supplier;
        let counts = StockFileCounts::read(reader, pool).await?;
        // The pool is only read for a file that could be applied at all.
        if let Some(reason) = file_hold(&counts) {
            return Ok(Some(reason));
        }
        let policy = HoldPolicy {
            stats: self.app.store.location_stats(pool).await?,
            share: self.app.settings.hold_share,
            zero_missing: self.app.settings.zero_missing_for(pool.as_str()),
        };
        Ok(hold_reason(&counts, pool, policy))
    }

    async fn hold(self, reason: HoldReason) -> Result<(), ImportError> {
        let (object, app) = (self.object, self.app);
        let reason = reason.to_string();
        let release = release_command(&object.bucket, &object.key, &self.subject.etag);
        let held = FeedState::Held {
            reason: reason.clone(),
        };
        app.store.save_feed_state(&self.src, &held).await?;
        let mut report = self.report(ReportStatus::Held);
        report.reason = Some(reason.clone());
        report.release = Some(release.clone());
        s3::put_report(&app.s3, &report).await?;
        let _ = app
            .alerts
            .send(
                &json!({"kind": "feed_held", "feed": object.key, "bucket": object.bucket,
                "supplier": self.src.supplier, "reason": reason, "release": release, "at": clock::now()}),
            )
            .await;
        metric(&[("FeedFilesHeld", 1.0)]);
        Ok(())
    }

    /// Saves where the import stopped and queues the rest for a new invocation.
    async fn checkpoint(self, next_chunk: u64) -> Result<(), ImportError> {
        let state = FeedState::InProgress {
            next_chunk,
            invocations: self.invocation,
            started_at: clock::now(),
        };
        self.app.store.save_feed_state(&self.src, &state).await?;
        let Some(url) = &self.app.settings.queue_url else {
            return Err(ImportError::Sqs(
                "FEED_QUEUE_URL is not set: cannot continue a long import".into(),
            ));
        };
        let rest = ObjectRef {
            etag: Some(self.subject.etag.clone()),
            ..self.object.clone()
        };
        self.app
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(continuation(&rest))
            .send()
            .await
            .map_err(|e| ImportError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
        tracing::info!(key = %self.object.key, next_chunk, "time nearly up: checkpointed, continuing in a new invocation");
        Ok(())
    }

    /// Every row is applied: zero what a complete file left out, report, remember.
    async fn finish(self, mut pass: Pass) -> Result<(), ImportError> {
        let (object, app, src) = (self.object, self.app, &self.src);
        let mut zeroed_missing = 0;
        if self.key.kind.effect() == FeedEffect::Count && app.settings.zero_missing_for(&src.supplier) {
            zeroed_missing =
                zero_missing(&app.store, src, &self.key.supplier, &self.options.last_modified).await?;
        }
        let totals = app.store.feed_totals(src).await?;
        let rejected = pass.parse_rejects + totals.rejected.len() as u64;
        let mut report = self.report(ReportStatus::Applied);
        report.rows = RowCounts {
            rows_read: pass.rows,
            applied: totals.applied,
            rejected,
            skipped_stale: totals.stale,
            duplicates: totals.duplicates,
            zeroed_missing,
        };
        if rejected > 0 {
            pass.rejects.push_refused(&totals)?;
            let key = rejects_key(&object.key);
            s3::put_csv(&app.s3, &object.bucket, &key, pass.rejects.finish()?).await?;
            report.rejects = Some(key);
        }
        drop(pass);
        s3::put_report(&app.s3, &report).await?;
        let done = FeedState::Done { report: report.key() };
        app.store.save_feed_state(src, &done).await?;
        let rows = &report.rows;
        tracing::info!(key = %object.key, applied = rows.applied, rejected, stale = rows.skipped_stale,
            duplicates = rows.duplicates, rows = rows.rows_read, ms = report.duration_ms, "feed imported");
        metric(&[
            ("FeedRowsApplied", rows.applied as f64),
            ("FeedRowsRejected", rejected as f64),
            ("FeedFilesWithRejects", f64::from(u8::from(rejected > 0))),
        ]);
        if rejected > 0 {
            let _ = app
                .alerts
                .send(
                    &json!({"kind": "feed_rejects", "feed": object.key, "bucket": object.bucket,
                    "supplier": src.supplier, "rejected": rejected, "applied": rows.applied,
                    "rejects": report.rejects, "report": report.key(), "at": clock::now()}),
                )
                .await;
        }
        Ok(())
    }
}

/// Reports a file that cannot be read as a feed; a retry would not help.
async fn unreadable(app: &Importer, mut report: Report, why: &str) -> Result<(), ImportError> {
    tracing::warn!(key = %report.subject.feed, why, "unreadable feed");
    report.reason = Some(why.to_owned());
    s3::put_report(&app.s3, &report).await?;
    let _ = app
        .alerts
        .send(
            &json!({"kind": "feed_unreadable", "feed": report.subject.feed, "bucket": report.subject.bucket,
            "reason": why, "at": clock::now()}),
        )
        .await;
    metric(&[("FeedFilesUnreadable", 1.0)]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_progress(next_chunk: u64, invocations: u32) -> Option<FeedState> {
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            started_at: "2026-11-22T08:00:00.000000Z".into(),
        })
    }

    fn apply(from_chunk: u64, invocation: u32, check: bool) -> Step {
        Step::Apply {
            from_chunk,
            invocation,
            check,
        }
    }

    /// Each case: the stored state, whether released, the kind, and the step expected.
    fn check(cases: Vec<(Option<FeedState>, bool, FeedKind, Step)>) {
        for (i, (state, released, kind, expected)) in cases.into_iter().enumerate() {
            assert_eq!(next_step(state, released, kind), expected, "case {i}");
        }
    }

    #[test]
    fn a_new_object_starts_at_the_beginning_and_stock_files_are_checked() {
        check(vec![
            (None, false, FeedKind::Deliveries, apply(0, 1, false)),
            (None, false, FeedKind::Stock, apply(0, 1, true)),
            // Released before it was ever held: applied without the check.
            (None, true, FeedKind::Stock, apply(0, 1, false)),
        ]);
    }

    #[test]
    fn a_done_object_is_a_repeat_even_released() {
        let done = || {
            Some(FeedState::Done {
                report: "reports/feeds/a/stock/x.csv.json".into(),
            })
        };
        check(vec![
            (done(), false, FeedKind::Stock, Step::Repeat),
            (done(), true, FeedKind::Stock, Step::Repeat),
        ]);
    }

    #[test]
    fn a_held_object_waits_for_its_release() {
        let reason = "the file has no valid rows".to_owned();
        let held = || {
            Some(FeedState::Held {
                reason: reason.clone(),
            })
        };
        check(vec![
            (
                held(),
                false,
                FeedKind::Stock,
                Step::StayHeld {
                    reason: reason.clone(),
                },
            ),
            // Released: applied from the start, unchecked.
            (held(), true, FeedKind::Stock, apply(0, 1, false)),
        ]);
    }

    #[test]
    fn an_import_in_progress_resumes_where_it_stopped() {
        check(vec![
            (in_progress(7, 2), false, FeedKind::Deliveries, apply(7, 3, false)),
            // Past the first chunk, the check was passed by an earlier invocation.
            (in_progress(7, 2), false, FeedKind::Stock, apply(7, 3, false)),
            // Stopped before its first chunk: checked again unless released.
            (in_progress(0, 1), false, FeedKind::Stock, apply(0, 2, true)),
            (in_progress(0, 1), true, FeedKind::Stock, apply(0, 2, false)),
        ]);
    }
}
