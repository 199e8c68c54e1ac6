//! Migration and upkeep of a connector channel: its mode (shadow or live),
//! reconcile runs that find drift, resyncs, and the first import of a
//! channel's figures into the master. The pure parts are here; the runs
//! themselves are [`super::Sync::run_task`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Mode, SyncState};

/// A channel's mode as ops last set it, and who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeRecord {
    pub channel: String,
    pub mode: Mode,
    pub since: String,
    pub actor: String,
    pub reason: String,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Compare every figure on the channel with the master's.
    Reconcile,
    /// Set the master from the channel, once, for SKUs it has never seen.
    Import,
    /// Send current figures again.
    Resync,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Reconcile => "reconcile",
            RunKind::Import => "import",
            RunKind::Resync => "resync",
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// A run as the stock API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub channel: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub totals: BTreeMap<String, i64>,
    /// Who asked, and why (scheduled runs: `schedule`).
    pub actor: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A reconcile's channel SKUs the master has never seen, and master SKUs
    /// the channel does not carry (first 1,000 each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub master_only: Vec<String>,
}

/// Lists kept on a run at most; the totals count them all.
pub const MAX_LISTED: usize = 1000;

/// The work a run message (on `ChannelEditsQueue`) asks of `channel-sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTask {
    pub channel: String,
    /// `None`: a scheduled run; an id is made when it starts.
    #[serde(default)]
    pub id: Option<String>,
    pub kind: RunKind,
    /// Where a run that ran out of time goes on (the channel's page cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// A resync's SKUs (empty with `all`: every SKU the master has at the channel's locations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skus: Vec<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default = "scheduled")]
    pub actor: String,
    #[serde(default = "scheduled")]
    pub reason: String,
}

fn scheduled() -> String {
    "schedule".into()
}

/// A message on `ChannelEditsQueue`: a run, or an edit check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChannelTask {
    Run { run: RunTask },
    Edit(super::EditCheck),
}

/// One SKU a reconcile found different on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRow {
    pub sku: String,
    /// The figure on the channel.
    pub channel: i64,
    /// The figure the master gives the channel.
    pub expected: i64,
    /// Since when it differs (the first run that found it).
    pub since: String,
    /// An update in flight, or the channel's own sales not recorded yet, explain it.
    pub explained: bool,
}

/// What a reconcile makes of one SKU on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The master has never seen it.
    ChannelOnly,
    Equal,
    Differs(DriftRow),
}

/// Compares a channel's figure with the master's for one SKU.
/// `expected`: the master's figure for the channel (`None`: the master has
/// no level of the SKU); `in_flight`: the fan-out sent a figure the
/// connector has not applied yet; `owed`: the channel's sales the master
/// has not recorded (they explain a channel that much lower).
pub fn compare(
    sku: &str,
    channel: i64,
    expected: Option<i64>,
    state: Option<&SyncState>,
    in_flight: bool,
    owed: i64,
    now: &str,
) -> Finding {
    let Some(expected) = expected else {
        return Finding::ChannelOnly;
    };
    if channel == expected {
        return Finding::Equal;
    }
    Finding::Differs(DriftRow {
        sku: sku.to_owned(),
        channel,
        expected,
        since: state
            .and_then(|s| s.drift_since.clone())
            .unwrap_or_else(|| now.to_owned()),
        explained: in_flight || (owed > 0 && channel == super::target(expected, owed)),
    })
}

/// A run's totals after these findings (`units_at_stake`: how far the
/// differing figures are from the master's, summed).
pub fn tally(totals: &mut BTreeMap<String, i64>, findings: &[Finding]) {
    for f in findings {
        let mut add = |k: &str, n: i64| *totals.entry(k.to_owned()).or_insert(0) += n;
        match f {
            Finding::ChannelOnly => add("channel_only", 1),
            Finding::Equal => {
                add("compared", 1);
                add("equal", 1);
            }
            Finding::Differs(d) => {
                add("compared", 1);
                add("differing", 1);
                add("units_at_stake", (d.channel - d.expected).abs());
                if !d.explained {
                    add("unexplained", 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_equal_differs_or_is_the_channel_s_alone() {
        assert_eq!(compare("A", 3, None, None, false, 0, "t"), Finding::ChannelOnly);
        assert_eq!(compare("A", 3, Some(3), None, false, 0, "t"), Finding::Equal);
        let Finding::Differs(d) = compare("A", 5, Some(3), None, false, 0, "t1") else {
            panic!()
        };
        assert_eq!(
            (d.channel, d.expected, d.since.as_str(), d.explained),
            (5, 3, "t1", false)
        );
        // Found before: since stays.
        let state = SyncState {
            drift_since: Some("t0".into()),
            ..SyncState::default()
        };
        let Finding::Differs(d) = compare("A", 5, Some(3), Some(&state), false, 0, "t1") else {
            panic!()
        };
        assert_eq!(d.since, "t0");
    }

    #[test]
    fn an_update_in_flight_or_unrecorded_channel_sales_explain_a_difference() {
        let explained =
            |channel, in_flight, owed| match compare("A", channel, Some(10), None, in_flight, owed, "t") {
                Finding::Differs(d) => d.explained,
                other => panic!("{other:?}"),
            };
        assert!(explained(7, true, 0));
        assert!(
            explained(8, false, 2),
            "two sold on the channel, not recorded yet"
        );
        assert!(!explained(9, false, 2));
        assert!(!explained(12, false, 0));
    }

    #[test]
    fn totals_count_what_was_compared_and_what_is_at_stake() {
        let mut t = BTreeMap::new();
        let row = |c, e, explained| {
            Finding::Differs(DriftRow {
                sku: "A".into(),
                channel: c,
                expected: e,
                since: "t".into(),
                explained,
            })
        };
        tally(
            &mut t,
            &[
                Finding::Equal,
                row(5, 3, false),
                row(1, 4, true),
                Finding::ChannelOnly,
            ],
        );
        assert_eq!(t["compared"], 3);
        assert_eq!(t["equal"], 1);
        assert_eq!(t["differing"], 2);
        assert_eq!(t["unexplained"], 1);
        assert_eq!(t["units_at_stake"], 5);
        assert_eq!(t["channel_only"], 1);
    }

    #[test]
    fn a_queue_message_is_a_run_or_an_edit_check() {
        let run: ChannelTask =
            serde_json::from_str(r#"{"run": {"channel": "web", "kind": "reconcile"}}"#).unwrap();
        match run {
            ChannelTask::Run { run } => {
                assert_eq!(
                    (run.kind, run.id, run.actor.as_str()),
                    (RunKind::Reconcile, None, "schedule")
                )
            }
            other => panic!("{other:?}"),
        }
        let edit: ChannelTask = serde_json::from_str(
            r#"{"shop": "a.myshopify.com", "inventory_item_id": 1, "location_id": 2, "available": 3, "updated_at": "t", "level": "gid"}"#,
        )
        .unwrap();
        assert!(matches!(edit, ChannelTask::Edit(_)));
        assert!(serde_json::from_str::<ChannelTask>(r#"{"nothing": 1}"#).is_err());
    }
}
