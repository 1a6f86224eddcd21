//! `WalStorage`: an actor's storage as an append-only log file plus an in-memory map.
//!
//! Why: the store's raft log needs many small synced writes per second. sled rewrites
//! pages and blobs on flush; this engine writes each batch once, sequentially, and
//! `sync` is one `fdatasync`. The store member daemon uses it; other actors keep sled
//! (see `NodeConfig::storage`). Same contract as every `Storage`: a write is visible at
//! once and durable once a later `sync` returns.
//!
//! File `<dir>/<actor>.wal`: the magic `KEELWAL1`, then records `u32 length (LE),
//! u32 crc32 (LE), bincode(WriteBatch)`. Opening replays every record. A torn tail
//! (a record cut short or failing its checksum at the end of the file: writes that were
//! never synced) is cut off; a bad record followed by good ones, or a foreign file, is
//! corruption and refuses to open. When the log outgrows the live data (4× and at
//! least `compact_min_bytes`) it is rewritten as one batch of the live data: written to
//! a temporary file, synced, renamed over the log, and the directory synced.

use keel_engine::storage::KeyValues;
use keel_engine::{Storage, StorageError, WriteBatch, WriteOp};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KEELWAL1";
/// One batch may not exceed this (a corrupt length must not allocate GiBs).
const RECORD_MAX_BYTES: u32 = 256 * 1024 * 1024;

pub struct WalStorage {
    path: PathBuf,
    file: File,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    log_bytes: u64,
    live_bytes: u64,
    compact_min_bytes: u64,
}

fn io(context: &str, path: &Path, error: std::io::Error) -> StorageError {
    StorageError::Io(format!("{context} {}: {error}", path.display()))
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, live: &mut u64, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            WriteOp::Put { key, value } => {
                *live += (key.len() + value.len()) as u64;
                if let Some(old) = map.insert(key.clone(), value.clone()) {
                    *live -= (key.len() + old.len()) as u64;
                }
            }
            WriteOp::Delete { key } => {
                if let Some(old) = map.remove(key) {
                    *live -= (key.len() + old.len()) as u64;
                }
            }
        }
    }
}

fn record(batch: &WriteBatch) -> Vec<u8> {
    // Our own in-memory type into a Vec: serialization cannot fail.
    let body = bincode::serialize(batch).expect("write batch serialization is infallible");
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync directory", dir, e))
}

impl WalStorage {
    /// Opens (or creates) the log for one actor at `path`.
    pub fn open(path: &Path, compact_min_bytes: u64) -> Result<WalStorage, StorageError> {
        let mut map = BTreeMap::new();
        let mut live = 0u64;
        let mut good_len = MAGIC.len() as u64;
        if path.exists() {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io("cannot read", path, e))?;
            if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
                return Err(StorageError::Corrupt(format!(
                    "{} is not a keel write-ahead log (bad magic bytes)",
                    path.display()
                )));
            }
            let mut at = MAGIC.len();
            while at < bytes.len() {
                let torn = |what: &str| -> Result<(), StorageError> {
                    tracing::warn!(path = %path.display(), offset = at, what, "cutting off a torn tail of the log (writes that were never synced)");
                    Ok(())
                };
                if bytes.len() - at < 8 {
                    torn("record header cut short")?;
                    break;
                }
                let len =
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
                let crc = u32::from_le_bytes([
                    bytes[at + 4],
                    bytes[at + 5],
                    bytes[at + 6],
                    bytes[at + 7],
                ]);
                let end = at + 8 + len as usize;
                if len > RECORD_MAX_BYTES || end > bytes.len() {
                    torn("record cut short")?;
                    break;
                }
                let body = &bytes[at + 8..end];
                if crc32fast::hash(body) != crc {
                    if end == bytes.len() {
                        torn("last record fails its checksum")?;
                        break;
                    }
                    return Err(StorageError::Corrupt(format!(
                        "{}: record at offset {at} fails its checksum and is followed by more records",
                        path.display()
                    )));
                }
                let batch: WriteBatch = bincode::deserialize(body).map_err(|e| {
                    StorageError::Corrupt(format!(
                        "{}: record at offset {at} does not decode: {e}",
                        path.display()
                    ))
                })?;
                apply(&mut map, &mut live, &batch);
                at = end;
                good_len = at as u64;
            }
        } else {
            let mut file = File::create(path).map_err(|e| io("cannot create", path, e))?;
            file.write_all(MAGIC)
                .map_err(|e| io("cannot write", path, e))?;
            file.sync_all().map_err(|e| io("cannot sync", path, e))?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io("cannot open", path, e))?;
        // Drop a torn tail so new records follow the last good one.
        file.set_len(good_len)
            .map_err(|e| io("cannot truncate", path, e))?;
        let mut storage = WalStorage {
            path: path.to_path_buf(),
            file,
            map,
            log_bytes: good_len,
            live_bytes: live,
            compact_min_bytes,
        };
        use std::io::Seek;
        storage
            .file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| io("cannot seek", path, e))?;
        Ok(storage)
    }

    pub fn has_data(&self) -> bool {
        !self.map.is_empty()
    }

    /// Rewrites the log as one batch of the live data (called after a sync).
    fn compact(&mut self) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        for (key, value) in &self.map {
            batch.put(key.clone(), value.clone());
        }
        let temporary = self.path.with_extension("wal.compacting");
        let mut file = File::create(&temporary).map_err(|e| io("cannot create", &temporary, e))?;
        let bytes = record(&batch);
        file.write_all(MAGIC)
            .and_then(|_| file.write_all(&bytes))
            .and_then(|_| file.sync_all())
            .map_err(|e| io("cannot write", &temporary, e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| io("cannot replace", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io("cannot open", &self.path, e))?;
        self.log_bytes = (MAGIC.len() + bytes.len()) as u64;
        Ok(())
    }
}

impl Storage for WalStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(keel_engine::storage::scan_map(&self.map, start, end, limit))
    }

    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        let bytes = record(batch);
        self.file
            .write_all(&bytes)
            .map_err(|e| io("cannot append to", &self.path, e))?;
        self.log_bytes += bytes.len() as u64;
        apply(&mut self.map, &mut self.live_bytes, batch);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| io("cannot sync", &self.path, e))?;
        if self.log_bytes
            > self
                .compact_min_bytes
                .max(self.live_bytes.saturating_mul(4))
        {
            self.compact()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-wal-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Synced writes survive reopening; a torn tail is cut off; compaction keeps the data.
    #[test]
    fn wal_survives_reopen_torn_tail_and_compaction() {
        let dir = temp("reopen");
        let path = dir.join("a.wal");
        {
            let mut wal = WalStorage::open(&path, 1024).unwrap();
            for i in 0..200u32 {
                wal.write(WriteBatch::new().put(format!("k{i:03}"), vec![7u8; 64]))
                    .unwrap();
                wal.write(WriteBatch::new().delete(format!("k{:03}", i.saturating_sub(1))))
                    .unwrap();
            }
            wal.sync().unwrap();
        }
        // A torn record at the end: as if the process died mid-write.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let wal = WalStorage::open(&path, 1024).unwrap();
        assert_eq!(wal.scan(b"k", None, 10).unwrap().len(), 1);
        assert_eq!(wal.get(b"k199").unwrap(), Some(vec![7u8; 64]));
        // Garbage in place of the log is refused, not silently emptied.
        std::fs::write(&path, b"definitely not a log").unwrap();
        assert!(matches!(
            WalStorage::open(&path, 1024),
            Err(StorageError::Corrupt(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
