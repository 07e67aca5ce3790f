//! The checker: proves the repository is whole, and when it is not, says which file is damaged,
//! how, and which snapshots and paths inside them the damage reaches.
//!
//! Passes: key files and snapshots decode (their names are the hash of their bytes); the structure
//! walk (`structure`) loads every reachable tree and looks up every referenced blob; the pack pass
//! (`packs`) checks every pack's size and header, and reads the selected packs whole
//! (`--read-data`, `--read-data-subset`, chosen by the local verification record in `verified`);
//! finally, only if anything is damaged, `affected` walks the snapshots again to name the paths.
//! Unreferenced packs (left by an interrupted backup) and stale locks are information, not damage.

mod affected;
mod packs;
mod structure;
pub mod verified;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::pack_path;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::keyfile::KeyFile;
use crate::repo::{Repository, lock};
use crate::snapshot::Snapshot;
pub use verified::ReadData;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The repository file that is damaged (or `data/` for blobs found in no pack).
    pub file: String,
    pub what: String,
    /// `<snapshot short id>:<path>` for every file or directory the damage reaches.
    pub affected: Vec<String>,
    /// Affected paths beyond the first `affected::MAX_AFFECTED`, counted but not listed.
    pub affected_omitted: usize,
}

impl Problem {
    fn new(file: impl Into<String>, what: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            what: what.into(),
            affected: Vec::new(),
            affected_omitted: 0,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    /// References to data blobs in the trees checked (each shared tree counted once).
    pub data_blob_references: usize,
    pub packs: usize,
    /// The packs read in full and checked blob by blob.
    pub packs_read: Vec<String>,
    pub bytes_read: u64,
    pub unreferenced_packs: Vec<String>,
    /// Locks held by other processes, with their age (stale ones say so).
    pub locks: Vec<String>,
    pub problems: Vec<Problem>,
    /// Each binary-log archive's continuity: its gaps and holes (reported loudly, exit 26, but
    /// not damage: the repository holds what it says) and its recovery point.
    pub binlog: Vec<ArchiveContinuity>,
}

/// One archive as `check` reports it (the full picture is `snap mysql timeline`).
#[derive(Debug, Serialize)]
pub struct ArchiveContinuity {
    pub source: String,
    pub gaps: Vec<crate::snapshot::BinlogGap>,
    pub holes: Vec<String>,
    pub recovery_point: Option<crate::database::binlog::timeline::RecoveryPoint>,
}

/// The continuity of every archive in `snapshots`.
fn archives(snapshots: &[(Id, Snapshot)]) -> Vec<ArchiveContinuity> {
    use crate::database::binlog::{Chain, timeline};
    let mut sources: Vec<&str> = snapshots
        .iter()
        .filter_map(|(_, s)| s.binlog.as_ref().map(|b| b.source.as_str()))
        .collect();
    sources.sort();
    sources.dedup();
    sources
        .into_iter()
        .map(|src| {
            let chain = Chain::from_snapshots(snapshots, src);
            let tl = timeline(snapshots, &chain);
            ArchiveContinuity {
                source: src.to_string(),
                gaps: tl.gaps,
                holes: tl.holes,
                recovery_point: tl.recovery_point,
            }
        })
        .collect()
}

/// Live counters for a progress bar: pack bytes to read (known once the packs are listed) and
/// read so far.
#[derive(Default)]
pub struct CheckProgress {
    pub bytes_total: AtomicU64,
    pub bytes_read: AtomicU64,
}

pub fn check(repo: &mut Repository, read: ReadData) -> Result<CheckReport> {
    check_with_progress(repo, read, &CheckProgress::default())
}

pub fn check_with_progress(
    repo: &mut Repository,
    read: ReadData,
    progress: &CheckProgress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut damage = affected::Damage {
        packs: HashMap::new(),
        blobs: HashMap::new(),
    };
    check_keys(repo, &mut report)?;
    check_prune_records(repo, &mut report)?;
    check_audit_records(repo, &mut report)?;
    report.locks = other_locks(repo)?;
    let snapshots = load_snapshots(repo, &mut report)?;
    report.snapshots = snapshots.len();
    report.binlog = archives(&snapshots);

    let walk = structure::walk(repo, &snapshots)?;
    report.trees = walk.trees;
    report.data_blob_references = walk.data_refs;
    for (tree, file, what) in walk.bad_trees {
        damage.blobs.insert(tree, report.problems.len());
        report.problems.push(Problem::new(file, what));
    }
    attribute_missing(repo, walk.missing, &mut report, &mut damage)?;

    let indexed = check_packs(repo, read, &mut report, &mut damage, progress)?;
    let mut unref: Vec<String> = indexed
        .keys()
        .filter(|p| !walk.used_packs.contains(p) && !damage.packs.contains_key(p))
        .map(pack_path)
        .collect();
    unref.sort();
    report.unreferenced_packs = unref;
    affected::attribute(repo, &snapshots, &damage, &mut report.problems)?;
    Ok(report)
}

/// The pack pass (see `packs`), then the verification record; returns the indexed packs.
fn check_packs(
    repo: &mut Repository,
    read: ReadData,
    report: &mut CheckReport,
    damage: &mut affected::Damage,
    progress: &CheckProgress,
) -> Result<HashMap<Id, u64>> {
    let indexed = repo.index().packs()?;
    let present: HashMap<Id, u64> = repo
        .backend()
        .list("data")?
        .into_iter()
        .filter_map(|(p, size)| Some((Id::from_hex(p.rsplit('/').next()?)?, size)))
        .collect();
    let all = packs::all_packs(&indexed, &present);
    report.packs = all.len();
    let mut verified = verified::Verified::load(repo.cache_dir());
    let ids: Vec<Id> = all.iter().map(|p| p.0).collect();
    let to_read: HashSet<Id> = verified.select(&ids, read).into_iter().collect();
    let total: u64 = all
        .iter()
        .filter(|(id, ..)| to_read.contains(id))
        .map(|(_, i, p)| p.or(*i).unwrap_or(0))
        .sum();
    progress.bytes_total.store(total, Ordering::Relaxed);
    let bytes = &progress.bytes_read;
    let outcomes: Vec<(Id, packs::Outcome)> = all
        .par_iter()
        .map(|(id, i, p)| {
            let read = to_read.contains(id);
            (*id, packs::check_pack(repo, id, *i, *p, read, bytes))
        })
        .collect();
    let mut intact = Vec::new();
    for (id, outcome) in outcomes {
        let n = report.problems.len();
        match outcome {
            packs::Outcome::Ok => intact.push(id),
            packs::Outcome::Pack(what) => {
                damage.packs.insert(id, n);
                report.problems.push(Problem::new(pack_path(&id), what));
            }
            packs::Outcome::Blobs(what, blobs) => {
                damage.blobs.extend(blobs.into_iter().map(|b| (b, n)));
                report.problems.push(Problem::new(pack_path(&id), what));
            }
        }
    }
    report.bytes_read = bytes.load(Ordering::Relaxed);
    let mut read_list: Vec<String> = to_read.iter().map(pack_path).collect();
    read_list.sort();
    report.packs_read = read_list;
    if !to_read.is_empty() {
        // Damaged packs are marked so the next partial check reads them first again.
        let intact: HashSet<Id> = intact.into_iter().collect();
        let (ok, bad): (Vec<Id>, Vec<Id>) = to_read.iter().partition(|i| intact.contains(i));
        verified.record(&ok);
        verified.record_damaged(&bad);
        let present_ids: HashSet<Id> = present.keys().copied().collect();
        if let Err(e) = verified.save(&present_ids) {
            repo.notes
                .push(format!("could not save the verification record: {e}"));
        }
    }
    Ok(indexed)
}

/// Every key file must decode and be named by the hash of its bytes (they cannot all be opened:
/// each needs its own password).
fn check_keys(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    for (path, _) in repo.backend().list("keys")? {
        let what = match repo.backend().read(&path) {
            Err(e) => e.to_string(),
            Ok(b) if path.rsplit('/').next().and_then(Id::from_hex) != Some(Id::of_file_bytes(&b)) => {
                "content does not match its name (damaged); its password no longer opens the repository".into()
            }
            Ok(b) => match KeyFile::decode(&b) {
                Ok(_) => continue,
                Err(e) => e.to_string(),
            },
        };
        report.problems.push(Problem::new(path, what));
    }
    Ok(())
}

/// Every prune record is named by its hash and opens (a bad one only delays deletion, but it is
/// damage all the same).
fn check_prune_records(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    use crate::prune::record::{DIR, PruneRecord};
    for (path, _) in repo.backend().list(DIR)? {
        let what = match repo.backend().read(&path) {
            Err(e) => e.to_string(),
            Ok(b)
                if path.rsplit('/').next().and_then(Id::from_hex)
                    != Some(Id::of_file_bytes(&b)) =>
            {
                "content does not match its name (damaged); prune ignores it".into()
            }
            Ok(b) => match PruneRecord::decode(repo.key(), &b) {
                Ok(_) => continue,
                Err(e) => format!("prune record cannot be read ({e}); prune ignores it"),
            },
        };
        report.problems.push(Problem::new(path, what));
    }
    Ok(())
}

/// Every audit record is named by its hash and opens with the master key (`snap audit` skips a
/// damaged one, so check is where it shows).
fn check_audit_records(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    for (path, _) in repo.backend().list(crate::audit::DIR)? {
        if let Err(e) = crate::audit::read_one(repo.backend().as_ref(), repo.key(), &path) {
            let what = match e {
                Error::Corrupt { what, .. } => what,
                e => format!("audit record cannot be read ({e})"),
            };
            report
                .problems
                .push(Problem::new(path, format!("{what}; `snap audit` skips it")));
        }
    }
    Ok(())
}

fn other_locks(repo: &Repository) -> Result<Vec<String>> {
    let me = (crate::hostname(), std::process::id());
    Ok(lock::list_locks(repo.backend().as_ref(), repo.key())?
        .into_iter()
        .filter_map(|(path, info)| match info {
            Some(i) if (i.host.clone(), i.pid) == me => None,
            Some(i) => Some(format!("{path}: {}", i.describe())),
            None => Some(format!("{path}: unreadable lock file")),
        })
        .collect())
}

fn load_snapshots(repo: &Repository, report: &mut CheckReport) -> Result<Vec<(Id, Snapshot)>> {
    let mut out = Vec::new();
    for (path, _) in repo.backend().list("snapshots")? {
        let Some(id) = path.rsplit('/').next().and_then(Id::from_hex) else {
            report
                .problems
                .push(Problem::new(path, "not a snapshot name"));
            continue;
        };
        match repo.load_snapshot(&id) {
            Ok(s) => out.push((id, s)),
            Err(e) => {
                let mut p = Problem::new(path, format!("snapshot cannot be read: {e}"));
                p.affected.push(format!("{}:/", id.short()));
                report.problems.push(p);
            }
        }
    }
    Ok(out)
}

/// Referenced blobs in no pack: those the index knew in a pack that has since vanished are
/// charged to that pack (its tombstone, see `Index`); the rest form one problem.
fn attribute_missing(
    repo: &Repository,
    missing: HashSet<Id>,
    report: &mut CheckReport,
    damage: &mut affected::Damage,
) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let mut left = missing;
    let mut gone: Vec<(Id, Vec<Id>)> = repo.index().tombstones()?.into_iter().collect();
    gone.sort();
    for (pack, blobs) in gone {
        let lost: Vec<Id> = blobs.into_iter().filter(|b| left.remove(b)).collect();
        if lost.is_empty() {
            continue;
        }
        let n = report.problems.len();
        report.problems.push(Problem::new(
            pack_path(&pack),
            format!(
                "is missing: it was indexed, and {} blob(s) referenced by snapshots are in no other pack",
                lost.len()
            ),
        ));
        damage.blobs.extend(lost.into_iter().map(|b| (b, n)));
    }
    if !left.is_empty() {
        let mut ids: Vec<&Id> = left.iter().collect();
        ids.sort();
        let n = report.problems.len();
        report.problems.push(Problem::new(
            "data/",
            format!(
                "{} referenced blob(s) are in no readable pack (first: {})",
                ids.len(),
                ids[0]
            ),
        ));
        damage.blobs.extend(left.into_iter().map(|b| (b, n)));
    }
    Ok(())
}
