//! The verification drill: proves a snapshot restores, with numbers.
//!
//! The database part is loaded into scratch databases (`snapverify_<snapshot>_<db>`) on a scratch
//! server, and every table's row count, checksum and sampled rows (chosen by primary key at
//! backup time, their hashes recorded in the manifest) are compared with what the backup
//! recorded. The file part is restored into a temporary directory with `--verify` semantics
//! (every blob re-read and id-checked after writing). The scratch databases and directory are
//! removed whatever happens. The outcome is a report a human reads (text, Markdown) and a script
//! reads (JSON); a failed drill is an error, so the caller exits non-zero and raises its alert.

use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::SnapshotStreams;
use crate::archiver::MYSQL_DIR;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::MysqlTarget;
use crate::mysql::StreamSource;
use crate::mysql::restore::{self as load, RestoreOptions, TableCheck};
use crate::repo::Repository;
use crate::restorer::{self, RestoreProgress};

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Scratch server for the database part; `None` skips it (a files-only snapshot).
    pub scratch: Option<MysqlTarget>,
    /// Where the file part is restored (a temporary directory under it).
    pub scratch_dir: std::path::PathBuf,
    pub threads: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct DrillReport {
    pub snapshot: String,
    pub time: String,
    pub ok: bool,
    pub database: Option<DatabaseDrill>,
    pub files: Option<FilesDrill>,
    pub failures: Vec<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct DatabaseDrill {
    pub server: String,
    pub databases: usize,
    pub tables: Vec<TableCheck>,
    pub rows: u64,
    pub samples_checked: usize,
    pub load_ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct FilesDrill {
    pub files: u64,
    pub bytes: u64,
    pub verified_files: u64,
}

/// Runs the drill on snapshot `snap_id`. A drill that ran to the end returns its report (with
/// `ok` false on any mismatch); only an inability to run at all is an `Err`.
pub fn run(
    repo: &Repository,
    snap_id: &Id,
    opts: &DrillOptions,
    interrupt: &AtomicBool,
) -> Result<DrillReport> {
    let started = std::time::Instant::now();
    let snap = repo.load_snapshot(snap_id)?;
    let mut report = DrillReport {
        snapshot: snap_id.to_hex(),
        time: chrono::Utc::now().to_rfc3339(),
        ..DrillReport::default()
    };
    // A dump is whatever the tree holds under mysql/, however the snapshot was made.
    let has_dump = SnapshotStreams::new(repo, snap_id, &snap)
        .and_then(|s| s.list())
        .is_ok_and(|l| l.iter().any(|p| p == crate::mysql::manifest::MANIFEST_PATH));
    if has_dump {
        match &opts.scratch {
            Some(scratch) => match database(repo, snap_id, &snap, scratch, opts.threads) {
                Ok(d) => {
                    for t in d.tables.iter().filter(|t| !t.ok()) {
                        report.failures.push(format!("table {}", t.describe()));
                    }
                    report.database = Some(d);
                }
                Err(e) => report
                    .failures
                    .push(format!("database restore failed: {e}")),
            },
            None => report
                .failures
                .push("the snapshot holds a database dump but no scratch server was given".into()),
        }
    }
    match files(repo, &snap, opts, interrupt) {
        Ok(f) => report.files = f,
        Err(e) => report.failures.push(format!("file restore failed: {e}")),
    }
    report.ok = report.failures.is_empty();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn database(
    repo: &Repository,
    snap_id: &Id,
    snap: &crate::snapshot::Snapshot,
    scratch: &MysqlTarget,
    threads: usize,
) -> Result<DatabaseDrill> {
    let streams = SnapshotStreams::new(repo, snap_id, snap)?;
    let manifest = streams.manifest()?;
    let prefix = format!("snapverify_{}_", snap_id.short());
    let renames: Vec<(String, String)> = manifest
        .databases
        .iter()
        .map(|d| (d.info.name.clone(), format!("{prefix}{}", d.info.name)))
        .collect();
    let opts = RestoreOptions {
        renames: renames.clone(),
        threads,
        replace: true,
        verify: true,
        ..RestoreOptions::default()
    };
    let loaded = load::restore(scratch, &streams, &opts);
    let dropped = super::drop_databases(scratch, renames.iter().map(|r| r.1.as_str()));
    let r = loaded?;
    dropped?;
    Ok(DatabaseDrill {
        server: scratch.to_string(),
        databases: renames.len(),
        samples_checked: r.tables.iter().map(|t| t.samples_checked).sum(),
        rows: r.rows,
        load_ms: r.duration_ms,
        tables: r.tables,
    })
}

fn files(
    repo: &Repository,
    snap: &crate::snapshot::Snapshot,
    opts: &DrillOptions,
    interrupt: &AtomicBool,
) -> Result<Option<FilesDrill>> {
    let root = Repository::root_node(snap.tree);
    let has_files = repo
        .load_tree(&snap.tree)?
        .nodes
        .iter()
        .any(|n| n.name != MYSQL_DIR.as_bytes());
    if !has_files {
        return Ok(None);
    }
    std::fs::create_dir_all(&opts.scratch_dir)
        .map_err(|e| Error::io("cannot create", &opts.scratch_dir, e))?;
    let dir = tempfile::Builder::new()
        .prefix("snap-verify-")
        .tempdir_in(&opts.scratch_dir)
        .map_err(|e| Error::io("cannot create", &opts.scratch_dir, e))?;
    let ropts = restorer::RestoreOptions {
        target: dir.path().to_path_buf(),
        includes: Vec::new(),
        excludes: vec![format!("/{MYSQL_DIR}")],
        verify: true,
    };
    let s = restorer::restore(repo, &root, &ropts, &RestoreProgress::default(), interrupt)?;
    Ok(Some(FilesDrill {
        files: s.files,
        bytes: s.bytes,
        verified_files: s.verified_files,
    }))
}

impl DrillReport {
    /// The report as Markdown, for a file a human opens after an alert.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# snap verification drill\n\n- snapshot: `{}`\n- time: {}\n- result: **{}**\n- duration: {:.1} s\n",
            self.snapshot,
            self.time,
            if self.ok { "PASSED" } else { "FAILED" },
            self.duration_ms as f64 / 1000.0
        );
        if !self.failures.is_empty() {
            s.push_str("\n## Failures\n\n");
            for f in &self.failures {
                s.push_str(&format!("- {f}\n"));
            }
        }
        if let Some(d) = &self.database {
            s.push_str(&format!(
                "\n## Database ({} databases, {} rows, {} sampled rows, loaded in {:.1} s on {})\n\n| table | rows | recorded | checksum | samples |\n|---|---|---|---|---|\n",
                d.databases, d.rows, d.samples_checked, d.load_ms as f64 / 1000.0, d.server
            ));
            for t in &d.tables {
                s.push_str(&format!(
                    "| {}.{} | {} | {} | {} | {}/{} ok |\n",
                    t.database,
                    t.table,
                    t.actual_rows,
                    t.expected_rows,
                    if t.actual_checksum == t.expected_checksum {
                        "ok"
                    } else {
                        "DIFFERS"
                    },
                    t.samples_checked - t.samples_failed.len(),
                    t.samples_checked
                ));
            }
        }
        if let Some(f) = &self.files {
            s.push_str(&format!(
                "\n## Files\n\n{} files, {} bytes restored; {} files re-read and every blob id-checked\n",
                f.files, f.bytes, f.verified_files
            ));
        }
        s
    }
}
