//! Raw values coded against their 5-minute rollup: a bucket's last, min,
//! max and sum, which the block stores anyway, leave only where its min and
//! max fall and all but one of its other samples to write.
//!
//! ```text
//! value block = 5 | u8 scale | u8 form (| code flags for forms 0 and 1)
//!                 | uvarint k | uvarint bits | packed positions
//!                 | uvarint j | uvarint bits | residual stream
//!             | 5 | u8 scale | u8 form | 64 (forms 3, 16, 32; layout 4 on)
//!                 | the form's header | stream to the end of the block
//! ```
//! It applies when every raw value is an exact decimal `m / 10^scale` and
//! each bucket's sum rounds to the sum of its mantissas. A bucket of one
//! sample, or of equal samples, costs nothing. Any other bucket of `n`
//! samples with mantissas `lo` < `hi` at its min and max has a position
//! pair (the first index of each), then a residual for each sample before
//! its last that is neither and is not the latest such (the sum gives that
//! one). Forms, whichever is smallest:
//! - 0 and 1: pairs `i_lo * n + i_hi` and residuals `m - lo` (0) or `m` less
//!   the sample before it (1, across buckets too), the pairs in the
//!   frame-of-reference packing of `codec` (a counter's pairs pack to
//!   nothing), the residuals in the smallest of that packing, a Rice code
//!   and a span code (`codec`'s packed integers; the flags of the form byte
//!   say which: a counter's increments, spread evenly over their range,
//!   take the span code);
//! - 2: pairs packed as in 0, residuals in the stream as `m` less the least
//!   value it can take in a truncated binary code of the number it can:
//!   within `[lo, hi]`, leaving the samples after it a sum they can make
//!   (for buckets of up to 64 samples within 2^40);
//! - 3: as 2, with each bucket's pair first in the stream, coded the same
//!   way in `0..n * (n - 1)` (the positions packed part is empty);
//! - 16: as 3, with the positions told by the bucket's last: where the
//!   last is the max (or the min), that is where the max (min) is taken to
//!   be, and only the min's (max's) first place among the other `n - 1` is
//!   coded; else both first places among them, in `0..(n - 1) * (n - 2)`.
//!   A gauge's last is an extreme in two buckets of five: its positions
//!   take 2.9 bits rather than 4.3;
//! - 32: as 16, with `zz a | uvarint b - a | uvarint e | e x uvarint gap`
//!   after the form byte: in a *stepped* bucket, one whose samples rise by
//!   steps within `[a, b]` (`a >= 1`, the least and greatest step of every
//!   rising bucket), the min is the first sample and the max the last
//!   (nothing coded), and each free sample is also bounded by the step from
//!   the one before, the steps the last still needs, and, for the one
//!   before the derived sample, the steps that one takes on both sides. A
//!   bucket whose last is its max is stepped unless it is one of the `e`
//!   listed (by the gaps between their indices among the buckets with a
//!   pair), which are coded as in 16, as is every bucket whose last is not
//!   its max. A counter's free increments cost about a bit less each, and
//!   the one before the derived one a bit less again.

use crate::bits::{BitReader, BitWriter};
use crate::block::{Rollup, for_each_bucket};
use crate::codec::{
    CODES, DecodeError, MAX_SCALE, MODE_CELLS, code, from_mantissa, get_stream, get_u8,
    get_uvarint, get_varint, mantissa, nearest_mantissa, pack, put_stream, put_uvarint, put_varint,
    uncode, unpack,
};

/// Reused buffers of the encoder and the decoder.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scratch {
    /// What a decode reads its buckets from: the 5-minute rollup's count,
    /// last, sum, min and max as mantissas at the chunk's scale.
    pub cols: [Vec<i64>; 5],
    /// What reading those takes of the hourly rollup.
    pub hours: crate::block::HourScratch,
    ms: Vec<i64>,
    pos: Vec<i64>,
    res: [Vec<i64>; 2],
}

/// `ceil(2^32 / n)` for `n` in `1..=64`: dividing a position pair by a
/// bucket's size is a multiply and a shift.
const RECIPROCALS: [u64; 65] = {
    let mut r = [0u64; 65];
    let mut n = 1;
    while n <= 64 {
        r[n] = (1u64 << 32).div_ceil(n as u64);
        n += 1;
    }
    r
};

/// The first indices of the min and max in a bucket of `n` from their pair
/// `i_lo * n + i_hi` (out-of-range garbage when `p` is not such a pair).
#[inline]
fn split_pair(p: u64, n: usize) -> (usize, usize) {
    if n <= 64 && p < 1 << 20 {
        // Exact: `ceil(2^32 / n) * n - 2^32 < n`, so the error stays below
        // one for `p < 2^32 / n`.
        let q = (p * RECIPROCALS[n]) >> 32;
        (q as usize, (p - q * n as u64) as usize)
    } else {
        ((p / n as u64) as usize, (p % n as u64) as usize)
    }
}

/// Sets sample `i` of a bucket from its residual `x` against `lo` (order 0)
/// or the sample before it (order 1; `before` for the first), and returns it.
#[inline(always)]
fn fill(cell: &mut [i64], i: usize, x: i64, order: u8, lo: i64, before: i64) -> i64 {
    let prev = match (order, i) {
        (0, _) => lo,
        (_, 0) => before,
        _ => cell[i - 1],
    };
    cell[i] = prev.wrapping_add(x);
    cell[i]
}

/// The index in a bucket whose sample the sum gives: the latest that is
/// neither the last, nor the first min or max.
#[inline]
fn derived(n: usize, i_lo: usize, i_hi: usize) -> Option<usize> {
    (0..n - 1).rev().find(|&i| i != i_lo && i != i_hi)
}

/// Writes the value block of values at `ts`, exact decimals given as their
/// mantissas `ms` at `scale`, against `r`, their rollup of width `w`, if
/// the values allow it; otherwise writes nothing and says so.
pub(crate) fn encode(
    ts: &[i64],
    (scale, ms): (usize, &[i64]),
    r: &Rollup,
    w: i64,
    sc: &mut Scratch,
    out: &mut Vec<u8>,
) -> bool {
    if ms.len() != ts.len() {
        return false;
    }
    let Scratch { pos, res, .. } = sc;
    pos.clear();
    res[0].clear();
    res[1].clear();
    // The bounded forms: residuals alone, positions with residuals,
    // positions told by the last with residuals, and that with stepped
    // buckets (if any step range fits).
    let mut tb = [
        BitWriter::new(),
        BitWriter::new(),
        BitWriter::new(),
        BitWriter::new(),
    ];
    let mut step = steps(ts, ms, w);
    // The buckets with a pair whose last is their max but which are not
    // stepped, and the free samples the stepped form codes.
    let mut unstepped: Vec<u64> = Vec::new();
    let mut free_stepped = 0usize;
    // Where the max (or min) is also the last but not first there, told by
    // the last it leaves one more sample free.
    let mut free_by_last = 0usize;
    let mut bounded = true;
    let mut k = 0usize;
    let fits = for_each_bucket(ts, w, |a, b, label| {
        let cell = &ms[a..b];
        let n = cell.len();
        let (mut lo, mut hi) = (cell[0], cell[0]);
        for &m in cell {
            lo = lo.min(m);
            hi = hi.max(m);
        }
        // The decoder takes these from the rollup: they must agree.
        let at = |col: &[f64]| col.get(k).and_then(|&v| mantissa(v, scale));
        if r.labels.get(k) != Some(&label)
            || r.count.get(k) != Some(&(n as f64))
            || at(&r.last) != Some(cell[n - 1])
            || at(&r.min) != Some(lo)
            || at(&r.max) != Some(hi)
        {
            return Err(());
        }
        let sum = r.sum[k];
        k += 1;
        if lo == hi {
            return Ok(());
        }
        let i_lo = cell
            .iter()
            .position(|&m| m == lo)
            .expect("min is in its bucket");
        let i_hi = cell
            .iter()
            .position(|&m| m == hi)
            .expect("max is in its bucket");
        pos.push((i_lo * n + i_hi) as i64);
        bounded &= n <= 64 && lo.unsigned_abs() <= BOUNDED_MAX && hi.unsigned_abs() <= BOUNDED_MAX;
        if bounded {
            tb[1].write_below(pair_code(n, i_lo, i_hi), (n * (n - 1)) as u64);
        }
        let d = derived(n, i_lo, i_hi);
        let total: i128 = cell.iter().map(|&m| i128::from(m)).sum();
        if d.is_some() && nearest_mantissa(sum, scale).map(i128::from) != Some(total) {
            return Err(());
        }
        if bounded {
            // Forms 2 and 3 share their residuals; form 16's positions may
            // free another sample.
            let [alone, paired, by_last_tb, stepped_tb] = &mut tb;
            write_free(
                &mut [alone, paired],
                cell,
                (lo, i_lo),
                (hi, i_hi),
                total as i64,
            );
            let end = end_of(cell[n - 1], lo, hi);
            let (j_lo, j_hi) = by_last(n, end, (i_lo, i_hi));
            write_pair_by_last(by_last_tb, n, end, (i_lo, i_hi));
            let free = write_free(
                &mut [by_last_tb],
                cell,
                (lo, j_lo),
                (hi, j_hi),
                total as i64,
            );
            free_by_last += free;
            if let Some(st) = step {
                if end == 1 && is_stepped(cell, st) {
                    let mut rest = Rest::new(n, (lo, 0), (hi, n - 1), hi, total as i64);
                    for i in 1..n.saturating_sub(2) {
                        let Some((from, m)) = stepped_range(&rest, cell, i, st) else {
                            step = None;
                            break;
                        };
                        stepped_tb.write_below((cell[i] - from) as u64, m);
                        rest.take(cell[i]);
                        free_stepped += 1;
                    }
                } else {
                    if end == 1 {
                        unstepped.push(pos.len() as u64 - 1);
                    }
                    write_pair_by_last(stepped_tb, n, end, (i_lo, i_hi));
                    write_free(
                        &mut [stepped_tb],
                        cell,
                        (lo, j_lo),
                        (hi, j_hi),
                        total as i64,
                    );
                    free_stepped += free;
                }
            }
        }
        for i in 0..n - 1 {
            if i == i_lo || i == i_hi || Some(i) == d {
                continue;
            }
            let prev = match (i, a) {
                (0, 0) => lo,
                (0, _) => ms[a - 1],
                _ => cell[i - 1],
            };
            res[0].push(cell[i] - lo);
            res[1].push(cell[i].wrapping_sub(prev));
        }
        Ok(())
    });
    if fits.is_err() || k != r.labels.len() {
        return false;
    }
    let positions = pack(pos);
    let packed = [code(&res[0]), code(&res[1])];
    // The stepped form's header: its steps and its unstepped buckets.
    let mut stepped_head = Vec::new();
    if let Some((a, b)) = step {
        put_varint(&mut stepped_head, a);
        put_uvarint(&mut stepped_head, (b - a) as u64);
        put_uvarint(&mut stepped_head, unstepped.len() as u64);
        let mut prev = 0;
        for &u in &unstepped {
            put_uvarint(&mut stepped_head, u - prev);
            prev = u;
        }
    }
    let mut sizes = [
        positions.len_bits() + packed[0].1.len_bits(),
        positions.len_bits() + packed[1].1.len_bits(),
        positions.len_bits() + tb[0].len_bits(),
        tb[1].len_bits(),
        tb[2].len_bits(),
        tb[3].len_bits() + 8 * stepped_head.len() as u64,
    ];
    if !bounded {
        sizes[2..].fill(u64::MAX);
    }
    if step.is_none() {
        sizes[5] = u64::MAX;
    }
    // Bounded forms read a sample at a time, packed ones a block at a time:
    // a bounded form must save a sixteenth, and 16 bytes, to be chosen (a
    // counter that steps by one each minute packs to nothing and reads so).
    let least_packed = sizes[0].min(sizes[1]);
    for size in sizes[2..].iter_mut().filter(|s| **s != u64::MAX) {
        *size = size.saturating_add((least_packed / 16).max(128));
    }
    let forms = [0, 1, BOUNDED, PAIRS_BOUNDED, PAIRS_BY_LAST, STEPPED];
    #[cfg(test)]
    if let Some(i) = tests::FORM
        .get()
        .and_then(|o| forms.iter().position(|&f| f == o))
        .filter(|&i| sizes[i] != u64::MAX)
    {
        sizes[i] = 0;
    }
    let (_, &order) = sizes
        .iter()
        .zip(&forms)
        .min_by_key(|&(&size, _)| size)
        .expect("six forms");
    out.push(MODE_CELLS);
    out.push(scale as u8);
    // Residuals of forms 0 and 1 in the code their flag names.
    out.push(
        order
            | if order < BOUNDED {
                packed[order as usize].0
            } else {
                0
            },
    );
    // Tests write the counted form too, which layout 3 blocks hold.
    #[cfg(test)]
    let compact = !tests::COUNTED.get();
    #[cfg(not(test))]
    let compact = true;
    let compact = compact && order >= PAIRS_BOUNDED;
    if compact {
        *out.last_mut().expect("form byte") |= COMPACT;
    }
    if order == STEPPED {
        out.extend_from_slice(&stepped_head);
    }
    let stream = match order {
        0 | 1 => &packed[order as usize].1,
        BOUNDED => &tb[0],
        PAIRS_BOUNDED => &tb[1],
        PAIRS_BY_LAST => &tb[2],
        _ => &tb[3],
    };
    if compact {
        // Positions and residuals all in the one stream, which runs to the
        // end of the value block.
        out.extend_from_slice(stream.bytes());
        return true;
    }
    put_uvarint(out, pos.len() as u64);
    let none = BitWriter::new();
    put_stream(
        out,
        if order >= PAIRS_BOUNDED {
            &none
        } else {
            &positions
        },
    );
    let free = match order {
        PAIRS_BY_LAST => free_by_last,
        STEPPED => free_stepped,
        _ => res[0].len(),
    };
    put_uvarint(out, free as u64);
    put_stream(out, stream);
    true
}

/// The scale of the value block written by [`encode`] at `at`: the scale
/// of the mantissas [`decode`] wants the rollup in.
pub(crate) fn scale_at(buf: &[u8], at: usize) -> Result<usize, DecodeError> {
    let mut p = at;
    if get_u8(buf, &mut p)? != MODE_CELLS {
        return Err(DecodeError("not a value block coded against its rollup"));
    }
    let scale = get_u8(buf, &mut p)? as usize;
    if scale > MAX_SCALE {
        return Err(DecodeError("bad rollup-coded value block header"));
    }
    Ok(scale)
}

/// Reads a value block written by [`encode`] at `*at`, appending the
/// values at `ts` to `vals`, given their 5-minute rollup in `sc.cols` as
/// mantissas at the block's scale (its second byte).
pub(crate) fn decode(
    buf: &[u8],
    at: &mut usize,
    ts: &[i64],
    sc: &mut Scratch,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let scale = scale_at(buf, *at)?;
    *at += 2;
    let order = get_u8(buf, at)?;
    let compact = order & COMPACT != 0;
    let (order, code) = (order & !CODES & !COMPACT, order & CODES);
    if (order > PAIRS_BOUNDED && order != PAIRS_BY_LAST && order != STEPPED)
        || (order >= BOUNDED && code != 0)
        || (compact && order < PAIRS_BOUNDED)
    {
        return Err(DecodeError("bad rollup-coded value block header"));
    }
    let Scratch {
        cols, ms, pos, res, ..
    } = sc;
    let res = &mut res[0];
    // A stepped form's steps, and its unstepped buckets in `res` (which
    // its residuals, in the stream, do not take).
    let mut step = (0, 0);
    res.clear();
    if order == STEPPED {
        let a = get_varint(buf, at)?;
        let span = get_uvarint(buf, at)?;
        let e = get_uvarint(buf, at)? as usize;
        if !(1..=BOUNDED_MAX as i64).contains(&a) || span > BOUNDED_MAX || e > ts.len() {
            return Err(DecodeError("bad rollup-coded value block header"));
        }
        step = (a, a + span as i64);
        let mut u = 0u64;
        for _ in 0..e {
            u = u.saturating_add(get_uvarint(buf, at)?);
            res.push(u as i64);
        }
    }
    pos.clear();
    let (n_pos, n_res, mut stream) = if compact {
        let rest = buf.get(*at..).unwrap_or_default();
        *at = buf.len();
        (
            ts.len(),
            ts.len(),
            BitReader::with_len(rest, rest.len() as u64 * 8),
        )
    } else {
        let n_pos = get_uvarint(buf, at)? as usize;
        if n_pos > ts.len() {
            return Err(DecodeError("more residuals than samples"));
        }
        let mut pos_stream = get_stream(buf, at)?;
        if order < PAIRS_BOUNDED {
            unpack(&mut pos_stream, n_pos, pos)?;
        } else if pos_stream.remaining() != 0 {
            return Err(DecodeError("bad rollup-coded value block header"));
        }
        let n_res = get_uvarint(buf, at)? as usize;
        if n_res > ts.len() {
            return Err(DecodeError("more residuals than samples"));
        }
        (n_pos, n_res, get_stream(buf, at)?)
    };
    let cols = &*cols;
    match order {
        0 | 1 => {
            uncode(&mut stream, code, n_res, res)?;
            let src = Packed {
                pos,
                res,
                next_pos: 0,
                next_res: 0,
                order,
            };
            fill_buckets(src, cols, scale, ts, ms, vals)
        }
        _ => {
            let src = Bounded {
                pos: (order == BOUNDED).then_some(&pos[..]),
                by_last: order >= PAIRS_BY_LAST,
                next_pos: 0,
                n_pos,
                n_res,
                next_res: 0,
                r: stream,
                counted: !compact,
            };
            if order != STEPPED {
                return fill_buckets(src, cols, scale, ts, ms, vals);
            }
            let src = Stepped {
                inner: src,
                step,
                unstepped: res,
                next_unstepped: 0,
                stepped: false,
            };
            fill_buckets(src, cols, scale, ts, ms, vals)
        }
    }
}

/// Residuals at or below this magnitude may be coded in bounds: the bounds
/// of a bucket of up to 64 such samples stay far inside an i64.
const BOUNDED_MAX: u64 = 1 << 40;

/// Residual forms past orders 0 and 1: samples in the bounds their
/// bucket's min, max and sum leave them, in a truncated binary code, with
/// position pairs packed (`BOUNDED`) or coded the same way (`PAIRS_BOUNDED`).
const BOUNDED: u8 = 2;
const PAIRS_BOUNDED: u8 = 3;
/// As [`PAIRS_BOUNDED`], with the positions told by the bucket's last,
/// which the rollup holds: where the last is the max (or the min), that is
/// its place and only the min's (max's) first place among the others is
/// coded, in `0..n - 1`; else both first places among the `n - 1` others,
/// in `0..(n - 1) * (n - 2)`. (Not 4: bits 4 and 8 of the form byte are
/// the code flags of forms 0 and 1.)
const PAIRS_BY_LAST: u8 = 16;

/// As [`PAIRS_BY_LAST`], with the buckets that rise by steps within a
/// range bounded by them too (see the module doc).
const STEPPED: u8 = 32;
/// Flags, in the form byte of forms 3, 16 and 32, a value block without
/// the counts of pairs and free samples and the empty positions part: its
/// one stream runs to the end of the block (layout 4 on).
const COMPACT: u8 = 64;

/// The least value free sample `i` of a stepped bucket `cell` (filled
/// before `i`, and its last) can take and how many it can: within the
/// steps `(a, b)` from the one before and to the last, and for the one
/// before the derived sample, the steps the sum `rest` leaves that one;
/// `None` if none (garbage in). (The bounds of [`Rest::range`] seldom
/// narrow these, and cost a read more time than they save bits.)
#[inline]
fn stepped_range(rest: &Rest, cell: &[i64], i: usize, (a, b): (i64, i64)) -> Option<(i64, u64)> {
    let n = cell.len();
    let last = cell[n - 1];
    let prev = cell[i - 1];
    let after = (n - 1 - i) as i64;
    let mut lo = prev
        .wrapping_add(a)
        .max(last.wrapping_sub(after.wrapping_mul(b)));
    let mut hi = prev
        .wrapping_add(b)
        .min(last.wrapping_sub(after.wrapping_mul(a)));
    if rest.left == 2 {
        // The derived sample, next, steps from this one and to the last.
        let rem = rest.sum.wrapping_sub(rest.known);
        lo = lo
            .max(rem.wrapping_sub(b).wrapping_add(1).div_euclid(2))
            .max(rem.wrapping_sub(last).wrapping_add(a));
        hi = hi
            .min(rem.wrapping_sub(a).div_euclid(2))
            .min(rem.wrapping_sub(last).wrapping_add(b));
    }
    let m = hi.wrapping_sub(lo).wrapping_add(1) as u64;
    (1..=1 << 62).contains(&m).then_some((lo, m))
}

/// The least and greatest step of the rising buckets of `ms` (width `w` at
/// `ts`), if every step is at least 1 and below [`BOUNDED_MAX`].
fn steps(ts: &[i64], ms: &[i64], w: i64) -> Option<(i64, i64)> {
    let (mut a, mut b) = (i64::MAX, i64::MIN);
    let _ = for_each_bucket(ts, w, |from, to, _| {
        let cell = &ms[from..to];
        if cell.len() > 1 && cell.windows(2).all(|p| p[1] > p[0]) {
            for p in cell.windows(2) {
                let d = p[1].wrapping_sub(p[0]);
                a = a.min(d);
                b = b.max(d);
            }
        }
        Ok::<(), ()>(())
    });
    (a >= 1 && a <= b && b.unsigned_abs() <= BOUNDED_MAX).then_some((a, b))
}

/// Whether a bucket is stepped: rising by steps within `(a, b)`.
#[inline]
fn is_stepped(cell: &[i64], (a, b): (i64, i64)) -> bool {
    cell.len() > 1
        && cell.windows(2).all(|p| {
            let d = p[1].wrapping_sub(p[0]);
            (a..=b).contains(&d)
        })
}

/// Which extreme of its bucket the last sample is: the max, the min, or
/// neither (the decoder knows from the rollup).
#[inline]
fn end_of(last: i64, lo: i64, hi: i64) -> u8 {
    if last == hi {
        1
    } else if last == lo {
        2
    } else {
        0
    }
}

/// The positions of a bucket's min and max in [`PAIRS_BY_LAST`]: the last's
/// place for the extreme it is, else the first places `i_lo` and `i_hi`.
#[inline]
fn by_last(n: usize, end: u8, (i_lo, i_hi): (usize, usize)) -> (usize, usize) {
    match end {
        1 => (i_lo, n - 1),
        2 => (n - 1, i_hi),
        _ => (i_lo, i_hi),
    }
}

/// Writes the positions of [`PAIRS_BY_LAST`] (see [`by_last`]).
fn write_pair_by_last(w: &mut BitWriter, n: usize, end: u8, (i_lo, i_hi): (usize, usize)) {
    let others = (n - 1) as u64;
    match end {
        1 => w.write_below(i_lo as u64, others),
        2 => w.write_below(i_hi as u64, others),
        // Both among the samples before the last: a pair of a bucket of n - 1.
        _ => w.write_below(pair_code(n - 1, i_lo, i_hi), others * (others - 1)),
    }
}

/// Writes the free samples of a bucket (`cell`, mantissas) with its min and
/// max at `i_lo` and `i_hi` and sum `total` to each of `ws`, each in a
/// truncated binary code of the values it can take given those before it;
/// returns how many it wrote.
fn write_free(
    ws: &mut [&mut BitWriter],
    cell: &[i64],
    (lo, i_lo): (i64, usize),
    (hi, i_hi): (i64, usize),
    total: i64,
) -> usize {
    let n = cell.len();
    let d = derived(n, i_lo, i_hi);
    let mut rest = Rest::new(n, (lo, i_lo), (hi, i_hi), cell[n - 1], total);
    let mut written = 0;
    for (i, &m) in cell[..n - 1].iter().enumerate() {
        if i == i_lo || i == i_hi || Some(i) == d {
            continue;
        }
        let (from, k) = rest.range().expect("bounds of a real bucket");
        for w in ws.iter_mut() {
            w.write_below((m - from) as u64, k);
        }
        rest.take(m);
        written += 1;
    }
    written
}

/// The code in `0..n * (n - 1)` of a bucket's min and max positions.
#[inline]
fn pair_code(n: usize, i_lo: usize, i_hi: usize) -> u64 {
    (i_lo * (n - 1) + i_hi - usize::from(i_hi > i_lo)) as u64
}

/// What is known of a bucket's samples still to fill: its min and max, the
/// sum of all of them, the sum of those filled so far, and how many free
/// samples are left (the derived one included).
#[derive(Debug, Clone, Copy)]
struct Rest {
    lo: i64,
    hi: i64,
    sum: i64,
    known: i64,
    left: usize,
}

impl Rest {
    /// A bucket of `n` samples with min `lo` first at `i_lo`, max `hi`
    /// first at `i_hi`, last sample `last` and sum `sum`, before any free
    /// sample is filled: the known sum counts the last, and the min and max
    /// where they are not the last.
    #[inline]
    fn new(
        n: usize,
        (lo, i_lo): (i64, usize),
        (hi, i_hi): (i64, usize),
        last: i64,
        sum: i64,
    ) -> Self {
        let (lo_apart, hi_apart) = (i_lo != n - 1, i_hi != n - 1);
        Self {
            lo,
            hi,
            sum,
            known: last
                .wrapping_add(lo.wrapping_mul(i64::from(lo_apart)))
                .wrapping_add(hi.wrapping_mul(i64::from(hi_apart))),
            left: n - 1 - usize::from(lo_apart) - usize::from(hi_apart),
        }
    }

    /// Counts free sample `m` as filled.
    #[inline]
    fn take(&mut self, m: i64) {
        self.known = self.known.wrapping_add(m);
        self.left -= 1;
    }

    /// The least value the next free sample can take and how many it can:
    /// within [lo, hi], leaving the others a sum they can make.
    /// Exact for samples within [`BOUNDED_MAX`]; garbage in, garbage out
    /// (never a panic) otherwise.
    #[inline]
    fn range(&self) -> Option<(i64, u64)> {
        let rest = self.sum.wrapping_sub(self.known);
        let others = self.left.checked_sub(1)? as i64;
        let from = self.lo.max(rest.wrapping_sub(others.wrapping_mul(self.hi)));
        let to = self.hi.min(rest.wrapping_sub(others.wrapping_mul(self.lo)));
        let m = to.wrapping_sub(from).wrapping_add(1) as u64;
        (1..=1 << 62).contains(&m).then_some((from, m))
    }
}

/// Where a value block's positions and residuals come from.
trait Source {
    /// The first indices of the min and max of the next bucket of `n`
    /// samples with min below max.
    /// `end` says which extreme the bucket's last is (see [`end_of`]).
    fn pair(&mut self, n: usize, end: u8) -> Result<(usize, usize), DecodeError>;
    /// The `left` free samples of a bucket still to fill, the derived one
    /// included, are `rest`; fills sample `i` of `cell` and returns it
    /// (`before` is the sample before the bucket).
    fn sample(
        &mut self,
        cell: &mut [i64],
        i: usize,
        rest: &Rest,
        before: i64,
    ) -> Result<i64, DecodeError>;
    /// Whether every position and residual was used.
    fn done(&self) -> bool;
}

/// The position pair at `*next` of packed pairs `pos` for a bucket of `n`.
#[inline]
fn packed_pair(pos: &[i64], next: &mut usize, n: usize) -> Result<(usize, usize), DecodeError> {
    let p = *pos
        .get(*next)
        .ok_or(DecodeError("rollup-coded positions end early"))?;
    *next += 1;
    Ok(split_pair(p as u64, n))
}

/// Packed positions and residuals of order 0 or 1.
struct Packed<'a> {
    pos: &'a [i64],
    res: &'a [i64],
    next_pos: usize,
    next_res: usize,
    order: u8,
}

impl Source for Packed<'_> {
    #[inline]
    fn pair(&mut self, n: usize, _end: u8) -> Result<(usize, usize), DecodeError> {
        packed_pair(self.pos, &mut self.next_pos, n)
    }

    #[inline(always)]
    fn sample(
        &mut self,
        cell: &mut [i64],
        i: usize,
        rest: &Rest,
        before: i64,
    ) -> Result<i64, DecodeError> {
        let x = *self
            .res
            .get(self.next_res)
            .ok_or(DecodeError("rollup-coded residuals end early"))?;
        self.next_res += 1;
        Ok(fill(cell, i, x, self.order, rest.lo, before))
    }

    fn done(&self) -> bool {
        self.next_pos == self.pos.len() && self.next_res == self.res.len()
    }
}

/// Samples coded in their bounds; positions packed or coded in the stream.
struct Bounded<'a, 'b> {
    pos: Option<&'b [i64]>,
    /// Positions told by the last (`PAIRS_BY_LAST`).
    by_last: bool,
    next_pos: usize,
    n_pos: usize,
    n_res: usize,
    next_res: usize,
    r: BitReader<'a>,
    /// Whether `n_pos` and `n_res` are the counts the block gave (else
    /// bounds, and the stream ends in the padding of its last byte).
    counted: bool,
}

impl Source for Bounded<'_, '_> {
    #[inline]
    fn pair(&mut self, n: usize, end: u8) -> Result<(usize, usize), DecodeError> {
        if let Some(pos) = self.pos {
            return packed_pair(pos, &mut self.next_pos, n);
        }
        const EARLY: DecodeError = DecodeError("rollup-coded positions end early");
        self.next_pos += 1;
        if self.next_pos > self.n_pos || n > 64 {
            return Err(EARLY);
        }
        // A pair of a bucket of `m` in the code of [`pair_code`].
        let mut read_pair = |m: usize| -> Result<(usize, usize), DecodeError> {
            let q = self.r.read_below((m * (m - 1)) as u64).ok_or(EARLY)? as usize;
            let (i_lo, j) = (q / (m - 1), q % (m - 1));
            Ok((i_lo, j + usize::from(j >= i_lo)))
        };
        if !self.by_last {
            return read_pair(n);
        }
        let others = n - 1;
        match end {
            1 | 2 => {
                let i = self.r.read_below(others as u64).ok_or(EARLY)? as usize;
                Ok(if end == 1 { (i, others) } else { (others, i) })
            }
            _ if n < 3 => Err(DecodeError("bad rollup-coded position")),
            _ => read_pair(others),
        }
    }

    #[inline]
    fn sample(
        &mut self,
        cell: &mut [i64],
        i: usize,
        rest: &Rest,
        _before: i64,
    ) -> Result<i64, DecodeError> {
        self.next_res += 1;
        let (from, m) = rest
            .range()
            .filter(|_| self.next_res <= self.n_res)
            .ok_or(DecodeError("bad rollup-coded residual bounds"))?;
        let x = self
            .r
            .read_below(m)
            .ok_or(DecodeError("rollup-coded residuals end early"))?;
        cell[i] = from.wrapping_add(x as i64);
        Ok(cell[i])
    }

    fn done(&self) -> bool {
        if self.counted {
            self.next_pos == self.n_pos && self.next_res == self.n_res && self.r.remaining() == 0
        } else {
            self.r.remaining() < 8
        }
    }
}

/// The stepped form: [`Bounded`] with positions told by the last, but for
/// stepped buckets (see [`STEPPED`]).
struct Stepped<'a, 'b> {
    inner: Bounded<'a, 'b>,
    step: (i64, i64),
    /// Indices (among the buckets with a pair) of the unstepped buckets
    /// whose last is their max, ascending.
    unstepped: &'b [i64],
    next_unstepped: usize,
    /// Whether the bucket being filled is stepped.
    stepped: bool,
}

impl Source for Stepped<'_, '_> {
    #[inline]
    fn pair(&mut self, n: usize, end: u8) -> Result<(usize, usize), DecodeError> {
        // The pair's index among the buckets with one.
        let at = self.inner.next_pos as i64;
        let listed = self.unstepped.get(self.next_unstepped) == Some(&at);
        self.next_unstepped += usize::from(listed);
        self.stepped = end == 1 && !listed;
        if !self.stepped {
            return self.inner.pair(n, end);
        }
        self.inner.next_pos += 1;
        if self.inner.next_pos > self.inner.n_pos || n > 64 {
            return Err(DecodeError("rollup-coded positions end early"));
        }
        Ok((0, n - 1))
    }

    #[inline]
    fn sample(
        &mut self,
        cell: &mut [i64],
        i: usize,
        rest: &Rest,
        before: i64,
    ) -> Result<i64, DecodeError> {
        if !self.stepped {
            return self.inner.sample(cell, i, rest, before);
        }
        const BOUNDS: DecodeError = DecodeError("bad rollup-coded residual bounds");
        let b = &mut self.inner;
        b.next_res += 1;
        if i == 0 || b.next_res > b.n_res {
            return Err(BOUNDS);
        }
        if self.step.0 == self.step.1 {
            // One step: each sample is the one before and the step (its
            // range holds one value, which takes no bits).
            cell[i] = cell[i - 1].wrapping_add(self.step.0);
            return Ok(cell[i]);
        }
        let (from, m) = stepped_range(rest, cell, i, self.step).ok_or(BOUNDS)?;
        let x =
            b.r.read_below(m)
                .ok_or(DecodeError("rollup-coded residuals end early"))?;
        cell[i] = from.wrapping_add(x as i64);
        Ok(cell[i])
    }

    fn done(&self) -> bool {
        self.next_unstepped == self.unstepped.len() && self.inner.done()
    }
}

/// Fills every bucket of the rollup `cols` (count, last, sum, min, max as
/// mantissas at `scale`) from `src`, appending the samples at `ts` to
/// `vals`; `ms` is scratch.
#[inline(always)]
fn fill_buckets<S: Source>(
    mut src: S,
    cols: &[Vec<i64>; 5],
    scale: usize,
    ts: &[i64],
    ms: &mut Vec<i64>,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let [m_count, m_last, m_sum, m_lo, m_hi] = cols;
    let nb = m_count.len();
    if [m_last, m_sum, m_lo, m_hi].iter().any(|c| c.len() != nb) {
        return Err(DecodeError("rollup columns differ in length"));
    }
    // Each bucket is filled in `cell` (every index is written before it is
    // read) and goes out as values at once.
    ms.clear();
    ms.resize(64, 0);
    let f = |m: i64| from_mantissa(m, scale);
    let mut done = 0usize;
    vals.reserve(ts.len());
    for k in 0..nb {
        let n = usize::try_from(m_count[k])
            .ok()
            .filter(|&c| c > 0 && c <= ts.len() - done)
            .ok_or(DecodeError("rollup bucket counts and raw samples differ"))?;
        let (last, lo, hi) = (m_last[k], m_lo[k], m_hi[k]);
        // An order-1 bucket's first sample follows the last of the one before.
        let before = if done > 0 { m_last[k - 1] } else { lo };
        done += n;
        if lo == hi || n == 1 {
            vals.extend(std::iter::repeat_n(f(lo), n - 1));
            vals.push(f(last));
            continue;
        }
        let (i_lo, i_hi) = src.pair(n, end_of(last, lo, hi))?;
        if i_lo >= n || i_hi >= n || i_lo == i_hi {
            return Err(DecodeError("bad rollup-coded position"));
        }
        if ms.len() < n {
            ms.resize(n, 0);
        }
        let cell = &mut ms[..n];
        cell[n - 1] = last;
        cell[i_lo] = lo;
        cell[i_hi] = hi;
        let mut rest = Rest::new(n, (lo, i_lo), (hi, i_hi), last, m_sum[k]);
        let size = rest.left;
        if n <= 64 {
            // The samples to fill as a bit set: fewer unpredictable branches
            // than testing each index.
            let all = if n == 64 {
                u64::MAX >> 1
            } else {
                (1u64 << (n - 1)) - 1
            };
            let mut open = all & !(1u64 << i_lo) & !(1u64 << i_hi);
            // Counted by arithmetic: baseline x86-64 has no popcount.
            if size > 0 {
                let d = 63 - open.leading_zeros() as usize;
                open &= !(1u64 << d);
                for _ in 1..size {
                    let i = open.trailing_zeros() as usize;
                    open &= open - 1;
                    rest.take(src.sample(cell, i, &rest, before)?);
                }
                cell[d] = m_sum[k].wrapping_sub(rest.known);
            }
        } else {
            let d = derived(n, i_lo, i_hi);
            for i in 0..n - 1 {
                if i == i_lo || i == i_hi || Some(i) == d {
                    continue;
                }
                rest.take(src.sample(cell, i, &rest, before)?);
            }
            if let Some(d) = d {
                cell[d] = m_sum[k].wrapping_sub(rest.known);
            }
        }
        vals.extend(cell.iter().map(|&m| f(m)));
    }
    if done != ts.len() {
        return Err(DecodeError("raw samples and their rollup buckets differ"));
    }
    if !src.done() {
        return Err(DecodeError(
            "rollup-coded value block and its buckets differ",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Block, BlockMeta, BlockWriter, ROLLUP_WIDTHS, compute_rollup};
    use crate::codec::decimals;
    use proptest::prelude::*;

    /// Writes `ts`/`vals` as the one series of a block, reads its raw
    /// samples back, and says whether they were coded against the rollup.
    fn through_a_block(ts: &[i64], vals: &[f64]) -> (Vec<i64>, Vec<f64>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let meta = BlockMeta {
            seq: 1,
            start: ts[0],
            end: ts[ts.len() - 1] + 1,
            level: 0,
        };
        let mut w = BlockWriter::create(dir.path(), meta).unwrap();
        w.add(["svc", "src", "m"], ts, vals).unwrap();
        let mut ub = Block::open(&w.finish().unwrap()).unwrap();
        ub.block.bind(&[1]);
        let e = *ub.block.entry(1).unwrap();
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        let mut sc = Scratch::default();
        ub.block.raw(&e, &mut sc, &mut t2, &mut v2).unwrap();
        let mut r = Rollup::default();
        let mut ms = Vec::new();
        let scale = decimals(vals, &mut ms);
        compute_rollup(
            ts,
            vals,
            scale.map(|s| (s, &ms[..])),
            ROLLUP_WIDTHS[0],
            &mut r,
        );
        let coded = scale
            .is_some_and(|s| encode(ts, (s, &ms), &r, ROLLUP_WIDTHS[0], &mut sc, &mut Vec::new()));
        (t2, v2, coded)
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The decimal scale, mantissas and 5-minute rollup of exact decimals.
    pub(super) fn rollup_of(ts: &[i64], vals: &[f64]) -> (usize, Vec<i64>, Rollup) {
        let mut ms = Vec::new();
        let scale = decimals(vals, &mut ms).expect("exact decimals");
        let mut r = Rollup::default();
        compute_rollup(ts, vals, Some((scale, &ms)), ROLLUP_WIDTHS[0], &mut r);
        (scale, ms, r)
    }

    /// The value block of `ts` and mantissas `ms` against their rollup `r`.
    pub(super) fn encoded(ts: &[i64], scale: usize, ms: &[i64], r: &Rollup) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(encode(
            ts,
            (scale, ms),
            r,
            ROLLUP_WIDTHS[0],
            &mut Scratch::default(),
            &mut out
        ));
        out
    }

    thread_local! {
        /// The residual form the encoder takes where it can, not the smallest.
        pub(super) static FORM: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
        /// Whether forms 3, 16 and 32 are written with their counts, as
        /// layout 3 blocks have them (still read).
        pub(super) static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Every residual form the encoder has, then its own choice.
    const EVERY_FORM: [Option<u8>; 7] = [
        Some(0),
        Some(1),
        Some(BOUNDED),
        Some(PAIRS_BOUNDED),
        Some(PAIRS_BY_LAST),
        Some(STEPPED),
        None,
    ];

    /// Runs `f` with every residual form the encoder has, and with its choice.
    fn in_every_form(mut f: impl FnMut()) {
        for counted in [false, true] {
            COUNTED.set(counted);
            for form in EVERY_FORM {
                FORM.set(form);
                f();
            }
        }
        FORM.set(None);
        COUNTED.set(false);
    }

    #[test]
    fn damaged_blocks_and_rollups_never_panic() {
        let ts: Vec<i64> = (0..300).map(|i| i * 60_000).collect();
        let mut x = 9u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // A gauge, and a counter (stepped buckets).
        let gauge: Vec<f64> = ts.iter().map(|_| (next() % 500) as f64 / 10.0).collect();
        let mut c = 0u64;
        let counter: Vec<f64> = ts
            .iter()
            .map(|_| {
                c += 50 + next() % 20;
                c as f64
            })
            .collect();
        for vals in [gauge, counter] {
            let (scale, ms, r) = rollup_of(&ts, &vals);
            let m = |c: &[f64]| -> Vec<i64> {
                c.iter()
                    .map(|&v| nearest_mantissa(v, scale).unwrap())
                    .collect()
            };
            let count: Vec<i64> = r.count.iter().map(|&c| c as i64).collect();
            let cols = [count, m(&r.last), m(&r.sum), m(&r.min), m(&r.max)];
            in_every_form(|| {
                let block = encoded(&ts, scale, &ms, &r);
                for round in 0..3000 {
                    let mut buf = block.clone();
                    let mut sc = Scratch {
                        cols: cols.clone(),
                        ..Scratch::default()
                    };
                    if round % 3 == 0 {
                        let c = (next() % 5) as usize;
                        let k = (next() as usize) % sc.cols[c].len();
                        sc.cols[c][k] = [i64::MAX, i64::MIN, 0, -1, next() as i64][round % 5];
                    } else {
                        let i = 3 + (next() as usize) % (buf.len() - 3);
                        buf[i] ^= 1 << (next() % 8);
                    }
                    let mut out = Vec::new();
                    let _ = decode(&buf, &mut 0, &ts, &mut sc, &mut out);
                }
            });
        }
    }

    #[test]
    fn a_noisy_gauge_is_coded_in_its_bounds() {
        let ts: Vec<i64> = (0..600).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let mut x = 5u64;
        let vals: Vec<f64> = ts
            .iter()
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (4000 + (x % 400) as i64) as f64 / 100.0
            })
            .collect();
        let (scale, ms, r) = rollup_of(&ts, &vals);
        let mut sizes = Vec::new();
        in_every_form(|| {
            let out = encoded(&ts, scale, &ms, &r);
            sizes.push((out[2] & !COMPACT, out.len()));
            let (t2, v2, _) = through_a_block(&ts, &vals);
            assert_eq!((t2, bits(&v2)), (ts.clone(), bits(&vals)));
        });
        // Chosen: the smallest, which is both in bounds (a sample in [min,
        // max] given the sum, the positions in log2(20) bits).
        assert_eq!(sizes[6].0, PAIRS_BY_LAST, "{sizes:?}");
        assert!(sizes.iter().all(|s| s.1 >= sizes[6].1), "{sizes:?}");
        // Told by the last, the positions take fewer bits than a pair.
        assert!(sizes[4].1 < sizes[3].1, "{sizes:?}");
    }

    #[test]
    fn reciprocals_split_every_pair_exactly() {
        for n in 1..=64usize {
            for p in 0..(n * n) as u64 + 70 {
                assert_eq!(
                    split_pair(p, n),
                    ((p / n as u64) as usize, (p % n as u64) as usize)
                );
            }
        }
    }

    #[test]
    fn scraped_shapes_round_trip_against_their_rollup() {
        let ts: Vec<i64> = (0..600).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let shapes: [&dyn Fn(i64) -> f64; 5] = [
            &|i| (i * 37 + (i * i) % 11) as f64,           // counter
            &|i| (4000 + (i * 7919) % 400) as f64 / 100.0, // gauge, two decimals
            &|_| 42.0,                                     // constant
            &|i| {
                if i == 300 {
                    0.0
                } else {
                    (1 + i % 3) as f64 * -1.5
                }
            },
            &|i| ((i * 31) % 17) as f64 * 1e7, // large values
        ];
        // Each shape at one sample a minute, and at one a second (buckets
        // of 300, past the bit-set path).
        let wide: Vec<i64> = (0..1000).map(|i| 1_700_000_000_000 + i * 1_000).collect();
        in_every_form(|| {
            for ts in [&ts, &wide] {
                for (k, f) in shapes.iter().enumerate() {
                    let vals: Vec<f64> = (0..ts.len() as i64).map(f).collect();
                    let (t2, v2, coded) = through_a_block(ts, &vals);
                    assert!(coded, "shape {k}");
                    assert_eq!((t2, bits(&v2)), (ts.clone(), bits(&vals)));
                }
            }
        });
    }

    #[test]
    fn values_that_are_not_short_decimals_fall_back() {
        let ts: Vec<i64> = (0..50).map(|i| i * 1_000).collect();
        for special in [f64::NAN, -0.0, f64::INFINITY, 0.1 + 0.2, 1e300, 1.0 / 3.0] {
            let mut vals: Vec<f64> = (0..50).map(|i| i as f64).collect();
            vals[17] = special;
            let (t2, v2, coded) = through_a_block(&ts, &vals);
            assert!(!coded, "{special} is not a short decimal");
            assert_eq!((t2, bits(&v2)), (ts.clone(), bits(&vals)));
        }
    }

    #[test]
    fn a_sum_that_does_not_round_to_its_mantissas_falls_back() {
        // Mantissas near 2^52: their float sum loses the low digits.
        let ts: Vec<i64> = (0..10).map(|i| i * 60_000).collect();
        let vals: Vec<f64> = (0..10)
            .map(|i| (4_503_599_627_370_000i64 + i * 7) as f64)
            .collect();
        let (t2, v2, coded) = through_a_block(&ts, &vals);
        assert!(!coded);
        assert_eq!((t2, bits(&v2)), (ts, bits(&vals)));
    }

    #[test]
    fn a_counter_is_coded_in_steps() {
        // Increments of 80 to 120 a minute, a reset at sample 500.
        let ts: Vec<i64> = (0..1440).map(|i| 1_700_006_400_000 + i * 60_000).collect();
        let mut v = 1_000_000i64;
        let vals: Vec<f64> = (0..1440i64)
            .map(|i| {
                v = if i == 500 {
                    3
                } else {
                    v + 80 + (i * i * 7919) % 41
                };
                v as f64
            })
            .collect();
        let (scale, ms, r) = rollup_of(&ts, &vals);
        let block = encoded(&ts, scale, &ms, &r);
        assert_eq!(
            block[2],
            STEPPED | COMPACT,
            "the smallest form of a counter"
        );
        // Two increments coded a bucket of five, in about log2 41 and a
        // bit less: well under the 12 bits a bucket of packing.
        assert!(block.len() * 8 < 288 * 11, "{} bytes", block.len());
        let (t2, v2, coded) = through_a_block(&ts, &vals);
        assert!(coded);
        assert_eq!((t2, bits(&v2)), (ts, bits(&vals)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Counters (rising by steps in a range, with the odd idle minute
        /// and reset) come back bit for bit in every form.
        #[test]
        fn any_counter_round_trips(
            gaps in proptest::collection::vec(
                prop_oneof![Just(60_000i64), Just(10_000), 1i64..400_000], 1..700),
            rate in 1i64..1000,
            jitter in 0i64..500,
            seed in any::<u64>(),
            resets in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            idle in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        ) {
            let mut t = 0i64;
            let ts: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let mut x = seed | 1;
            let mut v = 0i64;
            let mut vals: Vec<f64> = ts.iter().map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v += rate + (x % (jitter as u64 + 1)) as i64;
                v as f64
            }).collect();
            for i in &resets {
                let i = i.index(ts.len());
                let base = vals[i];
                vals[i..].iter_mut().for_each(|v| *v -= base);
            }
            for i in &idle {
                let i = i.index(ts.len());
                if i > 0 {
                    let step = vals[i] - vals[i - 1];
                    vals[i..].iter_mut().for_each(|v| *v -= step);
                }
            }
            for form in EVERY_FORM {
                FORM.set(form);
                let (t2, v2, coded) = through_a_block(&ts, &vals);
                FORM.set(None);
                prop_assert_eq!(&t2, &ts);
                prop_assert_eq!(bits(&v2), bits(&vals));
                prop_assert!(coded);
            }
        }

        /// Any sorted times (buckets of one sample to hundreds, the wide
        /// bucket path included) and decimal values at any scale, with the
        /// odd value that is not one, come back bit for bit.
        #[test]
        fn any_run_round_trips(
            gaps in proptest::collection::vec(
                prop_oneof![Just(60_000i64), Just(1_000), Just(300_000), 1i64..400_000],
                1..700),
            scale in 0u32..=4,
            spread in prop_oneof![Just(0i64), 1i64..4, 1i64..100_000, 1i64..(1 << 40)],
            seed in any::<u64>(),
            odd in proptest::option::of((any::<prop::sample::Index>(),
                prop_oneof![Just(f64::NAN), Just(-0.0), Just(0.1 + 0.2), any::<f64>()])),
        ) {
            let mut t = -3_600_000i64 * 5;
            let ts: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let mut x = seed | 1;
            let mut vals: Vec<f64> = ts.iter().map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let m = (x % (2 * spread as u64 + 1)) as i64 - spread;
                m as f64 / 10f64.powi(scale as i32)
            }).collect();
            if let Some((i, v)) = odd {
                vals[i.index(ts.len())] = v;
            }
            for form in EVERY_FORM {
                FORM.set(form);
                let (t2, v2, coded) = through_a_block(&ts, &vals);
                FORM.set(None);
                prop_assert_eq!(&t2, &ts);
                prop_assert_eq!(bits(&v2), bits(&vals));
                if odd.is_none() && spread < 1 << 20 {
                    prop_assert!(coded);
                }
            }
        }
    }
}
#[cfg(test)]
mod probe {
    use super::tests::*;
    #[test]
    fn probe_sawtooth() {
        let ts: Vec<i64> = (0..10080).map(|k| 1_700_000_000_000 + k * 60_000).collect();
        for i in [0usize, 1, 13] {
            let vals: Vec<f64> = (0..10080).map(|k| ((i * 7 + k) % 100) as f64).collect();
            let (scale, ms, r) = rollup_of(&ts, &vals);
            let out = encoded(&ts, scale, &ms, &r);
            eprintln!("series {i}: form byte {} len {}", out[2], out.len());
        }
    }
}
