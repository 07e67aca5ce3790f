//! Copying a server's binary logs byte for byte: `mariadb-binlog --read-from-remote-server
//! --raw` as a replica client, its output read back event by event as it grows.
//!
//! The tool writes one local file per server file (named like it) into a private directory.
//! What it writes is the server's file, with two exceptions this reader undoes so the caller
//! sees only the server's bytes at the server's positions:
//! - A copy that starts inside a file (`--start-position` > 4, a resumed archive) begins with
//!   the magic and an artificial format description event (`log_pos` 0) before the first real
//!   event; both are skipped here (they are already archived with the file's start), and the
//!   first real event must begin exactly at the requested position.
//! - Events flagged artificial (the fake ROTATE a dump starts with, heartbeats) are not in the
//!   file and never passed on.
//!
//! The server clears the "in use" flag of the format description event it sends, so the copy of
//! a file the server still has open differs from the server's own file in that one bit until the
//! server closes it (see [`super::events::IN_USE_BYTE`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::events::{self, Event, FileReader, Header};
use super::tools;
use crate::error::{Error, Result};
use crate::mysql::MysqlTarget;

/// Where to start and whether to stay connected.
#[derive(Debug, Clone)]
pub struct CopyFrom {
    pub file: String,
    pub pos: u64,
    /// Stay connected after the last file's end (`--stop-never`), as replica `replica_id`.
    pub follow: Option<u32>,
    /// When resuming inside `file`: the timestamp of the format description event the archive
    /// holds for it (the file's creation time). The server resends that event on resume; another
    /// timestamp means a different file under the same name (a failover to a server with another
    /// history), and the copy refuses to continue it.
    pub created: Option<u32>,
}

/// A running copy: the child and the reader of its output.
pub struct RawCopy {
    child: Child,
    dir: tempfile::TempDir,
    /// The file being read, its reader and how far into the local copy it has read.
    cur: Cursor,
    stderr: PathBuf,
    created: Option<u32>,
}

struct Cursor {
    reader: FileReader,
    /// Bytes of the local copy consumed (the local copy may start with skipped bytes).
    local: u64,
    /// The position the local copy's first real event must have.
    resume_at: u64,
    /// Whether the first event of the local copy is still to be checked.
    first: bool,
    done: bool,
}

/// New events of one file, with their bytes.
pub struct Chunk {
    pub file: String,
    /// Position in the server's file of `bytes[0]`.
    pub start: u64,
    pub bytes: Vec<u8>,
    pub events: Vec<Event>,
    /// The file ended (a real ROTATE or STOP was read in this chunk).
    pub ended: bool,
    /// The next file, when a ROTATE named it.
    pub next: Option<String>,
}

impl RawCopy {
    /// Starts the tool. `parent` holds the private working directory (the repository's cache
    /// directory, say): it is removed when the copy is dropped.
    pub fn start(target: &MysqlTarget, from: &CopyFrom, parent: &Path) -> Result<RawCopy> {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("creating binlog work directory", parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix("binlog-")
            .tempdir_in(parent)
            .map_err(|e| Error::io("creating binlog work directory", parent, e))?;
        let cnf = tools::write_defaults(dir.path(), target)?;
        let out = dir.path().join("out");
        std::fs::create_dir(&out).map_err(|e| Error::io("creating", &out, e))?;
        let stderr = dir.path().join("stderr");
        let errf = std::fs::File::create(&stderr).map_err(|e| Error::io("creating", &stderr, e))?;
        let mut c = tools::command(tools::binlog_tool(), Some(&cnf));
        c.arg("--read-from-remote-server")
            .arg("--raw")
            .arg(format!("--result-file={}/", out.display()))
            .arg(format!("--start-position={}", from.pos.max(4)));
        match from.follow {
            Some(id) => {
                c.arg("--stop-never")
                    .arg(format!("--stop-never-slave-server-id={id}"));
            }
            None => {
                c.arg("--to-last-log");
            }
        }
        c.arg(&from.file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(errf));
        let child = c.spawn().map_err(|e| Error::BinlogTool {
            what: format!("starting {}", tools::binlog_tool()),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        Ok(RawCopy {
            child,
            dir,
            cur: Cursor::new(&from.file, from.pos),
            stderr,
            created: from.created,
        })
    }

    fn local_path(&self, file: &str) -> PathBuf {
        self.dir.path().join("out").join(file)
    }

    /// The first local copy numbered after the current file.
    fn next_local_file(&self) -> Result<Option<String>> {
        let out = self.dir.path().join("out");
        let cur = events::file_number(&self.cur.reader.file);
        let mut best: Option<(u64, String)> = None;
        let rd = std::fs::read_dir(&out).map_err(|e| Error::io("listing", &out, e))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let (Some(n), Some(c)) = (events::file_number(&name), cur)
                && n > c
                && best.as_ref().is_none_or(|b| n < b.0)
            {
                best = Some((n, name));
            }
        }
        Ok(best.map(|b| b.1))
    }

    /// `None` while the tool runs; its exit status once it ended.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| Error::io("waiting for", "mariadb-binlog", e))
    }

    /// Waits for the tool (a one-shot copy ends at the last file's end) and fails with what it
    /// said if it failed.
    pub fn wait(&mut self) -> Result<()> {
        let st = self
            .child
            .wait()
            .map_err(|e| Error::io("waiting for", "mariadb-binlog", e))?;
        if st.success() {
            Ok(())
        } else {
            Err(self.failure(st))
        }
    }

    pub fn failure(&self, st: std::process::ExitStatus) -> Error {
        let said = std::fs::read(&self.stderr).unwrap_or_default();
        tools::failed("copying binary logs", st, &said)
    }

    /// Stops the tool (for `--follow` at shutdown or before a restart).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reads what the tool has written since the last call: complete events of the current file
    /// (at most `max` bytes of them), then — if that file is finished — the caller calls again
    /// for the next one. `Ok(None)` when nothing new is there yet.
    pub fn poll(&mut self, max: usize) -> Result<Option<Chunk>> {
        if self.cur.done {
            // after a STOP event the server moves on to the next file in its index without a
            // ROTATE in the file; the tool names its copy after it
            match self.next_local_file()? {
                Some(n) => self.cur = Cursor::new(&n, 4),
                None => return Ok(None),
            }
        }
        let path = self.local_path(&self.cur.reader.file);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading binlog copy", &path, e)),
        };
        f.seek(SeekFrom::Start(self.cur.local))
            .map_err(|e| Error::io("reading binlog copy", &path, e))?;
        let mut buf = Vec::new();
        f.take(max as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading binlog copy", &path, e))?;
        let bad = |what: String| Error::BinlogFormat(what);
        let mut off = 0usize;
        // a resumed copy: magic + artificial format description first, not the server's bytes
        if self.cur.first && self.cur.resume_at > 4 {
            let Some(h) = buf.get(4..).and_then(Header::parse) else {
                return Ok(None);
            };
            if &buf[..4] != events::MAGIC || h.kind != events::FORMAT_DESCRIPTION || h.log_pos != 0
            {
                return Err(bad(format!(
                    "copy of {} resumed at {} does not start with the artificial format \
                     description event",
                    self.cur.reader.file, self.cur.resume_at
                )));
            }
            let skip = 4 + h.size as usize;
            if buf.len() < skip {
                return Ok(None);
            }
            if let Some(want) = self.created
                && want != h.timestamp
            {
                return Err(Error::ArchiveGap {
                    count: 1,
                    first: format!(
                        "server-switch: the server's {} was created at {} but the archived one at {}: another binary-log history under the same name (archive this server under a new name with --archive NAME)",
                        self.cur.reader.file, h.timestamp, want
                    ),
                });
            }
            // the reader learns the checksum setting from it, then continues at the position
            self.cur
                .reader
                .read(&buf[..skip])
                .map_err(|e| bad(e.to_string()))?;
            self.cur.reader.pos = self.cur.resume_at;
            off = skip;
            self.cur.local += skip as u64;
            self.cur.first = false;
        }
        self.cur.first = false;
        let start = self.cur.reader.pos;
        let (evs, used) = self
            .cur
            .reader
            .read(&buf[off..])
            .map_err(|e| bad(e.to_string()))?;
        if used == 0 {
            return Ok(None);
        }
        self.cur.local += used as u64;
        let mut bytes = buf[off..off + used].to_vec();
        // artificial events are not the server's file: none should be in a raw copy; refuse
        // rather than store something that is not the file
        if let Some(a) = evs.iter().find(|e| e.header.artificial()) {
            return Err(bad(format!(
                "copy of {} holds an artificial event at {}",
                self.cur.reader.file, a.at
            )));
        }
        let next = evs.iter().find_map(|e| match e.header.kind {
            events::ROTATE => e.rotate_to.clone(),
            events::STOP => Some(String::new()),
            _ => None,
        });
        let file = self.cur.reader.file.clone();
        if let Some(n) = &next {
            if n.is_empty() {
                self.cur.done = true;
            } else {
                self.cur = Cursor::new(n, 4);
            }
        }
        bytes.shrink_to_fit();
        Ok(Some(Chunk {
            file,
            start,
            bytes,
            events: evs,
            ended: next.is_some(),
            next: next.filter(|n| !n.is_empty()),
        }))
    }
}

impl Cursor {
    fn new(file: &str, pos: u64) -> Cursor {
        let mut reader = FileReader::new(file);
        if pos > 4 {
            // set after the artificial format description is read
            reader.pos = 0;
        }
        Cursor {
            reader,
            local: 0,
            resume_at: pos.max(4),
            first: true,
            done: false,
        }
    }
}

impl Drop for RawCopy {
    fn drop(&mut self) {
        self.stop();
    }
}
