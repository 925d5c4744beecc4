//! Immutable block files: one time window of sealed data with a series
//! index, per-series raw chunks and 5-minute / 1-hour rollups, and
//! checksums over data and index.
//!
//! ```text
//! "AERIEBK4"
//! data:   per series, in index order: raw chunk | rollup 5m | rollup 1h
//!         (a raw chunk of short decimals has its values coded against its
//!         5m rollup, see `cells`: reading it reads that rollup too; a 5m
//!         rollup of one sample a bucket has its lasts, the samples, coded
//!         the same way against the 1h rollup; one of values on their own,
//!         a gauge's, may leave out the lasts of the buckets that end an
//!         hour, which are the 1h rollup's lasts)
//! times:  a chunk's times, and a rollup's labels, are a byte 0 when they
//!         are the regular run the index row implies (count samples from
//!         min_t to max_t in equal steps; every bucket from min_t's to
//!         max_t's), else a byte 1 and the chunk's timestamp part
//!         (an "AERIEBK2" block, still read, has the timestamp part alone);
//!         a rollup's count column is empty when the series' times are that
//!         run: the counts are the run's samples in each bucket ("AERIEBK3",
//!         still read, always writes the column)
//! index:  u64 seq | zz start | zz end | u8 level
//!         3 symbol tables (uvarint n, n x str)
//!         uvarint n x (uvarint svc, src, met, u8 0 (the span of the row before) or
//!                      u8 1 | zz min_t - start, uvarint max_t - min_t, uvarint count,
//!                      uvarint len of raw, r5, r1h)
//!         ("AERIEBK3" and "AERIEBK2" rows, still read, have no u8 and always the span)
//!         (an "AERIEBK1" block, still read, has zz min_t, zz max_t and an
//!         uvarint offset before each length)
//! footer: u64 index_off | u64 index_len | u32 index_crc | u32 data_crc | "AERIEEND"
//! rollup: [uvarint len | times(labels) value block(last), packed as mode 7 or 6 of
//!         `codec`, to the end of the part] then [uvarint len | column] for
//!         count, sum, min, max; a bucket labelled L holds samples in (L - w, L]
//! column: see `columns` (a value block, exceptions to last, or mantissas
//!         less a prediction from last, or for a sum from count, min and max);
//!         the sum of a bucket of exact decimals is their decimal sum; in
//!         this layout a 5m sum may take the sums of the buckets that end an
//!         hour from the 1h rollup's (reading it reads that rollup's sum),
//!         and a 5m min or max each hour's from the 1h rollup's, told which
//!         bucket holds it
//! ```
//! Files are written to a temporary name, fsynced and renamed, so a block
//! is either complete or absent. A block failing its checksums on open is
//! reported with its path and skipped by the engine.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::cells;
use crate::codec::{
    DecodeError, MODE_CELLS, Run, decimals, decode_chunk, decode_mantissas, decode_timestamps,
    decode_timestamps_in, decode_values, decode_values_hourly, encode_chunk, encode_timestamps,
    encode_timestamps_in, encode_values, encode_values_at_end, encode_values_hourly, from_mantissa,
    get_u8, get_uvarint, get_varint, hourly_scale, mantissa, put_uvarint, put_varint,
    skip_timestamps,
};
use crate::columns::{
    BY_LAST, BY_LAST_BEFORE, BY_LAST_FLAGGED, BY_MID, BY_ZERO, Basis, HOURLY, Hours, decode_column,
    decode_column_mantissas, encode_column, hour_ends, is_hourly, predictor,
};
use crate::error::{Error, Result};
use crate::types::SeriesId;

/// Blocks as written now: index rows hold lengths, not offsets, and times
/// relative to the block's start; a series' times and its rollup labels
/// are a byte when they are the regular run its index row implies, and so
/// is a rollup's count column (empty) when the series' times are.
const MAGIC: &[u8; 8] = b"AERIEBK4";
/// As [`MAGIC`], without implied count columns (still read).
const MAGIC_V3: &[u8; 8] = b"AERIEBK3";
/// Blocks whose series' times and rollup labels are written out in full
/// (still read).
const MAGIC_V2: &[u8; 8] = b"AERIEBK2";
/// Blocks whose index rows hold absolute offsets and times (still read).
const MAGIC_V1: &[u8; 8] = b"AERIEBK1";
const END_MAGIC: &[u8; 8] = b"AERIEEND";
const FOOTER: usize = 8 + 8 + 4 + 4 + 8;

/// Rollup widths kept in blocks, finest first.
pub const ROLLUP_WIDTHS: [i64; 2] = [300_000, 3_600_000];

/// Window and precedence of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    /// Higher sequence numbers win on equal timestamps.
    pub seq: u64,
    /// Window start (inclusive).
    pub start: i64,
    /// Window end (exclusive).
    pub end: i64,
    /// 0 = partition window, 1 = compacted window.
    pub level: u8,
}

/// Where one series lives in a block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub sid: SeriesId,
    pub min_t: i64,
    pub max_t: i64,
    /// Samples of the series in the block.
    count: u32,
    raw: (u64, u32),
    rollups: [(u64, u32); 2],
}

/// Rollup buckets of one series: labels and requested columns.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rollup {
    pub labels: Vec<i64>,
    pub last: Vec<f64>,
    pub count: Vec<f64>,
    pub sum: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    /// Reused between reads of a 5-minute rollup: which buckets end an
    /// hour, and the hourly rollup they take their last and sum from.
    ends: Vec<bool>,
    hourly: Option<Box<Rollup>>,
    /// Reused by reads of a 5-minute last coded against the hourly rollup.
    sparse: Option<Box<cells::Scratch>>,
    /// Reused by reads of 5-minute lasts that take their hours' lasts.
    res: Vec<i64>,
}

/// Reused buffers of a read of a 5-minute rollup as mantissas: its labels,
/// which of its buckets end an hour, and the hourly rollup's mantissas.
#[derive(Debug, Default, Clone)]
pub(crate) struct HourScratch {
    /// Labels of the 5-minute and the hourly rollup.
    labels: [Vec<i64>; 2],
    ends: Vec<bool>,
    cols: [Vec<i64>; 5],
    /// What reading a 5-minute last coded against the hourly rollup takes.
    sparse: Option<Box<cells::Scratch>>,
    vals: Vec<f64>,
    /// What reading 5-minute lasts that take their hours' lasts takes.
    res: Vec<i64>,
}

impl Rollup {
    /// Empties every column, keeping their capacity.
    pub fn clear(&mut self) {
        for c in [
            &mut self.last,
            &mut self.count,
            &mut self.sum,
            &mut self.min,
            &mut self.max,
        ] {
            c.clear();
        }
        self.labels.clear();
    }
}

/// Which rollup columns to decode besides labels and last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Columns {
    pub count: bool,
    pub sum: bool,
    pub min: bool,
    pub max: bool,
}

/// An open, verified block.
#[derive(Debug)]
pub(crate) struct Block {
    pub path: PathBuf,
    pub meta: BlockMeta,
    data: Mmap,
    pub entries: Vec<Entry>,
    pub bytes: u64,
    /// Whether times are written against their index row's run (`MAGIC`).
    framed: bool,
}

/// Rollup label of a timestamp: the end of the `(L - w, L]` bucket.
#[inline]
pub(crate) fn bucket_label(ts: i64, w: i64) -> i64 {
    ts.div_euclid(w)
        .saturating_add(i64::from(ts.rem_euclid(w) != 0))
        .saturating_mul(w)
}

/// Hands each rollup bucket of the sorted run `ts` to `f` as the range
/// `start..end` of its samples and its label, stopping at the first error.
/// The label is divided out only when a sample leaves the current bucket.
#[inline]
pub(crate) fn for_each_bucket<E>(
    ts: &[i64],
    w: i64,
    mut f: impl FnMut(usize, usize, i64) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut end = i64::MIN;
    let mut start = 0;
    for (i, &t) in ts.iter().enumerate() {
        if t > end || t <= end.saturating_sub(w) {
            if i > 0 {
                f(start, i, end)?;
            }
            end = bucket_label(t, w);
            start = i;
        }
    }
    if ts.is_empty() {
        return Ok(());
    }
    f(start, ts.len(), end)
}

/// The run of samples an index row of `count` samples from `min_t` to
/// `max_t` implies (times in equal steps).
fn sample_run(min_t: i64, max_t: i64, count: usize) -> Run {
    Run {
        first: min_t,
        last: max_t,
        n: count,
    }
}

/// The run of rollup buckets of width `w` an index row from `min_t` to
/// `max_t` implies: every bucket from the first sample's to the last's.
fn bucket_run(min_t: i64, max_t: i64, w: i64) -> Run {
    let (first, last) = (bucket_label(min_t, w), bucket_label(max_t, w));
    let n = last
        .checked_sub(first)
        .and_then(|d| usize::try_from(d / w + 1).ok())
        .unwrap_or(0);
    Run { first, last, n }
}

/// The counts of the rollup buckets `labels` of width `w` of the samples
/// of the regular run an index row from `min_t` to `max_t` of `count`
/// samples implies, handed to `emit` in order (an implied count column).
fn implied_counts(
    (min_t, max_t, count): (i64, i64, usize),
    labels: &[i64],
    w: i64,
    mut emit: impl FnMut(i64),
) -> std::result::Result<(), DecodeError> {
    let step = sample_run(min_t, max_t, count)
        .step()
        .ok_or(DecodeError("implied rollup counts of irregular times"))?;
    if step == 0 {
        // One sample.
        if labels != [bucket_label(min_t, w)] {
            return Err(DecodeError("a rollup bucket without samples"));
        }
        emit(1);
        return Ok(());
    }
    let last = count as i64 - 1;
    // The index of the last sample at or before a time, and its remainder:
    // from one label to the next, `w` later, by an add and a carry.
    let at = |t: i64| {
        let d = t.wrapping_sub(min_t);
        (d.div_euclid(step), d.rem_euclid(step))
    };
    let (qw, rw) = (w.div_euclid(step), w.rem_euclid(step));
    let mut prev: Option<(i64, i64, i64)> = None;
    for &label in labels {
        let (before, (f, r)) = match prev {
            Some((l, f, r)) if label == l.wrapping_add(w) => {
                let (mut g, mut s) = (f.wrapping_add(qw), r + rw);
                if s >= step {
                    s -= step;
                    g = g.wrapping_add(1);
                }
                (f, (g, s))
            }
            _ => (at(label.wrapping_sub(w)).0, at(label)),
        };
        // Samples in `(label - w, label]`.
        let (hi, lo) = (f.min(last), before.wrapping_add(1).max(0));
        if hi < lo {
            return Err(DecodeError("a rollup bucket without samples"));
        }
        emit(hi.wrapping_sub(lo).wrapping_add(1));
        prev = Some((label, f, r));
    }
    Ok(())
}

/// Computes rollup buckets of a sorted run into `r` (cleared first).
/// Given `decimals`, the values as mantissas at a scale, a bucket's sum is
/// the decimal sum of its mantissas (correctly rounded) where that is exact
/// in an f64, not the sum of the f64 values added in turn.
pub(crate) fn compute_rollup(
    ts: &[i64],
    vals: &[f64],
    decimals: Option<(usize, &[i64])>,
    w: i64,
    r: &mut Rollup,
) {
    r.clear();
    let _ = for_each_bucket(ts, w, |a, b, label| {
        let v = &vals[a..b];
        let (mut sum, mut mn, mut mx) = (v[0], v[0], v[0]);
        for &x in &v[1..] {
            sum += x;
            mn = mn.min(x);
            mx = mx.max(x);
        }
        if let Some(exact) = decimals.and_then(|(scale, ms)| decimal_sum(&ms[a..b], scale)) {
            sum = exact;
        }
        r.labels.push(label);
        r.count.push(v.len() as f64);
        r.sum.push(sum);
        r.min.push(mn);
        r.max.push(mx);
        r.last.push(v[v.len() - 1]);
        Ok::<(), ()>(())
    });
}

/// The sum of mantissas at `scale` as the nearest f64, if the integer sum
/// is exact in an f64.
fn decimal_sum(ms: &[i64], scale: usize) -> Option<f64> {
    let mut total = 0i64;
    for &m in ms {
        total = total.checked_add(m)?;
    }
    (total.unsigned_abs() <= 1 << 53).then(|| from_mantissa(total, scale))
}

#[derive(Debug, Default)]
struct SymTable {
    map: HashMap<String, u32>,
    names: Vec<String>,
}

impl SymTable {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.map.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }
}

/// One series in a block index being written: symbol ids, min and max
/// time, sample count, and (offset, length) of raw, 5m and 1h data.
type IndexRow = ([u32; 3], i64, i64, u32, [(u64, u32); 3]);

/// Streams series into a new block file.
#[derive(Debug)]
pub(crate) struct BlockWriter {
    file: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    meta: BlockMeta,
    pos: u64,
    crc: crc32fast::Hasher,
    syms: [SymTable; 3],
    entries: Vec<IndexRow>,
    scratch: Vec<u8>,
    /// Reused between series: rollup buckets (5-minute and hourly), which
    /// 5-minute buckets end an hour, and one encoded column.
    rollup: Rollup,
    hourly: Rollup,
    ends: Vec<bool>,
    col: Vec<u8>,
    /// Another form of a column, when more than one is tried.
    alt: Vec<u8>,
    cells: cells::Scratch,
    /// The series' values as mantissas, when they are exact decimals.
    ms: Vec<i64>,
    /// Whether raw decimals are coded against their 5-minute rollup.
    pub raw_against_rollup: bool,
    /// Whether times are written against their index row's run (false
    /// only to write blocks of the layout before, which are still read).
    framed: bool,
}

/// The predictors and basis of a 5-minute min or max column: with its
/// hours' ends and values, the hourly forms too.
fn extreme<'a>(
    by_last: Basis<'a, f64>,
    hours: Option<(&'a [bool], &'a [f64])>,
) -> (&'static [u8], Basis<'a, f64>) {
    const NEAR: [u8; 3] = [BY_LAST, BY_LAST_BEFORE, BY_LAST_FLAGGED];
    const NEAR_HOURLY: [u8; 6] = [
        BY_LAST,
        BY_LAST_BEFORE,
        BY_LAST_FLAGGED,
        BY_LAST | HOURLY,
        BY_LAST_BEFORE | HOURLY,
        BY_LAST_FLAGGED | HOURLY,
    ];
    match hours {
        Some((ends, values)) => (
            &NEAR_HOURLY,
            Basis {
                hours: Some(Hours { ends, values }),
                ..by_last
            },
        ),
        None => (&NEAR, by_last),
    }
}

/// File name of block `seq` in `dir`.
pub(crate) fn block_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}.blk"))
}

impl BlockWriter {
    /// A writer for a block file named after its own sequence number.
    pub fn create(dir: &Path, meta: BlockMeta) -> Result<Self> {
        Self::create_named(dir, meta, meta.seq)
    }

    /// A writer whose file name uses `file_seq` (compaction outputs keep the
    /// precedence of their newest input but need a fresh name).
    pub fn create_named(dir: &Path, meta: BlockMeta, file_seq: u64) -> Result<Self> {
        Self::create_in_layout(dir, meta, file_seq, true)
    }

    /// A writer of the current layout, or (`framed` false) of the one
    /// before, which tests write to check that it is still read.
    fn create_in_layout(dir: &Path, meta: BlockMeta, file_seq: u64, framed: bool) -> Result<Self> {
        let path = block_path(dir, file_seq);
        let tmp = path.with_extension("blk.tmp");
        let f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        let mut w = Self {
            file: BufWriter::with_capacity(1 << 20, f),
            tmp,
            path,
            meta,
            pos: 0,
            crc: crc32fast::Hasher::new(),
            syms: Default::default(),
            entries: Vec::new(),
            scratch: Vec::new(),
            rollup: Rollup::default(),
            hourly: Rollup::default(),
            ends: Vec::new(),
            col: Vec::new(),
            alt: Vec::new(),
            cells: cells::Scratch::default(),
            ms: Vec::new(),
            raw_against_rollup: true,
            framed,
        };
        w.file
            .write_all(if framed { MAGIC } else { MAGIC_V2 })
            .map_err(|e| Error::io("write", &w.tmp, e))?;
        w.pos = MAGIC.len() as u64;
        Ok(w)
    }

    fn put(&mut self) -> Result<(u64, u32)> {
        let off = self.pos;
        self.file
            .write_all(&self.scratch)
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        self.crc.update(&self.scratch);
        self.pos += self.scratch.len() as u64;
        Ok((off, self.scratch.len() as u32))
    }

    /// Adds one series' sorted, unique samples (at least one). A block of a
    /// partition window (level 0) is coded in packed blocks only, which is
    /// quick; compaction codes its outputs in every way there is.
    pub fn add(&mut self, key: [&str; 3], ts: &[i64], vals: &[f64]) -> Result<()> {
        crate::codec::with_effort(self.meta.level > 0, || self.add_series(key, ts, vals))
    }

    fn add_series(&mut self, key: [&str; 3], ts: &[i64], vals: &[f64]) -> Result<()> {
        debug_assert!(!ts.is_empty());
        let ids = [
            self.syms[0].id(key[0]),
            self.syms[1].id(key[1]),
            self.syms[2].id(key[2]),
        ];
        // The 5-minute rollup comes first: the raw values are coded against it.
        // Taken for the call (`put` borrows all of `self`), put back after.
        let mut ms = std::mem::take(&mut self.ms);
        let scale = decimals(vals, &mut ms);
        let dec = scale.map(|s| (s, &ms[..]));
        let r = &mut self.rollup;
        compute_rollup(ts, vals, dec, ROLLUP_WIDTHS[0], r);
        self.scratch.clear();
        let (min_t, max_t) = (ts[0], ts[ts.len() - 1]);
        // Regular times imply every rollup bucket's count.
        let regular = self.framed && sample_run(min_t, max_t, ts.len()).is(ts);
        if self.framed {
            encode_timestamps_in(ts, sample_run(min_t, max_t, ts.len()), &mut self.scratch);
        } else {
            encode_timestamps(ts, &mut self.scratch);
        }
        if !self.raw_against_rollup
            || !dec.is_some_and(|d| {
                cells::encode(
                    ts,
                    d,
                    r,
                    ROLLUP_WIDTHS[0],
                    &mut self.cells,
                    &mut self.scratch,
                )
            })
        {
            encode_values(vals, &mut self.scratch);
        }
        let raw = self.put()?;
        let mut offs = [raw, (0, 0), (0, 0)];
        // The hourly rollup first: in this layout the 5-minute one's sum may
        // take the sums of the buckets that end an hour from it.
        compute_rollup(ts, vals, dec, ROLLUP_WIDTHS[1], &mut self.hourly);
        hour_ends(&self.rollup.labels, &mut self.ends);
        for (k, &w) in ROLLUP_WIDTHS.iter().enumerate() {
            let (r, hourly) = if k == 0 {
                (&self.rollup, Some(&self.hourly).filter(|_| self.framed))
            } else {
                (&self.hourly, None)
            };
            self.scratch.clear();
            let col = &mut self.col;
            col.clear();
            if self.framed {
                encode_timestamps_in(&r.labels, bucket_run(min_t, max_t, w), col);
                // Buckets of one sample each (a series sampled every 5
                // minutes or less often): their lasts are the samples, coded
                // against the hourly rollup as raw values are against this one.
                let sparse = k == 0 && r.count.iter().all(|&c| c == 1.0);
                if !sparse
                    || !dec.is_some_and(|d| {
                        cells::encode(
                            &r.labels,
                            d,
                            &self.hourly,
                            ROLLUP_WIDTHS[1],
                            &mut self.cells,
                            col,
                        )
                    })
                {
                    // The lasts of the buckets that end an hour are the
                    // hours' lasts: left out where that is smaller.
                    let start = col.len();
                    encode_values_at_end(&r.last, col);
                    let alt = &mut self.alt;
                    alt.clear();
                    if k == 0
                        && encode_values_hourly(&r.last, &self.ends, alt)
                        && alt.len() < col.len() - start
                    {
                        col.truncate(start);
                        col.extend_from_slice(alt);
                    }
                }
            } else {
                encode_chunk(&r.labels, &r.last, col);
            }
            put_uvarint(&mut self.scratch, col.len() as u64);
            self.scratch.extend_from_slice(col);
            let by_last = Basis::last(&r.last[..]);
            let spread = Basis {
                last: &r.last[..],
                spread: Some([&r.count[..], &r.min[..], &r.max[..]]),
                hours: hourly.map(|h| Hours {
                    ends: &self.ends[..],
                    values: &h.sum[..],
                }),
            };
            let sum_preds = if hourly.is_some() {
                &[BY_MID, BY_MID | HOURLY, BY_ZERO | HOURLY][..]
            } else {
                &[BY_MID][..]
            };
            // A min or max may tell which bucket holds its hour's.
            let ends = &self.ends[..];
            let (min_preds, min_basis) = extreme(by_last, hourly.map(|h| (ends, &h.min[..])));
            let (max_preds, max_basis) = extreme(by_last, hourly.map(|h| (ends, &h.max[..])));
            for (i, (c, preds, basis)) in [
                (&r.count, &[][..], by_last),
                (&r.sum, sum_preds, spread),
                (&r.min, min_preds, min_basis),
                (&r.max, max_preds, max_basis),
            ]
            .into_iter()
            .enumerate()
            {
                col.clear();
                if i > 0 || !regular {
                    encode_column(c, preds, basis, col);
                }
                put_uvarint(&mut self.scratch, col.len() as u64);
                self.scratch.extend_from_slice(col);
            }
            offs[k + 1] = self.put()?;
        }
        self.entries
            .push((ids, ts[0], ts[ts.len() - 1], ts.len() as u32, offs));
        self.ms = ms;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes index and footer, fsyncs and renames into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        let mut idx = Vec::with_capacity(self.entries.len() * 24 + 64);
        idx.extend_from_slice(&self.meta.seq.to_le_bytes());
        put_varint(&mut idx, self.meta.start);
        put_varint(&mut idx, self.meta.end);
        idx.push(self.meta.level);
        for t in &self.syms {
            put_uvarint(&mut idx, t.names.len() as u64);
            for n in &t.names {
                put_uvarint(&mut idx, n.len() as u64);
                idx.extend_from_slice(n.as_bytes());
            }
        }
        put_uvarint(&mut idx, self.entries.len() as u64);
        // Series data lies in entry order, each raw | 5m | 1h, from the
        // magic on: lengths give the offsets.
        let mut at = MAGIC.len() as u64;
        let mut before = None;
        for (ids, min_t, max_t, count, offs) in &self.entries {
            for id in ids {
                put_uvarint(&mut idx, *id as u64);
            }
            // Most series of a block span the same times as the one before.
            let span = (*min_t, *max_t, *count);
            if self.framed {
                idx.push(u8::from(before != Some(span)));
            }
            if !self.framed || before != Some(span) {
                put_varint(&mut idx, min_t.wrapping_sub(self.meta.start));
                put_uvarint(&mut idx, max_t.wrapping_sub(*min_t) as u64);
                put_uvarint(&mut idx, *count as u64);
            }
            before = Some(span);
            for (o, l) in offs {
                debug_assert_eq!(*o, at, "series data is contiguous");
                put_uvarint(&mut idx, *l as u64);
                at += u64::from(*l);
            }
        }
        let data_crc = self.crc.clone().finalize();
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(&self.pos.to_le_bytes());
        footer.extend_from_slice(&(idx.len() as u64).to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&idx).to_le_bytes());
        footer.extend_from_slice(&data_crc.to_le_bytes());
        footer.extend_from_slice(END_MAGIC);
        let io = |e| Error::io("write", self.tmp.clone(), e);
        self.file.write_all(&idx).map_err(io)?;
        self.file.write_all(&footer).map_err(io)?;
        let f = self
            .file
            .into_inner()
            .map_err(|e| Error::io("write", &self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("fsync", &self.tmp, e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| Error::io("rename", &self.path, e))?;
        Ok(self.path)
    }
}

/// A parsed block index: keys by symbol, before binding to engine ids.
#[derive(Debug)]
pub(crate) struct Unbound {
    pub block: Block,
    pub keys: Vec<[String; 3]>,
}

impl Block {
    /// Opens and verifies a block; returns it with the key of each entry
    /// (in entry order) for the engine to intern.
    pub fn open(path: &Path) -> Result<Unbound> {
        let corrupt = |reason: &str| Error::BlockCorrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        // SAFETY: block files are immutable once renamed into place; the
        // engine never writes to or truncates them, and deletes them only
        // by unlinking, which leaves existing mappings valid.
        #[allow(unsafe_code)]
        let data = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
        let n = data.len();
        if n < MAGIC.len() + FOOTER
            || ![MAGIC, MAGIC_V3, MAGIC_V2, MAGIC_V1]
                .iter()
                .any(|m| &data[..8] == *m)
            || &data[n - 8..] != END_MAGIC
        {
            return Err(corrupt("bad magic or truncated file"));
        }
        let v1 = &data[..8] == MAGIC_V1;
        let v4 = &data[..8] == MAGIC;
        let framed = v4 || &data[..8] == MAGIC_V3;
        let f = &data[n - FOOTER..];
        let u64_at = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(f[i..i + 4].try_into().expect("4 bytes"));
        let (index_off, index_len, index_crc, data_crc) = (
            u64_at(0) as usize,
            u64_at(8) as usize,
            u32_at(16),
            u32_at(20),
        );
        if index_off < MAGIC.len() || index_off.checked_add(index_len) != Some(n - FOOTER) {
            return Err(corrupt("footer offsets out of range"));
        }
        let idx = &data[index_off..index_off + index_len];
        if crc32fast::hash(idx) != index_crc {
            return Err(corrupt("index checksum mismatch"));
        }
        if crc32fast::hash(&data[MAGIC.len()..index_off]) != data_crc {
            return Err(corrupt("data checksum mismatch"));
        }
        let bad = |_| corrupt("index truncated");
        let mut pos = 8;
        let seq = u64::from_le_bytes(
            idx.get(..8)
                .ok_or_else(|| corrupt("index truncated"))?
                .try_into()
                .expect("8 bytes"),
        );
        let start = get_varint(idx, &mut pos).map_err(bad)?;
        let end = get_varint(idx, &mut pos).map_err(bad)?;
        let level = *idx.get(pos).ok_or_else(|| corrupt("index truncated"))?;
        pos += 1;
        let mut syms: [Vec<String>; 3] = Default::default();
        for t in &mut syms {
            let k = get_uvarint(idx, &mut pos).map_err(bad)? as usize;
            for _ in 0..k.min(idx.len()) {
                let len = get_uvarint(idx, &mut pos).map_err(bad)? as usize;
                let s = idx
                    .get(pos..pos.saturating_add(len))
                    .ok_or_else(|| corrupt("name truncated"))?;
                t.push(String::from_utf8(s.to_vec()).map_err(|_| corrupt("name is not utf-8"))?);
                pos += len;
            }
        }
        let count = get_uvarint(idx, &mut pos).map_err(bad)? as usize;
        let mut at = MAGIC.len() as u64;
        let mut entries: Vec<Entry> = Vec::with_capacity(count.min(idx.len()));
        let mut keys = Vec::with_capacity(count.min(idx.len()));
        for _ in 0..count {
            let mut key: [String; 3] = Default::default();
            for (k, t) in key.iter_mut().zip(&syms) {
                let id = get_uvarint(idx, &mut pos).map_err(bad)? as usize;
                *k = t
                    .get(id)
                    .ok_or_else(|| corrupt("symbol id out of range"))?
                    .clone();
            }
            let same = match v4.then(|| get_u8(idx, &mut pos)).transpose().map_err(bad)? {
                Some(0) => true,
                None | Some(1) => false,
                Some(_) => return Err(corrupt("bad index row span tag")),
            };
            let (min_t, max_t, samples) = match entries.last() {
                Some(e) if same => (e.min_t, e.max_t, e.count),
                _ if same => return Err(corrupt("first index row repeats a row before it")),
                _ => {
                    let (min_t, max_t) = if v1 {
                        let min_t = get_varint(idx, &mut pos).map_err(bad)?;
                        (min_t, get_varint(idx, &mut pos).map_err(bad)?)
                    } else {
                        let min_t = start.wrapping_add(get_varint(idx, &mut pos).map_err(bad)?);
                        let span = get_uvarint(idx, &mut pos).map_err(bad)? as i64;
                        (min_t, min_t.wrapping_add(span))
                    };
                    let samples = get_uvarint(idx, &mut pos).map_err(bad)?;
                    let samples =
                        u32::try_from(samples).map_err(|_| corrupt("sample count out of range"))?;
                    (min_t, max_t, samples)
                }
            };
            let mut offs = [(0u64, 0u32); 3];
            for o in &mut offs {
                let off = if v1 {
                    get_uvarint(idx, &mut pos).map_err(bad)?
                } else {
                    at
                };
                let len = get_uvarint(idx, &mut pos).map_err(bad)?;
                if len > u64::from(u32::MAX) || off.saturating_add(len) > index_off as u64 {
                    return Err(corrupt("chunk offset out of range"));
                }
                *o = (off, len as u32);
                at = off + len;
            }
            entries.push(Entry {
                sid: 0,
                min_t,
                max_t,
                count: samples,
                raw: offs[0],
                rollups: [offs[1], offs[2]],
            });
            keys.push(key);
        }
        let meta = BlockMeta {
            seq,
            start,
            end,
            level,
        };
        Ok(Unbound {
            block: Block {
                path: path.to_path_buf(),
                meta,
                data,
                entries,
                bytes: n as u64,
                framed,
            },
            keys,
        })
    }

    /// Sets engine ids (in entry order) and sorts entries by id.
    pub fn bind(&mut self, sids: &[SeriesId]) {
        for (e, &s) in self.entries.iter_mut().zip(sids) {
            e.sid = s;
        }
        self.entries.sort_unstable_by_key(|e| e.sid);
    }

    /// Bytes of raw chunks and of each rollup width's cells in this block
    /// (the rest of the file is the index and the footer).
    pub fn part_bytes(&self) -> (u64, [u64; 2]) {
        let mut raw = 0u64;
        let mut rollups = [0u64; 2];
        for e in &self.entries {
            raw += u64::from(e.raw.1);
            for (sum, r) in rollups.iter_mut().zip(&e.rollups) {
                *sum += u64::from(r.1);
            }
        }
        (raw, rollups)
    }

    pub fn entry(&self, sid: SeriesId) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&sid, |e| e.sid)
            .ok()
            .map(|i| &self.entries[i])
    }

    fn slice(&self, (off, len): (u64, u32)) -> &[u8] {
        &self.data[off as usize..off as usize + len as usize]
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::BlockCorrupt {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Decodes a series' raw samples (`sc` holds the 5-minute rollup they
    /// may be coded against).
    pub fn raw(
        &self,
        e: &Entry,
        sc: &mut cells::Scratch,
        ts: &mut Vec<i64>,
        vals: &mut Vec<f64>,
    ) -> Result<()> {
        let buf = self.slice(e.raw);
        let err = |d: crate::codec::DecodeError| self.corrupt(&d.to_string());
        let mut pos = 0;
        let start = ts.len();
        if self.framed {
            let run = sample_run(e.min_t, e.max_t, e.count as usize);
            decode_timestamps_in(buf, &mut pos, run, ts).map_err(err)?;
        } else {
            decode_timestamps(buf, &mut pos, ts).map_err(err)?;
        }
        let n = ts.len() - start;
        if n == 0 {
            return Ok(());
        }
        if buf.get(pos) != Some(&MODE_CELLS) {
            return decode_values(buf, &mut pos, n, vals).map_err(err);
        }
        let scale = cells::scale_at(buf, pos).map_err(err)?;
        self.rollup_mantissas(e, 0, scale, &mut sc.cols, &mut sc.hours)?;
        cells::decode(buf, &mut pos, &ts[start..], sc, vals).map_err(err)
    }

    /// Decodes the lasts of a series' 5-minute rollup at `buf[*pos..]`,
    /// buckets `labels`, coded against its hourly rollup (`sc` scratch).
    fn sparse_lasts(
        &self,
        e: &Entry,
        buf: &[u8],
        pos: &mut usize,
        labels: &[i64],
        sc: &mut Option<Box<cells::Scratch>>,
        out: &mut Vec<f64>,
    ) -> Result<()> {
        let err = |d: DecodeError| self.corrupt(&d.to_string());
        let sc = sc.get_or_insert_with(Default::default);
        let scale = cells::scale_at(buf, *pos).map_err(err)?;
        self.rollup_mantissas(e, 1, scale, &mut sc.cols, &mut sc.hours)?;
        cells::decode(buf, pos, labels, sc, out).map_err(err)
    }

    /// Decodes the count, last, sum, min and max of a series' rollup of
    /// width `ROLLUP_WIDTHS[k]` as the mantissas at `scale` (the count as
    /// an integer) into `out`, in that order.
    pub fn rollup_mantissas(
        &self,
        e: &Entry,
        k: usize,
        scale: usize,
        out: &mut [Vec<i64>; 5],
        hs: &mut HourScratch,
    ) -> Result<()> {
        let buf = self.slice(e.rollups[k]);
        let err = |d: DecodeError| self.corrupt(&d.to_string());
        for c in out.iter_mut() {
            c.clear();
        }
        let parts = self.rollup_parts(buf)?;
        let mut p = 0;
        let run = bucket_run(e.min_t, e.max_t, ROLLUP_WIDTHS[k]);
        let implied = self.framed && parts[1].is_empty();
        // A sum that takes its hours' sums, or lasts that take their hours'
        // lasts, need the hourly rollup.
        let mut by_hours = false;
        // The labels give implied counts and hours' ends, and a sparse
        // rollup's lasts are read at them.
        let n = if self.framed {
            hs.labels[k].clear();
            decode_timestamps_in(parts[0], &mut p, run, &mut hs.labels[k]).map_err(err)?;
            by_hours = k == 0
                && (parts[2..].iter().any(|c| is_hourly(c)) || hourly_scale(parts[0], p).is_some());
            if by_hours {
                hour_ends(&hs.labels[k], &mut hs.ends);
            }
            hs.labels[k].len()
        } else {
            skip_timestamps(parts[0], &mut p).map_err(err)?
        };
        if n == 0 {
            return Ok(());
        }
        if implied {
            let row = (e.min_t, e.max_t, e.count as usize);
            implied_counts(row, &hs.labels[k], ROLLUP_WIDTHS[k], |c| out[0].push(c))
                .map_err(err)?;
        }
        if by_hours {
            // The hourly rollup's own read takes of `hs` its own labels.
            let mut hourly = std::mem::take(&mut hs.cols);
            let read = self.rollup_mantissas(e, 1, scale, &mut hourly, hs);
            hs.cols = hourly;
            read?;
        }
        let [count, last, sum, min, max] = out;
        if let Some(s) = hourly_scale(parts[0], p).filter(|_| by_hours) {
            // Decoded at its scale, not above the one asked for.
            let f =
                10i64.pow(scale.checked_sub(s).ok_or_else(|| {
                    err(DecodeError("hourly lasts finer than the scale asked for"))
                })? as u32);
            hs.res.clear();
            for &m in &hs.cols[1] {
                if m % f != 0 {
                    return Err(self.corrupt("hourly last off scale"));
                }
                hs.res.push(m / f);
            }
            let to = |m: i64| m.wrapping_mul(f);
            decode_values_hourly(parts[0], &mut p, &hs.ends, &hs.res, last, to).map_err(err)?;
        } else if k == 0 && parts[0].get(p) == Some(&MODE_CELLS) {
            let mut vals = std::mem::take(&mut hs.vals);
            vals.clear();
            let read = self.sparse_lasts(
                e,
                parts[0],
                &mut p,
                &hs.labels[k],
                &mut hs.sparse,
                &mut vals,
            );
            let ps = crate::codec::POW10[scale];
            last.extend(vals.iter().map(|&v| crate::codec::rounded(v * ps) as i64));
            hs.vals = vals;
            read?;
        } else {
            decode_mantissas(parts[0], &mut p, n, scale, last).map_err(err)?;
        }
        let by_last = Basis::last(&last[..]);
        for (part, s, col) in [(1, 0, &mut *count), (3, scale, min), (4, scale, max)] {
            if part > 1 || !implied {
                // A min or max may take its hours' from the hourly rollup.
                let basis = Basis {
                    hours: by_hours.then(|| Hours {
                        ends: &hs.ends[..],
                        values: &hs.cols[part][..],
                    }),
                    ..by_last
                };
                decode_column_mantissas(parts[part], &mut 0, n, (s, scale), basis, col)
                    .map_err(err)?;
            }
        }
        let spread = Basis {
            last: &last[..],
            spread: Some([&count[..], &min[..], &max[..]]),
            hours: by_hours.then(|| Hours {
                ends: &hs.ends[..],
                values: &hs.cols[2][..],
            }),
        };
        decode_column_mantissas(parts[2], &mut 0, n, (scale, scale), spread, sum).map_err(err)?;
        Ok(())
    }

    /// The parts of a rollup: its chunk of labels and last, then its count,
    /// sum, min and max columns.
    fn rollup_parts<'a>(&self, buf: &'a [u8]) -> Result<[&'a [u8]; 5]> {
        self.rollup_parts_upto(buf, 5)
    }

    /// The first `m` parts of a rollup (see [`Block::rollup_parts`]), the
    /// others empty: a read of lasts alone touches only the first part.
    fn rollup_parts_upto<'a>(&self, buf: &'a [u8], m: usize) -> Result<[&'a [u8]; 5]> {
        let mut pos = 0;
        let mut parts: [&[u8]; 5] = [&[]; 5];
        for part in parts.iter_mut().take(m) {
            let len =
                get_uvarint(buf, &mut pos).map_err(|d| self.corrupt(&d.to_string()))? as usize;
            *part = buf
                .get(pos..pos + len)
                .ok_or_else(|| self.corrupt("rollup truncated"))?;
            pos += len;
        }
        Ok(parts)
    }

    /// Decodes a series' rollup of width `ROLLUP_WIDTHS[k]`.
    pub fn rollup(&self, e: &Entry, k: usize, cols: Columns, out: &mut Rollup) -> Result<()> {
        let buf = self.slice(e.rollups[k]);
        let err = |d: crate::codec::DecodeError| self.corrupt(&d.to_string());
        let wanted = if cols.sum || cols.min || cols.max {
            5
        } else if cols.count {
            2
        } else {
            1
        };
        let parts = self.rollup_parts_upto(buf, wanted)?;
        // A sum that takes its hours' sums, or lasts that take their hours'
        // lasts, need the hourly rollup's.
        let sums_by_hours = self.framed && k == 0 && cols.sum && is_hourly(parts[2]);
        // A sum predicted by its bucket's min and max needs them first.
        let spread = cols.sum && predictor(parts[2]) == Some(BY_MID);
        let [min_by_hours, max_by_hours] = [(cols.min, parts[3]), (cols.max, parts[4])]
            .map(|(want, c)| self.framed && k == 0 && (want || spread) && is_hourly(c));
        let mut hourly = None;
        if self.framed {
            let mut pos = 0;
            let run = bucket_run(e.min_t, e.max_t, ROLLUP_WIDTHS[k]);
            decode_timestamps_in(parts[0], &mut pos, run, &mut out.labels).map_err(err)?;
            let n = out.labels.len();
            let lasts_scale = hourly_scale(parts[0], pos).filter(|_| k == 0);
            if sums_by_hours || min_by_hours || max_by_hours || lasts_scale.is_some() {
                // Reused between reads; taken only by the reads that need it.
                let mut h = out.hourly.take().unwrap_or_default();
                hour_ends(&out.labels, &mut out.ends);
                h.clear();
                let wants = Columns {
                    sum: sums_by_hours,
                    min: min_by_hours,
                    max: max_by_hours,
                    ..Columns::default()
                };
                let read = self.rollup(e, 1, wants, &mut h);
                hourly = Some(h);
                read?;
            }
            if let (Some(s), Some(h)) = (lasts_scale, hourly.as_ref()) {
                // Every hour's last, for the bucket that ends it.
                out.res.clear();
                for &v in &h.last {
                    let m = mantissa(v, s).ok_or_else(|| self.corrupt("hourly last off scale"))?;
                    out.res.push(m);
                }
                let f = |m| from_mantissa(m, s);
                decode_values_hourly(parts[0], &mut pos, &out.ends, &out.res, &mut out.last, f)
                    .map_err(err)?;
            } else if k == 0 && parts[0].get(pos) == Some(&MODE_CELLS) {
                let mut sc = out.sparse.take();
                let read =
                    self.sparse_lasts(e, parts[0], &mut pos, &out.labels, &mut sc, &mut out.last);
                out.sparse = sc;
                read?;
            } else if n > 0 {
                decode_values(parts[0], &mut pos, n, &mut out.last).map_err(err)?;
            }
        } else {
            decode_chunk(parts[0], &mut 0, &mut out.labels, &mut out.last).map_err(err)?;
        }
        let n = out.labels.len();
        let by_last = Basis::last(&out.last[..]);
        let hourly_min = hourly.as_ref().map(|h| &h.min[..]);
        let hourly_max = hourly.as_ref().map(|h| &h.max[..]);
        for (want, c, col, values) in [
            (cols.count || spread, parts[1], &mut out.count, None),
            (cols.min || spread, parts[3], &mut out.min, hourly_min),
            (cols.max || spread, parts[4], &mut out.max, hourly_max),
        ] {
            if !want {
            } else if self.framed && c.is_empty() {
                let row = (e.min_t, e.max_t, e.count as usize);
                implied_counts(row, &out.labels, ROLLUP_WIDTHS[k], |c| col.push(c as f64))
                    .map_err(err)?;
            } else {
                // A min or max may take its hours' from the hourly rollup.
                let basis = Basis {
                    hours: values.map(|values| Hours {
                        ends: &out.ends[..],
                        values,
                    }),
                    ..by_last
                };
                decode_column(c, &mut 0, n, basis, col).map_err(err)?;
            }
        }
        if cols.sum {
            let basis = Basis {
                last: &out.last[..],
                spread: spread.then_some([&out.count[..], &out.min[..], &out.max[..]]),
                hours: hourly.as_ref().map(|h| Hours {
                    ends: &out.ends[..],
                    values: &h.sum[..],
                }),
            };
            decode_column(parts[2], &mut 0, n, basis, &mut out.sum).map_err(err)?;
        }
        if hourly.is_some() {
            out.hourly = hourly;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::mantissa;

    #[test]
    fn labels_close_buckets_on_the_right() {
        assert_eq!(bucket_label(0, 300), 0);
        assert_eq!(bucket_label(1, 300), 300);
        assert_eq!(bucket_label(300, 300), 300);
        assert_eq!(bucket_label(301, 300), 600);
        assert_eq!(bucket_label(-1, 300), 0);
        assert_eq!(bucket_label(-300, 300), -300);
    }

    #[test]
    fn block_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let meta = BlockMeta {
            seq: 3,
            start: 0,
            end: 7_200_000,
            level: 0,
        };
        let mut w = BlockWriter::create(dir.path(), meta).unwrap();
        let ts: Vec<i64> = (1..=120).map(|i| i * 60_000).collect();
        let vals: Vec<f64> = (1..=120).map(|i| i as f64).collect();
        w.add(["svc", "h1", "m"], &ts, &vals).unwrap();
        w.add(["svc", "h2", "m"], &ts[..3], &vals[..3]).unwrap();
        let path = w.finish().unwrap();

        let mut ub = Block::open(&path).unwrap();
        assert_eq!(ub.block.meta, meta);
        assert_eq!(
            ub.keys[1],
            ["svc".to_string(), "h2".to_string(), "m".to_string()]
        );
        ub.block.bind(&[9, 4]);
        let e = *ub.block.entry(9).unwrap();
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        ub.block
            .raw(&e, &mut cells::Scratch::default(), &mut t2, &mut v2)
            .unwrap();
        assert_eq!((t2, v2), (ts.clone(), vals.clone()));
        let mut r = Rollup::default();
        let cols = Columns {
            count: true,
            sum: true,
            min: true,
            max: true,
        };
        ub.block.rollup(&e, 0, cols, &mut r).unwrap();
        assert_eq!(r.labels.len(), 24);
        assert_eq!(r.labels[0], 300_000);
        assert_eq!(
            (r.count[0], r.sum[0], r.min[0], r.max[0], r.last[0]),
            (5.0, 15.0, 1.0, 5.0, 5.0)
        );

        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = Block::open(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    /// Writes the series in both layouts and checks that each reads back
    /// every sample and every rollup column.
    #[test]
    fn times_round_trip_in_both_layouts() {
        let regular: Vec<i64> = (1..=120).map(|i| i * 60_000).collect();
        let jittered: Vec<i64> = (1..=120).map(|i| i * 60_000 + (i * 7919) % 900).collect();
        let gappy: Vec<i64> = (1..=120)
            .filter(|i| i % 17 > 8)
            .map(|i| i * 60_000)
            .collect();
        let one = vec![3_599_999i64];
        // Every 15 minutes, and one a 5-minute bucket at uneven times: their
        // 5-minute lasts are coded against the hourly rollup.
        let sparse: Vec<i64> = (0..8).map(|i| 60_000 + i * 900_000).collect();
        let uneven: Vec<i64> = (1..12)
            .map(|i| i * 600_000 + (i * i * 7919) % 240_000)
            .collect();
        // Regular from the middle of a bucket: implied counts of 2 and 3.
        let offset: Vec<i64> = (0..50).map(|i| 90_000 + i * 120_000).collect();
        // The last spans what the one before does: its index row says so.
        let series = [
            &regular, &jittered, &gappy, &one, &sparse, &uneven, &offset, &offset,
        ];
        let regular_times = [true, false, false, true, true, false, true, true];
        let sparse_lasts = [false, false, false, true, true, true, false, false];
        let dir = tempfile::tempdir().unwrap();
        let mut hourly_lasts = 0;
        for (seq, framed) in [(1, true), (2, false)] {
            let meta = BlockMeta {
                seq,
                start: 0,
                end: 7_200_001,
                level: 0,
            };
            let mut w = BlockWriter::create_in_layout(dir.path(), meta, seq, framed).unwrap();
            for (i, ts) in series.iter().enumerate() {
                let vals: Vec<f64> = ts.iter().map(|t| (t % 997) as f64 / 4.0).collect();
                w.add(["svc", &format!("h{i}"), "m"], ts, &vals).unwrap();
            }
            let path = w.finish().unwrap();
            let mut ub = Block::open(&path).unwrap();
            assert_eq!(ub.block.framed, framed);
            ub.block.bind(&[0, 1, 2, 3, 4, 5, 6, 7]);
            for (i, ts) in series.iter().enumerate() {
                let vals: Vec<f64> = ts.iter().map(|t| (t % 997) as f64 / 4.0).collect();
                let e = *ub.block.entry(i as SeriesId).unwrap();
                let (mut t2, mut v2) = (Vec::new(), Vec::new());
                ub.block
                    .raw(&e, &mut cells::Scratch::default(), &mut t2, &mut v2)
                    .unwrap();
                assert_eq!((&t2, &v2), (*ts, &vals), "series {i} framed {framed}");
                for (k, &w) in ROLLUP_WIDTHS.iter().enumerate() {
                    let mut want = Rollup::default();
                    let mut ms = Vec::new();
                    let scale = decimals(&vals, &mut ms).expect("quarters are decimals");
                    compute_rollup(ts, &vals, Some((scale, &ms)), w, &mut want);
                    let mut got = Rollup::default();
                    let cols = Columns {
                        count: true,
                        sum: true,
                        min: true,
                        max: true,
                    };
                    ub.block.rollup(&e, k, cols, &mut got).unwrap();
                    assert_eq!(got.labels, want.labels, "series {i} width {w}");
                    for (g, x) in [
                        (&got.last, &want.last),
                        (&got.sum, &want.sum),
                        (&got.count, &want.count),
                        (&got.min, &want.min),
                        (&got.max, &want.max),
                    ] {
                        assert_eq!(g, x, "series {i} width {w}");
                    }
                    let mut ms = [const { Vec::new() }; 5];
                    let mut hs = HourScratch::default();
                    ub.block
                        .rollup_mantissas(&e, k, 2, &mut ms, &mut hs)
                        .unwrap();
                    let at2 = |c: &[f64]| -> Vec<i64> {
                        c.iter().map(|&v| mantissa(v, 2).unwrap()).collect()
                    };
                    let counts: Vec<i64> = want.count.iter().map(|&c| c as i64).collect();
                    assert_eq!(
                        ms,
                        [
                            counts,
                            at2(&want.last),
                            at2(&want.sum),
                            at2(&want.min),
                            at2(&want.max)
                        ],
                        "series {i} width {w}"
                    );
                    // What this layout leaves out: implied counts, and lasts
                    // coded against the hourly rollup.
                    let parts = ub.block.rollup_parts(ub.block.slice(e.rollups[k])).unwrap();
                    assert_eq!(
                        parts[1].is_empty(),
                        framed && regular_times[i],
                        "series {i} width {w}"
                    );
                    let mut p = 0;
                    if framed {
                        let run = bucket_run(e.min_t, e.max_t, w);
                        decode_timestamps_in(parts[0], &mut p, run, &mut Vec::new()).unwrap();
                        assert_eq!(
                            parts[0][p] == MODE_CELLS,
                            k == 0 && sparse_lasts[i],
                            "series {i} width {w}"
                        );
                        hourly_lasts += usize::from(hourly_scale(parts[0], p).is_some());
                    }
                }
            }
        }
        // Lasts on their own leave their hours' ends to the hourly rollup.
        assert!(hourly_lasts > 0);
    }

    #[test]
    fn blocks_of_the_first_layout_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let meta = BlockMeta {
            seq: 5,
            start: 7_200_000,
            end: 14_400_000,
            level: 0,
        };
        let mut w = BlockWriter::create_in_layout(dir.path(), meta, meta.seq, false).unwrap();
        let ts: Vec<i64> = (1..=100).map(|i| 7_200_000 + i * 60_000).collect();
        let vals: Vec<f64> = (1..=100).map(|i| (i * i % 97) as f64 / 10.0).collect();
        w.add(["svc", "h1", "m"], &ts, &vals).unwrap();
        w.add(["svc", "h2", "m"], &ts[50..], &vals[50..]).unwrap();
        let path = w.finish().unwrap();
        let now = Block::open(&path).unwrap();
        // The same block in the first layout: absolute times and offsets.
        let bytes = fs::read(&path).unwrap();
        let index_off = u64::from_le_bytes(bytes[bytes.len() - FOOTER..][..8].try_into().unwrap());
        let mut idx = Vec::new();
        idx.extend_from_slice(&meta.seq.to_le_bytes());
        put_varint(&mut idx, meta.start);
        put_varint(&mut idx, meta.end);
        idx.push(meta.level);
        for names in [&["svc"][..], &["h1", "h2"], &["m"]] {
            put_uvarint(&mut idx, names.len() as u64);
            for n in names {
                put_uvarint(&mut idx, n.len() as u64);
                idx.extend_from_slice(n.as_bytes());
            }
        }
        put_uvarint(&mut idx, 2);
        for (i, e) in now.block.entries.iter().enumerate() {
            for id in [0, i as u64, 0] {
                put_uvarint(&mut idx, id);
            }
            put_varint(&mut idx, e.min_t);
            put_varint(&mut idx, e.max_t);
            put_uvarint(&mut idx, 1);
            for (o, l) in [e.raw, e.rollups[0], e.rollups[1]] {
                put_uvarint(&mut idx, o);
                put_uvarint(&mut idx, u64::from(l));
            }
        }
        let mut old = bytes[..index_off as usize].to_vec();
        old[..8].copy_from_slice(MAGIC_V1);
        let data_crc = crc32fast::hash(&old[MAGIC.len()..]);
        old.extend_from_slice(&idx);
        old.extend_from_slice(&index_off.to_le_bytes());
        old.extend_from_slice(&(idx.len() as u64).to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(&idx).to_le_bytes());
        old.extend_from_slice(&data_crc.to_le_bytes());
        old.extend_from_slice(END_MAGIC);
        let old_path = dir.path().join("old.blk");
        fs::write(&old_path, &old).unwrap();
        let mut ub = Block::open(&old_path).unwrap();
        assert_eq!(ub.keys, now.keys);
        ub.block.bind(&[1, 2]);
        for (sid, (t, v)) in [(1, (&ts[..], &vals[..])), (2, (&ts[50..], &vals[50..]))] {
            let e = *ub.block.entry(sid).unwrap();
            assert_eq!((e.min_t, e.max_t), (t[0], t[t.len() - 1]));
            let (mut t2, mut v2) = (Vec::new(), Vec::new());
            ub.block
                .raw(&e, &mut cells::Scratch::default(), &mut t2, &mut v2)
                .unwrap();
            assert_eq!((&t2[..], &v2[..]), (t, v));
        }
    }
}
