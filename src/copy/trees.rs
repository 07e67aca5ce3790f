//! The two ways a snapshot's trees reach the destination (see the parent module): as they are,
//! when both repositories share the id key, or rewritten bottom-up with ids computed again.
//!
//! Both read the source in parallel (rayon, a tree's blobs and a level's or a directory's trees
//! at once: a remote source is latency-bound) and hand plaintext to the destination's blob
//! pipeline, whose bounded queues keep memory at a few chunks per thread. Every blob read from
//! the source is opened and id-checked with the source key, so damage there is reported with the
//! source pack's name rather than copied.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::archiver::Saver;
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::Tree;

use super::CopyProgress;

/// What a copy run has already handled, carried from one snapshot to the next (everything in it
/// is durable in the destination once the snapshot that added it is written). Memory: about 100
/// bytes per tree (shared ids), or per tree and data blob (unrelated keys) copied in this run.
#[derive(Default)]
pub struct Memo {
    /// Shared ids: trees walked (their blobs are in the destination).
    pub seen: HashSet<Id>,
    /// Unrelated keys: source id → destination id.
    pub rekeyed: Rekeyed,
}

#[derive(Default)]
pub struct Rekeyed {
    trees: Mutex<HashMap<Id, Id>>,
    data: Mutex<HashMap<Id, Id>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Ctx<'a, 's> {
    pub src: &'a Repository,
    pub dst: &'a Repository,
    pub saver: &'a Saver<'s>,
    /// The saver's ids queued but not yet indexed.
    pub pending: &'a Mutex<HashSet<Id>>,
    pub progress: &'a CopyProgress,
    pub interrupt: &'a AtomicBool,
}

impl Ctx<'_, '_> {
    fn check_interrupt(&self) -> Result<()> {
        if self.interrupt.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// Loads, opens and id-checks one blob of the source.
    fn read(&self, id: &Id) -> Result<Vec<u8>> {
        let b = self.src.load_blob(id)?;
        self.progress.blobs_read.fetch_add(1, Ordering::Relaxed);
        self.progress
            .bytes_read
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    fn load_tree(&self, id: &Id) -> Result<(Vec<u8>, Tree)> {
        self.check_interrupt()?;
        let bytes = self.read(id)?;
        let tree = Tree::decode(&bytes).map_err(|e| {
            Error::corrupt(
                format!("tree {id} of the source"),
                format!("{e} (run `snap check` on the source)"),
            )
        })?;
        self.progress.trees.fetch_add(1, Ordering::Relaxed);
        Ok((bytes, tree))
    }

    /// Whether the destination lacks `id` (neither usable in its index nor queued by this run).
    /// A blob in a pack a prune has marked counts as missing, as in a backup: that pack may go.
    fn lacks(&self, id: &Id) -> Result<bool> {
        Ok(!locked(self.pending).contains(id) && !self.dst.index().usable(id)?)
    }

    /// Shared ids: every tree below `root` not in `seen`, each once, a level at a time; a blob
    /// the destination lacks is read from the source and stored under the same id.
    pub fn shared(&self, root: &Id, seen: &mut HashSet<Id>) -> Result<()> {
        crate::reach::walk(
            [*root],
            seen,
            |t| self.shared_tree(t).map(|subtrees| ((), subtrees)),
            |_, ()| {},
        )
    }

    fn shared_tree(&self, id: &Id) -> Result<Vec<Id>> {
        let (bytes, tree) = self.load_tree(id)?;
        let data: HashSet<Id> = tree
            .nodes
            .iter()
            .flat_map(|n| n.content.iter().filter_map(|e| e.0))
            .collect();
        data.par_iter().try_for_each(|d| -> Result<()> {
            if self.lacks(d)? {
                let plain = self.read(d)?;
                self.store_same(BlobType::Data, d, plain)?;
            }
            Ok(())
        })?;
        if self.lacks(id)? {
            self.store_same(BlobType::Tree, id, bytes)?;
        }
        Ok(tree.nodes.iter().filter_map(|n| n.subtree).collect())
    }

    /// Stores a blob that must keep its id (shared id keys).
    fn store_same(&self, btype: BlobType, id: &Id, plain: Vec<u8>) -> Result<()> {
        let (new, _) = self.saver.save(btype, plain)?;
        if new != *id {
            // Cannot happen while `shares_id_key` holds; never write a tree naming a wrong id.
            return Err(Error::corrupt(
                format!("blob {id}"),
                "hashes to another id under the destination's key, although both repositories \
                 share the id key",
            ));
        }
        Ok(())
    }

    /// Unrelated keys: the tree `id` and everything below it, rewritten with destination ids;
    /// returns the new id. Subtrees first (in parallel), then the data blobs, then the tree.
    pub fn rekey(&self, id: &Id, memo: &Rekeyed) -> Result<Id> {
        if let Some(n) = locked(&memo.trees).get(id) {
            return Ok(*n);
        }
        let (_, mut tree) = self.load_tree(id)?;
        let subs: Vec<(usize, Id)> = tree
            .nodes
            .par_iter()
            .enumerate()
            .filter_map(|(i, n)| n.subtree.map(|s| (i, s)))
            .map(|(i, s)| self.rekey(&s, memo).map(|n| (i, n)))
            .collect::<Result<_>>()?;
        for (i, n) in subs {
            tree.nodes[i].subtree = Some(n);
        }
        let todo: HashSet<Id> = {
            let known = locked(&memo.data);
            tree.nodes
                .iter()
                .flat_map(|n| n.content.iter().filter_map(|e| e.0))
                .filter(|d| !known.contains_key(d))
                .collect()
        };
        let mapped: Vec<(Id, Id)> = todo
            .par_iter()
            .map(|d| {
                self.check_interrupt()?;
                let plain = self.read(d)?;
                let (n, _) = self.saver.save(BlobType::Data, plain)?;
                Ok((*d, n))
            })
            .collect::<Result<_>>()?;
        {
            let mut known = locked(&memo.data);
            known.extend(mapped);
            for node in &mut tree.nodes {
                for e in &mut node.content {
                    if let Some(d) = e.0 {
                        // Present: every id of this tree was mapped just above or before.
                        e.0 = Some(*known.get(&d).ok_or_else(|| {
                            Error::corrupt(format!("blob {d}"), "was not copied (internal error)")
                        })?);
                    }
                }
            }
        }
        let (new, _) = self.saver.save(BlobType::Tree, tree.encode())?;
        locked(&memo.trees).insert(*id, new);
        Ok(new)
    }
}
