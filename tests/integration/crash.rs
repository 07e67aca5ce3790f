//! A backup killed with SIGKILL at 24 different moments: the repository always opens and checks
//! clean, every listed snapshot restores identical to its source, and the next backup completes,
//! reusing the packs that were already durable.

use std::time::{Duration, Instant};

use crate::common::*;

fn build_source(src: &std::path::Path) {
    for i in 0..48u64 {
        write(
            &src.join(format!("big/{i:02}.bin")),
            &random_bytes(1000 + i, 2_500_000),
        );
    }
    for i in 0..3000u64 {
        write(
            &src.join(format!("small/{}/{i}.txt", i % 30)),
            format!("small file {i}\n")
                .repeat((i % 50) as usize + 1)
                .as_bytes(),
        );
    }
}

#[test]
fn sigkill_at_many_moments_never_damages_the_repository() {
    let base = Env::new(&["--pack-size-mib", "1"]);
    let src = base.path("src");
    build_source(&src);
    let s = src.to_str().unwrap();
    // A reference run measures how long a backup takes and how much a fresh one adds.
    let t0 = Instant::now();
    let fresh = base.backup(&[s]);
    let full_time = t0.elapsed();
    let fresh_added = fresh["snapshot"]["summary"]["bytes_added"]
        .as_u64()
        .unwrap();
    let moments = 24u32;
    let mut reused_runs = 0;
    for k in 0..moments {
        let env = Env::new(&["--pack-size-mib", "1"]);
        // Spread kills over the whole run, from process start to just past the end.
        let delay = full_time.mul_f64(k as f64 / (moments - 4) as f64);
        let mut child = env.cmd(&["--quiet", "backup", s]).spawn().unwrap();
        std::thread::sleep(delay);
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Our own killed process left its lock: it is stale (dead pid) and must be removed the
        // way a user would, with `snap unlock`, before the check takes its lock.
        let o = env.run(&["check"]);
        if o.status.code() == Some(11) {
            env.ok(&["unlock"]);
        }
        let o = env.run(&["check"]);
        assert!(
            o.status.success(),
            "moment {k} ({delay:?}): check failed\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let list = env.json(&["snapshots"]);
        for snap in list.as_array().unwrap() {
            let id = snap["id"].as_str().unwrap();
            let target = env.path(&format!("restore-{id}"));
            env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
            assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
            std::fs::remove_dir_all(&target).unwrap();
        }
        let durable = env.pack_files().len();
        let next = env.backup(&[s]);
        let added = next["snapshot"]["summary"]["bytes_added"].as_u64().unwrap();
        if durable > 2 {
            assert!(
                added < fresh_added,
                "moment {k}: {durable} packs survived but the next backup added {added} >= {fresh_added}"
            );
            reused_runs += 1;
        }
        let target = env.path("restore-next");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
        env.ok(&["check", "--read-data"]);
        eprintln!(
            "moment {k}: killed after {delay:?}, {durable} packs survived, {} snapshots, next run added {added}",
            list.as_array().unwrap().len()
        );
    }
    assert!(
        reused_runs >= 8,
        "only {reused_runs} kills happened after packs were durable; the test did not exercise reuse"
    );
    let _ = Duration::ZERO;
}

#[test]
fn sigint_stops_cleanly_with_exit_130() {
    let env = Env::new(&["--pack-size-mib", "1"]);
    let src = env.path("src");
    for i in 0..40u64 {
        write(
            &src.join(format!("{i}.bin")),
            &random_bytes(500 + i, 8_000_000),
        );
    }
    let mut child = env
        .cmd(&["--quiet", "backup", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Signal once the run holds its lock (it has started), and only while it still runs.
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(env.repo.join("locks")).unwrap().count() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "backup ended first");
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before the signal: the test proves nothing"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "exit {:?}", out.status);
    // An interrupted run removes its lock and leaves a repository that checks clean.
    assert_eq!(
        std::fs::read_dir(env.repo.join("locks")).unwrap().count(),
        0
    );
    env.ok(&["check"]);
    env.backup(&[src.to_str().unwrap()]);
}
