//! Database operations on snapshots: bringing a dump back into a server without ever losing the
//! data it replaces, and proving that a dump restores ([`drill`]).
//!
//! A snapshot's `mysql/` directory is read through [`SnapshotStreams`], the repository-backed
//! [`StreamSource`] the loader in [`crate::mysql::restore`] consumes; blobs are fetched as the
//! loader reads, so memory stays at a chunk per stream.
//!
//! A restore that would overwrite databases first dumps exactly those databases from the target
//! server into a new snapshot tagged `pre-restore` (the same consistent dump a backup takes). Then
//! it loads, then verifies every table's row count, checksum and sampled rows against the values
//! recorded at backup time. If loading fails or anything differs, it loads the pre-restore
//! snapshot back and reports the failure: the server ends either with the verified backup or with
//! what it had before, never with something in between.

pub mod binlog;
pub mod drill;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::archiver::{self, BackupOptions, BackupProgress, MYSQL_DIR, MysqlSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::restore::{self as load, RestoreOptions, RestoreReport};
use crate::mysql::schema::Selection;
use crate::mysql::{DumpManifest, DumpOptions, MysqlTarget, StreamSource};
use crate::repo::Repository;
use crate::snapshot::{BackupKind, Snapshot};
use crate::tree::{Extent, Node, NodeKind};

/// The dump streams of one snapshot, read from the repository.
pub struct SnapshotStreams<'r> {
    repo: &'r Repository,
    files: BTreeMap<String, Node>,
}

impl<'r> SnapshotStreams<'r> {
    /// The streams under `mysql/` in `snap`'s tree; an error when the snapshot has no dump.
    pub fn new(repo: &'r Repository, snap_id: &Id, snap: &Snapshot) -> Result<Self> {
        let dir = repo.resolve(&snap.tree, &snap_id.short(), MYSQL_DIR)?;
        let Some(tree) = dir.subtree.filter(|_| dir.kind == NodeKind::Dir) else {
            return Err(Error::Usage(format!(
                "snapshot {} holds no database dump (no {MYSQL_DIR}/ directory)",
                snap_id.short()
            )));
        };
        let mut files = BTreeMap::new();
        repo.walk(&tree, "", &mut |path, node| {
            if node.kind == NodeKind::File {
                files.insert(path.trim_start_matches('/').to_string(), node.clone());
            }
            Ok(true)
        })?;
        Ok(SnapshotStreams { repo, files })
    }

    pub fn manifest(&self) -> Result<DumpManifest> {
        load::read_manifest(self)
    }
}

impl StreamSource for SnapshotStreams<'_> {
    fn open(&self, path: &str) -> Result<Box<dyn Read + Send + '_>> {
        let node = self
            .files
            .get(path)
            .ok_or_else(|| Error::dump_stream(path, "is not in the snapshot's dump"))?;
        Ok(Box::new(BlobReader {
            repo: self.repo,
            extents: node.content.clone().into_iter(),
            buf: Vec::new(),
            pos: 0,
            hole: 0,
        }))
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self.files.keys().cloned().collect())
    }
}

/// A stream's bytes, one blob at a time.
struct BlobReader<'r> {
    repo: &'r Repository,
    extents: std::vec::IntoIter<Extent>,
    buf: Vec<u8>,
    pos: usize,
    /// Zero bytes still to give for a hole: streamed, never allocated (its length is read
    /// from a tree).
    hole: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() && self.hole == 0 {
            let Some(Extent(id, len)) = self.extents.next() else {
                return Ok(0);
            };
            match id {
                Some(id) => self.buf = self.repo.load_blob(&id).map_err(std::io::Error::other)?,
                None => {
                    self.buf.clear();
                    self.hole = len;
                }
            }
            self.pos = 0;
        }
        if self.hole > 0 {
            let n = usize::try_from(self.hole).map_or(out.len(), |h| h.min(out.len()));
            out[..n].fill(0);
            self.hole -= n as u64;
            return Ok(n);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What to restore from a snapshot's dump, and where.
#[derive(Debug, Clone)]
pub struct DbRestoreOptions {
    pub target: MysqlTarget,
    pub load: RestoreOptions,
    /// Host recorded on the pre-restore snapshot.
    pub host: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DbRestoreOutcome {
    pub report: RestoreReport,
    /// The safety snapshot of what was overwritten, when anything was.
    pub pre_restore: Option<String>,
    pub replaced: Vec<String>,
}

/// Target database names the restore writes (after renames).
pub(crate) fn target_databases(m: &DumpManifest, opts: &RestoreOptions) -> Vec<String> {
    let rename = |db: &str| {
        opts.renames
            .iter()
            .find(|(from, _)| from == db)
            .map(|(_, to)| to.clone())
            .unwrap_or_else(|| db.to_string())
    };
    let mut out: Vec<String> = m
        .databases
        .iter()
        .map(|d| d.info.name.as_str())
        .filter(|db| {
            (opts.databases.is_empty() && opts.tables.is_empty())
                || opts.databases.iter().any(|x| x == db)
                || opts
                    .tables
                    .iter()
                    .any(|t| t.split_once('.').map(|p| p.0) == Some(db))
        })
        .map(rename)
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn existing_databases(target: &MysqlTarget, names: &[String]) -> Result<Vec<String>> {
    use mysql::prelude::Queryable;
    let mut conn = target.connect()?;
    let all: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .map_err(|source| Error::Mysql {
            what: "listing databases".into(),
            source,
        })?;
    Ok(names.iter().filter(|n| all.contains(n)).cloned().collect())
}

/// Every database on `target`.
pub(crate) fn all_databases(target: &MysqlTarget) -> Result<Vec<String>> {
    use mysql::prelude::Queryable;
    let mut conn = target.connect()?;
    conn.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .map_err(|source| Error::Mysql {
            what: "listing databases".into(),
            source,
        })
}

/// Restores the dump in snapshot `snap_id` into `opts.target`, with a safety snapshot and
/// rollback (see the module doc). `interrupt` stops the safety backup.
pub fn restore(
    repo: &mut Repository,
    snap_id: &Id,
    opts: &DbRestoreOptions,
    interrupt: &AtomicBool,
) -> Result<DbRestoreOutcome> {
    let snap = repo.load_snapshot(snap_id)?;
    let manifest = SnapshotStreams::new(repo, snap_id, &snap)?.manifest()?;
    let targets = target_databases(&manifest, &opts.load);
    let replaced = existing_databases(&opts.target, &targets)?;
    let pre_restore = if replaced.is_empty() {
        None
    } else {
        let backup = BackupOptions {
            paths: Vec::new(),
            includes: Vec::new(),
            excludes: Vec::new(),
            tags: vec![
                crate::snapshot::PRE_RESTORE_TAG.into(),
                format!("restore-of-{}", snap_id.short()),
            ],
            host: opts.host.clone(),
            kind: BackupKind::Full,
            mysql: Some(MysqlSource {
                target: opts.target.clone(),
                options: DumpOptions {
                    selection: Selection {
                        databases: replaced.clone(),
                        include_system: true,
                        ..Selection::default()
                    },
                    threads: opts.load.threads,
                    ..DumpOptions::default()
                },
                record_as: None,
            }),
            time: None,
            mysql_prebuilt: None,
        };
        let out = archiver::backup(repo, &backup, &BackupProgress::default(), interrupt)
            .map_err(|e| e.context("taking the pre-restore snapshot (nothing was changed)"))?;
        Some(out.id)
    };
    let mut load_opts = opts.load.clone();
    load_opts.replace = true;
    load_opts.verify = true;
    let streams = SnapshotStreams::new(repo, snap_id, &snap)?;
    let attempt = load::restore(&opts.target, &streams, &load_opts).and_then(|r| r.into_result());
    match attempt {
        Ok(report) => Ok(DbRestoreOutcome {
            report,
            pre_restore: pre_restore.map(|id| id.to_hex()),
            replaced,
        }),
        Err(e) => Err(rollback(repo, pre_restore, &opts.target, &targets, e)),
    }
}

/// Drops databases (scratch ones, or ones a failed restore created).
pub(crate) fn drop_databases<'a>(
    target: &MysqlTarget,
    dbs: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    use mysql::prelude::Queryable;
    let mut conn = target.connect()?;
    for db in dbs {
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            db.replace('`', "``")
        ))
        .map_err(|source| Error::Mysql {
            what: format!("dropping database {db}"),
            source,
        })?;
    }
    Ok(())
}

/// Puts back what the pre-restore snapshot holds (or drops what a restore into new names
/// created) and returns the original failure with what was done about it.
pub(crate) fn rollback(
    repo: &Repository,
    pre: Option<Id>,
    target: &MysqlTarget,
    targets: &[String],
    failure: Error,
) -> Error {
    let undo = || -> Result<String> {
        let existed: Vec<String> = match pre {
            Some(pre_id) => {
                let snap = repo.load_snapshot(&pre_id)?;
                let streams = SnapshotStreams::new(repo, &pre_id, &snap)?;
                let back = RestoreOptions {
                    replace: true,
                    verify: true,
                    ..RestoreOptions::default()
                };
                load::restore(target, &streams, &back)?.into_result()?;
                streams
                    .manifest()?
                    .databases
                    .into_iter()
                    .map(|d| d.info.name)
                    .collect()
            }
            None => Vec::new(),
        };
        // Databases that did not exist before the restore are removed again.
        let created: Vec<&String> = targets.iter().filter(|t| !existed.contains(t)).collect();
        drop_databases(target, created.into_iter().map(String::as_str))?;
        Ok(match pre {
            Some(id) => format!(
                "rolled back: the databases were restored from pre-restore snapshot {}",
                id.short()
            ),
            None => "rolled back: the databases the restore created were dropped".into(),
        })
    };
    match undo() {
        Ok(done) => failure.context(done),
        Err(e) => failure.context(format!(
            "ROLLBACK FAILED ({e}); the pre-restore snapshot {} still holds the previous data",
            pre.map(|i| i.short()).unwrap_or_else(|| "(none)".into())
        )),
    }
}
