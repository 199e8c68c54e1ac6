//! Timestamps: UTC, fixed width, so they sort as text in DynamoDB keys.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats an instant as `2026-11-22T10:04:05.123456Z`.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| unreachable!("every UTC instant formats"))
}

/// Now, formatted.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Now, as seconds since the epoch (DynamoDB TTL attributes).
pub fn epoch_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether a timestamp (RFC 3339) is more than `age` ago; one that is
/// missing or unreadable counts as old.
pub fn older_than(at: Option<&str>, age: std::time::Duration) -> bool {
    let Some(at) =
        at.and_then(|a| OffsetDateTime::parse(a, &time::format_description::well_known::Rfc3339).ok())
    else {
        return true;
    };
    (OffsetDateTime::now_utc() - at).whole_milliseconds() > age.as_millis() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_is_past_the_age_or_unknown() {
        let hour = std::time::Duration::from_secs(3600);
        assert!(!older_than(Some(&now()), hour));
        assert!(older_than(Some("2020-01-01T00:00:00Z"), hour));
        assert!(older_than(None, hour));
        assert!(older_than(Some("yesterday"), hour));
    }

    #[test]
    fn timestamps_are_fixed_width_and_sort() {
        let a = format(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        let b = format(OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_500_000_000).unwrap());
        assert_eq!(a, "2023-11-14T22:13:20.000000Z");
        assert_eq!(a.len(), b.len());
        assert!(a < b);
    }
}
