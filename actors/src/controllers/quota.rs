//! The ResourceQuota controller: recounts what each quota uses from the objects that
//! exist, as kube-controller-manager's `resourcequota` controller does.
//!
//! keel's API server charges and credits a quota in the same transaction as the object
//! (docs/architecture.md), so `status.used` stays exact for what it already counts; the
//! recount covers what those transactions cannot: a resource newly added to
//! `spec.hard` (it starts at 0), and pods that finished (they stop counting, as in
//! Kubernetes). It is the first user of the controller runtime
//! ([`crate::client::controller`]) and the worked example in docs/architecture.md.
//!
//! Exactness: a recount is written only when every informer it counts from has seen
//! the store at least up to the quota's own `resourceVersion` (events or bookmarks),
//! and the write is a compare-and-swap on that version. Every object create or delete
//! that the quota counts changes the quota in the same transaction; so if the write
//! succeeds, no such change happened after the caches' view, and the count is the
//! count at that version. A cache that lags waits (`requeue_after`); a lost race is a
//! 409 and a rate-limited retry.

use crate::apiserver::admission::{count_existing, quota_resources};
use crate::apiserver::resources::RESOURCES;
use crate::client::api::{Change, InformerSpec, ResourceRef};
use crate::client::controller::{Caches, Reconcile, Reconciler};
use serde_json::Value;
use std::time::Duration;

/// How long a recount waits for lagging caches before looking again (API servers send
/// bookmarks every 5 s, which move an idle informer's version on).
pub const CACHE_WAIT: Duration = Duration::from_millis(1_000);

/// A quota: namespace and name.
pub type QuotaKey = (String, String);

pub struct QuotaController {
    /// Source 0 is ResourceQuotas; sources 1.. the resources a quota may count.
    counted: Vec<(&'static str, &'static str, &'static str)>,
}

impl Default for QuotaController {
    fn default() -> Self {
        Self::new()
    }
}

impl QuotaController {
    pub fn new() -> Self {
        let counted = RESOURCES
            .iter()
            .filter(|r| r.namespaced && r.plural != "resourcequotas" && r.plural != "events")
            .map(|r| (r.group, r.plural, r.kind))
            .collect();
        QuotaController { counted }
    }

    fn source_of(&self, plural: &str, group: &str) -> Option<usize> {
        self.counted
            .iter()
            .position(|(g, p, _)| *p == plural && *g == group)
            .map(|i| i + 1)
    }

    fn quotas_in(caches: &Caches<'_>, namespace: &str) -> Vec<QuotaKey> {
        caches
            .get(0)
            .by_index("namespace", namespace)
            .into_iter()
            .map(key_of)
            .collect()
    }
}

fn key_of(object: &Value) -> QuotaKey {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

fn revision(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Reconciler for QuotaController {
    type Key = QuotaKey;

    fn informers(&self) -> Vec<InformerSpec> {
        let mut specs = vec![InformerSpec::new(ResourceRef::new("v1", "resourcequotas"))];
        for (group, plural, _) in &self.counted {
            let resource = RESOURCES
                .iter()
                .find(|r| r.group == *group && r.plural == *plural)
                .expect("listed from RESOURCES");
            specs.push(InformerSpec::new(ResourceRef::new(
                &resource.api_version(),
                plural,
            )));
        }
        specs
    }

    fn keys_for(&self, source: usize, change: &Change, caches: &Caches<'_>) -> Vec<QuotaKey> {
        let object = match change {
            Change::Added(o) | Change::Updated { new: o, .. } => o,
            Change::Deleted(o) if source != 0 => o,
            _ => return Vec::new(),
        };
        if source == 0 {
            return vec![key_of(object)];
        }
        // An object changed: the quotas of its namespace may count it.
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
        Self::quotas_in(caches, namespace)
    }

    fn all_keys(&self, caches: &Caches<'_>) -> Vec<QuotaKey> {
        caches.get(0).list().map(key_of).collect()
    }

    fn reconcile(&self, (namespace, name): &QuotaKey, caches: &Caches<'_>) -> Reconcile {
        let Some(quota) = caches.get(0).get(Some(namespace), name) else {
            return Reconcile::done(); // deleted
        };
        if quota["metadata"]["deletionTimestamp"].is_string() {
            return Reconcile::done();
        }
        let at = revision(quota);
        let mut existing = Vec::new();
        for (plural, group) in quota_resources(quota) {
            let Some(source) = self.source_of(&plural, &group) else {
                continue; // not a resource keel serves: nothing exists to count
            };
            let informer = caches.get(source);
            if informer.revision() < at {
                return Reconcile::after(CACHE_WAIT);
            }
            let kind = self.counted[source - 1].2;
            for object in informer.by_index("namespace", namespace) {
                existing.push((
                    plural.clone(),
                    group.clone(),
                    kind.to_string(),
                    object.clone(),
                ));
            }
        }
        let mut counted = quota.clone();
        count_existing(&mut counted, &existing);
        if counted["status"] == quota["status"] {
            return Reconcile::done();
        }
        let update = ResourceRef::new("v1", "resourcequotas")
            .update(&counted)
            .on_subresource("status");
        Reconcile::act(vec![update])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::Verb;
    use crate::client::api::Informer;
    use keel_engine::Time;
    use serde_json::json;

    fn quota(hard: Value, used: Value, rv: i64) -> Value {
        json!({ "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": { "name": "q", "namespace": "ns", "resourceVersion": rv.to_string() },
            "spec": { "hard": hard.clone() }, "status": { "hard": hard, "used": used } })
    }

    fn object(kind: &str, name: &str, ns: &str) -> Value {
        json!({ "apiVersion": "v1", "kind": kind,
            "metadata": { "name": name, "namespace": ns, "resourceVersion": "5" } })
    }

    /// Fills every informer of the controller: quotas, and configmaps at `cm_revision`
    /// (the rest empty at the same revision).
    fn caches_with(
        controller: &QuotaController,
        quotas: Vec<Value>,
        configmaps: Vec<Value>,
        cm_revision: i64,
    ) -> Vec<Informer> {
        let specs = controller.informers();
        let cm = controller.source_of("configmaps", "").expect("served");
        specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| match i {
                0 => Informer::filled(spec, quotas.clone(), 100),
                i if i == cm => Informer::filled(spec, configmaps.clone(), cm_revision),
                _ => Informer::filled(spec, Vec::new(), cm_revision),
            })
            .collect()
    }

    fn run(controller: &QuotaController, informers: &[Informer]) -> Reconcile {
        let caches = Caches::new(informers.iter().collect(), Time(0));
        controller.reconcile(&("ns".into(), "q".into()), &caches)
    }

    /// A table of quota states and what the recount does about each.
    #[test]
    fn recounts_what_the_quota_does_not_yet_count() {
        let c = QuotaController::new();
        let hard = json!({ "configmaps": "10", "count/configmaps": "10" });
        let cms = vec![
            object("ConfigMap", "a", "ns"),
            object("ConfigMap", "b", "ns"),
            object("ConfigMap", "x", "other"),
        ];
        // configmaps newly limited: used says 0, two exist in the namespace → update.
        let stale = quota(
            hard.clone(),
            json!({ "configmaps": "0", "count/configmaps": "0" }),
            50,
        );
        let outcome = run(&c, &caches_with(&c, vec![stale.clone()], cms.clone(), 60));
        assert_eq!(outcome.actions.len(), 1, "{outcome:?}");
        let action = &outcome.actions[0];
        assert_eq!(action.verb, Verb::Update);
        assert_eq!(action.subresource.as_deref(), Some("status"));
        let body: Value = serde_json::from_slice(&action.body).unwrap();
        assert_eq!(body["status"]["used"]["configmaps"], "2");
        assert_eq!(body["status"]["used"]["count/configmaps"], "2");
        // Compare-and-swap on the version the count is exact at.
        assert_eq!(body["metadata"]["resourceVersion"], "50");

        // Already exact: nothing to do.
        let exact = quota(
            hard.clone(),
            json!({ "configmaps": "2", "count/configmaps": "2" }),
            50,
        );
        assert_eq!(
            run(&c, &caches_with(&c, vec![exact], cms.clone(), 60)),
            Reconcile::done()
        );

        // The configmap cache has not seen the quota's version yet: wait, write nothing.
        let outcome = run(&c, &caches_with(&c, vec![stale], cms.clone(), 49));
        assert_eq!(outcome, Reconcile::after(CACHE_WAIT));

        // A quota that is gone needs nothing.
        assert_eq!(
            run(&c, &caches_with(&c, Vec::new(), cms, 60)),
            Reconcile::done()
        );
    }

    /// Any change in a namespace enqueues that namespace's quotas; a quota's own change
    /// enqueues it; a resync takes every quota.
    #[test]
    fn changes_enqueue_the_quotas_they_may_touch() {
        let c = QuotaController::new();
        let q = quota(json!({ "pods": "1" }), json!({ "pods": "0" }), 9);
        let informers = caches_with(&c, vec![q.clone()], Vec::new(), 10);
        let caches = Caches::new(informers.iter().collect(), Time(0));
        let cm = c.source_of("configmaps", "").unwrap();
        let key = ("ns".to_string(), "q".to_string());
        assert_eq!(
            c.keys_for(cm, &Change::Added(object("ConfigMap", "a", "ns")), &caches),
            vec![key.clone()]
        );
        assert!(c
            .keys_for(
                cm,
                &Change::Added(object("ConfigMap", "a", "elsewhere")),
                &caches
            )
            .is_empty());
        assert_eq!(c.keys_for(0, &Change::Added(q), &caches), vec![key.clone()]);
        assert_eq!(c.all_keys(&caches), vec![key]);
    }
}
