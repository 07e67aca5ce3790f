//! Pack files: many sealed blobs in one immutable file, followed by a sealed header that lists them.
//!
//! ```text
//! pack        = header(kind 5) (8) | blob_0 | … | blob_{n-1} | sealed_hdr | hdr_len u32 LE
//! blob_i      = nonce(12) | ciphertext | tag(16)      AD = header(kind 7|8) | blob id
//! sealed_hdr  = nonce(12) | ciphertext | tag(16)      AD = header(kind 6)
//! hdr plain   = count u32 LE | entry × count
//! entry (42)  = type u8 (7 data, 8 tree) | compression u8 (0 none, 1 zstd)
//!             | length u32 LE (sealed bytes in the pack) | raw_len u32 LE (plaintext) | id (32)
//! ```
//! Blob i starts at 8 + the lengths of the blobs before it. The header is at the end so a writer
//! can stream blobs without knowing the count; the trailing length lets a reader find it with one
//! small read. A pack's file name is the BLAKE3 of all its bytes.

use crate::blob::{BlobType, Compression, MAX_BLOB_LEN, SealedBlob};
use crate::crypto::{CryptoError, MasterKey, SEAL_OVERHEAD};
use crate::direct::AlignedVec;
use crate::envelope::{self, HEADER_LEN, Kind};
use crate::id::Id;

pub const ENTRY_LEN: usize = 42;
pub const TRAILER_LEN: usize = 4;
/// A header larger than this is refused (about 400,000 blobs), so a damaged length cannot make a
/// reader allocate gigabytes.
pub const MAX_HEADER_LEN: usize = 16 * 1024 * 1024;
/// The most entries a writer puts in one pack, so its header always fits `MAX_HEADER_LEN`.
pub const MAX_ENTRIES: usize = (MAX_HEADER_LEN - 4 - SEAL_OVERHEAD) / ENTRY_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub btype: BlobType,
    pub compression: Compression,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub id: Id,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack is {0} bytes, too short for a header")]
    Short(u64),
    #[error("header length {0} does not fit a pack of {1} bytes")]
    HeaderLength(u64, u64),
    #[error("header: {0}")]
    Header(#[from] CryptoError),
    #[error("header: {0}")]
    Format(String),
    #[error("cannot allocate a pack buffer: {0}")]
    Memory(std::io::Error),
}

/// Accumulates blobs of one type in memory until the pack reaches its target size. The buffer
/// is page-aligned so the finished pack goes to disk by O_DIRECT without a copy, and it is handed
/// back for the next pack so a backup does not fault in fresh memory for every pack.
pub struct PackBuilder {
    buf: AlignedVec,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A builder whose buffer does not reallocate below `capacity` bytes (a pack's target plus
    /// one largest blob), so memory stays at one pack instead of doubling past it.
    pub fn with_capacity(capacity: usize) -> std::io::Result<PackBuilder> {
        Ok(Self::reuse(AlignedVec::with_capacity(capacity)?))
    }

    /// A builder over a buffer a finished pack has given back.
    pub fn reuse(mut buf: AlignedVec) -> PackBuilder {
        buf.clear();
        // The pack header always fits: every buffer has at least one page.
        let _ = buf.extend_from_slice(&envelope::header(Kind::Pack));
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), PackError> {
        self.buf.extend_from_slice(data).map_err(PackError::Memory)
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Full at the size target, or at the most entries a reader accepts in one header.
    pub fn is_full(&self, target: usize) -> bool {
        self.buf.len() >= target || self.entries.len() >= MAX_ENTRIES
    }

    pub fn add(&mut self, b: &SealedBlob) -> Result<(), PackError> {
        self.entries.push(PackEntry {
            btype: b.btype,
            compression: b.compression,
            offset: self.buf.len() as u32,
            length: b.sealed.len() as u32,
            raw_len: b.raw_len,
            id: b.id,
        });
        self.push(&b.sealed)
    }

    /// Moves `other`'s blobs (of the same type) to the end of this pack. The backup ends with
    /// one partly filled data pack per walker; merging them saves a write (a PUT on a remote
    /// repository) per extra walker on every run.
    pub fn absorb(&mut self, other: PackBuilder) -> Result<(), PackError> {
        let hdr = envelope::header(Kind::Pack).len();
        let shift = self.buf.len() - hdr;
        let body = &other.buf[hdr..];
        if u32::try_from(self.buf.len() + body.len()).is_err()
            || self.entries.len() + other.entries.len() > MAX_ENTRIES
        {
            return Err(PackError::Format(
                "merged pack would exceed the format's limits".into(),
            ));
        }
        self.push(body)?;
        for mut e in other.entries {
            // Cannot overflow: the merged length fits a u32 (checked above).
            e.offset += shift as u32;
            self.entries.push(e);
        }
        Ok(())
    }

    /// Seals the header, appends it and returns the pack's id, bytes and entries.
    pub fn finish(
        mut self,
        key: &MasterKey,
    ) -> Result<(Id, AlignedVec, Vec<PackEntry>), PackError> {
        let hdr =
            envelope::seal_bound(key, Kind::PackHeader, None, &encode_entries(&self.entries))?;
        self.push(&hdr)?;
        self.push(&(hdr.len() as u32).to_le_bytes())?;
        Ok((Id::of_file_bytes(&self.buf), self.buf, self.entries))
    }
}

pub fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.btype as u8);
        out.push(e.compression as u8);
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.id.0);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Decodes the plaintext header of a pack of `pack_len` bytes whose sealed header is `hdr_len`
/// bytes, computing offsets and checking that the blobs exactly fill the space before the header.
pub fn decode_entries(
    plain: &[u8],
    pack_len: u64,
    hdr_len: u64,
) -> Result<Vec<PackEntry>, PackError> {
    if plain.len() < 4 {
        return Err(PackError::Format("shorter than its count".into()));
    }
    let count = u32_at(plain, 0) as usize;
    // Checked: on a 32-bit target `4 + count·42` can overflow, and a wrapped length could match.
    if count.checked_mul(ENTRY_LEN).and_then(|n| n.checked_add(4)) != Some(plain.len()) {
        return Err(PackError::Format(format!(
            "{} bytes cannot hold {count} entries",
            plain.len()
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset = HEADER_LEN as u64;
    for i in 0..count {
        let e = &plain[4 + i * ENTRY_LEN..4 + (i + 1) * ENTRY_LEN];
        let btype = BlobType::from_u8(e[0])
            .ok_or_else(|| PackError::Format(format!("entry {i}: blob type {}", e[0])))?;
        let compression = Compression::from_u8(e[1])
            .ok_or_else(|| PackError::Format(format!("entry {i}: compression {}", e[1])))?;
        let length = u32_at(e, 2);
        let raw_len = u32_at(e, 6);
        if (length as usize) < SEAL_OVERHEAD {
            return Err(PackError::Format(format!(
                "entry {i}: length {length} is shorter than a sealed blob"
            )));
        }
        // Readers allocate by these lengths: bound them by what a writer can produce (a blob of
        // at most MAX_BLOB_LEN bytes, stored raw or strictly smaller after compression).
        let body = length as usize - SEAL_OVERHEAD;
        if raw_len as usize > MAX_BLOB_LEN {
            return Err(PackError::Format(format!(
                "entry {i}: raw length {raw_len} is beyond any blob snap writes ({MAX_BLOB_LEN})"
            )));
        }
        let consistent = match compression {
            Compression::None => body == raw_len as usize,
            Compression::Zstd => body < raw_len as usize,
        };
        if !consistent {
            return Err(PackError::Format(format!(
                "entry {i}: {length} sealed bytes cannot hold {raw_len} plaintext bytes \
                 stored as {compression:?}"
            )));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[10..42]);
        entries.push(PackEntry {
            btype,
            compression,
            offset: offset as u32,
            length,
            raw_len,
            id: Id(id),
        });
        offset += length as u64;
        if offset > u32::MAX as u64 {
            return Err(PackError::Format("offsets beyond 4 GiB".into()));
        }
    }
    if offset + hdr_len + TRAILER_LEN as u64 != pack_len {
        return Err(PackError::Format(format!(
            "blobs end at {offset}, header of {hdr_len} bytes, but the pack has {pack_len} bytes"
        )));
    }
    Ok(entries)
}

/// From the last 4 bytes of a pack of `pack_len` bytes, where the sealed header starts and its length.
pub fn header_location(trailer: &[u8], pack_len: u64) -> Result<(u64, u64), PackError> {
    if pack_len < (HEADER_LEN + TRAILER_LEN + SEAL_OVERHEAD) as u64 || trailer.len() != TRAILER_LEN
    {
        return Err(PackError::Short(pack_len));
    }
    let hdr_len = u32_at(trailer, 0) as u64;
    if hdr_len as usize > MAX_HEADER_LEN || hdr_len + (HEADER_LEN + TRAILER_LEN) as u64 > pack_len {
        return Err(PackError::HeaderLength(hdr_len, pack_len));
    }
    Ok((pack_len - TRAILER_LEN as u64 - hdr_len, hdr_len))
}

/// Opens and decodes a sealed header read from `header_location`.
pub fn open_header(
    key: &MasterKey,
    sealed: &[u8],
    pack_len: u64,
) -> Result<Vec<PackEntry>, PackError> {
    let plain = envelope::open_bound(key, Kind::PackHeader, None, sealed)?;
    decode_entries(&plain, pack_len, sealed.len() as u64)
}

/// Decodes a whole pack held in memory (checker and tests): its magic, header and entries.
pub fn read_whole(key: &MasterKey, pack: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    envelope::check_header(Kind::Pack, pack).map_err(|e| PackError::Format(e.to_string()))?;
    let len = pack.len() as u64;
    if pack.len() < TRAILER_LEN {
        return Err(PackError::Short(len));
    }
    let (start, hdr_len) = header_location(&pack[pack.len() - TRAILER_LEN..], len)?;
    open_header(key, &pack[start as usize..(start + hdr_len) as usize], len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::seal_blob;

    /// The plaintext of entry `e` of the pack `bytes`.
    fn open_entry(k: &MasterKey, e: &PackEntry, bytes: &[u8]) -> Vec<u8> {
        let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
        crate::blob::open_blob(k, e.btype, &e.id, e.compression, e.raw_len as usize, sealed)
            .unwrap()
    }

    #[test]
    fn pack_round_trip() {
        let k = MasterKey::generate().unwrap();
        let mut pb = PackBuilder::with_capacity(100).unwrap();
        let mut ids = vec![];
        for i in 0..10u8 {
            let data = vec![i; 1000 + i as usize];
            let id = k.blob_id(&data);
            ids.push(id);
            pb.add(&seal_blob(&k, BlobType::Data, id, &data, 3).unwrap())
                .unwrap();
        }
        let (pid, bytes, entries) = pb.finish(&k).unwrap();
        assert_eq!(pid, Id::of_file_bytes(&bytes));
        let back = read_whole(&k, &bytes).unwrap();
        assert_eq!(back, entries);
        for (e, id) in back.iter().zip(&ids) {
            assert_eq!(e.id, *id);
            let plain = open_entry(&k, e, &bytes);
            assert_eq!(k.blob_id(&plain), *id);
        }
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(read_whole(&k, &bad).is_err());
    }

    #[test]
    fn absorbed_packs_read_back_as_one() {
        let k = MasterKey::generate().unwrap();
        let mut packs = vec![];
        let mut all = vec![];
        for p in 0..3u8 {
            let mut pb = PackBuilder::with_capacity(100).unwrap();
            for i in 0..4u8 {
                let data = vec![p * 16 + i; 700 + i as usize * 13];
                let id = k.blob_id(&data);
                all.push((id, data.clone()));
                pb.add(&seal_blob(&k, BlobType::Data, id, &data, 3).unwrap())
                    .unwrap();
            }
            packs.push(pb);
        }
        let mut acc = packs.remove(0);
        for pb in packs {
            acc.absorb(pb).unwrap();
        }
        let (_, bytes, entries) = acc.finish(&k).unwrap();
        let back = read_whole(&k, &bytes).unwrap();
        assert_eq!(back, entries);
        assert_eq!(back.len(), all.len());
        for (e, (id, data)) in back.iter().zip(&all) {
            assert_eq!(e.id, *id);
            let plain = open_entry(&k, e, &bytes);
            assert_eq!(&plain, data);
        }
    }

    fn one_entry(compression: Compression, length: u32, raw_len: u32) -> Vec<u8> {
        encode_entries(&[PackEntry {
            btype: BlobType::Data,
            compression,
            offset: 8,
            length,
            raw_len,
            id: Id([5; 32]),
        }])
    }

    #[test]
    fn entries_claiming_impossible_lengths_are_refused() {
        let hdr = (4 + ENTRY_LEN + SEAL_OVERHEAD) as u64;
        let fits = |length: u32| 8 + length as u64 + hdr + 4;
        // What writers produce: raw = sealed − 28; zstd strictly smaller.
        let ok = one_entry(Compression::None, 128, 100);
        assert_eq!(decode_entries(&ok, fits(128), hdr).unwrap()[0].raw_len, 100);
        let z = one_entry(Compression::Zstd, 60, 100);
        assert!(decode_entries(&z, fits(60), hdr).is_ok());
        // A raw length beyond any blob (readers allocate it for zstd).
        let huge = one_entry(Compression::Zstd, 60, u32::MAX);
        let e = decode_entries(&huge, fits(60), hdr)
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw length"), "{e}");
        // Stored raw, the lengths must agree.
        assert!(decode_entries(&one_entry(Compression::None, 128, 10), fits(128), hdr).is_err());
        assert!(decode_entries(&one_entry(Compression::Zstd, 128, 100), fits(128), hdr).is_err());
        // A count whose byte length overflows is a mismatch, not a wrap.
        let mut lying = ok.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_entries(&lying, fits(128), hdr).is_err());
    }
}
