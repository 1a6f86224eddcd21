//! keel-tests: helpers for keel's end-to-end tests.
//!
//! The tests themselves live in `tests/tests/` (simulator scenarios, this package) and
//! in `tests/*.rs` (tests that run the `keel` binary: they belong to the root package,
//! so cargo builds the binary for them and hands its path in `CARGO_BIN_EXE_keel`).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;

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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("loopback has free ports")
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
    /// Waits for the child to exit by itself and returns its output.
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
