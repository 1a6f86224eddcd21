//! Object metadata.

#[allow(unused_imports)]
use super::*;

/// Whether a kind lives in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Namespaced,
    Cluster,
}

pub(super) fn scope_of(kind: &str) -> Scope {
    match kind {
        "Namespace"
        | "Node"
        | "PersistentVolume"
        | "PriorityClass"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "CustomResourceDefinition"
        | "StorageClass"
        | "CSIDriver"
        | "CSINode"
        | "VolumeAttachment"
        | "IngressClass"
        | "RuntimeClass"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "APIService"
        | "CertificateSigningRequest"
        | "ComponentStatus" => Scope::Cluster,
        _ => Scope::Namespaced,
    }
}

pub(super) fn name_rule_of(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; errors name the map.
pub(super) fn validate_labels(
    checker: &mut Checker,
    labels: &BTreeMap<String, String>,
    path: &str,
) {
    for (label_key, label_value) in labels {
        for message in is_qualified_name(label_key) {
            checker.push(Cause::invalid(path, &go_quote(label_key), &message));
        }
        for message in is_label_value(label_value) {
            checker.push(Cause::invalid(path, &go_quote(label_value), &message));
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive), total size bounded.
pub(super) fn validate_annotations(
    checker: &mut Checker,
    annotations: &BTreeMap<String, String>,
    path: &str,
) {
    let mut total_bytes = 0;
    for (annotation_key, annotation_value) in annotations {
        for message in is_qualified_name(&annotation_key.to_lowercase()) {
            checker.push(Cause::invalid(path, &go_quote(annotation_key), &message));
        }
        total_bytes += annotation_key.len() + annotation_value.len();
    }
    if total_bytes > ANNOTATIONS_TOTAL_MAX_BYTES {
        checker.push(Cause::too_long(path, ANNOTATIONS_TOTAL_MAX_BYTES));
    }
}

/// The namespace the object will live in: its own, else the request's.
pub(super) fn effective_namespace<'a>(
    object: &'a Value,
    request_namespace: Option<&'a str>,
) -> &'a str {
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) if !namespace.is_empty() => namespace,
        _ => request_namespace.unwrap_or(""),
    }
}

pub(super) fn validate_object_meta(
    checker: &mut Checker,
    object: &Value,
    rule: NameRule,
    scope: Scope,
    request_namespace: Option<&str>,
) {
    let path = "metadata";
    let metadata = object_or_empty(checker, object, "metadata", "");
    let name = checker.string(metadata, "name", path).unwrap_or("");
    let generate_name = checker.string(metadata, "generateName", path).unwrap_or("");
    if !generate_name.is_empty() {
        for message in rule.check(generate_name, true) {
            checker.push(Cause::invalid(
                "metadata.generateName",
                &go_quote(generate_name),
                &message,
            ));
        }
    }
    if name.is_empty() {
        // The API server generates the name from generateName before validating.
        if generate_name.is_empty() {
            checker.push(Cause::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for message in rule.check(name, false) {
            checker.push(Cause::invalid("metadata.name", &go_quote(name), &message));
        }
    }
    let object_namespace = checker.string(metadata, "namespace", path).unwrap_or("");
    if scope == Scope::Namespaced {
        let request_namespace = request_namespace.unwrap_or("");
        if !object_namespace.is_empty()
            && !request_namespace.is_empty()
            && object_namespace != request_namespace
        {
            // Kubernetes answers this one as 400 BadRequest with the same text.
            checker.push(Cause::invalid(
                "metadata.namespace",
                &go_quote(object_namespace),
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let namespace = if object_namespace.is_empty() {
            request_namespace
        } else {
            object_namespace
        };
        if namespace.is_empty() {
            checker.push(Cause::required("metadata.namespace", ""));
        } else {
            for message in is_dns1123_label(namespace) {
                checker.push(Cause::invalid(
                    "metadata.namespace",
                    &go_quote(namespace),
                    &message,
                ));
            }
        }
    }
    checker.non_negative(metadata, "generation", path);
    if let Some(labels) = checker.string_map(metadata, "labels", path) {
        validate_labels(checker, &labels, "metadata.labels");
    }
    if let Some(annotations) = checker.string_map(metadata, "annotations", path) {
        validate_annotations(checker, &annotations, "metadata.annotations");
    }
}
