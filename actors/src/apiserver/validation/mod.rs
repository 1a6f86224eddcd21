//! Kubernetes validation of objects as clients send them (`serde_json::Value`), with
//! Kubernetes' own field paths and messages, so `kubectl` and client libraries print
//! what users know from a real cluster.
//!
//! Owns: the name and label formats, resource quantities, cron schedules, the per-kind
//! rules ([`validate`]) and the update rules ([`validate_update`]). Touches nothing else:
//! every function is pure and total — a malformed JSON shape becomes a [`Cause`], never
//! a panic.
//!
//! How callers use it:
//! 1. apply defaults (`super::defaults`), then call [`validate`] with the request's
//!    namespace; on an update also call [`validate_update`] with the stored object;
//! 2. if any [`Cause`] comes back, answer 422 `Invalid` with
//!    [`invalid_message`] as `Status.message` and the causes as `details.causes`.
//!
//! Where Kubernetes prints a Go value (`%#v`) we reproduce it for the common shapes (strings,
//! integers, `map[string]string`, `v1.LabelSelector`, `core.ServicePort`); other structured
//! values are shown as compact JSON. Fields that Kubernetes' defaulting fills (a missing
//! `restartPolicy`, port `protocol`, Deployment `strategy`, …) are accepted when absent and
//! checked with their default value, so validation gives the same answer before or after
//! defaulting.
//!
//! Files, in the order a request meets them: [`causes`] (the `Cause` type and Kubernetes'
//! message formats), [`formats`] (names, labels, DNS labels — apimachinery's
//! util/validation), [`quantity`] (resource quantities), [`cron`] (CronJob schedules),
//! [`json`] (typed reads of JSON with type errors as causes), [`metadata`] (object
//! metadata), [`pod`] (pod specs), [`workloads`] (pod templates and selectors inside
//! workloads), [`kinds`] (the per-kind entry points) and [`update`] (what an update may
//! change). Each file sees the others' items through `use super::*`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::selectors::{label_selector_from_json, LabelSelector};

mod causes;
mod cron;
mod formats;
mod json;
mod kinds;
mod metadata;
mod pod;
mod quantity;
mod update;
mod workloads;

pub use causes::*;
use cron::*;
pub use formats::*;
use json::*;
pub use kinds::*;
use metadata::*;
use pod::*;
pub use quantity::*;
pub use update::*;
use workloads::*;

#[cfg(test)]
mod tests;
