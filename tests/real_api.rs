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
    let deadline = Instant::now() + Duration::from_secs(20);
    while direct.updates() < 10 || balanced.updates() < 10 {
        assert!(
            Instant::now() < deadline,
            "no updates through the API servers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_at = Instant::now();
    apiservers[0].kill();

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
            .args(["--roles", "writer,watcher,writer", "--duration", "24s"])
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

    /// Waits for the client to end, then checks that writes carried on after the kill
    /// and the watch neither re-listed nor lost an event.
    fn finish_and_check(mut self, killed_at: Instant, who: &str) {
        let _ = self.guard.child().wait();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap();
        let api = |line: &serde_json::Value, kind: &str| line["Report"]["Api"][kind].clone();
        let updates_after = lines
            .iter()
            .filter(|(t, v)| *t > killed_at && api(v, "Updated").is_object())
            .count();
        assert!(
            updates_after >= 5,
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
