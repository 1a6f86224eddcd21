//! The actor contract.
//!
//! An actor is a deterministic state machine. The host hands it one [`Input`] at a time
//! (its start, a message, a timer it set) together with a [`Context`]; the actor answers
//! only through the context: messages to send, timers to set or cancel, writes to its
//! [`Storage`]. The context records those as an ordered list of [`Effect`]s.
//!
//! Durability order ("persist, then send") is structural: writes and syncs happen during
//! the handler, while sends are released by the host only after the handler returns. So
//! a message can never leave before the storage writes that precede it in the handler;
//! whether those writes were also *synced* is the actor's decision, and the simulator's
//! crash model punishes the wrong one.

use crate::address::Address;
use crate::envelope::Message;
use crate::storage::{Storage, StorageError, WriteBatch};
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

/// A point in time: nanoseconds since the Unix epoch by the host's clock (simulated,
/// and possibly skewed, in the simulator).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    pub fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1_000_000))
    }
    pub fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
    pub fn plus(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_nanos() as u64))
    }
    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// How an actor came to be started.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartKind {
    /// First start on an empty storage.
    Fresh,
    /// Start after a crash or stop: memory is gone, storage holds what was synced.
    Restart,
}

/// What an actor is asked to handle.
#[derive(Clone, Debug, PartialEq)]
pub enum Input<M, T> {
    Start(StartKind),
    Message { from: Address, msg: M },
    Timer(T),
}

/// A timer's identity on the wire of the host: the bincode encoding of the actor's
/// timer value. Setting a timer equal to a pending one replaces it.
pub type TimerKey = Vec<u8>;

/// What an actor did, in the order it did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect<M> {
    Send {
        to: Address,
        msg: M,
    },
    SetTimer {
        key: TimerKey,
        label: String,
        after_ms: u64,
    },
    CancelTimer {
        key: TimerKey,
        label: String,
    },
    Persist(WriteBatch),
    Sync,
    /// An observation for the host, not for another actor: invariant checkers in the
    /// simulator see it; the real host logs it at trace level (or prints it as a JSON
    /// line when asked). No host acts on an observation.
    Emit {
        msg: M,
    },
    /// A request to the host itself ([`Control`]): both hosts act on it.
    Control(Control),
}

/// What an actor asks of its host, as opposed to what it tells other actors. A small
/// closed set, defined here so that hosts act on engine types and never pattern-match
/// the domain's message vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// A line for the user: the real host prints it on stdout.
    Output { line: String },
    /// A command actor has finished: the real host stops the node and returns `result`
    /// (JSON text); `ok` false makes the command fail.
    Done { ok: bool, result: String },
    /// The actor cannot go on (its data is unusable, say): the real host stops the node
    /// with the reason rather than let it serve wrongly.
    Fatal { reason: String },
    /// The actor holds `role` (e.g. `store-leader`) from `term` on. The simulator's
    /// "kill the holder of a role" faults pick the machine of the latest claim.
    Claim { role: String, term: u64 },
}

/// The actor's window on the world for one input.
pub struct Context<'a, M, T> {
    me: &'a Address,
    now: Time,
    rng: &'a mut ChaCha8Rng,
    storage: &'a mut dyn Storage,
    effects: Vec<Effect<M>>,
    _timer: PhantomData<fn(T)>,
}

impl<'a, M: Message, T: Serialize + Debug> Context<'a, M, T> {
    pub(crate) fn new(
        me: &'a Address,
        now: Time,
        rng: &'a mut ChaCha8Rng,
        storage: &'a mut dyn Storage,
    ) -> Self {
        Context {
            me,
            now,
            rng,
            storage,
            effects: Vec::new(),
            _timer: PhantomData,
        }
    }

    pub(crate) fn into_effects(self) -> Vec<Effect<M>> {
        self.effects
    }

    /// This actor's own address.
    pub fn me(&self) -> &Address {
        self.me
    }

    /// The host's clock at the moment the input was delivered.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The actor's seeded random number generator (seed recorded in traces).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// Queues a message; it leaves after the handler returns (after its writes).
    pub fn send(&mut self, to: Address, msg: M) {
        self.effects.push(Effect::Send { to, msg });
    }

    /// Sets (or resets) `timer` to fire once after `after`, in whole milliseconds
    /// rounded up: never early (a deadline 0.4 ms away fires after 1 ms, not at once).
    pub fn set_timer(&mut self, timer: T, after: Duration) {
        self.effects.push(Effect::SetTimer {
            key: encode_timer(&timer),
            label: format!("{timer:?}"),
            after_ms: u64::try_from(after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
        });
    }

    /// Cancels `timer` if it is pending; a firing already under way is ignored.
    pub fn cancel_timer(&mut self, timer: T) {
        self.effects.push(Effect::CancelTimer {
            key: encode_timer(&timer),
            label: format!("{timer:?}"),
        });
    }

    /// Reports `msg` to the host (for invariant checkers and observability); it is not
    /// delivered to any actor.
    pub fn emit(&mut self, msg: M) {
        self.effects.push(Effect::Emit { msg });
    }

    /// Asks the host to act ([`Control`]): print a line, stop, record a role claim.
    pub fn control(&mut self, control: Control) {
        self.effects.push(Effect::Control(control));
    }

    /// Read access to this actor's storage (sees its own unsynced writes).
    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Writes a batch. Visible at once; durable only after [`Context::sync`].
    pub fn persist(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        self.storage.write(&batch)?;
        self.effects.push(Effect::Persist(batch));
        Ok(())
    }

    /// Makes every write so far durable before anything this handler sends leaves.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.storage.sync()?;
        self.effects.push(Effect::Sync);
        Ok(())
    }
}

fn encode_timer<T: Serialize>(timer: &T) -> TimerKey {
    // Timer values are the actor's own small enums: serialization cannot fail.
    bincode::serialize(timer).expect("timer serialization is infallible")
}

/// A component of the cluster as a state machine.
pub trait Actor: Send + 'static {
    /// The bus vocabulary this actor speaks (one enum for the whole cluster).
    type Message: Message;
    /// This actor's timers: a small enum.
    type Timer: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static;

    fn handle(
        &mut self,
        input: Input<Self::Message, Self::Timer>,
        ctx: &mut Context<'_, Self::Message, Self::Timer>,
    );

    /// A JSON picture of the actor's state for hosts, reports and invariant checks.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// An actor with its timer type erased, as hosts hold it.
pub trait DynActor<M: Message>: Send {
    /// Handles one input whose timer (if any) is still encoded. A timer key that does
    /// not decode (a trace from another build) is reported, not guessed at.
    fn handle_raw(
        &mut self,
        me: &Address,
        now: Time,
        rng: &mut ChaCha8Rng,
        storage: &mut dyn Storage,
        input: RawInput<M>,
    ) -> Result<Vec<Effect<M>>, String>;

    fn status(&self) -> serde_json::Value;
}

/// An [`Input`] whose timer is still a [`TimerKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RawInput<M> {
    Start(StartKind),
    Message { from: Address, msg: M },
    Timer(TimerKey),
}

impl<A: Actor> DynActor<A::Message> for A {
    fn handle_raw(
        &mut self,
        me: &Address,
        now: Time,
        rng: &mut ChaCha8Rng,
        storage: &mut dyn Storage,
        input: RawInput<A::Message>,
    ) -> Result<Vec<Effect<A::Message>>, String> {
        let input = match input {
            RawInput::Start(kind) => Input::Start(kind),
            RawInput::Message { from, msg } => Input::Message { from, msg },
            RawInput::Timer(key) => Input::Timer(
                bincode::deserialize::<A::Timer>(&key)
                    .map_err(|e| format!("timer key does not decode for {me}: {e}"))?,
            ),
        };
        let mut ctx = Context::<A::Message, A::Timer>::new(me, now, rng, storage);
        self.handle(input, &mut ctx);
        Ok(ctx.into_effects())
    }

    fn status(&self) -> serde_json::Value {
        Actor::status(self)
    }
}

/// Which actor to build and with what configuration: recorded in traces so a replay
/// can build the same actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSpec {
    /// The component kind ("selftest", "store", ...).
    pub kind: String,
    /// The component's configuration as JSON text.
    pub config_json: String,
}

/// Builds actors from specs; `keel-actors` provides the registry of every component.
pub trait ActorFactory<M: Message> {
    fn build(&self, address: &Address, spec: &ActorSpec) -> Result<Box<dyn DynActor<M>>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use rand::SeedableRng;

    /// Timer durations become whole milliseconds rounded up, so a timer never fires
    /// before the deadline it was set for.
    #[test]
    fn timers_round_up_to_whole_milliseconds() {
        let me = Address::new("m", "a", 0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut storage = MemStorage::default();
        let mut ctx: Context<'_, String, String> =
            Context::new(&me, Time(0), &mut rng, &mut storage);
        for micros in [0, 400, 1_000, 1_001, 5_000] {
            ctx.set_timer(format!("{micros}"), Duration::from_micros(micros));
        }
        let after: Vec<u64> = ctx
            .into_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::SetTimer { after_ms, .. } => Some(after_ms),
                _ => None,
            })
            .collect();
        assert_eq!(after, vec![0, 1, 1, 2, 5]);
    }
}
