//! Answers and object helpers every verb uses.

#[allow(unused_imports)]
use super::*;

pub(super) fn not_found(resource: &Resource, name: &str) -> ApiResponse {
    let message = format!(
        "{} \"{name}\" not found",
        qualified(resource.plural, resource.group)
    );
    ApiResponse {
        code: 404,
        body: status(
            404,
            "NotFound",
            &message,
            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
        ),
    }
}

pub(super) fn failure(code: u16, reason: &str, message: String) -> ApiResponse {
    ApiResponse {
        code,
        body: status(code, reason, &message, json!({})),
    }
}

pub(super) fn store_failure(error: &StoreError) -> ApiResponse {
    match error {
        StoreError::Compacted { .. } => {
            failure(410, "Expired", format!("too old resource version: {error}"))
        }
        StoreError::NoQuorum { .. }
        | StoreError::Timeout
        | StoreError::NotLeader { .. }
        | StoreError::Stopped(_) => failure(
            503,
            "ServiceUnavailable",
            format!("the store is unavailable: {error}"),
        ),
        StoreError::Ambiguous(_) => failure(
            504,
            "Timeout",
            format!("the store did not confirm the write: {error}"),
        ),
        StoreError::RequestTooLarge { .. }
        | StoreError::KeyTooLarge { .. }
        | StoreError::ValueTooLarge { .. } => {
            failure(413, "RequestEntityTooLarge", error.to_string())
        }
        other => failure(500, "InternalError", other.to_string()),
    }
}

/// The stored JSON with what clients expect on every object.
pub(super) fn present(resource: &Resource, value: &[u8], mod_revision: i64) -> Value {
    let mut object: Value = serde_json::from_slice(value).unwrap_or_else(|_| json!({}));
    if let Some(map) = object.as_object_mut() {
        map.insert("kind".into(), json!(resource.kind));
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(mod_revision.to_string()));
    object
}

pub(super) fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn uid(ctx: &mut Ctx<'_>) -> String {
    let a: u64 = ctx.rng().gen();
    let b: u64 = ctx.rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub(super) fn conflict(resource: &Resource, name: &str) -> ApiResponse {
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        qualified(resource.plural, resource.group)
    );
    ApiResponse {
        code: 409,
        body: status(
            409,
            "Conflict",
            &message,
            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
        ),
    }
}

pub(super) fn invalid(
    resource: &Resource,
    name: &str,
    causes: &[validation::Cause],
) -> ApiResponse {
    let message = validation::invalid_message(resource.kind, name, causes);
    let details =
        json!({ "name": name, "group": resource.group, "kind": resource.kind, "causes": causes });
    ApiResponse {
        code: 422,
        body: status(422, "Invalid", &message, details),
    }
}

/// What is stored: no resourceVersion (it is the store's mod revision).
pub(super) fn strip(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    copy
}

pub(super) fn set_identity(resource: &Resource, object: &mut Value, revision: i64) {
    if let Some(map) = object.as_object_mut() {
        map.insert("kind".into(), json!(resource.kind));
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// The `autoscaling/v1 Scale` view of a Deployment, ReplicaSet or StatefulSet.
pub(super) fn scale_of(object: &Value) -> Value {
    let meta = crate::apiserver::object::metadata(object)
        .cloned()
        .unwrap_or_default();
    let pick = |field: &str| meta.get(field).cloned().unwrap_or(Value::Null);
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

/// "`key` was last written at `revision`" (a quota charged or credited with an object).
pub(super) fn unchanged_since(key: &[u8], revision: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        result: CompareResult::Equal,
        target: CompareTarget::ModRevision(revision),
    }
}

/// The answer to a store response that does not fit the operation's stage (a bug).
pub(super) fn unexpected(answer: &StoreResponse) -> ApiResponse {
    failure(
        500,
        "InternalError",
        format!("unexpected store answer {answer:?}"),
    )
}
