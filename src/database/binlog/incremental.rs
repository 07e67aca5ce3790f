//! `snap backup --mysql --incremental | --differential`: a database backup that is a range of
//! binary logs instead of a dump. Incremental: from the end of the previous database backup of
//! the same server (a full or an incremental); differential: from the last full. The snapshot
//! names the full it depends on (`mysql.base`), the backup it continues (`mysql.since`), and
//! its exact start (`mysql.binlog_start`) and end (`mysql.binlog_file`/`binlog_position`).
//!
//! The range's bytes are the archive's: a one-shot archive run first brings the archive up to
//! the server's current end, then the archived file nodes covering the range are placed under
//! `mysql/binlog/<file>/<start>` in the new snapshot without being read or stored again (their
//! blobs are already in the repository), and the snapshot carries a binlog record for them.
//! So the increment stays restorable even after the archive snapshots it came from are
//! forgotten, and costs no space while they are kept.
//!
//! Without an earlier database backup to continue, or when the archive has a gap on the way,
//! the database part is a full dump, and is recorded as one.

use std::sync::atomic::AtomicBool;

use super::archive::{self, ArchiveOptions, source_name};
use super::chain::Chain;
use crate::archiver::{self, BackupOptions, BackupOutcome, BackupProgress, MYSQL_DIR, Prebuilt};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::{
    BINLOG_TAG, BackupKind, BinlogRecord, BinlogSegment, MysqlSummary, PRE_RESTORE_TAG, Snapshot,
};

/// What happened besides the snapshot, for the front end to show.
#[derive(Debug, Default)]
pub struct DbBackupNotes {
    pub notes: Vec<String>,
}

/// The earlier database backup a new one of `kind` continues: its id, snapshot and the full it
/// rests on.
fn previous<'a>(
    all: &'a [(Id, Snapshot)],
    source: &str,
    kind: BackupKind,
) -> Option<(Id, &'a Snapshot, Id)> {
    all.iter()
        .rev()
        .filter(|(_, s)| {
            !s.tags
                .iter()
                .any(|t| t == PRE_RESTORE_TAG || t == BINLOG_TAG)
        })
        .filter_map(|(id, s)| Some((*id, s, s.mysql.as_ref()?)))
        .filter(|(_, _, m)| m.source == source && m.binlog_file.is_some())
        .find(|(_, _, m)| kind != BackupKind::Differential || m.kind.is_full())
        .and_then(|(id, s, m)| {
            let base = if m.kind.is_full() { Some(id) } else { m.base }?;
            Some((id, s, base))
        })
}

/// Runs a backup whose database part is `db_kind` (see the module doc); `opts.mysql` names
/// the server.
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    db_kind: BackupKind,
    progress: &BackupProgress,
    interrupt: &AtomicBool,
) -> Result<(BackupOutcome, DbBackupNotes)> {
    let mut notes = DbBackupNotes::default();
    let Some(src) = opts.mysql.as_ref().filter(|_| !db_kind.is_full()) else {
        return Ok((archiver::backup(repo, opts, progress, interrupt)?, notes));
    };
    let source = source_name(&src.target);
    match range(repo, opts, src, db_kind, &source, interrupt) {
        Ok(Some(pre)) => {
            let o = BackupOptions {
                paths: opts.paths.clone(),
                includes: opts.includes.clone(),
                excludes: opts.excludes.clone(),
                tags: opts.tags.clone(),
                host: opts.host.clone(),
                kind: opts.kind,
                mysql: None,
                mysql_prebuilt: Some(pre),
                time: opts.time,
            };
            Ok((archiver::backup(repo, &o, progress, interrupt)?, notes))
        }
        Ok(None) => {
            notes.notes.push(format!(
                "no earlier database backup of {source} to continue: the database part is a \
                 full dump"
            ));
            Ok((archiver::backup(repo, opts, progress, interrupt)?, notes))
        }
        Err(e @ (Error::ArchiveGap { .. } | Error::NotRecoverable { .. })) => {
            notes.notes.push(format!(
                "{e}: the database part is a full dump instead of a binary-log range"
            ));
            Ok((archiver::backup(repo, opts, progress, interrupt)?, notes))
        }
        Err(e) => Err(e),
    }
}

/// The prebuilt database part, or `None` when there is nothing to continue.
fn range(
    repo: &mut Repository,
    opts: &BackupOptions,
    src: &crate::archiver::MysqlSource,
    db_kind: BackupKind,
    source: &str,
    interrupt: &AtomicBool,
) -> Result<Option<Prebuilt>> {
    let started = std::time::Instant::now();
    let all = repo.snapshots()?;
    let Some((since, prev, base)) = previous(&all, source, db_kind) else {
        return Ok(None);
    };
    let (Some(m), since, base) = (prev.mysql.clone(), since, base) else {
        return Ok(None);
    };
    let (Some(start_file), Some(start_pos)) = (m.binlog_file.clone(), m.binlog_position) else {
        return Ok(None);
    };
    let arch = ArchiveOptions {
        target: src.target.clone(),
        follow: false,
        flush_every: std::time::Duration::from_secs(10),
        replica_id: 0,
        host: opts.host.clone(),
        work_dir: repo.cache_dir().join("work"),
        name: None,
        lock_per_flush: None,
    };
    let report = archive::archive(repo, &arch, interrupt)?;
    if let Some(g) = report.gaps.first() {
        return Err(Error::ArchiveGap {
            count: report.gaps.len(),
            first: format!("{} before {}: {}", g.kind, g.before, g.detail),
        });
    }
    let all = repo.snapshots()?;
    let chain = Chain::from_snapshots(&all, source);
    let Some(tip) = chain.tip().cloned() else {
        return Ok(None);
    };
    let (end_file, end_pos) = (tip.seg.file.clone(), tip.seg.end);
    chain
        .continuous(&start_file, &end_file)
        .map_err(|why| Error::NotRecoverable {
            target: format!("{end_file}:{end_pos}"),
            why: format!("the archive has a gap after {start_file}:{start_pos}: {why}"),
            recoverable: "-".into(),
        })?;
    let mut streams = Vec::new();
    let mut segments: Vec<BinlogSegment> = Vec::new();
    let mut bytes = 0u64;
    for f in chain.files_between(&start_file, &end_file) {
        for r in chain.ranges(f).unwrap_or_default() {
            // the start file whole, from its magic and format description: replay decodes from
            // there, and the snapshot must not depend on the archive for it
            let mut node = repo
                .find_path(&r.tree, r.seg.path.as_bytes())?
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("snapshot {}", r.snapshot.short()),
                        format!("names {} but its tree has no such file", r.seg.path),
                    )
                })?;
            let name = r.seg.start.to_string();
            node.name = name.clone().into_bytes();
            streams.push((format!("binlog/{f}/{name}"), node));
            let mut seg = r.seg.clone();
            seg.path = format!("{MYSQL_DIR}/binlog/{f}/{name}");
            bytes += seg.end - seg.start;
            segments.push(seg);
        }
    }
    let summary = MysqlSummary {
        source: source.to_string(),
        server: m.server.clone(),
        binlog_file: Some(end_file),
        binlog_position: Some(end_pos),
        gtid: Some(tip.seg.gtid_state.clone()),
        duration_ms: started.elapsed().as_millis() as u64,
        bytes,
        kind: db_kind,
        base: Some(base),
        since: Some(since),
        binlog_start: Some(format!("{start_file}:{start_pos}")),
        ..MysqlSummary::default()
    };
    let record = BinlogRecord {
        source: source.to_string(),
        server_id: chain.server_id.unwrap_or(0),
        server_uuid: None,
        segments,
        gaps: Vec::new(),
    };
    Ok(Some(Prebuilt {
        streams,
        summary,
        binlog: Some(record),
    }))
}
