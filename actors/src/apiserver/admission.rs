//! Admission that depends on other objects in the namespace, as Kubernetes' plugins do
//! it: LimitRange (defaults and bounds for container and pod resources) and
//! ResourceQuota (object counts and compute resources charged against `spec.hard`).
//!
//! Pure functions over JSON: the API server reads the namespace's LimitRanges and
//! ResourceQuotas from the store and hands them in with the object; the quota's new
//! `status.used` is written in the same transaction as the object, guarded by the
//! quota's mod revision, so racing creates through any API server never overspend.

use super::validation::{parse_quantity, Quantity};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The pod's containers and init containers, mutable.
fn containers_mut(pod: &mut Value) -> Vec<&mut Map<String, Value>> {
    let mut out = Vec::new();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return out;
    };
    for (key, list) in spec.iter_mut() {
        if key != "containers" && key != "initContainers" {
            continue;
        }
        if let Some(items) = list.as_array_mut() {
            out.extend(items.iter_mut().filter_map(Value::as_object_mut));
        }
    }
    out
}

fn quantities(value: &Value) -> BTreeMap<String, (Quantity, String)> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(name, q)| {
                    let text = q
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| q.to_string());
                    parse_quantity(&text)
                        .ok()
                        .map(|parsed| (name.clone(), (parsed, text)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies the namespace's LimitRanges to a pod being created: fills default requests
/// and limits into containers that set none (recording what it set in the
/// `kubernetes.io/limit-ranger` annotation), then checks min, max and
/// maxLimitRequestRatio per container and per pod. `Err` carries the messages of every
/// violated bound.
pub fn apply_limit_ranges(pod: &mut Value, ranges: &[&Value]) -> Result<(), Vec<String>> {
    let items: Vec<&Value> = ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    // Defaults (type Container), only where the container set nothing for that resource.
    let mut set_notes = Vec::new();
    for item in items.iter().filter(|i| i["type"] == "Container") {
        for container in containers_mut(pod) {
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let resources = container.entry("resources").or_insert_with(|| json!({}));
            let mut set = (Vec::new(), Vec::new());
            for (field, source, list) in [
                ("requests", "defaultRequest", &mut set.0),
                ("limits", "default", &mut set.1),
            ] {
                let Some(defaults) = item[source].as_object() else {
                    continue;
                };
                if !resources.is_object() {
                    continue;
                }
                let target = resources
                    .as_object_mut()
                    .expect("checked above")
                    .entry(field)
                    .or_insert_with(|| json!({}));
                let Some(target) = target.as_object_mut() else {
                    continue;
                };
                for (resource, quantity) in defaults {
                    if !target.contains_key(resource) {
                        target.insert(resource.clone(), quantity.clone());
                        list.push(resource.clone());
                    }
                }
            }
            if !set.0.is_empty() {
                set_notes.push(format!("{} request for container {name}", set.0.join(", ")));
            }
            if !set.1.is_empty() {
                set_notes.push(format!("{} limit for container {name}", set.1.join(", ")));
            }
        }
    }
    if !set_notes.is_empty() {
        let meta = pod
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
        if let Some(Value::Object(meta)) = meta {
            let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    "kubernetes.io/limit-ranger".into(),
                    json!(format!("LimitRanger plugin set: {}", set_notes.join("; "))),
                );
            }
        }
    }
    // Bounds.
    let mut errors = Vec::new();
    let mut pod_requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut pod_limits: BTreeMap<String, i128> = BTreeMap::new();
    let mut per_container = Vec::new();
    for container in containers_mut(pod) {
        let resources = container.get("resources").cloned().unwrap_or(Value::Null);
        let requests = quantities(&resources["requests"]);
        let limits = quantities(&resources["limits"]);
        for (name, (q, _)) in &requests {
            *pod_requests.entry(name.clone()).or_default() += q.nanos();
        }
        for (name, (q, _)) in &limits {
            *pod_limits.entry(name.clone()).or_default() += q.nanos();
        }
        per_container.push((requests, limits));
    }
    for item in &items {
        match item["type"].as_str() {
            Some("Container") => {
                for (requests, limits) in &per_container {
                    check_bounds(item, "Container", requests, limits, &mut errors);
                }
            }
            Some("Pod") => {
                let as_map = |sums: &BTreeMap<String, i128>| {
                    sums.iter()
                        .map(|(n, v)| {
                            let q = Quantity::from_nanos(*v);
                            (n.clone(), (q, show(q)))
                        })
                        .collect::<BTreeMap<_, _>>()
                };
                check_bounds(
                    item,
                    "Pod",
                    &as_map(&pod_requests),
                    &as_map(&pod_limits),
                    &mut errors,
                );
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A summed quantity as Kubernetes would print it (plain units, else milli-units).
fn show(q: Quantity) -> String {
    if q.nanos() % 1_000_000_000 == 0 {
        format!("{}", q.nanos() / 1_000_000_000)
    } else {
        format!("{}m", q.milli_value())
    }
}

type Quantities = BTreeMap<String, (Quantity, String)>;

fn check_bounds(
    item: &Value,
    scope: &str,
    requests: &Quantities,
    limits: &Quantities,
    errors: &mut Vec<String>,
) {
    // One message per resource and bound: the first that fails, in Kubernetes' order.
    for (resource, (min, min_text)) in quantities(&item["min"]) {
        let request = requests.get(&resource);
        let limit = limits.get(&resource);
        let error = match (request, limit) {
            (None, _) => Some(format!(
                "minimum {resource} usage per {scope} is {min_text}.  No request is specified"
            )),
            (Some((r, text)), _) if r.nanos() < min.nanos() => Some(format!(
                "minimum {resource} usage per {scope} is {min_text}, but request is {text}"
            )),
            (_, Some((l, text))) if l.nanos() < min.nanos() => Some(format!(
                "minimum {resource} usage per {scope} is {min_text}, but limit is {text}"
            )),
            _ => None,
        };
        errors.extend(error);
    }
    for (resource, (max, max_text)) in quantities(&item["max"]) {
        let request = requests.get(&resource);
        let limit = limits.get(&resource);
        let error = match (limit, request) {
            (None, _) => Some(format!(
                "maximum {resource} usage per {scope} is {max_text}.  No limit is specified"
            )),
            (Some((l, text)), _) if l.nanos() > max.nanos() => Some(format!(
                "maximum {resource} usage per {scope} is {max_text}, but limit is {text}"
            )),
            (_, Some((r, text))) if r.nanos() > max.nanos() => Some(format!(
                "maximum {resource} usage per {scope} is {max_text}, but request is {text}"
            )),
            _ => None,
        };
        errors.extend(error);
    }
    for (resource, (ratio, ratio_text)) in quantities(&item["maxLimitRequestRatio"]) {
        let (Some((limit, _)), Some((request, _))) =
            (limits.get(&resource), requests.get(&resource))
        else {
            continue;
        };
        if request.nanos() == 0 {
            continue;
        }
        let provided = limit.nanos() as f64 / request.nanos() as f64;
        if provided > ratio.nanos() as f64 / 1e9 {
            errors.push(format!(
                "{resource} max limit to request ratio per {scope} is {ratio_text}, but provided ratio is {provided:.6}"
            ));
        }
    }
}

// ----- ResourceQuota ---------------------------------------------------------------------

/// Compute resources a pod is charged for, and the container resource each reads.
const COMPUTE: [(&str, &str, &str); 6] = [
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
];

/// What creating `object` (of resource `plural` in `group`, kind `kind`) counts toward:
/// quota key → amount.
pub fn usage(plural: &str, group: &str, kind: &str, object: &Value) -> BTreeMap<String, Quantity> {
    let one = Quantity::from_nanos(1_000_000_000);
    let mut out = BTreeMap::new();
    let count_key = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    out.insert(count_key, one);
    if group.is_empty()
        && matches!(
            plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "replicationcontrollers"
                | "persistentvolumeclaims"
                | "resourcequotas"
        )
    {
        out.insert(plural.to_string(), one);
    }
    match kind {
        "Service" => {
            let kind = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if matches!(kind, "NodePort" | "LoadBalancer") {
                let ports = object["spec"]["ports"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
                out.insert(
                    "services.nodeports".into(),
                    Quantity::from_nanos(ports as i128 * 1_000_000_000),
                );
            }
            if kind == "LoadBalancer" {
                out.insert("services.loadbalancers".into(), one);
            }
        }
        "Pod" => {
            for (key, field, resource) in COMPUTE {
                let amount = |list: &str| -> Vec<i128> {
                    object["spec"][list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            quantities(&c["resources"][field])
                                .get(resource)
                                .map(|(q, _)| q.nanos())
                                .unwrap_or(0)
                        })
                        .collect()
                };
                // Containers run together, init containers one at a time.
                let total = amount("containers")
                    .iter()
                    .sum::<i128>()
                    .max(amount("initContainers").into_iter().max().unwrap_or(0));
                if total > 0 {
                    out.insert(key.to_string(), Quantity::from_nanos(total));
                }
            }
        }
        _ => {}
    }
    out
}

/// A quantity in a canonical form: binary suffixes for exact multiples of 1024, plain
/// units for integers, else milli-units.
fn canonical(q: Quantity) -> String {
    let nanos = q.nanos();
    if nanos % 1_000_000_000 == 0 {
        let units = nanos / 1_000_000_000;
        for (suffix, scale) in [
            ("Ti", 1i128 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if units != 0 && units % scale == 0 {
                return format!("{}{suffix}", units / scale);
            }
        }
        return units.to_string();
    }
    format!("{}m", q.milli_value())
}

fn listing(entries: &[(String, Quantity)]) -> String {
    entries
        .iter()
        .map(|(k, q)| format!("{k}={}", canonical(*q)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Charges `usage` to one ResourceQuota (`sign` 1 on create, -1 on delete). `Ok(None)`:
/// the quota tracks none of it. `Ok(Some(quota))`: the quota with its new
/// `status.used` (and `status.hard`). `Err`: the message a refused create gets.
pub fn charge(
    quota: &Value,
    usage: &BTreeMap<String, Quantity>,
    object: &Value,
    sign: i128,
) -> Result<Option<Value>, String> {
    let name = quota["metadata"]["name"].as_str().unwrap_or("");
    let hard = quantities(&quota["spec"]["hard"]);
    if hard.is_empty() {
        return Ok(None);
    }
    let used = quantities(&quota["status"]["used"]);
    // A pod must say how much it needs of every compute resource the quota limits.
    if sign > 0 && object["kind"] == "Pod" {
        let mut missing = Vec::new();
        for (key, field, resource) in COMPUTE {
            if !hard.contains_key(key) {
                continue;
            }
            let without: Vec<&str> = object["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| !quantities(&c["resources"][field]).contains_key(resource))
                .filter_map(|c| c["name"].as_str())
                .collect();
            if !without.is_empty() {
                missing.push(format!("{key} for: {}", without.join(",")));
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "failed quota: {name}: must specify {}",
                missing.join("; ")
            ));
        }
    }
    let mut touched = false;
    let mut new_used: BTreeMap<String, i128> = used
        .iter()
        .map(|(k, (q, _))| (k.clone(), q.nanos()))
        .collect();
    let (mut requested, mut current, mut limited) = (Vec::new(), Vec::new(), Vec::new());
    for (key, amount) in usage {
        let Some((limit, _)) = hard.get(key) else {
            continue;
        };
        touched = true;
        let before = used.get(key).map(|(q, _)| q.nanos()).unwrap_or(0);
        let after = (before + sign * amount.nanos()).max(0);
        if sign > 0 && after > limit.nanos() {
            requested.push((key.clone(), *amount));
            current.push((key.clone(), Quantity::from_nanos(before)));
            limited.push((key.clone(), *limit));
        }
        new_used.insert(key.clone(), after);
    }
    if !requested.is_empty() {
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            listing(&requested),
            listing(&current),
            listing(&limited)
        ));
    }
    if !touched {
        return Ok(None);
    }
    let mut quota = quota.clone();
    set_quota_status(&mut quota, &new_used);
    Ok(Some(quota))
}

/// Writes a quota's status: `hard` from its spec, `used` from `used` (nanos) for every
/// resource it limits, 0 where nothing is counted.
fn set_quota_status(quota: &mut Value, used: &BTreeMap<String, i128>) {
    let hard = quantities(&quota["spec"]["hard"]);
    let hard_json: Map<String, Value> = hard
        .iter()
        .map(|(k, (_, text))| (k.clone(), json!(text)))
        .collect();
    let used_json: Map<String, Value> = hard
        .keys()
        .map(|k| {
            let n = used.get(k).copied().unwrap_or(0);
            (k.clone(), json!(canonical(Quantity::from_nanos(n))))
        })
        .collect();
    quota["status"] = json!({ "hard": hard_json, "used": used_json });
}

/// The resources (plural, group) whose objects a quota's `spec.hard` counts.
pub fn quota_resources(quota: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for key in quantities(&quota["spec"]["hard"]).keys() {
        let (plural, group) = if let Some(counted) = key.strip_prefix("count/") {
            match counted.split_once('.') {
                Some((plural, group)) => (plural.to_string(), group.to_string()),
                None => (counted.to_string(), String::new()),
            }
        } else if COMPUTE.iter().any(|(k, _, _)| k == key) {
            ("pods".into(), String::new())
        } else if key.starts_with("services.") {
            ("services".into(), String::new())
        } else {
            (key.clone(), String::new())
        };
        if !out.contains(&(plural.clone(), group.clone())) {
            out.push((plural, group));
        }
    }
    out
}

/// Sets a new quota's `status.used` from the objects that already exist (pods that
/// finished are not counted), as the quota controller would.
pub fn count_existing(quota: &mut Value, existing: &[(String, String, String, Value)]) {
    let mut used: BTreeMap<String, i128> = BTreeMap::new();
    for (plural, group, kind, object) in existing {
        if kind == "Pod"
            && matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        {
            continue;
        }
        for (key, amount) in usage(plural, group, kind, object) {
            *used.entry(key).or_default() += amount.nanos();
        }
    }
    set_quota_status(quota, &used);
}

/// A new ResourceQuota's status before it has counted anything: `hard` from its spec,
/// nothing used ([`count_existing`] fills in what already exists).
pub fn initial_quota_status(quota: &mut Value) {
    set_quota_status(quota, &BTreeMap::new());
}

/// A quota whose `spec.hard` changed: `status.hard` follows, `status.used` keeps what it
/// counted (a resource newly limited starts at 0 until the quota controller counts it).
pub fn refresh_quota_hard(quota: &mut Value) {
    let used: BTreeMap<String, i128> = quantities(&quota["status"]["used"])
        .into_iter()
        .map(|(k, (q, _))| (k, q.nanos()))
        .collect();
    set_quota_status(quota, &used);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_and_refuses_with_kubernetes_messages() {
        let mut quota = json!({ "metadata": { "name": "q" }, "spec": { "hard": { "pods": "2", "requests.cpu": "1" } } });
        initial_quota_status(&mut quota);
        let pod = json!({ "kind": "Pod", "spec": { "containers": [ { "name": "c", "resources": { "requests": { "cpu": "400m" } } } ] } });
        let u = usage("pods", "", "Pod", &pod);
        assert_eq!(u["pods"], Quantity::from_nanos(1_000_000_000));
        assert_eq!(u["count/pods"], Quantity::from_nanos(1_000_000_000));
        let once = charge(&quota, &u, &pod, 1).unwrap().unwrap();
        assert_eq!(
            once["status"]["used"],
            json!({ "pods": "1", "requests.cpu": "400m" })
        );
        let twice = charge(&once, &u, &pod, 1).unwrap().unwrap();
        assert_eq!(
            charge(&twice, &u, &pod, 1).unwrap_err(),
            "exceeded quota: q, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1"
        );
        let back = charge(&twice, &u, &pod, -1).unwrap().unwrap();
        assert_eq!(
            back["status"]["used"],
            json!({ "pods": "1", "requests.cpu": "400m" })
        );
        let bare = json!({ "kind": "Pod", "spec": { "containers": [ { "name": "c" } ] } });
        assert_eq!(
            charge(&quota, &usage("pods", "", "Pod", &bare), &bare, 1).unwrap_err(),
            "failed quota: q: must specify requests.cpu for: c"
        );
        let cm = json!({ "kind": "ConfigMap" });
        assert_eq!(
            charge(&quota, &usage("configmaps", "", "ConfigMap", &cm), &cm, 1),
            Ok(None)
        );
        let deploys = usage("deployments", "apps", "Deployment", &json!({}));
        assert!(deploys.contains_key("count/deployments.apps"));
    }

    fn pod(resources: Value) -> Value {
        json!({ "metadata": { "name": "p" }, "spec": { "containers": [ { "name": "c", "image": "i", "resources": resources } ] } })
    }

    #[test]
    fn defaults_fill_only_what_is_missing_and_are_recorded() {
        let range = json!({ "spec": { "limits": [ { "type": "Container",
            "default": { "cpu": "500m", "memory": "256Mi" }, "defaultRequest": { "cpu": "100m", "memory": "128Mi" } } ] } });
        let mut p = pod(json!({ "limits": { "cpu": "1" } }));
        apply_limit_ranges(&mut p, &[&range]).expect("within bounds");
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["limits"], json!({ "cpu": "1", "memory": "256Mi" }));
        assert_eq!(r["requests"], json!({ "cpu": "100m", "memory": "128Mi" }));
        assert_eq!(
            p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu, memory request for container c; memory limit for container c"
        );
    }

    #[test]
    fn bounds_give_kubernetes_messages() {
        let range = json!({ "spec": { "limits": [ { "type": "Container",
            "max": { "cpu": "1" }, "min": { "memory": "64Mi" }, "maxLimitRequestRatio": { "cpu": "2" } } ] } });
        let mut p = pod(
            json!({ "limits": { "cpu": "2" }, "requests": { "cpu": "500m", "memory": "32Mi" } }),
        );
        let errors = apply_limit_ranges(&mut p, &[&range]).unwrap_err();
        assert_eq!(
            errors,
            [
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        let mut unlimited = pod(json!({ "requests": { "memory": "100Mi" } }));
        let errors = apply_limit_ranges(&mut unlimited, &[&range]).unwrap_err();
        assert_eq!(
            errors,
            ["maximum cpu usage per Container is 1.  No limit is specified"]
        );
    }

    #[test]
    fn pod_bounds_sum_the_containers() {
        let range = json!({ "spec": { "limits": [ { "type": "Pod", "max": { "cpu": "1" } } ] } });
        let mut p = json!({ "metadata": { "name": "p" }, "spec": { "containers": [
            { "name": "a", "resources": { "limits": { "cpu": "600m" } } },
            { "name": "b", "resources": { "limits": { "cpu": "600m" } } } ] } });
        let errors = apply_limit_ranges(&mut p, &[&range]).unwrap_err();
        assert_eq!(
            errors,
            ["maximum cpu usage per Pod is 1, but limit is 1200m"]
        );
        let mut none = pod(json!({}));
        assert!(apply_limit_ranges(&mut none, &[]).is_ok());
    }
}
