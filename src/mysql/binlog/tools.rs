//! Running the MariaDB client tools (`mariadb-binlog`, `mariadb`) as child processes without
//! handing them a password in argv or the environment.
//!
//! The login goes into a `[client]` defaults file inside a directory only the owner can enter,
//! named with `--defaults-file=` (the tools then read no other option file, so a stray
//! `/etc/mysql/my.cnf` cannot redirect them). The child's environment is snap's minus every
//! secret ([`crate::secrets::scrub_command`]), and on Linux the child is killed when snap dies
//! (`PR_SET_PDEATHSIG`), so a SIGKILLed `snap mysql archive --follow` leaves no orphan
//! replicating forever.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::mysql::MysqlTarget;

/// The decoder/copier: MariaDB's name first, MySQL's as the fallback.
pub fn binlog_tool() -> &'static str {
    tool(&["mariadb-binlog", "mysqlbinlog"])
}

/// The command-line client.
pub fn client_tool() -> &'static str {
    tool(&["mariadb", "mysql"])
}

fn tool(names: &[&'static str]) -> &'static str {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for n in names {
        if std::env::split_paths(&path).any(|d| d.join(n).is_file()) {
            return n;
        }
    }
    names[0]
}

/// A my.cnf value in double quotes, escaped as the client's option parser reads it back.
fn quoted(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Writes `dir/client.cnf` (mode 0600) with the target's login and returns its path. `dir` must
/// be private to the owner (a `tempfile::TempDir` is).
pub fn write_defaults(dir: &Path, t: &MysqlTarget) -> Result<PathBuf> {
    let path = dir.join("client.cnf");
    let mut s = String::from("[client]\n");
    if let Some(u) = &t.user {
        s.push_str(&format!("user={}\n", quoted(u)));
    }
    if let Some(p) = &t.password {
        s.push_str(&format!("password={}\n", quoted(p)));
    }
    match &t.socket {
        Some(sock) => {
            s.push_str("protocol=socket\n");
            s.push_str(&format!("socket={}\n", quoted(&sock.to_string_lossy())));
        }
        None => {
            s.push_str("protocol=tcp\n");
            s.push_str(&format!("host={}\n", quoted(&t.host)));
            s.push_str(&format!("port={}\n", t.port));
        }
    }
    // (no connect-timeout: mariadb-binlog rejects the option the client accepts)
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("writing client defaults file", &path, e))?;
    f.write_all(s.as_bytes())
        .map_err(|e| Error::io("writing client defaults file", &path, e))?;
    Ok(path)
}

/// A command for `program` with a scrubbed environment that dies with this process; the
/// defaults file (when given) is its first argument, as the tools require.
pub fn command(program: &str, defaults: Option<&Path>) -> Command {
    let mut c = Command::new(program);
    crate::secrets::scrub_command(&mut c);
    match defaults {
        Some(d) => c.arg(format!("--defaults-file={}", d.display())),
        None => c.arg("--no-defaults"),
    };
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child when its
    // parent thread exits.
    unsafe {
        c.pre_exec(|| {
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

/// A child tool that failed: its name, how it ended and the end of what it said.
pub fn failed(what: &str, status: std::process::ExitStatus, stderr: &[u8]) -> Error {
    let text = String::from_utf8_lossy(stderr);
    let t = text.trim();
    // the client echoes a failing statement (megabytes of base64 for a row event) before its
    // `ERROR ...` line: the error lines are what to show
    let errors: Vec<&str> = t.lines().filter(|l| l.starts_with("ERROR")).collect();
    let tail = if errors.is_empty() {
        let mut s = t.len().saturating_sub(600);
        while !t.is_char_boundary(s) {
            s += 1;
        }
        t[s..].to_string()
    } else {
        errors.join("; ")
    };
    Error::BinlogTool {
        what: what.to_string(),
        status: status.to_string(),
        stderr: tail,
    }
}
