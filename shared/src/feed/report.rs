//! What an import leaves next to the feed: the report (`reports/<key>.json`)
//! and, when rows were refused, the rejects (`rejects/<key>`, as CSV: a
//! JSON Lines feed's rejects end in `.csv` instead of `.jsonl`). The
//! rejects carry a supplier's text, so no cell of theirs can start a
//! spreadsheet formula ([`neutralise`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{ChunkSummary, RejectedRow, Release};

fn beside(prefix: &str, key: &str, ext: &str) -> String {
    format!("{prefix}/{key}.{ext}")
}

/// Where the report of the feed at `key` goes.
pub fn report_key(key: &str) -> String {
    beside("reports", key, "json")
}

/// Where the rejects of the feed at `key` go: the feed's own name, as a CSV.
pub fn rejects_key(key: &str) -> String {
    let stem = key
        .rsplit_once('.')
        .filter(|(_, ext)| !ext.contains('/'))
        .map_or(key, |(stem, _)| stem);
    beside("rejects", stem, "csv")
}

/// Where the rejects an invocation of a checkpointed import read between
/// bytes `start` and `end` wait (rows only, no header) until the last
/// invocation joins them. Named by their range, so two invocations of the
/// same checkpoint (a redelivered message) never write over each other's.
pub fn rejects_part_key(key: &str, start: u64, end: u64) -> String {
    format!("{}.part-{start:012}-{end:012}", rejects_key(key))
}

/// A cell as the rejects CSV writes it: one that a spreadsheet would read as
/// a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) is prefixed with `'`, as OWASP advises against CSV injection.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// The feed a report is about; what is not known yet stays empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub feed: String,
    pub bucket: String,
    pub etag: String,
    pub supplier: String,
    pub kind: String,
}

/// What became of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Applied,
    Held,
    Unreadable,
    /// Not imported at all: its supplier is not configured, or it is over a cap.
    Refused,
    /// Stopped part-way: what was applied stays, the rest was not read.
    Stopped,
}

/// What happened to the rows of an applied feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub rows_read: u64,
    pub applied: u64,
    pub rejected: u64,
    pub skipped_stale: u64,
    pub duplicates: u64,
    /// SKUs of the pool set to zero because the file left them out (zero-missing suppliers).
    pub zeroed_missing: u64,
}

/// The report written next to a feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub subject: Subject,
    pub status: ReportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub rows: RowCounts,
    pub duration_ms: u64,
    pub invocations: u32,
    /// Bytes the applying passes read from the object, over all its
    /// invocations: its size when each byte was read once (a resumed
    /// invocation reads on from where the last stopped).
    pub bytes_read: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejects: Option<String>,
    /// A held file: the stock API request that releases it (ops add
    /// `actor` and `reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<serde_json::Value>,
    /// A released file: who released it, why, when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<Release>,
}

impl Report {
    /// A report with no rows counted, no reason, rejects or release yet.
    pub fn new(subject: Subject, status: ReportStatus, invocations: u32, took: Duration) -> Self {
        Self {
            subject,
            status,
            reason: None,
            rows: RowCounts::default(),
            duration_ms: took.as_millis() as u64,
            invocations,
            bytes_read: 0,
            rejects: None,
            release: None,
            released: None,
        }
    }

    /// Where it goes.
    pub fn key(&self) -> String {
        report_key(&self.subject.feed)
    }
}

/// The rejects of one import as a CSV file (`line,reason,raw`), written
/// locally while the feed is read (a feed may have more rejects than memory
/// should hold) and removed when dropped.
pub struct Rejects {
    path: PathBuf,
    csv: csv::Writer<std::fs::File>,
    /// The same file (one file offset): what is appended whole goes in
    /// through it, once the CSV writer is flushed.
    raw: std::fs::File,
    /// Rows written (parts appended whole are not counted).
    rows: u64,
}

impl Rejects {
    /// Creates the file, with its header, in the temporary directory.
    pub fn create() -> Result<Self, csv::Error> {
        let mut me = Self::part()?;
        me.csv.write_record(["line", "reason", "raw"])?;
        Ok(me)
    }

    /// Creates a file of rows only: one invocation's share, to be appended
    /// to the whole (a checkpointed import's rejects come in parts).
    pub fn part() -> Result<Self, csv::Error> {
        let path = std::env::temp_dir().join(format!("stockroom-rejects-{:016x}.csv", fastrand::u64(..)));
        let file = std::fs::File::create(&path)?;
        let raw = file.try_clone()?;
        Ok(Self {
            path,
            csv: csv::Writer::from_writer(file),
            raw,
            rows: 0,
        })
    }

    fn write(&mut self, line: u64, reason: &str, raw: &str) -> Result<(), csv::Error> {
        self.rows += 1;
        self.csv
            .write_record([line.to_string().as_str(), &neutralise(reason), &neutralise(raw)])
    }

    /// A row the reader refused, with its text.
    pub fn push(&mut self, row: &RejectedRow) -> Result<(), csv::Error> {
        self.write(row.line, &row.reason, &row.raw)
    }

    /// The rows the store refused; their text is not kept.
    pub fn push_refused(&mut self, totals: &ChunkSummary) -> Result<(), csv::Error> {
        for (line, reason) in &totals.rejected {
            self.write(*line, reason, "")?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends a part's bytes (rows already written as CSV, by [`Rejects::part`]).
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.csv.flush()?;
        self.raw.write_all(bytes)
    }

    /// Appends another file of rows (a part written here, by [`Rejects::part`]).
    pub fn append_part(&mut self, part: &mut Rejects) -> std::io::Result<()> {
        let path = part.finish()?;
        let mut file = std::fs::File::open(path)?;
        self.csv.flush()?;
        std::io::copy(&mut file, &mut self.raw)?;
        Ok(())
    }

    /// Writes out what is buffered: the file is complete at the path returned.
    pub fn finish(&mut self) -> std::io::Result<&Path> {
        self.csv.flush()?;
        Ok(&self.path)
    }
}

impl Drop for Rejects {
    fn drop(&mut self) {
        // Whatever happened to the import: the file is only ever a step to the upload.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject() -> Subject {
        Subject {
            feed: "feeds/acme/stock/x.csv".into(),
            bucket: "b".into(),
            etag: "e1".into(),
            supplier: "acme".into(),
            kind: "stock".into(),
        }
    }

    #[test]
    fn reports_and_rejects_go_beside_the_feed() {
        assert_eq!(
            report_key("feeds/a/stock/x.csv"),
            "reports/feeds/a/stock/x.csv.json"
        );
        assert_eq!(rejects_key("feeds/a/stock/x.csv"), "rejects/feeds/a/stock/x.csv");
        assert_eq!(
            rejects_key("feeds/a/stock/x.jsonl"),
            "rejects/feeds/a/stock/x.csv"
        );
        assert_eq!(
            Report::new(subject(), ReportStatus::Held, 1, Duration::ZERO).key(),
            "reports/feeds/acme/stock/x.csv.json"
        );
    }

    #[test]
    fn an_applied_report_has_its_counts_in_order() {
        let mut r = Report::new(subject(), ReportStatus::Applied, 2, Duration::from_millis(1500));
        r.rows = RowCounts {
            rows_read: 6,
            applied: 3,
            rejected: 3,
            skipped_stale: 1,
            duplicates: 1,
            zeroed_missing: 0,
        };
        r.rejects = Some(rejects_key("feeds/acme/stock/x.csv"));
        r.bytes_read = 120;
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"feed":"feeds/acme/stock/x.csv","bucket":"b","etag":"e1","supplier":"acme","kind":"stock","#
                .to_owned()
                + r#""status":"applied","rows_read":6,"applied":3,"rejected":3,"skipped_stale":1,"duplicates":1,"#
                + r#""zeroed_missing":0,"duration_ms":1500,"invocations":2,"bytes_read":120,"#
                + r#""rejects":"rejects/feeds/acme/stock/x.csv"}"#
        );
    }

    #[test]
    fn held_and_unreadable_reports_say_why() {
        let mut held = Report::new(subject(), ReportStatus::Held, 1, Duration::ZERO);
        held.reason = Some("the file has no valid rows".into());
        held.release = Some(json!({"method": "POST", "path": "/feeds/release"}));
        let v = serde_json::to_value(&held).unwrap();
        assert_eq!(
            (&v["status"], &v["reason"], &v["release"]),
            (
                &json!("held"),
                &json!("the file has no valid rows"),
                &json!({"method": "POST", "path": "/feeds/release"})
            )
        );
        assert!(v.get("rejects").is_none());
        let unreadable = Report::new(
            Subject {
                feed: "feeds/x".into(),
                bucket: "b".into(),
                ..Subject::default()
            },
            ReportStatus::Unreadable,
            0,
            Duration::ZERO,
        );
        assert_eq!(
            serde_json::to_value(&unreadable).unwrap(),
            json!({"feed": "feeds/x", "bucket": "b", "etag": "", "supplier": "", "kind": "", "status": "unreadable",
                "rows_read": 0, "applied": 0, "rejected": 0, "skipped_stale": 0, "duplicates": 0, "zeroed_missing": 0,
                "duration_ms": 0, "invocations": 0, "bytes_read": 0})
        );
        let mut refused = Report::new(subject(), ReportStatus::Refused, 1, Duration::ZERO);
        refused.reason = Some("supplier initech is not configured (FEED_SUPPLIERS)".into());
        let v = serde_json::to_value(&refused).unwrap();
        assert_eq!(
            (&v["status"], &v["reason"]),
            (
                &json!("refused"),
                &json!("supplier initech is not configured (FEED_SUPPLIERS)")
            )
        );
        let stopped = Report::new(subject(), ReportStatus::Stopped, 20, Duration::ZERO);
        assert_eq!(serde_json::to_value(&stopped).unwrap()["status"], "stopped");
    }

    #[test]
    fn rejects_are_quoted_for_csv() {
        let mut rejects = Rejects::create().unwrap();
        let row = |line, reason: &str, raw: &str| RejectedRow {
            line,
            reason: reason.into(),
            raw: raw.into(),
        };
        rejects.push(&row(3, "plain", "a,\"b\"")).unwrap();
        rejects.push(&row(4, "empty sku", ",3,,C-3")).unwrap();
        rejects.push(&row(6, "two\nlines", "x\ry")).unwrap();
        let refused = ChunkSummary {
            rejected: vec![(9, "a second count, 9 not 6".into())],
            ..ChunkSummary::default()
        };
        rejects.push_refused(&refused).unwrap();
        let path = rejects.finish().unwrap().to_owned();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,reason,raw\n\
             3,plain,\"a,\"\"b\"\"\"\n\
             4,empty sku,\",3,,C-3\"\n\
             6,\"two\nlines\",\"x\ry\"\n\
             9,\"a second count, 9 not 6\",\n"
        );
        drop(rejects);
        assert!(!path.exists(), "the local file goes with the import");
    }

    #[test]
    fn no_cell_can_start_a_spreadsheet_formula() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tlead", "'\tlead"),
            ("\rlead", "'\rlead"),
            ("JKT,=1", "JKT,=1"),
            ("", ""),
            ("plain", "plain"),
        ] {
            assert_eq!(neutralise(cell), written, "{cell:?}");
        }
        let mut rejects = Rejects::create().unwrap();
        rejects
            .push(&RejectedRow {
                line: 2,
                reason: "empty sku".into(),
                raw: "=cmd|' /C calc'!A0,1".into(),
            })
            .unwrap();
        rejects
            .push(&RejectedRow {
                line: 3,
                reason: "-quantity".into(),
                raw: "@x,2".into(),
            })
            .unwrap();
        let path = rejects.finish().unwrap().to_owned();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,reason,raw\n2,empty sku,\"'=cmd|' /C calc'!A0,1\"\n3,'-quantity,\"'@x,2\"\n"
        );
    }

    #[test]
    fn parts_join_after_the_header_in_order() {
        let row = |line| RejectedRow {
            line,
            reason: "bad".into(),
            raw: format!("r{line}"),
        };
        let mut first = Rejects::part().unwrap();
        first.push(&row(2)).unwrap();
        let part = std::fs::read(first.finish().unwrap()).unwrap();
        assert_eq!(first.rows(), 1);
        let mut whole = Rejects::create().unwrap();
        whole.append(&part).unwrap();
        whole.push(&row(9)).unwrap();
        let path = whole.finish().unwrap().to_owned();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,reason,raw\n2,bad,r2\n9,bad,r9\n"
        );
        assert_eq!(
            rejects_part_key("feeds/a/deliveries/x.jsonl", 0, 4096),
            "rejects/feeds/a/deliveries/x.csv.part-000000000000-000000004096"
        );
    }
}
