//! Where the store bench sends each request: to the leader (the client library, as any
//! keel component does) or pinned to one member per bench client (bench client `i`
//! always starts at member `i % members`), so that `keel bench store` can put keel and
//! etcd through the same two connection patterns.
//!
//! Why the pinned mode does not use [`StoreClient`]: the client library learns the
//! leader from every answer (each carries the leader's address) and from then on sends
//! everything there, which is what a component wants and what "leader" routing
//! measures, but it cannot keep a client on a follower. [`PinnedClient`] speaks the same
//! bus protocol (the same `Request`/`Response` messages, one client session with
//! increasing ids, so the store's at-most-once protection applies as it does to the
//! library) and does only what a pinned client must:
//! * a follower serves a linearizable read itself (raft read index), as etcd's does;
//! * a follower refuses a put with `NotLeader` and names the leader; the put is sent
//!   again, under the same id, to that leader (at most [`REDIRECTS_MAX`] times) and the
//!   extra round trip is part of its latency — etcd's followers forward a put to their
//!   leader inside the cluster, so the put costs a hop there too;
//! * a request unanswered for `request_timeout_ms` ends as an error (`Timeout`, or
//!   `Ambiguous` for a write), as the library's does; the next request starts at the
//!   pinned member again.

use crate::client::store::{ClientConfig, Completion, StoreClient};
use crate::client::{first_request_id, Outbox};
use crate::message::Message;
use crate::store::messages::{StoreMessage, StoreRequest, StoreResponse};
use crate::store::types::StoreError;
use keel_engine::{Address, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Redirects followed per request; a leader that keeps moving makes the request fail.
pub const REDIRECTS_MAX: u32 = 2;

/// How the bench's clients reach the members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchRouting {
    /// Every request goes to the current leader (the client library).
    #[default]
    Leader,
    /// Bench client `i` sends to member `i % members`; followers redirect puts.
    Pinned,
}

struct PinnedRequest {
    tag: u64,
    request: StoreRequest,
    /// The member the request was last sent to: only its answer counts.
    target: Address,
    first_sent: Time,
    redirects: u32,
}

/// A store client that keeps each request on the member it was pinned to.
pub struct PinnedClient {
    members: Vec<Address>,
    session: u64,
    next_id: u64,
    request_timeout: Duration,
    inflight_max: usize,
    inflight: BTreeMap<u64, PinnedRequest>,
    redirects: u64,
}

impl PinnedClient {
    pub fn new(
        members: Vec<Address>,
        session: u64,
        request_timeout_ms: u64,
        inflight_max: usize,
    ) -> Result<Self, String> {
        if members.is_empty() || request_timeout_ms == 0 || inflight_max == 0 {
            return Err("a pinned client needs members, a timeout and an in-flight limit".into());
        }
        Ok(PinnedClient {
            members,
            session,
            next_id: first_request_id(session),
            request_timeout: Duration::from_millis(request_timeout_ms),
            inflight_max,
            inflight: BTreeMap::new(),
            redirects: 0,
        })
    }

    fn transmit(&self, out: &mut dyn Outbox, to: Address, id: u64, request: StoreRequest) {
        out.send(
            to,
            Message::Store(StoreMessage::Request {
                id,
                session: self.session,
                request,
            }),
        );
    }

    /// Sends `request` to member `member % members`; its completion comes back with `tag`.
    pub fn send(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        member: usize,
        request: StoreRequest,
        tag: u64,
    ) -> Result<u64, StoreError> {
        if self.inflight.len() >= self.inflight_max {
            return Err(StoreError::TooManyRequests {
                limit: self.inflight_max,
            });
        }
        self.next_id += 1;
        let id = self.next_id;
        let target = self.members[member % self.members.len()].clone();
        self.transmit(out, target.clone(), id, request.clone());
        self.inflight.insert(
            id,
            PinnedRequest {
                tag,
                request,
                target,
                first_sent: now,
                redirects: 0,
            },
        );
        Ok(id)
    }

    /// Handles a member's answer; returns the completion when the request is done.
    pub fn on_response(
        &mut self,
        out: &mut dyn Outbox,
        from: &Address,
        id: u64,
        result: Result<StoreResponse, StoreError>,
        leader: Option<Address>,
    ) -> Option<Completion> {
        if self.inflight.get(&id).is_none_or(|r| &r.target != from) {
            // Unknown (timed out already) or from a member the request has left.
            return None;
        }
        let mut pending = self.inflight.remove(&id)?;
        let refused_here = matches!(
            result,
            Err(StoreError::NotLeader { .. }) | Err(StoreError::Stopped(_))
        );
        let may_redirect = refused_here && pending.redirects < REDIRECTS_MAX;
        if let Some(to) = leader.filter(|l| may_redirect && l != from) {
            // Not proposed where it was refused: the same id again, at the leader.
            pending.redirects += 1;
            self.redirects += 1;
            self.transmit(out, to.clone(), id, pending.request.clone());
            pending.target = to;
            self.inflight.insert(id, pending);
            return None;
        }
        Some(Completion {
            tag: pending.tag,
            result,
        })
    }

    /// Ends the requests unanswered for `request_timeout_ms` (from their first send).
    pub fn on_tick(&mut self, now: Time) -> Vec<Completion> {
        let expired: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, r)| now.since(r.first_sent) >= self.request_timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut completions = Vec::with_capacity(expired.len());
        for id in expired {
            let Some(pending) = self.inflight.remove(&id) else {
                continue;
            };
            let error = if pending.request.is_write() {
                StoreError::Ambiguous(format!(
                    "no answer from {} within {} ms; the write may or may not have been applied",
                    pending.target.node,
                    self.request_timeout.as_millis()
                ))
            } else {
                StoreError::Timeout
            };
            completions.push(Completion {
                tag: pending.tag,
                result: Err(error),
            });
        }
        completions
    }

    pub fn redirects(&self) -> u64 {
        self.redirects
    }
}

/// The bench's sender: the library for leader routing, [`PinnedClient`] for pinned.
pub enum BenchSender {
    Leader(StoreClient),
    Pinned(PinnedClient),
}

impl BenchSender {
    /// A sender for `routing` over `members`, with this incarnation's `session`.
    pub fn new(
        routing: BenchRouting,
        members: Vec<Address>,
        session: u64,
        request_timeout_ms: u64,
        inflight_max: usize,
    ) -> Result<Self, String> {
        match routing {
            BenchRouting::Leader => {
                let config = ClientConfig {
                    inflight_max,
                    request_timeout_ms,
                    ..ClientConfig::default()
                };
                StoreClient::new(members, config, session).map(BenchSender::Leader)
            }
            BenchRouting::Pinned => {
                PinnedClient::new(members, session, request_timeout_ms, inflight_max)
                    .map(BenchSender::Pinned)
            }
        }
    }

    /// Sends a request for bench client `client` (its member when pinned).
    pub fn send(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        client: usize,
        request: StoreRequest,
        tag: u64,
    ) -> Result<u64, StoreError> {
        match self {
            BenchSender::Leader(library) => library.send(out, now, request, tag),
            BenchSender::Pinned(pinned) => pinned.send(out, now, client, request, tag),
        }
    }

    pub fn on_response(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        from: &Address,
        id: u64,
        result: Result<StoreResponse, StoreError>,
        leader: Option<Address>,
    ) -> Option<Completion> {
        match self {
            BenchSender::Leader(library) => library.on_response(out, now, from, id, result, leader),
            BenchSender::Pinned(pinned) => pinned.on_response(out, from, id, result, leader),
        }
    }

    /// Requests that timed out or ran out of retries.
    pub fn on_tick(&mut self, out: &mut dyn Outbox, now: Time) -> Vec<Completion> {
        match self {
            BenchSender::Leader(library) => library.on_tick(out, now).0,
            BenchSender::Pinned(pinned) => pinned.on_tick(now),
        }
    }

    /// Requests re-sent because a member was not the leader.
    pub fn redirects(&self) -> u64 {
        match self {
            BenchSender::Leader(library) => library.stats.redirects,
            BenchSender::Pinned(pinned) => pinned.redirects(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{PutRequest, PutResponse};

    fn member(i: usize) -> Address {
        Address::new(format!("s{i}"), crate::store::KIND, 0)
    }

    fn put() -> StoreRequest {
        StoreRequest::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    /// A pinned put starts at its member, follows one redirect to the leader, and the
    /// next put of the same client starts at its member again.
    #[test]
    fn pinned_requests_stay_pinned_across_redirects() {
        let members: Vec<Address> = (1..=3).map(member).collect();
        let mut client = PinnedClient::new(members, 7, 5_000, 16).expect("valid");
        let mut out: Vec<(Address, Message)> = Vec::new();
        let id = client.send(&mut out, Time(0), 4, put(), 1).expect("sent");
        assert_eq!(out[0].0, member(2));
        let refused = Err(StoreError::NotLeader { leader: Some(1) });
        assert!(client
            .on_response(&mut out, &member(2), id, refused, Some(member(1)))
            .is_none());
        assert_eq!(out[1].0, member(1));
        // A late answer from the member it left is ignored.
        let late = Err(StoreError::NotLeader { leader: Some(1) });
        assert!(client
            .on_response(&mut out, &member(2), id, late, Some(member(1)))
            .is_none());
        let ok = Ok(StoreResponse::Put(PutResponse {
            header_revision: 2,
            prev_kv: None,
        }));
        let done = client
            .on_response(&mut out, &member(1), id, ok, Some(member(1)))
            .expect("done");
        assert_eq!(done.tag, 1);
        assert!(done.result.is_ok());
        assert_eq!(client.redirects(), 1);
        client.send(&mut out, Time(0), 4, put(), 2).expect("sent");
        assert_eq!(out[2].0, member(2));
    }

    /// An unanswered write ends as ambiguous after the timeout, not before.
    #[test]
    fn unanswered_writes_end_ambiguous_at_the_timeout() {
        let members: Vec<Address> = (1..=3).map(member).collect();
        let mut client = PinnedClient::new(members, 7, 5_000, 16).expect("valid");
        let mut out: Vec<(Address, Message)> = Vec::new();
        client.send(&mut out, Time(0), 0, put(), 9).expect("sent");
        assert!(client.on_tick(Time::from_millis(4_999)).is_empty());
        let done = client.on_tick(Time::from_millis(5_000));
        assert_eq!(done.len(), 1);
        assert!(matches!(done[0].result, Err(StoreError::Ambiguous(_))));
    }
}
