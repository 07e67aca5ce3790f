//! Snapshots: the root tree id plus what a human needs to choose one (time, host, paths, tags)
//! and what the next backup needs (kind, parent), with a summary of the run.
//!
//! ```text
//! snapshots/<blake3 of file> = header(kind 3) | sealed CBOR map Snapshot
//! ```
//! A snapshot is written only after every blob it references is durable, so a listed snapshot is
//! always complete in the repository; `incomplete` says the *source* could not be read in full.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};
use crate::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    #[default]
    Full,
    Incremental,
    Differential,
}

impl BackupKind {
    pub fn is_full(&self) -> bool {
        *self == BackupKind::Full
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
            BackupKind::Differential => "differential",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub other_entries: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Logical size of all files in the snapshot.
    pub bytes_total: u64,
    /// New blobs stored by this run and their size in packs (after compression and sealing).
    pub blobs_added: u64,
    pub bytes_added: u64,
    /// Plaintext size of the new blobs.
    pub bytes_added_raw: u64,
    pub packs_written: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: String,
    pub time_end: String,
    pub host: String,
    pub user: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub kind: BackupKind,
    pub parent: Option<Id>,
    pub tree: Id,
    pub incomplete: bool,
    pub errors: Vec<SourceError>,
    pub summary: Summary,
    pub program: String,
    /// Present when the snapshot holds a database dump (under `mysql/` in the tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlSummary>,
    /// For a snapshot written by `snap copy`: the file id of the snapshot it was first copied
    /// from (the source's own `original` when the source is itself a copy), so a second copy run
    /// recognises it and a chain of copies stays traceable to the backup that made it. Absent in
    /// snapshots written by a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// Present when the snapshot holds archived binary-log bytes (under `binlog/` in the tree):
    /// a piece of the binary-log archive (see repo-format.md, "Binary-log archive").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogRecord>,
}

/// The tag every binary-log archive snapshot carries.
pub const BINLOG_TAG: &str = "binlog";

/// The index record of one archive run: which server, which byte ranges of which files it
/// stored (in the snapshot's tree), and the gaps it found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinlogRecord {
    /// The server as snap reached it (no password): the archive's name.
    pub source: String,
    pub server_id: u32,
    /// MySQL's `@@server_uuid`; MariaDB has none.
    pub server_uuid: Option<String>,
    pub segments: Vec<BinlogSegment>,
    pub gaps: Vec<BinlogGap>,
}

/// Bytes `[start, end)` of one binlog file, stored byte for byte as the file node `path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinlogSegment {
    pub file: String,
    pub start: u64,
    pub end: u64,
    /// Path of the bytes inside the snapshot tree.
    pub path: String,
    /// Timestamps (seconds since the epoch) of the first and last event in the range.
    pub first_time: Option<u32>,
    pub last_time: Option<u32>,
    /// First and last transaction committed in the range.
    pub gtid_first: Option<String>,
    pub gtid_last: Option<String>,
    /// The binlog GTID state after the range (`0-1-5,1-2-9`).
    pub gtid_state: String,
    /// The file's GTID_LIST event (its state at the file's start), when the range holds it.
    pub gtid_list: Option<String>,
    pub events: u64,
    pub transactions: u64,
    /// The file ends within this range (a ROTATE or STOP event was stored).
    pub ended: bool,
    /// The next file, when a ROTATE named it.
    pub next: Option<String>,
}

/// A hole in the archive: from `after` (the last archived `file:pos`, if any) to `before` (the
/// first position archived after it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinlogGap {
    /// `purged`, `server-switch` or `gtid-hole`.
    pub kind: String,
    pub after: Option<String>,
    pub before: String,
    pub detail: String,
    /// RFC 3339, when the archive run found it.
    pub detected: String,
}

/// `(kind) after -> before: detail`, as every warning about a gap says it.
impl std::fmt::Display for BinlogGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}) {} -> {}: {}",
            self.kind,
            self.after.as_deref().unwrap_or("start"),
            self.before,
            self.detail
        )
    }
}

/// What a snapshot records about its database dump; the full manifest (per-table row counts,
/// checksums, samples) is the `mysql/manifest.json` stream in the tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MysqlSummary {
    /// `host:port` or socket path the dump was taken from.
    pub source: String,
    /// Flavour and version, e.g. `MariaDB 10.11.6`.
    pub server: String,
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
    /// Commits blocked, and DDL / non-transactional writes blocked, in milliseconds.
    pub lock_ms: f64,
    pub ddl_lock_ms: f64,
    pub duration_ms: u64,
    /// Bytes of dump streams.
    pub bytes: u64,
    pub databases: u64,
    pub tables: u64,
    pub rows: u64,
    /// What the database part is, independently of the files part's kind: a `full` dump, or
    /// (later) a range of binary logs. Absent in snapshots written before it existed: those all
    /// hold full dumps.
    #[serde(default, skip_serializing_if = "BackupKind::is_full")]
    pub kind: BackupKind,
    /// Incremental/differential: the full dump this range continues (restore = that full +
    /// replay to `binlog_file:binlog_position`, which are the range's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Id>,
    /// The database snapshot whose end this range starts at (the previous one for an
    /// incremental, the full for a differential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Id>,
    /// `file:pos` the range starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_start: Option<String>,
    /// A full made by `snap mysql consolidate`: the incremental or differential snapshot whose
    /// content (its full plus the replayed range) this dump is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidates: Option<Id>,
}

impl Snapshot {
    /// A snapshot written by this program now, of `tree`: what every writer (file backup,
    /// binary-log archive) sets the same way — user, program, `time` and `time_end` now (RFC
    /// 3339, nanoseconds, local offset) — and nothing else; the caller sets what only it knows
    /// (its times, kind, paths, parent, errors, database parts).
    pub fn new(tree: Id, host: String, summary: Summary) -> Snapshot {
        let now = chrono::Local::now()
            .fixed_offset()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        Snapshot {
            time: now.clone(),
            time_end: now,
            host,
            user: crate::username(),
            paths: Vec::new(),
            tags: Vec::new(),
            kind: BackupKind::Full,
            parent: None,
            tree,
            incomplete: false,
            errors: Vec::new(),
            summary,
            program: format!("snap {}", env!("CARGO_PKG_VERSION")),
            mysql: None,
            original: None,
            binlog: None,
        }
    }

    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        envelope::seal_file(key, Kind::Snapshot, &crate::cbor::to_vec(self))
    }

    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Snapshot, EnvelopeError> {
        Self::decode_plain(&envelope::open_file(key, Kind::Snapshot, bytes)?)
    }

    pub fn decode_plain(plain: &[u8]) -> Result<Snapshot, EnvelopeError> {
        crate::cbor::read(plain).map_err(EnvelopeError::Decode)
    }

    /// The snapshot a copy run compares: this one's `original`, else itself (file id `id`).
    pub fn origin(&self, id: Id) -> Id {
        self.original.unwrap_or(id)
    }

    pub fn time_parsed(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.time).ok()
    }
}

/// The tag of the snapshot `snap mysql restore` takes of the databases it is about to overwrite.
pub const PRE_RESTORE_TAG: &str = "pre-restore";

/// Which snapshots `latest` may stand for: restic's `--host` and `--tag` filters, plus what a
/// command needs (a database dump, for `mysql restore` and `verify`). The safety copies `mysql
/// restore` takes are never `latest` unless asked for by their tag: after a rolled-back restore,
/// "restore latest" must mean the latest backup, not the copy of what was just put back.
#[derive(Debug, Default, Clone)]
pub struct SnapshotFilter {
    pub host: Option<String>,
    /// All must be present.
    pub tags: Vec<String>,
    pub with_database: bool,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && (!self.with_database || s.mysql.is_some())
    }

    /// Whether `s` may be what `latest` means: it matches, and is not a safety copy unless the
    /// filter names that tag.
    pub fn may_be_latest(&self, s: &Snapshot) -> bool {
        self.matches(s)
            && (!s.tags.iter().any(|t| t == PRE_RESTORE_TAG)
                || self.tags.iter().any(|t| t == PRE_RESTORE_TAG))
            // a piece of the binary-log archive is not a backup to restore as `latest`
            && (!s.tags.iter().any(|t| t == BINLOG_TAG)
                || self.tags.iter().any(|t| t == BINLOG_TAG))
    }

    /// `latest`, with the filters spelled out, for messages.
    pub fn describe_latest(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tag {}", self.tags.join(",")));
        }
        if self.with_database {
            parts.push("with a database dump".into());
        }
        if parts.is_empty() {
            "latest".into()
        } else {
            format!("latest ({})", parts.join(", "))
        }
    }
}
