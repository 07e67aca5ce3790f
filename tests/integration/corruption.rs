//! The corruption matrix: one test per kind of damage. Each damages a real repository on disk
//! and asserts that `snap check` (with `--read-data` where only reading can see it) exits 1, names
//! the damaged file and the snapshots and paths it affects (and no undamaged snapshot), and never
//! panics. Cache damage (index gone or stale) and dead locks are not repository damage: they are
//! repaired or reported, and the check stays clean.

use std::fs;
use std::path::PathBuf;

use crate::common::*;

/// Two snapshots: s1 of `keep/` (a.bin, sub/small.txt); s2 adds `victim/v.bin`, whose data is the
/// only thing in the `victim` pack.
struct Fx {
    env: Env,
    src: PathBuf,
    s1: String,
    s2: String,
    id2: String,
    /// The data pack of the first backup (keep/a.bin).
    first: PathBuf,
    /// The data pack of the second backup (victim/v.bin only).
    victim: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let env = Env::new(&[]);
        let src = env.path("src");
        write(&src.join("keep/a.bin"), &random_bytes(1, 600_000));
        write(&src.join("keep/sub/small.txt"), b"small file");
        let s = src.to_str().unwrap();
        let b1 = env.backup(&[s]);
        let before = env.pack_files();
        write(&src.join("victim/v.bin"), &random_bytes(2, 700_000));
        let b2 = env.backup(&[s]);
        let new: Vec<PathBuf> = env
            .pack_files()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let short = |b: &serde_json::Value| b["id"].as_str().unwrap()[..8].to_string();
        Fx {
            s1: short(&b1),
            s2: short(&b2),
            id2: b2["id"].as_str().unwrap().to_string(),
            first: largest_file(before),
            victim: largest_file(new),
            env,
            src,
        }
    }

    /// `<snapshot>:<absolute path of src/rel>`, as `check` names an affected path.
    fn at(&self, snap: &str, rel: &str) -> String {
        format!("{snap}:{}/{rel}", self.src.display())
    }

    /// Asserts the report names `file` and, among its affected paths, every one of `want` and
    /// nothing in snapshot `clean`.
    fn assert_names(&self, r: &serde_json::Value, file: &str, want: &[&str], clean: Option<&str>) {
        let ps = problems(r, file);
        assert!(!ps.is_empty(), "{file} not named: {r:#}");
        let aff = affected(&ps);
        for w in want {
            assert!(aff.iter().any(|a| a == w), "{w} not among affected {aff:?}");
        }
        if let Some(s) = clean {
            let p = format!("{s}:");
            assert!(
                !aff.iter().any(|a| a.starts_with(&p)),
                "{s} is not damaged: {aff:?}"
            );
        }
    }

    fn victim_rel(&self) -> String {
        self.env.rel(&self.victim)
    }

    /// Restores `keep/` of snapshot 1 and compares it with the source by the independent manifest.
    fn assert_s1_restores(&self) {
        let target = self.env.path("restore-s1");
        self.env
            .ok(&["restore", &self.s1, "--target", target.to_str().unwrap()]);
        let restored = target.join(self.src.strip_prefix("/").unwrap());
        assert_same_tree(&self.src.join("keep"), &restored.join("keep"));
        assert!(!restored.join("victim").exists());
    }
}

#[test]
fn bit_flip_in_a_blobs_bytes() {
    let fx = Fx::new();
    modify(&fx.victim, |b| {
        let m = b.len() / 2;
        b[m] ^= 0x10;
    });
    let (code, r, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 1, "{err}");
    let victim = fx.at(&fx.s2, "victim/v.bin");
    fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
    let what = problems(&r, &fx.victim_rel())[0]["what"].as_str().unwrap();
    assert!(what.contains("blob"), "{what}");
}

#[test]
fn bit_flip_in_a_pack_header() {
    let fx = Fx::new();
    modify(&fx.victim, |b| {
        let at = b.len() - 4 - 20;
        b[at] ^= 0x01;
    });
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    let victim = fx.at(&fx.s2, "victim/v.bin");
    fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
    let what = problems(&r, &fx.victim_rel())[0]["what"].as_str().unwrap();
    assert!(what.contains("header"), "{what}");
    // Without a cache the pack cannot be indexed at all: it is named, and so are the paths whose
    // blobs are now in no readable pack.
    fs::remove_dir_all(&fx.env.cache).unwrap();
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("skipped pack"), "{err}");
    assert!(!problems(&r, &fx.victim_rel()).is_empty(), "{r:#}");
    fx.assert_names(&r, "data/", &[&fx.at(&fx.s2, "victim/v.bin")], Some(&fx.s1));
}

#[test]
fn truncated_pack() {
    let fx = Fx::new();
    modify(&fx.victim, |b| b.truncate(b.len() / 2));
    let victim = fx.at(&fx.s2, "victim/v.bin");
    for args in [&[][..], &["--read-data"][..]] {
        let (code, r, err) = fx.env.check(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
    }
}

#[test]
fn deleted_pack() {
    let fx = Fx::new();
    fs::remove_file(&fx.victim).unwrap();
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gone from the repository"), "{err}");
    let victim = fx.at(&fx.s2, "victim/v.bin");
    fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
    // Again: the index remembers which pack vanished.
    let (code, r, _) = fx.env.check(&[]);
    assert_eq!(code, 1);
    fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
    // With no cache at all, nobody knows the pack's name; the lost blobs and paths are named.
    fs::remove_dir_all(&fx.env.cache).unwrap();
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    fx.assert_names(&r, "data/", &[&victim], Some(&fx.s1));
}

#[test]
fn two_packs_contents_swapped() {
    let fx = Fx::new();
    let (a, b) = (fs::read(&fx.first).unwrap(), fs::read(&fx.victim).unwrap());
    modify(&fx.first, |x| *x = b.clone());
    modify(&fx.victim, |x| *x = a.clone());
    let first_rel = fx.env.rel(&fx.first);
    let (victim, keep) = (fx.at(&fx.s2, "victim/v.bin"), fx.at(&fx.s1, "keep/a.bin"));
    for args in [&[][..], &["--read-data"][..]] {
        let (code, r, err) = fx.env.check(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        fx.assert_names(&r, &fx.victim_rel(), &[&victim], Some(&fx.s1));
        fx.assert_names(&r, &first_rel, &[&keep, &fx.at(&fx.s2, "keep/a.bin")], None);
    }
    // An index rebuilt from the swapped files is self-consistent; reading finds both names wrong.
    fs::remove_dir_all(&fx.env.cache).unwrap();
    let (code, r, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 1, "{err}");
    fx.assert_names(&r, &fx.victim_rel(), &[&keep], None);
    fx.assert_names(&r, &first_rel, &[&victim], Some(&fx.s1));
}

#[test]
fn pack_renamed() {
    let fx = Fx::new();
    let name = fx.victim.file_name().unwrap().to_str().unwrap().to_string();
    let last = if name.ends_with('0') { "1" } else { "0" };
    let renamed = fx.victim.with_file_name(format!("{}{last}", &name[..63]));
    fs::rename(&fx.victim, &renamed).unwrap();
    // Every blob is still there under the new name: the structure is whole.
    let (code, _, err) = fx.env.check(&[]);
    assert_eq!(code, 0, "{err}");
    let (code, r, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 1, "{err}");
    let rel = fx.env.rel(&renamed);
    fx.assert_names(&r, &rel, &[&fx.at(&fx.s2, "victim/v.bin")], Some(&fx.s1));
    let what = problems(&r, &rel)[0]["what"].as_str().unwrap();
    assert!(what.contains("does not hash to its name"), "{what}");
}

#[test]
fn snapshot_file_corrupted() {
    let fx = Fx::new();
    let file = fx.env.repo.join("snapshots").join(&fx.id2);
    modify(&file, |b| {
        let m = b.len() / 2;
        b[m] ^= 0x80;
    });
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    let rel = format!("snapshots/{}", fx.id2);
    fx.assert_names(&r, &rel, &[&format!("{}:/", fx.s2)], Some(&fx.s1));
    // Its data is now referenced by no readable snapshot: information, not a second problem.
    assert_eq!(r["problems"].as_array().unwrap().len(), 1, "{r:#}");
    assert!(
        r["unreferenced_packs"]
            .to_string()
            .contains(&fx.victim_rel())
    );
    fx.assert_s1_restores();
}

#[test]
fn snapshot_file_deleted() {
    let fx = Fx::new();
    fs::remove_file(fx.env.repo.join("snapshots").join(&fx.id2)).unwrap();
    // A repository without that snapshot is whole: what it alone used is unreferenced.
    let (code, r, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["snapshots"], 1);
    assert_eq!(
        r["unreferenced_packs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == Some(&fx.victim_rel()))
            .count(),
        1,
        "{r:#}"
    );
    let out = fx.env.ok(&["check"]);
    assert!(out.contains("not referenced by any snapshot"), "{out}");
    fx.assert_s1_restores();
}

#[test]
fn tree_blob_corrupted_names_its_subtree_in_every_snapshot() {
    let fx = Fx::new();
    let (pack, at) = {
        let mut repo = fx.env.open_lib();
        let (_, snap) = repo
            .find_snapshot(&fx.s1, &snap::snapshot::SnapshotFilter::default())
            .unwrap();
        let sub = format!("{}/keep/sub", fx.src.display());
        let node = repo.find_path(&snap.tree, sub.as_bytes()).unwrap().unwrap();
        let loc = repo.index().get(&node.subtree.unwrap()).unwrap().unwrap();
        let pack = fx.env.repo.join(snap::backend::pack_path(&loc.pack));
        (pack, loc.offset as usize + loc.length as usize / 2)
    };
    modify(&pack, |b| b[at] ^= 0x04);
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 1, "{err}");
    let rel = fx.env.rel(&pack);
    let (s1, s2) = (fx.at(&fx.s1, "keep/sub"), fx.at(&fx.s2, "keep/sub"));
    fx.assert_names(&r, &rel, &[&s1, &s2], None);
    let aff = affected(&problems(&r, &rel));
    assert!(!aff.iter().any(|a| a.contains("a.bin")), "{aff:?}");
    assert!(
        problems(&r, &rel)[0]["what"]
            .as_str()
            .unwrap()
            .contains("tree blob")
    );
}

#[test]
fn key_file_corrupted() {
    let fx = Fx::new();
    let env = &fx.env;
    let first = env.only_file("keys");
    let o = env
        .cmd(&["key", "add", "--kdf-memory-kib", "19456"])
        .env("SNAP_NEW_PASSWORD", "second")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // In the sealed master key: the file still decodes, only its name and seal disagree.
    modify(&first, |b| {
        let at = b.len() - 30;
        b[at] ^= 0x01;
    });
    let name = first.file_name().unwrap().to_str().unwrap();
    // The other key still opens the repository, and check names the damaged one.
    let o = env
        .cmd(&["--json", "check"])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert_no_panic(&o);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!problems(&r, &format!("keys/{name}")).is_empty(), "{r:#}");
    assert_eq!(r["snapshots"], 2);
    // The damaged key's password gets a clear error naming the file, not "wrong password".
    let o = env.run(&["snapshots"]);
    assert_no_panic(&o);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(name) && stderr(&o).contains("damaged"),
        "{}",
        stderr(&o)
    );

    // A repository whose only key is damaged.
    let one = Env::new(&[]);
    let key = one.only_file("keys");
    modify(&key, |b| {
        let at = b.len() - 30;
        b[at] ^= 0x01;
    });
    let (code, _, err) = one.check(&[]);
    assert_eq!(code, 1, "{err}");
    let name = key.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains("damaged"), "{err}");
}

#[test]
fn config_corrupted() {
    let fx = Fx::new();
    let config = fx.env.repo.join("config");
    let orig = fs::read(&config).unwrap();
    let damage: [fn(&mut Vec<u8>); 3] = [|b| b[20] ^= 0x01, |b| b.truncate(5), |b| b[4] = 3];
    for d in damage {
        modify(&config, |b| {
            *b = orig.clone();
            d(b);
        });
        for cmd in [&["check"][..], &["snapshots"][..]] {
            let o = fx.env.run(cmd);
            assert_no_panic(&o);
            assert_eq!(code(&o), 1, "{}", stderr(&o));
            assert!(stderr(&o).contains("config"), "{}", stderr(&o));
        }
    }
}

#[test]
fn index_directory_deleted_is_rebuilt_with_a_message() {
    let fx = Fx::new();
    let index = walkdir::WalkDir::new(&fx.env.cache)
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() == "index")
        .unwrap()
        .into_path();
    fs::remove_dir_all(&index).unwrap();
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rebuilding it from pack headers"), "{err}");
    assert_eq!(r["packs"], fx.env.pack_files().len());
    assert!(index.join("CURRENT").exists());
    let (code, _, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("rebuilding"), "{err}");
}

#[test]
fn index_stale_after_another_writer_catches_up() {
    let fx = Fx::new();
    write(&fx.src.join("later.bin"), &random_bytes(3, 500_000));
    let o = fx
        .env
        .cmd(&["backup", fx.src.to_str().unwrap()])
        .env("SNAP_CACHE_DIR", fx.env.path("other-cache"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (code, r, err) = fx.env.check(&["--read-data"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("caught up"), "{err}");
    assert_eq!(r["packs"], fx.env.pack_files().len());
    assert_eq!(r["snapshots"], 3);
}

#[test]
fn lock_from_a_dead_process_is_reported_with_its_age_and_unlock_removes_only_stale() {
    use snap::repo::lock::{LockGuard, LockInfo, write_lock};
    let fx = Fx::new();
    let repo = fx.env.open_lib();
    let dead = |exclusive| LockInfo {
        host: snap::hostname(),
        pid: 999_999_999,
        user: "gone".into(),
        time: (chrono::Utc::now() - chrono::Duration::seconds(600)).to_rfc3339(),
        exclusive,
        prune: false,
        job: None,
    };
    // A live lock (this test process), then a lock left by a dead one.
    let live = LockGuard::take(repo.backend().clone(), repo.key(), false).unwrap();
    write_lock(repo.backend().as_ref(), repo.key(), &dead(false)).unwrap();
    // A dead shared lock blocks nothing; check reports it with its age.
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 0, "{err}");
    let locks = r["locks"].to_string();
    assert!(
        locks.contains("pid 999999999") && locks.contains("stale") && locks.contains("s old"),
        "{locks}"
    );
    // A dead exclusive lock blocks check (exit 11) with the same description.
    write_lock(repo.backend().as_ref(), repo.key(), &dead(true)).unwrap();
    let (code, _, err) = fx.env.check(&[]);
    assert_eq!(code, 11, "{err}");
    assert!(
        err.contains("pid 999999999") && err.contains("s old"),
        "{err}"
    );
    // The live lock survives `unlock`; both dead ones go.
    let out = fx.env.json(&["unlock"]);
    assert_eq!(out["removed"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(fs::read_dir(fx.env.repo.join("locks")).unwrap().count(), 1);
    let (code, r, err) = fx.env.check(&[]);
    assert_eq!(code, 0, "{err}");
    let locks = r["locks"].to_string();
    assert!(
        locks.contains(&format!("pid {}", std::process::id())),
        "{locks}"
    );
    assert!(!locks.contains("stale"), "{locks}");
    drop(live);
}

#[test]
fn undamaged_snapshot_restores_while_an_unrelated_pack_is_damaged() {
    let fx = Fx::new();
    modify(&fx.victim, |b| {
        let m = b.len() / 2;
        b[m] ^= 0x10;
    });
    fx.assert_s1_restores();
    let target = fx.env.path("restore-s2");
    let o = fx
        .env
        .run(&["restore", &fx.s2, "--target", target.to_str().unwrap()]);
    assert_no_panic(&o);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("v.bin"), "{}", stderr(&o));
}

#[test]
fn affected_paths_are_listed_up_to_a_bound_and_counted_beyond_it() {
    let env = Env::new(&[]);
    let src = env.path("src");
    for i in 0..150 {
        write(
            &src.join(format!("f{i:03}")),
            format!("file {i}").as_bytes(),
        );
    }
    env.backup(&[src.to_str().unwrap()]);
    let data = largest_file(env.pack_files());
    modify(&data, |b| b.truncate(b.len() - 1));
    let (code, r, err) = env.check(&[]);
    assert_eq!(code, 1, "{err}");
    let ps = problems(&r, &env.rel(&data));
    assert_eq!(ps.len(), 1, "{r:#}");
    assert_eq!(ps[0]["affected"].as_array().unwrap().len(), 100);
    assert_eq!(ps[0]["affected_omitted"], 50);
}
