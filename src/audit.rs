//! The repository's audit log: one sealed `audit/<id>` file per repository-changing action
//! (contents in [`crate::auditfile`]), written after the action and never rewritten or removed.
//!
//! Why files and not a log file: repository files are immutable and every write is a new
//! whole file (repo-format §11), so a log that grows would be the one file rewritten; one object
//! per action keeps the rule, needs no lock (two writers never touch the same name), survives
//! on storage that refuses overwrites and deletes (the append-only setups of README), and an
//! append-only key can write its own records. Nothing in snap removes `audit/` files: prune
//! deletes only packs and prune records, and `check` reports damaged audit files.
//!
//! Callers record *after* the action succeeded ([`record`]), and the deleting actions (forget,
//! prune) also when they fail part-way, saying what they had done by then
//! ([`record_failure`]): a half-finished deletion is exactly what an audit must show. An action
//! refused before it changed anything (an append-only key, a lock held) writes no record.
//!
//! Trust: a record is sealed with the master key, so only a key holder can write one, and its
//! name is its hash, so it cannot be altered unnoticed; but a key holder with a modified client
//! can leave out or delete records. Storage that refuses deletes (README) makes the log as
//! durable as the snapshots it describes.

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;

pub use crate::auditfile::{Action, AuditRecord, DIR, Summary};

/// Writes one record; returns its id. The low-level form for callers without an open
/// [`Repository`] (`init`).
pub fn write(backend: &dyn Backend, key: &MasterKey, rec: &AuditRecord) -> Result<Id> {
    let bytes = rec.encode(key)?;
    let id = Id::of_file_bytes(&bytes);
    backend
        .write(&format!("{DIR}/{id}"), &bytes)
        .map_err(|e| e.context(format!("cannot write the audit record of {}", rec.action)))?;
    Ok(id)
}

/// Records that `action` succeeded in this session, with what it changed.
pub fn record(repo: &Repository, action: Action, summary: Summary) -> Result<Id> {
    let rec = AuditRecord::new(action, repo.key_id(), summary, None);
    write(repo.backend().as_ref(), repo.key(), &rec)
}

/// Records that `action` failed with `error` after doing what `summary` says. Returns the
/// original error, with a note when the record itself could not be written, so callers can
/// `return Err(record_failure(...))`.
pub fn record_failure(repo: &Repository, action: Action, summary: Summary, error: Error) -> Error {
    let rec = AuditRecord::new(action, repo.key_id(), summary, Some(&error.to_string()));
    match write(repo.backend().as_ref(), repo.key(), &rec) {
        Ok(_) => error,
        Err(e) => error.context(format!("(and its audit record was not written: {e})")),
    }
}

/// The readable records, oldest first, and a note for each file that could not be read.
#[derive(Debug, Default)]
pub struct Listing {
    pub records: Vec<(Id, AuditRecord)>,
    pub notes: Vec<String>,
}

/// Reads every audit record. Damaged ones are skipped with a note (`snap check` reports them).
pub fn list(backend: &dyn Backend, key: &MasterKey) -> Result<Listing> {
    let mut out = Listing::default();
    for (path, _) in backend.list(DIR)? {
        match read_one(backend, key, &path) {
            Ok(r) => out.records.push(r),
            Err(e) => out.notes.push(format!("skipped {path}: {e}")),
        }
    }
    out.records.sort_by(|a, b| {
        a.1.time_parsed()
            .cmp(&b.1.time_parsed())
            .then(a.0.cmp(&b.0))
    });
    Ok(out)
}

/// One record, checked against its name (the BLAKE3 of its bytes) and opened.
pub fn read_one(backend: &dyn Backend, key: &MasterKey, path: &str) -> Result<(Id, AuditRecord)> {
    let bytes = backend.read(path)?;
    let id = Id::of_file_bytes(&bytes);
    if path.rsplit('/').next().and_then(Id::from_hex) != Some(id) {
        return Err(Error::corrupt(path, "content does not match its name"));
    }
    let rec = AuditRecord::decode(key, &bytes).map_err(|e| Error::Envelope {
        file: path.to_string(),
        source: e,
    })?;
    Ok((id, rec))
}
