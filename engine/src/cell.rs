//! [`ActorCell`]: what every host wraps around an actor.
//!
//! The cell owns the actor, its seeded RNG and its pending-timer table, and turns one
//! input into one [`Step`]: the effects the actor produced, the timers the host must
//! schedule, and (when recording) the trace event. Both hosts and the replayer drive
//! actors only through cells, so they cannot disagree on timer or RNG semantics.
//!
//! Drive loop, as a host runs it:
//! 1. build the actor from its [`ActorSpec`] and call [`ActorCell::start`];
//! 2. for every message addressed to it call [`ActorCell::deliver`];
//! 3. when a scheduled [`TimerFiring`] comes due call [`ActorCell::fire`] — stale
//!    firings (timer reset or cancelled since) are dropped here and never reach the actor;
//! 4. after each step, release `step.effects`' sends and schedule `step.timers`.

use crate::actor::{ActorSpec, DynActor, Effect, RawInput, StartKind, Time, TimerKey};
use crate::address::Address;
use crate::envelope::Message;
use crate::storage::{dump, Storage};
use crate::trace::{RecordedInput, TraceEvent};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A timer the host must fire after `after_ms`, naming the generation it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerFiring {
    pub key: TimerKey,
    pub generation: u64,
}

/// The result of one input.
#[derive(Debug)]
pub struct Step<M> {
    pub effects: Vec<Effect<M>>,
    /// Timers set by this step, to be fired by the host after the given milliseconds.
    pub timers: Vec<(TimerFiring, u64)>,
    /// The trace event, when the cell records.
    pub event: Option<TraceEvent<M>>,
    /// Set when the actor could not handle the input (an undecodable timer key).
    pub error: Option<String>,
}

impl<M> Step<M> {
    /// The messages to release, in order.
    pub fn sends(&self) -> impl Iterator<Item = (&Address, &M)> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Send { to, msg } => Some((to, msg)),
            _ => None,
        })
    }
}

pub struct ActorCell<M: Message> {
    address: Address,
    spec: ActorSpec,
    actor: Box<dyn DynActor<M>>,
    rng: ChaCha8Rng,
    /// Pending timers and the generation of their latest setting.
    timers: BTreeMap<TimerKey, u64>,
    next_generation: u64,
    recording: bool,
    inputs_handled: u64,
}

impl<M: Message> ActorCell<M> {
    /// Builds the cell and delivers the start input.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        address: Address,
        spec: ActorSpec,
        actor: Box<dyn DynActor<M>>,
        rng_seed: u64,
        kind: StartKind,
        now: Time,
        storage: &mut dyn Storage,
        recording: bool,
    ) -> (Self, Step<M>) {
        let mut cell = ActorCell {
            address,
            spec,
            actor,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            timers: BTreeMap::new(),
            next_generation: 0,
            recording,
            inputs_handled: 0,
        };
        let recorded = if recording {
            Some(RecordedInput::Start {
                kind,
                spec: cell.spec.clone(),
                rng_seed,
                // A trace replays from exactly what the actor saw on disk at start.
                storage: dump(storage).unwrap_or_default(),
            })
        } else {
            None
        };
        let step = cell.run(now, RawInput::Start(kind), recorded, storage);
        (cell, step)
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn spec(&self) -> &ActorSpec {
        &self.spec
    }

    pub fn inputs_handled(&self) -> u64 {
        self.inputs_handled
    }

    pub fn status(&self) -> serde_json::Value {
        self.actor.status()
    }

    /// Delivers a message.
    pub fn deliver(
        &mut self,
        now: Time,
        from: Address,
        msg: M,
        storage: &mut dyn Storage,
    ) -> Step<M> {
        let recorded = self.recording.then(|| RecordedInput::Message {
            from: from.clone(),
            msg: msg.clone(),
        });
        self.run(now, RawInput::Message { from, msg }, recorded, storage)
    }

    /// Fires a timer if `firing` is still its latest setting; `None` if stale.
    pub fn fire(
        &mut self,
        now: Time,
        firing: &TimerFiring,
        storage: &mut dyn Storage,
    ) -> Option<Step<M>> {
        if self.timers.get(&firing.key) != Some(&firing.generation) {
            return None;
        }
        self.timers.remove(&firing.key);
        let recorded = self.recording.then(|| RecordedInput::Timer {
            key: firing.key.clone(),
        });
        Some(self.run(now, RawInput::Timer(firing.key.clone()), recorded, storage))
    }

    /// Runs one input through the actor (the replayer calls this directly).
    pub(crate) fn run(
        &mut self,
        now: Time,
        input: RawInput<M>,
        recorded: Option<RecordedInput<M>>,
        storage: &mut dyn Storage,
    ) -> Step<M> {
        self.inputs_handled += 1;
        let (effects, error) =
            match self
                .actor
                .handle_raw(&self.address, now, &mut self.rng, storage, input)
            {
                Ok(effects) => (effects, None),
                Err(e) => (Vec::new(), Some(e)),
            };
        let mut timers = Vec::new();
        for effect in &effects {
            match effect {
                Effect::SetTimer { key, after_ms, .. } => {
                    self.next_generation += 1;
                    self.timers.insert(key.clone(), self.next_generation);
                    timers.push((
                        TimerFiring {
                            key: key.clone(),
                            generation: self.next_generation,
                        },
                        *after_ms,
                    ));
                }
                Effect::CancelTimer { key, .. } => {
                    self.timers.remove(key);
                }
                _ => {}
            }
        }
        let event = recorded.map(|input| TraceEvent {
            actor: self.address.clone(),
            time: now,
            input,
            effects: effects.clone(),
        });
        Step {
            effects,
            timers,
            event,
            error,
        }
    }
}
