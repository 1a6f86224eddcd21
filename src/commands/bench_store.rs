//! `keel bench store [--compare-etcd]`: keel's store against etcd, like for like.
//!
//! A comparison is only worth its method, so the method is fixed here and told in
//! `--help` ([`STORE_BENCH_HELP`]): the same clients, the same routing (to the leader,
//! and spread over all members — both reported), every request counted (errors and
//! timeouts in the figures, their time until given up in the percentiles), both
//! clusters fresh for every run under one parent directory (one file system), both
//! fsyncing, rounds in alternating order, and the median of the per-round keel/etcd
//! ratios. `--workload check-perf-*` adds etcd's own yardstick, `etcdctl check perf`.
//!
//! This file holds the plan and runs the rounds; [`super::bench_store_keel`] and
//! [`super::bench_store_etcd`] measure one run of each system;
//! [`super::bench_store_report`] turns runs into ratios, medians, text and JSON.

use super::bench::{progress, Figures};
use super::bench_store_report::{print_round, print_summary, Memory, Round, Run, System};
use super::{bad_input, parse_duration, EXIT_FAILED, EXIT_OK};
use keel_actors::drivers::check_perf::{
    check_perf_key, check_perf_profile, CheckPerfProfile, CHECK_PERF_VALUE_BYTES,
};
use keel_actors::drivers::store_bench::default_request_timeout_ms;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The long `--help` of `keel bench store`: how the comparison is made fair.
pub const STORE_BENCH_HELP: &str = "\
Put and get throughput and latency (hdrhistogram percentiles) of a 3-member keel store \
on loopback; with --compare-etcd, of a 3-member etcd under the same load, like for like:

* Same clients: --clients bench clients on both sides, all in this process, closed loop \
(each sends its next request when its last one has ended). keel's clients share one bus \
connection per member; etcd's share one gRPC connection per member.

* Same routing, both reported (--routing both): `leader` sends every request to the \
current leader (keel's client library finds it; etcd's is found with the Maintenance \
Status call and given its own connection); `all` pins bench client i to member i % 3 on \
both sides. A keel follower serves a linearizable get itself (read index, as etcd's \
does) and refuses a put naming the leader; the put is then re-sent to the leader, and \
that redirect is part of its latency, as the forwarding from an etcd follower to its \
leader is part of etcd's.

* Every request counts: each one ends as a success or as an error — refused, unanswered \
after 5 s (the client gives up), or still in flight when the phase ends — and an \
error's latency (the time until it was given up) goes into the same histogram, so p99 \
includes it. Throughput counts successes only.

* Same disk, same durability: every run starts both clusters fresh, with their data \
directories under one temporary directory (one file system); both fsync their logs \
(etcd's default; keel's test-only switch that skips fsync is cleared).

* Alternating order, median ratio: --rounds N (default 3) runs both systems N times, \
alternating which goes first (round 1 keel, round 2 etcd, ...); each round's figures \
are printed, then the median over the rounds of the keel/etcd ratios (throughput and \
p99, per phase, per routing).

* Memory: before each cluster is stopped, each member's peak RSS (VmHWM) is read and \
divided by the bytes written to it (successful puts x (key + value); neither system \
compacts during the run).

* --workload check-perf-s|m|l|xl is a second, etcd-defined comparison: `etcdctl check \
perf`'s load (the profile's clients and puts/s limit, 256-byte random keys, 1024-byte \
values, 60 s unless --duration) offered to both and judged by its criteria: no errors, \
throughput above 90% of the limit, slowest put at most 0.5 s, standard deviation at \
most 0.1 s. As in etcdctl, a put's latency starts when a client takes it from the \
queue, and the run lasts until the last put has ended.";

const WORKLOADS: [&str; 5] = [
    "put-range",
    "check-perf-s",
    "check-perf-m",
    "check-perf-l",
    "check-perf-xl",
];

#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Bench clients (requests in flight at once) of the put-range workload; a
    /// check-perf workload uses its profile's clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each phase (puts, then gets), or of a check-perf run
    /// [default: 10s; 60s with --workload check-perf-*].
    #[arg(long)]
    duration: Option<String>,
    /// Value size of the put-range workload (check-perf: 1024, as etcdctl).
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys of the put-range workload.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Also run the workload against a 3-member etcd and print both with their ratio.
    #[arg(long)]
    compare_etcd: bool,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: String,
    /// How clients reach the members: `leader` (every request to the leader), `all`
    /// (bench client i pinned to member i % 3; a keel follower answers gets itself and
    /// refuses puts with the leader's address, so a put is re-sent to the leader and the
    /// redirect is in its latency; an etcd follower forwards the put itself) or `both`.
    #[arg(long, default_value = "both", value_parser = ["leader", "all", "both"])]
    routing: String,
    /// Rounds, alternating which system goes first; the median ratio is printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `put-range` (closed loop: puts, then linearizable gets) or `check-perf-s|m|l|xl`
    /// (etcdctl check perf's paced puts and PASS/FAIL criteria).
    #[arg(long, default_value = "put-range", value_parser = WORKLOADS)]
    workload: String,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// How the bench clients reach the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Routing {
    Leader,
    All,
}

impl Routing {
    pub(super) fn name(self) -> &'static str {
        match self {
            Routing::Leader => "leader",
            Routing::All => "all",
        }
    }
}

/// What the clients do.
#[derive(Clone, Copy, Debug)]
pub(super) enum Workload {
    /// Closed loop: puts for one phase, then linearizable gets of the same keys.
    PutRange,
    /// `etcdctl check perf`'s open-loop puts.
    CheckPerf(CheckPerfProfile),
}

/// Everything one invocation measures, resolved from the flags.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) clients: usize,
    pub(super) value_size: usize,
    pub(super) keys: u64,
    /// Each phase of the put-range workload, or the check-perf run.
    pub(super) phase: Duration,
    pub(super) routings: Vec<Routing>,
    pub(super) rounds: usize,
    pub(super) workload: Workload,
    pub(super) compare_etcd: bool,
    pub(super) etcd_bin: String,
    /// After this long without an answer a client gives up on a request.
    pub(super) request_timeout: Duration,
    pub(super) json: bool,
}

impl Plan {
    fn from_args(args: StoreBenchArgs) -> Result<Plan, String> {
        let workload = match args.workload.strip_prefix("check-perf-") {
            None => Workload::PutRange,
            Some(load) => Workload::CheckPerf(
                check_perf_profile(load)
                    .ok_or_else(|| format!("unknown check-perf load {load:?}"))?,
            ),
        };
        let phase = match (&args.duration, workload) {
            (Some(text), _) => parse_duration(text)?,
            (None, Workload::PutRange) => Duration::from_secs(10),
            (None, Workload::CheckPerf(profile)) => Duration::from_secs(profile.duration_s),
        };
        let (clients, value_size) = match workload {
            Workload::PutRange => (args.clients, args.value_size),
            Workload::CheckPerf(profile) => (profile.clients, CHECK_PERF_VALUE_BYTES),
        };
        if clients == 0 || clients > 10_000 || value_size > 1024 * 1024 || args.keys == 0 {
            return Err(
                "--clients must be within 1..=10000, --value-size at most 1 MiB, --keys at least 1"
                    .into(),
            );
        }
        if args.rounds == 0 || args.rounds > 100 || phase.is_zero() {
            return Err("--rounds must be within 1..=100 and --duration positive".into());
        }
        let routings = match args.routing.as_str() {
            "leader" => vec![Routing::Leader],
            "all" => vec![Routing::All],
            _ => vec![Routing::Leader, Routing::All],
        };
        Ok(Plan {
            clients,
            value_size,
            keys: args.keys,
            phase,
            routings,
            rounds: args.rounds,
            workload,
            compare_etcd: args.compare_etcd,
            etcd_bin: args.etcd_bin,
            request_timeout: Duration::from_millis(default_request_timeout_ms()),
            json: args.json,
        })
    }

    /// How long an open-loop run may take to finish its queued and in-flight puts
    /// after the generator stops: each client has at most two left (one in flight, one
    /// from the queue), each given up after the request timeout.
    pub(super) fn drain_limit(&self) -> Duration {
        self.request_timeout * 2 + Duration::from_secs(1)
    }

    /// The systems of round `round` (from 1), in the order they run.
    fn order(&self, round: usize) -> Vec<System> {
        match (self.compare_etcd, round % 2 == 1) {
            (false, _) => vec![System::Keel],
            (true, true) => vec![System::Keel, System::Etcd],
            (true, false) => vec![System::Etcd, System::Keel],
        }
    }

    /// The average length of the keys written.
    pub(super) fn mean_key_bytes(&self) -> f64 {
        match self.workload {
            Workload::CheckPerf(_) => check_perf_key(0).len() as f64,
            Workload::PutRange => "bench/".len() as f64 + mean_decimal_digits(self.keys),
        }
    }
}

/// The average number of decimal digits of the numbers `0..count` (the bench's keys
/// are `bench/<n>` with `n` uniform in that range).
fn mean_decimal_digits(count: u64) -> f64 {
    let (mut total, mut low, mut high, mut digits) = (0u128, 0u64, 10u64, 1u128);
    loop {
        let top = high.min(count);
        if top > low {
            total += (top - low) as u128 * digits;
        }
        if count <= high {
            break;
        }
        (low, high, digits) = (high, high.saturating_mul(10), digits + 1);
    }
    total as f64 / count.max(1) as f64
}

/// What one run of one system measured.
pub(super) struct Measured {
    pub(super) put: Figures,
    /// The get phase (the put-range workload only).
    pub(super) range: Option<Figures>,
    /// Each member's peak RSS, read just before the cluster was stopped.
    pub(super) peak_rss_bytes: Vec<Option<u64>>,
    /// Puts re-sent to the leader by keel's clients (etcd forwards inside the cluster).
    pub(super) redirects: Option<u64>,
}

fn measure(plan: &Plan, system: System, routing: Routing, dir: &Path) -> Result<Run, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let measured = match system {
        System::Keel => super::bench_store_keel::measure(plan, routing, dir),
        System::Etcd => super::bench_store_etcd::measure(plan, routing, dir),
    }
    .map_err(|e| format!("{} ({} routing): {e}", system.name(), routing.name()))?;
    let memory = Memory::new(
        measured.peak_rss_bytes.clone(),
        measured.put.ops,
        plan.mean_key_bytes() + plan.value_size as f64,
    );
    Ok(Run::new(plan, system, routing, measured, memory))
}

fn run_round(plan: &Plan, round: usize, parent: &Path, keep: bool) -> Result<Round, String> {
    let order = plan.order(round);
    let mut runs = Vec::new();
    for &system in &order {
        for &routing in &plan.routings {
            progress(&format!(
                "round {round} of {}: {} with {} routing",
                plan.rounds,
                system.name(),
                routing.name()
            ));
            let dir = parent.join(format!("round-{round}")).join(format!(
                "{}-{}",
                system.name(),
                routing.name()
            ));
            let run = measure(plan, system, routing, &dir);
            if !keep {
                // Runs write gigabytes over a long bench: free the disk as we go.
                let _ = std::fs::remove_dir_all(&dir);
            }
            runs.push(run?);
        }
    }
    Ok(Round::new(round, order[0], runs))
}

pub fn run(args: StoreBenchArgs) -> u8 {
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(e) => return bad_input(e),
    };
    let parent: PathBuf = std::env::temp_dir().join(format!("keel-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&parent) {
        return bad_input(format!("cannot create {}: {e}", parent.display()));
    }
    let keep = std::env::var_os("KEEL_BENCH_KEEP").is_some();
    let mut rounds = Vec::new();
    let mut failure = None;
    for round in 1..=plan.rounds {
        match run_round(&plan, round, &parent, keep) {
            Ok(round) => {
                if !plan.json {
                    print_round(&plan, &round);
                }
                rounds.push(round);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if keep {
        progress(&format!("kept logs and data in {}", parent.display()));
    } else {
        let _ = std::fs::remove_dir_all(&parent);
    }
    if let Some(e) = failure {
        eprintln!("error: store benchmark failed: {e}");
        return EXIT_FAILED;
    }
    print_summary(&plan, &rounds);
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key lengths: "bench/" and the mean digit count of 0..count.
    #[test]
    fn mean_digits_of_the_key_range() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(mean_decimal_digits(10), 1.0));
        assert!(close(mean_decimal_digits(100), 1.9));
        assert!(close(mean_decimal_digits(10_000), 3.889));
        assert!(close(mean_decimal_digits(1), 1.0));
        assert!(close(
            mean_decimal_digits(15),
            1.0 * 10.0 / 15.0 + 2.0 * 5.0 / 15.0
        ));
    }
}
