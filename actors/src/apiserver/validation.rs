//! Kubernetes validation of objects as clients send them (`serde_json::Value`), with
//! Kubernetes' own field paths and messages, so `kubectl` and client libraries print
//! what users know from a real cluster.
//!
//! Owns: the name and label formats, resource quantities, cron schedules, the per-kind
//! rules ([`validate`]) and the update rules ([`validate_update`]). Touches nothing else:
//! every function is pure and total — a malformed JSON shape becomes a [`Cause`], never
//! a panic.
//!
//! How callers use it:
//! 1. apply defaults (`super::defaults`), then call [`validate`] with the request's
//!    namespace; on an update also call [`validate_update`] with the stored object;
//! 2. if any [`Cause`] comes back, answer 422 `Invalid` with
//!    [`invalid_message`] as `Status.message` and the causes as `details.causes`.
//!
//! Where Kubernetes prints a Go value (`%#v`) we reproduce it for the common shapes (strings,
//! integers, `map[string]string`, `v1.LabelSelector`, `core.ServicePort`); other structured
//! values are shown as compact JSON. Fields that Kubernetes' defaulting fills (a missing
//! `restartPolicy`, port `protocol`, Deployment `strategy`, …) are accepted when absent and
//! checked with their default value, so validation gives the same answer before or after
//! defaulting.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::selectors::{label_selector_from_json, LabelSelector};

// ---------------------------------------------------------------------------------------
// Causes and Kubernetes' message formats.

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

fn with_detail(head: String, detail: &str) -> String {
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
fn go_string_map(map: Option<&Map<String, Value>>) -> String {
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
fn go_label_selector(selector: &Value) -> String {
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

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, position: usize) -> String {
    format!("{path}[{position}]")
}

fn key(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

// ---------------------------------------------------------------------------------------
// Formats (apimachinery's util/validation): each returns Kubernetes' messages, empty when
// the value is valid.

const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FORMAT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FORMAT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FORMAT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MESSAGE: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FORMAT: &str = "[0-9]+%";
const PERCENT_MESSAGE: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";

/// Longest DNS-1123 label (namespaces, container names).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain (most object names).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest label value and qualified-name name part.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Largest total size of an object's annotations (keys plus values), in bytes.
pub const ANNOTATIONS_TOTAL_MAX_BYTES: usize = 256 * 1024;
/// Largest total size of a ConfigMap's or Secret's data, in bytes.
pub const CONFIG_DATA_MAX_BYTES: usize = 1024 * 1024;
/// Highest priority a user-defined PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// apimachinery's `RegexError`, spacing quirks included.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let mut text = format!("{message} (e.g. ");
    for (position, example) in examples.iter().enumerate() {
        if position > 0 {
            text.push_str(" or ");
        }
        text.push('\'');
        text.push_str(example);
        text.push_str("', ");
    }
    text.push_str(&format!("regex used for validation is '{format}')"));
    text
}

fn max_length_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn inclusive_range_error(low: i64, high: i64) -> String {
    format!("must be between {low} and {high}, inclusive")
}

fn is_lower_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alphanumeric(first)
                && is_lower_alphanumeric(last)
                && bytes
                    .iter()
                    .all(|&byte| is_lower_alphanumeric(byte) || byte == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(text: &str) -> bool {
    text.split('.').all(matches_dns1123_label)
}

fn matches_qualified_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Messages for a string that must be an RFC 1123 label (namespace names).
pub fn is_dns1123_label(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(text) {
        if matches_dns1123_subdomain(text) {
            errors.push("must not contain dots".into());
        } else {
            errors.push(regex_error(
                DNS1123_LABEL_MESSAGE,
                DNS1123_LABEL_FORMAT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

/// Messages for a string that must be an RFC 1123 subdomain (most object names).
pub fn is_dns1123_subdomain(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(text) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_MESSAGE,
            DNS1123_SUBDOMAIN_FORMAT,
            &["example.com"],
        ));
    }
    errors
}

/// Messages for a string that must be an RFC 1035 label (Service names).
pub fn is_dns1035_label(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_LABEL_MAX_LENGTH));
    }
    let bytes = text.as_bytes();
    let valid = matches!(bytes.first(), Some(first) if first.is_ascii_lowercase())
        && matches_dns1123_label(text);
    if !valid {
        errors.push(regex_error(
            DNS1035_LABEL_MESSAGE,
            DNS1035_LABEL_FORMAT,
            &["my-name", "abc-123"],
        ));
    }
    errors
}

/// Messages for a qualified name (label and annotation keys): an optional DNS subdomain
/// prefix and `/`, then a name part of at most 63 characters.
pub fn is_qualified_name(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = text.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                for message in is_dns1123_subdomain(prefix) {
                    errors.push(format!("prefix part {message}"));
                }
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MESSAGE,
                    QUALIFIED_NAME_FORMAT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".into());
    } else if name.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_length_error(LABEL_VALUE_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MESSAGE,
                QUALIFIED_NAME_FORMAT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Messages for a label value: empty, or at most 63 characters of the qualified-name form.
pub fn is_label_value(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_length_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !text.is_empty() && !matches_qualified_name_part(text) {
        errors.push(regex_error(
            LABEL_VALUE_MESSAGE,
            LABEL_VALUE_FORMAT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Messages for a ConfigMap or Secret data key.
pub fn is_config_map_key(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
    if !valid {
        errors.push(regex_error(
            CONFIG_KEY_MESSAGE,
            CONFIG_KEY_FORMAT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if text == "." {
        errors.push("must not be '.'".into());
    } else if text == ".." {
        errors.push("must not be '..'".into());
    } else if text.starts_with("..") {
        errors.push("must not start with '..'".into());
    }
    errors
}

/// Messages for a named port (IANA service name: ≤15 of `[-a-z0-9]`, one letter at least).
pub fn is_valid_port_name(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.len() > 15 {
        errors.push(max_length_error(15));
    }
    if text.is_empty()
        || !text
            .bytes()
            .all(|byte| is_lower_alphanumeric(byte) || byte == b'-')
    {
        errors
            .push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !text.bytes().any(|byte| byte.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".into());
    }
    if text.contains("--") {
        errors.push("must not contain consecutive hyphens".into());
    }
    if text.starts_with('-') || text.ends_with('-') {
        errors.push("must not begin or end with a hyphen".into());
    }
    errors
}

/// Messages for a port number (1..65535).
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Messages for an IP address (IPv4 or IPv6).
pub fn is_valid_ip(text: &str) -> Vec<String> {
    if text.parse::<core::net::IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()]
    }
}

/// Name rules per kind, with `generateName` prefixes allowed a trailing dash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

impl NameRule {
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label => is_dns1123_label(name),
            NameRule::Dns1035 => is_dns1035_label(name),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resource quantities.

/// A Kubernetes resource quantity, held exactly in nano-units (`1` is 10^9, `500m` is
/// 5×10^8). Values finer than a nano-unit round up to one, like Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    pub fn from_nanos(nanos: i128) -> Quantity {
        Quantity { nanos }
    }

    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Milli-units rounded up (Kubernetes' `MilliValue`): `1` → 1000, `100m` → 100.
    pub fn milli_value(self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Units rounded up (Kubernetes' `Value`): `1Gi` → 1073741824, `100m` → 1.
    pub fn value(self) -> i128 {
        ceil_div(self.nanos, NANOS_PER_UNIT)
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIX_ERROR: &str = "unable to parse quantity's suffix";
const QUANTITY_NUMERIC_ERROR: &str = "unable to parse numeric part of quantity";

/// Parses a quantity in any of Kubernetes' forms: decimal SI (`n u m "" k M G T P E`),
/// binary (`Ki Mi Gi Ti Pi Ei`) or decimal exponent (`1e3`, `5E-2`), with an optional
/// sign and fraction. Errors carry Kubernetes' messages.
pub fn parse_quantity(text: &str) -> Result<Quantity, String> {
    let bytes = text.as_bytes();
    let mut position = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            position += 1;
            true
        }
        Some(b'+') => {
            position += 1;
            false
        }
        Some(_) => false,
        None => return Err(QUANTITY_FORMAT_ERROR.into()),
    };
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut digits = 0;
    let mut seen_point = false;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_digit() {
            digits += 1;
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|value| value.checked_add(i128::from(byte - b'0')))
                .ok_or(QUANTITY_NUMERIC_ERROR)?;
            if seen_point {
                fraction_digits += 1;
            }
        } else if byte == b'.' && !seen_point {
            seen_point = true;
        } else if byte == b'.' {
            return Err(QUANTITY_FORMAT_ERROR.into());
        } else {
            break;
        }
        position += 1;
    }
    if digits == 0 {
        return Err(QUANTITY_FORMAT_ERROR.into());
    }
    // The suffix: letters from the set, then an optional sign and digits.
    let suffix = &text[position..];
    let letters_end = suffix
        .bytes()
        .position(|byte| !b"eEinumkKMGTP".contains(&byte))
        .unwrap_or(suffix.len());
    let rest = &suffix[letters_end..];
    let rest_digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if !rest_digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(QUANTITY_FORMAT_ERROR.into());
    }
    let (exponent10, power_of_1024): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        _ if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) => {
            let exponent: i32 = suffix[1..]
                .parse()
                .map_err(|_| QUANTITY_SUFFIX_ERROR.to_string())?;
            (exponent, 0)
        }
        _ => return Err(QUANTITY_SUFFIX_ERROR.into()),
    };
    // nanos = mantissa × 10^(exponent10 − fraction_digits + 9) × 1024^power.
    let scale = i64::from(exponent10) - i64::from(fraction_digits) + 9;
    let mut nanos = if scale >= 0 {
        let factor = u32::try_from(scale)
            .ok()
            .and_then(|scale| 10_i128.checked_pow(scale))
            .ok_or(QUANTITY_NUMERIC_ERROR)?;
        mantissa.checked_mul(factor).ok_or(QUANTITY_NUMERIC_ERROR)?
    } else {
        match u32::try_from(-scale)
            .ok()
            .and_then(|scale| 10_i128.checked_pow(scale))
        {
            Some(divisor) => ceil_div(mantissa, divisor),
            // Smaller than any representable fraction: rounds up to one nano-unit.
            None => i128::from(mantissa > 0),
        }
    };
    if power_of_1024 > 0 {
        let factor = 1024_i128.pow(power_of_1024);
        nanos = nanos.checked_mul(factor).ok_or(QUANTITY_NUMERIC_ERROR)?;
    }
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}

// ---------------------------------------------------------------------------------------
// Cron schedules (the standard 5-field syntax CronJobs use, with robfig/cron's messages).

struct CronField {
    minimum: i64,
    maximum: i64,
    names: &'static [&'static str],
}

const CRON_FIELDS: [CronField; 5] = [
    CronField {
        minimum: 0,
        maximum: 59,
        names: &[],
    },
    CronField {
        minimum: 0,
        maximum: 23,
        names: &[],
    },
    CronField {
        minimum: 1,
        maximum: 31,
        names: &[],
    },
    CronField {
        minimum: 1,
        maximum: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    CronField {
        minimum: 0,
        maximum: 6,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

fn cron_integer(text: &str) -> Result<i64, String> {
    let number: i64 = text.parse().map_err(|_| {
        format!(
            "failed to parse int from {text}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(text)
        )
    })?;
    if number < 0 {
        return Err(format!("negative number ({number}) not allowed: {text}"));
    }
    Ok(number)
}

fn cron_integer_or_name(text: &str, field: &CronField) -> Result<i64, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(position) = field.names.iter().position(|name| *name == lower) {
        // Month names count from 1, weekday names from 0 (the field minimum).
        return Ok(field.minimum + position as i64);
    }
    cron_integer(text)
}

fn cron_range(expression: &str, field: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expression.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (field.minimum, field.maximum)
    } else {
        let start = cron_integer_or_name(low_and_high[0], field)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => cron_integer_or_name(low_and_high[1], field)?,
            _ => return Err(format!("too many hyphens: {expression}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_integer(range_and_step[1])?;
            if single {
                end = field.maximum;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expression}")),
    };
    if start < field.minimum {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expression}",
            field.minimum
        ));
    }
    if end > field.maximum {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expression}",
            field.maximum
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expression}"
        ));
    }
    if step == 0 {
        return Err(format!(
            "step of range should be a positive number: {expression}"
        ));
    }
    Ok(())
}

/// Go's `time.ParseDuration` acceptance check, for `@every <duration>`.
fn parse_go_duration(text: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", go_quote(text));
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest
            .bytes()
            .position(|byte| !(byte.is_ascii_digit() || byte == b'.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .bytes()
            .position(|byte| byte.is_ascii_digit() || byte == b'.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(text)));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(text)
            ));
        }
        rest = &rest[unit_end..];
    }
    Ok(())
}

/// Checks a CronJob schedule like `cron.ParseStandard`: five fields (minute, hour, day of
/// month, month, day of week) or a descriptor (`@hourly`, `@every 5m`, …).
pub fn parse_cron_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec
            .split_once(' ')
            .map(|(_, rest)| rest.trim())
            .unwrap_or("");
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match descriptor.strip_prefix("every ") {
                Some(duration) => parse_go_duration(duration)
                    .map_err(|error| format!("failed to parse duration {spec}: {error}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS.iter()) {
        for expression in text.split(',') {
            cron_range(expression, field)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading JSON with type checks: every accessor returns `None` for a missing or `null`
// field and records a cause when the field has the wrong JSON type.

struct Checker {
    causes: Vec<Cause>,
}

impl Checker {
    fn new() -> Checker {
        Checker { causes: Vec::new() }
    }

    fn push(&mut self, cause: Cause) {
        self.causes.push(cause);
    }

    fn get<'a>(parent: &'a Value, name: &str) -> Option<&'a Value> {
        match parent.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    fn object<'a>(
        &mut self,
        parent: &'a Value,
        name: &str,
        path: &str,
    ) -> Option<&'a Map<String, Value>> {
        let value = Self::get(parent, name)?;
        match value.as_object() {
            Some(object) => Some(object),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "object",
                ));
                None
            }
        }
    }

    fn array<'a>(&mut self, parent: &'a Value, name: &str, path: &str) -> Option<&'a Vec<Value>> {
        let value = Self::get(parent, name)?;
        match value.as_array() {
            Some(items) => Some(items),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "array",
                ));
                None
            }
        }
    }

    fn string<'a>(&mut self, parent: &'a Value, name: &str, path: &str) -> Option<&'a str> {
        let value = Self::get(parent, name)?;
        match value.as_str() {
            Some(text) => Some(text),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "string",
                ));
                None
            }
        }
    }

    fn integer(&mut self, parent: &Value, name: &str, path: &str) -> Option<i64> {
        let value = Self::get(parent, name)?;
        match value.as_i64() {
            Some(number) => Some(number),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "integer",
                ));
                None
            }
        }
    }

    fn boolean(&mut self, parent: &Value, name: &str, path: &str) -> Option<bool> {
        let value = Self::get(parent, name)?;
        match value.as_bool() {
            Some(flag) => Some(flag),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "boolean",
                ));
                None
            }
        }
    }

    /// An array element that must be an object; records a cause otherwise.
    fn element<'a>(&mut self, item: &'a Value, path: &str) -> Option<&'a Value> {
        if item.is_object() {
            Some(item)
        } else {
            self.push(Cause::type_invalid(path, &show_value(item), "object"));
            None
        }
    }

    /// `ValidateNonnegativeField`.
    fn non_negative(&mut self, parent: &Value, name: &str, path: &str) -> Option<i64> {
        let value = self.integer(parent, name, path)?;
        if value < 0 {
            self.push(Cause::invalid(
                &child(path, name),
                &value.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        Some(value)
    }

    /// A map of strings (labels, annotations, selectors, data): values of another JSON
    /// type are recorded and skipped.
    fn string_map(
        &mut self,
        parent: &Value,
        name: &str,
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        let map = self.object(parent, name, path)?;
        let field = child(path, name);
        let mut result = BTreeMap::new();
        for (entry_key, entry_value) in map {
            match entry_value.as_str() {
                Some(text) => {
                    result.insert(entry_key.clone(), text.to_string());
                }
                None => self.push(Cause::type_invalid(
                    &key(&field, entry_key),
                    &show_value(entry_value),
                    "string",
                )),
            }
        }
        Some(result)
    }
}

static EMPTY_OBJECT: Value = Value::Null;

/// The object at `name`, or JSON `null` (which reads as an empty object) when absent or
/// of the wrong type (the type error is recorded).
fn object_or_empty<'a>(
    checker: &mut Checker,
    parent: &'a Value,
    name: &str,
    path: &str,
) -> &'a Value {
    match checker.object(parent, name, path) {
        Some(_) => parent.get(name).unwrap_or(&EMPTY_OBJECT),
        None => &EMPTY_OBJECT,
    }
}

// ---------------------------------------------------------------------------------------
// Object metadata.

/// Whether a kind lives in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Namespaced,
    Cluster,
}

fn scope_of(kind: &str) -> Scope {
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

fn name_rule_of(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; errors name the map.
fn validate_labels(checker: &mut Checker, labels: &BTreeMap<String, String>, path: &str) {
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
fn validate_annotations(checker: &mut Checker, annotations: &BTreeMap<String, String>, path: &str) {
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
fn effective_namespace<'a>(object: &'a Value, request_namespace: Option<&'a str>) -> &'a str {
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) if !namespace.is_empty() => namespace,
        _ => request_namespace.unwrap_or(""),
    }
}

fn validate_object_meta(
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

// ---------------------------------------------------------------------------------------
// Pod specs.

const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Which list a container sits in; init containers have extra rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerList {
    Regular,
    Init,
}

/// What the pod spec belongs to: a bare Pod gets the pod-only checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecOwner {
    Pod,
    Template,
}

/// `ValidatePortNumOrName` for an int-or-string port; a missing port reads as 0.
fn validate_port_number_or_name(checker: &mut Checker, parent: &Value, name: &str, path: &str) {
    let field = child(path, name);
    match Checker::get(parent, name) {
        None => checker.push(Cause::invalid(
            &field,
            "0",
            &inclusive_range_error(1, 65535),
        )),
        Some(Value::String(port_name)) => {
            for message in is_valid_port_name(port_name) {
                checker.push(Cause::invalid(&field, &go_quote(port_name), &message));
            }
        }
        Some(value) => match value.as_i64() {
            Some(number) => {
                for message in is_valid_port_num(number) {
                    checker.push(Cause::invalid(&field, &number.to_string(), &message));
                }
            }
            None => checker.push(Cause::type_invalid(
                &field,
                &show_value(value),
                "integer or string",
            )),
        },
    }
}

/// A port protocol: absent means the default (TCP); empty or unknown is refused.
fn validate_protocol(checker: &mut Checker, parent: &Value, path: &str) {
    if let Some(protocol) = checker.string(parent, "protocol", path) {
        let field = child(path, "protocol");
        if protocol.is_empty() {
            checker.push(Cause::required(&field, ""));
        } else if !PORT_PROTOCOLS.contains(&protocol) {
            checker.push(Cause::not_supported(
                &field,
                &go_quote(protocol),
                &PORT_PROTOCOLS,
            ));
        }
    }
}

fn validate_probe(checker: &mut Checker, probe: &Value, path: &str, success_must_be_one: bool) {
    let mut handlers = 0;
    for handler in ["exec", "httpGet", "tcpSocket", "grpc"] {
        let Some(_) = checker.object(probe, handler, path) else {
            continue;
        };
        let handler_path = child(path, handler);
        handlers += 1;
        if handlers > 1 {
            checker.push(Cause::forbidden(
                &handler_path,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        let body = &probe[handler];
        match handler {
            "exec" => {
                let command = checker.array(body, "command", &handler_path);
                if command.is_none_or_empty() {
                    checker.push(Cause::required(&child(&handler_path, "command"), ""));
                }
            }
            "httpGet" | "tcpSocket" => {
                validate_port_number_or_name(checker, body, "port", &handler_path);
            }
            _ => {
                let port = checker.integer(body, "port", &handler_path).unwrap_or(0);
                for message in is_valid_port_num(port) {
                    checker.push(Cause::invalid(
                        &child(&handler_path, "port"),
                        &port.to_string(),
                        &message,
                    ));
                }
            }
        }
    }
    if handlers == 0 {
        checker.push(Cause::required(path, "must specify a handler type"));
    }
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        checker.non_negative(probe, field, path);
    }
    if let Some(grace) = checker.integer(probe, "terminationGracePeriodSeconds", path) {
        if grace <= 0 {
            checker.push(Cause::invalid(
                &child(path, "terminationGracePeriodSeconds"),
                &grace.to_string(),
                "must be greater than 0",
            ));
        }
    }
    if success_must_be_one {
        if let Some(threshold) = checker.integer(probe, "successThreshold", path) {
            if threshold != 1 {
                checker.push(Cause::invalid(
                    &child(path, "successThreshold"),
                    &threshold.to_string(),
                    "must be 1",
                ));
            }
        }
    }
}

trait OptionalList {
    fn is_none_or_empty(&self) -> bool;
}

impl OptionalList for Option<&Vec<Value>> {
    fn is_none_or_empty(&self) -> bool {
        self.is_none_or(|items| items.is_empty())
    }
}

/// A quantity given as a JSON string or number, parsed; the cause is recorded on failure.
fn quantity_at(checker: &mut Checker, value: &Value, field: &str) -> Option<(Quantity, String)> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => {
            checker.push(Cause::type_invalid(field, &show_value(other), "string"));
            return None;
        }
    };
    match parse_quantity(&text) {
        Ok(quantity) => Some((quantity, text)),
        Err(message) => {
            checker.push(Cause::invalid(field, &go_quote(&text), &message));
            None
        }
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    name.contains('/')
        || matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
}

/// `ValidateResourceRequirements`: known names, non-negative, requests ≤ limits.
fn validate_resources(checker: &mut Checker, container: &Value, path: &str) {
    let resources = object_or_empty(checker, container, "resources", path);
    let resources_path = child(path, "resources");
    let mut limits: BTreeMap<String, (Quantity, String)> = BTreeMap::new();
    for list in ["limits", "requests"] {
        let Some(entries) = checker.object(resources, list, &resources_path) else {
            continue;
        };
        let list_path = child(&resources_path, list);
        for (resource_name, amount) in entries {
            let field = key(&list_path, resource_name);
            if !is_standard_container_resource(resource_name) {
                checker.push(Cause::invalid(
                    &field,
                    &go_quote(resource_name),
                    "must be a standard resource for containers",
                ));
                continue;
            }
            let Some((quantity, text)) = quantity_at(checker, amount, &field) else {
                continue;
            };
            if quantity.is_negative() {
                checker.push(Cause::invalid(
                    &field,
                    &go_quote(&text),
                    "must be greater than or equal to 0",
                ));
                continue;
            }
            if list == "limits" {
                limits.insert(resource_name.clone(), (quantity, text));
            } else if let Some((limit, limit_text)) = limits.get(resource_name) {
                if quantity > *limit {
                    checker.push(Cause::invalid(
                        &field,
                        &go_quote(&text),
                        &format!(
                            "must be less than or equal to {resource_name} limit of {limit_text}"
                        ),
                    ));
                }
            }
        }
    }
}

fn validate_container(
    checker: &mut Checker,
    container: &Value,
    path: &str,
    list: ContainerList,
    owner: SpecOwner,
    volumes: &BTreeSet<String>,
    container_names: &mut BTreeSet<String>,
) {
    let name = checker.string(container, "name", path).unwrap_or("");
    let name_path = child(path, "name");
    if name.is_empty() {
        checker.push(Cause::required(&name_path, ""));
    } else {
        for message in is_dns1123_label(name) {
            checker.push(Cause::invalid(&name_path, &go_quote(name), &message));
        }
        if !container_names.insert(name.to_string()) {
            checker.push(Cause::duplicate(&name_path, &go_quote(name)));
        }
    }
    let image = checker.string(container, "image", path).unwrap_or("");
    let image_path = child(path, "image");
    if image.is_empty() {
        checker.push(Cause::required(&image_path, ""));
    } else if owner == SpecOwner::Pod && image.trim() != image {
        checker.push(Cause::invalid(
            &image_path,
            &go_quote(image),
            "must not have leading or trailing whitespace",
        ));
    }

    // Ports.
    if let Some(ports) = checker.array(container, "ports", path) {
        let ports_path = child(path, "ports");
        let mut port_names = BTreeSet::new();
        for (position, port) in ports.iter().enumerate() {
            let port_path = index(&ports_path, position);
            let Some(port) = checker.element(port, &port_path) else {
                continue;
            };
            if let Some(port_name) = checker.string(port, "name", &port_path) {
                if !port_name.is_empty() {
                    let field = child(&port_path, "name");
                    let messages = is_valid_port_name(port_name);
                    if !messages.is_empty() {
                        for message in messages {
                            checker.push(Cause::invalid(&field, &go_quote(port_name), &message));
                        }
                    } else if !port_names.insert(port_name.to_string()) {
                        checker.push(Cause::duplicate(&field, &go_quote(port_name)));
                    }
                }
            }
            let container_port = checker
                .integer(port, "containerPort", &port_path)
                .unwrap_or(0);
            let field = child(&port_path, "containerPort");
            if container_port == 0 {
                checker.push(Cause::required(&field, ""));
            } else {
                for message in is_valid_port_num(container_port) {
                    checker.push(Cause::invalid(
                        &field,
                        &container_port.to_string(),
                        &message,
                    ));
                }
            }
            let host_port = checker.integer(port, "hostPort", &port_path).unwrap_or(0);
            if host_port != 0 {
                for message in is_valid_port_num(host_port) {
                    checker.push(Cause::invalid(
                        &child(&port_path, "hostPort"),
                        &host_port.to_string(),
                        &message,
                    ));
                }
            }
            validate_protocol(checker, port, &port_path);
        }
    }

    // Environment variables need a name.
    if let Some(environment) = checker.array(container, "env", path) {
        let env_path = child(path, "env");
        for (position, variable) in environment.iter().enumerate() {
            let variable_path = index(&env_path, position);
            let Some(variable) = checker.element(variable, &variable_path) else {
                continue;
            };
            if checker
                .string(variable, "name", &variable_path)
                .unwrap_or("")
                .is_empty()
            {
                checker.push(Cause::required(&child(&variable_path, "name"), ""));
            }
        }
    }

    // Volume mounts must name a volume of the pod and use distinct mount paths.
    if let Some(mounts) = checker.array(container, "volumeMounts", path) {
        let mounts_path = child(path, "volumeMounts");
        let mut mount_paths = BTreeSet::new();
        for (position, mount) in mounts.iter().enumerate() {
            let mount_path_field = index(&mounts_path, position);
            let Some(mount) = checker.element(mount, &mount_path_field) else {
                continue;
            };
            let volume = checker
                .string(mount, "name", &mount_path_field)
                .unwrap_or("");
            let name_field = child(&mount_path_field, "name");
            if volume.is_empty() {
                checker.push(Cause::required(&name_field, ""));
            }
            if !volumes.contains(volume) {
                checker.push(Cause::not_found(&name_field, &go_quote(volume)));
            }
            let mount_path = checker
                .string(mount, "mountPath", &mount_path_field)
                .unwrap_or("");
            let mount_field = child(&mount_path_field, "mountPath");
            if mount_path.is_empty() {
                checker.push(Cause::required(&mount_field, ""));
            }
            if !mount_paths.insert(mount_path.to_string()) {
                checker.push(Cause::invalid(
                    &mount_field,
                    &go_quote(mount_path),
                    "must be unique",
                ));
            }
        }
    }

    // Probes: an init container may have them only as a sidecar (restartPolicy Always).
    let sidecar = list == ContainerList::Init
        && checker.string(container, "restartPolicy", path) == Some("Always");
    for (probe_name, success_must_be_one) in [
        ("livenessProbe", true),
        ("readinessProbe", false),
        ("startupProbe", true),
    ] {
        let Some(_) = checker.object(container, probe_name, path) else {
            continue;
        };
        let probe_path = child(path, probe_name);
        if list == ContainerList::Init && !sidecar {
            checker.push(Cause::forbidden(
                &probe_path,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        validate_probe(
            checker,
            &container[probe_name],
            &probe_path,
            success_must_be_one,
        );
    }

    validate_resources(checker, container, path);
}

/// `ValidatePodSpec` for the rules keel supports; `path` is `spec` for a Pod and
/// `spec.template.spec` (etc.) for templates. `extra_volumes` are volume names provided
/// from elsewhere (a StatefulSet's volumeClaimTemplates).
fn validate_pod_spec(
    checker: &mut Checker,
    spec: &Value,
    path: &str,
    owner: SpecOwner,
    extra_volumes: &BTreeSet<String>,
) {
    // Volumes: unique DNS-label names and at most one source each. A volume without a
    // source is defaulted to emptyDir by Kubernetes, so it is accepted.
    let mut volumes = extra_volumes.clone();
    if let Some(items) = checker.array(spec, "volumes", path) {
        let volumes_path = child(path, "volumes");
        let mut own_volumes = BTreeSet::new();
        for (position, volume) in items.iter().enumerate() {
            let volume_path = index(&volumes_path, position);
            let Some(volume) = checker.element(volume, &volume_path) else {
                continue;
            };
            let name = checker.string(volume, "name", &volume_path).unwrap_or("");
            let name_path = child(&volume_path, "name");
            if name.is_empty() {
                checker.push(Cause::required(&name_path, ""));
            } else {
                for message in is_dns1123_label(name) {
                    checker.push(Cause::invalid(&name_path, &go_quote(name), &message));
                }
                if !own_volumes.insert(name.to_string()) {
                    checker.push(Cause::duplicate(&name_path, &go_quote(name)));
                }
                volumes.insert(name.to_string());
            }
            let sources: Vec<&String> = volume
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(field, value)| field.as_str() != "name" && !value.is_null())
                        .map(|(field, _)| field)
                        .collect()
                })
                .unwrap_or_default();
            for source in sources.iter().skip(1) {
                checker.push(Cause::forbidden(
                    &child(&volume_path, source),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }

    let mut container_names = BTreeSet::new();
    let containers = checker.array(spec, "containers", path);
    let containers_path = child(path, "containers");
    match containers {
        Some(items) if !items.is_empty() => {
            for (position, container) in items.iter().enumerate() {
                let container_path = index(&containers_path, position);
                let Some(container) = checker.element(container, &container_path) else {
                    continue;
                };
                validate_container(
                    checker,
                    container,
                    &container_path,
                    ContainerList::Regular,
                    owner,
                    &volumes,
                    &mut container_names,
                );
            }
        }
        _ => checker.push(Cause::required(&containers_path, "")),
    }
    if let Some(items) = checker.array(spec, "initContainers", path) {
        let init_path = child(path, "initContainers");
        for (position, container) in items.iter().enumerate() {
            let container_path = index(&init_path, position);
            let Some(container) = checker.element(container, &container_path) else {
                continue;
            };
            validate_container(
                checker,
                container,
                &container_path,
                ContainerList::Init,
                owner,
                &volumes,
                &mut container_names,
            );
        }
    }

    if let Some(policy) = checker.string(spec, "restartPolicy", path) {
        let field = child(path, "restartPolicy");
        if policy.is_empty() {
            checker.push(Cause::required(&field, ""));
        } else if !RESTART_POLICIES.contains(&policy) {
            checker.push(Cause::not_supported(
                &field,
                &go_quote(policy),
                &RESTART_POLICIES,
            ));
        }
    }

    if let Some(deadline) = checker.integer(spec, "activeDeadlineSeconds", path) {
        if !(1..=i64::from(i32::MAX)).contains(&deadline) {
            checker.push(Cause::invalid(
                &child(path, "activeDeadlineSeconds"),
                &deadline.to_string(),
                &inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }

    if let Some(node_selector) = checker.string_map(spec, "nodeSelector", path) {
        validate_labels(checker, &node_selector, &child(path, "nodeSelector"));
    }
    if let Some(account) = checker.string(spec, "serviceAccountName", path) {
        if !account.is_empty() {
            for message in is_dns1123_subdomain(account) {
                checker.push(Cause::invalid(
                    &child(path, "serviceAccountName"),
                    &go_quote(account),
                    &message,
                ));
            }
        }
    }
    if let Some(node_name) = checker.string(spec, "nodeName", path) {
        if !node_name.is_empty() {
            for message in is_dns1123_subdomain(node_name) {
                checker.push(Cause::invalid(
                    &child(path, "nodeName"),
                    &go_quote(node_name),
                    &message,
                ));
            }
        }
    }

    if let Some(tolerations) = checker.array(spec, "tolerations", path) {
        let tolerations_path = child(path, "tolerations");
        for (position, toleration) in tolerations.iter().enumerate() {
            let toleration_path = index(&tolerations_path, position);
            let Some(toleration) = checker.element(toleration, &toleration_path) else {
                continue;
            };
            let toleration_key = checker
                .string(toleration, "key", &toleration_path)
                .unwrap_or("");
            if !toleration_key.is_empty() {
                for message in is_qualified_name(toleration_key) {
                    checker.push(Cause::invalid(
                        &child(&toleration_path, "key"),
                        &go_quote(toleration_key),
                        &message,
                    ));
                }
            }
            let operator = checker
                .string(toleration, "operator", &toleration_path)
                .unwrap_or("");
            let value = checker
                .string(toleration, "value", &toleration_path)
                .unwrap_or("");
            match operator {
                "" | "Equal" => {
                    for message in is_label_value(value) {
                        checker.push(Cause::invalid(
                            &child(&toleration_path, "value"),
                            &go_quote(value),
                            &message,
                        ));
                    }
                }
                "Exists" => {
                    if !value.is_empty() {
                        checker.push(Cause::invalid(
                            &child(&toleration_path, "operator"),
                            &go_quote(value),
                            "value must be empty when `operator` is 'Exists'",
                        ));
                    }
                }
                other => checker.push(Cause::not_supported(
                    &child(&toleration_path, "operator"),
                    &go_quote(other),
                    &["Equal", "Exists"],
                )),
            }
            let effect = checker
                .string(toleration, "effect", &toleration_path)
                .unwrap_or("");
            if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
                checker.push(Cause::not_supported(
                    &child(&toleration_path, "effect"),
                    &go_quote(effect),
                    &TAINT_EFFECTS,
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pod templates and label selectors inside workloads.

/// `ValidateLabelSelector` on a `metav1.LabelSelector`: the JSON shape and each part.
fn validate_label_selector_json(checker: &mut Checker, selector: &Value, path: &str) {
    if let Some(labels) = checker.string_map(selector, "matchLabels", path) {
        validate_labels(checker, &labels, &child(path, "matchLabels"));
    }
    let Some(expressions) = checker.array(selector, "matchExpressions", path) else {
        return;
    };
    let expressions_path = child(path, "matchExpressions");
    for (position, expression) in expressions.iter().enumerate() {
        let expression_path = index(&expressions_path, position);
        let Some(expression) = checker.element(expression, &expression_path) else {
            continue;
        };
        let operator = checker
            .string(expression, "operator", &expression_path)
            .unwrap_or("");
        let values_field = child(&expression_path, "values");
        let mut values = Vec::new();
        if let Some(items) = checker.array(expression, "values", &expression_path) {
            for (value_position, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(text) => values.push(text.to_string()),
                    None => checker.push(Cause::type_invalid(
                        &index(&values_field, value_position),
                        &show_value(item),
                        "string",
                    )),
                }
            }
        }
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    checker.push(Cause::required(
                        &values_field,
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    checker.push(Cause::forbidden(
                        &values_field,
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => checker.push(Cause::invalid(
                &child(&expression_path, "operator"),
                &go_quote(other),
                "not a valid selector operator",
            )),
        }
        let expression_key = checker
            .string(expression, "key", &expression_path)
            .unwrap_or("");
        for message in is_qualified_name(expression_key) {
            checker.push(Cause::invalid(
                &child(&expression_path, "key"),
                &go_quote(expression_key),
                &message,
            ));
        }
        for (value_position, value) in values.iter().enumerate() {
            for message in is_label_value(value) {
                checker.push(Cause::invalid(
                    &index(&values_field, value_position),
                    &go_quote(value),
                    &message,
                ));
            }
        }
    }
}

/// A workload's `spec.selector`: required, valid and not empty. Returns the selector to
/// match the template with, when it converts.
fn validate_workload_selector(
    checker: &mut Checker,
    spec: &Value,
    path: &str,
    empty_message: Option<&str>,
    required: bool,
) -> Option<LabelSelector> {
    let field = child(path, "selector");
    let Some(_) = checker.object(spec, "selector", path) else {
        if required && Checker::get(spec, "selector").is_none() {
            checker.push(Cause::required(&field, ""));
        }
        return None;
    };
    let selector = &spec["selector"];
    validate_label_selector_json(checker, selector, &field);
    let is_empty = |name: &str| {
        selector.get(name).is_none_or(|value| match value {
            Value::Object(map) => map.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => value.is_null(),
        })
    };
    if let Some(message) = empty_message {
        if is_empty("matchLabels") && is_empty("matchExpressions") {
            checker.push(Cause::invalid(
                &field,
                &go_label_selector(selector),
                message,
            ));
        }
    }
    match label_selector_from_json(selector) {
        Ok(converted) => Some(converted),
        Err(_) => {
            checker.push(Cause::invalid(
                &field,
                &go_label_selector(selector),
                "invalid label selector",
            ));
            None
        }
    }
}

/// Where a pod template sits and what its owner allows.
struct TemplateRules<'a> {
    /// The restart policies the owner accepts (Always for controllers that keep pods
    /// running, OnFailure/Never for Jobs).
    restart_policies: &'a [&'a str],
    /// The message refusing `activeDeadlineSeconds`, for owners that do.
    active_deadline_forbidden: Option<&'a str>,
    /// Volume names provided besides the pod's own volumes.
    extra_volumes: BTreeSet<String>,
}

/// `ValidatePodTemplateSpec` plus the owner's rules: the selector must match the
/// template's labels; restart policy and deadline as the owner allows.
fn validate_pod_template(
    checker: &mut Checker,
    parent: &Value,
    path: &str,
    selector: Option<&LabelSelector>,
    rules: &TemplateRules<'_>,
) {
    let template = object_or_empty(checker, parent, "template", path);
    let template_path = child(path, "template");
    let metadata = object_or_empty(checker, template, "metadata", &template_path);
    let metadata_path = child(&template_path, "metadata");
    let labels_field = child(&metadata_path, "labels");
    let labels = checker.string_map(metadata, "labels", &metadata_path);
    if let Some(selector) = selector {
        if !selector.is_empty() {
            let label_set = labels.clone().unwrap_or_default();
            if !selector.matches(&label_set) {
                checker.push(Cause::invalid(
                    &labels_field,
                    &go_string_map(metadata.get("labels").and_then(Value::as_object)),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(labels) = &labels {
        validate_labels(checker, labels, &labels_field);
    }
    if let Some(annotations) = checker.string_map(metadata, "annotations", &metadata_path) {
        validate_annotations(checker, &annotations, &child(&metadata_path, "annotations"));
    }
    let spec = object_or_empty(checker, template, "spec", &template_path);
    let spec_path = child(&template_path, "spec");
    validate_pod_spec(
        checker,
        spec,
        &spec_path,
        SpecOwner::Template,
        &rules.extra_volumes,
    );

    let policy = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !rules.restart_policies.contains(&policy) {
        checker.push(Cause::not_supported(
            &child(&spec_path, "restartPolicy"),
            &go_quote(policy),
            rules.restart_policies,
        ));
    }
    if let Some(message) = rules.active_deadline_forbidden {
        if Checker::get(spec, "activeDeadlineSeconds").is_some() {
            checker.push(Cause::forbidden(
                &child(&spec_path, "activeDeadlineSeconds"),
                message,
            ));
        }
    }
}

fn controller_template_rules(owner: &str) -> TemplateRules<'static> {
    TemplateRules {
        restart_policies: &["Always"],
        active_deadline_forbidden: Some(match owner {
            "DaemonSet" => "activeDeadlineSeconds in DaemonSet is not Supported",
            "StatefulSet" => "activeDeadlineSeconds in StatefulSet is not Supported",
            _ => "activeDeadlineSeconds in ReplicaSet is not Supported",
        }),
        extra_volumes: BTreeSet::new(),
    }
}

/// An int-or-percent field of a rolling update (`maxSurge`, `maxUnavailable`); returns
/// whether it is zero.
fn validate_int_or_percent(checker: &mut Checker, parent: &Value, name: &str, path: &str) -> bool {
    let field = child(path, name);
    match Checker::get(parent, name) {
        None => false,
        Some(Value::String(text)) => {
            let digits = text.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                checker.push(Cause::invalid(
                    &field,
                    &go_quote(text),
                    &regex_error(PERCENT_MESSAGE, PERCENT_FORMAT, &["1%", "93%"]),
                ));
                return false;
            }
            let percent: u64 = digits.parse().unwrap_or(u64::MAX);
            if name == "maxUnavailable" && percent > 100 {
                checker.push(Cause::invalid(
                    &field,
                    &go_quote(text),
                    "must not be greater than 100%",
                ));
            }
            percent == 0
        }
        Some(value) => match value.as_i64() {
            Some(number) => {
                if number < 0 {
                    checker.push(Cause::invalid(
                        &field,
                        &number.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
                number == 0
            }
            None => {
                checker.push(Cause::type_invalid(
                    &field,
                    &show_value(value),
                    "integer or string",
                ));
                false
            }
        },
    }
}

// ---------------------------------------------------------------------------------------
// Kinds.

fn validate_deployment_like(checker: &mut Checker, object: &Value, kind: &str) {
    let spec = object_or_empty(checker, object, "spec", "");
    let path = "spec";
    if kind != "DaemonSet" {
        checker.non_negative(spec, "replicas", path);
    }
    let empty_message = match kind {
        "StatefulSet" => "empty selector is invalid for statefulset",
        "DaemonSet" => "empty selector is invalid for daemonset",
        // ReplicaSet reuses the Deployment text in Kubernetes.
        _ => "empty selector is invalid for deployment",
    };
    let selector = validate_workload_selector(checker, spec, path, Some(empty_message), true);
    let mut rules = controller_template_rules(kind);
    if kind == "StatefulSet" {
        // Pods of a StatefulSet mount their claims by the claim template's name.
        if let Some(claims) = checker.array(spec, "volumeClaimTemplates", path) {
            for claim in claims {
                if let Some(name) = claim.pointer("/metadata/name").and_then(Value::as_str) {
                    rules.extra_volumes.insert(name.to_string());
                }
            }
        }
    }
    validate_pod_template(checker, spec, path, selector.as_ref(), &rules);
    checker.non_negative(spec, "minReadySeconds", path);
    match kind {
        "Deployment" => {
            checker.non_negative(spec, "revisionHistoryLimit", path);
            checker.non_negative(spec, "progressDeadlineSeconds", path);
            let strategy = object_or_empty(checker, spec, "strategy", path);
            let strategy_path = "spec.strategy";
            let strategy_type = checker
                .string(strategy, "type", strategy_path)
                .unwrap_or("");
            match strategy_type {
                "" | "RollingUpdate" => {
                    if checker
                        .object(strategy, "rollingUpdate", strategy_path)
                        .is_some()
                    {
                        let rolling = &strategy["rollingUpdate"];
                        let rolling_path = "spec.strategy.rollingUpdate";
                        let unavailable_zero = validate_int_or_percent(
                            checker,
                            rolling,
                            "maxUnavailable",
                            rolling_path,
                        );
                        let surge_zero =
                            validate_int_or_percent(checker, rolling, "maxSurge", rolling_path);
                        if unavailable_zero && surge_zero {
                            checker.push(Cause::invalid(
                                "spec.strategy.rollingUpdate.maxUnavailable",
                                &show_value(&rolling["maxUnavailable"]),
                                "may not be 0 when `maxSurge` is 0",
                            ));
                        }
                    }
                }
                "Recreate" => {
                    if Checker::get(strategy, "rollingUpdate").is_some() {
                        checker.push(Cause::forbidden(
                            "spec.strategy.rollingUpdate",
                            "may not be specified when strategy `type` is 'Recreate'",
                        ));
                    }
                }
                other => checker.push(Cause::not_supported(
                    "spec.strategy.type",
                    &go_quote(other),
                    &["Recreate", "RollingUpdate"],
                )),
            }
        }
        "StatefulSet" => {
            if let Some(policy) = checker.string(spec, "podManagementPolicy", path) {
                if !matches!(policy, "OrderedReady" | "Parallel") {
                    checker.push(Cause::not_supported(
                        "spec.podManagementPolicy",
                        &go_quote(policy),
                        &["OrderedReady", "Parallel"],
                    ));
                }
            }
            checker.non_negative(spec, "revisionHistoryLimit", path);
            validate_update_strategy_type(checker, spec, &["RollingUpdate", "OnDelete"]);
        }
        "DaemonSet" => {
            checker.non_negative(spec, "revisionHistoryLimit", path);
            validate_update_strategy_type(checker, spec, &["RollingUpdate", "OnDelete"]);
        }
        _ => {}
    }
}

fn validate_update_strategy_type(checker: &mut Checker, spec: &Value, supported: &[&str]) {
    let strategy = object_or_empty(checker, spec, "updateStrategy", "spec");
    if let Some(strategy_type) = checker.string(strategy, "type", "spec.updateStrategy") {
        if !supported.contains(&strategy_type) {
            checker.push(Cause::not_supported(
                "spec.updateStrategy.type",
                &go_quote(strategy_type),
                supported,
            ));
        }
    }
}

/// `validateJobSpec` at `path` (`spec`, or `spec.jobTemplate.spec` inside a CronJob).
fn validate_job_spec(checker: &mut Checker, spec: &Value, path: &str) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        checker.non_negative(spec, field, path);
    }
    if let Some(mode) = checker.string(spec, "completionMode", path) {
        if !matches!(mode, "NonIndexed" | "Indexed") {
            checker.push(Cause::not_supported(
                &child(path, "completionMode"),
                &go_quote(mode),
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    // Kubernetes generates the selector (controller-uid) unless manualSelector is set, so
    // an absent selector is not an error here; a given one must match the template.
    let selector = validate_workload_selector(checker, spec, path, None, false);
    let rules = TemplateRules {
        restart_policies: &["OnFailure", "Never"],
        active_deadline_forbidden: None,
        extra_volumes: BTreeSet::new(),
    };
    validate_pod_template(checker, spec, path, selector.as_ref(), &rules);
}

fn validate_job(checker: &mut Checker, object: &Value) {
    let spec = object_or_empty(checker, object, "spec", "");
    validate_job_spec(checker, spec, "spec");
}

fn validate_cron_job(checker: &mut Checker, object: &Value) {
    if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
        // Job names get an 11-character suffix and must stay DNS-1035 labels.
        if name.len() > 52 {
            checker.push(Cause::invalid(
                "metadata.name",
                &go_quote(name),
                "must be no more than 52 characters",
            ));
        }
    }
    let spec = object_or_empty(checker, object, "spec", "");
    let path = "spec";
    let schedule = checker.string(spec, "schedule", path).unwrap_or("");
    if schedule.is_empty() {
        checker.push(Cause::required("spec.schedule", ""));
    } else {
        if let Err(message) = parse_cron_schedule(schedule) {
            checker.push(Cause::invalid(
                "spec.schedule",
                &go_quote(schedule),
                &message,
            ));
        }
        if schedule.contains("TZ") {
            checker.push(Cause::invalid(
                "spec.schedule",
                &go_quote(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    checker.non_negative(spec, "startingDeadlineSeconds", path);
    if let Some(policy) = checker.string(spec, "concurrencyPolicy", path) {
        if policy.is_empty() {
            checker.push(Cause::required("spec.concurrencyPolicy", ""));
        } else if !matches!(policy, "Allow" | "Forbid" | "Replace") {
            checker.push(Cause::not_supported(
                "spec.concurrencyPolicy",
                &go_quote(policy),
                &["Allow", "Forbid", "Replace"],
            ));
        }
    }
    checker.non_negative(spec, "successfulJobsHistoryLimit", path);
    checker.non_negative(spec, "failedJobsHistoryLimit", path);
    let job_template = object_or_empty(checker, spec, "jobTemplate", path);
    let job_spec = object_or_empty(checker, job_template, "spec", "spec.jobTemplate");
    validate_job_spec(checker, job_spec, "spec.jobTemplate.spec");
    if Checker::get(job_spec, "selector").is_some() {
        checker.push(Cause::invalid(
            "spec.jobTemplate.spec.selector",
            &go_label_selector(&job_spec["selector"]),
            "`selector` will be auto-generated",
        ));
    }
}

/// Go's `%#v` of the `core.ServicePort` key Kubernetes reports for duplicate ports.
fn go_service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    )
}

fn validate_service(checker: &mut Checker, object: &Value) {
    let spec = object_or_empty(checker, object, "spec", "");
    let path = "spec";
    let service_type = checker.string(spec, "type", path).unwrap_or("ClusterIP");
    const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !SERVICE_TYPES.contains(&service_type) {
        checker.push(Cause::not_supported(
            "spec.type",
            &go_quote(service_type),
            &SERVICE_TYPES,
        ));
    }
    let cluster_ip = checker.string(spec, "clusterIP", path).unwrap_or("");
    let headless = cluster_ip == "None";
    if service_type == "ExternalName" {
        if !cluster_ip.is_empty() {
            checker.push(Cause::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
        let external_name = checker.string(spec, "externalName", path).unwrap_or("");
        if external_name.is_empty() {
            checker.push(Cause::required("spec.externalName", ""));
        } else {
            let clean = external_name.strip_suffix('.').unwrap_or(external_name);
            for message in is_dns1123_subdomain(clean) {
                checker.push(Cause::invalid(
                    "spec.externalName",
                    &go_quote(clean),
                    &message,
                ));
            }
        }
    } else if !cluster_ip.is_empty() && !headless {
        for message in is_valid_ip(cluster_ip) {
            checker.push(Cause::invalid(
                "spec.clusterIPs[0]",
                &go_quote(cluster_ip),
                &message,
            ));
        }
    }
    if headless && matches!(service_type, "NodePort" | "LoadBalancer") {
        checker.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &go_quote(cluster_ip),
            &format!("may not be set to 'None' for {service_type} services"),
        ));
    }

    let ports = checker.array(spec, "ports", path);
    let port_count = ports.map_or(0, Vec::len);
    if port_count == 0 && !headless && service_type != "ExternalName" {
        checker.push(Cause::required("spec.ports", ""));
    }
    if let Some(ports) = ports {
        let require_name = ports.len() > 1;
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (position, port) in ports.iter().enumerate() {
            let port_path = index("spec.ports", position);
            let Some(port) = checker.element(port, &port_path) else {
                continue;
            };
            let name = checker.string(port, "name", &port_path).unwrap_or("");
            let name_field = child(&port_path, "name");
            if require_name && name.is_empty() {
                checker.push(Cause::required(&name_field, ""));
            } else if !name.is_empty() {
                for message in is_dns1123_label(name) {
                    checker.push(Cause::invalid(&name_field, &go_quote(name), &message));
                }
                if !names.insert(name.to_string()) {
                    checker.push(Cause::duplicate(&name_field, &go_quote(name)));
                }
            }
            let number = checker.integer(port, "port", &port_path).unwrap_or(0);
            for message in is_valid_port_num(number) {
                checker.push(Cause::invalid(
                    &child(&port_path, "port"),
                    &number.to_string(),
                    &message,
                ));
            }
            validate_protocol(checker, port, &port_path);
            // A missing or zero targetPort is defaulted to the port.
            let target_unset = match Checker::get(port, "targetPort") {
                None => true,
                Some(value) => value.as_i64() == Some(0),
            };
            if !target_unset {
                validate_port_number_or_name(checker, port, "targetPort", &port_path);
            }
            let node_port = checker.integer(port, "nodePort", &port_path).unwrap_or(0);
            if node_port != 0 && service_type == "ClusterIP" {
                checker.push(Cause::forbidden(
                    &child(&port_path, "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            if !keys.insert((protocol.to_string(), number)) {
                checker.push(Cause::duplicate(
                    &port_path,
                    &go_service_port_key(protocol, number),
                ));
            }
        }
    }
    if let Some(selector) = checker.string_map(spec, "selector", path) {
        validate_labels(checker, &selector, "spec.selector");
    }
    if let Some(affinity) = checker.string(spec, "sessionAffinity", path) {
        if !matches!(affinity, "ClientIP" | "None") {
            checker.push(Cause::not_supported(
                "spec.sessionAffinity",
                &go_quote(affinity),
                &["ClientIP", "None"],
            ));
        }
    }
}

/// Data keys and sizes shared by ConfigMaps and Secrets. Secret values are base64, so
/// their decoded size is estimated from the text.
fn validate_config_data(
    checker: &mut Checker,
    object: &Value,
    fields: &[&str],
    base64: bool,
) -> usize {
    let mut total_bytes = 0;
    let mut seen = BTreeSet::new();
    for field in fields {
        let Some(data) = checker.string_map(object, field, "") else {
            continue;
        };
        // Secret stringData merges into data, so Kubernetes reports it under data.
        let reported = if *field == "stringData" {
            "data"
        } else {
            field
        };
        for (data_key, data_value) in &data {
            let key_field = key(reported, data_key);
            for message in is_config_map_key(data_key) {
                checker.push(Cause::invalid(&key_field, &go_quote(data_key), &message));
            }
            if !seen.insert(data_key.clone()) && *field == "binaryData" {
                checker.push(Cause::invalid(
                    &key(reported, data_key),
                    &go_quote(data_key),
                    "duplicate of key present in data",
                ));
            }
            total_bytes += if base64 && *field != "stringData" {
                data_value.len() / 4 * 3
            } else {
                data_value.len()
            };
        }
    }
    total_bytes
}

fn validate_config_map(checker: &mut Checker, object: &Value) {
    let total = validate_config_data(checker, object, &["data", "binaryData"], false);
    if total > CONFIG_DATA_MAX_BYTES {
        checker.push(Cause::too_long("[]", CONFIG_DATA_MAX_BYTES));
    }
    checker.boolean(object, "immutable", "");
}

fn validate_secret(checker: &mut Checker, object: &Value) {
    let total = validate_config_data(checker, object, &["data", "stringData"], true);
    if total > CONFIG_DATA_MAX_BYTES {
        checker.push(Cause::too_long("data", CONFIG_DATA_MAX_BYTES));
    }
    checker.boolean(object, "immutable", "");
    let has_key = |name: &str| {
        ["data", "stringData"]
            .iter()
            .any(|field| object.get(field).and_then(|data| data.get(name)).is_some())
    };
    let secret_type = checker.string(object, "type", "").unwrap_or("Opaque");
    let required_keys: &[&str] = match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    };
    for required in required_keys {
        if !has_key(required) {
            checker.push(Cause::required(&key("data", required), ""));
        }
    }
    if secret_type == "kubernetes.io/basic-auth" && !has_key("username") && !has_key("password") {
        checker.push(Cause::required("data[username]", ""));
        checker.push(Cause::required("data[password]", ""));
    }
    if secret_type == "kubernetes.io/service-account-token" {
        let account = object
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if account.is_empty() {
            checker.push(Cause::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
    }
}

fn validate_node(checker: &mut Checker, object: &Value) {
    let spec = object_or_empty(checker, object, "spec", "");
    checker.boolean(spec, "unschedulable", "spec");
    let Some(taints) = checker.array(spec, "taints", "spec") else {
        return;
    };
    let mut unique = BTreeSet::new();
    for (position, taint) in taints.iter().enumerate() {
        let taint_path = index("spec.taints", position);
        let Some(taint) = checker.element(taint, &taint_path) else {
            continue;
        };
        let taint_key = checker.string(taint, "key", &taint_path).unwrap_or("");
        for message in is_qualified_name(taint_key) {
            checker.push(Cause::invalid(
                &child(&taint_path, "key"),
                &go_quote(taint_key),
                &message,
            ));
        }
        let value = checker.string(taint, "value", &taint_path).unwrap_or("");
        let value_errors = is_label_value(value);
        if !value_errors.is_empty() {
            checker.push(Cause::invalid(
                &child(&taint_path, "value"),
                &go_quote(value),
                &value_errors.join(";"),
            ));
        }
        let effect = checker.string(taint, "effect", &taint_path).unwrap_or("");
        let effect_field = child(&taint_path, "effect");
        if effect.is_empty() {
            checker.push(Cause::required(&effect_field, ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            checker.push(Cause::not_supported(
                &effect_field,
                &go_quote(effect),
                &TAINT_EFFECTS,
            ));
        }
        if !unique.insert((taint_key.to_string(), effect.to_string())) {
            checker.push(Cause {
                reason: REASON_DUPLICATE.into(),
                message: format!(
                    "Duplicate value: {}: taints must be unique by key and effect pair",
                    show_value(&Value::Object(
                        taint.as_object().cloned().unwrap_or_default()
                    ))
                ),
                field: taint_path.clone(),
            });
        }
    }
}

fn validate_event(checker: &mut Checker, object: &Value, namespace: &str) {
    let involved = object_or_empty(checker, object, "involvedObject", "");
    let involved_namespace = checker
        .string(involved, "namespace", "involvedObject")
        .unwrap_or("");
    let has_event_time = Checker::get(object, "eventTime").is_some();
    if !has_event_time {
        let mismatch = if involved_namespace.is_empty() {
            // Cluster-scoped subjects: the event lives in no namespace or in default.
            !namespace.is_empty() && namespace != "default"
        } else {
            namespace != involved_namespace
        };
        if mismatch {
            checker.push(Cause::invalid(
                "involvedObject.namespace",
                &go_quote(involved_namespace),
                "does not match event.namespace",
            ));
        }
    }
    checker.integer(object, "count", "");
}

fn validate_ip_field(checker: &mut Checker, parent: &Value, name: &str, path: &str) {
    let field = child(path, name);
    let text = checker.string(parent, name, path).unwrap_or("");
    for message in is_valid_ip(text) {
        checker.push(Cause::invalid(&field, &go_quote(text), &message));
    }
    if let Ok(address) = text.parse::<core::net::IpAddr>() {
        if address.is_unspecified() {
            checker.push(Cause::invalid(
                &field,
                &go_quote(text),
                "may not be unspecified (0.0.0.0)",
            ));
        } else if address.is_loopback() {
            checker.push(Cause::invalid(
                &field,
                &go_quote(text),
                "may not be in the loopback range (127.0.0.0/8, ::1/128)",
            ));
        }
    }
}

fn validate_endpoint_ports(checker: &mut Checker, parent: &Value, path: &str, port_optional: bool) {
    let Some(ports) = checker.array(parent, "ports", path) else {
        return;
    };
    let ports_path = child(path, "ports");
    let require_name = ports.len() > 1 && !port_optional;
    let mut names = BTreeSet::new();
    for (position, port) in ports.iter().enumerate() {
        let port_path = index(&ports_path, position);
        let Some(port) = checker.element(port, &port_path) else {
            continue;
        };
        let name = checker.string(port, "name", &port_path).unwrap_or("");
        let name_field = child(&port_path, "name");
        if require_name && name.is_empty() {
            checker.push(Cause::required(&name_field, ""));
        } else if !name.is_empty() {
            for message in is_dns1123_label(name) {
                checker.push(Cause::invalid(&name_field, &go_quote(name), &message));
            }
            if !names.insert(name.to_string()) {
                checker.push(Cause::duplicate(&name_field, &go_quote(name)));
            }
        }
        let number = checker.integer(port, "port", &port_path);
        if let Some(number) = number.or(if port_optional { None } else { Some(0) }) {
            for message in is_valid_port_num(number) {
                checker.push(Cause::invalid(
                    &child(&port_path, "port"),
                    &number.to_string(),
                    &message,
                ));
            }
        }
        validate_protocol(checker, port, &port_path);
    }
}

fn validate_endpoints(checker: &mut Checker, object: &Value) {
    let Some(subsets) = checker.array(object, "subsets", "") else {
        return;
    };
    for (position, subset) in subsets.iter().enumerate() {
        let subset_path = index("subsets", position);
        let Some(subset) = checker.element(subset, &subset_path) else {
            continue;
        };
        let addresses = checker.array(subset, "addresses", &subset_path);
        let not_ready = checker.array(subset, "notReadyAddresses", &subset_path);
        if addresses.is_none_or_empty() && not_ready.is_none_or_empty() {
            checker.push(Cause::required(
                &subset_path,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (list_name, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            let list_path = child(&subset_path, list_name);
            for (address_position, address) in list.into_iter().flatten().enumerate() {
                let address_path = index(&list_path, address_position);
                let Some(address) = checker.element(address, &address_path) else {
                    continue;
                };
                validate_ip_field(checker, address, "ip", &address_path);
            }
        }
        validate_endpoint_ports(checker, subset, &subset_path, false);
    }
}

fn validate_endpoint_slice(checker: &mut Checker, object: &Value) {
    const ADDRESS_TYPES: [&str; 3] = ["FQDN", "IPv4", "IPv6"];
    let address_type = checker.string(object, "addressType", "").unwrap_or("");
    if address_type.is_empty() {
        checker.push(Cause::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        checker.push(Cause::not_supported(
            "addressType",
            &go_quote(address_type),
            &ADDRESS_TYPES,
        ));
    }
    if let Some(endpoints) = checker.array(object, "endpoints", "") {
        for (position, endpoint) in endpoints.iter().enumerate() {
            let endpoint_path = index("endpoints", position);
            let Some(endpoint) = checker.element(endpoint, &endpoint_path) else {
                continue;
            };
            let addresses_path = child(&endpoint_path, "addresses");
            let addresses = checker.array(endpoint, "addresses", &endpoint_path);
            match addresses {
                Some(items) if !items.is_empty() => {
                    if items.len() > 100 {
                        checker.push(Cause {
                            reason: "FieldValueTooMany".into(),
                            message: format!(
                                "Too many: {}: must have at most 100 items",
                                items.len()
                            ),
                            field: addresses_path.clone(),
                        });
                    }
                    for (address_position, address) in items.iter().enumerate() {
                        let field = index(&addresses_path, address_position);
                        let Some(text) = address.as_str() else {
                            checker.push(Cause::type_invalid(
                                &field,
                                &show_value(address),
                                "string",
                            ));
                            continue;
                        };
                        let message = match address_type {
                            "IPv4" if text.parse::<core::net::Ipv4Addr>().is_err() => {
                                Some("must be a valid IPv4 address".to_string())
                            }
                            "IPv6" if text.parse::<core::net::Ipv6Addr>().is_err() => {
                                Some("must be a valid IPv6 address".to_string())
                            }
                            "FQDN" => {
                                let clean = text.strip_suffix('.').unwrap_or(text);
                                let errors = is_dns1123_subdomain(clean);
                                if !errors.is_empty() {
                                    Some(errors.join(","))
                                } else if clean.split('.').count() < 2 {
                                    Some("should be a domain with at least two segments separated by dots".into())
                                } else {
                                    None
                                }
                            }
                            _ => None,
                        };
                        if let Some(message) = message {
                            checker.push(Cause::invalid(&field, &go_quote(text), &message));
                        }
                    }
                }
                _ => checker.push(Cause::required(
                    &addresses_path,
                    "must contain at least 1 address",
                )),
            }
        }
    }
    validate_endpoint_ports(checker, object, "", true);
}

fn validate_lease(checker: &mut Checker, object: &Value) {
    let spec = object_or_empty(checker, object, "spec", "");
    if let Some(duration) = checker.integer(spec, "leaseDurationSeconds", "spec") {
        if duration <= 0 {
            checker.push(Cause::invalid(
                "spec.leaseDurationSeconds",
                &duration.to_string(),
                "must be greater than 0",
            ));
        }
    }
    checker.non_negative(spec, "leaseTransitions", "spec");
    checker.string(spec, "holderIdentity", "spec");
}

/// `ValidateLimitRange`, the parts admission relies on: a supported type per item,
/// quantities that parse, and min ≤ default request ≤ default ≤ max per resource.
fn validate_limit_range(checker: &mut Checker, object: &Value) {
    const TYPES: [&str; 3] = ["Container", "PersistentVolumeClaim", "Pod"];
    let Some(items) = object.pointer("/spec/limits").and_then(Value::as_array) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("spec.limits[{i}]");
        match item.get("type").and_then(Value::as_str) {
            Some(kind) if TYPES.contains(&kind) => {}
            Some(kind) => checker.push(Cause::not_supported(
                &format!("{at}.type"),
                &go_quote(kind),
                &TYPES,
            )),
            None => checker.push(Cause::required(&format!("{at}.type"), "")),
        }
        let mut bounds: BTreeMap<&str, BTreeMap<String, (Quantity, String)>> = BTreeMap::new();
        for field in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            let Some(map) = item.get(field).and_then(Value::as_object) else {
                continue;
            };
            for (resource, quantity) in map {
                let path = format!("{at}.{field}[{resource}]");
                if let Some(parsed) = quantity_at(checker, quantity, &path) {
                    bounds
                        .entry(field)
                        .or_default()
                        .insert(resource.clone(), parsed);
                }
            }
        }
        let get = |field: &str, resource: &str| bounds.get(field).and_then(|m| m.get(resource));
        let resources: BTreeSet<String> = bounds.values().flat_map(|m| m.keys().cloned()).collect();
        for resource in resources {
            // (field reported, low, high, message words) in Kubernetes' order.
            let rules = [
                ("min", "min", "max", "min value", "max value"),
                (
                    "defaultRequest",
                    "min",
                    "defaultRequest",
                    "min value",
                    "default request value",
                ),
                (
                    "defaultRequest",
                    "defaultRequest",
                    "max",
                    "default request value",
                    "max value",
                ),
                (
                    "defaultRequest",
                    "defaultRequest",
                    "default",
                    "default request value",
                    "default limit value",
                ),
                ("default", "min", "default", "min value", "default value"),
                ("default", "default", "max", "default value", "max value"),
            ];
            for (reported, low, high, low_words, high_words) in rules {
                if let (Some((l, l_text)), Some((h, h_text))) =
                    (get(low, &resource), get(high, &resource))
                {
                    if l > h {
                        let shown = if reported == low { l_text } else { h_text };
                        checker.push(Cause::invalid(
                            &format!("{at}.{reported}[{resource}]"),
                            &go_quote(shown),
                            &format!("{low_words} {l_text} is greater than {high_words} {h_text}"),
                        ));
                    }
                }
            }
        }
    }
}

fn validate_priority_class(checker: &mut Checker, object: &Value) {
    let value = checker.integer(object, "value", "").unwrap_or(0);
    if value < i64::from(i32::MIN) || value > i64::from(i32::MAX) {
        checker.push(Cause::invalid(
            "value",
            &value.to_string(),
            &inclusive_range_error(i64::from(i32::MIN), i64::from(i32::MAX)),
        ));
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.starts_with("system-") {
        let known = match name {
            "system-cluster-critical" => Some(2_000_000_000),
            "system-node-critical" => Some(2_000_001_000),
            _ => None,
        };
        let problem = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some(expected) if expected != value => {
                Some(format!("value of {name} PriorityClass must be {expected}"))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            checker.push(Cause::forbidden(
                "metadata.name",
                &format!(
                    "priority class names with 'system-' prefix are reserved for system use only. error: {problem}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        checker.push(Cause::forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(policy) = checker.string(object, "preemptionPolicy", "") {
        if !matches!(policy, "PreemptLowerPriority" | "Never") {
            checker.push(Cause::not_supported(
                "preemptionPolicy",
                &go_quote(policy),
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    checker.boolean(object, "globalDefault", "");
}

/// Validates an object of `kind` (`"Pod"`, `"Deployment"`, …) for creation, as the API
/// server would after defaulting. `namespace` is the request's namespace (`None` for
/// cluster-scoped requests); a namespaced object's own `metadata.namespace` must agree
/// with it. Kinds without specific rules get metadata validation only.
pub fn validate(kind: &str, object: &Value, namespace: Option<&str>) -> Vec<Cause> {
    let mut checker = Checker::new();
    if !object.is_object() {
        checker.push(Cause::type_invalid("", &show_value(object), "object"));
        return checker.causes;
    }
    let scope = scope_of(kind);
    validate_object_meta(&mut checker, object, name_rule_of(kind), scope, namespace);
    match kind {
        "Pod" => {
            let spec = object_or_empty(&mut checker, object, "spec", "");
            validate_pod_spec(&mut checker, spec, "spec", SpecOwner::Pod, &BTreeSet::new());
        }
        "PodTemplate" => {
            let rules = TemplateRules {
                restart_policies: &RESTART_POLICIES,
                active_deadline_forbidden: None,
                extra_volumes: BTreeSet::new(),
            };
            validate_pod_template(&mut checker, object, "", None, &rules);
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            validate_deployment_like(&mut checker, object, kind);
        }
        "Job" => validate_job(&mut checker, object),
        "CronJob" => validate_cron_job(&mut checker, object),
        "Service" => validate_service(&mut checker, object),
        "ConfigMap" => validate_config_map(&mut checker, object),
        "Secret" => validate_secret(&mut checker, object),
        "Node" => validate_node(&mut checker, object),
        "Event" => {
            let event_namespace = effective_namespace(object, namespace);
            validate_event(&mut checker, object, event_namespace);
        }
        "Endpoints" => validate_endpoints(&mut checker, object),
        "EndpointSlice" => validate_endpoint_slice(&mut checker, object),
        "Lease" => validate_lease(&mut checker, object),
        "PriorityClass" => validate_priority_class(&mut checker, object),
        "LimitRange" => validate_limit_range(&mut checker, object),
        // Namespace, ServiceAccount and unknown kinds: metadata only.
        _ => {}
    }
    checker.causes
}

// ---------------------------------------------------------------------------------------
// Updates.

const FIELD_IMMUTABLE: &str = "field is immutable";

/// The exact first line of Kubernetes' refusal of a pod spec change.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

const STATEFULSET_UPDATE_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Drops `null`s, empty arrays and empty objects, recursively: Kubernetes compares with
/// semantic equality, where a nil and an empty list or map are the same.
fn normalize(value: &Value) -> Value {
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

fn semantically_equal(left: Option<&Value>, right: Option<&Value>) -> bool {
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
fn json_diff(old: &Value, new: &Value, path: &str, lines: &mut Vec<String>) {
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

fn validate_metadata_update(checker: &mut Checker, old: &Value, new: &Value) {
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
fn go_time(text: &str) -> String {
    match text.strip_suffix('Z') {
        Some(stamp) if stamp.contains('T') => format!("{} +0000 UTC", stamp.replacen('T', " ", 1)),
        _ => text.to_string(),
    }
}

fn validate_pod_update(checker: &mut Checker, old: &Value, new: &Value) {
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

fn validate_selector_immutable(checker: &mut Checker, old: &Value, new: &Value) {
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

fn validate_stateful_set_update(checker: &mut Checker, old: &Value, new: &Value) {
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

fn validate_immutable_flag(checker: &mut Checker, old: &Value, new: &Value, fields: &[&str]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expected causes as (field, message) pairs.
    type Expected<'a> = Vec<(&'a str, &'a str)>;
    /// A JSON pointer (or a kind), a value (or an object) and the causes it must yield.
    type Case<'a> = (&'a str, Value, Expected<'a>);

    /// Sets the value at a JSON pointer, creating objects on the way; `null` removes it.
    fn set(object: &mut Value, pointer: &str, value: Value) {
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        let (last, parents) = parts.split_last().expect("pointer has a part");
        let mut current = object;
        for part in parents {
            current = match current {
                Value::Array(items) => &mut items[part.parse::<usize>().expect("index")],
                other => other
                    .as_object_mut()
                    .expect("object on the way")
                    .entry(part.to_string())
                    .or_insert_with(|| json!({})),
            };
        }
        match current {
            Value::Array(items) => {
                let position = last.parse::<usize>().expect("index");
                if position == items.len() {
                    items.push(value);
                } else {
                    items[position] = value;
                }
            }
            other => {
                let fields = other.as_object_mut().expect("object at the end");
                if value.is_null() {
                    fields.remove(*last);
                } else {
                    fields.insert(last.to_string(), value);
                }
            }
        }
    }

    fn pairs(causes: &[Cause]) -> Vec<(String, String)> {
        causes
            .iter()
            .map(|cause| (cause.field.clone(), cause.message.clone()))
            .collect()
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(field, message)| (field.to_string(), message.to_string()))
            .collect()
    }

    /// Runs a golden table: each mutation of `base` must give exactly `expected`.
    fn check_mutations(kind: &str, base: &Value, table: &[Case<'_>]) {
        assert_eq!(
            pairs(&validate(kind, base, Some("default"))),
            owned(&[]),
            "{kind} base"
        );
        for (pointer, value, expected) in table {
            let mut object = base.clone();
            set(&mut object, pointer, value.clone());
            let causes = validate(kind, &object, Some("default"));
            assert_eq!(
                pairs(&causes),
                owned(expected),
                "{kind} with {pointer} = {value}"
            );
        }
    }

    const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const DNS1035_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const LABEL_VALUE_MESSAGE_FULL: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const NAME_PART_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"}
                            },
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5}
                        }]
                    }
                }
            }
        })
    }

    fn service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 9090}
                ]
            }
        })
    }

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {
                "backoffLimit": 4,
                "completions": 1,
                "parallelism": 1,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "pi",
                            "image": "perl:5.34",
                            "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]
                        }]
                    }
                }
            }
        })
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "app",
                "namespace": "default",
                "labels": {"app": "app"},
                "annotations": {"example.com/owner": "team-a"}
            },
            "spec": {
                "restartPolicy": "Always",
                "volumes": [
                    {"name": "config", "configMap": {"name": "app-config"}},
                    {"name": "cache", "emptyDir": {}}
                ],
                "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
                "containers": [{
                    "name": "app",
                    "image": "registry.example.com/app:1.0",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "MODE", "value": "production"}],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/app"},
                        {"name": "cache", "mountPath": "/var/cache"}
                    ],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 5, "periodSeconds": 10},
                    "readinessProbe": {"tcpSocket": {"port": "http"}},
                    "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30},
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "64Mi"},
                        "limits": {"cpu": "1", "memory": "128Mi"}
                    }
                }],
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]
            }
        })
    }

    fn cron_job() -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "report", "namespace": "default"},
            "spec": {
                "schedule": "*/15 9-17 * * mon-fri",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "report", "image": "busybox:1.36"}]
                }}}}
            }
        })
    }

    // Proves the DNS name checks give apimachinery's exact messages.
    #[test]
    fn name_formats_carry_kubernetes_messages() {
        let long_label = "a".repeat(64);
        #[allow(clippy::type_complexity)] // (text, subdomain, label, DNS-1035 errors)
        let table: Vec<(&str, Vec<String>, Vec<String>, Vec<String>)> = vec![
            // (text, subdomain errors, label errors, 1035 errors)
            ("web", vec![], vec![], vec![]),
            (
                "web-1.example.com",
                vec![],
                vec!["must not contain dots".into()],
                vec![DNS1035_MESSAGE.into()],
            ),
            ("1web", vec![], vec![], vec![DNS1035_MESSAGE.into()]),
            (
                "Web",
                vec![SUBDOMAIN_MESSAGE.into()],
                vec![LABEL_MESSAGE.into()],
                vec![DNS1035_MESSAGE.into()],
            ),
            (
                "web-",
                vec![SUBDOMAIN_MESSAGE.into()],
                vec![LABEL_MESSAGE.into()],
                vec![DNS1035_MESSAGE.into()],
            ),
            (
                "",
                vec![SUBDOMAIN_MESSAGE.into()],
                vec![LABEL_MESSAGE.into()],
                vec![DNS1035_MESSAGE.into()],
            ),
            (
                "a..b",
                vec![SUBDOMAIN_MESSAGE.into()],
                vec![LABEL_MESSAGE.into()],
                vec![DNS1035_MESSAGE.into()],
            ),
            (
                long_label.as_str(),
                vec![],
                vec!["must be no more than 63 characters".into()],
                vec!["must be no more than 63 characters".into()],
            ),
        ];
        for (text, subdomain, label, dns1035) in table {
            assert_eq!(is_dns1123_subdomain(text), subdomain, "subdomain {text:?}");
            assert_eq!(is_dns1123_label(text), label, "label {text:?}");
            assert_eq!(is_dns1035_label(text), dns1035, "1035 {text:?}");
        }
        let too_long = format!("{}com", "a.".repeat(126));
        assert_eq!(
            is_dns1123_subdomain(&too_long),
            vec!["must be no more than 253 characters".to_string()]
        );
    }

    // Proves qualified names, label values and config keys follow Kubernetes' rules.
    #[test]
    fn key_and_value_formats_table() {
        let qualified: &[(&str, &[&str])] = &[
            ("app", &[]),
            ("example.com/app", &[]),
            ("app.kubernetes.io/name", &[]),
            ("App_Name.1", &[]),
            ("/app", &["prefix part must be non-empty"]),
            ("example.com/", &["name part must be non-empty", NAME_PART_MESSAGE]),
            ("-app", &[NAME_PART_MESSAGE]),
            ("Example.com/app", &["prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
            ("a/b/c", &["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
        ];
        for (text, expected) in qualified {
            assert_eq!(is_qualified_name(text), expected.to_vec(), "{text:?}");
        }
        let long_name = "a".repeat(64);
        assert_eq!(
            is_qualified_name(&long_name),
            vec!["name part must be no more than 63 characters".to_string()]
        );
        assert!(is_label_value("").is_empty());
        assert!(is_label_value("v1.2_3-x").is_empty());
        assert_eq!(
            is_label_value("a b"),
            vec![LABEL_VALUE_MESSAGE_FULL.to_string()]
        );
        assert_eq!(
            is_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert!(is_config_map_key("app.properties").is_empty());
        assert!(is_config_map_key("KEY_name-1").is_empty());
        assert_eq!(
            is_config_map_key("a/b"),
            vec!["a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string()]
        );
        assert_eq!(
            is_config_map_key(".."),
            vec!["must not be '..'".to_string()]
        );
        assert_eq!(
            is_config_map_key("..data"),
            vec!["must not start with '..'".to_string()]
        );
        assert!(is_valid_port_name("http").is_empty());
        assert_eq!(
            is_valid_port_name("8080"),
            vec!["must contain at least one letter (a-z)".to_string()]
        );
        assert_eq!(
            is_valid_port_name("my--very-long-port"),
            vec![
                "must be no more than 15 characters".to_string(),
                "must not contain consecutive hyphens".to_string()
            ]
        );
    }

    // Proves quantities parse in every Kubernetes form, exactly, and refuse the rest.
    #[test]
    fn quantity_table() {
        let giga = 1_000_000_000_i128;
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("1", giga),
            ("100m", 100_000_000),
            ("1.5", 1_500_000_000),
            ("0.5", 500_000_000),
            (".5", 500_000_000),
            ("250u", 250_000),
            ("1n", 1),
            ("0.1n", 1),
            ("2k", 2_000 * giga),
            ("+2k", 2_000 * giga),
            ("-1", -giga),
            ("1M", 1_000_000 * giga),
            ("1G", 1_000_000_000 * giga),
            ("1E", 1_000_000_000_000_000_000 * giga),
            ("1Ki", 1024 * giga),
            ("128Mi", 128 * 1024 * 1024 * giga),
            ("1.5Gi", 1536 * 1024 * 1024 * giga),
            ("1e3", 1000 * giga),
            ("1E3", 1000 * giga),
            ("5e-2", 50_000_000),
            ("12e+1", 120 * giga),
        ];
        for (text, nanos) in table {
            assert_eq!(
                parse_quantity(text),
                Ok(Quantity::from_nanos(*nanos)),
                "{text:?}"
            );
        }
        let errors: &[(&str, &str)] = &[
            ("", QUANTITY_FORMAT_ERROR),
            ("abc", QUANTITY_FORMAT_ERROR),
            ("1.2.3", QUANTITY_FORMAT_ERROR),
            ("-", QUANTITY_FORMAT_ERROR),
            ("1 Gi", QUANTITY_FORMAT_ERROR),
            ("1Q", QUANTITY_FORMAT_ERROR),
            ("1e", QUANTITY_SUFFIX_ERROR),
            ("1Kii", QUANTITY_SUFFIX_ERROR),
            ("1mi", QUANTITY_SUFFIX_ERROR),
            ("1e99", QUANTITY_NUMERIC_ERROR),
        ];
        for (text, message) in errors {
            assert_eq!(parse_quantity(text), Err(message.to_string()), "{text:?}");
        }
        let quantity = parse_quantity("1500m").expect("valid");
        assert_eq!((quantity.milli_value(), quantity.value()), (1500, 2));
        let quantity = parse_quantity("1Gi").expect("valid");
        assert_eq!(quantity.value(), 1_073_741_824);
        assert!(parse_quantity("1Gi").expect("valid") > parse_quantity("1G").expect("valid"));
    }

    // Proves the cron check accepts the standard syntax and refuses with robfig/cron's messages.
    #[test]
    fn cron_schedule_table() {
        for schedule in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 * * 0",
            "0 9-17 * * mon-fri",
            "0 0 1 jan,jul *",
            "15,45 */2 1-15 * ?",
            "@hourly",
            "@every 1h30m",
            "TZ=UTC 0 * * * *",
        ] {
            assert_eq!(parse_cron_schedule(schedule), Ok(()), "{schedule:?}");
        }
        let errors: &[(&str, &str)] = &[
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "0 * * * * *",
                "expected exactly 5 fields, found 6: [0 * * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("@often", "unrecognized descriptor: @often"),
            (
                "@every 5",
                "failed to parse duration @every 5: time: missing unit in duration \"5\"",
            ),
        ];
        for (schedule, message) in errors {
            assert_eq!(
                parse_cron_schedule(schedule),
                Err(message.to_string()),
                "{schedule:?}"
            );
        }
    }

    // Proves a realistic Deployment validates clean and each mutation yields Kubernetes' exact causes.
    #[test]
    fn deployment_golden_table() {
        let table: Vec<Case<'_>> = vec![
            ("/spec/replicas", json!(-1), vec![("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")]),
            (
                "/spec/template/metadata/labels/app",
                json!("api"),
                vec![(
                    "spec.template.metadata.labels",
                    "Invalid value: map[string]string{\"app\":\"api\", \"tier\":\"front\"}: `selector` does not match template `labels`",
                )],
            ),
            ("/spec/selector", Value::Null, vec![("spec.selector", "Required value")]),
            (
                "/spec/selector",
                json!({}),
                vec![(
                    "spec.selector",
                    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
                )],
            ),
            (
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}),
                vec![
                    ("spec.selector.matchExpressions[0].values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"),
                    (
                        "spec.selector",
                        "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string{}}}}: invalid label selector",
                    ),
                ],
            ),
            ("/spec/template/spec/containers/0/image", json!(""), vec![("spec.template.spec.containers[0].image", "Required value")]),
            (
                "/spec/template/spec/containers/0/name",
                json!("Nginx"),
                vec![("spec.template.spec.containers[0].name", &*format!("Invalid value: \"Nginx\": {LABEL_MESSAGE}").leak())],
            ),
            (
                "/spec/template/spec/containers/0/ports/0/containerPort",
                json!(70000),
                vec![("spec.template.spec.containers[0].ports[0].containerPort", "Invalid value: 70000: must be between 1 and 65535, inclusive")],
            ),
            (
                "/spec/template/spec/containers/0/ports/0/protocol",
                json!("HTTP"),
                vec![("spec.template.spec.containers[0].ports[0].protocol", "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"")],
            ),
            (
                "/spec/template/spec/containers/0/resources/requests/cpu",
                json!("1"),
                vec![("spec.template.spec.containers[0].resources.requests[cpu]", "Invalid value: \"1\": must be less than or equal to cpu limit of 500m")],
            ),
            (
                "/spec/template/spec/containers/0/resources/limits/gpu",
                json!("1"),
                vec![("spec.template.spec.containers[0].resources.limits[gpu]", "Invalid value: \"gpu\": must be a standard resource for containers")],
            ),
            (
                "/spec/template/spec/restartPolicy",
                json!("Never"),
                vec![("spec.template.spec.restartPolicy", "Unsupported value: \"Never\": supported values: \"Always\"")],
            ),
            (
                "/spec/template/spec/containers/0/readinessProbe/httpGet/port",
                json!(0),
                vec![("spec.template.spec.containers[0].readinessProbe.httpGet.port", "Invalid value: 0: must be between 1 and 65535, inclusive")],
            ),
            (
                "/spec/strategy/type",
                json!("BlueGreen"),
                vec![("spec.strategy.type", "Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"")],
            ),
            (
                "/spec/strategy/rollingUpdate",
                json!({"maxSurge": 0, "maxUnavailable": "0%"}),
                vec![("spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: \"0%\": may not be 0 when `maxSurge` is 0")],
            ),
            (
                "/metadata/name",
                json!("Web"),
                vec![("metadata.name", &*format!("Invalid value: \"Web\": {SUBDOMAIN_MESSAGE}").leak())],
            ),
            (
                "/metadata/labels/app",
                json!("web app"),
                vec![("metadata.labels", &*format!("Invalid value: \"web app\": {LABEL_VALUE_MESSAGE_FULL}").leak())],
            ),
            ("/spec/replicas", json!("3"), vec![("spec.replicas", "Invalid value: \"3\": must be of type integer")]),
        ];
        check_mutations("Deployment", &deployment(), &table);

        let mut broken = deployment();
        set(&mut broken, "/spec/replicas", json!(-1));
        let causes = validate("Deployment", &broken, Some("default"));
        assert_eq!(
            invalid_message("Deployment", "web", &causes),
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(causes[0].reason, REASON_INVALID);
    }

    // Proves ReplicaSet, DaemonSet and StatefulSet share the workload rules with their own texts.
    #[test]
    fn other_workloads_table() {
        let mut replica_set = deployment();
        set(&mut replica_set, "/kind", json!("ReplicaSet"));
        set(&mut replica_set, "/spec/strategy", Value::Null);
        set(&mut replica_set, "/spec/selector", json!({}));
        assert_eq!(
            pairs(&validate("ReplicaSet", &replica_set, Some("default"))),
            owned(&[("spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment")])
        );

        let mut daemon_set = deployment();
        set(&mut daemon_set, "/spec/strategy", Value::Null);
        set(&mut daemon_set, "/spec/replicas", Value::Null);
        assert_eq!(
            pairs(&validate("DaemonSet", &daemon_set, Some("default"))),
            owned(&[])
        );
        set(
            &mut daemon_set,
            "/spec/template/spec/activeDeadlineSeconds",
            json!(30),
        );
        assert_eq!(
            pairs(&validate("DaemonSet", &daemon_set, Some("default"))),
            owned(&[(
                "spec.template.spec.activeDeadlineSeconds",
                "Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"
            )])
        );

        let mut stateful_set = deployment();
        set(&mut stateful_set, "/spec/strategy", Value::Null);
        set(&mut stateful_set, "/spec/serviceName", json!("web"));
        set(
            &mut stateful_set,
            "/spec/volumeClaimTemplates",
            json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]),
        );
        set(
            &mut stateful_set,
            "/spec/template/spec/containers/0/volumeMounts",
            json!([{"name": "data", "mountPath": "/data"}]),
        );
        assert_eq!(
            pairs(&validate("StatefulSet", &stateful_set, Some("default"))),
            owned(&[])
        );
        set(
            &mut stateful_set,
            "/spec/podManagementPolicy",
            json!("Random"),
        );
        set(
            &mut stateful_set,
            "/spec/template/metadata/labels",
            json!({}),
        );
        assert_eq!(
            pairs(&validate("StatefulSet", &stateful_set, Some("default"))),
            owned(&[
                ("spec.template.metadata.labels", "Invalid value: map[string]string{}: `selector` does not match template `labels`"),
                ("spec.podManagementPolicy", "Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\""),
            ])
        );
    }

    // Proves a realistic Service validates clean and each mutation yields Kubernetes' exact causes.
    #[test]
    fn service_golden_table() {
        let table: Vec<Case<'_>> = vec![
            ("/spec/ports", json!([]), vec![("spec.ports", "Required value")]),
            ("/spec/ports/1/name", json!(""), vec![("spec.ports[1].name", "Required value")]),
            ("/spec/ports/1/name", json!("http"), vec![("spec.ports[1].name", "Duplicate value: \"http\"")]),
            ("/spec/ports/0/port", json!(0), vec![("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive")]),
            ("/spec/ports/0/targetPort", json!("Http"), vec![("spec.ports[0].targetPort", "Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")]),
            ("/spec/ports/1/nodePort", json!(30080), vec![("spec.ports[1].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")]),
            (
                "/spec/ports/1/port",
                json!(80),
                vec![("spec.ports[1]", "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}")],
            ),
            (
                "/spec/type",
                json!("Internal"),
                vec![("spec.type", "Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"")],
            ),
            (
                "/metadata/name",
                json!("1web"),
                vec![("metadata.name", &*format!("Invalid value: \"1web\": {DNS1035_MESSAGE}").leak())],
            ),
            ("/spec/clusterIP", json!("10.0.0.300"), vec![("spec.clusterIPs[0]", "Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]),
            ("/spec/type", json!("NodePort"), vec![]),
            ("/spec/sessionAffinity", json!("Cookie"), vec![("spec.sessionAffinity", "Unsupported value: \"Cookie\": supported values: \"ClientIP\", \"None\"")]),
        ];
        check_mutations("Service", &service(), &table);

        let headless = json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}});
        assert_eq!(
            pairs(&validate("Service", &headless, Some("default"))),
            owned(&[])
        );
        let external = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example.com."}});
        assert_eq!(
            pairs(&validate("Service", &external, Some("default"))),
            owned(&[])
        );
        let external_missing =
            json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}});
        assert_eq!(
            pairs(&validate("Service", &external_missing, Some("default"))),
            owned(&[("spec.externalName", "Required value")])
        );
    }

    // Proves a realistic Job validates clean and each mutation yields Kubernetes' exact causes.
    #[test]
    fn job_golden_table() {
        let table: Vec<Case<'_>> = vec![
            (
                "/spec/template/spec/restartPolicy",
                json!("Always"),
                vec![("spec.template.spec.restartPolicy", "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"")],
            ),
            (
                "/spec/template/spec/restartPolicy",
                Value::Null,
                vec![("spec.template.spec.restartPolicy", "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"")],
            ),
            ("/spec/parallelism", json!(-1), vec![("spec.parallelism", "Invalid value: -1: must be greater than or equal to 0")]),
            ("/spec/completions", json!(-2), vec![("spec.completions", "Invalid value: -2: must be greater than or equal to 0")]),
            ("/spec/backoffLimit", json!(-1), vec![("spec.backoffLimit", "Invalid value: -1: must be greater than or equal to 0")]),
            (
                "/spec/selector",
                json!({"matchLabels": {"job": "pi"}}),
                vec![("spec.template.metadata.labels", "Invalid value: map[string]string(nil): `selector` does not match template `labels`")],
            ),
            ("/spec/template/spec/containers", json!([]), vec![("spec.template.spec.containers", "Required value")]),
        ];
        check_mutations("Job", &job(), &table);
    }

    // Proves CronJobs check the schedule, policy, name length and their job template.
    #[test]
    fn cron_job_golden_table() {
        let table: Vec<Case<'_>> = vec![
            ("/spec/schedule", json!(""), vec![("spec.schedule", "Required value")]),
            ("/spec/schedule", json!("0 25 * * *"), vec![("spec.schedule", "Invalid value: \"0 25 * * *\": end of range (25) above maximum (23): 25")]),
            ("/spec/schedule", json!("*/5 * * *"), vec![("spec.schedule", "Invalid value: \"*/5 * * *\": expected exactly 5 fields, found 4: [*/5 * * *]")]),
            (
                "/spec/schedule",
                json!("TZ=UTC 0 * * * *"),
                vec![("spec.schedule", "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead")],
            ),
            (
                "/spec/concurrencyPolicy",
                json!("Sometimes"),
                vec![("spec.concurrencyPolicy", "Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"")],
            ),
            (
                "/spec/jobTemplate/spec/template/spec/restartPolicy",
                json!("Always"),
                vec![("spec.jobTemplate.spec.template.spec.restartPolicy", "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"")],
            ),
            (
                "/spec/jobTemplate/spec/template/spec/containers/0/image",
                json!(""),
                vec![("spec.jobTemplate.spec.template.spec.containers[0].image", "Required value")],
            ),
            (
                "/metadata/name",
                json!("a".repeat(53)),
                vec![("metadata.name", &*format!("Invalid value: \"{}\": must be no more than 52 characters", "a".repeat(53)).leak())],
            ),
        ];
        check_mutations("CronJob", &cron_job(), &table);
    }

    // Proves a Pod with probes and volumes validates clean and each mutation yields Kubernetes' exact causes.
    #[test]
    fn pod_golden_table() {
        let table: Vec<Case<'_>> = vec![
            ("/spec/containers/0/volumeMounts/0/name", json!("data"), vec![("spec.containers[0].volumeMounts[0].name", "Not found: \"data\"")]),
            ("/spec/containers/0/volumeMounts/1/mountPath", json!("/etc/app"), vec![("spec.containers[0].volumeMounts[1].mountPath", "Invalid value: \"/etc/app\": must be unique")]),
            ("/spec/containers/0/volumeMounts/1/mountPath", json!(""), vec![("spec.containers[0].volumeMounts[1].mountPath", "Required value")]),
            (
                "/spec/volumes/1/name",
                json!("config"),
                vec![
                    ("spec.volumes[1].name", "Duplicate value: \"config\""),
                    ("spec.containers[0].volumeMounts[1].name", "Not found: \"cache\""),
                ],
            ),
            (
                "/spec/volumes/1/hostPath",
                json!({"path": "/tmp"}),
                vec![("spec.volumes[1].hostPath", "Forbidden: may not specify more than 1 volume type")],
            ),
            (
                "/spec/containers/0/livenessProbe/exec",
                json!({"command": ["true"]}),
                vec![("spec.containers[0].livenessProbe.httpGet", "Forbidden: may not specify more than 1 handler type")],
            ),
            (
                "/spec/containers/0/readinessProbe",
                json!({"periodSeconds": 5}),
                vec![("spec.containers[0].readinessProbe", "Required value: must specify a handler type")],
            ),
            (
                "/spec/containers/0/livenessProbe/successThreshold",
                json!(2),
                vec![("spec.containers[0].livenessProbe.successThreshold", "Invalid value: 2: must be 1")],
            ),
            (
                "/spec/containers/0/livenessProbe/periodSeconds",
                json!(-10),
                vec![("spec.containers[0].livenessProbe.periodSeconds", "Invalid value: -10: must be greater than or equal to 0")],
            ),
            ("/spec/containers/0/startupProbe/exec/command", json!([]), vec![("spec.containers[0].startupProbe.exec.command", "Required value")]),
            (
                "/spec/initContainers/0/readinessProbe",
                json!({"exec": {"command": ["true"]}}),
                vec![("spec.initContainers[0].readinessProbe", "Forbidden: may not be set for init containers without restartPolicy=Always")],
            ),
            ("/spec/initContainers/0/name", json!("app"), vec![("spec.initContainers[0].name", "Duplicate value: \"app\"")]),
            (
                "/spec/restartPolicy",
                json!("Sometimes"),
                vec![("spec.restartPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"")],
            ),
            ("/spec/containers", json!([]), vec![("spec.containers", "Required value")]),
            ("/spec/containers/0/ports/0/containerPort", Value::Null, vec![("spec.containers[0].ports[0].containerPort", "Required value")]),
            ("/spec/containers/0/image", json!("app:1.0 "), vec![("spec.containers[0].image", "Invalid value: \"app:1.0 \": must not have leading or trailing whitespace")]),
            ("/spec/containers/0/env/0/name", json!(""), vec![("spec.containers[0].env[0].name", "Required value")]),
            (
                "/spec/containers/0/resources/requests/memory",
                json!("-64Mi"),
                vec![("spec.containers[0].resources.requests[memory]", "Invalid value: \"-64Mi\": must be greater than or equal to 0")],
            ),
            (
                "/spec/containers/0/resources/requests/cpu",
                json!("lots"),
                vec![("spec.containers[0].resources.requests[cpu]", "Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")],
            ),
            ("/spec/containers/0/resources/requests/cpu", json!(0.5), vec![]),
            ("/spec/activeDeadlineSeconds", json!(0), vec![("spec.activeDeadlineSeconds", "Invalid value: 0: must be between 1 and 2147483647, inclusive")]),
            (
                "/spec/tolerations/0/effect",
                json!("NoRun"),
                vec![("spec.tolerations[0].effect", "Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"")],
            ),
            (
                "/metadata/annotations/bad key",
                json!("x"),
                vec![("metadata.annotations", &*format!("Invalid value: \"bad key\": {NAME_PART_MESSAGE}").leak())],
            ),
            ("/metadata/name", Value::Null, vec![("metadata.name", "Required value: name or generateName is required")]),
            ("/metadata/labels/app", json!(5), vec![("metadata.labels[app]", "Invalid value: 5: must be of type string")]),
            ("/spec/containers", json!("app"), vec![("spec.containers", "Invalid value: \"app\": must be of type array"), ("spec.containers", "Required value")]),
        ];
        check_mutations("Pod", &pod(), &table);

        let mut generated = pod();
        set(&mut generated, "/metadata/name", Value::Null);
        set(&mut generated, "/metadata/generateName", json!("app-"));
        assert_eq!(
            pairs(&validate("Pod", &generated, Some("default"))),
            owned(&[])
        );

        let mut two = pod();
        set(&mut two, "/spec/containers/0/image", json!(""));
        set(&mut two, "/spec/restartPolicy", json!("Sometimes"));
        let causes = validate("Pod", &two, Some("default"));
        assert_eq!(
            invalid_message("Pod", "app", &causes),
            "Pod \"app\" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        );
    }

    // Proves metadata.namespace must agree with the request and is required for namespaced kinds.
    #[test]
    fn namespace_rules_table() {
        let table: &[(&str, Value, Option<&str>, Expected<'_>)] = &[
            ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "a"}}), Some("a"), vec![]),
            ("ConfigMap", json!({"metadata": {"name": "c"}}), Some("a"), vec![]),
            ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "a"}}), None, vec![]),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c", "namespace": "b"}}),
                Some("a"),
                vec![("metadata.namespace", "Invalid value: \"b\": the namespace of the provided object does not match the namespace sent on the request")],
            ),
            ("ConfigMap", json!({"metadata": {"name": "c"}}), None, vec![("metadata.namespace", "Required value")]),
            ("Namespace", json!({"metadata": {"name": "team-a"}}), None, vec![]),
            (
                "Namespace",
                json!({"metadata": {"name": "team.a"}}),
                None,
                vec![("metadata.name", "Invalid value: \"team.a\": must not contain dots")],
            ),
            ("Node", json!({"metadata": {"name": "node-1.example.com"}}), None, vec![]),
            ("ServiceAccount", json!({"metadata": {"name": "builder"}}), Some("ci"), vec![]),
            ("Widget", json!({"metadata": {"name": "w", "labels": {"a": "b"}}}), Some("default"), vec![]),
            ("Widget", json!({"metadata": {"name": "W"}}), Some("default"), vec![("metadata.name", &*format!("Invalid value: \"W\": {SUBDOMAIN_MESSAGE}").leak())]),
        ];
        for (kind, object, namespace, expected) in table {
            assert_eq!(
                pairs(&validate(kind, object, *namespace)),
                owned(expected),
                "{kind} {object}"
            );
        }
    }

    // Proves the remaining kinds' specific rules with Kubernetes' messages.
    #[test]
    fn other_kinds_table() {
        let table: &[Case<'_>] = &[
            ("ConfigMap", json!({"metadata": {"name": "c"}, "data": {"app.properties": "x=1", "KEY": "v"}}), vec![]),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"a/b": "x"}}),
                vec![("data[a/b]", "Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")],
            ),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"k": "x"}, "binaryData": {"k": "eA=="}}),
                vec![("binaryData[k]", "Invalid value: \"k\": duplicate of key present in data")],
            ),
            ("Secret", json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}), vec![]),
            (
                "Secret",
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
                vec![("data[tls.key]", "Required value")],
            ),
            ("Secret", json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{}"}}), vec![]),
            ("PriorityClass", json!({"metadata": {"name": "high"}, "value": 1000000}), vec![]),
            (
                "PriorityClass",
                json!({"metadata": {"name": "too-high"}, "value": 1000000001}),
                vec![("value", "Forbidden: maximum allowed value of a user defined priority is 1000000000")],
            ),
            (
                "PriorityClass",
                json!({"metadata": {"name": "system-mine"}, "value": 10}),
                vec![("metadata.name", "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class")],
            ),
            ("PriorityClass", json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000}), vec![]),
            ("Lease", json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}), vec![]),
            (
                "Lease",
                json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
                vec![
                    ("spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0"),
                    ("spec.leaseTransitions", "Invalid value: -1: must be greater than or equal to 0"),
                ],
            ),
            ("Node", json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}), vec![]),
            (
                "Node",
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "gpu", "effect": "Never"}]}}),
                vec![("spec.taints[0].effect", "Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"")],
            ),
            (
                "Event",
                json!({"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Scheduled"}),
                vec![],
            ),
            (
                "Event",
                json!({"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}}),
                vec![("involvedObject.namespace", "Invalid value: \"other\": does not match event.namespace")],
            ),
            (
                "Endpoints",
                json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}]}]}),
                vec![],
            ),
            (
                "Endpoints",
                json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.0"}], "ports": [{"port": 80, "name": "http"}, {"port": 81}]}]}),
                vec![
                    ("subsets[0].addresses[0].ip", "Invalid value: \"10.1.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                    ("subsets[0].ports[1].name", "Required value"),
                ],
            ),
            (
                "EndpointSlice",
                json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.5"]}], "ports": [{"name": "http", "port": 80}]}),
                vec![],
            ),
            (
                "EndpointSlice",
                json!({"metadata": {"name": "web-abc"}, "addressType": "IPv5", "endpoints": [{"addresses": []}]}),
                vec![
                    ("addressType", "Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""),
                    ("endpoints[0].addresses", "Required value: must contain at least 1 address"),
                ],
            ),
            (
                "EndpointSlice",
                json!({"metadata": {"name": "web-abc"}, "addressType": "IPv6", "endpoints": [{"addresses": ["10.1.0.5"]}]}),
                vec![("endpoints[0].addresses[0]", "Invalid value: \"10.1.0.5\": must be a valid IPv6 address")],
            ),
        ];
        for (kind, object, expected) in table {
            assert_eq!(
                pairs(&validate(kind, object, Some("default"))),
                owned(expected),
                "{kind} {object}"
            );
        }
    }

    // Proves update rules: immutable fields carry "field is immutable", pods get Kubernetes' Forbidden text.
    #[test]
    fn update_golden_table() {
        let with = |base: Value, changes: &[(&str, Value)]| {
            let mut object = base;
            for (pointer, value) in changes {
                set(&mut object, pointer, value.clone());
            }
            object
        };
        let mut stored_pod = pod();
        set(&mut stored_pod, "/metadata/uid", json!("uid-1"));
        set(
            &mut stored_pod,
            "/metadata/creationTimestamp",
            json!("2024-05-01T10:00:00Z"),
        );
        let mut stored_service = service();
        set(&mut stored_service, "/spec/clusterIP", json!("10.96.0.10"));
        let stateful_set = with(
            deployment(),
            &[
                ("/spec/strategy", Value::Null),
                ("/spec/serviceName", json!("web")),
            ],
        );
        let forbidden_pod = format!("Forbidden: {POD_UPDATE_FORBIDDEN}");

        let table: Vec<(&str, Value, Value, Expected<'_>)> = vec![
            ("Deployment", deployment(), with(deployment(), &[("/spec/replicas", json!(5))]), vec![]),
            (
                "Deployment",
                deployment(),
                with(deployment(), &[("/spec/selector/matchLabels/app", json!("web2"))]),
                vec![("spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")],
            ),
            (
                "Deployment",
                deployment(),
                with(deployment(), &[("/spec/selector/matchExpressions", json!([]))]),
                vec![],
            ),
            ("Deployment", deployment(), with(deployment(), &[("/metadata/name", json!("api"))]), vec![("metadata.name", "Invalid value: \"api\": field is immutable")]),
            ("Pod", stored_pod.clone(), with(stored_pod.clone(), &[("/spec/containers/0/image", json!("app:2.0"))]), vec![]),
            ("Pod", stored_pod.clone(), with(stored_pod.clone(), &[("/metadata/labels/track", json!("canary"))]), vec![]),
            ("Pod", stored_pod.clone(), with(stored_pod.clone(), &[("/metadata/uid", Value::Null)]), vec![]),
            ("Pod", stored_pod.clone(), with(stored_pod.clone(), &[("/metadata/uid", json!("uid-2"))]), vec![("metadata.uid", "Invalid value: \"uid-2\": field is immutable")]),
            (
                "Pod",
                stored_pod.clone(),
                with(stored_pod.clone(), &[("/metadata/creationTimestamp", json!("2024-05-02T10:00:00Z"))]),
                vec![("metadata.creationTimestamp", "Invalid value: 2024-05-02 10:00:00 +0000 UTC: field is immutable")],
            ),
            (
                "Pod",
                stored_pod.clone(),
                with(stored_pod.clone(), &[("/spec/tolerations/1", json!({"key": "spot", "operator": "Exists"}))]),
                vec![],
            ),
            (
                "Pod",
                stored_pod.clone(),
                with(stored_pod.clone(), &[("/spec/tolerations/0/value", json!("api"))]),
                vec![("spec.tolerations[0]", "Forbidden: existing toleration can not be modified except its tolerationSeconds")],
            ),
            ("Pod", stored_pod.clone(), with(stored_pod.clone(), &[("/spec/activeDeadlineSeconds", json!(60))]), vec![]),
            (
                "Pod",
                with(stored_pod.clone(), &[("/spec/activeDeadlineSeconds", json!(60))]),
                with(stored_pod.clone(), &[("/spec/activeDeadlineSeconds", json!(120))]),
                vec![("spec.activeDeadlineSeconds", "Invalid value: 120: must be less than or equal to previous value")],
            ),
            (
                "Pod",
                stored_pod.clone(),
                with(stored_pod.clone(), &[("/spec/containers/1", json!({"name": "sidecar", "image": "envoy"}))]),
                vec![("spec.containers", "Forbidden: pod updates may not add or remove containers")],
            ),
            (
                "Service",
                stored_service.clone(),
                with(stored_service.clone(), &[("/spec/clusterIP", json!("10.96.0.11"))]),
                vec![("spec.clusterIP", "Invalid value: \"10.96.0.11\": field is immutable")],
            ),
            ("Service", stored_service.clone(), with(stored_service.clone(), &[("/spec/clusterIP", Value::Null)]), vec![]),
            ("Service", stored_service.clone(), with(stored_service.clone(), &[("/spec/ports/0/port", json!(8080))]), vec![]),
            (
                "Job",
                job(),
                with(job(), &[("/spec/selector", json!({"matchLabels": {"job": "b"}}))]),
                vec![("spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"job\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")],
            ),
            ("StatefulSet", stateful_set.clone(), with(stateful_set.clone(), &[("/spec/replicas", json!(1)), ("/spec/template/spec/containers/0/image", json!("nginx:1.26"))]), vec![]),
            (
                "StatefulSet",
                stateful_set.clone(),
                with(stateful_set.clone(), &[("/spec/volumeClaimTemplates", json!([{"metadata": {"name": "data"}}]))]),
                vec![("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")],
            ),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true}),
                json!({"metadata": {"name": "c"}, "data": {"a": "2"}, "immutable": true}),
                vec![("data", "Forbidden: field is immutable when `immutable` is set")],
            ),
            (
                "Secret",
                json!({"metadata": {"name": "s"}, "type": "Opaque"}),
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"}),
                vec![("type", "Invalid value: \"kubernetes.io/tls\": field is immutable")],
            ),
            (
                "PriorityClass",
                json!({"metadata": {"name": "p"}, "value": 10}),
                json!({"metadata": {"name": "p"}, "value": 20}),
                vec![("value", "Forbidden: may not be changed in an update.")],
            ),
        ];
        for (kind, old, new, expected) in &table {
            assert_eq!(
                pairs(&validate_update(kind, old, new)),
                owned(expected),
                "{kind}: {old} -> {new}"
            );
        }

        // A pod spec change outside the mutable fields: Kubernetes' exact first line, then a diff.
        let changed = with(
            stored_pod.clone(),
            &[("/spec/containers/0/command", json!(["sleep", "3600"]))],
        );
        let causes = validate_update("Pod", &stored_pod, &changed);
        assert_eq!(causes.len(), 1);
        assert_eq!(
            (causes[0].field.as_str(), causes[0].reason.as_str()),
            ("spec", REASON_FORBIDDEN)
        );
        let mut lines = causes[0].message.lines();
        assert_eq!(lines.next(), Some(forbidden_pod.as_str()));
        assert_eq!(
            lines.next(),
            Some("+ spec.containers[0].command: [\"sleep\",\"3600\"]")
        );
        assert!(invalid_message("Pod", "app", &causes)
            .starts_with(&format!("Pod \"app\" is invalid: spec: {forbidden_pod}\n")));

        // Jobs: the template is immutable; the value is shown as JSON.
        let changed = with(
            job(),
            &[("/spec/template/spec/containers/0/image", json!("perl:5.36"))],
        );
        let causes = validate_update("Job", &job(), &changed);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template");
        assert!(causes[0].message.starts_with("Invalid value: {\"spec\":"));
        assert!(causes[0].message.ends_with(": field is immutable"));
    }

    // Proves the cause type serializes as Kubernetes' StatusCause and messages quote like Go.
    #[test]
    fn cause_serialization_and_quoting() {
        let cause = Cause::required("spec.containers", "");
        assert_eq!(
            serde_json::to_value(&cause).expect("serializes"),
            json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"})
        );
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
        assert_eq!(
            invalid_message("Widget", "w", &[]),
            "Widget \"w\" is invalid"
        );
        let duplicate = vec![Cause::required("a", ""), Cause::required("a", "")];
        assert_eq!(
            invalid_message("Job", "j", &duplicate),
            "Job.batch \"j\" is invalid: a: Required value"
        );
        assert_eq!(
            invalid_message("Deployment.apps", "d", &duplicate),
            "Deployment.apps \"d\" is invalid: a: Required value"
        );
    }

    // Proves no JSON shape makes validation panic: every field of every manifest replaced by every odd value.
    #[test]
    fn malformed_shapes_never_panic() {
        let odd_values = [
            json!(null),
            json!(1),
            json!(-1),
            json!("x"),
            json!([]),
            json!({}),
            json!([1, "a", null]),
            json!(1.5),
            json!(true),
        ];
        let manifests = [
            ("Deployment", deployment()),
            ("StatefulSet", deployment()),
            ("DaemonSet", deployment()),
            ("Service", service()),
            ("Job", job()),
            ("CronJob", cron_job()),
            ("Pod", pod()),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"a": "b"}}),
            ),
            (
                "EndpointSlice",
                json!({"metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 1}]}),
            ),
            (
                "Endpoints",
                json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 1}]}]}),
            ),
            (
                "Node",
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            ),
            (
                "Event",
                json!({"metadata": {"name": "e"}, "involvedObject": {"namespace": "default"}}),
            ),
            (
                "Lease",
                json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 1}}),
            ),
            (
                "PriorityClass",
                json!({"metadata": {"name": "p"}, "value": 1}),
            ),
            (
                "Secret",
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            ),
        ];
        fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
            match value {
                Value::Object(fields) => {
                    for (name, item) in fields {
                        let pointer = format!("{prefix}/{name}");
                        out.push(pointer.clone());
                        pointers(item, pointer, out);
                    }
                }
                Value::Array(items) => {
                    for (position, item) in items.iter().enumerate() {
                        let pointer = format!("{prefix}/{position}");
                        out.push(pointer.clone());
                        pointers(item, pointer, out);
                    }
                }
                _ => {}
            }
        }
        let mut runs = 0;
        for (kind, manifest) in &manifests {
            let mut all = Vec::new();
            pointers(manifest, String::new(), &mut all);
            for pointer in &all {
                for odd in &odd_values {
                    let mut object = manifest.clone();
                    if let Some(slot) = object.pointer_mut(pointer) {
                        *slot = odd.clone();
                    }
                    let _ = validate(kind, &object, Some("default"));
                    let _ = validate_update(kind, manifest, &object);
                    let _ = validate_update(kind, &object, manifest);
                    runs += 1;
                }
            }
            for odd in &odd_values {
                let _ = validate(kind, odd, None);
                let _ = validate_update(kind, odd, odd);
            }
        }
        assert!(runs > 1000, "only {runs} shapes tried");
    }
}
