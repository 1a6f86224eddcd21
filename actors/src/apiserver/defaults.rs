//! Defaulting: the fields the real kube-apiserver (Kubernetes v1.33, default feature
//! gates, a single-stack IPv4 cluster) fills in on objects it is sent, applied here to
//! objects held as `serde_json::Value`.
//!
//! Owns the defaulting rules of the built-in kinds. Touches nothing but the object it is
//! handed: no store, no clock, no allocation of cluster IPs or node ports.
//!
//! Three entry points:
//! 1. [`apply_defaults`] — the per-kind defaulting functions of `pkg/apis/*/v1` and the
//!    generated `zz_generated.defaults.go` files that call them on every nested type.
//!    Kubernetes runs these on every decode (create, update and every read from etcd),
//!    so they are idempotent and safe to run on updates.
//! 2. [`default_job_selector`] — the Job selector and pod-template labels that need the
//!    Job's uid; the API server calls it on create, after assigning the uid.
//! 3. [`default_namespace_finalizers`] — the `kubernetes` finalizer a new Namespace
//!    gets; create only, because the namespace controller removes it during deletion and
//!    re-adding it on an update would make deletion hang forever.
//!
//! Rules that hold throughout:
//! * "Unset" follows Go: a pointer field is unset when absent or null; a plain string or
//!   integer field is also unset when it is `""` or `0`.
//! * A field the client set is never overwritten. Kubernetes itself makes two
//!   exceptions, kept here: `sessionAffinityConfig` is dropped when `sessionAffinity`
//!   is `None`, and the `kubernetes.io/metadata.name` label always equals the
//!   Namespace's name.
//! * A field of the wrong JSON type is left alone for validation to report, and so is
//!   whatever hangs below it. Nothing here panics.

use serde_json::{json, Map, Value};

type Object = Map<String, Value>;

/// Applies the defaulting Kubernetes applies to an object of `kind` (the value of its
/// `kind` field). Kinds without defaulting, and unknown kinds, are left as they are.
pub fn apply_defaults(kind: &str, object: &mut Value) {
    let Some(object) = object.as_object_mut() else {
        return;
    };
    match kind {
        "Pod" => default_pod(object),
        "PodTemplate" => default_pod_template_at(object, "template"),
        "ReplicationController" => default_replication_controller(object),
        "Deployment" => default_deployment(object),
        "ReplicaSet" => default_replica_set(object),
        "DaemonSet" => default_daemon_set(object),
        "StatefulSet" => default_stateful_set(object),
        "Job" => default_job(object),
        "CronJob" => default_cron_job(object),
        "Service" => default_service(object),
        "Namespace" => default_namespace(object),
        "Secret" => default_secret(object),
        "Node" => default_node(object),
        "Endpoints" => default_endpoints(object),
        "EndpointSlice" => default_endpoint_slice(object),
        "PriorityClass" => default_priority_class(object),
        "PersistentVolumeClaim" => default_persistent_volume_claim(object),
        "PersistentVolume" => default_persistent_volume(object),
        "LimitRange" => default_limit_range(object),
        // ConfigMap's defaulting turns a nil `data` into an empty map, which the
        // serializer then omits: nothing visible. ServiceAccount, Event and Lease have
        // no defaulting at all.
        _ => {}
    }
}

/// Generates a Job's selector and pod-template labels from its uid, as the Job
/// registry does on create unless `spec.manualSelector` is true: the template gets
/// `batch.kubernetes.io/controller-uid`, `controller-uid` (the uid),
/// `batch.kubernetes.io/job-name` and `job-name` (the Job's name) where those keys are
/// absent, and `spec.selector.matchLabels` gets `batch.kubernetes.io/controller-uid`.
///
/// It then re-applies the one Job default that depends on those labels: a Job without
/// labels of its own takes its template's labels. Kubernetes shows the same result on
/// every read, because it defaults again when it decodes the stored object.
pub fn default_job_selector(job: &mut Value, uid: &str) {
    let Some(job) = job.as_object_mut() else {
        return;
    };
    let name = job
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(spec) = child_or_insert(job, "spec") else {
        return;
    };
    match spec.get("manualSelector") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        // true: the client owns the selector; anything else is for validation.
        Some(_) => return,
    }
    if let Some(labels) = child_or_insert(spec, "template")
        .and_then(|template| child_or_insert(template, "metadata"))
        .and_then(|metadata| child_or_insert(metadata, "labels"))
    {
        // A label the client already set is kept; validation rejects a wrong one.
        for (key, value) in [
            ("job-name", name.as_str()),
            ("batch.kubernetes.io/job-name", name.as_str()),
            ("controller-uid", uid),
            ("batch.kubernetes.io/controller-uid", uid),
        ] {
            labels
                .entry(key)
                .or_insert_with(|| Value::String(value.to_owned()));
        }
    }
    if let Some(match_labels) = child_or_insert(spec, "selector")
        .and_then(|selector| child_or_insert(selector, "matchLabels"))
    {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| Value::String(uid.to_owned()));
    }
    default_job_labels_from_template(job);
}

/// Adds the `kubernetes` finalizer to a Namespace being created, as the Namespace
/// registry does. Create only: see the module documentation.
pub fn default_namespace_finalizers(namespace: &mut Value) {
    let Some(spec) = namespace
        .as_object_mut()
        .and_then(|namespace| child_or_insert(namespace, "spec"))
    else {
        return;
    };
    match spec.get_mut("finalizers") {
        None | Some(Value::Null) => {
            spec.insert("finalizers".to_owned(), json!(["kubernetes"]));
        }
        Some(Value::Array(finalizers)) => {
            let kubernetes = Value::String("kubernetes".to_owned());
            if !finalizers.contains(&kubernetes) {
                finalizers.push(kubernetes);
            }
        }
        Some(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// Field helpers. Each one leaves a field of the wrong JSON type alone.
// ---------------------------------------------------------------------------------------

fn is_unset(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// A Go pointer field: set when absent or null.
fn default_pointer(object: &mut Object, key: &str, default: Value) {
    if is_unset(object.get(key)) {
        object.insert(key.to_owned(), default);
    }
}

/// A plain Go string field: set when absent, null or empty.
fn default_string(object: &mut Object, key: &str, default: &str) {
    match object.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) if text.is_empty() => {}
        Some(_) => return,
    }
    object.insert(key.to_owned(), Value::String(default.to_owned()));
}

/// A plain Go integer field: set when absent, null or zero.
fn default_integer(object: &mut Object, key: &str, default: i64) {
    match object.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Number(number)) if number.as_i64() == Some(0) => {}
        Some(_) => return,
    }
    object.insert(key.to_owned(), Value::from(default));
}

/// The string at `key`, treating absent and null as Go's empty string; None when the
/// field has another JSON type.
fn string_field<'a>(object: &'a Object, key: &str) -> Option<&'a str> {
    match object.get(key) {
        None | Some(Value::Null) => Some(""),
        Some(Value::String(text)) => Some(text),
        Some(_) => None,
    }
}

/// The nested object at `key`, when present and an object.
fn child<'a>(object: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    object.get_mut(key).and_then(Value::as_object_mut)
}

/// The nested object at `key`, created when absent or null (Go's zero-valued struct);
/// None when the field has another JSON type.
fn child_or_insert<'a>(object: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    if is_unset(object.get(key)) {
        object.insert(key.to_owned(), Value::Object(Map::new()));
    }
    child(object, key)
}

/// Runs `default` on every object element of the array at `key`.
fn for_each_item(object: &mut Object, key: &str, mut default: impl FnMut(&mut Object)) {
    if let Some(Value::Array(items)) = object.get_mut(key) {
        items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(&mut default);
    }
}

/// True when the object at `key` is a non-empty JSON object.
fn has_entries(object: &Object, key: &str) -> bool {
    object
        .get(key)
        .and_then(Value::as_object)
        .is_some_and(|entries| !entries.is_empty())
}

fn is_integer(value: &Value) -> bool {
    value.as_i64().is_some() || value.as_u64().is_some()
}

// ---------------------------------------------------------------------------------------
// Pods and pod templates (core/v1).
// ---------------------------------------------------------------------------------------

fn default_pod(pod: &mut Object) {
    let Some(spec) = child_or_insert(pod, "spec") else {
        return;
    };
    default_pod_only(spec);
    default_pod_spec(spec);
}

/// Defaults Kubernetes applies to a Pod but not to the pod templates of workloads
/// (its `SetDefaults_Pod`): templates would otherwise change on every upgrade that adds
/// one, and roll every Deployment.
fn default_pod_only(spec: &mut Object) {
    // Requests default to limits, per resource name, in regular and init containers.
    for key in ["containers", "initContainers"] {
        for_each_item(spec, key, default_requests_from_limits);
    }
    default_pointer(spec, "enableServiceLinks", Value::Bool(true));
    // With host networking a container port is a host port.
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for_each_item(spec, key, |container| {
                for_each_item(container, "ports", default_host_port);
            });
        }
    }
}

fn default_requests_from_limits(container: &mut Object) {
    let Some(resources) = child(container, "resources") else {
        return;
    };
    let limits = match resources.get("limits") {
        Some(Value::Object(limits)) if !limits.is_empty() => limits.clone(),
        _ => return,
    };
    if let Some(requests) = child_or_insert(resources, "requests") {
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

fn default_host_port(port: &mut Object) {
    let Some(container_port) = port.get("containerPort").filter(|value| is_integer(value)) else {
        return;
    };
    let container_port = container_port.clone();
    match port.get("hostPort") {
        None | Some(Value::Null) => {}
        Some(Value::Number(number)) if number.as_i64() == Some(0) => {}
        Some(_) => return,
    }
    port.insert("hostPort".to_owned(), container_port);
}

/// Defaults a `PodTemplateSpec` held at `key` (a non-pointer field in every workload).
fn default_pod_template_at(parent: &mut Object, key: &str) {
    if let Some(spec) =
        child_or_insert(parent, key).and_then(|template| child_or_insert(template, "spec"))
    {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the defaults of every type nested in a pod spec.
fn default_pod_spec(spec: &mut Object) {
    default_string(spec, "dnsPolicy", "ClusterFirst");
    default_string(spec, "restartPolicy", "Always");
    default_pointer(spec, "securityContext", json!({}));
    default_pointer(spec, "terminationGracePeriodSeconds", json!(30));
    default_string(spec, "schedulerName", "default-scheduler");
    for_each_item(spec, "volumes", default_volume);
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for_each_item(spec, key, default_container);
    }
}

fn default_container(container: &mut Object) {
    if let Some(image) = string_field(container, "image") {
        let policy = pull_policy_for_image(image);
        default_string(container, "imagePullPolicy", policy);
    }
    default_string(container, "terminationMessagePath", "/dev/termination-log");
    default_string(container, "terminationMessagePolicy", "File");
    for_each_item(container, "ports", |port| {
        default_string(port, "protocol", "TCP");
    });
    for_each_item(container, "env", |variable| {
        if let Some(field_ref) =
            child(variable, "valueFrom").and_then(|value_from| child(value_from, "fieldRef"))
        {
            default_field_ref(field_ref);
        }
    });
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = child(container, key) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = child(container, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(http_get) =
                child(lifecycle, key).and_then(|handler| child(handler, "httpGet"))
            {
                default_http_get(http_get);
            }
        }
    }
}

fn default_probe(probe: &mut Object) {
    default_integer(probe, "timeoutSeconds", 1);
    default_integer(probe, "periodSeconds", 10);
    default_integer(probe, "successThreshold", 1);
    default_integer(probe, "failureThreshold", 3);
    if let Some(http_get) = child(probe, "httpGet") {
        default_http_get(http_get);
    }
    if let Some(grpc) = child(probe, "grpc") {
        default_pointer(grpc, "service", json!(""));
    }
}

fn default_http_get(http_get: &mut Object) {
    default_string(http_get, "path", "/");
    default_string(http_get, "scheme", "HTTP");
}

fn default_field_ref(field_ref: &mut Object) {
    default_string(field_ref, "apiVersion", "v1");
}

/// Every `VolumeSource` member in v1.33. A volume with none of them set becomes an
/// `emptyDir`.
const VOLUME_SOURCE_KEYS: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Mode 0644, the default of secret, configMap, downwardAPI and projected volumes.
const DEFAULT_VOLUME_MODE: i64 = 0o644;

fn default_volume(volume: &mut Object) {
    if VOLUME_SOURCE_KEYS
        .iter()
        .all(|key| is_unset(volume.get(*key)))
    {
        volume.insert("emptyDir".to_owned(), json!({}));
    }
    default_shared_volume_sources(volume);
    for key in ["secret", "configMap"] {
        if let Some(source) = child(volume, key) {
            default_pointer(source, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        }
    }
    if let Some(downward_api) = child(volume, "downwardAPI") {
        default_pointer(downward_api, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        default_downward_api_items(downward_api);
    }
    if let Some(projected) = child(volume, "projected") {
        default_pointer(projected, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        for_each_item(projected, "sources", |source| {
            if let Some(downward_api) = child(source, "downwardAPI") {
                default_downward_api_items(downward_api);
            }
            if let Some(token) = child(source, "serviceAccountToken") {
                default_pointer(token, "expirationSeconds", json!(3600));
            }
        });
    }
    if let Some(spec) = child(volume, "ephemeral")
        .and_then(|ephemeral| child(ephemeral, "volumeClaimTemplate"))
        .and_then(|template| child_or_insert(template, "spec"))
    {
        default_persistent_volume_claim_spec(spec);
    }
}

fn default_downward_api_items(downward_api: &mut Object) {
    for_each_item(downward_api, "items", |item| {
        if let Some(field_ref) = child(item, "fieldRef") {
            default_field_ref(field_ref);
        }
    });
}

/// Defaults of the volume sources a Pod volume and a PersistentVolume share.
fn default_shared_volume_sources(sources: &mut Object) {
    if let Some(host_path) = child(sources, "hostPath") {
        default_pointer(host_path, "type", json!(""));
    }
    if let Some(iscsi) = child(sources, "iscsi") {
        default_string(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = child(sources, "rbd") {
        default_string(rbd, "pool", "rbd");
        default_string(rbd, "user", "admin");
        default_string(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(azure_disk) = child(sources, "azureDisk") {
        default_pointer(azure_disk, "cachingMode", json!("ReadWrite"));
        default_pointer(azure_disk, "kind", json!("Shared"));
        default_pointer(azure_disk, "fsType", json!("ext4"));
        default_pointer(azure_disk, "readOnly", json!(false));
    }
    if let Some(scale_io) = child(sources, "scaleIO") {
        default_string(scale_io, "storageMode", "ThinProvisioned");
        default_string(scale_io, "fsType", "xfs");
    }
}

/// The pull policy Kubernetes picks when none is set: `Always` for the tag `latest`
/// (written, or implied by a reference with neither tag nor digest), `IfNotPresent`
/// otherwise, including for references that do not parse.
fn pull_policy_for_image(image: &str) -> &'static str {
    match parse_image_reference(image) {
        Some(ImageReference {
            tag: None,
            digest: None,
        })
        | Some(ImageReference {
            tag: Some("latest"),
            ..
        }) => "Always",
        _ => "IfNotPresent",
    }
}

struct ImageReference<'a> {
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// The longest repository name (registry host, `/`, path) the reference grammar takes.
const IMAGE_NAME_LENGTH_MAX: usize = 255;

/// Parses an image reference the way Kubernetes' image-name parser (the "normalized
/// named" reference grammar of the container registries) does, keeping only what the
/// pull policy needs.
fn parse_image_reference(image: &str) -> Option<ImageReference<'_>> {
    // 64 hex digits alone are an image ID, which is refused as a name.
    if image.len() == 64
        && image
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    // The first path element names a registry when it looks like a host: it has a dot
    // or a port, is "localhost", or has upper-case letters (which a path may not).
    let (domain, remainder) = match image.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, image),
    };
    let repository = remainder.split(':').next().unwrap_or(remainder);
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (remainder, None),
    };
    let (path, tag) = match name_and_tag.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_and_tag, None),
    };
    // Each optional part, when present, must be well formed.
    let is_well_formed = domain.into_iter().all(is_valid_registry_host)
        && path.split('/').all(is_valid_path_component)
        && tag.into_iter().all(is_valid_tag)
        && digest.into_iter().all(is_valid_digest);
    if !is_well_formed {
        return None;
    }
    // Docker Hub names are measured in their normalized form, docker.io/library/x.
    let name_length = match domain {
        Some(domain) => domain.len() + 1 + path.len(),
        None if path.contains('/') => "docker.io/".len() + path.len(),
        None => "docker.io/library/".len() + path.len(),
    };
    (name_length <= IMAGE_NAME_LENGTH_MAX).then_some(ImageReference { tag, digest })
}

/// `host[:port]`, where host is dotted DNS labels or a bracketed IPv6 address.
fn is_valid_registry_host(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    let is_bracketed_ipv6 = host.is_empty() && domain.starts_with('[');
    let host_is_valid = is_bracketed_ipv6
        || host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        });
    let port_is_valid = port
        .into_iter()
        .all(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    host_is_valid && port_is_valid
}

/// Lower-case alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(is_alphanumeric) || !bytes.last().is_some_and(is_alphanumeric) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if is_alphanumeric(&bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !is_alphanumeric(&bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let is_valid_separator =
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !is_valid_separator {
            return false;
        }
    }
    true
}

/// A word character, then up to 127 word characters, dots or dashes.
fn is_valid_tag(tag: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.bytes().next().is_some_and(is_word)
        && tag.bytes().all(|b| is_word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex` with one of the algorithms Kubernetes links in and the exact
/// length of its lower-case hex encoding.
fn is_valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == length
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---------------------------------------------------------------------------------------
// Persistent volumes and claims, limit ranges (core/v1).
// ---------------------------------------------------------------------------------------

fn default_persistent_volume_claim(claim: &mut Object) {
    if let Some(spec) = child_or_insert(claim, "spec") {
        default_persistent_volume_claim_spec(spec);
    }
    if let Some(status) = child_or_insert(claim, "status") {
        default_string(status, "phase", "Pending");
    }
}

fn default_persistent_volume_claim_spec(spec: &mut Object) {
    default_pointer(spec, "volumeMode", json!("Filesystem"));
}

fn default_persistent_volume(volume: &mut Object) {
    if let Some(spec) = child_or_insert(volume, "spec") {
        default_string(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_pointer(spec, "volumeMode", json!("Filesystem"));
        default_shared_volume_sources(spec);
    }
    if let Some(status) = child_or_insert(volume, "status") {
        default_string(status, "phase", "Pending");
    }
}

fn default_limit_range(limit_range: &mut Object) {
    let Some(spec) = child(limit_range, "spec") else {
        return;
    };
    for_each_item(spec, "limits", |item| {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            return;
        }
        // A default limit falls back to the max; a default request to the default
        // limit, then to the min. Each only per resource name, and only into a field
        // that is absent or already an object.
        fill_missing_resources(item, "default", "max");
        fill_missing_resources(item, "defaultRequest", "default");
        fill_missing_resources(item, "defaultRequest", "min");
    });
}

fn fill_missing_resources(item: &mut Object, target_key: &str, source_key: &str) {
    let source = match item.get(source_key) {
        Some(Value::Object(source)) if !source.is_empty() => source.clone(),
        _ => return,
    };
    if let Some(target) = child_or_insert(item, target_key) {
        for (name, quantity) in source {
            target.entry(name).or_insert(quantity);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Workloads (core/v1 ReplicationController, apps/v1).
// ---------------------------------------------------------------------------------------

fn default_replication_controller(controller: &mut Object) {
    let Some(spec) = child_or_insert(controller, "spec") else {
        return;
    };
    default_pointer(spec, "replicas", json!(1));
    // The template is a pointer here: only an existing one is defaulted.
    if let Some(template) = child(spec, "template") {
        if let Some(template_spec) = child_or_insert(template, "spec") {
            default_pod_spec(template_spec);
        }
    }
    let template_labels = spec
        .get("template")
        .and_then(|template| template.get("metadata"))
        .and_then(|metadata| metadata.get("labels"))
        .filter(|labels| labels.as_object().is_some_and(|labels| !labels.is_empty()))
        .cloned();
    let Some(template_labels) = template_labels else {
        return;
    };
    if is_unset(spec.get("selector")) || spec.get("selector") == Some(&json!({})) {
        spec.insert("selector".to_owned(), template_labels.clone());
    }
    if let Some(metadata) = child_or_insert(controller, "metadata") {
        if is_unset(metadata.get("labels")) || metadata.get("labels") == Some(&json!({})) {
            metadata.insert("labels".to_owned(), template_labels);
        }
    }
}

fn default_deployment(deployment: &mut Object) {
    let Some(spec) = child_or_insert(deployment, "spec") else {
        return;
    };
    default_pointer(spec, "replicas", json!(1));
    if let Some(strategy) = child_or_insert(spec, "strategy") {
        default_string(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling_update) = child_or_insert(strategy, "rollingUpdate") {
                default_pointer(rolling_update, "maxUnavailable", json!("25%"));
                default_pointer(rolling_update, "maxSurge", json!("25%"));
            }
        }
    }
    default_pointer(spec, "revisionHistoryLimit", json!(10));
    default_pointer(spec, "progressDeadlineSeconds", json!(600));
    default_pod_template_at(spec, "template");
}

fn default_replica_set(replica_set: &mut Object) {
    let Some(spec) = child_or_insert(replica_set, "spec") else {
        return;
    };
    default_pointer(spec, "replicas", json!(1));
    default_pod_template_at(spec, "template");
}

fn default_daemon_set(daemon_set: &mut Object) {
    let Some(spec) = child_or_insert(daemon_set, "spec") else {
        return;
    };
    if let Some(strategy) = child_or_insert(spec, "updateStrategy") {
        default_string(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling_update) = child_or_insert(strategy, "rollingUpdate") {
                default_pointer(rolling_update, "maxUnavailable", json!(1));
                default_pointer(rolling_update, "maxSurge", json!(0));
            }
        }
    }
    default_pointer(spec, "revisionHistoryLimit", json!(10));
    default_pod_template_at(spec, "template");
}

fn default_stateful_set(stateful_set: &mut Object) {
    let Some(spec) = child_or_insert(stateful_set, "spec") else {
        return;
    };
    default_string(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = child_or_insert(spec, "updateStrategy") {
        // Unlike a Deployment's, a StatefulSet's rollingUpdate block is only created
        // when the type itself was defaulted; an explicit RollingUpdate without one
        // stays without one.
        if matches!(string_field(strategy, "type"), Some("")) {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
            default_pointer(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            // maxUnavailable is defaulted only behind the MaxUnavailableStatefulSet
            // gate, which is off in v1.33.
            if let Some(rolling_update) = child(strategy, "rollingUpdate") {
                default_pointer(rolling_update, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = child_or_insert(spec, "persistentVolumeClaimRetentionPolicy") {
        default_string(policy, "whenDeleted", "Retain");
        default_string(policy, "whenScaled", "Retain");
    }
    default_pointer(spec, "replicas", json!(1));
    default_pointer(spec, "revisionHistoryLimit", json!(10));
    // minReadySeconds is a plain int32 with omitempty: its zero never shows.
    default_pod_template_at(spec, "template");
    for_each_item(
        spec,
        "volumeClaimTemplates",
        default_persistent_volume_claim,
    );
}

// ---------------------------------------------------------------------------------------
// Jobs and CronJobs (batch/v1).
// ---------------------------------------------------------------------------------------

/// `int32` max: the backoffLimit of a Job that counts failures per index instead.
const BACKOFF_LIMIT_PER_INDEX_JOB: i64 = 2_147_483_647;

fn default_job(job: &mut Object) {
    let Some(spec) = child_or_insert(job, "spec") else {
        return;
    };
    // A non-parallel Job may leave both unset; then both are 1. With completions set
    // and parallelism unset, parallelism alone is 1 and completions stays as it is.
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".to_owned(), json!(1));
    }
    default_pointer(spec, "parallelism", json!(1));
    if is_unset(spec.get("backoffLimitPerIndex")) {
        default_pointer(spec, "backoffLimit", json!(6));
    } else {
        default_pointer(spec, "backoffLimit", json!(BACKOFF_LIMIT_PER_INDEX_JOB));
    }
    default_pointer(spec, "completionMode", json!("NonIndexed"));
    default_pointer(spec, "suspend", json!(false));
    default_pod_failure_policy(spec);
    let replacement_policy = if is_unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_pointer(spec, "podReplacementPolicy", json!(replacement_policy));
    default_pointer(spec, "manualSelector", json!(false));
    default_pod_template_at(spec, "template");
    default_job_labels_from_template(job);
}

/// A Job without labels of its own takes its pod template's labels.
fn default_job_labels_from_template(job: &mut Object) {
    let template_labels = job
        .get("spec")
        .and_then(|spec| spec.get("template"))
        .and_then(|template| template.get("metadata"))
        .and_then(|metadata| metadata.get("labels"))
        .filter(|labels| labels.as_object().is_some_and(|labels| !labels.is_empty()))
        .cloned();
    let Some(template_labels) = template_labels else {
        return;
    };
    if let Some(metadata) = child_or_insert(job, "metadata") {
        if is_unset(metadata.get("labels")) || metadata.get("labels") == Some(&json!({})) {
            metadata.insert("labels".to_owned(), template_labels);
        }
    }
}

fn default_pod_failure_policy(job_spec: &mut Object) {
    if let Some(policy) = child(job_spec, "podFailurePolicy") {
        for_each_item(policy, "rules", |rule| {
            for_each_item(rule, "onPodConditions", |pattern| {
                default_string(pattern, "status", "True");
            });
        });
    }
}

fn default_cron_job(cron_job: &mut Object) {
    let Some(spec) = child_or_insert(cron_job, "spec") else {
        return;
    };
    default_string(spec, "concurrencyPolicy", "Allow");
    default_pointer(spec, "suspend", json!(false));
    default_pointer(spec, "successfulJobsHistoryLimit", json!(3));
    default_pointer(spec, "failedJobsHistoryLimit", json!(1));
    // The Job template's own spec is not Job-defaulted (no backoffLimit, no
    // completions): the Job gets those when the CronJob controller creates it. Only the
    // nested types' defaults apply.
    if let Some(job_spec) =
        child_or_insert(spec, "jobTemplate").and_then(|template| child_or_insert(template, "spec"))
    {
        default_pod_failure_policy(job_spec);
        default_pod_template_at(job_spec, "template");
    }
}

// ---------------------------------------------------------------------------------------
// Services and endpoints (core/v1, discovery/v1).
// ---------------------------------------------------------------------------------------

/// The timeout of ClientIP session affinity: three hours.
const CLIENT_IP_AFFINITY_TIMEOUT_SECONDS: i64 = 10_800;

fn default_service(service: &mut Object) {
    let Some(spec) = child_or_insert(service, "spec") else {
        return;
    };
    default_string(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|config| config.get("clientIP"))
                .and_then(|client_ip| client_ip.get("timeoutSeconds"))
                .is_some_and(|timeout| !timeout.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".to_owned(),
                    json!({"clientIP": {"timeoutSeconds": CLIENT_IP_AFFINITY_TIMEOUT_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    default_string(spec, "type", "ClusterIP");
    for_each_item(spec, "ports", |port| {
        default_string(port, "protocol", "TCP");
        let target_is_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(number)) => number.as_i64() == Some(0),
            Some(Value::String(text)) => text.is_empty(),
            Some(_) => false,
        };
        if let Some(number) = port.get("port").filter(|value| is_integer(value)) {
            if target_is_unset {
                let number = number.clone();
                port.insert("targetPort".to_owned(), number);
            }
        }
    });
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|addresses| !addresses.is_empty());
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_string(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(
        service_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer"
    ) {
        default_pointer(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_pointer(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type != "ExternalName" {
        default_service_ip_families(spec);
    }
    if service_type == "LoadBalancer" {
        if let Some(load_balancer) =
            child(service, "status").and_then(|status| child(status, "loadBalancer"))
        {
            for_each_item(load_balancer, "ingress", |ingress| {
                let has_ip = ingress
                    .get("ip")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| !ip.is_empty());
                if has_ip {
                    default_pointer(ingress, "ipMode", json!("VIP"));
                }
            });
        }
    }
}

/// The IP-family fields the Service registry fills in on create, before it allocates
/// cluster IPs, for a single-stack IPv4 cluster. Not defaulting in Kubernetes' sense,
/// but as visible to clients as if it were. On an update that omits `ipFamilyPolicy`,
/// Kubernetes adopts the stored object's policy instead of inferring one; a caller that
/// wants that carries the old value over before calling [`apply_defaults`].
fn default_service_ip_families(spec: &mut Object) {
    // A client that sets only the singular clusterIP gets the plural one to match.
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    if let Some(cluster_ip) = cluster_ip {
        let plural_is_empty = match spec.get("clusterIPs") {
            None | Some(Value::Null) => true,
            Some(Value::Array(ips)) => ips.is_empty(),
            Some(_) => false,
        };
        if plural_is_empty {
            spec.insert("clusterIPs".to_owned(), json!([cluster_ip]));
        }
    }
    let is_headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let has_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|selector| !selector.is_empty());
    let headless_without_selector = is_headless && !has_selector;
    // Headless Services without a selector serve every family the endpoints have.
    let policy = if headless_without_selector {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default_pointer(spec, "ipFamilyPolicy", json!(policy));

    let wants_single_stack =
        spec.get("ipFamilyPolicy").and_then(Value::as_str) == Some("SingleStack");

    // Families follow the cluster IPs the client chose, then the cluster's default.
    let chosen_ip_families: Vec<&'static str> = match spec.get("clusterIPs") {
        Some(Value::Array(ips)) => ips
            .iter()
            .map_while(Value::as_str)
            .take_while(|ip| *ip != "None")
            .map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" })
            .collect(),
        _ => Vec::new(),
    };
    let families = match spec.get_mut("ipFamilies") {
        None | Some(Value::Null) => {
            spec.insert("ipFamilies".to_owned(), json!([]));
            match spec.get_mut("ipFamilies") {
                Some(Value::Array(families)) => families,
                _ => return,
            }
        }
        Some(Value::Array(families)) => families,
        Some(_) => return,
    };
    for family in chosen_ip_families.iter().skip(families.len()) {
        families.push(json!(family));
    }
    if families.is_empty() {
        families.push(json!("IPv4"));
    }
    // Headless Services without a selector may carry both families even on a
    // single-stack cluster, unless the client asked for one.
    if headless_without_selector && families.len() < 2 && !wants_single_stack {
        let other = match families.first().and_then(Value::as_str) {
            Some("IPv6") => "IPv4",
            _ => "IPv6",
        };
        families.push(json!(other));
    }
}

fn default_endpoints(endpoints: &mut Object) {
    for_each_item(endpoints, "subsets", |subset| {
        for_each_item(subset, "ports", |port| {
            default_string(port, "protocol", "TCP");
        });
    });
}

fn default_endpoint_slice(slice: &mut Object) {
    for_each_item(slice, "ports", |port| {
        default_pointer(port, "name", json!(""));
        default_pointer(port, "protocol", json!("TCP"));
    });
}

// ---------------------------------------------------------------------------------------
// Cluster-scoped kinds and the rest.
// ---------------------------------------------------------------------------------------

fn default_namespace(namespace: &mut Object) {
    // The name label is set even over a client's value: selectors rely on it.
    let name = namespace
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    if let Some(name) = name {
        if let Some(labels) = child_or_insert(namespace, "metadata")
            .and_then(|metadata| child_or_insert(metadata, "labels"))
        {
            labels.insert("kubernetes.io/metadata.name".to_owned(), json!(name));
        }
    }
    if let Some(status) = child_or_insert(namespace, "status") {
        default_string(status, "phase", "Active");
    }
}

fn default_secret(secret: &mut Object) {
    default_string(secret, "type", "Opaque");
}

fn default_node(node: &mut Object) {
    let Some(status) = child(node, "status") else {
        return;
    };
    if is_unset(status.get("allocatable")) && has_entries(status, "capacity") {
        if let Some(capacity) = status.get("capacity").cloned() {
            status.insert("allocatable".to_owned(), capacity);
        }
    }
}

fn default_priority_class(priority_class: &mut Object) {
    default_pointer(
        priority_class,
        "preemptionPolicy",
        json!("PreemptLowerPriority"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, mut object: Value) -> Value {
        apply_defaults(kind, &mut object);
        object
    }

    #[test]
    fn user_set_values_are_kept() {
        // Proves defaulting never replaces a value the client chose.
        let deployment = defaulted(
            "Deployment",
            json!({"spec": {
                "replicas": 0,
                "revisionHistoryLimit": 2,
                "progressDeadlineSeconds": 30,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}},
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "dnsPolicy": "Default",
                    "terminationGracePeriodSeconds": 0,
                    "schedulerName": "mine",
                    "securityContext": {"runAsUser": 1000},
                    "containers": [{
                        "name": "app",
                        "image": "app:latest",
                        "imagePullPolicy": "Never",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "ports": [{"containerPort": 53, "protocol": "UDP"}],
                        "readinessProbe": {"periodSeconds": 2, "httpGet": {"port": 80, "path": "/ready", "scheme": "HTTPS"}}
                    }]
                }}
            }}),
        );
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 0);
        assert_eq!(spec["revisionHistoryLimit"], 2);
        assert_eq!(spec["progressDeadlineSeconds"], 30);
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 0);
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Never");
        assert_eq!(pod_spec["dnsPolicy"], "Default");
        assert_eq!(pod_spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(pod_spec["schedulerName"], "mine");
        assert_eq!(pod_spec["securityContext"], json!({"runAsUser": 1000}));
        let container = &pod_spec["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Never");
        assert_eq!(
            container["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );
        assert_eq!(container["ports"][0]["protocol"], "UDP");
        let probe = &container["readinessProbe"];
        assert_eq!(probe["periodSeconds"], 2);
        assert_eq!(probe["timeoutSeconds"], 1);
        assert_eq!(probe["httpGet"]["path"], "/ready");
        assert_eq!(probe["httpGet"]["scheme"], "HTTPS");

        let service = defaulted(
            "Service",
            json!({"spec": {
                "type": "NodePort",
                "externalTrafficPolicy": "Local",
                "internalTrafficPolicy": "Local",
                "ipFamilyPolicy": "PreferDualStack",
                "ports": [{"port": 80, "targetPort": "http", "protocol": "SCTP"}]
            }}),
        );
        let spec = &service["spec"];
        assert_eq!(spec["externalTrafficPolicy"], "Local");
        assert_eq!(spec["internalTrafficPolicy"], "Local");
        assert_eq!(spec["ipFamilyPolicy"], "PreferDualStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ports"][0]["targetPort"], "http");
        assert_eq!(spec["ports"][0]["protocol"], "SCTP");

        let secret = defaulted("Secret", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(secret["type"], "kubernetes.io/tls");
    }

    #[test]
    fn deployment_recreate_strategy_gets_no_rolling_update() {
        // Proves maxSurge/maxUnavailable are only defaulted for RollingUpdate.
        let deployment = defaulted(
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn job_completions_and_parallelism_follow_kubernetes_rule() {
        // Proves completions is defaulted only when parallelism is unset too.
        let both_unset = defaulted("Job", json!({"spec": {}}));
        assert_eq!(both_unset["spec"]["completions"], 1);
        assert_eq!(both_unset["spec"]["parallelism"], 1);
        let parallel = defaulted("Job", json!({"spec": {"parallelism": 5}}));
        assert!(parallel["spec"].get("completions").is_none());
        assert_eq!(parallel["spec"]["parallelism"], 5);
        let fixed = defaulted("Job", json!({"spec": {"completions": 4}}));
        assert_eq!(fixed["spec"]["completions"], 4);
        assert_eq!(fixed["spec"]["parallelism"], 1);
        let per_index = defaulted("Job", json!({"spec": {"backoffLimitPerIndex": 1}}));
        assert_eq!(per_index["spec"]["backoffLimit"], 2_147_483_647);
        let with_policy = defaulted(
            "Job",
            json!({"spec": {"podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
            ]}}}),
        );
        assert_eq!(with_policy["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(
            with_policy["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
    }

    #[test]
    fn manual_selector_job_keeps_its_selector() {
        // Proves a Job with manualSelector true gets no generated selector or labels.
        let mut job = json!({
            "metadata": {"name": "mine", "uid": "u"},
            "spec": {
                "manualSelector": true,
                "selector": {"matchLabels": {"app": "mine"}},
                "template": {"metadata": {"labels": {"app": "mine"}}}
            }
        });
        apply_defaults("Job", &mut job);
        default_job_selector(&mut job, "u");
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"app": "mine"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "mine"})
        );
        assert_eq!(job["metadata"]["labels"], json!({"app": "mine"}));
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        // Proves enableServiceLinks and requests-from-limits apply to Pods only, as in
        // Kubernetes, where templates get the pod spec defaults but not the Pod's.
        let container = json!({"name": "c", "image": "c:1", "resources": {"limits": {"cpu": "1"}}});
        let deployment = defaulted(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [container.clone()]}}}}),
        );
        let template_spec = &deployment["spec"]["template"]["spec"];
        assert!(template_spec.get("enableServiceLinks").is_none());
        assert!(template_spec["containers"][0]["resources"]
            .get("requests")
            .is_none());
        let pod = defaulted("Pod", json!({"spec": {"containers": [container]}}));
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1"})
        );
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        // Proves a host-network Pod's container ports default their hostPort.
        let pod = defaulted(
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [
                {"name": "c", "image": "c:1", "ports": [{"containerPort": 9100}, {"containerPort": 53, "hostPort": 5353}]}
            ]}}),
        );
        let ports = &pod["spec"]["containers"][0]["ports"];
        assert_eq!(ports[0]["hostPort"], 9100);
        assert_eq!(ports[1]["hostPort"], 5353);
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        // Proves the pull policy is Always exactly for an explicit or implied latest tag.
        let digest = format!("sha256:{}", "a".repeat(64));
        let digest_only = format!("nginx@{digest}");
        let tag_and_digest = format!("nginx:latest@{digest}");
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry.local:5000/team/app", "Always"),
            ("registry.local:5000/team/app:v2", "IfNotPresent"),
            ("localhost/app", "Always"),
            ("[::1]:5000/app:v1", "IfNotPresent"),
            (digest_only.as_str(), "IfNotPresent"),
            (tag_and_digest.as_str(), "Always"),
            ("nginx@sha256:short", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
            ("nginx:bad/tag", "IfNotPresent"),
            ("", "IfNotPresent"),
            ("a--b__c.d:latest", "Always"),
            ("a...b", "IfNotPresent"),
        ];
        for (image, policy) in cases {
            assert_eq!(pull_policy_for_image(image), policy, "image {image:?}");
        }
    }

    #[test]
    fn service_affinity_and_load_balancer_defaults() {
        // Proves ClientIP affinity gets its timeout, None drops the config, and a
        // LoadBalancer gets node ports and a VIP ingress mode.
        let client_ip = defaulted("Service", json!({"spec": {"sessionAffinity": "ClientIP"}}));
        assert_eq!(
            client_ip["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10_800
        );
        let none = defaulted(
            "Service",
            json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}}),
        );
        assert!(none["spec"].get("sessionAffinityConfig").is_none());
        let load_balancer = defaulted(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example"}]}}}),
        );
        assert_eq!(load_balancer["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(load_balancer["spec"]["externalTrafficPolicy"], "Cluster");
        let ingress = &load_balancer["status"]["loadBalancer"]["ingress"];
        assert_eq!(ingress[0]["ipMode"], "VIP");
        assert!(ingress[1].get("ipMode").is_none());
        let external_name = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example"}}),
        );
        assert!(external_name["spec"].get("ipFamilies").is_none());
        assert!(external_name["spec"].get("internalTrafficPolicy").is_none());
        let ipv6 = defaulted("Service", json!({"spec": {"clusterIP": "fd00::10"}}));
        assert_eq!(ipv6["spec"]["clusterIPs"], json!(["fd00::10"]));
        assert_eq!(ipv6["spec"]["ipFamilies"], json!(["IPv6"]));
    }

    #[test]
    fn small_kinds_get_their_defaults() {
        // Proves the defaults of the kinds without a golden file.
        assert_eq!(defaulted("Secret", json!({}))["type"], "Opaque");
        assert_eq!(
            defaulted("PriorityClass", json!({"value": 10}))["preemptionPolicy"],
            "PreemptLowerPriority"
        );
        let endpoints = defaulted("Endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]}));
        assert_eq!(endpoints["subsets"][0]["ports"][0]["protocol"], "TCP");
        let slice = defaulted("EndpointSlice", json!({"ports": [{"port": 80}]}));
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        let node = defaulted(
            "Node",
            json!({"status": {"capacity": {"cpu": "4", "pods": "110"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "pods": "110"})
        );
        let config_map = json!({"metadata": {"name": "c"}});
        assert_eq!(defaulted("ConfigMap", config_map.clone()), config_map);
        let lease = json!({"spec": {"holderIdentity": "a"}});
        assert_eq!(defaulted("Lease", lease.clone()), lease);
        let limit_range = defaulted(
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}),
        );
        let item = &limit_range["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );
    }

    #[test]
    fn namespace_finalizer_is_added_once() {
        // Proves the create-time finalizer is appended to a client's list, never twice.
        let mut namespace = json!({"spec": {"finalizers": ["example.com/guard"]}});
        default_namespace_finalizers(&mut namespace);
        default_namespace_finalizers(&mut namespace);
        assert_eq!(
            namespace["spec"]["finalizers"],
            json!(["example.com/guard", "kubernetes"])
        );
    }

    #[test]
    fn malformed_shapes_are_left_alone_without_panicking() {
        // Proves fields of the wrong JSON type survive untouched and nothing panics.
        let kinds = [
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "StatefulSet",
            "Job",
            "CronJob",
            "Service",
            "Namespace",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Node",
            "Event",
            "Endpoints",
            "EndpointSlice",
            "Lease",
            "PriorityClass",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "LimitRange",
        ];
        let odd_values = [
            json!(null),
            json!(7),
            json!("text"),
            json!([1, "two", null]),
            json!({"spec": 3, "metadata": [], "status": "x"}),
            json!({"spec": {"template": [], "jobTemplate": 1, "strategy": "x",
                            "updateStrategy": 2, "ports": {}, "subsets": 1,
                            "volumeClaimTemplates": [3, null]}}),
            json!({"spec": {"template": {"metadata": 1, "spec": {
                "containers": [1, null, {"ports": "x", "env": [{"valueFrom": 1}],
                  "image": 9, "livenessProbe": [], "resources": {"limits": 1},
                  "lifecycle": {"preStop": {"httpGet": "x"}}}],
                "volumes": [{"name": "v", "secret": 1}, 5, {"projected": {"sources": 1}}]}}}}),
            json!({"spec": {"containers": {}, "volumes": "x", "hostNetwork": true,
                            "initContainers": [{"ports": [{"containerPort": "x"}]}]}}),
            json!({"spec": {"type": 1, "ports": [{"port": "x"}], "clusterIPs": "x",
                            "ipFamilies": 4, "sessionAffinity": 2}}),
            json!({"spec": {"clusterIP": "None", "ipFamilies": "x"}}),
            json!({"spec": {"manualSelector": "yes", "selector": 1}, "metadata": {"labels": 1}}),
            json!({"status": {"capacity": 1, "loadBalancer": {"ingress": 2}}, "ports": [1]}),
        ];
        for kind in kinds {
            for odd in &odd_values {
                let mut object = odd.clone();
                apply_defaults(kind, &mut object);
                let mut job = object.clone();
                default_job_selector(&mut job, "uid");
                default_namespace_finalizers(&mut object);
            }
        }
        let kept = defaulted(
            "Deployment",
            json!({"spec": {"replicas": "three", "strategy": {"type": 5},
                   "template": {"spec": {"restartPolicy": 1, "containers": [{"imagePullPolicy": 2, "image": "x"}]}}}}),
        );
        assert_eq!(kept["spec"]["replicas"], "three");
        assert_eq!(kept["spec"]["strategy"], json!({"type": 5}));
        assert_eq!(kept["spec"]["template"]["spec"]["restartPolicy"], 1);
        assert_eq!(
            kept["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            2
        );
        let service = defaulted("Service", json!({"spec": {"ports": [{"port": "eighty"}]}}));
        assert!(service["spec"]["ports"][0].get("targetPort").is_none());
    }
}
