//! The balancer: one bus address in front of any number of API servers, as HAProxy is
//! in front of kube-apiservers (HAProxy itself fronts the HTTPS edge later).
//!
//! * **Routing** — each request goes to the healthy backend with the fewest requests in
//!   flight (ties in turn). Request and watch ids are rewritten to the balancer's own,
//!   so clients never collide; answers, watch events, acknowledgements and stops are
//!   translated back.
//! * **Health** — active: every backend is probed (`ApiMessage::Probe`, the bus form of
//!   `/readyz`) every `probe_interval_ms`; `probe_failures_down` unanswered or failed
//!   probes in a row take it out, one answered probe brings it back. A request left
//!   unanswered past `request_timeout_ms` is answered by the balancer but does not
//!   count against the backend (a slow store makes every API server slow). With no
//!   backend up, requests still go to the least loaded one (failing open).
//! * **Failing fast** — when a backend goes down, the requests it holds are answered at
//!   once (503 for reads, which clients retry elsewhere; 504 for writes, whose outcome
//!   is unknown) and its watches end with an error event, so informers resume through
//!   another backend immediately instead of waiting for silence.
//! * The balancer never retries on its own: a write must not be applied twice, and the
//!   client library knows which requests are safe to repeat.

use super::messages::{ApiMessage, ApiRequest, ApiResponse, EventType, Verb, WatchEvent};
use super::object::status;
use crate::drivers::api_workload::ApiReport;
use crate::message::{Message, Report};
use keel_engine::{Actor, Address, Context, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "api-balancer";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalancerConfig {
    pub backends: Vec<Address>,
    /// A forwarded request unanswered this long is answered 503/504 by the balancer
    /// (shorter than the client library's 5 s, so the client hears why).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// Failed probes in a row that take a backend out.
    #[serde(default = "default_probe_failures_down")]
    pub probe_failures_down: u32,
    /// Requests in flight at once; more are refused with 429.
    #[serde(default = "default_inflight_max")]
    pub inflight_max: usize,
    /// Watches routed at once; more are refused with 429.
    #[serde(default = "default_watches_max")]
    pub watches_max: usize,
}

fn default_request_timeout_ms() -> u64 {
    4_000
}
fn default_probe_interval_ms() -> u64 {
    500
}
fn default_probe_failures_down() -> u32 {
    2
}
fn default_inflight_max() -> usize {
    16_384
}
fn default_watches_max() -> usize {
    16_384
}

impl BalancerConfig {
    pub fn new(backends: Vec<Address>) -> Self {
        BalancerConfig {
            backends,
            request_timeout_ms: default_request_timeout_ms(),
            probe_interval_ms: default_probe_interval_ms(),
            probe_failures_down: default_probe_failures_down(),
            inflight_max: default_inflight_max(),
            watches_max: default_watches_max(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("the balancer needs at least one API server".into());
        }
        if self.request_timeout_ms == 0
            || self.probe_interval_ms == 0
            || self.probe_failures_down == 0
            || self.inflight_max == 0
            || self.watches_max == 0
        {
            return Err("balancer timeouts and limits must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BalancerTimer {
    Tick,
}

const TICK_MS: u64 = 100;

#[derive(Default)]
struct Backend {
    up: bool,
    /// Requests forwarded and not yet answered.
    outstanding: usize,
    /// Failed probes (or timed-out requests) in a row.
    failures: u32,
    /// The probe in flight: its id and when it went.
    probe: Option<(u64, Time)>,
    forwarded: u64,
}

struct Forward {
    client: Address,
    client_id: u64,
    backend: Address,
    sent_at: Time,
    read: bool,
}

struct Route {
    client: Address,
    client_watch: u64,
    backend: Address,
    /// The last event sequence number forwarded (an error event the balancer makes up
    /// follows it).
    seq: u64,
}

pub struct Balancer {
    config: BalancerConfig,
    backends: BTreeMap<Address, Backend>,
    cursor: usize,
    next_id: u64,
    inflight: BTreeMap<u64, Forward>,
    /// The balancer's watch id → the client's watch.
    routes: BTreeMap<u64, Route>,
    /// (client, client's watch id) → the balancer's watch id.
    by_client: BTreeMap<(Address, u64), u64>,
    ticks: u64,
    pub stats: BalancerStats,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BalancerStats {
    pub forwarded: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub failovers: u64,
}

type Ctx<'a> = Context<'a, Message, BalancerTimer>;

fn answer(code: u16, reason: &str, message: String) -> ApiResponse {
    ApiResponse {
        code,
        body: status(code, reason, &message, json!({})),
    }
}

impl Balancer {
    pub fn new(config: BalancerConfig) -> Result<Self, String> {
        config.validate()?;
        let backends = config
            .backends
            .iter()
            .map(|b| {
                (
                    b.clone(),
                    Backend {
                        // Presumed up until probes say otherwise: the first requests need
                        // not wait for a probe round.
                        up: true,
                        ..Backend::default()
                    },
                )
            })
            .collect();
        Ok(Balancer {
            config,
            backends,
            cursor: 0,
            next_id: 0,
            inflight: BTreeMap::new(),
            routes: BTreeMap::new(),
            by_client: BTreeMap::new(),
            ticks: 0,
            stats: BalancerStats::default(),
        })
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The healthy backend with the fewest requests in flight; ties go in turn. With
    /// none healthy, the least loaded of all (failing open: a probe may be wrong, and a
    /// request that might succeed beats a certain 503).
    fn pick(&mut self) -> Address {
        let n = self.config.backends.len();
        self.cursor = (self.cursor + 1) % n;
        let any_up = self.backends.values().any(|b| b.up);
        let mut best: Option<(usize, &Address)> = None;
        for i in 0..n {
            let address = &self.config.backends[(self.cursor + i) % n];
            let backend = &self.backends[address];
            if any_up && !backend.up {
                continue;
            }
            if best.is_none_or(|(load, _)| backend.outstanding < load) {
                best = Some((backend.outstanding, address));
            }
        }
        best.map(|(_, a)| a.clone())
            .unwrap_or_else(|| self.config.backends[self.cursor].clone())
    }

    fn on_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: Address,
        client_id: u64,
        mut request: ApiRequest,
    ) {
        let refuse = |ctx: &mut Ctx<'_>, response: ApiResponse| {
            ctx.send(
                client.clone(),
                Message::Api(ApiMessage::Response {
                    id: client_id,
                    response,
                }),
            );
        };
        let watch = request.verb == Verb::Watch;
        if self.inflight.len() >= self.config.inflight_max
            || (watch && self.routes.len() >= self.config.watches_max)
        {
            self.stats.refused += 1;
            let message = "the balancer is at its limit of requests in flight".to_string();
            return refuse(ctx, answer(429, "TooManyRequests", message));
        }
        let backend = self.pick();
        let id = self.id();
        if watch {
            let client_watch = request.options.watch_id;
            request.options.watch_id = id;
            if let Some(old) = self.by_client.insert((client.clone(), client_watch), id) {
                self.routes.remove(&old);
            }
            self.routes.insert(
                id,
                Route {
                    client: client.clone(),
                    client_watch,
                    backend: backend.clone(),
                    seq: 0,
                },
            );
        }
        let read = request.is_read();
        let b = self
            .backends
            .get_mut(&backend)
            .expect("picked from the table");
        b.outstanding += 1;
        b.forwarded += 1;
        self.stats.forwarded += 1;
        self.inflight.insert(
            id,
            Forward {
                client,
                client_id,
                backend: backend.clone(),
                sent_at: ctx.now(),
                read,
            },
        );
        ctx.send(backend, Message::Api(ApiMessage::Request { id, request }));
    }

    fn on_response(&mut self, ctx: &mut Ctx<'_>, from: &Address, id: u64, response: ApiResponse) {
        if let Some(backend) = self.backends.get_mut(from) {
            if backend.probe.is_some_and(|(probe, _)| probe == id) {
                backend.probe = None;
                if response.code == 200 {
                    backend.failures = 0;
                    if !backend.up {
                        backend.up = true;
                        ctx.emit(Message::Report(Report::Api(ApiReport::Backend {
                            backend: from.node.to_string(),
                            up: true,
                        })));
                    }
                } else {
                    backend.failures += 1;
                }
                return;
            }
        }
        let Some(forward) = self.inflight.remove(&id) else {
            return; // late (already answered by the balancer) or duplicated
        };
        if let Some(backend) = self.backends.get_mut(&forward.backend) {
            backend.outstanding = backend.outstanding.saturating_sub(1);
            backend.failures = 0;
        }
        if response.code != 200 {
            // A refused watch never starts.
            if let Some(route) = self.routes.remove(&id) {
                self.by_client.remove(&(route.client, route.client_watch));
            }
        }
        let client_id = match self.routes.get(&id) {
            Some(route) => route.client_watch,
            None => forward.client_id,
        };
        ctx.send(
            forward.client,
            Message::Api(ApiMessage::Response {
                id: client_id,
                response,
            }),
        );
    }

    fn on_event(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: &Address,
        watch_id: u64,
        seq: u64,
        event: WatchEvent,
    ) {
        let Some(route) = self.routes.get_mut(&watch_id) else {
            // Nobody wants it any more.
            ctx.send(
                from.clone(),
                Message::Api(ApiMessage::StopWatch { watch_id }),
            );
            return;
        };
        route.seq = route.seq.max(seq);
        let ended = event.kind == EventType::Error;
        let (client, client_watch) = (route.client.clone(), route.client_watch);
        if ended {
            self.routes.remove(&watch_id);
            self.by_client.remove(&(client.clone(), client_watch));
        }
        ctx.send(
            client,
            Message::Api(ApiMessage::Event {
                watch_id: client_watch,
                seq,
                event,
            }),
        );
    }

    /// A backend stopped answering: answer what it holds and end its watches.
    fn backend_down(&mut self, ctx: &mut Ctx<'_>, address: &Address) {
        let Some(backend) = self.backends.get_mut(address) else {
            return;
        };
        if !backend.up {
            return;
        }
        backend.up = false;
        backend.outstanding = 0;
        self.stats.failovers += 1;
        let node = address.node.to_string();
        ctx.emit(Message::Report(Report::Api(ApiReport::Backend {
            backend: node.clone(),
            up: false,
        })));
        let held: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, f)| &f.backend == address)
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            let forward = self.inflight.remove(&id).expect("listed above");
            if self.routes.contains_key(&id) {
                continue; // a watch not yet established: ended below
            }
            let response = if forward.read {
                answer(
                    503,
                    "ServiceUnavailable",
                    format!("API server {node} stopped answering"),
                )
            } else {
                answer(
                    504,
                    "Timeout",
                    format!("API server {node} stopped answering; the request may or may not have been applied"),
                )
            };
            ctx.send(
                forward.client,
                Message::Api(ApiMessage::Response {
                    id: forward.client_id,
                    response,
                }),
            );
        }
        let watches: Vec<u64> = self
            .routes
            .iter()
            .filter(|(_, r)| &r.backend == address)
            .map(|(id, _)| *id)
            .collect();
        for id in watches {
            let route = self.routes.remove(&id).expect("listed above");
            self.by_client
                .remove(&(route.client.clone(), route.client_watch));
            let status: Value = serde_json::from_slice(&status(
                503,
                "ServiceUnavailable",
                &format!("API server {node} stopped answering; resume the watch"),
                json!({}),
            ))
            .unwrap_or(Value::Null);
            ctx.send(
                route.client,
                Message::Api(ApiMessage::Event {
                    watch_id: route.client_watch,
                    seq: route.seq + 1,
                    event: WatchEvent {
                        kind: EventType::Error,
                        object: serde_json::to_vec(&status).unwrap_or_default(),
                        resource_version: 0,
                    },
                }),
            );
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.ticks += 1;
        let probe_ticks = (self.config.probe_interval_ms / TICK_MS).max(1);
        let probe_now = self.ticks.is_multiple_of(probe_ticks);
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let probe_timeout = Duration::from_millis(self.config.probe_interval_ms);
        let mut down = Vec::new();
        // Requests left unanswered count against their backend.
        let stale: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(id, f)| !self.routes.contains_key(id) && now.since(f.sent_at) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let forward = self.inflight.remove(&id).expect("listed above");
            self.stats.timed_out += 1;
            // Not counted against the backend's health: a slow store makes every API
            // server slow, and only probes say whether the server itself is there.
            if let Some(backend) = self.backends.get_mut(&forward.backend) {
                backend.outstanding = backend.outstanding.saturating_sub(1);
            }
            let node = forward.backend.node.to_string();
            let response = if forward.read {
                answer(
                    503,
                    "ServiceUnavailable",
                    format!("API server {node} did not answer in time"),
                )
            } else {
                answer(
                    504,
                    "Timeout",
                    format!("API server {node} did not answer in time; the request may or may not have been applied"),
                )
            };
            ctx.send(
                forward.client,
                Message::Api(ApiMessage::Response {
                    id: forward.client_id,
                    response,
                }),
            );
        }
        for (address, backend) in self.backends.iter_mut() {
            if let Some((_, sent)) = backend.probe {
                if now.since(sent) >= probe_timeout {
                    backend.probe = None;
                    backend.failures += 1;
                }
            }
            if backend.up && backend.failures >= self.config.probe_failures_down {
                down.push(address.clone());
            }
            if probe_now && backend.probe.is_none() {
                self.next_id += 1;
                backend.probe = Some((self.next_id, now));
                ctx.send(
                    address.clone(),
                    Message::Api(ApiMessage::Probe { id: self.next_id }),
                );
            }
        }
        for address in down {
            self.backend_down(ctx, &address);
        }
    }
}

impl Actor for Balancer {
    type Message = Message;
    type Timer = BalancerTimer;

    fn handle(&mut self, input: Input<Message, BalancerTimer>, ctx: &mut Ctx<'_>) {
        match input {
            Input::Start(_) => {
                // Answers to the previous incarnation's ids may still arrive.
                self.next_id = crate::client::first_request_id(ctx.rng().gen::<u64>());
                ctx.set_timer(BalancerTimer::Tick, Duration::from_millis(TICK_MS));
            }
            Input::Timer(BalancerTimer::Tick) => {
                ctx.set_timer(BalancerTimer::Tick, Duration::from_millis(TICK_MS));
                self.on_tick(ctx);
            }
            Input::Message {
                from,
                msg: Message::Api(msg),
            } => {
                let from_backend = self.backends.contains_key(&from);
                match msg {
                    ApiMessage::Request { id, request } if !from_backend => {
                        self.on_request(ctx, from, id, request)
                    }
                    ApiMessage::Response { id, response } if from_backend => {
                        self.on_response(ctx, &from, id, response)
                    }
                    ApiMessage::Event {
                        watch_id,
                        seq,
                        event,
                    } if from_backend => self.on_event(ctx, &from, watch_id, seq, event),
                    ApiMessage::EventAck { watch_id, seq } => {
                        if let Some(id) = self.by_client.get(&(from, watch_id)) {
                            if let Some(route) = self.routes.get(id) {
                                ctx.send(
                                    route.backend.clone(),
                                    Message::Api(ApiMessage::EventAck { watch_id: *id, seq }),
                                );
                            }
                        }
                    }
                    ApiMessage::StopWatch { watch_id } => {
                        if let Some(id) = self.by_client.remove(&(from, watch_id)) {
                            if let Some(route) = self.routes.remove(&id) {
                                self.inflight.remove(&id);
                                ctx.send(
                                    route.backend,
                                    Message::Api(ApiMessage::StopWatch { watch_id: id }),
                                );
                            }
                        }
                    }
                    ApiMessage::Probe { id } => {
                        // The balancer is ready when some backend is.
                        let ready = self.backends.values().any(|b| b.up);
                        ctx.send(
                            from,
                            Message::Api(ApiMessage::Response {
                                id,
                                response: ApiResponse {
                                    code: if ready { 200 } else { 503 },
                                    body: b"ok".to_vec(),
                                },
                            }),
                        );
                    }
                    _ => {}
                }
            }
            Input::Message { .. } => {}
        }
    }

    fn status(&self) -> Value {
        let backends: BTreeMap<String, Value> = self
            .backends
            .iter()
            .map(|(a, b)| {
                (
                    a.to_string(),
                    json!({ "up": b.up, "outstanding": b.outstanding, "forwarded": b.forwarded }),
                )
            })
            .collect();
        json!({ "backends": backends, "inflight": self.inflight.len(), "watches": self.routes.len(), "stats": {
            "forwarded": self.stats.forwarded, "refused": self.stats.refused,
            "timed_out": self.stats.timed_out, "failovers": self.stats.failovers } })
    }
}
