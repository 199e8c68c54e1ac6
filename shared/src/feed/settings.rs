//! How imports behave, read once per container from the `FEED_*` variables:
//! who may drop feeds and where their deliveries may go (`FEED_SUPPLIERS`),
//! what one file may cost, and the hold policy.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::config::ConfigError;
use crate::domain::Location;

/// A supplier that may drop feeds: its name (its folder under `feeds/`),
/// its pool and the locations its deliveries may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supplier {
    pub name: String,
    /// `pool:<name>`: the only location its stock files count.
    pub pool: Location,
    /// Where its delivery rows may go; a row without `location` goes to the first.
    pub delivers_to: Vec<Location>,
}

/// Every supplier that may drop feeds (`FEED_SUPPLIERS`); a file from any
/// other is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppliers(Vec<Supplier>);

impl Suppliers {
    /// Parses `name=location+location,...`; a name alone (`globex`) is a
    /// supplier that sends stock files only: its delivery rows are rejected.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            name: "FEED_SUPPLIERS",
            message,
        };
        let mut out: Vec<Supplier> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, locations) = match part.split_once('=') {
                Some((n, l)) => (n.trim(), l.trim()),
                None => (part, ""),
            };
            let pool = Location::pool(name).map_err(|_| {
                invalid(format!(
                    "supplier {name:?} must be a slug of a-z, 0-9, '-' or '_'"
                ))
            })?;
            if out.iter().any(|s| s.name == name) {
                return Err(invalid(format!("supplier {name} is listed twice")));
            }
            let mut delivers_to: Vec<Location> = Vec::new();
            for l in locations.split('+').map(str::trim).filter(|l| !l.is_empty()) {
                let l = Location::parse(l).map_err(|e| invalid(format!("{name}: {e}")))?;
                if !delivers_to.contains(&l) {
                    delivers_to.push(l);
                }
            }
            out.push(Supplier {
                name: name.to_owned(),
                pool,
                delivers_to,
            });
        }
        Ok(Self(out))
    }

    /// The supplier named `name`, if it is configured.
    pub fn get(&self, name: &str) -> Option<&Supplier> {
        self.0.iter().find(|s| s.name == name)
    }

    /// Every supplier, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Supplier> {
        self.0.iter()
    }
}

/// What one file may cost before it is refused or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `FEED_MAX_BYTES` (256 MiB): a larger object is refused from its head, unread.
    pub max_bytes: u64,
    /// `FEED_MAX_ROWS` (2,000,000): a file with more rows is refused
    /// before anything is applied (every file is read once first).
    pub max_rows: u64,
    /// `FEED_MAX_INVOCATIONS` (20): an import that would need more stops
    /// with a report and an alert instead of continuing.
    pub max_invocations: u32,
    /// `FEED_AS_OF_FUTURE` (5 minutes): how far ahead of the import's clock
    /// a stock row's `as_of` may be.
    pub as_of_future: Duration,
    /// `FEED_AS_OF_MAX_AGE` (31 days): how far behind it.
    pub as_of_max_age: Duration,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_rows: 2_000_000,
            max_invocations: 20,
            as_of_future: Duration::from_secs(5 * 60),
            as_of_max_age: Duration::from_secs(31 * 86_400),
        }
    }
}

/// How imports behave.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// `FEED_SUPPLIERS`: who may drop feeds, and where their deliveries may go.
    pub suppliers: Suppliers,
    /// `FEED_MAX_*`, `FEED_AS_OF_*`: what one file may cost.
    pub caps: Caps,
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
    /// Reads the `FEED_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (a blank value counts as unset).
    pub fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name| var(name).filter(|v| !v.trim().is_empty());
        let d = Caps::default();
        let caps = Caps {
            max_bytes: within(
                var,
                "FEED_MAX_BYTES",
                d.max_bytes,
                1..=1 << 40,
                "must be a number of bytes from 1 to 2^40",
            )?,
            max_rows: within(
                var,
                "FEED_MAX_ROWS",
                d.max_rows,
                1..=100_000_000,
                "must be 1 to 100,000,000",
            )?,
            max_invocations: within(
                var,
                "FEED_MAX_INVOCATIONS",
                d.max_invocations,
                1..=1_000,
                "must be 1 to 1,000",
            )?,
            as_of_future: duration(
                var,
                "FEED_AS_OF_FUTURE",
                d.as_of_future,
                Duration::ZERO..=Duration::from_secs(86_400),
            )?,
            as_of_max_age: duration(
                var,
                "FEED_AS_OF_MAX_AGE",
                d.as_of_max_age,
                Duration::from_secs(3_600)..=Duration::from_secs(400 * 86_400),
            )?,
        };
        let hold_share = within(
            var,
            "FEED_HOLD_SHARE",
            0.3,
            0.0..=1.0,
            "must be a share from 0 to 1",
        )?;
        let concurrency = within(var, "FEED_CONCURRENCY", 4, 1..=32, "must be 1 to 32")?;
        Ok(Self {
            suppliers: Suppliers::parse(&var("FEED_SUPPLIERS").unwrap_or_default())?,
            caps,
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

/// A duration setting: whole seconds, or a number with a unit (`90s`,
/// `5m`, `12h`, `31d`), within `range`; `default` when unset.
fn duration(
    var: impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let scale = match unit.trim() {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3_600),
        "d" => Some(86_400),
        _ => None,
    };
    scale
        .zip(digits.parse::<u64>().ok())
        .and_then(|(scale, n)| n.checked_mul(scale))
        .map(Duration::from_secs)
        .filter(|d| range.contains(d))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            message: format!(
                "must be seconds, or a number with s, m, h or d, from {} to {}",
                super::reader::human(*range.start()),
                super::reader::human(*range.end())
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<FeedSettings, ConfigError> {
        FeedSettings::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
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
            // No supplier is configured unless FEED_SUPPLIERS names it.
            assert_eq!(s.suppliers, Suppliers::default());
            assert_eq!(
                s.caps,
                Caps {
                    max_bytes: 268_435_456,
                    max_rows: 2_000_000,
                    max_invocations: 20,
                    as_of_future: Duration::from_secs(300),
                    as_of_max_age: Duration::from_secs(31 * 86_400),
                }
            );
        }
    }

    #[test]
    fn suppliers_are_named_with_the_locations_they_deliver_to() {
        let s = read(&[(
            "FEED_SUPPLIERS",
            " acme=warehouse+downtown , globex=downtown,initech,pool-co=pool:pool-co+warehouse+warehouse",
        )])
        .unwrap()
        .suppliers;
        let names: Vec<(&str, &str, Vec<&str>)> = s
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.pool.as_str(),
                    s.delivers_to.iter().map(Location::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("acme", "pool:acme", vec!["warehouse", "downtown"]),
                ("globex", "pool:globex", vec!["downtown"]),
                // A name alone: stock files only.
                ("initech", "pool:initech", vec![]),
                // Listed twice counts once.
                ("pool-co", "pool:pool-co", vec!["pool:pool-co", "warehouse"]),
            ]
        );
        assert_eq!(s.get("globex").map(|g| g.pool.as_str()), Some("pool:globex"));
        assert!(s.get("warehouse").is_none() && s.get("pool:acme").is_none());
        refused(
            "FEED_SUPPLIERS",
            &[
                "Acme=warehouse",
                "pool:acme=warehouse",
                "acme=Warehouse",
                "acme=ware house",
                "acme=warehouse,acme=downtown",
                "=warehouse",
            ],
        );
    }

    #[test]
    fn caps_and_as_of_bounds_are_read_and_bounded() {
        let s = read(&[
            ("FEED_MAX_BYTES", "1048576"),
            ("FEED_MAX_ROWS", "1000"),
            ("FEED_MAX_INVOCATIONS", "3"),
            ("FEED_AS_OF_FUTURE", "90s"),
            ("FEED_AS_OF_MAX_AGE", "7d"),
        ])
        .unwrap();
        assert_eq!(
            s.caps,
            Caps {
                max_bytes: 1_048_576,
                max_rows: 1_000,
                max_invocations: 3,
                as_of_future: Duration::from_secs(90),
                as_of_max_age: Duration::from_secs(7 * 86_400),
            }
        );
        for (raw, secs) in [("0", 0), ("300", 300), ("5m", 300), ("2h", 7_200), ("1d", 86_400)] {
            let got = read(&[("FEED_AS_OF_FUTURE", raw)]).unwrap().caps.as_of_future;
            assert_eq!(got, Duration::from_secs(secs), "{raw}");
        }
        refused("FEED_MAX_BYTES", &["0", "-1", "1.5", "lots"]);
        refused("FEED_MAX_ROWS", &["0", "100000001", "many"]);
        refused("FEED_MAX_INVOCATIONS", &["0", "1001", "x"]);
        refused("FEED_AS_OF_FUTURE", &["2d", "-5m", "5 minutes", "5w", "m"]);
        refused("FEED_AS_OF_MAX_AGE", &["59m", "401d", "1y"]);
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
