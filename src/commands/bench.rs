//! `keel bench store [--compare-etcd]`: put and range throughput and latency
//! percentiles (hdrhistogram) against a real 3-member store on loopback with fsync,
//! optionally against a 3-member etcd running the same workload, in one run.
//!
//! keel: three `keel store` processes (this binary), and a client node in this process
//! whose bench actor keeps `--clients` requests in flight. etcd: three `etcd` processes
//! (Debian's etcd-server) and `--clients` tokio tasks sharing one gRPC channel (keel_runtimes::etcd_wire).

use super::{bad_input, parse_duration, EXIT_FAILED, EXIT_OK};
use hdrhistogram::Histogram;
use keel_actors::drivers::store_bench::{BenchConfig, PhaseResult, KIND as BENCH_KIND};
use keel_engine::{ActorSpec, Address, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(clap::Subcommand, Debug)]
enum BenchTarget {
    /// The store: 3 members on loopback with fsync, N concurrent clients.
    Store(StoreBenchArgs),
    /// The API server over the bus: create, get, update and list throughput and latency
    /// through real API server processes over a real 3-member store.
    Api(super::bench_api::ApiBenchArgs),
}

#[derive(clap::Args, Debug)]
struct StoreBenchArgs {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each phase (puts, then ranges).
    #[arg(long, default_value = "10s")]
    duration: String,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Also run the workload against a 3-member etcd and print both with their ratio.
    #[arg(long)]
    compare_etcd: bool,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: String,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Figures for one phase of one system.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub first_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SystemFigures {
    pub system: String,
    pub put: Figures,
    pub range: Figures,
}

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
        seconds,
        ops_per_second: ops as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
        first_error,
    }
}

pub(super) fn phase_figures(phase: &PhaseResult) -> Figures {
    figures(
        phase.ops,
        phase.errors,
        Duration::from_millis(phase.elapsed_ms),
        &phase.latencies_us,
        phase.first_error.clone(),
    )
}

pub(super) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Child processes killed on drop.
pub(super) struct Processes(pub(super) Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(super) fn progress(line: &str) {
    eprintln!("keel bench: {line}");
}

/// Starts a 3-member store on loopback; returns the processes and the client ports.
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start a store member: {e}"))?;
        members.0.push(child);
    }
    Ok((members, client))
}

fn bench_keel(args: &StoreBenchArgs, dir: &Path, phase_ms: u64) -> Result<SystemFigures, String> {
    progress("starting 3 keel store members on loopback (fsync on)");
    let (members, client) = start_store(dir)?;
    let endpoints: Vec<(NodeId, SocketAddr)> = (0..3)
        .map(|i| {
            (
                NodeId::new(format!("s{}", i + 1)),
                SocketAddr::from(([127, 0, 0, 1], client[i])),
            )
        })
        .collect();
    let bench = BenchConfig {
        endpoints: endpoints
            .iter()
            .map(|(n, _)| Address::new(n.as_str(), keel_actors::store::KIND, 0))
            .collect(),
        concurrency: args.clients,
        value_bytes: args.value_size,
        keys: args.keys,
        put_ms: phase_ms,
        range_ms: phase_ms,
        warmup_ms: 30_000,
    };
    let node = NodeId::new(format!("keel-bench-{}", std::process::id()));
    let config = NodeConfig {
        node: node.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: endpoints.into_iter().collect(),
        data_dir: dir.join("client"),
        actors: vec![(
            Address::new(node.as_str(), BENCH_KIND, 0),
            ActorSpec {
                kind: BENCH_KIND.into(),
                config_json: serde_json::to_string(&bench).unwrap_or_default(),
            },
        )],
        record: None,
        transport: TransportConfig {
            send_queue_capacity: (args.clients * 4).max(1024),
            inbox_capacity: (args.clients * 4).max(4096),
            ..TransportConfig::default()
        },
        status_interval_ms: 5_000,
        run_for_ms: Some(30_000 + 2 * phase_ms + 30_000),
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: false,
    };
    progress(&format!(
        "keel: {} clients, {}-byte values, {} s of puts then {} s of linearizable gets",
        args.clients,
        args.value_size,
        phase_ms / 1000,
        phase_ms / 1000
    ));
    let report = run_node(config).map_err(|e| e.to_string())?;
    drop(members);
    let result = report
        .result
        .ok_or("the bench client did not finish (did the cluster elect a leader?)")?;
    let put: PhaseResult =
        serde_json::from_value(result.result["put"].clone()).map_err(|e| e.to_string())?;
    let range: PhaseResult =
        serde_json::from_value(result.result["range"].clone()).map_err(|e| e.to_string())?;
    Ok(SystemFigures {
        system: "keel".into(),
        put: phase_figures(&put),
        range: phase_figures(&range),
    })
}

fn bench_etcd(args: &StoreBenchArgs, dir: &Path, phase: Duration) -> Result<SystemFigures, String> {
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peer[i]))
        .collect();
    let mut members = Processes(Vec::new());
    progress("starting 3 etcd members on loopback");
    for i in 0..3 {
        let name = format!("e{}", i + 1);
        let log =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&args.etcd_bin)
            .args([
                "--name",
                &name,
                "--data-dir",
                dir.join(&name).to_str().unwrap_or_default(),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", peer[i]),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", peer[i]),
            ])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", client[i]),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", client[i]),
            ])
            .args([
                "--initial-cluster",
                &cluster.join(","),
                "--initial-cluster-state",
                "new",
            ])
            .args([
                "--initial-cluster-token",
                &format!("keel-bench-{}", std::process::id()),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {} (install etcd-server): {e}", args.etcd_bin))?;
        members.0.push(child);
    }
    let endpoints: Vec<String> = client
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let clients = args.clients;
    let value = vec![b'v'; args.value_size];
    let keys = args.keys;
    let figures = runtime.block_on(async move {
        // Wait for the cluster to take a write.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            if let Ok(mut c) = keel_runtimes::etcd_wire::EtcdKvClient::connect(&endpoints) {
                if c.put(b"bench/warmup", b"x").await.is_ok() {
                    break c;
                }
            }
            if Instant::now() > deadline {
                return Err("etcd did not become writable within 30 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        progress(&format!(
            "etcd: {clients} clients, {}-byte values, {} s of puts then {} s of linearizable gets",
            value.len(),
            phase.as_secs(),
            phase.as_secs()
        ));
        let mut out = Vec::new();
        for put in [true, false] {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for worker in 0..clients {
                let mut c = client.clone();
                let value = value.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let (mut errors, mut first_error) = (0u64, None);
                    let mut n = worker as u64;
                    while start.elapsed() < phase {
                        n = n
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let key = format!("bench/{}", (n >> 33) % keys);
                        let began = Instant::now();
                        let result = if put {
                            c.put(key.as_bytes(), &value).await.map(|_| ())
                        } else {
                            c.get(key.as_bytes()).await.map(|_| ())
                        };
                        match result {
                            Ok(()) => latencies.push(began.elapsed().as_micros() as u64),
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (latencies, errors, first_error)
                }));
            }
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
            for task in tasks {
                if let Ok((l, e, f)) = task.await {
                    latencies.extend(l);
                    errors += e;
                    if first_error.is_none() {
                        first_error = f;
                    }
                }
            }
            out.push(figures(
                latencies.len() as u64,
                errors,
                start.elapsed(),
                &latencies,
                first_error,
            ));
        }
        Ok(out)
    })?;
    drop(members);
    let mut figures = figures.into_iter();
    Ok(SystemFigures {
        system: "etcd".into(),
        put: figures.next().unwrap_or_default(),
        range: figures.next().unwrap_or_default(),
    })
}

fn print_figures(system: &SystemFigures) {
    for (phase, f) in [("put", &system.put), ("range", &system.range)] {
        println!(
            "{:<5} {:<6} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  ({} ops, {} errors)",
            system.system, phase, f.ops_per_second, f.p50_ms, f.p99_ms, f.p999_ms, f.max_ms, f.ops, f.errors
        );
        if let Some(error) = &f.first_error {
            println!("      first error: {error}");
        }
    }
}

pub fn run(args: BenchArgs) -> u8 {
    super::init_logging("warn,keel_runtimes=error,madsim=error");
    let args = match args.target {
        BenchTarget::Store(args) => args,
        BenchTarget::Api(args) => return super::bench_api::run(args),
    };
    let phase = match parse_duration(&args.duration) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    if args.clients == 0 || args.clients > 10_000 || args.value_size > 1024 * 1024 || args.keys == 0
    {
        return bad_input(
            "--clients must be within 1..=10000, --value-size at most 1 MiB, --keys at least 1",
        );
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("keel-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return bad_input(format!("cannot create {}: {e}", dir.display()));
    }
    let keel = bench_keel(&args, &dir, phase.as_millis() as u64);
    let etcd = if args.compare_etcd {
        Some(bench_etcd(&args, &dir, phase))
    } else {
        None
    };
    if std::env::var_os("KEEL_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        progress(&format!("kept logs and data in {}", dir.display()));
    }
    let keel = match keel {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: keel benchmark failed: {e}");
            return EXIT_FAILED;
        }
    };
    let etcd = match etcd.transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: etcd benchmark failed: {e}");
            return EXIT_FAILED;
        }
    };
    let ratio = etcd.as_ref().map(|e| {
        serde_json::json!({
            "put_throughput": keel.put.ops_per_second / e.put.ops_per_second.max(1e-9),
            "put_p99": keel.put.p99_ms / e.put.p99_ms.max(1e-9),
            "range_throughput": keel.range.ops_per_second / e.range.ops_per_second.max(1e-9),
            "range_p99": keel.range.p99_ms / e.range.p99_ms.max(1e-9),
        })
    });
    if args.json {
        let value = serde_json::json!({
            "clients": args.clients, "value_size": args.value_size, "phase_seconds": phase.as_secs_f64(),
            "keel": keel, "etcd": etcd, "ratio": ratio,
        });
        println!("{value}");
    } else {
        print_figures(&keel);
        if let Some(etcd) = &etcd {
            print_figures(etcd);
        }
        if let Some(ratio) = ratio {
            println!(
                "keel/etcd: put throughput {:.2}×, put p99 {:.2}×; range throughput {:.2}×, range p99 {:.2}×",
                ratio["put_throughput"].as_f64().unwrap_or(0.0),
                ratio["put_p99"].as_f64().unwrap_or(0.0),
                ratio["range_throughput"].as_f64().unwrap_or(0.0),
                ratio["range_p99"].as_f64().unwrap_or(0.0)
            );
        }
    }
    EXIT_OK
}
