//! The resources the API server serves: group, version, plural, kind, scope and
//! subresources — what discovery lists and what request routing checks.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// "" is the core (legacy) group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub status: bool,
    pub scale: bool,
    pub short_names: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally
const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    scale: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        status,
        scale,
        short_names,
    }
}

pub const RESOURCES: &[Resource] = &[
    r(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        false,
        &["ns"],
    ),
    r("", "v1", "pods", "pod", "Pod", true, true, false, &["po"]),
    r(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        true,
        false,
        &["svc"],
    ),
    r(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        false,
        false,
        &["ep"],
    ),
    r(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        false,
        &["cm"],
    ),
    r(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        false,
        false,
        &[],
    ),
    r(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        false,
        false,
        &["sa"],
    ),
    r(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        true,
        false,
        &["no"],
    ),
    r(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        false,
        &["ev"],
    ),
    r(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        true,
        true,
        &["deploy"],
    ),
    r(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        true,
        true,
        &["rs"],
    ),
    r(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        true,
        false,
        &["ds"],
    ),
    r(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        true,
        true,
        &["sts"],
    ),
    r("batch", "v1", "jobs", "job", "Job", true, true, false, &[]),
    r(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        true,
        false,
        &["cj"],
    ),
    r(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        false,
        false,
        &[],
    ),
    r(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        false,
        false,
        &[],
    ),
    r(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        true,
        false,
        &["quota"],
    ),
    r(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        false,
        false,
        &["limits"],
    ),
    r(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        false,
        false,
        &["pc"],
    ),
];

impl Resource {
    pub fn find(group: &str, plural: &str) -> Option<&'static Resource> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of every object of this resource (in `namespace`, if any).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    /// `/registry/<group>/<resource>/<namespace>/<name>` (no namespace part when
    /// cluster-scoped; the core group is spelled "core").
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!(
            "{}{name}",
            self.prefix(if self.namespaced { namespace } else { None })
        )
    }
}
