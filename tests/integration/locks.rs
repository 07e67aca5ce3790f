//! Locks that mean something: key removals exclude each other, `unlock` never removes a live
//! process's lock (`--remove-all` included), and a backup whose lock cannot be refreshed stops
//! with its own error instead of running on unprotected.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn key_ids(env: &Env) -> Vec<String> {
    let list = env.json(&["key", "list"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_key_removals_at_once_never_leave_the_repository_without_a_key() {
    let mut both_ran = 0;
    for round in 0..50 {
        let env = Env::new(&[]);
        let first = key_ids(&env);
        env.cmd(&["key", "add", "--kdf-memory-kib", "19456"])
            .env("SNAP_NEW_PASSWORD", "second password")
            .output()
            .map(|o| assert_eq!(code(&o), 0, "{}", stderr(&o)))
            .unwrap();
        let all = key_ids(&env);
        let second: Vec<&String> = all.iter().filter(|k| !first.contains(k)).collect();
        let (a, b) = (first[0].clone(), second[0].clone());
        // Unreadable bytes in keys/ (a stray file): every `key remove` reads all of keys/, so
        // this widens the window in which two removals can both see "another key left".
        write(&env.repo.join("keys/stray"), &random_bytes(round, 24 << 20));
        // Each removes the other's key while opened with its own.
        let remove = |password: &str, victim: &str| {
            env.cmd(&["key", "remove", victim])
                .env("SNAP_PASSWORD", password)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let p1 = remove(PASSWORD, &b);
        let p2 = remove("second password", &a);
        let (o1, o2) = (
            p1.wait_with_output().unwrap(),
            p2.wait_with_output().unwrap(),
        );
        for o in [&o1, &o2] {
            assert_no_panic(o);
            assert!(
                [0, 1, 2, 11].contains(&code(o)),
                "round {round}: exit {}: {}",
                code(o),
                stderr(o)
            );
        }
        if code(&o1) == 0 && code(&o2) == 0 {
            both_ran += 1;
        }
        // Whatever happened, one of the two passwords still opens the repository.
        let opens = [PASSWORD, "second password"].iter().any(|pw| {
            env.cmd(&["snapshots"])
                .env("SNAP_PASSWORD", pw)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        assert!(
            opens,
            "round {round}: no key left that opens the repository ({}; {})",
            stderr(&o1),
            stderr(&o2)
        );
    }
    assert_eq!(both_ran, 0, "both removals succeeded in {both_ran} rounds");
}

/// A source that takes a backup a few seconds: many small files.
fn slow_source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for d in 0..200 {
        for f in 0..200 {
            write(
                &src.join(format!("d{d}/f{f}")),
                format!("{d} {f} {}\n", "x".repeat(f % 97)).as_bytes(),
            );
        }
    }
    src
}

fn wait_for_lock(env: &Env, child: &mut std::process::Child) -> Vec<std::path::PathBuf> {
    let t0 = Instant::now();
    loop {
        let locks: Vec<_> = fs::read_dir(env.repo.join("locks"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    // A lock being written is not taken yet.
                    .filter(|p| !p.to_string_lossy().contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default();
        if !locks.is_empty() {
            return locks;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup ended before its lock was seen"
        );
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn unlock_remove_all_next_to_a_live_backup_removes_nothing_of_it() {
    let env = Env::new(&[]);
    let src = slow_source(&env);
    let mut child = env
        .cmd(&["--quiet", "backup", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for_lock(&env, &mut child);
    let out = env.json(&["unlock", "--remove-all"]);
    let still_running = child.try_wait().unwrap().is_none();
    assert!(
        out["removed"].as_array().unwrap().is_empty(),
        "removed a live backup's lock: {out}"
    );
    if still_running {
        assert!(
            out["kept"]
                .to_string()
                .contains(&format!("pid {}", child.id())),
            "{out}"
        );
    }
    assert!(child.wait().unwrap().success());
    env.ok(&["check"]);
}

#[test]
fn a_backup_whose_lock_cannot_be_refreshed_stops_with_a_clear_error() {
    let env = Env::new(&[]);
    let src = slow_source(&env);
    let snapshots_before = fs::read_dir(env.repo.join("snapshots")).unwrap().count();
    // Refresh every 50 ms: the lock is stale after 300 ms, so the backup must give up by 250 ms.
    let mut child = env
        .cmd(&["--quiet", "backup", src.to_str().unwrap()])
        .env("SNAP_LOCK_REFRESH", "0.05")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&env, &mut child);
    // locks/ becomes a plain file: no lock can be written or removed there.
    let locks = env.repo.join("locks");
    let aside = env.repo.join("locks.aside");
    fs::rename(&locks, &aside).unwrap();
    fs::write(&locks, b"not a directory").unwrap();
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    fs::remove_file(&locks).unwrap();
    fs::rename(&aside, &locks).unwrap();
    assert_eq!(
        code(&out),
        13,
        "exit {} after {took:?}: {}",
        code(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("lost the repository lock")
            && stderr(&out).contains("could not refresh"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_dir(env.repo.join("snapshots")).unwrap().count(),
        snapshots_before,
        "no snapshot is written without a lock"
    );
    // The stopped run left a repository that checks clean once its stale lock is removed.
    env.ok(&["unlock"]);
    env.ok(&["check"]);
}
