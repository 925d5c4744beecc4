//! The stored chunk blob: a format byte followed by a sealed chunk of the
//! embedded engine's codec (`tsdb::codec`: delta-of-delta timestamps and
//! the smallest of constant, decimal-integer and XOR value encodings), and
//! the digest that makes a sub-chunk's primary key content-addressed.
//!
//! ```text
//! blob = u8 format (1) | tsdb sealed chunk
//! ```

use tsdb::codec::{decode_chunk, encode_chunk};

/// The only blob format written so far.
pub const FORMAT_V1: u8 = 1;

/// Why a blob could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The blob is empty.
    #[error("empty chunk blob")]
    Empty,
    /// The format byte is unknown (written by a newer build?).
    #[error("unknown chunk format {0}")]
    UnknownFormat(u8),
    /// The codec refused the bytes.
    #[error("chunk decode failed: {0}")]
    Decode(&'static str),
    /// Bytes follow the chunk.
    #[error("{0} trailing bytes after the chunk")]
    Trailing(usize),
    /// Timestamps are not strictly increasing.
    #[error("timestamps are not strictly increasing at sample {0}")]
    Unordered(usize),
}

impl From<tsdb::codec::DecodeError> for ChunkError {
    fn from(e: tsdb::codec::DecodeError) -> Self {
        ChunkError::Decode(e.0)
    }
}

/// Encodes strictly increasing timestamps and their values into a blob.
/// `ts` and `vals` have equal length (the caller builds them together).
pub fn encode(ts: &[i64], vals: &[f64]) -> Vec<u8> {
    debug_assert_eq!(ts.len(), vals.len());
    let n = ts.len().min(vals.len());
    let mut out = Vec::with_capacity(16 + n * 2);
    out.push(FORMAT_V1);
    encode_chunk(&ts[..n], &vals[..n], &mut out);
    out
}

/// Decodes a blob, appending to `ts` and `vals`; never panics on bad bytes.
pub fn decode(blob: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), ChunkError> {
    let (&format, rest) = blob.split_first().ok_or(ChunkError::Empty)?;
    if format != FORMAT_V1 {
        return Err(ChunkError::UnknownFormat(format));
    }
    let start = ts.len();
    let mut pos = 0;
    let res = decode_chunk(rest, &mut pos, ts, vals);
    if let Err(e) = res {
        ts.truncate(start);
        vals.truncate(start);
        return Err(e.into());
    }
    if pos != rest.len() {
        ts.truncate(start);
        vals.truncate(start);
        return Err(ChunkError::Trailing(rest.len() - pos));
    }
    if let Some(i) = ts[start..].windows(2).position(|w| w[1] <= w[0]) {
        ts.truncate(start);
        vals.truncate(start);
        return Err(ChunkError::Unordered(i + 1));
    }
    Ok(())
}

/// 64-bit FNV-1a of a blob, as the signed `digest` clustering column.
pub fn digest(blob: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in blob {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
        (
            any::<i64>(),
            prop::collection::vec((1i64..200_000, any::<u64>(), 0u8..4), 0..300),
        )
            .prop_map(|(start, steps)| {
                let mut t = start / 4;
                let mut ts = Vec::new();
                let mut vals = Vec::new();
                for (i, (d, bits, kind)) in steps.into_iter().enumerate() {
                    t = t.saturating_add(d);
                    if ts.last() == Some(&t) {
                        break;
                    }
                    ts.push(t);
                    vals.push(match kind {
                        0 => f64::from_bits(bits),
                        1 => (bits % 1000) as f64 / 10.0,
                        2 => 42.0,
                        _ => i as f64,
                    });
                }
                (ts, vals)
            })
    }

    proptest! {
        #[test]
        fn round_trips_bit_exactly((ts, vals) in series()) {
            let blob = encode(&ts, &vals);
            let (mut t2, mut v2) = (vec![7], vec![7.0]);
            decode(&blob, &mut t2, &mut v2).unwrap();
            prop_assert_eq!(&t2[1..], &ts[..]);
            let bits: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
            let bits2: Vec<u64> = v2[1..].iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(bits2, bits);
            prop_assert_eq!(digest(&blob), digest(&encode(&ts, &vals)));
        }

        #[test]
        fn garbage_never_panics_and_leaves_outputs_unchanged(
            blob in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            let (mut ts, mut vals) = (vec![1], vec![1.0]);
            if decode(&blob, &mut ts, &mut vals).is_err() {
                prop_assert_eq!(ts, vec![1]);
                prop_assert_eq!(vals.len(), 1);
            }
        }

        #[test]
        fn truncated_blobs_are_errors((ts, vals) in series(), cut in 1usize..64) {
            prop_assume!(!ts.is_empty());
            let blob = encode(&ts, &vals);
            let cut = cut.min(blob.len() - 1);
            let (mut t2, mut v2) = (Vec::new(), Vec::new());
            // A shorter prefix may decode to a valid chunk only if it still
            // holds every sample; it never yields a wrong sample.
            if decode(&blob[..blob.len() - cut], &mut t2, &mut v2).is_ok() {
                prop_assert_eq!(t2, ts);
            }
        }
    }

    #[test]
    fn format_errors() {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        assert_eq!(decode(&[], &mut t, &mut v), Err(ChunkError::Empty));
        assert_eq!(
            decode(&[9, 0], &mut t, &mut v),
            Err(ChunkError::UnknownFormat(9))
        );
        let mut blob = encode(&[1, 2], &[1.0, 2.0]);
        blob.push(0);
        assert_eq!(decode(&blob, &mut t, &mut v), Err(ChunkError::Trailing(1)));
        let blob = encode(&[5, 5], &[1.0, 2.0]);
        assert_eq!(decode(&blob, &mut t, &mut v), Err(ChunkError::Unordered(1)));
        assert!(t.is_empty() && v.is_empty());
    }

    #[test]
    fn compact_for_regular_series() {
        let ts: Vec<i64> = (0..120).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let vals: Vec<f64> = (0..120).map(|i| 1000.0 + i as f64).collect();
        let blob = encode(&ts, &vals);
        assert!(
            blob.len() < 120,
            "120 regular samples took {} bytes",
            blob.len()
        );
    }
}
