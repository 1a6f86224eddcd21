//! Store scenarios: a raft-replicated store under client load and faults.
//!
//! Machines `s1..sN` each host one store member; machines `c1`, `c2` host workload
//! clients (kept apart so killing a store machine never kills a client). Invariants:
//! * `linearizable` — the clients' history (ambiguous outcomes allowed) is linearizable,
//!   checked per key with [`crate::linearizability`];
//! * `one-leader-per-term` — no two members lead the same term;
//! * `applied-state-agrees` — members that applied the same log index hold the same
//!   state machine (identical applied prefixes);
//! * `watch-exactly-once` — a watching client sees strictly increasing revisions, and
//!   every acknowledged write on the watched prefix, up to the last revision it saw;
//! * `writes-resume` — after the last fault, writes succeed again;
//! * `quorum-loss-refuses-writes` — while a majority of the voters is down (crashed or
//!   paused, from what the run did) no write succeeds, and clients are told "no quorum".

use super::Setup;
use crate::faults::{Fault, FaultSchedule, TimedFault};
use crate::host::{Machine, NetworkConfig};
use crate::invariant::{Invariant, Observation, World};
use crate::linearizability::{check_history, CheckResult, KvOutput, Operation};
use keel_actors::drivers::store_workload::{
    KvOp, KvOutcome, WorkloadConfig, WorkloadReport, KEY_PREFIX,
};
use keel_actors::message::{Report, StoreReport};
use keel_actors::store::{StoreConfig, StoreMessage, StoreRequest};
use keel_actors::Message;
use keel_engine::{ActorSpec, Address, Control};
use std::collections::{BTreeMap, BTreeSet};

pub fn store_address(index: u64) -> Address {
    Address::new(format!("s{index}"), keel_actors::store::KIND, 0)
}

pub(crate) fn spec<T: serde::Serialize>(kind: &str, config: &T) -> ActorSpec {
    ActorSpec {
        kind: kind.into(),
        config_json: serde_json::to_string(config).expect("configuration serializes"),
    }
}

/// `members` store machines (ids 1..=members) plus `joiners` machines that start
/// empty and wait to be added, plus two client machines with `clients` workloads.
pub fn machines(members: u64, joiners: u64, clients: u64, keys: u32) -> Vec<Machine> {
    let initial: Vec<(u64, Address)> = (1..=members).map(|i| (i, store_address(i))).collect();
    let mut machines = Vec::new();
    for i in 1..=members + joiners {
        let mut config = StoreConfig::new(i, initial.clone());
        if i > members {
            config.join = true;
            config.initial_members.push((i, store_address(i)));
        }
        // Small snapshots interval so that lagging and new members catch up by snapshot.
        config.snapshot_every_entries = 300;
        config.snapshot_catch_up_entries = 100;
        // The state is written every 50 entries: restarts re-apply up to that many.
        config.state_write_every_entries = 50;
        // Small chunks: snapshots sent to followers travel in several.
        config.snapshot_chunk_bytes = 1024;
        config.applied_report_every_entries = 64;
        machines.push(Machine {
            name: format!("s{i}"),
            actors: vec![(store_address(i), spec(keel_actors::store::KIND, &config))],
        });
    }
    let endpoints: Vec<Address> = (1..=members).map(store_address).collect();
    for machine in 1..=2u64 {
        let mut actors = Vec::new();
        for client in (1..=clients).filter(|c| (c % 2) + 1 == machine) {
            let config = WorkloadConfig {
                client,
                endpoints: endpoints.clone(),
                keys,
                think_ms: 20,
                ops_max: 0,
                watch: client == 1,
                client_config: Default::default(),
            };
            actors.push((
                Address::new(
                    format!("c{machine}"),
                    keel_actors::drivers::store_workload::KIND,
                    client as u32,
                ),
                spec(keel_actors::drivers::store_workload::KIND, &config),
            ));
        }
        machines.push(Machine {
            name: format!("c{machine}"),
            actors,
        });
    }
    machines
}

/// The machines that hold the workload's clients (spared by the nemesis).
pub const CLIENT_MACHINES: &[&str] = &["c1", "c2"];

pub(crate) fn network() -> NetworkConfig {
    NetworkConfig {
        latency_min_ms: 1,
        latency_max_ms: 10,
        loss_rate: 0.005,
        duplicate_rate: 0.005,
        ..NetworkConfig::default()
    }
}

pub(crate) fn at(duration_ms: u64, per_mille: u64) -> u64 {
    duration_ms * per_mille / 1000
}

pub(crate) fn timed(at_ms: u64, fault: Fault) -> TimedFault {
    TimedFault { at_ms, fault }
}

fn node(name: &str) -> String {
    name.to_string()
}

/// The default: 3 members, leader killed, minority partition, restart, loss.
pub fn faulty(_seed: u64, d: u64) -> Setup {
    Setup {
        machines: machines(3, 0, 4, 6),
        network: network(),
        faults: FaultSchedule::new(vec![
            timed(at(d, 150), Fault::KillStoreLeader),
            timed(at(d, 300), Fault::RestartAll),
            timed(
                at(d, 400),
                Fault::Partition {
                    groups: vec![
                        vec![node("s1")],
                        vec![node("s2"), node("s3"), node("c1"), node("c2")],
                    ],
                },
            ),
            timed(at(d, 520), Fault::Heal),
            timed(
                at(d, 550),
                Fault::Network {
                    latency_min_ms: 1,
                    latency_max_ms: 40,
                    loss_rate: 0.05,
                    duplicate_rate: 0.02,
                },
            ),
            timed(at(d, 600), Fault::KillStoreLeader),
            timed(at(d, 680), Fault::RestartAll),
            timed(
                at(d, 700),
                Fault::Network {
                    latency_min_ms: 1,
                    latency_max_ms: 10,
                    loss_rate: 0.005,
                    duplicate_rate: 0.005,
                },
            ),
        ]),
    }
}

/// Two of three members down: writes are refused with "no quorum", then service resumes.
pub fn quorum_loss(_seed: u64, d: u64) -> Setup {
    Setup {
        machines: machines(3, 0, 4, 6),
        network: network(),
        faults: FaultSchedule::new(vec![
            timed(at(d, 200), Fault::Kill { node: node("s1") }),
            timed(at(d, 200), Fault::Kill { node: node("s2") }),
            timed(at(d, 500), Fault::Restart { node: node("s2") }),
            timed(at(d, 650), Fault::Restart { node: node("s1") }),
        ]),
    }
}

/// Leaders killed, paused and isolated over and over (5 members).
pub fn leader_churn(_seed: u64, d: u64) -> Setup {
    let mut faults = Vec::new();
    for round in 0..4u64 {
        let base = 100 + round * 150;
        faults.push(timed(at(d, base), Fault::KillStoreLeader));
        faults.push(timed(at(d, base + 60), Fault::RestartAll));
    }
    faults.push(timed(
        at(d, 720),
        Fault::Partition {
            groups: vec![
                vec![node("s1"), node("s2")],
                vec![node("s3"), node("s4"), node("s5"), node("c1"), node("c2")],
            ],
        },
    ));
    faults.push(timed(at(d, 780), Fault::Heal));
    Setup {
        machines: machines(5, 0, 4, 6),
        network: network(),
        faults: FaultSchedule::new(faults),
    }
}

/// A member is added under load (as a learner, promoted once caught up) and another
/// removed.
pub fn membership(_seed: u64, d: u64) -> Setup {
    let inject = |to: u64, request: StoreRequest| Fault::Inject {
        to: store_address(to),
        msg: Box::new(Message::Store(StoreMessage::Request {
            id: 1,
            session: 0,
            request,
        })),
    };
    let mut faults = Vec::new();
    // An operator retries an add that got no answer (answers go nowhere here, so it
    // asks three times; once member 4 exists, asking again is refused harmlessly).
    // Asked once, the add was lost in 4 of 500 seeds (sent while the leader changed).
    for when in [200, 225, 250] {
        for target in 1..=3 {
            faults.push(timed(
                at(d, when),
                inject(
                    target,
                    StoreRequest::MemberAdd {
                        address: store_address(4),
                        learner: false,
                    },
                ),
            ));
        }
    }
    // An operator retries: a removal refused while the promotion of member 4 is still
    // in flight ("another membership change is in progress") is asked again.
    for when in [550, 575, 600] {
        for target in 1..=4 {
            faults.push(timed(
                at(d, when),
                inject(target, StoreRequest::MemberRemove { id: 2 }),
            ));
        }
    }
    faults.push(timed(at(d, 620), Fault::Kill { node: node("s2") }));
    faults.push(timed(at(d, 700), Fault::KillStoreLeader));
    faults.push(timed(at(d, 760), Fault::Restart { node: node("s1") }));
    faults.push(timed(at(d, 760), Fault::Restart { node: node("s3") }));
    faults.push(timed(at(d, 760), Fault::Restart { node: node("s4") }));
    Setup {
        machines: machines(3, 1, 4, 6),
        network: network(),
        faults: FaultSchedule::new(faults),
    }
}

/// The store scenarios' checkers, for a store founded by members 1..=3.
pub fn invariants(schedule: &FaultSchedule) -> Vec<Box<dyn Invariant + Send>> {
    invariants_for(schedule, 3)
}

/// The checkers for a store founded by members 1..=5.
pub fn invariants_five(schedule: &FaultSchedule) -> Vec<Box<dyn Invariant + Send>> {
    invariants_for(schedule, 5)
}

fn invariants_for(schedule: &FaultSchedule, founders: u64) -> Vec<Box<dyn Invariant + Send>> {
    let mut list: Vec<Box<dyn Invariant + Send>> = vec![
        Box::new(Linearizable::default()),
        Box::new(OneLeaderPerTerm::default()),
        Box::new(AppliedStateAgrees::default()),
        Box::new(WatchExactlyOnce::default()),
        Box::new(WritesResume::default()),
        Box::new(QuorumLossRefusesWrites::new(founders)),
    ];
    let adds = schedule.faults.iter().any(|f| {
        matches!(&f.fault, Fault::Inject { msg, .. }
            if matches!(**msg, Message::Store(StoreMessage::Request { request: StoreRequest::MemberAdd { .. }, .. })))
    });
    if adds {
        list.push(Box::new(MembershipChanged::default()));
    }
    list
}

fn workload<'a>(observation: &Observation<'a>) -> Option<(u64, &'a WorkloadReport)> {
    match observation {
        Observation::Emitted {
            at_ns,
            msg: Message::Report(Report::Workload(report)),
            ..
        } => Some((*at_ns, report)),
        _ => None,
    }
}

/// Per-key linearizability of the workload clients' history.
#[derive(Default)]
pub struct Linearizable {
    calls: BTreeMap<(u64, u64), (KvOp, u64)>,
    done: Vec<Operation>,
    failed: u64,
    unknown: u64,
}

impl Invariant for Linearizable {
    fn name(&self) -> &'static str {
        "linearizable"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        match workload(observation) {
            Some((at_ns, WorkloadReport::Call { client, op_id, op })) => {
                self.calls.insert((*client, *op_id), (op.clone(), at_ns));
            }
            Some((
                at_ns,
                WorkloadReport::Return {
                    client,
                    op_id,
                    outcome,
                },
            )) => {
                let Some((op, call_ns)) = self.calls.remove(&(*client, *op_id)) else {
                    return Ok(());
                };
                let (output, return_ns) = match outcome {
                    KvOutcome::Get { value } => (
                        KvOutput::Get {
                            value: value.clone(),
                        },
                        Some(at_ns),
                    ),
                    KvOutcome::Put { .. } => (KvOutput::Put, Some(at_ns)),
                    KvOutcome::Delete { existed, .. } => {
                        (KvOutput::Delete { existed: *existed }, Some(at_ns))
                    }
                    KvOutcome::Cas { succeeded, .. } => (
                        KvOutput::Cas {
                            succeeded: *succeeded,
                        },
                        Some(at_ns),
                    ),
                    KvOutcome::Failed { .. } => {
                        self.failed += 1;
                        return Ok(());
                    }
                    KvOutcome::Unknown { .. } => {
                        self.unknown += 1;
                        (KvOutput::Unknown, None)
                    }
                };
                self.done.push(Operation {
                    client: *client,
                    input: op.clone(),
                    call_ns,
                    return_ns,
                    output,
                });
            }
            _ => {}
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        // Operations still in flight at the end may or may not have happened.
        let mut history = std::mem::take(&mut self.done);
        for ((client, _), (op, call_ns)) in std::mem::take(&mut self.calls) {
            history.push(Operation {
                client,
                input: op.clone(),
                call_ns,
                return_ns: None,
                output: KvOutput::Unknown,
            });
        }
        let completed = history.iter().filter(|o| o.return_ns.is_some()).count();
        if completed == 0 {
            if world.duration_ms < 10_000 {
                return Ok("not judged: no operation completed in this short run".into());
            }
            return Err("no operation completed".into());
        }
        if let Ok(key) = std::env::var("KEEL_DEBUG_KEY") {
            let mut ops: Vec<&Operation> =
                history.iter().filter(|o| o.input.key() == key).collect();
            ops.sort_by_key(|o| o.call_ns);
            for o in ops {
                eprintln!(
                    "{:>12} {:>12?} c{} {:?} -> {:?}",
                    o.call_ns, o.return_ns, o.client, o.input, o.output
                );
            }
        }
        match check_history(&history, 2_000_000) {
            CheckResult::Ok => Ok(format!(
                "{completed} operations linearizable ({} ambiguous, {} refused)",
                self.unknown, self.failed
            )),
            CheckResult::Illegal { key, detail } => {
                Err(format!("key {key} is not linearizable: {detail}"))
            }
            CheckResult::Unknown { key, reason } => {
                Err(format!("could not decide key {key}: {reason}"))
            }
        }
    }
}

#[derive(Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, u64>,
}

impl Invariant for OneLeaderPerTerm {
    fn name(&self) -> &'static str {
        "one-leader-per-term"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        if let Observation::Emitted {
            msg: Message::Report(Report::Store(StoreReport::Leader { term, id })),
            ..
        } = observation
        {
            if let Some(other) = self.leaders.insert(*term, *id) {
                if other != *id {
                    return Err(format!("members {other} and {id} both led term {term}"));
                }
            }
        }
        Ok(())
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        if self.leaders.is_empty() {
            return Err("no leader was ever elected".into());
        }
        Ok(format!(
            "{} terms with a leader, each with exactly one",
            self.leaders.len()
        ))
    }
}

#[derive(Default)]
pub struct AppliedStateAgrees {
    digests: BTreeMap<u64, (u64, i64, u64)>,
    checks: u64,
}

impl Invariant for AppliedStateAgrees {
    fn name(&self) -> &'static str {
        "applied-state-agrees"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        match observation {
            Observation::Emitted {
                msg:
                    Message::Report(Report::Store(StoreReport::Applied {
                        id,
                        index,
                        revision,
                        digest,
                    })),
                ..
            } => {
                match self.digests.get(index) {
                    Some((first, first_revision, first_digest)) => {
                        self.checks += 1;
                        if first_digest != digest || first_revision != revision {
                            return Err(format!(
                                "members {first} and {id} applied index {index} to different states \
                                 (revisions {first_revision} and {revision})"
                            ));
                        }
                    }
                    None => {
                        self.digests.insert(*index, (*id, *revision, *digest));
                    }
                }
                Ok(())
            }
            Observation::Control {
                control: Control::Fatal { reason },
                actor,
                ..
            } => Err(format!("{actor} stopped: {reason}")),
            _ => Ok(()),
        }
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        Ok(format!(
            "{} applied indexes compared across members, {} comparisons, all equal",
            self.digests.len(),
            self.checks
        ))
    }
}

/// The watching client sees every acknowledged write exactly once, in order.
#[derive(Default)]
pub struct WatchExactlyOnce {
    seen: BTreeMap<u64, Vec<i64>>,
    ended: BTreeSet<u64>,
    acknowledged: BTreeSet<i64>,
    first_acknowledged_ms: Option<u64>,
}

/// How long a watch may take to deliver its first event (elections, re-creation).
const WATCH_GRACE_MS: u64 = 8_000;

impl Invariant for WatchExactlyOnce {
    fn name(&self) -> &'static str {
        "watch-exactly-once"
    }
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String> {
        match workload(observation) {
            Some((
                _,
                WorkloadReport::WatchEvent {
                    client,
                    revision,
                    key,
                    ..
                },
            )) => {
                if !key.starts_with(KEY_PREFIX) {
                    return Err(format!("watch on {KEY_PREFIX} delivered key {key}"));
                }
                let seen = self.seen.entry(*client).or_default();
                if let Some(last) = seen.last() {
                    if revision <= last {
                        return Err(format!(
                            "client {client} saw revision {revision} after {last}"
                        ));
                    }
                }
                seen.push(*revision);
            }
            Some((_, WorkloadReport::WatchEnded { client, .. })) => {
                self.ended.insert(*client);
            }
            Some((
                _,
                WorkloadReport::Return {
                    outcome:
                        KvOutcome::Put { revision }
                        | KvOutcome::Delete {
                            existed: true,
                            revision,
                        }
                        | KvOutcome::Cas {
                            succeeded: true,
                            revision,
                        },
                    ..
                },
            )) => {
                self.acknowledged.insert(*revision);
                self.first_acknowledged_ms.get_or_insert(world.now_ms);
            }
            _ => {}
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        let mut total = 0;
        for (client, seen) in &self.seen {
            total += seen.len();
            let Some(last) = seen.last() else { continue };
            let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
            let missing: Vec<i64> = self
                .acknowledged
                .iter()
                .filter(|r| *r <= last && !seen_set.contains(r))
                .copied()
                .take(5)
                .collect();
            if !missing.is_empty() && !self.ended.contains(client) {
                return Err(format!(
                    "client {client}'s watch missed acknowledged revisions {missing:?}"
                ));
            }
        }
        if total == 0 {
            // A watch that had several seconds after the first acknowledged write and
            // still delivered nothing is broken; a very short run proves nothing.
            return match self.first_acknowledged_ms {
                Some(first) if world.now_ms > first + WATCH_GRACE_MS => Err(format!(
                    "the watch delivered nothing although writes were acknowledged from {first} ms"
                )),
                _ => Ok("not judged: no acknowledged write early enough in this short run".into()),
            };
        }
        Ok(format!(
            "{total} watch events, strictly increasing, none of {} acknowledged writes missed",
            self.acknowledged.len()
        ))
    }
}

/// Writes succeed again once the faults are over.
#[derive(Default)]
pub struct WritesResume {
    after_faults: u64,
    total: u64,
}

/// Time allowed after the last fault for elections and catch-up.
const SETTLE_MS: u64 = 3_000;

impl Invariant for WritesResume {
    fn name(&self) -> &'static str {
        "writes-resume"
    }
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String> {
        if let Some((_, WorkloadReport::Return { outcome, .. })) = workload(observation) {
            if matches!(
                outcome,
                KvOutcome::Put { .. } | KvOutcome::Cas { .. } | KvOutcome::Delete { .. }
            ) {
                self.total += 1;
                if world.now_ms > world.last_fault_ms + SETTLE_MS {
                    self.after_faults += 1;
                }
            }
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        if world.duration_ms < world.last_fault_ms + 2 * SETTLE_MS {
            return Ok(format!(
                "{} writes; not judged: the run ends too soon after the last fault",
                self.total
            ));
        }
        if self.after_faults == 0 {
            return Err(format!(
                "no write succeeded after the last fault ({} before)",
                self.total
            ));
        }
        Ok(format!(
            "{} writes succeeded, {} after the last fault",
            self.total, self.after_faults
        ))
    }
}

/// While a majority of the voters is down (crashed, or paused), no write called in that
/// time succeeds, and when that lasts, clients hear "no quorum". Who is down comes from what the run did —
/// crashes (a kill, the leader's kill), restarts (one or all), pauses and resumes — and
/// the voters from the members' own membership reports, so every way of losing a
/// quorum is judged, whoever scheduled it.
pub struct QuorumLossRefusesWrites {
    /// The latest voter set any member reported (by log index), founders at first.
    voters: (u64, BTreeSet<u64>),
    crashed: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    /// Links cut by partitions (from, to), by machine name, until a heal.
    cut: BTreeSet<(String, String)>,
    /// The machines the workload clients run on (from their calls).
    clients: BTreeSet<String>,
    /// Since when a majority has been down, if it is.
    lost_since: Option<u64>,
    /// The longest loss so far, in ms.
    longest_loss_ms: u64,
    /// Since when, within a loss, some running member could answer a client, if one can.
    answerable_since: Option<u64>,
    /// The longest such stretch, in ms: only during it can anyone say "no quorum".
    longest_answerable_ms: u64,
    losses: u64,
    no_quorum_errors: u64,
    refused: u64,
    /// When each operation in flight was called, by (client, op id).
    called_ms: BTreeMap<(u64, u64), u64>,
}

/// A loss of quorum shorter than this is not required to produce "no quorum" answers.
const NO_QUORUM_JUDGED_AFTER_MS: u64 = 6_000;

/// Responses already on the wire when the majority went down may still arrive.
const IN_FLIGHT_MARGIN_MS: u64 = 200;

/// The member id of a store machine `sN`.
fn member_of(node: &str) -> Option<u64> {
    node.strip_prefix('s')?.parse().ok()
}

impl QuorumLossRefusesWrites {
    pub fn new(founders: u64) -> Self {
        QuorumLossRefusesWrites {
            voters: (0, (1..=founders).collect()),
            crashed: BTreeSet::new(),
            paused: BTreeSet::new(),
            cut: BTreeSet::new(),
            clients: BTreeSet::new(),
            lost_since: None,
            longest_loss_ms: 0,
            answerable_since: None,
            longest_answerable_ms: 0,
            losses: 0,
            no_quorum_errors: 0,
            refused: 0,
            called_ms: BTreeMap::new(),
        }
    }

    fn majority_down(&self) -> bool {
        let voters = &self.voters.1;
        let down = voters
            .iter()
            .filter(|v| self.crashed.contains(v) || self.paused.contains(v))
            .count();
        voters.len() - down < voters.len() / 2 + 1
    }

    /// Whether some running voter shares a working link, both ways, with a workload
    /// client: only then can a client hear "no quorum" from anyone.
    fn answerable(&self) -> bool {
        let members = self
            .voters
            .1
            .iter()
            .filter(|m| !self.crashed.contains(m) && !self.paused.contains(m));
        let linked = |a: &String, b: &String| {
            !self.cut.contains(&(a.clone(), b.clone()))
                && !self.cut.contains(&(b.clone(), a.clone()))
        };
        members
            .map(|m| format!("s{m}"))
            .any(|m| self.clients.iter().any(|c| linked(&m, c)))
    }

    /// Updates who is down from one observation.
    fn track(&mut self, observation: &Observation<'_>) {
        if let Some((_, WorkloadReport::Call { .. })) = workload(observation) {
            if let Observation::Emitted { actor, .. } = observation {
                self.clients.insert(actor.node.as_str().to_string());
            }
        }
        match observation {
            Observation::Crashed { node, .. } => {
                if let Some(id) = member_of(node.as_str()) {
                    self.crashed.insert(id);
                }
            }
            Observation::Started { actor, .. } if actor.component == keel_actors::store::KIND => {
                // A restarted machine is a new incarnation: it runs even if the old one
                // had been paused (madsim's restart ends a pause).
                if let Some(id) = member_of(actor.node.as_str()) {
                    self.crashed.remove(&id);
                    self.paused.remove(&id);
                }
            }
            Observation::Fault { fault, .. } => match fault {
                Fault::Pause { node } => {
                    if let Some(id) = member_of(node) {
                        self.paused.insert(id);
                    }
                }
                Fault::Resume { node } => {
                    if let Some(id) = member_of(node) {
                        self.paused.remove(&id);
                    }
                }
                Fault::Partition { .. } | Fault::PartitionOneWay { .. } => {
                    self.cut.extend(fault.cut_links());
                }
                Fault::Heal => self.cut.clear(),
                _ => {}
            },
            Observation::Emitted {
                msg: Message::Report(Report::Store(StoreReport::Members { index, voters, .. })),
                ..
            } if *index >= self.voters.0 => {
                self.voters = (*index, voters.iter().copied().collect());
            }
            _ => {}
        }
    }
}

impl Invariant for QuorumLossRefusesWrites {
    fn name(&self) -> &'static str {
        "quorum-loss-refuses-writes"
    }
    fn observe(&mut self, observation: &Observation<'_>, world: &World<'_>) -> Result<(), String> {
        self.track(observation);
        match (self.lost_since, self.majority_down()) {
            (None, true) => {
                self.lost_since = Some(world.now_ms);
                self.losses += 1;
            }
            (Some(since), false) => {
                self.longest_loss_ms = self.longest_loss_ms.max(world.now_ms - since);
                self.lost_since = None;
            }
            _ => {}
        }
        match (
            self.answerable_since,
            self.lost_since.is_some() && self.answerable(),
        ) {
            (None, true) => self.answerable_since = Some(world.now_ms),
            (Some(since), false) => {
                self.longest_answerable_ms = self.longest_answerable_ms.max(world.now_ms - since);
                self.answerable_since = None;
            }
            _ => {}
        }
        let report = workload(observation).map(|(_, report)| report);
        if let Some(WorkloadReport::Call { client, op_id, .. }) = report {
            self.called_ms.insert((*client, *op_id), world.now_ms);
        }
        let called_ms = match report {
            Some(WorkloadReport::Return { client, op_id, .. }) => {
                self.called_ms.remove(&(*client, *op_id))
            }
            _ => None,
        };
        let Some(since) = self.lost_since else {
            return Ok(());
        };
        // Judged: operations called once the majority was down (a write called before
        // may have committed before, and its answer — or a duplicate's remembered one —
        // can arrive later).
        if called_ms.is_none_or(|called| called <= since + IN_FLIGHT_MARGIN_MS) {
            return Ok(());
        }
        if let Some(WorkloadReport::Return {
            client,
            op_id,
            outcome,
        }) = report
        {
            match outcome {
                KvOutcome::Put { .. }
                | KvOutcome::Delete { existed: true, .. }
                | KvOutcome::Cas {
                    succeeded: true, ..
                } => {
                    return Err(format!(
                        "client {client} op {op_id}, called at {} ms, wrote successfully at {} ms with a majority of voters {:?} down since {since} ms (crashed {:?}, paused {:?})",
                        called_ms.unwrap_or(0), world.now_ms, self.voters.1, self.crashed, self.paused
                    ));
                }
                KvOutcome::Failed { error } | KvOutcome::Unknown { error } => {
                    self.refused += 1;
                    if error.contains("no quorum") {
                        self.no_quorum_errors += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        if let Some(since) = self.lost_since {
            self.longest_loss_ms = self.longest_loss_ms.max(world.now_ms - since);
        }
        if let Some(since) = self.answerable_since {
            self.longest_answerable_ms = self.longest_answerable_ms.max(world.now_ms - since);
        }
        if self.losses == 0 {
            return Ok("the majority was never down".into());
        }
        // Members only call it "no quorum" once they have missed their peers for an
        // election timeout (and a client waits out its own timeout first): a short loss
        // of quorum can end before anyone could say so. Judge that part only when the
        // majority stayed down long enough while some running member could answer a
        // client (with the rest paused, dead or cut off from the clients, nobody can).
        if self.no_quorum_errors == 0 && self.longest_answerable_ms >= NO_QUORUM_JUDGED_AFTER_MS {
            return Err(format!(
                "{} operations failed during {} quorum losses (longest {} ms, {} ms of it with a member reachable by clients) but none said \"no quorum\"",
                self.refused, self.losses, self.longest_loss_ms, self.longest_answerable_ms
            ));
        }
        Ok(format!(
            "no write succeeded in {} quorum losses (longest {} ms, {} ms with a member reachable by clients); {} refusals, {} said \"no quorum\"",
            self.losses,
            self.longest_loss_ms,
            self.longest_answerable_ms,
            self.refused,
            self.no_quorum_errors
        ))
    }
}

/// The membership scenario's changes happened: member 4 joined as a learner, was
/// promoted to voter, and member 2 was removed; every member agrees at each index.
#[derive(Default)]
pub struct MembershipChanged {
    by_index: BTreeMap<u64, (Vec<u64>, Vec<u64>)>,
    four_was_learner: bool,
    latest: Option<(u64, Vec<u64>, Vec<u64>)>,
}

impl Invariant for MembershipChanged {
    fn name(&self) -> &'static str {
        "membership-changed"
    }
    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        if let Observation::Emitted {
            msg:
                Message::Report(Report::Store(StoreReport::Members {
                    id,
                    index,
                    voters,
                    learners,
                })),
            ..
        } = observation
        {
            if let Some((v, l)) = self.by_index.get(index) {
                if v != voters || l != learners {
                    return Err(format!(
                        "member {id} disagrees about the membership at index {index}"
                    ));
                }
            } else {
                self.by_index
                    .insert(*index, (voters.clone(), learners.clone()));
            }
            if learners.contains(&4) {
                self.four_was_learner = true;
            }
            if self.latest.as_ref().is_none_or(|(i, _, _)| index > i) {
                self.latest = Some((*index, voters.clone(), learners.clone()));
            }
        }
        Ok(())
    }
    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        let Some((index, voters, learners)) = &self.latest else {
            return Err("no membership change was applied".into());
        };
        if !self.four_was_learner || !voters.contains(&4) || voters.contains(&2) {
            return Err(format!(
                "expected 4 added as learner then promoted and 2 removed; at index {index}: voters {voters:?}, learners {learners:?}"
            ));
        }
        Ok(format!(
            "member 4 joined as learner and was promoted, member 2 removed; voters now {voters:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::NodeId;

    /// `quorum-loss-refuses-writes` sees every way a majority goes down — the leader's
    /// kill and a plain kill, or pauses — and fails on a write acknowledged then; a
    /// restart or resume ends the loss. (The schedule-based window it replaces saw only
    /// plain kills: the leader-kill case below passed it.)
    #[test]
    fn quorum_loss_is_judged_from_what_the_run_did() {
        let disks = BTreeMap::new();
        let world = |now_ms| World {
            disks: &disks,
            now_ms,
            duration_ms: 30_000,
            last_fault_ms: 0,
        };
        let (s1, s2) = (NodeId::new("s1"), NodeId::new("s2"));
        let crashed = |node| Observation::Crashed {
            at_ms: 0,
            node,
            batches_lost: 0,
        };
        let client = Address::new("c1", "store-workload", 0);
        let write = Message::Report(Report::Workload(WorkloadReport::Return {
            client: 0,
            op_id: 1,
            outcome: KvOutcome::Put { revision: 9 },
        }));
        let acked = Observation::Emitted {
            at_ms: 0,
            at_ns: 0,
            actor: &client,
            msg: &write,
        };
        let call = Message::Report(Report::Workload(WorkloadReport::Call {
            client: 0,
            op_id: 1,
            op: KvOp::Put {
                key: "k".into(),
                value: "v".into(),
            },
        }));
        let called = Observation::Emitted {
            at_ms: 0,
            at_ns: 0,
            actor: &client,
            msg: &call,
        };
        // The leader (s1) killed by KillStoreLeader, then s2 killed.
        let mut check = QuorumLossRefusesWrites::new(3);
        check.observe(&crashed(&s1), &world(1_000)).unwrap();
        check.observe(&crashed(&s2), &world(1_100)).unwrap();
        check.observe(&called, &world(1_500)).unwrap();
        assert!(check.observe(&acked, &world(2_000)).is_err());
        // A write called before the loss may have committed before it: its answer (or
        // a duplicate's remembered one) may arrive late.
        let mut check = QuorumLossRefusesWrites::new(3);
        check.observe(&called, &world(900)).unwrap();
        check.observe(&crashed(&s1), &world(1_000)).unwrap();
        check.observe(&crashed(&s2), &world(1_100)).unwrap();
        check.observe(&acked, &world(2_000)).unwrap();
        // After s2 restarts, writes may succeed again.
        let mut check = QuorumLossRefusesWrites::new(3);
        check.observe(&crashed(&s1), &world(1_000)).unwrap();
        check.observe(&crashed(&s2), &world(1_100)).unwrap();
        let s2_store = store_address(2);
        let started = Observation::Started {
            at_ms: 1_500,
            actor: &s2_store,
            kind: keel_engine::StartKind::Restart,
        };
        check.observe(&started, &world(1_500)).unwrap();
        check.observe(&called, &world(1_600)).unwrap();
        check.observe(&acked, &world(2_000)).unwrap();
        // Two of three paused.
        let mut check = QuorumLossRefusesWrites::new(3);
        let pauses = [
            Fault::Pause { node: "s2".into() },
            Fault::Pause { node: "s3".into() },
        ];
        for fault in &pauses {
            let observed = Observation::Fault { at_ms: 0, fault };
            check.observe(&observed, &world(1_000)).unwrap();
        }
        check.observe(&called, &world(1_500)).unwrap();
        assert!(check.observe(&acked, &world(2_000)).is_err());
        // One of five down is no loss.
        let mut check = QuorumLossRefusesWrites::new(5);
        check.observe(&crashed(&s1), &world(1_000)).unwrap();
        check.observe(&crashed(&s2), &world(1_000)).unwrap();
        check.observe(&called, &world(1_500)).unwrap();
        check.observe(&acked, &world(2_000)).unwrap();
    }

    /// A long loss of quorum must produce "no quorum" answers — but only if some running
    /// member could talk to a client. The schedule proptest drew (store seed 0): s1
    /// paused, s2 cut off from everyone, s3 killed; nobody can answer for 7 s.
    #[test]
    fn no_quorum_is_demanded_only_from_a_member_clients_can_reach() {
        let disks = BTreeMap::new();
        let world = |now_ms| World {
            disks: &disks,
            now_ms,
            duration_ms: 30_000,
            last_fault_ms: 0,
        };
        let s3 = NodeId::new("s3");
        let client = Address::new("c1", "store-workload", 0);
        let call = Message::Report(Report::Workload(WorkloadReport::Call {
            client: 0,
            op_id: 1,
            op: KvOp::Get { key: "k".into() },
        }));
        let called = Observation::Emitted {
            at_ms: 0,
            at_ns: 0,
            actor: &client,
            msg: &call,
        };
        let pause = Fault::Pause { node: "s1".into() };
        let partition = Fault::Partition {
            groups: vec![
                vec!["s2".into()],
                vec!["s1".into(), "s3".into(), "c1".into(), "c2".into()],
            ],
        };
        let run = |cut_off_s2: bool| {
            let mut check = QuorumLossRefusesWrites::new(3);
            check.observe(&called, &world(100)).unwrap();
            let fault = |fault| Observation::Fault { at_ms: 0, fault };
            check.observe(&fault(&pause), &world(154)).unwrap();
            if cut_off_s2 {
                check.observe(&fault(&partition), &world(1_644)).unwrap();
            }
            let killed = Observation::Crashed {
                at_ms: 4_733,
                node: &s3,
                batches_lost: 0,
            };
            check.observe(&killed, &world(4_733)).unwrap();
            check.observe(&fault(&Fault::Heal), &world(12_000)).unwrap();
            check.finish(&world(12_000))
        };
        // s2 running and reachable for 7 s with nobody saying "no quorum": a failure.
        assert!(run(false).is_err());
        // s2 cut off from the clients the whole time: nobody could say it.
        run(true).unwrap();
    }
}
