//! The API server's configuration and its limits.

#[allow(unused_imports)]
use super::*;

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

pub(super) fn default_compaction_interval_ms() -> u64 {
    300_000
}

pub(super) fn default_service_ip_base() -> [u8; 2] {
    [10, 96]
}

pub(super) fn default_node_port_range() -> (u16, u16) {
    (30000, 32767)
}

pub(super) fn default_allocation_attempts_max() -> u32 {
    32
}

pub(super) fn default_watch_cache_events() -> usize {
    1000
}

pub(super) fn default_watchers_max() -> usize {
    10_000
}

pub(super) fn default_watcher_unacked_max() -> usize {
    1000
}

pub(super) fn default_requests_max() -> usize {
    4096
}

pub(super) fn default_update_attempts_max() -> u32 {
    8
}

pub(super) fn default_bookmark_ms() -> u64 {
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
