//! Named scenarios for `keel sim --scenario NAME`: a cluster, its network, a fault
//! schedule and the invariants that judge it.

pub mod api;
pub mod lease;
pub mod selftest;
pub mod store;

use crate::faults::FaultSchedule;
use crate::host::{Machine, NetworkConfig};
use crate::invariant::Invariant;

/// What a scenario sets up for one run.
pub struct Setup {
    pub machines: Vec<Machine>,
    pub network: NetworkConfig,
    pub faults: FaultSchedule,
}

pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub default_duration_ms: u64,
    /// Builds the run from the seed and duration (fault times scale with the duration).
    pub build: fn(seed: u64, duration_ms: u64) -> Setup,
    /// The checkers that judge a run, told which faults it will see.
    pub invariants: fn(&FaultSchedule) -> Vec<Box<dyn Invariant + Send>>,
    /// What `--nemesis` may do to this scenario.
    pub nemesis: NemesisUse,
}

/// How the nemesis treats a scenario.
#[derive(Clone, Copy, Debug)]
pub enum NemesisUse {
    /// Faults on every machine but these: the workload's clients, which are the
    /// observers (as Jepsen's control node is), are partitioned but never killed,
    /// paused or skewed — a checker cannot judge operations whose caller lost its memory.
    Spare(&'static [&'static str]),
    /// The nemesis does not apply, for this reason.
    Refused(&'static str),
}

/// The scenario `keel sim` runs when none is named.
pub const DEFAULT_SCENARIO: &str = "api-replicas";

pub fn all() -> &'static [Scenario] {
    &[
        Scenario {
            name: "store",
            description: "a 3-member store under 4 clients: leader killed twice, a minority partition, loss",
            default_duration_ms: 30_000,
            build: store::faulty,
            invariants: store::invariants,
            nemesis: NemesisUse::Spare(store::CLIENT_MACHINES),
        },
        Scenario {
            name: "store-quorum-loss",
            description: "2 of 3 store members killed: writes refused with \"no quorum\", then service resumes",
            default_duration_ms: 30_000,
            build: store::quorum_loss,
            invariants: store::invariants,
            nemesis: NemesisUse::Spare(store::CLIENT_MACHINES),
        },
        Scenario {
            name: "store-leader-churn",
            description: "a 5-member store whose leader is killed four times, then a minority partition",
            default_duration_ms: 40_000,
            build: store::leader_churn,
            invariants: store::invariants_five,
            nemesis: NemesisUse::Spare(store::CLIENT_MACHINES),
        },
        Scenario {
            name: "store-membership",
            description: "a member added under load (learner, then promoted) and another removed",
            default_duration_ms: 40_000,
            build: store::membership,
            invariants: store::invariants,
            nemesis: NemesisUse::Spare(store::CLIENT_MACHINES),
        },
        Scenario {
            name: "store-lease",
            description: "a key on a 3 s lease kept alive across a leader kill, then left to expire across another",
            default_duration_ms: 40_000,
            build: lease::lease,
            invariants: lease::invariants,
            nemesis: NemesisUse::Spare(store::CLIENT_MACHINES),
        },
        Scenario {
            name: "api-replicas",
            description: "three API servers over a 3-member store: compare-and-swap writers and list+watch clients while an API server and the store leader die",
            default_duration_ms: 40_000,
            build: api::faulty,
            invariants: api::invariants,
            nemesis: NemesisUse::Spare(api::CLIENT_MACHINES),
        },
        Scenario {
            name: "api-semantics",
            description: "a scripted client checks status codes and messages of one API server: conflicts, finalizers, validation, defaults, selectors, pagination",
            default_duration_ms: 15_000,
            build: api::semantics,
            invariants: api::semantics_invariants,
            nemesis: NemesisUse::Refused("a golden script of exact status codes, step by step: any fault changes the expected answers"),
        },
        Scenario {
            name: "selftest",
            description: "3 machines run the self-test protocol through partitions, a kill/restart, a pause, clock skew, loss and duplication",
            default_duration_ms: 30_000,
            build: selftest::faulty,
            invariants: selftest::invariants,
            nemesis: NemesisUse::Spare(&[]),
        },
        Scenario {
            name: "selftest-calm",
            description: "3 machines run the self-test protocol on a quiet network with no faults",
            default_duration_ms: 10_000,
            build: selftest::calm,
            invariants: selftest::invariants,
            nemesis: NemesisUse::Spare(&[]),
        },
        Scenario {
            name: "selftest-random",
            description: "3 machines run the self-test protocol under a fault schedule drawn from the seed",
            default_duration_ms: 30_000,
            build: selftest::random,
            invariants: selftest::invariants,
            nemesis: NemesisUse::Spare(&[]),
        },
    ]
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().find(|s| s.name == name)
}
