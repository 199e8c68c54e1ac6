//! Applying a feed's rows: chunks of valid rows written with bounded
//! concurrency, rejects collected, and a stop before time runs out, between
//! two chunks, at a [`Position`] the next invocation reads on from.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncBufRead;
use tokio::time::Instant;

use super::import::ImportError;
use super::report::Rejects;
use super::{
    FeedEffect, FeedError, FeedItem, FeedReader, FeedRowInput, FeedSource, Position, ROWS_PER_FEED_CHUNK,
};
use crate::domain::{Location, Sku};
use crate::store::StockStore;

/// Chunk numbers of the SKUs a zero-missing import sets to zero start here:
/// far past any file's own, which are numbered from 0.
pub const ZEROED_FIRST_CHUNK: u64 = 1_000_000_000;

/// Gathers valid rows into chunks of [`ROWS_PER_FEED_CHUNK`], numbered from
/// 0 in file order: a chunk's number is the same in every invocation that
/// reads the file, so a resumed import knows which are applied.
#[derive(Debug, Default)]
pub struct Chunker {
    rows: Vec<FeedRowInput>,
    next: u64,
}

impl Chunker {
    /// A chunker whose first chunk is number `first` (a reader resumed
    /// where chunk `first` starts).
    pub fn starting_at(first: u64) -> Self {
        Self {
            rows: Vec::with_capacity(ROWS_PER_FEED_CHUNK),
            next: first,
        }
    }

    /// Whether every row pushed so far is in a chunk handed out.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The number of the chunk being gathered (or the next one).
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Adds a row; returns the chunk it completes.
    pub fn push(&mut self, row: FeedRowInput) -> Option<(u64, Vec<FeedRowInput>)> {
        self.rows.push(row);
        (self.rows.len() == ROWS_PER_FEED_CHUNK).then(|| self.take())
    }

    /// At the end of the file: the last, partial chunk, if any.
    pub fn finish(&mut self) -> Option<(u64, Vec<FeedRowInput>)> {
        (!self.rows.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> (u64, Vec<FeedRowInput>) {
        let index = self.next;
        self.next += 1;
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(ROWS_PER_FEED_CHUNK));
        (index, rows)
    }
}

/// Where a pass stopped for time: every chunk before `chunk` is applied,
/// and its rows start at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pause {
    pub chunk: u64,
    pub at: Position,
}

/// What the import has seen so far, over its invocations.
pub(crate) struct Pass {
    /// Rows read, valid or rejected, from the start of the file.
    pub rows: u64,
    /// Rows the reader refused, from the start of the file.
    pub parse_rejects: u64,
    /// Bytes the applying passes read, over the invocations.
    pub bytes_read: u64,
    /// Where to resume, when the pass stopped for time.
    pub paused_at: Option<Pause>,
    /// Why reading stopped for good before the end (the row cap, met by a
    /// file that was not read first): the rows before it are applied.
    pub cut: Option<String>,
    /// The rows this invocation's reader refused (earlier ones are in parts).
    pub rejects: Rejects,
}

impl Pass {
    /// A pass that reads nothing: what earlier invocations counted.
    pub fn carried(rows: u64, parse_rejects: u64, bytes_read: u64) -> Result<Self, ImportError> {
        Ok(Self {
            rows,
            parse_rejects,
            bytes_read,
            paused_at: None,
            cut: None,
            rejects: Rejects::part()?,
        })
    }
}

/// How an applying pass runs.
pub(crate) struct Pace {
    /// The byte the reader began at: 0 (its header is read too), or where it resumed.
    pub from_offset: u64,
    /// The number of the first chunk the reader gives: where it resumes, or
    /// 0 when it reads from the start.
    pub first_chunk: u64,
    /// Chunks before this one were applied by an earlier invocation: they
    /// are only counted (a checkpoint without a position re-reads them).
    pub from_chunk: u64,
    /// Chunks written at once.
    pub concurrency: usize,
    /// No chunk starts with less than `margin` left before `deadline`.
    pub deadline: Instant,
    pub margin: Duration,
}

/// Streams the rows, applying chunks of valid ones with bounded concurrency
/// and writing rejects to a local file; `before` is what earlier
/// invocations counted. Between two chunks, once this invocation has
/// applied one, it stops if time is short: then every row read is either
/// in an applied chunk or in the rejects, and the reader's position is
/// where the next invocation reads on.
pub(crate) async fn apply_rows<R: AsyncBufRead + Unpin>(
    store: &StockStore,
    mut reader: FeedReader<R>,
    src: &FeedSource,
    effect: FeedEffect,
    pace: Pace,
    before: Pass,
) -> Result<Pass, ImportError> {
    let Pass {
        mut rejects,
        mut parse_rejects,
        ..
    } = before;
    let mut chunker = Chunker::starting_at(pace.first_chunk);
    let mut in_flight = FuturesUnordered::new();
    let mut paused_at = None;
    let mut cut = None;
    let mut dispatched = 0u64;
    loop {
        if chunker.is_empty()
            && dispatched > 0
            && chunker.next_index() >= pace.from_chunk
            && pace.deadline.saturating_duration_since(Instant::now()) < pace.margin
        {
            paused_at = Some(Pause {
                chunk: chunker.next_index(),
                at: reader.position(),
            });
            break;
        }
        let item = match reader.next_item().await {
            // Past the row cap: what came before it is applied, then no more.
            Err(e @ FeedError::TooManyRows(max)) => {
                cut = Some(format!(
                    "{e}: its first {max} rows were imported, the rest was not read"
                ));
                None
            }
            other => other?,
        };
        let done = item.is_none();
        let full = match item {
            Some(FeedItem::Rejected(r)) => {
                parse_rejects += 1;
                rejects.push(&r)?;
                None
            }
            Some(FeedItem::Row(r)) => chunker.push(r.into()),
            None => chunker.finish(),
        };
        if let Some((index, rows)) = full.filter(|(index, _)| *index >= pace.from_chunk) {
            while in_flight.len() >= pace.concurrency {
                if let Some(r) = in_flight.next().await {
                    r?;
                }
            }
            in_flight.push(async move { store.apply_feed_chunk(src, effect, index, &rows).await });
            dispatched += 1;
        }
        if done {
            break;
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    Ok(Pass {
        rows: reader.rows(),
        parse_rejects,
        bytes_read: before.bytes_read + reader.position().offset.saturating_sub(pace.from_offset),
        paused_at,
        cut,
        rejects,
    })
}

/// The rows that set `skus` of `pool` to zero, as of `as_of`.
pub fn zero_rows(skus: &[Sku], pool: &Location, as_of: &str) -> Vec<FeedRowInput> {
    skus.iter()
        .map(|sku| FeedRowInput {
            line: 0,
            sku: sku.clone(),
            location: pool.clone(),
            quantity: 0,
            as_of: as_of.to_owned(),
        })
        .collect()
}

/// For a supplier whose stock files are complete: SKUs of its pool that the
/// file did not count are set to zero, as of the file's time. Returns how
/// many were.
pub(crate) async fn zero_missing(
    store: &StockStore,
    src: &FeedSource,
    pool: &Location,
    as_of: &str,
) -> Result<u64, ImportError> {
    let missing = store.not_counted_by(pool, src).await?;
    let mut zeroed = 0;
    for (i, skus) in missing.chunks(ROWS_PER_FEED_CHUNK).enumerate() {
        let rows = zero_rows(skus, pool, as_of);
        let r = store
            .apply_feed_chunk(src, FeedEffect::Count, ZEROED_FIRST_CHUNK + i as u64, &rows)
            .await?;
        zeroed += r.applied;
    }
    Ok(zeroed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64) -> FeedRowInput {
        FeedRowInput {
            line,
            sku: Sku::parse(&format!("SKU-{line}")).unwrap(),
            location: Location::parse("warehouse").unwrap(),
            quantity: 1,
            as_of: String::new(),
        }
    }

    #[test]
    fn chunks_are_full_but_the_last_and_numbered_in_file_order() {
        let mut chunker = Chunker::default();
        let mut chunks = Vec::new();
        for line in 2..2 + 2 * ROWS_PER_FEED_CHUNK as u64 + 3 {
            chunks.extend(chunker.push(row(line)));
        }
        chunks.extend(chunker.finish());
        let shape: Vec<(u64, usize, u64)> = chunks
            .iter()
            .map(|(i, rows)| (*i, rows.len(), rows[0].line))
            .collect();
        assert_eq!(
            shape,
            [
                (0, ROWS_PER_FEED_CHUNK, 2),
                (1, ROWS_PER_FEED_CHUNK, 2 + ROWS_PER_FEED_CHUNK as u64),
                (2, 3, 2 + 2 * ROWS_PER_FEED_CHUNK as u64)
            ]
        );
        assert!(chunker.finish().is_none(), "nothing left once finished");
    }

    #[test]
    fn a_file_of_whole_chunks_has_no_partial_one() {
        let mut chunker = Chunker::default();
        let full: Vec<_> = (0..ROWS_PER_FEED_CHUNK as u64)
            .filter_map(|l| chunker.push(row(l)))
            .collect();
        assert_eq!(full.len(), 1);
        assert!(chunker.finish().is_none());
    }

    #[test]
    fn left_out_skus_are_counted_at_zero_as_of_the_file() {
        let pool = Location::parse("globex").unwrap();
        let skus = [Sku::parse("A").unwrap(), Sku::parse("B").unwrap()];
        let rows = zero_rows(&skus, &pool, "2026-11-22T08:00:00.000000Z");
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.quantity == 0
            && r.location == pool
            && r.line == 0
            && r.as_of == "2026-11-22T08:00:00.000000Z"));
        assert_eq!(rows[1].sku, skus[1]);
    }
}
