//! The pack pass: every pack the index names exists with the size it was indexed with, its header
//! opens and agrees with the index; a pack present but not indexable is damage. Packs chosen for
//! reading are read whole: the name must be the BLAKE3 of the bytes and every blob must open and
//! hash to its id. Packs are checked in parallel, one pack's bytes in memory per worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::blob;
use crate::id::Id;
use crate::pack::{self, PackEntry};
use crate::repo::Repository;

/// The verdict on one pack.
pub(super) enum Outcome {
    Ok,
    /// The whole pack is suspect.
    Pack(String),
    /// These blobs are damaged (the rest opened and id-checked).
    Blobs(String, Vec<Id>),
}

/// Checks one pack. `indexed` is the size recorded in the index, `present` the size listed in
/// the repository (`None` when absent from either); `read` reads it whole.
pub(super) fn check_pack(
    repo: &Repository,
    id: &Id,
    indexed: Option<u64>,
    present: Option<u64>,
    read: bool,
    bytes: &AtomicU64,
) -> Outcome {
    let size = match (indexed, present) {
        (_, None) => return Outcome::Pack("is missing (the index names it)".into()),
        (None, Some(size)) => {
            // Present but not indexed: its header could not be read when the index was synced.
            return match repo.read_pack_header(id, size) {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Pack(format!(
                    "header cannot be read, so which blobs it held is unknown: {e}"
                )),
            };
        }
        (Some(i), Some(p)) if i != p => {
            return Outcome::Pack(format!(
                "is {p} bytes, but was {i} bytes when indexed (truncated, extended or replaced)"
            ));
        }
        (Some(i), Some(_)) => i,
    };
    if read {
        return read_pack(repo, id, size, bytes);
    }
    match repo.read_pack_header(id, size) {
        Ok(entries) => agree_with_index(repo, id, &entries).map_or(Outcome::Ok, Outcome::Pack),
        Err(e) => Outcome::Pack(format!("header cannot be read: {e}")),
    }
}

/// A disagreement between the header and the index (only entries the index places in this
/// pack: a blob stored twice is indexed in one of its packs).
fn agree_with_index(repo: &Repository, id: &Id, entries: &[PackEntry]) -> Option<String> {
    for e in entries {
        match repo.index().get(&e.id) {
            Ok(Some(loc)) if loc.pack != *id => {}
            Ok(Some(loc))
                if (
                    loc.offset,
                    loc.length,
                    loc.raw_len,
                    loc.btype,
                    loc.compression,
                ) == (e.offset, e.length, e.raw_len, e.btype, e.compression) => {}
            Ok(Some(_)) => {
                return Some(format!(
                    "the index disagrees with the header about blob {} (run `snap repair index`)",
                    e.id
                ));
            }
            Ok(None) => {
                return Some(format!(
                    "the header lists blob {} that the index lacks (run `snap repair index`)",
                    e.id
                ));
            }
            Err(err) => return Some(err.to_string()),
        }
    }
    None
}

fn read_pack(repo: &Repository, id: &Id, size: u64, bytes: &AtomicU64) -> Outcome {
    let path = crate::backend::pack_path(id);
    let data = match crate::stages::time(crate::stages::Stage::Fetch, size, || {
        repo.backend().read(&path)
    }) {
        Ok(d) => d,
        Err(e) => return Outcome::Pack(e.to_string()),
    };
    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    if data.len() as u64 != size {
        return Outcome::Pack(format!(
            "read {} bytes, but was {size} bytes when indexed",
            data.len()
        ));
    }
    let actual = crate::stages::time(crate::stages::Stage::Hash, size, || {
        Id::of_file_bytes(&data)
    });
    let renamed =
        (actual != *id).then(|| format!("content does not hash to its name (it is {actual})"));
    let entries = match pack::read_whole(repo.key(), &data) {
        Ok(e) => e,
        Err(e) => {
            let mut what = renamed.map(|r| format!("{r}; ")).unwrap_or_default();
            what.push_str(&format!("cannot be decoded: {e}"));
            return Outcome::Pack(what);
        }
    };
    if let Some(what) = agree_with_index(repo, id, &entries) {
        return Outcome::Pack(what);
    }
    // Blobs in parallel too, so the last packs of a run still use every core; each is checked
    // where it lies in the pack (disjoint slices), so no blob is copied.
    let check = |e: &PackEntry, sealed: &mut [u8]| {
        blob::verify_blob_in_place(
            repo.key(),
            e.btype,
            &e.id,
            e.compression,
            e.raw_len as usize,
            sealed,
        )
        .err()
        .map(|err| (e.id, format!("blob {} at offset {}: {err}", e.id, e.offset)))
    };
    let mut data = data;
    let bad: Vec<(Id, String)> = match blob_slices(&mut data, &entries) {
        Some(slices) => slices
            .into_par_iter()
            .filter_map(|(e, sealed)| check(e, sealed))
            .collect(),
        // Overlapping or out-of-range entries: each blob on a copy of its bytes.
        None => entries
            .par_iter()
            .filter_map(|e| {
                let range =
                    e.offset as usize..(e.offset as usize).saturating_add(e.length as usize);
                let mut sealed = data.get(range).unwrap_or_default().to_vec();
                check(e, &mut sealed)
            })
            .collect(),
    };
    match (renamed, bad.is_empty()) {
        (None, true) => Outcome::Ok,
        (Some(r), true) => Outcome::Pack(r),
        (r, false) => {
            let mut what: Vec<String> = r.into_iter().collect();
            let ids = bad.iter().map(|b| b.0).collect();
            what.extend(bad.into_iter().map(|b| b.1));
            Outcome::Blobs(what.join("; "), ids)
        }
    }
}

/// The pack's bytes cut into one mutable slice per entry, in offset order; `None` when entries
/// overlap or run past the end (a damaged header: the caller then checks each on a copy).
fn blob_slices<'d, 'e>(
    data: &'d mut [u8],
    entries: &'e [PackEntry],
) -> Option<Vec<(&'e PackEntry, &'d mut [u8])>> {
    let mut order: Vec<&PackEntry> = entries.iter().collect();
    order.sort_by_key(|e| e.offset);
    let mut out = Vec::with_capacity(order.len());
    let (mut rest, mut at) = (data, 0u64);
    for e in order {
        let (off, len) = (u64::from(e.offset), u64::from(e.length));
        let skip = usize::try_from(off.checked_sub(at)?).ok()?;
        if skip.checked_add(len as usize)? > rest.len() {
            return None;
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (blob, tail) = tail.split_at_mut(len as usize);
        out.push((e, blob));
        rest = tail;
        at = off + len;
    }
    Some(out)
}

/// Every pack named by the index or present in the repository, with both sizes.
pub(super) fn all_packs(
    indexed: &HashMap<Id, u64>,
    present: &HashMap<Id, u64>,
) -> Vec<(Id, Option<u64>, Option<u64>)> {
    let mut ids: Vec<Id> = indexed.keys().chain(present.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| (id, indexed.get(&id).copied(), present.get(&id).copied()))
        .collect()
}
