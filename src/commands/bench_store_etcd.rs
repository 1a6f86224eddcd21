//! etcd's side of one `keel bench store` run: three fresh `etcd` processes (Debian's
//! etcd-server) on loopback with etcd's defaults (fsync on), and the bench clients as
//! tokio tasks over `keel_runtimes::etcd_wire`, counting requests exactly as keel's
//! bench actor does ([`keel_actors::drivers::store_bench`]): every request ends as a
//! success or an error, an error's latency is the time until it was given up (5 s
//! without an answer, or the phase's end), and both go into the same histogram.
//!
//! Routing: `leader` gives all clients one connection to the member that says it leads
//! (etcd's Maintenance Status call, through etcd's JSON gateway on the client port:
//! `etcd_wire` speaks only KV); `all` gives each member its own connection and pins
//! bench client `i` to member `i % 3`, as keel's pinned clients are. An etcd follower
//! forwards a put to its leader and serves a linearizable get after a read index.

use super::bench::{free_port, phase_figures, progress, Processes};
use super::bench_store::{Measured, Plan, Routing, Workload};
use keel_actors::drivers::check_perf::{
    check_perf_key, CheckPerfProfile, OpenLoopSchedule, CHECK_PERF_VALUE_BYTES,
};
use keel_actors::drivers::store_bench::{PhaseResult, CATCH_UP_NS};
use keel_runtimes::etcd_wire::EtcdKvClient;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Starts a 3-member etcd on loopback; returns the processes and the client URLs.
fn start_etcd(bin: &str, dir: &Path) -> Result<(Processes, Vec<String>), String> {
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peer[i]))
        .collect();
    let mut members = Processes(Vec::new());
    for i in 0..3 {
        let name = format!("e{}", i + 1);
        let log =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let peer_url = format!("http://127.0.0.1:{}", peer[i]);
        let client_url = format!("http://127.0.0.1:{}", client[i]);
        let child = Command::new(bin)
            .args(["--name", &name])
            .args(["--data-dir", dir.join(&name).to_str().unwrap_or_default()])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("keel-bench-{}", std::process::id()),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {bin} (install etcd-server): {e}"))?;
        members.0.push(child);
    }
    let endpoints = client
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    Ok((members, endpoints))
}

/// Waits until the cluster takes a write (through all endpoints).
async fn wait_writable(endpoints: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = EtcdKvClient::connect(endpoints) {
            if client.put(b"bench/warmup", b"x").await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("etcd did not become writable within 30 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn json_u64(value: &serde_json::Value) -> Option<u64> {
    // The gateway prints 64-bit integers as strings (proto3 JSON).
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

/// `Maintenance.Status` of one member through its JSON gateway
/// (`POST /v3/maintenance/status`): its own id and the leader's id.
fn member_status(endpoint: &str) -> Result<(u64, u64), String> {
    let address: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("bad etcd endpoint {endpoint}: {e}"))?;
    let timeout = Duration::from_secs(2);
    let io = |e: std::io::Error| format!("{endpoint}: {e}");
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // HTTP/1.0: the answer comes whole (no chunks) and the connection closes after it.
    let request = format!(
        "POST /v3/maintenance/status HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{endpoint}: no HTTP answer to the status call"))?;
    let status_line = String::from_utf8_lossy(&response[..head_end]);
    if !status_line
        .lines()
        .next()
        .unwrap_or_default()
        .contains(" 200")
    {
        return Err(format!("{endpoint}: status call answered {status_line}"));
    }
    let status: serde_json::Value = serde_json::from_slice(&response[head_end + 4..])
        .map_err(|e| format!("{endpoint}: status is not JSON: {e}"))?;
    match (
        json_u64(&status["header"]["member_id"]),
        json_u64(&status["leader"]),
    ) {
        (Some(member), Some(leader)) => Ok((member, leader)),
        _ => Err(format!("{endpoint}: no member or leader id in {status}")),
    }
}

/// The client URL of the member that says it is the leader (asked one at a time).
fn find_leader(endpoints: &[String]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_error = String::from("no member claims to lead");
    loop {
        for endpoint in endpoints {
            match member_status(endpoint) {
                Ok((member, leader)) if leader != 0 && member == leader => {
                    return Ok(endpoint.clone())
                }
                Ok(_) => {}
                Err(e) => last_error = e,
            }
        }
        if Instant::now() > deadline {
            return Err(format!("cannot find etcd's leader: {last_error}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How a request ended, in the keel bench actor's terms.
enum Ended {
    Answered(Result<(), String>),
    /// No answer within the request timeout: the client gave up.
    TimedOut,
    /// Still in flight when the phase (or the open loop's drain) ended.
    CutOff,
}

/// Runs `request`, giving up at the request timeout or at `end`, whichever is first.
async fn bounded<F>(request: F, began: Instant, end: Instant, timeout: Duration) -> Ended
where
    F: Future<Output = Result<(), String>>,
{
    let give_up = began + timeout;
    match tokio::time::timeout_at(give_up.min(end).into(), request).await {
        Ok(answer) => Ended::Answered(answer),
        Err(_) if end < give_up => Ended::CutOff,
        Err(_) => Ended::TimedOut,
    }
}

/// Counts one request: its latency, and a success or an error.
fn count(result: &mut PhaseResult, began: Instant, ended: Ended, timeout: Duration) {
    result.latencies_us.push(began.elapsed().as_micros() as u64);
    let error = match ended {
        Ended::Answered(Ok(())) => {
            result.ops += 1;
            return;
        }
        Ended::Answered(Err(error)) => error,
        Ended::TimedOut => format!("no answer within {} ms", timeout.as_millis()),
        Ended::CutOff => {
            result.unfinished += 1;
            "still in flight when the phase ended".to_string()
        }
    };
    result.errors += 1;
    result.first_error.get_or_insert(error);
}

fn merge(total: &mut PhaseResult, part: PhaseResult) {
    total.ops += part.ops;
    total.errors += part.errors;
    total.unfinished += part.unfinished;
    total.latencies_us.extend(part.latencies_us);
    if total.first_error.is_none() {
        total.first_error = part.first_error;
    }
}

/// The bench's key generator (a 64-bit LCG): cheap, and the same keys every run.
fn next_random(n: u64) -> u64 {
    n.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
}

/// What every closed-loop client of one phase shares.
#[derive(Clone)]
struct ClosedLoad {
    put: bool,
    keys: u64,
    value: Arc<Vec<u8>>,
    timeout: Duration,
    end: Instant,
}

async fn closed_loop_client(
    mut client: EtcdKvClient,
    worker: usize,
    load: ClosedLoad,
) -> PhaseResult {
    let mut result = PhaseResult::default();
    let mut n = worker as u64;
    while Instant::now() < load.end {
        n = next_random(n);
        let key = format!("bench/{}", (n >> 33) % load.keys);
        let began = Instant::now();
        let request = async {
            if load.put {
                client.put(key.as_bytes(), &load.value).await.map(|_| ())
            } else {
                client.get(key.as_bytes()).await.map(|_| ())
            }
        };
        let ended = bounded(request, began, load.end, load.timeout).await;
        count(&mut result, began, ended, load.timeout);
    }
    result
}

/// One closed-loop phase: `plan.clients` clients, client `i` on channel `i % channels`.
async fn closed_loop(channels: &[EtcdKvClient], plan: &Plan, put: bool) -> PhaseResult {
    let start = Instant::now();
    let load = ClosedLoad {
        put,
        keys: plan.keys,
        value: Arc::new(vec![b'v'; plan.value_size]),
        timeout: plan.request_timeout,
        end: start + plan.phase,
    };
    let tasks: Vec<_> = (0..plan.clients)
        .map(|worker| {
            let client = channels[worker % channels.len()].clone();
            tokio::spawn(closed_loop_client(client, worker, load.clone()))
        })
        .collect();
    let mut total = PhaseResult::default();
    for task in tasks {
        if let Ok(part) = task.await {
            merge(&mut total, part);
        }
    }
    total.elapsed_ms = start.elapsed().as_millis() as u64;
    total
}

/// The open loop's generator: hands puts to the queue on `etcdctl check perf`'s
/// schedule until `stop_at`, then closes the queue.
async fn generate(queue: mpsc::Sender<()>, puts_per_s: u64, start: Instant, stop_at: Instant) {
    let mut schedule = OpenLoopSchedule::new(puts_per_s, 0, CATCH_UP_NS);
    loop {
        let now = Instant::now();
        if now >= stop_at {
            return;
        }
        if queue.capacity() == 0 {
            // Every place taken: wait for one, as etcdctl's generator blocks on its channel.
            match tokio::time::timeout_at(stop_at.into(), queue.reserve()).await {
                Ok(Ok(_)) => continue,
                _ => return,
            }
        }
        let since_start_ns = now.duration_since(start).as_nanos() as u64;
        for _ in 0..schedule.take_due(since_start_ns, queue.capacity()) {
            if queue.try_send(()).is_err() {
                break;
            }
        }
        let next_due = start + Duration::from_nanos(schedule.next_due_ns());
        tokio::time::sleep_until(next_due.min(stop_at).into()).await;
    }
}

/// What every open-loop client shares.
#[derive(Clone)]
struct OpenLoad {
    queue: Arc<Mutex<mpsc::Receiver<()>>>,
    value: Arc<Vec<u8>>,
    timeout: Duration,
    /// After this, what is still queued or in flight counts as an error.
    drain_deadline: Instant,
}

/// Takes puts from the queue until it is closed and empty; returns the counts and when
/// this client's last put ended.
async fn open_loop_client(
    mut client: EtcdKvClient,
    worker: usize,
    load: OpenLoad,
) -> (PhaseResult, Instant) {
    let mut result = PhaseResult::default();
    let mut last_end = Instant::now();
    let mut n = next_random(worker as u64 ^ 0x9E37_79B9_7F4A_7C15);
    while load.queue.lock().await.recv().await.is_some() {
        let began = Instant::now();
        if began >= load.drain_deadline {
            // As the keel actor at its drain deadline: never sent, an error.
            let never_sent =
                Ended::Answered(Err("queued, never sent before the drain ended".to_string()));
            count(&mut result, began, never_sent, load.timeout);
            continue;
        }
        n = next_random(n);
        let key = check_perf_key((n >> 1) as i64);
        let request = async { client.put(&key, &load.value).await.map(|_| ()) };
        let ended = bounded(request, began, load.drain_deadline, load.timeout).await;
        count(&mut result, began, ended, load.timeout);
        last_end = Instant::now();
    }
    (result, last_end)
}

/// One `etcdctl check perf` run: the generator for `plan.phase`, the profile's clients
/// taking puts from a queue of as many places, then the drain.
async fn open_loop(
    channels: &[EtcdKvClient],
    plan: &Plan,
    profile: CheckPerfProfile,
) -> PhaseResult {
    let start = Instant::now();
    let stop_at = start + plan.phase;
    let (queue, taken) = mpsc::channel::<()>(profile.clients);
    let load = OpenLoad {
        queue: Arc::new(Mutex::new(taken)),
        value: Arc::new(vec![0u8; CHECK_PERF_VALUE_BYTES]),
        timeout: plan.request_timeout,
        drain_deadline: stop_at + plan.drain_limit(),
    };
    let workers: Vec<_> = (0..profile.clients)
        .map(|worker| {
            let client = channels[worker % channels.len()].clone();
            tokio::spawn(open_loop_client(client, worker, load.clone()))
        })
        .collect();
    generate(queue, profile.puts_per_s, start, stop_at).await;
    let mut total = PhaseResult::default();
    let mut last_end = start;
    for worker in workers {
        if let Ok((part, ended)) = worker.await {
            merge(&mut total, part);
            last_end = last_end.max(ended);
        }
    }
    // As etcdctl: the run lasts until its last put has ended.
    total.elapsed_ms = (last_end.duration_since(start).as_millis() as u64).max(1);
    total
}

/// One run of etcd: a fresh cluster in `dir`, the workload, the members' memory.
pub(super) fn measure(plan: &Plan, routing: Routing, dir: &Path) -> Result<Measured, String> {
    progress("etcd: starting 3 members on loopback (fsync on: etcd's default)");
    let (members, endpoints) = start_etcd(&plan.etcd_bin, dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(wait_writable(&endpoints))?;
    let targets = match routing {
        Routing::Leader => vec![find_leader(&endpoints)?],
        Routing::All => endpoints.clone(),
    };
    progress(&format!(
        "etcd: {} clients, {} routing ({}), {}-byte values, {} s per phase",
        plan.clients,
        routing.name(),
        targets.join(", "),
        plan.value_size,
        plan.phase.as_secs()
    ));
    let (put, range) = runtime.block_on(async {
        // Connecting spawns the channel's tasks: inside the runtime.
        let channels = targets
            .iter()
            .map(|target| EtcdKvClient::connect(std::slice::from_ref(target)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, String>(match plan.workload {
            Workload::PutRange => {
                let put = closed_loop(&channels, plan, true).await;
                let range = closed_loop(&channels, plan, false).await;
                (put, Some(range))
            }
            Workload::CheckPerf(profile) => (open_loop(&channels, plan, profile).await, None),
        })
    })?;
    // Read before the members stop: their peak over the whole run.
    let peak_rss_bytes = members.peak_rss_bytes();
    drop(members);
    Ok(Measured {
        put: phase_figures(&put),
        range: range.as_ref().map(phase_figures),
        peak_rss_bytes,
        redirects: None,
    })
}
