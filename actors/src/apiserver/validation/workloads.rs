//! Pod templates and label selectors inside workloads.

#[allow(unused_imports)]
use super::*;

/// `ValidateLabelSelector` on a `metav1.LabelSelector`: the JSON shape and each part.
pub(super) fn validate_label_selector_json(checker: &mut Checker, selector: &Value, path: &str) {
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
pub(super) fn validate_workload_selector(
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
pub(super) struct TemplateRules<'a> {
    /// The restart policies the owner accepts (Always for controllers that keep pods
    /// running, OnFailure/Never for Jobs).
    pub(super) restart_policies: &'a [&'a str],
    /// The message refusing `activeDeadlineSeconds`, for owners that do.
    pub(super) active_deadline_forbidden: Option<&'a str>,
    /// Volume names provided besides the pod's own volumes.
    pub(super) extra_volumes: BTreeSet<String>,
}

/// `ValidatePodTemplateSpec` plus the owner's rules: the selector must match the
/// template's labels; restart policy and deadline as the owner allows.
pub(super) fn validate_pod_template(
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

pub(super) fn controller_template_rules(owner: &str) -> TemplateRules<'static> {
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
pub(super) fn validate_int_or_percent(
    checker: &mut Checker,
    parent: &Value,
    name: &str,
    path: &str,
) -> bool {
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
