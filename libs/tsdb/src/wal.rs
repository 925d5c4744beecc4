//! The write-ahead log: segmented files of checksummed records, group
//! commit, replay with torn-tail truncation, and checkpoint rotation.
//!
//! Record framing: `u32 len | u32 crc32(payload) | payload` (little endian).
//! Payload kinds:
//! ```text
//! 1 series:  uvarint id | str service | str source | str metric
//! 2 samples: u8 flags (1 = backfill) | uvarint n | n x (uvarint id, zz ts delta, u64 value bits)
//! 3 epoch:   str service | zz day | uvarint epoch
//! ```
//! Ids in sample records refer to the latest `series` record with that id
//! earlier in the log (the engine re-declares a series after each rotation
//! and after every restart, so a segment never depends on a deleted one).
//!
//! Durability: with [`FsyncPolicy::Always`] an append returns only after an
//! `fdatasync` covering its record; concurrent appenders share one fsync
//! (group commit: the first waiter syncs everything written so far, the
//! others wait on a condition variable). With [`FsyncPolicy::Never`] the
//! record is handed to the kernel before returning: it survives a crash of
//! the process (SIGKILL) but not of the machine.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::codec::{get_uvarint, get_varint, put_uvarint, put_varint};
use crate::error::{Error, Result};

/// When the WAL is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every append waits for an fsync covering it (shared by concurrent
    /// appenders). Acknowledged = durable, even across power loss.
    #[default]
    Always,
    /// Appends return once the kernel has the bytes: durable across process
    /// crashes, not across machine crashes. For benches and tests.
    Never,
}

pub(crate) const REC_SERIES: u8 = 1;
pub(crate) const REC_SAMPLES: u8 = 2;
pub(crate) const REC_EPOCH: u8 = 3;
pub(crate) const FLAG_BACKFILL: u8 = 1;
const HEADER: usize = 8;
/// Records larger than this are treated as garbage on replay.
const MAX_RECORD: u32 = 1 << 30;

/// A decoded record, borrowed from the segment buffer.
#[derive(Debug)]
pub(crate) enum Record<'a> {
    Series {
        id: u32,
        service: &'a str,
        source: &'a str,
        metric: &'a str,
    },
    Samples {
        backfill: bool,
        samples: Vec<(u32, i64, f64)>,
    },
    Epoch {
        service: &'a str,
        day: i64,
        epoch: u64,
    },
}

/// Builds record payloads into one buffer that is written with one syscall.
#[derive(Debug, Default)]
pub(crate) struct RecordBuf {
    pub buf: Vec<u8>,
    start: usize,
}

impl RecordBuf {
    fn begin(&mut self, kind: u8) {
        self.start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        self.buf.push(kind);
    }

    fn finish(&mut self) {
        let payload = &self.buf[self.start + HEADER..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[self.start + 4..self.start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn series(&mut self, id: u32, service: &str, source: &str, metric: &str) {
        self.begin(REC_SERIES);
        put_uvarint(&mut self.buf, id as u64);
        for s in [service, source, metric] {
            put_str(&mut self.buf, s);
        }
        self.finish();
    }

    pub fn samples(&mut self, backfill: bool, samples: &[(u32, i64, f64)]) {
        if samples.is_empty() {
            return;
        }
        self.begin(REC_SAMPLES);
        self.buf.push(if backfill { FLAG_BACKFILL } else { 0 });
        put_uvarint(&mut self.buf, samples.len() as u64);
        let mut prev = 0i64;
        for &(id, ts, v) in samples {
            put_uvarint(&mut self.buf, id as u64);
            put_varint(&mut self.buf, ts.wrapping_sub(prev));
            prev = ts;
            self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        self.finish();
    }

    pub fn epoch(&mut self, service: &str, day: i64, epoch: u64) {
        self.begin(REC_EPOCH);
        put_str(&mut self.buf, service);
        put_varint(&mut self.buf, day);
        put_uvarint(&mut self.buf, epoch);
        self.finish();
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let len = get_uvarint(buf, pos).ok()? as usize;
    let s = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    std::str::from_utf8(s).ok()
}

fn decode_payload(p: &[u8]) -> Option<Record<'_>> {
    let mut pos = 1;
    match *p.first()? {
        REC_SERIES => {
            let id = get_uvarint(p, &mut pos).ok()?;
            let service = get_str(p, &mut pos)?;
            let source = get_str(p, &mut pos)?;
            let metric = get_str(p, &mut pos)?;
            Some(Record::Series {
                id: u32::try_from(id).ok()?,
                service,
                source,
                metric,
            })
        }
        REC_SAMPLES => {
            let flags = *p.get(pos)?;
            pos += 1;
            let n = get_uvarint(p, &mut pos).ok()? as usize;
            if n > p.len() {
                return None;
            }
            let mut samples = Vec::with_capacity(n);
            let mut ts = 0i64;
            for _ in 0..n {
                let id = u32::try_from(get_uvarint(p, &mut pos).ok()?).ok()?;
                ts = ts.wrapping_add(get_varint(p, &mut pos).ok()?);
                let bits = u64::from_le_bytes(p.get(pos..pos + 8)?.try_into().ok()?);
                pos += 8;
                samples.push((id, ts, f64::from_bits(bits)));
            }
            Some(Record::Samples {
                backfill: flags & FLAG_BACKFILL != 0,
                samples,
            })
        }
        REC_EPOCH => {
            let service = get_str(p, &mut pos)?;
            let day = get_varint(p, &mut pos).ok()?;
            let epoch = get_uvarint(p, &mut pos).ok()?;
            Some(Record::Epoch {
                service,
                day,
                epoch,
            })
        }
        _ => None,
    }
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:016}.wal"))
}

/// Lists segment numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(num) = name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            segs.push(num);
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayOutcome {
    pub last_segment: u64,
    pub torn_tails: u64,
}

/// Replays every record of every segment in order. A bad record at the tail
/// of the last segment is a torn write: the segment is truncated there. A
/// bad record elsewhere is reported and the rest of that segment skipped.
pub(crate) fn replay(dir: &Path, mut apply: impl FnMut(Record<'_>)) -> Result<ReplayOutcome> {
    let segs = list_segments(dir)?;
    let mut out = ReplayOutcome::default();
    for (i, &seg) in segs.iter().enumerate() {
        let path = segment_path(dir, seg);
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut pos = 0usize;
        let mut bad: Option<&str> = None;
        while pos < data.len() {
            if data.len() - pos < HEADER {
                bad = Some("truncated record header");
                break;
            }
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
            if len > MAX_RECORD || pos + HEADER + len as usize > data.len() {
                bad = Some("record runs past the end of the segment");
                break;
            }
            let payload = &data[pos + HEADER..pos + HEADER + len as usize];
            if crc32fast::hash(payload) != crc {
                bad = Some("checksum mismatch");
                break;
            }
            match decode_payload(payload) {
                Some(rec) => apply(rec),
                None => {
                    bad = Some("undecodable record");
                    break;
                }
            }
            pos += HEADER + len as usize;
        }
        if let Some(reason) = bad {
            if i + 1 == segs.len() {
                tracing::warn!(path = %path.display(), offset = pos, reason, "truncating torn wal tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io("open", &path, e))?;
                f.set_len(pos as u64)
                    .map_err(|e| Error::io("truncate", &path, e))?;
                f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
                out.torn_tails += 1;
            } else {
                let err = Error::WalCorrupt {
                    path: path.clone(),
                    offset: pos as u64,
                    reason: reason.to_string(),
                };
                tracing::error!(error = %err, "skipping the rest of a corrupt wal segment");
            }
        }
        out.last_segment = seg;
    }
    Ok(out)
}

#[derive(Debug)]
struct Current {
    file: Arc<File>,
    path: PathBuf,
    seg: u64,
    /// Log position after the last write: `seg << 40 | offset`.
    written: u64,
}

#[derive(Debug, Default)]
struct SyncState {
    synced: u64,
    syncing: bool,
    poisoned: Option<PathBuf>,
}

/// The WAL writer: appends happen under the engine's write lock; syncing
/// happens outside it.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    policy: FsyncPolicy,
    current: Mutex<Current>,
    sync: Mutex<SyncState>,
    cv: Condvar,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
}

fn open_segment(dir: &Path, seg: u64) -> Result<(Arc<File>, PathBuf, u64)> {
    let path = segment_path(dir, seg);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", &path, e))?
        .len();
    Ok((Arc::new(file), path, len))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync", dir, e))
}

impl Wal {
    /// Opens a fresh segment after `last_segment` (replay has run already).
    pub fn open(dir: &Path, last_segment: u64, policy: FsyncPolicy) -> Result<Self> {
        let seg = last_segment + 1;
        let (file, path, len) = open_segment(dir, seg)?;
        sync_dir(dir)?;
        let written = (seg << 40) | len;
        Ok(Self {
            dir: dir.to_path_buf(),
            policy,
            current: Mutex::new(Current {
                file,
                path,
                seg,
                written,
            }),
            sync: Mutex::new(SyncState {
                synced: written,
                ..Default::default()
            }),
            cv: Condvar::new(),
            bytes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    /// Writes records; returns the log position to wait for.
    pub fn write(&self, buf: &[u8]) -> Result<u64> {
        if let Some(path) = &self.sync.lock().poisoned {
            return Err(Error::WalPoisoned { path: path.clone() });
        }
        let mut cur = self.current.lock();
        (&*cur.file)
            .write_all(buf)
            .map_err(|e| Error::io("write", &cur.path, e))?;
        cur.written += buf.len() as u64;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(cur.written)
    }

    /// Waits until everything up to `pos` is durable per the policy.
    pub fn wait_durable(&self, pos: u64) -> Result<()> {
        if self.policy == FsyncPolicy::Never {
            return Ok(());
        }
        let mut st = self.sync.lock();
        loop {
            if let Some(path) = &st.poisoned {
                return Err(Error::WalPoisoned { path: path.clone() });
            }
            if st.synced >= pos {
                return Ok(());
            }
            if st.syncing {
                self.cv.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let (file, path, target) = {
                let cur = self.current.lock();
                (cur.file.clone(), cur.path.clone(), cur.written)
            };
            let res = file.sync_data();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            st = self.sync.lock();
            st.syncing = false;
            match res {
                Ok(()) => st.synced = st.synced.max(target),
                Err(e) => {
                    st.poisoned = Some(path.clone());
                    self.cv.notify_all();
                    return Err(Error::io("fsync", path, e));
                }
            }
            self.cv.notify_all();
        }
    }

    /// Starts a new segment holding `checkpoint` (the state that is not yet
    /// in blocks), makes it durable, and deletes every older segment.
    /// The caller holds the engine's write lock, so no append interleaves.
    pub fn rotate(&self, checkpoint: &[u8]) -> Result<()> {
        let mut cur = self.current.lock();
        let old_seg = cur.seg;
        let seg = old_seg + 1;
        let (file, path, _) = open_segment(&self.dir, seg)?;
        (&*file)
            .write_all(checkpoint)
            .map_err(|e| Error::io("write", &path, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
        sync_dir(&self.dir)?;
        self.bytes
            .fetch_add(checkpoint.len() as u64, Ordering::Relaxed);
        for s in list_segments(&self.dir)? {
            if s <= old_seg {
                let p = segment_path(&self.dir, s);
                fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            }
        }
        sync_dir(&self.dir)?;
        let written = (seg << 40) | checkpoint.len() as u64;
        *cur = Current {
            file,
            path,
            seg,
            written,
        };
        let mut st = self.sync.lock();
        st.synced = st.synced.max(written);
        self.cv.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), 0, FsyncPolicy::Always).expect("open");
        let mut rb = RecordBuf::default();
        rb.series(7, "svc", "host:1", "cpu");
        rb.samples(false, &[(7, 1000, 1.5), (7, 2000, f64::NAN)]);
        let pos = wal.write(&rb.buf).expect("write");
        wal.wait_durable(pos).expect("sync");
        rb.clear();
        rb.samples(true, &[(7, 3000, 2.5)]);
        let torn = &rb.buf[..rb.buf.len() - 3];
        wal.write(torn).expect("write torn");
        drop(wal);

        let mut seen = Vec::new();
        let out = replay(dir.path(), |r| seen.push(format!("{r:?}"))).expect("replay");
        assert_eq!(out.torn_tails, 1);
        assert_eq!(seen.len(), 2);
        assert!(seen[1].contains("1000"));
        let again = replay(dir.path(), |_| {}).expect("replay twice");
        assert_eq!(again.torn_tails, 0, "truncation made the tail clean");
    }

    #[test]
    fn rotation_drops_older_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), 0, FsyncPolicy::Always).expect("open");
        let mut rb = RecordBuf::default();
        rb.epoch("svc", 19_000, 5);
        wal.write(&rb.buf).expect("write");
        rb.clear();
        rb.epoch("svc", 19_001, 6);
        wal.rotate(&rb.buf).expect("rotate");
        let mut seen = Vec::new();
        replay(dir.path(), |r| seen.push(format!("{r:?}"))).expect("replay");
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("19001"));
    }
}
