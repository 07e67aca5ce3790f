//! The `snap` binary: parses the command line, calls one library function per command, prints
//! the result, and turns errors into messages and exit codes (restic's convention).

mod cli;

use std::process::ExitCode;

use snap::error::{Error, StorageFailure};

/// Exit codes: 0 ok, 1 fatal (and `check` found damage), 2 usage (from clap, a malformed
/// location or setting, or a missing or invalid retention policy), 3 snapshot written but incomplete, 10 no repository, 11 lock not
/// taken, 12 wrong password, 13 lock lost (its refresh failed for too long; the operation
/// stopped), 20 database unreachable, 21 database access denied, 22 database backup lock not
/// granted in time, 14 the storage refused (access denied, missing bucket or file), 15 the
/// storage stayed unreachable after every retry, 16 snapshot written but missing from a `backup
/// --copy-to` repository (`cli::backup::COPY_FAILED`; retry with `snap copy`), 17 refused: the
/// repository was opened with an append-only key and the command would delete or overwrite, 23 skipped: a database backup of the same server is already running,
/// 24 database verification failed, 25 point-in-time target not recoverable (past the archive's
/// end, in a gap, or before every full), 26 the binary-log archive has a gap (what could be
/// archived was; also `check` when it finds one and no damage), 27 a MariaDB tool
/// (`mariadb-binlog`, `mariadb`) failed or binlog is off, 30 `mysql consolidate`'s scratch
/// server holds one of the databases, 31 the consolidated full differs from the replay (it was
/// removed), 32 `forget` by id would leave a kept snapshot without one it needs, 33 backup.yml
/// invalid (file:line:column: key: what is allowed), 34 `snap run`: a job was skipped (its
/// previous run still going) and none failed, 35 `snap run`: a job failed, 130 interrupted.
fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>().map(Error::root) {
        Some(Error::NoRepository(_)) => 10,
        Some(Error::Locked(_)) => 11,
        Some(Error::LockLost(_)) => 13,
        Some(Error::WrongPassword(_)) => 12,
        Some(Error::MysqlUnreachable { .. }) => 20,
        Some(Error::MysqlAccessDenied { .. }) => 21,
        Some(Error::MysqlLockTimeout { .. }) => 22,
        Some(Error::BackupRunning(_)) => 23,
        Some(Error::MysqlVerify { .. }) => 24,
        Some(Error::Storage { failure, .. }) => match failure {
            StorageFailure::Unavailable => 15,
            _ => 14,
        },
        Some(Error::AppendOnly { .. }) => 17,
        Some(Error::NotRecoverable { .. }) => 25,
        Some(Error::ArchiveGap { .. }) => 26,
        Some(Error::BinlogTool { .. } | Error::BinlogOff(_)) => 27,
        Some(Error::ScratchNotEmpty { .. }) => 30,
        Some(Error::ConsolidateMismatch { .. }) => 31,
        Some(Error::SnapshotNeeded { .. }) => 32,
        Some(Error::PlanInvalid(_)) => 33,
        Some(Error::JobRunning { .. }) => 34,
        Some(Error::Interrupted) => 130,
        Some(Error::Policy(_)) => 2,
        Some(Error::Usage(_)) => 2,
        _ => 1,
    }
}

fn main() -> ExitCode {
    // Everything snap creates is private to its owner (see `snap::private`); restored files get
    // their recorded modes explicitly.
    snap::private::set_umask();
    // Chunk, compression and pack buffers are megabytes each and pass between threads; glibc's
    // dynamic mmap threshold would keep every freed one in per-thread arenas. A fixed threshold
    // returns them to the system, keeping peak memory at what the bounded queues hold.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
        // ...and freed heap memory is kept for reuse instead of being trimmed and faulted in again.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    }
    let r = cli::run();
    // Every repository is closed by now: end the I/O runtime, closing remote connections.
    snap::backend::remote::shutdown(std::time::Duration::from_secs(5));
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The library's errors already carry their causes in their message; anything else
            // (context added in the binary) is printed with its chain.
            if e.downcast_ref::<Error>().is_some() {
                eprintln!("snap: error: {e}");
            } else {
                eprintln!("snap: error: {e:#}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
