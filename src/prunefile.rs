//! Prune record contents: which packs a prune marked for deletion (and when) and which it
//! deleted, sealed as `prune/<id>` (kind 9). Kept apart from reading and writing records
//! (`prune::record`) so the decoder builds without RocksDB and can be fuzzed and property-tested:
//! records are repository bytes every snap process reads.
//!
//! ```text
//! prune/<BLAKE3 of file> = header(kind 9) | sealed CBOR PruneRecord        AD = header(kind 9)
//! PruneRecord = {generation: u64, time: text, host: text,
//!                marked: [{pack: bytes(32), size: u64, marked_at: i64}],
//!                deleted: [{pack: bytes(32), deleted_at: i64}]}
//! ```

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};
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
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        envelope::seal_file(key, Kind::PruneRecord, &crate::cbor::to_vec(self))
    }

    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<PruneRecord, EnvelopeError> {
        let plain = envelope::open_file(key, Kind::PruneRecord, bytes)?;
        crate::cbor::read(&plain).map_err(EnvelopeError::Decode)
    }

    pub fn deleted_ids(&self) -> HashSet<Id> {
        self.deleted.iter().map(|d| d.pack).collect()
    }
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
