//! The API server driven through one machine's node runtime by hand (see
//! [`keel_tests::OneMachine`]): protocol corners on an exact schedule.

use keel_actors::apiserver::messages::{ApiMessage, ApiRequest, Verb};
use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
use keel_actors::store::{StoreConfig, KIND as STORE_KIND};
use keel_actors::Message;
use keel_engine::{Address, Envelope};
use keel_tests::{default_ns_request, spec, OneMachine};
use serde_json::json;

/// A store member and an API server on machine "m1", and the address of a client on
/// machine "c" that the test plays.
fn api_machine() -> (OneMachine, Address, Address) {
    api_machine_with(|_| {})
}

/// [`api_machine`] with the API server's configuration adjusted first.
fn api_machine_with(adjust: impl FnOnce(&mut ApiServerConfig)) -> (OneMachine, Address, Address) {
    let store = Address::new("m1", STORE_KIND, 0);
    let api = Address::new("m1", API_KIND, 0);
    let mut machine = OneMachine::new("m1");
    let store_config = StoreConfig::new(1, vec![(1, store.clone())]);
    machine.start(
        &store,
        spec(STORE_KIND, serde_json::to_value(store_config).unwrap()),
    );
    let mut api_config = ApiServerConfig::new(vec![store.clone()]);
    adjust(&mut api_config);
    machine.start(
        &api,
        spec(API_KIND, serde_json::to_value(api_config).unwrap()),
    );
    // The member elects itself and the API server finds it ready.
    machine.advance(5_000);
    machine.take_sent();
    (machine, api, Address::new("c", "client", 0))
}

fn request(id: u64, request: ApiRequest) -> Message {
    Message::Api(ApiMessage::Request { id, request })
}

/// Everything sent to `client`, as API messages.
fn received(machine: &mut OneMachine, client: &Address) -> Vec<ApiMessage> {
    machine
        .take_sent()
        .into_iter()
        .filter(|e| &e.to == client)
        .filter_map(|e| match e.msg {
            Message::Api(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The (request id, status code) of every response, in order.
fn answers(messages: &[ApiMessage]) -> Vec<(u64, u16)> {
    messages
        .iter()
        .filter_map(|m| match m {
            ApiMessage::Response { id, response } => Some((*id, response.code)),
            _ => None,
        })
        .collect()
}

/// The JSON body of the response to request `id`.
fn body_of(messages: &[ApiMessage], id: u64) -> serde_json::Value {
    messages
        .iter()
        .find_map(|m| match m {
            ApiMessage::Response {
                id: answered,
                response,
            } if *answered == id => serde_json::from_slice(&response.body).ok(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no JSON answer to request {id}: {messages:?}"))
}

/// Sends `steps` as requests 1, 2, … one after the other, 100 ms apart.
fn send_in_turn(
    machine: &mut OneMachine,
    api: &Address,
    client: &Address,
    steps: impl IntoIterator<Item = ApiRequest>,
) {
    for (id, step) in (1..).zip(steps) {
        machine.deliver(Envelope::new(
            client.clone(),
            api.clone(),
            request(id, step),
        ));
        machine.advance(100);
    }
}

/// A watch request the bus delivered twice, the copy after the first events: both
/// copies are answered, and exactly one stream of events follows — each change once,
/// with sequence numbers 1, 2, … (before the fix the copy restarted the watch under the
/// same id: "ADDED a" again as event 1, colliding with the first stream's event 1).
#[test]
fn a_duplicated_watch_request_starts_one_stream() {
    let (mut machine, api, client) = api_machine();
    let mut watch = default_ns_request(Verb::Watch, "configmaps", None, None);
    watch.options.watch_id = 9;
    let watch = Envelope::new(client.clone(), api.clone(), request(1, watch));
    let create = |name: &str| {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        default_ns_request(Verb::Create, "configmaps", None, Some(body))
    };
    machine.deliver(watch.clone());
    machine.advance(100);
    machine.deliver(Envelope::new(
        client.clone(),
        api.clone(),
        request(2, create("a")),
    ));
    machine.advance(100);
    // The copy arrives after the stream has begun.
    machine.deliver(watch);
    machine.advance(100);
    machine.deliver(Envelope::new(
        client.clone(),
        api.clone(),
        request(3, create("b")),
    ));
    machine.advance(100);
    let messages = received(&mut machine, &client);
    let answers = answers(&messages);
    assert_eq!(
        answers,
        [(9, 200), (2, 201), (9, 200), (3, 201)],
        "{messages:?}"
    );
    let events: Vec<(u64, String)> = messages
        .iter()
        .filter_map(|m| match m {
            ApiMessage::Event {
                watch_id: 9,
                seq,
                event,
            } => {
                let object: serde_json::Value = serde_json::from_slice(&event.object).unwrap();
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                Some((*seq, format!("{} {name}", event.kind.as_str())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        [(1, "ADDED a".to_string()), (2, "ADDED b".to_string())],
        "{messages:?}"
    );
}

/// Two ConfigMaps created in the same instant in a namespace with a ResourceQuota: both
/// are admitted against the same quota revision, the second write finds the quota
/// changed and is admitted again — both answered 201 and both charged (before, the
/// second got 409 AlreadyExists: the failure branch's quota read was taken for the
/// object's own).
#[test]
fn creates_racing_for_a_quota_are_admitted_again_not_refused() {
    let (mut machine, api, client) = api_machine();
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "10"}}});
    let create = |resource: &str, body: serde_json::Value| {
        default_ns_request(Verb::Create, resource, None, Some(body))
    };
    machine.deliver(Envelope::new(
        client.clone(),
        api.clone(),
        request(1, create("resourcequotas", quota)),
    ));
    machine.advance(100);
    for (id, name) in [(2, "a"), (3, "b")] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        // Handed over together: both admissions read before either writes.
        machine
            .runtime_mut()
            .deliver(Envelope::new(
                client.clone(),
                api.clone(),
                request(id, create("configmaps", body)),
            ))
            .unwrap();
    }
    machine.advance(200);
    let mut get = default_ns_request(Verb::Get, "resourcequotas", Some("q"), None);
    get.options = Default::default();
    machine.deliver(Envelope::new(client.clone(), api.clone(), request(4, get)));
    machine.advance(100);
    let messages = received(&mut machine, &client);
    let answers = answers(&messages);
    assert_eq!(
        answers,
        [(1, 201), (2, 201), (3, 201), (4, 200)],
        "{messages:?}"
    );
    let quota = body_of(&messages, 4);
    assert_eq!(quota["status"]["used"]["configmaps"], "2", "{quota}");
}

/// A delete reads the object and its namespace's quotas in one read and gives the
/// quota back in its write: after create, delete, the quota counts nothing again.
#[test]
fn a_delete_gives_its_quota_back() {
    let (mut machine, api, client) = api_machine();
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "10"}}});
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    let steps = [
        default_ns_request(Verb::Create, "resourcequotas", None, Some(quota)),
        default_ns_request(Verb::Create, "configmaps", None, Some(configmap)),
        default_ns_request(Verb::Delete, "configmaps", Some("a"), None),
        default_ns_request(Verb::Get, "resourcequotas", Some("q"), None),
    ];
    send_in_turn(&mut machine, &api, &client, steps);
    let messages = received(&mut machine, &client);
    assert_eq!(
        answers(&messages),
        [(1, 201), (2, 201), (3, 200), (4, 200)],
        "{messages:?}"
    );
    let quota = body_of(&messages, 4);
    assert_eq!(quota["status"]["used"]["configmaps"], "0", "{quota}");
}

/// A ResourceQuota created under a name that is taken is answered 409 AlreadyExists,
/// also when quotas count quotas (before, the existing quota was charged for its own
/// name: its key twice in one transaction, a 500).
#[test]
fn a_quota_created_twice_is_already_exists() {
    let (mut machine, api, client) = api_machine();
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q"}, "spec": {"hard": {"resourcequotas": "5"}}});
    for id in [1, 2] {
        let create = default_ns_request(Verb::Create, "resourcequotas", None, Some(quota.clone()));
        machine.deliver(Envelope::new(
            client.clone(),
            api.clone(),
            request(id, create),
        ));
        machine.advance(100);
    }
    let messages = received(&mut machine, &client);
    assert_eq!(answers(&messages), [(1, 201), (2, 409)], "{messages:?}");
}

/// Envelopes in flight between the API server's machine ("m1") and the store's ("m2"),
/// moved by hand: everything is delivered until nothing moves, except what `hold`
/// keeps back (returned), and what reaches `client` is collected.
fn exchange(
    api: &mut OneMachine,
    store: &mut OneMachine,
    client: &Address,
    seen: &mut Vec<ApiMessage>,
    hold: &dyn Fn(&Envelope<Message>) -> bool,
) -> Vec<Envelope<Message>> {
    let mut held = Vec::new();
    loop {
        let moving: Vec<Envelope<Message>> = api
            .take_sent()
            .into_iter()
            .chain(store.take_sent())
            .collect();
        if moving.is_empty() {
            return held;
        }
        for envelope in moving {
            if &envelope.to == client {
                if let Message::Api(m) = envelope.msg {
                    seen.push(m);
                }
            } else if hold(&envelope) {
                held.push(envelope);
            } else if envelope.to.node.as_str() == "m2" {
                store.deliver(envelope);
            } else {
                api.deliver(envelope);
            }
        }
    }
}

/// An update that removes the last finalizer of an object being deleted, racing a
/// create that changes the namespace's quota: the removal's write (held back on its way
/// to the store until the create is done) fails on the quota's new revision and is
/// retried as the update it is — the object goes. Before, the retry ran as a delete of
/// an object already marked: answered 200, finalizer left in place, object stuck.
#[test]
fn a_finalizer_removal_that_loses_a_quota_race_is_retried_as_an_update() {
    use keel_actors::store::types::RequestOp;
    use keel_actors::store::{StoreMessage, StoreRequest};
    let store_address = Address::new("m2", STORE_KIND, 0);
    let api_address = Address::new("m1", API_KIND, 0);
    let client = Address::new("c", "client", 0);
    let mut store = OneMachine::new("m2");
    store.start(
        &store_address,
        spec(
            STORE_KIND,
            serde_json::to_value(StoreConfig::new(1, vec![(1, store_address.clone())])).unwrap(),
        ),
    );
    let mut api = OneMachine::new("m1");
    api.start(
        &api_address,
        spec(
            API_KIND,
            serde_json::to_value(ApiServerConfig::new(vec![store_address.clone()])).unwrap(),
        ),
    );
    let mut seen = Vec::new();
    let never = |_: &Envelope<Message>| false;
    for _ in 0..50 {
        store.advance(100);
        api.advance(100);
        exchange(&mut api, &mut store, &client, &mut seen, &never);
    }
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "10"}}});
    let kept = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "f", "finalizers": ["example.com/keep"]}});
    let steps = [
        default_ns_request(Verb::Create, "resourcequotas", None, Some(quota)),
        default_ns_request(Verb::Create, "configmaps", None, Some(kept)),
        default_ns_request(Verb::Delete, "configmaps", Some("f"), None),
    ];
    for (id, step) in (1..).zip(steps) {
        api.deliver(Envelope::new(
            client.clone(),
            api_address.clone(),
            request(id, step),
        ));
        exchange(&mut api, &mut store, &client, &mut seen, &never);
    }
    assert_eq!(answers(&seen), [(1, 201), (2, 201), (3, 200)], "{seen:?}");
    let marked = body_of(&seen, 3);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let mut released = marked.clone();
    let meta = released["metadata"].as_object_mut().unwrap();
    meta.remove("finalizers");
    meta.remove("resourceVersion");
    let update = default_ns_request(Verb::Update, "configmaps", Some("f"), Some(released));
    // The update runs until its removal (a txn deleting f) is on its way to the store.
    let removal = |e: &Envelope<Message>| {
        matches!(&e.msg, Message::Store(StoreMessage::Request { request: StoreRequest::Txn(t), .. })
            if t.success.iter().any(|op| matches!(op, RequestOp::DeleteRange(_))))
    };
    api.deliver(Envelope::new(
        client.clone(),
        api_address.clone(),
        request(4, update),
    ));
    let held = exchange(&mut api, &mut store, &client, &mut seen, &removal);
    assert_eq!(held.len(), 1, "the removal is held: {seen:?}");
    // Meanwhile another ConfigMap is created: the quota's revision moves on.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "g"}});
    let create = default_ns_request(Verb::Create, "configmaps", None, Some(other));
    api.deliver(Envelope::new(
        client.clone(),
        api_address.clone(),
        request(5, create),
    ));
    exchange(&mut api, &mut store, &client, &mut seen, &never);
    for envelope in held {
        store.deliver(envelope);
    }
    exchange(&mut api, &mut store, &client, &mut seen, &never);
    let get = default_ns_request(Verb::Get, "configmaps", Some("f"), None);
    api.deliver(Envelope::new(
        client.clone(),
        api_address.clone(),
        request(6, get),
    ));
    exchange(&mut api, &mut store, &client, &mut seen, &never);
    assert_eq!(
        answers(&seen)[3..],
        [(5, 201), (4, 200), (6, 404)],
        "{seen:?}"
    );
}

/// A Service whose randomly chosen node port is taken draws again on the retry (before,
/// the retry kept the port that collided until the attempts ran out: a 500). Two ports
/// in the range, one held by a Service that asked for it.
#[test]
fn a_node_port_collision_draws_again() {
    const HELD: u64 = 30_001;
    let (mut machine, api, client) =
        api_machine_with(|config| config.node_port_range = (30_000, 30_001));
    let service = |name: &str, node_port: Option<u64>| {
        let mut port = json!({"port": 80});
        if let Some(node_port) = node_port {
            port["nodePort"] = json!(node_port);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "ports": [port], "selector": {"app": name}}})
    };
    let steps = [
        default_ns_request(
            Verb::Create,
            "services",
            None,
            Some(service("a", Some(HELD))),
        ),
        default_ns_request(Verb::Create, "services", None, Some(service("b", None))),
    ];
    send_in_turn(&mut machine, &api, &client, steps);
    let messages = received(&mut machine, &client);
    assert_eq!(answers(&messages), [(1, 201), (2, 201)], "{messages:?}");
    let b = body_of(&messages, 2);
    assert_eq!(b["spec"]["ports"][0]["nodePort"], 30_000, "{b}");
}
