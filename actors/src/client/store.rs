//! The store's client library, embedded in any actor that talks to the store.
//!
//! A pure state machine like the actors that use it: the caller hands it requests,
//! responses, watch messages and ticks, and forwards the messages it returns.
//!
//! What it does for the caller:
//! * finds the leader: writes go to the last known leader, `NotLeader` answers carry
//!   the leader's address and the request follows the redirect;
//! * retries what is safe: a read that times out or hits a stopped member is retried
//!   on another member; a write is retried only when the member said it did not
//!   propose it (`NotLeader`, `Stopped`);
//! * reports an ambiguous write as such: a write sent and never answered completes
//!   with [`StoreError::Ambiguous`] — it may or may not have been applied — and is not
//!   retried blindly;
//! * keeps watches whole: messages are put back in sequence order ([`super::stream`]);
//!   a gap that stays open reveals a lost message, silence a dead member; either way
//!   the watch is re-created (at another member) from the next revision the caller has
//!   not seen, so the caller sees every event
//!   exactly once, in revision order, or a cancellation telling it to re-list.

use super::stream::{Receiver, StreamConfig};
use super::{earliest, Outbox};
use crate::message::Message;
use crate::store::messages::{StoreMessage, StoreRequest, StoreResponse, WatchCreate, WatchEvents};
use crate::store::types::{Event, StoreError};
use keel_engine::{Address, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// A request unanswered this long is retried (reads) or reported ambiguous (writes).
    pub request_timeout_ms: u64,
    /// Attempts per request, redirects included.
    pub attempts_max: u32,
    /// Requests in flight at once; more are refused with TooManyRequests.
    pub inflight_max: usize,
    /// A watch that hears nothing (not even a progress notification) this long is
    /// re-created elsewhere.
    pub watch_silence_ms: u64,
    /// Watches at once.
    pub watches_max: usize,
    /// How a watch's messages are put back in order and acknowledged ([`stream`]):
    /// the member's flow control counts unacknowledged events, so every delivered
    /// message is acknowledged at once (`ack_every` 1).
    #[serde(default = "default_watch_stream")]
    pub watch_stream: StreamConfig,
}

fn default_watch_stream() -> StreamConfig {
    StreamConfig {
        reorder_max: 64,
        gap_timeout_ms: 1_000,
        ack_every: 1,
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout_ms: 2_000,
            attempts_max: 6,
            inflight_max: 1024,
            watch_silence_ms: 4_000,
            watches_max: 256,
            watch_stream: default_watch_stream(),
        }
    }
}

impl ClientConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout_ms == 0
            || self.attempts_max == 0
            || self.inflight_max == 0
            || self.watches_max == 0
        {
            return Err("client timeouts and limits must be at least 1".into());
        }
        self.watch_stream.validate()
    }
}

/// A finished request: the caller's tag and the outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub tag: u64,
    pub result: Result<StoreResponse, StoreError>,
}

/// What a watch tells its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchOutput {
    /// New events, in revision order, none seen before.
    Events(Vec<Event>),
    /// A progress notification: everything up to `revision` has been delivered.
    Progress { revision: i64 },
    /// The watch cannot continue (its revision was compacted, or it was refused): the
    /// caller must re-list and watch again.
    Canceled { reason: String, compacted: bool },
}

struct Inflight {
    tag: u64,
    request: StoreRequest,
    /// Members the request went to that have not answered yet.
    targets: BTreeSet<Address>,
    /// Members that were sent the request at some point (a write may be in flight there).
    tried: BTreeSet<Address>,
    sent_at: Time,
    attempts: u32,
    /// Set when every target answered "not me": send again at this time.
    retry_at: Option<Time>,
    /// The most telling refusal so far (NoQuorum beats NotLeader).
    last_error: Option<StoreError>,
}

/// One logical watch, possibly re-created on the server several times.
struct WatchState {
    template: WatchCreate,
    /// The first revision the caller has not seen.
    next_revision: i64,
    /// The server-side watch id currently serving it, and its messages in order.
    server_id: u64,
    stream: Receiver<WatchEvents>,
    member: Address,
    last_heard: Time,
    /// The create request in flight, if any.
    creating: Option<u64>,
}

pub struct StoreClient {
    config: ClientConfig,
    endpoints: Vec<Address>,
    /// Index into `endpoints` of the member tried next.
    cursor: usize,
    leader: Option<Address>,
    next_id: u64,
    inflight: BTreeMap<u64, Inflight>,
    watches: BTreeMap<u64, WatchState>,
    /// Server watch id → logical watch id.
    server_watches: BTreeMap<u64, u64>,
    /// This client incarnation's session (see `StoreMessage::Request`).
    session: u64,
    pub stats: ClientStats,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientStats {
    pub redirects: u64,
    pub retries: u64,
    pub ambiguous: u64,
    pub watch_recreations: u64,
}

fn request_message(session: u64, id: u64, request: StoreRequest) -> Message {
    Message::Store(StoreMessage::Request {
        id,
        session,
        request,
    })
}

impl StoreClient {
    /// `session` should be random per client incarnation (from the actor's RNG), so
    /// that a restarted client's request ids never collide with its previous life's.
    pub fn new(
        endpoints: Vec<Address>,
        config: ClientConfig,
        session: u64,
    ) -> Result<Self, String> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err("a store client needs at least one endpoint".into());
        }
        Ok(StoreClient {
            config,
            endpoints,
            cursor: 0,
            leader: None,
            next_id: super::first_request_id(session),
            inflight: BTreeMap::new(),
            watches: BTreeMap::new(),
            server_watches: BTreeMap::new(),
            session,
            stats: ClientStats::default(),
        })
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    fn next_endpoint(&mut self) -> Address {
        self.cursor = (self.cursor + 1) % self.endpoints.len();
        self.endpoints[self.cursor].clone()
    }

    /// The leader when known; otherwise every endpoint (only a leader proposes, and
    /// sessions make a write apply at most once, so asking all is safe).
    fn targets(&self) -> Vec<Address> {
        match &self.leader {
            Some(leader) => vec![leader.clone()],
            None => self.endpoints.clone(),
        }
    }

    fn transmit(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        id: u64,
        inflight: &mut Inflight,
        targets: Vec<Address>,
    ) {
        for to in targets {
            out.send(
                to.clone(),
                request_message(self.session, id, inflight.request.clone()),
            );
            inflight.targets.insert(to.clone());
            inflight.tried.insert(to);
        }
        inflight.sent_at = now;
        inflight.retry_at = None;
    }

    /// Sends a request; its completion comes back with `tag`.
    pub fn send(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        request: StoreRequest,
        tag: u64,
    ) -> Result<u64, StoreError> {
        if self.inflight.len() >= self.config.inflight_max {
            return Err(StoreError::TooManyRequests {
                limit: self.config.inflight_max,
            });
        }
        self.next_id += 1;
        let id = self.next_id;
        let mut inflight = Inflight {
            tag,
            request,
            targets: BTreeSet::new(),
            tried: BTreeSet::new(),
            sent_at: now,
            attempts: 1,
            retry_at: None,
            last_error: None,
        };
        let targets = self.targets();
        self.transmit(out, now, id, &mut inflight, targets);
        self.inflight.insert(id, inflight);
        Ok(id)
    }

    /// Every target said "not me": try again shortly, with backoff.
    fn schedule_retry(&mut self, now: Time, inflight: &mut Inflight) {
        let backoff_ms = 50u64.saturating_mul(1 << inflight.attempts.min(5));
        inflight.retry_at = Some(now.plus(Duration::from_millis(backoff_ms)));
    }

    fn finish_refused(&mut self, inflight: Inflight) -> Completion {
        Completion {
            tag: inflight.tag,
            result: Err(inflight.last_error.unwrap_or(StoreError::Timeout)),
        }
    }

    /// Handles a member's response; returns the completion when the request is done.
    pub fn on_response(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        from: &Address,
        id: u64,
        result: Result<StoreResponse, StoreError>,
        leader: Option<Address>,
    ) -> Option<Completion> {
        if let Some(leader) = &leader {
            self.leader = Some(leader.clone());
        }
        // Watch creation answers are the watch machinery's own.
        if let Some(watch) = self
            .watches
            .iter()
            .find(|(_, w)| w.creating == Some(id))
            .map(|(k, _)| *k)
        {
            return self.on_watch_created(out, now, watch, from, result);
        }
        let mut inflight = self.inflight.remove(&id)?;
        if !inflight.targets.remove(from) {
            // A late answer from a member we already gave up on.
            self.inflight.insert(id, inflight);
            return None;
        }
        let write = inflight.request.is_write();
        match result {
            Err(StoreError::NotLeader { .. }) | Err(StoreError::Stopped(_)) => {
                // Not proposed there: safe to send again, to the leader if named.
                self.stats.redirects += 1;
                if inflight.last_error.is_none() {
                    inflight.last_error = Some(StoreError::NotLeader { leader: None });
                }
                match leader.filter(|l| l != from && !inflight.targets.contains(l)) {
                    Some(l) => self.transmit(out, now, id, &mut inflight, vec![l]),
                    None if inflight.targets.is_empty() => {
                        if self.leader.as_ref() == Some(from) {
                            self.leader = None;
                        }
                        self.schedule_retry(now, &mut inflight);
                    }
                    None => {}
                }
                self.inflight.insert(id, inflight);
                None
            }
            Err(error @ StoreError::NoQuorum { .. }) => {
                // Definite for that member (not proposed there); another member may be
                // a leader with a quorum — one that has not heard from this member,
                // which may be cut off — so ask every member not asked yet before
                // refusing. Nothing was proposed, so resending a write is safe.
                inflight.last_error = Some(error);
                if self.leader.as_ref() == Some(from) {
                    self.leader = None;
                }
                let untried: Vec<Address> = self
                    .endpoints
                    .iter()
                    .filter(|e| !inflight.tried.contains(*e))
                    .cloned()
                    .collect();
                if inflight.targets.is_empty() && untried.is_empty() {
                    Some(self.finish_refused(inflight))
                } else {
                    if inflight.targets.is_empty() {
                        self.stats.redirects += 1;
                        self.transmit(out, now, id, &mut inflight, untried);
                    }
                    self.inflight.insert(id, inflight);
                    None
                }
            }
            Err(StoreError::Timeout) if !write => {
                if inflight.targets.is_empty() {
                    self.leader = None;
                    self.schedule_retry(now, &mut inflight);
                }
                self.inflight.insert(id, inflight);
                None
            }
            Err(StoreError::Timeout) => {
                self.stats.ambiguous += 1;
                Some(Completion {
                    tag: inflight.tag,
                    result: Err(StoreError::Ambiguous(format!(
                        "{from} timed out while the write was in flight; it may or may not have been applied"
                    ))),
                })
            }
            other => Some(Completion {
                tag: inflight.tag,
                result: other,
            }),
        }
    }

    /// Times out requests and watches; call at least every few hundred milliseconds.
    pub fn on_tick(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
    ) -> (Vec<Completion>, Vec<(u64, WatchOutput)>) {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let mut completions = Vec::new();
        let ids: Vec<u64> = self.inflight.keys().copied().collect();
        for id in ids {
            let Some(mut inflight) = self.inflight.remove(&id) else {
                continue;
            };
            if let Some(at) = inflight.retry_at {
                if now < at {
                    self.inflight.insert(id, inflight);
                } else if inflight.attempts >= self.config.attempts_max {
                    completions.push(self.finish_refused(inflight));
                } else {
                    inflight.attempts += 1;
                    self.stats.retries += 1;
                    let targets = self.targets();
                    self.transmit(out, now, id, &mut inflight, targets);
                    self.inflight.insert(id, inflight);
                }
                continue;
            }
            if now.since(inflight.sent_at) < timeout {
                self.inflight.insert(id, inflight);
                continue;
            }
            self.leader = None;
            if inflight.request.is_write() {
                // Someone silent may have proposed it: the outcome is unknown. Say what
                // the members that did answer said (e.g. "no quorum").
                self.stats.ambiguous += 1;
                let silent: Vec<String> = inflight
                    .targets
                    .iter()
                    .map(|a| a.node.to_string())
                    .collect();
                let said = match &inflight.last_error {
                    Some(error) => format!("{error}; "),
                    None => String::new(),
                };
                completions.push(Completion {
                    tag: inflight.tag,
                    result: Err(StoreError::Ambiguous(format!(
                        "{said}no answer from {} within {} ms; the write may or may not have been applied",
                        silent.join(", "),
                        self.config.request_timeout_ms
                    ))),
                });
            } else if inflight.attempts >= self.config.attempts_max
                || matches!(inflight.last_error, Some(StoreError::NoQuorum { .. }))
            {
                // A read has no effect to be unsure about: report the refusal.
                completions.push(self.finish_refused(inflight));
            } else {
                inflight.attempts += 1;
                self.stats.retries += 1;
                inflight.targets.clear();
                let targets = self.targets();
                self.transmit(out, now, id, &mut inflight, targets);
                self.inflight.insert(id, inflight);
            }
        }
        let silence = Duration::from_millis(self.config.watch_silence_ms);
        let silent: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| now.since(w.last_heard) >= silence)
            .map(|(id, _)| *id)
            .collect();
        for watch in silent {
            self.recreate_watch(out, now, watch, true);
        }
        // A message lost in the middle: resume from what the caller has seen.
        let gapped: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.stream.lost(now).is_some())
            .map(|(id, _)| *id)
            .collect();
        for watch in gapped {
            self.recreate_watch(out, now, watch, false);
        }
        (completions, Vec::new())
    }

    // ----- watches ------------------------------------------------------------------

    /// Starts a watch; events arrive through [`StoreClient::on_watch`] under the
    /// returned id. `start_revision` 0 means "from the next change".
    pub fn watch(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        mut create: WatchCreate,
    ) -> Result<u64, StoreError> {
        if self.watches.len() >= self.config.watches_max {
            return Err(StoreError::TooManyRequests {
                limit: self.config.watches_max,
            });
        }
        self.next_id += 1;
        let watch = self.next_id;
        create.progress_notify = true;
        self.watches.insert(
            watch,
            WatchState {
                next_revision: create.start_revision,
                template: create,
                server_id: 0,
                stream: Receiver::new(self.config.watch_stream.clone()),
                member: self.endpoints[self.cursor].clone(),
                last_heard: now,
                creating: None,
            },
        );
        self.recreate_watch(out, now, watch, false);
        Ok(watch)
    }

    /// Stops a watch.
    pub fn cancel_watch(&mut self, out: &mut dyn Outbox, watch: u64) {
        if let Some(state) = self.watches.remove(&watch) {
            self.server_watches.remove(&state.server_id);
            self.next_id += 1;
            let id = self.next_id;
            out.send(
                state.member,
                request_message(
                    self.session,
                    id,
                    StoreRequest::WatchCancel {
                        watch_id: state.server_id,
                    },
                ),
            );
        }
    }

    fn recreate_watch(&mut self, out: &mut dyn Outbox, now: Time, watch: u64, move_on: bool) {
        let member = if move_on {
            self.next_endpoint()
        } else {
            self.endpoints[self.cursor].clone()
        };
        self.next_id += 1;
        let server_id = self.next_id;
        self.next_id += 1;
        let request_id = self.next_id;
        let Some(state) = self.watches.get_mut(&watch) else {
            return;
        };
        if state.server_id != 0 {
            self.stats.watch_recreations += 1;
            self.server_watches.remove(&state.server_id);
            // Best effort: tell the old member to drop its watcher.
            out.send(
                state.member.clone(),
                request_message(
                    self.session,
                    request_id + 1_000_000_000,
                    StoreRequest::WatchCancel {
                        watch_id: state.server_id,
                    },
                ),
            );
        }
        let mut create = state.template.clone();
        create.watch_id = server_id;
        create.start_revision = state.next_revision;
        state.server_id = server_id;
        state.stream = Receiver::new(self.config.watch_stream.clone());
        state.member = member.clone();
        state.last_heard = now;
        state.creating = Some(request_id);
        self.server_watches.insert(server_id, watch);
        out.send(
            member,
            request_message(self.session, request_id, StoreRequest::WatchCreate(create)),
        );
    }

    fn on_watch_created(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        watch: u64,
        from: &Address,
        result: Result<StoreResponse, StoreError>,
    ) -> Option<Completion> {
        let state = self.watches.get_mut(&watch)?;
        state.creating = None;
        state.last_heard = now;
        match result {
            Ok(StoreResponse::WatchCreated {
                header_revision, ..
            }) => {
                if state.next_revision <= 0 {
                    state.next_revision = header_revision + 1;
                }
                None
            }
            Err(StoreError::Compacted { .. }) => {
                // Surfaced through the watch output on the next on_watch/on_tick call.
                state.template.start_revision = -1;
                None
            }
            Err(_) => {
                let _ = from;
                self.recreate_watch(out, now, watch, true);
                None
            }
            Ok(_) => None,
        }
    }

    /// Takes the watches whose revision was compacted away (the caller must re-list).
    pub fn take_compacted_watches(&mut self) -> Vec<(u64, WatchOutput)> {
        let dead: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.template.start_revision == -1)
            .map(|(id, _)| *id)
            .collect();
        dead.into_iter()
            .map(|id| {
                self.watches.remove(&id);
                (
                    id,
                    WatchOutput::Canceled {
                        reason: "the watch's revision has been compacted".into(),
                        compacted: true,
                    },
                )
            })
            .collect()
    }

    /// Handles a watch message from a member.
    pub fn on_watch(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        from: &Address,
        message: WatchEvents,
    ) -> Vec<(u64, WatchOutput)> {
        let Some(&watch) = self.server_watches.get(&message.watch_id) else {
            return Vec::new();
        };
        let mut outputs = Vec::new();
        let Some(state) = self.watches.get_mut(&watch) else {
            return outputs;
        };
        if &state.member != from {
            return outputs;
        }
        let watch_id = message.watch_id;
        let ready = match state.stream.offer(now, message.seq, message) {
            Ok(ready) => ready,
            Err(_) => {
                // Too many held behind a missing one: resume from what the caller has seen.
                self.recreate_watch(out, now, watch, false);
                return outputs;
            }
        };
        if ready.is_empty() {
            return outputs;
        }
        state.last_heard = now;
        if let Some(seq) = state.stream.ack(false) {
            out.send(
                from.clone(),
                Message::Store(StoreMessage::WatchAck { watch_id, seq }),
            );
        }
        for (_, message) in ready {
            let Some(state) = self.watches.get_mut(&watch) else {
                break;
            };
            if let Some(reason) = message.canceled {
                let compacted =
                    message.compact_revision > 0 && state.next_revision <= message.compact_revision;
                if compacted {
                    self.watches.remove(&watch);
                    self.server_watches.remove(&watch_id);
                    outputs.push((
                        watch,
                        WatchOutput::Canceled {
                            reason,
                            compacted: true,
                        },
                    ));
                } else {
                    self.recreate_watch(out, now, watch, false);
                }
                break;
            }
            let fresh: Vec<Event> = message
                .events
                .into_iter()
                .filter(|e| e.kv.mod_revision >= state.next_revision)
                .collect();
            if let Some(last) = fresh.last() {
                state.next_revision = last.kv.mod_revision + 1;
                outputs.push((watch, WatchOutput::Events(fresh)));
            } else if message.header_revision >= state.next_revision - 1 {
                outputs.push((
                    watch,
                    WatchOutput::Progress {
                        revision: message.header_revision,
                    },
                ));
            }
        }
        outputs
    }

    /// When the client next needs [`StoreClient::on_tick`]: a request timing out or due
    /// for a retry, a watch going silent or a gap in one given up on.
    pub fn next_deadline(&self) -> Option<Time> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let silence = Duration::from_millis(self.config.watch_silence_ms);
        let requests = self
            .inflight
            .values()
            .map(|i| i.retry_at.unwrap_or(i.sent_at.plus(timeout)))
            .min();
        let watches = self
            .watches
            .values()
            .map(|w| earliest(Some(w.last_heard.plus(silence)), w.stream.next_deadline()))
            .min()
            .flatten();
        earliest(requests, watches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sent(Vec<(Address, Message)>);

    impl Outbox for Sent {
        fn send(&mut self, to: Address, msg: Message) {
            self.0.push((to, msg));
        }
    }

    fn member(i: u64) -> Address {
        Address::new(format!("s{i}"), crate::store::KIND, 0)
    }

    /// A member without a quorum ("no quorum") is not the last word: the members not
    /// asked yet are asked before the request is refused (api-semantics saw a 503 from a
    /// member that still counted its peers unreachable while another could serve).
    #[test]
    fn no_quorum_from_one_member_asks_the_others_before_refusing() {
        let mut client = StoreClient::new(
            vec![member(1), member(2), member(3)],
            ClientConfig::default(),
            7,
        )
        .unwrap();
        let mut out = Sent::default();
        let now = Time(0);
        let no_quorum = || StoreError::NoQuorum {
            reachable: 1,
            members: 3,
            needed: 2,
        };
        // The leader is known (s1): the put goes there only.
        client.leader = Some(member(1));
        let id = client
            .send(&mut out, now, StoreRequest::Put(Default::default()), 1)
            .unwrap();
        assert_eq!(out.0.len(), 1);
        let done = client.on_response(&mut out, now, &member(1), id, Err(no_quorum()), None);
        assert!(done.is_none(), "refused after asking one member of three");
        let asked: Vec<Address> = out.0.iter().skip(1).map(|(to, _)| to.clone()).collect();
        assert_eq!(asked, vec![member(2), member(3)]);
        // Both say "no quorum" too: now the refusal stands.
        assert!(client
            .on_response(&mut out, now, &member(2), id, Err(no_quorum()), None)
            .is_none());
        let done = client
            .on_response(&mut out, now, &member(3), id, Err(no_quorum()), None)
            .expect("every member refused");
        assert!(matches!(done.result, Err(StoreError::NoQuorum { .. })));
    }
}
