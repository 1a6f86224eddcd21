//! `keel sim` and `keel scenarios`.

use super::{bad_input, parse_duration, EXIT_FAILED, EXIT_OK};
use keel_sim::nemesis::NemesisConfig;
use keel_sim::scenarios::{self, DEFAULT_SCENARIO};
use keel_sim::{reproduce_command, FaultChoice, FaultSchedule, RunSummary};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// The seed (default: $MADSIM_TEST_SEED, else one drawn from the clock and printed).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed of a range: `A..B` (B excluded) or `A..=B`.
    #[arg(long)]
    seeds: Option<String>,
    /// Simulated duration: `30s`, `500ms`, `2m` (default: the scenario's own).
    #[arg(long)]
    duration: Option<String>,
    /// Which scenario to run (`keel scenarios` lists them).
    #[arg(long, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// Write every actor input to this trace file (`keel replay FILE` re-runs it).
    #[arg(long)]
    record: Option<PathBuf>,
    /// A JSON fault schedule to use instead of the scenario's own.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Print the summary as JSON (one line for a seed; one document for a sweep).
    #[arg(long)]
    json: bool,
    /// Draw a random fault schedule from the seed (partitions of every shape, one-way
    /// cuts, kills, pauses, clock skew, bad networks, then a quiet tail) instead of the
    /// scenario's own faults.
    #[arg(long, conflicts_with = "faults")]
    nemesis: bool,
    /// Seeds run at once in a sweep (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop a sweep at its first failing seed (seeds already running finish).
    #[arg(long)]
    fail_fast: bool,
    /// Allow a sweep of more than 10,000 seeds.
    #[arg(long)]
    yes: bool,
    /// Internal: a sweep's child run (no progress lines; JSON summary on stdout).
    #[arg(long, hide = true)]
    child: bool,
}

/// Parses `A..B` or `A..=B` into the seeds it names.
pub fn parse_seed_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let not_a_range =
        || format!("seed range {text:?} is not a range: expected A..B or A..=B, such as 1..20");
    let (start, end, inclusive) = if let Some((a, b)) = text.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = text.split_once("..") {
        (a, b, false)
    } else {
        return Err(not_a_range());
    };
    let start: u64 = start.trim().parse().map_err(|_| not_a_range())?;
    let mut end: u64 = end.trim().parse().map_err(|_| not_a_range())?;
    if inclusive {
        end = end.checked_add(1).ok_or_else(not_a_range)?;
    }
    if start >= end {
        return Err(format!("seed range {text:?} is empty"));
    }
    if end - start > super::sweep::SEEDS_MAX_WITH_YES {
        return Err(format!(
            "seed range {text:?} has more than {} seeds",
            super::sweep::SEEDS_MAX_WITH_YES
        ));
    }
    Ok(start..end)
}

fn default_seed() -> Result<u64, String> {
    match std::env::var("MADSIM_TEST_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("MADSIM_TEST_SEED={text:?} is not a number")),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000_000)
            .unwrap_or(1)),
    }
}

fn print_human(summary: &RunSummary) {
    let speed = if summary.wall_ms == 0 {
        f64::INFINITY
    } else {
        summary.sim_time_ms as f64 / summary.wall_ms as f64
    };
    println!(
        "{} seed {}: {} — {} events, {:.1} s simulated in {:.2} s wall ({:.1}× real time), trace hash {}",
        summary.scenario,
        summary.seed,
        if summary.ok { "ok" } else { "FAILED" },
        summary.events,
        summary.sim_time_ms as f64 / 1000.0,
        summary.wall_ms as f64 / 1000.0,
        speed,
        summary.trace_hash
    );
    for verdict in &summary.invariants {
        println!(
            "  {} {:<22} {}",
            if verdict.ok { "ok  " } else { "FAIL" },
            verdict.name,
            verdict.detail
        );
    }
    let n = &summary.network;
    println!(
        "  network: {} sent, {} delivered, {} cut by partitions, {} lost, {} duplicated, {} dropped at full inboxes",
        n.sent, n.delivered, n.cut_by_partition, n.lost, n.duplicated, n.inbox_overflow
    );
}

pub fn run(args: SimArgs) -> u8 {
    super::init_logging("warn,madsim=error");
    let Some(scenario) = scenarios::find(&args.scenario) else {
        let names: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
        return bad_input(format!(
            "unknown scenario {:?} (known: {})",
            args.scenario,
            names.join(", ")
        ));
    };
    let duration_ms = match &args.duration {
        Some(text) => match parse_duration(text) {
            Ok(d) => d.as_millis() as u64,
            Err(e) => return bad_input(e),
        },
        None => scenario.default_duration_ms,
    };
    let seeds = match (&args.seeds, args.seed) {
        (Some(range), _) => match parse_seed_range(range) {
            Ok(r) => r,
            Err(e) => return bad_input(e),
        },
        (None, Some(seed)) => seed..seed.saturating_add(1),
        (None, None) => match default_seed() {
            Ok(seed) => seed..seed.saturating_add(1),
            Err(e) => return bad_input(e),
        },
    };
    let faults = match &args.faults {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    return bad_input(format!(
                        "cannot read fault schedule {}: {e}",
                        path.display()
                    ))
                }
            };
            match serde_json::from_str::<FaultSchedule>(&text) {
                Ok(s) => Some(FaultSchedule::new(s.faults)),
                Err(e) => {
                    return bad_input(format!(
                        "fault schedule {} is not valid: {e}",
                        path.display()
                    ))
                }
            }
        }
        None => None,
    };

    if let (true, keel_sim::scenarios::NemesisUse::Refused(why)) = (args.nemesis, scenario.nemesis)
    {
        return bad_input(format!(
            "--nemesis does not apply to {}: {why}",
            scenario.name
        ));
    }
    let total = seeds.end - seeds.start;
    if args.record.is_some() && total > 1 {
        return bad_input("--record takes a single --seed, not a range");
    }
    if args.jobs == Some(0) {
        return bad_input("--jobs 0: a sweep needs at least one job");
    }
    if total > 1 {
        if total > super::sweep::SEEDS_MAX_WITHOUT_YES && !args.yes {
            return bad_input(format!(
                "{total} seeds is more than {} without --yes (a long sweep; add --yes to run it)",
                super::sweep::SEEDS_MAX_WITHOUT_YES
            ));
        }
        let jobs = args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        if jobs > super::sweep::JOBS_MAX {
            return bad_input(format!(
                "--jobs {jobs} is more than {}",
                super::sweep::JOBS_MAX
            ));
        }
        return super::sweep::run(super::sweep::Sweep {
            scenario,
            seeds,
            duration_ms,
            jobs,
            nemesis: args.nemesis,
            faults_file: args.faults.clone(),
            fail_fast: args.fail_fast,
            json: args.json,
        });
    }
    let seed = seeds.start;
    let choice = match (faults, args.nemesis) {
        (Some(schedule), _) => Some(FaultChoice::Given(schedule)),
        (None, true) => Some(FaultChoice::Nemesis(NemesisConfig::default())),
        (None, false) => None,
    };
    let progress = (duration_ms >= 20_000 && !args.child).then_some(10_000);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keel_sim::run_scenario(
            scenario,
            seed,
            duration_ms,
            args.record.clone(),
            progress,
            choice,
        )
    }));
    let reproduce = reproduce(
        scenario.name,
        seed,
        duration_ms,
        args.nemesis,
        args.faults.as_deref(),
    );
    let ok = match outcome {
        Ok(Ok(summary)) => {
            if args.json {
                println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                print_human(&summary);
            }
            if !summary.ok && !args.child {
                eprintln!(
                    "FAILED: {} seed {seed}; reproduce with: {reproduce}",
                    scenario.name
                );
            }
            summary.ok
        }
        Ok(Err(e)) => return bad_input(e),
        Err(_panic) => {
            if !args.child {
                eprintln!(
                    "FAILED: {} seed {seed} panicked; reproduce with: {reproduce}",
                    scenario.name
                );
            }
            false
        }
    };
    if !ok && args.nemesis && !args.child {
        match write_nemesis_faults(scenario, seed, duration_ms) {
            Ok(path) => eprintln!(
                "the nemesis schedule of this run is in {path}; replay it with: keel sim --scenario {} --seed {seed} --duration {duration_ms}ms --faults {path}",
                scenario.name
            ),
            Err(e) => eprintln!("could not write the nemesis schedule: {e}"),
        }
    }
    if ok {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The command that reproduces one run, with the options that shaped its faults.
pub fn reproduce(
    scenario: &str,
    seed: u64,
    duration_ms: u64,
    nemesis: bool,
    faults: Option<&std::path::Path>,
) -> String {
    let mut command = reproduce_command(scenario, seed, duration_ms);
    if nemesis {
        command.push_str(" --nemesis");
    }
    if let Some(path) = faults {
        command.push_str(&format!(" --faults {}", path.display()));
    }
    command
}

/// Writes the schedule `--nemesis` drew for a run as a `--faults` file in the temporary
/// directory; returns its path.
pub fn write_nemesis_faults(
    scenario: &keel_sim::scenarios::Scenario,
    seed: u64,
    duration_ms: u64,
) -> Result<String, String> {
    let schedule =
        keel_sim::nemesis_schedule(scenario, seed, duration_ms, &NemesisConfig::default());
    let path = std::env::temp_dir().join(format!("keel-nemesis-{}-{seed}.json", scenario.name));
    let text = serde_json::to_string_pretty(&schedule).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

pub fn list_scenarios(names_only: bool, nemesis_only: bool) -> u8 {
    for scenario in scenarios::all() {
        let refusal = match scenario.nemesis {
            keel_sim::scenarios::NemesisUse::Refused(why) => Some(why),
            keel_sim::scenarios::NemesisUse::Spare(_) => None,
        };
        if nemesis_only && refusal.is_some() {
            continue;
        }
        if names_only {
            println!("{}", scenario.name);
            continue;
        }
        let default = if scenario.name == DEFAULT_SCENARIO {
            " (default)"
        } else {
            ""
        };
        let nemesis = match refusal {
            Some(why) => format!(" [no --nemesis: {why}]"),
            None => String::new(),
        };
        println!(
            "{:<18} {}{}{}",
            scenario.name, scenario.description, default, nemesis
        );
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed ranges parse in both forms and reject non-ranges.
    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seed_range("1..4").unwrap(), 1..4);
        assert_eq!(parse_seed_range("1..=4").unwrap(), 1..5);
        assert!(parse_seed_range("5..3").unwrap_err().contains("empty"));
        assert!(parse_seed_range("abc").unwrap_err().contains("not a range"));
        assert!(parse_seed_range("1..x").is_err());
    }
}
