//! Series interning and the temporal name index: symbol tables per key
//! part, postings (symbol -> series ids), and per-series presence
//! intervals answering "which series existed during [t0, t1)".
//!
//! The index is the fold of a log of add/remove operations: the first
//! sample of a series after a gap longer than `gap` adds it at that time, a
//! gap removes it after its last sample, retention removes what it deletes.
//! The log itself is the WAL (every add is implied by a sample record); at
//! every WAL checkpoint a snapshot of the folded state is written
//! (`index.snap`), so opening and lookups never scan history.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use fnv::FnvHashMap;
use globset::{Glob, GlobMatcher};
use regex::Regex;

use crate::codec::{get_uvarint, get_varint, put_uvarint, put_varint};
use crate::error::{Error, Result};
use crate::types::{KeyPart, SeriesId, SeriesKey};

/// A pattern on one key part.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Matches everything (`*`).
    Any,
    /// Exactly this name.
    Literal(String),
    /// A shell-style glob (`http/*`, `web-??`, `{a,b}`); `*` crosses `/`.
    Glob(GlobMatcher),
    /// A regex, anchored at both ends.
    Regex(Regex),
}

impl Matcher {
    /// Parses AQL argument syntax: `*` = any, `/re/` = regex, a string with
    /// glob metacharacters (`*?[{`) = glob, anything else (and the reserved
    /// `*all*`) a literal.
    pub fn parse(pattern: &str) -> Result<Self> {
        if pattern == "*" {
            return Ok(Matcher::Any);
        }
        if pattern == crate::types::ALL_SOURCES {
            return Ok(Matcher::Literal(pattern.to_string()));
        }
        if pattern.len() >= 2 && pattern.starts_with('/') && pattern.ends_with('/') {
            return Self::regex(&pattern[1..pattern.len() - 1]);
        }
        if pattern.contains(['*', '?', '[', '{']) {
            return Self::glob(pattern);
        }
        Ok(Matcher::Literal(pattern.to_string()))
    }

    /// A glob matcher.
    pub fn glob(pattern: &str) -> Result<Self> {
        Glob::new(pattern)
            .map(|g| Matcher::Glob(g.compile_matcher()))
            .map_err(|e| Error::BadPattern {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
    }

    /// A regex matcher (anchored).
    pub fn regex(pattern: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Matcher::Regex)
            .map_err(|e| Error::BadPattern {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
    }

    /// A literal matcher.
    pub fn literal(name: &str) -> Self {
        Matcher::Literal(name.to_string())
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Literal(l) => l == name,
            Matcher::Glob(g) => g.is_match(name),
            Matcher::Regex(r) => r.is_match(name),
        }
    }
}

/// Matchers on the three key parts: `ts(service, sources, metrics)`.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Service matcher.
    pub service: Matcher,
    /// Source matcher ([`crate::ALL_SOURCES`] selects service aggregates).
    pub source: Matcher,
    /// Metric matcher.
    pub metric: Matcher,
}

impl Selector {
    /// Parses three AQL-style arguments (see [`Matcher::parse`]).
    pub fn parse(service: &str, source: &str, metric: &str) -> Result<Self> {
        Ok(Self {
            service: Matcher::parse(service)?,
            source: Matcher::parse(source)?,
            metric: Matcher::parse(metric)?,
        })
    }

    /// The matcher of one part.
    pub fn part(&self, part: KeyPart) -> &Matcher {
        match part {
            KeyPart::Service => &self.service,
            KeyPart::Source => &self.source,
            KeyPart::Metric => &self.metric,
        }
    }
}

/// Interned strings of one key part, with postings.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    names: Vec<Box<str>>,
    /// Names hash with foldhash: several times faster than FNV on strings
    /// of a dozen bytes, and seeded per process.
    map: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    postings: Vec<Vec<SeriesId>>,
}

impl Symbols {
    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.map.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.map.insert(name.into(), id);
        self.postings.push(Vec::new());
        id
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Series ids whose part matches `m`, sorted.
    fn matching(&self, m: &Matcher) -> Vec<SeriesId> {
        match m {
            Matcher::Literal(l) => self
                .get(l)
                .map(|id| self.postings[id as usize].clone())
                .unwrap_or_default(),
            _ => {
                let mut out: Vec<SeriesId> = Vec::new();
                for (id, name) in self.names.iter().enumerate() {
                    if m.matches(name) {
                        out.extend_from_slice(&self.postings[id]);
                    }
                }
                out.sort_unstable();
                out
            }
        }
    }
}

/// Symbol ids of one series.
pub(crate) type SymKey = (u32, u32, u32);

/// All interned series and the temporal name index.
#[derive(Debug)]
pub(crate) struct Index {
    pub services: Symbols,
    pub sources: Symbols,
    pub metrics: Symbols,
    pub keys: Vec<SymKey>,
    /// Series by source symbol, then (service, metric) symbols: the series
    /// of one scrape target sit together, so a scrape's rows find their ids
    /// in one small table instead of all over one large one.
    lookup: Vec<FnvHashMap<(u32, u32), SeriesId>>,
    /// Presence intervals per series, sorted and disjoint, inclusive.
    intervals: Vec<Vec<(i64, i64)>>,
    /// Last WAL generation in which each series was declared.
    pub wal_gen: Vec<u32>,
    gap: i64,
}

impl Index {
    pub fn new(gap: i64) -> Self {
        Self {
            services: Symbols::default(),
            sources: Symbols::default(),
            metrics: Symbols::default(),
            keys: Vec::new(),
            lookup: Vec::new(),
            intervals: Vec::new(),
            wal_gen: Vec::new(),
            gap,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Interns a service name on its own (for epochs of services whose
    /// series are gone).
    pub fn intern_service(&mut self, service: &str) -> u32 {
        self.services.intern(service)
    }

    /// The id of an existing series.
    pub fn get(&self, service: &str, source: &str, metric: &str) -> Option<SeriesId> {
        let k = (
            self.services.get(service)?,
            self.sources.get(source)?,
            self.metrics.get(metric)?,
        );
        self.find(k)
    }

    fn find(&self, (service, source, metric): SymKey) -> Option<SeriesId> {
        self.lookup
            .get(source as usize)?
            .get(&(service, metric))
            .copied()
    }

    /// Interns a series; returns its id and whether it is new.
    pub fn intern(&mut self, service: &str, source: &str, metric: &str) -> (SeriesId, bool) {
        let k = (
            self.services.intern(service),
            self.sources.intern(source),
            self.metrics.intern(metric),
        );
        self.intern_ids(k)
    }

    /// The symbol id of a name of one key part, interned if new.
    pub fn symbol(&mut self, part: KeyPart, name: &str) -> u32 {
        match part {
            KeyPart::Service => self.services.intern(name),
            KeyPart::Source => self.sources.intern(name),
            KeyPart::Metric => self.metrics.intern(name),
        }
    }

    /// Interns a series given its parts' symbol ids (see [`Index::symbol`]);
    /// returns its id and whether it is new.
    pub fn intern_ids(&mut self, k: SymKey) -> (SeriesId, bool) {
        if let Some(id) = self.find(k) {
            return (id, false);
        }
        let id = self.keys.len() as SeriesId;
        self.keys.push(k);
        if self.lookup.len() <= k.1 as usize {
            self.lookup
                .resize_with(k.1 as usize + 1, FnvHashMap::default);
        }
        self.lookup[k.1 as usize].insert((k.0, k.2), id);
        self.intervals.push(Vec::new());
        self.wal_gen.push(u32::MAX);
        self.services.postings[k.0 as usize].push(id);
        self.sources.postings[k.1 as usize].push(id);
        self.metrics.postings[k.2 as usize].push(id);
        (id, true)
    }

    pub fn key(&self, id: SeriesId) -> SeriesKey {
        let (a, b, c) = self.keys[id as usize];
        SeriesKey::new(
            self.services.name(a),
            self.sources.name(b),
            self.metrics.name(c),
        )
    }

    pub fn part(&self, id: SeriesId, part: KeyPart) -> &str {
        let (a, b, c) = self.keys[id as usize];
        match part {
            KeyPart::Service => self.services.name(a),
            KeyPart::Source => self.sources.name(b),
            KeyPart::Metric => self.metrics.name(c),
        }
    }

    /// Records that series `id` had data over `[lo, hi]`.
    #[inline]
    pub fn touch(&mut self, id: SeriesId, lo: i64, hi: i64) {
        let iv = &mut self.intervals[id as usize];
        if let Some(last) = iv
            .last_mut()
            .filter(|l| lo >= l.0 && lo <= l.1.saturating_add(self.gap))
        {
            last.1 = last.1.max(hi);
            return;
        }
        let gap = self.gap;
        let i = iv.partition_point(|&(_, e)| e.saturating_add(gap) < lo);
        let mut j = i;
        let (mut s, mut e) = (lo, hi);
        while j < iv.len() && iv[j].0 <= hi.saturating_add(gap) {
            s = s.min(iv[j].0);
            e = e.max(iv[j].1);
            j += 1;
        }
        iv.splice(i..j, [(s, e)]);
    }

    /// Removes presence before `cutoff` (retention).
    pub fn forget_before(&mut self, cutoff: i64) {
        for iv in &mut self.intervals {
            iv.retain(|&(_, e)| e >= cutoff);
            if let Some(first) = iv.first_mut() {
                first.0 = first.0.max(cutoff);
            }
        }
    }

    /// Whether series `id` had data during `[t0, t1)`.
    pub fn present(&self, id: SeriesId, t0: i64, t1: i64) -> bool {
        let iv = &self.intervals[id as usize];
        let i = iv.partition_point(|&(_, e)| e < t0);
        i < iv.len() && iv[i].0 < t1
    }

    /// Series matching the selector that existed during `[t0, t1)`, sorted
    /// by id. Uses the most selective literal's postings first.
    pub fn select(&self, sel: &Selector, t0: i64, t1: i64) -> Vec<SeriesId> {
        // `*` constrains nothing: it takes no postings.
        let mut lists: Vec<Vec<SeriesId>> = [
            (&self.services, &sel.service),
            (&self.sources, &sel.source),
            (&self.metrics, &sel.metric),
        ]
        .into_iter()
        .filter(|(_, m)| !matches!(m, Matcher::Any))
        .map(|(symbols, m)| symbols.matching(m))
        .collect();
        lists.sort_by_key(Vec::len);
        let mut lists = lists.into_iter();
        let mut cur: Vec<SeriesId> = match lists.next() {
            Some(first) => lists.fold(first, |cur, other| intersect(&cur, &other)),
            None => (0..self.keys.len() as SeriesId).collect(),
        };
        cur.retain(|&id| self.present(id, t0, t1));
        cur
    }

    /// Writes the snapshot file atomically.
    pub fn write_snapshot(&self, path: &Path) -> Result<()> {
        let mut out = Vec::with_capacity(self.keys.len() * 48);
        out.extend_from_slice(b"AERIEIX1");
        put_uvarint(&mut out, self.keys.len() as u64);
        for id in 0..self.keys.len() as SeriesId {
            for part in [KeyPart::Service, KeyPart::Source, KeyPart::Metric] {
                let s = self.part(id, part);
                put_uvarint(&mut out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            let iv = &self.intervals[id as usize];
            put_uvarint(&mut out, iv.len() as u64);
            for &(s, e) in iv {
                put_varint(&mut out, s);
                put_varint(&mut out, e);
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let tmp = path.with_extension("snap.tmp");
        fs::write(&tmp, &out).map_err(|e| Error::io("write", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
        Ok(())
    }

    /// Loads a snapshot written by [`Self::write_snapshot`] (if present).
    pub fn load_snapshot(&mut self, path: &Path) -> Result<()> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let corrupt = |reason: &str| Error::IndexCorrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if data.len() < 12 || &data[..8] != b"AERIEIX1" {
            return Err(corrupt("bad header"));
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut pos = 8;
        let bad = |_| corrupt("truncated");
        let n = get_uvarint(body, &mut pos).map_err(bad)?;
        for _ in 0..n {
            let mut parts = [""; 3];
            for p in &mut parts {
                let len = get_uvarint(body, &mut pos).map_err(bad)? as usize;
                let bytes = body
                    .get(pos..pos + len)
                    .ok_or_else(|| corrupt("truncated name"))?;
                *p = std::str::from_utf8(bytes).map_err(|_| corrupt("name is not utf-8"))?;
                pos += len;
            }
            let (id, _) = self.intern(parts[0], parts[1], parts[2]);
            let k = get_uvarint(body, &mut pos).map_err(bad)?;
            for _ in 0..k {
                let s = get_varint(body, &mut pos).map_err(bad)?;
                let e = get_varint(body, &mut pos).map_err(bad)?;
                self.touch(id, s, e);
            }
        }
        Ok(())
    }

    /// Distinct names of `part` among the given series, sorted.
    pub fn names_of(&self, ids: &[SeriesId], part: KeyPart) -> Vec<String> {
        let mut v: Vec<&str> = ids.iter().map(|&id| self.part(id, part)).collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(str::to_string).collect()
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 12
            + self.lookup.capacity() * std::mem::size_of::<FnvHashMap<(u32, u32), SeriesId>>()
            + self.lookup.iter().map(|m| m.capacity() * 13).sum::<usize>()
            + self.intervals.capacity() * 24
            + self
                .intervals
                .iter()
                .map(|v| v.capacity() * 16)
                .sum::<usize>()
            + self.wal_gen.capacity() * 4
            + self.len() * 12
    }
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_aql_arguments() {
        assert!(matches!(Matcher::parse("*").unwrap(), Matcher::Any));
        assert!(
            Matcher::parse("http/*")
                .unwrap()
                .matches("http/requests/count")
        );
        assert!(!Matcher::parse("http/*").unwrap().matches("jvm/gc"));
        assert!(Matcher::parse("/web-\\d+/").unwrap().matches("web-12"));
        assert!(!Matcher::parse("/web-\\d+/").unwrap().matches("xweb-12"));
        assert!(Matcher::parse("cpu").unwrap().matches("cpu"));
        assert!(Matcher::parse("/(/").is_err());
    }

    #[test]
    fn temporal_lookup_respects_gaps_and_retention() {
        let mut ix = Index::new(100);
        let (a, _) = ix.intern("web", "h1", "http/requests");
        let (b, _) = ix.intern("web", "h2", "jvm/gc");
        ix.touch(a, 0, 0);
        ix.touch(a, 50, 50);
        ix.touch(a, 1000, 1000);
        ix.touch(b, 500, 600);
        let sel = Selector::parse("web", "*", "http/*").unwrap();
        assert_eq!(ix.select(&sel, 0, 10), vec![a]);
        assert_eq!(
            ix.select(&sel, 51, 999),
            Vec::<SeriesId>::new(),
            "gap removes the series"
        );
        assert_eq!(ix.select(&sel, 900, 1001), vec![a]);
        let all = Selector::parse("*", "*", "*").unwrap();
        assert_eq!(ix.select(&all, 550, 560), vec![b]);
        ix.forget_before(700);
        assert_eq!(ix.select(&all, 0, 700), Vec::<SeriesId>::new());
        assert_eq!(ix.names_of(&[a, b], KeyPart::Source), vec!["h1", "h2"]);
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.snap");
        let mut ix = Index::new(10);
        let (a, _) = ix.intern("s", "h", "m");
        ix.touch(a, 5, 7);
        ix.touch(a, 100, 200);
        ix.write_snapshot(&path).unwrap();
        let mut back = Index::new(10);
        back.load_snapshot(&path).unwrap();
        assert_eq!(back.intervals, ix.intervals);
        assert_eq!(back.key(0), SeriesKey::new("s", "h", "m"));
    }
}
