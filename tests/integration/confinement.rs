//! Restore stays inside its target: symlinks planted in the target (at a directory, at a file,
//! in a parent, dangling) and a directory swapped for a symlink while the restore runs never
//! redirect a write. A sentinel directory outside the target is compared by manifest before and
//! after. Also: a non-root restore drops setuid bits, and a failed restore leaves no file that
//! claims a size it has not got.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;

/// A sentinel tree standing for `/etc`: what an attacker would like overwritten.
fn sentinel(env: &Env) -> std::path::PathBuf {
    let s = env.path("sentinel");
    write(&s.join("passwd"), b"root:x:0:0\n");
    write(&s.join("sub/file"), b"keep me\n");
    s
}

#[test]
fn planted_symlinks_in_the_target_are_replaced_not_followed() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("a/passwd"), b"from the snapshot: a/passwd\n");
    write(&src.join("f"), b"from the snapshot: f\n");
    write(&src.join("x/y/z"), b"from the snapshot: x/y/z\n");
    write(&src.join("dangling"), b"from the snapshot: dangling\n");
    write(&src.join("sub"), b"from the snapshot: sub\n");
    env.backup(&[src.to_str().unwrap()]);
    let snap_path = format!("latest:{}", src.display());

    let s = sentinel(&env);
    let before = manifest(&s);
    let t = env.path("target");
    fs::create_dir_all(&t).unwrap();
    // At a directory, at a file, in a parent, dangling, and at a file pointing at a directory.
    symlink(&s, t.join("a")).unwrap();
    symlink(s.join("passwd"), t.join("f")).unwrap();
    symlink(&s, t.join("x")).unwrap();
    symlink(s.join("created-through-dangling"), t.join("dangling")).unwrap();
    symlink(s.join("sub"), t.join("sub")).unwrap();

    let o = env.run(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        manifest(&s),
        before,
        "the sentinel outside the target changed"
    );
    assert!(!s.join("created-through-dangling").exists());
    // The planted links were replaced by what the snapshot holds.
    assert_same_tree(&src, &t);
    assert!(
        !fs::symlink_metadata(t.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_directory_in_the_way_of_a_file_is_refused() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("f"), b"file\n");
    env.backup(&[src.to_str().unwrap()]);
    let t = env.path("target");
    write(&t.join("f/keep"), b"the user's\n");
    let snap_path = format!("latest:{}", src.display());
    let o = env.run(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("a directory is in the way"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(t.join("f/keep")).unwrap(), b"the user's\n");
}

#[test]
fn a_directory_swapped_for_a_symlink_during_restore_changes_nothing_outside() {
    let env = Env::new(&[]);
    let src = env.path("src");
    for d in 0..150 {
        for f in 0..8 {
            write(
                &src.join(format!("d{d:03}/s/f{f}")),
                format!("{d}/{f}\n").as_bytes(),
            );
        }
    }
    env.backup(&[src.to_str().unwrap()]);
    let snap_path = format!("latest:{}", src.display());
    let s = sentinel(&env);
    let before = manifest(&s);
    let t = env.path("target");
    fs::create_dir_all(&t).unwrap();

    // The attacker: as soon as a directory appears in the target, move it aside and put a
    // symlink to the sentinel in its place (both below it and at it).
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, t2, s2) = (stop.clone(), t.clone(), s.clone());
    let attacker = std::thread::spawn(move || {
        let mut swaps = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            for d in 0..150 {
                for p in [t2.join(format!("d{d:03}/s")), t2.join(format!("d{d:03}"))] {
                    if swap(&p, &s2) {
                        swaps += 1;
                    }
                }
            }
        }
        swaps
    });
    let o = env.run(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    assert!(swaps > 0, "the attacker never raced the restore");
    assert_no_panic(&o);
    assert_eq!(
        manifest(&s),
        before,
        "the sentinel outside the target changed (exit {}, {swaps} swaps): {}",
        code(&o),
        stderr(&o)
    );
}

/// Moves directory `p` aside and puts a symlink to `to` in its place; false if `p` is not a
/// directory (yet).
fn swap(p: &Path, to: &Path) -> bool {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let aside = p.with_extension("moved");
            fs::rename(p, &aside).is_ok() && symlink(to, p).is_ok()
        }
        _ => false,
    }
}

#[test]
fn a_non_root_restore_drops_setuid_bits() {
    assert!(
        is_root(),
        "this test runs snap as nobody through setpriv: run the suite as root"
    );
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("tool"), b"#!/bin/sh\n");
    write(&src.join("plain"), b"x\n");
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    for d in [env.dir.path(), &env.repo, &env.cache] {
        chmod_r("a+rwX", d);
    }
    let t = env.path("target-nobody");
    fs::create_dir_all(&t).unwrap();
    fs::set_permissions(&t, fs::Permissions::from_mode(0o777)).unwrap();
    let snap_path = format!("latest:{}", src.display());
    let o = snap_as_nobody(
        &env,
        &[
            "restore".as_ref(),
            snap_path.as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mode = fs::metadata(t.join("tool")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "setuid/setgid dropped, the rest kept");
    assert!(
        stderr(&o).contains("setuid/setgid bits not restored on 1"),
        "{}",
        stderr(&o)
    );
    // As root the bits are restored.
    let t = env.path("target-root");
    env.ok(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    let mode = fs::metadata(t.join("tool")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o6755);
}

#[test]
fn a_failed_restore_leaves_no_file_claiming_its_full_size() {
    let env = Env::new(&["--pack-size-mib", "1"]);
    let src = env.path("src");
    for i in 0..6u64 {
        write(
            &src.join(format!("big{i}")),
            &random_bytes(70 + i, 3_000_000),
        );
    }
    env.backup(&[src.to_str().unwrap()]);
    // Damage a data pack in its middle: a blob fails authentication during the restore.
    let pack = largest_file(env.pack_files());
    modify(&pack, |b| {
        let m = b.len() / 2;
        b[m] ^= 0xff;
    });
    let t = env.path("target");
    let snap_path = format!("latest:{}", src.display());
    let o = env.run(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    assert_ne!(code(&o), 0, "a damaged blob must fail the restore");
    assert_no_panic(&o);
    for f in walk_files(&t) {
        let name = f.file_name().unwrap();
        let want = fs::metadata(src.join(name)).unwrap().len();
        let got = fs::metadata(&f).unwrap().len();
        assert!(
            got == want && fs::read(&f).unwrap() == fs::read(src.join(name)).unwrap(),
            "{f:?} is left with {got} bytes (the snapshot's has {want}) and wrong content"
        );
    }
}
