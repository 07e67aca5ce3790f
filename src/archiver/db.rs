//! Database dumps inside a snapshot: the archiver's side of [`crate::mysql`].
//!
//! The dump writes named streams through [`StreamSink`]; here each stream is cut by the
//! database chunker (smaller chunks than files: a day of scattered row updates must touch few
//! bytes of a dump, see repo-format.md) and handed to the same blob saver the file walk uses, so a
//! table's rows deduplicate against yesterday's and pack alongside the files. When the dump is
//! done, its streams become a `mysql/` directory in the snapshot tree (`mysql/<db>/<table>.rows`,
//! `mysql/manifest.json`, ...), browsable with `snap ls` and `snap cat` like any file.
//!
//! A server-side named lock (`GET_LOCK`) held for the whole dump makes a second database backup of
//! the same server, from this host or any other, stop at once with [`Error::BackupRunning`]
//! instead of queueing behind the first or failing half-way through.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use mysql::prelude::Queryable;

use super::BackupProgress;
use super::saver::{PendingId, Saver};
use super::walker::resolve_chunks;
use crate::blob::BlobType;
use crate::chunker::{ChunkerParams, StreamChunker};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::{DumpManifest, DumpOptions, MysqlTarget, StreamSink, StreamWriter};
use crate::snapshot::MysqlSummary;
use crate::tree::{Extent, Node, NodeKind, Tree};

/// Name of the directory holding the dump at the root of a snapshot tree.
pub const MYSQL_DIR: &str = "mysql";

/// Server-wide lock name: one snap database backup per server at a time.
const BACKUP_LOCK: &str = "snap.backup";

/// A database to dump as part of a backup.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    pub target: MysqlTarget,
    pub options: DumpOptions,
    /// Record the dump as this server's state instead of the dumped server's own (see
    /// [`RecordAs`]); `None` for every ordinary backup.
    pub record_as: Option<RecordAs>,
}

/// For a dump that stands for another server's state: `snap mysql consolidate` dumps a scratch
/// server after replaying the archive into it, and the new full must carry the archived
/// server's name and the coordinates of the replay's end (where the next replay starts), not
/// the scratch server's own. The dump's `manifest.json` keeps what the scratch server said.
#[derive(Debug, Clone)]
pub struct RecordAs {
    pub source: String,
    pub binlog_file: String,
    pub binlog_position: u64,
    pub gtid: Option<String>,
    /// The incremental or differential snapshot whose content the dump is.
    pub consolidates: Id,
}

/// Streams finished so far: their path inside the dump and their complete file node.
pub(super) struct ArchiveSink<'a, 's> {
    saver: &'a Saver<'s>,
    params: ChunkerParams,
    progress: &'a BackupProgress,
    now_ns: i64,
    done: Mutex<Vec<(String, Node)>>,
}

struct ArchiveWriter<'w, 'a, 's> {
    sink: &'w ArchiveSink<'a, 's>,
    path: String,
    chunker: StreamChunker,
    content: Vec<Extent>,
    pendings: Vec<(usize, PendingId)>,
    size: u64,
}

impl<'a, 's> ArchiveSink<'a, 's> {
    pub(super) fn new(
        saver: &'a Saver<'s>,
        params: ChunkerParams,
        progress: &'a BackupProgress,
        now_ns: i64,
    ) -> Self {
        ArchiveSink {
            saver,
            params,
            progress,
            now_ns,
            done: Mutex::new(Vec::new()),
        }
    }

    /// The finished streams, as (path, file node).
    pub(super) fn into_streams(self) -> Vec<(String, Node)> {
        self.done.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl StreamSink for ArchiveSink<'_, '_> {
    fn create(&self, path: &str) -> Result<Box<dyn StreamWriter + '_>> {
        Ok(Box::new(ArchiveWriter {
            sink: self,
            path: path.to_string(),
            chunker: StreamChunker::new(self.params),
            content: Vec::new(),
            pendings: Vec::new(),
            size: 0,
        }))
    }
}

impl ArchiveWriter<'_, '_, '_> {
    fn emit(&mut self, finish: bool, data: &[u8]) -> io::Result<()> {
        let ArchiveWriter {
            sink,
            chunker,
            content,
            pendings,
            size,
            ..
        } = self;
        let mut emit = |chunk: Vec<u8>| -> io::Result<()> {
            let n = chunk.len() as u64;
            sink.progress.bytes_read.fetch_add(n, Ordering::Relaxed);
            let id = sink.saver.save_chunk(chunk).map_err(io::Error::other)?;
            pendings.push((content.len(), id));
            content.push(Extent(Some(Id::default()), n));
            *size += n;
            Ok(())
        };
        if finish {
            chunker.finish(&mut emit)
        } else {
            chunker.push(data, &mut emit)
        }
    }
}

impl Write for ArchiveWriter<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.emit(false, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StreamWriter for ArchiveWriter<'_, '_, '_> {
    fn finish(mut self: Box<Self>) -> Result<()> {
        self.emit(true, &[])
            .map_err(|e| Error::dump_stream(&self.path, format!("cannot store: {e}")))?;
        let sink = self.sink;
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        let mut node = synthetic(name.as_bytes(), NodeKind::File, 0o100600, sink.now_ns);
        node.size = self.size;
        node.content = std::mem::take(&mut self.content);
        resolve_chunks(&mut node, std::mem::take(&mut self.pendings))?;
        sink.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.path.clone(), node));
        Ok(())
    }
}

/// A node for something the dump made, owned by the user running snap.
fn synthetic(name: &[u8], kind: NodeKind, mode: u32, now_ns: i64) -> Node {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Node::synthetic(name, kind, mode, uid, gid, now_ns)
}

/// Takes the server-wide backup lock on its own connection, which must stay open for the dump.
fn take_backup_lock(target: &MysqlTarget) -> Result<mysql::Conn> {
    let mut conn = target.connect()?;
    let got: Option<Option<i64>> = conn
        .query_first(format!("SELECT GET_LOCK('{BACKUP_LOCK}', 0)"))
        .map_err(|source| Error::Mysql {
            what: "taking the backup lock".into(),
            source,
        })?;
    match got.flatten() {
        Some(1) => Ok(conn),
        _ => Err(Error::BackupRunning(target.to_string())),
    }
}

/// Dumps `src` through `saver`; returns the `mysql` directory node for the snapshot root and the
/// summary the snapshot records.
pub(super) fn dump(
    saver: &Saver,
    params: ChunkerParams,
    src: &MysqlSource,
    progress: &BackupProgress,
) -> Result<(Node, MysqlSummary)> {
    let _held = take_backup_lock(&src.target)?;
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let sink = ArchiveSink {
        saver,
        params,
        progress,
        now_ns,
        done: Mutex::new(Vec::new()),
    };
    let manifest = crate::mysql::dump(&src.target, &sink, &src.options)?;
    let streams = sink.done.into_inner().unwrap_or_else(|e| e.into_inner());
    let root = save_dir(saver, MYSQL_DIR, streams, now_ns)?;
    let mut summary = summary(&src.target, &manifest);
    if let Some(r) = &src.record_as {
        summary.source = r.source.clone();
        summary.binlog_file = Some(r.binlog_file.clone());
        summary.binlog_position = Some(r.binlog_position);
        summary.gtid = r.gtid.clone();
        summary.consolidates = Some(r.consolidates);
    }
    Ok((root, summary))
}

fn summary(target: &MysqlTarget, m: &DumpManifest) -> MysqlSummary {
    MysqlSummary {
        source: target.to_string(),
        server: format!(
            "{} {}",
            match m.server.flavor {
                crate::mysql::Flavor::Mariadb => "MariaDB",
                crate::mysql::Flavor::Mysql => "MySQL",
            },
            m.server.version
        ),
        binlog_file: m.binlog_file.clone(),
        binlog_position: m.binlog_position,
        gtid: m.gtid.clone(),
        lock_ms: m.lock_ms,
        ddl_lock_ms: m.ddl_lock_ms,
        duration_ms: m.duration_ms,
        bytes: m.bytes,
        databases: m.databases.len() as u64,
        tables: m.databases.iter().map(|d| d.tables.len() as u64).sum(),
        rows: m
            .databases
            .iter()
            .flat_map(|d| &d.tables)
            .map(|t| t.rows)
            .sum(),
        kind: crate::snapshot::BackupKind::Full,
        base: None,
        since: None,
        binlog_start: None,
        consolidates: None,
    }
}

enum Entry {
    File(Node),
    Dir(BTreeMap<Vec<u8>, Entry>),
}

/// Turns `/`-separated stream paths into nested directories, saves their trees bottom-up and
/// returns the directory node named `name`.
pub(super) fn save_dir(
    saver: &Saver,
    name: &str,
    streams: Vec<(String, Node)>,
    now_ns: i64,
) -> Result<Node> {
    let mut root: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for (path, node) in streams {
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some(file) = parts.pop() else { continue };
        let mut dir = &mut root;
        for p in parts {
            let e = dir
                .entry(p.as_bytes().to_vec())
                .or_insert_with(|| Entry::Dir(BTreeMap::new()));
            dir = match e {
                Entry::Dir(d) => d,
                Entry::File(_) => {
                    return Err(Error::dump_stream(&path, "a stream is also a directory"));
                }
            };
        }
        dir.insert(file.as_bytes().to_vec(), Entry::File(node));
    }
    save_entries(saver, name.as_bytes(), root, now_ns)
}

fn save_entries(
    saver: &Saver,
    name: &[u8],
    entries: BTreeMap<Vec<u8>, Entry>,
    now_ns: i64,
) -> Result<Node> {
    let mut tree = Tree { nodes: Vec::new() };
    for (child, e) in entries {
        tree.nodes.push(match e {
            Entry::File(n) => n,
            Entry::Dir(d) => save_entries(saver, &child, d, now_ns)?,
        });
    }
    let (id, _) = saver.save(BlobType::Tree, tree.encode())?;
    let mut node = synthetic(name, NodeKind::Dir, 0o40700, now_ns);
    node.subtree = Some(id);
    Ok(node)
}
