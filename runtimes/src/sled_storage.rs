//! [`SledStorage`]: the real host's [`Storage`], one sled tree per actor.
//!
//! A node opens one `sled::Db` in its data directory; each actor gets the tree named by
//! its address string (`cp1/store#0`), so actors never see each other's keys and a
//! restarted process finds each actor's state where it left it.
//!
//! Contract (the same as the engine's `MemStorage`): a write is visible to reads at once
//! and is applied atomically as one sled batch; it is durable once a later
//! [`Storage::sync`] has returned, which flushes and fsyncs the whole database. Sled may
//! also flush on its own in the background; that only makes more writes durable than
//! promised, never fewer.
//!
//! Owns: the mapping from addresses to trees. Touches: the node's data directory only.

use keel_engine::{Address, Storage, StorageError, WriteBatch, WriteOp};
use std::ops::Bound;
use std::time::{Duration, Instant};

/// The first pause before [`open_db`] tries again on a locked database; it doubles after
/// each try.
const OPEN_RETRY_FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between two tries of [`open_db`].
const OPEN_RETRY_MAX_PAUSE: Duration = Duration::from_millis(200);
/// How long [`open_db`] waits for a lock to go away before it returns the error: far
/// longer than a dropped handle's queued I/O takes, short enough that a directory really
/// used by another process is reported promptly.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(10);

/// Opens the database `config` describes, waiting out a lock left by a handle that is
/// going away.
///
/// Sled 0.34 locks the database file while it is open, and dropping the last `Db` does
/// not release the lock at once: the file (an `Arc<File>`) is also held by sled-io tasks
/// still queued on sled's thread pool, and closes only when the last of them has run. A
/// process that closes and reopens a database (a node restarted inside one process, a
/// test reopening its scratch database) can therefore meet its own lock for a moment,
/// and `Config::open` then fails at once with an io error "could not acquire lock on
/// …: WouldBlock". Only that error is retried, pausing 5 ms, doubling up to 200 ms; after
/// 10 s the lock is taken for real (another process uses the directory) and the error is
/// returned as sled gave it. Every other error is returned at once.
///
/// Blocks the calling thread while it waits.
pub fn open_db(config: &sled::Config) -> sled::Result<sled::Db> {
    let started = Instant::now();
    let mut pause = OPEN_RETRY_FIRST_PAUSE;
    loop {
        match config.open() {
            Err(error) if is_lock_error(&error) && started.elapsed() < OPEN_RETRY_FOR => {
                tracing::debug!(%error, ?pause, "sled database still locked; trying again");
                let left = OPEN_RETRY_FOR.saturating_sub(started.elapsed());
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(OPEN_RETRY_MAX_PAUSE);
            }
            result => return result,
        }
    }
}

/// Whether `error` is sled's "could not acquire lock" (see [`open_db`]): sled builds it
/// as an `ErrorKind::Other` io error, so its message is the only way to tell it apart.
fn is_lock_error(error: &sled::Error) -> bool {
    match error {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::Other
                && io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// One actor's storage: its own tree in the node's database.
#[derive(Clone, Debug)]
pub struct SledStorage {
    /// The whole database, kept so that `sync` can flush it (sled flushes per database).
    db: sled::Db,
    tree: sled::Tree,
}

fn io_error(error: sled::Error) -> StorageError {
    match error {
        sled::Error::Corruption { .. } => StorageError::Corrupt(error.to_string()),
        other => StorageError::Io(other.to_string()),
    }
}

impl SledStorage {
    /// Opens (creating if needed) the tree for `address` in `db`.
    pub fn open(db: &sled::Db, address: &Address) -> Result<Self, StorageError> {
        let tree = db.open_tree(address.to_string()).map_err(io_error)?;
        Ok(SledStorage {
            db: db.clone(),
            tree,
        })
    }

    /// Whether the tree holds any key: a process restart finds the actor's earlier state
    /// here, and the host then starts the actor with `StartKind::Restart`.
    pub fn has_data(&self) -> Result<bool, StorageError> {
        match self.tree.iter().next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(error)) => Err(io_error(error)),
        }
    }
}

impl Storage for SledStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self.tree.get(key).map_err(io_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<keel_engine::storage::KeyValues, StorageError> {
        // An empty or inverted range is empty (a BTreeMap would panic; we do not).
        if let Some(end) = end {
            if end <= start {
                return Ok(Vec::new());
            }
        }
        let upper = match end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.tree.range::<&[u8], _>((Bound::Included(start), upper)) {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(io_error)?;
            entries.push((key.to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        let mut sled_batch = sled::Batch::default();
        for op in &batch.ops {
            match op {
                WriteOp::Put { key, value } => sled_batch.insert(key.as_slice(), value.as_slice()),
                WriteOp::Delete { key } => sled_batch.remove(key.as_slice()),
            }
        }
        self.tree.apply_batch(sled_batch).map_err(io_error)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.db.flush().map(|_bytes| ()).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            TempDir(
                std::env::temp_dir().join(format!("keel-{label}-{}-{nanos}", std::process::id())),
            )
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Synced batches survive closing and reopening the database, trees stay separate,
    /// and scans are ordered and bounded like MemStorage's.
    #[test]
    fn synced_writes_survive_reopen_and_trees_are_separate() {
        let dir = TempDir::new("sled-storage");
        let a = Address::new("n1", "selftest", 0);
        let b = Address::new("n1", "selftest", 1);
        {
            let db = open_db(&sled::Config::new().path(&dir.0)).unwrap();
            let mut sa = SledStorage::open(&db, &a).unwrap();
            let sb = SledStorage::open(&db, &b).unwrap();
            assert!(!sa.has_data().unwrap());
            sa.write(
                WriteBatch::new()
                    .put("k2", "b")
                    .put("k1", "a")
                    .put("k3", "c"),
            )
            .unwrap();
            sa.write(WriteBatch::new().delete("k3")).unwrap();
            // Visible at once, before any sync.
            assert_eq!(sa.get(b"k1").unwrap(), Some(b"a".to_vec()));
            assert_eq!(sb.get(b"k1").unwrap(), None);
            sa.sync().unwrap();
        }
        // The handle above has just been dropped: `open_db` waits out its lock.
        let db = open_db(&sled::Config::new().path(&dir.0)).unwrap();
        let sa = SledStorage::open(&db, &a).unwrap();
        let sb = SledStorage::open(&db, &b).unwrap();
        assert!(sa.has_data().unwrap());
        assert!(!sb.has_data().unwrap());
        let all = sa.scan(b"", None, 10).unwrap();
        assert_eq!(
            all,
            vec![
                (b"k1".to_vec(), b"a".to_vec()),
                (b"k2".to_vec(), b"b".to_vec())
            ]
        );
        assert_eq!(sa.scan(b"k1", Some(b"k2"), 10).unwrap().len(), 1);
        assert_eq!(sa.scan(b"k", None, 1).unwrap().len(), 1);
        assert!(sa.scan(b"k2", Some(b"k1"), 10).unwrap().is_empty());
    }
}
