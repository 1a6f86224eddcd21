//! Kinds.

#[allow(unused_imports)]
use super::*;

pub(super) fn validate_deployment_like(checker: &mut Checker, object: &Value, kind: &str) {
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

pub(super) fn validate_update_strategy_type(
    checker: &mut Checker,
    spec: &Value,
    supported: &[&str],
) {
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
pub(super) fn validate_job_spec(checker: &mut Checker, spec: &Value, path: &str) {
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

pub(super) fn validate_job(checker: &mut Checker, object: &Value) {
    let spec = object_or_empty(checker, object, "spec", "");
    validate_job_spec(checker, spec, "spec");
}

pub(super) fn validate_cron_job(checker: &mut Checker, object: &Value) {
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
pub(super) fn go_service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    )
}

pub(super) fn validate_service(checker: &mut Checker, object: &Value) {
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
pub(super) fn validate_config_data(
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

pub(super) fn validate_config_map(checker: &mut Checker, object: &Value) {
    let total = validate_config_data(checker, object, &["data", "binaryData"], false);
    if total > CONFIG_DATA_MAX_BYTES {
        checker.push(Cause::too_long("[]", CONFIG_DATA_MAX_BYTES));
    }
    checker.boolean(object, "immutable", "");
}

pub(super) fn validate_secret(checker: &mut Checker, object: &Value) {
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

pub(super) fn validate_node(checker: &mut Checker, object: &Value) {
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

pub(super) fn validate_event(checker: &mut Checker, object: &Value, namespace: &str) {
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

pub(super) fn validate_ip_field(checker: &mut Checker, parent: &Value, name: &str, path: &str) {
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

pub(super) fn validate_endpoint_ports(
    checker: &mut Checker,
    parent: &Value,
    path: &str,
    port_optional: bool,
) {
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

pub(super) fn validate_endpoints(checker: &mut Checker, object: &Value) {
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

pub(super) fn validate_endpoint_slice(checker: &mut Checker, object: &Value) {
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

pub(super) fn validate_lease(checker: &mut Checker, object: &Value) {
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
pub(super) fn validate_limit_range(checker: &mut Checker, object: &Value) {
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

pub(super) fn validate_priority_class(checker: &mut Checker, object: &Value) {
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
