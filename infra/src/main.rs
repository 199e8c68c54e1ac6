//! `stockroom-local`: the local stack's command line.
//!
//! ```text
//! stockroom-local bootstrap    create what template.yaml declares on the emulator
//! stockroom-local triggers     run the template's SQS triggers against cargo lambda watch
//! stockroom-local wait-ready   wait until every function URL answers
//! stockroom-local demo         tell the last-blue-jacket story against the stack
//! stockroom-local shopify-setup  create the demo shop on the local Shopify stand-in
//! ```
//! Options: `--env-file PATH` (default `infra/local.env`), `--template PATH`
//! (default `template.yaml`). Settings come from the env file; variables
//! already set in the environment win.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stockroom_local::{bootstrap, demo, envfile, triggers, Template};

struct Args {
    command: String,
    env_file: PathBuf,
    template: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut out = Args {
        command: String::new(),
        env_file: PathBuf::from("infra/local.env"),
        template: PathBuf::from("template.yaml"),
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--env-file" => out.env_file = it.next().ok_or("--env-file needs a path")?.into(),
            "--template" => out.template = it.next().ok_or("--template needs a path")?.into(),
            "-h" | "--help" => return Err(String::new()),
            c if out.command.is_empty() && !c.starts_with('-') => out.command = c.to_owned(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if out.command.is_empty() {
        return Err(String::new());
    }
    Ok(out)
}

const USAGE: &str =
    "usage: stockroom-local <bootstrap|triggers|wait-ready|demo|shopify-setup> [--env-file PATH] [--template PATH]";

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let file = match envfile::load(&args.env_file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.env_file.display());
            return ExitCode::FAILURE;
        }
    };
    // Settings from the file, unless the environment already has them. This
    // runs before any thread exists.
    for (k, v) in &file {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let env: std::collections::HashMap<String, String> = file
        .keys()
        .filter_map(|k| Some((k.clone(), std::env::var(k).ok()?)))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockroom-local {}: {e}", args.command);
            ExitCode::FAILURE
        }
    }
}

/// Writes `.stack/functions.env` for `cargo lambda watch`: every function's
/// environment as template.yaml sets it, resolved against the local stack,
/// overlaid with the env file (which holds what only exists locally: the
/// endpoint, fake credentials, the plain webhook secret, local overrides).
fn write_functions_env(
    template: &Template,
    stack: &stockroom_local::Stack,
    env: &std::collections::HashMap<String, String>,
) -> std::io::Result<PathBuf> {
    let mut vars = std::collections::BTreeMap::new();
    for f in &template.functions {
        vars.extend(template.function_env(&f.logical_id, stack));
    }
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut text =
        String::from("# Written by `stockroom-local bootstrap` from template.yaml and infra/local.env.\n");
    for (k, v) in &vars {
        // Quoted: dotenv parsers reject bare values holding "=".
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("{k}=\"{v}\"\n"));
    }
    let path = PathBuf::from(".stack/functions.env");
    std::fs::create_dir_all(".stack")?;
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn run(args: &Args, env: &std::collections::HashMap<String, String>) -> Result<(), String> {
    let stack_name = env
        .get("STACK_NAME")
        .cloned()
        .unwrap_or_else(|| "stockroom".into());
    let lambda = env
        .get("LOCAL_LAMBDA_URL")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:9000".into());
    let template = Template::load(&args.template, &stack_name).map_err(|e| e.to_string())?;
    let sdk = stockroom::config::aws().await;
    match args.command.as_str() {
        "bootstrap" => {
            let stack = bootstrap(&sdk, &template).await.map_err(|e| e.to_string())?;
            for (logical, name) in stack.tables.iter().chain(&stack.queue_urls).chain(&stack.buckets) {
                println!("  {logical:<16} {name}");
            }
            let functions_env = write_functions_env(&template, &stack, env).map_err(|e| e.to_string())?;
            println!("  function settings: {}", functions_env.display());
            let drift = stack.drift(&template, env);
            if !drift.is_empty() {
                let lines: Vec<String> = drift
                    .iter()
                    .map(|(var, have, want)| format!("  {var}={have:?} but template.yaml creates {want:?}"))
                    .collect();
                return Err(format!(
                    "{} disagrees with template.yaml:\n{}",
                    args.env_file.display(),
                    lines.join("\n")
                ));
            }
            Ok(())
        }
        "triggers" => {
            let stack = bootstrap(&sdk, &template).await.map_err(|e| e.to_string())?;
            triggers::run(&sdk, &template, &stack, &lambda)
                .await
                .map_err(|e| e.to_string())
        }
        "wait-ready" => {
            let functions: Vec<String> = template
                .functions
                .iter()
                .filter(|f| f.has_url)
                .map(|f| f.binary.clone())
                .collect();
            demo::wait_ready(&lambda, &functions, Duration::from_secs(900)).await?;
            println!(
                "Stockroom is ready: {} at {lambda}/lambda-url/<function>/",
                functions.join(", ")
            );
            Ok(())
        }
        "demo" => {
            let stack = bootstrap(&sdk, &template).await.map_err(|e| e.to_string())?;
            let fanout = template.function_env("stock-fanout", &stack);
            let mut channel_queues = Vec::new();
            let mut shop_channels = Vec::new();
            let mut order = Vec::new();
            if let (Some(c), Some(q)) = (fanout.get("CHANNELS"), fanout.get("CHANNEL_QUEUES")) {
                let channels = stockroom::channels::Channels::parse(c).map_err(|e| e.to_string())?;
                let queues = channels.queues(q).map_err(|e| e.to_string())?;
                // A channel with a connector is channel-sync's to consume: the
                // demo reads its figure from the shop instead of its queue.
                let connectors = stockroom::connector::Connectors::parse(
                    env.get("CONNECTORS").map(String::as_str).unwrap_or(""),
                    &channels,
                )
                .map_err(|e| e.to_string())?;
                for c in channels.iter() {
                    order.push(c.name.clone());
                    let queue = queues[&c.name].clone();
                    match connectors.of_channel(&c.name) {
                        Some(k) => shop_channels.push(demo::ShopChannel {
                            channel: c.name.clone(),
                            shop: k.shop.clone(),
                            location_id: k.location_id as i64,
                            policy: k.policy.as_str().to_owned(),
                            queue,
                        }),
                        None => channel_queues.push((c.name.clone(), queue)),
                    }
                }
            }
            let feed_bucket = stack.buckets.get("FeedBucket").cloned();
            demo::Demo::new(env, &lambda, &sdk, channel_queues, feed_bucket)
                .map_err(|e| e.to_string())?
                .with_shops(env, shop_channels, order)
                .map_err(|e| e.to_string())?
                .run()
                .await
                .map_err(|e| e.to_string())
        }
        "shopify-setup" => {
            let spec = stockroom_local::shopify::demo_shop(env).map_err(|e| e.to_string())?;
            let base = stockroom_local::shopify::local_base(env).map_err(|e| e.to_string())?;
            stockroom_local::shopify::Standin::new(&base)
                .put_shop(&spec)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "  Shopify stand-in: {} at {base}/{}/admin/api/<version>/graphql.json, locations {:?}",
                spec.shop, spec.shop, spec.locations
            );
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}
