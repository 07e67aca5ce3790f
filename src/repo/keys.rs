//! Key management: several passwords open one repository, each a key file sealing the same
//! master key. Changing a password writes the new key file before removing the old one, so a
//! crash at any instant leaves at least one key that opens the repository.
//!
//! A session opened with an append-only key may add keys, but only append-only ones (else the
//! flag would be one `key add` away from a full key), and may not remove or replace any.

use serde::Serialize;

use super::Repository;
use crate::audit;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::keyfile::KeyFile;

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub current: bool,
    pub host: String,
    pub user: String,
    pub created: String,
    /// Whether the file decodes as a key file at all (a stray or damaged file does not count
    /// as a key that could open the repository).
    pub readable: bool,
    /// An append-only key: its sessions may add files but never delete or overwrite any.
    pub append_only: bool,
}

/// Every key file, with its metadata (unreadable ones are listed with empty metadata).
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (path, _) in repo.backend().list("keys")? {
        let kf = repo
            .backend()
            .read(&path)
            .ok()
            .and_then(|b| KeyFile::decode(&b).ok());
        out.push(KeyInfo {
            id: path.rsplit('/').next().unwrap_or_default().to_string(),
            current: path == repo.key_path(),
            host: kf.as_ref().map(|k| k.host.clone()).unwrap_or_default(),
            user: kf.as_ref().map(|k| k.user.clone()).unwrap_or_default(),
            readable: kf.is_some(),
            append_only: kf.as_ref().is_some_and(|k| k.append_only),
            created: kf.map(|k| k.created).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Adds a key file for `password`, append-only when `append_only` or when this session itself
/// was opened with an append-only key; returns its id and whether it is append-only. Recorded
/// in the audit log.
pub fn add(
    repo: &Repository,
    password: &[u8],
    memory_kib: u32,
    iterations: u32,
    append_only: bool,
) -> Result<(Id, bool)> {
    let (id, append_only) = write_key(repo, password, memory_kib, iterations, append_only)?;
    let summary = audit::Summary {
        keys_added: vec![id.to_hex()],
        note: append_only.then(|| "append-only key".to_string()),
        ..Default::default()
    };
    audit::record(repo, audit::Action::KeyAdd, summary)?;
    Ok((id, append_only))
}

fn write_key(
    repo: &Repository,
    password: &[u8],
    memory_kib: u32,
    iterations: u32,
    append_only: bool,
) -> Result<(Id, bool)> {
    let append_only = append_only || repo.append_only();
    let kf = KeyFile::create_with(repo.key(), password, memory_kib, iterations, append_only)
        .map_err(|e| super::key_error(e, "keys/"))?;
    let bytes = kf.encode();
    let id = Id::of_file_bytes(&bytes);
    repo.backend().write(&format!("keys/{id}"), &bytes)?;
    Ok((id, append_only))
}

/// Removes the key whose id starts with `prefix`. The key in use and the last readable key are
/// refused. The caller holds the exclusive lock (`Operation::KeyRemove`): the key files are read
/// here, under it, so two removals cannot each see "another key left".
pub fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    repo.require_full_key("remove a key from", "keys/")?;
    let keys = list(repo)?;
    let hits: Vec<&KeyInfo> = keys
        .iter()
        .filter(|k| !prefix.is_empty() && k.id.starts_with(prefix))
        .collect();
    let key = match hits[..] {
        [k] => k,
        [] => {
            return Err(Error::Usage(format!(
                "no key matches {prefix:?} (see `snap key list`)"
            )));
        }
        _ => return Err(Error::Usage(format!("key prefix {prefix:?} is ambiguous"))),
    };
    if !repo.backend().exists(repo.key_path())? {
        return Err(Error::Usage(
            "the key this process opened the repository with was removed meanwhile; open it \
             again and retry"
                .into(),
        ));
    }
    if !keys.iter().any(|k| k.readable && k.id != key.id) {
        return Err(Error::Usage(
            "refusing to remove the last key: the repository could never be opened again".into(),
        ));
    }
    if key.current {
        return Err(Error::Usage("refusing to remove the key in use; open with another password first, or use `snap key passwd`".into()));
    }
    repo.backend().remove(&format!("keys/{}", key.id))?;
    let summary = audit::Summary {
        keys_removed: vec![key.id.clone()],
        ..Default::default()
    };
    audit::record(repo, audit::Action::KeyRemove, summary)?;
    Ok(key.id.clone())
}

/// Replaces the key in use with one for `new_password`: the new file is durable first. The new
/// key is append-only exactly when the old one was.
pub fn passwd(
    repo: &Repository,
    new_password: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<Id> {
    // Checked first: the new key must not be written when the old one cannot be removed.
    repo.require_full_key("replace the key in use in", "keys/")?;
    let (id, _) = write_key(repo, new_password, memory_kib, iterations, false)?;
    repo.backend().remove(repo.key_path())?;
    let summary = audit::Summary {
        keys_added: vec![id.to_hex()],
        keys_removed: vec![repo.key_id().to_string()],
        ..Default::default()
    };
    audit::record(repo, audit::Action::KeyPasswd, summary)?;
    Ok(id)
}
