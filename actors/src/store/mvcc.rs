//! The MVCC state machine: etcd v3's key-value semantics, pure and deterministic.
//!
//! Every member applies the same committed requests in the same order to an [`Mvcc`]
//! and so holds the same state ([`Mvcc::digest`] proves it in tests). Nothing here
//! knows about raft, clocks or clients: lease expiry, routing and watch delivery are
//! the store actor's.
//!
//! Owns: the key history, the change log watches catch up from, and the lease table.
//! Touches: nothing else.
//!
//! The model, as etcd's:
//! 1. The store has one revision, 1 when empty. Each request that changes anything (a
//!    put, a delete that deletes something, a txn whose executed ops change something,
//!    a lease revoke with attached keys) takes exactly one new revision; every change it
//!    makes carries that revision, in execution order. Reads and no-op writes take none.
//! 2. Each key keeps its versions: `create_revision` (the put that created this
//!    incarnation), `mod_revision` (the last write), `version` (1 on create, +1 per put,
//!    0 once deleted — a later put starts a new incarnation). A delete is kept as a
//!    tombstone so reads at older revisions still see the key.
//! 3. Compaction at revision `C` forgets what only reads below `C` need: per key every
//!    version older than the newest one at or below `C`, and that one too if it is a
//!    tombstone; and the change log up to `C`. Afterwards reads at revisions `>= C`
//!    work (etcd's rule: only `revision < C` is refused) and watches may start at
//!    `C + 1` or later (a watch starting at `C` would need `prev_kv` from before `C`).
//! 4. Every request is checked completely before anything changes, so a refused
//!    request leaves the state as it was; once checked, applying it cannot fail.

use super::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventType, KeyRange, KeyValue, Limits, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, StoreError, TxnRequest, TxnResponse,
};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Bumped whenever the snapshot encoding changes; a snapshot of another format is
/// refused rather than misread.
const SNAPSHOT_FORMAT: u32 = 1;

/// One state of one key. A tombstone (the key deleted at `mod_revision`) has version
/// 0, create revision 0, lease 0 and an empty value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Version {
    mod_revision: i64,
    create_revision: i64,
    version: i64,
    /// A byte string (`serde_bytes`): the same bincode, copied whole.
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    lease: i64,
}

impl Version {
    fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    fn key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// A granted lease: its TTL (the actor tracks expiry) and the keys attached to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    ttl_seconds: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The newest version at or below `revision`, tombstones included.
fn version_at(versions: &[Version], revision: i64) -> Option<&Version> {
    let after = versions.partition_point(|version| version.mod_revision <= revision);
    after.checked_sub(1).map(|index| &versions[index])
}

/// The key's live state at `revision`, if it existed then.
fn live_at(versions: &[Version], revision: i64) -> Option<&Version> {
    version_at(versions, revision).filter(|version| !version.is_tombstone())
}

/// Whether a key's field relates to the target as the compare demands. `None` is a
/// missing key: its numbers are all 0 and a value compare on it is false.
fn compare_holds_for(compare: &Compare, version: Option<&Version>) -> bool {
    let number = |field: fn(&Version) -> i64| version.map_or(0, field);
    let ordering = match &compare.target {
        CompareTarget::Value(target) => match version {
            Some(version) => version.value.as_slice().cmp(target.as_slice()),
            None => return false,
        },
        CompareTarget::Version(target) => number(|v| v.version).cmp(target),
        CompareTarget::CreateRevision(target) => number(|v| v.create_revision).cmp(target),
        CompareTarget::ModRevision(target) => number(|v| v.mod_revision).cmp(target),
        CompareTarget::Lease(target) => number(|v| v.lease).cmp(target),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// The writes one txn branch may make, gathered to refuse a key written twice.
#[derive(Default)]
struct BranchWrites {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<KeyRange>,
}

impl BranchWrites {
    /// A key some put in `self` writes that `other` also writes, if any.
    fn conflict_with(&self, other: &BranchWrites) -> Option<Vec<u8>> {
        for key in &other.puts {
            if self.puts.contains(key) || self.deletes.iter().any(|range| range.contains(key)) {
                return Some(key.clone());
            }
        }
        for range in &other.deletes {
            if range.is_empty() {
                continue;
            }
            if let Some(key) = self.puts.range::<[u8], _>(range.bounds()).next() {
                return Some(key.clone());
            }
        }
        None
    }

    fn absorb(&mut self, other: BranchWrites) {
        self.puts.extend(other.puts);
        self.deletes.extend(other.deletes);
    }
}

/// Which branch each txn on the executed path takes, decided before anything is
/// written (etcd evaluates nested compares up front too).
struct TxnPlan {
    succeeded: bool,
    /// One plan per `Txn` op in the chosen branch, in order.
    nested: Vec<TxnPlan>,
}

/// etcd v3's key-value state machine. See the module documentation for the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mvcc {
    limits: Limits,
    current_revision: i64,
    /// 0 until the first compaction.
    compacted_revision: i64,
    /// Per key, its versions in ascending `mod_revision`; a key whose whole history was
    /// compacted away is removed.
    history: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Per revision above the compaction, the keys it changed in execution order. The
    /// versions themselves live in `history`, so events are rebuilt from there rather
    /// than stored twice.
    changes: BTreeMap<i64, Vec<Vec<u8>>>,
    leases: BTreeMap<i64, Lease>,
    /// What changed since the member last wrote the state to its storage (not state:
    /// bookkeeping for `super::checkpoint`).
    #[serde(skip)]
    dirty: Dirty,
}

/// What changed in an [`Mvcc`] since [`Mvcc::take_dirty`] was last called, in the
/// order it happened: what the member writes to (and deletes from) its storage.
#[derive(Clone, Debug, Default)]
pub struct Dirty {
    /// Versions written, as (key, mod_revision).
    pub written: Vec<(Vec<u8>, i64)>,
    /// Versions a compaction dropped, as (key, mod_revision).
    pub dropped: Vec<(Vec<u8>, i64)>,
    /// Change-log revisions a compaction dropped.
    pub dropped_revisions: Vec<i64>,
    /// A lease was granted or revoked.
    pub leases: bool,
}

/// Two stores are equal by their state; what is still to be persisted is not state.
impl PartialEq for Dirty {
    fn eq(&self, _other: &Dirty) -> bool {
        true
    }
}

impl Mvcc {
    /// An empty store at revision 1.
    ///
    /// # Panics
    /// If `limits` do not validate: they are configuration, which the actor validates
    /// before it builds a store.
    pub fn new(limits: Limits) -> Self {
        if let Err(reason) = limits.validate() {
            panic!("store limits must be validated before use: {reason}");
        }
        Mvcc {
            limits,
            current_revision: 1,
            compacted_revision: 0,
            history: BTreeMap::new(),
            changes: BTreeMap::new(),
            leases: BTreeMap::new(),
            dirty: Dirty::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, 0 before any.
    pub fn compacted_revision(&self) -> i64 {
        self.compacted_revision
    }

    /// How many keys exist at the current revision.
    pub fn key_count(&self) -> usize {
        self.history
            .values()
            .filter(|versions| {
                versions
                    .last()
                    .is_some_and(|version| !version.is_tombstone())
            })
            .count()
    }

    // ---- reads ----------------------------------------------------------------------

    /// Reads keys at `request.revision` (0: the current one). Refused with `Compacted`
    /// below the compaction revision and `FutureRevision` above the current one.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, StoreError> {
        self.check_range_request(request)?;
        self.check_request_size(request)?;
        self.check_read_revision(request.revision)?;
        Ok(self.range_at(request, self.current_revision))
    }

    /// Serves a checked range, reading at `request.revision` or else `view_revision`.
    fn range_at(&self, request: &RangeRequest, view_revision: i64) -> RangeResponse {
        let revision = if request.revision == 0 {
            view_revision
        } else {
            request.revision
        };
        let mut response = RangeResponse {
            header_revision: self.current_revision,
            kvs: Vec::new(),
            more: false,
            count: 0,
        };
        let range = KeyRange::new(&request.key, &request.range_end);
        if range.is_empty() {
            return response;
        }
        // A negative limit was refused by the checks; 0 means no limit.
        let limit = usize::try_from(request.limit).unwrap_or(0);
        for (key, versions) in self.history.range::<[u8], _>(range.bounds()) {
            let Some(version) = live_at(versions, revision) else {
                continue;
            };
            response.count += 1;
            if request.count_only {
                continue;
            }
            if limit != 0 && response.kvs.len() >= limit {
                response.more = true;
                continue;
            }
            let mut kv = version.key_value(key);
            if request.keys_only {
                kv.value = Vec::new();
            }
            response.kvs.push(kv);
        }
        response
    }

    /// The change events with `mod_revision >= start_revision` on the keys selected by
    /// `key`/`range_end`, in revision order and, within a revision, in execution
    /// order; each carries `prev_kv`. This is how a watch catches up.
    ///
    /// `start_revision` 0 means "from the oldest retained change". A start at or below
    /// the compaction revision is refused with `Compacted`: the events there (or their
    /// `prev_kv`) are gone. At most `limit` events are returned, so fewer than `limit`
    /// means the caller has caught up; a full batch may end partway through a revision
    /// (a caller that resumes by revision drops that last revision's events and asks
    /// again from it).
    pub fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if start_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "start revision must not be negative, got {start_revision}"
            )));
        }
        self.check_key(key)?;
        self.check_range_end(range_end)?;
        if start_revision > 0 && start_revision <= self.compacted_revision {
            return Err(StoreError::Compacted {
                requested: start_revision,
                compacted: self.compacted_revision,
            });
        }
        let range = KeyRange::new(key, range_end);
        let mut events = Vec::new();
        if range.is_empty() || limit == 0 {
            return Ok(events);
        }
        let first = start_revision.max(self.compacted_revision + 1);
        let changed = self.changes.range(first..).flat_map(|(&revision, keys)| {
            keys.iter()
                .filter(|changed| range.contains(changed))
                .map(move |changed| (revision, changed))
        });
        for (revision, changed) in changed.take(limit) {
            events.push(self.event_at(changed, revision));
        }
        Ok(events)
    }

    /// Rebuilds the event for `key`'s change at `revision` from its history.
    fn event_at(&self, key: &[u8], revision: i64) -> Event {
        let versions = self
            .history
            .get(key)
            .unwrap_or_else(|| panic!("change log names key {key:?} with no history"));
        let index = versions.partition_point(|version| version.mod_revision < revision);
        let version = versions
            .get(index)
            .filter(|version| version.mod_revision == revision)
            .unwrap_or_else(|| {
                panic!("change log names key {key:?} at {revision}, not in history")
            });
        let prev_kv = index
            .checked_sub(1)
            .map(|before| &versions[before])
            .filter(|before| !before.is_tombstone())
            .map(|before| before.key_value(key));
        event_for(key, version, prev_kv)
    }

    // ---- writes ---------------------------------------------------------------------

    /// Writes one key at a new revision.
    pub fn put(&mut self, request: &PutRequest) -> Result<(PutResponse, Vec<Event>), StoreError> {
        self.check_put_request(request)?;
        self.check_request_size(request)?;
        self.check_put_state(request)?;
        let revision = self.current_revision + 1;
        let mut events = Vec::new();
        let mut response = self.apply_put(request, revision, &mut events);
        self.current_revision = revision;
        response.header_revision = revision;
        Ok((response, events))
    }

    /// Deletes every existing key in the range at one new revision; deleting nothing
    /// takes no revision.
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), StoreError> {
        self.check_delete_request(request)?;
        self.check_request_size(request)?;
        let revision = self.current_revision + 1;
        let mut events = Vec::new();
        let mut response = self.apply_delete_range(request, revision, &mut events);
        if !events.is_empty() {
            self.current_revision = revision;
        }
        response.header_revision = self.current_revision;
        Ok((response, events))
    }

    /// Runs a transaction: compares (all at the current revision, nested ones too),
    /// then the chosen branch's ops in order as one write at one revision. Reads inside
    /// see the txn's own earlier writes. Every response inside carries the txn's
    /// header revision: the new revision if anything changed, else the current one.
    pub fn txn(&mut self, request: &TxnRequest) -> Result<(TxnResponse, Vec<Event>), StoreError> {
        self.check_txn_request(request, 1)?;
        self.check_request_size(request)?;
        let plan = self.plan_txn(request);
        self.check_txn_state(request, &plan)?;
        let revision = self.current_revision + 1;
        let mut events = Vec::new();
        let mut response = self.apply_txn(request, &plan, revision, &mut events);
        if !events.is_empty() {
            self.current_revision = revision;
        }
        set_txn_header(&mut response, self.current_revision);
        Ok((response, events))
    }

    /// Runs a read-only transaction ([`TxnRequest::is_read_only`]) without writing: the
    /// same checks, compares and ranges as [`Mvcc::txn`], which would give the same
    /// answer and change nothing. Refused (`InvalidTxn`) for a txn that writes.
    pub fn txn_read(&self, request: &TxnRequest) -> Result<TxnResponse, StoreError> {
        if !request.is_read_only() {
            return Err(StoreError::Invalid(
                "a txn that writes cannot be served as a read".into(),
            ));
        }
        self.check_txn_request(request, 1)?;
        self.check_request_size(request)?;
        let plan = self.plan_txn(request);
        self.check_txn_state(request, &plan)?;
        let ops = if plan.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let responses = ops
            .iter()
            .filter_map(|op| match op {
                RequestOp::Range(range) => Some(ResponseOp::Range(
                    self.range_at(range, self.current_revision),
                )),
                // is_read_only admitted ranges only.
                _ => None,
            })
            .collect();
        let mut response = TxnResponse {
            header_revision: self.current_revision,
            succeeded: plan.succeeded,
            responses,
        };
        set_txn_header(&mut response, self.current_revision);
        Ok(response)
    }

    /// Forgets history not needed to read at `revision` or later, and the change log up
    /// to it. Refused at or below the current compaction (`Compacted`) and above the
    /// current revision (`FutureRevision`).
    pub fn compact(&mut self, revision: i64) -> Result<(), StoreError> {
        if revision < 1 {
            return Err(StoreError::Invalid(format!(
                "compaction revision must be at least 1, got {revision}"
            )));
        }
        if revision <= self.compacted_revision {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted_revision,
            });
        }
        if revision > self.current_revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision,
            });
        }
        for (key, versions) in self.history.iter_mut() {
            let after = versions.partition_point(|version| version.mod_revision <= revision);
            let Some(newest_kept) = after.checked_sub(1) else {
                continue;
            };
            // The newest version at or below the compaction is what reads at it see;
            // a tombstone there reads the same as no history at all.
            let keep_from = if versions[newest_kept].is_tombstone() {
                after
            } else {
                newest_kept
            };
            for dropped in versions.drain(..keep_from) {
                self.dirty.dropped.push((key.clone(), dropped.mod_revision));
            }
        }
        self.history.retain(|_, versions| !versions.is_empty());
        let kept = self.changes.split_off(&(revision + 1));
        let dropped = std::mem::replace(&mut self.changes, kept);
        self.dirty.dropped_revisions.extend(dropped.into_keys());
        self.compacted_revision = revision;
        Ok(())
    }

    // ---- leases ---------------------------------------------------------------------

    /// Records a lease. The actor chooses `id` (> 0) and tracks its expiry.
    pub fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<(), StoreError> {
        if id <= 0 {
            return Err(StoreError::Invalid(format!(
                "lease id must be at least 1, got {id}"
            )));
        }
        if ttl_seconds <= 0 {
            return Err(StoreError::Invalid(format!(
                "lease TTL must be at least 1 second, got {ttl_seconds}"
            )));
        }
        if self.leases.contains_key(&id) {
            return Err(StoreError::LeaseExists(id));
        }
        self.leases.insert(
            id,
            Lease {
                ttl_seconds,
                keys: BTreeSet::new(),
            },
        );
        self.dirty.leases = true;
        Ok(())
    }

    /// Removes a lease and deletes every key attached to it, in key order, at one new
    /// revision (none if no key was attached). Returns the revision after the revoke.
    pub fn lease_revoke(&mut self, id: i64) -> Result<(i64, Vec<Event>), StoreError> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(StoreError::LeaseNotFound(id));
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let revision = self.current_revision + 1;
        let mut events = Vec::new();
        for key in &keys {
            let deleted = self.delete_key(key, revision, &mut events);
            assert!(
                deleted.is_some(),
                "lease {id} lists {key:?}, which does not exist"
            );
        }
        self.leases.remove(&id);
        self.dirty.leases = true;
        if !events.is_empty() {
            self.current_revision = revision;
        }
        Ok((self.current_revision, events))
    }

    /// The TTL a lease was granted with, if it exists.
    pub fn lease_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|lease| lease.ttl_seconds)
    }

    /// The keys attached to a lease, in key order (none if it does not exist).
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|lease| lease.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every lease as `(id, ttl_seconds)`, by id.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases
            .iter()
            .map(|(&id, lease)| (id, lease.ttl_seconds))
            .collect()
    }

    // ---- persistence in parts (see `super::checkpoint`) ------------------------------

    /// What changed since the last call, and forgets it: the member writes exactly
    /// these parts to its storage.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// One version (`key` at `mod_revision`) as stored bytes, if it is still held.
    pub fn version_bytes(&self, key: &[u8], mod_revision: i64) -> Option<Vec<u8>> {
        let versions = self.history.get(key)?;
        let at = versions
            .binary_search_by_key(&mod_revision, |version| version.mod_revision)
            .ok()?;
        // As in `snapshot`: encoding an in-memory struct with bincode cannot fail.
        Some(bincode::serialize(&versions[at]).expect("bincode encodes a version"))
    }

    /// Every version held as (key, mod_revision, stored bytes), in key then revision
    /// order.
    pub fn all_versions(&self) -> impl Iterator<Item = (&[u8], i64, Vec<u8>)> + '_ {
        self.history.iter().flat_map(|(key, versions)| {
            versions.iter().map(move |version| {
                let bytes = bincode::serialize(version).expect("bincode encodes a version");
                (key.as_slice(), version.mod_revision, bytes)
            })
        })
    }

    /// The keys the change log holds for `revision`, in execution order.
    pub fn changes_at(&self, revision: i64) -> Option<&[Vec<u8>]> {
        self.changes.get(&revision).map(Vec::as_slice)
    }

    /// The change log's revisions above `after`, each with the keys it changed in
    /// execution order.
    pub fn changes_after(&self, after: i64) -> impl Iterator<Item = (i64, &[Vec<u8>])> + '_ {
        self.changes
            .range(after + 1..)
            .map(|(&revision, keys)| (revision, keys.as_slice()))
    }

    /// Rebuilds a store from its stored parts (what `super::checkpoint` wrote): the
    /// revisions, every key's versions' bytes (in revision order), the change log and
    /// the leases' TTLs. The keys attached to each lease follow from the histories.
    /// Refused, as `restore` refuses, when the parts do not decode or describe an
    /// inconsistent store.
    pub fn from_parts(
        limits: Limits,
        current_revision: i64,
        compacted_revision: i64,
        histories: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
        changes: BTreeMap<i64, Vec<Vec<u8>>>,
        lease_ttls: Vec<(i64, i64)>,
    ) -> Result<Mvcc, StoreError> {
        limits
            .validate()
            .map_err(|reason| StoreError::Invalid(format!("stored store limits: {reason}")))?;
        let mut leases: BTreeMap<i64, Lease> = lease_ttls
            .into_iter()
            .map(|(id, ttl_seconds)| {
                let lease = Lease {
                    ttl_seconds,
                    keys: BTreeSet::new(),
                };
                (id, lease)
            })
            .collect();
        let mut history = BTreeMap::new();
        for (key, stored) in histories {
            let mut versions = Vec::with_capacity(stored.len());
            for bytes in stored {
                let version: Version = bincode::deserialize(&bytes).map_err(|error| {
                    StoreError::Invalid(format!(
                        "a stored version of {key:?} does not decode: {error}"
                    ))
                })?;
                versions.push(version);
            }
            if let Some(latest) = versions
                .last()
                .filter(|v| v.lease != 0 && !v.is_tombstone())
            {
                let Some(lease) = leases.get_mut(&latest.lease) else {
                    return Err(StoreError::Invalid(format!(
                        "stored key {key:?} names lease {}, which is not stored",
                        latest.lease
                    )));
                };
                lease.keys.insert(key.clone());
            }
            history.insert(key, versions);
        }
        let store = Mvcc {
            limits,
            current_revision,
            compacted_revision,
            history,
            changes,
            leases,
            dirty: Dirty::default(),
        };
        store.check_invariants().map_err(|reason| {
            StoreError::Invalid(format!("inconsistent stored store: {reason}"))
        })?;
        Ok(store)
    }

    // ---- snapshots ------------------------------------------------------------------

    /// The whole state (limits included), bincode-encoded behind a format number.
    pub fn snapshot(&self) -> Vec<u8> {
        // Serializing owned maps, vectors and integers with bincode cannot fail: it
        // fails only for sequences of unknown length, which derived impls never emit.
        bincode::serialize(&(SNAPSHOT_FORMAT, self)).expect("bincode encodes the store")
    }

    /// Rebuilds a store from [`Mvcc::snapshot`]'s bytes, refusing bytes that do not
    /// decode or describe an inconsistent store (they came from a disk or a peer).
    pub fn restore(bytes: &[u8]) -> Result<Mvcc, StoreError> {
        let (format, store): (u32, Mvcc) = bincode::deserialize(bytes)
            .map_err(|error| StoreError::Invalid(format!("undecodable store snapshot: {error}")))?;
        if format != SNAPSHOT_FORMAT {
            return Err(StoreError::Invalid(format!(
                "store snapshot format {format} is not the supported format {SNAPSHOT_FORMAT}"
            )));
        }
        store
            .limits
            .validate()
            .map_err(|reason| StoreError::Invalid(format!("store snapshot: {reason}")))?;
        store.check_invariants().map_err(|reason| {
            StoreError::Invalid(format!("inconsistent store snapshot: {reason}"))
        })?;
        Ok(store)
    }

    /// A stable 64-bit FNV-1a hash of the applied state (revisions, history, change log,
    /// leases; not the limits), equal on members that applied the same requests.
    pub fn digest(&self) -> u64 {
        let state = (
            self.current_revision,
            self.compacted_revision,
            &self.history,
            &self.changes,
            &self.leases,
        );
        // As in `snapshot`: encoding in-memory collections with bincode cannot fail.
        let bytes = bincode::serialize(&state).expect("bincode encodes the store");
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
    }

    /// Checks every structural promise the store makes about itself; `restore` uses it
    /// on foreign bytes and tests after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.current_revision < 1 {
            return Err(format!("revision {} is below 1", self.current_revision));
        }
        if self.compacted_revision < 0 || self.compacted_revision > self.current_revision {
            return Err(format!(
                "compaction revision {} outside 0..={}",
                self.compacted_revision, self.current_revision
            ));
        }
        let mut versions_after_compaction = 0usize;
        for (key, versions) in &self.history {
            if key.is_empty() {
                return Err("an empty key is stored".into());
            }
            if versions.is_empty() {
                return Err(format!("key {key:?} has no versions"));
            }
            let mut previous: Option<&Version> = None;
            for version in versions {
                check_version(key, previous, version, self)?;
                if version.mod_revision > self.compacted_revision {
                    versions_after_compaction += 1;
                }
                previous = Some(version);
            }
            if let Some(latest) = versions.last().filter(|latest| latest.lease != 0) {
                if latest.is_tombstone() {
                    return Err(format!("deleted key {key:?} keeps lease {}", latest.lease));
                }
                let attached = self
                    .leases
                    .get(&latest.lease)
                    .is_some_and(|lease| lease.keys.contains(key));
                if !attached {
                    return Err(format!(
                        "key {key:?} names lease {}, which does not list it",
                        latest.lease
                    ));
                }
            }
        }
        let mut logged = 0usize;
        for (&revision, keys) in &self.changes {
            if revision <= self.compacted_revision || revision > self.current_revision {
                return Err(format!("change log holds revision {revision} out of range"));
            }
            if keys.is_empty() {
                return Err(format!("change log holds an empty revision {revision}"));
            }
            let distinct: BTreeSet<&Vec<u8>> = keys.iter().collect();
            if distinct.len() != keys.len() {
                return Err(format!("revision {revision} changes a key twice"));
            }
            for key in keys {
                let recorded = self.history.get(key).is_some_and(|versions| {
                    versions
                        .binary_search_by_key(&revision, |version| version.mod_revision)
                        .is_ok()
                });
                if !recorded {
                    return Err(format!(
                        "change log names {key:?} at {revision}, which history lacks"
                    ));
                }
            }
            logged += keys.len();
        }
        // Every logged change is a distinct version above the compaction, so equal
        // counts mean the log names every such version.
        if logged != versions_after_compaction {
            return Err(format!(
                "change log names {logged} changes, history holds {versions_after_compaction}"
            ));
        }
        for (&id, lease) in &self.leases {
            if id <= 0 || lease.ttl_seconds <= 0 {
                return Err(format!("lease {id} has id or ttl below 1"));
            }
            for key in &lease.keys {
                let live_with_lease = self
                    .history
                    .get(key)
                    .and_then(|versions| versions.last())
                    .is_some_and(|latest| !latest.is_tombstone() && latest.lease == id);
                if !live_with_lease {
                    return Err(format!(
                        "lease {id} lists {key:?}, which is not attached to it"
                    ));
                }
            }
        }
        Ok(())
    }

    // ---- checks (no mutation) -------------------------------------------------------

    fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(StoreError::KeyTooLarge {
                size: key.len(),
                limit: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    fn check_range_end(&self, range_end: &[u8]) -> Result<(), StoreError> {
        if range_end.len() > self.limits.max_key_bytes {
            return Err(StoreError::KeyTooLarge {
                size: range_end.len(),
                limit: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    fn check_request_size<T: Serialize>(&self, request: &T) -> Result<(), StoreError> {
        let size = bincode::serialized_size(request)
            .map_err(|error| StoreError::Invalid(format!("unmeasurable request: {error}")))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > self.limits.max_request_bytes {
            return Err(StoreError::RequestTooLarge {
                size,
                limit: self.limits.max_request_bytes,
            });
        }
        Ok(())
    }

    /// A read at `revision` (0: current) must not be below the compaction or above the
    /// current revision.
    fn check_read_revision(&self, revision: i64) -> Result<(), StoreError> {
        if revision > self.current_revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision,
            });
        }
        if revision > 0 && revision < self.compacted_revision {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted_revision,
            });
        }
        Ok(())
    }

    fn check_range_request(&self, request: &RangeRequest) -> Result<(), StoreError> {
        self.check_key(&request.key)?;
        self.check_range_end(&request.range_end)?;
        if request.limit < 0 {
            return Err(StoreError::Invalid(format!(
                "range limit must not be negative (0 means no limit), got {}",
                request.limit
            )));
        }
        if request.revision < 0 {
            return Err(StoreError::Invalid(format!(
                "range revision must not be negative (0 means current), got {}",
                request.revision
            )));
        }
        Ok(())
    }

    fn check_put_request(&self, request: &PutRequest) -> Result<(), StoreError> {
        self.check_key(&request.key)?;
        if request.value.len() > self.limits.max_value_bytes {
            return Err(StoreError::ValueTooLarge {
                size: request.value.len(),
                limit: self.limits.max_value_bytes,
            });
        }
        if request.ignore_value && !request.value.is_empty() {
            return Err(StoreError::Invalid(
                "a put with ignore_value must not carry a value".into(),
            ));
        }
        if request.ignore_lease && request.lease != 0 {
            return Err(StoreError::Invalid(
                "a put with ignore_lease must not name a lease".into(),
            ));
        }
        Ok(())
    }

    /// What a put needs from the current state: its lease, and the key itself when it
    /// keeps the key's value or lease. Within a txn this is checked before any op runs;
    /// that is exact because no other op in the txn may touch the same key.
    fn check_put_state(&self, request: &PutRequest) -> Result<(), StoreError> {
        if request.lease != 0 && !self.leases.contains_key(&request.lease) {
            return Err(StoreError::LeaseNotFound(request.lease));
        }
        if request.ignore_value || request.ignore_lease {
            let exists = self
                .history
                .get(&request.key)
                .and_then(|versions| versions.last())
                .is_some_and(|latest| !latest.is_tombstone());
            if !exists {
                return Err(StoreError::KeyNotFound {
                    key: request.key.clone(),
                });
            }
        }
        Ok(())
    }

    fn check_delete_request(&self, request: &DeleteRangeRequest) -> Result<(), StoreError> {
        self.check_key(&request.key)?;
        self.check_range_end(&request.range_end)
    }

    /// Everything about a txn that does not depend on the state: nesting, op counts,
    /// each op's own checks, and that no execution path writes a key twice (etcd's
    /// "duplicate key given in txn request"). Returns the writes either branch may make.
    fn check_txn_request(
        &self,
        request: &TxnRequest,
        depth: usize,
    ) -> Result<BranchWrites, StoreError> {
        if depth > self.limits.max_txn_depth {
            return Err(StoreError::TxnTooDeep {
                limit: self.limits.max_txn_depth,
            });
        }
        let count = request
            .compare
            .len()
            .max(request.success.len())
            .max(request.failure.len());
        if count > self.limits.max_txn_ops {
            return Err(StoreError::TooManyOps {
                count,
                limit: self.limits.max_txn_ops,
            });
        }
        for compare in &request.compare {
            self.check_key(&compare.key)?;
            self.check_range_end(&compare.range_end)?;
        }
        // The two branches never both run, so each is checked on its own and the same
        // key may be written in both.
        let mut writes = self.check_branch(&request.success, depth)?;
        writes.absorb(self.check_branch(&request.failure, depth)?);
        Ok(writes)
    }

    /// Checks one branch's ops. Ops of one branch all run together, so any write of one
    /// op that meets a write of an earlier op is a duplicate; only the two branches of a
    /// nested txn are exclusive, and `check_txn_request` already keeps those apart.
    fn check_branch(&self, ops: &[RequestOp], depth: usize) -> Result<BranchWrites, StoreError> {
        let mut branch = BranchWrites::default();
        for op in ops {
            let writes = match op {
                RequestOp::Range(request) => {
                    self.check_range_request(request)?;
                    continue;
                }
                RequestOp::Put(request) => {
                    self.check_put_request(request)?;
                    BranchWrites {
                        puts: BTreeSet::from([request.key.clone()]),
                        deletes: Vec::new(),
                    }
                }
                RequestOp::DeleteRange(request) => {
                    self.check_delete_request(request)?;
                    BranchWrites {
                        puts: BTreeSet::new(),
                        deletes: vec![KeyRange::new(&request.key, &request.range_end)],
                    }
                }
                RequestOp::Txn(request) => self.check_txn_request(request, depth + 1)?,
            };
            if let Some(key) = branch.conflict_with(&writes) {
                return Err(StoreError::DuplicateKeyInTxn { key });
            }
            branch.absorb(writes);
        }
        Ok(branch)
    }

    /// Evaluates the compares of `request` and of every txn nested in the branch it
    /// takes, all at the current revision.
    fn plan_txn(&self, request: &TxnRequest) -> TxnPlan {
        let succeeded = request
            .compare
            .iter()
            .all(|compare| self.compare_holds(compare));
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let nested = ops
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(inner) => Some(self.plan_txn(inner)),
                _ => None,
            })
            .collect();
        TxnPlan { succeeded, nested }
    }

    fn compare_holds(&self, compare: &Compare) -> bool {
        let range = KeyRange::new(&compare.key, &compare.range_end);
        if range.is_empty() {
            return compare_holds_for(compare, None);
        }
        let mut any_key = false;
        for versions in self
            .history
            .range::<[u8], _>(range.bounds())
            .map(|(_, v)| v)
        {
            let Some(latest) = versions.last().filter(|latest| !latest.is_tombstone()) else {
                continue;
            };
            any_key = true;
            if !compare_holds_for(compare, Some(latest)) {
                return false;
            }
        }
        any_key || compare_holds_for(compare, None)
    }

    /// The state checks of every op on the planned path, against the state before the
    /// txn (exact, since no two ops on a path touch the same key).
    fn check_txn_state(&self, request: &TxnRequest, plan: &TxnPlan) -> Result<(), StoreError> {
        let ops = if plan.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested = plan.nested.iter();
        for op in ops {
            match op {
                RequestOp::Range(range) => self.check_read_revision(range.revision)?,
                RequestOp::Put(put) => self.check_put_state(put)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => {
                    let inner_plan = nested
                        .next()
                        .expect("the plan has one entry per nested txn");
                    self.check_txn_state(inner, inner_plan)?;
                }
            }
        }
        Ok(())
    }

    // ---- applying (checked requests only; cannot fail) ------------------------------

    /// Applies the planned path of a checked txn at `revision`.
    fn apply_txn(
        &mut self,
        request: &TxnRequest,
        plan: &TxnPlan,
        revision: i64,
        events: &mut Vec<Event>,
    ) -> TxnResponse {
        let ops = if plan.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested = plan.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                RequestOp::Range(range) => {
                    // Reads see this txn's earlier writes, as etcd's do.
                    let view = if events.is_empty() {
                        self.current_revision
                    } else {
                        revision
                    };
                    ResponseOp::Range(self.range_at(range, view))
                }
                RequestOp::Put(put) => ResponseOp::Put(self.apply_put(put, revision, events)),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.apply_delete_range(delete, revision, events))
                }
                RequestOp::Txn(inner) => {
                    let inner_plan = nested
                        .next()
                        .expect("the plan has one entry per nested txn");
                    ResponseOp::Txn(self.apply_txn(inner, inner_plan, revision, events))
                }
            };
            responses.push(response);
        }
        TxnResponse {
            header_revision: revision,
            succeeded: plan.succeeded,
            responses,
        }
    }

    /// Writes a checked put at `revision`; the caller sets the header revision.
    fn apply_put(
        &mut self,
        request: &PutRequest,
        revision: i64,
        events: &mut Vec<Event>,
    ) -> PutResponse {
        let versions = self.history.entry(request.key.clone()).or_default();
        if let Some(latest) = versions.last() {
            // The txn checks refuse a second write to one key in one revision.
            assert!(
                latest.mod_revision < revision,
                "key {:?} written twice at revision {revision}",
                request.key
            );
        }
        let previous = versions
            .last()
            .filter(|latest| !latest.is_tombstone())
            .cloned();
        let value = match (&previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (&previous, request.ignore_lease) {
            (Some(previous), true) => previous.lease,
            _ => request.lease,
        };
        let (create_revision, version) = match &previous {
            Some(previous) => (previous.create_revision, previous.version + 1),
            None => (revision, 1),
        };
        let written = Version {
            mod_revision: revision,
            create_revision,
            version,
            value,
            lease,
        };
        versions.push(written.clone());
        let previous_lease = previous.as_ref().map_or(0, |previous| previous.lease);
        if previous_lease != lease {
            self.detach(&request.key, previous_lease);
            if lease != 0 {
                self.leases
                    .get_mut(&lease)
                    .expect("a put's lease was checked to exist")
                    .keys
                    .insert(request.key.clone());
            }
        }
        self.log_change(&request.key, revision);
        let prev_kv = previous.map(|previous| previous.key_value(&request.key));
        events.push(event_for(&request.key, &written, prev_kv.clone()));
        PutResponse {
            header_revision: revision,
            prev_kv: if request.prev_kv { prev_kv } else { None },
        }
    }

    /// Deletes a checked range at `revision`; the caller sets the header revision.
    fn apply_delete_range(
        &mut self,
        request: &DeleteRangeRequest,
        revision: i64,
        events: &mut Vec<Event>,
    ) -> DeleteRangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let doomed: Vec<Vec<u8>> = if range.is_empty() {
            Vec::new()
        } else {
            self.history
                .range::<[u8], _>(range.bounds())
                .filter(|(_, versions)| {
                    versions.last().is_some_and(|latest| !latest.is_tombstone())
                })
                .map(|(key, _)| key.clone())
                .collect()
        };
        let mut prev_kvs = Vec::new();
        for key in &doomed {
            let previous = self
                .delete_key(key, revision, events)
                .expect("the key was live a moment ago");
            if request.prev_kv {
                prev_kvs.push(previous);
            }
        }
        DeleteRangeResponse {
            header_revision: revision,
            deleted: doomed.len() as i64,
            prev_kvs,
        }
    }

    /// Tombstones `key` at `revision` if it is live, returning its last state.
    fn delete_key(
        &mut self,
        key: &[u8],
        revision: i64,
        events: &mut Vec<Event>,
    ) -> Option<KeyValue> {
        let versions = self.history.get_mut(key)?;
        let previous = versions
            .last()
            .filter(|latest| !latest.is_tombstone())?
            .clone();
        assert!(
            previous.mod_revision < revision,
            "key {key:?} written twice at revision {revision}"
        );
        let tombstone = Version {
            mod_revision: revision,
            create_revision: 0,
            version: 0,
            value: Vec::new(),
            lease: 0,
        };
        versions.push(tombstone.clone());
        self.detach(key, previous.lease);
        self.log_change(key, revision);
        let prev_kv = previous.key_value(key);
        events.push(event_for(key, &tombstone, Some(prev_kv.clone())));
        Some(prev_kv)
    }

    /// Removes `key` from `lease`'s keys (nothing for lease 0).
    fn detach(&mut self, key: &[u8], lease: i64) {
        if lease == 0 {
            return;
        }
        let removed = self
            .leases
            .get_mut(&lease)
            .is_some_and(|entry| entry.keys.remove(key));
        assert!(
            removed,
            "key {key:?} claimed lease {lease}, which did not list it"
        );
    }

    /// Records that `key` changed at `revision`: every change of history but
    /// compaction's goes through here.
    fn log_change(&mut self, key: &[u8], revision: i64) {
        self.changes.entry(revision).or_default().push(key.to_vec());
        self.dirty.written.push((key.to_vec(), revision));
    }
}

/// The event a version records: a put with the full key-value, or a delete carrying
/// only the key and the deleting revision.
fn event_for(key: &[u8], version: &Version, prev_kv: Option<KeyValue>) -> Event {
    let kind = if version.is_tombstone() {
        EventType::Delete
    } else {
        EventType::Put
    };
    Event {
        kind,
        kv: version.key_value(key),
        prev_kv,
    }
}

/// Every response in a txn reports the txn's header revision.
fn set_txn_header(response: &mut TxnResponse, header_revision: i64) {
    response.header_revision = header_revision;
    for inner in &mut response.responses {
        match inner {
            ResponseOp::Range(range) => range.header_revision = header_revision,
            ResponseOp::Put(put) => put.header_revision = header_revision,
            ResponseOp::DeleteRange(delete) => delete.header_revision = header_revision,
            ResponseOp::Txn(txn) => set_txn_header(txn, header_revision),
        }
    }
}

/// One version's promises, given the one before it (if retained).
fn check_version(
    key: &[u8],
    previous: Option<&Version>,
    version: &Version,
    store: &Mvcc,
) -> Result<(), String> {
    let at = version.mod_revision;
    if at < 1 || at > store.current_revision {
        return Err(format!(
            "key {key:?} has a version at revision {at}, out of range"
        ));
    }
    if version.is_tombstone() {
        if version.create_revision != 0 || version.lease != 0 || !version.value.is_empty() {
            return Err(format!("key {key:?} has a tombstone with data at {at}"));
        }
        if !matches!(previous, Some(before) if !before.is_tombstone()) {
            return Err(format!(
                "key {key:?} is deleted at {at} without being live before"
            ));
        }
        if at <= store.compacted_revision {
            return Err(format!(
                "key {key:?} keeps a tombstone at {at}, below the compaction"
            ));
        }
    } else if version.version < 1 || version.create_revision < 1 || version.create_revision > at {
        return Err(format!("key {key:?} has a malformed version at {at}"));
    }
    if let Some(previous) = previous {
        if previous.mod_revision >= at {
            return Err(format!("key {key:?} has versions out of order at {at}"));
        }
        if at <= store.compacted_revision {
            return Err(format!(
                "key {key:?} keeps two versions at or below the compaction"
            ));
        }
        let continues = !previous.is_tombstone() && !version.is_tombstone();
        if continues
            && (version.version != previous.version + 1
                || version.create_revision != previous.create_revision)
        {
            return Err(format!("key {key:?} breaks its version sequence at {at}"));
        }
        if previous.is_tombstone() && (version.version != 1 || version.create_revision != at) {
            return Err(format!(
                "key {key:?} is recreated at {at} without starting over"
            ));
        }
    } else if version.version == 1 && version.create_revision != at {
        return Err(format!(
            "key {key:?} starts at {at} with another create revision"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::prefix_end;
    use proptest::prelude::*;

    fn store() -> Mvcc {
        Mvcc::new(Limits::default())
    }

    fn put_request(key: &[u8], value: &[u8]) -> PutRequest {
        PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..PutRequest::default()
        }
    }

    fn put(store: &mut Mvcc, key: &[u8], value: &[u8]) -> i64 {
        store
            .put(&put_request(key, value))
            .unwrap()
            .0
            .header_revision
    }

    fn delete(store: &mut Mvcc, key: &[u8], range_end: &[u8]) -> (DeleteRangeResponse, Vec<Event>) {
        let request = DeleteRangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            prev_kv: true,
        };
        store.delete_range(&request).unwrap()
    }

    fn range_request(key: &[u8], range_end: &[u8]) -> RangeRequest {
        RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..RangeRequest::default()
        }
    }

    fn get_at(store: &Mvcc, key: &[u8], revision: i64) -> Option<KeyValue> {
        let request = RangeRequest {
            revision,
            ..range_request(key, b"")
        };
        store.range(&request).unwrap().kvs.pop()
    }

    fn keys_of(response: &RangeResponse) -> Vec<Vec<u8>> {
        response.kvs.iter().map(|kv| kv.key.clone()).collect()
    }

    fn compare(key: &[u8], result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            key: key.to_vec(),
            range_end: Vec::new(),
            result,
            target,
        }
    }

    fn txn_succeeds(store: &mut Mvcc, compares: Vec<Compare>) -> bool {
        let request = TxnRequest {
            compare: compares,
            ..TxnRequest::default()
        };
        store.txn(&request).unwrap().0.succeeded
    }

    #[test]
    fn revisions_and_versions_follow_put_put_delete_put() {
        // Each write takes one revision; version counts puts and restarts after a delete.
        let mut store = store();
        assert_eq!(store.current_revision(), 1);
        assert_eq!(put(&mut store, b"a", b"1"), 2);
        let kv = get_at(&store, b"a", 0).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
        assert_eq!(put(&mut store, b"a", b"2"), 3);
        let kv = get_at(&store, b"a", 0).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        let (response, events) = delete(&mut store, b"a", b"");
        assert_eq!((response.header_revision, response.deleted), (4, 1));
        assert_eq!(events[0].kv.mod_revision, 4);
        assert_eq!(get_at(&store, b"a", 0), None);
        assert_eq!(put(&mut store, b"a", b"3"), 5);
        let kv = get_at(&store, b"a", 0).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
        assert_eq!(kv.value, b"3");
        store.check_invariants().unwrap();
    }

    #[test]
    fn range_reads_historical_revisions() {
        // A read at revision r sees exactly the state after revision r's write.
        let mut store = store();
        put(&mut store, b"a", b"1"); // 2
        put(&mut store, b"b", b"1"); // 3
        put(&mut store, b"a", b"2"); // 4
        delete(&mut store, b"b", b""); // 5
        assert_eq!(get_at(&store, b"a", 1), None);
        assert_eq!(get_at(&store, b"a", 2).unwrap().value, b"1");
        assert_eq!(get_at(&store, b"a", 3).unwrap().value, b"1");
        assert_eq!(get_at(&store, b"a", 4).unwrap().value, b"2");
        assert_eq!(get_at(&store, b"b", 4).unwrap().value, b"1");
        assert_eq!(get_at(&store, b"b", 5), None);
        let response = store.range(&range_request(b"a", b"z")).unwrap();
        assert_eq!(response.header_revision, 5);
        let future = RangeRequest {
            revision: 6,
            ..range_request(b"a", b"")
        };
        assert_eq!(
            store.range(&future),
            Err(StoreError::FutureRevision {
                requested: 6,
                current: 5
            })
        );
    }

    #[test]
    fn prefix_and_open_ended_ranges() {
        // prefix_end selects a prefix; [0] as range_end means "from key on"; [0],[0] is all.
        let mut store = store();
        for key in [
            &b"a"[..],
            b"ab",
            b"abc",
            b"ac",
            b"b",
            &[b'a', 0xff],
            &[0xff, 0x01],
        ] {
            put(&mut store, key, b"v");
        }
        let prefix = store
            .range(&range_request(b"ab", &prefix_end(b"ab")))
            .unwrap();
        assert_eq!(keys_of(&prefix), vec![b"ab".to_vec(), b"abc".to_vec()]);
        let from_b = store.range(&range_request(b"b", &[0])).unwrap();
        assert_eq!(keys_of(&from_b), vec![b"b".to_vec(), vec![0xff, 0x01]]);
        let all = store.range(&range_request(&[0], &[0])).unwrap();
        assert_eq!(all.count, 7);
        let under_a = store
            .range(&range_request(b"a", &prefix_end(b"a")))
            .unwrap();
        assert_eq!(under_a.count, 5);
        let all_ff = store
            .range(&range_request(&[0xff], &prefix_end(&[0xff])))
            .unwrap();
        assert_eq!(keys_of(&all_ff), vec![vec![0xff, 0x01]]);
        let backwards = store.range(&range_request(b"b", b"a")).unwrap();
        assert_eq!(backwards.count, 0);
    }

    #[test]
    fn limit_count_and_more() {
        // count is the total before limit; more says limit cut the result.
        let mut store = store();
        for key in [b"a", b"b", b"c", b"d"] {
            put(&mut store, key, b"v");
        }
        let limited = RangeRequest {
            limit: 2,
            ..range_request(b"a", &[0])
        };
        let response = store.range(&limited).unwrap();
        assert_eq!(keys_of(&response), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!((response.count, response.more), (4, true));
        let exact = RangeRequest {
            limit: 4,
            ..limited.clone()
        };
        let response = store.range(&exact).unwrap();
        assert_eq!(
            (response.kvs.len(), response.count, response.more),
            (4, 4, false)
        );
        let unlimited = store.range(&range_request(b"a", &[0])).unwrap();
        assert_eq!((unlimited.kvs.len(), unlimited.more), (4, false));
        let negative = RangeRequest {
            limit: -1,
            ..limited
        };
        assert!(matches!(
            store.range(&negative),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn keys_only_and_count_only() {
        // keys_only drops values but keeps revisions; count_only returns only the count.
        let mut store = store();
        put(&mut store, b"a", b"value");
        put(&mut store, b"b", b"value");
        let keys_only = RangeRequest {
            keys_only: true,
            ..range_request(b"a", b"c")
        };
        let response = store.range(&keys_only).unwrap();
        assert_eq!(response.kvs.len(), 2);
        assert!(response
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1));
        let count_only = RangeRequest {
            count_only: true,
            limit: 1,
            ..range_request(b"a", b"c")
        };
        let response = store.range(&count_only).unwrap();
        assert_eq!(
            (response.kvs.len(), response.count, response.more),
            (0, 2, false)
        );
    }

    #[test]
    fn compaction_refuses_old_and_future_revisions() {
        // Reads below the compaction, compactions at or below it and above current fail.
        let mut store = store();
        for value in [b"1", b"2", b"3", b"4"] {
            put(&mut store, b"a", value); // 2..=5
        }
        assert_eq!(
            store.compact(6),
            Err(StoreError::FutureRevision {
                requested: 6,
                current: 5
            })
        );
        store.compact(3).unwrap();
        assert_eq!(store.compacted_revision(), 3);
        for again in [2, 3] {
            assert_eq!(
                store.compact(again),
                Err(StoreError::Compacted {
                    requested: again,
                    compacted: 3
                })
            );
        }
        let old = RangeRequest {
            revision: 2,
            ..range_request(b"a", b"")
        };
        assert_eq!(
            store.range(&old),
            Err(StoreError::Compacted {
                requested: 2,
                compacted: 3
            })
        );
        // etcd serves a read at the compaction revision itself.
        assert_eq!(get_at(&store, b"a", 3).unwrap().value, b"2");
        assert_eq!(
            store.events_since(3, b"a", b"", 10),
            Err(StoreError::Compacted {
                requested: 3,
                compacted: 3
            })
        );
        let events = store.events_since(4, b"a", b"", 10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].prev_kv.as_ref().unwrap().value, b"2");
        assert!(matches!(store.compact(0), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        // Per key the newest version at the compaction survives unless it is a tombstone.
        let mut store = store();
        put(&mut store, b"kept", b"old"); // 2
        put(&mut store, b"kept", b"new"); // 3
        put(&mut store, b"gone", b"x"); // 4
        delete(&mut store, b"gone", b""); // 5
        put(&mut store, b"later", b"1"); // 6
        put(&mut store, b"later", b"2"); // 7
        let before = store.range(&range_request(&[0], &[0])).unwrap();
        store.compact(6).unwrap();
        store.check_invariants().unwrap();
        assert_eq!(store.range(&range_request(&[0], &[0])).unwrap(), before);
        assert!(!store.history.contains_key(&b"gone"[..]));
        assert_eq!(store.history[&b"kept"[..]].len(), 1);
        assert_eq!(store.history[&b"later"[..]].len(), 2);
        assert_eq!(get_at(&store, b"later", 6).unwrap().value, b"1");
        let kept = get_at(&store, b"kept", 6).unwrap();
        assert_eq!(
            (kept.create_revision, kept.mod_revision, kept.version),
            (2, 3, 2)
        );
        assert_eq!(store.changes.keys().copied().collect::<Vec<_>>(), vec![7]);
        // Writes after compaction continue the version sequence.
        put(&mut store, b"kept", b"newer");
        assert_eq!(get_at(&store, b"kept", 0).unwrap().version, 3);
        store.check_invariants().unwrap();
    }

    #[test]
    fn txn_compares_every_target_including_missing_keys() {
        // Compares read version, create/mod revision, value and lease; a missing key is zeros.
        let mut store = store();
        store.lease_grant(7, 10).unwrap();
        put(&mut store, b"a", b"m"); // 2
        store
            .put(&PutRequest {
                lease: 7,
                ..put_request(b"a", b"n")
            })
            .unwrap(); // 3
        use CompareResult::*;
        use CompareTarget::*;
        let cases = [
            (compare(b"a", Equal, Version(2)), true),
            (compare(b"a", Greater, Version(1)), true),
            (compare(b"a", Less, Version(2)), false),
            (compare(b"a", Equal, CreateRevision(2)), true),
            (compare(b"a", Equal, ModRevision(3)), true),
            (compare(b"a", NotEqual, ModRevision(3)), false),
            (compare(b"a", Equal, Value(b"n".to_vec())), true),
            (compare(b"a", Greater, Value(b"m".to_vec())), true),
            (compare(b"a", Less, Value(b"n".to_vec())), false),
            (compare(b"a", Equal, Lease(7)), true),
            (compare(b"missing", Equal, Version(0)), true),
            (compare(b"missing", Equal, CreateRevision(0)), true),
            (compare(b"missing", Equal, ModRevision(0)), true),
            (compare(b"missing", Equal, Lease(0)), true),
            (compare(b"missing", Equal, Value(Vec::new())), false),
            (compare(b"missing", NotEqual, Value(Vec::new())), false),
        ];
        for (compare, expected) in cases {
            assert_eq!(
                txn_succeeds(&mut store, vec![compare.clone()]),
                expected,
                "{compare:?}"
            );
        }
        put(&mut store, b"b", b"x"); // 4
        let every_key = |result, target| Compare {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            result,
            target,
        };
        assert!(txn_succeeds(
            &mut store,
            vec![every_key(Greater, ModRevision(2))]
        ));
        assert!(!txn_succeeds(
            &mut store,
            vec![every_key(Greater, ModRevision(3))]
        ));
        let empty_range = Compare {
            key: b"x".to_vec(),
            range_end: b"z".to_vec(),
            result: Equal,
            target: Version(0),
        };
        assert!(txn_succeeds(&mut store, vec![empty_range]));
        // All compares must hold.
        assert!(!txn_succeeds(
            &mut store,
            vec![
                compare(b"a", Equal, Version(2)),
                compare(b"b", Equal, Version(2))
            ]
        ));
        assert_eq!(store.current_revision(), 4, "compares never write");
    }

    /// A read-only txn served as a read answers exactly what the same txn applied as a
    /// write does (both branches, historical and compacted ranges included), and a txn
    /// that writes is refused as a read.
    #[test]
    fn read_only_txns_read_as_the_write_path_would() {
        let mut store = store();
        put(&mut store, b"a", b"1"); // 2
        put(&mut store, b"b", b"2"); // 3
        put(&mut store, b"a", b"3"); // 4
        store.compact(3).unwrap();
        use CompareResult::*;
        use CompareTarget::*;
        let reads = |revision| {
            vec![
                RequestOp::Range(range_request(b"a", b"")),
                RequestOp::Range(RangeRequest {
                    revision,
                    ..range_request(b"a", &prefix_end(b"a"))
                }),
                RequestOp::Range(RangeRequest {
                    count_only: true,
                    ..range_request(&[0], &[0])
                }),
            ]
        };
        let cases = [
            (compare(b"a", Equal, ModRevision(4)), 0),
            (compare(b"a", Equal, ModRevision(2)), 0),
            (compare(b"b", Equal, Value(b"2".to_vec())), 4),
            (compare(b"missing", Equal, Version(0)), 3),
            (compare(b"b", Equal, Version(7)), 2),
        ];
        for (compare, revision) in cases {
            let txn = TxnRequest {
                compare: vec![compare.clone()],
                success: reads(revision),
                failure: reads(0)[..1].to_vec(),
            };
            assert!(txn.is_read_only());
            let before = store.digest();
            let read = store.txn_read(&txn);
            assert_eq!(store.digest(), before);
            let mut applied = Mvcc::restore(&store.snapshot()).unwrap();
            let written = applied.txn(&txn).map(|(response, events)| {
                assert!(events.is_empty());
                response
            });
            assert!(read.is_ok(), "{compare:?} at {revision}: {read:?}");
            assert_eq!(read, written, "{compare:?} at {revision}");
        }
        // A revision below the compaction fails the same way on both paths.
        let compacted = TxnRequest {
            success: reads(2),
            ..TxnRequest::default()
        };
        let answer = store.txn_read(&compacted);
        assert!(
            matches!(answer, Err(StoreError::Compacted { .. })),
            "{answer:?}"
        );
        let writes = TxnRequest {
            success: vec![RequestOp::Put(put_request(b"c", b"x"))],
            ..TxnRequest::default()
        };
        assert!(!writes.is_read_only());
        assert!(matches!(
            store.txn_read(&writes),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn txn_reads_its_own_writes() {
        // A range after a put or delete in the same txn sees the new state.
        let mut store = store();
        put(&mut store, b"gone", b"x"); // 2
        let request = TxnRequest {
            compare: Vec::new(),
            success: vec![
                RequestOp::Range(range_request(b"a", b"")),
                RequestOp::Put(put_request(b"a", b"1")),
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b"gone".to_vec(),
                    ..DeleteRangeRequest::default()
                }),
                RequestOp::Range(range_request(&[0], &[0])),
            ],
            failure: Vec::new(),
        };
        let (response, events) = store.txn(&request).unwrap();
        assert!(response.succeeded);
        let ResponseOp::Range(before) = &response.responses[0] else {
            panic!("expected a range response");
        };
        assert_eq!(before.count, 0);
        let ResponseOp::Range(after) = &response.responses[3] else {
            panic!("expected a range response");
        };
        assert_eq!(keys_of(after), vec![b"a".to_vec()]);
        assert_eq!(after.kvs[0].mod_revision, 3);
        assert_eq!(events.len(), 2);
        assert_eq!(store.current_revision(), 3);
    }

    #[test]
    fn txn_takes_one_revision_or_none() {
        // A writing txn takes exactly one revision for all its events; a reading one none.
        let mut store = store();
        let writes = TxnRequest {
            compare: vec![compare(
                b"a",
                CompareResult::Equal,
                CompareTarget::Version(0),
            )],
            success: vec![
                RequestOp::Put(put_request(b"b", b"1")),
                RequestOp::Put(put_request(b"a", b"1")),
                RequestOp::Txn(TxnRequest {
                    compare: Vec::new(),
                    success: vec![RequestOp::Put(put_request(b"c", b"1"))],
                    failure: Vec::new(),
                }),
            ],
            failure: vec![RequestOp::Range(range_request(b"a", b""))],
        };
        let (response, events) = store.txn(&writes).unwrap();
        assert!(response.succeeded);
        assert_eq!(response.header_revision, 2);
        assert_eq!(store.current_revision(), 2);
        let order: Vec<&[u8]> = events.iter().map(|event| event.kv.key.as_slice()).collect();
        assert_eq!(
            order,
            vec![&b"b"[..], b"a", b"c"],
            "events keep execution order"
        );
        assert!(events.iter().all(|event| event.kv.mod_revision == 2));
        let ResponseOp::Txn(nested) = &response.responses[2] else {
            panic!("expected a nested txn response");
        };
        assert_eq!(nested.header_revision, 2);
        // The same txn again fails its compare and runs the read-only branch.
        let (response, events) = store.txn(&writes).unwrap();
        assert!(!response.succeeded);
        assert!(events.is_empty());
        assert_eq!((response.header_revision, store.current_revision()), (2, 2));
        // A delete of nothing inside a txn writes nothing either.
        let nothing = TxnRequest {
            success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"zz".to_vec(),
                ..DeleteRangeRequest::default()
            })],
            ..TxnRequest::default()
        };
        let (response, events) = store.txn(&nothing).unwrap();
        assert!(events.is_empty());
        assert_eq!((response.header_revision, store.current_revision()), (2, 2));
    }

    #[test]
    fn txn_refuses_duplicate_keys_per_path() {
        // A key written twice on one path is refused; then/else of a nested txn may share it.
        let mut store = store();
        let duplicate = |ops: Vec<RequestOp>| TxnRequest {
            success: ops,
            ..TxnRequest::default()
        };
        let put_a = || RequestOp::Put(put_request(b"a", b"1"));
        let delete_range = || {
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
                prev_kv: false,
            })
        };
        let nested = |success: Vec<RequestOp>, failure: Vec<RequestOp>| {
            RequestOp::Txn(TxnRequest {
                compare: Vec::new(),
                success,
                failure,
            })
        };
        let refused = [
            vec![put_a(), put_a()],
            vec![put_a(), delete_range()],
            vec![delete_range(), put_a()],
            vec![put_a(), nested(vec![put_a()], Vec::new())],
            vec![nested(Vec::new(), vec![delete_range()]), put_a()],
            vec![
                nested(vec![put_a()], Vec::new()),
                nested(vec![delete_range()], Vec::new()),
            ],
        ];
        for ops in refused {
            assert_eq!(
                store.txn(&duplicate(ops.clone())),
                Err(StoreError::DuplicateKeyInTxn { key: b"a".to_vec() }),
                "{ops:?}"
            );
        }
        assert_eq!(store.current_revision(), 1);
        let allowed = [
            vec![nested(vec![put_a()], vec![put_a()])],
            vec![delete_range(), delete_range()],
            vec![put_a(), RequestOp::Put(put_request(b"b", b"1"))],
        ];
        for ops in allowed {
            store.txn(&duplicate(ops)).unwrap();
        }
        // Each branch of the top-level txn is checked on its own.
        let both_branches = TxnRequest {
            compare: Vec::new(),
            success: vec![put_a()],
            failure: vec![put_a()],
        };
        store.txn(&both_branches).unwrap();
        store.check_invariants().unwrap();
    }

    #[test]
    fn failed_requests_leave_state_untouched() {
        // A txn refused by its last op, or a put with a missing lease, changes nothing.
        let mut store = store();
        put(&mut store, b"a", b"1");
        let digest = store.digest();
        let bad_lease = TxnRequest {
            success: vec![
                RequestOp::Put(put_request(b"b", b"1")),
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b"a".to_vec(),
                    ..DeleteRangeRequest::default()
                }),
                RequestOp::Put(PutRequest {
                    lease: 99,
                    ..put_request(b"c", b"1")
                }),
            ],
            ..TxnRequest::default()
        };
        assert_eq!(store.txn(&bad_lease), Err(StoreError::LeaseNotFound(99)));
        let compacted_read = TxnRequest {
            success: vec![
                RequestOp::Put(put_request(b"b", b"1")),
                RequestOp::Range(RangeRequest {
                    revision: 9,
                    ..range_request(b"a", b"")
                }),
            ],
            ..TxnRequest::default()
        };
        assert!(matches!(
            store.txn(&compacted_read),
            Err(StoreError::FutureRevision { .. })
        ));
        let ignore_missing = PutRequest {
            ignore_value: true,
            ..put_request(b"missing", b"")
        };
        assert_eq!(
            store.put(&ignore_missing),
            Err(StoreError::KeyNotFound {
                key: b"missing".to_vec()
            })
        );
        assert_eq!(store.digest(), digest);
        assert_eq!(store.current_revision(), 2);
    }

    #[test]
    fn put_ignore_value_and_ignore_lease_keep_the_old_ones() {
        // ignore_value keeps the value, ignore_lease the lease; both need an existing key.
        let mut store = store();
        store.lease_grant(1, 30).unwrap();
        store
            .put(&PutRequest {
                lease: 1,
                ..put_request(b"a", b"value")
            })
            .unwrap();
        store
            .put(&PutRequest {
                ignore_value: true,
                lease: 0,
                ..put_request(b"a", b"")
            })
            .unwrap();
        let kv = get_at(&store, b"a", 0).unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.lease, kv.version),
            (&b"value"[..], 0, 2)
        );
        assert!(
            store.lease_keys(1).is_empty(),
            "a put without the lease detaches it"
        );
        store
            .put(&PutRequest {
                lease: 1,
                ..put_request(b"a", b"v3")
            })
            .unwrap();
        let (response, _) = store
            .put(&PutRequest {
                ignore_lease: true,
                prev_kv: true,
                ..put_request(b"a", b"v4")
            })
            .unwrap();
        assert_eq!(response.prev_kv.unwrap().value, b"v3");
        let kv = get_at(&store, b"a", 0).unwrap();
        assert_eq!((kv.value.as_slice(), kv.lease), (&b"v4"[..], 1));
        let with_value = PutRequest {
            ignore_value: true,
            ..put_request(b"a", b"x")
        };
        assert!(matches!(
            store.put(&with_value),
            Err(StoreError::Invalid(_))
        ));
        store.check_invariants().unwrap();
    }

    #[test]
    fn delete_range_events_carry_prev_kv() {
        // Deleting a range makes one delete event per key at one revision, with prev_kv.
        let mut store = store();
        put(&mut store, b"a", b"1"); // 2
        put(&mut store, b"b", b"2"); // 3
        put(&mut store, b"c", b"3"); // 4
        let (response, events) = delete(&mut store, b"a", b"c");
        assert_eq!((response.header_revision, response.deleted), (5, 2));
        assert_eq!(response.prev_kvs.len(), 2);
        assert_eq!(events.len(), 2);
        for (event, (key, value)) in events.iter().zip([(b"a", b"1"), (b"b", b"2")]) {
            assert_eq!(event.kind, EventType::Delete);
            assert_eq!(
                event.kv,
                KeyValue {
                    key: key.to_vec(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 5,
                    version: 0,
                    lease: 0
                }
            );
            assert_eq!(event.prev_kv.as_ref().unwrap().value, value.to_vec());
        }
        // Deleting nothing takes no revision.
        let (response, events) = delete(&mut store, b"a", b"c");
        assert_eq!((response.header_revision, response.deleted), (5, 0));
        assert!(events.is_empty());
        assert_eq!(store.current_revision(), 5);
    }

    #[test]
    fn events_since_replays_writes_in_order() {
        // The catch-up log equals what the writes returned, filtered by range, in order.
        let mut store = store();
        let mut returned = Vec::new();
        returned.extend(store.put(&put_request(b"a", b"1")).unwrap().1);
        returned.extend(store.put(&put_request(b"b", b"1")).unwrap().1);
        let txn = TxnRequest {
            success: vec![
                RequestOp::Put(put_request(b"c", b"1")),
                RequestOp::Put(put_request(b"a", b"2")),
            ],
            ..TxnRequest::default()
        };
        returned.extend(store.txn(&txn).unwrap().1);
        returned.extend(delete(&mut store, b"a", b"c").1);
        assert_eq!(store.events_since(0, &[0], &[0], 100).unwrap(), returned);
        assert_eq!(store.events_since(1, &[0], &[0], 100).unwrap(), returned);
        let only_a = store.events_since(3, b"a", b"", 100).unwrap();
        assert_eq!(only_a.len(), 2);
        assert_eq!(only_a[0].kv.mod_revision, 4);
        assert_eq!(only_a[0].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(only_a[1].kind, EventType::Delete);
        // The limit is strict, even partway through a revision.
        let limited = store.events_since(0, &[0], &[0], 3).unwrap();
        assert_eq!(limited, returned[..3].to_vec());
        assert_eq!(
            limited[2].kv.mod_revision, 4,
            "revision 4's second event is cut off"
        );
        assert!(store.events_since(0, &[0], &[0], 0).unwrap().is_empty());
        assert!(store.events_since(99, &[0], &[0], 10).unwrap().is_empty());
        store.compact(4).unwrap();
        assert!(matches!(
            store.events_since(2, b"a", b"", 10),
            Err(StoreError::Compacted { .. })
        ));
        assert_eq!(
            store.events_since(5, &[0], &[0], 10).unwrap(),
            returned[4..].to_vec()
        );
        assert_eq!(
            store.events_since(0, &[0], &[0], 10).unwrap(),
            returned[4..].to_vec()
        );
    }

    #[test]
    fn lease_revoke_deletes_attached_keys_in_one_revision() {
        // Keys follow their lease; revoking deletes all attached keys at one revision.
        let mut store = store();
        store.lease_grant(5, 10).unwrap();
        store.lease_grant(6, 20).unwrap();
        assert_eq!(store.lease_grant(5, 10), Err(StoreError::LeaseExists(5)));
        assert!(matches!(
            store.lease_grant(0, 10),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.lease_grant(9, 0),
            Err(StoreError::Invalid(_))
        ));
        for key in [b"a", b"b", b"c", b"d"] {
            store
                .put(&PutRequest {
                    lease: 5,
                    ..put_request(key, b"v")
                })
                .unwrap();
        }
        put(&mut store, b"plain", b"v");
        // Moving a key to another lease, and deleting one, detaches them from lease 5.
        store
            .put(&PutRequest {
                lease: 6,
                ..put_request(b"c", b"v")
            })
            .unwrap();
        delete(&mut store, b"d", b"");
        assert_eq!(store.lease_keys(5), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(store.lease_keys(6), vec![b"c".to_vec()]);
        assert_eq!(store.leases(), vec![(5, 10), (6, 20)]);
        assert_eq!(store.lease_ttl(6), Some(20));
        let before = store.current_revision();
        let (revision, events) = store.lease_revoke(5).unwrap();
        assert_eq!(revision, before + 1);
        assert_eq!(events.len(), 2);
        assert!(events
            .iter()
            .all(|event| event.kind == EventType::Delete && event.kv.mod_revision == revision));
        assert_eq!(get_at(&store, b"a", 0), None);
        assert_eq!(get_at(&store, b"c", 0).unwrap().lease, 6);
        assert_eq!(store.lease_ttl(5), None);
        assert_eq!(store.lease_revoke(5), Err(StoreError::LeaseNotFound(5)));
        // A lease without keys is revoked without a revision.
        store.lease_grant(7, 1).unwrap();
        assert_eq!(store.lease_revoke(7).unwrap(), (revision, Vec::new()));
        store.check_invariants().unwrap();
    }

    #[test]
    fn limits_are_enforced_on_every_write() {
        // Empty keys, oversized keys/values/requests and overlong or deep txns are refused.
        let limits = Limits {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_request_bytes: 64,
            max_txn_ops: 2,
            max_txn_depth: 2,
        };
        let mut store = Mvcc::new(limits);
        assert_eq!(
            store.put(&put_request(b"", b"v")),
            Err(StoreError::EmptyKey)
        );
        assert_eq!(
            store.put(&put_request(b"toolong", b"v")),
            Err(StoreError::KeyTooLarge { size: 7, limit: 4 })
        );
        assert_eq!(
            store.put(&put_request(b"k", b"123456789")),
            Err(StoreError::ValueTooLarge { size: 9, limit: 8 })
        );
        assert_eq!(
            store.range(&range_request(b"", b"")),
            Err(StoreError::EmptyKey)
        );
        let too_many = TxnRequest {
            success: vec![RequestOp::Range(range_request(b"k", b"")); 3],
            ..TxnRequest::default()
        };
        assert_eq!(
            store.txn(&too_many),
            Err(StoreError::TooManyOps { count: 3, limit: 2 })
        );
        let deep = TxnRequest {
            success: vec![RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Txn(TxnRequest::default())],
                ..TxnRequest::default()
            })],
            ..TxnRequest::default()
        };
        assert_eq!(store.txn(&deep), Err(StoreError::TxnTooDeep { limit: 2 }));
        let large = TxnRequest {
            success: vec![
                RequestOp::Put(put_request(b"k1", b"12345678")),
                RequestOp::Put(put_request(b"k2", b"12345678")),
            ],
            ..TxnRequest::default()
        };
        assert!(matches!(
            store.txn(&large),
            Err(StoreError::RequestTooLarge { limit: 64, .. })
        ));
        let empty_compare = TxnRequest {
            compare: vec![compare(
                b"",
                CompareResult::Equal,
                CompareTarget::Version(0),
            )],
            ..TxnRequest::default()
        };
        assert_eq!(store.txn(&empty_compare), Err(StoreError::EmptyKey));
        assert_eq!(store.current_revision(), 1);
        assert_eq!(put(&mut store, b"k", b"12345678"), 2);
    }

    #[test]
    fn snapshot_restore_round_trip_preserves_digest() {
        // A restored store equals the original, digest included; bad bytes are refused.
        let mut store = store();
        store.lease_grant(3, 9).unwrap();
        store
            .put(&PutRequest {
                lease: 3,
                ..put_request(b"a", b"1")
            })
            .unwrap();
        put(&mut store, b"b", b"1");
        put(&mut store, b"b", b"2");
        delete(&mut store, b"a", b"");
        put(&mut store, b"c", b"1");
        store.compact(3).unwrap();
        let bytes = store.snapshot();
        let restored = Mvcc::restore(&bytes).unwrap();
        assert_eq!(restored, store);
        assert_eq!(restored.digest(), store.digest());
        put(&mut store, b"c", b"2");
        assert_ne!(restored.digest(), store.digest());
        assert!(matches!(
            Mvcc::restore(&bytes[..bytes.len() / 2]),
            Err(StoreError::Invalid(_))
        ));
        // A decodable but inconsistent state is refused too.
        let mut broken = restored.clone();
        broken.current_revision = 2;
        assert!(matches!(
            Mvcc::restore(&broken.snapshot()),
            Err(StoreError::Invalid(_))
        ));
    }

    /// One step of a random workload over a few keys.
    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, u8),
        Delete(u8),
        DeleteRange(u8, u8),
        Range(u8, u8),
        ReadOld(u8, u8),
        Compact(u8),
        /// If key `a` holds `[value]`, put `[value]` at key `b`, else delete key `b`.
        CompareAndSwap(u8, u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..6, 0u8..3).prop_map(|(key, value)| Step::Put(key, value)),
            2 => (0u8..6).prop_map(Step::Delete),
            1 => (0u8..6, 0u8..7).prop_map(|(start, end)| Step::DeleteRange(start, end)),
            2 => (0u8..6, 0u8..7).prop_map(|(start, end)| Step::Range(start, end)),
            2 => (0u8..6, any::<u8>()).prop_map(|(key, back)| Step::ReadOld(key, back)),
            1 => any::<u8>().prop_map(Step::Compact),
            2 => (0u8..6, 0u8..3, 0u8..6).prop_map(|(a, value, b)| Step::CompareAndSwap(a, value, b)),
        ]
    }

    fn key(index: u8) -> Vec<u8> {
        vec![b'k', b'0' + index]
    }

    proptest! {
        #[test]
        fn random_workloads_match_a_simple_model(steps in prop::collection::vec(step(), 1..60)) {
            // Random puts/deletes/ranges/compactions agree with a map of latest values,
            // at the current and at historical revisions, and the event log replays them.
            let mut store = store();
            // models[r] is the map of values after revision r (models[0] is unused).
            let mut models: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = vec![BTreeMap::new(), BTreeMap::new()];
            for step in steps {
                let mut model = models.last().cloned().unwrap_or_default();
                let before = store.current_revision();
                match step {
                    Step::Put(index, value) => {
                        let (response, events) = store.put(&put_request(&key(index), &[value])).unwrap();
                        prop_assert_eq!(response.header_revision, before + 1);
                        prop_assert_eq!(events.len(), 1);
                        model.insert(key(index), vec![value]);
                    }
                    Step::Delete(index) => {
                        let existed = model.remove(&key(index)).is_some();
                        let (response, _) = delete(&mut store, &key(index), b"");
                        prop_assert_eq!(response.deleted, i64::from(existed));
                    }
                    Step::DeleteRange(start, end) => {
                        let (low, high) = (key(start), key(end));
                        let doomed: Vec<Vec<u8>> = model.keys().filter(|k| **k >= low && **k < high).cloned().collect();
                        for k in &doomed {
                            model.remove(k);
                        }
                        let (response, events) = delete(&mut store, &low, &high);
                        prop_assert_eq!(response.deleted, doomed.len() as i64);
                        prop_assert_eq!(events.len(), doomed.len());
                    }
                    Step::Range(start, end) => {
                        let (low, high) = (key(start), key(end));
                        let response = store.range(&range_request(&low, &high)).unwrap();
                        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.iter().filter(|(k, _)| **k >= low && **k < high).map(|(k, v)| (k.clone(), v.clone())).collect();
                        let got: Vec<(Vec<u8>, Vec<u8>)> = response.kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
                        prop_assert_eq!(got, expected);
                    }
                    Step::ReadOld(index, back) => {
                        let oldest = store.compacted_revision().max(1);
                        let span = store.current_revision() - oldest + 1;
                        let revision = store.current_revision() - i64::from(back) % span;
                        let got = get_at(&store, &key(index), revision).map(|kv| kv.value);
                        prop_assert_eq!(got, models[revision as usize].get(&key(index)).cloned());
                    }
                    Step::CompareAndSwap(a, value, b) => {
                        let holds = model.get(&key(a)) == Some(&vec![value]);
                        let request = TxnRequest {
                            compare: vec![compare(&key(a), CompareResult::Equal, CompareTarget::Value(vec![value]))],
                            success: vec![RequestOp::Put(put_request(&key(b), &[value]))],
                            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest { key: key(b), ..DeleteRangeRequest::default() })],
                        };
                        let (response, _) = store.txn(&request).unwrap();
                        prop_assert_eq!(response.succeeded, holds);
                        if holds {
                            model.insert(key(b), vec![value]);
                        } else {
                            model.remove(&key(b));
                        }
                    }
                    Step::Compact(back) => {
                        let span = store.current_revision() - store.compacted_revision();
                        if span > 0 {
                            let revision = store.current_revision() - i64::from(back) % span;
                            store.compact(revision).unwrap();
                        }
                    }
                }
                let after = store.current_revision();
                prop_assert!(after == before || after == before + 1);
                if after == before + 1 {
                    models.push(model);
                }
                prop_assert_eq!(models.len() as i64, after + 1);
                store.check_invariants().map_err(TestCaseError::fail)?;
            }
            // Replaying the retained events onto the state at the compaction revision
            // gives the current state.
            let base = store.compacted_revision().max(1);
            let mut replayed = models[base as usize].clone();
            for event in store.events_since(0, &[0], &[0], usize::MAX).unwrap() {
                match event.kind {
                    EventType::Put => replayed.insert(event.kv.key, event.kv.value),
                    EventType::Delete => replayed.remove(&event.kv.key),
                };
            }
            prop_assert_eq!(&replayed, models.last().unwrap());
            let restored = Mvcc::restore(&store.snapshot()).unwrap();
            prop_assert_eq!(restored.digest(), store.digest());
        }
    }
}
