//! The controller manager: controllers, logically separate, compiled into one actor
//! that shares one API client (and so one connection and set of informers per
//! resource) as kube-controller-manager does. Each controller is a
//! [`Reconciler`](crate::client::controller::Reconciler) on the controller runtime.
//!
//! Controllers so far:
//! 1. [`quota`] — ResourceQuota usage recount.
//!
//! The actor sets one timer, for the earliest deadline its client and controllers
//! report: it does not tick on a period.

pub mod quota;

use crate::client::api::{ApiClient, ApiClientConfig};
use crate::client::controller::{Controller, ControllerConfig, ControllerStats};
use crate::client::{earliest, Outbox};
use crate::message::Message;
use keel_engine::{Actor, Address, Context, Input, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

pub const KIND: &str = "controller-manager";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControllerManagerConfig {
    /// API servers (or one balancer) to talk to.
    pub apiservers: Vec<Address>,
    #[serde(default)]
    pub client: ApiClientConfig,
    #[serde(default)]
    pub controller: ControllerConfig,
}

impl ControllerManagerConfig {
    pub fn new(apiservers: Vec<Address>) -> Self {
        ControllerManagerConfig {
            apiservers,
            client: ApiClientConfig::default(),
            controller: ControllerConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ManagerTimer {
    /// The earliest deadline of the client and the controllers.
    Wake,
}

type Ctx<'a> = Context<'a, Message, ManagerTimer>;

pub struct ControllerManager {
    config: ControllerManagerConfig,
    client: Option<ApiClient>,
    quota: Controller<quota::QuotaController>,
}

/// Request tags of the quota controller start here (the manager sends none itself).
const QUOTA_TAGS: u64 = 1 << 48;

impl ControllerManager {
    pub fn new(config: ControllerManagerConfig) -> Result<Self, String> {
        config.client.validate()?;
        if config.apiservers.is_empty() {
            return Err("the controller manager needs at least one API server".into());
        }
        let quota = Controller::new(
            quota::QuotaController::new(),
            config.controller.clone(),
            QUOTA_TAGS,
        )?;
        Ok(ControllerManager {
            config,
            client: None,
            quota,
        })
    }

    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let Some(client) = &self.client else {
            return;
        };
        if let Some(at) = earliest(client.next_deadline(), self.quota.next_deadline(now)) {
            // At least 1 ms: a deadline already passed is handled on the next turn.
            let delay = at.since(now).max(Duration::from_millis(1));
            ctx.set_timer(ManagerTimer::Wake, delay);
        }
    }

    fn drive(
        quota: &mut Controller<quota::QuotaController>,
        client: &mut ApiClient,
        out: &mut dyn Outbox,
        now: Time,
        mut outputs: crate::client::api::Outputs,
    ) {
        quota.absorb(client, now, &mut outputs);
        quota.run(client, out, now);
    }
}

impl Actor for ControllerManager {
    type Message = Message;
    type Timer = ManagerTimer;

    fn handle(&mut self, input: Input<Message, ManagerTimer>, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        match input {
            Input::Start(_) => {
                let session = ctx.rng().gen::<u64>() | 1;
                let mut client = match ApiClient::new(
                    self.config.apiservers.clone(),
                    self.config.client.clone(),
                    session,
                ) {
                    Ok(client) => client,
                    Err(reason) => {
                        ctx.control(keel_engine::Control::Fatal { reason });
                        return;
                    }
                };
                if let Err(e) = self.quota.start(&mut client, now) {
                    ctx.control(keel_engine::Control::Fatal {
                        reason: format!("cannot start the quota controller: {e}"),
                    });
                    return;
                }
                self.client = Some(client);
            }
            Input::Timer(ManagerTimer::Wake) => {
                if let Some(client) = self.client.as_mut() {
                    let outputs = client.on_tick(ctx, now);
                    Self::drive(&mut self.quota, client, ctx, now, outputs);
                }
            }
            Input::Message {
                from,
                msg: Message::Api(msg),
            } => {
                if let Some(client) = self.client.as_mut() {
                    let outputs = client.on_message(ctx, now, from, msg);
                    Self::drive(&mut self.quota, client, ctx, now, outputs);
                }
            }
            Input::Message { .. } => {}
        }
        self.wake(ctx);
    }

    fn status(&self) -> serde_json::Value {
        let stats: &ControllerStats = &self.quota.stats;
        json!({
            "quota": {
                "reconciles": stats.reconciles,
                "actions": stats.actions,
                "failed_actions": stats.failed_actions,
                "resyncs": stats.resyncs,
                "queued": self.quota.queued(),
            }
        })
    }
}
