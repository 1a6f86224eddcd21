//! The API server's bus vocabulary. Objects travel as JSON bytes: the Kubernetes
//! schemas (k8s-openapi) use serde shapes bincode cannot carry — untagged enums such
//! as IntOrString, flattened and skipped fields, `Quantity` strings — and JSON is also
//! exactly what kubectl sends and expects, so the HTTPS edge passes bytes through.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // requests dominate the traffic; boxing them buys nothing
pub enum ApiMessage {
    Request {
        id: u64,
        request: ApiRequest,
    },
    Response {
        id: u64,
        response: ApiResponse,
    },
    /// One watch event; `seq` increases by one per event of a watch so the client can
    /// tell a lost message (and re-list or resume from its last resourceVersion).
    Event {
        watch_id: u64,
        seq: u64,
        event: WatchEvent,
    },
    /// The client acknowledges events up to `seq` (flow control for slow watchers).
    EventAck {
        watch_id: u64,
        seq: u64,
    },
    /// The client stops a watch.
    StopWatch {
        watch_id: u64,
    },
    /// A readiness probe (the bus form of `/readyz`), answered by a `Response` with
    /// the same id: 200 when the server serves requests, 503 while it cannot.
    Probe {
        id: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verb {
    Get,
    List,
    Create,
    Update,
    Delete,
    Watch,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    /// 0: no limit.
    pub limit: i64,
    pub continue_token: String,
    /// For lists: read at this version ("" = latest). For watches: start after it
    /// ("" or "0" = current state as ADDED events, then changes).
    pub resource_version: String,
    pub allow_watch_bookmarks: bool,
    /// The client's id for a watch (echoed in events).
    pub watch_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub verb: Verb,
    /// "" for the core group.
    pub group: String,
    pub version: String,
    /// Plural, lowercase: "pods", "deployments".
    pub resource: String,
    /// "status", "scale", "binding".
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// JSON body (create/update), empty otherwise.
    pub body: Vec<u8>,
    pub options: ListOptions,
}

/// An HTTP-like answer: the status code and a JSON body (the object, a list, or a
/// `Status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    pub code: u16,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    /// The watch ended; the object is a `Status` (410 Expired: re-list).
    Error,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventType,
    /// The object's JSON with `kind`, `apiVersion` and `metadata.resourceVersion` set.
    pub object: Vec<u8>,
    pub resource_version: i64,
}
