//! The byte streams a dump is made of, behind three small traits so the dump does not know where
//! its output lives: the archiver implements them over the chunker and snapshot tree, tests and
//! debugging use [`DirSink`]/[`DirSource`] over a plain directory.
//!
//! Stream paths are `/`-separated relative names built by [`crate::mysql::manifest`] (never
//! absolute, never `..`); a sink must accept any such path, creating parents as needed. A writer
//! is finished explicitly so an error at the end (a failed fsync, a failed upload) is reported
//! instead of being lost in a destructor.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Where dump streams go. Shared by all dump workers at once, hence `Sync`.
pub trait StreamSink: Sync {
    fn create(&self, path: &str) -> Result<Box<dyn StreamWriter + '_>>;
}

/// One stream being written; `finish` makes it complete (a stream not finished is not part of
/// the dump).
pub trait StreamWriter: Write + Send {
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Where a restore reads streams from.
pub trait StreamSource: Sync {
    fn open(&self, path: &str) -> Result<Box<dyn Read + Send + '_>>;
    /// Every stream path, sorted.
    fn list(&self) -> Result<Vec<String>>;
}

/// Streams as files under a directory (`<dir>/<path>`).
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> DirSink {
        DirSink { root: root.into() }
    }
}

/// Reads what a [`DirSink`] wrote.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        DirSource { root: root.into() }
    }
}

/// `root/path`, refusing paths that would leave `root`.
fn resolve(root: &Path, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path);
    if path.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::dump_stream(path, "not a relative stream path"));
    }
    Ok(root.join(rel))
}

struct FileWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl StreamWriter for FileWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        let FileWriter { path, out } = *self;
        let file = out
            .into_inner()
            .map_err(|e| Error::io("writing dump stream", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("syncing dump stream", &path, e))
    }
}

impl StreamSink for DirSink {
    fn create(&self, path: &str) -> Result<Box<dyn StreamWriter + '_>> {
        let full = resolve(&self.root, path)?;
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io("creating dump directory", parent, e))?;
        }
        let f = File::create(&full).map_err(|e| Error::io("creating dump stream", &full, e))?;
        Ok(Box::new(FileWriter {
            path: full,
            out: BufWriter::with_capacity(256 * 1024, f),
        }))
    }
}

impl StreamSource for DirSource {
    fn open(&self, path: &str) -> Result<Box<dyn Read + Send + '_>> {
        let full = resolve(&self.root, path)?;
        let f = File::open(&full).map_err(|e| Error::io("opening dump stream", &full, e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, f)))
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&self.root) {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&self.root).to_path_buf();
                Error::io("listing dump directory", path, e.into())
            })?;
            if entry.file_type().is_file()
                && let Ok(rel) = entry.path().strip_prefix(&self.root)
            {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}
