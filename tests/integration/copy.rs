//! `snap copy`, `snap init --from-repo`, `snap backup --copy-to` and `snap status`: copies restore
//! identical to their sources (independent manifest), only missing blobs move, a killed copy
//! resumes, a failed `--copy-to` leaves the primary snapshot and exits 16.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

const OTHER_PASSWORD: &str = "another password";

/// Source files: a few incompressible files, a compressible one, a symlink, an empty dir.
fn make_source(dir: &Path, seed: u64) {
    make_files(&dir.join("data"), seed..seed + 4, 700_000);
    write(
        &dir.join("text/a.txt"),
        &b"hello snap copy\n".repeat(20_000),
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let _ = std::os::unix::fs::symlink("text/a.txt", dir.join("link"));
}

/// `snap snapshots --json` of `env` (with `password`).
fn snapshots(env: &Env, password: &str) -> Vec<serde_json::Value> {
    let o = env
        .cmd(&["--json", "snapshots"])
        .env("SNAP_PASSWORD", password)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `snap copy` into `dst` from `src`; returns the output.
fn copy(dst: &Env, dst_password: &str, src: &Env, extra: &[&str]) -> Output {
    let mut args = vec!["--json", "copy", "--from-repo", src.repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = dst
        .cmd(&args)
        .env("SNAP_PASSWORD", dst_password)
        .output()
        .unwrap();
    assert_no_panic(&o);
    o
}

fn copy_ok(dst: &Env, dst_password: &str, src: &Env, extra: &[&str]) -> serde_json::Value {
    let o = copy(dst, dst_password, src, extra);
    assert!(o.status.success(), "copy failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A second environment whose repository is made from `src`'s (shared ids).
fn related(src: &Env, extra: &[&str]) -> Env {
    let dst = Env::uninit();
    let mut args = vec![
        "init",
        "--kdf-memory-kib",
        "19456",
        "--from-repo",
        src.repo.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = dst.json(&args);
    assert!(out["ids_shared_with"].is_string(), "{out}");
    dst
}

fn restore_and_compare(env: &Env, password: &str, id: &str, src: &Path) {
    let target = env.path(&format!("restore-{id}"));
    let o = env
        .cmd(&["-q", "restore", id, "--target", target.to_str().unwrap()])
        .env("SNAP_PASSWORD", password)
        .output()
        .unwrap();
    assert!(o.status.success(), "restore: {}", stderr(&o));
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
    std::fs::remove_dir_all(&target).unwrap();
}

fn config_bytes_differ_but_trees_match(src: &Env, dst: &Env) {
    let s = snapshots(src, PASSWORD);
    let d = snapshots(dst, PASSWORD);
    assert_eq!(s.len(), d.len());
    for (a, b) in s.iter().zip(&d) {
        assert_eq!(
            a["snapshot"]["tree"], b["snapshot"]["tree"],
            "shared ids keep trees"
        );
        assert_eq!(b["snapshot"]["original"], a["id"]);
        assert_ne!(
            a["id"], b["id"],
            "a copy is its own file (own key, original recorded)"
        );
    }
}

#[test]
fn related_repositories_share_ids_and_copy_only_missing_blobs() {
    let src = Env::new(&[]);
    let day1 = src.path("day1");
    make_source(&day1, 1);
    let s1 = src.backup_id(&day1);
    let dst = related(&src, &[]);
    // Its own repository id, key and password file; the same chunker.
    assert_ne!(
        std::fs::read(src.only_file("keys")).unwrap(),
        std::fs::read(dst.only_file("keys")).unwrap()
    );
    let out = copy_ok(&dst, PASSWORD, &src, &[]);
    assert_eq!(out["mode"], "shared_ids", "{out:#}");
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(1), Some(0))
    );
    let first_raw = out["stats"]["bytes_added_raw"].as_u64().unwrap();
    // Re-encrypted with the destination's key: no pack is the source's bytes.
    let src_packs: Vec<Vec<u8>> = src
        .pack_files()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for p in dst.pack_files() {
        assert!(!src_packs.contains(&std::fs::read(&p).unwrap()));
    }

    // Day 2: one file changes, one is added; only those blobs move.
    let day2 = src.path("day2");
    make_source(&day2, 1);
    write(&day2.join("data/f2"), &random_bytes(99, 700_000));
    write(&day2.join("data/new"), &random_bytes(100, 300_000));
    let s2 = src.backup_id(&day2);
    // Same paths again: its parent is s2.
    let s3 = src.backup_id(&day2);
    let out = copy_ok(&dst, PASSWORD, &src, &[]);
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(2), Some(1))
    );
    // Every tree is read (to find what it names); of the other blobs only the missing ones.
    let st = &out["stats"];
    let (read, trees, added) = (
        st["blobs_read"].as_u64().unwrap(),
        st["trees"].as_u64().unwrap(),
        st["blobs_added"].as_u64().unwrap(),
    );
    assert!(read - trees <= added, "{out:#}");
    // Day 2 stores the changed and the new file (1 MB), not day 1's 3.1 MB again.
    let raw = st["bytes_added_raw"].as_u64().unwrap();
    assert!(
        added >= 2 && raw * 2 < first_raw,
        "day 2 {raw} bytes, day 1 {first_raw}"
    );
    config_bytes_differ_but_trees_match(&src, &dst);

    // Nothing left to copy; the copies restore identical and check clean.
    let out = copy_ok(&dst, PASSWORD, &src, &[]);
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(out["stats"]["blobs_read"], 0);
    dst.assert_check_clean("after copies");
    let d = snapshots(&dst, PASSWORD);
    let copy_of = |s: &str| {
        d.iter().find(|x| x["snapshot"]["original"] == s).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    restore_and_compare(&dst, PASSWORD, &copy_of(&s1), &day1);
    restore_and_compare(&dst, PASSWORD, &copy_of(&s2), &day2);
    // The copy of s3 names the copy of s2 as its parent, not a file of the source.
    let c3 = d
        .iter()
        .find(|x| x["snapshot"]["original"] == s3.as_str())
        .unwrap();
    assert_eq!(
        c3["snapshot"]["parent"].as_str(),
        Some(copy_of(&s2).as_str())
    );
    let c1 = d
        .iter()
        .find(|x| x["snapshot"]["original"] == s1.as_str())
        .unwrap();
    assert!(c1["snapshot"]["parent"].is_null());

    // A backup into the copy deduplicates against what was copied (same chunker, same ids).
    let b = dst.backup(&[day2.to_str().unwrap()]);
    assert_eq!(b["snapshot"]["summary"]["files_new"], 0, "{b:#}");
    let b = dst.backup(&["--full", day2.to_str().unwrap()]);
    // Every chunk is found (same chunker, same ids); only trees of directories whose metadata
    // moved meanwhile (the shared scratch root) may be new.
    let raw = b["snapshot"]["summary"]["bytes_added_raw"]
        .as_u64()
        .unwrap();
    assert!(raw < 64 * 1024, "full backup stored {raw} bytes: {b:#}");
}

#[test]
fn unrelated_repositories_rekey_ids_and_rewrite_trees() {
    let src = Env::new(&[]);
    let tree = src.path("src");
    make_source(&tree, 7);
    let s1 = src.backup_id(&tree);
    write(&src.path("pw"), OTHER_PASSWORD.as_bytes());
    // Destination with its own key and password; the source password from a file.
    let dst = Env::uninit();
    let o = dst
        .cmd(&[
            "init",
            "--kdf-memory-kib",
            "19456",
            "--chunker-kib",
            "64,256,1024",
        ])
        .env("SNAP_PASSWORD", OTHER_PASSWORD)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let pw_file = src.path("src-pw");
    write(&pw_file, PASSWORD.as_bytes());
    let out = copy_ok(
        &dst,
        OTHER_PASSWORD,
        &src,
        &["--from-password-file", pw_file.to_str().unwrap(), "latest"],
    );
    assert_eq!(out["mode"], "rekeyed", "{out:#}");
    assert_eq!(out["copied"], 1);
    let d = snapshots(&dst, OTHER_PASSWORD);
    let s = snapshots(&src, PASSWORD);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["snapshot"]["original"], s1.as_str());
    assert_ne!(
        d[0]["snapshot"]["tree"], s[0]["snapshot"]["tree"],
        "trees rewritten"
    );
    let did = d[0]["id"].as_str().unwrap().to_string();
    restore_and_compare(&dst, OTHER_PASSWORD, &did, &tree);
    let o = dst
        .cmd(&["--json", "check", "--read-data"])
        .env("SNAP_PASSWORD", OTHER_PASSWORD)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "check: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Copied again: skipped. Copied back into the source: recognised as its own snapshot.
    let out = copy_ok(
        &dst,
        OTHER_PASSWORD,
        &src,
        &["--from-password-file", pw_file.to_str().unwrap()],
    );
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    let back_pw = dst.path("dst-pw");
    write(&back_pw, OTHER_PASSWORD.as_bytes());
    let o = src
        .cmd(&[
            "--json",
            "copy",
            "--from-repo",
            dst.repo.to_str().unwrap(),
            "--from-password-file",
            back_pw.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let back: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (back["copied"].as_u64(), back["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(back["snapshots"][0]["copy"], s1.as_str());

    // Filters: a host nobody has selects nothing; a wrong password for the source is exit 12.
    let out = copy_ok(
        &dst,
        OTHER_PASSWORD,
        &src,
        &[
            "--from-password-file",
            pw_file.to_str().unwrap(),
            "--host",
            "nobody",
        ],
    );
    assert_eq!(out["snapshots"].as_array().unwrap().len(), 0);
    let o = copy(&dst, OTHER_PASSWORD, &src, &[]);
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    // Copying a repository into itself is refused.
    let o = src
        .cmd(&["copy", "--from-repo", src.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "a usage error");
    assert!(stderr(&o).contains("same repository"), "{}", stderr(&o));
}

#[test]
fn killed_copy_resumes_and_moves_only_what_is_missing() {
    let src = Env::new(&["--pack-size-mib", "1", "--compression", "0"]);
    let tree = src.path("big");
    make_files(&tree, 0..48, 1_500_000);
    let sid = src.backup_id(&tree);
    let dst = related(&src, &["--pack-size-mib", "1"]);
    let blobs = |env: &Env| -> u64 {
        let r = env.open_lib();
        r.index()
            .pack_infos()
            .unwrap()
            .values()
            .map(|(_, n)| *n as u64)
            .sum()
    };
    let total = blobs(&src);
    assert!(total > 40, "{total} blobs");
    // Start a copy and SIGKILL it once a few packs are in the destination.
    let mut child = dst
        .cmd(&["-q", "copy", "--from-repo", src.repo.to_str().unwrap()])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let packs = dst.pack_files().len();
        if packs >= 3 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("copy ended ({st}) before it could be killed; packs: {packs}");
        }
        assert!(start.elapsed().as_secs() < 120, "no pack appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
    assert!(
        dst.snapshot_ids().is_empty(),
        "the snapshot is written last"
    );
    // The destination is valid (only unreferenced packs); the lock left behind is stale.
    dst.assert_check_clean("after the kill");
    let survived = blobs(&dst);
    assert!(survived > 0 && survived < total, "{survived} of {total}");
    let out = copy_ok(&dst, PASSWORD, &src, &[]);
    assert_eq!(out["copied"], 1, "{out:#}");
    // Only what did not survive is stored, and nothing that did is read again.
    let st = &out["stats"];
    let (added, read, trees) = (
        st["blobs_added"].as_u64().unwrap(),
        st["blobs_read"].as_u64().unwrap(),
        st["trees"].as_u64().unwrap(),
    );
    assert_eq!(added + survived, total, "{out:#}");
    assert!(read <= total - survived + trees, "{out:#}");
    let d = snapshots(&dst, PASSWORD);
    assert_eq!(d[0]["snapshot"]["original"], sid.as_str());
    dst.assert_check_clean("after the resume");
    dst.assert_restores(d[0]["id"].as_str().unwrap(), &tree);
}

#[test]
fn copy_to_failure_keeps_the_primary_snapshot_and_exits_16() {
    let env = Env::new(&[]);
    let tree = env.path("src");
    make_source(&tree, 3);
    let good = Env::new(&[]);
    let missing = env.path("no-such-repo");
    let o = env
        .cmd(&[
            "--json",
            "backup",
            tree.to_str().unwrap(),
            "--copy-to",
            missing.to_str().unwrap(),
            "--copy-to",
            good.repo.to_str().unwrap(),
            "--copy-to",
            "s3://bucket/repo",
            "--s3-endpoint",
            "http://127.0.0.1:9159",
        ])
        .env("SNAP_RETRIES", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_no_panic(&o);
    let err = stderr(&o);
    assert_eq!(code(&o), 16, "{err}");
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = out["id"].as_str().unwrap();
    // The primary snapshot is there and complete; the good copy too.
    assert_eq!(env.snapshot_ids(), vec![id.to_string()]);
    env.assert_restores(id, &tree);
    let g = snapshots(&good, PASSWORD);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["snapshot"]["original"], id);
    let copies = out["copies"].as_array().unwrap();
    assert_eq!(
        copies.iter().map(|c| c["ok"] == true).collect::<Vec<_>>(),
        [false, true, false]
    );
    // Each failure says which copy is missing and how to retry.
    assert!(
        err.contains("MISSING from") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("MISSING from s3://bucket/repo"), "{err}");
    assert!(
        err.contains(&format!("copy --from-repo {} {id}", env.repo.display())),
        "{err}"
    );
    assert!(!err.contains(PASSWORD) && !err.contains("test@"), "{err}");
    // The retry it names works.
    let o = Command::new(bin())
        .args([
            "-r",
            good.repo.to_str().unwrap(),
            "copy",
            "--from-repo",
            env.repo.to_str().unwrap(),
            id,
        ])
        .env("SNAP_PASSWORD", PASSWORD)
        .env("SNAP_CACHE_DIR", &good.cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped"));
}

#[test]
fn three_two_one_with_copy_to_s3_and_status() {
    let moto = crate::servers::moto();
    let bucket = moto.bucket("copy-offsite");
    let mut env = Env::new(&[]);
    env.vars = moto.vars.clone();
    let tree = env.path("src");
    make_source(&tree, 11);
    let s3 = format!("s3://{bucket}/snap");
    let s3 = s3.as_str();
    let run = |args: &[&str]| {
        let o = env.cmd(args).output().unwrap();
        assert_no_panic(&o);
        o
    };
    // Before any offsite copy status says so (exit 1).
    env.backup_id(&tree);
    let o = run(&["status"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("NO OFFSITE COPY"));
    // The offsite repository shares ids with the local one; the next backup lands in both.
    let o = run(&[
        "-r",
        s3,
        "init",
        "--kdf-memory-kib",
        "19456",
        "--from-repo",
        env.repo.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["--json", "backup", tree.to_str().unwrap(), "--copy-to", s3]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["copies"][0]["ok"], true, "{out:#}");
    let id = out["id"].as_str().unwrap().to_string();
    // Status over both: one group, two repositories, offsite present (exit 0).
    let o = run(&["--json", "status", "--also", s3]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let repos = st["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2);
    assert_eq!(
        (repos[0]["offsite"].as_bool(), repos[1]["offsite"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(repos[0]["groups"][0]["snapshots"], 2);
    assert_eq!(repos[1]["groups"][0]["snapshots"], 1);
    let cov = &st["coverage"][0];
    assert_eq!(
        (cov["copies"].as_u64(), cov["offsite"].as_bool()),
        (Some(2), Some(true)),
        "{st:#}"
    );
    assert!(cov["newest_offsite_age_secs"].as_i64().unwrap() < 600);
    // The old snapshot is copied too, then the offsite copy restores identical.
    let o = run(&[
        "-r",
        s3,
        "--json",
        "copy",
        "--from-repo",
        env.repo.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (c["copied"].as_u64(), c["skipped"].as_u64()),
        (Some(1), Some(1)),
        "{c:#}"
    );
    let o = run(&["-r", s3, "--json", "snapshots"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let copy_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot"]["original"] == id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = env.path("from-s3");
    let o = run(&[
        "-r",
        s3,
        "-q",
        "restore",
        &copy_id,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&tree, &target.join(tree.strip_prefix("/").unwrap()));
    let o = run(&["-r", s3, "--json", "check", "--read-data"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn copy_takes_shared_locks_on_both_repositories() {
    let src = Env::new(&[]);
    let tree = src.path("src");
    make_source(&tree, 21);
    src.backup_id(&tree);
    let dst = related(&src, &[]);
    for (holder, what) in [(&src, "source"), (&dst, "destination")] {
        // An exclusive lock (a forget, a key removal) on either side refuses the copy (exit 11)
        // before anything is written.
        let r = holder.open_lib();
        let guard = snap::repo::lock::LockGuard::take(r.backend().clone(), r.key(), true).unwrap();
        let before = dst.snapshot_ids();
        let o = copy(&dst, PASSWORD, &src, &[]);
        assert_eq!(code(&o), 11, "{what}: {}", stderr(&o));
        assert_eq!(dst.snapshot_ids(), before);
        drop(guard);
        // A shared one (a backup, a restore) does not.
        let shared =
            snap::repo::lock::LockGuard::take(r.backend().clone(), r.key(), false).unwrap();
        let out = copy_ok(&dst, PASSWORD, &src, &[]);
        assert_eq!(
            out["copied"].as_u64().unwrap() + out["skipped"].as_u64().unwrap(),
            1
        );
        drop(shared);
    }
    // The copy released its locks: none is left on either side.
    for env in [&src, &dst] {
        assert!(walk_files(&env.repo.join("locks")).is_empty());
    }
}

#[test]
fn init_from_repo_shares_ids_and_chunker_but_not_the_key_or_password() {
    let src = Env::new(&[
        "--chunker-kib",
        "64,256,1024",
        "--db-chunker-kib",
        "8,16,64",
    ]);
    let pw = src.path("src-pw");
    write(&pw, PASSWORD.as_bytes());
    let dst = Env::uninit();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--kdf-memory-kib",
            "19456",
            "--from-repo",
            src.repo.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = dst
            .cmd(&args)
            .env("SNAP_PASSWORD", OTHER_PASSWORD)
            .output()
            .unwrap();
        assert_no_panic(&o);
        o
    };
    // Chunker options contradict --from-repo (usage, exit 2); without --from-password-file the
    // new password is tried on the source (wrong: exit 12). Neither creates anything.
    assert_eq!(code(&init(&["--chunker-kib", "128,512,2048"])), 2);
    let o = init(&[]);
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    assert!(!dst.repo.join("config").exists());
    let o = init(&[
        "--from-password-file",
        pw.to_str().unwrap(),
        "--compression",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let open = |env: &Env, password: &str| {
        snap::repo::Repository::open(
            &env.repo.as_path().into(),
            password.as_bytes(),
            &env.path("cache-lib"),
        )
    };
    let (s, d) = (
        open(&src, PASSWORD).unwrap(),
        open(&dst, OTHER_PASSWORD).unwrap(),
    );
    assert!(s.key().shares_id_key(d.key()));
    assert_ne!(
        *s.key().to_bytes(),
        *d.key().to_bytes(),
        "own encryption key"
    );
    assert_ne!(s.config().id, d.config().id, "own repository id");
    assert_eq!(s.config().chunker, d.config().chunker);
    assert_eq!(s.config().db_chunker(), d.config().db_chunker());
    assert_eq!(d.config().compression, 0, "its own settings otherwise");
    // Its own passwords: the source's does not open it.
    assert!(matches!(
        open(&dst, PASSWORD),
        Err(snap::error::Error::WrongPassword(_))
    ));
}
