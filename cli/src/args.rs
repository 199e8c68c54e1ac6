//! The command line (clap). Usage errors exit 2, as clap does.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Stockroom's ops command line: the stock API (signed with SigV4 in the
/// cloud, plain HTTP to the local stack) and dead-letter queue replays.
///
/// Exit codes: 0 done; 2 usage; 3 the API refused (4xx) or a run failed;
/// 4 the API or AWS could not be reached, or answered 5xx; 5 `channels drift`
/// found unexplained drift.
#[derive(Debug, Parser)]
#[command(name = "stockroom", version)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the API's JSON unchanged (one document per command).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the stock API (and the queues) are.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The local stack: `LOCAL_LAMBDA_URL` (and the emulator) from the env file; no signing.
    #[arg(long, global = true)]
    pub local: bool,
    /// The stock-api function URL; requests are SigV4-signed with the AWS default credentials.
    #[arg(long, global = true, env = "STOCKROOM_API_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The local stack's settings (with --local).
    #[arg(long, global = true, default_value = "infra/local.env", value_name = "FILE")]
    pub env_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read stock and its ledger.
    #[command(subcommand)]
    Stock(StockCommand),
    /// Make an audited adjustment (a delta, or a count with --set).
    Adjust(AdjustArgs),
    /// Held supplier feed files.
    #[command(subcommand)]
    Feeds(FeedsCommand),
    /// A connector channel: mode, drift, resync, first import.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// A SKU's levels, summed over locations.
    Get { sku: String },
    /// A SKU's ledger, newest first.
    Ledger {
        sku: String,
        /// Entries per page (1..200).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Read every page.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).args(["delta", "set"])))]
pub struct AdjustArgs {
    pub sku: String,
    #[arg(long, value_name = "L")]
    pub location: String,
    /// Units to add (negative: remove).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub delta: Option<i64>,
    /// The counted figure.
    #[arg(long, value_name = "N")]
    pub set: Option<i64>,
    /// stocktake, damage, theft, loss, found, received, transfer_in, transfer_out, correction.
    #[arg(long, value_name = "R")]
    pub reason: String,
    /// Who (local stack; in the cloud your IAM ARN is the actor).
    #[arg(long, value_name = "A")]
    pub actor: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    /// A URI to the document behind the change.
    #[arg(long, value_name = "URI")]
    pub reference: Option<String>,
    /// Apply only if the level is this now (compare-and-set).
    #[arg(long, value_name = "N")]
    pub expected: Option<i64>,
    /// Makes a retry safe: the same key and request answer the first result.
    #[arg(long, value_name = "K")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FeedsCommand {
    /// Feed files held for a person's look, and how to release each.
    Held,
    /// Release a held feed file (its etag says which version you checked).
    Release {
        feed: String,
        #[arg(long, value_name = "E")]
        etag: String,
        #[arg(long, value_name = "A")]
        actor: String,
        #[arg(long, value_name = "R")]
        reason: String,
    },
}

/// A channel's mode, as the library names it.
pub use stockroom::connector::Mode;

fn parse_mode(raw: &str) -> Result<Mode, String> {
    Mode::parse(raw).ok_or_else(|| format!("{raw:?} is not a mode: shadow or live"))
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Show a channel's mode, or switch it.
    Mode {
        channel: String,
        #[arg(requires_all = ["actor", "reason"], value_parser = parse_mode)]
        mode: Option<Mode>,
        #[arg(long, value_name = "A", requires = "mode")]
        actor: Option<String>,
        #[arg(long, value_name = "R", requires = "mode")]
        reason: Option<String>,
    },
    /// The last reconcile's drift report (exit 5 if a SKU drifts unexplained).
    Drift {
        channel: String,
        /// Start a reconcile now and wait for it before reading the report.
        #[arg(long)]
        reconcile: bool,
        /// Wait for the report's run if it is still queued or running.
        #[arg(long)]
        wait: bool,
        /// Read every page of the report.
        #[arg(long)]
        all: bool,
    },
    /// Republish current figures to the channel.
    #[command(group(ArgGroup::new("which").required(true).args(["sku", "all"])))]
    Resync {
        channel: String,
        /// A SKU (repeat for more).
        #[arg(long = "sku", value_name = "S")]
        sku: Vec<String>,
        /// Every SKU.
        #[arg(long)]
        all: bool,
        #[arg(long, value_name = "A")]
        actor: String,
        #[arg(long, value_name = "R")]
        reason: String,
    },
    /// Set the master from the channel, once, for SKUs the master has never seen.
    Import {
        channel: String,
        #[arg(long, value_name = "A")]
        actor: String,
        #[arg(long, value_name = "R")]
        reason: String,
        /// Answer with the queued run instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Move a dead-letter queue's messages back to their source queue.
    Replay {
        /// The DLQ's name or URL.
        queue: String,
        /// Move at most this many.
        #[arg(long, value_name = "N")]
        max: Option<u64>,
        /// Say what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stockroom").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn adjust_needs_exactly_one_change() {
        assert!(parse(&["--local", "adjust", "A", "--location", "w", "--reason", "damage"]).is_err());
        assert!(parse(&[
            "adjust",
            "A",
            "--location",
            "w",
            "--delta",
            "-1",
            "--set",
            "2",
            "--reason",
            "r"
        ])
        .is_err());
        let cli = parse(&[
            "adjust",
            "A",
            "--location",
            "w",
            "--delta",
            "-1",
            "--reason",
            "damage",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Adjust(a) = cli.command else {
            panic!("adjust")
        };
        assert_eq!(a.delta, Some(-1));
    }

    #[test]
    fn switching_a_mode_needs_an_actor_and_a_reason() {
        assert!(parse(&["channels", "mode", "web"]).is_ok());
        assert!(parse(&["channels", "mode", "web", "live"]).is_err());
        assert!(parse(&["channels", "mode", "web", "--actor", "a"]).is_err());
        assert!(parse(&["channels", "mode", "web", "live", "--actor", "a", "--reason", "r"]).is_ok());
        assert!(parse(&["channels", "mode", "web", "sideways", "--actor", "a", "--reason", "r"]).is_err());
    }

    #[test]
    fn resync_names_skus_or_all() {
        assert!(parse(&["channels", "resync", "web", "--actor", "a", "--reason", "r"]).is_err());
        assert!(parse(&[
            "channels", "resync", "web", "--all", "--sku", "A", "--actor", "a", "--reason", "r"
        ])
        .is_err());
        let cli = parse(&[
            "channels", "resync", "web", "--sku", "A", "--sku", "B", "--actor", "a", "--reason", "r",
        ])
        .unwrap();
        let Command::Channels(ChannelsCommand::Resync { sku, .. }) = cli.command else {
            panic!("resync")
        };
        assert_eq!(sku, ["A", "B"]);
    }
}
