//! The verification record: when each pack was last read in full and found intact, kept in the
//! local cache (`<cache>/<repo id>/verified`) so `check --read-data-subset P%` reads the least
//! recently verified packs first and repeated partial checks cover the whole repository. It is a
//! cache like the index: losing it only loses the ordering, never any safety.
//!
//! ```text
//! snap verified v1
//! <pack id, 64 hex> <stamp, decimal u64>      one line per pack, any order
//! ```
//! A stamp is Unix time in milliseconds, raised when needed so that every run's stamp is above
//! every stamp already recorded (a clock stepping back cannot reorder runs); stamp 0 means "found
//! damaged when last read". Order of reading: damaged, never verified, then oldest stamp first;
//! ties by pack id. Lines that do not parse are ignored.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::id::Id;

const MAGIC: &str = "snap verified v1";

/// Which packs `check` reads in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Headers only.
    None,
    /// Every pack.
    All,
    /// This percentage of the packs (rounded up), least recently verified first.
    Percent(f64),
    /// Group `n` of `t` (1-based): packs whose first id byte modulo `t` is `n - 1` (restic's
    /// meaning, so `1/t` … `t/t` together read every pack once).
    Group(u32, u32),
}

impl FromStr for ReadData {
    type Err = String;

    /// Parses a subset spec: `P%` (0 < P ≤ 100) or `n/t` (1 ≤ n ≤ t ≤ 256).
    fn from_str(s: &str) -> Result<ReadData, String> {
        if let Some(p) = s.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(ReadData::Percent(p)),
                _ => Err(format!(
                    "{s:?}: a percentage must be above 0 and at most 100"
                )),
            };
        }
        let bad = || format!("{s:?}: expected P% (e.g. 10%) or n/t (e.g. 2/5, 1 ≤ n ≤ t ≤ 256)");
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        match (n.trim().parse::<u32>(), t.trim().parse::<u32>()) {
            (Ok(n), Ok(t)) if n >= 1 && n <= t && t <= 256 => Ok(ReadData::Group(n, t)),
            _ => Err(bad()),
        }
    }
}

pub struct Verified {
    path: PathBuf,
    stamps: HashMap<Id, u64>,
}

impl Verified {
    /// The record in `cache_dir`; empty when absent or unreadable.
    pub fn load(cache_dir: &Path) -> Verified {
        let path = cache_dir.join("verified");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines = text.lines();
        let mut stamps = HashMap::new();
        if lines.next() == Some(MAGIC) {
            for l in lines {
                let mut w = l.split_ascii_whitespace();
                if let (Some(id), Some(Ok(t))) = (
                    w.next().and_then(Id::from_hex),
                    w.next().map(str::parse::<u64>),
                ) {
                    stamps.insert(id, t);
                }
            }
        }
        Verified { path, stamps }
    }

    /// The packs of `all` (sorted, deduplicated by the caller) that `how` asks to read.
    pub fn select(&self, all: &[Id], how: ReadData) -> Vec<Id> {
        match how {
            ReadData::None => Vec::new(),
            ReadData::All => all.to_vec(),
            ReadData::Group(n, t) => all
                .iter()
                .filter(|id| id.0[0] as u32 % t == n - 1)
                .copied()
                .collect(),
            ReadData::Percent(p) => {
                let n = ((all.len() as f64) * p / 100.0).ceil() as usize;
                let mut order: Vec<(u64, Id)> = all
                    .iter()
                    .map(|id| (self.stamps.get(id).map_or(1, |&s| s), *id))
                    .collect();
                order.sort_unstable();
                order.into_iter().take(n).map(|(_, id)| id).collect()
            }
        }
    }

    /// Marks `ids` as verified now.
    pub fn record(&mut self, ids: &[Id]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let stamp = self
            .stamps
            .values()
            .max()
            // Saturating: the stamps were read from a cache file, and u64::MAX must not wrap
            // (or panic) into "verified long ago".
            .map_or(now, |m| now.max(m.saturating_add(1)))
            .max(2);
        for id in ids {
            self.stamps.insert(*id, stamp);
        }
    }

    /// Marks `ids` as found damaged: they are read first next time, until they pass.
    pub fn record_damaged(&mut self, ids: &[Id]) {
        for id in ids {
            self.stamps.insert(*id, 0);
        }
    }

    /// Writes the record atomically, keeping only packs in `present`.
    pub fn save(&mut self, present: &HashSet<Id>) -> Result<()> {
        self.stamps.retain(|id, _| present.contains(id));
        let mut text = String::with_capacity(16 + self.stamps.len() * 80);
        text.push_str(MAGIC);
        text.push('\n');
        for (id, t) in &self.stamps {
            text.push_str(&format!("{id} {t}\n"));
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::private::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        // A fresh, private, unpredictable name (O_EXCL): never a path another user can plant.
        let mut tmp = tempfile::Builder::new()
            .prefix(".verified-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("cannot create", dir, e))?;
        use std::io::Write;
        tmp.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write", tmp.path(), e))?;
        tmp.persist(&self.path)
            .map_err(|e| Error::io("cannot rename", &self.path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!("25%".parse::<ReadData>(), Ok(ReadData::Percent(25.0)));
        assert_eq!("2/5".parse::<ReadData>(), Ok(ReadData::Group(2, 5)));
        for bad in ["0%", "101%", "x%", "0/5", "6/5", "1/257", "3", "a/b", ""] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stamp_at_the_maximum_from_the_cache_does_not_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let id = Id([9; 32]);
        std::fs::write(
            dir.path().join("verified"),
            format!("{MAGIC}\n{id} {}\n", u64::MAX),
        )
        .unwrap();
        let mut v = Verified::load(dir.path());
        v.record(&[Id([1; 32])]);
        assert_eq!(v.stamps[&Id([1; 32])], u64::MAX);
    }

    #[test]
    fn groups_partition_and_percent_reads_oldest_first() {
        let all: Vec<Id> = (0..=255u8).map(|b| Id([b; 32])).collect();
        let v = Verified {
            path: PathBuf::from("/nonexistent/verified"),
            stamps: HashMap::new(),
        };
        let mut seen = HashSet::new();
        for n in 1..=7 {
            for id in v.select(&all, ReadData::Group(n, 7)) {
                assert!(seen.insert(id), "{id} in two groups");
            }
        }
        assert_eq!(seen.len(), all.len());
        let mut v = v;
        let mut covered = HashSet::new();
        for _ in 0..4 {
            let pick = v.select(&all, ReadData::Percent(25.0));
            assert_eq!(pick.len(), 64);
            v.record(&pick);
            covered.extend(pick);
        }
        assert_eq!(covered.len(), all.len());
    }
}
