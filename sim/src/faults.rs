//! Fault schedules: timed faults a scenario or a property test hands the simulator.
//!
//! A schedule is plain data (serde), so it can be printed with a failing seed, stored in
//! a file and passed back with `keel sim --faults FILE`.

use serde::{Deserialize, Serialize};

/// One fault. Node names are the machine names of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Cut every link between machines of different groups, both ways.
    Partition {
        groups: Vec<Vec<String>>,
    },
    /// Cut the link from `from` to `to` only (`to` still reaches `from`).
    PartitionOneWay {
        from: String,
        to: String,
    },
    /// Restore every cut link.
    Heal,
    /// Power loss: the machine's actors lose their memory and their disks lose writes
    /// not yet synced. It stays down until `Restart`.
    Kill {
        node: String,
    },
    /// Boot the machine again (a running machine is power-cycled first).
    Restart {
        node: String,
    },
    /// Freeze the machine: nothing on it runs, messages wait at its door.
    Pause {
        node: String,
    },
    Resume {
        node: String,
    },
    /// Offset the machine's clock (what `now()` returns there) by this many ms.
    ClockSkew {
        node: String,
        offset_ms: i64,
    },
    /// Kill whichever machine last reported becoming store leader (no-op if none).
    KillStoreLeader,
    /// Restart every machine that is down.
    RestartAll,
    /// Deliver a message to an actor as if a client sent it (membership changes and
    /// other operator actions in scenarios). Answers go nowhere.
    Inject {
        to: keel_engine::Address,
        msg: Box<keel_actors::Message>,
    },
    /// Change network conditions for every link.
    Network {
        latency_min_ms: u64,
        latency_max_ms: u64,
        loss_rate: f64,
        duplicate_rate: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedFault {
    /// Simulated milliseconds since the start of the run.
    pub at_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSchedule {
    pub faults: Vec<TimedFault>,
}

impl Fault {
    /// The links (from, to), by machine name, that this fault cuts: every pair across
    /// the groups of a partition (both ways), the one link of a one-way cut, none else.
    pub fn cut_links(&self) -> Vec<(String, String)> {
        match self {
            Fault::Partition { groups } => {
                let mut links = Vec::new();
                for (i, left) in groups.iter().enumerate() {
                    for (j, right) in groups.iter().enumerate() {
                        if i != j {
                            for a in left {
                                links.extend(right.iter().map(|b| (a.clone(), b.clone())));
                            }
                        }
                    }
                }
                links
            }
            Fault::PartitionOneWay { from, to } => vec![(from.clone(), to.clone())],
            _ => Vec::new(),
        }
    }
}

impl FaultSchedule {
    pub fn new(mut faults: Vec<TimedFault>) -> Self {
        // Stable sort: faults at the same instant keep the order they were given in.
        faults.sort_by_key(|f| f.at_ms);
        FaultSchedule { faults }
    }

    /// Checks that every node named exists and every rate is a probability.
    pub fn validate(&self, nodes: &[String]) -> Result<(), String> {
        let known = |n: &String| -> Result<(), String> {
            if nodes.contains(n) {
                Ok(())
            } else {
                Err(format!(
                    "fault names unknown node {n:?} (nodes: {})",
                    nodes.join(", ")
                ))
            }
        };
        for timed in &self.faults {
            match &timed.fault {
                Fault::Partition { groups } => {
                    for n in groups.iter().flatten() {
                        known(n)?;
                    }
                }
                Fault::PartitionOneWay { from, to } => {
                    known(from)?;
                    known(to)?;
                }
                Fault::Kill { node }
                | Fault::Restart { node }
                | Fault::Pause { node }
                | Fault::Resume { node }
                | Fault::ClockSkew { node, .. } => known(node)?,
                Fault::Network {
                    latency_min_ms,
                    latency_max_ms,
                    loss_rate,
                    duplicate_rate,
                } => {
                    if latency_min_ms > latency_max_ms {
                        return Err("network fault: latency_min_ms exceeds latency_max_ms".into());
                    }
                    for (name, rate) in
                        [("loss_rate", loss_rate), ("duplicate_rate", duplicate_rate)]
                    {
                        if !(0.0..=1.0).contains(rate) {
                            return Err(format!(
                                "network fault: {name} {rate} is not within 0..=1"
                            ));
                        }
                    }
                }
                Fault::Inject { to, .. } => known(&to.node.0)?,
                Fault::Heal | Fault::KillStoreLeader | Fault::RestartAll => {}
            }
        }
        Ok(())
    }

    /// Time of the last fault (0 when there are none). Operator actions (`Inject`) are
    /// part of the workload, not faults, and do not count.
    pub fn last_fault_ms(&self) -> u64 {
        self.faults
            .iter()
            .rev()
            .find(|f| !matches!(f.fault, Fault::Inject { .. }))
            .map(|f| f.at_ms)
            .unwrap_or(0)
    }
}
