//! The actor behind `keel bench store`: `concurrency` bench clients against the store —
//! closed loop (each client sends its next request when the last one ends: puts of
//! `value_bytes`-byte values for one phase, then linearizable gets of the keys written),
//! or open loop (`open_loop`: `etcdctl check perf`'s paced puts, [`super::check_perf`]).
//!
//! Every request sent during a measured phase is counted once, so that the figures
//! cannot look better by losing the slow ones: it ends as a success (its latency is the
//! time until the answer) or as an error — refused, timed out (the client gave up after
//! `request_timeout_ms`), or still in flight when the phase ended — whose latency is
//! the time until that happened, recorded beside the successes' so the percentiles
//! include it. The etcd side of `keel bench store --compare-etcd` counts the same way.
//!
//! Where requests go is `routing` ([`BenchRouting`]): the leader, through the client
//! library, or bench client `i` pinned to member `i % members`.
//!
//! Latencies come from `ctx.now()`, which is the wall clock in the real host. The
//! percentiles are computed by the command (hdrhistogram), not here.

use crate::client::store::Completion;
use crate::drivers::bench_routing::{BenchRouting, BenchSender};
use crate::drivers::check_perf::{check_perf_key, OpenLoopSchedule};
use crate::message::Message;
use crate::store::messages::{StoreMessage, StoreRequest};
use crate::store::types::{PutRequest, RangeRequest};
use keel_engine::{Actor, Address, Context, Control, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "store-bench";

/// How often the sender is ticked: a timed-out request is noticed within this.
const TICK_MS: u64 = 100;
/// How often an open-loop load hands puts over (the host's timer granularity).
const PACE_MS: u64 = 1;
/// Puts that fell due this long ago are still issued at a wake-up (a late timer).
pub const CATCH_UP_NS: u64 = 2_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub endpoints: Vec<Address>,
    /// Bench clients: requests in flight at once (closed loop), or workers taking
    /// paced puts from a queue of this many places (open loop).
    pub concurrency: usize,
    pub value_bytes: usize,
    /// Distinct keys written (`bench/<n>`) by the closed loop.
    pub keys: u64,
    pub put_ms: u64,
    /// The closed loop's get phase (the open loop has none).
    pub range_ms: u64,
    /// Time allowed for the cluster to elect a leader before measuring.
    pub warmup_ms: u64,
    /// To the leader, or each client pinned to one member.
    #[serde(default)]
    pub routing: BenchRouting,
    /// A request unanswered this long ends as an error (the latency it records).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Paced puts as `etcdctl check perf` makes them, instead of the closed loop.
    #[serde(default)]
    pub open_loop: Option<OpenLoop>,
}

pub fn default_request_timeout_ms() -> u64 {
    5_000
}

/// `etcdctl check perf`'s load: puts offered at `puts_per_s`, keys and values as
/// check.go makes them ([`check_perf_key`], `value_bytes` zero bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenLoop {
    pub puts_per_s: u64,
    /// After `put_ms`, how long queued and in-flight puts may take to finish (etcd's
    /// check waits for them); what is left then counts as errors.
    pub drain_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BenchTimer {
    Tick,
    Phase,
    Pace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Warmup,
    Put,
    /// Open loop only: no new puts; the queued and in-flight ones finish.
    Drain,
    Range,
    Done,
}

/// One phase's measurements, reported in `Control::Done`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Requests that succeeded.
    pub ops: u64,
    /// Requests that failed, timed out or were cut off by the phase's end.
    pub errors: u64,
    pub elapsed_ms: u64,
    /// One latency per request counted, successes and errors alike.
    pub latencies_us: Vec<u64>,
    pub first_error: Option<String>,
    /// Of `errors`: requests still in flight when the phase ended.
    #[serde(default)]
    pub unfinished: u64,
}

/// A request of the current phase in flight.
struct Outstanding {
    sent: Time,
    client: usize,
}

pub struct Bench {
    config: BenchConfig,
    sender: BenchSender,
    phase: Phase,
    phase_started: Time,
    /// By tag; requests of an earlier phase are no longer here.
    outstanding: BTreeMap<u64, Outstanding>,
    /// Bench clients with nothing in flight.
    idle: Vec<usize>,
    next_tag: u64,
    value: Vec<u8>,
    /// Open loop: when puts fall due, and how many wait for a free client.
    schedule: Option<OpenLoopSchedule>,
    queued: usize,
    last_completion: Time,
    put: PhaseResult,
    range: PhaseResult,
}

impl Bench {
    pub fn new(config: BenchConfig) -> Result<Self, String> {
        if config.concurrency == 0
            || config.concurrency > 100_000
            || config.keys == 0
            || config.request_timeout_ms == 0
        {
            return Err(
                "concurrency must be within 1..=100000, keys and request_timeout_ms at least 1"
                    .into(),
            );
        }
        if config.open_loop.as_ref().is_some_and(|o| o.puts_per_s == 0) {
            return Err("an open-loop rate must be at least 1 put per second".into());
        }
        let sender = Self::sender(&config, 0)?;
        let value = match config.open_loop {
            Some(_) => vec![0u8; config.value_bytes],
            None => vec![b'v'; config.value_bytes],
        };
        Ok(Bench {
            value,
            sender,
            phase: Phase::Warmup,
            phase_started: Time(0),
            outstanding: BTreeMap::new(),
            idle: (0..config.concurrency).rev().collect(),
            next_tag: 0,
            schedule: None,
            queued: 0,
            last_completion: Time(0),
            put: PhaseResult::default(),
            range: PhaseResult::default(),
            config,
        })
    }

    fn sender(config: &BenchConfig, session: u64) -> Result<BenchSender, String> {
        BenchSender::new(
            config.routing,
            config.endpoints.clone(),
            session,
            config.request_timeout_ms,
            // Room for the requests cut off at a phase's end, still unanswered.
            config.concurrency * 2,
        )
    }

    fn measured(&mut self) -> Option<&mut PhaseResult> {
        match self.phase {
            Phase::Put | Phase::Drain => Some(&mut self.put),
            Phase::Range => Some(&mut self.range),
            Phase::Warmup | Phase::Done => None,
        }
    }

    /// Counts one request of the current phase: a success or an error, and its latency
    /// either way (warm-up probes are not counted).
    fn record(&mut self, now: Time, sent: Time, outcome: Result<(), String>) {
        self.last_completion = now;
        let latency_us = now.since(sent).as_micros() as u64;
        let Some(result) = self.measured() else {
            return;
        };
        result.latencies_us.push(latency_us);
        match outcome {
            Ok(()) => result.ops += 1,
            Err(error) => {
                result.errors += 1;
                result.first_error.get_or_insert(error);
            }
        }
    }

    fn request(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) -> StoreRequest {
        if self.config.open_loop.is_some() {
            let key = check_perf_key(ctx.rng().gen_range(0..i64::MAX));
            return StoreRequest::Put(PutRequest {
                key,
                value: self.value.clone(),
                ..Default::default()
            });
        }
        let key = format!("bench/{}", ctx.rng().gen_range(0..self.config.keys)).into_bytes();
        match self.phase {
            Phase::Range => StoreRequest::Range(RangeRequest {
                key,
                ..Default::default()
            }),
            _ => StoreRequest::Put(PutRequest {
                key,
                value: self.value.clone(),
                ..Default::default()
            }),
        }
    }

    /// Sends one request from an idle client; false if none is idle or it was refused.
    fn issue_one(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) -> bool {
        let Some(client) = self.idle.pop() else {
            return false;
        };
        let now = ctx.now();
        let request = self.request(ctx);
        self.next_tag += 1;
        let tag = self.next_tag;
        match self.sender.send(ctx, now, client, request, tag) {
            Ok(_) => {
                self.outstanding
                    .insert(tag, Outstanding { sent: now, client });
                true
            }
            Err(error) => {
                // Refused before it left (the client's in-flight limit): an error now;
                // the client tries again at the next event.
                self.idle.push(client);
                self.record(now, now, Err(error.to_string()));
                false
            }
        }
    }

    fn issue(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        let open_loop = self.config.open_loop.is_some();
        match self.phase {
            // One probe at a time until the cluster answers.
            Phase::Warmup if self.outstanding.is_empty() => {
                self.issue_one(ctx);
            }
            Phase::Put | Phase::Range if !open_loop => while self.issue_one(ctx) {},
            Phase::Put | Phase::Drain if open_loop => {
                while self.queued > 0 && !self.idle.is_empty() {
                    self.queued -= 1;
                    if !self.issue_one(ctx) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// A request ended (answered, refused or given up by the sender).
    fn complete(&mut self, ctx: &mut Context<'_, Message, BenchTimer>, done: Completion) {
        let Some(outstanding) = self.outstanding.remove(&done.tag) else {
            // Cut off at the end of an earlier phase, and counted there.
            return;
        };
        self.idle.push(outstanding.client);
        if self.phase == Phase::Warmup {
            if done.result.is_ok() {
                // The cluster answers: start measuring now.
                self.next_phase(ctx);
            }
            return;
        }
        let outcome = done.result.map(|_| ()).map_err(|e| e.to_string());
        self.record(ctx.now(), outstanding.sent, outcome);
        self.finish_drain_if_empty(ctx);
    }

    /// Counts every request still in flight as an error ending now.
    fn cut_off(&mut self, now: Time) {
        let outstanding = std::mem::take(&mut self.outstanding);
        for (_, request) in outstanding {
            self.idle.push(request.client);
            self.record(
                now,
                request.sent,
                Err("still in flight when the phase ended".into()),
            );
            if let Some(result) = self.measured() {
                result.unfinished += 1;
            }
        }
    }

    /// Open loop, at the drain's deadline: puts handed over but never sent count as
    /// errors too (latency 0: they never left).
    fn count_never_sent(&mut self, now: Time) {
        for _ in 0..std::mem::take(&mut self.queued) {
            self.record(
                now,
                now,
                Err("queued, never sent before the drain ended".into()),
            );
        }
    }

    fn start_phase(&mut self, ctx: &mut Context<'_, Message, BenchTimer>, phase: Phase, ms: u64) {
        self.phase = phase;
        self.phase_started = ctx.now();
        ctx.set_timer(BenchTimer::Phase, Duration::from_millis(ms));
    }

    fn next_phase(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        let now = ctx.now();
        let elapsed_ms = now.since(self.phase_started).as_millis() as u64;
        match self.phase {
            Phase::Warmup => {
                // A probe still out was not part of any phase.
                self.cut_off(now);
                self.start_phase(ctx, Phase::Put, self.config.put_ms);
                if let Some(open_loop) = &self.config.open_loop {
                    self.schedule = Some(OpenLoopSchedule::new(
                        open_loop.puts_per_s,
                        now.0,
                        CATCH_UP_NS,
                    ));
                    ctx.set_timer(BenchTimer::Pace, Duration::from_millis(PACE_MS));
                }
            }
            Phase::Put => match self.config.open_loop.as_ref().map(|o| o.drain_ms) {
                Some(drain_ms) => {
                    // As etcd's check: what is queued and in flight may finish.
                    self.phase = Phase::Drain;
                    ctx.set_timer(BenchTimer::Phase, Duration::from_millis(drain_ms));
                    self.finish_drain_if_empty(ctx);
                }
                None => {
                    self.put.elapsed_ms = elapsed_ms;
                    self.cut_off(now);
                    self.start_phase(ctx, Phase::Range, self.config.range_ms);
                }
            },
            Phase::Drain => {
                self.put.elapsed_ms = elapsed_ms;
                self.cut_off(now);
                self.count_never_sent(now);
                self.finish(ctx);
            }
            Phase::Range => {
                self.range.elapsed_ms = elapsed_ms;
                self.cut_off(now);
                self.finish(ctx);
            }
            Phase::Done => {}
        }
    }

    /// Open loop: the run ends when the last put has ended; its time is the run's.
    fn finish_drain_if_empty(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        if self.phase != Phase::Drain || !self.outstanding.is_empty() || self.queued > 0 {
            return;
        }
        let elapsed = self.last_completion.since(self.phase_started);
        self.put.elapsed_ms = (elapsed.as_millis() as u64).max(1);
        self.finish(ctx);
    }

    fn finish(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        self.phase = Phase::Done;
        let result = serde_json::json!({
            "put": self.put,
            "range": self.range,
            "routing": self.config.routing,
            "redirects": self.sender.redirects(),
        });
        ctx.control(Control::Done {
            ok: true,
            result: result.to_string(),
        });
    }

    /// Open loop: hands over the puts that fell due, as far as the queue has room.
    fn pace(&mut self, ctx: &mut Context<'_, Message, BenchTimer>) {
        if self.phase != Phase::Put {
            return;
        }
        let room = self.config.concurrency.saturating_sub(self.queued);
        if let Some(schedule) = self.schedule.as_mut() {
            self.queued += schedule.take_due(ctx.now().0, room);
        }
        ctx.set_timer(BenchTimer::Pace, Duration::from_millis(PACE_MS));
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
                if let Ok(sender) = Self::sender(&self.config, session) {
                    self.sender = sender;
                }
                self.phase_started = now;
                ctx.set_timer(BenchTimer::Tick, Duration::from_millis(TICK_MS));
                ctx.set_timer(
                    BenchTimer::Phase,
                    Duration::from_millis(self.config.warmup_ms),
                );
                self.issue(ctx);
            }
            Input::Timer(BenchTimer::Tick) => {
                ctx.set_timer(BenchTimer::Tick, Duration::from_millis(TICK_MS));
                for done in self.sender.on_tick(ctx, now) {
                    self.complete(ctx, done);
                }
                self.issue(ctx);
            }
            Input::Timer(BenchTimer::Phase) => {
                self.next_phase(ctx);
                self.issue(ctx);
            }
            Input::Timer(BenchTimer::Pace) => {
                self.pace(ctx);
                self.issue(ctx);
            }
            Input::Message {
                from,
                msg: Message::Store(StoreMessage::Response { id, result, leader }),
            } => {
                if let Some(done) = self.sender.on_response(ctx, now, &from, id, result, leader) {
                    // A failed probe is not retried at once: the next tick sends another.
                    let failed_probe = self.phase == Phase::Warmup && done.result.is_err();
                    self.complete(ctx, done);
                    if !failed_probe {
                        self.issue(ctx);
                    }
                }
            }
            Input::Message { .. } => {}
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "put_ops": self.put.ops,
            "range_ops": self.range.ops,
            "errors": self.put.errors + self.range.errors,
            "inflight": self.outstanding.len(),
            "queued": self.queued,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_config_json() -> serde_json::Value {
        serde_json::json!({
            "endpoints": [Address::new("s1", crate::store::KIND, 0)],
            "concurrency": 4,
            "value_bytes": 8,
            "keys": 10,
            "put_ms": 1_000,
            "range_ms": 1_000,
            "warmup_ms": 100,
        })
    }

    /// A configuration and a phase result written before routing, timeouts, the open
    /// loop and cut-off counts existed still parse, with the old behaviour.
    #[test]
    fn older_json_still_parses() {
        let config: BenchConfig = serde_json::from_value(old_config_json()).expect("parses");
        assert_eq!(config.routing, BenchRouting::Leader);
        assert_eq!(config.request_timeout_ms, 5_000);
        assert_eq!(config.open_loop, None);
        assert!(Bench::new(config).is_ok());
        let phase: PhaseResult = serde_json::from_value(serde_json::json!({
            "ops": 1, "errors": 0, "elapsed_ms": 5, "latencies_us": [3], "first_error": null,
        }))
        .expect("parses");
        assert_eq!(phase.unfinished, 0);
    }

    /// No clients, or an open loop with no rate, is refused at construction.
    #[test]
    fn configuration_is_validated() {
        let config: BenchConfig = serde_json::from_value(old_config_json()).expect("parses");
        for broken in [
            BenchConfig {
                concurrency: 0,
                ..config.clone()
            },
            BenchConfig {
                request_timeout_ms: 0,
                ..config.clone()
            },
            BenchConfig {
                open_loop: Some(OpenLoop {
                    puts_per_s: 0,
                    drain_ms: 1_000,
                }),
                ..config.clone()
            },
        ] {
            assert!(Bench::new(broken).is_err());
        }
        let pinned = BenchConfig {
            routing: BenchRouting::Pinned,
            ..config
        };
        assert!(Bench::new(pinned).is_ok());
    }
}
