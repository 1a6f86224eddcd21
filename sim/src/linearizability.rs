//! Linearizability checker for recorded key-value client histories.
//!
//! Owns the sequential specification of keel's KV store (one register per key, see
//! [`step`]) and the search that decides whether a concurrent history of calls and
//! returns could have come from it. It touches nothing else: input is a slice of
//! [`Operation`]s, output a [`CheckResult`].
//!
//! # Algorithm
//!
//! 1. **Partition by key.** Registers of different keys never interact, and
//!    linearizability is compositional (a history is linearizable iff every key's
//!    sub-history is), so each key is checked alone. Keys are checked in sorted order;
//!    the first key (in that order) with a definite violation is reported, and when no
//!    key is illegal, the first key whose search ran out of budget.
//! 2. **Event list.** A key's operations become call and return events sorted by time
//!    in a doubly-linked list (indices into vectors, so removal and re-insertion are
//!    O(1)). At equal times calls sort before returns: two operations whose interval
//!    ends touch are treated as concurrent, the more permissive reading.
//! 3. **Just-in-time linearization** (Wing & Gong's search with Lowe's refinement).
//!    Walk the list from the front. A call event met before any return belongs to an
//!    operation that may take effect now: apply it to the current register value; if
//!    the observed output matches the specification, lift the operation (its call and
//!    return leave the list), push it on a stack, and restart from the front. Meeting a
//!    return event means the operation it belongs to was not linearized in time: pop
//!    the last lifted operation, put it back, restore the value it replaced, and try
//!    the next candidate after it. An empty stack at that moment means no
//!    linearization exists.
//! 4. **Memoization.** Each configuration reached is the pair (set of linearized
//!    operations as a bitset, register value). The future of the search depends only on
//!    that pair, so a configuration already in the cache is not explored again. The
//!    cache size is the number of explored states; past `budget_states_per_key` the
//!    check stops with [`CheckResult::Unknown`] rather than running unbounded.
//!
//! The search is a loop over an explicit stack, so histories with many thousands of
//! operations per key cannot overflow the thread stack.
//!
//! # Operations with unknown outcome
//!
//! A client that timed out or lost its connection after sending does not know whether
//! its operation took effect. Such an operation (output [`KvOutput::Unknown`] or
//! `return_ns: None`) is given a return time of +infinity and no constraint on its
//! output: it may take effect at any point after its call, or never. It therefore has
//! no return event in the list (it never forces a backtrack), and the search succeeds
//! as soon as every operation *with* a known outcome is linearized; the unknown ones
//! still pending are those that never took effect (or, equivalently, took effect after
//! everything else). Their effect when they are linearized is the one the
//! specification gives for the register value at that moment (a Cas still only swaps
//! if the value matches). A Get with unknown outcome constrains nothing and has no
//! effect, so it is dropped before the search.
//!
//! # Explaining a violation
//!
//! The checker remembers the deepest point the search reached: the longest prefix of
//! operations it could linearize, and the register value after it. At that point every
//! operation that could have gone next (each one called before the earliest pending
//! return) was tried and gave an output the specification forbids. Those operations,
//! sorted by call time with their times and outputs, are the explanation.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// How many operations an explanation lists before it summarises the rest.
const EXPLANATION_OPERATIONS_MAX: usize = 32;

/// What a client asked of the KV store: the workload's own operation type.
pub use keel_actors::drivers::store_workload::KvOp;

/// What the client observed as the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    Get {
        value: Option<String>,
    },
    Put,
    Delete {
        existed: bool,
    },
    Cas {
        succeeded: bool,
    },
    /// the client never learned the outcome (timeout, connection lost after sending):
    /// it may or may not have taken effect
    Unknown,
}

/// One client operation as recorded: when it was called, when (if ever) it returned,
/// and what the client saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: u64,
    pub input: KvOp,
    pub call_ns: u64,
    /// None when output is Unknown
    pub return_ns: Option<u64>,
    pub output: KvOutput,
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckResult {
    Ok,
    /// `detail` is a human-readable minimal explanation: the operations of that key that
    /// could not be linearized, sorted by call time, with their times and outputs.
    Illegal {
        key: String,
        detail: String,
    },
    /// The search budget was exceeded before a verdict.
    Unknown {
        key: String,
        reason: String,
    },
}

/// The sequential specification: applies `input` to a register holding `value` and
/// returns the new value and the output a correct store answers.
pub fn step(value: &Option<String>, input: &KvOp) -> (Option<String>, KvOutput) {
    match input {
        KvOp::Get { .. } => (
            value.clone(),
            KvOutput::Get {
                value: value.clone(),
            },
        ),
        KvOp::Put { value: written, .. } => (Some(written.clone()), KvOutput::Put),
        KvOp::Delete { .. } => (
            None,
            KvOutput::Delete {
                existed: value.is_some(),
            },
        ),
        KvOp::Cas { expected, new, .. } => {
            let succeeded = value == expected;
            let next = if succeeded {
                new.clone()
            } else {
                value.clone()
            };
            (next, KvOutput::Cas { succeeded })
        }
    }
}

/// Checks a whole history; see the module documentation for the algorithm.
/// `budget_states_per_key` bounds the configurations explored for any one key.
pub fn check_history(history: &[Operation], budget_states_per_key: usize) -> CheckResult {
    let mut operations_by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        operations_by_key
            .entry(operation.input.key())
            .or_default()
            .push(operation);
    }
    let mut first_unknown: Option<CheckResult> = None;
    for (key, operations) in operations_by_key {
        match check_key(key, &operations, budget_states_per_key) {
            CheckResult::Ok => {}
            illegal @ CheckResult::Illegal { .. } => return illegal,
            unknown @ CheckResult::Unknown { .. } => {
                // A definite violation on a later key is more useful than "gave up"
                // here, so keep looking; remember only the first key that gave up.
                first_unknown.get_or_insert(unknown);
            }
        }
    }
    first_unknown.unwrap_or(CheckResult::Ok)
}

/// One operation of a key's sub-history, prepared for the search.
struct PreparedOperation<'a> {
    operation: &'a Operation,
    /// None when the outcome is unknown: any output is accepted and the return time is
    /// +infinity.
    known_output: Option<&'a KvOutput>,
}

impl PreparedOperation<'_> {
    fn return_ns(&self) -> Option<u64> {
        self.known_output.and(self.operation.return_ns)
    }

    /// The register value after this operation takes effect on `value`, or None when
    /// the recorded output contradicts the specification.
    fn apply(&self, value: &Option<String>) -> Option<Option<String>> {
        let (next, expected_output) = step(value, &self.operation.input);
        match self.known_output {
            Some(observed) if *observed != expected_output => None,
            _ => Some(next),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    // Declared first so that, at equal times, calls sort before returns.
    Call,
    Return,
}

/// The event list: a circular doubly-linked list over vectors, node 0 the sentinel.
struct EventList {
    next: Vec<usize>,
    previous: Vec<usize>,
    kind: Vec<EventKind>,
    operation: Vec<usize>,
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
}

const SENTINEL: usize = 0;

impl EventList {
    fn new(operations: &[PreparedOperation<'_>]) -> EventList {
        let mut events: Vec<(u64, EventKind, usize)> = Vec::with_capacity(operations.len() * 2);
        for (index, prepared) in operations.iter().enumerate() {
            events.push((prepared.operation.call_ns, EventKind::Call, index));
            if let Some(return_ns) = prepared.return_ns() {
                events.push((return_ns, EventKind::Return, index));
            }
        }
        events.sort();
        let node_count = events.len() + 1;
        let mut list = EventList {
            next: (0..node_count)
                .map(|node| (node + 1) % node_count)
                .collect(),
            previous: (0..node_count)
                .map(|node| (node + node_count - 1) % node_count)
                .collect(),
            kind: Vec::with_capacity(node_count),
            operation: Vec::with_capacity(node_count),
            call_node: vec![SENTINEL; operations.len()],
            return_node: vec![None; operations.len()],
        };
        // The sentinel's kind and operation are never read.
        list.kind.push(EventKind::Call);
        list.operation.push(usize::MAX);
        for (position, (_, kind, index)) in events.into_iter().enumerate() {
            let node = position + 1;
            list.kind.push(kind);
            list.operation.push(index);
            match kind {
                EventKind::Call => list.call_node[index] = node,
                EventKind::Return => list.return_node[index] = Some(node),
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[SENTINEL]
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        self.previous[next] = previous;
    }

    fn relink(&mut self, node: usize) {
        // Valid only in reverse order of unlinking: the neighbours recorded in `node`
        // are exactly the ones it had when it left.
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        self.previous[next] = node;
    }

    fn lift(&mut self, operation: usize) {
        self.unlink(self.call_node[operation]);
        if let Some(node) = self.return_node[operation] {
            self.unlink(node);
        }
    }

    fn unlift(&mut self, operation: usize) {
        if let Some(node) = self.return_node[operation] {
            self.relink(node);
        }
        self.relink(self.call_node[operation]);
    }
}

/// A fixed-size set of operation indices.
#[derive(Clone)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Bitset {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    fn contains(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// The deepest point the search reached, kept to explain a violation.
struct DeepestPoint {
    linearized_count: usize,
    linearized: Bitset,
    value: Option<String>,
    last_operation: Option<usize>,
}

fn check_key(key: &str, operations: &[&Operation], budget_states_per_key: usize) -> CheckResult {
    let mut prepared: Vec<PreparedOperation<'_>> = Vec::with_capacity(operations.len());
    for &operation in operations {
        let known_output = match (&operation.output, operation.return_ns) {
            (KvOutput::Unknown, _) | (_, None) => None,
            (output, Some(_)) => Some(output),
        };
        if known_output.is_none() && matches!(operation.input, KvOp::Get { .. }) {
            continue;
        }
        if let Some(return_ns) = operation.return_ns {
            if return_ns < operation.call_ns {
                return CheckResult::Illegal {
                    key: key.to_string(),
                    detail: format!(
                        "malformed history: an operation returns before its call: {}",
                        describe(operation)
                    ),
                };
            }
        }
        prepared.push(PreparedOperation {
            operation,
            known_output,
        });
    }
    // Index order is call order, so explanations list operations by call time; the
    // stable sort keeps recording order among equal call times (determinism).
    prepared.sort_by_key(|operation| operation.operation.call_ns);

    let mut events = EventList::new(&prepared);
    let mut linearized = Bitset::new(prepared.len());
    let mut value: Option<String> = None;
    // Each entry: the lifted operation and the register value it replaced.
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut explored: BTreeSet<(Vec<u64>, Option<String>)> = BTreeSet::new();
    let mut known_pending = prepared
        .iter()
        .filter(|operation| operation.known_output.is_some())
        .count();
    let mut deepest = DeepestPoint {
        linearized_count: 0,
        linearized: linearized.clone(),
        value: None,
        last_operation: None,
    };

    let mut node = events.first();
    loop {
        if known_pending == 0 {
            return CheckResult::Ok;
        }
        // The sentinel cannot be reached while a known operation is pending (its return
        // event lies ahead), but backtracking is the safe reading if it ever is.
        let at_return = node == SENTINEL || events.kind[node] == EventKind::Return;
        if !at_return {
            let index = events.operation[node];
            if let Some(next_value) = prepared[index].apply(&value) {
                linearized.set(index);
                if explored.insert((linearized.words.clone(), next_value.clone())) {
                    if explored.len() > budget_states_per_key {
                        return CheckResult::Unknown {
                            key: key.to_string(),
                            reason: format!(
                                "gave up after exploring {} states of the {} operations on key \
                                 {key:?}; the longest linearizable prefix found has {} operations",
                                explored.len(),
                                prepared.len(),
                                deepest.linearized_count.max(stack.len() + 1),
                            ),
                        };
                    }
                    stack.push((index, std::mem::replace(&mut value, next_value)));
                    events.lift(index);
                    if prepared[index].known_output.is_some() {
                        known_pending -= 1;
                    }
                    if stack.len() > deepest.linearized_count {
                        deepest = DeepestPoint {
                            linearized_count: stack.len(),
                            linearized: linearized.clone(),
                            value: value.clone(),
                            last_operation: Some(index),
                        };
                    }
                    node = events.first();
                    continue;
                }
                linearized.clear(index);
            }
            node = events.next[node];
            continue;
        }
        let Some((index, previous_value)) = stack.pop() else {
            return CheckResult::Illegal {
                key: key.to_string(),
                detail: explain(key, &prepared, &deepest),
            };
        };
        value = previous_value;
        linearized.clear(index);
        events.unlift(index);
        if prepared[index].known_output.is_some() {
            known_pending += 1;
        }
        node = events.next[events.call_node[index]];
    }
}

/// The explanation of a violation: the operations that could have gone next at the
/// deepest point of the search, none of which was allowed to.
fn explain(key: &str, prepared: &[PreparedOperation<'_>], deepest: &DeepestPoint) -> String {
    let pending = || (0..prepared.len()).filter(|&index| !deepest.linearized.contains(index));
    // Candidates are the pending operations called no later than the earliest pending
    // return (calls sort before returns at equal times).
    let earliest_return_ns = pending()
        .filter_map(|index| prepared[index].return_ns())
        .min()
        .unwrap_or(u64::MAX);
    let candidates: Vec<usize> = pending()
        .filter(|&index| prepared[index].operation.call_ns <= earliest_return_ns)
        .collect();

    let mut detail = format!(
        "the {} operations on key {key:?} have no linearization; the longest linearizable \
         prefix has {} operations, leaving the value {:?}",
        prepared.len(),
        deepest.linearized_count,
        deepest.value,
    );
    if let Some(last) = deepest.last_operation {
        let _ = write!(
            detail,
            " (its last operation: {})",
            describe(prepared[last].operation)
        );
    }
    detail.push_str("; none of these operations can take effect next:");
    for &index in candidates.iter().take(EXPLANATION_OPERATIONS_MAX) {
        let _ = write!(detail, "\n  {}", describe(prepared[index].operation));
    }
    if candidates.len() > EXPLANATION_OPERATIONS_MAX {
        let _ = write!(
            detail,
            "\n  ... and {} more",
            candidates.len() - EXPLANATION_OPERATIONS_MAX
        );
    }
    detail
}

fn describe(operation: &Operation) -> String {
    let input = match &operation.input {
        KvOp::Get { .. } => "Get".to_string(),
        KvOp::Put { value, .. } => format!("Put {value:?}"),
        KvOp::Delete { .. } => "Delete".to_string(),
        KvOp::Cas { expected, new, .. } => format!("Cas expected {expected:?} new {new:?}"),
    };
    let output = match &operation.output {
        KvOutput::Get { value } => format!("{value:?}"),
        KvOutput::Put => "ok".to_string(),
        KvOutput::Delete { existed } => format!("existed {existed}"),
        KvOutput::Cas { succeeded } => format!("succeeded {succeeded}"),
        KvOutput::Unknown => "outcome unknown".to_string(),
    };
    let return_time = match operation.return_ns {
        Some(return_ns) => format!("{return_ns} ns"),
        None => "never".to_string(),
    };
    format!(
        "client {} {input} [call {} ns, return {return_time}] -> {output}",
        operation.client, operation.call_ns
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const BUDGET: usize = 1_000_000;

    fn get(client: u64, key: &str, call_ns: u64, return_ns: u64, value: Option<&str>) -> Operation {
        Operation {
            client,
            input: KvOp::Get {
                key: key.to_string(),
            },
            call_ns,
            return_ns: Some(return_ns),
            output: KvOutput::Get {
                value: value.map(str::to_string),
            },
        }
    }

    fn put(client: u64, key: &str, value: &str, call_ns: u64, return_ns: u64) -> Operation {
        Operation {
            client,
            input: KvOp::Put {
                key: key.to_string(),
                value: value.to_string(),
            },
            call_ns,
            return_ns: Some(return_ns),
            output: KvOutput::Put,
        }
    }

    fn put_unknown(client: u64, key: &str, value: &str, call_ns: u64) -> Operation {
        Operation {
            client,
            input: KvOp::Put {
                key: key.to_string(),
                value: value.to_string(),
            },
            call_ns,
            return_ns: None,
            output: KvOutput::Unknown,
        }
    }

    fn delete(client: u64, key: &str, call_ns: u64, return_ns: u64, existed: bool) -> Operation {
        Operation {
            client,
            input: KvOp::Delete {
                key: key.to_string(),
            },
            call_ns,
            return_ns: Some(return_ns),
            output: KvOutput::Delete { existed },
        }
    }

    fn cas(
        client: u64,
        key: &str,
        expected: Option<&str>,
        new: Option<&str>,
        call_ns: u64,
        return_ns: u64,
        succeeded: bool,
    ) -> Operation {
        Operation {
            client,
            input: KvOp::Cas {
                key: key.to_string(),
                expected: expected.map(str::to_string),
                new: new.map(str::to_string),
            },
            call_ns,
            return_ns: Some(return_ns),
            output: KvOutput::Cas { succeeded },
        }
    }

    fn assert_illegal(history: &[Operation], expected_key: &str) -> String {
        match check_history(history, BUDGET) {
            CheckResult::Illegal { key, detail } => {
                assert_eq!(key, expected_key, "{detail}");
                detail
            }
            other => panic!("expected Illegal on {expected_key:?}, got {other:?}"),
        }
    }

    #[test]
    fn sequential_history_of_every_operation_kind_is_ok() {
        // A sequential history that follows the specification is linearizable.
        let history = vec![
            get(1, "k", 0, 1, None),
            delete(1, "k", 2, 3, false),
            put(1, "k", "a", 4, 5),
            get(2, "k", 6, 7, Some("a")),
            cas(2, "k", Some("a"), Some("b"), 8, 9, true),
            cas(1, "k", Some("a"), Some("c"), 10, 11, false),
            get(1, "k", 12, 13, Some("b")),
            delete(2, "k", 14, 15, true),
            cas(1, "k", None, Some("d"), 16, 17, true),
            cas(1, "k", Some("d"), None, 18, 19, true),
            get(2, "k", 20, 21, None),
        ];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
        assert_eq!(check_history(&[], BUDGET), CheckResult::Ok);
    }

    #[test]
    fn concurrent_put_and_get_may_be_ordered_either_way() {
        // A read overlapping a write may see the value before or after it.
        for seen in [None, Some("x")] {
            let history = vec![put(1, "k", "x", 0, 10), get(2, "k", 5, 15, seen)];
            assert_eq!(check_history(&history, BUDGET), CheckResult::Ok, "{seen:?}");
        }
        // Touching intervals count as concurrent.
        let history = vec![put(1, "k", "x", 0, 10), get(2, "k", 10, 15, None)];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn stale_read_after_completed_write_is_illegal() {
        // Once a write has returned, a later read may not see the value it overwrote.
        let history = vec![
            put(1, "k", "1", 0, 10),
            put(1, "k", "2", 20, 30),
            get(2, "k", 40, 50, Some("1")),
        ];
        let detail = assert_illegal(&history, "k");
        assert!(detail.contains("client 2 Get [call 40 ns, return 50 ns] -> Some(\"1\")"));
        assert!(detail.contains("leaving the value Some(\"2\")"), "{detail}");
        assert!(!detail.contains("call 0 ns"), "{detail}");
    }

    #[test]
    fn read_of_a_value_never_written_is_illegal() {
        // A read can only return a value some write put there.
        let history = vec![
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 5, 15),
            get(3, "k", 2, 20, Some("c")),
        ];
        let detail = assert_illegal(&history, "k");
        assert!(detail.contains("-> Some(\"c\")"), "{detail}");
    }

    #[test]
    fn cas_outcomes_must_agree_with_the_value() {
        // A Cas succeeds exactly when the value matches, and its effect is seen after.
        let ok = vec![
            put(1, "k", "a", 0, 1),
            cas(1, "k", Some("a"), Some("b"), 2, 3, true),
            get(1, "k", 4, 5, Some("b")),
        ];
        assert_eq!(check_history(&ok, BUDGET), CheckResult::Ok);

        let success_on_wrong_value = vec![
            put(1, "k", "c", 0, 1),
            cas(1, "k", Some("a"), Some("b"), 2, 3, true),
        ];
        assert_illegal(&success_on_wrong_value, "k");

        let failure_on_matching_value = vec![
            put(1, "k", "a", 0, 1),
            cas(1, "k", Some("a"), Some("b"), 2, 3, false),
        ];
        assert_illegal(&failure_on_matching_value, "k");

        let success_not_visible = vec![
            put(1, "k", "a", 0, 1),
            cas(1, "k", Some("a"), Some("b"), 2, 3, true),
            get(1, "k", 4, 5, Some("a")),
        ];
        assert_illegal(&success_not_visible, "k");

        // Two concurrent create-if-absent: at most one may win.
        let both_win = vec![
            cas(1, "k", None, Some("x"), 0, 10, true),
            cas(2, "k", None, Some("y"), 0, 10, true),
        ];
        assert_illegal(&both_win, "k");
        let one_wins = vec![
            cas(1, "k", None, Some("x"), 0, 10, false),
            cas(2, "k", None, Some("y"), 0, 10, true),
            get(3, "k", 20, 30, Some("y")),
        ];
        assert_eq!(check_history(&one_wins, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn delete_existed_must_agree_with_the_value() {
        // Delete reports whether the key had a value, and leaves it absent.
        let ok = vec![
            put(1, "k", "a", 0, 1),
            delete(1, "k", 2, 3, true),
            delete(1, "k", 4, 5, false),
        ];
        assert_eq!(check_history(&ok, BUDGET), CheckResult::Ok);
        let wrong = vec![put(1, "k", "a", 0, 1), delete(1, "k", 2, 3, false)];
        assert_illegal(&wrong, "k");
    }

    #[test]
    fn unknown_put_that_took_effect_is_ok() {
        // A timed-out write may have taken effect; a later read may see it.
        let history = vec![
            put_unknown(1, "k", "x", 0),
            get(2, "k", 100, 110, Some("x")),
        ];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn unknown_put_that_never_took_effect_is_ok() {
        // A timed-out write may never take effect; reads need never see it.
        let history = vec![
            put_unknown(1, "k", "x", 0),
            get(2, "k", 100, 110, None),
            get(2, "k", 200, 210, None),
        ];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn unknown_put_may_take_effect_long_after_later_writes() {
        // An unknown write has no return, so it may land after writes that began later.
        let history = vec![
            put_unknown(1, "k", "x", 0),
            put(2, "k", "y", 10, 20),
            get(3, "k", 30, 40, Some("y")),
            get(3, "k", 50, 60, Some("x")),
        ];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn unknown_outcomes_do_not_excuse_every_anomaly() {
        // An unknown write takes effect once, after its call: these stay illegal.
        // Seen, then unseen with no other write in between: a write cannot be undone.
        let seen_then_unseen = vec![
            put_unknown(1, "k", "x", 0),
            get(2, "k", 100, 110, Some("x")),
            get(2, "k", 200, 210, None),
        ];
        assert_illegal(&seen_then_unseen, "k");

        // Seen after a later write, then that later write's value seen again.
        let flip_flop = vec![
            put_unknown(1, "k", "x", 0),
            put(2, "k", "y", 10, 20),
            get(3, "k", 30, 40, Some("x")),
            get(3, "k", 50, 60, Some("y")),
        ];
        assert_illegal(&flip_flop, "k");

        // Seen before the write was even sent.
        let before_call = vec![get(2, "k", 0, 10, Some("x")), put_unknown(1, "k", "x", 20)];
        assert_illegal(&before_call, "k");

        // An unknown Cas still only swaps when the value matches.
        let unknown_cas = vec![
            put(1, "k", "a", 0, 1),
            Operation {
                client: 2,
                input: KvOp::Cas {
                    key: "k".to_string(),
                    expected: Some("z".to_string()),
                    new: Some("b".to_string()),
                },
                call_ns: 2,
                return_ns: None,
                output: KvOutput::Unknown,
            },
            get(3, "k", 10, 20, Some("b")),
        ];
        assert_illegal(&unknown_cas, "k");
    }

    #[test]
    fn unknown_reads_and_missing_return_times_are_unconstrained() {
        // A Get with unknown output is ignored; a known output without a return time
        // is treated as unknown too.
        let history = vec![
            Operation {
                client: 1,
                input: KvOp::Get {
                    key: "k".to_string(),
                },
                call_ns: 0,
                return_ns: None,
                output: KvOutput::Get {
                    value: Some("never".to_string()),
                },
            },
            Operation {
                client: 2,
                input: KvOp::Get {
                    key: "k".to_string(),
                },
                call_ns: 0,
                return_ns: Some(5),
                output: KvOutput::Unknown,
            },
            Operation {
                client: 3,
                input: KvOp::Put {
                    key: "k".to_string(),
                    value: "x".to_string(),
                },
                call_ns: 0,
                return_ns: None,
                output: KvOutput::Put,
            },
            get(4, "k", 100, 110, None),
        ];
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
    }

    #[test]
    fn keys_are_checked_independently_in_sorted_order() {
        // Each key is its own register, and the first illegal key in sorted order is
        // the one reported.
        let independent = vec![
            put(1, "a", "1", 0, 10),
            put(2, "b", "2", 20, 30),
            get(1, "a", 40, 50, Some("1")),
            get(2, "b", 40, 50, Some("2")),
        ];
        assert_eq!(check_history(&independent, BUDGET), CheckResult::Ok);

        let mut two_illegal = independent.clone();
        two_illegal.push(get(3, "c", 60, 70, Some("ghost")));
        two_illegal.push(get(3, "b", 60, 70, Some("1")));
        assert_illegal(&two_illegal, "b");
    }

    #[test]
    fn exhausted_budget_reports_unknown_and_illegal_keys_win() {
        // The search stops at its budget, and a definite violation elsewhere is
        // preferred over "gave up".
        let history = vec![
            put(1, "a", "1", 0, 100),
            put(2, "a", "2", 0, 100),
            put(3, "a", "3", 0, 100),
            get(4, "a", 200, 300, Some("4")),
        ];
        match check_history(&history, 2) {
            CheckResult::Unknown { key, reason } => {
                assert_eq!(key, "a");
                assert!(reason.contains("gave up"), "{reason}");
            }
            other => panic!("expected Unknown, got {other:?}"),
        }
        let mut with_illegal = history.clone();
        with_illegal.push(get(5, "b", 0, 1, Some("ghost")));
        assert!(matches!(
            check_history(&with_illegal, 2),
            CheckResult::Illegal { key, .. } if key == "b"
        ));
        assert!(matches!(
            check_history(&history, BUDGET),
            CheckResult::Illegal { .. }
        ));
    }

    #[test]
    fn malformed_interval_is_reported() {
        // An operation that returns before its call is reported, not searched.
        let detail = assert_illegal(&[put(1, "k", "x", 10, 5)], "k");
        assert!(detail.contains("malformed"), "{detail}");
    }

    #[test]
    fn long_sequential_history_does_not_overflow_the_stack() {
        // The search is iterative: ten thousand operations on one key are fine.
        let mut history = Vec::new();
        for index in 0..5_000u64 {
            let value = format!("v{}", index % 7);
            history.push(put(1, "k", &value, index * 4, index * 4 + 1));
            history.push(get(2, "k", index * 4 + 2, index * 4 + 3, Some(&value)));
        }
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
        history.push(get(2, "k", 1_000_000, 1_000_001, Some("v0")));
        assert_illegal(&history, "k");
    }

    /// One generated step: (key, kind, value, expected, new, widen before, widen after,
    /// unknown outcome when 0).
    type Step = (usize, u8, usize, Option<usize>, Option<usize>, u64, u64, u8);

    fn step_strategy() -> impl Strategy<Value = Step> {
        (
            0..3usize,
            0..4u8,
            0..4usize,
            proptest::option::of(0..4usize),
            proptest::option::of(0..4usize),
            0..250u64,
            0..250u64,
            0..8u8,
        )
    }

    /// Runs `steps` one at a time against the specification (so the result is
    /// linearizable), each in its own slot of 100 ns, then widens every interval by
    /// the step's amounts and gives some writes an unknown outcome: the original
    /// linearization points stay inside the widened intervals.
    fn sequential_then_widened(steps: &[Step]) -> Vec<Operation> {
        let mut registers: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut history = Vec::new();
        for (index, &(key, kind, value, expected, new, before, after, unknown)) in
            steps.iter().enumerate()
        {
            let key = format!("k{key}");
            let name = |index: usize| format!("v{index}");
            let input = match kind {
                0 => KvOp::Get { key: key.clone() },
                1 => KvOp::Put {
                    key: key.clone(),
                    value: name(value),
                },
                2 => KvOp::Delete { key: key.clone() },
                _ => KvOp::Cas {
                    key: key.clone(),
                    expected: expected.map(name),
                    new: new.map(name),
                },
            };
            let register = registers.entry(key).or_default();
            let (next, output) = step(register, &input);
            *register = next;
            let call_ns = 1_000 + index as u64 * 100;
            let (return_ns, output) = if unknown == 0 {
                (None, KvOutput::Unknown)
            } else {
                (Some(call_ns + 10 + after), output)
            };
            history.push(Operation {
                client: index as u64 % 5,
                input,
                call_ns: call_ns - before,
                return_ns,
                output,
            });
        }
        history
    }

    /// Decides linearizability from the definition: some order of all operations with a
    /// known outcome, plus any of the unknown ones, respects real time (an operation
    /// that returned strictly before another was called comes first) and the
    /// specification. Exponential; for a handful of operations on one key.
    fn brute_force_linearizable(history: &[Operation]) -> bool {
        let known = |op: &Operation| op.return_ns.is_some() && op.output != KvOutput::Unknown;
        let operations: Vec<&Operation> = history
            .iter()
            .filter(|op| known(op) || !matches!(op.input, KvOp::Get { .. }))
            .collect();
        fn search(
            operations: &[&Operation],
            placed: &mut Vec<bool>,
            value: &Option<String>,
        ) -> bool {
            let known = |op: &Operation| op.return_ns.is_some() && op.output != KvOutput::Unknown;
            if (0..operations.len()).all(|index| placed[index] || !known(operations[index])) {
                return true;
            }
            for candidate in 0..operations.len() {
                if placed[candidate] {
                    continue;
                }
                let must_wait = (0..operations.len()).any(|other| {
                    !placed[other]
                        && known(operations[other])
                        && operations[other].return_ns.unwrap_or(u64::MAX)
                            < operations[candidate].call_ns
                });
                if must_wait {
                    continue;
                }
                let (next, output) = step(value, &operations[candidate].input);
                if known(operations[candidate]) && output != operations[candidate].output {
                    continue;
                }
                placed[candidate] = true;
                if search(operations, placed, &next) {
                    return true;
                }
                placed[candidate] = false;
            }
            false
        }
        search(&operations, &mut vec![false; operations.len()], &None)
    }

    /// One generated operation on key "k": (kind, value, expected, new, call, duration,
    /// outcome choice, unknown when 0).
    type RandomOperation = (u8, usize, Option<usize>, Option<usize>, u64, u64, u8, u8);

    fn random_operation() -> impl Strategy<Value = RandomOperation> {
        (
            0..4u8,
            0..2usize,
            proptest::option::of(0..2usize),
            proptest::option::of(0..2usize),
            0..60u64,
            0..40u64,
            0..3u8,
            0..4u8,
        )
    }

    fn random_history(operations: &[RandomOperation]) -> Vec<Operation> {
        let key = || "k".to_string();
        let name = |index: usize| format!("v{index}");
        operations
            .iter()
            .enumerate()
            .map(
                |(
                    client,
                    &(kind, value, expected, new, call_ns, duration_ns, outcome, unknown),
                )| {
                    let (input, output) = match kind {
                        0 => (
                            KvOp::Get { key: key() },
                            KvOutput::Get {
                                value: (outcome < 2).then(|| name(outcome as usize)),
                            },
                        ),
                        1 => (
                            KvOp::Put {
                                key: key(),
                                value: name(value),
                            },
                            KvOutput::Put,
                        ),
                        2 => (
                            KvOp::Delete { key: key() },
                            KvOutput::Delete {
                                existed: outcome == 0,
                            },
                        ),
                        _ => (
                            KvOp::Cas {
                                key: key(),
                                expected: expected.map(name),
                                new: new.map(name),
                            },
                            KvOutput::Cas {
                                succeeded: outcome == 0,
                            },
                        ),
                    };
                    let (return_ns, output) = if unknown == 0 {
                        (None, KvOutput::Unknown)
                    } else {
                        (Some(call_ns + duration_ns), output)
                    };
                    Operation {
                        client: client as u64,
                        input,
                        call_ns,
                        return_ns,
                        output,
                    }
                },
            )
            .collect()
    }

    proptest! {
        #[test]
        fn agrees_with_brute_force_on_small_random_histories(
            operations in proptest::collection::vec(random_operation(), 0..7),
        ) {
            // On arbitrary small histories, legal or not, the search matches the definition.
            let history = random_history(&operations);
            let verdict = check_history(&history, BUDGET);
            prop_assert_eq!(verdict == CheckResult::Ok, brute_force_linearizable(&history), "{:?}", verdict);
        }

        #[test]
        fn widened_sequential_histories_are_linearizable(
            steps in proptest::collection::vec(step_strategy(), 0..40),
        ) {
            // Widening intervals of a legal sequential run never breaks linearizability.
            let history = sequential_then_widened(&steps);
            prop_assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);
        }

        #[test]
        fn a_read_of_a_never_written_value_is_caught(
            steps in proptest::collection::vec(step_strategy(), 1..40),
            pick in any::<proptest::sample::Index>(),
            widen in any::<bool>(),
        ) {
            // Corrupting any read of a sequential history to an unwritten value is illegal.
            let mut steps = steps;
            if !widen {
                for step in &mut steps {
                    (step.5, step.6, step.7) = (0, 0, 1);
                }
            }
            // Always have at least one read to corrupt.
            steps.push((0, 0, 0, None, None, 0, 0, 1));
            let mut history = sequential_then_widened(&steps);
            let reads: Vec<usize> = (0..history.len())
                .filter(|&index| {
                    matches!(history[index].output, KvOutput::Get { .. })
                })
                .collect();
            let chosen = reads[pick.index(reads.len())];
            history[chosen].output = KvOutput::Get { value: Some("never-written".to_string()) };
            let key = history[chosen].input.key().to_string();
            match check_history(&history, BUDGET) {
                CheckResult::Illegal { key: reported, detail } => {
                    prop_assert_eq!(reported, key);
                    prop_assert!(detail.contains("never-written"), "{}", detail);
                }
                other => prop_assert!(false, "expected Illegal, got {:?}", other),
            }
        }
    }

    /// A client of the simulated register in the performance test.
    enum ClientState {
        Idle,
        InFlight { operation: usize, applied: bool },
    }

    #[test]
    fn two_thousand_concurrent_operations_check_quickly() {
        // A realistic linearizable history (8 clients, 20 keys, timeouts) checks Ok.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let operation_count = 2_000;
        let mut registers: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut clients: Vec<ClientState> = (0..8).map(|_| ClientState::Idle).collect();
        // Timed-out operations the store has not applied yet; it may apply them later.
        let mut orphans: Vec<usize> = Vec::new();
        let mut history: Vec<Operation> = Vec::new();
        let mut now_ns = 0u64;
        let apply = |registers: &mut BTreeMap<String, Option<String>>, op: &mut Operation| {
            let register = registers.entry(op.input.key().to_string()).or_default();
            let (next, output) = step(register, &op.input);
            *register = next;
            op.output = output;
        };
        while history.len() < operation_count
            || clients
                .iter()
                .any(|client| !matches!(client, ClientState::Idle))
        {
            now_ns += rng.gen_range(1..20);
            if !orphans.is_empty() && rng.gen_range(0..10) == 0 {
                let orphan = orphans.swap_remove(rng.gen_range(0..orphans.len()));
                apply(&mut registers, &mut history[orphan]);
                history[orphan].output = KvOutput::Unknown;
            }
            let client = rng.gen_range(0..clients.len());
            match clients[client] {
                ClientState::Idle if history.len() < operation_count => {
                    let key = format!("key-{}", rng.gen_range(0..20));
                    let value = |rng: &mut ChaCha8Rng| format!("v{}", rng.gen_range(0..4));
                    let input = match rng.gen_range(0..10) {
                        0..=3 => KvOp::Get { key },
                        4..=6 => KvOp::Put {
                            key,
                            value: value(&mut rng),
                        },
                        7 => KvOp::Delete { key },
                        _ => KvOp::Cas {
                            key,
                            expected: rng.gen_bool(0.8).then(|| value(&mut rng)),
                            new: rng.gen_bool(0.8).then(|| value(&mut rng)),
                        },
                    };
                    clients[client] = ClientState::InFlight {
                        operation: history.len(),
                        applied: false,
                    };
                    history.push(Operation {
                        client: client as u64,
                        input,
                        call_ns: now_ns,
                        return_ns: None,
                        output: KvOutput::Unknown,
                    });
                }
                ClientState::Idle => {}
                ClientState::InFlight { operation, applied } => {
                    if rng.gen_range(0..50) == 0 {
                        // Timeout: the outcome stays unknown; an unapplied operation
                        // may still land later, or never.
                        if !applied && rng.gen_bool(0.5) {
                            orphans.push(operation);
                        }
                        history[operation].output = KvOutput::Unknown;
                        clients[client] = ClientState::Idle;
                    } else if applied {
                        history[operation].return_ns = Some(now_ns);
                        clients[client] = ClientState::Idle;
                    } else {
                        apply(&mut registers, &mut history[operation]);
                        clients[client] = ClientState::InFlight {
                            operation,
                            applied: true,
                        };
                    }
                }
            }
        }
        assert_eq!(history.len(), operation_count);
        assert!(history.iter().any(|op| op.return_ns.is_none()));
        assert_eq!(check_history(&history, BUDGET), CheckResult::Ok);

        // The same history with one read corrupted is caught.
        let read = history
            .iter()
            .position(|op| matches!(op.output, KvOutput::Get { .. }))
            .expect("a 40% read mix over 2,000 operations has a completed read");
        history[read].output = KvOutput::Get {
            value: Some("never-written".to_string()),
        };
        assert!(matches!(
            check_history(&history, BUDGET),
            CheckResult::Illegal { .. }
        ));
    }
}
