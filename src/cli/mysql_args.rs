//! Command-line options that name a MySQL/MariaDB server and what to take from it, shared by
//! `backup --mysql`, `mysql restore` and `verify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use snap::archiver::MysqlSource;
use snap::mysql::schema::Selection;
use snap::mysql::{DumpOptions, MysqlTarget};
use snap::secrets::redact_url;

/// The environment variable holding the MySQL password.
pub const PASSWORD_ENV: &str = "SNAP_MYSQL_PASSWORD";

// No `Debug`: the URL may hold a password.
#[derive(clap::Args, Default)]
pub struct Conn {
    /// Server URL mysql://user@host:port[?socket=PATH] (default: SNAP_MYSQL_URL, then the
    /// defaults file, then the local socket). Give the password with --mysql-password-file,
    /// SNAP_MYSQL_PASSWORD or --mysql-defaults-file: one in the URL is visible to every local
    /// user in the process list
    #[arg(long = "mysql-url", value_name = "URL")]
    pub url: Option<String>,
    /// my.cnf-style file with a [client] section (user, password, host, port, socket)
    #[arg(long = "mysql-defaults-file", value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
    /// File whose first line is the MySQL password (wins over SNAP_MYSQL_PASSWORD, which wins
    /// over a password in the URL or defaults file)
    // its own id: the field name alone would be the global --password-file's id, and clap
    // would hand the repository password file to the MySQL login (and the other way round)
    #[arg(
        id = "mysql_password_file",
        long = "mysql-password-file",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
}

impl Conn {
    /// The server these options name; `url` overrides `--mysql-url`. The password is the first
    /// of: `--mysql-password-file`, `SNAP_MYSQL_PASSWORD`, the one in the URL / defaults file /
    /// `SNAP_MYSQL_URL`.
    pub fn target(&self, url: Option<&str>) -> Result<MysqlTarget> {
        let mut t = self.server(url)?;
        if let Some(f) = &self.password_file {
            t.password = Some(super::read_password_file(f)?.to_string());
        } else if let Some(p) = std::env::var_os(PASSWORD_ENV) {
            let p = p
                .into_string()
                .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?;
            t.password = Some(p);
        }
        Ok(t)
    }

    /// The server without the password options applied.
    fn server(&self, url: Option<&str>) -> Result<MysqlTarget> {
        if let Some(u) = url.filter(|u| !u.is_empty()).or(self.url.as_deref()) {
            if !(u.starts_with("mysql://") || u.starts_with("mariadb://")) {
                bail!(
                    "a server URL starts with mysql:// or mariadb://, not {:?} (with backup \
                     --mysql, put the paths before --mysql)",
                    redact_url(u)
                );
            }
            let t = MysqlTarget::from_url(u)?;
            if t.password.is_some() {
                // a command line is readable by every local user (/proc/PID/cmdline, ps)
                eprintln!(
                    "snap: warning: the MySQL password in {} is visible to every local user in \
                     the process list; use --mysql-password-file FILE, {PASSWORD_ENV} or \
                     --mysql-defaults-file FILE instead",
                    redact_url(u)
                );
            }
            return Ok(t);
        }
        if let Some(f) = &self.defaults_file {
            return Ok(MysqlTarget::from_defaults_file(f)?);
        }
        if let Some(t) = MysqlTarget::from_env()? {
            return Ok(t);
        }
        let mut t = MysqlTarget::default();
        let sock = PathBuf::from("/run/mysqld/mysqld.sock");
        if sock.exists() {
            t.socket = Some(sock);
            t.user = Some(snap::username());
        }
        Ok(t)
    }
}

#[derive(clap::Args, Default)]
pub struct Backup {
    /// Also dump this MySQL/MariaDB server into mysql/ (URL optional; see --mysql-url and
    /// --mysql-password-file)
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub mysql: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
    /// Only databases matching this glob (repeatable)
    #[arg(long = "mysql-database", value_name = "GLOB")]
    pub databases: Vec<String>,
    /// Skip databases matching this glob (repeatable)
    #[arg(long = "mysql-exclude-database", value_name = "GLOB")]
    pub exclude_databases: Vec<String>,
    /// Only tables matching this DB.TABLE glob (repeatable)
    #[arg(long = "mysql-table", value_name = "GLOB")]
    pub tables: Vec<String>,
    /// Skip tables matching this DB.TABLE glob (repeatable)
    #[arg(long = "mysql-exclude-table", value_name = "GLOB")]
    pub exclude_tables: Vec<String>,
    /// Also dump users and grants
    #[arg(long = "mysql-grants")]
    pub grants: bool,
    /// Worker connections reading tables in parallel
    #[arg(long = "mysql-threads", default_value_t = 2)]
    pub threads: usize,
    /// Give up (instead of stalling the application) when the backup lock is not granted within
    /// this many seconds
    #[arg(
        long = "mysql-lock-timeout",
        value_name = "SECS",
        default_value_t = 10.0
    )]
    pub lock_timeout: f64,
}

impl Backup {
    pub fn source(&self) -> Result<Option<MysqlSource>> {
        let Some(url) = &self.mysql else {
            return Ok(None);
        };
        if !(self.lock_timeout > 0.0 && self.lock_timeout < 86_400.0) {
            bail!("--mysql-lock-timeout must be between 0 and 86400 seconds");
        }
        Ok(Some(MysqlSource {
            target: self.conn.target(Some(url))?,
            options: DumpOptions {
                selection: Selection {
                    databases: self.databases.clone(),
                    exclude_databases: self.exclude_databases.clone(),
                    tables: self.tables.clone(),
                    exclude_tables: self.exclude_tables.clone(),
                    include_system: false,
                },
                threads: self.threads.max(1),
                lock_timeout: Duration::from_secs_f64(self.lock_timeout),
                grants: self.grants,
            },
            record_as: None,
        }))
    }
}
