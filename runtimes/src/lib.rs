//! keel-runtimes: the real host. The same node runtime that runs in the simulator runs
//! here on an actix system's thread, with sled for storage, TCP for the bus and the wall
//! clock for time.
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
//! 4. start the node runtime's drive loop (`keel_engine::node`, the same runtime the
//!    simulator drives): hand the runtime what arrived on the bus, run a turn, release
//!    its outputs — envelopes for other nodes to the transport, trace events to the
//!    trace file, `Control` requests to the host (print, stop), observations to the log
//!    — and sleep until the next arrival or the runtime's next deadline. Which input
//!    runs when (arrivals, local messages, zero-delay and due timers) is the runtime's
//!    one ordering rule, not this host's;
//! 5. timers run on the process's monotonic clock; actors read the wall clock;
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

pub use host::{run_node, CommandResult, NodeConfig, NodeReport, RuntimeError, StorageEngine};
pub use sled_storage::SledStorage;
pub use transport::{
    BoundListener, Handshake, Inbox, SendOutcome, Transport, TransportConfig, TransportError,
    TransportStats,
};
pub use wal_storage::WalStorage;
