//! One object's import: what the store remembers of it decides where it
//! starts ([`next_step`]); a file from a supplier not configured, or over
//! the size cap, is refused ([`admit`]); a file read from the start is
//! read once first, for its row count and, if it is a stock file, its
//! safety checks ([`super::hold`]); valid rows are applied in chunks,
//! exactly once per object and chunk; near the end of its time the import
//! checkpoints where the next chunk starts in the object and continues in a
//! new invocation that reads on from there; at the end the report (and the
//! rejects) are written next to the feed.

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::apply::{apply_rows, zero_missing, Pace, Pass, Pause};
use super::hold::{file_hold, hold_reason, HoldPolicy, HoldReason, StockFileCounts};
use super::message::continuation;
use super::release::{release_request, Release};
use super::report::{rejects_key, rejects_part_key, Rejects, Report, ReportStatus, RowCounts, Subject};
use super::s3::{self, Body, Head};
use super::settings::Supplier;
use super::{AsOfWindow, FeedEffect, FeedError, FeedKey, FeedKind, FeedReader, FeedSettings, FeedSource};
use super::{FeedState, ObjectRef, Position, ReadOptions, Resume};
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
        let settings = FeedSettings::from_env()?;
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
    /// Imported before, unreadable, refused or stopped: a repeat changes nothing.
    Repeat,
    /// Held by the safety checks, and not released by ops: it stays held.
    StayHeld { reason: String },
    /// Apply the rows from chunk `from_chunk` (earlier ones were applied by
    /// earlier invocations), in the import's `invocation`th invocation;
    /// `check` first when it is a file seen for the first time.
    Apply {
        from_chunk: u64,
        invocation: u32,
        check: bool,
        /// When the object arrived, if it was seen before.
        as_of: Option<String>,
        /// The ops release it is imported under.
        release: Option<Release>,
        /// Where in the object chunk `from_chunk` starts, and what was counted before it.
        resume: Option<Resume>,
    },
    /// It has had every invocation it may (`FEED_MAX_INVOCATIONS`): it
    /// stops where it is, keeping what was applied.
    Stop {
        invocations: u32,
        release: Option<Release>,
        resume: Option<Resume>,
    },
}

/// Decides where an import starts from the object's stored state. Only a
/// release recorded by ops (the stock API) lets a held file through:
/// nothing on the object itself does. An import that has had
/// `max_invocations` goes no further.
pub fn next_step(state: Option<FeedState>, max_invocations: u32) -> Step {
    match state {
        Some(
            FeedState::Done { .. }
            | FeedState::Unreadable { .. }
            | FeedState::Refused { .. }
            | FeedState::Stopped { .. },
        ) => Step::Repeat,
        Some(FeedState::Held { reason, .. }) => Step::StayHeld { reason },
        Some(FeedState::Released { release, as_of }) => Step::Apply {
            from_chunk: 0,
            invocation: 1,
            check: false,
            as_of,
            release: Some(release),
            resume: None,
        },
        Some(FeedState::InProgress {
            invocations,
            release,
            resume,
            ..
        }) if invocations >= max_invocations => Step::Stop {
            invocations,
            release,
            resume,
        },
        // It passed its checks (or was released) before it started.
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            as_of,
            release,
            resume,
            ..
        }) => Step::Apply {
            from_chunk: next_chunk,
            invocation: invocations.saturating_add(1),
            check: false,
            as_of,
            release,
            resume,
        },
        // Every new file is read once first: for its row count, and a stock
        // file for its safety checks.
        None => Step::Apply {
            from_chunk: 0,
            invocation: 1,
            check: true,
            as_of: None,
            release: None,
            resume: None,
        },
    }
}

/// The supplier a file may be imported for, or why it is refused before a
/// byte of it is read: its supplier is not configured (`FEED_SUPPLIERS`:
/// there is no fallback), or it is larger than `FEED_MAX_BYTES`.
pub fn admit<'a>(key: &FeedKey, size: u64, settings: &'a FeedSettings) -> Result<&'a Supplier, String> {
    let Some(supplier) = settings.suppliers.get(&key.supplier) else {
        return Err(format!(
            "supplier {} is not configured (FEED_SUPPLIERS): no file of theirs is imported",
            key.supplier
        ));
    };
    let max = settings.caps.max_bytes;
    if size > max {
        return Err(format!(
            "the file is {size} bytes, more than FEED_MAX_BYTES ({max} bytes)"
        ));
    }
    Ok(supplier)
}

fn metric(values: &[(&str, f64)]) {
    alerts::metric(crate::METRIC_NAMESPACE, FUNCTION, values);
}

/// Imports one object; `Ok` whether it was applied, held, unreadable,
/// refused, stopped or a repeat; `Err` only for what a retry may fix.
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
    let caps = app.settings.caps;
    match next_step(app.store.feed_state(&job.src).await?, caps.max_invocations) {
        Step::Repeat => {
            tracing::info!(key = %object.key, etag = job.subject.etag.as_str(), "this object was imported before; nothing changes");
            metric(&[("FeedDuplicates", 1.0)]);
            Ok(())
        }
        Step::StayHeld { reason } => {
            tracing::info!(key = %object.key, reason, "held until released");
            Ok(())
        }
        Step::Stop {
            invocations,
            release,
            resume,
        } => {
            job.invocation = invocations;
            job.released(release);
            let reason = too_many_invocations(caps.max_invocations, resume.as_ref());
            job.stop(Pass::resumed(resume.as_ref())?, resume, reason).await
        }
        Step::Apply {
            from_chunk,
            invocation,
            check,
            as_of,
            release,
            resume,
        } => {
            job.invocation = invocation;
            if let Some(as_of) = as_of {
                job.last_modified = as_of;
            }
            job.released(release);
            let supplier = match admit(&job.key, job.head.size, &app.settings) {
                Ok(s) => s,
                // Nothing was applied yet: the file is refused whole.
                Err(reason) if from_chunk == 0 && resume.is_none() => return job.refuse(reason).await,
                // Its supplier was removed while it was being imported.
                Err(reason) => return job.stop(Pass::resumed(resume.as_ref())?, resume, reason).await,
            };
            job.import(supplier, from_chunk, check, resume, deadline).await
        }
    }
}

fn too_many_invocations(max: u32, resume: Option<&Resume>) -> String {
    let line = resume.map_or(String::new(), |r| {
        format!(
            ": rows before line {} are applied, the rest was not read",
            r.at.line
        )
    });
    format!("the import needed more than {max} invocations (FEED_MAX_INVOCATIONS){line}")
}

impl Pass {
    /// What a checkpoint says earlier invocations counted.
    fn resumed(resume: Option<&Resume>) -> Result<Self, ImportError> {
        let (rows, rejects, bytes) = resume.map_or((0, 0, 0), |r| (r.at.rows, r.parse_rejects, r.bytes_read));
        Pass::carried(rows, rejects, bytes)
    }
}

/// What the first read of a file decided.
enum Verdict {
    /// Import it.
    Pass,
    /// Over a cap: refused, nothing applied.
    Refuse(String),
    /// A stock file the safety checks hold until ops release it.
    Hold(HoldReason),
}

/// An import under way in this invocation.
struct Job<'a> {
    app: &'a Importer,
    object: &'a ObjectRef,
    key: FeedKey,
    head: Head,
    src: FeedSource,
    /// A stock row's `as_of` when it has none: when the object arrived.
    last_modified: String,
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
            supplier: key.supplier.clone(),
            note: None,
        };
        subject.etag = head.etag.clone();
        subject.supplier = src.supplier.clone();
        subject.kind = key.kind.name().into();
        Self {
            app,
            object,
            last_modified: head.last_modified.clone(),
            key,
            head,
            src,
            subject,
            invocation: 1,
            release: None,
            started,
        }
    }

    fn released(&mut self, release: Option<Release>) {
        self.src.note = release.as_ref().map(Release::note);
        self.release = release;
    }

    /// How the supplier's rows are read, judged against the import's clock.
    fn options(&self, supplier: &Supplier, clock: OffsetDateTime) -> ReadOptions {
        let caps = &self.app.settings.caps;
        ReadOptions {
            kind: self.key.kind,
            supplier: supplier.name.clone(),
            pool: self.key.pool.clone(),
            delivers_to: supplier.delivers_to.clone(),
            last_modified: self.last_modified.clone(),
            as_of: AsOfWindow {
                clock,
                future: caps.as_of_future,
                max_age: caps.as_of_max_age,
            },
            max_rows: caps.max_rows,
        }
    }

    async fn import(
        self,
        supplier: &Supplier,
        from_chunk: u64,
        check: bool,
        resume: Option<Resume>,
        deadline: Instant,
    ) -> Result<(), ImportError> {
        // The import's clock is when it began, in every invocation: a row's
        // `as_of` is judged alike by each of them.
        let began = match &resume {
            Some(r) => OffsetDateTime::parse(&r.clock, &Rfc3339)
                .map_err(|e| StoreError::Corrupt(format!("feed checkpoint clock {:?}: {e}", r.clock)))?,
            None => OffsetDateTime::now_utc(),
        };
        let options = self.options(supplier, began);
        if check {
            let Some(reader) = self.open(&options, None).await? else {
                return Ok(());
            };
            match self.first_read(reader).await? {
                Verdict::Pass => {}
                Verdict::Refuse(reason) => return self.refuse(reason).await,
                Verdict::Hold(reason) => return self.hold(reason).await,
            }
        }
        let at = resume.as_ref().map(|r| r.at);
        let Some(reader) = self.open(&options, at).await? else {
            return Ok(());
        };
        let settings = &self.app.settings;
        let from = at.map_or(0, |p| p.offset);
        let pace = Pace {
            from_offset: from,
            // A checkpoint without a position re-reads from the start.
            first_chunk: if at.is_some() { from_chunk } else { 0 },
            from_chunk,
            concurrency: settings.concurrency,
            deadline,
            margin: settings.margin_within(deadline.saturating_duration_since(self.started)),
        };
        let before = Pass::resumed(resume.as_ref())?;
        let pass = apply_rows(
            &self.app.store,
            reader,
            &self.src,
            self.key.kind.effect(),
            pace,
            before,
        )
        .await?;
        tracing::info!(key = %self.object.key, invocation = self.invocation, from_offset = from,
            bytes_read = pass.bytes_read, rows = pass.rows, "feed rows read");
        let parts = resume
            .as_ref()
            .map(|r| r.reject_parts.clone())
            .unwrap_or_default();
        match (pass.paused_at, pass.cut.clone()) {
            (_, Some(reason)) => self.finish(pass, &parts, Some(reason)).await,
            (Some(pause), None) => self.pause(pass, pause, from, parts, began).await,
            (None, None) => self.finish(pass, &parts, None).await,
        }
    }

    /// Time is nearly up: leaves this invocation's rejects as a part, then
    /// checkpoints, or stops if the import has had every invocation it may.
    async fn pause(
        self,
        mut pass: Pass,
        pause: Pause,
        from: u64,
        mut parts: Vec<(u64, u64)>,
        began: OffsetDateTime,
    ) -> Result<(), ImportError> {
        if pass.rejects.rows() > 0 {
            let part = (from, pause.at.offset);
            let key = rejects_part_key(&self.object.key, part.0, part.1);
            s3::put_csv(&self.app.s3, &self.object.bucket, &key, pass.rejects.finish()?).await?;
            parts.push(part);
        }
        let resume = Resume {
            at: pause.at,
            parse_rejects: pass.parse_rejects,
            reject_parts: parts,
            bytes_read: pass.bytes_read,
            clock: clock::format(began),
        };
        let max = self.app.settings.caps.max_invocations;
        if self.invocation >= max {
            let reason = too_many_invocations(max, Some(&resume));
            return self
                .stop(Pass::resumed(Some(&resume))?, Some(resume), reason)
                .await;
        }
        self.checkpoint(pause, resume).await
    }

    fn report(&self, status: ReportStatus) -> Report {
        Report::new(
            self.subject.clone(),
            status,
            self.invocation,
            self.started.elapsed(),
        )
    }

    /// Opens the object as rows, from its start or from `at`; `None` when
    /// it cannot be read as a feed (then reported as unreadable).
    async fn open(
        &self,
        options: &ReadOptions,
        at: Option<Position>,
    ) -> Result<Option<FeedReader<Body>>, ImportError> {
        let opened = s3::open(
            &self.app.s3,
            self.object,
            &self.head,
            self.key.format,
            options.clone(),
            at,
        )
        .await;
        match opened {
            Ok(r) => Ok(Some(r)),
            Err(ImportError::Feed(e @ FeedError::Unreadable(_))) => {
                let report = self.report(ReportStatus::Unreadable);
                unreadable(self.app, &self.src, report, &e.to_string()).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a new file once, without applying it: its rows must be within
    /// `FEED_MAX_ROWS`, and a stock file must pass its safety checks.
    async fn first_read(&self, reader: FeedReader<Body>) -> Result<Verdict, ImportError> {
        let pool = &self.key.pool;
        let counts = match StockFileCounts::read(reader, pool).await {
            Ok(c) => c,
            Err(e @ FeedError::TooManyRows(_)) => return Ok(Verdict::Refuse(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        if self.key.kind != FeedKind::Stock {
            return Ok(Verdict::Pass);
        }
        // The pool is only read for a file that could be applied at all.
        if let Some(reason) = file_hold(&counts) {
            return Ok(Verdict::Hold(reason));
        }
        let policy = HoldPolicy {
            stats: self.app.store.location_stats(pool).await?,
            share: self.app.settings.hold_share,
            zero_missing: self.app.settings.zero_missing_for(&self.key.supplier),
        };
        Ok(hold_reason(&counts, pool, policy).map_or(Verdict::Pass, Verdict::Hold))
    }

    /// Holds the file until ops release it: the state, the alert that says
    /// so (sent from the table's stream, like every alert), the report.
    async fn hold(self, reason: HoldReason) -> Result<(), ImportError> {
        let (object, app) = (self.object, self.app);
        let reason = reason.to_string();
        let release = release_request(&object.key, &self.subject.etag);
        let held = FeedState::Held {
            reason: reason.clone(),
            as_of: Some(self.last_modified.clone()),
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

    /// Refuses the file whole, before anything of it is applied: the
    /// report, the state (a redelivery changes nothing) and its alert.
    async fn refuse(self, reason: String) -> Result<(), ImportError> {
        let (object, app) = (self.object, self.app);
        tracing::warn!(key = %object.key, reason, "feed refused");
        let mut report = self.report(ReportStatus::Refused);
        report.reason = Some(reason.clone());
        s3::put_report(&app.s3, &report).await?;
        let alert = json!({"id": format!("feed_refused:{}", self.src.id()), "kind": "feed_refused", "feed": object.key,
            "bucket": object.bucket, "etag": self.subject.etag, "supplier": self.src.supplier, "reason": reason,
            "report": report.key(), "at": clock::now()});
        app.store
            .save_feed_state(&self.src, &FeedState::Refused { reason }, Some(&alert))
            .await?;
        metric(&[("FeedFilesRefused", 1.0)]);
        Ok(())
    }

    /// Stops the import where it is, for good: what was applied stays; the
    /// report says why and how far it got.
    async fn stop(self, pass: Pass, resume: Option<Resume>, reason: String) -> Result<(), ImportError> {
        let parts = resume.map(|r| r.reject_parts).unwrap_or_default();
        self.finish(pass, &parts, Some(reason)).await
    }

    /// Saves where the import stopped and queues the rest for a new invocation.
    async fn checkpoint(self, pause: Pause, resume: Resume) -> Result<(), ImportError> {
        let state = FeedState::InProgress {
            next_chunk: pause.chunk,
            invocations: self.invocation,
            started_at: clock::now(),
            as_of: Some(self.last_modified.clone()),
            release: self.release.clone(),
            resume: Some(resume),
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
        tracing::info!(key = %self.object.key, next_chunk = pause.chunk, offset = pause.at.offset, line = pause.at.line,
            "time nearly up: checkpointed, continuing in a new invocation");
        Ok(())
    }

    /// Joins the rejects: the parts earlier invocations left, this
    /// invocation's, then the rows the store refused; uploads them and
    /// removes the parts. Returns where they are.
    async fn rejects(
        &self,
        pass: &mut Pass,
        parts: &[(u64, u64)],
        totals: &super::ChunkSummary,
    ) -> Result<String, ImportError> {
        let (s3c, bucket) = (&self.app.s3, &self.object.bucket);
        let mut whole = Rejects::create()?;
        for &(start, end) in parts {
            s3::append_to(
                s3c,
                bucket,
                &rejects_part_key(&self.object.key, start, end),
                &mut whole,
            )
            .await?;
        }
        whole.append_part(&mut pass.rejects)?;
        whole.push_refused(totals)?;
        let key = rejects_key(&self.object.key);
        s3::put_csv(s3c, bucket, &key, whole.finish()?).await?;
        for &(start, end) in parts {
            s3::delete(s3c, bucket, &rejects_part_key(&self.object.key, start, end)).await?;
        }
        Ok(key)
    }

    /// Every row is applied (or, `stopped`, the import ends early): zero
    /// what a complete file left out, report, remember.
    async fn finish(
        self,
        mut pass: Pass,
        parts: &[(u64, u64)],
        stopped: Option<String>,
    ) -> Result<(), ImportError> {
        let (object, app, src) = (self.object, self.app, &self.src);
        let mut zeroed_missing = 0;
        if stopped.is_none()
            && self.key.kind.effect() == FeedEffect::Count
            && app.settings.zero_missing_for(&src.supplier)
        {
            zeroed_missing = zero_missing(&app.store, src, &self.key.pool, &self.last_modified).await?;
        }
        let totals = app.store.feed_totals(src).await?;
        let rejected = pass.parse_rejects + totals.rejected.len() as u64;
        let status = match stopped {
            Some(_) => ReportStatus::Stopped,
            None => ReportStatus::Applied,
        };
        let mut report = self.report(status);
        report.reason = stopped.clone();
        report.rows = RowCounts {
            rows_read: pass.rows,
            applied: totals.applied,
            rejected,
            skipped_stale: totals.stale,
            duplicates: totals.duplicates,
            zeroed_missing,
        };
        report.bytes_read = pass.bytes_read;
        if rejected > 0 {
            report.rejects = Some(self.rejects(&mut pass, parts, &totals).await?);
        }
        drop(pass);
        report.released = self.release.clone();
        s3::put_report(&app.s3, &report).await?;
        let base = json!({"feed": object.key, "bucket": object.bucket, "etag": self.subject.etag,
            "supplier": src.supplier, "rejected": rejected, "applied": report.rows.applied,
            "rejects": report.rejects, "report": report.key(), "at": clock::now()});
        let alert = match &stopped {
            Some(reason) => Some(with(base, "feed_stopped", src, &[("reason", json!(reason))])),
            None => (rejected > 0).then(|| with(base, "feed_rejects", src, &[])),
        };
        let state = match stopped {
            Some(reason) => FeedState::Stopped {
                reason,
                report: report.key(),
            },
            None => FeedState::Done { report: report.key() },
        };
        app.store.save_feed_state(src, &state, alert.as_ref()).await?;
        let rows = &report.rows;
        tracing::info!(key = %object.key, status = state.name(), applied = rows.applied, rejected, stale = rows.skipped_stale,
            duplicates = rows.duplicates, rows = rows.rows_read, bytes_read = report.bytes_read, ms = report.duration_ms, "feed imported");
        metric(&[
            ("FeedRowsApplied", rows.applied as f64),
            ("FeedRowsRejected", rejected as f64),
            ("FeedFilesWithRejects", f64::from(u8::from(rejected > 0))),
            (
                "FeedFilesStopped",
                f64::from(u8::from(report.status == ReportStatus::Stopped)),
            ),
        ]);
        Ok(())
    }
}

/// An alert of `kind` about a feed: `fields` with its id and kind added.
fn with(
    mut fields: serde_json::Value,
    kind: &str,
    src: &FeedSource,
    extra: &[(&str, serde_json::Value)],
) -> serde_json::Value {
    fields["id"] = json!(format!("{kind}:{}", src.id()));
    fields["kind"] = json!(kind);
    for (k, v) in extra {
        fields[*k] = v.clone();
    }
    fields
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
    use crate::feed::Suppliers;

    const ARRIVED: &str = "2026-11-22T06:00:00.000000Z";
    const MAX: u32 = 20;

    fn release() -> Release {
        Release {
            actor: "maria".into(),
            reason: "checked with acme".into(),
            at: "2026-11-22T10:00:00.000000Z".into(),
        }
    }

    fn resume_at(offset: u64, line: u64) -> Resume {
        Resume {
            at: Position {
                offset,
                line,
                rows: line - 2,
                columns: None,
            },
            parse_rejects: 1,
            reject_parts: vec![(0, offset)],
            bytes_read: offset,
            clock: "2026-11-22T08:00:00.000000Z".into(),
        }
    }

    fn in_progress(
        next_chunk: u64,
        invocations: u32,
        release: Option<Release>,
        resume: Option<Resume>,
    ) -> Option<FeedState> {
        Some(FeedState::InProgress {
            next_chunk,
            invocations,
            started_at: "2026-11-22T08:00:00.000000Z".into(),
            as_of: Some(ARRIVED.into()),
            release,
            resume,
        })
    }

    fn apply(
        from_chunk: u64,
        invocation: u32,
        check: bool,
        release: Option<Release>,
        resume: Option<Resume>,
    ) -> Step {
        Step::Apply {
            from_chunk,
            invocation,
            check,
            as_of: (from_chunk > 0 || invocation > 1 || release.is_some()).then(|| ARRIVED.into()),
            release,
            resume,
        }
    }

    /// Each case: the stored state and the step expected.
    fn check(cases: Vec<(Option<FeedState>, Step)>) {
        for (i, (state, expected)) in cases.into_iter().enumerate() {
            assert_eq!(next_step(state, MAX), expected, "case {i}");
        }
    }

    #[test]
    fn a_new_object_starts_at_the_beginning_and_is_read_first() {
        // Every kind: the first read counts its rows (FEED_MAX_ROWS) and
        // checks a stock file before anything is applied.
        check(vec![(None, apply(0, 1, true, None, None))]);
    }

    #[test]
    fn a_done_unreadable_refused_or_stopped_object_is_a_repeat() {
        let done = Some(FeedState::Done {
            report: "reports/feeds/a/stock/x.csv.json".into(),
        });
        let unreadable = Some(FeedState::Unreadable {
            reason: "no sku column".into(),
        });
        let refused = Some(FeedState::Refused {
            reason: "supplier initech is not configured".into(),
        });
        let stopped = Some(FeedState::Stopped {
            reason: "more than 20 invocations".into(),
            report: "r".into(),
        });
        check(vec![
            (done, Step::Repeat),
            (unreadable, Step::Repeat),
            (refused, Step::Repeat),
            (stopped, Step::Repeat),
        ]);
    }

    #[test]
    fn a_held_object_waits_for_ops_to_release_it() {
        let reason = "the file has no valid rows".to_owned();
        let held = Some(FeedState::Held {
            reason: reason.clone(),
            as_of: Some(ARRIVED.into()),
        });
        check(vec![(held, Step::StayHeld { reason })]);
        // Released by ops: applied from the start, unchecked, as of when it arrived.
        let released = Some(FeedState::Released {
            release: release(),
            as_of: Some(ARRIVED.into()),
        });
        check(vec![(released, apply(0, 1, false, Some(release()), None))]);
    }

    #[test]
    fn an_import_in_progress_resumes_where_it_stopped_as_of_when_it_arrived() {
        let at = resume_at(4096, 200);
        check(vec![
            // Where the next chunk starts in the object, and what was counted before it.
            (
                in_progress(7, 2, None, Some(at.clone())),
                apply(7, 3, false, None, Some(at.clone())),
            ),
            // A checkpoint from before offsets: re-read, skipping to its chunk.
            (in_progress(7, 2, None, None), apply(7, 3, false, None, None)),
            (in_progress(0, 1, None, None), apply(0, 2, false, None, None)),
            // A released import keeps its release to the end.
            (
                in_progress(3, 1, Some(release()), Some(at.clone())),
                apply(3, 2, false, Some(release()), Some(at)),
            ),
        ]);
    }

    #[test]
    fn an_import_that_had_every_invocation_it_may_stops() {
        let at = resume_at(4096, 200);
        check(vec![
            (
                in_progress(7, MAX - 1, None, Some(at.clone())),
                apply(7, MAX, false, None, Some(at.clone())),
            ),
            (
                in_progress(7, MAX, Some(release()), Some(at.clone())),
                Step::Stop {
                    invocations: MAX,
                    release: Some(release()),
                    resume: Some(at.clone()),
                },
            ),
        ]);
        assert_eq!(
            too_many_invocations(MAX, Some(&at)),
            "the import needed more than 20 invocations (FEED_MAX_INVOCATIONS): \
             rows before line 200 are applied, the rest was not read"
        );
    }

    #[test]
    fn a_checkpoint_reads_back_as_it_was_written() {
        let state = in_progress(7, 2, None, Some(resume_at(4096, 200))).unwrap();
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<FeedState>(&text).unwrap(), state);
        // One written before imports resumed by offset has no position.
        let old = r#"{"status":"in_progress","next_chunk":3,"invocations":1,"started_at":"x"}"#;
        assert!(matches!(
            serde_json::from_str::<FeedState>(old).unwrap(),
            FeedState::InProgress {
                resume: None,
                next_chunk: 3,
                ..
            }
        ));
    }

    fn settings(suppliers: &str) -> FeedSettings {
        let mut s = FeedSettings::from_vars(|_| None).unwrap();
        s.suppliers = Suppliers::parse(suppliers).unwrap();
        s
    }

    #[test]
    fn only_a_configured_supplier_s_file_within_the_size_cap_is_admitted() {
        let s = settings("acme=warehouse,warehouse=downtown");
        let key = |k: &str| FeedKey::parse(k).unwrap();
        let max = s.caps.max_bytes;
        let acme = admit(&key("feeds/acme/deliveries/a.csv"), max, &s).unwrap();
        assert_eq!((acme.name.as_str(), acme.pool.as_str()), ("acme", "pool:acme"));
        // A supplier named like a location is a supplier like any other: its pool is its own.
        let w = admit(&key("feeds/warehouse/stock/a.csv"), 10, &s).unwrap();
        assert_eq!(w.pool.as_str(), "pool:warehouse");
        assert_eq!(
            admit(&key("feeds/initech/stock/a.csv"), 10, &s).unwrap_err(),
            "supplier initech is not configured (FEED_SUPPLIERS): no file of theirs is imported"
        );
        assert_eq!(
            admit(&key("feeds/acme/stock/a.csv"), max + 1, &s).unwrap_err(),
            format!(
                "the file is {} bytes, more than FEED_MAX_BYTES ({max} bytes)",
                max + 1
            )
        );
        // With no supplier configured, every file is refused.
        assert!(admit(&key("feeds/acme/stock/a.csv"), 10, &settings("")).is_err());
    }
}
