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
    let store = Address::new("m1", STORE_KIND, 0);
    let api = Address::new("m1", API_KIND, 0);
    let mut machine = OneMachine::new("m1");
    let store_config = StoreConfig::new(1, vec![(1, store.clone())]);
    machine.start(
        &store,
        spec(STORE_KIND, serde_json::to_value(store_config).unwrap()),
    );
    let api_config = ApiServerConfig::new(vec![store.clone()]);
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
    let quota = messages
        .iter()
        .find_map(|m| match m {
            ApiMessage::Response { id: 4, response } => {
                serde_json::from_slice::<serde_json::Value>(&response.body).ok()
            }
            _ => None,
        })
        .unwrap();
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
    for (id, step) in (1..).zip(steps) {
        machine.deliver(Envelope::new(
            client.clone(),
            api.clone(),
            request(id, step),
        ));
        machine.advance(100);
    }
    let messages = received(&mut machine, &client);
    assert_eq!(
        answers(&messages),
        [(1, 201), (2, 201), (3, 200), (4, 200)],
        "{messages:?}"
    );
    let quota = messages
        .iter()
        .find_map(|m| match m {
            ApiMessage::Response { id: 4, response } => {
                serde_json::from_slice::<serde_json::Value>(&response.body).ok()
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(quota["status"]["used"]["configmaps"], "0", "{quota}");
}
