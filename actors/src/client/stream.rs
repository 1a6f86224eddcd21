//! One sequenced, acknowledged stream receiver, shared by the store's watch and the API
//! server's watch.
//!
//! The server numbers every message of a stream 1, 2, 3, …; the bus may lose, duplicate
//! and reorder them. The receiver hands messages to its owner exactly once and in
//! order:
//! * a duplicate (a number already delivered or already held) is dropped;
//! * an early message (a gap before it) is held, up to `reorder_max` of them; one more
//!   means the gap is not a reordering but a loss, and the stream is broken;
//! * a gap that stays open for `gap_timeout_ms` is a loss too ([`Receiver::lost`]);
//! * acknowledgements are cumulative ("everything up to n"): one is due after
//!   `ack_every` delivered messages, and the owner flushes the rest on its ticks, so the
//!   server's flow control (a budget of unacknowledged messages) never waits long.
//!
//! A broken stream is not repaired here: the owner re-creates it from the last position
//! it delivered (a revision), which is what both watches already know how to do.

use keel_engine::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// Early messages held while a missing one is awaited; one more breaks the stream.
    pub reorder_max: usize,
    /// A gap still open after this long means the missing message was lost.
    pub gap_timeout_ms: u64,
    /// A cumulative acknowledgement is due after this many delivered messages.
    pub ack_every: u64,
}

impl StreamConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.reorder_max == 0 || self.gap_timeout_ms == 0 || self.ack_every == 0 {
            return Err(
                "stream reorder_max, gap_timeout_ms and ack_every must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// Why a stream cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Message `missing` never came while `held` later ones piled up.
    Overflow { missing: u64, held: usize },
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Overflow { missing, held } => write!(
                f,
                "message {missing} never arrived ({held} later ones held): one was lost"
            ),
        }
    }
}

/// The receiving end of one stream (one server-side watch).
#[derive(Clone, Debug)]
pub struct Receiver<T> {
    config: StreamConfig,
    /// The last sequence number handed to the owner.
    delivered: u64,
    /// The last sequence number acknowledged.
    acked: u64,
    /// Early messages by sequence number.
    early: BTreeMap<u64, T>,
    /// Since when the oldest open gap has been open.
    gap_since: Option<Time>,
}

impl<T> Receiver<T> {
    pub fn new(config: StreamConfig) -> Self {
        Receiver {
            config,
            delivered: 0,
            acked: 0,
            early: BTreeMap::new(),
            gap_since: None,
        }
    }

    /// The last sequence number delivered to the owner.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Messages held early.
    pub fn held(&self) -> usize {
        self.early.len()
    }

    /// Offers message `seq`; returns the messages now deliverable, in order (empty for a
    /// duplicate or an early message).
    pub fn offer(&mut self, now: Time, seq: u64, item: T) -> Result<Vec<(u64, T)>, Broken> {
        if seq <= self.delivered || self.early.contains_key(&seq) {
            return Ok(Vec::new());
        }
        if seq > self.delivered + 1 {
            self.early.insert(seq, item);
            self.gap_since.get_or_insert(now);
            if self.early.len() > self.config.reorder_max {
                return Err(Broken::Overflow {
                    missing: self.delivered + 1,
                    held: self.early.len(),
                });
            }
            return Ok(Vec::new());
        }
        let mut ready = vec![(seq, item)];
        self.delivered = seq;
        while let Some(next) = self.early.remove(&(self.delivered + 1)) {
            self.delivered += 1;
            ready.push((self.delivered, next));
        }
        // A gap remains open only if something later is still held.
        self.gap_since = if self.early.is_empty() {
            None
        } else {
            Some(now)
        };
        Ok(ready)
    }

    /// The missing message's number, when a gap has been open for `gap_timeout_ms`.
    pub fn lost(&self, now: Time) -> Option<u64> {
        let since = self.gap_since?;
        (now.since(since) >= Duration::from_millis(self.config.gap_timeout_ms))
            .then_some(self.delivered + 1)
    }

    /// A cumulative acknowledgement, when `ack_every` messages were delivered since the
    /// last one — or, with `flush`, whenever any were (the owner's tick).
    pub fn ack(&mut self, flush: bool) -> Option<u64> {
        let pending = self.delivered - self.acked;
        if pending >= self.config.ack_every || (flush && pending > 0) {
            self.acked = self.delivered;
            return Some(self.delivered);
        }
        None
    }

    /// Whether delivered messages wait for an acknowledgement.
    pub fn pending_ack(&self) -> bool {
        self.delivered > self.acked
    }

    /// When [`Receiver::lost`] will next say so, if a gap is open.
    pub fn next_deadline(&self) -> Option<Time> {
        self.gap_since
            .map(|since| since.plus(Duration::from_millis(self.config.gap_timeout_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StreamConfig {
        StreamConfig {
            reorder_max: 3,
            gap_timeout_ms: 1_000,
            ack_every: 2,
        }
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn seqs(ready: Vec<(u64, char)>) -> Vec<u64> {
        ready.into_iter().map(|(s, _)| s).collect()
    }

    /// Reordered and duplicated messages come out once each, in order.
    #[test]
    fn reorders_and_drops_duplicates() {
        let mut r = Receiver::new(config());
        assert_eq!(seqs(r.offer(at(0), 2, 'b').unwrap()), Vec::<u64>::new());
        assert_eq!(seqs(r.offer(at(0), 2, 'b').unwrap()), Vec::<u64>::new());
        assert_eq!(r.held(), 1);
        assert_eq!(seqs(r.offer(at(1), 1, 'a').unwrap()), vec![1, 2]);
        assert_eq!(seqs(r.offer(at(2), 1, 'a').unwrap()), Vec::<u64>::new());
        assert_eq!(seqs(r.offer(at(2), 3, 'c').unwrap()), vec![3]);
        assert_eq!(r.delivered(), 3);
        assert_eq!(r.held(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    /// A gap that stays open is a loss after the timeout, counted from when it opened;
    /// filling part of it restarts the clock for what is still missing.
    #[test]
    fn an_open_gap_is_a_loss_after_the_timeout() {
        let mut r = Receiver::new(config());
        r.offer(at(0), 1, 'a').unwrap();
        r.offer(at(100), 3, 'c').unwrap();
        assert_eq!(r.next_deadline(), Some(at(1_100)));
        assert_eq!(r.lost(at(1_099)), None);
        assert_eq!(r.lost(at(1_100)), Some(2));
        // 2 arrives, 4 is still missing behind 5.
        r.offer(at(1_050), 5, 'e').unwrap();
        assert_eq!(seqs(r.offer(at(1_060), 2, 'b').unwrap()), vec![2, 3]);
        assert_eq!(r.lost(at(1_100)), None);
        assert_eq!(r.lost(at(2_060)), Some(4));
    }

    /// More early messages than the window breaks the stream, naming the missing one.
    #[test]
    fn overflowing_the_window_breaks_the_stream() {
        let mut r = Receiver::new(config());
        for seq in 2..=4 {
            assert!(r.offer(at(0), seq, 'x').unwrap().is_empty());
        }
        assert_eq!(
            r.offer(at(0), 5, 'x'),
            Err(Broken::Overflow {
                missing: 1,
                held: 4
            })
        );
    }

    /// Acknowledgements are cumulative: due every `ack_every` deliveries, flushed on ticks.
    #[test]
    fn acknowledgements_are_cumulative() {
        let mut r = Receiver::new(config());
        r.offer(at(0), 1, 'a').unwrap();
        assert_eq!(r.ack(false), None);
        assert_eq!(r.ack(true), Some(1));
        assert_eq!(r.ack(true), None);
        r.offer(at(0), 3, 'c').unwrap();
        r.offer(at(0), 2, 'b').unwrap();
        assert_eq!(r.ack(false), Some(3));
        assert_eq!(r.ack(true), None);
    }
}
