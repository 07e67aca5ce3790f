//! Audit record contents: who (key id, host, user, pid) did what (an [`Action`]) to the
//! repository, when, whether it succeeded, and a short summary of what changed. One record per
//! action, sealed as `audit/<id>` (kind 10) and never rewritten or removed. Kept apart from
//! writing and listing records (`audit`) so the decoder builds without RocksDB and can be fuzzed:
//! audit records are repository bytes any snap process reads.
//!
//! ```text
//! audit/<BLAKE3 of file> = header(kind 10) | sealed CBOR AuditRecord        AD = header(kind 10)
//! AuditRecord = {time: text, action: text, key: text, host: text, user: text, pid: u32,
//!                ok: bool, ? error: text, summary: Summary}
//! ```
//! `action` is text, not a closed enum on read: a record written by a newer snap with an action
//! this one does not know still lists. Summary fields are written only when they say something,
//! so a record is as short as its action.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};
use crate::id::Id;

/// The folder of audit records.
pub const DIR: &str = "audit";
/// The longest error message a record keeps (a failure's message, cut on a char boundary).
pub const MAX_ERROR_LEN: usize = 1000;

/// Every repository-changing action snap records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Init,
    Backup,
    Forget,
    Prune,
    KeyAdd,
    KeyRemove,
    KeyPasswd,
    /// `snap copy` / `backup --copy-to`, recorded in the destination repository.
    Copy,
    /// `mysql restore`: the `pre-restore` snapshot it writes.
    MysqlRestore,
    /// `unlock` removing lock files.
    Unlock,
}

impl Action {
    /// The text stored in a record and shown by `snap audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Backup => "backup",
            Action::Forget => "forget",
            Action::Prune => "prune",
            Action::KeyAdd => "key-add",
            Action::KeyRemove => "key-remove",
            Action::KeyPasswd => "key-passwd",
            Action::Copy => "copy",
            Action::MysqlRestore => "mysql-restore",
            Action::Unlock => "unlock",
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an action changed. Every field is optional on disk (written only when non-empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots_added: Vec<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots_removed: Vec<Id>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packs_added: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packs_deleted: u64,
    /// Bytes stored in new packs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_added: u64,
    /// Bytes of pack files deleted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_deleted: u64,
    /// Key file ids (hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_removed: Vec<String>,
    /// Lock files removed (`unlock`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks_removed: Vec<String>,
    /// Anything else worth one line (the source of a copy, an append-only key added, a database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC, when the record was written (the writer's clock).
    pub time: String,
    pub action: String,
    /// The id of the key file that opened the repository.
    pub key: String,
    pub host: String,
    pub user: String,
    pub pid: u32,
    /// False for an action that failed part-way (prune, forget): `summary` says what it did.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub summary: Summary,
}

impl AuditRecord {
    /// A record of `action` by this process, now, with the key `key_id`; `error` for a failure.
    pub fn new(action: Action, key_id: &str, summary: Summary, error: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: chrono::Utc::now().to_rfc3339(),
            action: action.as_str().to_string(),
            key: key_id.to_string(),
            host: crate::hostname(),
            user: crate::username(),
            pid: std::process::id(),
            ok: error.is_none(),
            error: error.map(|e| truncate(e, MAX_ERROR_LEN)),
            summary,
        }
    }

    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        envelope::seal_file(key, Kind::AuditRecord, &crate::cbor::to_vec(self))
    }

    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<AuditRecord, EnvelopeError> {
        let plain = envelope::open_file(key, Kind::AuditRecord, bytes)?;
        crate::cbor::read(&plain).map_err(EnvelopeError::Decode)
    }

    /// `time` as an instant, for ordering (an unparseable time sorts first).
    pub fn time_parsed(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.time).ok()
    }
}

/// At most `max` bytes of `s`, cut on a char boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> MasterKey {
        MasterKey::from_parts([1; 32], [2; 32])
    }

    #[test]
    fn round_trip_and_short_when_empty() {
        let r = AuditRecord::new(Action::Backup, "ab", Summary::default(), None);
        let back = AuditRecord::decode(&key(), &r.encode(&key()).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(r.ok);
        let plain = crate::cbor::to_vec(&r);
        assert!(!String::from_utf8_lossy(&plain).contains("snapshots_added"));
        // Another kind's file does not decode as an audit record.
        let lock = envelope::seal_file(&key(), Kind::Lock, &plain).unwrap();
        assert!(AuditRecord::decode(&key(), &lock).is_err());
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_ERROR_LEN);
        let r = AuditRecord::new(Action::Prune, "ab", Summary::default(), Some(&msg));
        let e = r.error.unwrap();
        assert!(e.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(!r.ok);
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            action in "[a-z-]{0,20}", host in ".{0,20}", pid: u32, ok: bool,
            err in proptest::option::of(".{0,40}"),
            added in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            packs: u64, bytes: u64, note in proptest::option::of(".{0,20}"),
        ) {
            let r = AuditRecord {
                time: "2026-12-01T10:00:00+00:00".into(),
                action, key: "k".into(), host, user: "u".into(), pid, ok, error: err,
                summary: Summary {
                    snapshots_added: added.into_iter().map(Id).collect(),
                    packs_deleted: packs, bytes_deleted: bytes, note,
                    ..Summary::default()
                },
            };
            let plain = crate::cbor::to_vec(&r);
            prop_assert_eq!(crate::cbor::read::<AuditRecord>(&plain).unwrap(), r.clone());
            prop_assert_eq!(AuditRecord::decode(&key(), &r.encode(&key()).unwrap()).unwrap(), r);
        }
    }
}
