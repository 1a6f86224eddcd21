//! Storage: the one durable thing an actor has.
//!
//! An ordered key-value space per actor with write batches and an explicit `sync`.
//! Contract (both hosts keep it): a write is visible to reads at once; it survives a
//! crash only once a later `sync` has returned. The simulator's [`MemStorage`] models
//! exactly that — on [`MemStorage::crash`] every unsynced batch after a random-length
//! surviving prefix is lost — and the real host's sled storage fsyncs on `sync`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One operation of a batch. Keys and values are encoded as byte strings
/// (`serde_bytes`): the same bincode as a `Vec<u8>`'s, written and read in one copy
/// instead of byte by byte (it was the write-ahead log's largest CPU cost).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// Operations applied atomically: all or none survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Delete { key: key.into() });
        self
    }
    /// Key and value bytes the batch carries.
    pub fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value } => key.len() + value.len(),
                WriteOp::Delete { key } => key.len(),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
}

/// Key-value pairs in key order, as scans return them.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Ordered key-value storage with batches and explicit durability.
pub trait Storage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Keys in `[start, end)` (no end: to the last key), in key order, at most `limit`.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError>;
    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError>;
    /// Makes every write so far durable (fsync in real mode).
    fn sync(&mut self) -> Result<(), StorageError>;
}

/// Everything in a storage, in key order (used for trace snapshots).
pub fn dump(storage: &dyn Storage) -> Result<KeyValues, StorageError> {
    storage.scan(&[], None, usize::MAX)
}

/// `Storage::scan` over an in-memory ordered map (shared by the storages that keep
/// their data in one): an empty or inverted range yields nothing.
pub fn scan_map(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> KeyValues {
    use std::ops::Bound;
    if end.is_some_and(|e| e <= start) {
        return Vec::new();
    }
    let upper = match end {
        Some(e) => Bound::Excluded(e.to_vec()),
        None => Bound::Unbounded,
    };
    map.range((Bound::Included(start.to_vec()), upper))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            WriteOp::Put { key, value } => {
                map.insert(key.clone(), value.clone());
            }
            WriteOp::Delete { key } => {
                map.remove(key);
            }
        }
    }
}

/// The simulator's disk: survives a node crash, loses what was not synced.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// What a reader sees now: durable state plus unsynced batches.
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What survives a crash for sure.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches written since the last sync, oldest first.
    unsynced: Vec<WriteBatch>,
    /// Counters for reports and invariants.
    pub stats: MemStorageStats,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemStorageStats {
    pub batches_written: u64,
    pub syncs: u64,
    pub crashes: u64,
    /// Unsynced batches a crash threw away.
    pub batches_lost: u64,
    /// Key and value bytes of every batch written, and of the largest one: what one
    /// turn of an actor can cost its disk.
    #[serde(default)]
    pub bytes_written: u64,
    #[serde(default)]
    pub max_batch_bytes: u64,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage whose durable content is `entries` (used by the replayer).
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let durable: BTreeMap<_, _> = entries.into_iter().collect();
        MemStorage {
            visible: durable.clone(),
            durable,
            ..Default::default()
        }
    }

    pub fn unsynced_batches(&self) -> usize {
        self.unsynced.len()
    }

    /// A power cut: the first `surviving` unsynced batches reached the platter (a torn
    /// tail is modelled at batch granularity), the rest are gone. Returns how many were
    /// lost. `surviving` is clamped to the number of unsynced batches.
    pub fn crash(&mut self, surviving: usize) -> usize {
        let surviving = surviving.min(self.unsynced.len());
        for batch in &self.unsynced[..surviving] {
            apply(&mut self.durable, batch);
        }
        let lost = self.unsynced.len() - surviving;
        self.unsynced.clear();
        self.visible = self.durable.clone();
        self.stats.crashes += 1;
        self.stats.batches_lost += lost as u64;
        lost
    }
}

impl Storage for MemStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.visible.get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_map(&self.visible, start, end, limit))
    }

    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        apply(&mut self.visible, batch);
        self.unsynced.push(batch.clone());
        self.stats.batches_written += 1;
        let bytes = batch.bytes() as u64;
        self.stats.bytes_written += bytes;
        self.stats.max_batch_bytes = self.stats.max_batch_bytes.max(bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        for batch in self.unsynced.drain(..) {
            apply(&mut self.durable, &batch);
        }
        self.stats.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synced writes survive a crash; unsynced ones after the surviving prefix do not.
    #[test]
    fn crash_keeps_synced_and_drops_unsynced() {
        let mut s = MemStorage::new();
        s.write(WriteBatch::new().put("a", "1")).unwrap();
        s.sync().unwrap();
        s.write(WriteBatch::new().put("b", "2")).unwrap();
        s.write(WriteBatch::new().put("c", "3").delete("a"))
            .unwrap();
        assert_eq!(s.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(s.crash(1), 1);
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.get(b"c").unwrap(), None);
        assert_eq!(s.stats.batches_lost, 1);
    }

    /// Scans are ordered and bounded.
    #[test]
    fn scan_is_ordered_and_bounded() {
        let mut s = MemStorage::new();
        s.write(
            WriteBatch::new()
                .put("k2", "b")
                .put("k1", "a")
                .put("k3", "c"),
        )
        .unwrap();
        let all = s.scan(b"k", None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].0, b"k1".to_vec());
        let two = s.scan(b"k1", Some(b"k3"), 10).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(s.scan(b"k", None, 1).unwrap().len(), 1);
    }
}
