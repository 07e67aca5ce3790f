//! The checker: proves the repository is whole. Without `read_data` it checks structure (every
//! snapshot decodes, every tree is reachable and decodes, every referenced blob is indexed, every
//! pack header agrees with the index); with it, every pack is read in full, its name checked
//! against its hash, and every blob opened and id-checked. Unreferenced packs (left by an
//! interrupted backup) are information, not damage.

use std::collections::HashSet;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::pack_path;
use crate::blob;
use crate::error::Result;
use crate::id::Id;
use crate::pack;
use crate::repo::Repository;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: String,
    pub what: String,
    /// Snapshot ids (short) and paths inside them that the damage affects.
    pub affected: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub data_blobs_referenced: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
    pub unreferenced_packs: Vec<String>,
    pub problems: Vec<Problem>,
}

pub fn check(repo: &mut Repository, read_data: bool) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let snapshot_files = repo.backend().list("snapshots")?;
    let mut used_packs: HashSet<Id> = HashSet::new();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut seen_blobs: HashSet<Id> = HashSet::new();
    for (path, _) in &snapshot_files {
        let Some(id) = path.rsplit('/').next().and_then(Id::from_hex) else {
            report.problems.push(Problem {
                file: path.clone(),
                what: "not a snapshot name".into(),
                affected: vec![],
            });
            continue;
        };
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(Problem {
                    file: path.clone(),
                    what: e.to_string(),
                    affected: vec![id.short()],
                });
                continue;
            }
        };
        report.snapshots += 1;
        let mut stack = vec![(snap.tree, String::new())];
        while let Some((tree_id, at)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            if let Ok(loc) = repo.locate(&tree_id) {
                used_packs.insert(loc.pack);
            }
            let tree = match repo.load_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report.problems.push(Problem {
                        file: format!("tree {tree_id}"),
                        what: e.to_string(),
                        affected: vec![format!("{}:{at}/", id.short())],
                    });
                    continue;
                }
            };
            for n in &tree.nodes {
                let p = format!("{at}/{}", n.name_lossy());
                if let Some(sub) = n.subtree {
                    stack.push((sub, p.clone()));
                }
                for e in &n.content {
                    let Some(b) = e.0 else { continue };
                    if !seen_blobs.insert(b) {
                        continue;
                    }
                    match repo.index().get(&b)? {
                        Some(loc) => {
                            used_packs.insert(loc.pack);
                        }
                        None => report.problems.push(Problem {
                            file: format!("blob {b}"),
                            what: "referenced but in no pack".into(),
                            affected: vec![format!("{}:{p}", id.short())],
                        }),
                    }
                }
            }
        }
    }
    report.data_blobs_referenced = seen_blobs.len();
    let packs = repo.index().packs()?;
    report.packs = packs.len();
    let problems = Mutex::new(Vec::new());
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let list: Vec<(Id, u64)> = packs.iter().map(|(k, v)| (*k, *v)).collect();
    list.par_iter().for_each(|(id, size)| {
        let r = if read_data {
            read_pack(repo, id, *size, &bytes)
        } else {
            repo.read_pack_header(id, *size)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(what) = r {
            problems
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Problem {
                    file: pack_path(id),
                    what,
                    affected: vec![],
                });
        }
    });
    report
        .problems
        .extend(problems.into_inner().unwrap_or_default());
    report.bytes_read = bytes.into_inner();
    report.packs_read = if read_data { list.len() } else { 0 };
    let mut unref: Vec<String> = packs
        .keys()
        .filter(|p| !used_packs.contains(p))
        .map(pack_path)
        .collect();
    unref.sort();
    report.unreferenced_packs = unref;
    Ok(report)
}

fn read_pack(
    repo: &Repository,
    id: &Id,
    size: u64,
    bytes: &std::sync::atomic::AtomicU64,
) -> Result<(), String> {
    let path = pack_path(id);
    let data = repo.backend().read(&path).map_err(|e| e.to_string())?;
    bytes.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if data.len() as u64 != size {
        return Err(format!("is {} bytes, the index says {size}", data.len()));
    }
    if Id::of_file_bytes(&data) != *id {
        return Err("content does not hash to its name".into());
    }
    let entries = pack::read_whole(repo.key(), &data).map_err(|e| e.to_string())?;
    let bad: Vec<String> = entries
        .par_iter()
        .filter_map(|e| {
            let sealed = &data[e.offset as usize..(e.offset + e.length) as usize];
            blob::open_blob(
                repo.key(),
                e.btype,
                &e.id,
                e.compression,
                e.raw_len as usize,
                sealed,
            )
            .err()
            .map(|err| format!("blob {} at offset {}: {err}", e.id, e.offset))
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}
