//! A reconcile of a big channel: every level of a 10,000-SKU shop on the
//! Shopify stand-in compared with the master, driven as channel-sync drives
//! it (one invocation after another until the run is done), timed, its
//! Shopify cost points and DynamoDB units counted, the bench process's
//! memory watched, and its totals checked against what was set up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use stockroom::aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use stockroom::connector::runs::{RunKind, RunRecord, RunStatus, RunTask};
use stockroom::connector::{RunOutcome, Sync};
use stockroom_local::faults::Emulator;
use stockroom_tests::{emulator, test_shop, TestShop, TestStack};

use crate::connector::{calls, figure, int, runtime, tally, BUCKET_MAX, INVOCATION, LOCATION, RESTORE_RATE};
use crate::report::{Row, Section};
use crate::stats;
use crate::BenchError;

/// The web channel's one location (the template's `Channels`: `web=warehouse`).
const MASTER_LOCATION: &str = "warehouse";
/// Every this many SKUs on the channel, one the master has never seen.
const CHANNEL_ONLY_EVERY: usize = 2_000;
/// Every this many SKUs the master holds another figure than the channel.
const DRIFT_EVERY: usize = 33;
/// SKUs the master holds at the channel's location and the channel does not carry.
const MASTER_ONLY: usize = 5;
/// DynamoDB's most puts in one `BatchWriteItem`.
const BATCH_WRITE: usize = 25;
/// Targets: the run's time at the standard plan's rate, and how much the
/// bench process may grow while it runs.
const TIME_TARGET: Duration = Duration::from_secs(600);
const MEMORY_TARGET_MIB: f64 = 64.0;
/// A run still going after this many invocations has stopped making progress.
const MOST_INVOCATIONS: usize = 200;

/// What each channel SKU is in the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Equal,
    /// The master gives the channel `expected`.
    Differs {
        expected: i64,
    },
    ChannelOnly,
}

fn plan_of(i: usize) -> Plan {
    if i % CHANNEL_ONLY_EVERY == CHANNEL_ONLY_EVERY - 1 {
        Plan::ChannelOnly
    } else if i % DRIFT_EVERY == 0 {
        Plan::Differs {
            expected: figure(i) + 1 + (i % 5) as i64,
        }
    } else {
        Plan::Equal
    }
}

/// The totals a correct reconcile of `n` channel SKUs reports.
fn expected_totals(n: usize) -> BTreeMap<String, i64> {
    let mut t = BTreeMap::new();
    let mut add = |k: &str, v: i64| *t.entry(k.to_owned()).or_insert(0) += v;
    for i in 0..n {
        match plan_of(i) {
            Plan::Equal => {
                add("compared", 1);
                add("equal", 1);
            }
            Plan::Differs { expected } => {
                add("compared", 1);
                add("differing", 1);
                // No state, nothing in flight, nothing owed: none is explained.
                add("unexplained", 1);
                add("units_at_stake", (expected - figure(i)).abs());
            }
            Plan::ChannelOnly => add("channel_only", 1),
        }
    }
    add("master_only", MASTER_ONLY as i64);
    add("unmapped", MASTER_ONLY as i64);
    t
}

fn sku(i: usize) -> String {
    format!("RECON-{i:05}")
}

fn master_only_sku(j: usize) -> String {
    format!("RECON-MASTER-{j:02}")
}

/// The master's levels, written straight to the table in batches of 25:
/// the items the store writes for a level (one set through the store, its
/// item copied with another SKU and figure), without the ledger entries and
/// receipts ten thousand adjustments would cost to set up.
async fn master_levels(stack: &TestStack, levels: Vec<(String, i64)>) -> Result<(), BenchError> {
    let Some((first, n)) = levels.first().cloned() else {
        return Ok(());
    };
    stack.seed(&first, MASTER_LOCATION, n).await;
    let template = stack
        .level(&first, MASTER_LOCATION)
        .await
        .ok_or_else(|| BenchError::Runtime(format!("no level of {first} after setting it")))?;
    let table = stack.table().to_owned();
    let batches: Vec<Vec<WriteRequest>> = levels[1..]
        .chunks(BATCH_WRITE)
        .map(|chunk| {
            chunk
                .iter()
                .map(|(sku, available)| {
                    let mut item = template.clone();
                    item.insert("pk".into(), AttributeValue::S(format!("SKU#{sku}")));
                    item.insert("sku".into(), AttributeValue::S(sku.clone()));
                    item.insert("available".into(), AttributeValue::N(available.to_string()));
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(runtime)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, BenchError>>()
        })
        .collect::<Result<_, _>>()?;
    let written: Vec<Result<(), BenchError>> = futures::stream::iter(batches)
        .map(|batch| {
            let (ddb, table) = (stack.ddb.clone(), table.clone());
            async move {
                let mut left = batch;
                for _ in 0..20 {
                    let out = ddb
                        .batch_write_item()
                        .request_items(&table, left)
                        .send()
                        .await
                        .map_err(runtime)?;
                    left = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                    if left.is_empty() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(BenchError::Runtime(
                    "levels left unprocessed after 20 tries".into(),
                ))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    written.into_iter().collect()
}

/// A connector for the web channel into `shop`, in shadow: the reconcile
/// compares and records, and corrects nothing (in live it would push every
/// unexplained difference, a cost of its own measured by the connector section).
fn shadow_sync(stack: &TestStack, shop: &TestShop) -> Result<Sync, BenchError> {
    Ok(stack.connector(shop, "revert/shadow", &shop.token))
}

/// What the run measured.
struct Measured {
    run: RunRecord,
    elapsed: Duration,
    invocations: usize,
    longest: Duration,
    queries: usize,
    points: u64,
    throttled: usize,
    client_throttled: u64,
    read_units: f64,
    write_units: f64,
    requests: BTreeMap<String, u64>,
    /// Peak RSS growth of the bench process, KiB, and whether the peak was reset first.
    growth_kib: Option<u64>,
    reset: bool,
    rss_before_kib: Option<u64>,
}

/// Sets up the channel and the master, then runs the reconcile.
async fn measure(stack: &TestStack, n: usize) -> Result<Measured, BenchError> {
    let shop = test_shop(None).await;
    eprintln!("  {} items in the stand-in shop...", int(n));
    let made: Vec<Result<(), BenchError>> = futures::stream::iter(0..n)
        .map(|i| {
            let shop = &shop;
            async move {
                shop.standin
                    .add_item(&shop.shop, &sku(i), &[(LOCATION, figure(i))])
                    .await
                    .map(|_| ())
                    .map_err(runtime)
            }
        })
        .buffered(8)
        .collect()
        .await;
    made.into_iter().collect::<Result<Vec<()>, _>>()?;
    eprintln!("  the master's levels...");
    let mut levels: Vec<(String, i64)> = (0..n)
        .filter_map(|i| match plan_of(i) {
            Plan::Equal => Some((sku(i), figure(i))),
            Plan::Differs { expected } => Some((sku(i), expected)),
            Plan::ChannelOnly => None,
        })
        .collect();
    levels.extend((0..MASTER_ONLY).map(|j| (master_only_sku(j), 7)));
    master_levels(stack, levels).await?;

    let sync = shadow_sync(stack, &shop)?;
    let admin = Emulator::new(&emulator().endpoint);
    let calls_before = calls(&shop).await?.len();
    admin.reset_units(stack.table()).await.map_err(runtime)?;
    let pid = std::process::id();
    let rss_before_kib = stats::rss_kib(pid);
    let hwm_before = stats::peak_rss_kib(pid);
    let reset = stats::reset_peak_rss();

    eprintln!("  the reconcile...");
    let mut task = RunTask {
        channel: "web".into(),
        id: None,
        kind: RunKind::Reconcile,
        cursor: None,
        skus: Vec::new(),
        all: false,
        actor: "bench".into(),
        reason: format!("a reconcile of {n} SKUs"),
    };
    let started = Instant::now();
    let mut invocations = 0;
    let mut longest = Duration::ZERO;
    let run = loop {
        invocations += 1;
        if invocations > MOST_INVOCATIONS {
            return Err(BenchError::Runtime(format!(
                "the reconcile was not done after {MOST_INVOCATIONS} invocations"
            )));
        }
        let began = Instant::now();
        let outcome = sync.run_task(task, began + INVOCATION).await.map_err(|e| {
            BenchError::Runtime(format!("invocation {invocations} of the reconcile failed: {e}"))
        })?;
        longest = longest.max(began.elapsed());
        match outcome {
            RunOutcome::Done(run) => break run,
            RunOutcome::Continue(next) => {
                eprintln!(
                    "  invocation {invocations} ran out of time after {:.0} s: continued",
                    began.elapsed().as_secs_f64()
                );
                task = next;
            }
        }
    };
    let elapsed = started.elapsed();
    let hwm_after = stats::peak_rss_kib(pid);
    let growth_kib = if reset {
        hwm_after.zip(rss_before_kib).map(|(a, b)| a.saturating_sub(b))
    } else {
        hwm_after.zip(hwm_before).map(|(a, b)| a.saturating_sub(b))
    };
    let units = admin.units(stack.table()).await.map_err(runtime)?;
    let all = calls(&shop).await?;
    let (_, queries, points, throttled) = tally(&all[calls_before.min(all.len())..]);
    check(stack, &run, n).await?;
    Ok(Measured {
        elapsed,
        invocations,
        longest,
        queries,
        points,
        throttled,
        client_throttled: sync.api.stats().throttled,
        read_units: units.read,
        write_units: units.write,
        requests: units
            .operations
            .iter()
            .map(|(op, u)| (op.clone(), u.count))
            .collect(),
        growth_kib,
        reset,
        rss_before_kib,
        run,
    })
}

/// Fails unless the run found exactly what was set up: its totals, its
/// lists of channel-only and master-only SKUs, and every drift row.
async fn check(stack: &TestStack, run: &RunRecord, n: usize) -> Result<(), BenchError> {
    let fail = |what: String| Err(BenchError::Runtime(format!("the reconcile is wrong: {what}")));
    if run.status != RunStatus::Done {
        return fail(format!("status {:?}, error {:?}", run.status, run.error));
    }
    let want = expected_totals(n);
    for (k, v) in &want {
        let got = run.totals.get(k).copied().unwrap_or(0);
        if got != *v {
            return fail(format!("{k} is {got}, not {v} (totals {:?})", run.totals));
        }
    }
    let channel_only: HashSet<String> = (0..n)
        .filter(|&i| plan_of(i) == Plan::ChannelOnly)
        .map(sku)
        .collect();
    if run.channel_only.iter().cloned().collect::<HashSet<_>>() != channel_only
        || run.channel_only.len() != channel_only.len()
    {
        return fail(format!("channel-only SKUs {:?}", run.channel_only));
    }
    let master_only: Vec<String> = (0..MASTER_ONLY).map(master_only_sku).collect();
    if run.master_only != master_only {
        return fail(format!("master-only SKUs {:?}", run.master_only));
    }
    // Every drift row: the SKUs set up to differ, with both figures.
    let differs: HashMap<String, (i64, i64)> = (0..n)
        .filter_map(|i| match plan_of(i) {
            Plan::Differs { expected } => Some((sku(i), (figure(i), expected))),
            _ => None,
        })
        .collect();
    let store = stack.store();
    let mut rows = 0;
    let mut after: Option<String> = None;
    loop {
        let (page, next) = store
            .drift_rows("web", &run.id, 500, after.as_deref())
            .await
            .map_err(runtime)?;
        for r in &page {
            rows += 1;
            if differs.get(&r.sku) != Some(&(r.channel, r.expected)) || r.explained {
                return fail(format!("drift row {r:?}"));
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if rows != differs.len() {
        return fail(format!("{rows} drift rows, not {}", differs.len()));
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The reconcile section.
pub async fn section(stack: &TestStack, n: usize) -> Result<Section, BenchError> {
    let m = measure(stack, n).await?;
    let t = &m.run.totals;
    let total = |k: &str| t.get(k).copied().unwrap_or(0);
    let secs = m.elapsed.as_secs_f64();
    let pages = n.div_ceil(100);
    let per_page = m.points as f64 / m.queries.max(1) as f64;
    // From a full bucket, the least time the cost budget allows.
    let budget = ((m.points as f64 - BUCKET_MAX).max(0.0)) / RESTORE_RATE;
    let mut s = Section::new(&format!(
        "Reconcile of a {}-SKU channel at the standard plan's rate",
        int(n)
    ));
    let setup = format!(
        "{} items on a stand-in shop with the standard bucket ({BUCKET_MAX:.0} points, {RESTORE_RATE:.0}/s) at location {LOCATION}; the master holds {} of them at `{MASTER_LOCATION}` (the web channel's location): {} at the channel's figure, {} at another (one in {DRIFT_EVERY}), and {} more the channel does not carry; {} channel SKU(s) the master has never seen. The connector in shadow (compares and records, corrects nothing). `Sync::run_task` with a reconcile task, each invocation given channel-sync's {} s, a continuation run at once as the queued message would be",
        int(n),
        int(total("compared") as usize),
        int(total("equal") as usize),
        total("differing"),
        MASTER_ONLY,
        total("channel_only"),
        INVOCATION.as_secs(),
    );
    s.rows.push(
        Row::new(
            format!("reconcile of {} SKUs: total", int(n)),
            format!("{secs:.1} s ({:.0} SKUs/s)", n as f64 / secs),
            setup,
        )
        .target(
            format!("< {} min", TIME_TARGET.as_secs() / 60),
            m.elapsed < TIME_TARGET,
        ),
    );
    s.rows.push(
        Row::new(
            "reconcile: invocations",
            format!(
                "{} ({} continuations); the longest {:.1} s",
                m.invocations,
                m.invocations - 1,
                m.longest.as_secs_f64()
            ),
            format!(
                "a run stops for a continuation when less than 15 s, or half again its slowest page, is left of the invocation's {} s",
                INVOCATION.as_secs()
            ),
        )
        .target(
            format!("each < {} s", INVOCATION.as_secs()),
            m.longest < INVOCATION,
        ),
    );
    s.rows.push(Row::new(
        "reconcile: Shopify cost points spent",
        format!(
            "{} ({} queries, {per_page:.0} points a page of 100 levels)",
            int(m.points as usize),
            m.queries
        ),
        format!(
            "the stand-in's call log (`/calls`): actual cost of every answered call; {pages} pages of 100 levels. From a full bucket the budget alone allows the run in {budget:.0} s"
        ),
    ));
    s.rows.push(Row::new(
        "reconcile: throttled answers",
        format!(
            "{} (the connector waited out {})",
            m.throttled, m.client_throttled
        ),
        "answers `THROTTLED` in the call log; the connector paces from the bucket each answer reports",
    ));
    let requests: u64 = m.requests.values().sum();
    let mut mix: Vec<(u64, &str)> = m.requests.iter().map(|(op, c)| (*c, op.as_str())).collect();
    mix.sort_by(|a, b| b.cmp(a));
    let mix = mix
        .iter()
        .map(|(c, op)| format!("{} {op}", int(*c as usize)))
        .collect::<Vec<_>>()
        .join(" + ");
    s.rows.push(Row::new(
        "reconcile: DynamoDB",
        format!(
            "{} requests; {:.0} read + {:.0} write units ({:.2} read + {:.2} write a SKU)",
            int(requests as usize),
            m.read_units,
            m.write_units,
            m.read_units / n as f64,
            m.write_units / n as f64
        ),
        format!(
            "the units the emulator counts for the stock table during the run (`infra/faults.py`): {mix}"
        ),
    ));
    let growth = m.growth_kib.map(mib);
    s.rows.push(
        Row::new(
            "reconcile: memory growth of the bench process",
            match (growth, m.rss_before_kib) {
                (Some(g), Some(b)) => format!("{g:.1} MiB (from {:.1} MiB)", mib(b)),
                (Some(g), None) => format!("{g:.1} MiB"),
                _ => "not measured".into(),
            },
            if m.reset {
                "the whole bench process (the run's connector, SDK clients and runtime; the emulator and the stand-in are other processes): its peak resident set (`VmHWM`) after the run less its resident set (`VmRSS`) before, the peak reset just before the run (`/proc/self/clear_refs`)"
            } else {
                "the whole bench process (the emulator and the stand-in are other processes): its peak resident set (`VmHWM`) after the run less before it (the kernel refused to reset the peak, so growth below an earlier peak does not show)"
            },
        )
        .target(
            format!("< {MEMORY_TARGET_MIB:.0} MiB"),
            growth.is_some_and(|g| g < MEMORY_TARGET_MIB),
        ),
    );
    s.rows.push(Row::new(
        "reconcile: the report",
        format!(
            "{} compared: {} equal, {} differing ({} units at stake), {} channel-only, {} master-only",
            int(total("compared") as usize),
            int(total("equal") as usize),
            total("differing"),
            total("units_at_stake"),
            total("channel_only"),
            total("master_only")
        ),
        "checked against the setup: the totals, the lists of channel-only and master-only SKUs, and every drift row's two figures (the bench fails if any is wrong)",
    ));
    let budget_share = budget / secs.max(f64::MIN_POSITIVE);
    s.notes.push(format!(
        "What bounds the time in Shopify: its cost per page. A page of 100 levels with their items and quantities costs about {per_page:.0} points, and the standard plan restores {RESTORE_RATE:.0} a second, so 10,000 SKUs cost about {:.0} points and about {:.0} s once the bucket's first {BUCKET_MAX:.0} are spent; this run's {} points allow it in {budget:.0} s, {:.0}% of the {secs:.0} s it took{}. A bulk operation (`bulkOperationRunQuery`, a JSONL file of every level, no cost per page) would take the budget out of it for big catalogs.",
        per_page * 100.0,
        (per_page * 100.0 - BUCKET_MAX).max(0.0) / RESTORE_RATE,
        int(m.points as usize),
        100.0 * budget_share,
        if budget_share >= 0.8 {
            ": the budget is what bounds it"
        } else {
            // Each SKU costs three reads and one or two writes, 16 at once;
            // the local emulator serves one request at a time.
            ": the rest is the run's table work, about four requests a SKU (its levels, its published figure and its connector state read, its state marked seen, a drift row written where it differs), against the local emulator, which serves one request at a time where DynamoDB would take the 16 the run sends at once in parallel"
        },
    ));
    s.notes.push(
        "What bounds the memory: the run holds a page of 100 levels at a time, and writes each page's drift rows and seen marks as it goes; the lists of channel-only and master-only SKUs kept on the run stop at 1,000 each. What grows with the catalog is the end of the run: to find master-only SKUs it reads every SKU the master has at the channel's locations and the SKU and seen mark of every connector state of the channel (kept as SKU strings: 10,000 of each here), a few MB at 10,000 SKUs and about ten times that at 100,000.".into(),
    );
    Ok(s)
}
