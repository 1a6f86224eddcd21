//! Simulator tests of the API server: replicas over a 3-member store under faults keep
//! optimistic concurrency and give watchers every change once, in order, or a 410.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_sim::run_scenario;
use keel_sim::scenarios;

/// The api-replicas scenario passes every invariant on two seeds, with evidence.
#[test]
fn api_replicas_keep_their_invariants() {
    let scenario = scenarios::find("api-replicas").expect("scenario exists");
    for seed in [1, 2] {
        let summary = run_scenario(
            scenario,
            seed,
            scenario.default_duration_ms,
            None,
            None,
            None,
        )
        .unwrap();
        assert!(summary.ok, "seed {seed}: {:?}", summary.invariants);
        let winners = summary
            .invariants
            .iter()
            .find(|v| v.name == "one-winner-per-version")
            .unwrap();
        assert!(
            !winners.detail.starts_with("0 updates"),
            "{}",
            winners.detail
        );
    }
}

/// Two runs of one seed are identical.
#[test]
fn api_replicas_are_deterministic() {
    let scenario = scenarios::find("api-replicas").expect("scenario exists");
    let a = run_scenario(scenario, 9, 12_000, None, None, None).unwrap();
    let b = run_scenario(scenario, 9, 12_000, None, None, None).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
}

/// Status codes, reasons and messages of the API server, step by step (conflicts,
/// finalizers, validation, defaulting, generation, selectors, pagination).
#[test]
fn api_semantics_match_kubernetes() {
    let scenario = scenarios::find("api-semantics").expect("scenario exists");
    let summary =
        run_scenario(scenario, 1, scenario.default_duration_ms, None, None, None).unwrap();
    assert!(summary.ok, "{:?}", summary.invariants);
}
