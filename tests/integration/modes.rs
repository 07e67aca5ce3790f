//! Repository and cache files are private: after `init`, `backup`, `key add` and a checked
//! subset (which writes the verification record), nothing under the repository or the cache is
//! readable by group or others, whatever the caller's umask; packs are read-only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::common::*;

/// Every entry under `root` whose mode lets group or others in.
fn readable_by_others(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_symlink())
        .filter_map(|e| {
            let mode = e.metadata().ok()?.permissions().mode();
            (mode & 0o077 != 0).then(|| format!("{:o} {}", mode & 0o7777, e.path().display()))
        })
        .collect()
}

#[test]
fn repository_and_cache_are_private_to_their_owner() {
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    let (repo, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    let src = dir.path().join("src");
    write(&src.join("a.txt"), b"some data\n");
    write(&src.join("big.bin"), &random_bytes(3, 2_000_000));
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(bin());
        c.args(args)
            .env("SNAP_REPOSITORY", &repo)
            .env("SNAP_PASSWORD", PASSWORD)
            .env("SNAP_CACHE_DIR", &cache)
            .env("SNAP_NEW_PASSWORD", "another one")
            .env_remove("SNAP_PASSWORD_FILE");
        // SAFETY: umask is async-signal-safe; the usual, permissive one.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "snap {args:?}: {}", stderr(&o));
    };
    run(&["init", "--kdf-memory-kib", "19456"]);
    run(&["backup", src.to_str().unwrap()]);
    run(&["key", "add", "--kdf-memory-kib", "19456"]);
    run(&["check", "--read-data-subset", "50%"]);
    assert_eq!(readable_by_others(&repo), Vec::<String>::new());
    assert_eq!(readable_by_others(&cache), Vec::<String>::new());
    let packs: Vec<_> = walk_files(&repo.join("data"));
    assert!(!packs.is_empty());
    for p in packs {
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "pack {p:?} is read-only once written");
    }

    // A cache directory left open by an older version (or by hand) is closed on the next run.
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
    run(&["snapshots"]);
    assert_eq!(readable_by_others(&cache), Vec::<String>::new());
}

#[test]
fn without_home_the_cache_is_never_in_a_shared_tmp_directory() {
    assert!(
        is_root(),
        "this test runs snap as nobody through setpriv: run the suite as root"
    );
    // What an older snap may have left, so the check below sees only this run.
    let _ = fs::remove_dir_all("/tmp/.cache/snap");
    let env = Env::new(&[]);
    for d in [env.dir.path(), &env.repo] {
        chmod_r("a+rwX", d);
    }
    // nobody's home in the password database (/nonexistent on Debian) is what snap falls back
    // to; before, it was /tmp/.cache/snap, where any local user could plant or read the index.
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .arg("snapshots")
        .env("SNAP_REPOSITORY", &env.repo)
        .env("SNAP_PASSWORD", PASSWORD)
        .env_remove("SNAP_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME")
        .output()
        .unwrap();
    assert_no_panic(&o);
    assert!(
        !stderr(&o).contains("/tmp"),
        "cache under /tmp: {}",
        stderr(&o)
    );
    assert!(
        !Path::new("/tmp/.cache/snap").exists(),
        "a cache was made in /tmp"
    );
    assert!(
        stderr(&o).contains("/nonexistent/.cache/snap"),
        "the error names the cache it could not make: {}",
        stderr(&o)
    );
}
