//! keel's side of one `keel bench store` run: three fresh `keel store` processes (this
//! binary) on loopback, and this process as a client node whose bench actor
//! ([`keel_actors::drivers::store_bench`]) runs the workload through the bus and
//! reports every request. The members' peak RSS is read after the actor is done and
//! before they are stopped.

use super::bench::{phase_figures, progress, start_store};
use super::bench_store::{Measured, Plan, Routing, Workload};
use keel_actors::drivers::bench_routing::BenchRouting;
use keel_actors::drivers::store_bench::{BenchConfig, OpenLoop, PhaseResult, KIND as BENCH_KIND};
use keel_engine::{ActorSpec, Address, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use std::net::SocketAddr;
use std::path::Path;

/// Time the cluster has to elect a leader and answer a first put.
const WARMUP_MS: u64 = 30_000;
/// Slack after the actor's own phases before the node is stopped regardless.
const SLACK_MS: u64 = 30_000;

fn bench_config(plan: &Plan, routing: Routing, endpoints: Vec<Address>) -> BenchConfig {
    let phase_ms = plan.phase.as_millis() as u64;
    let (range_ms, open_loop) = match plan.workload {
        Workload::PutRange => (phase_ms, None),
        Workload::CheckPerf(profile) => (
            0,
            Some(OpenLoop {
                puts_per_s: profile.puts_per_s,
                drain_ms: plan.drain_limit().as_millis() as u64,
            }),
        ),
    };
    BenchConfig {
        endpoints,
        concurrency: plan.clients,
        value_bytes: plan.value_size,
        keys: plan.keys,
        put_ms: phase_ms,
        range_ms,
        warmup_ms: WARMUP_MS,
        routing: match routing {
            Routing::Leader => BenchRouting::Leader,
            Routing::All => BenchRouting::Pinned,
        },
        request_timeout_ms: plan.request_timeout.as_millis() as u64,
        open_loop,
    }
}

fn phase(result: &serde_json::Value, name: &str) -> Result<PhaseResult, String> {
    serde_json::from_value(result[name].clone()).map_err(|e| format!("{name} figures: {e}"))
}

/// One run of keel: a fresh cluster in `dir`, the workload, the members' memory.
pub(super) fn measure(plan: &Plan, routing: Routing, dir: &Path) -> Result<Measured, String> {
    progress("keel: starting 3 store members on loopback (fsync on)");
    let (members, client_ports) = start_store(dir)?;
    let peers: Vec<(NodeId, SocketAddr)> = client_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            (
                NodeId::new(format!("s{}", i + 1)),
                SocketAddr::from(([127, 0, 0, 1], *port)),
            )
        })
        .collect();
    let endpoints = peers
        .iter()
        .map(|(node, _)| Address::new(node.as_str(), keel_actors::store::KIND, 0))
        .collect();
    let bench = bench_config(plan, routing, endpoints);
    let run_for_ms = WARMUP_MS
        + bench.put_ms
        + bench.range_ms
        + bench.open_loop.as_ref().map_or(0, |o| o.drain_ms)
        + SLACK_MS;
    let node = NodeId::new(format!("keel-bench-{}", std::process::id()));
    let queue = (plan.clients * 4).max(4096);
    let config = NodeConfig {
        node: node.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: peers.into_iter().collect(),
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
            send_queue_capacity: queue,
            inbox_capacity: queue,
            ..TransportConfig::default()
        },
        status_interval_ms: 5_000,
        run_for_ms: Some(run_for_ms),
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: false,
    };
    progress(&format!(
        "keel: {} clients, {} routing, {}-byte values, {} s per phase",
        plan.clients,
        routing.name(),
        plan.value_size,
        plan.phase.as_secs()
    ));
    let report = run_node(config).map_err(|e| e.to_string());
    // Read before the members stop: their peak over the whole run.
    let peak_rss_bytes = members.peak_rss_bytes();
    drop(members);
    let result = report?
        .result
        .ok_or("the bench client did not finish (did the cluster elect a leader?)")?
        .result;
    let range = match plan.workload {
        Workload::PutRange => Some(phase_figures(&phase(&result, "range")?)),
        Workload::CheckPerf(_) => None,
    };
    Ok(Measured {
        put: phase_figures(&phase(&result, "put")?),
        range,
        peak_rss_bytes,
        redirects: result["redirects"].as_u64(),
    })
}
