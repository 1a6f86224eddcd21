//! The store's replicated state machine: what every member applies, in log order, to
//! the same state — the MVCC store, the member directory, and the client sessions that
//! make a resent write apply once.
//!
//! Pure: no raft, no clock, no I/O. The member actor (`super::actor`) decodes each
//! committed entry, hands it here, and acts on what applying it did ([`Applied`]):
//! answers the client, feeds watchers, keeps lease deadlines. Snapshots are this
//! state's bytes. Unit-tested here as `mvcc.rs` is; cheap invariants are asserted as
//! entries apply, the full ones in [`StateMachine::check_invariants`].

use super::messages::{Member, StoreResponse};
use super::mvcc::Mvcc;
use super::types::{
    CompactRequest, DeleteRangeRequest, Event, Limits, PutRequest, StoreError, TxnRequest,
};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Request ids remembered per session, and sessions remembered in all. A session
/// evicted (the least recently active) loses its duplicate protection; the bus only
/// duplicates within seconds, long before that.
pub(super) const SESSION_WINDOW_IDS: usize = 1024;
pub(super) const SESSIONS_MAX: usize = 16_384;

/// A write as it travels in the raft log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Proposal {
    pub(super) origin: u64,
    pub(super) seq: u64,
    /// The client's (session, request id), when it has a session: applied at most once.
    pub(super) client_request: Option<(u64, u64)>,
    pub(super) op: ProposalOp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum ProposalOp {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactRequest),
    LeaseGrant { id: i64, ttl_seconds: i64 },
    LeaseRevoke { id: i64 },
}

/// Which requests of one client session were applied (replicated state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Session {
    /// Request ids at or below this count as applied (they fell out of the window).
    pub(super) floor: u64,
    pub(super) applied: BTreeSet<u64>,
    pub(super) last_index: u64,
}

/// The context of a membership change entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ConfContext {
    pub(super) origin: u64,
    pub(super) seq: u64,
    pub(super) member: Member,
    pub(super) auto_promote: bool,
}

/// What a snapshot's data holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SnapshotData {
    mvcc: Vec<u8>,
    members: Vec<Member>,
    auto_promote: Vec<u64>,
    sessions: Vec<(u64, Session)>,
}

/// What applying one write entry did.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per applied entry, moved once: boxing buys nothing
pub(super) enum Applied {
    /// A resent request already applied (its session remembers it): nothing changed,
    /// and the client has (or will time out on) the first answer.
    Duplicate,
    /// Applied — or refused by MVCC's checks, which changes nothing either.
    Done {
        result: Result<StoreResponse, StoreError>,
        /// The changes, for watchers.
        events: Vec<Event>,
        follow_up: FollowUp,
    },
}

/// What the member must do beyond answering and feeding watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FollowUp {
    Nothing,
    /// History was compacted: watchers behind it must be cancelled.
    Compacted,
    /// A lease now exists: its leader starts counting down its TTL.
    LeaseGranted {
        id: i64,
        ttl_seconds: i64,
    },
    /// A lease revocation was applied (or refused: the lease was gone): stop tracking it.
    LeaseRevoked {
        id: i64,
    },
}

/// The replicated state (see the module docs).
#[derive(Clone, Debug)]
pub(super) struct StateMachine {
    pub(super) mvcc: Mvcc,
    pub(super) members: BTreeMap<u64, Member>,
    /// Learners to promote once they have caught up.
    pub(super) auto_promote: BTreeSet<u64>,
    pub(super) sessions: BTreeMap<u64, Session>,
    /// The index of the last entry applied.
    pub(super) applied: u64,
    /// Sessions changed (or evicted) since the member last wrote them to its storage,
    /// and the request ids added (true) to or removed (false) from their windows, in
    /// order (bookkeeping for `super::checkpoint`, not replicated state).
    pub(super) dirty_sessions: BTreeSet<u64>,
    pub(super) session_ids: Vec<(u64, u64, bool)>,
}

impl StateMachine {
    pub(super) fn new(limits: Limits, members: BTreeMap<u64, Member>) -> StateMachine {
        StateMachine {
            mvcc: Mvcc::new(limits),
            members,
            auto_promote: BTreeSet::new(),
            sessions: BTreeMap::new(),
            applied: 0,
            dirty_sessions: BTreeSet::new(),
            session_ids: Vec::new(),
        }
    }

    /// Applies a write entry as entry `applied + 1` (the caller then records its index
    /// in `applied`): at most once per client request, then the MVCC operation.
    pub(super) fn apply_write(&mut self, proposal: &Proposal) -> Applied {
        if let Some((session, request_id)) = proposal.client_request {
            if !self.first_application(session, request_id) {
                return Applied::Duplicate;
            }
        }
        let header = |mvcc: &Mvcc| mvcc.current_revision();
        let (result, events, follow_up) = match &proposal.op {
            ProposalOp::Put(request) => match self.mvcc.put(request) {
                Ok((response, events)) => {
                    (Ok(StoreResponse::Put(response)), events, FollowUp::Nothing)
                }
                Err(e) => (Err(e), Vec::new(), FollowUp::Nothing),
            },
            ProposalOp::DeleteRange(request) => match self.mvcc.delete_range(request) {
                Ok((response, events)) => (
                    Ok(StoreResponse::DeleteRange(response)),
                    events,
                    FollowUp::Nothing,
                ),
                Err(e) => (Err(e), Vec::new(), FollowUp::Nothing),
            },
            ProposalOp::Txn(request) => match self.mvcc.txn(request) {
                Ok((response, events)) => {
                    (Ok(StoreResponse::Txn(response)), events, FollowUp::Nothing)
                }
                Err(e) => (Err(e), Vec::new(), FollowUp::Nothing),
            },
            ProposalOp::Compact(request) => match self.mvcc.compact(request.revision) {
                Ok(()) => (
                    Ok(StoreResponse::Compact {
                        header_revision: header(&self.mvcc),
                    }),
                    Vec::new(),
                    FollowUp::Compacted,
                ),
                Err(e) => (Err(e), Vec::new(), FollowUp::Nothing),
            },
            ProposalOp::LeaseGrant { id, ttl_seconds } => {
                match self.mvcc.lease_grant(*id, *ttl_seconds) {
                    Ok(()) => (
                        Ok(StoreResponse::LeaseGrant {
                            id: *id,
                            ttl_seconds: *ttl_seconds,
                            header_revision: header(&self.mvcc),
                        }),
                        Vec::new(),
                        FollowUp::LeaseGranted {
                            id: *id,
                            ttl_seconds: *ttl_seconds,
                        },
                    ),
                    Err(e) => (Err(e), Vec::new(), FollowUp::Nothing),
                }
            }
            ProposalOp::LeaseRevoke { id } => {
                let follow_up = FollowUp::LeaseRevoked { id: *id };
                match self.mvcc.lease_revoke(*id) {
                    Ok((revision, events)) => (
                        Ok(StoreResponse::LeaseRevoke {
                            header_revision: revision,
                        }),
                        events,
                        follow_up,
                    ),
                    Err(e) => (Err(e), Vec::new(), follow_up),
                }
            }
        };
        Applied::Done {
            result,
            events,
            follow_up,
        }
    }

    /// Records that `request_id` of `session` is being applied (as entry `applied + 1`);
    /// false if it already was.
    fn first_application(&mut self, session: u64, request_id: u64) -> bool {
        let index = self.applied + 1;
        // Marked before the check: a refused id still creates its session (replicated
        // state every member holds, so a restarted member must hold it too).
        self.dirty_sessions.insert(session);
        let entry = self.sessions.entry(session).or_default();
        if request_id <= entry.floor || !entry.applied.insert(request_id) {
            return false;
        }
        self.session_ids.push((session, request_id, true));
        entry.last_index = index;
        if entry.applied.len() > SESSION_WINDOW_IDS {
            if let Some(oldest) = entry.applied.pop_first() {
                entry.floor = entry.floor.max(oldest);
                self.session_ids.push((session, oldest, false));
            }
        }
        assert!(entry.applied.len() <= SESSION_WINDOW_IDS);
        assert!(entry
            .applied
            .first()
            .is_none_or(|first| *first > entry.floor));
        if self.sessions.len() > SESSIONS_MAX {
            let stalest = self
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.last_index, **id))
                .map(|(id, _)| *id);
            if let Some(id) = stalest {
                if let Some(evicted) = self.sessions.remove(&id) {
                    self.session_ids
                        .extend(evicted.applied.into_iter().map(|old| (id, old, false)));
                }
                self.dirty_sessions.insert(id);
            }
        }
        assert!(self.sessions.len() <= SESSIONS_MAX);
        true
    }

    /// Applies the directory side of a membership change raft accepted: members added
    /// (as voters or learners, from the entry's context), promoted, removed. Returns
    /// whether `own_id` was removed.
    pub(super) fn apply_membership(
        &mut self,
        changes: &[ConfChangeSingle],
        context: Option<&ConfContext>,
        own_id: u64,
    ) -> bool {
        let mut removed_self = false;
        for single in changes {
            let id = single.node_id;
            match single.get_change_type() {
                ConfChangeType::AddNode => {
                    if let Some(member) = self.members.get_mut(&id) {
                        member.learner = false;
                    } else if let Some(ctxt) = context {
                        self.members.insert(
                            id,
                            Member {
                                learner: false,
                                ..ctxt.member.clone()
                            },
                        );
                    }
                    self.auto_promote.remove(&id);
                }
                ConfChangeType::AddLearnerNode => {
                    if let Some(ctxt) = context {
                        self.members.insert(
                            id,
                            Member {
                                learner: true,
                                ..ctxt.member.clone()
                            },
                        );
                        if ctxt.auto_promote {
                            self.auto_promote.insert(id);
                        }
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&id);
                    self.auto_promote.remove(&id);
                    removed_self |= id == own_id;
                }
            }
        }
        removed_self
    }

    /// The state as snapshot bytes (what a lagging member installs).
    pub(super) fn snapshot(&self) -> Vec<u8> {
        let data = SnapshotData {
            mvcc: self.mvcc.snapshot(),
            members: self.members.values().cloned().collect(),
            auto_promote: self.auto_promote.iter().copied().collect(),
            sessions: self.sessions.iter().map(|(k, v)| (*k, v.clone())).collect(),
        };
        bincode::serialize(&data).expect("snapshot data serializes")
    }

    /// Replaces the state with the snapshot taken at entry `index`, refusing bytes that
    /// do not decode or describe an inconsistent state (they came from a disk or a
    /// peer).
    pub(super) fn restore(&mut self, bytes: &[u8], index: u64) -> Result<(), String> {
        let snapshot: SnapshotData = bincode::deserialize(bytes)
            .map_err(|e| format!("snapshot data does not decode: {e}"))?;
        self.mvcc = Mvcc::restore(&snapshot.mvcc)
            .map_err(|e| format!("snapshot state does not decode: {e}"))?;
        self.members = snapshot.members.into_iter().map(|m| (m.id, m)).collect();
        self.auto_promote = snapshot.auto_promote.into_iter().collect();
        self.sessions = snapshot.sessions.into_iter().collect();
        self.applied = index;
        // The member writes the whole state after a restore, not changes.
        self.dirty_sessions.clear();
        self.session_ids.clear();
        self.check_invariants()
            .map_err(|reason| format!("inconsistent snapshot: {reason}"))
    }

    /// Every invariant of the replicated state (MVCC's own, sessions' bounds, learners
    /// to promote); `Err` names the first one broken. Walks everything: checked on
    /// every restore and in tests, not on every entry.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        self.mvcc.check_invariants()?;
        if self.sessions.len() > SESSIONS_MAX {
            return Err(format!("{} sessions remembered", self.sessions.len()));
        }
        for (id, session) in &self.sessions {
            if session.applied.len() > SESSION_WINDOW_IDS {
                return Err(format!(
                    "session {id} remembers {} ids",
                    session.applied.len()
                ));
            }
            if session
                .applied
                .first()
                .is_some_and(|first| *first <= session.floor)
            {
                return Err(format!(
                    "session {id} remembers an id at or below its floor"
                ));
            }
            if session.last_index > self.applied {
                return Err(format!(
                    "session {id} was active after the last applied entry"
                ));
            }
        }
        for id in &self.auto_promote {
            if !self.members.get(id).is_some_and(|m| m.learner) {
                return Err(format!(
                    "member {id} is to be promoted but is not a learner"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::RangeRequest;
    use keel_engine::Address;

    fn put(key: &str, value: &str, client_request: Option<(u64, u64)>) -> Proposal {
        Proposal {
            origin: 1,
            seq: 1,
            client_request,
            op: ProposalOp::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }),
        }
    }

    /// Applies like the member does: as the next entry, then records its index.
    fn apply(state: &mut StateMachine, proposal: &Proposal) -> Applied {
        let applied = state.apply_write(proposal);
        state.applied += 1;
        applied
    }

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            address: Address::new(format!("s{id}"), "store", 0),
            learner,
        }
    }

    fn state() -> StateMachine {
        StateMachine::new(Limits::default(), BTreeMap::from([(1, member(1, false))]))
    }

    fn value(state: &StateMachine, key: &str) -> Option<Vec<u8>> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        state
            .mvcc
            .range(&request)
            .unwrap()
            .kvs
            .pop()
            .map(|kv| kv.value)
    }

    /// A client request resent (the same session and id in a later entry) applies
    /// once: the later write of another client survives the resend.
    #[test]
    fn a_resent_request_applies_once() {
        let mut state = state();
        assert!(matches!(
            apply(&mut state, &put("k", "a", Some((7, 1)))),
            Applied::Done { result: Ok(_), .. }
        ));
        apply(&mut state, &put("k", "b", Some((8, 1))));
        assert_eq!(
            apply(&mut state, &put("k", "a", Some((7, 1)))),
            Applied::Duplicate
        );
        assert_eq!(value(&state, "k"), Some(b"b".to_vec()));
        // Without a session nothing is remembered: the same write applies again.
        assert!(matches!(
            apply(&mut state, &put("k", "c", None)),
            Applied::Done { .. }
        ));
        assert!(matches!(
            apply(&mut state, &put("k", "c", None)),
            Applied::Done { .. }
        ));
        state.check_invariants().unwrap();
    }

    /// A session remembers its last `SESSION_WINDOW_IDS` ids; older ones count as
    /// applied (refused), never as new.
    #[test]
    fn ids_below_the_window_count_as_applied() {
        let mut state = state();
        let last = SESSION_WINDOW_IDS as u64 + 10;
        for id in 1..=last {
            apply(&mut state, &put("k", &id.to_string(), Some((3, id))));
        }
        let session = &state.sessions[&3];
        assert_eq!(session.applied.len(), SESSION_WINDOW_IDS);
        assert_eq!(session.floor, 10);
        for old in [1, 10] {
            assert_eq!(
                apply(&mut state, &put("k", "x", Some((3, old)))),
                Applied::Duplicate
            );
        }
        assert!(matches!(
            apply(&mut state, &put("k", "y", Some((3, last + 1)))),
            Applied::Done { .. }
        ));
        state.check_invariants().unwrap();
    }

    /// Past `SESSIONS_MAX` sessions the least recently active one is forgotten.
    #[test]
    fn the_stalest_session_is_evicted() {
        let mut state = state();
        for session in 1..=SESSIONS_MAX as u64 + 1 {
            apply(&mut state, &put("k", "v", Some((session, 1))));
        }
        assert_eq!(state.sessions.len(), SESSIONS_MAX);
        assert!(
            !state.sessions.contains_key(&1),
            "session 1 was the stalest"
        );
        // Forgotten: its resend applies again (the documented limit of the window).
        assert!(matches!(
            apply(&mut state, &put("k", "v", Some((1, 1)))),
            Applied::Done { .. }
        ));
        state.check_invariants().unwrap();
    }

    /// Lease and compaction entries tell the member what to do next.
    #[test]
    fn leases_and_compaction_have_follow_ups() {
        let mut state = state();
        let entry = |op| Proposal {
            origin: 1,
            seq: 1,
            client_request: None,
            op,
        };
        let grant = apply(
            &mut state,
            &entry(ProposalOp::LeaseGrant {
                id: 5,
                ttl_seconds: 10,
            }),
        );
        assert!(matches!(
            grant,
            Applied::Done {
                follow_up: FollowUp::LeaseGranted {
                    id: 5,
                    ttl_seconds: 10
                },
                result: Ok(_),
                ..
            }
        ));
        let again = apply(
            &mut state,
            &entry(ProposalOp::LeaseGrant {
                id: 5,
                ttl_seconds: 10,
            }),
        );
        assert!(matches!(
            again,
            Applied::Done {
                follow_up: FollowUp::Nothing,
                result: Err(StoreError::LeaseExists(5)),
                ..
            }
        ));
        apply(&mut state, &put("a", "1", None));
        let compact = apply(
            &mut state,
            &entry(ProposalOp::Compact(CompactRequest { revision: 2 })),
        );
        assert!(matches!(
            compact,
            Applied::Done {
                follow_up: FollowUp::Compacted,
                result: Ok(_),
                ..
            }
        ));
        let revoke = apply(&mut state, &entry(ProposalOp::LeaseRevoke { id: 5 }));
        assert!(matches!(
            revoke,
            Applied::Done {
                follow_up: FollowUp::LeaseRevoked { id: 5 },
                result: Ok(_),
                ..
            }
        ));
        // Revoking a lease that is gone still tells the member to stop tracking it.
        let gone = apply(&mut state, &entry(ProposalOp::LeaseRevoke { id: 5 }));
        assert!(matches!(
            gone,
            Applied::Done {
                follow_up: FollowUp::LeaseRevoked { id: 5 },
                result: Err(_),
                ..
            }
        ));
        state.check_invariants().unwrap();
    }

    /// Membership: a learner added to be promoted, its promotion, a removal.
    #[test]
    fn membership_changes_update_the_directory() {
        let mut state = state();
        let change = |id: u64, kind: ConfChangeType| {
            let mut single = ConfChangeSingle {
                node_id: id,
                ..Default::default()
            };
            single.set_change_type(kind);
            single
        };
        let context = ConfContext {
            origin: 1,
            seq: 9,
            member: member(2, true),
            auto_promote: true,
        };
        assert!(!state.apply_membership(
            &[change(2, ConfChangeType::AddLearnerNode)],
            Some(&context),
            1
        ));
        assert!(state.members[&2].learner);
        assert!(state.auto_promote.contains(&2));
        state.check_invariants().unwrap();
        state.apply_membership(&[change(2, ConfChangeType::AddNode)], None, 1);
        assert!(!state.members[&2].learner);
        assert!(state.auto_promote.is_empty());
        state.check_invariants().unwrap();
        assert!(!state.apply_membership(&[change(2, ConfChangeType::RemoveNode)], None, 1));
        assert!(!state.members.contains_key(&2));
        assert!(state.apply_membership(&[change(1, ConfChangeType::RemoveNode)], None, 1));
    }

    /// A snapshot restores everything replicated: values, members, learners to
    /// promote, and sessions (a resend after the restore is still refused).
    #[test]
    fn a_snapshot_restores_every_part() {
        let mut state = state();
        apply(&mut state, &put("k", "a", Some((7, 1))));
        state.members.insert(2, member(2, true));
        state.auto_promote.insert(2);
        let bytes = state.snapshot();
        let mut restored = StateMachine::new(Limits::default(), BTreeMap::new());
        restored.restore(&bytes, state.applied).unwrap();
        assert_eq!(restored.mvcc.digest(), state.mvcc.digest());
        assert_eq!(restored.members, state.members);
        assert_eq!(restored.auto_promote, state.auto_promote);
        assert_eq!(restored.sessions, state.sessions);
        assert_eq!(
            apply(&mut restored, &put("k", "a", Some((7, 1)))),
            Applied::Duplicate
        );
        restored.check_invariants().unwrap();
        assert!(restored.restore(b"not a snapshot", 1).is_err());
        // A snapshot whose sessions were active after its own index is inconsistent.
        assert!(restored
            .restore(&bytes, 0)
            .unwrap_err()
            .contains("inconsistent"));
    }

    /// The invariant check can fail: a learner to promote that is a voter, a session
    /// id below its floor.
    #[test]
    fn broken_invariants_are_reported() {
        let mut state = state();
        state.auto_promote.insert(1);
        assert!(state
            .check_invariants()
            .unwrap_err()
            .contains("not a learner"));
        let mut state = StateMachine::new(Limits::default(), BTreeMap::new());
        state.sessions.insert(
            4,
            Session {
                floor: 5,
                applied: BTreeSet::from([3]),
                last_index: 0,
            },
        );
        assert!(state.check_invariants().unwrap_err().contains("floor"));
    }
}
