//! snap: deduplicating, encrypted snapshot backups of files (and, in later steps, MySQL/MariaDB).
//!
//! Data flows one way: source → chunker → blob (id, compress, seal) → pack → backend, with the
//! index as a rebuildable cache beside it; trees and snapshots sit on top. The binary is a thin
//! shell over this library. Modules that need RocksDB are behind the default `rocksdb` feature so
//! the decoders (what the fuzzers exercise) build without compiling C++.

pub mod auditfile;
pub mod blob;
pub mod cbor;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod direct;
pub mod duration;
pub mod envelope;
pub mod error;
pub mod id;
pub mod keyfile;
pub mod lockfile;
pub mod mysql;
pub mod pack;
pub mod policy;
pub mod private;
pub mod prunefile;
pub mod reach;
pub mod secrets;
pub mod snapshot;
pub mod stages;
pub mod tree;

#[cfg(feature = "rocksdb")]
pub mod archiver;
#[cfg(feature = "rocksdb")]
pub mod audit;
#[cfg(feature = "rocksdb")]
pub mod backend;
#[cfg(feature = "rocksdb")]
pub mod checker;
#[cfg(feature = "rocksdb")]
pub mod copy;
#[cfg(feature = "rocksdb")]
pub mod database;
#[cfg(feature = "rocksdb")]
pub mod diff;
#[cfg(feature = "rocksdb")]
pub mod index;
#[cfg(feature = "rocksdb")]
pub mod plan;
#[cfg(feature = "rocksdb")]
pub mod prune;
#[cfg(feature = "rocksdb")]
pub mod repo;
#[cfg(feature = "rocksdb")]
pub mod restorer;
#[cfg(feature = "rocksdb")]
pub mod source;
#[cfg(feature = "rocksdb")]
pub mod stats;
#[cfg(feature = "rocksdb")]
pub mod status;

use std::path::{Component, Path, PathBuf};

/// This machine's host name, as recorded in snapshots, keys and locks.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The invoking user's name (from the environment; numeric uid when unset).
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }.to_string()
        })
}

/// `p` made absolute against `cwd` and normalised lexically (no `.`/`..`), without resolving
/// symlinks, so the snapshot records the path the user named.
pub fn lexical_absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}
