//! Remote repositories: one conformance suite that every backend (local, S3, SFTP) passes, then
//! the real binary backing up to, restoring from and checking S3 and SFTP repositories on real
//! servers (servers.rs), and the failures a user meets (unknown scheme, wrong credentials, a
//! missing bucket, an unreachable server) each with its message and exit code.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use snap::backend::{Backend, Location};

use crate::common::*;
use crate::servers;

// ---------------------------------------------------------------------------------------------
// Conformance suite

/// Runs the suite against `location` in a child process of this test binary, so the backend's
/// environment (credentials, endpoint, key file) belongs to the child and is never set on this
/// process, whose other tests run in parallel threads.
fn conformance(location: &str, vars: &[(String, String)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "remote::conformance_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SNAP_CONFORMANCE_LOCATION", location)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("conformance ok"),
        "conformance suite failed on {location}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "the body of the conformance tests, run by them in a child process"]
fn conformance_child() {
    let Ok(loc) = std::env::var("SNAP_CONFORMANCE_LOCATION") else {
        return;
    };
    let loc = Location::parse(&loc, None).unwrap();
    let b = snap::backend::open(&loc).unwrap();
    suite(b);
    snap::backend::remote::shutdown(std::time::Duration::from_secs(5));
    println!("conformance ok");
}

fn suite(b: Arc<dyn Backend>) {
    // An empty location.
    assert!(b.list("snapshots").unwrap().is_empty());
    assert!(b.list("").unwrap().is_empty(), "a fresh location is empty");
    assert!(!b.exists("config").unwrap());
    let e = b.read("config").unwrap_err().to_string();
    assert!(e.contains("config"), "a missing file's error names it: {e}");
    assert!(b.size("config").is_err());
    b.remove("snapshots/nothing-here").unwrap();

    // Whole files: write, exists, read, size.
    b.write("config", b"config bytes").unwrap();
    assert!(b.exists("config").unwrap());
    assert_eq!(b.read("config").unwrap(), b"config bytes");
    assert_eq!(b.size("config").unwrap(), 12);

    // Nested names and listing with sizes, recursive and sorted, only below the folder asked.
    let pack = format!("data/ab/ab{}", "0".repeat(62));
    let body = random_bytes(1, 300_000);
    b.write(&pack, &body).unwrap();
    b.write("data/cd/cd01", b"x").unwrap();
    b.write("snapshots/s1", b"snap").unwrap();
    assert_eq!(
        b.list("data").unwrap(),
        vec![(pack.clone(), 300_000), ("data/cd/cd01".to_string(), 1)]
    );
    assert_eq!(
        b.list("snapshots").unwrap(),
        vec![("snapshots/s1".into(), 4)]
    );
    let all: Vec<String> = b.list("").unwrap().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        all,
        vec![
            "config".to_string(),
            pack.clone(),
            "data/cd/cd01".into(),
            "snapshots/s1".into()
        ]
    );
    assert!(b.list("keys").unwrap().is_empty());

    // Ranges: inside, whole, empty at the end; past the end is an error, not a short read.
    assert_eq!(b.read_range(&pack, 1000, 5000).unwrap(), &body[1000..6000]);
    assert_eq!(b.read_range(&pack, 0, 300_000).unwrap(), body);
    assert!(b.read_range(&pack, 300_000, 0).unwrap().is_empty());
    assert!(b.read_range(&pack, 299_000, 2000).is_err());
    assert!(b.read_range(&pack, u64::MAX - 1, 10).is_err());

    // Overwrite (lock refresh rewrites its own file).
    b.write("locks/l1", b"first").unwrap();
    b.write("locks/l1", b"second, longer").unwrap();
    assert_eq!(b.read("locks/l1").unwrap(), b"second, longer");

    // A large object: more than one PUT's worth, so S3 takes the multipart path.
    let big = random_bytes(2, 70 << 20);
    b.write("data/ef/big", &big).unwrap();
    assert_eq!(b.size("data/ef/big").unwrap(), 70 << 20);
    assert_eq!(
        blake3::hash(&b.read("data/ef/big").unwrap()),
        blake3::hash(&big)
    );
    assert_eq!(
        b.read_range("data/ef/big", 65 << 20, 4096).unwrap(),
        &big[65 << 20..(65 << 20) + 4096]
    );

    // Atomicity: a reader polling a file being written sees nothing or all of it.
    let payload = random_bytes(3, 24 << 20);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen_whole = false;
            for _ in 0..2000 {
                match b.read("data/aa/atomic") {
                    Ok(got) => {
                        assert_eq!(got.len(), payload.len(), "a partial file was visible");
                        assert!(got == payload, "a file with other bytes was visible");
                        seen_whole = true;
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
            seen_whole
        });
        b.write("data/aa/atomic", &payload).unwrap();
        assert!(reader.join().unwrap(), "the reader never saw the file");
    });
    assert!(
        !b.list("data/aa")
            .unwrap()
            .iter()
            .any(|(p, _)| p.contains(".tmp-")),
        "no temporary file is listed"
    );

    // Many writers at once.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let b = &b;
            s.spawn(move || {
                for i in 0..8u64 {
                    b.write(
                        &format!("snapshots/t{t}-{i}"),
                        &random_bytes(t * 100 + i, 1000),
                    )
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(b.list("snapshots").unwrap().len(), 65);
    assert_eq!(b.read("snapshots/t3-5").unwrap(), random_bytes(305, 1000));

    // Remove: gone from reads and listings; removing again is fine.
    b.remove(&pack).unwrap();
    b.remove(&pack).unwrap();
    assert!(!b.exists(&pack).unwrap());
    assert!(!b.list("data").unwrap().iter().any(|(p, _)| p == &pack));
}

#[test]
fn conformance_local() {
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    let repo = dir.path().join("repo");
    conformance(&format!("local:{}", repo.display()), &[]);
}

#[test]
fn conformance_s3() {
    let s3 = servers::moto();
    let bucket = s3.bucket("conformance");
    conformance(
        &format!("s3://{bucket}/suite-{}", std::process::id()),
        &s3.vars,
    );
}

#[test]
fn conformance_sftp() {
    let ssh = servers::sshd();
    let env = ssh.env();
    conformance(&env.repo.display().to_string(), &ssh.vars);
}

// ---------------------------------------------------------------------------------------------
// The binary on remote repositories

/// Backup, incremental backup, restore and check --read-data through `env`'s (remote)
/// repository; the restore matches the source by the independent manifest.
fn round_trip(env: &Env) {
    env.ok(&["init", "--kdf-memory-kib", "19456"]);
    let src = env.path("src");
    make_files(&src.join("a"), 0..40, 50_000);
    write(&src.join("big.bin"), &random_bytes(99, 6 << 20));
    let first = env.backup(&[src.to_str().unwrap()]);
    write(&src.join("a/new.txt"), b"added later");
    let second = env.backup(&[src.to_str().unwrap()]);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(
        second["snapshot"]["summary"]["files_unmodified"].as_u64(),
        Some(41),
        "the second backup reuses what is stored: {second}"
    );
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let (code, report, err) = env.check(&["--read-data"]);
    assert_eq!(code, 0, "check --read-data: {report} {err}");
}

#[test]
fn s3_round_trip() {
    let s3 = servers::moto();
    let bucket = s3.bucket("roundtrip");
    round_trip(&s3.env(&bucket, &format!("r{}", std::process::id())));
}

#[test]
fn sftp_round_trip() {
    let mut env = servers::sshd().env();
    // The ssh control masters of this test's connections live under its own state directory.
    let state = env.path("ssh-state");
    std::fs::create_dir_all(&state).unwrap();
    env.vars
        .push(("XDG_STATE_HOME".into(), state.display().to_string()));
    round_trip(&env);
    // No command leaves its ssh master (and a session on the server) running once it has
    // exited: each `snap backup` over SFTP once did.
    let masters = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(state.to_str().unwrap()))
        .collect::<Vec<_>>();
    assert!(masters.is_empty(), "left running: {masters:?}");
    // What the server stores is private to the account (the sandbox's sftp-server runs with
    // umask 077, as the README asks of a real one).
    let on_disk = env.repo.to_str().unwrap().rsplit_once(":2299").unwrap().1;
    assert!(Path::new(on_disk).join("config").exists());
    assert_eq!(modes_of(Path::new(on_disk).join("config")) & 0o077, 0);
}

fn modes_of(p: impl AsRef<Path>) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode()
}

#[test]
fn unknown_scheme_is_refused_not_a_directory() {
    let env = Env::uninit();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    for loc in [
        "gs://bucket/x",
        "s3x://bucket/x",
        "rest:http://127.0.0.1:1/",
    ] {
        let o = env
            .cmd(&["-r", loc, "init", "--kdf-memory-kib", "19456"])
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{loc}: {}", stderr(&o));
        assert!(stderr(&o).contains("unknown scheme"), "{}", stderr(&o));
    }
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing was created locally"
    );
}

#[test]
fn s3_wrong_credentials_missing_bucket_and_unreachable() {
    let s3 = servers::moto();
    let bucket = s3.bucket("errors");
    let good = s3.env(&bucket, "e");
    good.ok(&["init", "--kdf-memory-kib", "19456"]);

    // A bucket that does not exist: refused at once, exit 14, the bucket named.
    let mut missing = s3.env("no-such-bucket", "x");
    missing.cache = good.cache.clone();
    let o = missing.run(&["snapshots"]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("s3://no-such-bucket/x"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));

    // A server nobody listens on: transient, retried, then exit 15, quickly with few retries.
    let mut down = s3.env(&bucket, "e");
    for (k, v) in down.vars.iter_mut() {
        if k == "SNAP_S3_ENDPOINT" {
            *v = "http://127.0.0.1:9".into();
        }
    }
    down.vars.push(("SNAP_RETRIES".into(), "2".into()));
    let t = std::time::Instant::now();
    let o = down.run(&["snapshots"]);
    assert_eq!(code(&o), 15, "{}", stderr(&o));
    assert!(stderr(&o).contains("after every retry"), "{}", stderr(&o));
    assert!(t.elapsed().as_secs() < 30);

    // No credential in any message.
    for o in [missing.run(&["snapshots"]), down.run(&["snapshots"])] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains(servers::S3_SECRET), "{all}");
    }
}

#[test]
fn init_refuses_a_non_empty_remote_location() {
    let s3 = servers::moto();
    let bucket = s3.bucket("nonempty");
    let env = s3.env(&bucket, "p");
    env.ok(&["init", "--kdf-memory-kib", "19456"]);
    let o = env.run(&["init", "--kdf-memory-kib", "19456"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

/// A remote repository is not downloaded again for what the cache already holds: a no-change
/// backup and a recursive `ls` make a handful of requests, however many directories there are.
#[test]
fn s3_no_change_backup_and_ls_make_few_requests() {
    use std::sync::atomic::Ordering;
    let s3 = servers::moto();
    let bucket = s3.bucket("fewrequests");
    let proxy = crate::fault_proxy::Proxy::start(&s3.endpoint, Default::default());
    let mut env = s3.env(&bucket, "n");
    for (k, v) in env.vars.iter_mut() {
        if k == "SNAP_S3_ENDPOINT" {
            *v = proxy.endpoint.clone();
        }
    }
    env.ok(&["init", "--kdf-memory-kib", "19456"]);
    let src = env.path("src");
    for d in 0..60 {
        make_files(&src.join(format!("d{d}")), d * 10..d * 10 + 3, 2000);
    }
    env.backup(&[src.to_str().unwrap()]);
    let count = |args: &[&str]| {
        let before = proxy.requests();
        let gets = proxy.counts.get.load(Ordering::Relaxed);
        env.ok(args);
        (
            proxy.requests() - before,
            proxy.counts.get.load(Ordering::Relaxed) - gets,
        )
    };
    let before = proxy.requests();
    let summary = env.backup(&[src.to_str().unwrap()]);
    let backup = proxy.requests() - before;
    let (ls, ls_gets) = count(&["ls", "--recursive", "latest"]);
    eprintln!("no-change backup: {backup} requests; ls -r: {ls} requests ({ls_gets} GET)");
    // the summary counts what the server saw, all but the lock's removal that follows it
    assert_eq!(summary["storage"]["requests"], backup - 1, "{summary}");
    // config, keys listing and key, the lock's check/write/check, the index sync once under the
    // lock (prune records, packs), the snapshots listing, the snapshot, the audit record, the
    // lock's removal: 12 (14 before the sync at opening was dropped for locking commands; one
    // CI run once saw one more, not traced: the bound keeps a request of slack).
    assert!(backup <= 13, "a no-change backup made {backup} requests");
    // Open (config read once, keys), the lock's check/write/check/remove (its own lock is not
    // read back), the index sync under the lock, the snapshot listing: no tree and no snapshot
    // is downloaded.
    assert!(ls <= 10, "ls -r of 61 directories made {ls} requests");
    assert_eq!(ls_gets, 8, "only listings, the key and config were read");
    // A restore of the 180 files fetches each data pack (at most one per walker, three) once,
    // not once per blob (the blob-by-blob restore made 180 GETs here).
    let target = env.path("restored");
    let (restore, restore_gets) =
        count(&["restore", "latest", "--target", target.to_str().unwrap()]);
    eprintln!("restore: {restore} requests ({restore_gets} GET)");
    assert!(
        restore_gets <= ls_gets + 3,
        "restoring 180 small files made {restore_gets} GETs"
    );
    crate::common::assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
