//! The nemesis: a random fault schedule drawn from the seed, for any scenario
//! (`keel sim --nemesis`), in the manner of Jepsen's combined nemesis.
//!
//! A run is split in two:
//! 1. the **fault window** (from `start_ms` to `duration − quiet tail`): one fault starts
//!    every `gap_min_ms..gap_max_ms`; each lasts `hold_min_ms..hold_max_ms` and is then
//!    undone (a partition healed, a killed machine restarted, a paused one resumed, the
//!    network restored). Faults overlap freely. The kinds:
//!    partitions of every shape (one machine isolated, a random majority/minority split,
//!    random halves, three-way splits), one-way cuts, kills and restarts, killing the
//!    store leader, pauses, clock skew (a machine killed and booted again with its
//!    clock ahead or behind: running clocks never jump, as monotonic clocks do not),
//!    and bad networks (latency, loss, duplication);
//! 2. the **quiet tail**: everything is undone at once — heal, resume every machine,
//!    restart every machine that is down, restore the scenario's own network (clock
//!    offsets stay: setting them straight would step running clocks) — so that liveness
//!    invariants judge a healthy cluster.
//!    Liveness checkers take `World::last_fault_ms` (the tail's start) as their origin.
//!
//! Operator actions of the scenario's own schedule (`Fault::Inject`, such as membership
//! changes) are kept at their times: they are part of the workload, not faults. Those
//! the faults defeated (sent to a member that was down, cut off or without quorum) an
//! operator would retry, so they are all done again in the first half of the quiet
//! tail, in their order and spacing scaled to fit (what already took effect is refused
//! harmlessly: a member added twice, or removed twice, is an error answer).
//!
//! The schedule is plain data: a failing run writes it as a `--faults` file.

use crate::faults::{Fault, FaultSchedule, TimedFault};
use crate::host::NetworkConfig;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Shape and limits of the schedules the nemesis draws.
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisConfig {
    /// No fault before this (the cluster forms and elects first).
    pub start_ms: u64,
    /// The quiet tail, in thousandths of the run's duration…
    pub quiet_tail_per_mille: u64,
    /// …but at least this long.
    pub quiet_tail_min_ms: u64,
    /// Time between the starts of two faults.
    pub gap_min_ms: u64,
    pub gap_max_ms: u64,
    /// How long a fault lasts before it is undone.
    pub hold_min_ms: u64,
    pub hold_max_ms: u64,
    /// Largest clock offset, either way.
    pub skew_max_ms: i64,
    /// Worst network a bad-network fault draws.
    pub bad_latency_max_ms: u64,
    pub bad_loss_max: f64,
    pub bad_duplicate_max: f64,
    /// Faults per run at most (a bound on the schedule's size for long runs).
    pub faults_max: usize,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        NemesisConfig {
            start_ms: 2_000,
            quiet_tail_per_mille: 300,
            quiet_tail_min_ms: 10_000,
            gap_min_ms: 300,
            gap_max_ms: 1_700,
            hold_min_ms: 300,
            hold_max_ms: 4_000,
            skew_max_ms: 2_000,
            bad_latency_max_ms: 150,
            bad_loss_max: 0.15,
            bad_duplicate_max: 0.05,
            faults_max: 10_000,
        }
    }
}

impl NemesisConfig {
    /// When the quiet tail starts for a run of `duration_ms`.
    pub fn tail_start_ms(&self, duration_ms: u64) -> u64 {
        let tail = (duration_ms * self.quiet_tail_per_mille / 1000).max(self.quiet_tail_min_ms);
        duration_ms.saturating_sub(tail)
    }
}

/// Draws the schedule for one run. `machines` are the cluster's machine names, of which
/// `spared` are cut off by partitions but never killed, paused or skewed (the workload's
/// clients); `network` the scenario's own conditions (restored after a bad-network
/// fault and in the tail); `scenario` its own schedule (only its `Inject` actions are
/// kept).
pub fn schedule(
    seed: u64,
    machines: &[String],
    spared: &[&str],
    network: &NetworkConfig,
    duration_ms: u64,
    scenario: &FaultSchedule,
    config: &NemesisConfig,
) -> FaultSchedule {
    // A stream of its own, so the nemesis never shifts the run's other randomness.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let tail_start = config.tail_start_ms(duration_ms);
    let mut faults: Vec<TimedFault> = scenario
        .faults
        .iter()
        .filter(|f| matches!(f.fault, Fault::Inject { .. }))
        .cloned()
        .collect();
    let restore = Fault::Network {
        latency_min_ms: network.latency_min_ms,
        latency_max_ms: network.latency_max_ms,
        loss_rate: network.loss_rate,
        duplicate_rate: network.duplicate_rate,
    };
    let targets: Vec<String> = machines
        .iter()
        .filter(|m| !spared.contains(&m.as_str()))
        .cloned()
        .collect();
    let mut at = config.start_ms;
    let mut drawn = 0;
    while at < tail_start && drawn < config.faults_max && !targets.is_empty() {
        let hold = rng.gen_range(config.hold_min_ms..=config.hold_max_ms);
        // Undoing happens before the tail at the latest (the tail undoes everything).
        let until = (at + hold).min(tail_start);
        let node = targets[rng.gen_range(0..targets.len())].clone();
        let (begin, end) = match rng.gen_range(0..10) {
            0..=2 => (
                Fault::Partition {
                    groups: partition_shape(&mut rng, machines),
                },
                Fault::Heal,
            ),
            3 if machines.len() > 1 => {
                let others: Vec<&String> = machines.iter().filter(|m| **m != node).collect();
                // `choose` (not `gen_range`): the draws, and so every seed's schedule,
                // stay what they were.
                let to = others
                    .choose(&mut rng)
                    .map(|m| (*m).clone())
                    .unwrap_or_default();
                (
                    Fault::PartitionOneWay {
                        from: node.clone(),
                        to,
                    },
                    Fault::Heal,
                )
            }
            4 | 5 => (Fault::Kill { node: node.clone() }, Fault::RestartAll),
            8 => {
                // Clock skew is a property of a boot: a machine's monotonic clock never
                // jumps while it runs (a running clock stepped forward would expire a
                // leader's leases early, which no real monotonic clock does), but a
                // machine that boots again may run ahead of or behind the others. So the
                // machine is killed, its clock offset while it is down, and it boots
                // with that offset at the restart.
                let offset_ms = rng.gen_range(-config.skew_max_ms..=config.skew_max_ms);
                faults.push(TimedFault {
                    at_ms: at,
                    fault: Fault::Kill { node: node.clone() },
                });
                (Fault::ClockSkew { node, offset_ms }, Fault::RestartAll)
            }
            6 => (Fault::KillStoreLeader, Fault::RestartAll),
            7 => (Fault::Pause { node: node.clone() }, Fault::Resume { node }),
            _ => {
                let latency_min_ms = network.latency_min_ms;
                let latency_max_ms = rng.gen_range(
                    network.latency_max_ms..=config.bad_latency_max_ms.max(network.latency_max_ms),
                );
                (
                    Fault::Network {
                        latency_min_ms,
                        latency_max_ms,
                        loss_rate: rng.gen_range(
                            network.loss_rate..=config.bad_loss_max.max(network.loss_rate),
                        ),
                        duplicate_rate: rng.gen_range(
                            network.duplicate_rate
                                ..=config.bad_duplicate_max.max(network.duplicate_rate),
                        ),
                    },
                    restore.clone(),
                )
            }
        };
        faults.push(TimedFault {
            at_ms: at,
            fault: begin,
        });
        faults.push(TimedFault {
            at_ms: until,
            fault: end,
        });
        drawn += 1;
        at += rng.gen_range(config.gap_min_ms..=config.gap_max_ms);
    }
    // The quiet tail: undo everything, in an order that leaves nothing behind (resume
    // before restart, so a paused machine that was also killed comes back).
    let mut tail = vec![Fault::Heal];
    tail.extend(targets.iter().map(|m| Fault::Resume { node: m.clone() }));
    tail.push(Fault::RestartAll);
    tail.push(restore);
    faults.extend(tail.into_iter().map(|fault| TimedFault {
        at_ms: tail_start,
        fault,
    }));
    faults.extend(operator_retries(scenario, tail_start, duration_ms));
    FaultSchedule::new(faults)
}

/// The scenario's operator actions again, in the first half of the tail (after three
/// seconds for machines restarted at the tail's start to elect a leader), their
/// spacing scaled to fit.
fn operator_retries(
    scenario: &FaultSchedule,
    tail_start: u64,
    duration_ms: u64,
) -> Vec<TimedFault> {
    let injects: Vec<&TimedFault> = scenario
        .faults
        .iter()
        .filter(|f| matches!(f.fault, Fault::Inject { .. }))
        .collect();
    let (Some(first), Some(last)) = (injects.first(), injects.last()) else {
        return Vec::new();
    };
    let begin = tail_start + 3_000;
    let room = duration_ms.saturating_sub(tail_start) / 2;
    let span = last.at_ms - first.at_ms;
    injects
        .iter()
        .map(|f| TimedFault {
            at_ms: begin + (f.at_ms - first.at_ms).saturating_mul(room) / span.max(1),
            fault: f.fault.clone(),
        })
        .collect()
}

/// A partition of the machines into two or three non-empty groups, of a shape drawn at
/// random: one machine alone, a majority and a minority, random halves, or three ways.
fn partition_shape(rng: &mut impl Rng, machines: &[String]) -> Vec<Vec<String>> {
    let mut shuffled = machines.to_vec();
    shuffled.shuffle(rng);
    let n = shuffled.len();
    if n < 2 {
        return vec![shuffled];
    }
    let split = match rng.gen_range(0..4) {
        0 => 1,                   // isolate one machine
        1 => n / 2,               // minority | majority
        2 => rng.gen_range(1..n), // random halves
        _ if n >= 3 => {
            let a = rng.gen_range(1..n - 1);
            let b = rng.gen_range(a + 1..n);
            return vec![
                shuffled[..a].to_vec(),
                shuffled[a..b].to_vec(),
                shuffled[b..].to_vec(),
            ];
        }
        _ => 1,
    };
    vec![shuffled[..split].to_vec(), shuffled[split..].to_vec()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::Address;

    fn machines() -> Vec<String> {
        ["s1", "s2", "s3", "a1", "c1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The same seed draws the same schedule; another seed draws another; every fault
    /// names known machines and rates stay probabilities.
    #[test]
    fn schedules_are_deterministic_valid_and_varied() {
        let config = NemesisConfig::default();
        let network = NetworkConfig::default();
        let empty = FaultSchedule::default();
        let a = schedule(7, &machines(), &[], &network, 40_000, &empty, &config);
        let b = schedule(7, &machines(), &[], &network, 40_000, &empty, &config);
        let c = schedule(8, &machines(), &[], &network, 40_000, &empty, &config);
        assert_eq!(a, b);
        assert_ne!(a, c);
        a.validate(&machines()).expect("valid schedule");
        assert!(
            a.faults.len() > 20,
            "about one fault a second: {}",
            a.faults.len()
        );
    }

    /// Nothing happens in the quiet tail but the undoing, which comes at its start; the
    /// tail is at least its minimum; the scenario's operator actions survive.
    #[test]
    fn the_tail_is_quiet_and_injections_are_kept() {
        let config = NemesisConfig::default();
        let inject = TimedFault {
            at_ms: 5_000,
            fault: Fault::Inject {
                to: Address::new("s1", "store", 0),
                msg: Box::new(keel_actors::Message::Report(
                    keel_actors::message::Report::Store(
                        keel_actors::message::StoreReport::Leader { term: 1, id: 1 },
                    ),
                )),
            },
        };
        let scenario = FaultSchedule::new(vec![
            inject.clone(),
            TimedFault {
                at_ms: 6_000,
                fault: Fault::Heal,
            },
        ]);
        for seed in 0..50 {
            let s = schedule(
                seed,
                &machines(),
                &["c1"],
                &NetworkConfig::default(),
                30_000,
                &scenario,
                &config,
            );
            let tail = config.tail_start_ms(30_000);
            assert_eq!(tail, 20_000);
            // After the tail starts only the operator's retries come.
            assert!(s
                .faults
                .iter()
                .all(|f| f.at_ms <= tail || matches!(f.fault, Fault::Inject { .. })));
            let retried = s
                .faults
                .iter()
                .filter(|f| {
                    f == &&TimedFault {
                        at_ms: 23_000,
                        fault: inject.fault.clone(),
                    }
                })
                .count();
            assert_eq!(
                retried, 1,
                "the operator's action is done again in the tail"
            );
            // Operator actions are not faults: liveness is judged from the tail's start.
            assert_eq!(s.last_fault_ms(), tail);
            let at_tail: Vec<&Fault> = s
                .faults
                .iter()
                .filter(|f| f.at_ms == tail)
                .map(|f| &f.fault)
                .collect();
            assert!(at_tail.contains(&&Fault::Heal) && at_tail.contains(&&Fault::RestartAll));
            assert!(s.faults.contains(&inject));
            // The spared client is never killed, paused or skewed.
            assert!(s.faults.iter().all(|f| !matches!(&f.fault,
                Fault::Kill { node } | Fault::Pause { node } | Fault::ClockSkew { node, .. } if node == "c1")));
        }
    }

    /// Partition shapes cover every machine exactly once, in 2 or 3 non-empty groups.
    #[test]
    fn partitions_cover_every_machine() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let groups = partition_shape(&mut rng, &machines());
            assert!((2..=3).contains(&groups.len()));
            assert!(groups.iter().all(|g| !g.is_empty()));
            let mut all: Vec<String> = groups.concat();
            all.sort();
            let mut expected = machines();
            expected.sort();
            assert_eq!(all, expected);
        }
    }
}
