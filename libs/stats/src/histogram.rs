//! Approximate histograms: log-linear buckets with a bounded relative error.
//!
//! # Buckets
//!
//! Like HdrHistogram, values below 64 get one bucket each, and every
//! power-of-two range `[2^k, 2^(k+1))` above that is split into 64 equal
//! buckets. A value `v >= 64` whose highest set bit is `k` lands in bucket
//! `v >> (k - 6)` (64..128) of its range; that bucket is `2^(k - 6)` wide,
//! at most 1/64 of any value in it.
//! A percentile is reported as the midpoint of the bucket holding that rank
//! (clamped to the recorded min and max), so it is off from the exact value by
//! at most half a bucket width: the relative error is below
//! [`MAX_RELATIVE_ERROR`] = 1/128 (0.79%), over the whole `u64` range. Values
//! below 64 are exact. That takes 3,776 buckets (29.5 KiB) per histogram,
//! allocated once when the histogram is created.
//!
//! # Cumulative since start
//!
//! Histograms are never reset: every export reports all values recorded since
//! the histogram was created, like Prometheus summaries and unlike Finagle's
//! per-minute windows. Cumulative counts let any number of scrapers read the
//! same registry without stealing each other's data, and a reader that wants a
//! window can subtract two snapshots' counts and sums. The price is that
//! percentiles move slowly in a long-running process.
//!
//! # Concurrency
//!
//! Recording is a handful of atomic operations and never blocks. The bucket
//! array is shared by all threads (different values fall on different cache
//! lines, and one array per thread would cost 29.5 KiB each), while sum, min
//! and max, which every add touches, are striped per thread. A snapshot
//! taken while others record is not one atomic cut: `count` and the
//! percentiles come from the same copy of the buckets and agree with each
//! other, but `sum`, `min` and `max` may include or miss a few values recorded
//! during the copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::stripe;

/// Bits of linear resolution per power of two: 2^SUB_BITS buckets per octave.
const SUB_BITS: u32 = 6;
/// Buckets per power-of-two range, and the bound below which values are exact.
const SUB: u64 = 1 << SUB_BITS;
/// Number of buckets needed to cover all of `u64`.
const NUM_BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

/// Upper bound on `|percentile - exact| / exact` for any recorded data
/// (the exact percentile being the nearest-rank one, see
/// [`HistogramSnapshot::percentile`]).
pub const MAX_RELATIVE_ERROR: f64 = 1.0 / (2 * SUB) as f64;

/// The quantiles exported for every histogram, with their metrics.json suffix
/// and their Prometheus `quantile` label.
pub const QUANTILES: [(f64, &str, &str); 6] = [
    (0.5, "p50", "0.5"),
    (0.9, "p90", "0.9"),
    (0.95, "p95", "0.95"),
    (0.99, "p99", "0.99"),
    (0.999, "p9990", "0.999"),
    (0.9999, "p9999", "0.9999"),
];

/// The bucket a value falls in.
#[inline]
fn bucket_index(v: u64) -> usize {
    if v < SUB {
        v as usize
    } else {
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        // v >> shift is in [SUB, 2 * SUB): the linear position in its octave,
        // offset by SUB so octaves follow each other without gaps.
        (shift as usize * SUB as usize) + (v >> shift) as usize
    }
}

/// The smallest and largest value a bucket holds.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        (index, index)
    } else {
        let shift = index / SUB - 1;
        let mantissa = index - shift * SUB;
        let low = mantissa << shift;
        (low, low + ((1u64 << shift) - 1))
    }
}

/// The value reported for a rank that falls in a bucket: its midpoint.
fn bucket_midpoint(index: usize) -> u64 {
    let (low, high) = bucket_bounds(index);
    low + (high - low) / 2
}

/// Totals written on every add, kept per stripe (see the `stripe` module) so
/// that threads recording into one histogram do not share their cache line.
#[derive(Debug)]
struct Totals {
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

#[derive(Debug)]
struct HistogramCell {
    /// Shared by all threads: different values land on different cache lines.
    buckets: Box<[AtomicU64]>,
    /// `stripe::stripe_count()` of them, a power of two.
    totals: Box<[CachePadded<Totals>]>,
}

/// A distribution of `u64` values (latencies in ms, sizes in bytes), shared by
/// every handle with the same full name. Cloning is cheap (one `Arc`).
#[derive(Clone, Debug)]
pub struct Histogram {
    cell: Arc<HistogramCell>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::detached()
    }
}

impl Histogram {
    /// A histogram that belongs to no registry (useful in tests and as a default).
    pub fn detached() -> Self {
        Histogram {
            cell: Arc::new(HistogramCell {
                buckets: (0..NUM_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
                totals: (0..stripe::stripe_count())
                    .map(|_| {
                        CachePadded::new(Totals {
                            sum: AtomicU64::new(0),
                            min: AtomicU64::new(u64::MAX),
                            max: AtomicU64::new(0),
                        })
                    })
                    .collect(),
            }),
        }
    }

    /// Records one value.
    #[inline]
    pub fn add(&self, v: u64) {
        let cell = &*self.cell;
        let totals = &cell.totals[stripe::this_thread() & (cell.totals.len() - 1)];
        // Most values do not move the extremes: a plain load avoids a locked
        // read-modify-write in the common case.
        if v < totals.min.load(Ordering::Relaxed) {
            totals.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > totals.max.load(Ordering::Relaxed) {
            totals.max.fetch_max(v, Ordering::Relaxed);
        }
        totals.sum.fetch_add(v, Ordering::Relaxed);
        // Release pairs with the Acquire in `snapshot`: whoever sees this value
        // counted also sees the min and max updates above.
        cell.buckets[bucket_index(v)].fetch_add(1, Ordering::Release);
    }

    /// A copy of the distribution so far (see the module doc on concurrency).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let cell = &*self.cell;
        let mut buckets = Vec::new();
        let mut count = 0u64;
        for (i, b) in cell.buckets.iter().enumerate() {
            let n = b.load(Ordering::Acquire);
            if n > 0 {
                count += n;
                buckets.push((i as u32, n));
            }
        }
        if count == 0 {
            return HistogramSnapshot::default();
        }
        let (mut sum, mut min, mut max) = (0u64, u64::MAX, 0u64);
        for t in cell.totals.iter() {
            sum = sum.wrapping_add(t.sum.load(Ordering::Relaxed));
            min = min.min(t.min.load(Ordering::Relaxed));
            max = max.max(t.max.load(Ordering::Relaxed));
        }
        HistogramSnapshot {
            count,
            sum,
            min,
            max,
            buckets,
        }
    }

    /// Whether two handles share the same underlying distribution.
    pub fn same_as(&self, other: &Histogram) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

/// A point-in-time copy of a [`Histogram`]. An empty snapshot has every field 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Number of values recorded.
    pub count: u64,
    /// Sum of the values recorded (wrapping on `u64` overflow).
    pub sum: u64,
    /// Smallest value recorded, exact (0 when empty).
    pub min: u64,
    /// Largest value recorded, exact (0 when empty).
    pub max: u64,
    /// Non-empty buckets as (index, count), in increasing index order.
    buckets: Vec<(u32, u64)>,
}

impl HistogramSnapshot {
    /// The value at quantile `q` (0.0..=1.0; out of range is clamped, NaN is 0).
    ///
    /// Uses the nearest-rank definition: the value of rank `ceil(q * count)`
    /// (at least 1) in sorted order, within [`MAX_RELATIVE_ERROR`].
    /// An empty snapshot answers 0.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        // The extremes are known exactly.
        if rank == 1 {
            return self.min;
        }
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0u64;
        for &(index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                // The exact value lies in this bucket and in [min, max], so
                // clamping the midpoint into [min, max] only brings it closer.
                return bucket_midpoint(index as usize).max(self.min).min(self.max);
            }
        }
        self.max
    }

    /// Mean of the values recorded; 0.0 when empty (never NaN).
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_tile_the_whole_range() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(u64::MAX), NUM_BUCKETS - 1);
        assert_eq!(bucket_bounds(NUM_BUCKETS - 1).1, u64::MAX);
        // Each bucket starts right after the previous one ends.
        let mut next = 0u64;
        for i in 0..NUM_BUCKETS {
            let (low, high) = bucket_bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            assert_eq!(bucket_index(low), i);
            assert_eq!(bucket_index(high), i);
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn bucket_width_respects_the_error_bound() {
        for i in 0..NUM_BUCKETS {
            let (low, high) = bucket_bounds(i);
            let mid = bucket_midpoint(i);
            for v in [low, high] {
                let err = (mid as f64 - v as f64).abs();
                assert!(
                    err <= v as f64 * MAX_RELATIVE_ERROR,
                    "bucket {i}: {v} vs {mid}"
                );
            }
        }
    }

    #[test]
    fn empty_snapshot_is_all_zeros() {
        let s = Histogram::detached().snapshot();
        assert_eq!((s.count, s.sum, s.min, s.max), (0, 0, 0, 0));
        assert_eq!(s.percentile(0.5), 0);
        assert_eq!(s.avg(), 0.0);
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::detached();
        for v in 1..=100 {
            h.add(v);
        }
        let s = h.snapshot();
        assert_eq!((s.count, s.sum, s.min, s.max), (100, 5050, 1, 100));
        assert_eq!(s.percentile(0.5), 50);
        assert_eq!(s.percentile(0.0), 1);
        assert_eq!(s.percentile(1.0), 100);
        assert_eq!(s.percentile(0.9), 90);
        assert_eq!(s.avg(), 50.5);
    }

    #[test]
    fn extremes_are_exact() {
        let h = Histogram::detached();
        h.add(1_000_001);
        h.add(u64::MAX);
        let s = h.snapshot();
        assert_eq!(s.min, 1_000_001);
        assert_eq!(s.max, u64::MAX);
        assert_eq!(s.percentile(0.0), 1_000_001);
        assert_eq!(s.percentile(1.0), u64::MAX);
    }

    /// The nearest-rank percentile of sorted data, the definition the
    /// histogram approximates.
    fn exact_percentile(sorted: &[u64], q: f64) -> u64 {
        let n = sorted.len() as u64;
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        sorted[(rank - 1) as usize]
    }

    fn values() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..100,
            0u64..10_000,
            0u64..10_000_000,
            any::<u64>(),
            // Log-uniform: as many values per decade, like latencies.
            (0u32..64, any::<u64>()).prop_map(|(bits, r)| r >> bits),
        ]
    }

    proptest! {
        #[test]
        fn percentiles_are_within_the_relative_error_bound(
            mut data in prop::collection::vec(values(), 1..2000),
            extra_q in 0.0f64..=1.0,
        ) {
            let h = Histogram::detached();
            for &v in &data {
                h.add(v);
            }
            data.sort_unstable();
            let s = h.snapshot();
            prop_assert_eq!(s.count, data.len() as u64);
            prop_assert_eq!(s.min, data[0]);
            prop_assert_eq!(s.max, *data.last().unwrap());
            let exact_sum = data.iter().fold(0u64, |a, &v| a.wrapping_add(v));
            prop_assert_eq!(s.sum, exact_sum);
            let qs = QUANTILES.iter().map(|q| q.0).chain([0.0, 1.0, extra_q]);
            for q in qs {
                let exact = exact_percentile(&data, q);
                let approx = s.percentile(q);
                let err = (approx as f64 - exact as f64).abs();
                prop_assert!(
                    err <= exact as f64 * MAX_RELATIVE_ERROR,
                    "q={} exact={} approx={}", q, exact, approx
                );
            }
        }
    }
}
