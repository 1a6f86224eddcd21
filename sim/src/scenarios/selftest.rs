//! The self-test scenarios and their invariants.
//!
//! Invariants (see `keel_actors::selftest` for the protocol):
//! * `ping-seq-monotonic` — a sender never reuses a ping sequence number, across
//!   restarts (the reservation is synced before the ping leaves);
//! * `acks-durable` — every pong sent is backed by a durable acknowledgement that a
//!   crash cannot take back (checked at every restart and at the end);
//! * `partitions-hold` — no message sent over a cut link is ever delivered;
//! * `faults-took-effect` — the scheduled faults really happened: partitions cut
//!   messages, crashes lost unsynced writes, machines restarted;
//! * `liveness-after-heal` — once the last fault is over, every machine hears pongs
//!   from every other machine again.

use super::Setup;
use crate::faults::{Fault, FaultSchedule, TimedFault};
use crate::host::{Machine, NetworkConfig};
use crate::invariant::{Invariant, Observation, World};
use keel_actors::selftest::{acked_seq_in_storage, SelfTestConfig, SelfTestMessage, KIND};
use keel_actors::Message;
use keel_engine::{ActorSpec, Address, StartKind};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn address(node: &str) -> Address {
    Address::new(node, KIND, 0)
}

/// Three machines, each with one self-test actor that pings the other two.
pub fn machines(nodes: &[&str], ping_interval_ms: u64) -> Vec<Machine> {
    nodes
        .iter()
        .map(|node| {
            let config = SelfTestConfig {
                peers: nodes
                    .iter()
                    .filter(|n| *n != node)
                    .map(|n| address(n))
                    .collect(),
                ping_interval_ms,
            };
            Machine {
                name: node.to_string(),
                actors: vec![(
                    address(node),
                    ActorSpec {
                        kind: KIND.into(),
                        config_json: serde_json::to_string(&config).expect("config serializes"),
                    },
                )],
            }
        })
        .collect()
}

pub fn invariants(schedule: &FaultSchedule) -> Vec<Box<dyn Invariant + Send>> {
    vec![
        Box::new(PingSeqMonotonic::default()),
        Box::new(AcksDurable::default()),
        Box::new(PartitionsHold::default()),
        Box::new(FaultsTookEffect::expecting(schedule)),
        Box::new(LivenessAfterHeal::default()),
    ]
}

fn setup(network: NetworkConfig, faults: FaultSchedule) -> Setup {
    Setup {
        machines: machines(&NODES, 100),
        network,
        faults,
    }
}

fn lossy_network() -> NetworkConfig {
    NetworkConfig {
        latency_min_ms: 1,
        latency_max_ms: 20,
        loss_rate: 0.01,
        duplicate_rate: 0.01,
        ..NetworkConfig::default()
    }
}

/// The default: one of every fault, at times scaled to the run's duration.
pub fn faulty(_seed: u64, duration_ms: u64) -> Setup {
    let at = |thirtieths: u64| duration_ms * thirtieths / 30;
    let node = |n: &str| n.to_string();
    let timed = |at_ms, fault| TimedFault { at_ms, fault };
    let faults = FaultSchedule::new(vec![
        timed(
            at(3),
            Fault::Partition {
                groups: vec![vec![node("n1")], vec![node("n2"), node("n3")]],
            },
        ),
        timed(at(6), Fault::Heal),
        timed(
            at(7),
            Fault::PartitionOneWay {
                from: node("n2"),
                to: node("n3"),
            },
        ),
        timed(at(9), Fault::Heal),
        timed(at(10), Fault::Kill { node: node("n3") }),
        timed(at(13), Fault::Restart { node: node("n3") }),
        timed(at(14), Fault::Pause { node: node("n2") }),
        timed(at(16), Fault::Resume { node: node("n2") }),
        timed(
            at(17),
            Fault::ClockSkew {
                node: node("n1"),
                offset_ms: 1500,
            },
        ),
        timed(
            at(18),
            Fault::Network {
                latency_min_ms: 5,
                latency_max_ms: 50,
                loss_rate: 0.05,
                duplicate_rate: 0.05,
            },
        ),
        timed(
            at(21),
            Fault::Network {
                latency_min_ms: 1,
                latency_max_ms: 20,
                loss_rate: 0.01,
                duplicate_rate: 0.01,
            },
        ),
        timed(at(22), Fault::Restart { node: node("n1") }),
    ]);
    setup(lossy_network(), faults)
}

pub fn calm(_seed: u64, _duration_ms: u64) -> Setup {
    setup(NetworkConfig::default(), FaultSchedule::default())
}

pub fn random(seed: u64, duration_ms: u64) -> Setup {
    let nodes: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    setup(lossy_network(), random_schedule(seed, &nodes, duration_ms))
}

/// A schedule drawn from `seed`: faults during the first 70% of the run, then heal,
/// resume and restart everything so the end of the run can judge liveness.
pub fn random_schedule(seed: u64, nodes: &[String], duration_ms: u64) -> FaultSchedule {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_fa17);
    let window = duration_ms * 7 / 10;
    let mut faults = Vec::new();
    let count = rng.gen_range(3..10);
    for _ in 0..count {
        let at_ms = rng.gen_range(0..window.max(1));
        let node = nodes[rng.gen_range(0..nodes.len())].clone();
        let fault = match rng.gen_range(0..7) {
            0 => {
                let (left, right): (Vec<String>, Vec<String>) =
                    nodes.iter().cloned().partition(|_| rng.gen_bool(0.5));
                Fault::Partition {
                    groups: vec![left, right],
                }
            }
            1 => Fault::PartitionOneWay {
                from: node,
                to: nodes[rng.gen_range(0..nodes.len())].clone(),
            },
            2 => Fault::Kill { node },
            3 => Fault::Restart { node },
            4 => Fault::Pause { node },
            5 => Fault::ClockSkew {
                node,
                offset_ms: rng.gen_range(-5000..5000),
            },
            _ => Fault::Network {
                latency_min_ms: 1,
                latency_max_ms: rng.gen_range(2..100),
                loss_rate: rng.gen_range(0.0..0.2),
                duplicate_rate: rng.gen_range(0.0..0.1),
            },
        };
        faults.push(TimedFault { at_ms, fault });
    }
    faults.push(TimedFault {
        at_ms: window,
        fault: Fault::Heal,
    });
    for node in nodes {
        faults.push(TimedFault {
            at_ms: window,
            fault: Fault::Resume { node: node.clone() },
        });
        faults.push(TimedFault {
            at_ms: window,
            fault: Fault::Restart { node: node.clone() },
        });
    }
    faults.push(TimedFault {
        at_ms: window,
        fault: Fault::Network {
            latency_min_ms: 1,
            latency_max_ms: 20,
            loss_rate: 0.01,
            duplicate_rate: 0.01,
        },
    });
    FaultSchedule::new(faults)
}

/// A sender never reuses a sequence number towards a receiver.
#[derive(Default)]
pub struct PingSeqMonotonic {
    last: BTreeMap<(Address, Address), u64>,
    pings: u64,
}

impl Invariant for PingSeqMonotonic {
    fn name(&self) -> &'static str {
        "ping-seq-monotonic"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        if let Observation::Sent {
            from,
            to,
            msg: Message::SelfTest(SelfTestMessage::Ping { seq, .. }),
            ..
        } = observation
        {
            self.pings += 1;
            let last = self
                .last
                .entry(((*from).clone(), (*to).clone()))
                .or_insert(0);
            if *seq <= *last {
                return Err(format!("{from} sent ping {seq} to {to} after ping {last}"));
            }
            *last = *seq;
        }
        Ok(())
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        if self.pings == 0 {
            return Err("no pings were sent".into());
        }
        Ok(format!(
            "{} pings, sequence numbers strictly increasing per link",
            self.pings
        ))
    }
}

/// Every pong is backed by a durable acknowledgement.
#[derive(Default)]
pub struct AcksDurable {
    /// (acknowledger, pinger) → highest sequence acknowledged by a pong.
    promised: BTreeMap<(Address, Address), u64>,
    checks: u64,
}

impl AcksDurable {
    fn check(&mut self, world: &World<'_>, only: Option<&Address>) -> Result<(), String> {
        for ((acker, pinger), seq) in &self.promised {
            if only.is_some_and(|o| o != acker) {
                continue;
            }
            self.checks += 1;
            let durable = world
                .disks
                .get(acker)
                .map(|d| acked_seq_in_storage(d, pinger))
                .unwrap_or(0);
            if durable < *seq {
                return Err(format!("{acker} acknowledged ping {seq} from {pinger} but its disk holds only {durable}"));
            }
        }
        Ok(())
    }
}

impl Invariant for AcksDurable {
    fn name(&self) -> &'static str {
        "acks-durable"
    }
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String> {
        match observation {
            Observation::Sent {
                from,
                to,
                msg: Message::SelfTest(SelfTestMessage::Pong { seq, .. }),
                ..
            } => {
                let promised = self
                    .promised
                    .entry(((*from).clone(), (*to).clone()))
                    .or_insert(0);
                *promised = (*promised).max(*seq);
                Ok(())
            }
            Observation::Started {
                actor,
                kind: StartKind::Restart,
                ..
            } => self.check(world, Some(actor)),
            _ => Ok(()),
        }
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        self.check(world, None)?;
        Ok(format!(
            "{} acknowledgements checked against disks after crashes",
            self.checks
        ))
    }
}

/// Nothing sent across a cut link arrives. The checker keeps its own model of the cut
/// links from the fault schedule (partitions, one-way cuts, heals) rather than trusting
/// the network's `cut` flag: a network that lost track of a partition — delivering
/// across it, or dropping on a link that is whole — fails here.
#[derive(Default)]
pub struct PartitionsHold {
    /// Messages sent while their link was cut.
    cut: BTreeSet<u64>,
    /// The links (from, to) the standing partitions cut, by machine name.
    links: BTreeSet<(String, String)>,
}

impl Invariant for PartitionsHold {
    fn name(&self) -> &'static str {
        "partitions-hold"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        match observation {
            Observation::Fault { fault, .. } => {
                if matches!(fault, Fault::Heal) {
                    self.links.clear();
                }
                self.links.extend(fault.cut_links());
            }
            Observation::Sent {
                id, from, to, cut, ..
            } => {
                let link = (from.node.to_string(), to.node.to_string());
                let expected = self.links.contains(&link);
                if *cut != expected {
                    return Err(format!(
                        "message {id} from {from} to {to}: the network {} the link, the schedule {}",
                        if *cut { "cut" } else { "kept" },
                        if expected { "cut it" } else { "kept it whole" }
                    ));
                }
                if expected {
                    self.cut.insert(*id);
                }
            }
            Observation::Delivered { id, from, to, .. } if self.cut.contains(id) => {
                return Err(format!(
                    "message {id} from {from} to {to} crossed a partition"
                ));
            }
            _ => {}
        }
        Ok(())
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        Ok(format!(
            "{} messages cut by partitions, none delivered",
            self.cut.len()
        ))
    }
}

/// The faults in the schedule really happened: a partition that stood for a while with
/// a running sender behind a cut link cut messages; a crash lost unsynced writes; a
/// restart started actors again.
#[derive(Default)]
pub struct FaultsTookEffect {
    expect_cut: bool,
    expect_crash: bool,
    expect_restart: bool,
    /// Since when a standing partition has cut a link whose sender runs.
    partition_since_ms: Option<u64>,
    /// The links (from, to) the standing partitions cut.
    links: BTreeSet<(String, String)>,
    /// Machines killed and not restarted (a resume does not revive them).
    killed: BTreeSet<String>,
    /// Machines paused and not resumed or restarted.
    paused: BTreeSet<String>,
    cut: u64,
    crashes: u64,
    batches_lost: u64,
    restarts: u64,
    duplicates_delivered: u64,
    seen: BTreeSet<u64>,
}

/// A partition must stand this long (several ping intervals) to be expected to cut.
const PARTITION_EFFECT_MS: u64 = 500;

impl FaultsTookEffect {
    pub fn expecting(_schedule: &FaultSchedule) -> Self {
        FaultsTookEffect::default()
    }

    fn running(&self, node: &str) -> bool {
        !self.killed.contains(node) && !self.paused.contains(node)
    }

    /// After a fault: a partition counts while one of its cut links has a running
    /// sender; the time it counted ends when none has.
    fn update_partition(&mut self, at_ms: u64) {
        let effective = self.links.iter().any(|(from, _)| self.running(from));
        match (effective, self.partition_since_ms) {
            (true, None) => self.partition_since_ms = Some(at_ms),
            (false, Some(_)) => self.partition_ends(at_ms),
            _ => {}
        }
    }

    fn partition_ends(&mut self, at_ms: u64) {
        if let Some(since) = self.partition_since_ms.take() {
            if at_ms.saturating_sub(since) >= PARTITION_EFFECT_MS {
                self.expect_cut = true;
            }
        }
    }
}

impl Invariant for FaultsTookEffect {
    fn name(&self) -> &'static str {
        "faults-took-effect"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        match observation {
            Observation::Sent { cut: true, .. } => self.cut += 1,
            Observation::Crashed { batches_lost, .. } => {
                self.crashes += 1;
                self.batches_lost += batches_lost;
            }
            Observation::Started {
                kind: StartKind::Restart,
                ..
            } => self.restarts += 1,
            Observation::Delivered { id, .. } => {
                self.duplicates_delivered += u64::from(!self.seen.insert(*id));
            }
            Observation::Fault { at_ms, fault } => {
                match fault {
                    Fault::Partition { groups } => {
                        for (i, left) in groups.iter().enumerate() {
                            for (j, right) in groups.iter().enumerate() {
                                for a in left.iter().filter(|_| i != j) {
                                    for b in right.iter().filter(|b| *b != a) {
                                        self.links.insert((a.clone(), b.clone()));
                                    }
                                }
                            }
                        }
                    }
                    Fault::PartitionOneWay { from, to } if from != to => {
                        self.links.insert((from.clone(), to.clone()));
                    }
                    Fault::Heal => self.links.clear(),
                    Fault::Kill { node } => {
                        // Only a running machine is expected to lose writes.
                        if self.running(node) {
                            self.expect_crash = true;
                        }
                        self.killed.insert(node.clone());
                    }
                    Fault::Pause { node } => {
                        self.paused.insert(node.clone());
                    }
                    Fault::Restart { node } => {
                        self.expect_crash = true;
                        self.expect_restart = true;
                        self.killed.remove(node);
                        self.paused.remove(node);
                    }
                    // A resume wakes a paused machine; a killed one stays dead.
                    Fault::Resume { node } => {
                        self.paused.remove(node);
                    }
                    _ => {}
                }
                self.update_partition(*at_ms);
            }
            _ => {}
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        self.partition_ends(world.now_ms);
        let detail = format!(
            "{} messages cut by partitions; {} crashes lost {} unsynced batches; {} restarts; {} duplicate deliveries",
            self.cut, self.crashes, self.batches_lost, self.restarts, self.duplicates_delivered
        );
        if self.expect_cut && self.cut == 0 {
            return Err(format!(
                "a partition stood with running senders but cut nothing: {detail}"
            ));
        }
        if self.expect_crash && (self.crashes == 0 || self.batches_lost == 0) {
            return Err(format!(
                "a crash was scheduled but lost no unsynced write: {detail}"
            ));
        }
        if self.expect_restart && self.restarts == 0 {
            return Err(format!(
                "a restart was scheduled but no actor restarted: {detail}"
            ));
        }
        Ok(detail)
    }
}

/// After the last fault (plus settling time), every machine hears every other again.
#[derive(Default)]
pub struct LivenessAfterHeal {
    heard: BTreeSet<(Address, Address)>,
    peers: BTreeSet<Address>,
}

/// Time allowed after the last fault for restarts and reconnection.
const SETTLE_MS: u64 = 2_000;

impl Invariant for LivenessAfterHeal {
    fn name(&self) -> &'static str {
        "liveness-after-heal"
    }
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String> {
        if let Observation::Delivered {
            at_ms,
            from,
            to,
            msg: Message::SelfTest(SelfTestMessage::Pong { .. }),
            ..
        } = observation
        {
            self.peers.insert((*from).clone());
            self.peers.insert((*to).clone());
            if *at_ms > world.last_fault_ms + SETTLE_MS {
                self.heard.insert(((*to).clone(), (*from).clone()));
            }
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        if world.duration_ms < world.last_fault_ms + 2 * SETTLE_MS {
            return Ok("not judged: the run ends too soon after the last fault".into());
        }
        let mut missing = Vec::new();
        for a in &self.peers {
            for b in &self.peers {
                if a != b && !self.heard.contains(&(a.clone(), b.clone())) {
                    missing.push(format!("{a} never heard {b}"));
                }
            }
        }
        if self.peers.is_empty() {
            return Err("no pong was ever delivered".into());
        }
        if !missing.is_empty() {
            return Err(format!("after the last fault: {}", missing.join(", ")));
        }
        Ok(format!(
            "all {} machines exchanged pongs after the last fault",
            self.peers.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `partitions-hold` fails when the network's view of a link disagrees with the
    /// schedule's (a cut link used, or a whole link dropped) and when a message sent
    /// across a cut is delivered; a heal makes the link whole again.
    #[test]
    fn partitions_hold_catches_a_network_that_ignores_a_partition() {
        let disks = BTreeMap::new();
        let world = World {
            disks: &disks,
            now_ms: 0,
            duration_ms: 1,
            last_fault_ms: 0,
        };
        let (a, b) = (Address::new("n1", KIND, 0), Address::new("n2", KIND, 0));
        let msg = Message::Report(keel_actors::message::Report::Api(
            keel_actors::drivers::api_workload::ApiReport::Unsure { client: 0 },
        ));
        let cut_one_way = Fault::PartitionOneWay {
            from: "n1".into(),
            to: "n2".into(),
        };
        let sent = |id: u64, cut: bool| Observation::Sent {
            id,
            at_ms: 0,
            from: &a,
            to: &b,
            msg: &msg,
            cut,
        };
        let mut check = PartitionsHold::default();
        let fault = Observation::Fault {
            at_ms: 0,
            fault: &cut_one_way,
        };
        assert!(check.observe(&fault, &world).is_ok());
        // The network kept a link the schedule cut.
        assert!(check.observe(&sent(1, false), &world).is_err());
        // Cut as scheduled, but then delivered.
        let mut check = PartitionsHold::default();
        check.observe(&fault, &world).unwrap();
        assert!(check.observe(&sent(2, true), &world).is_ok());
        let delivered = Observation::Delivered {
            id: 2,
            at_ms: 0,
            from: &a,
            to: &b,
            msg: &msg,
        };
        assert!(check.observe(&delivered, &world).is_err());
        // After a heal the link is whole: a cut there is the network's mistake.
        let mut check = PartitionsHold::default();
        check.observe(&fault, &world).unwrap();
        let heal = Observation::Fault {
            at_ms: 0,
            fault: &Fault::Heal,
        };
        check.observe(&heal, &world).unwrap();
        assert!(check.observe(&sent(3, false), &world).is_ok());
        assert!(check.observe(&sent(4, true), &world).is_err());
    }
}
