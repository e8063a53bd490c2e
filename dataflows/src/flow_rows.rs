//! How the flow table stores a flow's rows: 44 bytes a row, the bucket's start and each
//! counter in 32 bits, while they fit; and [`Rows`], the read-only view of a flow's rows
//! whichever way they are stored.
//!
//! A row's counters are sums over the updates of one flow in one bucket. On the traffic Felix
//! reports they fit 32 bits by far (2^31 bytes in one bucket is over a gigabit a second for a
//! whole 15-second window), and half the width halves the table's largest part. A flow with
//! one sum outside `i32` (or a bucket outside `u32` seconds, before 1970 or after 2106) keeps
//! all its rows whole ([`FlowRow`], 80 bytes) until it leaves the table; nothing is rounded or
//! clamped on the way.

use crate::model::{Bucket, LabelPair, Stats};

/// One row of a flow: a bucket and label pair, and the summed counters of its updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRow {
    /// The bucket's start.
    pub bucket: Bucket,
    /// The source and destination label sets.
    pub labels: LabelPair,
    /// The counters of every update of the row, summed (`records` is never zero).
    pub stats: Stats,
}

/// [`Stats`] with every counter in an `i32`, in the order of [`Stats::fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NarrowStats([i32; 8]);

impl NarrowStats {
    /// `stats` narrowed, if every counter fits.
    fn of(stats: &Stats) -> Option<NarrowStats> {
        let mut narrow = [0; 8];
        for (field, value) in narrow.iter_mut().zip(stats.fields()) {
            *field = i32::try_from(value).ok()?;
        }
        Some(NarrowStats(narrow))
    }

    fn widen(&self) -> Stats {
        Stats::from_fields(self.0.map(i64::from))
    }
}

/// A [`FlowRow`] whose bucket and counters fit 32 bits, as the table stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NarrowRow {
    bucket: u32,
    labels: LabelPair,
    stats: NarrowStats,
}

impl NarrowRow {
    /// `row` narrowed, if its bucket and counters fit.
    pub(crate) fn of(row: &FlowRow) -> Option<NarrowRow> {
        Some(NarrowRow {
            bucket: u32::try_from(row.bucket).ok()?,
            labels: row.labels,
            stats: NarrowStats::of(&row.stats)?,
        })
    }

    pub(crate) fn widen(&self) -> FlowRow {
        FlowRow {
            bucket: Bucket::from(self.bucket),
            labels: self.labels,
            stats: self.stats.widen(),
        }
    }

    /// Where the row sorts among its flow's rows.
    pub(crate) fn place(&self) -> (Bucket, LabelPair) {
        (Bucket::from(self.bucket), self.labels)
    }

    /// Adds `stats` to the row's counters: the sum, and whether it was stored (it fits).
    pub(crate) fn add(&mut self, stats: &Stats) -> (Stats, bool) {
        let mut sum = self.stats.widen();
        sum.add(stats);
        match NarrowStats::of(&sum) {
            Some(narrow) => {
                self.stats = narrow;
                (sum, true)
            }
            None => (sum, false),
        }
    }
}

/// A flow's rows in (bucket, label pair) order, read from the table.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a>(Stored<'a>);

#[derive(Clone, Copy, Debug)]
enum Stored<'a> {
    Narrow(&'a [NarrowRow]),
    Whole(&'a [FlowRow]),
}

impl<'a> Rows<'a> {
    pub(crate) fn narrow(rows: &'a [NarrowRow]) -> Rows<'a> {
        Rows(Stored::Narrow(rows))
    }

    pub(crate) fn whole(rows: &'a [FlowRow]) -> Rows<'a> {
        Rows(Stored::Whole(rows))
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        match self.0 {
            Stored::Narrow(rows) => rows.len(),
            Stored::Whole(rows) => rows.len(),
        }
    }

    /// Whether there are none (never, for a flow the table holds).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows, in order.
    pub fn iter(&self) -> RowsIter<'a> {
        RowsIter(match self.0 {
            Stored::Narrow(rows) => Iter::Narrow(rows.iter()),
            Stored::Whole(rows) => Iter::Whole(rows.iter()),
        })
    }
}

impl<'a> IntoIterator for Rows<'a> {
    type Item = FlowRow;
    type IntoIter = RowsIter<'a>;

    fn into_iter(self) -> RowsIter<'a> {
        self.iter()
    }
}

/// The iterator of [`Rows::iter`].
#[derive(Clone, Debug)]
pub struct RowsIter<'a>(Iter<'a>);

#[derive(Clone, Debug)]
enum Iter<'a> {
    Narrow(std::slice::Iter<'a, NarrowRow>),
    Whole(std::slice::Iter<'a, FlowRow>),
}

impl Iterator for RowsIter<'_> {
    type Item = FlowRow;

    fn next(&mut self) -> Option<FlowRow> {
        match &mut self.0 {
            Iter::Narrow(rows) => rows.next().map(NarrowRow::widen),
            Iter::Whole(rows) => rows.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Iter::Narrow(rows) => rows.size_hint(),
            Iter::Whole(rows) => rows.size_hint(),
        }
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bytes_in: i64) -> FlowRow {
        FlowRow {
            bucket: 60,
            labels: (1, 2),
            stats: Stats {
                records: 1,
                packets_in: 2,
                packets_out: 3,
                bytes_in,
                bytes_out: 5,
                connections_started: 6,
                connections_completed: 7,
                connections_live: 8,
            },
        }
    }

    #[test]
    fn a_row_that_fits_is_44_bytes_and_widens_to_the_same_row() {
        assert_eq!(std::mem::size_of::<NarrowRow>(), 44);
        for bytes_in in [0, -1, i64::from(i32::MAX), i64::from(i32::MIN)] {
            let narrow = NarrowRow::of(&row(bytes_in)).expect("the counters fit 32 bits");
            assert_eq!(narrow.widen(), row(bytes_in));
        }
        assert_eq!(NarrowRow::of(&row(i64::from(i32::MAX) + 1)), None);
        assert_eq!(NarrowRow::of(&row(i64::MAX)), None);
        for bucket in [-15, i64::from(u32::MAX) + 1] {
            let early = FlowRow { bucket, ..row(0) };
            assert_eq!(NarrowRow::of(&early), None, "bucket {bucket} is kept whole");
        }
        let last = FlowRow {
            bucket: i64::from(u32::MAX),
            ..row(0)
        };
        assert_eq!(
            NarrowRow::of(&last).map(|narrow| narrow.widen()),
            Some(last)
        );
    }

    #[test]
    fn a_sum_leaving_32_bits_is_returned_and_not_stored() {
        let mut narrow = NarrowRow::of(&row(i64::from(i32::MAX) - 1)).expect("fits");
        let (sum, stored) = narrow.add(&row(1).stats);
        assert!(stored);
        assert_eq!(sum.bytes_in, i64::from(i32::MAX));
        assert_eq!(narrow.widen().stats, sum);
        let (sum, stored) = narrow.add(&row(1).stats);
        assert!(!stored);
        assert_eq!((sum.records, sum.bytes_in), (3, i64::from(i32::MAX) + 1));
        assert_eq!(
            narrow.widen().stats.bytes_in,
            i64::from(i32::MAX),
            "a sum that does not fit leaves the row as it was"
        );
    }
}
