//! The API server's client library, embedded in every component that talks to the API
//! server (controllers, scheduler, kubelet, proxy, command-line actors).
//!
//! A pure state machine like the actors that use it: the caller hands it messages and
//! ticks and forwards the messages it returns, so it runs unchanged in both hosts.
//!
//! What it gives the caller:
//! * **typed requests** — [`ApiRequest`] builders from a [`ResourceRef`] or a k8s-openapi
//!   type (`ResourceRef::of::<Pod>()`), and typed decoding of answers
//!   ([`ApiResponse::typed`]);
//! * **balancing and retries** — requests go round-robin over the endpoints (API
//!   servers, or one balancer address); a read that times out or meets a 5xx/429 is
//!   retried on the next endpoint with backoff; a write that is never answered completes
//!   with [`ApiClientError::Ambiguous`] and is not retried blindly (a create with
//!   `generateName` could otherwise land twice);
//! * **informers** — list (paginated, at one consistent resourceVersion), then watch
//!   from the list's version; events in `seq` order (the bus may reorder and duplicate:
//!   early events wait for the gap to fill, duplicates are dropped) and acknowledged
//!   for the server's flow control; a watch that goes silent, loses an event or whose
//!   server dies resumes from the last version seen on the next endpoint; a 410
//!   (Expired) re-lists and hands the caller the difference between the old cache and
//!   the new list as ordinary changes. The cache is indexed (namespace always, plus
//!   labels, fields, owners or any function the caller names). Changes come back from
//!   [`ApiClient::on_message`] and [`ApiClient::on_tick`] as [`InformerEvent`]s: those
//!   are the event handlers of a sans-IO component — the actor matches on them.
//!
//! Nothing polls: after the first list, an informer only watches.

use super::stream::{Receiver, StreamConfig};
use super::{earliest, Outbox};
use crate::apiserver::messages::{
    ApiMessage, ApiRequest, ApiResponse, EventType, ListOptions, Verb, WatchEvent,
};
use crate::message::Message;
use keel_engine::{Address, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Call [`ApiClient::on_tick`] about this often.
pub const TICK_MS: u64 = 100;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiClientConfig {
    /// A request unanswered this long is retried elsewhere (reads) or reported
    /// ambiguous (writes).
    pub request_timeout_ms: u64,
    /// Attempts per read (the first included).
    pub read_attempts_max: u32,
    /// A read unanswered this long is sent again, with the same id, to the next
    /// endpoint — a lost request or answer then costs this, not the whole
    /// `request_timeout_ms` — while the first send may still answer (whichever answer
    /// comes first completes it). Each resend counts as an attempt. Writes are never
    /// resent: their outcome would become ambiguous.
    #[serde(default = "default_read_retransmit_ms")]
    pub read_retransmit_ms: u64,
    /// Requests in flight at once; more are refused with `TooManyRequests`.
    pub inflight_max: usize,
    /// Informers at once.
    pub informers_max: usize,
    /// Items per page when an informer lists.
    pub list_page_size: i64,
    /// A watch that hears nothing this long (API servers send bookmarks to idle
    /// watchers every 5 s) is presumed dead and resumed elsewhere.
    pub watch_silence_ms: u64,
    /// A gap in a watch's event sequence open this long means an event was lost.
    pub gap_timeout_ms: u64,
    /// Early events held per watch while waiting for a late one.
    pub reorder_max: usize,
    /// A watch acknowledges every this many events, and whatever is left on the next
    /// tick (keep it well below the API server's budget of unacknowledged events, 1000
    /// by default; acknowledging each event would double the watch traffic).
    pub ack_every: u64,
    /// Backoff between attempts at restarting an informer's list or watch: doubles from
    /// the minimum to the maximum while attempts keep failing.
    pub retry_backoff_min_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// An endpoint that left a request unanswered is skipped this long (unless every
    /// endpoint is being skipped); an answer from it ends the wait early.
    pub endpoint_cooldown_ms: u64,
}

fn default_read_retransmit_ms() -> u64 {
    1_000
}

impl Default for ApiClientConfig {
    fn default() -> Self {
        ApiClientConfig {
            request_timeout_ms: 5_000,
            read_attempts_max: 4,
            read_retransmit_ms: default_read_retransmit_ms(),
            inflight_max: 1024,
            informers_max: 64,
            list_page_size: 500,
            watch_silence_ms: 12_000,
            gap_timeout_ms: 2_000,
            reorder_max: 256,
            ack_every: 32,
            retry_backoff_min_ms: 100,
            retry_backoff_max_ms: 5_000,
            endpoint_cooldown_ms: 10_000,
        }
    }
}

impl ApiClientConfig {
    /// How an informer's watch events are put back in order and acknowledged.
    pub fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            reorder_max: self.reorder_max,
            gap_timeout_ms: self.gap_timeout_ms,
            ack_every: self.ack_every,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout_ms == 0
            || self.read_attempts_max == 0
            || self.read_retransmit_ms == 0
            || self.inflight_max == 0
            || self.informers_max == 0
            || self.list_page_size <= 0
            || self.watch_silence_ms == 0
            || self.gap_timeout_ms == 0
            || self.reorder_max == 0
            || self.ack_every == 0
        {
            return Err("API client timeouts and limits must be at least 1".into());
        }
        if self.retry_backoff_min_ms > self.retry_backoff_max_ms {
            return Err("the API client's minimum backoff exceeds its maximum".into());
        }
        Ok(())
    }
}

// ----- typed requests -------------------------------------------------------------------

/// Which resource a request is about: group ("" for core), version, plural.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceRef {
    /// `api_version` as in an object's `apiVersion` ("v1", "apps/v1").
    pub fn new(api_version: &str, plural: &str) -> Self {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        ResourceRef {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
        }
    }

    /// The resource of a k8s-openapi type: `ResourceRef::of::<Pod>()`.
    pub fn of<T: k8s_openapi::Resource>() -> Self {
        ResourceRef {
            group: T::GROUP.into(),
            version: T::VERSION.into(),
            plural: T::URL_PATH_SEGMENT.into(),
        }
    }

    fn request(&self, verb: Verb, namespace: Option<&str>, name: Option<&str>) -> ApiRequest {
        ApiRequest {
            verb,
            group: self.group.clone(),
            version: self.version.clone(),
            resource: self.plural.clone(),
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            body: Vec::new(),
            options: ListOptions::default(),
        }
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> ApiRequest {
        self.request(Verb::Get, namespace, Some(name))
    }

    pub fn list(&self, namespace: Option<&str>, options: ListOptions) -> ApiRequest {
        let mut request = self.request(Verb::List, namespace, None);
        request.options = options;
        request
    }

    /// A watch; `options.watch_id` names it and must also be the request's id.
    pub fn watch(&self, namespace: Option<&str>, options: ListOptions) -> ApiRequest {
        let mut request = self.request(Verb::Watch, namespace, None);
        request.options = options;
        request
    }

    /// Creates `object` (JSON); the namespace comes from the object unless given.
    pub fn create(&self, namespace: Option<&str>, object: &Value) -> ApiRequest {
        let namespace = namespace.or_else(|| object["metadata"]["namespace"].as_str());
        let mut request = self.request(Verb::Create, namespace, None);
        request.body = serde_json::to_vec(object).unwrap_or_default();
        request
    }

    /// Replaces `object`; a `metadata.resourceVersion` makes it a compare-and-swap.
    pub fn update(&self, object: &Value) -> ApiRequest {
        let namespace = object["metadata"]["namespace"].as_str();
        let name = object["metadata"]["name"].as_str();
        let mut request = self.request(Verb::Update, namespace, name);
        request.body = serde_json::to_vec(object).unwrap_or_default();
        request
    }

    pub fn delete(&self, namespace: Option<&str>, name: &str) -> ApiRequest {
        self.request(Verb::Delete, namespace, Some(name))
    }
}

impl ApiRequest {
    /// The same request on a subresource ("status", "scale", "binding").
    pub fn on_subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.into());
        self
    }

    /// Creates a typed object: `ApiRequest::create_typed(&pod)`.
    pub fn create_typed<T>(object: &T) -> Result<Self, String>
    where
        T: k8s_openapi::Resource + Serialize,
    {
        let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
        Ok(ResourceRef::of::<T>().create(None, &value))
    }

    /// Replaces a typed object.
    pub fn update_typed<T>(object: &T) -> Result<Self, String>
    where
        T: k8s_openapi::Resource + Serialize,
    {
        let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
        Ok(ResourceRef::of::<T>().update(&value))
    }

    /// Whether the request only reads, so that sending it again cannot change anything
    /// (the client library retries these; a balancer answers them 503 rather than 504).
    pub fn is_read(&self) -> bool {
        matches!(self.verb, Verb::Get | Verb::List)
    }
}

impl ApiResponse {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as a k8s-openapi type.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// The `message` of a `Status` body (what kubectl prints for an error).
    pub fn message(&self) -> String {
        self.object()["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("status {}", self.code))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiClientError {
    /// A write was sent and never answered: it may or may not have been applied.
    Ambiguous(String),
    /// A read failed on every attempt.
    Unavailable(String),
    /// Too many requests in flight in this client.
    TooManyRequests { limit: usize },
}

impl std::fmt::Display for ApiClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiClientError::Ambiguous(s) => write!(f, "outcome unknown: {s}"),
            ApiClientError::Unavailable(s) => write!(f, "API server unavailable: {s}"),
            ApiClientError::TooManyRequests { limit } => {
                write!(f, "too many requests in flight (limit {limit})")
            }
        }
    }
}

/// A finished request: the caller's tag and the outcome. A definite answer (any HTTP
/// code, errors included) is `Ok`; only "no definite answer" is `Err`.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub tag: u64,
    pub result: Result<ApiResponse, ApiClientError>,
}

// ----- informers -------------------------------------------------------------------------

/// What an index files an object under.
#[derive(Clone, Debug)]
pub enum IndexBy {
    /// `metadata.namespace` (every informer has this index as "namespace").
    Namespace,
    /// The value of one label.
    Label(String),
    /// A dotted path to a string field: "spec.nodeName", "status.phase".
    Field(String),
    /// The uid of every owner reference.
    OwnerUid,
    /// Any function of the object.
    Func(fn(&Value) -> Vec<String>),
}

impl IndexBy {
    fn values(&self, object: &Value) -> Vec<String> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        match self {
            IndexBy::Namespace => text(&object["metadata"]["namespace"]).into_iter().collect(),
            IndexBy::Label(key) => text(&object["metadata"]["labels"][key.as_str()])
                .into_iter()
                .collect(),
            IndexBy::Field(path) => {
                let mut v = object;
                for part in path.split('.') {
                    v = &v[part];
                }
                text(v).into_iter().collect()
            }
            IndexBy::OwnerUid => object["metadata"]["ownerReferences"]
                .as_array()
                .map(|owners| owners.iter().filter_map(|o| text(&o["uid"])).collect())
                .unwrap_or_default(),
            IndexBy::Func(f) => f(object),
        }
    }
}

/// What an informer watches and how it indexes its cache.
#[derive(Clone, Debug)]
pub struct InformerSpec {
    pub resource: ResourceRef,
    /// None: every namespace (or a cluster-scoped resource).
    pub namespace: Option<String>,
    pub label_selector: String,
    pub field_selector: String,
    /// Named indexes besides "namespace".
    pub indexes: Vec<(String, IndexBy)>,
}

impl InformerSpec {
    pub fn new(resource: ResourceRef) -> Self {
        InformerSpec {
            resource,
            namespace: None,
            label_selector: String::new(),
            field_selector: String::new(),
            indexes: Vec::new(),
        }
    }

    pub fn of<T: k8s_openapi::Resource>() -> Self {
        InformerSpec::new(ResourceRef::of::<T>())
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = selector.into();
        self
    }

    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = selector.into();
        self
    }

    pub fn index(mut self, name: &str, by: IndexBy) -> Self {
        self.indexes.push((name.into(), by));
        self
    }
}

/// A change an informer hands its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Added(Value),
    Updated {
        old: Value,
        new: Value,
    },
    Deleted(Value),
    /// The cache holds a complete list at `revision` (after the first list and after
    /// every re-list; the changes a re-list found come just before).
    Synced {
        revision: i64,
        objects: usize,
    },
    /// A watch began after `from`: changes until the next `WatchEnded` come from it,
    /// in order, none skipped.
    WatchStarted {
        from: i64,
    },
    /// The watch ended; `relist` says whether the informer lists again (410) or
    /// resumes from the last version it saw.
    WatchEnded {
        reason: String,
        relist: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct InformerEvent {
    pub informer: u64,
    /// The resourceVersion the change happened at (the list's for `Synced`, the
    /// starting one for `WatchStarted`).
    pub revision: i64,
    pub change: Change,
}

enum Phase {
    /// Waiting until `at` to list again (`relist`) or to resume the watch.
    Waiting {
        at: Time,
        relist: bool,
    },
    /// A list in flight: the request, the pages gathered so far and their version.
    Listing {
        request: u64,
        revision: Option<i64>,
        items: BTreeMap<String, Value>,
    },
    Watching(WatchState),
}

struct WatchState {
    watch_id: u64,
    server: Address,
    established: bool,
    sent_at: Time,
    heard: Time,
    /// Where acknowledgements go (the sender of the events: the API server, or a
    /// balancer).
    ack_to: Address,
    /// The events in `seq` order, with their senders.
    stream: Receiver<(Address, WatchEvent)>,
}

/// One informer's cache and progress.
pub struct Informer {
    spec: InformerSpec,
    phase: Phase,
    objects: BTreeMap<String, Value>,
    /// index name → value → object keys.
    indexes: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// The newest version the cache reflects.
    revision: i64,
    synced: bool,
    /// Consecutive failed attempts (for backoff).
    failures: u32,
    pub stats: InformerStats,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InformerStats {
    pub lists: u64,
    pub watches: u64,
    pub events: u64,
    pub resumes: u64,
    pub relists: u64,
}

fn object_key(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    match object["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

fn revision_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Informer {
    fn new(spec: InformerSpec, now: Time) -> Self {
        let mut indexes = BTreeMap::new();
        indexes.insert("namespace".to_string(), BTreeMap::new());
        for (name, _) in &spec.indexes {
            indexes.insert(name.clone(), BTreeMap::new());
        }
        Informer {
            spec,
            phase: Phase::Waiting {
                at: now,
                relist: true,
            },
            objects: BTreeMap::new(),
            indexes,
            revision: 0,
            synced: false,
            failures: 0,
            stats: InformerStats::default(),
        }
    }

    /// An informer that has listed `objects` at `revision`: for table tests of reconcile
    /// functions, which read caches and nothing else.
    pub fn filled(spec: InformerSpec, objects: Vec<Value>, revision: i64) -> Self {
        let mut informer = Informer::new(spec, Time(0));
        for object in objects {
            informer.upsert(object);
        }
        informer.revision = revision;
        informer.synced = true;
        informer
    }

    /// Whether the cache has held a complete list at least once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The newest resourceVersion the cache reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// An object by namespace (None for cluster-scoped) and name.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<&Value> {
        let key = match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        self.objects.get(&key)
    }

    /// Every cached object, ordered by namespace and name.
    pub fn list(&self) -> impl Iterator<Item = &Value> {
        self.objects.values()
    }

    /// The objects an index files under `value` ("namespace" is always there).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<&Value> {
        self.indexes
            .get(index)
            .and_then(|values| values.get(value))
            .map(|keys| keys.iter().filter_map(|k| self.objects.get(k)).collect())
            .unwrap_or_default()
    }

    /// An object decoded as a k8s-openapi type.
    pub fn get_typed<T: DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Result<T, String>> {
        self.get(namespace, name)
            .map(|v| T::deserialize(v).map_err(|e| e.to_string()))
    }

    fn index_values(&self, object: &Value) -> Vec<(String, String)> {
        let mut values: Vec<(String, String)> = IndexBy::Namespace
            .values(object)
            .into_iter()
            .map(|v| ("namespace".to_string(), v))
            .collect();
        for (name, by) in &self.spec.indexes {
            values.extend(by.values(object).into_iter().map(|v| (name.clone(), v)));
        }
        values
    }

    fn unindex(&mut self, key: &str, object: &Value) {
        for (index, value) in self.index_values(object) {
            if let Some(values) = self.indexes.get_mut(&index) {
                if let Some(keys) = values.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        values.remove(&value);
                    }
                }
            }
        }
    }

    /// Puts an object in the cache; returns the one it replaced.
    fn upsert(&mut self, object: Value) -> Option<Value> {
        let key = object_key(&object);
        let old = self.objects.remove(&key);
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        for (index, value) in self.index_values(&object) {
            self.indexes
                .entry(index)
                .or_default()
                .entry(value)
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, object);
        old
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }

    fn watch_request(&self, watch_id: u64) -> ApiRequest {
        self.spec.resource.watch(
            self.spec.namespace.as_deref(),
            ListOptions {
                label_selector: self.spec.label_selector.clone(),
                field_selector: self.spec.field_selector.clone(),
                resource_version: self.revision.to_string(),
                allow_watch_bookmarks: true,
                watch_id,
                ..ListOptions::default()
            },
        )
    }

    fn list_request(&self, continue_token: String, page_size: i64) -> ApiRequest {
        self.spec.resource.list(
            self.spec.namespace.as_deref(),
            ListOptions {
                label_selector: self.spec.label_selector.clone(),
                field_selector: self.spec.field_selector.clone(),
                limit: page_size,
                continue_token,
                ..ListOptions::default()
            },
        )
    }
}

// ----- the client ------------------------------------------------------------------------

/// Who a request in flight answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Caller(u64),
    Informer(u64),
}

struct Inflight {
    owner: Owner,
    request: ApiRequest,
    sent_at: Time,
    /// When it was last sent (a read is resent after `read_retransmit_ms`).
    last_sent_at: Time,
    /// Where the last attempt went (a retry goes elsewhere).
    to: Address,
    attempts: u32,
    /// A retry waits for this time (backoff).
    retry_at: Option<Time>,
    last_error: String,
}

/// The outputs of one call: finished requests and informer changes.
#[derive(Debug, Default)]
pub struct Outputs {
    pub completions: Vec<Completion>,
    pub events: Vec<InformerEvent>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.completions.is_empty() && self.events.is_empty()
    }
}

pub type Out = Vec<(Address, Message)>;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ApiClientStats {
    pub requests: u64,
    pub retries: u64,
    pub ambiguous: u64,
}

pub struct ApiClient {
    config: ApiClientConfig,
    endpoints: Vec<Address>,
    cursor: usize,
    next_id: u64,
    inflight: BTreeMap<u64, Inflight>,
    informers: BTreeMap<u64, Informer>,
    next_informer: u64,
    /// Watch id on the wire → informer.
    watches: BTreeMap<u64, u64>,
    /// Endpoints skipped until the given time (they left a request unanswered).
    cooling: BTreeMap<Address, Time>,
    /// The latest time the client has seen (for skipping cooling endpoints).
    now: Time,
    pub stats: ApiClientStats,
}

impl ApiClient {
    /// `session` should be random per client incarnation (from the actor's RNG): request
    /// and watch ids start from it, so a restarted client never collides with the
    /// watches its previous life left on a server.
    pub fn new(
        endpoints: Vec<Address>,
        config: ApiClientConfig,
        session: u64,
    ) -> Result<Self, String> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err("an API client needs at least one endpoint".into());
        }
        Ok(ApiClient {
            config,
            cursor: (session as usize) % endpoints.len(),
            endpoints,
            next_id: super::first_request_id(session),
            inflight: BTreeMap::new(),
            informers: BTreeMap::new(),
            next_informer: 0,
            watches: BTreeMap::new(),
            cooling: BTreeMap::new(),
            now: Time(0),
            stats: ApiClientStats::default(),
        })
    }

    pub fn endpoints(&self) -> &[Address] {
        &self.endpoints
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The next endpoint in turn, skipping those cooling down after leaving a request
    /// unanswered (unless all are).
    fn next_endpoint(&mut self) -> Address {
        let n = self.endpoints.len();
        for _ in 0..n {
            self.cursor = (self.cursor + 1) % n;
            let candidate = &self.endpoints[self.cursor];
            if self
                .cooling
                .get(candidate)
                .is_none_or(|until| self.now >= *until)
            {
                return candidate.clone();
            }
        }
        self.cursor = (self.cursor + 1) % n;
        self.endpoints[self.cursor].clone()
    }

    /// `endpoint` left something unanswered: skip it for a while.
    fn cool(&mut self, endpoint: &Address, now: Time) {
        if self.endpoints.len() > 1 {
            let until = now.plus(Duration::from_millis(self.config.endpoint_cooldown_ms));
            self.cooling.insert(endpoint.clone(), until);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends a request; its [`Completion`] comes back with `tag`.
    pub fn send(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        request: ApiRequest,
        tag: u64,
    ) -> Result<u64, ApiClientError> {
        self.submit(out, now, request, Owner::Caller(tag))
    }

    fn submit(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        request: ApiRequest,
        owner: Owner,
    ) -> Result<u64, ApiClientError> {
        self.now = self.now.max(now);
        if self.inflight.len() >= self.config.inflight_max {
            return Err(ApiClientError::TooManyRequests {
                limit: self.config.inflight_max,
            });
        }
        let id = self.id();
        let to = self.next_endpoint();
        self.stats.requests += 1;
        out.send(
            to.clone(),
            Message::Api(ApiMessage::Request {
                id,
                request: request.clone(),
            }),
        );
        self.inflight.insert(
            id,
            Inflight {
                owner,
                request,
                sent_at: now,
                last_sent_at: now,
                to,
                attempts: 1,
                retry_at: None,
                last_error: String::new(),
            },
        );
        Ok(id)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let ms = self
            .config
            .retry_backoff_min_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
            .min(self.config.retry_backoff_max_ms);
        Duration::from_millis(ms)
    }

    /// A read failed at one endpoint: try the next after a backoff, or give up.
    fn read_failed(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        id: u64,
        mut inflight: Inflight,
        why: String,
        outputs: &mut Outputs,
    ) {
        inflight.last_error = why;
        if inflight.attempts >= self.config.read_attempts_max {
            let error = ApiClientError::Unavailable(format!(
                "{} (after {} attempts)",
                inflight.last_error, inflight.attempts
            ));
            return self.conclude(out, now, inflight.owner, Err(error), outputs);
        }
        inflight.retry_at = Some(now.plus(self.backoff(inflight.attempts)));
        self.inflight.insert(id, inflight);
    }

    /// Hands a finished request to whoever asked: the caller or an informer's list.
    fn conclude(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        owner: Owner,
        result: Result<ApiResponse, ApiClientError>,
        outputs: &mut Outputs,
    ) {
        match owner {
            Owner::Caller(tag) => outputs.completions.push(Completion { tag, result }),
            Owner::Informer(informer) => {
                self.on_list_page(out, now, informer, result, &mut outputs.events)
            }
        }
    }

    // ----- informers ---------------------------------------------------------------

    /// Starts an informer; it lists on the next tick. Returns its id.
    pub fn inform(&mut self, now: Time, spec: InformerSpec) -> Result<u64, ApiClientError> {
        if self.informers.len() >= self.config.informers_max {
            return Err(ApiClientError::TooManyRequests {
                limit: self.config.informers_max,
            });
        }
        self.next_informer += 1;
        self.informers
            .insert(self.next_informer, Informer::new(spec, now));
        Ok(self.next_informer)
    }

    pub fn informer(&self, id: u64) -> Option<&Informer> {
        self.informers.get(&id)
    }

    /// Stops an informer and its watch.
    pub fn stop_informer(&mut self, out: &mut dyn Outbox, id: u64) {
        if let Some(informer) = self.informers.remove(&id) {
            if let Phase::Watching(w) = informer.phase {
                self.watches.remove(&w.watch_id);
                out.send(
                    w.server,
                    Message::Api(ApiMessage::StopWatch {
                        watch_id: w.watch_id,
                    }),
                );
            }
        }
    }

    /// Ends an informer's watch (or list) and schedules the next attempt.
    fn restart(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        informer_id: u64,
        reason: String,
        relist: bool,
        events: &mut Vec<InformerEvent>,
    ) {
        let Some(informer) = self.informers.get_mut(&informer_id) else {
            return;
        };
        informer.failures += 1;
        let failures = informer.failures;
        let phase = std::mem::replace(&mut informer.phase, Phase::Waiting { at: now, relist });
        if let Phase::Watching(w) = phase {
            self.watches.remove(&w.watch_id);
            out.send(
                w.server,
                Message::Api(ApiMessage::StopWatch {
                    watch_id: w.watch_id,
                }),
            );
            events.push(InformerEvent {
                informer: informer_id,
                revision: informer.revision,
                change: Change::WatchEnded { reason, relist },
            });
        }
        if relist {
            informer.stats.relists += 1;
        } else {
            informer.stats.resumes += 1;
        }
        // The first retry goes at once (to the next endpoint); repeated failures back off.
        let at = if failures <= 1 {
            now
        } else {
            now.plus(self.backoff(failures - 1))
        };
        if let Some(informer) = self.informers.get_mut(&informer_id) {
            informer.phase = Phase::Waiting { at, relist };
        }
    }

    fn start_list(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        informer_id: u64,
        continue_token: String,
    ) {
        let Some(informer) = self.informers.get(&informer_id) else {
            return;
        };
        let request = informer.list_request(continue_token, self.config.list_page_size);
        match self.submit(out, now, request, Owner::Informer(informer_id)) {
            Ok(id) => {
                let informer = self.informers.get_mut(&informer_id).expect("checked above");
                informer.stats.lists += 1;
                match &mut informer.phase {
                    Phase::Listing { request, .. } => *request = id,
                    phase => {
                        *phase = Phase::Listing {
                            request: id,
                            revision: None,
                            items: BTreeMap::new(),
                        }
                    }
                }
            }
            Err(_) => {
                // Too busy: try again later.
                let at = now.plus(self.backoff(1));
                if let Some(informer) = self.informers.get_mut(&informer_id) {
                    informer.phase = Phase::Waiting { at, relist: true };
                }
            }
        }
    }

    fn start_watch(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        informer_id: u64,
        events: &mut Vec<InformerEvent>,
    ) {
        let watch_id = self.id();
        let server = self.next_endpoint();
        let stream_config = self.config.stream_config();
        let Some(informer) = self.informers.get_mut(&informer_id) else {
            return;
        };
        let request = informer.watch_request(watch_id);
        informer.stats.watches += 1;
        informer.phase = Phase::Watching(WatchState {
            watch_id,
            server: server.clone(),
            established: false,
            sent_at: now,
            heard: now,
            ack_to: server.clone(),
            stream: Receiver::new(stream_config),
        });
        events.push(InformerEvent {
            informer: informer_id,
            revision: informer.revision,
            change: Change::WatchStarted {
                from: informer.revision,
            },
        });
        self.watches.insert(watch_id, informer_id);
        out.send(
            server,
            Message::Api(ApiMessage::Request {
                id: watch_id,
                request,
            }),
        );
    }

    /// A page of an informer's list arrived.
    fn on_list_page(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        informer_id: u64,
        result: Result<ApiResponse, ApiClientError>,
        events: &mut Vec<InformerEvent>,
    ) {
        let response = match result {
            Ok(r) if r.code == 200 => r,
            Ok(r) if r.code == 410 => {
                // The continue token expired: list again from the start.
                if let Some(informer) = self.informers.get_mut(&informer_id) {
                    informer.phase = Phase::Waiting {
                        at: now,
                        relist: true,
                    };
                }
                return;
            }
            Ok(r) => {
                return self.restart(
                    out,
                    now,
                    informer_id,
                    format!("list refused: {}", r.message()),
                    true,
                    events,
                )
            }
            Err(e) => {
                return self.restart(
                    out,
                    now,
                    informer_id,
                    format!("list failed: {e}"),
                    true,
                    events,
                )
            }
        };
        let list = response.object();
        let list_revision = list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let continue_token = list["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(informer) = self.informers.get_mut(&informer_id) else {
            return;
        };
        let Phase::Listing {
            revision, items, ..
        } = &mut informer.phase
        else {
            return;
        };
        revision.get_or_insert(list_revision);
        let kind = list["kind"]
            .as_str()
            .and_then(|k| k.strip_suffix("List"))
            .unwrap_or("")
            .to_string();
        let api_version = list["apiVersion"].as_str().unwrap_or("").to_string();
        if let Some(array) = list["items"].as_array() {
            for item in array {
                let mut item = item.clone();
                // Lists leave kind and apiVersion to the list; the cache keeps whole objects.
                if item.get("kind").is_none() && !kind.is_empty() {
                    item["kind"] = Value::String(kind.clone());
                    item["apiVersion"] = Value::String(api_version.clone());
                }
                items.insert(object_key(&item), item);
            }
        }
        if !continue_token.is_empty() {
            return self.start_list(out, now, informer_id, continue_token);
        }
        // The list is complete: replace the cache, telling the caller what changed.
        let Phase::Listing {
            revision, items, ..
        } = std::mem::replace(
            &mut informer.phase,
            Phase::Waiting {
                at: now,
                relist: false,
            },
        )
        else {
            return;
        };
        let revision = revision.unwrap_or(0);
        let gone: Vec<String> = informer
            .objects
            .keys()
            .filter(|k| !items.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = informer.remove(&key) {
                events.push(InformerEvent {
                    informer: informer_id,
                    revision,
                    change: Change::Deleted(old),
                });
            }
        }
        for (_, object) in items {
            let object_revision = revision_of(&object);
            let unchanged = informer
                .objects
                .get(&object_key(&object))
                .is_some_and(|old| revision_of(old) == object_revision);
            if unchanged {
                continue;
            }
            let change = match informer.upsert(object.clone()) {
                Some(old) => Change::Updated { old, new: object },
                None => Change::Added(object),
            };
            events.push(InformerEvent {
                informer: informer_id,
                revision: object_revision,
                change,
            });
        }
        informer.revision = revision;
        informer.synced = true;
        events.push(InformerEvent {
            informer: informer_id,
            revision,
            change: Change::Synced {
                revision,
                objects: informer.objects.len(),
            },
        });
        self.start_watch(out, now, informer_id, events);
    }

    /// One watch event, in sequence order.
    fn deliver(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        informer_id: u64,
        (from, event): (Address, WatchEvent),
        events: &mut Vec<InformerEvent>,
    ) {
        let Some(informer) = self.informers.get_mut(&informer_id) else {
            return;
        };
        let Phase::Watching(w) = &mut informer.phase else {
            return;
        };
        w.heard = now;
        w.ack_to = from;
        match event.kind {
            EventType::Error => {
                let status: Value = serde_json::from_slice(&event.object).unwrap_or(Value::Null);
                let code = status["code"].as_u64().unwrap_or(0);
                let message = status["message"]
                    .as_str()
                    .unwrap_or("watch ended")
                    .to_string();
                let relist = code == 410;
                self.restart(
                    out,
                    now,
                    informer_id,
                    format!("{code}: {message}"),
                    relist,
                    events,
                );
            }
            EventType::Bookmark => {
                informer.revision = informer.revision.max(event.resource_version);
                informer.failures = 0;
            }
            kind => {
                informer.failures = 0;
                if event.resource_version <= informer.revision {
                    // Already reflected (a resumed watch overlapping the last one).
                    return;
                }
                informer.revision = event.resource_version;
                informer.stats.events += 1;
                let object: Value = serde_json::from_slice(&event.object).unwrap_or(Value::Null);
                let change = if kind == EventType::Deleted {
                    let key = object_key(&object);
                    informer.remove(&key);
                    Change::Deleted(object)
                } else {
                    match informer.upsert(object.clone()) {
                        Some(old) => Change::Updated { old, new: object },
                        None => Change::Added(object),
                    }
                };
                events.push(InformerEvent {
                    informer: informer_id,
                    revision: event.resource_version,
                    change,
                });
            }
        }
    }

    fn on_event(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        from: Address,
        (watch_id, seq, event): (u64, u64, WatchEvent),
        events: &mut Vec<InformerEvent>,
    ) {
        let Some(&informer_id) = self.watches.get(&watch_id) else {
            // A watch this client no longer wants: tell the server to stop it.
            out.send(from, Message::Api(ApiMessage::StopWatch { watch_id }));
            return;
        };
        let Some(informer) = self.informers.get_mut(&informer_id) else {
            return;
        };
        let Phase::Watching(w) = &mut informer.phase else {
            return;
        };
        w.established = true;
        let ready = match w.stream.offer(now, seq, (from, event)) {
            Ok(ready) => ready,
            Err(broken) => {
                // Too many held behind a missing one (see on_tick for a gap that stays open).
                return self.restart(out, now, informer_id, broken.to_string(), false, events);
            }
        };
        for (_, item) in ready {
            self.deliver(out, now, informer_id, item, events);
            if self.watching(informer_id) != Some(watch_id) {
                // An error event ended the watch: the rest belongs to a dead stream.
                return;
            }
        }
        if let Some(Phase::Watching(w)) = self.informers.get_mut(&informer_id).map(|i| &mut i.phase)
        {
            if let Some(seq) = w.stream.ack(false) {
                out.send(
                    w.ack_to.clone(),
                    Message::Api(ApiMessage::EventAck {
                        watch_id: w.watch_id,
                        seq,
                    }),
                );
            }
        }
    }

    /// The wire id of the watch an informer is running, if it is watching.
    fn watching(&self, informer_id: u64) -> Option<u64> {
        match self.informers.get(&informer_id).map(|i| &i.phase) {
            Some(Phase::Watching(w)) => Some(w.watch_id),
            _ => None,
        }
    }

    // ----- driving -------------------------------------------------------------------

    /// Handles an API message addressed to this client (responses and watch events);
    /// other messages are ignored.
    pub fn on_message(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        from: Address,
        msg: ApiMessage,
    ) -> Outputs {
        let mut outputs = Outputs::default();
        match msg {
            ApiMessage::Response { id, response } => {
                if let Some(&informer_id) = self.watches.get(&id) {
                    // The answer to a watch request.
                    if let Some(Informer {
                        phase: Phase::Watching(w),
                        ..
                    }) = self.informers.get_mut(&informer_id)
                    {
                        if w.watch_id == id {
                            if response.code == 200 {
                                w.established = true;
                                w.heard = now;
                            } else {
                                let relist = response.code == 410;
                                let reason = format!("watch refused: {}", response.message());
                                self.restart(
                                    out,
                                    now,
                                    informer_id,
                                    reason,
                                    relist,
                                    &mut outputs.events,
                                );
                            }
                        }
                    }
                    return outputs;
                }
                let Some(inflight) = self.inflight.remove(&id) else {
                    return outputs; // a duplicate or a retried request's late answer
                };
                let retryable = matches!(response.code, 429 | 500 | 502 | 503 | 504);
                if inflight.request.is_read() && retryable {
                    let why = format!("{from}: {}", response.message());
                    self.read_failed(out, now, id, inflight, why, &mut outputs);
                } else {
                    self.conclude(out, now, inflight.owner, Ok(response), &mut outputs);
                }
            }
            ApiMessage::Event {
                watch_id,
                seq,
                event,
            } => self.on_event(out, now, from, (watch_id, seq, event), &mut outputs.events),
            _ => {}
        }
        outputs
    }

    /// Sends a request again, with the same id, to an endpoint other than the last one
    /// (when there is another): one more attempt.
    fn resend_elsewhere(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        id: u64,
        inflight: &mut Inflight,
    ) {
        inflight.attempts += 1;
        inflight.last_sent_at = now;
        self.stats.retries += 1;
        let mut to = self.next_endpoint();
        if to == inflight.to {
            to = self.next_endpoint();
        }
        inflight.to = to.clone();
        out.send(
            to,
            Message::Api(ApiMessage::Request {
                id,
                request: inflight.request.clone(),
            }),
        );
    }

    /// Times out requests, retries reads, and keeps informers going; call about every
    /// [`TICK_MS`].
    pub fn on_tick(&mut self, out: &mut dyn Outbox, now: Time) -> Outputs {
        let mut outputs = Outputs::default();
        self.now = self.now.max(now);
        self.cooling.retain(|_, until| now < *until);
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let retransmit = Duration::from_millis(self.config.read_retransmit_ms);
        let ids: Vec<u64> = self.inflight.keys().copied().collect();
        for id in ids {
            let Some(mut inflight) = self.inflight.remove(&id) else {
                continue;
            };
            if let Some(at) = inflight.retry_at {
                if now >= at {
                    inflight.retry_at = None;
                    inflight.sent_at = now;
                    self.resend_elsewhere(out, now, id, &mut inflight);
                }
                self.inflight.insert(id, inflight);
                continue;
            }
            if now.since(inflight.sent_at) < timeout {
                let resend = inflight.request.is_read()
                    && inflight.attempts < self.config.read_attempts_max
                    && now.since(inflight.last_sent_at) >= retransmit;
                if resend {
                    self.resend_elsewhere(out, now, id, &mut inflight);
                }
                self.inflight.insert(id, inflight);
                continue;
            }
            let silent = inflight.to.clone();
            self.cool(&silent, now);
            if inflight.request.is_read() {
                let why = format!("no answer within {} ms", self.config.request_timeout_ms);
                self.read_failed(out, now, id, inflight, why, &mut outputs);
            } else {
                self.stats.ambiguous += 1;
                let error = ApiClientError::Ambiguous(format!(
                    "no answer within {} ms; the {:?} may or may not have been applied",
                    self.config.request_timeout_ms, inflight.request.verb
                ));
                self.conclude(out, now, inflight.owner, Err(error), &mut outputs);
            }
        }
        let informers: Vec<u64> = self.informers.keys().copied().collect();
        for id in informers {
            self.tick_informer(out, now, id, &mut outputs.events);
        }
        outputs
    }

    /// When the client next needs [`ApiClient::on_tick`]: a request timing out, due for a
    /// resend or a retry; an informer due to list or watch again; a watch to give up on
    /// (unanswered, silent, or a gap open too long); acknowledgements not yet sent
    /// (flushed within [`TICK_MS`]).
    pub fn next_deadline(&self) -> Option<Time> {
        let ms = Duration::from_millis;
        let timeout = ms(self.config.request_timeout_ms);
        let retransmit = ms(self.config.read_retransmit_ms);
        let mut next = None;
        for inflight in self.inflight.values() {
            let at = match inflight.retry_at {
                Some(at) => at,
                None if inflight.request.is_read()
                    && inflight.attempts < self.config.read_attempts_max =>
                {
                    inflight
                        .last_sent_at
                        .plus(retransmit)
                        .min(inflight.sent_at.plus(timeout))
                }
                None => inflight.sent_at.plus(timeout),
            };
            next = earliest(next, Some(at));
        }
        for informer in self.informers.values() {
            let at = match &informer.phase {
                Phase::Waiting { at, .. } => Some(*at),
                Phase::Listing { .. } => None, // its request is in `inflight`
                Phase::Watching(w) => {
                    let mut at = w.heard.plus(ms(self.config.watch_silence_ms));
                    if !w.established {
                        at = at.min(w.sent_at.plus(timeout));
                    }
                    if w.stream.pending_ack() {
                        at = at.min(w.heard.plus(ms(TICK_MS)));
                    }
                    earliest(Some(at), w.stream.next_deadline())
                }
            };
            next = earliest(next, at);
        }
        next
    }

    fn tick_informer(
        &mut self,
        out: &mut dyn Outbox,
        now: Time,
        id: u64,
        events: &mut Vec<InformerEvent>,
    ) {
        if let Some(Informer {
            phase: Phase::Watching(w),
            ..
        }) = self.informers.get_mut(&id)
        {
            if let Some(seq) = w.stream.ack(true) {
                out.send(
                    w.ack_to.clone(),
                    Message::Api(ApiMessage::EventAck {
                        watch_id: w.watch_id,
                        seq,
                    }),
                );
            }
        }
        let silence = Duration::from_millis(self.config.watch_silence_ms);
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let Some(informer) = self.informers.get(&id) else {
            return;
        };
        match &informer.phase {
            Phase::Waiting { at, relist } if now >= *at => {
                if *relist || !informer.synced {
                    self.start_list(out, now, id, String::new());
                } else {
                    self.start_watch(out, now, id, events);
                }
            }
            Phase::Watching(w) => {
                let server = w.server.clone();
                let (why, cool) = if !w.established && now.since(w.sent_at) >= timeout {
                    (
                        Some(format!("{} did not answer the watch", w.server.node)),
                        true,
                    )
                } else if let Some(missing) = w.stream.lost(now) {
                    (
                        Some(format!("event {missing} never arrived: one was lost")),
                        false,
                    )
                } else if now.since(w.heard) >= silence {
                    (
                        Some(format!(
                            "the watch went silent for {} ms ({} may be gone)",
                            self.config.watch_silence_ms, w.server.node
                        )),
                        true,
                    )
                } else {
                    (None, false)
                };
                if cool {
                    self.cool(&server, now);
                }
                if let Some(reason) = why {
                    self.restart(out, now, id, reason, false, events);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn servers() -> Vec<Address> {
        (1..=2)
            .map(|i| Address::new(format!("a{i}"), "apiserver", 0))
            .collect()
    }

    fn client() -> ApiClient {
        ApiClient::new(servers(), ApiClientConfig::default(), 7).expect("valid")
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// The requests in `out`, with where they went.
    fn requests(out: &Out) -> Vec<(Address, u64, ApiRequest)> {
        out.iter()
            .filter_map(|(to, m)| match m {
                Message::Api(ApiMessage::Request { id, request }) => {
                    Some((to.clone(), *id, request.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn cm(name: &str, rv: i64) -> Value {
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": name, "namespace": "default", "resourceVersion": rv.to_string(),
                              "labels": { "app": name } } })
    }

    fn list_body(rv: i64, items: &[Value], continue_token: &str) -> Vec<u8> {
        let items: Vec<Value> = items
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.as_object_mut().map(|o| {
                    o.remove("kind");
                    o.remove("apiVersion")
                });
                i
            })
            .collect();
        serde_json::to_vec(&json!({ "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": { "resourceVersion": rv.to_string(), "continue": continue_token }, "items": items }))
        .expect("json")
    }

    fn respond(
        c: &mut ApiClient,
        from: &Address,
        id: u64,
        code: u16,
        body: Vec<u8>,
        now: Time,
    ) -> (Out, Outputs) {
        let mut out = Out::new();
        let outputs = c.on_message(
            &mut out,
            now,
            from.clone(),
            ApiMessage::Response {
                id,
                response: ApiResponse { code, body },
            },
        );
        (out, outputs)
    }

    fn event(
        c: &mut ApiClient,
        from: &Address,
        watch_id: u64,
        seq: u64,
        kind: EventType,
        object: &Value,
        now: Time,
    ) -> (Out, Outputs) {
        let mut out = Out::new();
        let resource_version = revision_of(object);
        let outputs = c.on_message(
            &mut out,
            now,
            from.clone(),
            ApiMessage::Event {
                watch_id,
                seq,
                event: WatchEvent {
                    kind,
                    object: serde_json::to_vec(object).expect("json"),
                    resource_version,
                },
            },
        );
        (out, outputs)
    }

    fn changes(outputs: &Outputs) -> Vec<String> {
        outputs
            .events
            .iter()
            .map(|e| match &e.change {
                Change::Added(o) => format!("added {} @{}", object_key(o), e.revision),
                Change::Updated { new, .. } => {
                    format!("updated {} @{}", object_key(new), e.revision)
                }
                Change::Deleted(o) => format!("deleted {} @{}", object_key(o), e.revision),
                Change::Synced { revision, objects } => format!("synced @{revision} ({objects})"),
                Change::WatchStarted { from } => format!("watch from {from}"),
                Change::WatchEnded { relist, .. } => format!("watch ended relist={relist}"),
            })
            .collect()
    }

    /// Starts an informer and answers its list with `items` at `rv`; returns the watch
    /// request (server, id) and the changes.
    fn synced_informer(
        c: &mut ApiClient,
        rv: i64,
        items: &[Value],
    ) -> (u64, Address, u64, Vec<String>) {
        let spec = InformerSpec::new(ResourceRef::new("v1", "configmaps"))
            .in_namespace("default")
            .index("app", IndexBy::Label("app".into()));
        let informer = c.inform(at(0), spec).expect("room");
        let mut out = Out::new();
        c.on_tick(&mut out, at(0));
        let list = requests(&out);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].2.verb, Verb::List);
        assert_eq!(list[0].2.options.limit, 500);
        let (out, outputs) = respond(
            c,
            &list[0].0,
            list[0].1,
            200,
            list_body(rv, items, ""),
            at(5),
        );
        let watch = requests(&out);
        assert_eq!(watch.len(), 1);
        assert_eq!(watch[0].2.verb, Verb::Watch);
        assert_eq!(watch[0].2.options.resource_version, rv.to_string());
        assert_eq!(
            watch[0].1, watch[0].2.options.watch_id,
            "a watch's request id is its watch id"
        );
        (informer, watch[0].0.clone(), watch[0].1, changes(&outputs))
    }

    #[test]
    fn informer_lists_then_watches_in_order_despite_reordering_and_duplicates() {
        let mut c = client();
        let (informer, server, watch, seen) =
            synced_informer(&mut c, 10, &[cm("a", 3), cm("b", 7)]);
        assert_eq!(
            seen,
            [
                "added default/a @3",
                "added default/b @7",
                "synced @10 (2)",
                "watch from 10"
            ]
        );
        let (_, outputs) = respond(&mut c, &server, watch, 200, Vec::new(), at(6));
        assert!(outputs.is_empty());
        // Event 2 arrives before event 1, and event 1 twice.
        let (out, outputs) = event(
            &mut c,
            &server,
            watch,
            2,
            EventType::Deleted,
            &cm("a", 12),
            at(7),
        );
        assert!(outputs.events.is_empty(), "held until event 1 arrives");
        assert!(out.is_empty(), "not acknowledged yet");
        let (out, outputs) = event(
            &mut c,
            &server,
            watch,
            1,
            EventType::Modified,
            &cm("b", 11),
            at(8),
        );
        assert_eq!(
            changes(&outputs),
            ["updated default/b @11", "deleted default/a @12"]
        );
        let acks = |out: &Out| -> Vec<u64> {
            out.iter()
                .filter_map(|(_, m)| match m {
                    Message::Api(ApiMessage::EventAck { seq, .. }) => Some(*seq),
                    _ => None,
                })
                .collect()
        };
        assert!(acks(&out).is_empty(), "acknowledged in batches");
        let mut ticked = Out::new();
        c.on_tick(&mut ticked, at(9));
        assert_eq!(acks(&ticked), [2], "the tick acknowledges what is left");
        let (_, outputs) = event(
            &mut c,
            &server,
            watch,
            1,
            EventType::Modified,
            &cm("b", 11),
            at(9),
        );
        assert!(outputs.is_empty(), "a duplicate is dropped");
        let inf = c.informer(informer).expect("exists");
        assert_eq!(inf.revision(), 12);
        assert_eq!(inf.len(), 1);
        assert!(inf.get(Some("default"), "a").is_none());
        assert_eq!(inf.by_index("app", "b").len(), 1);
        assert!(
            inf.by_index("app", "a").is_empty(),
            "deleted objects leave the index"
        );
        assert_eq!(inf.by_index("namespace", "default").len(), 1);
    }

    #[test]
    fn expired_watch_relists_and_reports_the_difference() {
        let mut c = client();
        let (informer, server, watch, _) =
            synced_informer(&mut c, 10, &[cm("a", 3), cm("b", 7), cm("c", 8)]);
        let status = json!({ "kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version" });
        let (out, outputs) = event(&mut c, &server, watch, 1, EventType::Error, &status, at(20));
        assert_eq!(changes(&outputs), ["watch ended relist=true"]);
        assert!(out
            .iter()
            .any(|(_, m)| matches!(m, Message::Api(ApiMessage::StopWatch { .. }))));
        // The re-list goes out on the next tick, to the other server.
        let mut out = Out::new();
        c.on_tick(&mut out, at(21));
        let list = requests(&out);
        assert_eq!(list[0].2.verb, Verb::List);
        assert_ne!(list[0].0, server);
        // a unchanged, b changed, c gone, d new.
        let (out, outputs) = respond(
            &mut c,
            &list[0].0,
            list[0].1,
            200,
            list_body(30, &[cm("a", 3), cm("b", 25), cm("d", 28)], ""),
            at(22),
        );
        assert_eq!(
            changes(&outputs),
            [
                "deleted default/c @30",
                "updated default/b @25",
                "added default/d @28",
                "synced @30 (3)",
                "watch from 30"
            ]
        );
        assert_eq!(requests(&out)[0].2.options.resource_version, "30");
        assert_eq!(c.informer(informer).expect("exists").revision(), 30);
    }

    #[test]
    fn silent_watch_resumes_elsewhere_from_the_last_version_seen() {
        let mut c = client();
        let (_, server, watch, _) = synced_informer(&mut c, 10, &[]);
        respond(&mut c, &server, watch, 200, Vec::new(), at(6));
        event(
            &mut c,
            &server,
            watch,
            1,
            EventType::Added,
            &cm("x", 14),
            at(100),
        );
        let mut out = Out::new();
        let outputs = c.on_tick(&mut out, at(100 + 12_000));
        assert_eq!(changes(&outputs), ["watch ended relist=false"]);
        let mut out = Out::new();
        let outputs = c.on_tick(&mut out, at(100 + 12_001));
        assert_eq!(changes(&outputs), ["watch from 14"]);
        let resumed = requests(&out);
        assert_eq!(resumed[0].2.verb, Verb::Watch);
        assert_eq!(resumed[0].2.options.resource_version, "14");
        assert_ne!(resumed[0].0, server, "resumed on the other server");
        // An event from the old watch is refused (and the old server told to stop).
        let (out, outputs) = event(
            &mut c,
            &server,
            watch,
            2,
            EventType::Added,
            &cm("y", 15),
            at(12_200),
        );
        assert!(outputs.is_empty());
        assert!(matches!(
            out[0].1,
            Message::Api(ApiMessage::StopWatch { .. })
        ));
    }

    #[test]
    fn lost_event_resumes_after_the_gap_timeout() {
        let mut c = client();
        let (_, server, watch, _) = synced_informer(&mut c, 10, &[]);
        event(
            &mut c,
            &server,
            watch,
            2,
            EventType::Added,
            &cm("y", 15),
            at(10),
        );
        let mut out = Out::new();
        assert!(c.on_tick(&mut out, at(1_000)).is_empty());
        let outputs = c.on_tick(&mut out, at(2_010));
        assert_eq!(changes(&outputs), ["watch ended relist=false"]);
    }

    #[test]
    fn paginated_list_is_one_snapshot() {
        let mut c = client();
        let spec = InformerSpec::new(ResourceRef::new("v1", "configmaps"));
        c.inform(at(0), spec).expect("room");
        let mut out = Out::new();
        c.on_tick(&mut out, at(0));
        let first = requests(&out);
        let (out, outputs) = respond(
            &mut c,
            &first[0].0,
            first[0].1,
            200,
            list_body(40, &[cm("a", 3)], "tok"),
            at(1),
        );
        assert!(
            outputs.events.is_empty(),
            "nothing until the list is complete"
        );
        let second = requests(&out);
        assert_eq!(second[0].2.options.continue_token, "tok");
        let (_, outputs) = respond(
            &mut c,
            &second[0].0,
            second[0].1,
            200,
            list_body(41, &[cm("b", 5)], ""),
            at(2),
        );
        assert_eq!(
            changes(&outputs),
            [
                "added default/a @3",
                "added default/b @5",
                "synced @40 (2)",
                "watch from 40"
            ],
            "the first page's version is the list's"
        );
    }

    #[test]
    fn reads_retry_on_another_server_and_writes_are_ambiguous() {
        let mut c = client();
        let pods = ResourceRef::new("v1", "pods");
        let mut out = Out::new();
        c.send(&mut out, at(0), pods.get(Some("default"), "p"), 1)
            .expect("room");
        c.send(
            &mut out,
            at(0),
            pods.create(
                Some("default"),
                &json!({"metadata": {"generateName": "p-"}}),
            ),
            2,
        )
        .expect("room");
        let sent = requests(&out);
        // The read meets a 503: retried after a backoff on the next server.
        let (out, outputs) = respond(&mut c, &sent[0].0, sent[0].1, 503, Vec::new(), at(10));
        assert!(outputs.is_empty() && out.is_empty());
        let mut out = Out::new();
        c.on_tick(&mut out, at(200));
        let retried = requests(&out);
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].1, sent[0].1);
        assert_ne!(retried[0].0, sent[0].0);
        // The write is never answered: ambiguous, not retried (only the read, still
        // unanswered, is resent).
        let mut out = Out::new();
        let outputs = c.on_tick(&mut out, at(5_000));
        assert!(requests(&out).iter().all(|(_, id, _)| *id == sent[0].1));
        assert_eq!(outputs.completions.len(), 1);
        assert_eq!(outputs.completions[0].tag, 2);
        assert!(matches!(
            outputs.completions[0].result,
            Err(ApiClientError::Ambiguous(_))
        ));
        // The read's answer arrives: a definite answer.
        let (_, outputs) = respond(
            &mut c,
            &retried[0].0,
            retried[0].1,
            404,
            b"{}".to_vec(),
            at(5_001),
        );
        assert_eq!(outputs.completions[0].tag, 1);
        assert_eq!(
            outputs.completions[0].result.as_ref().map(|r| r.code),
            Ok(404)
        );
    }

    /// A read whose request or answer was lost is resent to the other server after
    /// `read_retransmit_ms` with the same id, and the first answer completes it; a
    /// write left unanswered is never resent.
    #[test]
    fn lost_reads_are_resent_early_and_writes_never() {
        let mut c = client();
        let pods = ResourceRef::new("v1", "pods");
        let mut out = Out::new();
        c.send(&mut out, at(0), pods.get(Some("default"), "p"), 1)
            .expect("room");
        c.send(&mut out, at(0), pods.delete(Some("default"), "q"), 2)
            .expect("room");
        let sent = requests(&out);
        let mut out = Out::new();
        c.on_tick(&mut out, at(900));
        assert!(
            requests(&out).is_empty(),
            "nothing before read_retransmit_ms"
        );
        let mut out = Out::new();
        c.on_tick(&mut out, at(1_000));
        let resent = requests(&out);
        assert_eq!(resent.len(), 1, "only the read is resent: {resent:?}");
        assert_eq!(resent[0].1, sent[0].1);
        assert_ne!(resent[0].0, sent[0].0, "to the other server");
        // The first send answers after all: that completes the read.
        let (_, outputs) = respond(
            &mut c,
            &sent[0].0,
            sent[0].1,
            200,
            b"{}".to_vec(),
            at(1_050),
        );
        assert_eq!(outputs.completions.len(), 1);
        assert_eq!(outputs.completions[0].tag, 1);
        // The resent copy's answer is a duplicate and ignored.
        let (_, outputs) = respond(
            &mut c,
            &resent[0].0,
            resent[0].1,
            200,
            b"{}".to_vec(),
            at(1_060),
        );
        assert!(outputs.completions.is_empty());
        assert_eq!(c.inflight(), 1, "the write still waits");
    }

    #[test]
    fn limits_and_typed_requests() {
        let config = ApiClientConfig {
            inflight_max: 1,
            ..ApiClientConfig::default()
        };
        let mut c = ApiClient::new(servers(), config, 1).expect("valid");
        let mut out = Out::new();
        let pods = ResourceRef::of::<k8s_openapi::api::core::v1::Pod>();
        assert_eq!(pods, ResourceRef::new("v1", "pods"));
        assert_eq!(
            ResourceRef::of::<k8s_openapi::api::apps::v1::Deployment>(),
            ResourceRef::new("apps/v1", "deployments")
        );
        c.send(&mut out, at(0), pods.get(None, "x"), 1)
            .expect("room");
        assert_eq!(
            c.send(&mut out, at(0), pods.get(None, "y"), 2),
            Err(ApiClientError::TooManyRequests { limit: 1 })
        );
        assert!(ApiClient::new(Vec::new(), ApiClientConfig::default(), 0).is_err());
        let bad = ApiClientConfig {
            list_page_size: 0,
            ..ApiClientConfig::default()
        };
        assert!(ApiClient::new(servers(), bad, 0).is_err());
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("prod".into());
        let request = ApiRequest::create_typed(&pod).expect("serializes");
        assert_eq!(request.namespace.as_deref(), Some("prod"));
        assert_eq!(request.resource, "pods");
        let response = ApiResponse {
            code: 201,
            body: serde_json::to_vec(&pod).expect("json"),
        };
        let back: k8s_openapi::api::core::v1::Pod = response.typed().expect("decodes");
        assert_eq!(back.metadata.name.as_deref(), Some("web"));
    }
}
