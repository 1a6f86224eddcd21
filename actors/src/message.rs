//! The bus vocabulary: one enum for every message any keel actor sends.
//!
//! Versioned by [`keel_engine::WIRE_VERSION`]: a change that old peers cannot decode
//! bumps it. Each component owns its variant's payload type in its own module.

use crate::selftest::SelfTestMessage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// The self-test protocol that proves one actor runs in both hosts.
    SelfTest(SelfTestMessage),
}
