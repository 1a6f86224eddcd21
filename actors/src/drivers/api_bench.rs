//! The actor behind `keel bench api`: keeps `concurrency` API requests in flight against
//! the API servers — creates, then gets, then updates, then lists of ConfigMaps (or
//! Pods: `object`) — and reports every latency (the command computes hdrhistogram
//! percentiles).

use crate::apiserver::messages::{ApiMessage, ApiRequest, ListOptions, Verb};
use crate::drivers::store_bench::PhaseResult;
use crate::message::Message;
use keel_engine::{Actor, Address, Context, Control, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "api-bench";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiBenchConfig {
    pub apiservers: Vec<Address>,
    pub concurrency: usize,
    pub phase_ms: u64,
    pub warmup_ms: u64,
    pub value_bytes: usize,
    /// What the requests create, read and update.
    #[serde(default)]
    pub object: BenchObject,
}

/// The object the bench works on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchObject {
    /// A ConfigMap whose data holds the value (admission: namespace and quota).
    #[default]
    Configmap,
    /// A Pod carrying the value as an annotation (admission: namespace, LimitRanges
    /// and quota — the reads the create path batches).
    Pod,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiBenchTimer {
    Phase,
    Retry,
}

const PHASES: [&str; 4] = ["create", "get", "update", "list"];

pub struct ApiBench {
    config: ApiBenchConfig,
    /// Index into PHASES, or None while warming up.
    phase: Option<usize>,
    phase_started: Time,
    inflight: BTreeMap<u64, Time>,
    next_id: u64,
    created: u64,
    /// Names known to exist (creates that succeeded), for gets and updates.
    existing: Vec<u64>,
    /// Which name each create in flight carries.
    creating: BTreeMap<u64, u64>,
    results: Vec<PhaseResult>,
    value: String,
    done: bool,
}

impl ApiBench {
    pub fn new(config: ApiBenchConfig) -> Result<Self, String> {
        if config.apiservers.is_empty() || config.concurrency == 0 || config.concurrency > 100_000 {
            return Err(
                "an API bench needs API servers and a concurrency within 1..=100000".into(),
            );
        }
        Ok(ApiBench {
            value: "v".repeat(config.value_bytes),
            config,
            phase: None,
            phase_started: Time(0),
            inflight: BTreeMap::new(),
            next_id: 0,
            created: 0,
            existing: Vec::new(),
            creating: BTreeMap::new(),
            results: vec![PhaseResult::default(); PHASES.len()],
            done: false,
        })
    }

    fn request(&mut self, ctx: &mut Context<'_, Message, ApiBenchTimer>) -> ApiRequest {
        let pods = self.config.object == BenchObject::Pod;
        let configmap = |name: String, value: &str| {
            if pods {
                // What admission and defaulting would add is given, so an update that
                // sends the same body changes only the annotation (pod updates may not
                // change the spec).
                json!({ "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": name, "labels": { "bench": "yes" }, "annotations": { "v": value } },
                    "spec": { "containers": [{ "name": "c", "image": "busybox" }],
                        "serviceAccountName": "default", "priority": 0 } })
            } else {
                json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": { "bench": "yes" } }, "data": { "v": value } })
            }
        };
        let base = |verb: Verb, name: Option<String>, body: Option<serde_json::Value>| ApiRequest {
            verb,
            group: String::new(),
            version: "v1".into(),
            resource: if pods { "pods" } else { "configmaps" }.into(),
            subresource: None,
            namespace: Some("default".into()),
            name,
            body: body
                .map(|b| serde_json::to_vec(&b).unwrap_or_default())
                .unwrap_or_default(),
            options: ListOptions::default(),
        };
        let pick = |this: &mut Self, ctx: &mut Context<'_, Message, ApiBenchTimer>| -> u64 {
            if this.existing.is_empty() {
                1
            } else {
                this.existing[ctx.rng().gen_range(0..this.existing.len())]
            }
        };
        match self.phase.map(|p| PHASES[p]) {
            None | Some("create") => {
                self.created += 1;
                self.creating.insert(self.next_id, self.created);
                base(
                    Verb::Create,
                    None,
                    Some(configmap(format!("bench-{}", self.created), &self.value)),
                )
            }
            Some("get") => {
                let n = pick(self, ctx);
                base(Verb::Get, Some(format!("bench-{n}")), None)
            }
            Some("update") => {
                let n = pick(self, ctx);
                let name = format!("bench-{n}");
                base(
                    Verb::Update,
                    Some(name.clone()),
                    Some(configmap(name, &self.value)),
                )
            }
            _ => {
                let mut list = base(Verb::List, None, None);
                list.options.limit = 100;
                list
            }
        }
    }

    fn fill(&mut self, ctx: &mut Context<'_, Message, ApiBenchTimer>) {
        let target = if self.phase.is_none() {
            1
        } else {
            self.config.concurrency
        };
        while !self.done && self.inflight.len() < target {
            self.next_id += 1;
            let id = self.next_id;
            let request = self.request(ctx);
            let to = self.config.apiservers[(id as usize) % self.config.apiservers.len()].clone();
            ctx.send(to, Message::Api(ApiMessage::Request { id, request }));
            self.inflight.insert(id, ctx.now());
        }
    }

    fn next_phase(&mut self, ctx: &mut Context<'_, Message, ApiBenchTimer>) {
        let now = ctx.now();
        if let Some(p) = self.phase {
            self.results[p].elapsed_ms = now.since(self.phase_started).as_millis() as u64;
        }
        let next = self.phase.map(|p| p + 1).unwrap_or(0);
        self.inflight.clear();
        if next >= PHASES.len() {
            self.done = true;
            let result: serde_json::Map<String, serde_json::Value> = PHASES
                .iter()
                .zip(&self.results)
                .map(|(name, r)| {
                    (
                        name.to_string(),
                        serde_json::to_value(r).unwrap_or_default(),
                    )
                })
                .collect();
            ctx.control(Control::Done {
                ok: true,
                result: serde_json::Value::Object(result).to_string(),
            });
            return;
        }
        self.phase = Some(next);
        self.phase_started = now;
        ctx.set_timer(
            ApiBenchTimer::Phase,
            Duration::from_millis(self.config.phase_ms),
        );
    }
}

impl Actor for ApiBench {
    type Message = Message;
    type Timer = ApiBenchTimer;

    fn handle(
        &mut self,
        input: Input<Message, ApiBenchTimer>,
        ctx: &mut Context<'_, Message, ApiBenchTimer>,
    ) {
        match input {
            Input::Start(_) => {
                self.phase_started = ctx.now();
                ctx.set_timer(
                    ApiBenchTimer::Phase,
                    Duration::from_millis(self.config.warmup_ms),
                );
                ctx.set_timer(ApiBenchTimer::Retry, Duration::from_millis(500));
                self.fill(ctx);
            }
            Input::Timer(ApiBenchTimer::Phase) => {
                self.next_phase(ctx);
                self.fill(ctx);
            }
            Input::Timer(ApiBenchTimer::Retry) => {
                // Requests lost with a dead connection are forgotten after a while.
                let now = ctx.now();
                self.inflight
                    .retain(|_, sent| now.since(*sent) < Duration::from_secs(10));
                ctx.set_timer(ApiBenchTimer::Retry, Duration::from_millis(500));
                self.fill(ctx);
            }
            Input::Message {
                msg: Message::Api(ApiMessage::Response { id, response }),
                ..
            } => {
                let Some(sent) = self.inflight.remove(&id) else {
                    return;
                };
                if let Some(n) = self.creating.remove(&id) {
                    if response.code == 201 {
                        self.existing.push(n);
                    }
                }
                let now = ctx.now();
                match self.phase {
                    Some(p) => {
                        let result = &mut self.results[p];
                        if (200..300).contains(&response.code) {
                            result.ops += 1;
                            result.latencies_us.push(now.since(sent).as_micros() as u64);
                        } else {
                            result.errors += 1;
                            result.first_error.get_or_insert_with(|| {
                                format!(
                                    "{}: {}",
                                    response.code,
                                    String::from_utf8_lossy(&response.body)
                                )
                            });
                        }
                    }
                    None if response.code == 201 => self.next_phase(ctx),
                    None => {}
                }
                self.fill(ctx);
            }
            Input::Message { .. } => {}
        }
    }
}
