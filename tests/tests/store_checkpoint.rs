//! A store member's snapshot costs what changed, not what is stored (issue 9 §4).
//!
//! A member used to snapshot by writing its whole state as one batch every
//! `snapshot_every_entries` entries; at 100 MB that turn took seconds and cost an
//! election. Now it writes what each turn applied, as it applies, and a snapshot only
//! drops the log. This test drives one member by hand (exact schedule, its disk in
//! reach), fills it with far more data than one turn writes, across several snapshots,
//! and checks the largest batch its disk ever took; then restarts it from that disk and
//! reads every key back.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_actors::store::types::{PutRequest, RangeRequest};
use keel_actors::store::{StoreConfig, StoreMessage, StoreRequest, StoreResponse, KIND};
use keel_actors::Message;
use keel_engine::{Address, Envelope};
use keel_tests::{spec, OneMachine};

const VALUE_BYTES: usize = 4096;
const KEYS: u64 = 3000;
const EVERY: u64 = 500;

fn config(address: &Address) -> serde_json::Value {
    let mut config = StoreConfig::new(1, vec![(1, address.clone())]);
    config.snapshot_every_entries = EVERY;
    config.snapshot_catch_up_entries = 100;
    config.state_write_every_entries = 100;
    serde_json::to_value(config).unwrap()
}

fn request(
    client: &Address,
    member: &Address,
    id: u64,
    request: StoreRequest,
) -> Envelope<Message> {
    Envelope::new(
        client.clone(),
        member.clone(),
        Message::Store(StoreMessage::Request {
            id,
            session: 0,
            request,
        }),
    )
}

/// The answers to `client` among what the machine sent, by request id.
fn answers(machine: &mut OneMachine) -> Vec<(u64, Result<StoreResponse, String>)> {
    machine
        .take_sent()
        .into_iter()
        .filter_map(|envelope| match envelope.msg {
            Message::Store(StoreMessage::Response { id, result, .. }) => {
                Some((id, result.map_err(|e| e.to_string())))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_checkpoint_writes_what_changed_and_a_restart_reads_it_back() {
    let member = Address::new("m1", KIND, 0);
    let client = Address::new("c", "client", 0);
    let mut machine = OneMachine::new("m1");
    machine.start(&member, spec(KIND, config(&member)));
    // A single voter elects itself once its election timeout passes.
    machine.advance(5_000);
    let mut acknowledged = 0;
    for id in 1..=KEYS {
        let put = PutRequest {
            key: format!("key-{id:06}").into_bytes(),
            value: vec![(id % 251) as u8; VALUE_BYTES],
            ..Default::default()
        };
        machine.deliver(request(&client, &member, id, StoreRequest::Put(put)));
        machine.advance(1);
        for (_, result) in answers(&mut machine) {
            result.expect("a put on a healthy member succeeds");
            acknowledged += 1;
        }
    }
    machine.advance(100);
    acknowledged += answers(&mut machine).len();
    assert_eq!(acknowledged as u64, KEYS);
    let stats = machine.disk(&member).stats.clone();
    let state_bytes = KEYS as usize * VALUE_BYTES;
    // A turn writes what it applied (here one put: its log entry and its version) and
    // small parts; a snapshot adds nothing big. The state is 12 MB.
    let interval_bytes = 1024 * 1024;
    assert!(
        stats.bytes_written as usize > 2 * state_bytes,
        "the member wrote the values to its log and its checkpoints: {stats:?}"
    );
    assert!(
        (stats.max_batch_bytes as usize) < interval_bytes,
        "the largest batch ({} bytes) must cost one turn's changes (< {interval_bytes}), not the state ({state_bytes}): {stats:?}",
        stats.max_batch_bytes
    );

    // Restarted from what was synced, it holds every acknowledged key with its value.
    let disks = machine.into_disks(0);
    let mut machine = OneMachine::with_disks("m1", disks);
    machine.start(&member, spec(KIND, config(&member)));
    machine.advance(5_000);
    machine.take_sent();
    let range = RangeRequest {
        key: b"key-".to_vec(),
        range_end: b"key.".to_vec(),
        ..Default::default()
    };
    machine.deliver(request(&client, &member, 1, StoreRequest::Range(range)));
    machine.advance(100);
    let answers = answers(&mut machine);
    let Some((_, Ok(StoreResponse::Range(found)))) = answers.first() else {
        panic!("no range answer: {answers:?}");
    };
    assert_eq!(found.kvs.len() as u64, KEYS);
    for kv in &found.kvs {
        let id: u64 = std::str::from_utf8(&kv.key[4..]).unwrap().parse().unwrap();
        assert_eq!(kv.value, vec![(id % 251) as u8; VALUE_BYTES], "key {id}");
    }
}
