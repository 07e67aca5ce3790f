//! Lock file contents: who holds a lock (host, pid, user), since when, and whether it is
//! exclusive; and when a lock counts as stale. Kept apart from the locking protocol
//! (`repo::lock`) so the decoder builds without RocksDB and can be fuzzed: lock files are
//! repository bytes that any snap process reads.
//!
//! ```text
//! locks/<blake3 of file> = header(kind 4) | sealed CBOR {host, pid, user, time (RFC 3339), exclusive}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};

/// A lock not refreshed for this long is stale (locks are refreshed every five minutes).
pub const STALE_AFTER: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub time: String,
    pub exclusive: bool,
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

    /// Stale: not refreshed for `STALE_AFTER`, or its process no longer exists on this host.
    pub fn is_stale(&self) -> bool {
        if self.age() > STALE_AFTER {
            return true;
        }
        if self.host == crate::hostname() {
            // The pid is read from the lock file: 0 and values beyond pid_t's range are no process
            // (cast unchecked they would become a process group or -1, "every process").
            let pid = match libc::pid_t::try_from(self.pid) {
                Ok(p) if p > 0 => p,
                _ => return true,
            };
            // SAFETY: kill with signal 0 only checks whether the pid exists.
            let r = unsafe { libc::kill(pid, 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return true;
            }
        }
        false
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock by pid {} on {} ({}), {}s old{}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
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
