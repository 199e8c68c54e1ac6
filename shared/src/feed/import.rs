//! One object's import: what the store remembers of it decides where it
//! starts ([`next_step`]); a stock file read from the start is checked
//! first ([`super::hold`]); valid rows are applied in chunks, exactly once
//! per object and chunk; near the end of its time the import checkpoints
//! and continues in a new invocation; at the end the report (and the
//! rejects) are written next to the feed.

use serde_json::json;
use tokio::time::Instant;

use super::apply::{apply_rows, zero_missing, Pace, Pass};
use super::hold::{file_hold, hold_reason, HoldPolicy, HoldReason, StockFileCounts};
use super::message::continuation;
use super::release::{release_request, Release};
use super::report::{rejects_key, Report, ReportStatus, RowCounts, Subject};
use super::s3::{self, Body, Head};
use super::{FeedEffect, FeedError, FeedKey, FeedKind, FeedReader, FeedSettings, FeedSource, FeedState};
use super::{ObjectRef, ReadOptions};
use crate::alerts;
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
        Ok(Self {
            store: StockStore::from_config(&sdk, &cfg),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(local)
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::new(&sdk),
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
    /// Imported before, or unreadable: a repeat changes nothing.
    Repeat,
    /// Held by the safety checks, and not released by ops: it stays held.
    StayHeld { reason: String },
    /// Apply the rows from chunk `from_chunk` (earlier ones were applied by
    /// earlier invocations), in the import's `invocation`th invocation;
    /// `check` first when it is a stock file seen for the first time.
    Apply {
        from_chunk: u64,
        invocation: u32,
        check: bool,
        /// When the object arrived, if it was seen before.
        as_of: Option<String>,
        /// The ops release it is imported under.
        release: Option<Release>,
    },
}

/// Decides where an import starts from the object's stored state and its
/// kind. Only a release recorded by ops (the stock API) lets a held file
/// through: nothing on the object itself does.
pub fn next_step(state: Option<FeedState>, kind: FeedKind) -> Step {
    match state {
        Some(FeedState::Done { .. } | FeedState::Unreadable { .. }) => Step::Repeat,
        Some(FeedState::Held { reason, .. }) => Step::StayHeld { reason },
        Some(FeedState::Released { release, as_of }) => Step::Apply {
            from_chunk: 0,
            invocation: 1,
            check: false,
            as_of,
            release: Some(release),
        },
        // It passed its checks (or was released) before it started.
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            as_of,
            release,
            ..
        }) => Step::Apply {
            from_chunk: next_chunk,
            invocation: invocations.saturating_add(1),
            check: false,
            as_of,
            release,
        },
        None => Step::Apply {
            from_chunk: 0,
            invocation: 1,
            check: kind == FeedKind::Stock,
            as_of: None,
            release: None,
        },
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
            let src = FeedSource {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                version: object.etag.clone().unwrap_or_default(),
                supplier: String::new(),
                note: None,
            };
            let report = Report::new(subject, ReportStatus::Unreadable, 0, started.elapsed());
            return unreadable(app, &src, report, &e.to_string()).await;
        }
    };
    let Some(head) = s3::head(&app.s3, object).await? else {
        tracing::warn!(key = %object.key, "the object is gone; nothing to import");
        return Ok(());
    };
    let mut job = Job::new(app, object, key, subject, head, started);
    match next_step(app.store.feed_state(&job.src).await?, job.key.kind) {
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
            as_of,
            release,
        } => {
            job.invocation = invocation;
            if let Some(as_of) = as_of {
                job.options.last_modified = as_of;
            }
            job.src.note = release.as_ref().map(Release::note);
            job.release = release;
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
    /// The ops release it is imported under, if it was held.
    release: Option<Release>,
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
            note: None,
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
            release: None,
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
                let report = self.report(ReportStatus::Unreadable);
                unreadable(self.app, &self.src, report, &e.to_string()).await?;
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

    /// Holds the file until ops release it: the state, the alert that says
    /// so (sent from the table's stream, like every alert), the report.
    async fn hold(self, reason: HoldReason) -> Result<(), ImportError> {
        let (object, app) = (self.object, self.app);
        let reason = reason.to_string();
        let release = release_request(&object.key, &self.subject.etag);
        let held = FeedState::Held {
            reason: reason.clone(),
            as_of: Some(self.options.last_modified.clone()),
        };
        let alert = json!({"id": format!("feed_held:{}", self.src.id()), "kind": "feed_held", "feed": object.key, "bucket": object.bucket,
            "etag": self.subject.etag, "supplier": self.src.supplier, "reason": reason,
            "release": release, "at": clock::now()});
        let mut report = self.report(ReportStatus::Held);
        report.reason = Some(reason);
        report.release = Some(release);
        s3::put_report(&app.s3, &report).await?;
        app.store.save_feed_state(&self.src, &held, Some(&alert)).await?;
        metric(&[("FeedFilesHeld", 1.0)]);
        Ok(())
    }

    /// Saves where the import stopped and queues the rest for a new invocation.
    async fn checkpoint(self, next_chunk: u64) -> Result<(), ImportError> {
        let state = FeedState::InProgress {
            next_chunk,
            invocations: self.invocation,
            started_at: clock::now(),
            as_of: Some(self.options.last_modified.clone()),
            release: self.release.clone(),
        };
        self.app.store.save_feed_state(&self.src, &state, None).await?;
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
        report.released = self.release.clone();
        s3::put_report(&app.s3, &report).await?;
        let alert = (rejected > 0).then(|| {
            json!({"id": format!("feed_rejects:{}", src.id()), "kind": "feed_rejects", "feed": object.key, "bucket": object.bucket,
                "etag": self.subject.etag, "supplier": src.supplier, "rejected": rejected,
                "applied": report.rows.applied, "rejects": report.rejects, "report": report.key(),
                "at": clock::now()})
        });
        let done = FeedState::Done { report: report.key() };
        app.store.save_feed_state(src, &done, alert.as_ref()).await?;
        let rows = &report.rows;
        tracing::info!(key = %object.key, applied = rows.applied, rejected, stale = rows.skipped_stale,
            duplicates = rows.duplicates, rows = rows.rows_read, ms = report.duration_ms, "feed imported");
        metric(&[
            ("FeedRowsApplied", rows.applied as f64),
            ("FeedRowsRejected", rejected as f64),
            ("FeedFilesWithRejects", f64::from(u8::from(rejected > 0))),
        ]);
        Ok(())
    }
}

/// Reports a file that cannot be read as a feed, and remembers it: a retry
/// would not help, so a redelivery changes nothing.
async fn unreadable(
    app: &Importer,
    src: &FeedSource,
    mut report: Report,
    why: &str,
) -> Result<(), ImportError> {
    tracing::warn!(key = %report.subject.feed, why, "unreadable feed");
    report.reason = Some(why.to_owned());
    s3::put_report(&app.s3, &report).await?;
    let alert = json!({"id": format!("feed_unreadable:{}", src.id()), "kind": "feed_unreadable", "feed": report.subject.feed,
        "bucket": report.subject.bucket, "etag": src.version, "reason": why, "at": clock::now()});
    let state = FeedState::Unreadable {
        reason: why.to_owned(),
    };
    app.store.save_feed_state(src, &state, Some(&alert)).await?;
    metric(&[("FeedFilesUnreadable", 1.0)]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVED: &str = "2026-11-22T06:00:00.000000Z";

    fn release() -> Release {
        Release {
            actor: "maria".into(),
            reason: "checked with acme".into(),
            at: "2026-11-22T10:00:00.000000Z".into(),
        }
    }

    fn in_progress(next_chunk: u64, invocations: u32, release: Option<Release>) -> Option<FeedState> {
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            started_at: "2026-11-22T08:00:00.000000Z".into(),
            as_of: Some(ARRIVED.into()),
            release,
        })
    }

    fn apply(from_chunk: u64, invocation: u32, check: bool, release: Option<Release>) -> Step {
        Step::Apply {
            from_chunk,
            invocation,
            check,
            as_of: (from_chunk > 0 || invocation > 1 || release.is_some()).then(|| ARRIVED.into()),
            release,
        }
    }

    /// Each case: the stored state, the kind, and the step expected.
    fn check(cases: Vec<(Option<FeedState>, FeedKind, Step)>) {
        for (i, (state, kind, expected)) in cases.into_iter().enumerate() {
            assert_eq!(next_step(state, kind), expected, "case {i}");
        }
    }

    #[test]
    fn a_new_object_starts_at_the_beginning_and_stock_files_are_checked() {
        check(vec![
            (None, FeedKind::Deliveries, apply(0, 1, false, None)),
            (None, FeedKind::Stock, apply(0, 1, true, None)),
        ]);
    }

    #[test]
    fn a_done_or_unreadable_object_is_a_repeat() {
        let done = Some(FeedState::Done {
            report: "reports/feeds/a/stock/x.csv.json".into(),
        });
        let unreadable = Some(FeedState::Unreadable {
            reason: "no sku column".into(),
        });
        check(vec![
            (done, FeedKind::Stock, Step::Repeat),
            (unreadable, FeedKind::Deliveries, Step::Repeat),
        ]);
    }

    #[test]
    fn a_held_object_waits_for_ops_to_release_it() {
        let reason = "the file has no valid rows".to_owned();
        let held = Some(FeedState::Held {
            reason: reason.clone(),
            as_of: Some(ARRIVED.into()),
        });
        check(vec![(held, FeedKind::Stock, Step::StayHeld { reason })]);
        // Released by ops: applied from the start, unchecked, as of when it arrived.
        let released = Some(FeedState::Released {
            release: release(),
            as_of: Some(ARRIVED.into()),
        });
        check(vec![(
            released,
            FeedKind::Stock,
            apply(0, 1, false, Some(release())),
        )]);
    }

    #[test]
    fn an_import_in_progress_resumes_where_it_stopped_as_of_when_it_arrived() {
        check(vec![
            (
                in_progress(7, 2, None),
                FeedKind::Deliveries,
                apply(7, 3, false, None),
            ),
            // It passed its check before it started.
            (in_progress(7, 2, None), FeedKind::Stock, apply(7, 3, false, None)),
            (in_progress(0, 1, None), FeedKind::Stock, apply(0, 2, false, None)),
            // A released import keeps its release to the end.
            (
                in_progress(3, 1, Some(release())),
                FeedKind::Stock,
                apply(3, 2, false, Some(release())),
            ),
        ]);
    }
}
