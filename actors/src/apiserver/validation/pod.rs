//! Pod specs.

#[allow(unused_imports)]
use super::*;

pub(super) const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
pub(super) const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
pub(super) const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Which list a container sits in; init containers have extra rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerList {
    Regular,
    Init,
}

/// What the pod spec belongs to: a bare Pod gets the pod-only checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpecOwner {
    Pod,
    Template,
}

/// `ValidatePortNumOrName` for an int-or-string port; a missing port reads as 0.
pub(super) fn validate_port_number_or_name(
    checker: &mut Checker,
    parent: &Value,
    name: &str,
    path: &str,
) {
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
pub(super) fn validate_protocol(checker: &mut Checker, parent: &Value, path: &str) {
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

pub(super) fn validate_probe(
    checker: &mut Checker,
    probe: &Value,
    path: &str,
    success_must_be_one: bool,
) {
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

pub(super) trait OptionalList {
    fn is_none_or_empty(&self) -> bool;
}

impl OptionalList for Option<&Vec<Value>> {
    fn is_none_or_empty(&self) -> bool {
        self.is_none_or(|items| items.is_empty())
    }
}

/// A quantity given as a JSON string or number, parsed; the cause is recorded on failure.
pub(super) fn quantity_at(
    checker: &mut Checker,
    value: &Value,
    field: &str,
) -> Option<(Quantity, String)> {
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

pub(super) fn is_standard_container_resource(name: &str) -> bool {
    name.contains('/')
        || matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
}

/// `ValidateResourceRequirements`: known names, non-negative, requests ≤ limits.
pub(super) fn validate_resources(checker: &mut Checker, container: &Value, path: &str) {
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

pub(super) fn validate_container(
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
pub(super) fn validate_pod_spec(
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
