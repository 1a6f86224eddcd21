//! Invariant checkers: they watch a run as it happens and judge it at the end.
//!
//! The host feeds every checker each [`Observation`] in simulation order, with read
//! access to the [`World`] (disks, fault state). A checker may fail at once (the first
//! failure is kept, with the simulated time) or at `finish`.

use crate::faults::Fault;
use keel_actors::Message;
use keel_engine::{Address, Control, NodeId, StartKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// Something that happened in the simulated cluster.
#[derive(Debug)]
pub enum Observation<'a> {
    /// An actor sent a message to another machine. `cut` is true when a partition
    /// stood between them at that moment (the network drops it).
    Sent {
        id: u64,
        at_ms: u64,
        from: &'a Address,
        to: &'a Address,
        msg: &'a Message,
        cut: bool,
    },
    /// The network lost a message (the loss rate took every copy, or the destination's
    /// inbox was full); not for messages cut by a partition or sent to a machine that is
    /// down, which are faults.
    Lost {
        id: u64,
        at_ms: u64,
        from: &'a Address,
        to: &'a Address,
        msg: &'a Message,
    },
    /// A message reached its actor.
    Delivered {
        id: u64,
        at_ms: u64,
        from: &'a Address,
        to: &'a Address,
        msg: &'a Message,
    },
    /// An actor started (fresh or after a crash).
    Started {
        at_ms: u64,
        actor: &'a Address,
        kind: StartKind,
    },
    /// A fault was applied.
    Fault { at_ms: u64, fault: &'a Fault },
    /// An actor emitted an observation (`Context::emit`).
    Emitted {
        at_ms: u64,
        /// Simulated nanoseconds since the start (for linearizability histories).
        at_ns: u64,
        actor: &'a Address,
        msg: &'a Message,
    },
    /// An actor asked its host to act (`Context::control`): output, done, fatal, a
    /// role claim.
    Control {
        at_ms: u64,
        actor: &'a Address,
        control: &'a Control,
    },
    /// A machine lost power; its disks lost this many unsynced batches.
    Crashed {
        at_ms: u64,
        node: &'a NodeId,
        batches_lost: u64,
    },
}

/// What checkers may read besides the observations.
pub struct World<'a> {
    pub disks: &'a BTreeMap<Address, crate::disk::SimDisk>,
    pub now_ms: u64,
    pub duration_ms: u64,
    pub last_fault_ms: u64,
}

/// A checker's verdict line in the run summary.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Verdict {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub trait Invariant {
    fn name(&self) -> &'static str;
    /// Sees one observation; an `Err` is a violation (the first one is kept).
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String>;
    /// Judges the whole run; `Ok` carries a detail line for the summary.
    fn finish(&mut self, world: &World<'_>) -> Result<String, String>;
}
