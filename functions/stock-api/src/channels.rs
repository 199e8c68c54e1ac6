//! The channel routes: a connector channel's mode, its runs (reconcile,
//! import, resync: queued for `channel-sync`, answered at once with the
//! run's id) and what the last reconcile found; and the held feeds.

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt, Response};
use serde_json::json;
use stockroom::api;
use stockroom::config::{self, ConfigError};
use stockroom::connector::runs::{ChannelTask, ModeRecord, RunKind, RunRecord, RunStatus};
use stockroom::connector::{self, new_run_id, Connector, Connectors};
use stockroom::keys::{decode_cursor, encode_cursor};
use stockroom::wire::channel_ops::{parse_run, ModeRequest};

use crate::{bad_request, store_error, App};

/// Drift rows per page when the caller gives no `limit`.
const DEFAULT_DRIFT_PAGE: i32 = 100;

/// Where channel runs are queued, and which channels have a connector.
pub struct ChannelOps {
    pub connectors: Connectors,
    pub sqs: stockroom::aws_sdk_sqs::Client,
    /// `ChannelEditsQueue`: `channel-sync` takes the runs from there.
    pub queue_url: String,
}

impl ChannelOps {
    /// From `CHANNELS`, `CONNECTORS` and `CHANNEL_EDITS_QUEUE_URL`; `None`
    /// when no connector is configured (the routes then answer 404).
    pub fn from_env(sdk: &stockroom::aws_config::SdkConfig) -> Result<Option<Self>, ConfigError> {
        if config::var("CONNECTORS").is_none() {
            return Ok(None);
        }
        let (_, connectors) = connector::from_env()?;
        Ok(Some(Self {
            connectors,
            sqs: stockroom::aws_sdk_sqs::Client::new(sdk),
            queue_url: config::var("CHANNEL_EDITS_QUEUE_URL")
                .ok_or(ConfigError::Missing("CHANNEL_EDITS_QUEUE_URL"))?,
        }))
    }
}

fn no_channel(name: &str) -> Response<String> {
    api::error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("channel {name:?} has no connector"),
    )
}

fn connector<'a>(app: &'a App, name: &str) -> Option<(&'a ChannelOps, &'a Connector)> {
    let ops = app.channels.as_ref()?;
    Some((ops, ops.connectors.of_channel(name)?))
}

/// The mode a channel is in now, and who set it.
async fn current_mode(app: &App, c: &Connector) -> Result<ModeRecord, stockroom::store::StoreError> {
    Ok(app
        .store
        .channel_mode(&c.channel)
        .await?
        .unwrap_or_else(|| ModeRecord {
            channel: c.channel.clone(),
            mode: c.mode,
            since: String::new(),
            actor: "configuration".into(),
            reason: "CONNECTORS".into(),
        }))
}

/// `GET /channels/{name}/mode`.
pub async fn get_mode(app: &App, name: &str) -> Response<String> {
    let Some((_, c)) = connector(app, name) else {
        return no_channel(name);
    };
    match current_mode(app, c).await {
        Ok(m) => api::json(StatusCode::OK, &m),
        Err(e) => store_error(e),
    }
}

/// `PUT /channels/{name}/mode`: switched, with who and why kept.
pub async fn put_mode(app: &App, name: &str, req: &Request) -> Response<String> {
    let Some((_, c)) = connector(app, name) else {
        return no_channel(name);
    };
    let identity = api::caller_identity(req);
    if let Err(e) = app.writers.check(identity.as_deref()) {
        return api::forbidden(e);
    }
    let r = match ModeRequest::parse(req.body(), identity.as_deref()) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let record = ModeRecord {
        channel: c.channel.clone(),
        mode: r.mode,
        since: stockroom::clock::now(),
        actor: r.actor.as_str().to_owned(),
        reason: r.reason,
    };
    match app.store.set_channel_mode(&record).await {
        Ok(()) => {
            tracing::info!(channel = %c.channel, mode = record.mode.as_str(), actor = %record.actor, reason = %record.reason, "channel mode");
            api::json(StatusCode::OK, &record)
        }
        Err(e) => store_error(e),
    }
}

/// `POST /channels/{name}/reconcile|import|resync`: 202 with the queued run.
pub async fn post_run(app: &App, name: &str, kind: RunKind, req: &Request) -> Response<String> {
    let Some((ops, c)) = connector(app, name) else {
        return no_channel(name);
    };
    let identity = api::caller_identity(req);
    if let Err(e) = app.writers.check(identity.as_deref()) {
        return api::forbidden(e);
    }
    let task = match parse_run(req.body(), identity.as_deref(), &c.channel, kind, new_run_id()) {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    let id = task.id.clone().unwrap_or_default();
    let run = RunRecord {
        id: id.clone(),
        channel: c.channel.clone(),
        kind,
        status: RunStatus::Queued,
        started_at: None,
        finished_at: None,
        totals: Default::default(),
        actor: task.actor.clone(),
        reason: task.reason.clone(),
        error: None,
        channel_only: Vec::new(),
        master_only: Vec::new(),
    };
    if let Err(e) = app.store.save_run(&run).await {
        return store_error(e);
    }
    let skus = task.skus.len();
    let all = task.all;
    let body = match serde_json::to_string(&ChannelTask::Run { run: task }) {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    if let Err(e) = ops
        .sqs
        .send_message()
        .queue_url(&ops.queue_url)
        .message_body(body)
        .send()
        .await
    {
        tracing::error!(error = %stockroom::aws_sdk_sqs::error::DisplayErrorContext(&e), "run not queued");
        return api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the run could not be queued; ask again",
        );
    }
    tracing::info!(channel = %c.channel, run = %id, kind = kind.as_str(), actor = %run.actor, "run queued");
    let mut answer = json!({"channel": c.channel, "run": {"id": id, "kind": kind, "status": "queued"}});
    if kind == RunKind::Resync {
        answer["queued"] = if all { json!("all") } else { json!(skus) };
    }
    api::json(StatusCode::ACCEPTED, &answer)
}

/// `GET /channels/{name}/runs/{id}`.
pub async fn get_run(app: &App, name: &str, id: &str) -> Response<String> {
    if connector(app, name).is_none() {
        return no_channel(name);
    }
    match app.store.run_record(name, id).await {
        Ok(Some(run)) => api::json(StatusCode::OK, &run),
        Ok(None) => api::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no run {id} of {name}"),
        ),
        Err(e) => store_error(e),
    }
}

/// `GET /channels/{name}/drift?limit=&cursor=`: what the last reconcile found.
pub async fn get_drift(app: &App, name: &str, req: &Request) -> Response<String> {
    if connector(app, name).is_none() {
        return no_channel(name);
    }
    let query = req.query_string_parameters();
    let limit = match query.first("limit").map(str::parse::<i32>) {
        None => DEFAULT_DRIFT_PAGE,
        Some(Ok(n)) if (1..=stockroom::store::MAX_DRIFT_PAGE).contains(&n) => n,
        Some(_) => {
            return bad_request(format!(
                "limit must be a whole number from 1 to {}",
                stockroom::store::MAX_DRIFT_PAGE
            ))
        }
    };
    let after = match query.first("cursor").map(decode_cursor) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return bad_request("cursor is not one this API handed out"),
    };
    let run = match app.store.last_reconcile(name).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            return api::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{name} has no finished reconcile yet: POST /channels/{name}/reconcile"),
            )
        }
        Err(e) => return store_error(e),
    };
    match app.store.drift_rows(name, &run.id, limit, after.as_deref()).await {
        Ok((skus, next)) => api::json(
            StatusCode::OK,
            &json!({
                "channel": name,
                "run": {"id": run.id, "status": run.status, "finished_at": run.finished_at},
                "totals": run.totals,
                "skus": skus,
                "channel_only": run.channel_only,
                "master_only": run.master_only,
                "next": next.as_deref().map(encode_cursor),
            }),
        ),
        Err(e) => store_error(e),
    }
}

/// `GET /feeds/held`: each held file, why, and the request that releases it.
pub async fn get_held(app: &App) -> Response<String> {
    match app.store.held_feeds().await {
        Ok(alerts) => {
            let held: Vec<serde_json::Value> = alerts
                .into_iter()
                .map(|a| {
                    json!({"feed": a["feed"], "etag": a["etag"], "supplier": a["supplier"],
                        "reason": a["reason"], "held_at": a["at"], "release": a["release"]})
                })
                .collect();
            api::json(StatusCode::OK, &json!({ "held": held }))
        }
        Err(e) => store_error(e),
    }
}
