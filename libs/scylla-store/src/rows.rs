//! Row mapping between tsdb types and the tables: partition and window
//! keys, TTLs, the write plan of a batch (sub-chunks, service-minute rows,
//! name-index updates, backfilled days) and the merge of stored sub-chunks
//! back into samples.

use std::collections::{BTreeMap, BTreeSet};

use tsdb::{
    ALL_SOURCES, AppendReport, DAY_MS, MAX_NAME_LEN, RejectReason, Rejection, Sample, SampleRow,
    SeriesKey, ServicePoint,
};

use crate::chunk::{self, ChunkError};
use crate::config::ScyllaConfig;

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// Start of the window of width `width` holding `ts`.
pub fn window_start(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width).saturating_mul(width)
}

/// Starts of the windows of width `width` overlapping `[t0, t1)`.
pub fn windows(t0: i64, t1: i64, width: i64) -> Vec<i64> {
    if t1 <= t0 {
        return Vec::new();
    }
    let first = t0.div_euclid(width);
    let last = (t1 - 1).div_euclid(width);
    (first..=last).map(|k| k.saturating_mul(width)).collect()
}

/// The UTC day number of `ts` (as in `tsdb`'s epochs).
pub fn day(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

/// Hour of the UTC day of `ts`, 0-23.
pub fn hour_of_day(ts: i64) -> i32 {
    (ts.rem_euclid(DAY_MS) / HOUR_MS) as i32
}

/// The minute a sample counts for in service aggregates: minute `t`
/// covers `(t - 60 s, t]`, like a one-minute step.
pub fn minute_label(ts: i64) -> i64 {
    let m = window_start(ts, MINUTE_MS);
    if m == ts {
        m
    } else {
        m.saturating_add(MINUTE_MS)
    }
}

/// Whether hour `h` of `day` overlaps `[t0, t1)`.
pub fn hour_overlaps(day: i64, h: i32, t0: i64, t1: i64) -> bool {
    let start = day
        .saturating_mul(DAY_MS)
        .saturating_add(h as i64 * HOUR_MS);
    start < t1 && start.saturating_add(HOUR_MS) > t0
}

/// TTL in seconds for data whose newest timestamp is `ts`: what is left of
/// the retention, at least 1 s and at most `ttl_secs`, so data expires by
/// its own age even when written late (backfill).
pub fn ttl_for(ts: i64, now: i64, ttl_secs: u64) -> i32 {
    let expires = ts.saturating_add((ttl_secs as i64).saturating_mul(1000));
    let left = expires.saturating_sub(now) / 1000;
    left.clamp(1, ttl_secs.min(i32::MAX as u64) as i64) as i32
}

/// One sub-chunk row of `samples`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    /// The series.
    pub key: SeriesKey,
    /// Start of its window (ms).
    pub window_start: i64,
    /// First timestamp (ms).
    pub first_ts: i64,
    /// Digest of `chunk`.
    pub digest: i64,
    /// Last timestamp (ms).
    pub last_ts: i64,
    /// Number of samples.
    pub samples: i32,
    /// Precedence among sub-chunks: later writes win on equal timestamps.
    pub written_at: i64,
    /// The blob (see [`crate::chunk`]).
    pub chunk: Vec<u8>,
    /// TTL in seconds.
    pub ttl: i32,
}

/// One row of `service_minutes`: the last value of a source in a minute.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceMinuteRow {
    /// Service.
    pub service: String,
    /// Metric.
    pub metric: String,
    /// Hour bucket of `minute` (ms since the epoch / 1 h).
    pub hour: i64,
    /// Minute label (ms).
    pub minute: i64,
    /// Source.
    pub source: String,
    /// The value.
    pub value: f64,
    /// The sample's timestamp in µs, used as the cell timestamp.
    pub timestamp_us: i64,
    /// TTL in seconds.
    pub ttl: i32,
}

/// Which name-index table an update goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexTable {
    /// `names_services (day) -> service`.
    Services,
    /// `names_metrics (service, day) -> metric`.
    Metrics,
    /// `names_sources (service, day) -> source`.
    Sources,
    /// `names_series (service, metric, day) -> source`.
    Series,
}

/// One name-index key: the table and the names it is keyed by (unused
/// parts empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    /// The table.
    pub table: IndexTable,
    /// Service.
    pub service: String,
    /// Metric ([`IndexTable::Metrics`], [`IndexTable::Series`]).
    pub metric: String,
    /// Source ([`IndexTable::Sources`], [`IndexTable::Series`]).
    pub source: String,
    /// UTC day.
    pub day: i64,
}

impl IndexKey {
    /// The partition this key lives in: `(table, service, metric, day)`
    /// with the parts that are not partition-key columns left empty.
    pub fn partition(&self) -> (IndexTable, &str, &str, i64) {
        match self.table {
            IndexTable::Services => (self.table, "", "", self.day),
            IndexTable::Metrics | IndexTable::Sources => (self.table, &self.service, "", self.day),
            IndexTable::Series => (self.table, &self.service, &self.metric, self.day),
        }
    }
}

/// Most rows put in one unlogged single-partition batch.
pub const MAX_BATCH_ROWS: usize = 100;

/// Groups `items` by partition (`key`) into runs of at most `max` items,
/// for unlogged batches that each touch one partition (applied by the
/// partition's replicas as one mutation, routed token-aware). Groups come
/// out in key order; items keep their order within a group.
pub fn partition_batches<'a, T, K: Ord>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
    max: usize,
) -> Vec<Vec<&'a T>> {
    let mut groups: BTreeMap<K, Vec<&'a T>> = BTreeMap::new();
    for it in items {
        groups.entry(key(it)).or_default().push(it);
    }
    let max = max.max(1);
    let mut out = Vec::new();
    for (_, g) in groups {
        for c in g.chunks(max) {
            out.push(c.to_vec());
        }
    }
    out
}

/// Everything one batch writes, computed without the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WritePlan {
    /// Accepted, backfilled and rejected counts.
    pub report: AppendReport,
    /// One sub-chunk per (series, window) in the batch.
    pub chunks: Vec<ChunkRow>,
    /// One row per (series, minute) in the batch.
    pub minutes: Vec<ServiceMinuteRow>,
    /// Hours to add per index key.
    pub index: BTreeMap<IndexKey, BTreeSet<i32>>,
    /// (service, day) pairs touched by backfilled samples.
    pub backfilled: BTreeSet<(String, i64)>,
}

/// Why a row is refused, if it is (same rules as the embedded engine; a
/// NUL byte in a name is refused too, as the tsdb contract says).
pub fn reject_reason(r: &SampleRow<'_>, now: i64, config: &ScyllaConfig) -> Option<RejectReason> {
    let name_ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.contains('\0');
    if r.ts < now.saturating_sub(config.retention_ms()) {
        Some(RejectReason::BeyondRetention)
    } else if r.ts > now.saturating_add(config.future_tolerance_ms) {
        Some(RejectReason::TooFarInFuture)
    } else if !name_ok(r.service)
        || !name_ok(r.source)
        || !name_ok(r.metric)
        || r.source == ALL_SOURCES
    {
        Some(RejectReason::InvalidName)
    } else {
        None
    }
}

/// Plans the writes of a batch at time `now`. Within the batch a repeated
/// (series, timestamp) keeps the last row (last write wins, as in the
/// embedded engine). `written_at` orders this batch after earlier ones.
pub fn plan_write(
    rows: &[SampleRow<'_>],
    now: i64,
    written_at: i64,
    config: &ScyllaConfig,
) -> WritePlan {
    let mut plan = WritePlan::default();
    let ooo_cutoff = now.saturating_sub(config.ooo_window_ms);
    // (series, window) -> ts -> value; BTreeMap keeps the last insert per ts.
    let mut groups: BTreeMap<(&str, &str, &str, i64), BTreeMap<i64, f64>> = BTreeMap::new();
    for (index, r) in rows.iter().enumerate() {
        if let Some(reason) = reject_reason(r, now, config) {
            plan.report.rejected.push(Rejection { index, reason });
            continue;
        }
        plan.report.accepted += 1;
        if r.ts < ooo_cutoff {
            plan.report.backfilled += 1;
            plan.backfilled.insert((r.service.to_string(), day(r.ts)));
        }
        let w = window_start(r.ts, config.chunk_window_ms);
        groups
            .entry((r.service, r.source, r.metric, w))
            .or_default()
            .insert(r.ts, r.value);
    }
    for ((service, source, metric, w), samples) in groups {
        let key = SeriesKey::new(service, source, metric);
        let ts: Vec<i64> = samples.keys().copied().collect();
        let vals: Vec<f64> = samples.values().copied().collect();
        let blob = chunk::encode(&ts, &vals);
        let (first_ts, last_ts) = (ts[0], ts[ts.len() - 1]);
        // Last sample per minute of this series.
        let mut per_minute: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        for (&t, &v) in &samples {
            per_minute.insert(minute_label(t), (t, v));
        }
        for (minute, (t, v)) in per_minute {
            plan.minutes.push(ServiceMinuteRow {
                service: service.to_string(),
                metric: metric.to_string(),
                hour: minute.div_euclid(HOUR_MS),
                minute,
                source: source.to_string(),
                value: v,
                timestamp_us: t.saturating_mul(1000),
                ttl: ttl_for(minute, now, config.ttl_secs),
            });
        }
        for &t in &ts {
            let (d, h) = (day(t), hour_of_day(t));
            let mk = |table, metric: &str, source: &str| IndexKey {
                table,
                service: service.to_string(),
                metric: metric.to_string(),
                source: source.to_string(),
                day: d,
            };
            for k in [
                mk(IndexTable::Services, "", ""),
                mk(IndexTable::Metrics, metric, ""),
                mk(IndexTable::Sources, "", source),
                mk(IndexTable::Series, metric, source),
            ] {
                plan.index.entry(k).or_default().insert(h);
            }
        }
        plan.chunks.push(ChunkRow {
            window_start: w,
            first_ts,
            digest: chunk::digest(&blob),
            last_ts,
            samples: ts.len() as i32,
            written_at,
            ttl: ttl_for(last_ts, now, config.ttl_secs),
            chunk: blob,
            key,
        });
    }
    plan
}

/// Folds `(minute, value)` rows of `service_minutes` (one per source and
/// minute) into per-minute count, sum, min and max, ascending by minute.
pub fn aggregate_minutes(rows: impl IntoIterator<Item = (i64, f64)>) -> Vec<ServicePoint> {
    let mut points: BTreeMap<i64, ServicePoint> = BTreeMap::new();
    for (minute, v) in rows {
        let p = points.entry(minute).or_insert(ServicePoint {
            ts: minute,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        });
        p.count += 1;
        p.sum += v;
        p.min = p.min.min(v);
        p.max = p.max.max(v);
    }
    points.into_values().collect()
}

/// A sub-chunk as read back from `samples`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// First timestamp (clustering key).
    pub first_ts: i64,
    /// Digest (clustering key).
    pub digest: i64,
    /// Last timestamp.
    pub last_ts: i64,
    /// Number of samples.
    pub samples: i32,
    /// Write precedence.
    pub written_at: i64,
    /// The blob.
    pub chunk: Vec<u8>,
}

/// Why a stored sub-chunk is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredChunkError {
    /// The blob does not decode.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The blob disagrees with its row.
    #[error(
        "chunk holds {got} samples from {first} to {last}, its row says {want} from {want_first} to {want_last}"
    )]
    Mismatch {
        /// Samples decoded.
        got: usize,
        /// First decoded timestamp.
        first: i64,
        /// Last decoded timestamp.
        last: i64,
        /// Samples per the row.
        want: i32,
        /// `first_ts` of the row.
        want_first: i64,
        /// `last_ts` of the row.
        want_last: i64,
    },
}

/// Decodes sub-chunks and merges them into the samples in `[t0, t1)`,
/// time-ordered; on equal timestamps the sub-chunk with the larger
/// `(written_at, digest)` wins. On error, the failing chunk's `first_ts`.
pub fn merge_chunks(
    chunks: &[StoredChunk],
    t0: i64,
    t1: i64,
) -> Result<Vec<Sample>, (i64, StoredChunkError)> {
    let mut items: Vec<(i64, (i64, i64), f64)> = Vec::new();
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    for c in chunks {
        if c.last_ts < t0 || c.first_ts >= t1 {
            continue;
        }
        ts.clear();
        vals.clear();
        chunk::decode(&c.chunk, &mut ts, &mut vals).map_err(|e| (c.first_ts, e.into()))?;
        if ts.len() != c.samples as usize
            || ts.first() != Some(&c.first_ts)
            || ts.last() != Some(&c.last_ts)
        {
            return Err((
                c.first_ts,
                StoredChunkError::Mismatch {
                    got: ts.len(),
                    first: ts.first().copied().unwrap_or(0),
                    last: ts.last().copied().unwrap_or(0),
                    want: c.samples,
                    want_first: c.first_ts,
                    want_last: c.last_ts,
                },
            ));
        }
        let prec = (c.written_at, c.digest);
        items.extend(
            ts.iter()
                .zip(&vals)
                .filter(|(t, _)| **t >= t0 && **t < t1)
                .map(|(&t, &v)| (t, prec, v)),
        );
    }
    items.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    items.dedup_by_key(|x| x.0);
    Ok(items
        .into_iter()
        .map(|(ts, _, value)| Sample { ts, value })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn row<'a>(
        service: &'a str,
        source: &'a str,
        metric: &'a str,
        ts: i64,
        value: f64,
    ) -> SampleRow<'a> {
        SampleRow {
            service,
            source,
            metric,
            ts,
            value,
        }
    }

    #[test]
    fn keys_and_windows() {
        assert_eq!(window_start(7_199_999, 7_200_000), 0);
        assert_eq!(window_start(7_200_000, 7_200_000), 7_200_000);
        assert_eq!(window_start(-1, 7_200_000), -7_200_000);
        assert_eq!(windows(0, 7_200_000, 7_200_000), vec![0]);
        assert_eq!(windows(0, 7_200_001, 7_200_000), vec![0, 7_200_000]);
        assert_eq!(windows(-1, 1, 7_200_000), vec![-7_200_000, 0]);
        assert!(windows(5, 5, 10).is_empty());
        assert_eq!(day(DAY_MS - 1), 0);
        assert_eq!(day(-1), -1);
        assert_eq!(hour_of_day(DAY_MS + 3 * HOUR_MS + 5), 3);
        assert_eq!(hour_of_day(-1), 23);
        assert_eq!(minute_label(120_000), 120_000);
        assert_eq!(minute_label(120_001), 180_000);
        assert_eq!(minute_label(-59_999), 0);
        assert!(hour_overlaps(1, 0, DAY_MS, DAY_MS + 1));
        assert!(!hour_overlaps(1, 0, DAY_MS + HOUR_MS, DAY_MS + 2 * HOUR_MS));
        assert!(!hour_overlaps(1, 1, 0, DAY_MS + HOUR_MS));
        assert!(hour_overlaps(1, 1, 0, DAY_MS + HOUR_MS + 1));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let w = windows(i64::MIN, i64::MIN + 10, 7_200_000);
        assert_eq!(w.len(), 1);
        assert_eq!(window_start(i64::MAX, 7_200_000) % 7_200_000, 0);
        let _ = minute_label(i64::MAX);
        let _ = ttl_for(i64::MAX, i64::MIN, 10);
        let _ = ttl_for(i64::MIN, i64::MAX, 10);
    }

    #[test]
    fn ttl_counts_from_the_data_time() {
        assert_eq!(ttl_for(NOW, NOW, 86_400), 86_400);
        assert_eq!(ttl_for(NOW - 3_600_000, NOW, 86_400), 86_400 - 3600);
        assert_eq!(ttl_for(NOW - 2 * DAY_MS, NOW, 86_400), 1);
        assert_eq!(ttl_for(NOW + 60_000, NOW, 86_400), 86_400);
    }

    #[test]
    fn plan_rejects_like_the_engine_and_counts_backfill() {
        let c = ScyllaConfig::default();
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let rows = [
            row("web", "h1", "cpu", NOW, 1.0),
            row("web", "h1", "cpu", NOW - 31 * DAY_MS, 1.0),
            row("web", "h1", "cpu", NOW + 11 * 60_000, 1.0),
            row("", "h1", "cpu", NOW, 1.0),
            row("web", ALL_SOURCES, "cpu", NOW, 1.0),
            row("web", "h\0", "cpu", NOW, 1.0),
            row("web", "h1", &long, NOW, 1.0),
            row("web", "h1", "cpu", NOW - 3_600_000, 2.0),
        ];
        let p = plan_write(&rows, NOW, 5, &c);
        assert_eq!(p.report.accepted, 2);
        assert_eq!(p.report.backfilled, 1);
        let reasons: Vec<(usize, &str)> = p
            .report
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, "beyond_retention"),
                (2, "too_far_in_future"),
                (3, "invalid_name"),
                (4, "invalid_name"),
                (5, "invalid_name"),
                (6, "invalid_name")
            ]
        );
        assert_eq!(
            p.backfilled.into_iter().collect::<Vec<_>>(),
            vec![("web".to_string(), day(NOW - 3_600_000))]
        );
    }

    #[test]
    fn plan_groups_by_series_and_window_and_is_deterministic() {
        let c = ScyllaConfig::default();
        let w = c.chunk_window_ms;
        let base = window_start(NOW, w) - w; // previous window, inside ooo? no: backfill
        let rows = [
            row("web", "h1", "cpu", base + 60_000, 1.0),
            row("web", "h1", "cpu", base + 1000, 0.5),
            row("web", "h1", "cpu", base + 60_000, 3.0), // repeated: last wins
            row("web", "h1", "cpu", base + w + 5, 4.0),  // next window
            row("web", "h2", "cpu", base + 1000, 7.0),
        ];
        let p = plan_write(&rows, NOW, 99, &c);
        assert_eq!(p.chunks.len(), 3);
        let first = &p.chunks[0];
        assert_eq!(first.key, SeriesKey::new("web", "h1", "cpu"));
        assert_eq!(
            (first.window_start, first.first_ts, first.last_ts),
            (base, base + 1000, base + 60_000)
        );
        assert_eq!((first.samples, first.written_at), (2, 99));
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        chunk::decode(&first.chunk, &mut ts, &mut vals).unwrap();
        assert_eq!(
            (ts, vals),
            (vec![base + 1000, base + 60_000], vec![0.5, 3.0])
        );
        assert_eq!(p.chunks[1].window_start, base + w);
        assert_eq!(p.chunks[2].key.source, "h2");
        // Same batch again: same keys and bytes (idempotent rows).
        let again = plan_write(&rows, NOW, 99, &c);
        assert_eq!(again, p);
        // Minutes: h1 has samples in minutes base+60s (two: 1000 and 60000 -> both label base+60000).
        let m: Vec<(String, i64, f64, i64)> = p
            .minutes
            .iter()
            .map(|r| (r.source.clone(), r.minute, r.value, r.timestamp_us))
            .collect();
        assert_eq!(
            m,
            vec![
                ("h1".into(), base + 60_000, 3.0, (base + 60_000) * 1000),
                ("h1".into(), base + w + 60_000, 4.0, (base + w + 5) * 1000),
                ("h2".into(), base + 60_000, 7.0, (base + 1000) * 1000),
            ]
        );
        assert!(
            p.minutes
                .iter()
                .all(|r| r.hour == r.minute.div_euclid(HOUR_MS))
        );
        // Index: four tables, hours of day.
        let d = day(base);
        let svc = IndexKey {
            table: IndexTable::Services,
            service: "web".into(),
            metric: String::new(),
            source: String::new(),
            day: d,
        };
        assert!(p.index.contains_key(&svc));
        let series_h1 = IndexKey {
            table: IndexTable::Series,
            metric: "cpu".into(),
            source: "h1".into(),
            ..svc.clone()
        };
        let hours = &p.index[&series_h1];
        assert!(hours.contains(&hour_of_day(base + 1000)));
        assert!(hours.contains(&hour_of_day(base + w + 5)));
    }

    #[test]
    fn batches_stay_inside_one_partition_and_under_the_cap() {
        let c = ScyllaConfig::default();
        let base = window_start(NOW, HOUR_MS) - HOUR_MS;
        let names: Vec<String> = (0..250).map(|i| format!("h{i}")).collect();
        let mut rows = Vec::new();
        for n in &names {
            for m in ["a", "b"] {
                rows.push(row("web", n, m, base + 30_000, 1.0));
                rows.push(row("web", n, m, base + HOUR_MS + 30_000, 1.0));
            }
        }
        let p = plan_write(&rows, NOW, 1, &c);
        let batches = partition_batches(
            &p.minutes,
            |r| (r.service.clone(), r.metric.clone(), r.hour),
            MAX_BATCH_ROWS,
        );
        // 2 metrics x 2 hours = 4 partitions of 250 rows: 3 batches each.
        assert_eq!(batches.len(), 12);
        let mut total = 0;
        for b in &batches {
            assert!(!b.is_empty() && b.len() <= MAX_BATCH_ROWS);
            assert!(
                b.iter()
                    .all(|r| (&r.metric, r.hour) == (&b[0].metric, b[0].hour))
            );
            total += b.len();
        }
        assert_eq!(total, p.minutes.len());
        let keys: Vec<&IndexKey> = p.index.keys().collect();
        let ib = partition_batches(&keys, |k| k.partition(), MAX_BATCH_ROWS);
        for b in &ib {
            assert!(b.iter().all(|k| k.partition() == b[0].partition()));
        }
        // services: 1 partition per day; metrics and sources: (web, day);
        // series: one per (web, metric, day).
        assert_eq!(ib.iter().map(|b| b.len()).sum::<usize>(), keys.len());
    }

    #[test]
    fn minute_rows_fold_into_service_points() {
        // What a replayed batch writes is the same rows again (same keys),
        // so the stored set, and this fold, do not change.
        let c = ScyllaConfig::default();
        let m = window_start(NOW, MINUTE_MS) - 10 * MINUTE_MS;
        let rows = [
            row("web", "h1", "rps", m - 30_000, 1.0),
            row("web", "h1", "rps", m - 10_000, 2.0), // last of h1 in minute m
            row("web", "h2", "rps", m, 5.0),          // (m - 60 s, m]: minute m
            row("web", "h3", "rps", m + 1, -4.0),     // next minute
        ];
        let p = plan_write(&rows, NOW, 1, &c);
        let pts = aggregate_minutes(p.minutes.iter().map(|r| (r.minute, r.value)));
        assert_eq!(pts.len(), 2);
        assert_eq!(
            (pts[0].ts, pts[0].count, pts[0].sum, pts[0].min, pts[0].max),
            (m, 2, 7.0, 2.0, 5.0)
        );
        assert_eq!(
            (pts[1].ts, pts[1].count, pts[1].sum),
            (m + MINUTE_MS, 1, -4.0)
        );
        assert!(aggregate_minutes([]).is_empty());
    }

    fn stored(ts: &[i64], vals: &[f64], written_at: i64) -> StoredChunk {
        let blob = chunk::encode(ts, vals);
        StoredChunk {
            first_ts: ts[0],
            digest: chunk::digest(&blob),
            last_ts: *ts.last().unwrap(),
            samples: ts.len() as i32,
            written_at,
            chunk: blob,
        }
    }

    #[test]
    fn merge_prefers_later_writes_and_filters_range() {
        let a = stored(&[10, 20, 30], &[1.0, 2.0, 3.0], 1);
        let b = stored(&[20, 25], &[20.0, 25.0], 2);
        let got = merge_chunks(&[b.clone(), a.clone()], 0, 100).unwrap();
        let pairs: Vec<(i64, f64)> = got.iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(pairs, vec![(10, 1.0), (20, 20.0), (25, 25.0), (30, 3.0)]);
        let got = merge_chunks(&[a.clone(), b], 20, 30).unwrap();
        let pairs: Vec<(i64, f64)> = got.iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(pairs, vec![(20, 20.0), (25, 25.0)]);
        // A duplicate of the same row (re-delivery) changes nothing.
        let got = merge_chunks(&[a.clone(), a.clone()], 0, 100).unwrap();
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn merge_reports_corrupt_and_mismatched_chunks() {
        let mut a = stored(&[10, 20], &[1.0, 2.0], 1);
        a.samples = 3;
        let (first, e) = merge_chunks(&[a], 0, 100).unwrap_err();
        assert_eq!(first, 10);
        assert!(e.to_string().contains("its row says 3"), "{e}");
        let mut b = stored(&[10, 20], &[1.0, 2.0], 1);
        b.chunk.truncate(3);
        assert!(merge_chunks(&[b], 0, 100).is_err());
    }
}
