//! Fan-out latency: from a sale webhook's arrival to the new figure in every
//! channel queue that sells from the sale's location, through the template's
//! stream trigger run by the local stream poller and `stock-fanout`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stockroom_tests::{read, TestStack};

use crate::events;
use crate::report::{Row, Section};
use crate::stats::{median, ms, quantile};
use crate::BenchError;

const SKU: &str = "BENCH-LATENCY";
const STOCK: i64 = 100_000;

/// Polls the channels until each has a message whose `available` is the
/// expected figure; returns when the last one arrived.
async fn arrivals(
    s: &TestStack,
    queues: &HashMap<String, String>,
    expected: &HashMap<String, i64>,
    wait: Duration,
) -> Result<Instant, BenchError> {
    let deadline = Instant::now() + wait;
    let mut pending: Vec<&String> = expected.keys().collect();
    let mut last = Instant::now();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(BenchError::Runtime(format!(
                "no message on {pending:?} within {} s",
                wait.as_secs()
            )));
        }
        let mut still = Vec::new();
        for channel in pending {
            let got = s.take_messages(&queues[channel], 0, Duration::ZERO).await;
            if got
                .iter()
                .any(|m| m["available"].as_i64() == Some(expected[channel]))
            {
                last = Instant::now();
            } else {
                still.push(channel);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(last)
}

/// Latencies in ms for `sales` one-unit sales, one after another. Returns
/// the latencies and the channels that heard each sale.
pub async fn latency(s: &TestStack, sales: usize) -> Result<(Vec<f64>, Vec<String>), BenchError> {
    let _poller = s.start_fanout().await;
    let fanout = s.fanout_app();
    // The channels a warehouse sale reaches, and their buffers.
    let reached: Vec<_> = fanout
        .channels
        .iter()
        .filter(|c| c.sells_from("warehouse"))
        .collect();
    let names: Vec<String> = reached.iter().map(|c| c.name.clone()).collect();
    s.seed(SKU, "warehouse", STOCK).await;
    let figure = |left: i64| -> HashMap<String, i64> {
        reached
            .iter()
            .map(|c| (c.name.clone(), (left - c.buffer).max(0)))
            .collect()
    };
    arrivals(s, &fanout.queues, &figure(STOCK), Duration::from_secs(30)).await?;
    let app = s.sale_app();
    let mut out = Vec::with_capacity(sales);
    for i in 0..sales {
        let event = events::sale(&format!("latency-{i}"), SKU, 1);
        let req = lambda_http::request::from_str(&String::from_utf8_lossy(&event))
            .map_err(|e| BenchError::Runtime(e.to_string()))?;
        let start = Instant::now();
        let (status, body) = read(sale_webhook::handle(&app, req).await);
        if status != 200 || body["status"] != "applied" {
            return Err(BenchError::Runtime(format!(
                "sale {i} was not applied: {status} {body}"
            )));
        }
        let last = arrivals(
            s,
            &fanout.queues,
            &figure(STOCK - 1 - i as i64),
            Duration::from_secs(30),
        )
        .await?;
        out.push(ms(last - start));
    }
    Ok((out, names))
}

/// The fan-out latency section.
pub async fn section(s: &TestStack, sales: usize) -> Result<Section, BenchError> {
    let (lat, channels) = latency(s, sales).await?;
    let mut fan = Section::new("Fan-out latency: sale to the new figure in every channel queue");
    fan.rows.push(Row::new(
        "median",
        format!("{:.0} ms", median(&lat)),
        format!(
            "{} sales one after another; from the sale webhook's arrival until every channel selling from the location ({}) has the new figure; local stream poller (as Lambda's event source mapping) and stock-fanout",
            lat.len(),
            channels.join(", ")
        ),
    ));
    fan.rows.push(Row::new(
        "p99",
        format!("{:.0} ms", quantile(&lat, 0.99)),
        "the same sales",
    ));
    fan.rows.push(Row::new(
        "worst",
        format!("{:.0} ms", quantile(&lat, 1.0)),
        "the same sales",
    ));
    Ok(fan)
}
