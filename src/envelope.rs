//! The envelope every repository file and blob shares: an 8-byte header and a sealed body.
//!
//! ```text
//! file   = magic "SNAP" (4) | kind (1) | version (1) | reserved 0x0000 (2) | body
//! body   = nonce (12) | AES-256-GCM-SIV ciphertext | tag (16)        (key files: see keyfile)
//! AD     = the 8 header bytes [| bound id (32)]
//! ```
//! The header is plaintext so a reader can name the kind and reject an unknown format version
//! before trying a key, and it is part of the associated data so it cannot be altered. Pack files
//! use the same 8-byte header but their body is blobs (see `pack`).

use crate::crypto::{CryptoError, MasterKey};
use crate::id::Id;

pub const MAGIC: &[u8; 4] = b"SNAP";
pub const HEADER_LEN: usize = 8;
/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// What a sealed object is; the byte is part of every object's associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Config = 1,
    Key = 2,
    Snapshot = 3,
    Lock = 4,
    Pack = 5,
    PackHeader = 6,
    DataBlob = 7,
    TreeBlob = 8,
    /// `prune/<id>`: which packs a prune marked for deletion or deleted (`prune::record`).
    PruneRecord = 9,
    /// `audit/<id>`: one repository-changing action, who did it and when (`auditfile`).
    AuditRecord = 10,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Config,
            2 => Kind::Key,
            3 => Kind::Snapshot,
            4 => Kind::Lock,
            5 => Kind::Pack,
            6 => Kind::PackHeader,
            7 => Kind::DataBlob,
            8 => Kind::TreeBlob,
            9 => Kind::PruneRecord,
            10 => Kind::AuditRecord,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Key => "key",
            Kind::Snapshot => "snapshot",
            Kind::Lock => "lock",
            Kind::Pack => "pack",
            Kind::PackHeader => "pack header",
            Kind::DataBlob => "data blob",
            Kind::TreeBlob => "tree blob",
            Kind::PruneRecord => "prune record",
            Kind::AuditRecord => "audit record",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("too short to be a snap {0} ({1} bytes)")]
    Short(&'static str, usize),
    #[error("not a snap repository file (bad magic)")]
    Magic,
    #[error("expected a {expected}, found kind byte {found}")]
    WrongKind { expected: &'static str, found: u8 },
    #[error(
        "written by repository format version {0}; this snap reads version {FORMAT_VERSION} (upgrade snap)"
    )]
    Version(u8),
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

pub fn header(kind: Kind) -> [u8; HEADER_LEN] {
    [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        kind as u8,
        FORMAT_VERSION,
        0,
        0,
    ]
}

/// Checks magic, kind and version; returns the rest of the bytes.
pub fn check_header(kind: Kind, bytes: &[u8]) -> Result<&[u8], EnvelopeError> {
    if bytes.len() < HEADER_LEN {
        return Err(EnvelopeError::Short(kind.name(), bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(EnvelopeError::Magic);
    }
    if bytes[4] != kind as u8 {
        return Err(EnvelopeError::WrongKind {
            expected: kind.name(),
            found: bytes[4],
        });
    }
    if bytes[5] != FORMAT_VERSION {
        return Err(EnvelopeError::Version(bytes[5]));
    }
    // The associated data is the expected header, so every header byte must be exactly that.
    if bytes[6] != 0 || bytes[7] != 0 {
        return Err(EnvelopeError::Decode(
            "reserved header bytes are not zero".into(),
        ));
    }
    Ok(&bytes[HEADER_LEN..])
}

fn ad(kind: Kind, bound: Option<&Id>) -> Vec<u8> {
    let mut ad = header(kind).to_vec();
    if let Some(id) = bound {
        ad.extend_from_slice(&id.0);
    }
    ad
}

/// A whole sealed file: header then sealed body.
pub fn seal_file(key: &MasterKey, kind: Kind, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = header(kind).to_vec();
    out.extend_from_slice(&key.seal(&ad(kind, None), plaintext)?);
    Ok(out)
}

pub fn open_file(key: &MasterKey, kind: Kind, bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let body = check_header(kind, bytes)?;
    Ok(key.open(&ad(kind, None), body)?)
}

/// A sealed blob or pack header, without a file header: only the AD carries kind and id.
pub fn seal_bound(
    key: &MasterKey,
    kind: Kind,
    bound: Option<&Id>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    key.seal(&ad(kind, bound), plaintext)
}

/// [`seal_bound`] over `buf[NONCE_LEN..]`, in place (see [`MasterKey::seal_in_place`]).
pub fn seal_bound_in_place(
    key: &MasterKey,
    kind: Kind,
    bound: Option<&Id>,
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    key.seal_in_place(&ad(kind, bound), buf)
}

/// [`open_bound`] in place; returns the plaintext's range inside `sealed`.
pub fn open_bound_in_place(
    key: &MasterKey,
    kind: Kind,
    bound: Option<&Id>,
    sealed: &mut [u8],
) -> Result<std::ops::Range<usize>, CryptoError> {
    key.open_in_place(&ad(kind, bound), sealed)
}

pub fn open_bound(
    key: &MasterKey,
    kind: Kind,
    bound: Option<&Id>,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    key.open(&ad(kind, bound), sealed)
}
