//! One server's archive as an ordered chain: every stored range of every file, sorted by file
//! number and position, read from the archive snapshots' index records. The chain answers
//! "where does the archive end" (where the next run resumes), "which bytes are stored for this
//! file" (reassembly for replay) and "is this stretch continuous" (for timeline and PITR).
//!
//! Two runs may store overlapping ranges (a run killed after its packs but before its snapshot
//! stores nothing; a run after it starts again at the last durable end, so overlaps come only
//! from concurrent runs): the chain keeps, per file, ranges that extend it and ignores ranges it
//! already covers, so a duplicate is never replayed twice. The oldest file's ranges that do not
//! reach back to its start are left out rather than called a hole: retention forgot the
//! archive's beginning (an archive snapshot that a kept full needs may also hold the tail of
//! the file before), and nothing before the oldest kept full is replayed anyway.

use std::collections::BTreeMap;
use std::io::Write;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::mysql::binlog::events::file_number;
use crate::repo::Repository;
use crate::snapshot::{BinlogGap, BinlogSegment, Snapshot};

/// A stored range and the snapshot holding its bytes.
#[derive(Debug, Clone)]
pub struct Stored {
    pub snapshot: Id,
    pub tree: Id,
    pub seg: BinlogSegment,
}

/// The archive of one source.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub source: String,
    pub server_id: Option<u32>,
    /// Per file (in file order), its ranges in position order, contiguous from the first.
    pub files: Vec<(String, Vec<Stored>)>,
    pub gaps: Vec<BinlogGap>,
    /// Ranges that did not continue their file where the archive had it (a hole inside a file).
    pub holes: Vec<String>,
}

fn order_key(name: &str) -> (u64, String) {
    (file_number(name).unwrap_or(u64::MAX), name.to_string())
}

impl Chain {
    /// The chain of `source` from the snapshots `all` (as `Repository::snapshots` returns them).
    pub fn from_snapshots(all: &[(Id, Snapshot)], source: &str) -> Chain {
        let mut per: BTreeMap<(u64, String), Vec<Stored>> = BTreeMap::new();
        let mut chain = Chain {
            source: source.to_string(),
            ..Chain::default()
        };
        for (id, s) in all {
            let Some(rec) = &s.binlog else { continue };
            if rec.source != source {
                continue;
            }
            chain.server_id = Some(rec.server_id);
            chain.gaps.extend(rec.gaps.iter().cloned());
            for seg in &rec.segments {
                per.entry(order_key(&seg.file)).or_default().push(Stored {
                    snapshot: *id,
                    tree: s.tree,
                    seg: seg.clone(),
                });
            }
        }
        for ((_, name), mut ranges) in per {
            ranges.sort_by_key(|r| (r.seg.start, std::cmp::Reverse(r.seg.end)));
            let mut kept: Vec<Stored> = Vec::new();
            for r in ranges {
                let end = kept.last().map_or(0, |k| k.seg.end);
                if r.seg.end <= end && !kept.is_empty() {
                    continue; // already covered
                }
                if r.seg.start != end {
                    if kept.is_empty() && chain.files.is_empty() {
                        // the archive's oldest file without its start: its beginning was
                        // forgotten (retention), not lost between two archived ranges
                        continue;
                    }
                    chain
                        .holes
                        .push(format!("{name}: bytes {end}..{} missing", r.seg.start));
                    // a hole: what follows cannot be replayed from the file's start
                    break;
                }
                kept.push(r);
            }
            if kept.is_empty() && chain.files.is_empty() {
                continue;
            }
            chain.files.push((name, kept));
        }
        chain
    }

    /// The last stored range.
    pub fn tip(&self) -> Option<&Stored> {
        self.files.iter().rev().find_map(|(_, r)| r.last())
    }

    /// End of the stored bytes of `file` (0 when none).
    pub fn end_of(&self, file: &str) -> u64 {
        self.ranges(file)
            .and_then(|r| r.last())
            .map_or(0, |s| s.seg.end)
    }

    pub fn ranges(&self, file: &str) -> Option<&[Stored]> {
        self.files
            .iter()
            .find(|(n, _)| n == file)
            .map(|(_, r)| r.as_slice())
    }

    /// Files from `from` to `to` inclusive, in order.
    pub fn files_between(&self, from: &str, to: &str) -> Vec<&str> {
        let (a, b) = (order_key(from), order_key(to));
        self.files
            .iter()
            .filter(|(n, _)| {
                let k = order_key(n);
                k >= a && k <= b
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Writes the stored bytes of `file` (from its start) to `out`; the bytes end at
    /// [`Chain::end_of`].
    pub fn write_file(&self, repo: &Repository, file: &str, out: &mut dyn Write) -> Result<u64> {
        let ranges = self.ranges(file).unwrap_or_default();
        if ranges.first().map(|r| r.seg.start) != Some(0) {
            return Err(Error::BinlogFormat(format!(
                "the archive holds no start of {file}"
            )));
        }
        let mut n = 0u64;
        for r in ranges {
            let node = repo
                .find_path(&r.tree, r.seg.path.as_bytes())?
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("snapshot {}", r.snapshot.short()),
                        format!("names {} but its tree has no such file", r.seg.path),
                    )
                })?;
            if node.size != r.seg.end - r.seg.start {
                return Err(Error::corrupt(
                    format!("snapshot {}", r.snapshot.short()),
                    format!(
                        "{} holds {} bytes, its record says {}",
                        r.seg.path,
                        node.size,
                        r.seg.end - r.seg.start
                    ),
                ));
            }
            repo.write_content(&node, out)?;
            n += node.size;
        }
        Ok(n)
    }

    /// The stored bytes of `file` in memory (for reading its events).
    pub fn read_file(&self, repo: &Repository, file: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write_file(repo, file, &mut v)?;
        Ok(v)
    }

    /// Whether the files from `from` to `to` are stored without a hole: each complete up to the
    /// next, whose name is the one the previous file's ROTATE named (or the next number after a
    /// STOP); the first error found otherwise.
    pub fn continuous(&self, from: &str, to: &str) -> std::result::Result<(), String> {
        let names = self.files_between(from, to);
        if names.first() != Some(&from) {
            return Err(format!("{from} is not in the archive"));
        }
        if names.last() != Some(&to) {
            return Err(format!("{to} is not in the archive"));
        }
        for w in names.windows(2) {
            let last = self.ranges(w[0]).and_then(|r| r.last());
            let Some(last) = last.filter(|l| l.seg.ended) else {
                return Err(format!(
                    "{} is archived only to byte {} (the rest is missing)",
                    w[0],
                    self.end_of(w[0])
                ));
            };
            if let Some(next) = &last.seg.next
                && next != w[1]
            {
                return Err(format!("{} rotated to {next}, which is not archived", w[0]));
            }
            if self
                .ranges(w[1])
                .and_then(|r| r.first())
                .map(|r| r.seg.start)
                != Some(0)
            {
                return Err(format!("the start of {} is not archived", w[1]));
            }
        }
        for g in &self.gaps {
            if let Some(before) = g.before.split(':').next()
                && order_key(before) > order_key(from)
                && order_key(before) <= order_key(to)
            {
                return Err(format!("{} gap before {}: {}", g.kind, g.before, g.detail));
            }
        }
        Ok(())
    }
}
