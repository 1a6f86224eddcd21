//! The lease scenario: a key held on a lease while the store's leader changes.
//!
//! Machines `s1..s3` host the store members, `c2` two workload clients (load for the
//! store invariants, one of them watching) and `c1` one lease client
//! ([`keel_actors::drivers::lease_workload`]) that grants a lease of [`TTL_SECONDS`],
//! puts `lease/1` on it, keeps it alive until half the run and then lets it expire.
//! The leader is killed once while the lease is kept alive and once after the
//! keep-alives stopped, before the lease's deadline at that leader.
//!
//! etcd's rules being judged: deadlines live on the leader only; a new leader extends
//! every lease by its full TTL (it cannot know how long its predecessor had counted),
//! so a leader change can make expiry later, never earlier; and an expired lease is
//! revoked through the log, taking its keys with it. Invariants, besides the store's:
//! * `lease-kept-alive` — no read finds the key gone before the send time of the last
//!   successful keep-alive (or of the grant) plus the TTL, no keep-alive succeeds on a
//!   lease whose key was already gone, and once gone the key never comes back;
//! * `lease-expires` — once keep-alives stop, the key is gone by the last successful
//!   keep-alive + 2×TTL (the old deadline, then a new leader's full extension) plus
//!   time for an election and for the revocation to be read.
//!
//! Both assume the store members' clocks run at the simulated rate (no clock skew):
//! a leader whose clock jumps ahead expires leases early, in keel as in etcd.

use super::store::{self, at, network, spec, timed};
use super::Setup;
use crate::faults::{Fault, FaultSchedule};
use crate::invariant::{Invariant, Observation, World};
use keel_actors::drivers::lease_workload::{self, LeaseReport, LeaseWorkloadConfig};
use keel_actors::message::{Report, StoreReport};
use keel_actors::Message;
use keel_engine::Address;
use std::collections::BTreeMap;

/// The lease client's TTL.
pub const TTL_SECONDS: i64 = 3;
/// Allowance for electing a new leader after a kill: an election timeout plus the
/// member's random withheld ticks (up to another timeout), and a split vote.
const ELECTION_MS: u64 = 3_000;
/// Allowance for the revocation to commit and for a poll to see it: the poll
/// interval plus a request timeout (a poll sent to the killed leader waits that long
/// before the client tries another member).
const SETTLE_MS: u64 = 3_000;

/// 3 members, 2 workload clients and the lease client; leader killed while the lease
/// is kept alive and again after keep-alives stopped.
pub fn lease(_seed: u64, d: u64) -> Setup {
    let keepalive_until_ms = at(d, 500);
    let mut machines = store::machines(3, 0, 2, 6);
    let endpoints: Vec<Address> = (1..=3).map(store::store_address).collect();
    let config = LeaseWorkloadConfig {
        client: 1,
        endpoints,
        ttl_seconds: TTL_SECONDS,
        keepalive_until_ms,
        poll_interval_ms: 500,
        retry_ms: 500,
        client_config: Default::default(),
    };
    let lease_client = (
        Address::new("c1", lease_workload::KIND, 1),
        spec(lease_workload::KIND, &config),
    );
    if let Some(c1) = machines.iter_mut().find(|m| m.name == "c1") {
        c1.actors.push(lease_client);
    }
    // The second kill lands half a TTL after keep-alives stop: the lease is still
    // alive at the leader that dies, so it is the next leader that must expire it.
    let second_kill_ms = keepalive_until_ms + TTL_SECONDS as u64 * 1000 / 2;
    Setup {
        machines,
        network: network(),
        faults: FaultSchedule::new(vec![
            timed(at(d, 200), Fault::KillStoreLeader),
            timed(at(d, 300), Fault::RestartAll),
            timed(second_kill_ms, Fault::KillStoreLeader),
            timed(at(d, 750), Fault::RestartAll),
        ]),
    }
}

/// The store's checkers plus the two lease checkers.
pub fn invariants(schedule: &FaultSchedule) -> Vec<Box<dyn Invariant + Send>> {
    let mut list = store::invariants(schedule);
    list.push(Box::new(LeaseKeptAlive::default()));
    list.push(Box::new(LeaseExpires::for_schedule(schedule)));
    list
}

/// What the checkers know of one lease client, in simulated ms since the start.
#[derive(Default)]
struct ClientLease {
    ttl_ms: u64,
    /// When each granted lease's grant request was first sent.
    grant_sent_ms: BTreeMap<i64, u64>,
    /// The lease the key was put on, and when that was acknowledged.
    held: Option<(i64, u64)>,
    /// The latest send time of a keep-alive the leader answered OK.
    last_ok_sent_ms: Option<u64>,
    keepalives_ok: u64,
    keepalives_failed: u64,
    lease_not_found: u64,
    stopped_ms: Option<u64>,
    present_polls: u64,
    gone_polls: u64,
    first_gone_ms: Option<u64>,
}

impl ClientLease {
    /// The earliest time the held lease may be gone: its grant or its last renewal,
    /// each counted from when the request was sent, plus the TTL.
    fn earliest_expiry_ms(&self) -> Option<u64> {
        let (lease, _) = self.held?;
        let granted = self.grant_sent_ms.get(&lease).copied().unwrap_or(0);
        Some(granted.max(self.last_ok_sent_ms.unwrap_or(0)) + self.ttl_ms)
    }
}

/// Folds the lease client's reports and the store's leader elections.
#[derive(Default)]
struct LeaseHistory {
    clients: BTreeMap<u64, ClientLease>,
    /// When each term's leader was elected.
    elections_ms: BTreeMap<u64, u64>,
}

impl LeaseHistory {
    /// Folds one observation; returns the client it concerned and the report.
    fn fold<'a>(&mut self, observation: &Observation<'a>) -> Option<(u64, &'a LeaseReport)> {
        let Observation::Emitted { at_ms, msg, .. } = observation else {
            return None;
        };
        let at_ms = *at_ms;
        let report = match msg {
            Message::Report(Report::Store(StoreReport::Leader { term, .. })) => {
                self.elections_ms.entry(*term).or_insert(at_ms);
                return None;
            }
            Message::Report(Report::Lease(report)) => report,
            _ => return None,
        };
        let (client, state) = match report {
            LeaseReport::Granted { client, .. }
            | LeaseReport::KeyPut { client, .. }
            | LeaseReport::KeepAliveOk { client, .. }
            | LeaseReport::KeepAliveFailed { client, .. }
            | LeaseReport::KeepAlivesStopped { client, .. }
            | LeaseReport::KeyPresent { client, .. }
            | LeaseReport::KeyGone { client, .. } => {
                (*client, self.clients.entry(*client).or_default())
            }
        };
        match report {
            LeaseReport::Granted {
                lease,
                ttl_seconds,
                request_age_ms,
                ..
            } => {
                state.ttl_ms = (*ttl_seconds).max(1) as u64 * 1000;
                state
                    .grant_sent_ms
                    .insert(*lease, at_ms.saturating_sub(*request_age_ms));
            }
            LeaseReport::KeyPut { lease, .. } => {
                if state.held.is_none() {
                    state.held = Some((*lease, at_ms));
                }
            }
            LeaseReport::KeepAliveOk { request_age_ms, .. } => {
                state.keepalives_ok += 1;
                let sent = at_ms.saturating_sub(*request_age_ms);
                state.last_ok_sent_ms = Some(state.last_ok_sent_ms.unwrap_or(0).max(sent));
            }
            LeaseReport::KeepAliveFailed { error, .. } => {
                state.keepalives_failed += 1;
                if error.contains("not found") {
                    state.lease_not_found += 1;
                }
            }
            LeaseReport::KeepAlivesStopped { .. } => {
                state.stopped_ms.get_or_insert(at_ms);
            }
            LeaseReport::KeyPresent { .. } => state.present_polls += 1,
            LeaseReport::KeyGone { .. } => {
                state.gone_polls += 1;
                state.first_gone_ms.get_or_insert(at_ms);
            }
        }
        Some((client, report))
    }

    fn elections_between(&self, from_ms: u64, to_ms: u64) -> usize {
        self.elections_ms
            .values()
            .filter(|t| **t > from_ms && **t <= to_ms)
            .count()
    }
}

/// While keep-alives succeed the key stays; it goes no earlier than the last
/// successful keep-alive's send time + TTL, and never comes back.
#[derive(Default)]
pub struct LeaseKeptAlive {
    history: LeaseHistory,
}

impl Invariant for LeaseKeptAlive {
    fn name(&self) -> &'static str {
        "lease-kept-alive"
    }

    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        let Some((client, report)) = self.history.fold(observation) else {
            return Ok(());
        };
        let state = &self.history.clients[&client];
        let key = lease_workload::lease_key(client);
        match report {
            LeaseReport::KeyGone {
                header_revision, ..
            } => {
                let Some(earliest) = state.earliest_expiry_ms() else {
                    return Err(format!(
                        "client {client} reported {key} gone (revision {header_revision}) before it was put"
                    ));
                };
                let gone = state.first_gone_ms.unwrap_or(0);
                if gone < earliest {
                    return Err(format!(
                        "{key} was gone at {gone} ms (revision {header_revision}), but its lease \
                         was renewed by a keep-alive sent at {} ms with TTL {} ms: it may not \
                         expire before {earliest} ms",
                        state.last_ok_sent_ms.unwrap_or(0),
                        state.ttl_ms
                    ));
                }
            }
            LeaseReport::KeepAliveOk { lease, .. } => {
                if let (Some(gone), Some(earliest)) =
                    (state.first_gone_ms, state.earliest_expiry_ms())
                {
                    if gone < earliest {
                        return Err(format!(
                            "lease {lease} was renewed by a keep-alive sent at {} ms, but {key} \
                             was already gone at {gone} ms",
                            state.last_ok_sent_ms.unwrap_or(0)
                        ));
                    }
                }
            }
            LeaseReport::KeyPresent {
                lease,
                header_revision,
                ..
            } => {
                if let Some(gone) = state.first_gone_ms {
                    return Err(format!(
                        "{key} was gone at {gone} ms but present again at revision {header_revision}"
                    ));
                }
                if let Some((held, _)) = state.held {
                    if *lease != held {
                        return Err(format!(
                            "{key} is attached to lease {lease}, not to lease {held} it was put on"
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _world: &World<'_>) -> Result<String, String> {
        if self.history.clients.is_empty() {
            return Err("no lease client reported anything".into());
        }
        let mut lines = Vec::new();
        for (client, state) in &self.history.clients {
            let Some((_, put_ms)) = state.held else {
                return Err(format!("client {client} never put its key on a lease"));
            };
            // Nothing to judge when the faults let no keep-alive or no read through (a
            // nemesis schedule can keep the store out of reach for the whole window);
            // the tests demand that the scenario's own schedule gives evidence.
            if state.keepalives_ok == 0 || state.present_polls == 0 {
                lines.push(format!(
                    "client {client}: not judged: {} keep-alives ok, {} reads found the key                      ({} keep-alives failed)",
                    state.keepalives_ok, state.present_polls, state.keepalives_failed
                ));
                continue;
            }
            let kept_until = state.stopped_ms.unwrap_or(u64::MAX);
            lines.push(format!(
                "client {client}: {} keep-alives ok ({} failed, {} \"lease not found\") across \
                 {} leader elections; key present in {} reads, never gone before the last \
                 renewal + TTL",
                state.keepalives_ok,
                state.keepalives_failed,
                state.lease_not_found,
                self.history.elections_between(put_ms, kept_until),
                state.present_polls,
            ));
        }
        Ok(lines.join("; "))
    }
}

/// Once keep-alives stop, the key is gone within last renewal + 2×TTL + an election
/// and settling time — or the last keep-alive sent plus a TTL and settling time (its
/// answer may have been lost, not its renewal). Faults can push that deadline out, as
/// etcd's semantics say: a new
/// leader renews every lease by its TTL when it takes office, so the deadline is at
/// least the last election before the key went plus a TTL and settling time; a heal
/// (or a resumed machine) may be what lets the revocation commit or the poll through,
/// so it is at least the last heal plus an election and settling time; and clocks the
/// schedule skews may run late by as much as the largest skew.
#[derive(Default)]
pub struct LeaseExpires {
    history: LeaseHistory,
    heals_ms: Vec<u64>,
    skew_allowance_ms: u64,
}

impl LeaseExpires {
    pub fn for_schedule(schedule: &FaultSchedule) -> Self {
        let heals_ms = schedule
            .faults
            .iter()
            .filter(|f| matches!(f.fault, Fault::Heal | Fault::Resume { .. }))
            .map(|f| f.at_ms)
            .collect();
        let skew_allowance_ms = schedule
            .faults
            .iter()
            .filter_map(|f| match f.fault {
                Fault::ClockSkew { offset_ms, .. } => Some(offset_ms.unsigned_abs()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        LeaseExpires {
            heals_ms,
            skew_allowance_ms,
            ..LeaseExpires::default()
        }
    }
}

impl Invariant for LeaseExpires {
    fn name(&self) -> &'static str {
        "lease-expires"
    }

    fn observe(&mut self, observation: &Observation<'_>, _world: &World<'_>) -> Result<(), String> {
        self.history.fold(observation);
        Ok(())
    }

    fn finish(&mut self, world: &World<'_>) -> Result<String, String> {
        if self.history.clients.is_empty() {
            return Err("no lease client reported anything".into());
        }
        let mut lines = Vec::new();
        for (client, state) in &self.history.clients {
            let key = lease_workload::lease_key(*client);
            let (Some(stopped), Some(earliest)) = (state.stopped_ms, state.earliest_expiry_ms())
            else {
                lines.push(format!(
                    "client {client}: not judged: keep-alives never stopped"
                ));
                continue;
            };
            // The old leader's deadline (earliest), then at worst a new leader elected
            // just before it, extending by a full TTL; later elections and heals push it
            // out (see the type's documentation).
            let until = state.first_gone_ms.unwrap_or(world.duration_ms);
            let within = |t: &u64| *t > stopped && *t <= until;
            let mut deadline = earliest + state.ttl_ms + ELECTION_MS + SETTLE_MS;
            // A keep-alive whose answer was lost (a bad network, a one-way cut from
            // the store to the client) renewed the lease all the same: the last one
            // sent, just before keep-alives stopped, may have renewed it on arrival.
            deadline = deadline.max(stopped + state.ttl_ms + SETTLE_MS);
            if let Some(election) = self
                .history
                .elections_ms
                .values()
                .filter(|t| within(t))
                .max()
            {
                deadline = deadline.max(election + state.ttl_ms + SETTLE_MS);
            }
            if let Some(heal) = self.heals_ms.iter().filter(|t| within(t)).max() {
                deadline = deadline.max(heal + ELECTION_MS + SETTLE_MS);
            }
            deadline += self.skew_allowance_ms;
            match state.first_gone_ms {
                Some(gone) if gone <= deadline => lines.push(format!(
                    "client {client}: {key} gone at {gone} ms, {} ms after keep-alives stopped, \
                     {} leader elections in between (earliest expiry {earliest} ms, deadline \
                     {deadline} ms)",
                    gone.saturating_sub(stopped),
                    self.history.elections_between(stopped, gone),
                )),
                Some(gone) => {
                    return Err(format!(
                        "{key} was gone only at {gone} ms; its lease should have expired by \
                         {deadline} ms (last renewal sent at {} ms, TTL {} ms)",
                        state.last_ok_sent_ms.unwrap_or(0),
                        state.ttl_ms
                    ))
                }
                None if world.duration_ms >= deadline => {
                    return Err(format!(
                        "{key} was still there at the end ({} ms); its lease should have \
                         expired by {deadline} ms (keep-alives stopped at {stopped} ms, last \
                         renewal sent at {} ms)",
                        world.duration_ms,
                        state.last_ok_sent_ms.unwrap_or(0)
                    ))
                }
                None => lines.push(format!(
                    "client {client}: not judged: the run ends before the expiry deadline \
                     {deadline} ms"
                )),
            }
        }
        Ok(lines.join("; "))
    }
}
