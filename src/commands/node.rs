//! `keel selftest`: one real machine of the self-test protocol, over TCP.
//!
//! Until the store lands this is the real-mode half of the foundation's proof: the same
//! `selftest` actor the simulator runs, hosted by `keel-runtimes` with sled storage and
//! the TCP bus, optionally recording a trace that `keel replay` checks.

use super::{bad_input, parse_duration, EXIT_OK};
use keel_actors::selftest::{SelfTestConfig, KIND};
use keel_engine::{ActorSpec, Address, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// This machine's name.
    #[arg(long)]
    name: String,
    /// Address to listen on for the bus, e.g. 127.0.0.1:7101.
    #[arg(long)]
    listen: SocketAddr,
    /// A peer machine as NAME=HOST:PORT; repeat for each peer.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Directory for this machine's storage (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Record every actor input to this trace file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Stop after this long (`10s`, `2m`); default: until SIGINT/SIGTERM.
    #[arg(long)]
    duration: Option<String>,
    /// Ping interval of the self-test protocol, in milliseconds.
    #[arg(long, default_value_t = 100)]
    ping_interval_ms: u64,
    /// How often to log a status line on stderr.
    #[arg(long, default_value = "5s")]
    status_interval: String,
}

fn parse_peer(text: &str) -> Result<(NodeId, SocketAddr), String> {
    let (name, address) = text
        .split_once('=')
        .ok_or_else(|| format!("peer {text:?} is not NAME=HOST:PORT"))?;
    if name.is_empty() {
        return Err(format!("peer {text:?} has an empty name"));
    }
    let address: SocketAddr = address
        .parse()
        .map_err(|_| format!("peer {text:?}: {address:?} is not HOST:PORT"))?;
    Ok((NodeId::new(name), address))
}

pub fn run(args: NodeArgs) -> u8 {
    super::init_logging("info");
    let mut peers = BTreeMap::new();
    for text in &args.peers {
        match parse_peer(text) {
            Ok((name, address)) => {
                if name.as_str() == args.name {
                    return bad_input(format!("peer {text:?} has this machine's own name"));
                }
                if peers.insert(name, address).is_some() {
                    return bad_input(format!("peer {text:?} is given twice"));
                }
            }
            Err(e) => return bad_input(e),
        }
    }
    let run_for_ms = match args.duration.as_deref().map(parse_duration).transpose() {
        Ok(d) => d.map(|d| d.as_millis() as u64),
        Err(e) => return bad_input(e),
    };
    let status_interval_ms = match parse_duration(&args.status_interval) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let selftest = SelfTestConfig {
        peers: peers
            .keys()
            .map(|p| Address::new(p.as_str(), KIND, 0))
            .collect(),
        ping_interval_ms: args.ping_interval_ms,
    };
    if let Err(e) = selftest.validate() {
        return bad_input(e);
    }
    let config = NodeConfig {
        node: NodeId::new(args.name.as_str()),
        listen: args.listen,
        peers,
        data_dir: args.data_dir,
        actors: vec![(
            Address::new(args.name.as_str(), KIND, 0),
            ActorSpec {
                kind: KIND.into(),
                config_json: serde_json::to_string(&selftest).unwrap_or_default(),
            },
        )],
        record: args.record,
        transport: TransportConfig::default(),
        status_interval_ms,
        run_for_ms,
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: false,
    };
    match run_node(config) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            EXIT_OK
        }
        Err(e) => bad_input(e),
    }
}
