//! The simulated disk: what reads see now, what a power cut would leave behind, and the
//! cut itself.
//!
//! Everything here is plain data and logic with no FUSE session in it, so the unit tests
//! in lib.rs drive it directly. `fs.rs` maps each FUSE request to one method here, and
//! every method answers an `Errno` instead of panicking.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{CutReport, Metadata, Options, Stats, Tear};

/// The root directory's inode number; it always exists.
pub(crate) const ROOT: u64 = 1;
/// Disks write whole sectors, so a tear never splits one.
pub(crate) const SECTOR: u64 = 512;
/// Files larger than this are refused (EFBIG): a stray huge offset must not make the
/// test process allocate gigabytes, or abort when it cannot.
const MAX_FILE: u64 = 1 << 30;
const MAX_NAME: usize = 255;

/// One unsynced change to a file, kept in order so a cut can replay a prefix of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    /// A truncation or extension (`ftruncate`, `set_len`, `O_TRUNC`).
    SetLen {
        size: u64,
    },
}

impl Pending {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_at(bytes, *offset, data),
            // Sizes are checked against MAX_FILE before they get here.
            Pending::SetLen { size } => bytes.resize(*size as usize, 0),
        }
    }

    fn write_len(&self) -> u64 {
        match self {
            Pending::Write { data, .. } => data.len() as u64,
            Pending::SetLen { .. } => 0,
        }
    }
}

/// Writes `data` at `offset`, zero-filling any gap (offsets are checked against MAX_FILE).
fn write_at(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

/// A regular file: `current` is what reads see; `durable` is what survives a cut;
/// `pending` turns `durable` into `current`, one operation at a time.
#[derive(Default)]
pub(crate) struct FileBody {
    pub(crate) current: Vec<u8>,
    pub(crate) durable: Vec<u8>,
    pub(crate) pending: Vec<Pending>,
}

impl FileBody {
    fn push(&mut self, op: Pending) {
        op.apply(&mut self.current);
        self.pending.push(op);
    }

    /// `fsync` and `fdatasync` alike: both persist data and size (WalStorage relies on
    /// `fdatasync` persisting an append's new size, as real file systems do).
    fn sync(&mut self) {
        self.durable = self.current.clone();
        self.pending.clear();
    }

    /// Replaces both versions with `durable` plus what `keep` keeps of the pending
    /// operations. Returns the unsynced bytes dropped and whether the file is torn (some,
    /// but not all, of its unsynced operations survived).
    fn cut(&mut self, keep: Keep) -> (u64, bool) {
        let total: u64 = self.pending.iter().map(Pending::write_len).sum();
        let mut bytes = std::mem::take(&mut self.durable);
        let mut kept = 0;
        for op in self.pending.iter().take(keep.ops) {
            op.apply(&mut bytes);
            kept += op.write_len();
        }
        if let (true, Some(Pending::Write { offset, data })) =
            (keep.partial > 0, self.pending.get(keep.ops))
        {
            // (An empty part must not be "written": that would extend the file to `offset`.)
            let part = &data[..keep.partial.min(data.len())];
            write_at(&mut bytes, *offset, part);
            kept += part.len() as u64;
        }
        let torn = (keep.ops > 0 || keep.partial > 0) && keep.ops < self.pending.len();
        self.pending.clear();
        self.durable = bytes.clone();
        self.current = bytes;
        (total.saturating_sub(kept), torn)
    }
}

/// How much of a file's pending operations a cut keeps: the first `ops` whole, then the
/// first `partial` bytes of the next one (a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep {
    pub(crate) ops: usize,
    pub(crate) partial: usize,
}

/// Chooses a `Keep` for each file of one cut, following `Options::tear`.
pub(crate) enum Tearer {
    Nothing,
    LastWrite,
    Prefix(Box<ChaCha8Rng>),
}

impl Tearer {
    /// `cut_no` counts this disk's cuts, so successive cuts with one seed tear differently
    /// but a rerun with the same seed tears the same way.
    pub(crate) fn new(tear: Tear, cut_no: u64) -> Tearer {
        match tear {
            Tear::None => Tearer::Nothing,
            Tear::LastWrite => Tearer::LastWrite,
            Tear::Prefix { seed } => Tearer::Prefix(Box::new(ChaCha8Rng::seed_from_u64(
                seed.wrapping_add(cut_no),
            ))),
        }
    }

    pub(crate) fn choose(&mut self, pending: &[Pending]) -> Keep {
        let n = pending.len();
        let nothing = Keep { ops: 0, partial: 0 };
        match self {
            _ if n == 0 => nothing,
            Tearer::Nothing => nothing,
            Tearer::LastWrite => {
                let partial = pending
                    .last()
                    .map(cut_points)
                    .and_then(|p| p.last().copied())
                    .unwrap_or(0);
                Keep {
                    ops: n - 1,
                    partial,
                }
            }
            Tearer::Prefix(rng) => {
                let ops = rng.gen_range(0..=n);
                let points = pending.get(ops).map(cut_points).unwrap_or_default();
                let partial = if points.is_empty() {
                    0
                } else {
                    points[rng.gen_range(0..points.len())]
                };
                Keep { ops, partial }
            }
        }
    }
}

/// The prefix lengths of `op` that a power cut may leave on disk: nothing, or the bytes up
/// to each sector boundary of the file strictly inside the write. A sector is never split:
/// sled's ~60-byte `conf` or a small WAL record within one sector is all or nothing.
pub(crate) fn cut_points(op: &Pending) -> Vec<usize> {
    let mut points = vec![0];
    if let Pending::Write { offset, data } = op {
        let end = offset + data.len() as u64;
        let mut boundary = (offset / SECTOR + 1) * SECTOR;
        while boundary < end {
            points.push((boundary - offset) as usize);
            boundary += SECTOR;
        }
    }
    points
}

/// A directory: `entries` is what lookups see; `durable_entries` is what survives a cut.
pub(crate) struct DirBody {
    /// For `..`; recomputed from the durable tree at each cut.
    parent: u64,
    pub(crate) entries: BTreeMap<OsString, u64>,
    pub(crate) durable_entries: BTreeMap<OsString, u64>,
}

impl DirBody {
    fn new(parent: u64) -> DirBody {
        DirBody {
            parent,
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
        }
    }
}

pub(crate) enum Body {
    File(FileBody),
    Dir(DirBody),
}

/// Attributes are durable at once: the harness makes no claim about them.
pub(crate) struct Inode {
    perm: u16,
    uid: u32,
    gid: u32,
    /// Names pointing at a file (0 once unlinked; the inode lives on for open handles).
    /// A directory's count is computed from its subdirectories instead.
    nlink: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    pub(crate) body: Body,
}

/// Who creates a new inode, with which permission bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) perm: u16,
}

/// The fields of a `setattr` this file system honours.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttrChange {
    pub(crate) perm: Option<u16>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<SystemTime>,
    pub(crate) mtime: Option<SystemTime>,
}

/// The whole disk of one simulated machine, plus the session bookkeeping that `PowerFs`
/// keeps under the same lock.
pub(crate) struct State {
    options: Options,
    pub(crate) inodes: BTreeMap<u64, Inode>,
    /// Never reused, not even after a cut, so generation 0 is always right.
    next_ino: u64,
    /// Bumped by every mount, unmount and cut; a session's handler serves only while the
    /// epoch it was started with is current.
    pub(crate) epoch: u64,
    pub(crate) mounted: bool,
    cuts: u64,
    writes: u64,
    fsyncs: u64,
    fsyncdirs: u64,
}

impl State {
    pub(crate) fn new(options: Options) -> State {
        // SAFETY: geteuid and getegid cannot fail and touch no memory of ours.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let root = Body::Dir(DirBody::new(ROOT));
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            Inode::new(
                Owner {
                    uid,
                    gid,
                    perm: 0o755,
                },
                root,
            ),
        );
        State {
            options,
            inodes,
            next_ino: ROOT + 1,
            epoch: 0,
            mounted: false,
            cuts: 0,
            writes: 0,
            fsyncs: 0,
            fsyncdirs: 0,
        }
    }

    fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&DirBody, Errno> {
        match &self.inode(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirBody, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file(&self, ino: u64) -> Result<&FileBody, Errno> {
        match &self.inode(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileBody, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.inodes.get(&ino),
            Some(Inode {
                body: Body::Dir(_),
                ..
            })
        )
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            let now = SystemTime::now();
            inode.mtime = now;
            inode.ctime = now;
        }
    }

    pub(crate) fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inode = self.inode(ino)?;
        let (kind, size, nlink) = match &inode.body {
            Body::File(file) => (
                FileType::RegularFile,
                file.current.len() as u64,
                inode.nlink,
            ),
            Body::Dir(dir) => {
                let subdirs = dir
                    .entries
                    .values()
                    .filter(|child| self.is_dir(**child))
                    .count();
                (FileType::Directory, 4096, 2 + subdirs as u32)
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(SECTOR),
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: inode.ctime,
            crtime: inode.ctime,
            kind,
            perm: inode.perm,
            nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    pub(crate) fn check_dir(&self, ino: u64) -> Result<(), Errno> {
        self.dir(ino).map(|_| ())
    }

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        self.attr(self.child(parent, name)?)
    }

    /// Adds a name. In `Immediate` mode it is durable at once; in `OnDirSync` mode only
    /// once `dir` is fsynced.
    fn link(&mut self, dir: u64, name: &OsStr, ino: u64) -> Result<(), Errno> {
        let immediate = self.options.metadata == Metadata::Immediate;
        let body = self.dir_mut(dir)?;
        body.entries.insert(name.to_os_string(), ino);
        if immediate {
            body.durable_entries.insert(name.to_os_string(), ino);
        }
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.nlink += 1;
        }
        self.touch(dir);
        Ok(())
    }

    /// Removes a name, with the same durability rule as `link`. The inode itself stays:
    /// open handles keep working, and a cut may bring the name back.
    fn unlink_name(&mut self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        let immediate = self.options.metadata == Metadata::Immediate;
        let body = self.dir_mut(dir)?;
        let ino = body.entries.remove(name).ok_or(Errno::ENOENT)?;
        if immediate {
            body.durable_entries.remove(name);
        }
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.nlink = inode.nlink.saturating_sub(1);
        }
        self.touch(dir);
        Ok(ino)
    }

    /// `create` (a file) or `mkdir` (`dir == true`).
    pub(crate) fn make(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        owner: Owner,
    ) -> Result<FileAttr, Errno> {
        check_name(name)?;
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = if dir {
            Body::Dir(DirBody::new(parent))
        } else {
            Body::File(FileBody::default())
        };
        self.inodes.insert(ino, Inode::new(owner, body));
        self.link(parent, name, ino)?;
        self.attr(ino)
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let bytes = &self.file(ino)?.current;
        let len = bytes.len() as u64;
        let start = offset.min(len) as usize;
        let end = offset.saturating_add(u64::from(size)).min(len) as usize;
        Ok(bytes[start..end].to_vec())
    }

    pub(crate) fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        self.file_mut(ino)?.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
        self.writes += 1;
        self.touch(ino);
        Ok(written)
    }

    /// A truncation is a pending operation like a write, in order with the writes:
    /// WalStorage cuts a torn tail with `set_len` and relies on its next sync to cover it.
    pub(crate) fn set_len(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        if size > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        self.file_mut(ino)?.push(Pending::SetLen { size });
        self.touch(ino);
        Ok(())
    }

    pub(crate) fn set_attr(&mut self, ino: u64, change: AttrChange) -> Result<FileAttr, Errno> {
        if let Some(size) = change.size {
            self.set_len(ino, size)?;
        }
        let inode = self.inode_mut(ino)?;
        if let Some(perm) = change.perm {
            inode.perm = perm;
        }
        if let Some(uid) = change.uid {
            inode.uid = uid;
        }
        if let Some(gid) = change.gid {
            inode.gid = gid;
        }
        if let Some(atime) = change.atime {
            inode.atime = atime;
        }
        if let Some(mtime) = change.mtime {
            inode.mtime = mtime;
        }
        inode.ctime = SystemTime::now();
        self.attr(ino)
    }

    pub(crate) fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        self.fsyncs += 1;
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => file.sync(),
            // The kernel sends FSYNCDIR for directories; treat a stray FSYNC the same way.
            Body::Dir(dir) => dir.durable_entries = dir.entries.clone(),
        }
        Ok(())
    }

    /// Makes the directory's current names durable (in `Immediate` mode they already are).
    /// Only its own entries: a new directory's name in its parent needs the parent synced.
    pub(crate) fn fsyncdir(&mut self, ino: u64) -> Result<(), Errno> {
        self.fsyncdirs += 1;
        let dir = self.dir_mut(ino)?;
        dir.durable_entries = dir.entries.clone();
        Ok(())
    }

    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if self.is_dir(self.child(parent, name)?) {
            return Err(Errno::EISDIR);
        }
        self.unlink_name(parent, name).map(|_| ())
    }

    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if !self.dir(self.child(parent, name)?)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.unlink_name(parent, name).map(|_| ())
    }

    /// `rename(2)`, replacing an existing target as POSIX says (a directory only by an
    /// empty directory). `noreplace` is `RENAME_NOREPLACE`.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        check_name(new_name)?;
        let ino = self.child(parent, name)?;
        let target = self.dir(new_parent)?.entries.get(new_name).copied();
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        let moving_dir = self.is_dir(ino);
        if let Some(target) = target {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if target == ino {
                return Ok(()); // two names of one inode: POSIX says do nothing
            }
            match (moving_dir, self.is_dir(target)) {
                (true, true) if !self.dir(target)?.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                _ => {}
            }
            self.unlink_name(new_parent, new_name)?;
        }
        self.unlink_name(parent, name)?;
        self.link(new_parent, new_name, ino)?;
        if let Ok(dir) = self.dir_mut(ino) {
            dir.parent = new_parent;
        }
        Ok(())
    }

    /// `.`, `..`, then the current entries in name order (stable across readdir calls).
    pub(crate) fn readdir(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        let dir = self.dir(ino)?;
        let mut out = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (dir.parent, FileType::Directory, OsString::from("..")),
        ];
        for (name, &child) in &dir.entries {
            let kind = if self.is_dir(child) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            out.push((child, kind, name.clone()));
        }
        Ok(out)
    }

    /// The power cut: every directory goes back to its durable names and every file to
    /// its durable bytes plus the torn prefix `Options::tear` keeps; then every inode the
    /// root no longer reaches through durable names is dropped. A file whose name is
    /// durable but that was never fsynced comes back empty, as on ext4 after a crash.
    pub(crate) fn cut(&mut self) -> CutReport {
        let mut tearer = Tearer::new(self.options.tear, self.cuts);
        self.cuts += 1;
        self.epoch += 1;
        let mut report = CutReport::default();
        for inode in self.inodes.values_mut() {
            match &mut inode.body {
                Body::File(file) => {
                    let (dropped, torn) = file.cut(tearer.choose(&file.pending));
                    report.dropped_bytes += dropped;
                    report.torn_files += u64::from(torn);
                }
                Body::Dir(dir) => {
                    let lost = dir
                        .entries
                        .iter()
                        .filter(|(name, ino)| dir.durable_entries.get(*name) != Some(*ino));
                    report.lost_names += lost.count() as u64;
                    dir.entries = dir.durable_entries.clone();
                }
            }
        }
        self.drop_unreachable();
        report
    }

    /// Walks the durable tree from the root; drops what it does not reach, and recomputes
    /// link counts and `..` (a cut can leave a name in two directories, when a rename
    /// across directories was synced in only one of them).
    fn drop_unreachable(&mut self) {
        let mut parents = BTreeMap::from([(ROOT, ROOT)]);
        let mut links: BTreeMap<u64, u32> = BTreeMap::new();
        let mut queue = vec![ROOT];
        while let Some(dir) = queue.pop() {
            let Some(Inode {
                body: Body::Dir(body),
                ..
            }) = self.inodes.get(&dir)
            else {
                continue;
            };
            for &child in body.durable_entries.values() {
                *links.entry(child).or_insert(0) += 1;
                if self.is_dir(child) && !parents.contains_key(&child) {
                    parents.insert(child, dir);
                    queue.push(child);
                }
            }
        }
        self.inodes
            .retain(|ino, _| *ino == ROOT || links.contains_key(ino));
        for (ino, inode) in self.inodes.iter_mut() {
            match &mut inode.body {
                Body::File(_) => inode.nlink = links.get(ino).copied().unwrap_or(0),
                Body::Dir(dir) => dir.parent = parents.get(ino).copied().unwrap_or(ROOT),
            }
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let pending_bytes: u64 = self
            .inodes
            .values()
            .map(|inode| match &inode.body {
                Body::File(file) => file.pending.iter().map(Pending::write_len).sum::<u64>(),
                Body::Dir(_) => 0,
            })
            .sum();
        Stats {
            writes: self.writes,
            fsyncs: self.fsyncs,
            fsyncdirs: self.fsyncdirs,
            pending_bytes,
        }
    }
}

impl Inode {
    fn new(owner: Owner, body: Body) -> Inode {
        let now = SystemTime::now();
        Inode {
            perm: owner.perm,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 0,
            atime: now,
            mtime: now,
            ctime: now,
            body,
        }
    }
}

/// The kernel never sends these, but a name must never be able to break the tree.
fn check_name(name: &OsStr) -> Result<(), Errno> {
    if name.len() > MAX_NAME {
        return Err(Errno::ENAMETOOLONG);
    }
    let bytes = name.as_encoded_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(())
}
