//! [`ScyllaStore`]: the session (token-aware load balancing, retries that
//! honour idempotence, paged reads), start-up schema handling, and the
//! write, read, index, aggregate and fragment operations.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use tracing::{debug, info, warn};
use tsdb::{
    ALL_SOURCES, AppendReport, Clock, DAY_MS, Fragment, FragmentResult, KeyPart, Matcher, Sample,
    SampleRow, Selector, SeriesFn, SeriesKey, ServicePoint, SystemClock,
};

use crate::config::ScyllaConfig;
use crate::cql::{self, Stmt};
use crate::error::{Error, Result};
use crate::fold::{FragmentAcc, Grid};
use crate::rows::{
    self, ChunkRow, HOUR_MS, IndexKey, IndexTable, MAX_BATCH_ROWS, ServiceMinuteRow, StoredChunk,
    hour_overlaps, minute_label, partition_batches, plan_write, ttl_for, windows,
};
use crate::schema::{self, SCHEMA_COMPONENT, SCHEMA_VERSION, SchemaAction};

/// A prepared statement with its definition.
#[derive(Debug, Clone)]
struct Prepared {
    def: Stmt,
    ps: PreparedStatement,
}

/// Every prepared statement of the store.
#[derive(Debug)]
struct Statements {
    by_name: BTreeMap<&'static str, Prepared>,
}

impl Statements {
    fn get(&self, s: Stmt) -> &Prepared {
        // Every statement of `cql::ALL` is prepared at connect.
        &self.by_name[s.name]
    }
}

/// One statement (or single-partition unlogged batch) of a write.
enum WriteOp<'a> {
    Chunk(&'a ChunkRow),
    Minutes(Vec<&'a ServiceMinuteRow>),
    Index(Vec<&'a (IndexKey, BTreeSet<i32>)>),
}

#[derive(Debug)]
struct Inner {
    session: Session,
    config: ScyllaConfig,
    clock: Arc<dyn Clock>,
    stmts: Statements,
    /// Last stamp handed out (µs), for write precedence and epochs.
    stamp: AtomicI64,
    /// Index (key, hour) pairs known to be written.
    index_cache: Mutex<HashSet<(IndexKey, i32)>>,
}

/// The ScyllaDB/Cassandra backend. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

fn is_all_sources(sel: &Selector) -> bool {
    matches!(&sel.source, Matcher::Literal(s) if s == ALL_SOURCES)
}

fn present(day: i64, hours: &Option<Vec<i32>>, t0: i64, t1: i64) -> bool {
    hours
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|&h| hour_overlaps(day, h, t0, t1))
}

impl ScyllaStore {
    /// Validates `config`, connects, checks (and when allowed creates) the
    /// schema, and prepares every statement.
    pub async fn connect(config: ScyllaConfig) -> Result<Self> {
        Self::connect_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`ScyllaStore::connect`] with an injected clock (retention, the
    /// out-of-order window and TTLs read it).
    pub async fn connect_with_clock(config: ScyllaConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        if config.replication.min_factor() < 3 {
            warn!(
                keyspace = %config.keyspace,
                replication = ?config.replication,
                "replication factor below 3: acknowledged writes survive fewer node losses"
            );
        }
        let session = Self::open_session(&config).await?;
        Self::ensure_schema(&session, &config).await?;
        let stmts = Self::prepare_all(&session, &config).await?;
        info!(
            nodes = %config.nodes.join(","),
            keyspace = %config.keyspace,
            schema_version = SCHEMA_VERSION,
            "scylla store ready"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                config,
                clock,
                stmts,
                stamp: AtomicI64::new(i64::MIN),
                index_cache: Mutex::new(HashSet::new()),
            }),
        })
    }

    async fn open_session(config: &ScyllaConfig) -> Result<Session> {
        // Token-aware: statements go to a replica of their partition; with a
        // local data centre, its replicas first.
        let mut lb = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.local_datacenter {
            lb = lb.prefer_datacenter(dc.clone()).permit_dc_failover(true);
        }
        // The default retry policy retries timeouts and unavailable errors
        // only for statements marked idempotent (see `cql`).
        let profile = ExecutionProfile::builder()
            .consistency(config.write_consistency.to_driver())
            .request_timeout(Some(config.request_timeout()))
            .load_balancing_policy(lb.build())
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .build();
        SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .default_execution_profile_handle(profile.into_handle())
            .auto_await_schema_agreement(config.await_schema_agreement)
            .build()
            .await
            .map_err(|source| Error::Connect {
                nodes: config.nodes.join(","),
                source: Box::new(source),
            })
    }

    async fn ddl(session: &Session, what: &'static str, cql: String) -> Result<()> {
        debug!(%cql, "ddl");
        session
            .query_unpaged(cql, ())
            .await
            .map_err(|e| Error::execute(what, e))?;
        Ok(())
    }

    async fn read_version(session: &Session, config: &ScyllaConfig) -> Result<Option<i32>> {
        let ks = &config.keyspace;
        if !config.manage_schema {
            // Without permission to create, a missing table means "no
            // schema", not a failure.
            let state = session.get_cluster_state();
            // (Only trusted when the driver fetched schema metadata at all.)
            let metadata_known = state.keyspaces_iter().next().is_some();
            match state.get_keyspace(ks) {
                Some(k) if !k.tables.contains_key("schema_version") => return Ok(None),
                None if metadata_known => return Ok(None),
                _ => {}
            }
        }
        let res = session
            .query_unpaged(schema::select_version(ks), (SCHEMA_COMPONENT,))
            .await
            .map_err(|e| Error::execute("select_version", e))?;
        let rows = res
            .into_rows_result()
            .map_err(|e| Error::execute("select_version", e))?;
        let row = rows
            .maybe_first_row::<(Option<i32>,)>()
            .map_err(|e| Error::BadRow {
                statement: "select_version",
                reason: e.to_string(),
            })?;
        Ok(row.and_then(|r| r.0))
    }

    async fn ensure_schema(session: &Session, config: &ScyllaConfig) -> Result<()> {
        let ks = &config.keyspace;
        if config.manage_schema {
            Self::ddl(session, "create_keyspace", schema::create_keyspace(config)).await?;
            let tables = schema::create_tables(config);
            Self::ddl(session, "create_table", tables[0].clone()).await?;
        }
        let found = Self::read_version(session, config).await?;
        match schema::check_version(ks, found, config.manage_schema)? {
            SchemaAction::Use => {
                debug!(keyspace = %ks, version = SCHEMA_VERSION, "schema is current");
                Ok(())
            }
            SchemaAction::Create => {
                info!(keyspace = %ks, version = SCHEMA_VERSION, "creating schema");
                for t in schema::create_tables(config).into_iter().skip(1) {
                    Self::ddl(session, "create_table", t).await?;
                }
                let now = SystemClock.now_ms();
                session
                    .query_unpaged(
                        schema::insert_version(ks),
                        (SCHEMA_COMPONENT, SCHEMA_VERSION, now),
                    )
                    .await
                    .map_err(|e| Error::execute("insert_version", e))?;
                // Another store may have won the race with another version.
                let found = Self::read_version(session, config).await?;
                match schema::check_version(ks, found, false)? {
                    SchemaAction::Use => Ok(()),
                    SchemaAction::Create => Err(Error::SchemaMissing {
                        keyspace: ks.clone(),
                    }),
                }
            }
        }
    }

    async fn prepare_all(session: &Session, config: &ScyllaConfig) -> Result<Statements> {
        let mut by_name = BTreeMap::new();
        for def in cql::ALL {
            let mut ps = session
                .prepare(def.cql(&config.keyspace))
                .await
                .map_err(|source| Error::Prepare {
                    statement: def.name,
                    source: Box::new(source),
                })?;
            ps.set_is_idempotent(def.idempotent);
            if def.read {
                ps.set_consistency(config.read_consistency.to_driver());
                ps.set_page_size(config.page_size);
            } else {
                ps.set_consistency(config.write_consistency.to_driver());
            }
            by_name.insert(def.name, Prepared { def, ps });
        }
        Ok(Statements { by_name })
    }

    /// The settings the store runs with.
    pub fn config(&self) -> &ScyllaConfig {
        &self.inner.config
    }

    /// The driver session (for diagnostics and tests).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The schema version recorded in the keyspace.
    pub async fn schema_version(&self) -> Result<Option<i32>> {
        let rows: Vec<(Option<i32>,)> = self.rows(cql::SELECT_VERSION, (SCHEMA_COMPONENT,)).await?;
        Ok(rows.into_iter().next().and_then(|r| r.0))
    }

    /// A strictly increasing stamp in µs, at least the clock's time.
    fn next_stamp(&self) -> i64 {
        let now_us = self.inner.clock.now_ms().saturating_mul(1000);
        let prev = self
            .inner
            .stamp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some(now_us.max(p.saturating_add(1)))
            })
            .unwrap_or(now_us);
        now_us.max(prev.saturating_add(1))
    }

    /// `[t0, t1)` cut to the times that can hold data: no sample older than
    /// the retention or newer than the future tolerance was accepted (a day
    /// of slack on each side covers clock skew between writers).
    fn clamp(&self, t0: i64, t1: i64) -> (i64, i64) {
        let c = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let lo = now
            .saturating_sub(c.retention_ms())
            .saturating_sub(c.chunk_window_ms)
            .saturating_sub(DAY_MS);
        let hi = now
            .saturating_add(c.future_tolerance_ms)
            .saturating_add(DAY_MS);
        (t0.max(lo), t1.min(hi))
    }

    async fn exec(&self, s: Stmt, values: impl SerializeRow) -> Result<()> {
        let p = self.inner.stmts.get(s);
        self.inner
            .session
            .execute_unpaged(&p.ps, values)
            .await
            .map_err(|e| Error::execute(p.def.name, e))?;
        Ok(())
    }

    /// All rows of a read, fetched page by page.
    async fn rows<R>(&self, s: Stmt, values: impl SerializeRow) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let p = self.inner.stmts.get(s);
        let name = p.def.name;
        let pager = self
            .inner
            .session
            .execute_iter(p.ps.clone(), values)
            .await
            .map_err(|e| Error::execute(name, e))?;
        let mut stream = pager.rows_stream::<R>().map_err(|e| Error::BadRow {
            statement: name,
            reason: e.to_string(),
        })?;
        let mut out = Vec::new();
        while let Some(row) = stream.next().await {
            out.push(row.map_err(|e| Error::execute(name, e))?);
        }
        Ok(out)
    }

    // ------------------------------------------------------------ writes

    /// Writes a batch. Returns once every accepted sample is stored at the
    /// configured write consistency; rejected samples are listed with
    /// reasons. On error nothing is acknowledged and the whole batch may be
    /// sent again: every statement is idempotent, so a replay neither
    /// duplicates samples nor double counts service aggregates.
    pub async fn write(&self, rows: &[SampleRow<'_>]) -> Result<AppendReport> {
        let c = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let written_at = self.next_stamp();
        let plan = plan_write(rows, now, written_at, c);
        let mut fresh: Vec<(IndexKey, i32)> = Vec::new();
        let mut index: Vec<(IndexKey, BTreeSet<i32>)> = Vec::new();
        {
            let cache = self
                .inner
                .index_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (k, hours) in &plan.index {
                let missing: BTreeSet<i32> = hours
                    .iter()
                    .copied()
                    .filter(|h| !cache.contains(&(k.clone(), *h)))
                    .collect();
                if !missing.is_empty() {
                    fresh.extend(missing.iter().map(|&h| (k.clone(), h)));
                    index.push((k.clone(), missing));
                }
            }
        }
        let mut ops: Vec<WriteOp<'_>> = plan.chunks.iter().map(WriteOp::Chunk).collect();
        ops.extend(
            partition_batches(
                &plan.minutes,
                |r| (r.service.as_str(), r.metric.as_str(), r.hour),
                MAX_BATCH_ROWS,
            )
            .into_iter()
            .map(WriteOp::Minutes),
        );
        ops.extend(
            partition_batches(&index, |(k, _)| k.partition(), MAX_BATCH_ROWS)
                .into_iter()
                .map(WriteOp::Index),
        );
        let n_ops = ops.len();
        // The futures are made before they enter the stream: a closure mapping
        // borrowed ops inside the stream makes the whole future lose `Send`
        // under boxing (rust-lang/rust#102211).
        let writes: Vec<_> = ops.into_iter().map(|op| self.write_op(op, now)).collect();
        stream::iter(writes)
            .buffer_unordered(c.write_concurrency)
            .try_for_each(|()| futures::future::ready(Ok(())))
            .await?;
        self.remember_index(fresh);
        // Epochs change only once the backfilled data is stored, so a cache
        // filled under the new epoch sees it.
        for (service, day) in &plan.backfilled {
            let epoch = self.next_stamp();
            self.exec(cql::SET_EPOCH, (epoch, service.as_str(), *day))
                .await?;
        }
        debug!(
            accepted = plan.report.accepted,
            backfilled = plan.report.backfilled,
            rejected = plan.report.rejected.len(),
            statements = n_ops,
            "batch written"
        );
        Ok(plan.report)
    }

    /// Runs `s` once per row of `values`: a plain execution for one row,
    /// else one unlogged batch (the rows share a partition).
    async fn exec_many<V: SerializeRow>(&self, s: Stmt, values: Vec<V>) -> Result<()> {
        let p = self.inner.stmts.get(s);
        if values.len() == 1 {
            let v = values.into_iter().next().expect("one row");
            return self.exec(s, v).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in 0..values.len() {
            batch.append_statement(p.ps.clone());
        }
        batch.set_is_idempotent(p.def.idempotent);
        batch.set_consistency(self.inner.config.write_consistency.to_driver());
        self.inner
            .session
            .batch(&batch, values)
            .await
            .map_err(|e| Error::execute(p.def.name, e))?;
        Ok(())
    }

    async fn write_op(&self, op: WriteOp<'_>, now: i64) -> Result<()> {
        let ttl_secs = self.inner.config.ttl_secs;
        match op {
            WriteOp::Chunk(r) => {
                self.exec(
                    cql::INSERT_CHUNK,
                    (
                        r.key.service.as_str(),
                        r.key.source.as_str(),
                        r.key.metric.as_str(),
                        r.window_start,
                        r.first_ts,
                        r.digest,
                        r.last_ts,
                        r.samples,
                        r.written_at,
                        r.chunk.as_slice(),
                        r.ttl,
                    ),
                )
                .await
            }
            WriteOp::Minutes(rows) => {
                let values: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        (
                            r.service.as_str(),
                            r.metric.as_str(),
                            r.hour,
                            r.minute,
                            r.source.as_str(),
                            r.value,
                            r.ttl,
                            r.timestamp_us,
                        )
                    })
                    .collect();
                self.exec_many(cql::INSERT_SERVICE_MINUTE, values).await
            }
            WriteOp::Index(entries) => {
                let Some((first, _)) = entries.first() else {
                    return Ok(());
                };
                // The day's index lives as long as its newest possible data.
                let ttl = ttl_for((first.day + 1).saturating_mul(DAY_MS) - 1, now, ttl_secs);
                let it = entries.iter();
                match first.table {
                    IndexTable::Services => {
                        let v: Vec<_> = it
                            .map(|(k, h)| (ttl, h, k.day, k.service.as_str()))
                            .collect();
                        self.exec_many(cql::ADD_SERVICE, v).await
                    }
                    IndexTable::Metrics => {
                        let v: Vec<_> = it
                            .map(|(k, h)| (ttl, h, k.service.as_str(), k.day, k.metric.as_str()))
                            .collect();
                        self.exec_many(cql::ADD_METRIC, v).await
                    }
                    IndexTable::Sources => {
                        let v: Vec<_> = it
                            .map(|(k, h)| (ttl, h, k.service.as_str(), k.day, k.source.as_str()))
                            .collect();
                        self.exec_many(cql::ADD_SOURCE, v).await
                    }
                    IndexTable::Series => {
                        let v: Vec<_> = it
                            .map(|(k, h)| {
                                (
                                    ttl,
                                    h,
                                    k.service.as_str(),
                                    k.metric.as_str(),
                                    k.day,
                                    k.source.as_str(),
                                )
                            })
                            .collect();
                        self.exec_many(cql::ADD_SERIES, v).await
                    }
                }
            }
        }
    }

    fn remember_index(&self, fresh: Vec<(IndexKey, i32)>) {
        let cap = self.inner.config.index_cache_entries;
        if cap == 0 || fresh.is_empty() {
            return;
        }
        let mut cache = self
            .inner
            .index_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() + fresh.len() > cap {
            // Forgetting only costs repeated (idempotent) index writes.
            cache.clear();
        }
        cache.extend(fresh);
    }

    // ------------------------------------------------------------ reads

    /// Samples of one series in `[t0, t1)`, time-ordered, last write wins.
    /// For a service aggregate key (source [`ALL_SOURCES`]) the samples are
    /// the per-minute sums.
    pub async fn read_range(&self, key: &SeriesKey, t0: i64, t1: i64) -> Result<Vec<Sample>> {
        if key.source == ALL_SOURCES {
            return Ok(self
                .service_aggregate(&key.service, &key.metric, t0, t1)
                .await?
                .into_iter()
                .map(|p| Sample {
                    ts: p.ts,
                    value: p.sum,
                })
                .collect());
        }
        let (t0, t1) = self.clamp(t0, t1);
        let width = self.inner.config.chunk_window_ms;
        let parts: Vec<Vec<Sample>> = stream::iter(windows(t0, t1, width))
            .map(|w| self.read_window(key, w, t0, t1))
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    async fn read_window(&self, key: &SeriesKey, w: i64, t0: i64, t1: i64) -> Result<Vec<Sample>> {
        type Row = (i64, i64, i64, i32, i64, Vec<u8>);
        let rows: Vec<Row> = self
            .rows(
                cql::SELECT_CHUNKS,
                (
                    key.service.as_str(),
                    key.source.as_str(),
                    key.metric.as_str(),
                    w,
                    t1 - 1,
                ),
            )
            .await?;
        let chunks: Vec<StoredChunk> = rows
            .into_iter()
            .map(
                |(first_ts, digest, last_ts, samples, written_at, chunk)| StoredChunk {
                    first_ts,
                    digest,
                    last_ts,
                    samples,
                    written_at,
                    chunk,
                },
            )
            .collect();
        rows::merge_chunks(&chunks, t0, t1).map_err(|(first_ts, e)| Error::CorruptChunk {
            series: key.to_string(),
            window: w,
            first_ts,
            reason: e.to_string(),
        })
    }

    /// Range scan: every matching series with its samples in `[t0, t1)`
    /// (series without samples there are left out).
    pub async fn scan(
        &self,
        sel: &Selector,
        t0: i64,
        t1: i64,
    ) -> Result<Vec<(SeriesKey, Vec<Sample>)>> {
        let keys = self.select(sel, t0, t1).await?;
        let out: Vec<(SeriesKey, Vec<Sample>)> = stream::iter(keys)
            .map(|k| async move {
                let s = self.read_range(&k, t0, t1).await?;
                Ok::<_, Error>((k, s))
            })
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        Ok(out.into_iter().filter(|(_, s)| !s.is_empty()).collect())
    }

    /// Per minute `(ts - 60 s, ts]` in `[t0, t1)`: count, sum, min and max
    /// over the sources of (service, metric) of each one's last sample in
    /// the minute.
    pub async fn service_aggregate(
        &self,
        service: &str,
        metric: &str,
        t0: i64,
        t1: i64,
    ) -> Result<Vec<ServicePoint>> {
        let (t0, t1) = self.clamp(t0, t1);
        let start = minute_label(t0);
        if start >= t1 {
            return Ok(Vec::new());
        }
        let hours = windows(start, t1, HOUR_MS);
        let parts: Vec<Vec<(i64, String, f64)>> = stream::iter(hours)
            .map(|h| {
                let lo = start.max(h);
                let hi = t1.min(h.saturating_add(HOUR_MS));
                self.rows(
                    cql::SELECT_SERVICE_MINUTES,
                    (service, metric, h.div_euclid(HOUR_MS), lo, hi),
                )
            })
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        Ok(rows::aggregate_minutes(
            parts
                .into_iter()
                .flatten()
                .map(|(minute, _source, v)| (minute, v)),
        ))
    }

    /// The epoch of (service, day): changes whenever a backfill touches that
    /// day of that service (0 if never). Day = `ts.div_euclid(DAY_MS)`.
    pub async fn epoch(&self, service: &str, day: i64) -> Result<u64> {
        let rows: Vec<(Option<i64>,)> = self.rows(cql::GET_EPOCH, (service, day)).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.0)
            .map(|e| e.max(0) as u64)
            .unwrap_or(0))
    }

    // ------------------------------------------------------------ name index

    /// Days of `[t0, t1)` after clamping, or none.
    fn days(&self, t0: i64, t1: i64) -> Option<(i64, i64, Vec<i64>)> {
        let (t0, t1) = self.clamp(t0, t1);
        (t1 > t0).then(|| (t0, t1, (rows::day(t0)..=rows::day(t1 - 1)).collect()))
    }

    /// (service, day) pairs present in `[t0, t1)` whose service matches.
    async fn services(
        &self,
        m: &Matcher,
        t0: i64,
        t1: i64,
        days: &[i64],
    ) -> Result<Vec<(String, i64)>> {
        let lists: Vec<Vec<(String, i64)>> = stream::iter(days.iter().copied())
            .map(|d| async move {
                let rows: Vec<(String, Option<Vec<i32>>)> =
                    self.rows(cql::LIST_SERVICES, (d,)).await?;
                Ok::<_, Error>(
                    rows.into_iter()
                        .filter(|(s, h)| m.matches(s) && present(d, h, t0, t1))
                        .map(|(s, _)| (s, d))
                        .collect(),
                )
            })
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// (service, metric, day) triples present in `[t0, t1)`.
    async fn metrics(
        &self,
        sel: &Selector,
        t0: i64,
        t1: i64,
        days: &[i64],
    ) -> Result<Vec<(String, String, i64)>> {
        let svc_days = match &sel.service {
            // A literal service needs no listing: its metrics prove presence.
            Matcher::Literal(s) => days.iter().map(|&d| (s.clone(), d)).collect(),
            m => self.services(m, t0, t1, days).await?,
        };
        let lists: Vec<Vec<(String, String, i64)>> = stream::iter(svc_days)
            .map(|(s, d)| async move {
                let rows: Vec<(String, Option<Vec<i32>>)> = match &sel.metric {
                    Matcher::Literal(m) => {
                        self.rows(cql::GET_METRIC, (s.as_str(), d, m.as_str()))
                            .await?
                    }
                    _ => self.rows(cql::LIST_METRICS, (s.as_str(), d)).await?,
                };
                Ok::<_, Error>(
                    rows.into_iter()
                        .filter(|(m, h)| sel.metric.matches(m) && present(d, h, t0, t1))
                        .map(|(m, _)| (s.clone(), m, d))
                        .collect(),
                )
            })
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Real series matching `sel` that had data during `[t0, t1)` (hour
    /// granularity), sorted.
    async fn select_series(&self, sel: &Selector, t0: i64, t1: i64) -> Result<Vec<SeriesKey>> {
        let Some((t0, t1, days)) = self.days(t0, t1) else {
            return Ok(Vec::new());
        };
        let triples = self.metrics(sel, t0, t1, &days).await?;
        let lists: Vec<Vec<SeriesKey>> = stream::iter(triples)
            .map(|(s, m, d)| async move {
                let rows: Vec<(String, Option<Vec<i32>>)> = self
                    .rows(cql::LIST_SERIES, (s.as_str(), m.as_str(), d))
                    .await?;
                Ok::<_, Error>(
                    rows.into_iter()
                        .filter(|(src, h)| sel.source.matches(src) && present(d, h, t0, t1))
                        .map(|(src, _)| SeriesKey::new(s.clone(), src, m.clone()))
                        .collect(),
                )
            })
            .buffered(self.inner.config.read_concurrency)
            .try_collect()
            .await?;
        let set: BTreeSet<SeriesKey> = lists.into_iter().flatten().collect();
        Ok(set.into_iter().collect())
    }

    /// Service aggregate keys `(service, *all*, metric)` present in
    /// `[t0, t1)`, sorted.
    async fn aggregate_keys(&self, sel: &Selector, t0: i64, t1: i64) -> Result<Vec<SeriesKey>> {
        let Some((t0, t1, days)) = self.days(t0, t1) else {
            return Ok(Vec::new());
        };
        let set: BTreeSet<SeriesKey> = self
            .metrics(sel, t0, t1, &days)
            .await?
            .into_iter()
            .map(|(s, m, _)| SeriesKey::new(s, ALL_SOURCES, m))
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Series matching `sel` that had data during `[t0, t1)`, sorted. With
    /// source [`ALL_SOURCES`] it lists the service aggregates instead.
    /// Presence is kept per hour, so a series counts for every hour it has
    /// a sample in.
    pub async fn select(&self, sel: &Selector, t0: i64, t1: i64) -> Result<Vec<SeriesKey>> {
        if is_all_sources(sel) {
            self.aggregate_keys(sel, t0, t1).await
        } else {
            self.select_series(sel, t0, t1).await
        }
    }

    /// Distinct names of one key part among series matching `sel` during
    /// `[t0, t1)` (discovery: services, sources, metrics), sorted.
    pub async fn names(
        &self,
        sel: &Selector,
        part: KeyPart,
        t0: i64,
        t1: i64,
    ) -> Result<Vec<String>> {
        if is_all_sources(sel) {
            // No real source carries the reserved name.
            return Ok(Vec::new());
        }
        let Some((t0, t1, days)) = self.days(t0, t1) else {
            return Ok(Vec::new());
        };
        let any = |m: &Matcher| matches!(m, Matcher::Any);
        let names: BTreeSet<String> = match part {
            KeyPart::Service if any(&sel.source) && any(&sel.metric) => self
                .services(&sel.service, t0, t1, &days)
                .await?
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
            KeyPart::Metric if any(&sel.source) => self
                .metrics(sel, t0, t1, &days)
                .await?
                .into_iter()
                .map(|(_, m, _)| m)
                .collect(),
            KeyPart::Source if any(&sel.metric) => {
                let svc_days = self.services(&sel.service, t0, t1, &days).await?;
                let lists: Vec<Vec<String>> = stream::iter(svc_days)
                    .map(|(s, d)| async move {
                        let rows: Vec<(String, Option<Vec<i32>>)> =
                            self.rows(cql::LIST_SOURCES, (s.as_str(), d)).await?;
                        Ok::<_, Error>(
                            rows.into_iter()
                                .filter(|(src, h)| sel.source.matches(src) && present(d, h, t0, t1))
                                .map(|(src, _)| src)
                                .collect(),
                        )
                    })
                    .buffered(self.inner.config.read_concurrency)
                    .try_collect()
                    .await?;
                lists.into_iter().flatten().collect()
            }
            _ => self
                .select_series(sel, t0, t1)
                .await?
                .into_iter()
                .map(|k| k.part(part).to_string())
                .collect(),
        };
        Ok(names.into_iter().collect())
    }

    // ------------------------------------------------------------ fragments

    /// Executes a fragment: select, one value per series per step, folded
    /// across series into partials per group (raw samples only: the Scylla
    /// backend keeps no rollups, so `rollup_ms` is always `None`).
    pub async fn aggregate(&self, f: &Fragment) -> Result<FragmentResult> {
        self.aggregate_with(f, None).await
    }

    /// [`ScyllaStore::aggregate`] with each series' step values passed through
    /// `each` before they fold into their group (`tsdb::Engine::aggregate_each`).
    pub async fn aggregate_each(
        &self,
        f: &Fragment,
        each: &dyn SeriesFn,
    ) -> Result<FragmentResult> {
        self.aggregate_with(f, Some(each)).await
    }

    async fn aggregate_with(
        &self,
        f: &Fragment,
        each: Option<&dyn SeriesFn>,
    ) -> Result<FragmentResult> {
        let mut acc = FragmentAcc::with(f, each)?;
        let grid: Grid = acc.grid();
        if grid.n == 0 {
            return Ok(FragmentResult::default());
        }
        let (lo, hi) = grid.sample_range();
        let keys = self.select(&f.selector, lo, hi).await?;
        let mut reads = stream::iter(keys)
            .map(|k| async move {
                let s = self.read_range(&k, lo, hi).await?;
                Ok::<_, Error>((k, s))
            })
            .buffered(self.inner.config.read_concurrency);
        while let Some(r) = reads.next().await {
            let (k, s) = r?;
            acc.add(&k, &s);
        }
        Ok(acc.finish())
    }
}
