//! Name hygiene: junk names and cardinality bombs are rejected before anything is
//! stored, each rejection counted by reason, and the last rejected names of every
//! source kept for the admin endpoint.
//!
//! A name is rejected when it is empty or not UTF-8 text, has a control character,
//! holds a JVM identity string (`[I@579b7698`, `Foo@1b6d3586`), is longer than the
//! limit, or has a segment that would explode cardinality (a UUID, a long hex or
//! numeric id, an IPv4 address). A value is rejected when it is NaN or infinite
//! where that makes no sense (counters, counts, sums, buckets). Each source may have
//! at most `max_series_per_source` distinct metrics; new ones past that are rejected.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use serde::Serialize;
use stats::{Counter, StatsReceiver};

use crate::model::Fnv1a;

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        Fnv1a::finish(self)
    }
    fn write(&mut self, bytes: &[u8]) {
        Fnv1a::write(self, bytes)
    }
}

/// A `HashMap` keyed by FNV-1a, fast for short names.
pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// Why a sample was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Empty, or otherwise not a name.
    InvalidName,
    /// Has a control character.
    ControlChar,
    /// Holds a JVM identity string such as `[I@579b7698`.
    JvmIdentity,
    /// Longer than the limit.
    TooLong,
    /// Has a UUID segment.
    Uuid,
    /// Has a long hex or numeric id segment.
    HexId,
    /// Has an IPv4 address segment.
    IpAddress,
    /// The source already has as many series as its limit allows.
    SeriesLimit,
    /// NaN or infinite where the value must be finite.
    NonFinite,
}

impl Reason {
    /// Every reason, in stats order.
    pub const ALL: [Reason; 9] = [
        Reason::InvalidName,
        Reason::ControlChar,
        Reason::JvmIdentity,
        Reason::TooLong,
        Reason::Uuid,
        Reason::HexId,
        Reason::IpAddress,
        Reason::SeriesLimit,
        Reason::NonFinite,
    ];

    /// The reason's name in stats and series labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidName => "invalid_name",
            Reason::ControlChar => "control_char",
            Reason::JvmIdentity => "jvm_identity",
            Reason::TooLong => "too_long",
            Reason::Uuid => "uuid",
            Reason::HexId => "hex_id",
            Reason::IpAddress => "ip_address",
            Reason::SeriesLimit => "series_limit",
            Reason::NonFinite => "non_finite",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One rejection, with a message naming the offending thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// For people, e.g. `metric "a\u{1}b" rejected: control character at byte 1`.
    pub detail: String,
}

fn reject(reason: Reason, name: &str, why: impl std::fmt::Display) -> Rejection {
    let mut shown: String = name.chars().take(120).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    Rejection {
        reason,
        detail: format!("metric {shown:?} rejected: {why}"),
    }
}

/// Checks one name (a metric, possibly with its `{labels}` block) against the rules.
pub fn check_name(name: &str, max_bytes: usize) -> Result<(), Rejection> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(reject(Reason::InvalidName, name, "empty name"));
    }
    if b.len() > max_bytes {
        return Err(reject(
            Reason::TooLong,
            name,
            format_args!("{} bytes, longer than the limit of {max_bytes}", b.len()),
        ));
    }
    for (i, &c) in b.iter().enumerate() {
        if c < 0x20 || c == 0x7f {
            return Err(reject(
                Reason::ControlChar,
                name,
                format_args!("control character at byte {i}"),
            ));
        }
        if c == b'@' {
            let hex = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if hex >= 6 {
                return Err(reject(
                    Reason::JvmIdentity,
                    name,
                    format_args!("JVM identity string at byte {i}"),
                ));
            }
        }
    }
    // Tokens: runs of alphanumerics, '-' and '.'.
    let mut start = 0;
    for i in 0..=b.len() {
        let boundary =
            i == b.len() || !(b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'.');
        if boundary {
            if i > start {
                check_token(name, &name[start..i], start)?;
            }
            start = i + 1;
        }
    }
    Ok(())
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn check_token(name: &str, token: &str, at: usize) -> Result<(), Rejection> {
    if token.len() < 7 {
        return Ok(());
    }
    // UUID: 8-4-4-4-12 hex groups somewhere in the token.
    let groups: Vec<&str> = token.split(['-', '.']).collect();
    if token.contains('-') {
        for w in groups.windows(5) {
            if [8, 4, 4, 4, 12]
                .iter()
                .zip(w)
                .all(|(len, g)| g.len() == *len && is_hex(g))
            {
                return Err(reject(
                    Reason::Uuid,
                    name,
                    format_args!("UUID at byte {at}"),
                ));
            }
        }
    }
    if token.contains('.') {
        let parts: Vec<&str> = token.split('.').collect();
        for w in parts.windows(4) {
            if w.iter().all(|p| {
                !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|c| c.is_ascii_digit())
                    && p.parse::<u16>().is_ok_and(|v| v < 256)
            }) {
                return Err(reject(
                    Reason::IpAddress,
                    name,
                    format_args!("IP address at byte {at}"),
                ));
            }
        }
    }
    for g in groups {
        let digits = g.bytes().filter(u8::is_ascii_digit).count();
        let hexid = is_hex(g)
            && ((g.len() >= 8 && digits > 0 && digits < g.len())
                || g.len() >= 16
                || (digits == g.len() && g.len() >= 10));
        if hexid {
            return Err(reject(
                Reason::HexId,
                name,
                format_args!("id-like segment \"{g}\" at byte {at}"),
            ));
        }
    }
    Ok(())
}

/// Limits and rules of hygiene.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest name accepted, bytes.
    pub max_name_bytes: usize,
    /// Most distinct metrics per source.
    pub max_series_per_source: usize,
    /// How many rejected names per source are kept for the admin endpoint.
    pub keep_rejected: usize,
}

/// The collector-wide rejection counters, `collector/rejected/<reason>`.
#[derive(Debug, Clone)]
pub struct RejectStats {
    counters: [Counter; 9],
}

impl RejectStats {
    /// Registers the counters under `stats`.
    pub fn new(stats: &StatsReceiver) -> Self {
        let scope = stats.scope("rejected");
        Self {
            counters: Reason::ALL.map(|r| scope.counter(r.as_str())),
        }
    }

    /// Counts one rejection.
    pub fn count(&self, reason: Reason) {
        self.counters[reason.index()].incr();
    }

    /// The count so far for `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.counters[reason.index()].get()
    }
}

/// A rejected name as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedName {
    /// The name (metric, with its labels if any).
    pub metric: String,
    /// Why.
    pub reason: Reason,
    /// The message.
    pub detail: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// Per-source hygiene state: the metrics accepted so far (the series limit and a
/// fast path for names seen before), and the last rejected names.
#[derive(Debug)]
pub struct SourceGuard {
    limits: Limits,
    /// Accepted metrics and the generation (scrape) they were last seen in.
    known: FnvMap<Box<str>, u32>,
    generation: u32,
    rejected: VecDeque<RejectedName>,
    /// Rejections of the current generation, by reason.
    pub round: [u64; 9],
}

/// How many generations a metric stays counted against the limit after it was last seen.
const FORGET_AFTER: u32 = 10;

impl SourceGuard {
    /// A fresh guard.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            known: FnvMap::default(),
            generation: 0,
            rejected: VecDeque::new(),
            round: [0; 9],
        }
    }

    /// Starts a new generation (one scrape or push): resets the per-round counts
    /// and forgets metrics not seen for a while.
    pub fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.round = [0; 9];
        if self.generation.is_multiple_of(FORGET_AFTER) {
            let g = self.generation;
            self.known
                .retain(|_, seen| g.wrapping_sub(*seen) <= FORGET_AFTER);
        }
    }

    /// Admits `metric` with `value`, or says why not (and records it).
    pub fn admit(
        &mut self,
        metric: &str,
        value: f64,
        must_be_finite: bool,
        stats: &RejectStats,
    ) -> Result<(), Reason> {
        self.admit_detailed(metric, value, must_be_finite, stats)
            .map_err(|r| r.reason)
    }

    /// [`SourceGuard::admit`], saying why in words too.
    pub fn admit_detailed(
        &mut self,
        metric: &str,
        value: f64,
        must_be_finite: bool,
        stats: &RejectStats,
    ) -> Result<(), Rejection> {
        if must_be_finite && !value.is_finite() {
            let r = reject(
                Reason::NonFinite,
                metric,
                format_args!("value {value} must be finite"),
            );
            return Err(self.record(metric, r, stats));
        }
        if let Some(seen) = self.known.get_mut(metric) {
            *seen = self.generation;
            return Ok(());
        }
        if let Err(r) = check_name(metric, self.limits.max_name_bytes) {
            return Err(self.record(metric, r, stats));
        }
        if self.known.len() >= self.limits.max_series_per_source {
            let r = reject(
                Reason::SeriesLimit,
                metric,
                format_args!(
                    "the source already has {} series (hygiene.max_series_per_source)",
                    self.known.len()
                ),
            );
            return Err(self.record(metric, r, stats));
        }
        self.known.insert(metric.into(), self.generation);
        Ok(())
    }

    fn record(&mut self, metric: &str, r: Rejection, stats: &RejectStats) -> Rejection {
        stats.count(r.reason);
        self.round[r.reason.index()] += 1;
        if self.limits.keep_rejected > 0 {
            if self.rejected.len() >= self.limits.keep_rejected {
                self.rejected.pop_front();
            }
            self.rejected.push_back(RejectedName {
                metric: metric.chars().take(512).collect(),
                reason: r.reason,
                detail: r.detail.clone(),
                at_ms: crate::model::now_ms(),
            });
        }
        r
    }

    /// The last rejected names, oldest first.
    pub fn rejected(&self) -> Vec<RejectedName> {
        self.rejected.iter().cloned().collect()
    }

    /// Rejections of the current round, by reason (only reasons with a count).
    pub fn round_counts(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .iter()
            .map(|r| (*r, self.round[r.index()]))
            .filter(|(_, n)| *n > 0)
    }

    /// Number of metrics counted against the limit.
    pub fn series(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> Option<Reason> {
        check_name(name, 200).err().map(|r| r.reason)
    }

    #[test]
    fn good_names_pass() {
        for n in [
            "srv/http/request_latency_ms.p9999",
            "jvm/gc/msec",
            "http_requests_total{code=\"200\",method=\"post\"}",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
            "h_bucket{le=\"+Inf\"}",
            "rpc{quantile=\"0.99\"}",
            "go_info{version=\"go1.19.8\"}",
            "node_uname_info{release=\"6.1.0-18-amd64\"}",
            "finagle/clnt/cuckoo/deadbeef",
            "accepted/facade/decade",
        ] {
            assert_eq!(reason(n), None, "{n}");
        }
    }

    #[test]
    fn junk_is_rejected_by_reason() {
        assert_eq!(reason(""), Some(Reason::InvalidName));
        assert_eq!(reason("[I@579b7698"), Some(Reason::JvmIdentity));
        assert_eq!(
            reason("pool/java.lang.Object@1b6d3586/size"),
            Some(Reason::JvmIdentity)
        );
        assert_eq!(reason("a\u{1}b"), Some(Reason::ControlChar));
        assert_eq!(reason(&"x".repeat(201)), Some(Reason::TooLong));
        assert_eq!(
            reason("req/123e4567-e89b-12d3-a456-426614174000/count"),
            Some(Reason::Uuid)
        );
        assert_eq!(
            reason("user{id=\"123e4567-e89b-12d3-a456-426614174000\"}"),
            Some(Reason::Uuid)
        );
        assert_eq!(reason("sess/5f3a9c21b7/latency"), Some(Reason::HexId));
        assert_eq!(reason("commit/0123456789abcdef0123"), Some(Reason::HexId));
        assert_eq!(reason("ts/1700000000123"), Some(Reason::HexId));
        assert_eq!(reason("clnt/10.0.12.7/requests"), Some(Reason::IpAddress));
        assert_eq!(
            reason("x{peer=\"192.168.1.20:8080\"}"),
            Some(Reason::IpAddress)
        );
        let e = check_name("a\u{1}b", 200).unwrap_err();
        assert_eq!(
            e.detail,
            "metric \"a\\u{1}b\" rejected: control character at byte 1"
        );
    }

    #[test]
    fn guard_limits_series_counts_and_remembers() {
        let stats = RejectStats::new(&StatsReceiver::new());
        let mut g = SourceGuard::new(Limits {
            max_name_bytes: 100,
            max_series_per_source: 2,
            keep_rejected: 2,
        });
        g.begin();
        assert!(g.admit("a", 1.0, false, &stats).is_ok());
        assert!(g.admit("b", 1.0, false, &stats).is_ok());
        assert!(g.admit("a", 2.0, false, &stats).is_ok());
        assert_eq!(g.admit("c", 1.0, false, &stats), Err(Reason::SeriesLimit));
        assert_eq!(g.admit("a", f64::NAN, true, &stats), Err(Reason::NonFinite));
        assert_eq!(
            g.admit("[I@579b7698", 1.0, false, &stats),
            Err(Reason::JvmIdentity)
        );
        assert_eq!(stats.get(Reason::SeriesLimit), 1);
        let kept = g.rejected();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].metric, "[I@579b7698");
        assert_eq!(g.round_counts().count(), 3);
    }
}
