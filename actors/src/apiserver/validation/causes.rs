//! Causes and Kubernetes' message formats.

#[allow(unused_imports)]
use super::*;

/// `FieldValueRequired` — a value is missing.
pub const REASON_REQUIRED: &str = "FieldValueRequired";
/// `FieldValueInvalid` — a malformed or out-of-range value.
pub const REASON_INVALID: &str = "FieldValueInvalid";
/// `FieldValueNotSupported` — a value outside an enumeration.
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// `FieldValueDuplicate` — a value that must be unique is not.
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
/// `FieldValueForbidden` — a valid value not allowed here.
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";
/// `FieldValueTooLong` — a value over its size limit.
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
/// `FieldValueNotFound` — a reference to something that does not exist.
pub const REASON_NOT_FOUND: &str = "FieldValueNotFound";
/// `FieldValueTypeInvalid` — the JSON type is wrong (Kubernetes refuses these while decoding).
pub const REASON_TYPE_INVALID: &str = "FieldValueTypeInvalid";

/// One validation failure, shaped like Kubernetes' `StatusCause`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cause {
    /// One of the `REASON_*` constants.
    pub reason: String,
    /// Kubernetes' error body, e.g. `Invalid value: -1: must be greater than or equal to 0`.
    pub message: String,
    /// The field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
}

pub(super) fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

impl Cause {
    /// `Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> Cause {
        Cause {
            reason: REASON_REQUIRED.into(),
            message: with_detail("Required value".into(), detail),
            field: field.into(),
        }
    }

    /// `Invalid value: <shown_value>[: detail]`; `shown_value` is already formatted
    /// (see [`go_quote`] for strings).
    pub fn invalid(field: &str, shown_value: &str, detail: &str) -> Cause {
        Cause {
            reason: REASON_INVALID.into(),
            message: with_detail(format!("Invalid value: {shown_value}"), detail),
            field: field.into(),
        }
    }

    /// `Unsupported value: <shown_value>: supported values: "a", "b"`.
    pub fn not_supported(field: &str, shown_value: &str, supported: &[&str]) -> Cause {
        let quoted: Vec<String> = supported.iter().map(|value| go_quote(value)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Cause {
            reason: REASON_NOT_SUPPORTED.into(),
            message: with_detail(format!("Unsupported value: {shown_value}"), &detail),
            field: field.into(),
        }
    }

    /// `Duplicate value: <shown_value>`.
    pub fn duplicate(field: &str, shown_value: &str) -> Cause {
        Cause {
            reason: REASON_DUPLICATE.into(),
            message: format!("Duplicate value: {shown_value}"),
            field: field.into(),
        }
    }

    /// `Not found: <shown_value>`.
    pub fn not_found(field: &str, shown_value: &str) -> Cause {
        Cause {
            reason: REASON_NOT_FOUND.into(),
            message: format!("Not found: {shown_value}"),
            field: field.into(),
        }
    }

    /// `Forbidden[: detail]`.
    pub fn forbidden(field: &str, detail: &str) -> Cause {
        Cause {
            reason: REASON_FORBIDDEN.into(),
            message: with_detail("Forbidden".into(), detail),
            field: field.into(),
        }
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: &str, max_bytes: usize) -> Cause {
        Cause {
            reason: REASON_TOO_LONG.into(),
            message: format!("Too long: may not be more than {max_bytes} bytes"),
            field: field.into(),
        }
    }

    /// `Invalid value: <shown_value>: must be of type <expected>` — a JSON shape Kubernetes
    /// would refuse while decoding.
    pub fn type_invalid(field: &str, shown_value: &str, expected: &str) -> Cause {
        Cause {
            reason: REASON_TYPE_INVALID.into(),
            message: format!("Invalid value: {shown_value}: must be of type {expected}"),
            field: field.into(),
        }
    }

    /// Kubernetes' `field.Error.Error()`: `<field>: <message>`.
    pub fn error_text(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// The API group Kubernetes qualifies a kind with in `Status.message` (`Deployment.apps`).
pub fn api_group(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "ControllerRevision" => "apps",
        "Job" | "CronJob" => "batch",
        "EndpointSlice" => "discovery.k8s.io",
        "Lease" => "coordination.k8s.io",
        "PriorityClass" => "scheduling.k8s.io",
        "Ingress" | "IngressClass" | "NetworkPolicy" => "networking.k8s.io",
        "HorizontalPodAutoscaler" => "autoscaling",
        "PodDisruptionBudget" => "policy",
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io"
        }
        "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment" => "storage.k8s.io",
        _ => "",
    }
}

/// The `Status.message` of a 422 answer, exactly as Kubernetes builds it:
/// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater
/// than or equal to 0`; several causes are joined as `[first, second]` (duplicates
/// dropped). A kind without a dot is qualified with its API group ([`api_group`]).
pub fn invalid_message(kind: &str, name: &str, causes: &[Cause]) -> String {
    let group = api_group(kind);
    let qualified_kind = if kind.contains('.') || group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut seen = BTreeSet::new();
    let mut texts = Vec::new();
    for cause in causes {
        let text = cause.error_text();
        if seen.insert(text.clone()) {
            texts.push(text);
        }
    }
    let summary = match texts.len() {
        0 => return format!("{qualified_kind} {} is invalid", go_quote(name)),
        1 => texts.remove(0),
        _ => format!("[{}]", texts.join(", ")),
    };
    format!("{qualified_kind} {} is invalid: {summary}", go_quote(name))
}

/// Go's `%q` of a string (`strconv.Quote`): double quotes, backslash escapes for quotes,
/// backslashes and control characters.
pub fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            other if (other as u32) < 0x20 || other as u32 == 0x7f => {
                quoted.push_str(&format!("\\x{:02x}", other as u32));
            }
            other if other.is_control() => {
                let code = other as u32;
                if code <= 0xffff {
                    quoted.push_str(&format!("\\u{code:04x}"));
                } else {
                    quoted.push_str(&format!("\\U{code:08x}"));
                }
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `%#v` of a `map[string]string` (keys sorted, like fmt does); `None` is a nil map.
pub(super) fn go_string_map(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map else {
        return "map[string]string(nil)".into();
    };
    let entries: Vec<String> = map
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_str()
                .map(go_quote)
                .unwrap_or_else(|| value.to_string());
            format!("{}:{value}", go_quote(key))
        })
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// Go's `%#v` of a `v1.LabelSelector`, which Kubernetes prints for selector errors.
pub(super) fn go_label_selector(selector: &Value) -> String {
    let match_labels = go_string_map(selector.get("matchLabels").and_then(Value::as_object));
    let expressions = match selector.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(items) => {
            let shown: Vec<String> = items
                .iter()
                .map(|item| {
                    let text =
                        |key: &str| go_quote(item.get(key).and_then(Value::as_str).unwrap_or(""));
                    let values = match item.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(values) => {
                            let quoted: Vec<String> = values
                                .iter()
                                .map(|value| {
                                    value
                                        .as_str()
                                        .map(go_quote)
                                        .unwrap_or_else(|| value.to_string())
                                })
                                .collect();
                            format!("[]string{{{}}}", quoted.join(", "))
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        text("key"),
                        text("operator")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", shown.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{match_labels}, MatchExpressions:{expressions}}}")
}

/// How a JSON value is shown after `Invalid value: `: strings quoted like Go's `%q`,
/// numbers and booleans plain, anything else compact JSON.
pub fn show_value(value: &Value) -> String {
    match value {
        Value::String(text) => go_quote(text),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

pub(super) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(super) fn index(path: &str, position: usize) -> String {
    format!("{path}[{position}]")
}

pub(super) fn key(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}
