//! The store member's configuration and limits.

use super::types::Limits;
use keel_engine::Address;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// This member's raft id (1-based, unique in the cluster).
    pub id: u64,
    /// The initial cluster: id → address of each member's store actor. A member that
    /// joins an existing cluster (`join = true`) starts empty and learns the
    /// membership from the leader.
    pub initial_members: Vec<(u64, Address)>,
    #[serde(default)]
    pub join: bool,
    /// One raft tick. Election timeout = `election_ticks` ticks (plus up to as many
    /// again, drawn from the actor's seeded RNG after every role change).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "default_election_ticks")]
    pub election_ticks: usize,
    #[serde(default = "default_heartbeat_ticks")]
    pub heartbeat_ticks: usize,
    /// A peer sent a snapshot and still waiting for it this many ticks later is
    /// presumed to have lost it and is sent another (see `Store::retry_lost_snapshots`).
    #[serde(default = "default_snapshot_retry_ticks")]
    pub snapshot_retry_ticks: u64,
    /// Proposals (writes) waiting for commit on this member; more get TooManyRequests.
    #[serde(default = "default_inflight_proposals_max")]
    pub inflight_proposals_max: usize,
    /// Linearizable reads waiting for their read index.
    #[serde(default = "default_inflight_reads_max")]
    pub inflight_reads_max: usize,
    /// The applied state is written to storage once this many entries have applied
    /// since it last was (and with every local snapshot): one batch per so many
    /// entries instead of one per Ready. A restart re-applies at most this many
    /// entries from the log; the batch costs what they changed.
    #[serde(default = "default_state_write_every_entries")]
    pub state_write_every_entries: u64,
    /// A whole-state snapshot for a follower behind the log's start travels in chunks
    /// of this many bytes (the follower asks for each; one in flight), so a state of
    /// any size stays under the transport's frame limit (16 MiB by default).
    #[serde(default = "default_snapshot_chunk_bytes")]
    pub snapshot_chunk_bytes: usize,
    /// A chunk not answered within this many ticks is asked for again, at most
    /// `snapshot_chunk_retries` times in a row before the follower gives the transfer
    /// up (the leader then sends a new snapshot: `snapshot_retry_ticks`).
    #[serde(default = "default_snapshot_chunk_retry_ticks")]
    pub snapshot_chunk_retry_ticks: u64,
    #[serde(default = "default_snapshot_chunk_retries")]
    pub snapshot_chunk_retries: u32,
    /// Every this many applied entries, drop the log below the applied index (keeping
    /// the catch-up entries): a local snapshot. The state itself is written as it
    /// applies (`super::checkpoint`), so this costs no more than a turn's writes.
    #[serde(default = "default_snapshot_every_entries")]
    pub snapshot_every_entries: u64,
    /// Entries kept below a local snapshot, so a follower a little behind catches up from
    /// the log instead of needing the whole state (etcd's SnapshotCatchUpEntries, 5000).
    #[serde(default = "default_snapshot_catch_up_entries")]
    pub snapshot_catch_up_entries: u64,
    #[serde(default = "default_watchers_per_client_max")]
    pub watchers_per_client_max: usize,
    /// Events a watcher may have outstanding (sent, not acknowledged) before it is
    /// cancelled as too slow.
    #[serde(default = "default_watch_unacked_events_max")]
    pub watch_unacked_events_max: usize,
    /// Events per watch message.
    #[serde(default = "default_watch_batch_events")]
    pub watch_batch_events: usize,
    /// Progress notifications to idle watchers, every this many ms.
    #[serde(default = "default_watch_progress_ms")]
    pub watch_progress_ms: u64,
    /// A proposal not applied within this time is forgotten (its client gave up: it
    /// waits 5 s); it stops counting towards `inflight_proposals_max`.
    #[serde(default = "default_pending_write_timeout_ms")]
    pub pending_write_timeout_ms: u64,
    /// A pending read that got no read index within this time is answered Timeout.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// raft's limits on replication messages.
    #[serde(default = "default_max_size_per_msg")]
    pub max_size_per_msg: u64,
    #[serde(default = "default_max_inflight_msgs")]
    pub max_inflight_msgs: usize,
    #[serde(default)]
    pub limits: Limits,
    /// Report (index, revision, state digest) every this many applied entries, for the
    /// simulator's agreement check; 0 turns it off (hashing the state is not free).
    #[serde(default)]
    pub applied_report_every_entries: u64,
}

fn default_tick_ms() -> u64 {
    100
}
fn default_election_ticks() -> usize {
    10
}
fn default_heartbeat_ticks() -> usize {
    2
}
fn default_snapshot_retry_ticks() -> u64 {
    30
}
fn default_inflight_proposals_max() -> usize {
    4096
}
fn default_inflight_reads_max() -> usize {
    4096
}
fn default_snapshot_every_entries() -> u64 {
    // etcd's --snapshot-count before 3.2. The log kept in between costs disk and its
    // entries' memory; the state is stored as it applies either way.
    10_000
}
fn default_state_write_every_entries() -> u64 {
    // One batch per about two Readies of 64 clients; at 1 KiB values about 130 KB,
    // a few ms to write. 1,000 made 1 MB batches and put p99 2-3x worse at 1 KiB;
    // one batch per Ready cost small puts ~20% of their throughput.
    128
}
fn default_pending_write_timeout_ms() -> u64 {
    30_000
}
fn default_snapshot_chunk_bytes() -> usize {
    1024 * 1024
}
fn default_snapshot_chunk_retry_ticks() -> u64 {
    10
}
fn default_snapshot_chunk_retries() -> u32 {
    5
}
fn default_snapshot_catch_up_entries() -> u64 {
    // Without them, every snapshot cut the log right at the applied index: followers a
    // few entries behind then needed the whole state sent and installed, and writes
    // stalled for seconds (issue 9: max put latency 2.6-4 s at 100,000 entries).
    5_000
}
fn default_watchers_per_client_max() -> usize {
    1024
}
fn default_watch_unacked_events_max() -> usize {
    10_000
}
fn default_watch_batch_events() -> usize {
    256
}
fn default_watch_progress_ms() -> u64 {
    1000
}
fn default_read_timeout_ms() -> u64 {
    3000
}
fn default_max_size_per_msg() -> u64 {
    1024 * 1024
}
fn default_max_inflight_msgs() -> usize {
    256
}

impl StoreConfig {
    /// A member of a new cluster with default tuning.
    pub fn new(id: u64, initial_members: Vec<(u64, Address)>) -> Self {
        StoreConfig {
            id,
            initial_members,
            join: false,
            tick_ms: default_tick_ms(),
            election_ticks: default_election_ticks(),
            heartbeat_ticks: default_heartbeat_ticks(),
            snapshot_retry_ticks: default_snapshot_retry_ticks(),
            inflight_proposals_max: default_inflight_proposals_max(),
            inflight_reads_max: default_inflight_reads_max(),
            snapshot_chunk_bytes: default_snapshot_chunk_bytes(),
            snapshot_chunk_retry_ticks: default_snapshot_chunk_retry_ticks(),
            snapshot_chunk_retries: default_snapshot_chunk_retries(),
            snapshot_every_entries: default_snapshot_every_entries(),
            snapshot_catch_up_entries: default_snapshot_catch_up_entries(),
            watchers_per_client_max: default_watchers_per_client_max(),
            watch_unacked_events_max: default_watch_unacked_events_max(),
            watch_batch_events: default_watch_batch_events(),
            watch_progress_ms: default_watch_progress_ms(),
            pending_write_timeout_ms: default_pending_write_timeout_ms(),
            state_write_every_entries: default_state_write_every_entries(),
            read_timeout_ms: default_read_timeout_ms(),
            max_size_per_msg: default_max_size_per_msg(),
            max_inflight_msgs: default_max_inflight_msgs(),
            limits: Limits::default(),
            applied_report_every_entries: 0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("member id must be at least 1".into());
        }
        if !self.join && !self.initial_members.iter().any(|(id, _)| *id == self.id) {
            return Err(format!("member {} is not in the initial cluster", self.id));
        }
        let mut ids: Vec<u64> = self.initial_members.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.initial_members.len() || ids.contains(&0) {
            return Err("initial member ids must be unique and at least 1".into());
        }
        if self.tick_ms == 0 || self.tick_ms > 10_000 {
            return Err("tick_ms must be within 1..=10000".into());
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(
                "election_ticks must exceed heartbeat_ticks, which must be at least 1".into(),
            );
        }
        if self.snapshot_retry_ticks == 0 {
            return Err("snapshot_retry_ticks must be at least 1".into());
        }
        for (name, value) in [
            ("inflight_proposals_max", self.inflight_proposals_max),
            ("inflight_reads_max", self.inflight_reads_max),
            ("watchers_per_client_max", self.watchers_per_client_max),
            ("watch_unacked_events_max", self.watch_unacked_events_max),
            ("watch_batch_events", self.watch_batch_events),
            ("max_inflight_msgs", self.max_inflight_msgs),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.snapshot_chunk_bytes < 1024 || self.snapshot_chunk_bytes > 8 * 1024 * 1024 {
            return Err("snapshot_chunk_bytes must be within 1024..=8388608".into());
        }
        if self.pending_write_timeout_ms < 1000 {
            return Err("pending_write_timeout_ms must be at least 1000".into());
        }
        if self.snapshot_chunk_retry_ticks == 0 {
            return Err("snapshot_chunk_retry_ticks must be at least 1".into());
        }
        if self.state_write_every_entries == 0
            || self.state_write_every_entries > self.snapshot_every_entries
        {
            return Err(
                "state_write_every_entries must be within 1..=snapshot_every_entries".into(),
            );
        }
        if self.snapshot_every_entries == 0 {
            return Err("snapshot_every_entries must be at least 1".into());
        }
        self.limits.validate()
    }
}
