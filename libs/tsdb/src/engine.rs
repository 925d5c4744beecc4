//! The engine: ties WAL, head, blocks, name index and queries together
//! behind one `Send + Sync` handle.
//!
//! Concurrency: one `RwLock` guards the mutable state. Appends hold it for
//! writing while they intern, write the WAL record and apply to the head
//! (so head order equals log order), then release it and wait for the
//! group fsync. Queries hold it for reading only to copy head samples and
//! the list of blocks; decoding sealed data happens without the lock.
//! Sealing and rotation hold it for writing; compaction builds its output
//! without it and swaps blocks in under it.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fnv::{FnvHashMap, FnvHashSet};
use parking_lot::{Mutex, RwLock};

use crate::block::{Block, BlockMeta, BlockWriter, Columns, ROLLUP_WIDTHS, Rollup};
use crate::cells;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::head::{HeadPartition, SeriesBuf};
use crate::index::{Index, Matcher, Selector};
use crate::query::{
    Each, Fragment, FragmentResult, GroupResult, Partials, SeriesFn, StepAgg, StepFold, Steps,
};
use crate::types::*;
use crate::wal::{FsyncPolicy, RecordBuf, Wal, replay, sync_dir};

/// Engine configuration. Every duration is in milliseconds.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Samples older than `now - ooo_window_ms` take the backfill path
    /// (default 10 min).
    pub ooo_window_ms: i64,
    /// Samples older than `now - retention_ms` are rejected and whole
    /// partitions past it are deleted (default 30 days).
    pub retention_ms: i64,
    /// Samples newer than `now + future_tolerance_ms` are rejected
    /// (default 10 min).
    pub future_tolerance_ms: i64,
    /// WAL durability (default: fsync per group commit).
    pub fsync: FsyncPolicy,
    /// Head partition and level-0 block window (default 2 h).
    pub partition_ms: i64,
    /// Window that compaction merges cold blocks into (default 1 day; a
    /// multiple of `partition_ms`).
    pub compacted_partition_ms: i64,
    /// Window that compaction merges cold compacted windows into once the
    /// whole of it is cold (default 0, none; else a multiple of
    /// `compacted_partition_ms`, e.g. 7 days). Longer blocks store less a
    /// sample (fewer series headers, longer runs to pack: 0.94 instead of
    /// 0.99 bytes on fleet-shaped data) but read slower: a raw read of part
    /// of one decodes the whole of each series' chunk (a day of one series
    /// takes 0.2 instead of 0.03 ms), and even a read of all of it decodes
    /// about half as slowly again (the federator's one-minute sum over 7
    /// days: 1.3 s instead of 0.9 s). Only windows wholly past the
    /// out-of-order window are merged. Retention deletes whole blocks, so
    /// data can outlive it by up to this window.
    pub long_partition_ms: i64,
    /// The backfill head is sealed into blocks once it holds this many
    /// samples (default 4 M).
    pub backfill_max_samples: usize,
    /// A series absent for longer than this is out of the name index in
    /// between (default 1 h).
    pub index_gap_ms: i64,
    /// Threads used by one query (default: available parallelism).
    pub read_threads: usize,
    /// Blocks code raw decimals against their 5-minute rollup (`cells`;
    /// default on): about 0.27 instead of 0.86 bytes a sample on fleet-shaped
    /// data, for reads of raw samples that take about twice the CPU. Blocks
    /// of either kind are read whatever this says.
    pub raw_against_rollup: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ooo_window_ms: 600_000,
            retention_ms: 30 * DAY_MS,
            future_tolerance_ms: 600_000,
            fsync: FsyncPolicy::Always,
            partition_ms: 2 * 3_600_000,
            compacted_partition_ms: DAY_MS,
            long_partition_ms: 0,
            backfill_max_samples: 4_000_000,
            index_gap_ms: 3_600_000,
            read_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            raw_against_rollup: true,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadOptions(m));
        if self.partition_ms <= 0 || self.compacted_partition_ms <= 0 {
            return bad("partition windows must be positive".into());
        }
        if self.compacted_partition_ms % self.partition_ms != 0 {
            return bad(format!(
                "compacted_partition_ms {} is not a multiple of partition_ms {}",
                self.compacted_partition_ms, self.partition_ms
            ));
        }
        if self.long_partition_ms < 0 || self.long_partition_ms % self.compacted_partition_ms != 0 {
            return bad(format!(
                "long_partition_ms {} is not 0 or a multiple of compacted_partition_ms {}",
                self.long_partition_ms, self.compacted_partition_ms
            ));
        }
        if self.ooo_window_ms < 0
            || self.retention_ms <= self.ooo_window_ms
            || self.future_tolerance_ms < 0
        {
            return bad(
                "need 0 <= ooo_window_ms < retention_ms and future_tolerance_ms >= 0".into(),
            );
        }
        Ok(())
    }
}

/// Block bytes by what they hold; see [`Engine::block_breakdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockBytes {
    /// Raw sample chunks.
    pub raw: u64,
    /// Rollup cells: 5-minute, then 1-hour.
    pub rollups: [u64; 2],
    /// Series indexes, symbol tables and footers.
    pub other: u64,
}

/// A block that failed verification and is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlock {
    /// The file.
    pub path: PathBuf,
    /// Why it was rejected.
    pub reason: String,
}

/// Per-minute aggregate of a service over all its sources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServicePoint {
    /// End of the minute `(ts - 60 s, ts]`.
    pub ts: i64,
    /// Sources reporting in that minute.
    pub count: u64,
    /// Sum of each source's last sample in the minute.
    pub sum: f64,
    /// Smallest of them.
    pub min: f64,
    /// Largest of them.
    pub max: f64,
}

/// What `maintain` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Blocks written by sealing.
    pub sealed_blocks: usize,
    /// Blocks written by compaction.
    pub compacted_blocks: usize,
    /// Blocks deleted by retention.
    pub expired_blocks: usize,
}

#[derive(Debug)]
struct State {
    index: Index,
    main: BTreeMap<i64, HeadPartition>,
    backfill: BTreeMap<i64, HeadPartition>,
    backfill_samples: usize,
    blocks: Vec<Arc<Block>>,
    corrupt: Vec<CorruptBlock>,
    epochs: FnvHashMap<(u32, i64), u64>,
    epoch_counter: u64,
    boot: u64,
    next_seq: u64,
    wal_gen: u32,
    rec: RecordBuf,
    main_rows: Vec<(u32, i64, f64)>,
    bf_rows: Vec<(u32, i64, f64)>,
}

impl State {
    fn next_epoch(&mut self) -> u64 {
        self.epoch_counter += 1;
        (self.boot << 32) | self.epoch_counter
    }

    fn alloc_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts rows in the head; returns the (service symbol, day, new epoch) of every
    /// epoch a backfill bumped.
    fn apply(
        &mut self,
        backfill: bool,
        rows: &[(u32, i64, f64)],
        partition_ms: i64,
    ) -> Vec<(u32, i64, u64)> {
        let mut touched: FnvHashSet<(u32, i64)> = FnvHashSet::default();
        let map = if backfill {
            &mut self.backfill
        } else {
            &mut self.main
        };
        // History comes in bulk, many samples per series per batch: taken
        // series by series (a stable sort keeps each series' arrival order,
        // so the last write still wins), each series' head state is touched
        // once per batch instead of once per sample.
        let sorted;
        let rows = if backfill && rows.len() > 1 {
            let mut r = rows.to_vec();
            r.sort_by_key(|x| x.0);
            sorted = r;
            &sorted[..]
        } else {
            rows
        };
        let mut cur_p = i64::MIN;
        let mut part: Option<&mut HeadPartition> = None;
        let mut last_touch = (u32::MAX, i64::MIN);
        for &(sid, ts, v) in rows {
            let p = ts.div_euclid(partition_ms) * partition_ms;
            if p != cur_p || part.is_none() {
                cur_p = p;
                part = Some(map.entry(p).or_default());
            }
            let hp = part.as_mut().expect("set above");
            let before = hp.samples;
            hp.insert(sid, ts, v);
            if backfill {
                self.backfill_samples += hp.samples - before;
                let key = (self.index.keys[sid as usize].0, ts.div_euclid(DAY_MS));
                if key != last_touch {
                    touched.insert(key);
                    last_touch = key;
                }
            }
            self.index.touch(sid, ts, ts);
        }
        touched
            .into_iter()
            .map(|key| {
                let e = self.next_epoch();
                self.epochs.insert(key, e);
                (key.0, key.1, e)
            })
            .collect()
    }

    fn bump(&self, (svc, day, epoch): (u32, i64, u64)) -> EpochBump {
        EpochBump {
            service: self.index.services.name(svc).to_string(),
            day,
            epoch,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    appended: AtomicU64,
    backfilled: AtomicU64,
    rej_retention: AtomicU64,
    rej_future: AtomicU64,
    rej_name: AtomicU64,
    torn: AtomicU64,
    sealed: AtomicU64,
    compactions: AtomicU64,
    expired: AtomicU64,
}

/// The embedded time-series engine. Cheap to share: wrap in an `Arc`.
#[derive(Debug)]
pub struct Engine {
    dir: PathBuf,
    blocks_dir: PathBuf,
    opts: Options,
    state: RwLock<State>,
    wal: Wal,
    maint: Mutex<()>,
    counters: Counters,
}

/// Sealed and head data of one series for a query.
struct SeriesSources {
    blocks: Vec<(Arc<Block>, crate::block::Entry)>,
    head_ts: Vec<i64>,
    head_vals: Vec<f64>,
}

fn validate_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN
}

impl Engine {
    /// Opens (or creates) an engine in `dir`: loads and verifies blocks
    /// (corrupt ones are reported and skipped), loads the index snapshot,
    /// replays the WAL (truncating a torn tail) and starts a new segment.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Engine> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let wal_dir = dir.join("wal");
        let blocks_dir = dir.join("blocks");
        for d in [&dir, &wal_dir, &blocks_dir] {
            fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
        }
        let boot_path = dir.join("BOOT");
        let boot = match fs::read_to_string(&boot_path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0) + 1,
            Err(_) => 1,
        };
        let tmp = dir.join("BOOT.tmp");
        fs::write(&tmp, boot.to_string()).map_err(|e| Error::io("write", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, &boot_path).map_err(|e| Error::io("rename", &boot_path, e))?;

        let mut index = Index::new(opts.index_gap_ms);
        let snap = dir.join("index.snap");
        if let Err(e) = index.load_snapshot(&snap) {
            tracing::error!(error = %e, "ignoring the index snapshot; rebuilding from data");
            index = Index::new(opts.index_gap_ms);
        }

        let mut blocks = Vec::new();
        let mut corrupt = Vec::new();
        let mut next_seq = 0u64;
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&blocks_dir).map_err(|e| Error::io("list", &blocks_dir, e))? {
            let path = entry.map_err(|e| Error::io("list", &blocks_dir, e))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            } else if let Some(num) = name
                .strip_suffix(".blk")
                .and_then(|n| n.parse::<u64>().ok())
            {
                next_seq = next_seq.max(num);
                names.push(path);
            }
        }
        names.sort();
        for path in names {
            match Block::open(&path) {
                Ok(mut ub) => {
                    let sids: Vec<SeriesId> = ub
                        .keys
                        .iter()
                        .map(|k| index.intern(&k[0], &k[1], &k[2]).0)
                        .collect();
                    ub.block.bind(&sids);
                    for e in &ub.block.entries {
                        index.touch(e.sid, e.min_t, e.max_t);
                    }
                    next_seq = next_seq.max(ub.block.meta.seq);
                    blocks.push(Arc::new(ub.block));
                }
                Err(e) => {
                    tracing::error!(error = %e, "skipping corrupt block");
                    corrupt.push(CorruptBlock {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        blocks.sort_by_key(|b| (b.meta.start, b.meta.seq));

        let mut st = State {
            index,
            main: BTreeMap::new(),
            backfill: BTreeMap::new(),
            backfill_samples: 0,
            blocks,
            corrupt,
            epochs: FnvHashMap::default(),
            epoch_counter: 0,
            boot,
            next_seq,
            wal_gen: 0,
            rec: RecordBuf::default(),
            main_rows: Vec::new(),
            bf_rows: Vec::new(),
        };
        let cutoff = opts.clock.now_ms().saturating_sub(opts.retention_ms);
        let mut ids: FnvHashMap<u32, SeriesId> = FnvHashMap::default();
        let partition_ms = opts.partition_ms;
        let outcome = replay(&wal_dir, |rec| match rec {
            crate::wal::Record::Series {
                id,
                service,
                source,
                metric,
            } => {
                ids.insert(id, st.index.intern(service, source, metric).0);
            }
            crate::wal::Record::Samples { backfill, samples } => {
                let rows: Vec<(u32, i64, f64)> = samples
                    .into_iter()
                    .filter(|s| s.1 >= cutoff)
                    .filter_map(|(id, t, v)| ids.get(&id).map(|&sid| (sid, t, v)))
                    .collect();
                st.apply(backfill, &rows, partition_ms);
            }
            crate::wal::Record::Epoch {
                service,
                day,
                epoch,
            } => {
                let svc = st.index.intern_service(service);
                let e = st.epochs.entry((svc, day)).or_insert(0);
                *e = (*e).max(epoch);
            }
        })?;
        let wal = Wal::open(&wal_dir, outcome.last_segment, opts.fsync)?;
        let counters = Counters::default();
        counters.torn.store(outcome.torn_tails, Ordering::Relaxed);
        Ok(Engine {
            dir,
            blocks_dir,
            opts,
            state: RwLock::new(st),
            wal,
            maint: Mutex::new(()),
            counters,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch. Returns once every accepted sample is durable in the
    /// WAL (per [`FsyncPolicy`]); rejected samples are listed with reasons
    /// and counted. Re-appending a (series, timestamp) overwrites the value
    /// (last write wins) and never double counts. Samples older than
    /// `now - ooo_window` go to the backfill path and bump the epoch of
    /// their (service, day).
    pub fn append(&self, rows: &[SampleRow<'_>]) -> Result<AppendReport> {
        let now = self.opts.clock.now_ms();
        let too_old = now.saturating_sub(self.opts.retention_ms);
        let too_new = now.saturating_add(self.opts.future_tolerance_ms);
        let ooo_cutoff = now.saturating_sub(self.opts.ooo_window_ms);
        let mut report = AppendReport::default();
        let (pos, seal_backfill) = {
            let mut guard = self.state.write();
            let st = &mut *guard;
            st.rec.clear();
            st.main_rows.clear();
            st.bf_rows.clear();
            let generation = st.wal_gen;
            // Rows of one series usually come in a run sharing the key's strings: the
            // names are checked and interned once per run (same memory, same key).
            type KeyAt = [(*const u8, usize); 3];
            let mut last: Option<(KeyAt, std::result::Result<SeriesId, RejectReason>)> = None;
            // Rows of one scrape share their service and source: each part's
            // symbol is looked up only when its name changes from the row before.
            let mut syms: [Option<(&str, u32)>; 3] = [None; 3];
            for (i, r) in rows.iter().enumerate() {
                let time = if r.ts < too_old {
                    Some(RejectReason::BeyondRetention)
                } else if r.ts > too_new {
                    Some(RejectReason::TooFarInFuture)
                } else {
                    None
                };
                if let Some(reason) = time {
                    report.rejected.push(Rejection { index: i, reason });
                    continue;
                }
                let at: KeyAt = [r.service, r.source, r.metric].map(|p| (p.as_ptr(), p.len()));
                let series = match last {
                    Some((key, series)) if key == at => series,
                    _ => {
                        let series = if !validate_name(r.service)
                            || !validate_name(r.source)
                            || !validate_name(r.metric)
                            || r.source == ALL_SOURCES
                        {
                            Err(RejectReason::InvalidName)
                        } else {
                            let mut ids = [0u32; 3];
                            for (p, (part, name)) in [
                                (KeyPart::Service, r.service),
                                (KeyPart::Source, r.source),
                                (KeyPart::Metric, r.metric),
                            ]
                            .into_iter()
                            .enumerate()
                            {
                                ids[p] = match syms[p] {
                                    Some((n, id)) if n == name => id,
                                    _ => {
                                        let id = st.index.symbol(part, name);
                                        syms[p] = Some((name, id));
                                        id
                                    }
                                };
                            }
                            Ok(st.index.intern_ids((ids[0], ids[1], ids[2])).0)
                        };
                        last = Some((at, series));
                        series
                    }
                };
                let sid = match series {
                    Ok(sid) => sid,
                    Err(reason) => {
                        report.rejected.push(Rejection { index: i, reason });
                        continue;
                    }
                };
                if st.index.wal_gen[sid as usize] != generation {
                    st.index.wal_gen[sid as usize] = generation;
                    st.rec.series(sid, r.service, r.source, r.metric);
                }
                if r.ts < ooo_cutoff {
                    st.bf_rows.push((sid, r.ts, r.value));
                } else {
                    st.main_rows.push((sid, r.ts, r.value));
                }
            }
            let (main_rows, bf_rows) = (
                std::mem::take(&mut st.main_rows),
                std::mem::take(&mut st.bf_rows),
            );
            st.rec.samples(false, &main_rows);
            st.rec.samples(true, &bf_rows);
            let pos = if st.rec.buf.is_empty() {
                None
            } else {
                Some(self.wal.write(&st.rec.buf)?)
            };
            st.apply(false, &main_rows, self.opts.partition_ms);
            let bumped = st.apply(true, &bf_rows, self.opts.partition_ms);
            report.epochs = bumped.into_iter().map(|b| st.bump(b)).collect();
            report.accepted = main_rows.len() + bf_rows.len();
            report.backfilled = bf_rows.len();
            st.main_rows = main_rows;
            st.bf_rows = bf_rows;
            (pos, st.backfill_samples > self.opts.backfill_max_samples)
        };
        for r in &report.rejected {
            let c = match r.reason {
                RejectReason::BeyondRetention => &self.counters.rej_retention,
                RejectReason::TooFarInFuture => &self.counters.rej_future,
                RejectReason::InvalidName => &self.counters.rej_name,
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .appended
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        self.counters
            .backfilled
            .fetch_add(report.backfilled as u64, Ordering::Relaxed);
        if let Some(pos) = pos {
            self.wal.wait_durable(pos)?;
        }
        if seal_backfill {
            let _m = self.maint.lock();
            self.seal(|_, _| false, true)?;
        }
        Ok(report)
    }

    /// The epoch of (service, day): changes whenever a backfill touches that
    /// day of that service (0 if never). Day = `ts.div_euclid(DAY_MS)`.
    /// Values are never reused, across restarts included.
    pub fn epoch(&self, service: &str, day: i64) -> u64 {
        let st = self.state.read();
        st.index
            .services
            .get(service)
            .and_then(|s| st.epochs.get(&(s, day)).copied())
            .unwrap_or(0)
    }

    /// Every epoch that is not 0, in (service, day) order: with the bumps that
    /// [`AppendReport::epochs`] lists, a copy of the whole table can be kept.
    pub fn epochs(&self) -> Vec<EpochBump> {
        let st = self.state.read();
        let mut all: Vec<EpochBump> = st
            .epochs
            .iter()
            .map(|(&(s, d), &e)| st.bump((s, d, e)))
            .collect();
        all.sort_by(|a, b| (&a.service, a.day).cmp(&(&b.service, b.day)));
        all
    }

    /// Seals cold head partitions and the backfill head into blocks,
    /// compacts, and applies retention. Call it periodically.
    pub fn maintain(&self) -> Result<MaintenanceReport> {
        let now = self.opts.clock.now_ms();
        let cold = now.saturating_sub(self.opts.ooo_window_ms);
        let w = self.opts.partition_ms;
        let sealed = {
            let _m = self.maint.lock();
            self.seal(|p, _| p + w <= cold, true)?
        };
        let compacted = self.compact()?;
        let expired = self.apply_retention()?;
        Ok(MaintenanceReport {
            sealed_blocks: sealed,
            compacted_blocks: compacted,
            expired_blocks: expired,
        })
    }

    /// Seals the whole head (every partition, hot ones included) into
    /// blocks and empties the WAL.
    pub fn flush(&self) -> Result<usize> {
        let _m = self.maint.lock();
        self.seal(|_, _| true, true)
    }

    /// Seals the main partitions selected by `pick` (and the backfill head
    /// when `backfill`), then rotates the WAL to a checkpoint of the rest.
    fn seal(&self, pick: impl Fn(i64, &HeadPartition) -> bool, backfill: bool) -> Result<usize> {
        let mut guard = self.state.write();
        let st = &mut *guard;
        let w = self.opts.partition_ms;
        let main_keys: Vec<i64> = st
            .main
            .iter()
            .filter(|(p, hp)| pick(**p, hp))
            .map(|(p, _)| *p)
            .collect();
        let bf_keys: Vec<i64> = if backfill {
            st.backfill.keys().copied().collect()
        } else {
            Vec::new()
        };
        if main_keys.is_empty() && bf_keys.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        let mut new_blocks = Vec::new();
        for (is_bf, keys) in [(false, &main_keys), (true, &bf_keys)] {
            for &p in keys {
                let part = if is_bf {
                    &st.backfill[&p]
                } else {
                    &st.main[&p]
                };
                let seq = st.next_seq + 1;
                let meta = BlockMeta {
                    seq,
                    start: p,
                    end: p + w,
                    level: 0,
                };
                let mut bw = BlockWriter::create(&self.blocks_dir, meta)?;
                bw.raw_against_rollup = self.opts.raw_against_rollup;
                let mut series: Vec<(SeriesId, &SeriesBuf)> = part.iter().collect();
                series.sort_unstable_by_key(|s| s.0);
                let (mut ts, mut vals) = (Vec::new(), Vec::new());
                for (sid, sb) in series {
                    ts.clear();
                    vals.clear();
                    sb.decode_into(&mut ts, &mut vals);
                    let k = [
                        st.index.part(sid, KeyPart::Service),
                        st.index.part(sid, KeyPart::Source),
                        st.index.part(sid, KeyPart::Metric),
                    ];
                    bw.add(k, &ts, &vals)?;
                }
                st.next_seq = seq;
                if bw.is_empty() {
                    continue;
                }
                new_blocks.push(bw.finish()?);
                written += 1;
            }
        }
        sync_dir(&self.blocks_dir)?;
        for p in &main_keys {
            st.main.remove(p);
        }
        for p in &bf_keys {
            st.backfill.remove(p);
        }
        if backfill {
            st.backfill_samples = 0;
        }
        for path in new_blocks {
            let mut ub = Block::open(&path)?;
            let sids: Vec<SeriesId> = ub
                .keys
                .iter()
                .map(|k| st.index.intern(&k[0], &k[1], &k[2]).0)
                .collect();
            ub.block.bind(&sids);
            st.blocks.push(Arc::new(ub.block));
        }
        st.blocks.sort_by_key(|b| (b.meta.start, b.meta.seq));
        self.checkpoint(st)?;
        self.counters
            .sealed
            .fetch_add(written as u64, Ordering::Relaxed);
        Ok(written)
    }

    /// Rewrites what is only in the WAL (remaining head, epochs) into a new
    /// segment, deletes older segments, snapshots the index.
    fn checkpoint(&self, st: &mut State) -> Result<()> {
        st.wal_gen = st.wal_gen.wrapping_add(1);
        let generation = st.wal_gen;
        let mut rb = RecordBuf::default();
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        let mut rows = Vec::new();
        for (is_bf, map) in [(false, &st.main), (true, &st.backfill)] {
            for part in map.values() {
                rows.clear();
                for (sid, s) in part.iter() {
                    if st.index.wal_gen[sid as usize] != generation {
                        st.index.wal_gen[sid as usize] = generation;
                        let k = st.index.key(sid);
                        rb.series(sid, &k.service, &k.source, &k.metric);
                    }
                    ts.clear();
                    vals.clear();
                    s.decode_into(&mut ts, &mut vals);
                    rows.extend(ts.iter().zip(&vals).map(|(&t, &v)| (sid, t, v)));
                }
                rb.samples(is_bf, &rows);
            }
        }
        for (&(svc, day), &e) in &st.epochs {
            rb.epoch(st.index.services.name(svc), day, e);
        }
        self.wal.rotate(&rb.buf)?;
        st.index.write_snapshot(&self.dir.join("index.snap"))
    }

    /// Merges blocks: cold long windows and cold compacted windows into
    /// one block each (the longest window a block lies in whose whole is
    /// cold), and several blocks of one partition window into one. Returns
    /// the number of blocks written.
    pub fn compact(&self) -> Result<usize> {
        let _m = self.maint.lock();
        let cold = self
            .opts
            .clock
            .now_ms()
            .saturating_sub(self.opts.ooo_window_ms);
        let windows = [
            (self.opts.long_partition_ms, 2u8),
            (self.opts.compacted_partition_ms, 1),
        ];
        let blocks: Vec<Arc<Block>> = self.state.read().blocks.clone();
        let mut groups: BTreeMap<(i64, i64, u8), Vec<Arc<Block>>> = BTreeMap::new();
        for b in blocks {
            let key = windows
                .iter()
                .filter(|&&(w, _)| w > 0)
                .map(|&(w, level)| (b.meta.start.div_euclid(w) * w, w, level))
                .find(|&(from, w, _)| from + w <= cold && b.meta.end <= from + w)
                .map_or(
                    (b.meta.start, b.meta.end, b.meta.level),
                    |(from, w, level)| (from, from + w, level),
                );
            groups.entry(key).or_default().push(b);
        }
        let mut written = 0;
        for ((start, end, level), inputs) in groups {
            // One block alone is left as it is when it already spans the
            // window, or is one compacted day of a long window: rewriting
            // it would store the same samples again.
            if inputs.len() < 2
                && inputs.iter().all(|b| {
                    (b.meta.start == start && b.meta.end == end)
                        || (level == 2 && b.meta.level >= 1)
                })
            {
                continue;
            }
            let out_seq = inputs
                .iter()
                .map(|b| b.meta.seq)
                .max()
                .expect("non-empty group");
            let file_seq = self.state.write().alloc_seq();
            let mut sids: Vec<SeriesId> = inputs
                .iter()
                .flat_map(|b| b.entries.iter().map(|e| e.sid))
                .collect();
            sids.sort_unstable();
            sids.dedup();
            let keys: Vec<SeriesKey> = {
                let st = self.state.read();
                sids.iter().map(|&s| st.index.key(s)).collect()
            };
            let meta = BlockMeta {
                seq: out_seq,
                start,
                end,
                level,
            };
            let mut bw = BlockWriter::create_named(&self.blocks_dir, meta, file_seq)?;
            bw.raw_against_rollup = self.opts.raw_against_rollup;
            let mut merged = Merged::default();
            for (sid, key) in sids.iter().zip(&keys) {
                merged.clear();
                for b in &inputs {
                    if let Some(e) = b.entry(*sid) {
                        merged.add_block(b, e)?;
                    }
                }
                let (ts, vals) = merged.finish();
                if !ts.is_empty() {
                    bw.add([&key.service, &key.source, &key.metric], ts, vals)?;
                }
            }
            let path = bw.finish()?;
            sync_dir(&self.blocks_dir)?;
            let mut ub = Block::open(&path)?;
            let mut st = self.state.write();
            let sids: Vec<SeriesId> = ub
                .keys
                .iter()
                .map(|k| st.index.intern(&k[0], &k[1], &k[2]).0)
                .collect();
            ub.block.bind(&sids);
            let gone: HashSet<PathBuf> = inputs.iter().map(|b| b.path.clone()).collect();
            st.blocks.retain(|b| !gone.contains(&b.path));
            st.blocks.push(Arc::new(ub.block));
            st.blocks.sort_by_key(|b| (b.meta.start, b.meta.seq));
            drop(st);
            for p in &gone {
                fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
            }
            sync_dir(&self.blocks_dir)?;
            written += 1;
            self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Deletes whole blocks (and head partitions) that end before
    /// `now - retention`. Returns the number of blocks deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        let _m = self.maint.lock();
        let cutoff = self
            .opts
            .clock
            .now_ms()
            .saturating_sub(self.opts.retention_ms);
        let w = self.opts.partition_ms;
        let mut st = self.state.write();
        let (old, keep): (Vec<_>, Vec<_>) = st.blocks.drain(..).partition(|b| b.meta.end <= cutoff);
        st.blocks = keep;
        st.main.retain(|p, _| p + w > cutoff);
        st.backfill.retain(|p, _| p + w > cutoff);
        st.index.forget_before(cutoff);
        drop(st);
        for b in &old {
            fs::remove_file(&b.path).map_err(|e| Error::io("remove", &b.path, e))?;
        }
        if !old.is_empty() {
            sync_dir(&self.blocks_dir)?;
        }
        self.counters
            .expired
            .fetch_add(old.len() as u64, Ordering::Relaxed);
        Ok(old.len())
    }

    /// Blocks skipped at open because they failed verification.
    pub fn corrupt_blocks(&self) -> Vec<CorruptBlock> {
        self.state.read().corrupt.clone()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> EngineStats {
        let st = self.state.read();
        let c = &self.counters;
        EngineStats {
            samples_appended: c.appended.load(Ordering::Relaxed),
            samples_backfilled: c.backfilled.load(Ordering::Relaxed),
            rejected_beyond_retention: c.rej_retention.load(Ordering::Relaxed),
            rejected_too_far_in_future: c.rej_future.load(Ordering::Relaxed),
            rejected_invalid_name: c.rej_name.load(Ordering::Relaxed),
            wal_bytes: self.wal.bytes.load(Ordering::Relaxed),
            wal_syncs: self.wal.syncs.load(Ordering::Relaxed),
            wal_torn_tails: c.torn.load(Ordering::Relaxed),
            blocks_sealed: c.sealed.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            blocks_expired: c.expired.load(Ordering::Relaxed),
            series: st.index.len() as u64,
            head_samples: st
                .main
                .values()
                .chain(st.backfill.values())
                .map(|p| p.samples as u64)
                .sum(),
            blocks: st.blocks.len() as u64,
            corrupt_blocks: st.corrupt.len() as u64,
        }
    }

    /// Bytes of all block files on disk.
    pub fn block_bytes(&self) -> u64 {
        self.state.read().blocks.iter().map(|b| b.bytes).sum()
    }

    /// Where the block bytes go: raw chunks, each rollup width's cells
    /// (finest first), and the rest (series indexes, symbol tables, footers).
    pub fn block_breakdown(&self) -> BlockBytes {
        let st = self.state.read();
        let mut out = BlockBytes::default();
        for b in &st.blocks {
            let (raw, rollups) = b.part_bytes();
            out.raw += raw;
            for (sum, r) in out.rollups.iter_mut().zip(rollups) {
                *sum += r;
            }
            out.other += b.bytes.saturating_sub(raw + rollups.iter().sum::<u64>());
        }
        out
    }

    /// Approximate heap bytes of the head and the index.
    pub fn head_heap_bytes(&self) -> usize {
        let st = self.state.read();
        st.main
            .values()
            .chain(st.backfill.values())
            .map(HeadPartition::heap_bytes)
            .sum::<usize>()
            + st.index.heap_bytes()
    }

    // ------------------------------------------------------------ reads

    /// Series matching `sel` that had data during `[t0, t1)`, sorted. With
    /// source [`ALL_SOURCES`] it lists the service aggregates instead.
    pub fn select(&self, sel: &Selector, t0: i64, t1: i64) -> Vec<SeriesKey> {
        self.select_first(sel, t0, t1, usize::MAX).0
    }

    /// The first `limit` series, in key order, of those [`Engine::select`]
    /// gives, and how many it gives: a count or a page builds only the keys
    /// it returns.
    pub fn select_first(
        &self,
        sel: &Selector,
        t0: i64,
        t1: i64,
        limit: usize,
    ) -> (Vec<SeriesKey>, usize) {
        if is_all_sources(sel) {
            let mut keys = self.aggregate_keys(sel, t0, t1);
            let total = keys.len();
            keys.truncate(limit);
            return (keys, total);
        }
        let st = self.state.read();
        let ix = &st.index;
        let mut ids = ix.select(sel, t0, t1);
        let total = ids.len();
        let parts = |id: SeriesId| {
            (
                ix.part(id, KeyPart::Service),
                ix.part(id, KeyPart::Source),
                ix.part(id, KeyPart::Metric),
            )
        };
        if limit < total {
            if limit == 0 {
                return (Vec::new(), total);
            }
            ids.select_nth_unstable_by(limit - 1, |&a, &b| parts(a).cmp(&parts(b)));
            ids.truncate(limit);
        }
        ids.sort_unstable_by(|&a, &b| parts(a).cmp(&parts(b)));
        (ids.into_iter().map(|id| ix.key(id)).collect(), total)
    }

    /// Distinct names of one key part among series matching `sel` during
    /// `[t0, t1)` (discovery: services, sources, metrics).
    pub fn names(&self, sel: &Selector, part: KeyPart, t0: i64, t1: i64) -> Vec<String> {
        let st = self.state.read();
        let ids = st.index.select(sel, t0, t1);
        st.index.names_of(&ids, part)
    }

    fn aggregate_keys(&self, sel: &Selector, t0: i64, t1: i64) -> Vec<SeriesKey> {
        let real = Selector {
            source: Matcher::Any,
            ..sel.clone()
        };
        let st = self.state.read();
        let mut keys: Vec<SeriesKey> = st
            .index
            .select(&real, t0, t1)
            .into_iter()
            .map(|id| {
                SeriesKey::new(
                    st.index.part(id, KeyPart::Service),
                    ALL_SOURCES,
                    st.index.part(id, KeyPart::Metric),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Samples of one series in `[t0, t1)`, time-ordered, last write wins.
    /// For a service aggregate key (source [`ALL_SOURCES`]) the samples are
    /// the per-minute sums.
    pub fn read_range(&self, key: &SeriesKey, t0: i64, t1: i64) -> Result<Vec<Sample>> {
        if key.source == ALL_SOURCES {
            return Ok(self
                .service_aggregate(&key.service, &key.metric, t0, t1)?
                .into_iter()
                .map(|p| Sample {
                    ts: p.ts,
                    value: p.sum,
                })
                .collect());
        }
        let Some(sid) = self
            .state
            .read()
            .index
            .get(&key.service, &key.source, &key.metric)
        else {
            return Ok(Vec::new());
        };
        let mut src = self.sources(&[sid], t0, t1.saturating_sub(1));
        let mut m = Merged::default();
        let s = src.pop().expect("one series requested");
        m.add_sources(&s)?;
        let (ts, vals) = m.finish();
        Ok(ts
            .iter()
            .zip(vals)
            .filter(|(t, _)| **t >= t0 && **t < t1)
            .map(|(&ts, &value)| Sample { ts, value })
            .collect())
    }

    /// Range scan: every matching series with its samples in `[t0, t1)`.
    pub fn scan(&self, sel: &Selector, t0: i64, t1: i64) -> Result<Vec<(SeriesKey, Vec<Sample>)>> {
        let keys = self.select(sel, t0, t1);
        keys.into_iter()
            .map(|k| {
                let s = self.read_range(&k, t0, t1)?;
                Ok((k, s))
            })
            .filter(|r| r.as_ref().map(|(_, s)| !s.is_empty()).unwrap_or(true))
            .collect()
    }

    /// Per minute `(ts - 60 s, ts]` in `[t0, t1)`: count, sum, min and max of
    /// the last sample of every source of (service, metric). Idempotent by
    /// construction: it is computed from deduplicated data.
    pub fn service_aggregate(
        &self,
        service: &str,
        metric: &str,
        t0: i64,
        t1: i64,
    ) -> Result<Vec<ServicePoint>> {
        // No minute outside the stored data has a point: reading only there
        // keeps a range of any width (a huge step, a long window) from
        // becoming as many minutes.
        let Some((first, last)) = self.time_bounds() else {
            return Ok(Vec::new());
        };
        let (t0, t1) = (t0.max(first), t1.min(last.saturating_add(60_000)));
        if t0 >= t1 {
            return Ok(Vec::new());
        }
        let start = t0.div_euclid(60_000) * 60_000
            + if t0.rem_euclid(60_000) == 0 {
                0
            } else {
                60_000
            };
        let f = Fragment {
            selector: Selector {
                service: Matcher::literal(service),
                source: Matcher::Any,
                metric: Matcher::literal(metric),
            },
            start,
            end: t1,
            step: 60_000,
            per_step: StepAgg::Last,
            group_by: Vec::new(),
        };
        let r = self.aggregate(&f)?;
        Ok(r.groups
            .into_iter()
            .flat_map(|g| g.points)
            .map(|(ts, p)| ServicePoint {
                ts,
                count: p.count,
                sum: p.sum,
                min: p.min,
                max: p.max,
            })
            .collect())
    }

    /// The window `[first, last)` every stored sample lies in (partition
    /// windows of the heads and blocks), if any is stored.
    fn time_bounds(&self) -> Option<(i64, i64)> {
        let st = self.state.read();
        let width = self.opts.partition_ms;
        let heads = [&st.main, &st.backfill].into_iter().flat_map(|h| {
            let first = h.keys().next().copied();
            let last = h.keys().next_back().map(|&k| k.saturating_add(width));
            first.zip(last)
        });
        let blocks = st.blocks.iter().map(|b| (b.meta.start, b.meta.end));
        heads
            .chain(blocks)
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    /// Copies head samples and collects block entries for `sids` over the
    /// sample range `[lo, hi]`.
    fn sources(&self, sids: &[SeriesId], lo: i64, hi: i64) -> Vec<SeriesSources> {
        let st = self.state.read();
        let w = self.opts.partition_ms;
        let blocks: Vec<&Arc<Block>> = st
            .blocks
            .iter()
            .filter(|b| b.meta.end > lo && b.meta.start <= hi)
            .collect();
        let parts: Vec<(bool, &HeadPartition)> = st
            .main
            .range(lo.div_euclid(w) * w..=hi)
            .map(|(_, p)| (false, p))
            .chain(
                st.backfill
                    .range(lo.div_euclid(w) * w..=hi)
                    .map(|(_, p)| (true, p)),
            )
            .collect();
        let mut out = Vec::with_capacity(sids.len());
        let mut raw: Vec<(i64, u8, f64)> = Vec::new();
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        for &sid in sids {
            let mut s = SeriesSources {
                blocks: Vec::new(),
                head_ts: Vec::new(),
                head_vals: Vec::new(),
            };
            for b in &blocks {
                if let Some(e) = b.entry(sid).filter(|e| e.max_t >= lo && e.min_t <= hi) {
                    s.blocks.push(((*b).clone(), *e));
                }
            }
            raw.clear();
            for (is_bf, p) in &parts {
                if let Some(sb) = p.get(sid) {
                    ts.clear();
                    vals.clear();
                    sb.decode_into(&mut ts, &mut vals);
                    raw.extend(
                        ts.iter()
                            .zip(&vals)
                            .filter(|(t, _)| **t >= lo && **t <= hi)
                            .map(|(&t, &v)| (t, *is_bf as u8, v)),
                    );
                }
            }
            if !raw.is_empty() {
                raw.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                raw.dedup_by_key(|x| x.0);
                s.head_ts = raw.iter().map(|x| x.0).collect();
                s.head_vals = raw.iter().map(|x| x.2).collect();
            }
            out.push(s);
        }
        out
    }

    /// Executes a fragment: select, per-step value per series, fold across
    /// series into partials per group. Sealed data is read from the
    /// coarsest rollup that serves the step exactly.
    pub fn aggregate(&self, f: &Fragment) -> Result<FragmentResult> {
        self.aggregate_with(f, None)
    }

    /// [`Engine::aggregate`] with each series' step values passed through
    /// `each` before they fold into their group (e.g. a rate of every
    /// series, summed): the same answer as aggregating every series on its
    /// own, applying `each` and folding, without building the per-series
    /// answers.
    pub fn aggregate_each(&self, f: &Fragment, each: &dyn SeriesFn) -> Result<FragmentResult> {
        self.aggregate_with(f, Some(each))
    }

    fn aggregate_with(&self, f: &Fragment, each: Option<&dyn SeriesFn>) -> Result<FragmentResult> {
        let n = f.points()?;
        let mut result = FragmentResult::default();
        if n == 0 {
            return Ok(result);
        }
        let (lo, hi) = f.sample_range(n);
        let rollup = ROLLUP_WIDTHS
            .iter()
            .rposition(|&r| f.step % r == 0 && f.start.rem_euclid(r) == 0);
        result.rollup_ms = rollup.map(|k| ROLLUP_WIDTHS[k]);

        if is_all_sources(&f.selector) {
            return self.aggregate_services(f, n, each, result);
        }
        let (sids, group_of, group_keys) = {
            let st = self.state.read();
            let sids = st.index.select(&f.selector, lo, hi.saturating_add(1));
            let mut gmap: BTreeMap<Vec<String>, u32> = BTreeMap::new();
            let keys: Vec<Vec<String>> = sids
                .iter()
                .map(|&s| {
                    f.group_by
                        .iter()
                        .map(|&p| st.index.part(s, p).to_string())
                        .collect()
                })
                .collect();
            for k in &keys {
                let len = gmap.len() as u32;
                gmap.entry(k.clone()).or_insert(len);
            }
            let group_of: Vec<u32> = keys.iter().map(|k| gmap[k]).collect();
            let mut group_keys = vec![Vec::new(); gmap.len()];
            for (k, i) in gmap {
                group_keys[i as usize] = k;
            }
            (sids, group_of, group_keys)
        };
        result.series = sids.len();
        let threads = self
            .opts
            .read_threads
            .max(1)
            .min(sids.len().div_ceil(64).max(1));
        let per = sids.len().div_ceil(threads).max(1);
        let chunks: Vec<(&[SeriesId], &[u32])> =
            sids.chunks(per).zip(group_of.chunks(per)).collect();
        let ngroups = group_keys.len();
        // Each worker keeps only the groups its series fall in: with many groups (one
        // per series, say) the workers' groups hardly overlap.
        type Acc = Vec<Option<Partials>>;
        let partials: Vec<Result<(Acc, u64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&(ids, gs)| {
                    scope.spawn(move || -> Result<(Acc, u64)> {
                        let mut acc: Acc = vec![None; ngroups];
                        let mut touched = 0u64;
                        let mut scratch = Scratch::default();
                        let mut each = each.map(|e| Each::new(e, f.start, f.step, n));
                        for batch in ids.chunks(256).zip(gs.chunks(256)) {
                            let srcs = self.sources(batch.0, lo, hi);
                            for (s, &g) in srcs.iter().zip(batch.1) {
                                let group = &mut acc[g as usize];
                                let sc = &mut scratch;
                                touched += match each.as_mut() {
                                    Some(e) => {
                                        let read = fold_one(s, f, &mut e.row, rollup, sc)?;
                                        e.pass(group);
                                        read
                                    }
                                    None => {
                                        let into = group.get_or_insert_with(|| Partials::new(n));
                                        fold_one(s, f, into, rollup, sc)?
                                    }
                                };
                            }
                        }
                        Ok((acc, touched))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("query worker panicked"))
                .collect()
        });
        let mut total: Acc = vec![None; ngroups];
        for p in partials {
            let (acc, touched) = p?;
            result.samples += touched;
            for (t, a) in total.iter_mut().zip(acc) {
                match (t.as_mut(), a) {
                    (_, None) => {}
                    (None, a) => *t = a,
                    (Some(t), Some(a)) => t.merge(&a),
                }
            }
        }
        result.groups = group_keys
            .into_iter()
            .zip(total)
            .map(|(key, parts)| GroupResult {
                key,
                points: parts.map_or_else(Vec::new, |p| p.points(f.start, f.step)),
            })
            .collect();
        result.groups.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(result)
    }

    /// A fragment over service aggregates: each (service, metric) is a
    /// virtual series of per-minute sums across its sources.
    fn aggregate_services(
        &self,
        f: &Fragment,
        n: usize,
        each: Option<&dyn SeriesFn>,
        mut result: FragmentResult,
    ) -> Result<FragmentResult> {
        let (lo, hi) = f.sample_range(n);
        let keys = self.aggregate_keys(&f.selector, lo, hi.saturating_add(1));
        result.series = keys.len();
        result.rollup_ms = None;
        let mut groups: BTreeMap<Vec<String>, Option<Partials>> = BTreeMap::new();
        let mut each = each.map(|e| Each::new(e, f.start, f.step, n));
        fn fold<S: Steps>(f: &Fragment, pts: &[ServicePoint], into: &mut S) {
            let mut fold = StepFold::new(f.start, f.step, f.per_step, into);
            for p in pts {
                fold.raw(p.ts, p.sum);
            }
            fold.flush();
        }
        for k in keys {
            let pts = self.service_aggregate(&k.service, &k.metric, lo, hi.saturating_add(1))?;
            result.samples += pts.len() as u64;
            let gk: Vec<String> = f.group_by.iter().map(|&p| k.part(p).to_string()).collect();
            let group = groups.entry(gk).or_default();
            match each.as_mut() {
                Some(e) => {
                    fold(f, &pts, &mut e.row);
                    e.pass(group);
                }
                None => fold(f, &pts, group.get_or_insert_with(|| Partials::new(n))),
            }
        }
        result.groups = groups
            .into_iter()
            .map(|(key, parts)| GroupResult {
                key,
                points: parts.map_or_else(Vec::new, |p| p.points(f.start, f.step)),
            })
            .collect();
        result.groups.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(result)
    }
}

fn is_all_sources(sel: &Selector) -> bool {
    matches!(&sel.source, Matcher::Literal(s) if s == ALL_SOURCES)
}

#[derive(Default)]
struct Scratch {
    ts: Vec<i64>,
    vals: Vec<f64>,
    rollup: Rollup,
    /// What raw chunks coded against their rollup decode with.
    cells: cells::Scratch,
    merged: Merged,
    /// A series' sources' time spans, and its blocks in time order.
    spans: Vec<(i64, i64)>,
    order: Vec<usize>,
}

/// Folds one series into `into` on the fragment's grid; returns
/// samples/buckets read.
fn fold_one<S: Steps>(
    s: &SeriesSources,
    f: &Fragment,
    into: &mut S,
    rollup: Option<usize>,
    sc: &mut Scratch,
) -> Result<u64> {
    let mut fold = StepFold::new(f.start, f.step, f.per_step, into);
    let read = fold_series(s, &mut fold, rollup, f.per_step, sc)?;
    fold.flush();
    Ok(read)
}

/// Feeds one series into `fold`; returns samples/buckets read.
fn fold_series<S: Steps>(
    s: &SeriesSources,
    fold: &mut StepFold<'_, S>,
    rollup: Option<usize>,
    agg: StepAgg,
    sc: &mut Scratch,
) -> Result<u64> {
    // Sources in time order; any overlap (late blocks, head over sealed
    // data) takes the merging path.
    let spans = &mut sc.spans;
    spans.clear();
    spans.extend(s.blocks.iter().map(|(_, e)| (e.min_t, e.max_t)));
    if let (Some(&a), Some(&b)) = (s.head_ts.first(), s.head_ts.last()) {
        spans.push((a, b));
    }
    spans.sort_unstable();
    let overlapping = spans.windows(2).any(|w| w[1].0 <= w[0].1);
    let mut touched = 0u64;
    if overlapping {
        sc.merged.clear();
        sc.merged.add_sources(s)?;
        let (ts, vals) = sc.merged.finish();
        fold.run(ts, vals);
        return Ok(ts.len() as u64);
    }
    let mut order = std::mem::take(&mut sc.order);
    order.clear();
    order.extend(0..s.blocks.len());
    order.sort_by_key(|&i| s.blocks[i].1.min_t);
    let head_first = s.head_ts.first().copied().unwrap_or(i64::MAX);
    let mut head_done = s.head_ts.is_empty();
    let cols = Columns {
        count: matches!(agg, StepAgg::Count | StepAgg::Avg),
        sum: matches!(agg, StepAgg::Sum | StepAgg::Avg),
        min: agg == StepAgg::Min,
        max: agg == StepAgg::Max,
    };
    for &i in &order {
        let (b, e) = &s.blocks[i];
        if !head_done && head_first < e.min_t {
            touched += feed_head(s, fold);
            head_done = true;
        }
        // With `start` and `step` multiples of the rollup width every bucket
        // lies inside one step, so buckets replace raw samples exactly.
        match rollup {
            Some(k) => {
                let r = &mut sc.rollup;
                r.clear();
                b.rollup(e, k, cols, r)?;
                touched += r.labels.len() as u64;
                if agg == StepAgg::Last {
                    // A bucket's last is the last sample of the bucket.
                    fold.run(&r.labels, &r.last);
                    continue;
                }
                for j in 0..r.labels.len() {
                    let c = if cols.count { r.count[j] } else { 1.0 };
                    let sum = if cols.sum { r.sum[j] } else { 0.0 };
                    let mn = if cols.min { r.min[j] } else { 0.0 };
                    let mx = if cols.max { r.max[j] } else { 0.0 };
                    fold.bucket(r.labels[j], c, sum, mn, mx, r.last[j]);
                }
            }
            None => {
                sc.ts.clear();
                sc.vals.clear();
                b.raw(e, &mut sc.cells, &mut sc.ts, &mut sc.vals)?;
                touched += sc.ts.len() as u64;
                fold.run(&sc.ts, &sc.vals);
            }
        }
    }
    sc.order = order;
    if !head_done {
        touched += feed_head(s, fold);
    }
    Ok(touched)
}

fn feed_head<S: Steps>(s: &SeriesSources, fold: &mut StepFold<'_, S>) -> u64 {
    fold.run(&s.head_ts, &s.head_vals);
    s.head_ts.len() as u64
}

/// Merges samples from several sources by precedence (highest wins on
/// equal timestamps).
#[derive(Default)]
struct Merged {
    items: Vec<(i64, u64, f64)>,
    ts: Vec<i64>,
    vals: Vec<f64>,
    tmp_ts: Vec<i64>,
    tmp_vals: Vec<f64>,
    cells: cells::Scratch,
}

impl Merged {
    fn clear(&mut self) {
        self.items.clear();
    }

    fn add_block(&mut self, b: &Block, e: &crate::block::Entry) -> Result<()> {
        self.tmp_ts.clear();
        self.tmp_vals.clear();
        b.raw(e, &mut self.cells, &mut self.tmp_ts, &mut self.tmp_vals)?;
        let seq = b.meta.seq;
        self.items.extend(
            self.tmp_ts
                .iter()
                .zip(&self.tmp_vals)
                .map(|(&t, &v)| (t, seq, v)),
        );
        Ok(())
    }

    fn add_sources(&mut self, s: &SeriesSources) -> Result<()> {
        for (b, e) in &s.blocks {
            self.add_block(b, e)?;
        }
        self.items.extend(
            s.head_ts
                .iter()
                .zip(&s.head_vals)
                .map(|(&t, &v)| (t, u64::MAX, v)),
        );
        Ok(())
    }

    fn finish(&mut self) -> (&[i64], &[f64]) {
        self.items.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        self.items.dedup_by_key(|x| x.0);
        self.ts.clear();
        self.vals.clear();
        self.ts.extend(self.items.iter().map(|x| x.0));
        self.vals.extend(self.items.iter().map(|x| x.2));
        (&self.ts, &self.vals)
    }
}
