//! Blobs: the unit of storage. A blob is a chunk of file content or an encoded tree, named by its
//! keyed id, compressed when that pays, and sealed with AD binding it to its type and id.
//!
//! Incompressible data (random uploads, media, already-compressed archives) is the bulk of a
//! typical server, so it must be recognised without paying for a full compression: a blob over
//! 64 KiB is first probed by compressing three 4 KiB samples at the fastest level; if they do not
//! shrink by 3%, the blob is stored raw.

use std::cell::RefCell;

use crate::crypto::{CryptoError, MasterKey, NONCE_LEN, TAG_LEN};
use crate::envelope::{self, Kind};
use crate::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobType {
    Data = 7,
    Tree = 8,
}

impl BlobType {
    pub fn from_u8(b: u8) -> Option<BlobType> {
        match b {
            7 => Some(BlobType::Data),
            8 => Some(BlobType::Tree),
            _ => None,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            BlobType::Data => Kind::DataBlob,
            BlobType::Tree => Kind::TreeBlob,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// No blob snap writes is larger (chunks are at most 16 MiB, trees far less); a larger claimed
/// length is damage, refused before allocating for it.
pub const MAX_BLOB_LEN: usize = 1 << 30;

const PROBE_THRESHOLD: usize = 64 * 1024;
const PROBE_LEN: usize = 4096;

thread_local! {
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    // A decompression context costs ~100 KiB to set up; restore and check open thousands of blobs.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> T,
) -> Option<T> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.iter().any(|(l, _)| *l == level) {
            c.push((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, comp) = c.iter_mut().find(|(l, _)| *l == level)?;
        Some(f(comp))
    })
}

/// True when a sample of `data` does not compress: cheap enough to run on every blob.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE_THRESHOLD {
        return false;
    }
    let mid = data.len() / 2;
    let samples = [
        &data[..PROBE_LEN],
        &data[mid..mid + PROBE_LEN],
        &data[data.len() - PROBE_LEN..],
    ];
    let mut sample = Vec::with_capacity(3 * PROBE_LEN);
    for s in samples {
        sample.extend_from_slice(s);
    }
    match with_compressor(1, |c| c.compress(&sample)) {
        Some(Ok(out)) => out.len() * 100 > sample.len() * 97,
        _ => false,
    }
}

/// Compresses when it pays; returns the bytes to seal and how they are encoded.
pub fn compress(data: &[u8], level: i32) -> (Compression, Option<Vec<u8>>) {
    compress_with_room(data, level, 0, 0)
}

/// [`compress`] into a buffer that starts with `head` zero bytes and has capacity for `tail` more
/// after the output, so the caller can seal it in place.
fn compress_with_room(
    data: &[u8],
    level: i32,
    head: usize,
    tail: usize,
) -> (Compression, Option<Vec<u8>>) {
    if level == 0 || data.len() < 64 || looks_incompressible(data) {
        return (Compression::None, None);
    }
    let mut out = Vec::with_capacity(head + zstd::zstd_safe::compress_bound(data.len()) + tail);
    out.resize(head, 0);
    let mut cur = std::io::Cursor::new(out);
    cur.set_position(head as u64);
    match with_compressor(level, |c| c.compress_to_buffer(data, &mut cur)) {
        Some(Ok(n)) if n < data.len() => (Compression::Zstd, Some(cur.into_inner())),
        _ => (Compression::None, None),
    }
}

fn zstd_decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    if raw_len > MAX_BLOB_LEN {
        return Err(format!(
            "raw length {raw_len} is beyond any blob snap writes"
        ));
    }
    let out = DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            match d.as_mut() {
                Some(d) => d.decompress(data, raw_len),
                None => Err(std::io::Error::other("no decompression context")),
            }
        })
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, header says {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

/// Decodes a blob body; takes it by value so a raw body is returned without a copy.
pub fn decompress(data: Vec<u8>, comp: Compression, raw_len: usize) -> Result<Vec<u8>, String> {
    match comp {
        Compression::None if data.len() != raw_len => Err(format!(
            "stored {} bytes, header says {raw_len}",
            data.len()
        )),
        Compression::None => Ok(data),
        Compression::Zstd => zstd_decompress(&data, raw_len),
    }
}

/// A blob ready for a pack: id, type, encoding and sealed bytes.
pub struct SealedBlob {
    pub id: Id,
    pub btype: BlobType,
    pub compression: Compression,
    pub raw_len: u32,
    pub sealed: Vec<u8>,
}

pub fn seal_blob(
    key: &MasterKey,
    btype: BlobType,
    id: Id,
    data: &[u8],
    level: i32,
) -> Result<SealedBlob, CryptoError> {
    use crate::stages::{Stage, time};
    let (compression, packed) = time(Stage::Compress, data.len() as u64, || {
        compress_with_room(data, level, NONCE_LEN, TAG_LEN)
    });
    let sealed = time(Stage::Seal, data.len() as u64, || match packed {
        Some(mut buf) => {
            envelope::seal_bound_in_place(key, btype.kind(), Some(&id), &mut buf)?;
            Ok(buf)
        }
        None => envelope::seal_bound(key, btype.kind(), Some(&id), data),
    })?;
    Ok(SealedBlob {
        id,
        btype,
        compression,
        raw_len: data.len() as u32,
        sealed,
    })
}

/// [`open_blob`] on bytes the caller owns: decrypted where they lie, no copy of the ciphertext.
pub fn open_blob_owned(
    key: &MasterKey,
    btype: BlobType,
    id: &Id,
    compression: Compression,
    raw_len: usize,
    mut sealed: Vec<u8>,
) -> Result<Vec<u8>, String> {
    use crate::stages::{Stage, time};
    let r = time(Stage::Seal, sealed.len() as u64, || {
        envelope::open_bound_in_place(key, btype.kind(), Some(id), &mut sealed)
    })
    .map_err(|e| e.to_string())?;
    let plain = match compression {
        Compression::Zstd => time(Stage::Compress, raw_len as u64, || {
            zstd_decompress(&sealed[r], raw_len)
        })?,
        Compression::None => {
            sealed.truncate(r.end);
            sealed.drain(..r.start);
            decompress(sealed, Compression::None, raw_len)?
        }
    };
    if time(Stage::Hash, plain.len() as u64, || key.blob_id(&plain)) != *id {
        return Err("content does not hash to the blob id".into());
    }
    Ok(plain)
}

/// Checks a sealed blob where it lies (in a pack read whole): opened in place, decompressed only
/// if it was compressed, and hashed against `id`. No copy of the ciphertext, none of a stored
/// blob's plaintext: `check --read-data` verifies every byte of a repository this way.
pub fn verify_blob_in_place(
    key: &MasterKey,
    btype: BlobType,
    id: &Id,
    compression: Compression,
    raw_len: usize,
    sealed: &mut [u8],
) -> Result<(), String> {
    open_blob_in_place(key, btype, id, compression, raw_len, sealed).map(|_| ())
}

/// Opens a sealed blob where it lies (in a range of a pack the caller read): its plaintext,
/// borrowed from `sealed` when it was stored uncompressed, and hashed against `id`.
pub fn open_blob_in_place<'a>(
    key: &MasterKey,
    btype: BlobType,
    id: &Id,
    compression: Compression,
    raw_len: usize,
    sealed: &'a mut [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    use crate::stages::{Stage, time};
    let len = sealed.len() as u64;
    let r = time(Stage::Seal, len, || {
        envelope::open_bound_in_place(key, btype.kind(), Some(id), sealed)
    })
    .map_err(|e| e.to_string())?;
    let plain: std::borrow::Cow<'a, [u8]> = match compression {
        Compression::Zstd => time(Stage::Compress, raw_len as u64, || {
            zstd_decompress(&sealed[r], raw_len)
        })?
        .into(),
        Compression::None => {
            let plain = &sealed[r];
            if plain.len() != raw_len {
                return Err(format!(
                    "holds {} bytes, the header says {raw_len}",
                    plain.len()
                ));
            }
            plain.into()
        }
    };
    if time(Stage::Hash, plain.len() as u64, || key.blob_id(&plain)) != *id {
        return Err("content does not hash to the blob id".into());
    }
    Ok(plain)
}

/// Opens a sealed blob and checks that its plaintext hashes to `id`.
pub fn open_blob(
    key: &MasterKey,
    btype: BlobType,
    id: &Id,
    compression: Compression,
    raw_len: usize,
    sealed: &[u8],
) -> Result<Vec<u8>, String> {
    open_blob_owned(key, btype, id, compression, raw_len, sealed.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_data_is_stored_raw_text_is_compressed() {
        let mut rnd = vec![0u8; 200_000];
        crate::crypto::random_bytes(&mut rnd).unwrap();
        assert!(looks_incompressible(&rnd));
        assert_eq!(compress(&rnd, 3).0, Compression::None);
        let text = b"hello world, hello backups. ".repeat(10_000);
        assert!(!looks_incompressible(&text));
        let (c, out) = compress(&text, 3);
        assert_eq!(c, Compression::Zstd);
        assert_eq!(decompress(out.unwrap(), c, text.len()).unwrap(), text);
    }

    #[test]
    fn blob_round_trip_checks_id() {
        let k = MasterKey::generate().unwrap();
        let data = b"some file content".repeat(100);
        let id = k.blob_id(&data);
        let b = seal_blob(&k, BlobType::Data, id, &data, 3).unwrap();
        let back = open_blob(
            &k,
            BlobType::Data,
            &id,
            b.compression,
            data.len(),
            &b.sealed,
        )
        .unwrap();
        assert_eq!(back, data);
        assert!(
            open_blob(
                &k,
                BlobType::Tree,
                &id,
                b.compression,
                data.len(),
                &b.sealed
            )
            .is_err()
        );
    }

    #[test]
    fn in_place_paths_match_the_copying_ones() {
        let k = MasterKey::generate().unwrap();
        for data in [b"text text text text ".repeat(5000), {
            let mut r = vec![0u8; 100_000];
            crate::crypto::random_bytes(&mut r).unwrap();
            r
        }] {
            let id = k.blob_id(&data);
            let b = seal_blob(&k, BlobType::Data, id, &data, 3).unwrap();
            let copied = open_blob(
                &k,
                BlobType::Data,
                &id,
                b.compression,
                data.len(),
                &b.sealed,
            );
            assert_eq!(copied.unwrap(), data);
            let owned =
                open_blob_owned(&k, BlobType::Data, &id, b.compression, data.len(), b.sealed);
            assert_eq!(owned.unwrap(), data);
        }
    }
}
