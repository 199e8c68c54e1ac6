//! Ops alerts: a message on the alert queue and a CloudWatch metric (EMF).

use serde::Serialize;

use crate::store::SaleOutcome;

/// An oversell: the platform sold units the master count could not cover.
#[derive(Debug, Clone, Serialize)]
pub struct OversellAlert<'a> {
    pub kind: &'static str,
    pub source: &'a str,
    pub channel: &'a str,
    pub order: &'a str,
    pub short_units: u32,
    pub lines: Vec<&'a crate::store::LineResult>,
    pub at: String,
}

impl<'a> OversellAlert<'a> {
    pub fn new(source: &'a str, channel: &'a str, outcome: &'a SaleOutcome) -> Self {
        Self {
            kind: "oversell",
            source,
            channel,
            order: &outcome.order,
            short_units: outcome.short_units(),
            lines: outcome.lines.iter().filter(|l| l.short > 0).collect(),
            at: crate::clock::now(),
        }
    }
}

/// Sends alerts to the alert queue; without one configured they are only logged.
#[derive(Debug, Clone)]
pub struct Alerts {
    sqs: aws_sdk_sqs::Client,
    queue_url: Option<String>,
}

impl Alerts {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: Option<String>) -> Self {
        Self { sqs, queue_url }
    }

    /// Publishes any alert (a JSON object with a `kind`). A failure is logged and returned.
    pub async fn send(&self, alert: &serde_json::Value) -> Result<(), String> {
        tracing::warn!(alert = %alert, "alert");
        let Some(url) = &self.queue_url else {
            return Ok(());
        };
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(alert.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let msg = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                tracing::error!(error = %msg, "could not publish the alert");
                msg
            })
    }

    /// Publishes an oversell alert. A failure is logged loudly (the oversell is
    /// already on the order's receipt and in the ledger) and returned.
    pub async fn oversell(&self, alert: &OversellAlert<'_>) -> Result<(), String> {
        let body = serde_json::to_string(alert).map_err(|e| e.to_string())?;
        tracing::warn!(
            order = alert.order,
            source = alert.source,
            short_units = alert.short_units,
            "oversell"
        );
        let Some(url) = &self.queue_url else {
            return Ok(());
        };
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let msg = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                tracing::error!(order = alert.order, error = %msg, "could not publish the oversell alert");
                msg
            })
    }
}

/// Prints one CloudWatch Embedded Metric Format record on stdout, where
/// Lambda's log pipeline turns it into metrics without an API call. Every
/// value is a count.
pub fn metric(namespace: &str, function: &str, values: &[(&str, f64)]) {
    let with_units: Vec<(&str, f64, &str)> = values.iter().map(|(k, v)| (*k, *v, "Count")).collect();
    metric_units(namespace, function, &with_units);
}

/// Like [`metric`], with a CloudWatch unit per value (`Count`, `Milliseconds`, ...).
pub fn metric_units(namespace: &str, function: &str, values: &[(&str, f64, &str)]) {
    let metrics: Vec<_> = values
        .iter()
        .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    let mut record = serde_json::json!({
        "_aws": {
            "Timestamp": crate::clock::epoch_seconds() * 1000,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function"]],
                "Metrics": metrics,
            }]
        },
        "Function": function,
    });
    for (name, value, _) in values {
        record[*name] = serde_json::json!(value);
    }
    println!("{record}");
}
