//! Ids: 32-byte names of blobs, packs, snapshots and other repository files.
//!
//! Blob ids are keyed BLAKE3 of the plaintext (so the backend cannot confirm a guess of content);
//! file names are plain BLAKE3 of the stored bytes (so anyone can check that a file is the one its
//! name promises). Both are 32 bytes and print as 64 lowercase hex digits.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of every id in bytes.
pub const ID_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// The name of a repository file: unkeyed BLAKE3 of its bytes.
    pub fn of_file_bytes(bytes: &[u8]) -> Id {
        Id(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parses exactly 64 hex digits; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; ID_LEN];
        if s.len() != ID_LEN * 2 {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Id> {
        <[u8; ID_LEN]>::try_from(b).ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

// Ids are CBOR byte strings (32 bytes, half the size of an array of integers) on disk, and hex
// strings in human-readable formats such as `--json` output.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return Id::from_hex(&s)
                .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"));
        }
        let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
        Id::from_slice(&b).ok_or_else(|| serde::de::Error::invalid_length(b.len(), &"32 bytes"))
    }
}
