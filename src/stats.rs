//! `snap stats`: what the snapshots hold and what the repository spends on them — the numbers a
//! user looks at before and after a prune.
//!
//! Two measures, as restic names them: *restore size* is what restoring every selected snapshot
//! would write (a tree shared by several snapshots counts once per snapshot; sizes are memoised
//! per tree, so shared trees are read once); *raw data* is the unique blobs the selected snapshots
//! use, counted where the index places them (the same walk prune marks with, [`crate::prune::used`]),
//! before and after compression and sealing. Unused bytes (in packs, used by no snapshot) are
//! only reported for the whole repository, since a blob a non-selected snapshot uses is not unused.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::prune::plan::PackUsage;
use crate::prune::used::Usage;
use crate::repo::Repository;
use crate::tree::NodeKind;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub snapshots: usize,
    /// Restore size: files and bytes restoring every selected snapshot would write.
    pub files: u64,
    pub restore_size: u64,
    /// Raw data: unique blobs the selected snapshots use.
    pub blobs: u64,
    /// Their plaintext bytes.
    pub raw_bytes: u64,
    /// Their bytes in packs (compressed and sealed).
    pub stored_bytes: u64,
    /// restore size / raw bytes.
    pub dedup_ratio: f64,
    /// raw bytes / stored bytes.
    pub compression_ratio: f64,
    /// Packs holding at least one of those blobs.
    pub packs: usize,
    pub repository_packs: usize,
    pub repository_bytes: u64,
    /// Bytes of blobs no snapshot uses (only when every snapshot is selected).
    pub unused_bytes: Option<u64>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Files and bytes below `tree`, memoised per tree id.
fn restore_size(
    repo: &Repository,
    tree: &Id,
    memo: &mut HashMap<Id, (u64, u64)>,
) -> Result<(u64, u64)> {
    if let Some(v) = memo.get(tree) {
        return Ok(*v);
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    for n in repo.load_tree(tree)?.nodes {
        if n.kind == NodeKind::File {
            files = files.saturating_add(1);
            bytes = bytes.saturating_add(n.size);
        }
        if let Some(sub) = n.subtree {
            let (f, b) = restore_size(repo, &sub, memo)?;
            files = files.saturating_add(f);
            bytes = bytes.saturating_add(b);
        }
    }
    memo.insert(*tree, (files, bytes));
    Ok((files, bytes))
}

/// Stats over `snapshots` (id, root tree); `all` says they are every snapshot of the repository.
pub fn stats(repo: &Repository, snapshots: &[(Id, Id)], all: bool) -> Result<Stats> {
    let mut s = Stats {
        snapshots: snapshots.len(),
        ..Default::default()
    };
    let mut memo = HashMap::new();
    for (_, tree) in snapshots {
        let (f, b) = restore_size(repo, tree, &mut memo)?;
        s.files = s.files.saturating_add(f);
        s.restore_size = s.restore_size.saturating_add(b);
    }
    let mut usage = Usage::default();
    usage.add(repo, snapshots.iter().map(|(_, t)| *t))?;
    for m in usage.used.values() {
        s.packs += 1;
        for u in m.values() {
            s.blobs += 1;
            s.raw_bytes = s.raw_bytes.saturating_add(u.raw_len as u64);
            s.stored_bytes = s.stored_bytes.saturating_add(u.length as u64);
        }
    }
    let infos = repo.index().pack_infos()?;
    s.repository_packs = infos.len();
    let mut unused = 0u64;
    for (id, &(size, blobs)) in &infos {
        s.repository_bytes = s.repository_bytes.saturating_add(size);
        let u = usage.used.get(id);
        let p = PackUsage {
            id: *id,
            size,
            blobs,
            used_blobs: u.map_or(0, |m| u32::try_from(m.len()).unwrap_or(u32::MAX)),
            used_bytes: u.map_or(0, |m| m.values().map(|l| l.length as u64).sum()),
        };
        unused = unused.saturating_add(p.unused_bytes());
    }
    s.unused_bytes = all.then_some(unused);
    s.dedup_ratio = ratio(s.restore_size, s.raw_bytes);
    s.compression_ratio = ratio(s.raw_bytes, s.stored_bytes);
    Ok(s)
}
