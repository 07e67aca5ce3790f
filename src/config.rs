//! The repository config: the one file every command reads first, sealed with the master key.
//!
//! ```text
//! config = header(kind 1) | sealed CBOR map Config
//! ```
//! It holds what must stay fixed for the life of the repository (its id, the chunker parameters
//! and gear seed, so that every writer cuts the same content the same way) and defaults that a
//! writer may use (compression level, pack size target).

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::crypto::{CryptoError, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};
use crate::id::Id;

/// Default target for pack files: large enough that a 2 GiB repository is ~260 files, small enough
/// that a restore or check reads no more than it needs. A backup holds about four packs in memory
/// (one filling, two being written, one on its way back); 16 MiB packs cost 20–30 MiB more peak
/// memory than 8 MiB ones on the benchmark, for no measurable speed.
pub const DEFAULT_PACK_SIZE: u32 = 8 * 1024 * 1024;
/// Default for a repository behind a network (S3, SFTP), where every pack is a request (and, at
/// most providers, a price): 16 MiB, restic's default, halves the PUTs of a backup and the GETs
/// of a check or restore against 8 MiB. 32 MiB would halve them again, but a backup holds one
/// pack per walker and two being written, and at 32 MiB its peak memory (275 MiB measured on the
/// 2 GiB corpus) passed restic's.
pub const DEFAULT_REMOTE_PACK_SIZE: u32 = 16 * 1024 * 1024;
pub const DEFAULT_COMPRESSION: i32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: Id,
    pub chunker: ChunkerParams,
    /// Chunking for database dump streams: smaller, because a day of scattered row updates
    /// touches every large chunk of a dump (repo-format.md, "Chunking database streams").
    /// Absent in a config written before it existed: then the defaults with the same seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_chunker: Option<ChunkerParams>,
    pub compression: i32,
    pub pack_size: u32,
    pub created: String,
}

impl Config {
    /// The chunker parameters for database streams.
    pub fn db_chunker(&self) -> ChunkerParams {
        self.db_chunker
            .unwrap_or_else(|| ChunkerParams::db_default_with_seed(self.chunker.seed))
    }

    pub fn new(key: &MasterKey) -> Result<Config, CryptoError> {
        let mut id = [0u8; 32];
        crate::crypto::random_bytes(&mut id)?;
        Ok(Config {
            version: envelope::FORMAT_VERSION as u32,
            id: Id(id),
            chunker: ChunkerParams::default_with_seed(key.derive_u64("snap chunker gear seed")),
            db_chunker: Some(ChunkerParams::db_default_with_seed(
                key.derive_u64("snap chunker gear seed"),
            )),
            compression: DEFAULT_COMPRESSION,
            pack_size: DEFAULT_PACK_SIZE,
            created: chrono::Utc::now().to_rfc3339(),
        })
    }

    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        envelope::seal_file(key, Kind::Config, &crate::cbor::to_vec(self))
    }

    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Config, EnvelopeError> {
        let plain = envelope::open_file(key, Kind::Config, bytes)?;
        Self::decode_plain(&plain)
    }

    /// Decodes and validates the plaintext (the fuzzable half of `decode`).
    pub fn decode_plain(plain: &[u8]) -> Result<Config, EnvelopeError> {
        let c: Config = crate::cbor::read(plain).map_err(EnvelopeError::Decode)?;
        if c.version != envelope::FORMAT_VERSION as u32 {
            return Err(EnvelopeError::Decode(format!(
                "config is repository format version {}; this snap reads version {} (upgrade snap)",
                c.version,
                envelope::FORMAT_VERSION
            )));
        }
        c.chunker.validate().map_err(EnvelopeError::Decode)?;
        if let Some(db) = &c.db_chunker {
            db.validate().map_err(EnvelopeError::Decode)?;
        }
        if !(1..=22).contains(&c.compression) && c.compression != 0 {
            return Err(EnvelopeError::Decode(format!(
                "compression level {} out of range 0..=22",
                c.compression
            )));
        }
        if c.pack_size < 1024 * 1024 || c.pack_size > 1024 * 1024 * 1024 {
            return Err(EnvelopeError::Decode(format!(
                "pack size {} out of range 1 MiB..=1 GiB",
                c.pack_size
            )));
        }
        Ok(c)
    }
}
