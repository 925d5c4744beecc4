//! Values of evaluation: series keys, series, time ranges on the step grid, and compiled matchers.

use std::collections::BTreeSet;
use std::fmt;

use globset::GlobMatcher;
use regex::Regex;

use crate::ast::KeyPart;

/// A series key; a part is `None` when an aggregation removed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeriesKey {
    /// The service.
    pub service: Option<String>,
    /// The source.
    pub source: Option<String>,
    /// The metric.
    pub metric: Option<String>,
}

impl SeriesKey {
    /// A full key.
    pub fn new(service: &str, source: &str, metric: &str) -> Self {
        SeriesKey {
            service: Some(service.to_string()),
            source: Some(source.to_string()),
            metric: Some(metric.to_string()),
        }
    }

    /// One part.
    pub fn part(&self, p: KeyPart) -> Option<&str> {
        match p {
            KeyPart::Service => self.service.as_deref(),
            KeyPart::Source => self.source.as_deref(),
            KeyPart::Metric => self.metric.as_deref(),
        }
    }

    /// The key keeping only `parts`.
    pub fn project(&self, parts: &[KeyPart]) -> SeriesKey {
        let keep =
            |p: KeyPart, v: &Option<String>| if parts.contains(&p) { v.clone() } else { None };
        SeriesKey {
            service: keep(KeyPart::Service, &self.service),
            source: keep(KeyPart::Source, &self.source),
            metric: keep(KeyPart::Metric, &self.metric),
        }
    }
}

impl fmt::Display for SeriesKey {
    /// `service source metric`, `-` for a removed part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "{} {} {}",
            p(&self.service),
            p(&self.source),
            p(&self.metric)
        )
    }
}

/// A series of the result: one point per step that has data, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its key.
    pub key: SeriesKey,
    /// `(t ms, value)` with `t` on the step grid, strictly ascending.
    pub points: Vec<(i64, f64)>,
}

/// Raw samples of one stored series, as a data source returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    /// Its full key.
    pub key: SeriesKey,
    /// `(t ms, value)`, ascending by time.
    pub samples: Vec<(i64, f64)>,
}

/// The value of an evaluated query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A constant.
    Scalar(f64),
    /// Series sorted by key.
    Series(Vec<Series>),
}

/// Where points go: `t = start + k * step` for every `t < end`; the point at
/// `t` stands for `(t - step, t]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    /// First point (ms).
    pub start: i64,
    /// Points lie strictly before this (ms).
    pub end: i64,
    /// Distance between points (ms, > 0).
    pub step: i64,
}

impl Range {
    /// A range.
    pub fn new(start: i64, end: i64, step: i64) -> Self {
        Range { start, end, step }
    }

    /// Number of points on the grid.
    pub fn points(&self) -> i64 {
        if self.end <= self.start || self.step <= 0 {
            0
        } else {
            // In i128: a range may be wider than an i64 holds.
            let n = (self.end as i128 - self.start as i128 - 1) / self.step as i128 + 1;
            n.min(i64::MAX as i128) as i64
        }
    }

    /// The time of the last point (meaningful when `points() > 0`).
    pub fn last(&self) -> i64 {
        self.start + (self.points() - 1).max(0) * self.step
    }

    /// The grid times.
    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.points()).map(move |k| self.start + k * self.step)
    }

    /// Whether `t` is a point of the grid.
    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && t < self.end && (t - self.start) % self.step == 0
    }
}

/// A compiled pattern on one key part.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Every name.
    Any,
    /// Exactly this name.
    Literal(String),
    /// A glob (`*` also matches `/`); the text is kept for display.
    Glob(String, GlobMatcher),
    /// An anchored regex; the text (without anchors) is kept for display.
    Regex(String, Regex),
    /// One of these names (a role's members, resolved).
    OneOf(BTreeSet<String>),
}

impl Matcher {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Literal(l) => l == name,
            Matcher::Glob(_, g) => g.is_match(name),
            Matcher::Regex(_, r) => r.is_match(name),
            Matcher::OneOf(s) => s.contains(name),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Any => f.write_str("*"),
            Matcher::Literal(l) => write!(f, "{}", crate::printer::quote(l)),
            Matcher::Glob(g, _) => f.write_str(g),
            Matcher::Regex(r, _) => write!(f, "/{r}/"),
            Matcher::OneOf(s) => {
                let v: Vec<&str> = s.iter().map(String::as_str).collect();
                write!(f, "{{{}}}", v.join("|"))
            }
        }
    }
}

/// Compiled matchers on the three key parts.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Service matcher.
    pub service: Matcher,
    /// Source matcher.
    pub source: Matcher,
    /// Metric matcher.
    pub metric: Matcher,
}

impl Selector {
    /// Whether a full key matches.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        let m = |m: &Matcher, v: &Option<String>| v.as_deref().is_some_and(|v| m.matches(v));
        m(&self.service, &key.service)
            && m(&self.source, &key.source)
            && m(&self.metric, &key.metric)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ts({}, {}, {})", self.service, self.source, self.metric)
    }
}
