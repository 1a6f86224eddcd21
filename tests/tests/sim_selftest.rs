//! Simulator tests of the self-test protocol: determinism, faults that really happen,
//! record/replay, and random fault schedules from proptest.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_actors::{Message, Registry};
use keel_engine::{ActorFactory, ActorSpec, Address, DynActor, TraceReader};
use keel_sim::scenarios::{self, selftest};
use keel_sim::{run_scenario, Fault, FaultChoice, FaultSchedule, RunSummary, TimedFault};
use keel_tests::TempDir;
use proptest::prelude::*;

fn run(scenario: &str, seed: u64, duration_ms: u64) -> RunSummary {
    let scenario = scenarios::find(scenario).expect("scenario exists");
    run_scenario(scenario, seed, duration_ms, None, None, None).expect("run starts")
}

fn verdict<'a>(summary: &'a RunSummary, name: &str) -> &'a keel_sim::Verdict {
    summary
        .invariants
        .iter()
        .find(|v| v.name == name)
        .expect("verdict exists")
}

/// The same seed gives the same trace hash; another seed gives another.
#[test]
fn same_seed_same_trace_hash() {
    for seed in [1, 2, 3] {
        let a = run("selftest", seed, 12_000);
        let b = run("selftest", seed, 12_000);
        assert!(a.ok, "seed {seed}: {:?}", a.invariants);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.events, b.events);
    }
    assert_ne!(
        run("selftest", 7, 12_000).trace_hash,
        run("selftest", 8, 12_000).trace_hash
    );
}

/// Partitions cut messages, crashes lose unsynced writes, machines restart — and the
/// invariants see each of them.
#[test]
fn faults_actually_happen() {
    let summary = run("selftest", 11, 30_000);
    assert!(summary.ok, "{:?}", summary.invariants);
    assert!(summary.network.cut_by_partition > 0);
    assert!(summary.network.duplicated > 0);
    let effect = verdict(&summary, "faults-took-effect");
    assert!(effect.ok, "{}", effect.detail);
    assert!(
        !effect.detail.contains("lost 0 unsynced"),
        "{}",
        effect.detail
    );
    assert!(!effect.detail.contains("; 0 restarts"), "{}", effect.detail);
    assert!(verdict(&summary, "acks-durable")
        .detail
        .starts_with(|c: char| c.is_ascii_digit() && c != '0'));
}

/// A calm run has no faults to show and still passes every invariant.
#[test]
fn calm_run_passes() {
    let summary = run("selftest-calm", 5, 5_000);
    assert!(summary.ok, "{:?}", summary.invariants);
    assert_eq!(summary.network.cut_by_partition, 0);
}

/// A recorded sim trace replays identically, and a changed actor is caught diverging.
#[test]
fn recorded_trace_replays_and_divergence_is_found() {
    let dir = TempDir::new("replay");
    let path = dir.join("run.trace");
    let scenario = scenarios::find("selftest").unwrap();
    let summary = run_scenario(scenario, 4, 8_000, Some(path.clone()), None, None).unwrap();
    let open = || TraceReader::<_, Message>::open(std::fs::File::open(&path).unwrap()).unwrap();
    let report = keel_engine::replay(open(), &Registry).unwrap();
    assert!(report.identical(), "{:?}", report.divergence);
    assert_eq!(report.events, summary.events);
    assert_eq!(format!("{:016x}", report.trace_hash), summary.trace_hash);
    assert_eq!(report.recorded_hash, Some(report.trace_hash));

    /// Builds self-test actors that tick at another interval: a behaviour change.
    struct Changed;
    impl ActorFactory<Message> for Changed {
        fn build(
            &self,
            address: &Address,
            spec: &ActorSpec,
        ) -> Result<Box<dyn DynActor<Message>>, String> {
            let mut config: serde_json::Value = serde_json::from_str(&spec.config_json).unwrap();
            config["ping_interval_ms"] = serde_json::json!(101);
            let spec = ActorSpec {
                kind: spec.kind.clone(),
                config_json: config.to_string(),
            };
            Registry.build(address, &spec)
        }
    }
    let report = keel_engine::replay(open(), &Changed).unwrap();
    let divergence = report.divergence.expect("a changed actor diverges");
    assert!(divergence.event >= 1);
}

fn arb_fault(nodes: &'static [&'static str]) -> impl Strategy<Value = Fault> {
    let node = proptest::sample::select(nodes).prop_map(|n| n.to_string());
    prop_oneof![
        (node.clone(), node.clone()).prop_map(|(a, b)| Fault::Partition {
            groups: vec![vec![a], vec![b]]
        }),
        (node.clone(), node.clone()).prop_map(|(from, to)| Fault::PartitionOneWay { from, to }),
        Just(Fault::Heal),
        node.clone().prop_map(|node| Fault::Kill { node }),
        node.clone().prop_map(|node| Fault::Restart { node }),
        node.clone().prop_map(|node| Fault::Pause { node }),
        node.clone().prop_map(|node| Fault::Resume { node }),
        (node, -3000i64..3000).prop_map(|(node, offset_ms)| Fault::ClockSkew { node, offset_ms }),
        (0.0f64..0.3, 0.0f64..0.2).prop_map(|(loss_rate, duplicate_rate)| Fault::Network {
            latency_min_ms: 1,
            latency_max_ms: 40,
            loss_rate,
            duplicate_rate
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any schedule of faults, healed at the end, keeps every invariant. A failure
    /// shrinks to a minimal schedule; proptest prints it with the seed.
    #[test]
    fn random_fault_schedules_keep_invariants(
        seed in 0u64..1_000_000,
        faults in proptest::collection::vec((0u64..6_000, arb_fault(&["n1", "n2", "n3"])), 0..12),
    ) {
        let duration_ms = 10_000;
        let mut timed: Vec<TimedFault> = faults.into_iter().map(|(at_ms, fault)| TimedFault { at_ms, fault }).collect();
        timed.push(TimedFault { at_ms: 6_000, fault: Fault::Heal });
        for node in ["n1", "n2", "n3"] {
            timed.push(TimedFault { at_ms: 6_000, fault: Fault::Resume { node: node.into() } });
            timed.push(TimedFault { at_ms: 6_000, fault: Fault::Restart { node: node.into() } });
        }
        timed.push(TimedFault { at_ms: 6_000, fault: Fault::Network { latency_min_ms: 1, latency_max_ms: 10, loss_rate: 0.0, duplicate_rate: 0.0 } });
        let schedule = FaultSchedule::new(timed);
        let scenario = scenarios::find("selftest").unwrap();
        let summary = run_scenario(scenario, seed, duration_ms, None, None, Some(FaultChoice::Given(schedule.clone()))).unwrap();
        prop_assert!(
            summary.ok,
            "seed {seed} failed: {:?}\nschedule: {}\nreproduce: save the schedule to f.json, then keel sim --seed {seed} --duration 10s --faults f.json",
            summary.invariants.iter().filter(|v| !v.ok).collect::<Vec<_>>(),
            serde_json::to_string(&schedule).unwrap()
        );
    }
}

/// The random-schedule generator only names existing machines and ends healed.
#[test]
fn random_schedules_are_valid() {
    let nodes: Vec<String> = ["n1", "n2", "n3"].iter().map(|n| n.to_string()).collect();
    for seed in 0..50 {
        let schedule = selftest::random_schedule(seed, &nodes, 30_000);
        schedule.validate(&nodes).unwrap();
        let last_heal = schedule
            .faults
            .iter()
            .rposition(|f| matches!(f.fault, Fault::Heal));
        let last_partition = schedule.faults.iter().rposition(|f| {
            matches!(
                f.fault,
                Fault::Partition { .. } | Fault::PartitionOneWay { .. }
            )
        });
        assert!(last_heal.is_some() && last_partition < last_heal);
    }
}
