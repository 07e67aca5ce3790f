//! The archiver: walks the source paths depth-first, builds one tree per directory bottom-up, and
//! hands content chunks and trees to the blob saver; then writes the snapshot.
//!
//! Incremental and differential runs differ from a full one only in what is *read*: a file whose
//! size, mtime, ctime and inode match the same path in the parent snapshot keeps the parent's
//! content list (after checking that its blobs are still indexed) without being opened. Memory is
//! bounded by the depth of the tree times the width of a directory, never by the number of files.

mod binlog;
mod db;
mod saver;
mod scan;
mod select;
mod walker;

pub use binlog::{StreamSnapshot, save_streams};
pub use db::{MYSQL_DIR, MysqlSource, RecordAs};
pub use scan::scan;
pub use select::{Selection, globset};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{BackupKind, Snapshot, Summary};
// `copy` stores blobs through the same pipeline, so its packs follow the same write order.
pub(crate) use saver::{Saver, SaverState};

pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// Globs a file must match (or a directory above it) to be taken; empty: every file.
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub kind: BackupKind,
    /// A database to dump into `mysql/` beside the paths.
    pub mysql: Option<MysqlSource>,
    /// Instead of a dump: a database part made elsewhere (the binary-log range of an
    /// incremental or differential database backup), as stream nodes under `mysql/` whose
    /// content is already stored, and what the snapshot records about it.
    pub mysql_prebuilt: Option<Prebuilt>,
    /// The time to record instead of now (`snap backup --time`, for importing history and for
    /// testing retention); `time_end` is it plus the run's duration.
    pub time: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Live counters a front end may poll to draw progress.
#[derive(Default)]
pub struct BackupProgress {
    pub files: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_seen: AtomicU64,
    pub errors: AtomicU64,
    pub current: Mutex<String>,
    /// Totals from [`scan`], counted while the backup runs; final once `scanned` is set.
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub scanned: AtomicBool,
}

/// A database part whose blobs are already in the repository.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    /// `(path under mysql/, file node)`.
    pub streams: Vec<(String, crate::tree::Node)>,
    pub summary: crate::snapshot::MysqlSummary,
    pub binlog: Option<crate::snapshot::BinlogRecord>,
}

pub struct BackupOutcome {
    pub id: Id,
    pub snapshot: Snapshot,
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
    let time = opts
        .time
        .unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let host = opts.host.clone().unwrap_or_else(crate::hostname);
    if opts.paths.is_empty() && opts.mysql.is_none() && opts.mysql_prebuilt.is_none() {
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
    let select = Selection::new(&opts.includes, &opts.excludes)?;
    let state = SaverState::default();
    let repo_ref: &Repository = repo;
    let db_params = repo.config().db_chunker();
    let (tree, summary, errors, mysql) = std::thread::scope(|scope| -> Result<_> {
        let saver = Saver::start(scope, repo_ref, &state);
        // The database first: its consistent snapshot is the moment the backup stands for.
        let db = match (&opts.mysql_prebuilt, &opts.mysql) {
            (Some(pre), _) => {
                let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                db::save_dir(&saver, MYSQL_DIR, pre.streams.clone(), now_ns)
                    .map(|node| Some((node, pre.summary.clone())))
            }
            (None, Some(src)) => db::dump(&saver, db_params, src, progress).map(Some),
            (None, None) => Ok(None),
        };
        let (tree, summary, errors) = match db {
            Ok(db) => {
                let shared = walker::Shared::new(repo_ref, &saver, select, progress, interrupt);
                let (node, mysql) = db.unzip();
                let (tree, summary, errors) =
                    walker::walk(&shared, top_map.as_ref(), parent_tree.as_ref(), node);
                (tree.map(|t| (t, mysql)), summary, errors)
            }
            Err(e) => (Err(e), Summary::default(), Vec::new()),
        };
        // Whatever happened, wait for the queued packs: they are durable and reusable next time.
        let finished = saver.finish();
        let (tree, mysql) = match (tree, finished) {
            (Ok(t), Ok(())) => t,
            // The saver's own failure is the cause when the walk only saw it stop.
            (Err(e), Err(cause)) if e.is_secondary() => return Err(cause),
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
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
        time_end: match opts.time {
            None => chrono::Local::now().fixed_offset(),
            Some(t) => chrono::TimeDelta::from_std(started.elapsed())
                .ok()
                .and_then(|d| t.checked_add_signed(d))
                .unwrap_or(t),
        }
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
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
        incomplete: !errors.is_empty(),
        errors,
        mysql,
        binlog: opts.mysql_prebuilt.as_ref().and_then(|p| p.binlog.clone()),
        ..Snapshot::new(tree, host, summary)
    };
    let id = repo.save_snapshot(&snapshot)?;
    let summary = crate::audit::Summary {
        snapshots_added: vec![id],
        packs_added: snapshot.summary.packs_written,
        bytes_added: snapshot.summary.bytes_added,
        note: Some(format!(
            "{}{}",
            snapshot.kind.as_str(),
            if snapshot.incomplete {
                ", incomplete"
            } else {
                ""
            }
        )),
        ..Default::default()
    };
    crate::audit::record(repo, crate::audit::Action::Backup, summary).map_err(|e| {
        e.context(format!(
            "snapshot {} was saved, but its audit record was not",
            id.short()
        ))
    })?;
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
