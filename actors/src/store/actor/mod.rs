//! The store member: raft (raft-rs) + the MVCC state machine + watches + leases.
//!
//! One actor per member. Its drive loop, per input:
//! 1. a raft message from a peer is stepped into raft; a client request is answered
//!    locally (serializable reads, watches, status), turned into a read-index request
//!    (linearizable reads) or proposed (writes, leases, compaction, membership);
//!    a tick advances raft's clock and runs the leader's duties (lease expiry, learner
//!    promotion) and the watch duties (catch-up, progress notifications);
//! 2. `handle_ready` then persists what raft hands out — snapshot, entries, hard state —
//!    in one batch and syncs it, and only then sends raft's messages;
//! 3. committed entries are applied to the state machine (`super::apply`) in log order; the member that
//!    proposed an entry answers its client; watchers are fed the events;
//! 4. reads whose read index is now applied are served; every
//!    `snapshot_every_entries` entries what the state machine changed is written to
//!    storage (`super::checkpoint`) and the log before it dropped; a follower too far
//!    behind for the log is sent the whole state, built when raft asks for it.
//!
//! Determinism: raft-rs draws election jitter from `thread_rng`; the member config
//! pins `max_election_tick = min_election_tick + 1` so that draw has one outcome, and
//! the member randomises elections itself by withholding a number of ticks drawn from
//! its seeded RNG after every role change.
//!
//! Durability: the state machine is rebuilt on restart from its last checkpoint plus
//! the log after it (entries are synced before anything that depends on them is sent;
//! a checkpoint is written in one batch with the log's new start).
//!
//! Files: this one holds the member's state, its input dispatch and small helpers;
//! [`start`] (recovery from storage), [`raft_io`] (Ready handling, persistence, the
//! flush), [`applying`] (committed entries through `super::apply`'s state machine,
//! membership entries, snapshots), [`reads`] (ReadIndex reads), [`requests`] (client
//! requests and proposals), [`watches`] (the watch server) and [`ticks`] (raft's clock
//! and the leader's duties).

use super::apply::{Applied, ConfContext, FollowUp, Proposal, ProposalOp, StateMachine};
use super::checkpoint::{self, Persisted};
use super::config::StoreConfig;
use super::messages::{
    Member, MemberStatus, StoreMessage, StoreRequest, StoreResponse, WatchCreate, WatchEvents,
};
use super::raft_log::RaftLog;
use super::types::{Event, KeyRange, RangeRequest, StoreError, TxnRequest};
use crate::message::{Message, Report, StoreReport};
use keel_engine::{Actor, Address, Context, Control, Input, Time, WriteBatch};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, EntryType};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

mod applying;
mod raft_io;
mod reads;
mod requests;
mod snapshots;
mod start;
mod ticks;
mod watches;

use applying::single_change;

pub const KIND: &str = "store";
/// The role a member claims from its host (`Control::Claim`) when it becomes leader; the
/// simulator's `KillStoreLeader` fault kills the machine of the latest claim.
pub const LEADER_ROLE: &str = "store-leader";

const KEY_META: &[u8] = b"raft/meta";
const META_MAGIC: &str = "keel-store-v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreTimer {
    Tick,
    /// Runs raft's Ready loop once for everything that arrived since it was set, so a
    /// burst of requests shares one append, one fsync and one round of messages.
    Flush,
}

/// Identity written into a member's storage on first start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    magic: String,
    member_id: u64,
}

struct PendingWrite {
    client: Option<(Address, u64)>,
    /// When it was proposed: a proposal that never applies (lost on the way to the
    /// leader, or dropped by a new leader) is forgotten after `pending_write_timeout_ms`
    /// (its client gave up long before).
    since: Time,
}

struct PendingRead {
    client: Address,
    request_id: u64,
    op: ReadOp,
    since: Time,
}

/// What a read-index confirmation serves.
enum ReadOp {
    /// A linearizable range.
    Range(RangeRequest),
    /// A linearizable read-only txn (etcd serves these as reads too).
    Txn(TxnRequest),
    /// A lease keep-alive: renewed only once a quorum has confirmed this member still
    /// leads, as etcd does since 3.5 (etcd-io/etcd#15247 — a leader cut off from the
    /// others would otherwise renew a lease that the new leader on the other side
    /// expires meanwhile; seen under the nemesis).
    KeepAlive(i64),
}

struct Watcher {
    range: WatchCreate,
    /// The header revision its creation was answered with (answered again to a
    /// duplicated create).
    created_revision: i64,
    next_revision: i64,
    seq: u64,
    /// Messages sent and not yet acknowledged: (seq, events).
    unacked: VecDeque<(u64, usize)>,
    unacked_events: usize,
    last_sent: Time,
}

pub struct Store {
    config: StoreConfig,
    raft: Option<RawNode<RaftLog>>,
    /// Set when the member cannot run (corrupt or foreign data): it answers every
    /// request with this reason instead of starting empty.
    fatal: Option<String>,
    /// The replicated state: MVCC, the member directory, client sessions, the applied
    /// index.
    state: StateMachine,
    /// What the last write of `state` to storage holds (see `super::checkpoint`).
    persisted: Persisted,
    /// A membership change was applied since the state was last written.
    conf_changed: bool,
    /// Follower: a snapshot transfer under way.
    incoming: Option<snapshots::Incoming>,
    /// Transfers given up or refused (checksum) on this member; snapshots received
    /// whole and handed to raft; chunks received.
    snapshot_transfers_failed: u64,
    snapshots_received: u64,
    snapshot_chunks_received: u64,
    /// Writes this member proposed as a follower (raft-rs forwarded them).
    proposals_forwarded: u64,
    /// Addresses learned from raft messages, for members not (yet) in the directory.
    seen_addresses: BTreeMap<u64, Address>,
    next_seq: u64,
    pending_writes: BTreeMap<u64, PendingWrite>,
    next_read: u64,
    pending_reads: BTreeMap<u64, PendingRead>,
    ready_reads: Vec<(u64, u64)>,
    watchers: BTreeMap<(Address, u64), Watcher>,
    lease_deadlines: BTreeMap<i64, Time>,
    revoking: BTreeSet<i64>,
    promoting: BTreeSet<u64>,
    /// Leader only: peers whose progress is waiting on a snapshot, since which tick.
    snapshot_waits: BTreeMap<u64, u64>,
    last_heard: BTreeMap<u64, Time>,
    observed: (u64, StateRole, u64),
    skip_ticks: usize,
    entries_since_snapshot: u64,
    ticks: u64,
    removed: bool,
    flush_scheduled: bool,
    /// Counters for the status line (how well batching works).
    readies: u64,
    syncs: u64,
    /// Local snapshots (log truncations), and whole-state snapshots built for lagging
    /// followers.
    local_snapshots: u64,
    snapshots_built: u64,
    /// Proposals made since the last flush, and the most one flush has carried: more
    /// than one shows that proposals arriving together are batched into one Ready (and
    /// one fsync), which real-mode throughput relies on.
    proposals_since_flush: u64,
    max_proposals_per_flush: u64,
    /// Flushes that carried more than one proposal.
    batched_flushes: u64,
    /// The session of the request being handled (0: none).
    current_session: u64,
    logger: slog::Logger,
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::Leader => "leader",
        StateRole::PreCandidate => "pre-candidate",
    }
}

type Ctx<'a> = Context<'a, Message, StoreTimer>;

impl Store {
    pub fn new(config: StoreConfig) -> Result<Self, String> {
        config.validate()?;
        let members = config
            .initial_members
            .iter()
            .map(|(id, address)| {
                (
                    *id,
                    Member {
                        id: *id,
                        address: address.clone(),
                        learner: false,
                    },
                )
            })
            .collect();
        Ok(Store {
            state: StateMachine::new(config.limits.clone(), members),
            persisted: Persisted::default(),
            conf_changed: false,
            incoming: None,
            snapshot_transfers_failed: 0,
            snapshots_received: 0,
            snapshot_chunks_received: 0,
            proposals_forwarded: 0,
            config,
            raft: None,
            fatal: None,
            seen_addresses: BTreeMap::new(),
            next_seq: 0,
            pending_writes: BTreeMap::new(),
            next_read: 0,
            pending_reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            watchers: BTreeMap::new(),
            lease_deadlines: BTreeMap::new(),
            revoking: BTreeSet::new(),
            promoting: BTreeSet::new(),
            snapshot_waits: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            observed: (0, StateRole::Follower, 0),
            skip_ticks: 0,
            entries_since_snapshot: 0,
            ticks: 0,
            removed: false,
            flush_scheduled: false,
            proposals_since_flush: 0,
            max_proposals_per_flush: 0,
            batched_flushes: 0,
            readies: 0,
            syncs: 0,
            local_snapshots: 0,
            snapshots_built: 0,
            current_session: 0,
            logger: slog::Logger::root(slog::Discard, slog::o!()),
        })
    }

    fn tick_duration(&self) -> Duration {
        Duration::from_millis(self.config.tick_ms)
    }

    fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.config.tick_ms * self.config.election_ticks as u64)
    }

    fn address_of(&self, id: u64) -> Option<Address> {
        self.state
            .members
            .get(&id)
            .map(|m| m.address.clone())
            .or_else(|| self.seen_addresses.get(&id).cloned())
    }

    fn is_leader(&self) -> bool {
        self.raft
            .as_ref()
            .is_some_and(|r| r.raft.state == StateRole::Leader)
    }

    fn leader_id(&self) -> Option<u64> {
        self.raft
            .as_ref()
            .map(|r| r.raft.leader_id)
            .filter(|id| *id != 0)
    }

    fn voters(&self) -> Vec<u64> {
        match &self.raft {
            Some(r) => {
                let mut v: Vec<u64> = r.raft.prs().conf().voters().ids().iter().collect();
                v.sort_unstable();
                v
            }
            None => Vec::new(),
        }
    }

    fn learners(&self) -> Vec<u64> {
        match &self.raft {
            Some(r) => {
                let mut v: Vec<u64> = r.raft.prs().conf().learners().iter().copied().collect();
                v.sort_unstable();
                v
            }
            None => Vec::new(),
        }
    }

    /// Voters heard from within an election timeout, this member included.
    fn reachable(&self, now: Time) -> Vec<u64> {
        let window = self.election_timeout();
        self.voters()
            .into_iter()
            .filter(|id| {
                *id == self.config.id
                    || self
                        .last_heard
                        .get(id)
                        .is_some_and(|t| now.since(*t) <= window)
            })
            .collect()
    }

    /// The error for a request that needs a leader when none is usable from here.
    fn no_leader_error(&self, now: Time) -> StoreError {
        let voters = self.voters().len().max(1);
        let needed = voters / 2 + 1;
        let reachable = self.reachable(now).len();
        if reachable < needed {
            StoreError::NoQuorum {
                reachable,
                members: voters,
                needed,
            }
        } else {
            StoreError::NotLeader {
                leader: self.leader_id(),
            }
        }
    }

    fn respond(
        &self,
        ctx: &mut Ctx<'_>,
        to: Address,
        id: u64,
        result: Result<StoreResponse, StoreError>,
    ) {
        let leader = self.leader_id().and_then(|l| self.address_of(l));
        ctx.send(
            to,
            Message::Store(StoreMessage::Response { id, result, leader }),
        );
    }

    fn check_role_change(&mut self, ctx: &mut Ctx<'_>) {
        let Some(raft) = &self.raft else { return };
        let now_role = (raft.raft.term, raft.raft.state, raft.raft.leader_id);
        if now_role == self.observed {
            return;
        }
        let was_leader = self.observed.1 == StateRole::Leader;
        self.observed = now_role;
        if now_role.1 == StateRole::Leader {
            ctx.control(Control::Claim {
                role: LEADER_ROLE.into(),
                term: now_role.0,
            });
            ctx.emit(Message::Report(Report::Store(StoreReport::Leader {
                term: now_role.0,
                id: self.config.id,
            })));
            // etcd's rule: a new leader extends every lease by its full TTL, since it
            // cannot know how long the old leader had already counted.
            let now = ctx.now();
            self.lease_deadlines = self
                .state
                .mvcc
                .leases()
                .into_iter()
                .map(|(id, ttl)| (id, now.plus(Duration::from_secs(ttl.max(1) as u64))))
                .collect();
            self.revoking.clear();
        } else {
            if was_leader {
                // A snapshot built to send is a leader's; its bytes go with the role.
                if let Some(raft) = self.raft.as_mut() {
                    raft.mut_store().drop_outgoing_snapshot();
                }
                self.lease_deadlines.clear();
                self.revoking.clear();
                self.promoting.clear();
            }
            // Randomise this member's next election by withholding some ticks.
            self.skip_ticks = rand::Rng::gen_range(ctx.rng(), 0..self.config.election_ticks);
        }
    }

    fn status_now(&self, now: Time) -> MemberStatus {
        let (term, role, commit) = match &self.raft {
            Some(r) => (
                r.raft.term,
                role_name(r.raft.state),
                r.raft.raft_log.committed,
            ),
            None => (0, "stopped", 0),
        };
        let voters = self.voters().len();
        MemberStatus {
            id: self.config.id,
            address: self
                .address_of(self.config.id)
                .unwrap_or_else(|| Address::new("?", KIND, 0)),
            role: if self.fatal.is_some() {
                "stopped".into()
            } else {
                role.into()
            },
            term,
            leader: self.leader_id(),
            commit_index: commit,
            applied_index: self.state.applied,
            revision: self.state.mvcc.current_revision(),
            compacted_revision: self.state.mvcc.compacted_revision(),
            members: self.member_list(),
            reachable: self.reachable(now),
            voters,
            quorum: voters / 2 + 1,
            keys: self.state.mvcc.key_count(),
            watchers: self.watchers.len(),
            leases: self.state.mvcc.leases().len(),
        }
    }
}

impl Actor for Store {
    type Message = Message;
    type Timer = StoreTimer;

    fn handle(
        &mut self,
        input: Input<Message, StoreTimer>,
        ctx: &mut Context<'_, Message, StoreTimer>,
    ) {
        match input {
            Input::Start(_) => self.on_start(ctx),
            Input::Timer(StoreTimer::Tick) => self.on_tick(ctx),
            Input::Timer(StoreTimer::Flush) => {
                self.flush_scheduled = false;
                let proposals = std::mem::take(&mut self.proposals_since_flush);
                self.max_proposals_per_flush = self.max_proposals_per_flush.max(proposals);
                if proposals > 1 {
                    self.batched_flushes += 1;
                }
                self.handle_ready(ctx);
            }
            Input::Message { from, msg } => match msg {
                Message::Store(StoreMessage::Raft(bytes)) => {
                    let Ok(message) = raft::eraftpb::Message::parse_from_bytes(&bytes) else {
                        return;
                    };
                    if self.fatal.is_some() {
                        return;
                    }
                    // Addressed to another member id at this address: a member removed
                    // and rebuilt under its old name gets a new id, and peers may still
                    // send to the old one. raft-rs does not check `to`, and stepping such
                    // a message (a heartbeat committing past an empty log) panics.
                    if message.to != self.config.id {
                        return;
                    }
                    let now = ctx.now();
                    self.last_heard.insert(message.from, now);
                    self.seen_addresses.insert(message.from, from.clone());
                    let message =
                        if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                            match self.on_snapshot_message(ctx, from, message) {
                                Some(message) => message,
                                None => return,
                            }
                        } else {
                            message
                        };
                    if let Some(raft) = self.raft.as_mut() {
                        // Messages from unknown peers or stale terms are refused by raft;
                        // the bus is lossy, so there is nothing to answer.
                        let _ = raft.step(message);
                    }
                    self.schedule_flush(ctx);
                }
                Message::Store(StoreMessage::Request {
                    id,
                    session,
                    request,
                }) => {
                    self.current_session = session;
                    self.on_request(ctx, from, id, request);
                    self.current_session = 0;
                }
                Message::Store(StoreMessage::WatchAck { watch_id, seq }) => {
                    self.on_watch_ack(from, watch_id, seq)
                }
                Message::Store(StoreMessage::SnapshotChunkRequest {
                    index,
                    term,
                    offset,
                }) if self.fatal.is_none() => {
                    self.on_snapshot_chunk_request(ctx, from, index, term, offset);
                }
                Message::Store(StoreMessage::SnapshotChunk {
                    index,
                    term,
                    offset,
                    bytes,
                }) if self.fatal.is_none() => {
                    self.on_snapshot_chunk(ctx, index, term, offset, bytes);
                }
                // Responses and watch events are for clients; anything else is not ours.
                _ => {}
            },
        }
    }

    fn status(&self) -> serde_json::Value {
        let status = self.status_now(Time(0));
        serde_json::json!({
            "id": status.id,
            "role": status.role,
            "term": status.term,
            "leader": status.leader,
            "applied_index": status.applied_index,
            "revision": status.revision,
            "members": status.members.len(),
            "readies": self.readies,
            "syncs": self.syncs,
            "local_snapshots": self.local_snapshots,
            "snapshots_built": self.snapshots_built,
            "snapshot_held_bytes": self.raft.as_ref().map_or(0, |raft| raft.store().outgoing_len()),
            "snapshot_transfers_failed": self.snapshot_transfers_failed,
            "snapshots_received": self.snapshots_received,
            "snapshot_chunks_received": self.snapshot_chunks_received,
            "proposals_forwarded": self.proposals_forwarded,
            "max_proposals_per_flush": self.max_proposals_per_flush,
            "batched_flushes": self.batched_flushes,
            "fatal": self.fatal,
        })
    }
}
