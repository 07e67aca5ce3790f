//! Backends: where repository files live. The repository sees only whole immutable files named
//! by relative paths (`config`, `keys/<id>`, `data/ab/<id>`, …); a backend stores, lists, reads
//! (whole or a range) and removes them, and makes a write atomic and durable before it returns.
//! The local directory ([`local`]) and remote stores ([`remote`]: S3, SFTP through opendal)
//! implement the same trait; [`open`] turns a parsed [`Location`] into one, so nothing above
//! this module knows where the repository lives.

pub mod append_only;
pub mod local;
pub mod location;
pub mod remote;

use std::sync::Arc;

use crate::error::Result;
pub use location::Location;

pub trait Backend: Send + Sync {
    /// Human-readable location for messages.
    fn location(&self) -> String;
    fn exists(&self, path: &str) -> Result<bool>;
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// [`Backend::read_range`], handing the bytes to `sink` in order, in pieces as they arrive:
    /// a reader of many large ranges at once holds a few pieces each, not whole ranges. An error
    /// from `sink` ends the read and is returned.
    fn read_range_with(
        &self,
        path: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        sink(&self.read_range(path, offset, len)?)
    }
    fn size(&self, path: &str) -> Result<u64>;
    /// Hints that `len` bytes at `offset` will be read soon; a backend without such a notion
    /// ignores it.
    fn prefetch(&self, _path: &str, _offset: u64, _len: u64) {}
    /// Writes a whole file atomically and durably: after `Ok`, a crash cannot lose it or leave it
    /// half-written, and a concurrent reader never sees a partial file.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// Files below `dir` (recursively), as (relative path, size).
    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>>;
    /// Removes a file; a file already gone is not an error (two processes may remove it).
    fn remove(&self, path: &str) -> Result<()>;
    /// Prepares an empty location for `init` (directories on disk; a reachability and
    /// credentials check remotely).
    fn init_layout(&self) -> Result<()> {
        Ok(())
    }
    /// On another machine (an object store, an SFTP server): a copy there counts as offsite.
    fn is_offsite(&self) -> bool {
        false
    }
    /// (requests made, of which retries) for backends that count them.
    fn request_count(&self) -> Option<(u64, u64)> {
        None
    }
    /// How many packs a backup writes at once. A disk needs two (one pack's fsync overlaps the
    /// next one's write); a network store answers each PUT after a round trip and its own
    /// durable write, so more in flight keep the link busy.
    fn pack_writers(&self) -> usize {
        2
    }

    /// How many pack reads a restore keeps in flight: as many as a backup's writes, for the same
    /// reason (a disk is read ahead by the kernel; a network store answers after a round trip).
    fn parallel_reads(&self) -> usize {
        self.pack_writers()
    }
}

/// The backend for a location: a directory, or a remote store with the retry settings from the
/// environment (`SNAP_RETRIES`, `SNAP_IO_TIMEOUT`).
pub fn open(loc: &Location) -> Result<Arc<dyn Backend>> {
    Ok(match loc {
        Location::Local(p) => Arc::new(local::LocalBackend::new(p)),
        remote => Arc::new(remote::RemoteBackend::open(
            remote,
            &remote::RemoteOptions::from_env()?,
        )?),
    })
}

/// Where a pack lives: `data/<first two hex digits>/<id>`.
pub fn pack_path(id: &crate::id::Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}
