//! `snap mysql archive`: copy what the server logged since the archive's end into the
//! repository, once (`--follow` off: closed files and the open file up to its current end), or
//! continuously as a replica, making what arrived durable at least every `flush_every`.
//!
//! Where to start is decided from the archive alone (its [`Chain`] tip) against what the server
//! still has, and every surprise is recorded as a gap instead of being papered over:
//! - the tip's file (or the file it rotated to) is no longer on the server: `purged`;
//! - the server has another `server_id` than the archive's: `server-switch`;
//! - a file's GTID_LIST (its state at the start) is not the state the archive had at the end of
//!   the previous file: `gtid-hole` (a failover to a server with another history).
//!
//! The copy runs as [`RawCopy`]; received bytes are cut only at event boundaries, and a
//! restarted copy (after a disconnect, or after `snap` was killed) resumes at the last durable
//! end, so each byte is stored once and none is skipped. A follower that reconnects to find its
//! resume file purged meanwhile records a `purged` gap (and says so at once on stderr) and goes on
//! from the server's oldest log.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chain::Chain;
use super::timeline;
use crate::archiver::{self, StreamSnapshot};
use crate::error::{Error, Result};
use crate::mysql::MysqlTarget;
use crate::mysql::binlog::ServerLogs;
use crate::mysql::binlog::events::{self, Event, GtidState, state_string};
use crate::mysql::binlog::remote::{Chunk, CopyFrom, RawCopy};
use crate::repo::Repository;
use crate::snapshot::{BINLOG_TAG, BinlogGap, BinlogRecord, BinlogSegment};

/// Name of the directory holding archived bytes at the root of an archive snapshot's tree.
pub const BINLOG_DIR: &str = "binlog";

#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub target: MysqlTarget,
    /// Stay connected and archive as the server writes.
    pub follow: bool,
    /// With `follow`: the longest time received bytes wait before they are made durable.
    pub flush_every: Duration,
    /// The replica server id the follower announces (must differ from every real replica's).
    pub replica_id: u32,
    pub host: Option<String>,
    /// Where the copy's private working directory goes.
    pub work_dir: PathBuf,
    /// The archive's name; default [`source_name`] of the target.
    pub name: Option<String>,
    /// Take the repository's shared lock for each flush instead of relying on one held by the
    /// caller for the whole run (`--follow` runs for days: a lock held that long would keep
    /// `forget` and `prune` out forever). The flag is the interrupt the lock raises when lost.
    pub lock_per_flush: Option<std::sync::Arc<AtomicBool>>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    pub source: String,
    pub snapshots: Vec<String>,
    pub segments: Vec<BinlogSegment>,
    /// Gaps found by this run.
    pub gaps: Vec<BinlogGap>,
    pub bytes: u64,
    /// Where the archive ends now (`file:pos`).
    pub end: Option<String>,
    /// Seconds after which the server purges a closed log (0: never).
    pub expire_seconds: u64,
    /// Server files not (fully) archived when the run started.
    pub unarchived_at_start: Vec<String>,
    pub reconnects: u64,
    /// When the run started (seconds since the epoch).
    pub started: i64,
}

/// The archive's name for a target: how snap reached it, without the password.
pub fn source_name(t: &MysqlTarget) -> String {
    t.to_string()
}

/// Where the next copy starts, and the gaps that decision reveals.
fn resume_point(
    chain: &Chain,
    server: &ServerLogs,
    now: &str,
) -> Result<(String, u64, GtidState, Vec<BinlogGap>)> {
    let mut gaps = Vec::new();
    let first = server
        .files
        .first()
        .map(|f| f.0.clone())
        .ok_or_else(|| Error::BinlogOff(chain.source.clone()))?;
    let Some(tip) = chain.tip() else {
        return Ok((first, 4, GtidState::new(), gaps));
    };
    let state = parse_state(&tip.seg.gtid_state);
    let tip_at = format!("{}:{}", tip.seg.file, tip.seg.end);
    if chain.server_id.is_some_and(|id| id != server.server_id) {
        gaps.push(BinlogGap {
            kind: "server-switch".into(),
            after: Some(tip_at),
            before: format!("{first}:4"),
            detail: format!(
                "the archive is of server_id {}, the server now has server_id {}",
                chain.server_id.unwrap_or(0),
                server.server_id
            ),
            detected: now.into(),
        });
        return Ok((first, 4, GtidState::new(), gaps));
    }
    let (file, pos) = if tip.seg.ended {
        let next = tip
            .seg
            .next
            .clone()
            .or_else(|| server.after(&tip.seg.file).map(str::to_string));
        match next {
            Some(n) => (n, 4),
            None => (tip.seg.file.clone(), tip.seg.end),
        }
    } else {
        (tip.seg.file.clone(), tip.seg.end)
    };
    if server.has(&file) {
        return Ok((file, pos, state, gaps));
    }
    gaps.push(BinlogGap {
        kind: "purged".into(),
        after: Some(tip_at),
        before: format!("{first}:4"),
        detail: format!(
            "{file} (from byte {pos}) was purged from the server before it was archived; the \
             server's oldest log is {first}"
        ),
        detected: now.into(),
    });
    Ok((first, 4, GtidState::new(), gaps))
}

/// The archived format description event's timestamp of `file` (its first range's first
/// event), to recognise the same file when resuming inside it.
fn created_time(chain: &Chain, file: &str) -> Option<u32> {
    chain
        .ranges(file)?
        .first()
        .filter(|r| r.seg.start == 0)?
        .seg
        .first_time
}

/// `0-1-5,1-2-9` back into a state.
pub fn parse_state(s: &str) -> GtidState {
    s.split(',')
        .filter_map(|g| g.parse::<events::Gtid>().ok())
        .map(|g| ((g.domain, g.server), g.seq))
        .collect()
}

/// Bytes received for one file since the last flush.
struct Pending {
    file: String,
    start: u64,
    bytes: Vec<u8>,
    events: Vec<Event>,
    ended: bool,
    next: Option<String>,
}

/// The running state of one archive run.
struct Run<'a> {
    repo: &'a mut Repository,
    opts: &'a ArchiveOptions,
    server: ServerLogs,
    source: String,
    /// GTID state after the last byte received.
    state: GtidState,
    pending: Vec<Pending>,
    /// Gaps found and not yet recorded in a snapshot.
    gaps: Vec<BinlogGap>,
    report: ArchiveReport,
    /// Where the received bytes end.
    at: (String, u64),
}

impl Run<'_> {
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.bytes.len()).sum()
    }

    fn take(&mut self, c: Chunk) {
        // continuity: a file's GTID_LIST must be the state the previous file ended with
        if c.start == 0
            && let Some(list) = c.events.iter().find_map(|e| e.gtid_list.clone())
            && !self.state.is_empty()
            && list != self.state
        {
            self.gaps.push(BinlogGap {
                kind: "gtid-hole".into(),
                after: Some(format!("{}:{}", self.at.0, self.at.1)),
                before: format!("{}:4", c.file),
                detail: format!(
                    "{} starts from GTID state {} but the archive ended at {}",
                    c.file,
                    state_string(&list),
                    state_string(&self.state)
                ),
                detected: now(),
            });
        }
        for e in &c.events {
            if let Some(list) = &e.gtid_list {
                // the file's own statement of the state wins (a first archive starts here)
                for (k, v) in list {
                    self.state.insert(*k, *v);
                }
            }
            if let Some(t) = &e.committed {
                self.state
                    .insert((t.gtid.domain, t.gtid.server), t.gtid.seq);
            }
        }
        let end = c.start + c.bytes.len() as u64;
        self.at = match &c.next {
            Some(n) => (n.clone(), 4),
            None => (c.file.clone(), end),
        };
        match self.pending.last_mut() {
            Some(p) if p.file == c.file && p.start + p.bytes.len() as u64 == c.start => {
                p.bytes.extend_from_slice(&c.bytes);
                p.events.extend(c.events);
                p.ended |= c.ended;
                if c.next.is_some() {
                    p.next = c.next;
                }
            }
            _ => self.pending.push(Pending {
                file: c.file,
                start: c.start,
                bytes: c.bytes,
                events: c.events,
                ended: c.ended,
                next: c.next,
            }),
        }
        // the state after each pending range is computed at flush from its own events
    }

    /// Makes everything received durable in one snapshot.
    fn flush(&mut self, prior_state: &mut GtidState) -> Result<()> {
        if self.pending.is_empty() && self.gaps.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let gaps = std::mem::take(&mut self.gaps);
        let mut segments = Vec::new();
        let mut state = prior_state.clone();
        for p in &pending {
            let mut seg = BinlogSegment {
                file: p.file.clone(),
                start: p.start,
                end: p.start + p.bytes.len() as u64,
                path: format!("{BINLOG_DIR}/{}/{}", p.file, p.start),
                ended: p.ended,
                next: p.next.clone(),
                events: p.events.len() as u64,
                ..BinlogSegment::default()
            };
            seg.first_time = p.events.first().map(|e| e.header.timestamp);
            seg.last_time = p.events.last().map(|e| e.header.timestamp);
            for e in &p.events {
                if let Some(list) = &e.gtid_list {
                    seg.gtid_list = Some(state_string(list));
                    for (k, v) in list {
                        state.insert(*k, *v);
                    }
                }
                if let Some(t) = &e.committed {
                    seg.transactions += 1;
                    if seg.gtid_first.is_none() {
                        seg.gtid_first = Some(t.gtid.to_string());
                    }
                    seg.gtid_last = Some(t.gtid.to_string());
                    state.insert((t.gtid.domain, t.gtid.server), t.gtid.seq);
                }
            }
            seg.gtid_state = state_string(&state);
            segments.push(seg);
        }
        let record = BinlogRecord {
            source: self.source.clone(),
            server_id: self.server.server_id,
            server_uuid: self.server.server_uuid.clone(),
            segments: segments.clone(),
            gaps: gaps.clone(),
        };
        let meta = StreamSnapshot {
            host: self.opts.host.clone(),
            tags: vec![BINLOG_TAG.into()],
            paths: vec![format!("binlog:{}", self.source)],
            binlog: Some(record),
            ..StreamSnapshot::default()
        };
        // between flushes nothing of this run is in the repository, so no lock is needed; for
        // the write, the lock, and (as every writer does after taking it) the index brought up
        // to date with what a prune may have removed meanwhile
        let _lock = match &self.opts.lock_per_flush {
            Some(flag) => {
                let g = crate::repo::lock::LockGuard::for_op(
                    self.repo,
                    crate::repo::lock::Operation::Backup,
                    flag.clone(),
                )?;
                self.repo.sync_index()?;
                Some(g)
            }
            None => None,
        };
        let out = archiver::save_streams(self.repo, BINLOG_DIR, |sink| {
            for p in &pending {
                let mut w = sink.create(&format!("{}/{}", p.file, p.start))?;
                w.write_all(&p.bytes)
                    .map_err(|e| Error::io("archiving", &p.file, e))?;
                w.finish()?;
            }
            Ok(meta)
        })?;
        *prior_state = state;
        self.report.bytes += segments.iter().map(|s| s.end - s.start).sum::<u64>();
        self.report.snapshots.push(out.id.to_hex());
        self.report.segments.extend(segments);
        self.report.gaps.extend(gaps);
        Ok(())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Largest read from the copy at once; a flush happens at the latest when this much is pending
/// times [`FLUSH_BYTES_FACTOR`], so memory stays bounded on a burst.
const POLL_BYTES: usize = 8 << 20;
const FLUSH_BYTES_FACTOR: usize = 8;

/// Runs one archive (see the module doc). `interrupt` ends a `--follow` run cleanly (what was
/// received is flushed first).
pub fn archive(
    repo: &mut Repository,
    opts: &ArchiveOptions,
    interrupt: &AtomicBool,
) -> Result<ArchiveReport> {
    let server = ServerLogs::query(&opts.target)?;
    let source = opts
        .name
        .clone()
        .unwrap_or_else(|| source_name(&opts.target));
    let all = repo.snapshots()?;
    let chain = Chain::from_snapshots(&all, &source);
    let (file, pos, state, gaps) = resume_point(&chain, &server, &now())?;
    let unarchived = server
        .files
        .iter()
        .filter(|(n, size)| chain.end_of(n) < *size)
        .map(|(n, _)| n.clone())
        .collect();
    let mut run = Run {
        repo,
        opts,
        source: source.clone(),
        state: state.clone(),
        pending: Vec::new(),
        gaps,
        report: ArchiveReport {
            source,
            expire_seconds: server.expire_seconds,
            unarchived_at_start: unarchived,
            started: chrono::Utc::now().timestamp(),
            ..ArchiveReport::default()
        },
        at: (file, pos),
        server,
    };
    let mut durable_state = state;
    let mut durable_at = run.at.clone();
    let mut backoff = Duration::from_millis(500);
    'connect: loop {
        let from = CopyFrom {
            file: durable_at.0.clone(),
            pos: durable_at.1,
            follow: opts.follow.then_some(opts.replica_id),
            created: created_time(&chain, &durable_at.0),
        };
        let mut copy = RawCopy::start(&opts.target, &from, &opts.work_dir)?;
        run.at = durable_at.clone();
        run.state = durable_state.clone();
        let mut last_flush = Instant::now();
        loop {
            // whether the tool had ended before this round's reads: then a round that reads
            // to the end of its output has seen everything it wrote
            let exited = copy.exited()?;
            let (mut got, mut full) = (false, false);
            while let Some(c) = copy.poll(POLL_BYTES)? {
                got = true;
                run.take(c);
                if run.pending_bytes() >= POLL_BYTES * FLUSH_BYTES_FACTOR {
                    full = true;
                    break;
                }
            }
            let drained = exited.filter(|_| !full);
            let stop = interrupt.load(Ordering::Relaxed);
            // by time only when following; by size always, so memory stays bounded
            let due = (opts.follow && last_flush.elapsed() >= opts.flush_every) || full;
            if due || stop || drained.is_some() {
                run.flush(&mut durable_state)?;
                durable_at = run.at.clone();
                last_flush = Instant::now();
            }
            if stop {
                copy.stop();
                break 'connect;
            }
            if let Some(st) = drained {
                if !opts.follow {
                    if !st.success() {
                        return Err(copy.failure(st));
                    }
                    break 'connect;
                }
                // followed server went away: reconnect from what is durable, with backoff
                let e = copy.failure(st);
                eprintln!("snap: binlog copy stopped ({e}); reconnecting in {backoff:?}");
                run.report.reconnects += 1;
                let until = Instant::now() + backoff;
                while Instant::now() < until && !interrupt.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if interrupt.load(Ordering::Relaxed) {
                    break 'connect;
                }
                if let Ok(s) = ServerLogs::query(&opts.target) {
                    run.server = s;
                    if !run.server.has(&durable_at.0) {
                        // purged while we were away: resume where the server's logs begin,
                        // and record (and say now: a follower runs for days) what was lost
                        let all = run.repo.snapshots()?;
                        let now_chain = Chain::from_snapshots(&all, &run.source);
                        let (f, p, st, gaps) = resume_point(&now_chain, &run.server, &now())?;
                        for g in &gaps {
                            eprintln!("snap: WARNING: binary-log archive gap {g}");
                        }
                        run.gaps.extend(gaps);
                        durable_at = (f, p);
                        durable_state = st;
                    }
                }
                continue 'connect;
            }
            if got {
                backoff = Duration::from_millis(500);
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    run.report.end = Some(format!("{}:{}", run.at.0, run.at.1));
    Ok(run.report)
}

/// `--warn-purge`: how close the server came to purging a log before it was archived.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeWarning {
    /// The server purges a closed log this long after it was closed (0: never by age).
    pub expire_seconds: u64,
    /// The oldest closed file that was not (fully) archived when the run started ...
    pub oldest_unarchived: Option<String>,
    /// ... when it was closed (its ROTATE event, else the next file's first event) ...
    pub closed_at: Option<String>,
    /// ... and the earliest moment the server may purge it.
    pub purge_at: Option<String>,
    /// Seconds from the run's start until `purge_at` (negative: it was already due, and only
    /// a rotation had not yet come to purge it).
    pub seconds_left: Option<i64>,
}

/// The purge warning for a finished run that started at `started` (seconds since the epoch).
/// MariaDB purges a log once it has been closed `expire_seconds` (at the next rotation or
/// restart); the file still open is purged no earlier than that after it closes, so archiving
/// at least every `expire_seconds` loses nothing.
pub fn purge_warning(report: &ArchiveReport, started: i64) -> PurgeWarning {
    let closed = |file: &str| -> Option<u32> {
        let own = report
            .segments
            .iter()
            .filter(|s| s.file == file && s.ended)
            .filter_map(|s| s.last_time)
            .max();
        let next = report
            .segments
            .iter()
            .find(|s| s.start == 0 && events::file_number(&s.file) > events::file_number(file))
            .and_then(|s| s.first_time);
        own.filter(|t| *t > 0).or(next)
    };
    let oldest = report
        .unarchived_at_start
        .iter()
        .find_map(|f| closed(f).map(|t| (f.clone(), t)));
    let expire = report.expire_seconds;
    let at = |t: i64| timeline::time_str(u32::try_from(t).unwrap_or(u32::MAX));
    let purge = oldest.as_ref().and_then(|(_, c)| {
        (expire > 0)
            .then(|| i64::from(*c).saturating_add(i64::try_from(expire).unwrap_or(i64::MAX)))
    });
    PurgeWarning {
        expire_seconds: expire,
        oldest_unarchived: oldest.as_ref().map(|(f, _)| f.clone()),
        closed_at: oldest.as_ref().map(|(_, c)| timeline::time_str(*c)),
        purge_at: purge.map(at),
        seconds_left: purge.map(|p| p.saturating_sub(started)),
    }
}

/// Counts per gap kind, for messages.
pub fn gap_kinds(gaps: &[BinlogGap]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in gaps {
        *m.entry(g.kind.clone()).or_insert(0) += 1;
    }
    m
}
