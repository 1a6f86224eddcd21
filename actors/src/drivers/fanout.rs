//! The actor behind `keel bench api`'s watch fan-out figure: how many watchers of one
//! resource the API servers serve at a given event rate before the 99th percentile of
//! delivery latency passes a threshold (100 ms by default).
//!
//! One writer updates 16 ConfigMaps in turn at `rate_per_s` in all; `steps` give the number of watchers
//! (all in this actor, each its own watch) for successive rounds. Delivery latency of an
//! event is the time from sending the write that caused it to receiving it at a watcher
//! — the write's own latency included, as a controller reacting to a change sees it.
//! A round ends early (and the benchmark stops) when a watcher is cut off for falling
//! behind; otherwise the benchmark stops after the first round over the threshold.

use crate::apiserver::client::ResourceRef;
use crate::apiserver::messages::{ApiMessage, EventType, ListOptions, Verb};
use crate::message::Message;
use keel_engine::{Actor, Address, Context, Control, Input, Time};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "api-fanout-bench";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FanoutConfig {
    pub apiservers: Vec<Address>,
    /// Watchers in each round, increasing.
    pub steps: Vec<usize>,
    /// Writes (so events per watcher) per second.
    pub rate_per_s: u64,
    /// Measured time per round.
    pub round_ms: u64,
    /// Time for new watches to settle before a round is measured.
    pub settle_ms: u64,
    pub threshold_ms: u64,
    /// A watcher acknowledges every this many events (the API server cuts off a watcher
    /// more than 1000 behind).
    pub ack_every: u64,
    /// Latency samples kept per round (evenly thinned beyond it).
    pub samples_max: usize,
}

impl FanoutConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.apiservers.is_empty()
            || self.steps.is_empty()
            || self.steps.iter().any(|s| *s == 0 || *s > 100_000)
            || self.rate_per_s == 0
            || self.rate_per_s > 100_000
            || self.round_ms == 0
            || self.ack_every == 0
            || self.samples_max == 0
        {
            return Err("a fan-out bench needs API servers, watcher steps within 1..=100000 and a rate within 1..=100000".into());
        }
        Ok(())
    }
}

/// One round's outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutRound {
    pub watchers: usize,
    /// Writes that succeeded (each makes one event per watcher).
    pub writes: u64,
    /// Events expected (writes × watchers) and delivered within the round's drain.
    pub expected: u64,
    pub delivered: u64,
    /// Watchers the server cut off for falling behind.
    pub cut_off: u64,
    pub elapsed_ms: u64,
    pub p99_us: u64,
    pub latencies_us: Vec<u64>,
    /// How long the writes themselves took (send to answer).
    pub write_latencies_us: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FanoutTimer {
    /// Send the writes due.
    Write,
    /// The current stage is over.
    Stage,
}

const WRITE_TICK_MS: u64 = 10;
/// ConfigMaps written in turn.
const OBJECTS: usize = 16;
/// After a round's last write, events still arriving this long are counted.
const DRAIN_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Creating,
    Settling,
    Measuring,
    Draining,
    Done,
}

struct Watch {
    seq: u64,
    open: bool,
}

pub struct FanoutBench {
    config: FanoutConfig,
    stage: Stage,
    step: usize,
    next_id: u64,
    watches: BTreeMap<u64, Watch>,
    /// The latest resourceVersion written (new watches start after it).
    revision: i64,
    /// Writes in flight: request id → send time.
    writes: BTreeMap<u64, Time>,
    /// resourceVersion → send time of the write that made it (this round).
    sent_at: BTreeMap<i64, Time>,
    /// Events that arrived before their write's answer: resourceVersion → receive times.
    early: BTreeMap<i64, Vec<Time>>,
    /// Fractional writes carried between ticks (in thousandths).
    credit: u64,
    /// The ConfigMap written last, and how many exist.
    turn: usize,
    created: usize,
    round: FanoutRound,
    round_started: Time,
    rounds: Vec<FanoutRound>,
    /// Every n-th latency is kept (n grows as samples pile up).
    thinning: u64,
    seen: u64,
}

impl FanoutBench {
    pub fn new(config: FanoutConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(FanoutBench {
            config,
            stage: Stage::Creating,
            step: 0,
            next_id: 0,
            watches: BTreeMap::new(),
            revision: 0,
            writes: BTreeMap::new(),
            sent_at: BTreeMap::new(),
            early: BTreeMap::new(),
            credit: 0,
            turn: 0,
            created: 0,
            round: FanoutRound::default(),
            round_started: Time(0),
            rounds: Vec::new(),
            thinning: 1,
            seen: 0,
        })
    }

    fn server(&self, id: u64) -> Address {
        self.config.apiservers[(id as usize) % self.config.apiservers.len()].clone()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes one of the ConfigMaps, in turn (spread over several objects so that
    /// concurrent writes do not conflict).
    fn write(&mut self, ctx: &mut Context<'_, Message, FanoutTimer>, verb: Verb, object: usize) {
        let id = self.id();
        let name = format!("fanout-{object}");
        let body = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": "default" }, "data": { "n": id.to_string() } });
        let configmaps = ResourceRef::new("v1", "configmaps");
        let request = match verb {
            Verb::Update => configmaps.update(&body),
            _ => configmaps.create(None, &body),
        };
        ctx.send(
            self.server(id),
            Message::Api(ApiMessage::Request { id, request }),
        );
        self.writes.insert(id, ctx.now());
    }

    /// Opens watches up to this round's count, then lets them settle.
    fn start_step(&mut self, ctx: &mut Context<'_, Message, FanoutTimer>) {
        let want = self.config.steps[self.step];
        let open = self.watches.values().filter(|w| w.open).count();
        for _ in open..want {
            let id = self.id();
            let options = ListOptions {
                resource_version: self.revision.to_string(),
                watch_id: id,
                ..ListOptions::default()
            };
            let request = ResourceRef::new("v1", "configmaps").watch(Some("default"), options);
            ctx.send(
                self.server(id),
                Message::Api(ApiMessage::Request { id, request }),
            );
            self.watches.insert(id, Watch { seq: 0, open: true });
        }
        ctx.control(Control::Output {
            line: format!(
                "fan-out: {want} watchers, {} writes/s for {} ms",
                self.config.rate_per_s, self.config.round_ms
            ),
        });
        self.stage = Stage::Settling;
        ctx.set_timer(
            FanoutTimer::Stage,
            Duration::from_millis(self.config.settle_ms),
        );
    }

    fn record(&mut self, latency: Duration) {
        self.round.delivered += 1;
        self.seen += 1;
        if self.seen.is_multiple_of(self.thinning) {
            self.round.latencies_us.push(latency.as_micros() as u64);
            if self.round.latencies_us.len() >= self.config.samples_max {
                // Keep every other sample and halve the rate from now on.
                let kept: Vec<u64> = self.round.latencies_us.iter().step_by(2).copied().collect();
                self.round.latencies_us = kept;
                self.thinning *= 2;
            }
        }
    }

    fn finish_round(&mut self, ctx: &mut Context<'_, Message, FanoutTimer>) {
        let mut round = std::mem::take(&mut self.round);
        round.watchers = self.config.steps[self.step];
        round.expected = round.writes * round.watchers as u64;
        round.elapsed_ms = ctx.now().since(self.round_started).as_millis() as u64;
        let mut sorted = round.latencies_us.clone();
        sorted.sort_unstable();
        // Undelivered events count as over the threshold.
        let missing = round.expected.saturating_sub(round.delivered);
        round.p99_us = if sorted.is_empty() {
            u64::MAX
        } else {
            let total =
                sorted.len() as f64 * (1.0 + missing as f64 / round.delivered.max(1) as f64);
            let index = (total * 0.99).ceil() as usize;
            sorted
                .get(index.saturating_sub(1))
                .copied()
                .unwrap_or(u64::MAX)
        };
        let over = round.p99_us > self.config.threshold_ms * 1000 || round.cut_off > 0;
        ctx.control(Control::Output {
            line: format!(
                "fan-out: {} watchers: {} of {} events delivered, p99 {:.1} ms (writes: max {:.1} ms){}",
                round.watchers,
                round.delivered,
                round.expected,
                round.p99_us as f64 / 1000.0,
                round.write_latencies_us.iter().max().copied().unwrap_or(0) as f64 / 1000.0,
                if round.cut_off > 0 {
                    format!(", {} watchers cut off", round.cut_off)
                } else {
                    String::new()
                }
            ),
        });
        self.rounds.push(round);
        self.sent_at.clear();
        self.early.clear();
        self.thinning = 1;
        self.seen = 0;
        if over || self.step + 1 >= self.config.steps.len() {
            self.stage = Stage::Done;
            ctx.control(Control::Done {
                ok: true,
                result: json!({ "rate_per_s": self.config.rate_per_s, "threshold_ms": self.config.threshold_ms,
                                "rounds": self.rounds }).to_string(),
            });
            for (id, w) in &self.watches {
                if w.open {
                    ctx.send(
                        self.server(*id),
                        Message::Api(ApiMessage::StopWatch { watch_id: *id }),
                    );
                }
            }
            return;
        }
        self.step += 1;
        self.start_step(ctx);
    }
}

impl Actor for FanoutBench {
    type Message = Message;
    type Timer = FanoutTimer;

    fn handle(
        &mut self,
        input: Input<Message, FanoutTimer>,
        ctx: &mut Context<'_, Message, FanoutTimer>,
    ) {
        match input {
            Input::Start(_) | Input::Timer(FanoutTimer::Stage) if self.stage == Stage::Creating => {
                self.created = 0;
                for object in 0..OBJECTS {
                    self.write(ctx, Verb::Create, object);
                }
            }
            Input::Start(_) => {}
            Input::Timer(FanoutTimer::Stage) => match self.stage {
                Stage::Creating => {}
                Stage::Settling => {
                    self.stage = Stage::Measuring;
                    self.round_started = ctx.now();
                    self.credit = 0;
                    ctx.set_timer(FanoutTimer::Write, Duration::from_millis(WRITE_TICK_MS));
                    ctx.set_timer(
                        FanoutTimer::Stage,
                        Duration::from_millis(self.config.round_ms),
                    );
                }
                Stage::Measuring => {
                    self.stage = Stage::Draining;
                    ctx.set_timer(FanoutTimer::Stage, Duration::from_millis(DRAIN_MS));
                }
                Stage::Draining => self.finish_round(ctx),
                Stage::Done => {}
            },
            Input::Timer(FanoutTimer::Write) => {
                if self.stage != Stage::Measuring {
                    return;
                }
                ctx.set_timer(FanoutTimer::Write, Duration::from_millis(WRITE_TICK_MS));
                self.credit += self.config.rate_per_s * WRITE_TICK_MS;
                while self.credit >= 1000 {
                    self.credit -= 1000;
                    self.turn = (self.turn + 1) % OBJECTS;
                    self.write(ctx, Verb::Update, self.turn);
                }
            }
            Input::Message {
                from,
                msg: Message::Api(msg),
            } => match msg {
                ApiMessage::Response { id, response } => {
                    if let Some(sent) = self.writes.remove(&id) {
                        let object: serde_json::Value =
                            serde_json::from_slice(&response.body).unwrap_or_default();
                        let revision: i64 = object["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        self.revision = self.revision.max(revision);
                        match self.stage {
                            Stage::Creating => {
                                if response.code == 201 || response.code == 409 {
                                    self.created += 1;
                                    if self.created == OBJECTS {
                                        self.start_step(ctx);
                                    }
                                } else if self.writes.is_empty() {
                                    // The API server is not ready yet: try again.
                                    ctx.set_timer(FanoutTimer::Stage, Duration::from_millis(500));
                                }
                            }
                            Stage::Measuring | Stage::Draining if revision > 0 => {
                                // Only writes that succeeded make events.
                                self.round.writes += 1;
                                self.round
                                    .write_latencies_us
                                    .push(ctx.now().since(sent).as_micros() as u64);
                                self.sent_at.insert(revision, sent);
                                for received in self.early.remove(&revision).unwrap_or_default() {
                                    self.record(received.since(sent));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ApiMessage::Event {
                    watch_id,
                    seq,
                    event,
                } => {
                    let Some(watch) = self.watches.get_mut(&watch_id) else {
                        return;
                    };
                    watch.seq = watch.seq.max(seq);
                    if seq.is_multiple_of(self.config.ack_every) {
                        ctx.send(from, Message::Api(ApiMessage::EventAck { watch_id, seq }));
                    }
                    match event.kind {
                        EventType::Error => {
                            watch.open = false;
                            self.round.cut_off += 1;
                        }
                        EventType::Modified
                            if matches!(self.stage, Stage::Measuring | Stage::Draining) =>
                        {
                            let now = ctx.now();
                            match self.sent_at.get(&event.resource_version) {
                                Some(sent) => {
                                    let sent = *sent;
                                    self.record(now.since(sent));
                                }
                                None => self
                                    .early
                                    .entry(event.resource_version)
                                    .or_default()
                                    .push(now),
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
            Input::Message { .. } => {}
        }
    }
}
