//! The actor behind `keel store put|get|del|watch|member …|status`: one request (or
//! one watch) through the client library, its outcome reported to the host.
//!
//! It prints with `Control::Output` and finishes with `Control::Done`; the real host
//! prints the lines and stops when it is done. Retries, redirects to the leader and
//! ambiguous outcomes are the client library's (see [`crate::store::client`]).

use crate::message::Message;
use crate::store::client::{ClientConfig, StoreClient, WatchOutput};
use crate::store::messages::{
    MemberStatus, StoreMessage, StoreRequest, StoreResponse, WatchCreate,
};
use crate::store::types::{EventType, KeyValue, StoreError};
use keel_engine::{Actor, Address, Context, Control, Input};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const KIND: &str = "store-cli";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CliCommand {
    /// One request; its response is printed.
    Request(StoreRequest),
    /// Ask every endpoint for its status and print the cluster's health.
    Status,
    /// Stream events until stopped.
    Watch(WatchCreate),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CliConfig {
    pub endpoints: Vec<Address>,
    pub command: CliCommand,
    /// Give up after this long without an answer.
    pub timeout_ms: u64,
    /// Print nothing (the caller prints the JSON result).
    #[serde(default)]
    pub quiet: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CliTimer {
    Tick,
}

pub struct StoreCli {
    config: CliConfig,
    client: StoreClient,
    elapsed_ms: u64,
    statuses: Vec<Result<MemberStatus, String>>,
    done: bool,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kv_json(kv: &KeyValue) -> serde_json::Value {
    serde_json::json!({
        "key": text(&kv.key), "value": text(&kv.value),
        "create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
        "version": kv.version, "lease": kv.lease,
    })
}

impl StoreCli {
    pub fn new(config: CliConfig) -> Result<Self, String> {
        let client = StoreClient::new(config.endpoints.clone(), ClientConfig::default(), 0)?;
        Ok(StoreCli {
            config,
            client,
            elapsed_ms: 0,
            statuses: Vec::new(),
            done: false,
        })
    }

    fn output(&self, ctx: &mut Context<'_, Message, CliTimer>, line: String) {
        if !self.config.quiet {
            ctx.control(Control::Output { line });
        }
    }

    fn finish(
        &mut self,
        ctx: &mut Context<'_, Message, CliTimer>,
        ok: bool,
        result: serde_json::Value,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        ctx.control(Control::Done {
            ok,
            result: result.to_string(),
        });
    }

    fn fail(&mut self, ctx: &mut Context<'_, Message, CliTimer>, error: &StoreError) {
        self.output(ctx, format!("Error: {error}"));
        self.finish(
            ctx,
            false,
            serde_json::json!({ "error": error.to_string() }),
        );
    }

    fn on_result(
        &mut self,
        ctx: &mut Context<'_, Message, CliTimer>,
        result: Result<StoreResponse, StoreError>,
    ) {
        let response = match result {
            Ok(r) => r,
            Err(e) => return self.fail(ctx, &e),
        };
        let json = match &response {
            StoreResponse::Range(r) => {
                for kv in &r.kvs {
                    self.output(ctx, text(&kv.key));
                    self.output(ctx, text(&kv.value));
                }
                serde_json::json!({ "revision": r.header_revision, "count": r.count, "more": r.more,
                    "kvs": r.kvs.iter().map(kv_json).collect::<Vec<_>>() })
            }
            StoreResponse::Put(r) => {
                self.output(ctx, "OK".into());
                serde_json::json!({ "revision": r.header_revision })
            }
            StoreResponse::DeleteRange(r) => {
                self.output(ctx, r.deleted.to_string());
                serde_json::json!({ "revision": r.header_revision, "deleted": r.deleted })
            }
            StoreResponse::Members { members, .. } => {
                for m in members {
                    let role = if m.learner { "learner" } else { "voter" };
                    self.output(
                        ctx,
                        format!("{}, {}, {}, {role}", m.id, m.address.node, m.address),
                    );
                }
                serde_json::to_value(members).unwrap_or_default()
            }
            other => {
                let value = serde_json::to_value(other).unwrap_or_default();
                self.output(ctx, value.to_string());
                value
            }
        };
        self.finish(ctx, true, json);
    }

    fn report_status(&mut self, ctx: &mut Context<'_, Message, CliTimer>) {
        let mut best: Option<&MemberStatus> = None;
        for status in self.statuses.iter().flatten() {
            self.output(
                ctx,
                format!(
                    "member {} ({}): {}, term {}, leader {}, applied {}, revision {}",
                    status.id,
                    status.address.node,
                    status.role,
                    status.term,
                    status
                        .leader
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "none".into()),
                    status.applied_index,
                    status.revision
                ),
            );
            if best.is_none_or(|b| status.leader.is_some() && b.leader.is_none()) {
                best = Some(status);
            }
        }
        for error in self.statuses.iter().filter_map(|s| s.as_ref().err()) {
            self.output(ctx, format!("unreachable: {error}"));
        }
        let answered = self.statuses.iter().filter(|s| s.is_ok()).count();
        // Writable only if a member that answered is the leader itself: followers may
        // still name a leader that has just died.
        let leading = self.statuses.iter().flatten().find(|s| s.role == "leader");
        let (line, ok) = match leading.or(best) {
            Some(status) => {
                let voters = status.voters.max(1);
                let quorum = voters / 2 + 1;
                let healthy = answered.min(voters);
                let writable = leading.is_some() && healthy >= quorum;
                (
                    format!(
                        "{voters} members, {healthy} healthy, quorum {quorum}: {}",
                        if writable { "writable" } else { "NOT writable" }
                    ),
                    writable,
                )
            }
            None => ("no member answered".to_string(), false),
        };
        self.output(ctx, line.clone());
        let statuses: Vec<serde_json::Value> = self
            .statuses
            .iter()
            .flatten()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .collect();
        self.finish(
            ctx,
            ok,
            serde_json::json!({ "summary": line, "members": statuses }),
        );
    }
}

impl Actor for StoreCli {
    type Message = Message;
    type Timer = CliTimer;

    fn handle(
        &mut self,
        input: Input<Message, CliTimer>,
        ctx: &mut Context<'_, Message, CliTimer>,
    ) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>() | 1;
                if let Ok(client) = StoreClient::new(
                    self.config.endpoints.clone(),
                    ClientConfig::default(),
                    session,
                ) {
                    self.client = client;
                }
                ctx.set_timer(CliTimer::Tick, Duration::from_millis(100));
                match self.config.command.clone() {
                    CliCommand::Request(request) => {
                        if let Err(e) = self.client.send(ctx, now, request, 0) {
                            self.fail(ctx, &e);
                        }
                    }
                    CliCommand::Status => {
                        // Ask each member directly: status is about that member.
                        for (index, endpoint) in self.config.endpoints.iter().enumerate() {
                            ctx.send(
                                endpoint.clone(),
                                Message::Store(StoreMessage::Request {
                                    id: 1_000_000 + index as u64,
                                    session: 0,
                                    request: StoreRequest::Status,
                                }),
                            );
                        }
                    }
                    CliCommand::Watch(create) => {
                        if let Err(e) = self.client.watch(ctx, now, create) {
                            self.fail(ctx, &e);
                        }
                    }
                }
            }
            Input::Timer(CliTimer::Tick) => {
                ctx.set_timer(CliTimer::Tick, Duration::from_millis(100));
                self.elapsed_ms += 100;
                let (completions, _) = self.client.on_tick(ctx, now);
                for done in completions {
                    self.on_result(ctx, done.result);
                }
                let watching = matches!(self.config.command, CliCommand::Watch(_));
                if !watching && !self.done && self.elapsed_ms >= self.config.timeout_ms {
                    if matches!(self.config.command, CliCommand::Status) {
                        for endpoint in &self.config.endpoints {
                            let answered = self
                                .statuses
                                .iter()
                                .flatten()
                                .any(|s| &s.address == endpoint);
                            if !answered {
                                self.statuses
                                    .push(Err(format!("{endpoint} did not answer")));
                            }
                        }
                        self.report_status(ctx);
                    } else {
                        self.fail(ctx, &StoreError::Timeout);
                    }
                }
                for (_, output) in self.client.take_compacted_watches() {
                    if let WatchOutput::Canceled { reason, .. } = output {
                        self.output(ctx, format!("watch canceled: {reason}"));
                        self.finish(ctx, false, serde_json::json!({ "error": reason }));
                    }
                }
            }
            Input::Message { from, msg } => match msg {
                Message::Store(StoreMessage::Response { id, result, leader }) => {
                    if matches!(self.config.command, CliCommand::Status) {
                        if let Ok(StoreResponse::Status(status)) = result {
                            self.statuses.push(Ok(status));
                        } else if let Err(e) = result {
                            self.statuses.push(Err(format!("{from}: {e}")));
                        }
                        if self.statuses.len() >= self.config.endpoints.len() {
                            self.report_status(ctx);
                        }
                    } else if let Some(done) =
                        self.client.on_response(ctx, now, &from, id, result, leader)
                    {
                        self.on_result(ctx, done.result);
                    }
                }
                Message::Store(StoreMessage::Watch(events)) => {
                    for (_, output) in self.client.on_watch(ctx, now, &from, events) {
                        match output {
                            WatchOutput::Events(events) => {
                                for event in events {
                                    let kind = match event.kind {
                                        EventType::Put => "PUT",
                                        EventType::Delete => "DELETE",
                                    };
                                    self.output(ctx, kind.to_string());
                                    self.output(ctx, text(&event.kv.key));
                                    if event.kind == EventType::Put {
                                        self.output(ctx, text(&event.kv.value));
                                    }
                                }
                            }
                            WatchOutput::Progress { .. } => {}
                            WatchOutput::Canceled { reason, .. } => {
                                self.output(ctx, format!("watch canceled: {reason}"));
                                self.finish(ctx, false, serde_json::json!({ "error": reason }));
                            }
                        }
                    }
                }
                _ => {}
            },
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "done": self.done, "elapsed_ms": self.elapsed_ms })
    }
}
