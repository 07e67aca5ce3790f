//! The local file system backend. Writes go to a temporary file in the target directory, are
//! fsynced, renamed into place and the directory fsynced, so a file either exists whole or not at
//! all, whatever instant the process is killed. Everything is private to the owner
//! ([`crate::private`]): directories 0700, files 0600 while written, packs 0400 once in place.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Backend;
use crate::direct;
use crate::error::{Error, Result};
use crate::private;

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (nothing is created until a write or `init_layout`).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Creates the repository's directories (`data/00` … `data/ff` up front, as restic does, so
    /// writers never race to create them).
    pub fn create_layout(&self) -> Result<()> {
        for d in ["keys", "snapshots", "locks", "data"] {
            let p = self.full(d);
            private::create_dir_all(&p).map_err(|e| Error::io("cannot create", &p, e))?;
        }
        for i in 0..=255u8 {
            let p = self.full(&format!("data/{i:02x}"));
            private::create_dir_all(&p).map_err(|e| Error::io("cannot create", &p, e))?;
        }
        Ok(())
    }
}

/// Writes a large new file around the page cache (see [`crate::direct`]), then fsyncs it. Any
/// failure (a file system without O_DIRECT, such as tmpfs) makes the caller fall back to a
/// buffered write.
fn write_direct(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    const BOUNCE: usize = 1024 * 1024;
    if bytes.len() < BOUNCE {
        return Err(std::io::Error::other("small file: buffered write"));
    }
    let direct = direct::open_direct(path, true)?;
    let buffered = OpenOptions::new().write(true).open(path)?;
    // An aligned source (a pack buffer) is written in place and needs only a page for its tail.
    let bounce = if (bytes.as_ptr() as usize).is_multiple_of(direct::ALIGN) {
        direct::ALIGN
    } else {
        BOUNCE
    };
    let mut w = direct::SequentialWriter::new(Some(direct), buffered, bounce)?;
    w.write_at(bytes, 0)?;
    w.finish()?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync directory", dir, e))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let p = self.full(path);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("cannot stat", p, e)),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let p = self.full(path);
        fs::read(&p).map_err(|e| Error::io("cannot read", p, e))
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.full(path);
        let f = File::open(&p).map_err(|e| Error::io("cannot open", &p, e))?;
        // `len` comes from a pack header or the index: never allocate past the file's end.
        let size = f
            .metadata()
            .map_err(|e| Error::io("cannot stat", &p, e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(
                path,
                format!("{len} bytes at offset {offset} lie beyond its end ({size} bytes)"),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("cannot read", &p, e))?;
        Ok(buf)
    }

    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        // Starts the reads now so several are in flight while a worker decrypts the previous
        // blobs; failure only loses the hint.
        if let Ok(f) = File::open(self.full(path)) {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; fadvise only reads its arguments.
            unsafe {
                libc::posix_fadvise(
                    f.as_raw_fd(),
                    offset as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
        }
    }

    fn size(&self, path: &str) -> Result<u64> {
        let p = self.full(path);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| Error::io("cannot stat", p, e))
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let p = self.full(path);
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        private::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd)?;
        let tmp = dir.join(format!(".tmp-{}", hex::encode(rnd)));
        let res = write_direct(&tmp, bytes)
            .or_else(|_| {
                let _ = fs::remove_file(&tmp);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(private::FILE_MODE)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()
            })
            .and_then(|()| {
                // Packs are never modified: read-only once written (other files are removed later).
                if path.starts_with("data/") {
                    fs::set_permissions(&tmp, fs::Permissions::from_mode(private::PACK_MODE))?;
                }
                Ok(())
            });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write", &tmp, e));
        }
        fs::rename(&tmp, &p).map_err(|e| Error::io("cannot rename into", &p, e))?;
        sync_dir(&dir)
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let base = self.full(dir);
        let mut out = Vec::new();
        if !base.exists() {
            return Ok(out);
        }
        // A file removed while the directory is read (a lock released, a pack pruned) is simply
        // not listed.
        let gone = |e: &walkdir::Error| e.io_error().map(|i| i.kind()) == Some(ErrorKind::NotFound);
        for entry in walkdir::WalkDir::new(&base).min_depth(1) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if gone(&e) => continue,
                Err(e) => {
                    let p = e.path().unwrap_or(&base).to_path_buf();
                    return Err(Error::io("cannot list", p, e.into()));
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if name.starts_with(".tmp-") {
                continue;
            }
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(Error::io("cannot stat", entry.path(), e.into())),
            };
            if let Ok(rel) = entry.path().strip_prefix(&self.root) {
                out.push((rel.to_string_lossy().into_owned(), size));
            }
        }
        out.sort();
        Ok(out)
    }

    fn init_layout(&self) -> Result<()> {
        self.create_layout()
    }

    fn remove(&self, path: &str) -> Result<()> {
        let p = self.full(path);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("cannot remove", p, e)),
        }
    }
}
