//! One node runtime, two hosts: the same schedule of arrivals, driven through the
//! simulator's network adapter with the simulator's limits and through the real host's
//! inbox adapter with the real host's limits, gives the same outputs — every trace
//! event (each input an actor handled, in order, with its time), every envelope sent,
//! every report. The machine is a store member and an API server (local sends between
//! them, zero-delay flush timers, ticks); the arrivals are a client's requests, several
//! at one instant.
//!
//! The hosts' wait shells (madsim's sleep, tokio's select) are restated here as "wake
//! again while the runtime asks, then move the clock to the next arrival or deadline";
//! the adapters and the limits are the hosts' own.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_actors::apiserver::messages::{ApiMessage, Verb};
use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
use keel_actors::store::{StoreConfig, KIND as STORE_KIND};
use keel_actors::{Message, Registry};
use keel_engine::{
    ActorFactory, Address, Clocks, Envelope, MemStorage, NodeId, NodeLimits, NodeOutput,
    NodeRuntime, StartKind, Time,
};
use keel_tests::{default_ns_request, spec};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Host {
    Sim,
    Real,
}

fn clocks(ms: u64) -> Clocks {
    Clocks {
        wall: Time::from_millis(1_767_225_600_000 + ms),
        monotonic_ns: ms * 1_000_000,
    }
}

fn client() -> Address {
    Address::new("c", "client", 0)
}

/// The client's requests: (at ms, message) — bursts at one instant, and singles.
fn schedule() -> Vec<(u64, Message)> {
    let mut id = 0;
    let mut request = |verb: Verb, name: &str, body: Option<serde_json::Value>| {
        id += 1;
        Message::Api(ApiMessage::Request {
            id,
            request: default_ns_request(verb, "configmaps", Some(name), body),
        })
    };
    let configmap = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name}, "data": {"v": value}})
    };
    let mut schedule = Vec::new();
    // Ten creates at one instant: one store flush can carry them all. At 5 s: the
    // member elects itself within 2 s (election timeout plus up to as many ticks of
    // its own jitter) and the API server then creates the default namespace.
    for n in 0..10 {
        let name = format!("cm-{n}");
        let body = configmap(&name, "1");
        let mut message = request(Verb::Create, &name, Some(body));
        if let Message::Api(ApiMessage::Request { request, .. }) = &mut message {
            request.name = None;
        }
        schedule.push((5_000, message));
    }
    // Reads and unconditional updates racing, two instants apart by a microsecond's
    // worth of nothing: the same millisecond.
    for n in 0..5 {
        let name = format!("cm-{n}");
        schedule.push((5_001, request(Verb::Get, &name, None)));
        schedule.push((
            5_001,
            request(Verb::Update, &name, Some(configmap(&name, "2"))),
        ));
    }
    schedule.push((5_400, request(Verb::List, "", None)));
    for n in 0..10 {
        let name = format!("cm-{n}");
        schedule.push((6_000 + n, request(Verb::Delete, &name, None)));
    }
    schedule
}

/// Runs the machine through the schedule under `host`'s adapter with `limits`, until
/// `until_ms`; returns every output in order.
fn run(host: Host, limits: NodeLimits, until_ms: u64) -> Vec<NodeOutput<Message>> {
    let node = NodeId::new("m");
    let store = Address::new("m", STORE_KIND, 0);
    let api = Address::new("m", API_KIND, 0);
    let mut runtime = NodeRuntime::new(node, limits, true).expect("valid limits");
    let mut disks: BTreeMap<Address, MemStorage> = BTreeMap::new();
    let actors = [
        (
            store.clone(),
            spec(
                STORE_KIND,
                serde_json::to_value(StoreConfig::new(1, vec![(1, store.clone())])).unwrap(),
            ),
        ),
        (
            api.clone(),
            spec(
                API_KIND,
                serde_json::to_value(ApiServerConfig::new(vec![store.clone()])).unwrap(),
            ),
        ),
    ];
    for (n, (address, spec)) in actors.into_iter().enumerate() {
        let actor = Registry.build(&address, &spec).expect("the actor builds");
        let disk = disks.entry(address.clone()).or_default();
        runtime
            .start_actor(
                clocks(0),
                address,
                spec,
                actor,
                n as u64 + 1,
                StartKind::Fresh,
                disk,
            )
            .expect("the actor starts");
    }
    let mut outputs: Vec<NodeOutput<Message>> =
        std::iter::from_fn(|| runtime.poll_output()).collect();
    let (sender, mut inbox) = tokio::sync::mpsc::channel::<Envelope<Message>>(4096);
    let mut pending = schedule().into_iter().peekable();
    let mut datagram = 0;
    let mut now = 0;
    while now <= until_ms {
        let mut due = Vec::new();
        while let Some((_, msg)) = pending.next_if(|(at, _)| *at <= now) {
            due.push(Envelope::new(client(), api.clone(), msg));
        }
        match host {
            Host::Sim => {
                let mut arrivals = keel_sim::host::SimArrivals::default();
                for envelope in due {
                    datagram += 1;
                    arrivals.push(datagram, envelope);
                }
                loop {
                    let woke = runtime.wake(clocks(now), &mut arrivals, &mut disks);
                    outputs.extend(std::iter::from_fn(|| runtime.poll_output()));
                    if !woke.again {
                        break;
                    }
                }
            }
            Host::Real => {
                for envelope in due {
                    sender.try_send(envelope).expect("the inbox has room");
                }
                loop {
                    let mut arrivals = keel_runtimes::host::InboxArrivals::new(&mut inbox, None);
                    let woke = runtime.wake(clocks(now), &mut arrivals, &mut disks);
                    outputs.extend(std::iter::from_fn(|| runtime.poll_output()));
                    if !woke.again {
                        break;
                    }
                }
            }
        }
        let next_arrival = pending.peek().map(|(at, _)| *at);
        let next_deadline = runtime.next_deadline().map(|ns| ns.div_ceil(1_000_000));
        now = match next_arrival.into_iter().chain(next_deadline).min() {
            Some(next) => next.max(now + 1),
            None => break,
        };
    }
    outputs
}

/// The (request id, status code) of every answer the client got, in order.
fn answers(outputs: &[NodeOutput<Message>]) -> Vec<(u64, u16)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            NodeOutput::Transmit(Envelope {
                to,
                msg: Message::Api(ApiMessage::Response { id, response }),
                ..
            }) if *to == client() => Some((*id, response.code)),
            _ => None,
        })
        .collect()
}

/// The real host's limits, as `keel node` derives them from its configuration.
fn real_limits() -> NodeLimits {
    let config: keel_runtimes::host::NodeConfig = serde_json::from_value(json!({
        "node": "m", "listen": "127.0.0.1:0", "data_dir": "/nonexistent", "actors": []
    }))
    .expect("a minimal node configuration");
    config.limits()
}

fn sim_limits() -> NodeLimits {
    keel_sim::host::node_limits(&keel_sim::NetworkConfig::default())
}

/// Compares two runs output by output, naming the first difference.
fn assert_same(sim: &[NodeOutput<Message>], real: &[NodeOutput<Message>]) {
    if let Some(at) = sim.iter().zip(real).position(|(a, b)| a != b) {
        panic!(
            "output {at} differs:\n  sim:  {:?}\n  real: {:?}",
            sim[at], real[at]
        );
    }
    assert_eq!(sim.len(), real.len(), "one host produced more outputs");
}

/// The hosts' own adapters and limits (the simulator: one step per turn; the real host:
/// up to 1024) give identical outputs, and the run is not trivial: every request is
/// answered, the creates and updates succeed, the store batched proposals.
#[test]
fn the_simulator_and_the_real_host_run_one_schedule_identically() {
    let sim = run(Host::Sim, sim_limits(), 8_000);
    let real = run(Host::Real, real_limits(), 8_000);
    assert_ne!(sim_limits(), real_limits());
    assert_same(&sim, &real);
    let answers = answers(&real);
    assert_eq!(answers.len(), schedule().len(), "{answers:?}");
    let code = |id: u64| answers.iter().find(|(a, _)| *a == id).map(|(_, c)| *c);
    assert!((1..=10).all(|id| code(id) == Some(201)), "{answers:?}");
    assert!((11..=20).all(|id| code(id) == Some(200)), "{answers:?}");
    let traced = real
        .iter()
        .filter(|o| matches!(o, NodeOutput::Trace(_)))
        .count();
    assert!(traced > 100, "only {traced} inputs handled");
}

/// With a small arrival batch (three per wake) the hand-over is cut mid-burst and turns
/// run in between; both hosts still agree.
#[test]
fn the_hosts_agree_when_a_burst_is_cut_into_batches() {
    let small = |limits: NodeLimits| NodeLimits {
        max_arrivals_per_turn: 3,
        ..limits
    };
    let sim = run(Host::Sim, small(sim_limits()), 8_000);
    let real = run(Host::Real, small(real_limits()), 8_000);
    assert_same(&sim, &real);
    assert_eq!(answers(&real).len(), schedule().len());
}
