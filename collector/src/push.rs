//! The push paths, independent of their transport: pushes of ephemeral tasks rolled
//! up into their service's persistent series, Prometheus remote_write, and bulk
//! import of Prometheus text with timestamps. Every path checks names (hygiene),
//! writes through [`Router::write_now`] and answers only once storage accepted.
//!
//! ```text
//!  task push (service, task, interval, metrics) --replace the task's entry-->
//!     rollup[(service, interval)] --sum over tasks--> (service, push.source, metric) @ interval start
//!  remote_write / import --labels -> (service, source, metric)--> hygiene --> storage
//! ```
//! A task re-pushing an interval replaces its earlier values, and the rolled-up sum
//! is written again; storage writes are last-write-wins, so nothing counts twice.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use stats::{Counter, StatsReceiver};

use crate::config::PushConfig;
use crate::hygiene::{FnvMap, Limits, Reason, RejectStats, RejectedName, SourceGuard, check_name};
use crate::model::{Fnv1a, Sample, Series, SeriesKey, fnv1a, now_ms, sample_count};
use crate::parse::{ParseError, text};
use crate::prompb;
use crate::router::Router;
use crate::sink::{ItemRejection, SinkError};

/// How a pushed value combines across tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Events during the interval (a delta); summed across tasks.
    Counter,
    /// A level at the end of the interval; summed across tasks.
    Gauge,
}

/// One pushed metric.
#[derive(Debug, Clone, PartialEq)]
pub struct PushMetric {
    /// Its name.
    pub metric: String,
    /// Counter or gauge; `None` when the pusher gave none (rejected).
    pub kind: Option<Kind>,
    /// The value.
    pub value: f64,
}

/// The metrics of one task for one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTask {
    /// The persistent job.
    pub service: String,
    /// The task among the job's tasks.
    pub task_id: String,
    /// Start of the interval, Unix ms.
    pub interval_start_ms: i64,
    /// Its length, ms; 0: the configured default.
    pub interval_ms: i64,
    /// The values.
    pub metrics: Vec<PushMetric>,
}

/// A rejected pushed item.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRejection {
    /// Its position (metric of a task push, series of remote_write or import).
    pub index: u32,
    /// Why.
    pub reason: Reason,
    /// For people.
    pub detail: String,
}

/// What a push stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushOutcome {
    /// Items (metrics of a task push; samples otherwise) stored.
    pub accepted: u32,
    /// Items rejected by hygiene, and by storage.
    pub rejections: Vec<PushRejection>,
    /// Rejections storage made, as it gave them.
    pub storage_rejections: Vec<ItemRejection>,
}

/// Why a push failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The request is malformed; the message says where.
    #[error("{0}")]
    Invalid(String),
    /// Storage did not accept it.
    #[error("storage did not accept the push: {0}")]
    Storage(#[from] SinkError),
}

/// Where a text import failed to parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source}")]
pub struct ImportError {
    /// The line of the error, when the parser knows it.
    pub line: Option<usize>,
    /// The parse error.
    #[source]
    pub source: ParseError,
}

#[derive(Debug)]
struct Slot {
    /// Per task: its metrics (name -> value) of this interval.
    tasks: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone)]
struct PathStats {
    requests: Counter,
    samples: Counter,
    rejected: Counter,
    storage_errors: Counter,
}

impl PathStats {
    fn new(stats: &StatsReceiver, path: &str) -> Self {
        let s = stats.scope(path);
        Self {
            requests: s.counter("requests"),
            samples: s.counter("samples"),
            rejected: s.counter("rejected"),
            storage_errors: s.counter("storage_errors"),
        }
    }
}

const LOCKS: usize = 64;

/// The series limit of the push paths: per (service, source), the metrics pushed
/// lately, at most `max_series_per_source` of them, as a scrape target's
/// [`SourceGuard`]. A push path's generation is a minute: a metric not pushed for
/// ten minutes stops counting, and so does a source.
struct PushGuards {
    limits: Limits,
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    minute: i64,
    /// Hash of (service, source) -> the sources with that hash.
    sources: FnvMap<u64, Vec<PushSource>>,
}

struct PushSource {
    service: Box<str>,
    source: Box<str>,
    /// The minute it was last pushed to.
    last: i64,
    guard: SourceGuard,
}

const SHARDS: usize = 16;
/// Minutes a source without pushes is kept.
const FORGET_SOURCE_MINUTES: i64 = 10;

impl PushGuards {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Admits `metric` of (service, source), or says why not (counted in `stats`).
    fn admit(
        &self,
        service: &str,
        source: &str,
        metric: &str,
        value: f64,
        must_be_finite: bool,
        stats: &RejectStats,
    ) -> Result<(), (Reason, String)> {
        let mut h = Fnv1a::new();
        h.write(service.as_bytes());
        h.write(&[0xff]);
        h.write(source.as_bytes());
        let hash = h.finish();
        let minute = now_ms().div_euclid(60_000);
        let mut shard = self.shards[(hash >> 32) as usize % SHARDS].lock();
        if shard.minute != minute {
            shard.minute = minute;
            shard.sources.retain(|_, v| {
                v.retain(|s| minute - s.last <= FORGET_SOURCE_MINUTES);
                !v.is_empty()
            });
        }
        let limits = self.limits;
        let same = shard.sources.entry(hash).or_default();
        let at = match same
            .iter()
            .position(|s| *s.service == *service && *s.source == *source)
        {
            Some(at) => at,
            None => {
                same.push(PushSource {
                    service: service.into(),
                    source: source.into(),
                    last: minute,
                    guard: SourceGuard::new(limits),
                });
                same.len() - 1
            }
        };
        let s = &mut same[at];
        if s.last != minute {
            s.last = minute;
            s.guard.begin();
        }
        s.guard
            .admit_detailed(metric, value, must_be_finite, stats)
            .map_err(|r| (r.reason, r.detail))
    }

    /// How many series (service, source) counts against its limit.
    #[cfg(test)]
    fn series(&self, service: &str, source: &str) -> usize {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .sources
                    .values()
                    .flatten()
                    .filter(|p| *p.service == *service && *p.source == *source)
                    .map(|p| p.guard.series())
                    .collect::<Vec<_>>()
            })
            .sum()
    }
}

/// Ingests pushes; shared by the HTTP and gRPC handlers.
pub struct Pusher {
    router: Arc<Router>,
    cfg: PushConfig,
    max_name_bytes: usize,
    rejects: RejectStats,
    guards: PushGuards,
    slots: Mutex<HashMap<(String, i64), Slot>>,
    /// Serialises the write of one (service, interval) rollup, so that a stale sum
    /// never overtakes a newer one on its way to storage.
    locks: Vec<tokio::sync::Mutex<()>>,
    tasks: PathStats,
    remote_write: PathStats,
    import: PathStats,
    /// The last rejected items of every push path, oldest first.
    recent: Mutex<std::collections::VecDeque<RejectedName>>,
    keep_rejected: usize,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").field("cfg", &self.cfg).finish()
    }
}

/// Maps Prometheus labels to a series key (DESIGN's data model): service = `service`
/// else `job`; source = `source` else `instance` (else `global`); metric = the name
/// plus the remaining labels in canonical sorted form. `None` without a service.
pub fn key_from_labels(name: &str, labels: &mut [text::Label<'_>]) -> Result<SeriesKey, String> {
    let mut metric = String::with_capacity(name.len() + 16 * labels.len());
    let (service, source) = map_labels(name, labels, &mut metric)?;
    Ok(SeriesKey::new(service, source, metric))
}

/// [`key_from_labels`] without allocating: writes the metric into `metric` and
/// returns the service and source, borrowed from `labels`.
pub fn map_labels<'a>(
    name: &str,
    labels: &'a mut [text::Label<'_>],
    metric: &mut String,
) -> Result<(&'a str, &'a str), String> {
    let has = |labels: &[text::Label<'_>], n: &str| labels.iter().any(|(k, _)| *k == n);
    let service_label = if has(labels, "service") {
        "service"
    } else if has(labels, "job") {
        "job"
    } else {
        return Err(format!(
            "series {name:?} has neither a \"service\" nor a \"job\" label"
        ));
    };
    let source_label = if has(labels, "source") {
        "source"
    } else if has(labels, "instance") {
        "instance"
    } else {
        ""
    };
    metric.clear();
    text::canonical_metric(
        name,
        labels,
        |k| k == service_label || k == source_label,
        metric,
    );
    let labels: &'a [text::Label<'_>] = labels;
    let get = |n: &str| {
        labels
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_ref())
    };
    let service = get(service_label).unwrap_or_default();
    if service.is_empty() {
        return Err(format!(
            "series {name:?} has an empty {service_label:?} label"
        ));
    }
    let source = get(source_label)
        .filter(|s| !s.is_empty())
        .unwrap_or("global");
    Ok((service, source))
}

impl Pusher {
    /// A pusher writing through `router`, its stats under `stats` (scoped `push/`);
    /// `limits` are hygiene's, the series limit applying per pushed (service, source).
    pub fn new(
        router: Arc<Router>,
        cfg: PushConfig,
        limits: Limits,
        rejects: RejectStats,
        stats: &StatsReceiver,
    ) -> Self {
        let scope = stats.scope("push");
        Self {
            router,
            cfg,
            max_name_bytes: limits.max_name_bytes,
            rejects,
            guards: PushGuards::new(limits),
            slots: Mutex::new(HashMap::new()),
            locks: (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            tasks: PathStats::new(&scope, "tasks"),
            remote_write: PathStats::new(&scope, "remote_write"),
            import: PathStats::new(&scope, "import"),
            recent: Mutex::new(std::collections::VecDeque::new()),
            keep_rejected: limits.keep_rejected,
        }
    }

    /// The last rejected items of the push paths, oldest first.
    pub fn rejected(&self) -> Vec<RejectedName> {
        self.recent.lock().iter().cloned().collect()
    }

    fn remember(&self, path: &str, rejections: &[PushRejection]) {
        if rejections.is_empty() {
            return;
        }
        let at_ms = now_ms();
        let mut recent = self.recent.lock();
        for r in rejections.iter().rev().take(self.keep_rejected).rev() {
            if recent.len() >= self.keep_rejected {
                recent.pop_front();
            }
            recent.push_back(RejectedName {
                metric: format!("{path} item {}", r.index),
                reason: r.reason,
                detail: r.detail.clone(),
                at_ms,
            });
        }
    }

    /// Stores one task's metrics of one interval, rolled up into the service's series.
    pub async fn push(&self, task: PushTask) -> Result<PushOutcome, PushError> {
        self.tasks.requests.incr();
        if task.service.is_empty() {
            return Err(PushError::Invalid("service must not be empty".into()));
        }
        if let Err(r) = check_name(&task.service, self.max_name_bytes) {
            return Err(PushError::Invalid(format!(
                "service {:?} rejected: {}",
                task.service, r.detail
            )));
        }
        if task.task_id.is_empty() {
            return Err(PushError::Invalid("task_id must not be empty".into()));
        }
        if task.interval_ms < 0 {
            return Err(PushError::Invalid(
                "interval_ms must not be negative".into(),
            ));
        }
        let interval_ms = if task.interval_ms == 0 {
            self.cfg.interval.as_millis() as i64
        } else {
            task.interval_ms
        };
        if task.interval_start_ms <= 0 {
            return Err(PushError::Invalid(
                "interval_start_ms must be a positive Unix ms time".into(),
            ));
        }
        let mut outcome = PushOutcome::default();
        let mut values: BTreeMap<String, f64> = BTreeMap::new();
        for (i, m) in task.metrics.iter().enumerate() {
            let Some(kind) = m.kind else {
                outcome.rejections.push(PushRejection {
                    index: i as u32,
                    reason: Reason::InvalidName,
                    detail: format!(
                        "metric {:?} rejected: kind is required (counter or gauge)",
                        m.metric
                    ),
                });
                self.rejects.count(Reason::InvalidName);
                continue;
            };
            if kind == Kind::Counter && m.value < 0.0 {
                outcome.rejections.push(PushRejection {
                    index: i as u32,
                    reason: Reason::NonFinite,
                    detail: format!(
                        "metric {:?} rejected: counter value {} is negative",
                        m.metric, m.value
                    ),
                });
                self.rejects.count(Reason::NonFinite);
                continue;
            }
            match self.guards.admit(
                &task.service,
                &self.cfg.source,
                &m.metric,
                m.value,
                true,
                &self.rejects,
            ) {
                Ok(()) => {
                    values.insert(m.metric.clone(), m.value);
                }
                Err((reason, detail)) => outcome.rejections.push(PushRejection {
                    index: i as u32,
                    reason,
                    detail,
                }),
            }
        }
        self.tasks.rejected.add(outcome.rejections.len() as u64);
        self.remember("push", &outcome.rejections);
        let accepted = values.len() as u32;
        let slot_key = (task.service.clone(), task.interval_start_ms);
        let lock = &self.locks
            [(fnv1a(task.service.as_bytes()) ^ task.interval_start_ms as u64) as usize % LOCKS];
        let _held = lock.lock().await;
        let series = {
            let mut slots = self.slots.lock();
            let horizon = now_ms() - self.cfg.rollup_window.as_millis() as i64;
            if slots.len() > 1024 {
                slots.retain(|(_, start), _| *start + interval_ms >= horizon);
            }
            let slot = slots.entry(slot_key).or_insert_with(|| Slot {
                tasks: BTreeMap::new(),
            });
            let previous = slot.tasks.insert(task.task_id.clone(), values.clone());
            let mut touched: BTreeSet<String> = values.keys().cloned().collect();
            if let Some(prev) = previous {
                touched.extend(prev.into_keys());
            }
            touched
                .into_iter()
                .map(|metric| {
                    let sum: f64 = slot.tasks.values().filter_map(|t| t.get(&metric)).sum();
                    Series::one(
                        SeriesKey::new(task.service.clone(), self.cfg.source.clone(), metric),
                        task.interval_start_ms,
                        sum,
                    )
                })
                .collect::<Vec<_>>()
        };
        if series.is_empty() {
            return Ok(outcome);
        }
        let written = self.router.write_now(series).await.inspect_err(|_| {
            self.tasks.storage_errors.incr();
        })?;
        outcome.accepted = accepted;
        self.tasks.samples.add(u64::from(accepted));
        outcome.storage_rejections = written.rejections;
        Ok(outcome)
    }

    /// Stores a decoded remote_write request.
    pub async fn remote_write(&self, req: prompb::WriteRequest) -> Result<PushOutcome, PushError> {
        self.remote_write.requests.incr();
        let mut outcome = PushOutcome::default();
        let mut batch = Vec::with_capacity(req.timeseries.len());
        for (i, ts) in req.timeseries.into_iter().enumerate() {
            let mut name = "";
            let mut labels: Vec<text::Label<'_>> = Vec::with_capacity(ts.labels.len());
            for l in &ts.labels {
                if l.name == "__name__" {
                    name = &l.value;
                } else {
                    labels.push((&l.name, Cow::Borrowed(&l.value)));
                }
            }
            let key = if name.is_empty() {
                Err("series has no \"__name__\" label".to_owned())
            } else {
                key_from_labels(name, &mut labels)
            };
            let key = match key {
                Ok(k) => k,
                Err(detail) => {
                    self.rejects.count(Reason::InvalidName);
                    outcome.rejections.push(PushRejection {
                        index: i as u32,
                        reason: Reason::InvalidName,
                        detail,
                    });
                    continue;
                }
            };
            if let Err((reason, detail)) = self.guards.admit(
                &key.service,
                &key.source,
                &key.metric,
                0.0,
                false,
                &self.rejects,
            ) {
                outcome.rejections.push(PushRejection {
                    index: i as u32,
                    reason,
                    detail,
                });
                continue;
            }
            batch.push(Series {
                key,
                samples: ts
                    .samples
                    .into_iter()
                    .map(|s| Sample {
                        timestamp_ms: s.timestamp,
                        value: s.value,
                    })
                    .collect(),
            });
        }
        self.remember("remote_write", &outcome.rejections);
        self.finish(&self.remote_write, batch, outcome).await
    }

    /// Parses a Prometheus text body (timestamps in ms; none: now) and stores it.
    /// Nothing is stored when any line fails to parse.
    pub async fn import(&self, body: &str) -> Result<PushOutcome, ImportOrPush> {
        self.import.requests.incr();
        let (batch, outcome) = self.parse_import(body).map_err(ImportOrPush::Parse)?;
        self.remember("import", &outcome.rejections);
        self.finish(&self.import, batch, outcome)
            .await
            .map_err(ImportOrPush::Push)
    }

    /// The parse half of [`Pusher::import`] (the bench uses it alone).
    pub fn parse_import(&self, body: &str) -> Result<(Vec<Series>, PushOutcome), ImportError> {
        let now = now_ms();
        let mut outcome = PushOutcome::default();
        let mut batch: Vec<Series> = Vec::new();
        // Samples of one series share one entry: hash of the key -> its position.
        let mut seen: FnvMap<u64, usize> = FnvMap::default();
        let mut labels = Vec::new();
        let mut metric = String::new();
        let mut index = 0u32;
        // The series of the last stored line, as written, and its position: a backfill
        // writes one series' samples in a row, and those skip the key work.
        let mut last: Option<(&str, usize)> = None;
        text::parse(body, false, |s| {
            let i = index;
            index += 1;
            if let Some((series, at)) = last
                && series == s.series
            {
                if s.must_be_finite() && !s.value.is_finite() {
                    let r = self.non_finite(i, &batch[at].key.metric, s.value);
                    outcome.rejections.push(r);
                } else {
                    batch[at].samples.push(Sample {
                        timestamp_ms: s.timestamp_ms.unwrap_or(now),
                        value: s.value,
                    });
                }
                return;
            }
            labels.clear();
            labels.extend_from_slice(s.labels);
            let (service, source) = match map_labels(s.name, &mut labels, &mut metric) {
                Ok(k) => k,
                Err(detail) => {
                    self.rejects.count(Reason::InvalidName);
                    outcome.rejections.push(PushRejection {
                        index: i,
                        reason: Reason::InvalidName,
                        detail,
                    });
                    return;
                }
            };
            if s.must_be_finite() && !s.value.is_finite() {
                outcome
                    .rejections
                    .push(self.non_finite(i, &metric, s.value));
                return;
            }
            let sample = Sample {
                timestamp_ms: s.timestamp_ms.unwrap_or(now),
                value: s.value,
            };
            let mut h = Fnv1a::new();
            for part in [service, source, metric.as_str()] {
                h.write(part.as_bytes());
                h.write(&[0xff]);
            }
            let hash = h.finish();
            if let Some(&at) = seen.get(&hash) {
                let k = &batch[at].key;
                if k.metric == metric && k.source == source && k.service == service {
                    batch[at].samples.push(sample);
                    last = Some((s.series, at));
                    return;
                }
            }
            if let Err((reason, detail)) =
                self.guards
                    .admit(service, source, &metric, s.value, false, &self.rejects)
            {
                outcome.rejections.push(PushRejection {
                    index: i,
                    reason,
                    detail,
                });
                return;
            }
            seen.insert(hash, batch.len());
            last = Some((s.series, batch.len()));
            batch.push(Series {
                key: SeriesKey::new(service, source, metric.as_str()),
                samples: vec![sample],
            });
        })
        .map_err(|e| ImportError {
            line: match &e {
                ParseError::Text { line, .. } => Some(*line),
                _ => None,
            },
            source: e,
        })?;
        Ok((batch, outcome))
    }

    /// Counts and describes an import line whose value must be finite but is not.
    fn non_finite(&self, index: u32, metric: &str, value: f64) -> PushRejection {
        self.rejects.count(Reason::NonFinite);
        PushRejection {
            index,
            reason: Reason::NonFinite,
            detail: format!("metric {metric:?} rejected: value {value} must be finite"),
        }
    }

    async fn finish(
        &self,
        stats: &PathStats,
        batch: Vec<Series>,
        mut outcome: PushOutcome,
    ) -> Result<PushOutcome, PushError> {
        stats.rejected.add(outcome.rejections.len() as u64);
        if batch.is_empty() {
            return Ok(outcome);
        }
        let n = sample_count(&batch);
        let written = self.router.write_now(batch).await.inspect_err(|_| {
            stats.storage_errors.incr();
        })?;
        stats.samples.add(written.accepted);
        outcome.accepted = written.accepted.min(u64::from(u32::MAX)) as u32;
        if written.accepted < n as u64 {
            stats.rejected.add(n as u64 - written.accepted);
        }
        outcome.storage_rejections = written.rejections;
        Ok(outcome)
    }
}

/// Why an import failed: its body did not parse, or the push failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportOrPush {
    #[error(transparent)]
    Parse(ImportError),
    #[error(transparent)]
    Push(PushError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Result<SeriesKey, String> {
        let mut out = None;
        text::parse(body, false, |s| {
            let mut labels = s.labels.to_vec();
            out = Some(key_from_labels(s.name, &mut labels));
        })
        .unwrap();
        out.unwrap()
    }

    #[test]
    fn labels_map_to_keys() {
        assert_eq!(
            key("http_requests_total{job=\"web\",instance=\"h:1\",code=\"200\",a=\"x\"} 1\n")
                .unwrap(),
            SeriesKey::new("web", "h:1", "http_requests_total{a=\"x\",code=\"200\"}")
        );
        // `service` wins over `job`, which then stays a label.
        assert_eq!(
            key("m{service=\"s\",job=\"j\",source=\"p\"} 1\n").unwrap(),
            SeriesKey::new("s", "p", "m{job=\"j\"}")
        );
        assert_eq!(
            key("m{job=\"j\"} 1\n").unwrap(),
            SeriesKey::new("j", "global", "m")
        );
        assert!(key("m 1\n").unwrap_err().contains("neither"));
    }

    fn limits(max_series_per_source: usize) -> Limits {
        Limits {
            max_name_bytes: 200,
            max_series_per_source,
            keep_rejected: 4,
        }
    }

    #[test]
    fn push_guards_limit_series_per_source() {
        let stats = RejectStats::new(&StatsReceiver::new());
        let g = PushGuards::new(limits(2));
        let admit = |svc: &str, src: &str, m: &str| g.admit(svc, src, m, 1.0, false, &stats);
        assert!(admit("web", "h1", "a").is_ok());
        assert!(admit("web", "h1", "b").is_ok());
        // Known metrics stay admitted; a third one is over the limit.
        assert!(admit("web", "h1", "a").is_ok());
        let (reason, detail) = admit("web", "h1", "c").unwrap_err();
        assert_eq!(reason, Reason::SeriesLimit);
        assert!(detail.contains("max_series_per_source"), "{detail}");
        // Other sources, and the same source name of another service, have their own.
        assert!(admit("web", "h2", "c").is_ok());
        assert!(admit("api", "h1", "c").is_ok());
        assert_eq!(g.series("web", "h1"), 2);
        assert_eq!(stats.get(Reason::SeriesLimit), 1);
        // Junk names are still junk.
        assert_eq!(
            admit("web", "h3", "[I@579b7698").unwrap_err().0,
            Reason::JvmIdentity
        );
        assert_eq!(
            g.admit("web", "h3", "x", f64::NAN, true, &stats)
                .unwrap_err()
                .0,
            Reason::NonFinite
        );
    }

    #[tokio::test]
    async fn import_and_remote_write_enforce_the_series_limit() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(crate::sink::MemorySink::new("s1"));
        let stats = StatsReceiver::new();
        let router = Arc::new(
            Router::new(
                vec![sink.clone()],
                &crate::config::RoutingConfig::default(),
                dir.path(),
                &stats,
            )
            .unwrap(),
        );
        let pusher = Pusher::new(
            router,
            PushConfig::default(),
            limits(3),
            RejectStats::new(&stats),
            &stats,
        );
        let mut body = String::new();
        for code in 0..5 {
            body.push_str(&format!(
                "req_total{{job=\"web\",instance=\"h1\",code=\"{code}\"}} 1 1700000000000\n"
            ));
        }
        body.push_str("req_total{job=\"web\",instance=\"h2\",code=\"9\"} 1 1700000000000\n");
        let out = pusher.import(&body).await.unwrap();
        assert_eq!(out.accepted, 4);
        let limited: Vec<u32> = out
            .rejections
            .iter()
            .filter(|r| r.reason == Reason::SeriesLimit)
            .map(|r| r.index)
            .collect();
        assert_eq!(limited, vec![3, 4]);
        // remote_write counts against the same sources.
        let req = prompb::WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: vec![
                    prompb::Label {
                        name: "__name__".into(),
                        value: "other".into(),
                    },
                    prompb::Label {
                        name: "instance".into(),
                        value: "h1".into(),
                    },
                    prompb::Label {
                        name: "job".into(),
                        value: "web".into(),
                    },
                ],
                samples: vec![prompb::Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
            }],
        };
        let out = pusher.remote_write(req).await.unwrap();
        assert_eq!(out.accepted, 0);
        assert_eq!(out.rejections[0].reason, Reason::SeriesLimit);
        assert_eq!(sink.keys().len(), 4);
    }
}
