//! Repository locations: the one place a `-r/--repo` string becomes a backend. A location is a
//! local path (`/backup/repo`, `local:/backup/repo`), an S3 bucket and prefix
//! (`s3://BUCKET/PREFIX`), or an SFTP directory (`sftp://USER@HOST[:PORT]/PATH`).
//!
//! A string that starts like a URL with a scheme snap does not know is an error, never a path:
//! before this module `snap -r s3://bucket/x init` quietly created a local directory `s3:` and
//! backed up into it, so the user believed the data was off the machine. `local:` is the escape
//! for a local directory whose name really starts with `word:`.
//!
//! Nothing here holds a secret: credentials come from the environment (`AWS_*`, `~/.aws`, the ssh
//! agent or key file) when the backend is built, so a location can be printed, logged and stored
//! as it is, except that a user or password written into a URL is dropped from its display.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
    Sftp(SftpLocation),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `http(s)://host[:port]` of an S3-compatible server; `None` = from the environment
    /// (`SNAP_S3_ENDPOINT`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) or AWS itself.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Absolute directory on the server.
    pub path: String,
}

/// Schemes that name a location; anything else that looks like `scheme:` is refused.
pub const SCHEMES: &[&str] = &["local", "s3", "sftp"];

impl Location {
    /// Parses a repository location. `s3_endpoint` is `--s3-endpoint` (it wins over the
    /// environment, as an explicit flag should).
    pub fn parse(s: &str, s3_endpoint: Option<&str>) -> Result<Location> {
        if s.is_empty() {
            return Err(Error::Usage("the repository location is empty".into()));
        }
        let Some((scheme, rest)) = split_scheme(s) else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        match scheme.as_str() {
            "local" => {
                let p = rest.strip_prefix("//").unwrap_or(rest);
                if p.is_empty() {
                    return Err(bad(s, "local: needs a path, as in local:/backup/repo"));
                }
                Ok(Location::Local(PathBuf::from(p)))
            }
            "s3" => parse_s3(s, rest, s3_endpoint),
            "sftp" => parse_sftp(s, rest),
            other => Err(bad(
                s,
                &format!(
                    "unknown scheme {other:?}: a repository is a path, local:PATH, s3://BUCKET/PREFIX \
                     or sftp://USER@HOST[:PORT]/PATH (write local:{s} for a local directory of that name)"
                ),
            )),
        }
    }

    /// An object store or an SFTP server: another machine, so a copy there counts as offsite.
    pub fn is_offsite(&self) -> bool {
        !matches!(self, Location::Local(_))
    }

    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            _ => None,
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::Local(p.to_path_buf())
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Local(p)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                Ok(())
            }
            Location::Sftp(s) => {
                write!(f, "sftp://")?;
                if let Some(u) = &s.user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{}", s.host)?;
                if let Some(p) = s.port {
                    write!(f, ":{p}")?;
                }
                write!(f, "{}", s.path)
            }
        }
    }
}

fn bad(s: &str, why: &str) -> Error {
    Error::Usage(format!(
        "repository location {:?}: {why}",
        crate::secrets::redact_url(s)
    ))
}

/// `scheme:rest` when `s` starts with an RFC 3986 scheme (a letter, then letters, digits, `+`,
/// `-`, `.`) and a colon. A path such as `./a:b` or `/x:y` has none.
fn split_scheme(s: &str) -> Option<(String, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), rest))
}

fn parse_s3(s: &str, rest: &str, flag_endpoint: Option<&str>) -> Result<Location> {
    // restic's form, `s3:http://host:port/bucket/prefix`, names the endpoint in the location.
    let (endpoint, path) = if let Some(r) = rest.strip_prefix("//") {
        (None, r)
    } else if rest.starts_with("http://") || rest.starts_with("https://") {
        let scheme_len = rest.find("://").map(|i| i + 3).unwrap_or(0);
        let after = &rest[scheme_len..];
        let (host, path) = after.split_once('/').unwrap_or((after, ""));
        if host.is_empty() {
            return Err(bad(s, "no host in the S3 endpoint"));
        }
        (Some(format!("{}{host}", &rest[..scheme_len])), path)
    } else {
        return Err(bad(
            s,
            "expected s3://BUCKET/PREFIX (or s3:http://HOST:PORT/BUCKET/PREFIX)",
        ));
    };
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(bad(s, "no bucket named"));
    }
    if bucket.contains('@') || bucket.contains(':') {
        return Err(bad(
            s,
            "credentials do not belong in the location; use AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY or a ~/.aws profile (AWS_PROFILE)",
        ));
    }
    if prefix.split('/').any(|c| c == ".." || c == ".") {
        return Err(bad(s, "the prefix may not contain . or .. components"));
    }
    let endpoint = flag_endpoint
        .map(str::to_string)
        .or(endpoint)
        .or_else(env_endpoint);
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(bad(
            s,
            &format!("S3 endpoint {e:?} must start with http:// or https://"),
        ));
    }
    Ok(Location::S3(S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        endpoint,
    }))
}

fn env_endpoint() -> Option<String> {
    [
        "SNAP_S3_ENDPOINT",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()))
}

fn parse_sftp(s: &str, rest: &str) -> Result<Location> {
    let Some(r) = rest.strip_prefix("//") else {
        return Err(bad(s, "expected sftp://USER@HOST[:PORT]/PATH"));
    };
    let (authority, path) = match r.find('/') {
        Some(i) => (&r[..i], &r[i..]),
        None => (r, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if u.contains(':') {
                return Err(bad(
                    s,
                    "a password does not belong in the location; snap logs in with the ssh \
                     agent or a key file (SNAP_SFTP_KEY)",
                ));
            }
            (Some(u.to_string()), h)
        }
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad(s, &format!("port {p:?} is not a number from 1 to 65535")))?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Err(bad(s, "no host named"));
    }
    let path = if path.is_empty() { "/" } else { path };
    if path.split('/').any(|c| c == "..") {
        return Err(bad(s, "the path may not contain .. components"));
    }
    Ok(Location::Sftp(SftpLocation {
        user,
        host: host.to_string(),
        port,
        path: path.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Location> {
        Location::parse(s, None)
    }

    #[test]
    fn paths_stay_paths() {
        for s in ["/backup/repo", "repo", "./a:b", "/x:y/z", "../r"] {
            assert_eq!(p(s).unwrap(), Location::Local(PathBuf::from(s)), "{s}");
        }
        assert_eq!(p("local:/srv/r").unwrap(), Location::Local("/srv/r".into()));
        assert_eq!(p("local:s3:x").unwrap(), Location::Local("s3:x".into()));
    }

    #[test]
    fn unknown_schemes_are_refused() {
        for s in ["gs://bucket/x", "b2:bucket:x", "rest:http://h/", "S4://x"] {
            let e = p(s).unwrap_err().to_string();
            assert!(e.contains("unknown scheme"), "{s}: {e}");
        }
    }

    #[test]
    fn s3_forms() {
        let l = Location::parse("s3://bkt/a/b/", Some("http://127.0.0.1:9000")).unwrap();
        assert_eq!(
            l,
            Location::S3(S3Location {
                bucket: "bkt".into(),
                prefix: "a/b".into(),
                endpoint: Some("http://127.0.0.1:9000".into())
            })
        );
        assert_eq!(l.to_string(), "s3://bkt/a/b");
        let l = p("s3:http://127.0.0.1:9000/bkt").unwrap();
        let Location::S3(s) = l else { panic!() };
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bkt", ""));
        assert!(p("s3://").is_err());
        assert!(p("s3://key:secret@bkt/x").is_err());
        assert!(p("s3://bkt/../x").is_err());
        assert!(Location::parse("s3://b", Some("ftp://h")).is_err());
    }

    #[test]
    fn sftp_forms() {
        let l = p("sftp://backup@host.example:2222/srv/repo").unwrap();
        assert_eq!(
            l,
            Location::Sftp(SftpLocation {
                user: Some("backup".into()),
                host: "host.example".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            })
        );
        assert_eq!(l.to_string(), "sftp://backup@host.example:2222/srv/repo");
        assert!(l.is_offsite());
        assert!(
            p("sftp://u:pw@h/x")
                .unwrap_err()
                .to_string()
                .contains("password")
        );
        assert!(p("sftp://h:99999/x").is_err());
        assert!(p("sftp:h/x").is_err());
    }
}
