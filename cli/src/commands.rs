//! The command handlers: each builds its requests ([`crate::api`]), sends
//! them and says what to show ([`Shown`]); paging and waiting for runs are
//! here, with progress on stderr.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{self, Adjustment, Change, Skus, Target};
use crate::args::{ChannelsCommand, Cli, Command, DlqCommand, FeedsCommand, StockCommand, TargetArgs};
use crate::client::Api;
use crate::dlq;
use crate::error::{code, CliError};
use crate::render;

/// How long `--wait` and `channels import` wait for a run.
const RUN_WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What a command shows: the JSON document (`--json`), the text for people,
/// and the exit code (0, or 5 for drift).
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub json: Value,
    pub text: String,
    pub code: u8,
}

impl Shown {
    fn new(json: Value, render: fn(&Value) -> String) -> Self {
        let text = render(&json);
        Self {
            json,
            text,
            code: code::OK,
        }
    }
}

/// A progress line on stderr.
fn progress(line: &str) {
    eprintln!("{line}");
}

/// The local stack's settings from the env file.
fn local_env(t: &TargetArgs) -> Result<std::collections::HashMap<String, String>, CliError> {
    let text = std::fs::read_to_string(&t.env_file)
        .map_err(|e| CliError::Usage(format!("--env-file {}: {e}", t.env_file.display())))?;
    Ok(dotenvy::from_read_iter(text.as_bytes())
        .filter_map(Result::ok)
        .collect())
}

/// The stock API client for the chosen target.
pub async fn api(t: &TargetArgs) -> Result<Api, CliError> {
    if t.local {
        let env = local_env(t)?;
        let lambda = env
            .get("LOCAL_LAMBDA_URL")
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1:9000");
        return Api::new(Target::local(lambda), None);
    }
    let Some(url) = &t.url else {
        return Err(CliError::Usage(
            "say where the stock API is: --local, or --url <function URL> (or STOCKROOM_API_URL)".into(),
        ));
    };
    let sdk = stockroom::config::aws().await;
    let target = Target::cloud(url, sdk.region().map(|r| r.as_ref()))?;
    Api::new(target, sdk.credentials_provider())
}

/// The SQS client: the emulator from the env file with --local, else the
/// AWS default chain.
pub async fn sqs(t: &TargetArgs) -> Result<aws_sdk_sqs::Client, CliError> {
    if !t.local {
        return Ok(aws_sdk_sqs::Client::new(&stockroom::config::aws().await));
    }
    let env = local_env(t)?;
    let get = |k: &str, default: &str| env.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(stockroom::config::http_client())
        .endpoint_url(get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
        .region(aws_config::Region::new(get("AWS_REGION", "us-east-1")))
        .credentials_provider(aws_credential_types::Credentials::new(
            get("AWS_ACCESS_KEY_ID", "local"),
            get("AWS_SECRET_ACCESS_KEY", "local"),
            None,
            None,
            "stockroom-local-env",
        ))
        .load()
        .await;
    Ok(aws_sdk_sqs::Client::new(&sdk))
}

/// Runs one parsed command line.
pub async fn execute(cli: &Cli) -> Result<Shown, CliError> {
    if let Command::Dlq(DlqCommand::Replay { queue, max, dry_run }) = &cli.command {
        let sqs = sqs(&cli.target).await?;
        let queues = dlq::resolve(&sqs, queue).await?;
        let report = dlq::replay(&sqs, &queues, *max, *dry_run, progress).await?;
        return Ok(Shown {
            json: report.to_json(),
            text: report.render(),
            code: code::OK,
        });
    }
    let api = api(&cli.target).await?;
    run_api_command(&api, &cli.command).await
}

/// Runs a stock API command against `api`.
pub async fn run_api_command(api: &Api, command: &Command) -> Result<Shown, CliError> {
    match command {
        Command::Stock(StockCommand::Get { sku }) => {
            Ok(Shown::new(api.call(&api::stock(sku)).await?, render::stock))
        }
        Command::Stock(StockCommand::Ledger { sku, limit, all }) => ledger(api, sku, *limit, *all).await,
        Command::Adjust(a) => {
            let change = match (a.delta, a.set) {
                (Some(d), None) => Change::Delta(d),
                (None, Some(s)) => Change::Set(s),
                _ => return Err(CliError::Usage("exactly one of --delta or --set".into())),
            };
            let req = api::adjust(&Adjustment {
                sku: a.sku.clone(),
                location: a.location.clone(),
                change,
                reason: a.reason.clone(),
                actor: a.actor.clone(),
                note: a.note.clone(),
                reference: a.reference.clone(),
                expected: a.expected,
                idempotency_key: a.idempotency_key.clone(),
            });
            Ok(Shown::new(api.call(&req).await?, render::adjustment))
        }
        Command::Feeds(FeedsCommand::Held) => {
            Ok(Shown::new(api.call(&api::feeds_held()).await?, render::held))
        }
        Command::Feeds(FeedsCommand::Release {
            feed,
            etag,
            actor,
            reason,
        }) => Ok(Shown::new(
            api.call(&api::feeds_release(feed, etag, actor, reason)).await?,
            render::released,
        )),
        Command::Channels(c) => channels(api, c).await,
        Command::Dlq(_) => Err(CliError::Usage("dlq commands use SQS, not the stock API".into())),
    }
}

async fn channels(api: &Api, command: &ChannelsCommand) -> Result<Shown, CliError> {
    match command {
        ChannelsCommand::Mode {
            channel,
            mode,
            actor,
            reason,
        } => {
            let req = match (mode, actor, reason) {
                (Some(m), Some(a), Some(r)) => api::set_mode(channel, m.as_str(), a, r),
                (None, _, _) => api::mode(channel),
                _ => return Err(CliError::Usage("a mode change needs --actor and --reason".into())),
            };
            Ok(Shown::new(api.call(&req).await?, render::mode))
        }
        ChannelsCommand::Drift {
            channel,
            reconcile,
            wait,
            all,
        } => drift(api, channel, *reconcile, *wait, *all).await,
        ChannelsCommand::Resync {
            channel,
            sku,
            all,
            actor,
            reason,
        } => {
            let skus = if *all { Skus::All } else { Skus::These(sku.clone()) };
            Ok(Shown::new(
                api.call(&api::resync(channel, &skus, actor, reason)).await?,
                render::resynced,
            ))
        }
        ChannelsCommand::Import {
            channel,
            actor,
            reason,
            no_wait,
        } => {
            let queued = api.call(&api::import(channel, actor, reason)).await?;
            if *no_wait {
                return Ok(Shown::new(queued["run"].clone(), render::run));
            }
            let id = run_id(&queued)?;
            Ok(Shown::new(wait_for_run(api, channel, &id).await?, render::run))
        }
    }
}

/// The run id of a `{"run": {"id"}}` answer.
fn run_id(answer: &Value) -> Result<String, CliError> {
    answer["run"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Server {
            status: 200,
            body: json!({"error": "no_run_id", "message": format!("the answer names no run: {answer}")}),
        })
}

/// Polls a run until it is `done` (its document) or `failed` (an error).
pub async fn wait_for_run(api: &Api, channel: &str, id: &str) -> Result<Value, CliError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let run = api.call(&api::run(channel, id)).await?;
        match run["status"].as_str() {
            Some("done") => return Ok(run),
            Some("failed") => {
                return Err(CliError::RunFailed {
                    id: id.to_owned(),
                    message: run["error"].as_str().unwrap_or("no reason given").to_owned(),
                })
            }
            status => progress(&format!(
                "run {id}: {} ({}s)",
                status.unwrap_or("?"),
                started.elapsed().as_secs()
            )),
        }
        if started.elapsed() > RUN_WAIT_LIMIT {
            return Err(CliError::Unreachable(format!(
                "run {id} did not finish in {}s",
                RUN_WAIT_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn ledger(api: &Api, sku: &str, limit: Option<u32>, all: bool) -> Result<Shown, CliError> {
    let mut page = api.call(&api::ledger(sku, limit, None)).await?;
    if all {
        let mut pages = 1;
        while let Some(next) = page["next"].as_str().map(str::to_owned) {
            pages += 1;
            progress(&format!("ledger page {pages}"));
            let more = api.call(&api::ledger(sku, limit, Some(&next))).await?;
            page = merge_pages(page, more, "entries", &[]);
        }
    }
    Ok(Shown::new(page, render::ledger))
}

/// `first` with `key`'s list extended by `more`'s, `unions` merged without
/// repeats, and `more`'s `next` (the joined document of every page read).
pub fn merge_pages(mut first: Value, more: Value, key: &str, unions: &[&str]) -> Value {
    let mut list = first[key].as_array().cloned().unwrap_or_default();
    list.extend(more[key].as_array().cloned().unwrap_or_default());
    first[key] = Value::Array(list);
    for u in unions {
        let mut seen = first[*u].as_array().cloned().unwrap_or_default();
        for v in more[*u].as_array().cloned().unwrap_or_default() {
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        if !seen.is_empty() || !first[*u].is_null() {
            first[*u] = Value::Array(seen);
        }
    }
    first["next"] = more["next"].clone();
    first
}

async fn drift(api: &Api, channel: &str, reconcile: bool, wait: bool, all: bool) -> Result<Shown, CliError> {
    if reconcile {
        let queued = api.call(&api::reconcile(channel, None, None)).await?;
        let id = run_id(&queued)?;
        progress(&format!("reconcile {id} queued"));
        wait_for_run(api, channel, &id).await?;
    }
    let mut report = api.call(&api::drift(channel, None)).await?;
    let unfinished = matches!(report["run"]["status"].as_str(), Some("queued" | "running"));
    if wait && !reconcile && unfinished {
        if let Some(id) = report["run"]["id"].as_str().map(str::to_owned) {
            wait_for_run(api, channel, &id).await?;
            report = api.call(&api::drift(channel, None)).await?;
        }
    }
    if all {
        let mut pages = 1;
        while let Some(next) = report["next"].as_str().map(str::to_owned) {
            pages += 1;
            progress(&format!("drift page {pages}"));
            let more = api.call(&api::drift(channel, Some(&next))).await?;
            report = merge_pages(report, more, "skus", &["channel_only", "master_only"]);
        }
    }
    let unexplained = render::unexplained(&report);
    let mut shown = Shown::new(report, render::drift);
    if unexplained > 0 {
        shown.code = code::DRIFT;
        progress(&CliError::Drift(unexplained).to_string());
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_join_into_one_document() {
        let a = json!({"channel": "web", "skus": [{"sku": "A"}], "channel_only": ["X"], "master_only": [], "next": "c1"});
        let b = json!({"channel": "web", "skus": [{"sku": "B"}], "channel_only": ["X", "Y"], "master_only": ["M"], "next": null});
        let m = merge_pages(a, b, "skus", &["channel_only", "master_only"]);
        assert_eq!(
            m,
            json!({"channel": "web", "skus": [{"sku": "A"}, {"sku": "B"}], "channel_only": ["X", "Y"], "master_only": ["M"], "next": null})
        );
        let l = merge_pages(
            json!({"sku": "A", "entries": [1], "next": "c"}),
            json!({"entries": [2], "next": null}),
            "entries",
            &[],
        );
        assert_eq!(l, json!({"sku": "A", "entries": [1, 2], "next": null}));
    }

    #[test]
    fn a_run_answer_without_an_id_is_the_apis_failure() {
        assert_eq!(run_id(&json!({"run": {"id": "r1"}})).unwrap(), "r1");
        assert_eq!(run_id(&json!({})).unwrap_err().exit_code(), code::UNREACHABLE);
    }
}
