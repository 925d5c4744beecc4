//! The in-memory head: per time partition, per series, one compressed
//! appendable chunk plus a small sorted buffer for out-of-order samples and
//! re-deliveries (which win over the chunk: last write wins).

use crate::codec::HeadChunk;
use crate::types::SeriesId;

/// One series' samples within one head partition.
#[derive(Debug, Clone)]
pub(crate) struct SeriesBuf {
    chunk: HeadChunk,
    /// Samples at or before `chunk.last_ts()`, sorted by time, unique.
    ooo: Vec<(i64, f64)>,
}

impl SeriesBuf {
    pub fn new(t: i64, v: f64) -> Self {
        Self {
            chunk: HeadChunk::new(t, v),
            ooo: Vec::new(),
        }
    }

    /// Inserts a sample; returns true when it (probably) added a new
    /// timestamp rather than overwriting one.
    pub fn insert(&mut self, t: i64, v: f64) -> bool {
        if t > self.chunk.last_ts() {
            self.chunk.push(t, v);
            return true;
        }
        match self.ooo.binary_search_by_key(&t, |s| s.0) {
            Ok(i) => {
                self.ooo[i].1 = v;
                false
            }
            Err(i) => {
                self.ooo.insert(i, (t, v));
                // A timestamp inside the chunk may already be there: the
                // count this feeds is only a sizing hint.
                t != self.chunk.last_ts()
            }
        }
    }

    #[cfg(test)]
    pub fn min_ts(&self) -> i64 {
        match self.ooo.first() {
            Some(&(t, _)) => t.min(self.chunk.first_ts()),
            None => self.chunk.first_ts(),
        }
    }

    #[cfg(test)]
    pub fn max_ts(&self) -> i64 {
        self.chunk.last_ts()
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunk.heap_bytes() + self.ooo.capacity() * 16
    }

    /// Appends the series' samples, sorted and deduplicated (the
    /// out-of-order buffer wins on equal timestamps).
    pub fn decode_into(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        if self.ooo.is_empty() {
            self.chunk.decode_into(ts, vals);
            return;
        }
        let (mut ct, mut cv) = (
            Vec::with_capacity(self.chunk.len()),
            Vec::with_capacity(self.chunk.len()),
        );
        self.chunk.decode_into(&mut ct, &mut cv);
        let (mut i, mut j) = (0, 0);
        while i < ct.len() || j < self.ooo.len() {
            if j == self.ooo.len() || (i < ct.len() && ct[i] < self.ooo[j].0) {
                ts.push(ct[i]);
                vals.push(cv[i]);
                i += 1;
            } else {
                if i < ct.len() && ct[i] == self.ooo[j].0 {
                    i += 1;
                }
                ts.push(self.ooo[j].0);
                vals.push(self.ooo[j].1);
                j += 1;
            }
        }
    }
}

/// All head series of one time partition `[start, start + window)`.
///
/// Series sit in a dense vector in the order they first arrived, found
/// through a slot table indexed by series id: samples arriving in the same
/// order every scrape walk the vector front to back, which the hardware
/// prefetches, where a hash table would miss the cache on every sample.
#[derive(Debug, Default)]
pub(crate) struct HeadPartition {
    /// Position in `series` by series id; `u32::MAX` for none.
    slot: Vec<u32>,
    series: Vec<(SeriesId, SeriesBuf)>,
    pub samples: usize,
}

impl HeadPartition {
    pub fn insert(&mut self, sid: SeriesId, t: i64, v: f64) {
        let i = sid as usize;
        match self.slot.get(i).copied().filter(|&p| p != u32::MAX) {
            Some(p) => {
                if self.series[p as usize].1.insert(t, v) {
                    self.samples += 1;
                }
            }
            None => {
                if self.slot.len() <= i {
                    self.slot.resize(i + 1, u32::MAX);
                }
                self.slot[i] = self.series.len() as u32;
                self.series.push((sid, SeriesBuf::new(t, v)));
                self.samples += 1;
            }
        }
    }

    /// The samples of series `sid`, if it has any here.
    pub fn get(&self, sid: SeriesId) -> Option<&SeriesBuf> {
        let p = *self.slot.get(sid as usize)?;
        self.series.get(p as usize).map(|(_, s)| s)
    }

    /// Every series, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesId, &SeriesBuf)> {
        self.series.iter().map(|(sid, s)| (*sid, s))
    }

    pub fn heap_bytes(&self) -> usize {
        self.slot.capacity() * 4
            + self.series.capacity() * std::mem::size_of::<(SeriesId, SeriesBuf)>()
            + self
                .series
                .iter()
                .map(|(_, s)| s.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_and_repeated_samples_merge_last_write_wins() {
        let mut s = SeriesBuf::new(10, 1.0);
        s.insert(20, 2.0);
        s.insert(30, 3.0);
        assert!(s.insert(15, 1.5), "out of order adds");
        s.insert(20, 20.0);
        assert!(!s.insert(20, 21.0), "re-delivery overwrites");
        assert!(!s.insert(30, 30.0));
        let (mut t, mut v) = (Vec::new(), Vec::new());
        s.decode_into(&mut t, &mut v);
        assert_eq!(t, vec![10, 15, 20, 30]);
        assert_eq!(v, vec![1.0, 1.5, 21.0, 30.0]);
        assert_eq!((s.min_ts(), s.max_ts()), (10, 30));
    }
}
