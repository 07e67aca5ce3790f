//! Keys and sealing: the master key, keyed BLAKE3 blob ids, and AES-256-GCM-SIV envelopes.
//!
//! One random master key per repository holds two independent 32-byte halves: `enc` seals every
//! object, `id` keys BLAKE3 so blob ids reveal nothing about content to someone without the key.
//! Every sealed object is `nonce(12) | ciphertext | tag(16)` with a fresh random nonce and
//! associated data that binds it to its kind (and, for blobs, its id), so a swapped or altered
//! object fails authentication instead of being decoded. GCM-SIV is chosen because an accidental
//! nonce repeat (two machines, one key, bad randomness) only reveals equality of messages instead of
//! breaking the key stream as plain GCM would.
//!
//! Key material is wiped when it is dropped: the raw halves are `Zeroizing`, and the AES key
//! schedule inside each cipher is wiped by the `aes` crate's `zeroize` feature (enabled in
//! Cargo.toml; a compile-time assertion below fails the build if it is ever turned off).

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::id::Id;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed (the bytes were altered, or belong elsewhere)")]
    Auth,
    #[error("sealed object too short ({0} bytes)")]
    Short(usize),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

// The cipher's key schedule must be wiped on drop; this stops compiling if the `zeroize` features
// of `aes`/`aes-gcm-siv` are lost from Cargo.toml.
const _: fn() = || {
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<aes::Aes256>();
    wiped_on_drop::<Zeroizing<[u8; KEY_LEN]>>();
};

/// The repository master key. Cloning is cheap enough (two keys and a cipher schedule). Every
/// field is wiped on drop (see the module docs), hence `ZeroizeOnDrop`.
#[derive(Clone)]
pub struct MasterKey {
    enc: Zeroizing<[u8; KEY_LEN]>,
    id: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256GcmSiv,
}

impl MasterKey {
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut enc = Zeroizing::new([0u8; KEY_LEN]);
        let mut id = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(&mut *enc)?;
        random_bytes(&mut *id)?;
        Ok(MasterKey::from_zeroizing(enc, id))
    }

    pub fn from_parts(enc: [u8; KEY_LEN], id: [u8; KEY_LEN]) -> MasterKey {
        MasterKey::from_zeroizing(Zeroizing::new(enc), Zeroizing::new(id))
    }

    /// Builds the key from halves already in wiped-on-drop storage, so no unwiped copy is left
    /// on the stack by the callers inside this module.
    fn from_zeroizing(enc: Zeroizing<[u8; KEY_LEN]>, id: Zeroizing<[u8; KEY_LEN]>) -> MasterKey {
        let cipher = Aes256GcmSiv::new(&(*enc).into());
        MasterKey { enc, id, cipher }
    }

    /// `enc || id`, the 64 bytes a key file protects.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(2 * KEY_LEN));
        v.extend_from_slice(&*self.enc);
        v.extend_from_slice(&*self.id);
        v
    }

    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != 2 * KEY_LEN {
            return None;
        }
        let mut enc = Zeroizing::new([0u8; KEY_LEN]);
        let mut id = Zeroizing::new([0u8; KEY_LEN]);
        enc.copy_from_slice(&b[..KEY_LEN]);
        id.copy_from_slice(&b[KEY_LEN..]);
        Some(MasterKey::from_zeroizing(enc, id))
    }

    /// A new master key with a fresh random `enc` half and this key's `id` half: what
    /// `snap init --from-repo` gives a repository that shares blob ids with another (so `copy`
    /// moves blobs between them without re-chunking or rewriting trees) while nothing sealed in
    /// one can be opened with the other's key.
    pub fn with_new_enc(&self) -> Result<MasterKey, CryptoError> {
        let mut enc = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(&mut *enc)?;
        Ok(MasterKey::from_zeroizing(enc, self.id.clone()))
    }

    /// Whether both keys name blobs alike (equal `id` halves), compared in constant time.
    pub fn shares_id_key(&self, other: &MasterKey) -> bool {
        let diff = self
            .id
            .iter()
            .zip(other.id.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }

    /// Blob id: BLAKE3 keyed with the id key over the plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// A derived 64-bit value for keyed purposes (the chunker's gear seed), so chunk boundaries
    /// depend on the key and cannot be used to fingerprint known files by their sizes.
    pub fn derive_u64(&self, context: &str) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.id);
        h.update(context.as_bytes());
        let mut out = h.finalize();
        // The hasher's state holds the id key's words.
        h.zeroize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out.as_bytes()[..8]);
        out.zeroize();
        u64::from_le_bytes(b)
    }

    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.cipher, ad, plaintext)
    }

    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.cipher, ad, sealed)
    }

    /// Seals `buf[NONCE_LEN..]` where it lies: `buf[..NONCE_LEN]` is room for the nonce and the
    /// tag is appended, giving the same bytes as [`MasterKey::seal`] without copying the
    /// plaintext (blobs are the bulk of a backup's bytes).
    pub fn seal_in_place(&self, ad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if buf.len() < NONCE_LEN {
            return Err(CryptoError::Short(buf.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), ad, (&mut buf[NONCE_LEN..]).into())
            .map_err(|_| CryptoError::Auth)?;
        buf.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// Opens `sealed` where it lies; returns where the plaintext now is inside it.
    pub fn open_in_place(
        &self,
        ad: &[u8],
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, CryptoError> {
        let (nonce, tag, body) = split(sealed)?;
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                ad,
                (&mut sealed[body.clone()]).into(),
                &Tag::from(tag),
            )
            .map_err(|_| CryptoError::Auth)?;
        Ok(body)
    }
}

impl ZeroizeOnDrop for MasterKey {}

/// A cipher from a raw 32-byte key (the argon2id-derived key of a key file).
pub fn cipher_from(key: &[u8; KEY_LEN]) -> Aes256GcmSiv {
    Aes256GcmSiv::new(&(*key).into())
}

pub fn seal_with(
    cipher: &Aes256GcmSiv,
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), ad, (&mut out[NONCE_LEN..]).into())
        .map_err(|_| CryptoError::Auth)?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Nonce, tag and ciphertext range of a sealed object (`nonce ‖ ciphertext ‖ tag`).
type Parts = ([u8; NONCE_LEN], [u8; TAG_LEN], std::ops::Range<usize>);

fn split(sealed: &[u8]) -> Result<Parts, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Short(sealed.len()));
    }
    let tag_at = sealed.len() - TAG_LEN;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&sealed[tag_at..]);
    Ok((nonce, tag, NONCE_LEN..tag_at))
}

pub fn open_with(cipher: &Aes256GcmSiv, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (nonce, tag, body) = split(sealed)?;
    let mut out = sealed[body].to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            ad,
            (&mut out[..]).into(),
            &Tag::from(tag),
        )
        .map_err(|_| CryptoError::Auth)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = MasterKey::generate().unwrap();
        let s = k.seal(b"kind-a", b"hello").unwrap();
        assert_eq!(s.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(k.open(b"kind-a", &s).unwrap(), b"hello");
        assert!(matches!(k.open(b"kind-b", &s), Err(CryptoError::Auth)));
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(b"hello");
        k.seal_in_place(b"kind-a", &mut buf).unwrap();
        assert_eq!(k.open(b"kind-a", &buf).unwrap(), b"hello");
        let r = k.open_in_place(b"kind-a", &mut s.clone()).unwrap();
        assert_eq!(r, NONCE_LEN..NONCE_LEN + 5);
        assert!(k.open_in_place(b"kind-b", &mut s.clone()).is_err());
        let mut bad = s.clone();
        bad[NONCE_LEN + 1] ^= 1;
        assert!(matches!(k.open(b"kind-a", &bad), Err(CryptoError::Auth)));
        assert!(matches!(
            k.open(b"kind-a", &s[..10]),
            Err(CryptoError::Short(10))
        ));
    }

    #[test]
    fn new_enc_keeps_ids_and_changes_sealing() {
        let a = MasterKey::generate().unwrap();
        let b = a.with_new_enc().unwrap();
        assert!(a.shares_id_key(&b));
        assert!(!a.shares_id_key(&MasterKey::generate().unwrap()));
        assert_eq!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.derive_u64("c"), b.derive_u64("c"));
        let s = a.seal(b"ad", b"hello").unwrap();
        assert!(matches!(b.open(b"ad", &s), Err(CryptoError::Auth)));
        assert_ne!(a.to_bytes()[..KEY_LEN], b.to_bytes()[..KEY_LEN]);
    }

    #[test]
    fn ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
    }
}
