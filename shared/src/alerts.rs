//! Ops alerts: a message on the alert queue and a CloudWatch metric (EMF).

use serde::Serialize;

use crate::sale::LineResult;

/// An oversell: the platform sold units the master count could not cover.
/// `stock-fanout` raises it from the oversold receipt on the table's stream,
/// so it is sent (with retries and a dead-letter queue) whenever the
/// shortage is recorded, and the webhook's answer does not wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OversellAlert {
    /// The same for every copy of this alert (a retried send, a redelivered
    /// record): a consumer keeps the first and drops the rest.
    pub id: String,
    pub kind: &'static str,
    pub source: String,
    pub channel: String,
    pub order: String,
    /// The order's part the shortage is on (a receipt covers up to 49 lines).
    pub part: u32,
    pub short_units: u32,
    /// The lines that came up short.
    pub lines: Vec<LineResult>,
    /// When the sale was recorded.
    pub at: String,
}

impl OversellAlert {
    pub fn new(
        source: String,
        channel: String,
        order: String,
        part: u32,
        lines: Vec<LineResult>,
        at: String,
    ) -> Self {
        let lines: Vec<LineResult> = lines.into_iter().filter(|l| l.short > 0).collect();
        Self {
            id: format!("oversell:{source}/{order}#{part}"),
            kind: "oversell",
            source,
            channel,
            order,
            part,
            short_units: lines.iter().map(|l| l.short).sum(),
            lines,
            at,
        }
    }
}

/// An oversell alert that could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("could not send the oversell alert: {0}")]
pub struct AlertError(pub String);

/// What raising a batch's alerts did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Raised {
    pub oversells: usize,
    pub feeds: usize,
    /// The sequence numbers of the records whose alert could not be sent.
    pub failed: Vec<String>,
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
        self.publish(alert.to_string()).await.inspect_err(|msg| {
            tracing::error!(error = %msg, "could not publish the alert");
        })
    }

    /// Publishes an oversell alert. A failure is logged and returned (the
    /// caller, `stock-fanout`, has the stream record retried).
    pub async fn oversell(&self, alert: &OversellAlert) -> Result<(), AlertError> {
        let body = serde_json::to_string(alert).map_err(|e| AlertError(e.to_string()))?;
        tracing::warn!(
            order = %alert.order,
            source = %alert.source,
            short_units = alert.short_units,
            "oversell"
        );
        self.publish(body).await.map_err(|msg| {
            tracing::error!(order = %alert.order, error = %msg, "could not publish the oversell alert");
            AlertError(msg)
        })
    }

    /// Raises every alert a stream batch carries, each with its record's
    /// sequence number: what was sent, and the records whose alert failed
    /// (to be reported as batch item failures, so Lambda retries them).
    pub async fn raise(
        &self,
        oversells: Vec<(String, OversellAlert)>,
        feeds: Vec<(String, serde_json::Value)>,
    ) -> Raised {
        let oversells = futures::future::join_all(
            (oversells.iter()).map(|(sequence, a)| async move { (sequence, self.oversell(a).await.is_ok()) }),
        );
        let feeds = futures::future::join_all(
            (feeds.iter()).map(|(sequence, a)| async move { (sequence, self.send(a).await.is_ok()) }),
        );
        let (oversells, feeds) = futures::join!(oversells, feeds);
        let sent = |results: &[(&String, bool)]| results.iter().filter(|(_, ok)| *ok).count();
        Raised {
            oversells: sent(&oversells),
            feeds: sent(&feeds),
            failed: (oversells.iter().chain(&feeds))
                .filter(|(_, ok)| !ok)
                .map(|(sequence, _)| (*sequence).clone())
                .collect(),
        }
    }

    /// Sends one message body to the alert queue, if one is configured.
    async fn publish(&self, body: String) -> Result<(), String> {
        let Some(url) = &self.queue_url else {
            return Ok(());
        };
        send_to_queue(&self.sqs, url, body, None).await
    }
}

/// A FIFO message's group and deduplication ids.
pub(crate) struct Fifo {
    pub group: String,
    pub deduplication: String,
}

/// Sends one message body to a queue (a FIFO queue's with its ids). A
/// failure comes back as the SDK's full description.
pub(crate) async fn send_to_queue(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    body: String,
    fifo: Option<Fifo>,
) -> Result<(), String> {
    let (group, deduplication) = fifo.map(|f| (f.group, f.deduplication)).unzip();
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .set_message_group_id(group)
        .set_message_deduplication_id(deduplication)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
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
