//! The bus vocabulary: one enum for every message any keel actor sends.
//!
//! Versioned by [`keel_engine::WIRE_VERSION`]: a change that old peers cannot decode
//! bumps it. Each component owns its variant's payload type in its own module.

use crate::selftest::SelfTestMessage;
use crate::store::StoreMessage;
use serde::{Deserialize, Serialize};

// Store messages dwarf the others (a status answer is a few hundred bytes), but a
// message is built once and moved to the host; boxing would cost an allocation per
// message for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// The self-test protocol that proves one actor runs in both hosts.
    SelfTest(SelfTestMessage),
    /// The store (etcd): raft between members, requests and watches from clients.
    Store(StoreMessage),
    /// The API server: Kubernetes requests, responses and watch events (objects as JSON).
    Api(crate::apiserver::ApiMessage),
    /// Observations actors emit for the simulator's invariant checkers and for logs
    /// (`Context::emit`); never sent between actors, and no host acts on them (what a
    /// host must act on is a `keel_engine::Control`).
    Report(Report),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    Store(StoreReport),
    Workload(crate::drivers::store_workload::WorkloadReport),
    /// What an API workload client saw (for the api-replicas checkers).
    Api(crate::drivers::api_workload::ApiReport),
    /// A scripted API client's answer to one step (api-semantics checkers).
    ApiScript(crate::drivers::api_script::ScriptReport),
    /// A lease client's grant, keep-alives and observations of its key.
    Lease(crate::drivers::lease_workload::LeaseReport),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreReport {
    /// This member became leader of `term`.
    Leader { term: u64, id: u64 },
    /// This member applied the log up to `index`; `digest` hashes its state machine.
    Applied {
        id: u64,
        index: u64,
        revision: i64,
        digest: u64,
    },
    /// This member applied a membership change at `index`.
    Members {
        id: u64,
        index: u64,
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
}
