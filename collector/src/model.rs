//! Domain types of the collector: series keys, samples, batches, and the FNV-1a hash.

use std::fmt;

/// The identity of a series: (service, source, metric), as in DESIGN's data model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The group of processes, e.g. `cuckoo`.
    pub service: String,
    /// Where the series comes from, e.g. `host:port`.
    pub source: String,
    /// What is measured, e.g. `srv/http/requests` or `http_requests_total{code="200"}`.
    pub metric: String,
}

impl SeriesKey {
    /// A key from its three parts.
    pub fn new(
        service: impl Into<String>,
        source: impl Into<String>,
        metric: impl Into<String>,
    ) -> Self {
        Self {
            service: service.into(),
            source: source.into(),
            metric: metric.into(),
        }
    }

    /// FNV-1a of the key's parts (separated so that ("ab","c") and ("a","bc") differ);
    /// the routing hash.
    pub fn hash64(&self) -> u64 {
        let mut h = Fnv1a::new();
        h.write(self.service.as_bytes());
        h.write(&[0xff]);
        h.write(self.source.as_bytes());
        h.write(&[0xff]);
        h.write(self.metric.as_bytes());
        h.finish()
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.service, self.source, self.metric)
    }
}

/// One observation: Unix milliseconds and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When, Unix ms.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// A series with its samples, the unit of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its identity.
    pub key: SeriesKey,
    /// Its samples, in the order they were produced.
    pub samples: Vec<Sample>,
}

impl Series {
    /// A series with one sample.
    pub fn one(key: SeriesKey, timestamp_ms: i64, value: f64) -> Self {
        Self {
            key,
            samples: vec![Sample {
                timestamp_ms,
                value,
            }],
        }
    }
}

/// Number of samples in a batch of series.
pub fn sample_count(series: &[Series]) -> usize {
    series.iter().map(|s| s.samples.len()).sum()
}

/// 64-bit FNV-1a, the hash DESIGN names for spreading and cache keys.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher at the FNV offset basis.
    pub fn new() -> Self {
        Self(Self::OFFSET)
    }

    /// Mixes `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    h.finish()
}

/// The current time, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
