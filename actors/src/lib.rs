//! keel-actors: every keel component as a deterministic actor, and the bus vocabulary.
//!
//! Pure like the engine: no I/O, clocks, threads or global randomness. Each component
//! is a folder; [`registry::Registry`] builds any actor from an `ActorSpec`, which is
//! how hosts start them and how `keel replay` rebuilds them from a trace.
//!
//! What is here:
//! 1. [`selftest`] — the cross-host proof protocol;
//! 2. [`store`] — keel's etcd: raft (raft-rs) + MVCC, watches, leases, membership;
//! 3. [`apiserver`] — the Kubernetes API over the store, and the balancer in front;
//! 4. [`client`] — the client layer every component embeds: the store and API clients,
//!    informers, the sequenced stream, the work queue and the controller runtime;
//! 5. [`controllers`] — the controller manager and its controllers (quota so far);
//! 6. [`drivers`] — the actors that exercise the components rather than being part of
//!    a cluster: the store and API workloads the simulator's checkers judge, benchmark
//!    clients, the one-shot actors of the command-line clients and the golden API
//!    script (moved out of `store/` and `apiserver/`; they use the components only
//!    through the client layer and the bus vocabulary, so no component depends on them);
//! 7. [`message`] — the bus vocabulary; [`registry`] — one table,
//!    [`registry::KINDS`], with one row per kind (name, one-line description, builder),
//!    every row built by the one generic [`registry::build`]; `keel kinds` prints it.

pub mod apiserver;
pub mod client;
pub mod controllers;
pub mod drivers;
pub mod message;
pub mod registry;
pub mod selftest;
pub mod store;

pub use message::Message;
pub use registry::Registry;
