//! Key files: the master key sealed under a password, one file per password in `keys/`.
//!
//! ```text
//! keys/<blake3 of file> = header(kind 2) | CBOR map KeyFile
//! KeyFile.sealed        = nonce(12) | AES-256-GCM-SIV(argon2id(password, salt), enc key || id key) | tag(16)
//! AD                    = header(kind 2) | salt [| "append-only"]
//! ```
//! A key file may be *append-only* (`snap key add --append-only`): a process that opens the
//! repository with it may add files but not delete or overwrite any (`backend::append_only`).
//! The flag is a CBOR field written only when true, so every key file written before it existed
//! keeps its bytes and stays a full key; and when true it is also bound into the associated data
//! of `sealed`, so clearing the flag in the file makes it stop opening instead of turning it into
//! a full key. (Someone who holds the password also holds the master key and can write a full key
//! file with a modified client: the flag stops honest clients and mistakes; storage permissions
//! stop an attacker, see README.)
//! The KDF parameters live in the file so they can be raised later without a format change; they
//! are bounded on read so a hostile key file cannot make snap allocate unbounded memory.
//!
//! New key files (init, key add, key passwd) must cost at least [`MIN_MEMORY_KIB`] of argon2id
//! memory, OWASP's minimum for argon2id; `create` refuses less. Existing key files below that
//! floor still open (earlier versions and tests wrote them, and refusing them would lock their
//! owners out); [`KeyFile::below_floor`] lets a caller suggest `snap key passwd` to rewrite one.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, KEY_LEN, MasterKey};
use crate::envelope::{self, EnvelopeError, Kind};

pub const SALT_LEN: usize = 16;
/// Default argon2id cost: 64 MiB, 3 passes, 1 lane (about 0.2 s here).
pub const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
pub const DEFAULT_ITERATIONS: u32 = 3;
/// The least argon2id memory a new key file may use: 19 MiB, OWASP's minimum for argon2id
/// (Password Storage Cheat Sheet, m=19456 KiB). Below it a stolen key file is cheap to attack.
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
/// The most a key file may ask for (read and write): 4 GiB, so a hostile file cannot exhaust memory.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 16;
/// Salts snap writes are `SALT_LEN` bytes; argon2 needs at least 8; more than this is damage.
const MAX_SALT_LEN: usize = 64;
/// `sealed` is always nonce ‖ the 64-byte master key ‖ tag.
pub const SEALED_LEN: usize = crypto::SEAL_OVERHEAD + 2 * KEY_LEN;

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
    /// Opens the repository for adding only (see the module doc). Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
}

/// Appended to the AD of an append-only key file's `sealed`, binding the flag to the seal.
pub const APPEND_ONLY_AD: &[u8] = b"append-only";

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
    #[error(
        "argon2id memory of {memory_kib} KiB is below the floor of {MIN_MEMORY_KIB} KiB (19 MiB, \
         OWASP's minimum) for a new key file; choose at least {MIN_MEMORY_KIB} KiB"
    )]
    BelowFloor { memory_kib: u32 },
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
            "m={} KiB t={} p={} (at most m={MAX_MEMORY_KIB} t={MAX_ITERATIONS} p={MAX_LANES})",
            kf.memory_kib, kf.iterations, kf.lanes
        )));
    }
    // Checked before the (deliberately slow) derivation, so damage costs nothing.
    if kf.salt.len() < 8 || kf.salt.len() > MAX_SALT_LEN {
        return Err(KeyFileError::Decode(format!(
            "salt of {} bytes (8 to {MAX_SALT_LEN} expected)",
            kf.salt.len()
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

fn ad(salt: &[u8], append_only: bool) -> Vec<u8> {
    let mut ad = envelope::header(Kind::Key).to_vec();
    ad.extend_from_slice(salt);
    if append_only {
        ad.extend_from_slice(APPEND_ONLY_AD);
    }
    ad
}

impl KeyFile {
    /// Seals `master` under `password` with the given argon2id cost; a memory cost below
    /// [`MIN_MEMORY_KIB`] is refused ([`KeyFileError::BelowFloor`]).
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        memory_kib: u32,
        iterations: u32,
    ) -> Result<KeyFile, KeyFileError> {
        Self::create_with(master, password, memory_kib, iterations, false)
    }

    /// [`KeyFile::create`], append-only when `append_only` (the flag is sealed in, see above).
    pub fn create_with(
        master: &MasterKey,
        password: &[u8],
        memory_kib: u32,
        iterations: u32,
        append_only: bool,
    ) -> Result<KeyFile, KeyFileError> {
        if memory_kib < MIN_MEMORY_KIB {
            return Err(KeyFileError::BelowFloor { memory_kib });
        }
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
            append_only,
        };
        let key = derive(&kf, password)?;
        kf.sealed = crypto::seal_with(
            &crypto::cipher_from(&key),
            &ad(&kf.salt, kf.append_only),
            &master.to_bytes(),
        )?;
        Ok(kf)
    }

    /// Whether this (existing) key file costs less than a new one may: it still opens, but a
    /// caller may suggest `snap key passwd` to rewrite it at the current cost.
    pub fn below_floor(&self) -> bool {
        self.memory_kib < MIN_MEMORY_KIB
    }

    pub fn open(&self, password: &[u8]) -> Result<MasterKey, KeyFileError> {
        // Checked before the (deliberately slow) derivation, so damage costs nothing.
        if self.sealed.len() != SEALED_LEN {
            return Err(KeyFileError::Decode(format!(
                "sealed master key of {} bytes ({SEALED_LEN} expected)",
                self.sealed.len()
            )));
        }
        let key = derive(self, password)?;
        let plain = crypto::open_with(
            &crypto::cipher_from(&key),
            &ad(&self.salt, self.append_only),
            &self.sealed,
        )
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
        let kf = KeyFile::create(&m, b"right", MIN_MEMORY_KIB, 1).unwrap();
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
        let mut kf = KeyFile::create(&m, b"pw", MIN_MEMORY_KIB, 1).unwrap();
        kf.memory_kib = u32::MAX;
        assert!(matches!(kf.open(b"pw"), Err(KeyFileError::Params(_))));
    }

    #[test]
    fn new_keys_below_the_floor_are_refused_old_ones_still_open() {
        let m = MasterKey::generate().unwrap();
        let e = KeyFile::create(&m, b"pw", MIN_MEMORY_KIB - 1, 1).unwrap_err();
        assert!(
            matches!(e, KeyFileError::BelowFloor { memory_kib } if memory_kib == MIN_MEMORY_KIB - 1)
        );
        assert!(e.to_string().contains("19456"), "{e}");
        let kf = KeyFile::create(&m, b"pw", MIN_MEMORY_KIB, 1).unwrap();
        assert!(!kf.below_floor());
        // A key file written below the floor (as earlier versions and tests did) still opens.
        let mut old = kf.clone();
        old.memory_kib = 1024;
        let key = derive(&old, b"pw").unwrap();
        old.sealed = crypto::seal_with(
            &crypto::cipher_from(&key),
            &ad(&old.salt, false),
            &m.to_bytes(),
        )
        .unwrap();
        assert!(old.below_floor());
        assert_eq!(old.open(b"pw").unwrap().blob_id(b"a"), m.blob_id(b"a"));
    }

    #[test]
    fn append_only_flag_is_bound_to_the_seal() {
        let m = MasterKey::generate().unwrap();
        let kf = KeyFile::create_with(&m, b"pw", MIN_MEMORY_KIB, 1, true).unwrap();
        let back = KeyFile::decode(&kf.encode()).unwrap();
        assert!(back.append_only);
        assert_eq!(back.open(b"pw").unwrap().blob_id(b"a"), m.blob_id(b"a"));
        // Clearing the flag does not make a full key: the seal no longer opens.
        let mut cleared = back.clone();
        cleared.append_only = false;
        assert!(matches!(
            cleared.open(b"pw"),
            Err(KeyFileError::WrongPassword)
        ));
        // A full key file has no such field at all (its bytes are unchanged).
        let full = KeyFile::create(&m, b"pw", MIN_MEMORY_KIB, 1).unwrap();
        assert!(!full.append_only);
        assert!(!String::from_utf8_lossy(&full.encode()).contains("append_only"));
    }

    #[test]
    fn damaged_salt_or_seal_is_refused_before_deriving() {
        let m = MasterKey::generate().unwrap();
        let kf = KeyFile::create(&m, b"pw", MIN_MEMORY_KIB, 1).unwrap();
        let mut big = kf.clone();
        big.salt = vec![7; 1 << 20];
        assert!(matches!(big.open(b"pw"), Err(KeyFileError::Decode(_))));
        let mut short = kf.clone();
        short.sealed.pop();
        assert!(matches!(short.open(b"pw"), Err(KeyFileError::Decode(_))));
    }
}
