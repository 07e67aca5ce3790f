//! Append-only keys: a session opened with one backs up (locks taken, refreshed and released)
//! but every deleting or overwriting command refuses with exit 17 and leaves every repository
//! file as it was; keys it adds are append-only too.

use std::collections::BTreeMap;

use crate::common::*;

const AO_PASSWORD: &str = "append only password";

/// Every repository file (relative path) with its bytes' BLAKE3, so "nothing deleted or changed"
/// is one comparison.
fn files(env: &Env) -> BTreeMap<String, String> {
    walk_files(&env.repo)
        .into_iter()
        .map(|p| {
            let h = blake3::hash(&std::fs::read(&p).unwrap())
                .to_hex()
                .to_string();
            (env.rel(&p), h)
        })
        .collect()
}

/// `snap key add --append-only` with the full key; returns the new key's id.
fn add_append_only(env: &Env, with: &str, new: &str, flag: bool) -> serde_json::Value {
    let mut args = vec!["--json", "key", "add", "--kdf-memory-kib", "19456"];
    if flag {
        args.push("--append-only");
    }
    let o = env
        .cmd(&args)
        .env("SNAP_PASSWORD", with)
        .env("SNAP_NEW_PASSWORD", new)
        .output()
        .unwrap();
    assert!(o.status.success(), "key add: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs `args` with the append-only password; asserts exit 17, the message, and that no
/// repository file was removed or changed (and none added: a refusal happens before any work).
fn refused(env: &Env, args: &[&str]) {
    let before = files(env);
    let o = env
        .cmd(args)
        .env("SNAP_PASSWORD", AO_PASSWORD)
        .output()
        .unwrap();
    assert_no_panic(&o);
    assert_eq!(code(&o), 17, "snap {args:?}: {}", stderr(&o));
    assert!(
        stderr(&o).contains("opened with an append-only key"),
        "snap {args:?}: {}",
        stderr(&o)
    );
    assert_eq!(before, files(env), "snap {args:?} changed the repository");
}

#[test]
fn append_only_key_backs_up_and_refuses_every_delete() {
    let env = Env::new(&[]);
    let src = env.path("src");
    make_files(&src, 0..3, 64 * 1024);
    let first = env.backup_id(&src);
    let full_id = env
        .only_file("keys")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let added = add_append_only(&env, PASSWORD, AO_PASSWORD, true);
    assert_eq!(added["append_only"], true, "{added}");
    let ao_id = added["key"].as_str().unwrap().to_string();
    let list = env.json(&["key", "list"]);
    let flags: BTreeMap<String, bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["append_only"] == true,
            )
        })
        .collect();
    assert_eq!(flags.get(&ao_id), Some(&true), "{list}");
    assert_eq!(flags.get(&full_id), Some(&false), "{list}");

    // Backup works end to end; with a lock refresh every 20 ms the lock is rewritten (and the
    // old file removed) several times, and released at the end: no lock file is left.
    make_files(&src, 3..40, 256 * 1024);
    let before = env.snapshot_ids();
    let o = env
        .cmd(&["--json", "backup", src.to_str().unwrap()])
        .env("SNAP_PASSWORD", AO_PASSWORD)
        .env("SNAP_LOCK_REFRESH", "0.02")
        .output()
        .unwrap();
    assert!(o.status.success(), "append-only backup: {}", stderr(&o));
    let after = env.snapshot_ids();
    assert_eq!(after.len(), before.len() + 1);
    assert!(
        walk_files(&env.repo.join("locks")).is_empty(),
        "locks left: {:?}",
        walk_files(&env.repo.join("locks"))
    );
    let second = after.iter().find(|i| !before.contains(i)).unwrap().clone();
    // Reading works as usual.
    env.assert_restores(&second, &src);

    // A snapshot forgotten with the full key leaves packs a prune would mark and delete.
    env.ok(&["forget", &first]);

    // `--lock-wait` short: a regression must fail here, not wait ten minutes for a lock.
    refused(&env, &["forget", &second, "--lock-wait", "2s"]);
    refused(&env, &["forget", "--keep-last", "1", "--lock-wait", "2s"]);
    refused(&env, &["prune", "--grace", "0", "--lock-wait", "2s"]);
    refused(&env, &["forget", &second, "--prune", "--lock-wait", "2s"]);
    refused(&env, &["key", "remove", &full_id[..12]]);
    {
        let before = files(&env);
        let o = env
            .cmd(&["key", "passwd", "--kdf-memory-kib", "19456"])
            .env("SNAP_PASSWORD", AO_PASSWORD)
            .env("SNAP_NEW_PASSWORD", "changed")
            .output()
            .unwrap();
        assert_eq!(code(&o), 17, "key passwd: {}", stderr(&o));
        assert_eq!(before, files(&env), "key passwd changed the repository");
    }
    // Locks of another host: one stale (what plain unlock removes), one that missed two
    // refreshes (what --remove-all also removes). Neither goes with the append-only key.
    {
        use snap::repo::lock::{LockInfo, write_lock};
        let repo = env.open_lib();
        for age in [3600, 700] {
            let info = LockInfo {
                host: "some-other-host".into(),
                pid: 4242,
                user: "root".into(),
                time: (chrono::Utc::now() - chrono::Duration::seconds(age)).to_rfc3339(),
                exclusive: false,
                prune: false,
                job: None,
            };
            write_lock(repo.backend().as_ref(), repo.key(), &info).unwrap();
        }
    }
    refused(&env, &["unlock"]);
    refused(&env, &["unlock", "--remove-all"]);
    assert_eq!(walk_files(&env.repo.join("locks")).len(), 2);
    env.ok(&["unlock", "--remove-all"]);
    assert!(walk_files(&env.repo.join("locks")).is_empty());
    // A dry run deletes nothing and is allowed.
    let o = env
        .cmd(&["--json", "forget", &second, "--dry-run"])
        .env("SNAP_PASSWORD", AO_PASSWORD)
        .output()
        .unwrap();
    assert!(o.status.success(), "forget --dry-run: {}", stderr(&o));

    // A key added from an append-only session is append-only, flag or not, and refuses too.
    let added = add_append_only(&env, AO_PASSWORD, "second append only", false);
    assert_eq!(added["append_only"], true, "{added}");
    let before = files(&env);
    let o = env
        .cmd(&["forget", &second])
        .env("SNAP_PASSWORD", "second append only")
        .output()
        .unwrap();
    assert_eq!(code(&o), 17, "{}", stderr(&o));
    assert_eq!(before, files(&env));

    // The full key still deletes.
    env.ok(&["forget", &second]);
    assert!(!env.snapshot_ids().contains(&second));
}

/// Below the commands: the repository's own backend refuses overwriting a file and removing
/// anything but the session's own locks, whichever code path asks.
#[test]
fn append_only_session_backend_refuses_overwrite_and_remove() {
    let env = Env::new(&[]);
    let src = env.path("src");
    make_files(&src, 0..2, 4096);
    let id = env.backup_id(&src);
    add_append_only(&env, PASSWORD, AO_PASSWORD, true);
    let before = files(&env);
    let repo = snap::repo::Repository::open(
        &env.repo.as_path().into(),
        AO_PASSWORD.as_bytes(),
        &env.path("cache-ao"),
    )
    .unwrap();
    assert!(repo.append_only());
    let b = repo.backend();
    let config = b.read("config").unwrap();
    let e = b.write("config", &config).unwrap_err();
    assert!(
        matches!(e, snap::error::Error::AppendOnly { .. }),
        "overwrite of config: {e}"
    );
    let snap_path = format!("snapshots/{id}");
    let e = b.write(&snap_path, b"garbage").unwrap_err();
    assert!(matches!(e, snap::error::Error::AppendOnly { .. }), "{e}");
    let e = repo
        .remove_snapshot(&snap::id::Id::from_hex(&id).unwrap())
        .unwrap_err();
    assert!(matches!(e, snap::error::Error::AppendOnly { .. }), "{e}");
    for f in before.keys() {
        let e = b.remove(f).unwrap_err();
        assert!(
            matches!(e, snap::error::Error::AppendOnly { .. }),
            "remove {f}: {e}"
        );
    }
    assert_eq!(before, files(&env), "the repository changed");
    // Its own lock: written, refreshed and removed through the same backend.
    {
        let _lock = snap::repo::lock::LockGuard::take(b.clone(), repo.key(), false).unwrap();
        assert_eq!(walk_files(&env.repo.join("locks")).len(), 1);
    }
    assert!(walk_files(&env.repo.join("locks")).is_empty());
}

/// A private sshd whose SFTP subsystem refuses deletes as README's setup does; killed on drop.
struct DenyingSshd {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for DenyingSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn denying_sshd(dir: &std::path::Path) -> Option<DenyingSshd> {
    use std::process::Command;
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    if !sshd.exists() || !is_root() {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    for k in ["host", "user"] {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(k))
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
    }
    std::fs::copy(dir.join("user.pub"), dir.join("authorized_keys")).unwrap();
    let port = 2397;
    let cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
         Subsystem sftp internal-sftp -u 0077 -P remove,rmdir,posix-rename,setstat,fsetstat,lsetstat\n\
         LogLevel ERROR\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), cfg).unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .spawn()
        .unwrap();
    let server = DenyingSshd {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "sshd did not start: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

/// README's SFTP pairing, end to end: over an account whose server refuses `remove`, `rmdir`,
/// `posix-rename` and the setstat family, an append-only session backs up (snap's write is a
/// temporary file renamed into place with the plain rename), its own lock stays behind (the
/// server refuses its removal; stale once the process is gone, and it does not block the next
/// backup), forget is refused by snap (17), and even a full key cannot delete through that
/// account: the storage refuses (14).
#[test]
fn append_only_over_sftp_that_refuses_deletes() {
    let local = Env::new(&[]);
    let Some(sshd) = denying_sshd(&local.path("sshd")) else {
        eprintln!("skipped: needs root and /usr/sbin/sshd");
        return;
    };
    add_append_only(&local, PASSWORD, AO_PASSWORD, true);
    let user = String::from_utf8_lossy(
        &std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let mut remote = Env::uninit();
    remote.repo = std::path::PathBuf::from(format!(
        "sftp://{user}@127.0.0.1:{}{}",
        sshd.port,
        local.repo.display()
    ));
    remote.vars = vec![
        (
            "SNAP_SFTP_KEY".into(),
            sshd.dir.join("user").display().to_string(),
        ),
        ("SNAP_SFTP_KNOWN_HOSTS".into(), "accept".into()),
    ];
    let src = local.path("src");
    make_files(&src, 0..3, 100 * 1024);
    for round in 0..2 {
        let o = remote
            .cmd(&["-q", "backup", src.to_str().unwrap()])
            .env("SNAP_PASSWORD", AO_PASSWORD)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "backup {round} over SFTP: {}",
            stderr(&o)
        );
    }
    let snaps = local.snapshot_ids();
    assert_eq!(snaps.len(), 2);
    assert!(!walk_files(&local.repo.join("locks")).is_empty());
    let before = files(&local);
    let o = remote
        .cmd(&["forget", &snaps[0]])
        .env("SNAP_PASSWORD", AO_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(code(&o), 17, "{}", stderr(&o));
    // The stale locks are ours (dead pids on this host): a full key's unlock meets the server's
    // refusal, and so does its forget.
    let o = remote.run(&["unlock"]);
    assert_eq!(
        code(&o),
        14,
        "unlock with a full key over SFTP: {}",
        stderr(&o)
    );
    assert_eq!(before, files(&local), "something was deleted over SFTP");
    // Locally (the storage's own administrator) the stale locks go and forget works.
    local.ok(&["unlock"]);
    local.ok(&["forget", &snaps[0]]);
    local.assert_restores(&snaps[1], &src);
}
