//! Replaying binary-log files into a server: `mariadb-binlog FILES | mariadb`, as ONE decoder
//! process over every file of the range feeding ONE client session.
//!
//! One session is what keeps a temporary table created before a rotation usable after it, and
//! session variables (`@@session.gtid_domain_id`, `sql_mode`, time zone) the decoder sets once
//! in force for every later event; replaying file by file would lose them. The decoder gets the
//! range as byte positions the caller computed from the archive's own index (start = the
//! dump's recorded coordinates in the first file, stop = a transaction boundary in the last),
//! never as a time or GTID for it to interpret: its `--stop-datetime` stops at the first event
//! at or after a time, which is not a transaction boundary.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

use super::tools;
use crate::error::{Error, Result};
use crate::mysql::MysqlTarget;

/// What to replay: local copies of whole files, in order, and the positions to start in the
/// first and stop in the last.
#[derive(Debug, Clone)]
pub struct Range {
    pub files: Vec<PathBuf>,
    pub start: u64,
    /// `None`: to the end of the last file.
    pub stop: Option<u64>,
    /// Only the events of this database (the decoder's `--database`: statements by their
    /// default database, row events by their table's database); `None`: every event.
    pub database: Option<String>,
}

/// Bytes of SQL the decoder produced (a rough measure of the work done).
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    pub sql_bytes: u64,
}

/// Runs the decoder over `range` into one client session on `target`. `work` is a private
/// directory for the client's defaults file.
pub fn replay(target: &MysqlTarget, range: &Range, work: &std::path::Path) -> Result<ReplayStats> {
    let cnf = tools::write_defaults(work, target)?;
    let raised = raise_packet_limit(target)?;
    let out = run(&cnf, range, work);
    if let Some(old) = raised {
        // put the server's setting back whatever happened
        let back = target.connect().and_then(|mut c| {
            crate::mysql::conn::exec(&mut c, &format!("SET GLOBAL max_allowed_packet = {old}"))
        });
        if let (Ok(_), Err(e)) = (&out, back) {
            return Err(e);
        }
    }
    out
}

/// The decoder writes all row events of one statement as one `BINLOG '…'` statement, which
/// for a large UPDATE is far bigger than the statement the application sent (35 MB measured
/// for a 100 000-row UPDATE) and than the server's default `max_allowed_packet` (16 MiB): the
/// server then drops the connection. The limit is raised to its maximum (1 GiB, also the
/// largest event) for the replay's connection and the old value returned for restoring.
fn raise_packet_limit(target: &MysqlTarget) -> Result<Option<u64>> {
    use mysql::prelude::Queryable;
    let mut c = target.connect()?;
    let cur: Option<u64> = c
        .query_first("SELECT @@global.max_allowed_packet")
        .map_err(|e| Error::mysql("reading max_allowed_packet", e))?;
    match cur {
        Some(v) if v < MAX_PACKET => {
            crate::mysql::conn::exec(
                &mut c,
                &format!("SET GLOBAL max_allowed_packet = {MAX_PACKET}"),
            )?;
            Ok(Some(v))
        }
        _ => Ok(None),
    }
}

/// The largest `max_allowed_packet` MariaDB and MySQL accept.
const MAX_PACKET: u64 = 1 << 30;

fn run(cnf: &std::path::Path, range: &Range, work: &std::path::Path) -> Result<ReplayStats> {
    let mut dec = tools::command(tools::binlog_tool(), None);
    dec.arg(format!("--start-position={}", range.start.max(4)));
    if let Some(stop) = range.stop {
        dec.arg(format!("--stop-position={stop}"));
    }
    if let Some(db) = &range.database {
        dec.arg(format!("--database={db}"));
    }
    // positions, not GTIDs, name the range: no GTID strictness checks by the decoder. A
    // server that was itself restored to a point logged the replayed transactions again under
    // their original GTIDs, so its binlog (and the archive, byte for byte) is out of GTID order
    // there, which the decoder's default strict mode refuses to decode.
    dec.arg("--skip-gtid-strict-mode");
    // what the tools say goes to files, not pipes: a pipe nobody drains while we feed the
    // client would stop both once it is full
    let err_file = |name: &str| -> Result<(std::fs::File, PathBuf)> {
        let p = work.join(name);
        let f = std::fs::File::create(&p).map_err(|e| Error::io("creating", &p, e))?;
        Ok((f, p))
    };
    let (dec_err, dec_err_path) = err_file("decoder.err")?;
    let (cl_err, cl_err_path) = err_file("client.err")?;
    dec.args(&range.files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(dec_err));
    let mut decoder = dec.spawn().map_err(|e| Error::BinlogTool {
        what: format!("starting {}", tools::binlog_tool()),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    let Some(mut sql) = decoder.stdout.take() else {
        return Err(Error::BinlogTool {
            what: "replaying binary logs".into(),
            status: "no output pipe".into(),
            stderr: String::new(),
        });
    };
    let mut cl = tools::command(tools::client_tool(), Some(cnf));
    // --binary-mode: row images and statements may hold any bytes; stop at the first error
    cl.arg("--binary-mode")
        .arg(format!("--max-allowed-packet={MAX_PACKET}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(cl_err));
    let mut client = cl.spawn().map_err(|e| Error::BinlogTool {
        what: format!("starting {}", tools::client_tool()),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    let mut stdin = client.stdin.take();
    // copy here (not by handing the pipe over) to count the bytes
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut write_err = None;
    loop {
        let n = match sql.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                write_err = Some(e);
                break;
            }
        };
        total += n as u64;
        if let Some(w) = stdin.as_mut()
            && let Err(e) = std::io::Write::write_all(w, &buf[..n])
        {
            write_err = Some(e);
            break;
        }
    }
    drop(stdin);
    drop(sql);
    let dec_status = decoder
        .wait()
        .map_err(|e| Error::io("waiting for", tools::binlog_tool(), e))?;
    let cl_status = client
        .wait()
        .map_err(|e| Error::io("waiting for", tools::client_tool(), e))?;
    let said = |p: &PathBuf| std::fs::read(p).unwrap_or_default();
    // the client's error is the cause when both fail (the decoder then only saw a closed pipe)
    if !cl_status.success() {
        return Err(tools::failed(
            "applying binary-log events",
            cl_status,
            &said(&cl_err_path),
        ));
    }
    if !dec_status.success() {
        return Err(tools::failed(
            "decoding binary logs",
            dec_status,
            &said(&dec_err_path),
        ));
    }
    if let Some(e) = write_err {
        return Err(Error::io("feeding the client", tools::client_tool(), e));
    }
    Ok(ReplayStats { sql_bytes: total })
}
