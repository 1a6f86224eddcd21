//! The raft log as raft-rs sees it, mirrored to the actor's durable [`Storage`].
//!
//! [`RaftLog`] implements `raft::Storage` from memory (entries after the last snapshot,
//! hard state, conf state, the last snapshot). Every change goes through a method that
//! also returns the matching [`WriteBatch`] ops, so the store actor can persist them in
//! one batch and sync before it sends the messages that depend on them.
//!
//! Durable layout (keys in the actor's storage):
//! * `raft/hs`              — HardState (protobuf)
//! * `raft/cs`              — ConfState (protobuf) in force at the stored state's
//!   applied index (written in the same batch as that state)
//! * `raft/snap`            — the last snapshot's metadata (protobuf, no data: the state
//!   it stands for is the member's checkpoint, `super::checkpoint`)
//! * `raft/e/<index:020>`   — one Entry (protobuf) per index in the log: every entry
//!   after the snapshot, and up to `catch_up` entries before it (see
//!   [`RaftLog::install_local_snapshot`])
//! * `raft/meta`            — magic and cluster identity, to refuse foreign data dirs

use keel_engine::{Storage, StorageError, WriteBatch};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};
use std::cell::Cell;

const KEY_HARD_STATE: &[u8] = b"raft/hs";
const KEY_CONF_STATE: &[u8] = b"raft/cs";
const KEY_SNAPSHOT: &[u8] = b"raft/snap";
const ENTRY_PREFIX: &str = "raft/e/";

fn entry_key(index: u64) -> Vec<u8> {
    format!("{ENTRY_PREFIX}{index:020}").into_bytes()
}

fn encode<M: protobuf::Message>(message: &M) -> Vec<u8> {
    // Encoding an in-memory protobuf message into a Vec cannot fail.
    message
        .write_to_bytes()
        .expect("protobuf encoding is infallible")
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes)
        .map_err(|e| StorageError::Corrupt(format!("{what} does not decode: {e}")))
}

/// raft-rs's view of the log, kept in memory and mirrored to storage.
#[derive(Default)]
pub struct RaftLog {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// The log, contiguous: every entry after the snapshot, and the catch-up entries
    /// kept below it (so the first entry may precede the snapshot's index).
    entries: Vec<Entry>,
    /// A snapshot built for a follower that needs one, and the whole state's bytes it
    /// stands for (kept in memory only; see [`RaftLog::snapshot_wanted`]). raft sends
    /// the snapshot; followers fetch the bytes (`Store`'s `snapshots`).
    outgoing: Option<(Snapshot, Vec<u8>)>,
    /// raft asked for a snapshot that is not built yet.
    wanted: Cell<bool>,
}

impl RaftLog {
    /// A founding member of a new cluster. Its state starts from a snapshot at index 1
    /// (term 1) that holds the initial voters and the empty state machine; every
    /// founding member builds the same one. Keeping the initial membership in a
    /// snapshot, not only in raft's conf state, means a member that joins later gets it
    /// too: the leader's log starts at index 2, so the newcomer is sent the snapshot
    /// first and its membership is never missing the founders.
    /// A joining member (`voters` empty) starts with nothing and waits for the leader.
    /// The member writes the matching state (applied index 1) beside it.
    pub fn bootstrap(voters: Vec<u64>) -> (RaftLog, WriteBatch) {
        let mut log = RaftLog::default();
        let mut batch = WriteBatch::new();
        if !voters.is_empty() {
            log.conf_state.voters = voters;
            let mut snapshot = Snapshot::default();
            let meta = snapshot.mut_metadata();
            meta.index = 1;
            meta.term = 1;
            meta.set_conf_state(log.conf_state.clone());
            batch.put(KEY_SNAPSHOT, encode(&snapshot));
            log.snapshot = snapshot;
            let hs = HardState {
                term: 1,
                commit: 1,
                ..Default::default()
            };
            log.set_hard_state(hs, &mut batch);
            batch.put(KEY_CONF_STATE, encode(&log.conf_state));
        }
        (log, batch)
    }

    /// Reloads everything a restarted member had synced.
    pub fn load(storage: &dyn Storage) -> Result<RaftLog, StorageError> {
        let mut log = RaftLog::default();
        if let Some(bytes) = storage.get(KEY_HARD_STATE)? {
            log.hard_state = decode(&bytes, "raft hard state")?;
        }
        if let Some(bytes) = storage.get(KEY_CONF_STATE)? {
            log.conf_state = decode(&bytes, "raft conf state")?;
        }
        if let Some(bytes) = storage.get(KEY_SNAPSHOT)? {
            log.snapshot = decode(&bytes, "raft snapshot")?;
        }
        // The log may start below the snapshot (catch-up entries); it must reach it.
        let start = ENTRY_PREFIX.as_bytes().to_vec();
        let end = format!("{ENTRY_PREFIX}~").into_bytes();
        let mut expected = None;
        for (_, value) in storage.scan(&start, Some(&end), usize::MAX)? {
            let entry: Entry = decode(&value, "raft entry")?;
            let expected = expected.get_or_insert(entry.index);
            if entry.index != *expected {
                return Err(StorageError::Corrupt(format!(
                    "raft log has a gap: expected entry {expected}, found {}",
                    entry.index
                )));
            }
            *expected += 1;
            log.entries.push(entry);
        }
        let snapshot_index = log.snapshot.get_metadata().index;
        if log
            .entries
            .first()
            .is_some_and(|e| e.index > snapshot_index + 1)
        {
            return Err(StorageError::Corrupt(format!(
                "raft log starts at entry {} after the snapshot at {snapshot_index}",
                log.entries[0].index
            )));
        }
        if log.entries.last().is_some_and(|e| e.index < snapshot_index) {
            // Catch-up entries only, all below the snapshot: the log restarts after it.
            log.entries.clear();
        }
        // The stored conf state is the one in force at the member's stored state's
        // applied index (written with it: see `set_conf_state`); raft restarts there.
        Ok(log)
    }

    /// For a data directory from before the state was stored as it applied: its state
    /// is the snapshot's, so the conf state in force is the snapshot's too (entries
    /// after it are re-applied and bring membership up to date).
    pub fn adopt_snapshot_conf_state(&mut self) {
        if self.snapshot.get_metadata().index > 0 {
            self.conf_state = self.snapshot.get_metadata().get_conf_state().clone();
        }
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn last_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    fn first(&self) -> u64 {
        match self.entries.first() {
            Some(e) => e.index,
            None => self.snapshot.get_metadata().index + 1,
        }
    }

    fn last(&self) -> u64 {
        let snapshot = self.snapshot.get_metadata().index;
        self.entries
            .last()
            .map_or(snapshot, |e| e.index.max(snapshot))
    }

    pub fn set_hard_state(&mut self, hs: HardState, batch: &mut WriteBatch) {
        batch.put(KEY_HARD_STATE, encode(&hs));
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState, batch: &mut WriteBatch) {
        batch.put(KEY_CONF_STATE, encode(&cs));
        self.conf_state = cs;
    }

    pub fn set_commit(&mut self, commit: u64, batch: &mut WriteBatch) {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(hs, batch);
    }

    /// Appends entries, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry], batch: &mut WriteBatch) {
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return;
        };
        if first_new < self.first() {
            // raft never hands back entries below its snapshot; a violation is a bug.
            panic!(
                "append at {first_new} below the snapshot (first index {})",
                self.first()
            );
        }
        let last = self.last();
        for index in first_new..=last {
            batch.delete(entry_key(index));
        }
        let keep = (first_new - self.first()) as usize;
        self.entries.truncate(keep);
        for entry in entries {
            batch.put(entry_key(entry.index), encode(entry));
            self.entries.push(entry.clone());
        }
    }

    /// Installs a snapshot received from the leader: the log restarts after it. Its
    /// data is the caller's to keep (as its checkpoint): only the metadata is stored.
    pub fn apply_snapshot(&mut self, mut snapshot: Snapshot, batch: &mut WriteBatch) {
        snapshot.set_data(Default::default());
        self.outgoing = None;
        let meta = snapshot.get_metadata();
        for index in self.first()..=self.last() {
            batch.delete(entry_key(index));
        }
        self.entries.clear();
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.set_hard_state(hs, batch);
        self.set_conf_state(meta.get_conf_state().clone(), batch);
        batch.put(KEY_SNAPSHOT, encode(&snapshot));
        self.snapshot = snapshot;
    }

    /// Records that the state machine's checkpoint (written by the caller in the same
    /// batch) stands at applied `index`, and drops the log up to `catch_up` entries
    /// below it: a follower at most that far behind catches up from the log; one
    /// further behind is sent a snapshot.
    pub fn install_local_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        catch_up: u64,
        batch: &mut WriteBatch,
    ) -> Result<(), raft::Error> {
        let term = self.term_of(index)?;
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        let keep_from = index.saturating_sub(catch_up) + 1;
        for e in self.entries.iter().filter(|e| e.index < keep_from) {
            batch.delete(entry_key(e.index));
        }
        self.entries.retain(|e| e.index >= keep_from);
        batch.put(KEY_SNAPSHOT, encode(&snapshot));
        self.snapshot = snapshot;
        // A built snapshot the log no longer reaches would leave its follower with a
        // gap: build another when asked.
        if self
            .outgoing
            .as_ref()
            .is_some_and(|(out, _)| out.get_metadata().index + 1 < self.first())
        {
            self.outgoing = None;
        }
        Ok(())
    }

    /// Stores the last snapshot without its data (a data directory from before
    /// checkpoints kept the whole state in it; the member has moved that state into
    /// its checkpoint in the same batch).
    pub fn forget_snapshot_data(&mut self, batch: &mut WriteBatch) {
        self.snapshot.set_data(Default::default());
        batch.put(KEY_SNAPSHOT, encode(&self.snapshot));
    }

    /// Whether raft asked for a snapshot to send that is not built: the member then
    /// builds one from its state ([`RaftLog::set_outgoing_snapshot`]) and raft sends it
    /// on its next try (it retries a follower on every heartbeat response).
    pub fn snapshot_wanted(&self) -> bool {
        self.wanted.get()
    }

    /// Keeps a snapshot at applied `index` whose data is `descriptor` (what the
    /// member's message says of `bytes`, the whole state) as the snapshot to send.
    pub fn set_outgoing_snapshot(
        &mut self,
        index: u64,
        descriptor: Vec<u8>,
        bytes: Vec<u8>,
        conf_state: ConfState,
    ) -> Result<(), raft::Error> {
        let term = self.term_of(index)?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(descriptor.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        self.outgoing = Some((snapshot, bytes));
        self.wanted.set(false);
        Ok(())
    }

    /// The whole state's bytes of the snapshot offered at (`index`, `term`), if that is
    /// the one held.
    pub fn outgoing_bytes(&self, index: u64, term: u64) -> Option<&[u8]> {
        self.outgoing
            .as_ref()
            .filter(|(snapshot, _)| {
                let meta = snapshot.get_metadata();
                meta.index == index && meta.term == term
            })
            .map(|(_, bytes)| bytes.as_slice())
    }

    /// Forgets a built snapshot (membership changed, or the member no longer leads).
    pub fn drop_outgoing_snapshot(&mut self) {
        self.outgoing = None;
        self.wanted.set(false);
    }

    /// Bytes of the built snapshot held (0 when none).
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.as_ref().map_or(0, |(_, bytes)| bytes.len())
    }

    fn term_of(&self, idx: u64) -> Result<u64, raft::Error> {
        let snap = self.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let offset = self.first();
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        let max_size = max_size.into();
        let mut out = Vec::new();
        let mut size = 0u64;
        for entry in slice {
            size += u64::from(entry.compute_size());
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The state lives in the member's checkpoint, not here: the whole state is
        // built only when a follower needs it, outside raft's call (the member sees
        // `snapshot_wanted` after its Ready loop). Until then raft is told to try again.
        match &self.outgoing {
            Some((snapshot, _)) if snapshot.get_metadata().index >= request_index => {
                Ok(snapshot.clone())
            }
            _ => {
                self.wanted.set(true);
                Err(raft::Error::Store(
                    raft::StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::MemStorage;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    /// A local snapshot keeps `catch_up` entries below it, in memory and on disk: a
    /// follower that far behind is sent entries, not the snapshot; a reload finds the
    /// same log.
    #[test]
    fn a_local_snapshot_keeps_catch_up_entries() {
        let mut disk = MemStorage::new();
        let (mut log, batch) = RaftLog::bootstrap(vec![1, 2, 3]);
        disk.write(&batch).unwrap();
        let mut batch = WriteBatch::new();
        let entries: Vec<Entry> = (2..=100).map(|i| entry(i, 2)).collect();
        log.append(&entries, &mut batch);
        log.install_local_snapshot(90, ConfState::default(), 20, &mut batch)
            .unwrap();
        disk.write(&batch).unwrap();
        for log in [log, RaftLog::load(&disk).unwrap()] {
            assert_eq!(log.first_index().unwrap(), 71);
            assert_eq!(log.last_index().unwrap(), 100);
            assert_eq!(log.term(90).unwrap(), 2);
            assert_eq!(log.term(71).unwrap(), 2);
            assert!(log.term(70).is_err());
            let sent = log
                .entries(75, 80, None, GetEntriesContext::empty(false))
                .unwrap();
            assert_eq!(sent.first().map(|e| e.index), Some(75));
            assert!(log
                .entries(60, 80, None, GetEntriesContext::empty(false))
                .is_err());
        }
        // Without catch-up entries the log starts right after the snapshot.
        let (mut log, _) = RaftLog::bootstrap(vec![1]);
        let mut batch = WriteBatch::new();
        log.append(&entries, &mut batch);
        log.install_local_snapshot(90, ConfState::default(), 0, &mut batch)
            .unwrap();
        assert_eq!(log.first_index().unwrap(), 91);
    }
}
