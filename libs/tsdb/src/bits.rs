//! Big-endian bit streams: the writer and reader under every chunk codec.
//!
//! The writer appends to a plain `Vec<u8>` (the last byte may be partly
//! filled, padded with zeros), so a head chunk can be read while it is still
//! being appended to without copying. The reader never panics on short or
//! garbage input: every read past the declared end returns `None`.

/// Zero bits from which a Rice code holds its value's length and bits
/// instead (an outlier costs about 22 bits more than its size, not a run
/// of zeros as long as itself).
pub const RICE_ESCAPE: u32 = 16;

/// Bits [`BitWriter::write_rice`] writes for `z` with parameter `k`.
#[inline]
pub fn rice_bits(z: u64, k: u32) -> u64 {
    let q = z >> k;
    if q < u64::from(RICE_ESCAPE) {
        q + 1 + u64::from(k)
    } else {
        u64::from(RICE_ESCAPE + 6 + 63 - z.leading_zeros())
    }
}

/// Appends bit fields, most significant bit first.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    len_bits: u64,
}

impl BitWriter {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bits written so far.
    pub fn len_bits(&self) -> u64 {
        self.len_bits
    }

    /// The bytes written so far; the last byte is zero-padded.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes out of the writer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Releases spare capacity.
    pub fn shrink(&mut self) {
        self.buf.shrink_to_fit();
    }

    /// Writes `x` in `0..m` (`1 <= m <= 2^62`) in a truncated binary code:
    /// `floor(log2 m)` bits for the smallest values, one more for the rest,
    /// within 0.09 bits of `log2 m` on average for uniform values.
    #[inline]
    pub fn write_below(&mut self, x: u64, m: u64) {
        debug_assert!(x < m && m <= 1 << 62);
        let k = 63 - m.leading_zeros();
        let u = (2u64 << k) - m;
        if x < u {
            self.write_bits(x, k);
        } else {
            self.write_bits(x + u, k + 1);
        }
    }

    /// Writes `z` in a Rice code of parameter `k` (`k < 64`): `z >> k` zero
    /// bits, a one and the low `k` bits of `z`; from [`RICE_ESCAPE`] zeros
    /// on, those zeros, 6 bits of `z`'s length less one and its bits below
    /// the top one instead.
    #[inline]
    pub fn write_rice(&mut self, z: u64, k: u32) {
        debug_assert!(k < 64);
        let q = z >> k;
        if q < u64::from(RICE_ESCAPE) {
            self.write_bits(1, q as u32 + 1);
            self.write_bits(z, k);
        } else {
            // z >= 2^k * RICE_ESCAPE > 0: its top bit goes without saying.
            let top = 63 - z.leading_zeros();
            self.write_bits(0, RICE_ESCAPE);
            self.write_bits(u64::from(top), 6);
            self.write_bits(z, top);
        }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes the low `n` bits of `v` (`n <= 64`), most significant first.
    #[inline]
    pub fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let used = (self.len_bits & 7) as u32;
        self.len_bits += n as u64;
        let mut remaining = n;
        if used != 0 {
            let free = 8 - used;
            let last = self
                .buf
                .last_mut()
                .expect("partial byte exists when used != 0");
            if remaining <= free {
                *last |= (v << (free - remaining)) as u8;
                return;
            }
            *last |= (v >> (remaining - free)) as u8;
            remaining -= free;
        }
        while remaining >= 8 {
            remaining -= 8;
            self.buf.push((v >> remaining) as u8);
        }
        if remaining > 0 {
            self.buf.push((v << (8 - remaining)) as u8);
        }
    }
}

/// Reads bit fields written by [`BitWriter`].
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    pos: u64,
    end: u64,
}

impl<'a> BitReader<'a> {
    /// A reader over `buf` that treats every bit of it as data.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            end: buf.len() as u64 * 8,
        }
    }

    /// A reader over the first `len_bits` bits of `buf`.
    pub fn with_len(buf: &'a [u8], len_bits: u64) -> Self {
        let end = len_bits.min(buf.len() as u64 * 8);
        Self { buf, pos: 0, end }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.pos >= self.end {
            return None;
        }
        let byte = self.buf[(self.pos >> 3) as usize];
        let bit = (byte >> (7 - (self.pos & 7))) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// Counts leading one bits, up to `max` (consumes the terminating zero
    /// when fewer than `max` ones are found).
    #[inline]
    pub fn read_unary(&mut self, max: u32) -> Option<u32> {
        let mut n = 0;
        while n < max {
            if !self.read_bit()? {
                return Some(n);
            }
            n += 1;
        }
        Some(n)
    }

    /// Reads a value written by [`BitWriter::write_below`] with the same
    /// `m` (`None` as well for an `m` out of `1..=2^62`).
    #[inline]
    pub fn read_below(&mut self, m: u64) -> Option<u64> {
        if m == 0 || m > 1 << 62 {
            return None;
        }
        let k = 63 - m.leading_zeros();
        let u = (2u64 << k) - m;
        if k >= 56 {
            let x = self.read_bits(k)?;
            if x < u {
                return Some(x);
            }
            return Some(((x << 1) | u64::from(self.read_bit()?)) - u);
        }
        // Both lengths from one load: the long form is the short one and a
        // bit more, so which it is decides only how far to move.
        let word = self.word_at(self.pos) << (self.pos & 7);
        let y = word >> (63 - k);
        let long = (y >> 1) >= u;
        let len = u64::from(k) + u64::from(long);
        if self.pos + len > self.end {
            return None;
        }
        self.pos += len;
        Some(if long { y - u } else { y >> 1 })
    }

    /// Reads a value written by [`BitWriter::write_rice`] with the same `k`
    /// (`None` as well for a `k` over 63).
    #[inline]
    pub fn read_rice(&mut self, k: u32) -> Option<u64> {
        // Zeros, the one and the low bits mostly lie in one load (57 bits
        // of it are the stream's).
        let word = self.word_at(self.pos) << (self.pos & 7);
        let q = word.leading_zeros();
        if q < RICE_ESCAPE && q + 1 + k <= 57 {
            let len = u64::from(q + 1 + k);
            if self.pos + len > self.end {
                return None;
            }
            self.pos += len;
            let low = if k == 0 {
                0
            } else {
                (word << (q + 1)) >> (64 - k)
            };
            return Some((u64::from(q) << k) | low);
        }
        if k > 63 {
            return None;
        }
        let mut q = 0;
        while q < RICE_ESCAPE && !self.read_bit()? {
            q += 1;
        }
        if q == RICE_ESCAPE {
            let top = self.read_bits(6)? as u32;
            return Some((1 << top) | self.read_bits(top)?);
        }
        Some((u64::from(q) << k) | self.read_bits(k)?)
    }

    /// Reads `n` bits (`n <= 64`).
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Some((hi << 32) | lo);
        }
        if self.pos + n as u64 > self.end {
            return None;
        }
        let word = self.word_at(self.pos);
        let off = (self.pos & 7) as u32;
        self.pos += n as u64;
        Some((word << off) >> (64 - n))
    }

    /// The eight bytes from the one holding bit `pos`, big-endian, zero past
    /// the end of the buffer.
    #[inline]
    fn word_at(&self, pos: u64) -> u64 {
        let byte = (pos >> 3) as usize;
        match self.buf.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut tmp = [0u8; 8];
                let tail = self.buf.get(byte..).unwrap_or_default();
                tmp[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(tmp)
            }
        }
    }
}

impl BitReader<'_> {
    /// Reads `count` values written by [`BitWriter::write_rice`] with the
    /// same `k`, handing each to `f`: values are taken from a word loaded
    /// once for several of them. `None` when the stream ends early or `k`
    /// is over 63 (what was read by then is handed over).
    #[inline]
    pub fn read_rices(&mut self, k: u32, count: usize, mut f: impl FnMut(u64)) -> Option<()> {
        if k > 63 {
            return None;
        }
        let mut pos = self.pos;
        let mut word = self.word_at(pos) << (pos & 7);
        let mut avail = 64 - (pos & 7) as u32;
        for _ in 0..count {
            let mut q = word.leading_zeros();
            if q + 1 + k > avail {
                word = self.word_at(pos) << (pos & 7);
                avail = 64 - (pos & 7) as u32;
                q = word.leading_zeros();
            }
            let len = q + 1 + k;
            if q >= RICE_ESCAPE || len > avail {
                // Long codes and escapes, one at a time.
                self.pos = pos;
                f(self.read_rice(k)?);
                pos = self.pos;
                word = self.word_at(pos) << (pos & 7);
                avail = 64 - (pos & 7) as u32;
                continue;
            }
            if pos + u64::from(len) > self.end {
                self.pos = pos;
                return None;
            }
            let low = if k == 0 {
                0
            } else {
                (word << (q + 1)) >> (64 - k)
            };
            f((u64::from(q) << k) | low);
            pos += u64::from(len);
            // `len` is below 64 here: `avail` is at most 64.
            word = if len < 64 { word << len } else { 0 };
            avail -= len;
        }
        self.pos = pos;
        Some(())
    }

    /// Reads up to `count` values written by [`BitWriter::write_below`]
    /// with the same `m`, handing each to `f` until it answers false: the
    /// code's lengths are worked out once, and values are taken from a word
    /// loaded once for several of them. Returns how many were read (the
    /// one `f` stopped at included); `None` when the stream ends early or
    /// `m` is out of `1..=2^62`.
    #[inline]
    pub fn read_belows(
        &mut self,
        m: u64,
        count: usize,
        mut f: impl FnMut(u64) -> bool,
    ) -> Option<usize> {
        if m == 0 || m > 1 << 62 {
            return None;
        }
        let k = 63 - m.leading_zeros();
        if k >= 56 {
            for i in 0..count {
                if !f(self.read_below(m)?) {
                    return Some(i + 1);
                }
            }
            return Some(count);
        }
        let u = (2u64 << k) - m;
        let mut pos = self.pos;
        let mut word = self.word_at(pos) << (pos & 7);
        let mut avail = 64 - (pos & 7) as u32;
        for i in 0..count {
            if avail < k + 1 {
                word = self.word_at(pos) << (pos & 7);
                avail = 64 - (pos & 7) as u32;
            }
            // Both lengths from the word: the long form is the short one and
            // a bit more.
            let y = word >> (63 - k);
            let long = (y >> 1) >= u;
            let len = k + u32::from(long);
            if pos + u64::from(len) > self.end {
                self.pos = pos;
                return None;
            }
            pos += u64::from(len);
            word <<= len;
            avail -= len;
            if !f(if long { y - u } else { y >> 1 }) {
                self.pos = pos;
                return Some(i + 1);
            }
        }
        self.pos = pos;
        Some(count)
    }

    /// Reads `count` fields of `width` bits each, handing each to `f`:
    /// the bounds are checked once for the whole run, so packed blocks
    /// decode at a load and two shifts per field. `None` (and nothing
    /// read) when the run goes past the end.
    #[inline]
    pub fn read_fields(&mut self, width: u32, count: usize, mut f: impl FnMut(u64)) -> Option<()> {
        let total = u64::from(width).checked_mul(count as u64)?;
        if width > 64 || self.pos.checked_add(total)? > self.end {
            return None;
        }
        if width == 0 {
            (0..count).for_each(|_| f(0));
            return Some(());
        }
        if width > 56 {
            for _ in 0..count {
                f(self.read_bits(width)?);
            }
            return Some(());
        }
        let mut pos = self.pos;
        for _ in 0..count {
            f((self.word_at(pos) << (pos & 7)) >> (64 - width));
            pos += u64::from(width);
        }
        self.pos = pos;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::new();
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let total: u64 = fields.iter().map(|&(_, n)| n as u64).sum();
            prop_assert_eq!(w.len_bits(), total);
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            for &(v, n) in &fields {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits(n), Some(v & mask));
            }
            prop_assert_eq!(r.remaining(), 0);
            prop_assert_eq!(r.read_bit(), None);
        }

        #[test]
        fn runs_of_fields_read_as_single_fields(vals in proptest::collection::vec(any::<u64>(), 0..100),
                                                width in 0u32..=64, lead in 0u32..8) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let mut w = BitWriter::new();
            w.write_bits(0, lead);
            for &v in &vals {
                w.write_bits(v, width);
            }
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            let mut got = Vec::new();
            prop_assert!(r.read_fields(width, vals.len(), |v| got.push(v)).is_some());
            prop_assert_eq!(got, vals.iter().map(|v| v & mask).collect::<Vec<_>>());
            prop_assert_eq!(r.remaining(), 0);
            // One field more than there is reads nothing.
            if width > 0 {
                let mut r = BitReader::with_len(w.bytes(), w.len_bits());
                r.read_bits(lead);
                prop_assert!(r.read_fields(width, vals.len() + 1, |_| ()).is_none());
                prop_assert_eq!(r.remaining(), w.len_bits() - u64::from(lead));
            }
        }
    }

    proptest! {
        #[test]
        fn rice_codes_round_trip(vals in proptest::collection::vec(any::<u64>(), 0..100),
                                 shifts in proptest::collection::vec(0u32..64, 100),
                                 k in 0u32..64, lead in 0u32..8) {
            // Values of every size: small ones on the fast path, big ones
            // escaped, and long runs of zeros across loads.
            let vals: Vec<u64> = vals.iter().zip(&shifts).map(|(v, s)| v >> s).collect();
            let mut w = BitWriter::new();
            w.write_bits(0, lead);
            let mut bits = u64::from(lead);
            for &v in &vals {
                w.write_rice(v, k);
                bits += rice_bits(v, k);
            }
            prop_assert_eq!(w.len_bits(), bits);
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            for &v in &vals {
                prop_assert_eq!(r.read_rice(k), Some(v));
            }
            prop_assert_eq!(r.remaining(), 0);
            prop_assert_eq!(r.read_rice(k), None);
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            let mut got = Vec::new();
            prop_assert!(r.read_rices(k, vals.len(), |v| got.push(v)).is_some());
            prop_assert_eq!(&got, &vals);
            prop_assert_eq!(r.remaining(), 0);
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            prop_assert!(r.read_rices(k, vals.len() + 1, |_| ()).is_none());
        }
    }

    proptest! {
        #[test]
        fn runs_of_truncated_binary_read_as_single_values(
            xs in proptest::collection::vec(any::<u64>(), 0..200),
            m in prop_oneof![1u64..5, 1u64..1000, 1u64..=(1 << 62)],
            lead in 0u32..8,
        ) {
            let xs: Vec<u64> = xs.iter().map(|x| x % m).collect();
            let mut w = BitWriter::new();
            w.write_bits(0, lead);
            for &x in &xs {
                w.write_below(x, m);
            }
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            let mut got = Vec::new();
            prop_assert_eq!(r.read_belows(m, xs.len(), |x| { got.push(x); true }), Some(xs.len()));
            prop_assert_eq!(&got, &xs);
            prop_assert_eq!(r.remaining(), 0);
            // Stopped part way, the rest reads on from there.
            if xs.len() > 2 {
                let mut r = BitReader::with_len(w.bytes(), w.len_bits());
                r.read_bits(lead);
                let mut seen = 0;
                prop_assert_eq!(r.read_belows(m, xs.len(), |_| { seen += 1; seen < 2 }), Some(2));
                prop_assert_eq!(r.read_below(m), Some(xs[2]));
            }
            let mut r = BitReader::with_len(w.bytes(), w.len_bits());
            r.read_bits(lead);
            if m > 1 {
                prop_assert_eq!(r.read_belows(m, xs.len() + 1, |_| true), None);
            }
        }
    }

    #[test]
    fn rice_reads_stop_at_the_end_and_at_bad_parameters() {
        let mut w = BitWriter::new();
        w.write_rice(5, 1);
        let r = BitReader::with_len(w.bytes(), w.len_bits() - 1);
        assert_eq!(r.clone().read_rice(1), None);
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).read_rice(64), None);
        assert_eq!(BitReader::new(&[]).read_rice(0), None);
        assert_eq!(BitReader::new(&[0x80]).read_rice(0), Some(0));
    }

    #[test]
    fn truncated_binary_round_trips_near_log2() {
        let mut w = BitWriter::new();
        let ms = [
            1u64,
            2,
            3,
            5,
            7,
            8,
            20,
            267,
            400,
            1 << 40,
            (1 << 62) - 3,
            1 << 62,
        ];
        for &m in &ms {
            for x in [0, m / 3, m / 2, m - 1] {
                w.write_below(x, m);
            }
        }
        let mut r = BitReader::with_len(w.bytes(), w.len_bits());
        for &m in &ms {
            for x in [0, m / 3, m / 2, m - 1] {
                assert_eq!(r.read_below(m), Some(x), "m {m}");
            }
        }
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.read_below(0), None);
        // 20 position pairs in 4.4 bits each rather than 5.
        let mut w = BitWriter::new();
        (0..20).for_each(|x| w.write_below(x, 20));
        assert_eq!(w.len_bits(), 88);
    }
}
