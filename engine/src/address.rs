//! Addresses: which machine, which component, which instance.
//!
//! An [`Address`] names one actor anywhere in a cluster. Hosts route on the node part;
//! the component and instance select the actor on that node. Addresses order
//! deterministically (derived `Ord`) so they can key `BTreeMap`s.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of a machine in the cluster ("cp1", "worker-3").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn new(name: impl Into<String>) -> Self {
        NodeId(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One actor: `node/component#instance`, for example `cp1/store#0`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    pub node: NodeId,
    pub component: String,
    pub instance: u32,
}

impl Address {
    pub fn new(node: impl Into<String>, component: impl Into<String>, instance: u32) -> Self {
        Address {
            node: NodeId(node.into()),
            component: component.into(),
            instance,
        }
    }

    /// Parses the `node/component#instance` form printed by `Display`.
    pub fn parse(text: &str) -> Option<Address> {
        let (node, rest) = text.split_once('/')?;
        let (component, instance) = match rest.split_once('#') {
            Some((c, i)) => (c, i.parse().ok()?),
            None => (rest, 0),
        };
        if node.is_empty() || component.is_empty() {
            return None;
        }
        Some(Address::new(node, component, instance))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.node, self.component, self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display and parse are inverses.
    #[test]
    fn address_round_trips_through_text() {
        let a = Address::new("cp1", "store", 2);
        assert_eq!(a.to_string(), "cp1/store#2");
        assert_eq!(Address::parse("cp1/store#2"), Some(a));
        assert_eq!(
            Address::parse("cp1/store"),
            Some(Address::new("cp1", "store", 0))
        );
        assert_eq!(Address::parse("nonsense"), None);
        assert_eq!(Address::parse("/x#1"), None);
    }
}
