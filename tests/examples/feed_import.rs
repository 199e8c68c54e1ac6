//! Measures a supplier feed import against the emulator: rows per second and
//! the process's peak resident memory, for a generated deliveries file.
//!
//! `cargo run --release -p stockroom-tests --example feed_import -- <rows> [distinct|cartons]`
//!
//! `cartons` (the default): 50 consecutive rows per SKU, as a delivery note
//! by carton reads; `distinct`: every row a different SKU (the emulator's
//! slowest case: one level update per row).

use std::io::Write;
use std::time::{Duration, Instant};

use stockroom::aws_lambda_events::event::sqs::SqsEvent;
use stockroom_tests::stack;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let distinct = args.next().as_deref() == Some("distinct");
    let s = stack().await;
    // Written to disk and uploaded as a stream, so the file never sits in this process's memory.
    let path = std::env::temp_dir().join(format!("feed-{rows}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("temp file"));
        writeln!(f, "sku,quantity,location").expect("write");
        for i in 0..rows {
            let sku = if distinct { i } else { i / 50 };
            writeln!(f, "SKU-{sku:07},{},", 1 + i % 3).expect("write");
        }
    }
    let key = format!("feeds/acme/deliveries/bench-{rows}.csv");
    s.s3()
        .put_object()
        .bucket(s.feed_bucket())
        .key(&key)
        .body(
            aws_sdk_s3::primitives::ByteStream::from_path(&path)
                .await
                .expect("stream the file"),
        )
        .send()
        .await
        .expect("upload");
    let _ = std::fs::remove_file(&path);
    let msg = s
        .next_feed_message(Duration::from_secs(30))
        .await
        .expect("notified");
    let before = peak_rss_kib();
    let app = s.feed_app();
    let started = Instant::now();
    let mut event = SqsEvent::default();
    event.records = vec![msg];
    let r = supplier_feed::handle(
        &app,
        event,
        tokio::time::Instant::now() + Duration::from_secs(24 * 3600),
    )
    .await;
    assert!(r.batch_item_failures.is_empty());
    let secs = started.elapsed().as_secs_f64();
    let report = s
        .read_object(&format!("reports/{key}.json"))
        .await
        .expect("report");
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    assert_eq!(report["applied"].as_u64(), Some(u64::from(rows)));
    println!(
        "feed import, {rows} rows ({}): {secs:.1} s, {:.0} rows/s; peak RSS {} MiB (before the import {} MiB)",
        if distinct { "one SKU per row" } else { "50 rows per SKU" },
        f64::from(rows) / secs,
        peak_rss_kib() / 1024,
        before / 1024
    );
}
