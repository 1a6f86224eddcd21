//! Real mode: three `keel store` processes on loopback. Write, kill -9 the leader, keep
//! writing, kill a second member (writes refused with the no-quorum error), restart
//! both, and every acknowledged key is there.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_tests::{free_port, ChildGuard, TempDir};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Cluster {
    dir: TempDir,
    peer_ports: Vec<u16>,
    client_ports: Vec<u16>,
    members: Vec<Option<ChildGuard>>,
}

impl Cluster {
    fn initial_cluster(&self) -> String {
        keel_tests::member_list(&self.peer_ports)
    }

    fn endpoints(&self) -> String {
        keel_tests::member_list(&self.client_ports)
    }

    fn start(&mut self, index: usize) {
        self.start_with(index, &[]);
    }

    fn start_with(&mut self, index: usize, extra: &[&str]) {
        let child = self
            .command(index, extra)
            .spawn()
            .expect("keel store starts");
        self.members[index] = Some(ChildGuard::new(child));
    }

    fn command(&self, index: usize, extra: &[&str]) -> Command {
        let name = format!("s{}", index + 1);
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .args(["store", "--name", &name])
            .args(["--data-dir", self.dir.join(&name).to_str().unwrap()])
            .args([
                "--listen-peer",
                &format!("127.0.0.1:{}", self.peer_ports[index]),
            ])
            .args([
                "--listen-client",
                &format!("127.0.0.1:{}", self.client_ports[index]),
            ])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file(index));
        command
    }

    /// Where member `index`'s stderr goes (appended across restarts), for failures.
    fn log_file(&self, index: usize) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(&format!("s{}.log", index + 1)))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    /// The end of member `index`'s log.
    fn log_tail(&self, index: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(&format!("s{}.log", index + 1)))
            .unwrap_or_default();
        // Reconnect warnings repeat every few hundred ms and say little.
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("connection to peer lost"))
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut member) = self.members[index].take() {
            member.kill();
        }
    }

    fn client(&self, args: &[&str]) -> Output {
        client_at(&self.endpoints(), args)
    }

    /// The client endpoints as etcdctl users write them: `127.0.0.1:PORT,…`, no names.
    fn plain_endpoints(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until some member reports a leader and a writable quorum; returns the
    /// leader's id.
    fn wait_writable(&self) -> u64 {
        keel_tests::wait_writable(env!("CARGO_BIN_EXE_keel"), &self.endpoints())
    }

    /// Puts `key` = `value`, trying again every [`PUT_RETRY_PAUSE`] while the put fails,
    /// until one succeeds or `within` has passed; returns the last attempt's output.
    /// Trying again is safe: a put that failed may still have been applied, and putting
    /// the same value again leaves the key as the test expects it.
    fn put_until_ok(&self, key: &str, value: &str, within: Duration) -> Output {
        let deadline = Instant::now() + within;
        loop {
            let out = self.client(&["put", key, value]);
            if out.status.success() || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(PUT_RETRY_PAUSE);
        }
    }
}

/// The pause between two tries of [`Cluster::put_until_ok`].
const PUT_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a put that must succeed (the cluster is healthy) may keep failing: a new
/// leader's first moments, a slow machine.
const MUST_PUT_WITHIN: Duration = Duration::from_secs(30);
/// How long each counted put after the leader's death may keep failing before it counts
/// as not acknowledged.
const COUNTED_PUT_WITHIN: Duration = Duration::from_secs(10);
/// How long s2 gets to create its write-ahead log before the test gives up on it.
const WAL_CREATED_WITHIN: Duration = Duration::from_secs(30);
/// How often the test looks for that file.
const WAL_POLL: Duration = Duration::from_millis(50);

fn client_at(endpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("store")
        .args(args)
        .args(["--endpoints", endpoints, "--timeout", "3s"])
        .output()
        .expect("keel store client runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A member whose log is damaged in the middle refuses to start, naming the file and
/// the offset (it would otherwise silently drop every synced record after the damage),
/// and is rebuilt from its peers: removed, emptied, added again, joined with its new id.
#[test]
fn a_member_with_a_corrupt_log_stops_and_is_rebuilt_from_its_peers() {
    let mut cluster = Cluster {
        dir: TempDir::new("real-store-corrupt"),
        peer_ports: (0..3).map(|_| free_port()).collect(),
        client_ports: (0..3).map(|_| free_port()).collect(),
        members: vec![None, None, None],
    };
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_writable();
    for n in 0..20 {
        let out = cluster.put_until_ok(
            &format!("key/{n:02}"),
            &format!("value-{n}"),
            MUST_PUT_WITHIN,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    // s2 (not the last id, so its new id cannot be its position) loses one byte in the
    // middle of its log while it is down.
    cluster.kill(1);
    let log = cluster.dir.join("s2/wal/s2_store_0.wal");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&log, &bytes).unwrap();
    let out = cluster
        .command(1, &[])
        .stderr(Stdio::piped())
        .output()
        .expect("keel store runs");
    let said = text(&out);
    assert!(!out.status.success(), "s2 started on a corrupt log: {said}");
    assert!(
        said.contains("s2_store_0.wal")
            && said.contains("at offset")
            && said.contains("member remove"),
        "{said}"
    );

    // Rebuild: remove s2 (id 2), empty its directory, add it again, join with the new id.
    // s2 may have led: wait for the others to elect a leader. A membership change whose
    // outcome is unknown is tried again until the member list shows it.
    cluster.wait_writable();
    let member_id = |cluster: &Cluster| -> Option<u64> {
        let list = cluster.client(&["member", "list", "--json"]);
        let members: serde_json::Value = serde_json::from_slice(&list.stdout).ok()?;
        members
            .as_array()?
            .iter()
            .find(|m| m["address"]["node"] == "s2")
            .and_then(|m| m["id"].as_u64())
    };
    let deadline = Instant::now() + MUST_PUT_WITHIN;
    while member_id(&cluster).is_some() {
        let remove = cluster.client(&["member", "remove", "2"]);
        assert!(
            Instant::now() < deadline,
            "s2 never removed: {}",
            text(&remove)
        );
        std::thread::sleep(PUT_RETRY_PAUSE);
    }
    std::fs::remove_dir_all(cluster.dir.join("s2")).unwrap();
    let new_id = loop {
        let add = cluster.client(&[
            "member",
            "add",
            &format!("s2=127.0.0.1:{}", cluster.peer_ports[1]),
        ]);
        if let Some(id) = member_id(&cluster) {
            break id;
        }
        assert!(Instant::now() < deadline, "s2 never added: {}", text(&add));
        std::thread::sleep(PUT_RETRY_PAUSE);
    };
    assert_ne!(new_id, 2, "a removed member's id was given out again");
    cluster.start_with(1, &["--join", "--member-id", &new_id.to_string()]);
    // The rebuilt member answers from its own applied state with every key.
    let s2 = format!("s2=127.0.0.1:{}", cluster.client_ports[1]);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = client_at(
            &s2,
            &["get", "key/", "--prefix", "--serializable", "--json"],
        );
        let count = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["kvs"].as_array().map(|a| a.len()))
            .unwrap_or(0);
        if count == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rebuilt s2 holds {count} of 20 keys: {}\ns2's log:\n{}\ns1's log:\n{}",
            text(&out),
            cluster.log_tail(1),
            cluster.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 0..3 {
        cluster.kill(i);
    }
}

/// The whole story of the real-mode test, in order.
#[test]
fn store_survives_leader_loss_refuses_without_quorum_and_keeps_acknowledged_writes() {
    let mut cluster = Cluster {
        dir: TempDir::new("real-store"),
        peer_ports: (0..3).map(|_| free_port()).collect(),
        client_ports: (0..3).map(|_| free_port()).collect(),
        members: vec![None, None, None],
    };
    for i in 0..3 {
        cluster.start(i);
    }
    let leader = cluster.wait_writable();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let key = format!("key/{n:02}");
        let out = cluster.put_until_ok(&key, &format!("value-{n}"), MUST_PUT_WITHIN);
        assert!(out.status.success(), "put {key}: {}", text(&out));
        acknowledged.push(key);
    }

    // Endpoints as etcdctl takes them (no member names; http:// allowed): each member
    // is asked its name. A dead endpoint among them is skipped with a warning; only dead
    // endpoints is a clear error.
    let plain = format!("http://{}", cluster.plain_endpoints());
    let out = client_at(&plain, &["get", "key/00"]);
    assert!(
        out.status.success(),
        "get over plain endpoints: {}",
        text(&out)
    );
    assert!(text(&out).contains("value-0"), "{}", text(&out));
    let dead = format!("127.0.0.1:{}", free_port());
    let out = client_at(
        &format!("{dead},{}", cluster.plain_endpoints()),
        &["get", "key/01"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("value-1") && text(&out).contains("skipping an endpoint"));
    let out = client_at(&dead, &["get", "key/01"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no member answered"), "{}", text(&out));

    // kill -9 the leader; writes continue once the others elect a new one.
    cluster.kill(leader as usize - 1);
    let survivor_leader = cluster.wait_writable();
    assert_ne!(survivor_leader, leader);
    for n in 10..20 {
        let key = format!("key/{n:02}");
        let out = cluster.put_until_ok(&key, &format!("value-{n}"), COUNTED_PUT_WITHIN);
        if out.status.success() {
            acknowledged.push(key);
        }
    }
    assert!(
        acknowledged.len() >= 15,
        "too few writes acknowledged after the leader died: {acknowledged:?}"
    );

    // A second member down: no quorum. Writes are refused with that error.
    cluster.kill(survivor_leader as usize - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.client(&["put", "key/refused", "nope"]);
        let said = text(&out);
        assert!(
            !out.status.success(),
            "a write succeeded with two of three members down: {said}"
        );
        if said.contains("no quorum: 1 of 3 members reachable (need 2)") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never reported the no-quorum error; last: {said}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Both come back on their data directories: every acknowledged key is there.
    cluster.start(leader as usize - 1);
    cluster.start(survivor_leader as usize - 1);
    cluster.wait_writable();
    let out = cluster.client(&["get", "key/", "--prefix", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("get --json prints JSON");
    let keys: Vec<String> = listing["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap().to_string())
        .collect();
    for key in &acknowledged {
        assert!(
            keys.contains(key),
            "acknowledged {key} is missing after restart; have {keys:?}"
        );
    }
    for i in 0..3 {
        cluster.kill(i);
    }
}

/// A member started on another member's data directory, or on a corrupt one, stops
/// with a clear error instead of starting empty.
#[test]
fn foreign_or_corrupt_data_directory_stops_the_member() {
    let dir = TempDir::new("real-store-foreign");
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let cluster = format!("s1=127.0.0.1:{},s2=127.0.0.1:{}", ports[0], ports[1]);
    let run = |name: &str, data: &str, port: u16| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "store",
                "--name",
                name,
                "--data-dir",
                dir.join(data).to_str().unwrap(),
            ])
            .args([
                "--listen-peer",
                &format!("127.0.0.1:{port}"),
                "--initial-cluster",
                &cluster,
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status, err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (child.wait().unwrap(), "still running".to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // s2 creates its data, then is stopped (it exits on its own only on errors, so let
    // it run briefly under a guard).
    let mut s2 = ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "store",
                "--name",
                "s2",
                "--data-dir",
                dir.join("d2").to_str().unwrap(),
            ])
            .args([
                "--listen-peer",
                &format!("127.0.0.1:{}", ports[1]),
                "--initial-cluster",
                &cluster,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The refusal below names s2's log, so s2 must have created it before it is killed.
    let s2_wal = dir.join("d2/wal/s2_store_0.wal");
    let deadline = Instant::now() + WAL_CREATED_WITHIN;
    while !s2_wal.exists() {
        assert!(
            Instant::now() < deadline,
            "s2 did not create {} within {WAL_CREATED_WITHIN:?}",
            s2_wal.display()
        );
        std::thread::sleep(WAL_POLL);
    }
    s2.kill();
    let (status, err) = run("s1", "d2", ports[0]);
    assert!(!status.success(), "s1 started on s2's data: {err}");
    assert!(
        err.contains("s2_store_0.wal") && err.contains("belongs to another node"),
        "{err}"
    );

    std::fs::create_dir_all(dir.join("bad/wal")).unwrap();
    std::fs::write(dir.join("bad/wal/s1_store_0.wal"), b"this is not a log").unwrap();
    let (status, err) = run("s1", "bad", ports[0]);
    assert!(!status.success(), "s1 started on a corrupt log: {err}");
    assert!(err.contains("not a keel write-ahead log"), "{err}");
}
