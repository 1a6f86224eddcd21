//! [`NodeRuntime`]: one machine's actors and the one loop both hosts drive.
//!
//! quinn-proto's shape: the runtime owns the machine's [`ActorCell`]s, its input queue and
//! its timers; a host (the simulator or the real process) only moves bytes and time.
//! A host:
//! 1. starts every actor of the machine with [`NodeRuntime::start_actor`];
//! 2. calls [`NodeRuntime::wake`] with its clocks, its network adapter (an
//!    [`Arrivals`]: the envelopes that have arrived, at most `max_arrivals_per_turn` of
//!    which are handed over) and the machine's disks; the wake hands the arrivals over,
//!    then runs one [`NodeRuntime::turn`];
//! 3. drains [`NodeRuntime::poll_output`]: envelopes for other machines, observations,
//!    host controls, trace events and step errors, in the order the steps produced them;
//! 4. wakes again at once while [`Woke::again`] (the simulator without letting time
//!    pass, the real host after yielding to its transport), else sleeps until
//!    [`NodeRuntime::next_deadline`] or the next arrival, then goes to 2.
//!
//! The two hosts differ only in their adapters (the simulator's network model, the real
//! bus's inbox) and in how many steps a turn runs (the simulator one, so its checkers
//! see each step's effects; the real host up to `max_steps_per_turn`); the runtime's
//! order does not depend on either, and `tests/cross_host.rs` drives one schedule
//! through both adapters with both limits and compares every output.
//!
//! **The ordering rule**, the one both hosts follow because it lives here:
//! * inputs run one at a time, in the order they joined the machine's queue;
//! * an arrival joins when the host hands it over ([`NodeRuntime::deliver`]);
//! * a turn first moves the timers due by its monotonic clock into the queue, earliest
//!   due first (ties in the order they were set), behind what is already queued;
//! * after a step its effects are released in order: local sends join the back of the
//!   queue, remote sends and reports go to the output; then its timers are set, and a
//!   **zero-delay timer joins the queue at once**, behind the step's own local sends and
//!   everything already queued, while a later one waits for the turn that finds it due;
//! * a turn runs at most `max_steps_per_turn` inputs; while inputs wait,
//!   [`NodeRuntime::next_deadline`] is "now".
//!
//! So a zero-delay timer means "after the inputs already here": the store's flush runs
//! once for all the proposals that arrived before it. Real-mode throughput relies on that
//! batching, and because the rule lives here the simulator exercises it too (before the
//! runtime, the simulator fired a due timer before the next arrival, so every flush
//! carried one proposal). Timers run on the host's monotonic clock; actors read its wall
//! clock, which the simulator may skew.
//!
//! Limits: at most `queue_capacity` messages wait in the queue (arrivals and local sends;
//! one more is dropped and counted, as a full network queue drops). Timer firings are
//! never dropped: each pending timer has one live firing, so they are bounded by the
//! actors' own timer sets.

use crate::actor::{ActorSpec, Control, DynActor, Effect, StartKind, Time};
use crate::address::{Address, NodeId};
use crate::cell::{ActorCell, Step, TimerFiring};
use crate::envelope::{Envelope, Message};
use crate::storage::Storage;
use crate::trace::TraceEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A host's clocks at one moment.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Clocks {
    /// The wall clock actors read through `Context::now` (the simulator may skew it).
    pub wall: Time,
    /// A monotonic clock in nanoseconds from any fixed origin; timers run on it.
    pub monotonic_ns: u64,
}

/// The runtime's limits (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLimits {
    /// Messages (arrivals and local sends) waiting to be handled before more are dropped.
    pub queue_capacity: usize,
    /// Inputs one [`NodeRuntime::turn`] handles before giving the host back control.
    pub max_steps_per_turn: usize,
    /// Arrivals one [`NodeRuntime::wake`] hands over before its turn: enough to batch
    /// what arrived together, few enough that due timers are not starved by a flood.
    #[serde(default = "default_max_arrivals_per_turn")]
    pub max_arrivals_per_turn: usize,
}

fn default_max_arrivals_per_turn() -> usize {
    1024
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            queue_capacity: 65_536,
            max_steps_per_turn: 1024,
            max_arrivals_per_turn: default_max_arrivals_per_turn(),
        }
    }
}

impl NodeLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0
            || self.max_steps_per_turn == 0
            || self.max_arrivals_per_turn == 0
        {
            return Err(
                "queue_capacity, max_steps_per_turn and max_arrivals_per_turn must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A host's network adapter, as [`NodeRuntime::wake`] sees it.
pub trait Arrivals<M> {
    /// The next envelope that has arrived and is not handed over yet; `None` when none
    /// waits (the runtime asks again at its next wake).
    fn next_arrival(&mut self) -> Option<Envelope<M>>;
    /// What the runtime did with the envelope `next_arrival` just gave: hosts count
    /// refusals and observe deliveries.
    fn handed_over(&mut self, _result: Result<(), Refused>) {}
}

/// What one [`NodeRuntime::wake`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Woke {
    /// Arrivals handed over (refused ones included).
    pub handed: usize,
    /// Inputs the turn handled.
    pub steps: usize,
    /// Wake again without waiting: inputs still wait in the queue, or arrivals may be
    /// left (the hand-over stopped at `max_arrivals_per_turn`, or the queue was not
    /// empty so none were taken).
    pub again: bool,
}

/// The disks of a machine's actors, as the host keeps them (the simulator's survive a
/// machine's death; the real host's are files).
pub trait Disks {
    /// The storage of `actor`; `None` when the host has none for it.
    fn disk(&mut self, actor: &Address) -> Option<&mut dyn Storage>;
}

impl<S: Storage> Disks for BTreeMap<Address, S> {
    fn disk(&mut self, actor: &Address) -> Option<&mut dyn Storage> {
        self.get_mut(actor).map(|s| s as &mut dyn Storage)
    }
}

/// What the runtime hands the host, in the order the steps produced it.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeOutput<M> {
    /// An envelope for an actor on another machine.
    Transmit(Envelope<M>),
    /// An observation an actor emitted (`Context::emit`).
    Emitted { actor: Address, msg: M },
    /// A request to the host (`Context::control`).
    Control { actor: Address, control: Control },
    /// One handled input, when the runtime records.
    Trace(TraceEvent<M>),
    /// An input an actor could not handle.
    StepError { actor: Address, error: String },
}

/// Why [`NodeRuntime::deliver`] refused an envelope (each is counted too).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no actor {0} on this machine")]
    UnknownActor(Address),
    #[error("the machine's input queue is full")]
    QueueFull,
}

/// Counters of the runtime's own routing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Inputs handled (starts, messages, timer firings).
    pub steps: u64,
    /// Envelopes from the network accepted into the queue.
    pub arrivals: u64,
    /// Messages between actors of this machine.
    pub local_sends: u64,
    /// Messages dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Messages for an actor this machine does not host.
    pub dropped_unknown_actor: u64,
    /// Timer firings handled (stale ones are not counted).
    pub timers_fired: u64,
    /// Inputs an actor could not handle.
    pub step_errors: u64,
    /// Turns that handled at least one input.
    pub busy_turns: u64,
    /// The longest the queue has been.
    pub queue_high_water: u64,
}

enum Queued<M> {
    Message { from: Address, to: Address, msg: M },
    Timer { actor: Address, firing: TimerFiring },
}

/// One machine's actors, queue and timers (see the module docs).
pub struct NodeRuntime<M: Message> {
    node: NodeId,
    limits: NodeLimits,
    recording: bool,
    cells: BTreeMap<Address, ActorCell<M>>,
    queue: VecDeque<Queued<M>>,
    /// Messages in `queue` (timer firings are not counted against the capacity).
    queued_messages: usize,
    /// Pending timers: (due monotonic ns, sequence) → actor and firing.
    timers: BTreeMap<(u64, u64), (Address, TimerFiring)>,
    timer_sequence: u64,
    output: VecDeque<NodeOutput<M>>,
    stats: NodeStats,
    /// The clock of the latest turn (timers are set relative to it).
    last_monotonic_ns: u64,
}

impl<M: Message> NodeRuntime<M> {
    pub fn new(node: NodeId, limits: NodeLimits, recording: bool) -> Result<Self, String> {
        limits.validate()?;
        Ok(NodeRuntime {
            node,
            limits,
            recording,
            cells: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_messages: 0,
            timers: BTreeMap::new(),
            timer_sequence: 0,
            output: VecDeque::new(),
            stats: NodeStats::default(),
            last_monotonic_ns: 0,
        })
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Builds the cell of an actor of this machine and runs its start; the start's
    /// effects are released like any step's.
    #[allow(clippy::too_many_arguments)]
    pub fn start_actor(
        &mut self,
        clocks: Clocks,
        address: Address,
        spec: ActorSpec,
        actor: Box<dyn DynActor<M>>,
        rng_seed: u64,
        kind: StartKind,
        storage: &mut dyn Storage,
    ) -> Result<(), String> {
        if address.node != self.node {
            return Err(format!(
                "actor {address} belongs to machine {}, not {}",
                address.node, self.node
            ));
        }
        if self.cells.contains_key(&address) {
            return Err(format!("actor {address} is started twice"));
        }
        self.observe_clock(clocks);
        let (cell, step) = ActorCell::start(
            address.clone(),
            spec,
            actor,
            rng_seed,
            kind,
            clocks.wall,
            storage,
            self.recording,
        );
        self.cells.insert(address.clone(), cell);
        self.stats.steps += 1;
        self.release(&address, step);
        Ok(())
    }

    /// Queues an envelope that arrived from the network.
    pub fn deliver(&mut self, envelope: Envelope<M>) -> Result<(), Refused> {
        if !self.cells.contains_key(&envelope.to) {
            self.stats.dropped_unknown_actor += 1;
            return Err(Refused::UnknownActor(envelope.to));
        }
        if self.queued_messages >= self.limits.queue_capacity {
            self.stats.dropped_queue_full += 1;
            return Err(Refused::QueueFull);
        }
        self.stats.arrivals += 1;
        self.enqueue(Queued::Message {
            from: envelope.from,
            to: envelope.to,
            msg: envelope.msg,
        });
        Ok(())
    }

    /// One wake of a host's loop (the module docs): when the queue is empty, hands over
    /// at most `max_arrivals_per_turn` envelopes from `arrivals`, in their order; then
    /// runs one [`NodeRuntime::turn`].
    ///
    /// Arrivals are taken only into an empty queue, so a batch and everything it causes
    /// at once (local sends, zero-delay timers) run before the next batch is taken —
    /// whatever the turn size. Taking more whenever a turn ends would make the order
    /// depend on `max_steps_per_turn`, which the two hosts set differently (seen: with
    /// three arrivals per wake, the simulator's one-step turns let the next batch in
    /// ahead of the API server's local send to the store; `tests/cross_host.rs`).
    pub fn wake(
        &mut self,
        clocks: Clocks,
        arrivals: &mut dyn Arrivals<M>,
        disks: &mut dyn Disks,
    ) -> Woke {
        let mut handed = 0;
        let looked = self.queue.is_empty();
        if looked {
            while handed < self.limits.max_arrivals_per_turn {
                let Some(envelope) = arrivals.next_arrival() else {
                    break;
                };
                handed += 1;
                let result = self.deliver(envelope);
                arrivals.handed_over(result);
            }
        }
        let steps = self.turn(clocks, disks);
        Woke {
            handed,
            steps,
            again: self.has_queued() || !looked || handed == self.limits.max_arrivals_per_turn,
        }
    }

    /// Moves the timers due by `clocks` into the queue, then handles queued inputs, at
    /// most `max_steps_per_turn`. Returns how many it handled.
    pub fn turn(&mut self, clocks: Clocks, disks: &mut dyn Disks) -> usize {
        self.observe_clock(clocks);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > clocks.monotonic_ns {
                break;
            }
            let (actor, firing) = entry.remove();
            self.enqueue(Queued::Timer { actor, firing });
        }
        let mut handled = 0;
        while handled < self.limits.max_steps_per_turn {
            let Some(input) = self.queue.pop_front() else {
                break;
            };
            let (actor, step) = match input {
                Queued::Message { from, to, msg } => {
                    self.queued_messages -= 1;
                    let (Some(cell), Some(disk)) = (self.cells.get_mut(&to), disks.disk(&to))
                    else {
                        // Local sends are checked when released; the host's disks may not
                        // know an actor only if the host is inconsistent: count, not crash.
                        self.stats.dropped_unknown_actor += 1;
                        continue;
                    };
                    (to, cell.deliver(clocks.wall, from, msg, disk))
                }
                Queued::Timer { actor, firing } => {
                    let (Some(cell), Some(disk)) = (self.cells.get_mut(&actor), disks.disk(&actor))
                    else {
                        continue;
                    };
                    // `None`: the timer was reset or cancelled since it was queued.
                    let Some(step) = cell.fire(clocks.wall, &firing, disk) else {
                        continue;
                    };
                    self.stats.timers_fired += 1;
                    (actor, step)
                }
            };
            handled += 1;
            self.stats.steps += 1;
            self.release(&actor, step);
        }
        if handled > 0 {
            self.stats.busy_turns += 1;
        }
        handled
    }

    /// When the host must run the next turn, on its monotonic clock: "now" (0) while
    /// inputs wait, else the earliest pending timer; `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.queue.is_empty() {
            return Some(0);
        }
        self.timers.first_key_value().map(|(&(due, _), _)| due)
    }

    /// Whether inputs wait in the queue (a turn would handle something).
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The next output, in the order the steps produced them.
    pub fn poll_output(&mut self) -> Option<NodeOutput<M>> {
        self.output.pop_front()
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Each actor's status JSON, by address.
    pub fn statuses(&self) -> BTreeMap<Address, serde_json::Value> {
        self.cells
            .iter()
            .map(|(address, cell)| (address.clone(), cell.status()))
            .collect()
    }

    pub fn actors(&self) -> impl Iterator<Item = &Address> {
        self.cells.keys()
    }

    fn observe_clock(&mut self, clocks: Clocks) {
        // A host's monotonic clock never runs back; a host that breaks this would fire
        // timers early or never.
        assert!(
            clocks.monotonic_ns >= self.last_monotonic_ns,
            "monotonic clock ran back on {}: {} after {}",
            self.node,
            clocks.monotonic_ns,
            self.last_monotonic_ns
        );
        self.last_monotonic_ns = clocks.monotonic_ns;
    }

    fn enqueue(&mut self, input: Queued<M>) {
        if matches!(input, Queued::Message { .. }) {
            self.queued_messages += 1;
        }
        self.queue.push_back(input);
        self.stats.queue_high_water = self.stats.queue_high_water.max(self.queue.len() as u64);
    }

    /// Releases one step's effects in order (see the ordering rule), then its timers.
    fn release(&mut self, actor: &Address, step: Step<M>) {
        if let Some(event) = step.event {
            self.output.push_back(NodeOutput::Trace(event));
        }
        if let Some(error) = step.error {
            self.stats.step_errors += 1;
            self.output.push_back(NodeOutput::StepError {
                actor: actor.clone(),
                error,
            });
        }
        for effect in step.effects {
            match effect {
                Effect::Send { to, msg } if to.node == self.node => {
                    if !self.cells.contains_key(&to) {
                        self.stats.dropped_unknown_actor += 1;
                    } else if self.queued_messages >= self.limits.queue_capacity {
                        self.stats.dropped_queue_full += 1;
                    } else {
                        self.stats.local_sends += 1;
                        self.enqueue(Queued::Message {
                            from: actor.clone(),
                            to,
                            msg,
                        });
                    }
                }
                Effect::Send { to, msg } => {
                    self.output.push_back(NodeOutput::Transmit(Envelope::new(
                        actor.clone(),
                        to,
                        msg,
                    )));
                }
                Effect::Emit { msg } => self.output.push_back(NodeOutput::Emitted {
                    actor: actor.clone(),
                    msg,
                }),
                Effect::Control(control) => self.output.push_back(NodeOutput::Control {
                    actor: actor.clone(),
                    control,
                }),
                Effect::SetTimer { .. }
                | Effect::CancelTimer { .. }
                | Effect::Persist(_)
                | Effect::Sync => {}
            }
        }
        for (firing, after_ms) in step.timers {
            if after_ms == 0 {
                self.enqueue(Queued::Timer {
                    actor: actor.clone(),
                    firing,
                });
            } else {
                self.timer_sequence += 1;
                let due = self
                    .last_monotonic_ns
                    .saturating_add(after_ms.saturating_mul(1_000_000));
                self.timers
                    .insert((due, self.timer_sequence), (actor.clone(), firing));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::{Actor, Context, Input};
    use crate::storage::MemStorage;
    use std::time::Duration;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum TestMsg {
        Work(u32),
        Batch(Vec<u32>),
        Fired(String),
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum TestTimer {
        Flush,
        Later,
    }

    /// Collects work and flushes it on a zero-delay timer, as the store batches proposals.
    #[derive(Default)]
    struct Batcher {
        pending: Vec<u32>,
        scheduled: bool,
    }

    impl Actor for Batcher {
        type Message = TestMsg;
        type Timer = TestTimer;
        fn handle(
            &mut self,
            input: Input<TestMsg, TestTimer>,
            ctx: &mut Context<'_, TestMsg, TestTimer>,
        ) {
            match input {
                Input::Message {
                    msg: TestMsg::Work(n),
                    ..
                } => {
                    self.pending.push(n);
                    if !self.scheduled {
                        self.scheduled = true;
                        ctx.set_timer(TestTimer::Flush, Duration::ZERO);
                    }
                }
                Input::Timer(TestTimer::Flush) => {
                    self.scheduled = false;
                    ctx.emit(TestMsg::Batch(std::mem::take(&mut self.pending)));
                }
                _ => {}
            }
        }
    }

    /// On work: two local sends to the batcher, one remote send, a zero-delay timer of
    /// its own and a 5 ms timer.
    struct Relay;

    impl Actor for Relay {
        type Message = TestMsg;
        type Timer = TestTimer;
        fn handle(
            &mut self,
            input: Input<TestMsg, TestTimer>,
            ctx: &mut Context<'_, TestMsg, TestTimer>,
        ) {
            match input {
                Input::Message {
                    msg: TestMsg::Work(n),
                    ..
                } => {
                    ctx.set_timer(TestTimer::Flush, Duration::ZERO);
                    ctx.send(batcher(), TestMsg::Work(n));
                    ctx.send(batcher(), TestMsg::Work(n + 1));
                    ctx.send(Address::new("elsewhere", "batcher", 0), TestMsg::Work(n));
                    ctx.send(Address::new("m", "nobody", 0), TestMsg::Work(n));
                    ctx.set_timer(TestTimer::Later, Duration::from_millis(5));
                }
                Input::Timer(TestTimer::Flush) => ctx.emit(TestMsg::Fired("relay-now".into())),
                Input::Timer(TestTimer::Later) => ctx.emit(TestMsg::Fired("relay-later".into())),
                _ => {}
            }
        }
    }

    fn batcher() -> Address {
        Address::new("m", "batcher", 0)
    }
    fn relay() -> Address {
        Address::new("m", "relay", 0)
    }
    fn spec(kind: &str) -> ActorSpec {
        ActorSpec {
            kind: kind.into(),
            config_json: "{}".into(),
        }
    }
    fn at_ms(ms: u64) -> Clocks {
        Clocks {
            wall: Time::from_millis(1_000_000 + ms),
            monotonic_ns: ms * 1_000_000,
        }
    }
    fn from_client(to: Address, msg: TestMsg) -> Envelope<TestMsg> {
        Envelope::new(Address::new("client", "c", 0), to, msg)
    }

    /// A machine with the batcher and the relay, started at 0 ms.
    fn machine(limits: NodeLimits) -> (NodeRuntime<TestMsg>, BTreeMap<Address, MemStorage>) {
        let mut runtime = NodeRuntime::new(NodeId::new("m"), limits, false).unwrap();
        let mut disks = BTreeMap::new();
        for (address, actor) in [
            (
                batcher(),
                Box::new(Batcher::default()) as Box<dyn DynActor<TestMsg>>,
            ),
            (relay(), Box::new(Relay)),
        ] {
            let disk: &mut MemStorage = disks.entry(address.clone()).or_default();
            runtime
                .start_actor(
                    at_ms(0),
                    address,
                    spec("test"),
                    actor,
                    7,
                    StartKind::Fresh,
                    disk,
                )
                .unwrap();
        }
        (runtime, disks)
    }

    fn drain(runtime: &mut NodeRuntime<TestMsg>) -> Vec<NodeOutput<TestMsg>> {
        std::iter::from_fn(|| runtime.poll_output()).collect()
    }

    fn emitted(outputs: &[NodeOutput<TestMsg>]) -> Vec<TestMsg> {
        outputs
            .iter()
            .filter_map(|o| match o {
                NodeOutput::Emitted { msg, .. } => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    /// Arrivals handed over before a turn all run before a zero-delay timer one of them
    /// set: one flush carries the three.
    #[test]
    fn a_zero_delay_timer_runs_after_the_inputs_already_queued() {
        let (mut runtime, mut disks) = machine(NodeLimits::default());
        for n in 1..=3 {
            runtime
                .deliver(from_client(batcher(), TestMsg::Work(n)))
                .unwrap();
        }
        assert_eq!(runtime.turn(at_ms(1), &mut disks), 4);
        assert_eq!(
            emitted(&drain(&mut runtime)),
            vec![TestMsg::Batch(vec![1, 2, 3])]
        );
        assert_eq!(runtime.next_deadline(), None);
    }

    /// A step's local sends join the queue before its own zero-delay timer; remote sends
    /// leave as output; a send to an actor the machine lacks is counted; the 5 ms timer
    /// waits for a turn whose monotonic clock has reached it.
    #[test]
    fn local_sends_then_timers_remote_sends_leave_and_timers_wait_for_their_time() {
        let (mut runtime, mut disks) = machine(NodeLimits::default());
        runtime
            .deliver(from_client(relay(), TestMsg::Work(10)))
            .unwrap();
        runtime.turn(at_ms(1), &mut disks);
        let outputs = drain(&mut runtime);
        assert_eq!(
            emitted(&outputs),
            vec![
                TestMsg::Fired("relay-now".into()),
                TestMsg::Batch(vec![10, 11])
            ]
        );
        let transmitted: Vec<&Envelope<TestMsg>> = outputs
            .iter()
            .filter_map(|o| match o {
                NodeOutput::Transmit(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(transmitted.len(), 1);
        assert_eq!(transmitted[0].to.node, NodeId::new("elsewhere"));
        assert_eq!(runtime.stats().dropped_unknown_actor, 1);
        assert_eq!(runtime.stats().local_sends, 2);
        assert_eq!(runtime.next_deadline(), Some(6_000_000));
        assert_eq!(runtime.turn(at_ms(5), &mut disks), 0);
        assert_eq!(runtime.turn(at_ms(6), &mut disks), 1);
        assert_eq!(
            emitted(&drain(&mut runtime)),
            vec![TestMsg::Fired("relay-later".into())]
        );
    }

    /// The queue refuses messages beyond its capacity (counted) and a turn stops at its
    /// step budget, leaving the rest for the next turn with the deadline "now".
    #[test]
    fn the_queue_and_the_turn_are_bounded() {
        let limits = NodeLimits {
            queue_capacity: 2,
            max_steps_per_turn: 1,
            ..NodeLimits::default()
        };
        let (mut runtime, mut disks) = machine(limits);
        runtime
            .deliver(from_client(batcher(), TestMsg::Work(1)))
            .unwrap();
        runtime
            .deliver(from_client(batcher(), TestMsg::Work(2)))
            .unwrap();
        assert_eq!(
            runtime.deliver(from_client(batcher(), TestMsg::Work(3))),
            Err(Refused::QueueFull)
        );
        assert_eq!(
            runtime.deliver(from_client(
                Address::new("m", "nobody", 0),
                TestMsg::Work(4)
            )),
            Err(Refused::UnknownActor(Address::new("m", "nobody", 0)))
        );
        assert_eq!(runtime.stats().dropped_queue_full, 1);
        assert_eq!(runtime.turn(at_ms(1), &mut disks), 1);
        assert!(runtime.has_queued());
        assert_eq!(runtime.next_deadline(), Some(0));
        while runtime.has_queued() {
            assert_eq!(runtime.turn(at_ms(1), &mut disks), 1);
        }
        assert_eq!(
            emitted(&drain(&mut runtime)),
            vec![TestMsg::Batch(vec![1, 2])]
        );
        assert!(NodeLimits {
            queue_capacity: 0,
            ..NodeLimits::default()
        }
        .validate()
        .is_err());
        assert!(NodeLimits {
            max_arrivals_per_turn: 0,
            ..NodeLimits::default()
        }
        .validate()
        .is_err());
    }

    /// A network adapter for tests: a queue of envelopes, and what the runtime said.
    #[derive(Default)]
    struct Inbox {
        waiting: VecDeque<Envelope<TestMsg>>,
        results: Vec<Result<(), Refused>>,
    }

    impl Arrivals<TestMsg> for Inbox {
        fn next_arrival(&mut self) -> Option<Envelope<TestMsg>> {
            self.waiting.pop_front()
        }
        fn handed_over(&mut self, result: Result<(), Refused>) {
            self.results.push(result);
        }
    }

    /// A wake hands over at most `max_arrivals_per_turn` arrivals, in order, before its
    /// turn — so a due timer runs after them — and asks to be woken again while
    /// arrivals may be left; refusals reach the adapter.
    #[test]
    fn a_wake_hands_over_a_bounded_batch_then_runs_a_turn() {
        let limits = NodeLimits {
            max_arrivals_per_turn: 2,
            ..NodeLimits::default()
        };
        let (mut runtime, mut disks) = machine(limits);
        // relay's 5 ms timer is due at 6 ms (set at 1 ms).
        runtime
            .deliver(from_client(relay(), TestMsg::Work(100)))
            .unwrap();
        runtime.turn(at_ms(1), &mut disks);
        drain(&mut runtime);
        let mut inbox = Inbox::default();
        for n in 1..=3 {
            inbox
                .waiting
                .push_back(from_client(batcher(), TestMsg::Work(n)));
        }
        inbox.waiting.push_back(from_client(
            Address::new("m", "nobody", 0),
            TestMsg::Work(9),
        ));
        let woke = runtime.wake(at_ms(6), &mut inbox, &mut disks);
        assert_eq!((woke.handed, woke.steps, woke.again), (2, 4, true));
        // The two arrivals ran before the due timer, then the flush carried both.
        assert_eq!(
            emitted(&drain(&mut runtime)),
            vec![
                TestMsg::Fired("relay-later".into()),
                TestMsg::Batch(vec![1, 2])
            ]
        );
        let woke = runtime.wake(at_ms(6), &mut inbox, &mut disks);
        assert_eq!((woke.handed, woke.steps, woke.again), (2, 2, true));
        assert_eq!(
            inbox.results,
            vec![
                Ok(()),
                Ok(()),
                Ok(()),
                Err(Refused::UnknownActor(Address::new("m", "nobody", 0)))
            ]
        );
        let woke = runtime.wake(at_ms(6), &mut inbox, &mut disks);
        assert_eq!((woke.handed, woke.steps, woke.again), (0, 0, false));
        assert_eq!(emitted(&drain(&mut runtime)), vec![TestMsg::Batch(vec![3])]);
    }

    /// With one step per turn, a wake takes no arrivals while the last batch's inputs
    /// (and what they caused) still wait: the order is the one a large turn gives.
    #[test]
    fn arrivals_are_taken_only_into_an_empty_queue() {
        let limits = NodeLimits {
            max_arrivals_per_turn: 2,
            max_steps_per_turn: 1,
            ..NodeLimits::default()
        };
        let (mut runtime, mut disks) = machine(limits);
        let mut inbox = Inbox::default();
        for n in 1..=4 {
            inbox
                .waiting
                .push_back(from_client(batcher(), TestMsg::Work(n)));
        }
        let mut handed = Vec::new();
        loop {
            let woke = runtime.wake(at_ms(1), &mut inbox, &mut disks);
            handed.push(woke.handed);
            if !woke.again {
                break;
            }
        }
        // Work 1, work 2, the flush; then work 3, work 4, the flush; then a last look.
        assert_eq!(handed, vec![2, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            emitted(&drain(&mut runtime)),
            vec![TestMsg::Batch(vec![1, 2]), TestMsg::Batch(vec![3, 4])]
        );
    }

    /// Actors of another machine and a second start of one actor are refused.
    #[test]
    fn foreign_and_duplicate_actors_are_refused() {
        let (mut runtime, _disks) = machine(NodeLimits::default());
        let mut disk = MemStorage::default();
        let foreign = runtime.start_actor(
            at_ms(0),
            Address::new("other", "batcher", 0),
            spec("test"),
            Box::new(Batcher::default()),
            1,
            StartKind::Fresh,
            &mut disk,
        );
        assert!(foreign.unwrap_err().contains("belongs to machine other"));
        let twice = runtime.start_actor(
            at_ms(0),
            batcher(),
            spec("test"),
            Box::new(Batcher::default()),
            1,
            StartKind::Fresh,
            &mut disk,
        );
        assert!(twice.unwrap_err().contains("started twice"));
    }

    /// A host whose monotonic clock runs back is a bug the runtime refuses to hide.
    #[test]
    #[should_panic(expected = "monotonic clock ran back")]
    fn a_monotonic_clock_that_runs_back_is_a_bug() {
        let (mut runtime, mut disks) = machine(NodeLimits::default());
        runtime.turn(at_ms(5), &mut disks);
        runtime.turn(at_ms(4), &mut disks);
    }
}
