//! The global lock of a consistent dump, held as briefly as the server allows, and given up
//! rather than waited for.
//!
//! MariaDB (checked on 10.11): the control connection walks `BACKUP STAGE START`, `FLUSH`,
//! `BLOCK_DDL`. From `FLUSH` on, new writes to MyISAM and non-crash-safe Aria tables wait, and
//! `BLOCK_DDL` waits for the statements already writing them; DDL is blocked while InnoDB
//! commits keep flowing. Crash-safe Aria tables (`TRANSACTIONAL=1`, Aria's default) are *not*
//! blocked by these stages — they are treated as transactional and only `BLOCK_COMMIT` holds them,
//! and even then a blocked statement has already changed the table and waits only to commit —
//! so every non-InnoDB table is frozen explicitly with `LOCK TABLES … READ` on a connection of its
//! own ([`GlobalLock::freeze_tables`]) and dumped while commits still flow. Then `BLOCK_COMMIT` stops commits
//! just long enough for every worker to `START TRANSACTION WITH CONSISTENT SNAPSHOT` and for the
//! binlog position and GTID to be read; `BACKUP STAGE END` releases everything. Stages only go
//! forward, so DDL cannot stay blocked after commits resume: a table altered later in the dump
//! fails its read with "table definition has changed" and the dump fails loudly, never silently.
//!
//! MySQL 8: `LOCK INSTANCE FOR BACKUP` (blocks DDL, held to the end), then `FLUSH TABLES WITH READ
//! LOCK` around the snapshot and the non-transactional tables, `UNLOCK TABLES`. (Written from the
//! MySQL manual; the test suite runs MariaDB only.)
//!
//! A statement that is waiting for a lock blocks everyone queued behind it, so each wait is
//! bounded: a watchdog connection runs `KILL QUERY` on the control connection when the deadline
//! passes (with `lock_wait_timeout` as a second line), and the dump reports
//! [`Error::MysqlLockTimeout`] after releasing what it holds.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ::mysql::Conn;
use ::mysql::prelude::Queryable;

use crate::error::{Error, Result};
use crate::mysql::conn::{Flavor, MysqlTarget, exec, quote_ident};

/// Kills a lock-taking statement that runs past its deadline.
pub(crate) struct Watchdog {
    tx: mpsc::Sender<Option<(Instant, u32)>>,
    ack: mpsc::Receiver<bool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Opens its own connection now, so arming it later costs nothing.
    pub(crate) fn start(target: &MysqlTarget) -> Result<Watchdog> {
        let mut conn = target.connect()?;
        let (tx, rx) = mpsc::channel::<Option<(Instant, u32)>>();
        let (ack_tx, ack) = mpsc::channel::<bool>();
        let thread = thread::spawn(move || {
            // each message arms (deadline, connection id) or disarms (None); a disarm is
            // answered with whether the kill fired, so the caller knows no kill is on its way
            let mut armed: Option<(Instant, u32)> = None;
            let mut fired = false;
            loop {
                let msg = match armed {
                    Some((d, _)) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match msg {
                    Ok(Some(a)) => {
                        armed = Some(a);
                        fired = false;
                    }
                    Ok(None) => {
                        armed = None;
                        if ack_tx.send(fired).is_err() {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some((_, victim)) = armed.take() {
                            fired = true;
                            // the statement may have just finished; a failed kill changes nothing
                            let _ = conn.query_drop(format!("KILL QUERY {victim}"));
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Ok(Watchdog {
            tx,
            ack,
            thread: Some(thread),
        })
    }

    /// Runs `sql` on `conn`, killing it if it is still running at `deadline`; also says
    /// whether the kill fired.
    fn guarded(&self, conn: &mut Conn, sql: &str, deadline: Instant) -> (Result<()>, bool) {
        let armed = self.tx.send(Some((deadline, conn.connection_id()))).is_ok();
        let r = exec(conn, sql);
        let fired = armed && self.tx.send(None).is_ok() && self.ack.recv().unwrap_or(false);
        (r, fired)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        // dropping the sender ends the thread's loop
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the lock currently stands; `release` knows what to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    /// MariaDB backup stages up to BLOCK_DDL / MySQL instance lock.
    Ddl,
    /// Commits blocked too (BLOCK_COMMIT / FTWRL).
    Commit,
}

/// The control connection's lock state, with timing.
pub(crate) struct GlobalLock {
    pub(crate) flavor: Flavor,
    target: String,
    timeout: Duration,
    held: Held,
    ddl_since: Option<Instant>,
    commit_since: Option<Instant>,
    pub(crate) ddl_ms: f64,
    pub(crate) commit_ms: f64,
}

fn is_lock_abort(e: &Error) -> bool {
    match e {
        // 1205 lock wait timeout, 1317 query interrupted (our KILL QUERY), 3024 MySQL max time
        Error::Mysql {
            source: ::mysql::Error::MySqlError(m),
            ..
        } => matches!(m.code, 1205 | 1317 | 3024 | 1969),
        _ => false,
    }
}

impl GlobalLock {
    pub(crate) fn new(flavor: Flavor, target: &MysqlTarget, timeout: Duration) -> GlobalLock {
        GlobalLock {
            flavor,
            target: target.to_string(),
            timeout,
            held: Held::Nothing,
            ddl_since: None,
            commit_since: None,
            ddl_ms: 0.0,
            commit_ms: 0.0,
        }
    }

    /// Sets the server-side lock wait bound to the timeout (rounded up to whole seconds, the
    /// variable's unit), the backstop should the watchdog's kill not arrive.
    pub(crate) fn prepare(&self, conn: &mut Conn) -> Result<()> {
        let secs = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        exec(
            conn,
            &format!("SET SESSION lock_wait_timeout = {}", secs.max(1)),
        )
    }

    fn run_stages(
        &mut self,
        conn: &mut Conn,
        dog: &Watchdog,
        stages: &[&str],
        label: &str,
    ) -> Result<()> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        for sql in stages {
            let (r, fired) = dog.guarded(conn, sql, deadline);
            let timed_out = fired || r.as_ref().err().is_some_and(is_lock_abort);
            if timed_out {
                return Err(Error::MysqlLockTimeout {
                    target: self.target.clone(),
                    stage: format!("{label} ({})", crate::mysql::conn::short(sql)),
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            r?;
        }
        Ok(())
    }

    /// Blocks DDL and writes to non-transactional tables (MariaDB) or DDL (MySQL).
    pub(crate) fn block_ddl(&mut self, conn: &mut Conn, dog: &Watchdog) -> Result<()> {
        let stages: &[&str] = match self.flavor {
            Flavor::Mariadb => &[
                "BACKUP STAGE START",
                "BACKUP STAGE FLUSH",
                "BACKUP STAGE BLOCK_DDL",
            ],
            Flavor::Mysql => &["LOCK INSTANCE FOR BACKUP"],
        };
        self.ddl_since = Some(Instant::now());
        self.held = Held::Ddl;
        self.run_stages(conn, dog, stages, "blocking DDL")
    }

    /// Freezes non-transactional tables for the rest of the dump with `LOCK TABLES … READ` on
    /// their own connection: waits for statements writing them, blocks new ones. Needed on
    /// MariaDB because crash-safe Aria tables (`TRANSACTIONAL=1`, the default) keep taking writes
    /// under `BACKUP STAGE BLOCK_DDL` (only MyISAM-like tables are blocked there), and on MySQL so
    /// they need not be read under FTWRL. `LOCK TABLES` ends any transaction, so this
    /// connection is not a snapshot worker.
    pub(crate) fn freeze_tables(
        &mut self,
        conn: &mut Conn,
        dog: &Watchdog,
        tables: &[(&str, &str)],
    ) -> Result<()> {
        if tables.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = tables
            .iter()
            .map(|(db, t)| format!("{}.{} READ", quote_ident(db), quote_ident(t)))
            .collect();
        let sql = format!("LOCK TABLES {}", list.join(", "));
        self.run_stages(conn, dog, &[&sql], "freezing non-transactional tables")
    }

    /// Blocks commits (MariaDB) or all writes (MySQL).
    pub(crate) fn block_commit(&mut self, conn: &mut Conn, dog: &Watchdog) -> Result<()> {
        let stages: &[&str] = match self.flavor {
            Flavor::Mariadb => &["BACKUP STAGE BLOCK_COMMIT"],
            Flavor::Mysql => &["FLUSH TABLES WITH READ LOCK"],
        };
        self.commit_since = Some(Instant::now());
        self.held = Held::Commit;
        self.run_stages(conn, dog, stages, "blocking commits")
    }

    /// Lets commits flow again. On MariaDB this ends the backup stages altogether (they cannot
    /// step back to BLOCK_DDL); on MySQL the instance lock stays until [`GlobalLock::release`].
    pub(crate) fn unblock_commit(&mut self, conn: &mut Conn) -> Result<()> {
        match self.flavor {
            Flavor::Mariadb => self.release(conn),
            Flavor::Mysql => {
                exec(conn, "UNLOCK TABLES")?;
                self.stop_commit_clock();
                self.held = Held::Ddl;
                Ok(())
            }
        }
    }

    fn stop_commit_clock(&mut self) {
        if let Some(t) = self.commit_since.take() {
            self.commit_ms = t.elapsed().as_secs_f64() * 1000.0;
        }
    }

    /// Releases whatever is held (idempotent).
    pub(crate) fn release(&mut self, conn: &mut Conn) -> Result<()> {
        let r = match (self.flavor, self.held) {
            (_, Held::Nothing) => Ok(()),
            (Flavor::Mariadb, _) => exec(conn, "BACKUP STAGE END"),
            (Flavor::Mysql, Held::Commit) => {
                exec(conn, "UNLOCK TABLES").and_then(|_| exec(conn, "UNLOCK INSTANCE"))
            }
            (Flavor::Mysql, Held::Ddl) => exec(conn, "UNLOCK INSTANCE"),
        };
        self.stop_commit_clock();
        if let Some(t) = self.ddl_since.take() {
            self.ddl_ms = t.elapsed().as_secs_f64() * 1000.0;
        }
        self.held = Held::Nothing;
        r
    }
}
