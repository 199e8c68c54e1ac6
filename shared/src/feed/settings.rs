//! How imports behave, read once per container from the `FEED_*` variables.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::config::ConfigError;
use crate::domain::Location;

/// How imports behave.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Where a delivery row without a location goes (`DEFAULT_LOCATION`).
    pub default_location: Location,
    /// `FEED_QUEUE_URL`: where an import sends its own continuation.
    pub queue_url: Option<String>,
    /// `FEED_HOLD_SHARE` (default 0.3): the share of a pool a stock file may
    /// zero (or, for zero-missing suppliers, leave out or cut) before it is held.
    pub hold_share: f64,
    /// `FEED_ZERO_MISSING`: suppliers whose stock files are complete: SKUs
    /// of their pool missing from a file are set to zero.
    pub zero_missing: Vec<String>,
    /// `FEED_CONCURRENCY` (default 4): chunks written at once.
    pub concurrency: usize,
    /// Time kept in hand: no new chunk starts with less left than this
    /// (or a quarter of the invocation, if that is less).
    pub margin: Duration,
}

impl FeedSettings {
    /// Reads the `FEED_*` variables; `default_location` comes from the
    /// functions' common configuration.
    pub fn from_env(default_location: Location) -> Result<Self, ConfigError> {
        Self::from_vars(default_location, |name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (a blank value counts as unset).
    pub fn from_vars(
        default_location: Location,
        var: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let var = |name| var(name).filter(|v| !v.trim().is_empty());
        let hold_share = within(
            var,
            "FEED_HOLD_SHARE",
            0.3,
            0.0..=1.0,
            "must be a share from 0 to 1",
        )?;
        let concurrency = within(var, "FEED_CONCURRENCY", 4, 1..=32, "must be 1 to 32")?;
        Ok(Self {
            default_location,
            queue_url: var("FEED_QUEUE_URL"),
            hold_share,
            zero_missing: var("FEED_ZERO_MISSING")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            concurrency,
            margin: Duration::from_secs(30),
        })
    }

    /// Whether the supplier's stock files are complete (`FEED_ZERO_MISSING`).
    pub fn zero_missing_for(&self, supplier: &str) -> bool {
        self.zero_missing.iter().any(|s| s == supplier)
    }

    /// The time to keep in hand in an invocation that had `invocation` to
    /// run: the margin, or a quarter of a short invocation.
    pub fn margin_within(&self, invocation: Duration) -> Duration {
        self.margin.min(invocation / 4)
    }
}

/// The variable `name` parsed and within `range`; `default` when unset.
fn within<T: FromStr + PartialOrd>(
    var: impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
    range: RangeInclusive<T>,
    message: &str,
) -> Result<T, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    raw.parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            message: message.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<FeedSettings, ConfigError> {
        FeedSettings::from_vars(Location::parse("warehouse").unwrap(), |name| {
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_when_unset_or_blank() {
        for vars in [
            &[][..],
            &[
                ("FEED_HOLD_SHARE", " "),
                ("FEED_CONCURRENCY", ""),
                ("FEED_QUEUE_URL", ""),
            ],
        ] {
            let s = read(vars).unwrap();
            assert_eq!((s.hold_share, s.concurrency, s.queue_url), (0.3, 4, None));
            assert!(s.zero_missing.is_empty());
            assert_eq!(s.margin, Duration::from_secs(30));
            assert_eq!(s.default_location.as_str(), "warehouse");
        }
    }

    /// Each of `bad` makes `name` invalid.
    fn refused(name: &'static str, bad: &[&str]) {
        for &raw in bad {
            match read(&[(name, raw)]) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{raw}"),
                other => panic!("{name}={raw}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_hold_share_is_a_share_from_0_to_1() {
        for (raw, share) in [("0", 0.0), ("0.5", 0.5), ("1", 1.0)] {
            assert_eq!(read(&[("FEED_HOLD_SHARE", raw)]).unwrap().hold_share, share);
        }
        refused("FEED_HOLD_SHARE", &["-0.1", "1.01", "30%", "NaN", "half"]);
    }

    #[test]
    fn concurrency_is_1_to_32() {
        for (raw, n) in [("1", 1), ("32", 32), ("8", 8)] {
            assert_eq!(read(&[("FEED_CONCURRENCY", raw)]).unwrap().concurrency, n);
        }
        refused("FEED_CONCURRENCY", &["0", "33", "-1", "2.5", "many"]);
    }

    #[test]
    fn zero_missing_suppliers_and_the_queue() {
        let s = read(&[
            ("FEED_ZERO_MISSING", " globex, ,acme ,"),
            ("FEED_QUEUE_URL", "http://queue"),
        ])
        .unwrap();
        assert_eq!(s.zero_missing, ["globex", "acme"]);
        assert!(s.zero_missing_for("acme") && !s.zero_missing_for("initech"));
        assert_eq!(s.queue_url.as_deref(), Some("http://queue"));
    }

    #[test]
    fn the_margin_is_at_most_a_quarter_of_the_invocation() {
        let s = read(&[]).unwrap();
        assert_eq!(s.margin_within(Duration::from_secs(900)), Duration::from_secs(30));
        assert_eq!(s.margin_within(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(s.margin_within(Duration::ZERO), Duration::ZERO);
    }
}
