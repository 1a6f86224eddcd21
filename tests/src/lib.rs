//! keel-tests: helpers for keel's end-to-end tests.
//!
//! The tests themselves live in `tests/tests/` (simulator scenarios, this package) and
//! in `tests/*.rs` (tests that run the `keel` binary: they belong to the root package,
//! so cargo builds the binary for them and hands its path in `CARGO_BIN_EXE_keel`).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Whether a part the test needs (a package `scripts/setup.sh` installs, /dev/fuse, …)
/// is here: `probe` says why not. Missing, the test skips with that message locally and
/// fails in CI (`CI=true`): CI must never pass with parts missing.
pub fn part_available(part: &str, probe: impl FnOnce() -> Result<(), String>) -> bool {
    match probe() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{part} is missing in CI ({why}); scripts/setup.sh installs it")
        }
        Err(why) => {
            eprintln!("skipping: {part} is missing ({why}); run scripts/setup.sh");
            false
        }
    }
}

/// `Ok` when `program` runs with `--version` (found on PATH and executable).
pub fn program_runs(program: &str) -> Result<(), String> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{program} --version` exited with {}", out.status)),
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let unique = format!(
            "keel-test-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("temp dir can be created");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first loopback port [`free_port`] hands out. Its ports lie below Linux's
/// ephemeral range (32768–60999): a port found free inside that range can still be taken
/// by any `bind(0)` or outgoing connection before the process under test binds it; one
/// down here, only by another test that picked the same number.
const TEST_PORTS_FIRST: u16 = 20_000;
/// One past the last port [`free_port`] hands out.
const TEST_PORTS_END: u16 = 32_000;

/// How many ports this process has tried so far; each try takes the next one, so no two
/// tests of one process are handed the same port.
static TEST_PORTS_TRIED: AtomicU16 = AtomicU16::new(0);

/// A loopback port that was free a moment ago and that no other caller in this process
/// is handed. The walk starts at a place given by the process id, so that test processes
/// running side by side mostly try different ports.
pub fn free_port() -> u16 {
    let span = TEST_PORTS_END - TEST_PORTS_FIRST;
    // Below `span`, so it fits in a u16.
    let first = (std::process::id() % u32::from(span)) as u16;
    loop {
        let tried = TEST_PORTS_TRIED.fetch_add(1, Ordering::Relaxed);
        assert!(
            tried < span,
            "free_port: no loopback port left in {TEST_PORTS_FIRST}..{TEST_PORTS_END}"
        );
        let port = TEST_PORTS_FIRST + (first + tried) % span;
        // The listener is dropped at once: the port is for the process under test.
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
}

/// Store members on loopback as `--initial-cluster` and `--endpoints` take them:
/// `s1=127.0.0.1:PORT,s2=…`, member N at `ports[N-1]`.
pub fn member_list(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("s{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// How long [`wait_writable`] waits for a store cluster to elect a leader with a quorum:
/// a few election rounds, with room for a loaded machine.
const WRITABLE_WITHIN: Duration = Duration::from_secs(40);
/// How often [`wait_writable`] asks again.
const WRITABLE_POLL: Duration = Duration::from_millis(200);

/// A store cluster's status as `keel store status --json` prints it, or `Null` when it
/// prints nothing that parses (e.g. while no member answers yet). `keel` is the binary
/// to run: `env!("CARGO_BIN_EXE_keel")`, which only the root package's tests know.
pub fn store_status(keel: &str, endpoints: &str) -> serde_json::Value {
    let out = Command::new(keel)
        .args(["store", "status", "--json"])
        .args(["--endpoints", endpoints, "--timeout", "3s"])
        .output()
        .expect("keel store client runs");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until some member of the store cluster at `endpoints` (`s1=HOST:PORT,…`, the
/// members' client addresses) reports a leader and a writable quorum; returns the
/// leader's member id. Panics with the last status after [`WRITABLE_WITHIN`].
pub fn wait_writable(keel: &str, endpoints: &str) -> u64 {
    let deadline = Instant::now() + WRITABLE_WITHIN;
    loop {
        let status = store_status(keel, endpoints);
        let summary = status["summary"].as_str().unwrap_or("");
        if summary.ends_with(": writable") {
            let leader = status["members"]
                .as_array()
                .and_then(|m| m.iter().find(|s| s["role"] == "leader"))
                .and_then(|s| s["id"].as_u64());
            if let Some(leader) = leader {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster never became writable: {status}"
        );
        std::thread::sleep(WRITABLE_POLL);
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none behind.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard(Some(child))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child is present until taken")
    }
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    /// Asks the child to stop (SIGTERM, via `kill -TERM`), as an operator would: keel
    /// nodes then shut down cleanly and print their report, which a SIGKILL would lose.
    /// Does not wait; follow with [`ChildGuard::wait_output`] or a wait on
    /// [`ChildGuard::child`]. A child that has already exited is left as it is (it stays
    /// unreaped until that wait, so its pid cannot have been reused).
    pub fn terminate(&self) {
        if let Some(child) = &self.0 {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("the kill command runs");
            if !status.success() {
                eprintln!(
                    "kill -TERM {} failed ({status}); the child may have exited already",
                    child.id()
                );
            }
        }
    }
    /// Waits for the child to exit (by itself or after [`ChildGuard::terminate`]) and
    /// returns its output.
    pub fn wait_output(mut self) -> std::process::Output {
        let child = self.0.take().expect("child is present until taken");
        child
            .wait_with_output()
            .expect("child output can be collected")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An actor spec from a configuration already turned into JSON (tests build configs
/// with `serde_json::to_value` or `json!`).
pub fn spec(kind: &str, config: serde_json::Value) -> keel_engine::ActorSpec {
    keel_engine::ActorSpec {
        kind: kind.into(),
        config_json: config.to_string(),
    }
}

/// An "invariant" that judges nothing and keeps every report the actors emit, in order,
/// for a test to inspect after the run.
pub struct ReportLog(std::sync::Arc<std::sync::Mutex<Vec<keel_actors::message::Report>>>);

impl ReportLog {
    /// The checker to hand the simulator, and the log it fills.
    #[allow(clippy::type_complexity)]
    pub fn new() -> (
        Box<ReportLog>,
        std::sync::Arc<std::sync::Mutex<Vec<keel_actors::message::Report>>>,
    ) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        (Box::new(ReportLog(log.clone())), log)
    }
}

impl keel_sim::Invariant for ReportLog {
    fn name(&self) -> &'static str {
        "report-log"
    }
    fn observe(
        &mut self,
        observation: &keel_sim::Observation<'_>,
        _world: &keel_sim::World<'_>,
    ) -> Result<(), String> {
        if let keel_sim::Observation::Emitted {
            msg: keel_actors::Message::Report(report),
            ..
        } = observation
        {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(report.clone());
        }
        Ok(())
    }
    fn finish(&mut self, _world: &keel_sim::World<'_>) -> Result<String, String> {
        Ok(String::new())
    }
}

/// Runs the named scenario for its default duration, with its own faults or `faults`.
pub fn run_named(
    name: &str,
    seed: u64,
    faults: Option<keel_sim::FaultChoice>,
) -> keel_sim::RunSummary {
    let scenario = keel_sim::scenarios::find(name).expect("scenario exists");
    keel_sim::run_scenario(
        scenario,
        seed,
        scenario.default_duration_ms,
        None,
        None,
        faults,
    )
    .expect("run starts")
}

/// The run's verdict of the invariant `name` (panics if it has none).
pub fn verdict<'a>(summary: &'a keel_sim::RunSummary, name: &str) -> &'a keel_sim::Verdict {
    summary
        .invariants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{} has no verdict {name}", summary.scenario))
}

/// A one-member store on machine `s1` and `apiservers` API servers (`a1`, `a2`, …) over
/// it, as simulator machines: the base of the API tests. Returns the API servers'
/// addresses and the machines (add the clients' own).
pub fn api_cluster(apiservers: usize) -> (Vec<keel_engine::Address>, Vec<keel_sim::Machine>) {
    use keel_actors::apiserver::{ApiServerConfig, KIND as API_KIND};
    use keel_actors::store::StoreConfig;
    use keel_engine::Address;
    let store = Address::new("s1", keel_actors::store::KIND, 0);
    let addresses: Vec<Address> = (1..=apiservers)
        .map(|i| Address::new(format!("a{i}"), API_KIND, 0))
        .collect();
    let mut machines = vec![keel_sim::Machine {
        name: "s1".into(),
        actors: vec![(
            store.clone(),
            spec(
                keel_actors::store::KIND,
                serde_json::to_value(StoreConfig::new(1, vec![(1, store.clone())]))
                    .expect("serializable"),
            ),
        )],
    }];
    for a in &addresses {
        machines.push(keel_sim::Machine {
            name: a.node.to_string(),
            actors: vec![(
                a.clone(),
                spec(
                    API_KIND,
                    serde_json::to_value(ApiServerConfig::new(vec![store.clone()]))
                        .expect("serializable"),
                ),
            )],
        });
    }
    (addresses, machines)
}

/// A request for a core (v1) resource in namespace `default`.
pub fn default_ns_request(
    verb: keel_actors::apiserver::Verb,
    resource: &str,
    name: Option<&str>,
    body: Option<serde_json::Value>,
) -> keel_actors::apiserver::ApiRequest {
    keel_actors::apiserver::ApiRequest {
        verb,
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
        subresource: None,
        namespace: Some("default".into()),
        name: name.map(str::to_string),
        body: body
            .map(|b| serde_json::to_vec(&b).expect("serializable"))
            .unwrap_or_default(),
        options: keel_actors::apiserver::ListOptions::default(),
    }
}

/// One machine's [`keel_engine::NodeRuntime`] driven by hand: a test places actors on it,
/// hands it envelopes from addresses on other machines (a client it plays itself, with
/// duplicates or reorderings of its choice) and reads what the actors send back. Time
/// moves only when the test says so, in steps of the runtime's own next deadline, so
/// the schedule is exact — for the protocol corners the simulator's random network
/// reaches only by luck.
pub struct OneMachine {
    runtime: keel_engine::NodeRuntime<keel_actors::Message>,
    disks: std::collections::BTreeMap<keel_engine::Address, keel_engine::MemStorage>,
    now_ns: u64,
    /// Envelopes the actors sent to other machines, in order, not yet taken.
    pub sent: Vec<keel_engine::Envelope<keel_actors::Message>>,
}

impl OneMachine {
    /// The wall clock the actors read: a fixed origin plus the monotonic time.
    const WALL_ORIGIN_MS: u64 = 1_700_000_000_000;

    pub fn new(node: &str) -> OneMachine {
        OneMachine {
            runtime: keel_engine::NodeRuntime::new(
                keel_engine::NodeId::new(node),
                Default::default(),
                false,
            )
            .expect("default limits are valid"),
            disks: Default::default(),
            now_ns: 0,
            sent: Vec::new(),
        }
    }

    fn clocks(&self) -> keel_engine::Clocks {
        keel_engine::Clocks {
            wall: keel_engine::Time::from_millis(Self::WALL_ORIGIN_MS + self.now_ns / 1_000_000),
            monotonic_ns: self.now_ns,
        }
    }

    /// Starts the actor of `spec` at `address` (fresh, or restarted when the machine
    /// has its disk), with a fixed seed.
    pub fn start(&mut self, address: &keel_engine::Address, spec: keel_engine::ActorSpec) {
        use keel_engine::ActorFactory;
        let actor = keel_actors::registry::Registry
            .build(address, &spec)
            .expect("the actor builds");
        let clocks = self.clocks();
        let kind = if self.disks.contains_key(address) {
            keel_engine::StartKind::Restart
        } else {
            keel_engine::StartKind::Fresh
        };
        let disk = self.disks.entry(address.clone()).or_default();
        self.runtime
            .start_actor(clocks, address.clone(), spec, actor, 7, kind, disk)
            .expect("the actor starts");
        self.release();
    }

    /// Hands the machine an envelope from another machine and runs until idle.
    pub fn deliver(&mut self, envelope: keel_engine::Envelope<keel_actors::Message>) {
        self.runtime.deliver(envelope).expect("an actor takes it");
        self.settle();
    }

    fn release(&mut self) {
        while let Some(output) = self.runtime.poll_output() {
            match output {
                keel_engine::NodeOutput::Transmit(envelope) => self.sent.push(envelope),
                keel_engine::NodeOutput::StepError { actor, error } => {
                    panic!("{actor} could not handle an input: {error}")
                }
                _ => {}
            }
        }
    }

    /// Runs turns at the current time until nothing is queued.
    fn settle(&mut self) {
        loop {
            let clocks = self.clocks();
            self.runtime.turn(clocks, &mut self.disks);
            self.release();
            if !self.runtime.has_queued() {
                return;
            }
        }
    }

    /// Lets `ms` milliseconds pass, firing every timer that falls due on the way.
    pub fn advance(&mut self, ms: u64) {
        let until = self.now_ns + ms * 1_000_000;
        loop {
            self.settle();
            match self.runtime.next_deadline() {
                Some(due) if due <= until => self.now_ns = self.now_ns.max(due),
                _ => break,
            }
        }
        self.now_ns = until;
        self.settle();
    }

    /// A machine that starts with these disks (another machine's, after
    /// [`OneMachine::into_disks`]: the same actors restart from them).
    pub fn with_disks(
        node: &str,
        disks: std::collections::BTreeMap<keel_engine::Address, keel_engine::MemStorage>,
    ) -> OneMachine {
        OneMachine {
            disks,
            ..OneMachine::new(node)
        }
    }

    /// The disks, as a machine's power is cut after a sync: what was synced survives,
    /// and of the unsynced batches as many as `surviving`.
    pub fn into_disks(
        self,
        surviving: usize,
    ) -> std::collections::BTreeMap<keel_engine::Address, keel_engine::MemStorage> {
        let mut disks = self.disks;
        for disk in disks.values_mut() {
            disk.crash(surviving);
        }
        disks
    }

    /// An actor's disk.
    pub fn disk(&self, address: &keel_engine::Address) -> &keel_engine::MemStorage {
        &self.disks[address]
    }

    /// The runtime itself, to hand over several envelopes before a turn runs.
    pub fn runtime_mut(&mut self) -> &mut keel_engine::NodeRuntime<keel_actors::Message> {
        &mut self.runtime
    }

    /// Takes the envelopes sent so far.
    pub fn take_sent(&mut self) -> Vec<keel_engine::Envelope<keel_actors::Message>> {
        std::mem::take(&mut self.sent)
    }
}

/// One run of hand-built machines with the given network, faults and extra checkers,
/// keeping every report the actors emit: the shape of the tests that build their own
/// cluster rather than run a named scenario. Returns the summary and the reports.
pub fn run_machines(
    scenario: &str,
    seed: u64,
    duration_ms: u64,
    machines: Vec<keel_sim::Machine>,
    network: keel_sim::NetworkConfig,
    faults: keel_sim::FaultSchedule,
    mut invariants: Vec<Box<dyn keel_sim::Invariant + Send>>,
) -> Result<(keel_sim::RunSummary, Vec<keel_actors::message::Report>), String> {
    let (log, reports) = ReportLog::new();
    invariants.push(log);
    let summary = keel_sim::run(keel_sim::SimConfig {
        scenario: scenario.into(),
        seed,
        duration_ms,
        machines,
        network,
        faults,
        invariants,
        record: None,
        progress_every_ms: None,
    })
    .map_err(|e| e.to_string())?;
    let reports = std::mem::take(&mut *reports.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((summary, reports))
}
