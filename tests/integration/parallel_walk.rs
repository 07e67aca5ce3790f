//! Several walkers share out a wide tree: the snapshot must not depend on which walker built which
//! directory, and it must restore identical to the source.

use std::fs;
use std::path::Path;

use crate::common::*;

const LINKS: u64 = 6;

/// 24 top directories, each with nested subdirectories; files small (page-cache reads) and large
/// (O_DIRECT reads, several blocks, unaligned tails); hard links across directories that different
/// walkers are likely to visit at the same time; empty directories.
fn build_wide_tree(src: &Path) -> (u64, u64) {
    let (mut files, mut dirs) = (0u64, 0u64);
    for d in 0..24u64 {
        for s in 0..3u64 {
            let dir = src.join(format!("top{d:02}/sub{s}"));
            for f in 0..4u64 {
                let seed = d * 100 + s * 10 + f;
                let len = match f {
                    0 => 10 + seed as usize,
                    1 => 5_000,
                    2 => 300_000 + seed as usize,
                    _ => 1_100_000 + 4096 * (seed as usize % 3) + 17,
                };
                write(&dir.join(format!("f{f}")), &random_bytes(seed, len));
                files += 1;
            }
            dirs += 1;
        }
        fs::create_dir_all(src.join(format!("top{d:02}/empty"))).unwrap();
        dirs += 2;
    }
    for d in 0..LINKS {
        let a = src.join(format!("top{d:02}/sub0/f2"));
        let b = src.join(format!("top{:02}/sub2/link{d}", 23 - d));
        fs::hard_link(&a, &b).unwrap();
        files += 1;
    }
    (files, dirs)
}

/// Backs up the working directory `src` (`snap backup .`), so the root tree is `src` itself and
/// does not change when something beside `src` does.
fn backup_dot(env: &Env, src: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "backup", "."];
    args.extend_from_slice(extra);
    let o = env.cmd(&args).current_dir(src).output().unwrap();
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn shared_out_walk_is_deterministic_and_restores_identical() {
    let env = Env::new(&[]);
    let src = env.path("src");
    let (files, dirs) = build_wide_tree(&src);
    let a = backup_dot(&env, &src, &["--full"]);
    let b = backup_dot(&env, &src, &["--full"]);
    assert_eq!(
        a["snapshot"]["tree"], b["snapshot"]["tree"],
        "two full backups of one unchanged tree must have the same root tree"
    );
    // Each linked inode is read once, whichever walkers meet its two links, and when: the
    // second link takes the first's content.
    for snap in [&a, &b] {
        let sum = &snap["snapshot"]["summary"];
        assert_eq!(sum["files_unmodified"].as_u64().unwrap(), LINKS, "{sum}");
        assert_eq!(sum["files_new"].as_u64().unwrap(), files - LINKS, "{sum}");
    }
    let sum = &a["snapshot"]["summary"];
    assert_eq!(sum["dirs"].as_u64().unwrap(), dirs, "{sum}");
    assert_eq!(a["snapshot"]["incomplete"], false);

    let target = env.path("restore");
    env.ok(&[
        "restore",
        a["id"].as_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert_same_tree(&src, &target);

    // An incremental run over the same tree reads nothing and yields the same tree again.
    let c = backup_dot(&env, &src, &[]);
    assert_eq!(c["snapshot"]["tree"], a["snapshot"]["tree"]);
    assert_eq!(c["snapshot"]["summary"]["bytes_read"], 0);
}
