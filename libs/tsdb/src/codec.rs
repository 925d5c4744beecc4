//! Chunk codecs: delta-of-delta timestamps and value encodings (Gorilla XOR,
//! decimal-scaled integers, constants), the appendable head chunk, and the
//! sealed chunk format stored in blocks.
//!
//! Sealed chunk layout (all varints LEB128, `zz` = zigzag):
//! ```text
//! uvarint n | zz first_ts | uvarint ts_bits | ts stream | value block
//!   (n > 1 and ts_bits = 0: a regular run, followed by zz delta instead)
//! value block = 0 Const: u64 bits
//!             | 1 Int:   u8 scale, u8 order, zz m0, uvarint bits, stream
//!             | 2 Xor:   u64 first bits, uvarint bits, stream
//!             | 3 Near:  u8 scale, u8 order, zz m0, uvarint bits, packed stream,
//!                        uvarint bits, packed ULP residuals (order 0)
//!             | 4 Pack:  u8 scale, u8 order, zz m0, uvarint bits, packed stream
//!             | 5 Cells: against the 5m rollup, see `cells` (raw chunks in blocks)
//!             | 7 Pack at the end of a part: u8 scale << 4 | order, zz m0, the
//!                        stream to the end (a rollup's lasts in blocks)
//!             | 6 Hourly: u8 scale << 4 | order, zz m0, a stream of the
//!                        values but those of the buckets that end an hour
//!                        (order 0) to the end of the part (a 5m rollup's
//!                        lasts in blocks: its hours' lasts give those)
//! packed = per block of 32 residuals: 7-bit width W | dod(block min - previous
//!          block min) | 32 x W bits of (residual - block min)
//!          or, where order has bit 4 (RICE) set: 6-bit k | dod(center) |
//!          per residual a Rice code of parameter k of zigzag(residual - center)
//!          (q = z >> k zeros, a one, the low k bits; from q = 16 on, 16
//!          zeros, 6 bits of z's length less one and its bits below the top)
//!          or, where order has bit 8 (SPAN) set: 1-bit escapes | dod(lo) |
//!          dod(hi - lo) | per residual r - lo in a truncated binary code of
//!          hi - lo + 1 (+ 1 with escapes) values; the last, an escape, is
//!          followed by dod(r - lo)
//! ```
//! Timestamps: delta-of-delta in prefix buckets `0`, `10`+7, `110`+9,
//! `1110`+12, `11110`+32, `11111`+64 bits (zigzag, wrapping: any i64 works).
//! Int: every value equals `m / 10^scale` bit-exactly for an integer
//! mantissa `m` (`|m| < 2^53`); Pack writes residuals of order 0 (the
//! mantissas), 1 (deltas) or 2 (delta-of-delta), whichever is smallest, as
//! frame-of-reference bit-packed blocks (a gauge's noise costs its own
//! entropy, a counter's increments their spread), or in a Rice code about
//! their median (residuals bell-shaped or with outliers, such as a
//! latency's spikes) or in a truncated binary code of their span
//! (residuals spread evenly over it), where one of those is a few percent
//! smaller. Int, the older form with
//! an adaptive width per value, is still read. Counters and
//! values parsed from short decimals land here; constants cost nothing per
//! sample. Near: every value is within a few units in the last place of
//! `m / 10^scale` (the float sums and means of short decimals that rollups
//! hold, e.g. `62.300000000000004`): the mantissas as in Int plus each value's
//! distance in ULPs, usually 0 or ±1. Everything else falls back to Gorilla
//! XOR. All encodings are
//! lossless: the f64 bit pattern (NaN payloads, -0.0, ±Inf) survives.

use crate::bits::{BitReader, BitWriter, rice_bits};

/// A codec failure: the bytes do not form a valid chunk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chunk decode failed: {0}")]
pub struct DecodeError(pub &'static str);

const MODE_CONST: u8 = 0;
const MODE_INT: u8 = 1;
const MODE_XOR: u8 = 2;
const MODE_NEAR: u8 = 3;
const MODE_PACK: u8 = 4;
/// Raw values coded against their 5-minute rollup cells (`crate::cells`);
/// only a block's raw chunk holds it, and only the block can decode it.
pub(crate) const MODE_CELLS: u8 = 5;
/// A 5-minute rollup's lasts less those of the buckets that end an hour,
/// which are their hours' lasts (see [`encode_values_hourly`]); only a
/// block's 5-minute rollup holds it, and only the block can decode it.
pub(crate) const MODE_HOURLY: u8 = 6;
/// Pack with its scale and order in one byte and its stream running to the
/// end of the part it is the last of (see [`encode_values_at_end`]).
const MODE_PACK_IN: u8 = 7;
/// Most samples a chunk may declare (a day at 5 ms resolution); a larger
/// count is garbage.
const MAX_REGULAR_RUN: usize = 1 << 24;
/// Residuals per frame-of-reference block.
const PACK_BLOCK: usize = 32;
/// Largest distance in ULPs the Near encoding accepts.
const MAX_NEAR_ULPS: i64 = 1 << 12;
pub(crate) const MAX_SCALE: usize = 9;
pub(crate) const POW10: [f64; MAX_SCALE + 1] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const MAX_MANTISSA: i64 = 1 << 53;

// ---------------------------------------------------------------- varints

/// Appends an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a zigzag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Reads an unsigned varint at `*pos`, advancing it.
pub fn get_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or(DecodeError("varint past end"))?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(DecodeError("varint overflow"));
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(DecodeError("varint overflow"));
        }
    }
}

/// Reads a zigzag varint.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    get_uvarint(buf, pos).map(unzigzag)
}

pub(crate) fn get_u8(buf: &[u8], pos: &mut usize) -> Result<u8, DecodeError> {
    let b = *buf.get(*pos).ok_or(DecodeError("byte past end"))?;
    *pos += 1;
    Ok(b)
}

fn get_u64(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let s = buf.get(*pos..*pos + 8).ok_or(DecodeError("u64 past end"))?;
    *pos += 8;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

pub(crate) fn get_stream<'a>(buf: &'a [u8], pos: &mut usize) -> Result<BitReader<'a>, DecodeError> {
    let bits = get_uvarint(buf, pos)?;
    let nbytes = bits.div_ceil(8) as usize;
    let s = buf
        .get(*pos..*pos + nbytes)
        .ok_or(DecodeError("bit stream past end"))?;
    *pos += nbytes;
    Ok(BitReader::with_len(s, bits))
}

pub(crate) fn put_stream(out: &mut Vec<u8>, w: &BitWriter) {
    put_uvarint(out, w.len_bits());
    out.extend_from_slice(w.bytes());
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

// ---------------------------------------------------------------- timestamps

#[inline]
fn write_dod(w: &mut BitWriter, dod: i64) {
    let u = zigzag(dod);
    if u == 0 {
        w.write_bit(false);
    } else if u < 1 << 7 {
        w.write_bits(0b10, 2);
        w.write_bits(u, 7);
    } else if u < 1 << 9 {
        w.write_bits(0b110, 3);
        w.write_bits(u, 9);
    } else if u < 1 << 12 {
        w.write_bits(0b1110, 4);
        w.write_bits(u, 12);
    } else if u < 1 << 32 {
        w.write_bits(0b11110, 5);
        w.write_bits(u, 32);
    } else {
        w.write_bits(0b11111, 5);
        w.write_bits(u, 64);
    }
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let width = match r.read_unary(5)? {
        0 => return Some(0),
        1 => 7,
        2 => 9,
        3 => 12,
        4 => 32,
        _ => 64,
    };
    r.read_bits(width).map(unzigzag)
}

// ---------------------------------------------------------------- integers

/// Adaptive-width writer for zigzagged residuals: `0` + W bits while the
/// value fits the current width W (and is not much narrower), otherwise `1`
/// + 7-bit new width + the value.
#[derive(Debug, Clone, Copy, Default)]
struct Adaptive {
    width: u8,
}

impl Adaptive {
    #[inline]
    fn write(&mut self, w: &mut BitWriter, u: u64) {
        let need = (64 - u.leading_zeros()) as u8;
        if need <= self.width && need + 5 > self.width {
            w.write_bit(false);
            w.write_bits(u, self.width as u32);
        } else {
            w.write_bit(true);
            w.write_bits(need as u64, 7);
            w.write_bits(u, need as u32);
            self.width = need;
        }
    }

    #[inline]
    fn read(&mut self, r: &mut BitReader<'_>) -> Option<u64> {
        if r.read_bit()? {
            let w = r.read_bits(7)? as u8;
            if w > 64 {
                return None;
            }
            self.width = w;
        }
        r.read_bits(self.width as u32)
    }
}

/// `x` rounded to an integer. Adding and taking away 1.5 * 2^52 does it in
/// two instructions (`f64::round` is a libm call on baseline x86-64); a tie
/// may go to even, but no tie is ever an exact mantissa.
#[inline(always)]
pub(crate) fn rounded(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    if x.abs() < (1u64 << 51) as f64 {
        (x + SHIFT) - SHIFT
    } else {
        x.round()
    }
}

/// The integer `m` nearest to `v * 10^scale`, for finite `v` with `|m| < 2^53`.
#[inline]
pub(crate) fn nearest_mantissa(v: f64, scale: usize) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let m = rounded(v * POW10[scale]);
    (m.abs() < MAX_MANTISSA as f64).then_some(m as i64)
}

/// The mantissa of `v` at `scale` if `v == m / 10^scale` bit-exactly.
#[inline]
pub(crate) fn mantissa(v: f64, scale: usize) -> Option<i64> {
    let m = nearest_mantissa(v, scale)?;
    (from_mantissa(m, scale).to_bits() == v.to_bits()).then_some(m)
}

#[inline]
pub(crate) fn from_mantissa(m: i64, scale: usize) -> f64 {
    if scale == 0 {
        m as f64
    } else {
        m as f64 / POW10[scale]
    }
}

/// The smallest decimal scale at which every value is an exact mantissa.
pub(crate) fn common_scale(vals: &[f64]) -> Option<usize> {
    let mut scale = 0;
    let mut raised_at = 0;
    for (i, &v) in vals.iter().enumerate() {
        loop {
            if mantissa(v, scale).is_some() {
                break;
            }
            scale += 1;
            raised_at = i;
            if scale > MAX_SCALE {
                return None;
            }
        }
    }
    // A value taken at a smaller scale may not be one at the final scale
    // (its mantissa there is too large): check those again.
    vals[..raised_at]
        .iter()
        .all(|&v| mantissa(v, scale).is_some())
        .then_some(scale)
}

/// The smallest scale at which every value is an exact decimal, with the
/// values' mantissas there in `ms` (cleared first), if there is one.
pub(crate) fn decimals(vals: &[f64], ms: &mut Vec<i64>) -> Option<usize> {
    ms.clear();
    let scale = common_scale(vals)?;
    ms.extend(
        vals.iter()
            .map(|&v| mantissa(v, scale).expect("scale checked")),
    );
    Some(scale)
}

/// The mantissa at `scale` nearest to `v` and `v`'s distance from it in ULPs
/// (same sign, finite, within [`MAX_NEAR_ULPS`]).
#[inline]
pub(crate) fn near_mantissa(v: f64, scale: usize) -> Option<(i64, i64)> {
    let m = nearest_mantissa(v, scale)?;
    let p = from_mantissa(m, scale);
    if (p.to_bits() ^ v.to_bits()) >> 63 != 0 {
        return None;
    }
    let ulps = (v.to_bits() as i64).wrapping_sub(p.to_bits() as i64);
    (ulps.abs() <= MAX_NEAR_ULPS).then_some((m, ulps))
}

/// The mantissas and ULP residuals of `vals` at the smallest scale at which
/// every value is near a decimal, if there is one.
fn near_decimals(vals: &[f64]) -> Option<(usize, Vec<i64>, Vec<i64>)> {
    'scale: for scale in 0..=MAX_SCALE {
        let mut ms = Vec::with_capacity(vals.len());
        let mut ulps = Vec::with_capacity(vals.len());
        for &v in vals {
            match near_mantissa(v, scale) {
                Some((m, u)) => {
                    ms.push(m);
                    ulps.push(u);
                }
                None => continue 'scale,
            }
        }
        return Some((scale, ms, ulps));
    }
    None
}

/// Residuals of `ms[1..]` of order 0 (the values), 1 (deltas) or 2
/// (delta-of-delta, the first delta taken against 0).
fn residuals(ms: &[i64], order: u8, out: &mut Vec<i64>) {
    out.clear();
    let mut prev = ms[0];
    let mut prev_delta = 0i64;
    for &m in &ms[1..] {
        let delta = m.wrapping_sub(prev);
        out.push(match order {
            0 => m,
            1 => delta,
            _ => delta.wrapping_sub(prev_delta),
        });
        prev = m;
        prev_delta = delta;
    }
}

/// Bits per value of a packed block whose residuals span `[lo, hi]`.
#[inline]
fn block_width(lo: i64, hi: i64) -> u32 {
    64 - (hi.wrapping_sub(lo) as u64).leading_zeros()
}

/// Bits [`pack`] writes for a block of `n` residuals in `[lo, hi]` after a
/// block whose minimum was `prev_min`.
#[inline]
fn block_bits(lo: i64, hi: i64, prev_min: i64, n: u64) -> u64 {
    7 + dod_bits(lo.wrapping_sub(prev_min)) + u64::from(block_width(lo, hi)) * n
}

/// Frame-of-reference bit packing of `res` in blocks of [`PACK_BLOCK`].
pub(crate) fn pack(res: &[i64]) -> BitWriter {
    let mut w = BitWriter::new();
    let mut prev_min = 0i64;
    for block in res.chunks(PACK_BLOCK) {
        let (mut lo, mut hi) = (block[0], block[0]);
        for &r in block {
            lo = lo.min(r);
            hi = hi.max(r);
        }
        let width = block_width(lo, hi);
        w.write_bits(u64::from(width), 7);
        write_dod(&mut w, lo.wrapping_sub(prev_min));
        prev_min = lo;
        for &r in block {
            w.write_bits(r.wrapping_sub(lo) as u64, width);
        }
    }
    w
}

/// Marks, in the order byte of packed integers, residuals written by
/// [`rice`] rather than by [`pack`].
const RICE: u8 = 4;

/// Rice coding of `res` about `center`: `6-bit k | dod(center)`, then each
/// `zigzag(r - center)` in a Rice code of parameter `k`. Residuals with a
/// few outliers (a latency's spikes) or a bell shape (a sum of increments)
/// cost less so than in blocks as wide as their widest value.
fn rice(res: &[i64], center: i64, k: u32) -> BitWriter {
    let mut w = BitWriter::new();
    w.write_bits(u64::from(k), 6);
    write_dod(&mut w, center);
    for &r in res {
        w.write_rice(zigzag(r.wrapping_sub(center)), k);
    }
    w
}

/// The center (the median) and Rice parameter that code `res` smallest,
/// and the bits [`rice`] then writes.
fn rice_plan(res: &[i64]) -> (i64, u32, u64) {
    if res.is_empty() {
        return (0, 0, u64::MAX);
    }
    let mut sorted = res.to_vec();
    let mid = sorted.len() / 2;
    let center = *sorted.select_nth_unstable(mid).1;
    let mean = res
        .iter()
        .map(|&r| zigzag(r.wrapping_sub(center)) as u128)
        .sum::<u128>()
        / res.len() as u128;
    // The best parameter lies next to log2 of the mean.
    let guess = 127u32.saturating_sub(mean.leading_zeros()).min(62);
    let header = 6 + dod_bits(center);
    (guess.saturating_sub(2)..=(guess + 1).min(62))
        .map(|k| {
            let body: u64 = res
                .iter()
                .map(|&r| rice_bits(zigzag(r.wrapping_sub(center)), k))
                .sum();
            (center, k, header + body)
        })
        .min_by_key(|&(_, _, bits)| bits)
        .expect("a parameter")
}

/// Reads `n` residuals written by [`rice`].
#[inline]
fn unrice_with(r: &mut BitReader<'_>, n: usize, mut f: impl FnMut(i64)) -> Result<(), DecodeError> {
    const EARLY: DecodeError = DecodeError("rice coded residuals end early");
    let k = r.read_bits(6).ok_or(EARLY)? as u32;
    let center = read_dod(r).ok_or(EARLY)?;
    r.read_rices(k, n, |z| f(center.wrapping_add(unzigzag(z))))
        .ok_or(EARLY)
}

/// Marks, in the order byte of packed integers, residuals written by
/// [`spanned`] rather than by [`pack`].
const SPAN: u8 = 8;

/// The largest count of values a [`spanned`] stream's code ranges over.
const MAX_SPAN: u64 = 1 << 62;

/// Truncated binary coding of `res` over the span `[lo, hi]`, with escapes
/// for the values outside it when `escapes`: `1-bit escapes | dod(lo) |
/// dod(hi - lo)`, then each residual `r - lo` in a truncated binary code of
/// the `hi - lo + 1` values of the span, one more meaning an escape that a
/// `dod(r - lo)` follows. Residuals spread evenly over a range (a gauge's
/// or a latency's noise, a counter's increments) cost the log2 of its
/// width, without blocks' headers or their rounding up to whole bits.
fn spanned(res: &[i64], (lo, hi, escapes): (i64, i64, bool)) -> BitWriter {
    let mut w = BitWriter::new();
    w.write_bit(escapes);
    write_dod(&mut w, lo);
    write_dod(&mut w, hi.wrapping_sub(lo));
    let m = hi.wrapping_sub(lo) as u64 + 1 + u64::from(escapes);
    for &r in res {
        if (lo..=hi).contains(&r) {
            w.write_below(r.wrapping_sub(lo) as u64, m);
        } else {
            w.write_below(m - 1, m);
            write_dod(&mut w, r.wrapping_sub(lo));
        }
    }
    w
}

/// Bits of a truncated binary code of `x` among `m` values.
#[inline]
fn below_bits(x: u64, m: u64) -> u64 {
    let k = 63 - m.leading_zeros();
    u64::from(k) + u64::from(x >= (2u64 << k) - m)
}

/// The span (and whether it has escapes) that codes `res` smallest in
/// [`spanned`], and the bits it then writes: the whole range, or the range
/// without a few of the least and greatest values.
fn span_plan(res: &[i64]) -> ((i64, i64, bool), u64) {
    let none = ((0, 0, false), u64::MAX);
    if res.is_empty() {
        return none;
    }
    let mut sorted = res.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let mut best = none;
    let mut cuts = [0, 1, 2, 4, n / 64, n / 32];
    cuts.sort_unstable();
    for (i, &cut) in cuts.iter().enumerate() {
        if cut * 2 >= n || (i > 0 && cuts[i - 1] == cut) {
            continue;
        }
        let (lo, hi) = (sorted[cut], sorted[n - 1 - cut]);
        let escapes = cut > 0;
        let width = hi.wrapping_sub(lo) as u64;
        if hi < lo || width >= MAX_SPAN - 1 {
            continue;
        }
        let m = width + 1 + u64::from(escapes);
        let mut bits = 1 + dod_bits(lo) + dod_bits(hi.wrapping_sub(lo));
        for &r in res {
            bits += if (lo..=hi).contains(&r) {
                below_bits(r.wrapping_sub(lo) as u64, m)
            } else {
                below_bits(m - 1, m) + dod_bits(r.wrapping_sub(lo))
            };
        }
        if bits < best.1 {
            best = ((lo, hi, escapes), bits);
        }
    }
    best
}

/// Reads `n` residuals written by [`spanned`].
#[inline]
fn unspan_with(r: &mut BitReader<'_>, n: usize, mut f: impl FnMut(i64)) -> Result<(), DecodeError> {
    const EARLY: DecodeError = DecodeError("span coded residuals end early");
    let escapes = r.read_bit().ok_or(EARLY)?;
    let lo = read_dod(r).ok_or(EARLY)?;
    let width = read_dod(r).ok_or(EARLY)? as u64;
    if width >= MAX_SPAN - 1 {
        return Err(DecodeError("span of coded residuals too wide"));
    }
    let m = width + 1 + u64::from(escapes);
    let mut left = n;
    while left > 0 {
        let mut escaped = false;
        let read = r
            .read_belows(m, left, |x| {
                escaped = escapes && x == m - 1;
                if !escaped {
                    f(lo.wrapping_add(x as i64));
                }
                !escaped
            })
            .ok_or(EARLY)?;
        left -= read;
        if escaped {
            f(lo.wrapping_add(read_dod(r).ok_or(EARLY)?));
        }
    }
    Ok(())
}

/// Reads `n` residuals written by [`rice`], [`spanned`] or [`pack`], as
/// the flags of `order` say.
#[inline]
fn read_residuals(
    r: &mut BitReader<'_>,
    order: u8,
    n: usize,
    f: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if order & RICE != 0 {
        unrice_with(r, n, f)
    } else if order & SPAN != 0 {
        unspan_with(r, n, f)
    } else {
        unpack_with(r, n, f)
    }
}

/// Codes `res` in the smallest of [`pack`] (which would write
/// `packed_bits`), [`rice`] and [`spanned`]; returns the flag naming the
/// code (0, [`RICE`] or [`SPAN`]) and the stream, which
/// [`read_residuals`] reads. A Rice or a span code is slower to read than
/// blocks: it must save a few in a hundred to be chosen.
fn code_smallest(res: &[i64], packed_bits: u64) -> (u8, BitWriter) {
    if !THOROUGH.get() {
        return (0, pack(res));
    }
    let (center, k, rice_bits) = rice_plan(res);
    let (span, span_bits) = span_plan(res);
    if rice_bits.min(span_bits).saturating_mul(100) >= packed_bits.saturating_mul(97) {
        (0, pack(res))
    } else if rice_bits <= span_bits {
        (RICE, rice(res, center, k))
    } else {
        (SPAN, spanned(res, span))
    }
}

thread_local! {
    /// Whether packed integers are planned in every code or in blocks only
    /// (see [`with_effort`]).
    static THOROUGH: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with packed integers planned in every code (`thorough`), or in
/// frame-of-reference blocks only, which takes a fraction of the time: a
/// partition's fresh blocks, which compaction rewrites within the day, are
/// sealed on the write path.
pub(crate) fn with_effort<R>(thorough: bool, f: impl FnOnce() -> R) -> R {
    let was = THOROUGH.replace(thorough);
    let r = f();
    THOROUGH.set(was);
    r
}

/// Codes `res` as [`code_smallest`] does: the flag naming the code, which
/// fits the bits of [`CODES`], and the stream [`uncode`] reads.
pub(crate) fn code(res: &[i64]) -> (u8, BitWriter) {
    code_smallest(res, pack_bits(res))
}

/// The bits a flag of [`code`] may set.
pub(crate) const CODES: u8 = RICE | SPAN;

/// Reads `n` residuals that [`code`] wrote with the flag `code`.
pub(crate) fn uncode(
    r: &mut BitReader<'_>,
    code: u8,
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    if code & !CODES != 0 || code == CODES {
        return Err(DecodeError("unknown residual code"));
    }
    out.clear();
    out.reserve(n);
    read_residuals(r, code, n, |v| out.push(v))
}

/// Reads `n` residuals written by [`pack`].
pub(crate) fn unpack(
    r: &mut BitReader<'_>,
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    out.clear();
    out.reserve(n);
    unpack_with(r, n, |v| out.push(v))
}

/// Reads `n` residuals written by [`pack`], handing each to `f` in order.
#[inline]
fn unpack_with(r: &mut BitReader<'_>, n: usize, mut f: impl FnMut(i64)) -> Result<(), DecodeError> {
    let mut prev_min = 0i64;
    let mut left = n;
    while left > 0 {
        let take = left.min(PACK_BLOCK);
        let width = r
            .read_bits(7)
            .ok_or(DecodeError("packed block ends early"))? as u32;
        if width > 64 {
            return Err(DecodeError("packed block width over 64"));
        }
        let d = read_dod(r).ok_or(DecodeError("packed block ends early"))?;
        let lo = prev_min.wrapping_add(d);
        prev_min = lo;
        r.read_fields(width, take, |v| f(lo.wrapping_add(v as i64)))
            .ok_or(DecodeError("packed block ends early"))?;
        left -= take;
    }
    Ok(())
}

/// Bits of a `write_dod` of `v`.
#[inline]
fn dod_bits(v: i64) -> u64 {
    match zigzag(v) {
        0 => 1,
        u if u < 1 << 7 => 9,
        u if u < 1 << 9 => 12,
        u if u < 1 << 12 => 16,
        u if u < 1 << 32 => 37,
        _ => 69,
    }
}

/// What [`pack`] of `res` would write, in bits, without writing it (also
/// the reference [`best_pack`]'s one-pass sizing is tested against).
fn pack_bits(res: &[i64]) -> u64 {
    let mut bits = 0u64;
    let mut prev_min = 0i64;
    for block in res.chunks(PACK_BLOCK) {
        let (mut lo, mut hi) = (block[0], block[0]);
        for &r in block {
            lo = lo.min(r);
            hi = hi.max(r);
        }
        bits += block_bits(lo, hi, prev_min, block.len() as u64);
        prev_min = lo;
    }
    bits
}

/// The smallest packing of `ms` over residual orders 0, 1 and 2: the three
/// are sized in one pass (what [`pack_bits`] would say of each), and only
/// the cheapest is written.
pub(crate) fn best_pack(ms: &[i64]) -> (u8, BitWriter) {
    let mut bits = [0u64; 3];
    let mut prev_min = [0i64; 3];
    let (mut lo, mut hi) = ([i64::MAX; 3], [i64::MIN; 3]);
    let mut in_block = 0u64;
    let mut close = |prev_min: &mut [i64; 3], lo: &mut [i64; 3], hi: &mut [i64; 3], n: u64| {
        for o in 0..3 {
            bits[o] += block_bits(lo[o], hi[o], prev_min[o], n);
        }
        *prev_min = *lo;
        (*lo, *hi) = ([i64::MAX; 3], [i64::MIN; 3]);
    };
    let (mut prev, mut prev_delta) = (ms[0], 0i64);
    for &m in &ms[1..] {
        let delta = m.wrapping_sub(prev);
        let r = [m, delta, delta.wrapping_sub(prev_delta)];
        (prev, prev_delta) = (m, delta);
        for o in 0..3 {
            lo[o] = lo[o].min(r[o]);
            hi[o] = hi[o].max(r[o]);
        }
        in_block += 1;
        if in_block == PACK_BLOCK as u64 {
            close(&mut prev_min, &mut lo, &mut hi, in_block);
            in_block = 0;
        }
    }
    if in_block > 0 {
        close(&mut prev_min, &mut lo, &mut hi, in_block);
    }
    let order = (0..3u8)
        .min_by_key(|&o| bits[o as usize])
        .expect("three orders");
    let mut res = Vec::with_capacity(ms.len());
    residuals(ms, order, &mut res);
    let (code, w) = code_smallest(&res, bits[order as usize]);
    (order | code, w)
}

/// The Int stream (adaptive widths) that older blocks hold; only tests write it now.
#[cfg(test)]
fn encode_ints(ms: &[i64], order: u8) -> BitWriter {
    let mut w = BitWriter::new();
    let mut a = Adaptive::default();
    let mut prev = ms[0];
    let mut prev_delta = 0i64;
    for &m in &ms[1..] {
        let delta = m.wrapping_sub(prev);
        let r = if order == 1 {
            delta
        } else {
            delta.wrapping_sub(prev_delta)
        };
        a.write(&mut w, zigzag(r));
        prev = m;
        prev_delta = delta;
    }
    w
}

// ---------------------------------------------------------------- xor

#[derive(Debug, Clone, Copy)]
struct XorState {
    prev: u64,
    lead: u8,
    trail: u8,
}

impl XorState {
    fn new(first: u64) -> Self {
        Self {
            prev: first,
            lead: u8::MAX,
            trail: 0,
        }
    }

    #[inline]
    fn write(&mut self, w: &mut BitWriter, bits: u64) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.lead != u8::MAX && lead >= self.lead && trail >= self.trail {
            w.write_bit(false);
            let len = 64 - self.lead as u32 - self.trail as u32;
            w.write_bits(x >> self.trail, len);
        } else {
            let len = 64 - lead as u32 - trail as u32;
            w.write_bit(true);
            w.write_bits(lead as u64, 5);
            w.write_bits((len & 63) as u64, 6);
            w.write_bits(x >> trail, len);
            self.lead = lead;
            self.trail = trail;
        }
    }

    #[inline]
    fn read(&mut self, r: &mut BitReader<'_>) -> Option<u64> {
        if r.read_bit()? {
            if r.read_bit()? {
                let lead = r.read_bits(5)? as u8;
                let mut len = r.read_bits(6)? as u32;
                if len == 0 {
                    len = 64;
                }
                if lead as u32 + len > 64 {
                    return None;
                }
                self.lead = lead;
                self.trail = (64 - lead as u32 - len) as u8;
            } else if self.lead == u8::MAX {
                return None;
            }
            let len = 64 - self.lead as u32 - self.trail as u32;
            let x = r.read_bits(len)? << self.trail;
            self.prev ^= x;
        }
        Some(self.prev)
    }
}

fn encode_xor(vals: &[f64]) -> BitWriter {
    let mut w = BitWriter::new();
    let mut s = XorState::new(vals[0].to_bits());
    for v in &vals[1..] {
        s.write(&mut w, v.to_bits());
    }
    w
}

// ---------------------------------------------------------------- sealed chunks

/// Encodes a time-sorted run of samples into the smallest sealed chunk.
///
/// `ts` and `vals` must have equal length; timestamps should be strictly
/// increasing (any i64 sequence round-trips, but the engine never stores
/// duplicates).
pub fn encode_chunk(ts: &[i64], vals: &[f64], out: &mut Vec<u8>) {
    assert_eq!(
        ts.len(),
        vals.len(),
        "timestamps and values differ in length"
    );
    encode_timestamps(ts, out);
    if !ts.is_empty() {
        encode_values(vals, out);
    }
}

/// Encodes the timestamp part of a sealed chunk (the count, then the
/// times); a value block follows it unless the chunk is empty.
pub fn encode_timestamps(ts: &[i64], out: &mut Vec<u8>) {
    put_uvarint(out, ts.len() as u64);
    if ts.is_empty() {
        return;
    }
    put_varint(out, ts[0]);
    // A regular run (every delta equal, the common case for scraped series)
    // is written as an empty stream and the one delta.
    if ts.len() > 1 {
        let d = ts[1].wrapping_sub(ts[0]);
        if ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == d) {
            put_uvarint(out, 0);
            put_varint(out, d);
            return;
        }
    }
    let mut w = BitWriter::new();
    let mut prev = ts[0];
    let mut prev_delta = 0i64;
    for &t in &ts[1..] {
        let d = t.wrapping_sub(prev);
        write_dod(&mut w, d.wrapping_sub(prev_delta));
        prev = t;
        prev_delta = d;
    }
    put_stream(out, &w);
}

/// Encodes a value column (the value block of a chunk) choosing the
/// smallest of constant, decimal-scaled integer and XOR encodings.
pub fn encode_values(vals: &[f64], out: &mut Vec<u8>) {
    encode_values_with(vals, false, out)
}

/// Encodes a value column as [`encode_values`] does, for the end of a part
/// whose length is known (a rollup's first part): Pack as mode 7, its
/// scale and order in a byte and its stream without a length.
pub(crate) fn encode_values_at_end(vals: &[f64], out: &mut Vec<u8>) {
    encode_values_with(vals, true, out)
}

fn encode_values_with(vals: &[f64], at_end: bool, out: &mut Vec<u8>) {
    let first = vals[0].to_bits();
    if vals.iter().all(|v| v.to_bits() == first) {
        out.push(MODE_CONST);
        out.extend_from_slice(&first.to_le_bytes());
        return;
    }
    // Decimal encodings usually win by far: XOR is sized only when they
    // cost more than 16 bits a value.
    let cheap = |bits: u64| bits <= 16 * vals.len() as u64;
    let xor_bits = || encode_xor(vals).len_bits();
    if let Some(scale) = common_scale(vals) {
        let ms: Vec<i64> = vals
            .iter()
            .map(|&v| mantissa(v, scale).expect("scale checked"))
            .collect();
        let (order, best) = best_pack(&ms);
        if cheap(best.len_bits()) || best.len_bits() + 16 < xor_bits() {
            if at_end {
                put_pack_in(MODE_PACK_IN, scale, (order, &best), ms[0], out);
            } else {
                out.push(MODE_PACK);
                out.push(scale as u8);
                put_packed(order, ms[0], &best, out);
            }
            return;
        }
    } else if let Some((scale, ms, ulps)) = near_decimals(vals) {
        let (order, best) = best_pack(&ms);
        let res = pack(&ulps);
        let bits = best.len_bits() + res.len_bits();
        if cheap(bits) || bits + 32 < xor_bits() {
            out.push(MODE_NEAR);
            out.push(scale as u8);
            put_packed(order, ms[0], &best, out);
            put_stream(out, &res);
            return;
        }
    }
    let xor = encode_xor(vals);
    out.push(MODE_XOR);
    out.extend_from_slice(&first.to_le_bytes());
    put_stream(out, &xor);
}

/// Writes the lasts `vals` of 5-minute buckets, of which those flagged in
/// `ends` end an hour, as the exact decimals of the others, packed as
/// Pack packs mantissas: a reader takes the lasts of the buckets that end
/// an hour from their hours' lasts. `6 | u8 scale |` then the integers
/// part of Pack. Says whether it wrote anything (not for values that are
/// not short decimals, nor where every bucket ends an hour).
pub(crate) fn encode_values_hourly(vals: &[f64], ends: &[bool], out: &mut Vec<u8>) -> bool {
    if vals.len() != ends.len() {
        return false;
    }
    let Some(scale) = common_scale(vals) else {
        return false;
    };
    let kept: Vec<i64> = vals
        .iter()
        .zip(ends)
        .filter(|(_, e)| !**e)
        .map(|(&v, _)| mantissa(v, scale).expect("scale checked"))
        .collect();
    if kept.is_empty() {
        return false;
    }
    // Only values on their own (a gauge's, a latency's): the differences
    // of the others would span an hour's end.
    let (order, best) = best_pack(&kept);
    if order & !(RICE | SPAN) != 0 {
        return false;
    }
    put_pack_in(MODE_HOURLY, scale, (order, &best), kept[0], out);
    true
}

/// Writes a block of mode 7 or 6: the mode, `scale << 4 | order` and the
/// integers from `first` on, their stream to the end of the part.
fn put_pack_in(
    mode: u8,
    scale: usize,
    (order, stream): (u8, &BitWriter),
    first: i64,
    out: &mut Vec<u8>,
) {
    out.push(mode);
    out.push((scale as u8) << 4 | order);
    put_ints_in(first, stream, true, out);
}

/// The scale of a block written by [`encode_values_hourly`] at `at`, if it
/// is one (its header byte as [`packed_in_header`] reads it).
pub(crate) fn hourly_scale(buf: &[u8], at: usize) -> Option<usize> {
    (buf.get(at) == Some(&MODE_HOURLY))
        .then(|| buf.get(at + 1).map(|&s| (s >> 4) as usize))
        .flatten()
        .filter(|&s| s <= MAX_SCALE)
}

/// Reads a block written by [`encode_values_hourly`] at `*pos` of the
/// buckets `ends` flags as ending an hour, appending to `out` each bucket's
/// mantissa (at the block's scale) through `conv`; `hours` are the lasts,
/// at that scale, of the hours of the buckets that end one.
pub(crate) fn decode_values_hourly<T: Copy>(
    buf: &[u8],
    pos: &mut usize,
    ends: &[bool],
    hours: &[i64],
    out: &mut Vec<T>,
    conv: impl Fn(i64) -> T,
) -> Result<(), DecodeError> {
    if get_u8(buf, pos)? != MODE_HOURLY {
        return Err(DecodeError("bad hourly value block header"));
    }
    let (_, order) = packed_in_header(buf, pos)?;
    let n = ends.len();
    let kept = ends.iter().filter(|&&e| !e).count();
    if hours.len() != n - kept || kept == 0 {
        return Err(DecodeError("hourly value block and its hours differ"));
    }
    // The others as mode 7 reads them (to the end of the rollup's first
    // part), then moved to their buckets.
    let start = out.len();
    out.reserve(n);
    get_ints_in(buf, pos, order, true, kept, |m| out.push(conv(m)))?;
    let fill = out[start];
    out.resize(start + n, fill);
    // From the back, a run of the others at a time: each moves past the
    // hours' ends before it (the first run, before any, stays).
    let (mut to, mut from) = (n, start + kept);
    for &h in hours.iter().rev() {
        let end = ends[..to]
            .iter()
            .rposition(|&e| e)
            .ok_or(DecodeError("hourly value block and its hours differ"))?;
        let run = to - end - 1;
        out.copy_within(from - run..from, start + end + 1);
        out[start + end] = conv(h);
        (to, from) = (end, from - run);
    }
    Ok(())
}

/// Decodes a sealed chunk starting at `*pos`, appending to `ts` and `vals`.
pub fn decode_chunk(
    buf: &[u8],
    pos: &mut usize,
    ts: &mut Vec<i64>,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let start = ts.len();
    decode_timestamps(buf, pos, ts)?;
    let n = ts.len() - start;
    if n == 0 {
        return Ok(());
    }
    decode_values(buf, pos, n, vals)
}

/// Steps over the timestamp part written by [`encode_timestamps`] without
/// decoding it; returns its count.
pub(crate) fn skip_timestamps(buf: &[u8], pos: &mut usize) -> Result<usize, DecodeError> {
    let n = get_uvarint(buf, pos)? as usize;
    if n == 0 {
        return Ok(0);
    }
    get_varint(buf, pos)?;
    let r = get_stream(buf, pos)?;
    if n > 1 && r.remaining() == 0 {
        get_varint(buf, pos)?;
    }
    Ok(n)
}

/// Times a reader already expects from a block's index row: `n` of them
/// from `first` to `last` in equal steps (a series' samples, or its rollup
/// buckets), so a regular run costs one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub first: i64,
    pub last: i64,
    pub n: usize,
}

impl Run {
    /// The step between times of the run, if `n` times from `first` to
    /// `last` step evenly.
    pub(crate) fn step(self) -> Option<i64> {
        match self.n {
            0 => None,
            1 => (self.first == self.last).then_some(0),
            n => {
                let span = self.last.checked_sub(self.first)?;
                let gaps = i64::try_from(n - 1).ok()?;
                (span >= 0 && span % gaps == 0).then(|| span / gaps)
            }
        }
    }

    /// Whether `ts` is this run.
    pub(crate) fn is(self, ts: &[i64]) -> bool {
        let Some(step) = self.step() else {
            return false;
        };
        ts.len() == self.n
            && ts[0] == self.first
            && ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step)
    }
}

/// Writes times a reader expects as `run`: a byte 0 when they are that
/// run, else a byte 1 and the timestamp part of [`encode_timestamps`].
pub(crate) fn encode_timestamps_in(ts: &[i64], run: Run, out: &mut Vec<u8>) {
    if run.is(ts) {
        out.push(0);
    } else {
        out.push(1);
        encode_timestamps(ts, out);
    }
}

/// Decodes what [`encode_timestamps_in`] wrote against `run`, appending to
/// `ts`; the value block follows at `*pos` when any were appended.
pub(crate) fn decode_timestamps_in(
    buf: &[u8],
    pos: &mut usize,
    run: Run,
    ts: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    if get_u8(buf, pos)? != 0 {
        return decode_timestamps(buf, pos, ts);
    }
    let step = run
        .step()
        .filter(|_| run.n <= MAX_REGULAR_RUN)
        .ok_or(DecodeError("times do not fit the run of their index row"))?;
    ts.reserve(run.n);
    ts.extend((0..run.n as i64).map(|i| run.first.wrapping_add(i.wrapping_mul(step))));
    Ok(())
}

/// Decodes the timestamp part written by [`encode_timestamps`], appending
/// to `ts`; the value block follows at `*pos` when any were appended.
pub fn decode_timestamps(
    buf: &[u8],
    pos: &mut usize,
    ts: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    let n = get_uvarint(buf, pos)? as usize;
    if n == 0 {
        return Ok(());
    }
    let t0 = get_varint(buf, pos)?;
    let mut r = get_stream(buf, pos)?;
    let regular = n > 1 && r.remaining() == 0;
    // A bit per sample at least, except in a regular run (bounded apart).
    if (!regular && n > buf.len().saturating_mul(8) + 1) || n > MAX_REGULAR_RUN {
        return Err(DecodeError("sample count larger than the chunk can hold"));
    }
    ts.reserve(n);
    if regular {
        // A regular run: one delta for all.
        let d = get_varint(buf, pos)?;
        let mut t = t0;
        ts.push(t);
        for _ in 1..n {
            t = t.wrapping_add(d);
            ts.push(t);
        }
        return Ok(());
    }
    ts.push(t0);
    let mut prev = t0;
    let mut delta = 0i64;
    for _ in 1..n {
        let dod = read_dod(&mut r).ok_or(DecodeError("timestamp stream ends early"))?;
        delta = delta.wrapping_add(dod);
        prev = prev.wrapping_add(delta);
        ts.push(prev);
    }
    Ok(())
}

/// Decodes a value column of `n` values written by [`encode_values`].
pub fn decode_values(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    vals.reserve(n);
    match get_u8(buf, pos)? {
        MODE_CONST => {
            let v = f64::from_bits(get_u64(buf, pos)?);
            vals.extend(std::iter::repeat_n(v, n));
        }
        MODE_INT => decode_ints(buf, pos, n, vals)?,
        MODE_PACK => {
            decode_packed(buf, pos, n, vals)?;
        }
        MODE_PACK_IN => {
            let (scale, order) = packed_in_header(buf, pos)?;
            get_ints_in(buf, pos, order, true, n, |m| {
                vals.push(from_mantissa(m, scale))
            })?;
        }
        MODE_NEAR => {
            let start = vals.len();
            decode_packed(buf, pos, n, vals)?;
            let mut r = get_stream(buf, pos)?;
            let mut ulps = Vec::new();
            unpack(&mut r, n, &mut ulps)?;
            for (v, u) in vals[start..].iter_mut().zip(ulps) {
                *v = f64::from_bits((v.to_bits() as i64).wrapping_add(u) as u64);
            }
        }
        MODE_XOR => {
            let first = get_u64(buf, pos)?;
            let mut r = get_stream(buf, pos)?;
            let mut s = XorState::new(first);
            vals.push(f64::from_bits(first));
            for _ in 1..n {
                let b = s.read(&mut r).ok_or(DecodeError("xor stream ends early"))?;
                vals.push(f64::from_bits(b));
            }
        }
        _ => return Err(DecodeError("unknown value encoding")),
    }
    Ok(())
}

/// Decodes the mantissa part of a Pack or Near value block: `n` values of
/// `m / 10^scale`.
fn decode_packed(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let (scale, order, m0, mut r) = packed_header(buf, pos)?;
    vals.reserve(n);
    unpack_mantissas(&mut r, order, m0, n, |m| vals.push(from_mantissa(m, scale)))
}

/// Writes integers as Pack writes its mantissas after the scale byte:
/// `u8 order | zz first | uvarint bits | packed residuals`, in the order of
/// residuals (0, 1 or 2) that packs smallest.
pub(crate) fn put_ints(ms: &[i64], out: &mut Vec<u8>) {
    let (order, best) = best_pack(ms);
    put_packed(order, ms[0], &best, out);
}

/// Writes the integers part of Pack, Near and [`put_ints`]: the residual
/// order, the first integer and the packed residuals after it.
fn put_packed(order: u8, first: i64, packed: &BitWriter, out: &mut Vec<u8>) {
    out.push(order);
    put_varint(out, first);
    put_stream(out, packed);
}

/// Reads what [`put_packed`] wrote: order, first integer, packed stream.
fn get_packed<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(u8, i64, BitReader<'a>), DecodeError> {
    let order = get_u8(buf, pos)?;
    if !valid_order(order) {
        return Err(DecodeError("bad packed encoding header"));
    }
    let first = get_varint(buf, pos)?;
    Ok((order, first, get_stream(buf, pos)?))
}

/// Writes integers whose order a header byte holds (see [`best_pack`]):
/// `zz first | stream`, the stream running to the end of the part it is
/// the last of (`to_end`) or with its length before it.
pub(crate) fn put_ints_in(first: i64, stream: &BitWriter, to_end: bool, out: &mut Vec<u8>) {
    put_varint(out, first);
    if to_end {
        out.extend_from_slice(stream.bytes());
    } else {
        put_stream(out, stream);
    }
}

/// Whether `order` is a residual order with its code flags.
pub(crate) fn valid_order(order: u8) -> bool {
    order & !(RICE | SPAN) <= 2 && (order & RICE == 0 || order & SPAN == 0)
}

/// Reads `n` integers written by [`put_ints_in`] with `order`, handing
/// each to `emit`.
pub(crate) fn get_ints_in(
    buf: &[u8],
    pos: &mut usize,
    order: u8,
    to_end: bool,
    n: usize,
    emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if !valid_order(order) {
        return Err(DecodeError("bad packed encoding header"));
    }
    let first = get_varint(buf, pos)?;
    let mut r = if to_end {
        let rest = buf.get(*pos..).unwrap_or_default();
        *pos = buf.len();
        BitReader::with_len(rest, rest.len() as u64 * 8)
    } else {
        get_stream(buf, pos)?
    };
    unpack_mantissas(&mut r, order, first, n, emit)
}

/// Reads `n` integers written by [`put_ints`], handing each to `emit`.
pub(crate) fn get_ints(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    let (order, m0, mut r) = get_packed(buf, pos)?;
    unpack_mantissas(&mut r, order, m0, n, emit)
}

/// Reads the header of a Pack or Near mantissa part: scale, residual
/// order, first mantissa and the packed stream.
/// Reads the header byte of a mode 7 block: its scale and residual order.
fn packed_in_header(buf: &[u8], pos: &mut usize) -> Result<(usize, u8), DecodeError> {
    let head = get_u8(buf, pos)?;
    let (scale, order) = ((head >> 4) as usize, head & 0x0f);
    if scale > MAX_SCALE || !valid_order(order) {
        return Err(DecodeError("bad packed encoding header"));
    }
    Ok((scale, order))
}

fn packed_header<'a>(
    buf: &'a [u8],
    pos: &mut usize,
) -> Result<(usize, u8, i64, BitReader<'a>), DecodeError> {
    let scale = get_u8(buf, pos)? as usize;
    if scale > MAX_SCALE {
        return Err(DecodeError("bad packed encoding header"));
    }
    let (order, m0, r) = get_packed(buf, pos)?;
    Ok((scale, order, m0, r))
}

/// Hands `n` mantissas of a packed stream of residuals of `order` after
/// `m0` to `emit`, as they are read: no residual buffer.
#[inline]
fn unpack_mantissas(
    r: &mut BitReader<'_>,
    order: u8,
    m0: i64,
    n: usize,
    mut emit: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if n == 0 {
        return Ok(());
    }
    emit(m0);
    let rest = n - 1;
    let (mut m, mut delta) = (m0, 0i64);
    match order & !(RICE | SPAN) {
        0 => read_residuals(r, order, rest, emit),
        1 => read_residuals(r, order, rest, |x| {
            m = m.wrapping_add(x);
            emit(m);
        }),
        _ => read_residuals(r, order, rest, |x| {
            delta = delta.wrapping_add(x);
            m = m.wrapping_add(delta);
            emit(m);
        }),
    }
}

/// Decodes a value column of `n` values written by [`encode_values`] as
/// the integers nearest to `value * 10^scale`, appending them to `out`. A
/// Pack or Near block at that scale hands over its mantissas as they are
/// stored; any other goes through its values.
pub(crate) fn decode_mantissas(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    scale: usize,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    let start = *pos;
    let mode = get_u8(buf, pos)?;
    if mode == MODE_PACK_IN {
        let (s, order) = packed_in_header(buf, pos)?;
        if s == scale {
            out.reserve(n);
            return get_ints_in(buf, pos, order, true, n, |m| out.push(m));
        }
    }
    if mode == MODE_PACK || mode == MODE_NEAR {
        let (s, order, m0, mut r) = packed_header(buf, pos)?;
        if s == scale {
            out.reserve(n);
            unpack_mantissas(&mut r, order, m0, n, |m| out.push(m))?;
            if mode == MODE_NEAR {
                // The distances in ULPs do not change a nearest mantissa.
                get_stream(buf, pos)?;
            }
            return Ok(());
        }
    }
    *pos = start;
    let mut vals = Vec::with_capacity(n);
    decode_values(buf, pos, n, &mut vals)?;
    let p = POW10[scale.min(MAX_SCALE)];
    out.extend(vals.iter().map(|&v| rounded(v * p) as i64));
    Ok(())
}

/// Decodes the mantissa part of an Int value block (adaptive widths): `n`
/// values of `m / 10^scale`.
fn decode_ints(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    vals: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let scale = get_u8(buf, pos)? as usize;
    let order = get_u8(buf, pos)?;
    if scale > MAX_SCALE || !(1..=2).contains(&order) {
        return Err(DecodeError("bad integer encoding header"));
    }
    let mut m = get_varint(buf, pos)?;
    let mut r = get_stream(buf, pos)?;
    let mut a = Adaptive::default();
    vals.push(from_mantissa(m, scale));
    let mut delta = 0i64;
    for _ in 1..n {
        let res = unzigzag(
            a.read(&mut r)
                .ok_or(DecodeError("integer stream ends early"))?,
        );
        delta = if order == 1 {
            res
        } else {
            delta.wrapping_add(res)
        };
        m = m.wrapping_add(delta);
        vals.push(from_mantissa(m, scale));
    }
    Ok(())
}

// ---------------------------------------------------------------- head chunk

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadMode {
    Const,
    Int,
    Xor,
}

/// An appendable compressed chunk for the in-memory head.
///
/// Values start as a constant run (zero bits per sample), become integer
/// deltas when an integral value differs, and fall back to XOR on the first
/// non-integral value (the run so far is re-encoded once, so the chunk is
/// always in the cheapest mode that fits what it holds).
#[derive(Debug, Clone)]
pub struct HeadChunk {
    ts: BitWriter,
    vals: BitWriter,
    count: u32,
    /// Zero delta-of-deltas (a regular scrape) not yet written to `ts`:
    /// they follow its bits. Counting them here keeps a regular series'
    /// timestamp stream out of the cache.
    zero_dods: u32,
    first_ts: i64,
    last_ts: i64,
    last_delta: i64,
    first_val: u64,
    mode: HeadMode,
    adaptive: Adaptive,
    last_int: i64,
    xor: XorState,
}

impl HeadChunk {
    /// A chunk holding one sample.
    pub fn new(t: i64, v: f64) -> Self {
        Self {
            ts: BitWriter::new(),
            vals: BitWriter::new(),
            count: 1,
            zero_dods: 0,
            first_ts: t,
            last_ts: t,
            last_delta: 0,
            first_val: v.to_bits(),
            mode: HeadMode::Const,
            adaptive: Adaptive::default(),
            last_int: 0,
            xor: XorState::new(v.to_bits()),
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Never true: a chunk is created with its first sample.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// First timestamp.
    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    /// Last (largest) timestamp.
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ts.heap_bytes() + self.vals.heap_bytes()
    }

    /// Appends a sample; `t` must be greater than [`Self::last_ts`].
    pub fn push(&mut self, t: i64, v: f64) {
        debug_assert!(t > self.last_ts);
        let d = t.wrapping_sub(self.last_ts);
        let dod = d.wrapping_sub(self.last_delta);
        if dod == 0 && self.zero_dods < u32::MAX {
            self.zero_dods += 1;
        } else {
            while self.zero_dods > 0 {
                let k = self.zero_dods.min(64);
                self.ts.write_bits(0, k);
                self.zero_dods -= k;
            }
            write_dod(&mut self.ts, dod);
        }
        self.last_delta = d;
        self.last_ts = t;
        let bits = v.to_bits();
        match self.mode {
            HeadMode::Const if bits == self.first_val => {}
            HeadMode::Const => {
                let first = f64::from_bits(self.first_val);
                match (mantissa(first, 0), mantissa(v, 0)) {
                    (Some(m0), Some(m)) => {
                        self.mode = HeadMode::Int;
                        self.last_int = m0;
                        for _ in 1..self.count {
                            self.adaptive.write(&mut self.vals, 0);
                        }
                        self.push_int(m);
                    }
                    _ => self.switch_to_xor(v),
                }
            }
            HeadMode::Int => match mantissa(v, 0) {
                Some(m) => self.push_int(m),
                None => self.switch_to_xor(v),
            },
            HeadMode::Xor => self.xor.write(&mut self.vals, bits),
        }
        self.count += 1;
    }

    fn push_int(&mut self, m: i64) {
        self.adaptive
            .write(&mut self.vals, zigzag(m.wrapping_sub(self.last_int)));
        self.last_int = m;
    }

    fn switch_to_xor(&mut self, v: f64) {
        let mut old = Vec::with_capacity(self.count as usize + 1);
        self.values_into(&mut old);
        old.push(v);
        let mut w = BitWriter::new();
        let mut s = XorState::new(old[0].to_bits());
        for x in &old[1..] {
            s.write(&mut w, x.to_bits());
        }
        self.vals = w;
        self.xor = s;
        self.mode = HeadMode::Xor;
    }

    fn values_into(&self, out: &mut Vec<f64>) {
        let n = self.count as usize;
        match self.mode {
            HeadMode::Const => out.extend(std::iter::repeat_n(f64::from_bits(self.first_val), n)),
            HeadMode::Int => {
                let mut r = BitReader::with_len(self.vals.bytes(), self.vals.len_bits());
                let mut a = Adaptive::default();
                let mut m =
                    mantissa(f64::from_bits(self.first_val), 0).expect("int mode starts integral");
                out.push(m as f64);
                for _ in 1..n {
                    let d = unzigzag(a.read(&mut r).expect("head stream is well formed"));
                    m = m.wrapping_add(d);
                    out.push(m as f64);
                }
            }
            HeadMode::Xor => {
                let mut r = BitReader::with_len(self.vals.bytes(), self.vals.len_bits());
                let mut s = XorState::new(self.first_val);
                out.push(f64::from_bits(self.first_val));
                for _ in 1..n {
                    out.push(f64::from_bits(
                        s.read(&mut r).expect("head stream is well formed"),
                    ));
                }
            }
        }
    }

    /// Appends every sample to `ts` and `vals` in time order.
    pub fn decode_into(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        let n = self.count as usize;
        ts.reserve(n);
        let mut r = BitReader::with_len(self.ts.bytes(), self.ts.len_bits());
        let mut prev = self.first_ts;
        let mut delta = 0i64;
        ts.push(prev);
        let written = n.saturating_sub(1 + self.zero_dods as usize);
        for _ in 0..written {
            delta = delta.wrapping_add(read_dod(&mut r).expect("head stream is well formed"));
            prev = prev.wrapping_add(delta);
            ts.push(prev);
        }
        for _ in 0..n.saturating_sub(1) - written {
            prev = prev.wrapping_add(delta);
            ts.push(prev);
        }
        self.values_into(vals);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn times_against_a_run_cost_a_byte_and_reject_runs_that_do_not_fit() {
        let ts: Vec<i64> = (0..50).map(|i| 1_000 + i * 60_000).collect();
        let run = Run {
            first: ts[0],
            last: ts[49],
            n: 50,
        };
        let mut buf = Vec::new();
        encode_timestamps_in(&ts, run, &mut buf);
        assert_eq!(buf, [0]);
        let mut got = Vec::new();
        decode_timestamps_in(&buf, &mut 0, run, &mut got).unwrap();
        assert_eq!(got, ts);
        // Times off the run are written out and read back as they are.
        let mut odd = ts.clone();
        odd[7] += 1;
        buf.clear();
        encode_timestamps_in(&odd, run, &mut buf);
        assert_eq!(buf[0], 1);
        got.clear();
        decode_timestamps_in(&buf, &mut 0, run, &mut got).unwrap();
        assert_eq!(got, odd);
        // A run whose span the count does not divide, or no times at all,
        // is an error, not a panic or a guess.
        for bad in [
            Run { n: 48, ..run },
            Run { n: 0, ..run },
            Run {
                first: i64::MIN,
                last: i64::MAX,
                n: 3,
            },
            Run {
                first: 5,
                last: 4,
                n: 2,
            },
            Run {
                first: 0,
                last: 1 << 40,
                n: MAX_REGULAR_RUN + 1,
            },
        ] {
            assert!(!bad.is(&ts));
            assert!(decode_timestamps_in(&[0], &mut 0, bad, &mut got).is_err());
        }
        let single = Run {
            first: 9,
            last: 9,
            n: 1,
        };
        got.clear();
        decode_timestamps_in(&[0], &mut 0, single, &mut got).unwrap();
        assert_eq!(got, [9]);
    }
    use super::*;
    use proptest::prelude::*;

    fn round_trip(ts: &[i64], vals: &[f64]) -> (Vec<i64>, Vec<f64>, usize) {
        let mut buf = Vec::new();
        encode_chunk(ts, vals, &mut buf);
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        let mut pos = 0;
        decode_chunk(&buf, &mut pos, &mut t2, &mut v2).expect("decodes");
        assert_eq!(pos, buf.len(), "decoder consumed the whole chunk");
        (t2, v2, buf.len())
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn a_large_integer_beside_a_fine_decimal_has_no_common_scale() {
        // 1e13 is a mantissa at scale 0 but not at scale 6 (past 2^53),
        // where 1e-6 first is one: no scale serves both.
        let vals = [1e13, 1e-6, 3.0];
        assert_eq!(common_scale(&vals), None);
        let ts = [1, 2, 3];
        let (t2, v2, _) = round_trip(&ts, &vals);
        assert_eq!((t2, bits(&v2)), (ts.to_vec(), bits(&vals)));
    }

    fn head_round_trip(ts: &[i64], vals: &[f64]) -> (Vec<i64>, Vec<f64>) {
        let mut c = HeadChunk::new(ts[0], vals[0]);
        for i in 1..ts.len() {
            c.push(ts[i], vals[i]);
        }
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        c.decode_into(&mut t2, &mut v2);
        (t2, v2)
    }

    /// Values drawn from the shapes that matter: arbitrary bit patterns,
    /// special floats, integers and short decimals.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            (-100_000i64..100_000).prop_map(|i| i as f64 / 100.0),
            // Float sums of short decimals: near, not at, a decimal.
            proptest::collection::vec(-100_000i64..100_000, 2..6)
                .prop_map(|ms| ms.iter().map(|&m| m as f64 / 10.0).sum::<f64>()),
            any::<f64>(),
        ]
    }

    fn sorted_ts() -> impl Strategy<Value = Vec<i64>> {
        (
            any::<i64>(),
            proptest::collection::vec(1i64..200_000, 0..300),
        )
            .prop_map(|(start, deltas)| {
                let mut t = start / 2;
                let mut out = vec![t];
                for d in deltas {
                    t = t.saturating_add(d);
                    if t == *out.last().expect("non-empty") {
                        break;
                    }
                    out.push(t);
                }
                out
            })
    }

    #[test]
    fn values_at_the_end_of_a_part_read_as_values_and_mantissas() {
        let vals: Vec<f64> = (0..300)
            .map(|i| ((i * 7919) % 401) as f64 / 100.0)
            .collect();
        let mut buf = Vec::new();
        encode_values_at_end(&vals, &mut buf);
        assert_eq!(buf[0], MODE_PACK_IN);
        let mut plain = Vec::new();
        encode_values(&vals, &mut plain);
        assert!(buf.len() < plain.len());
        let (mut got, mut pos) = (Vec::new(), 0);
        decode_values(&buf, &mut pos, vals.len(), &mut got).unwrap();
        assert_eq!((pos, bits(&got)), (buf.len(), bits(&vals)));
        for scale in [2, 3] {
            let mut ms = Vec::new();
            decode_mantissas(&buf, &mut 0, vals.len(), scale, &mut ms).unwrap();
            let want: Vec<i64> = vals.iter().map(|&v| mantissa(v, scale).unwrap()).collect();
            assert_eq!(ms, want);
        }
        // Cut short or damaged: an error or other values, never a panic.
        for i in 0..buf.len() {
            let _ = decode_values(&buf[..i], &mut 0, vals.len(), &mut got);
            let mut bad = buf.clone();
            bad[i] ^= 0xa5;
            let _ = decode_values(&bad, &mut 0, vals.len(), &mut got);
        }
    }

    proptest! {
        /// Lasts whose hours' ends are left out come back bit for bit from
        /// their hours' lasts, as values and as mantissas, and a damaged
        /// block or a wrong count of hours is an error, not a panic.
        #[test]
        fn hourly_lasts_round_trip(
            rows in proptest::collection::vec((-5000i64..5000, any::<bool>()), 1..400),
            scale in 0usize..3,
            flip in any::<prop::sample::Index>(),
        ) {
            let vals: Vec<f64> = rows.iter().map(|r| from_mantissa(r.0, scale)).collect();
            let ends: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let mut buf = Vec::new();
            if !encode_values_hourly(&vals, &ends, &mut buf) {
                return Ok(());
            }
            let s = (buf[1] >> 4) as usize;
            let hours: Vec<i64> = vals
                .iter()
                .zip(&ends)
                .filter(|(_, e)| **e)
                .map(|(&v, _)| mantissa(v, s).unwrap())
                .collect();
            let mut got = vec![1.5];
            decode_values_hourly(&buf, &mut 0, &ends, &hours, &mut got, |m| from_mantissa(m, s))
                .unwrap();
            prop_assert_eq!(
                got[1..].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let mut ms = Vec::new();
            decode_values_hourly(&buf, &mut 0, &ends, &hours, &mut ms, |m| m).unwrap();
            prop_assert_eq!(ms.len(), vals.len());
            if !hours.is_empty() {
                let short = &hours[1..];
                prop_assert!(
                    decode_values_hourly(&buf, &mut 0, &ends, short, &mut ms, |m| m).is_err()
                );
            }
            let mut bad = buf.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x5a;
            let _ = decode_values_hourly(&bad, &mut 0, &ends, &hours, &mut ms, |m| m);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_sequences_round_trip(ts in proptest::collection::vec(any::<i64>(), 1..300),
                                          vals in proptest::collection::vec(value(), 300)) {
            let vals = &vals[..ts.len()];
            let (t2, v2, _) = round_trip(&ts, vals);
            prop_assert_eq!(t2, ts.clone());
            prop_assert_eq!(bits(&v2), bits(vals));
        }

        #[test]
        fn head_chunk_matches_input(ts in sorted_ts(), vals in proptest::collection::vec(value(), 301)) {
            let vals = &vals[..ts.len()];
            let (t2, v2) = head_round_trip(&ts, vals);
            prop_assert_eq!(t2, ts.clone());
            prop_assert_eq!(bits(&v2), bits(vals));
        }

        #[test]
        fn one_pass_sizing_picks_what_packing_each_order_would(
            ms in proptest::collection::vec(prop_oneof![any::<i64>(), -1000i64..1000], 1..200)
        ) {
            let mut res = Vec::new();
            let sizes: Vec<u64> = (0..3u8).map(|o| { residuals(&ms, o, &mut res); pack_bits(&res) }).collect();
            let (order, w) = best_pack(&ms);
            let cheapest = sizes.iter().position(|&b| b == *sizes.iter().min().unwrap()).unwrap();
            prop_assert_eq!((order & !(RICE | SPAN)) as usize, cheapest);
            if order & (RICE | SPAN) == 0 {
                prop_assert_eq!(w.len_bits(), sizes[cheapest]);
            } else {
                // A Rice or span code is chosen only where it is smaller.
                prop_assert!(w.len_bits() * 100 < sizes[cheapest] * 97);
            }
        }

        #[test]
        fn integer_runs_round_trip(start in -1_000_000_000i64..1_000_000_000,
                                   steps in proptest::collection::vec(-5i64..1000, 1..300),
                                   scale in 0usize..4) {
            let mut m = start;
            let mut vals = Vec::new();
            for s in steps { m += s; vals.push(from_mantissa(m, scale)); }
            let ts: Vec<i64> = (0..vals.len() as i64).map(|i| 1_700_000_000_000 + i * 60_000).collect();
            let (t2, v2, _) = round_trip(&ts, &vals);
            prop_assert_eq!(t2, ts.clone());
            prop_assert_eq!(bits(&v2), bits(&vals));
            let (t3, v3) = head_round_trip(&ts, &vals);
            prop_assert_eq!(t3, ts);
            prop_assert_eq!(bits(&v3), bits(&vals));
        }
    }

    #[test]
    fn constant_series_cost_almost_nothing() {
        let ts: Vec<i64> = (0..1440).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let vals = vec![42.5; 1440];
        let (_, v2, size) = round_trip(&ts, &vals);
        assert_eq!(v2, vals);
        assert!(size < 1440 / 8 + 40, "constant series took {size} bytes");
    }

    #[test]
    fn counters_beat_gorilla() {
        let ts: Vec<i64> = (0..1440).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let mut c = 1_000_000.0;
        let vals: Vec<f64> = (0..1440)
            .map(|i| {
                c += 100.0 + ((i * 7919) % 13) as f64;
                c
            })
            .collect();
        let (_, _, size) = round_trip(&ts, &vals);
        let gorilla = encode_xor(&vals).len_bits() as usize / 8;
        assert!(
            size < gorilla / 2,
            "int encoding {size} bytes vs xor {gorilla}"
        );
    }

    #[test]
    fn sums_of_decimals_cost_little_more_than_the_decimals() {
        // Five-sample sums of one-decimal values, as a 5-minute rollup holds
        // them: many are not exact decimals (`62.300000000000004`).
        let mut seed = 0x0bad_cafe_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let sums: Vec<f64> = (0..288)
            .map(|_| (0..5).map(|_| (120 + next() % 40) as f64 / 10.0).sum())
            .collect();
        assert!(sums.iter().any(|&v| mantissa(v, 1).is_none()));
        let ts: Vec<i64> = (0..sums.len() as i64).map(|i| i * 300_000).collect();
        let (_, v2, size) = round_trip(&ts, &sums);
        assert_eq!(bits(&v2), bits(&sums));
        let mut xor = Vec::new();
        encode_chunk(&ts, &sums, &mut xor);
        // Mantissas of about 9 bits plus a residual bit or two each.
        assert!(size < 288 * 14 / 8 + 48, "{size} bytes for 288 sums");
    }

    #[test]
    fn regular_runs_spend_no_bits_on_timestamps() {
        let ts: Vec<i64> = (0..1440).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let vals = vec![1.0; ts.len()];
        let (t2, v2, size) = round_trip(&ts, &vals);
        assert_eq!(t2, ts);
        assert_eq!(bits(&v2), bits(&vals));
        assert!(size < 24, "{size} bytes");
        // One late sample breaks regularity and falls back to the dod stream.
        let mut irregular = ts.clone();
        irregular[700] += 1;
        let (t3, _, _) = round_trip(&irregular, &vals);
        assert_eq!(t3, irregular);
        // Descending and wrapping deltas are regular too.
        let down: Vec<i64> = (0..10i64)
            .map(|i| i64::MAX.wrapping_sub(i.wrapping_mul(i64::MAX / 4)))
            .collect();
        let (t4, _, _) = round_trip(&down, &vals[..10]);
        assert_eq!(t4, down);
    }

    /// The next of a deterministic pseudo-random sequence.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Encodes `vals` (decimals of one digit), checks that their residuals
    /// took the code `flag` names and that it is smaller than packed
    /// blocks, that they read back, and that a cut or a flipped bit is an
    /// error or other values, never a panic.
    fn check_coded_as(vals: &[f64], flag: u8) {
        let mut out = Vec::new();
        encode_values(vals, &mut out);
        assert_eq!(out[0], MODE_PACK);
        assert_eq!(out[2] & (RICE | SPAN), flag, "order byte {}", out[2]);
        let ms: Vec<i64> = vals.iter().map(|v| (v * 10.0).round() as i64).collect();
        let (order, coded) = best_pack(&ms);
        let mut res = Vec::new();
        residuals(&ms, order & !(RICE | SPAN), &mut res);
        assert!(coded.len_bits() * 100 < pack_bits(&res) * 97);
        let mut got = Vec::new();
        decode_values(&out, &mut 0, vals.len(), &mut got).unwrap();
        assert_eq!(bits(&got), bits(vals));
        for cut in 0..out.len() {
            got.clear();
            assert!(decode_values(&out[..cut], &mut 0, vals.len(), &mut got).is_err());
        }
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 0x80 >> (i % 8);
            got.clear();
            let _ = decode_values(&bad, &mut 0, vals.len(), &mut got);
        }
    }

    #[test]
    fn spiky_values_take_a_rice_code_and_even_ones_a_span_code() {
        // A latency: noise around a level, with a spike now and then that
        // would widen a whole packed block.
        let mut seed = 0x1a7e_u64;
        let spiky: Vec<f64> = (0..288)
            .map(|_| {
                let seed = xorshift(&mut seed);
                let spike = if seed.is_multiple_of(40) { 5 } else { 1 };
                (8500 + (seed >> 8) % 400) as f64 * spike as f64 / 10.0
            })
            .collect();
        check_coded_as(&spiky, RICE);
        // Noise spread evenly over 300 values, but for two outliers: a span
        // code with escapes.
        let mut even: Vec<f64> = (0..288)
            .map(|_| (1000 + xorshift(&mut seed) % 300) as f64 / 10.0)
            .collect();
        even[100] = 1e6;
        even[200] = -5.0;
        check_coded_as(&even, SPAN);
        let mut out = Vec::new();
        encode_values(&even, &mut out);
        // Escapes flagged: the stream's first bit.
        let (_, _, r) = get_packed(&out, &mut 2).unwrap();
        assert_eq!(r.clone().read_bit(), Some(true));
    }

    #[test]
    fn int_blocks_of_older_files_still_decode() {
        let ms: Vec<i64> = vec![1000, 1003, 1010, 1010, 990, 1_000_000];
        let mut buf = vec![MODE_INT, 2, 1];
        put_varint(&mut buf, ms[0]);
        put_stream(&mut buf, &encode_ints(&ms, 1));
        let mut vals = Vec::new();
        let mut pos = 0;
        decode_values(&buf, &mut pos, ms.len(), &mut vals).unwrap();
        assert_eq!(pos, buf.len());
        let want: Vec<f64> = ms.iter().map(|&m| m as f64 / 100.0).collect();
        assert_eq!(bits(&vals), bits(&want));
    }

    #[test]
    fn packing_follows_the_cheapest_order() {
        // Gauge noise around a level: order 0 costs about its own entropy.
        let mut seed = 0x5eed_u64;
        let gauge: Vec<f64> = (0..1440)
            .map(|_| (4000 + (xorshift(&mut seed) % 400) as i64) as f64 / 100.0)
            .collect();
        let mut out = Vec::new();
        encode_values(&gauge, &mut out);
        assert_eq!((out[0], out[2] & !(RICE | SPAN)), (MODE_PACK, 0));
        assert!(out.len() < 1440 * 10 / 8, "{} bytes", out.len());
        // A counter with steady increments: order 1 or 2.
        let counter: Vec<f64> = (0..1440u64).map(|i| (i * 250 + i % 7) as f64).collect();
        out.clear();
        encode_values(&counter, &mut out);
        assert_eq!(out[0], MODE_PACK);
        assert!(out[2] & !(RICE | SPAN) >= 1);
        assert!(out.len() < 1440 * 4 / 8, "{} bytes", out.len());
        // Extremes of i64 residuals survive.
        let wild = [0.0, 9.0e15, -9.0e15, 9.0e15, -9.0e15, 1.0];
        let ts: Vec<i64> = (0..wild.len() as i64).collect();
        let (_, v2, _) = round_trip(&ts, &wild);
        assert_eq!(bits(&v2), bits(&wild));
    }

    #[test]
    fn near_decimals_refuse_what_they_cannot_restore() {
        assert_eq!(near_mantissa(-0.0, 0), None);
        assert_eq!(near_mantissa(f64::NAN, 1), None);
        assert_eq!(near_mantissa(1e-300, 0), None);
        assert_eq!(near_mantissa(0.1 + 0.2, 1), Some((3, 1)));
        let vals = [0.1 + 0.2, -0.0, 1.0];
        let ts = [1, 2, 3];
        let (_, v2, _) = round_trip(&ts, &vals);
        assert_eq!(bits(&v2), bits(&vals));
    }

    #[test]
    fn special_floats_survive() {
        let vals = [
            f64::NAN,
            f64::from_bits(0x7ff8_dead_beef_0001),
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.5,
            f64::MIN_POSITIVE,
        ];
        let ts: Vec<i64> = (0..vals.len() as i64).collect();
        let (_, v2, _) = round_trip(&ts, &vals);
        assert_eq!(bits(&v2), bits(&vals));
        let (_, v3) = head_round_trip(&ts, &vals);
        assert_eq!(bits(&v3), bits(&vals));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let (mut t, mut v) = (Vec::new(), Vec::new());
            let mut pos = 0;
            let _ = decode_chunk(&buf, &mut pos, &mut t, &mut v);
        }
    }
}
