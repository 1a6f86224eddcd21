//! The controller runtime: what every controller (quota, ReplicaSet, Deployment,
//! endpoints, node lifecycle, …) is built on. kube-runtime's `Controller` is the model.
//!
//! ```text
//!  API server ──events──▶ informers (ApiClient) ──changes──▶ keys_for ──▶ WorkQueue
//!                                     │                                     │ pop
//!                                     └──────── Caches ────▶ reconcile(key) ◀┘
//!                                                                │ actions
//!  API server ◀──requests── ApiClient ◀──────────────────────────┘
//!             ──answers──▶ all done: forget + requeue_after │ one failed: rate-limited requeue
//! ```
//!
//! A controller is a [`Reconciler`]: the informers it reads, which keys a change makes
//! worth looking at, and a **pure** `reconcile` — cached state in, [`Reconcile`] out
//! (requests to send, and when to look again). The runtime owns the rest:
//! * nothing is reconciled before every informer has listed once (`synced`), and every
//!   key is enqueued after each (re-)list and every `resync_ms`;
//! * the queue de-duplicates keys, and a key stays *processing* until every action of
//!   its pass has been answered — so a controller never acts twice on a cache that has
//!   not yet seen its first actions (the role client-go's "expectations" play);
//! * a pass whose action failed (a 409 from a stale cache, a 5xx, an ambiguous write) is
//!   requeued with exponential backoff; a clean pass forgets the backoff and honours
//!   `requeue_after`.
//!
//! Reconcile functions take no clock: what depends on time (a deadline, a grace period)
//! reads `now` from [`Caches::now`], so a table test sets it.

use super::api::{ApiClient, ApiClientError, Change, Completion, Informer, InformerSpec, Outputs};
use super::queue::{QueueConfig, WorkQueue};
use super::{earliest, Outbox};
use crate::apiserver::messages::ApiRequest;
use keel_engine::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    pub queue: QueueConfig,
    /// Every key is reconciled again this often (level-triggered safety net).
    pub resync_ms: u64,
    /// Keys reconciled per call of [`Controller::run`]; the rest wait for the next.
    pub reconciles_per_run: usize,
    /// Actions in flight at once across all keys; keys wait while it is reached.
    pub actions_inflight_max: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            queue: QueueConfig::default(),
            resync_ms: 300_000,
            reconciles_per_run: 64,
            actions_inflight_max: 256,
        }
    }
}

impl ControllerConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.queue.validate()?;
        if self.resync_ms == 0 || self.reconciles_per_run == 0 || self.actions_inflight_max == 0 {
            return Err(
                "controller resync_ms, reconciles_per_run and actions_inflight_max must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What a controller's informers hold, as its reconcile function sees them.
pub struct Caches<'a> {
    informers: Vec<&'a Informer>,
    now: Time,
}

impl<'a> Caches<'a> {
    /// For table tests: caches built from informers the test filled.
    pub fn new(informers: Vec<&'a Informer>, now: Time) -> Self {
        Caches { informers, now }
    }

    /// The `source`-th informer of [`Reconciler::informers`].
    pub fn get(&self, source: usize) -> &'a Informer {
        self.informers[source]
    }

    pub fn len(&self) -> usize {
        self.informers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.informers.is_empty()
    }

    /// The host's clock when the pass began.
    pub fn now(&self) -> Time {
        self.now
    }
}

/// The outcome of one reconcile pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconcile {
    /// Requests to send; the key is done when all are answered.
    pub actions: Vec<ApiRequest>,
    /// Look at the key again after this long (if the pass succeeds).
    pub requeue_after: Option<Duration>,
}

impl Reconcile {
    /// Nothing to do.
    pub fn done() -> Self {
        Reconcile::default()
    }

    pub fn act(actions: Vec<ApiRequest>) -> Self {
        Reconcile {
            actions,
            requeue_after: None,
        }
    }

    pub fn after(delay: Duration) -> Self {
        Reconcile {
            actions: Vec::new(),
            requeue_after: Some(delay),
        }
    }
}

/// A controller's logic; the runtime ([`Controller`]) drives it.
pub trait Reconciler {
    /// What the controller reconciles: usually an object's namespace and name.
    type Key: Ord + Clone + Debug;

    /// The informers it reads, in a fixed order (their index is their `source`).
    fn informers(&self) -> Vec<InformerSpec>;

    /// The keys worth reconciling after `change`, seen by informer `source`.
    fn keys_for(&self, source: usize, change: &Change, caches: &Caches<'_>) -> Vec<Self::Key>;

    /// Every key a resync looks at.
    fn all_keys(&self, caches: &Caches<'_>) -> Vec<Self::Key>;

    /// Pure: cached state in, actions out.
    fn reconcile(&self, key: &Self::Key, caches: &Caches<'_>) -> Reconcile;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ControllerStats {
    pub reconciles: u64,
    pub actions: u64,
    pub failed_actions: u64,
    pub resyncs: u64,
}

/// A pass whose actions are in flight.
struct Pass {
    left: usize,
    failed: bool,
    requeue_after: Option<Duration>,
}

/// The runtime around one [`Reconciler`]. It shares its host's [`ApiClient`]: request
/// tags from `tag_base` up are its own (give each controller a disjoint range).
pub struct Controller<R: Reconciler> {
    reconciler: R,
    config: ControllerConfig,
    queue: WorkQueue<R::Key>,
    /// Informer ids in the client, by source.
    informers: Vec<u64>,
    synced: bool,
    next_resync: Option<Time>,
    tag_base: u64,
    next_tag: u64,
    /// Action tag → its key.
    actions: BTreeMap<u64, R::Key>,
    passes: BTreeMap<R::Key, Pass>,
    pub stats: ControllerStats,
}

/// Tags a controller may use above its base.
pub const TAG_RANGE: u64 = 1 << 40;

impl<R: Reconciler> Controller<R> {
    pub fn new(reconciler: R, config: ControllerConfig, tag_base: u64) -> Result<Self, String> {
        config.validate()?;
        Ok(Controller {
            reconciler,
            queue: WorkQueue::new(config.queue.clone())?,
            config,
            informers: Vec::new(),
            synced: false,
            next_resync: None,
            tag_base,
            next_tag: 0,
            actions: BTreeMap::new(),
            passes: BTreeMap::new(),
            stats: ControllerStats::default(),
        })
    }

    pub fn reconciler(&self) -> &R {
        &self.reconciler
    }

    /// Keys queued, waiting or processing.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Starts the controller's informers in `client`.
    pub fn start(&mut self, client: &mut ApiClient, now: Time) -> Result<(), ApiClientError> {
        for spec in self.reconciler.informers() {
            self.informers.push(client.inform(now, spec)?);
        }
        Ok(())
    }

    fn owns_tag(&self, tag: u64) -> bool {
        tag >= self.tag_base && tag < self.tag_base + TAG_RANGE
    }

    fn caches<'a>(&self, client: &'a ApiClient, now: Time) -> Option<Caches<'a>> {
        let informers: Option<Vec<&Informer>> = self
            .informers
            .iter()
            .map(|id| client.informer(*id))
            .collect();
        Some(Caches::new(informers?, now))
    }

    /// Takes what in `outputs` is this controller's — its informers' changes (keys
    /// enqueued) and its actions' answers (passes finished) — leaving the rest for the
    /// host or other controllers.
    pub fn absorb(&mut self, client: &ApiClient, now: Time, outputs: &mut Outputs) {
        let mut relisted = false;
        let mut keys = Vec::new();
        if let Some(caches) = self.caches(client, now) {
            for event in &outputs.events {
                let Some(source) = self.informers.iter().position(|id| *id == event.informer)
                else {
                    continue;
                };
                match &event.change {
                    Change::Synced { .. } => relisted = true,
                    Change::WatchStarted { .. } | Change::WatchEnded { .. } => {}
                    change => keys.extend(self.reconciler.keys_for(source, change, &caches)),
                }
            }
            let all_synced = (0..caches.len()).all(|i| caches.get(i).synced());
            if all_synced && (relisted || !self.synced) {
                self.synced = true;
                self.stats.resyncs += 1;
                keys.extend(self.reconciler.all_keys(&caches));
                self.next_resync = Some(now.plus(Duration::from_millis(self.config.resync_ms)));
            }
        }
        for key in keys {
            self.queue.add(key);
        }
        let ours: Vec<Completion>;
        (ours, outputs.completions) = std::mem::take(&mut outputs.completions)
            .into_iter()
            .partition(|c| self.owns_tag(c.tag));
        for completion in ours {
            let ok = matches!(&completion.result, Ok(r) if r.ok());
            self.action_done(now, completion.tag, ok);
        }
    }

    fn action_done(&mut self, now: Time, tag: u64, ok: bool) {
        let Some(key) = self.actions.remove(&tag) else {
            return;
        };
        if !ok {
            self.stats.failed_actions += 1;
        }
        let Some(pass) = self.passes.get_mut(&key) else {
            return;
        };
        pass.failed |= !ok;
        pass.left -= 1;
        if pass.left == 0 {
            let pass = self.passes.remove(&key).expect("present");
            self.finish(now, key, pass.failed, pass.requeue_after);
        }
    }

    fn finish(&mut self, now: Time, key: R::Key, failed: bool, requeue_after: Option<Duration>) {
        self.queue.done(&key);
        if failed {
            self.queue.add_rate_limited(key, now);
        } else {
            self.queue.forget(&key);
            if let Some(delay) = requeue_after {
                self.queue.add_after(key, now, delay);
            }
        }
    }

    /// Reconciles the keys that are ready (up to `reconciles_per_run`) and sends their
    /// actions. Call after [`Controller::absorb`] and on the host's timer.
    pub fn run(&mut self, client: &mut ApiClient, out: &mut dyn Outbox, now: Time) {
        if !self.synced {
            return;
        }
        if self.next_resync.is_some_and(|at| now >= at) {
            self.stats.resyncs += 1;
            let keys = match self.caches(client, now) {
                Some(caches) => self.reconciler.all_keys(&caches),
                None => Vec::new(),
            };
            for key in keys {
                self.queue.add(key);
            }
            self.next_resync = Some(now.plus(Duration::from_millis(self.config.resync_ms)));
        }
        for _ in 0..self.config.reconciles_per_run {
            if self.actions.len() >= self.config.actions_inflight_max {
                break;
            }
            let Some(key) = self.queue.pop(now) else {
                break;
            };
            let outcome = match self.caches(client, now) {
                Some(caches) => self.reconciler.reconcile(&key, &caches),
                None => Reconcile::after(Duration::from_secs(1)),
            };
            self.stats.reconciles += 1;
            if outcome.actions.is_empty() {
                self.finish(now, key, false, outcome.requeue_after);
                continue;
            }
            let mut pass = Pass {
                left: 0,
                failed: false,
                requeue_after: outcome.requeue_after,
            };
            for action in outcome.actions {
                self.next_tag = (self.next_tag + 1) % TAG_RANGE;
                let tag = self.tag_base + self.next_tag;
                match client.send(out, now, action, tag) {
                    Ok(_) => {
                        self.stats.actions += 1;
                        self.actions.insert(tag, key.clone());
                        pass.left += 1;
                    }
                    Err(_) => pass.failed = true,
                }
            }
            if pass.left == 0 {
                self.finish(now, key, pass.failed, pass.requeue_after);
            } else {
                self.passes.insert(key, pass);
            }
        }
    }

    /// When [`Controller::run`] next has work that waits for time: a delayed key, or the
    /// next resync. (Ready keys are taken by the `run` that follows `absorb`.)
    pub fn next_deadline(&self, now: Time) -> Option<Time> {
        if !self.synced {
            return None;
        }
        let ready =
            self.queue.has_ready(now) && self.actions.len() < self.config.actions_inflight_max;
        earliest(
            earliest(self.queue.next_deadline(), self.next_resync),
            ready.then_some(now),
        )
    }
}
