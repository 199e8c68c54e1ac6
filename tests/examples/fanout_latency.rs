//! Measures local fan-out latency: from a sale webhook's answer to the
//! channel message arriving on the web channel's queue, over 100 sales,
//! against the emulator with the local stream poller.
//!
//! `cargo run -p stockroom-tests --example fanout_latency [-- <sales>]`

use std::time::{Duration, Instant};

use serde_json::json;
use stockroom::signature::sign_generic;
use stockroom_tests::{read, stack, url_request, SECRET};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let sales: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let s = stack().await;
    let _fanout = s.start_fanout().await;
    let sku = "JKT-BLUE-M";
    s.seed(sku, "warehouse", 100_000).await;
    s.channel_messages("web", 1, Duration::from_secs(10)).await;
    s.channel_messages("marketplace", 1, Duration::from_secs(10))
        .await;
    let app = s.sale_app();
    let mut latencies = Vec::with_capacity(sales);
    for i in 0..sales {
        let body = serde_json::to_vec(&json!({"channel": "web", "order_id": format!("lat-{i}"),
            "lines": [{"sku": sku, "quantity": 1}]}))
        .expect("json");
        let sig = sign_generic(SECRET.as_bytes(), &body);
        let req = url_request("POST", "/", &[], &[("X-Stockroom-Signature", sig)], &body);
        let start = Instant::now();
        let (status, _) = read(sale_webhook::handle(&app, req).await);
        assert_eq!(status, 200);
        let got = s.channel_messages("web", 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "sale {i}: no channel message within 10 s");
        latencies.push(start.elapsed());
        s.channel_messages("marketplace", 1, Duration::from_secs(10))
            .await;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fan-out latency, sale to web channel message, {sales} sales: median {:.0} ms, p90 {:.0} ms, worst {:.0} ms",
        ms(latencies[sales / 2]),
        ms(latencies[sales * 9 / 10]),
        ms(latencies[sales - 1])
    );
}
