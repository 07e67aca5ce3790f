//! Trees: one directory's entries, encoded as a CBOR blob and stored like any other blob.
//!
//! A node holds everything needed to recreate an entry (type, mode, owner, times in ns, xattrs,
//! device numbers, symlink target) plus what incremental backups compare (size, mtime, ctime,
//! inode). File content is a list of extents: a data blob of `len` bytes, or a hole of `len` bytes
//! that is never stored, so sparse files stay sparse. Names are raw bytes: non-UTF-8 names
//! round-trip. A decoded tree is validated (names are single, non-empty components, sorted and
//! unique), because a restore joins these names onto the target directory.

use serde::{Deserialize, Serialize};

use crate::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Chardev,
    Blockdev,
    Socket,
}

/// A run of file content: `id` = Some(data blob) or None for a hole of `len` zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent(pub Option<Id>, pub u64);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Xattr(
    #[serde(with = "serde_bytes")] pub Vec<u8>,
    #[serde(with = "serde_bytes")] pub Vec<u8>,
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub ctime: i64,
    pub inode: u64,
    pub dev: u64,
    pub nlink: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Extent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// A node for something that is not a file-system entry (a snapshot's root, a database dump
    /// stream): no inode, no device, one link, no content yet.
    pub fn synthetic(
        name: &[u8],
        kind: NodeKind,
        mode: u32,
        uid: u32,
        gid: u32,
        time_ns: i64,
    ) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode,
            uid,
            gid,
            size: 0,
            mtime: time_ns,
            ctime: time_ns,
            inode: 0,
            dev: 0,
            nlink: 1,
            rdev: 0,
            target: None,
            content: Vec::new(),
            subtree: None,
            xattrs: Vec::new(),
        }
    }
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Node {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Bytes of content actually stored (holes excluded). Saturating: in a validated tree the
    /// sum is at most `size`, and an unvalidated node must not panic or wrap.
    pub fn data_bytes(&self) -> u64 {
        self.content
            .iter()
            .filter(|e| e.0.is_some())
            .fold(0u64, |acc, e| acc.saturating_add(e.1))
    }

    /// Σ extent lengths, or `None` when the sum does not fit a u64 (only damage or a hostile
    /// tree can claim that much: a file is at most 2^63 − 1 bytes).
    pub fn content_len(&self) -> Option<u64> {
        self.content
            .iter()
            .try_fold(0u64, |acc, e| acc.checked_add(e.1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        crate::cbor::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree, String> {
        let t: Tree = crate::cbor::read(bytes)?;
        t.validate()?;
        Ok(t)
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut prev: Option<&[u8]> = None;
        for n in &self.nodes {
            if n.name.is_empty()
                || n.name == b"."
                || n.name == b".."
                || n.name.iter().any(|&b| b == b'/' || b == 0)
            {
                return Err(format!("invalid entry name {:?}", n.name_lossy()));
            }
            if prev.is_some_and(|p| p >= &n.name[..]) {
                return Err(format!(
                    "entries not sorted or repeated at {:?}",
                    n.name_lossy()
                ));
            }
            prev = Some(&n.name);
            let ok = match n.kind {
                NodeKind::Dir => n.subtree.is_some() && n.content.is_empty(),
                // Checked: extent lengths come from the repository, and a wrapped sum could
                // match `size` while the extents cover far more.
                NodeKind::File => n.subtree.is_none() && n.content_len() == Some(n.size),
                NodeKind::Symlink => {
                    n.target.is_some() && n.subtree.is_none() && n.content.is_empty()
                }
                _ => n.subtree.is_none() && n.content.is_empty(),
            };
            if !ok {
                return Err(format!(
                    "entry {:?} is inconsistent with its kind {:?}",
                    n.name_lossy(),
                    n.kind
                ));
            }
        }
        Ok(())
    }

    /// Binary search by name (nodes are sorted).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
