//! The prune record: `prune/<id>`, the repository's memory of which packs a prune marked for
//! deletion (and when) and which it deleted. It lives in the repository, not only in the local
//! index cache, so another host, or this host with a rebuilt cache, learns that a pack is going
//! (and must not be deduplicated against) or is gone (and can be dropped from its index without
//! re-reading every pack header).
//!
//! ```text
//! prune/<BLAKE3 of file> = header(kind 9) | sealed CBOR PruneRecord        AD = header(kind 9)
//! ```
//! Files are immutable: every change writes a new record with `generation` one higher than the
//! newest before it, then removes the older ones. Readers use the readable record with the
//! highest generation (ties: the larger file id); a crash between the write and the removals
//! leaves old records that simply lose.

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::Result;
use crate::id::Id;

pub use crate::prunefile::{DELETED_KEEP_SECS, DIR, DeletedPack, MarkedPack, PruneRecord};

/// The newest readable record, its path, the paths of every other readable record, and notes
/// about records that could not be read (skipped: losing a record only delays deletion, since
/// every deletion is decided again under the exclusive lock).
#[derive(Default)]
pub struct Records {
    pub newest: Option<(String, PruneRecord)>,
    pub older: Vec<String>,
    pub notes: Vec<String>,
}

pub fn load(backend: &dyn Backend, key: &MasterKey) -> Result<Records> {
    let mut out = Records::default();
    for (path, _) in backend.list(DIR)? {
        let rec = match backend.read(&path) {
            Ok(b)
                if path.rsplit('/').next().and_then(Id::from_hex)
                    != Some(Id::of_file_bytes(&b)) =>
            {
                out.notes.push(format!(
                    "prune record {path} does not match its name (damaged); ignored"
                ));
                continue;
            }
            Ok(b) => PruneRecord::decode(key, &b),
            // Removed by a prune between listing and reading: an older record.
            Err(_) if !backend.exists(&path)? => continue,
            Err(e) => return Err(e),
        };
        match rec {
            Ok(r) => {
                let newer = match &out.newest {
                    None => true,
                    Some((p, n)) => (r.generation, path.as_str()) > (n.generation, p.as_str()),
                };
                if newer {
                    if let Some((p, _)) = out.newest.replace((path, r)) {
                        out.older.push(p);
                    }
                } else {
                    out.older.push(path);
                }
            }
            Err(e) => out
                .notes
                .push(format!("prune record {path} cannot be read ({e}); ignored")),
        }
    }
    Ok(out)
}

/// Writes `rec` as a new record file; returns its path.
pub fn write(backend: &dyn Backend, key: &MasterKey, rec: &PruneRecord) -> Result<String> {
    let bytes = rec.encode(key)?;
    let path = format!("{DIR}/{}", Id::of_file_bytes(&bytes));
    backend
        .write(&path, &bytes)
        .map_err(|e| e.context("writing the prune record"))?;
    Ok(path)
}

/// Writes `rec` and removes every record it supersedes.
pub fn replace(backend: &dyn Backend, key: &MasterKey, rec: &PruneRecord) -> Result<String> {
    let before = load(backend, key)?;
    let path = write(backend, key, rec)?;
    for p in before
        .older
        .into_iter()
        .chain(before.newest.map(|(p, _)| p))
        .filter(|p| *p != path)
    {
        backend.remove(&p)?;
    }
    Ok(path)
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
