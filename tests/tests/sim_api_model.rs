//! Property test: random interleavings of create, update (fresh and stale), delete, get
//! and list against an in-memory model of what Kubernetes answers, through a real API
//! server over a real store in the simulator, with an informer watching throughout.
//!
//! Each generated case is a sequence of operations on a few ConfigMap names. The model
//! predicts every status code and every object; the informer's watch must deliver
//! exactly the successful writes, in order, with their resourceVersions.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_actors::apiserver::messages::{ApiRequest, ListOptions, Verb};
use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
use keel_actors::drivers::api_script::{
    ScriptConfig, ScriptReport, ScriptStep, KIND as SCRIPT_KIND,
};
use keel_actors::drivers::api_workload::{ApiReport, ApiWorkloadConfig, KIND as WORKLOAD_KIND};
use keel_actors::message::Report;
use keel_actors::store::StoreConfig;
use keel_engine::Address;
use keel_sim::{FaultSchedule, Machine, NetworkConfig};
use keel_tests::spec;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const NAMES: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    /// Update with the version of the latest write (fresh) or an older one (stale).
    Update {
        name: usize,
        stale: bool,
    },
    Delete(usize),
    Get(usize),
    List,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES).prop_map(Op::Create),
        4 => (0..NAMES, any::<bool>()).prop_map(|(name, stale)| Op::Update { name, stale }),
        2 => (0..NAMES).prop_map(Op::Delete),
        1 => (0..NAMES).prop_map(Op::Get),
        1 => Just(Op::List),
    ]
}

fn request(verb: Verb, name: Option<String>, body: Option<Value>) -> ApiRequest {
    ApiRequest {
        verb,
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        subresource: None,
        namespace: Some("default".into()),
        name,
        body: body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default(),
        options: ListOptions::default(),
    }
}

fn configmap(name: &str, value: usize) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": "default" },
            "data": { "v": value.to_string() } })
}

/// What the model expects of one step.
#[derive(Clone, Debug)]
struct Expected {
    code: u16,
    /// For gets and successful writes: the object's `data.v`.
    value: Option<usize>,
    /// For lists: the names, in order.
    names: Option<Vec<String>>,
    /// A successful write the watch must show: (event kind, name).
    event: Option<(&'static str, String)>,
}

/// The model: which names exist with which value, and the steps that wrote each
/// incarnation (whose resourceVersions the script can reuse).
fn plan(ops: &[Op]) -> (Vec<ScriptStep>, Vec<Expected>) {
    let name = |i: usize| format!("cm-{i}");
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    // Per name: the steps that wrote its current incarnation, oldest first.
    let mut writes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut expected = Vec::new();
    for op in ops {
        let index = steps.len();
        let (step, exp) = match op {
            Op::Create(n) => {
                let step = ScriptStep {
                    request: request(Verb::Create, None, Some(configmap(&name(*n), index))),
                    use_version_of: None,
                };
                if live.contains_key(n) {
                    (
                        step,
                        Expected {
                            code: 409,
                            value: None,
                            names: None,
                            event: None,
                        },
                    )
                } else {
                    live.insert(*n, index);
                    writes.insert(*n, vec![index]);
                    (
                        step,
                        Expected {
                            code: 201,
                            value: Some(index),
                            names: None,
                            event: Some(("ADDED", name(*n))),
                        },
                    )
                }
            }
            Op::Update { name: n, stale } => {
                let history = writes.get(n).cloned().unwrap_or_default();
                let version_of = match (stale, history.len()) {
                    (_, 0) => None,
                    (true, len) if len >= 2 => Some(history[len - 2]),
                    (_, len) => Some(history[len - 1]),
                };
                let really_stale = *stale && history.len() >= 2;
                let step = ScriptStep {
                    request: request(
                        Verb::Update,
                        Some(name(*n)),
                        Some(configmap(&name(*n), index)),
                    ),
                    use_version_of: version_of,
                };
                if !live.contains_key(n) {
                    // Gone (or never there): an update with a version cannot create it.
                    (
                        step,
                        Expected {
                            code: 404,
                            value: None,
                            names: None,
                            event: None,
                        },
                    )
                } else if really_stale {
                    (
                        step,
                        Expected {
                            code: 409,
                            value: None,
                            names: None,
                            event: None,
                        },
                    )
                } else {
                    live.insert(*n, index);
                    writes.entry(*n).or_default().push(index);
                    (
                        step,
                        Expected {
                            code: 200,
                            value: Some(index),
                            names: None,
                            event: Some(("MODIFIED", name(*n))),
                        },
                    )
                }
            }
            Op::Delete(n) => {
                let step = ScriptStep {
                    request: request(Verb::Delete, Some(name(*n)), None),
                    use_version_of: None,
                };
                if live.remove(n).is_some() {
                    writes.remove(n);
                    (
                        step,
                        Expected {
                            code: 200,
                            value: None,
                            names: None,
                            event: Some(("DELETED", name(*n))),
                        },
                    )
                } else {
                    (
                        step,
                        Expected {
                            code: 404,
                            value: None,
                            names: None,
                            event: None,
                        },
                    )
                }
            }
            Op::Get(n) => {
                let step = ScriptStep {
                    request: request(Verb::Get, Some(name(*n)), None),
                    use_version_of: None,
                };
                match live.get(n) {
                    Some(v) => (
                        step,
                        Expected {
                            code: 200,
                            value: Some(*v),
                            names: None,
                            event: None,
                        },
                    ),
                    None => (
                        step,
                        Expected {
                            code: 404,
                            value: None,
                            names: None,
                            event: None,
                        },
                    ),
                }
            }
            Op::List => {
                let step = ScriptStep {
                    request: request(Verb::List, None, None),
                    use_version_of: None,
                };
                let names = live.keys().map(|n| name(*n)).collect();
                (
                    step,
                    Expected {
                        code: 200,
                        value: None,
                        names: Some(names),
                        event: None,
                    },
                )
            }
        };
        steps.push(step);
        expected.push(exp);
    }
    (steps, expected)
}

#[derive(Default)]
struct Seen {
    answers: BTreeMap<usize, ScriptReport>,
    /// (kind, name, revision) in the order the informer's watch delivered them.
    events: Vec<(String, String, i64)>,
    sessions: u64,
}

impl Seen {
    /// What the script and the informer reported, from the run's report log.
    fn from_reports(reports: &[Report]) -> Seen {
        let mut seen = Seen::default();
        for report in reports {
            match report {
                Report::ApiScript(r) => {
                    seen.answers.insert(r.step, r.clone());
                }
                Report::Api(ApiReport::WatchEvent {
                    kind,
                    name,
                    revision,
                    ..
                }) => {
                    seen.events.push((kind.clone(), name.clone(), *revision));
                }
                Report::Api(ApiReport::WatchStarted { .. }) => seen.sessions += 1,
                _ => {}
            }
        }
        seen
    }
}

fn run(seed: u64, ops: &[Op]) -> Result<(), String> {
    let (steps, expected) = plan(ops);
    let store = Address::new("s1", keel_actors::store::KIND, 0);
    let apiserver = Address::new("a1", API_KIND, 0);
    let machines = vec![
        Machine {
            name: "s1".into(),
            actors: vec![(
                store.clone(),
                spec(
                    keel_actors::store::KIND,
                    serde_json::to_value(StoreConfig::new(1, vec![(1, store.clone())])).unwrap(),
                ),
            )],
        },
        Machine {
            name: "a1".into(),
            actors: vec![(
                apiserver.clone(),
                spec(
                    API_KIND,
                    serde_json::to_value(ApiServerConfig::new(vec![store])).unwrap(),
                ),
            )],
        },
        Machine {
            name: "c1".into(),
            actors: vec![
                (
                    Address::new("c1", SCRIPT_KIND, 0),
                    spec(
                        SCRIPT_KIND,
                        serde_json::to_value(ScriptConfig {
                            apiserver: apiserver.clone(),
                            steps,
                            start_after_ms: 3_000,
                            step_timeout_ms: 5_000,
                            wait_ready: true,
                        })
                        .unwrap(),
                    ),
                ),
                (
                    Address::new("c1", WORKLOAD_KIND, 1),
                    spec(
                        WORKLOAD_KIND,
                        serde_json::to_value(ApiWorkloadConfig {
                            client: 1,
                            apiservers: vec![apiserver],
                            role: "watcher".into(),
                            think_ms: 100,
                            timeout_ms: 3_000,
                            start_ms: 500,
                        })
                        .unwrap(),
                    ),
                ),
            ],
        },
    ];
    let (summary, reports) = keel_tests::run_machines(
        "api-model",
        seed,
        3_000 + 40 * ops.len() as u64 + 3_000,
        machines,
        NetworkConfig::default(),
        FaultSchedule::new(Vec::new()),
        Vec::new(),
    )?;
    if !summary.ok {
        return Err(format!("run failed: {:?}", summary.invariants));
    }
    let seen = Seen::from_reports(&reports);
    let mut revisions = Vec::new();
    for (index, exp) in expected.iter().enumerate() {
        let answer = seen
            .answers
            .get(&index)
            .ok_or_else(|| format!("step {index} was never answered"))?;
        if answer.code != exp.code {
            return Err(format!(
                "step {index} ({:?}): expected {} got {} {}",
                ops[index], exp.code, answer.code, answer.body
            ));
        }
        let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        if let Some(value) = exp.value {
            if body["data"]["v"] != json!(value.to_string()) {
                return Err(format!(
                    "step {index} ({:?}): expected data.v {value}, got {}",
                    ops[index], answer.body
                ));
            }
        }
        if let Some(names) = &exp.names {
            let got: Vec<String> = body["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if &got != names {
                return Err(format!("step {index}: listed {got:?}, expected {names:?}"));
            }
        }
        if let Some((kind, name)) = &exp.event {
            let revision = body["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<i64>().ok());
            revisions.push((
                kind.to_string(),
                name.clone(),
                if *kind == "DELETED" { None } else { revision },
            ));
        }
    }
    if seen.sessions != 1 {
        return Err(format!(
            "the informer's watch restarted ({} sessions) without faults",
            seen.sessions
        ));
    }
    let events: Vec<(String, String)> = seen
        .events
        .iter()
        .map(|(k, n, _)| (k.clone(), n.clone()))
        .collect();
    let writes: Vec<(String, String)> = revisions
        .iter()
        .map(|(k, n, _)| (k.clone(), n.clone()))
        .collect();
    if events != writes {
        return Err(format!(
            "the watch delivered {events:?}, the writes were {writes:?}"
        ));
    }
    for ((_, _, seen_rv), (_, _, written_rv)) in seen.events.iter().zip(&revisions) {
        if let Some(written) = written_rv {
            if seen_rv != written {
                return Err(format!(
                    "an event carried revision {seen_rv}, its write answered {written}"
                ));
            }
        }
    }
    if seen.events.windows(2).any(|w| w[0].2 >= w[1].2) {
        return Err(format!("watch revisions not increasing: {:?}", seen.events));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn api_matches_the_model(seed in 0u64..1000, ops in proptest::collection::vec(op(), 1..40)) {
        if let Err(e) = run(seed, &ops) {
            prop_assert!(false, "seed {seed}: {e}\nops: {ops:?}");
        }
    }
}

/// One fixed sequence touching every branch, so a plain `cargo test` run always covers
/// them whatever proptest draws.
#[test]
fn a_fixed_interleaving_matches_the_model() {
    let ops = vec![
        Op::Create(0),
        Op::Create(0),
        Op::Update {
            name: 0,
            stale: false,
        },
        Op::Update {
            name: 0,
            stale: true,
        },
        Op::Get(0),
        Op::Create(1),
        Op::List,
        Op::Delete(0),
        Op::Delete(0),
        Op::Update {
            name: 0,
            stale: false,
        },
        Op::Get(0),
        Op::Create(0),
        Op::Update {
            name: 1,
            stale: true,
        },
        Op::List,
    ];
    run(1, &ops).unwrap();
}
