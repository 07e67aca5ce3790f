//! The append-only backend: the one place that keeps a session opened with an append-only key
//! (`keyfile` §4) from deleting or overwriting repository files, whichever command or library
//! call asks. `Repository::open` installs it around the real backend when the opening key is
//! append-only, so every operation above — forget, prune, key remove and passwd, unlock, repair
//! and any deleting command added later — meets the same refusal ([`Error::AppendOnly`], exit
//! 17) instead of each remembering a check of its own.
//!
//! What it allows: reading and listing everything; writing a path that does not exist yet
//! (packs, snapshots, keys, locks, prune records and audit records are all new files named by
//! the hash of their bytes); removing a lock file this very wrapper wrote, so the session can
//! refresh and release its own locks (restic's rest-server `--append-only` allows deleting lock
//! files too; it allows any lock, we only our own, so an append-only session cannot clear
//! another process's lock either). Everything else — removing any other file, writing over an
//! existing one (`config` included) — is refused before the inner backend is asked.
//!
//! Overwrite detection asks the inner backend whether the path exists before each write (one
//! HEAD or stat per file written; packs are megabytes, so it is noise). The check and the write
//! are not atomic, and the flag lives in a file its holder controls: this stops honest clients
//! and mistakes, not an attacker with the key, which is why README pairs it with storage that
//! refuses deletes and overwrites itself.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Backend;
use crate::error::{Error, Result};

pub struct AppendOnlyBackend {
    inner: Arc<dyn Backend>,
    /// Lock files written through this wrapper and not yet removed: the only removable files.
    own_locks: Mutex<HashSet<String>>,
}

impl AppendOnlyBackend {
    pub fn new(inner: Arc<dyn Backend>) -> AppendOnlyBackend {
        AppendOnlyBackend {
            inner,
            own_locks: Mutex::new(HashSet::new()),
        }
    }

    fn own(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic elsewhere while holding it leaves a set that is still correct.
        self.own_locks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_lock(path: &str) -> bool {
    path.strip_prefix("locks/")
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

impl Backend for AppendOnlyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(path, offset, len)
    }

    fn read_range_with(
        &self,
        path: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.inner.read_range_with(path, offset, len, sink)
    }

    fn size(&self, path: &str) -> Result<u64> {
        self.inner.size(path)
    }

    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        self.inner.prefetch(path, offset, len)
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        if self.inner.exists(path)? {
            return Err(Error::AppendOnly {
                op: "overwrite",
                path: path.to_string(),
            });
        }
        self.inner.write(path, bytes)?;
        if is_lock(path) {
            self.own().insert(path.to_string());
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        self.inner.list(dir)
    }

    fn remove(&self, path: &str) -> Result<()> {
        if !self.own().contains(path) {
            return Err(Error::AppendOnly {
                op: "remove",
                path: path.to_string(),
            });
        }
        self.inner.remove(path)?;
        self.own().remove(path);
        Ok(())
    }

    fn init_layout(&self) -> Result<()> {
        self.inner.init_layout()
    }

    fn is_offsite(&self) -> bool {
        self.inner.is_offsite()
    }

    fn request_count(&self) -> Option<(u64, u64)> {
        self.inner.request_count()
    }

    fn pack_writers(&self) -> usize {
        self.inner.pack_writers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    fn refused(r: Result<()>, op: &str) {
        match r {
            Err(Error::AppendOnly { op: o, .. }) => assert_eq!(o, op),
            other => panic!("expected an append-only refusal to {op}, got {other:?}"),
        }
    }

    #[test]
    fn adds_but_never_overwrites_or_removes_except_its_own_locks() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        inner.write("config", b"c").unwrap();
        inner.write("locks/theirs", b"l").unwrap();
        let b = AppendOnlyBackend::new(inner.clone());
        b.write("snapshots/new", b"s").unwrap();
        assert_eq!(b.read("snapshots/new").unwrap(), b"s");
        refused(b.write("snapshots/new", b"other"), "overwrite");
        refused(b.write("config", b"x"), "overwrite");
        assert_eq!(inner.read("config").unwrap(), b"c");
        refused(b.remove("snapshots/new"), "remove");
        refused(b.remove("config"), "remove");
        refused(b.remove("locks/theirs"), "remove");
        // Not even a file that is not there: nothing tells "gone" from "someone else's".
        refused(b.remove("data/00/missing"), "remove");
        b.write("locks/mine", b"m").unwrap();
        b.remove("locks/mine").unwrap();
        assert!(!inner.exists("locks/mine").unwrap());
        // Once removed it is no longer ours: a lock written again by another process at the same
        // name is refused.
        inner.write("locks/mine", b"again").unwrap();
        refused(b.remove("locks/mine"), "remove");
        // A lock-like path outside `locks/` is not a lock.
        b.write("locksmith/x", b"x").unwrap();
        refused(b.remove("locksmith/x"), "remove");
        assert!(inner.exists("snapshots/new").unwrap());
        assert!(inner.exists("locks/theirs").unwrap());
    }
}
