//! Remote repositories under failure: a proxy injecting 503s, resets and delays between snap and
//! the S3 server; SIGKILL in the middle of an upload; two writers on one bucket at once; and the
//! end-to-end run on a real 3-node Garage cluster with a node SIGKILLed during the backup.
//! Every run ends with the restore compared against the source and `check --read-data` clean.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fault_proxy::{Faults, Proxy};
use crate::servers;

/// An S3 test environment whose endpoint is `proxy` instead of the server itself.
fn through(env: &mut Env, proxy: &Proxy) {
    for (k, v) in env.vars.iter_mut() {
        if k == "SNAP_S3_ENDPOINT" {
            *v = proxy.endpoint.clone();
        }
    }
}

fn source(env: &Env, seed: u64) -> PathBuf {
    let src = env.path(&format!("src{seed}"));
    make_files(&src.join("small"), seed * 1000..seed * 1000 + 60, 40_000);
    write(&src.join("large.bin"), &random_bytes(seed + 7, 5 << 20));
    src
}

fn assert_restores_latest(env: &Env, src: &Path, host: Option<&str>) {
    let target = env.path(&format!(
        "restored-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
    if let Some(h) = host {
        args.extend(["--host", h]);
    }
    env.ok(&args);
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn s3_backup_restore_check_through_faults() {
    let s3 = servers::moto();
    let bucket = s3.bucket("faults");
    let proxy = Proxy::start(
        &s3.endpoint,
        Faults {
            slow_down: 0.10,
            reset: 0.03,
            delayed: 0.03,
            delay: Duration::from_millis(300),
        },
    );
    let mut env = s3.env(&bucket, "f");
    through(&mut env, &proxy);
    env.ok(&["init", "--kdf-memory-kib", "19456", "--pack-size-mib", "1"]);
    let src = source(&env, 1);
    let before = proxy.counts.injected.load(Ordering::Relaxed);
    let out = env.backup(&[src.to_str().unwrap()]);
    // The summary counts the requests and the retries the faults cost.
    let injected = proxy.counts.injected.load(Ordering::Relaxed) - before;
    let (requests, retries) = (&out["storage"]["requests"], &out["storage"]["retries"]);
    assert!(
        requests.as_u64().unwrap() > 0 && retries.as_u64().unwrap() > 0,
        "backup summary storage {requests} requests {retries} retries after {injected} faults"
    );
    assert_restores_latest(&env, &src, None);
    let (code, report, err) = env.check(&["--read-data"]);
    assert_eq!(code, 0, "{report} {err}");
    // copy under the same faults: out of the faulty S3 repository into a local one, and from
    // there into a second S3 repository; each copy restores identical.
    let local = Env::new(&[]);
    let o = local
        .cmd(&["copy", "--from-repo", env.repo.to_str().unwrap()])
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(o.status.success(), "copy from S3: {}", stderr(&o));
    assert_restores_latest(&local, &src, None);
    let mut second = s3.env(&bucket, "f-copy");
    through(&mut second, &proxy);
    second.ok(&["init", "--kdf-memory-kib", "19456"]);
    second.ok(&["copy", "--from-repo", local.repo.to_str().unwrap()]);
    assert_restores_latest(&second, &src, None);
    let (code, report, err) = second.check(&["--read-data"]);
    assert_eq!(code, 0, "{report} {err}");
    let injected = proxy.counts.injected.load(Ordering::Relaxed);
    assert!(
        injected >= 10,
        "the proxy injected only {injected} faults in {} requests",
        proxy.requests()
    );
}

#[test]
fn s3_sigkill_mid_upload_then_resume() {
    let s3 = servers::moto();
    let bucket = s3.bucket("resume");
    // Every request slowed, so the kill lands while packs are still going up.
    let proxy = Proxy::start(
        &s3.endpoint,
        Faults {
            delayed: 1.0,
            delay: Duration::from_millis(60),
            ..Faults::default()
        },
    );
    let mut env = s3.env(&bucket, "k");
    through(&mut env, &proxy);
    env.ok(&["init", "--kdf-memory-kib", "19456", "--pack-size-mib", "1"]);
    let src = env.path("src");
    make_files(&src, 0..24, 1 << 20);
    let total: u64 = 24 << 20;
    let puts_before = proxy.counts.put.load(Ordering::Relaxed);
    let mut child = env
        .cmd(&["backup", src.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.counts.put.load(Ordering::Relaxed) < puts_before + 6 {
        assert!(Instant::now() < deadline, "the backup never uploaded");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
    proxy.set_faults(Faults::default());

    assert!(
        snapshot_ids(&env).is_empty(),
        "no snapshot from the killed run"
    );
    let (code, report, err) = env.check(&[]);
    assert_eq!(code, 0, "check after the kill: {report} {err}");
    let resumed = env.backup(&[src.to_str().unwrap()]);
    let added = resumed["snapshot"]["summary"]["bytes_added_raw"]
        .as_u64()
        .unwrap();
    assert!(
        added < total,
        "the resumed backup uploaded {added} of {total} bytes: what the killed run made durable was sent again"
    );
    assert_restores_latest(&env, &src, None);
    let (code, report, err) = env.check(&["--read-data"]);
    assert_eq!(code, 0, "{report} {err}");
}

#[test]
fn s3_two_writers_at_once() {
    let s3 = servers::moto();
    let bucket = s3.bucket("twowriters");
    let a = s3.env(&bucket, "shared");
    a.ok(&["init", "--kdf-memory-kib", "19456", "--pack-size-mib", "1"]);
    // The second writer is another host: its own cache, its own hostname.
    let mut b = s3.env(&bucket, "shared");
    b.cache = b.path("other-cache");
    let src_a = source(&a, 2);
    let src_b = source(&b, 3);
    // Some content in common, so both race to store the same blobs.
    write(&src_b.join("common.bin"), &random_bytes(2 + 7, 5 << 20));
    let spawn = |env: &Env, src: &Path, host: &str| {
        env.cmd(&["backup", src.to_str().unwrap(), "--host", host])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn(&a, &src_a, "host-a");
    let cb = spawn(&b, &src_b, "host-b");
    for c in [ca, cb] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (code, report, err) = a.check(&["--read-data"]);
    assert_eq!(code, 0, "{report} {err}");
    assert_restores_latest(&a, &src_a, Some("host-a"));
    // The first writer's cache catches up with the second's packs by reading only new headers.
    assert_restores_latest(&a, &src_b, Some("host-b"));
    assert_restores_latest(&b, &src_a, Some("host-a"));
}

fn make_corpus(dir: &Path, size: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/make-corpus.sh");
    let st = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .args(["--size", size, "--large-size", "24M", "--sql-size", "24M"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{} failed", script.display());
}

#[test]
fn garage_end_to_end_with_a_node_killed() {
    let g = servers::garage();
    let mut env = g.env("snap-test", &format!("e2e-{}", std::process::id()));
    env.vars.push(("SNAP_IO_TIMEOUT".into(), "15".into()));
    env.ok(&["init", "--kdf-memory-kib", "19456"]);
    let corpus = env.path("corpus");
    make_corpus(&corpus, "160M");
    let expected = manifest(&corpus);
    let mut child = env
        .cmd(&["backup", corpus.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a node (not the one snap talks to) once the upload is under way.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before the node was killed"
    );
    servers::garage_kill(3);
    let o = child.wait_with_output().unwrap();
    servers::garage_revive();
    assert!(
        o.status.success(),
        "backup with a Garage node down: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        manifest(&target.join(corpus.strip_prefix("/").unwrap())),
        expected,
        "the restore differs from the corpus"
    );
    let (code, report, err) = env.check(&["--read-data"]);
    assert_eq!(code, 0, "{report} {err}");
}
