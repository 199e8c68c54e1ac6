//! What each operation costs in DynamoDB capacity, from the units the
//! emulator counts for every request (`infra/faults.py`), and what a million
//! of them cost on demand; then a hot SKU with the per-partition capacity
//! model on: orders/s against the ceiling it gives, the share answered 2xx
//! at the first delivery, and how many were retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use stockroom_local::faults::{Emulator, FaultConfig, Units};
use stockroom_tests::{emulator, read, signed, stack, Sign, TestStack};

use crate::events::order_body;
use crate::report::{Row, Section};
use crate::BenchError;

/// DynamoDB on-demand prices, us-east-1, Standard table class, in USD per
/// million request units: the prices in force since the reduction of
/// November 2024, as the public price pages gave them on 2026-11-27.
const WRITE_PRICE: f64 = 0.625;
const READ_PRICE: f64 = 0.125;
/// DynamoDB's limit on one partition key's writes.
const PARTITION_WRITE_UNITS: f64 = 1_000.0;

fn admin() -> Emulator {
    Emulator::new(&emulator().endpoint)
}

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Runtime(e.to_string())
}

/// Units a table consumed while `work` ran, divided by `n`.
async fn per(
    st: &TestStack,
    n: usize,
    work: impl std::future::Future<Output = ()>,
) -> Result<Units, BenchError> {
    admin().reset_units(st.table()).await.map_err(err)?;
    work.await;
    let u = admin().units(st.table()).await.map_err(err)?;
    Ok(Units {
        read: u.read / n as f64,
        write: u.write / n as f64,
        operations: u.operations,
    })
}

fn cost_per_million(u: &Units) -> f64 {
    u.write * WRITE_PRICE + u.read * READ_PRICE
}

fn row(what: &str, u: &Units, how: &str) -> Row {
    Row::new(
        what,
        format!(
            "{:.1} write + {:.1} read units; ${:.2} per million",
            u.write,
            u.read,
            cost_per_million(u)
        ),
        how,
    )
}

async fn sell(app: &sale_webhook::App, order: &str, sku: &str, lines: usize) -> u16 {
    let body = serde_json::to_vec(&order_body(order, sku, lines, 1)).unwrap_or_default();
    read(sale_webhook::handle(app, signed(&body, Sign::Generic)).await).0
}

/// Units per operation, and a million of them on demand.
pub async fn section(feed_rows: usize) -> Result<Section, BenchError> {
    let mut section = Section::new("Capacity: DynamoDB units per operation, and their cost");
    let n = 50;
    let st = stack().await;
    st.seed("COVERED", "warehouse", 10_000).await;
    let app = st.sale_app();
    let covered = per(&st, n, async {
        for i in 0..n {
            sell(&app, &format!("c-{i}"), "COVERED", 1).await;
        }
    })
    .await?;
    section.rows.push(row(
        "a covered order (1 line)",
        &covered,
        "one transaction: the receipt, the conditional take, the ledger entry (2 units each, transactional)",
    ));
    st.seed("GONE", "warehouse", 0).await;
    let cold = per(&st, n, async {
        for i in 0..n {
            // A container of its own: it has not seen the level short yet.
            sell(&st.sale_app(), &format!("o-{i}"), "GONE", 1).await;
        }
    })
    .await?;
    section.rows.push(row(
        "an oversold order, first in its container",
        &cold,
        "a cancelled attempt (not counted here: see the notes), then the shortage recorded",
    ));
    let warm_app = st.sale_app();
    sell(&warm_app, "warm-0", "GONE", 1).await;
    let warm = per(&st, n, async {
        for i in 1..=n {
            sell(&warm_app, &format!("warm-{i}"), "GONE", 1).await;
        }
    })
    .await?;
    section.rows.push(row(
        "an oversold order, in a container that saw the sell-out",
        &warm,
        "the shortage recorded in one transaction (the level hint)",
    ));
    for i in 0..10 {
        let sku = if i == 0 {
            "TEN".to_owned()
        } else {
            format!("TEN-{i}")
        };
        st.seed(&sku, "warehouse", 10_000).await;
    }
    let ten = per(&st, n, async {
        for i in 0..n {
            sell(&app, &format!("t-{i}"), "TEN", 10).await;
        }
    })
    .await?;
    section
        .rows
        .push(row("a 10-line order", &ten, "one transaction of 21 actions"));
    let returns = st.return_app();
    let ret = per(&st, n, async {
        for i in 0..n {
            let body = serde_json::to_vec(&json!({"return_id": format!("r-{i}"), "source": "returns-desk",
                "location": "warehouse", "lines": [{"sku": "COVERED", "quantity": 1, "condition": "resellable"}]}))
            .unwrap_or_default();
            return_processor::handle(&returns, signed(&body, Sign::Generic)).await;
        }
    })
    .await?;
    section.rows.push(row(
        "a return (1 line)",
        &ret,
        "the receipt, an ADD on the level, the ledger entry",
    ));

    // Feed rows: a delivery and a stock file of distinct SKUs.
    let feed = st.feed_app();
    for (kind, what) in [
        ("deliveries", "a delivery row"),
        ("stock", "a stock row (a count)"),
    ] {
        // Deliveries go to a listed location; counts go to the supplier's own pool.
        let place = if kind == "deliveries" {
            "warehouse"
        } else {
            "pool:acme"
        };
        let mut body = String::from("sku,quantity,location\n");
        for i in 0..feed_rows {
            body.push_str(&format!("F-{kind}-{i},{},{place}\n", 1 + i % 9));
        }
        let key = format!("feeds/acme/{kind}/units.csv");
        let units = per(&st, feed_rows, async {
            st.put_feed(&key, body.as_bytes()).await;
            if let Some(msg) = st.next_feed_message(Duration::from_secs(10)).await {
                let mut event = stockroom::aws_lambda_events::event::sqs::SqsEvent::default();
                event.records = vec![msg];
                let far = tokio::time::Instant::now() + Duration::from_secs(900);
                supplier_feed::handle(&feed, event, far).await;
            }
        })
        .await?;
        section.rows.push(row(
            what,
            &units,
            &format!("{feed_rows} rows of distinct SKUs: chunks of 49 rows in one transaction with their receipt, the file's state, and for counts the levels read first"),
        ));
    }

    // A channel update: what the fan-out reads and writes per message it sends.
    let fresh = stack().await;
    for i in 0..n {
        fresh.seed(&format!("CH-{i}"), "warehouse", 5).await;
    }
    let sent = AtomicUsize::new(0);
    let channel = per(&fresh, 1, async {
        let fanout = fresh.start_fanout().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        // web and marketplace sell from the warehouse: two messages a SKU.
        while sent.load(Ordering::Relaxed) < 2 * n && Instant::now() < deadline {
            let got = fresh
                .channel_messages("web", 0, Duration::from_millis(300))
                .await
                .len()
                + fresh
                    .channel_messages("marketplace", 0, Duration::from_millis(300))
                    .await
                    .len();
            sent.fetch_add(got, Ordering::Relaxed);
        }
        drop(fanout);
    })
    .await?;
    let messages = sent.load(Ordering::Relaxed).max(1) as f64;
    let channel = Units {
        read: channel.read / messages,
        write: channel.write / messages,
        operations: channel.operations,
    };
    section.rows.push(row(
        "a channel update",
        &channel,
        "per message sent: the SKU's levels and what was published (strongly consistent queries), the figure recorded",
    ));

    for (what, u) in [
        ("a million covered orders", &covered),
        ("a million oversold orders (cold)", &cold),
    ] {
        section.rows.push(Row::new(
            what,
            format!("${:.2}", cost_per_million(u)),
            "on-demand, us-east-1",
        ));
    }
    section.notes.push(format!(
        "Prices: DynamoDB on demand, us-east-1, Standard table class: ${WRITE_PRICE} per million write request units and ${READ_PRICE} per million read request units (since November 2024; checked 2026-11-27). Storage, streams (free to Lambda triggers), SQS, Lambda and S3 are not included."
    ));
    section.notes.push(
        "Units are the emulator's count: an item's size is its DynamoDB JSON (at least DynamoDB's own size, so a slight over-count), a query is charged for the items it returns, and a cancelled transaction is not counted (DynamoDB charges the capacity a cancelled transaction consumed, so cold oversold orders cost somewhat more than shown).".into(),
    );
    Ok(section)
}

/// A hot SKU with the capacity model on, at DynamoDB's ceiling and at a
/// tenth of it (the emulator serves a few hundred requests a second, so the
/// real ceiling may be out of its reach).
pub async fn hot_section(orders: usize, stock: i64) -> Result<Section, BenchError> {
    let mut section = Section::new("Capacity: a hot SKU against the partition's write ceiling");
    for scale in [1.0, 0.1] {
        let st = stack().await;
        st.seed("HOT", "warehouse", stock).await;
        let limit = PARTITION_WRITE_UNITS * scale;
        admin()
            .set_faults(&FaultConfig {
                scope: st.name.clone(),
                capacity: true,
                write_units_per_second: Some(limit),
                ..FaultConfig::default()
            })
            .await
            .map_err(err)?;
        let first_time = AtomicUsize::new(0);
        let answered = AtomicUsize::new(0);
        let retries = AtomicUsize::new(0);
        let started = Instant::now();
        let app = st.sale_app();
        futures::future::join_all((0..orders).map(|i| {
            let (app, first_time, retries, answered) = (&app, &first_time, &retries, &answered);
            async move {
                for attempt in 0..20u32 {
                    if attempt > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
                    }
                    if sell(app, &format!("h-{i}"), "HOT", 1).await < 300 {
                        answered.fetch_add(1, Ordering::Relaxed);
                        if attempt == 0 {
                            first_time.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                }
            }
        }))
        .await;
        let took = started.elapsed().as_secs_f64();
        let throttled = admin()
            .injected(&st.name)
            .await
            .map_err(err)?
            .get("throttled")
            .copied()
            .unwrap_or(0);
        admin().clear_faults(&st.name).await.map_err(err)?;
        // Each order writes its level (or checks it) and a ledger entry on
        // the SKU's partition, both transactional: 4 units.
        let ceiling = limit / 4.0;
        let rate = orders as f64 / took;
        section.rows.push(
            Row::new(
                format!("{orders} orders on one SKU, {limit:.0} write units/s on its partition"),
                format!(
                    "{rate:.0} orders/s (ceiling {ceiling:.0}); {:.0} % answered 2xx first time, {} redelivered, {throttled} requests throttled",
                    100.0 * first_time.load(Ordering::Relaxed) as f64 / orders as f64,
                    retries.load(Ordering::Relaxed)
                ),
                "all at once through sale-webhook's handler; a refused delivery is retried by its platform until answered",
            )
            .target("every order answered 2xx", answered.load(Ordering::Relaxed) == orders),
        );
    }
    section.notes.push("The ceiling is the partition's write units per second over the 4 units an order writes there. At DynamoDB's 1,000 units the emulator itself is the limit; at a tenth the partition is, and the throttled requests show how the SDK's retries and the platform's redeliveries absorb it.".into());
    Ok(section)
}
