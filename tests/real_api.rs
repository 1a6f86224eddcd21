//! Real mode: a 3-member store, two API servers and a balancer as separate processes;
//! two bus clients — one balancing over the API servers itself, one through the
//! balancer — write (compare-and-swap updates) and watch; one API server is killed and
//! both clients carry on through the other without losing a watch event.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_tests::{free_port, ChildGuard, TempDir};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the test waits for each condition (updates flowing through both clients,
/// carrying on after the kill): generous, since seven processes start first and a loaded
/// machine is slow at it.
const WAIT_WITHIN: Duration = Duration::from_secs(60);
/// How often a condition is checked again.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// Updates each client must see before the kill, so writes and watches are under way.
const UPDATES_BEFORE_KILL: usize = 10;
/// Updates each client must see after the kill, proof that writes carried on.
const UPDATES_AFTER_KILL: usize = 5;
/// The clients' `--duration`: only a safety cap for a client the test could not stop
/// (the test stops them with SIGTERM once it has seen what it needs; a duration short
/// enough to end the run would also count the cluster's start-up against it).
const CLIENT_SAFETY_CAP: &str = "120s";

/// Waits until `condition` holds (`Ok`); its `Err` says where things stand, for the
/// message when the wait times out after [`WAIT_WITHIN`].
fn wait_for(what: &str, condition: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT_WITHIN;
    loop {
        let state = match condition() {
            Ok(()) => return,
            Err(state) => state,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT_WITHIN:?} waiting for {what}; {state}"
        );
        std::thread::sleep(WAIT_POLL);
    }
}

fn spawn(args: &[String]) -> ChildGuard {
    ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel starts"),
    )
}

/// The whole failover story.
#[test]
fn client_survives_losing_an_api_server_without_losing_watch_events() {
    let dir = TempDir::new("real-api");
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let api: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("s{}=127.0.0.1:{}", i + 1, peer[i]))
        .collect();
    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("s{}=127.0.0.1:{}", i + 1, client[i]))
        .collect();
    let mut processes = Vec::new();
    for i in 0..3 {
        processes.push(spawn(&[
            "store".into(),
            "--name".into(),
            format!("s{}", i + 1),
            "--data-dir".into(),
            dir.join(&format!("s{}", i + 1)).display().to_string(),
            "--listen-peer".into(),
            format!("127.0.0.1:{}", peer[i]),
            "--listen-client".into(),
            format!("127.0.0.1:{}", client[i]),
            "--initial-cluster".into(),
            cluster.join(","),
        ]));
    }
    // API servers that start before the store has a leader would spend the clients'
    // first requests on errors; wait for a writable store first.
    keel_tests::wait_writable(env!("CARGO_BIN_EXE_keel"), &endpoints.join(","));
    let mut apiservers = Vec::new();
    for (i, port) in api.iter().enumerate() {
        apiservers.push(spawn(&[
            "apiserver".into(),
            "--name".into(),
            format!("a{}", i + 1),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--store".into(),
            endpoints.join(","),
            "--data-dir".into(),
            dir.join(&format!("a{}", i + 1)).display().to_string(),
        ]));
    }
    let servers = format!("a1=127.0.0.1:{},a2=127.0.0.1:{}", api[0], api[1]);
    let lb_port = free_port();
    let _balancer = spawn(&[
        "api-balancer".into(),
        "--name".into(),
        "lb".into(),
        "--listen".into(),
        format!("127.0.0.1:{lb_port}"),
        "--apiservers".into(),
        servers.clone(),
        "--data-dir".into(),
        dir.join("lb").display().to_string(),
    ]);
    // One client balances over the API servers itself, one goes through the balancer.
    let direct = Client::start(&["--apiservers", &servers]);
    let balanced = Client::start(&["--balancer", &format!("lb=127.0.0.1:{lb_port}")]);

    // Let writes and the watches get going, then kill -9 the first API server.
    wait_for("updates through the API servers", || {
        let (d, b) = (direct.updates(), balanced.updates());
        if d >= UPDATES_BEFORE_KILL && b >= UPDATES_BEFORE_KILL {
            Ok(())
        } else {
            Err(format!(
                "updates so far: direct client {d}, client behind the balancer {b} \
                 (need {UPDATES_BEFORE_KILL} each)"
            ))
        }
    });
    let killed_at = Instant::now();
    apiservers[0].kill();

    // Both clients carry on through the other API server: writes, and a watch that
    // delivers events again, so the check below covers the failover.
    wait_for("the clients to carry on after the kill", || {
        let (d, b) = (
            direct.progress_after(killed_at),
            balanced.progress_after(killed_at),
        );
        let carried_on =
            |(updates, events): (usize, usize)| updates >= UPDATES_AFTER_KILL && events >= 1;
        if carried_on(d) && carried_on(b) {
            Ok(())
        } else {
            Err(format!(
                "(updates, watch events) since the kill: direct client {d:?}, client \
                 behind the balancer {b:?} (need {UPDATES_AFTER_KILL} updates and an event each)"
            ))
        }
    });

    direct.finish_and_check(killed_at, "direct client");
    balanced.finish_and_check(killed_at, "client behind the balancer");
    drop(processes);
}

type Lines = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// A `keel api-client` process whose JSON report lines are collected as they come.
struct Client {
    guard: ChildGuard,
    lines: Lines,
    reader: std::thread::JoinHandle<()>,
}

impl Client {
    fn start(endpoints: &[&str]) -> Client {
        let mut process = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("api-client")
            .args(endpoints)
            .args(["--roles", "writer,watcher,writer"])
            .args(["--duration", CLIENT_SAFETY_CAP])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel api-client starts");
        let stdout = process.stdout.take().unwrap();
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push((Instant::now(), value));
                }
            }
        });
        Client {
            guard: ChildGuard::new(process),
            lines,
            reader,
        }
    }

    fn updates(&self) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["Report"]["Api"]["Updated"].is_object())
            .count()
    }

    /// Updates and watch events this client reported after `since`.
    fn progress_after(&self, since: Instant) -> (usize, usize) {
        let lines = self.lines.lock().unwrap();
        let after = |kind: &str| {
            lines
                .iter()
                .filter(|(t, v)| *t > since && v["Report"]["Api"][kind].is_object())
                .count()
        };
        let updates = after("Updated");
        let events = after("WatchEvent");
        (updates, events)
    }

    /// Stops the client (SIGTERM: it shuts down cleanly, so every report it printed is
    /// read to the end), then checks that writes carried on after the kill and the
    /// watch neither re-listed nor lost an event.
    fn finish_and_check(mut self, killed_at: Instant, who: &str) {
        self.guard.terminate();
        let _ = self.guard.child().wait();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap();
        let api = |line: &serde_json::Value, kind: &str| line["Report"]["Api"][kind].clone();
        let updates_after = lines
            .iter()
            .filter(|(t, v)| *t > killed_at && api(v, "Updated").is_object())
            .count();
        assert!(
            updates_after >= UPDATES_AFTER_KILL,
            "{who}: writes did not carry on through the other API server"
        );
        let written: BTreeSet<i64> = lines
            .iter()
            .filter_map(|(_, v)| api(v, "Updated")["written"].as_i64())
            .collect();
        let seen: Vec<i64> = lines
            .iter()
            .filter_map(|(_, v)| api(v, "WatchEvent")["revision"].as_i64())
            .collect();
        let relists = lines
            .iter()
            .filter(|(_, v)| {
                api(v, "WatchEnded")["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("410"))
            })
            .count();
        let last_seen = *seen.iter().max().expect("the watch delivered events");
        let seen: BTreeSet<i64> = seen.into_iter().collect();
        let first_session_from = lines
            .iter()
            .find_map(|(_, v)| api(v, "WatchStarted")["from"].as_i64())
            .unwrap();
        // Both clients write the same ConfigMap: only this client's writes are known to
        // it, and its watch must have seen each of them.
        let missing: Vec<i64> = written
            .range(first_session_from + 1..=last_seen)
            .filter(|r| !seen.contains(r))
            .copied()
            .collect();
        assert_eq!(
            relists, 0,
            "{who}: the watch had to re-list (410) instead of resuming"
        );
        assert!(
            missing.is_empty(),
            "{who}: the watch lost events across the failover: {missing:?}"
        );
    }
}
