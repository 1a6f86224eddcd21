//! `keel bench api`: the API server's figures, in real mode (store and API servers as
//! processes on loopback, the bench actors in this process over real TCP) or in the
//! simulator (`--sim`: the same actors over the modelled network, no CPU cost — the
//! protocol's latencies, not the machine's).
//!
//! Two measurements (`--measure crud,fanout`):
//! * **crud** — create, get, update and list(100) throughput and latency with
//!   `--clients` requests in flight ([`keel_actors::drivers::api_bench`]);
//! * **fanout** — watchers of one resource against delivery latency at
//!   `--fanout-rate` events per second, in rounds of `--fanout-steps` watchers, until
//!   the p99 passes `--fanout-threshold` ([`keel_actors::drivers::fanout`]).
//!
//! Percentiles come from hdrhistogram over the latencies the actors report.

use super::bench::{figures, free_port, phase_figures, progress, start_store, Figures};
use super::{bad_input, parse_duration, EXIT_FAILED, EXIT_OK};
use keel_actors::drivers::api_bench::{ApiBenchConfig, KIND as CRUD_KIND};
use keel_actors::drivers::fanout::{FanoutConfig, FanoutRound, KIND as FANOUT_KIND};
use keel_actors::drivers::store_bench::PhaseResult;
use keel_actors::store::StoreConfig;
use keel_engine::{ActorSpec, Address, Control, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use keel_sim::{Invariant, Machine, NetworkConfig, Observation, SimConfig, World};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ApiBenchArgs {
    /// Requests in flight at once (crud).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Length of each crud phase (create, get, update, list).
    #[arg(long, default_value = "5s")]
    duration: String,
    /// How many API servers (requests and watches are spread over them).
    #[arg(long, default_value_t = 1)]
    apiservers: usize,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// What the crud phases create, read and update: configmap, or pod (admission
    /// reads the namespace, LimitRanges and quotas for each pod create).
    #[arg(long, default_value = "configmap", value_parser = ["configmap", "pod"])]
    object: String,
    /// What to measure, comma-separated: crud, fanout.
    #[arg(long, default_value = "crud,fanout")]
    measure: String,
    /// Writes (events per watcher) per second in the fan-out rounds.
    #[arg(long, default_value_t = 20)]
    fanout_rate: u64,
    /// Watchers in successive fan-out rounds, comma-separated.
    #[arg(long, default_value = "10,100,250,500,1000,2000,4000")]
    fanout_steps: String,
    /// Measured length of each fan-out round.
    #[arg(long, default_value = "3s")]
    fanout_round: String,
    /// The p99 delivery latency (ms) the fan-out looks for.
    #[arg(long, default_value_t = 100)]
    fanout_threshold: u64,
    /// Run in the simulator instead of over loopback.
    #[arg(long)]
    sim: bool,
    /// The simulator's seed (with --sim).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// One fan-out round as reported.
#[derive(Clone, Debug, Serialize)]
struct RoundFigures {
    watchers: usize,
    writes: u64,
    expected: u64,
    delivered: u64,
    cut_off: u64,
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    under_threshold: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
struct FanoutFigures {
    rate_per_s: u64,
    threshold_ms: u64,
    rounds: Vec<RoundFigures>,
    /// The most watchers of a round whose p99 stayed under the threshold.
    max_watchers_under_threshold: usize,
}

struct Plan {
    crud: Option<ApiBenchConfig>,
    fanout: Option<FanoutConfig>,
}

pub fn run(args: ApiBenchArgs) -> u8 {
    let phase = match parse_duration(&args.duration) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let round = match parse_duration(&args.fanout_round) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    if args.clients == 0 || args.clients > 10_000 || args.apiservers == 0 || args.apiservers > 16 {
        return bad_input("--clients must be within 1..=10000 and --apiservers within 1..=16");
    }
    let measures: Vec<&str> = args.measure.split(',').map(str::trim).collect();
    if let Some(bad) = measures.iter().find(|m| !matches!(**m, "crud" | "fanout")) {
        return bad_input(format!(
            "--measure: unknown measurement {bad:?} (crud, fanout)"
        ));
    }
    let steps: Result<Vec<usize>, _> = args
        .fanout_steps
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect();
    let steps = match steps {
        Ok(s) if !s.is_empty() && s.windows(2).all(|w| w[0] < w[1]) => s,
        _ => {
            return bad_input("--fanout-steps must be increasing numbers, e.g. 10,100,1000");
        }
    };
    let apiservers: Vec<Address> = (1..=args.apiservers)
        .map(|i| Address::new(format!("a{i}"), keel_actors::apiserver::KIND, 0))
        .collect();
    let plan = Plan {
        crud: measures.contains(&"crud").then(|| ApiBenchConfig {
            apiservers: apiservers.clone(),
            concurrency: args.clients,
            phase_ms: phase.as_millis() as u64,
            warmup_ms: 30_000,
            value_bytes: args.value_size,
            object: if args.object == "pod" {
                keel_actors::drivers::api_bench::BenchObject::Pod
            } else {
                keel_actors::drivers::api_bench::BenchObject::Configmap
            },
        }),
        fanout: measures.contains(&"fanout").then(|| FanoutConfig {
            apiservers: apiservers.clone(),
            steps,
            rate_per_s: args.fanout_rate,
            round_ms: round.as_millis() as u64,
            settle_ms: 2_000,
            threshold_ms: args.fanout_threshold,
            ack_every: 64,
            samples_max: 200_000,
        }),
    };
    if let Some(Err(e)) = plan.fanout.as_ref().map(FanoutConfig::validate) {
        return bad_input(e);
    }
    let outcome = if args.sim {
        bench_sim(&args, &plan)
    } else {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("keel-bench-api-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return bad_input(format!("cannot create {}: {e}", dir.display()));
        }
        let outcome = bench_real(&args, &plan, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    };
    let (crud, fanout) = match outcome {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: API benchmark failed: {e}");
            return EXIT_FAILED;
        }
    };
    let fanout = fanout.map(|rounds| fanout_figures(&plan, rounds));
    if args.json {
        let phases: serde_json::Map<String, serde_json::Value> = crud
            .iter()
            .map(|(k, f)| (k.clone(), serde_json::to_value(f).unwrap_or_default()))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "mode": if args.sim { "sim" } else { "real" },
                "clients": args.clients, "apiservers": args.apiservers,
                "phases": phases, "fanout": fanout })
        );
        return EXIT_OK;
    }
    let mode = if args.sim {
        "simulated network"
    } else {
        "real processes on loopback"
    };
    println!("keel bench api ({mode}, {} API server(s))", args.apiservers);
    for (phase, f) in &crud {
        println!(
            "api {:<7} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  ({} ops, {} errors)",
            phase, f.ops_per_second, f.p50_ms, f.p99_ms, f.p999_ms, f.ops, f.errors
        );
        if let Some(error) = &f.first_error {
            println!(
                "        first error: {}",
                error.chars().take(200).collect::<String>()
            );
        }
    }
    if let Some(f) = &fanout {
        println!(
            "watch fan-out at {} events/s per watcher (threshold p99 {} ms):",
            f.rate_per_s, f.threshold_ms
        );
        for r in &f.rounds {
            println!(
                "  {:>6} watchers  {:>9.0} events/s delivered  p50 {:>8.2} ms  p99 {:>8.2} ms  ({} of {} delivered{})",
                r.watchers,
                r.events_per_second,
                r.p50_ms,
                r.p99_ms,
                r.delivered,
                r.expected,
                if r.cut_off > 0 {
                    format!(", {} cut off", r.cut_off)
                } else {
                    String::new()
                }
            );
        }
        println!(
            "  → up to {} watchers with p99 under {} ms",
            f.max_watchers_under_threshold, f.threshold_ms
        );
    }
    EXIT_OK
}

fn fanout_figures(plan: &Plan, rounds: Vec<FanoutRound>) -> FanoutFigures {
    let config = plan
        .fanout
        .as_ref()
        .expect("fan-out figures only when measured");
    let mut out = FanoutFigures {
        rate_per_s: config.rate_per_s,
        threshold_ms: config.threshold_ms,
        ..FanoutFigures::default()
    };
    for round in rounds {
        // Events per second over the measured round (the drain after it adds stragglers,
        // not time).
        let f = figures(
            round.delivered,
            0,
            Duration::from_millis(config.round_ms),
            &round.latencies_us,
            None,
        );
        // Undelivered events count as over the threshold (the actor's p99 folds them in).
        let p99_ms = (round.p99_us as f64 / 1000.0).max(f.p99_ms);
        let under = p99_ms <= config.threshold_ms as f64 && round.cut_off == 0;
        if under {
            out.max_watchers_under_threshold = out.max_watchers_under_threshold.max(round.watchers);
        }
        out.rounds.push(RoundFigures {
            watchers: round.watchers,
            writes: round.writes,
            expected: round.expected,
            delivered: round.delivered,
            cut_off: round.cut_off,
            events_per_second: f.ops_per_second,
            p50_ms: f.p50_ms,
            p99_ms: if round.p99_us == u64::MAX {
                f64::INFINITY
            } else {
                p99_ms
            },
            max_ms: f.max_ms,
            under_threshold: under,
        });
    }
    out
}

fn crud_figures(result: &serde_json::Value) -> Result<Vec<(String, Figures)>, String> {
    let mut out = Vec::new();
    for phase in ["create", "get", "update", "list"] {
        let measured: PhaseResult =
            serde_json::from_value(result[phase].clone()).map_err(|e| e.to_string())?;
        out.push((phase.to_string(), phase_figures(&measured)));
    }
    Ok(out)
}

fn rounds(result: &serde_json::Value) -> Result<Vec<FanoutRound>, String> {
    serde_json::from_value(result["rounds"].clone()).map_err(|e| e.to_string())
}

fn spec<T: Serialize>(kind: &str, config: &T) -> ActorSpec {
    ActorSpec {
        kind: kind.into(),
        config_json: serde_json::to_string(config).unwrap_or_default(),
    }
}

type Outcome = Result<(Vec<(String, Figures)>, Option<Vec<FanoutRound>>), String>;

// ----- real mode --------------------------------------------------------------------------

fn bench_real(args: &ApiBenchArgs, plan: &Plan, dir: &Path) -> Outcome {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the keel binary: {e}"))?;
    progress("starting 3 keel store members on loopback (fsync on)");
    let (mut processes, store_ports) = start_store(dir)?;
    let stores: Vec<String> = store_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("s{}=127.0.0.1:{p}", i + 1))
        .collect();
    let mut servers = Vec::new();
    progress(&format!("starting {} API server(s)", args.apiservers));
    for i in 0..args.apiservers {
        let port = free_port()?;
        let name = format!("a{}", i + 1);
        let log =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args(["apiserver", "--name", &name])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--store", &stores.join(",")])
            .args(["--data-dir", dir.join(&name).to_str().unwrap_or_default()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start an API server: {e}"))?;
        processes.0.push(child);
        servers.push((
            NodeId::new(name.as_str()),
            SocketAddr::from(([127, 0, 0, 1], port)),
        ));
    }
    let run_actor = |name: &str, kind: &str, config_json: String, run_for_ms: u64, queue: usize| {
        let node = NodeId::new(format!("keel-api-bench-{name}-{}", std::process::id()));
        let report = run_node(NodeConfig {
            node: node.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: servers.iter().cloned().collect(),
            data_dir: dir.join(format!("client-{name}")),
            actors: vec![(
                Address::new(node.as_str(), kind, 0),
                ActorSpec {
                    kind: kind.into(),
                    config_json,
                },
            )],
            record: None,
            transport: TransportConfig {
                send_queue_capacity: queue,
                inbox_capacity: queue,
                ..TransportConfig::default()
            },
            status_interval_ms: 5_000,
            run_for_ms: Some(run_for_ms),
            extra_listen: Vec::new(),
            storage: Default::default(),
            print_reports: false,
        })
        .map_err(|e| e.to_string())?;
        report
            .result
            .map(|r| r.result)
            .ok_or_else(|| format!("the {name} bench did not finish (did the API server come up?)"))
    };
    let mut crud = Vec::new();
    if let Some(config) = &plan.crud {
        progress(&format!(
            "crud: {} clients; create, get, update, list: {} s each",
            config.concurrency,
            config.phase_ms / 1000
        ));
        let result = run_actor(
            "crud",
            CRUD_KIND,
            serde_json::to_string(config).unwrap_or_default(),
            30_000 + 4 * config.phase_ms + 30_000,
            (config.concurrency * 4).max(4096),
        )?;
        crud = crud_figures(&result)?;
    }
    let mut fanout = None;
    if let Some(config) = &plan.fanout {
        let per_round = config.settle_ms + config.round_ms + 2_000;
        let max_watchers = config.steps.last().copied().unwrap_or(1);
        let result = run_actor(
            "fanout",
            FANOUT_KIND,
            serde_json::to_string(config).unwrap_or_default(),
            30_000 + per_round * config.steps.len() as u64 + 30_000,
            (max_watchers * 8).max(65_536),
        )?;
        fanout = Some(rounds(&result)?);
    }
    drop(processes);
    Ok((crud, fanout))
}

// ----- simulator ----------------------------------------------------------------------------

/// Collects a bench actor's final report (and prints its progress lines) in the simulator.
struct Collector {
    result: Arc<Mutex<Option<String>>>,
}

impl Invariant for Collector {
    fn name(&self) -> &'static str {
        "bench-finished"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        if let Observation::Control { control, .. } = observation {
            match control {
                Control::Done { result, .. } => {
                    *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
                }
                Control::Output { line } => progress(line),
                _ => {}
            }
        }
        Ok(())
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        match self
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            true => Ok("the bench finished".into()),
            false => Err("the bench did not finish in the simulated time".into()),
        }
    }
}

fn sim_machines(apiservers: usize, bench: (Address, ActorSpec)) -> Vec<Machine> {
    let store = |i: u64| Address::new(format!("s{i}"), keel_actors::store::KIND, 0);
    let initial: Vec<(u64, Address)> = (1..=3).map(|i| (i, store(i))).collect();
    let mut machines: Vec<Machine> = (1..=3)
        .map(|i| Machine {
            name: format!("s{i}"),
            actors: vec![(
                store(i),
                spec(
                    keel_actors::store::KIND,
                    &StoreConfig::new(i, initial.clone()),
                ),
            )],
        })
        .collect();
    let stores: Vec<Address> = (1..=3).map(store).collect();
    for i in 1..=apiservers {
        let config = keel_actors::apiserver::ApiServerConfig::new(stores.clone());
        machines.push(Machine {
            name: format!("a{i}"),
            actors: vec![(
                Address::new(format!("a{i}"), keel_actors::apiserver::KIND, 0),
                spec(keel_actors::apiserver::KIND, &config),
            )],
        });
    }
    machines.push(Machine {
        name: bench.0.node.to_string(),
        actors: vec![bench],
    });
    machines
}

fn run_sim(
    args: &ApiBenchArgs,
    name: &str,
    bench: (Address, ActorSpec),
    duration_ms: u64,
) -> Result<serde_json::Value, String> {
    let result = Arc::new(Mutex::new(None));
    let summary = keel_sim::run(SimConfig {
        scenario: format!("bench-api-{name}"),
        seed: args.seed,
        duration_ms,
        machines: sim_machines(args.apiservers, bench),
        // A LAN: 0–1 ms per message (the scenarios' 1–10 ms is a harsher network).
        network: NetworkConfig {
            latency_min_ms: 0,
            latency_max_ms: 1,
            inbox_capacity: 1 << 20,
            local_queue_capacity: 1 << 20,
            ..NetworkConfig::default()
        },
        faults: keel_sim::FaultSchedule::new(Vec::new()),
        invariants: vec![Box::new(Collector {
            result: result.clone(),
        })],
        record: None,
        progress_every_ms: None,
    })
    .map_err(|e| e.to_string())?;
    progress(&format!(
        "{name}: {} s simulated in {:.1} s; network {}",
        summary.sim_time_ms / 1000,
        summary.wall_ms as f64 / 1000.0,
        serde_json::to_string(&summary.network).unwrap_or_default()
    ));
    let result = result.lock().unwrap_or_else(|p| p.into_inner()).take();
    let result = result.ok_or_else(|| {
        format!("the {name} bench did not finish in {duration_ms} ms of simulated time")
    })?;
    serde_json::from_str(&result).map_err(|e| e.to_string())
}

fn bench_sim(args: &ApiBenchArgs, plan: &Plan) -> Outcome {
    let mut crud = Vec::new();
    if let Some(config) = &plan.crud {
        progress(&format!(
            "crud in the simulator: {} clients; create, get, update, list: {} s each",
            config.concurrency,
            config.phase_ms / 1000
        ));
        let bench = (Address::new("bench", CRUD_KIND, 0), spec(CRUD_KIND, config));
        let result = run_sim(args, "crud", bench, 10_000 + 4 * config.phase_ms + 2_000)?;
        crud = crud_figures(&result)?;
    }
    let mut fanout = None;
    if let Some(config) = &plan.fanout {
        let per_round = config.settle_ms + config.round_ms + 2_000;
        let bench = (
            Address::new("bench", FANOUT_KIND, 0),
            spec(FANOUT_KIND, config),
        );
        let result = run_sim(
            args,
            "fanout",
            bench,
            10_000 + per_round * config.steps.len() as u64 + 2_000,
        )?;
        fanout = Some(rounds(&result)?);
    }
    Ok((crud, fanout))
}
