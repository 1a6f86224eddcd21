//! Real mode: the self-test actor runs as separate `keel selftest` processes over
//! loopback TCP, survives a peer's kill -9 and restart (reconnecting), drops a
//! connection that sends garbage without dying, and its recorded trace replays
//! identically.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_tests::{free_port, ChildGuard, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `keel selftest` whose stderr lines are collected as they come.
struct Node {
    child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

fn start(name: &str, port: u16, peers: &[(&str, u16)], dir: &TempDir, extra: &[&str]) -> Node {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args([
            "selftest",
            "--name",
            name,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--data-dir",
            dir.join(name).to_str().unwrap(),
            "--status-interval",
            "200ms",
        ])
        .args(["--ping-interval-ms", "50"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (peer, peer_port) in peers {
        command.args(["--peer", &format!("{peer}=127.0.0.1:{peer_port}")]);
    }
    let mut child = command.spawn().expect("keel selftest starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Node {
        child: ChildGuard::new(child),
        lines,
    }
}

/// The highest `"key":N` value in the node's status lines so far.
fn highest(node: &Node, key: &str) -> u64 {
    let needle = format!("\"{key}\":");
    let lines = node.lines.lock().unwrap();
    lines
        .iter()
        .flat_map(|line| line.split(needle.as_str()).skip(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn wait_until(what: &str, node: &Node, condition: impl Fn(&Node) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition(node) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            node.lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two processes ping each other, one is killed and restarted, garbage is refused, and
/// the survivor's trace replays identically.
#[test]
fn selftest_over_tcp_survives_restart_and_garbage() {
    let dir = TempDir::new("real-selftest");
    let (p1, p2) = (free_port(), free_port());
    let trace = dir.join("n1.trace");
    // No --duration: n1 runs until the test has seen everything it waits for (each wait
    // is bounded) and stops it with SIGTERM; a fixed run could end mid-test on a loaded
    // machine.
    let n1 = start(
        "n1",
        p1,
        &[("n2", p2)],
        &dir,
        &["--record", trace.to_str().unwrap()],
    );
    let mut n2 = start("n2", p2, &[("n1", p1)], &dir, &[]);
    wait_until("n1 hears pongs from n2", &n1, |n| {
        highest(n, "pongs_received") >= 3
    });

    // kill -9 the peer, then bring it back on the same data directory.
    n2.child.kill();
    let n2b = start("n2", p2, &[("n1", p1)], &dir, &[]);
    wait_until("the restarted n2 reloads its state", &n2b, |n| {
        highest(n, "incarnation") == 2
    });
    wait_until("the restarted n2 hears n1 again", &n2b, |n| {
        highest(n, "pongs_received") >= 3
    });

    // Garbage on n1's port: that connection is dropped, n1 keeps serving n2.
    let mut garbage = TcpStream::connect(("127.0.0.1", p1)).expect("n1 accepts connections");
    let _ = garbage.write_all(b"GET / HTTP/1.1\r\nHost: keel\r\n\r\n this is not a keel frame");
    let _ = garbage.write_all(&u32::MAX.to_be_bytes());
    wait_until("n1 rejects the garbage connection", &n1, |n| {
        highest(n, "connections_rejected") >= 1
    });
    let pongs_before = highest(&n1, "pongs_received");
    wait_until("n1 keeps exchanging pongs", &n1, |n| {
        highest(n, "pongs_received") >= pongs_before + 5
    });

    // SIGTERM: n1 shuts down cleanly, prints its JSON report on stdout and exits 0.
    n1.child.terminate();
    let output = n1.child.wait_output();
    assert!(
        output.status.success(),
        "n1 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("n1 prints a JSON report");
    let view = &report["actors"]["n1/selftest#0"]["peers"]["n2/selftest#0"];
    assert_eq!(view["peer_incarnation"], 2, "{report}");
    assert_eq!(view["reused_seqs"], 0, "{report}");
    assert!(
        report["transport"]["connections_rejected"]
            .as_u64()
            .unwrap()
            >= 1,
        "{report}"
    );
    drop(n2b);

    let replay = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["replay", trace.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success() && text.starts_with("identical"),
        "{text}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
}
