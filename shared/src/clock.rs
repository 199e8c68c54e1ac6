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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_sort() {
        let a = format(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        let b = format(OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_500_000_000).unwrap());
        assert_eq!(a, "2023-11-14T22:13:20.000000Z");
        assert_eq!(a.len(), b.len());
        assert!(a < b);
    }
}
