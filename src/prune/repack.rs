//! Repack: the used blobs of partly used packs are copied, still sealed (a blob's seal is bound
//! to its id and type, not to its pack), into new packs through the same rule every writer
//! follows (`Repository::store_pack`: the pack is durable, then indexed). Each blob is opened
//! and id-checked on the way, so a damaged blob is reported instead of copied. Only once every
//! new pack is durable does the caller write the record that marks the old packs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::pack_path;
use crate::blob::{self, SealedBlob};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackBuilder;
use crate::repo::Repository;

use super::used::Usage;

/// What a repack wrote.
#[derive(Debug, Default, serde::Serialize)]
pub struct Repacked {
    pub packs_read: usize,
    pub packs_written: usize,
    pub blobs_copied: u64,
    pub bytes_written: u64,
}

fn pack_error(e: crate::pack::PackError) -> Error {
    Error::Usage(format!("cannot build a pack while repacking: {e}"))
}

/// Copies the used blobs of `packs` into new packs and moves their usage there.
pub fn repack(
    repo: &Repository,
    packs: &[Id],
    sizes: &HashMap<Id, u64>,
    usage: &mut Usage,
    interrupt: &AtomicBool,
) -> Result<Repacked> {
    let mut out = Repacked::default();
    let target = repo.config().pack_size as usize;
    let capacity = target + repo.config().chunker.max as usize + 4096;
    let new_builder = || {
        PackBuilder::with_capacity(capacity)
            .map_err(|e| Error::io("cannot allocate", "a pack buffer", e))
    };
    let mut builders = [new_builder()?, new_builder()?];
    let flush = |pb: PackBuilder, out: &mut Repacked, usage: &mut Usage| -> Result<()> {
        let (id, bytes, entries) = pb.finish(repo.key()).map_err(pack_error)?;
        repo.store_pack(&id, &bytes, &entries)?;
        out.packs_written += 1;
        out.bytes_written += bytes.len() as u64;
        let m = usage.used.entry(id).or_default();
        for e in &entries {
            m.insert(
                e.offset,
                super::used::Used {
                    length: e.length,
                    raw_len: e.raw_len,
                },
            );
        }
        Ok(())
    };
    for pack in packs {
        if interrupt.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let size = sizes.get(pack).copied().unwrap_or(0);
        let path = pack_path(pack);
        let entries = repo.read_pack_header(pack, size)?;
        let used = usage.used.remove(pack).unwrap_or_default();
        out.packs_read += 1;
        for e in entries.iter().filter(|e| used.contains_key(&e.offset)) {
            let sealed = repo
                .backend()
                .read_range(&path, e.offset as u64, e.length as u64)?;
            blob::open_blob_owned(
                repo.key(),
                e.btype,
                &e.id,
                e.compression,
                e.raw_len as usize,
                sealed.clone(),
            )
            .map_err(|w| {
                Error::corrupt(
                    &path,
                    format!(
                        "blob {} at offset {}: {w}; nothing was deleted (run `snap check`)",
                        e.id, e.offset
                    ),
                )
            })?;
            let slot = usize::from(e.btype == crate::blob::BlobType::Tree);
            builders[slot]
                .add(&SealedBlob {
                    id: e.id,
                    btype: e.btype,
                    compression: e.compression,
                    raw_len: e.raw_len,
                    sealed,
                })
                .map_err(pack_error)?;
            out.blobs_copied += 1;
            if builders[slot].is_full(target) {
                let full = std::mem::replace(&mut builders[slot], new_builder()?);
                flush(full, &mut out, usage)?;
            }
        }
    }
    for pb in builders {
        if !pb.is_empty() {
            flush(pb, &mut out, usage)?;
        }
    }
    Ok(out)
}
