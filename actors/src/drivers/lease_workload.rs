//! A store client that holds one key on a lease, keeps the lease alive for a while,
//! then lets it expire — and reports each step, so the simulator can judge etcd's
//! lease semantics across leader changes.
//!
//! Owns: its own lease and its key `lease/<client>`; it touches nothing else in the
//! store. Its drive loop:
//! 1. grant a lease of `ttl_seconds` (retried every `retry_ms` until granted; a grant
//!    whose outcome is unknown may leave an orphan lease, which simply expires);
//! 2. put `lease/<client>` attached to it (retried until acknowledged; a put refused
//!    with "lease not found" means the lease expired meanwhile: back to step 1);
//! 3. send a keep-alive every `ttl_seconds / 3` until `keepalive_until_ms` have passed
//!    since the actor started, then stop keeping it alive;
//! 4. from the moment the key is put, read it every `poll_interval_ms` with a
//!    linearizable range and report whether it is present or gone.
//!
//! Reports carry how long ago the request they answer was first sent
//! (`request_age_ms`): a keep-alive answered OK was handled by the leader no earlier
//! than that, so the lease cannot expire before `sent + TTL`. Ages are measured on
//! this actor's clock, so they are exact as long as its clock is not stepped between
//! the request and the answer.

use crate::message::{Message, Report};
use crate::store::client::{ClientConfig, Completion, StoreClient};
use crate::store::messages::{StoreMessage, StoreRequest, StoreResponse};
use crate::store::types::{PutRequest, RangeRequest, StoreError};
use keel_engine::{Actor, Address, Context, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "store-lease-client";
pub const KEY_PREFIX: &str = "lease/";

/// The key a lease client holds.
pub fn lease_key(client: u64) -> String {
    format!("{KEY_PREFIX}{client}")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseWorkloadConfig {
    pub client: u64,
    pub endpoints: Vec<Address>,
    /// The lease's TTL; keep-alives go out every third of it.
    pub ttl_seconds: i64,
    /// Keep the lease alive until this many ms after the actor started, then stop.
    pub keepalive_until_ms: u64,
    /// Read the key this often once it is put.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Wait this long before retrying a failed grant or put.
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    #[serde(default)]
    pub client_config: ClientConfig,
}

fn default_poll_interval_ms() -> u64 {
    500
}

fn default_retry_ms() -> u64 {
    500
}

/// TTLs above an hour are not what this workload is for, and would make a run that
/// judges expiry impractically long.
const TTL_SECONDS_MAX: i64 = 3_600;

impl LeaseWorkloadConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=TTL_SECONDS_MAX).contains(&self.ttl_seconds) {
            return Err(format!(
                "ttl_seconds must be within 1..={TTL_SECONDS_MAX}, got {}",
                self.ttl_seconds
            ));
        }
        if self.endpoints.is_empty() {
            return Err("a lease client needs at least one store endpoint".into());
        }
        if self.poll_interval_ms == 0 || self.retry_ms == 0 {
            return Err("poll_interval_ms and retry_ms must be at least 1".into());
        }
        self.client_config.validate()
    }

    fn keepalive_interval(&self) -> Duration {
        // At least a millisecond, so a 1 s TTL still keeps alive three times a second.
        Duration::from_millis((self.ttl_seconds as u64 * 1000 / 3).max(1))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LeaseReport {
    /// The lease was granted; `elapsed_ms` since the actor started.
    Granted {
        client: u64,
        lease: i64,
        ttl_seconds: i64,
        elapsed_ms: u64,
        request_age_ms: u64,
    },
    /// `lease/<client>` was put on the lease at `revision`.
    KeyPut {
        client: u64,
        lease: i64,
        revision: i64,
    },
    /// The leader renewed the lease.
    KeepAliveOk {
        client: u64,
        lease: i64,
        ttl_seconds: i64,
        request_age_ms: u64,
    },
    /// A keep-alive failed (no leader, timeout, or the lease is gone).
    KeepAliveFailed {
        client: u64,
        lease: i64,
        error: String,
    },
    /// No more keep-alives will be sent: the lease is left to expire.
    KeepAlivesStopped { client: u64, lease: i64 },
    /// A linearizable read found the key, attached to `lease`.
    KeyPresent {
        client: u64,
        lease: i64,
        header_revision: i64,
    },
    /// A linearizable read found no key.
    KeyGone { client: u64, header_revision: i64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LeaseTimer {
    /// Drives the client library's timeouts.
    Tick,
    /// Grant or put again after a failure (or for the first time).
    Retry,
    KeepAlive,
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Granting,
    /// Putting the key on this lease.
    Putting(i64),
    /// The key is on this lease.
    Holding(i64),
}

/// What a request in flight was for, and when it was first sent.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Grant { sent: Time },
    Put,
    KeepAlive { lease: i64, sent: Time },
    Poll,
}

pub struct LeaseWorkload {
    config: LeaseWorkloadConfig,
    client: StoreClient,
    phase: Phase,
    started: Time,
    pending: BTreeMap<u64, Pending>,
    next_tag: u64,
    /// A grant or put is in flight (one at a time).
    busy: bool,
    polling: bool,
    keeping_alive: bool,
    keepalives_ok: u64,
}

type Ctx<'a> = Context<'a, Message, LeaseTimer>;

impl LeaseWorkload {
    pub fn new(config: LeaseWorkloadConfig) -> Result<Self, String> {
        config.validate()?;
        // The session is re-drawn from the actor's RNG at start; this one is a placeholder.
        let client = StoreClient::new(config.endpoints.clone(), config.client_config.clone(), 0)?;
        Ok(LeaseWorkload {
            config,
            client,
            phase: Phase::Granting,
            started: Time(0),
            pending: BTreeMap::new(),
            next_tag: 0,
            busy: false,
            polling: false,
            keeping_alive: false,
            keepalives_ok: 0,
        })
    }

    fn report(&self, ctx: &mut Ctx<'_>, report: LeaseReport) {
        ctx.emit(Message::Report(Report::Lease(report)));
    }

    /// Sends a request through the client library; false if it refused to take it.
    fn send(&mut self, ctx: &mut Ctx<'_>, request: StoreRequest, pending: Pending) -> bool {
        self.next_tag += 1;
        let tag = self.next_tag;
        let now = ctx.now();
        let sent = self.client.send(ctx, now, request, tag).is_ok();
        if sent {
            self.pending.insert(tag, pending);
        }
        sent
    }

    fn retry_later(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(
            LeaseTimer::Retry,
            Duration::from_millis(self.config.retry_ms),
        );
    }

    /// Starts the grant or the put the current phase needs, unless one is in flight.
    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        if self.busy {
            return;
        }
        let now = ctx.now();
        let started = match self.phase {
            Phase::Granting => self.send(
                ctx,
                StoreRequest::LeaseGrant {
                    id: 0,
                    ttl_seconds: self.config.ttl_seconds,
                },
                Pending::Grant { sent: now },
            ),
            Phase::Putting(lease) => {
                let key = lease_key(self.config.client);
                let request = StoreRequest::Put(PutRequest {
                    value: format!("held by client {}", self.config.client).into_bytes(),
                    key: key.into_bytes(),
                    lease,
                    ..Default::default()
                });
                self.send(ctx, request, Pending::Put)
            }
            Phase::Holding(_) => return,
        };
        if started {
            self.busy = true;
        } else {
            self.retry_later(ctx);
        }
    }

    fn keep_alive(&mut self, ctx: &mut Ctx<'_>) {
        let lease = match self.phase {
            Phase::Holding(lease) | Phase::Putting(lease) => lease,
            _ => return,
        };
        if !self.keeping_alive {
            return;
        }
        let elapsed = ctx.now().since(self.started);
        if elapsed >= Duration::from_millis(self.config.keepalive_until_ms) {
            self.keeping_alive = false;
            self.report(
                ctx,
                LeaseReport::KeepAlivesStopped {
                    client: self.config.client,
                    lease,
                },
            );
            return;
        }
        let now = ctx.now();
        self.send(
            ctx,
            StoreRequest::LeaseKeepAlive { id: lease },
            Pending::KeepAlive { lease, sent: now },
        );
        ctx.set_timer(LeaseTimer::KeepAlive, self.config.keepalive_interval());
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(
            LeaseTimer::Poll,
            Duration::from_millis(self.config.poll_interval_ms),
        );
        if self.polling {
            return;
        }
        let request = StoreRequest::Range(RangeRequest {
            key: lease_key(self.config.client).into_bytes(),
            ..Default::default()
        });
        if self.send(ctx, request, Pending::Poll) {
            self.polling = true;
        }
    }

    fn complete(&mut self, ctx: &mut Ctx<'_>, done: Completion) {
        let Some(pending) = self.pending.remove(&done.tag) else {
            return;
        };
        let now = ctx.now();
        let client = self.config.client;
        let age_ms = |sent: Time| now.since(sent).as_millis() as u64;
        match (pending, done.result) {
            (
                Pending::Grant { sent },
                Ok(StoreResponse::LeaseGrant {
                    id, ttl_seconds, ..
                }),
            ) => {
                self.busy = false;
                self.phase = Phase::Putting(id);
                // Keep the lease alive from the moment it exists, not from when the key
                // lands: a slow put must not let it expire (seed 102 of store-lease).
                self.keeping_alive = true;
                ctx.set_timer(LeaseTimer::KeepAlive, self.config.keepalive_interval());
                self.report(
                    ctx,
                    LeaseReport::Granted {
                        client,
                        lease: id,
                        ttl_seconds,
                        elapsed_ms: now.since(self.started).as_millis() as u64,
                        request_age_ms: age_ms(sent),
                    },
                );
                self.advance(ctx);
            }
            (Pending::Grant { .. }, _) => {
                self.busy = false;
                self.retry_later(ctx);
            }
            (Pending::Put, Ok(StoreResponse::Put(response))) => {
                self.busy = false;
                let Phase::Putting(lease) = self.phase else {
                    return;
                };
                self.phase = Phase::Holding(lease);
                self.keeping_alive = true;
                self.report(
                    ctx,
                    LeaseReport::KeyPut {
                        client,
                        lease,
                        revision: response.header_revision,
                    },
                );
                self.poll(ctx);
            }
            (Pending::Put, Err(StoreError::LeaseNotFound(_))) => {
                // The lease expired before the key could be put on it: start over.
                self.busy = false;
                self.phase = Phase::Granting;
                self.retry_later(ctx);
            }
            (Pending::Put, _) => {
                // Refused or unknown: putting the same key on the same lease again is
                // harmless either way.
                self.busy = false;
                self.retry_later(ctx);
            }
            (
                Pending::KeepAlive { lease, sent },
                Ok(StoreResponse::LeaseKeepAlive { ttl_seconds, .. }),
            ) => {
                self.keepalives_ok += 1;
                self.report(
                    ctx,
                    LeaseReport::KeepAliveOk {
                        client,
                        lease,
                        ttl_seconds,
                        request_age_ms: age_ms(sent),
                    },
                );
            }
            (Pending::KeepAlive { lease, .. }, result) => {
                let error = match result {
                    Err(e) => e.to_string(),
                    Ok(other) => format!("unexpected response {other:?}"),
                };
                self.report(
                    ctx,
                    LeaseReport::KeepAliveFailed {
                        client,
                        lease,
                        error,
                    },
                );
            }
            (Pending::Poll, Ok(StoreResponse::Range(range))) => {
                self.polling = false;
                let report = match range.kvs.first() {
                    Some(kv) => LeaseReport::KeyPresent {
                        client,
                        lease: kv.lease,
                        header_revision: range.header_revision,
                    },
                    None => LeaseReport::KeyGone {
                        client,
                        header_revision: range.header_revision,
                    },
                };
                self.report(ctx, report);
            }
            // No answer this time; the next poll asks again.
            (Pending::Poll, _) => self.polling = false,
        }
    }
}

impl Actor for LeaseWorkload {
    type Message = Message;
    type Timer = LeaseTimer;

    fn handle(&mut self, input: Input<Message, LeaseTimer>, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                // A restarted client has forgotten its lease: it starts over with a new
                // one (the old one expires on its own).
                let session = ctx.rng().gen::<u64>() | 1;
                match StoreClient::new(
                    self.config.endpoints.clone(),
                    self.config.client_config.clone(),
                    session,
                ) {
                    Ok(client) => self.client = client,
                    Err(_) => return,
                }
                self.started = now;
                self.phase = Phase::Granting;
                self.pending.clear();
                self.busy = false;
                self.polling = false;
                self.keeping_alive = false;
                ctx.set_timer(LeaseTimer::Tick, Duration::from_millis(100));
                let first = ctx.rng().gen_range(50..300);
                ctx.set_timer(LeaseTimer::Retry, Duration::from_millis(first));
            }
            Input::Timer(LeaseTimer::Tick) => {
                ctx.set_timer(LeaseTimer::Tick, Duration::from_millis(100));
                let (completions, _) = self.client.on_tick(ctx, now);
                for done in completions {
                    self.complete(ctx, done);
                }
            }
            Input::Timer(LeaseTimer::Retry) => self.advance(ctx),
            Input::Timer(LeaseTimer::KeepAlive) => self.keep_alive(ctx),
            Input::Timer(LeaseTimer::Poll) => self.poll(ctx),
            Input::Message { from, msg } => {
                if let Message::Store(StoreMessage::Response { id, result, leader }) = msg {
                    let done = self.client.on_response(ctx, now, &from, id, result, leader);
                    if let Some(done) = done {
                        self.complete(ctx, done);
                    }
                }
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let (phase, lease) = match self.phase {
            Phase::Granting => ("granting", 0),
            Phase::Putting(lease) => ("putting", lease),
            Phase::Holding(lease) => ("holding", lease),
        };
        serde_json::json!({
            "client": self.config.client,
            "phase": phase,
            "lease": lease,
            "keeping_alive": self.keeping_alive,
            "keepalives_ok": self.keepalives_ok,
            "stats": self.client.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseWorkloadConfig {
        LeaseWorkloadConfig {
            client: 1,
            endpoints: vec![Address::new("s1", "store", 0)],
            ttl_seconds: 3,
            keepalive_until_ms: 10_000,
            poll_interval_ms: 500,
            retry_ms: 500,
            client_config: ClientConfig::default(),
        }
    }

    #[test]
    fn configuration_is_validated() {
        // A sane configuration passes; zero TTL, no endpoints or zero intervals do not.
        assert!(LeaseWorkload::new(config()).is_ok());
        for broken in [
            LeaseWorkloadConfig {
                ttl_seconds: 0,
                ..config()
            },
            LeaseWorkloadConfig {
                endpoints: Vec::new(),
                ..config()
            },
            LeaseWorkloadConfig {
                poll_interval_ms: 0,
                ..config()
            },
        ] {
            assert!(LeaseWorkload::new(broken).is_err());
        }
        assert_eq!(config().keepalive_interval(), Duration::from_millis(1000));
    }
}
