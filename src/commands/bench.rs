//! `keel bench store|api`: the dispatch, and what the benchmarks share — figures from
//! latencies (hdrhistogram), loopback ports, child processes (killed on drop, their
//! peak memory read from /proc) and the 3-member store they start.
//!
//! `keel bench store` (keel against etcd, like for like) is [`super::bench_store`];
//! `keel bench api` is [`super::bench_api`].

use hdrhistogram::Histogram;
use keel_actors::drivers::store_bench::PhaseResult;
use serde::Serialize;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(clap::Subcommand, Debug)]
enum BenchTarget {
    /// The store: 3 members on loopback with fsync, N clients; with --compare-etcd,
    /// against a 3-member etcd like for like (see --help for how).
    #[command(long_about = super::bench_store::STORE_BENCH_HELP)]
    Store(super::bench_store::StoreBenchArgs),
    /// The API server over the bus: create, get, update and list throughput and latency
    /// through real API server processes over a real 3-member store.
    Api(super::bench_api::ApiBenchArgs),
}

/// Figures for one phase of one system.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    /// Requests that succeeded.
    pub ops: u64,
    /// Requests that failed, timed out or were cut off by the phase's end.
    pub errors: u64,
    /// Of `errors`: requests still in flight when the phase ended.
    pub unfinished: u64,
    pub seconds: f64,
    /// Successes per second.
    pub ops_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub stddev_ms: f64,
    pub first_error: Option<String>,
}

/// Figures from `ops` successes and `errors` errors over `elapsed`; `latencies_us` holds
/// whatever latencies the caller counts (the store bench: every request's).
pub(super) fn figures(
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: &[u64],
    first_error: Option<String>,
) -> Figures {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds are valid");
    for latency in latencies_us {
        let _ = histogram.record((*latency).clamp(1, 60_000_000));
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Figures {
        ops,
        errors,
        unfinished: 0,
        seconds,
        ops_per_second: ops as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
        mean_ms: histogram.mean() / 1000.0,
        stddev_ms: histogram.stdev() / 1000.0,
        first_error,
    }
}

pub(super) fn phase_figures(phase: &PhaseResult) -> Figures {
    Figures {
        unfinished: phase.unfinished,
        ..figures(
            phase.ops,
            phase.errors,
            Duration::from_millis(phase.elapsed_ms),
            &phase.latencies_us,
            phase.first_error.clone(),
        )
    }
}

pub(super) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Child processes killed on drop.
pub(super) struct Processes(pub(super) Vec<Child>);

impl Processes {
    /// Each process's peak resident set so far (None where it cannot be read: the
    /// process has exited, or this is not Linux).
    pub(super) fn peak_rss_bytes(&self) -> Vec<Option<u64>> {
        self.0
            .iter()
            .map(|child| peak_rss_bytes(child.id()))
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `VmHWM` ("high water mark": the peak resident set) of process `pid`, in bytes.
pub(super) fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(super) fn progress(line: &str) {
    eprintln!("keel bench: {line}");
}

/// Starts a 3-member store on loopback; returns the processes and the client ports.
/// The members fsync their log: the test-only switch that turns it off is removed from
/// their environment.
pub(super) fn start_store(dir: &Path) -> Result<(Processes, Vec<u16>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the keel binary: {e}"))?;
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("s{}=127.0.0.1:{}", i + 1, peer[i]))
        .collect();
    let mut members = Processes(Vec::new());
    for i in 0..3 {
        let name = format!("s{}", i + 1);
        let log =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args(["store", "--name", &name])
            .args(["--data-dir", dir.join(&name).to_str().unwrap_or_default()])
            .args(["--listen-peer", &format!("127.0.0.1:{}", peer[i])])
            .args(["--listen-client", &format!("127.0.0.1:{}", client[i])])
            .args(["--initial-cluster", &cluster.join(",")])
            // KEEL_BENCH_MEMBER_LOG=info (or a RUST_LOG filter) to see members' status
            // lines in DIR/sN.log (kept with KEEL_BENCH_KEEP=1).
            .env(
                "RUST_LOG",
                std::env::var("KEEL_BENCH_MEMBER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("KEEL_TEST_SKIP_FSYNC")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start a store member: {e}"))?;
        members.0.push(child);
    }
    Ok((members, client))
}

pub fn run(args: BenchArgs) -> u8 {
    super::init_logging("warn,keel_runtimes=error,madsim=error");
    match args.target {
        BenchTarget::Store(args) => super::bench_store::run(args),
        BenchTarget::Api(args) => super::bench_api::run(args),
    }
}
