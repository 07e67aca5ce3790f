//! `snap mysql consolidate`: the seed's "merge into a new full". An incremental or differential
//! database snapshot is restored (its full, then the archived range replayed to its end) into a
//! scratch server, and the result is dumped as a new full that records the archived server's
//! name and the range's end coordinates. Replaying a long chain is then unnecessary: a restore
//! to any later moment starts from the new full, and retention may forget the old full and its
//! increments once nothing kept needs them ([`crate::policy::needs`]).
//!
//! Why a scratch server and a real replay, not a merge of dump streams with row events: the
//! result must be exactly what a point-in-time restore gives (DDL, triggers, statement-based
//! events, temporary tables across rotations), and the replay already does that; a second
//! implementation of event semantics would be a second source of truth.
//!
//! Verified before it is kept: the new full is loaded back into the scratch server under other
//! names (the loader checks every table's rows and checksum against the new manifest), and each
//! database is compared with the replayed one by an independent judge
//! ([`crate::mysql::fingerprint`]: `CHECKSUM TABLE … EXTENDED` and every `SHOW CREATE`). A
//! mismatch removes the new snapshot and fails with [`Error::ConsolidateMismatch`]. Every database
//! the run created on the scratch server is dropped again, whatever happened; a scratch server
//! that already holds one of the databases is refused before anything is touched (so the live
//! server can never be mistaken for a scratch one).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::pitr::{self, PitrOptions, Target};
use crate::archiver::{self, BackupOptions, BackupProgress, MysqlSource, RecordAs};
use crate::database::{self, DbRestoreOptions};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::fingerprint;
use crate::mysql::restore::{self as load, RestoreOptions};
use crate::mysql::schema::Selection;
use crate::mysql::{DumpOptions, MysqlTarget};
use crate::repo::Repository;
use crate::snapshot::BackupKind;

/// The tag every consolidated full carries.
pub const CONSOLIDATED_TAG: &str = "consolidated";

#[derive(Debug, Clone)]
pub struct ConsolidateOptions {
    /// A server holding none of the snapshot's databases; the replay and the checks run there.
    pub scratch: MysqlTarget,
    pub threads: usize,
    pub host: Option<String>,
    /// Where the replay's reassembled binlog files go.
    pub work_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct ConsolidateOutcome {
    /// The new full.
    pub snapshot: String,
    /// The increment it consolidates, and the full that increment rests on.
    pub consolidates: String,
    pub base: String,
    /// Its coordinates: the range's end.
    pub binlog_file: String,
    pub binlog_position: u64,
    pub gtid: Option<String>,
    pub transactions_replayed: u64,
    pub databases: Vec<String>,
    pub tables_verified: usize,
    pub replay_ms: u64,
    pub duration_ms: u64,
}

/// Consolidates database snapshot `inc` (see the module doc).
pub fn consolidate(
    repo: &mut Repository,
    inc: &Id,
    opts: &ConsolidateOptions,
    interrupt: &AtomicBool,
) -> Result<ConsolidateOutcome> {
    let started = std::time::Instant::now();
    let snap = repo.load_snapshot(inc)?;
    let Some(m) = snap.mysql.clone() else {
        return Err(Error::Usage(format!(
            "snapshot {} holds no database backup; consolidate takes an incremental or \
             differential one",
            inc.short()
        )));
    };
    let (Some(file), Some(pos), Some(base), false) = (
        m.binlog_file.clone(),
        m.binlog_position,
        m.base,
        m.kind.is_full(),
    ) else {
        return Err(Error::Usage(format!(
            "snapshot {} is already a full database backup; consolidate takes an incremental \
             or differential one",
            inc.short()
        )));
    };
    // the range ends at `pos`, where the next transaction starts: stop before it
    let target = Target::Position(file.clone(), pos);
    let plan = pitr::plan(repo, &m.source, &target, true, Some(base))?;
    let base_snap = repo.load_snapshot(&base)?;
    let manifest = database::SnapshotStreams::new(repo, &base, &base_snap)?.manifest()?;
    let dbs = database::target_databases(&manifest, &RestoreOptions::default());
    let busy = database::existing_databases(&opts.scratch, &dbs)?;
    if !busy.is_empty() {
        return Err(Error::ScratchNotEmpty {
            server: opts.scratch.to_string(),
            databases: busy.join(", "),
        });
    }
    let copies: Vec<(String, String)> = dbs
        .iter()
        .map(|d| (d.clone(), format!("snapconsolidate_{}_{d}", inc.short())))
        .collect();
    let made = run(repo, inc, &snap, &m, plan, opts, &dbs, &copies, interrupt);
    let dropped = database::drop_databases(
        &opts.scratch,
        dbs.iter()
            .chain(copies.iter().map(|c| &c.1))
            .map(String::as_str),
    );
    let mut out = made?;
    dropped?;
    out.duration_ms = started.elapsed().as_millis() as u64;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run(
    repo: &mut Repository,
    inc: &Id,
    snap: &crate::snapshot::Snapshot,
    m: &crate::snapshot::MysqlSummary,
    plan: pitr::PitrPlan,
    opts: &ConsolidateOptions,
    dbs: &[String],
    copies: &[(String, String)],
    interrupt: &AtomicBool,
) -> Result<ConsolidateOutcome> {
    let (Some(file), Some(pos), Some(base)) = (m.binlog_file.clone(), m.binlog_position, m.base)
    else {
        return Err(Error::Usage("the snapshot names no range end".into()));
    };
    let transactions = plan.transactions;
    let pitr_opts = PitrOptions {
        target: Target::Position(file.clone(), pos),
        exclusive: true,
        restore: DbRestoreOptions {
            target: opts.scratch.clone(),
            load: RestoreOptions {
                databases: dbs.to_vec(),
                threads: opts.threads.max(1),
                ..RestoreOptions::default()
            },
            host: opts.host.clone(),
        },
        work_dir: opts.work_dir.clone(),
        scratch: true,
    };
    let replayed = pitr::restore_to(repo, plan, &m.source, &pitr_opts, interrupt)
        .map_err(|e| e.context("restoring the increment into the scratch server"))?;
    // the state as of the increment's end: recorded at its end time, so a restore to a time
    // never starts from a full newer than the moment asked for
    let time = chrono::DateTime::parse_from_rfc3339(&snap.time_end)
        .ok()
        .or_else(|| snap.time_parsed());
    let backup = BackupOptions {
        paths: Vec::new(),
        includes: Vec::new(),
        excludes: Vec::new(),
        tags: vec![CONSOLIDATED_TAG.into()],
        host: Some(snap.host.clone()),
        kind: BackupKind::Full,
        mysql: Some(MysqlSource {
            target: opts.scratch.clone(),
            options: DumpOptions {
                selection: Selection {
                    databases: dbs.to_vec(),
                    ..Selection::default()
                },
                threads: opts.threads.max(1),
                grants: false,
                ..DumpOptions::default()
            },
            record_as: Some(RecordAs {
                source: m.source.clone(),
                binlog_file: file.clone(),
                binlog_position: pos,
                gtid: m.gtid.clone(),
                consolidates: *inc,
            }),
        }),
        mysql_prebuilt: None,
        time,
    };
    let made = archiver::backup(repo, &backup, &BackupProgress::default(), interrupt)
        .map_err(|e| e.context("dumping the scratch server as the new full"))?;
    let checked = verify(repo, &made.id, opts, copies);
    let tables = match checked {
        Ok(n) => n,
        Err(e) => {
            // nothing may rely on a full that is not what the replay gave
            let removed = repo.remove_snapshot(&made.id);
            let e = e.context(format!(
                "verifying the new full {} (it was removed again)",
                made.id.short()
            ));
            return Err(match removed {
                Ok(()) => e,
                Err(r) => e.context(format!("removing it failed too: {r}")),
            });
        }
    };
    Ok(ConsolidateOutcome {
        snapshot: made.id.to_hex(),
        consolidates: inc.to_hex(),
        base: base.to_hex(),
        binlog_file: file,
        binlog_position: pos,
        gtid: m.gtid.clone(),
        transactions_replayed: transactions,
        databases: dbs.to_vec(),
        tables_verified: tables,
        replay_ms: replayed.replay_ms,
        duration_ms: 0,
    })
}

/// Loads the new full under the `copies` names (the loader compares rows and checksums with its
/// manifest) and compares each copy with the replayed database; the number of tables checked.
fn verify(
    repo: &Repository,
    new: &Id,
    opts: &ConsolidateOptions,
    copies: &[(String, String)],
) -> Result<usize> {
    let snap = repo.load_snapshot(new)?;
    let streams = database::SnapshotStreams::new(repo, new, &snap)?;
    let load_opts = RestoreOptions {
        renames: copies.to_vec(),
        threads: opts.threads.max(1),
        replace: true,
        verify: true,
        ..RestoreOptions::default()
    };
    let report = load::restore(&opts.scratch, &streams, &load_opts)?.into_result()?;
    let mut conn = opts.scratch.connect()?;
    for (db, copy) in copies {
        let a = fingerprint::fingerprint(&mut conn, db)?;
        let b = fingerprint::fingerprint(&mut conn, copy)?;
        let diff = fingerprint::diff(&a, &b);
        if !diff.is_empty() {
            return Err(Error::ConsolidateMismatch {
                database: db.clone(),
                differences: diff.len(),
                first: diff.into_iter().next().unwrap_or_default(),
            });
        }
    }
    Ok(report.tables.len())
}
