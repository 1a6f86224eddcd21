//! A scripted API client: sends a fixed list of requests one after another and reports
//! each answer, for the simulator's `api-semantics` scenario (a golden test of status
//! codes, reasons and messages through real API servers over a real store).
//!
//! A step may take the resourceVersion of an earlier answer (`use_version_of`), so a
//! script can express "update with the version I read" and "update with a stale one".
//!
//! With `wait_ready`, the script first probes the API server (every
//! `READY_PROBE_EVERY_MS`) until it answers ready — the system namespaces exist — as a
//! test framework waits for `/readyz`; otherwise it starts after `start_after_ms` only.

use crate::apiserver::messages::{ApiMessage, ApiRequest};
use crate::message::{Message, Report};
use keel_engine::{Actor, Address, Context, Input};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub const KIND: &str = "api-script";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptStep {
    pub request: ApiRequest,
    /// Put the resourceVersion from this earlier step's answer into the body.
    pub use_version_of: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptConfig {
    pub apiserver: Address,
    pub steps: Vec<ScriptStep>,
    pub start_after_ms: u64,
    pub step_timeout_ms: u64,
    /// Probe the API server after `start_after_ms` until it is ready, then run.
    #[serde(default)]
    pub wait_ready: bool,
}

/// How often a script waiting for readiness probes.
pub const READY_PROBE_EVERY_MS: u64 = 100;
/// Probe ids: far above the step ids (step index + 1).
const PROBE_ID_BASE: u64 = 1 << 62;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptReport {
    pub step: usize,
    pub code: u16,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScriptTimer {
    Next,
    Timeout(usize),
    Probe,
}

pub struct ApiScript {
    config: ScriptConfig,
    step: usize,
    versions: Vec<Option<String>>,
    waiting: bool,
    /// Probes sent while waiting for readiness; `None` once ready (or not waiting).
    probes: Option<u64>,
}

impl ApiScript {
    pub fn new(config: ScriptConfig) -> Result<Self, String> {
        Ok(ApiScript {
            step: 0,
            versions: Vec::new(),
            waiting: false,
            probes: config.wait_ready.then_some(0),
            config,
        })
    }

    fn send(&mut self, ctx: &mut Context<'_, Message, ScriptTimer>) {
        let Some(step) = self.config.steps.get(self.step).cloned() else {
            return;
        };
        let mut request = step.request;
        if let Some(earlier) = step.use_version_of {
            if let (Some(Some(version)), Ok(mut body)) = (
                self.versions.get(earlier),
                serde_json::from_slice::<Value>(&request.body),
            ) {
                body["metadata"]["resourceVersion"] = Value::String(version.clone());
                request.body = serde_json::to_vec(&body).unwrap_or_default();
            }
        }
        self.waiting = true;
        let id = self.step as u64 + 1;
        ctx.send(
            self.config.apiserver.clone(),
            Message::Api(ApiMessage::Request { id, request }),
        );
        ctx.set_timer(
            ScriptTimer::Timeout(self.step),
            Duration::from_millis(self.config.step_timeout_ms),
        );
    }

    fn record(&mut self, ctx: &mut Context<'_, Message, ScriptTimer>, code: u16, body: String) {
        let version = serde_json::from_str::<Value>(&body).ok().and_then(|b| {
            b["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        });
        self.versions.push(version);
        ctx.emit(Message::Report(Report::ApiScript(ScriptReport {
            step: self.step,
            code,
            body,
        })));
        self.step += 1;
        self.waiting = false;
        ctx.set_timer(ScriptTimer::Next, Duration::from_millis(10));
    }
}

impl Actor for ApiScript {
    type Message = Message;
    type Timer = ScriptTimer;

    fn handle(
        &mut self,
        input: Input<Message, ScriptTimer>,
        ctx: &mut Context<'_, Message, ScriptTimer>,
    ) {
        match input {
            Input::Start(_) => {
                let first = if self.probes.is_some() {
                    ScriptTimer::Probe
                } else {
                    ScriptTimer::Next
                };
                ctx.set_timer(first, Duration::from_millis(self.config.start_after_ms));
            }
            Input::Timer(ScriptTimer::Probe) => {
                if let Some(sent) = self.probes.as_mut() {
                    *sent += 1;
                    let id = PROBE_ID_BASE + *sent;
                    ctx.send(
                        self.config.apiserver.clone(),
                        Message::Api(ApiMessage::Probe { id }),
                    );
                    ctx.set_timer(
                        ScriptTimer::Probe,
                        Duration::from_millis(READY_PROBE_EVERY_MS),
                    );
                }
            }
            Input::Message {
                msg: Message::Api(ApiMessage::Response { id, response }),
                ..
            } if id > PROBE_ID_BASE => {
                if self.probes.is_some() && response.code == 200 {
                    self.probes = None;
                    ctx.cancel_timer(ScriptTimer::Probe);
                    self.send(ctx);
                }
            }
            Input::Timer(ScriptTimer::Next) => {
                if !self.waiting {
                    self.send(ctx);
                }
            }
            Input::Timer(ScriptTimer::Timeout(step)) => {
                if self.waiting && step == self.step {
                    self.record(ctx, 0, "no answer".into());
                }
            }
            Input::Message {
                msg: Message::Api(ApiMessage::Response { id, response }),
                ..
            } => {
                if self.waiting && id == self.step as u64 + 1 {
                    let body = String::from_utf8_lossy(&response.body).into_owned();
                    self.record(ctx, response.code, body);
                }
            }
            Input::Message { .. } => {}
        }
    }
}
