//! The size scan: how many files and bytes a backup will meet, counted ahead of it by a thread of
//! its own, so the progress bar can show percent done and the time left (restic scans the same
//! way). It only lists directories and `lstat`s entries — no file is opened — and it honours the
//! backup's includes and excludes, so its total is what the walkers will see unless the tree changes meanwhile
//! (the bar then ends a little short of or past 100%, which is harmless). It stops as soon as
//! `stop` is raised: a backup that ends first does not wait for it.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BackupProgress, Selection};

pub fn scan(paths: &[PathBuf], select: &Selection, progress: &BackupProgress, stop: &AtomicBool) {
    for root in paths {
        let walk = walkdir::WalkDir::new(root)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !select.excluded(e.path()));
        for entry in walk {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // Unreadable entries are the walkers' to report; the scan just skips them.
            let Ok(entry) = entry else { continue };
            // The walkers count files and other non-directories, the ones the includes take.
            if entry.file_type().is_dir() || !select.included_under(root, entry.path()) {
                continue;
            }
            progress.total_files.fetch_add(1, Ordering::Relaxed);
            if entry.file_type().is_file()
                && let Ok(md) = entry.metadata()
            {
                progress.total_bytes.fetch_add(md.size(), Ordering::Relaxed);
            }
        }
    }
    progress.scanned.store(true, Ordering::Relaxed);
}
