//! The actor behind `keel bench store`: keeps `concurrency` requests in flight against
//! the store through the client library — puts of `value_bytes`-byte values for one
//! phase, then linearizable gets of the keys written — and reports every latency.
//!
//! Latencies come from `ctx.now()`, which is the wall clock in the real host. The
//! percentiles are computed by the command (hdrhistogram), not here.

use crate::message::Message;
use crate::store::client::{ClientConfig, StoreClient};
use crate::store::messages::{StoreMessage, StoreRequest};
use crate::store::types::{PutRequest, RangeRequest};
use keel_engine::{Actor, Address, Context, Control, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "store-bench";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub endpoints: Vec<Address>,
    /// Requests in flight at once ("clients").
    pub concurrency: usize,
    pub value_bytes: usize,
    /// Distinct keys written (`bench/<n>`).
    pub keys: u64,
    pub put_ms: u64,
    pub range_ms: u64,
    /// Time allowed for the cluster to elect a leader before measuring.
    pub warmup_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BenchTimer {
    Tick,
    Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Warmup,
    Put,
    Range,
    Done,
}

/// One phase's measurements, reported in `Control::Done`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub ops: u64,
    pub errors: u64,
    pub elapsed_ms: u64,
    pub latencies_us: Vec<u64>,
    pub first_error: Option<String>,
}

pub struct Bench {
    config: BenchConfig,
    client: StoreClient,
    phase: Phase,
    phase_started: Time,
    started: BTreeMap<u64, Time>,
    next_tag: u64,
    value: Vec<u8>,
    put: PhaseResult,
    range: PhaseResult,
}

impl Bench {
    pub fn new(config: BenchConfig) -> Result<Self, String> {
        if config.concurrency == 0 || config.concurrency > 100_000 || config.keys == 0 {
            return Err("concurrency must be within 1..=100000 and keys at least 1".into());
        }
        let client = StoreClient::new(config.endpoints.clone(), Self::client_config(&config), 0)?;
        Ok(Bench {
            value: vec![b'v'; config.value_bytes],
            config,
            client,
            phase: Phase::Warmup,
            phase_started: Time(0),
            started: BTreeMap::new(),
            next_tag: 0,
            put: PhaseResult::default(),
            range: PhaseResult::default(),
        })
    }

    fn client_config(config: &BenchConfig) -> ClientConfig {
        ClientConfig {
            inflight_max: config.concurrency * 2,
            request_timeout_ms: 5_000,
            ..ClientConfig::default()
        }
    }

    fn issue(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        let now = ctx.now();
        while self.started.len() < self.config.concurrency {
            let key = format!("bench/{}", ctx.rng().gen_range(0..self.config.keys)).into_bytes();
            let request = match self.phase {
                Phase::Warmup | Phase::Put => StoreRequest::Put(PutRequest {
                    key,
                    value: self.value.clone(),
                    ..Default::default()
                }),
                Phase::Range => StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                }),
                Phase::Done => return,
            };
            self.next_tag += 1;
            if self.client.send(ctx, now, request, self.next_tag).is_err() {
                return;
            }
            self.started.insert(self.next_tag, now);
            if self.phase == Phase::Warmup {
                // One probe at a time until the cluster answers.
                return;
            }
        }
    }

    fn next_phase(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        let now = ctx.now();
        let elapsed = now.since(self.phase_started).as_millis() as u64;
        let (next, after) = match self.phase {
            Phase::Warmup => (Phase::Put, self.config.put_ms),
            Phase::Put => {
                self.put.elapsed_ms = elapsed;
                (Phase::Range, self.config.range_ms)
            }
            Phase::Range => {
                self.range.elapsed_ms = elapsed;
                (Phase::Done, 0)
            }
            Phase::Done => return,
        };
        self.phase = next;
        self.phase_started = now;
        // Requests of the previous phase still in flight are not counted in the next.
        self.started.clear();
        if next == Phase::Done {
            let result = serde_json::json!({ "put": self.put, "range": self.range });
            ctx.control(Control::Done {
                ok: true,
                result: result.to_string(),
            });
        } else {
            ctx.set_timer(BenchTimer::Phase, Duration::from_millis(after));
        }
    }
}

impl Actor for Bench {
    type Message = Message;
    type Timer = BenchTimer;

    fn handle(
        &mut self,
        input: Input<Message, BenchTimer>,
        ctx: &mut Context<'_, Message, BenchTimer>,
    ) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>() | 1;
                if let Ok(client) = StoreClient::new(
                    self.config.endpoints.clone(),
                    Self::client_config(&self.config),
                    session,
                ) {
                    self.client = client;
                }
                self.phase_started = now;
                ctx.set_timer(BenchTimer::Tick, Duration::from_millis(100));
                ctx.set_timer(
                    BenchTimer::Phase,
                    Duration::from_millis(self.config.warmup_ms),
                );
                self.issue(ctx);
            }
            Input::Timer(BenchTimer::Tick) => {
                ctx.set_timer(BenchTimer::Tick, Duration::from_millis(100));
                let (completions, _) = self.client.on_tick(ctx, now);
                for done in completions {
                    self.started.remove(&done.tag);
                }
                self.issue(ctx);
            }
            Input::Timer(BenchTimer::Phase) => {
                self.next_phase(ctx);
                self.issue(ctx);
            }
            Input::Message {
                from,
                msg: Message::Store(StoreMessage::Response { id, result, leader }),
            } => {
                if let Some(done) = self.client.on_response(ctx, now, &from, id, result, leader) {
                    if let Some(started) = self.started.remove(&done.tag) {
                        let target = match self.phase {
                            Phase::Put => Some(&mut self.put),
                            Phase::Range => Some(&mut self.range),
                            _ => None,
                        };
                        if let Some(target) = target {
                            match &done.result {
                                Ok(_) => {
                                    target.ops += 1;
                                    target
                                        .latencies_us
                                        .push(now.since(started).as_micros() as u64);
                                }
                                Err(e) => {
                                    target.errors += 1;
                                    target.first_error.get_or_insert_with(|| e.to_string());
                                }
                            }
                        } else if done.result.is_ok() && self.phase == Phase::Warmup {
                            // The cluster answers: start measuring now.
                            self.next_phase(ctx);
                        }
                    }
                    self.issue(ctx);
                }
            }
            Input::Message { .. } => {}
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "put_ops": self.put.ops, "range_ops": self.range.ops, "inflight": self.started.len() })
    }
}
