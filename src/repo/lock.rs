//! Repository locks: `locks/<id>` files naming host, pid, user and time.
//!
//! Backup, restore and check take a shared lock; forget and prune (later) an exclusive one. A lock
//! is refreshed every five minutes by writing a new file and removing the old one (files are never
//! modified), so a lock older than thirty minutes, or one whose process is gone on this host, is
//! stale. A stale lock is reported with its host, pid and age and left for `snap unlock`: breaking
//! it silently could let a prune delete what a slow backup is still writing.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;

pub const REFRESH: Duration = Duration::from_secs(300);
pub use crate::lockfile::{LockInfo, STALE_AFTER};

pub fn write_lock(backend: &dyn Backend, key: &MasterKey, info: &LockInfo) -> Result<String> {
    let bytes = info.encode(key)?;
    let path = format!("locks/{}", Id::of_file_bytes(&bytes));
    backend.write(&path, &bytes)?;
    Ok(path)
}

/// Every lock file with its decoded content (`None` when it cannot be read or opened).
pub fn list_locks(
    backend: &dyn Backend,
    key: &MasterKey,
) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (path, _) in backend.list("locks")? {
        let info = backend
            .read(&path)
            .ok()
            .and_then(|b| LockInfo::decode(key, &b).ok());
        out.push((path, info));
    }
    Ok(out)
}

/// Removes stale and unreadable locks (every lock when `all`); returns what was removed.
pub fn remove_stale(backend: &dyn Backend, key: &MasterKey, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (path, info) in list_locks(backend, key)? {
        if all || info.as_ref().is_none_or(|i| i.is_stale()) {
            backend.remove(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// A held lock; refreshed in the background and removed on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    path: Arc<Mutex<String>>,
    /// Dropping it wakes the refresher at once (a sleep loop would delay every exit).
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn conflicts(
    backend: &dyn Backend,
    key: &MasterKey,
    exclusive: bool,
    own: Option<&str>,
) -> Result<()> {
    for (path, info) in list_locks(backend, key)? {
        if Some(path.as_str()) == own {
            continue;
        }
        match info {
            Some(i) if i.exclusive || exclusive => {
                return Err(Error::Locked(format!("{path}: {}", i.describe())));
            }
            Some(_) => {}
            None if exclusive => {
                return Err(Error::Locked(format!("{path}: unreadable lock file")));
            }
            None => {}
        }
    }
    Ok(())
}

impl LockGuard {
    pub fn take(backend: Arc<dyn Backend>, key: &MasterKey, exclusive: bool) -> Result<LockGuard> {
        conflicts(backend.as_ref(), key, exclusive, None)?;
        let info = move || LockInfo {
            host: crate::hostname(),
            pid: std::process::id(),
            user: crate::username(),
            time: chrono::Utc::now().to_rfc3339(),
            exclusive,
        };
        let path = write_lock(backend.as_ref(), key, &info())?;
        // Two writers may have checked at the same moment: check again now that ours is visible.
        if let Err(e) = conflicts(backend.as_ref(), key, exclusive, Some(&path)) {
            let _ = backend.remove(&path);
            return Err(e);
        }
        let path = Arc::new(Mutex::new(path));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (b2, p2, key2) = (backend.clone(), path.clone(), key.clone());
        let thread = std::thread::spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(REFRESH)
            {
                if let Ok(new) = write_lock(b2.as_ref(), &key2, &info()) {
                    let mut cur = p2.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = b2.remove(&cur);
                    *cur = new;
                }
            }
        });
        Ok(LockGuard {
            backend,
            path,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let p = self.path.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.backend.remove(&p);
    }
}
