//! `etcdctl check perf`'s load, shared by both sides of `keel bench store --workload
//! check-perf-*` so that keel and etcd are offered exactly the same puts.
//!
//! What etcd does (`etcdctl/ctlv3/command/check.go`): a generator paced by a token
//! bucket (`rate.NewLimiter(limit, 1)`: one put every 1/limit s, a burst of one) feeds a
//! queue of `clients` places; `clients` workers take puts from it and time each from the
//! moment they start it (time spent queued is not counted). Keys are the prefix
//! `/etcdctl-check-perf/` and 256 bytes holding a random varint; values are 1024 zero
//! bytes. After 60 s the generator stops, the workers finish what is queued, and the
//! run passes when there were no errors, throughput was above 90% of the limit, the
//! slowest put took at most 0.5 s and the standard deviation was at most 0.1 s.
//!
//! Here: the profiles ([`CheckPerfProfile`]), the key ([`check_perf_key`]) and the
//! pacing ([`OpenLoopSchedule`]) as pure code. The schedule works in nanoseconds from
//! the start of the run so the bench actor (host clock through `ctx.now()`) and the
//! etcd driver (tokio) run the very same arithmetic; both wake on a millisecond timer,
//! so puts that fell due since the last wake-up are issued together.

/// The key prefix `etcdctl check perf` writes under.
pub const CHECK_PERF_PREFIX: &str = "/etcdctl-check-perf/";
/// The random part of each key (`ksize` in check.go).
pub const CHECK_PERF_KEY_BYTES: usize = 256;
/// Each value (`vsize` in check.go): zero bytes.
pub const CHECK_PERF_VALUE_BYTES: usize = 1024;
/// PASS needs throughput above this fraction of the limit (check.go: `RPS/limit <= 0.9`
/// fails).
pub const CHECK_PERF_THROUGHPUT_FRACTION: f64 = 0.9;
/// PASS needs the slowest put to take at most this long (check.go: `Slowest > 0.5`).
pub const CHECK_PERF_SLOWEST_MAX_S: f64 = 0.5;
/// PASS needs the latencies' standard deviation at most this (check.go: `Stddev > 0.1`).
pub const CHECK_PERF_STDDEV_MAX_S: f64 = 0.1;

/// One of `etcdctl check perf --load` profiles (`checkPerfCfgMap` in check.go).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckPerfProfile {
    /// `s`, `m`, `l` or `xl`.
    pub load: &'static str,
    /// The limiter's rate: puts per second offered.
    pub puts_per_s: u64,
    /// Workers (each etcdctl client) taking puts from the queue; also the queue's size.
    pub clients: usize,
    pub duration_s: u64,
}

pub const CHECK_PERF_PROFILES: [CheckPerfProfile; 4] = [
    CheckPerfProfile {
        load: "s",
        puts_per_s: 150,
        clients: 50,
        duration_s: 60,
    },
    CheckPerfProfile {
        load: "m",
        puts_per_s: 1000,
        clients: 200,
        duration_s: 60,
    },
    CheckPerfProfile {
        load: "l",
        puts_per_s: 8000,
        clients: 500,
        duration_s: 60,
    },
    CheckPerfProfile {
        load: "xl",
        puts_per_s: 15000,
        clients: 1000,
        duration_s: 60,
    },
];

/// The profile named `load` (`s`, `m`, `l`, `xl`).
pub fn check_perf_profile(load: &str) -> Option<CheckPerfProfile> {
    CHECK_PERF_PROFILES.iter().copied().find(|p| p.load == load)
}

/// The key check.go writes for the random number `random`: the prefix, then 256 bytes
/// starting with `random` as a Go `binary.PutVarint` (zigzag, 7 bits a byte) and zero
/// after it.
pub fn check_perf_key(random: i64) -> Vec<u8> {
    let mut body = [0u8; CHECK_PERF_KEY_BYTES];
    let mut zigzag = ((random << 1) ^ (random >> 63)) as u64;
    let mut at = 0;
    while zigzag >= 0x80 {
        body[at] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        at += 1;
    }
    body[at] = zigzag as u8;
    let mut key = Vec::with_capacity(CHECK_PERF_PREFIX.len() + CHECK_PERF_KEY_BYTES);
    key.extend_from_slice(CHECK_PERF_PREFIX.as_bytes());
    key.extend_from_slice(&body);
    key
}

/// When the puts of an open-loop load fall due: one every `1/rate` s from the start.
///
/// etcd's limiter has a burst of one: while every queue place is taken the generator
/// blocks, and the puts it could not hand over are never made up afterwards. Here a put
/// due more than `catch_up_ns` ago is dropped the same way; `catch_up_ns` only covers
/// the wake-up timer's granularity (puts due since the last wake-up are still issued).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenLoopSchedule {
    interval_ns: u64,
    catch_up_ns: u64,
    next_due_ns: u64,
    generated: u64,
}

impl OpenLoopSchedule {
    /// `puts_per_s` at least 1; the first put is due at `start_ns`.
    pub fn new(puts_per_s: u64, start_ns: u64, catch_up_ns: u64) -> Self {
        assert!(puts_per_s > 0, "an open-loop rate must be positive");
        OpenLoopSchedule {
            interval_ns: (1_000_000_000 / puts_per_s).max(1),
            catch_up_ns,
            next_due_ns: start_ns,
            generated: 0,
        }
    }

    /// How many puts to hand over at `now_ns` when the queue has `room` free places.
    pub fn take_due(&mut self, now_ns: u64, room: usize) -> usize {
        self.next_due_ns = self
            .next_due_ns
            .max(now_ns.saturating_sub(self.catch_up_ns));
        let mut taken = 0;
        while taken < room && self.next_due_ns <= now_ns {
            taken += 1;
            self.next_due_ns += self.interval_ns;
        }
        self.generated += taken as u64;
        taken
    }

    /// When the next put falls due.
    pub fn next_due_ns(&self) -> u64 {
        self.next_due_ns
    }

    /// Puts handed over so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// With room, the schedule hands over exactly rate × time puts, in 1 ms batches.
    #[test]
    fn paces_at_the_rate() {
        let mut schedule = OpenLoopSchedule::new(8000, 0, 2 * MS);
        let mut total = 0;
        for ms in 0..=1000 {
            total += schedule.take_due(ms * MS, usize::MAX);
        }
        // Due at 0, 125 µs, …, 1000 ms: 8001 puts.
        assert_eq!(total, 8001);
        assert_eq!(schedule.generated(), 8001);
    }

    /// A full queue drops the puts that fell due meanwhile, as etcd's burst-1 limiter.
    #[test]
    fn a_full_queue_loses_what_fell_due() {
        let mut schedule = OpenLoopSchedule::new(1000, 0, 2 * MS);
        assert_eq!(schedule.take_due(0, 10), 1);
        for ms in 1..100 {
            assert_eq!(schedule.take_due(ms * MS, 0), 0);
        }
        // 100 ms later only the last 2 ms of puts are still due.
        assert_eq!(schedule.take_due(100 * MS, usize::MAX), 3);
        assert_eq!(schedule.next_due_ns(), 101 * MS);
    }

    /// The key is check.go's: prefix, a zigzag varint, zero padding to 256 bytes.
    #[test]
    fn keys_are_check_perf_keys() {
        let key = check_perf_key(1);
        assert_eq!(key.len(), CHECK_PERF_PREFIX.len() + CHECK_PERF_KEY_BYTES);
        assert!(key.starts_with(CHECK_PERF_PREFIX.as_bytes()));
        let body = &key[CHECK_PERF_PREFIX.len()..];
        // zigzag(1) = 2; zigzag(-1) = 1; zigzag(300) = 600 = 0xd8 0x04.
        assert_eq!(&body[..2], &[2, 0]);
        assert_eq!(check_perf_key(-1)[CHECK_PERF_PREFIX.len()], 1);
        assert_eq!(
            &check_perf_key(300)[CHECK_PERF_PREFIX.len()..CHECK_PERF_PREFIX.len() + 3],
            &[0xd8, 0x04, 0]
        );
        assert_eq!(check_perf_key(i64::MAX).len(), key.len());
        assert_eq!(check_perf_profile("m").map(|p| p.puts_per_s), Some(1000));
        assert_eq!(check_perf_profile("xxl"), None);
    }
}
