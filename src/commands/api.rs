//! `keel apiserver`: an API server daemon over a store cluster; and `keel api-client`,
//! a bus client that runs API workload roles and prints what it sees as JSON lines
//! (the HTTPS edge for kubectl comes with a later issue); and `keel api-balancer`, one
//! address in front of several API servers.

use super::store::{parse_endpoints, parse_members};
use super::{bad_input, parse_duration, EXIT_OK};
use keel_actors::apiserver::balancer::{BalancerConfig, KIND as BALANCER_KIND};
use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
use keel_actors::drivers::api_workload::{ApiWorkloadConfig, KIND as WORKLOAD_KIND};
use keel_engine::{ActorSpec, Address, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ApiServerArgs {
    /// This API server's name (its bus node name).
    #[arg(long)]
    name: String,
    /// Where the bus listens for clients.
    #[arg(long)]
    listen: SocketAddr,
    /// The store members' client addresses, as NAME=HOST:PORT, comma-separated.
    #[arg(long)]
    store: String,
    /// A directory for the node (the API server itself keeps nothing durable).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "10s")]
    status_interval: String,
    /// Frames queued per peer connection before new ones are dropped: a change fanned
    /// out to thousands of watchers on one client leaves in a burst.
    #[arg(long, default_value_t = 65_536)]
    send_queue: usize,
}

#[derive(clap::Args, Debug)]
pub struct BalancerArgs {
    /// The balancer's name (its bus node name).
    #[arg(long)]
    name: String,
    /// Where the bus listens for clients.
    #[arg(long)]
    listen: SocketAddr,
    /// The API servers, as NAME=HOST:PORT, comma-separated.
    #[arg(long)]
    apiservers: String,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "10s")]
    status_interval: String,
    /// Frames queued per peer connection before new ones are dropped (events for
    /// thousands of watchers pass through).
    #[arg(long, default_value_t = 65_536)]
    send_queue: usize,
}

#[derive(clap::Args, Debug)]
pub struct ApiClientArgs {
    /// The API servers, as HOST:PORT or NAME=HOST:PORT, comma-separated (the client
    /// balances over them itself; a server given without its name is asked for it).
    #[arg(
        long,
        required_unless_present = "balancer",
        conflicts_with = "balancer"
    )]
    apiservers: Option<String>,
    /// A balancer in front of the API servers, as HOST:PORT or NAME=HOST:PORT.
    #[arg(long)]
    balancer: Option<String>,
    /// Roles to run, comma-separated: writer, watcher, services.
    #[arg(long, default_value = "writer,watcher")]
    roles: String,
    /// Stop after this long.
    #[arg(long, default_value = "10s")]
    duration: String,
}

fn start(config: NodeConfig) -> u8 {
    match run_node(config) {
        Ok(_) => EXIT_OK,
        Err(e) => bad_input(e),
    }
}

/// A long-running node hosting one actor (an API server or a balancer).
struct Daemon<'a> {
    name: &'a str,
    listen: SocketAddr,
    peers: Vec<(NodeId, SocketAddr)>,
    data_dir: PathBuf,
    kind: &'a str,
    config_json: String,
    send_queue: usize,
    status_interval_ms: u64,
}

fn serve(daemon: Daemon<'_>) -> u8 {
    let node = NodeId::new(daemon.name);
    start(NodeConfig {
        node: node.clone(),
        listen: daemon.listen,
        peers: daemon.peers.into_iter().collect(),
        data_dir: daemon.data_dir,
        actors: vec![(
            Address::new(node.as_str(), daemon.kind, 0),
            ActorSpec {
                kind: daemon.kind.into(),
                config_json: daemon.config_json,
            },
        )],
        record: None,
        transport: TransportConfig {
            send_queue_capacity: daemon.send_queue.max(1),
            ..TransportConfig::default()
        },
        status_interval_ms: daemon.status_interval_ms,
        run_for_ms: None,
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: false,
    })
}

pub fn run_apiserver(args: ApiServerArgs) -> u8 {
    super::init_logging("info");
    let stores = match parse_members(&args.store, "--store") {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let status_interval_ms = match parse_duration(&args.status_interval) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let config = ApiServerConfig::new(
        stores
            .iter()
            .map(|(n, _)| Address::new(n.as_str(), keel_actors::store::KIND, 0))
            .collect(),
    );
    serve(Daemon {
        name: &args.name,
        listen: args.listen,
        peers: stores,
        data_dir: args.data_dir,
        kind: API_KIND,
        config_json: serde_json::to_string(&config).unwrap_or_default(),
        send_queue: args.send_queue,
        status_interval_ms,
    })
}

pub fn run_balancer(args: BalancerArgs) -> u8 {
    super::init_logging("info");
    let servers = match parse_members(&args.apiservers, "--apiservers") {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let status_interval_ms = match parse_duration(&args.status_interval) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let config = BalancerConfig::new(
        servers
            .iter()
            .map(|(n, _)| Address::new(n.as_str(), API_KIND, 0))
            .collect(),
    );
    serve(Daemon {
        name: &args.name,
        listen: args.listen,
        peers: servers,
        data_dir: args.data_dir,
        kind: BALANCER_KIND,
        config_json: serde_json::to_string(&config).unwrap_or_default(),
        send_queue: args.send_queue,
        status_interval_ms,
    })
}

pub fn run_client(args: ApiClientArgs) -> u8 {
    super::init_logging("error");
    let (servers, kind) = match (&args.apiservers, &args.balancer) {
        (Some(list), _) => (parse_endpoints(list, "--apiservers"), API_KIND),
        (None, Some(balancer)) => (parse_endpoints(balancer, "--balancer"), BALANCER_KIND),
        (None, None) => return bad_input("give --apiservers or --balancer".to_string()),
    };
    let servers = match servers {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let duration_ms = match parse_duration(&args.duration) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let roles: Vec<String> = args
        .roles
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let node = NodeId::new(format!("keel-api-client-{}", std::process::id()));
    let apiservers: Vec<Address> = servers
        .iter()
        .map(|(n, _)| Address::new(n.as_str(), kind, 0))
        .collect();
    let mut actors = Vec::new();
    for (index, role) in roles.iter().enumerate() {
        let config = ApiWorkloadConfig {
            client: index as u64 + 1,
            apiservers: apiservers.clone(),
            role: role.clone(),
            think_ms: 50,
            timeout_ms: 2_000,
            start_ms: 500,
        };
        if let Err(e) = keel_actors::drivers::api_workload::ApiWorkload::new(config.clone()) {
            return bad_input(e);
        }
        actors.push((
            Address::new(node.as_str(), WORKLOAD_KIND, index as u32),
            ActorSpec {
                kind: WORKLOAD_KIND.into(),
                config_json: serde_json::to_string(&config).unwrap_or_default(),
            },
        ));
    }
    let data_dir = std::env::temp_dir().join(node.as_str());
    let code = start(NodeConfig {
        node,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: servers.into_iter().collect(),
        data_dir: data_dir.clone(),
        actors,
        record: None,
        transport: TransportConfig::default(),
        status_interval_ms: 3_600_000,
        run_for_ms: Some(duration_ms),
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: true,
    });
    let _ = std::fs::remove_dir_all(&data_dir);
    code
}
