//! Keeping secrets out of what snap shows and what it hands to other programs.
//!
//! Two rules live here so that every caller applies them the same way:
//! - [`child_env`] / [`scrub_command`]: a program snap starts (an alert command, later hooks)
//!   gets snap's environment minus every variable that may hold a secret. The child is a user's
//!   shell command: it needs `PATH`, `HOME`, the variables snap sets for it (`SNAP_REPORT`, …)
//!   and the ordinary environment, never the repository password or database credentials snap
//!   was started with. Dropped: [`SECRET_VARS`] by name, and any variable whose name contains
//!   `PASSWORD`, `SECRET`, `TOKEN` or `CREDENTIAL` in any case (`SNAP_PASSWORD_FILE` too: it
//!   points at the password). Kept: everything else.
//! - [`redact_url`]: a connection URL as it may be printed, with the password replaced by `***`.
//!   Every message that quotes a URL a user typed goes through it.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Variables dropped by name, whatever else they are called like.
pub const SECRET_VARS: &[&str] = &[
    "SNAP_PASSWORD",
    "SNAP_PASSWORD_FILE",
    "SNAP_NEW_PASSWORD",
    "SNAP_MYSQL_PASSWORD",
    "SNAP_MYSQL_URL",
    "MYSQL_PWD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Name fragments (compared upper-case) that mark a variable as secret.
const SECRET_WORDS: &[&str] = &["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "PASSWD"];

/// Whether a variable of this name may hold a secret and must not reach a child process.
pub fn is_secret_var(name: &OsStr) -> bool {
    // a name that is not UTF-8 cannot be judged by its words: treat it as secret
    let Some(name) = name.to_str() else {
        return true;
    };
    let upper = name.to_ascii_uppercase();
    SECRET_VARS.contains(&upper.as_str()) || SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// The environment a child process gets: this process's variables without the secret ones.
pub fn child_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| !is_secret_var(k))
        .collect()
}

/// Replaces `cmd`'s environment with [`child_env`]; variables set on `cmd` afterwards (such as
/// `SNAP_REPORT`) are added on top.
pub fn scrub_command(cmd: &mut Command) -> &mut Command {
    cmd.env_clear().envs(child_env())
}

/// `scheme://user:***@host…`: the URL with the password part of its authority hidden. When no
/// `@` separates a user part, a non-numeric "port" (`mysql://user:secret`, a mistyped URL) is
/// hidden too, so a malformed URL cannot print its password either.
pub fn redact_url(url: &str) -> String {
    let Some(s) = url.find("://") else {
        // not a URL: a path typed in the wrong place is worth showing, anything that looks like
        // `user:password@host` without its scheme is not
        return if url.contains(['@', ':']) {
            "***".to_string()
        } else {
            url.to_string()
        };
    };
    let start = s + 3;
    let rest = &url[start..];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    // the userinfo ends at the last '@': a password may hold '@' or '/' unescaped, and hiding too
    // much (a socket path with an '@') is the safe way to be wrong
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        match userinfo.split_once(':') {
            Some((u, _)) => {
                out.push_str(u);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        }
        out.push_str(&rest[at..]);
        return out;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && !p.bytes().all(|b| b.is_ascii_digit()) => {
            out.push_str(h);
            out.push_str(":***");
        }
        _ => out.push_str(&rest[..end]),
    }
    // the path and query hold no credentials in the URLs snap takes (database, socket, timeout)
    out.push_str(&rest[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "SNAP_PASSWORD",
            "SNAP_PASSWORD_FILE",
            "SNAP_MYSQL_URL",
            "MYSQL_PWD",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "github_token",
            "MY_DB_Password",
        ] {
            assert!(is_secret_var(OsStr::new(n)), "{n}");
        }
        for n in [
            "PATH",
            "HOME",
            "SNAP_REPORT",
            "SNAP_SNAPSHOT",
            "LANG",
            "USER",
        ] {
            assert!(!is_secret_var(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("mariadb://u:PASS@host:3306/db?socket=/x"),
            "mariadb://u:***@host:3306/db?socket=/x"
        );
        assert_eq!(redact_url("mysql://u:p@ss@h"), "mysql://u:***@h");
        assert_eq!(redact_url("mysql://u:p/s?s@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact_url("mysql://u@h:1"), "mysql://u@h:1");
        assert_eq!(redact_url("mysql://u:secret"), "mysql://u:***");
        assert_eq!(redact_url("mysql://h:3306"), "mysql://h:3306");
        assert_eq!(redact_url("u:secret@h"), "***");
        assert_eq!(redact_url("/etc"), "/etc");
    }
}
