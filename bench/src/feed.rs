//! Supplier feed import: a generated deliveries file of `rows` rows (one SKU
//! per row, as a supplier lists its lines) uploaded to the feed bucket and
//! imported by the `supplier-feed` binary from the S3 notification, beside
//! the raw store write rate for the same number of rows in the same run.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use stockroom::aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use stockroom::domain::{Location, Sku};
use stockroom::feed::{FeedRowInput, FeedSource, ROWS_PER_FEED_CHUNK};
use stockroom_tests::TestStack;

use crate::events;
use crate::process::{environment, Instance, Program};
use crate::report::{ratio_text, Row, Section};
use crate::BenchError;

/// Chunks in flight, as the function's default `FEED_CONCURRENCY`.
const CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct Import {
    pub rows: u64,
    pub secs: f64,
    pub peak_rss_kib: u64,
}

impl Import {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.secs
    }
}

/// Imports a generated file through the function binary.
pub async fn import(s: &TestStack, rows: u64, root: &Path) -> Result<Import, BenchError> {
    let key = format!("feeds/acme/deliveries/bench-{rows}.csv");
    // Written to disk and uploaded as a stream: the file never sits in memory here.
    let path = std::env::temp_dir().join(format!("stockroom-bench-{}-{rows}.csv", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "sku,quantity,location")?;
        for i in 0..rows {
            writeln!(f, "F{rows}-{i:08},{},", 1 + i % 5)?;
        }
        f.flush()?;
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&path)
        .await
        .map_err(|e| BenchError::Runtime(e.to_string()))?;
    s.s3()
        .put_object()
        .bucket(s.feed_bucket())
        .key(&key)
        .body(body)
        .send()
        .await
        .map_err(|e| BenchError::Runtime(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
    let _ = std::fs::remove_file(&path);
    let msg = s
        .next_feed_message(Duration::from_secs(60))
        .await
        .ok_or_else(|| BenchError::Runtime(format!("no S3 notification for {key}")))?;
    let env = environment(s, "SupplierFeedFunction", 256);
    let inst = Instance::spawn(&Program::binary("supplier-feed")?, &env, root).await?;
    inst.ready(Duration::from_secs(10)).await?;
    let start = Instant::now();
    // A deadline far off: this measures the import, not Lambda's 15 minutes
    // (the function would checkpoint and continue in a new invocation).
    let answer = inst
        .invoke(&events::sqs_batch(msg), Duration::from_secs(6 * 3600))
        .await?;
    let secs = (answer.at - start).as_secs_f64();
    let peak_rss_kib = inst.peak_rss_kib();
    inst.stop().await;
    let failures: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if failures["batchItemFailures"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
    {
        return Err(BenchError::Runtime(format!(
            "the import reported a failure: {failures}"
        )));
    }
    let report = s
        .read_object(&format!("reports/{key}.json"))
        .await
        .ok_or_else(|| BenchError::Runtime(format!("no report for {key}")))?;
    let report: serde_json::Value =
        serde_json::from_str(&report).map_err(|e| BenchError::Runtime(e.to_string()))?;
    if report["applied"].as_u64() != Some(rows) {
        return Err(BenchError::Runtime(format!(
            "{rows} rows, but the report says {report}"
        )));
    }
    Ok(Import {
        rows,
        secs,
        peak_rss_kib,
    })
}

/// Sends `transactions` (built lazily, so a million rows never sit in
/// memory) with the import's concurrency; returns the seconds taken.
async fn send_all<I>(s: &TestStack, transactions: I) -> Result<f64, BenchError>
where
    I: Iterator<Item = Result<Vec<TransactWriteItem>, BenchError>>,
{
    let start = Instant::now();
    stream::iter(transactions)
        .map(|items| {
            let ddb = s.ddb.clone();
            async move {
                ddb.transact_write_items()
                    .set_transact_items(Some(items?))
                    .send()
                    .await
                    .map_err(|e| {
                        BenchError::Runtime(
                            stockroom::aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
                        )
                    })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(start.elapsed().as_secs_f64())
}

/// The raw store write rate: each row one unconditional `ADD` to its own
/// level, `ROWS_PER_FEED_CHUNK` rows per `TransactWriteItems`, with the
/// import's concurrency; no ledger, no receipt. Rows per second.
pub async fn raw_adds(s: &TestStack, rows: u64) -> Result<f64, BenchError> {
    let table = s.table().to_owned();
    let chunk = ROWS_PER_FEED_CHUNK as u64;
    let transactions = (0..rows.div_ceil(chunk)).map(|c| {
        (c * chunk..((c + 1) * chunk).min(rows))
            .map(|i| {
                Update::builder()
                    .table_name(&table)
                    .key("pk", AttributeValue::S(format!("SKU#R{rows}-{i:08}")))
                    .key("sk", AttributeValue::S("LEVEL#warehouse".into()))
                    .update_expression("ADD available :q")
                    .expression_attribute_values(":q", AttributeValue::N((1 + i % 5).to_string()))
                    .build()
                    .map(|u| TransactWriteItem::builder().update(u).build())
                    .map_err(|e| BenchError::Runtime(e.to_string()))
            })
            .collect()
    });
    Ok(rows as f64 / send_all(s, transactions).await?)
}

/// The import's own writes sent raw: exactly the transactions the store
/// plans for each chunk of delivery rows (receipt, level `ADD`s, ledger
/// entries), without reading the file, parsing, checking or reporting.
/// Rows per second.
pub async fn raw_import_writes(s: &TestStack, rows: u64) -> Result<f64, BenchError> {
    let store = s.store();
    let src = FeedSource {
        bucket: s.feed_bucket().to_owned(),
        key: format!("feeds/acme/deliveries/raw-{rows}.csv"),
        version: "bench".into(),
        supplier: "acme".into(),
        note: None,
    };
    let location = Location::parse("warehouse").map_err(|e| BenchError::Runtime(e.to_string()))?;
    let chunk = ROWS_PER_FEED_CHUNK as u64;
    let transactions = (0..rows.div_ceil(chunk)).map(|c| {
        let inputs = (c * chunk..((c + 1) * chunk).min(rows))
            .map(|i| {
                Ok(FeedRowInput {
                    line: i + 2,
                    sku: Sku::parse(&format!("W{rows}-{i:08}"))
                        .map_err(|e| BenchError::Runtime(e.to_string()))?,
                    location: location.clone(),
                    quantity: 1 + (i % 5) as u32,
                    as_of: String::new(),
                })
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        store
            .plan_feed_add(&src, c, &inputs)
            .map_err(|e| BenchError::Runtime(e.to_string()))
    });
    Ok(rows as f64 / send_all(s, transactions).await?)
}

/// Imports of `small_rows` and `large_rows` rows, and the raw baselines on
/// a fifth of `large_rows` (they are rates; the sample keeps the default
/// run under 10 minutes).
pub async fn section(
    s: &TestStack,
    small_rows: u64,
    large_rows: u64,
    root: &Path,
) -> Result<Section, BenchError> {
    let small = import(s, small_rows, root).await?;
    let large = import(s, large_rows, root).await?;
    let sample = (large_rows / 5).max(1);
    let raw_same = raw_import_writes(s, sample).await?;
    let raw_adds = raw_adds(s, sample).await?;
    let mut feeds = Section::new("Supplier feed import");
    for i in [&small, &large] {
        feeds.rows.push(Row::new(
            format!("{} rows", i.rows),
            format!("{:.0} rows/s ({:.1} s); peak RSS {:.1} MiB", i.rows_per_s(), i.secs, i.peak_rss_kib as f64 / 1024.0),
            "a deliveries CSV (one SKU per row) imported by the supplier-feed binary from its S3 notification; VmHWM of that process",
        ));
    }
    feeds.rows.push(Row::new(
        format!("the import's writes sent raw, {sample} rows"),
        format!("{raw_same:.0} rows/s"),
        "exactly the transactions the store plans per 49-row chunk (receipt, level ADDs, a ledger entry per row), 4 in flight, with no file read, parsing, checks or report",
    ));
    let feed_ratio = large.rows_per_s() / raw_same;
    feeds.rows.push(
        Row::new(
            "import ÷ its writes sent raw",
            ratio_text(feed_ratio),
            format!("rows/s of the {large_rows}-row import ÷ rows/s of the {sample}-row raw sample: what reading, parsing, checking and reporting cost on top of the store writes; same run, same emulator"),
        )
        .target("≥ 0.8", feed_ratio >= 0.8),
    );
    feeds.rows.push(Row::new(
        format!("bare ADDs, {sample} rows"),
        format!("{raw_adds:.0} rows/s; import ÷ bare ADDs = {}", ratio_text(large.rows_per_s() / raw_adds)),
        "each row only an unconditional ADD to its level, 49 per TransactWriteItems, 4 in flight: no ledger entry, receipt or level stamp (the floor of any import, not one Stockroom may do: every change is in the ledger)",
    ));
    let rss_ratio = large.peak_rss_kib as f64 / small.peak_rss_kib as f64;
    feeds.rows.push(
        Row::new(
            format!("peak RSS, {} rows ÷ {} rows", large.rows, small.rows),
            ratio_text(rss_ratio),
            "streaming: memory must not grow with the file",
        )
        .target("≤ 1.2×", rss_ratio <= 1.2),
    );
    feeds.rows.push(
        Row::new(
            format!("peak RSS importing {} rows", large.rows),
            format!("{:.1} MiB", large.peak_rss_kib as f64 / 1024.0),
            "VmHWM of the importing process: supplier-feed under its real load",
        )
        .target("< 40 MB", large.peak_rss_kib * 1024 < 40_000_000),
    );
    Ok(feeds)
}
