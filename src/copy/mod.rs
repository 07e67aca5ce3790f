//! Copy: snapshots from one repository into another (`snap copy`, `snap backup --copy-to`), the
//! second and third copies of the 3-2-1 rule.
//!
//! A copied snapshot is a new snapshot file in the destination whose trees and blobs are all
//! there, written the way a backup writes them: blobs go through the destination's own blob
//! pipeline (`archiver::Saver`: dedup against the destination's index, compress at its level,
//! seal with its key, packs durable before the index names them), and the snapshot file is written
//! only after every pack is durable. A copy cut off at any point (SIGKILL) leaves only whole,
//! unreferenced packs; the next run finds their blobs in the index and reads nothing for them.
//!
//! Blob ids are keyed, so how blobs move depends on the two keys:
//! - **Shared id key** (`snap init --from-repo`): the same content has the same id in both, so
//!   trees are copied byte for byte and only blobs the destination lacks are read from the
//!   source (opened and id-checked with the source key, sealed again with the destination's).
//! - **Unrelated keys**: every id must be computed again with the destination key, so every
//!   data blob is read, re-hashed and stored if new, and trees are rewritten bottom-up with the
//!   new ids. Chunk boundaries are kept (no re-chunking): content deduplicates within the
//!   destination from the copy on, and against its own backups only where both cut alike.
//!
//! A copy records in `original` the snapshot it stands for (the source snapshot, or what that
//! one is itself a copy of), so a snapshot already present — copied before, or copied the other
//! way — is skipped instead of stored twice, restic's rule. The `parent` of a copy names the
//! copy of the source's parent when there is one, else nothing: a file id of another repository
//! would point at nothing here.

mod trees;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::archiver::{Saver, SaverState};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{Snapshot, SnapshotFilter};

/// Which snapshots to copy.
#[derive(Debug, Default, Clone)]
pub struct CopyOptions {
    /// Snapshot ids, unique prefixes or `latest`; empty means every snapshot `filter` accepts.
    pub snapshots: Vec<String>,
    /// `--host`/`--tag`: selects among all snapshots when none is named, else narrows what
    /// `latest` means (an id is taken as given, as in every command).
    pub filter: SnapshotFilter,
}

/// Live counters a front end may poll.
#[derive(Default)]
pub struct CopyProgress {
    /// Snapshots selected, and handled so far (copied or skipped).
    pub snapshots: AtomicU64,
    pub snapshots_done: AtomicU64,
    pub trees: AtomicU64,
    /// Blobs read from the source, and their plaintext bytes.
    pub blobs_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// The snapshot being copied (short id, host, paths).
    pub current: Mutex<String>,
}

/// How blob ids relate between the two repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Same id key: blobs and trees keep their ids.
    SharedIds,
    /// Different id keys: ids computed again, trees rewritten.
    Rekeyed,
}

/// One selected snapshot and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedSnapshot {
    /// The snapshot in the source repository.
    pub source: Id,
    /// The snapshot it stands for (recorded as `original` in the copy).
    pub original: Id,
    /// The snapshot in the destination: the new copy, or the one already there.
    pub copy: Id,
    /// True when the destination already had it and nothing was written.
    pub skipped: bool,
    pub time: String,
    pub host: String,
    pub paths: Vec<String>,
}

/// Totals of one copy run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyStats {
    /// Trees walked in the source.
    pub trees: u64,
    /// Blobs read from the source and their plaintext bytes (unrelated keys read every data blob
    /// to compute its new id; shared ids read only what the destination lacks).
    pub blobs_read: u64,
    pub bytes_read: u64,
    /// New blobs stored in the destination, their bytes in packs and before compression.
    pub blobs_added: u64,
    pub bytes_added: u64,
    pub bytes_added_raw: u64,
    pub packs_written: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    pub mode: CopyMode,
    pub snapshots: Vec<CopiedSnapshot>,
    pub copied: usize,
    pub skipped: usize,
    pub stats: CopyStats,
    pub duration_ms: u64,
}

/// The selected source snapshots, oldest first (so a parent is copied before its children).
pub fn select(src: &mut Repository, opts: &CopyOptions) -> Result<Vec<(Id, Snapshot)>> {
    let mut chosen: Vec<(Id, Snapshot)> = if opts.snapshots.is_empty() {
        src.snapshots()?
            .into_iter()
            .filter(|(_, s)| opts.filter.matches(s))
            .collect()
    } else {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for spec in &opts.snapshots {
            // As everywhere a snapshot is named: the filters narrow `latest`, an id is taken
            // as given.
            let (id, s) = src.find_snapshot(spec, &opts.filter)?;
            if ids.insert(id) {
                out.push((id, s));
            }
        }
        out
    };
    chosen.sort_by(|a, b| {
        a.1.time_parsed()
            .cmp(&b.1.time_parsed())
            .then(a.0.cmp(&b.0))
    });
    Ok(chosen)
}

/// Copies the selected snapshots of `src` into `dst`. The caller holds a shared lock on both
/// (`Operation::Copy`) and has synced both indexes under it.
pub fn copy(
    src: &mut Repository,
    dst: &mut Repository,
    opts: &CopyOptions,
    progress: &CopyProgress,
    interrupt: &AtomicBool,
) -> Result<CopyOutcome> {
    let chosen = select(src, opts)?;
    copy_selected(src, dst, chosen, progress, interrupt)
}

/// [`copy`] of snapshots already chosen (`backup --copy-to` copies the one it just wrote).
pub fn copy_selected(
    src: &mut Repository,
    dst: &mut Repository,
    chosen: Vec<(Id, Snapshot)>,
    progress: &CopyProgress,
    interrupt: &AtomicBool,
) -> Result<CopyOutcome> {
    let started = Instant::now();
    if src.config().id == dst.config().id {
        return Err(Error::Usage(format!(
            "{} and {} are the same repository (id {}); copy into another one",
            src.backend().location(),
            dst.backend().location(),
            src.config().id.short()
        )));
    }
    let mode = if src.key().shares_id_key(dst.key()) {
        CopyMode::SharedIds
    } else {
        CopyMode::Rekeyed
    };
    progress
        .snapshots
        .store(chosen.len() as u64, Ordering::Relaxed);
    // What the destination already holds, by the snapshot each one stands for.
    let mut copies: HashMap<Id, Id> = dst
        .snapshots()?
        .into_iter()
        .map(|(id, s)| (s.origin(id), id))
        .collect();
    let mut walk = trees::Memo::default();
    let mut stats = CopyStats::default();
    let mut out = Vec::new();
    for (sid, snap) in chosen {
        if interrupt.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let original = snap.origin(sid);
        let mut entry = CopiedSnapshot {
            source: sid,
            original,
            copy: sid,
            skipped: true,
            time: snap.time.clone(),
            host: snap.host.clone(),
            paths: snap.paths.clone(),
        };
        if let Some(existing) = copies.get(&original) {
            entry.copy = *existing;
            out.push(entry);
            progress.snapshots_done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Ok(mut c) = progress.current.lock() {
            *c = format!("{} {} {}", sid.short(), snap.host, snap.paths.join(" "));
        }
        let tree = copy_tree(
            src, dst, mode, &snap.tree, &mut walk, &mut stats, progress, interrupt,
        )
        .map_err(|e| e.context(format!("copying snapshot {}", sid.short())))?;
        let parent = match snap.parent {
            Some(p) => parent_origin(src, &p).and_then(|o| copies.get(&o).copied()),
            None => None,
        };
        let copied = Snapshot {
            tree,
            parent,
            original: Some(original),
            ..snap
        };
        // Every blob the tree names is durable (the saver has finished): now the snapshot.
        let did = dst.save_snapshot(&copied)?;
        copies.insert(original, did);
        entry.copy = did;
        entry.skipped = false;
        out.push(entry);
        progress.snapshots_done.fetch_add(1, Ordering::Relaxed);
    }
    stats.trees = progress.trees.load(Ordering::Relaxed);
    stats.blobs_read = progress.blobs_read.load(Ordering::Relaxed);
    stats.bytes_read = progress.bytes_read.load(Ordering::Relaxed);
    let copied = out.iter().filter(|c| !c.skipped).count();
    if copied > 0 {
        // Who added these snapshots, in the destination's own audit log.
        let summary = crate::audit::Summary {
            snapshots_added: out.iter().filter(|c| !c.skipped).map(|c| c.copy).collect(),
            packs_added: stats.packs_written,
            bytes_added: stats.bytes_added,
            note: Some(format!("from {}", src.backend().location())),
            ..Default::default()
        };
        crate::audit::record(dst, crate::audit::Action::Copy, summary)
            .map_err(|e| e.context("the snapshots were copied, but the audit record was not"))?;
    }
    Ok(CopyOutcome {
        mode,
        skipped: out.len() - copied,
        copied,
        snapshots: out,
        stats,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The snapshot the source's parent `p` stands for; `None` when it is gone (forgotten) or
/// unreadable: the copy then simply has no parent.
fn parent_origin(src: &Repository, p: &Id) -> Option<Id> {
    src.load_snapshot(p).ok().map(|s| s.origin(*p))
}

/// Copies everything below `root` into `dst` through one blob pipeline, and waits until it is
/// durable; returns the root's id in the destination.
#[allow(clippy::too_many_arguments)]
fn copy_tree(
    src: &Repository,
    dst: &Repository,
    mode: CopyMode,
    root: &Id,
    memo: &mut trees::Memo,
    stats: &mut CopyStats,
    progress: &CopyProgress,
    interrupt: &AtomicBool,
) -> Result<Id> {
    let state = SaverState::default();
    let tree = std::thread::scope(|scope| -> Result<Id> {
        let saver = Saver::start(scope, dst, &state);
        let ctx = trees::Ctx {
            src,
            dst,
            saver: &saver,
            pending: &state.pending,
            progress,
            interrupt,
        };
        let r = match mode {
            CopyMode::SharedIds => ctx.shared(root, &mut memo.seen).map(|()| *root),
            CopyMode::Rekeyed => ctx.rekey(root, &memo.rekeyed),
        };
        // Whatever happened, wait for the queued packs: they are durable and reused next time.
        let finished = saver.finish();
        match (r, finished) {
            (Ok(t), Ok(())) => Ok(t),
            (Err(e), Err(cause)) if e.is_secondary() => Err(cause),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })?;
    let s = &state.stats;
    stats.blobs_added += s.blobs_added.load(Ordering::Relaxed);
    stats.bytes_added += s.bytes_added.load(Ordering::Relaxed);
    stats.bytes_added_raw += s.bytes_added_raw.load(Ordering::Relaxed);
    stats.packs_written += s.packs_written.load(Ordering::Relaxed);
    Ok(tree)
}
