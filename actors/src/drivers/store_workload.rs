//! A store client that issues a random key-value workload and reports every operation
//! (call and outcome) and every watch event it sees, for the simulator's
//! linearizability and watch checkers.
//!
//! One workload actor runs one operation at a time (a client in the linearizability
//! sense); run several for concurrency. Values are unique (`c<client>-<n>`) so a read
//! names the write it saw. Operations: get (linearizable range), put, delete, and
//! compare-and-swap (a txn comparing the key's value with what this client last read).

use crate::message::{Message, Report};
use crate::store::client::{ClientConfig, Completion, StoreClient, WatchOutput};
use crate::store::messages::{StoreMessage, StoreRequest, StoreResponse, WatchCreate};
use crate::store::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventType, PutRequest, RangeRequest,
    RequestOp, StoreError, TxnRequest,
};
use keel_engine::{Actor, Address, Context, Input};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const KIND: &str = "store-workload";
pub const KEY_PREFIX: &str = "wl/";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadConfig {
    pub client: u64,
    pub endpoints: Vec<Address>,
    /// Keys `wl/0` .. `wl/<keys-1>`.
    pub keys: u32,
    /// Pause between one operation's completion and the next call.
    pub think_ms: u64,
    /// Stop after this many operations (0: never).
    pub ops_max: u64,
    /// Also watch the whole `wl/` prefix from revision 1 and report what arrives.
    pub watch: bool,
    #[serde(default)]
    pub client_config: ClientConfig,
}

impl WorkloadConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.keys == 0 || self.keys > 10_000 {
            return Err("keys must be within 1..=10000".into());
        }
        if self.endpoints.is_empty() {
            return Err("a workload needs at least one store endpoint".into());
        }
        self.client_config.validate()
    }
}

/// One operation on the store seen as a map of registers: what the workload asks and
/// what the simulator's linearizability checker (`keel_sim::linearizability`) models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Compare-and-swap: if the key's value equals `expected` (None: the key is
    /// absent), set it to `new` (None: delete it).
    Cas {
        key: String,
        expected: Option<String>,
        new: Option<String>,
    },
}

impl KvOp {
    /// The key the operation reads or writes.
    pub fn key(&self) -> &str {
        match self {
            KvOp::Get { key }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key }
            | KvOp::Cas { key, .. } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvOutcome {
    Get {
        value: Option<String>,
    },
    Put {
        revision: i64,
    },
    Delete {
        existed: bool,
        revision: i64,
    },
    Cas {
        succeeded: bool,
        revision: i64,
    },
    /// Definitely not applied (refused before it was proposed).
    Failed {
        error: String,
    },
    /// May or may not have been applied.
    Unknown {
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkloadReport {
    Call {
        client: u64,
        op_id: u64,
        op: KvOp,
    },
    Return {
        client: u64,
        op_id: u64,
        outcome: KvOutcome,
    },
    /// A watch event on the workload prefix: (revision, key, put/delete).
    WatchEvent {
        client: u64,
        revision: i64,
        key: String,
        deleted: bool,
    },
    /// The watch was cancelled for good (compaction): the stream ends here.
    WatchEnded {
        client: u64,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkloadTimer {
    Tick,
    Next,
}

pub struct Workload {
    config: WorkloadConfig,
    client: StoreClient,
    ops: u64,
    current: Option<(u64, KvOp)>,
    last_read: std::collections::BTreeMap<String, Option<String>>,
    watching: bool,
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> Result<Self, String> {
        config.validate()?;
        // The session is re-drawn from the actor's RNG at start; this one is a placeholder.
        let client = StoreClient::new(config.endpoints.clone(), config.client_config.clone(), 0)?;
        Ok(Workload {
            config,
            client,
            ops: 0,
            current: None,
            last_read: Default::default(),
            watching: false,
        })
    }

    fn report(&self, ctx: &mut Context<'_, Message, WorkloadTimer>, report: WorkloadReport) {
        ctx.emit(Message::Report(Report::Workload(report)));
    }

    fn next_op(&mut self, ctx: &mut Context<'_, Message, WorkloadTimer>) {
        if self.current.is_some() || (self.config.ops_max > 0 && self.ops >= self.config.ops_max) {
            return;
        }
        self.ops += 1;
        let key = format!("{KEY_PREFIX}{}", ctx.rng().gen_range(0..self.config.keys));
        let value = format!("c{}-{}", self.config.client, self.ops);
        let op = match ctx.rng().gen_range(0..10) {
            0..=3 => KvOp::Get { key },
            4..=6 => KvOp::Put { key, value },
            7 => KvOp::Delete { key },
            _ => KvOp::Cas {
                expected: self.last_read.get(&key).cloned().flatten(),
                key,
                new: Some(value),
            },
        };
        let request = match &op {
            KvOp::Get { key } => StoreRequest::Range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            }),
            KvOp::Put { key, value } => StoreRequest::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }),
            KvOp::Delete { key } => StoreRequest::DeleteRange(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                prev_kv: true,
                ..Default::default()
            }),
            KvOp::Cas { key, expected, new } => {
                let compare = match expected {
                    Some(v) => Compare {
                        key: key.as_bytes().to_vec(),
                        range_end: Vec::new(),
                        result: CompareResult::Equal,
                        target: CompareTarget::Value(v.as_bytes().to_vec()),
                    },
                    None => Compare {
                        key: key.as_bytes().to_vec(),
                        range_end: Vec::new(),
                        result: CompareResult::Equal,
                        target: CompareTarget::Version(0),
                    },
                };
                let swap = match new {
                    Some(new) => RequestOp::Put(PutRequest {
                        key: key.as_bytes().to_vec(),
                        value: new.as_bytes().to_vec(),
                        ..Default::default()
                    }),
                    None => RequestOp::DeleteRange(DeleteRangeRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    }),
                };
                StoreRequest::Txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![swap],
                    failure: Vec::new(),
                })
            }
        };
        let op_id = self.ops;
        let now = ctx.now();
        self.report(
            ctx,
            WorkloadReport::Call {
                client: self.config.client,
                op_id,
                op: op.clone(),
            },
        );
        match self.client.send(ctx, now, request, op_id) {
            Ok(_) => self.current = Some((op_id, op)),
            Err(e) => self.report(
                ctx,
                WorkloadReport::Return {
                    client: self.config.client,
                    op_id,
                    outcome: KvOutcome::Failed {
                        error: e.to_string(),
                    },
                },
            ),
        }
    }

    fn complete(&mut self, ctx: &mut Context<'_, Message, WorkloadTimer>, done: Completion) {
        let Some((op_id, op)) = self.current.take() else {
            return;
        };
        if op_id != done.tag {
            self.current = Some((op_id, op));
            return;
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let outcome = match (&op, done.result) {
            (KvOp::Get { key }, Ok(StoreResponse::Range(r))) => {
                let value = r.kvs.first().map(|kv| text(&kv.value));
                self.last_read.insert(key.clone(), value.clone());
                KvOutcome::Get { value }
            }
            (KvOp::Put { .. }, Ok(StoreResponse::Put(r))) => KvOutcome::Put {
                revision: r.header_revision,
            },
            (KvOp::Delete { .. }, Ok(StoreResponse::DeleteRange(r))) => KvOutcome::Delete {
                existed: r.deleted > 0,
                revision: r.header_revision,
            },
            (KvOp::Cas { .. }, Ok(StoreResponse::Txn(r))) => KvOutcome::Cas {
                succeeded: r.succeeded,
                revision: r.header_revision,
            },
            (_, Ok(other)) => KvOutcome::Failed {
                error: format!("unexpected response {other:?}"),
            },
            (_, Err(StoreError::Ambiguous(e))) => KvOutcome::Unknown { error: e },
            // A read that failed had no effect; a write refused before proposal had none.
            (_, Err(e)) => KvOutcome::Failed {
                error: e.to_string(),
            },
        };
        self.report(
            ctx,
            WorkloadReport::Return {
                client: self.config.client,
                op_id,
                outcome,
            },
        );
        ctx.set_timer(
            WorkloadTimer::Next,
            Duration::from_millis(self.config.think_ms.max(1)),
        );
    }

    fn watch_outputs(
        &mut self,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
        outputs: Vec<(u64, WatchOutput)>,
    ) {
        for (_, output) in outputs {
            match output {
                WatchOutput::Events(events) => {
                    for event in events {
                        self.report(
                            ctx,
                            WorkloadReport::WatchEvent {
                                client: self.config.client,
                                revision: event.kv.mod_revision,
                                key: String::from_utf8_lossy(&event.kv.key).into_owned(),
                                deleted: event.kind == EventType::Delete,
                            },
                        );
                    }
                }
                WatchOutput::Progress { .. } => {}
                WatchOutput::Canceled { reason, .. } => {
                    self.watching = false;
                    self.report(
                        ctx,
                        WorkloadReport::WatchEnded {
                            client: self.config.client,
                            reason,
                        },
                    );
                }
            }
        }
    }
}

impl Actor for Workload {
    type Message = Message;
    type Timer = WorkloadTimer;

    fn handle(
        &mut self,
        input: Input<Message, WorkloadTimer>,
        ctx: &mut Context<'_, Message, WorkloadTimer>,
    ) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>() | 1;
                match StoreClient::new(
                    self.config.endpoints.clone(),
                    self.config.client_config.clone(),
                    session,
                ) {
                    Ok(client) => self.client = client,
                    Err(_) => return,
                }
                ctx.set_timer(WorkloadTimer::Tick, Duration::from_millis(100));
                let first = ctx.rng().gen_range(50..500);
                ctx.set_timer(WorkloadTimer::Next, Duration::from_millis(first));
                if self.config.watch {
                    let create = WatchCreate {
                        watch_id: 0,
                        key: KEY_PREFIX.as_bytes().to_vec(),
                        range_end: crate::store::types::prefix_end(KEY_PREFIX.as_bytes()),
                        start_revision: 1,
                        prev_kv: false,
                        progress_notify: true,
                    };
                    if self.client.watch(ctx, now, create).is_ok() {
                        self.watching = true;
                    }
                }
            }
            Input::Timer(WorkloadTimer::Next) => self.next_op(ctx),
            Input::Timer(WorkloadTimer::Tick) => {
                ctx.set_timer(WorkloadTimer::Tick, Duration::from_millis(100));
                let (completions, outputs) = self.client.on_tick(ctx, now);
                let compacted = self.client.take_compacted_watches();
                for done in completions {
                    self.complete(ctx, done);
                }
                self.watch_outputs(ctx, outputs);
                self.watch_outputs(ctx, compacted);
            }
            Input::Message { from, msg } => match msg {
                Message::Store(StoreMessage::Response { id, result, leader }) => {
                    let done = self.client.on_response(ctx, now, &from, id, result, leader);
                    if let Some(done) = done {
                        self.complete(ctx, done);
                    }
                }
                Message::Store(StoreMessage::Watch(events)) => {
                    let outputs = self.client.on_watch(ctx, now, &from, events);
                    self.watch_outputs(ctx, outputs);
                }
                _ => {}
            },
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "client": self.config.client,
            "ops": self.ops,
            "watching": self.watching,
            "stats": self.client.stats,
        })
    }
}
