//! The binary-log archive: a server's binlog files kept byte for byte in the repository, what
//! can be recovered from them together with the full dumps, and restoring to a point in time.
//!
//! The archive is a sequence of ordinary snapshots tagged `binlog`, one per archive run or per
//! `--flush-every` interval of `--follow`; each holds the bytes it added as `binlog/<file>/<start>`
//! file nodes and an index record ([`crate::snapshot::BinlogRecord`]) naming the server, each
//! range's positions, event times and GTIDs, and the gaps it found. Snapshots were chosen over
//! a new kind of repository file because everything else then holds for the archive unchanged:
//! blobs are deduplicated, compressed, encrypted and packed by the backup's saver; `check`
//! verifies them; `prune` keeps what they reference; `ls`/`cat` show them; a run killed before
//! its snapshot is written leaves only unreferenced packs, and the next run stores the same
//! range again from the last durable end (so nothing is stored twice in the index, and nothing
//! is lost). The layout is in repo-format.md, "Binary-log archive".
//!
//! - [`chain`]: every archived range of one server in order; where the archive ends; gaps.
//! - [`archive`]: copying new bytes from the server (one-shot or following).
//! - [`incremental`]: `backup --mysql --incremental/--differential` as binlog ranges.
//! - [`timeline`]: fulls, ranges, gaps and the recovery point.
//! - [`pitr`]: planning and running a restore to a time, position or GTID.
//! - [`consolidate`]: an increment replayed into a scratch server and dumped as a new full.

pub mod archive;
pub mod chain;
pub mod consolidate;
pub mod incremental;
pub mod pitr;
pub mod timeline;

pub use archive::{ArchiveOptions, ArchiveReport, archive};
pub use chain::Chain;
pub use consolidate::{ConsolidateOptions, ConsolidateOutcome, consolidate};
pub use pitr::{PitrOptions, PitrOutcome, PitrPlan, Target, plan, restore_to};
pub use timeline::{Timeline, timeline};
