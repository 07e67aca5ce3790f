//! Reading file system entries: metadata into tree nodes, extended attributes, and the data
//! regions of sparse files (found with SEEK_DATA/SEEK_HOLE, so holes are neither read nor stored).
//!
//! Every number here comes from the file system (any FUSE server can report anything), so the
//! arithmetic on it is checked or saturating: a node records times as i64 nanoseconds, which
//! spans 1677-09-21 to 2262-04-11; a time outside that is clamped to the nearest end and
//! reported by [`time_range_problem`], never wrapped into an unrelated date.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::tree::{Node, NodeKind, Xattr};

pub fn kind_of(md: &Metadata) -> NodeKind {
    let ft = md.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// `secs · 10^9 + nsec` as a node records it, clamped to the i64 range; `Err(clamped)` when it
/// did not fit (a time before 1677-09-21 or after 2262-04-11).
pub fn time_ns(secs: i64, nsec: i64) -> Result<i64, i64> {
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nsec))
        .ok_or(if secs < 0 { i64::MIN } else { i64::MAX })
}

fn clamped(r: Result<i64, i64>) -> i64 {
    r.unwrap_or_else(|c| c)
}

/// (mtime, ctime) of `md` in nanoseconds, clamped as [`time_ns`] does.
pub fn times_ns(md: &Metadata) -> (i64, i64) {
    (
        clamped(time_ns(md.mtime(), md.mtime_nsec())),
        clamped(time_ns(md.ctime(), md.ctime_nsec())),
    )
}

/// Why `md`'s times cannot be recorded exactly, if they cannot: the entry is still backed up
/// with the clamped time, and the caller reports this so the user knows a restore will differ.
pub fn time_range_problem(md: &Metadata) -> Option<String> {
    let mut bad = Vec::new();
    for (what, secs, nsec) in [
        ("modification", md.mtime(), md.mtime_nsec()),
        ("change", md.ctime(), md.ctime_nsec()),
    ] {
        if time_ns(secs, nsec).is_err() {
            bad.push(format!("{what} time ({secs} s since 1970)"));
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "{} outside what snap records (1677-09-21 to 2262-04-11); stored as the nearest end              of that range, so a restore sets that time instead (content is backed up)",
            bad.join(" and ")
        )
    })
}

/// A node with everything but content/subtree filled in from `lstat` data, xattrs and link target.
pub fn node_from(name: &OsStr, path: &Path, md: &Metadata) -> io::Result<Node> {
    node_from_known(name, path, md, None)
}

/// [`node_from`], taking the extended attributes from `known` instead of reading them: the
/// caller passes the parent snapshot's when the entry's inode and change time are the same
/// (setting or removing an attribute always updates the change time). That is one `llistxattr`
/// per unchanged entry saved, half the system calls of a backup where nothing changed.
pub fn node_from_known(
    name: &OsStr,
    path: &Path,
    md: &Metadata,
    known: Option<&[Xattr]>,
) -> io::Result<Node> {
    let kind = kind_of(md);
    let target = if kind == NodeKind::Symlink {
        Some(std::fs::read_link(path)?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    let (mtime, ctime) = times_ns(md);
    Ok(Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == NodeKind::File { md.size() } else { 0 },
        mtime,
        ctime,
        inode: md.ino(),
        dev: md.dev(),
        nlink: md.nlink(),
        rdev: if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
            md.rdev()
        } else {
            0
        },
        target,
        content: Vec::new(),
        subtree: None,
        xattrs: match known {
            Some(x) => x.to_vec(),
            None => read_xattrs(path)?,
        },
    })
}

/// Extended attributes of `path` itself (not a symlink's target), sorted by name.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // File systems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names {
        if let Some(v) = xattr::get(path, &n)? {
            out.push(Xattr(n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// The byte ranges of `file` that hold data, as (offset, len). A file whose allocated blocks
/// cover its size is one range, without asking the kernel for holes.
pub fn data_regions(file: &File, size: u64, blocks: u64) -> io::Result<Vec<(u64, u64)>> {
    if size == 0 {
        return Ok(Vec::new());
    }
    // Saturating: `st_blocks` is whatever the file system reports.
    if blocks.saturating_mul(512) >= size {
        return Ok(vec![(0, size)]);
    }
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a valid fd owned by `file`; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(vec![(0, size)]); // SEEK_DATA unsupported: treat as dense
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = (hole as u64).min(size);
        if end > data as u64 {
            out.push((data as u64, end - data as u64));
        }
        pos = hole;
    }
    Ok(out)
}

/// Tells the kernel we read sequentially once, so read-ahead is generous.
pub fn advise_sequential(file: &File) {
    // SAFETY: advisory call on a valid fd; failure is harmless.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Tells the kernel that a range already read will not be needed again. A backup reads every
/// byte once; keeping it cached would evict the server's own working set (BorgBackup does the
/// same for this reason), and recycled pages are cheaper than fresh ones.
pub fn drop_cache(file: &File, off: u64, len: u64) {
    // SAFETY: advisory call on a valid fd; failure is harmless.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            off as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Opens `path` for reading if it still is a regular file: a symlink is not followed and a FIFO
/// that replaced the file since it was listed does not block the open. `flags` are added to the
/// open (O_DIRECT).
pub fn open_regular(path: &Path, flags: i32) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | flags)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::other(
            "is no longer a regular file (it changed while the backup ran)",
        ));
    }
    // SAFETY: fcntl on a valid fd owned by `f`; no memory is passed.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_clamp_instead_of_wrapping() {
        assert_eq!(time_ns(1, 5), Ok(1_000_000_005));
        assert_eq!(time_ns(-1, 5), Ok(-999_999_995));
        // 2262-04-11T23:47:16.854775807Z is the last representable instant.
        assert_eq!(time_ns(9_223_372_036, 854_775_807), Ok(i64::MAX));
        assert_eq!(time_ns(9_223_372_036, 854_775_808), Err(i64::MAX));
        // Year 2300, which wrapped to 1715 before.
        assert_eq!(time_ns(10_413_792_000, 0), Err(i64::MAX));
        assert_eq!(time_ns(i64::MAX, 999_999_999), Err(i64::MAX));
        assert_eq!(time_ns(i64::MIN, 0), Err(i64::MIN));
        assert_eq!(time_ns(-9_223_372_037, 0), Err(i64::MIN));
    }
}
