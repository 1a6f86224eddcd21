//! The API server actor: Kubernetes REST semantics over the store. Stateless: every
//! object lives in the store; the only memory is the watch cache (rebuilt from the
//! store) and requests in flight. Any number of replicas serve the same data.
//!
//! Drive loop, per API request:
//! 1. route: the resource must be served; the verb decides the steps;
//! 2. each step is one store request through the client library (`StoreClient`), and
//!    the store's answer moves the operation on: create = one admission read (namespace,
//!    LimitRanges, PriorityClass, quotas in a read-only txn), then a txn "create if
//!    absent and the namespace and quotas are unchanged"; update = read, then a txn "write if unchanged since" (the
//!    object's resourceVersion is its mod revision, so a stale update is a Conflict);
//!    delete = read, then DeleteOptions (preconditions, grace period), the pod's grace
//!    period and finalizers decide between marking (`deletionTimestamp`,
//!    `deletionGracePeriodSeconds`) and removing — a scheduled pod is marked for its
//!    grace period and removed by a later delete with grace 0 (the kubelet's);
//! 3. the answer is an object, a list, or a `Status` with Kubernetes' reason and code.
//!
//! Watches are served from a per-resource watch cache: one store watch on the
//! resource's prefix feeds every API watcher of that resource. Each watcher has a
//! bounded budget of unacknowledged events and is closed with 410 when it falls
//! behind, so it never slows the others; a resourceVersion older than the cache's
//! window is answered with 410 Expired too, and the client re-lists.
//!
//! Files: this one holds the state (operations and their [`Stage`], caches, watchers),
//! request routing, the store's answers and the dispatch of each stage to its verb's
//! file — [`read`] (get, list, continue tokens), [`create`] (preparation, one-read
//! admission, the create transaction and allocations), [`update`], [`delete`] (options,
//! grace periods, removal), [`watch`] (watchers and their events), [`cache`] (the watch
//! cache), [`housekeeping`] (compaction rounds, system namespaces), [`common`] (answers
//! and object helpers) and [`config`].

use super::admission;
use super::messages::{
    ApiMessage, ApiRequest, ApiResponse, EventType, ListOptions, Verb, WatchEvent,
};
use super::object::{
    finalizers, labels, meta_str, metadata_mut, parse_rfc3339, qualified, rfc3339, spec_part,
    status,
};
use super::resources::{Resource, RESOURCES};
use super::selectors::{parse_field_selector, parse_label_selector, FieldSelector, LabelSelector};
use super::{defaults, validation};
use crate::client::Outbox;
use crate::message::Message;
use crate::store::client::{ClientConfig, Completion, StoreClient, WatchOutput};
use crate::store::messages::{StoreMessage, StoreRequest, StoreResponse, WatchCreate};
use crate::store::types::{
    prefix_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    EventType as StoreEventType, KeyValue, PutRequest, RangeRequest, RequestOp, ResponseOp,
    StoreError, TxnRequest,
};
use keel_engine::{Actor, Address, Context, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

mod cache;
mod common;
mod config;
mod create;
mod delete;
mod housekeeping;
mod read;
mod update;
mod watch;

use cache::*;
use common::*;
pub use config::*;
use create::*;
use delete::*;
use update::*;

pub const KIND: &str = "apiserver";

/// The key whose version counts compaction rounds (kube-apiserver's
/// `compact_rev_key`).
const COMPACT_KEY: &str = "/registry/compact_rev_key";

/// Namespaces that exist from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The server's timers: one at the store client's own next deadline (a request timing
/// out or resent, a watch gap to give up on), re-armed after every input, and a coarse
/// housekeeping round for what is periodic by nature (bookmarks, compaction rounds,
/// retrying the system namespaces) — not a fixed tick that wakes every idle server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiTimer {
    Client,
    Housekeeping,
}

/// The housekeeping round. Bookmarks (every `bookmark_ms`, 5 s by default) and
/// compaction rounds are due to within this much; the system namespaces are retried
/// every `BOOTSTRAP_RETRY_ROUNDS` rounds while any is missing.
const HOUSEKEEPING_MS: u64 = 250;
const BOOTSTRAP_RETRY_ROUNDS: u64 = 4;

/// Where an operation is.
#[derive(Clone, Debug)]
enum Stage {
    Get,
    List,
    /// Admission of a namespaced create: everything it must read (the namespace, a
    /// Pod's LimitRanges and PriorityClass, the quotas, what a new quota counts) in one
    /// read-only transaction.
    CreateAdmit {
        reads: AdmitReads,
    },
    CreateWrite,
    UpdateRead,
    UpdateWrite {
        replace_with: Value,
    },
    DeleteRead,
    /// Reading the namespace's quotas to credit an object being removed.
    DeleteCheckQuota {
        old: Value,
        mod_revision: i64,
    },
    DeleteWrite {
        old: Value,
    },
    Bootstrap,
    /// The compaction round's compare-and-swap on the compaction key.
    CompactClaim,
    /// The compaction itself.
    Compact,
}

/// Where each admission read of a create sits in its read transaction's responses (the
/// namespace is always first).
#[derive(Clone, Debug, Default)]
struct AdmitReads {
    /// The namespace's LimitRanges (Pods).
    limits: Option<usize>,
    /// The PriorityClass a Pod names.
    priority: Option<usize>,
    /// The namespace's ResourceQuotas.
    quotas: usize,
    /// What a new ResourceQuota counts: each counted resource's objects.
    counted: Vec<(usize, &'static Resource)>,
}

struct Op {
    client: Option<(Address, u64)>,
    request: ApiRequest,
    resource: &'static Resource,
    stage: Stage,
    attempts: u32,
    prepared: Option<Value>,
    /// Quotas written with the object: key, mod revision read, new value.
    quota_writes: Vec<(Vec<u8>, i64, Value)>,
    /// A create's object before admission changed it (LimitRange defaults, priority,
    /// quota usage): a create whose admission must run again starts from it.
    unadmitted: Option<Value>,
    /// The mod revision of the namespace a create was admitted in: the write compares
    /// it, so nothing is created in a namespace that began terminating meanwhile.
    namespace_revision: Option<i64>,
}

struct Cache {
    /// The client library's id of the store watch feeding this cache.
    store_watch: Option<u64>,
    ready: bool,
    loading: bool,
    revision: i64,
    objects: BTreeMap<Vec<u8>, (Value, i64)>,
    /// Recent events (revision, event), oldest first.
    window: VecDeque<(i64, EventType, Value)>,
    /// Watchers waiting for the initial load.
    waiting: Vec<(Address, u64)>,
    /// Every event after this revision is in `window` (the cache can resume a watch
    /// from any version at or after it).
    window_start: i64,
    /// The revision the load in flight reads at (0: current).
    loading_from: i64,
    /// A historical load failed (compacted): load the current state instead.
    historical_failed: bool,
}

struct Watcher {
    resource: &'static Resource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    seq: u64,
    acked: u64,
    bookmarks: bool,
    last_sent: Time,
    start: String,
    /// Set once the watcher got its starting events; live events before that would
    /// arrive ahead of older ones.
    begun: bool,
    /// The newest revision this watcher was sent (or asked to start after): a cache
    /// that is still catching up must not send it anything older.
    sent_revision: i64,
}

pub struct ApiServer {
    config: ApiServerConfig,
    client: StoreClient,
    ops: BTreeMap<u64, Op>,
    next_op: u64,
    caches: BTreeMap<&'static str, Cache>,
    watchers: BTreeMap<(Address, u64), Watcher>,
    /// System namespaces not yet confirmed to exist (the store may have no leader yet
    /// when the API server starts: retried every second until done).
    bootstrap_pending: Vec<String>,
    /// Housekeeping rounds so far.
    ticks: u64,
    /// When the client timer is set to fire (the store client's deadline it was set for).
    client_timer: Option<Time>,
    pub served: u64,
    /// Compaction rounds: the compaction key's version this server last saw, the revision
    /// to compact at the next round, and when the last round started.
    compact_version: i64,
    compact_revision: i64,
    compact_round_at: Option<Time>,
}

type Ctx<'a> = Context<'a, Message, ApiTimer>;

impl Op {
    /// What the request names: its resource, name, namespace and the store key.
    fn target(&self) -> (&'static Resource, String, Option<String>, Vec<u8>) {
        let name = self.request.name.clone().unwrap_or_default();
        let namespace = self.request.namespace.clone();
        let key = self.resource.key(namespace.as_deref(), &name).into_bytes();
        (self.resource, name, namespace, key)
    }
}

impl ApiServer {
    pub fn new(config: ApiServerConfig) -> Result<Self, String> {
        config.validate()?;
        let client = StoreClient::new(
            config.store_endpoints.clone(),
            Self::client_config(&config),
            0,
        )?;
        Ok(ApiServer {
            config,
            client,
            ops: BTreeMap::new(),
            next_op: 0,
            caches: BTreeMap::new(),
            watchers: BTreeMap::new(),
            bootstrap_pending: SYSTEM_NAMESPACES.iter().map(|n| n.to_string()).collect(),
            ticks: 0,
            client_timer: None,
            served: 0,
            compact_version: 0,
            compact_revision: 0,
            compact_round_at: None,
        })
    }

    fn client_config(config: &ApiServerConfig) -> ClientConfig {
        ClientConfig {
            inflight_max: config.requests_max,
            ..ClientConfig::default()
        }
    }

    fn reply(&mut self, ctx: &mut Ctx<'_>, client: Option<(Address, u64)>, response: ApiResponse) {
        self.served += 1;
        if let Some((to, id)) = client {
            ctx.send(to, Message::Api(ApiMessage::Response { id, response }));
        }
    }

    fn store(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        op_id: u64,
        request: StoreRequest,
    ) -> Result<(), StoreError> {
        self.client.send(out, now, request, op_id).map(|_| ())
    }

    /// Sends an operation's next store request; `Some` is the answer when it cannot be
    /// sent (the operation ends there).
    fn next_step(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        op_id: u64,
        request: StoreRequest,
    ) -> Option<ApiResponse> {
        self.store(out, now, op_id, request)
            .err()
            .map(|e| store_failure(&e))
    }

    // ----- starting an operation ----------------------------------------------------

    fn on_request(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, request: ApiRequest) {
        let client = Some((from.clone(), id));
        let Some(resource) = Resource::find(&request.group, &request.resource) else {
            let message = format!(
                "the server could not find the requested resource ({})",
                request.resource
            );
            return self.reply(ctx, client, failure(404, "NotFound", message));
        };
        if resource.version != request.version {
            let message = format!(
                "the server could not find the requested resource ({} {})",
                request.resource, request.version
            );
            return self.reply(ctx, client, failure(404, "NotFound", message));
        }
        if resource.namespaced
            && request.namespace.is_none()
            && matches!(request.verb, Verb::Create)
        {
            return self.reply(
                ctx,
                client,
                failure(400, "BadRequest", "a namespace is required".into()),
            );
        }
        if request.verb == Verb::Watch {
            return self.watch_start(ctx, from, resource, request);
        }
        if self.ops.len() >= self.config.requests_max {
            let message = format!(
                "too many requests in flight (limit {})",
                self.config.requests_max
            );
            return self.reply(ctx, client, failure(429, "TooManyRequests", message));
        }
        let name = request.name.clone().unwrap_or_default();
        let key = resource
            .key(request.namespace.as_deref(), &name)
            .into_bytes();
        let (stage, store_request) = match request.verb {
            Verb::Get => (
                Stage::Get,
                StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                }),
            ),
            Verb::List => match self.list_request(resource, &request) {
                Ok(range) => (Stage::List, StoreRequest::Range(range)),
                Err(response) => return self.reply(ctx, client, response),
            },
            Verb::Create => {
                let prepared = match self.prepare_create(ctx, resource, &request) {
                    Ok(p) => p,
                    Err(response) => return self.reply(ctx, client, response),
                };
                let op_id = self.new_op(
                    client,
                    request.clone(),
                    resource,
                    Stage::CreateWrite,
                    Some(prepared),
                );
                return self.create_step(ctx, op_id);
            }
            Verb::Update => (
                Stage::UpdateRead,
                StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                }),
            ),
            Verb::Delete => {
                // Bad DeleteOptions are refused before anything is read.
                if let Err(response) = delete_options(&request.body) {
                    return self.reply(ctx, client, response);
                }
                (
                    Stage::DeleteRead,
                    delete_read(resource, request.namespace.as_deref(), key),
                )
            }
            Verb::Watch => unreachable!("watches are handled above"),
        };
        let op_id = self.new_op(client, request, resource, stage, None);
        let now = ctx.now();
        if let Err(e) = self.store(ctx, now, op_id, store_request) {
            let op = self.ops.remove(&op_id);
            self.reply(ctx, op.and_then(|o| o.client), store_failure(&e));
        }
    }

    fn new_op(
        &mut self,
        client: Option<(Address, u64)>,
        request: ApiRequest,
        resource: &'static Resource,
        stage: Stage,
        prepared: Option<Value>,
    ) -> u64 {
        self.next_op += 1;
        self.ops.insert(
            self.next_op,
            Op {
                client,
                request,
                resource,
                stage,
                attempts: 0,
                unadmitted: prepared.clone(),
                prepared,
                quota_writes: Vec::new(),
                namespace_revision: None,
            },
        );
        self.next_op
    }

    // ----- store answers ------------------------------------------------------------

    fn on_store_completion(&mut self, ctx: &mut Ctx<'_>, done: Completion) {
        let op_id = done.tag;
        let Some(mut op) = self.ops.remove(&op_id) else {
            return;
        };
        if matches!(op.stage, Stage::Bootstrap) {
            // Created now or already there: either way this namespace exists.
            if let (Ok(_), Some(name)) = (&done.result, &op.request.name) {
                self.bootstrap_pending.retain(|n| n != name);
            }
            return;
        }
        let response = match done.result {
            Err(error) => Some(store_failure(&error)),
            Ok(result) => self.advance(ctx, op_id, &mut op, result),
        };
        match response {
            Some(response) => {
                let client = op.client.clone();
                if matches!(op.stage, Stage::Bootstrap) {
                    return;
                }
                self.reply(ctx, client, response);
            }
            None => {
                self.ops.insert(op_id, op);
            }
        }
    }

    /// Moves an operation on by its stage (each verb's steps are in its own file);
    /// `Some` is the final answer.
    fn advance(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        match op.stage {
            Stage::Get | Stage::List => self.advance_read(ctx, op_id, op, result),
            Stage::CreateAdmit { .. } | Stage::CreateWrite => {
                self.advance_create(ctx, op_id, op, result)
            }
            Stage::UpdateRead | Stage::UpdateWrite { .. } => {
                self.advance_update(ctx, op_id, op, result)
            }
            Stage::DeleteRead | Stage::DeleteCheckQuota { .. } | Stage::DeleteWrite { .. } => {
                self.advance_delete(ctx, op_id, op, result)
            }
            Stage::Bootstrap | Stage::CompactClaim | Stage::Compact => {
                self.advance_housekeeping(ctx, op_id, op, result)
            }
        }
    }

    // ----- watches ------------------------------------------------------------------
}

impl Actor for ApiServer {
    type Message = Message;
    type Timer = ApiTimer;

    fn handle(&mut self, input: Input<Message, ApiTimer>, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>() | 1;
                if let Ok(client) = StoreClient::new(
                    self.config.store_endpoints.clone(),
                    Self::client_config(&self.config),
                    session,
                ) {
                    self.client = client;
                }
                ctx.set_timer(
                    ApiTimer::Housekeeping,
                    Duration::from_millis(HOUSEKEEPING_MS),
                );
                self.bootstrap(ctx);
            }
            Input::Timer(ApiTimer::Client) => {
                self.client_timer = None;
                let (completions, outputs) = self.client.on_tick(ctx, now);
                for done in completions {
                    self.completion(ctx, done);
                }
                for (watch, output) in outputs
                    .into_iter()
                    .chain(self.client.take_compacted_watches())
                {
                    self.on_cache_events(ctx, watch, output);
                }
            }
            Input::Timer(ApiTimer::Housekeeping) => {
                ctx.set_timer(
                    ApiTimer::Housekeeping,
                    Duration::from_millis(HOUSEKEEPING_MS),
                );
                self.bookmarks(ctx);
                self.maybe_compact(ctx);
                self.ticks += 1;
                if !self.bootstrap_pending.is_empty()
                    && self.ticks.is_multiple_of(BOOTSTRAP_RETRY_ROUNDS)
                {
                    self.bootstrap(ctx);
                }
            }
            Input::Message { from, msg } => match msg {
                Message::Api(ApiMessage::Request { id, request }) => {
                    self.on_request(ctx, from, id, request)
                }
                Message::Api(ApiMessage::EventAck { watch_id, seq }) => {
                    if let Some(w) = self.watchers.get_mut(&(from, watch_id)) {
                        w.acked = w.acked.max(seq.min(w.seq));
                    }
                }
                Message::Api(ApiMessage::StopWatch { watch_id }) => {
                    self.watchers.remove(&(from, watch_id));
                }
                Message::Api(ApiMessage::Probe { id }) => {
                    // Ready once the system namespaces are known to exist (the store
                    // answered writes at least once).
                    let ready = self.bootstrap_pending.is_empty();
                    let response = ApiResponse {
                        code: if ready { 200 } else { 503 },
                        body: if ready {
                            b"ok".to_vec()
                        } else {
                            b"not ready: bootstrapping".to_vec()
                        },
                    };
                    ctx.send(from, Message::Api(ApiMessage::Response { id, response }));
                }
                Message::Store(StoreMessage::Response { id, result, leader }) => {
                    if let Some(done) = self.client.on_response(ctx, now, &from, id, result, leader)
                    {
                        self.completion(ctx, done);
                    }
                }
                Message::Store(StoreMessage::Watch(events)) => {
                    for (watch, output) in self.client.on_watch(ctx, now, &from, events) {
                        self.on_cache_events(ctx, watch, output);
                    }
                }
                _ => {}
            },
        }
        self.arm_client_timer(ctx);
    }

    fn status(&self) -> serde_json::Value {
        json!({
            "served": self.served,
            "inflight": self.ops.len(),
            "watchers": self.watchers.len(),
            "caches": self.caches.keys().collect::<Vec<_>>(),
        })
    }
}

impl ApiServer {
    /// Sets the client timer to the store client's next deadline when that moved (an
    /// input may have sent, answered or timed out requests).
    fn arm_client_timer(&mut self, ctx: &mut Ctx<'_>) {
        let due = self.client.next_deadline();
        if due == self.client_timer {
            return;
        }
        self.client_timer = due;
        match due {
            // At least a millisecond: a deadline the client's tick failed to move
            // must not spin the server on zero-delay timers. (Timers round up to whole
            // milliseconds, so the firing finds the deadline reached.)
            Some(due) => ctx.set_timer(
                ApiTimer::Client,
                due.since(ctx.now()).max(Duration::from_millis(1)),
            ),
            None => ctx.cancel_timer(ApiTimer::Client),
        }
    }

    fn completion(&mut self, ctx: &mut Ctx<'_>, done: Completion) {
        // Watch-cache loads are operations without a client.
        if let Some(op) = self.ops.get(&done.tag) {
            if op.request.subresource.as_deref() == Some("watch-cache") {
                let resource = op.resource;
                self.ops.remove(&done.tag);
                match done.result {
                    Ok(StoreResponse::Range(r)) => {
                        let from = self
                            .caches
                            .get(cache_key(resource))
                            .map(|c| c.loading_from)
                            .unwrap_or(0);
                        let revision = if from > 0 { from } else { r.header_revision };
                        self.cache_loaded(ctx, resource, r.kvs, revision)
                    }
                    _ => {
                        if let Some(cache) = self.caches.get_mut(cache_key(resource)) {
                            cache.loading = false;
                            cache.historical_failed = cache.loading_from > 0;
                        }
                        // Try again on the next watch request or tick.
                        self.load_cache(ctx, resource);
                    }
                }
                return;
            }
        }
        self.on_store_completion(ctx, done);
    }
}
