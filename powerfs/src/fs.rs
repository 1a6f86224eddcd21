//! The FUSE side: one `Handler` per mount session maps each kernel request to one `State`
//! method under the shared lock.
//!
//! Two rules hold for every handler:
//! * it never panics, because a panic would end the session and leave a dead mount that
//!   answers ENOTCONN; a poisoned lock is recovered and a panicking `State` method turns
//!   into EIO;
//! * it serves only while its session's epoch is current. Every mount, unmount and cut
//!   bumps the epoch, so a request still queued on an old (lazily detached) session, for
//!   example from a process killed in the middle of a write, answers EIO instead of
//!   changing the disk after the power was cut.

use std::ffi::OsStr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::state::{AttrChange, Owner, State};

/// How long the kernel may cache attributes and names. Short, and each remount after a cut
/// drops the kernel's caches anyway.
const TTL: Duration = Duration::from_secs(1);
/// Inode numbers are never reused, so one generation fits all.
const GENERATION: Generation = Generation(0);

/// Locks the state, recovering it if a thread panicked while holding the lock: the data
/// is still the best picture of the disk, and refusing would hang every later request.
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Handler {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) epoch: u64,
}

impl Handler {
    /// Runs `f` on the state if this session is still current, else answers EIO.
    fn with<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut State) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let mut state = lock(&self.state);
        if state.epoch != self.epoch {
            tracing::debug!("keel-powerfs: {op} on a stale session (after an unmount or cut): EIO");
            return Err(Errno::EIO);
        }
        match panic::catch_unwind(AssertUnwindSafe(|| f(&mut state))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("keel-powerfs: {op} panicked; answering EIO");
                Err(Errno::EIO)
            }
        }
    }

    fn reply_entry(
        &self,
        op: &str,
        reply: ReplyEntry,
        f: impl FnOnce(&mut State) -> Result<FileAttr, Errno>,
    ) {
        match self.with(op, f) {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn reply_attr(
        &self,
        op: &str,
        reply: ReplyAttr,
        f: impl FnOnce(&mut State) -> Result<FileAttr, Errno>,
    ) {
        match self.with(op, f) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(errno) => reply.error(errno),
        }
    }

    fn reply_empty(
        &self,
        op: &str,
        reply: ReplyEmpty,
        f: impl FnOnce(&mut State) -> Result<(), Errno>,
    ) {
        match self.with(op, f) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn reply_open(
        &self,
        op: &str,
        reply: ReplyOpen,
        f: impl FnOnce(&mut State) -> Result<(), Errno>,
    ) {
        // No handle state (operations go by inode) and no DIRECT_IO: the remount after a
        // cut drops the page cache, so cached pages never outlive the bytes they show.
        match self.with(op, f) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }
}

fn owner(req: &Request, mode: u32, umask: u32) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
        perm: (mode & !umask & 0o7777) as u16,
    }
}

fn resolve(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Handler {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.reply_entry("lookup", reply, |s| s.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.reply_attr("getattr", reply, |s| s.attr(ino.0));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            perm: mode.map(|mode| (mode & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(resolve),
            mtime: mtime.map(resolve),
        };
        self.reply_attr("setattr", reply, |s| s.set_attr(ino.0, change));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let owner = owner(req, mode, umask);
        self.reply_entry("mkdir", reply, |s| s.make(parent.0, name, true, owner));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_empty("unlink", reply, |s| s.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_empty("rmdir", reply, |s| s.rmdir(parent.0, name));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled.
        let noreplace = if flags.is_empty() {
            false
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            true
        } else {
            reply.error(Errno::EINVAL);
            return;
        };
        self.reply_empty("rename", reply, |s| {
            s.rename(parent.0, name, newparent.0, newname, noreplace)
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.reply_open("open", reply, |s| s.attr(ino.0).map(|_| ()));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with("read", |s| s.read(ino.0, offset, size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with("write", |s| s.write(ino.0, offset, data)) {
            Ok(written) => reply.written(written),
            Err(errno) => reply.error(errno),
        }
    }

    /// `close(2)` persists nothing: only fsync does.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// Must be implemented: if it answered ENOSYS (the default), the kernel would mark the
    /// connection `no_fsync` and report success for every later fsync without asking,
    /// and nothing would ever become durable.
    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.reply_empty("fsync", reply, |s| s.fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.reply_open("opendir", reply, |s| s.check_dir(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.with("readdir", |s| s.readdir(ino.0)) {
            Ok(entries) => entries,
            Err(errno) => {
                reply.error(errno);
                return;
            }
        };
        // The offset of an entry is the index of the one after it.
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (child, kind, name)) in entries.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*child), index as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// Must be implemented for the same reason as `fsync` (`no_fsyncdir`).
    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.reply_empty("fsyncdir", reply, |s| s.fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A roomy disk (16 GiB, a million inodes): sled and the WAL only need it not full.
        let (blocks, files) = (1 << 22, 1 << 20);
        reply.statfs(blocks, blocks, blocks, files, files, 4096, 255, 4096);
    }

    /// Permissions are not modelled: the only users are root's test processes.
    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let owner = owner(req, mode, umask);
        match self.with("create", |s| s.make(parent.0, name, false, owner)) {
            Ok(attr) => reply.created(&TTL, &attr, GENERATION, FileHandle(0), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }
}
