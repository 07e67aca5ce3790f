//! Key files: the master key sealed under a password, one file per password in `keys/`.
//!
//! ```text
//! keys/<blake3 of file> = header(kind 2) | CBOR map KeyFile
//! KeyFile.sealed        = nonce(12) | AES-256-GCM-SIV(argon2id(password, salt), enc key || id key) | tag(16)
//! AD                    = header(kind 2) | salt
//! ```
//! The KDF parameters live in the file so they can be raised later without a format change; they
//! are bounded on read so a hostile key file cannot make snap allocate unbounded memory.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, KEY_LEN, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};

pub const SALT_LEN: usize = 16;
/// Default argon2id cost: 64 MiB, 3 passes, 1 lane (about 0.2 s here).
pub const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
pub const DEFAULT_ITERATIONS: u32 = 3;
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFile {
    pub kdf: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    pub host: String,
    pub user: String,
    pub created: String,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    #[error("not a valid key file: {0}")]
    Decode(String),
    #[error("unsupported key derivation {0:?}")]
    Kdf(String),
    #[error("key derivation parameters out of range: {0}")]
    Params(String),
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

fn derive(kf: &KeyFile, password: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
    if kf.kdf != "argon2id" {
        return Err(KeyFileError::Kdf(kf.kdf.clone()));
    }
    if kf.memory_kib > MAX_MEMORY_KIB
        || kf.iterations > MAX_ITERATIONS
        || kf.lanes > MAX_LANES
        || kf.lanes == 0
    {
        return Err(KeyFileError::Params(format!(
            "m={} KiB t={} p={}",
            kf.memory_kib, kf.iterations, kf.lanes
        )));
    }
    let params = Params::new(kf.memory_kib, kf.iterations, kf.lanes, Some(KEY_LEN))
        .map_err(|e| KeyFileError::Params(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, &kf.salt, &mut *out)
        .map_err(|e| KeyFileError::Params(e.to_string()))?;
    Ok(out)
}

fn ad(salt: &[u8]) -> Vec<u8> {
    let mut ad = envelope::header(Kind::Key).to_vec();
    ad.extend_from_slice(salt);
    ad
}

impl KeyFile {
    /// Seals `master` under `password` with the given argon2id cost.
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        memory_kib: u32,
        iterations: u32,
    ) -> Result<KeyFile, KeyFileError> {
        let mut salt = vec![0u8; SALT_LEN];
        crypto::random_bytes(&mut salt)?;
        let mut kf = KeyFile {
            kdf: "argon2id".into(),
            memory_kib,
            iterations,
            lanes: 1,
            salt,
            host: crate::hostname(),
            user: crate::username(),
            created: chrono::Utc::now().to_rfc3339(),
            sealed: Vec::new(),
        };
        let key = derive(&kf, password)?;
        kf.sealed = crypto::seal_with(
            &crypto::cipher_from(&key),
            &ad(&kf.salt),
            &master.to_bytes(),
        )?;
        Ok(kf)
    }

    pub fn open(&self, password: &[u8]) -> Result<MasterKey, KeyFileError> {
        let key = derive(self, password)?;
        let plain = crypto::open_with(&crypto::cipher_from(&key), &ad(&self.salt), &self.sealed)
            .map_err(|_| KeyFileError::WrongPassword)?;
        let plain = Zeroizing::new(plain);
        MasterKey::from_bytes(&plain)
            .ok_or_else(|| KeyFileError::Decode("master key is not 64 bytes".into()))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = envelope::header(Kind::Key).to_vec();
        crate::cbor::write(&mut out, self);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KeyFile, KeyFileError> {
        let body = envelope::check_header(Kind::Key, bytes)?;
        crate::cbor::read(body).map_err(KeyFileError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_password_is_distinct() {
        let m = MasterKey::generate().unwrap();
        let kf = KeyFile::create(&m, b"right", 256, 1).unwrap();
        let kf = KeyFile::decode(&kf.encode()).unwrap();
        assert_eq!(kf.open(b"right").unwrap().blob_id(b"a"), m.blob_id(b"a"));
        assert!(matches!(
            kf.open(b"wrong"),
            Err(KeyFileError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_params_are_refused_before_allocating() {
        let m = MasterKey::generate().unwrap();
        let mut kf = KeyFile::create(&m, b"pw", 256, 1).unwrap();
        kf.memory_kib = u32::MAX;
        assert!(matches!(kf.open(b"pw"), Err(KeyFileError::Params(_))));
    }
}
