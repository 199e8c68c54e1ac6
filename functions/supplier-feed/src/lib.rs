//! `supplier-feed`: supplier files dropped under `feeds/` in the feed bucket
//! (S3 `ObjectCreated` → SQS → here) become stock. The object is streamed,
//! never loaded whole; valid rows are applied in chunks with bounded
//! concurrency, exactly once per object and chunk; bad rows are reported
//! next to the feed (`reports/<key>.json`, `rejects/<key>.csv`). A stock
//! file that looks empty, truncated or destructive is held until released.
//! Near the end of its time the import checkpoints and continues in a new
//! invocation.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_s3::primitives::ByteStream;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use stockroom::alerts::{self, Alerts};
use stockroom::config::{self, Config, ConfigError};
use stockroom::domain::Location;
use stockroom::feed::{self, FeedError, FeedItem, FeedKey, FeedKind, FeedReader, ReadOptions, RejectedRow};
use stockroom::feed::{ChunkSummary, FeedEffect, FeedRowInput, FeedSource, FeedState, ROWS_PER_FEED_CHUNK};
use stockroom::store::{StockStore, StoreError};
use tokio::time::Instant;

/// Object metadata that releases a held stock file: its value is the ETag.
pub const RELEASE_METADATA: &str = "stockroom-release";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("S3: {0}")]
    S3(String),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error("writing the rejects file: {0}")]
    Io(#[from] std::io::Error),
    #[error("SQS: {0}")]
    Sqs(String),
}

fn s3_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> ImportError {
    ImportError::S3(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
}

/// How imports behave: from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_location: Location,
    /// `FEED_QUEUE_URL`: where an import sends its own continuation.
    pub queue_url: Option<String>,
    /// `FEED_HOLD_SHARE` (default 0.3): the share of a pool a stock file may
    /// zero (or, for zero-missing suppliers, leave out or cut) before it is held.
    pub hold_share: f64,
    /// `FEED_ZERO_MISSING`: suppliers whose stock files are complete: SKUs
    /// of their pool missing from a file are set to zero.
    pub zero_missing: Vec<String>,
    /// `FEED_CONCURRENCY` (default 4): chunks written at once.
    pub concurrency: usize,
    /// Time kept in hand: no new chunk starts with less left than this
    /// (or a quarter of the invocation, if that is less).
    pub margin: Duration,
}

/// Everything the handler needs, built once per container.
pub struct App {
    pub store: StockStore,
    pub s3: aws_sdk_s3::Client,
    pub sqs: stockroom::aws_sdk_sqs::Client,
    pub alerts: Alerts,
    pub settings: Settings,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        let invalid = |name: &'static str, message: &str| ConfigError::Invalid {
            name,
            message: message.into(),
        };
        let hold_share = match env_var("FEED_HOLD_SHARE") {
            None => 0.3,
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=1.0).contains(s))
                .ok_or_else(|| invalid("FEED_HOLD_SHARE", "must be a share from 0 to 1"))?,
        };
        let concurrency = match env_var("FEED_CONCURRENCY") {
            None => 4,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=32).contains(c))
                .ok_or_else(|| invalid("FEED_CONCURRENCY", "must be 1 to 32"))?,
        };
        let sqs = stockroom::aws_sdk_sqs::Client::new(&sdk);
        Ok(Self {
            store: StockStore::new(
                stockroom::aws_sdk_dynamodb::Client::new(&sdk),
                cfg.table,
                cfg.receipt_ttl_days,
            ),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(env_var("AWS_ENDPOINT_URL").is_some())
                    .build(),
            ),
            alerts: Alerts::new(sqs.clone(), cfg.alert_queue_url),
            sqs,
            settings: Settings {
                default_location: cfg.locations.default_location().clone(),
                queue_url: env_var("FEED_QUEUE_URL"),
                hold_share,
                zero_missing: env_var("FEED_ZERO_MISSING")
                    .map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                concurrency,
                margin: Duration::from_secs(30),
            },
        })
    }
}

/// One object to import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// Decoded.
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// Reads an SQS message body: an S3 event notification (keys URL-encoded),
/// S3's test event, or an import's own continuation.
pub fn objects_in(body: &str) -> Result<Vec<ObjectRef>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(c) = v.get("continue") {
        return serde_json::from_value(c.clone())
            .map(|o| vec![o])
            .map_err(|e| format!("bad continuation: {e}"));
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = v
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("neither an S3 event nor a continuation")?;
    let mut out = Vec::new();
    for r in records {
        if !r["eventName"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ObjectCreated")
        {
            continue;
        }
        let raw_key = r["s3"]["object"]["key"]
            .as_str()
            .ok_or("S3 record without a key")?;
        out.push(ObjectRef {
            bucket: r["s3"]["bucket"]["name"]
                .as_str()
                .ok_or("S3 record without a bucket")?
                .to_owned(),
            key: feed::decode_s3_key(raw_key).map_err(|e| e.to_string())?,
            etag: r["s3"]["object"]["eTag"]
                .as_str()
                .map(|e| e.trim_matches('"').to_owned()),
            version_id: r["s3"]["object"]["versionId"].as_str().map(str::to_owned),
        });
    }
    Ok(out)
}

/// The report written next to a feed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    pub feed: String,
    pub bucket: String,
    pub etag: String,
    pub supplier: String,
    pub kind: String,
    /// `applied`, `held`, `unreadable`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rows_read: u64,
    pub applied: u64,
    pub rejected: u64,
    pub skipped_stale: u64,
    pub duplicates: u64,
    /// SKUs of the pool set to zero because the file left them out (zero-missing suppliers).
    pub zeroed_missing: u64,
    pub duration_ms: u64,
    pub invocations: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejects: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// Handles a batch of feed messages; failures are retried, then dead-lettered.
pub async fn handle(app: &App, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let objects = match objects_in(record.body.as_deref().unwrap_or_default()) {
            Ok(o) => o,
            Err(e) => {
                // Retrying cannot help, but dropping would lose it: after the
                // queue's receive count it moves to the dead-letter queue.
                tracing::error!(message_id = %id, error = %e, "unreadable feed message");
                let mut f = BatchItemFailure::default();
                f.item_identifier = id.clone();
                response.batch_item_failures.push(f);
                continue;
            }
        };
        for object in objects {
            if let Err(e) = import(app, &object, deadline).await {
                tracing::error!(bucket = %object.bucket, key = %object.key, error = %e, "feed import failed; will retry");
                let mut f = BatchItemFailure::default();
                f.item_identifier = id.clone();
                response.batch_item_failures.push(f);
                break;
            }
        }
    }
    response
}

/// Where a report or rejects file for a feed goes.
fn beside(prefix: &str, key: &str, ext: &str) -> String {
    format!("{prefix}/{key}.{ext}")
}

async fn put(
    app: &App,
    bucket: &str,
    key: &str,
    body: ByteStream,
    content_type: &str,
) -> Result<(), ImportError> {
    app.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body)
        .send()
        .await
        .map_err(s3_err)?;
    Ok(())
}

async fn write_report(app: &App, report: &Report) -> Result<(), ImportError> {
    let body = serde_json::to_vec_pretty(report).map_err(|e| ImportError::S3(e.to_string()))?;
    put(
        app,
        &report.bucket,
        &beside("reports", &report.feed, "json"),
        ByteStream::from(body),
        "application/json",
    )
    .await
}

/// Imports one object; `Ok` whether it was applied, held, unreadable or a
/// repeat; `Err` only for what a retry may fix.
pub async fn import(app: &App, object: &ObjectRef, deadline: Instant) -> Result<(), ImportError> {
    let started = Instant::now();
    if !object.key.starts_with("feeds/") {
        tracing::info!(key = %object.key, "not under feeds/; ignored");
        return Ok(());
    }
    let mut report = Report {
        feed: object.key.clone(),
        bucket: object.bucket.clone(),
        ..Report::default()
    };
    let key = match FeedKey::parse(&object.key) {
        Ok(k) => k,
        Err(e) => return unreadable(app, report, &e.to_string(), started).await,
    };
    let head = match app
        .s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await
    {
        Ok(h) => h,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
            tracing::warn!(key = %object.key, "the object is gone; nothing to import");
            return Ok(());
        }
        Err(e) => return Err(s3_err(e)),
    };
    let etag = head
        .e_tag()
        .map(|e| e.trim_matches('"').to_owned())
        .or_else(|| object.etag.clone())
        .unwrap_or_default();
    let src = FeedSource {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        version: etag.clone(),
        supplier: key.supplier.to_string(),
    };
    report.etag = etag.clone();
    report.supplier = src.supplier.clone();
    report.kind = match key.kind {
        FeedKind::Deliveries => "deliveries",
        FeedKind::Stock => "stock",
    }
    .into();
    let released = head
        .metadata()
        .and_then(|m| m.get(RELEASE_METADATA))
        .is_some_and(|v| v.trim_matches('"') == etag || v == "yes");
    let last_modified = head
        .last_modified()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
        .map(stockroom::clock::format)
        .unwrap_or_else(stockroom::clock::now);
    let options = ReadOptions {
        kind: key.kind,
        default_location: app.settings.default_location.clone(),
        pool: key.supplier.clone(),
        last_modified,
    };
    let (mut next_chunk, mut invocations) = (0u64, 1u32);
    match app.store.feed_state(&src).await? {
        Some(FeedState::Done { .. }) => {
            tracing::info!(key = %object.key, etag, "this object was imported before; nothing changes");
            alerts::metric(
                stockroom::METRIC_NAMESPACE,
                "supplier-feed",
                &[("FeedDuplicates", 1.0)],
            );
            return Ok(());
        }
        Some(FeedState::Held { reason }) if !released => {
            tracing::info!(key = %object.key, reason, "held until released");
            return Ok(());
        }
        Some(FeedState::InProgress {
            next_chunk: n,
            invocations: i,
            ..
        }) => {
            next_chunk = n;
            invocations = i + 1;
        }
        _ => {}
    }
    report.invocations = invocations;

    if key.kind == FeedKind::Stock && !released && next_chunk == 0 {
        let reader = match open(app, object, &key, options.clone()).await {
            Ok(r) => r,
            Err(ImportError::Feed(e @ FeedError::Unreadable(_))) => {
                return unreadable(app, report, &e.to_string(), started).await
            }
            Err(e) => return Err(e),
        };
        if let Some(reason) = safety_check(app, reader, &key).await? {
            let release = format!(
                "aws s3 cp 's3://{b}/{k}' 's3://{b}/{k}' --metadata {RELEASE_METADATA}={etag} --metadata-directive REPLACE",
                b = object.bucket,
                k = object.key
            );
            app.store
                .save_feed_state(
                    &src,
                    &FeedState::Held {
                        reason: reason.clone(),
                    },
                )
                .await?;
            report.status = "held".into();
            report.reason = Some(reason.clone());
            report.release = Some(release.clone());
            report.duration_ms = started.elapsed().as_millis() as u64;
            write_report(app, &report).await?;
            let _ = app
                .alerts
                .send(&json!({"kind": "feed_held", "feed": object.key, "bucket": object.bucket,
                    "supplier": src.supplier, "reason": reason, "release": release, "at": stockroom::clock::now()}))
                .await;
            alerts::metric(
                stockroom::METRIC_NAMESPACE,
                "supplier-feed",
                &[("FeedFilesHeld", 1.0)],
            );
            return Ok(());
        }
    }

    let reader = match open(app, object, &key, options.clone()).await {
        Ok(r) => r,
        Err(ImportError::Feed(e @ FeedError::Unreadable(_))) => {
            return unreadable(app, report, &e.to_string(), started).await
        }
        Err(e) => return Err(e),
    };
    let effect = match key.kind {
        FeedKind::Deliveries => FeedEffect::Add,
        FeedKind::Stock => FeedEffect::Count,
    };
    let rejects_path = std::env::temp_dir().join(format!("stockroom-rejects-{:016x}.csv", fastrand::u64(..)));
    // Keep 30 s in hand, or a quarter of a short invocation.
    let margin = app
        .settings
        .margin
        .min(deadline.saturating_duration_since(started) / 4);
    let outcome = apply_rows(
        app,
        reader,
        &src,
        effect,
        next_chunk,
        (deadline, margin),
        &rejects_path,
    )
    .await;
    let pass = match outcome {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&rejects_path);
            return Err(e);
        }
    };
    if let Some(next) = pass.paused_at {
        let _ = std::fs::remove_file(&rejects_path);
        app.store
            .save_feed_state(
                &src,
                &FeedState::InProgress {
                    next_chunk: next,
                    invocations,
                    started_at: stockroom::clock::now(),
                },
            )
            .await?;
        continue_later(app, object, &etag).await?;
        tracing::info!(key = %object.key, next_chunk = next, "time nearly up: checkpointed, continuing in a new invocation");
        return Ok(());
    }
    if effect == FeedEffect::Count && app.settings.zero_missing.contains(&src.supplier) {
        report.zeroed_missing = zero_missing(app, &src, &key.supplier, &options.last_modified).await?;
    }
    let totals = app.store.feed_totals(&src).await?;
    let rejected = pass.parse_rejects + totals.rejected.len() as u64;
    report.status = "applied".into();
    report.rows_read = pass.rows;
    report.applied = totals.applied;
    report.rejected = rejected;
    report.skipped_stale = totals.stale;
    report.duplicates = totals.duplicates;
    report.duration_ms = started.elapsed().as_millis() as u64;
    if rejected > 0 {
        append_store_rejects(&rejects_path, &totals)?;
        let key = beside("rejects", &object.key, "csv");
        let body = ByteStream::from_path(&rejects_path)
            .await
            .map_err(|e| ImportError::S3(e.to_string()))?;
        put(app, &object.bucket, &key, body, "text/csv").await?;
        report.rejects = Some(key);
    }
    let _ = std::fs::remove_file(&rejects_path);
    write_report(app, &report).await?;
    app.store
        .save_feed_state(
            &src,
            &FeedState::Done {
                report: beside("reports", &object.key, "json"),
            },
        )
        .await?;
    tracing::info!(key = %object.key, applied = report.applied, rejected, stale = report.skipped_stale,
        duplicates = report.duplicates, rows = report.rows_read, ms = report.duration_ms, "feed imported");
    alerts::metric(
        stockroom::METRIC_NAMESPACE,
        "supplier-feed",
        &[
            ("FeedRowsApplied", report.applied as f64),
            ("FeedRowsRejected", rejected as f64),
            ("FeedFilesWithRejects", f64::from(u8::from(rejected > 0))),
        ],
    );
    if rejected > 0 {
        let _ = app
            .alerts
            .send(
                &json!({"kind": "feed_rejects", "feed": object.key, "bucket": object.bucket,
                "supplier": src.supplier, "rejected": rejected, "applied": report.applied,
                "rejects": report.rejects, "report": beside("reports", &object.key, "json"),
                "at": stockroom::clock::now()}),
            )
            .await;
    }
    Ok(())
}

async fn unreadable(app: &App, mut report: Report, why: &str, started: Instant) -> Result<(), ImportError> {
    tracing::warn!(key = %report.feed, why, "unreadable feed");
    report.status = "unreadable".into();
    report.reason = Some(why.to_owned());
    report.duration_ms = started.elapsed().as_millis() as u64;
    write_report(app, &report).await?;
    let _ = app
        .alerts
        .send(
            &json!({"kind": "feed_unreadable", "feed": report.feed, "bucket": report.bucket,
            "reason": why, "at": stockroom::clock::now()}),
        )
        .await;
    alerts::metric(
        stockroom::METRIC_NAMESPACE,
        "supplier-feed",
        &[("FeedFilesUnreadable", 1.0)],
    );
    Ok(())
}

type Body = tokio::io::BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

/// Opens the object as a stream of rows.
async fn open(
    app: &App,
    object: &ObjectRef,
    key: &FeedKey,
    options: ReadOptions,
) -> Result<FeedReader<Body>, ImportError> {
    let got = app
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await
        .map_err(s3_err)?;
    let stream: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(got.body.into_async_read());
    Ok(FeedReader::open(
        tokio::io::BufReader::with_capacity(64 * 1024, stream),
        key.format,
        options,
    )
    .await?)
}

/// Reads a stock file once, without applying it, to decide whether it is safe.
async fn safety_check(
    app: &App,
    mut reader: FeedReader<Body>,
    key: &FeedKey,
) -> Result<Option<String>, ImportError> {
    let pool = &key.supplier;
    let (mut valid, mut in_pool, mut zeros, mut units) = (0u64, 0u64, 0u64, 0i64);
    while let Some(item) = reader.next_item().await? {
        if let FeedItem::Row(r) = item {
            valid += 1;
            if &r.location == pool {
                in_pool += 1;
                zeros += u64::from(r.quantity == 0);
                units += i64::from(r.quantity);
            }
        }
    }
    if valid == 0 {
        return Ok(Some("the file has no valid rows".into()));
    }
    if reader.looks_truncated() {
        return Ok(Some(
            "the file looks truncated: its last row has no line ending and is not a valid row".into(),
        ));
    }
    let stats = app.store.location_stats(pool).await?;
    if stats.skus == 0 {
        return Ok(None);
    }
    let share = app.settings.hold_share;
    let pct = |x: f64| format!("{:.0} %", x * 100.0);
    let complete = app.settings.zero_missing.iter().any(|s| s == pool.as_str());
    let missing = stats.skus.saturating_sub(in_pool);
    let zeroed = zeros + if complete { missing } else { 0 };
    if zeroed as f64 > share * stats.skus as f64 {
        return Ok(Some(format!(
            "it would set {zeroed} of the {} SKUs in the {pool} pool to zero (more than {})",
            stats.skus,
            pct(share)
        )));
    }
    if complete {
        if (in_pool as f64) < (1.0 - share) * stats.skus as f64 {
            return Ok(Some(format!(
                "it lists only {in_pool} of the {} SKUs in the {pool} pool: it looks truncated",
                stats.skus
            )));
        }
        if stats.available > 0 && (units as f64) < (1.0 - share) * stats.available as f64 {
            return Ok(Some(format!(
                "it would cut the {pool} pool from {} to {units} units (by more than {})",
                stats.available,
                pct(share)
            )));
        }
    }
    Ok(None)
}

/// What the applying pass saw.
struct Pass {
    rows: u64,
    parse_rejects: u64,
    /// The chunk to resume from, when the pass stopped for time.
    paused_at: Option<u64>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn write_reject(file: &mut std::io::BufWriter<std::fs::File>, r: &RejectedRow) -> std::io::Result<()> {
    writeln!(file, "{},{},{}", r.line, csv_field(&r.reason), csv_field(&r.raw))
}

fn append_store_rejects(path: &PathBuf, totals: &ChunkSummary) -> Result<(), ImportError> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut file = std::io::BufWriter::new(file);
    if std::fs::metadata(path)?.len() == 0 {
        writeln!(file, "line,reason,raw")?;
    }
    for (line, reason) in &totals.rejected {
        writeln!(file, "{line},{},", csv_field(reason))?;
    }
    file.flush()?;
    Ok(())
}

/// Streams the rows, applying chunks of valid ones with bounded concurrency
/// and writing rejects to a local file. Chunks before `from_chunk` were
/// applied by an earlier invocation and are only counted.
async fn apply_rows(
    app: &App,
    mut reader: FeedReader<Body>,
    src: &FeedSource,
    effect: FeedEffect,
    from_chunk: u64,
    (deadline, margin): (Instant, Duration),
    rejects_path: &PathBuf,
) -> Result<Pass, ImportError> {
    let mut rejects = std::io::BufWriter::new(std::fs::File::create(rejects_path)?);
    writeln!(rejects, "line,reason,raw")?;
    let mut parse_rejects = 0u64;
    let mut chunk: Vec<FeedRowInput> = Vec::with_capacity(ROWS_PER_FEED_CHUNK);
    let mut index = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let mut paused_at = None;
    let limit = app.settings.concurrency;
    loop {
        let item = reader.next_item().await?;
        let done = item.is_none();
        match item {
            Some(FeedItem::Rejected(r)) => {
                parse_rejects += 1;
                write_reject(&mut rejects, &r)?;
            }
            Some(FeedItem::Row(r)) => chunk.push(FeedRowInput {
                line: r.line,
                sku: r.sku,
                location: r.location,
                quantity: r.quantity,
                as_of: r.as_of,
            }),
            None => {}
        }
        if chunk.len() == ROWS_PER_FEED_CHUNK || (done && !chunk.is_empty()) {
            let rows = std::mem::take(&mut chunk);
            let this = index;
            index += 1;
            if this >= from_chunk {
                if paused_at.is_none() && deadline.saturating_duration_since(Instant::now()) < margin {
                    paused_at = Some(this);
                }
                if paused_at.is_none() {
                    while in_flight.len() >= limit {
                        if let Some(r) = in_flight.next().await {
                            r?;
                        }
                    }
                    in_flight.push(async move { app.store.apply_feed_chunk(src, effect, this, &rows).await });
                }
            }
        }
        if done || paused_at.is_some() {
            break;
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    rejects.flush()?;
    Ok(Pass {
        rows: reader.rows(),
        parse_rejects,
        paused_at,
    })
}

/// Queues the rest of an import for a new invocation.
async fn continue_later(app: &App, object: &ObjectRef, etag: &str) -> Result<(), ImportError> {
    let Some(url) = &app.settings.queue_url else {
        return Err(ImportError::Sqs(
            "FEED_QUEUE_URL is not set: cannot continue a long import".into(),
        ));
    };
    let body = json!({"continue": {"bucket": object.bucket, "key": object.key,
        "etag": etag, "version_id": object.version_id}});
    app.sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
        .map_err(|e| ImportError::Sqs(stockroom::aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
    Ok(())
}

/// For a supplier whose stock files are complete: SKUs of its pool that the
/// file did not count are set to zero, as of the file's time.
async fn zero_missing(app: &App, src: &FeedSource, pool: &Location, as_of: &str) -> Result<u64, ImportError> {
    let missing = app.store.not_counted_by(pool, src).await?;
    let mut zeroed = 0;
    for (i, skus) in missing.chunks(ROWS_PER_FEED_CHUNK).enumerate() {
        let rows: Vec<FeedRowInput> = skus
            .iter()
            .map(|sku| FeedRowInput {
                line: 0,
                sku: sku.clone(),
                location: pool.clone(),
                quantity: 0,
                as_of: as_of.to_owned(),
            })
            .collect();
        // Chunk numbers far past any file's rows keep these apart from the file's own.
        let r = app
            .store
            .apply_feed_chunk(src, FeedEffect::Count, 1_000_000_000 + i as u64, &rows)
            .await?;
        zeroed += r.applied;
    }
    Ok(zeroed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_events_continuations_and_test_events() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},
            "object":{"key":"feeds/acme/deliveries/Nov+22+%282%29.csv","eTag":"abc","versionId":"v1"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"x"}}}]}"#;
        let o = objects_in(event).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].key, "feeds/acme/deliveries/Nov 22 (2).csv");
        assert_eq!(
            (o[0].etag.as_deref(), o[0].version_id.as_deref()),
            (Some("abc"), Some("v1"))
        );
        let c = serde_json::to_string(&json!({"continue": o[0]})).unwrap();
        assert_eq!(objects_in(&c).unwrap(), o);
        assert!(objects_in(r#"{"Event":"s3:TestEvent"}"#).unwrap().is_empty());
        assert!(objects_in("nope").is_err());
    }

    #[test]
    fn rejects_are_quoted_for_csv() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
