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
//! 3. committed entries are applied to the MVCC store in log order; the member that
//!    proposed an entry answers its client; watchers are fed the events;
//! 4. reads whose read index is now applied are served; a snapshot is taken every
//!    `snapshot_every_entries` entries and the log before it dropped.
//!
//! Determinism: raft-rs draws election jitter from `thread_rng`; the member config
//! pins `max_election_tick = min_election_tick + 1` so that draw has one outcome, and
//! the member randomises elections itself by withholding a number of ticks drawn from
//! its seeded RNG after every role change.
//!
//! Durability: the state machine is rebuilt on restart from the last snapshot plus the
//! log (both synced before anything that depends on them is sent).

use super::apply::{Applied, ConfContext, FollowUp, Proposal, ProposalOp, StateMachine};
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

    // ----- start and recovery -------------------------------------------------------

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(StoreTimer::Tick, self.tick_duration());
        if let Err(reason) = self.recover(ctx) {
            ctx.control(Control::Fatal {
                reason: format!("member {}: {reason}", self.config.id),
            });
            self.fatal = Some(reason);
            return;
        }
        // Proposal sequence numbers start at a random point so that entries proposed
        // by an earlier incarnation of this member are never mistaken for new ones.
        self.next_seq = rand::Rng::gen::<u64>(ctx.rng()) >> 1;
        self.handle_ready(ctx);
    }

    fn recover(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let storage_error =
            |e: keel_engine::StorageError| format!("member {}: {e}", self.config.id);
        let meta = ctx.storage().get(KEY_META).map_err(storage_error)?;
        let log = match meta {
            Some(bytes) => {
                let meta: Meta = bincode::deserialize(&bytes).map_err(|e| {
                    format!("data directory is corrupt: member metadata does not decode ({e})")
                })?;
                if meta.magic != META_MAGIC {
                    return Err(format!(
                        "data directory is not a keel store ({:?})",
                        meta.magic
                    ));
                }
                if meta.member_id != self.config.id {
                    return Err(format!(
                        "data directory belongs to member {}, not member {}",
                        meta.member_id, self.config.id
                    ));
                }
                RaftLog::load(ctx.storage())
                    .map_err(|e| format!("data directory is corrupt: {e}"))?
            }
            None => {
                let any = ctx.storage().scan(&[], None, 1).map_err(storage_error)?;
                if !any.is_empty() {
                    return Err(
                        "data directory holds data that is not a keel store member's".into(),
                    );
                }
                let voters = if self.config.join {
                    Vec::new()
                } else {
                    self.config
                        .initial_members
                        .iter()
                        .map(|(id, _)| *id)
                        .collect()
                };
                // The fresh state: empty MVCC, the initial members, no sessions.
                let data = self.state.snapshot();
                let (log, mut batch) = RaftLog::bootstrap(voters, data);
                let meta = Meta {
                    magic: META_MAGIC.into(),
                    member_id: self.config.id,
                };
                batch.put(
                    KEY_META,
                    bincode::serialize(&meta).expect("meta serializes"),
                );
                ctx.persist(batch).map_err(storage_error)?;
                ctx.sync().map_err(storage_error)?;
                log
            }
        };
        let snapshot = log.last_snapshot().clone();
        let applied = snapshot.get_metadata().index;
        if snapshot.get_data().is_empty() {
            self.state.applied = applied;
        } else {
            self.state.restore(snapshot.get_data(), applied)?;
        }
        let raft_config = raft::Config {
            id: self.config.id,
            election_tick: self.config.election_ticks,
            heartbeat_tick: self.config.heartbeat_ticks,
            min_election_tick: self.config.election_ticks,
            max_election_tick: self.config.election_ticks + 1,
            applied,
            max_size_per_msg: self.config.max_size_per_msg,
            max_inflight_msgs: self.config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let node = RawNode::new(&raft_config, log, &self.logger)
            .map_err(|e| format!("raft refused to start: {e}"))?;
        self.raft = Some(node);
        let role_skip = self.config.election_ticks;
        self.skip_ticks = rand::Rng::gen_range(ctx.rng(), 0..role_skip);
        Ok(())
    }

    // ----- helpers ------------------------------------------------------------------

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
                self.lease_deadlines.clear();
                self.revoking.clear();
                self.promoting.clear();
            }
            // Randomise this member's next election by withholding some ticks.
            self.skip_ticks = rand::Rng::gen_range(ctx.rng(), 0..self.config.election_ticks);
        }
    }

    // ----- raft I/O -----------------------------------------------------------------

    fn send_raft_messages(&mut self, ctx: &mut Ctx<'_>, messages: Vec<raft::eraftpb::Message>) {
        for message in messages {
            let Some(address) = self.address_of(message.to) else {
                continue;
            };
            ctx.send(
                address,
                Message::Store(StoreMessage::Raft(
                    message.write_to_bytes().unwrap_or_default(),
                )),
            );
        }
    }

    /// Persists, sends and applies whatever raft has ready, until it has nothing.
    fn handle_ready(&mut self, ctx: &mut Ctx<'_>) {
        self.check_role_change(ctx);
        for _ in 0..64 {
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                break;
            }
            let mut ready = raft.ready();
            self.readies += 1;
            // raft-rs separates messages that may leave before this Ready is persisted
            // (the leader's appends: it may write its own log in parallel with the
            // followers, Raft thesis 10.2.1) from those that must wait (votes, append
            // responses: `persisted_messages`). Sending the former first overlaps the
            // leader's fsync with replication.
            let early = ready.take_messages();
            self.send_raft_messages(ctx, early);
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            let mut batch = WriteBatch::new();
            let snapshot = ready.snapshot().clone();
            let installed = snapshot.get_metadata().index != 0;
            if installed {
                raft.mut_store()
                    .apply_snapshot(snapshot.clone(), &mut batch);
            }
            if !ready.entries().is_empty() {
                raft.mut_store().append(ready.entries(), &mut batch);
            }
            if let Some(hs) = ready.hs() {
                raft.mut_store().set_hard_state(hs.clone(), &mut batch);
            }
            // Entries, a new term or vote, or a snapshot must be on disk before anyone
            // hears of them; a commit-index-only hard state can be recovered from peers.
            let must_sync = ready.must_sync() || installed;
            if must_sync {
                if !self.persist_synced(ctx, batch) {
                    return;
                }
            } else if !batch.is_empty() {
                let _ = ctx.persist(batch);
            }
            if installed {
                let index = snapshot.get_metadata().index;
                if let Err(reason) = self.state.restore(snapshot.get_data(), index) {
                    self.fatal = Some(reason);
                    return;
                }
                self.entries_since_snapshot = 0;
                // Watchers ahead of the snapshot keep going; behind it they re-sync.
                self.cancel_lagging_watchers(ctx);
            }
            let persisted = ready.take_persisted_messages();
            self.send_raft_messages(ctx, persisted);
            for state in ready.take_read_states() {
                if state.request_ctx.len() == 8 {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&state.request_ctx);
                    self.ready_reads
                        .push((state.index, u64::from_be_bytes(raw)));
                }
            }
            let committed = ready.take_committed_entries();
            self.apply_entries(ctx, committed);
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            let mut light = raft.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut batch = WriteBatch::new();
                raft.mut_store().set_commit(commit, &mut batch);
                // The commit index is recoverable from peers: no sync needed.
                let _ = ctx.persist(batch);
            }
            let messages = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft_messages(ctx, messages);
            self.apply_entries(ctx, committed);
            if let Some(raft) = self.raft.as_mut() {
                raft.advance_apply();
            }
            self.check_role_change(ctx);
        }
        self.serve_ready_reads(ctx);
        self.maybe_snapshot(ctx);
    }

    /// Defers the Ready loop to a zero-delay timer: inputs that arrive before it fires
    /// are batched into one Ready.
    fn schedule_flush(&mut self, ctx: &mut Ctx<'_>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.set_timer(StoreTimer::Flush, Duration::ZERO);
        }
    }

    fn persist_synced(&mut self, ctx: &mut Ctx<'_>, batch: WriteBatch) -> bool {
        self.syncs += 1;
        if let Err(e) = ctx.persist(batch).and_then(|_| ctx.sync()) {
            // A member that cannot persist must not acknowledge anything: stop.
            let reason = format!("storage failed: {e}");
            ctx.control(Control::Fatal {
                reason: format!("member {}: {reason}", self.config.id),
            });
            self.fatal = Some(reason);
            return false;
        }
        true
    }

    // ----- applying the log ---------------------------------------------------------

    fn apply_entries(&mut self, ctx: &mut Ctx<'_>, entries: Vec<raft::eraftpb::Entry>) {
        for entry in entries {
            if self.fatal.is_some() {
                return;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        self.apply_proposal(ctx, &entry.data);
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(ctx, &entry)
                }
            }
            self.state.applied = entry.index;
            self.entries_since_snapshot += 1;
            if self.removed && self.raft.is_some() {
                // This member applied its own removal: it stops, as an etcd member
                // does. Its raft must not run on: a leader that removed itself is no
                // longer in its own progress set, and raft-rs (which leaves it leader)
                // panics on the next append response it counts towards commit. The
                // rest of the cluster elects a leader among the remaining voters.
                self.raft = None;
                return;
            }
            let every = self.config.applied_report_every_entries;
            if every > 0 && entry.index % every == 0 {
                ctx.emit(Message::Report(Report::Store(StoreReport::Applied {
                    id: self.config.id,
                    index: entry.index,
                    revision: self.state.mvcc.current_revision(),
                    digest: self.state.mvcc.digest(),
                })));
            }
        }
    }

    fn apply_proposal(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        let proposal: Proposal = match bincode::deserialize(data) {
            Ok(p) => p,
            Err(e) => {
                // Every member applies the same log: an entry nobody can decode is
                // corruption, and applying around it would fork the state machines.
                self.fatal = Some(format!(
                    "raft entry at index {} does not decode: {e}",
                    self.state.applied + 1
                ));
                return;
            }
        };
        let now = ctx.now();
        let (result, events) = match self.state.apply_write(&proposal) {
            Applied::Duplicate => {
                // A duplicate of a request already applied: the client has (or will
                // time out on) the first answer; applying again could undo later writes.
                self.pending_writes.remove(&proposal.seq);
                return;
            }
            Applied::Done {
                result,
                events,
                follow_up,
            } => {
                match follow_up {
                    FollowUp::Nothing => {}
                    FollowUp::Compacted => self.cancel_lagging_watchers(ctx),
                    FollowUp::LeaseGranted { id, ttl_seconds } => {
                        if self.is_leader() {
                            self.lease_deadlines.insert(
                                id,
                                now.plus(Duration::from_secs(ttl_seconds.max(1) as u64)),
                            );
                        }
                    }
                    FollowUp::LeaseRevoked { id } => {
                        self.lease_deadlines.remove(&id);
                        self.revoking.remove(&id);
                    }
                }
                (result, events)
            }
        };
        if !events.is_empty() {
            self.notify_watchers(ctx, &events);
        }
        if proposal.origin == self.config.id {
            if let Some(pending) = self.pending_writes.remove(&proposal.seq) {
                if let Some((client, request_id)) = pending.client {
                    self.respond(ctx, client, request_id, result);
                }
            }
        }
    }

    fn apply_conf_change(&mut self, ctx: &mut Ctx<'_>, entry: &raft::eraftpb::Entry) {
        let change: ConfChangeV2 = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            match ConfChangeV2::parse_from_bytes(&entry.data) {
                Ok(cc) => cc,
                Err(e) => {
                    self.fatal = Some(format!(
                        "conf change at index {} does not decode: {e}",
                        entry.index
                    ));
                    return;
                }
            }
        } else {
            match raft::eraftpb::ConfChange::parse_from_bytes(&entry.data) {
                Ok(cc) => {
                    let mut v2 = single_change(cc.node_id, cc.get_change_type());
                    v2.context = cc.context;
                    v2
                }
                Err(e) => {
                    self.fatal = Some(format!(
                        "conf change at index {} does not decode: {e}",
                        entry.index
                    ));
                    return;
                }
            }
        };
        let context: Option<ConfContext> = bincode::deserialize(&change.context).ok();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let result = raft.apply_conf_change(&change);
        let outcome = match result {
            Ok(_) => {
                // The next snapshot is taken at once: a member that must catch up by
                // snapshot refuses one whose membership does not name it, so the
                // snapshot raft sends it must be at least this new (seen under the
                // nemesis: a learner added after the last snapshot was sent that
                // snapshot, refused it, and never caught up).
                self.entries_since_snapshot = self.config.snapshot_every_entries;
                let changes = change.get_changes();
                if self
                    .state
                    .apply_membership(changes, context.as_ref(), self.config.id)
                {
                    self.removed = true;
                }
                for single in changes {
                    match single.get_change_type() {
                        ConfChangeType::AddNode => {
                            self.promoting.remove(&single.node_id);
                        }
                        ConfChangeType::RemoveNode => {
                            self.last_heard.remove(&single.node_id);
                        }
                        ConfChangeType::AddLearnerNode => {}
                    }
                }
                Ok(StoreResponse::Members {
                    header_revision: self.state.mvcc.current_revision(),
                    members: self.member_list(),
                })
            }
            Err(e) => Err(StoreError::Invalid(format!(
                "membership change refused: {e}"
            ))),
        };
        ctx.emit(Message::Report(Report::Store(StoreReport::Members {
            id: self.config.id,
            index: entry.index,
            voters: self.voters(),
            learners: self.learners(),
        })));
        if let Some(ctxt) = context {
            if ctxt.origin == self.config.id {
                if let Some(pending) = self.pending_writes.remove(&ctxt.seq) {
                    if let Some((client, request_id)) = pending.client {
                        self.respond(ctx, client, request_id, outcome);
                    }
                }
            }
        }
    }

    fn member_list(&self) -> Vec<Member> {
        let learners: BTreeSet<u64> = self.learners().into_iter().collect();
        let mut ids: BTreeSet<u64> = self.voters().into_iter().collect();
        ids.extend(learners.iter().copied());
        ids.into_iter()
            .filter_map(|id| {
                self.address_of(id).map(|address| Member {
                    id,
                    address,
                    learner: learners.contains(&id),
                })
            })
            .collect()
    }

    fn maybe_snapshot(&mut self, ctx: &mut Ctx<'_>) {
        if self.entries_since_snapshot < self.config.snapshot_every_entries || self.fatal.is_some()
        {
            return;
        }
        let bytes = self.state.snapshot();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let conf_state = raft.raft.prs().conf().to_conf_state();
        let mut batch = WriteBatch::new();
        if raft
            .mut_store()
            .install_local_snapshot(self.state.applied, bytes, conf_state, &mut batch)
            .is_ok()
        {
            self.entries_since_snapshot = 0;
            self.persist_synced(ctx, batch);
        }
    }

    // ----- reads --------------------------------------------------------------------

    /// Asks raft to confirm (with a quorum) that this member's state is current, and
    /// serves `op` once the confirmed index is applied.
    fn start_read_index(&mut self, client: Address, request_id: u64, op: ReadOp, now: Time) {
        self.next_read += 1;
        let read_id = self.next_read;
        self.pending_reads.insert(
            read_id,
            PendingRead {
                client,
                request_id,
                op,
                since: now,
            },
        );
        if let Some(raft) = self.raft.as_mut() {
            raft.read_index(read_id.to_be_bytes().to_vec());
        }
    }

    /// Renews a lease, once its leadership is confirmed.
    fn renew_lease(&mut self, now: Time, lease: i64) -> Result<StoreResponse, StoreError> {
        if !self.is_leader() {
            return Err(self.not_leader(now));
        }
        // etcd's rule: a lease past its deadline cannot be renewed, even if its
        // revocation has not been applied yet — renewing it here would answer OK and
        // then lose its keys to the revocation already under way.
        let expired = self.revoking.contains(&lease)
            || self.lease_deadlines.get(&lease).is_some_and(|d| *d <= now);
        match self.state.mvcc.lease_ttl(lease) {
            Some(_) if expired => Err(StoreError::LeaseNotFound(lease)),
            Some(ttl) => {
                self.lease_deadlines
                    .insert(lease, now.plus(Duration::from_secs(ttl.max(1) as u64)));
                Ok(StoreResponse::LeaseKeepAlive {
                    id: lease,
                    ttl_seconds: ttl,
                })
            }
            None => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    fn serve_ready_reads(&mut self, ctx: &mut Ctx<'_>) {
        let applied = self.state.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .ready_reads
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.ready_reads = waiting;
        for (_, read_id) in ready {
            if let Some(read) = self.pending_reads.remove(&read_id) {
                let result = match &read.op {
                    ReadOp::Range(request) => {
                        self.state.mvcc.range(request).map(StoreResponse::Range)
                    }
                    ReadOp::Txn(request) => {
                        self.state.mvcc.txn_read(request).map(StoreResponse::Txn)
                    }
                    ReadOp::KeepAlive(lease) => self.renew_lease(ctx.now(), *lease),
                };
                self.respond(ctx, read.client, read.request_id, result);
            }
        }
    }

    /// Serves a linearizable read once a quorum confirms this member's state is current
    /// (refused without a leader or over `inflight_reads_max`).
    fn linearizable_read(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, op: ReadOp) {
        let now = ctx.now();
        if self.leader_id().is_none() {
            let error = self.no_leader_error(now);
            self.respond(ctx, from, id, Err(error));
        } else if self.pending_reads.len() >= self.config.inflight_reads_max {
            let limit = self.config.inflight_reads_max;
            self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
        } else {
            self.start_read_index(from, id, op, now);
        }
    }

    // ----- requests -----------------------------------------------------------------

    fn on_request(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, request: StoreRequest) {
        if let Some(reason) = &self.fatal {
            let error = StoreError::Stopped(reason.clone());
            self.respond(ctx, from, id, Err(error));
            return;
        }
        if self.removed {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Stopped(
                    "this member was removed from the cluster".into(),
                )),
            );
            return;
        }
        let now = ctx.now();
        match request {
            StoreRequest::Range(range) if range.serializable => {
                let result = self.state.mvcc.range(&range).map(StoreResponse::Range);
                self.respond(ctx, from, id, result);
            }
            StoreRequest::Range(range) => {
                self.linearizable_read(ctx, from, id, ReadOp::Range(range))
            }
            StoreRequest::Txn(txn) if txn.is_read_only() => {
                self.linearizable_read(ctx, from, id, ReadOp::Txn(txn))
            }
            StoreRequest::Put(put) => self.propose(ctx, from, id, ProposalOp::Put(put)),
            StoreRequest::DeleteRange(delete) => {
                self.propose(ctx, from, id, ProposalOp::DeleteRange(delete))
            }
            StoreRequest::Txn(txn) => self.propose(ctx, from, id, ProposalOp::Txn(txn)),
            StoreRequest::Compact(compact) => {
                self.propose(ctx, from, id, ProposalOp::Compact(compact))
            }
            StoreRequest::LeaseGrant {
                id: lease,
                ttl_seconds,
            } => {
                if ttl_seconds <= 0 {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid("lease TTL must be positive".into())),
                    );
                    return;
                }
                let lease = if lease == 0 && self.is_leader() {
                    // Positive, unused, drawn from the seeded RNG.
                    loop {
                        let candidate = (rand::Rng::gen::<u64>(ctx.rng()) >> 2) as i64 + 1;
                        if self.state.mvcc.lease_ttl(candidate).is_none() {
                            break candidate;
                        }
                    }
                } else {
                    lease
                };
                self.propose(
                    ctx,
                    from,
                    id,
                    ProposalOp::LeaseGrant {
                        id: lease,
                        ttl_seconds,
                    },
                );
            }
            StoreRequest::LeaseRevoke { id: lease } => {
                self.propose(ctx, from, id, ProposalOp::LeaseRevoke { id: lease })
            }
            StoreRequest::LeaseKeepAlive { id: lease } => {
                if !self.is_leader() {
                    let error = self.not_leader(now);
                    self.respond(ctx, from, id, Err(error));
                } else if self.pending_reads.len() >= self.config.inflight_reads_max {
                    let limit = self.config.inflight_reads_max;
                    self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
                } else {
                    self.start_read_index(from, id, ReadOp::KeepAlive(lease), now);
                }
            }
            StoreRequest::LeaseTimeToLive { id: lease } => {
                if !self.is_leader() {
                    let error = self.not_leader(now);
                    self.respond(ctx, from, id, Err(error));
                    return;
                }
                let result = match (
                    self.state.mvcc.lease_ttl(lease),
                    self.lease_deadlines.get(&lease),
                ) {
                    (Some(granted), deadline) => {
                        let remaining = deadline
                            .map(|d| d.since(now).as_secs() as i64)
                            .unwrap_or(granted);
                        Ok(StoreResponse::LeaseTimeToLive {
                            id: lease,
                            ttl_seconds: remaining,
                            granted_ttl_seconds: granted,
                            keys: self.state.mvcc.lease_keys(lease),
                        })
                    }
                    (None, _) => Err(StoreError::LeaseNotFound(lease)),
                };
                self.respond(ctx, from, id, result);
            }
            StoreRequest::LeaseList => {
                let leases = self.state.mvcc.leases();
                self.respond(ctx, from, id, Ok(StoreResponse::LeaseList { leases }));
            }
            StoreRequest::WatchCreate(create) => self.watch_create(ctx, from, id, create),
            StoreRequest::WatchCancel { watch_id } => {
                self.watchers.remove(&(from.clone(), watch_id));
                self.respond(ctx, from, id, Ok(StoreResponse::WatchCanceled { watch_id }));
            }
            StoreRequest::MemberAdd { address, learner } => {
                self.member_add(ctx, from, id, address, learner)
            }
            StoreRequest::MemberRemove { id: member } => {
                if !self.voters().contains(&member) && !self.learners().contains(&member) {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid(format!(
                            "member {member} does not exist"
                        ))),
                    );
                    return;
                }
                let change = single_change(member, ConfChangeType::RemoveNode);
                let address = self
                    .address_of(member)
                    .unwrap_or_else(|| Address::new("?", KIND, 0));
                self.propose_conf_change(
                    ctx,
                    from,
                    id,
                    change,
                    Member {
                        id: member,
                        address,
                        learner: false,
                    },
                    false,
                );
            }
            StoreRequest::MemberPromote { id: member } => {
                if !self.learners().contains(&member) {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid(format!(
                            "member {member} is not a learner"
                        ))),
                    );
                    return;
                }
                let change = single_change(member, ConfChangeType::AddNode);
                let address = self
                    .address_of(member)
                    .unwrap_or_else(|| Address::new("?", KIND, 0));
                self.propose_conf_change(
                    ctx,
                    from,
                    id,
                    change,
                    Member {
                        id: member,
                        address,
                        learner: false,
                    },
                    false,
                );
            }
            StoreRequest::MemberList => {
                let members = self.member_list();
                let header_revision = self.state.mvcc.current_revision();
                self.respond(
                    ctx,
                    from,
                    id,
                    Ok(StoreResponse::Members {
                        header_revision,
                        members,
                    }),
                );
            }
            StoreRequest::Status => {
                let status = self.status_now(now);
                self.respond(ctx, from, id, Ok(StoreResponse::Status(status)));
            }
        }
        self.schedule_flush(ctx);
    }

    fn not_leader(&self, now: Time) -> StoreError {
        match self.leader_id() {
            Some(leader) => StoreError::NotLeader {
                leader: Some(leader),
            },
            None => self.no_leader_error(now),
        }
    }

    /// Admission for anything that goes through the log: leader, quorum, limits.
    fn admit_write(&self, now: Time, encoded_size: usize) -> Result<(), StoreError> {
        if !self.is_leader() {
            return Err(self.not_leader(now));
        }
        let voters = self.voters().len().max(1);
        let needed = voters / 2 + 1;
        let reachable = self.reachable(now).len();
        if reachable < needed {
            // The leader has not heard from a quorum lately: refuse now rather than
            // leave the client with an ambiguous timeout.
            return Err(StoreError::NoQuorum {
                reachable,
                members: voters,
                needed,
            });
        }
        if self.pending_writes.len() >= self.config.inflight_proposals_max {
            return Err(StoreError::TooManyRequests {
                limit: self.config.inflight_proposals_max,
            });
        }
        if encoded_size > self.config.limits.max_request_bytes {
            return Err(StoreError::RequestTooLarge {
                size: encoded_size,
                limit: self.config.limits.max_request_bytes,
            });
        }
        Ok(())
    }

    fn propose(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, op: ProposalOp) {
        let client_request = (self.current_session != 0).then_some((self.current_session, id));
        self.propose_from(ctx, Some((from, id)), client_request, op);
    }

    /// Proposes `op`; false (and the client answered) if it was refused.
    fn propose_from(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: Option<(Address, u64)>,
        client_request: Option<(u64, u64)>,
        op: ProposalOp,
    ) -> bool {
        let now = ctx.now();
        self.next_seq += 1;
        let proposal = Proposal {
            origin: self.config.id,
            seq: self.next_seq,
            client_request,
            op,
        };
        let data = bincode::serialize(&proposal).expect("proposal serializes");
        if let Err(error) = self.admit_write(now, data.len()) {
            if let Some((to, request_id)) = client {
                self.respond(ctx, to, request_id, Err(error));
            }
            return false;
        }
        let Some(raft) = self.raft.as_mut() else {
            return false;
        };
        match raft.propose(Vec::new(), data) {
            Ok(()) => {
                self.proposals_since_flush += 1;
                self.pending_writes
                    .insert(proposal.seq, PendingWrite { client });
                true
            }
            Err(e) => {
                if let Some((to, request_id)) = client {
                    let error = match e {
                        raft::Error::ProposalDropped => StoreError::NotLeader {
                            leader: self.leader_id(),
                        },
                        other => StoreError::Invalid(format!("proposal refused: {other}")),
                    };
                    self.respond(ctx, to, request_id, Err(error));
                }
                false
            }
        }
    }

    fn propose_conf_change(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        change: ConfChangeV2,
        member: Member,
        auto_promote: bool,
    ) {
        let now = ctx.now();
        if let Err(error) = self.admit_write(now, 0) {
            self.respond(ctx, from, id, Err(error));
            return;
        }
        if self
            .raft
            .as_ref()
            .is_some_and(|r| r.raft.has_pending_conf())
        {
            let error = StoreError::Invalid(
                "another membership change is in progress; retry shortly".into(),
            );
            self.respond(ctx, from, id, Err(error));
            return;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let mut change = change;
        let context = ConfContext {
            origin: self.config.id,
            seq,
            member,
            auto_promote,
        };
        change.context = bincode::serialize(&context)
            .expect("conf context serializes")
            .into();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        match raft.propose_conf_change(Vec::new(), change) {
            Ok(()) => {
                self.pending_writes.insert(
                    seq,
                    PendingWrite {
                        client: Some((from, id)),
                    },
                );
            }
            Err(e) => {
                self.respond(
                    ctx,
                    from,
                    id,
                    Err(StoreError::Invalid(format!(
                        "membership change refused: {e}"
                    ))),
                );
            }
        }
    }

    fn member_add(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        address: Address,
        learner: bool,
    ) {
        if self.state.members.values().any(|m| m.address == address) {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Invalid(format!(
                    "{address} is already a member"
                ))),
            );
            return;
        }
        let mut known: BTreeSet<u64> = self.state.members.keys().copied().collect();
        known.extend(self.voters());
        known.extend(self.learners());
        let new_id = known.iter().max().copied().unwrap_or(0) + 1;
        let change = single_change(new_id, ConfChangeType::AddLearnerNode);
        let member = Member {
            id: new_id,
            address,
            learner: true,
        };
        self.propose_conf_change(ctx, from, id, change, member, !learner);
    }

    // ----- watches ------------------------------------------------------------------

    fn watch_create(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, create: WatchCreate) {
        let now = ctx.now();
        if let Some(watcher) = self.watchers.get(&(from.clone(), create.watch_id)) {
            // A duplicated create (the bus duplicates datagrams): the watch exists and
            // its stream has begun. Starting it again would send a second stream under
            // the same id whose sequence numbers collide with the first (seen: a watch
            // missed a revision once the client stopped re-creating watches on every
            // reordering); answer as the first time.
            let header_revision = watcher.created_revision;
            let watch_id = create.watch_id;
            let created = StoreResponse::WatchCreated {
                watch_id,
                header_revision,
            };
            self.respond(ctx, from, id, Ok(created));
            return;
        }
        let per_client = self
            .watchers
            .range((from.clone(), 0)..=(from.clone(), u64::MAX))
            .count();
        if per_client >= self.config.watchers_per_client_max {
            let limit = self.config.watchers_per_client_max;
            self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
            return;
        }
        let current = self.state.mvcc.current_revision();
        let start = if create.start_revision <= 0 {
            current + 1
        } else {
            create.start_revision
        };
        let compacted = self.state.mvcc.compacted_revision();
        if compacted > 0 && start <= compacted {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Compacted {
                    requested: start,
                    compacted,
                }),
            );
            return;
        }
        let watch_id = create.watch_id;
        self.watchers.insert(
            (from.clone(), watch_id),
            Watcher {
                range: create,
                created_revision: current,
                next_revision: start,
                seq: 0,
                unacked: VecDeque::new(),
                unacked_events: 0,
                last_sent: now,
            },
        );
        self.respond(
            ctx,
            from.clone(),
            id,
            Ok(StoreResponse::WatchCreated {
                watch_id,
                header_revision: current,
            }),
        );
        self.catch_up_watcher(ctx, &(from, watch_id));
    }

    fn send_watch(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        events: Vec<Event>,
        canceled: Option<String>,
    ) {
        let header_revision = self.state.mvcc.current_revision();
        let compact_revision = self.state.mvcc.compacted_revision();
        let now = ctx.now();
        let Some(watcher) = self.watchers.get_mut(key) else {
            return;
        };
        watcher.seq += 1;
        watcher.last_sent = now;
        if !events.is_empty() {
            watcher.unacked.push_back((watcher.seq, events.len()));
            watcher.unacked_events += events.len();
        }
        let message = WatchEvents {
            watch_id: key.1,
            seq: watcher.seq,
            header_revision,
            events,
            canceled,
            compact_revision,
        };
        ctx.send(key.0.clone(), Message::Store(StoreMessage::Watch(message)));
    }

    fn cancel_watcher(&mut self, ctx: &mut Ctx<'_>, key: &(Address, u64), reason: String) {
        self.send_watch(ctx, key, Vec::new(), Some(reason));
        self.watchers.remove(key);
    }

    /// Sends a watcher the stored events it has not seen yet, a batch at a time.
    fn catch_up_watcher(&mut self, ctx: &mut Ctx<'_>, key: &(Address, u64)) {
        let current = self.state.mvcc.current_revision();
        let Some(watcher) = self.watchers.get(key) else {
            return;
        };
        if watcher.next_revision > current {
            return;
        }
        if watcher.unacked_events >= self.config.watch_unacked_events_max {
            let reason = format!(
                "watcher fell behind: {} events unacknowledged (limit {}); re-create it from revision {}",
                watcher.unacked_events, self.config.watch_unacked_events_max, watcher.next_revision
            );
            self.cancel_watcher(ctx, key, reason);
            return;
        }
        let batch = self.config.watch_batch_events;
        let start = watcher.next_revision;
        let range = watcher.range.clone();
        let mut events =
            match self
                .state
                .mvcc
                .events_since(start, &range.key, &range.range_end, batch)
            {
                Ok(events) => events,
                Err(error) => {
                    self.cancel_watcher(ctx, key, error.to_string());
                    return;
                }
            };
        let next = if events.len() >= batch {
            // Never split a revision across messages: a client resumes by revision.
            let last = events.last().map(|e| e.kv.mod_revision).unwrap_or(start);
            if events.first().map(|e| e.kv.mod_revision) == Some(last) {
                events = match self.state.mvcc.events_since(
                    last,
                    &range.key,
                    &range.range_end,
                    usize::MAX,
                ) {
                    Ok(all) => all
                        .into_iter()
                        .filter(|e| e.kv.mod_revision == last)
                        .collect(),
                    Err(error) => {
                        self.cancel_watcher(ctx, key, error.to_string());
                        return;
                    }
                };
                last + 1
            } else {
                events.retain(|e| e.kv.mod_revision < last);
                last
            }
        } else {
            current + 1
        };
        if !range.prev_kv {
            for event in &mut events {
                event.prev_kv = None;
            }
        }
        if let Some(watcher) = self.watchers.get_mut(key) {
            watcher.next_revision = next;
        }
        if !events.is_empty() {
            self.send_watch(ctx, key, events, None);
        }
    }

    /// Feeds freshly applied events to watchers that are caught up.
    fn notify_watchers(&mut self, ctx: &mut Ctx<'_>, events: &[Event]) {
        let Some(revision) = events.first().map(|e| e.kv.mod_revision) else {
            return;
        };
        let keys: Vec<(Address, u64)> = self.watchers.keys().cloned().collect();
        for key in keys {
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            if watcher.next_revision != revision {
                continue;
            }
            let range = KeyRange::new(&watcher.range.key, &watcher.range.range_end);
            let prev_kv = watcher.range.prev_kv;
            let matching: Vec<Event> = events
                .iter()
                .filter(|e| range.contains(&e.kv.key))
                .map(|e| {
                    let mut e = e.clone();
                    if !prev_kv {
                        e.prev_kv = None;
                    }
                    e
                })
                .collect();
            if let Some(watcher) = self.watchers.get_mut(&key) {
                watcher.next_revision = revision + 1;
            }
            if watcher_too_slow(
                self.watchers.get(&key),
                self.config.watch_unacked_events_max,
            ) {
                let reason = format!(
                    "watcher fell behind: too many unacknowledged events (limit {}); re-create it from revision {revision}",
                    self.config.watch_unacked_events_max
                );
                self.cancel_watcher(ctx, &key, reason);
                continue;
            }
            if !matching.is_empty() {
                self.send_watch(ctx, &key, matching, None);
            }
        }
    }

    fn cancel_lagging_watchers(&mut self, ctx: &mut Ctx<'_>) {
        let compacted = self.state.mvcc.compacted_revision();
        let lagging: Vec<(Address, u64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| compacted > 0 && w.next_revision <= compacted)
            .map(|(k, _)| k.clone())
            .collect();
        for key in lagging {
            let reason = format!(
                "revision has been compacted (oldest is {}); re-list and watch again",
                compacted + 1
            );
            self.cancel_watcher(ctx, &key, reason);
        }
    }

    fn on_watch_ack(&mut self, from: Address, watch_id: u64, seq: u64) {
        if let Some(watcher) = self.watchers.get_mut(&(from, watch_id)) {
            while watcher.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                if let Some((_, n)) = watcher.unacked.pop_front() {
                    watcher.unacked_events -= n;
                }
            }
        }
    }

    fn watch_duties(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let progress_every = Duration::from_millis(self.config.watch_progress_ms);
        let keys: Vec<(Address, u64)> = self.watchers.keys().cloned().collect();
        for key in keys {
            self.catch_up_watcher(ctx, &key);
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            if watcher.range.progress_notify
                && watcher.next_revision > self.state.mvcc.current_revision()
                && now.since(watcher.last_sent) >= progress_every
            {
                self.send_watch(ctx, &key, Vec::new(), None);
            }
        }
    }

    // ----- ticks --------------------------------------------------------------------

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(StoreTimer::Tick, self.tick_duration());
        if self.fatal.is_some() || self.raft.is_none() {
            return;
        }
        self.ticks += 1;
        let leader = self.is_leader();
        if self.skip_ticks > 0 && !leader {
            self.skip_ticks -= 1;
        } else if let Some(raft) = self.raft.as_mut() {
            raft.tick();
        }
        let now = ctx.now();
        if leader {
            self.retry_lost_snapshots();
            self.leader_duties(ctx, now);
        } else {
            self.snapshot_waits.clear();
        }
        // Reads that never got a read index (no leader reachable) are answered.
        let timeout = Duration::from_millis(self.config.read_timeout_ms);
        let expired: Vec<u64> = self
            .pending_reads
            .iter()
            .filter(|(_, r)| now.since(r.since) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for read_id in expired {
            if let Some(read) = self.pending_reads.remove(&read_id) {
                let error = match self.leader_id() {
                    Some(_) => StoreError::Timeout,
                    None => self.no_leader_error(now),
                };
                self.respond(ctx, read.client, read.request_id, Err(error));
            }
        }
        self.watch_duties(ctx);
        self.handle_ready(ctx);
    }

    /// raft-rs keeps a peer that was sent a snapshot paused until the application
    /// reports how the snapshot went; a snapshot message lost on the network would
    /// leave the peer paused for as long as this member leads (seen under the nemesis:
    /// a new learner never caught up, so it was never promoted). A peer still waiting
    /// after `snapshot_retry_ticks` is reported failed, which makes raft probe it and
    /// send a fresh snapshot. A snapshot that did arrive ends the wait by itself (the
    /// peer's append response), so a late report only costs one more probe.
    fn retry_lost_snapshots(&mut self) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let ticks = self.ticks;
        let waiting: BTreeSet<u64> = raft
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_waits.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.snapshot_waits.entry(id).or_insert(ticks);
            if ticks.saturating_sub(since) >= self.config.snapshot_retry_ticks {
                raft.report_snapshot(id, SnapshotStatus::Failure);
                self.snapshot_waits.remove(&id);
            }
        }
    }

    fn leader_duties(&mut self, ctx: &mut Ctx<'_>, now: Time) {
        let expired: Vec<i64> = self
            .lease_deadlines
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !self.revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            // Marked only once proposed: a revocation refused now (no quorum heard
            // lately, proposal dropped) is proposed again on the next tick instead of
            // leaving the lease alive for as long as this member leads.
            if self.propose_from(ctx, None, None, ProposalOp::LeaseRevoke { id }) {
                self.revoking.insert(id);
            }
        }
        // Promote learners that asked for it once they have caught up.
        let Some(raft) = self.raft.as_ref() else {
            return;
        };
        if raft.raft.has_pending_conf() {
            return;
        }
        let committed = raft.raft.raft_log.committed;
        let learners = self.learners();
        let ready: Vec<u64> = learners
            .into_iter()
            .filter(|id| self.state.auto_promote.contains(id) && !self.promoting.contains(id))
            .filter(|id| {
                raft.raft
                    .prs()
                    .get(*id)
                    .is_some_and(|p| p.matched + 16 >= committed && p.matched > 0)
            })
            .collect();
        if let Some(id) = ready.first().copied() {
            self.promoting.insert(id);
            let address = self
                .address_of(id)
                .unwrap_or_else(|| Address::new("?", KIND, 0));
            let mut change = single_change(id, ConfChangeType::AddNode);
            self.next_seq += 1;
            let context = ConfContext {
                origin: self.config.id,
                seq: self.next_seq,
                member: Member {
                    id,
                    address,
                    learner: false,
                },
                auto_promote: false,
            };
            change.context = bincode::serialize(&context)
                .expect("conf context serializes")
                .into();
            if let Some(raft) = self.raft.as_mut() {
                if raft.propose_conf_change(Vec::new(), change).is_err() {
                    self.promoting.remove(&id);
                }
            }
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

fn watcher_too_slow(watcher: Option<&Watcher>, limit: usize) -> bool {
    watcher.is_some_and(|w| w.unacked_events >= limit)
}

fn single_change(id: u64, kind: ConfChangeType) -> ConfChangeV2 {
    let mut single = ConfChangeSingle {
        node_id: id,
        ..Default::default()
    };
    single.set_change_type(kind);
    let mut change = ConfChangeV2::default();
    change.set_changes(vec![single].into());
    change
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
                    let now = ctx.now();
                    self.last_heard.insert(message.from, now);
                    self.seen_addresses.insert(message.from, from);
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
            "max_proposals_per_flush": self.max_proposals_per_flush,
            "batched_flushes": self.batched_flushes,
            "fatal": self.fatal,
        })
    }
}
