//! `prune`: give back the space of packs no snapshot uses, beside running backups and safe at
//! every instant of a crash.
//!
//! Shaped as rustic's two-phase prune, with kopia's rule that nothing is deleted on the evidence
//! of one look:
//!
//! 1. **Mark** (prune lock: shared with backups, exclusive against another prune). List the
//!    snapshots, sync the index (every pack a listed snapshot needs is durable before the
//!    snapshot, so it is indexed now), walk the snapshots ([`used`]) and compute the [`Plan`]
//!    (pure data, [`plan`]). Repack partly used packs ([`repack`]: new packs durable and indexed
//!    first), then write a new prune record ([`record`], `prune/<id>`) with the packs now
//!    unused marked at this time and the recovered ones unmarked. From that record on, every
//!    backup's index (`Repository::sync_index`) refuses to deduplicate against a marked pack.
//! 2. **Sweep** (exclusive lock, taken beside the prune lock and held only for this): only if
//!    some pack is *due* (marked at least `grace` ago). List the snapshots again, sync the index,
//!    walk only the snapshots written since the mark; a due pack one of them uses is recovered,
//!    the rest are written into the record as deleted, then their files are removed and the
//!    index drops them. A backup holds a shared lock for its whole run and re-syncs its index
//!    after taking it, so no backup that could have deduplicated against a due pack is still
//!    running, and every one that finished is among the snapshots just walked.
//!
//! Packs in `data/` that this run could not index are never touched; packs a concurrent backup
//! writes after the mark are not in the plan. A kill at any point leaves either the old record
//! or the new one, packs that are unreferenced (check: information) or already listed deleted
//! (the next prune finishes deleting them).

pub mod plan;
pub mod record;
pub mod repack;
pub mod used;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit;
use crate::backend::pack_path;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::lock::{LockGuard, Operation};

pub use plan::{Limit, Plan, PlanOptions};
use record::{DeletedPack, PruneRecord};
use used::Usage;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub max_unused: Limit,
    pub max_repack: Option<u64>,
    pub grace: Duration,
    pub dry_run: bool,
    /// How long the sweep waits for backups to let it take the exclusive lock.
    pub lock_wait: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: Limit::Percent(5.0),
            max_repack: None,
            grace: Duration::from_secs(24 * 3600),
            dry_run: false,
            lock_wait: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub snapshots: usize,
    pub trees: usize,
    pub plan: Plan,
    pub dry_run: bool,
    pub repacked: repack::Repacked,
    /// Due packs a snapshot written since the mark uses: kept.
    pub recovered_at_sweep: Vec<String>,
    pub deleted: Vec<String>,
    pub bytes_freed: u64,
    pub mark_ms: u64,
    /// `--dry-run`: how long the real run is expected to take (see [`estimate_ms`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// How long the exclusive lock was held (none when nothing was due).
    pub exclusive_lock_ms: Option<u64>,
    /// Why the sweep did not run although packs were due.
    pub deferred: Option<String>,
    pub record: Option<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Snapshot ids and root trees; an unreadable snapshot stops the prune (what it uses is unknown).
fn snapshot_roots(repo: &Repository) -> Result<HashMap<Id, Id>> {
    let mut out = HashMap::new();
    for (path, _) in repo.backend().list("snapshots")? {
        let Some(id) = path.rsplit('/').next().and_then(Id::from_hex) else {
            continue;
        };
        let s = repo.load_snapshot(&id).map_err(|e| {
            e.context("prune needs every snapshot to know what is used; nothing was deleted (run `snap check`)")
        })?;
        out.insert(id, s.tree);
    }
    Ok(out)
}

fn new_record(prev: &PruneRecord) -> PruneRecord {
    PruneRecord {
        generation: prev.generation.saturating_add(1),
        time: chrono::Utc::now().to_rfc3339(),
        host: crate::hostname(),
        marked: Vec::new(),
        deleted: Vec::new(),
    }
}

/// What a real run of `plan` should take, from rates measured now rather than constants: the
/// walk this dry run just did (a real run repeats it), plus the bytes to repack at the read rate
/// of a sample of them (up to 8 MiB of the first pack to repack, read now), counted twice since
/// each is written again. Removing due packs is left out: a dry run writes nothing to measure it
/// by, and it is one unlink (or DELETE) per pack, small beside the walk.
fn estimate_ms(repo: &Repository, plan: &Plan, walk_ms: u64) -> u64 {
    let mut total = walk_ms as f64;
    if let Some(first) = plan.repack.first() {
        let path = crate::backend::pack_path(first);
        let len = repo.backend().size(&path).unwrap_or(0).min(8 << 20);
        let t = Instant::now();
        if len > 0 && repo.backend().read_range(&path, 0, len).is_ok() {
            let secs = t.elapsed().as_secs_f64().max(1e-6);
            let rate = len as f64 / secs;
            total += 2.0 * plan.stats.repack_bytes as f64 / rate * 1000.0;
        }
    }
    total.round() as u64
}

/// Runs prune. The caller holds the `Operation::Prune` lock; the sweep takes the exclusive one.
/// A prune that changed the repository is recorded in the audit log; one that fails part-way
/// is recorded with its error and what it had repacked and deleted by then.
pub fn prune(
    repo: &mut Repository,
    opts: &PruneOptions,
    interrupt: Arc<AtomicBool>,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let r = prune_into(repo, opts, interrupt, &mut report);
    let summary = || audit::Summary {
        packs_added: report.repacked.packs_written as u64,
        bytes_added: report.repacked.bytes_written,
        packs_deleted: report.deleted.len() as u64,
        bytes_deleted: report.bytes_freed,
        note: report.record.as_ref().map(|r| format!("prune record {r}")),
        ..Default::default()
    };
    match r {
        Err(e) if e.is_append_only() => Err(e),
        Err(e) => Err(audit::record_failure(
            repo,
            audit::Action::Prune,
            summary(),
            e,
        )),
        // A dry run, or a prune with nothing to do, changed nothing worth a record.
        Ok(())
            if report.dry_run
                || (report.record.is_none() && report.repacked.packs_written == 0) =>
        {
            Ok(report)
        }
        Ok(()) => {
            audit::record(repo, audit::Action::Prune, summary())?;
            Ok(report)
        }
    }
}

/// [`prune`] itself, filling `report` as it goes (so a failure still tells what was done).
fn prune_into(
    repo: &mut Repository,
    opts: &PruneOptions,
    interrupt: Arc<AtomicBool>,
    report: &mut PruneReport,
) -> Result<()> {
    if !opts.dry_run {
        // Refused before marking or repacking anything; the delete phase's lock refuses too.
        repo.require_full_key("prune packs in", "data/")?;
    }
    let start = Instant::now();
    report.dry_run = opts.dry_run;
    let roots = snapshot_roots(repo)?;
    repo.sync_index()?;
    let records = record::load(repo.backend().as_ref(), repo.key())?;
    repo.notes.extend(records.notes);
    let prev = records.newest.map(|(_, r)| r).unwrap_or_default();
    let mut usage = Usage::default();
    usage.add(repo, roots.values().copied())?;
    report.snapshots = roots.len();
    let infos = repo.index().pack_infos()?;
    let packs: Vec<plan::PackUsage> = infos
        .iter()
        .map(|(id, &(size, blobs))| {
            let u = usage.used.get(id);
            plan::PackUsage {
                id: *id,
                size,
                blobs,
                used_blobs: u.map_or(0, |m| u32::try_from(m.len()).unwrap_or(u32::MAX)),
                used_bytes: u.map_or(0, |m| m.values().map(|l| l.length as u64).sum()),
            }
        })
        .collect();
    let grace_secs = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
    let now = record::now();
    let plan = Plan::compute(
        &packs,
        &prev,
        now,
        &PlanOptions {
            max_unused: opts.max_unused,
            max_repack: opts.max_repack,
            grace_secs,
        },
    );
    report.trees = usage.trees;
    if opts.dry_run {
        report.mark_ms = ms(start.elapsed());
        report.estimate_ms = Some(estimate_ms(repo, &plan, report.mark_ms));
        report.plan = plan;
        return Ok(());
    }
    let sizes: HashMap<Id, u64> = infos.iter().map(|(id, (s, _))| (*id, *s)).collect();
    report.repacked = repack::repack(repo, &plan.repack, &sizes, &mut usage, &interrupt)?;

    // The record of the mark: only after every repacked blob is durable in its new pack.
    let recovered: HashSet<Id> = plan.recover.iter().copied().collect();
    let mut rec = new_record(&prev);
    rec.marked = plan.marks_after(&sizes, now);
    rec.deleted = prev
        .deleted
        .iter()
        .filter(|d| !recovered.contains(&d.pack))
        .filter(|d| {
            infos.contains_key(&d.pack)
                || d.deleted_at.saturating_add(record::DELETED_KEEP_SECS) > now
        })
        .cloned()
        .collect();
    // In pack order, so an unchanged state is recognised and no record is rewritten for it.
    rec.marked.sort_by_key(|m| m.pack);
    rec.deleted.sort_by_key(|d| d.pack);
    let mut before = prev.clone();
    before.marked.sort_by_key(|m| m.pack);
    before.deleted.sort_by_key(|d| d.pack);
    let changed = rec.marked != before.marked || rec.deleted != before.deleted;
    if changed {
        report.record = Some(record::replace(repo.backend().as_ref(), repo.key(), &rec)?);
        repo.sync_index()?;
    } else {
        rec = prev;
    }
    report.mark_ms = ms(start.elapsed());
    if plan.due.is_empty() {
        report.plan = plan;
        return Ok(());
    }
    if interrupt.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    let guard = match LockGuard::escalate(
        repo,
        Operation::PruneDelete,
        interrupt.clone(),
        opts.lock_wait,
    ) {
        Ok(g) => g,
        Err(Error::Locked(why)) => {
            report.deferred = Some(format!(
                "could not take the exclusive lock to delete ({why}; waited up to {}s); the \
                 packs stay marked and the next prune deletes them",
                opts.lock_wait.as_secs()
            ));
            report.plan = plan;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let held = Instant::now();
    let swept = sweep(repo, &plan.due, &roots, &mut usage, rec, report);
    drop(guard);
    report.exclusive_lock_ms = Some(ms(held.elapsed()));
    report.plan = plan;
    // The local index learns of the deletion after the lock is released: it is a cache, and
    // dropping packs scans every blob entry.
    repo.index().remove_packs(&swept?)?;
    repo.sync_index()?;
    Ok(())
}

/// The sweep, under the exclusive lock: see the module doc. Returns the packs deleted.
fn sweep(
    repo: &mut Repository,
    due: &[Id],
    walked: &HashMap<Id, Id>,
    usage: &mut Usage,
    mut rec: PruneRecord,
    report: &mut PruneReport,
) -> Result<HashSet<Id>> {
    let now_roots = snapshot_roots(repo)?;
    repo.sync_index()?;
    let fresh: Vec<Id> = now_roots
        .iter()
        .filter(|(id, _)| !walked.contains_key(id))
        .map(|(_, t)| *t)
        .collect();
    usage.add(repo, fresh)?;
    report.snapshots = now_roots.len();
    report.trees = usage.trees;
    let sizes = repo.index().pack_infos()?;
    let (delete, keep): (Vec<Id>, Vec<Id>) = due
        .iter()
        .filter(|p| sizes.contains_key(p))
        .partition(|p| !usage.is_used(p));
    report.recovered_at_sweep = keep.iter().map(pack_path).collect();
    let now = record::now();
    let gone: HashSet<Id> = delete.iter().copied().collect();
    let kept: HashSet<Id> = keep.iter().copied().collect();
    let prev = rec.clone();
    rec = new_record(&prev);
    rec.marked = prev
        .marked
        .into_iter()
        .filter(|m| !gone.contains(&m.pack) && !kept.contains(&m.pack))
        .collect();
    rec.deleted = prev
        .deleted
        .into_iter()
        .filter(|d| !gone.contains(&d.pack) && !kept.contains(&d.pack))
        .collect();
    rec.deleted.extend(delete.iter().map(|p| DeletedPack {
        pack: *p,
        deleted_at: now,
    }));
    rec.deleted.sort_by_key(|d| d.pack);
    // The record says "deleted" before any file goes, so a crash between leaves packs that
    // every reader already treats as gone and the next prune finishes.
    report.record = Some(record::replace(repo.backend().as_ref(), repo.key(), &rec)?);
    for p in &delete {
        repo.backend().remove(&pack_path(p))?;
        report.bytes_freed = report
            .bytes_freed
            .saturating_add(sizes.get(p).map_or(0, |s| s.0));
        report.deleted.push(pack_path(p));
    }
    Ok(gone)
}
