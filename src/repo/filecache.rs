//! A local copy of the small immutable things every command re-reads — tree blobs and snapshot
//! files — for repositories on another machine, so `ls`, `check`, `diff`, `snapshots` and an
//! incremental backup do not download them again on every run (restic keeps the same cache).
//!
//! Why it is shaped so:
//! - **Ciphertext only.** A tree blob is cached exactly as sealed in its pack, a snapshot as its
//!   file; both are opened and id-checked on every load as if they came from the backend, so a
//!   damaged or tampered cache file is detected and replaced, never trusted.
//! - **Immutable names.** A blob id or a snapshot file's hash names one content forever, so an
//!   entry never goes stale; it only becomes unused (after a forget or prune), and the whole
//!   directory can be deleted at any time.
//! - **Best effort.** A cache that cannot be written (disk full, read-only) costs only a download.
//! - Local repositories get no cache: the file is already here.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::id::Id;

pub struct FileCache {
    dir: Option<PathBuf>,
}

/// What is cached, each in its own subdirectory of `<cache>/<repo id>/`.
#[derive(Clone, Copy)]
pub enum Kind {
    Tree,
    Snapshot,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Tree => "trees",
            Kind::Snapshot => "snapshots",
        }
    }
}

impl FileCache {
    /// A cache in `repo_cache` (enabled) or none.
    pub fn new(repo_cache: Option<PathBuf>) -> FileCache {
        FileCache { dir: repo_cache }
    }

    fn path(&self, kind: Kind, id: &Id) -> Option<PathBuf> {
        let h = id.to_hex();
        Some(self.dir.as_ref()?.join(kind.dir()).join(&h[..2]).join(h))
    }

    pub fn get(&self, kind: Kind, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.path(kind, id)?).ok()
    }

    /// Stores `bytes` (written beside, then renamed, so a reader never sees half an entry).
    pub fn put(&self, kind: Kind, id: &Id, bytes: &[u8]) {
        let Some(p) = self.path(kind, id) else {
            return;
        };
        let Some(dir) = p.parent() else { return };
        if crate::private::create_dir_all(dir).is_err() {
            return;
        }
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
            return;
        };
        if tmp.write_all(bytes).is_ok() {
            let _ = tmp.persist(&p);
        }
    }

    /// Drops an entry found damaged, so the next load downloads it again.
    pub fn evict(&self, kind: Kind, id: &Id) {
        if let Some(p) = self.path(kind, id) {
            let _ = fs::remove_file(p);
        }
    }

    /// Removes cached snapshots not in `keep` (forgotten ones).
    pub fn retain_snapshots(&self, keep: &std::collections::HashSet<Id>) {
        let Some(d) = &self.dir else { return };
        let Ok(subdirs) = fs::read_dir(d.join(Kind::Snapshot.dir())) else {
            return;
        };
        for sub in subdirs.flatten() {
            for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                let name = f.file_name();
                let id = name.to_str().and_then(Id::from_hex);
                if id.is_some_and(|id| !keep.contains(&id)) {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
    }
}
