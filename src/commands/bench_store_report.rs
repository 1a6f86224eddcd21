//! What `keel bench store` reports: each run's figures and memory, `etcdctl check
//! perf`'s verdict for a check-perf workload, the keel/etcd ratios of each round and
//! their median over the rounds — as text, or as one JSON document with every round.
//!
//! The median of per-round ratios, not the ratio of medians: both systems of a round
//! ran minutes apart on the same machine, so a round's ratio cancels much of the
//! machine's own drift, and the median discards a round the machine spoiled.

use super::bench::Figures;
use super::bench_store::{Measured, Plan, Routing, Workload};
use keel_actors::drivers::check_perf::{
    CheckPerfProfile, CHECK_PERF_SLOWEST_MAX_S, CHECK_PERF_STDDEV_MAX_S,
    CHECK_PERF_THROUGHPUT_FRACTION,
};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum System {
    Keel,
    Etcd,
}

impl System {
    pub(super) fn name(self) -> &'static str {
        match self {
            System::Keel => "keel",
            System::Etcd => "etcd",
        }
    }
}

/// The members' memory against what they hold.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Memory {
    /// Each member's peak RSS (VmHWM) in bytes; null where it could not be read.
    pub(super) peak_rss_bytes: Vec<Option<u64>>,
    /// Successful puts × (key + value bytes): what every member holds (each keeps all
    /// revisions; neither system compacts during the bench).
    pub(super) bytes_written: u64,
    /// Each member's peak RSS divided by `bytes_written`.
    pub(super) peak_rss_per_byte_written: Vec<Option<f64>>,
}

impl Memory {
    pub(super) fn new(peak_rss_bytes: Vec<Option<u64>>, puts: u64, bytes_per_put: f64) -> Memory {
        let bytes_written = (puts as f64 * bytes_per_put).round() as u64;
        let peak_rss_per_byte_written = peak_rss_bytes
            .iter()
            .map(|peak| {
                peak.filter(|_| bytes_written > 0)
                    .map(|peak| peak as f64 / bytes_written as f64)
            })
            .collect();
        Memory {
            peak_rss_bytes,
            bytes_written,
            peak_rss_per_byte_written,
        }
    }

    /// The members' mean peak RSS per byte written.
    fn mean_per_byte(&self) -> Option<f64> {
        let known: Vec<f64> = self
            .peak_rss_per_byte_written
            .iter()
            .flatten()
            .copied()
            .collect();
        (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
    }
}

/// `etcdctl check perf`'s criteria applied to one run (check.go's thresholds).
#[derive(Clone, Debug, Serialize)]
pub(super) struct CheckPerfVerdict {
    pub(super) load: &'static str,
    pub(super) limit_puts_per_s: u64,
    pub(super) throughput_puts_per_s: f64,
    pub(super) throughput_pass: bool,
    pub(super) slowest_s: f64,
    pub(super) slowest_pass: bool,
    pub(super) stddev_s: f64,
    pub(super) stddev_pass: bool,
    pub(super) errors: u64,
    pub(super) errors_pass: bool,
    pub(super) pass: bool,
}

fn check_perf_verdict(profile: CheckPerfProfile, put: &Figures) -> CheckPerfVerdict {
    let limit = profile.puts_per_s as f64;
    let throughput_pass = put.ops_per_second / limit > CHECK_PERF_THROUGHPUT_FRACTION;
    let slowest_s = put.max_ms / 1000.0;
    let stddev_s = put.stddev_ms / 1000.0;
    let slowest_pass = slowest_s <= CHECK_PERF_SLOWEST_MAX_S;
    let stddev_pass = stddev_s <= CHECK_PERF_STDDEV_MAX_S;
    let errors_pass = put.errors == 0;
    CheckPerfVerdict {
        load: profile.load,
        limit_puts_per_s: profile.puts_per_s,
        throughput_puts_per_s: put.ops_per_second,
        throughput_pass,
        slowest_s,
        slowest_pass,
        stddev_s,
        stddev_pass,
        errors: put.errors,
        errors_pass,
        pass: throughput_pass && slowest_pass && stddev_pass && errors_pass,
    }
}

/// One system, one routing, one round.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Run {
    pub(super) system: System,
    pub(super) routing: Routing,
    pub(super) put: Figures,
    pub(super) range: Option<Figures>,
    pub(super) check_perf: Option<CheckPerfVerdict>,
    pub(super) memory: Memory,
    /// keel only: puts re-sent to the leader after a follower refused them.
    pub(super) redirects: Option<u64>,
}

impl Run {
    pub(super) fn new(
        plan: &Plan,
        system: System,
        routing: Routing,
        measured: Measured,
        memory: Memory,
    ) -> Run {
        let check_perf = match plan.workload {
            Workload::CheckPerf(profile) => Some(check_perf_verdict(profile, &measured.put)),
            Workload::PutRange => None,
        };
        Run {
            system,
            routing,
            put: measured.put,
            range: measured.range,
            check_perf,
            memory,
            redirects: measured.redirects,
        }
    }
}

/// keel's figure divided by etcd's, per routing.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct Ratios {
    pub(super) routing: Routing,
    pub(super) put_throughput: f64,
    pub(super) put_p99: f64,
    pub(super) range_throughput: Option<f64>,
    pub(super) range_p99: Option<f64>,
    /// Of the members' mean peak RSS per byte written.
    pub(super) peak_rss_per_byte: Option<f64>,
}

fn ratio(keel: f64, etcd: f64) -> f64 {
    keel / etcd.max(1e-9)
}

fn ratios(keel: &Run, etcd: &Run) -> Ratios {
    let ranges = keel.range.as_ref().zip(etcd.range.as_ref());
    Ratios {
        routing: keel.routing,
        put_throughput: ratio(keel.put.ops_per_second, etcd.put.ops_per_second),
        put_p99: ratio(keel.put.p99_ms, etcd.put.p99_ms),
        range_throughput: ranges.map(|(k, e)| ratio(k.ops_per_second, e.ops_per_second)),
        range_p99: ranges.map(|(k, e)| ratio(k.p99_ms, e.p99_ms)),
        peak_rss_per_byte: keel
            .memory
            .mean_per_byte()
            .zip(etcd.memory.mean_per_byte())
            .map(|(k, e)| ratio(k, e)),
    }
}

/// One round: every run, and the ratios of the routings both systems ran.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Round {
    pub(super) round: usize,
    pub(super) first: System,
    pub(super) runs: Vec<Run>,
    pub(super) ratios: Vec<Ratios>,
}

impl Round {
    pub(super) fn new(round: usize, first: System, runs: Vec<Run>) -> Round {
        let find = |system: System, routing: Routing| {
            runs.iter()
                .find(|r| r.system == system && r.routing == routing)
        };
        let mut ratios_by_routing = Vec::new();
        for routing in [Routing::Leader, Routing::All] {
            if let (Some(keel), Some(etcd)) =
                (find(System::Keel, routing), find(System::Etcd, routing))
            {
                ratios_by_routing.push(ratios(keel, etcd));
            }
        }
        Round {
            round,
            first,
            runs,
            ratios: ratios_by_routing,
        }
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The median over `rounds` of each keel/etcd ratio of `routing`.
fn median_ratios(rounds: &[Round], routing: Routing) -> Option<Ratios> {
    let of_routing: Vec<&Ratios> = rounds
        .iter()
        .flat_map(|round| round.ratios.iter())
        .filter(|r| r.routing == routing)
        .collect();
    let each = |pick: fn(&Ratios) -> Option<f64>| {
        median(of_routing.iter().copied().filter_map(pick).collect())
    };
    Some(Ratios {
        routing,
        put_throughput: each(|r| Some(r.put_throughput))?,
        put_p99: each(|r| Some(r.put_p99))?,
        range_throughput: each(|r| r.range_throughput),
        range_p99: each(|r| r.range_p99),
        peak_rss_per_byte: each(|r| r.peak_rss_per_byte),
    })
}

fn workload_name(workload: Workload) -> String {
    match workload {
        Workload::PutRange => "put-range".into(),
        Workload::CheckPerf(profile) => format!("check-perf-{}", profile.load),
    }
}

// ----- text ---------------------------------------------------------------------------

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_phase(run: &Run, phase: &str, f: &Figures) {
    println!(
        "  {:<4} {:<6} {:<5} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>8.2} ms  ({} ok, {} errors of which {} cut off at the end)",
        run.system.name(),
        run.routing.name(),
        phase,
        f.ops_per_second,
        f.p50_ms,
        f.p99_ms,
        f.p999_ms,
        f.max_ms,
        f.ops,
        f.errors,
        f.unfinished
    );
    if let Some(error) = &f.first_error {
        let error: String = error.chars().take(200).collect();
        println!("               first error: {error}");
    }
}

fn print_memory(run: &Run) {
    let list = |values: Vec<String>| values.join(" / ");
    let peaks: Vec<String> = run
        .memory
        .peak_rss_bytes
        .iter()
        .map(|p| p.map_or_else(|| "?".to_string(), |b| format!("{:.0}", mib(b))))
        .collect();
    let per_byte: Vec<String> = run
        .memory
        .peak_rss_per_byte_written
        .iter()
        .map(|p| p.map_or_else(|| "?".to_string(), |x| format!("{x:.1}")))
        .collect();
    let redirects = run
        .redirects
        .map(|n| format!("; {n} puts redirected to the leader"))
        .unwrap_or_default();
    println!(
        "  {:<4} {:<6} memory: peak RSS {} MiB; {:.1} MiB written; {} bytes of peak RSS per byte written{}",
        run.system.name(),
        run.routing.name(),
        list(peaks),
        mib(run.memory.bytes_written),
        list(per_byte),
        redirects
    );
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn print_check_perf(run: &Run, v: &CheckPerfVerdict) {
    println!(
        "  {:<4} {:<6} check perf {}: {} throughput {:.0} puts/s (needs > {:.0}) · {} slowest {:.4} s (<= {}) · {} stddev {:.4} s (<= {}) · {} {} errors → {}",
        run.system.name(),
        run.routing.name(),
        v.load,
        pass(v.throughput_pass),
        v.throughput_puts_per_s,
        v.limit_puts_per_s as f64 * CHECK_PERF_THROUGHPUT_FRACTION,
        pass(v.slowest_pass),
        v.slowest_s,
        CHECK_PERF_SLOWEST_MAX_S,
        pass(v.stddev_pass),
        v.stddev_s,
        CHECK_PERF_STDDEV_MAX_S,
        pass(v.errors_pass),
        v.errors,
        pass(v.pass)
    );
}

fn ratios_text(r: &Ratios) -> String {
    let mut text = format!(
        "put throughput {:.2}×, put p99 {:.2}×",
        r.put_throughput, r.put_p99
    );
    if let (Some(throughput), Some(p99)) = (r.range_throughput, r.range_p99) {
        text.push_str(&format!(
            "; range throughput {throughput:.2}×, range p99 {p99:.2}×"
        ));
    }
    if let Some(memory) = r.peak_rss_per_byte {
        text.push_str(&format!("; peak RSS per byte written {memory:.2}×"));
    }
    text
}

/// One round's figures, as soon as it has run.
pub(super) fn print_round(plan: &Plan, round: &Round) {
    println!(
        "round {} of {} ({} first)",
        round.round,
        plan.rounds,
        round.first.name()
    );
    for run in &round.runs {
        print_phase(run, "put", &run.put);
        if let Some(range) = &run.range {
            print_phase(run, "range", range);
        }
        if let Some(verdict) = &run.check_perf {
            print_check_perf(run, verdict);
        }
        print_memory(run);
    }
    for r in &round.ratios {
        println!("  keel/etcd {}: {}", r.routing.name(), ratios_text(r));
    }
}

/// The medians (text), or every round and the medians (JSON).
pub(super) fn print_summary(plan: &Plan, rounds: &[Round]) {
    let medians: Vec<Ratios> = plan
        .routings
        .iter()
        .filter_map(|routing| median_ratios(rounds, *routing))
        .collect();
    if plan.json {
        let value = serde_json::json!({
            "workload": workload_name(plan.workload),
            "clients": plan.clients,
            "value_size": plan.value_size,
            "keys": plan.keys,
            "phase_seconds": plan.phase.as_secs_f64(),
            "request_timeout_ms": plan.request_timeout.as_millis() as u64,
            "rounds": rounds,
            "median_ratios": medians,
        });
        println!("{value}");
        return;
    }
    if medians.is_empty() {
        return;
    }
    println!(
        "median over {} rounds of keel/etcd ({}, {} clients, {}-byte values, {} s):",
        rounds.len(),
        workload_name(plan.workload),
        plan.clients,
        plan.value_size,
        plan.phase.as_secs()
    );
    for r in &medians {
        println!("  {:<6} {}", r.routing.name(), ratios_text(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The median of an odd count is the middle value; of an even count, the mean of
    /// the two middle values; of nothing, nothing.
    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    /// check.go's thresholds: throughput must be above 90% of the limit, and any error
    /// fails the run.
    #[test]
    fn check_perf_criteria() {
        let profile = keel_actors::drivers::check_perf::check_perf_profile("m").expect("m");
        let mut put = Figures {
            ops_per_second: 901.0,
            max_ms: 500.0,
            stddev_ms: 100.0,
            ..Figures::default()
        };
        assert!(check_perf_verdict(profile, &put).pass);
        put.ops_per_second = 900.0;
        assert!(!check_perf_verdict(profile, &put).throughput_pass);
        put.ops_per_second = 950.0;
        put.errors = 1;
        let verdict = check_perf_verdict(profile, &put);
        assert!(!verdict.errors_pass && !verdict.pass);
        put.errors = 0;
        put.max_ms = 501.0;
        assert!(!check_perf_verdict(profile, &put).slowest_pass);
    }
}
