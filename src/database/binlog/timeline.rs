//! `snap mysql timeline`: what can be recovered. Each full dump with its binlog coordinates, the
//! archive's continuous stretches (by position, time and GTID), its gaps, and the recovery
//! point: the newest moment a full plus a gap-free stretch of archive reaches.
//!
//! A stretch ends where [`Chain::continuous`] fails between two neighbouring files (a file not
//! archived to its end, a rotate to a file that is missing, a recorded gap) or at a hole inside
//! a file. A full counts for a stretch when its coordinates lie inside it: replay starts there.

use serde::Serialize;

use super::chain::Chain;
use crate::id::Id;
use crate::mysql::binlog::events::file_number;
use crate::snapshot::{BinlogGap, PRE_RESTORE_TAG, Snapshot};

#[derive(Debug, Clone, Serialize)]
pub struct FullPoint {
    pub snapshot: String,
    pub time: String,
    pub binlog_file: String,
    pub binlog_position: u64,
    pub gtid: Option<String>,
    /// Whether its coordinates lie in an archived stretch (replay can start from it).
    pub in_archive: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stretch {
    pub from: String,
    pub to: String,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub gtid_first: Option<String>,
    pub gtid_last: Option<String>,
    /// GTID state at `to`.
    pub gtid_state: String,
    pub files: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPoint {
    pub time: Option<String>,
    pub position: String,
    pub gtid_state: String,
    /// The full a restore to it starts from.
    pub full: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub source: String,
    pub server_id: Option<u32>,
    pub fulls: Vec<FullPoint>,
    pub stretches: Vec<Stretch>,
    pub gaps: Vec<BinlogGap>,
    /// Holes inside files (ranges that do not continue their file).
    pub holes: Vec<String>,
    pub recovery_point: Option<RecoveryPoint>,
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn time_str(t: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(t), 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// `(file number, pos)` for comparing positions of one server.
pub fn pos_key(file: &str, pos: u64) -> (u64, String, u64) {
    (file_number(file).unwrap_or(u64::MAX), file.to_string(), pos)
}

/// The full dumps whose coordinates are known, oldest first.
pub fn fulls(all: &[(Id, Snapshot)]) -> Vec<(Id, Snapshot, String, u64)> {
    all.iter()
        .filter(|(_, s)| !s.tags.iter().any(|t| t == PRE_RESTORE_TAG))
        .filter_map(|(id, s)| {
            let m = s.mysql.as_ref()?;
            if !m.kind.is_full() {
                return None;
            }
            Some((*id, s.clone(), m.binlog_file.clone()?, m.binlog_position?))
        })
        .collect()
}

/// The continuous stretches of `chain`, as (first file, last file) pairs.
pub fn stretches(chain: &Chain) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let names: Vec<&str> = chain.files.iter().map(|(n, _)| n.as_str()).collect();
    for (i, n) in names.iter().enumerate() {
        let joined = i > 0 && chain.continuous(names[i - 1], n).is_ok();
        match out.last_mut() {
            Some(last) if joined => last.1 = n.to_string(),
            _ => out.push((n.to_string(), n.to_string())),
        }
    }
    out
}

pub fn timeline(all: &[(Id, Snapshot)], chain: &Chain) -> Timeline {
    let spans = stretches(chain);
    let mut views = Vec::new();
    for (a, b) in &spans {
        let names = chain.files_between(a, b);
        let segs: Vec<_> = names
            .iter()
            .flat_map(|n| chain.ranges(n).unwrap_or_default())
            .map(|s| &s.seg)
            .collect();
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
            continue;
        };
        views.push(Stretch {
            from: format!("{}:{}", first.file, first.start.max(4)),
            to: format!("{}:{}", last.file, last.end),
            first_time: segs.iter().find_map(|s| s.first_time).map(time_str),
            last_time: segs.iter().rev().find_map(|s| s.last_time).map(time_str),
            gtid_first: segs.iter().find_map(|s| s.gtid_first.clone()),
            gtid_last: segs.iter().rev().find_map(|s| s.gtid_last.clone()),
            gtid_state: last.gtid_state.clone(),
            files: names.len(),
            bytes: segs.iter().map(|s| s.end - s.start).sum(),
        });
    }
    let in_span = |file: &str, pos: u64| -> Option<usize> {
        spans.iter().position(|(a, b)| {
            let k = pos_key(file, pos);
            k >= pos_key(a, 0) && k <= pos_key(b, chain.end_of(b))
        })
    };
    let mut out_fulls = Vec::new();
    let mut best: Option<(usize, String)> = None;
    for (id, s, f, p) in fulls(all) {
        let span = in_span(&f, p);
        if let Some(i) = span
            && best.as_ref().is_none_or(|b| i >= b.0)
        {
            best = Some((i, id.to_hex()));
        }
        out_fulls.push(FullPoint {
            snapshot: id.to_hex(),
            time: s.time.clone(),
            binlog_file: f,
            binlog_position: p,
            gtid: s.mysql.as_ref().and_then(|m| m.gtid.clone()),
            in_archive: span.is_some(),
        });
    }
    let recovery_point = best.and_then(|(i, full)| {
        let v = views.get(i)?;
        Some(RecoveryPoint {
            time: v.last_time.clone(),
            position: v.to.clone(),
            gtid_state: v.gtid_state.clone(),
            full,
        })
    });
    Timeline {
        source: chain.source.clone(),
        server_id: chain.server_id,
        fulls: out_fulls,
        stretches: views,
        gaps: chain.gaps.clone(),
        holes: chain.holes.clone(),
        recovery_point,
    }
}
