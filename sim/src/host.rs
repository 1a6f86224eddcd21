//! The madsim host: runs a cluster of actors deterministically.
//!
//! Each cluster machine is a madsim node whose init task holds the machine's
//! [`NodeRuntime`] — the same runtime the real host drives, so the ordering of inputs
//! (arrivals, local messages, zero-delay and due timers) is the one rule documented in
//! `keel_engine::node`. The task starts the machine's actors and then loops:
//! 1. take every datagram due by now off the network, in due order ([`SimArrivals`],
//!    the network adapter);
//! 2. wake the runtime (`NodeRuntime::wake`: hand over a bounded batch, run a turn of
//!    one step), observe the deliveries and release the outputs (below), and wake it
//!    again while it asks — simulated time stands still meanwhile;
//! 3. sleep until the runtime's next deadline or the next arrival, or until woken by a
//!    datagram sent to it.
//!
//! Releasing the outputs: the host records the trace events, reports observations and
//! control requests to the invariant checkers, notes role claims (for
//! `KillStoreLeader`), and puts envelopes for other machines onto its own network model — per datagram a latency drawn
//! uniformly from the configured range, loss, duplication, and partitions (a message
//! sent across a cut link is dropped at send). The model replaced madsim's `Endpoint`:
//! every madsim send and receive sleeps a random few microseconds, and a madsim sleep
//! lasts at least 1 ms, so each machine could send or receive only ~1000 datagrams per
//! simulated second — a watch fanned out to 50 watchers took hundreds of simulated
//! milliseconds that the real host spends in microseconds. Arrivals are delivered with
//! the granularity of madsim's timers (1 ms).
//!
//! Disks live outside the madsim nodes, so they survive a kill; the host throws away
//! their unsynced writes when it kills a machine. The main task applies the fault
//! schedule at its simulated times and judges the run at the end.
//!
//! Everything shared sits in one `Arc<Mutex<Shared>>`. madsim runs all tasks on one
//! thread, so the lock is never contended; it is never held across an `.await`.

use crate::disk::SimDisk;
use crate::faults::{Fault, FaultSchedule};
use crate::invariant::{Invariant, Observation, Verdict, World};
use keel_actors::{Message, Registry};
use keel_engine::{
    ActorFactory, ActorSpec, Address, Clocks, Control, Envelope, NodeId, NodeLimits, NodeOutput,
    NodeRuntime, Refused, StartKind, Time, TraceDigest, TraceEvent, TraceHeader, TraceWriter,
};
use madsim::rand::Rng;
use madsim::runtime::Handle;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The simulated wall clock starts at 2026-01-01T00:00:00Z.
pub const SIM_EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// One machine and the actors it hosts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
    pub actors: Vec<(Address, ActorSpec)>,
}

/// Network conditions at the start of a run (faults may change them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub loss_rate: f64,
    pub duplicate_rate: f64,
    /// Datagrams waiting at a machine before it drops new ones (counted).
    pub inbox_capacity: usize,
    /// Messages waiting between actors of one machine before new ones are dropped.
    pub local_queue_capacity: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency_min_ms: 1,
            latency_max_ms: 10,
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            inbox_capacity: 4096,
            local_queue_capacity: 65_536,
        }
    }
}

impl NetworkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.latency_min_ms > self.latency_max_ms {
            return Err("latency_min_ms exceeds latency_max_ms".into());
        }
        if !(0.0..=1.0).contains(&self.loss_rate) || !(0.0..=1.0).contains(&self.duplicate_rate) {
            return Err("loss_rate and duplicate_rate must be within 0..=1".into());
        }
        if self.inbox_capacity == 0 || self.local_queue_capacity == 0 {
            return Err("queue capacities must be at least 1".into());
        }
        Ok(())
    }
}

/// Everything a run needs.
pub struct SimConfig {
    pub scenario: String,
    pub seed: u64,
    pub duration_ms: u64,
    pub machines: Vec<Machine>,
    pub network: NetworkConfig,
    pub faults: FaultSchedule,
    pub invariants: Vec<Box<dyn Invariant + Send>>,
    /// Write every actor input to this trace file.
    pub record: Option<PathBuf>,
    /// Print a progress line on stderr every `progress_every_ms` of simulated time
    /// (rounded up to a multiple of 10 s; printing never changes the run).
    pub progress_every_ms: Option<u64>,
}

/// Network counters for the summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct NetStats {
    pub sent: u64,
    /// Dropped by the loss rate.
    pub lost: u64,
    pub delivered: u64,
    pub cut_by_partition: u64,
    pub duplicated: u64,
    pub inbox_overflow: u64,
    pub local_overflow: u64,
    pub undeliverable: u64,
}

/// The JSON summary a run ends with.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub scenario: String,
    pub seed: u64,
    pub trace_hash: String,
    pub events: u64,
    pub sim_time_ms: u64,
    pub wall_ms: u64,
    pub ok: bool,
    pub invariants: Vec<Verdict>,
    pub network: NetStats,
    /// Each running actor's final status (`Actor::status`), by address; machines down
    /// at the end have none.
    #[serde(default)]
    pub actors: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation: {0}")]
    Invalid(String),
    #[error("cannot write trace {path}: {error}")]
    Record { path: String, error: String },
}

struct Shared {
    epoch_ns: u64,
    start: Option<madsim::time::Instant>,
    machines: BTreeMap<NodeId, Machine>,
    ips: BTreeMap<NodeId, IpAddr>,
    disks: BTreeMap<Address, SimDisk>,
    cut: BTreeSet<(NodeId, NodeId)>,
    skew_ms: BTreeMap<NodeId, i64>,
    boots: BTreeMap<NodeId, u64>,
    down: BTreeSet<NodeId>,
    duplicate_rate: f64,
    loss_rate: f64,
    /// Latency of one datagram, uniform in [min, max] nanoseconds.
    latency_ns: (u64, u64),
    /// Datagrams in flight to each machine: (due ns since the start, id) → bytes.
    in_flight: BTreeMap<NodeId, BTreeMap<(u64, u64), Vec<u8>>>,
    /// Wakes a running machine's loop when a datagram is on its way to it.
    wakers: BTreeMap<NodeId, futures::channel::mpsc::Sender<()>>,
    inbox_capacity: usize,
    node_limits: NodeLimits,
    /// The running machines' node runtimes (a killed machine's is dropped with it).
    runtimes: BTreeMap<NodeId, NodeRuntime<Message>>,
    digest: TraceDigest,
    recorder: Option<TraceWriter<BufWriter<File>>>,
    record_error: Option<String>,
    invariants: Vec<Box<dyn Invariant + Send>>,
    violations: BTreeMap<usize, String>,
    actor_errors: Vec<String>,
    next_message_id: u64,
    stats: NetStats,
    duration_ms: u64,
    last_fault_ms: u64,
    /// The latest claim of each role (`Control::Claim`): its term and machine.
    claims: BTreeMap<String, (u64, NodeId)>,
    /// Responses to injected requests land here (the simulator is not an actor).
    driver: Address,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start
            .map(|s| s.elapsed().as_nanos() as u64)
            .unwrap_or(0)
    }

    /// Puts a datagram on the wire to `to`: dropped with the loss rate or when `to` is
    /// down or its inbox is full, otherwise due after a random latency (twice, with
    /// the duplication rate), and `to` is woken. Returns how many copies are on their
    /// way, `None` when `to` is down or unknown.
    fn transmit(&mut self, to: &NodeId, id: u64, mut bytes: Vec<u8>, copies: u32) -> Option<u32> {
        if self.down.contains(to) || !self.machines.contains_key(to) {
            self.stats.undeliverable += 1;
            return None;
        }
        let mut queued = 0;
        let now_ns = self.now_ns();
        let (min, max) = self.latency_ns;
        for copy in 0..copies {
            let mut rng = madsim::rand::thread_rng();
            if self.loss_rate > 0.0 && rng.gen_bool(self.loss_rate) {
                self.stats.lost += 1;
                continue;
            }
            let latency = if max > min {
                rng.gen_range(min..=max)
            } else {
                min
            };
            let queue = self.in_flight.entry(to.clone()).or_default();
            if queue.len() >= self.inbox_capacity {
                self.stats.inbox_overflow += 1;
                continue;
            }
            // The copy number keeps a duplicate from replacing the original.
            let payload = if copy + 1 == copies {
                std::mem::take(&mut bytes)
            } else {
                bytes.clone()
            };
            queue.insert((now_ns + latency, id * 2 + copy as u64), payload);
            queued += 1;
        }
        if let Some(waker) = self.wakers.get_mut(to) {
            let _ = waker.try_send(());
        }
        Some(queued)
    }

    fn now_ms(&self) -> u64 {
        self.start
            .map(|s| s.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }

    /// The clock an actor on `node` reads: simulated time plus that node's skew.
    fn actor_time(&self, node: &NodeId) -> Time {
        let elapsed = self
            .start
            .map(|s| s.elapsed().as_nanos() as u64)
            .unwrap_or(0);
        let skew_ns = self.skew_ms.get(node).copied().unwrap_or(0) * 1_000_000;
        Time((self.epoch_ns + elapsed).saturating_add_signed(skew_ns))
    }

    fn observe(&mut self, observation: Observation<'_>) {
        let now_ms = self.now_ms();
        let world = World {
            disks: &self.disks,
            now_ms,
            duration_ms: self.duration_ms,
            last_fault_ms: self.last_fault_ms,
        };
        for (index, invariant) in self.invariants.iter_mut().enumerate() {
            if self.violations.contains_key(&index) {
                continue;
            }
            if let Err(detail) = invariant.observe(&observation, &world) {
                tracing::error!(invariant = invariant.name(), at_ms = now_ms, %detail, "invariant violated");
                self.violations
                    .insert(index, format!("at {now_ms} ms: {detail}"));
            }
        }
    }

    fn record(&mut self, event: &TraceEvent<Message>) {
        match &mut self.recorder {
            Some(writer) => {
                if let Err(e) = writer.write_event(event) {
                    self.record_error.get_or_insert_with(|| e.to_string());
                }
            }
            None => {
                self.digest.add(event);
            }
        }
    }

    fn digest(&self) -> TraceDigest {
        match &self.recorder {
            Some(writer) => writer.digest().clone(),
            None => self.digest.clone(),
        }
    }
}

fn lock(shared: &Arc<Mutex<Shared>>) -> MutexGuard<'_, Shared> {
    // madsim is single-threaded and no code panics while holding the lock except an
    // invariant assertion, which ends the run anyway: recover the guard regardless.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A datagram on the simulated bus: a host-assigned id (for the invariants) and the
/// envelope bytes exactly as the real transport would carry them.
#[derive(Serialize, Deserialize)]
struct Datagram {
    id: u64,
    envelope: Vec<u8>,
}

/// What a machine's loop does with its runtime's outputs: records trace events, reports
/// observations and control requests to the checkers, notes role claims, and puts
/// envelopes for other machines on the network model.
fn release_outputs(shared: &mut Shared, node: &NodeId, runtime: &mut NodeRuntime<Message>) {
    let now_ns = shared.now_ns();
    while let Some(output) = runtime.poll_output() {
        match output {
            NodeOutput::Trace(event) => shared.record(&event),
            NodeOutput::StepError { actor, error } => {
                shared.actor_errors.push(format!("{actor}: {error}"));
            }
            NodeOutput::Emitted { actor, msg } => {
                let at_ms = shared.now_ms();
                shared.observe(Observation::Emitted {
                    at_ms,
                    at_ns: now_ns,
                    actor: &actor,
                    msg: &msg,
                });
            }
            NodeOutput::Control { actor, control } => {
                if let Control::Claim { role, term } = &control {
                    let latest = shared.claims.get(role).map(|(t, _)| *t);
                    if latest.is_none_or(|t| *term >= t) {
                        shared.claims.insert(role.clone(), (*term, node.clone()));
                    }
                }
                let at_ms = shared.now_ms();
                shared.observe(Observation::Control {
                    at_ms,
                    actor: &actor,
                    control: &control,
                });
            }
            NodeOutput::Transmit(envelope) => shared.send_remote(node, envelope),
        }
    }
}

impl Shared {
    /// Sends an envelope to another machine through the network model: observed, cut
    /// by a standing partition, or put on the wire (twice with the duplication rate).
    fn send_remote(&mut self, node: &NodeId, envelope: Envelope<Message>) {
        self.next_message_id += 1;
        let id = self.next_message_id;
        let to_node = envelope.to.node.clone();
        let cut = self.cut.contains(&(node.clone(), to_node.clone()));
        self.stats.sent += 1;
        if cut {
            self.stats.cut_by_partition += 1;
        }
        let at_ms = self.now_ms();
        self.observe(Observation::Sent {
            id,
            at_ms,
            from: &envelope.from,
            to: &envelope.to,
            msg: &envelope.msg,
            cut,
        });
        if cut {
            // A partition cuts what is sent while it stands.
            return;
        }
        let bytes = bincode::serialize(&Datagram {
            id,
            envelope: envelope.encode(),
        })
        .expect("datagram serialization is infallible");
        let duplicate =
            self.duplicate_rate > 0.0 && madsim::rand::thread_rng().gen_bool(self.duplicate_rate);
        if duplicate {
            self.stats.duplicated += 1;
        }
        let queued = self.transmit(&to_node, id, bytes, if duplicate { 2 } else { 1 });
        if queued == Some(0) {
            // Every copy was lost or found the inbox full: the network lost it.
            let at_ms = self.now_ms();
            self.observe(Observation::Lost {
                id,
                at_ms,
                from: &envelope.from,
                to: &envelope.to,
                msg: &envelope.msg,
            });
        }
    }

    /// The clocks of `node`'s runtime: its (possibly skewed) wall clock, and simulated
    /// nanoseconds since the start as its monotonic clock.
    fn clocks(&self, node: &NodeId) -> Clocks {
        Clocks {
            wall: self.actor_time(node),
            monotonic_ns: self.now_ns(),
        }
    }

    /// The datagrams due at `node` by now, taken off the network in due order.
    fn due_arrivals(&mut self, node: &NodeId) -> SimArrivals {
        let now_ns = self.now_ns();
        let mut arrivals = SimArrivals::default();
        loop {
            let arrival = self.in_flight.get_mut(node).and_then(|queue| {
                let (&(due, key), _) = queue.first_key_value()?;
                if due <= now_ns {
                    queue.remove(&(due, key))
                } else {
                    None
                }
            });
            let Some(bytes) = arrival else {
                return arrivals;
            };
            let Ok(datagram) = bincode::deserialize::<Datagram>(&bytes) else {
                continue;
            };
            let Ok(envelope) = Envelope::<Message>::decode(&datagram.envelope, usize::MAX) else {
                continue;
            };
            arrivals.push(datagram.id, envelope);
        }
    }

    /// Wakes `node`'s runtime until it is idle, at one instant (simulated time does not
    /// move: no await in between): the due datagrams are handed over, turns run, and
    /// after each wake the deliveries are observed and the outputs released.
    fn wake_until_idle(&mut self, node: &NodeId, runtime: &mut NodeRuntime<Message>) {
        let mut arrivals = self.due_arrivals(node);
        loop {
            let clocks = self.clocks(node);
            let dropped_before = runtime.stats().dropped_queue_full;
            let overflow_before = arrivals.overflow;
            let woke = runtime.wake(clocks, &mut arrivals, &mut self.disks);
            let inbox_overflow = arrivals.overflow - overflow_before;
            self.stats.inbox_overflow += inbox_overflow;
            self.stats.local_overflow +=
                runtime.stats().dropped_queue_full - dropped_before - inbox_overflow;
            self.stats.undeliverable += std::mem::take(&mut arrivals.undeliverable);
            for (id, envelope) in std::mem::take(&mut arrivals.delivered) {
                self.stats.delivered += 1;
                let at_ms = self.now_ms();
                self.observe(Observation::Delivered {
                    id,
                    at_ms,
                    from: &envelope.from,
                    to: &envelope.to,
                    msg: &envelope.msg,
                });
            }
            release_outputs(self, node, runtime);
            if !woke.again {
                return;
            }
        }
    }
}

/// The simulator's network adapter for one wake-up (`keel_engine::Arrivals`): the
/// datagrams due at this instant, decoded, in due order, and what the runtime did with
/// each — deliveries for the checkers to observe, refusals counted.
#[derive(Default)]
pub struct SimArrivals {
    due: std::collections::VecDeque<(u64, Envelope<Message>)>,
    /// The datagram just handed over, until the runtime says what it did with it.
    taken: Option<(u64, Envelope<Message>)>,
    /// Delivered datagrams (their ids and envelopes), in order, not yet observed.
    pub delivered: Vec<(u64, Envelope<Message>)>,
    /// Datagrams for an actor the machine does not host.
    pub undeliverable: u64,
    /// Datagrams refused by a full input queue.
    pub overflow: u64,
}

impl SimArrivals {
    /// Adds a datagram (its network id and envelope) behind those already due.
    pub fn push(&mut self, id: u64, envelope: Envelope<Message>) {
        self.due.push_back((id, envelope));
    }
}

impl keel_engine::Arrivals<Message> for SimArrivals {
    fn next_arrival(&mut self) -> Option<Envelope<Message>> {
        let (id, envelope) = self.due.pop_front()?;
        self.taken = Some((id, envelope.clone()));
        Some(envelope)
    }

    fn handed_over(&mut self, result: Result<(), Refused>) {
        let Some(taken) = self.taken.take() else {
            return;
        };
        match result {
            Ok(()) => self.delivered.push(taken),
            Err(Refused::UnknownActor(_)) => self.undeliverable += 1,
            Err(Refused::QueueFull) => self.overflow += 1,
        }
    }
}

/// The node runtime's limits in the simulator. One input per turn: the host releases
/// each step's outputs before the next step runs, so checkers observe a send with the
/// disks as that step left them (acks-durable reads them). Simulated time stands still
/// across the wakes of one instant, so the order of inputs is the runtime's rule all the
/// same (`tests/cross_host.rs` checks it against the real host's limits).
pub fn node_limits(network: &NetworkConfig) -> NodeLimits {
    NodeLimits {
        queue_capacity: network.local_queue_capacity,
        max_steps_per_turn: 1,
        ..NodeLimits::default()
    }
}

/// The init task of one machine: runs again from scratch after every restart.
async fn machine_main(shared: Arc<Mutex<Shared>>, node: NodeId) {
    let (machine, kind, mut wake) = {
        let mut s = lock(&shared);
        let boots = s.boots.entry(node.clone()).or_insert(0);
        *boots += 1;
        let kind = if *boots == 1 {
            StartKind::Fresh
        } else {
            StartKind::Restart
        };
        // This incarnation's wake-up line: datagrams for it wake it (capacity 1: one
        // pending wake-up is as good as many).
        let (tx, rx) = futures::channel::mpsc::channel::<()>(1);
        s.wakers.insert(node.clone(), tx);
        (s.machines[&node].clone(), kind, rx)
    };

    {
        let mut s = lock(&shared);
        // The limits were validated with the network configuration before the run.
        let mut runtime = NodeRuntime::new(node.clone(), s.node_limits.clone(), true)
            .expect("node limits are validated before the run");
        for (address, spec) in &machine.actors {
            let actor = match Registry.build(address, spec) {
                Ok(a) => a,
                Err(e) => {
                    s.actor_errors.push(format!("{address}: {e}"));
                    continue;
                }
            };
            let seed: u64 = madsim::rand::thread_rng().gen();
            let clocks = s.clocks(&node);
            let disk = s
                .disks
                .entry(address.clone())
                .or_insert_with(|| SimDisk::for_actor(address, &spec.kind));
            if let Some(e) = disk.broken() {
                // The real daemon refuses to start from such a log; so does this member.
                let e = format!("{address}: cannot start: {e}");
                s.actor_errors.push(e);
                continue;
            }
            if let Err(e) = runtime.start_actor(
                clocks,
                address.clone(),
                spec.clone(),
                actor,
                seed,
                kind,
                disk,
            ) {
                s.actor_errors.push(format!("{address}: {e}"));
                continue;
            }
            let at_ms = s.now_ms();
            s.observe(Observation::Started {
                at_ms,
                actor: address,
                kind,
            });
            release_outputs(&mut s, &node, &mut runtime);
        }
        s.runtimes.insert(node.clone(), runtime);
    }

    use futures::StreamExt;
    loop {
        let wait_ns = {
            let mut s = lock(&shared);
            let Some(mut runtime) = s.runtimes.remove(&node) else {
                // Killed: the fault removed this incarnation's runtime.
                return;
            };
            s.wake_until_idle(&node, &mut runtime);
            let now_ns = s.now_ns();
            let next_arrival = s
                .in_flight
                .get(&node)
                .and_then(|q| q.first_key_value())
                .map(|(&(due, _), _)| due);
            let wait_ns = runtime
                .next_deadline()
                .into_iter()
                .chain(next_arrival)
                .min()
                .map(|due| due.saturating_sub(now_ns))
                .unwrap_or(3_600_000_000_000);
            s.runtimes.insert(node.clone(), runtime);
            wait_ns
        };
        // A datagram sent to this machine meanwhile wakes it early.
        if let Ok(None) = madsim::time::timeout(Duration::from_nanos(wait_ns), wake.next()).await {
            return;
        }
    }
}

fn node_of(ids: &BTreeMap<NodeId, madsim::task::NodeId>, name: &str) -> madsim::task::NodeId {
    // Fault schedules are validated against the machine list before the run starts.
    ids[&NodeId::new(name)]
}

/// Applies one fault at the current simulated time.
fn apply_fault(
    shared: &Arc<Mutex<Shared>>,
    ids: &BTreeMap<NodeId, madsim::task::NodeId>,
    fault: &Fault,
) {
    let handle = Handle::current();
    let mut s = lock(shared);
    let at_ms = s.now_ms();
    tracing::info!(at_ms, ?fault, "fault");
    s.observe(Observation::Fault { at_ms, fault });
    let crash = |s: &mut Shared, node: &NodeId| {
        let actors: Vec<Address> = s.machines[node]
            .actors
            .iter()
            .map(|(a, _)| a.clone())
            .collect();
        let mut lost = 0u64;
        for address in actors {
            let Some(disk) = s.disks.get_mut(&address) else {
                continue;
            };
            match disk.crash(&mut madsim::rand::thread_rng()) {
                Ok(crash) => lost += crash.batches_lost,
                Err(e) => s.actor_errors.push(format!(
                    "{address}: its log did not open after a power cut: {e}"
                )),
            }
        }
        s.down.insert(node.clone());
        // Memory is lost with the machine: its actors, queue and timers.
        s.runtimes.remove(node);
        // What was on its way to the machine is lost with it.
        s.in_flight.remove(node);
        s.wakers.remove(node);
        s.observe(Observation::Crashed {
            at_ms,
            node,
            batches_lost: lost,
        });
    };
    match fault {
        Fault::Partition { .. } | Fault::PartitionOneWay { .. } => {
            for (a, b) in fault.cut_links() {
                s.cut
                    .insert((NodeId::new(a.as_str()), NodeId::new(b.as_str())));
            }
        }
        Fault::Heal => s.cut.clear(),
        Fault::KillStoreLeader => {
            let claim = s.claims.get(keel_actors::store::LEADER_ROLE).cloned();
            if let Some((_, leader)) = claim {
                if !s.down.contains(&leader) {
                    handle.kill(ids[&leader]);
                    crash(&mut s, &leader);
                    tracing::info!(%leader, "killed the store leader");
                }
            }
        }
        Fault::RestartAll => {
            let down: Vec<NodeId> = s.down.iter().cloned().collect();
            s.down.clear();
            drop(s);
            for node in down {
                handle.restart(ids[&node]);
            }
        }
        Fault::Inject { to, msg } => {
            // Delivered like a client's message, from the simulator's driver address.
            let envelope = Envelope::new(s.driver.clone(), to.clone(), (**msg).clone()).encode();
            s.next_message_id += 1;
            let id = s.next_message_id;
            let bytes = bincode::serialize(&Datagram { id, envelope })
                .expect("datagram serialization is infallible");
            let _ = s.transmit(&to.node, id, bytes, 1);
        }
        Fault::Kill { node } => {
            let id = NodeId::new(node.as_str());
            if !s.down.contains(&id) {
                handle.kill(node_of(ids, node));
                crash(&mut s, &id);
            }
        }
        Fault::Restart { node } => {
            let id = NodeId::new(node.as_str());
            if !s.down.contains(&id) {
                handle.kill(node_of(ids, node));
                crash(&mut s, &id);
            }
            s.down.remove(&id);
            drop(s);
            handle.restart(node_of(ids, node));
        }
        Fault::Pause { node } => handle.pause(node_of(ids, node)),
        Fault::Resume { node } => handle.resume(node_of(ids, node)),
        Fault::ClockSkew { node, offset_ms } => {
            s.skew_ms.insert(NodeId::new(node.as_str()), *offset_ms);
        }
        Fault::Network {
            latency_min_ms,
            latency_max_ms,
            loss_rate,
            duplicate_rate,
        } => {
            s.duplicate_rate = *duplicate_rate;
            s.loss_rate = *loss_rate;
            s.latency_ns = (
                latency_min_ms * 1_000_000,
                (*latency_max_ms).max(*latency_min_ms) * 1_000_000,
            );
        }
    }
}

/// The main task wakes at every multiple of this much simulated time, whether or not
/// it prints progress: each wake-up is a scheduling event in madsim, so waking only
/// when printing would make a run with progress lines (`keel sim`) differ from the
/// same seed without them (tests), and a failing test's seed would not reproduce.
const MAIN_WAKE_MS: u64 = 10_000;

/// Sleeps until `target_ms` of simulated time, printing progress lines on the way
/// (at the wake-ups that fall on a multiple of the progress interval).
async fn sleep_until_ms(
    shared: &Arc<Mutex<Shared>>,
    target_ms: u64,
    progress: Option<(u64, &str)>,
) {
    loop {
        let (now_ms, start) = {
            let s = lock(shared);
            (s.now_ms(), s.start.expect("start is set before faults run"))
        };
        if now_ms >= target_ms {
            return;
        }
        let next = ((now_ms / MAIN_WAKE_MS + 1) * MAIN_WAKE_MS).min(target_ms);
        if let Some((every, label)) = progress {
            if now_ms > 0 && now_ms % every == 0 {
                let (events, duration) = {
                    let s = lock(shared);
                    (s.digest().events, s.duration_ms)
                };
                eprintln!(
                    "keel sim: {label} t={:.1}s/{:.1}s events={events}",
                    now_ms as f64 / 1000.0,
                    duration as f64 / 1000.0
                );
            }
        }
        madsim::time::sleep_until(start + Duration::from_millis(next)).await;
    }
}

/// Runs one simulation to completion and judges it.
pub fn run(config: SimConfig) -> Result<RunSummary, SimError> {
    config.network.validate().map_err(SimError::Invalid)?;
    if config.machines.is_empty() {
        return Err(SimError::Invalid(
            "a cluster needs at least one machine".into(),
        ));
    }
    let names: Vec<String> = config.machines.iter().map(|m| m.name.clone()).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    if unique.len() != names.len() || names.len() > 250 {
        return Err(SimError::Invalid(
            "machine names must be unique, at most 250 machines".into(),
        ));
    }
    config.faults.validate(&names).map_err(SimError::Invalid)?;

    let recorder = match &config.record {
        Some(path) => {
            let header = TraceHeader {
                format_version: keel_engine::trace::TRACE_FORMAT_VERSION,
                host: "sim".into(),
                seed: config.seed,
                config: serde_json::json!({
                    "scenario": config.scenario,
                    "duration_ms": config.duration_ms,
                    "machines": config.machines,
                    "network": config.network,
                    "faults": config.faults,
                }),
                created_by: format!("keel {}", env!("CARGO_PKG_VERSION")),
            };
            let file = File::create(path).map_err(|e| SimError::Record {
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
            Some(
                TraceWriter::new(BufWriter::new(file), &header).map_err(|e| SimError::Record {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?,
            )
        }
        None => None,
    };

    let mut ips = BTreeMap::new();
    let mut machines = BTreeMap::new();
    for (index, machine) in config.machines.iter().enumerate() {
        let node = NodeId::new(machine.name.as_str());
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1));
        ips.insert(node.clone(), ip);
        machines.insert(node, machine.clone());
    }
    let shared = Arc::new(Mutex::new(Shared {
        epoch_ns: SIM_EPOCH_UNIX_SECS * 1_000_000_000,
        start: None,
        machines,
        ips,
        disks: BTreeMap::new(),
        cut: BTreeSet::new(),
        skew_ms: BTreeMap::new(),
        boots: BTreeMap::new(),
        down: BTreeSet::new(),
        duplicate_rate: config.network.duplicate_rate,
        loss_rate: config.network.loss_rate,
        latency_ns: (
            config.network.latency_min_ms * 1_000_000,
            config.network.latency_max_ms * 1_000_000,
        ),
        in_flight: BTreeMap::new(),
        wakers: BTreeMap::new(),
        inbox_capacity: config.network.inbox_capacity,
        node_limits: node_limits(&config.network),
        runtimes: BTreeMap::new(),
        digest: TraceDigest::default(),
        recorder,
        record_error: None,
        invariants: config.invariants,
        violations: BTreeMap::new(),
        actor_errors: Vec::new(),
        next_message_id: 0,
        stats: NetStats::default(),
        duration_ms: config.duration_ms,
        last_fault_ms: config.faults.last_fault_ms(),
        claims: BTreeMap::new(),
        driver: Address::new("sim", "driver", 0),
    }));

    // The bus is the host's own network model (see the module docs); madsim's
    // network is not used.
    let madsim_config = madsim::Config::default();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(config.seed, madsim_config);

    let wall_start = std::time::Instant::now();
    let faults = config.faults.clone();
    let duration_ms = config.duration_ms;
    let progress = config.progress_every_ms;
    let label = format!("{} seed {}", config.scenario, config.seed);
    let main_shared = shared.clone();
    runtime.block_on(async move {
        let shared = main_shared;
        let handle = Handle::current();
        lock(&shared).start = Some(madsim::time::Instant::now());
        let nodes: Vec<(NodeId, IpAddr)> = lock(&shared)
            .ips
            .iter()
            .map(|(n, ip)| (n.clone(), *ip))
            .collect();
        let mut ids = BTreeMap::new();
        for (node, ip) in nodes {
            let init_shared = shared.clone();
            let init_node = node.clone();
            let handle = handle
                .create_node()
                .name(node.as_str())
                .ip(ip)
                .init(move || machine_main(init_shared.clone(), init_node.clone()))
                .build();
            ids.insert(node, handle.id());
        }
        // Progress lines can only be printed at the main task's wake-ups.
        let progress = progress.map(|every| {
            (
                every.div_ceil(MAIN_WAKE_MS).max(1) * MAIN_WAKE_MS,
                label.as_str(),
            )
        });
        for timed in &faults.faults {
            if timed.at_ms >= duration_ms {
                break;
            }
            sleep_until_ms(&shared, timed.at_ms, progress).await;
            apply_fault(&shared, &ids, &timed.fault);
        }
        sleep_until_ms(&shared, duration_ms, progress).await;
    });
    let wall_ms = wall_start.elapsed().as_millis() as u64;

    let mut s = lock(&shared);
    let now_ms = duration_ms;
    let mut verdicts = Vec::new();
    let mut invariants = std::mem::take(&mut s.invariants);
    for (index, invariant) in invariants.iter_mut().enumerate() {
        let world = World {
            disks: &s.disks,
            now_ms,
            duration_ms,
            last_fault_ms: s.last_fault_ms,
        };
        let (ok, detail) = match s.violations.get(&index) {
            Some(detail) => (false, detail.clone()),
            None => match invariant.finish(&world) {
                Ok(detail) => (true, detail),
                Err(detail) => (false, detail),
            },
        };
        verdicts.push(Verdict {
            name: invariant.name().to_string(),
            ok,
            detail,
        });
    }
    verdicts.push(Verdict {
        name: "actors-healthy".into(),
        ok: s.actor_errors.is_empty(),
        detail: if s.actor_errors.is_empty() {
            "every actor built and handled every input".into()
        } else {
            s.actor_errors
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        },
    });
    let digest = s.digest();
    if let Some(writer) = s.recorder.take() {
        if let Err(e) = writer.finish::<Message>() {
            s.record_error.get_or_insert_with(|| e.to_string());
        }
    }
    if let (Some(error), Some(path)) = (&s.record_error, &config.record) {
        return Err(SimError::Record {
            path: path.display().to_string(),
            error: error.clone(),
        });
    }
    Ok(RunSummary {
        scenario: config.scenario,
        seed: config.seed,
        trace_hash: format!("{:016x}", digest.hash()),
        events: digest.events,
        sim_time_ms: duration_ms,
        wall_ms,
        ok: verdicts.iter().all(|v| v.ok),
        invariants: verdicts,
        network: s.stats.clone(),
        actors: s
            .runtimes
            .values()
            .flat_map(|runtime| runtime.statuses())
            .map(|(address, status)| (address.to_string(), status))
            .collect(),
    })
}
