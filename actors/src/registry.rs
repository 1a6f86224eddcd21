//! The registry of every component kind: builds actors from [`ActorSpec`]s, for hosts
//! and for the replayer.

use crate::message::Message;
use crate::selftest::{self, SelfTest, SelfTestConfig};
use keel_engine::{ActorFactory, ActorSpec, Address, DynActor};

/// Builds any keel actor by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Registry;

impl ActorFactory<Message> for Registry {
    fn build(
        &self,
        _address: &Address,
        spec: &ActorSpec,
    ) -> Result<Box<dyn DynActor<Message>>, String> {
        match spec.kind.as_str() {
            selftest::KIND => {
                let config: SelfTestConfig = serde_json::from_str(&spec.config_json)
                    .map_err(|e| format!("bad selftest configuration: {e}"))?;
                Ok(Box::new(SelfTest::new(config)?))
            }
            crate::store::KIND => {
                let config: crate::store::StoreConfig = serde_json::from_str(&spec.config_json)
                    .map_err(|e| format!("bad store configuration: {e}"))?;
                Ok(Box::new(crate::store::Store::new(config)?))
            }
            crate::store::workload::KIND => {
                let config: crate::store::workload::WorkloadConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad store workload configuration: {e}"))?;
                Ok(Box::new(crate::store::workload::Workload::new(config)?))
            }
            crate::store::cli::KIND => {
                let config: crate::store::cli::CliConfig = serde_json::from_str(&spec.config_json)
                    .map_err(|e| format!("bad store command configuration: {e}"))?;
                Ok(Box::new(crate::store::cli::StoreCli::new(config)?))
            }
            crate::store::lease_workload::KIND => {
                let config: crate::store::lease_workload::LeaseWorkloadConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad store lease client configuration: {e}"))?;
                Ok(Box::new(crate::store::lease_workload::LeaseWorkload::new(
                    config,
                )?))
            }
            crate::store::bench::KIND => {
                let config: crate::store::bench::BenchConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad store bench configuration: {e}"))?;
                Ok(Box::new(crate::store::bench::Bench::new(config)?))
            }
            crate::apiserver::KIND => {
                let config: crate::apiserver::ApiServerConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad API server configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::ApiServer::new(config)?))
            }
            crate::controllers::KIND => {
                let config: crate::controllers::ControllerManagerConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad controller manager configuration: {e}"))?;
                Ok(Box::new(crate::controllers::ControllerManager::new(
                    config,
                )?))
            }
            crate::apiserver::fanout::KIND => {
                let config: crate::apiserver::fanout::FanoutConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad fan-out bench configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::fanout::FanoutBench::new(
                    config,
                )?))
            }
            crate::apiserver::balancer::KIND => {
                let config: crate::apiserver::balancer::BalancerConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad balancer configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::balancer::Balancer::new(config)?))
            }
            crate::apiserver::workload::KIND => {
                let config: crate::apiserver::workload::ApiWorkloadConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad API workload configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::workload::ApiWorkload::new(
                    config,
                )?))
            }
            crate::apiserver::script::KIND => {
                let config: crate::apiserver::script::ScriptConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad API script configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::script::ApiScript::new(config)?))
            }
            crate::apiserver::bench::KIND => {
                let config: crate::apiserver::bench::ApiBenchConfig =
                    serde_json::from_str(&spec.config_json)
                        .map_err(|e| format!("bad API bench configuration: {e}"))?;
                Ok(Box::new(crate::apiserver::bench::ApiBench::new(config)?))
            }
            other => Err(format!("unknown component kind {other:?}")),
        }
    }
}

/// Every kind the registry knows, with a one-line description.
pub const KINDS: &[(&str, &str)] = &[
    (
        selftest::KIND,
        "ping/pong protocol with durable sequence numbers: proves one actor runs in both hosts",
    ),
    (
        crate::store::KIND,
        "a member of the store (keel's etcd): raft + MVCC + watch + leases",
    ),
    (
        crate::store::workload::KIND,
        "a store client running a random workload and reporting its history",
    ),
    (
        crate::store::lease_workload::KIND,
        "a store client holding a key on a lease: keeps it alive, then lets it expire",
    ),
    (
        crate::apiserver::KIND,
        "an API server: Kubernetes object semantics on the store, list/watch with a watch cache",
    ),
    (
        crate::apiserver::balancer::KIND,
        "one address in front of many API servers: least-loaded routing, health probes, fast failover",
    ),
    (
        crate::apiserver::workload::KIND,
        "an API client (writer, informer watcher or service creator) reporting what it saw",
    ),
    (
        crate::apiserver::script::KIND,
        "a scripted API client checking answers against Kubernetes' (api-semantics)",
    ),
    (
        crate::apiserver::bench::KIND,
        "an API benchmark client keeping N requests in flight",
    ),
    (
        crate::apiserver::fanout::KIND,
        "a watch fan-out benchmark: watchers vs delivery latency at a fixed event rate",
    ),
];
