//! keel-sim: the deterministic simulator host, on madsim.
//!
//! One seed gives one run, bit for bit. Each machine's actors, input queue and timers
//! live in a `keel_engine::NodeRuntime`, the same runtime the real host drives, so the
//! order in which a machine handles its inputs is the engine's one rule
//! (`engine/src/node.rs`). The work is split:
//! * **madsim** schedules the tasks (on one thread, deterministically from the seed),
//!   owns simulated time (the clocks the runtimes are given, sleeps and timeouts) and
//!   the random number generator (latencies, loss, duplication, how many unsynced
//!   batches survive a crash, each actor's RNG seed), and gives one node per machine
//!   whose handle kills, restarts, pauses and resumes it. madsim's network is not used.
//! * **the host** ([`host`]) builds each machine's actors through `keel_actors::Registry`
//!   and drives its runtime; carries datagrams (bincode envelopes, the real wire codec)
//!   over its own network model — latency drawn uniformly from a range, loss,
//!   duplication, a bounded in-flight queue per machine, partitions that drop at send;
//!   keeps the disks (`MemStorage`, outside the madsim nodes so they survive a kill,
//!   losing unsynced writes by the crash model when a machine is killed); applies clock
//!   skew to what actors read as the wall clock; and reports every observation
//!   ([`invariant::Observation`]) to the invariant checkers.
//!
//! Drive loop of a run ([`host::run`]):
//! 1. build one madsim node per machine; its init task creates the machine's
//!    `NodeRuntime`, starts the actors (fresh on the first boot, restart after) and then
//!    loops: hand over due datagrams, run turns until nothing is queued, release the
//!    outputs, sleep until the next deadline or arrival (see [`host`]);
//! 2. the main task applies the [`faults::FaultSchedule`] at its simulated times:
//!    partitions and heals (cut links in the host's network model), kills and restarts
//!    (madsim node handles; the host drops the machine's runtime and what was in flight
//!    to it, and applies the disk crash model), killing the store leader (the machine of
//!    the latest `Control::Claim` of the leader role), pauses and resumes (madsim node
//!    handles), clock skew, network changes, and injected operator messages;
//! 3. every trace event (one per actor input) is hashed into the trace hash (and
//!    written to a trace file when recording), and every send (with whether a partition
//!    cut it), loss, delivery, start, emitted observation, host control, crash and fault
//!    is shown to the [`invariant::Invariant`] checkers, which may read the disks;
//! 4. at the end the checkers judge the run (plus `actors-healthy`: every actor built
//!    and handled every input) and [`host::RunSummary`] is returned.
//!
//! The other modules: [`faults`] (schedules as serde data), [`nemesis`] (a schedule
//! drawn from the seed), [`scenarios`] (named runs for `keel sim --scenario`), and
//! [`linearizability`] (the checker of KV histories; its operation type is the store
//! workload's `keel_actors::drivers::store_workload::KvOp`, re-exported).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod disk;
pub mod faults;
pub mod host;
pub mod invariant;
pub mod linearizability;
pub mod nemesis;
pub mod scenarios;

pub use faults::{Fault, FaultSchedule, TimedFault};
pub use host::{run, Machine, NetworkConfig, RunSummary, SimConfig, SimError};
pub use invariant::{Invariant, Observation, Verdict, World};

/// Runs a named scenario; the command that reproduces it is [`reproduce_command`].
pub fn run_scenario(
    scenario: &scenarios::Scenario,
    seed: u64,
    duration_ms: u64,
    record: Option<std::path::PathBuf>,
    progress_every_ms: Option<u64>,
    faults: Option<FaultChoice>,
) -> Result<RunSummary, SimError> {
    let setup = (scenario.build)(seed, duration_ms);
    let faults = match faults {
        Some(FaultChoice::Given(schedule)) => schedule,
        Some(FaultChoice::Nemesis(config)) => {
            nemesis_for_setup(scenario, seed, duration_ms, &setup, &config)
        }
        None => setup.faults,
    };
    let invariants = (scenario.invariants)(&faults);
    run(SimConfig {
        scenario: scenario.name.to_string(),
        seed,
        duration_ms,
        machines: setup.machines,
        network: setup.network,
        faults,
        invariants,
        record,
        progress_every_ms,
    })
}

/// Where a run's faults come from when not from the scenario itself.
#[derive(Clone, Debug)]
pub enum FaultChoice {
    /// A schedule given by the user (`--faults FILE`).
    Given(FaultSchedule),
    /// One drawn from the seed by the nemesis (`--nemesis`).
    Nemesis(nemesis::NemesisConfig),
}

/// The schedule `--nemesis` draws for this scenario, seed and duration.
pub fn nemesis_schedule(
    scenario: &scenarios::Scenario,
    seed: u64,
    duration_ms: u64,
    config: &nemesis::NemesisConfig,
) -> FaultSchedule {
    let setup = (scenario.build)(seed, duration_ms);
    nemesis_for_setup(scenario, seed, duration_ms, &setup, config)
}

fn nemesis_for_setup(
    scenario: &scenarios::Scenario,
    seed: u64,
    duration_ms: u64,
    setup: &scenarios::Setup,
    config: &nemesis::NemesisConfig,
) -> FaultSchedule {
    let names: Vec<String> = setup.machines.iter().map(|m| m.name.clone()).collect();
    let spared = match scenario.nemesis {
        scenarios::NemesisUse::Spare(spared) => spared,
        scenarios::NemesisUse::Refused(_) => &[],
    };
    nemesis::schedule(
        seed,
        &names,
        spared,
        &setup.network,
        duration_ms,
        &setup.faults,
        config,
    )
}

/// The exact command line that reproduces a run.
pub fn reproduce_command(scenario: &str, seed: u64, duration_ms: u64) -> String {
    format!("keel sim --scenario {scenario} --seed {seed} --duration {duration_ms}ms")
}
