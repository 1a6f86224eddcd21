#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use keel_sim::{run_scenario, scenarios};
#[test]
fn probe() {
    let name = std::env::var("P_SCEN").unwrap();
    let seed: u64 = std::env::var("P_SEED").unwrap().parse().unwrap();
    let d: u64 = std::env::var("P_DUR").unwrap().parse().unwrap();
    let progress = std::env::var("P_PROGRESS").ok().map(|v| v.parse().unwrap());
    let s = run_scenario(
        scenarios::find(&name).unwrap(),
        seed,
        d,
        None,
        progress,
        None,
    )
    .unwrap();
    eprintln!(
        "{} {} ok={} hash={} events={}",
        name, seed, s.ok, s.trace_hash, s.events
    );
}
