//! The blob index: blob id → (pack, offset, length, raw length, type, compression), in RocksDB.
//!
//! It is a cache, never the truth: everything in it was read from pack headers, and the
//! repository rebuilds it whenever it is missing, names a pack that is gone, or lacks packs another
//! writer added (see `Repository::sync_index`). RocksDB keeps memory flat as the repository grows:
//! a bounded block cache, small write buffers, no in-memory map of all blobs.
//!
//! ```text
//! key "b" | blob id (32)  → pack id (32) | offset u32 LE | length u32 LE | raw_len u32 LE | type u8 | compression u8
//! key "p" | pack id (32)  → pack size u64 LE | blob count u32 LE
//! key "g" | pack id (32)  → blob id (32) × n: blobs of a pack that vanished while indexed and
//!                           are in no other pack (a tombstone, so `check` can name the lost pack)
//! key "m" | pack id (32)  → marked-at i64 LE (Unix seconds): the newest prune record marks the
//!                           pack for deletion (or lists it deleted); its blobs are not used for dedup
//! key "d" | blob id (32) | pack id (32) → location (46 bytes, as "b"): another copy of a blob
//!                           whose preferred copy "b" names; promoted when that pack is dropped
//! key "v"                 → index layout version u32 LE
//! ```
//!
//! Prune needs the index to drop one pack without a rebuild and to find a second copy of a blob
//! (a repack writes one before the old pack goes): hence "d". A blob's preferred copy is in an
//! unmarked pack whenever one is known, so lookups never lead a backup into a pack about to go.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, DB, IteratorMode, Options, WriteBatch};

use crate::blob::{BlobType, Compression, MAX_BLOB_LEN};
use crate::crypto::SEAL_OVERHEAD;
use crate::envelope::HEADER_LEN;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackEntry;

const LAYOUT_VERSION: u32 = 2;

/// One RocksDB entry as read.
type KeyValue = (Box<[u8]>, Box<[u8]>);
const BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub btype: BlobType,
    pub compression: Compression,
}

pub struct Index {
    db: DB,
    path: PathBuf,
}

fn key(prefix: u8, id: &Id) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.0);
    k
}

fn dup_key(blob: &Id, pack: &Id) -> [u8; 65] {
    let mut k = [0u8; 65];
    k[0] = b'd';
    k[1..33].copy_from_slice(&blob.0);
    k[33..].copy_from_slice(&pack.0);
    k
}

fn encode_location(l: &BlobLocation) -> Vec<u8> {
    let mut v = Vec::with_capacity(46);
    v.extend_from_slice(&l.pack.0);
    v.extend_from_slice(&l.offset.to_le_bytes());
    v.extend_from_slice(&l.length.to_le_bytes());
    v.extend_from_slice(&l.raw_len.to_le_bytes());
    v.push(l.btype as u8);
    v.push(l.compression as u8);
    v
}

fn options() -> Options {
    let mut bb = BlockBasedOptions::default();
    bb.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    bb.set_bloom_filter(10.0, false);
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_block_based_table_factory(&bb);
    o.set_write_buffer_size(8 * 1024 * 1024);
    o.set_max_open_files(64);
    o.set_keep_log_file_num(2);
    o.set_max_total_wal_size(32 * 1024 * 1024);
    o
}

impl Index {
    /// Opens (creating when absent) the index at `path`. `Ok((index, created))`.
    pub fn open(path: &Path) -> Result<(Index, bool)> {
        let created = !path.join("CURRENT").exists();
        if let Some(parent) = path.parent() {
            crate::private::create_dir_all(parent)
                .map_err(|e| Error::io("cannot create", parent, e))?;
        }
        let db = DB::open(&options(), path).map_err(|e| Error::Index {
            path: path.into(),
            what: e.to_string(),
        })?;
        let idx = Index {
            db,
            path: path.into(),
        };
        match idx.db.get(b"v").map_err(|e| idx.err(e))? {
            Some(v) if v == LAYOUT_VERSION.to_le_bytes() => Ok((idx, created)),
            Some(_) => {
                // An index written by another snap version: rebuild rather than misread it.
                idx.clear()?;
                Ok((idx, true))
            }
            None => {
                idx.db
                    .put(b"v", LAYOUT_VERSION.to_le_bytes())
                    .map_err(|e| idx.err(e))?;
                Ok((idx, created))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Index {
            path: self.path.clone(),
            what: e.to_string(),
        }
    }

    pub fn get(&self, id: &Id) -> Result<Option<BlobLocation>> {
        let Some(v) = self.db.get_pinned(key(b'b', id)).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        decode_location(&v).map(Some).ok_or_else(|| Error::Index {
            path: self.path.clone(),
            what: format!("entry for blob {id} is malformed (run `snap repair index`)"),
        })
    }

    pub fn contains(&self, id: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(key(b'b', id))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Records a durable pack and all its blobs in one atomic batch. A blob already indexed in
    /// another pack keeps one copy in "b" (the newest, unless the newest is in a marked pack and
    /// the older is not) and the other in "d".
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        let mut b = WriteBatch::default();
        let new_marked = self.is_marked(pack)?;
        for e in entries {
            let loc = BlobLocation {
                pack: *pack,
                offset: e.offset,
                length: e.length,
                raw_len: e.raw_len,
                btype: e.btype,
                compression: e.compression,
            };
            match self.get(&e.id)? {
                Some(old) if old.pack != *pack => {
                    if new_marked && !self.is_marked(&old.pack)? {
                        b.put(dup_key(&e.id, pack), encode_location(&loc));
                    } else {
                        b.put(dup_key(&e.id, &old.pack), encode_location(&old));
                        b.put(key(b'b', &e.id), encode_location(&loc));
                    }
                }
                _ => b.put(key(b'b', &e.id), encode_location(&loc)),
            }
        }
        let mut pv = size.to_le_bytes().to_vec();
        pv.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        b.put(key(b'p', pack), pv);
        // A pack that is back is no longer lost.
        b.delete(key(b'g', pack));
        self.db.write(b).map_err(|e| self.err(e))
    }

    /// Whether `id` is indexed in a pack that is not marked for deletion: what a backup may
    /// deduplicate against.
    pub fn usable(&self, id: &Id) -> Result<bool> {
        match self.get(id)? {
            Some(loc) => Ok(!self.is_marked(&loc.pack)?),
            None => Ok(false),
        }
    }

    pub fn is_marked(&self, pack: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(key(b'm', pack))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Every marked pack with the time it was marked (Unix seconds).
    pub fn marks(&self) -> Result<HashMap<Id, i64>> {
        let mut out = HashMap::new();
        for (k, v) in self.scan(b'm')? {
            if let (Some(id), Ok(t)) = (Id::from_slice(&k[1..]), <[u8; 8]>::try_from(&v[..])) {
                out.insert(id, i64::from_le_bytes(t));
            }
        }
        Ok(out)
    }

    /// Replaces the set of marked packs with `marks` (from the newest prune record), then makes
    /// sure every blob with a copy in an unmarked pack is looked up there.
    pub fn set_marks(&self, marks: &HashMap<Id, i64>) -> Result<()> {
        let old = self.marks()?;
        if old.len() == marks.len() && old.iter().all(|(k, v)| marks.get(k) == Some(v)) {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for k in old.keys() {
            b.delete(key(b'm', k));
        }
        for (k, t) in marks {
            b.put(key(b'm', k), t.to_le_bytes());
        }
        self.db.write(b).map_err(|e| self.err(e))?;
        self.prefer_unmarked()
    }

    /// Swaps "b" and "d" where the preferred copy is in a marked pack and another is not.
    fn prefer_unmarked(&self) -> Result<()> {
        let mut b = WriteBatch::default();
        let mut changed = HashSet::new();
        for (k, v) in self.scan(b'd')? {
            let (Some(blob), Some(pack), Some(loc)) = (
                k.get(1..33).and_then(Id::from_slice),
                k.get(33..65).and_then(Id::from_slice),
                decode_location(&v),
            ) else {
                continue;
            };
            if changed.contains(&blob) || self.is_marked(&pack)? {
                continue;
            }
            if let Some(cur) = self.get(&blob)?
                && self.is_marked(&cur.pack)?
            {
                b.put(dup_key(&blob, &cur.pack), encode_location(&cur));
                b.delete(dup_key(&blob, &loc.pack));
                b.put(key(b'b', &blob), encode_location(&loc));
                changed.insert(blob);
            }
        }
        self.db.write(b).map_err(|e| self.err(e))
    }

    /// Drops packs that a prune deleted: their "p", "m" and "d" keys and every "b" key that
    /// places a blob in them; a blob with another copy ("d") is looked up there from now on.
    /// One scan over the blob entries, no pack header read, no tombstone (the loss was meant).
    pub fn remove_packs(&self, packs: &HashSet<Id>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        let mut orphans: HashSet<Id> = HashSet::new();
        for ids in self.blobs_in_packs(packs)?.into_values() {
            for id in ids {
                b.delete(key(b'b', &id));
                orphans.insert(id);
            }
        }
        for p in packs {
            b.delete(key(b'p', p));
            b.delete(key(b'm', p));
        }
        let mut promoted = HashSet::new();
        for (k, v) in self.scan(b'd')? {
            let (Some(blob), Some(pack)) = (
                k.get(1..33).and_then(Id::from_slice),
                k.get(33..65).and_then(Id::from_slice),
            ) else {
                continue;
            };
            if packs.contains(&pack) {
                b.delete(&k[..]);
            } else if orphans.contains(&blob) && promoted.insert(blob) {
                b.delete(&k[..]);
                b.put(key(b'b', &blob), &v[..]);
            }
        }
        self.db.write(b).map_err(|e| self.err(e))?;
        // The copy promoted may be in a marked pack while another is not.
        self.prefer_unmarked()
    }

    /// Every key/value with this one-byte prefix.
    fn scan(&self, prefix: u8) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&[prefix], rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// All packs the index knows, with their sizes.
    pub fn packs(&self) -> Result<HashMap<Id, u64>> {
        let mut out = HashMap::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"p", rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&b'p') {
                break;
            }
            if let (Some(id), Some(size)) = (Id::from_slice(&k[1..]), v.get(..8)) {
                let mut s = [0u8; 8];
                s.copy_from_slice(size);
                out.insert(id, u64::from_le_bytes(s));
            }
        }
        Ok(out)
    }

    /// All packs the index knows, with their sizes and blob counts.
    pub fn pack_infos(&self) -> Result<HashMap<Id, (u64, u32)>> {
        let mut out = HashMap::new();
        for (k, v) in self.scan(b'p')? {
            if let (Some(id), Ok(size), Ok(n)) = (
                Id::from_slice(&k[1..]),
                <[u8; 8]>::try_from(v.get(..8).unwrap_or_default()),
                <[u8; 4]>::try_from(v.get(8..12).unwrap_or_default()),
            ) {
                out.insert(id, (u64::from_le_bytes(size), u32::from_le_bytes(n)));
            }
        }
        Ok(out)
    }

    /// For each of `packs`, the blobs the index locates in it (one scan over every blob entry;
    /// used only when packs have vanished).
    pub fn blobs_in_packs(&self, packs: &HashSet<Id>) -> Result<HashMap<Id, Vec<Id>>> {
        let mut out: HashMap<Id, Vec<Id>> = HashMap::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"b", rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&b'b') {
                break;
            }
            let (Some(blob), Some(pack)) = (
                Id::from_slice(&k[1..]),
                v.get(..32).and_then(Id::from_slice),
            ) else {
                continue;
            };
            if packs.contains(&pack) {
                out.entry(pack).or_default().push(blob);
            }
        }
        Ok(out)
    }

    /// Records that `pack` vanished while these of its blobs were in no other pack.
    pub fn set_tombstone(&self, pack: &Id, blobs: &[Id]) -> Result<()> {
        let v: Vec<u8> = blobs.iter().flat_map(|b| b.0).collect();
        self.db.put(key(b'g', pack), v).map_err(|e| self.err(e))
    }

    /// Every tombstone: a vanished pack and the blobs lost with it.
    pub fn tombstones(&self) -> Result<HashMap<Id, Vec<Id>>> {
        let mut out = HashMap::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"g", rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&b'g') {
                break;
            }
            if let Some(pack) = Id::from_slice(&k[1..]) {
                let blobs = v.chunks_exact(32).filter_map(Id::from_slice).collect();
                out.insert(pack, blobs);
            }
        }
        Ok(out)
    }

    /// Drops every entry (used before a rebuild).
    pub fn clear(&self) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range(&[0u8][..], &[0xffu8; 34][..]);
        b.put(b"v", LAYOUT_VERSION.to_le_bytes());
        self.db.write(b).map_err(|e| self.err(e))
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }
}

/// Decodes a `b` value. The index is a cache any process (or damage) may have written, and
/// readers allocate by `length` and `raw_len`, so both are bounded as pack headers bound them
/// (`pack::decode_entries`): a value outside that is malformed, never a huge allocation.
fn decode_location(v: &[u8]) -> Option<BlobLocation> {
    if v.len() != 46 {
        return None;
    }
    let u = |at: usize| u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
    let loc = BlobLocation {
        pack: Id::from_slice(&v[..32])?,
        offset: u(32),
        length: u(36),
        raw_len: u(40),
        btype: BlobType::from_u8(v[44])?,
        compression: Compression::from_u8(v[45])?,
    };
    let (length, raw_len) = (loc.length as usize, loc.raw_len as usize);
    let sane = (loc.offset as usize) >= HEADER_LEN
        && loc.offset.checked_add(loc.length).is_some()
        && length >= SEAL_OVERHEAD
        && raw_len <= MAX_BLOB_LEN
        && length - SEAL_OVERHEAD <= raw_len;
    sane.then_some(loc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: u32, length: u32, raw_len: u32, compression: u8) -> Vec<u8> {
        let mut v = vec![7u8; 32];
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(&length.to_le_bytes());
        v.extend_from_slice(&raw_len.to_le_bytes());
        v.extend_from_slice(&[7, compression]);
        v
    }

    #[test]
    fn locations_claiming_impossible_lengths_are_malformed() {
        let ok = decode_location(&value(8, 128, 100, 0)).unwrap();
        assert_eq!((ok.offset, ok.length, ok.raw_len), (8, 128, 100));
        assert!(decode_location(&value(8, 50, 100, 1)).is_some());
        // Lengths read from the cache size allocations: each is refused, not trusted.
        assert!(decode_location(&value(8, u32::MAX, u32::MAX, 0)).is_none());
        assert!(decode_location(&value(8, 100, (MAX_BLOB_LEN + 1) as u32, 1)).is_none());
        assert!(decode_location(&value(u32::MAX - 10, 100, 100, 0)).is_none());
        assert!(decode_location(&value(0, 128, 100, 0)).is_none());
        assert!(decode_location(&value(8, 10, 100, 0)).is_none());
        assert!(decode_location(&value(8, 200, 100, 0)).is_none());
        assert!(decode_location(&value(8, 128, 100, 9)).is_none());
    }
}
