//! The restore target as directory descriptors: every entry is created, opened and changed
//! relative to the descriptor of its parent, one path component at a time, never by a joined
//! path string.
//!
//! snap restores as root into directories other users may write to (a web upload folder, a home
//! directory), so whatever is already in the target must not redirect a write. A joined path
//! like `target/a/passwd` is resolved by the kernel at each call: if `a` is (or becomes, between
//! two calls) a symlink to `/etc`, the write lands in `/etc`. Here, instead:
//!
//! - a directory is opened with `O_DIRECTORY|O_NOFOLLOW` from its parent's descriptor, and the
//!   descriptor is what its children are created in; swapping the directory for a symlink after
//!   it was opened changes nothing for us;
//! - **what is in the way is replaced, never followed**: where the snapshot has a directory, an
//!   existing symlink, file or special file of that name is removed (the entry itself, with
//!   `unlinkat`) and a directory made; where it has anything else, the existing non-directory is
//!   removed first and the new entry created with `O_CREAT|O_EXCL|O_NOFOLLOW`. An existing
//!   *directory* where the snapshot has a non-directory is **refused** with an error naming it:
//!   removing a whole tree the user may still want is not a restore's decision;
//! - metadata is set on the open descriptor (`fchown`, `fchmod`, `futimens`, `fsetxattr`);
//!   symlinks and special files, which cannot be opened for that, are changed with the
//!   `*at(…, AT_SYMLINK_NOFOLLOW)` calls, and their mode through an `O_PATH|O_NOFOLLOW`
//!   descriptor (Linux has no `fchmodat` that refuses to follow).
//!
//! Names come from trees, which are authenticated but written by whoever holds a key: a name
//! that is not exactly one path component (empty, `.`, `..`, containing `/` or NUL) is damage,
//! never a path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind};

/// `name` as one path component, or `None` if it could name anything else.
pub fn component(name: &[u8]) -> Option<&OsStr> {
    let bad = name.is_empty() || name == b"." || name == b".." || name.contains(&b'/');
    (!bad && !name.contains(&0)).then(|| OsStr::from_bytes(name))
}

fn io(what: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(what, path, e.into())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the target directory itself, creating it (and its parents) when missing. The target is
/// the one path the user named, so it is the one path resolved as given.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("cannot create", path, e))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| io("cannot open", path, e))
}

/// Opens the subdirectory `name` of `dir`, creating it (mode 0700 until its own mode is set) when
/// missing; a symlink or other non-directory of that name is removed and replaced.
pub fn subdir(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    // A few rounds: another process may create or remove the entry between our calls.
    for _ in 0..4 {
        match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            // ELOOP: a symlink (O_NOFOLLOW); ENOTDIR: a file or special file.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(io("cannot replace", path, e)),
                }
            }
            Err(e) => return Err(io("cannot open", path, e)),
        }
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io("cannot create", path, e)),
        }
    }
    Err(io("cannot create", path, Errno::AGAIN))
}

/// Opens the directory `rel` (relative to the target, made of components this restore created)
/// without following any symlink.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path, shown: &Path) -> Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            return Err(Error::corrupt(
                shown.display().to_string(),
                "not below the target",
            ));
        };
        let at = cur.as_ref().map_or(root, |f| f.as_fd());
        let next = rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| io("cannot open", shown, e))?;
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| io("cannot open", shown, e)),
    }
}

/// Removes the non-directory `name` in `dir` so a new entry can be created there; refuses a
/// directory (see the module doc).
pub fn clear(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => Err(Error::Usage(format!(
            "{}: a directory is in the way of a file of the snapshot; remove it or restore \
             into another target",
            path.display()
        ))),
        Err(e) => Err(io("cannot replace", path, e)),
    }
}

/// Creates the regular file `name` in `dir`, private until its own mode is set; opened for
/// reading too so `--verify` reads back through the same descriptor.
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<File> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
        .map(File::from)
        .map_err(|e| io("cannot create", path, e))
}

/// A second, O_DIRECT descriptor of `file` (the entry `name` in `dir`), if the file system allows
/// it and the entry is still the same inode.
pub fn reopen_direct(dir: BorrowedFd<'_>, name: &OsStr, file: &File) -> Option<File> {
    let flags = OFlags::WRONLY | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
    let (a, b) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::fstat(file).ok()?);
    (a.st_dev == b.st_dev && a.st_ino == b.st_ino).then(|| File::from(fd))
}

pub fn symlink(dir: BorrowedFd<'_>, name: &OsStr, target: &[u8], path: &Path) -> Result<()> {
    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name)
        .map_err(|e| io("cannot create symlink", path, e))
}

pub fn hard_link(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
) -> Result<()> {
    // Flags 0: a symlink at `from` is linked itself, never followed.
    rustix::fs::linkat(from_dir, from, dir, name, AtFlags::empty())
        .map_err(|e| io("cannot hard-link", path, e))
}

pub fn special(dir: BorrowedFd<'_>, name: &OsStr, node: &Node) -> std::io::Result<()> {
    use rustix::fs::FileType;
    let ft = match node.kind {
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::Chardev => FileType::CharacterDevice,
        NodeKind::Blockdev => FileType::BlockDevice,
        _ => FileType::Socket,
    };
    rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), node.rdev)?;
    Ok(())
}

/// What a restore may set of a node's metadata: owner only as root, and without root no
/// setuid/setgid bit (a file another user restored must not run with their rights — GNU tar's
/// rule for non-root extraction).
#[derive(Clone, Copy)]
pub struct Policy {
    pub root: bool,
}

impl Policy {
    pub fn current() -> Policy {
        Policy {
            root: rustix::process::geteuid().is_root(),
        }
    }

    /// The mode to set, and whether setuid/setgid bits were dropped from it.
    pub fn mode(&self, node: &Node) -> (u32, bool) {
        let mode = node.mode & 0o7777;
        let setid = libc::S_ISUID | libc::S_ISGID;
        if self.root || mode & setid == 0 || node.kind == NodeKind::Dir {
            (mode, false)
        } else {
            (mode & !setid, true)
        }
    }
}

fn timestamps(node: &Node) -> Timestamps {
    let t = Timespec {
        tv_sec: node.mtime.div_euclid(1_000_000_000),
        tv_nsec: node.mtime.rem_euclid(1_000_000_000),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn ids(node: &Node) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    // -1 means "leave unchanged" to the kernel; a tree never asks for that.
    let uid = (node.uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(node.uid));
    let gid = (node.gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(node.gid));
    (uid, gid)
}

/// Collects "cannot set …" warnings for one entry.
pub struct Warn<'a> {
    pub path: &'a Path,
    pub out: &'a mut Vec<String>,
}

impl Warn<'_> {
    fn check(&mut self, what: &str, r: rustix::io::Result<()>) {
        if let Err(e) = r {
            self.out.push(format!(
                "{}: cannot set {what}: {}",
                self.path.display(),
                std::io::Error::from(e)
            ));
        }
    }
}

/// Owner (as root), xattrs, mode and times of an open file or directory. Returns whether
/// setuid/setgid bits were dropped.
pub fn apply_fd(fd: BorrowedFd<'_>, node: &Node, policy: Policy, w: &mut Warn<'_>) -> bool {
    if policy.root {
        let (u, g) = ids(node);
        w.check("owner", rustix::fs::fchown(fd, u, g));
    }
    for x in &node.xattrs {
        let name = OsStr::from_bytes(&x.0);
        w.check(
            "xattr",
            rustix::fs::fsetxattr(fd, name, &x.1, XattrFlags::empty()),
        );
    }
    // After chown, which clears setuid bits.
    let (mode, dropped) = policy.mode(node);
    w.check("mode", rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)));
    w.check("times", rustix::fs::futimens(fd, &timestamps(node)));
    dropped
}

/// The same for a symlink or special file `name` in `dir`, none of it following a symlink.
pub fn apply_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    node: &Node,
    policy: Policy,
    w: &mut Warn<'_>,
) -> bool {
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    if policy.root {
        let (u, g) = ids(node);
        w.check("owner", rustix::fs::chownat(dir, name, u, g, nofollow));
    }
    if !node.xattrs.is_empty() {
        // lsetxattr through our directory's descriptor: the last component is not followed.
        let via = proc_fd_path(dir).join(name);
        for x in &node.xattrs {
            let xname = OsStr::from_bytes(&x.0);
            w.check(
                "xattr",
                rustix::fs::lsetxattr(&via, xname, &x.1, XattrFlags::empty()),
            );
        }
    }
    let mut dropped = false;
    if node.kind != NodeKind::Symlink {
        let (mode, d) = policy.mode(node);
        dropped = d;
        w.check("mode", chmod_nofollow(dir, name, mode));
    }
    w.check(
        "times",
        rustix::fs::utimensat(dir, name, &timestamps(node), nofollow),
    );
    dropped
}

fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// chmod of `name` in `dir` that never follows a symlink: an O_PATH descriptor of the entry
/// itself, checked not to be a symlink, changed through its /proc/self/fd link (what glibc
/// does for `fchmodat(AT_SYMLINK_NOFOLLOW)`).
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> rustix::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
        return Err(Errno::LOOP);
    }
    rustix::fs::chmod(proc_fd_path(fd.as_fd()), Mode::from_raw_mode(mode))
}

/// Removes `name` from `dir` (a file this restore created and could not finish).
pub fn remove(dir: BorrowedFd<'_>, name: &OsString) {
    let _ = rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty());
}
