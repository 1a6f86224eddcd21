//! Simulator tests of the store: determinism, every store scenario on more than one
//! seed with evidence that its faults were felt, and random fault schedules from
//! proptest.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_sim::scenarios;
use keel_sim::{
    reproduce_command, run_scenario, Fault, FaultChoice, FaultSchedule, RunSummary, TimedFault,
};
use keel_tests::{run_named, verdict};
use proptest::prelude::*;

fn run(scenario: &str, seed: u64, duration_ms: u64) -> RunSummary {
    let scenario = scenarios::find(scenario).expect("scenario exists");
    run_scenario(scenario, seed, duration_ms, None, None, None).expect("run starts")
}

/// Runs a scenario at its default duration and insists every invariant held.
fn run_default(name: &str, seed: u64) -> RunSummary {
    let scenario = scenarios::find(name).expect("scenario exists");
    let summary = run(name, seed, scenario.default_duration_ms);
    assert!(
        summary.ok,
        "{name} seed {seed} failed: {:#?}\nreproduce: {}",
        summary
            .invariants
            .iter()
            .filter(|v| !v.ok)
            .collect::<Vec<_>>(),
        reproduce_command(name, seed, scenario.default_duration_ms)
    );
    summary
}

/// The number right before `label` in a verdict's detail ("12 terms with a leader").
fn count_before(detail: &str, label: &str) -> u64 {
    let at = detail
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {detail:?}"));
    detail[..at]
        .split_whitespace()
        .last()
        .and_then(|word| word.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {label:?} in {detail:?}"))
}

/// The verdicts every store scenario carries show real work: operations checked,
/// members compared, writes after the last fault.
fn assert_store_evidence(summary: &RunSummary, min_terms: u64) {
    let linearizable = &verdict(summary, "linearizable").detail;
    assert!(
        count_before(linearizable, "operations linearizable") > 100,
        "{linearizable}"
    );
    let terms = count_before(
        &verdict(summary, "one-leader-per-term").detail,
        "terms with a leader",
    );
    assert!(terms >= min_terms, "{} terms, expected {min_terms}", terms);
    let agrees = &verdict(summary, "applied-state-agrees").detail;
    assert!(count_before(agrees, "comparisons") > 0, "{agrees}");
    let resume = &verdict(summary, "writes-resume").detail;
    assert!(
        count_before(resume, "after the last fault") > 0,
        "not judged or none: {resume}"
    );
    // A judged verdict starts "N watch events"; "not judged…" has no count and fails.
    let watch = &verdict(summary, "watch-exactly-once").detail;
    assert!(count_before(watch, "watch events") > 0, "{watch}");
}

/// The same seed gives the same trace hash, with or without progress lines (as
/// `keel sim` prints them); another seed gives another.
#[test]
fn store_runs_are_deterministic() {
    const DURATION_MS: u64 = 12_000;
    let mut hashes = Vec::new();
    for seed in [1, 2] {
        let a = run("store", seed, DURATION_MS);
        let b = run("store", seed, DURATION_MS);
        assert_eq!(
            a.trace_hash,
            b.trace_hash,
            "store seed {seed} is not deterministic; reproduce: {}",
            reproduce_command("store", seed, DURATION_MS)
        );
        assert_eq!(a.events, b.events);
        assert!(a.events > 1_000, "seed {seed}: only {} events", a.events);
        hashes.push(a.trace_hash);
    }
    assert_ne!(hashes[0], hashes[1], "seeds 1 and 2 ran identically");
    let scenario = scenarios::find("store").expect("scenario exists");
    let printed =
        run_scenario(scenario, 1, DURATION_MS, None, Some(10_000), None).expect("run starts");
    assert_eq!(
        printed.trace_hash, hashes[0],
        "printing progress changed the run: `keel sim` would not reproduce a test's seed"
    );
}

/// The default store scenario (leader killed twice, a minority partition, loss) keeps
/// every invariant, and its partition really cut messages.
#[test]
fn store_scenario_passes() {
    for seed in [1, 2] {
        let summary = run_default("store", seed);
        assert_store_evidence(&summary, 3);
        assert!(summary.network.cut_by_partition > 0);
        assert!(summary.network.duplicated > 0);
    }
}

/// The simulator runs the node runtime's ordering rule, so proposals that arrive
/// together are flushed together: some leader's flush carried more than one proposal
/// (read from the members' final statuses in the run summary). Before the node runtime,
/// the simulator fired the zero-delay flush before the next arrival and every flush
/// carried one. The counters live in memory: a member killed (store-leader-churn kills
/// every leader it finds) takes its count along, so of a few seeds one must show it.
#[test]
fn store_flushes_batch_proposals_that_arrive_together() {
    for name in ["store", "store-leader-churn"] {
        let most: Vec<u64> = (1..=4)
            .map(|seed| {
                let summary = run_named(name, seed, None);
                summary
                    .actors
                    .iter()
                    .filter(|(address, _)| address.contains("/store#"))
                    .filter_map(|(_, status)| status["max_proposals_per_flush"].as_u64())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        assert!(
            most.iter().any(|m| *m > 1),
            "{name}: at most {most:?} proposals per flush (seeds 1 to 4)"
        );
    }
}

/// With two of three members down, writes are refused with "no quorum", then resume.
#[test]
fn store_quorum_loss_refuses_writes() {
    for seed in [1, 2] {
        let summary = run_default("store-quorum-loss", seed);
        assert_store_evidence(&summary, 2);
        let refusal = &verdict(&summary, "quorum-loss-refuses-writes").detail;
        assert!(count_before(refusal, "refusals") > 0, "{refusal}");
        assert!(count_before(refusal, "said \"no quorum\"") > 0, "{refusal}");
    }
}

/// A 5-member store whose leader is killed four times elects a new leader each time.
#[test]
fn store_leader_churn_passes() {
    for seed in [1, 2] {
        let summary = run_default("store-leader-churn", seed);
        assert_store_evidence(&summary, 5);
        assert!(summary.network.cut_by_partition > 0);
    }
}

/// A member joins as a learner and is promoted, another is removed, under load.
#[test]
fn store_membership_changes_under_load() {
    // Seed 192 lost the only add the operator asked for, before adds were retried.
    for seed in [1, 2, 192] {
        let summary = run_default("store-membership", seed);
        assert_store_evidence(&summary, 2);
        let membership = verdict(&summary, "membership-changed");
        assert!(membership.ok, "{}", membership.detail);
        assert!(
            membership.detail.contains("promoted") && membership.detail.contains("removed"),
            "{}",
            membership.detail
        );
    }
}

/// A numeric field of the actors' statuses at the end of a run, summed over actors.
fn status_sum(summary: &RunSummary, field: &str) -> u64 {
    summary
        .actors
        .values()
        .filter_map(|status| status[field].as_u64())
        .sum()
}

/// A follower that knows a live leader takes a write and proposes it (raft forwards it
/// to the leader) instead of redirecting the client, as etcd's followers do; every
/// invariant (linearizability first) holds with it. Seen failing with forwarding off.
#[test]
fn followers_forward_writes_to_the_leader() {
    let mut forwarded = 0;
    for seed in [1, 2] {
        let summary = run_named(
            "store",
            seed,
            Some(FaultChoice::Nemesis(Default::default())),
        );
        assert!(summary.ok, "seed {seed}: {:#?}", summary.invariants);
        forwarded += status_sum(&summary, "proposals_forwarded");
    }
    assert!(forwarded > 0, "no write was forwarded");
}

/// A member behind the leader's log start gets the whole state as a snapshot, fetched
/// from the leader in chunks (issue 9: the real transport drops a message above its
/// frame limit, so a large state sent in one message never arrived). In these nemesis
/// runs of store-membership a snapshot reaches a member in several 1 KiB chunks and
/// every invariant holds. Seen failing with the received bytes' checksum check broken
/// (the transfer is refused, the learner never catches up).
#[test]
fn a_snapshot_reaches_a_lagging_member_in_chunks() {
    let mut received = 0;
    for seed in [4, 9] {
        let summary = run_named(
            "store-membership",
            seed,
            Some(FaultChoice::Nemesis(Default::default())),
        );
        assert!(summary.ok, "seed {seed}: {:#?}", summary.invariants);
        received += status_sum(&summary, "snapshots_received");
        assert!(
            status_sum(&summary, "snapshot_chunks_received")
                > status_sum(&summary, "snapshots_received"),
            "seed {seed}: snapshots travel in more than one chunk: {:?}",
            summary.actors
        );
    }
    assert!(received >= 2, "{received} snapshots received");
}

/// Regression (issue 7, found by the nemesis): a learner added under random faults is
/// caught up and promoted. Nemesis seeds 1 and 2 once left member 4 a learner forever:
/// a snapshot lost on the network paused it at the leader for good (raft-rs waits for
/// a snapshot report), and the leader kept sending a snapshot from before member 4 was
/// added, which member 4 refuses. Seed 15 needed the operator's retry to wait for the
/// election after the tail's restarts. Seed 255 (issue 9): a write called before two
/// of four voters went down was answered 800 ms into the loss; quorum-loss-refuses-writes
/// now judges only writes called during the loss. Seed 363 (session 9): after every
/// member restarted at once, the two live voters ticked in phase and split their votes
/// for seven seconds, past the operator's last add; the first tick is now at a random
/// point within a tick.
#[test]
fn store_membership_changes_under_the_nemesis() {
    for seed in [1, 2, 15, 255, 363] {
        let summary = run_named(
            "store-membership",
            seed,
            Some(FaultChoice::Nemesis(Default::default())),
        );
        let membership = verdict(&summary, "membership-changed");
        assert!(summary.ok, "seed {seed}: {:#?}", summary.invariants);
        assert!(
            membership.detail.contains("promoted"),
            "{}",
            membership.detail
        );
    }
}

/// Regression (issue 7, found by the nemesis): nemesis seed 135 had a keep-alive
/// answered OK by a leader cut off from the others while the new leader on the other
/// side let the lease expire (keep-alives now renew only after a read-index round);
/// seeds 21 and 43 had the key outlive a deadline that ignored keep-alives whose
/// answers were lost.
#[test]
fn store_leases_hold_under_the_nemesis() {
    for seed in [135, 21, 43] {
        let summary = run_named(
            "store-lease",
            seed,
            Some(FaultChoice::Nemesis(Default::default())),
        );
        assert!(summary.ok, "seed {seed}: {:#?}", summary.invariants);
    }
}

/// A lease kept alive survives a leader kill, and left alone it expires although the
/// leader counting it is killed too.
#[test]
fn store_lease_survives_and_expires_across_leader_changes() {
    for seed in [1, 2] {
        let summary = run_default("store-lease", seed);
        assert_store_evidence(&summary, 3);
        let kept = &verdict(&summary, "lease-kept-alive").detail;
        assert!(count_before(kept, "keep-alives ok") > 5, "{kept}");
        assert!(count_before(kept, "leader elections;") >= 1, "{kept}");
        let expires = &verdict(&summary, "lease-expires").detail;
        assert!(expires.contains("gone at"), "not judged: {expires}");
        assert!(
            count_before(expires, "leader elections in between") >= 1,
            "{expires}"
        );
    }
}

/// Every store scenario is covered above.
#[test]
fn every_store_scenario_is_tested() {
    let tested = [
        "store",
        "store-quorum-loss",
        "store-leader-churn",
        "store-membership",
        "store-lease",
    ];
    for scenario in scenarios::all() {
        if scenario.name.starts_with("store") {
            assert!(
                tested.contains(&scenario.name),
                "scenario {} has no test in sim_store.rs",
                scenario.name
            );
        }
    }
}

const STORE_NODES: &[&str] = &["s1", "s2", "s3"];
/// Clients may be cut off, but not killed: a restarted workload starts its operation
/// ids over, which the history checker cannot tell from the old incarnation's.
const ALL_NODES: &[&str] = &["s1", "s2", "s3", "c1", "c2"];

fn arb_fault() -> impl Strategy<Value = Fault> {
    let member = proptest::sample::select(STORE_NODES).prop_map(|n| n.to_string());
    let any = proptest::sample::select(ALL_NODES).prop_map(|n| n.to_string());
    prop_oneof![
        (any.clone(), any.clone()).prop_map(|(a, b)| Fault::Partition {
            groups: vec![vec![a], vec![b]]
        }),
        member.clone().prop_map(|m| Fault::Partition {
            groups: vec![
                vec![m.clone()],
                ALL_NODES
                    .iter()
                    .filter(|n| **n != m)
                    .map(|n| n.to_string())
                    .collect()
            ]
        }),
        (any.clone(), any).prop_map(|(from, to)| Fault::PartitionOneWay { from, to }),
        Just(Fault::Heal),
        member.clone().prop_map(|node| Fault::Kill { node }),
        member.clone().prop_map(|node| Fault::Restart { node }),
        Just(Fault::KillStoreLeader),
        Just(Fault::RestartAll),
        member.clone().prop_map(|node| Fault::Pause { node }),
        member.clone().prop_map(|node| Fault::Resume { node }),
        (member, -3000i64..3000).prop_map(|(node, offset_ms)| Fault::ClockSkew { node, offset_ms }),
        (0.0f64..0.2, 0.0f64..0.1).prop_map(|(loss_rate, duplicate_rate)| Fault::Network {
            latency_min_ms: 1,
            latency_max_ms: 40,
            loss_rate,
            duplicate_rate
        }),
    ]
}

const RANDOM_RUN_MS: u64 = 20_000;
/// Faults land in the first 60% of the run; then everything is healed and restarted,
/// leaving time for an election and for writes to resume.
const HEAL_AT_MS: u64 = RANDOM_RUN_MS * 6 / 10;

fn healed(faults: Vec<(u64, Fault)>) -> FaultSchedule {
    let mut timed: Vec<TimedFault> = faults
        .into_iter()
        .map(|(at_ms, fault)| TimedFault { at_ms, fault })
        .collect();
    timed.push(TimedFault {
        at_ms: HEAL_AT_MS,
        fault: Fault::Heal,
    });
    for node in STORE_NODES {
        timed.push(TimedFault {
            at_ms: HEAL_AT_MS,
            fault: Fault::Resume {
                node: node.to_string(),
            },
        });
    }
    timed.push(TimedFault {
        at_ms: HEAL_AT_MS,
        fault: Fault::RestartAll,
    });
    timed.push(TimedFault {
        at_ms: HEAL_AT_MS,
        fault: Fault::Network {
            latency_min_ms: 1,
            latency_max_ms: 10,
            loss_rate: 0.0,
            duplicate_rate: 0.0,
        },
    });
    FaultSchedule::new(timed)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        // Each case is a 20 s simulation: shrink a failure a little, not for an hour.
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    /// Any schedule of kills, restarts, partitions (one-way too), pauses, clock skew,
    /// loss and duplication on the 3-member store, healed at 60% of the run, keeps
    /// every store invariant.
    #[test]
    fn random_fault_schedules_keep_store_invariants(
        seed in 0u64..1_000_000,
        faults in proptest::collection::vec((0u64..HEAL_AT_MS, arb_fault()), 0..10),
    ) {
        let schedule = healed(faults);
        let scenario = scenarios::find("store").expect("scenario exists");
        let summary = run_scenario(scenario, seed, RANDOM_RUN_MS, None, None, Some(FaultChoice::Given(schedule.clone())))
            .expect("run starts");
        prop_assert!(
            summary.ok,
            "store seed {seed} failed: {:#?}\nschedule: {}\nreproduce: save the schedule to f.json, then {} --faults f.json",
            summary.invariants.iter().filter(|v| !v.ok).collect::<Vec<_>>(),
            serde_json::to_string(&schedule).expect("schedules serialize"),
            reproduce_command("store", seed, RANDOM_RUN_MS)
        );
    }
}

/// A schedule the property test drew (store seed 0): s1 paused, s2 cut off from every
/// other machine, s3 killed. For seven seconds no running member can reach a client,
/// so nobody can say "no quorum"; `quorum-loss-refuses-writes` demanded it anyway
/// until it counted only loss during which a client could reach a running member.
#[test]
fn no_quorum_is_not_demanded_when_no_member_can_reach_a_client() {
    let schedule = healed(vec![
        (154, Fault::Pause { node: "s1".into() }),
        (
            1644,
            Fault::Partition {
                groups: vec![
                    vec!["s2".into()],
                    vec!["s1".into(), "s3".into(), "c1".into(), "c2".into()],
                ],
            },
        ),
        (4733, Fault::Kill { node: "s3".into() }),
    ]);
    let scenario = scenarios::find("store").expect("scenario exists");
    let summary = run_scenario(
        scenario,
        0,
        RANDOM_RUN_MS,
        None,
        None,
        Some(FaultChoice::Given(schedule)),
    )
    .expect("run starts");
    assert!(summary.ok, "{:#?}", summary.invariants);
}

/// The healed schedules the property test builds are valid and end healed.
#[test]
fn healed_schedules_are_valid() {
    let nodes: Vec<String> = ALL_NODES.iter().map(|n| n.to_string()).collect();
    let schedule = healed(vec![
        (
            100,
            Fault::PartitionOneWay {
                from: "s1".into(),
                to: "c2".into(),
            },
        ),
        (200, Fault::Kill { node: "s2".into() }),
    ]);
    schedule.validate(&nodes).unwrap();
    assert_eq!(schedule.last_fault_ms(), HEAL_AT_MS);
    let json = serde_json::to_string(&schedule).unwrap();
    let back: FaultSchedule = serde_json::from_str(&json).unwrap();
    assert_eq!(back, schedule);
}

/// A duplicated watch-create datagram once started a second stream under the same
/// watch id, whose sequence numbers collided with the first: once the client put
/// reordered messages back in order instead of re-creating the watch, it took the
/// second stream's message 2 for a duplicate of the first's and missed a revision
/// (store-lease seed 70: revision 379; store-membership --nemesis seed 51: 263). The
/// member now answers a duplicated create again and starts nothing.
#[test]
fn a_duplicated_watch_create_starts_no_second_stream() {
    let lease = run_named("store-lease", 70, None);
    assert!(lease.ok, "{:?}", lease.invariants);
    let membership = run_named(
        "store-membership",
        51,
        Some(FaultChoice::Nemesis(Default::default())),
    );
    assert!(membership.ok, "{:?}", membership.invariants);
}
