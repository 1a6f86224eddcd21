//! The store: keel's etcd. A replicated, revisioned key-value store with etcd v3's
//! semantics (ranges, puts, deletes, transactions, compaction, leases, watches).
//!
//! Submodules:
//! 1. [`types`] — the request/response vocabulary, errors and limits;
//! 2. [`mvcc`] — the deterministic state machine every member applies committed
//!    requests to;
//! 3. [`raft_log`] — raft-rs's log storage, mirrored to the member's durable storage;
//!    `checkpoint` keeps the applied state there too, written a piece at a time;
//! 4. [`messages`] — what members and clients say on the bus;
//! 5. [`config`] — a member's configuration and limits;
//! 6. [`actor`] — the member itself: raft, watches, lease deadlines, membership
//!    requests; what it applies goes through `apply` (the replicated state machine:
//!    MVCC, member directory, client sessions — pure and unit-tested);
//! 7. [`client`] — the client library other actors embed (it lives in `crate::client`).
//!
//! The store's drivers (workloads, benchmark, command-line client) are in
//! `crate::drivers`.

pub mod actor;
mod apply;
mod checkpoint;
pub use crate::client::store as client;
pub mod config;
pub mod messages;
pub mod mvcc;
pub mod raft_log;
pub mod types;

pub use actor::{Store, KIND, LEADER_ROLE};
pub use config::StoreConfig;
pub use messages::{
    Member, MemberStatus, StoreMessage, StoreRequest, StoreResponse, WatchCreate, WatchEvents,
};
