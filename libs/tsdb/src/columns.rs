//! Rollup column codecs: a column is a plain value block, the exceptions to
//! its buckets' `last`, one integer but at a few buckets, or its mantissas
//! less a prediction from the buckets' other columns, whichever is smallest.
//!
//! ```text
//! column = value block
//!        | 0x80 uvarint k, k x (uvarint index gap, u64 bits)
//!          (equal to last except at k buckets)
//!        | 0xA0 | 0x40 (ULPs) | predictor (u8) | u8 scale << 4 | order
//!          (| hourly places: ints) (| flags: ceil(n / 8) bytes, predictor 3)
//!          | zz first | residual stream of `order`, to the end of the column
//!            unless ULPs follow (then uvarint bits | stream | uvarint bits
//!            packed ULP distances)
//!        | 0x81 u8 predictor | u8 scale | ints(mantissa - prediction)
//!          | u8 0, or u8 1 uvarint bits packed ULP distances
//!          (before block layout 4, still read)
//!        | 0x82 zz integer | uvarint k, k x (uvarint index gap, zz difference)
//!          (that integer except at k buckets)
//! ```
//! Predictors: 0 the bucket's last, 1 the bucket before's last (0 for the
//! first), 3 the bucket's last with a flag for each bucket equal to it
//! (`uvarint bits | bits` before the integers, which skip those buckets),
//! for a min or a max; 2 the bucket's count times the mid-range of its min
//! and max, `count * (min + max) >> 1`, for a sum; 4 nothing (the mantissas
//! themselves). A 5-minute sum predicted by 2 or 4 may have the flag 0x10
//! (hourly): the buckets that end an hour have no residual, each being its
//! hour's sum (from the block's hourly rollup) less the hour's other
//! buckets, which saves a residual an hour. A 5-minute min or max predicted
//! by 0, 1 or 3 may have it too (layout 4 on): `ints` of each hour's place
//! of the first bucket holding the hour's min (max) come first, and those
//! buckets have neither residual nor flag (a counter's min is always in
//! its hour's first bucket: its places cost nothing). A gauge's min
//! and max lie near its last and a counter's min follows the last before:
//! what is left is the spread inside the bucket, not the series' own
//! wander. A counter's sum is its count times its mid-range but for the
//! unevenness of its increments. Mantissas are at `scale`, where every
//! column a prediction reads is exact and every value within a few ULPs of
//! a mantissa, as in `codec`'s Near form. A sum predicted by min and max
//! needs those decoded first; a sum is predicted only where that is
//! smaller than plain, which for a gauge it seldom is. (Predicting sums by
//! count times last saved 0.02 bytes a sample and cost a quarter more time
//! to read the 5-minute sums.)

use crate::bits::BitWriter;
use crate::codec::{
    DecodeError, MAX_SCALE, POW10, best_pack, decode_mantissas, decode_values, encode_values,
    from_mantissa, get_ints, get_ints_in, get_stream, get_u8, get_uvarint, get_varint, mantissa,
    near_mantissa, pack, put_ints, put_ints_in, put_stream, put_uvarint, put_varint, rounded,
    unpack, valid_order,
};

/// Marks a column stored as "equal to `last` except at these buckets" (a
/// counter's max, every column of a sparse series); value blocks start
/// with a mode byte below it.
pub(crate) const LIKE_LAST: u8 = 0x80;
/// Marks a column stored as mantissas less a prediction, the predictor in
/// the next byte and whether ULP distances follow in a byte after the
/// integers (written before block layout 4; still read).
pub(crate) const PREDICTED: u8 = 0x81;
/// Marks a column stored as mantissas less a prediction, the predictor in
/// its low 5 bits, and [`WITH_ULPS`] set when ULP distances follow the
/// integers.
pub(crate) const PREDICTED_IN: u8 = 0xA0;
/// See [`PREDICTED_IN`].
const WITH_ULPS: u8 = 0x40;
/// Marks a column of integers stored as one integer but at some buckets
/// (a count: every bucket full but the first and last).
pub(crate) const CONSTANT: u8 = 0x82;

/// Predicts with the bucket's last.
pub(crate) const BY_LAST: u8 = 0;
/// Predicts with the last of the bucket before.
pub(crate) const BY_LAST_BEFORE: u8 = 1;
/// Predicts a sum with the bucket's count times its min and max's mean.
pub(crate) const BY_MID: u8 = 2;
/// Predicts with the bucket's last, flagging the buckets equal to it (a
/// gauge's last is its min or max in two buckets of five): only the others
/// have residuals.
pub(crate) const BY_LAST_FLAGGED: u8 = 3;

/// Predicts 0: the residuals are the mantissas themselves (with
/// [`HOURLY`], a plain column whose hours' last buckets are derived).
pub(crate) const BY_ZERO: u8 = 4;
/// Flags a predictor of a 5-minute sum whose buckets ending an hour have no
/// residual: each is its hour's sum less the hour's other buckets.
pub(crate) const HOURLY: u8 = 0x10;

/// What a column's predictions are read from: the buckets' last, for a
/// sum predicted by [`BY_MID`] their count, min and max (as values, or as
/// mantissas with counts as integers), and for an [`HOURLY`] sum its hours.
#[derive(Debug)]
pub(crate) struct Basis<'a, T> {
    pub last: &'a [T],
    pub spread: Option<[&'a [T]; 3]>,
    pub hours: Option<Hours<'a, T>>,
}

/// The hours of 5-minute buckets: whether each bucket is the last of its
/// hour, and each hour's sum (as a value, or as a mantissa).
#[derive(Debug)]
pub(crate) struct Hours<'a, T> {
    pub ends: &'a [bool],
    pub values: &'a [T],
}

// Copied whatever `T` is: it holds only slices.
impl<T> Clone for Hours<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Hours<'_, T> {}
impl<T> Clone for Basis<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Basis<'_, T> {}

impl<'a, T> Basis<'a, T> {
    /// A basis of lasts only.
    pub fn last(last: &'a [T]) -> Self {
        Self {
            last,
            spread: None,
            hours: None,
        }
    }
}

/// The columns a prediction reads: `LAST` alone, or `COUNT`, `MIN` and `MAX`.
const LAST: usize = 0;
const COUNT: usize = 1;
const MIN: usize = 2;
const MAX: usize = 3;

/// Whether predictor `p` (without [`HOURLY`]) is one of a min or a max,
/// whose [`HOURLY`] form tells which bucket holds each hour's value.
#[inline]
fn is_extreme(p: u8) -> bool {
    matches!(p, BY_LAST | BY_LAST_BEFORE | BY_LAST_FLAGGED)
}

/// The prediction `p` of bucket `k` from the mantissas `m(column, bucket)`.
#[inline]
fn prediction(p: u8, k: usize, m: impl Fn(usize, usize) -> i64) -> i64 {
    match p & !HOURLY {
        BY_LAST | BY_LAST_FLAGGED => m(LAST, k),
        BY_LAST_BEFORE => k.checked_sub(1).map_or(0, |j| m(LAST, j)),
        BY_ZERO => 0,
        _ => m(COUNT, k).wrapping_mul(m(MIN, k).wrapping_add(m(MAX, k))) >> 1,
    }
}

/// The predictor of a column written by [`encode_column`], if it is one
/// (without its [`HOURLY`] flag).
pub(crate) fn predictor(buf: &[u8]) -> Option<u8> {
    full_predictor(buf).map(|p| p & !HOURLY)
}

/// The predictor of a column written by [`encode_column`], if it is one.
fn full_predictor(buf: &[u8]) -> Option<u8> {
    match *buf.first()? {
        PREDICTED => buf.get(1).copied(),
        m if m & PREDICTED_IN == PREDICTED_IN => Some(m & 0x1f),
        _ => None,
    }
}

/// Whether a column written by [`encode_column`] derives its hours' last
/// buckets from the hours' sums.
pub(crate) fn is_hourly(buf: &[u8]) -> bool {
    full_predictor(buf).is_some_and(|p| p & HOURLY != 0)
}

/// How a predicted column's last integers lie: in the form before block
/// layout 4 (`order` `None`: each integers part and flags stream says its
/// own order and length), or with their order from the header and, unless
/// ULP distances follow, running to the end of the column (flags then take
/// their bytes, without a length).
#[derive(Debug, Clone, Copy)]
struct Ints {
    order: Option<u8>,
    ulps: bool,
}

impl Ints {
    /// Reads `n` of the column's last integers.
    fn get(
        self,
        buf: &[u8],
        pos: &mut usize,
        n: usize,
        emit: impl FnMut(i64),
    ) -> Result<(), DecodeError> {
        match self.order {
            None => get_ints(buf, pos, n, emit),
            Some(order) => get_ints_in(buf, pos, order, !self.ulps, n, emit),
        }
    }

    /// Whether ULP distances follow the integers, read at `*pos` after
    /// them (in the form before layout 4, a byte there says).
    fn has_ulps(self, buf: &[u8], pos: &mut usize) -> Result<bool, DecodeError> {
        match self.order {
            Some(_) => Ok(self.ulps),
            None => Ok(get_u8(buf, pos)? == 1),
        }
    }

    /// The bytes holding `n` flags, a bit each from the top of the first.
    fn flags<'a>(self, buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.order.is_none() {
            // A stream: its length in bits, then its bytes.
            if get_uvarint(buf, pos)? != n as u64 {
                return Err(DecodeError("rollup column flags and buckets differ"));
            }
        }
        let bytes = buf
            .get(*pos..*pos + n.div_ceil(8))
            .ok_or(DecodeError("rollup column flags end early"))?;
        *pos += bytes.len();
        Ok(bytes)
    }
}

/// The hours of 5-minute buckets labelled `labels`: whether each is the
/// last bucket of its hour (`ends`, cleared first). The labels are sorted.
pub(crate) fn hour_ends(labels: &[i64], ends: &mut Vec<bool>) {
    ends.clear();
    ends.reserve(labels.len());
    let (w, hour) = (
        crate::block::ROLLUP_WIDTHS[0],
        crate::block::ROLLUP_WIDTHS[1],
    );
    if let (Some(&first), Some(&last)) = (labels.first(), labels.last())
        && last.checked_sub(first) == Some((labels.len() as i64 - 1) * w)
        && first.rem_euclid(w) == 0
    {
        // Every bucket from the first to the last (sorted labels on the
        // grid): the ends are every hour's worth from the first.
        ends.resize(labels.len(), false);
        let first_end = (hour - first.rem_euclid(hour)).rem_euclid(hour) / w;
        for e in ends
            .iter_mut()
            .skip(first_end as usize)
            .step_by((hour / w) as usize)
        {
            *e = true;
        }
        ends[labels.len() - 1] = true;
        return;
    }
    let mut hour_end = i64::MIN;
    for &l in labels {
        if l > hour_end {
            // A new hour: the bucket before ended the one before. Mostly
            // the next hour (no division then).
            let hour = crate::block::ROLLUP_WIDTHS[1];
            hour_end = match hour_end.checked_add(hour) {
                Some(next) if l <= next && hour_end > i64::MIN => next,
                _ => crate::block::bucket_label(l, hour),
            };
            if let Some(e) = ends.last_mut() {
                *e = true;
            }
        }
        ends.push(false);
    }
    if let Some(e) = ends.last_mut() {
        *e = true;
    }
}

/// Writes a rollup column of buckets with `basis`: as exceptions to their
/// last when they are rare, else the smallest of the plain value block and
/// the predictions `preds` (of [`BY_MID`] only where `basis` has a spread).
pub(crate) fn encode_column(col: &[f64], preds: &[u8], basis: Basis<'_, f64>, out: &mut Vec<u8>) {
    let last = basis.last;
    let differ = col
        .iter()
        .zip(last)
        .filter(|(c, l)| c.to_bits() != l.to_bits())
        .count();
    if differ * 16 < col.len() {
        out.push(LIKE_LAST);
        put_uvarint(out, differ as u64);
        let mut prev = 0usize;
        for (i, (c, l)) in col.iter().zip(last).enumerate() {
            if c.to_bits() != l.to_bits() {
                put_uvarint(out, (i - prev) as u64);
                out.extend_from_slice(&c.to_bits().to_le_bytes());
                prev = i;
            }
        }
        return;
    }
    let start = out.len();
    encode_values(col, out);
    let mut alt = Vec::new();
    let forms = std::iter::once(None).chain(preds.iter().map(Some));
    for form in forms {
        alt.clear();
        let written = match form {
            None => encode_constant(col, &mut alt),
            Some(&p) => encode_predicted(col, p, basis, &mut alt),
        };
        // An hourly min or max makes its reads, and raw reads, decode the
        // hourly rollup too: it must save a few bytes to be chosen.
        let cost = match form {
            Some(&p) if p & HOURLY != 0 && is_extreme(p & !HOURLY) => HOURLY_EXTREME_COST,
            _ => 0,
        };
        if written && alt.len() + cost < out.len() - start {
            out.truncate(start);
            out.extend_from_slice(&alt);
        }
    }
}

/// Bytes an hourly min or max column must save over its other forms.
const HOURLY_EXTREME_COST: usize = 8;

/// Writes a column of integers as its middle one and the exceptions to it,
/// if it is one of integers and mostly that one.
fn encode_constant(col: &[f64], out: &mut Vec<u8>) -> bool {
    let Some(&mid) = col.get(col.len() / 2) else {
        return false;
    };
    let ints: Option<Vec<i64>> = col.iter().map(|&v| mantissa(v, 0)).collect();
    let (Some(ints), Some(mode)) = (ints, mantissa(mid, 0)) else {
        return false;
    };
    let differ = ints.iter().filter(|&&m| m != mode).count();
    if differ * 8 > col.len() {
        return false;
    }
    out.push(CONSTANT);
    put_varint(out, mode);
    put_uvarint(out, differ as u64);
    let mut prev = 0usize;
    for (i, &m) in ints.iter().enumerate() {
        if m != mode {
            put_uvarint(out, (i - prev) as u64);
            put_varint(out, m.wrapping_sub(mode));
            prev = i;
        }
    }
    true
}

/// Reads a column written by [`encode_constant`] at `*pos` (its marker) of
/// `n` buckets, handing each integer to `emit` in order.
fn get_constant(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    mut emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    *pos += 1;
    let mode = get_varint(buf, pos)?;
    let k = get_uvarint(buf, pos)?;
    let mut i = 0usize;
    let mut at = 0usize;
    for j in 0..k {
        at = at.saturating_add(get_uvarint(buf, pos)? as usize);
        if at >= n || (j > 0 && at == i - 1) {
            return Err(DecodeError("rollup exception index out of range"));
        }
        let m = mode.wrapping_add(get_varint(buf, pos)?);
        (i..at).for_each(|_| emit(mode));
        emit(m);
        i = at + 1;
    }
    (i..n).for_each(|_| emit(mode));
    Ok(())
}

/// Writes `col` as mantissas less prediction `p`, if there is a scale at
/// which every column the prediction reads is exact and every value near
/// a mantissa.
fn encode_predicted(col: &[f64], p: u8, basis: Basis<'_, f64>, out: &mut Vec<u8>) -> bool {
    let refs: [&[f64]; 4] = match (p & !HOURLY, basis.spread) {
        (BY_MID, Some([count, min, max])) => [&[], count, min, max],
        (BY_MID, None) => return false,
        (BY_ZERO, _) => [&[]; 4],
        _ => [basis.last, &[], &[], &[]],
    };
    let n = col.len();
    if n == 0 || refs.iter().any(|r| !r.is_empty() && r.len() != n) {
        return false;
    }
    let hours = match (p & HOURLY != 0, basis.hours) {
        (false, _) => None,
        (true, Some(h)) if h.ends.len() == n => Some(h),
        (true, _) => return false,
    };
    if !refs[COUNT].iter().all(|&c| mantissa(c, 0).is_some()) {
        return false;
    }
    let exact_at = |s: usize| -> Option<[Vec<i64>; 4]> {
        let mut ms: [Vec<i64>; 4] = Default::default();
        for (i, r) in refs.iter().enumerate() {
            let at = if i == COUNT { 0 } else { s };
            ms[i] = r.iter().map(|&v| mantissa(v, at)).collect::<Option<_>>()?;
        }
        col.iter()
            .all(|&v| near_mantissa(v, s).is_some())
            .then_some(ms)
    };
    let Some((scale, ms)) = (0..=MAX_SCALE).find_map(|s| exact_at(s).map(|m| (s, m))) else {
        return false;
    };
    let mut res = Vec::with_capacity(n);
    let mut ulps = Vec::with_capacity(n);
    for (k, &v) in col.iter().enumerate() {
        let (m, u) = near_mantissa(v, scale).expect("scale checked");
        res.push(m.wrapping_sub(prediction(p, k, |c, i| ms[c][i])));
        ulps.push(u);
    }
    let base = p & !HOURLY;
    // For a min or max with hours: which buckets hold their hour's value,
    // and their places in their hours.
    let mut at_hour = Vec::new();
    let mut places = Vec::new();
    if let Some(h) = hours.filter(|_| is_extreme(base)) {
        at_hour.resize(n, false);
        let (mut vals, mut start) = (h.values.iter(), 0);
        for k in 0..n {
            if h.ends[k] {
                let Some(v) = vals.next() else {
                    return false;
                };
                let Some(i) = (start..=k).find(|&i| col[i].to_bits() == v.to_bits()) else {
                    return false;
                };
                places.push((i - start) as i64);
                at_hour[i] = true;
                start = k + 1;
            }
        }
        if vals.next().is_some() || start != n {
            return false;
        }
        let mut k = 0;
        res.retain(|_| {
            k += 1;
            !at_hour[k - 1]
        });
        if res.is_empty() {
            return false;
        }
    } else if let Some(h) = hours {
        // Each hour's sum is the sum of its buckets' mantissas: the last
        // bucket of each needs no residual.
        let mut sums = h.values.iter();
        let mut acc = 0i64;
        for (k, &v) in col.iter().enumerate() {
            acc = acc.wrapping_add(near_mantissa(v, scale).expect("scale checked").0);
            if h.ends[k] {
                let hour = sums.next().and_then(|&s| mantissa(s, scale));
                if hour != Some(acc) {
                    return false;
                }
                acc = 0;
            }
        }
        if sums.next().is_some() {
            return false;
        }
        let mut k = 0;
        res.retain(|_| {
            k += 1;
            !h.ends[k - 1]
        });
        if res.is_empty() {
            return false;
        }
    }
    let with_ulps = ulps.iter().any(|&u| u != 0);
    // The buckets flagged equal to their last, and the residuals left.
    let mut flags = BitWriter::new();
    let mut kept = Vec::with_capacity(n);
    if base == BY_LAST_FLAGGED {
        let others = col
            .iter()
            .zip(basis.last)
            .enumerate()
            .filter(|(k, _)| !at_hour.get(*k).is_some_and(|&a| a));
        for ((_, (c, l)), &r) in others.zip(&res) {
            let same = c.to_bits() == l.to_bits();
            flags.write_bit(same);
            if !same {
                kept.push(r);
            }
        }
    } else {
        kept = res;
    }
    if kept.is_empty() {
        return false;
    }
    // Tests write the form before block layout 4, which is still read.
    #[cfg(test)]
    let old = tests::OLD_FORM.get();
    #[cfg(not(test))]
    let old = false;
    if old {
        out.extend_from_slice(&[PREDICTED, p, scale as u8]);
        if !places.is_empty() {
            put_ints(&places, out);
        }
        if base == BY_LAST_FLAGGED {
            put_stream(out, &flags);
        }
        put_ints(&kept, out);
        out.push(u8::from(with_ulps));
    } else {
        let (order, stream) = best_pack(&kept);
        out.push(PREDICTED_IN | p | if with_ulps { WITH_ULPS } else { 0 });
        out.push((scale as u8) << 4 | order);
        if !places.is_empty() {
            put_ints(&places, out);
        }
        if base == BY_LAST_FLAGGED {
            out.extend_from_slice(flags.bytes());
        }
        put_ints_in(kept[0], &stream, !with_ulps, out);
    }
    if with_ulps {
        put_stream(out, &pack(&ulps));
    }
    true
}

/// Reads the mantissas of a predicted column of `n` buckets with predictor
/// `p` (the prediction of bucket `k` is `pred(k)`), given for an
/// [`HOURLY`] one which buckets end their hour and the hours' sums as
/// mantissas, handing each bucket's to `emit`.
fn get_mantissas(
    buf: &[u8],
    pos: &mut usize,
    (p, ints): (u8, Ints),
    n: usize,
    pred: impl Fn(usize) -> i64,
    hours: Option<Hours<'_, i64>>,
    mut emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    let Some(h) = hours.filter(|_| p & HOURLY != 0) else {
        let mut k = 0;
        return get_residuals(buf, pos, (p, ints), n, |r| {
            emit(r.wrapping_add(pred(k)));
            k += 1;
        });
    };
    if h.ends.len() != n {
        return Err(DecodeError("rollup column and its hours differ"));
    }
    const SHORT: DecodeError = DecodeError("rollup column's hours end early");
    if is_extreme(p & !HOURLY) {
        // Each hour's place of its value, then the others' residuals.
        let hours = h.ends.iter().filter(|&&e| e).count();
        if h.values.len() != hours || hours >= n {
            return Err(DecodeError("rollup column and its hours differ"));
        }
        let mut at = Vec::with_capacity(hours);
        let mut start = 0usize;
        get_ints(buf, pos, hours, |q| at.push(q))?;
        let mut next = at.iter_mut();
        for (k, _) in h.ends.iter().enumerate().filter(|(_, e)| **e) {
            let q = next.next().ok_or(SHORT)?;
            let i = usize::try_from(*q)
                .ok()
                .and_then(|q| start.checked_add(q))
                .filter(|&i| i <= k)
                .ok_or(DecodeError("rollup hour's place out of its hour"))?;
            *q = i as i64;
            start = k + 1;
        }
        let mut res = Vec::with_capacity(n - hours);
        get_residuals(buf, pos, (p & !HOURLY, ints), n - hours, |r| res.push(r))?;
        let (mut res, mut at, mut vals) =
            (res.into_iter(), at.into_iter().peekable(), h.values.iter());
        for k in 0..n {
            if at.next_if_eq(&(k as i64)).is_some() {
                emit(*vals.next().ok_or(SHORT)?);
            } else {
                emit(res.next().ok_or(SHORT)?.wrapping_add(pred(k)));
            }
        }
        return Ok(());
    }
    let kept = h.ends.iter().filter(|&&e| !e).count();
    let mut res = Vec::with_capacity(kept);
    ints.get(buf, pos, kept, |r| res.push(r))?;
    let (mut res, mut sums) = (res.into_iter(), h.values.iter());
    let mut acc = 0i64;
    for (k, &end) in h.ends.iter().enumerate() {
        let m = if end {
            let m = sums.next().ok_or(SHORT)?.wrapping_sub(acc);
            acc = 0;
            m
        } else {
            let m = res.next().ok_or(SHORT)?.wrapping_add(pred(k));
            acc = acc.wrapping_add(m);
            m
        };
        emit(m);
    }
    Ok(())
}

/// Reads the residuals of a predicted column of `n` buckets with predictor
/// `p`, handing each bucket's to `emit` (0 for a bucket flagged equal to
/// its last).
fn get_residuals(
    buf: &[u8],
    pos: &mut usize,
    (p, ints): (u8, Ints),
    n: usize,
    mut emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if p != BY_LAST_FLAGGED {
        return ints.get(buf, pos, n, emit);
    }
    let flags = ints.flags(buf, pos, n)?;
    let flagged = |i: usize| flags[i >> 3] >> (7 - (i & 7)) & 1 == 1;
    // The buckets flagged (the padding of the last byte not counted).
    let pad = (8 - n % 8) % 8;
    let padding = flags
        .last()
        .map_or(0, |&b| (b & ((1u16 << pad) - 1) as u8).count_ones());
    let ones = flags.iter().map(|b| b.count_ones()).sum::<u32>() - padding;
    let ones = ones as usize;
    // Each residual after the flagged buckets before it; flagged buckets
    // take 0 (their last).
    let mut i = 0;
    ints.get(buf, pos, n - ones, |x| {
        while i < n && flagged(i) {
            emit(0);
            i += 1;
        }
        emit(x);
        i += 1;
    })?;
    while i < n {
        emit(0);
        i += 1;
    }
    Ok(())
}

/// Reads the header of a predicted column at `*pos` (its marker byte) of
/// `n` buckets with `basis`.
fn predicted_header<T>(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    basis: &Basis<'_, T>,
) -> Result<(u8, usize, Ints), DecodeError> {
    let marker = get_u8(buf, pos)?;
    let (p, scale, ints) = if marker == PREDICTED {
        let p = get_u8(buf, pos)?;
        let ints = Ints {
            order: None,
            ulps: false,
        };
        (p, get_u8(buf, pos)? as usize, ints)
    } else {
        let head = get_u8(buf, pos)?;
        let ulps = marker & WITH_ULPS != 0;
        let order = head & 0x0f;
        if !valid_order(order) {
            return Err(DecodeError("bad predicted rollup column header"));
        }
        let ints = Ints {
            order: Some(order),
            ulps,
        };
        (marker & 0x1f, (head >> 4) as usize, ints)
    };
    let hourly = p & HOURLY != 0;
    let base = p & !HOURLY;
    if base > BY_ZERO || scale > MAX_SCALE {
        return Err(DecodeError("bad predicted rollup column header"));
    }
    if hourly && basis.hours.as_ref().is_none_or(|h| h.ends.len() != n) {
        return Err(DecodeError(
            "rollup sum derived from its hours read without them",
        ));
    }
    let have = match (base, basis.spread) {
        (BY_MID, Some(s)) => s.iter().all(|c| c.len() == n),
        (BY_MID, None) => {
            return Err(DecodeError(
                "rollup sum predicted by min and max read without them",
            ));
        }
        (BY_ZERO, _) => true,
        _ => basis.last.len() == n,
    };
    if !have {
        return Err(DecodeError(
            "predicted rollup column and its buckets differ",
        ));
    }
    Ok((p, scale, ints))
}

/// Reads a column written by [`encode_column`] for buckets with `basis`.
pub(crate) fn decode_column(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    basis: Basis<'_, f64>,
    out: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let last = basis.last;
    match buf.get(*pos) {
        Some(&LIKE_LAST) => {
            let start = out.len();
            out.extend_from_slice(last);
            like_last_exceptions(buf, pos, n, last.len(), |i, v| out[start + i] = v)
        }
        Some(&CONSTANT) => get_constant(buf, pos, n, |m| out.push(m as f64)),
        Some(&m) if m == PREDICTED || m & PREDICTED_IN == PREDICTED_IN => {
            let (p, scale, ints) = predicted_header(buf, pos, n, &basis)?;
            let ps = POW10[scale];
            let cols = basis.spread.unwrap_or([&[]; 3]);
            let m = |c: usize, i: usize| match c {
                LAST => rounded(last[i] * ps) as i64,
                COUNT => cols[0][i] as i64,
                _ => rounded(cols[c - 1][i] * ps) as i64,
            };
            let start = out.len();
            out.reserve(n);
            // An hour's sum is exact at the scale; an hour's min or max is
            // a bucket's, its ULPs among the column's.
            let extreme = is_extreme(p & !HOURLY);
            let hourly: Vec<i64> = match basis.hours.filter(|_| p & HOURLY != 0) {
                Some(h) => h
                    .values
                    .iter()
                    .map(|&v| match extreme {
                        true => near_mantissa(v, scale).map(|(m, _)| m),
                        false => mantissa(v, scale),
                    })
                    .collect::<Option<_>>()
                    .ok_or(DecodeError("rollup hour's value not at its column's scale"))?,
                None => Vec::new(),
            };
            let hours = basis.hours.map(|h| Hours {
                ends: h.ends,
                values: &hourly[..],
            });
            get_mantissas(
                buf,
                pos,
                (p, ints),
                n,
                |k| prediction(p, k, m),
                hours,
                |x| out.push(from_mantissa(x, scale)),
            )?;
            if ints.has_ulps(buf, pos)? {
                let mut ulps = Vec::with_capacity(n);
                unpack(&mut get_stream(buf, pos)?, n, &mut ulps)?;
                for (v, u) in out[start..].iter_mut().zip(ulps) {
                    *v = f64::from_bits((v.to_bits() as i64).wrapping_add(u) as u64);
                }
            }
            Ok(())
        }
        _ => decode_values(buf, pos, n, out),
    }
}

/// Reads a column written by [`encode_column`] as mantissas at `scale`
/// (see [`decode_mantissas`]), for buckets whose last are the mantissas
/// `basis.last` at `last_scale` (not below `scale`) and whose min and max,
/// if given, are mantissas at `scale`.
pub(crate) fn decode_column_mantissas(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    (scale, last_scale): (usize, usize),
    basis: Basis<'_, i64>,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    let last = basis.last;
    match buf.get(*pos) {
        Some(&LIKE_LAST) => {
            let start = out.len();
            if scale == last_scale {
                out.extend_from_slice(last);
            } else {
                // Where the column is its bucket's last, the last is a whole
                // multiple of the scales' ratio.
                let ratio = (POW10[last_scale.saturating_sub(scale)] as i64).max(1);
                out.extend(last.iter().map(|&m| m / ratio));
            }
            let p = POW10[scale];
            like_last_exceptions(buf, pos, n, last.len(), |i, v| {
                out[start + i] = rounded(v * p) as i64
            })
        }
        Some(&CONSTANT) => {
            let p = POW10[scale];
            get_constant(buf, pos, n, |m| out.push(rounded(m as f64 * p) as i64))
        }
        Some(&m) if m == PREDICTED || m & PREDICTED_IN == PREDICTED_IN => {
            let start = *pos;
            let (p, s, ints) = predicted_header(buf, pos, n, &basis)?;
            if s == scale && s == last_scale {
                // The stored mantissas are the nearest ones: ULPs do not
                // move them.
                let cols = basis.spread.unwrap_or([&[]; 3]);
                let m = |c: usize, i: usize| match c {
                    LAST => last[i],
                    _ => cols[c - 1][i],
                };
                out.reserve(n);
                let pred = |k| prediction(p, k, m);
                get_mantissas(buf, pos, (p, ints), n, pred, basis.hours, |x| out.push(x))?;
                if ints.has_ulps(buf, pos)? {
                    get_stream(buf, pos)?;
                }
                return Ok(());
            }
            // Another scale: through the values.
            *pos = start;
            let lastf: Vec<f64> = last.iter().map(|&m| from_mantissa(m, last_scale)).collect();
            let spread: Option<[Vec<f64>; 3]> = basis.spread.map(|[c, lo, hi]| {
                [
                    c.iter().map(|&m| m as f64).collect(),
                    lo.iter().map(|&m| from_mantissa(m, scale)).collect(),
                    hi.iter().map(|&m| from_mantissa(m, scale)).collect(),
                ]
            });
            let sums: Option<Vec<f64>> = basis
                .hours
                .as_ref()
                .map(|h| h.values.iter().map(|&m| from_mantissa(m, scale)).collect());
            let fb = Basis {
                last: &lastf,
                spread: spread
                    .as_ref()
                    .map(|[c, lo, hi]| [&c[..], &lo[..], &hi[..]]),
                hours: basis.hours.as_ref().zip(sums.as_ref()).map(|(h, s)| Hours {
                    ends: h.ends,
                    values: &s[..],
                }),
            };
            let mut vals = Vec::with_capacity(n);
            decode_column(buf, pos, n, fb, &mut vals)?;
            let ps = POW10[scale];
            out.extend(vals.iter().map(|&v| rounded(v * ps) as i64));
            Ok(())
        }
        _ => decode_mantissas(buf, pos, n, scale, out),
    }
}

/// Reads the exceptions of a "like last" column at `*pos` (its marker
/// byte) for `n` buckets, `have` of them in `last`, handing each to `set`
/// with its index.
fn like_last_exceptions(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    have: usize,
    mut set: impl FnMut(usize, f64),
) -> Result<(), DecodeError> {
    *pos += 1;
    if have != n {
        return Err(DecodeError("rollup column and labels differ in length"));
    }
    let k = get_uvarint(buf, pos)?;
    let mut i = 0usize;
    for _ in 0..k {
        i = i.saturating_add(get_uvarint(buf, pos)? as usize);
        let bytes = buf
            .get(*pos..*pos + 8)
            .ok_or(DecodeError("rollup exception past end"))?;
        *pos += 8;
        if i >= n {
            return Err(DecodeError("rollup exception index out of range"));
        }
        set(
            i,
            f64::from_bits(u64::from_le_bytes(bytes.try_into().expect("8 bytes"))),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::put_uvarint;
    use proptest::prelude::*;

    #[test]
    fn columns_like_last_keep_their_exceptions() {
        let last: Vec<f64> = (0..100).map(f64::from).collect();
        let mut max = last.clone();
        max[3] = 99.5;
        max[97] = f64::NAN;
        let mut buf = Vec::new();
        encode_column(&max, &[], Basis::last(&last), &mut buf);
        assert_eq!(buf[0], LIKE_LAST);
        assert!(buf.len() < 24, "{} bytes", buf.len());
        let (mut out, mut pos) = (Vec::new(), 0);
        decode_column(&buf, &mut pos, 100, Basis::last(&last), &mut out).unwrap();
        assert_eq!(pos, buf.len());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&max));
        // An index past the column is corruption, not a panic.
        let mut bad = vec![LIKE_LAST];
        put_uvarint(&mut bad, 1);
        put_uvarint(&mut bad, 100);
        bad.extend_from_slice(&1f64.to_bits().to_le_bytes());
        let mut pos = 0;
        assert!(decode_column(&bad, &mut pos, 100, Basis::last(&last), &mut Vec::new()).is_err());
        // Columns unlike last are plain value blocks.
        let mut buf = Vec::new();
        let other: Vec<f64> = last.iter().map(|v| v * 3.0).collect();
        encode_column(&other, &[], Basis::last(&last), &mut buf);
        assert_ne!(buf[0], LIKE_LAST);
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn counts_full_but_at_the_edges_take_a_few_bytes() {
        for n in [24usize, 288, 2016] {
            let mut count = vec![5.0; n];
            count[0] = 1.0;
            count[n - 1] = 4.0;
            let last: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let mut buf = Vec::new();
            encode_column(&count, &[], Basis::last(&last), &mut buf);
            assert_eq!(buf[0], CONSTANT);
            assert!(buf.len() <= 8, "{n}: {} bytes", buf.len());
            let (mut out, mut pos) = (Vec::new(), 0);
            decode_column(&buf, &mut pos, n, Basis::last(&last), &mut out).unwrap();
            assert_eq!((pos, bits(&out)), (buf.len(), bits(&count)));
            let mut ms = Vec::new();
            let lm: Vec<i64> = (0..n as i64).collect();
            decode_column_mantissas(&buf, &mut 0, n, (0, 0), Basis::last(&lm), &mut ms).unwrap();
            assert_eq!(ms, count.iter().map(|&c| c as i64).collect::<Vec<_>>());
            // Exceptions out of order or past the end are corruption.
            for bad in [
                [CONSTANT, 10, 2, 3, 2, 0, 2],
                [CONSTANT, 10, 1, 0xff, 0x7f, 2, 0],
            ] {
                assert!(
                    decode_column(&bad, &mut 0, n, Basis::last(&last), &mut Vec::new()).is_err()
                );
            }
        }
    }

    /// Buckets of 5 one-minute samples of a noisy two-decimal gauge and of
    /// a counter: count, sum, min, max and last (sums as exact decimals).
    fn buckets(counter: bool) -> [Vec<f64>; 5] {
        let mut x = 7u64;
        let mut total = 1000i64;
        let mut cols: [Vec<f64>; 5] = Default::default();
        for _ in 0..300 {
            let cell: Vec<i64> = (0..5)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if counter {
                        total += 200 + (x % 80) as i64;
                        total
                    } else {
                        4000 + (x % 400) as i64
                    }
                })
                .collect();
            let v = |m: i64| if counter { m as f64 } else { m as f64 / 100.0 };
            cols[0].push(5.0);
            cols[1].push(v(cell.iter().sum()));
            cols[2].push(v(*cell.iter().min().unwrap()));
            cols[3].push(v(*cell.iter().max().unwrap()));
            cols[4].push(v(cell[4]));
        }
        cols
    }

    /// A column of `n` buckets written with its hours (`basis`): read
    /// without them, or with one hour too few, an error; damaged anywhere,
    /// never a panic.
    fn needs_its_hours(buf: &[u8], n: usize, basis: Basis<'_, f64>) {
        let mut got = Vec::new();
        let without = Basis {
            hours: None,
            ..basis
        };
        assert!(decode_column(buf, &mut 0, n, without, &mut got).is_err());
        let short = Basis {
            hours: basis.hours.map(|h| Hours {
                ends: h.ends,
                values: &h.values[1..],
            }),
            ..basis
        };
        assert!(decode_column(buf, &mut 0, n, short, &mut got).is_err());
        for i in 0..buf.len() * 8 {
            let mut bad = buf.to_vec();
            bad[i / 8] ^= 0x80 >> (i % 8);
            got.clear();
            let _ = decode_column(&bad, &mut 0, n, basis, &mut got);
        }
    }

    #[test]
    fn hourly_sums_take_their_hours_and_round_trip() {
        for counter in [false, true] {
            let [count, sum, min, max, last] = buckets(counter);
            let scale = if counter { 0 } else { 2 };
            let m = |v: f64| mantissa(v, scale).unwrap();
            // Hours of 12 buckets, the last one short.
            let ends: Vec<bool> = (0..sum.len())
                .map(|k| k % 12 == 11 || k == sum.len() - 1)
                .collect();
            let mut sums = Vec::new();
            let mut acc = 0i64;
            for (k, &v) in sum.iter().enumerate() {
                acc += m(v);
                if ends[k] {
                    sums.push(from_mantissa(acc, scale));
                    acc = 0;
                }
            }
            let hours = Some(Hours {
                ends: &ends[..],
                values: &sums[..],
            });
            let basis = Basis {
                last: &last[..],
                spread: Some([&count[..], &min[..], &max[..]]),
                hours,
            };
            for p in [BY_MID | HOURLY, BY_ZERO | HOURLY] {
                let mut hourly = Vec::new();
                assert!(encode_predicted(&sum, p, basis, &mut hourly));
                let mut plain = Vec::new();
                assert!(encode_predicted(&sum, p & !HOURLY, basis, &mut plain));
                // A residual fewer an hour. (A counter's sums, plain, are
                // packed as deltas, which skipping buckets widens: there the
                // plain form stays the smaller, and is the one chosen.)
                if p == BY_MID | HOURLY || !counter {
                    assert!(
                        hourly.len() < plain.len(),
                        "{} {}",
                        hourly.len(),
                        plain.len()
                    );
                }
                assert!(is_hourly(&hourly) && !is_hourly(&plain));
                let mut got = Vec::new();
                decode_column(&hourly, &mut 0, sum.len(), basis, &mut got).unwrap();
                assert_eq!(got, sum);
                let ms = |c: &[f64]| -> Vec<i64> { c.iter().map(|&v| m(v)).collect() };
                let counts: Vec<i64> = count.iter().map(|&c| c as i64).collect();
                let (lm, lo, hi, hs) = (ms(&last), ms(&min), ms(&max), ms(&sums));
                let mb = Basis {
                    last: &lm[..],
                    spread: Some([&counts[..], &lo[..], &hi[..]]),
                    hours: Some(Hours {
                        ends: &ends[..],
                        values: &hs[..],
                    }),
                };
                let mut got = Vec::new();
                decode_column_mantissas(&hourly, &mut 0, sum.len(), (scale, scale), mb, &mut got)
                    .unwrap();
                assert_eq!(got, ms(&sum));
                needs_its_hours(&hourly, sum.len(), basis);
            }
            // Hours whose sums are not their buckets': not coded hourly.
            let mut off = sums.clone();
            off[3] += 1.0;
            let wrong = Basis {
                hours: Some(Hours {
                    ends: &ends[..],
                    values: &off[..],
                }),
                ..basis
            };
            assert!(!encode_predicted(
                &sum,
                BY_ZERO | HOURLY,
                wrong,
                &mut Vec::new()
            ));
        }
    }

    #[test]
    fn hourly_extremes_take_their_hours_and_round_trip() {
        for counter in [false, true] {
            let [_, _, min, max, last] = buckets(counter);
            let scale = if counter { 0 } else { 2 };
            let m = |v: f64| mantissa(v, scale).unwrap();
            let ms = |c: &[f64]| -> Vec<i64> { c.iter().map(|&v| m(v)).collect() };
            // Hours of 12 buckets, the last one short.
            let ends: Vec<bool> = (0..min.len())
                .map(|k| k % 12 == 11 || k == min.len() - 1)
                .collect();
            for (col, lowest) in [(&min, true), (&max, false)] {
                let mut hour_values = Vec::new();
                let mut start = 0;
                for k in 0..col.len() {
                    if ends[k] {
                        let run = col[start..=k].iter().copied();
                        hour_values.push(if lowest {
                            run.fold(f64::INFINITY, f64::min)
                        } else {
                            run.fold(f64::NEG_INFINITY, f64::max)
                        });
                        start = k + 1;
                    }
                }
                let basis = Basis {
                    hours: Some(Hours {
                        ends: &ends[..],
                        values: &hour_values[..],
                    }),
                    ..Basis::last(&last[..])
                };
                for p in [BY_LAST, BY_LAST_BEFORE, BY_LAST_FLAGGED] {
                    let mut hourly = Vec::new();
                    let mut plain = Vec::new();
                    // A counter's max is its last: nothing left to code.
                    if !encode_predicted(col, p | HOURLY, basis, &mut hourly) {
                        assert!(counter && !lowest && p == BY_LAST_FLAGGED);
                        continue;
                    }
                    assert!(encode_predicted(col, p, basis, &mut plain));
                    // A residual fewer an hour, for a place in it.
                    if p == BY_LAST_BEFORE && counter && lowest {
                        assert!(
                            hourly.len() < plain.len(),
                            "{} {}",
                            hourly.len(),
                            plain.len()
                        );
                    }
                    assert!(is_hourly(&hourly));
                    let mut got = Vec::new();
                    decode_column(&hourly, &mut 0, col.len(), basis, &mut got).unwrap();
                    assert_eq!(bits(&got), bits(col), "p {p} counter {counter}");
                    let (lm, hv) = (ms(&last), ms(&hour_values));
                    let mb = Basis {
                        hours: Some(Hours {
                            ends: &ends[..],
                            values: &hv[..],
                        }),
                        ..Basis::last(&lm[..])
                    };
                    let mut got_ms = Vec::new();
                    decode_column_mantissas(
                        &hourly,
                        &mut 0,
                        col.len(),
                        (scale, scale),
                        mb,
                        &mut got_ms,
                    )
                    .unwrap();
                    assert_eq!(got_ms, ms(col));
                    needs_its_hours(&hourly, col.len(), basis);
                }
                // Hour values no bucket holds: not coded hourly.
                let mut off = hour_values.clone();
                off[3] -= 1.0;
                let wrong = Basis {
                    hours: Some(Hours {
                        ends: &ends[..],
                        values: &off[..],
                    }),
                    ..basis
                };
                assert!(!encode_predicted(
                    col,
                    BY_LAST | HOURLY,
                    wrong,
                    &mut Vec::new()
                ));
            }
        }
    }

    #[test]
    fn hours_end_where_the_next_bucket_is_in_another_hour() {
        let h = 3_600_000;
        let labels = [h - 300_000, h, h + 300_000, 3 * h, 3 * h + 300_000, 7 * h];
        let mut ends = Vec::new();
        hour_ends(&labels, &mut ends);
        // 3h closes the hour (2h, 3h]; 3h + 5m opens the next.
        assert_eq!(ends, [false, true, true, true, true, true]);
        hour_ends(&[], &mut ends);
        assert!(ends.is_empty());
    }

    #[test]
    fn predictions_shrink_sums_and_extremes_and_round_trip() {
        let mut old_predicted = 0;
        for counter in [false, true] {
            let [count, sum, min, max, last] = buckets(counter);
            let by_last = Basis::last(&last[..]);
            let spread = Basis {
                last: &last[..],
                spread: Some([&count[..], &min[..], &max[..]]),
                hours: None,
            };
            for (col, preds, basis) in [
                (&sum, &[BY_MID][..], spread),
                (
                    &min,
                    &[BY_LAST, BY_LAST_BEFORE, BY_LAST_FLAGGED][..],
                    by_last,
                ),
                (
                    &max,
                    &[BY_LAST, BY_LAST_BEFORE, BY_LAST_FLAGGED][..],
                    by_last,
                ),
            ] {
                let mut plain = Vec::new();
                encode_column(col, &[], basis, &mut plain);
                let mut buf = Vec::new();
                encode_column(col, preds, basis, &mut buf);
                assert!(buf.len() <= plain.len());
                // A counter's min wanders with the counter; against the last
                // before only the spread inside a bucket is left. Its sum is
                // near its count times its mid-range.
                if counter && (col == &min || col == &sum) {
                    assert_eq!(buf[0] & PREDICTED_IN, PREDICTED_IN);
                    assert!(buf.len() < plain.len(), "{} vs {}", buf.len(), plain.len());
                }
                // A gauge's last is its min in one bucket of five: flagged,
                // those buckets cost a bit each.
                if !counter && col == &min {
                    let (mut by, mut flagged) = (Vec::new(), Vec::new());
                    assert!(encode_predicted(col, BY_LAST, basis, &mut by));
                    assert!(encode_predicted(col, BY_LAST_FLAGGED, basis, &mut flagged));
                    assert!(
                        flagged.len() < by.len(),
                        "{} vs {}",
                        flagged.len(),
                        by.len()
                    );
                    let mut out = Vec::new();
                    decode_column(&flagged, &mut 0, col.len(), basis, &mut out).unwrap();
                    assert_eq!(bits(&out), bits(col));
                }
                let (mut out, mut pos) = (Vec::new(), 0);
                decode_column(&buf, &mut pos, col.len(), basis, &mut out).unwrap();
                assert_eq!(pos, buf.len());
                assert_eq!(bits(&out), bits(col));
                // The form before block layout 4 (marker, predictor and a
                // byte for the ULPs) reads the same.
                OLD_FORM.set(true);
                let mut old = Vec::new();
                encode_column(col, preds, basis, &mut old);
                OLD_FORM.set(false);
                if full_predictor(&old).is_some() {
                    assert_eq!(old[0], PREDICTED);
                    assert!(old.len() > buf.len(), "{} vs {}", old.len(), buf.len());
                    old_predicted += 1;
                }
                let (mut out_old, mut pos) = (Vec::new(), 0);
                decode_column(&old, &mut pos, col.len(), basis, &mut out_old).unwrap();
                assert_eq!(pos, old.len());
                assert_eq!(bits(&out_old), bits(col));
                // As mantissas at the lasts' own scale, straight or not.
                let scale = if counter { 0 } else { 2 };
                for want in [scale, scale + 1] {
                    let p = POW10[want];
                    let at = |c: &[f64], p: f64| -> Vec<i64> {
                        c.iter().map(|&v| rounded(v * p) as i64).collect()
                    };
                    let (lm, cm, lo, hi) =
                        (at(&last, p), at(&count, 1.0), at(&min, p), at(&max, p));
                    let mb = Basis {
                        last: &lm[..],
                        spread: basis.spread.map(|_| [&cm[..], &lo[..], &hi[..]]),
                        hours: None,
                    };
                    let mut ms = Vec::new();
                    decode_column_mantissas(&buf, &mut 0, col.len(), (want, want), mb, &mut ms)
                        .unwrap();
                    assert_eq!(ms, at(col, p));
                }
                // A sum predicted by min and max is not read without them.
                if predictor(&buf) == Some(BY_MID) {
                    assert!(decode_column(&buf, &mut 0, col.len(), by_last, &mut out).is_err());
                }
            }
        }
        assert!(old_predicted > 0, "the form before layout 4 was read");
    }

    thread_local! {
        /// Whether `encode_predicted` writes the form before block layout 4.
        pub(super) static OLD_FORM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    proptest! {
        /// Any column against any buckets comes back bit for bit, whichever
        /// form wins.
        #[test]
        fn any_column_round_trips(
            rows in proptest::collection::vec(
                (prop_oneof![Just(5.0), 1.0f64..400.0], -1e6f64..1e6, 0u8..6, any::<f64>(), -1e3f64..1e3),
                1..200),
            digits in 0i32..4,
        ) {
            let q = 10f64.powi(digits);
            let dec = |v: f64| (v * q).round() / q;
            let last: Vec<f64> = rows.iter().map(|r| dec(r.1)).collect();
            let count: Vec<f64> = rows.iter().map(|r| r.0.round()).collect();
            let min: Vec<f64> = rows.iter().map(|r| dec(r.1 - r.4.abs())).collect();
            let max: Vec<f64> = rows.iter().map(|r| dec(r.1 + r.4.abs())).collect();
            let col: Vec<f64> = rows.iter().zip(&last).zip(&count).map(|((r, &l), &c)| match r.2 {
                0 => l,
                1 => l + dec(r.1 * 7.0),
                2 => r.3,
                3 => dec(c * r.1 + r.4),
                4 => if r.4 > 900.0 { r.1.round() } else { 5.0 },
                _ => l * r.0.round() + 0.1,
            }).collect();
            let spread = Basis { last: &last[..], spread: Some([&count[..], &min[..], &max[..]]), hours: None };
            // A column of one integer but at a few buckets.
            let mostly: Vec<f64> =
                rows.iter().map(|r| if r.4 > 900.0 { r.1.round() } else { 5.0 }).collect();
            let mut buf = Vec::new();
            encode_column(&mostly, &[], Basis::last(&last[..]), &mut buf);
            let mut out = Vec::new();
            decode_column(&buf, &mut 0, col.len(), Basis::last(&last[..]), &mut out).unwrap();
            prop_assert_eq!(bits(&out), bits(&mostly));
            for (preds, basis) in [
                (&[BY_LAST, BY_LAST_BEFORE][..], Basis::last(&last[..])),
                (&[BY_LAST_BEFORE][..], Basis::last(&last[..])),
                (&[BY_LAST_FLAGGED][..], Basis::last(&last[..])),
                (&[BY_MID][..], spread),
                (&[BY_MID][..], Basis::last(&last[..])),
            ] {
                let mut buf = Vec::new();
                encode_column(&col, preds, basis, &mut buf);
                let mut out = Vec::new();
                decode_column(&buf, &mut 0, col.len(), basis, &mut out).unwrap();
                prop_assert_eq!(bits(&out), bits(&col));
            }
        }
    }
}
