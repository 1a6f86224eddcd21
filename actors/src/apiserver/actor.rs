//! The API server actor: Kubernetes REST semantics over the store. Stateless: every
//! object lives in the store; the only memory is the watch cache (rebuilt from the
//! store) and requests in flight. Any number of replicas serve the same data.
//!
//! Drive loop, per API request:
//! 1. route: the resource must be served; the verb decides the steps;
//! 2. each step is one store request through the client library (`StoreClient`), and
//!    the store's answer moves the operation on: create = namespace check, then a txn
//!    "create if absent"; update = read, then a txn "write if unchanged since" (the
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

pub const KIND: &str = "apiserver";

/// The key whose version counts compaction rounds (kube-apiserver's
/// `compact_rev_key`).
const COMPACT_KEY: &str = "/registry/compact_rev_key";

/// Namespaces that exist from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiServerConfig {
    pub store_endpoints: Vec<Address>,
    /// Events kept per resource for watches that resume from a resourceVersion.
    #[serde(default = "default_watch_cache_events")]
    pub watch_cache_events: usize,
    /// API watchers at once.
    #[serde(default = "default_watchers_max")]
    pub watchers_max: usize,
    /// Events a watcher may leave unacknowledged before it is closed with 410.
    #[serde(default = "default_watcher_unacked_max")]
    pub watcher_unacked_max: usize,
    /// API requests in flight at once.
    #[serde(default = "default_requests_max")]
    pub requests_max: usize,
    /// Attempts of an unconditional update that keeps losing its compare-and-swap.
    #[serde(default = "default_update_attempts_max")]
    pub update_attempts_max: u32,
    /// A bookmark to idle watchers that asked for them, this often.
    #[serde(default = "default_bookmark_ms")]
    pub bookmark_ms: u64,
    /// Service cluster IPs come from 10.96.0.0/16 (10.96.0.1 is the `kubernetes`
    /// service's); each allocation is a key in the store written in the same
    /// transaction as the Service, so racing API servers never hand one out twice.
    #[serde(default = "default_service_ip_base")]
    pub service_ip_base: [u8; 2],
    /// NodePorts come from this range (Kubernetes' default 30000-32767).
    #[serde(default = "default_node_port_range")]
    pub node_port_range: (u16, u16),
    /// Attempts at picking a free IP or port before giving up.
    #[serde(default = "default_allocation_attempts_max")]
    pub allocation_attempts_max: u32,
    /// How often the store's history is compacted (kube-apiserver's
    /// `--etcd-compaction-interval`, 5 minutes); 0 never. Each round compacts up to the
    /// revision seen at the previous round, and a compare-and-swap on one key makes only
    /// one of several API servers compact per round.
    #[serde(default = "default_compaction_interval_ms")]
    pub compaction_interval_ms: u64,
}

fn default_compaction_interval_ms() -> u64 {
    300_000
}

fn default_service_ip_base() -> [u8; 2] {
    [10, 96]
}
fn default_node_port_range() -> (u16, u16) {
    (30000, 32767)
}
fn default_allocation_attempts_max() -> u32 {
    32
}

fn default_watch_cache_events() -> usize {
    1000
}
fn default_watchers_max() -> usize {
    10_000
}
fn default_watcher_unacked_max() -> usize {
    1000
}
fn default_requests_max() -> usize {
    4096
}
fn default_update_attempts_max() -> u32 {
    8
}
fn default_bookmark_ms() -> u64 {
    5_000
}

impl ApiServerConfig {
    pub fn new(store_endpoints: Vec<Address>) -> Self {
        ApiServerConfig {
            store_endpoints,
            watch_cache_events: default_watch_cache_events(),
            watchers_max: default_watchers_max(),
            watcher_unacked_max: default_watcher_unacked_max(),
            requests_max: default_requests_max(),
            update_attempts_max: default_update_attempts_max(),
            bookmark_ms: default_bookmark_ms(),
            service_ip_base: default_service_ip_base(),
            node_port_range: default_node_port_range(),
            allocation_attempts_max: default_allocation_attempts_max(),
            compaction_interval_ms: default_compaction_interval_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.store_endpoints.is_empty() {
            return Err("the API server needs at least one store endpoint".into());
        }
        if self.watch_cache_events == 0
            || self.watchers_max == 0
            || self.watcher_unacked_max == 0
            || self.requests_max == 0
        {
            return Err("API server limits must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiTimer {
    Tick,
}

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
    ticks: u64,
    pub served: u64,
    /// Compaction rounds: the compaction key's version this server last saw, the revision
    /// to compact at the next round, and when the last round started.
    compact_version: i64,
    compact_revision: i64,
    compact_round_at: Option<Time>,
}

type Ctx<'a> = Context<'a, Message, ApiTimer>;

fn cache_key(resource: &Resource) -> &'static str {
    // One cache per resource; plurals are unique across the served groups.
    resource.plural
}

/// What a DELETE's body (`DeleteOptions`) asks for.
#[derive(Debug, Default)]
struct DeleteOptions {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(body: &[u8]) -> Result<DeleteOptions, ApiResponse> {
    if body.is_empty() {
        return Ok(DeleteOptions::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        failure(
            400,
            "BadRequest",
            format!("the DeleteOptions could not be decoded: {e}"),
        )
    })?;
    let grace = match &value["gracePeriodSeconds"] {
        Value::Null => None,
        v => Some(v.as_i64().ok_or_else(|| {
            failure(
                400,
                "BadRequest",
                "gracePeriodSeconds must be an integer".to_string(),
            )
        })?),
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    Ok(DeleteOptions {
        grace,
        uid: text(&value["preconditions"]["uid"]),
        resource_version: text(&value["preconditions"]["resourceVersion"]),
    })
}

/// `DeleteOptions.preconditions` against the stored object: a mismatch is a Conflict.
fn check_preconditions(
    resource: &Resource,
    name: &str,
    options: &DeleteOptions,
    object: &Value,
) -> Option<ApiResponse> {
    let conflict_with = |what: &str, wanted: &str, actual: &str| {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
            qualified(resource.plural, resource.group)
        );
        Some(ApiResponse {
            code: 409,
            body: status(
                409,
                "Conflict",
                &message,
                json!({ "name": name, "group": resource.group, "kind": resource.plural }),
            ),
        })
    };
    if let Some(uid) = &options.uid {
        let actual = meta_str(object, "uid").unwrap_or("");
        if uid != actual {
            return conflict_with("UID", uid, actual);
        }
    }
    if let Some(version) = &options.resource_version {
        let actual = meta_str(object, "resourceVersion").unwrap_or("");
        if version != actual {
            return conflict_with("ResourceVersion", version, actual);
        }
    }
    None
}

/// The grace period of a pod's deletion, as Kubernetes' pod strategy decides it: the
/// request's, else the pod's `terminationGracePeriodSeconds`; 0 for a pod never
/// scheduled or already finished; a negative request means 1.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let mut period = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(0);
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    period
}

fn not_found(resource: &Resource, name: &str) -> ApiResponse {
    let message = format!(
        "{} \"{name}\" not found",
        qualified(resource.plural, resource.group)
    );
    ApiResponse {
        code: 404,
        body: status(
            404,
            "NotFound",
            &message,
            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
        ),
    }
}

fn failure(code: u16, reason: &str, message: String) -> ApiResponse {
    ApiResponse {
        code,
        body: status(code, reason, &message, json!({})),
    }
}

fn store_failure(error: &StoreError) -> ApiResponse {
    match error {
        StoreError::Compacted { .. } => {
            failure(410, "Expired", format!("too old resource version: {error}"))
        }
        StoreError::NoQuorum { .. }
        | StoreError::Timeout
        | StoreError::NotLeader { .. }
        | StoreError::Stopped(_) => failure(
            503,
            "ServiceUnavailable",
            format!("the store is unavailable: {error}"),
        ),
        StoreError::Ambiguous(_) => failure(
            504,
            "Timeout",
            format!("the store did not confirm the write: {error}"),
        ),
        StoreError::RequestTooLarge { .. }
        | StoreError::KeyTooLarge { .. }
        | StoreError::ValueTooLarge { .. } => {
            failure(413, "RequestEntityTooLarge", error.to_string())
        }
        other => failure(500, "InternalError", other.to_string()),
    }
}

/// The stored JSON with what clients expect on every object.
fn present(resource: &Resource, value: &[u8], mod_revision: i64) -> Value {
    let mut object: Value = serde_json::from_slice(value).unwrap_or_else(|_| json!({}));
    if let Some(map) = object.as_object_mut() {
        map.insert("kind".into(), json!(resource.kind));
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(mod_revision.to_string()));
    object
}

fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn uid(ctx: &mut Ctx<'_>) -> String {
    let a: u64 = ctx.rng().gen();
    let b: u64 = ctx.rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn txn_put_if(key: &[u8], target: CompareTarget, value: Vec<u8>) -> StoreRequest {
    StoreRequest::Txn(TxnRequest {
        compare: vec![Compare {
            key: key.to_vec(),
            range_end: Vec::new(),
            result: CompareResult::Equal,
            target,
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        })],
        failure: Vec::new(),
    })
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
                    StoreRequest::Range(RangeRequest {
                        key,
                        ..Default::default()
                    }),
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

    fn list_request(
        &self,
        resource: &Resource,
        request: &ApiRequest,
    ) -> Result<RangeRequest, ApiResponse> {
        let prefix = resource.prefix(request.namespace.as_deref()).into_bytes();
        let mut range = RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            ..Default::default()
        };
        let options = &request.options;
        if options.limit > 0
            && options.label_selector.is_empty()
            && options.field_selector.is_empty()
        {
            // Without selectors the page is the first `limit` keys: let the store cut it
            // (one more, to know whether there are more).
            range.limit = options.limit + 1;
        }
        if !options.continue_token.is_empty() {
            let (revision, after) = decode_continue(&options.continue_token).ok_or_else(|| {
                failure(400, "BadRequest", "the continue token is not valid".into())
            })?;
            range.revision = revision;
            let mut start = after;
            start.push(0);
            range.key = start;
        } else if let Ok(revision) = options.resource_version.parse::<i64>() {
            if revision > 0 {
                range.revision = revision;
            } else {
                range.serializable = true;
            }
        }
        Ok(range)
    }

    /// Builds the object to create: defaults, identity, validation. `Err` is the answer.
    fn prepare_create(
        &mut self,
        ctx: &mut Ctx<'_>,
        resource: &Resource,
        request: &ApiRequest,
    ) -> Result<Value, ApiResponse> {
        let mut object: Value = serde_json::from_slice(&request.body).map_err(|e| {
            failure(
                400,
                "BadRequest",
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        if !object.is_object() {
            return Err(failure(
                400,
                "BadRequest",
                "the request body must be a JSON object".into(),
            ));
        }
        if let Some(kind) = object.get("kind").and_then(Value::as_str) {
            if kind != resource.kind {
                return Err(failure(
                    400,
                    "BadRequest",
                    format!(
                        "the object kind {kind} does not match the resource {}",
                        resource.plural
                    ),
                ));
            }
        }
        let now = ctx.now();
        let uid = uid(ctx);
        let suffix: String = (0..5)
            .map(|_| {
                const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                ALPHABET[ctx.rng().gen_range(0..ALPHABET.len())] as char
            })
            .collect();
        {
            let meta = metadata_mut(&mut object);
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name {
                if let Some(generate) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    meta.insert("name".into(), json!(format!("{generate}{suffix}")));
                }
            }
            if resource.namespaced {
                let requested = request.namespace.clone().unwrap_or_default();
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(ns) if ns != requested => {
                        return Err(failure(
                            400,
                            "BadRequest",
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ));
                    }
                    _ => {
                        meta.insert("namespace".into(), json!(requested));
                    }
                }
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(rfc3339(now.0)));
            meta.insert("generation".into(), json!(1));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
        }
        if let Some(map) = object.as_object_mut() {
            map.insert("kind".into(), json!(resource.kind));
            map.insert("apiVersion".into(), json!(resource.api_version()));
        }
        defaults::apply_defaults(resource.kind, &mut object);
        if resource.kind == "Job" {
            defaults::default_job_selector(&mut object, &uid);
        }
        if resource.kind == "Pod"
            && object["spec"].get("serviceAccountName").is_none()
            && object["spec"].is_object()
        {
            // Service account admission: the namespace's default account.
            object["spec"]["serviceAccountName"] = json!("default");
        }
        if resource.kind == "Pod"
            && object["spec"].is_object()
            && object["spec"].get("priorityClassName").is_none()
        {
            // Priority admission without a class (and no global default class): 0.
            object["spec"]["priority"] = json!(0);
        }
        if resource.kind == "ResourceQuota" {
            admission::initial_quota_status(&mut object);
        }
        if resource.kind == "Namespace" {
            // Create-only: the namespace controller removes it while deleting.
            defaults::default_namespace_finalizers(&mut object);
            object["status"] = json!({ "phase": "Active" });
        }
        let causes = validation::validate(resource.kind, &object, request.namespace.as_deref());
        if !causes.is_empty() {
            let name = meta_str(&object, "name").unwrap_or("").to_string();
            return Err(invalid(resource, &name, &causes));
        }
        Ok(object)
    }

    /// Sends a create's next request: its admission read when namespaced (from the
    /// object as it was before admission), else its write.
    fn create_step(&mut self, ctx: &mut Ctx<'_>, op_id: u64) {
        let now = ctx.now();
        let Some(mut op) = self.ops.remove(&op_id) else {
            return;
        };
        let request = if op.resource.namespaced {
            op.prepared = op.unadmitted.clone();
            op.quota_writes.clear();
            op.namespace_revision = None;
            let (reads, request) = admission_read(&op);
            op.stage = Stage::CreateAdmit { reads };
            request
        } else {
            op.stage = Stage::CreateWrite;
            self.create_txn(ctx, &mut op)
        };
        self.ops.insert(op_id, op);
        if let Err(e) = self.store(ctx, now, op_id, request) {
            let op = self.ops.remove(&op_id);
            self.reply(ctx, op.and_then(|o| o.client), store_failure(&e));
        }
    }

    /// Admission of a namespaced create from its one read: the namespace exists and is
    /// not terminating, LimitRanges and the PriorityClass apply to a Pod, a new quota
    /// counts what exists, and every quota can be charged. `Err` is the answer refusing
    /// the create.
    fn admit(op: &mut Op, reads: &AdmitReads, responses: &[ResponseOp]) -> Result<(), ApiResponse> {
        let range = |index: usize| match responses.get(index) {
            Some(ResponseOp::Range(range)) => Ok(range),
            _ => Err(failure(
                500,
                "InternalError",
                "the admission read came back incomplete".into(),
            )),
        };
        let resource = op.resource;
        let ns = op.request.namespace.clone().unwrap_or_default();
        let Some(kv) = range(0)?.kvs.first() else {
            return Err(not_found(&RESOURCES[0], &ns));
        };
        let namespace_object: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if meta_str(&namespace_object, "deletionTimestamp").is_some() {
            return Err(failure(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        op.namespace_revision = Some(kv.mod_revision);
        let Some(object) = op.prepared.as_mut() else {
            return Err(failure(500, "InternalError", "no object".into()));
        };
        if let Some(index) = reads.limits {
            // LimitRange admission reads the namespace's ranges live (a range created
            // just before the pod must apply to it).
            let ranges: Vec<Value> = range(index)?
                .kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            let refs: Vec<&Value> = ranges.iter().collect();
            if let Err(errors) = admission::apply_limit_ranges(object, &refs) {
                let pod = meta_str(object, "name").unwrap_or("").to_string();
                let reason = if errors.len() == 1 {
                    errors[0].clone()
                } else {
                    format!("[{}]", errors.join(", "))
                };
                return Err(failure(
                    403,
                    "Forbidden",
                    format!("pods \"{pod}\" is forbidden: {reason}"),
                ));
            }
        }
        if let Some(index) = reads.priority {
            let class = object["spec"]["priorityClassName"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let Some(kv) = range(index)?.kvs.first() else {
                let pod = meta_str(object, "name").unwrap_or("").to_string();
                return Err(failure(
                    403,
                    "Forbidden",
                    format!(
                        "pods \"{pod}\" is forbidden: no PriorityClass with name {class} was found"
                    ),
                ));
            };
            let priority_class: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let value = priority_class["value"].as_i64().unwrap_or(0);
            object["spec"]["priority"] = json!(value);
            if let Some(policy) = priority_class.get("preemptionPolicy") {
                object["spec"]["preemptionPolicy"] = policy.clone();
            }
        }
        if !reads.counted.is_empty() {
            let mut existing = Vec::new();
            for (index, counted) in &reads.counted {
                for kv in &range(*index)?.kvs {
                    let object: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                    existing.push((
                        counted.plural.to_string(),
                        counted.group.to_string(),
                        counted.kind.to_string(),
                        object,
                    ));
                }
            }
            admission::count_existing(object, &existing);
        }
        let object = object.clone();
        let usage = admission::usage(resource.plural, resource.group, resource.kind, &object);
        op.quota_writes.clear();
        for kv in &range(reads.quotas)?.kvs {
            let quota: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            match admission::charge(&quota, &usage, &object, 1) {
                Err(message) => {
                    let name = meta_str(&object, "name").unwrap_or("");
                    return Err(failure(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: {message}",
                            qualified(resource.plural, resource.group)
                        ),
                    ));
                }
                Ok(Some(charged)) => {
                    op.quota_writes
                        .push((kv.key.clone(), kv.mod_revision, charged))
                }
                Ok(None) => {}
            }
        }
        Ok(())
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

    /// Moves an operation on; `Some` is the final answer.
    fn advance(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let resource = op.resource;
        let name = op.request.name.clone().unwrap_or_default();
        let namespace = op.request.namespace.clone();
        let key = resource.key(namespace.as_deref(), &name).into_bytes();
        let now = ctx.now();
        match (&op.stage, result) {
            (Stage::Get, StoreResponse::Range(r)) => Some(match r.kvs.first() {
                Some(kv) => {
                    let object = present(resource, &kv.value, kv.mod_revision);
                    let object = if op.request.subresource.as_deref() == Some("scale") {
                        scale_of(&object)
                    } else {
                        object
                    };
                    ApiResponse {
                        code: 200,
                        body: body(&object),
                    }
                }
                None => not_found(resource, &name),
            }),
            (Stage::List, StoreResponse::Range(r)) => {
                Some(self.list_response(resource, &op.request, r.kvs, r.header_revision))
            }
            (Stage::CreateAdmit { reads }, StoreResponse::Txn(t)) => {
                let reads = reads.clone();
                if let Err(refused) = Self::admit(op, &reads, &t.responses) {
                    return Some(refused);
                }
                op.stage = Stage::CreateWrite;
                let request = self.create_txn(ctx, op);
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::CreateWrite, StoreResponse::Txn(t)) => {
                let object = op.prepared.clone().unwrap_or_default();
                let name = meta_str(&object, "name").unwrap_or("").to_string();
                if t.succeeded {
                    let mut object = object;
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    return Some(ApiResponse {
                        code: 201,
                        body: body(&object),
                    });
                }
                // The failure branch reads the object's key first (then the namespace
                // and the quotas, which exist): only that first read says "exists".
                let exists = matches!(t.responses.first(),
                    Some(ResponseOp::Range(range)) if range.count > 0);
                if exists {
                    let message = format!(
                        "{} \"{name}\" already exists",
                        qualified(resource.plural, resource.group)
                    );
                    return Some(ApiResponse {
                        code: 409,
                        body: status(
                            409,
                            "AlreadyExists",
                            &message,
                            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
                        ),
                    });
                }
                // A quota it charged or its namespace changed meanwhile (another
                // create or delete in the namespace, the namespace being deleted):
                // admit it again from what is there now.
                let unchanged = |key: &[u8], revision: i64| {
                    t.responses.iter().any(|r| {
                        matches!(r, ResponseOp::Range(range)
                            if range.kvs.first().is_some_and(|kv| kv.key == key && kv.mod_revision == revision))
                    })
                };
                let namespace_key = op
                    .request
                    .namespace
                    .as_deref()
                    .map(|ns| RESOURCES[0].key(None, ns).into_bytes());
                let namespace_changed = match (&namespace_key, op.namespace_revision) {
                    (Some(key), Some(revision)) => !unchanged(key, revision),
                    _ => false,
                };
                let quota_changed = op
                    .quota_writes
                    .iter()
                    .any(|(key, revision, _)| !unchanged(key, *revision));
                if namespace_changed || quota_changed {
                    op.attempts += 1;
                    if op.attempts >= self.config.update_attempts_max {
                        return Some(conflict(resource, &name));
                    }
                    op.prepared = op.unadmitted.clone();
                    op.quota_writes.clear();
                    op.namespace_revision = None;
                    let (reads, request) = admission_read(op);
                    op.stage = Stage::CreateAdmit { reads };
                    return self.next_step(ctx, now, op_id, request);
                }
                // The object is new but an IP or port it wanted was taken meanwhile.
                if requested_allocations(&op.request) {
                    let shown = clusterip_of(&op.request.body).unwrap_or_default();
                    let causes = vec![validation::Cause::invalid(
                        "spec.clusterIP",
                        &validation::go_quote(&shown),
                        "provided IP or port is already allocated",
                    )];
                    return Some(invalid(resource, &name, &causes));
                }
                op.attempts += 1;
                if op.attempts >= self.config.allocation_attempts_max {
                    return Some(failure(
                        500,
                        "InternalError",
                        "no free cluster IP or node port found; the ranges may be full".into(),
                    ));
                }
                let request = self.create_txn(ctx, op);
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::UpdateRead, StoreResponse::Range(r)) => {
                let Some(kv) = r.kvs.first() else {
                    return Some(not_found(resource, &name));
                };
                match self.prepare_update(resource, &op.request, kv) {
                    Err(response) => Some(response),
                    Ok(mut next) => {
                        if resource.kind == "ResourceQuota" && op.request.subresource.is_none() {
                            admission::refresh_quota_hard(&mut next);
                        }
                        let expected = kv.mod_revision;
                        // An object being deleted whose last finalizer went goes — unless
                        // it is a pod still in its grace period (the kubelet deletes it).
                        let deleting = meta_str(&next, "deletionTimestamp").is_some()
                            && finalizers(&next).is_empty()
                            && next["metadata"]["deletionGracePeriodSeconds"]
                                .as_i64()
                                .unwrap_or(0)
                                == 0;
                        if deleting && resource.namespaced {
                            // The last finalizer of an object being deleted is gone: delete
                            // it, giving its quota usage back in the same write.
                            op.stage = Stage::DeleteCheckQuota {
                                old: next,
                                mod_revision: expected,
                            };
                            let request = quotas_read(namespace.as_deref().unwrap_or(""));
                            return self.next_step(ctx, now, op_id, request);
                        }
                        let request = if deleting {
                            // The last finalizer of an object being deleted is gone: delete it.
                            delete_if(&key, expected)
                        } else {
                            txn_put_if(
                                &key,
                                CompareTarget::ModRevision(expected),
                                body(&strip(&next)),
                            )
                        };
                        op.stage = Stage::UpdateWrite { replace_with: next };
                        self.next_step(ctx, now, op_id, request)
                    }
                }
            }
            (Stage::UpdateWrite { replace_with, .. }, StoreResponse::Txn(t)) => {
                if t.succeeded {
                    let mut object = replace_with.clone();
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    if op.request.subresource.as_deref() == Some("scale") {
                        object = scale_of(&object);
                    }
                    return Some(ApiResponse {
                        code: 200,
                        body: body(&object),
                    });
                }
                let client_version = body_resource_version(&op.request.body);
                op.attempts += 1;
                if client_version.is_some() || op.attempts >= self.config.update_attempts_max {
                    return Some(conflict(resource, &name));
                }
                // An unconditional update lost a race: read again and retry.
                op.stage = Stage::UpdateRead;
                let request = StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                });
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::DeleteRead, StoreResponse::Range(r)) => {
                let Some(kv) = r.kvs.first() else {
                    return Some(not_found(resource, &name));
                };
                let mut object = present(resource, &kv.value, kv.mod_revision);
                let options = match delete_options(&op.request.body) {
                    Ok(o) => o,
                    Err(response) => return Some(response),
                };
                if let Some(response) = check_preconditions(resource, &name, &options, &object) {
                    return Some(response);
                }
                // Pods are deleted gracefully: the kubelet stops the containers within
                // the grace period and then deletes with grace 0.
                let grace =
                    (resource.kind == "Pod").then(|| pod_grace_period(&object, options.grace));
                let has_finalizers = !finalizers(&object).is_empty();
                let marked = meta_str(&object, "deletionTimestamp").is_some();
                let mark = |object: &mut Value, at_nanos: u64, grace: i64| {
                    let meta = metadata_mut(object);
                    meta.insert("deletionTimestamp".into(), json!(rfc3339(at_nanos)));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                };
                let remove = match grace {
                    Some(grace) if marked => {
                        // Already being deleted: the grace period may only shorten.
                        let current = object["metadata"]["deletionGracePeriodSeconds"]
                            .as_i64()
                            .unwrap_or(0);
                        if grace >= current {
                            return Some(ApiResponse {
                                code: 200,
                                body: body(&object),
                            });
                        }
                        let started = meta_str(&object, "deletionTimestamp")
                            .and_then(parse_rfc3339)
                            .map(|at| at.saturating_sub(current as u64 * 1_000_000_000))
                            .unwrap_or(now.0);
                        mark(&mut object, started + grace as u64 * 1_000_000_000, grace);
                        grace == 0 && !has_finalizers
                    }
                    Some(grace) if grace > 0 => {
                        mark(&mut object, now.0 + grace as u64 * 1_000_000_000, grace);
                        false
                    }
                    _ if has_finalizers || resource.kind == "Namespace" => {
                        if marked {
                            return Some(ApiResponse {
                                code: 200,
                                body: body(&object),
                            });
                        }
                        mark(&mut object, now.0, 0);
                        if resource.kind == "Namespace" {
                            object["status"]["phase"] = json!("Terminating");
                        }
                        false
                    }
                    _ => true,
                };
                if !remove {
                    let request = txn_put_if(
                        &key,
                        CompareTarget::ModRevision(kv.mod_revision),
                        body(&strip(&object)),
                    );
                    op.stage = Stage::DeleteWrite { old: object };
                    self.next_step(ctx, now, op_id, request)
                } else if resource.namespaced {
                    // Quotas the object counts toward get it back in the same write.
                    op.stage = Stage::DeleteCheckQuota {
                        old: object,
                        mod_revision: kv.mod_revision,
                    };
                    let request = quotas_read(namespace.as_deref().unwrap_or(""));
                    self.next_step(ctx, now, op_id, request)
                } else {
                    let request = removal_txn(&key, &object, kv.mod_revision, &[]);
                    op.stage = Stage::DeleteWrite { old: object };
                    self.next_step(ctx, now, op_id, request)
                }
            }
            (Stage::DeleteCheckQuota { old, mod_revision }, StoreResponse::Range(r)) => {
                let (old, mod_revision) = (old.clone(), *mod_revision);
                let usage = admission::usage(resource.plural, resource.group, resource.kind, &old);
                let credits: Vec<(Vec<u8>, i64, Value)> = r
                    .kvs
                    .iter()
                    .filter(|kv| kv.key != key) // a quota being deleted is not written back
                    .filter_map(|kv| {
                        let quota: Value = serde_json::from_slice(&kv.value).ok()?;
                        let credited = admission::charge(&quota, &usage, &old, -1).ok()??;
                        Some((kv.key.clone(), kv.mod_revision, credited))
                    })
                    .collect();
                let request = removal_txn(&key, &old, mod_revision, &credits);
                op.stage = Stage::DeleteWrite { old };
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::DeleteWrite { old, .. }, StoreResponse::Txn(t)) => {
                if t.succeeded {
                    let mut object = old.clone();
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    return Some(ApiResponse {
                        code: 200,
                        body: body(&object),
                    });
                }
                op.attempts += 1;
                if op.attempts >= self.config.update_attempts_max {
                    return Some(conflict(resource, &name));
                }
                op.stage = Stage::DeleteRead;
                let request = StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                });
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::CompactClaim, StoreResponse::Txn(t)) => {
                // As kube-apiserver does: whoever moves the key's version compacts to the
                // revision recorded a round ago; the others learn the version.
                let previous = self.compact_revision;
                self.compact_revision = t.header_revision;
                if !t.succeeded {
                    self.compact_version = t
                        .responses
                        .iter()
                        .find_map(|r| match r {
                            ResponseOp::Range(range) => range.kvs.first().map(|kv| kv.version),
                            _ => None,
                        })
                        .unwrap_or(self.compact_version);
                    return Some(ApiResponse {
                        code: 200,
                        body: Vec::new(),
                    });
                }
                self.compact_version += 1;
                if previous == 0 {
                    return Some(ApiResponse {
                        code: 200,
                        body: Vec::new(),
                    });
                }
                op.stage = Stage::Compact;
                let request = StoreRequest::Compact(crate::store::types::CompactRequest {
                    revision: previous,
                });
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::Compact, _) => Some(ApiResponse {
                code: 200,
                body: Vec::new(),
            }),
            (Stage::Bootstrap, _) => Some(ApiResponse {
                code: 200,
                body: Vec::new(),
            }),
            (_, other) => Some(failure(
                500,
                "InternalError",
                format!("unexpected store answer {other:?}"),
            )),
        }
    }

    fn prepare_update(
        &self,
        resource: &Resource,
        request: &ApiRequest,
        current: &KeyValue,
    ) -> Result<Value, ApiResponse> {
        let name = request.name.clone().unwrap_or_default();
        let mut incoming: Value = serde_json::from_slice(&request.body).map_err(|e| {
            failure(
                400,
                "BadRequest",
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        if !incoming.is_object() {
            return Err(failure(
                400,
                "BadRequest",
                "the request body must be a JSON object".into(),
            ));
        }
        if let Some(version) = body_resource_version(&request.body) {
            if version != current.mod_revision {
                return Err(conflict(resource, &name));
            }
        }
        if let Some(body_name) = meta_str(&incoming, "name") {
            if body_name != name {
                return Err(failure(400, "BadRequest", format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
            }
        }
        let old = present(resource, &current.value, current.mod_revision);
        let subresource = request.subresource.as_deref();
        let mut next = match subresource {
            // /status changes only the status.
            Some("status") => {
                let mut next = old.clone();
                next["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
                next
            }
            // /scale (autoscaling/v1 Scale) changes only spec.replicas.
            Some("scale") => {
                if !resource.scale {
                    return Err(failure(
                        404,
                        "NotFound",
                        format!("{} has no scale subresource", resource.plural),
                    ));
                }
                let Some(replicas) = incoming["spec"]["replicas"].as_i64() else {
                    let causes = vec![validation::Cause::required("spec.replicas", "")];
                    return Err(invalid(resource, &name, &causes));
                };
                let mut next = old.clone();
                next["spec"]["replicas"] = json!(replicas);
                next
            }
            _ => {
                if let Some(map) = incoming.as_object_mut() {
                    map.insert("kind".into(), json!(resource.kind));
                    map.insert("apiVersion".into(), json!(resource.api_version()));
                }
                // The main resource never changes status (when it has a subresource).
                if resource.status {
                    if let Some(status) = old.get("status") {
                        incoming["status"] = status.clone();
                    } else if let Some(map) = incoming.as_object_mut() {
                        map.remove("status");
                    }
                }
                defaults::apply_defaults(resource.kind, &mut incoming);
                incoming
            }
        };
        // Identity is the store's, not the client's.
        {
            let old_meta = super::object::metadata(&old).cloned().unwrap_or_default();
            let meta = metadata_mut(&mut next);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta.insert("generation".into(), json!(generation));
            meta.remove("resourceVersion");
        }
        if subresource != Some("status") && spec_part(&next) != spec_part(&old) {
            let generation = super::object::metadata(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut next).insert("generation".into(), json!(generation + 1));
        }
        let mut causes = validation::validate(resource.kind, &next, request.namespace.as_deref());
        causes.extend(validation::validate_update(resource.kind, &old, &next));
        if !causes.is_empty() {
            return Err(invalid(resource, &name, &causes));
        }
        Ok(next)
    }

    fn list_response(
        &self,
        resource: &Resource,
        request: &ApiRequest,
        kvs: Vec<KeyValue>,
        revision: i64,
    ) -> ApiResponse {
        let options = &request.options;
        let labels_selector = match parse_label_selector(&options.label_selector) {
            Ok(s) => s,
            Err(e) => return failure(400, "BadRequest", e),
        };
        let fields_selector = match parse_field_selector(&options.field_selector) {
            Ok(s) => s,
            Err(e) => return failure(400, "BadRequest", e),
        };
        let read_revision = decode_continue(&options.continue_token)
            .map(|(r, _)| r)
            .filter(|r| *r > 0)
            .unwrap_or(revision);
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for kv in kvs {
            let object = present(resource, &kv.value, kv.mod_revision);
            if !labels_selector.matches(&labels(&object)) || !fields_selector.matches(&object) {
                continue;
            }
            if options.limit > 0 && items.len() as i64 >= options.limit {
                more = true;
                break;
            }
            last_key = Some(kv.key.clone());
            items.push(object);
        }
        let mut metadata = json!({ "resourceVersion": read_revision.to_string() });
        if more {
            if let Some(key) = last_key {
                metadata["continue"] = json!(encode_continue(read_revision, &key));
            }
        }
        let list = json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        });
        ApiResponse {
            code: 200,
            body: body(&list),
        }
    }

    // ----- watches ------------------------------------------------------------------

    fn watch_start(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        resource: &'static Resource,
        request: ApiRequest,
    ) {
        let options = request.options.clone();
        if self
            .watchers
            .contains_key(&(from.clone(), options.watch_id))
        {
            // A duplicated watch request (the bus duplicates datagrams): the watch is
            // established and its events have begun. Starting it again would send a
            // second stream under the same id with colliding sequence numbers (the
            // store had this bug); answer again and start nothing.
            let established = ApiResponse {
                code: 200,
                body: Vec::new(),
            };
            return self.reply(ctx, Some((from, options.watch_id)), established);
        }
        let fail = |this: &mut Self, ctx: &mut Ctx<'_>, response: ApiResponse| {
            this.reply(ctx, Some((from.clone(), options.watch_id)), response);
        };
        if self.watchers.len() >= self.config.watchers_max {
            let message = format!("too many watches (limit {})", self.config.watchers_max);
            return fail(self, ctx, failure(429, "TooManyRequests", message));
        }
        let labels_selector = match parse_label_selector(&options.label_selector) {
            Ok(s) => s,
            Err(e) => return fail(self, ctx, failure(400, "BadRequest", e)),
        };
        let fields_selector = match parse_field_selector(&options.field_selector) {
            Ok(s) => s,
            Err(e) => return fail(self, ctx, failure(400, "BadRequest", e)),
        };
        let key = (from.clone(), options.watch_id);
        self.watchers.insert(
            key.clone(),
            Watcher {
                resource,
                namespace: if resource.namespaced {
                    request.namespace.clone()
                } else {
                    None
                },
                labels: labels_selector,
                fields: fields_selector,
                seq: 0,
                acked: 0,
                bookmarks: options.allow_watch_bookmarks,
                last_sent: ctx.now(),
                start: options.resource_version.clone(),
                begun: false,
                sent_revision: options.resource_version.parse().unwrap_or(0),
            },
        );
        // The watch is established: say so, then events follow.
        self.reply(
            ctx,
            Some((from, options.watch_id)),
            ApiResponse {
                code: 200,
                body: Vec::new(),
            },
        );
        let cache = self
            .caches
            .entry(cache_key(resource))
            .or_insert_with(|| Cache {
                store_watch: None,
                ready: false,
                loading: false,
                revision: 0,
                objects: BTreeMap::new(),
                window: VecDeque::new(),
                waiting: Vec::new(),
                loading_from: 0,
                historical_failed: false,
                window_start: 0,
            });
        if cache.ready {
            self.begin_watcher(ctx, &key);
        } else {
            cache.waiting.push(key);
            if !cache.loading {
                self.load_cache(ctx, resource);
            }
        }
    }

    /// Lists the resource and starts the store watch that keeps the cache current.
    fn load_cache(&mut self, ctx: &mut Ctx<'_>, resource: &'static Resource) {
        let now = ctx.now();
        // Load the cache as of the oldest version a waiting watcher resumes from (the
        // store keeps history until compaction), so a watcher that moved here from a
        // dead API server resumes without a gap instead of getting 410. A failed
        // historical read falls back to the current state.
        let mut from = 0;
        if let Some(cache) = self.caches.get_mut(cache_key(resource)) {
            cache.loading = true;
            if !cache.historical_failed {
                from = cache
                    .waiting
                    .iter()
                    .filter_map(|key| self.watchers.get(key))
                    .filter_map(|w| w.start.parse::<i64>().ok())
                    .filter(|v| *v > 0)
                    .min()
                    .unwrap_or(0);
            }
            cache.loading_from = from;
        }
        let prefix = resource.prefix(None).into_bytes();
        let request = StoreRequest::Range(RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            revision: from,
            ..Default::default()
        });
        let op_id = self.new_op(
            None,
            ApiRequest {
                verb: Verb::List,
                group: resource.group.into(),
                version: resource.version.into(),
                resource: resource.plural.into(),
                subresource: Some("watch-cache".into()),
                namespace: None,
                name: None,
                body: Vec::new(),
                options: ListOptions::default(),
            },
            resource,
            Stage::List,
            None,
        );
        if self.store(ctx, now, op_id, request).is_err() {
            self.ops.remove(&op_id);
            if let Some(cache) = self.caches.get_mut(cache_key(resource)) {
                cache.loading = false;
            }
        }
    }

    fn cache_loaded(
        &mut self,
        ctx: &mut Ctx<'_>,
        resource: &'static Resource,
        kvs: Vec<KeyValue>,
        revision: i64,
    ) {
        let now = ctx.now();
        let prefix = resource.prefix(None).into_bytes();
        let create = WatchCreate {
            watch_id: 0,
            range_end: prefix_end(&prefix),
            key: prefix,
            start_revision: revision + 1,
            prev_kv: true,
            progress_notify: true,
        };
        let store_watch = self.client.watch(ctx, now, create).ok();
        let Some(cache) = self.caches.get_mut(cache_key(resource)) else {
            return;
        };
        cache.objects = kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    (
                        serde_json::from_slice(&kv.value).unwrap_or_default(),
                        kv.mod_revision,
                    ),
                )
            })
            .collect();
        cache.revision = revision;
        cache.window_start = revision;
        cache.window.clear();
        cache.store_watch = store_watch;
        cache.ready = true;
        cache.loading = false;
        let waiting = std::mem::take(&mut cache.waiting);
        for key in waiting {
            self.begin_watcher(ctx, &key);
        }
    }

    /// Sends a new watcher what it asked to start from: the current state as ADDED, or
    /// the cached events after its resourceVersion, or 410 if those are gone.
    fn begin_watcher(&mut self, ctx: &mut Ctx<'_>, key: &(Address, u64)) {
        let Some(watcher) = self.watchers.get(key) else {
            return;
        };
        let resource = watcher.resource;
        let start = watcher.start.clone();
        let Some(cache) = self.caches.get(cache_key(resource)) else {
            return;
        };
        let mut events: Vec<(EventType, Value, i64)> = Vec::new();
        match start.parse::<i64>() {
            Ok(version) if version > 0 => {
                let oldest_known = cache.window_start;
                if version < oldest_known {
                    let message =
                        format!("too old resource version: {version} ({})", cache.revision);
                    let object =
                        serde_json::from_slice(&status(410, "Expired", &message, json!({})))
                            .unwrap_or_default();
                    self.emit(
                        ctx,
                        key,
                        EventType::Error,
                        object,
                        cache_revision(&self.caches, resource),
                    );
                    self.watchers.remove(key);
                    return;
                }
                for (revision, kind, object) in &cache.window {
                    if *revision > version {
                        events.push((*kind, object.clone(), *revision));
                    }
                }
            }
            _ => {
                for (object, revision) in cache.objects.values() {
                    let mut object = object.clone();
                    set_identity(resource, &mut object, *revision);
                    events.push((EventType::Added, object, *revision));
                }
            }
        }
        for (kind, object, revision) in events {
            if self.matches(key, &object) {
                self.emit(ctx, key, kind, object, revision);
            }
        }
        // From here on only live events newer than what the cache has shown it.
        let revision = cache_revision(&self.caches, resource);
        if let Some(watcher) = self.watchers.get_mut(key) {
            watcher.begun = true;
            watcher.sent_revision = watcher.sent_revision.max(revision);
        }
    }

    fn matches(&self, key: &(Address, u64), object: &Value) -> bool {
        let Some(watcher) = self.watchers.get(key) else {
            return false;
        };
        if let Some(ns) = &watcher.namespace {
            if meta_str(object, "namespace") != Some(ns.as_str()) {
                return false;
            }
        }
        watcher.labels.matches(&labels(object)) && watcher.fields.matches(object)
    }

    fn emit(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        kind: EventType,
        object: Value,
        revision: i64,
    ) {
        self.emit_bytes(ctx, key, kind, body(&object), revision);
    }

    /// Sends one event whose object is already serialized (a live event fanned out to
    /// many watchers is serialized once).
    fn emit_bytes(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        kind: EventType,
        object: Vec<u8>,
        revision: i64,
    ) {
        let now = ctx.now();
        let limit = self.config.watcher_unacked_max as u64;
        let Some(watcher) = self.watchers.get_mut(key) else {
            return;
        };
        if watcher.seq - watcher.acked >= limit && kind != EventType::Error {
            // Too slow: close it rather than buffer without bound or stall the others.
            let message = format!(
                "watcher fell behind by {} events (limit {limit}); re-list and watch again",
                watcher.seq - watcher.acked
            );
            let object: Value =
                serde_json::from_slice(&status(410, "Expired", &message, json!({})))
                    .unwrap_or_default();
            watcher.seq += 1;
            let event = WatchEvent {
                kind: EventType::Error,
                object: body(&object),
                resource_version: revision,
            };
            ctx.send(
                key.0.clone(),
                Message::Api(ApiMessage::Event {
                    watch_id: key.1,
                    seq: watcher.seq,
                    event,
                }),
            );
            self.watchers.remove(key);
            return;
        }
        if matches!(
            kind,
            EventType::Added | EventType::Modified | EventType::Deleted
        ) {
            if watcher.begun && revision <= watcher.sent_revision {
                // Older than what this watcher already has (the cache is catching up).
                return;
            }
            watcher.sent_revision = watcher.sent_revision.max(revision);
        }
        watcher.seq += 1;
        watcher.last_sent = now;
        let event = WatchEvent {
            kind,
            object,
            resource_version: revision,
        };
        ctx.send(
            key.0.clone(),
            Message::Api(ApiMessage::Event {
                watch_id: key.1,
                seq: watcher.seq,
                event,
            }),
        );
    }

    fn on_cache_events(&mut self, ctx: &mut Ctx<'_>, store_watch: u64, output: WatchOutput) {
        let Some(cache_name) = self
            .caches
            .iter()
            .find(|(_, c)| c.store_watch == Some(store_watch))
            .map(|(k, _)| *k)
        else {
            return;
        };
        let Some(resource) = RESOURCES.iter().find(|r| cache_key(r) == cache_name) else {
            return;
        };
        match output {
            WatchOutput::Events(events) => {
                let watcher_keys: Vec<(Address, u64)> = self
                    .watchers
                    .iter()
                    .filter(|(_, w)| w.begun && w.resource.plural == resource.plural)
                    .map(|(k, _)| k.clone())
                    .collect();
                for event in events {
                    let revision = event.kv.mod_revision;
                    let (kind, object) = match event.kind {
                        StoreEventType::Put => {
                            let kind = if event.kv.create_revision == event.kv.mod_revision {
                                EventType::Added
                            } else {
                                EventType::Modified
                            };
                            (
                                kind,
                                serde_json::from_slice::<Value>(&event.kv.value)
                                    .unwrap_or_default(),
                            )
                        }
                        StoreEventType::Delete => {
                            let previous = event
                                .prev_kv
                                .as_ref()
                                .map(|p| p.value.clone())
                                .unwrap_or_default();
                            (
                                EventType::Deleted,
                                serde_json::from_slice::<Value>(&previous).unwrap_or_default(),
                            )
                        }
                    };
                    let mut object = object;
                    set_identity(resource, &mut object, revision);
                    if let Some(cache) = self.caches.get_mut(cache_name) {
                        match kind {
                            EventType::Deleted => {
                                cache.objects.remove(&event.kv.key);
                            }
                            _ => {
                                cache
                                    .objects
                                    .insert(event.kv.key.clone(), (object.clone(), revision));
                            }
                        }
                        cache.revision = cache.revision.max(revision);
                        cache.window.push_back((revision, kind, object.clone()));
                        while cache.window.len() > self.config.watch_cache_events {
                            if let Some((dropped, _, _)) = cache.window.pop_front() {
                                cache.window_start = dropped;
                            }
                        }
                    }
                    let bytes = body(&object);
                    for key in &watcher_keys {
                        if self.matches(key, &object) {
                            self.emit_bytes(ctx, key, kind, bytes.clone(), revision);
                        }
                    }
                }
            }
            WatchOutput::Progress { revision } => {
                if let Some(cache) = self.caches.get_mut(cache_name) {
                    cache.revision = cache.revision.max(revision);
                }
            }
            WatchOutput::Canceled { .. } => {
                // The store compacted past the cache: every watcher re-lists.
                let keys: Vec<(Address, u64)> = self
                    .watchers
                    .iter()
                    .filter(|(_, w)| w.resource.plural == resource.plural)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    let object: Value = serde_json::from_slice(&status(
                        410,
                        "Expired",
                        "the watch cache was reset; re-list and watch again",
                        json!({}),
                    ))
                    .unwrap_or_default();
                    self.emit(ctx, &key, EventType::Error, object, 0);
                    self.watchers.remove(&key);
                }
                self.caches.remove(cache_name);
            }
        }
    }

    /// Starts a compaction round when one is due (see `compaction_interval_ms`).
    fn maybe_compact(&mut self, ctx: &mut Ctx<'_>) {
        let every = self.config.compaction_interval_ms;
        let now = ctx.now();
        if every == 0 || !self.bootstrap_pending.is_empty() {
            return;
        }
        // The first round waits a whole interval too: it only records a revision (as
        // kube-apiserver's bootstrap round does) but writes the compaction key, and a
        // write right at start-up would move the revision under clients that just
        // listed.
        let Some(at) = self.compact_round_at else {
            self.compact_round_at = Some(now);
            return;
        };
        let due = now.since(at) >= Duration::from_millis(every);
        let busy = self
            .ops
            .values()
            .any(|op| matches!(op.stage, Stage::CompactClaim | Stage::Compact));
        if !due || busy {
            return;
        }
        self.compact_round_at = Some(now);
        let key = COMPACT_KEY.as_bytes().to_vec();
        let request = StoreRequest::Txn(TxnRequest {
            compare: vec![Compare {
                key: key.clone(),
                range_end: Vec::new(),
                result: CompareResult::Equal,
                target: CompareTarget::Version(self.compact_version),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: key.clone(),
                value: self.compact_revision.to_string().into_bytes(),
                ..Default::default()
            })],
            failure: vec![RequestOp::Range(RangeRequest {
                key,
                ..Default::default()
            })],
        });
        let op_id = self.new_op(
            None,
            ApiRequest {
                verb: Verb::Update,
                group: String::new(),
                version: "v1".into(),
                resource: "compaction".into(),
                subresource: None,
                namespace: None,
                name: None,
                body: Vec::new(),
                options: ListOptions::default(),
            },
            &RESOURCES[0],
            Stage::CompactClaim,
            None,
        );
        if self.store(ctx, now, op_id, request).is_err() {
            self.ops.remove(&op_id);
        }
    }

    fn bookmarks(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let every = Duration::from_millis(self.config.bookmark_ms);
        let due: Vec<(Address, u64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.bookmarks && now.since(w.last_sent) >= every)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            let resource = watcher.resource;
            let revision = cache_revision(&self.caches, resource);
            let object = json!({ "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": { "resourceVersion": revision.to_string() } });
            self.emit(ctx, &key, EventType::Bookmark, object, revision);
        }
    }

    fn bootstrap(&mut self, ctx: &mut Ctx<'_>) {
        // Every replica may do this: "create if absent" makes it idempotent.
        let now = ctx.now();
        let in_flight = self
            .ops
            .values()
            .any(|op| matches!(op.stage, Stage::Bootstrap));
        if in_flight {
            return;
        }
        let pending = self.bootstrap_pending.clone();
        for name in &pending {
            let object = json!({
                "kind": "Namespace", "apiVersion": "v1",
                "metadata": { "name": name, "uid": uid(ctx), "creationTimestamp": rfc3339(now.0) },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            });
            let key = RESOURCES[0].key(None, name).into_bytes();
            let op_id = self.new_op(
                None,
                ApiRequest {
                    verb: Verb::Create,
                    group: String::new(),
                    version: "v1".into(),
                    resource: "namespaces".into(),
                    subresource: None,
                    namespace: None,
                    name: Some(name.clone()),
                    body: Vec::new(),
                    options: ListOptions::default(),
                },
                &RESOURCES[0],
                Stage::Bootstrap,
                None,
            );
            if self
                .store(
                    ctx,
                    now,
                    op_id,
                    txn_put_if(&key, CompareTarget::Version(0), body(&object)),
                )
                .is_err()
            {
                self.ops.remove(&op_id);
            }
        }
    }
}

impl ApiServer {
    /// The create transaction: "if absent, write" — for a Service also "if its cluster
    /// IP and node ports are free, take them", choosing free-looking ones at random
    /// from the seeded RNG. The failure branch reads the key so a failed create can
    /// tell "already exists" from "an allocation was taken".
    fn create_txn(&mut self, ctx: &mut Ctx<'_>, op: &mut Op) -> StoreRequest {
        let mut object = op.prepared.clone().unwrap_or_default();
        if op.resource.kind == "Service" {
            self.allocate(ctx, &op.request, &mut object);
            op.prepared = Some(object.clone());
        }
        let name = meta_str(&object, "name").unwrap_or("").to_string();
        let key = op
            .resource
            .key(op.request.namespace.as_deref(), &name)
            .into_bytes();
        let absent = |key: Vec<u8>| Compare {
            key,
            range_end: Vec::new(),
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
        };
        let mut compare = vec![absent(key.clone())];
        let mut success = vec![RequestOp::Put(PutRequest {
            key: key.clone(),
            value: body(&strip(&object)),
            ..Default::default()
        })];
        let owner = format!(
            "{}/{name}",
            op.request.namespace.clone().unwrap_or_default()
        )
        .into_bytes();
        for allocation in allocation_keys(&object) {
            compare.push(absent(allocation.clone()));
            success.push(RequestOp::Put(PutRequest {
                key: allocation,
                value: owner.clone(),
                ..Default::default()
            }));
        }
        let mut failure = vec![RequestOp::Range(RangeRequest {
            key,
            count_only: true,
            ..Default::default()
        })];
        if let (Some(ns), Some(revision)) = (&op.request.namespace, op.namespace_revision) {
            // Admitted in this namespace as it was at `revision`: nothing is created
            // in a namespace that began terminating since (folded into the write
            // instead of a read before it).
            let namespace_key = RESOURCES[0].key(None, ns).into_bytes();
            compare.push(unchanged_since(&namespace_key, revision));
            failure.push(RequestOp::Range(RangeRequest {
                key: namespace_key,
                keys_only: true,
                ..Default::default()
            }));
        }
        for (quota_key, revision, charged) in &op.quota_writes {
            compare.push(unchanged_since(quota_key, *revision));
            success.push(RequestOp::Put(PutRequest {
                key: quota_key.clone(),
                value: body(&strip(charged)),
                ..Default::default()
            }));
            failure.push(RequestOp::Range(RangeRequest {
                key: quota_key.clone(),
                keys_only: true,
                ..Default::default()
            }));
        }
        StoreRequest::Txn(TxnRequest {
            compare,
            success,
            failure,
        })
    }

    /// Fills `spec.clusterIP(s)` and node ports that the client left empty.
    fn allocate(&mut self, ctx: &mut Ctx<'_>, request: &ApiRequest, object: &mut Value) {
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let kind = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            return;
        }
        let user_ip = clusterip_of(&request.body);
        if user_ip.is_none() {
            let [a, b] = self.config.service_ip_base;
            // Hosts 0.2 .. 255.254 of the /16: 0.0 is the network, 0.1 the apiserver's.
            let host: u16 = ctx.rng().gen_range(2..65_535);
            let ip = format!("{a}.{b}.{}.{}", host >> 8, host & 0xff);
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            let (low, high) = self.config.node_port_range;
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut() {
                    if port.get("nodePort").and_then(Value::as_u64).is_none() {
                        let chosen = ctx.rng().gen_range(low..=high);
                        port["nodePort"] = json!(chosen);
                    }
                }
            }
        }
    }
}

/// The `autoscaling/v1 Scale` view of a Deployment, ReplicaSet or StatefulSet.
fn scale_of(object: &Value) -> Value {
    let meta = super::object::metadata(object).cloned().unwrap_or_default();
    let pick = |field: &str| meta.get(field).cloned().unwrap_or(Value::Null);
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

/// The allocation keys a Service holds: its cluster IP and node ports.
fn allocation_keys(object: &Value) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    if object.get("kind").and_then(Value::as_str) != Some("Service") {
        return keys;
    }
    let spec = &object["spec"];
    if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str) {
        if !ip.is_empty() && ip != "None" {
            keys.push(format!("/registry/core/serviceipallocations/{ip}").into_bytes());
        }
    }
    if let Some(ports) = spec.get("ports").and_then(Value::as_array) {
        for port in ports {
            if let Some(node_port) = port.get("nodePort").and_then(Value::as_u64) {
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP");
                keys.push(
                    format!("/registry/core/nodeportallocations/{protocol}/{node_port}")
                        .into_bytes(),
                );
            }
        }
    }
    keys
}

fn clusterip_of(request_body: &[u8]) -> Option<String> {
    let object: Value = serde_json::from_slice(request_body).ok()?;
    object["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .map(str::to_string)
}

/// Whether the client chose the IP or node ports itself (a collision is then its error).
fn requested_allocations(request: &ApiRequest) -> bool {
    let Ok(object) = serde_json::from_slice::<Value>(&request.body) else {
        return false;
    };
    clusterip_of(&request.body).is_some_and(|ip| ip != "None")
        || object["spec"]["ports"]
            .as_array()
            .is_some_and(|ports| ports.iter().any(|p| p.get("nodePort").is_some()))
}

fn cache_revision(caches: &BTreeMap<&'static str, Cache>, resource: &Resource) -> i64 {
    caches
        .get(cache_key(resource))
        .map(|c| c.revision)
        .unwrap_or(0)
}

fn set_identity(resource: &Resource, object: &mut Value, revision: i64) {
    if let Some(map) = object.as_object_mut() {
        map.insert("kind".into(), json!(resource.kind));
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// What is stored: no resourceVersion (it is the store's mod revision).
fn strip(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    copy
}

/// Removes an object if unchanged since `mod_revision`, freeing its IP and port
/// allocations and writing the quotas it gave back (each guarded by its own revision).
fn removal_txn(
    key: &[u8],
    object: &Value,
    mod_revision: i64,
    quotas: &[(Vec<u8>, i64, Value)],
) -> StoreRequest {
    let mut request = delete_if(key, mod_revision);
    if let StoreRequest::Txn(txn) = &mut request {
        for freed in allocation_keys(object) {
            txn.success.push(RequestOp::DeleteRange(DeleteRangeRequest {
                key: freed,
                range_end: Vec::new(),
                prev_kv: false,
            }));
        }
        for (quota_key, revision, credited) in quotas {
            txn.compare.push(unchanged_since(quota_key, *revision));
            txn.success.push(RequestOp::Put(PutRequest {
                key: quota_key.clone(),
                value: body(&strip(credited)),
                ..Default::default()
            }));
        }
    }
    request
}

/// "`key` was last written at `revision`" (a quota charged or credited with an object).
fn unchanged_since(key: &[u8], revision: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        result: CompareResult::Equal,
        target: CompareTarget::ModRevision(revision),
    }
}

/// The one read a namespaced create's admission needs: the namespace, then for a Pod
/// its namespace's LimitRanges and the PriorityClass it names, the namespace's
/// ResourceQuotas, and for a new ResourceQuota each resource it counts. A read-only
/// transaction: one linearizable read at one revision instead of up to four in a row.
fn admission_read(op: &Op) -> (AdmitReads, StoreRequest) {
    let ns = op.request.namespace.clone().unwrap_or_default();
    let object = op.prepared.clone().unwrap_or_default();
    let key_read = |key: Vec<u8>| {
        RequestOp::Range(RangeRequest {
            key,
            ..Default::default()
        })
    };
    let prefix_read = |resource: Option<&Resource>| {
        let prefix = resource
            .map(|r| r.prefix(Some(&ns)))
            .unwrap_or_default()
            .into_bytes();
        RequestOp::Range(RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            ..Default::default()
        })
    };
    let mut reads = AdmitReads::default();
    let mut success = vec![key_read(RESOURCES[0].key(None, &ns).into_bytes())];
    if op.resource.kind == "Pod" {
        reads.limits = Some(success.len());
        success.push(prefix_read(Resource::find("", "limitranges")));
        let class = object["spec"]["priorityClassName"].as_str().unwrap_or("");
        if !class.is_empty() {
            reads.priority = Some(success.len());
            let key = Resource::find("scheduling.k8s.io", "priorityclasses")
                .map(|r| r.key(None, class))
                .unwrap_or_default()
                .into_bytes();
            success.push(key_read(key));
        }
    }
    reads.quotas = success.len();
    success.push(prefix_read(Resource::find("", "resourcequotas")));
    if op.resource.kind == "ResourceQuota" {
        for resource in admission::quota_resources(&object)
            .iter()
            .filter_map(|(plural, group)| Resource::find(group, plural))
            .filter(|r| r.namespaced)
        {
            reads.counted.push((success.len(), resource));
            success.push(prefix_read(Some(resource)));
        }
    }
    let request = StoreRequest::Txn(TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    });
    (reads, request)
}

/// Reads a namespace's ResourceQuotas.
fn quotas_read(namespace: &str) -> StoreRequest {
    let prefix = Resource::find("", "resourcequotas")
        .map(|r| r.prefix(Some(namespace)))
        .unwrap_or_default()
        .into_bytes();
    StoreRequest::Range(RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        ..Default::default()
    })
}

fn delete_if(key: &[u8], mod_revision: i64) -> StoreRequest {
    StoreRequest::Txn(TxnRequest {
        compare: vec![unchanged_since(key, mod_revision)],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            range_end: Vec::new(),
            prev_kv: false,
        })],
        failure: Vec::new(),
    })
}

fn body_resource_version(request_body: &[u8]) -> Option<i64> {
    let object: Value = serde_json::from_slice(request_body).ok()?;
    meta_str(&object, "resourceVersion")
        .filter(|v| !v.is_empty())?
        .parse()
        .ok()
}

fn conflict(resource: &Resource, name: &str) -> ApiResponse {
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        qualified(resource.plural, resource.group)
    );
    ApiResponse {
        code: 409,
        body: status(
            409,
            "Conflict",
            &message,
            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
        ),
    }
}

fn invalid(resource: &Resource, name: &str, causes: &[validation::Cause]) -> ApiResponse {
    let message = validation::invalid_message(resource.kind, name, causes);
    let details =
        json!({ "name": name, "group": resource.group, "kind": resource.kind, "causes": causes });
    ApiResponse {
        code: 422,
        body: status(422, "Invalid", &message, details),
    }
}

fn encode_continue(revision: i64, key: &[u8]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{revision}.{hex}")
}

fn decode_continue(token: &str) -> Option<(i64, Vec<u8>)> {
    let (revision, hex) = token.split_once('.')?;
    let revision = revision.parse().ok()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((revision, key))
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
                ctx.set_timer(ApiTimer::Tick, Duration::from_millis(100));
                self.bootstrap(ctx);
            }
            Input::Timer(ApiTimer::Tick) => {
                ctx.set_timer(ApiTimer::Tick, Duration::from_millis(100));
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
                self.bookmarks(ctx);
                self.maybe_compact(ctx);
                self.ticks += 1;
                if !self.bootstrap_pending.is_empty() && self.ticks.is_multiple_of(10) {
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
