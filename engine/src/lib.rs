//! keel-engine: the actor contract every keel component is written against.
//!
//! Pure: no I/O, no async, no clocks, no threads, no Kubernetes knowledge. Hosts
//! (`keel-sim`, `keel-runtimes`) bring time, randomness, the network and disks.
//!
//! The drive loop a host runs for each actor (see [`cell`] for the details):
//! 1. build the actor from an [`ActorSpec`] with an [`ActorFactory`];
//! 2. wrap it in an [`ActorCell`] with a per-actor RNG seed and its [`Storage`], and
//!    deliver `Start` (fresh, or restart after a crash);
//! 3. deliver each incoming [`Envelope`]'s message, and each timer firing that is not
//!    stale, one at a time;
//! 4. after each input: the actor's writes are already in its storage (synced where it
//!    asked), so release its sends, then schedule its timers;
//! 5. optionally append each step's [`TraceEvent`] to a trace ([`trace`]), which
//!    [`replay`] re-runs and compares.

pub mod actor;
pub mod address;
pub mod cell;
pub mod envelope;
pub mod node;
pub mod replay;
pub mod storage;
pub mod trace;
pub mod wal;

pub use actor::{
    Actor, ActorFactory, ActorSpec, Context, Control, DynActor, Effect, Input, RawInput, StartKind,
    Time, TimerKey,
};
pub use address::{Address, NodeId};
pub use cell::{ActorCell, Step, TimerFiring};
pub use envelope::{Envelope, EnvelopeError, Message, WIRE_VERSION};
pub use node::{
    Arrivals, Clocks, Disks, NodeLimits, NodeOutput, NodeRuntime, NodeStats, Refused, Woke,
};
pub use replay::{replay, Divergence, ReplayReport};
pub use storage::{MemStorage, Storage, StorageError, WriteBatch, WriteOp};
pub use trace::{
    TraceDigest, TraceError, TraceEvent, TraceHeader, TraceReader, TraceRecord, TraceWriter,
};
