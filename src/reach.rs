//! The reachability walk `check` and `prune` share (restic's `FindUsedBlobs`): from a set of
//! root trees, visit every tree reachable below them exactly once, a level of the forest at a
//! time, the trees of one level in parallel. Memory is the set of tree ids seen plus one level,
//! never a map of every blob, however many snapshots share the trees.
//!
//! What a visit does (load and validate the tree, look up its blobs) is the caller's: `check`
//! records damage and goes on, `prune` stops at the first blob it cannot place. Passing the same
//! `seen` set to a later call walks only what is new, which is how prune's sweep re-reads just the
//! snapshots written since its mark.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::id::Id;

/// Walks every tree below `roots` not in `seen` (and adds them to it). `visit` runs in parallel
/// and returns its finding and the tree's subtrees; `absorb` receives each finding in order on
/// the calling thread. The first error stops the walk.
pub fn walk<V, E>(
    roots: impl IntoIterator<Item = Id>,
    seen: &mut HashSet<Id>,
    visit: impl Fn(&Id) -> Result<(V, Vec<Id>), E> + Sync,
    mut absorb: impl FnMut(&Id, V),
) -> Result<(), E>
where
    V: Send,
    E: Send,
{
    let mut level: Vec<Id> = roots.into_iter().filter(|t| seen.insert(*t)).collect();
    while !level.is_empty() {
        let visits: Vec<(V, Vec<Id>)> = level.par_iter().map(&visit).collect::<Result<_, E>>()?;
        let mut next = Vec::new();
        for (tree, (v, subtrees)) in level.iter().zip(visits) {
            absorb(tree, v);
            next.extend(subtrees.into_iter().filter(|s| seen.insert(*s)));
        }
        level = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tree_once_level_by_level_and_seen_carries_over() {
        // 1 → {2, 3}, 2 → {3, 4}, 3 → {}, 4 → {1} (a cycle is walked once too).
        let kids = |t: &Id| -> Vec<Id> {
            match t.0[0] {
                1 => vec![Id([2; 32]), Id([3; 32])],
                2 => vec![Id([3; 32]), Id([4; 32])],
                4 => vec![Id([1; 32])],
                _ => vec![],
            }
        };
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        walk::<(), ()>(
            [Id([1; 32])],
            &mut seen,
            |t| Ok(((), kids(t))),
            |t, ()| order.push(t.0[0]),
        )
        .unwrap();
        assert_eq!(order, vec![1, 2, 3, 4]);
        let mut again = Vec::new();
        walk::<(), ()>(
            [Id([4; 32]), Id([5; 32])],
            &mut seen,
            |t| Ok(((), kids(t))),
            |t, ()| again.push(t.0[0]),
        )
        .unwrap();
        assert_eq!(again, vec![5]);
    }
}
