//! A bounded on-disk queue of write batches for one storage-frontend: batches wait
//! here while storage is down and are replayed, oldest segment first, when it is back.
//!
//! ```text
//!  dir/00000000000000000001.spill  (closed, replayed next)
//!  dir/00000000000000000002.spill  (being appended)
//!  record = u32 LE payload length | u32 LE CRC-32 of payload | payload (protobuf WriteRequest)
//! ```
//! A record cut short by a crash (short or failing its CRC) ends its segment; what
//! follows it is ignored. Replaying a segment twice is harmless: storage writes are
//! idempotent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Segments are closed at this size so replay can free space as it goes.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Why a spill operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill {dir} is full ({used} of {limit} bytes)")]
    Full { dir: PathBuf, used: u64, limit: u64 },
    #[error("spill {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug)]
struct State {
    /// Closed segments, oldest first: (id, bytes).
    closed: Vec<(u64, u64)>,
    /// The segment being appended.
    open: Option<(u64, File, u64)>,
    next_id: u64,
    used: u64,
    records: u64,
}

/// A segment's id and its records.
pub type Segment = (u64, Vec<Vec<u8>>);

/// The spill of one storage-frontend.
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpillError + '_ {
    move |source| SpillError::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.spill"))
}

impl Spill {
    /// Opens (creating) the spill in `dir`, taking up segments left by an earlier run.
    pub fn open(dir: &Path, limit: u64) -> Result<Self, SpillError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut closed = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".spill"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io_err(dir))?.len();
            closed.push((id, len));
        }
        closed.sort_unstable();
        let next_id = closed.last().map_or(1, |(id, _)| id + 1);
        let used = closed.iter().map(|(_, l)| l).sum();
        Ok(Self {
            dir: dir.to_owned(),
            limit,
            state: Mutex::new(State {
                closed,
                open: None,
                next_id,
                used,
                records: 0,
            }),
        })
    }

    /// Bytes on disk.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used
    }

    /// Whether anything waits to be replayed.
    pub fn is_empty(&self) -> bool {
        self.state.lock().used == 0
    }

    /// Records appended by this process so far.
    pub fn appended(&self) -> u64 {
        self.state.lock().records
    }

    /// Appends one record, or fails with [`SpillError::Full`] past the limit.
    pub fn append(&self, payload: &[u8]) -> Result<(), SpillError> {
        let need = payload.len() as u64 + 8;
        let mut st = self.state.lock();
        if st.used + need > self.limit {
            return Err(SpillError::Full {
                dir: self.dir.clone(),
                used: st.used,
                limit: self.limit,
            });
        }
        if st
            .open
            .as_ref()
            .is_some_and(|(_, _, len)| *len >= SEGMENT_BYTES)
        {
            let (id, _, len) = st.open.take().expect("checked");
            st.closed.push((id, len));
        }
        if st.open.is_none() {
            let id = st.next_id;
            st.next_id += 1;
            let path = segment_path(&self.dir, id);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            st.open = Some((id, file, 0));
        }
        let (id, file, len) = st.open.as_mut().expect("opened above");
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let path = segment_path(&self.dir, *id);
        file.write_all(&record).map_err(io_err(&path))?;
        *len += need;
        st.used += need;
        st.records += 1;
        Ok(())
    }

    /// The oldest segment's id and records, closing the open segment if it is the
    /// only one. `None` when the spill is empty.
    pub fn oldest(&self) -> Result<Option<Segment>, SpillError> {
        let id = {
            let mut st = self.state.lock();
            if st.closed.is_empty() {
                match st.open.take() {
                    Some((id, _, len)) if len > 0 => st.closed.push((id, len)),
                    Some(open) => {
                        st.open = Some(open);
                        return Ok(None);
                    }
                    None => return Ok(None),
                }
            }
            st.closed[0].0
        };
        let path = segment_path(&self.dir, id);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(&path))?;
        let mut records = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
                tracing::warn!(path = %path.display(), offset = at, "spill record cut short; ignoring the rest of the segment");
                break;
            };
            if crc32fast::hash(payload) != crc {
                tracing::warn!(path = %path.display(), offset = at, "spill record fails its checksum; ignoring the rest of the segment");
                break;
            }
            records.push(payload.to_vec());
            at += 8 + len;
        }
        Ok(Some((id, records)))
    }

    /// Deletes a replayed segment.
    pub fn remove(&self, id: u64) -> Result<(), SpillError> {
        let path = segment_path(&self.dir, id);
        fs::remove_file(&path).map_err(io_err(&path))?;
        let mut st = self.state.lock();
        if let Some(pos) = st.closed.iter().position(|(i, _)| *i == id) {
            let (_, len) = st.closed.remove(pos);
            st.used -= len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_replay_remove_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(dir.path(), 100).unwrap();
        assert!(spill.oldest().unwrap().is_none());
        spill.append(b"first").unwrap();
        spill.append(b"second").unwrap();
        assert!(matches!(
            spill.append(&[0; 90]),
            Err(SpillError::Full { .. })
        ));
        let (id, records) = spill.oldest().unwrap().unwrap();
        assert_eq!(records, vec![b"first".to_vec(), b"second".to_vec()]);
        spill.append(b"third").unwrap();
        spill.remove(id).unwrap();
        assert!(!spill.is_empty());
        drop(spill);
        // A later run takes up what is left, and ignores a torn tail.
        let spill = Spill::open(dir.path(), 100).unwrap();
        let (id, records) = spill.oldest().unwrap().unwrap();
        assert_eq!(records, vec![b"third".to_vec()]);
        let path = segment_path(dir.path(), id);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1]).unwrap();
        let (_, records) = spill.oldest().unwrap().unwrap();
        assert_eq!(records.len(), 1);
        spill.remove(id).unwrap();
        assert!(spill.is_empty());
    }
}
