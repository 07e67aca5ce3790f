//! Lock file contents: who holds a lock (host, pid, user), since when, and whether it is
//! exclusive; and when a lock counts as stale. Kept apart from the locking protocol
//! (`repo::lock`) so the decoder builds without RocksDB and can be fuzzed: lock files are
//! repository bytes that any snap process reads.
//!
//! ```text
//! locks/<blake3 of file> = header(kind 4) | sealed CBOR {host, pid, user, time (RFC 3339), exclusive, prune}
//! ```

use std::time::Duration;

/// Whether `pid` names a running process on this host (a pid reused after a crash keeps the
/// lock; `snap unlock` says which process holds it, and removing that file by hand is the way out).
fn process_alive(pid: u32) -> bool {
    // The pid is read from the lock file: 0 and values beyond pid_t's range are no process
    // (cast unchecked they would become a process group or -1, "every process").
    let raw = match libc::pid_t::try_from(pid) {
        Ok(p) if p > 0 => p,
        _ => return false,
    };
    // SAFETY: kill with signal 0 only checks whether the pid exists.
    let r = unsafe { libc::kill(raw, 0) };
    !(r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
}

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};

/// How often a held lock is rewritten: five minutes, or `SNAP_LOCK_REFRESH` seconds (a tuning
/// and test knob; every process sharing a repository must agree on it).
pub fn refresh() -> Duration {
    std::env::var("SNAP_LOCK_REFRESH")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.01 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(300))
}

/// A lock of another host not refreshed for this long (six refreshes: thirty minutes) is stale.
pub fn stale_after() -> Duration {
    refresh() * 6
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub time: String,
    pub exclusive: bool,
    /// A prune's lock: shared with backups, exclusive against another prune. Written only when
    /// true, so every other lock keeps the bytes it had before prune existed (and older snap
    /// versions read a prune lock as the shared lock it also is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    /// A `snap run` job's lock (repo-format.md §10, job locks): held while the job runs so its
    /// next slot, on any host sharing the repository, is skipped instead of run twice. It
    /// conflicts only with a live lock of the same job; other takers pass it by. Written only
    /// when set, so every other lock keeps its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

impl LockInfo {
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        envelope::seal_file(key, Kind::Lock, &crate::cbor::to_vec(self))
    }

    /// Opens and decodes a lock file.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<LockInfo, EnvelopeError> {
        let plain = envelope::open_file(key, Kind::Lock, bytes)?;
        Self::decode_plain(&plain).map_err(EnvelopeError::Decode)
    }

    pub fn decode_plain(plain: &[u8]) -> Result<LockInfo, String> {
        crate::cbor::read(plain)
    }

    pub fn age(&self) -> Duration {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()
            // A time in the future (a clock ahead of ours) counts as fresh, never as stale.
            .map(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::MAX)
    }

    /// Whether the lock was taken on this host (so its process can be looked at).
    pub fn is_local(&self) -> bool {
        self.host == crate::hostname()
    }

    /// Stale: on this host, its process is gone (however old the lock: a live process may have a
    /// reason not to refresh, and it is the one to stop); on another host, not refreshed for
    /// [`stale_after`].
    pub fn is_stale(&self) -> bool {
        if self.is_local() {
            return !process_alive(self.pid);
        }
        self.age() > stale_after()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock by pid {} on {} ({}), {}s old{}",
            if let Some(j) = &self.job {
                format!("job {j:?}")
            } else if self.exclusive {
                "exclusive".into()
            } else if self.prune {
                "prune".into()
            } else {
                "shared".into()
            },
            self.pid,
            self.host,
            self.user,
            self.age().as_secs(),
            if self.is_stale() {
                ", stale: remove it with `snap unlock` if no snap runs there"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(pid: u32) -> LockInfo {
        LockInfo {
            host: crate::hostname(),
            pid,
            user: "u".into(),
            time: chrono::Utc::now().to_rfc3339(),
            exclusive: false,
            prune: false,
            job: None,
        }
    }

    #[test]
    fn impossible_pids_on_this_host_are_stale_not_process_groups() {
        assert!(!lock(std::process::id()).is_stale());
        // Cast unchecked, u32::MAX is kill(-1, 0), which succeeds: the lock looked live forever.
        assert!(lock(u32::MAX).is_stale());
        assert!(lock(0).is_stale());
        assert!(lock(1 << 31).is_stale());
    }
}
