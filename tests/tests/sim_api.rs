//! Simulator tests of the API server: replicas over a 3-member store under faults keep
//! optimistic concurrency and give watchers every change once, in order, or a 410.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_sim::run_scenario;
use keel_sim::scenarios;
use keel_tests::{run_named, spec, verdict};

/// The api-replicas scenario passes every invariant on two seeds, with evidence.
#[test]
fn api_replicas_keep_their_invariants() {
    let scenario = scenarios::find("api-replicas").expect("scenario exists");
    for seed in [1, 2] {
        let summary = run_scenario(
            scenario,
            seed,
            scenario.default_duration_ms,
            None,
            None,
            None,
        )
        .unwrap();
        assert!(summary.ok, "seed {seed}: {:?}", summary.invariants);
        let winners = summary
            .invariants
            .iter()
            .find(|v| v.name == "one-winner-per-version")
            .unwrap();
        assert!(
            !winners.detail.starts_with("0 updates"),
            "{}",
            winners.detail
        );
    }
}

/// Two runs of one seed are identical.
#[test]
fn api_replicas_are_deterministic() {
    let scenario = scenarios::find("api-replicas").expect("scenario exists");
    let a = run_scenario(scenario, 9, 12_000, None, None, None).unwrap();
    let b = run_scenario(scenario, 9, 12_000, None, None, None).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
}

/// Status codes, reasons and messages of the API server, step by step (conflicts,
/// finalizers, validation, defaulting, generation, selectors, pagination).
#[test]
fn api_semantics_match_kubernetes() {
    let scenario = scenarios::find("api-semantics").expect("scenario exists");
    let summary =
        run_scenario(scenario, 1, scenario.default_duration_ms, None, None, None).unwrap();
    assert!(summary.ok, "{:?}", summary.invariants);
}

/// A watcher that never acknowledges is cut off (410, "fell behind") while an informer
/// on the same API server keeps receiving every change, before and after the cut.
#[test]
fn a_slow_watcher_is_cut_off_without_slowing_the_others() {
    use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
    use keel_actors::drivers::api_workload::{ApiReport, ApiWorkloadConfig, KIND as WORKLOAD_KIND};
    use keel_actors::message::Report;
    use keel_actors::store::StoreConfig;
    use keel_engine::Address;
    use keel_sim::{FaultSchedule, Machine, NetworkConfig};
    use std::collections::BTreeSet;

    let store = Address::new("s1", keel_actors::store::KIND, 0);
    let apiserver = Address::new("a1", API_KIND, 0);
    let mut api_config = ApiServerConfig::new(vec![store.clone()]);
    api_config.watcher_unacked_max = 50;
    let client = |n: u64, role: &str| {
        (
            Address::new("c1", WORKLOAD_KIND, n as u32),
            spec(
                WORKLOAD_KIND,
                serde_json::to_value(ApiWorkloadConfig {
                    client: n,
                    apiservers: vec![apiserver.clone()],
                    role: role.into(),
                    think_ms: 20,
                    timeout_ms: 3_000,
                    start_ms: 500,
                })
                .unwrap(),
            ),
        )
    };
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
                spec(API_KIND, serde_json::to_value(api_config).unwrap()),
            )],
        },
        Machine {
            name: "c1".into(),
            actors: vec![
                client(1, "writer"),
                client(2, "watcher"),
                client(3, "stalled"),
            ],
        },
    ];
    let (summary, reports) = keel_tests::run_machines(
        "slow-watcher",
        5,
        20_000,
        machines,
        NetworkConfig::default(),
        FaultSchedule::new(Vec::new()),
        Vec::new(),
    )
    .unwrap();
    assert!(summary.ok, "{:?}", summary.invariants);
    let reports: Vec<ApiReport> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Api(report) => Some(report.clone()),
            _ => None,
        })
        .collect();
    let cut_off = reports.iter().position(|r| {
        matches!(r, ApiReport::WatchEnded { client: 3, reason, .. } if reason.contains("fell behind"))
    });
    let cut_off = cut_off.expect("the watcher that never acknowledged was cut off");
    let stalled_events = reports[..cut_off]
        .iter()
        .filter(|r| matches!(r, ApiReport::WatchEvent { client: 3, .. }))
        .count();
    assert!(
        stalled_events >= 50,
        "cut off after {stalled_events} events, before its budget"
    );
    let written: BTreeSet<i64> = reports
        .iter()
        .filter_map(|r| match r {
            ApiReport::Updated { written, .. } | ApiReport::Created { written, .. } => {
                Some(*written)
            }
            _ => None,
        })
        .collect();
    let seen: BTreeSet<i64> = reports
        .iter()
        .filter_map(|r| match r {
            ApiReport::WatchEvent {
                client: 2,
                revision,
                ..
            } => Some(*revision),
            _ => None,
        })
        .collect();
    // The informer's watch is never interrupted from the stalled watcher's cut-off on.
    // Before it, one 410 at the start is the known gap of lazily loaded watch caches
    // (docs/NOTES.md: a list answered before the cache loads, then a watch from that
    // list's version once the cache has loaded at a later one): the informer re-lists
    // and watches again, which has nothing to do with the stalled watcher.
    let ended: Vec<(usize, &String)> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            ApiReport::WatchEnded {
                client: 2, reason, ..
            } => Some((i, reason)),
            _ => None,
        })
        .collect();
    assert!(
        ended.len() <= 1
            && ended
                .iter()
                .all(|(i, reason)| *i < cut_off && reason.starts_with("410")),
        "the informer's watch was interrupted: {ended:?} (cut-off at report {cut_off})"
    );
    let written_after_cut = reports[cut_off..]
        .iter()
        .filter(|r| matches!(r, ApiReport::Updated { .. }))
        .count();
    assert!(
        written_after_cut >= 50,
        "writes went on after the cut ({written_after_cut})"
    );
    // The session that lasts to the end saw every write from its starting version on.
    let from = reports
        .iter()
        .rev()
        .find_map(|r| match r {
            ApiReport::WatchStarted {
                client: 2, from, ..
            } => Some(*from),
            _ => None,
        })
        .unwrap();
    let last_seen = *seen.iter().max().expect("the informer saw events");
    let missing: Vec<&i64> = written
        .range(from + 1..=last_seen)
        .filter(|r| !seen.contains(r))
        .collect();
    assert!(missing.is_empty(), "the informer missed {missing:?}");
    assert!(
        written.range(last_seen + 1..).count() <= 2,
        "the informer fell behind the writer"
    );
}

/// Services created concurrently through three API servers in a namespace with a
/// ResourceQuota of 15 services: exactly 15 are admitted, and the quota's recorded
/// usage matches — racing admissions never overspend and never lose a charge.
#[test]
fn racing_creates_never_overspend_a_quota() {
    use keel_actors::apiserver::messages::{ApiMessage, Verb};
    use keel_actors::drivers::api_script::{ScriptConfig, KIND as SCRIPT_KIND};
    use keel_actors::drivers::api_workload::{ApiReport, KIND as WORKLOAD_KIND};
    use keel_actors::message::Report;
    use keel_actors::Message;
    use keel_engine::Address;
    use keel_sim::{Fault, FaultSchedule, Machine, NetworkConfig, TimedFault};
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct Seen {
        created: BTreeSet<String>,
        quota_used: Option<String>,
        listed: Option<usize>,
    }
    let (apiservers, mut machines) = keel_tests::api_cluster(3);
    let request = keel_tests::default_ns_request;
    // Six creators, two per API server, starting once the quota surely exists.
    let mut clients = Vec::new();
    for n in 1..=6u64 {
        let config = serde_json::json!({ "client": n, "apiservers": [apiservers[(n % 3) as usize]],
            "role": "services", "think_ms": 20, "timeout_ms": 3000, "start_ms": 5000 });
        clients.push((
            Address::new("c1", WORKLOAD_KIND, n as u32),
            spec(WORKLOAD_KIND, config),
        ));
    }
    let script = ScriptConfig {
        apiserver: apiservers[0].clone(),
        steps: vec![
            keel_actors::drivers::api_script::ScriptStep {
                request: request(Verb::Get, "resourcequotas", Some("q"), None),
                use_version_of: None,
            },
            keel_actors::drivers::api_script::ScriptStep {
                request: request(Verb::List, "services", None, None),
                use_version_of: None,
            },
        ],
        start_after_ms: 18_000,
        step_timeout_ms: 3_000,
        wait_ready: false,
    };
    clients.push((
        Address::new("c1", SCRIPT_KIND, 0),
        spec(SCRIPT_KIND, serde_json::to_value(script).unwrap()),
    ));
    machines.push(Machine {
        name: "c1".into(),
        actors: clients,
    });
    let quota = serde_json::json!({ "apiVersion": "v1", "kind": "ResourceQuota", "metadata": { "name": "q" },
        "spec": { "hard": { "services": "15" } } });
    // The quota is created (idempotently, in case the store was still electing) before
    // any service.
    let faults: Vec<TimedFault> = [2_000, 2_500, 3_000, 3_500]
        .into_iter()
        .map(|at_ms| TimedFault {
            at_ms,
            fault: Fault::Inject {
                to: apiservers[1].clone(),
                msg: Box::new(Message::Api(ApiMessage::Request {
                    id: at_ms,
                    request: request(Verb::Create, "resourcequotas", None, Some(quota.clone())),
                })),
            },
        })
        .collect();
    let (summary, reports) = keel_tests::run_machines(
        "quota-race",
        3,
        22_000,
        machines,
        NetworkConfig::default(),
        FaultSchedule::new(faults),
        Vec::new(),
    )
    .unwrap();
    assert!(summary.ok, "{:?}", summary.invariants);
    let mut seen = Seen::default();
    for report in &reports {
        match report {
            Report::Api(ApiReport::ServiceIp { name, .. }) => {
                seen.created.insert(name.clone());
            }
            Report::ApiScript(r) => {
                let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                match r.step {
                    0 => {
                        seen.quota_used = body["status"]["used"]["services"]
                            .as_str()
                            .map(str::to_string)
                    }
                    _ => seen.listed = body["items"].as_array().map(Vec::len),
                }
            }
            _ => {}
        }
    }
    assert_eq!(seen.created.len(), 15, "admitted {:?}", seen.created);
    assert_eq!(seen.quota_used.as_deref(), Some("15"));
    // The `kubernetes` service does not exist in keel's sim (no bootstrap controller):
    // every listed service is one the creators made.
    assert_eq!(seen.listed, Some(15));
}

/// With watch caches of only 3 events and the store compacted every 2 s, informers
/// whose API server dies cannot resume elsewhere: the next server answers 410 and they
/// re-list. Every invariant of
/// api-replicas still holds — a session ends, a re-list follows, nothing is skipped.
#[test]
fn informers_relist_when_the_watch_cache_has_moved_on() {
    use keel_actors::drivers::api_workload::ApiReport;
    use keel_actors::message::Report;

    use keel_sim::{Fault, FaultSchedule, NetworkConfig, TimedFault};

    let mut machines = scenarios::api::machines();
    // Three more informers, one starting on each API server, so that every live server
    // keeps its ConfigMap cache loaded and moving: a watch resumed there is too old.
    let servers: Vec<keel_engine::Address> = (1..=3)
        .map(|i| keel_engine::Address::new(format!("a{i}"), keel_actors::apiserver::KIND, 0))
        .collect();
    let watchers = (0..3u64)
        .map(|i| {
            let client = 10 + i;
            let config = serde_json::json!({ "client": client, "apiservers": servers,
                "role": "watcher", "think_ms": 30, "timeout_ms": 3000, "start_ms": 500 });
            (
                keel_engine::Address::new(
                    "c3",
                    keel_actors::drivers::api_workload::KIND,
                    client as u32,
                ),
                keel_engine::ActorSpec {
                    kind: keel_actors::drivers::api_workload::KIND.into(),
                    config_json: config.to_string(),
                },
            )
        })
        .collect();
    machines.push(keel_sim::Machine {
        name: "c3".into(),
        actors: watchers,
    });
    for machine in &mut machines {
        for (_, spec) in &mut machine.actors {
            if spec.kind == keel_actors::apiserver::KIND {
                let mut config: serde_json::Value =
                    serde_json::from_str(&spec.config_json).unwrap();
                config["watch_cache_events"] = serde_json::json!(3);
                // Compact the store's history every 2 s: a watch resumed from a version
                // a few seconds old cannot be served from history either.
                config["compaction_interval_ms"] = serde_json::json!(2_000);
                spec.config_json = config.to_string();
            }
        }
    }
    let faults = FaultSchedule::new(
        [
            ("a1", 6_000, 9_000),
            ("a2", 12_000, 15_000),
            ("a3", 18_000, 21_000),
        ]
        .into_iter()
        .flat_map(|(node, kill, restart)| {
            [
                TimedFault {
                    at_ms: kill,
                    fault: Fault::Kill { node: node.into() },
                },
                TimedFault {
                    at_ms: restart,
                    fault: Fault::Restart { node: node.into() },
                },
            ]
        })
        .collect(),
    );
    let invariants = scenarios::api::invariants(&faults);
    let (summary, reports) = keel_tests::run_machines(
        "api-relist",
        4,
        30_000,
        machines,
        NetworkConfig::default(),
        faults,
        invariants,
    )
    .unwrap();
    assert!(summary.ok, "{:?}", summary.invariants);
    let relists = reports
        .iter()
        .filter(|r| {
            matches!(r, Report::Api(ApiReport::WatchEnded { reason, .. }) if reason.contains("410"))
        })
        .count();
    assert!(
        relists > 0,
        "no informer had to re-list: {:?}",
        summary.invariants
    );
}

/// Regression (issue 7): seeds 29, 36, 68 and 70 of the default scenario once left a
/// writer behind the balancer with nothing done for the rest of the run — each lost
/// read cost a whole request timeout. Reads are now resent after the client's
/// `read_retransmit_ms`, and `api-writes-resume` holds on them with its explicit bound.
#[test]
fn api_replicas_seeds_that_once_stalled_a_writer() {
    for seed in [29, 36, 68, 70] {
        let summary = run_named("api-replicas", seed, None);
        let resume = verdict(&summary, "api-writes-resume");
        assert!(summary.ok, "seed {seed}: {:?}", summary.invariants);
        assert!(
            resume.detail.contains("every one of 3 writers"),
            "{}",
            resume.detail
        );
    }
}

/// The per-loss allowance of `api-writes-resume` is counted from the network's own
/// reports: seed 2 loses messages of writers after the last fault (the allowance map is
/// not empty) and still holds. (Seed 88 needed the allowance under the node runtime's
/// first ordering — it lost a writer's update, its 409 and its next update after the
/// heal, 10.3 s without an answer, and failed at 9 s without it; later changes to the
/// request path changed that run, and which writers lose what on seed 2.)
#[test]
fn api_writes_resume_allows_a_timeout_per_lost_write() {
    let summary = run_named("api-replicas", 2, None);
    let resume = verdict(&summary, "api-writes-resume");
    assert!(summary.ok, "{:?}", summary.invariants);
    assert!(
        !resume.detail.contains("of its own: {})"),
        "no writer lost a message after the last fault: {}",
        resume.detail
    );
}

/// `api-writes-resume` fails when writers are cut off after the last fault (a one-way
/// cut from their machine to the balancer that never heals): the check can fail.
#[test]
fn api_writes_resume_sees_writers_cut_off() {
    let schedule = keel_sim::FaultSchedule::new(vec![keel_sim::TimedFault {
        at_ms: 25_000,
        fault: keel_sim::Fault::PartitionOneWay {
            from: "c1".into(),
            to: "lb".into(),
        },
    }]);
    let summary = run_named(
        "api-replicas",
        3,
        Some(keel_sim::FaultChoice::Given(schedule)),
    );
    let resume = verdict(&summary, "api-writes-resume");
    assert!(!resume.ok, "{}", resume.detail);
    assert!(
        // A partition's cut is a fault, not a loss: it excuses nothing.
        resume
            .detail
            .contains("1 (never, 0 of its messages lost), 2 (never, 0 of its messages lost)"),
        "{}",
        resume.detail
    );
}

/// The default scenario holds under the nemesis's random schedules too. Seed 4417
/// (regression): the balancer was restarted and its request ids started again at 1, so
/// a late answer to its previous incarnation's GET was handed to a client's update —
/// two winners from resourceVersion 87 at 28.2 s. Request ids now start at a point
/// drawn per incarnation (`client::first_request_id`). Seed 782 (regression of the
/// checker): the network lost the balancer's forward of writer 1's update after the
/// last fault, and `api-writes-resume` did not count losses on the balancer's hop
/// against the writer behind it (now it reads the writer from the update's body).
#[test]
fn api_replicas_hold_under_the_nemesis() {
    for seed in [1, 2, 782, 4417] {
        let summary = run_named(
            "api-replicas",
            seed,
            Some(keel_sim::FaultChoice::Nemesis(Default::default())),
        );
        assert!(summary.ok, "seed {seed}: {:?}", summary.invariants);
    }
}
