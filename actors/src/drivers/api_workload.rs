//! A client of the API server that exercises its semantics and reports what it saw, for
//! the simulator's `api-replicas` checkers. It is built on the client library
//! ([`crate::apiserver::client`]): requests balance over the endpoints (API servers or a
//! balancer), and the watcher is an informer.
//!
//! Roles (config `role`):
//! * `writer` — read the shared ConfigMap `default/shared`, then update it with the
//!   resourceVersion it read (compare-and-swap); a Conflict means another writer won.
//! * `stalled` — a watcher that never acknowledges an event: the API server must cut it
//!   off (410) without slowing anyone else;
//! * `watcher` — an informer on ConfigMaps in `default`: list, then watch from the
//!   list's resourceVersion; on a lost event or a dead server it resumes, on 410 it
//!   lists and watches again.

use crate::apiserver::client::{
    ApiClient, ApiClientConfig, Change, Completion, InformerEvent, InformerSpec, Outputs,
    ResourceRef, TICK_MS,
};
use crate::apiserver::messages::{ApiMessage, ApiRequest, EventType, ListOptions};
use crate::message::Message;
use keel_engine::{Actor, Address, Context, Input};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

pub const KIND: &str = "api-workload";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiWorkloadConfig {
    pub client: u64,
    pub apiservers: Vec<Address>,
    pub role: String,
    /// Mean pause between requests. Each pause is drawn from ½..1½ of it: contending
    /// compare-and-swap writers with fixed pauses lock into one phase, and the one
    /// whose requests take a hop longer (through the balancer) then loses every race,
    /// which client-go's jittered retry-on-conflict backoff exists to avoid.
    pub think_ms: u64,
    pub timeout_ms: u64,
    /// When the first request goes out (after start).
    #[serde(default = "default_start_ms")]
    pub start_ms: u64,
}

fn default_start_ms() -> u64 {
    500
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
    /// A balancer took a backend out (`up` false) or brought it back.
    Backend {
        backend: String,
        up: bool,
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
    /// Drives the client library (timeouts, retries, the informer).
    Tick,
}

enum Pending {
    Read,
    Update { read: i64 },
    Create,
}

pub struct ApiWorkload {
    config: ApiWorkloadConfig,
    client: Option<ApiClient>,
    next_tag: u64,
    pending: Option<(u64, Pending)>,
    /// The watcher's informer and watch session.
    informer: u64,
    session: u64,
    in_session: bool,
    /// The stalled watcher's watch id (0 until it asks).
    stalled_watch: u64,
}

fn configmaps() -> ResourceRef {
    ResourceRef::new("v1", "configmaps")
}

fn revision_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn client_config(config: &ApiWorkloadConfig) -> ApiClientConfig {
    ApiClientConfig {
        request_timeout_ms: config.timeout_ms,
        ..ApiClientConfig::default()
    }
}

type Ctx<'a> = Context<'a, Message, WorkloadTimer>;

impl ApiWorkload {
    pub fn new(config: ApiWorkloadConfig) -> Result<Self, String> {
        if config.apiservers.is_empty()
            || !matches!(
                config.role.as_str(),
                "writer" | "watcher" | "services" | "stalled"
            )
        {
            return Err(
                "an API workload needs API servers and a role of writer, watcher, services or stalled"
                    .into(),
            );
        }
        // Fails now rather than at start if the client's configuration is bad.
        ApiClient::new(config.apiservers.clone(), client_config(&config), 0)?;
        Ok(ApiWorkload {
            config,
            client: None,
            next_tag: 0,
            pending: None,
            informer: 0,
            session: 0,
            in_session: false,
            stalled_watch: 0,
        })
    }

    fn report(&self, ctx: &mut Ctx<'_>, report: ApiReport) {
        ctx.emit(Message::Report(crate::message::Report::Api(report)));
    }

    fn send(&mut self, ctx: &mut Ctx<'_>, pending: Pending, request: ApiRequest) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        self.next_tag += 1;
        let now = ctx.now();
        match client.send(ctx, now, request, self.next_tag) {
            Ok(_) => self.pending = Some((self.next_tag, pending)),
            Err(_) => self.later(ctx),
        }
    }

    fn next(&mut self, ctx: &mut Ctx<'_>) {
        if self.pending.is_some() {
            return;
        }
        match self.config.role.as_str() {
            "writer" => self.send(
                ctx,
                Pending::Read,
                configmaps().get(Some("default"), "shared"),
            ),
            "services" => {
                let service = json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": { "generateName": format!("svc-{}-", self.config.client) },
                    "spec": { "selector": { "app": "x" }, "ports": [ { "port": 80 } ] }
                });
                let create = ResourceRef::new("v1", "services").create(Some("default"), &service);
                self.send(ctx, Pending::Create, create);
            }
            "stalled" if self.stalled_watch == 0 => {
                // A raw watch, outside the client library (which would acknowledge).
                self.stalled_watch = (1 << 40) + self.config.client;
                let request = configmaps().watch(
                    Some("default"),
                    ListOptions {
                        watch_id: self.stalled_watch,
                        ..ListOptions::default()
                    },
                );
                ctx.send(
                    self.config.apiservers[0].clone(),
                    Message::Api(ApiMessage::Request {
                        id: self.stalled_watch,
                        request,
                    }),
                );
            }
            _ => {}
        }
    }

    /// The stalled watcher hears an event and never acknowledges it.
    fn on_stalled(&mut self, ctx: &mut Ctx<'_>, msg: &ApiMessage) -> bool {
        let client = self.config.client;
        match msg {
            ApiMessage::Response { id, response } if *id == self.stalled_watch => {
                if response.code == 200 {
                    self.session = 1;
                    self.report(
                        ctx,
                        ApiReport::WatchStarted {
                            client,
                            session: 1,
                            from: 0,
                        },
                    );
                }
                true
            }
            ApiMessage::Event {
                watch_id, event, ..
            } if *watch_id == self.stalled_watch => {
                let object: Value = serde_json::from_slice(&event.object).unwrap_or(Value::Null);
                if event.kind == EventType::Error {
                    let reason = object["message"].as_str().unwrap_or("").to_string();
                    self.report(
                        ctx,
                        ApiReport::WatchEnded {
                            client,
                            session: 1,
                            reason,
                        },
                    );
                } else {
                    let name = object["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    self.report(
                        ctx,
                        ApiReport::WatchEvent {
                            client,
                            session: 1,
                            kind: event.kind.as_str().into(),
                            revision: event.resource_version,
                            name,
                        },
                    );
                }
                true
            }
            _ => false,
        }
    }

    fn later(&self, ctx: &mut Ctx<'_>) {
        let think_ms = self.config.think_ms.max(1);
        let pause_ms = ctx
            .rng()
            .gen_range(think_ms.div_ceil(2)..=think_ms + think_ms / 2);
        ctx.set_timer(WorkloadTimer::Next, Duration::from_millis(pause_ms));
    }

    fn on_completion(&mut self, ctx: &mut Ctx<'_>, completion: Completion) {
        let Some((tag, pending)) = self.pending.take() else {
            return;
        };
        if tag != completion.tag {
            self.pending = Some((tag, pending));
            return;
        }
        let client = self.config.client;
        let response = match completion.result {
            Ok(response) => response,
            Err(_) => {
                if matches!(pending, Pending::Update { .. } | Pending::Create) {
                    self.report(ctx, ApiReport::Unsure { client });
                }
                return self.later(ctx);
            }
        };
        let object = response.object();
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
                    self.send(ctx, Pending::Update { read }, configmaps().update(&next));
                }
                404 => {
                    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "shared" }, "data": { "counter": "1" } });
                    self.send(
                        ctx,
                        Pending::Create,
                        configmaps().create(Some("default"), &body),
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
        }
    }

    /// The watcher reports what its informer's watch sessions delivered: changes
    /// between `WatchStarted` and `WatchEnded` come from one watch, in order; changes a
    /// re-list found are not watch events and are not reported as such.
    fn on_informer(&mut self, ctx: &mut Ctx<'_>, event: InformerEvent) {
        if event.informer != self.informer {
            return;
        }
        let client = self.config.client;
        let (kind, object) = match &event.change {
            Change::WatchStarted { from } => {
                self.session += 1;
                self.in_session = true;
                let session = self.session;
                return self.report(
                    ctx,
                    ApiReport::WatchStarted {
                        client,
                        session,
                        from: *from,
                    },
                );
            }
            Change::WatchEnded { reason, .. } => {
                self.in_session = false;
                let session = self.session;
                let reason = reason.clone();
                return self.report(
                    ctx,
                    ApiReport::WatchEnded {
                        client,
                        session,
                        reason,
                    },
                );
            }
            Change::Synced { .. } => return,
            Change::Added(o) => ("ADDED", o),
            Change::Updated { new, .. } => ("MODIFIED", new),
            Change::Deleted(o) => ("DELETED", o),
        };
        if !self.in_session {
            return;
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.report(
            ctx,
            ApiReport::WatchEvent {
                client,
                session: self.session,
                kind: kind.into(),
                revision: event.revision,
                name,
            },
        );
    }

    fn on_outputs(&mut self, ctx: &mut Ctx<'_>, outputs: Outputs) {
        for event in outputs.events {
            self.on_informer(ctx, event);
        }
        for completion in outputs.completions {
            self.on_completion(ctx, completion);
        }
    }
}

impl Actor for ApiWorkload {
    type Message = Message;
    type Timer = WorkloadTimer;

    fn handle(&mut self, input: Input<Message, WorkloadTimer>, ctx: &mut Ctx<'_>) {
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>();
                let config = client_config(&self.config);
                let mut endpoints = self.config.apiservers.clone();
                // Spread the clients: each starts at a different server.
                let n = endpoints.len();
                endpoints.rotate_left(self.config.client as usize % n);
                // The configuration was checked in new().
                if let Ok(mut client) = ApiClient::new(endpoints, config, session) {
                    if self.config.role == "watcher" {
                        let spec = InformerSpec::new(configmaps()).in_namespace("default");
                        self.informer = client.inform(ctx.now(), spec).unwrap_or(0);
                    }
                    self.client = Some(client);
                }
                ctx.set_timer(
                    WorkloadTimer::Next,
                    Duration::from_millis(self.config.start_ms),
                );
                ctx.set_timer(WorkloadTimer::Tick, Duration::from_millis(TICK_MS));
            }
            Input::Timer(WorkloadTimer::Next) => self.next(ctx),
            Input::Timer(WorkloadTimer::Tick) => {
                ctx.set_timer(WorkloadTimer::Tick, Duration::from_millis(TICK_MS));
                let Some(client) = self.client.as_mut() else {
                    return;
                };
                let now = ctx.now();
                let outputs = client.on_tick(ctx, now);
                self.on_outputs(ctx, outputs);
            }
            Input::Message {
                from,
                msg: Message::Api(msg),
            } => {
                if self.stalled_watch != 0 && self.on_stalled(ctx, &msg) {
                    return;
                }
                let Some(client) = self.client.as_mut() else {
                    return;
                };
                let now = ctx.now();
                let outputs = client.on_message(ctx, now, from, msg);
                self.on_outputs(ctx, outputs);
            }
            Input::Message { .. } => {}
        }
    }

    fn status(&self) -> Value {
        json!({ "client": self.config.client, "role": self.config.role, "session": self.session })
    }
}
