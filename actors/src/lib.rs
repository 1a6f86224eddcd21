//! keel-actors: every keel component as a deterministic actor, and the bus vocabulary.
//!
//! Pure like the engine: no I/O, clocks, threads or global randomness. Each component
//! is a folder; [`registry::Registry`] builds any of them from an `ActorSpec`, which is
//! how hosts start them and how `keel replay` rebuilds them from a trace.
//!
//! Components so far:
//! 1. [`selftest`] — the cross-host proof protocol (until the store lands, `keel sim`'s
//!    default scenario runs it).
//! 2. [`store`] — keel's etcd: the MVCC state machine (the raft actor is on its way).

pub mod apiserver;
pub mod client;
pub mod controllers;
pub mod message;
pub mod registry;
pub mod selftest;
pub mod store;

pub use message::Message;
pub use registry::Registry;
