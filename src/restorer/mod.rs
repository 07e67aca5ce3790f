//! The restorer: recreates a snapshot (or a subtree) under a target directory.
//!
//! One thread walks the trees and creates directories, empty files, symlinks, special files and
//! hard links in order; worker threads fill file contents in parallel (each blob loaded,
//! authenticated and id-checked before a byte is written), then set the file's length and
//! metadata. Holes are never written, so sparse files stay sparse.
//!
//! Everything is created and changed through directory descriptors ([`target`]): nothing already
//! in the target, and nothing swapped into it during the restore, can redirect a write outside
//! it. A directory's metadata is set when the walk leaves it (through its descriptor): all of its
//! entries exist by then, and filling file contents afterwards does not change a directory.
//!
//! A file's length is set only once all its content is written, and a file whose content could
//! not be written is removed: a failed restore leaves no file that claims a size it has not got.

mod packwise;
mod target;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::bounded;
use globset::GlobSet;

use crate::blob::MAX_BLOB_LEN;
use crate::direct;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{Extent, Node, NodeKind};

pub use target::component;

pub struct RestoreOptions {
    pub target: PathBuf,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    pub verify: bool,
}

#[derive(Default)]
pub struct RestoreProgress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub bytes_total: AtomicU64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    pub verified_files: u64,
    /// Entries whose setuid/setgid bits were not restored because snap did not run as root.
    pub setid_dropped: u64,
    pub warnings: Vec<String>,
}

/// Files that alone would fill this share of memory are written with O_DIRECT: their pages would
/// evict the server's working set, and past that size the page cache only adds copies. Smaller
/// files go through the cache, which measured faster here while memory is plentiful (2 GiB corpus:
/// 1.8-1.9 s buffered, 2.1-2.3 s with O_DIRECT from 64 MiB, 2.6-2.8 s from 1 MiB, device-bound).
const DIRECT_SHARE_OF_RAM: u64 = 32;

fn direct_min() -> u64 {
    static MIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        // SAFETY: sysinfo fills the struct it is given; zeroed is a valid starting value.
        let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
        let ram = if unsafe { libc::sysinfo(&mut si) } == 0 {
            si.totalram as u64 * si.mem_unit as u64
        } else {
            0
        };
        (ram / DIRECT_SHARE_OF_RAM).max(64 * 1024 * 1024)
    })
}

/// Per-worker staging buffer for O_DIRECT writes.
const DIRECT_BUF: usize = 1024 * 1024;

/// Large files are cut into jobs of about this many bytes so that one big file does not leave
/// the other workers idle at the end of a restore. Smaller segments measured slower: writers of
/// one file share its inode lock.
const SEGMENT: u64 = 128 * 1024 * 1024;

/// One regular file being restored; shared by its segment jobs.
struct FileJob {
    file: File,
    /// Its directory and name there: for the O_DIRECT descriptor and for removing it on failure.
    dir: Arc<OwnedFd>,
    name: OsString,
    /// Where it is, for messages only (never opened by this path).
    path: PathBuf,
    snap_path: String,
    node: Node,
    /// Segments not yet written (blobs, in a pack-ordered restore); the worker that takes it to
    /// zero finishes the file.
    remaining: AtomicUsize,
    /// Set once a segment failed or was skipped: the file is removed (once).
    abandoned: AtomicBool,
}

impl FileJob {
    fn abandon(&self) {
        if !self.abandoned.swap(true, Ordering::AcqRel) {
            target::remove(self.dir.as_fd(), &self.name);
        }
    }
}

/// Extents `first..end` of a file, starting at byte `offset`.
struct Job {
    file: Arc<FileJob>,
    first: usize,
    end: usize,
    offset: u64,
}

/// Cuts a file's extent list into segment jobs of about `cut` bytes each. The extents must add up
/// to the file's size (the archiver records it so), without overflow.
fn segments(file: FileJob, cut: u64) -> Result<Vec<Job>> {
    let mut cuts = vec![(0usize, 0u64)];
    let (mut acc, mut off) = (0u64, 0u64);
    let bad = |what: String| Error::corrupt(format!("tree entry {}", file.snap_path), what);
    for (i, ext) in file.node.content.iter().enumerate() {
        if acc >= cut {
            cuts.push((i, off));
            acc = 0;
        }
        if ext.0.is_some() && ext.1 > MAX_BLOB_LEN as u64 {
            return Err(bad(format!(
                "extent of {} bytes is larger than a blob",
                ext.1
            )));
        }
        acc = acc.saturating_add(ext.1);
        off = off
            .checked_add(ext.1)
            .ok_or_else(|| bad("extent lengths overflow".into()))?;
    }
    if off != file.node.size {
        return Err(bad(format!(
            "extents add up to {off} bytes, the entry says {}",
            file.node.size
        )));
    }
    let n = file.node.content.len();
    file.remaining.store(cuts.len(), Ordering::Relaxed);
    let file = Arc::new(file);
    let ends: Vec<usize> = cuts.iter().skip(1).map(|c| c.0).chain([n]).collect();
    Ok(cuts
        .iter()
        .zip(ends)
        .map(|(&(first, offset), end)| Job {
            file: file.clone(),
            first,
            end,
            offset,
        })
        .collect())
}

/// A directory of the target, created only when something is restored into it (an include
/// pattern may select nothing below it).
struct LazyDir<'p> {
    parent: Option<&'p LazyDir<'p>>,
    name: &'p OsStr,
    /// For messages only.
    path: PathBuf,
    /// Relative to the target, for hard links to entries in it.
    rel: PathBuf,
    fd: OnceCell<Arc<OwnedFd>>,
}

impl LazyDir<'_> {
    fn get(&self) -> Result<&Arc<OwnedFd>> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd);
        }
        let Some(parent) = self.parent else {
            return Err(Error::Usage(format!(
                "{}: target is not open",
                self.path.display()
            )));
        };
        let fd = target::subdir(parent.get()?.as_fd(), self.name, &self.path)?;
        Ok(self.fd.get_or_init(|| Arc::new(fd)))
    }
}

struct Walk<'a> {
    repo: &'a Repository,
    includes: Option<GlobSet>,
    excludes: GlobSet,
    root: &'a OwnedFd,
    policy: target::Policy,
    /// First link of each hard-linked inode: its directory (relative to the target) and name.
    hardlinks: HashMap<(u64, u64), (PathBuf, OsString)>,
    summary: RestoreSummary,
    interrupt: &'a AtomicBool,
    /// Files are queued whole, counting blobs to write (the pack-ordered restore, [`packwise`]),
    /// not in segments.
    whole_files: bool,
}

impl Walk<'_> {
    /// A tree's entries in the order the restore takes them: other than directories first,
    /// then directories, the order the backup walked them (`archiver::walker`), so content is
    /// read in the order it lies in the packs.
    fn entries(&self, tree_id: &Id, snap_dir: &str) -> Result<Vec<Node>> {
        if self.interrupt.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let tree = self
            .repo
            .load_tree(tree_id)
            .map_err(|e| e.context(format!("restoring {snap_dir}/")))?;
        let (dirs, mut others): (Vec<Node>, Vec<Node>) = tree
            .nodes
            .into_iter()
            .partition(|n| n.kind == NodeKind::Dir);
        others.extend(dirs);
        Ok(others)
    }

    fn selected(&self, snap_path: &str, ancestor_included: bool) -> (bool, bool) {
        let excluded = self.excludes.is_match(snap_path);
        let included =
            ancestor_included || self.includes.as_ref().is_none_or(|g| g.is_match(snap_path));
        (!excluded, included)
    }

    fn warn<'s>(&'s mut self, path: &'s Path) -> target::Warn<'s> {
        target::Warn {
            path,
            out: &mut self.summary.warnings,
        }
    }

    fn tree(
        &mut self,
        tree_id: &Id,
        dir: &LazyDir<'_>,
        snap_dir: &str,
        included: bool,
        tx: &crossbeam_channel::Sender<Job>,
    ) -> Result<()> {
        for node in self.entries(tree_id, snap_dir)? {
            let Some(name) = target::component(&node.name) else {
                return Err(Error::corrupt(
                    format!("tree {tree_id}"),
                    format!(
                        "entry {:?} in {snap_dir}/ is not a single path component",
                        node.name_lossy()
                    ),
                ));
            };
            let path = dir.path.join(name);
            let snap_path = format!("{snap_dir}/{}", node.name_lossy());
            let (keep, inc) = self.selected(&snap_path, included);
            if !keep {
                continue;
            }
            if node.kind == NodeKind::Dir {
                let Some(sub) = node.subtree else { continue };
                let child = LazyDir {
                    parent: Some(dir),
                    name,
                    path,
                    rel: dir.rel.join(name),
                    fd: OnceCell::new(),
                };
                if inc {
                    child.get()?;
                }
                self.tree(&sub, &child, &snap_path, inc, tx)?;
                if let Some(fd) = child.fd.get() {
                    self.summary.dirs += 1;
                    let policy = self.policy;
                    let dropped =
                        target::apply_fd(fd.as_fd(), &node, policy, &mut self.warn(&child.path));
                    self.summary.setid_dropped += u64::from(dropped);
                }
                continue;
            }
            if !inc {
                continue;
            }
            let d = dir.get()?.clone();
            target::clear(d.as_fd(), name, &path)?;
            if node.nlink > 1 {
                let key = (node.dev, node.inode);
                if let Some((rel, first)) = self.hardlinks.get(&key) {
                    let from = target::open_beneath(self.root.as_fd(), rel, &path)?;
                    target::hard_link(from.as_fd(), first, d.as_fd(), name, &path)?;
                    self.summary.files += 1;
                    continue;
                }
                self.hardlinks
                    .insert(key, (dir.rel.clone(), name.to_os_string()));
            }
            match node.kind {
                NodeKind::File => {
                    let file = target::create_file(d.as_fd(), name, &path)?;
                    self.summary.files += 1;
                    self.summary.bytes = self.summary.bytes.saturating_add(node.size);
                    let file = FileJob {
                        file,
                        dir: d,
                        name: name.to_os_string(),
                        path,
                        snap_path,
                        node,
                        remaining: AtomicUsize::new(0),
                        abandoned: AtomicBool::new(false),
                    };
                    let jobs = if self.whole_files {
                        let blobs = file.node.content.iter().filter(|e| e.0.is_some()).count();
                        let jobs = segments(file, u64::MAX)?;
                        for job in &jobs {
                            job.file.remaining.store(blobs, Ordering::Release);
                        }
                        jobs
                    } else {
                        segments(file, SEGMENT)?
                    };
                    for job in jobs {
                        if let Err(e) = tx.send(job) {
                            e.0.file.abandon();
                            return Err(Error::Interrupted);
                        }
                    }
                }
                NodeKind::Symlink => {
                    let link = node.target.as_deref().unwrap_or_default();
                    target::symlink(d.as_fd(), name, link, &path)?;
                    self.summary.other += 1;
                    let policy = self.policy;
                    target::apply_at(d.as_fd(), name, &node, policy, &mut self.warn(&path));
                }
                NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev | NodeKind::Socket => {
                    if let Err(e) = target::special(d.as_fd(), name, &node) {
                        self.summary.warnings.push(format!(
                            "{}: cannot create {:?}: {e}",
                            path.display(),
                            node.kind
                        ));
                        continue;
                    }
                    self.summary.other += 1;
                    let policy = self.policy;
                    let dropped =
                        target::apply_at(d.as_fd(), name, &node, policy, &mut self.warn(&path));
                    self.summary.setid_dropped += u64::from(dropped);
                }
                NodeKind::Dir => {}
            }
        }
        Ok(())
    }
}

/// Writes one segment of a file's content, then optionally reads it back and checks ids.
fn fill(repo: &Repository, job: &Job, verify: bool, progress: &RestoreProgress) -> Result<bool> {
    let file = &job.file;
    let path = &file.path;
    let ctx = |e: Error| e.context(format!("restoring {}", file.snap_path));
    let extents = &file.node.content[job.first..job.end];
    let buffered = file
        .file
        .try_clone()
        .map_err(|e| Error::io("cannot write", path, e))?;
    // Files large against memory go around the page cache (see `crate::direct`).
    let direct = if file.node.size >= direct_min() {
        target::reopen_direct(file.dir.as_fd(), &file.name, &file.file)
    } else {
        None
    };
    let buf_len = if direct.is_some() { DIRECT_BUF } else { 0 };
    let mut w = direct::SequentialWriter::new(direct, buffered, buf_len)
        .map_err(|e| Error::io("cannot write", path, e))?;
    // Each blob is looked up once: for the prefetch and for the read.
    let locs = extents
        .iter()
        .map(|e| e.0.map(|id| repo.locate(&id)).transpose())
        .collect::<Result<Vec<_>>>()
        .map_err(ctx)?;
    if extents.len() > 1 {
        repo.prefetch(locs.iter().flatten());
    }
    let mut off = job.offset;
    for (ext, loc) in extents.iter().zip(&locs) {
        if let (Some(id), Some(loc)) = (ext.0, loc) {
            let data = repo.load_blob_at(&id, loc).map_err(ctx)?;
            if data.len() as u64 != ext.1 {
                return Err(ctx(Error::corrupt(
                    format!("blob {id}"),
                    format!("is {} bytes, tree says {}", data.len(), ext.1),
                )));
            }
            crate::stages::time(crate::stages::Stage::Output, ext.1, || {
                w.write_at(&data, off)
            })
            .map_err(|e| Error::io("cannot write", path, e))?;
            progress.bytes.fetch_add(ext.1, Ordering::Relaxed);
        }
        // Cannot overflow: `segments` checked the sum.
        off += ext.1;
    }
    drop(w.finish().map_err(|e| Error::io("cannot write", path, e))?);
    if !verify {
        return Ok(false);
    }
    verify_extents(repo, file, extents, job.offset)?;
    Ok(true)
}

/// Reads `extents` back from the restored file, from byte `offset` on, and checks their ids.
fn verify_extents(
    repo: &Repository,
    file: &FileJob,
    extents: &[Extent],
    offset: u64,
) -> Result<()> {
    let path = &file.path;
    let mismatch = || {
        Error::corrupt(
            path.display().to_string(),
            "restored content does not match the snapshot",
        )
    };
    let mut buf = Vec::new();
    let mut off = offset;
    for ext in extents {
        // Holes are zero by construction (never written); only stored content is read back.
        if let Some(id) = ext.0 {
            // At most MAX_BLOB_LEN: `segments` checked.
            buf.resize(ext.1 as usize, 0);
            file.file
                .read_exact_at(&mut buf, off)
                .map_err(|e| Error::io("cannot verify", path, e))?;
            if repo.key().blob_id(&buf) != id {
                return Err(mismatch());
            }
        }
        off += ext.1;
    }
    Ok(())
}

/// The last segment is written: the file gets its full length (a trailing hole) and metadata.
fn finish(file: &FileJob, policy: target::Policy, warnings: &Mutex<Vec<String>>) -> Result<bool> {
    file.file
        .set_len(file.node.size)
        .map_err(|e| Error::io("cannot write", &file.path, e))?;
    let mut w = warnings.lock().unwrap_or_else(|p| p.into_inner());
    Ok(target::apply_fd(
        file.file.as_fd(),
        &file.node,
        policy,
        &mut target::Warn {
            path: &file.path,
            out: &mut w,
        },
    ))
}

/// What the workers of a restore share: how files are finished, what they counted, the first
/// failure (after which every queued file is removed, not filled).
struct Outcome<'a> {
    policy: target::Policy,
    verify: bool,
    progress: &'a RestoreProgress,
    warnings: Mutex<Vec<String>>,
    failure: Mutex<Option<Error>>,
    verified: AtomicU64,
    dropped: AtomicU64,
}

impl Outcome<'_> {
    fn failed(&self) -> bool {
        self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// The file's last content is written (and checked, when `verified`): its length, metadata
    /// and the counts.
    fn finished(&self, file: &FileJob, verified: bool) -> Result<()> {
        let d = finish(file, self.policy, &self.warnings)?;
        self.dropped.fetch_add(u64::from(d), Ordering::Relaxed);
        self.verified
            .fetch_add(u64::from(verified), Ordering::Relaxed);
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A whole file's content is written: checked when asked, then finished.
    fn complete(&self, repo: &Repository, file: &FileJob) -> Result<()> {
        if self.verify {
            verify_extents(repo, file, &file.node.content, 0)?;
        }
        self.finished(file, self.verify)
    }
}

pub fn globs(patterns: &[String]) -> Result<GlobSet> {
    crate::archiver::globset(patterns)
}

/// Queued file jobs each hold a descriptor (and share their directory's): queues are sized from
/// the open-file limit, raised to its hard maximum first as most servers allow. This is the
/// number of descriptors left for them.
fn open_file_room() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum
        && lim.current.is_some_and(|c| c < max)
    {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile)
        .current
        .unwrap_or(1024)
        .saturating_sub(64)
}

/// The walk-order queue: a third of the room (queued files and their directories, and the
/// workers' O_DIRECT descriptors).
fn queue_len() -> usize {
    usize::try_from(open_file_room() / 3)
        .unwrap_or(1024)
        .clamp(8, 1024)
}

/// The pack-ordered window's files at most: a quarter of the room, as up to three windows' files
/// are open at once (queued by the walk, being grouped, being written) beside their directories.
fn window_files() -> usize {
    usize::try_from(open_file_room() / 4)
        .unwrap_or(1024)
        .clamp(8, 16 * 1024)
}

/// Restores the tree `root` (a snapshot's tree or a subtree) into `opts.target`.
pub fn restore(
    repo: &Repository,
    root: &Node,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
    interrupt: &AtomicBool,
) -> Result<RestoreSummary> {
    let Some(tree) = root.subtree.filter(|_| root.kind == NodeKind::Dir) else {
        return Err(Error::Usage(
            "only a directory can be restored into a target (use `snap cat` for one file)".into(),
        ));
    };
    let root_fd = target::open_root(&opts.target)?;
    let includes = if opts.includes.is_empty() {
        None
    } else {
        Some(globs(&opts.includes)?)
    };
    let policy = target::Policy::current();
    let mut walk = Walk {
        repo,
        includes,
        excludes: globs(&opts.excludes)?,
        root: &root_fd,
        policy,
        hardlinks: HashMap::new(),
        summary: RestoreSummary::default(),
        interrupt,
        // Across a network, pack by pack ([`packwise`]); on a disk the page cache reads ahead.
        whole_files: repo.reads_ahead(),
    };
    let out = Outcome {
        policy,
        verify: opts.verify,
        progress,
        warnings: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
        verified: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
        * 2;
    let top_fd = target::open_beneath(root_fd.as_fd(), Path::new(""), &opts.target)?;
    let top = LazyDir {
        parent: None,
        name: OsStr::new(""),
        path: opts.target.clone(),
        rel: PathBuf::new(),
        fd: OnceCell::from(Arc::new(top_fd)),
    };
    let walked = std::thread::scope(|s| {
        let out = &out;
        if walk.whole_files {
            let files = window_files();
            let (tx, rx) = bounded::<Job>(files);
            packwise::spawn(s, repo, rx, out, files, interrupt);
            let r = walk.tree(&tree, &top, "", true, &tx);
            drop(tx);
            return r;
        }
        let (tx, rx) = bounded::<Job>(queue_len());
        for _ in 0..workers {
            let rx = rx.clone();
            s.spawn(move || {
                for job in rx {
                    if out.failed() {
                        job.file.abandon();
                        continue;
                    }
                    let done = fill(repo, &job, opts.verify, progress).and_then(|v| {
                        if job.file.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                            out.finished(&job.file, v)?;
                        }
                        Ok(())
                    });
                    if let Err(e) = done {
                        job.file.abandon();
                        out.fail(e);
                    }
                }
            });
        }
        drop(rx);
        let r = walk.tree(&tree, &top, "", true, &tx);
        drop(tx);
        r
    });
    let Outcome {
        warnings,
        failure,
        verified,
        dropped,
        ..
    } = out;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    walked?;
    let mut summary = walk.summary;
    summary.verified_files = verified.into_inner();
    summary.setid_dropped += dropped.into_inner();
    summary
        .warnings
        .extend(warnings.into_inner().unwrap_or_default());
    Ok(summary)
}
