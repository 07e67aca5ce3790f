//! Which entries of the source a backup takes: exclude globs drop an entry and everything under
//! it; include globs, when any are given, take only the files they match.
//!
//! Include patterns are how the seed's data classes pick files (`*.py *.vue *.js` for code,
//! `*.yml *.env *.conf` for configuration), so they must not need the directory layout spelled
//! out. That decides the shape: directories are always walked (a pattern can match anything
//! beneath them), a non-directory is taken when it or a directory above it matches (so a pattern
//! naming a directory, such as `/srv/upload`, takes it whole), and a directory in which nothing
//! was taken is left out of the snapshot instead of being stored as an empty skeleton of the
//! tree. A directory that matches an include is kept even when empty. These are the rules of
//! `snap restore --include` too, so a backup with includes restores to what a restore with the
//! same includes would pick from a full backup. Excludes win over includes, as in restic, borg
//! and rsync.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Builds a glob set from patterns; a pattern without `/` also matches any base name.
pub fn globset(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?;
        b.add(g);
        if !p.contains('/') {
            b.add(
                Glob::new(&format!("**/{p}"))
                    .map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?,
            );
        }
    }
    b.build()
        .map_err(|e| Error::Usage(format!("bad patterns: {e}")))
}

/// A backup's include and exclude patterns, compiled.
pub struct Selection {
    excludes: GlobSet,
    /// `None`: everything not excluded is taken.
    includes: Option<GlobSet>,
}

impl Selection {
    pub fn new(includes: &[String], excludes: &[String]) -> Result<Selection> {
        Ok(Selection {
            excludes: globset(excludes)?,
            includes: if includes.is_empty() {
                None
            } else {
                Some(globset(includes)?)
            },
        })
    }

    /// Whether `path` and everything under it is left out.
    pub fn excluded(&self, path: &Path) -> bool {
        self.excludes.is_match(path)
    }

    /// Whether `path` is taken (for a directory: taken whole), given whether a directory above
    /// it was. Always true without includes.
    pub fn included(&self, path: &Path, inside_included: bool) -> bool {
        inside_included || self.includes.as_ref().is_none_or(|g| g.is_match(path))
    }

    /// Whether some include pattern picks files, so directories may end up empty and be left out.
    pub fn has_includes(&self) -> bool {
        self.includes.is_some()
    }

    /// For a walk that does not carry the state down (the size scan): whether `path` or one of
    /// its ancestors below `root` matches an include.
    pub fn included_under(&self, root: &Path, path: &Path) -> bool {
        let Some(g) = &self.includes else { return true };
        path.ancestors()
            .take_while(|a| a.starts_with(root))
            .any(|a| g.is_match(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(inc: &[&str], exc: &[&str]) -> Selection {
        let v = |s: &[&str]| s.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Selection::new(&v(inc), &v(exc)).unwrap()
    }

    #[test]
    fn without_includes_everything_not_excluded_is_taken() {
        let s = sel(&[], &["*.tmp"]);
        assert!(s.included(Path::new("/srv/a.py"), false));
        assert!(s.excluded(Path::new("/srv/x/a.tmp")));
        assert!(!s.has_includes());
    }

    #[test]
    fn includes_match_base_names_and_whole_directories() {
        let s = sel(&["*.py", "/srv/upload"], &["/srv/upload/cache"]);
        assert!(s.included(Path::new("/srv/app/x.py"), false));
        assert!(!s.included(Path::new("/srv/app/x.js"), false));
        assert!(s.included(Path::new("/srv/upload"), false));
        // beneath a directory that matched, the walker passes `true` down
        assert!(s.included(Path::new("/srv/upload/a.jpg"), true));
        assert!(s.included_under(Path::new("/srv"), Path::new("/srv/upload/b/a.jpg")));
        assert!(!s.included_under(Path::new("/srv"), Path::new("/srv/app/a.jpg")));
        // an exclude wins, whatever the includes say
        assert!(s.excluded(Path::new("/srv/upload/cache")));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let e = Selection::new(&["a[".to_string()], &[]).err().unwrap();
        assert!(e.to_string().contains("a["), "{e}");
    }
}
