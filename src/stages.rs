//! Stage timing: where a run's time goes, stage by stage, and where its threads wait.
//!
//! A backup is a pipeline (walk → read → chunk → hash → index lookup → compress → seal → pack →
//! write → index), each stage on its own threads, joined by bounded queues. Its speed is the
//! speed of the slowest stage, and the cure depends on which one that is: more sealers when the
//! walkers wait on a full sealer queue, more walkers when the sealers sit idle, nothing to do in
//! the CPU when everything waits on the disk. Totals of wall time hide that; these counters show
//! it. Each stage adds the nanoseconds its threads spent in it (busy) and each queue the time a
//! thread spent blocked on it (wait), so busy time summed over CPU stages is the CPU the run
//! needed and a stage's share of `threads × wall` says which one limits.
//!
//! The counters are process-wide, like a profiler's: a stage is timed where it runs, deep in the
//! pipeline, without a context handed through every call. One process runs one command, and the
//! command takes a [`Stages::snapshot`] before and after, so its report counts only itself. The
//! cost is two clock reads per timed span (about 40 ns, vDSO) and one relaxed atomic add, on
//! spans of a chunk or a file: under 0.1% of a backup's CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// A stage of the backup, restore or check pipelines, or a queue a thread can wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Listing directories and `lstat`-ing entries (walkers).
    Walk,
    /// Reading file content: a walker's own reads, or the time it waited for its read-ahead.
    Read,
    /// The read-ahead threads' reads of small files.
    ReadAhead,
    /// Cutting content into chunks (FastCDC).
    Chunk,
    /// Keyed BLAKE3 of a blob's plaintext (sealers; restore and check verify with it too).
    Hash,
    /// Asking the index (and this run's pending set) whether a blob is already stored.
    Lookup,
    /// zstd compression (sealers) or decompression (restore, check).
    Compress,
    /// AES-256-GCM-SIV sealing (sealers) or opening (restore, check).
    Seal,
    /// Assembling packs: header, encryption of the header, pack id.
    Pack,
    /// Writing pack files to the backend.
    Write,
    /// Reading packs (or ranges of them) from the backend: restore, check, copy.
    Fetch,
    /// Adding a written pack's entries to the index.
    Index,
    /// Writing restored files (restore).
    Output,
    /// A walker blocked because the sealers' queue was full (the sealers are the limit).
    WaitSealers,
    /// A sealer waiting for work (the walkers are the limit).
    WaitWork,
    /// A sealer blocked on the packer's queue, or the packer on a busy writer (the disk is).
    WaitWriters,
    /// A walker waiting for the ids of its chunks before it can save a tree.
    WaitIds,
}

const N: usize = 17;

const STAGES: [(Stage, &str, bool); N] = [
    (Stage::Walk, "walk", false),
    (Stage::Read, "read", false),
    (Stage::ReadAhead, "read-ahead", false),
    (Stage::Chunk, "chunk", true),
    (Stage::Hash, "hash", true),
    (Stage::Lookup, "index lookup", true),
    (Stage::Compress, "compress", true),
    (Stage::Seal, "seal", true),
    (Stage::Pack, "pack", true),
    (Stage::Write, "write packs", false),
    (Stage::Fetch, "fetch packs", false),
    (Stage::Index, "index", true),
    (Stage::Output, "output", false),
    (Stage::WaitSealers, "wait: sealers busy", false),
    (Stage::WaitWork, "wait: sealers idle", false),
    (Stage::WaitWriters, "wait: writers busy", false),
    (Stage::WaitIds, "wait: chunk ids", false),
];

struct Counter {
    nanos: AtomicU64,
    spans: AtomicU64,
    bytes: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // only ever used to initialise the static
const ZERO: Counter = Counter {
    nanos: AtomicU64::new(0),
    spans: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

static COUNTERS: [Counter; N] = [ZERO; N];

fn counter(s: Stage) -> &'static Counter {
    &COUNTERS[s as usize]
}

/// Adds a span measured elsewhere.
pub fn add(stage: Stage, since: Instant, bytes: u64) {
    add_nanos(stage, since.elapsed().as_nanos() as u64, bytes);
}

pub fn add_nanos(stage: Stage, nanos: u64, bytes: u64) {
    let c = counter(stage);
    c.nanos.fetch_add(nanos, Ordering::Relaxed);
    c.spans.fetch_add(1, Ordering::Relaxed);
    c.bytes.fetch_add(bytes, Ordering::Relaxed);
}

/// Runs `f` as one span of `stage` over `bytes` bytes.
pub fn time<T>(stage: Stage, bytes: u64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    add(stage, t, bytes);
    r
}

/// A span timed from its start to its drop (for code with several ways out).
pub struct Span {
    stage: Stage,
    bytes: u64,
    at: Instant,
}

impl Span {
    pub fn start(stage: Stage, bytes: u64) -> Span {
        Span {
            stage,
            bytes,
            at: Instant::now(),
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        add(self.stage, self.at, self.bytes);
    }
}

/// A [`std::io::Read`] whose reads count as [`Stage::Read`]; the caller learns how long they took
/// (to tell a chunker's own time from the reads it made).
pub struct TimedRead<R> {
    pub inner: R,
    pub nanos: u64,
}

impl<R: std::io::Read> std::io::Read for TimedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let t = Instant::now();
        let r = self.inner.read(buf);
        let n = t.elapsed().as_nanos() as u64;
        self.nanos += n;
        add_nanos(Stage::Read, n, *r.as_ref().unwrap_or(&0) as u64);
        r
    }
}

/// The counters at one moment; the difference of two is what happened between them.
#[derive(Debug, Clone)]
pub struct Stages {
    at: Instant,
    cpu: (f64, f64),
    values: [(u64, u64, u64); N],
}

/// One row of a report.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: &'static str,
    /// Seconds spent in the stage, summed over threads.
    pub seconds: f64,
    /// Share of the run's wall time (over 100% when several threads do it at once).
    pub percent_of_wall: f64,
    pub spans: u64,
    pub bytes: u64,
    /// Bytes per busy second: the stage's rate on one core.
    pub mib_per_s: Option<f64>,
    /// Time a CPU is busy in this stage (false for I/O stages and waits).
    pub cpu: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub cpu_percent: f64,
    /// CPU seconds inside the timed CPU stages; the rest of user+system is outside them
    /// (the kernel's side of reads and writes, allocation, thread switches).
    pub cpu_stage_seconds: f64,
    pub cores: usize,
    pub stages: Vec<StageRow>,
}

impl Stages {
    pub fn snapshot() -> Stages {
        let mut values = [(0, 0, 0); N];
        for (i, c) in COUNTERS.iter().enumerate() {
            values[i] = (
                c.nanos.load(Ordering::Relaxed),
                c.spans.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed),
            );
        }
        Stages {
            at: Instant::now(),
            cpu: process_cpu(),
            values,
        }
    }

    /// What happened since `self`.
    pub fn report(&self) -> StageReport {
        let now = Stages::snapshot();
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let (user, system) = (now.cpu.0 - self.cpu.0, now.cpu.1 - self.cpu.1);
        let mut stages = Vec::new();
        let mut cpu_stage = 0.0;
        for (stage, name, cpu) in STAGES {
            let (n0, s0, b0) = self.values[stage as usize];
            let (n1, s1, b1) = now.values[stage as usize];
            let (nanos, spans, bytes) = (n1 - n0, s1 - s0, b1 - b0);
            if spans == 0 {
                continue;
            }
            let seconds = nanos as f64 / 1e9;
            if cpu {
                cpu_stage += seconds;
            }
            stages.push(StageRow {
                stage: name,
                seconds,
                percent_of_wall: 100.0 * seconds / wall,
                spans,
                bytes,
                mib_per_s: (bytes > 0 && seconds > 0.0).then(|| bytes as f64 / seconds / 1048576.0),
                cpu,
            });
        }
        StageReport {
            wall_seconds: wall,
            user_seconds: user,
            system_seconds: system,
            cpu_percent: 100.0 * (user + system) / wall,
            cpu_stage_seconds: cpu_stage,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            stages,
        }
    }
}

impl std::fmt::Display for StageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<20} {:>9} {:>7} {:>10} {:>10}",
            "stage", "seconds", "% wall", "spans", "MiB/s/core"
        )?;
        for r in &self.stages {
            let rate = r.mib_per_s.map(|m| format!("{m:.0}")).unwrap_or_default();
            writeln!(
                f,
                "{:<20} {:>9.3} {:>6.0}% {:>10} {:>10}",
                r.stage, r.seconds, r.percent_of_wall, r.spans, rate
            )?;
        }
        write!(
            f,
            "wall {:.2}s, CPU {:.2}s user + {:.2}s system = {:.0}% of one core ({} cores); \
             {:.2}s of it in the timed CPU stages",
            self.wall_seconds,
            self.user_seconds,
            self.system_seconds,
            self.cpu_percent,
            self.cores,
            self.cpu_stage_seconds
        )
    }
}

/// (user, system) CPU seconds of this process so far.
fn process_cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0.0, 0.0);
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(u.ru_utime), s(u.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_only_what_happened_after_its_snapshot() {
        add_nanos(Stage::Output, 5_000_000_000, 1);
        let before = Stages::snapshot();
        add_nanos(Stage::Output, 2_000_000_000, 4 << 20);
        let r = before.report();
        let row = r.stages.iter().find(|r| r.stage == "output").unwrap();
        // Other tests in this process may time real work meanwhile, but never seconds of it.
        assert!(row.spans >= 1);
        assert!(row.seconds >= 2.0 && row.seconds < 4.0, "{}", row.seconds);
        assert!(r.to_string().contains("output"));
    }
}
