//! The self-test protocol: proof that one actor runs in both hosts, with timers,
//! storage and messages across machines.
//!
//! Every node runs one `selftest` actor. Each tick it reserves the next ping sequence
//! number durably (write + sync), then pings every peer. A peer that receives a ping
//! records the highest sequence it has acknowledged from that sender durably before it
//! answers with a pong. So two promises hold across crashes, and the simulator checks
//! both: a sender never reuses a sequence number, and an acknowledgement, once sent, is
//! never forgotten. After every input it also writes an *unsynced* scratch counter, which a crash
//! may lose: that is how runs show unsynced-write loss actually happening.
//!
//! Owns: its storage keys (`incarnation`, `next_seq`, `acked/<peer>`, `scratch`).
//! Touches: nothing but its context.

use crate::message::Message;
use keel_engine::{Actor, Address, Context, Input, StartKind, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: &str = "selftest";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SelfTestMessage {
    Ping { seq: u64, incarnation: u64 },
    Pong { seq: u64, incarnation: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfTestConfig {
    /// The other nodes' self-test actors.
    pub peers: Vec<Address>,
    /// How often to ping every peer.
    #[serde(default = "default_ping_interval_ms")]
    pub ping_interval_ms: u64,
}

fn default_ping_interval_ms() -> u64 {
    100
}

impl SelfTestConfig {
    /// Checks limits: an interval of zero would spin the host.
    pub fn validate(&self) -> Result<(), String> {
        if self.ping_interval_ms == 0 || self.ping_interval_ms > 3_600_000 {
            return Err(format!(
                "ping_interval_ms must be within 1..=3600000, got {}",
                self.ping_interval_ms
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SelfTestTimer {
    Tick,
}

/// What a peer looks like from here.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PeerView {
    /// Highest ping sequence acknowledged to this peer (durable).
    pub acked_seq: u64,
    /// Pongs received from this peer in this incarnation.
    pub pongs_received: u64,
    /// The peer's incarnation as of its last message.
    pub peer_incarnation: u64,
    /// Pings from this peer that reused an already acknowledged sequence number
    /// with a newer incarnation (must stay 0).
    pub reused_seqs: u64,
}

pub struct SelfTest {
    config: SelfTestConfig,
    incarnation: u64,
    next_seq: u64,
    ticks: u64,
    inputs: u64,
    peers: BTreeMap<Address, PeerView>,
    storage_errors: u64,
}

const KEY_INCARNATION: &[u8] = b"incarnation";
const KEY_NEXT_SEQ: &[u8] = b"next_seq";
const KEY_SCRATCH: &[u8] = b"scratch";

fn acked_key(peer: &Address) -> Vec<u8> {
    format!("acked/{peer}").into_bytes()
}

fn read_u64(ctx: &Context<'_, Message, SelfTestTimer>, key: &[u8]) -> u64 {
    match ctx.storage().get(key) {
        Ok(Some(bytes)) if bytes.len() == 8 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes);
            u64::from_le_bytes(raw)
        }
        _ => 0,
    }
}

impl SelfTest {
    pub fn new(config: SelfTestConfig) -> Result<Self, String> {
        config.validate()?;
        let peers = config
            .peers
            .iter()
            .map(|p| (p.clone(), PeerView::default()))
            .collect();
        Ok(SelfTest {
            config,
            incarnation: 0,
            next_seq: 0,
            ticks: 0,
            inputs: 0,
            peers,
            storage_errors: 0,
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.config.ping_interval_ms)
    }

    fn on_start(&mut self, ctx: &mut Context<'_, Message, SelfTestTimer>) {
        self.incarnation = read_u64(ctx, KEY_INCARNATION) + 1;
        self.next_seq = read_u64(ctx, KEY_NEXT_SEQ);
        let keys: Vec<Address> = self.peers.keys().cloned().collect();
        for peer in keys {
            let acked = read_u64(ctx, &acked_key(&peer));
            if let Some(view) = self.peers.get_mut(&peer) {
                view.acked_seq = acked;
            }
        }
        let mut batch = WriteBatch::new();
        batch.put(KEY_INCARNATION, self.incarnation.to_le_bytes().to_vec());
        self.durably(ctx, batch);
        // Spread first ticks so nodes do not ping in lockstep.
        let jitter = rand::Rng::gen_range(ctx.rng(), 0..self.config.ping_interval_ms);
        ctx.set_timer(SelfTestTimer::Tick, Duration::from_millis(jitter + 1));
    }

    /// Writes and syncs; a storage failure is counted and the dependent send skipped by
    /// the caller checking the return value.
    fn durably(
        &mut self,
        ctx: &mut Context<'_, Message, SelfTestTimer>,
        batch: WriteBatch,
    ) -> bool {
        let ok = ctx.persist(batch).is_ok() && ctx.sync().is_ok();
        if !ok {
            self.storage_errors += 1;
        }
        ok
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, Message, SelfTestTimer>) {
        self.ticks += 1;
        let seq = self.next_seq + 1;
        let mut batch = WriteBatch::new();
        batch.put(KEY_NEXT_SEQ, seq.to_le_bytes().to_vec());
        if self.durably(ctx, batch) {
            self.next_seq = seq;
            for peer in self.peers.keys() {
                ctx.send(
                    peer.clone(),
                    Message::SelfTest(SelfTestMessage::Ping {
                        seq,
                        incarnation: self.incarnation,
                    }),
                );
            }
        }
        ctx.set_timer(SelfTestTimer::Tick, self.interval());
    }

    fn on_message(
        &mut self,
        from: Address,
        msg: SelfTestMessage,
        ctx: &mut Context<'_, Message, SelfTestTimer>,
    ) {
        // Only configured peers take part; anything else is ignored.
        if !self.peers.contains_key(&from) {
            return;
        }
        match msg {
            SelfTestMessage::Ping { seq, incarnation } => {
                let acked = self.peers[&from].acked_seq;
                if seq > acked {
                    let mut batch = WriteBatch::new();
                    batch.put(acked_key(&from), seq.to_le_bytes().to_vec());
                    if !self.durably(ctx, batch) {
                        return;
                    }
                }
                if let Some(view) = self.peers.get_mut(&from) {
                    if seq <= view.acked_seq
                        && incarnation > view.peer_incarnation
                        && view.peer_incarnation != 0
                    {
                        view.reused_seqs += 1;
                    }
                    view.acked_seq = view.acked_seq.max(seq);
                    view.peer_incarnation = view.peer_incarnation.max(incarnation);
                }
                ctx.send(
                    from,
                    Message::SelfTest(SelfTestMessage::Pong {
                        seq,
                        incarnation: self.incarnation,
                    }),
                );
            }
            SelfTestMessage::Pong { incarnation, .. } => {
                if let Some(view) = self.peers.get_mut(&from) {
                    view.pongs_received += 1;
                    view.peer_incarnation = view.peer_incarnation.max(incarnation);
                }
            }
        }
    }
}

impl Actor for SelfTest {
    type Message = Message;
    type Timer = SelfTestTimer;

    fn handle(
        &mut self,
        input: Input<Message, SelfTestTimer>,
        ctx: &mut Context<'_, Message, SelfTestTimer>,
    ) {
        self.inputs += 1;
        match input {
            Input::Start(StartKind::Fresh) | Input::Start(StartKind::Restart) => self.on_start(ctx),
            Input::Timer(SelfTestTimer::Tick) => self.on_tick(ctx),
            Input::Message {
                from,
                msg: Message::SelfTest(msg),
            } => self.on_message(from, msg, ctx),
            // Not part of the self-test protocol.
            Input::Message { .. } => {}
        }
        // Unsynced on purpose, after everything else: a crash loses it unless a later
        // sync carried it to disk. That is how runs show unsynced-write loss happening.
        let mut scratch = WriteBatch::new();
        scratch.put(KEY_SCRATCH, self.inputs.to_le_bytes().to_vec());
        if ctx.persist(scratch).is_err() {
            self.storage_errors += 1;
        }
    }

    fn status(&self) -> serde_json::Value {
        let peers: serde_json::Map<String, serde_json::Value> = self
            .peers
            .iter()
            .map(|(addr, view)| {
                (
                    addr.to_string(),
                    serde_json::to_value(view).unwrap_or_default(),
                )
            })
            .collect();
        serde_json::json!({
            "incarnation": self.incarnation,
            "next_seq": self.next_seq,
            "ticks": self.ticks,
            "inputs": self.inputs,
            "storage_errors": self.storage_errors,
            "peers": peers,
        })
    }
}

/// Reads a node's durable acknowledgement of `peer` from its storage (for invariants).
pub fn acked_seq_in_storage(storage: &dyn keel_engine::Storage, peer: &Address) -> u64 {
    match storage.get(&acked_key(peer)) {
        Ok(Some(bytes)) if bytes.len() == 8 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes);
            u64::from_le_bytes(raw)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{ActorCell, ActorSpec, MemStorage, Time};

    fn cell(
        peers: Vec<Address>,
        disk: &mut MemStorage,
    ) -> (ActorCell<Message>, keel_engine::Step<Message>) {
        let config = SelfTestConfig {
            peers,
            ping_interval_ms: 100,
        };
        let spec = ActorSpec {
            kind: KIND.into(),
            config_json: serde_json::to_string(&config).unwrap(),
        };
        ActorCell::start(
            Address::new("n1", KIND, 0),
            spec,
            Box::new(SelfTest::new(config).unwrap()),
            1,
            StartKind::Fresh,
            Time(0),
            disk,
            true,
        )
    }

    /// A pong goes out only after the acknowledgement is synced, and survives a crash.
    #[test]
    fn acknowledgement_is_synced_before_pong() {
        let peer = Address::new("n2", KIND, 0);
        let mut disk = MemStorage::new();
        let (mut cell, _) = cell(vec![peer.clone()], &mut disk);
        let step = cell.deliver(
            Time(1),
            peer.clone(),
            Message::SelfTest(SelfTestMessage::Ping {
                seq: 5,
                incarnation: 1,
            }),
            &mut disk,
        );
        let sync_at = step
            .effects
            .iter()
            .position(|e| matches!(e, keel_engine::Effect::Sync));
        let send_at = step
            .effects
            .iter()
            .position(|e| matches!(e, keel_engine::Effect::Send { .. }));
        assert!(sync_at.unwrap() < send_at.unwrap());
        disk.crash(0);
        assert_eq!(acked_seq_in_storage(&disk, &peer), 5);
    }

    /// After a restart the sequence continues above everything sent before.
    #[test]
    fn sequence_numbers_continue_after_restart() {
        let peer = Address::new("n2", KIND, 0);
        let mut disk = MemStorage::new();
        let (mut c, start) = cell(vec![peer.clone()], &mut disk);
        let firing = start.timers[0].0.clone();
        let step = c.fire(Time(10), &firing, &mut disk).unwrap();
        assert!(step.sends().count() == 1);
        disk.crash(0);
        let (mut c2, start2) = cell(vec![peer], &mut disk);
        let step2 = c2.fire(Time(20), &start2.timers[0].0, &mut disk).unwrap();
        let seq_of = |s: &keel_engine::Step<Message>| match s.sends().next().unwrap().1 {
            Message::SelfTest(SelfTestMessage::Ping { seq, .. }) => *seq,
            other => panic!("{other:?}"),
        };
        assert!(seq_of(&step2) > seq_of(&step));
        assert_eq!(c2.status()["incarnation"], 2);
    }
}
