//! Which blobs the snapshots use, counted by where the index places them: for each pack, the
//! offsets and lengths of its used blobs. Trees are walked once however many snapshots share
//! them, a level at a time with the level's trees loaded in parallel (as `check` walks), so
//! memory is the trees seen plus about 12 bytes per used blob, never a map of all blob ids.
//! The walk can be extended by later snapshots ([`Usage::add`]), which is what lets the sweep
//! re-read only the snapshots written since the mark while it holds the exclusive lock.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;

/// One used blob's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub length: u32,
    pub raw_len: u32,
}

#[derive(Default)]
pub struct Usage {
    /// pack → used blob offset → its sealed and plaintext lengths.
    pub used: HashMap<Id, HashMap<u32, Used>>,
    seen: HashSet<Id>,
    pub trees: usize,
}

struct Visit {
    locs: Vec<BlobLocation>,
    subtrees: Vec<Id>,
}

fn missing(id: &Id) -> Error {
    Error::corrupt(
        format!("blob {id}"),
        "is used by a snapshot but is in no pack; prune stopped before deleting anything \
         (run `snap check`)",
    )
}

impl Usage {
    /// Walks every tree reachable from `roots` not walked before (the shared [`crate::reach`]).
    pub fn add(&mut self, repo: &Repository, roots: impl IntoIterator<Item = Id>) -> Result<()> {
        let used = &mut self.used;
        let trees = &mut self.trees;
        crate::reach::walk(
            roots,
            &mut self.seen,
            |t| visit(repo, t).map(|v| (v.locs, v.subtrees)),
            |_, locs| {
                *trees += 1;
                for l in locs {
                    used.entry(l.pack).or_default().insert(
                        l.offset,
                        Used {
                            length: l.length,
                            raw_len: l.raw_len,
                        },
                    );
                }
            },
        )
    }

    pub fn is_used(&self, pack: &Id) -> bool {
        self.used.get(pack).is_some_and(|m| !m.is_empty())
    }
}

fn visit(repo: &Repository, tree_id: &Id) -> Result<Visit> {
    let loc = repo.index().get(tree_id)?.ok_or_else(|| missing(tree_id))?;
    let tree = repo.load_tree(tree_id)?;
    let mut v = Visit {
        locs: vec![loc],
        subtrees: Vec::new(),
    };
    for n in &tree.nodes {
        if let Some(sub) = n.subtree {
            v.subtrees.push(sub);
        }
        for b in n.content.iter().filter_map(|e| e.0) {
            v.locs
                .push(repo.index().get(&b)?.ok_or_else(|| missing(&b))?);
        }
    }
    Ok(v)
}
