//! The API server: Kubernetes object semantics on the store.
//!
//! Submodules:
//! 1. [`resources`] — what is served (group, version, plural, kind, scope, subresources);
//! 2. [`messages`] — requests, responses and watch events on the bus (objects as JSON);
//! 3. [`object`] — JSON object helpers, `Status` bodies, timestamps;
//! 4. [`selectors`] — label and field selectors (parse and match);
//! 5. [`validation`] — Kubernetes validation rules and messages;
//! 6. [`defaults`] — the defaulting the real API server applies;
//! 7. [`actor`] — the API server itself: CRUD with optimistic concurrency, lists with
//!    selectors and pagination, watches from a per-resource watch cache;
//! 8. [`client`] — the client library every component embeds: typed requests,
//!    balancing and retries, informers;
//! 9. [`balancer`] — one address in front of many API servers, with health probes.

pub mod actor;
pub mod admission;
pub mod balancer;
pub use crate::client::api as client;
pub mod defaults;
pub mod messages;
pub mod object;
pub mod resources;
pub mod selectors;
pub mod validation;

pub use actor::{ApiServer, ApiServerConfig, KIND};
pub use messages::{ApiMessage, ApiRequest, ApiResponse, EventType, ListOptions, Verb, WatchEvent};
