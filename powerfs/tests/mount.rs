//! The model seen through a real FUSE mount and real system calls.
//!
//! These tests need root, /dev/fuse and the kernel's fuse module. Without them they skip
//! with a message, except in CI (`CI=true`), where a silently missing durability test
//! would be worse than a failure. Each test unmounts before its cut and mounts again
//! after it, as the real harness does.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use keel_powerfs::{available, CutReport, Metadata, Mounted, Options, PowerFs, Tear};

fn fuse_usable(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: keel-powerfs needs FUSE in CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// An empty directory to mount on, unique to this test and process.
struct MountPoint(PathBuf);

impl MountPoint {
    fn new(test: &str) -> MountPoint {
        let path = std::env::temp_dir().join(format!("keel-powerfs-{test}-{}", std::process::id()));
        // Ignore errors: a dead mount left here by a killed run fails this call, and
        // `PowerFs::mount` detaches it.
        let _ = fs::create_dir_all(&path);
        MountPoint(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for MountPoint {
    /// `remove_dir`, never `remove_dir_all`: were the mount still live, that would delete
    /// through it. Declare the `MountPoint` before the `Mounted` so it drops after it.
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Unmount, cut, mount again: the file system's half of a power cut.
fn power_cycle(disk: &PowerFs, mount: Mounted, at: &Path) -> io::Result<(CutReport, Mounted)> {
    mount.unmount()?;
    let report = disk.cut().map_err(io::Error::other)?;
    Ok((report, disk.mount(at)?))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[test]
fn a_synced_write_survives_and_an_unsynced_one_is_lost() -> io::Result<()> {
    if !fuse_usable("a_synced_write_survives_and_an_unsynced_one_is_lost") {
        return Ok(());
    }
    let at = MountPoint::new("data");
    let disk = PowerFs::new(Options::default());
    let mount = disk.mount(at.path())?;
    let log = at.path().join("log");
    let mut file = File::create(&log)?;
    file.write_all(b"synced")?;
    file.sync_all()?;
    sync_dir(at.path())?; // the name too
    file.write_all(b" and lost")?;
    drop(file);
    assert_eq!(fs::read(&log)?, b"synced and lost");

    let (report, mount) = power_cycle(&disk, mount, at.path())?;
    assert_eq!(fs::read(&log)?, b"synced");
    assert_eq!(report.dropped_bytes, 9);
    mount.unmount()
}

/// Writes `wal/log` in a new directory, fsyncs the file and `wal/` (and the root if
/// `sync_root`), cuts, and says whether `wal/log` came back.
fn log_in_new_dir_survives(test: &str, metadata: Metadata, sync_root: bool) -> io::Result<bool> {
    let at = MountPoint::new(test);
    let disk = PowerFs::new(Options {
        metadata,
        tear: Tear::None,
    });
    let mount = disk.mount(at.path())?;
    let dir = at.path().join("wal");
    fs::create_dir(&dir)?;
    let mut file = File::create(dir.join("log"))?;
    file.write_all(b"acknowledged")?;
    file.sync_all()?;
    drop(file);
    sync_dir(&dir)?;
    if sync_root {
        sync_dir(at.path())?;
    }

    let (_, mount) = power_cycle(&disk, mount, at.path())?;
    let survived = match fs::read(dir.join("log")) {
        Ok(bytes) => {
            assert_eq!(bytes, b"acknowledged");
            true
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(err),
    };
    mount.unmount()?;
    Ok(survived)
}

#[test]
fn a_new_directory_needs_its_parent_fsynced() -> io::Result<()> {
    if !fuse_usable("a_new_directory_needs_its_parent_fsynced") {
        return Ok(());
    }
    let lost = !log_in_new_dir_survives("ondirsync", Metadata::OnDirSync, false)?;
    assert!(
        lost,
        "OnDirSync: the root was never fsynced, so wal/ must be gone"
    );
    assert!(log_in_new_dir_survives(
        "ondirsync-rootsync",
        Metadata::OnDirSync,
        true
    )?);
    assert!(log_in_new_dir_survives(
        "immediate",
        Metadata::Immediate,
        false
    )?);
    Ok(())
}

#[test]
fn a_rename_is_durable_after_the_directory_sync() -> io::Result<()> {
    if !fuse_usable("a_rename_is_durable_after_the_directory_sync") {
        return Ok(());
    }
    let at = MountPoint::new("rename");
    let disk = PowerFs::new(Options::default());
    let mount = disk.mount(at.path())?;
    let (tmp, log) = (at.path().join("log.compacting"), at.path().join("log"));
    let mut file = File::create(&tmp)?;
    file.write_all(b"compacted")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &log)?;
    sync_dir(at.path())?;

    let (_, mount) = power_cycle(&disk, mount, at.path())?;
    assert_eq!(fs::read(&log)?, b"compacted");
    assert!(!tmp.exists());
    mount.unmount()
}

#[test]
fn a_torn_write_keeps_whole_sectors() -> io::Result<()> {
    if !fuse_usable("a_torn_write_keeps_whole_sectors") {
        return Ok(());
    }
    let at = MountPoint::new("tear");
    let disk = PowerFs::new(Options {
        metadata: Metadata::Immediate,
        tear: Tear::LastWrite,
    });
    let mount = disk.mount(at.path())?;
    let path = at.path().join("f");
    let mut file = File::create(&path)?;
    file.write_all(&[1; 100])?;
    file.write_all(&[2; 900])?;
    drop(file);

    let (report, mount) = power_cycle(&disk, mount, at.path())?;
    let bytes = fs::read(&path)?;
    assert_eq!(
        bytes.len(),
        512,
        "the first write whole, the second up to the sector at 512"
    );
    assert!(bytes[..100].iter().all(|&b| b == 1) && bytes[100..].iter().all(|&b| b == 2));
    assert_eq!((report.dropped_bytes, report.torn_files), (488, 1));
    mount.unmount()
}

#[test]
fn fsync_and_fsyncdir_reach_the_file_system() -> io::Result<()> {
    if !fuse_usable("fsync_and_fsyncdir_reach_the_file_system") {
        return Ok(());
    }
    let at = MountPoint::new("stats");
    let disk = PowerFs::new(Options::default());
    let mount = disk.mount(at.path())?;
    let before = disk.stats();
    let mut file = File::create(at.path().join("f"))?;
    file.write_all(b"x")?;
    assert_eq!(disk.stats().pending_bytes, 1);
    file.sync_data()?;
    file.sync_all()?;
    sync_dir(at.path())?;
    let after = disk.stats();
    // Had fsync answered ENOSYS, the kernel would stop sending it and report success.
    assert!(
        after.fsyncs >= before.fsyncs + 2,
        "{after:?}: the fsyncs never arrived"
    );
    assert!(after.fsyncdirs > before.fsyncdirs, "{after:?}");
    assert_eq!((after.writes, after.pending_bytes), (before.writes + 1, 0));
    assert!(disk.cut().is_err(), "a cut while mounted must be refused");
    drop(file);
    mount.unmount()
}
