//! The CPU a sale webhook costs in the function itself, the store round
//! trip taken out: the event as the runtime receives it, deserialized; the
//! signature checked; the order parsed; its transaction planned; the answer
//! rendered. Measured in this thread's on-CPU time, no emulator involved.

use std::time::Duration;

use stockroom::sale::{LineResult, SaleOutcome, SaleStatus};

use crate::events;
use crate::report::{Row, Section};
use crate::stats::{median, quantile, thread_cpu};
use crate::BenchError;

/// Handler cost for a 10-line and a 1-line order.
pub fn section(app: &sale_webhook::App) -> Result<Section, BenchError> {
    let (cost10, sample10) = median_cost(app, 10)?;
    let (cost1, _) = median_cost(app, 1)?;
    let mut cost = Section::new("Handler cost: CPU per sale webhook, store round trip excluded");
    cost.rows.push(
        Row::new(
            "10-line order",
            format!(
                "{cost10:.1} µs (batches: {:.1}–{:.1} µs)",
                quantile(&sample10, 0.0),
                quantile(&sample10, 1.0)
            ),
            "this thread's on-CPU time (CLOCK_THREAD_CPUTIME_ID) over 15 batches of 2,000 webhooks: the function URL event deserialized as the runtime does, HMAC checked, order parsed, transaction planned, answer rendered; median per webhook",
        )
        .target("< 100 µs", cost10 < 100.0),
    );
    cost.rows.push(Row::new(
        "1-line order",
        format!("{cost1:.1} µs"),
        "the same, one line",
    ));
    Ok(cost)
}

/// One webhook's worth of work; returns the answer's length so nothing is optimised away.
fn one(app: &sale_webhook::App, event: &str) -> Result<usize, BenchError> {
    let req = lambda_http::request::from_str(event).map_err(|e| BenchError::Runtime(e.to_string()))?;
    let (order, actor) = sale_webhook::prepare(app, &req)
        .map_err(|r| BenchError::Runtime(format!("the order was refused: {r:?}")))?;
    let plan = app
        .store
        .plan_sale(&order, &actor)
        .map_err(|e| BenchError::Runtime(e.to_string()))?;
    // The store's answer for an order it covered in full.
    let outcome = SaleOutcome {
        order: order.order_id.clone(),
        status: SaleStatus::Applied,
        lines: order
            .lines
            .iter()
            .map(|l| LineResult {
                sku: l.sku.to_string(),
                location: l.location.to_string(),
                requested: l.quantity.get(),
                taken: l.quantity.get(),
                short: 0,
            })
            .collect(),
        skipped: order.skipped.clone(),
    };
    let answer = sale_webhook::answer(&outcome);
    Ok(plan.len() + answer.body().len())
}

/// Per-webhook CPU in µs for a `lines`-line order: the median of `batches`
/// batches of `per_batch` webhooks each.
pub fn cost(
    app: &sale_webhook::App,
    lines: usize,
    batches: usize,
    per_batch: usize,
) -> Result<Vec<f64>, BenchError> {
    let event = String::from_utf8(events::sale("cost-1", "JKT-BLUE-M", lines))
        .map_err(|e| BenchError::Runtime(e.to_string()))?;
    for _ in 0..per_batch {
        std::hint::black_box(one(app, &event)?);
    }
    let mut per_webhook = Vec::with_capacity(batches);
    for _ in 0..batches {
        let before = thread_cpu();
        for _ in 0..per_batch {
            std::hint::black_box(one(app, &event)?);
        }
        let spent: Duration = thread_cpu().saturating_sub(before);
        per_webhook.push(spent.as_secs_f64() * 1e6 / per_batch as f64);
    }
    Ok(per_webhook)
}

/// Median per-webhook µs, measured on a thread of its own.
pub fn median_cost(app: &sale_webhook::App, lines: usize) -> Result<(f64, Vec<f64>), BenchError> {
    let sample = std::thread::scope(|scope| scope.spawn(|| cost(app, lines, 15, 2_000)).join())
        .map_err(|_| BenchError::Runtime("the measuring thread panicked".into()))??;
    Ok((median(&sample), sample))
}
