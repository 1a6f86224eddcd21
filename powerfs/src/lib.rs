//! keel-powerfs: an in-memory FUSE file system that can lose power.
//!
//! A test mounts one [`PowerFs`] per simulated machine (its disk), runs real keel
//! processes with their data directories on the mount, kills them with SIGKILL, unmounts,
//! calls [`PowerFs::cut`] and mounts again. The cut keeps exactly what a disk is
//! guaranteed to keep after a power loss, and nothing the page cache merely held:
//!
//! * **Data.** Each file has `current` bytes (what reads see), `durable` bytes and the
//!   ordered `pending` writes and truncations between them. `fsync` and `fdatasync` both
//!   make `current` durable. A cut drops every pending operation, or with [`Tear`] keeps a
//!   prefix of them, the last one cut at a 512-byte sector boundary of the file (disks
//!   write whole sectors, so a small record is never half-written).
//! * **Names.** Under [`Metadata::OnDirSync`] a create, mkdir, unlink or rename is durable
//!   only once its parent directory is fsynced (the POSIX-pessimistic reading; a file's
//!   fsync does not persist its name). [`Metadata::Immediate`] makes names durable at
//!   once, as LazyFS does. After a cut, whatever the root no longer reaches through
//!   durable names is gone.
//!
//! This is LazyFS's model (unsynced data is lost at a crash) plus directory durability,
//! which keel's WAL depends on. It runs in-process, so the test controls it through a
//! plain handle: no FIFO, socket or helper binary. It uses `fuser` without default
//! features, which on Linux mounts with `mount(2)` directly (as root): no libfuse, no
//! `fusermount3`, no system package. The remount after a cut matters: it drops the
//! kernel's page and attribute caches, which would otherwise still serve dropped bytes.
//!
//! Not modelled: unsynced writes persisting out of order, attribute durability, links,
//! symlinks, xattrs, permissions (root's tests only). Linux only.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use keel_powerfs::{Options, PowerFs};
//! let disk = PowerFs::new(Options::default());
//! let mount = disk.mount(std::path::Path::new("/tmp/m1"))?;
//! // ... run processes on /tmp/m1, SIGKILL and reap them ...
//! mount.unmount()?;
//! let report = disk.cut().expect("unmounted");
//! let mount = disk.mount(std::path::Path::new("/tmp/m1"))?;
//! # drop((report, mount)); Ok(()) }
//! ```

// A host-side test crate: it owns files, threads and the environment.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod fs;
mod state;

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};

use crate::fs::{lock, Handler};
use crate::state::State;

/// The mount source, which marks keel-powerfs mounts in /proc/self/mountinfo.
const FS_NAME: &str = "keel-powerfs";
/// How long an unmount waits for a busy mount (files still closing) before detaching it.
const UNMOUNT_PATIENCE: Duration = Duration::from_secs(1);

/// When a namespace change (create, mkdir, unlink, rename) becomes durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Metadata {
    /// Once its parent directory is fsynced (keel's default: its WAL needs this).
    #[default]
    OnDirSync,
    /// At once, as LazyFS does.
    Immediate,
}

/// What a cut keeps of a file's unsynced writes and truncations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tear {
    /// Nothing: the file goes back to its last fsync.
    #[default]
    None,
    /// All but the last operation, and a sector-aligned prefix of the last (possibly empty).
    LastWrite,
    /// A random number of operations and a sector-aligned prefix of the next, drawn from
    /// `seed` and the number of earlier cuts of this disk.
    Prefix { seed: u64 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub metadata: Metadata,
    pub tear: Tear,
}

/// What one cut threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Bytes of unsynced writes that did not survive.
    pub dropped_bytes: u64,
    /// Files that kept some, but not all, of their unsynced operations.
    pub torn_files: u64,
    /// Names (new or moved) that were not durable and disappeared.
    pub lost_names: u64,
}

impl std::ops::AddAssign for CutReport {
    fn add_assign(&mut self, other: CutReport) {
        self.dropped_bytes += other.dropped_bytes;
        self.torn_files += other.torn_files;
        self.lost_names += other.lost_names;
    }
}

/// Counters since the disk was created. `fsyncs > 0` proves the syncs reached this file
/// system (a process that bypassed the mount, or a kernel that had decided fsync is
/// unsupported, would leave it at 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub fsyncs: u64,
    pub fsyncdirs: u64,
    /// Unsynced bytes a cut right now would put at risk.
    pub pending_bytes: u64,
}

/// One simulated disk. Clones share it.
#[derive(Clone)]
pub struct PowerFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for PowerFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerFs")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PowerFs {
    /// An empty disk: only the root directory, which always exists.
    pub fn new(options: Options) -> PowerFs {
        PowerFs {
            state: Arc::new(Mutex::new(State::new(options))),
        }
    }

    /// Mounts the disk at `at` (an existing directory), serving it from a background
    /// thread until the returned [`Mounted`] is unmounted or dropped. A dead keel-powerfs
    /// mount left at `at` by a killed earlier run is detached first.
    pub fn mount(&self, at: &Path) -> io::Result<Mounted> {
        let at = absolute(at);
        detach_stale_mounts(&at)?;
        let epoch = {
            let mut state = lock(&self.state);
            if state.mounted {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "keel-powerfs: this disk is already mounted",
                ));
            }
            state.mounted = true;
            state.epoch += 1;
            state.epoch
        };
        let handler = Handler {
            state: Arc::clone(&self.state),
            epoch,
        };
        match fuser::spawn_mount(handler, &at, &session_config()) {
            Ok(session) => Ok(Mounted {
                disk: self.clone(),
                at,
                session: Some(session),
            }),
            Err(err) => {
                lock(&self.state).mounted = false;
                Err(io::Error::new(
                    err.kind(),
                    format!("keel-powerfs: mounting {}: {err}", at.display()),
                ))
            }
        }
    }

    /// Cuts the power: see the crate docs. Refused while mounted, because the kernel's
    /// caches would go on serving what the cut dropped; unmount first.
    pub fn cut(&self) -> Result<CutReport, String> {
        let mut state = lock(&self.state);
        if state.mounted {
            return Err("keel-powerfs: cut while mounted; unmount first".into());
        }
        let report = state.cut();
        tracing::info!(?report, "keel-powerfs: power cut");
        Ok(report)
    }

    pub fn stats(&self) -> Stats {
        lock(&self.state).stats()
    }
}

/// A live mount. Unmounts on drop; prefer [`Mounted::unmount`] to see errors. Drop it
/// before removing the mount point's directory.
pub struct Mounted {
    disk: PowerFs,
    at: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").field("at", &self.at).finish()
    }
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Unmounts and joins the session thread. If files are still open (a killed process
    /// not yet reaped), retries for a second, then detaches lazily (`MNT_DETACH`): the
    /// path is free for the next mount and the old session's late requests answer EIO.
    pub fn unmount(mut self) -> io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // On EBUSY fuser has given up its mount handle and detached its thread, which
        // ends by itself once the mount is finally gone.
        let result = match session.umount_and_join() {
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => unmount_busy(&self.at),
            other => other,
        };
        let mut state = lock(&self.disk.state);
        state.mounted = false;
        state.epoch += 1;
        result
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(err) = self.finish() {
            tracing::warn!("keel-powerfs: unmounting {}: {err}", self.at.display());
        }
    }
}

// `Config` is #[non_exhaustive]: it can only be built from its default.
#[allow(clippy::field_reassign_with_default)]
fn session_config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(FS_NAME.to_string()),
        MountOption::NoAtime,
    ];
    // No AutoUnmount: it needs the fusermount3 binary and acl != Owner. Root mounts and
    // root's processes use the mount, so Owner (no allow_other) is enough.
    config.acl = SessionACL::Owner;
    config.n_threads = None; // one thread: the state is behind one lock anyway
    config
}

/// Why FUSE cannot be used here, if it cannot: tests skip on a developer's machine and
/// fail in CI.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: keel-powerfs mounts with mount(2), which needs root".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|err| format!("cannot open /dev/fuse: {err}"))?;
    let filesystems = std::fs::read_to_string("/proc/filesystems")
        .map_err(|err| format!("cannot read /proc/filesystems: {err}"))?;
    if !filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some("fuse"))
    {
        return Err(
            "the kernel has no fuse file system (not in /proc/filesystems; try modprobe fuse)"
                .into(),
        );
    }
    Ok(())
}

/// `at` made absolute with its parent's symlinks resolved, to compare with mountinfo.
/// `at` itself is not resolved: a dead mount there answers ENOTCONN.
fn absolute(at: &Path) -> PathBuf {
    let joined = match std::env::current_dir() {
        Ok(cwd) if at.is_relative() => cwd.join(at),
        _ => at.to_path_buf(),
    };
    if let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) {
        if let Ok(parent) = std::fs::canonicalize(parent) {
            return parent.join(name);
        }
    }
    joined
}

/// A test process killed by SIGKILL (a CI timeout) leaves a dead mount that answers
/// ENOTCONN, and mounting over it fails. Detach the keel-powerfs mounts at exactly `at`
/// that are dead; refuse if a live one is there.
fn detach_stale_mounts(at: &Path) -> io::Result<()> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(());
    };
    let stacked = table
        .lines()
        .filter_map(powerfs_mount_point)
        .filter(|point| point == at)
        .count();
    for _ in 0..stacked {
        match std::fs::metadata(at) {
            Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => {
                tracing::warn!(
                    "keel-powerfs: detaching a dead mount at {} left by an earlier run",
                    at.display()
                );
                umount2(at, libc::MNT_DETACH)?;
            }
            _ => {
                let why = format!(
                    "keel-powerfs: {} is already a live keel-powerfs mount",
                    at.display()
                );
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, why));
            }
        }
    }
    Ok(())
}

/// The mount point of a /proc/self/mountinfo line, if it is a keel-powerfs mount.
/// Format: `id parent dev root mountpoint options [optional...] - fstype source superopts`.
fn powerfs_mount_point(line: &str) -> Option<PathBuf> {
    let (left, right) = line.split_once(" - ")?;
    let mut right = right.split(' ');
    let (fstype, source) = (right.next()?, right.next()?);
    if !fstype.starts_with("fuse") || source != FS_NAME {
        return None;
    }
    let point = left.split(' ').nth(4)?;
    Some(PathBuf::from(OsString::from_vec(unescape(point))))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, tail.get(..3).and_then(octal)) {
            (b'\\', Some(code)) => {
                out.push(code);
                rest = &tail[3..];
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    out
}

fn octal(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &digit| match digit {
        b'0'..=b'7' => acc.checked_mul(8)?.checked_add(digit - b'0'),
        _ => None,
    })
}

/// After fuser's unmount answered EBUSY: retry (a killed process's files close once it is
/// reaped), then detach lazily so the path is free for the next mount.
fn unmount_busy(at: &Path) -> io::Result<()> {
    let deadline = Instant::now() + UNMOUNT_PATIENCE;
    loop {
        match umount2(at, 0) {
            Ok(()) => return Ok(()),
            // No longer a mount point: someone else unmounted it.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(
                    "keel-powerfs: {} still busy after {UNMOUNT_PATIENCE:?}; detaching",
                    at.display()
                );
                return umount2(at, libc::MNT_DETACH);
            }
            Err(err) => return Err(err),
        }
    }
}

fn umount2(at: &Path, flags: libc::c_int) -> io::Result<()> {
    let path = CString::new(at.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "mount path contains a NUL byte",
        )
    })?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use fuser::Errno;

    use super::*;
    use crate::state::{cut_points, Owner, Pending, ROOT};

    const OWNER: Owner = Owner {
        uid: 0,
        gid: 0,
        perm: 0o644,
    };

    fn disk(metadata: Metadata, tear: Tear) -> State {
        State::new(Options { metadata, tear })
    }

    fn create(state: &mut State, parent: u64, name: &str) -> u64 {
        state
            .make(parent, OsStr::new(name), false, OWNER)
            .expect("create")
            .ino
            .0
    }

    fn mkdir(state: &mut State, parent: u64, name: &str) -> u64 {
        state
            .make(parent, OsStr::new(name), true, OWNER)
            .expect("mkdir")
            .ino
            .0
    }

    /// The bytes under `name` in `parent`, or None if the name is gone.
    fn contents(state: &State, parent: u64, name: &str) -> Option<Vec<u8>> {
        let ino = state.lookup(parent, OsStr::new(name)).ok()?.ino.0;
        state.read(ino, 0, u32::MAX).ok()
    }

    #[test]
    fn fsync_keeps_data_and_a_cut_drops_the_rest() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let f = create(&mut s, ROOT, "log");
        s.fsyncdir(ROOT).unwrap();
        s.write(f, 0, b"synced").unwrap();
        s.fsync(f).unwrap();
        s.write(f, 6, b" lost").unwrap();
        assert_eq!(s.stats().pending_bytes, 5);
        let report = s.cut();
        assert_eq!(
            report,
            CutReport {
                dropped_bytes: 5,
                torn_files: 0,
                lost_names: 0
            }
        );
        assert_eq!(contents(&s, ROOT, "log").unwrap(), b"synced");
        assert_eq!(s.stats().pending_bytes, 0);
    }

    #[test]
    fn a_durable_name_never_fsynced_comes_back_empty() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let f = create(&mut s, ROOT, "conf");
        s.fsyncdir(ROOT).unwrap();
        s.write(f, 0, b"never synced").unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "conf").unwrap(), b"");
    }

    #[test]
    fn truncation_is_pending_in_order_with_writes() {
        let mut s = disk(Metadata::Immediate, Tear::None);
        let f = create(&mut s, ROOT, "wal");
        s.write(f, 0, &[7; 1000]).unwrap();
        s.fsync(f).unwrap();
        s.set_len(f, 100).unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "wal").unwrap().len(), 1000);
        s.set_len(f, 100).unwrap();
        s.fsync(f).unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "wal").unwrap().len(), 100);
    }

    #[test]
    fn cut_points_fall_on_sector_boundaries_of_the_file() {
        let write = |offset, len| Pending::Write {
            offset,
            data: vec![1; len],
        };
        assert_eq!(cut_points(&write(0, 1024)), vec![0, 512]);
        assert_eq!(cut_points(&write(100, 60)), vec![0]);
        assert_eq!(cut_points(&write(100, 1000)), vec![0, 412, 924]);
        assert_eq!(cut_points(&Pending::SetLen { size: 4096 }), vec![0]);
    }

    #[test]
    fn last_write_tear_keeps_earlier_writes_and_whole_sectors_of_the_last() {
        let mut s = disk(Metadata::Immediate, Tear::LastWrite);
        let f = create(&mut s, ROOT, "f");
        s.write(f, 0, &[1; 100]).unwrap();
        s.write(f, 100, &[2; 1200]).unwrap();
        let report = s.cut();
        let bytes = contents(&s, ROOT, "f").unwrap();
        assert_eq!(
            bytes.len(),
            1024,
            "the first write, then the second up to the sector at 1024"
        );
        assert!(bytes[..100].iter().all(|&b| b == 1) && bytes[100..].iter().all(|&b| b == 2));
        assert_eq!(
            report,
            CutReport {
                dropped_bytes: 1300 - 1024,
                torn_files: 1,
                lost_names: 0
            }
        );

        // A write inside one sector is all or nothing (sled's small `conf`).
        s.write(f, 1024, &[3; 60]).unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "f").unwrap().len(), 1024);
    }

    #[test]
    fn prefix_tear_leaves_a_prefix_cut_at_an_operation_or_sector_boundary() {
        let full: Vec<u8> = (0..3500u32).map(|i| (i % 251) as u8).collect();
        let mut seen = Vec::new();
        for seed in 0..40 {
            let mut s = disk(Metadata::Immediate, Tear::Prefix { seed });
            let f = create(&mut s, ROOT, "f");
            for chunk in 0..5 {
                s.write(f, chunk * 700, &full[chunk as usize * 700..][..700])
                    .unwrap();
            }
            s.cut();
            let bytes = contents(&s, ROOT, "f").unwrap();
            assert_eq!(bytes[..], full[..bytes.len()], "seed {seed}");
            assert!(
                bytes.len().is_multiple_of(512) || bytes.len().is_multiple_of(700),
                "seed {seed}: {} bytes",
                bytes.len()
            );
            seen.push(bytes.len());
        }
        seen.sort_unstable();
        seen.dedup();
        assert!(
            seen.len() > 3,
            "seeds should tear at different places: {seen:?}"
        );
    }

    #[test]
    fn prefix_tear_is_deterministic_per_seed() {
        let run = || {
            let mut s = disk(Metadata::Immediate, Tear::Prefix { seed: 9 });
            let f = create(&mut s, ROOT, "f");
            for i in 0..8u64 {
                s.write(f, i * 300, &[i as u8; 300]).unwrap();
            }
            (s.cut(), contents(&s, ROOT, "f"))
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn names_need_a_directory_fsync_unless_immediate() {
        for (metadata, survives) in [(Metadata::OnDirSync, false), (Metadata::Immediate, true)] {
            let mut s = disk(metadata, Tear::None);
            let f = create(&mut s, ROOT, "new");
            s.write(f, 0, b"data").unwrap();
            s.fsync(f).unwrap();
            let report = s.cut();
            assert_eq!(
                contents(&s, ROOT, "new").is_some(),
                survives,
                "{metadata:?}"
            );
            assert_eq!(report.lost_names, u64::from(!survives));
        }
    }

    #[test]
    fn an_unsynced_unlink_is_undone() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let f = create(&mut s, ROOT, "f");
        s.write(f, 0, b"kept").unwrap();
        s.fsync(f).unwrap();
        s.fsyncdir(ROOT).unwrap();
        s.unlink(ROOT, OsStr::new("f")).unwrap();
        assert!(contents(&s, ROOT, "f").is_none());
        s.cut();
        assert_eq!(contents(&s, ROOT, "f").unwrap(), b"kept");
    }

    #[test]
    fn rename_is_durable_only_after_fsyncdir() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let f = create(&mut s, ROOT, "a.tmp");
        s.write(f, 0, b"compacted").unwrap();
        s.fsync(f).unwrap();
        s.fsyncdir(ROOT).unwrap();

        s.rename(ROOT, OsStr::new("a.tmp"), ROOT, OsStr::new("a"), false)
            .unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "a.tmp").unwrap(), b"compacted");
        assert!(contents(&s, ROOT, "a").is_none());

        s.rename(ROOT, OsStr::new("a.tmp"), ROOT, OsStr::new("a"), false)
            .unwrap();
        s.fsyncdir(ROOT).unwrap();
        s.cut();
        assert_eq!(contents(&s, ROOT, "a").unwrap(), b"compacted");
        assert!(contents(&s, ROOT, "a.tmp").is_none());
    }

    #[test]
    fn rename_replaces_the_target() {
        let mut s = disk(Metadata::Immediate, Tear::None);
        let old = create(&mut s, ROOT, "log");
        s.write(old, 0, b"old").unwrap();
        let new = create(&mut s, ROOT, "log.new");
        s.write(new, 0, b"new").unwrap();
        s.rename(ROOT, OsStr::new("log.new"), ROOT, OsStr::new("log"), false)
            .unwrap();
        assert_eq!(contents(&s, ROOT, "log").unwrap(), b"new");
        assert_eq!(s.readdir(ROOT).unwrap().len(), 3, ". .. log");
        let err = s.rename(ROOT, OsStr::new("log"), ROOT, OsStr::new("log"), true);
        assert_eq!(err, Ok(()), "renaming onto itself is a no-op");
    }

    #[test]
    fn a_file_in_an_unsynced_new_directory_is_dropped() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let d = mkdir(&mut s, ROOT, "wal");
        let f = create(&mut s, d, "log");
        s.write(f, 0, b"acknowledged").unwrap();
        s.fsync(f).unwrap();
        s.fsyncdir(d).unwrap();
        s.cut();
        assert!(s.lookup(ROOT, OsStr::new("wal")).is_err());
        assert_eq!(s.inodes.len(), 1, "only the root is left");
        assert_eq!(s.attr(f).map(|_| ()), Err(Errno::ENOENT));
    }

    #[test]
    fn open_unlinked_files_keep_working_until_the_cut() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let f = create(&mut s, ROOT, "tmp");
        s.unlink(ROOT, OsStr::new("tmp")).unwrap();
        s.write(f, 0, b"still here").unwrap();
        assert_eq!(s.read(f, 0, 100).unwrap(), b"still here");
        assert_eq!(s.attr(f).unwrap().nlink, 0);
        s.cut();
        assert!(s.attr(f).is_err());
    }

    #[test]
    fn rmdir_refuses_a_non_empty_directory() {
        let mut s = disk(Metadata::OnDirSync, Tear::None);
        let d = mkdir(&mut s, ROOT, "d");
        create(&mut s, d, "f");
        assert_eq!(s.rmdir(ROOT, OsStr::new("d")), Err(Errno::ENOTEMPTY));
        s.unlink(d, OsStr::new("f")).unwrap();
        s.rmdir(ROOT, OsStr::new("d")).unwrap();
        assert_eq!(s.attr(ROOT).unwrap().nlink, 2);
    }

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let ours = "36 25 0:32 / /tmp/a\\040b rw,noatime shared:1 - fuse keel-powerfs rw";
        assert_eq!(powerfs_mount_point(ours), Some(PathBuf::from("/tmp/a b")));
        let other = "37 25 0:33 / /tmp/c rw - fuse sshfs rw";
        assert_eq!(powerfs_mount_point(other), None);
        assert_eq!(unescape("a\\134b\\0"), b"a\\b\\0");
    }
}
