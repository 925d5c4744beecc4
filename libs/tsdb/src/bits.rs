//! Big-endian bit streams: the writer and reader under every chunk codec.
//!
//! The writer appends to a plain `Vec<u8>` (the last byte may be partly
//! filled, padded with zeros), so a head chunk can be read while it is still
//! being appended to without copying. The reader never panics on short or
//! garbage input: every read past the declared end returns `None`.

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
