//! `keel sim --seeds A..B`: a seed sweep, run in parallel.
//!
//! Each seed runs in a child process of this binary (`keel sim --seed N --json --child`,
//! plus the sweep's scenario, duration and fault options), `--jobs` at a time. A child
//! process per seed keeps every run exactly what `keel sim --seed N` runs — the
//! simulator's runtime is per process, and a panic or a stuck run takes down one seed,
//! not the sweep — and costs a few milliseconds against runs of hundreds.
//!
//! The parent shows progress (indicatif's bar on a terminal; otherwise a line every
//! [`PROGRESS_LINE_EVERY`]), stops scheduling at the first failure with `--fail-fast`,
//! and ends with a table of failing seeds (each with its failed invariants and the
//! command that reproduces it) or, with `--json`, one document.

use super::sim::{reproduce, write_nemesis_faults};
use super::{EXIT_FAILED, EXIT_OK};
use keel_sim::scenarios::Scenario;
use keel_sim::RunSummary;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Seeds a sweep may have without `--yes`.
pub const SEEDS_MAX_WITHOUT_YES: u64 = 10_000;
/// Seeds a sweep may have at all.
pub const SEEDS_MAX_WITH_YES: u64 = 1_000_000;
/// Jobs at once at most.
pub const JOBS_MAX: usize = 256;
/// Off a terminal, a progress line this often.
pub const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(15);
/// What is kept of a child's stderr (its last bytes), to show why it panicked.
const CHILD_STDERR_KEPT_BYTES: usize = 4096;

pub struct Sweep {
    pub scenario: &'static Scenario,
    pub seeds: std::ops::Range<u64>,
    pub duration_ms: u64,
    pub jobs: usize,
    pub nemesis: bool,
    pub faults_file: Option<PathBuf>,
    pub fail_fast: bool,
    pub json: bool,
}

/// One failed seed in the final report.
#[derive(Clone, Debug, Serialize)]
pub struct SeedFailure {
    pub seed: u64,
    /// `name: detail` of each failed invariant; empty when the run did not finish.
    pub invariants: Vec<FailedInvariant>,
    /// Why there is no summary (a panic, a crash), with the end of the run's stderr.
    pub error: Option<String>,
    pub reproduce: String,
    /// With `--nemesis`: the drawn schedule as a `--faults` file.
    pub faults_file: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedInvariant {
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct SweepReport {
    pub scenario: String,
    pub nemesis: bool,
    pub duration_ms: u64,
    pub seeds_start: u64,
    pub seeds_end: u64,
    pub jobs: usize,
    pub ran: u64,
    pub passed: u64,
    pub failed: u64,
    /// Seeds not run because `--fail-fast` stopped the sweep.
    pub skipped: u64,
    pub wall_ms: u64,
    pub seeds_per_minute: f64,
    /// Simulated time over wall time, summed over the seeds that finished.
    pub sim_speed: f64,
    pub failures: Vec<SeedFailure>,
}

enum Outcome {
    Summary(Box<RunSummary>),
    Broken(String),
}

/// Runs one seed in a child process and reads its summary.
fn run_child(sweep: &Sweep, seed: u64) -> Outcome {
    let exe = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => return Outcome::Broken(format!("cannot find this program: {e}")),
    };
    let mut command = Command::new(exe);
    command
        .args([
            "sim",
            "--child",
            "--json",
            "--scenario",
            sweep.scenario.name,
        ])
        .args(["--seed", &seed.to_string()])
        .args(["--duration", &format!("{}ms", sweep.duration_ms)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The seed is given; the child must not take one from the environment.
        .env_remove("MADSIM_TEST_SEED");
    if sweep.nemesis {
        command.arg("--nemesis");
    }
    if let Some(path) = &sweep.faults_file {
        command.arg("--faults").arg(path);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Broken(format!("cannot start a run: {e}")),
    };
    // Drain stderr on a thread so a chatty child never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut kept: Vec<u8> = Vec::new();
            let mut buffer = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buffer[..n]);
                if kept.len() > 2 * CHILD_STDERR_KEPT_BYTES {
                    kept.drain(..kept.len() - CHILD_STDERR_KEPT_BYTES);
                }
            }
            let start = kept.len().saturating_sub(CHILD_STDERR_KEPT_BYTES);
            String::from_utf8_lossy(&kept[start..]).into_owned()
        })
    });
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    let status = child.wait();
    let stderr = stderr
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<RunSummary>(line).ok());
    match (summary, status) {
        (Some(summary), _) => Outcome::Summary(Box::new(summary)),
        (None, Ok(status)) => Outcome::Broken(format!(
            "the run ended ({status}) without a summary: {}",
            stderr.trim()
        )),
        (None, Err(e)) => Outcome::Broken(format!("the run could not be waited for: {e}")),
    }
}

/// A terminal gets a bar; a log gets a line now and then.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
    total: u64,
}

impl Progress {
    fn new(total: u64, label: &str) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} seeds · {msg} · eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        if bar.is_none() {
            eprintln!("keel sim: {label}: {total} seeds");
        }
        Progress {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            total,
        }
    }

    fn per_minute(&self, done: u64) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            done as f64 * 60.0 / secs
        }
    }

    fn update(&mut self, done: u64, failed: u64, note: Option<String>) {
        let rate = self.per_minute(done);
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{failed} failed · {rate:.0} seeds/min"));
                if let Some(note) = note {
                    bar.println(note);
                }
            }
            None => {
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                if self.last_line.elapsed() >= PROGRESS_LINE_EVERY || done == self.total {
                    self.last_line = Instant::now();
                    eprintln!(
                        "keel sim: {done}/{} seeds, {failed} failed, {rate:.0} seeds/min",
                        self.total
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn run(sweep: Sweep) -> u8 {
    let total = sweep.seeds.end - sweep.seeds.start;
    let label = format!(
        "{}{}",
        sweep.scenario.name,
        if sweep.nemesis { " --nemesis" } else { "" }
    );
    let mut progress = Progress::new(total, &label);
    let sweep = Arc::new(sweep);
    let next = Arc::new(AtomicU64::new(sweep.seeds.start));
    let stop = Arc::new(AtomicBool::new(false));
    let (results, received) = mpsc::channel::<(u64, Outcome)>();
    let mut workers = Vec::new();
    for _ in 0..sweep.jobs.min(total as usize) {
        let (sweep, next, stop, results) =
            (sweep.clone(), next.clone(), stop.clone(), results.clone());
        workers.push(std::thread::spawn(move || loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let seed = next.fetch_add(1, Ordering::SeqCst);
            if seed >= sweep.seeds.end {
                return;
            }
            let outcome = run_child(&sweep, seed);
            let failed = match &outcome {
                Outcome::Summary(summary) => !summary.ok,
                Outcome::Broken(_) => true,
            };
            // Set here, before this worker takes another seed.
            if failed && sweep.fail_fast {
                stop.store(true, Ordering::SeqCst);
            }
            if results.send((seed, outcome)).is_err() {
                return;
            }
        }));
    }
    drop(results);
    let (mut done, mut failures, mut sim_ms, mut wall_ms) = (0u64, Vec::new(), 0u64, 0u64);
    for (seed, outcome) in received {
        done += 1;
        let command = || {
            reproduce(
                sweep.scenario.name,
                seed,
                sweep.duration_ms,
                sweep.nemesis,
                sweep.faults_file.as_deref(),
            )
        };
        let failure = match outcome {
            Outcome::Summary(summary) => {
                sim_ms += summary.sim_time_ms;
                wall_ms += summary.wall_ms;
                (!summary.ok).then(|| SeedFailure {
                    seed,
                    invariants: summary
                        .invariants
                        .iter()
                        .filter(|v| !v.ok)
                        .map(|v| FailedInvariant {
                            name: v.name.clone(),
                            detail: v.detail.clone(),
                        })
                        .collect(),
                    error: None,
                    reproduce: command(),
                    faults_file: None,
                })
            }
            Outcome::Broken(error) => Some(SeedFailure {
                seed,
                invariants: Vec::new(),
                error: Some(error),
                reproduce: command(),
                faults_file: None,
            }),
        };
        let note = match failure {
            Some(mut failure) => {
                if sweep.nemesis {
                    failure.faults_file =
                        write_nemesis_faults(sweep.scenario, seed, sweep.duration_ms).ok();
                }
                let what = match failure.invariants.first() {
                    Some(invariant) => invariant.name.clone(),
                    None => "did not finish".to_string(),
                };
                let note = format!("FAILED seed {seed} ({what}): {}", failure.reproduce);
                failures.push(failure);
                if sweep.fail_fast {
                    stop.store(true, Ordering::SeqCst);
                }
                Some(note)
            }
            None => None,
        };
        progress.update(done, failures.len() as u64, note);
    }
    for worker in workers {
        let _ = worker.join();
    }
    progress.finish();
    failures.sort_by_key(|f| f.seed);
    let elapsed = progress.started.elapsed();
    let report = SweepReport {
        scenario: sweep.scenario.name.to_string(),
        nemesis: sweep.nemesis,
        duration_ms: sweep.duration_ms,
        seeds_start: sweep.seeds.start,
        seeds_end: sweep.seeds.end,
        jobs: sweep.jobs,
        ran: done,
        passed: done - failures.len() as u64,
        failed: failures.len() as u64,
        skipped: total - done,
        wall_ms: elapsed.as_millis() as u64,
        seeds_per_minute: progress.per_minute(done),
        sim_speed: if wall_ms == 0 {
            0.0
        } else {
            sim_ms as f64 / wall_ms as f64
        },
        failures,
    };
    if sweep.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    if report.failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn print_report(report: &SweepReport) {
    println!(
        "{}{}: {} of {} seeds passed, {} failed{} — {:.1} s wall, {:.0} seeds/min with {} jobs ({:.0}× real time per run)",
        report.scenario,
        if report.nemesis { " --nemesis" } else { "" },
        report.passed,
        report.ran,
        report.failed,
        if report.skipped > 0 {
            format!(", {} not run (--fail-fast)", report.skipped)
        } else {
            String::new()
        },
        report.wall_ms as f64 / 1000.0,
        report.seeds_per_minute,
        report.jobs,
        report.sim_speed,
    );
    if report.failures.is_empty() {
        return;
    }
    println!("{:>8}  {:<24}  reproduce", "seed", "failed");
    for failure in &report.failures {
        let what = if failure.invariants.is_empty() {
            "did not finish".to_string()
        } else {
            failure
                .invariants
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!("{:>8}  {:<24}  {}", failure.seed, what, failure.reproduce);
        for invariant in &failure.invariants {
            println!("{:>8}  {}: {}", "", invariant.name, invariant.detail);
        }
        if let Some(error) = &failure.error {
            let last: Vec<&str> = error.lines().rev().take(3).collect();
            for line in last.into_iter().rev() {
                println!("{:>8}  {line}", "");
            }
        }
        if let Some(path) = &failure.faults_file {
            println!("{:>8}  schedule: {path}", "");
        }
    }
}
