//! The streaming reader: a CSV or JSON Lines file into valid rows and
//! rejected rows, one at a time, with bounded memory whatever the file's size.
//! It knows where it stands ([`Position`]: the byte offset, the line, the
//! rows so far, a CSV's columns), so an import can stop between rows and a
//! new reader can start there, mid-file, reading exactly what a read from
//! the start would have read next.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::{FeedError, FeedFormat, FeedKind};
use crate::clock;
use crate::domain::{Location, Quantity, Sku};

/// A record longer than this is rejected rather than buffered.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// How much of a rejected row's text the reject report keeps.
const RAW_KEPT: usize = 1024;

/// What a reader needs to know besides the bytes.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub kind: FeedKind,
    /// The supplier whose file it is (named in the reasons rows are refused for).
    pub supplier: String,
    /// The only location a stock row may count, and where one without
    /// `location` goes: the supplier's pool.
    pub pool: Location,
    /// Where the supplier's delivery rows may go (`FEED_SUPPLIERS`); a row
    /// without `location` goes to the first.
    pub delivers_to: Vec<Location>,
    /// A stock row's `as_of` when it has none: the object's last-modified
    /// time, in [`clock`] format.
    pub last_modified: String,
    /// The `as_of` times a stock row may carry.
    pub as_of: AsOfWindow,
    /// More rows than this and the file is refused ([`FeedError::TooManyRows`]).
    pub max_rows: u64,
}

/// The `as_of` times a stock row may carry: at most `future` ahead of the
/// import's clock (a count from the future would make every later count
/// stale) and at most `max_age` behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOfWindow {
    /// The import's clock: when it began (kept across its invocations, so
    /// a row is judged alike in each).
    pub clock: OffsetDateTime,
    pub future: Duration,
    pub max_age: Duration,
}

impl AsOfWindow {
    /// Why `t` is outside the window, if it is.
    pub fn check(&self, t: OffsetDateTime) -> Result<(), String> {
        let (clock, at) = (clock::format(self.clock), clock::format(t));
        if t > self.clock + self.future {
            return Err(format!(
                "as_of {at} is more than {} ahead of the import's clock ({clock})",
                human(self.future)
            ));
        }
        if t < self.clock - self.max_age {
            return Err(format!(
                "as_of {at} is more than {} before the import's clock ({clock})",
                human(self.max_age)
            ));
        }
        Ok(())
    }
}

/// A duration as settings write it and people read it: `5 minutes`, `31 days`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0 => (0, "second"),
        _ if s % 86_400 == 0 => (s / 86_400, "day"),
        _ if s % 3_600 == 0 => (s / 3_600, "hour"),
        _ if s % 60 == 0 => (s / 60, "minute"),
        _ => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Where a reader stands: what a reader started there needs to read on
/// exactly as a read from the start would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The byte of the object the next record starts at.
    pub offset: u64,
    /// The physical line that record starts on (the first line is 1).
    pub line: u64,
    /// Rows (valid or rejected) before it.
    pub rows: u64,
    /// A CSV's columns, from its header.
    pub columns: Option<Columns>,
}

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    /// The physical line the row starts on (the header is line 1).
    pub line: u64,
    pub sku: Sku,
    pub location: Location,
    pub quantity: u32,
    /// When the count was taken, in [`clock`] format (stock rows).
    pub as_of: String,
}

/// A row that was refused, for the rejects report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Row(FeedRow),
    Rejected(RejectedRow),
}

/// Column positions from a CSV header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    pub sku: usize,
    pub quantity: usize,
    pub location: Option<usize>,
    pub as_of: Option<usize>,
}

/// Streams a feed's rows.
pub struct FeedReader<R> {
    reader: R,
    format: FeedFormat,
    options: ReadOptions,
    columns: Option<Columns>,
    /// The next physical line number to be read.
    line: u64,
    /// Bytes read from `reader`, plus the offset it started at.
    consumed: u64,
    /// Lines read ahead for a quoted field that was never closed: they are
    /// read again as records of their own.
    pending: std::collections::VecDeque<Line>,
    /// Rows (valid or rejected) seen so far.
    rows: u64,
    /// Whether the last byte read was a line ending.
    ended_with_newline: bool,
    last_rejected: bool,
    buf: Vec<u8>,
}

fn lossy(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n']);
    text.chars().take(RAW_KEPT).collect()
}

/// Where a CSV record stands after a byte, as the csv crate and spreadsheets
/// read it: a `"` opens a quoted field only at the start of a field;
/// anywhere else it is data (`5" BLUE jacket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csv {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the field's end, or the first of `""`.
    QuoteInQuoted,
}

impl Csv {
    fn after(self, b: u8) -> Self {
        match (self, b) {
            (Csv::FieldStart, b'"') => Csv::Quoted,
            (Csv::FieldStart | Csv::Unquoted | Csv::QuoteInQuoted, b',' | b'\n' | b'\r') => Csv::FieldStart,
            (Csv::FieldStart | Csv::Unquoted, _) => Csv::Unquoted,
            (Csv::Quoted, b'"') => Csv::QuoteInQuoted,
            (Csv::Quoted, _) => Csv::Quoted,
            (Csv::QuoteInQuoted, b'"') => Csv::Quoted,
            // Text after a closing quote is kept, as the csv crate keeps it.
            (Csv::QuoteInQuoted, _) => Csv::Unquoted,
        }
    }

    /// The state after a line, from the state before it.
    fn scan(self, line: &[u8]) -> Self {
        line.iter().fold(self, |state, b| state.after(*b))
    }
}

/// Splits one CSV record into fields.
fn split_csv(record: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut state = Csv::FieldStart;
    for c in record.chars() {
        // Within a record only commas and quotes shape the fields.
        let next = state.after(match c {
            ',' => b',',
            '"' => b'"',
            _ => b'x',
        });
        match (state, next) {
            (_, Csv::FieldStart) => fields.push(std::mem::take(&mut field)),
            (Csv::FieldStart, Csv::Quoted) | (Csv::Quoted, Csv::QuoteInQuoted) => {}
            _ => field.push(c),
        }
        state = next;
    }
    fields.push(field);
    fields
}

/// One physical line of the file.
#[derive(Debug)]
struct Line {
    number: u64,
    /// The byte it starts at.
    offset: u64,
    bytes: Vec<u8>,
    /// It ends with a line ending (the file's last line may not).
    ended: bool,
    /// Longer than [`MAX_ROW_BYTES`]: only its start is kept, the rest skipped.
    overlong: bool,
}

/// One record: a line, or for CSV the lines a quoted field spans.
#[derive(Debug)]
struct Record {
    line: u64,
    bytes: Vec<u8>,
    fault: Option<String>,
}

fn quantity(raw: &str, kind: FeedKind) -> Result<u32, String> {
    let raw = raw.trim();
    let n: i64 = raw
        .parse()
        .map_err(|_| format!("quantity {raw:?} is not a whole number"))?;
    let min = match kind {
        FeedKind::Deliveries => 1,
        FeedKind::Stock => 0,
    };
    if n < min || n > i64::from(Quantity::MAX) {
        return Err(format!(
            "quantity {n} is out of range ({min} to {})",
            Quantity::MAX
        ));
    }
    Ok(n as u32)
}

impl<R: AsyncBufRead + Unpin> FeedReader<R> {
    /// Opens a feed: for CSV, reads and checks the header. An empty file
    /// has no rows (not an error).
    pub async fn open(reader: R, format: FeedFormat, options: ReadOptions) -> Result<Self, FeedError> {
        let start = Position {
            offset: 0,
            line: 1,
            rows: 0,
            columns: None,
        };
        let mut me = Self::resume(reader, format, options, start);
        if format == FeedFormat::Csv {
            if let Some(Record { bytes, .. }) = me.read_record().await? {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| FeedError::Unreadable("the header is not UTF-8 text".into()))?;
                let text = text.trim_start_matches('\u{feff}').trim_end_matches(['\r', '\n']);
                let names: Vec<String> = split_csv(text)
                    .iter()
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect();
                let find = |name: &str| names.iter().position(|n| n == name);
                let (Some(sku), Some(quantity)) = (find("sku"), find("quantity")) else {
                    return Err(FeedError::Unreadable(format!(
                        "the header must name the columns sku and quantity; it has {names:?}"
                    )));
                };
                me.columns = Some(Columns {
                    sku,
                    quantity,
                    location: find("location"),
                    as_of: find("as_of"),
                });
            }
        }
        Ok(me)
    }

    /// A reader of the object's bytes from `at` on (`reader` starts there):
    /// the rows, their line numbers and the row count are those a read
    /// from the start would give from there.
    pub fn resume(reader: R, format: FeedFormat, options: ReadOptions, at: Position) -> Self {
        Self {
            reader,
            format,
            options,
            columns: at.columns,
            line: at.line,
            consumed: at.offset,
            pending: std::collections::VecDeque::new(),
            rows: at.rows,
            ended_with_newline: true,
            last_rejected: false,
            buf: Vec::new(),
        }
    }

    /// Where the next record starts: a reader resumed here reads on as this one would.
    pub fn position(&self) -> Position {
        let (offset, line) = match self.pending.front() {
            Some(l) => (l.offset, l.number),
            None => (self.consumed, self.line),
        };
        Position {
            offset,
            line,
            rows: self.rows,
            columns: self.columns,
        }
    }

    /// Rows seen so far, valid or rejected (blank lines are not rows).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the file looks cut short: it does not end with a line
    /// ending and its last row was rejected.
    pub fn looks_truncated(&self) -> bool {
        !self.ended_with_newline && self.last_rejected
    }

    /// The next physical line: one read ahead and put back, or the file's.
    async fn next_line(&mut self) -> Result<Option<Line>, FeedError> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        self.buf.clear();
        let n = (&mut self.reader)
            .take((MAX_ROW_BYTES + 1) as u64)
            .read_until(b'\n', &mut self.buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let (number, offset) = (self.line, self.consumed);
        self.consumed += n as u64;
        self.ended_with_newline = self.buf.last() == Some(&b'\n');
        if self.ended_with_newline {
            self.line += 1;
        }
        let overlong = self.buf.len() > MAX_ROW_BYTES;
        let bytes = if overlong {
            let kept = self.buf[..RAW_KEPT].to_vec();
            self.skip_line().await?;
            kept
        } else {
            std::mem::take(&mut self.buf)
        };
        Ok(Some(Line {
            number,
            offset,
            bytes,
            ended: self.ended_with_newline || overlong,
            overlong,
        }))
    }

    /// Reads one record: for CSV, lines are joined while a quoted field is
    /// open. A quoted field still open at the end of the file, or past
    /// [`MAX_ROW_BYTES`], was never closed: its first line is refused and
    /// the lines after it are read again as records of their own, so it
    /// costs no row but the one it opened on.
    async fn read_record(&mut self) -> Result<Option<Record>, FeedError> {
        let Some(first) = self.next_line().await? else {
            return Ok(None);
        };
        if first.overlong {
            let fault = Some(format!("row longer than {MAX_ROW_BYTES} bytes"));
            return Ok(Some(Record {
                line: first.number,
                bytes: first.bytes,
                fault,
            }));
        }
        let mut state = Csv::FieldStart.scan(&first.bytes);
        if self.format != FeedFormat::Csv || state != Csv::Quoted || !first.ended {
            return Ok(Some(Record {
                line: first.number,
                bytes: first.bytes,
                fault: None,
            }));
        }
        let mut spanned: Vec<Line> = Vec::new();
        let mut size = first.bytes.len();
        while let Some(line) = self.next_line().await? {
            if line.overlong || size + line.bytes.len() > MAX_ROW_BYTES {
                spanned.push(line);
                break;
            }
            size += line.bytes.len();
            state = state.scan(&line.bytes);
            let ended = line.ended;
            spanned.push(line);
            if state != Csv::Quoted || !ended {
                let mut bytes = first.bytes;
                for l in spanned {
                    bytes.extend_from_slice(&l.bytes);
                }
                return Ok(Some(Record {
                    line: first.number,
                    bytes,
                    fault: None,
                }));
            }
        }
        for line in spanned.into_iter().rev() {
            self.pending.push_front(line);
        }
        Ok(Some(Record {
            line: first.number,
            bytes: first.bytes,
            fault: Some(format!(
                "a quoted field opened on line {} is never closed",
                first.number
            )),
        }))
    }

    /// Skips to the end of the current line.
    async fn skip_line(&mut self) -> Result<(), FeedError> {
        while !self.ended_with_newline {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(MAX_ROW_BYTES as u64)
                .read_until(b'\n', &mut self.buf)
                .await?;
            if n == 0 {
                return Ok(());
            }
            self.consumed += n as u64;
            self.ended_with_newline = self.buf.last() == Some(&b'\n');
            if self.ended_with_newline {
                self.line += 1;
            }
        }
        Ok(())
    }

    /// The next row, valid or rejected; `None` at the end of the file.
    pub async fn next_item(&mut self) -> Result<Option<FeedItem>, FeedError> {
        loop {
            let Some(Record { line, bytes, fault }) = self.read_record().await? else {
                return Ok(None);
            };
            if fault.is_none() && bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            self.rows += 1;
            if self.rows > self.options.max_rows {
                return Err(FeedError::TooManyRows(self.options.max_rows));
            }
            let item = match fault {
                Some(why) => Self::reject(line, why, &bytes),
                None => self.parse(line, &bytes),
            };
            self.last_rejected = matches!(item, FeedItem::Rejected(_));
            return Ok(Some(item));
        }
    }

    fn reject(line: u64, reason: impl Into<String>, raw: &[u8]) -> FeedItem {
        FeedItem::Rejected(RejectedRow {
            line,
            reason: reason.into(),
            raw: lossy(raw),
        })
    }

    fn parse(&self, line: u64, bytes: &[u8]) -> FeedItem {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Self::reject(line, "not valid UTF-8", bytes);
        };
        let text = text.trim_end_matches(['\r', '\n']);
        let fields: HashMap<&'static str, String> = match self.format {
            FeedFormat::Csv => {
                let Some(c) = self.columns else {
                    return Self::reject(line, "no header", bytes);
                };
                let values = split_csv(text);
                let get = |i: Option<usize>| i.and_then(|i| values.get(i)).cloned();
                [
                    ("sku", get(Some(c.sku))),
                    ("quantity", get(Some(c.quantity))),
                    ("location", get(c.location)),
                    ("as_of", get(c.as_of)),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect()
            }
            FeedFormat::JsonLines => {
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
                    return Self::reject(line, "not a JSON object", bytes);
                };
                let mut out = HashMap::new();
                for (k, v) in map {
                    let key = match k.to_ascii_lowercase().as_str() {
                        "sku" => "sku",
                        "quantity" => "quantity",
                        "location" => "location",
                        "as_of" => "as_of",
                        _ => continue,
                    };
                    let v = match v {
                        Value::String(s) if key != "quantity" => s,
                        Value::Number(n) if key == "quantity" => n.to_string(),
                        Value::Null => continue,
                        other => {
                            return Self::reject(line, format!("{key} has the wrong type: {other}"), bytes);
                        }
                    };
                    out.insert(key, v);
                }
                out
            }
        };
        match self.row(line, &fields) {
            Ok(row) => FeedItem::Row(row),
            Err(reason) => Self::reject(line, reason, bytes),
        }
    }

    fn row(&self, line: u64, fields: &HashMap<&'static str, String>) -> Result<FeedRow, String> {
        let sku = fields.get("sku").map(|s| s.trim()).unwrap_or_default();
        if sku.is_empty() {
            return Err("empty sku".into());
        }
        let sku = Sku::parse(sku).map_err(|e| e.to_string())?;
        let quantity = match fields.get("quantity") {
            Some(q) if !q.trim().is_empty() => quantity(q, self.options.kind)?,
            _ => return Err("empty quantity".into()),
        };
        let named = fields.get("location").map(|l| l.trim()).filter(|l| !l.is_empty());
        let location = match named {
            Some(l) => Some(Location::parse(l).map_err(|e| e.to_string())?),
            None => None,
        };
        let location = self.confine(location)?;
        let as_of = match (
            self.options.kind,
            fields.get("as_of").map(|a| a.trim()).filter(|a| !a.is_empty()),
        ) {
            (FeedKind::Stock, Some(a)) => {
                let t = OffsetDateTime::parse(a, &Rfc3339)
                    .map_err(|_| format!("as_of {a:?} is not an RFC 3339 time"))?;
                self.options.as_of.check(t)?;
                clock::format(t)
            }
            _ => self.options.last_modified.clone(),
        };
        Ok(FeedRow {
            line,
            sku,
            location,
            quantity,
            as_of,
        })
    }

    /// Where a row may go: a stock row counts its supplier's pool only; a
    /// delivery goes only to a location listed for its supplier. `named`
    /// is the row's own `location`, if it has one.
    fn confine(&self, named: Option<Location>) -> Result<Location, String> {
        let o = &self.options;
        match (o.kind, named) {
            (FeedKind::Stock, None) => Ok(o.pool.clone()),
            (FeedKind::Stock, Some(l)) if l == o.pool => Ok(l),
            (FeedKind::Stock, Some(l)) => Err(format!(
                "a stock file from {} counts only its own pool {}, not {} {l}",
                o.supplier,
                o.pool,
                if l.is_pool() { "the pool" } else { "the location" }
            )),
            (FeedKind::Deliveries, named) => {
                let listed = o.delivers_to.iter().map(Location::as_str).collect::<Vec<_>>();
                let Some(l) = named.or_else(|| o.delivers_to.first().cloned()) else {
                    return Err(format!(
                        "{} has no delivery locations in FEED_SUPPLIERS",
                        o.supplier
                    ));
                };
                if o.delivers_to.contains(&l) {
                    Ok(l)
                } else {
                    Err(format!(
                        "{} may deliver only to {} (FEED_SUPPLIERS), not to {l}",
                        o.supplier,
                        if listed.is_empty() {
                            "no location".to_owned()
                        } else {
                            listed.join(", ")
                        }
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{decode_s3_key, FeedKey};

    fn loc(l: &str) -> Location {
        Location::parse(l).unwrap()
    }

    /// The import's clock in these tests: 2026-11-22T12:00:00Z.
    fn noon() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-22T12:00:00Z", &Rfc3339).unwrap()
    }

    /// Supplier acme: it delivers to warehouse (the default) and downtown.
    fn options(kind: FeedKind) -> ReadOptions {
        ReadOptions {
            kind,
            supplier: "acme".into(),
            pool: Location::pool("acme").unwrap(),
            delivers_to: vec![loc("warehouse"), loc("downtown")],
            last_modified: "2026-11-22T08:00:00.000000Z".into(),
            as_of: AsOfWindow {
                clock: noon(),
                future: Duration::from_secs(300),
                max_age: Duration::from_secs(31 * 86_400),
            },
            max_rows: 1_000_000,
        }
    }

    /// A CSV reader over any stream, as the import opens one.
    async fn csv<R: tokio::io::AsyncRead + Unpin>(
        stream: R,
        kind: FeedKind,
    ) -> FeedReader<tokio::io::BufReader<R>> {
        FeedReader::open(tokio::io::BufReader::new(stream), FeedFormat::Csv, options(kind))
            .await
            .unwrap()
    }

    /// What a deliveries CSV's rows become, summed up.
    async fn delivered(bytes: &[u8]) -> Vec<String> {
        summary(
            &read_all(bytes, FeedFormat::Csv, FeedKind::Deliveries)
                .await
                .unwrap(),
        )
    }

    async fn read_all(bytes: &[u8], format: FeedFormat, kind: FeedKind) -> Result<Vec<FeedItem>, FeedError> {
        read_with(bytes, format, options(kind)).await
    }

    async fn read_with(
        bytes: &[u8],
        format: FeedFormat,
        options: ReadOptions,
    ) -> Result<Vec<FeedItem>, FeedError> {
        let mut r = FeedReader::open(tokio::io::BufReader::new(bytes), format, options).await?;
        let mut out = Vec::new();
        while let Some(item) = r.next_item().await? {
            out.push(item);
        }
        Ok(out)
    }

    fn summary(items: &[FeedItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                FeedItem::Row(r) => format!("{} ok {}@{}={}", r.line, r.sku, r.location, r.quantity),
                FeedItem::Rejected(r) => format!("{} rejected: {}", r.line, r.reason),
            })
            .collect()
    }

    #[test]
    fn keys_decode_and_parse() {
        assert_eq!(
            decode_s3_key("feeds/acme/deliveries/Nov+22+delivery%2B1.csv").unwrap(),
            "feeds/acme/deliveries/Nov 22 delivery+1.csv"
        );
        assert!(decode_s3_key("feeds/%zz").is_err());
        let k = FeedKey::parse("feeds/acme/deliveries/Nov 22 delivery.CSV").unwrap();
        assert_eq!(
            (k.supplier.as_str(), k.pool.as_str(), k.kind, k.format),
            ("acme", "pool:acme", FeedKind::Deliveries, FeedFormat::Csv)
        );
        let k = FeedKey::parse("feeds/acme/stock/2026/11/22.jsonl").unwrap();
        assert_eq!((k.kind, k.format), (FeedKind::Stock, FeedFormat::JsonLines));
        for bad in [
            "reports/acme/stock/x.csv",
            "feeds/Acme Co/stock/x.csv",
            "feeds/acme/returns/x.csv",
            "feeds/acme/stock/x.xlsx",
            "feeds/acme/stock",
            // A folder named like a pool is not a supplier.
            "feeds/pool:acme/stock/x.csv",
        ] {
            assert!(FeedKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn columns_in_any_order_and_case_with_unknown_ones_ignored() {
        let csv = b"\xEF\xBB\xBFNote,Quantity,SKU,Location\r\nfirst,3,JKT-BLUE-M,downtown\r\n,2,CAP,\r\n";
        let items = read_all(csv, FeedFormat::Csv, FeedKind::Deliveries)
            .await
            .unwrap();
        assert_eq!(
            summary(&items),
            ["2 ok JKT-BLUE-M@downtown=3", "3 ok CAP@warehouse=2"]
        );
    }

    #[tokio::test]
    async fn bad_rows_are_rejected_with_their_line_and_the_rest_pass() {
        let csv = "sku,quantity,location,note\n\
                   A,1,,\"a note\nover two lines\"\n\
                   ,2,,\n\
                   B,1.5,,\n\
                   C,-1,,\n\
                   D,2000000,,\n\
                   E,3,Back Room,\n\
                   \n\
                   F,\"4\",,\"said \"\"hi\"\", left\"\n";
        let items = read_all(csv.as_bytes(), FeedFormat::Csv, FeedKind::Deliveries)
            .await
            .unwrap();
        assert_eq!(
            summary(&items),
            [
                "2 ok A@warehouse=1",
                "4 rejected: empty sku",
                "5 rejected: quantity \"1.5\" is not a whole number",
                "6 rejected: quantity -1 is out of range (1 to 1000000)",
                "7 rejected: quantity 2000000 is out of range (1 to 1000000)",
                &format!("8 rejected: {}", Location::parse("Back Room").unwrap_err()),
                "10 ok F@warehouse=4",
            ]
        );
        let FeedItem::Rejected(r) = &items[1] else {
            panic!()
        };
        assert_eq!(r.raw, ",2,,");
    }

    #[tokio::test]
    async fn a_quote_inside_an_unquoted_field_is_data_and_swallows_nothing() {
        let csv = "sku,quantity,description\n\
                   A,1,5\" BLUE jacket\n\
                   B,2,plain\n\
                   C,3,\"quoted, with a comma\"\n\
                   D,4,the 12\" one, again\n\
                   E,5,\n\
                   F,6,last\n";
        assert_eq!(
            delivered(csv.as_bytes()).await,
            [
                "2 ok A@warehouse=1",
                "3 ok B@warehouse=2",
                "4 ok C@warehouse=3",
                "5 ok D@warehouse=4",
                "6 ok E@warehouse=5",
                "7 ok F@warehouse=6",
            ]
        );
        assert_eq!(
            split_csv("A,5\" BLUE,\"x \"\"y\"\" z\",\"q\"tail"),
            ["A", "5\" BLUE", "x \"y\" z", "qtail"]
        );
    }

    #[tokio::test]
    async fn a_quoted_field_never_closed_costs_only_the_line_it_opened_on() {
        let csv = "sku,quantity,note\n\
                   A,1,\"starts here and never ends\n\
                   B,2,\n\
                   C,3,\n";
        assert_eq!(
            delivered(csv.as_bytes()).await,
            [
                "2 rejected: a quoted field opened on line 2 is never closed",
                "3 ok B@warehouse=2",
                "4 ok C@warehouse=3",
            ]
        );
        // One that is closed may span lines, and the rows after it are read as they are.
        let csv = "sku,quantity,note\nC,3,\"spans\ntwo lines\"\nD,4,\n";
        assert_eq!(
            delivered(csv.as_bytes()).await,
            ["2 ok C@warehouse=3", "4 ok D@warehouse=4"]
        );
        // Past the size limit a quoted field is taken as never closed too.
        let mut big = b"sku,quantity,note\nA,1,\"open\n".to_vec();
        for i in 0..(MAX_ROW_BYTES / 10) {
            big.extend_from_slice(format!("S{i},1,x\n").as_bytes());
        }
        let rows = delivered(&big).await;
        assert_eq!(
            rows[0],
            "2 rejected: a quoted field opened on line 2 is never closed"
        );
        assert_eq!(rows.len(), 1 + MAX_ROW_BYTES / 10);
        assert!(rows[1..].iter().all(|r| r.contains(" ok ")), "{:?}", &rows[1..3]);
    }

    #[tokio::test]
    async fn invalid_utf8_is_rejected_alone() {
        let mut csv = b"sku,quantity\nA,1\n".to_vec();
        csv.extend_from_slice(b"B\xFF\xFE,2\nC,3\n");
        assert_eq!(
            delivered(&csv).await,
            [
                "2 ok A@warehouse=1",
                "3 rejected: not valid UTF-8",
                "4 ok C@warehouse=3"
            ]
        );
    }

    #[tokio::test]
    async fn stock_rows_default_to_the_pool_and_last_modified_and_allow_zero() {
        let csv = b"sku,quantity,as_of\nA,0,\nB,5,2026-11-22T09:30:00+01:00\nC,1,yesterday\n";
        let items = read_all(csv, FeedFormat::Csv, FeedKind::Stock).await.unwrap();
        let FeedItem::Row(a) = &items[0] else { panic!() };
        assert_eq!(
            (a.location.as_str(), a.quantity, a.as_of.as_str()),
            ("pool:acme", 0, "2026-11-22T08:00:00.000000Z")
        );
        let FeedItem::Row(b) = &items[1] else { panic!() };
        assert_eq!(b.as_of, "2026-11-22T08:30:00.000000Z");
        assert_eq!(
            summary(&items[2..]),
            ["4 rejected: as_of \"yesterday\" is not an RFC 3339 time"]
        );
        // A delivery of zero is refused.
        let items = read_all(b"sku,quantity\nA,0\n", FeedFormat::Csv, FeedKind::Deliveries)
            .await
            .unwrap();
        assert!(matches!(items[0], FeedItem::Rejected(_)));
    }

    #[tokio::test]
    async fn a_file_without_the_needed_columns_is_unreadable_and_an_empty_one_has_no_rows() {
        let err = read_all(b"item,count\nA,1\n", FeedFormat::Csv, FeedKind::Stock)
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::Unreadable(_)), "{err}");
        let err = read_all(b"\x89PNG\r\n\x1a\n\0\0", FeedFormat::Csv, FeedKind::Stock)
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::Unreadable(_)), "{err}");
        assert!(read_all(b"", FeedFormat::Csv, FeedKind::Stock)
            .await
            .unwrap()
            .is_empty());
        assert!(read_all(b"sku,quantity\n", FeedFormat::Csv, FeedKind::Stock)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn json_lines_carry_the_same_columns() {
        let jsonl = b"{\"SKU\": \"A\", \"quantity\": 2, \"extra\": true}\n\
                      {\"sku\": \"B\", \"quantity\": \"2\"}\n\
                      not json\n\
                      \n\
                      {\"sku\": \"C\", \"quantity\": 1, \"location\": \"downtown\"}";
        let items = read_all(jsonl, FeedFormat::JsonLines, FeedKind::Deliveries)
            .await
            .unwrap();
        assert_eq!(
            summary(&items),
            [
                "1 ok A@warehouse=2",
                "2 rejected: quantity has the wrong type: \"2\"",
                "3 rejected: not a JSON object",
                "5 ok C@downtown=1",
            ]
        );
    }

    #[tokio::test]
    async fn a_cut_off_last_row_looks_truncated() {
        let read = |bytes: &'static [u8]| async move {
            let mut r = csv(bytes, FeedKind::Stock).await;
            while r.next_item().await.unwrap().is_some() {}
            (r.looks_truncated(), r.rows())
        };
        assert_eq!(read(b"sku,quantity\nA,1\nB,").await, (true, 2));
        assert!(!read(b"sku,quantity\nA,1\nB,2").await.0);
    }

    #[tokio::test]
    async fn an_overlong_row_is_rejected_and_reading_goes_on() {
        let mut csv = b"sku,quantity\n".to_vec();
        csv.extend(std::iter::repeat_n(b'x', MAX_ROW_BYTES + 10));
        csv.extend_from_slice(b",1\nB,2\n");
        assert_eq!(
            delivered(&csv).await,
            [
                format!("2 rejected: row longer than {MAX_ROW_BYTES} bytes"),
                "3 ok B@warehouse=2".into()
            ]
        );
    }

    #[tokio::test]
    async fn a_large_file_streams_through_in_small_chunks() {
        let (mut tx, rx) = tokio::io::duplex(4096);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(b"sku,quantity\n").await.unwrap();
            for i in 0..200_000u32 {
                tx.write_all(format!("SKU-{i},{}\n", i % 7 + 1).as_bytes())
                    .await
                    .unwrap();
            }
        });
        let mut r = csv(rx, FeedKind::Deliveries).await;
        let mut rows = 0u32;
        let mut last_line = 0;
        while let Some(item) = r.next_item().await.unwrap() {
            let FeedItem::Row(row) = item else {
                panic!("{item:?}")
            };
            rows += 1;
            last_line = row.line;
        }
        writer.await.unwrap();
        assert_eq!((rows, last_line), (200_000, 200_001));
    }

    #[tokio::test]
    async fn a_stock_file_counts_only_its_own_pool() {
        let csv = "sku,quantity,location\n\
                   A,1,\n\
                   B,2,pool:acme\n\
                   C,3,downtown\n\
                   D,4,pool:globex\n\
                   E,5,acme\n";
        assert_eq!(
            summary(&read_all(csv.as_bytes(), FeedFormat::Csv, FeedKind::Stock).await.unwrap()),
            [
                "2 ok A@pool:acme=1",
                "3 ok B@pool:acme=2",
                "4 rejected: a stock file from acme counts only its own pool pool:acme, not the location downtown",
                "5 rejected: a stock file from acme counts only its own pool pool:acme, not the pool pool:globex",
                // The supplier's own name is a place like any other, not its pool.
                "6 rejected: a stock file from acme counts only its own pool pool:acme, not the location acme",
            ]
        );
    }

    #[tokio::test]
    async fn deliveries_go_only_to_the_supplier_s_listed_locations() {
        let csv = "sku,quantity,location\n\
                   A,1,\n\
                   B,2,downtown\n\
                   C,3,uptown\n\
                   D,4,pool:acme\n";
        assert_eq!(
            delivered(csv.as_bytes()).await,
            [
                "2 ok A@warehouse=1",
                "3 ok B@downtown=2",
                "4 rejected: acme may deliver only to warehouse, downtown (FEED_SUPPLIERS), not to uptown",
                "5 rejected: acme may deliver only to warehouse, downtown (FEED_SUPPLIERS), not to pool:acme",
            ]
        );
        // A supplier listed with no locations delivers nowhere.
        let nowhere = ReadOptions {
            delivers_to: Vec::new(),
            ..options(FeedKind::Deliveries)
        };
        let items = read_with(
            b"sku,quantity,location\nA,1,\nB,1,warehouse\n",
            FeedFormat::Csv,
            nowhere,
        )
        .await
        .unwrap();
        assert_eq!(
            summary(&items),
            [
                "2 rejected: acme has no delivery locations in FEED_SUPPLIERS",
                "3 rejected: acme may deliver only to no location (FEED_SUPPLIERS), not to warehouse",
            ]
        );
    }

    #[test]
    fn as_of_is_within_minutes_ahead_and_a_month_behind_the_clock() {
        let w = options(FeedKind::Stock).as_of;
        let at = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        for ok in [
            "2026-11-22T12:05:00Z",
            "2026-11-22T12:00:00Z",
            "2026-10-22T12:00:00Z",
        ] {
            assert_eq!(w.check(at(ok)), Ok(()), "{ok}");
        }
        assert_eq!(
            w.check(at("2026-11-22T12:05:01Z")),
            Err(
                "as_of 2026-11-22T12:05:01.000000Z is more than 5 minutes ahead of the import's clock \
                 (2026-11-22T12:00:00.000000Z)"
                    .into()
            )
        );
        assert_eq!(
            w.check(at("2026-10-22T11:59:59Z")),
            Err(
                "as_of 2026-10-22T11:59:59.000000Z is more than 31 days before the import's clock \
                 (2026-11-22T12:00:00.000000Z)"
                    .into()
            )
        );
        assert_eq!(human(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(human(Duration::ZERO), "0 seconds");
    }

    #[tokio::test]
    async fn a_stock_row_from_the_future_or_long_ago_is_rejected() {
        let csv = "sku,quantity,as_of\n\
                   A,1,2026-11-22T11:00:00Z\n\
                   B,2,2099-01-01T00:00:00Z\n\
                   C,3,2020-01-01T00:00:00Z\n\
                   D,4,\n";
        let items = read_all(csv.as_bytes(), FeedFormat::Csv, FeedKind::Stock)
            .await
            .unwrap();
        assert_eq!(
            summary(&items),
            [
                "2 ok A@pool:acme=1",
                "3 rejected: as_of 2099-01-01T00:00:00.000000Z is more than 5 minutes ahead of the import's clock \
                 (2026-11-22T12:00:00.000000Z)",
                "4 rejected: as_of 2020-01-01T00:00:00.000000Z is more than 31 days before the import's clock \
                 (2026-11-22T12:00:00.000000Z)",
                // Without its own as_of a row counts as of the file's arrival, unjudged.
                "5 ok D@pool:acme=4",
            ]
        );
    }

    #[tokio::test]
    async fn more_rows_than_the_cap_is_an_error_and_blank_lines_are_not_rows() {
        let capped = ReadOptions {
            max_rows: 3,
            ..options(FeedKind::Deliveries)
        };
        let within = b"sku,quantity\nA,1\n\n\nB,x\nC,1\n";
        assert_eq!(
            read_with(within, FeedFormat::Csv, capped.clone())
                .await
                .unwrap()
                .len(),
            3
        );
        let over = b"sku,quantity\nA,1\nB,1\nC,1\nD,1\n";
        let err = read_with(over, FeedFormat::Csv, capped).await.unwrap_err();
        assert!(matches!(err, FeedError::TooManyRows(3)), "{err}");
        assert_eq!(err.to_string(), "the file has more than 3 rows (FEED_MAX_ROWS)");
    }

    /// Reads `bytes` from the start, then again from each position the
    /// first read passed through: every resumed read gives the rows (and
    /// line numbers, and row counts) the first read gave from there on.
    async fn resumes_like_a_full_read(bytes: &[u8], format: FeedFormat, kind: FeedKind) -> usize {
        let mut r = FeedReader::open(tokio::io::BufReader::new(bytes), format, options(kind))
            .await
            .unwrap();
        let mut steps: Vec<(Position, Option<FeedItem>)> = Vec::new();
        loop {
            let at = r.position();
            let item = r.next_item().await.unwrap();
            let end = item.is_none();
            steps.push((at, item));
            if end {
                break;
            }
        }
        assert_eq!(
            steps.last().unwrap().0.offset,
            bytes.len() as u64,
            "the end is the file's size"
        );
        for (i, (at, _)) in steps.iter().enumerate() {
            let rest = &bytes[at.offset as usize..];
            let mut resumed = FeedReader::resume(tokio::io::BufReader::new(rest), format, options(kind), *at);
            for (j, (expected_at, expected)) in steps[i..].iter().enumerate() {
                // Offsets are the object's, not the ranged body's.
                assert_eq!(resumed.position(), *expected_at, "resumed at step {i}, step {j}");
                assert_eq!(
                    &resumed.next_item().await.unwrap(),
                    expected,
                    "resumed at step {i}, step {j}"
                );
            }
        }
        steps.len()
    }

    #[tokio::test]
    async fn a_reader_resumed_at_any_row_reads_on_as_a_read_from_the_start() {
        let mut csv = b"\xEF\xBB\xBFsku,Quantity,note,location\r\n\
                        A,1,plain,\r\n\
                        \r\n\
                        B,2,\"spans\r\ntwo lines\",downtown\r\n\
                        C,3,\"never closed\r\n\
                        D,4,after it,\r\n\
                        E,x,bad quantity,\r\n"
            .to_vec();
        csv.extend(std::iter::repeat_n(b'y', MAX_ROW_BYTES + 5));
        csv.extend_from_slice(b",1\r\nF\xFF,5,,\r\nG,6,5\" BLUE,uptown\r\nH,7,last,");
        let steps = resumes_like_a_full_read(&csv, FeedFormat::Csv, FeedKind::Deliveries).await;
        assert_eq!(steps, 10, "nine rows and the end");

        let jsonl = b"{\"sku\": \"A\", \"quantity\": 2}\n\n{\"sku\": \"B\"}\nnot json\n{\"sku\": \"C\", \"quantity\": 1}";
        assert_eq!(
            resumes_like_a_full_read(jsonl, FeedFormat::JsonLines, FeedKind::Deliveries).await,
            5
        );
    }

    #[tokio::test]
    async fn a_resumed_reader_keeps_the_lines_and_counts_of_the_whole_file() {
        let csv = b"sku,quantity\nA,1\nB,2\nC,3\nD,4\n";
        let mut r = csv_reader(csv).await;
        r.next_item().await.unwrap();
        r.next_item().await.unwrap();
        let at = r.position();
        assert_eq!((at.offset, at.line, at.rows), (21, 4, 2));
        // A resumed reader is capped by the rows before it too.
        let capped = ReadOptions {
            max_rows: 3,
            ..options(FeedKind::Deliveries)
        };
        let mut resumed = FeedReader::resume(&csv[21..], FeedFormat::Csv, capped, at);
        let Some(FeedItem::Row(c)) = resumed.next_item().await.unwrap() else {
            panic!()
        };
        assert_eq!((c.line, c.sku.as_str()), (4, "C"));
        assert!(matches!(
            resumed.next_item().await,
            Err(FeedError::TooManyRows(3))
        ));
    }

    async fn csv_reader(bytes: &[u8]) -> FeedReader<&[u8]> {
        FeedReader::open(bytes, FeedFormat::Csv, options(FeedKind::Deliveries))
            .await
            .unwrap()
    }
}
