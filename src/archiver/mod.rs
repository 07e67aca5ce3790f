//! The archiver: walks the source paths depth-first, builds one tree per directory bottom-up, and
//! hands content chunks and trees to the blob saver; then writes the snapshot.
//!
//! Incremental and differential runs differ from a full one only in what is *read*: a file whose
//! size, mtime, ctime and inode match the same path in the parent snapshot keeps the parent's
//! content list (after checking that its blobs are still indexed) without being opened. Memory is
//! bounded by the depth of the tree times the width of a directory, never by the number of files.

mod db;
mod saver;

pub use db::{MYSQL_DIR, MysqlSource};

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{BackupKind, Snapshot, SourceError, Summary};
use crate::source::files;
use crate::source::readahead::ReadAhead;
use crate::tree::{Extent, Node, NodeKind, Tree};
use saver::{PendingId, Saver, SaverState};

pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub kind: BackupKind,
    /// A database to dump into `mysql/` beside the paths.
    pub mysql: Option<MysqlSource>,
}

/// Live counters a front end may poll to draw progress.
#[derive(Default)]
pub struct BackupProgress {
    pub files: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_seen: AtomicU64,
    pub errors: AtomicU64,
    pub current: Mutex<String>,
}

pub struct BackupOutcome {
    pub id: Id,
    pub snapshot: Snapshot,
}

/// Builds a glob set from exclude patterns; a pattern without `/` also matches any base name.
pub fn globset(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?;
        b.add(g);
        if !p.contains('/') {
            b.add(
                Glob::new(&format!("**/{p}"))
                    .map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?,
            );
        }
    }
    b.build()
        .map_err(|e| Error::Usage(format!("bad patterns: {e}")))
}

/// Where a source path appears inside the snapshot tree: absolute paths keep their components,
/// relative ones are placed relative to the working directory (so `snap backup .` stores the
/// directory's contents at the root, as restic does).
fn tree_components(arg: &Path, abs: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    let src = if arg.is_absolute() { abs } else { arg };
    for c in src.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir if out.pop().is_none() => {
                // Escapes the working directory: fall back to the absolute layout.
                return abs
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        _ => None,
                    })
                    .collect();
            }
            _ => {}
        }
    }
    out
}

/// The virtual top of the snapshot tree: real directories where a path was given, synthetic
/// parents (carrying the real parent's metadata) above them.
enum Top {
    Real(PathBuf),
    Virtual(PathBuf, BTreeMap<Vec<u8>, Top>),
}

struct Walker<'a, 's> {
    repo: &'a Repository,
    saver: &'a Saver<'s>,
    reader: ReadAhead,
    chunker: crate::chunker::Chunker,
    excludes: GlobSet,
    progress: &'a BackupProgress,
    interrupt: &'a AtomicBool,
    summary: Summary,
    errors: Vec<SourceError>,
    hardlinks: HashMap<(u64, u64), Vec<Extent>>,
}

fn unchanged(old: &Node, md: &std::fs::Metadata) -> bool {
    old.kind == NodeKind::File
        && old.size == md.size()
        && old.mtime == md.mtime() * 1_000_000_000 + md.mtime_nsec()
        && old.ctime == md.ctime() * 1_000_000_000 + md.ctime_nsec()
        && old.inode == md.ino()
}

impl Walker<'_, '_> {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.errors.push(SourceError {
            path: path.display().to_string(),
            message: e.to_string(),
        });
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupt.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    fn parent_subtree(&self, parent: Option<&Node>) -> Option<Tree> {
        let sub = parent.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        self.repo.load_tree(&sub).ok()
    }

    fn save_tree(&mut self, nodes: Vec<(Node, Pendings)>) -> Result<Id> {
        let mut tree = Tree {
            nodes: Vec::with_capacity(nodes.len()),
        };
        for (mut node, pendings) in nodes {
            resolve(&mut node, pendings)?;
            tree.nodes.push(node);
        }
        Ok(self.saver.save(BlobType::Tree, tree.encode())?.0)
    }

    fn top(&mut self, top: &Top, parent: Option<&Tree>) -> Result<Id> {
        let nodes = self.top_nodes(top, parent)?;
        self.save_tree(nodes)
    }

    /// The entries of the tree for `top`, not yet saved (the root may get more).
    fn top_nodes(&mut self, top: &Top, parent: Option<&Tree>) -> Result<Vec<(Node, Pendings)>> {
        match top {
            Top::Real(path) => self.dir_nodes(path, parent),
            Top::Virtual(_, children) => {
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
                    let mut node =
                        match files::node_from(std::ffi::OsStr::from_bytes(name), path, &md) {
                            Ok(n) => n,
                            Err(e) => {
                                self.error(path, e);
                                continue;
                            }
                        };
                    match (child, node.kind) {
                        (Top::Virtual(..), _) | (Top::Real(_), NodeKind::Dir) => {
                            let sub = self.parent_subtree(old);
                            node.subtree = Some(self.top(child, sub.as_ref())?);
                            self.summary.dirs += 1;
                        }
                        _ => match self.entry_content(path, &md, &mut node, old)? {
                            Some(p) => {
                                nodes.push((node, p));
                                continue;
                            }
                            None => continue,
                        },
                    }
                    nodes.push((node, Vec::new()));
                }
                Ok(nodes)
            }
        }
    }

    /// Backs up directory `path`, returning its tree id.
    fn dir(&mut self, path: &Path, parent: Option<&Tree>) -> Result<Id> {
        let nodes = self.dir_nodes(path, parent)?;
        self.save_tree(nodes)
    }

    fn dir_nodes(&mut self, path: &Path, parent: Option<&Tree>) -> Result<Vec<(Node, Pendings)>> {
        self.check_interrupt()?;
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
        let entries = entries
            .into_iter()
            .filter(|(_, child)| !self.excludes.is_match(child))
            .map(|(name, child)| {
                let md = std::fs::symlink_metadata(&child);
                (name, child, md)
            });
        // Files first, subdirectories after: the read-ahead must be asked for files in the order
        // they are read, and a subdirectory asks for its own when it is entered. The tree is put
        // back in name order at the end.
        let (dirs, others): (Vec<_>, Vec<_>) =
            entries.partition(|(_, _, md)| md.as_ref().is_ok_and(|m| m.is_dir()));
        let mut asked_links = std::collections::HashSet::new();
        for (name, child, md) in &others {
            if let Ok(md) = md
                && md.is_file()
                && md.size() > 0
                && !parent
                    .and_then(|t| t.find(name))
                    .is_some_and(|o| unchanged(o, md))
                && (md.nlink() == 1
                    || !self.hardlinks.contains_key(&(md.dev(), md.ino()))
                        && asked_links.insert((md.dev(), md.ino())))
            {
                self.reader.request(child.clone(), md);
            }
        }
        let mut nodes = Vec::with_capacity(others.len() + dirs.len());
        for (name, child, md) in others.into_iter().chain(dirs) {
            let old = parent.and_then(|t| t.find(&name));
            let entry = self.entry(&name, &child, md, old);
            self.reader.skip(&child);
            if let Some(e) = entry? {
                nodes.push(e);
            }
        }
        nodes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(nodes)
    }

    /// One directory entry, `None` when it must be skipped (the error is recorded).
    fn entry(
        &mut self,
        name: &[u8],
        child: &Path,
        md: std::io::Result<std::fs::Metadata>,
        old: Option<&Node>,
    ) -> Result<Option<(Node, Pendings)>> {
        let md = match md {
            Ok(md) => md,
            Err(e) => {
                self.error(child, e);
                return Ok(None);
            }
        };
        let mut node = match files::node_from(std::ffi::OsStr::from_bytes(name), child, &md) {
            Ok(n) => n,
            Err(e) => {
                self.error(child, e);
                return Ok(None);
            }
        };
        if node.kind == NodeKind::Dir {
            let sub = self.parent_subtree(old);
            node.subtree = Some(self.dir(child, sub.as_ref())?);
            self.summary.dirs += 1;
            return Ok(Some((node, Vec::new())));
        }
        Ok(self
            .entry_content(child, &md, &mut node, old)?
            .map(|p| (node, p)))
    }

    /// Fills in a non-directory node's content, returning the chunk ids still being hashed;
    /// `Ok(None)` when the entry must be skipped.
    fn entry_content(
        &mut self,
        path: &Path,
        md: &std::fs::Metadata,
        node: &mut Node,
        old: Option<&Node>,
    ) -> Result<Option<Pendings>> {
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        if node.kind != NodeKind::File {
            self.summary.other_entries += 1;
            return Ok(Some(Vec::new()));
        }
        self.summary.bytes_total += node.size;
        self.progress
            .bytes_seen
            .fetch_add(node.size, Ordering::Relaxed);
        if let Some(old) = old.filter(|o| unchanged(o, md)) {
            let mut all_present = true;
            for e in &old.content {
                if let Some(id) = e.0 {
                    all_present &= self.repo.index().contains(&id)?;
                }
            }
            if all_present {
                node.content = old.content.clone();
                self.summary.files_unmodified += 1;
                return Ok(Some(Vec::new()));
            }
        }
        let link_key = (md.dev(), md.ino());
        if md.nlink() > 1
            && let Some(content) = self.hardlinks.get(&link_key)
        {
            node.content = content.clone();
            // The size must match the content recorded for the first link, even if the file
            // changed in between.
            node.size = node.content.iter().map(|e| e.1).sum();
            self.summary.files_unmodified += 1;
            return Ok(Some(Vec::new()));
        }
        let mut pendings = match self.read_file(path, md, node) {
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
            resolve(node, std::mem::take(&mut pendings))?;
            self.hardlinks.insert(link_key, node.content.clone());
        }
        Ok(Some(pendings))
    }

    fn read_file(
        &mut self,
        path: &Path,
        md: &std::fs::Metadata,
        node: &mut Node,
    ) -> Result<Pendings, ReadError> {
        *self
            .progress
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = path.display().to_string();
        let mut src = self.reader.open(path, md)?;
        let (chunker, saver) = (&mut self.chunker, self.saver);
        let (summary, progress) = (&mut self.summary, self.progress);
        let regions = src.regions().to_vec();
        let regions_end = regions.last().map(|(s, l)| s + l).unwrap_or(0);
        let mut pos = 0u64;
        let mut content = Vec::new();
        let mut pendings = Vec::new();
        for (start, len) in regions {
            if start > pos {
                content.push(Extent(None, start - pos));
                pos = start;
            }
            let mut region = (&mut src).take(len);
            chunker.reset();
            while let Some(chunk) = chunker.next_chunk(&mut region)? {
                if self.interrupt.load(Ordering::Relaxed) {
                    return Err(ReadError::Fatal(Error::Interrupted));
                }
                let n = chunk.len() as u64;
                summary.bytes_read += n;
                progress.bytes_read.fetch_add(n, Ordering::Relaxed);
                let id = saver.save_chunk(chunk).map_err(ReadError::Fatal)?;
                pendings.push((content.len(), id));
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
        Ok(pendings)
    }
}

/// Chunk ids of a node still being hashed by the saver's workers: (index into `content`, id).
type Pendings = Vec<(usize, PendingId)>;

/// Waits for the ids of a node's chunks and writes them into its content.
fn resolve(node: &mut Node, pendings: Pendings) -> Result<()> {
    for (i, p) in pendings {
        node.content[i].0 = Some(p.wait()?);
    }
    Ok(())
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

/// Picks the parent snapshot for change detection: the latest with the same host and paths
/// (for a differential, the latest such *full* snapshot).
fn find_parent(
    all: &[(Id, Snapshot)],
    host: &str,
    paths: &[String],
    kind: BackupKind,
) -> Option<(Id, Snapshot)> {
    all.iter()
        .rev()
        .filter(|(_, s)| s.host == host && s.paths == paths)
        .find(|(_, s)| kind != BackupKind::Differential || s.kind == BackupKind::Full)
        .cloned()
}

pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &BackupProgress,
    interrupt: &AtomicBool,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = chrono::Local::now();
    let host = opts.host.clone().unwrap_or_else(crate::hostname);
    if opts.paths.is_empty() && opts.mysql.is_none() {
        return Err(Error::Usage(
            "nothing to back up: give at least one path, or --mysql".into(),
        ));
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", ".", e))?;
    let mut top_map: Option<Top> = None;
    let mut abs_paths = Vec::new();
    for p in &opts.paths {
        let abs = crate::lexical_absolute(&cwd, p);
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io("cannot back up", &abs, e))?;
        abs_paths.push(abs.display().to_string());
        insert_top(&mut top_map, &tree_components(p, &abs), abs.clone(), &cwd);
    }
    abs_paths.sort();
    abs_paths.dedup();
    let all = repo.snapshots()?;
    let parent = match opts.kind {
        BackupKind::Full => None,
        k => find_parent(&all, &host, &abs_paths, k),
    };
    let parent_tree = match &parent {
        Some((_, s)) => Some(repo.load_tree(&s.tree)?),
        None => None,
    };
    let excludes = globset(&opts.excludes)?;
    let state = SaverState::default();
    let repo_ref: &Repository = repo;
    let db_params = repo.config().db_chunker();
    let (tree, summary, errors, mysql) = std::thread::scope(|scope| -> Result<_> {
        let saver = Saver::start(scope, repo_ref, &state);
        let mut w = Walker {
            repo: repo_ref,
            saver: &saver,
            reader: ReadAhead::start(scope),
            chunker: crate::chunker::Chunker::new(repo_ref.config().chunker),
            excludes,
            progress,
            interrupt,
            summary: Summary::default(),
            errors: Vec::new(),
            hardlinks: HashMap::new(),
        };
        // The database first: its consistent snapshot is the moment the backup stands for.
        let db = match &opts.mysql {
            Some(src) => db::dump(&saver, db_params, src, progress).map(Some),
            None => Ok(None),
        };
        let tree = db.and_then(|db| {
            let mut nodes = match &top_map {
                Some(top) => w.top_nodes(top, parent_tree.as_ref())?,
                None => Vec::new(),
            };
            let mysql = db.map(|(node, summary)| {
                nodes.push((node, Vec::new()));
                summary
            });
            nodes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            if nodes.windows(2).any(|p| p[0].0.name == p[1].0.name) {
                return Err(Error::Usage(format!(
                    "the paths already hold a top-level {MYSQL_DIR:?} entry, where the database \
                     dump goes; back up its parent directory instead"
                )));
            }
            Ok((w.save_tree(nodes)?, mysql))
        });
        let (summary, errors) = (w.summary, w.errors);
        drop(w.reader);
        // Whatever happened, wait for the queued packs: they are durable and reusable next time.
        let finished = saver.finish();
        let (tree, mysql) = tree?;
        finished?;
        Ok((tree, summary, errors, mysql))
    })?;
    let s = &state.stats;
    let summary = Summary {
        blobs_added: s.blobs_added.load(Ordering::Relaxed),
        bytes_added: s.bytes_added.load(Ordering::Relaxed),
        bytes_added_raw: s.bytes_added_raw.load(Ordering::Relaxed),
        packs_written: s.packs_written.load(Ordering::Relaxed),
        duration_ms: started.elapsed().as_millis() as u64,
        // The dump streams are files of the snapshot too.
        bytes_read: summary.bytes_read + mysql.as_ref().map_or(0, |m| m.bytes),
        bytes_total: summary.bytes_total + mysql.as_ref().map_or(0, |m| m.bytes),
        ..summary
    };
    let snapshot = Snapshot {
        time: time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        time_end: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        host,
        user: crate::username(),
        paths: abs_paths,
        tags: opts.tags.clone(),
        // Without a parent every file was read: that is a full backup, whatever was asked for,
        // and it is what a later differential must compare against.
        kind: if parent.is_none() {
            BackupKind::Full
        } else {
            opts.kind
        },
        parent: parent.map(|(id, _)| id),
        tree,
        incomplete: !errors.is_empty(),
        errors,
        summary,
        program: format!("snap {}", env!("CARGO_PKG_VERSION")),
        mysql,
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupOutcome { id, snapshot })
}

fn insert_top(top: &mut Option<Top>, comps: &[OsString], real: PathBuf, cwd: &Path) {
    if comps.is_empty() {
        *top = Some(Top::Real(real));
        return;
    }
    // The real directory that stands for the virtual root: `/` for absolute layouts, else cwd.
    let root_real = real
        .ancestors()
        .nth(comps.len())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cwd.to_path_buf());
    let node = top.get_or_insert_with(|| Top::Virtual(root_real, BTreeMap::new()));
    let mut cur = node;
    let mut cur_real = real
        .ancestors()
        .nth(comps.len())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for (i, c) in comps.iter().enumerate() {
        cur_real = cur_real.join(c);
        let Top::Virtual(_, children) = cur else {
            return;
        }; // an ancestor is already backed up whole
        let last = i + 1 == comps.len();
        let entry = children.entry(c.as_bytes().to_vec()).or_insert_with(|| {
            if last {
                Top::Real(cur_real.clone())
            } else {
                Top::Virtual(cur_real.clone(), BTreeMap::new())
            }
        });
        if last {
            *entry = Top::Real(cur_real.clone());
            return;
        }
        cur = entry;
    }
}
