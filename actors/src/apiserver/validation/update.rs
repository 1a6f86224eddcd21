//! Updates.

#[allow(unused_imports)]
use super::*;

pub(super) const FIELD_IMMUTABLE: &str = "field is immutable";

/// The exact first line of Kubernetes' refusal of a pod spec change.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(super) const STATEFULSET_UPDATE_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Drops `null`s, empty arrays and empty objects, recursively: Kubernetes compares with
/// semantic equality, where a nil and an empty list or map are the same.
pub(super) fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut normalized = Map::new();
            for (field, item) in map {
                let item = normalize(item);
                let empty = match &item {
                    Value::Null => true,
                    Value::Array(items) => items.is_empty(),
                    Value::Object(fields) => fields.is_empty(),
                    _ => false,
                };
                if !empty {
                    normalized.insert(field.clone(), item);
                }
            }
            Value::Object(normalized)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

pub(super) fn semantically_equal(left: Option<&Value>, right: Option<&Value>) -> bool {
    let left = normalize(left.unwrap_or(&Value::Null));
    let right = normalize(right.unwrap_or(&Value::Null));
    let is_empty = |value: &Value| match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    };
    (is_empty(&left) && is_empty(&right)) || left == right
}

/// Lists the leaf paths where two JSON values differ, as `-`/`+` lines (a readable
/// stand-in for the Go struct diff Kubernetes appends).
pub(super) fn json_diff(old: &Value, new: &Value, path: &str, lines: &mut Vec<String>) {
    const MAX_DIFF_LINES: usize = 20;
    if lines.len() >= MAX_DIFF_LINES * 2 {
        return;
    }
    match (old, new) {
        (Value::Object(old_fields), Value::Object(new_fields)) => {
            let names: BTreeSet<&String> = old_fields.keys().chain(new_fields.keys()).collect();
            for name in names {
                json_diff(
                    old_fields.get(name).unwrap_or(&Value::Null),
                    new_fields.get(name).unwrap_or(&Value::Null),
                    &child(path, name),
                    lines,
                );
            }
        }
        (Value::Array(old_items), Value::Array(new_items))
            if old_items.len() == new_items.len() =>
        {
            for (position, (old_item, new_item)) in old_items.iter().zip(new_items).enumerate() {
                json_diff(old_item, new_item, &index(path, position), lines);
            }
        }
        _ if old == new => {}
        _ => {
            if !old.is_null() {
                lines.push(format!("- {path}: {old}"));
            }
            if !new.is_null() {
                lines.push(format!("+ {path}: {new}"));
            }
        }
    }
}

pub(super) fn validate_metadata_update(checker: &mut Checker, old: &Value, new: &Value) {
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let old_value = old
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let new_value = new
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // The API server carries namespace, uid and creationTimestamp over when a client
        // leaves them out, so only a different non-empty value is a change.
        if field != "name" && new_value.is_empty() {
            continue;
        }
        if old_value != new_value {
            let shown = if field == "creationTimestamp" {
                go_time(new_value)
            } else {
                go_quote(new_value)
            };
            checker.push(Cause::invalid(
                &format!("metadata.{field}"),
                &shown,
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Go's `time.Time.String()` for an RFC 3339 UTC timestamp (`2024-01-02T03:04:05Z` →
/// `2024-01-02 03:04:05 +0000 UTC`); other forms are shown as given.
pub(super) fn go_time(text: &str) -> String {
    match text.strip_suffix('Z') {
        Some(stamp) if stamp.contains('T') => format!("{} +0000 UTC", stamp.replacen('T', " ", 1)),
        _ => text.to_string(),
    }
}

pub(super) fn validate_pod_update(checker: &mut Checker, old: &Value, new: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    for list in ["containers", "initContainers"] {
        let old_count = old_spec
            .get(list)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let new_count = new_spec
            .get(list)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if old_count != new_count {
            checker.push(Cause::forbidden(
                &child("spec", list),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }

    // activeDeadlineSeconds may be set, or lowered, but not raised or removed.
    let old_deadline = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (old_deadline, new_spec.get("activeDeadlineSeconds")) {
        (Some(_), None | Some(Value::Null)) => checker.push(Cause::invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        (Some(old_value), Some(new_value)) => {
            if let Some(new_value) = new_value.as_i64() {
                if new_value > old_value {
                    checker.push(Cause::invalid(
                        "spec.activeDeadlineSeconds",
                        &new_value.to_string(),
                        "must be less than or equal to previous value",
                    ));
                }
            }
        }
        _ => {}
    }

    // Tolerations may only be added; an existing one may change its tolerationSeconds.
    let strip_seconds = |toleration: &Value| {
        let mut toleration = normalize(toleration);
        if let Some(fields) = toleration.as_object_mut() {
            fields.remove("tolerationSeconds");
        }
        toleration
    };
    let old_tolerations: Vec<Value> = old_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(strip_seconds).collect())
        .unwrap_or_default();
    let new_tolerations: Vec<Value> = new_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(strip_seconds).collect())
        .unwrap_or_default();
    for (position, toleration) in old_tolerations.iter().enumerate() {
        if !new_tolerations.contains(toleration) {
            checker.push(Cause::forbidden(
                &index("spec.tolerations", position),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }
    }

    // Put the old values of the mutable fields into the new spec; what still differs
    // is a forbidden change.
    let mut munged = new_spec.clone();
    if let Some(fields) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            let old_list = old_spec.get(list).and_then(Value::as_array);
            if let (Some(Value::Array(new_list)), Some(old_list)) = (fields.get_mut(list), old_list)
            {
                for (new_container, old_container) in new_list.iter_mut().zip(old_list) {
                    if let Some(container) = new_container.as_object_mut() {
                        match old_container.get("image") {
                            Some(image) => container.insert("image".into(), image.clone()),
                            None => container.remove("image"),
                        };
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "tolerations"] {
            match old_spec.get(field) {
                Some(value) => fields.insert(field.into(), value.clone()),
                None => fields.remove(field),
            };
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = fields
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if matches!((old_grace, new_grace), (Some(old_value), Some(1)) if old_value < 0) {
            if let Some(value) = old_spec.get("terminationGracePeriodSeconds") {
                fields.insert("terminationGracePeriodSeconds".into(), value.clone());
            }
        }
    }
    if !semantically_equal(Some(&munged), Some(&old_spec)) {
        let mut lines = Vec::new();
        json_diff(
            &normalize(&old_spec),
            &normalize(&munged),
            "spec",
            &mut lines,
        );
        let mut detail = POD_UPDATE_FORBIDDEN.to_string();
        for line in lines {
            detail.push('\n');
            detail.push_str(&line);
        }
        checker.push(Cause::forbidden("spec", &detail));
    }
}

pub(super) fn validate_selector_immutable(checker: &mut Checker, old: &Value, new: &Value) {
    let old_selector = old.pointer("/spec/selector");
    let new_selector = new.pointer("/spec/selector");
    if !semantically_equal(old_selector, new_selector) {
        checker.push(Cause::invalid(
            "spec.selector",
            &go_label_selector(new_selector.unwrap_or(&Value::Null)),
            FIELD_IMMUTABLE,
        ));
    }
}

pub(super) fn validate_stateful_set_update(checker: &mut Checker, old: &Value, new: &Value) {
    let mutable = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let without_mutable = |object: &Value| {
        let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(fields) = spec.as_object_mut() {
            for field in mutable {
                fields.remove(field);
            }
        }
        spec
    };
    if !semantically_equal(Some(&without_mutable(old)), Some(&without_mutable(new))) {
        checker.push(Cause::forbidden("spec", STATEFULSET_UPDATE_FORBIDDEN));
    }
}

pub(super) fn validate_immutable_flag(
    checker: &mut Checker,
    old: &Value,
    new: &Value,
    fields: &[&str],
) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MESSAGE: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        checker.push(Cause::forbidden("immutable", MESSAGE));
    }
    for field in fields {
        if !semantically_equal(old.get(field), new.get(field)) {
            checker.push(Cause::forbidden(field, MESSAGE));
        }
    }
}

/// The update rules of `kind`: what may not change between the stored `old` object and
/// the `new` one. Callers also run [`validate`] on `new`; this returns only the
/// update-specific causes (immutable metadata first, like Kubernetes).
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut checker = Checker::new();
    if !new.is_object() {
        checker.push(Cause::type_invalid("", &show_value(new), "object"));
        return checker.causes;
    }
    validate_metadata_update(&mut checker, old, new);
    match kind {
        "Pod" => validate_pod_update(&mut checker, old, new),
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            validate_selector_immutable(&mut checker, old, new);
        }
        "StatefulSet" => validate_stateful_set_update(&mut checker, old, new),
        "Job" => {
            validate_selector_immutable(&mut checker, old, new);
            let old_template = old.pointer("/spec/template");
            let new_template = new.pointer("/spec/template");
            if !semantically_equal(old_template, new_template) {
                checker.push(Cause::invalid(
                    "spec.template",
                    &normalize(new_template.unwrap_or(&Value::Null)).to_string(),
                    FIELD_IMMUTABLE,
                ));
            }
        }
        "Service" => {
            let service_type = |object: &Value| {
                object
                    .pointer("/spec/type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP")
                    .to_string()
            };
            let cluster_ip = |object: &Value| {
                object
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let (old_ip, new_ip) = (cluster_ip(old), cluster_ip(new));
            let uses_cluster_ip =
                service_type(old) != "ExternalName" && service_type(new) != "ExternalName";
            // An empty clusterIP in the update keeps the allocated one.
            if uses_cluster_ip && !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                checker.push(Cause::invalid(
                    "spec.clusterIP",
                    &go_quote(&new_ip),
                    FIELD_IMMUTABLE,
                ));
            }
        }
        "ConfigMap" => validate_immutable_flag(&mut checker, old, new, &["data", "binaryData"]),
        "Secret" => {
            validate_immutable_flag(&mut checker, old, new, &["data"]);
            let secret_type = |object: &Value| {
                object
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string()
            };
            if secret_type(old) != secret_type(new) {
                checker.push(Cause::invalid(
                    "type",
                    &go_quote(&secret_type(new)),
                    FIELD_IMMUTABLE,
                ));
            }
        }
        "PriorityClass"
            if old.get("value").and_then(Value::as_i64)
                != new.get("value").and_then(Value::as_i64) =>
        {
            checker.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        _ => {}
    }
    checker.causes
}
