//! The walkers: depth-first over the source paths, one tree per directory built bottom-up, file
//! content cut into chunks and handed to the blob saver.
//!
//! Several walkers run at once, each with its own read-ahead thread and chunker. A walker about
//! to descend into its subdirectories offers the one furthest back to an idle walker, if there is
//! one (a rendezvous channel: the hand-off succeeds only while another walker is waiting), and
//! goes on with the rest; the parent's tree is saved once the subtree's id comes back. Why: a
//! server tree mixes work bound by the CPU (text and dumps to compress) with work bound by the
//! disk (media and archives stored raw), usually in different directories. One walker does them
//! one after the other, leaving a core idle in the first and the disk half used in the second
//! (measured on the benchmark corpus: 1.9 s of its 4.7 s ran at 90% CPU, reading `uploads/`);
//! walkers far apart in the tree overlap them, and their reads keep more than one request in
//! flight, which this disk needs to reach its bandwidth while packs are being written.
//!
//! The tree of a source that does not change during the backup does not depend on which walker
//! built which directory. Of several links to one inode, the first met is read and the others
//! take its content, a walker meeting one while another reads it waiting for that. The first
//! error that is a cause stops every walker and is the one reported. A walker only ever waits for
//! subtrees it handed off, and only an idle walker accepts one, so the waits cannot form a cycle.
//! Memory is bounded per walker by the depth of the tree times the width of a directory, never
//! by the number of files.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::Scope;

use super::saver::{PendingId, Saver};
use super::{BackupProgress, MYSQL_DIR, Selection, Top};
use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{SourceError, Summary};
use crate::source::files;
use crate::source::readahead::ReadAhead;
use crate::stages::{self, Stage};
use crate::tree::{Extent, Node, NodeKind, Tree};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};

/// Files a walker asks its read-ahead for beyond the one it is reading (the reader prefetches
/// small ones within this window).
const REQUEST_AHEAD: usize = 256;

/// Walkers per backup (see above). On the benchmark (2 cores) backup1 took 4.8 s with one,
/// 4.36 s with two and 4.26 s with three (means of four interleaved runs).
const WALKERS: usize = 3;

/// What every walker of one backup shares.
pub(super) struct Shared<'a, 's> {
    pub repo: &'a Repository,
    pub saver: &'a Saver<'s>,
    pub select: Selection,
    /// The id an empty directory's tree has: with includes, a directory whose tree comes out
    /// as this one and that no include matched is left out.
    empty_tree: Id,
    pub progress: &'a BackupProgress,
    pub interrupt: &'a AtomicBool,
    /// Set when a walker fails, so the others stop soon instead of finishing their subtrees.
    abort: AtomicBool,
    /// The first error that is a cause, not a consequence (see [`Error::is_secondary`]): the
    /// others stop with `Interrupted`, and whichever walker met the cause, it is what is reported.
    failure: Mutex<Option<Error>>,
    /// Walkers waiting for a hand-off.
    idle: AtomicUsize,
    /// Content of multiply-linked files already read, by (device, inode).
    hardlinks: Mutex<HashMap<(u64, u64), Link>>,
    /// Signalled when a multiply-linked file's first read ends (in content, or in failure).
    link_read: Condvar,
    handoff_tx: Sender<Handoff>,
    handoff_rx: Receiver<Handoff>,
}

impl<'a, 's> Shared<'a, 's> {
    pub fn new(
        repo: &'a Repository,
        saver: &'a Saver<'s>,
        select: Selection,
        progress: &'a BackupProgress,
        interrupt: &'a AtomicBool,
    ) -> Self {
        let (handoff_tx, handoff_rx) = bounded(0);
        Shared {
            repo,
            saver,
            empty_tree: repo.key().blob_id(&Tree { nodes: Vec::new() }.encode()),
            select,
            progress,
            interrupt,
            abort: AtomicBool::new(false),
            failure: Mutex::new(None),
            idle: AtomicUsize::new(0),
            hardlinks: Mutex::new(HashMap::new()),
            link_read: Condvar::new(),
            handoff_tx,
            handoff_rx,
        }
    }
}

impl Shared<'_, '_> {
    /// Ctrl-C, or another walker failed.
    fn stopped(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed)
    }

    /// Stops every walker; keeps `e` if it is the first cause.
    fn fail(&self, e: Error) {
        self.abort.store(true, Ordering::Relaxed);
        if !e.is_secondary() {
            let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if f.is_none() {
                *f = Some(e);
            }
        }
    }
}

/// A multiply-linked file: being read by one walker (the others wait for it), or read.
enum Link {
    Reading,
    Read(Vec<Extent>),
}

/// A subdirectory handed to an idle walker; its tree id (or the failure) goes back on `reply`.
struct Handoff {
    path: PathBuf,
    parent: Option<Tree>,
    /// Whether the directory is inside one an include matched (see `select`).
    inside: bool,
    reply: Sender<Result<Id>>,
}

/// What a node still waits for before its tree can be saved: the ids of chunks the saver's
/// workers are hashing, or the id of a subtree another walker is building.
#[derive(Default)]
struct Pending {
    chunks: Vec<(usize, PendingId)>,
    subtree: Option<Receiver<Result<Id>>>,
    /// A directory no include matched: left out if nothing under it was taken.
    prunable: bool,
}

/// Waits for the ids of a node's chunks and writes them into its content.
pub(super) fn resolve_chunks(node: &mut Node, chunks: Vec<(usize, PendingId)>) -> Result<()> {
    for (i, p) in chunks {
        node.content[i].0 = Some(p.wait()?);
    }
    Ok(())
}

fn resolve(node: &mut Node, pending: Pending) -> Result<()> {
    resolve_chunks(node, pending.chunks)?;
    if let Some(rx) = pending.subtree {
        let id = rx.recv().map_err(|_| {
            Error::Usage("a backup walker stopped before finishing its directory".into())
        })??;
        node.subtree = Some(id);
    }
    Ok(())
}

/// Walks `top` (and adds `extra`, the database dump, at the root) with [`WALKERS`] walkers;
/// returns the root tree id and what was seen, with the unreadable entries sorted by path.
pub(super) fn walk(
    shared: &Shared,
    top: Option<&Top>,
    parent: Option<&Tree>,
    extra: Option<Node>,
) -> (Result<Id>, Summary, Vec<SourceError>) {
    std::thread::scope(|scope| {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let helpers: Vec<_> = (1..WALKERS)
            .map(|i| {
                let w = Walker::new(shared, scope, i);
                let stop = stop_rx.clone();
                scope.spawn(move || w.help(&stop))
            })
            .collect();
        let mut main = Walker::new(shared, scope, 0);
        // The root's subdirectories are the best to share out: let the helpers get ready.
        for _ in 0..100 {
            if shared.idle.load(Ordering::SeqCst) + 1 >= WALKERS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tree = main.root(top, parent, extra);
        if tree.is_err() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        drop(stop_tx);
        let mut summary = main.summary;
        let mut errors = main.errors;
        let mut tree = tree;
        for h in helpers {
            match h.join() {
                Ok((s, e)) => {
                    add_counts(&mut summary, &s);
                    errors.extend(e);
                }
                Err(_) => {
                    shared.fail(Error::Usage("a backup walker panicked".into()));
                    tree = tree.and(Err(Error::Interrupted));
                }
            }
        }
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        let tree = tree.map_err(|e| {
            let cause = shared
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match cause {
                Some(cause) if e.is_secondary() => cause,
                _ => e,
            }
        });
        (tree, summary, errors)
    })
}

// Saturating: `bytes_total` sums `lstat` sizes, and two sparse files of 2^63 − 1 bytes (tmpfs,
// XFS, FUSE) would overflow a u64.
fn add_counts(into: &mut Summary, s: &Summary) {
    into.files_new = into.files_new.saturating_add(s.files_new);
    into.files_changed = into.files_changed.saturating_add(s.files_changed);
    into.files_unmodified = into.files_unmodified.saturating_add(s.files_unmodified);
    into.dirs = into.dirs.saturating_add(s.dirs);
    into.other_entries = into.other_entries.saturating_add(s.other_entries);
    into.bytes_read = into.bytes_read.saturating_add(s.bytes_read);
    into.bytes_total = into.bytes_total.saturating_add(s.bytes_total);
}

fn unchanged(old: &Node, md: &std::fs::Metadata) -> bool {
    old.kind == NodeKind::File
        && old.size == md.size()
        && (old.mtime, old.ctime) == files::times_ns(md)
        && old.inode == md.ino()
}

/// Whether `old`'s extended attributes still hold: the same inode and kind, and a change time
/// that is the same (and was recorded exactly, not clamped).
fn same_attributes(old: &Node, md: &std::fs::Metadata) -> bool {
    old.kind == files::kind_of(md)
        && old.inode == md.ino()
        && files::time_range_problem(md).is_none()
        && old.ctime == files::times_ns(md).1
}

struct Walker<'a, 's> {
    shared: &'a Shared<'a, 's>,
    /// Which pack stream this walker's chunks go to (see `saver`): each walker fills packs of
    /// its own, so a pack holds one subtree's files in walk order.
    stream: usize,
    reader: ReadAhead,
    chunker: Chunker,
    summary: Summary,
    errors: Vec<SourceError>,
}

impl<'a, 's> Walker<'a, 's> {
    fn new<'scope>(
        shared: &'a Shared<'a, 's>,
        scope: &'scope Scope<'scope, '_>,
        stream: usize,
    ) -> Self {
        Walker {
            shared,
            stream,
            reader: ReadAhead::start(scope),
            chunker: Chunker::new(shared.repo.config().chunker),
            summary: Summary::default(),
            errors: Vec::new(),
        }
    }

    /// A helper walker: builds the subtrees handed to it until `stop` closes.
    fn help(mut self, stop: &Receiver<()>) -> (Summary, Vec<SourceError>) {
        loop {
            self.shared.idle.fetch_add(1, Ordering::SeqCst);
            crossbeam_channel::select! {
                recv(self.shared.handoff_rx) -> job => {
                    self.shared.idle.fetch_sub(1, Ordering::SeqCst);
                    let Ok(job) = job else { break };
                    let r = self.dir(&job.path, job.parent.as_ref(), job.inside).map_err(|e| {
                        self.shared.fail(e);
                        Error::Interrupted
                    });
                    let _ = job.reply.send(r);
                }
                recv(stop) -> _ => {
                    self.shared.idle.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
            }
        }
        (self.summary, self.errors)
    }

    fn root(
        &mut self,
        top: Option<&Top>,
        parent: Option<&Tree>,
        extra: Option<Node>,
    ) -> Result<Id> {
        let mut nodes = match top {
            Some(top) => self.top_nodes(top, parent)?,
            None => Vec::new(),
        };
        if let Some(node) = extra {
            nodes.push((node, Pending::default()));
        }
        nodes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        if nodes.windows(2).any(|p| p[0].0.name == p[1].0.name) {
            return Err(Error::Usage(format!(
                "the paths already hold a top-level {MYSQL_DIR:?} entry, where the database \
                 dump goes; back up its parent directory instead"
            )));
        }
        self.save_tree(nodes)
    }

    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.shared.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.errors.push(SourceError {
            path: path.display().to_string(),
            message: e.to_string(),
        });
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.shared.stopped() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    fn parent_subtree(&self, parent: Option<&Node>) -> Option<Tree> {
        let sub = parent.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        self.shared.repo.load_tree(&sub).ok()
    }

    fn save_tree(&mut self, nodes: Vec<(Node, Pending)>) -> Result<Id> {
        let mut tree = Tree {
            nodes: Vec::with_capacity(nodes.len()),
        };
        for (mut node, pending) in nodes {
            let prunable = pending.prunable;
            resolve(&mut node, pending)?;
            if prunable && node.subtree == Some(self.shared.empty_tree) {
                continue;
            }
            tree.nodes.push(node);
        }
        Ok(self.shared.saver.save(BlobType::Tree, tree.encode())?.0)
    }

    fn top(&mut self, top: &Top, parent: Option<&Tree>) -> Result<Id> {
        let nodes = self.top_nodes(top, parent)?;
        self.save_tree(nodes)
    }

    /// The entries of the tree for `top`, not yet saved (the root may get more).
    fn top_nodes(&mut self, top: &Top, parent: Option<&Tree>) -> Result<Vec<(Node, Pending)>> {
        let children = match top {
            Top::Real(path) => {
                let inside = self.shared.select.included(path, false);
                return self.dir_nodes(path, parent, inside);
            }
            Top::Virtual(_, children) => children,
        };
        let mut nodes = Vec::new();
        for (name, child) in children {
            let path = match child {
                Top::Real(p) | Top::Virtual(p, _) => p,
            };
            let md = match std::fs::symlink_metadata(path) {
                Ok(md) => md,
                Err(e) => {
                    self.error(path, e);
                    continue;
                }
            };
            let old = parent.and_then(|t| t.find(name));
            let mut node = match files::node_from(std::ffi::OsStr::from_bytes(name), path, &md) {
                Ok(n) => n,
                Err(e) => {
                    self.error(path, e);
                    continue;
                }
            };
            if let Some(p) = files::time_range_problem(&md) {
                self.error(path, p);
            }
            match (child, node.kind) {
                (Top::Virtual(..), _) | (Top::Real(_), NodeKind::Dir) => {
                    let sub = self.parent_subtree(old);
                    node.subtree = Some(self.top(child, sub.as_ref())?);
                    self.summary.dirs += 1;
                    nodes.push((node, Pending::default()));
                }
                _ => {
                    if let Some(p) = self.entry_content(path, &md, &mut node, old)? {
                        nodes.push((node, p));
                    }
                }
            }
        }
        Ok(nodes)
    }

    /// Backs up directory `path`, returning its tree id; `inside`: whether an include matched
    /// it or a directory above it.
    fn dir(&mut self, path: &Path, parent: Option<&Tree>, inside: bool) -> Result<Id> {
        let nodes = self.dir_nodes(path, parent, inside)?;
        self.save_tree(nodes)
    }

    fn dir_nodes(
        &mut self,
        path: &Path,
        parent: Option<&Tree>,
        inside: bool,
    ) -> Result<Vec<(Node, Pending)>> {
        self.check_interrupt()?;
        let listing = std::time::Instant::now();
        let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        match std::fs::read_dir(path) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => entries.push((e.file_name().as_bytes().to_vec(), e.path())),
                        Err(e) => self.error(path, e),
                    }
                }
            }
            Err(e) => self.error(path, e),
        }
        entries.sort();
        let select = &self.shared.select;
        let entries = entries
            .into_iter()
            .filter(|(_, child)| !select.excluded(child))
            .map(|(name, child)| {
                let md = std::fs::symlink_metadata(&child);
                (name, child, md)
            })
            // Directories are walked whatever the includes say (a pattern may match beneath).
            .filter(|(_, child, md)| {
                md.as_ref().is_ok_and(|m| m.is_dir()) || select.included(child, inside)
            });
        // Files first, subdirectories after: the read-ahead must be asked for files in the order
        // they are read, and a subdirectory asks for its own when it is entered. The tree is put
        // back in name order at the end.
        let (dirs, others): (Vec<_>, Vec<_>) =
            entries.partition(|(_, _, md)| md.as_ref().is_ok_and(|m| m.is_dir()));
        stages::add(Stage::Walk, listing, 0);
        let mut asked_links = HashSet::new();
        let mut asked = 0;
        let mut nodes = Vec::with_capacity(others.len() + dirs.len());
        for (i, (name, child, md)) in others.iter().enumerate() {
            // Keep a bounded number of requests ahead, so a huge directory costs no more
            // memory in the reader than the walker's own list of it.
            while asked < others.len().min(i + REQUEST_AHEAD) {
                let (name, child, md) = &others[asked];
                asked += 1;
                if let Ok(md) = md
                    && md.is_file()
                    && md.size() > 0
                    && md.size() < crate::source::readahead::DIRECT_MIN
                    && !parent
                        .and_then(|t| t.find(name))
                        .is_some_and(|o| unchanged(o, md))
                    && (md.nlink() == 1 || !self.link_known(md) && asked_links.insert(link_key(md)))
                {
                    self.reader.request(child.clone(), md);
                }
            }
            let old = parent.and_then(|t| t.find(name));
            let entry = self.entry(name, child, md, old, false, inside);
            self.reader.skip(child);
            if let Some(e) = entry? {
                nodes.push(e);
            }
        }
        // Subdirectories from the front, but while a walker is idle it is offered the one
        // furthest back: work far apart in the tree is most likely to be of a different kind.
        let mut dirs = std::collections::VecDeque::from(dirs);
        while !dirs.is_empty() {
            let offer = self.shared.idle.load(Ordering::SeqCst) > 0;
            let next = if offer {
                dirs.pop_back()
            } else {
                dirs.pop_front()
            };
            let Some((name, child, md)) = next else { break };
            let old = parent.and_then(|t| t.find(&name));
            let inside = self.shared.select.included(&child, inside);
            if let Some(e) = self.entry(&name, &child, &md, old, offer, inside)? {
                nodes.push(e);
            }
        }
        nodes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(nodes)
    }

    fn link_known(&self, md: &std::fs::Metadata) -> bool {
        self.shared
            .hardlinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&link_key(md))
    }

    /// One directory entry, `None` when it must be skipped (the error is recorded).
    fn entry(
        &mut self,
        name: &[u8],
        child: &Path,
        md: &std::io::Result<std::fs::Metadata>,
        old: Option<&Node>,
        offer: bool,
        inside: bool,
    ) -> Result<Option<(Node, Pending)>> {
        let md = match md {
            Ok(md) => md,
            Err(e) => {
                self.error(child, e);
                return Ok(None);
            }
        };
        let known = old
            .filter(|o| same_attributes(o, md))
            .map(|o| o.xattrs.as_slice());
        let name = std::ffi::OsStr::from_bytes(name);
        let mut node = match files::node_from_known(name, child, md, known) {
            Ok(n) => n,
            Err(e) => {
                self.error(child, e);
                return Ok(None);
            }
        };
        if let Some(p) = files::time_range_problem(md) {
            self.error(child, p);
        }
        if node.kind != NodeKind::Dir {
            return Ok(self
                .entry_content(child, md, &mut node, old)?
                .map(|p| (node, p)));
        }
        self.summary.dirs += 1;
        let parent = self.parent_subtree(old);
        let kept = Pending {
            prunable: !inside,
            ..Pending::default()
        };
        if !offer {
            node.subtree = Some(self.dir(child, parent.as_ref(), inside)?);
            return Ok(Some((node, kept)));
        }
        let (reply, result) = bounded(1);
        let job = Handoff {
            path: child.to_path_buf(),
            parent,
            inside,
            reply,
        };
        // An idle walker may be a moment away from waiting on the channel.
        match self
            .shared
            .handoff_tx
            .send_timeout(job, std::time::Duration::from_millis(2))
        {
            Ok(()) => Ok(Some((
                node,
                Pending {
                    subtree: Some(result),
                    ..kept
                },
            ))),
            Err(SendTimeoutError::Timeout(job) | SendTimeoutError::Disconnected(job)) => {
                node.subtree = Some(self.dir(child, job.parent.as_ref(), inside)?);
                Ok(Some((node, kept)))
            }
        }
    }

    /// Fills in a non-directory node's content, returning the chunk ids still being hashed;
    /// `Ok(None)` when the entry must be skipped.
    fn entry_content(
        &mut self,
        path: &Path,
        md: &std::fs::Metadata,
        node: &mut Node,
        old: Option<&Node>,
    ) -> Result<Option<Pending>> {
        let progress = self.shared.progress;
        progress.files.fetch_add(1, Ordering::Relaxed);
        if node.kind != NodeKind::File {
            self.summary.other_entries += 1;
            return Ok(Some(Pending::default()));
        }
        self.summary.bytes_total = self.summary.bytes_total.saturating_add(node.size);
        progress.bytes_seen.fetch_add(node.size, Ordering::Relaxed);
        if let Some(old) = old.filter(|o| unchanged(o, md)) {
            let mut all_present = true;
            for e in &old.content {
                if let Some(id) = e.0 {
                    all_present &= self.shared.repo.index().usable(&id)?;
                }
            }
            if all_present {
                node.content = old.content.clone();
                self.summary.files_unmodified += 1;
                return Ok(Some(Pending::default()));
            }
        }
        if md.nlink() > 1
            && let Some(content) = self.first_link(md)?
        {
            node.content = content;
            // The size must match the content recorded for the first link, even if the file
            // changed in between.
            node.size = node.content_len().unwrap_or(u64::MAX);
            self.summary.files_unmodified += 1;
            return Ok(Some(Pending::default()));
        }
        let read = self.read_file(path, md, node);
        if md.nlink() > 1 && read.is_err() {
            // Another link may succeed: let a waiting walker (or a later link) read it.
            self.link_done(md, None);
        }
        let mut chunks = match read {
            Ok(p) => p,
            Err(ReadError::Io(e)) => {
                self.error(path, e);
                return Ok(None);
            }
            Err(ReadError::Fatal(e)) => return Err(e),
        };
        if old.is_some() {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        if md.nlink() > 1 {
            // Later links reuse this content, so it must be complete now.
            let resolved = resolve_chunks(node, std::mem::take(&mut chunks));
            let content = resolved.is_ok().then(|| node.content.clone());
            self.link_done(md, content);
            resolved?;
        }
        Ok(Some(Pending {
            chunks,
            ..Pending::default()
        }))
    }

    /// The content of an inode another link of which was read already (waiting while another
    /// walker reads it); `None` when this walker is to read it, now marked as being read.
    fn first_link(&self, md: &std::fs::Metadata) -> Result<Option<Vec<Extent>>> {
        let key = link_key(md);
        let mut links = self
            .shared
            .hardlinks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            match links.get(&key) {
                Some(Link::Read(content)) => return Ok(Some(content.clone())),
                Some(Link::Reading) => {
                    self.check_interrupt()?;
                    links = self
                        .shared
                        .link_read
                        .wait_timeout(links, std::time::Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => {
                    links.insert(key, Link::Reading);
                    return Ok(None);
                }
            }
        }
    }

    /// Ends this walker's read of a multiply-linked file: its content, or `None` on failure.
    fn link_done(&self, md: &std::fs::Metadata, content: Option<Vec<Extent>>) {
        let mut links = self
            .shared
            .hardlinks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match content {
            Some(c) => links.insert(link_key(md), Link::Read(c)),
            None => links.remove(&link_key(md)),
        };
        drop(links);
        self.shared.link_read.notify_all();
    }

    fn read_file(
        &mut self,
        path: &Path,
        md: &std::fs::Metadata,
        node: &mut Node,
    ) -> Result<Vec<(usize, PendingId)>, ReadError> {
        let progress = self.shared.progress;
        *progress.current.lock().unwrap_or_else(|e| e.into_inner()) = path.display().to_string();
        let mut src = stages::TimedRead {
            inner: self.reader.open(path, md)?,
            nanos: 0,
        };
        let regions = src.inner.regions().to_vec();
        let regions_end = regions.last().map(|(s, l)| s + l).unwrap_or(0);
        let mut pos = 0u64;
        let mut content = Vec::new();
        let mut chunks = Vec::new();
        for (start, len) in regions {
            if start > pos {
                content.push(Extent(None, start - pos));
                pos = start;
            }
            let mut region = (&mut src).take(len);
            self.chunker.reset();
            loop {
                // The chunker's own time is its call less the reads it made.
                let (t, read_before) = (std::time::Instant::now(), region.get_ref().nanos);
                let next = self.chunker.next_chunk(&mut region)?;
                let read = region.get_ref().nanos - read_before;
                let n = next.as_ref().map_or(0, |c| c.len() as u64);
                stages::add_nanos(
                    Stage::Chunk,
                    (t.elapsed().as_nanos() as u64).saturating_sub(read),
                    n,
                );
                let Some(chunk) = next else { break };
                if self.shared.stopped() {
                    return Err(ReadError::Fatal(Error::Interrupted));
                }
                let n = chunk.len() as u64;
                self.summary.bytes_read += n;
                progress.bytes_read.fetch_add(n, Ordering::Relaxed);
                let id = self
                    .shared
                    .saver
                    .save_chunk_to(self.stream, chunk)
                    .map_err(ReadError::Fatal)?;
                chunks.push((content.len(), id));
                content.push(Extent(Some(Id::default()), n));
                pos += n;
            }
        }
        // A hole at the end (the regions stop before the size); a file that shrank while being
        // read is recorded at the length actually read.
        if pos == regions_end && md.size() > pos {
            content.push(Extent(None, md.size() - pos));
            pos = md.size();
        }
        node.size = pos;
        node.content = content;
        Ok(chunks)
    }
}

fn link_key(md: &std::fs::Metadata) -> (u64, u64) {
    (md.dev(), md.ino())
}

enum ReadError {
    Io(std::io::Error),
    Fatal(Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}
