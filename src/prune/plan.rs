//! The prune plan: pure data computed from how much of each pack the snapshots use, the newest
//! prune record and the options, with no I/O, so every rule is a unit test and `--dry-run`
//! prints exactly what a real run would start from.
//!
//! Rules (restic's and rustic's, with rustic's two phases):
//! - a pack no snapshot uses is *marked* now; an already marked one keeps its mark time; a
//!   marked pack some snapshot uses again is *recovered* (unmarked);
//! - a pack marked at least `grace` ago, or listed deleted in the record but still present, is
//!   *due*: the sweep deletes it if, under the exclusive lock, the snapshots that exist then
//!   still do not use it;
//! - partly used packs are *repacked* (their used blobs copied to new packs, then the pack is
//!   marked) while the unused bytes left in kept packs exceed `max_unused`, most wasteful
//!   first, until `max_repack` bytes would be copied.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::record::{MarkedPack, PruneRecord};
use crate::id::Id;
use crate::pack::ENTRY_LEN;

/// How much unused space kept packs may hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Limit {
    /// Percent of the bytes used by snapshots.
    Percent(f64),
    Bytes(u64),
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub max_unused: Limit,
    pub max_repack: Option<u64>,
    pub grace_secs: i64,
}

/// One indexed pack and how much of it the snapshots use.
#[derive(Debug, Clone)]
pub struct PackUsage {
    pub id: Id,
    pub size: u64,
    pub blobs: u32,
    pub used_blobs: u32,
    /// Sealed bytes of the used blobs.
    pub used_bytes: u64,
}

impl PackUsage {
    /// Bytes of blobs no snapshot uses (the pack minus its used blobs and its framing).
    pub fn unused_bytes(&self) -> u64 {
        let framing = 8u64 + 4 + 32 + (ENTRY_LEN as u64).saturating_mul(self.blobs as u64);
        self.size
            .saturating_sub(framing)
            .saturating_sub(self.used_bytes)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanStats {
    pub packs: usize,
    pub bytes: u64,
    pub used_bytes: u64,
    pub unused_bytes: u64,
    /// Blobs some snapshot uses (all kept).
    pub blobs_kept: u64,
    /// Used bytes the repack copies.
    pub repack_bytes: u64,
    /// Bytes of the packs due for deletion in this run's sweep.
    pub bytes_freed: u64,
    /// Bytes of marked packs left for a later run (younger than the grace period).
    pub bytes_freed_later: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Unused packs marked now.
    pub mark: Vec<MarkedPack>,
    /// Unused packs that stay marked with their old time.
    pub keep_marked: Vec<MarkedPack>,
    /// Marked (or listed deleted) packs that a snapshot uses again.
    pub recover: Vec<Id>,
    /// Partly used packs whose used blobs are copied before they are marked.
    pub repack: Vec<Id>,
    /// Packs the sweep deletes if they are still unused under the exclusive lock.
    pub due: Vec<Id>,
    pub stats: PlanStats,
}

impl Plan {
    pub fn compute(
        packs: &[PackUsage],
        record: &PruneRecord,
        now: i64,
        opts: &PlanOptions,
    ) -> Plan {
        let mut plan = Plan::default();
        let marked: HashMap<Id, i64> = record
            .marked
            .iter()
            .map(|m| (m.pack, m.marked_at))
            .collect();
        let deleted: HashSet<Id> = record.deleted_ids();
        let due_at = |t: i64| t.saturating_add(opts.grace_secs) <= now;
        let mut candidates = Vec::new();
        let s = &mut plan.stats;
        for p in packs {
            s.packs += 1;
            s.bytes = s.bytes.saturating_add(p.size);
            s.used_bytes = s.used_bytes.saturating_add(p.used_bytes);
            s.unused_bytes = s.unused_bytes.saturating_add(p.unused_bytes());
            s.blobs_kept = s.blobs_kept.saturating_add(p.used_blobs as u64);
            let used = p.used_blobs > 0;
            if deleted.contains(&p.id) || marked.contains_key(&p.id) {
                if used {
                    plan.recover.push(p.id);
                    if p.unused_bytes() > 0 {
                        candidates.push(p);
                    }
                    continue;
                }
                let at = match marked.get(&p.id) {
                    Some(&t) if !deleted.contains(&p.id) => t,
                    // Deleted already decided: finish it whatever the grace.
                    _ => i64::MIN,
                };
                let m = MarkedPack {
                    pack: p.id,
                    size: p.size,
                    marked_at: at.max(0),
                };
                if at == i64::MIN || due_at(at) {
                    plan.due.push(p.id);
                    s.bytes_freed = s.bytes_freed.saturating_add(p.size);
                } else {
                    s.bytes_freed_later = s.bytes_freed_later.saturating_add(p.size);
                }
                if at != i64::MIN {
                    plan.keep_marked.push(m);
                }
            } else if !used {
                plan.mark.push(MarkedPack {
                    pack: p.id,
                    size: p.size,
                    marked_at: now,
                });
                if due_at(now) {
                    plan.due.push(p.id);
                    s.bytes_freed = s.bytes_freed.saturating_add(p.size);
                } else {
                    s.bytes_freed_later = s.bytes_freed_later.saturating_add(p.size);
                }
            } else if p.unused_bytes() > 0 {
                candidates.push(p);
            }
        }
        let limit = match opts.max_unused {
            Limit::Bytes(b) => b,
            Limit::Percent(pct) => (plan.stats.used_bytes as f64 * pct / 100.0) as u64,
        };
        let mut left: u64 = candidates.iter().map(|p| p.unused_bytes()).sum();
        // Most wasteful first: the fewest bytes copied per byte freed.
        candidates.sort_by(|a, b| {
            let ra = a.unused_bytes() as f64 / a.size.max(1) as f64;
            let rb = b.unused_bytes() as f64 / b.size.max(1) as f64;
            rb.total_cmp(&ra).then(a.id.cmp(&b.id))
        });
        for p in candidates {
            if left <= limit {
                break;
            }
            let copied = plan.stats.repack_bytes.saturating_add(p.used_bytes);
            if opts.max_repack.is_some_and(|m| copied > m) {
                continue;
            }
            plan.stats.repack_bytes = copied;
            left = left.saturating_sub(p.unused_bytes());
            plan.repack.push(p.id);
            if due_at(now) {
                plan.due.push(p.id);
                plan.stats.bytes_freed = plan.stats.bytes_freed.saturating_add(p.size);
            } else {
                plan.stats.bytes_freed_later = plan.stats.bytes_freed_later.saturating_add(p.size);
            }
        }
        plan
    }

    /// The marks the record holds once the repack is done: kept, new, repacked (marked `now`).
    pub fn marks_after(&self, sizes: &HashMap<Id, u64>, now: i64) -> Vec<MarkedPack> {
        let mut out: Vec<MarkedPack> = self.keep_marked.clone();
        out.extend(self.mark.iter().cloned());
        out.extend(self.repack.iter().map(|id| MarkedPack {
            pack: *id,
            size: sizes.get(id).copied().unwrap_or(0),
            marked_at: now,
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::record::DeletedPack;

    fn pack(n: u8, used_blobs: u32, used_bytes: u64) -> PackUsage {
        PackUsage {
            id: Id([n; 32]),
            size: 8 + 4 + 32 + 42 * 10 + 1000,
            blobs: 10,
            used_blobs,
            used_bytes,
        }
    }

    fn opts(grace: i64) -> PlanOptions {
        PlanOptions {
            max_unused: Limit::Percent(5.0),
            max_repack: None,
            grace_secs: grace,
        }
    }

    #[test]
    fn unused_packs_are_marked_and_due_only_after_grace() {
        let packs = [pack(1, 0, 0), pack(2, 10, 1000)];
        let p = Plan::compute(&packs, &PruneRecord::default(), 1000, &opts(3600));
        assert_eq!(p.mark.len(), 1);
        assert_eq!(p.mark[0].pack, Id([1; 32]));
        assert!(p.due.is_empty());
        assert_eq!(p.stats.unused_bytes, 1000);
        let p0 = Plan::compute(&packs, &PruneRecord::default(), 1000, &opts(0));
        assert_eq!(p0.due, vec![Id([1; 32])]);
    }

    #[test]
    fn marked_pack_keeps_its_time_and_becomes_due() {
        let rec = PruneRecord {
            marked: vec![MarkedPack {
                pack: Id([1; 32]),
                size: 1,
                marked_at: 100,
            }],
            ..Default::default()
        };
        let packs = [pack(1, 0, 0)];
        let young = Plan::compute(&packs, &rec, 200, &opts(3600));
        assert!(young.due.is_empty());
        assert_eq!(young.keep_marked[0].marked_at, 100);
        let old = Plan::compute(&packs, &rec, 100 + 3600, &opts(3600));
        assert_eq!(old.due, vec![Id([1; 32])]);
    }

    #[test]
    fn used_marked_pack_is_recovered() {
        let rec = PruneRecord {
            marked: vec![MarkedPack {
                pack: Id([1; 32]),
                size: 1,
                marked_at: 0,
            }],
            deleted: vec![DeletedPack {
                pack: Id([2; 32]),
                deleted_at: 0,
            }],
            ..Default::default()
        };
        let packs = [pack(1, 10, 1000), pack(2, 0, 0)];
        let p = Plan::compute(&packs, &rec, 10, &opts(3600));
        assert_eq!(p.recover, vec![Id([1; 32])]);
        // Deletion already decided: finished whatever the grace.
        assert_eq!(p.due, vec![Id([2; 32])]);
        assert!(p.keep_marked.is_empty() && p.mark.is_empty());
    }

    #[test]
    fn repack_most_wasteful_until_under_limit_and_within_max_repack() {
        // Used 3 × 1000 + 100 + 500 bytes; unused 900 and 500: far above 5%.
        let packs = [pack(1, 10, 1000), pack(2, 1, 100), pack(3, 5, 500)];
        let p = Plan::compute(&packs, &PruneRecord::default(), 0, &opts(0));
        assert_eq!(p.repack, vec![Id([2; 32]), Id([3; 32])]);
        assert_eq!(p.stats.repack_bytes, 600);
        let mut o = opts(0);
        o.max_unused = Limit::Bytes(600);
        let p = Plan::compute(&packs, &PruneRecord::default(), 0, &o);
        assert_eq!(p.repack, vec![Id([2; 32])]);
        let mut o = opts(0);
        o.max_repack = Some(400);
        let p = Plan::compute(&packs, &PruneRecord::default(), 0, &o);
        assert_eq!(p.repack, vec![Id([2; 32])]);
        let mut o = opts(0);
        o.max_unused = Limit::Percent(100.0);
        assert!(
            Plan::compute(&packs, &PruneRecord::default(), 0, &o)
                .repack
                .is_empty()
        );
    }
}
