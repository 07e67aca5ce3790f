//! The run log: one JSON line per run of a job (repo-format.md "Run log"), appended to a file
//! next to backup.yml; and the small state file that remembers on which day retention last ran
//! for a job and repository.
//!
//! A line is written whole with one `write` on a file opened `O_APPEND` while holding an
//! exclusive `flock`, so runs from several processes never interleave; a reader skips a line it
//! cannot parse (a torn last line after a crash) and says how many it skipped. Both files are
//! private (0600): they name repositories, hosts and paths. No secret is ever put in a record:
//! errors come from snap's own messages, which redact URLs and never print passwords.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One run of one job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub job: String,
    pub class: String,
    /// full, incremental, differential, binlog or verify.
    pub kind: String,
    /// Repository names (from backup.yml): the primary first, then the copies.
    pub repositories: Vec<String>,
    /// Snapshots written by this run, per repository.
    #[serde(default)]
    pub snapshots: Vec<SnapshotRef>,
    /// RFC 3339, on the scheduler's clock.
    pub start: String,
    pub end: String,
    pub duration_ms: u64,
    #[serde(default)]
    pub bytes_read: u64,
    #[serde(default)]
    pub bytes_added: u64,
    /// Logical size of what the snapshot holds.
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub files: u64,
    /// Milliseconds the database's commits were blocked (a dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_lock_ms: Option<f64>,
    /// success, failure, skipped or incomplete.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Retries of transient failures this run needed.
    #[serde(default)]
    pub retries: u32,
    /// A binary-log run: the commit time of the newest event the archive holds (RFC 3339),
    /// what a restore from the repository alone can reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// Retention run after the backup, per repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<Retention>,
    pub host: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRef {
    pub repository: String,
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Retention {
    pub repository: String,
    /// Ids the job's snapshots in this repository are after the forget.
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub pruned: bool,
    /// Bytes a prune freed or marked for deletion.
    #[serde(default)]
    pub pruned_bytes: u64,
}

impl RunRecord {
    pub fn ok(&self) -> bool {
        self.result == "success"
    }
}

fn open_private(path: &Path, append: bool) -> Result<std::fs::File> {
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.read(true).write(true);
    }
    o.open(path).map_err(|e| Error::io("cannot open", path, e))
}

/// Appends `r` as one line.
pub fn append(log: &Path, r: &RunRecord) -> Result<()> {
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    }
    let mut line = serde_json::to_vec(r).map_err(|e| Error::Usage(e.to_string()))?;
    line.push(b'\n');
    let f = open_private(log, true)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("cannot lock", log, e.into()))?;
    (&f).write_all(&line)
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io("cannot write", log, e))
}

/// Every readable record, oldest first, and how many lines could not be read.
pub fn read(log: &Path) -> Result<(Vec<RunRecord>, usize)> {
    let f = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io("cannot read", log, e)),
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io("cannot read", log, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// The day (local, `YYYY-MM-DD`) retention last ran, per `forget:JOB@REPO` / `prune:REPO`.
pub fn ran_on(state: &Path, key: &str) -> Result<Option<String>> {
    match std::fs::read_to_string(state) {
        Ok(t) => {
            let days: BTreeMap<String, String> = serde_json::from_str(&t).unwrap_or_default();
            Ok(days.get(key).cloned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", state, e)),
    }
}

/// Records that `key` ran on `day`. Read, changed and rewritten under an exclusive `flock` of
/// the file itself, so two runners never lose each other's entries; a torn write only costs one
/// extra retention run (an unparseable state reads as empty).
pub fn mark(state: &Path, key: &str, day: &str) -> Result<()> {
    let mut f = open_private(state, false)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("cannot lock", state, e.into()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read", state, e))?;
    let mut days: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    days.insert(key.to_string(), day.to_string());
    let out = serde_json::to_vec_pretty(&days).map_err(|e| Error::Usage(e.to_string()))?;
    f.set_len(0)
        .and_then(|_| f.seek(SeekFrom::Start(0)))
        .and_then(|_| f.write_all(&out))
        .map_err(|e| Error::io("cannot write", state, e))
}
