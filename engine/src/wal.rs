//! The write-ahead log storage: an actor's storage as an append-only log plus an
//! in-memory map, over any [`LogFile`].
//!
//! Why here, generic over the file: the real host runs it over a real file
//! (`keel_runtimes::wal_storage`), and the simulator runs the *same code* over a
//! [`MemLogFile`] whose crash model loses and tears unsynced writes, so the log's
//! recovery paths are explored by seeds, not only by hand-written cases.
//!
//! Why a log: the store's raft log needs many small synced writes per second. A log
//! writes each batch once, sequentially, and `sync` is one `fdatasync`.
//!
//! Format: the magic `KEELWAL2`, then records `u32 length (LE), u32 crc32 (LE),
//! bincode(WriteBatch)`, the checksum taken over the length's four bytes and the body,
//! so a damaged length is caught like a damaged body. Opening replays every record.
//!
//! A bad record is either a **torn tail** or **corruption**. A torn tail is the end of
//! what reached the disk of writes that were never synced (so never acknowledged): a
//! record whose header or body runs past the end of the file, with no record after it
//! that verifies. Disks write sectors whole and, on ext4's default `data=ordered` as in
//! the simulator's crash model, an append's new size never reaches the disk before its
//! data, so a power cut leaves a short file, not a whole-length record with bad bytes.
//! Everything else is **corruption**: a record that is all there but fails its checksum,
//! an impossible length, or a bad record followed by one that verifies. Corruption
//! refuses to open with the file and offset (as etcd's `wal: crc mismatch`): records
//! after the damage were synced and acknowledged, and cutting the log there would lose
//! them silently. Such a member is rebuilt from its peers (the error says how). The one
//! case that cannot be told apart is a damaged length in the very last record that
//! points past the end of the file; compaction therefore ends the log with an empty
//! record, so the big compacted record is never last.
//!
//! When the log outgrows the live data (4× and at least `compact_min_bytes`) it is
//! replaced, atomically and durably, by one batch of the live data.

use crate::storage::{scan_map, KeyValues, Storage, StorageError, WriteBatch, WriteOp};
use std::collections::BTreeMap;

/// The first bytes of every log.
pub const MAGIC: &[u8; 8] = b"KEELWAL2";
/// The magic of the previous format (checksum over the body only), refused by name.
const OLD_MAGIC: &[u8; 8] = b"KEELWAL1";
/// One batch may not exceed this (a corrupt length must not allocate GiBs).
pub const RECORD_MAX_BYTES: u32 = 256 * 1024 * 1024;
/// Bytes before a record's body: length and checksum.
const HEADER: usize = 8;

/// What a [`WalStorage`] needs from a file. The real host's implementation is a file
/// on disk; the simulator's is [`MemLogFile`].
pub trait LogFile {
    /// Names the file in messages (a path).
    fn name(&self) -> String;
    /// The file's whole content, or `None` when it does not exist.
    fn read(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Appends bytes at the end (durable only after a later `sync`).
    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Cuts the file to `len` bytes (durable only after a later `sync`).
    fn truncate(&mut self, len: u64) -> Result<(), StorageError>;
    /// Makes every append and truncation so far durable (`fdatasync`).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Replaces the whole file (creating it if missing) with `bytes`, atomically and
    /// durably: after a crash the file holds either the old content or all of `bytes`,
    /// and once this returns, `bytes` (and the file's name) survive a crash.
    fn replace(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
}

/// What opening a log found, for logs and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed.
    pub records: u64,
    /// Bytes of a torn tail that were cut off (0: the log ended cleanly).
    pub torn_bytes: u64,
    /// Why the tail was torn, when it was.
    pub torn: Option<String>,
}

pub struct WalStorage<F: LogFile> {
    file: F,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    log_bytes: u64,
    live_bytes: u64,
    compact_min_bytes: u64,
    recovery: Recovery,
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

fn checksum(len: [u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(body);
    hasher.finalize()
}

/// One record's bytes.
pub fn record(batch: &WriteBatch) -> Vec<u8> {
    // Our own in-memory type into a Vec: serialization cannot fail.
    let body = bincode::serialize(batch).expect("write batch serialization is infallible");
    let len = (body.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(body.len() + HEADER);
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, &body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Why a record does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    HeaderCutShort,
    BodyCutShort,
    ImpossibleLength,
    Checksum,
}

impl Problem {
    /// Whether a power cut during an unsynced append can leave this.
    fn is_torn(self) -> bool {
        matches!(self, Problem::HeaderCutShort | Problem::BodyCutShort)
    }

    fn describe(self) -> &'static str {
        match self {
            Problem::HeaderCutShort => "record header cut short by the end of the file",
            Problem::BodyCutShort => "record cut short by the end of the file",
            Problem::ImpossibleLength => "record length impossibly large",
            Problem::Checksum => "crc mismatch",
        }
    }
}

/// The record starting at `at`: `Ok(end)` when it is whole and verifies, else why not.
fn verify(bytes: &[u8], at: usize) -> Result<usize, Problem> {
    if bytes.len() - at < HEADER {
        return Err(Problem::HeaderCutShort);
    }
    let len = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
    let body_len = u32::from_le_bytes(len);
    if body_len > RECORD_MAX_BYTES {
        return Err(Problem::ImpossibleLength);
    }
    let end = at + HEADER + body_len as usize;
    if end > bytes.len() {
        return Err(Problem::BodyCutShort);
    }
    if checksum(len, &bytes[at + HEADER..end]) != crc {
        return Err(Problem::Checksum);
    }
    Ok(end)
}

/// The first offset after `from` where a whole record verifies. Each candidate costs
/// O(1) unless its length fits in the file, so the scan is cheap on real logs.
fn next_verifying_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER - 1)).find(|&at| verify(bytes, at).is_ok())
}

/// How to rebuild a member whose log is corrupt (part of the error message).
pub const REBUILD_HINT: &str = "the member must be rebuilt from its peers: remove it \
(`keel store member remove ID`), empty its data directory, add it again \
(`keel store member add NAME=HOST:PORT` prints its new id) and start it with \
`--join --member-id NEW_ID`";

impl<F: LogFile> WalStorage<F> {
    /// Opens the log in `file`, creating it (durably) when it does not exist.
    pub fn open(mut file: F, compact_min_bytes: u64) -> Result<Self, StorageError> {
        let mut map = BTreeMap::new();
        let mut live = 0u64;
        let mut recovery = Recovery::default();
        let good_len = match file.read()? {
            None => {
                file.replace(MAGIC)?;
                MAGIC.len()
            }
            Some(bytes) => {
                let good = replay(&file.name(), &bytes, &mut |batch| {
                    apply(&mut map, &mut live, batch);
                    recovery.records += 1;
                })?;
                if good.len < bytes.len() {
                    recovery.torn_bytes = (bytes.len() - good.len) as u64;
                    recovery.torn = good.torn.map(str::to_string);
                    // Drop the torn tail so new records follow the last good one; the
                    // next sync makes the cut durable with them.
                    file.truncate(good.len as u64)?;
                }
                good.len
            }
        };
        Ok(WalStorage {
            file,
            map,
            log_bytes: good_len as u64,
            live_bytes: live,
            compact_min_bytes,
            recovery,
        })
    }

    pub fn has_data(&self) -> bool {
        !self.map.is_empty()
    }

    /// What opening the log found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The file underneath (the simulator crashes it and opens the log again).
    pub fn into_file(self) -> F {
        self.file
    }

    /// Replaces the log by one batch of the live data (called after a sync).
    fn compact(&mut self) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        for (key, value) in &self.map {
            batch.put(key.clone(), value.clone());
        }
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&record(&batch));
        // Never last: see the module docs (a damaged length there could pass as torn).
        bytes.extend_from_slice(&record(&WriteBatch::new()));
        self.file.replace(&bytes)?;
        self.log_bytes = bytes.len() as u64;
        Ok(())
    }
}

/// How much of a log is good.
struct Good {
    len: usize,
    torn: Option<&'static str>,
}

/// Replays every good record of `bytes` into `each`; the good length, or corruption.
fn replay(
    name: &str,
    bytes: &[u8],
    each: &mut dyn FnMut(&WriteBatch),
) -> Result<Good, StorageError> {
    if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] == OLD_MAGIC {
        return Err(StorageError::Corrupt(format!(
            "{name} is a log of an older keel (format KEELWAL1); this keel reads KEELWAL2 only"
        )));
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(StorageError::Corrupt(format!(
            "{name} is not a keel write-ahead log (bad magic bytes)"
        )));
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let end = match verify(bytes, at) {
            Ok(end) => end,
            Err(problem) => {
                let next = next_verifying_record(bytes, at + 1);
                if problem.is_torn() && next.is_none() {
                    return Ok(Good {
                        len: at,
                        torn: Some(problem.describe()),
                    });
                }
                let follows = match next {
                    Some(next) => format!(", and a valid record follows at offset {next}"),
                    None => String::new(),
                };
                return Err(StorageError::Corrupt(format!(
                    "{name}: wal: {} at offset {at}{follows}: synced records would be lost, \
                     so the log is not opened; {REBUILD_HINT}",
                    problem.describe()
                )));
            }
        };
        let batch: WriteBatch = bincode::deserialize(&bytes[at + HEADER..end]).map_err(|e| {
            StorageError::Corrupt(format!(
                "{name}: wal: record at offset {at} verifies but does not decode: {e}; {REBUILD_HINT}"
            ))
        })?;
        each(&batch);
        at = end;
    }
    Ok(Good {
        len: at,
        torn: None,
    })
}

impl<F: LogFile> Storage for WalStorage<F> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_map(&self.map, start, end, limit))
    }

    fn write(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        let bytes = record(batch);
        self.file.append(&bytes)?;
        self.log_bytes += bytes.len() as u64;
        apply(&mut self.map, &mut self.live_bytes, batch);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.file.sync()?;
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

/// An unsynced change to a [`MemLogFile`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    Append { offset: u64, bytes: Vec<u8> },
    Truncate { len: u64 },
}

/// The simulator's log file: what readers see, what is durable, and the changes in
/// between. A crash keeps a prefix of the unsynced changes and may tear the next
/// append at a 512-byte sector boundary of the file (disks write sectors atomically;
/// a tear inside a sector is not a failure a disk produces).
#[derive(Clone, Debug, Default)]
pub struct MemLogFile {
    name: String,
    /// `None`: the file does not exist (durably).
    durable: Option<Vec<u8>>,
    current: Option<Vec<u8>>,
    pending: Vec<Pending>,
}

/// What a crash of a [`MemLogFile`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// Unsynced appends that did not reach the disk whole.
    pub appends_lost: u64,
    /// Bytes of a torn append that did reach it.
    pub torn_bytes: u64,
}

/// The sector size tears respect.
pub const SECTOR: u64 = 512;

impl MemLogFile {
    pub fn new(name: impl Into<String>) -> Self {
        MemLogFile {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Unsynced changes (appends and truncations).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sector boundaries strictly inside the `pending`-th change (an append), as byte
    /// counts of it that a tear may keep: the choices for [`MemLogFile::crash`].
    pub fn tear_points(&self, index: usize) -> Vec<u64> {
        match self.pending.get(index) {
            Some(Pending::Append { offset, bytes }) => {
                let end = offset + bytes.len() as u64;
                let first = (offset / SECTOR + 1) * SECTOR;
                (first..end)
                    .step_by(SECTOR as usize)
                    .map(|b| b - offset)
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// A power cut: the first `keep` unsynced changes reached the disk, then `torn`
    /// bytes of the next one (an append; see [`MemLogFile::tear_points`]), the rest
    /// did not.
    pub fn crash(&mut self, keep: usize, torn: u64) -> Crash {
        let keep = keep.min(self.pending.len());
        let mut disk = self.durable.clone().unwrap_or_default();
        for change in &self.pending[..keep] {
            apply_change(&mut disk, change);
        }
        let mut report = Crash::default();
        if let Some(Pending::Append { offset, bytes }) = self.pending.get(keep) {
            let torn = (torn as usize).min(bytes.len());
            if torn > 0 {
                apply_change(
                    &mut disk,
                    &Pending::Append {
                        offset: *offset,
                        bytes: bytes[..torn].to_vec(),
                    },
                );
                report.torn_bytes = torn as u64;
            }
        }
        report.appends_lost = self.pending[keep..]
            .iter()
            .filter(|c| matches!(c, Pending::Append { .. }))
            .count() as u64;
        self.pending.clear();
        if self.durable.is_some() {
            self.durable = Some(disk);
        }
        self.current = self.durable.clone();
        report
    }

    /// Overwrites bytes of the file as a bad disk would (tests and fault injection).
    pub fn damage(&mut self, offset: usize, bytes: &[u8]) {
        for file in [&mut self.current, &mut self.durable].into_iter().flatten() {
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = file.get_mut(offset + i) {
                    *slot = *b;
                }
            }
        }
    }

    /// The file's current content (what a reader sees).
    pub fn content(&self) -> Option<&[u8]> {
        self.current.as_deref()
    }
}

fn apply_change(file: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Append { offset, bytes } => {
            let offset = *offset as usize;
            if file.len() < offset {
                file.resize(offset, 0);
            }
            let overlap = (file.len() - offset).min(bytes.len());
            file[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
            file.extend_from_slice(&bytes[overlap..]);
        }
        Pending::Truncate { len } => file.truncate(*len as usize),
    }
}

impl LogFile for MemLogFile {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.current.clone())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let file = self
            .current
            .as_mut()
            .ok_or_else(|| StorageError::Io(format!("{} does not exist", self.name)))?;
        let offset = file.len() as u64;
        file.extend_from_slice(bytes);
        self.pending.push(Pending::Append {
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        let file = self
            .current
            .as_mut()
            .ok_or_else(|| StorageError::Io(format!("{} does not exist", self.name)))?;
        file.truncate(len as usize);
        self.pending.push(Pending::Truncate { len });
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        // Replay the pending changes onto the durable copy: O(bytes changed), not a copy
        // of the whole file per sync (which made store runs 45% slower).
        match &mut self.durable {
            Some(durable) => {
                for change in self.pending.drain(..) {
                    apply_change(durable, &change);
                }
            }
            None => {
                self.durable = self.current.clone();
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.current = Some(bytes.to_vec());
        self.durable = self.current.clone();
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &str, value: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(key, value.to_vec());
        b
    }

    /// A log of `n` synced single-put records; returns the file and each record's offset.
    fn synced_log(n: usize) -> (MemLogFile, Vec<usize>) {
        let mut wal = WalStorage::open(MemLogFile::new("t.wal"), u64::MAX).unwrap();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(wal.log_bytes as usize);
            wal.write(&batch(&format!("k{i:03}"), &[i as u8; 40]))
                .unwrap();
            wal.sync().unwrap();
        }
        (wal.into_file(), offsets)
    }

    #[test]
    fn synced_records_survive_and_a_torn_tail_is_cut() {
        let mut wal = WalStorage::open(MemLogFile::new("t.wal"), 1024).unwrap();
        for i in 0..200u32 {
            wal.write(&batch(&format!("k{i:03}"), &[7u8; 64])).unwrap();
            wal.write(WriteBatch::new().delete(format!("k{:03}", i.saturating_sub(1))))
                .unwrap();
        }
        wal.sync().unwrap();
        let mut file = wal.into_file();
        // A torn record at the end: a header whose body never arrived.
        file.append(&[9, 0, 0, 0, 1, 2]).unwrap();
        let wal = WalStorage::open(file, 1024).unwrap();
        assert_eq!(wal.scan(b"k", None, 10).unwrap().len(), 1);
        assert_eq!(wal.get(b"k199").unwrap(), Some(vec![7u8; 64]));
        assert_eq!(wal.recovery().torn_bytes, 6);
        // The cut is in the file: opening again finds a clean end.
        let wal = WalStorage::open(wal.into_file(), 1024).unwrap();
        assert_eq!(wal.recovery().torn_bytes, 0);
    }

    /// The bug this format fixes: a damaged length in the middle used to read as a torn
    /// tail and cut off every synced record after it.
    #[test]
    fn a_damaged_length_in_the_middle_is_corruption_with_its_offset() {
        let (mut file, offsets) = synced_log(10);
        file.damage(offsets[4], &[0xff, 0xff, 0xff, 0x7f]);
        let error = match WalStorage::open(file.clone(), u64::MAX) {
            Err(StorageError::Corrupt(e)) => e,
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a log damaged in the middle opened"),
        };
        assert!(error.contains(&format!("offset {}", offsets[4])), "{error}");
        assert!(error.contains(&format!("offset {}", offsets[5])), "{error}");
        assert!(error.contains("member remove"), "{error}");
        // A length that still fits the file, and a damaged body, are caught the same way.
        let (mut file, offsets) = synced_log(10);
        file.damage(offsets[2], &[10]);
        assert!(matches!(
            WalStorage::open(file, u64::MAX),
            Err(StorageError::Corrupt(_))
        ));
        let (mut file, offsets) = synced_log(10);
        file.damage(offsets[7] + HEADER + 3, &[0xaa]);
        assert!(matches!(
            WalStorage::open(file, u64::MAX),
            Err(StorageError::Corrupt(_))
        ));
    }

    /// The last record cut short is a torn tail; the last record all there but damaged
    /// is corruption (a power cut cannot produce it).
    #[test]
    fn the_last_record_cut_short_is_torn_but_damaged_is_corrupt() {
        let (file, offsets) = synced_log(5);
        let mut short = file.clone();
        short.truncate(offsets[4] as u64 + 20).unwrap();
        let wal = WalStorage::open(short, u64::MAX).unwrap();
        assert_eq!(wal.get(b"k003").unwrap(), Some(vec![3u8; 40]));
        assert_eq!(wal.get(b"k004").unwrap(), None);
        assert_eq!(
            wal.recovery().torn.as_deref(),
            Some("record cut short by the end of the file")
        );
        for (at, bytes) in [
            (offsets[4], vec![0xff, 0xff, 0xff, 0x7f]),
            (offsets[4] + HEADER + 1, vec![0x55]),
        ] {
            let mut damaged = file.clone();
            damaged.damage(at, &bytes);
            assert!(
                matches!(
                    WalStorage::open(damaged, u64::MAX),
                    Err(StorageError::Corrupt(_))
                ),
                "damage at {at} opened"
            );
        }
    }

    /// After compaction the live data is one big record: damage to it (even a length
    /// pointing past the end) is still corruption, thanks to the empty record after it.
    #[test]
    fn a_compacted_log_with_damage_is_corruption() {
        let mut wal = WalStorage::open(MemLogFile::new("t.wal"), 0).unwrap();
        for i in 0..5 {
            wal.write(&batch("a", &[i; 100])).unwrap();
        }
        wal.sync().unwrap();
        let mut file = wal.into_file();
        let len = file.content().unwrap().len();
        assert!(len < 200, "not compacted: {len}");
        file.damage(MAGIC.len(), &[0xf0, 0x0f, 0, 0]);
        assert!(matches!(
            WalStorage::open(file, 0),
            Err(StorageError::Corrupt(e)) if e.contains("valid record follows")
        ));
    }

    #[test]
    fn foreign_and_old_files_are_refused() {
        let mut file = MemLogFile::new("t.wal");
        file.replace(b"definitely not a log").unwrap();
        assert!(matches!(
            WalStorage::open(file, 1024),
            Err(StorageError::Corrupt(e)) if e.contains("bad magic")
        ));
        let mut file = MemLogFile::new("t.wal");
        file.replace(b"KEELWAL1\x01\x00\x00\x00").unwrap();
        assert!(matches!(
            WalStorage::open(file, 1024),
            Err(StorageError::Corrupt(e)) if e.contains("older keel")
        ));
    }

    /// Compaction replaces the log and keeps the data; reopening finds it all.
    #[test]
    fn compaction_keeps_the_live_data() {
        let mut wal = WalStorage::open(MemLogFile::new("t.wal"), 4096).unwrap();
        // Written once, before every compaction: only a compaction that keeps the live
        // data keeps these.
        for i in 0..20u32 {
            wal.write(&batch(&format!("once{i:02}"), b"x")).unwrap();
        }
        for i in 0..500u32 {
            wal.write(&batch(&format!("k{}", i % 7), &i.to_le_bytes()))
                .unwrap();
            wal.sync().unwrap();
        }
        assert!(wal.log_bytes < 8192, "never compacted: {}", wal.log_bytes);
        let wal = WalStorage::open(wal.into_file(), 4096).unwrap();
        assert_eq!(wal.get(b"k2").unwrap(), Some(499u32.to_le_bytes().to_vec()));
        assert_eq!(wal.scan(b"k", Some(b"l"), 100).unwrap().len(), 7);
        assert_eq!(wal.scan(b"once", Some(b"oncf"), 100).unwrap().len(), 20);
    }

    /// Every crash point — each prefix of unsynced appends, each sector tear — opens to
    /// exactly the synced data plus a prefix of the unsynced batches.
    #[test]
    fn every_crash_point_recovers_a_prefix() {
        let mut wal = WalStorage::open(MemLogFile::new("t.wal"), u64::MAX).unwrap();
        for i in 0..3u32 {
            wal.write(&batch(&format!("s{i}"), &[1u8; 300])).unwrap();
        }
        wal.sync().unwrap();
        for i in 0..4u32 {
            wal.write(&batch(&format!("u{i}"), &[2u8; 700])).unwrap();
        }
        let file = wal.into_file();
        let mut torn_seen = 0;
        for keep in 0..=file.pending() {
            let mut tears = vec![0];
            tears.extend(file.tear_points(keep));
            for torn in tears {
                let mut crashed = file.clone();
                let report = crashed.crash(keep, torn);
                torn_seen += u64::from(report.torn_bytes > 0);
                let wal = WalStorage::open(crashed, u64::MAX).unwrap();
                for i in 0..3 {
                    assert!(wal.get(format!("s{i}").as_bytes()).unwrap().is_some());
                }
                for i in 0..4 {
                    let present = wal.get(format!("u{i}").as_bytes()).unwrap().is_some();
                    assert_eq!(present, i < keep, "keep {keep} torn {torn} u{i}");
                }
            }
        }
        assert!(torn_seen >= 4, "no tear was exercised: {torn_seen}");
    }
}
