//! The simulator's disks: one per actor, kept outside the madsim nodes so it survives a
//! machine's crash, losing what was not synced.
//!
//! Store members write through the same write-ahead log as the real `keel store`
//! daemon: the engine's [`WalStorage`] over a [`MemLogFile`], whose crash keeps a random
//! prefix of the unsynced appends and may tear the next one at a sector boundary. The
//! member then restarts from what the log's recovery makes of that file, so seeds
//! explore the real recovery code. A log that does not open after a crash is a bug (a
//! power cut only leaves torn tails) and fails the run. Every other actor gets the
//! engine's [`MemStorage`], which models the same contract at batch granularity.

use keel_engine::storage::KeyValues;
use keel_engine::wal::{MemLogFile, WalStorage};
use keel_engine::{Address, MemStorage, Storage, StorageError, WriteBatch};
use rand::Rng;

/// The simulated log's compaction threshold: small, so that runs compact (the real
/// daemon's is 64 MiB).
pub const LOG_COMPACT_MIN_BYTES: u64 = 256 * 1024;

/// One actor's disk.
pub enum SimDisk {
    /// Batches: the engine's in-memory storage.
    Batches(MemStorage),
    /// The write-ahead log over a simulated file.
    Log(Box<WalStorage<MemLogFile>>),
    /// A log that did not open after a crash: the member cannot start from it (as the
    /// real daemon refuses to), and every access fails.
    Broken(String),
}

/// What a crash did to a disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskCrash {
    /// Unsynced batches that did not survive whole.
    pub batches_lost: u64,
    /// Bytes of a torn append that did reach the disk (log disks only).
    pub torn_bytes: u64,
}

impl SimDisk {
    /// Why the actor cannot start from this disk, if it cannot.
    pub fn broken(&self) -> Option<&str> {
        match self {
            SimDisk::Broken(e) => Some(e),
            _ => None,
        }
    }

    /// The disk an actor of `kind` gets: store members the log, everyone else batches.
    pub fn for_actor(address: &Address, kind: &str) -> SimDisk {
        if kind == keel_actors::store::KIND {
            let file = MemLogFile::new(format!("{address}.wal"));
            // A missing file opens as a new, empty log: cannot fail.
            let wal =
                WalStorage::open(file, LOG_COMPACT_MIN_BYTES).expect("a new simulated log opens");
            SimDisk::Log(Box::new(wal))
        } else {
            SimDisk::Batches(MemStorage::new())
        }
    }

    /// A power cut. The write in progress never lands whole; earlier unsynced writes may
    /// or may not have, and a log's next append may be torn at a sector boundary.
    /// `Err` when the log does not open again (corruption a power cut cannot cause).
    pub fn crash(&mut self, rng: &mut impl Rng) -> Result<DiskCrash, StorageError> {
        // Taken out while it crashes; every arm puts a disk back.
        match std::mem::replace(self, SimDisk::Broken(String::new())) {
            SimDisk::Batches(mut disk) => {
                let unsynced = disk.unsynced_batches();
                let surviving = if unsynced == 0 {
                    0
                } else {
                    rng.gen_range(0..unsynced)
                };
                let batches_lost = disk.crash(surviving) as u64;
                *self = SimDisk::Batches(disk);
                Ok(DiskCrash {
                    batches_lost,
                    torn_bytes: 0,
                })
            }
            SimDisk::Log(wal) => {
                let mut file = wal.into_file();
                let (keep, torn) = crash_point(&file, rng);
                let report = file.crash(keep, torn);
                match WalStorage::open(file, LOG_COMPACT_MIN_BYTES) {
                    Ok(reopened) => *self = SimDisk::Log(Box::new(reopened)),
                    Err(e) => {
                        *self = SimDisk::Broken(e.to_string());
                        return Err(e);
                    }
                }
                Ok(DiskCrash {
                    batches_lost: report.appends_lost,
                    torn_bytes: report.torn_bytes,
                })
            }
            SimDisk::Broken(e) => {
                *self = SimDisk::Broken(e.clone());
                Err(StorageError::Corrupt(e))
            }
        }
    }
}

/// Where a power cut falls in a log's unsynced changes: how many reached the disk
/// whole (never all: the write in progress does not land whole), and how many bytes of
/// the next one did (half the time none, else a sector boundary inside it).
fn crash_point(file: &MemLogFile, rng: &mut impl Rng) -> (usize, u64) {
    let pending = file.pending();
    if pending == 0 {
        return (0, 0);
    }
    let keep = rng.gen_range(0..pending);
    let points = file.tear_points(keep);
    let torn = if points.is_empty() || rng.gen_bool(0.5) {
        0
    } else {
        points[rng.gen_range(0..points.len())]
    };
    (keep, torn)
}

impl Storage for SimDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            SimDisk::Batches(d) => d.get(key),
            SimDisk::Log(d) => d.get(key),
            SimDisk::Broken(e) => Err(StorageError::Corrupt(e.clone())),
        }
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        match self {
            SimDisk::Batches(d) => d.scan(start, end, limit),
            SimDisk::Log(d) => d.scan(start, end, limit),
            SimDisk::Broken(e) => Err(StorageError::Corrupt(e.clone())),
        }
    }

    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        match self {
            SimDisk::Batches(d) => d.write(batch),
            SimDisk::Log(d) => d.write(batch),
            SimDisk::Broken(e) => Err(StorageError::Corrupt(e.clone())),
        }
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        match self {
            SimDisk::Batches(d) => d.sync(),
            SimDisk::Log(d) => d.sync(),
            SimDisk::Broken(e) => Err(StorageError::Corrupt(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Crashes of a store member's log: synced data always survives, the log always
    /// opens again, and over many seeds some crash tears an append.
    #[test]
    fn log_disk_crashes_keep_synced_data_and_tear_sometimes() {
        let address = Address::new("s1", keel_actors::store::KIND, 0);
        let mut torn = 0;
        for seed in 0..200u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut disk = SimDisk::for_actor(&address, keel_actors::store::KIND);
            assert!(matches!(disk, SimDisk::Log(_)));
            let mut synced = 0;
            for round in 0..5u32 {
                for i in 0..3u32 {
                    disk.write(WriteBatch::new().put(format!("k{round}-{i}"), vec![1u8; 300]))
                        .unwrap();
                }
                if rng.gen_bool(0.5) {
                    disk.sync().unwrap();
                    synced = round + 1;
                }
            }
            let report = disk.crash(&mut rng).unwrap();
            torn += u64::from(report.torn_bytes > 0);
            for round in 0..synced {
                assert!(disk
                    .get(format!("k{round}-2").as_bytes())
                    .unwrap()
                    .is_some());
            }
        }
        assert!(torn > 0, "200 crashes tore nothing");
    }
}
