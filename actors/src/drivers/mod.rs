//! Drivers: the actors that exercise the components rather than being part of a
//! cluster — workloads whose reports the simulator's checkers judge, benchmark clients,
//! the command-line clients' one-shot actors and the golden API script. They use the
//! components only through the client layer (`crate::client`) and the bus vocabulary,
//! as any user would, so a component never depends on them.
//!
//! Store drivers: [`store_workload`] (random KV workload, its history checked for
//! linearizability), [`lease_workload`] (a key on a lease: keep-alive, then expiry),
//! [`store_bench`] (benchmark client: closed loop, or `etcdctl check perf`'s open loop from
//! [`check_perf`]; leader or pinned routing from [`bench_routing`]), [`store_cli`]
//! (`keel store put|get|…`).
//! API drivers: [`api_workload`] (writer, informer watcher, service creator, stalled
//! watcher), [`api_script`] (the golden api-semantics script), [`api_bench`] (CRUD
//! benchmark client), [`fanout`] (watch fan-out benchmark).

pub mod api_bench;
pub mod api_script;
pub mod api_workload;
pub mod bench_routing;
pub mod check_perf;
pub mod fanout;
pub mod lease_workload;
pub mod store_bench;
pub mod store_cli;
pub mod store_workload;
