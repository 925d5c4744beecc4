//! The federation engine: compile, resolve roles, estimate the cost from name-index
//! totals (refusing too-large queries before anything runs), run every fragment on
//! every zone that holds part of its range (spans from the cache, the rest as
//! `ExecuteFragment` on each storage-frontend), merge partials, evaluate the rest.
//!
//! ```text
//!  text -> compile -> roles (collector ListRoles) -> fragments x ranges
//!    -> per (fragment, zone): Index total + Epochs  --> estimate > limit? refuse
//!    -> pieces: cached spans (memcached get) | runs of the rest (ExecuteFragment on
//!       every endpoint, merged) -> store immutable spans
//!    -> merge zones -> finish cells -> evaluator (sync, on the blocking pool) -> Answer
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use proto::collector::{ListRolesRequest, collector_client::CollectorClient};
use query_lang::ast::CmpOp;
use query_lang::ops::OverTime;
use query_lang::{
    AggOp, DataSource, Evaluator, FragmentRequest, KeyPart, Node, Pattern, PlanOptions, Query,
    Range, RawSeries, Selector, Series, SourceError, StepAgg, Value, ops,
};
use stats::{Counter, StatsReceiver};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::cache::Cache;
use crate::config::Limits;
use crate::error::QueryError;
use crate::params::now_ms;
use crate::spans::{self, Piece, SpanCells};
use crate::storage::{
    Cell, Cost, Epochs, Groups, StorageFragment, Zone, ZoneFailure, merge_groups,
};

/// A zone that did not contribute to an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The zone's name.
    pub zone: String,
    /// Why.
    pub reason: String,
    /// `[start, end)` of the query's range it was asked for.
    pub range: (i64, i64),
}

/// What answering took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerStats {
    /// Series read by the fragments.
    pub series: u64,
    /// Samples (or rollup cells) read.
    pub samples: u64,
    /// Spans served from the cache.
    pub spans_cached: u32,
    /// Pieces computed by fragments.
    pub spans_computed: u32,
    /// Wall time, ms.
    pub elapsed_ms: i64,
}

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Series set or scalar.
    pub value: Value,
    /// Zones that failed: non-empty means the answer is partial.
    pub missing: Vec<Missing>,
    /// Things the caller should know.
    pub warnings: Vec<String>,
    /// What it took.
    pub stats: AnswerStats,
}

/// Estimated cost from name-index totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Series the fragments would read.
    pub series: u64,
    /// Samples (or rollup cells) they would read.
    pub samples: u64,
}

/// How one span would be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanPlan {
    /// Immutable and cached.
    Hit,
    /// Immutable, not cached yet.
    Miss,
    /// May still change: computed every time.
    Mutable,
    /// No cache (or it is down).
    Bypass,
}

impl SpanPlan {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            SpanPlan::Hit => "hit",
            SpanPlan::Miss => "miss",
            SpanPlan::Mutable => "mutable",
            SpanPlan::Bypass => "bypass",
        }
    }
}

/// A fragment as it would run on one zone.
#[derive(Debug, Clone)]
pub struct ZonePlan {
    /// The zone.
    pub zone: String,
    /// The normalised fragment.
    pub fragment: String,
    /// Resolution the zone would read (0: raw).
    pub resolution_ms: i64,
    /// Its pieces and how each would be served.
    pub spans: Vec<(i64, i64, SpanPlan)>,
}

/// How a query would run.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The rewritten query.
    pub rewritten: String,
    /// The fragments per zone.
    pub fragments: Vec<ZonePlan>,
    /// The estimate.
    pub cost: Estimate,
    /// Why it would be refused, if it would.
    pub refusal: Option<String>,
    /// Zones that could not be asked.
    pub missing: Vec<Missing>,
    /// Everything as text.
    pub text: String,
}

/// The federator's counters (`federator/...`).
#[derive(Debug, Clone)]
struct FedStats {
    queries: Counter,
    refused: Counter,
    partial: Counter,
    failed: Counter,
    fragments: Counter,
    /// Span keys built from the watched epoch tables, without a round trip.
    epochs_watched: Counter,
    /// Span keys built from an `Epochs` call.
    epochs_asked: Counter,
}

/// The engine shared by the HTTP and gRPC front ends.
#[derive(Debug, Clone)]
pub struct Federator {
    zones: Arc<Vec<Zone>>,
    cache: Cache<SpanCells>,
    roles: Option<CollectorClient<Channel>>,
    limits: Limits,
    query_timeout: Duration,
    /// Step of instant queries, ms.
    pub instant_step_ms: i64,
    stats: FedStats,
    /// `federator/epochs/bumps_heard`: epoch changes the watches brought.
    _bumps_heard: Arc<stats::Gauge>,
    /// Index totals by (zone, selector, hour-rounded range), with when they were read.
    estimates: Arc<parking_lot::Mutex<HashMap<String, (Instant, u64)>>>,
}

/// One fragment over one range, ready to run.
#[derive(Debug, Clone)]
struct Work {
    key: String,
    sf: StorageFragment,
    text: String,
    filter: Option<(CmpOp, f64)>,
    aggregate: Option<(AggOp, Vec<KeyPart>)>,
    range: Range,
}

/// Consecutive pieces computed by one fragment: start, end, and each piece with its
/// cache key (when it may be stored).
type Run = (i64, i64, Vec<(Piece, Option<String>)>);

/// One work item on one zone.
#[derive(Debug, Clone)]
struct ZoneWork {
    work: usize,
    zone: usize,
    /// First grid point the zone answers for.
    first: i64,
    /// End of its grid range.
    end: i64,
    /// What the survey covers: the range widened to whole edge spans (see [`spans::widen`]).
    survey: (i64, i64),
}

/// A compiled query with roles resolved and work listed.
struct Prepared {
    query: Query,
    roles: HashMap<String, Vec<String>>,
    works: Vec<Work>,
    zone_works: Vec<ZoneWork>,
}

/// What storage told about one zone work before execution.
struct Surveyed {
    zw: ZoneWork,
    series: u64,
    epochs: Epochs,
}

/// Most fetched points evaluated on the answering task instead of the blocking pool.
const INLINE_EVAL_POINTS: usize = 5_000;

impl Federator {
    /// The engine over `zones`, with `cache` and an optional collector for roles.
    pub fn new(
        zones: Vec<Zone>,
        cache: Cache<SpanCells>,
        roles: Option<CollectorClient<Channel>>,
        limits: Limits,
        query_timeout: Duration,
        instant_step: Duration,
        stats: &StatsReceiver,
    ) -> Self {
        let s = stats.scope("federator");
        let zones = Arc::new(zones);
        let watched = zones.clone();
        let bumps_heard = s.gauge("epochs/bumps_heard", move || {
            watched.iter().map(Zone::bumps_heard).sum::<u64>() as f64
        });
        Federator {
            _bumps_heard: Arc::new(bumps_heard),
            zones,
            cache,
            roles,
            limits,
            query_timeout,
            instant_step_ms: instant_step.as_millis() as i64,
            stats: FedStats {
                queries: s.counter("queries"),
                refused: s.counter("refused"),
                partial: s.counter("partial"),
                failed: s.counter("failed"),
                fragments: s.counter("fragments_run"),
                epochs_watched: s.counter("epochs/watched"),
                epochs_asked: s.counter("epochs/asked"),
            },
            estimates: Arc::default(),
        }
    }

    /// The zones, in config order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The deadline of a query that asks for `timeout` (the configured one caps it).
    pub fn deadline(&self, timeout: Option<Duration>) -> Instant {
        let t = timeout.map_or(self.query_timeout, |t| t.min(self.query_timeout));
        Instant::now() + t
    }

    async fn resolve_roles(
        &self,
        query: &Query,
        deadline: Instant,
    ) -> Result<HashMap<String, Vec<String>>, QueryError> {
        let mut wanted = BTreeSet::new();
        for (_, f) in query.plan.fragments() {
            for p in [&f.service, &f.source, &f.metric] {
                if let Pattern::Members(r) = p {
                    wanted.insert(r.clone());
                }
            }
        }
        let Some(first) = wanted.iter().next().cloned() else {
            return Ok(HashMap::new());
        };
        let Some(client) = &self.roles else {
            return Err(QueryError::NoCollector(first));
        };
        let mut req = tonic::Request::new(ListRolesRequest {
            roles: wanted.iter().map(|r| format!("role.{r}")).collect(),
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let resp = client
            .clone()
            .list_roles(req)
            .await
            .map_err(|s| QueryError::Roles {
                role: first.clone(),
                reason: format!("{:?}: {}", s.code(), s.message()),
            })?
            .into_inner();
        let mut out: HashMap<String, Vec<String>> =
            wanted.iter().map(|r| (r.clone(), Vec::new())).collect();
        for role in resp.roles {
            let name = role
                .name
                .strip_prefix("role.")
                .unwrap_or(&role.name)
                .to_string();
            if let Some(v) = out.get_mut(&name) {
                v.extend(role.sources);
            }
        }
        Ok(out)
    }

    async fn prepare(
        &self,
        text: &str,
        range: Range,
        deadline: Instant,
    ) -> Result<Prepared, QueryError> {
        // An over-time function computed in storage reads a step before each range it
        // is asked for: only where no zone splits its series' samples with another by
        // time (tiers), or that step could be in the other zone.
        let opts = PlanOptions {
            over_time: self.zones.iter().all(Zone::holds_all_time),
            ..PlanOptions::default()
        };
        let query = query_lang::compile_with(text, opts).map_err(|e| QueryError::compile(&e))?;
        if range.step <= 0 {
            return Err(QueryError::BadParam {
                param: "step",
                reason: format!("must be positive, got {} ms", range.step),
            });
        }
        let roles = self.resolve_roles(&query, deadline).await?;
        let src = Prefetched {
            roles: roles.clone(),
            results: HashMap::new(),
        };
        let ev = Evaluator::new(&query.plan, &src);
        let mut works: Vec<Work> = Vec::new();
        let mut seen = BTreeSet::new();
        let needed = query
            .plan
            .fragment_ranges(range)
            .map_err(|e| QueryError::Eval(e.to_string()))?;
        for (id, r) in needed {
            let Some(Node::Fragment(f)) = query.plan.nodes.get(id) else {
                continue;
            };
            let m = |p: &Pattern| ev.matcher(p).map_err(|e| QueryError::Eval(e.to_string()));
            let selector = Selector {
                service: m(&f.service)?,
                source: m(&f.source)?,
                metric: m(&f.metric)?,
            };
            let key = prefetch_key(
                &selector,
                r,
                f.per_step,
                f.over_time,
                f.filter,
                f.aggregate.as_ref(),
            );
            if !seen.insert(key.clone()) {
                continue;
            }
            let sf = StorageFragment {
                selector,
                per_step: f.per_step,
                over_time: f.over_time,
                combine: if f.filter.is_none() {
                    f.aggregate.clone()
                } else {
                    None
                },
            };
            let text = format!("{} phase={}", sf.describe(), r.start.rem_euclid(r.step));
            works.push(Work {
                key,
                sf,
                text,
                filter: f.filter,
                aggregate: f.aggregate.clone(),
                range: r,
            });
        }
        drop(ev);
        let now = now_ms();
        let mut zone_works = Vec::new();
        for (wi, w) in works.iter().enumerate() {
            if w.sf.selects_nothing() || w.range.points() == 0 {
                continue;
            }
            let phase = w.range.start.rem_euclid(w.range.step);
            for (zi, z) in self.zones.iter().enumerate() {
                let (lo, hi) = z.window(now);
                let first = spans::align_up(w.range.start.max(lo), w.range.step, phase);
                let end = w.range.end.min(hi);
                if first < end {
                    let survey = spans::widen(first, end, w.range.step, lo, hi, i64::MAX);
                    zone_works.push(ZoneWork {
                        work: wi,
                        zone: zi,
                        first,
                        end,
                        survey,
                    });
                }
            }
        }
        Ok(Prepared {
            query,
            roles,
            works,
            zone_works,
        })
    }

    /// Index totals and epochs of every zone work, in parallel; failed zones are noted.
    /// These calls are cheap, so they get a third of the time left: a zone that hangs
    /// leaves the rest of the deadline to the zones that answer.
    async fn survey(
        &self,
        p: &Prepared,
        deadline: Instant,
        missing: &mut Vec<Missing>,
    ) -> Vec<Surveyed> {
        let now = Instant::now();
        let deadline = now + deadline.saturating_duration_since(now) / 3;
        let calls = p.zone_works.iter().map(|zw| {
            let w = &p.works[zw.work];
            let z = &self.zones[zw.zone];
            let lo = zw
                .survey
                .0
                .saturating_sub(w.range.step - 1 + w.sf.lookback(w.range.step));
            let hi = zw.survey.1;
            async move {
                // Epochs only key cached spans: without a cache nothing is immutable
                // to the plan, and the round trip is saved.
                let epochs = async {
                    if self.cache.enabled() {
                        let svc = &w.sf.selector.service;
                        if let Some(e) = z.watched_epochs(svc, lo, hi) {
                            self.stats.epochs_watched.incr();
                            return Ok(e);
                        }
                        self.stats.epochs_asked.incr();
                        z.epochs(svc, lo, hi, deadline).await
                    } else {
                        Ok(Epochs {
                            epochs: Default::default(),
                            mutable_after_ms: i64::MIN,
                        })
                    }
                };
                let (total, epochs) =
                    tokio::join!(self.series_total(z, w, lo, hi, deadline), epochs);
                (zw.clone(), total.and_then(|t| Ok((t, epochs?))))
            }
        });
        let mut out = Vec::new();
        for (zw, r) in join_all(calls).await {
            match r {
                Ok((series, epochs)) => out.push(Surveyed { zw, series, epochs }),
                Err(f) => note_missing(missing, &self.zones[zw.zone].name, &f, (zw.first, zw.end)),
            }
        }
        out
    }

    /// The index total of a fragment on a zone. Totals feed only the estimate, so they
    /// are kept for a minute per (zone, fragment, range rounded out to hours): a
    /// dashboard refreshing the same query does not recount its series every time.
    async fn series_total(
        &self,
        z: &Zone,
        w: &Work,
        lo: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<u64, ZoneFailure> {
        const HOUR: i64 = 3_600_000;
        const KEEP: Duration = Duration::from_secs(60);
        let (a, b) = (lo - lo.rem_euclid(HOUR), end - end.rem_euclid(HOUR) + HOUR);
        let key = format!("{}\n{}\n{a}\n{b}", z.name, w.sf.selector);
        if let Some((at, n)) = self.estimates.lock().get(&key)
            && at.elapsed() < KEEP
        {
            return Ok(*n);
        }
        let n = z.series_total(&w.sf, a, b, deadline).await?;
        let mut m = self.estimates.lock();
        if m.len() >= 10_000 {
            m.retain(|_, (at, _)| at.elapsed() < KEEP);
            if m.len() >= 10_000 {
                m.clear();
            }
        }
        m.insert(key, (Instant::now(), n));
        Ok(n)
    }

    fn estimate(&self, p: &Prepared, surveyed: &[Surveyed]) -> (Estimate, Option<String>) {
        let mut est = Estimate::default();
        let mut largest: Option<(u64, String)> = None;
        for s in surveyed {
            let w = &p.works[s.zw.work];
            let z = &self.zones[s.zw.zone];
            let interval = read_interval(w.range.step, z.resolution_ms());
            let span = (s.zw.end - s.zw.first + w.range.step).max(0) as u64;
            let per_series = span.div_ceil(interval as u64).max(1);
            est.series = est.series.saturating_add(s.series);
            est.samples = est
                .samples
                .saturating_add(s.series.saturating_mul(per_series));
            if largest.as_ref().is_none_or(|(n, _)| s.series > *n) {
                largest = Some((s.series, w.sf.selector.to_string()));
            }
        }
        let over = if est.series > self.limits.max_series {
            Some(("series", est.series, self.limits.max_series, "max_series"))
        } else if est.samples > self.limits.max_samples {
            Some((
                "samples",
                est.samples,
                self.limits.max_samples,
                "max_samples",
            ))
        } else {
            None
        };
        let refusal = over.map(|(what, found, limit, key)| {
            let mut m = format!(
                "query refused before running: estimated {} series and {} samples; {found} {what} exceed the limit of {limit} (query_federator.limits.{key})",
                est.series, est.samples
            );
            if let Some((n, sel)) = largest {
                m.push_str(&format!("; the largest selection is {sel} with {n} series"));
            }
            m.push_str(
                "; narrow it: name services, sources or metrics exactly instead of with patterns, shorten the range, aggregate across series, or use a step of 5m or 1h so rollups serve it",
            );
            m
        });
        (est, refusal)
    }

    /// Answers `text` over `range`.
    pub async fn query(
        &self,
        text: &str,
        range: Range,
        deadline: Instant,
    ) -> Result<Answer, QueryError> {
        self.stats.queries.incr();
        let began = Instant::now();
        let r = self.query_inner(text, range, deadline, began).await;
        match &r {
            Ok(a) if !a.missing.is_empty() => self.stats.partial.incr(),
            Ok(_) => {}
            Err(QueryError::Refused(_)) => self.stats.refused.incr(),
            Err(_) => self.stats.failed.incr(),
        }
        r
    }

    async fn query_inner(
        &self,
        text: &str,
        range: Range,
        deadline: Instant,
        began: Instant,
    ) -> Result<Answer, QueryError> {
        let p = self.prepare(text, range, deadline).await?;
        let prepared = began.elapsed();
        let mut missing = Vec::new();
        let surveyed = self.survey(&p, deadline, &mut missing).await;
        let (_, refusal) = self.estimate(&p, &surveyed);
        if let Some(r) = refusal {
            return Err(QueryError::Refused(r));
        }
        let surveyed_at = began.elapsed();
        let mut stats = AnswerStats::default();
        let runs = surveyed.iter().map(|s| self.run_zone_work(&p, s, deadline));
        let mut per_work: Vec<Groups> = vec![Groups::new(); p.works.len()];
        let mut ran_any = false;
        for (s, r) in surveyed.iter().zip(join_all(runs).await) {
            match r {
                Ok((groups, cost, cached, computed)) => {
                    ran_any = true;
                    merge_groups(&mut per_work[s.zw.work], groups);
                    stats.series += cost.series;
                    stats.samples += cost.samples;
                    stats.spans_cached += cached;
                    stats.spans_computed += computed;
                }
                Err(f) if f.limit => {
                    return Err(QueryError::Refused(format!(
                        "storage refused the query: {}",
                        f.reason
                    )));
                }
                Err(f) => note_missing(
                    &mut missing,
                    &self.zones[s.zw.zone].name,
                    &f,
                    (s.zw.first, s.zw.end),
                ),
            }
        }
        if !ran_any && !missing.is_empty() {
            let why: Vec<String> = missing
                .iter()
                .map(|m| format!("zone {}: {}", m.zone, m.reason))
                .collect();
            return Err(if Instant::now() >= deadline {
                QueryError::Deadline(why.join("; "))
            } else {
                QueryError::Unavailable(why.join("; "))
            });
        }
        let ran = began.elapsed();
        let mut results = HashMap::new();
        for (w, groups) in p.works.iter().zip(per_work) {
            results.insert(w.key.clone(), finish(groups, w));
        }
        let src = Prefetched {
            roles: p.roles,
            results,
        };
        let query = p.query;
        // A small evaluation costs less than the trip to the blocking pool and back.
        let points: usize = src
            .results
            .values()
            .flat_map(|series| series.iter().map(|s| s.points.len()))
            .sum();
        let value = if points <= INLINE_EVAL_POINTS {
            query.eval(&src, range)
        } else {
            tokio::task::spawn_blocking(move || query.eval(&src, range))
                .await
                .map_err(|e| QueryError::Internal(e.to_string()))?
        }
        .map_err(|e| QueryError::Eval(e.to_string()))?;
        let warnings = missing
            .iter()
            .map(|m| format!("partial answer: zone {} is missing ({})", m.zone, m.reason))
            .collect();
        stats.elapsed_ms = began.elapsed().as_millis() as i64;
        tracing::debug!(
            query = text,
            prepare_us = prepared.as_micros() as u64,
            survey_us = (surveyed_at - prepared).as_micros() as u64,
            run_us = (ran - surveyed_at).as_micros() as u64,
            eval_us = (began.elapsed() - ran).as_micros() as u64,
            spans_cached = stats.spans_cached,
            spans_computed = stats.spans_computed,
            "query answered"
        );
        Ok(Answer {
            value,
            missing,
            warnings,
            stats,
        })
    }

    /// The pieces of one zone work: its range widened to whole edge spans (within the
    /// zone's window), split into spans and computed runs.
    fn pieces(&self, s: &Surveyed, step: i64) -> Vec<Piece> {
        // Never past what the survey covered (its epochs are in the keys).
        let (min, max) = s.zw.survey;
        let (lo, hi) = spans::widen(
            s.zw.first,
            s.zw.end,
            step,
            min,
            max,
            s.epochs.mutable_after_ms,
        );
        spans::split(lo, hi, step, s.epochs.mutable_after_ms)
    }

    /// Runs one fragment on one zone: cached spans, then the rest as fragments.
    async fn run_zone_work(
        &self,
        p: &Prepared,
        s: &Surveyed,
        deadline: Instant,
    ) -> Result<(Groups, Cost, u32, u32), ZoneFailure> {
        let w = &p.works[s.zw.work];
        let z = &self.zones[s.zw.zone];
        let step = w.range.step;
        let phase = w.range.start.rem_euclid(step);
        let pieces = self.pieces(s, step);
        let zid = z.cache_identity();
        let lookback = w.sf.lookback(step);
        let keys: Vec<Option<String>> = pieces
            .iter()
            .map(|pc| {
                (pc.cacheable && self.cache.enabled())
                    .then(|| spans::key(&zid, &w.text, step, lookback, *pc, &s.epochs))
            })
            .collect();
        let lookup: Vec<String> = keys.iter().flatten().cloned().collect();
        let found = self.cache.get(&lookup).await;
        let mut groups = Groups::new();
        let mut cached = 0u32;
        // Runs of pieces that must be computed: (start, end, pieces).
        let mut runs: Vec<Run> = Vec::new();
        let mut open = false;
        for (pc, key) in pieces.iter().zip(&keys) {
            if let Some(span) = key.as_ref().and_then(|k| found.get(k)) {
                spans::gather(&mut groups, span);
                cached += 1;
                open = false;
                continue;
            }
            match runs.last_mut() {
                Some(run) if open => {
                    run.1 = pc.end;
                    run.2.push((*pc, key.clone()));
                }
                _ => runs.push((pc.start, pc.end, vec![(*pc, key.clone())])),
            }
            open = true;
        }
        let computed = runs.iter().map(|r| r.2.len() as u32).sum();
        let calls = runs.iter().map(|(a, b, _)| {
            let start = spans::align_up(*a, step, phase);
            async move {
                if start >= *b {
                    return Ok((Groups::new(), Cost::default()));
                }
                self.stats.fragments.incr();
                z.execute(&w.sf, start, *b, step, deadline).await
            }
        });
        let mut cost = Cost::default();
        let mut store = Vec::new();
        for (run, r) in runs.iter().zip(join_all(calls).await) {
            let (g, c) = r?;
            cost.series = cost.series.max(c.series);
            cost.samples += c.samples;
            cost.resolution_ms = cost.resolution_ms.max(c.resolution_ms);
            for (pc, key) in &run.2 {
                if let Some(k) = key {
                    store.push((k.clone(), spans::slice(&g, pc.start, pc.end)));
                }
            }
            merge_groups(&mut groups, g);
        }
        // Storing (and encoding for memcached) is off the answer's path: the answer
        // never depends on the cache.
        if !store.is_empty() {
            let cache = self.cache.clone();
            tokio::spawn(async move { cache.put(store).await });
        }
        Ok((groups, cost, cached, computed))
    }

    /// How `text` would run over `range`, without running it.
    pub async fn explain(
        &self,
        text: &str,
        range: Range,
        deadline: Instant,
    ) -> Result<Explained, QueryError> {
        let p = self.prepare(text, range, deadline).await?;
        let mut missing = Vec::new();
        let surveyed = self.survey(&p, deadline, &mut missing).await;
        let (cost, refusal) = self.estimate(&p, &surveyed);
        let mut fragments = Vec::new();
        for s in &surveyed {
            let w = &p.works[s.zw.work];
            let z = &self.zones[s.zw.zone];
            let step = w.range.step;
            let pieces = self.pieces(s, step);
            let zid = z.cache_identity();
            let lookback = w.sf.lookback(step);
            let keys: Vec<String> = pieces
                .iter()
                .filter(|pc| pc.cacheable)
                .map(|pc| spans::key(&zid, &w.text, step, lookback, *pc, &s.epochs))
                .collect();
            let usable = self.cache.enabled() && !self.cache.is_down();
            let found = if usable {
                self.cache.peek(&keys).await
            } else {
                HashMap::new()
            };
            let mut ki = keys.iter();
            let spans = pieces
                .iter()
                .map(|pc| {
                    let plan = if !pc.cacheable {
                        SpanPlan::Mutable
                    } else {
                        let k = ki.next();
                        if !usable {
                            SpanPlan::Bypass
                        } else if k.is_some_and(|k| found.contains_key(k)) {
                            SpanPlan::Hit
                        } else {
                            SpanPlan::Miss
                        }
                    };
                    (pc.start, pc.end, plan)
                })
                .collect();
            fragments.push(ZonePlan {
                zone: z.name.clone(),
                fragment: w.text.clone(),
                resolution_ms: rollup_for(step, z.resolution_ms()),
                spans,
            });
        }
        let rewritten = p.query.normalised();
        let mut text_out = p.query.explain();
        text_out.push_str(&format!(
            "estimate: {} series, {} samples (limits: {} series, {} samples)\n",
            cost.series, cost.samples, self.limits.max_series, self.limits.max_samples
        ));
        if let Some(r) = &refusal {
            text_out.push_str(&format!("refused: {r}\n"));
        }
        for f in &fragments {
            text_out.push_str(&format!(
                "zone {}: {} resolution={}ms\n",
                f.zone, f.fragment, f.resolution_ms
            ));
            for (a, b, plan) in compress(&f.spans) {
                text_out.push_str(&format!("  {a}..{b} {}\n", plan));
            }
        }
        for m in &missing {
            text_out.push_str(&format!("missing zone {}: {}\n", m.zone, m.reason));
        }
        Ok(Explained {
            rewritten,
            fragments,
            cost,
            refusal,
            missing,
            text: text_out,
        })
    }
}

/// Runs of equally served spans, for the text listing.
fn compress(spans: &[(i64, i64, SpanPlan)]) -> Vec<(i64, i64, String)> {
    let mut out: Vec<(i64, i64, SpanPlan, usize)> = Vec::new();
    for &(a, b, p) in spans {
        match out.last_mut() {
            Some(last) if last.2 == p && last.1 == a => {
                last.1 = b;
                last.3 += 1;
            }
            _ => out.push((a, b, p, 1)),
        }
    }
    out.into_iter()
        .map(|(a, b, p, n)| {
            (
                a,
                b,
                format!("{} ({n} span{})", p.name(), if n == 1 { "" } else { "s" }),
            )
        })
        .collect()
}

/// Resolution storage would read for `step`: its rollups serve 5m and 1h multiples.
fn rollup_for(step: i64, resolution: i64) -> i64 {
    if step % 3_600_000 == 0 {
        3_600_000
    } else if step % 300_000 == 0 {
        300_000
    } else {
        resolution.max(0)
    }
}

/// Distance between the values a fragment reads per series (for the estimate).
fn read_interval(step: i64, resolution: i64) -> i64 {
    rollup_for(step, resolution).max(resolution).max(1)
}

fn note_missing(missing: &mut Vec<Missing>, zone: &str, f: &ZoneFailure, range: (i64, i64)) {
    if let Some(m) = missing.iter_mut().find(|m| m.zone == zone) {
        m.range = (m.range.0.min(range.0), m.range.1.max(range.1));
        return;
    }
    tracing::warn!(zone, error = %f, "storage zone failed; the answer is partial");
    missing.push(Missing {
        zone: zone.to_string(),
        reason: f.to_string(),
        range,
    });
}

/// Turns merged cells into the fragment's series, as `query_lang::run_fragment` would.
fn finish(groups: Groups, w: &Work) -> Vec<Series> {
    let value = |c: &Cell| -> f64 {
        match &w.sf.combine {
            Some((op, _)) => match op {
                AggOp::Sum => c.sum,
                AggOp::Avg => c.sum / c.count as f64,
                AggOp::Min => c.min,
                AggOp::Max => c.max,
                AggOp::Count => c.count as f64,
                AggOp::Percentile(_) | AggOp::Topk(_) | AggOp::Bottomk(_) => c.sum,
            },
            None => match w.sf.per_step {
                StepAgg::Last => c.last,
                StepAgg::Sum | StepAgg::Count => c.sum,
                StepAgg::Avg => c.sum / c.count as f64,
                StepAgg::Min => c.min,
                StepAgg::Max => c.max,
            },
        }
    };
    let mut set: Vec<Series> = groups
        .into_iter()
        .map(|(key, cells)| Series {
            key,
            points: cells.iter().map(|(t, c)| (*t, value(c))).collect(),
        })
        .collect();
    if let Some((op, c)) = w.filter {
        set = ops::cmp_scalar(op, &set, c, false);
    }
    set = ops::normalise(set);
    if w.filter.is_some()
        && let Some((op, by)) = &w.aggregate
    {
        set = ops::aggregate(&set, *op, by);
    }
    set
}

/// Identifies a fragment request (what the evaluator asks for) in the prefetched results.
fn prefetch_key(
    selector: &Selector,
    range: Range,
    per_step: StepAgg,
    over_time: Option<OverTime>,
    filter: Option<(CmpOp, f64)>,
    aggregate: Option<&(AggOp, Vec<KeyPart>)>,
) -> String {
    format!(
        "{selector} {} {over_time:?} {filter:?} {aggregate:?} {} {} {}",
        per_step.name(),
        range.start,
        range.end,
        range.step
    )
}

/// The data source the evaluator reads: fragments computed beforehand, roles resolved.
struct Prefetched {
    roles: HashMap<String, Vec<String>>,
    results: HashMap<String, Vec<Series>>,
}

impl DataSource for Prefetched {
    fn select(
        &self,
        selector: &Selector,
        _start: i64,
        _end: i64,
    ) -> Result<Vec<RawSeries>, SourceError> {
        Err(SourceError(format!(
            "raw selection of {selector} was not planned as a fragment"
        )))
    }

    fn role_members(&self, role: &str) -> Result<Vec<String>, SourceError> {
        Ok(self.roles.get(role).cloned().unwrap_or_default())
    }

    fn fragment(&self, req: &FragmentRequest) -> Result<Vec<Series>, SourceError> {
        let key = prefetch_key(
            &req.selector,
            req.range,
            req.per_step,
            req.over_time,
            req.filter,
            req.aggregate.as_ref(),
        );
        match self.results.get(&key) {
            Some(s) => Ok(s.clone()),
            // A selection that can match nothing was never sent to storage.
            None if selects_nothing(&req.selector) => Ok(Vec::new()),
            None => Err(SourceError(format!("fragment {key} was not computed"))),
        }
    }
}

fn selects_nothing(s: &Selector) -> bool {
    [&s.service, &s.source, &s.metric]
        .iter()
        .any(|m| matches!(m, query_lang::Matcher::OneOf(set) if set.is_empty()))
}

/// What the name index answered.
#[derive(Debug, Clone, Default)]
pub struct IndexAnswer {
    /// Distinct names (services, sources or metrics), sorted.
    pub names: Vec<String>,
    /// Series keys, sorted.
    pub series: Vec<query_lang::SeriesKey>,
    /// Matching items in total (may exceed what is listed).
    pub total: u64,
    /// Zones that did not answer.
    pub missing: Vec<Missing>,
}

impl Federator {
    /// Name-index lookup of `kind` for the series a selection `ts(...)` names, over
    /// `[start, end)`, from every zone holding part of it.
    pub async fn index(
        &self,
        selection: &str,
        kind: proto::storage::IndexKind,
        start: i64,
        end: i64,
        limit: u32,
        deadline: Instant,
    ) -> Result<IndexAnswer, QueryError> {
        let query = query_lang::compile(selection).map_err(|e| QueryError::compile(&e))?;
        let Some(Node::Fragment(f)) = query.plan.nodes.get(query.plan.root) else {
            return Err(QueryError::BadParam {
                param: "match[]",
                reason: format!(
                    "{selection:?} is not a selection: use ts(service, sources, metrics)"
                ),
            });
        };
        let roles = self.resolve_roles(&query, deadline).await?;
        let src = Prefetched {
            roles,
            results: HashMap::new(),
        };
        let selector = {
            let ev = Evaluator::new(&query.plan, &src);
            let m = |p: &Pattern| ev.matcher(p).map_err(|e| QueryError::Eval(e.to_string()));
            Selector {
                service: m(&f.service)?,
                source: m(&f.source)?,
                metric: m(&f.metric)?,
            }
        };
        if selects_nothing(&selector) {
            return Ok(IndexAnswer::default());
        }
        let now = now_ms();
        let calls = self.zones.iter().filter_map(|z| {
            let (lo, hi) = z.window(now);
            let (a, b) = (start.max(lo), end.min(hi));
            (a < b).then(|| {
                let selector = &selector;
                async move {
                    (
                        z.name.clone(),
                        (a, b),
                        z.index(kind, selector, a, b, limit, deadline).await,
                    )
                }
            })
        });
        let mut out = IndexAnswer::default();
        let mut names = BTreeSet::new();
        let mut series = BTreeSet::new();
        let mut answered = false;
        for (zone, range, r) in join_all(calls).await {
            match r {
                Ok((n, s, total)) => {
                    answered = true;
                    names.extend(n);
                    series.extend(s);
                    out.total = out.total.saturating_add(total);
                }
                Err(f) => note_missing(&mut out.missing, &zone, &f, range),
            }
        }
        if !answered && !out.missing.is_empty() {
            let why: Vec<String> = out
                .missing
                .iter()
                .map(|m| format!("zone {}: {}", m.zone, m.reason))
                .collect();
            return Err(QueryError::Unavailable(why.join("; ")));
        }
        out.names = names.into_iter().collect();
        out.series = series.into_iter().collect();
        if limit > 0 {
            out.names.truncate(limit as usize);
            out.series.truncate(limit as usize);
        }
        Ok(out)
    }
}
