//! keel-sim: the deterministic simulator host, on madsim.
//!
//! One seed gives one run, bit for bit: madsim schedules every task, owns time and the
//! random number generator, and simulates the network; keel adds disks that lose
//! unsynced writes, fault schedules, invariant checkers and the run summary.
//!
//! Drive loop of a run ([`host::run`]):
//! 1. build one madsim node per machine; each node's init task starts that machine's
//!    actors (see [`host`] for the per-machine loop);
//! 2. the main task applies the [`faults::FaultSchedule`] at its simulated times:
//!    partitions and heals (cut links in the host's network model), kills and restarts (madsim node handles, plus
//!    the disk crash model), pauses, clock skew, network changes;
//! 3. every actor step is hashed into the trace hash (and written to a trace file when
//!    recording) and every send, delivery, start, crash and fault is shown to the
//!    [`invariant::Invariant`] checkers;
//! 4. at the end the checkers judge the run and [`host::RunSummary`] is returned.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

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
