//! Bad input and damage: each gets a clear message and its own exit code, never a panic and never
//! wrong bytes written silently.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn wrong_password_missing_repository_and_usage() {
    let env = Env::new(&[]);
    let o = env
        .cmd(&["snapshots"])
        .env("SNAP_PASSWORD", "not it")
        .output()
        .unwrap();
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong password"));
    let o = env
        .cmd(&["snapshots"])
        .env("SNAP_REPOSITORY", env.path("nowhere"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 10, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("snap init"),
        "message says what to do: {}",
        stderr(&o)
    );
    let o = env
        .cmd(&["snapshots"])
        .env_remove("SNAP_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("SNAP_PASSWORD"));
    // A password file works as well as the variable.
    let pf = env.path("pw");
    fs::write(&pf, format!("{PASSWORD}\n")).unwrap();
    let o = env
        .cmd(&["snapshots", "--password-file", pf.to_str().unwrap()])
        .env_remove("SNAP_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = env.run(&["ls", "nosuchsnapshot"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no snapshot matches"));
    let o = env.run(&["backup", env.path("does-not-exist").to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("does-not-exist"));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn unreadable_file_gives_exit_3_and_an_incomplete_snapshot() {
    assert!(
        is_root(),
        "this test runs snap as another user through setpriv: run the suite as root"
    );
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("ok.txt"), b"fine");
    write(&src.join("locked.txt"), b"secret");
    fs::set_permissions(src.join("locked.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    for d in [env.dir.path(), &env.repo, &env.cache, &src] {
        chmod_r("a+rwX", d);
    }
    fs::set_permissions(src.join("locked.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let o = snap_as_nobody(
        &env,
        &["--json".as_ref(), "backup".as_ref(), src.as_os_str()],
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("locked.txt"),
        "path named: {}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["snapshot"]["incomplete"], true);
    assert!(
        v["snapshot"]["errors"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("locked.txt")
    );
    let list = env.ok(&["snapshots"]);
    assert!(list.contains("(incomplete)"), "{list}");
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("ok.txt") && !ls.contains("locked.txt"), "{ls}");
}

#[test]
fn a_failed_pack_write_is_the_error_reported_whichever_walker_meets_it() {
    assert!(
        is_root(),
        "this test runs snap as another user through setpriv: run the suite as root"
    );
    let env = Env::new(&[]);
    let src = env.path("src");
    // Enough directories for every walker to be busy, and enough data for packs to be written
    // while they walk.
    for d in 0..12u64 {
        for f in 0..3u64 {
            write(
                &src.join(format!("d{d:02}/f{f}")),
                &random_bytes(d * 10 + f, 1_000_000),
            );
        }
    }
    for d in [env.dir.path(), &env.repo, &src] {
        chmod_r("a+rwX", d);
    }
    // The user running the backup may take locks but not add packs.
    chmod_r("a-w", &env.repo.join("data"));
    let o = snap_as_nobody(&env, &["backup".as_ref(), src.as_os_str()]);
    chmod_r("u+w", &env.repo.join("data"));
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("data/"),
        "the cause, naming the pack file, not a consequence: {err}"
    );
    assert!(
        !err.contains("interrupted") && !err.contains("pipeline stopped"),
        "{err}"
    );
    assert_no_panic(&o);
    assert!(env.ok(&["snapshots"]).contains("0 snapshot(s)"));
}

#[test]
fn flipped_byte_in_a_pack_stops_restore_naming_pack_and_file() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("victim.bin"), &random_bytes(9, 2_000_000));
    env.backup(&[src.to_str().unwrap()]);
    // The data pack is the large one; flip one byte in the middle of its blobs.
    let pack = largest_file(env.pack_files());
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let mut perm = fs::metadata(&pack).unwrap().permissions();
    perm.set_mode(0o644);
    fs::set_permissions(&pack, perm).unwrap();
    fs::write(&pack, &bytes).unwrap();
    let target = env.path("restore");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(pack_name), "names the pack: {err}");
    assert!(err.contains("victim.bin"), "names the file: {err}");
    // Nothing wrong was written: the restored file holds no bytes that differ from the source
    // except where it was never written (zeros).
    let restored = target
        .join(src.strip_prefix("/").unwrap())
        .join("victim.bin");
    if let Ok(r) = fs::read(&restored) {
        let orig = fs::read(src.join("victim.bin")).unwrap();
        for (i, (a, b)) in r.iter().zip(&orig).enumerate() {
            assert!(a == b || *a == 0, "wrong byte written at {i}");
        }
    }
    let o = env.run(&["check", "--read-data"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains(pack_name));
    let o = env.run(&["cat", "latest", &format!("{}/victim.bin", src.display())]);
    assert_eq!(code(&o), 1);
}

#[test]
fn locks_block_and_stale_locks_are_reported_then_removed() {
    use snap::repo::Repository;
    use snap::repo::lock::{LockGuard, LockInfo, write_lock};
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let repo = Repository::open(
        &env.repo.as_path().into(),
        PASSWORD.as_bytes(),
        &env.path("cache-lib"),
    )
    .unwrap();
    // A live exclusive lock (this test process holds it) blocks a backup: exit 11.
    let guard = LockGuard::take(repo.backend().clone(), repo.key(), true).unwrap();
    let o = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&o)
    );
    drop(guard);
    env.ok(&["backup", src.to_str().unwrap()]);
    // A shared lock of a live process is not stale and must survive `unlock`.
    let live = LockGuard::take(repo.backend().clone(), repo.key(), false).unwrap();
    // A lock left by a dead process: reported with host, pid and age; `unlock` removes it.
    let dead = LockInfo {
        host: snap::hostname(),
        pid: 999_999_999,
        user: "x".into(),
        time: chrono::Utc::now().to_rfc3339(),
        exclusive: true,
        prune: false,
        job: None,
    };
    write_lock(repo.backend().as_ref(), repo.key(), &dead).unwrap();
    let o = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(code(&o), 11);
    assert!(
        stderr(&o).contains("pid 999999999")
            && stderr(&o).contains("stale")
            && stderr(&o).contains("s old"),
        "{}",
        stderr(&o)
    );
    let out = env.json(&["unlock"]);
    assert_eq!(out["removed"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 1);
    drop(live);
    env.ok(&["backup", src.to_str().unwrap()]);
}
