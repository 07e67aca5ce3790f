//! Naming what damage affects: once the damaged packs and blobs are known, every snapshot's tree
//! is walked again and each file whose content uses a damaged blob (or a blob in a damaged pack),
//! and each directory whose tree blob is damaged, is listed as `<snapshot>:<path>` under its
//! problem. Runs only when something is damaged. A tree found clean is remembered by id and never
//! entered again, so shared subtrees cost one visit; only the (few) trees on a path to damage are
//! kept in memory, and each problem lists at most `MAX_AFFECTED` paths plus a count of the rest.

use std::collections::{HashMap, HashSet};

use super::Problem;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::Tree;

pub const MAX_AFFECTED: usize = 100;

pub(super) struct Damage {
    /// Pack id → problem index: every blob in the pack is affected.
    pub packs: HashMap<Id, usize>,
    /// Blob id → problem index.
    pub blobs: HashMap<Id, usize>,
}

struct Attributor<'a> {
    repo: &'a Repository,
    damage: &'a Damage,
    problems: &'a mut [Problem],
    clean: HashSet<Id>,
    dirty: HashMap<Id, Tree>,
}

/// Fills `affected` of the problems that `damage` points at.
pub(super) fn attribute(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    damage: &Damage,
    problems: &mut [Problem],
) -> Result<()> {
    if damage.packs.is_empty() && damage.blobs.is_empty() {
        return Ok(());
    }
    let mut a = Attributor {
        repo,
        damage,
        problems,
        clean: HashSet::new(),
        dirty: HashMap::new(),
    };
    for (id, snap) in snapshots {
        a.visit(&snap.tree, "", &id.short())?;
    }
    Ok(())
}

impl Attributor<'_> {
    fn damage_of(&self, blob: &Id) -> Result<Option<usize>> {
        if let Some(p) = self.damage.blobs.get(blob) {
            return Ok(Some(*p));
        }
        Ok(self
            .repo
            .index()
            .get(blob)?
            .and_then(|loc| self.damage.packs.get(&loc.pack).copied()))
    }

    fn emit(&mut self, problem: usize, snap: &str, path: &str) {
        let p = &mut self.problems[problem];
        let entry = format!("{snap}:{}", if path.is_empty() { "/" } else { path });
        if p.affected.last() == Some(&entry) {
            return;
        }
        if p.affected.len() < MAX_AFFECTED {
            p.affected.push(entry);
        } else {
            p.affected_omitted += 1;
        }
    }

    /// Lists damage below `tree` (at `path` in snapshot `snap`); whether there was any.
    fn visit(&mut self, tree: &Id, path: &str, snap: &str) -> Result<bool> {
        if self.clean.contains(tree) {
            return Ok(false);
        }
        if let Some(p) = self.damage_of(tree)? {
            self.emit(p, snap, path);
            return Ok(true);
        }
        let t = match self.dirty.remove(tree) {
            Some(t) => t,
            None => match self.repo.load_tree(tree) {
                Ok(t) => t,
                // Unloadable but not yet attributed (the structure pass reports it).
                Err(_) => return Ok(false),
            },
        };
        let mut dirty = false;
        for n in &t.nodes {
            let p = format!("{path}/{}", n.name_lossy());
            for b in n.content.iter().filter_map(|e| e.0) {
                if let Some(problem) = self.damage_of(&b)? {
                    self.emit(problem, snap, &p);
                    dirty = true;
                }
            }
            if let Some(sub) = n.subtree {
                dirty |= self.visit(&sub, &p, snap)?;
            }
        }
        if dirty {
            self.dirty.insert(*tree, t);
        } else {
            self.clean.insert(*tree);
        }
        Ok(dirty)
    }
}
