//! Unit tests of the validation rules, section by section.

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
            (
                "spec.template.metadata.labels",
                "Invalid value: map[string]string{}: `selector` does not match template `labels`"
            ),
            (
                "spec.podManagementPolicy",
                "Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\""
            ),
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
    let external_missing = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}});
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
