//! `channel-sync`: channel messages into the channel itself, and edits
//! seen there judged. Two SQS triggers: a connector channel's FIFO queue
//! (figures from `stock-fanout`) and `ChannelEditsQueue` (checks queued by
//! `channel-events` after the grace period). The rules are
//! [`stockroom::connector`]'s; this translates the batch and reports which
//! records failed (they come back, and past the queue's receive count wait
//! in its DLQ).

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use stockroom::alerts::{self, Alerts};
use stockroom::config::{self, Config, ConfigError};
use stockroom::connector::runs::{ChannelTask, RunTask};
use stockroom::connector::{self, EditCheck, Judged, RunOutcome, Sync, Verdict};
use stockroom::shopify::AdminApi;
use stockroom::store::StockStore;

/// Time kept back from the invocation's deadline to save states and answer.
const MARGIN: Duration = Duration::from_secs(3);

/// Everything the handler needs, built once per container.
pub struct App {
    pub sync: Sync,
    /// The name of `ChannelEditsQueue`: its records are edit checks and runs.
    pub edits_queue: String,
    /// Its URL, where a run that ran out of time is queued to go on.
    pub edits_queue_url: String,
    pub sqs: stockroom::aws_sdk_sqs::Client,
}

impl App {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let cfg = Config::from_env()?;
        let sdk = config::aws().await;
        let (channels, connectors) = connector::from_env()?;
        let edits_url =
            config::var("CHANNEL_EDITS_QUEUE_URL").ok_or(ConfigError::Missing("CHANNEL_EDITS_QUEUE_URL"))?;
        Ok(Self {
            sync: Sync {
                store: StockStore::from_config(&sdk, &cfg),
                api: AdminApi::from_env(&sdk).await?,
                connectors,
                channels,
                rules: cfg.locations,
                alerts: Alerts::new(stockroom::aws_sdk_sqs::Client::new(&sdk), cfg.alert_queue_url),
                in_flight: connector::in_flight_from_env()?,
            },
            edits_queue: queue_name(&edits_url).to_owned(),
            edits_queue_url: edits_url,
            sqs: stockroom::aws_sdk_sqs::Client::new(&sdk),
        })
    }
}

/// A queue's name: the last segment of its URL or ARN.
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

fn id(m: &SqsMessage) -> String {
    m.message_id.clone().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Sync(#[from] stockroom::connector::SyncError),
    #[error("could not queue the run's continuation: {0}")]
    Queue(String),
}

/// Runs a reconcile, resync or import; one that runs out of time is queued
/// again to go on where it stopped.
async fn run_task(app: &App, task: RunTask, deadline: std::time::Instant) -> Result<(), RunError> {
    match app.sync.run_task(task, deadline).await? {
        RunOutcome::Done(_) => Ok(()),
        RunOutcome::Continue(next) => {
            let body = serde_json::to_string(&ChannelTask::Run { run: next })
                .map_err(|e| RunError::Queue(e.to_string()))?;
            app.sqs
                .send_message()
                .queue_url(&app.edits_queue_url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| {
                    RunError::Queue(stockroom::aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                })?;
            Ok(())
        }
    }
}

/// Handles one batch (records of either queue) until `deadline`.
pub async fn handle(app: &App, event: SqsEvent, deadline: tokio::time::Instant) -> SqsBatchResponse {
    let deadline = deadline
        .into_std()
        .checked_sub(MARGIN)
        .unwrap_or_else(std::time::Instant::now);
    let stats_before = app.sync.api.stats();
    let (edits, messages): (Vec<SqsMessage>, Vec<SqsMessage>) = event
        .records
        .into_iter()
        .partition(|r| r.event_source_arn.as_deref().map(queue_name) == Some(app.edits_queue.as_str()));
    let mut failed: Vec<String> = Vec::new();
    // Channel messages, by channel, in queue order.
    let mut by_channel: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for m in messages {
        let body = m.body.clone().unwrap_or_default();
        let channel = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["channel"].as_str().map(str::to_owned))
            .unwrap_or_default();
        match by_channel.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, records)) => records.push((id(&m), body)),
            None => by_channel.push((channel, vec![(id(&m), body)])),
        }
    }
    let (mut set, mut stale, mut refused) = (0usize, 0usize, 0usize);
    for (channel, records) in by_channel {
        let pushed = app.sync.push_batch(&channel, records, deadline).await;
        tracing::info!(
            channel,
            set = pushed.set,
            unchanged = pushed.unchanged,
            refused = pushed.refused,
            stale = pushed.stale,
            failed = pushed.failed.len(),
            "channel messages"
        );
        (set, stale, refused) = (set + pushed.set, stale + pushed.stale, refused + pushed.refused);
        failed.extend(pushed.failed);
    }
    let mut edited = 0usize;
    for m in edits {
        let check: EditCheck = match Sync::task(m.body.as_deref().unwrap_or_default()) {
            Ok(ChannelTask::Edit(c)) => c,
            Ok(ChannelTask::Run { run }) => {
                if let Err(e) = run_task(app, run, deadline).await {
                    tracing::error!(message_id = %id(&m), error = %e, "run failed");
                    failed.push(id(&m));
                }
                continue;
            }
            Err(e) => {
                tracing::error!(message_id = %id(&m), error = %e, "not an edit check or a run");
                failed.push(id(&m));
                continue;
            }
        };
        match app.sync.check_edit(&check, deadline).await {
            Ok(Judged::Verdict(Verdict::Edit { .. })) => edited += 1,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(message_id = %id(&m), shop = %check.shop, item = check.inventory_item_id, error = %e, "edit check failed");
                failed.push(id(&m));
            }
        }
    }
    let stats = app.sync.api.stats();
    alerts::metric_units(
        stockroom::METRIC_NAMESPACE,
        "channel-sync",
        &[
            ("ChannelSets", set as f64, "Count"),
            ("ChannelStaleWrites", stale as f64, "Count"),
            ("ChannelSyncRefused", refused as f64, "Count"),
            ("ChannelEdits", edited as f64, "Count"),
            ("ChannelSyncFailed", failed.len() as f64, "Count"),
            (
                "ShopifyThrottled",
                (stats.throttled - stats_before.throttled) as f64,
                "Count",
            ),
        ],
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}
