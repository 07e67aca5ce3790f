//! Restore to a point: the newest full dump before the target, loaded with the full restore's
//! safety net, then the archived events from the dump's recorded coordinates to the target
//! replayed in one session.
//!
//! Every target is resolved to a byte position at a transaction boundary from the archive's own
//! bytes before anything is touched:
//! - `--until-position FILE:POS`: the transaction containing byte POS (an event's position, as
//!   `SHOW BINLOG EVENTS` lists them) is the last one applied; `--exclusive` stops before it. A
//!   POS between transactions stops there.
//! - `--until-gtid D-S-N`: that transaction is the last one applied; `--exclusive` stops before.
//! - `--until TIME`: every transaction that committed at or before TIME (binlog timestamps are
//!   whole seconds) is applied; `--exclusive`: strictly before TIME.
//!
//! A target past the archive's end, inside a gap, or before every usable full is refused with
//! [`Error::NotRecoverable`] naming the newest recoverable moment; so is a target that would
//! need a replay across a gap. A restore never changes a database it did not save first and
//! load: when the server holds other databases than those loaded from the full (all of the
//! full's, or those `--database DB` names), only the loaded ones receive events (see
//! [`replay_filters`]). `--table` and `--rename` are refused, as the events name the original
//! tables.
//! If loading, verification or replay fails, the pre-restore
//! snapshot is put back (see [`crate::database::restore`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::chain::Chain;
use super::timeline::{self, pos_key, time_str};
use crate::database::{self, DbRestoreOptions};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::binlog::events::{self, FileReader, Gtid};
use crate::mysql::binlog::replay;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone)]
pub enum Target {
    /// Seconds since the epoch (UTC).
    Time(i64),
    Position(String, u64),
    Gtid(Gtid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(t) => match chrono::DateTime::from_timestamp(*t, 0) {
                Some(d) => write!(
                    f,
                    "{}",
                    d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => write!(f, "{t}"),
            },
            Target::Position(file, pos) => write!(f, "{file}:{pos}"),
            Target::Gtid(g) => write!(f, "GTID {g}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PitrOptions {
    pub target: Target,
    pub exclusive: bool,
    pub restore: DbRestoreOptions,
    /// Where the replay's private working files go (the reassembled binlog files).
    pub work_dir: PathBuf,
    /// The target is a scratch server (consolidate): its other databases may be ignored.
    pub scratch: bool,
}

/// What a restore to a point does, before it does it.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    pub target: String,
    pub full: String,
    pub full_time: String,
    /// Replay from here (the full's coordinates) ...
    pub from: String,
    /// ... to here (exclusive byte position in `to_file`).
    pub to: String,
    pub files: Vec<String>,
    pub events: u64,
    pub transactions: u64,
    /// The last transaction applied (none: the full alone is the target).
    pub last_gtid: Option<String>,
    pub last_time: Option<String>,
    #[serde(skip)]
    full_id: Id,
    #[serde(skip)]
    range: (String, u64, String, u64),
}

#[derive(Debug, Serialize)]
pub struct PitrOutcome {
    pub plan: PitrPlan,
    pub restore: database::DbRestoreOutcome,
    pub sql_bytes: u64,
    pub replay_ms: u64,
}

fn refuse(target: &Target, why: impl Into<String>, tl: &timeline::Timeline) -> Error {
    let recoverable = match &tl.recovery_point {
        Some(r) => format!(
            "{} ({}, GTID state {})",
            r.time.clone().unwrap_or_else(|| "?".into()),
            r.position,
            r.gtid_state
        ),
        None => "none (no full backup lies in the archive)".into(),
    };
    Error::NotRecoverable {
        target: target.to_string(),
        why: why.into(),
        recoverable,
    }
}

/// Transactions of a whole archived file.
fn file_trx(chain: &Chain, repo: &Repository, file: &str) -> Result<(Vec<events::Trx>, Vec<u8>)> {
    let bytes = chain.read_file(repo, file)?;
    let (trx, _) =
        events::transactions(file, &bytes).map_err(|e| Error::BinlogFormat(e.to_string()))?;
    Ok((trx, bytes))
}

/// Where the replay stops (exclusive end position in a file) and the last transaction applied.
fn resolve(
    chain: &Chain,
    repo: &Repository,
    target: &Target,
    exclusive: bool,
    tl: &timeline::Timeline,
) -> Result<(String, u64)> {
    let names: Vec<String> = chain.files.iter().map(|(n, _)| n.clone()).collect();
    let Some(tip) = chain.tip() else {
        return Err(refuse(target, "the archive is empty", tl));
    };
    match target {
        Target::Position(file, pos) => {
            let end = chain.end_of(file);
            if !names.contains(file) || *pos > end || *pos < 4 {
                return Err(refuse(
                    target,
                    format!("{file}:{pos} is not in the archive (it holds {file} to byte {end})"),
                    tl,
                ));
            }
            let (trx, _) = file_trx(chain, repo, file)?;
            match trx.iter().find(|t| t.start <= *pos && *pos < t.end) {
                Some(t) if exclusive => Ok((file.clone(), t.start)),
                Some(t) => Ok((file.clone(), t.end)),
                None => Ok((file.clone(), *pos)),
            }
        }
        Target::Gtid(g) => {
            for f in &names {
                let reaches = chain
                    .ranges(f)
                    .and_then(|r| r.last())
                    .map(|s| super::archive::parse_state(&s.seg.gtid_state))
                    .and_then(|st| st.get(&(g.domain, g.server)).copied())
                    .is_some_and(|seq| seq >= g.seq);
                if !reaches {
                    continue;
                }
                let (trx, _) = file_trx(chain, repo, f)?;
                return match trx.iter().find(|t| t.gtid == *g) {
                    Some(t) if exclusive => Ok((f.clone(), t.start)),
                    Some(t) => Ok((f.clone(), t.end)),
                    None => Err(refuse(
                        target,
                        format!("{g} is not in the archive (the archive passes it in {f})"),
                        tl,
                    )),
                };
            }
            Err(refuse(target, format!("{g} is past the archive's end"), tl))
        }
        Target::Time(t) => {
            let last = chain
                .files
                .iter()
                .flat_map(|(_, r)| r.iter())
                .filter_map(|s| s.seg.last_time)
                .max()
                .unwrap_or(0);
            if *t > i64::from(last) {
                return Err(refuse(
                    target,
                    format!(
                        "it is past the archive's end (last event at {})",
                        time_str(last)
                    ),
                    tl,
                ));
            }
            // the first transaction past the target is where the replay stops
            let past = |c: i64| if exclusive { c >= *t } else { c > *t };
            for f in &names {
                let file_last = chain
                    .ranges(f)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s.seg.last_time)
                    .max();
                if file_last.is_none_or(|l| !past(i64::from(l))) {
                    continue;
                }
                let (trx, _) = file_trx(chain, repo, f)?;
                if let Some(x) = trx.iter().find(|x| past(i64::from(x.time))) {
                    return Ok((f.clone(), x.start));
                }
            }
            Ok((tip.seg.file.clone(), tip.seg.end))
        }
    }
}

/// Plans a restore to `target` from the archive of `source`; `force_full` names the full to
/// start from (an incremental snapshot's base) instead of the newest one before the target.
pub fn plan(
    repo: &mut Repository,
    source: &str,
    target: &Target,
    exclusive: bool,
    force_full: Option<Id>,
) -> Result<PitrPlan> {
    let all = repo.snapshots()?;
    let chain = Chain::from_snapshots(&all, source);
    let tl = timeline::timeline(&all, &chain);
    let (cut_file, cut) = resolve(&chain, repo, target, exclusive, &tl)?;
    let full = newest_full(&all, &chain, &cut_file, cut, target, force_full).ok_or_else(|| {
        refuse(
            target,
            "no full backup with binlog coordinates lies in the archive before it",
            &tl,
        )
    })?;
    let (full_id, full_snap, ff, fp) = full;
    if let Err(why) = chain.continuous(&ff, &cut_file) {
        return Err(refuse(
            target,
            format!("the archive has a gap on the way: {why}"),
            &tl,
        ));
    }
    // count what will be applied, and name the last transaction
    let files: Vec<String> = chain
        .files_between(&ff, &cut_file)
        .into_iter()
        .map(str::to_string)
        .collect();
    let (mut evs, mut trxs, mut last) = (0u64, 0u64, None::<events::Trx>);
    for f in &files {
        let bytes = chain.read_file(repo, f)?;
        let mut r = FileReader::new(f);
        let (list, _) = r
            .read(&bytes)
            .map_err(|e| Error::BinlogFormat(e.to_string()))?;
        for e in list {
            let lo = if *f == ff { fp } else { 0 };
            let hi = if *f == cut_file { cut } else { u64::MAX };
            if e.at >= lo && e.end() <= hi {
                evs += 1;
                if let Some(t) = e.committed.filter(|t| t.start >= lo) {
                    trxs += 1;
                    last = Some(t);
                }
            }
        }
    }
    Ok(PitrPlan {
        target: target.to_string(),
        full: full_id.to_hex(),
        full_time: full_snap.time.clone(),
        from: format!("{ff}:{fp}"),
        to: format!("{cut_file}:{cut}"),
        files,
        events: evs,
        transactions: trxs,
        last_gtid: last.as_ref().map(|t| t.gtid.to_string()),
        last_time: last.as_ref().map(|t| time_str(t.time)),
        full_id,
        range: (ff, fp, cut_file, cut),
    })
}

/// The newest full whose coordinates are at or before the cut (and, for a time target, whose
/// dump started at or before it).
fn newest_full(
    all: &[(Id, Snapshot)],
    chain: &Chain,
    cut_file: &str,
    cut: u64,
    target: &Target,
    force_full: Option<Id>,
) -> Option<(Id, Snapshot, String, u64)> {
    timeline::fulls(all)
        .into_iter()
        .rev()
        .find(|(id, s, f, p)| {
            force_full.is_none_or(|want| want == *id)
                && chain.ranges(f).is_some()
                && *p <= chain.end_of(f)
                && pos_key(f, *p) <= pos_key(cut_file, cut)
                && match target {
                    Target::Time(t) => s.time_parsed().is_none_or(|st| st.timestamp() <= *t),
                    _ => true,
                }
        })
}

/// Which databases' events the replay applies, one session each (`None`: all, in one session).
///
/// A restore must not change a database it did not load (and save first). So the range's
/// events are looked at before anything changes: the database of every row event (its table
/// map), every statement's default database, and, for a statement run without one, the
/// databases its text names as `db.` or `` `db`. ``.
/// - Nothing in the range touches another database on the target: every event is applied in
///   one session (databases the range creates are created too).
/// - Something does: only the loaded databases' events are applied (the decoder's
///   `--database`, one session per database). The decoder attributes a statement to its
///   default database, as replication's filters do, so if the range also holds a statement
///   without one it could be dropped from a loaded database: refused, before anything changes.
///   On a `scratch` server (consolidate) its other databases do not matter: every event is
///   applied, and one for a database the full does not hold fails the replay loudly.
///
/// Like replication filters, a statement whose default database is a loaded one but which
/// names another (`USE a; UPDATE b.t ...`) is applied as its default database says.
fn replay_filters(
    target: &crate::mysql::MysqlTarget,
    restored: &[String],
    plan: &PitrPlan,
    paths: &[PathBuf],
    scratch: bool,
) -> Result<Vec<Option<String>>> {
    const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];
    let others: Vec<String> = database::all_databases(target)?
        .into_iter()
        .filter(|d| !SYSTEM.contains(&d.as_str()) && !restored.contains(d))
        .collect();
    if others.is_empty() {
        return Ok(vec![None]);
    }
    let names = |text: &str, db: &str| {
        let t = text.to_ascii_lowercase();
        let d = db.to_ascii_lowercase();
        t.contains(&format!("{d}.")) || t.contains(&format!("`{d}`."))
    };
    let (ff, fp, cf, cut) = &plan.range;
    let (mut foreign, mut unattributed) = (None::<String>, None::<String>);
    for (f, p) in plan.files.iter().zip(paths) {
        let bytes = std::fs::read(p).map_err(|e| Error::io("reading", p, e))?;
        let (list, _) = FileReader::new(f)
            .read(&bytes)
            .map_err(|e| Error::BinlogFormat(e.to_string()))?;
        let lo = if f == ff { *fp } else { 0 };
        let hi = if f == cf { *cut } else { u64::MAX };
        for e in list.iter().filter(|e| e.at >= lo && e.end() <= hi) {
            let at = || format!("{f}:{}", e.at);
            let db = e.table_db.as_deref().or(e.query_db.as_deref());
            if let Some(d) = db.filter(|d| others.iter().any(|o| o == d)) {
                foreign.get_or_insert_with(|| format!("{d} at {}", at()));
            }
            if let Some(t) = &e.query_text {
                if let Some(o) = others.iter().find(|o| names(t, o)) {
                    foreign.get_or_insert_with(|| format!("{o} at {}", at()));
                }
                unattributed.get_or_insert_with(at);
            }
        }
    }
    match (foreign, unattributed) {
        (None, _) => Ok(vec![None]),
        (Some(_), None) => Ok(restored.iter().cloned().map(Some).collect()),
        (Some(_), Some(_)) if scratch => Ok(vec![None]),
        (Some(other), Some(at)) => Err(Error::NotRecoverable {
            target: plan.target.clone(),
            why: format!(
                "the range changes another database on the server ({other}), so only the \
                 restored databases' events may be applied, but it also holds a statement run \
                 without a default database ({at}), which that filter cannot attribute"
            ),
            recoverable: "any moment, into a server without the other databases (--to URL), \
                          or restoring every database they belong to"
                .into(),
        }),
    }
}

/// Restores to the planned point (see the module doc).
pub fn restore_to(
    repo: &mut Repository,
    plan: PitrPlan,
    source: &str,
    opts: &PitrOptions,
    interrupt: &AtomicBool,
) -> Result<PitrOutcome> {
    if !opts.restore.load.tables.is_empty() || !opts.restore.load.renames.is_empty() {
        return Err(Error::Usage(
            "a restore to a point in time takes whole databases under their own names \
             (--database), not --table or --rename: the replay applies each database's events \
             as the binary log names them"
                .into(),
        ));
    }
    let all = repo.snapshots()?;
    let chain = Chain::from_snapshots(&all, source);
    // reassemble the files first: a repository problem must stop us before the server changes
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| Error::io("creating replay work directory", &opts.work_dir, e))?;
    let work = tempfile::Builder::new()
        .prefix("replay-")
        .tempdir_in(&opts.work_dir)
        .map_err(|e| Error::io("creating replay work directory", &opts.work_dir, e))?;
    let mut paths = Vec::new();
    for f in &plan.files {
        let p = work.path().join(f);
        let mut out = std::fs::File::create(&p).map_err(|e| Error::io("writing", &p, e))?;
        chain.write_file(repo, f, &mut out)?;
        paths.push(p);
    }
    let snap = repo.load_snapshot(&plan.full_id)?;
    let manifest = database::SnapshotStreams::new(repo, &plan.full_id, &snap)?.manifest()?;
    let targets = database::target_databases(&manifest, &opts.restore.load);
    let filters = replay_filters(&opts.restore.target, &targets, &plan, &paths, opts.scratch)?;
    let restored = database::restore(repo, &plan.full_id, &opts.restore, interrupt)?;
    let (ff, fp, cf, cut) = plan.range.clone();
    let started = std::time::Instant::now();
    let replayed = if ff == cf && fp >= cut {
        Ok(replay::ReplayStats::default())
    } else {
        filters.into_iter().try_fold(
            replay::ReplayStats::default(),
            |acc, database| -> Result<_> {
                let range = replay::Range {
                    files: paths.clone(),
                    start: fp,
                    stop: Some(cut),
                    database,
                };
                let s = replay::replay(&opts.restore.target, &range, work.path())?;
                Ok(replay::ReplayStats {
                    sql_bytes: acc.sql_bytes + s.sql_bytes,
                })
            },
        )
    };
    match replayed {
        Ok(stats) => Ok(PitrOutcome {
            plan,
            restore: restored,
            sql_bytes: stats.sql_bytes,
            replay_ms: started.elapsed().as_millis() as u64,
        }),
        Err(e) => {
            let pre = restored.pre_restore.as_deref().and_then(Id::from_hex);
            Err(database::rollback(
                repo,
                pre,
                &opts.restore.target,
                &targets,
                e.context("replaying archived binary logs after loading the full"),
            ))
        }
    }
}
