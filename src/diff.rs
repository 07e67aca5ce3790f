//! Differences between two snapshots (or two subtrees): which paths were added, removed, had
//! their content changed, changed type, or only changed metadata — what a user looks at before
//! forgetting one of them, or to see what a night's backup caught.
//!
//! Both trees are walked together, a directory at a time: nodes of a tree are sorted by name, so
//! one merge pass pairs them. A subtree whose id is the same on both sides is identical (trees are
//! content-addressed) and is skipped unread, so the cost is proportional to what changed, not to
//! the size of the snapshots, and memory holds one directory per level. Content is compared by
//! the blob ids of its extents, never by reading file data.
//!
//! Codes follow restic's `diff`: `+` added, `-` removed, `M` content modified, `T` type changed,
//! `U` metadata (mode, owner, times, xattrs, link target) updated.

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    #[serde(rename = "+")]
    Added,
    #[serde(rename = "-")]
    Removed,
    #[serde(rename = "M")]
    Modified,
    #[serde(rename = "T")]
    TypeChanged,
    #[serde(rename = "U")]
    MetadataChanged,
}

impl ChangeKind {
    pub fn code(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::TypeChanged => 'T',
            ChangeKind::MetadataChanged => 'U',
        }
    }
}

/// One changed path. Sizes are the logical sizes of files (0 for other entries); `what` names the
/// metadata that changed for `U` (and `M`, when more than the content changed).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub change: ChangeKind,
    pub path: String,
    pub is_dir: bool,
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DiffStats {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub type_changed: u64,
    pub metadata_changed: u64,
    /// File bytes of added and removed files, and the growth of modified ones (may be negative).
    pub bytes_added: u64,
    pub bytes_removed: u64,
    /// Subtrees skipped unread because both sides name the same tree.
    pub identical_subtrees: u64,
}

fn file_size(n: &Node) -> u64 {
    if n.kind == NodeKind::File { n.size } else { 0 }
}

/// The metadata fields that differ between two nodes of the same kind (content and subtree aside).
fn metadata_changes(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut what = Vec::new();
    if a.mode != b.mode {
        what.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid {
        what.push("owner");
    }
    if a.mtime != b.mtime {
        what.push("mtime");
    }
    if a.target != b.target {
        what.push("target");
    }
    if a.xattrs != b.xattrs {
        what.push("xattrs");
    }
    if a.rdev != b.rdev {
        what.push("device");
    }
    what
}

struct Differ<'a> {
    repo: &'a Repository,
    stats: DiffStats,
    emit: &'a mut dyn FnMut(Change) -> Result<()>,
}

impl Differ<'_> {
    fn report(
        &mut self,
        change: ChangeKind,
        path: &str,
        a: Option<&Node>,
        b: Option<&Node>,
    ) -> Result<()> {
        let (sa, sb) = (a.map(file_size), b.map(file_size));
        match change {
            ChangeKind::Added => {
                self.stats.added += 1;
                self.stats.bytes_added = self.stats.bytes_added.saturating_add(sb.unwrap_or(0));
            }
            ChangeKind::Removed => {
                self.stats.removed += 1;
                self.stats.bytes_removed = self.stats.bytes_removed.saturating_add(sa.unwrap_or(0));
            }
            ChangeKind::Modified => {
                self.stats.modified += 1;
                let (x, y) = (sa.unwrap_or(0), sb.unwrap_or(0));
                if y >= x {
                    self.stats.bytes_added = self.stats.bytes_added.saturating_add(y - x);
                } else {
                    self.stats.bytes_removed = self.stats.bytes_removed.saturating_add(x - y);
                }
            }
            ChangeKind::TypeChanged => self.stats.type_changed += 1,
            ChangeKind::MetadataChanged => self.stats.metadata_changed += 1,
        }
        let what = match (a, b) {
            (Some(a), Some(b)) => metadata_changes(a, b),
            _ => Vec::new(),
        };
        let is_dir = b.or(a).is_some_and(|n| n.kind == NodeKind::Dir);
        (self.emit)(Change {
            change,
            path: path.to_string(),
            is_dir,
            size_before: sa,
            size_after: sb,
            what,
        })
    }

    /// Everything below a subtree present on one side only.
    fn one_side(&mut self, tree: &Id, prefix: &str, change: ChangeKind) -> Result<()> {
        for node in self.repo.load_tree(tree)?.nodes {
            let path = format!("{prefix}/{}", node.name_lossy());
            let (a, b) = match change {
                ChangeKind::Added => (None, Some(&node)),
                _ => (Some(&node), None),
            };
            self.report(change, &path, a, b)?;
            if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                self.one_side(&sub, &path, change)?;
            }
        }
        Ok(())
    }

    fn pair(&mut self, a: &Node, b: &Node, path: &str) -> Result<()> {
        if a.kind != b.kind {
            self.report(ChangeKind::TypeChanged, path, Some(a), Some(b))?;
            if let (NodeKind::Dir, Some(t)) = (a.kind, a.subtree) {
                self.one_side(&t, path, ChangeKind::Removed)?;
            }
            if let (NodeKind::Dir, Some(t)) = (b.kind, b.subtree) {
                self.one_side(&t, path, ChangeKind::Added)?;
            }
            return Ok(());
        }
        let content_changed =
            a.kind == NodeKind::File && (a.content != b.content || a.size != b.size);
        if content_changed {
            self.report(ChangeKind::Modified, path, Some(a), Some(b))?;
        } else if !metadata_changes(a, b).is_empty() {
            self.report(ChangeKind::MetadataChanged, path, Some(a), Some(b))?;
        }
        if let (NodeKind::Dir, Some(ta), Some(tb)) = (a.kind, a.subtree, b.subtree) {
            self.trees(&ta, &tb, path)?;
        }
        Ok(())
    }

    fn trees(&mut self, ta: &Id, tb: &Id, prefix: &str) -> Result<()> {
        if ta == tb {
            self.stats.identical_subtrees += 1;
            return Ok(());
        }
        let (a, b) = (
            self.repo.load_tree(ta)?.nodes,
            self.repo.load_tree(tb)?.nodes,
        );
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let order = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = &a[i];
                    let path = format!("{prefix}/{}", n.name_lossy());
                    self.report(ChangeKind::Removed, &path, Some(n), None)?;
                    if let (NodeKind::Dir, Some(t)) = (n.kind, n.subtree) {
                        self.one_side(&t, &path, ChangeKind::Removed)?;
                    }
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &b[j];
                    let path = format!("{prefix}/{}", n.name_lossy());
                    self.report(ChangeKind::Added, &path, None, Some(n))?;
                    if let (NodeKind::Dir, Some(t)) = (n.kind, n.subtree) {
                        self.one_side(&t, &path, ChangeKind::Added)?;
                    }
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let path = format!("{prefix}/{}", a[i].name_lossy());
                    self.pair(&a[i], &b[j], &path)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }
}

/// Compares the trees `before` and `after`, calling `emit` for each change in path order.
pub fn diff(
    repo: &Repository,
    before: &Id,
    after: &Id,
    emit: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<DiffStats> {
    let mut d = Differ {
        repo,
        stats: DiffStats::default(),
        emit,
    };
    d.trees(before, after, "")?;
    Ok(d.stats)
}
