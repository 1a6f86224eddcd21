//! The `keel` binary's command line: determinism through the CLI, record/replay, and
//! one-line errors with exit code 2 for bad input.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_tests::TempDir;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MADSIM_TEST_SEED")
        .output()
        .expect("keel runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Asserts a usage error: exit 2, one line on stderr naming `needle`, no panic.
fn assert_usage_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.trim().lines().count(), 1, "more than one line: {err}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// `keel sim --seed 7 --json` twice gives one trace hash; seed 8 another.
#[test]
fn sim_is_deterministic_through_the_cli() {
    let a = json(&keel(&[
        "sim",
        "--seed",
        "7",
        "--duration",
        "12s",
        "--json",
    ]));
    let b = json(&keel(&[
        "sim",
        "--seed",
        "7",
        "--duration",
        "12s",
        "--json",
    ]));
    let c = json(&keel(&[
        "sim",
        "--seed",
        "8",
        "--duration",
        "12s",
        "--json",
    ]));
    assert_eq!(a["trace_hash"], b["trace_hash"]);
    assert_ne!(a["trace_hash"], c["trace_hash"]);
    for key in [
        "seed",
        "trace_hash",
        "events",
        "sim_time_ms",
        "wall_ms",
        "invariants",
    ] {
        assert!(a.get(key).is_some(), "summary lacks {key}: {a}");
    }
    assert_eq!(a["ok"], true, "{a}");
}

/// A recorded run replays identically; a corrupted copy is rejected with exit 2.
#[test]
fn record_then_replay() {
    let dir = TempDir::new("cli-replay");
    let trace = dir.join("t.trace");
    let trace_arg = trace.to_str().unwrap();
    // 8 s: long enough that the watchers see events on this seed (in 5 s they did
    // not, after the API server's timers changed the run).
    let run = keel(&[
        "sim",
        "--seed",
        "7",
        "--duration",
        "8s",
        "--json",
        "--record",
        trace_arg,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let replay = keel(&["replay", trace_arg]);
    assert!(
        replay.status.success(),
        "{}{}",
        stdout(&replay),
        stderr(&replay)
    );
    assert!(
        stdout(&replay).starts_with("identical"),
        "{}",
        stdout(&replay)
    );
    let report = json(&keel(&["replay", trace_arg, "--json"]));
    assert_eq!(report["trace_hash"], json(&run)["trace_hash"]);

    let mut bytes = std::fs::read(&trace).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    let corrupt = dir.join("corrupt.trace");
    std::fs::write(&corrupt, &bytes).unwrap();
    assert_usage_error(&keel(&["replay", corrupt.to_str().unwrap()]), "corrupt");

    let mut newer = std::fs::read(&trace).unwrap();
    newer[8..12].copy_from_slice(&9u32.to_le_bytes());
    let newer_path = dir.join("newer.trace");
    std::fs::write(&newer_path, &newer).unwrap();
    assert_usage_error(&keel(&["replay", newer_path.to_str().unwrap()]), "newer");

    let garbage = dir.join("garbage.trace");
    std::fs::write(&garbage, b"this is not a trace").unwrap();
    assert_usage_error(
        &keel(&["replay", garbage.to_str().unwrap()]),
        "not a keel trace",
    );
    assert_usage_error(
        &keel(&["replay", dir.join("missing.trace").to_str().unwrap()]),
        "cannot open",
    );
}

/// Bad flags and values: one line, exit 2.
#[test]
fn bad_input_is_one_line_and_exit_2() {
    assert_usage_error(&keel(&["sim", "--bogus"]), "--bogus");
    assert_usage_error(&keel(&["sim", "--seeds", "9..3"]), "empty");
    assert_usage_error(&keel(&["sim", "--seeds", "banana"]), "not a range");
    assert_usage_error(&keel(&["sim", "--seed", "x"]), "invalid value");
    assert_usage_error(&keel(&["sim", "--scenario", "nope"]), "unknown scenario");
    assert_usage_error(&keel(&["sim", "--duration", "10 parsecs"]), "duration");
    assert_usage_error(&keel(&["frobnicate"]), "frobnicate");
}

/// `keel scenarios` lists the default; `keel version` names the formats.
#[test]
fn scenarios_and_version() {
    let list = keel(&["scenarios"]);
    assert!(list.status.success());
    assert!(stdout(&list).contains("selftest") && stdout(&list).contains("(default)"));
    let version = keel(&["version"]);
    assert!(version.status.success());
    assert!(stdout(&version).contains("trace format"));
}

/// `--seeds A..B` runs every seed, in parallel, and `--json` prints one document.
#[test]
fn seed_ranges_run_every_seed() {
    let out = keel(&[
        "sim",
        "--scenario",
        "selftest",
        "--seeds",
        "1..4",
        "--duration",
        "3s",
        "--json",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["ran"], 3, "{report}");
    assert_eq!(report["passed"], 3, "{report}");
    assert_eq!(report["seeds_start"], 1);
    assert_eq!(report["seeds_end"], 4);
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0));
}

/// A failing sweep exits 1 with a table naming each failed seed, its invariant and the
/// command that reproduces it; `--fail-fast` stops it at the first failure.
#[test]
fn failing_sweeps_print_a_table_and_stop_early() {
    let dir = TempDir::new("keel-cli-sweep");
    // A partition between the balanced writers' machine and the balancer that never
    // heals: api-writes-resume fails. (Two-way: with a one-way cut, an update in flight
    // at the cut may still be answered after it, which the invariant counts.)
    let faults = dir.path().join("cut.json");
    std::fs::write(
        &faults,
        r#"{"faults":[{"at_ms":5000,"fault":"partition","groups":[["c1"],["lb"]]}]}"#,
    )
    .unwrap();
    let faults = faults.to_str().unwrap().to_string();
    let args = [
        "sim",
        "--scenario",
        "api-replicas",
        "--seeds",
        "1..4",
        "--duration",
        "15s",
        "--faults",
        &faults,
        "--jobs",
        "1",
        "--fail-fast",
    ];
    let out = keel(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("0 of 1 seeds passed, 1 failed, 2 not run (--fail-fast)"),
        "{table}"
    );
    assert!(table.contains("api-writes-resume"), "{table}");
    assert!(
        table.contains("keel sim --scenario api-replicas --seed 1 --duration 15000ms --faults"),
        "{table}"
    );
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let report = json(&keel(&with_json));
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["skipped"], 2, "{report}");
    assert_eq!(report["failures"][0]["seed"], 1);
    assert_eq!(
        report["failures"][0]["invariants"][0]["name"],
        "api-writes-resume"
    );
}

/// Bad sweep and nemesis input: a one-line error and exit code 2.
#[test]
fn bad_sweep_input_is_refused() {
    assert_usage_error(
        &keel(&["sim", "--seeds", "1..3", "--jobs", "0"]),
        "--jobs 0",
    );
    assert_usage_error(&keel(&["sim", "--seeds", "1..20002"]), "without --yes");
    assert_usage_error(&keel(&["sim", "--seeds", "1-5"]), "not a range");
    assert_usage_error(
        &keel(&["sim", "--seeds", "1..2000000", "--yes"]),
        "more than 1000000",
    );
    assert_usage_error(
        &keel(&["sim", "--scenario", "api-semantics", "--nemesis"]),
        "does not apply to api-semantics",
    );
}

/// The etcd comparison runs end to end against the real etcd (Debian's etcd-server):
/// one short round, leader routing, both systems' figures and the median ratio.
#[test]
fn bench_store_compares_with_the_real_etcd() {
    if !keel_tests::part_available("etcd (package etcd-server)", || {
        keel_tests::program_runs("etcd")
    }) {
        return;
    }
    let out = keel(&[
        "bench",
        "store",
        "--compare-etcd",
        "--duration",
        "1s",
        "--rounds",
        "1",
        "--routing",
        "leader",
        "--clients",
        "8",
        "--keys",
        "100",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    let runs = report["rounds"][0]["runs"].to_string();
    assert!(runs.contains("keel") && runs.contains("etcd"), "{report}");
    let ratios = &report["median_ratios"][0];
    assert_eq!(ratios["routing"], "leader", "{report}");
    for figure in [
        "put_throughput",
        "put_p99",
        "range_throughput",
        "peak_rss_per_byte",
    ] {
        let ratio = ratios[figure].as_f64().unwrap_or(0.0);
        assert!(ratio > 0.0, "{figure}: {report}");
    }
}
