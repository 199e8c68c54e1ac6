//! `stockroom-bench` (`make bench`): how fast, small and exact Stockroom is,
//! written to `BENCHMARKS.md` and printed.
//!
//! ```text
//! stockroom-bench [--full] [--quick] [--only SECTIONS] [--out PATH]
//!   --full   import 100,000 and 1,000,000-row feeds (default: 10,000 and 100,000)
//!   --quick  a smoke run: few repetitions, small feeds (figures are rough)
//!   --only   comma-separated sections: sizes,handler,functions,hot,fanout,connector,reconcile,feed,units,capacity
//!   --out    where to write the report (default BENCHMARKS.md at the repository root)
//! ```
//!
//! Needs the function binaries built beside it (`cargo build --release`),
//! their arm64 artifacts (`make lambda`) and the dev tools (`make tools`):
//! `make bench` does all three.

mod connector;
mod events;
mod fanout;
mod feed;
mod functions;
mod handler;
mod hot;
mod process;
mod proxy;
mod reconcile;
mod report;
mod runtime_api;
mod sizes;
mod stats;
mod units;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::Report;

// The functions allocate with mimalloc; so does the bench, so a handler
// measured in this process costs what it costs in a function.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("missing: {0}")]
    Missing(String),
    #[error("{0}")]
    Runtime(String),
}

/// The sections, in the order they run.
const SECTIONS: [&str; 10] = [
    "sizes",
    "handler",
    "functions",
    "hot",
    "fanout",
    "connector",
    "reconcile",
    "feed",
    "units",
    "capacity",
];

/// How much to run.
#[derive(Debug, Clone)]
struct Plan {
    cold_runs: usize,
    load: usize,
    hot_rounds: usize,
    hot_orders: usize,
    hot_stock: i64,
    fanout_sales: usize,
    /// The Shopify connector's sales, feed and first sync.
    connector: connector::Sizes,
    /// SKUs on the channel the reconcile compares.
    reconcile: usize,
    /// Feed sizes: the rate is taken at the larger, memory compared between the two.
    feed_small: u64,
    feed_large: u64,
    /// Rows of each feed the units section imports.
    unit_feed_rows: usize,
    /// Orders in each capacity round.
    capacity_orders: usize,
    only: Vec<String>,
    out: PathBuf,
    command: String,
}

impl Plan {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn plan() -> Result<Plan, String> {
    let mut p = Plan {
        cold_runs: 11,
        load: 300,
        hot_rounds: 3,
        hot_orders: 1_000,
        hot_stock: 100,
        fanout_sales: 100,
        connector: connector::Sizes {
            sales: 100,
            shop_sales: 10,
            feed: 10_000,
            first: 1_000,
        },
        // 10,000 with --full: the local emulator, one request at a time, makes a
        // 10,000-SKU run take over 20 minutes of its CPU (about 4 table requests a SKU).
        reconcile: 2_000,
        feed_small: 10_000,
        feed_large: 100_000,
        unit_feed_rows: 980,
        capacity_orders: 1_000,
        only: vec![],
        out: stockroom_tests::root().join("BENCHMARKS.md"),
        command: "make bench".into(),
    };
    let mut args = std::env::args().skip(1);
    let mut flags = vec![];
    while let Some(a) = args.next() {
        match a.as_str() {
            "--full" => {
                p.reconcile = 10_000;
                p.feed_small = 100_000;
                p.feed_large = 1_000_000;
            }
            "--quick" => {
                p.cold_runs = 3;
                p.load = 30;
                p.hot_rounds = 1;
                p.fanout_sales = 20;
                p.connector = connector::Sizes {
                    sales: 20,
                    shop_sales: 3,
                    feed: 2_000,
                    first: 200,
                };
                p.reconcile = 500;
                p.feed_small = 2_000;
                p.feed_large = 10_000;
                p.unit_feed_rows = 98;
                p.capacity_orders = 200;
            }
            "--only" => {
                let list = args.next().ok_or("--only needs a list of sections")?;
                for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !SECTIONS.contains(&s) {
                        return Err(format!(
                            "unknown section {s:?}: choose from {}",
                            SECTIONS.join(",")
                        ));
                    }
                    p.only.push(s.to_owned());
                }
                flags.push(format!("--only {list}"));
                continue;
            }
            "--out" => {
                p.out = args.next().ok_or("--out needs a path")?.into();
                continue;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        flags.push(a);
    }
    if !flags.is_empty() {
        p.command = format!("make bench BENCH_ARGS=\"{}\"", flags.join(" "));
    }
    Ok(p)
}

async fn run(p: &Plan) -> Result<Report, BenchError> {
    let started = Instant::now();
    let root = stockroom_tests::root();
    let mut report = Report {
        machine: stats::machine(),
        command: p.command.clone(),
        date: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        ..Report::default()
    };
    if p.wants("sizes") {
        eprintln!("artifact sizes...");
        report.sections.push(sizes::section(&root)?);
    }
    if SECTIONS[1..].iter().any(|s| p.wants(s)) {
        eprintln!("starting the emulator and a stack...");
        let s = stockroom_tests::stack().await;
        if p.wants("handler") {
            eprintln!("handler cost...");
            report.sections.push(handler::section(&s.sale_app())?);
        }
        if p.wants("functions") {
            eprintln!("cold starts, memory and CPU of each function, and the Python baseline...");
            report
                .sections
                .extend(functions::sections(&s, p.cold_runs, p.load, &root).await?);
        }
        if p.wants("hot") {
            eprintln!("hot SKU...");
            report
                .sections
                .push(hot::section(&s, p.hot_rounds, p.hot_orders, p.hot_stock).await?);
        }
        if p.wants("fanout") {
            eprintln!("fan-out latency...");
            // A stack of its own: the stream poller starts at the stream's
            // beginning, which should hold only this section's changes.
            let fresh = stockroom_tests::stack().await;
            report
                .sections
                .push(fanout::section(&fresh, p.fanout_sales).await?);
        }
        if p.wants("connector") {
            eprintln!("the Shopify connector: sales to Shopify...");
            // A stack of its own, as for the fan-out: the stream poller
            // starts at the stream's beginning.
            let fresh = stockroom_tests::stack().await;
            report
                .sections
                .push(connector::section(&fresh, p.connector).await?);
        }
        if p.wants("reconcile") {
            eprintln!("a reconcile of {} SKUs...", p.reconcile);
            // A stack of its own: the master-only SKUs are every SKU at the
            // channel's locations, which should be this section's alone.
            let fresh = stockroom_tests::stack().await;
            report
                .sections
                .push(reconcile::section(&fresh, p.reconcile).await?);
        }
        if p.wants("feed") {
            eprintln!("feed import: {} and {} rows...", p.feed_small, p.feed_large);
            report
                .sections
                .push(feed::section(&s, p.feed_small, p.feed_large, &root).await?);
        }
    }
    if p.wants("units") {
        eprintln!("units per operation...");
        report.sections.push(units::section(p.unit_feed_rows).await?);
    }
    if p.wants("capacity") {
        eprintln!("a hot SKU against the partition's capacity...");
        report
            .sections
            .push(units::hot_section(p.capacity_orders, p.hot_stock).await?);
    }
    report.duration_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The handlers the bench runs in its own process print CloudWatch EMF
/// records on stdout, as they should in Lambda; here thousands of them would
/// bury the report. Points descriptor 1 at /dev/null for the run and returns
/// the original stdout for the report.
fn stdout_for_the_report() -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    std::io::stdout().flush()?;
    // SAFETY: dup and dup2 on descriptors that are open for the whole call;
    // the duplicate is owned by the returned File and nothing else.
    unsafe {
        let saved = libc::dup(1);
        if saved < 0 || libc::dup2(devnull.as_raw_fd(), 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(std::fs::File::from_raw_fd(saved))
    }
}

fn main() -> ExitCode {
    let p = match plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\nusage: stockroom-bench [--full] [--quick] [--only SECTIONS] [--out PATH]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = match stdout_for_the_report() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot set stdout aside: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&p)) {
        Ok(report) => {
            if let Err(e) = std::fs::write(&p.out, report.markdown()) {
                eprintln!("cannot write {}: {e}", p.out.display());
                return ExitCode::FAILURE;
            }
            let _ = writeln!(out, "{}\nwritten to {}", report.text(), p.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("the bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
