//! Repository locks: `locks/<id>` files naming host, pid, user and time, and the one table that
//! says which operation takes which lock ([`Operation::lock`], written out in repo-format.md).
//!
//! Operations that only add files (backup) or only read (restore, check, verify) take a shared
//! lock; operations that delete what others may need (removing a key, rebuilding the index
//! cache, and the deleting phases of forget and prune) take an exclusive one. Prune's marking
//! phase takes a *prune* lock: shared with backups, exclusive against another prune; it then
//! takes the exclusive lock beside it only to delete packs (see `crate::prune`). Taking a lock is
//! write-then-look: the lock file is written, then every other lock is read again, so of two
//! processes racing for conflicting locks at least one sees the other and backs off (exit 11).
//!
//! A lock is refreshed every [`refresh`] by writing a new file and removing the old one (files
//! are never modified). A failed refresh is retried every few seconds; when none has succeeded
//! for `stale − refresh` — before any other process may call the lock stale — the operation is
//! stopped (through its interrupt flag) and fails with [`Error::LockLost`] rather than going on
//! unprotected while a prune on another host deletes what it writes.
//!
//! Staleness ([`LockInfo::is_stale`]): a lock of this host is stale only when its process is
//! gone, however old; a lock of another host when it has not been refreshed for the stale age.
//! `snap unlock` removes only stale and unreadable locks; `--remove-all` also removes other
//! hosts' locks that missed two refreshes, and never a lock whose process runs here.
//!
//! In a session opened with an append-only key, taking the lock of an operation that deletes
//! ([`Operation::deletes`]) fails at once with `Error::AppendOnly`: before a lock file is written
//! or any wait, so the refusal is immediate and leaves nothing behind. The session's own lock
//! files are the only ones its backend lets it remove (`backend::append_only`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;

pub use crate::lockfile::{LockInfo, refresh, stale_after};

/// Which lock an operation holds while it runs. The table repo-format.md prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Backup,
    Restore,
    /// `ls`, `cat`: read trees and packs a prune could delete.
    Browse,
    Check,
    /// `stats`: reads trees a prune could delete.
    Stats,
    Verify,
    MysqlRestore,
    /// `copy` (and `backup --copy-to`), on both repositories: the source is only read (its
    /// packs must not be pruned away meanwhile), the destination only gains packs and
    /// snapshots, as in a backup.
    Copy,
    KeyList,
    KeyAdd,
    KeyRemove,
    KeyPasswd,
    RepairIndex,
    /// Removes snapshot files (not `--dry-run`, which takes no lock).
    Forget,
    /// `prune` while it walks snapshots, repacks and writes its record: backups go on; no
    /// second prune and no exclusive operation (forget) runs beside it.
    Prune,
    /// `prune` deleting packs whose marking is older than the grace period: the only moment
    /// prune excludes backups (taken beside its own `Prune` lock, see [`LockGuard::escalate`]).
    PruneDelete,
}

impl Operation {
    /// What the operation deletes or replaces, as (what it would do, where), for those an
    /// append-only session may not run; `None` for those that only read or add. Asked when the
    /// lock is taken, so such a command refuses before it waits for a lock or does any work (the
    /// append-only backend refuses the deletion itself whatever asks).
    pub fn deletes(self) -> Option<(&'static str, &'static str)> {
        use Operation::*;
        match self {
            Forget => Some(("remove snapshots from", "snapshots/")),
            PruneDelete => Some(("delete packs from", "data/")),
            KeyRemove => Some(("remove a key from", "keys/")),
            KeyPasswd => Some(("replace the key in use in", "keys/")),
            // A copy only adds packs and a snapshot to its destination.
            Backup | Restore | Browse | Check | Stats | Verify | MysqlRestore | Copy | KeyList
            | KeyAdd | RepairIndex | Prune => None,
        }
    }
}

/// Refuses `op` in a session opened with an append-only key when `op` deletes.
fn refuse_if_append_only(repo: &super::Repository, op: Operation) -> Result<()> {
    match op.deletes() {
        Some((what, path)) => repo.require_full_key(what, path),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    /// Shared with every shared lock, exclusive against another prune lock.
    Prune,
    Exclusive,
}

impl Operation {
    pub fn lock(self) -> LockMode {
        use Operation::*;
        match self {
            Backup | Restore | Browse | Check | Stats | Verify | MysqlRestore | Copy | KeyList => {
                LockMode::Shared
            }
            // Two key removals at once could each leave "another key" and together none; a
            // passwd removes a key; repair rebuilds the index others read; forget removes
            // snapshots a restore or check may be reading, and must not plan over a listing a
            // backup is adding to.
            KeyAdd | KeyRemove | KeyPasswd | RepairIndex | Forget | PruneDelete => {
                LockMode::Exclusive
            }
            // Marking and repacking only add files; what they decide is re-checked under the
            // exclusive lock before anything is deleted.
            Prune => LockMode::Prune,
        }
    }
}

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
    list_locks_except(backend, key, None)
}

/// [`list_locks`] without reading `own` (a lock this process just wrote: one request fewer on
/// every command against a remote repository).
fn list_locks_except(
    backend: &dyn Backend,
    key: &MasterKey,
    own: Option<&str>,
) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (path, _) in backend.list("locks")? {
        if Some(path.as_str()) == own {
            continue;
        }
        let info = backend
            .read(&path)
            .ok()
            .and_then(|b| LockInfo::decode(key, &b).ok());
        out.push((path, info));
    }
    Ok(out)
}

/// What `unlock` removed and what it kept (with the reason).
#[derive(Debug, Default, serde::Serialize)]
pub struct Unlocked {
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// Removes stale and unreadable locks; with `all`, also other hosts' locks that missed two
/// refreshes. A lock whose process is alive on this host is never removed.
pub fn remove_stale(backend: &dyn Backend, key: &MasterKey, all: bool) -> Result<Unlocked> {
    let mut out = Unlocked::default();
    for (path, info) in list_locks(backend, key)? {
        let remove = match &info {
            None => true,
            Some(i) if i.is_stale() => true,
            Some(i) if all && !i.is_local() => i.age() > refresh() * 2,
            Some(_) => false,
        };
        if remove {
            backend.remove(&path)?;
            out.removed.push(path);
        } else if let Some(i) = info {
            out.kept.push(format!("{path}: {}", i.describe()));
        }
    }
    Ok(out)
}

/// Why the lock of this process was lost, once it has been (see the module doc).
static LOST: Mutex<Option<String>> = Mutex::new(None);

/// The error to report instead of "interrupted" when the operation was stopped because its lock
/// could not be refreshed.
pub fn lost() -> Option<Error> {
    LOST.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(Error::LockLost)
}

/// A held lock; refreshed in the background and removed on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    path: Arc<Mutex<String>>,
    /// Dropping it wakes the refresher at once (a sleep loop would delay every exit).
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How long a shared taker waits for a prune's delete phase to end before it gives up (exit 11).
pub const PRUNE_DELETE_WAIT: Duration = Duration::from_secs(120);

/// Whether a prune runs (a live, non-stale prune lock): its delete phase may be what a shared
/// taker just met.
fn prune_running(backend: &dyn Backend, key: &MasterKey) -> Result<bool> {
    Ok(list_locks(backend, key)?
        .into_iter()
        .any(|(_, i)| i.is_some_and(|i| i.prune && !i.is_stale())))
}

/// Whether every lock of another process is stale or unreadable (so waiting cannot help).
fn only_stale_others(backend: &dyn Backend, key: &MasterKey) -> Result<bool> {
    let me = (crate::hostname(), std::process::id());
    Ok(list_locks(backend, key)?.into_iter().all(|(_, i)| match i {
        Some(i) => (i.host.clone(), i.pid) == me || i.is_stale(),
        None => true,
    }))
}

/// What a lock being taken must not meet.
#[derive(Clone, Copy)]
struct Want {
    exclusive: bool,
    prune: bool,
    /// Ignore locks of this very process (a prune escalating beside its own prune lock).
    ignore_own: bool,
}

fn conflicts(
    backend: &dyn Backend,
    key: &MasterKey,
    want: Want,
    job: Option<&str>,
    own: Option<&str>,
) -> Result<()> {
    let me = (crate::hostname(), std::process::id());
    for (path, info) in list_locks_except(backend, key, own)? {
        // Job locks are a separate table: a job lock meets only live locks of the same job,
        // and every other taker passes job locks by (a job's own forget runs under its lock).
        if let Some(name) = job {
            if let Some(i) = info.filter(|i| i.job.as_deref() == Some(name) && !i.is_stale()) {
                return Err(Error::JobRunning {
                    job: name.to_string(),
                    holder: i.describe(),
                });
            }
            continue;
        }
        if info.as_ref().is_some_and(|i| i.job.is_some()) {
            continue;
        }
        match info {
            Some(i) if want.ignore_own && (i.host.clone(), i.pid) == me => {}
            Some(i) if i.exclusive || want.exclusive || (i.prune && want.prune) => {
                return Err(Error::Locked(format!("{path}: {}", i.describe())));
            }
            Some(_) => {}
            None if want.exclusive => {
                return Err(Error::Locked(format!("{path}: unreadable lock file")));
            }
            None => {}
        }
    }
    Ok(())
}

impl LockGuard {
    /// The lock `op` needs (the table in [`Operation::lock`]); `interrupt` is raised if the lock
    /// is lost, so the operation stops.
    pub fn for_op(
        repo: &super::Repository,
        op: Operation,
        interrupt: Arc<AtomicBool>,
    ) -> Result<LockGuard> {
        refuse_if_append_only(repo, op)?;
        let want = Self::want(op, false);
        let start = Instant::now();
        loop {
            match Self::take_with(
                repo.backend().clone(),
                repo.key(),
                want,
                None,
                Some(interrupt.clone()),
            ) {
                // A prune deleting packs holds the exclusive lock for a moment (milliseconds to
                // seconds); a backup waits for it rather than fail. It waits while any prune
                // runs: the delete lock it met may be gone again by the time it looks (a prune
                // backs off too when it meets the backup's lock, and tries again).
                Err(Error::Locked(_))
                    if !want.exclusive
                        && !want.prune
                        && start.elapsed() < PRUNE_DELETE_WAIT
                        && !interrupt.load(Ordering::SeqCst)
                        && prune_running(repo.backend().as_ref(), repo.key())? =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn want(op: Operation, ignore_own: bool) -> Want {
        Want {
            exclusive: op.lock() == LockMode::Exclusive,
            // The delete phase, and forget, are marked as prune's too: both hold the exclusive
            // lock for moments, so shared takers (a backup) wait for them instead of failing.
            prune: op.lock() == LockMode::Prune
                || op == Operation::PruneDelete
                || op == Operation::Forget,
            ignore_own,
        }
    }

    /// Takes the lock of `op` beside locks this process already holds (prune's `PruneDelete`
    /// beside its `Prune`), retrying every 20 ms for up to `wait` while other processes hold
    /// conflicting locks; a backup between two runs of a backup loop is enough of a gap.
    pub fn escalate(
        repo: &super::Repository,
        op: Operation,
        interrupt: Arc<AtomicBool>,
        wait: Duration,
    ) -> Result<LockGuard> {
        refuse_if_append_only(repo, op)?;
        let start = Instant::now();
        let mut stale_since: Option<Instant> = None;
        loop {
            match Self::take_with(
                repo.backend().clone(),
                repo.key(),
                Self::want(op, true),
                None,
                Some(interrupt.clone()),
            ) {
                Err(Error::Locked(why)) if start.elapsed() < wait => {
                    if interrupt.load(Ordering::SeqCst) {
                        return Err(Error::Interrupted);
                    }
                    // Only live holders will ever let go: a stale lock waits for `snap unlock`.
                    // Seen stale twice half a second apart, so a process that just exited and
                    // is removing its lock is not taken for a stale one.
                    if only_stale_others(repo.backend().as_ref(), repo.key())? {
                        let since = *stale_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_millis(500) {
                            return Err(Error::Locked(format!(
                                "{why} (stale: remove it with `snap unlock` if no snap runs there)"
                            )));
                        }
                    } else {
                        stale_since = None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    pub fn take(backend: Arc<dyn Backend>, key: &MasterKey, exclusive: bool) -> Result<LockGuard> {
        let want = Want {
            exclusive,
            prune: false,
            ignore_own: false,
        };
        Self::take_with(backend, key, want, None, None)
    }

    /// The lock of `snap run`'s job `job`: refused with [`Error::JobRunning`] while a live lock
    /// of the same job exists on any host (stale ones, of a crashed run, are passed by).
    pub fn job(backend: Arc<dyn Backend>, key: &MasterKey, job: &str) -> Result<LockGuard> {
        let want = Want {
            exclusive: false,
            prune: false,
            ignore_own: false,
        };
        Self::take_with(backend, key, want, Some(job.to_string()), None)
    }

    fn take_with(
        backend: Arc<dyn Backend>,
        key: &MasterKey,
        want: Want,
        job: Option<String>,
        interrupt: Option<Arc<AtomicBool>>,
    ) -> Result<LockGuard> {
        conflicts(backend.as_ref(), key, want, job.as_deref(), None)?;
        let job2 = job.clone();
        let info = move || LockInfo {
            host: crate::hostname(),
            pid: std::process::id(),
            user: crate::username(),
            time: chrono::Utc::now().to_rfc3339(),
            exclusive: want.exclusive,
            prune: want.prune,
            job: job2.clone(),
        };
        let path = write_lock(backend.as_ref(), key, &info())?;
        // Two writers may have checked at the same moment: check again now that ours is visible.
        if let Err(e) = conflicts(backend.as_ref(), key, want, job.as_deref(), Some(&path)) {
            let _ = backend.remove(&path);
            return Err(e);
        }
        let path = Arc::new(Mutex::new(path));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (b2, p2, key2) = (backend.clone(), path.clone(), key.clone());
        let thread = std::thread::spawn(move || {
            let (every, give_up) = (refresh(), stale_after().saturating_sub(refresh()));
            let retry = (every / 5).clamp(Duration::from_millis(10), Duration::from_secs(10));
            let mut last_ok = Instant::now();
            let mut wait = every;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait)
            {
                match write_lock(b2.as_ref(), &key2, &info()) {
                    Ok(new) => {
                        let mut cur = p2.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = b2.remove(&cur);
                        *cur = new;
                        last_ok = Instant::now();
                        wait = every;
                    }
                    Err(e) if last_ok.elapsed() >= give_up => {
                        *LOST.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                            "could not refresh the repository lock for {}s (last error: {e}); \
                             stopped before other hosts may take the lock as stale. Fix the \
                             repository's locks/ directory and run again",
                            last_ok.elapsed().as_secs()
                        ));
                        if let Some(i) = &interrupt {
                            i.store(true, Ordering::SeqCst);
                        }
                        return;
                    }
                    Err(_) => wait = retry,
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
