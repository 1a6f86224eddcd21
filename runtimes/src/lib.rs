//! keel-runtimes: the real host. The same actors that run in the simulator run here as
//! actix actors, with sled for storage, TCP for the bus and the wall clock for time.
//!
//! One process hosts the actors of one machine ([`NodeConfig`]); [`run_node`] drives
//! them:
//! 1. validate the configuration, draw the process seed (`rand::random`), open the sled
//!    database in the data directory, open the trace file when recording, and bind the
//!    bus listener — each failure is a [`RuntimeError`] naming what to fix;
//! 2. for each actor: open its sled tree ([`SledStorage`]), choose `Fresh` (empty tree)
//!    or `Restart` (the tree holds an earlier run's state), build it from its spec with
//!    the actor registry and start its [`keel_engine::ActorCell`] with a seed derived
//!    from the process seed and its address;
//! 3. start the [`Transport`]: one outbound task per peer, the accept loop, the inbox;
//! 4. give every actor an actix mailbox, then run them: each releases its start step;
//! 5. for each input (a message from a local actor or the bus, or a timer firing that is
//!    not stale) the actor's cell takes one step; its writes are already in storage
//!    (synced where it asked), so the host then releases its sends — local ones to the
//!    destination's mailbox, remote ones to the bus — schedules its timers, and appends
//!    the step's event to the trace when recording;
//! 6. log a status line every `status_interval_ms`;
//! 7. on `run_for_ms` or SIGINT/SIGTERM: collect every actor's status, stop the bus and
//!    the actors, flush the database, finish the trace, and return a [`NodeReport`].
//!
//! Delivery is at-most-once everywhere (full queues and broken connections drop
//! messages, counted), as in the simulator, because the actors are written for it.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod etcd_wire;
pub mod host;
pub mod sled_storage;
pub mod transport;
pub mod wal_storage;

pub use host::{
    run_node, CommandResult, HostStats, NodeConfig, NodeReport, RuntimeError, StorageEngine,
};
pub use sled_storage::SledStorage;
pub use transport::{
    BoundListener, Handshake, Inbox, SendOutcome, Transport, TransportConfig, TransportError,
    TransportStats,
};
pub use wal_storage::WalStorage;
