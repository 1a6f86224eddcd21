//! A client of the API server that exercises its semantics and reports what it saw, for
//! the simulator's `api-replicas` checkers. Requests go to the API servers in turn and
//! move on to the next after a timeout (client-side balancing).
//!
//! Roles (config `role`):
//! * `writer` — read the shared ConfigMap `default/shared`, then update it with the
//!   resourceVersion it read (compare-and-swap); a Conflict means another writer won.
//! * `watcher` — list ConfigMaps in `default`, then watch from the list's
//!   resourceVersion; on a lost event (sequence gap) or 410 it lists and watches again.

use super::messages::{ApiMessage, ApiRequest, ApiResponse, EventType, ListOptions, Verb};
use crate::message::Message;
use keel_engine::{Actor, Address, Context, Input, Time};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

pub const KIND: &str = "api-workload";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiWorkloadConfig {
    pub client: u64,
    pub apiservers: Vec<Address>,
    pub role: String,
    pub think_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiReport {
    /// A compare-and-swap update based on `read` succeeded and wrote `written`.
    Updated {
        client: u64,
        read: i64,
        written: i64,
        counter: i64,
    },
    Conflict {
        client: u64,
        read: i64,
    },
    Created {
        client: u64,
        written: i64,
    },
    /// A Service was created and given this cluster IP.
    ServiceIp {
        client: u64,
        name: String,
        ip: String,
    },
    /// A write whose outcome is unknown (timeout, 5xx).
    Unsure {
        client: u64,
    },
    /// A watch session started after a list at `from`.
    WatchStarted {
        client: u64,
        session: u64,
        from: i64,
    },
    WatchEvent {
        client: u64,
        session: u64,
        kind: String,
        revision: i64,
        name: String,
    },
    /// The session ended (410, gap, error); a new list follows.
    WatchEnded {
        client: u64,
        session: u64,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkloadTimer {
    Next,
    Timeout(u64),
    /// Checks that an established watch still hears something (events or bookmarks).
    WatchCheck,
}

/// A watch that hears nothing for this long is presumed dead (its API server died):
/// the watcher lists and watches again through the next server.
const WATCH_SILENCE_MS: u64 = 8_000;
/// Events held while waiting for an earlier one the bus delivered late.
const REORDER_BUFFER_EVENTS: usize = 256;
/// A gap in the event sequence open this long means the event was lost.
const GAP_TIMEOUT_MS: u64 = 2_000;

enum Pending {
    Read,
    Update { read: i64 },
    Create,
    List,
    Watch,
}

pub struct ApiWorkload {
    config: ApiWorkloadConfig,
    next_id: u64,
    cursor: usize,
    pending: Option<(u64, Pending, Time)>,
    session: u64,
    watch_id: u64,
    watch_seq: u64,
    watch_heard: Time,
    /// The newest resourceVersion the current session has seen.
    last_revision: i64,
    resume_from: Option<i64>,
    early: std::collections::BTreeMap<u64, (Address, super::messages::WatchEvent)>,
    gap_since: Option<Time>,
}

fn request(
    verb: Verb,
    name: Option<&str>,
    body: Option<Value>,
    options: ListOptions,
) -> ApiRequest {
    ApiRequest {
        verb,
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        subresource: None,
        namespace: Some("default".into()),
        name: name.map(str::to_string),
        body: body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default(),
        options,
    }
}

fn revision_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl ApiWorkload {
    pub fn new(config: ApiWorkloadConfig) -> Result<Self, String> {
        if config.apiservers.is_empty()
            || !matches!(config.role.as_str(), "writer" | "watcher" | "services")
        {
            return Err(
                "an API workload needs API servers and a role of writer, watcher or services"
                    .into(),
            );
        }
        Ok(ApiWorkload {
            config,
            next_id: 0,
            cursor: 0,
            pending: None,
            session: 0,
            watch_id: 0,
            watch_seq: 0,
            watch_heard: Time(0),
            last_revision: 0,
            resume_from: None,
            early: std::collections::BTreeMap::new(),
            gap_since: None,
        })
    }

    fn report(&self, ctx: &mut Context<'_, Message, WorkloadTimer>, report: ApiReport) {
        ctx.emit(Message::Report(crate::message::Report::Api(report)));
    }

    fn send(
        &mut self,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
        pending: Pending,
        request: ApiRequest,
    ) {
        self.next_id += 1;
        let id = if matches!(pending, Pending::Watch) {
            self.watch_id
        } else {
            self.next_id
        };
        let to = self.config.apiservers[self.cursor % self.config.apiservers.len()].clone();
        ctx.send(to, Message::Api(ApiMessage::Request { id, request }));
        self.pending = Some((id, pending, ctx.now()));
        ctx.set_timer(
            WorkloadTimer::Timeout(id),
            Duration::from_millis(self.config.timeout_ms),
        );
    }

    fn next(&mut self, ctx: &mut Context<'_, Message, WorkloadTimer>) {
        if self.pending.is_some() {
            return;
        }
        match self.config.role.as_str() {
            "writer" => self.send(
                ctx,
                Pending::Read,
                request(Verb::Get, Some("shared"), None, ListOptions::default()),
            ),
            "services" => {
                let service = json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": { "generateName": format!("svc-{}-", self.config.client) },
                    "spec": { "selector": { "app": "x" }, "ports": [ { "port": 80 } ] }
                });
                let mut create = request(Verb::Create, None, Some(service), ListOptions::default());
                create.resource = "services".into();
                self.send(ctx, Pending::Create, create);
            }
            _ => match self.resume_from.take() {
                Some(from) => self.start_watch(ctx, from),
                None => self.send(
                    ctx,
                    Pending::List,
                    request(Verb::List, None, None, ListOptions::default()),
                ),
            },
        }
    }

    fn later(&self, ctx: &mut Context<'_, Message, WorkloadTimer>) {
        ctx.set_timer(
            WorkloadTimer::Next,
            Duration::from_millis(self.config.think_ms.max(1)),
        );
    }

    fn on_response(
        &mut self,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
        id: u64,
        response: ApiResponse,
    ) {
        let Some((pending_id, pending, _)) = self.pending.take() else {
            return;
        };
        if pending_id != id {
            self.pending = Some((pending_id, pending, ctx.now()));
            return;
        }
        let object: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let client = self.config.client;
        match pending {
            Pending::Read => match response.code {
                200 => {
                    let read = revision_of(&object);
                    let counter = object["data"]["counter"]
                        .as_str()
                        .and_then(|c| c.parse::<i64>().ok())
                        .unwrap_or(0);
                    let mut next = object.clone();
                    next["data"]["counter"] = json!((counter + 1).to_string());
                    next["data"]["writer"] = json!(client.to_string());
                    self.send(
                        ctx,
                        Pending::Update { read },
                        request(
                            Verb::Update,
                            Some("shared"),
                            Some(next),
                            ListOptions::default(),
                        ),
                    );
                }
                404 => {
                    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "shared" }, "data": { "counter": "1" } });
                    self.send(
                        ctx,
                        Pending::Create,
                        request(Verb::Create, None, Some(body), ListOptions::default()),
                    );
                }
                _ => self.later(ctx),
            },
            Pending::Update { read } => {
                match response.code {
                    200 => {
                        let counter = object["data"]["counter"]
                            .as_str()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        self.report(
                            ctx,
                            ApiReport::Updated {
                                client,
                                read,
                                written: revision_of(&object),
                                counter,
                            },
                        );
                    }
                    409 => self.report(ctx, ApiReport::Conflict { client, read }),
                    code if code >= 500 => self.report(ctx, ApiReport::Unsure { client }),
                    _ => {}
                }
                self.later(ctx);
            }
            Pending::Create => {
                match response.code {
                    201 => {
                        // Services report their IP; ConfigMaps their revision (what the
                        // ConfigMap watchers must see).
                        if let Some(ip) = object["spec"]["clusterIP"].as_str() {
                            let name = object["metadata"]["name"]
                                .as_str()
                                .unwrap_or("")
                                .to_string();
                            self.report(
                                ctx,
                                ApiReport::ServiceIp {
                                    client,
                                    name,
                                    ip: ip.to_string(),
                                },
                            );
                        } else {
                            self.report(
                                ctx,
                                ApiReport::Created {
                                    client,
                                    written: revision_of(&object),
                                },
                            )
                        }
                    }
                    code if code >= 500 => self.report(ctx, ApiReport::Unsure { client }),
                    _ => {}
                }
                self.later(ctx);
            }
            Pending::List => {
                if response.code != 200 {
                    return self.later(ctx);
                }
                let from = object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                self.start_watch(ctx, from);
            }
            Pending::Watch => {
                self.watch_heard = ctx.now();
                ctx.set_timer(WorkloadTimer::WatchCheck, Duration::from_millis(1_000));
                if response.code != 200 {
                    self.end_session(ctx, format!("watch refused with {}", response.code));
                }
                // Established: events follow; the watcher has nothing pending now.
            }
        }
    }

    /// Watches from `from` in a new session (after a list, or to resume where a dead
    /// server's watch stopped: the next server replays from its watch cache, or answers
    /// 410 and the watcher lists again).
    fn start_watch(&mut self, ctx: &mut Context<'_, Message, WorkloadTimer>, from: i64) {
        self.session += 1;
        self.next_id += 1;
        self.watch_id = self.next_id;
        self.watch_seq = 0;
        self.early.clear();
        self.gap_since = None;
        self.last_revision = from;
        let client = self.config.client;
        self.report(
            ctx,
            ApiReport::WatchStarted {
                client,
                session: self.session,
                from,
            },
        );
        let options = ListOptions {
            resource_version: from.to_string(),
            watch_id: self.watch_id,
            allow_watch_bookmarks: true,
            ..Default::default()
        };
        self.send(
            ctx,
            Pending::Watch,
            request(Verb::Watch, None, None, options),
        );
    }

    fn end_session(&mut self, ctx: &mut Context<'_, Message, WorkloadTimer>, reason: String) {
        // Resume from the last version seen, unless the server said it is too old.
        self.resume_from =
            (!reason.contains("410") && self.last_revision > 0).then_some(self.last_revision);
        let to = self.config.apiservers[self.cursor % self.config.apiservers.len()].clone();
        ctx.send(
            to,
            Message::Api(ApiMessage::StopWatch {
                watch_id: self.watch_id,
            }),
        );
        self.report(
            ctx,
            ApiReport::WatchEnded {
                client: self.config.client,
                session: self.session,
                reason,
            },
        );
        self.watch_id = 0;
        self.cursor += 1;
        self.later(ctx);
    }

    fn on_event(
        &mut self,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
        from: Address,
        watch_id: u64,
        seq: u64,
        event: super::messages::WatchEvent,
    ) {
        if watch_id != self.watch_id || self.watch_id == 0 {
            return;
        }
        if seq <= self.watch_seq {
            // A duplicate datagram: already handled.
            return;
        }
        if seq > self.watch_seq + 1 {
            // Early (the bus may reorder): hold it until the gap fills; a gap that stays
            // open (see WatchCheck) or a full buffer means an event was lost.
            self.early.insert(seq, (from, event));
            self.gap_since.get_or_insert(ctx.now());
            if self.early.len() > REORDER_BUFFER_EVENTS {
                let expected = self.watch_seq + 1;
                self.end_session(ctx, format!("event {expected} never arrived: one was lost"));
            }
            return;
        }
        self.deliver(ctx, from, watch_id, seq, event);
        while let Some((from, event)) = self.early.remove(&(self.watch_seq + 1)) {
            let seq = self.watch_seq + 1;
            self.deliver(ctx, from, watch_id, seq, event);
            if self.watch_id != watch_id {
                return;
            }
        }
        if self.early.is_empty() {
            self.gap_since = None;
        }
    }

    fn deliver(
        &mut self,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
        from: Address,
        watch_id: u64,
        seq: u64,
        event: super::messages::WatchEvent,
    ) {
        self.watch_seq = seq;
        self.watch_heard = ctx.now();
        if event.kind != EventType::Error {
            self.last_revision = self.last_revision.max(event.resource_version);
        }
        ctx.send(from, Message::Api(ApiMessage::EventAck { watch_id, seq }));
        match event.kind {
            EventType::Error => self.end_session(ctx, "the server ended the watch (410)".into()),
            EventType::Bookmark => {}
            kind => {
                let object: Value = serde_json::from_slice(&event.object).unwrap_or(Value::Null);
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                self.report(
                    ctx,
                    ApiReport::WatchEvent {
                        client: self.config.client,
                        session: self.session,
                        kind: kind.as_str().into(),
                        revision: event.resource_version,
                        name,
                    },
                );
            }
        }
    }
}

impl Actor for ApiWorkload {
    type Message = Message;
    type Timer = WorkloadTimer;

    fn handle(
        &mut self,
        input: Input<Message, WorkloadTimer>,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
    ) {
        match input {
            Input::Start(_) => {
                self.cursor = self.config.client as usize;
                ctx.set_timer(WorkloadTimer::Next, Duration::from_millis(500));
            }
            Input::Timer(WorkloadTimer::Next) => self.next(ctx),
            Input::Timer(WorkloadTimer::WatchCheck) => {
                if self.watch_id != 0 {
                    let gap_open = self.gap_since.is_some_and(|t| {
                        ctx.now().since(t) >= Duration::from_millis(GAP_TIMEOUT_MS)
                    });
                    if gap_open {
                        let expected = self.watch_seq + 1;
                        self.end_session(
                            ctx,
                            format!("event {expected} never arrived: one was lost"),
                        );
                    } else if ctx.now().since(self.watch_heard)
                        >= Duration::from_millis(WATCH_SILENCE_MS)
                    {
                        self.end_session(
                            ctx,
                            "the watch went silent (its API server may be gone)".into(),
                        );
                    } else {
                        ctx.set_timer(WorkloadTimer::WatchCheck, Duration::from_millis(1_000));
                    }
                }
            }
            Input::Timer(WorkloadTimer::Timeout(id)) => {
                if self.pending.as_ref().is_some_and(|(p, _, _)| *p == id) {
                    let (_, pending, _) = self.pending.take().expect("checked above");
                    if matches!(pending, Pending::Update { .. } | Pending::Create) {
                        self.report(
                            ctx,
                            ApiReport::Unsure {
                                client: self.config.client,
                            },
                        );
                    }
                    if matches!(pending, Pending::Watch) {
                        self.report(
                            ctx,
                            ApiReport::WatchEnded {
                                client: self.config.client,
                                session: self.session,
                                reason: "no answer".into(),
                            },
                        );
                        self.watch_id = 0;
                    }
                    // Balance: the next request goes to the next API server.
                    self.cursor += 1;
                    self.later(ctx);
                }
            }
            Input::Message { from, msg } => match msg {
                Message::Api(ApiMessage::Response { id, response }) => {
                    self.on_response(ctx, id, response)
                }
                Message::Api(ApiMessage::Event {
                    watch_id,
                    seq,
                    event,
                }) => self.on_event(ctx, from, watch_id, seq, event),
                _ => {}
            },
        }
    }

    fn status(&self) -> Value {
        json!({ "client": self.config.client, "role": self.config.role, "session": self.session })
    }
}
