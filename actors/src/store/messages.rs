//! The store's bus vocabulary: what members say to each other and what clients ask.

use super::types::{
    CompactRequest, DeleteRangeRequest, DeleteRangeResponse, Event, PutRequest, PutResponse,
    RangeRequest, RangeResponse, StoreError, TxnRequest, TxnResponse,
};
use keel_engine::Address;
use serde::{Deserialize, Serialize};

/// Everything the store sends or receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreMessage {
    /// A raft message between members (raft-rs protobuf bytes; a byte string in
    /// serde, copied whole).
    Raft(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A client request; `id` is the client's, echoed in the response. Writes from a
    /// client `session` (non-zero, random per client incarnation, ids increasing) are
    /// applied at most once even if the bus delivers the request twice.
    Request {
        id: u64,
        session: u64,
        request: StoreRequest,
    },
    /// The answer to a request, with where the leader is (for redirects).
    Response {
        id: u64,
        result: Result<StoreResponse, StoreError>,
        leader: Option<Address>,
    },
    /// Events (or a progress notification, or a cancellation) for one watch.
    Watch(WatchEvents),
    /// A client acknowledges having received a watch's events up to `seq`.
    WatchAck { watch_id: u64, seq: u64 },
    /// A follower asks the leader for the bytes at `offset` of the whole-state snapshot
    /// at (`index`, `term`) (see `actor::snapshots`).
    SnapshotChunkRequest { index: u64, term: u64, offset: u64 },
    /// The leader's answer: up to `snapshot_chunk_bytes` bytes from `offset`, or `None`
    /// when it no longer holds that snapshot.
    SnapshotChunk {
        index: u64,
        term: u64,
        offset: u64,
        bytes: Option<serde_bytes::ByteBuf>,
    },
}

/// What a client can ask a member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreRequest {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactRequest),
    /// `id` 0 lets the leader choose.
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    LeaseKeepAlive {
        id: i64,
    },
    LeaseTimeToLive {
        id: i64,
    },
    LeaseList,
    WatchCreate(WatchCreate),
    WatchCancel {
        watch_id: u64,
    },
    MemberAdd {
        address: Address,
        learner: bool,
    },
    MemberRemove {
        id: u64,
    },
    MemberPromote {
        id: u64,
    },
    MemberList,
    Status,
}

impl StoreRequest {
    /// Whether the request changes the replicated state (goes through the raft log).
    pub fn is_write(&self) -> bool {
        if let StoreRequest::Txn(txn) = self {
            return !txn.is_read_only();
        }
        !matches!(
            self,
            StoreRequest::Range(_)
                | StoreRequest::LeaseTimeToLive { .. }
                | StoreRequest::LeaseList
                | StoreRequest::LeaseKeepAlive { .. }
                | StoreRequest::WatchCreate(_)
                | StoreRequest::WatchCancel { .. }
                | StoreRequest::MemberList
                | StoreRequest::Status
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchCreate {
    /// Chosen by the client, unique among its watches.
    pub watch_id: u64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 means "from the next change".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreResponse {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact {
        header_revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
        header_revision: i64,
    },
    LeaseRevoke {
        header_revision: i64,
    },
    LeaseKeepAlive {
        id: i64,
        ttl_seconds: i64,
    },
    LeaseTimeToLive {
        id: i64,
        ttl_seconds: i64,
        granted_ttl_seconds: i64,
        keys: Vec<Vec<u8>>,
    },
    LeaseList {
        leases: Vec<(i64, i64)>,
    },
    WatchCreated {
        watch_id: u64,
        header_revision: i64,
    },
    WatchCanceled {
        watch_id: u64,
    },
    Members {
        header_revision: i64,
        members: Vec<Member>,
    },
    Status(MemberStatus),
}

/// A stream message for one watch. `seq` increases by one per message so the client
/// can detect a lost message (the bus is at-most-once) and resume from a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvents {
    pub watch_id: u64,
    pub seq: u64,
    pub header_revision: i64,
    pub events: Vec<Event>,
    /// Set when the watch ended; the client must re-create it (re-listing first if
    /// `compact_revision` says its revision is gone).
    pub canceled: Option<String>,
    pub compact_revision: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub address: Address,
    pub learner: bool,
}

/// One member's view of the cluster, as `keel store status` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub address: Address,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub compacted_revision: i64,
    pub members: Vec<Member>,
    /// Members this one heard from within an election timeout (itself included).
    pub reachable: Vec<u64>,
    pub voters: usize,
    pub quorum: usize,
    pub keys: usize,
    pub watchers: usize,
    pub leases: usize,
}

impl MemberStatus {
    /// "3 members, 2 healthy, quorum 2: writable".
    pub fn summary(&self) -> String {
        let healthy = self.reachable.len();
        let writable = self.leader.is_some() && healthy >= self.quorum;
        format!(
            "{} members, {} healthy, quorum {}: {}",
            self.voters,
            healthy,
            self.quorum,
            if writable { "writable" } else { "NOT writable" }
        )
    }
}
