//! The registry of every component kind: builds actors from [`ActorSpec`]s, for hosts
//! and for the replayer.
//!
//! One table, [`KINDS`]: each entry names a kind, says in a line what it is, and builds
//! it through the one generic builder [`build`] (parse the JSON configuration, then the
//! actor's own `new`, which validates it). Adding a component is adding a row.

use crate::message::Message;
use keel_engine::{Actor, ActorFactory, ActorSpec, Address, DynActor};
use serde::de::DeserializeOwned;

/// Builds any keel actor by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Registry;

/// A built actor, ready for a node runtime.
pub type Built = Result<Box<dyn DynActor<Message>>, String>;

/// One component kind the registry can build.
pub struct Kind {
    /// The kind's name in [`ActorSpec::kind`].
    pub kind: &'static str,
    /// What it is, in one line (`keel kinds` prints it).
    pub about: &'static str,
    /// Builds it from its JSON configuration.
    pub build: fn(&ActorSpec) -> Built,
}

/// The one builder: parses `spec`'s configuration as `C` and hands it to `new`; a bad
/// configuration names the kind (`what`) and serde's reason.
pub fn build<C, A>(spec: &ActorSpec, what: &str, new: fn(C) -> Result<A, String>) -> Built
where
    C: DeserializeOwned,
    A: Actor<Message = Message> + 'static,
{
    let config: C = serde_json::from_str(&spec.config_json)
        .map_err(|e| format!("bad {what} configuration: {e}"))?;
    Ok(Box::new(new(config)?))
}

/// Every kind, with what it is and how it is built.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: crate::selftest::KIND,
        about: "ping/pong protocol with durable sequence numbers: proves one actor runs in both hosts",
        build: |spec| build(spec, "selftest", crate::selftest::SelfTest::new),
    },
    Kind {
        kind: crate::store::KIND,
        about: "a member of the store (keel's etcd): raft + MVCC + watch + leases",
        build: |spec| build(spec, "store", crate::store::Store::new),
    },
    Kind {
        kind: crate::apiserver::KIND,
        about: "an API server: Kubernetes object semantics on the store, list/watch with a watch cache",
        build: |spec| build(spec, "API server", crate::apiserver::ApiServer::new),
    },
    Kind {
        kind: crate::apiserver::balancer::KIND,
        about: "one address in front of many API servers: least-loaded routing, health probes, fast failover",
        build: |spec| build(spec, "balancer", crate::apiserver::balancer::Balancer::new),
    },
    Kind {
        kind: crate::controllers::KIND,
        about: "the controller manager: controllers on informers and work queues (quota recount)",
        build: |spec| {
            build(
                spec,
                "controller manager",
                crate::controllers::ControllerManager::new,
            )
        },
    },
    Kind {
        kind: crate::drivers::store_workload::KIND,
        about: "a store client running a random workload and reporting its history",
        build: |spec| {
            build(
                spec,
                "store workload",
                crate::drivers::store_workload::Workload::new,
            )
        },
    },
    Kind {
        kind: crate::drivers::lease_workload::KIND,
        about: "a store client holding a key on a lease: keeps it alive, then lets it expire",
        build: |spec| {
            build(
                spec,
                "store lease client",
                crate::drivers::lease_workload::LeaseWorkload::new,
            )
        },
    },
    Kind {
        kind: crate::drivers::store_cli::KIND,
        about: "one `keel store` command (put, get, watch, member …) through the client library",
        build: |spec| build(spec, "store command", crate::drivers::store_cli::StoreCli::new),
    },
    Kind {
        kind: crate::drivers::store_bench::KIND,
        about: "a store benchmark client keeping N requests in flight",
        build: |spec| build(spec, "store bench", crate::drivers::store_bench::Bench::new),
    },
    Kind {
        kind: crate::drivers::api_workload::KIND,
        about: "an API client (writer, informer watcher or service creator) reporting what it saw",
        build: |spec| {
            build(
                spec,
                "API workload",
                crate::drivers::api_workload::ApiWorkload::new,
            )
        },
    },
    Kind {
        kind: crate::drivers::api_script::KIND,
        about: "a scripted API client checking answers against Kubernetes' (api-semantics)",
        build: |spec| build(spec, "API script", crate::drivers::api_script::ApiScript::new),
    },
    Kind {
        kind: crate::drivers::api_bench::KIND,
        about: "an API benchmark client keeping N requests in flight",
        build: |spec| build(spec, "API bench", crate::drivers::api_bench::ApiBench::new),
    },
    Kind {
        kind: crate::drivers::fanout::KIND,
        about: "a watch fan-out benchmark: watchers vs delivery latency at a fixed event rate",
        build: |spec| {
            build(
                spec,
                "fan-out bench",
                crate::drivers::fanout::FanoutBench::new,
            )
        },
    },
];

impl ActorFactory<Message> for Registry {
    fn build(
        &self,
        _address: &Address,
        spec: &ActorSpec,
    ) -> Result<Box<dyn DynActor<Message>>, String> {
        match KINDS.iter().find(|k| k.kind == spec.kind) {
            Some(kind) => (kind.build)(spec),
            None => Err(format!("unknown component kind {:?}", spec.kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds are unique, and each row builds its own kind: a bad configuration is
    /// refused with that row's name, never another's actor.
    #[test]
    fn every_kind_is_listed_once_and_refuses_a_bad_configuration() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in KINDS {
            assert!(seen.insert(kind.kind), "{} is listed twice", kind.kind);
            let spec = ActorSpec {
                kind: kind.kind.into(),
                config_json: "[]".into(),
            };
            let address = Address::new("n", kind.kind, 0);
            let error = Registry.build(&address, &spec).err().expect("refused");
            assert!(error.starts_with("bad "), "{}: {error}", kind.kind);
        }
        let unknown = ActorSpec {
            kind: "no-such-kind".into(),
            config_json: "{}".into(),
        };
        let error = Registry
            .build(&Address::new("n", "x", 0), &unknown)
            .err()
            .expect("refused");
        assert!(error.contains("unknown component kind"), "{error}");
    }
}
