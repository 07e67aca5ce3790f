//! Private files: every file and directory snap creates — in a local repository, in the cache,
//! for a report — is readable by its owner only.
//!
//! snap runs as root and stores key files (a password guess away from every backup), database
//! dumps and an index naming every path; the usual umask would leave them 0644. The binary sets
//! umask 077 before anything else, and the library does not rely on that: the places that create
//! repository and cache files ask for 0600/0700 themselves (a library user keeps whatever umask
//! it has). Pack files are made read-only (0400) once written: they are never modified.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of files snap creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories snap creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a pack file once written.
pub const PACK_MODE: u32 = 0o400;

/// Restricts new files of this process to their owner (the binary calls it first thing).
pub fn set_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// `mkdir -p` with mode 0700 for every directory it creates.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Like [`create_dir_all`], and an existing directory that group or others could read (made by an
/// older snap, or by hand) is made private too: it is ours, and it holds an index of every path.
pub fn private_dir(path: &Path) -> io::Result<()> {
    create_dir_all(path)?;
    let md = std::fs::symlink_metadata(path)?;
    if md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}
