//! What a snapshot needs besides itself to be restored, so `forget` never keeps one without the
//! others (and `prune`, which keeps what kept snapshots reference, then keeps their bytes):
//!
//! - an incremental or differential database snapshot needs its full (`mysql.base`) and the
//!   snapshot it continues (`mysql.since`), and so on back to the full: its restore replays
//!   the ranges of every increment on the way;
//! - a full database snapshot with binlog coordinates needs every binary-log archive snapshot
//!   (tag `binlog`) of its server that holds bytes of its coordinates' file or a later one: a
//!   restore to any moment after the full replays them. Archive snapshots wholly before the
//!   oldest kept full are what a policy may forget.
//!
//! Pure logic over snapshot metadata, like [`super::retention`].

use std::collections::{BTreeMap, BTreeSet};

use crate::id::Id;
use crate::mysql::binlog::events::file_number;
use crate::snapshot::{BINLOG_TAG, PRE_RESTORE_TAG, Snapshot};

fn order(file: &str) -> (u64, &str) {
    (file_number(file).unwrap_or(u64::MAX), file)
}

/// What [`missing`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An increment's full and predecessor, and a full's archive: what a policy keeps.
    All,
    /// Only what a restore of the snapshot itself cannot do without (an increment's full and
    /// predecessor): what forgetting by id refuses to break. Naming archive snapshots is the
    /// explicit choice to give up replaying past the increments.
    Restore,
}

/// For each snapshot, the snapshots it needs directly (only ones present in `all`).
pub fn direct(all: &[(Id, Snapshot)], which: Needs) -> BTreeMap<Id, BTreeSet<Id>> {
    let present: BTreeSet<Id> = all.iter().map(|(id, _)| *id).collect();
    let mut out: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
    for (id, s) in all {
        let Some(m) = &s.mysql else { continue };
        if s.tags
            .iter()
            .any(|t| t == PRE_RESTORE_TAG || t == BINLOG_TAG)
        {
            continue;
        }
        let mut needs: BTreeSet<Id> = [m.base, m.since]
            .into_iter()
            .flatten()
            .filter(|n| n != id && present.contains(n))
            .collect();
        if let (true, Some(f), Needs::All) = (m.kind.is_full(), &m.binlog_file, which) {
            for (aid, a) in all {
                let Some(rec) = a
                    .binlog
                    .as_ref()
                    .filter(|_| a.tags.iter().any(|t| t == BINLOG_TAG))
                else {
                    continue;
                };
                if rec.source == m.source
                    && rec.segments.iter().any(|seg| order(&seg.file) >= order(f))
                {
                    needs.insert(*aid);
                }
            }
        }
        if !needs.is_empty() {
            out.insert(*id, needs);
        }
    }
    out
}

/// Everything the snapshots `kept` need, transitively, that is not in `kept`: each with the
/// kept snapshot that first needed it.
pub fn missing(all: &[(Id, Snapshot)], kept: &BTreeSet<Id>, which: Needs) -> BTreeMap<Id, Id> {
    let direct = direct(all, which);
    let mut have = kept.clone();
    let mut out = BTreeMap::new();
    let mut work: Vec<Id> = kept.iter().copied().collect();
    while let Some(id) = work.pop() {
        for n in direct.get(&id).into_iter().flatten() {
            if have.insert(*n) {
                out.insert(*n, id);
                work.push(*n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{BackupKind, BinlogRecord, BinlogSegment, MysqlSummary};

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn snap(tags: &[&str], mysql: Option<MysqlSummary>, binlog: Option<&str>) -> Snapshot {
        let mut s = Snapshot::new(id(0), "h".into(), Default::default());
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s.mysql = mysql;
        s.binlog = binlog.map(|f| BinlogRecord {
            source: "db:3306".into(),
            segments: vec![BinlogSegment {
                file: f.into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        s
    }

    fn db(kind: BackupKind, file: &str, base: Option<u8>, since: Option<u8>) -> MysqlSummary {
        MysqlSummary {
            source: "db:3306".into(),
            binlog_file: Some(file.into()),
            binlog_position: Some(4),
            kind,
            base: base.map(id),
            since: since.map(id),
            ..Default::default()
        }
    }

    /// full 1 (at file .2) <- inc 2 <- inc 3; archive 4 holds .1 only, 5 holds .2, 6 holds .3
    fn repo() -> Vec<(Id, Snapshot)> {
        vec![
            (id(4), snap(&["binlog"], None, Some("bin.000001"))),
            (
                id(1),
                snap(
                    &[],
                    Some(db(BackupKind::Full, "bin.000002", None, None)),
                    None,
                ),
            ),
            (id(5), snap(&["binlog"], None, Some("bin.000002"))),
            (
                id(2),
                snap(
                    &[],
                    Some(db(BackupKind::Incremental, "bin.000002", Some(1), Some(1))),
                    Some("bin.000002"),
                ),
            ),
            (id(6), snap(&["binlog"], None, Some("bin.000003"))),
            (
                id(3),
                snap(
                    &[],
                    Some(db(BackupKind::Incremental, "bin.000003", Some(1), Some(2))),
                    Some("bin.000003"),
                ),
            ),
        ]
    }

    #[test]
    fn an_increment_keeps_its_chain_and_the_full_keeps_its_archive() {
        let all = repo();
        let kept: BTreeSet<Id> = [id(3)].into();
        let m = missing(&all, &kept, Needs::All);
        let got: BTreeSet<Id> = m.keys().copied().collect();
        // inc 3 -> inc 2 -> full 1 -> archives 5 and 6 (not 4: wholly before the full's file)
        assert_eq!(got, [id(1), id(2), id(5), id(6)].into());
        assert_eq!(m[&id(2)], id(3));
        // every increment names its full directly
        assert_eq!(m[&id(1)], id(3));
        let m = missing(&all, &kept, Needs::Restore);
        let got: BTreeSet<Id> = m.keys().copied().collect();
        assert_eq!(
            got,
            [id(1), id(2)].into(),
            "a restore of inc 3 needs no archive"
        );
    }

    #[test]
    fn archives_before_every_kept_full_and_other_servers_are_not_needed() {
        let mut all = repo();
        if let Some(m) = all[1].1.mysql.as_mut() {
            m.source = "other:3306".into();
        }
        let kept: BTreeSet<Id> = [id(1)].into();
        assert!(missing(&all, &kept, Needs::All).is_empty());
        let kept: BTreeSet<Id> = [id(4), id(5), id(6)].into();
        assert!(
            missing(&all, &kept, Needs::All).is_empty(),
            "archives need nothing"
        );
    }
}
