//! Every kind of entry the format stores, backed up and restored, compared by the independent
//! manifest: content, modes, owners, times, symlinks, hard links, xattrs, sparse holes, FIFOs,
//! device nodes, empty files, odd names, a very wide and a very deep directory.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::common::*;

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, libc::makedev(major, minor)) };
    assert_eq!(r, 0, "mknod {path:?}: {}", std::io::Error::last_os_error());
}

pub(crate) fn build_tree(src: &Path) {
    write(&src.join("plain.txt"), b"hello\n");
    write(&src.join("empty"), b"");
    write(&src.join("random.bin"), &random_bytes(1, 3_000_000));
    write(
        &src.join("text.log"),
        &b"line of a log file that compresses well\n".repeat(50_000),
    );
    write(&src.join("dup-a"), &random_bytes(2, 700_000));
    write(&src.join("dup-b"), &random_bytes(2, 700_000));
    fs::set_permissions(src.join("plain.txt"), fs::Permissions::from_mode(0o4751)).unwrap();
    // Hard links: three names, one content.
    write(&src.join("links/orig"), &random_bytes(3, 100_000));
    fs::hard_link(src.join("links/orig"), src.join("links/second")).unwrap();
    fs::hard_link(src.join("links/orig"), src.join("hardlink-elsewhere")).unwrap();
    // Symlinks: relative, absolute, dangling, to a directory.
    symlink("plain.txt", src.join("link-rel")).unwrap();
    symlink("/etc/hostname", src.join("link-abs")).unwrap();
    symlink("does/not/exist", src.join("link-dangling")).unwrap();
    symlink("links", src.join("link-dir")).unwrap();
    // Odd names: newline, invalid UTF-8, spaces, leading dash, unicode.
    write(&src.join("name\nwith newline"), b"nl");
    write(&src.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"latin1");
    write(&src.join(OsStr::from_bytes(b"\xff\xfe bad utf8")), b"bad");
    write(&src.join("-dash and spaces "), b"dash");
    write(&src.join("ünïcødé-日本"), b"unicode");
    // Extended attributes on a file and a directory.
    xattr::set(src.join("plain.txt"), "user.comment", b"kept\0binary\xff").unwrap();
    xattr::set(src.join("links"), "user.dirattr", b"d").unwrap();
    // Sparse: a 4 GiB file with two small data islands and a trailing hole; one all-hole file.
    {
        let f = fs::File::create(src.join("sparse-4g")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"island one", 1 << 20).unwrap();
        f.write_all_at(&random_bytes(4, 100_000), 3 << 30).unwrap();
        f.set_len(4 << 30).unwrap();
        let g = fs::File::create(src.join("sparse-empty")).unwrap();
        g.set_len(10 << 20).unwrap();
    }
    // Special files.
    let fifo = std::ffi::CString::new(src.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o620) }, 0);
    if is_root() {
        mknod(&src.join("chardev"), libc::S_IFCHR, 1, 3);
        mknod(&src.join("blockdev"), libc::S_IFBLK, 7, 200);
        // Owners other than root.
        std::os::unix::fs::lchown(src.join("dup-a"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(src.join("link-rel"), Some(42), Some(43)).unwrap();
    }
    // 100,000 files in one directory.
    let wide = src.join("wide");
    fs::create_dir(&wide).unwrap();
    for i in 0..100_000u32 {
        fs::write(
            wide.join(format!("f{i:06}")),
            if i % 1000 == 0 {
                format!("content {i}")
            } else {
                String::new()
            },
        )
        .unwrap();
    }
    // A 200-level deep path.
    let mut deep = src.join("deep");
    for i in 0..200 {
        deep.push(format!("level{i:03}"));
    }
    write(&deep.join("bottom.txt"), b"the bottom");
    // Directory modes and times, set last so nothing disturbs them.
    fs::create_dir(src.join("private")).unwrap();
    write(&src.join("private/secret"), b"s");
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(src.join("random.bin"), t).unwrap();
    filetime::set_file_mtime(src.join("private"), t).unwrap();
}

/// Backs up the tree of every kind into `env`'s repository, restores it with `--verify` and
/// compares it by the independent manifest; then restores a subtree alone. Returns the source and
/// where it was restored. A sparse file restores sparse.
pub(crate) fn round_trip_every_kind(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.path("src");
    build_tree(&src);
    let b = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(b["snapshot"]["incomplete"], false, "{b}");
    let target = env.path("restore");
    let r = env.json(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert!(
        r["summary"]["verified_files"].as_u64().unwrap() > 100_000,
        "{r}"
    );
    // The snapshot keeps absolute paths, so the source appears below the target at its full path.
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    use std::os::unix::fs::MetadataExt;
    let st = fs::metadata(restored.join("sparse-4g")).unwrap();
    assert!(
        st.blocks() * 512 < 10 << 20,
        "restored sparse file allocates {} blocks",
        st.blocks()
    );
    // Restoring a subpath puts its contents directly into the target.
    let sub = env.path("sub");
    let spec = format!("latest:{}/links", src.display());
    env.ok(&["restore", &spec, "--target", sub.to_str().unwrap()]);
    assert_same_tree(&src.join("links"), &sub);
    (src, restored)
}

#[test]
fn every_kind_round_trips_identically() {
    let env = Env::new(&[]);
    let (src, _) = round_trip_every_kind(&env);
    // Holes were not stored as data: the 4 GiB file costs about its 100 KB of data in the repo.
    let repo_bytes: u64 = env
        .pack_files()
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(repo_bytes < 100 << 20, "repository is {repo_bytes} bytes");

    // ls and cat browse without restoring.
    let ls = env.ok(&["ls", "latest", &format!("{}/links", src.display())]);
    assert!(
        ls.contains("/links/orig") && ls.contains("/links/second"),
        "{ls}"
    );
    let cat = env.run(&["cat", "latest", &format!("{}/random.bin", src.display())]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, fs::read(src.join("random.bin")).unwrap());
    let long = env.ok(&["ls", "--long", "latest", src.to_str().unwrap()]);
    assert!(
        long.lines()
            .any(|l| l.starts_with("-4751") && l.ends_with("plain.txt")),
        "{long}"
    );
}

/// An unchanged entry takes its extended attributes from the parent snapshot without reading
/// them; one whose attributes changed (its change time moved) is read again — set, changed and
/// removed attributes all reach the next snapshot, on files and on directories.
#[test]
fn changed_xattrs_reach_the_next_snapshot() {
    let env = Env::new(&[]);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    xattr::set(src.join("f1"), "user.a", b"one").unwrap();
    xattr::set(src.join("f2"), "user.b", b"two").unwrap();
    env.backup(&[src.to_str().unwrap()]);
    xattr::set(src.join("f0"), "user.new", b"added").unwrap();
    xattr::set(src.join("f1"), "user.a", b"changed").unwrap();
    xattr::remove(src.join("f2"), "user.b").unwrap();
    xattr::set(src.join("d"), "user.dir", b"on a directory").unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let got = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(manifest(&src), manifest(&got));
    assert_eq!(
        xattr::get(got.join("f0"), "user.new").unwrap().as_deref(),
        Some(&b"added"[..])
    );
    assert_eq!(
        xattr::get(got.join("f1"), "user.a").unwrap().as_deref(),
        Some(&b"changed"[..])
    );
    assert_eq!(xattr::get(got.join("f2"), "user.b").unwrap(), None);
    assert_eq!(
        xattr::get(got.join("d"), "user.dir").unwrap().as_deref(),
        Some(&b"on a directory"[..])
    );
}
