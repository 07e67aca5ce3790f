//! `snap prune`: frees the packs only removed snapshots used, repacks partly used packs, keeps
//! young packs for the grace period, recovers a marked pack a newer snapshot uses, survives
//! SIGKILL at many moments, runs beside a backup loop, and never runs twice at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

const INIT: &[&str] = &["--pack-size-mib", "1", "--chunker-kib", "16,64,256"];

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn pack_count(env: &Env) -> usize {
    env.pack_files().len()
}

/// Two sources sharing 1 MiB, each with 2 MiB of its own.
fn two_sources(env: &Env) -> (PathBuf, PathBuf) {
    let (a, b) = (env.path("src-a"), env.path("src-b"));
    for (d, own) in [(&a, 100u64), (&b, 200)] {
        make_files(d, [1, 2], 512 * 1024);
        make_files(d, own..own + 4, 512 * 1024);
    }
    (a, b)
}

#[test]
fn prune_frees_the_unique_packs_of_a_removed_snapshot() {
    let env = Env::new(INIT);
    let (a, b) = two_sources(&env);
    let sa = env.backup_id(&a);
    let sb = env.backup_id(&b);
    // A second cache made before the prune, as another host's would be.
    let old_cache = env.path("old-cache");
    let o = env
        .cmd(&["snapshots"])
        .env("SNAP_CACHE_DIR", &old_cache)
        .output()
        .unwrap();
    assert!(o.status.success());
    let before = pack_count(&env);
    env.remove_snapshot(&sa);
    let dry = env.prune(&["--dry-run", "--grace", "0"]);
    assert!(dry["dry_run"].as_bool().unwrap());
    assert!(
        dry["estimate_ms"].as_u64().unwrap() >= dry["mark_ms"].as_u64().unwrap(),
        "a dry run estimates at least the walk it measured: {dry:#}"
    );
    assert!(
        !dry["plan"]["due"].as_array().unwrap().is_empty(),
        "{dry:#}"
    );
    assert_eq!(pack_count(&env), before, "dry run deleted something");
    let r = env.prune(&["--grace", "0"]);
    let deleted = ids(&r["deleted"]);
    assert!(!deleted.is_empty(), "{r:#}");
    // A's own 2 MiB (less what shares a pack with kept data) is freed.
    let freed = r["bytes_freed"].as_u64().unwrap();
    assert!(freed >= 1024 * 1024, "freed only {freed}: {r:#}");
    assert!(r["exclusive_lock_ms"].as_u64().is_some());
    for p in &deleted {
        assert!(!env.repo.join(p).exists(), "{p} still present");
    }
    env.assert_check_clean("after prune");
    env.assert_restores(&sb, &b);
    // Nothing left to do: a second prune deletes nothing and takes no exclusive lock.
    let again = env.prune(&["--grace", "0"]);
    assert!(ids(&again["deleted"]).is_empty(), "{again:#}");
    assert!(again["exclusive_lock_ms"].is_null());
    assert!(
        again["record"].is_null(),
        "an unchanged state rewrote the record"
    );
    // The old cache catches up from the record and the listing: a backup through it is whole.
    let o = env
        .cmd(&["-q", "backup", a.to_str().unwrap()])
        .env("SNAP_CACHE_DIR", &old_cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // It dropped the deleted packs one by one (the record lists them), without a rebuild.
    assert!(
        !stderr(&o).contains("rebuilding the index"),
        "{}",
        stderr(&o)
    );
    env.assert_check_clean("after a backup through the old cache");
    let newest = env.snapshot_ids().into_iter().find(|i| *i != sb).unwrap();
    env.assert_restores(&newest, &a);
}

#[test]
fn backups_do_not_dedup_against_marked_packs_even_through_an_old_cache() {
    let env = Env::new(INIT);
    let (a, b) = two_sources(&env);
    let sa = env.backup_id(&a);
    let sb = env.backup_id(&b);
    let old_cache = env.path("old-cache");
    assert!(
        env.cmd(&["snapshots"])
            .env("SNAP_CACHE_DIR", &old_cache)
            .status()
            .unwrap()
            .success()
    );
    env.remove_snapshot(&sa);
    let r = env.prune(&[]);
    assert!(!r["plan"]["mark"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(ids(&r["deleted"]).is_empty(), "grace 24h deleted: {r:#}");
    assert_eq!(
        env.dir
            .path()
            .join("repo/prune")
            .read_dir()
            .unwrap()
            .count(),
        1
    );
    // The old cache never saw the mark; the record tells it. A's unique data lives only in
    // marked packs, so the backup stores it again.
    let o = env
        .cmd(&["--json", "backup", a.to_str().unwrap()])
        .env("SNAP_CACHE_DIR", &old_cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let added = v["snapshot"]["summary"]["bytes_added_raw"]
        .as_u64()
        .unwrap();
    assert!(
        added >= 2 * 1024 * 1024,
        "deduplicated against marked packs: {v:#}"
    );
    let sa2 = env.snapshot_ids().into_iter().find(|i| *i != sb).unwrap();
    let r = env.prune(&["--grace", "0"]);
    assert!(!ids(&r["deleted"]).is_empty(), "{r:#}");
    env.assert_check_clean("after deleting the marked packs");
    env.assert_restores(&sa2, &a);
    env.assert_restores(&sb, &b);
}

/// 40 files of 48 KiB (one chunk each, a couple of packs) backed up, then every other one
/// removed and backed up again: once the first snapshot goes, its packs are half used.
/// Returns the source and both snapshot ids.
fn half_used_packs(env: &Env) -> (PathBuf, String, String) {
    let src = env.path("src");
    make_files(&src, 0..40, 48 * 1024);
    let s1 = env.backup_id(&src);
    for i in (0..40).step_by(2) {
        std::fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    let s2 = env.backup_id(&src);
    (src, s1, s2)
}

#[test]
fn partly_used_packs_are_repacked() {
    let env = Env::new(INIT);
    let (src, s1, s2) = half_used_packs(&env);
    env.remove_snapshot(&s1);
    let keep = env.prune(&["--grace", "0", "--max-unused", "100%"]);
    assert!(
        keep["plan"]["repack"].as_array().unwrap().is_empty(),
        "{keep:#}"
    );
    let r = env.prune(&["--grace", "0", "--max-unused", "0%"]);
    let repacked = r["repacked"]["packs_read"].as_u64().unwrap();
    assert!(repacked >= 1, "{r:#}");
    assert!(r["repacked"]["blobs_copied"].as_u64().unwrap() >= 1);
    assert!(ids(&r["deleted"]).len() as u64 >= repacked, "{r:#}");
    env.assert_check_clean("after repack");
    env.assert_restores(&s2, &src);
    let (_, report, _) = env.check(&[]);
    assert!(
        report["unreferenced_packs"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    // Nothing unused is left.
    let dry = env.prune(&["--dry-run", "--grace", "0", "--max-unused", "0%"]);
    assert_eq!(
        dry["plan"]["stats"]["unused_bytes"].as_u64(),
        Some(0),
        "{dry:#}"
    );
}

#[test]
fn grace_keeps_young_packs_and_a_marked_pack_is_recovered_when_used_again() {
    let env = Env::new(INIT);
    let (a, b) = two_sources(&env);
    // A library handle opened before the prune: a backup already running when it marks.
    let mut early = env.open_lib();
    let sa = env.backup_id(&a);
    let sb = env.backup_id(&b);
    early.sync_index().unwrap();
    env.remove_snapshot(&sa);
    let before = env.pack_files();
    let all_kept = || before.iter().all(|p| p.exists());
    let r = env.prune(&["--grace", "1h"]);
    // Marked: the unused packs and the partly used ones repacked (over 5% unused).
    let marked =
        r["plan"]["mark"].as_array().unwrap().len() + r["plan"]["repack"].as_array().unwrap().len();
    assert!(marked > 0 && ids(&r["deleted"]).is_empty(), "{r:#}");
    assert!(all_kept(), "a young pack was deleted");
    // Young marks stay through later prunes with the grace period.
    let r = env.prune(&["--grace", "1h"]);
    assert_eq!(r["plan"]["keep_marked"].as_array().unwrap().len(), marked);
    assert!(
        r["record"].is_null(),
        "unchanged marks rewrote the record: {r:#}"
    );
    assert!(all_kept(), "a young pack was deleted");
    // The early backup deduplicates against the marked packs (its view predates the mark).
    let opts = snap::archiver::BackupOptions {
        paths: vec![a.clone()],
        includes: vec![],
        excludes: vec![],
        tags: vec![],
        host: None,
        kind: snap::snapshot::BackupKind::Full,
        mysql: None,
        time: None,
        mysql_prebuilt: None,
    };
    let out = snap::archiver::backup(
        &mut early,
        &opts,
        &Default::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    // No data stored again (a tree or two may be new: the parent directories' times moved).
    assert!(
        out.snapshot.summary.bytes_added_raw < 64 * 1024,
        "data was not deduplicated against the marked packs: {:?}",
        out.snapshot.summary
    );
    drop(early);
    let r = env.prune(&["--grace", "0"]);
    assert!(
        !r["plan"]["recover"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    env.assert_check_clean("after recovery");
    env.assert_restores(&out.id.to_hex(), &a);
    env.assert_restores(&sb, &b);
}

#[test]
fn sigkill_at_many_moments_leaves_a_repository_the_next_prune_finishes() {
    let env = Env::new(INIT);
    let keep_src = env.path("keep");
    make_files(&keep_src, 0..6, 200 * 1024);
    let keep = env.backup_id(&keep_src);
    // Garbage for a round: a snapshot sharing data with `keep`, then removed.
    let garbage = |k: u64| {
        let g = env.path(&format!("g{k}"));
        make_files(&g, [0, 1], 200 * 1024);
        make_files(&g, (0..6).map(|j| 1000 + k * 10 + j), 300 * 1024);
        let gid = env.backup_id(&g);
        env.remove_snapshot(&gid);
        std::fs::remove_dir_all(&g).unwrap();
    };
    // How long a whole prune takes on this machine, now (a loaded CI machine is many times
    // slower than an idle one). The kill moment then follows the machine: a kill that came
    // after the prune ended moves the next one earlier, one that cut it off moves it later, so
    // the kills settle around the prune's last phases (mark, delete) whatever the speed.
    garbage(99);
    let t = std::time::Instant::now();
    env.ok(&["-q", "prune", "--grace", "0", "--max-unused", "0%"]);
    let mut delay = t.elapsed() / 2;
    let mut killed_mid = 0;
    let (mut mid_delete, mut marked_only) = (0, 0);
    for k in 0..30u64 {
        garbage(k);
        let mut child = env
            .cmd(&["-q", "prune", "--grace", "0", "--max-unused", "0%"])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SAFETY: our own child, by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let st = child.wait().unwrap();
        if st.code().is_none() {
            killed_mid += 1;
            delay = delay * 6 / 5;
        } else {
            delay = delay * 3 / 5;
        }
        // Which phase the kill hit, read from the record: marks written, or packs listed
        // deleted that are still present (between the record and the removals).
        {
            let repo = env.open_lib();
            let recs = snap::prune::record::load(repo.backend().as_ref(), repo.key()).unwrap();
            if let Some((_, r)) = recs.newest {
                let present = r
                    .deleted
                    .iter()
                    .filter(|d| env.repo.join(snap::backend::pack_path(&d.pack)).exists())
                    .count();
                if present > 0 {
                    mid_delete += 1;
                } else if !r.marked.is_empty() {
                    marked_only += 1;
                }
            }
        }
        env.ok(&["-q", "unlock"]);
        env.assert_check_clean(&format!("kill {k} after {delay:?}"));
        assert_eq!(
            env.snapshot_ids(),
            vec![keep.clone()],
            "kill {k}: snapshot lost"
        );
    }
    eprintln!(
        "{killed_mid} of 30 kills hit a running prune; {marked_only} left marks only, \
         {mid_delete} left packs listed deleted but present"
    );
    assert!(
        mid_delete + marked_only > 0,
        "no kill landed after the mark"
    );
    assert!(
        killed_mid >= 10,
        "only {killed_mid} kills hit a running prune"
    );
    let r = env.prune(&["--grace", "0", "--max-unused", "0%"]);
    assert!(r["deferred"].is_null(), "{r:#}");
    env.assert_check_clean("after the finishing prune");
    let (_, report, _) = env.check(&[]);
    assert!(
        report["unreferenced_packs"].as_array().unwrap().is_empty(),
        "the next prune did not finish: {report:#}"
    );
    env.assert_restores(&keep, &keep_src);
}

#[test]
fn prune_runs_beside_a_backup_loop() {
    let env = Arc::new(Env::new(INIT));
    let stop = Arc::new(AtomicBool::new(false));
    let e2 = env.clone();
    let s2 = stop.clone();
    // Each round backs up a new directory: shared files plus one of four variants.
    let looper = std::thread::spawn(move || {
        let mut made = Vec::new();
        let mut refused = 0;
        let mut i = 0u64;
        while !s2.load(Ordering::SeqCst) || made.len() < 4 {
            let d = e2.path(&format!("loop{i}"));
            make_files(&d, [7, 8], 256 * 1024);
            // Content cycles through four variants, so later backups bring back data of removed
            // snapshots while prunes mark, recover and delete it.
            make_files(&d, [5000 + i % 4], 256 * 1024);
            let o = e2.run(&["-q", "backup", d.to_str().unwrap()]);
            match code(&o) {
                0 => made.push(d),
                // A backup waits out a sweep's exclusive moment; being refused is a failure.
                11 => refused += 1,
                c => panic!("backup failed with {c}: {}", stderr(&o)),
            }
            i += 1;
        }
        (made, refused)
    });
    let start = Instant::now();
    let mut removed = 0;
    let mut deleted = 0;
    let mut recovered = 0;
    let mut max_excl = 0;
    for round in 0..12 {
        // Forget every other snapshot so far with the real `snap forget` (its exclusive lock
        // is taken in a gap between two backups), then prune with no grace: what
        // `forget --prune` does, with the grace a test can wait for.
        let snaps = env.snapshot_ids();
        let victims: Vec<&str> = snaps
            .iter()
            .step_by(2)
            .take(snaps.len().saturating_sub(1) / 2)
            .map(|s| s.as_str())
            .collect();
        if !victims.is_empty() {
            let mut args = vec!["-q", "forget", "--lock-wait", "60s"];
            args.extend(&victims);
            env.ok(&args);
            removed += victims.len();
        }
        let r = env.prune(&["--grace", "0", "--lock-wait", "60s"]);
        assert!(r["deferred"].is_null(), "round {round}: {r:#}");
        deleted += ids(&r["deleted"]).len();
        recovered += r["plan"]["recover"].as_array().unwrap().len()
            + r["recovered_at_sweep"].as_array().unwrap().len();
        max_excl = max_excl.max(r["exclusive_lock_ms"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let (made, refused) = looper.join().unwrap();
    eprintln!(
        "{} backups ({refused} refused during sweeps), {removed} snapshots removed, {deleted} packs deleted, {recovered} recovered, longest exclusive lock {max_excl} ms, {:?}",
        made.len(),
        start.elapsed()
    );
    assert!(deleted > 0, "no prune deleted anything");
    assert_eq!(
        refused, 0,
        "a backup was refused instead of waiting for a sweep"
    );
    env.assert_check_clean("after the loop");
    // Every snapshot left restores to its directory.
    let list = env.json(&["snapshots"]);
    for s in list.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let path = PathBuf::from(s["snapshot"]["paths"][0].as_str().unwrap());
        env.assert_restores(id, &path);
    }
}

#[test]
fn two_prunes_never_run_at_once() {
    let env = Env::new(INIT);
    let (a, _b) = two_sources(&env);
    // A prune lock held by another prune: refused with exit 11, before touching anything.
    let repo = env.open_lib();
    let guard = snap::repo::lock::LockGuard::for_op(
        &repo,
        snap::repo::lock::Operation::Prune,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let o = env.run(&["prune", "--grace", "0"]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    // A backup goes on beside a prune lock.
    env.ok(&["-q", "backup", a.to_str().unwrap()]);
    drop(guard);
    drop(repo);
    // Racing pairs: each exits 0 or 11, and the repository stays whole.
    for round in 0..6 {
        let d = env.path(&format!("r{round}"));
        make_files(&d, [9000 + round], 300 * 1024);
        let id = env.backup_id(&d);
        env.remove_snapshot(&id);
        let kids: Vec<_> = (0..2)
            .map(|_| {
                env.cmd(&["-q", "prune", "--grace", "0"])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            assert!(matches!(code(&o), 0 | 11), "round {round}: {}", stderr(&o));
        }
        env.assert_check_clean(&format!("race {round}"));
    }
    let snaps = env.snapshot_ids();
    assert_eq!(snaps.len(), 1);
}

/// `snap --json ARGS` through the cache directory `cache`.
fn json_with_cache(env: &Env, cache: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = env.cmd(&a).env("SNAP_CACHE_DIR", cache).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn repacked_copies_are_found_through_any_cache() {
    let env = Env::new(INIT);
    let (src, s1, s2) = half_used_packs(&env);
    // A cache that knows only the packs from before the repack.
    let before = env.path("cache-before");
    json_with_cache(&env, &before, &["check"]);
    env.remove_snapshot(&s1);
    // Repack now, delete later: old packs and their copies both exist, the old ones marked.
    let r = env.prune(&["--grace", "1h", "--max-unused", "0%"]);
    assert!(r["repacked"]["packs_read"].as_u64().unwrap() >= 1, "{r:#}");
    assert!(ids(&r["deleted"]).is_empty());
    // A cache rebuilt from scratch now reads the record before the packs: it prefers the copies.
    let fresh = env.path("cache-fresh");
    let c = json_with_cache(&env, &fresh, &["check", "--read-data"]);
    assert!(c["problems"].as_array().unwrap().is_empty(), "{c:#}");
    let r = json_with_cache(&env, &fresh, &["prune", "--grace", "0"]);
    assert!(!ids(&r["deleted"]).is_empty(), "{r:#}");
    // Every cache finds the copies afterwards: the main one, the pre-repack one, the fresh one.
    for cache in [&env.cache, &before, &fresh] {
        let c = json_with_cache(&env, cache, &["check", "--read-data"]);
        assert!(
            c["problems"].as_array().unwrap().is_empty(),
            "{cache:?}: {c:#}"
        );
        let target = env.path("restore-any");
        let _ = std::fs::remove_dir_all(&target);
        let o = env
            .cmd(&["-q", "restore", &s2, "--target", target.to_str().unwrap()])
            .env("SNAP_CACHE_DIR", cache)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cache:?}: {}", stderr(&o));
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    }
}

#[test]
fn prune_frees_what_stats_calls_unused() {
    let env = Env::new(INIT);
    let src = env.path("src");
    make_files(&src, 0..12, 200 * 1024);
    let mut snaps = Vec::new();
    // Mutation rounds: each rewrites a few files, so old versions become garbage once forgotten.
    for round in 0..6u64 {
        for f in [round % 12, (round * 5 + 3) % 12] {
            write(
                &src.join(format!("f{f}")),
                &random_bytes(100 + round * 12 + f, 200 * 1024),
            );
        }
        snaps.push(env.backup_id(&src));
    }
    let st = env.json(&["stats"]);
    assert_eq!(st["snapshots"].as_u64(), Some(6));
    assert_eq!(st["unused_bytes"].as_u64(), Some(0), "{st:#}");
    assert!(st["dedup_ratio"].as_f64().unwrap() > 3.0, "{st:#}");
    let one = env.json(&["stats", &snaps[5], "--mode", "raw-data"]);
    assert!(one["unused_bytes"].is_null());
    assert_eq!(one["restore_size"].as_u64(), Some(12 * 200 * 1024));
    // Forget the oldest half.
    for id in &snaps[..3] {
        env.remove_snapshot(id);
    }
    let unused = env.json(&["stats"])["unused_bytes"].as_u64().unwrap();
    assert!(unused > 0);
    let r = env.prune(&["--grace", "0", "--max-unused", "0%"]);
    let freed = r["bytes_freed"].as_u64().unwrap() as f64
        - r["repacked"]["bytes_written"].as_u64().unwrap() as f64;
    let off = (freed - unused as f64).abs() / unused as f64;
    eprintln!(
        "stats said {unused} unused; prune freed {freed} net ({:.2}% off)",
        off * 100.0
    );
    assert!(off <= 0.05, "freed {freed}, stats said {unused}: {r:#}");
    assert_eq!(env.json(&["stats"])["unused_bytes"].as_u64(), Some(0));
    env.assert_check_clean("after prune");
    env.assert_restores(&snaps[5], &src);
}

#[test]
fn a_damaged_prune_record_is_reported_and_only_delays_deletion() {
    let env = Env::new(INIT);
    let (a, b) = two_sources(&env);
    let sa = env.backup_id(&a);
    let sb = env.backup_id(&b);
    env.remove_snapshot(&sa);
    env.prune(&[]);
    let rec = env.only_file("prune");
    modify(&rec, |bytes| bytes[40] ^= 1);
    let (code, report, _) = env.check(&[]);
    assert_eq!(code, 1);
    assert_eq!(problems(&report, &env.rel(&rec)).len(), 1, "{report:#}");
    // Backups and prunes go on: the marks are made again, and deleted under the lock.
    env.ok(&["-q", "backup", b.to_str().unwrap()]);
    let r = env.prune(&["--grace", "0"]);
    assert!(!ids(&r["deleted"]).is_empty(), "{r:#}");
    std::fs::remove_file(&rec).unwrap();
    env.assert_check_clean("after removing the damaged record");
    env.assert_restores(&sb, &b);
}
