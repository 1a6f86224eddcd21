//! A keyed work queue for controllers, with client-go's workqueue semantics in a pure,
//! single-threaded form:
//! * **de-duplication** — a key is queued at most once however often it is added;
//! * **one at a time** — a key taken by [`WorkQueue::pop`] is *processing* until
//!   [`WorkQueue::done`]; adding it meanwhile marks it dirty and it is queued again
//!   when done, so a controller never works on one object twice at once (its actions
//!   for the first pass are still in flight);
//! * **delays** — [`WorkQueue::add_after`] (a reconcile's `requeue_after`) and
//!   [`WorkQueue::add_rate_limited`] (exponential backoff per key, from `backoff_min_ms`
//!   doubling to `backoff_max_ms`, reset by [`WorkQueue::forget`]);
//! * **a bound** — at most `capacity` distinct keys queued, waiting or processing; more
//!   are refused and counted (the controller's resync finds them again).

use keel_engine::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// Distinct keys held at once (queued, delayed or processing).
    pub capacity: usize,
    /// The first rate-limited retry waits this long; each failure doubles it…
    pub backoff_min_ms: u64,
    /// …up to this.
    pub backoff_max_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        // client-go's default controller rate limiter: 5 ms doubling to 1000 s.
        // keel caps lower so a failing object is retried within a simulated run.
        QueueConfig {
            capacity: 100_000,
            backoff_min_ms: 5,
            backoff_max_ms: 60_000,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 || self.backoff_min_ms == 0 {
            return Err("queue capacity and backoff_min_ms must be at least 1".into());
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err("queue backoff_max_ms must be at least backoff_min_ms".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub adds: u64,
    /// Adds of a key already queued, waiting or processing (merged into one pass).
    pub merged: u64,
    pub rate_limited: u64,
    /// Keys refused because the queue was at capacity.
    pub refused: u64,
}

#[derive(Clone, Debug)]
pub struct WorkQueue<K: Ord + Clone> {
    config: QueueConfig,
    /// Keys ready to be taken, in the order they became ready.
    ready: VecDeque<K>,
    queued: BTreeSet<K>,
    /// Keys waiting for a time: key → when, and the same by time.
    waiting: BTreeMap<K, Time>,
    by_time: BTreeSet<(Time, K)>,
    processing: BTreeSet<K>,
    /// Processing keys added again meanwhile.
    dirty: BTreeSet<K>,
    /// Consecutive rate-limited requeues per key.
    failures: BTreeMap<K, u32>,
    pub stats: QueueStats,
}

impl<K: Ord + Clone> WorkQueue<K> {
    pub fn new(config: QueueConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(WorkQueue {
            config,
            ready: VecDeque::new(),
            queued: BTreeSet::new(),
            waiting: BTreeMap::new(),
            by_time: BTreeSet::new(),
            processing: BTreeSet::new(),
            dirty: BTreeSet::new(),
            failures: BTreeMap::new(),
            stats: QueueStats::default(),
        })
    }

    /// Distinct keys held (queued, waiting or processing).
    pub fn len(&self) -> usize {
        // Queued keys are never processing and never waiting; a processing key may
        // also wait (added with a delay meanwhile). No set is built: this runs on
        // every add.
        let waiting_only = self
            .waiting
            .keys()
            .filter(|k| !self.processing.contains(*k))
            .count();
        self.queued.len() + self.processing.len() + waiting_only
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.waiting.is_empty() && self.processing.is_empty()
    }

    fn known(&self, key: &K) -> bool {
        self.queued.contains(key) || self.waiting.contains_key(key) || self.processing.contains(key)
    }

    /// Queues `key` now. Returns false when it was refused (the queue is full).
    pub fn add(&mut self, key: K) -> bool {
        self.stats.adds += 1;
        if self.processing.contains(&key) {
            self.stats.merged += 1;
            self.dirty.insert(key);
            return true;
        }
        if self.queued.contains(&key) {
            self.stats.merged += 1;
            return true;
        }
        if let Some(at) = self.waiting.remove(&key) {
            // Ready now beats ready later.
            self.by_time.remove(&(at, key.clone()));
        } else if self.len() >= self.config.capacity {
            self.stats.refused += 1;
            return false;
        }
        self.queued.insert(key.clone());
        self.ready.push_back(key);
        true
    }

    /// Queues `key` once `delay` has passed (sooner if it is added again before).
    pub fn add_after(&mut self, key: K, now: Time, delay: Duration) -> bool {
        if delay.is_zero() {
            return self.add(key);
        }
        self.stats.adds += 1;
        let at = now.plus(delay);
        if self.queued.contains(&key) {
            self.stats.merged += 1;
            return true;
        }
        if let Some(&earlier) = self.waiting.get(&key) {
            self.stats.merged += 1;
            if earlier <= at {
                return true;
            }
            self.by_time.remove(&(earlier, key.clone()));
        } else if !self.known(&key) && self.len() >= self.config.capacity {
            self.stats.refused += 1;
            return false;
        }
        self.waiting.insert(key.clone(), at);
        self.by_time.insert((at, key));
        true
    }

    /// Queues `key` after its backoff: `backoff_min_ms` doubled for each rate-limited
    /// requeue since it was last [`forget`](WorkQueue::forget)-ten.
    pub fn add_rate_limited(&mut self, key: K, now: Time) -> bool {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let delay_ms = self
            .config
            .backoff_min_ms
            .saturating_mul(1u64 << (*failures).min(40))
            .min(self.config.backoff_max_ms);
        *failures = failures.saturating_add(1);
        self.stats.rate_limited += 1;
        self.add_after(key, now, Duration::from_millis(delay_ms))
    }

    /// Clears `key`'s backoff (its last pass succeeded).
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Rate-limited requeues of `key` since it was last forgotten.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Takes the next ready key (moving keys whose delay has passed to the ready
    /// queue first); it is processing until [`WorkQueue::done`].
    pub fn pop(&mut self, now: Time) -> Option<K> {
        while let Some((at, key)) = self.by_time.first().cloned() {
            if at > now {
                break;
            }
            self.by_time.remove(&(at, key.clone()));
            self.waiting.remove(&key);
            if self.processing.contains(&key) {
                self.dirty.insert(key);
            } else if self.queued.insert(key.clone()) {
                self.ready.push_back(key);
            }
        }
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }

    /// Ends the processing of `key`; if it was added meanwhile it is queued again.
    pub fn done(&mut self, key: &K) {
        if self.processing.remove(key) && self.dirty.remove(key) && self.queued.insert(key.clone())
        {
            // A pending delayed add is superseded by this one.
            if let Some(at) = self.waiting.remove(key) {
                self.by_time.remove(&(at, key.clone()));
            }
            self.ready.push_back(key.clone());
        }
    }

    /// Whether a key is ready to be taken now.
    pub fn has_ready(&self, now: Time) -> bool {
        !self.ready.is_empty() || self.by_time.first().is_some_and(|(at, _)| *at <= now)
    }

    /// When the next delayed key becomes ready.
    pub fn next_deadline(&self) -> Option<Time> {
        self.by_time.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(QueueConfig {
            capacity: 3,
            backoff_min_ms: 10,
            backoff_max_ms: 40,
        })
        .expect("valid")
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// A key added many times is taken once; order is first-added first.
    #[test]
    fn adds_are_deduplicated_in_order() {
        let mut q = queue();
        q.add("b");
        q.add("a");
        q.add("b");
        assert_eq!(q.pop(at(0)), Some("b"));
        assert_eq!(q.pop(at(0)), Some("a"));
        assert_eq!(q.pop(at(0)), None);
        assert_eq!(q.stats.merged, 1);
    }

    /// A key added while it is processing is not handed out twice at once, and comes
    /// back once when done.
    #[test]
    fn a_processing_key_is_requeued_when_done_not_before() {
        let mut q = queue();
        q.add("a");
        assert_eq!(q.pop(at(0)), Some("a"));
        q.add("a");
        q.add("a");
        assert_eq!(q.pop(at(0)), None);
        q.done(&"a");
        assert_eq!(q.pop(at(0)), Some("a"));
        q.done(&"a");
        assert_eq!(q.pop(at(0)), None);
        assert!(q.is_empty());
    }

    /// Delays: a key waits its time; an earlier add wins; `add` makes it ready at once.
    #[test]
    fn delayed_keys_wait_and_the_earliest_time_wins() {
        let mut q = queue();
        q.add_after("a", at(0), Duration::from_millis(100));
        q.add_after("a", at(0), Duration::from_millis(50));
        q.add_after("a", at(0), Duration::from_millis(200));
        assert_eq!(q.next_deadline(), Some(at(50)));
        assert_eq!(q.pop(at(49)), None);
        assert!(q.has_ready(at(50)));
        assert_eq!(q.pop(at(50)), Some("a"));
        q.done(&"a");
        q.add_after("b", at(60), Duration::from_millis(100));
        q.add("b");
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.pop(at(60)), Some("b"));
    }

    /// Rate-limited requeues back off exponentially up to the cap; forget resets.
    #[test]
    fn rate_limited_requeues_back_off_and_forget_resets() {
        let mut q = queue();
        let mut delays = Vec::new();
        for round in 0..5u64 {
            let now = at(round * 1_000);
            q.add_rate_limited("a", now);
            let due = q.next_deadline().expect("waiting");
            delays.push(due.since(now).as_millis() as u64);
            assert_eq!(q.pop(due), Some("a"));
            q.done(&"a");
        }
        assert_eq!(delays, vec![10, 20, 40, 40, 40]);
        q.forget(&"a");
        q.add_rate_limited("a", at(10_000));
        assert_eq!(q.next_deadline(), Some(at(10_010)));
    }

    /// Beyond capacity new keys are refused and counted; known keys still merge.
    #[test]
    fn capacity_refuses_new_keys() {
        let mut q = queue();
        assert!(q.add("a"));
        assert!(q.add_after("b", at(0), Duration::from_millis(5)));
        assert_eq!(q.pop(at(0)), Some("a"));
        assert!(q.add("c"));
        assert!(!q.add("d"));
        assert!(q.add("a"));
        assert_eq!(q.stats.refused, 1);
        assert_eq!(q.len(), 3);
    }
}
