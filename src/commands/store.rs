//! `keel store`: a store member daemon, and the client commands that talk to members.
//!
//! Daemon: `keel store --name s1 --data-dir D --listen-peer ADDR [--listen-client ADDR]
//! --initial-cluster s1=ADDR,s2=ADDR,s3=ADDR [--join]`. A member's id is its position in
//! `--initial-cluster` (1-based); a member joining an existing cluster is listed last
//! and started with `--join` after `keel store member add` (which assigns the next id;
//! `--member-id` gives it when the position cannot, e.g. a member rebuilt under its old
//! name after its log was found corrupt).
//!
//! Clients: `keel store put|get|del|watch|compact|member …|status --endpoints
//! HOST:PORT,…` (etcdctl's form; `NAME=HOST:PORT` also works and skips asking each
//! member its name) — each runs as a short-lived bus node whose one actor
//! (`keel_actors::drivers::store_cli`) sends the request through the client library.

use super::{bad_input, parse_duration, EXIT_FAILED, EXIT_OK};
use keel_actors::drivers::store_cli::{CliCommand, CliConfig, KIND as CLI_KIND};
use keel_actors::store::types::{
    prefix_end, CompactRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use keel_actors::store::{StoreConfig, StoreRequest, WatchCreate, KIND as STORE_KIND};
use keel_engine::{ActorSpec, Address, NodeId};
use keel_runtimes::{run_node, NodeConfig, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: Option<StoreCommand>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// This member's name (its entry in --initial-cluster).
    #[arg(long)]
    name: Option<String>,
    /// The member's storage directory (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where this member listens for other members.
    #[arg(long)]
    listen_peer: Option<SocketAddr>,
    /// Where this member also listens for clients (same bus protocol).
    #[arg(long)]
    listen_client: Option<SocketAddr>,
    /// Every member as NAME=HOST:PORT (peer addresses), comma-separated.
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Join an existing cluster (after `keel store member add`) instead of founding one.
    #[arg(long)]
    join: bool,
    /// With --join: the id `keel store member add` gave this member (default: its
    /// position in --initial-cluster). A member rebuilt after its log was found corrupt
    /// gets a new id: remove it, empty its data directory, add it again, and start it
    /// with `--join --member-id ID`.
    #[arg(long, requires = "join")]
    member_id: Option<u64>,
    /// Record every input of the member to this trace file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// How often to log a status line.
    #[arg(long, default_value = "10s")]
    status_interval: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Members to talk to, comma-separated: HOST:PORT as etcdctl takes them (each member
    /// is asked its name), or NAME=HOST:PORT.
    #[arg(long, global = true)]
    endpoints: Option<String>,
    /// Give up after this long.
    #[arg(long, global = true, default_value = "10s")]
    timeout: String,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum StoreCommand {
    /// Write a key.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read a key (or every key with the prefix).
    Get {
        key: String,
        #[arg(long)]
        prefix: bool,
        /// Read at this revision (0: current).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Answer from one member's applied state, without a linearizable read.
        #[arg(long)]
        serializable: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key (or every key with the prefix).
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print changes to a key (or prefix) until interrupted.
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        /// Start from this revision (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop history before a revision.
    Compact {
        revision: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Membership: list, add, remove, promote.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Each member's role and the cluster's health ("3 members, 2 healthy, quorum 2: writable").
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
enum MemberCommand {
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add NAME=HOST:PORT as a learner (promoted once caught up unless --learner).
    Add {
        member: String,
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    Remove {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    Promote {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Parses `a=HOST:PORT,b=HOST:PORT` keeping the order.
pub fn parse_members(text: &str, what: &str) -> Result<Vec<(NodeId, SocketAddr)>, String> {
    let mut members: Vec<(NodeId, SocketAddr)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = entry
            .split_once('=')
            .ok_or_else(|| format!("{what} entry {entry:?} is not NAME=HOST:PORT"))?;
        if name.is_empty() {
            return Err(format!("{what} entry {entry:?} has an empty name"));
        }
        if name == keel_runtimes::transport::IDENTIFY_NODE {
            return Err(format!(
                "{what} entry {entry:?}: the name {name} is reserved"
            ));
        }
        let address: SocketAddr = address.parse().map_err(|_| {
            format!("{what} entry {entry:?}: {address:?} is not HOST:PORT (an IP address and port)")
        })?;
        if members.iter().any(|(n, _)| n.as_str() == name) {
            return Err(format!("{what} names {name} twice"));
        }
        members.push((NodeId::new(name), address));
    }
    if members.is_empty() {
        return Err(format!("{what} is empty: give NAME=HOST:PORT entries"));
    }
    Ok(members)
}

/// How long a client waits for a member named only by `host:port` to say its name.
const IDENTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Parses client endpoints as etcdctl takes them: `host:port` (optionally with an
/// `http://` or `https://` scheme, a host name resolved here) or keel's `NAME=HOST:PORT`.
/// A member given without its name is asked for it over the bus's identify exchange
/// (`keel_runtimes::transport::identify`); members that do not answer are reported, and
/// the command goes on with those that did as long as one answered.
pub fn parse_endpoints(text: &str, what: &str) -> Result<Vec<(NodeId, SocketAddr)>, String> {
    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.contains('=') {
            named.push(entry.to_string());
            continue;
        }
        let bare = entry
            .strip_prefix("http://")
            .or_else(|| entry.strip_prefix("https://"))
            .unwrap_or(entry)
            .trim_end_matches('/');
        let address = match bare.parse::<SocketAddr>() {
            Ok(address) => address,
            Err(_) => {
                use std::net::ToSocketAddrs;
                bare.to_socket_addrs()
                    .map_err(|e| format!("{what} entry {entry:?} is not HOST:PORT: {e}"))?
                    .next()
                    .ok_or_else(|| {
                        format!("{what} entry {entry:?}: {bare} resolves to no address")
                    })?
            }
        };
        unnamed.push(address);
    }
    let mut members = if named.is_empty() {
        Vec::new()
    } else {
        parse_members(&named.join(","), what)?
    };
    let mut failures = Vec::new();
    for address in unnamed {
        match keel_runtimes::transport::identify(address, IDENTIFY_TIMEOUT) {
            Ok(name) => {
                if !members.iter().any(|(n, _)| n.as_str() == name) {
                    members.push((NodeId::new(name), address));
                }
            }
            Err(error) => failures.push(error),
        }
    }
    if members.is_empty() {
        return Err(if failures.is_empty() {
            format!("{what} is empty: give HOST:PORT or NAME=HOST:PORT entries")
        } else {
            format!("{what}: no member answered: {}", failures.join("; "))
        });
    }
    for failure in failures {
        eprintln!("warning: {what}: skipping an endpoint: {failure}");
    }
    Ok(members)
}

fn store_address(node: &NodeId) -> Address {
    Address::new(node.as_str(), STORE_KIND, 0)
}

pub fn run(args: StoreArgs) -> u8 {
    match args.command {
        None => run_daemon(args.daemon),
        Some(command) => run_client(command),
    }
}

fn run_daemon(args: DaemonArgs) -> u8 {
    super::init_logging("info");
    let (Some(name), Some(data_dir), Some(listen_peer), Some(cluster)) = (
        args.name,
        args.data_dir,
        args.listen_peer,
        args.initial_cluster,
    ) else {
        return bad_input(
            "a store member needs --name, --data-dir, --listen-peer and --initial-cluster (or a subcommand: put, get, del, watch, compact, member, status)",
        );
    };
    let members = match parse_members(&cluster, "--initial-cluster") {
        Ok(m) => m,
        Err(e) => return bad_input(e),
    };
    let Some(position) = members.iter().position(|(n, _)| n.as_str() == name) else {
        return bad_input(format!("--name {name} is not in --initial-cluster"));
    };
    let id = match args.member_id {
        Some(0) => return bad_input("--member-id must be at least 1"),
        Some(id) => id,
        None => position as u64 + 1,
    };
    let initial: Vec<(u64, Address)> = members
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (i as u64 + 1, store_address(n)))
        .collect();
    let mut config = StoreConfig::new(id, initial);
    config.join = args.join;
    if args.join {
        // A joiner's founding view is the cluster it joins, itself excluded as a voter:
        // it starts empty and learns membership from the leader's snapshot.
        let own = store_address(&NodeId::new(name.as_str()));
        config
            .initial_members
            .retain(|(member, address)| *member != id && *address != own);
        config.initial_members.push((id, own));
    }
    if let Err(e) = config.validate() {
        return bad_input(e);
    }
    let status_interval_ms = match parse_duration(&args.status_interval) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let node = NodeId::new(name.as_str());
    let peers: BTreeMap<NodeId, SocketAddr> =
        members.into_iter().filter(|(n, _)| *n != node).collect();
    let node_config = NodeConfig {
        node: node.clone(),
        listen: listen_peer,
        peers,
        data_dir,
        actors: vec![(
            store_address(&node),
            ActorSpec {
                kind: STORE_KIND.into(),
                config_json: serde_json::to_string(&config).unwrap_or_default(),
            },
        )],
        record: args.record,
        transport: TransportConfig::default(),
        status_interval_ms,
        run_for_ms: None,
        extra_listen: args.listen_client.into_iter().collect(),
        // Many small synced writes (the raft log): the write-ahead log engine.
        storage: keel_runtimes::StorageEngine::Wal,
        print_reports: false,
    };
    match run_node(node_config) {
        Ok(report) => match &report.result {
            Some(result) if !result.ok => {
                let reason = result.result["error"]
                    .as_str()
                    .unwrap_or("stopped")
                    .to_string();
                eprintln!("error: the store member stopped: {reason}");
                EXIT_FAILED
            }
            _ => {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
                EXIT_OK
            }
        },
        Err(e) => bad_input(e),
    }
}

fn key_range(key: &str, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    let key = key.as_bytes().to_vec();
    let end = if prefix { prefix_end(&key) } else { Vec::new() };
    (key, end)
}

fn run_client(command: StoreCommand) -> u8 {
    // Unreachable members are expected here (that is what status reports); keep the
    // transport's reconnect warnings out of the command's output.
    super::init_logging("error");
    let (client, cli_command) = match command {
        StoreCommand::Put { key, value, client } => (
            client,
            CliCommand::Request(StoreRequest::Put(PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                ..Default::default()
            })),
        ),
        StoreCommand::Get {
            key,
            prefix,
            rev,
            limit,
            serializable,
            client,
        } => {
            let (key, range_end) = key_range(&key, prefix);
            (
                client,
                CliCommand::Request(StoreRequest::Range(RangeRequest {
                    key,
                    range_end,
                    revision: rev,
                    limit,
                    serializable,
                    ..Default::default()
                })),
            )
        }
        StoreCommand::Del {
            key,
            prefix,
            client,
        } => {
            let (key, range_end) = key_range(&key, prefix);
            (
                client,
                CliCommand::Request(StoreRequest::DeleteRange(DeleteRangeRequest {
                    key,
                    range_end,
                    prev_kv: false,
                })),
            )
        }
        StoreCommand::Watch {
            key,
            prefix,
            rev,
            client,
        } => {
            let (key, range_end) = key_range(&key, prefix);
            (
                client,
                CliCommand::Watch(WatchCreate {
                    watch_id: 0,
                    key,
                    range_end,
                    start_revision: rev,
                    prev_kv: false,
                    progress_notify: true,
                }),
            )
        }
        StoreCommand::Compact { revision, client } => (
            client,
            CliCommand::Request(StoreRequest::Compact(CompactRequest { revision })),
        ),
        StoreCommand::Status { client } => (client, CliCommand::Status),
        StoreCommand::Member { command } => match command {
            MemberCommand::List { client } => {
                (client, CliCommand::Request(StoreRequest::MemberList))
            }
            MemberCommand::Add {
                member,
                learner,
                client,
            } => {
                let parsed = match parse_members(&member, "member") {
                    Ok(p) if p.len() == 1 => p,
                    Ok(_) => return bad_input("member add takes one NAME=HOST:PORT"),
                    Err(e) => return bad_input(e),
                };
                let address = store_address(&parsed[0].0);
                (
                    client,
                    CliCommand::Request(StoreRequest::MemberAdd { address, learner }),
                )
            }
            MemberCommand::Remove { id, client } => (
                client,
                CliCommand::Request(StoreRequest::MemberRemove { id }),
            ),
            MemberCommand::Promote { id, client } => (
                client,
                CliCommand::Request(StoreRequest::MemberPromote { id }),
            ),
        },
    };
    let Some(endpoints) = client.endpoints.as_deref() else {
        return bad_input(
            "give the members to talk to with --endpoints HOST:PORT,… (or NAME=HOST:PORT,…)",
        );
    };
    let endpoints = match parse_endpoints(endpoints, "--endpoints") {
        Ok(e) => e,
        Err(e) => return bad_input(e),
    };
    let timeout_ms = match parse_duration(&client.timeout) {
        Ok(d) => d.as_millis() as u64,
        Err(e) => return bad_input(e),
    };
    let watching = matches!(cli_command, CliCommand::Watch(_));
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let node = NodeId::new(format!("keel-cli-{unique}"));
    let data_dir = std::env::temp_dir().join(format!("keel-cli-{unique}"));
    let cli = CliConfig {
        endpoints: endpoints.iter().map(|(n, _)| store_address(n)).collect(),
        command: cli_command,
        timeout_ms,
        quiet: client.json,
    };
    let config = NodeConfig {
        node: node.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: endpoints.into_iter().collect(),
        data_dir: data_dir.clone(),
        actors: vec![(
            Address::new(node.as_str(), CLI_KIND, 0),
            ActorSpec {
                kind: CLI_KIND.into(),
                config_json: serde_json::to_string(&cli).unwrap_or_default(),
            },
        )],
        record: None,
        transport: TransportConfig::default(),
        status_interval_ms: 3_600_000,
        // A watch runs until interrupted; anything else stops at its timeout at the latest.
        run_for_ms: (!watching).then_some(timeout_ms + 2_000),
        extra_listen: Vec::new(),
        storage: Default::default(),
        print_reports: false,
    };
    let outcome = run_node(config);
    let _ = std::fs::remove_dir_all(&data_dir);
    match outcome {
        Ok(report) => match report.result {
            Some(result) => {
                if client.json {
                    println!("{}", result.result);
                }
                if result.ok {
                    EXIT_OK
                } else {
                    EXIT_FAILED
                }
            }
            None if watching => EXIT_OK,
            None => {
                eprintln!("error: no answer from any endpoint within {timeout_ms} ms");
                EXIT_FAILED
            }
        },
        Err(e) => bad_input(e),
    }
}
