//! Applying a feed's rows: chunks of valid rows written with bounded
//! concurrency, rejects collected, and a stop before time runs out.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncBufRead;
use tokio::time::Instant;

use super::import::ImportError;
use super::report::Rejects;
use super::{FeedEffect, FeedItem, FeedReader, FeedRowInput, FeedSource, ROWS_PER_FEED_CHUNK};
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

/// What the applying pass saw.
pub(crate) struct Pass {
    /// Rows read, valid or rejected.
    pub rows: u64,
    /// Rows the reader refused (written to `rejects`).
    pub parse_rejects: u64,
    /// The chunk to resume from, when the pass stopped for time.
    pub paused_at: Option<u64>,
    pub rejects: Rejects,
}

/// How an applying pass runs.
pub(crate) struct Pace {
    /// Chunks before this one were applied by an earlier invocation: they
    /// are only counted.
    pub from_chunk: u64,
    /// Chunks written at once.
    pub concurrency: usize,
    /// No chunk starts with less than `margin` left before `deadline`.
    pub deadline: Instant,
    pub margin: Duration,
}

/// Streams the rows, applying chunks of valid ones with bounded concurrency
/// and writing rejects to a local file.
pub(crate) async fn apply_rows<R: AsyncBufRead + Unpin>(
    store: &StockStore,
    mut reader: FeedReader<R>,
    src: &FeedSource,
    effect: FeedEffect,
    pace: Pace,
) -> Result<Pass, ImportError> {
    let mut rejects = Rejects::create()?;
    let mut parse_rejects = 0u64;
    let mut chunker = Chunker::default();
    let mut in_flight = FuturesUnordered::new();
    let mut paused_at = None;
    loop {
        let item = reader.next_item().await?;
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
            if pace.deadline.saturating_duration_since(Instant::now()) < pace.margin {
                paused_at = Some(index);
                break;
            }
            while in_flight.len() >= pace.concurrency {
                if let Some(r) = in_flight.next().await {
                    r?;
                }
            }
            in_flight.push(async move { store.apply_feed_chunk(src, effect, index, &rows).await });
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
        paused_at,
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
