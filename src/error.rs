//! The library's error type: every failure says what went wrong and where (which repository file,
//! which source path), so `main` can print it and pick an exit code without guessing.

use std::io;
use std::path::PathBuf;

use crate::envelope::EnvelopeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no snap repository at {0} (create one with `snap init`, or check -r/SNAP_REPOSITORY)")]
    NoRepository(String),
    #[error("a repository already exists at {0}")]
    RepositoryExists(String),
    #[error("wrong password: no key in {0}/keys opens with it")]
    WrongPassword(String),
    #[error("no password given: set SNAP_PASSWORD or SNAP_PASSWORD_FILE, or pass --password-file")]
    NoPassword,
    /// The repository was opened with an append-only key (`backend::append_only`) and the
    /// operation would delete or overwrite a file.
    #[error(
        "opened with an append-only key; refusing to {op} {path}: deleting and overwriting need \
         a full key (run this command with a full key's password; `snap key list` shows which \
         keys are append-only)"
    )]
    AppendOnly { op: &'static str, path: String },
    #[error("repository is locked: {0}")]
    Locked(String),
    #[error("lost the repository lock: {0}")]
    LockLost(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A storage backend (S3, SFTP) refused an operation or stayed unreachable after every retry.
    /// `detail` names the HTTP status or the server's reason; never a credential.
    #[error("{backend}: cannot {op} {path}: {detail}")]
    Storage {
        backend: String,
        op: &'static str,
        path: String,
        failure: StorageFailure,
        detail: String,
    },
    #[error("repository file {file}: {source}")]
    Envelope { file: String, source: EnvelopeError },
    #[error("repository file {file} is damaged: {what}")]
    Corrupt { file: String, what: String },
    #[error("index cache {path}: {what}")]
    Index { path: PathBuf, what: String },
    #[error("no snapshot matches {0:?} (list them with `snap snapshots`)")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0:?} is ambiguous; give more digits")]
    AmbiguousSnapshot(String),
    #[error("path {path:?} is not in snapshot {snapshot}")]
    PathNotFound { snapshot: String, path: String },
    #[error("{0}")]
    Usage(String),
    /// A retention policy or its parts (duration, group-by) are invalid or missing: a usage error.
    #[error(transparent)]
    Policy(#[from] crate::policy::retention::PolicyError),
    /// backup.yml does not validate (`snap config check`, `snap run`): file, line, column, key.
    #[cfg(feature = "rocksdb")]
    #[error("{0}")]
    PlanInvalid(crate::plan::PlanError),
    /// `snap run`: the job's previous run still holds its job lock, here or on another host.
    #[error("job {job:?} is already running ({holder}); this slot is skipped")]
    JobRunning { job: String, holder: String },
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
    #[error("interrupted")]
    Interrupted,
    /// Another thread of the backup failed first; its error is the one to report.
    #[error("the backup pipeline stopped after an error elsewhere")]
    PipelineStopped,
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// A MySQL/MariaDB connection setting is malformed (URL, defaults file, environment).
    #[error("MySQL connection settings: {0}")]
    MysqlConfig(String),
    /// The server could not be reached at all (refused, no route, no socket, timed out).
    #[error("cannot connect to MySQL server {target}: {source}")]
    MysqlUnreachable {
        target: String,
        source: mysql::Error,
    },
    /// The server answered and refused the credentials.
    #[error("MySQL server {target} denied access to user {user:?}: {message}")]
    MysqlAccessDenied {
        target: String,
        user: String,
        message: String,
    },
    /// The global backup lock could not be taken in time because other statements hold it back;
    /// the dump gave up and released everything it held rather than stall the application.
    #[error(
        "gave up taking the backup lock on {target} after {waited_ms} ms at {stage} \
         (a long-running statement holds it back; raise the lock timeout or retry later)"
    )]
    MysqlLockTimeout {
        target: String,
        stage: String,
        waited_ms: u64,
    },
    /// A statement failed on a connected server.
    #[error("MySQL {what}: {source}")]
    Mysql { what: String, source: mysql::Error },
    /// Restored tables do not match the row counts/checksums recorded at dump time.
    #[error("verification failed for {tables} table(s): {details}")]
    MysqlVerify { tables: usize, details: String },
    /// Another snap database backup of the same server holds its backup lock: this one is
    /// skipped, not queued.
    #[error("a database backup of {0} is already running; skipped this one")]
    BackupRunning(String),
    /// A MariaDB client tool snap runs (`mariadb-binlog`, `mariadb`) failed.
    #[error("{what}: the tool ended with {status}: {stderr}")]
    BinlogTool {
        what: String,
        status: String,
        stderr: String,
    },
    /// Binary-log bytes (from the server or the archive) are not what the format says.
    #[error("binary log: {0}")]
    BinlogFormat(String),
    /// The server writes no binary log, so there is nothing to archive or replay.
    #[error("the server {0} has binary logging off (start it with --log-bin)")]
    BinlogOff(String),
    /// A point-in-time target the archive cannot reach: past its end, in a gap, or before the
    /// oldest full backup.
    #[error("cannot restore to {target}: {why}; the newest recoverable moment is {recoverable}")]
    NotRecoverable {
        target: String,
        why: String,
        recoverable: String,
    },
    /// The archive has a hole (a log purged before it was archived, another server, a GTID
    /// sequence that skips): recorded and reported; what was archived is stored.
    #[error("the binary-log archive has {count} gap(s): {first}")]
    ArchiveGap { count: usize, first: String },
    /// `snap mysql consolidate` was given a scratch server that already holds one of the
    /// databases it would create (it may be the live server).
    #[error(
        "the scratch server {server} already holds {databases}: consolidate creates and drops \
         these databases there, so give a server without them (never the live one)"
    )]
    ScratchNotEmpty { server: String, databases: String },
    /// The new full `consolidate` made does not equal the replayed databases.
    #[error(
        "the consolidated full differs from the replay in database {database}: {differences} \
         difference(s), first: {first}"
    )]
    ConsolidateMismatch {
        database: String,
        differences: usize,
        first: String,
    },
    /// Forgetting by id would leave a kept snapshot without one it needs (an increment's full
    /// or predecessor, a full's binary-log archive).
    #[error(
        "snapshot {id} is needed by {by}, which is kept; forget that too (or consolidate it \
         into a new full first)"
    )]
    SnapshotNeeded { id: String, by: String },
    /// A dump stream is malformed or does not match its manifest.
    #[error("MySQL dump stream {path}: {what}")]
    DumpStream { path: String, what: String },
}

/// Why a storage operation failed, for the exit code and for what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// A file the repository needs is not there (HTTP 404, no such file).
    NotFound,
    /// The credentials were refused (HTTP 403, permission denied): fix them, do not retry.
    Denied,
    /// Still failing after every retry (timeouts, resets, 5xx, 429): the network or the server.
    Unavailable,
    /// Anything else the server refused (a missing bucket, a bad request).
    Refused,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A consequence of another failure (or of Ctrl-C), not a cause worth reporting over one.
    pub fn is_secondary(&self) -> bool {
        matches!(self, Error::Interrupted | Error::PipelineStopped)
    }

    /// A refusal of an append-only session (nothing was changed, so nothing to audit).
    pub fn is_append_only(&self) -> bool {
        matches!(self.root(), Error::AppendOnly { .. })
    }

    /// A file the backend was asked for does not exist (on disk or in the store).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            Error::Storage { failure, .. } => *failure == StorageFailure::NotFound,
            _ => false,
        }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Prefixes an error with where it happened (a source path, a snapshot path).
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, for choosing an exit code.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    pub fn mysql(what: impl Into<String>, source: mysql::Error) -> Error {
        Error::Mysql {
            what: what.into(),
            source,
        }
    }

    pub fn dump_stream(path: impl Into<String>, what: impl Into<String>) -> Error {
        Error::DumpStream {
            path: path.into(),
            what: what.into(),
        }
    }

    pub fn corrupt(file: impl Into<String>, what: impl Into<String>) -> Error {
        Error::Corrupt {
            file: file.into(),
            what: what.into(),
        }
    }
}
