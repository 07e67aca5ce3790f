//! Snapshots of streams that are not a file walk: the binary-log archive stores each run's new
//! bytes as `<dir>/<path>` file nodes through the same chunker, saver and packer as a dump, so
//! they are deduplicated, compressed, encrypted, checked, pruned and browsable like any file.
//!
//! The caller writes its streams through a [`StreamSink`] and returns the snapshot's metadata
//! (which it only knows once the bytes are read); every blob is durable before the snapshot file
//! is written, as for a backup.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::db::{ArchiveSink, save_dir};
use super::saver::{Saver, SaverState};
use super::{BackupOutcome, BackupProgress};
use crate::error::Result;
use crate::id::Id;
use crate::mysql::StreamSink;
use crate::repo::Repository;
use crate::snapshot::{BackupKind, BinlogRecord, MysqlSummary, Snapshot, Summary};
use crate::tree::Tree;

/// What the snapshot records besides its tree.
#[derive(Debug, Clone, Default)]
pub struct StreamSnapshot {
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub kind: BackupKind,
    pub parent: Option<Id>,
    pub mysql: Option<MysqlSummary>,
    pub binlog: Option<BinlogRecord>,
}

/// Writes the streams `fill` produces under `dir/` in a new snapshot's tree and saves the
/// snapshot with the metadata `fill` returns.
pub fn save_streams(
    repo: &Repository,
    dir: &str,
    fill: impl FnOnce(&dyn StreamSink) -> Result<StreamSnapshot>,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = chrono::Local::now().fixed_offset();
    let now_ns = time.timestamp_nanos_opt().unwrap_or(0);
    let state = SaverState::default();
    let params = repo.config().db_chunker();
    let progress = BackupProgress::default();
    let (tree, meta, bytes) = std::thread::scope(|scope| -> Result<_> {
        let saver = Saver::start(scope, repo, &state);
        let made = (|| {
            let sink = ArchiveSink::new(&saver, params, &progress, now_ns);
            let meta = fill(&sink)?;
            let streams = sink.into_streams();
            let bytes: u64 = streams.iter().map(|(_, n)| n.size).sum();
            let node = save_dir(&saver, dir, streams, now_ns)?;
            let mut root = Tree { nodes: vec![node] };
            root.nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let (tree, _) = saver.save(crate::blob::BlobType::Tree, root.encode())?;
            Ok((tree, meta, bytes))
        })();
        let finished = saver.finish();
        match (made, finished) {
            (Ok(t), Ok(())) => Ok(t),
            (Err(e), Err(cause)) if e.is_secondary() => Err(cause),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })?;
    let s = &state.stats;
    let summary = Summary {
        blobs_added: s.blobs_added.load(Ordering::Relaxed),
        bytes_added: s.bytes_added.load(Ordering::Relaxed),
        bytes_added_raw: s.bytes_added_raw.load(Ordering::Relaxed),
        packs_written: s.packs_written.load(Ordering::Relaxed),
        duration_ms: started.elapsed().as_millis() as u64,
        bytes_read: bytes,
        bytes_total: bytes,
        ..Summary::default()
    };
    let host = meta.host.unwrap_or_else(crate::hostname);
    let snapshot = Snapshot {
        time: time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        paths: meta.paths,
        tags: meta.tags,
        kind: meta.kind,
        parent: meta.parent,
        mysql: meta.mysql,
        binlog: meta.binlog,
        ..Snapshot::new(tree, host, summary)
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupOutcome { id, snapshot })
}
