//! The `keel` command line. This file parses arguments and dispatches; the commands
//! live in `commands/` and the work in the crates. The subcommands: `sim`, `replay`,
//! `scenarios` (the simulator and its traces); `kinds` (prints the actor registry,
//! `keel_actors::registry::KINDS`, here); `selftest`, `store`, `apiserver`,
//! `api-client`, `api-balancer` (real-mode nodes and clients over the TCP bus);
//! `bench store|api`; `version`.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "keel",
    about = "A Kubernetes-style cluster engine, simulation-first",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster deterministically in the simulator, inject faults, check invariants.
    Sim(commands::sim::SimArgs),
    /// Re-run the actors of a recorded trace and check they behave identically.
    Replay {
        /// The trace file (`keel sim --record` or `keel node --record`).
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the simulation scenarios.
    Scenarios {
        /// Only the names, one per line (for scripts).
        #[arg(long)]
        names: bool,
        /// Only the scenarios that take `keel sim --nemesis`.
        #[arg(long)]
        nemesis: bool,
    },
    /// List the component kinds a machine can run (the actor registry).
    Kinds,
    /// Run one real machine of the self-test protocol over TCP (until the store lands).
    Selftest(commands::node::NodeArgs),
    /// Run a store member (keel's etcd), or talk to one: put, get, del, watch, compact,
    /// member, status.
    Store(commands::store::StoreArgs),
    /// Benchmarks with hdrhistogram percentiles: `keel bench store [--compare-etcd]`,
    /// `keel bench api`.
    Bench(commands::bench::BenchArgs),
    /// Run an API server over a store cluster (bus only; the HTTPS edge comes later).
    Apiserver(commands::api::ApiServerArgs),
    /// A bus client of the API servers running workload roles; prints reports as JSON lines.
    ApiClient(commands::api::ApiClientArgs),
    /// A balancer: one bus address in front of several API servers (least-loaded
    /// routing, readiness probes, fast failover).
    ApiBalancer(commands::api::BalancerArgs),
    /// Print keel's version, wire and trace format versions.
    Version,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return commands::usage_error(e),
    };
    let code = match cli.command {
        Command::Sim(args) => commands::sim::run(args),
        Command::Replay { file, json } => commands::replay::run(&file, json),
        Command::Scenarios { names, nemesis } => commands::sim::list_scenarios(names, nemesis),
        Command::Kinds => {
            for kind in keel_actors::registry::KINDS {
                println!("{:<20} {}", kind.kind, kind.about);
            }
            0
        }
        Command::Selftest(args) => commands::node::run(args),
        Command::Store(args) => commands::store::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Apiserver(args) => commands::api::run_apiserver(args),
        Command::ApiClient(args) => commands::api::run_client(args),
        Command::ApiBalancer(args) => commands::api::run_balancer(args),
        Command::Version => commands::version(),
    };
    ExitCode::from(code)
}
