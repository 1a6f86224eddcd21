//! `WalStorage` on a real file: the engine's write-ahead log
//! ([`keel_engine::wal::WalStorage`], where the format, recovery and compaction live and
//! are documented) over [`FileLog`], a file on disk.
//!
//! The store member daemon uses it; other actors keep sled (see `NodeConfig::storage`).
//! Same contract as every `Storage`: a write is visible at once and durable once a
//! later `sync` returns. The simulator runs the same log over a simulated file.
//!
//! Durability of names, not only of data: creating the log and replacing it (compaction)
//! write a temporary file, sync it, rename it over the log and sync the directory, so
//! after a power cut the log exists and holds either the old or the new content.

use keel_engine::wal::LogFile;
use keel_engine::StorageError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The real host's write-ahead log storage.
pub type WalStorage = keel_engine::wal::WalStorage<FileLog>;

/// Whether `sync` reaches the disk. `Skip` exists only so the power-loss test can show
/// that it catches a store without fsync (`KEEL_TEST_SKIP_FSYNC=1`, read by the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    /// Test only: `sync` does nothing.
    Skip,
}

/// The log as a file on disk.
pub struct FileLog {
    path: PathBuf,
    /// Open for appending once the file exists.
    file: Option<File>,
    fsync: Fsync,
}

fn io(context: &str, path: &Path, error: std::io::Error) -> StorageError {
    StorageError::Io(format!("{context} {}: {error}", path.display()))
}

/// Syncs a directory so the names in it (a created or renamed file) survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync directory", dir, e))
}

/// Creates `dir` and every missing parent, syncing each parent after the child is
/// created, so the directory survives a power cut (`create_dir_all` alone leaves the new
/// names in the page cache, and a member could come back with no data directory).
pub fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io("cannot create directory", dir, e)),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

impl FileLog {
    pub fn new(path: &Path, fsync: Fsync) -> FileLog {
        FileLog {
            path: path.to_path_buf(),
            file: None,
            fsync,
        }
    }

    /// The log open for appending (opened on first use and after a replace), and its
    /// path for error messages — borrowed apart, so a write allocates nothing.
    fn file(&mut self) -> Result<(&mut File, &Path), StorageError> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|e| io("cannot open", &self.path, e))?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        Ok((file, &self.path))
    }
}

impl LogFile for FileLog {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let mut bytes = Vec::new();
        match File::open(&self.path) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .map_err(|e| io("cannot read", &self.path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot open", &self.path, e)),
        };
        Ok(Some(bytes))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let (file, path) = self.file()?;
        file.write_all(bytes)
            .map_err(|e| io("cannot append to", path, e))
    }

    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        // Appends go to the end, so they follow the cut.
        let (file, path) = self.file()?;
        file.set_len(len)
            .map_err(|e| io("cannot truncate", path, e))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.fsync == Fsync::Skip {
            return Ok(());
        }
        let (file, path) = self.file()?;
        file.sync_data().map_err(|e| io("cannot sync", path, e))
    }

    fn replace(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let temporary = self.path.with_extension("wal.new");
        let mut file = File::create(&temporary).map_err(|e| io("cannot create", &temporary, e))?;
        file.write_all(bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| io("cannot write", &temporary, e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| io("cannot replace", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        // The old descriptor names the replaced file: reopen on the next append.
        self.file = None;
        Ok(())
    }
}

/// Opens (or creates) the log for one actor at `path`.
pub fn open(path: &Path, compact_min_bytes: u64, fsync: Fsync) -> Result<WalStorage, StorageError> {
    let wal = WalStorage::open(FileLog::new(path, fsync), compact_min_bytes)?;
    let recovery = wal.recovery();
    if recovery.torn_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            torn_bytes = recovery.torn_bytes,
            why = recovery.torn.as_deref().unwrap_or(""),
            "cut off a torn tail of the log (writes that were never synced)"
        );
    }
    Ok(wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{Storage, WriteBatch};

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-wal-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The real file: synced writes survive reopening, a torn tail is cut off (and the
    /// cut persists), compaction keeps the data, damage in the middle is refused.
    #[test]
    fn real_log_survives_reopen_torn_tail_compaction_and_refuses_damage() {
        let dir = temp("reopen");
        create_dir_durably(&dir.join("a/b")).unwrap();
        let path = dir.join("a/b/x.wal");
        let mut offsets = Vec::new();
        {
            let mut wal = open(&path, 1024, Fsync::Always).unwrap();
            for i in 0..200u32 {
                offsets.push(std::fs::metadata(&path).unwrap().len());
                wal.write(WriteBatch::new().put(format!("k{i:03}"), vec![7u8; 64]))
                    .unwrap();
                wal.write(WriteBatch::new().delete(format!("k{:03}", i.saturating_sub(1))))
                    .unwrap();
                wal.sync().unwrap();
            }
        }
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let before = std::fs::metadata(&path).unwrap().len();
        let mut wal = open(&path, 1024, Fsync::Always).unwrap();
        assert_eq!(wal.recovery().torn_bytes, 6);
        assert_eq!(wal.scan(b"k", None, 10).unwrap().len(), 1);
        assert_eq!(wal.get(b"k199").unwrap(), Some(vec![7u8; 64]));
        wal.write(WriteBatch::new().put("after", "cut")).unwrap();
        wal.sync().unwrap();
        drop(wal);
        assert!(std::fs::metadata(&path).unwrap().len() < before + 64);
        let wal = open(&path, 1024, Fsync::Always).unwrap();
        assert_eq!(wal.recovery().torn_bytes, 0);
        assert_eq!(wal.get(b"after").unwrap(), Some(b"cut".to_vec()));
        drop(wal);
        // Damage one byte of the first record: the records after it still verify.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[keel_engine::wal::MAGIC.len() + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        match open(&path, 1024, Fsync::Always) {
            Err(StorageError::Corrupt(e)) => {
                assert!(e.contains(&path.display().to_string()), "{e}");
                assert!(e.contains("offset 8"), "{e}");
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a damaged log opened"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
