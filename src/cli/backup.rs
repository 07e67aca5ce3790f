//! `snap backup`: back up paths into a new snapshot.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use snap::archiver::{BackupOptions, BackupProgress};
use snap::repo::lock::Operation;
use snap::snapshot::BackupKind;

use super::progress::Ticker;
use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up
    #[arg(required_unless_present = "mysql")]
    paths: Vec<PathBuf>,
    /// Take only files matching this glob, or under a directory matching it (repeatable);
    /// directories in which nothing is taken are left out. Excludes win.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Skip paths matching this glob (repeatable)
    #[arg(long)]
    exclude: Vec<String>,
    /// Read exclude globs from a file, one per line (# starts a comment)
    #[arg(long)]
    exclude_file: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long)]
    tag: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    host: Option<String>,
    /// Read every file, ignoring the parent snapshot
    #[arg(long, conflicts_with_all = ["differential", "incremental"])]
    full: bool,
    /// Compare with the latest snapshot (the default for files). With --mysql, the database
    /// part becomes the binary logs since the previous database backup instead of a dump
    #[arg(long, conflicts_with = "differential")]
    incremental: bool,
    /// Compare with the latest full snapshot instead of the latest one. With --mysql, the
    /// database part becomes the binary logs since the last full dump
    #[arg(long)]
    differential: bool,
    /// Record this time (RFC 3339 with offset, e.g. 2024-03-31T01:30:00+01:00) instead of now:
    /// for importing history from another tool, and for testing retention policies
    #[arg(long, value_parser = parse_time)]
    time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// After the snapshot is written, copy it into this further repository too (repeatable; a
    /// directory, s3://BUCKET/PREFIX or sftp://...). A failed copy leaves the snapshot here and
    /// exits 16, naming the copy to retry with `snap copy`
    #[arg(long, value_name = "URL")]
    copy_to: Vec<String>,
    /// Password file for the --copy-to repositories (default: the same password as -r's)
    #[arg(long, value_name = "FILE", requires = "copy_to")]
    copy_to_password_file: Option<PathBuf>,
    #[command(flatten)]
    db: super::mysql_args::Backup,
}

/// Exit code of a backup whose snapshot was written but that is missing from a `--copy-to`
/// repository (main.rs lists every code).
pub const COPY_FAILED: u8 = 16;

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("{e}: give an RFC 3339 time with its offset, e.g. 2024-03-31T01:30:00+01:00")
    })
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let mut excludes = a.exclude;
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read exclude file {}", f.display()))?;
        excludes.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let kind = if a.full {
        BackupKind::Full
    } else if a.differential {
        BackupKind::Differential
    } else {
        BackupKind::Incremental
    };
    // the database part is a range of binary logs only when asked for explicitly; a plain
    // `backup --mysql` dumps, as before
    let db_kind = if a.incremental || a.differential {
        kind
    } else {
        BackupKind::Full
    };
    let opts = BackupOptions {
        paths: a.paths,
        includes: a.include,
        excludes,
        tags: a.tag,
        host: a.host,
        kind,
        mysql: a.db.source()?,
        mysql_prebuilt: None,
        time: a.time,
    };
    // Parsed (and the password read) before anything is backed up: a typo fails at once.
    let copy_to = a
        .copy_to
        .iter()
        .map(|s| ctx.parse_location(s))
        .collect::<Result<Vec<_>>>()?;
    let copy_password = match (&a.copy_to_password_file, copy_to.is_empty()) {
        (_, true) => None,
        (Some(f), false) => Some(super::read_password_file(f)?),
        (None, false) => Some(ctx.password()?),
    };
    let (mut repo, _lock) = ctx.open_locked(Operation::Backup)?;
    let progress = Arc::new(BackupProgress::default());
    // Sizes counted ahead, for percent done and time left; only for a person watching.
    let scan_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if ctx.show_progress() {
        let (p, stop) = (progress.clone(), scan_stop.clone());
        let paths = opts.paths.clone();
        let select = snap::archiver::Selection::new(&opts.includes, &opts.excludes)?;
        std::thread::spawn(move || snap::archiver::scan(&paths, &select, &p, &stop));
    }
    let p = progress.clone();
    let ticker = Ticker::start(
        ctx.show_progress(),
        "{spinner} {elapsed_precise} [{bar:25}] {percent:>3}% {bytes}/{total_bytes} ETA {eta} {msg}",
        move |bar| {
            let seen = p.bytes_seen.load(Ordering::Relaxed);
            let scanned = p.scanned.load(Ordering::Relaxed);
            bar.set_length(p.total_bytes.load(Ordering::Relaxed).max(seen));
            bar.set_position(seen);
            bar.set_message(format!(
                "{} of {}{} files, {} read, {} errors  {}",
                p.files.load(Ordering::Relaxed),
                if scanned { "" } else { "≥" },
                p.total_files.load(Ordering::Relaxed),
                bytes(p.bytes_read.load(Ordering::Relaxed)),
                p.errors.load(Ordering::Relaxed),
                p.current.lock().map(|c| c.clone()).unwrap_or_default()
            ));
        },
    );
    let out = snap::database::binlog::incremental::backup(
        &mut repo,
        &opts,
        db_kind,
        &progress,
        &ctx.interrupt,
    );
    drop(ticker);
    scan_stop.store(true, Ordering::Relaxed);
    let (out, notes) = out?;
    ctx.notes(&notes.notes);
    let (s, sum) = (&out.snapshot, &out.snapshot.summary);
    // Unreadable paths go to stderr in every output mode: nobody should miss them.
    for e in &s.errors {
        eprintln!("snap: could not read {}: {}", e.path, e.message);
    }
    // The primary snapshot is durable; each further copy on its own (one failing does not stop
    // the next). The backup's own shared lock covers reading the snapshot back.
    let primary = ctx.location()?;
    let mut copies = Vec::new();
    let mut failed = 0;
    for to in &copy_to {
        let Some(password) = &copy_password else {
            break;
        };
        let r = super::copy::copy_into(ctx, &mut repo, to, password, (out.id, s.clone()));
        match r {
            Ok(c) => {
                let copy = c.snapshots.first().map(|c| c.copy.to_hex());
                copies.push(serde_json::json!({"location": to.to_string(), "ok": true,
                    "copy": copy, "skipped": c.skipped == 1, "stats": c.stats}));
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "snap: error: copy of snapshot {} to {to} failed: {e:#}\nsnap: snapshot {} is \
                     saved in {} but MISSING from {to}; once the cause above is fixed, retry with: \
                     snap -r {to} copy --from-repo {} {}",
                    out.id.short(),
                    out.id.short(),
                    primary,
                    primary,
                    out.id.to_hex(),
                );
                copies.push(serde_json::json!({"location": to.to_string(), "ok": false,
                    "error": format!("{e:#}")}));
            }
        }
        if ctx.interrupt.load(Ordering::SeqCst) {
            break;
        }
    }
    // Requests to a remote repository (and how many were retries): what a transient fault cost,
    // and what the run will cost at a provider that bills per request.
    let requests = repo.backend().request_count();
    if ctx.json {
        let mut j = serde_json::json!({"id": out.id.to_hex(), "snapshot": s});
        if !copy_to.is_empty() {
            j["copies"] = serde_json::json!(copies);
        }
        if let Some((n, retried)) = requests {
            j["storage"] = serde_json::json!({"requests": n, "retries": retried});
        }
        println!("{j}");
    } else if !ctx.quiet {
        println!(
            "files: {} new, {} changed, {} unmodified; {} dirs\n{} read of {}; added {} in {} blobs ({} before compression), {} packs\nsnapshot {} ({}{}) saved in {:.1}s",
            sum.files_new,
            sum.files_changed,
            sum.files_unmodified,
            sum.dirs,
            bytes(sum.bytes_read),
            bytes(sum.bytes_total),
            bytes(sum.bytes_added),
            sum.blobs_added,
            bytes(sum.bytes_added_raw),
            sum.packs_written,
            out.id.short(),
            s.kind.as_str(),
            if s.incomplete { ", INCOMPLETE" } else { "" },
            sum.duration_ms as f64 / 1000.0
        );
        if let Some((n, retried)) = requests {
            println!("storage: {n} requests to {primary}, {retried} of them retries");
        }
        if let Some(m) = s.mysql.as_ref().filter(|m| !m.kind.is_full()) {
            println!(
                "database {} ({}): binary logs {} .. {}:{} ({}), on full {}",
                m.source,
                m.kind.as_str(),
                m.binlog_start.as_deref().unwrap_or("?"),
                m.binlog_file.as_deref().unwrap_or("?"),
                m.binlog_position.unwrap_or(0),
                bytes(m.bytes),
                m.base.map(|b| b.short()).unwrap_or_default()
            );
        } else if let Some(m) = &s.mysql {
            println!(
                "database {} ({}): {} tables, {} rows, {} dumped in {:.1}s; commits blocked {:.1} ms",
                m.source,
                m.server,
                m.tables,
                m.rows,
                bytes(m.bytes),
                m.duration_ms as f64 / 1000.0,
                m.lock_ms
            );
        }
    }
    if !ctx.json && !ctx.quiet {
        for c in copies.iter().filter(|c| c["ok"] == true) {
            println!(
                "copied to {}{}",
                c["location"].as_str().unwrap_or_default(),
                if c["skipped"] == true {
                    " (already there)"
                } else {
                    ""
                }
            );
        }
    }
    if s.incomplete {
        eprintln!(
            "snap: {} path(s) could not be read; the snapshot is marked incomplete",
            s.errors.len()
        );
    }
    // A missing copy first: the snapshot (complete or not) is where it is, and what the user must
    // act on is the copy; an incomplete snapshot says so on stderr all the same.
    if failed > 0 {
        eprintln!(
            "snap: {failed} of {} --copy-to copies failed",
            copy_to.len()
        );
        return Ok(COPY_FAILED);
    }
    if s.incomplete {
        return Ok(3);
    }
    Ok(0)
}
