//! Where the database server is and how to log in: a [`MysqlTarget`] built from a URL
//! (`mysql://user:pass@host:port[/db][?socket=/path]`), from `SNAP_MYSQL_URL`, or from a my.cnf-style
//! defaults file, and the one place that opens connections. (The CLI may then replace the
//! password with one from `--mysql-password-file` or `SNAP_MYSQL_PASSWORD`.) A target shows
//! itself, in messages and in snapshots, without its password, and a URL quoted in an error goes
//! through [`crate::secrets::redact_url`].
//!
//! Connection failures are sorted here into the two cases an operator acts on differently: the
//! server cannot be reached ([`Error::MysqlUnreachable`]) or it answered and refused the credentials
//! ([`Error::MysqlAccessDenied`]). The CLI maps them to distinct exit codes, so this sorting happens
//! once, at connect time, where the difference is still visible.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, OptsBuilder};

use crate::error::{Error, Result};

/// The environment variable holding a connection URL.
pub const URL_ENV: &str = "SNAP_MYSQL_URL";

const DEFAULT_PORT: u16 = 3306;

/// How to reach one server. The password never appears in `Display` or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlTarget {
    pub host: String,
    pub port: u16,
    /// A unix socket; when set it is used instead of TCP.
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Default database named in the URL (informational; dumps select databases by filter).
    pub database: Option<String>,
    /// How long to wait for the TCP connection and the handshake.
    pub connect_timeout: Duration,
}

impl Default for MysqlTarget {
    fn default() -> Self {
        MysqlTarget {
            host: "localhost".into(),
            port: DEFAULT_PORT,
            socket: None,
            user: None,
            password: None,
            database: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Display for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user.as_deref().unwrap_or("");
        match &self.socket {
            Some(s) => write!(f, "mysql://{user}@localhost?socket={}", s.display()),
            None => write!(f, "mysql://{user}@{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MysqlTarget({self})")
    }
}

impl MysqlTarget {
    /// Parses `mysql://[user[:password]@]host[:port][/database][?socket=PATH]`; user, password,
    /// database and socket are percent-decoded (so a password may hold `@`, `:` or `/`).
    pub fn from_url(url: &str) -> Result<MysqlTarget> {
        let bad = |why: &str| {
            Error::MysqlConfig(format!(
                "bad URL {}: {why}",
                crate::secrets::redact_url(url)
            ))
        };
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(|| bad("must start with mysql://"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let mut t = MysqlTarget::default();
        let hostport = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                t.user = Some(percent_decode(u).ok_or_else(|| bad("bad %-escape in user"))?);
                t.password = match p {
                    Some(p) => {
                        Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in password"))?)
                    }
                    None => None,
                };
                hp
            }
            None => authority,
        };
        // [v6]:port, host:port, host
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h.split_once(']').ok_or_else(|| bad("unclosed [ in host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if !host.is_empty() {
            t.host = host.to_string();
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            t.port = p.parse().map_err(|_| bad("port is not a number 1-65535"))?;
        }
        if let Some(db) = path.filter(|p| !p.is_empty()) {
            t.database = Some(percent_decode(db).ok_or_else(|| bad("bad %-escape in database"))?);
        }
        for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| bad("bad %-escape in parameter"))?;
            match k {
                "socket" => t.socket = Some(PathBuf::from(v)),
                "connect_timeout" | "connect_timeout_s" => {
                    let secs: u64 = v
                        .parse()
                        .map_err(|_| bad("connect_timeout is not a number"))?;
                    t.connect_timeout = Duration::from_secs(secs);
                }
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        Ok(t)
    }

    /// The target named by `SNAP_MYSQL_URL`, if set.
    pub fn from_env() -> Result<Option<MysqlTarget>> {
        match std::env::var(URL_ENV) {
            Ok(u) if !u.is_empty() => MysqlTarget::from_url(&u).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads the `[client]` section (and `[client-server]`, which the MariaDB client also reads)
    /// of a my.cnf-style file: `user`, `password`, `host`, `port`, `socket`, `database`.
    pub fn from_defaults_file(path: &Path) -> Result<MysqlTarget> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("reading MySQL defaults file", path, e))?;
        let mut t = MysqlTarget::default();
        let mut in_client = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(sec) = line.strip_prefix('[') {
                let name = sec.trim_end_matches(']').trim();
                in_client = matches!(name, "client" | "client-server" | "client-mariadb");
                continue;
            }
            if !in_client || line.starts_with('!') {
                continue;
            }
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), unquote_option(v.trim())),
                None => (line, String::new()),
            };
            // my.cnf treats '-' and '_' in option names alike
            match k.replace('-', "_").as_str() {
                "user" => t.user = Some(v),
                "password" => t.password = Some(v),
                "host" => t.host = v,
                "port" => {
                    t.port = v.parse().map_err(|_| {
                        Error::MysqlConfig(format!(
                            "{}:{}: port {v:?} is not a number",
                            path.display(),
                            n + 1
                        ))
                    })?
                }
                "socket" => t.socket = Some(PathBuf::from(v)),
                "database" => t.database = Some(v),
                _ => {}
            }
        }
        // like the C client: host "localhost" without an explicit socket means the default socket
        // only when a socket is configured; we keep TCP otherwise
        Ok(t)
    }

    fn opts(&self) -> OptsBuilder {
        let b = OptsBuilder::new()
            .user(self.user.clone())
            .pass(self.password.clone())
            .tcp_connect_timeout(Some(self.connect_timeout))
            .prefer_socket(false)
            // statements are built once per table; the statement cache only costs memory
            .stmt_cache_size(0);
        match &self.socket {
            Some(s) => b.socket(Some(s.to_string_lossy().into_owned())),
            None => b
                .ip_or_hostname(Some(self.host.clone()))
                .tcp_port(self.port),
        }
    }

    /// Opens one connection, sorting failures into unreachable / access denied / other.
    pub fn connect(&self) -> Result<Conn> {
        Conn::new(self.opts()).map_err(|e| self.classify(e))
    }

    fn classify(&self, e: ::mysql::Error) -> Error {
        use ::mysql::Error as E;
        match e {
            // 1045 access denied, 1698 no password for a password account, 1044 no access to the
            // named database: all "the server answered no to these credentials"
            E::MySqlError(ref m) if matches!(m.code, 1044 | 1045 | 1698) => {
                Error::MysqlAccessDenied {
                    target: self.to_string(),
                    user: self.user.clone().unwrap_or_default(),
                    message: m.message.clone(),
                }
            }
            E::IoError(_) | E::DriverError(_) | E::CodecError(_) => Error::MysqlUnreachable {
                target: self.to_string(),
                source: e,
            },
            other => Error::mysql(format!("connecting to {self}"), other),
        }
    }
}

/// The flavour decides which global lock and which binlog-status statements a dump uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mariadb,
    Mysql,
}

/// What the server says it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1`.
    pub version: String,
    /// Major, minor, patch parsed from `version`.
    pub version_number: (u32, u32, u32),
}

impl ServerInfo {
    pub fn query(conn: &mut Conn) -> Result<ServerInfo> {
        let version: String = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| Error::mysql("reading server version", e))?
            .unwrap_or_default();
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        let mut nums = version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().unwrap_or(0));
        let version_number = (
            nums.next().unwrap_or(0),
            nums.next().unwrap_or(0),
            nums.next().unwrap_or(0),
        );
        Ok(ServerInfo {
            flavor,
            version,
            version_number,
        })
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version_number >= (major, minor, 0)
    }
}

/// Runs a statement whose result is not needed, naming it in the error.
pub(crate) fn exec(conn: &mut Conn, sql: &str) -> Result<()> {
    conn.query_drop(sql)
        .map_err(|e| Error::mysql(format!("running {}", short(sql)), e))
}

/// The first 120 characters of a statement, for error messages.
pub(crate) fn short(sql: &str) -> String {
    let mut s: String = sql.chars().take(120).collect();
    if s.len() < sql.len() {
        s.push('…');
    }
    s
}

/// `` `name` `` with embedded backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'` with quotes and backslashes escaped (for names in SHOW … / WHERE clauses).
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A my.cnf value: quotes removed, and inside quotes the client's escapes (`\n`, `\t`, `\\`,
/// `\'`, `\"`, `\s`) interpreted; an unquoted value ends at an inline `#` comment.
fn unquote_option(v: &str) -> String {
    let q = v.chars().next();
    if let Some(q @ ('\'' | '"')) = q {
        let mut out = String::new();
        let mut chars = v[1..].chars();
        while let Some(c) = chars.next() {
            match c {
                c if c == q => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('s') => out.push(' '),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        out
    } else {
        let end = v.find(" #").unwrap_or(v.len());
        v[..end].trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_escapes_and_socket() {
        let t = MysqlTarget::from_url(
            "mysql://bob:p%40ss%3Aw%2Fd@db.example:3307/app?socket=%2Frun%2Fm.sock",
        )
        .unwrap();
        assert_eq!(t.user.as_deref(), Some("bob"));
        assert_eq!(t.password.as_deref(), Some("p@ss:w/d"));
        assert_eq!(t.host, "db.example");
        assert_eq!(t.port, 3307);
        assert_eq!(t.database.as_deref(), Some("app"));
        assert_eq!(t.socket.as_deref(), Some(Path::new("/run/m.sock")));
        assert!(!format!("{t:?}").contains("p@ss"));
    }

    #[test]
    fn url_defaults_and_errors() {
        let t = MysqlTarget::from_url("mysql://root@127.0.0.1").unwrap();
        assert_eq!(t.port, 3306);
        assert_eq!(t.password, None);
        assert!(MysqlTarget::from_url("http://x").is_err());
        assert!(MysqlTarget::from_url("mysql://u:p@h:notaport").is_err());
        let e = MysqlTarget::from_url("mysql://u:secret@h:x").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn defaults_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my.cnf");
        std::fs::write(
            &p,
            "[mysqld]\nuser=mysql\n[client]\nuser = snap\npassword = \"a b\\\"c\"\nhost=10.0.0.1\nport=3310 # comment\nsocket='/tmp/x.sock'\n",
        )
        .unwrap();
        let t = MysqlTarget::from_defaults_file(&p).unwrap();
        assert_eq!(t.user.as_deref(), Some("snap"));
        assert_eq!(t.password.as_deref(), Some("a b\"c"));
        assert_eq!(t.host, "10.0.0.1");
        assert_eq!(t.port, 3310);
        assert_eq!(t.socket.as_deref(), Some(Path::new("/tmp/x.sock")));
    }
}
