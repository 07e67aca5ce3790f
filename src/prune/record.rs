//! The prune record: `prune/<id>`, the repository's memory of which packs a prune marked for
//! deletion (and when) and which it deleted. It lives in the repository, not only in the local
//! index cache, so another host, or this host with a rebuilt cache, learns that a pack is going
//! (and must not be deduplicated against) or is gone (and can be dropped from its index without
//! re-reading every pack header).
//!
//! ```text
//! prune/<BLAKE3 of file> = header(kind 9) | sealed CBOR PruneRecord        AD = header(kind 9)
//! ```
//! Files are immutable: every change writes a new record with `generation` one higher than the
//! newest before it, then removes the older ones. Readers use the readable record with the
//! highest generation (ties: the larger file id); a crash between the write and the removals
//! leaves old records that simply lose.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::envelope::{self, EnvelopeError, Kind};
use crate::error::Result;
use crate::id::Id;

/// The folder of prune records.
pub const DIR: &str = "prune";
/// How long a deleted pack stays listed, so hosts whose cache still names it drop it cheaply
/// (an older cache falls back to rebuilding its index, which is always correct).
pub const DELETED_KEEP_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedPack {
    pub pack: Id,
    /// Pack file size in bytes.
    pub size: u64,
    /// When a prune found no snapshot using it (Unix seconds, UTC).
    pub marked_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedPack {
    pub pack: Id,
    /// When the prune decided to delete it, under the exclusive lock (Unix seconds, UTC). The
    /// record is written before the file is removed: a listed pack may still be present.
    pub deleted_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub generation: u64,
    /// When written, RFC 3339 UTC.
    pub time: String,
    pub host: String,
    pub marked: Vec<MarkedPack>,
    pub deleted: Vec<DeletedPack>,
}

impl PruneRecord {
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        Ok(envelope::seal_file(
            key,
            Kind::PruneRecord,
            &crate::cbor::to_vec(self),
        )?)
    }

    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<PruneRecord, EnvelopeError> {
        let plain = envelope::open_file(key, Kind::PruneRecord, bytes)?;
        crate::cbor::read(&plain).map_err(EnvelopeError::Decode)
    }

    pub fn deleted_ids(&self) -> HashSet<Id> {
        self.deleted.iter().map(|d| d.pack).collect()
    }
}

/// The newest readable record, its path, the paths of every other readable record, and notes
/// about records that could not be read (skipped: losing a record only delays deletion, since
/// every deletion is decided again under the exclusive lock).
#[derive(Default)]
pub struct Records {
    pub newest: Option<(String, PruneRecord)>,
    pub older: Vec<String>,
    pub notes: Vec<String>,
}

pub fn load(backend: &dyn Backend, key: &MasterKey) -> Result<Records> {
    let mut out = Records::default();
    for (path, _) in backend.list(DIR)? {
        let rec = match backend.read(&path) {
            Ok(b)
                if path.rsplit('/').next().and_then(Id::from_hex)
                    != Some(Id::of_file_bytes(&b)) =>
            {
                out.notes.push(format!(
                    "prune record {path} does not match its name (damaged); ignored"
                ));
                continue;
            }
            Ok(b) => PruneRecord::decode(key, &b),
            // Removed by a prune between listing and reading: an older record.
            Err(_) if !backend.exists(&path)? => continue,
            Err(e) => return Err(e),
        };
        match rec {
            Ok(r) => {
                let newer = match &out.newest {
                    None => true,
                    Some((p, n)) => (r.generation, path.as_str()) > (n.generation, p.as_str()),
                };
                if newer {
                    if let Some((p, _)) = out.newest.replace((path, r)) {
                        out.older.push(p);
                    }
                } else {
                    out.older.push(path);
                }
            }
            Err(e) => out
                .notes
                .push(format!("prune record {path} cannot be read ({e}); ignored")),
        }
    }
    Ok(out)
}

/// Writes `rec` as a new record file; returns its path.
pub fn write(backend: &dyn Backend, key: &MasterKey, rec: &PruneRecord) -> Result<String> {
    let bytes = rec.encode(key)?;
    let path = format!("{DIR}/{}", Id::of_file_bytes(&bytes));
    backend
        .write(&path, &bytes)
        .map_err(|e| e.context("writing the prune record"))?;
    Ok(path)
}

/// Writes `rec` and removes every record it supersedes.
pub fn replace(backend: &dyn Backend, key: &MasterKey, rec: &PruneRecord) -> Result<String> {
    let before = load(backend, key)?;
    let path = write(backend, key, rec)?;
    for p in before
        .older
        .into_iter()
        .chain(before.newest.map(|(p, _)| p))
        .filter(|p| *p != path)
    {
        backend.remove(&p)?;
    }
    Ok(path)
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = MasterKey::generate().unwrap();
        let rec = PruneRecord {
            generation: 3,
            time: "2026-12-01T00:00:00+00:00".into(),
            host: "h".into(),
            marked: vec![MarkedPack {
                pack: Id([1; 32]),
                size: 10,
                marked_at: 5,
            }],
            deleted: vec![DeletedPack {
                pack: Id([2; 32]),
                deleted_at: 7,
            }],
        };
        let b = rec.encode(&key).unwrap();
        assert_eq!(&b[..8], &envelope::header(Kind::PruneRecord));
        assert_eq!(PruneRecord::decode(&key, &b).unwrap(), rec);
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(PruneRecord::decode(&key, &bad).is_err());
    }
}
