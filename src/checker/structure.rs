//! The structure pass: every snapshot decodes, every tree it reaches is indexed, loads and
//! decodes, and every data blob a file names is in the index. Trees are visited once however many
//! snapshots share them, a level at a time with the level's trees loaded in parallel (the walk
//! prune shares, [`crate::reach`]); memory is the set of tree ids and packs seen, never a map of
//! all blobs.

use std::collections::HashSet;

use crate::backend::pack_path;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// What the walk found.
#[derive(Default)]
pub(super) struct Walk {
    pub trees: usize,
    pub data_refs: usize,
    pub used_packs: HashSet<Id>,
    /// Trees that are indexed but do not load: (tree id, pack file, error).
    pub bad_trees: Vec<(Id, String, String)>,
    /// Referenced blobs (data or tree) that no indexed pack holds.
    pub missing: HashSet<Id>,
}

/// One tree's contribution.
#[derive(Default)]
struct Visit {
    pack: Option<Id>,
    error: Option<String>,
    missing: Vec<Id>,
    packs: Vec<Id>,
    subtrees: Vec<Id>,
    data_refs: usize,
}

pub(super) fn walk(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<Walk> {
    let mut w = Walk::default();
    let mut seen: HashSet<Id> = HashSet::new();
    crate::reach::walk::<Visit, crate::error::Error>(
        snapshots.iter().map(|(_, s)| s.tree),
        &mut seen,
        |t| {
            let mut v = visit(repo, t)?;
            let subtrees = std::mem::take(&mut v.subtrees);
            Ok((v, subtrees))
        },
        |tree, v: Visit| {
            w.trees += 1;
            w.data_refs += v.data_refs;
            match v.pack {
                Some(p) => {
                    w.used_packs.insert(p);
                    if let Some(e) = v.error {
                        w.bad_trees.push((*tree, pack_path(&p), e));
                    }
                }
                None => {
                    w.missing.insert(*tree);
                }
            }
            w.used_packs.extend(v.packs);
            w.missing.extend(v.missing);
        },
    )?;
    Ok(w)
}

fn visit(repo: &Repository, tree_id: &Id) -> Result<Visit> {
    let mut v = Visit::default();
    let Some(loc) = repo.index().get(tree_id)? else {
        return Ok(v);
    };
    v.pack = Some(loc.pack);
    let tree = match repo.load_tree(tree_id) {
        Ok(t) => t,
        Err(e) => {
            // The pack is named by the problem already; keep only what is wrong.
            v.error = Some(match e {
                crate::error::Error::Corrupt { file, what } if file.starts_with("data/") => {
                    format!("tree {what}")
                }
                crate::error::Error::Corrupt { what, .. } => format!("tree blob {tree_id}: {what}"),
                e => format!("tree blob {tree_id}: {e}"),
            });
            return Ok(v);
        }
    };
    let mut packs = HashSet::new();
    for n in &tree.nodes {
        if let Some(sub) = n.subtree {
            v.subtrees.push(sub);
        }
        for b in n.content.iter().filter_map(|e| e.0) {
            v.data_refs += 1;
            match repo.index().get(&b)? {
                Some(loc) => {
                    packs.insert(loc.pack);
                }
                None => v.missing.push(b),
            }
        }
    }
    v.packs = packs.into_iter().collect();
    Ok(v)
}
