//! The actix host: runs one machine's node runtime in one process.
//!
//! Owns: the process's actix `System`, the machine's [`NodeRuntime`] (every engine actor's
//! cell, the input queue and the timers — `keel_engine::node`), the actors' storages
//! ([`SledStorage`] or [`WalStorage`]), the node's sled database or lock file, the trace file, the
//! status line and shutdown. Touches: the network through [`Transport`], the data
//! directory, the trace file, the clock and the process RNG.
//!
//! Everything runs on the actix system's single thread, so the drive loop, the status
//! line and shutdown share state through `Rc`/`RefCell` and no step ever runs
//! concurrently with another.
//!
//! Choices a reader might not guess:
//! * actors read the wall clock (`SystemTime` since the Unix epoch, nanoseconds; a clock
//!   that reads before 1970 gives 0 rather than a panic); timers run on the process's
//!   monotonic clock, so a wall-clock step does not fire them early;
//! * each actor's RNG seed is the process seed (drawn once from `rand::random`, printed
//!   and written into the trace header) hashed with the actor's address, so actors of
//!   one process differ and a trace names the seed every actor got;
//! * an actor whose storage already holds data starts with `StartKind::Restart`;
//! * the runtime's input queue holds at most `transport.inbox_capacity` messages; one
//!   more is dropped, like a full send queue on the TCP bus (at-most-once everywhere,
//!   as in the simulator).

use crate::sled_storage::{open_db, SledStorage};
use crate::transport::{
    BoundListener, Inbox, SendOutcome, Transport, TransportConfig, TransportError, TransportStats,
};
use crate::wal_storage::WalStorage;
use keel_actors::{Message, Registry};
use keel_engine::trace::{StableHasher, TRACE_FORMAT_VERSION};
use keel_engine::{
    ActorFactory, ActorSpec, Address, Clocks, Control, Envelope, NodeId, NodeLimits, NodeOutput,
    NodeRuntime, NodeStats, Refused, StartKind, Time, TraceEvent, TraceHeader, TraceWriter,
};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A turn at least this long is logged: nothing else on the machine ran meanwhile.
const SLOW_TURN: Duration = Duration::from_millis(200);

/// Accepted status intervals: under 10 ms would flood the log, over a day is a typo.
const STATUS_INTERVAL_MS_RANGE: (u64, u64) = (10, 86_400_000);

fn default_status_interval_ms() -> u64 {
    5000
}

/// Everything one node process needs. As JSON, only `node`, `listen`, `data_dir` and
/// `actors` are required; unknown fields are refused so that a typo is not ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This machine's name; every actor address below must be on it.
    pub node: NodeId,
    /// Where the bus listens for peers.
    pub listen: SocketAddr,
    /// The other nodes and where their buses listen.
    #[serde(default)]
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The sled database directory (created if missing).
    pub data_dir: PathBuf,
    /// The actors this process hosts.
    pub actors: Vec<(Address, ActorSpec)>,
    /// Write a trace of every input to this file.
    #[serde(default)]
    pub record: Option<PathBuf>,
    #[serde(default)]
    pub transport: TransportConfig,
    /// How often the status line is logged (10 ms to a day).
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    /// Stop after this long; `None` runs until SIGINT or SIGTERM (or an actor reports
    /// it is done, see `Report::Done`).
    #[serde(default)]
    pub run_for_ms: Option<u64>,
    /// Which storage engine actors get: sled (default) or the write-ahead log engine
    /// (many small synced writes: the store's raft log).
    #[serde(default)]
    pub storage: StorageEngine,
    /// More addresses the bus listens on (e.g. a member's client address), same protocol.
    #[serde(default)]
    pub extra_listen: Vec<SocketAddr>,
    /// Print every report actors emit as a JSON line on stdout.
    #[serde(default)]
    pub print_reports: bool,
}

impl NodeConfig {
    /// The node runtime's limits: its input queue holds as many messages as the bus
    /// inbox (`transport.inbox_capacity`).
    pub fn limits(&self) -> NodeLimits {
        NodeLimits {
            queue_capacity: self.transport.inbox_capacity,
            ..NodeLimits::default()
        }
    }

    /// Checks the configuration before anything is opened or bound.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |message: String| Err(RuntimeError::Config(message));
        if self.node.as_str().is_empty() {
            return invalid("the node name is empty".into());
        }
        if self.peers.contains_key(&self.node) {
            return invalid(format!(
                "the peer list names this node ({}) itself; list only the other nodes",
                self.node
            ));
        }
        let (low, high) = STATUS_INTERVAL_MS_RANGE;
        if self.status_interval_ms < low || self.status_interval_ms > high {
            return invalid(format!(
                "status_interval_ms must be within {low}..={high}, got {}",
                self.status_interval_ms
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (address, _spec) in &self.actors {
            if address.node != self.node {
                return invalid(format!(
                    "actor {address} is on node {}, but this process is node {}",
                    address.node, self.node
                ));
            }
            if !seen.insert(address) {
                return invalid(format!("actor {address} is listed twice"));
            }
        }
        self.transport.validate()?;
        Ok(())
    }
}

/// The storage engine behind every actor of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    #[default]
    Sled,
    Wal,
}

/// One actor's storage, whichever engine backs it.
enum NodeStorage {
    Sled(SledStorage),
    Wal(WalStorage),
}

impl NodeStorage {
    fn has_data(&self) -> Result<bool, keel_engine::StorageError> {
        match self {
            NodeStorage::Sled(s) => s.has_data(),
            NodeStorage::Wal(w) => Ok(w.has_data()),
        }
    }
}

impl keel_engine::Storage for NodeStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, keel_engine::StorageError> {
        match self {
            NodeStorage::Sled(s) => s.get(key),
            NodeStorage::Wal(w) => w.get(key),
        }
    }
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<keel_engine::storage::KeyValues, keel_engine::StorageError> {
        match self {
            NodeStorage::Sled(s) => s.scan(start, end, limit),
            NodeStorage::Wal(w) => w.scan(start, end, limit),
        }
    }
    fn write(&mut self, batch: &keel_engine::WriteBatch) -> Result<(), keel_engine::StorageError> {
        match self {
            NodeStorage::Sled(s) => s.write(batch),
            NodeStorage::Wal(w) => w.write(batch),
        }
    }
    fn sync(&mut self) -> Result<(), keel_engine::StorageError> {
        match self {
            NodeStorage::Sled(s) => s.sync(),
            NodeStorage::Wal(w) => w.sync(),
        }
    }
}

/// What holds a node's data directory while it runs.
enum DataDir {
    /// The node's sled database (its lock keeps other processes out).
    Sled(sled::Db),
    /// The lock file of a write-ahead-log node, held until the node stops.
    Wal(#[allow(dead_code)] File),
}

/// Takes `dir/LOCK` for this process: a second process on the same directory would
/// interleave its log writes with ours.
fn lock_data_dir(dir: &std::path::Path) -> Result<File, String> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{} is locked: another keel process is using this data directory",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// `KEEL_TEST_SKIP_FSYNC=1` turns off the write-ahead log's fsync: test only, so the
/// power-loss test can show that it catches a store that does not sync.
fn skip_fsync_for_tests() -> crate::wal_storage::Fsync {
    if std::env::var("KEEL_TEST_SKIP_FSYNC").is_ok_and(|v| v == "1") {
        tracing::warn!("KEEL_TEST_SKIP_FSYNC=1: the write-ahead log does NOT fsync; acknowledged writes can be lost (test only)");
        crate::wal_storage::Fsync::Skip
    } else {
        crate::wal_storage::Fsync::Always
    }
}

/// What a node did, returned when it stops.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeReport {
    pub node: NodeId,
    /// Each actor's final status, by address.
    pub actors: BTreeMap<String, serde_json::Value>,
    pub transport: TransportStats,
    /// The node runtime's counters (steps, arrivals, local sends, drops).
    pub host: NodeStats,
    /// The process seed every actor's RNG seed was derived from.
    pub seed: u64,
    /// What stopped the node: "run_for_ms elapsed", "SIGINT" or "SIGTERM".
    pub stopped_by: String,
    /// Events written to the trace, when recording.
    pub trace_events: Option<u64>,
    /// The trace hash, when recording.
    pub trace_hash: Option<u64>,
    /// What a command actor reported when it finished (`Report::Done`), if one did.
    pub result: Option<CommandResult>,
}

/// A command actor's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandResult {
    pub ok: bool,
    pub result: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot use the data directory {}: {message} (check that it is writable and that no other keel process uses it)", .dir.display())]
    Storage { dir: PathBuf, message: String },
    #[error("cannot start actor {address}: {reason}")]
    Actor { address: Address, reason: String },
    #[error("cannot write the trace file {}: {source}", .path.display())]
    Trace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The wall clock as the engine's time.
fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| Time(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)))
        .unwrap_or_default()
}

/// An actor's RNG seed: the process seed hashed with its address.
fn actor_seed(process_seed: u64, address: &Address) -> u64 {
    let mut hasher = StableHasher::default();
    hasher.update(&process_seed.to_le_bytes());
    hasher.update(address.to_string().as_bytes());
    hasher.finish()
}

/// The open trace file; recording stops (with an error logged) at the first failed write.
struct TraceSink {
    path: PathBuf,
    writer: Option<TraceWriter<BufWriter<File>>>,
}

/// What the node's driver shares with the status line and shutdown. Everything runs on
/// the actix system's one thread and no borrow is held across an `.await`.
struct Shared {
    runtime: RefCell<NodeRuntime<Message>>,
    disks: RefCell<BTreeMap<Address, NodeStorage>>,
    transport: Transport,
    trace: RefCell<Option<TraceSink>>,
    print_reports: bool,
    /// The origin of the runtime's monotonic clock.
    origin: Instant,
    /// Set at shutdown: the driver handles no input after it.
    stopped: Cell<bool>,
    /// Set by the first `Control::Done` or `Control::Fatal`; wakes `wait_for_stop`.
    done: RefCell<Option<CommandResult>>,
    done_signal: Rc<tokio::sync::Notify>,
}

impl Shared {
    fn clocks(&self) -> Clocks {
        Clocks {
            wall: now(),
            monotonic_ns: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn record(&self, event: &TraceEvent<Message>) {
        let mut trace = self.trace.borrow_mut();
        let Some(sink) = trace.as_mut() else { return };
        let Some(writer) = sink.writer.as_mut() else {
            return;
        };
        if let Err(error) = writer.write_event(event) {
            tracing::error!(path = %sink.path.display(), %error,
                "writing the trace failed; recording stops here");
            sink.writer = None;
        }
    }

    /// Wakes the runtime once (hands over a batch of arrivals, runs a turn) and
    /// releases its outputs.
    fn wake(&self, arrivals: &mut InboxArrivals<'_>) -> keel_engine::Woke {
        let clocks = self.clocks();
        let mut runtime = self.runtime.borrow_mut();
        let started = Instant::now();
        let woke = runtime.wake(clocks, arrivals, &mut *self.disks.borrow_mut());
        let took = started.elapsed();
        if took >= SLOW_TURN {
            // Everything on this machine waited that long: timers, peers, clients.
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                steps = woke.steps,
                "slow turn"
            );
        }
        while let Some(output) = runtime.poll_output() {
            self.release(output);
        }
        woke
    }

    /// Releases one output: onto the bus, to the trace, to the user or the log.
    fn release(&self, output: NodeOutput<Message>) {
        match output {
            NodeOutput::Transmit(envelope) => self.transmit(&envelope),
            NodeOutput::Trace(event) => self.record(&event),
            NodeOutput::StepError { actor, error } => {
                tracing::warn!(%actor, %error, "actor could not handle an input");
            }
            NodeOutput::Control { actor, control } => self.control(&actor, control),
            NodeOutput::Emitted { actor, msg } => {
                if self.print_reports {
                    // One JSON line per observation, for tests and tools that watch a node.
                    if let Ok(line) = serde_json::to_string(&msg) {
                        println!("{line}");
                    }
                } else {
                    tracing::trace!(%actor, report = ?msg, "report");
                }
            }
        }
    }

    /// What an actor asks of the host: output is printed on stdout; a command's end or
    /// an actor that cannot go on stops the node; a role claim is logged.
    fn control(&self, from: &Address, control: Control) {
        let finish = |result: CommandResult| {
            let mut done = self.done.borrow_mut();
            if done.is_none() {
                *done = Some(result);
                self.done_signal.notify_one();
            }
        };
        match control {
            Control::Output { line } => println!("{line}"),
            Control::Done { ok, result } => {
                let result =
                    serde_json::from_str(&result).unwrap_or(serde_json::Value::String(result));
                finish(CommandResult { ok, result });
            }
            // A store member that cannot use its data stops the node with the reason,
            // rather than serve as an empty member.
            Control::Fatal { reason } => {
                tracing::error!(actor = %from, %reason, "actor stopped");
                finish(CommandResult {
                    ok: false,
                    result: serde_json::json!({ "error": format!("{from}: {reason}") }),
                });
            }
            Control::Claim { role, term } => tracing::info!(actor = %from, %role, term, "claim"),
        }
    }

    fn transmit(&self, envelope: &Envelope<Message>) {
        // The transport counts its own drops; unknown nodes and oversized messages are
        // configuration or actor bugs worth a warning each time.
        match self.transport.send(envelope) {
            SendOutcome::Queued | SendOutcome::DroppedQueueFull | SendOutcome::Stopped => {}
            SendOutcome::UnknownNode => {
                tracing::warn!(from = %envelope.from, to = %envelope.to,
                    "message for a node that is not a configured peer; dropped");
            }
            SendOutcome::TooLarge => {
                tracing::warn!(from = %envelope.from, to = %envelope.to,
                    "message larger than max_frame_bytes; dropped");
            }
        }
    }
}

/// The real host's network adapter (`keel_engine::Arrivals`): the bus inbox, read
/// without waiting. Refusals are logged (and counted by the runtime).
pub struct InboxArrivals<'a> {
    inbox: &'a mut Inbox,
    /// An envelope received while the loop waited, handed over first.
    held: Option<Envelope<Message>>,
    /// The address of the envelope just handed over, for the log.
    taken: Option<Address>,
    /// The transport stopped (the node is shutting down).
    pub disconnected: bool,
}

impl<'a> InboxArrivals<'a> {
    /// The inbox, behind `held` (an envelope already taken out of it while waiting).
    pub fn new(inbox: &'a mut Inbox, held: Option<Envelope<Message>>) -> Self {
        InboxArrivals {
            inbox,
            held,
            taken: None,
            disconnected: false,
        }
    }
}

impl keel_engine::Arrivals<Message> for InboxArrivals<'_> {
    fn next_arrival(&mut self) -> Option<Envelope<Message>> {
        if let Some(envelope) = self.held.take() {
            self.taken = Some(envelope.to.clone());
            return Some(envelope);
        }
        match self.inbox.try_recv() {
            Ok(envelope) => {
                self.taken = Some(envelope.to.clone());
                Some(envelope)
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                self.disconnected = true;
                None
            }
        }
    }

    fn handed_over(&mut self, result: Result<(), Refused>) {
        let to = self.taken.take();
        match result {
            Ok(()) => {}
            Err(Refused::UnknownActor(_)) => {
                tracing::warn!(to = ?to, "message for an actor this node does not host; dropped");
            }
            Err(Refused::QueueFull) => {
                tracing::debug!(to = ?to, "input queue full; message dropped")
            }
        }
    }
}

/// The node's drive loop (the crate docs, step 5): wake the runtime (hand over what
/// arrived, run a turn), release its outputs; wait for the next arrival or deadline
/// when idle.
async fn drive(mut inbox: Inbox, shared: Rc<Shared>) {
    let mut held = None;
    loop {
        if shared.stopped.get() {
            return;
        }
        let mut arrivals = InboxArrivals::new(&mut inbox, held.take());
        let woke = shared.wake(&mut arrivals);
        if arrivals.disconnected {
            return;
        }
        let deadline = shared.runtime.borrow().next_deadline();
        if woke.again {
            // More is waiting: let the transport's tasks run, then go on.
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = async {
            match deadline {
                Some(due_ns) => {
                    let due = shared.origin + Duration::from_nanos(due_ns);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            arrived = inbox.recv() => match arrived {
                Some(envelope) => held = Some(envelope),
                None => return,
            },
            _ = sleep => {}
        }
    }
}

fn statuses(shared: &Shared) -> BTreeMap<String, serde_json::Value> {
    shared
        .runtime
        .borrow()
        .statuses()
        .into_iter()
        .map(|(address, status)| (address.to_string(), status))
        .collect()
}

/// Runs a node until `run_for_ms` elapses or SIGINT/SIGTERM arrives; see the crate docs
/// for the drive loop. Blocks the calling thread.
pub fn run_node(config: NodeConfig) -> Result<NodeReport, RuntimeError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RuntimeError::Runtime)?;
    let system = actix::System::with_tokio_rt(move || runtime);
    let result = system.block_on(run_node_inside_system(config));
    // Dropping the system drops every actor, and with them the last database handles.
    drop(system);
    result
}

/// Opens the trace file and writes its header.
fn open_trace(
    path: &PathBuf,
    config: &NodeConfig,
    seed: u64,
) -> Result<TraceWriter<BufWriter<File>>, RuntimeError> {
    let trace_error = |source| RuntimeError::Trace {
        path: path.clone(),
        source,
    };
    let file = File::create(path).map_err(trace_error)?;
    let config_json = serde_json::to_value(config).unwrap_or_else(|error| {
        tracing::warn!(%error, "node configuration does not render as JSON; trace header omits it");
        serde_json::Value::Null
    });
    let header = TraceHeader {
        format_version: TRACE_FORMAT_VERSION,
        host: "real".into(),
        seed,
        config: config_json,
        created_by: format!("keel-runtimes {}", env!("CARGO_PKG_VERSION")),
    };
    TraceWriter::new(BufWriter::new(file), &header).map_err(trace_error)
}

async fn run_node_inside_system(config: NodeConfig) -> Result<NodeReport, RuntimeError> {
    let seed: u64 = rand::random();
    tracing::info!(node = %config.node, seed, "starting node");
    let storage_error = |message: String| RuntimeError::Storage {
        dir: config.data_dir.clone(),
        message,
    };

    // Open everything that can fail for a user-fixable reason before starting anything.
    // Durability comes from explicit `Storage::sync` (flush), never from a timer; high
    // throughput mode makes those flushes cheaper. `open_db` waits out the lock of a
    // database this process has just closed (a node restarted in the same process).
    // A write-ahead-log node opens no sled database (sled's flush is no fsync, and its
    // files would only be one more thing a power cut can tear); a lock file keeps a
    // second process out of its directory instead.
    crate::wal_storage::create_dir_durably(&config.data_dir)
        .map_err(|e| storage_error(e.to_string()))?;
    let data_dir = match config.storage {
        StorageEngine::Sled => DataDir::Sled(
            open_db(
                &sled::Config::new()
                    .path(&config.data_dir)
                    .mode(sled::Mode::HighThroughput)
                    .flush_every_ms(None),
            )
            .map_err(|e| storage_error(e.to_string()))?,
        ),
        StorageEngine::Wal => DataDir::Wal(lock_data_dir(&config.data_dir).map_err(storage_error)?),
    };
    let fsync = skip_fsync_for_tests();
    let trace = match &config.record {
        Some(path) => Some(TraceSink {
            path: path.clone(),
            writer: Some(open_trace(path, &config, seed)?),
        }),
        None => None,
    };
    let listener = BoundListener::bind(config.listen).await?;
    let listen_addr = listener.local_addr();

    // Build and start every actor: a start's sends wait until all mailboxes exist.
    let recording = config.record.is_some();
    // A data directory belongs to one node: data of actors this node does not host means
    // it was pointed at another node's directory, which must not be used as if empty.
    let wal_file = |address: &Address| -> String {
        let file: String = address
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{file}.wal")
    };
    let hosted_files: Vec<String> = config.actors.iter().map(|(a, _)| wal_file(a)).collect();
    let hosted_trees: Vec<String> = config.actors.iter().map(|(a, _)| a.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(config.data_dir.join("wal")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wal") && !hosted_files.contains(&name) {
                return Err(storage_error(format!(
                    "it holds another actor's data ({name}): this directory belongs to another node"
                )));
            }
        }
    }
    if let DataDir::Sled(db) = &data_dir {
        for tree in db.tree_names() {
            let name = String::from_utf8_lossy(&tree).into_owned();
            if name != "__sled__default" && !hosted_trees.contains(&name) {
                return Err(storage_error(format!(
                    "it holds another actor's data ({name}): this directory belongs to another node"
                )));
            }
        }
    }
    let origin = Instant::now();
    let mut runtime = NodeRuntime::new(config.node.clone(), config.limits(), recording)
        .map_err(RuntimeError::Config)?;
    let mut disks = BTreeMap::new();
    for (address, spec) in &config.actors {
        let actor_error = |reason: String| RuntimeError::Actor {
            address: address.clone(),
            reason,
        };
        let mut storage = match &data_dir {
            DataDir::Sled(db) => NodeStorage::Sled(
                SledStorage::open(db, address).map_err(|e| storage_error(e.to_string()))?,
            ),
            DataDir::Wal(_) => {
                let dir = config.data_dir.join("wal");
                crate::wal_storage::create_dir_durably(&dir)
                    .map_err(|e| storage_error(e.to_string()))?;
                NodeStorage::Wal(
                    crate::wal_storage::open(&dir.join(wal_file(address)), 64 * 1024 * 1024, fsync)
                        .map_err(|e| storage_error(e.to_string()))?,
                )
            }
        };
        let kind = if storage
            .has_data()
            .map_err(|e| storage_error(e.to_string()))?
        {
            StartKind::Restart
        } else {
            StartKind::Fresh
        };
        let actor = Registry.build(address, spec).map_err(actor_error)?;
        let clocks = Clocks {
            wall: now(),
            monotonic_ns: u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        };
        runtime
            .start_actor(
                clocks,
                address.clone(),
                spec.clone(),
                actor,
                actor_seed(seed, address),
                kind,
                &mut storage,
            )
            .map_err(actor_error)?;
        disks.insert(address.clone(), storage);
        tracing::info!(actor = %address, kind = ?kind, "actor started");
    }

    let (transport, inbox) = Transport::start(
        config.node.clone(),
        listener,
        config.peers.clone(),
        config.transport.clone(),
    )?;
    for address in &config.extra_listen {
        let extra = BoundListener::bind(*address).await?;
        transport.serve(extra);
        tracing::info!(node = %config.node, listen = %address, "bus also listening");
    }
    tracing::info!(node = %config.node, listen = %listen_addr, peers = config.peers.len(), "bus listening");

    let shared = Rc::new(Shared {
        runtime: RefCell::new(runtime),
        disks: RefCell::new(disks),
        transport: transport.clone(),
        trace: RefCell::new(trace),
        print_reports: config.print_reports,
        origin,
        stopped: Cell::new(false),
        done: RefCell::new(None),
        done_signal: Rc::new(tokio::sync::Notify::new()),
    });
    // The starts' outputs (their first sends and reports) leave once the bus is up.
    {
        let mut runtime = shared.runtime.borrow_mut();
        while let Some(output) = runtime.poll_output() {
            shared.release(output);
        }
    }
    actix::spawn(drive(inbox, shared.clone()));

    let stopped_by = wait_for_stop(&config, &shared).await;
    tracing::info!(node = %config.node, reason = stopped_by, "stopping node");

    // Shutdown: no more inputs, final statuses, then flush storage and the trace.
    shared.stopped.set(true);
    transport.shutdown();
    let actors = statuses(&shared);
    let flushed = match &data_dir {
        DataDir::Sled(db) => db
            .flush()
            .map(|_| ())
            .map_err(|e| storage_error(e.to_string())),
        DataDir::Wal(_) => Ok(()),
    };
    let mut report = NodeReport {
        node: config.node.clone(),
        actors,
        transport: transport.stats(),
        host: shared.runtime.borrow().stats(),
        seed,
        stopped_by: stopped_by.to_string(),
        trace_events: None,
        trace_hash: None,
        result: shared.done.borrow_mut().take(),
    };
    let sink = shared.trace.borrow_mut().take();
    if let Some(TraceSink {
        path,
        writer: Some(writer),
    }) = sink
    {
        report.trace_events = Some(writer.digest().events);
        report.trace_hash = Some(writer.digest().hash());
        writer
            .finish::<Message>()
            .map_err(|source| RuntimeError::Trace { path, source })?;
    }
    flushed?;
    Ok(report)
}

/// Logs the status line every `status_interval_ms` until the node should stop; returns
/// why it stops.
async fn wait_for_stop(config: &NodeConfig, shared: &Shared) -> &'static str {
    let run_for = async {
        match config.run_for_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending::<()>().await,
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut signals) => {
                signals.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let done = async {
        // A command actor that finished before we got here has already notified.
        if shared.done.borrow().is_none() {
            shared.done_signal.notified().await;
        }
    };
    let status_line = async {
        let period = Duration::from_millis(config.status_interval_ms);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let actors = statuses(shared);
            let runtime_stats = shared.runtime.borrow().stats();
            tracing::info!(
                node = %config.node,
                actors = %serde_json::Value::from(serde_json::Map::from_iter(actors)),
                transport = %serde_json::to_value(shared.transport.stats()).unwrap_or_default(),
                host = %serde_json::to_value(runtime_stats).unwrap_or_default(),
                "status"
            );
        }
    };
    tokio::select! {
        _ = run_for => "run_for_ms elapsed",
        _ = interrupt => "SIGINT",
        _ = terminate => "SIGTERM",
        _ = status_line => "status loop ended",
        _ = done => "command finished",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_actors::selftest::{SelfTestConfig, KIND};
    use keel_engine::{replay, TraceReader};

    /// A scratch directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir =
                std::env::temp_dir().join(format!("keel-{label}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A loopback address on a port below the ephemeral range (keel_tests::free_port).
    fn free_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], keel_tests::free_port()))
    }

    fn selftest_node(
        node: &str,
        peer: &str,
        listen: SocketAddr,
        peer_listen: SocketAddr,
        data_dir: PathBuf,
        record: Option<PathBuf>,
        run_for_ms: u64,
    ) -> NodeConfig {
        let config = SelfTestConfig {
            peers: vec![Address::new(peer, KIND, 0)],
            ping_interval_ms: 20,
        };
        NodeConfig {
            node: NodeId::new(node),
            listen,
            peers: BTreeMap::from([(NodeId::new(peer), peer_listen)]),
            data_dir,
            actors: vec![(
                Address::new(node, KIND, 0),
                ActorSpec {
                    kind: KIND.into(),
                    config_json: serde_json::to_string(&config).unwrap(),
                },
            )],
            record,
            // A peer that starts late is dialled again within 100 ms, not after a
            // backoff grown to the default 2 s, which would eat most of a short run.
            transport: TransportConfig {
                backoff_max_ms: 100,
                ..TransportConfig::default()
            },
            status_interval_ms: 200,
            run_for_ms: Some(run_for_ms),
            extra_listen: Vec::new(),
            storage: StorageEngine::Sled,
            print_reports: false,
        }
    }

    /// How long each node of the two-node test runs: both must have started, connected
    /// and exchanged pings within it, also on a loaded machine.
    const TWO_NODE_RUN_MS: u64 = 4000;

    /// Two nodes exchange selftest pings over TCP; the recorded real trace replays
    /// identically; a second run on the same data directory is a Restart.
    #[test]
    fn two_nodes_ping_record_replay_and_restart() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let dir = TempDir::new("host");
        let (listen_a, listen_b) = (free_port(), free_port());
        let trace_path = dir.0.join("a.trace");
        let config_a = selftest_node(
            "a",
            "b",
            listen_a,
            listen_b,
            dir.0.join("a"),
            Some(trace_path.clone()),
            TWO_NODE_RUN_MS,
        );
        let config_b = selftest_node(
            "b",
            "a",
            listen_b,
            listen_a,
            dir.0.join("b"),
            None,
            TWO_NODE_RUN_MS,
        );
        let node_b = std::thread::spawn(move || run_node(config_b));
        let report_a = run_node(config_a.clone()).unwrap();
        let report_b = node_b.join().unwrap().unwrap();

        let status_a = &report_a.actors["a/selftest#0"];
        let status_b = &report_b.actors["b/selftest#0"];
        assert!(
            status_a["peers"]["b/selftest#0"]["pongs_received"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(
            status_b["peers"]["a/selftest#0"]["pongs_received"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(status_a["incarnation"], 1);
        assert!(report_a.transport.frames_sent > 0 && report_a.transport.frames_received > 0);
        assert_eq!(report_a.transport.connections_rejected, 0);

        let reader = TraceReader::<_, Message>::open(File::open(&trace_path).unwrap()).unwrap();
        assert_eq!(reader.header.host, "real");
        assert_eq!(reader.header.seed, report_a.seed);
        let replayed = replay(reader, &Registry).unwrap();
        assert!(replayed.identical(), "{:?}", replayed.divergence);
        assert!(!replayed.truncated);
        assert_eq!(Some(replayed.events), report_a.trace_events);
        assert_eq!(Some(replayed.trace_hash), report_a.trace_hash);

        let restarted = run_node(NodeConfig {
            record: None,
            run_for_ms: Some(100),
            ..config_a
        })
        .unwrap();
        assert_eq!(restarted.actors["a/selftest#0"]["incarnation"], 2);
    }

    /// Configuration mistakes, a taken port and an unusable data directory are refused
    /// with errors that name what to fix.
    #[test]
    fn bad_configuration_is_refused_with_what_to_fix() {
        let dir = TempDir::new("host-config");
        let addr = free_port();
        let good = selftest_node("a", "b", addr, free_port(), dir.0.join("a"), None, 10);

        let mut foreign_actor = good.clone();
        foreign_actor.actors[0].0 = Address::new("elsewhere", KIND, 0);
        assert!(matches!(
            run_node(foreign_actor),
            Err(RuntimeError::Config(_))
        ));

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port_taken = NodeConfig {
            listen: taken.local_addr().unwrap(),
            ..good.clone()
        };
        let error = run_node(port_taken).unwrap_err().to_string();
        assert!(
            error.contains(&taken.local_addr().unwrap().to_string()),
            "{error}"
        );

        let file = dir.0.join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let bad_dir = NodeConfig {
            data_dir: file.clone(),
            ..good
        };
        let error = run_node(bad_dir).unwrap_err().to_string();
        assert!(error.contains(&file.display().to_string()), "{error}");

        let minimal: NodeConfig = serde_json::from_value(serde_json::json!({
            "node": "a", "listen": "127.0.0.1:7000", "data_dir": "/tmp/x", "actors": []
        }))
        .unwrap();
        assert_eq!(minimal.transport, TransportConfig::default());
        assert!(minimal.validate().is_ok());
        let typo = serde_json::from_value::<NodeConfig>(serde_json::json!({
            "node": "a", "listen": "127.0.0.1:7000", "data_dir": "/tmp/x", "actors": [],
            "run_for": 5
        }));
        assert!(typo.is_err());
    }
}
